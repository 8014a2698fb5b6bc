//! The separate roles containers use: `jinad pea`, `jinad pod`, `jinad gateway`, wired by address,
//! and what a client sees when a pea dies.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::flow::{signal, spawn_until_line, wait_exit};
use crate::common::BIN;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Starts a gateway whose answers come back on a fixed port, so peas can be told where to send.
fn gateway(entry: &str, pea_ctrl: &str, returns: u16, timeout_ms: u64) -> (Proc, String) {
    gateway_watching(entry, &[("p", pea_ctrl)], returns, timeout_ms)
}

/// A gateway whose entry pod is `p` at `entry`, probing `peas` (name, control address).
fn gateway_watching(entry: &str, peas: &[(&str, &str)], returns: u16, timeout_ms: u64) -> (Proc, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["gateway", "--port", "0", "--entry", &format!("p={entry}")]);
    for (name, ctrl) in peas {
        cmd.args(["--pea", &format!("{name}={ctrl}")]);
    }
    cmd.args(["--returns", &format!("tcp://127.0.0.1:{returns}"), "--timeout-ms", &timeout_ms.to_string()]);
    let (child, line) = spawn_until_line(&mut cmd);
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("URL").to_string();
    (Proc(child), url)
}

fn start_pod(kind: &str, name: &str, extra: &[&str], out: &str, dir: &std::path::Path) -> (Proc, Value) {
    let (child, line) = spawn_until_line(
        Command::new(BIN)
            .args([kind, "--name", name, "--out", &format!("gateway={out}"), "--workspace"])
            .arg(dir)
            .args(extra),
    );
    (Proc(child), serde_json::from_str(&line).expect("a JSON line"))
}

async fn wait_ready(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{url}/ready")).send().await {
            if r.status().as_u16() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never got ready");
}


