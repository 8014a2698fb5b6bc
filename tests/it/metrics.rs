//! `GET /metrics` read by a real Prometheus text parser (PyPI `prometheus-client`, in the
//! contract venv): the families are well-formed, the object counts match `GET /status`, a build
//! and the requests made are counted.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::Daemon;

/// The families as `{name: {"type", "samples": [[sample name, labels, value], …]}}`.
fn parse(text: &str) -> Value {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;
    let python = crate::contract::tools().join("python");
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("parser");
    assert!(out.status.success(), "the Prometheus parser refused the text: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn sample(families: &Value, family: &str, sample: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families[family]["samples"].as_array()?.iter().find_map(|s| {
        let matches = s[0] == sample && labels.iter().all(|(k, v)| s[1][*k] == *v);
        matches.then(|| s[2].as_f64()).flatten()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_match_the_status() {
    let daemon = Daemon::start(&[]).await;
    let id = daemon.create(&[(".jinad", b"python = 3.11\n".to_vec()), ("app.py", format!("# {}\n", uuid::Uuid::new_v4()).into_bytes())]).await;
    daemon.wait_for(&id, &["ACTIVE"], Duration::from_secs(600)).await;
    let response = daemon.http.get(format!("{}/metrics", daemon.url)).send().await.expect("GET /metrics");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap_or("").starts_with("text/plain"));
    let families = parse(&response.text().await.expect("body"));
    let (_, status) = daemon.get("/status").await;
    for (kind, key) in [("workspace", "workspaces"), ("flow", "flows"), ("pod", "pods"), ("pea", "peas")] {
        for state in ["PENDING", "ACTIVE", "FAILED", "DELETING"] {
            let scraped = sample(&families, "jinad_objects", "jinad_objects", &[("kind", kind), ("state", state)]);
            assert_eq!(scraped, status[key][state].as_f64(), "{kind} {state}: {families}");
        }
    }
    assert_eq!(families["jinad_build_duration_seconds"]["type"], "histogram");
    assert_eq!(sample(&families, "jinad_build_duration_seconds", "jinad_build_duration_seconds_count", &[("outcome", "active")]), Some(1.0));
    let uploads = sample(&families, "jinad_http_requests", "jinad_http_requests_total", &[("method", "POST"), ("route", "/workspaces"), ("status", "201")]);
    assert_eq!(uploads, Some(1.0), "{}", families["jinad_http_requests"]);
    assert!(sample(&families, "jinad_reconcile_runs", "jinad_reconcile_runs_total", &[("result", "ok")]).unwrap_or(0.0) >= 1.0, "the start's reconciliation");
    assert!(families.get("jinad_docker_errors").is_some(), "{families}");
    daemon.remove(&id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_counts_requests_and_what_each_pea_processed() {
    let flow = crate::common::flow::FlowProc::start("jtype: Flow\nexecutors:\n  - name: enc\n    uses: HashEncoder\n  - name: idx\n    uses: VectorIndexer\n    shards: 2\n");
    let (status, _) = flow.post("/index", serde_json::json!({"data": [{"id": "a", "text": "hello"}, {"id": "b", "text": "world"}]})).await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        let (status, _) = flow.post("/search", serde_json::json!({"data": [{"text": "hello"}]})).await;
        assert_eq!(status, 200);
    }
    let (status, _) = flow.post("/post", serde_json::json!({"endpoint": "/made-up-endpoint", "data": []})).await;
    assert_eq!(status, 200);
    let (status, _) = flow.post("/post", serde_json::json!({"endpoint": "no-slash", "data": []})).await;
    assert_eq!(status, 400);
    let text = flow.http.get(format!("{}/metrics", flow.url)).send().await.expect("GET /metrics").text().await.expect("body");
    let families = parse(&text);
    let requests = |endpoint: &str, status: &str| sample(&families, "jinad_gateway_requests", "jinad_gateway_requests_total", &[("endpoint", endpoint), ("status", status)]);
    assert_eq!(requests("/index", "200"), Some(1.0), "{text}");
    assert_eq!(requests("/search", "200"), Some(2.0));
    assert_eq!(requests("other", "200"), Some(1.0), "made-up endpoints share one label");
    assert_eq!(requests("other", "400"), Some(1.0));
    assert_eq!(sample(&families, "jinad_gateway_request_duration_seconds", "jinad_gateway_request_duration_seconds_count", &[("endpoint", "/search")]), Some(2.0));
    assert_eq!(sample(&families, "jinad_gateway_requests_in_flight", "jinad_gateway_requests_in_flight", &[]), Some(0.0));
    // enc saw index + 2 searches + the made-up one; a search goes to both shards, the index to one.
    assert_eq!(sample(&families, "jinad_pea_processed", "jinad_pea_processed", &[("pea", "enc")]), Some(4.0), "{text}");
    let shards: f64 = ["idx/shard-0", "idx/shard-1"].iter().filter_map(|p| sample(&families, "jinad_pea_processed", "jinad_pea_processed", &[("pea", p)])).sum();
    assert!(shards >= 5.0, "{text}");
    assert_eq!(sample(&families, "jinad_pea_answering", "jinad_pea_answering", &[("pea", "idx/tail")]), Some(1.0));
    // Nothing is in flight once every answer came back; the tail reports what it holds.
    assert_eq!(sample(&families, "jinad_pea_in_flight", "jinad_pea_in_flight", &[("pea", "idx/tail")]), Some(0.0), "{text}");
}
