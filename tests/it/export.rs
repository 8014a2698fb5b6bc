//! Exports on real engines: a daemon's flow as a Compose file that runs with `docker-compose` and
//! with `docker stack deploy` on a single-node Swarm the test makes and removes, Kubernetes
//! manifests checked by `kubernetes-validate` (offline schemas), and a workspace image pushed to
//! a real local registry (Debian's `docker-registry`) and pulled back by digest.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::flow::{docs, match_ids, routes};
use crate::common::{Daemon, BIN};

const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
const UP_TIMEOUT: Duration = Duration::from_secs(180);

/// encoder → a pod of 2 replicas → an indexer of 2 shards.
const FLOW: &str = "jtype: Flow
executors:
  - name: enc
    uses: HashEncoder
    with: {dim: 16}
  - name: mid
    replicas: 2
  - name: idx
    uses: VectorIndexer
    shards: 2
";

fn project() -> Vec<(&'static str, Vec<u8>)> {
    vec![(".jinad", b"python = 3.11\n".to_vec()), ("flow.yml", FLOW.as_bytes().to_vec())]
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port()
}

fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = sh(program, args);
    assert!(out.status.success(), "{program} {args:?}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lines(program: &str, args: &[&str]) -> Vec<String> {
    String::from_utf8_lossy(&sh(program, args).stdout).lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    match reqwest::Client::new().post(url).timeout(Duration::from_secs(30)).json(&body).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, json!(e.to_string())),
    }
}

/// A workspace of [`project`] on `daemon`, built.
async fn workspace(daemon: &Daemon) -> (String, String) {
    let id = daemon.create(&project()).await;
    let ws = daemon.wait_for(&id, &["ACTIVE"], BUILD_TIMEOUT).await;
    (id, ws["image_tag"].as_str().expect("image_tag").to_string())
}

/// A daemon with a built workspace of [`project`] and a flow of its `flow.yml`: (daemon,
/// workspace id, image tag, flow id).
async fn daemon_with_flow() -> (Daemon, String, String, String) {
    let daemon = Daemon::start(&[]).await;
    let (ws, tag) = workspace(&daemon).await;
    let (status, flow) = post(&format!("{}/flows", daemon.url), json!({"workspace_id": ws, "filename": "flow.yml"})).await;
    assert_eq!(status, 201, "{flow}");
    let flow_id = flow["id"].as_str().expect("id").to_string();
    (daemon, ws, tag, flow_id)
}

