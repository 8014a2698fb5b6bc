//! Remote pods across real hosts: three network namespaces made by the test (veth pairs, own
//! addresses, no shared loopback). Host A runs `jinad flow`; hosts B and C each run `jinad serve`
//! with a token. The daemons share this machine's Docker engine (its containers publish on the
//! root-namespace end of each host's link, `--publish-ip`/`--advertise-host`), so an address
//! bug shows as a connection that goes nowhere, not as a loopback shortcut that happens to work.
//!
//! Needs root (CI runs as root) for `ip netns`; the test says so and fails otherwise.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::flow::{docs, first_line, match_ids, wait_exit};
use crate::common::{Daemon, BIN};

const TOKEN_B: &str = "token-of-host-b-0123456789";
const TOKEN_C: &str = "token-of-host-c-9876543210";

fn sh(args: &[&str]) -> bool {
    Command::new(args[0]).args(&args[1..]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn must(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("run");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Network namespaces `<prefix>a`, `b`, `c`: host k has 10.77.k.2 inside and 10.77.k.1 at the
/// root end of its link (where its daemon publishes), routed through the root namespace.
pub struct Hosts {
    prefix: String,
    names: Vec<String>,
}

impl Hosts {
    pub fn make(prefix: &str, n: usize) -> Hosts {
        let hosts = Hosts { prefix: prefix.to_string(), names: (0..n).map(|k| format!("{prefix}{}", (b'a' + k as u8) as char)).collect() };
        hosts.remove();
        // Docker's FORWARD policy is DROP: let the test hosts route to each other.
        must(&["iptables", "-I", "DOCKER-USER", "-i", &format!("{prefix}+"), "-o", &format!("{prefix}+"), "-j", "ACCEPT"]);
        for (k, ns) in hosts.names.iter().enumerate() {
            let k = k + 1;
            let (root_end, ns_end) = (format!("{ns}-r"), format!("{ns}-n"));
            must(&["ip", "netns", "add", ns]);
            must(&["ip", "link", "add", &root_end, "type", "veth", "peer", "name", &ns_end]);
            must(&["ip", "link", "set", &ns_end, "netns", ns]);
            must(&["ip", "addr", "add", &format!("10.77.{k}.1/24"), "dev", &root_end]);
            must(&["ip", "link", "set", &root_end, "up"]);
            let (inside, gateway) = (format!("10.77.{k}.2/24"), format!("10.77.{k}.1"));
            for cmd in [
                vec!["addr", "add", inside.as_str(), "dev", ns_end.as_str()],
                vec!["link", "set", ns_end.as_str(), "up"],
                vec!["link", "set", "lo", "up"],
                vec!["route", "add", "default", "via", gateway.as_str()],
            ] {
                let mut args = vec!["ip", "netns", "exec", ns.as_str(), "ip"];
                args.extend(cmd);
                must(&args);
            }
        }
        hosts
    }

    pub fn ns(&self, k: usize) -> &str {
        &self.names[k]
    }

    /// Drops every packet from host `from` to host `to` (both its addresses): a cut link.
    pub fn cut(&self, from: usize, to: usize) {
        must(&["ip", "netns", "exec", self.ns(from), "iptables", "-I", "OUTPUT", "-d", &format!("10.77.{}.0/24", to + 1), "-j", "DROP"]);
    }

    pub fn mend(&self, from: usize, to: usize) {
        must(&["ip", "netns", "exec", self.ns(from), "iptables", "-D", "OUTPUT", "-d", &format!("10.77.{}.0/24", to + 1), "-j", "DROP"]);
    }

    fn remove(&self) {
        for ns in &self.names {
            sh(&["ip", "netns", "del", ns]);
            sh(&["ip", "link", "del", &format!("{ns}-r")]);
        }
        while sh(&["iptables", "-D", "DOCKER-USER", "-i", &format!("{}+", self.prefix), "-o", &format!("{}+", self.prefix), "-j", "ACCEPT"]) {}
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `jinad flow` in a namespace, its stderr kept (remote logs land there).
struct NsFlow {
    child: Option<Child>,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl NsFlow {
    /// Starts the flow; `Err(stderr)` when it exits before it is ready.
    fn start(ns: &str, dir: &std::path::Path, args: &[&str]) -> Result<NsFlow, (Option<i32>, String, Duration)> {
        let started = Instant::now();
        // `flow.yml` relative to the working directory, as people type it.
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, BIN, "flow", "flow.yml"])
            .current_dir(dir)
            .args(["--port", "0", "--host", "10.77.1.2", "--remote-lease", "6", "--remote-timeout", "180"])
            .args(args)
            .env("JINAD_TOKEN_B", TOKEN_B)
            .env("JINAD_TOKEN_C", TOKEN_C)
            .env("JINAD_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jinad flow");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err_pipe, kept) = (child.stderr.take().expect("stderr"), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                eprintln!("flow: {line}");
                if let Ok(mut s) = kept.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        let line = first_line(child.stdout.take().expect("stdout")).recv_timeout(Duration::from_secs(300)).unwrap_or_default();
        match line.split_whitespace().find(|w| w.starts_with("http://")) {
            Some(url) => Ok(NsFlow { child: Some(child), url: url.to_string(), stderr }),
            None => {
                let code = wait_exit(&mut child, Duration::from_secs(30));
                std::thread::sleep(Duration::from_millis(200));
                let text = stderr.lock().map(|s| s.clone()).unwrap_or_default();
                Err((code, text, started.elapsed()))
            }
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Ctrl-C; returns the exit code and how long closing took.
    fn stop(&mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        (wait_exit(&mut child, Duration::from_secs(60)), started.elapsed())
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value, Duration) {
        let started = Instant::now();
        let resp = reqwest::Client::new().post(format!("{}{path}", self.url)).json(&body).timeout(Duration::from_secs(60)).send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null), started.elapsed())
    }
}

impl Drop for NsFlow {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The pods and peas of a daemon, and its containers (by its `jinad.daemon` label).
async fn deployed(daemon: &Daemon) -> (usize, usize) {
    let pods = daemon.get("/pods").await.1.as_array().map_or(0, Vec::len);
    let peas = daemon.get("/peas").await.1.as_array().map_or(0, Vec::len);
    (pods, peas)
}

fn containers_of(daemon_id: &str) -> usize {
    let out = Command::new("docker").args(["ps", "-aq", "--filter", &format!("label=jinad.daemon={daemon_id}")]).output().expect("docker ps");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
}

/// Waits until `daemon` has no pod, no pea and no container; panics after `timeout`.
async fn wait_empty(daemon: &Daemon, id: &str, timeout: Duration, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (pods, peas) = deployed(daemon).await;
        let containers = containers_of(id);
        if pods == 0 && peas == 0 && containers == 0 {
            return started.elapsed();
        }
        assert!(started.elapsed() < timeout, "{what}: still {pods} pods, {peas} peas, {containers} containers after {timeout:?}\n{}", daemon.stderr());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn write_flow(dir: &std::path::Path, b: &str, c: &str) {
    let yaml = format!(
        "jtype: Flow\nwith: {{timeout_ms: 4000}}\nexecutors:\n  - name: enc\n    uses: HashEncoder\n    with: {{dim: 64}}\n  - name: mid\n    uses: Passthrough\n    host: {b}\n    token: ${{{{ ENV.JINAD_TOKEN_B }}}}\n  - name: idx\n    uses: VectorIndexer\n    with: {{top_k: 10}}\n    shards: 2\n    host:\n      - {{host: {b}, token: '${{{{ ENV.JINAD_TOKEN_B }}}}'}}\n      - {{host: {c}, token: '${{{{ ENV.JINAD_TOKEN_C }}}}'}}\n"
    );
    std::fs::write(dir.join("flow.yml"), yaml).expect("write flow.yml");
    std::fs::write(dir.join("README.txt"), "a project uploaded to the remote hosts\n").expect("write");
    // Another Flow of the project, with a token in it: Flow YAMLs are never uploaded.
    std::fs::write(dir.join("prod.yaml"), "jtype: Flow\nexecutors:\n  - name: x\n    host: h:1\n    token: inline-secret\n").expect("write");
}

fn host_of(daemon: &Daemon) -> String {
    daemon.url.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn a_flow_spans_three_hosts_fails_cleanly_and_leaves_nothing_behind() {
    assert!(sh(&["ip", "netns", "list"]) && nix_root(), "this test makes network namespaces: run it as root (CI does)");
    let hosts = Hosts::make("jrt", 3);
    let serve = |k: usize| {
        vec![
            "--host".to_string(),
            format!("10.77.{k}.2"),
            "--publish-ip".into(),
            format!("10.77.{k}.1"),
            "--advertise-host".into(),
            format!("10.77.{k}.1"),
            "--network-pool".into(),
            format!("10.21{k}.0.0/16"),
        ]
    };
    let (args_b, args_c) = (serve(2), serve(3));
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let ns_b = ["ip", "netns", "exec", hosts.ns(1)];
    let ns_c = ["ip", "netns", "exec", hosts.ns(2)];
    let b = Daemon::start_under(&ns_b, TOKEN_B, &refs(&args_b)).await;
    let c = Daemon::start_under(&ns_c, TOKEN_C, &refs(&args_c)).await;
    let (id_b, id_c) = (b.daemon_id().await, c.daemon_id().await);
    let (host_b, host_c) = (host_of(&b), host_of(&c));
    assert!(host_b.starts_with("10.77.2.2:") && host_c.starts_with("10.77.3.2:"), "{host_b} {host_c}");

    // Without the token a daemon off loopback answers only liveness and readiness.
    let anonymous = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(anonymous.get(format!("{}/ready", b.url)).send().await.expect("ready")), 200);
    let refused = anonymous.get(format!("{}/workspaces", b.url)).send().await.expect("GET");
    assert_eq!(refused.status().as_u16(), 401);
    assert!(refused.headers().get("www-authenticate").is_some());
    assert_eq!(refused.json::<Value>().await.expect("body")["code"], "unauthorized");

    let dir = tempfile::tempdir().expect("dir");

    // 1. A wrong token, and an unreachable host: the start fails naming the host, in bounded time.
    write_flow(dir.path(), &host_b, &host_c);
    let yaml = std::fs::read_to_string(dir.path().join("flow.yml")).expect("read");
    std::fs::write(dir.path().join("flow.yml"), yaml.replace("JINAD_TOKEN_C", "JINAD_TOKEN_B")).expect("write");
    let Err((code, stderr, took)) = NsFlow::start(hosts.ns(0), dir.path(), &[]) else { panic!("a wrong token must fail the start") };
    assert_ne!(code, Some(0));
    assert!(stderr.contains(&format!("host {host_c}")) && stderr.contains("token was refused"), "{stderr}");
    assert!(took < Duration::from_secs(120), "{took:?}");
    write_flow(dir.path(), &host_b, "10.77.3.9:8000");
    let Err((code, stderr, took)) = NsFlow::start(hosts.ns(0), dir.path(), &[]) else { panic!("an unreachable host must fail the start") };
    assert_ne!(code, Some(0));
    assert!(stderr.contains("host 10.77.3.9:8000") && stderr.contains("unreachable"), "{stderr}");
    assert!(took < Duration::from_secs(30), "unreachable must fail fast, took {took:?}");
    wait_empty(&b, &id_b, Duration::from_secs(60), "B after failed starts").await;

    // 2. The flow: enc here, mid on B, idx sharded over B and C. Index, then search.
    write_flow(dir.path(), &host_b, &host_c);
    let mut flow = match NsFlow::start(hosts.ns(0), dir.path(), &[]) {
        Ok(flow) => flow,
        Err(e) => {
            let ps = Command::new("docker").args(["ps", "-a", "--format", "{{.Names}} {{.Status}} {{.Ports}}"]).output().expect("ps");
            panic!(
                "flow did not start: {e:?}\nB: {}\nC: {}\n{}\nB stderr: {}",
                b.get("/peas").await.1,
                c.get("/peas").await.1,
                String::from_utf8_lossy(&ps.stdout),
                b.stderr()
            )
        }
    };
    let texts: Vec<(String, String)> = (0..12).map(|i| (format!("d{i}"), format!("document number {i} about topic {}", i % 3))).collect();
    let pairs: Vec<(&str, &str)> = texts.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (status, body, _) = flow.post("/index", json!({"data": docs(&pairs)})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = flow.post("/search", json!({"data": docs(&[("q", "document number 7 about topic 1")])})).await;
    assert_eq!(status, 200, "{body}");
    let ids = match_ids(&body, 0);
    assert_eq!(ids.first().map(String::as_str), Some("d7"), "{body}");
    assert_eq!(ids.len(), 10, "top_k over both shards: {body}");
    // Both shards answered: every indexed document is findable.
    let (status, body, _) = flow.post("/search", json!({"data": docs(&[("a", "document number 0 about topic 0"), ("b", "document number 11 about topic 2")])})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(match_ids(&body, 0).first().map(String::as_str), Some("d0"));
    assert_eq!(match_ids(&body, 1).first().map(String::as_str), Some("d11"));
    assert_eq!(deployed(&b).await, (1, 1), "mid and idx's shard 0 on B");
    assert_eq!(deployed(&c).await, (0, 1), "idx's shard 1 on C");
    let workspaces_b = b.get("/workspaces").await.1;
    assert_eq!(workspaces_b.as_array().map(Vec::len), Some(1), "{workspaces_b}");
    assert_eq!(workspaces_b[0]["files"], json!(["README.txt"]), "only the project, no Flow YAML: {workspaces_b}");
    let logs = flow.stderr();
    assert!(logs.contains(&format!("[mid@{host_b}]")) && logs.contains(&format!("[idx@{host_c}]")), "remote logs in the flow's output:\n{logs}");

    // 3. Closing removes everything it started on every host.
    let (code, took) = flow.stop();
    assert_eq!(code, Some(0), "{}", flow.stderr());
    assert!(took < Duration::from_secs(30), "{took:?}");
    wait_empty(&b, &id_b, Duration::from_secs(30), "B after close").await;
    wait_empty(&c, &id_c, Duration::from_secs(30), "C after close").await;

    // 4. A second start uploads nothing (same digest); then C's link is cut while it runs.
    let mut flow = NsFlow::start(hosts.ns(0), dir.path(), &[]).unwrap_or_else(|e| panic!("flow did not start again: {e:?}"));
    assert_eq!(b.get("/workspaces").await.1.as_array().map(Vec::len), Some(1), "the workspace on B is reused");
    assert_eq!(c.get("/workspaces").await.1.as_array().map(Vec::len), Some(1), "the workspace on C is reused");
    assert!(flow.stderr().contains("reusing"), "{}", flow.stderr());
    let (status, body, _) = flow.post("/search", json!({"data": docs(&[("q", "document number 7 about topic 1")])})).await;
    assert_eq!(status, 200, "data kept by the shards across restarts: {body}");
    assert_eq!(match_ids(&body, 0).first().map(String::as_str), Some("d7"), "{body}");
    // A second Flow of the same project would share the shards' data directories: refused.
    let Err((code, stderr, _)) = NsFlow::start(hosts.ns(0), dir.path(), &[]) else { panic!("a second copy must not start") };
    assert!(code != Some(0) && stderr.contains("pod_name_taken"), "{stderr}");
    assert_eq!(deployed(&b).await, (1, 1), "the running Flow's pods are untouched");
    hosts.cut(0, 2);
    for _ in 0..3 {
        let (status, body, took) = flow.post("/search", json!({"data": docs(&[("q", "topic 1")])})).await;
        assert_ne!(status, 200, "a search needing the cut shard cannot succeed: {body}");
        assert!(body.to_string().contains("idx/shard-1"), "the error names the pod: {body}");
        assert!(took < Duration::from_secs(10), "errors within the timeout, not hangs: {took:?}");
    }
    // Closing reaches B but not C: C's pea goes when its lease runs out, once C can be asked.
    let (code, took) = flow.stop();
    assert!(took < Duration::from_secs(30), "closing does not hang on a cut host: {took:?}");
    assert!(code.is_some(), "{}", flow.stderr());
    wait_empty(&b, &id_b, Duration::from_secs(30), "B after close with C cut").await;
    hosts.mend(0, 2);
    let took = wait_empty(&c, &id_c, Duration::from_secs(60), "C after its lease ran out").await;
    eprintln!("C removed the orphaned pea {took:?} after the link came back");

    // 5. kill -9: no close at all; both hosts remove the pods when the lease runs out.
    let mut flow = NsFlow::start(hosts.ns(0), dir.path(), &[]).unwrap_or_else(|e| panic!("flow did not start a third time: {e:?}"));
    assert_eq!(deployed(&b).await, (1, 1));
    flow.kill9();
    wait_empty(&b, &id_b, Duration::from_secs(60), "B after kill -9").await;
    wait_empty(&c, &id_c, Duration::from_secs(60), "C after kill -9").await;

    // 6. The project changed: its workspace on each host is updated in place (rebuilt), so the
    //    shards find their data again and nothing piles up on the hosts.
    let ids = |list: Value| list.as_array().map(|l| l.iter().filter_map(|w| w["id"].as_str().map(str::to_string)).collect::<Vec<_>>()).unwrap_or_default();
    let (old_b, old_c) = (ids(b.get("/workspaces").await.1), ids(c.get("/workspaces").await.1));
    assert_eq!((old_b.len(), old_c.len()), (1, 1));
    std::fs::write(dir.path().join("README.txt"), "a new version of the project\n").expect("write");
    let mut flow = NsFlow::start(hosts.ns(0), dir.path(), &[]).unwrap_or_else(|e| panic!("flow did not start a fourth time: {e:?}"));
    assert!(flow.stderr().contains(&format!("updating {}", old_b[0])), "{}", flow.stderr());
    assert_eq!((ids(b.get("/workspaces").await.1), ids(c.get("/workspaces").await.1)), (old_b.clone(), old_c.clone()));
    let view = b.get(&format!("/workspaces/{}", old_b[0])).await.1;
    assert_eq!(view["builds"], 2, "rebuilt once for the new version: {view}");
    let (status, body, _) = flow.post("/search", json!({"data": docs(&[("q", "document number 7 about topic 1")])})).await;
    assert_eq!((status, match_ids(&body, 0).first().map(String::as_str)), (200, Some("d7")), "the shards kept their data: {body}");
    assert_eq!(flow.stop().0, Some(0), "{}", flow.stderr());
    wait_empty(&b, &id_b, Duration::from_secs(30), "B after the fourth close").await;
    wait_empty(&c, &id_c, Duration::from_secs(30), "C after the fourth close").await;

    // Leave the engine as we found it: the workspaces (images, networks) go too.
    for daemon in [&b, &c] {
        for ws in daemon.get("/workspaces").await.1.as_array().cloned().unwrap_or_default() {
            daemon.remove(ws["id"].as_str().unwrap_or_default()).await;
        }
    }
}

fn nix_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
