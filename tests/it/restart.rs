//! Crashes and restarts: `kill -9` at awkward moments, objects Docker has that no row explains,
//! and rows whose Docker objects vanished. Nothing may stay stuck or orphaned.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListImagesOptionsBuilder, ListNetworksOptionsBuilder};
use jinad::ids::{Kind, ObjectId};
use jinad::state::State;
use jinad::store::Store;

use crate::common::{base_template, Daemon};
use crate::docker_workspaces::{docker, image_labels, network_labels};

const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

fn label_filter(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), pairs.iter().map(|(k, v)| format!("{k}={v}")).collect())])
}

/// The images of a workspace: tagged `jworkspace:<uuid>`, or labelled with its id (own Dockerfiles).
async fn images_of(docker: &bollard::Docker, workspace: &str) -> Vec<String> {
    let tag = format!("jworkspace:{}", workspace.trim_start_matches("jworkspace-"));
    let by_tag = HashMap::from([("reference".to_string(), vec![tag])]);
    let mut ids: Vec<String> = Vec::new();
    for filters in [by_tag, label_filter(&[("jinad.id", workspace)])] {
        let options = ListImagesOptionsBuilder::default().all(true).filters(&filters).build();
        ids.extend(docker.list_images(Some(options)).await.unwrap().into_iter().map(|i| i.id));
    }
    ids.sort();
    ids.dedup();
    ids
}

/// Delete the workspace and check that Docker holds nothing of it any more.
async fn remove_and_check(daemon: &Daemon, docker: &bollard::Docker, id: &str) {
    daemon.remove(id).await;
    assert!(images_of(docker, id).await.is_empty());
    assert!(networks_of(docker, id).await.is_empty());
}

async fn networks_of(docker: &bollard::Docker, workspace: &str) -> Vec<String> {
    let options = ListNetworksOptionsBuilder::default().filters(&label_filter(&[("jinad.id", workspace)])).build();
    docker.list_networks(Some(options)).await.unwrap().into_iter().filter_map(|n| n.id).collect()
}

