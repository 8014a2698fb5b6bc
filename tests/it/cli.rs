//! The CLI client against a real daemon on the real engine: `jinad workspaces create DIR` packs
//! the directory (honouring `.jinadignore`), shows the upload and the live build log and prints
//! the id; `jinad flows start` prints a gateway URL that answers; `jinad events` (paged and
//! followed) lists every transition of the run, in order; a failing build exits non-zero with
//! its reason.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Daemon, BIN};

fn jinad(daemon: &Daemon, args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("JINAD_HOST", &daemon.url).env_remove("JINAD_TOKEN").output().expect("run jinad")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `(object, from, to)` of each event, in order.
fn transitions(events: &[Value]) -> Vec<(String, String, String)> {
    let state = |v: &Value, none: &str| v.as_str().unwrap_or(none).to_string();
    events.iter().map(|e| (e["object_id"].as_str().unwrap_or("").to_string(), state(&e["from"], "new"), state(&e["to"], "removed"))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_uploads_a_directory_starts_a_flow_and_events_show_the_whole_run() {
    let daemon = Daemon::start(&[]).await;
    // A follower from the start: it must see the same transitions, live.
    let mut follower = Command::new(BIN)
        .args(["events", "--follow", "--json"])
        .env("JINAD_HOST", &daemon.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("jinad events -f");
    let followed = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(followed).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str(&line) {
                let _ = tx.send(event);
            }
        }
    });

    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    std::fs::write(dir.join(".jinad"), "python = 3.11\n").unwrap();
    std::fs::write(dir.join("flow.yml"), "jtype: Flow\nexecutors:\n  - name: enc\n    uses: HashEncoder\n    with: {dim: 8}\n").unwrap();
    std::fs::write(dir.join("unique.txt"), uuid::Uuid::new_v4().to_string()).unwrap();
    std::fs::write(dir.join(".jinadignore"), "*.bin\nscratch/\n").unwrap();
    std::fs::write(dir.join("big.bin"), vec![7u8; 1 << 20]).unwrap();
    std::fs::create_dir(dir.join("scratch")).unwrap();
    std::fs::write(dir.join("scratch/notes"), "x").unwrap();

    let out = jinad(&daemon, &["workspaces", "create", dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}\n{}", daemon.stderr());
    let ws = stdout.trim().to_string();
    assert!(ws.starts_with("jworkspace-") && !ws.contains('\n'), "the id alone on stdout: {stdout}");
    assert!(stderr.contains("packed 4 files") && stderr.contains("uploaded"), "{stderr}");
    assert!(stderr.contains("| Step 1/"), "the live build log: {stderr}");
    assert!(stderr.contains(&format!("{ws} ACTIVE")), "{stderr}");
    let (_, view) = daemon.get(&format!("/workspaces/{ws}")).await;
    let mut files: Vec<&str> = view["files"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    files.sort();
    assert_eq!(files, [".jinad", ".jinadignore", "flow.yml", "unique.txt"], "`.jinadignore` left the rest out");

    // The table and the JSON list show it.
    let out = jinad(&daemon, &["ws", "ls"]);
    assert!(text(&out.stdout).lines().any(|l| l.starts_with(&ws) && l.contains("ACTIVE")), "{}", text(&out.stdout));
    let out = jinad(&daemon, &["workspaces", "ls", "--json"]);
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("--json is the API's list");
    assert_eq!(listed.len(), 1);

    let out = jinad(&daemon, &["flows", "start", &ws, "--file", "flow.yml"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), daemon.stderr());
    let url = text(&out.stdout).trim().to_string();
    assert!(url.starts_with("http://"), "the gateway URL: {url}");
    let search = reqwest::Client::new()
        .post(format!("{url}/search"))
        .json(&serde_json::json!({"data": [{"text": "hello"}]}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(search.status().as_u16(), 200, "{:?}", search.text().await);
    let out = jinad(&daemon, &["flows", "ls", "-q"]);
    let flow = text(&out.stdout).trim().to_string();
    assert!(flow.starts_with("jflow-"), "{flow}");
    let out = jinad(&daemon, &["flows", "logs", &flow]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Delete the flow and the workspace, waiting for both.
    let out = jinad(&daemon, &["flows", "rm", "--wait", &flow]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = jinad(&daemon, &["workspaces", "rm", "--wait", &ws]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Every transition of the run, in order, paged…
    let out = jinad(&daemon, &["events", "--object", &ws, "--json"]);
    let events: Vec<Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("one JSON event per line")).collect();
    let expected = vec![
        (ws.clone(), "new".into(), "PENDING".into()),
        (ws.clone(), "PENDING".into(), "ACTIVE".into()),
        (flow.clone(), "new".into(), "PENDING".into()),
        (flow.clone(), "PENDING".into(), "ACTIVE".into()),
        (flow.clone(), "ACTIVE".into(), "DELETING".into()),
        (flow.clone(), "DELETING".into(), "removed".into()),
        (ws.clone(), "ACTIVE".into(), "DELETING".into()),
        (ws.clone(), "DELETING".into(), "removed".into()),
    ];
    assert_eq!(transitions(&events), expected, "{events:#?}");
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // …and as the follower saw them, live.
    let mut live = Vec::new();
    while live.len() < expected.len() {
        live.push(rx.recv_timeout(Duration::from_secs(10)).expect("the follower got every event"));
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(live, events, "the followed stream is the same timeline");

    // `since` reads on from a seq.
    let out = jinad(&daemon, &["events", "--since", &seqs[5].to_string(), "--json"]);
    assert_eq!(text(&out.stdout).lines().count(), 2, "{}", text(&out.stdout));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_build_exits_non_zero_with_its_reason() {
    let daemon = Daemon::start(&[]).await;
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join(".jinad"), "python = 3.11\nno_such_setting = 1\n").unwrap();
    let out = jinad(&daemon, &["workspaces", "create", project.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("FAILED invalid_jinad") && stderr.contains("no_such_setting"), "{stderr}");
    // Errors of the API carry their code; a daemon that is not there is named.
    let out = jinad(&daemon, &["workspaces", "inspect", "jworkspace-00000000-0000-4000-8000-000000000000"]);
    assert!(!out.status.success() && text(&out.stderr).contains("workspace_not_found"), "{}", text(&out.stderr));
    for bad in ["..", "", "a/b"] {
        let out = jinad(&daemon, &["workspaces", "inspect", bad]);
        assert!(!out.status.success() && text(&out.stderr).contains("is not an id"), "{bad}: {}", text(&out.stderr));
    }
    let out = Command::new(BIN).args(["ws", "ls", "-H", "127.0.0.1:9"]).output().unwrap();
    assert!(!out.status.success() && text(&out.stderr).contains("unreachable"), "{}", text(&out.stderr));
    let empty = tempfile::tempdir().unwrap();
    let out = jinad(&daemon, &["workspaces", "create", empty.path().to_str().unwrap()]);
    assert!(!out.status.success() && text(&out.stderr).contains("nothing to upload"), "{}", text(&out.stderr));
}