/// A `jinad pod`/`pea` process and a `jinad gateway` in front of it, ready. Bind every field:
/// a field left to `..` is dropped at once (and the process with it).
struct Behind {
    pod: Proc,
    _gateway: Proc,
    url: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

async fn behind_gateway(kind: &str, name: &str, extra: &[&str], timeout_ms: u64) -> Behind {
    let dir = tempfile::tempdir().unwrap();
    let returns = free_port();
    let (pod, addrs) = start_pod(kind, name, extra, &format!("tcp://127.0.0.1:{returns}"), dir.path());
    let (gateway, url) = gateway(addrs["in"].as_str().unwrap(), addrs["ctrl"].as_str().unwrap(), returns, timeout_ms);
    let http = reqwest::Client::new();
    wait_ready(&http, &url).await;
    Behind { pod, _gateway: gateway, url, dir, http }
}

#[tokio::test]
async fn pod_and_gateway_processes_serve_and_a_killed_pea_gives_an_error_not_a_hang() {
    let Behind { mut pod, _gateway: _gw, url, http, dir: _dir } =
        behind_gateway("pod", "enc", &["--uses", "HashEncoder", "--with", r#"{"dim": 4}"#, "--replicas", "2"], 2000).await;
    let status: Value = http.get(format!("{url}/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["peas"], json!([{"name": "p", "answering": true, "role": "pod", "processed": 0}]), "the pod's supervisor answers for it");

    let answer: Value = http.post(format!("{url}/index")).json(&json!({"data": [{"text": "a b c"}]})).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["data"][0]["embedding"].as_array().map(Vec::len), Some(4), "{answer}");

    // Kill the pod the hard way: nothing gets to say goodbye.
    signal(&pod.0, "KILL");
    assert_eq!(wait_exit(&mut pod.0, Duration::from_secs(5)), None);
    let started = Instant::now();
    let resp = http.post(format!("{url}/index")).json(&json!({"data": [{"text": "x"}]})).send().await.unwrap();
    let waited = started.elapsed();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert!(status == 502 || status == 504, "{status} {body}");
    assert!(["unreachable", "timeout"].contains(&body["code"].as_str().unwrap()), "{body}");
    let named = body["pea"] == "p" || body["not_answering"] == json!(["p"]);
    assert!(named, "names the pea: {body}");
    assert!(waited < Duration::from_secs(5), "bounded: {waited:?}");
}

#[tokio::test]
async fn a_pea_that_dies_mid_chain_is_named_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let returns = free_port();
    let ret = format!("tcp://127.0.0.1:{returns}");
    // pea `last` → gateway; pea `first` → `last`.
    let (mut last, last_addr) = start_pod("pea", "last", &[], &ret, dir.path());
    let (_first, first_addr) = {
        let (child, line) = spawn_until_line(
            Command::new(BIN)
                .args(["pea", "--name", "first", "--out"])
                .arg(format!("last={}", last_addr["in"].as_str().unwrap()))
                .arg("--workspace")
                .arg(dir.path()),
        );
        (Proc(child), serde_json::from_str::<Value>(&line).unwrap())
    };
    let peas = [("first", first_addr["ctrl"].as_str().unwrap()), ("last", last_addr["ctrl"].as_str().unwrap())];
    let (_gw, url) = gateway_watching(first_addr["in"].as_str().unwrap(), &peas, returns, 3000);
    let http = reqwest::Client::new();
    wait_ready(&http, &url).await;
    let ok: Value = http.post(format!("{url}/search")).json(&json!({"data": [{"id": "q"}]})).send().await.unwrap().json().await.unwrap();
    assert_eq!(ok["routes"], json!(["first", "last"]), "{ok}");

    signal(&last.0, "KILL");
    wait_exit(&mut last.0, Duration::from_secs(5));
    let started = Instant::now();
    let resp = http.post(format!("{url}/search")).json(&json!({"data": [{"id": "q"}]})).send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    // Normally `first` finds `last` gone at once (502); if the request raced the disconnect, the
    // timeout names it instead (504). Either way: bounded, and `last` is named.
    match status {
        502 => assert_eq!((body["code"].as_str(), body["pea"].as_str()), (Some("unreachable"), Some("last")), "{body}"),
        504 => assert_eq!(body["not_answering"], json!(["last"]), "{body}"),
        other => panic!("{other}: {body}"),
    }
}

#[tokio::test]
async fn a_pod_process_persists_on_terminate() {
    let Behind { mut pod, _gateway: _gw, url, http, dir } = behind_gateway("pod", "idx", &["--uses", "VectorIndexer", "--shards", "2"], 3000).await;
    for i in 0..4 {
        let r = http.post(format!("{url}/index")).json(&json!({"data": [{"id": format!("d{i}"), "embedding": [1.0, i as f32]}]})).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    signal(&pod.0, "TERM");
    assert_eq!(wait_exit(&mut pod.0, Duration::from_secs(10)), Some(0));
    for shard in ["shard-0", "shard-1"] {
        let snapshot = dir.path().join("idx").join(shard).join("index.snapshot");
        assert!(std::fs::metadata(&snapshot).map(|m| m.len() > 10).unwrap_or(false), "{}", snapshot.display());
    }
}

#[test]
fn role_arguments_are_checked() {
    let out = Command::new(BIN).args(["pea", "--name", "x", "--replicas", "2", "--out", "g=tcp://127.0.0.1:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("jinad pod"));
    let out = Command::new(BIN).args(["pod", "--name", "x", "--uses", "VectorIndexer", "--replicas", "2", "--out", "g=tcp://127.0.0.1:1"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shards"));
    let out = Command::new(BIN).args(["pod", "--name", "x", "--out", "nonsense"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "clap refuses it");
}

#[tokio::test]
async fn a_frozen_pea_times_out_and_is_named() {
    let Behind { pod: pea, _gateway: _gw, url, http, dir: _dir } = behind_gateway("pea", "slow", &[], 1500).await;
    // SIGSTOP: the connection stays up, so only the timeout can tell.
    signal(&pea.0, "STOP");
    let started = Instant::now();
    let resp = http.post(format!("{url}/index")).json(&json!({"data": [{"text": "x"}]})).send().await.unwrap();
    let waited = started.elapsed();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    signal(&pea.0, "CONT");
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["code"], "timeout");
    assert_eq!(body["not_answering"], json!(["p"]), "{body}");
    assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_secs(4), "{waited:?}");
}

/// A dead entry pod: every request fails on its own one-second send deadline. Before, the send
/// held the entries' mutex on a blocking thread for that second, so 50 concurrent requests
/// queued behind each other (~50 s); now they all end within the timeout plus a small margin.
#[tokio::test]
async fn concurrent_requests_to_a_dead_entry_pod_all_fail_within_the_timeout() {
    let dead_in = format!("tcp://127.0.0.1:{}", free_port());
    let dead_ctrl = format!("tcp://127.0.0.1:{}", free_port());
    let (_gw, url) = gateway(&dead_in, &dead_ctrl, free_port(), 2000);
    let http = reqwest::Client::new();
    let started = Instant::now();
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let response = http.post(format!("{url}/index")).json(&json!({"data": [{"text": format!("doc {i}")}]})).send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap(), started.elapsed())
            })
        })
        .collect();
    for request in requests {
        let (status, body, took) = request.await.unwrap();
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["code"], "unreachable");
        assert_eq!(body["pea"], "p");
        assert!(took < Duration::from_millis(2000 + 1500), "answered after {took:?}");
    }
}

/// Undeclared methods answer 405 with `Allow`; bodies that are not objects, documents given as
/// arrays and floats a 32-bit float cannot hold are 400, never echoed back as `null`.
#[tokio::test]
async fn the_gateway_keeps_its_contract() {
    let returns = free_port();
    let dir = tempfile::tempdir().unwrap();
    let (_pea, addrs) = start_pod("pea", "p", &[], &format!("tcp://127.0.0.1:{returns}"), dir.path());
    let (_gw, url) = gateway(addrs["in"].as_str().unwrap(), addrs["ctrl"].as_str().unwrap(), returns, 3000);
    let http = reqwest::Client::new();
    wait_ready(&http, &url).await;
    let trace = http.request(reqwest::Method::from_bytes(b"TRACE").unwrap(), format!("{url}/index")).send().await.unwrap();
    assert_eq!(trace.status().as_u16(), 405);
    assert_eq!(trace.headers()["allow"], "POST");
    assert_eq!(trace.json::<Value>().await.unwrap()["code"], "method_not_allowed");
    let get = http.get(format!("{url}/post")).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    for bad in [json!([]), json!({"data": [[]]}), json!({"data": [{"embedding": [1e39]}]}), json!({"data": [{"scores": {"x": -1e300}}]})] {
        let response = http.post(format!("{url}/index")).json(&bad).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{bad}");
        assert_eq!(response.json::<Value>().await.unwrap()["code"], "invalid_request");
    }
    let empty = http.post(format!("{url}/post")).json(&json!({"endpoint": ""})).send().await.unwrap();
    assert_eq!(empty.status().as_u16(), 400);
    let ok = http.post(format!("{url}/index")).json(&json!({"data": [{"embedding": [3.4e38]}]})).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert!(ok.json::<Value>().await.unwrap()["data"][0]["embedding"][0].is_number());
}
