//! `jinad flow` end to end: real processes, real ZeroMQ sockets between the peas, real HTTP.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::flow::{docs, match_ids, refuse, routes, FlowProc};

const SEARCH_FLOW: &str = "jtype: Flow
executors:
  - name: enc
    uses: HashEncoder
    with: {dim: 256}
  - name: norm
    uses: Passthrough
  - name: idx
    uses: VectorIndexer
";

#[tokio::test]
async fn three_pod_chain_indexes_and_finds_the_right_matches() {
    let flow = FlowProc::start(SEARCH_FLOW);
    let corpus = docs(&[
        ("fox", "the quick brown fox jumps over the fence"),
        ("dog", "a lazy dog sleeps all day"),
        ("rust", "rust makes systems programming safe"),
        ("zmq", "zeromq moves messages between sockets"),
    ]);
    let (status, answer) = flow.post("/index", json!({"data": corpus})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(routes(&answer), ["enc", "norm", "idx"]);
    assert_eq!(answer["data"][0]["embedding"].as_array().map(Vec::len), Some(256));

    let (status, answer) =
        flow.post("/search", json!({"data": [{"text": "brown fox"}, {"text": "zeromq sockets"}], "parameters": {"top_k": 2}})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(match_ids(&answer, 0)[0], "fox");
    assert_eq!(match_ids(&answer, 1)[0], "zmq");
    assert_eq!(match_ids(&answer, 0).len(), 2, "top_k cuts the matches");
    let first = answer["data"][0]["matches"][0]["scores"]["cosine"].as_f64().unwrap();
    let second = answer["data"][0]["matches"][1]["scores"]["cosine"].as_f64().unwrap();
    assert!(first > second && first > 0.3, "scores {first} {second}");

    // The same through /post, with a custom endpoint nobody serves: documents pass unchanged.
    let (status, answer) = flow.post("/post", json!({"endpoint": "/nothing", "data": [{"id": "x", "text": "hi"}]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"][0]["id"], "x");
    assert!(answer["data"][0]["matches"].is_null());
}

#[tokio::test]
async fn dag_join_waits_for_every_branch_and_merges() {
    let flow = FlowProc::start(
        "jtype: Flow
executors:
  - name: enc
    uses: HashEncoder
    with: {dim: 8}
    needs: gateway
  - name: plain
    needs: gateway
  - name: join
    needs: [enc, plain]
",
    );
    for _ in 0..20 {
        let (status, answer) = flow.post("/post", json!({"endpoint": "/x", "data": [{"id": "a", "text": "hello"}]})).await;
        assert_eq!(status, 200, "{answer}");
        let r = routes(&answer);
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r.contains(&"enc".to_string()) && r.contains(&"plain".to_string()));
        assert_eq!(r.last().map(String::as_str), Some("join"), "the join runs after both branches");
        assert_eq!(answer["data"].as_array().map(Vec::len), Some(1), "one document, merged");
        assert_eq!(answer["data"][0]["embedding"].as_array().map(Vec::len), Some(8), "the encoder's branch is kept");
    }
}

#[tokio::test]
async fn replicas_share_the_load() {
    let flow = FlowProc::start("jtype: Flow\nexecutors:\n  - name: p\n    replicas: 3\n");
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..30 {
        let (status, answer) = flow.post("/index", json!({"data": [{"text": "x"}]})).await;
        assert_eq!(status, 200, "{answer}");
        let r = routes(&answer);
        assert_eq!(r.len(), 1, "a request goes to exactly one replica: {r:?}");
        *seen.entry(r[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), ["p/rep-0", "p/rep-1", "p/rep-2"]);
    assert!(seen.values().all(|&n| n >= 5), "spread: {seen:?}");
}

#[tokio::test]
async fn shards_split_the_index_and_the_tail_merges_search_results() {
    let flow = FlowProc::start("jtype: Flow\nexecutors:\n  - name: enc\n    uses: HashEncoder\n  - name: idx\n    uses: VectorIndexer\n    shards: 2\n");
    let mut indexed_on = Vec::new();
    for (id, text) in [("a", "apple banana"), ("b", "apple cherry"), ("c", "apple durian"), ("d", "kiwi lemon")] {
        let (status, answer) = flow.post("/index", json!({"data": docs(&[(id, text)])})).await;
        assert_eq!(status, 200, "{answer}");
        let r = routes(&answer);
        assert_eq!(r.len(), 2, "/index polls ANY: one shard: {r:?}");
        indexed_on.push(r[1].clone());
    }
    assert!(indexed_on.contains(&"idx/shard-0".into()) && indexed_on.contains(&"idx/shard-1".into()), "{indexed_on:?}");

    let (status, answer) = flow.post("/search", json!({"data": [{"text": "apple"}], "parameters": {"top_k": 3}})).await;
    assert_eq!(status, 200, "{answer}");
    let r = routes(&answer);
    assert!(r.contains(&"idx/shard-0".into()) && r.contains(&"idx/shard-1".into()), "/search polls ALL: {r:?}");
    let ids = match_ids(&answer, 0);
    assert_eq!(ids.len(), 3, "merged then cut to top_k: {ids:?}");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ["a", "b", "c"], "the apple documents, from both shards");
    let scores: Vec<f64> = answer["data"][0]["matches"].as_array().unwrap().iter().map(|m| m["scores"]["cosine"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted by score: {scores:?}");
}

#[tokio::test]
async fn polling_is_per_endpoint() {
    let flow = FlowProc::start(
        "jtype: Flow\nexecutors:\n  - name: p\n    shards: 3\n    polling: {/index: all, /search: any, \"*\": all}\n",
    );
    let count = |answer: &serde_json::Value| routes(answer).len();
    let (_, a) = flow.post("/index", json!({"data": [{"id": "1"}]})).await;
    assert_eq!(count(&a), 3, "{a}");
    let (_, a) = flow.post("/search", json!({"data": [{"id": "1"}]})).await;
    assert_eq!(count(&a), 1, "{a}");
    let (_, a) = flow.post("/post", json!({"endpoint": "/other", "data": [{"id": "1"}]})).await;
    assert_eq!(count(&a), 3, "{a}");
    assert_eq!(a["data"].as_array().map(Vec::len), Some(1), "parts of one document merge into one");
}

#[tokio::test]
async fn an_executor_error_names_the_pea_and_the_flow_keeps_serving() {
    // No encoder before the indexer: /index must fail in the indexer.
    let flow = FlowProc::start("jtype: Flow\nexecutors:\n  - name: first\n  - name: idx\n    uses: VectorIndexer\n    shards: 2\n  - name: after\n");
    let (status, answer) = flow.post("/index", json!({"data": [{"id": "a", "text": "no embedding"}]})).await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["code"], "executor_error");
    let pea = answer["pea"].as_str().unwrap();
    assert!(pea.starts_with("idx/shard-"), "{pea}");
    assert!(answer["message"].as_str().unwrap().contains("embedding"), "{answer}");
    // The flow is still healthy.
    let (status, _) = flow.post("/post", json!({"endpoint": "/x", "data": [{"id": "b"}]})).await;
    assert_eq!(status, 200);
    let (status, answer) = flow.post("/post", json!({"data": []})).await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_request")), "{answer}");
    let (status, answer) = flow.post("/post", json!({"endpoint": "nope"})).await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_request")), "{answer}");
}

#[tokio::test]
async fn a_sharded_index_survives_a_restart() {
    let mut flow = FlowProc::start(
        "jtype: Flow\nexecutors:\n  - name: enc\n    uses: HashEncoder\n    with: {dim: 128}\n  - name: idx\n    uses: VectorIndexer\n    shards: 2\n",
    );
    for (id, text) in [("red", "red apples and red cherries"), ("blue", "blue sky over blue sea"), ("green", "green grass green leaves")] {
        let (status, answer) = flow.post("/index", json!({"data": docs(&[(id, text)])})).await;
        assert_eq!(status, 200, "{answer}");
    }
    flow.restart();
    for shard in ["shard-0", "shard-1"] {
        let snapshot = flow.workspace().join("idx").join(shard).join("index.snapshot");
        assert!(snapshot.exists(), "close() wrote {}", snapshot.display());
    }
    let (status, answer) =
        flow.post("/search", json!({"data": [{"text": "red cherries"}, {"text": "blue sea"}, {"text": "green leaves"}], "parameters": {"top_k": 3}})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(match_ids(&answer, 0)[0], "red");
    assert_eq!(match_ids(&answer, 1)[0], "blue");
    assert_eq!(match_ids(&answer, 2)[0], "green");
    assert_eq!(match_ids(&answer, 0).len(), 3, "all three documents, from both shards, are back");
}

#[tokio::test]
async fn tcp_transport_works_like_inproc() {
    let flow = FlowProc::start_with(SEARCH_FLOW, &["--transport", "tcp"]);
    let (status, answer) = flow.post("/index", json!({"data": docs(&[("a", "alpha beta")])})).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = flow.post("/search", json!({"data": [{"text": "alpha"}]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(match_ids(&answer, 0), ["a"]);
}

#[tokio::test]
async fn ready_and_status_routes() {
    let mut flow = FlowProc::start("jtype: Flow\nexecutors:\n  - name: a\n    shards: 2\n");
    let ready = flow.http.get(format!("{}/ready", flow.url)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let status: serde_json::Value = flow.http.get(format!("{}/status", flow.url)).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = status["peas"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a/head", "a/shard-0", "a/shard-1", "a/tail"]);
    assert!(status["peas"].as_array().unwrap().iter().all(|p| p["answering"] == true), "{status}");
    assert_eq!(status["peas"][0]["role"], "head");
    let (code, _) = flow.post("/search", json!({"data": [{"id": "q"}]})).await;
    assert_eq!(code, 200);
    let status: serde_json::Value = flow.http.get(format!("{}/status", flow.url)).send().await.unwrap().json().await.unwrap();
    let processed: Vec<u64> = status["peas"].as_array().unwrap().iter().map(|p| p["processed"].as_u64().unwrap()).collect();
    assert_eq!(processed, [1, 1, 1, 2], "/search polls both shards; the tail got two parts: {status}");
    let spec: serde_json::Value = flow.http.get(format!("{}/openapi.json", flow.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(spec["info"]["title"], "jinad gateway");
    let started = Instant::now();
    assert_eq!(flow.stop(), Some(0), "Ctrl-C stops the flow cleanly");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_yaml_is_refused_with_the_line_or_field() {
    let (code, err) = refuse("jtype: Flow\nexecutors:\n  - name: a\n    usse: HashEncoder\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("usse") && err.contains("line 4"), "{err}");
    let (code, err) = refuse("jtype: Flow\nexecutors:\n  - name: a\n  - name: b\n    needs: [a, ghost]\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("executors[1] (b).needs") && err.contains("ghost"), "{err}");
    let (_, err) = refuse("jtype: Flow\nexecutors:\n  - name: a\n    uses: HashEncoder\n    with: {dim: 0}\n");
    assert!(err.contains("executors[0] (a).with") && err.contains("dim"), "{err}");
    let (_, err) = refuse("jtype: Flow\nexecutors:\n  - name: a\n    needs: b\n  - name: b\n    needs: a\n");
    assert!(err.contains("cycle"), "{err}");
    let (_, err) = refuse("jtype: Flow\nexecutors: [\n");
    assert!(err.contains("line"), "{err}");
}
