//! Python executors through the bridge: a real `python3` child per pea, real sockets, real HTTP.

use serde_json::json;

use crate::common::flow::{match_ids, refuse, routes, FlowProc};

const EXECUTOR: &str = r#"
import os
from jina import Executor, requests

class Shouter(Executor):
    def __init__(self, suffix="!", **kwargs):
        super().__init__(**kwargs)
        self.suffix = suffix
        self.seen = 0

    @requests(on=["/index", "/search"])
    def shout(self, docs, parameters, **kwargs):
        print("this goes to stderr, not into the protocol")
        for d in docs:
            d.text = d.text.upper() + self.suffix
            d.tags["shard"] = self.runtime_args.shard_id
            d.tags["greeting"] = os.environ.get("GREETING", "")
            self.seen += 1

    @requests(on="/fail")
    def fail(self, docs):
        raise ValueError("this document is cursed")

    @requests(on="/replace")
    def replace(self, docs, parameters):
        return [{"id": "new", "text": str(parameters.get("n", 0))}]

    def close(self):
        with open(os.path.join(self.workspace, "closed.txt"), "w") as f:
            f.write(str(self.seen))
"#;

fn flow_with_executor(yaml: &str) -> FlowProc {
    FlowProc::start_in(yaml, &[("executors/shouter.py", EXECUTOR)])
}

#[tokio::test]
async fn a_python_executor_serves_its_endpoints_and_persists_on_close() {
    let mut flow = flow_with_executor(
        "jtype: Flow
with: {env: {GREETING: hello}}
executors:
  - name: enc
    uses: HashEncoder
    with: {dim: 32}
  - name: shout
    uses: Shouter
    py_modules: [executors/shouter.py]
    with: {suffix: '?!'}
  - name: idx
    uses: VectorIndexer
",
    );
    let (status, answer) = flow.post("/index", json!({"data": [{"id": "a", "text": "hi there"}, {"id": "b", "text": "bye"}]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(routes(&answer), ["enc", "shout", "idx"]);
    assert_eq!(answer["data"][0]["text"], "HI THERE?!");
    assert_eq!(answer["data"][0]["tags"], json!({"shard": 0, "greeting": "hello"}));
    assert_eq!(answer["data"][0]["embedding"].as_array().map(Vec::len), Some(32), "kept through Python");

    let (status, answer) = flow.post("/search", json!({"data": [{"text": "hi there"}]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(match_ids(&answer, 0)[0], "a");

    let (status, answer) = flow.post("/post", json!({"endpoint": "/replace", "data": [{"id": "x"}], "parameters": {"n": 7}})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"], json!([{"id": "new", "text": "7"}]), "a returned list replaces the documents");

    let (status, answer) = flow.post("/post", json!({"endpoint": "/untouched", "data": [{"id": "u", "text": "same"}]})).await;
    assert_eq!((status, answer["data"][0]["text"].as_str()), (200, Some("same")), "no handler: unchanged");

    let (status, answer) = flow.post("/post", json!({"endpoint": "/fail", "data": [{"id": "x"}]})).await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!((answer["code"].as_str(), answer["pea"].as_str()), (Some("executor_error"), Some("shout")));
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("ValueError: this document is cursed") && message.contains("Traceback"), "{message}");

    // Still serving after the exception.
    let (status, _) = flow.post("/index", json!({"data": [{"id": "c", "text": "again"}]})).await;
    assert_eq!(status, 200);

    assert_eq!(flow.stop(), Some(0));
    let closed = std::fs::read_to_string(flow.workspace().join("shout/closed.txt")).expect("close() ran");
    assert_eq!(closed, "4", "three indexed + one query went through `shout`");
}

#[tokio::test]
async fn python_executors_shard_with_their_own_workspace() {
    let mut flow = flow_with_executor(
        "jtype: Flow\nexecutors:\n  - name: s\n    uses: Shouter\n    py_modules: [executors/shouter.py]\n    shards: 2\n    polling: all\n",
    );
    let (status, answer) = flow.post("/index", json!({"data": [{"id": "a", "text": "x"}]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(routes(&answer).len(), 2, "{answer}");
    assert_eq!(flow.stop(), Some(0));
    for shard in ["shard-0", "shard-1"] {
        assert!(flow.workspace().join("s").join(shard).join("closed.txt").exists(), "{shard}");
    }
}

#[test]
fn python_executor_errors_are_clear() {
    let (code, err) = refuse("jtype: Flow\nexecutors:\n  - name: p\n    uses: Nope\n    py_modules: [missing.py]\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("executors[0] (p).py_modules") && err.contains("missing.py") && err.contains("does not exist"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.py"), "import nonexistent_module_xyz\n").unwrap();
    std::fs::write(dir.path().join("flow.yml"), "jtype: Flow\nexecutors:\n  - name: p\n    uses: X\n    py_modules: [broken.py]\n").unwrap();
    let out = std::process::Command::new(crate::common::BIN).arg("flow").arg(dir.path().join("flow.yml")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("nonexistent_module_xyz") && err.contains("pea `p`"), "{err}");

    std::fs::write(dir.path().join("empty.py"), "x = 1\n").unwrap();
    std::fs::write(dir.path().join("flow.yml"), "jtype: Flow\nexecutors:\n  - name: p\n    uses: Missing\n    py_modules: [empty.py]\n").unwrap();
    let out = std::process::Command::new(crate::common::BIN).arg("flow").arg(dir.path().join("flow.yml")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("class Missing is not defined"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_stuck_python_executor_times_out_and_never_outlives_the_flow() {
    let mut flow = FlowProc::start_in(
        "jtype: Flow\nwith: {timeout_ms: 1000}\nexecutors:\n  - name: stuck\n    uses: Stuck\n    py_modules: [stuck.py]\n",
        &[("stuck.py", "from jina import Executor, requests\n\nclass Stuck(Executor):\n    @requests\n    def spin(self, docs, **kwargs):\n        while True:\n            pass\n")],
    );
    let marker = flow.dir.join("stuck.py").display().to_string();
    // Any process whose command line names the module: only the bridge does.
    let alive = || {
        std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline")).map(|c| String::from_utf8_lossy(&c).contains(&marker)).unwrap_or(false)
        })
    };
    assert!(alive(), "the bridge runs");
    let (status, answer) = flow.post("/index", json!({"data": [{"id": "a"}]})).await;
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["not_answering"], json!(["stuck"]), "{answer}");
    assert_eq!(flow.stop(), Some(0), "the flow stops although its pea does not answer");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(!alive(), "the Python process ended after its flow");
}