/// Waits for the gateway at `port`, then indexes, searches and checks the answers, and that both
/// replicas of `mid` got requests (their control ports count what they processed, read with
/// `jinad probe` inside each container). `containers`: the ids of mid's replica containers.
async fn check_flow(port: u16, mid_replicas: impl Fn() -> Vec<String>, what: &str) {
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + UP_TIMEOUT;
    loop {
        let ready = reqwest::get(format!("{base}/ready")).await.ok().map(|r| r.status().as_u16());
        if ready == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "{what}: the gateway on {port} is not ready after {UP_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, body) = post(&format!("{base}/index"), json!({"data": docs(&[("d1", "the quick brown fox"), ("d2", "a lazy dog sleeps"), ("d3", "quick brown foxes run"), ("d4", "cats and dogs")])})).await;
    assert_eq!(status, 200, "{what}: index: {body}");
    for _ in 0..10 {
        let (status, body) = post(&format!("{base}/search"), json!({"data": [{"text": "the quick brown fox"}], "parameters": {"top_k": 2}})).await;
        assert_eq!(status, 200, "{what}: search: {body}");
        assert_eq!(match_ids(&body, 0)[0], "d1", "{what}: {body}");
        assert_eq!(match_ids(&body, 0).len(), 2);
        let mut route = routes(&body);
        route.sort();
        assert_eq!(route, ["enc", "idx/shard-0", "idx/shard-1", "mid/peas"], "{what}: both shards answer a search");
    }
    // Both replicas get requests. A replica that became resolvable after the head's last look
    // is found at the head's next resolution (every 2 s): search until both have processed some
    // (through one pinned connection, as behind a virtual IP, one never would).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let replicas = mid_replicas();
        let processed: Vec<u64> = replicas
            .iter()
            .map(|c| {
                let status: Value = serde_json::from_str(ok("docker", &["exec", c, "jinad", "probe", "tcp://127.0.0.1:5556"]).trim()).expect("probe JSON");
                status["processed"].as_u64().unwrap_or(0)
            })
            .collect();
        if replicas.len() == 2 && processed.iter().all(|&n| n >= 2) {
            eprintln!("{what}: the replicas processed {processed:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{what}: replicas {replicas:?} processed {processed:?}: requests are not spread over both");
        for _ in 0..5 {
            let (status, body) = post(&format!("{base}/search"), json!({"data": [{"text": "a lazy dog"}]})).await;
            assert_eq!(status, 200, "{what}: search: {body}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A single-node Swarm for the duration of a test: left (and what it made removed) on drop.
struct Swarm {
    stack: Option<String>,
    had_gwbridge: bool,
}

impl Swarm {
    fn init() -> Swarm {
        let had_gwbridge = sh("docker", &["network", "inspect", "docker_gwbridge"]).status.success();
        // A pool of its own, away from the daemons' network pools and the remote tests' links.
        ok("docker", &["swarm", "init", "--advertise-addr", "127.0.0.1", "--default-addr-pool", "10.251.0.0/16"]);
        Swarm { stack: None, had_gwbridge }
    }

    fn stack_containers(stack: &str) -> Vec<String> {
        lines("docker", &["ps", "-aq", "--filter", &format!("label=com.docker.stack.namespace={stack}")])
    }

    fn remove_stack(&mut self) {
        let Some(stack) = self.stack.take() else { return };
        let _ = sh("docker", &["stack", "rm", &stack]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !Self::stack_containers(&stack).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
        }
        // Volumes outlive a stack on purpose (they hold the shards' data): removed here.
        for volume in lines("docker", &["volume", "ls", "-q", "--filter", &format!("label=com.docker.stack.namespace={stack}")]) {
            let _ = sh("docker", &["volume", "rm", &volume]);
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        self.remove_stack();
        let _ = sh("docker", &["swarm", "leave", "--force"]);
        if !self.had_gwbridge {
            let _ = sh("docker", &["network", "rm", "docker_gwbridge"]);
        }
    }
}

/// `docker-compose down -v` on drop.
struct ComposeProject {
    name: String,
    file: PathBuf,
}

impl ComposeProject {
    fn compose(&self, args: &[&str]) -> Output {
        let file = self.file.display().to_string();
        let mut all = vec!["-p", &self.name, "-f", &file];
        all.extend_from_slice(args);
        sh("docker-compose", &all)
    }

    fn down(&self) {
        let out = self.compose(&["down", "-v", "--timeout", "20"]);
        assert!(out.status.success(), "docker-compose down: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--timeout", "5"]);
    }
}

fn leftovers(label: &str) -> Vec<String> {
    let filter = format!("label={label}");
    let mut left = lines("docker", &["ps", "-aq", "--filter", &filter]);
    left.extend(lines("docker", &["volume", "ls", "-q", "--filter", &filter]));
    left.extend(lines("docker", &["network", "ls", "-q", "--filter", &filter]));
    left
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exported_flow_runs_with_docker_compose_and_on_a_swarm() {
    // The flow on the daemon first: the export is of a flow it runs.
    let (daemon, ws, _tag, flow_id) = daemon_with_flow().await;

    // Errors of the route: a format is required, a bad one or a bad namespace/port is named.
    for (query, needle) in [("", "required"), ("?format=helm", "helm"), ("?format=kubernetes&namespace=Bad_NS", "namespace"), ("?format=compose&port=0", "port")] {
        let (status, body) = daemon.get(&format!("/flows/{flow_id}/export{query}")).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_export")), "{query}: {body}");
        assert!(body["message"].as_str().unwrap_or("").contains(needle), "{query}: {body}");
    }
    let (status, body) = daemon.get("/flows/jflow-00000000-0000-4000-8000-000000000000/export?format=compose").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("deployment_not_found")), "{body}");

    // 1. From the daemon's route, run with docker-compose.
    let port = free_port();
    let response = daemon.http.get(format!("{}/flows/{flow_id}/export?format=compose&port={port}", daemon.url)).send().await.expect("export");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/yaml");
    let text = response.text().await.expect("body");
    assert!(text.contains("endpoint_mode: dnsrr") && text.contains("mode: host"), "{text}");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("compose.yml");
    std::fs::write(&file, &text).expect("write");
    let project = ComposeProject { name: format!("jxc{}", std::process::id()), file: file.clone() };
    let up = project.compose(&["up", "-d"]);
    assert!(up.status.success(), "docker-compose up: {}", String::from_utf8_lossy(&up.stderr));
    let label = format!("com.docker.compose.project={}", project.name);
    let mid_label = format!("com.docker.compose.service=mid-peas");
    check_flow(port, || lines("docker", &["ps", "-q", "--filter", &format!("label={label}"), "--filter", &format!("label={mid_label}")]), "docker-compose").await;
    // The shards' data is on their volumes.
    let volumes = lines("docker", &["volume", "ls", "-q", "--filter", &format!("label={label}")]);
    assert_eq!(volumes.len(), 2, "one volume per shard: {volumes:?}");
    // The containers are the orchestrator's: not labelled as any daemon's (the image's labels are overridden).
    let claimed = lines("docker", &["ps", "-aq", "--filter", &format!("label={label}"), "--filter", "label=jinad.managed=true"]);
    assert_eq!(claimed, Vec::<String>::new(), "exported containers must not look like a daemon's");
    project.down();
    assert_eq!(leftovers(&label), Vec::<String>::new(), "docker-compose down -v leaves nothing");

    // 2. From the CLI (the image named by the workspace id on the daemon), on a fresh Swarm.
    let port = free_port();
    let stack_file = dir.path().join("stack.yml");
    let export = Command::new(BIN)
        .args(["export", "compose", "flow.yml"])
        .arg(&stack_file)
        .args(["--image", &ws, "--host", &daemon.url, "--port", &port.to_string()])
        .current_dir(write_project(dir.path()))
        .output()
        .expect("jinad export");
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let mut swarm = Swarm::init();
    let stack = format!("jxs{}", std::process::id());
    swarm.stack = Some(stack.clone());
    let started = Instant::now();
    ok("docker", &["stack", "deploy", "--resolve-image", "never", "-c", &stack_file.display().to_string(), &stack]);
    let service = format!("{stack}_mid-peas");
    check_flow(port, || lines("docker", &["ps", "-q", "--filter", &format!("label=com.docker.swarm.service.name={service}")]), "swarm").await;
    eprintln!("swarm: stack answered correctly {:.1} s after deploy", started.elapsed().as_secs_f64());
    let stack_label = format!("com.docker.stack.namespace={stack}");
    swarm.remove_stack();
    assert_eq!(leftovers(&stack_label), Vec::<String>::new(), "docker stack rm (and its volumes) leaves nothing");
    drop(swarm);
    let state = ok("docker", &["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(state.trim(), "inactive");

    // The workspace goes with its flow (deleted first, its containers stopped).
    daemon.remove(&ws).await;
}

/// The Flow's directory for the CLI (it reads the YAML; the image holds the same file).
fn write_project(dir: &Path) -> PathBuf {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).expect("project dir");
    std::fs::write(project.join("flow.yml"), FLOW).expect("flow.yml");
    project
}

#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_manifests_validate_and_match_between_route_and_cli() {
    let (daemon, ws, tag, flow_id) = daemon_with_flow().await;
    let response = daemon.http.get(format!("{}/flows/{flow_id}/export?format=kubernetes&namespace=search", daemon.url)).send().await.expect("export");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/gzip");
    let bytes = response.bytes().await.expect("body");
    let dir = tempfile::tempdir().expect("temp dir");
    tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..])).unpack(dir.path().join("route")).expect("unpack");
    let route_dir = dir.path().join("route").join(&flow_id);
    // The image a cluster pulls instead of the local tag; a bad one is refused.
    let pushed = "127.0.0.1:5000/jinad-test/search:v1";
    let (status, body) = daemon.get(&format!("/flows/{flow_id}/export?format=kubernetes&image={pushed}")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = daemon.get(&format!("/flows/{flow_id}/export?format=compose&image=Bad%20Image")).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_export")), "{body}");
    let response = daemon.http.get(format!("{}/flows/{flow_id}/export?format=compose&image={pushed}", daemon.url)).send().await.expect("export");
    assert!(response.text().await.expect("body").contains(&format!("image: \"{pushed}\"")));
    let files = |d: &Path| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = std::fs::read_dir(d)
            .expect("dir")
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).expect("read")))
            .collect();
        v.sort();
        v
    };
    let from_route = files(&route_dir);
    assert_eq!(from_route.len(), 20, "namespace, config map, 9 services and 9 workloads");
    assert!(from_route.iter().all(|(_, y)| y.contains(&format!("image: \"{tag}\"")) || !y.contains("image:")));

    // The CLI writes the same manifests for the same flow and image.
    let cli_dir = dir.path().join("cli");
    let out = Command::new(BIN)
        .args(["export", "kubernetes", "flow.yml"])
        .arg(&cli_dir)
        .args(["--image", &tag, "--namespace", "search"])
        .current_dir(write_project(dir.path()))
        .output()
        .expect("jinad export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(files(&cli_dir), from_route);

    // kubernetes-validate (strict: unknown fields are errors) against the stated version.
    let tools = crate::contract::tools();
    let mut args = vec!["-k".to_string(), "1.37.0".into(), "--strict".into()];
    args.extend(from_route.iter().map(|(name, _)| route_dir.join(name).display().to_string()));
    let out = Command::new(tools.join("kubernetes-validate")).args(&args).output().expect("kubernetes-validate");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate: {said}");
    assert_eq!(said.matches(" passed for resource ").count(), 20, "{said}");
    assert!(!said.contains("WARN") && !said.contains("ERROR"), "{said}");

    // YAML 1.1 readers (PyYAML here, go-yaml v2 in kubectl) see strings as strings: a pod named
    // `no` (a boolean in YAML 1.1) still validates, its labels and arguments quoted.
    let norway = dir.path().join("norway");
    std::fs::create_dir_all(&norway).expect("dir");
    std::fs::write(norway.join("flow.yml"), "jtype: Flow\nexecutors:\n  - name: no\n  - name: on\n    replicas: 2\n").expect("flow");
    let out = Command::new(BIN).args(["export", "kubernetes", "flow.yml", "k8s", "--image", &tag]).current_dir(&norway).output().expect("jinad export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut args = vec!["-k".to_string(), "1.37.0".into(), "--strict".into()];
    args.extend(std::fs::read_dir(norway.join("k8s")).expect("k8s").flatten().map(|e| e.path().display().to_string()));
    let out = Command::new(tools.join("kubernetes-validate")).args(&args).output().expect("kubernetes-validate");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // A broken manifest fails the same validator (the check can fail).
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, from_route[2].1.replace("containerPort", "containerPortt")).expect("write");
    let out = Command::new(tools.join("kubernetes-validate")).args(["-k", "1.37.0", "--strict"]).arg(&broken).output().expect("kubernetes-validate");
    assert!(!out.status.success(), "a misspelt field must fail validation");
    // The workspace goes with its flow (deleted first, its containers stopped).
    daemon.remove(&ws).await;
}