#[tokio::test]
async fn kill_9_mid_build_then_restart_ends_settled_without_orphans() {
    let docker = docker().await;
    let mut daemon = Daemon::start(&[]).await;
    let base = base_template().replace("{python}", "3.11");
    let dockerfile = format!("FROM {base}\nRUN sleep 6 && echo slept-{}\nCOPY app.py /srv/app.py\n", uuid::Uuid::new_v4());
    let id = daemon
        .create(&[(".jinad", b"dockerfile = Dockerfile\n".to_vec()), ("Dockerfile", dockerfile.into_bytes()), ("app.py", b"".to_vec())])
        .await;

    // Wait until Docker is inside the slow step, then kill the daemon without warning.
    let deadline = Instant::now() + BUILD_TIMEOUT;
    while !daemon.text(&format!("/workspaces/{id}/logs")).await.contains("RUN sleep 6") {
        assert!(Instant::now() < deadline, "the build never reached the slow step");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.kill9();
    let store = Store::open(&daemon.db()).await.unwrap();
    let ws = ObjectId::parse(Kind::Workspace, &id).unwrap();
    assert_eq!(store.get_workspace(&ws).await.unwrap().state, State::Pending, "killed mid-build");
    store.close().await;

    daemon.restart();
    let view = daemon.wait_for(&id, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await;
    assert_eq!(view["state"], "ACTIVE", "{view}");
    // Exactly the row's image and network exist; nothing left from the interrupted build.
    assert_eq!(images_of(&docker, &id).await, vec![view["image_id"].as_str().unwrap().to_string()]);
    assert_eq!(networks_of(&docker, &id).await, vec![view["network_id"].as_str().unwrap().to_string()]);

    remove_and_check(&daemon, &docker, &id).await;
}

#[tokio::test]
async fn kill_9_during_delete_then_restart_finishes_it() {
    let docker = docker().await;
    let mut daemon = Daemon::start(&[]).await;
    let id = daemon.create(&[("app.py", b"print(1)\n".to_vec())]).await;
    daemon.wait_for(&id, &["ACTIVE"], BUILD_TIMEOUT).await;
    daemon.delete(&format!("/workspaces/{id}")).await;
    daemon.restart(); // kill -9, then start again
    daemon.wait_gone(&id, Duration::from_secs(60)).await;
    assert!(images_of(&docker, &id).await.is_empty());
    assert!(networks_of(&docker, &id).await.is_empty());
}

#[tokio::test]
async fn reconcile_removes_own_orphans_and_leaves_other_daemons_alone() {
    let docker = docker().await;
    let mut daemon = Daemon::start(&[]).await;
    let mine = daemon.daemon_id().await;
    let other = format!("jinad-{}", uuid::Uuid::new_v4());
    let ghost = ObjectId::mint(Kind::Workspace).to_string();
    let base = base_template().replace("{python}", "3.11");
    let labels = |daemon_id: &str| {
        vec![
            "--label".to_string(), "jinad.managed=true".to_string(),
            "--label".to_string(), format!("jinad.id={ghost}"),
            "--label".to_string(), format!("jinad.workspace={ghost}"),
            "--label".to_string(), format!("jinad.daemon={daemon_id}"),
        ]
    };
    let docker_cli = |args: Vec<String>| {
        let out = Command::new("docker").args(&args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let own_net = format!("jinad-test-own-{suffix}");
    let other_net = format!("jinad-test-other-{suffix}");
    docker_cli([vec!["network".into(), "create".into()], labels(&mine), vec![own_net.clone()]].concat());
    docker_cli([vec!["network".into(), "create".into()], labels(&other), vec![other_net.clone()]].concat());
    let own_container = docker_cli([vec!["create".into()], labels(&mine), vec![base.clone(), "true".into()]].concat());
    let other_container = docker_cli([vec!["create".into()], labels(&other), vec![base.clone(), "true".into()]].concat());

    daemon.restart(); // reconciles before serving

    assert!(network_labels(&docker, &own_net).await.is_none(), "own orphan network removed");
    assert!(network_labels(&docker, &other_net).await.is_some(), "another daemon's network kept");
    assert!(docker.inspect_container(&own_container, None::<bollard::query_parameters::InspectContainerOptions>).await.is_err(), "own orphan container removed");
    assert!(docker.inspect_container(&other_container, None::<bollard::query_parameters::InspectContainerOptions>).await.is_ok(), "another daemon's container kept");

    docker_cli(vec!["rm".into(), "-f".into(), other_container]);
    docker_cli(vec!["network".into(), "rm".into(), other_net]);
}

#[tokio::test]
async fn vanished_image_is_rebuilt_after_restart() {
    let docker = docker().await;
    let mut daemon = Daemon::start(&[]).await;
    let id = daemon.create(&[("app.py", b"print(2)\n".to_vec())]).await;
    let view = daemon.wait_for(&id, &["ACTIVE"], BUILD_TIMEOUT).await;
    let image = view["image_id"].as_str().unwrap().to_string();
    daemon.kill9();
    docker.remove_image(&image, Some(bollard::query_parameters::RemoveImageOptions { force: true, noprune: false }), None).await.unwrap();

    daemon.restart();
    let view = daemon.wait_for(&id, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await;
    let deadline = Instant::now() + BUILD_TIMEOUT;
    let mut view = view;
    while view["builds"] != 2 {
        assert!(Instant::now() < deadline, "no rebuild: {view}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        view = daemon.wait_for(&id, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await;
    }
    assert_eq!(view["state"], "ACTIVE", "{view}");
    assert!(image_labels(&docker, view["image_id"].as_str().unwrap()).await.is_some());
    assert!(daemon.text(&format!("/workspaces/{id}/logs")).await.contains("build #2"));
    daemon.remove(&id).await;
}

#[tokio::test]
async fn pending_work_resumes_when_docker_comes_back() {
    let mut daemon = Daemon::start_without_docker(&[]).await;
    let id = daemon.create(&[("app.py", b"print(3)\n".to_vec())]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(daemon.get(&format!("/workspaces/{id}")).await.1["state"], "PENDING");
    daemon.args = vec!["--base-image-template".into(), base_template()];
    daemon.restart();
    let view = daemon.wait_for(&id, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await;
    assert_eq!(view["state"], "ACTIVE", "{view}");
    daemon.remove(&id).await;
}
