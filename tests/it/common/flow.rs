//! Real `jinad flow`, `jinad pea`/`pod` and `jinad gateway` processes for the runtime tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::BIN;

/// A `jinad flow` process started from a YAML text, in a directory of its own.
pub struct FlowProc {
    pub dir: PathBuf,
    _guard: Option<tempfile::TempDir>,
    pub url: String,
    child: Option<Child>,
    pub http: reqwest::Client,
}

impl FlowProc {
    pub fn start(yaml: &str) -> FlowProc {
        let guard = tempfile::Builder::new().prefix("jinad-flow-").tempdir().expect("temp dir");
        let dir = guard.path().to_path_buf();
        let mut flow = FlowProc { dir, _guard: Some(guard), url: String::new(), child: None, http: reqwest::Client::new() };
        flow.spawn(yaml, &[]);
        flow
    }

    /// Like `start`, with `files` (relative path, content) written next to the YAML first.
    pub fn start_in(yaml: &str, files: &[(&str, &str)]) -> FlowProc {
        let guard = tempfile::Builder::new().prefix("jinad-flow-").tempdir().expect("temp dir");
        let dir = guard.path().to_path_buf();
        for (path, content) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, content).expect("write");
        }
        let mut flow = FlowProc { dir, _guard: Some(guard), url: String::new(), child: None, http: reqwest::Client::new() };
        flow.spawn(yaml, &[]);
        flow
    }

    pub fn start_with(yaml: &str, args: &[&str]) -> FlowProc {
        let guard = tempfile::Builder::new().prefix("jinad-flow-").tempdir().expect("temp dir");
        let dir = guard.path().to_path_buf();
        let mut flow = FlowProc { dir, _guard: Some(guard), url: String::new(), child: None, http: reqwest::Client::new() };
        flow.spawn(yaml, args);
        flow
    }

    fn spawn(&mut self, yaml: &str, args: &[&str]) {
        let file = self.dir.join("flow.yml");
        std::fs::write(&file, yaml).expect("write flow.yml");
        let mut cmd = Command::new(BIN);
        // A process group of its own, so `stop` can signal it like a terminal's Ctrl-C does.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let (child, line) = spawn_until_line(cmd.arg("flow").arg(&file).args(["--port", "0"]).args(args));
        self.url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no URL in {line:?}")).to_string();
        self.child = Some(child);
    }

    /// Stops the flow as Ctrl-C in a terminal does (SIGINT to its whole process group) and waits
    /// for it to exit; returns its exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-INT", "--", &format!("-{}", child.id())]).status();
        wait_exit(&mut child, Duration::from_secs(15))
    }

    /// Stops and starts the same YAML again (same directory, so the same workspace).
    pub fn restart(&mut self) {
        assert_eq!(self.stop(), Some(0), "the flow must exit cleanly");
        let yaml = std::fs::read_to_string(self.dir.join("flow.yml")).expect("read flow.yml");
        self.spawn(&yaml, &[]);
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self.http.post(format!("{}{path}", self.url)).json(&body).send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// `kill -9`: the flow gets no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn workspace(&self) -> PathBuf {
        self.dir.join("workspace")
    }
}

impl Drop for FlowProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The first line `stdout` prints (empty if it closes first), read by a thread that then keeps
/// draining it so the child never blocks on a full pipe.
pub fn first_line(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let mut sink = String::new();
        while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    rx
}

/// Starts `cmd` with stdout piped and returns once it printed its first line.
pub fn spawn_until_line(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn jinad");
    let rx = first_line(child.stdout.take().expect("stdout"));
    let line = rx.recv_timeout(Duration::from_secs(30)).expect("the process printed its ready line");
    assert!(!line.is_empty(), "the process exited before it was ready: {:?}", child.try_wait());
    (child, line)
}

pub fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status();
}

pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Runs `jinad flow FILE` on a YAML that must be refused; returns its exit code and stderr.
pub fn refuse(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.yml");
    std::fs::write(&file, yaml).expect("write");
    let out = Command::new(BIN).arg("flow").arg(&file).output().expect("run jinad flow");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

pub fn docs(texts: &[(&str, &str)]) -> Value {
    Value::Array(texts.iter().map(|(id, text)| json!({"id": id, "text": text})).collect())
}

pub fn match_ids(answer: &Value, doc: usize) -> Vec<String> {
    answer["data"][doc]["matches"]
        .as_array()
        .map(|m| m.iter().map(|x| x["id"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}

pub fn routes(answer: &Value) -> Vec<String> {
    answer["routes"].as_array().map(|r| r.iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect()).unwrap_or_default()
}
