//! TLS with a private CA and a certificate made here (openssl): the daemon and a Flow's gateway serve HTTPS; the
//! CLI verifies with `--ca-file` and refuses without it; plain HTTP to the port fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{Daemon, BIN};

/// A private CA and a certificate it signed for 127.0.0.1 and localhost: (CA, cert, key).
pub fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, ca_key, cert, key, csr, ext) = (dir.join("ca.pem"), dir.join("ca.key"), dir.join("cert.pem"), dir.join("key.pem"), dir.join("leaf.csr"), dir.join("leaf.ext"));
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: Vec<Vec<String>> = vec![
        [&["req", "-x509"][..], &ec, &["-days", "2", "-subj", "/CN=jinad-test-ca", "-keyout"]].concat().iter().map(|s| s.to_string()).chain([ca_key.display().to_string(), "-out".into(), ca.display().to_string()]).collect(),
        [&["req"][..], &ec, &["-subj", "/CN=127.0.0.1", "-keyout"]].concat().iter().map(|s| s.to_string()).chain([key.display().to_string(), "-out".into(), csr.display().to_string()]).collect(),
        ["x509", "-req", "-days", "2", "-CAcreateserial", "-in"].iter().map(|s| s.to_string())
            .chain([csr.display().to_string(), "-CA".into(), ca.display().to_string(), "-CAkey".into(), ca_key.display().to_string(), "-extfile".into(), ext.display().to_string(), "-out".into(), cert.display().to_string()])
            .collect(),
    ];
    for args in steps {
        let out = Command::new("openssl").args(&args).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (ca, cert, key)
}

fn client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap()).build().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_and_the_gateway_serve_https_that_clients_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(dir.path());
    let mut daemon = Daemon::start_without_docker(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]).await;
    assert!(daemon.url.starts_with("https://127.0.0.1:"), "{}", daemon.url);
    daemon.http = client(&ca);
    let (status, body) = daemon.get("/status").await;
    assert_eq!(status, 200, "{body}");

    // The CLI: verified with the CA file, refused without it.
    let out = Command::new(BIN).args(["status", "--ca-file", ca.to_str().unwrap()]).env("JINAD_HOST", &daemon.url).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("daemon_id"));
    let out = Command::new(BIN).args(["status"]).env("JINAD_HOST", &daemon.url).env_remove("JINAD_CA_FILE").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.to_lowercase().contains("certificate"), "{stderr}");
    // The CLI says what is wrong when told http:// for a TLS daemon.
    let plain = daemon.url.replace("https://", "http://");
    let out = Command::new(BIN).args(["status", "-H", &plain]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("use https://"), "{}", String::from_utf8_lossy(&out.stderr));
    // Plain HTTP on the TLS port gets no answer.
    assert!(reqwest::get(format!("{plain}/status")).await.map(|r| r.status().is_success()).unwrap_or(false) == false);
    // A key that is not a key: the daemon refuses to start, saying which file.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a key").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--port", "0", "--data-dir", dir.path().join("d").to_str().unwrap(), "--tls-cert", cert.to_str().unwrap(), "--tls-key", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--tls-key"), "{}", String::from_utf8_lossy(&out.stderr));

    // A Flow's gateway over HTTPS.
    let flow = dir.path().join("flow.yml");
    std::fs::write(&flow, "jtype: Flow\nexecutors:\n  - name: enc\n    uses: HashEncoder\n    with: {dim: 4}\n").unwrap();
    let mut child = Command::new(BIN)
        .args(["flow", flow.to_str().unwrap(), "--port", "0", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let url = loop {
        let line = lines.next().expect("the flow announces itself").unwrap();
        if let Some(rest) = line.strip_prefix("jinad flow ready: ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    assert!(url.starts_with("https://"), "{url}");
    let answer = client(&ca)
        .post(format!("{url}/index"))
        .json(&serde_json::json!({"data": [{"text": "over tls"}]}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("index over https");
    assert_eq!(answer.status().as_u16(), 200);
    let _ = child.kill();
    let _ = child.wait();
}