/// A registry on a loopback port (the engine allows plain HTTP to 127.0.0.0/8 registries).
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n", dir.path().join("data").display()),
        )
        .expect("config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry; .ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry { child, port, _dir: dir }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_image_is_pushed_to_a_registry_and_pulled_back_by_digest() {
    let registry = Registry::start();
    let daemon = Daemon::start(&[]).await;
    // Right after the upload the workspace has no image yet. A file of its own makes its image
    // unique (identical workspaces of other tests would share it).
    let mut files = project();
    files.push(("push-test.txt", uuid::Uuid::new_v4().to_string().into_bytes()));
    let pending = daemon.create(&files).await;
    let repo = format!("127.0.0.1:{}/jinad-test/search{}", registry.port, std::process::id());
    let (status, body) = post(&format!("{}/workspaces/{pending}/push", daemon.url), json!({"reference": format!("{repo}:v1")})).await;
    assert!(status == 409 && body["code"] == "no_image" || status == 200, "{status} {body}");
    let ws_view = daemon.wait_for(&pending, &["ACTIVE"], BUILD_TIMEOUT).await;
    let ws = pending;
    let image_id = ws_view["image_id"].as_str().expect("image_id").to_string();

    for (reference, code) in [("search:v1", "invalid_reference"), ("127.0.0.1:5000/Upper:v1", "invalid_reference")] {
        let (status, body) = post(&format!("{}/workspaces/{ws}/push", daemon.url), json!({"reference": reference})).await;
        assert_eq!((status, body["code"].as_str()), (400, Some(code)), "{reference}: {body}");
    }
    let (status, body) = post(&format!("{}/workspaces/jworkspace-00000000-0000-4000-8000-000000000000/push", daemon.url), json!({"reference": format!("{repo}:v1")})).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("workspace_not_found")), "{body}");
    let (status, body) = post(&format!("{}/workspaces/{ws}/push", daemon.url), json!({"ref": "x"})).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("unprocessable_entity")), "{body}");
    // Nobody listens there: the engine's error comes back as push_failed.
    let dead = format!("127.0.0.1:{}/jinad-test/nowhere:v1", free_port());
    let (status, body) = post(&format!("{}/workspaces/{ws}/push", daemon.url), json!({"reference": dead})).await;
    assert_eq!((status, body["code"].as_str()), (502, Some("push_failed")), "{body}");

    let started = Instant::now();
    let (status, pushed) = post(&format!("{}/workspaces/{ws}/push", daemon.url), json!({"reference": format!("{repo}:v1")})).await;
    assert_eq!(status, 200, "{pushed}");
    eprintln!("push: {:.1} s", started.elapsed().as_secs_f64());
    let digest = pushed["digest"].as_str().expect("digest").to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{pushed}");
    assert_eq!(pushed["pinned"], format!("{repo}@{digest}"));
    // The push tag is gone again: only the workspace's tag owns the image.
    assert!(!sh("docker", &["image", "inspect", &format!("{repo}:v1")]).status.success(), "the push tag was left behind");

    // `jinad push` (the CLI) of the same image under another tag: same manifest, same digest.
    let out = Command::new(BIN).args(["push", &ws, &format!("{repo}:v2"), "--host", &daemon.url]).output().expect("jinad push");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{repo}@{digest}"));

    // Pulled back by digest: the very image the workspace built.
    let pinned = format!("{repo}@{digest}");
    ok("docker", &["pull", "-q", &pinned]);
    let pulled = ok("docker", &["image", "inspect", "--format", "{{.Id}}", &pinned]);
    assert_eq!(pulled.trim(), image_id);
    ok("docker", &["rmi", &pinned]);

    // Pushes of two workspaces to one reference at once: each pushes (and reports) its own image.
    let mut files = project();
    files.push(("push-test.txt", uuid::Uuid::new_v4().to_string().into_bytes()));
    let other = daemon.create(&files).await;
    daemon.wait_for(&other, &["ACTIVE"], BUILD_TIMEOUT).await;
    let (status, own) = post(&format!("{}/workspaces/{other}/push", daemon.url), json!({"reference": format!("{repo}:other")})).await;
    assert_eq!(status, 200, "{own}");
    let other_digest = own["digest"].as_str().expect("digest").to_string();
    assert_ne!(other_digest, digest);
    let shared = format!("{repo}:shared");
    let pushes = (0..6).map(|i| {
        let (url, ws, shared) = (daemon.url.clone(), if i % 2 == 0 { ws.clone() } else { other.clone() }, shared.clone());
        tokio::spawn(async move { (ws.clone(), post(&format!("{url}/workspaces/{ws}/push"), json!({"reference": shared})).await) })
    });
    for push in pushes.collect::<Vec<_>>() {
        let (from, (status, body)) = push.await.expect("push task");
        assert_eq!(status, 200, "{body}");
        let expected = if from == ws { &digest } else { &other_digest };
        assert_eq!(body["digest"].as_str(), Some(expected.as_str()), "a push of {from} reported another image");
    }

    // A name the engine already had is put back, not taken away.
    let base = ok("docker", &["image", "inspect", "--format", "{{.Id}}", &crate::common::base_template().replace("{python}", "3.11")]).trim().to_string();
    let mine = format!("{repo}:mine");
    ok("docker", &["tag", &base, &mine]);
    let (status, body) = post(&format!("{}/workspaces/{ws}/push", daemon.url), json!({"reference": mine})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ok("docker", &["image", "inspect", "--format", "{{.Id}}", &mine]).trim(), base, "the user's tag was moved or removed");

    // A push cut short by `kill -9` (a second, empty registry: the upload takes seconds) leaves its
    // tag; the next start removes it (it would keep the image alive after the workspace is
    // deleted), and leaves the user's own names alone.
    let slow = Registry::start();
    let cut = format!("127.0.0.1:{}/jinad-test/cut{}:v1", slow.port, std::process::id());
    let (url, id) = (daemon.url.clone(), ws.clone());
    let body = json!({"reference": cut});
    let interrupted = tokio::spawn(async move { post(&format!("{url}/workspaces/{id}/push"), body).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut daemon = daemon;
    daemon.kill9();
    let _ = interrupted.await;
    let left = sh("docker", &["image", "inspect", &cut]).status.success();
    daemon.restart();
    assert!(!sh("docker", &["image", "inspect", &cut]).status.success(), "the interrupted push's tag survived a restart (it was there after the kill: {left})");
    assert_eq!(ok("docker", &["image", "inspect", "--format", "{{.Id}}", &mine]).trim(), base, "the start took a name of the user's");
    ok("docker", &["rmi", &mine]);
    daemon.remove(&other).await;
    daemon.remove(&ws).await;
    assert!(!sh("docker", &["image", "inspect", &image_id]).status.success(), "the workspace image outlived its workspace");
}

/// What Compose and YAML 1.1 readers make of an export: `docker-compose config` (no engine
/// needed) reads back `$` in values and pods named like YAML 1.1 booleans unchanged.
#[test]
fn dollar_signs_and_yaml_booleans_survive_docker_compose() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("flow.yml"), "jtype: Flow\nwith:\n  env: {SECRET: '${{ ENV.JINAD_TEST_SECRET }}'}\nexecutors:\n  - name: no\n  - name: on\n    replicas: 2\n").expect("flow");
    let secret = "pa$$w${X}rd $(id)";
    let out = Command::new(BIN)
        .args(["export", "compose", "flow.yml", "out.yml", "--image", "localhost/jinad-test:1"])
        .env("JINAD_TEST_SECRET", secret)
        .current_dir(dir.path())
        .output()
        .expect("jinad export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = Command::new("docker-compose").args(["-f", "out.yml", "config"]).current_dir(dir.path()).env_remove("X").output().expect("docker-compose");
    let text = String::from_utf8_lossy(&config.stdout);
    assert!(config.status.success(), "{text}{}", String::from_utf8_lossy(&config.stderr));
    let parsed: Value = yaml_serde::from_str(&text).expect("YAML");
    // `config` prints values escaped again (`$$` for a literal `$`): unescaped, it is the secret,
    // untouched by interpolation (unescaped `${X}` would have become empty).
    let value = parsed["services"]["no"]["environment"]["JINAD_TEST_SECRET"].as_str().expect("env value").replace("$$", "$");
    assert_eq!(value, secret, "{text}");
    let command: Vec<&str> = parsed["services"]["on-peas"]["command"].as_array().expect("command").iter().filter_map(Value::as_str).collect();
    assert!(command.windows(2).any(|w| w == ["--pod", "on"]), "{command:?}");
    // The same file refuses to overwrite its own Flow.
    let out = Command::new(BIN).args(["export", "compose", "flow.yml", "flow.yml", "--image", "x:1"]).current_dir(dir.path()).output().expect("jinad export");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("overwrite the Flow YAML"));
}
