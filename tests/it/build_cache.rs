//! The bounded build cache on the real engine: runtime images of "older binaries" (built here,
//! labelled as jinad labels them, 20 MB each) fill the cache past `--cache-max-size` while two
//! workspaces build; both builds end ACTIVE, and the pass after them evicts the least recently
//! used down to the limit, never an image in use. `POST /gc` then evicts the rest and removes a
//! step container a killed classic build would leave (no labels, created from the base by id).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{base_template, Daemon};

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).env("DOCKER_BUILDKIT", "0").output().expect("docker");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn exists(image: &str) -> bool {
    docker(&["image", "inspect", image]).0
}

/// A runtime image of another jinad binary: the base plus 20 MB, labelled as a runtime image.
fn old_runtime(tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut blob = vec![0u8; 20_000_000];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut blob).unwrap();
    std::fs::write(dir.path().join("blob"), blob).unwrap();
    let base = base_template().replace("{python}", "3.11");
    std::fs::write(dir.path().join("Dockerfile"), format!("FROM {base}\nCOPY blob /blob\nLABEL jinad.managed=\"true\" jinad.role=\"runtime\"\n")).unwrap();
    let (ok, out) = docker(&["build", "-q", "-t", tag, dir.path().to_str().unwrap()]);
    assert!(ok, "{out}");
}

async fn gc(daemon: &Daemon) -> Value {
    let response = daemon.http.post(format!("{}/gc", daemon.url)).send().await.expect("POST /gc");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_is_brought_under_its_limit_without_breaking_builds() {
    let _engine_cache = crate::common::ENGINE_CACHE.lock().await;
    let mut daemon = Daemon::start(&["--cache-max-size", "0"]).await;
    let unique = || ("u.txt", uuid::Uuid::new_v4().to_string().into_bytes());
    let first = daemon.create(&[(".jinad", b"python = 3.11\n".to_vec()), unique()]).await;
    daemon.wait_for(&first, &["ACTIVE"], Duration::from_secs(600)).await;

    // What the cache holds in use: the runtime image and the workspace's layers.
    let baseline = gc(&daemon).await;
    let in_use = baseline["size_after"].as_u64().unwrap();
    assert!(in_use > 0, "{baseline}");
    assert!(exists(&format!("jworkspace:{}", first.trim_start_matches("jworkspace-"))), "the workspace's image stays");

    // A step container of a killed build: stopped, no labels, created from the base by id.
    let base = base_template().replace("{python}", "3.11");
    let (_, base_id) = docker(&["image", "inspect", "-f", "{{.Id}}", &base]);
    // As the builder makes them: no name given (Docker generates one). A named one is a user's.
    let (ok, out) = docker(&["create", base_id.trim(), "/bin/sh", "-c", "true"]);
    assert!(ok, "{out}");
    let leaked_name = out.trim().to_string();
    let users = format!("jinad-test-users-{}", uuid::Uuid::new_v4());
    let (ok, out) = docker(&["create", "--name", &users, base_id.trim(), "/bin/sh", "-c", "true"]);
    assert!(ok, "{out}");
    let leaked_at = Instant::now();

    // Three old runtime images, oldest first (creation times a second apart).
    let tag = |k: usize| format!("jinad/runtime:000000000000-t{}-{k}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let tags: Vec<String> = (1..=3).map(tag).collect();
    for t in &tags {
        old_runtime(t);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // The limit leaves room for one of them.
    let limit = in_use + (30 << 20);
    let at = daemon.args.iter().position(|a| a == "--cache-max-size").unwrap();
    daemon.args[at + 1] = limit.to_string();
    daemon.restart();

    // Two builds at once: a pass after the first one ends finds the other running and waits.
    let second = daemon.create(&[(".jinad", b"python = 3.11\n".to_vec()), unique()]).await;
    let third = daemon.create(&[(".jinad", b"python = 3.11\n".to_vec()), unique()]).await;
    for id in [&second, &third] {
        let view = daemon.wait_for(id, &["ACTIVE", "FAILED"], Duration::from_secs(600)).await;
        assert_eq!(view["state"], "ACTIVE", "a build under the cache's policy: {view}");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while exists(&tags[0]) || exists(&tags[1]) {
        assert!(Instant::now() < deadline, "the policy evicted the two least recently used\n{}", daemon.stderr());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(exists(&tags[2]), "the newest fits under the limit and stays");
    for id in [&first, &second, &third] {
        assert!(exists(&format!("jworkspace:{}", id.trim_start_matches("jworkspace-"))), "{id}'s image is in use");
    }

    // On demand: everything evictable, and the leaked step container once it is 30 s old.
    tokio::time::sleep(Duration::from_secs(31).saturating_sub(leaked_at.elapsed())).await;
    let report = gc(&daemon).await;
    assert!(report["size_before"].as_u64().unwrap() <= limit, "the policy left the cache under its limit: {report}");
    assert!(!exists(&tags[2]), "{report}");
    let evicted: Vec<&str> = report["removed_images"].as_array().unwrap().iter().flat_map(|i| i["tags"].as_array().unwrap()).filter_map(Value::as_str).collect();
    assert!(evicted.contains(&tags[2].as_str()), "{report}");
    assert!(report["freed_bytes"].as_u64().unwrap() >= 20_000_000, "{report}");
    let (still, _) = docker(&["container", "inspect", &leaked_name]);
    assert!(!still, "the leaked step container is removed: {report}");
    let (kept, _) = docker(&["container", "inspect", &users]);
    assert!(kept, "a container someone named stays: {report}");
    docker(&["rm", "-f", &users]);
    for id in [&first, &second, &third] {
        assert_eq!(daemon.get(&format!("/workspaces/{id}")).await.1["state"], "ACTIVE");
        assert!(exists(&format!("jworkspace:{}", id.trim_start_matches("jworkspace-"))));
    }
}
