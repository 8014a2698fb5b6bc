//! Test harness: real `jinad serve` processes on real ports with their own data directories, a
//! real HTTP client, and the real Docker engine for inspection.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_jinad");

/// Held by tests that collect the build cache (`POST /gc` evicts across the engine: runtime
/// images of other binaries) or count on what it holds.
pub static ENGINE_CACHE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The base image template the Docker tests build on (see docker/build-base-image.sh).
pub fn base_template() -> String {
    std::env::var("JINAD_TEST_BASE_IMAGE_TEMPLATE").unwrap_or_else(|_| "jinad/python:{python}-bookworm".into())
}

pub struct Daemon {
    pub data: PathBuf,
    _data_guard: Option<tempfile::TempDir>,
    pub url: String,
    child: Option<Child>,
    pub args: Vec<String>,
    pub http: reqwest::Client,
    /// A command the daemon runs under (`ip netns exec NS`), if any.
    pub prefix: Vec<String>,
}

/// A client that sends `Authorization: Bearer <token>` with every request.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("a header value"));
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

impl Daemon {
    /// A daemon on the real Docker engine, run under `prefix` (`ip netns exec NS`), with the API
    /// token `token` (its client sends it).
    pub async fn start_under(prefix: &[&str], token: &str, extra: &[&str]) -> Daemon {
        let guard = tempfile::Builder::new().prefix("jinad-test-").tempdir().expect("temp dir");
        let data = guard.path().to_path_buf();
        let token_file = data.join("token");
        std::fs::write(&token_file, format!("{token}\n")).expect("token file");
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !extra.contains(&"--base-image-template") {
            args.extend(["--base-image-template".to_string(), base_template()]);
        }
        args.extend(["--token-file".to_string(), token_file.display().to_string()]);
        let mut daemon = Daemon {
            data,
            _data_guard: Some(guard),
            url: String::new(),
            child: None,
            args,
            http: client_with_token(token),
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
        };
        daemon.spawn();
        daemon
    }

    /// A daemon on the real Docker engine.
    pub async fn start(extra: &[&str]) -> Daemon {
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !extra.contains(&"--base-image-template") {
            args.extend(["--base-image-template".to_string(), base_template()]);
        }
        Self::start_with(args).await
    }

    /// A daemon whose Docker engine is unreachable.
    pub async fn start_without_docker(extra: &[&str]) -> Daemon {
        let mut args = vec!["--docker-host".to_string(), "unix:///nonexistent/docker.sock".to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_with(args).await
    }

    pub async fn start_with(args: Vec<String>) -> Daemon {
        let guard = tempfile::Builder::new().prefix("jinad-test-").tempdir().expect("temp dir");
        let data = guard.path().to_path_buf();
        let mut daemon = Daemon { data, _data_guard: Some(guard), url: String::new(), child: None, args, http: reqwest::Client::new(), prefix: Vec::new() };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        let mut command = match self.prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--port", "0"])
            .args(if self.args.iter().any(|a| a == "--reconcile-interval") { &[][..] } else { &["--reconcile-interval", "3600"][..] })
            .args(&self.args)
            .env("JINAD_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().create(true).append(true).open(self.data.join("daemon.stderr")).expect("stderr file"),
            ))
            .spawn()
            .expect("start jinad");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "jinad did not start; stderr: {}", self.stderr());
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("jinad listening on ") {
                        self.url = url.trim().to_string();
                        break;
                    }
                }
                _ => panic!("jinad exited before listening; stderr: {}", self.stderr()),
            }
        }
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.data.join("daemon.stderr")).unwrap_or_default()
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same data directory (a new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn db(&self) -> PathBuf {
        self.data.join("jinad.sqlite")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.url)).send().await.expect("GET");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn text(&self, path: &str) -> String {
        self.http.get(format!("{}{path}", self.url)).send().await.expect("GET").text().await.expect("body")
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let response = self.http.delete(format!("{}{path}", self.url)).send().await.expect("DELETE");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Multipart upload of `(file name, bytes)` parts in the `files` field.
    pub async fn upload(&self, method: reqwest::Method, path: &str, files: &[(&str, Vec<u8>)]) -> (u16, Value) {
        let mut form = reqwest::multipart::Form::new();
        for (name, bytes) in files {
            form = form.part("files", reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.to_string()));
        }
        let response = self.http.request(method, format!("{}{path}", self.url)).multipart(form).send().await.expect("upload");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn create(&self, files: &[(&str, Vec<u8>)]) -> String {
        let (status, body) = self.upload(reqwest::Method::POST, "/workspaces", files).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["state"], "PENDING");
        body["id"].as_str().expect("id").to_string()
    }

    /// Poll until the workspace is in one of `states`; returns its view.
    pub async fn wait_for(&self, id: &str, states: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.get(&format!("/workspaces/{id}")).await;
            if status == 200 && states.iter().any(|s| body["state"] == *s) {
                return body;
            }
            if Instant::now() > deadline {
                panic!(
                    "{id} not in {states:?} after {timeout:?}: {body}\nlog:\n{}\nstderr:\n{}",
                    self.text(&format!("/workspaces/{id}/logs")).await,
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_gone(&self, id: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.get(&format!("/workspaces/{id}")).await;
            if status == 404 {
                return;
            }
            assert!(Instant::now() < deadline, "{id} still there after {timeout:?}: {body}\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `DELETE /workspaces/{id}` and wait until the row is gone.
    pub async fn remove(&self, id: &str) {
        let (status, body) = self.delete(&format!("/workspaces/{id}")).await;
        assert_eq!(status, 202, "{body}");
        self.wait_gone(id, Duration::from_secs(60)).await;
    }

    pub async fn daemon_id(&self) -> String {
        self.get("/status").await.1["daemon_id"].as_str().expect("daemon_id").to_string()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Everything under `dir`, relative, sorted (to show that a rejected upload wrote nothing).
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

pub fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(encoder);
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, *data).expect("tar entry");
    }
    tar.into_inner().expect("tar").finish().expect("gzip")
}

/// A tar entry written byte by byte, so tests can build archives no honest tool would.
pub fn raw_tar_entry(name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    {
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

pub fn finish_tar(mut entries: Vec<u8>) -> Vec<u8> {
    entries.extend_from_slice(&[0u8; 1024]);
    entries
}

pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        writer.start_file(*name, zip::write::SimpleFileOptions::default()).expect("zip entry");
        writer.write_all(data).expect("zip data");
    }
    writer.finish().expect("zip").into_inner()
}

pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)).expect("fixture")
}

pub const WHEEL: &str = "wheels/jinad_fixture_tiny-0.1.0-py3-none-any.whl";
pub mod flow;
