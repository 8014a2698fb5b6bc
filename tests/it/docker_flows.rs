//! Flows, pods and peas in containers on the real Docker engine (the locally built base image):
//! a Flow started through the REST API runs every pea in its own container, answers through its
//! published gateway, survives `kill -9` of the daemon, fails with the reason when a container
//! dies, and goes with its workspace.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bollard::Docker;
use serde_json::{json, Value};

use crate::common::flow::{docs, match_ids};
use crate::common::{fixture, tar_gz, Daemon, WHEEL};
use crate::docker_workspaces::docker;

const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
const START_TIMEOUT: Duration = Duration::from_secs(120);

const GREETER: &str = r#"
import jinad_fixture_tiny
from jina import Executor, requests

class Greeter(Executor):
    @requests
    def greet(self, docs, **kwargs):
        for d in docs:
            d.tags["greeting"] = jinad_fixture_tiny.GREETING
            d.tags["replica"] = self.runtime_args.replica_id
"#;

const CRASHER: &str = r#"
from jina import Executor

class Crasher(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        raise RuntimeError("boom at start: the model file is missing")
"#;

const FLOW: &str = "jtype: Flow
executors:
  - name: enc
    uses: HashEncoder
    with: {dim: 16}
  - name: greet
    uses: Greeter
    py_modules: [executors/greeter.py]
    replicas: 2
  - name: idx
    uses: VectorIndexer
    shards: 2
";

fn project() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (".jinad", b"python = 3.11\n".to_vec()),
        ("requirements.txt", format!("./{WHEEL}\n").into_bytes()),
        ("wheels.tar.gz", tar_gz(&[(WHEEL, &fixture(WHEEL))])),
        ("flow.yml", FLOW.as_bytes().to_vec()),
        ("big.yml", b"jtype: Flow\nexecutors:\n  - {name: a, shards: 64}\n  - {name: b, shards: 64}\n".to_vec()),
        ("crash.yml", b"jtype: Flow\nexecutors:\n  - name: bad\n    uses: Crasher\n    py_modules: [executors/crasher.py]\n".to_vec()),
        ("executors.tar.gz", tar_gz(&[("executors/greeter.py", GREETER.as_bytes()), ("executors/crasher.py", CRASHER.as_bytes())])),
    ]
}

async fn post_json(daemon: &Daemon, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new().post(format!("{}{path}", daemon.url)).json(&body).send().await.expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_row(daemon: &Daemon, path: &str, states: &[&str], timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = daemon.get(path).await;
        if status == 200 && states.iter().any(|s| body["state"] == *s) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} not in {states:?} after {timeout:?}: {body}\n{}", daemon.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Containers labelled with `label=value`, as (name, inspect).
async fn containers_with(docker: &Docker, label: &str, value: &str) -> Vec<bollard::models::ContainerInspectResponse> {
    let filters = std::collections::HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
    let options = bollard::query_parameters::ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    let mut out = Vec::new();
    for c in docker.list_containers(Some(options)).await.expect("list") {
        out.push(docker.inspect_container(c.id.as_deref().unwrap_or_default(), None::<bollard::query_parameters::InspectContainerOptions>).await.expect("inspect"));
    }
    out
}

async fn call(url: &str, endpoint: &str, body: Value) -> Value {
    let response = reqwest::Client::new().post(format!("{url}{endpoint}")).json(&body).send().await.expect("gateway");
    assert_eq!(response.status().as_u16(), 200, "{endpoint}");
    response.json().await.expect("json")
}

#[tokio::test]
async fn a_flow_in_containers_serves_survives_kill9_fails_with_reason_and_goes_with_its_workspace() {
    let docker = docker().await;
    let mut daemon = Daemon::start(&["--reconcile-interval", "1"]).await;
    let ws = daemon.create(&project()).await;
    assert_eq!(daemon.wait_for(&ws, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await["state"], "ACTIVE");

    // Bad requests are refused before anything starts.
    let (status, body) = post_json(&daemon, "/flows", json!({"workspace_id": ws, "filename": "nope.yml"})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_flow")), "{body}");
    let (status, body) = post_json(&daemon, "/flows", json!({"workspace_id": ws, "filename": "../../etc/passwd"})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_flow")), "{body}");
    let (status, body) = post_json(&daemon, "/flows", json!({"workspace_id": ws, "filename": "big.yml"})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_flow")), "133 containers is too many: {body}");
    let (status, body) = post_json(&daemon, "/flows", json!({"workspace_id": ws, "filename": "flow.yml", "restart": {"policy": "never", "max_retries": 3}})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_flow")), "{body}");

    // Start through the query form.
    let response = reqwest::Client::new()
        .post(format!("{}/flows?workspace_id={ws}&filename=flow.yml", daemon.url))
        .send()
        .await
        .expect("POST /flows");
    assert_eq!(response.status().as_u16(), 201);
    let flow = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let view = wait_row(&daemon, &format!("/flows/{flow}"), &["ACTIVE", "FAILED"], START_TIMEOUT).await;
    assert_eq!(view["state"], "ACTIVE", "{view}");
    assert_eq!(view["workspace_id"], ws.as_str());
    let url = view["gateway_url"].as_str().expect("gateway_url").to_string();
    let peas: HashSet<&str> = view["containers"].as_array().unwrap().iter().map(|c| c["pea"].as_str().unwrap()).collect();
    let expected: HashSet<&str> = ["gateway", "enc", "greet/head", "greet/rep-0", "greet/rep-1", "greet/tail", "idx/head", "idx/shard-0", "idx/shard-1", "idx/tail"].into();
    assert_eq!(peas, expected);

    // Every pea its own container, on the workspace network, unprivileged, no engine socket;
    // only the gateway publishes a port.
    let running = containers_with(&docker, "jinad.id", &flow).await;
    assert_eq!(running.len(), 10);
    for c in &running {
        let host = c.host_config.clone().unwrap_or_default();
        let pea = c.config.as_ref().and_then(|c| c.labels.as_ref()).and_then(|l| l.get("jinad.pea")).cloned().unwrap_or_default();
        assert_eq!(host.network_mode.as_deref(), view_network(&daemon, &ws).await.as_deref(), "{pea}");
        assert_ne!(host.privileged, Some(true));
        let user = c.config.as_ref().and_then(|c| c.user.clone()).unwrap_or_default();
        assert!(!user.is_empty() && !user.starts_with("0:") && user != "root", "{pea} runs as `{user}`, never root");
        assert!(host.binds.unwrap_or_default().iter().all(|b| !b.contains("docker.sock")));
        let published = host.port_bindings.unwrap_or_default();
        assert_eq!(!published.is_empty(), pea == "gateway", "{pea}: {published:?}");
    }

    // Index and search through the published gateway; the Python executor imported the wheel
    // inside its containers, and both replicas served.
    let mut replicas = HashSet::new();
    for batch in 0..6 {
        let texts: Vec<(String, String)> = (0..3).map(|i| (format!("d{batch}-{i}"), format!("document {batch} number {i}"))).collect();
        let body: Vec<(&str, &str)> = texts.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let answer = call(&url, "/index", json!({"data": docs(&body)})).await;
        for d in answer["data"].as_array().unwrap() {
            assert_eq!(d["tags"]["greeting"], "hello from a local wheel", "{d}");
            replicas.insert(d["tags"]["replica"].to_string());
        }
    }
    assert_eq!(replicas.len(), 2, "both replicas served: {replicas:?}");
    let query = json!({"data": docs(&[("q", "document 4 number 2")]), "parameters": {"top_k": 1}});
    let found = match_ids(&call(&url, "/search", query.clone()).await, 0);
    assert_eq!(found, ["d4-2"]);
    let direct = view["gateway_direct_url"].as_str().expect("gateway_direct_url").to_string();
    assert_eq!(match_ids(&call(&direct, "/search", query.clone()).await, 0), ["d4-2"], "the same gateway on the workspace network");

    // kill -9 of the daemon: the flow keeps running and stays ACTIVE after the restart.
    daemon.restart();
    let after = wait_row(&daemon, &format!("/flows/{flow}"), &["ACTIVE", "FAILED"], START_TIMEOUT).await;
    assert_eq!(after["state"], "ACTIVE", "{after}");
    assert_eq!(after["gateway_url"], url.as_str());
    tokio::time::sleep(Duration::from_secs(2)).await; // a few reconcile rounds
    assert_eq!(daemon.get(&format!("/flows/{flow}")).await.1["state"], "ACTIVE");
    assert_eq!(match_ids(&call(&url, "/search", query.clone()).await, 0), ["d4-2"]);
    let status = daemon.get("/status").await.1;
    assert_eq!(status["flows"]["ACTIVE"], 1, "{status}");

    // A container killed behind the daemon's back: FAILED with the pea and exit code; every
    // other container stopped (executors persisted) and removed; the logs are kept.
    let victim = running.iter().find(|c| c.config.as_ref().and_then(|c| c.labels.as_ref()).and_then(|l| l.get("jinad.pea")).map(String::as_str) == Some("enc")).unwrap();
    docker.kill_container(victim.id.as_deref().unwrap(), None::<bollard::query_parameters::KillContainerOptions>).await.expect("kill");
    let failed = wait_row(&daemon, &format!("/flows/{flow}"), &["FAILED"], Duration::from_secs(60)).await;
    assert_eq!(failed["error_code"], "container_exited", "{failed}");
    let message = failed["error_message"].as_str().unwrap();
    assert!(message.starts_with("enc exited with code 137"), "{message}");
    assert_eq!(failed["gateway_url"], Value::Null, "a FAILED flow has no gateway to offer");
    assert!(failed["containers"].as_array().unwrap().iter().all(|c| c["state"].as_str().unwrap().starts_with("removed")), "{failed}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !containers_with(&docker, "jinad.id", &flow).await.is_empty() {
        assert!(Instant::now() < deadline, "the failed flow's containers are still there");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let logs = daemon.text(&format!("/flows/{flow}/logs")).await;
    assert!(logs.contains("[gateway] jinad gateway listening"), "{logs}");
    assert!(logs.lines().any(|l| l.starts_with("[idx/shard-1] ")), "{logs}");

    // The indexed data outlived the containers (the workspace is mounted): a new flow finds it.
    let (status, body) = post_json(&daemon, "/flows", json!({"workspace_id": ws, "filename": "flow.yml", "limits": {"memory": 536870912}, "restart": {"policy": "on-failure", "max_retries": 2}})).await;
    assert_eq!(status, 201, "{body}");
    let second = body["id"].as_str().unwrap().to_string();
    let view = wait_row(&daemon, &format!("/flows/{second}"), &["ACTIVE", "FAILED"], START_TIMEOUT).await;
    assert_eq!(view["state"], "ACTIVE", "{view}");
    assert_eq!(view["limits"]["memory"], 536870912);
    let url2 = view["gateway_url"].as_str().unwrap().to_string();
    assert_eq!(match_ids(&call(&url2, "/search", query).await, 0), ["d4-2"], "the index persisted in the workspace");
    for c in containers_with(&docker, "jinad.id", &second).await {
        let host = c.host_config.unwrap_or_default();
        assert_eq!(host.memory, Some(536870912));
        assert_eq!(host.restart_policy.and_then(|r| r.maximum_retry_count), Some(2));
    }

    // An executor that crashes at start: FAILED with its own log lines, nothing left running.
    let (status, body) = post_json(&daemon, "/flows", json!({"workspace_id": ws, "filename": "crash.yml"})).await;
    assert_eq!(status, 201, "{body}");
    let crash = body["id"].as_str().unwrap().to_string();
    let view = wait_row(&daemon, &format!("/flows/{crash}"), &["ACTIVE", "FAILED"], START_TIMEOUT).await;
    assert_eq!(view["error_code"], "container_exited", "{view}");
    assert!(view["error_message"].as_str().unwrap().contains("boom at start"), "{view}");
    assert!(containers_with(&docker, "jinad.id", &crash).await.is_empty());

    // Deleting the workspace takes its flows (containers first), network and image.
    let daemon_id = daemon.daemon_id().await;
    daemon.remove(&ws).await;
    for id in [&flow, &second, &crash] {
        assert_eq!(daemon.get(&format!("/flows/{id}")).await.0, 404);
    }
    assert!(containers_with(&docker, "jinad.daemon", &daemon_id).await.is_empty(), "no container of this daemon remains");
    assert!(crate::docker_workspaces::network_labels(&docker, &ws).await.is_none(), "the network is gone");
    let tag = format!("jworkspace:{}", ws.trim_start_matches("jworkspace-"));
    assert!(docker.inspect_image(&tag).await.is_err(), "the image is gone");
}

async fn view_network(daemon: &Daemon, ws: &str) -> Option<String> {
    daemon.get(&format!("/workspaces/{ws}")).await.1["network_id"].as_str().map(str::to_string)
}

/// A pod started through `POST /pods` runs its head, replicas and tail in containers and publishes
/// its entry: a gateway on the host sends to the published data port, and the pod's tail sends
/// the results to the host through `host.docker.internal`.
#[tokio::test]
async fn a_rest_pod_in_containers_serves_a_gateway_on_the_host() {
    let docker = docker().await;
    let daemon = Daemon::start(&[]).await;
    let ws = daemon.create(&[(".jinad", b"python = 3.11\n".to_vec())]).await;
    assert_eq!(daemon.wait_for(&ws, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await["state"], "ACTIVE");

    for (path, body, code) in [
        ("/peas", json!({"workspace_id": ws, "replicas": 2, "out": {"g": "tcp://x:1"}}), "invalid_pod"),
        ("/pods", json!({"workspace_id": ws, "uses": "Nope", "out": {"g": "tcp://x:1"}}), "invalid_pod"),
        ("/pods", json!({"workspace_id": ws, "out": {}}), "invalid_pod"),
        ("/pods", json!({"workspace_id": ws, "py_modules": ["../../etc/passwd"], "uses": "X", "out": {"g": "tcp://x:1"}}), "invalid_pod"),
        ("/pods", json!({"workspace_id": ws, "limits": {"memory": 1}, "out": {"g": "tcp://x:1"}}), "invalid_pod"),
        ("/pods", json!({"workspace_id": ws, "out": {"g": "tcp://x:1"}, "nonsense": 1}), "unprocessable_entity"),
    ] {
        let (status, answer) = post_json(&daemon, path, body.clone()).await;
        assert_eq!(answer["code"], code, "{path} {body}: {status} {answer}");
    }

    let returns = std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
    let (status, body) = post_json(
        &daemon,
        "/pods",
        json!({"workspace_id": ws, "name": "enc", "uses": "HashEncoder", "with": {"dim": 8}, "replicas": 2,
               "out": {"gateway": format!("tcp://host.docker.internal:{returns}")}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let pod = body["id"].as_str().unwrap().to_string();
    let view = wait_row(&daemon, &format!("/pods/{pod}"), &["ACTIVE", "FAILED"], START_TIMEOUT).await;
    assert_eq!(view["state"], "ACTIVE", "{view}");
    assert_eq!(view["containers"].as_array().unwrap().len(), 4, "head, two replicas, tail: {view}");
    let (entry, ctrl) = (view["ports"]["in"].as_str().unwrap().to_string(), view["ports"]["ctrl"].as_str().unwrap().to_string());
    // A second live `enc` of this workspace would write the same data directory: refused.
    for (path, body) in [
        ("/pods", json!({"workspace_id": ws, "name": "enc", "out": {"gateway": "bind"}})),
        ("/peas", json!({"workspace_id": ws, "name": "enc", "replicas": 2, "shard_id": 0, "replica_id": 1, "out": {"gateway": "bind"}})),
    ] {
        let (status, answer) = post_json(&daemon, path, body).await;
        assert_eq!((status, answer["code"].as_str()), (409, Some("pod_name_taken")), "{answer}");
    }

    let (gateway, line) = crate::common::flow::spawn_until_line(std::process::Command::new(crate::common::BIN).args([
        "gateway", "--port", "0", "--entry", &format!("enc={entry}"), "--returns", &format!("tcp://0.0.0.0:{returns}"),
        "--pea", &format!("enc/head={ctrl}"),
    ]));
    let _gateway = KillOnDrop(gateway);
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    let answer = call(&url, "/index", json!({"data": docs(&[("a", "hello"), ("b", "world")])})).await;
    assert_eq!(answer["data"][0]["embedding"].as_array().map(Vec::len), Some(8), "{answer}");

    // A container killed behind its back: the daemon hears it from Docker's events, not at its
    // next reconciliation (an hour away here): FAILED within seconds.
    let tail = containers_with(&docker, "jinad.id", &pod)
        .await
        .into_iter()
        .find(|c| c.config.as_ref().and_then(|c| c.labels.as_ref()).and_then(|l| l.get("jinad.pea")).map(String::as_str) == Some("enc/tail"))
        .expect("the tail's container");
    let killed = Instant::now();
    docker.kill_container(tail.id.as_deref().unwrap(), None::<bollard::query_parameters::KillContainerOptions>).await.expect("kill");
    let failed = wait_row(&daemon, &format!("/pods/{pod}"), &["FAILED"], Duration::from_secs(15)).await;
    assert_eq!(failed["error_code"], "container_exited", "{failed}");
    eprintln!("a killed pod container turned the row FAILED in {:?}", killed.elapsed());

    let (status, _) = daemon.delete(&format!("/pods/{pod}")).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.get(&format!("/pods/{pod}")).await.0 != 404 {
        assert!(Instant::now() < deadline, "the pod row is still there");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(containers_with(&docker, "jinad.id", &pod).await.is_empty());
    daemon.remove(&ws).await;
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `.jinad` `run` starts the project's own container from the workspace image with `ports`
/// published (JinaD's end-to-end project); the row shows it; the workspace's delete removes it.
#[tokio::test]
async fn jinad_run_starts_the_project_container_with_its_ports() {
    let docker = docker().await;
    let daemon = Daemon::start(&[]).await;
    let ws = daemon
        .create(&[
            (".jinad", b"python = 3.11\nports = 8765\nrun = \"python3 -m http.server 8765\"\n".to_vec()),
            ("hello.txt", b"served from the project container\n".to_vec()),
        ])
        .await;
    let view = daemon.wait_for(&ws, &["ACTIVE", "FAILED"], BUILD_TIMEOUT).await;
    assert_eq!(view["state"], "ACTIVE", "{view}");
    assert_eq!(view["project"]["state"], "running", "{view}");
    let published = view["project"]["ports"]["8765"].as_str().expect("port 8765 published").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Ok(r) = reqwest::get(format!("http://{published}/hello.txt")).await {
            if r.status().as_u16() == 200 {
                break r.text().await.unwrap();
            }
        }
        assert!(Instant::now() < deadline, "the project never answered on {published}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body, "served from the project container\n");
    let name = view["project"]["container"].as_str().unwrap().to_string();
    daemon.remove(&ws).await;
    assert!(docker.inspect_container(&name, None::<bollard::query_parameters::InspectContainerOptions>).await.is_err(), "the project container went with the workspace");
}

/// An image holding the `jinad` binary whose CMD chooses the executor (what `docker://` runs).
fn encoder_image() -> String {
    image_with_cmd("encoder", r#"["pod", "--uses", "HashEncoder", "--with", "{\"dim\": 8}"]"#)
}

fn image_with_cmd(name: &str, cmd: &str) -> String {
    let tag = format!("jinad-test/{name}:{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(crate::common::BIN, dir.path().join("jinad")).unwrap();
    let base = crate::common::base_template().replace("{python}", "3.11");
    let dockerfile = format!(
        "FROM {base}\nCOPY jinad /usr/local/bin/jinad\nENTRYPOINT [\"/usr/local/bin/jinad\"]\nCMD {cmd}\n"
    );
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let out = std::process::Command::new("docker").args(["build", "-q", "-t", &tag]).arg(dir.path()).output().expect("docker build");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tag
}

async fn flow_containers(docker: &Docker, pid: u32) -> Vec<bollard::models::ContainerInspectResponse> {
    containers_with(docker, "jinad.flow-pid", &pid.to_string()).await
}

/// JEP 2 in `jinad flow`: a `docker://` pod between two local pods works, and nothing is left
/// after the flow closes (Ctrl-C) or after the next run when the flow was killed.
#[tokio::test]
async fn a_local_flow_with_a_docker_pod_leaves_no_container_behind() {
    use crate::common::flow::FlowProc;
    let docker = docker().await;
    let image = encoder_image();
    let yaml = format!("jtype: Flow\nexecutors:\n  - name: first\n  - name: enc\n    uses: docker://{image}\n  - name: idx\n    uses: VectorIndexer\n");
    let mut flow = FlowProc::start(&yaml);
    let pid = flow.pid();
    let running = flow_containers(&docker, pid).await;
    assert_eq!(running.len(), 1, "one container, for `enc`");
    let host = running[0].host_config.clone().unwrap_or_default();
    assert!(host.extra_hosts.unwrap_or_default().contains(&"host.docker.internal:host-gateway".to_string()));
    assert_ne!(host.privileged, Some(true));
    let (status, answer) = flow.post("/index", json!({"data": docs(&[("a", "red apple"), ("b", "blue sky")])})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"][0]["embedding"].as_array().map(Vec::len), Some(8), "the image's CMD chose HashEncoder dim 8: {answer}");
    let (_, found) = flow.post("/search", json!({"data": docs(&[("q", "red apple")]), "parameters": {"top_k": 1}})).await;
    assert_eq!(match_ids(&found, 0), ["a"]);
    assert_eq!(flow.stop(), Some(0));
    assert!(flow_containers(&docker, pid).await.is_empty(), "closing the flow removed its container");

    // `image:` + `uses:` chooses the executor in the YAML; a killed run's container is removed
    // by the next run.
    let yaml = format!("jtype: Flow\nexecutors:\n  - name: enc\n    image: {image}\n    uses: HashEncoder\n    with: {{dim: 4}}\n");
    let mut killed = FlowProc::start(&yaml);
    let (_, answer) = killed.post("/index", json!({"data": docs(&[("a", "x")])})).await;
    assert_eq!(answer["data"][0]["embedding"].as_array().map(Vec::len), Some(4), "{answer}");
    let dead = killed.pid();
    killed.kill9();
    assert_eq!(flow_containers(&docker, dead).await.len(), 1, "kill -9 gave the flow no chance to clean up");
    let mut next = FlowProc::start(&yaml);
    assert!(flow_containers(&docker, dead).await.is_empty(), "the next run removed the leftover");
    assert_eq!(next.stop(), Some(0));
    let _ = std::process::Command::new("docker").args(["rmi", "-f", &image]).output();

    // A pod whose container exits at start fails the flow at once, with the container's words,
    // and leaves nothing behind.
    let broken = image_with_cmd("broken", r#"["pod", "--uses", "NoSuchExecutor"]"#);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flow.yml"), format!("jtype: Flow\nexecutors:\n  - name: bad\n    uses: docker://{broken}\n")).unwrap();
    let started = Instant::now();
    let out = std::process::Command::new(crate::common::BIN).arg("flow").arg(dir.path().join("flow.yml")).args(["--port", "0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("exited while starting") && stderr.contains("NoSuchExecutor"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "failed fast, not after the ready timeout: {:?}", started.elapsed());
    let left = containers_with(&docker, "jinad.role", "local-flow").await;
    assert!(left.iter().all(|c| c.name.as_deref().is_none_or(|n| !n.ends_with("-bad"))), "the broken pod's container is gone");
    let _ = std::process::Command::new("docker").args(["rmi", "-f", &broken]).output();
}
