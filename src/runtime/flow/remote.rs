//! Remote pods: the pods of a Flow that run on other jinad daemons (`host:` in the YAML).
//!
//! For every host, `jinad flow` checks the daemon (`GET /status`, with the host's token), makes
//! sure the daemon holds the Flow's project as a workspace (the files of the YAML's directory,
//! found by their content digest, uploaded only when no workspace there has it), and starts the
//! pod with `POST /pods` — or, for a pod spread over several hosts, each of its peas with
//! `POST /peas` — asking for a lease. Remote pods bind their input *and* their output: the
//! Flow's side connects to both, so a remote daemon never needs an address of the Flow's
//! machine. While the Flow runs, a thread renews the leases and one per deployment copies its
//! logs to this process's stderr, prefixed `[pod@host]`. Closing deletes every deployment on every
//! host it can reach; a host it cannot reach deletes them itself when their lease runs out.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{json, Value};

use super::spec::FlowSpec;
use crate::deployment::BIND;
use crate::runtime::pod::{PodSpec, RemoteHost, RemotePea, RemotePod};

/// How the Flow treats its remote daemons.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Lease of every remote pod: it is deleted there when the Flow has not renewed it for this long.
    pub lease: Duration,
    /// How long an upload's build and a pod's start may take on a remote daemon.
    pub start_timeout: Duration,
    /// PEM certificates that verify `https://` hosts (besides the public roots).
    pub ca_file: Option<PathBuf>,
}

/// `jinad flow --remote-lease`'s default, in seconds.
pub const DEFAULT_LEASE_SECS: u64 = 30;
/// `jinad flow --remote-timeout`'s default, in seconds.
pub const DEFAULT_START_TIMEOUT_SECS: u64 = 600;

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions { lease: Duration::from_secs(DEFAULT_LEASE_SECS), start_timeout: Duration::from_secs(DEFAULT_START_TIMEOUT_SECS), ca_file: None }
    }
}

/// A daemon that does not answer within this is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One API call (not an upload, not a log stream).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Deleting at close: per host, then the lease takes over.
const DELETE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest project uploaded (the daemon's default `--max-upload-size` is 100 MiB).
const MAX_PROJECT_BYTES: u64 = 100 << 20;
/// Most files of a project (a Flow YAML in a home directory should fail fast, not walk it all).
const MAX_PROJECT_FILES: usize = 10_000;

/// What a remote pod or pea reported once ACTIVE (`ports` of its view).
#[derive(Debug, Clone)]
pub struct Started {
    pub in_addr: String,
    pub ctrl_addr: String,
    /// Control address of every node, by pea name.
    pub nodes: Vec<(String, String)>,
    /// The outputs it binds, by consumer name.
    pub out: BTreeMap<String, String>,
}

/// One deployment made on a remote daemon.
struct Deployment {
    host: RemoteHost,
    /// `pods` or `peas`.
    kind: &'static str,
    id: String,
    pod: String,
}

/// The Flow's side of its remote daemons.
pub struct Remotes {
    client: Client,
    /// A client without a total timeout, for log streams.
    streaming: Client,
    options: RemoteOptions,
    project: Project,
    /// Workspace id per host API.
    workspaces: BTreeMap<String, String>,
    deployments: Vec<Deployment>,
    /// What the renewer renews: (host, lease URL, pod), added as deployments are made.
    leases: Arc<Mutex<Vec<(RemoteHost, String, String)>>>,
    stop: Arc<AtomicBool>,
    renewer: Option<JoinHandle<()>>,
}

/// The files `jinad flow` uploads: everything under the YAML's directory but Flow YAMLs (they may
/// hold tokens), hidden entries, `__pycache__`, links and the pods' data directories.
struct Project {
    root: PathBuf,
    files: Vec<String>,
    digest: String,
}

impl Project {
    fn collect(root: &Path, skip: &[PathBuf]) -> Result<Self, String> {
        let mut files = Vec::new();
        let mut total = 0u64;
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let kind = entry.file_type().map_err(|e| format!("{}: {e}", path.display()))?;
                if (name.starts_with('.') && name != ".jinad") || name == "__pycache__" || skip.iter().any(|s| path.starts_with(s)) {
                    continue;
                }
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() {
                    // Flow YAMLs are not the pods' business, and they may hold hosts' tokens.
                    if is_flow_yaml(&path) {
                        continue;
                    }
                    total += entry.metadata().map(|m| m.len()).unwrap_or(0);
                    if let Ok(rel) = path.strip_prefix(root) {
                        files.push(rel.to_string_lossy().replace('\\', "/"));
                    }
                    if total > MAX_PROJECT_BYTES || files.len() > MAX_PROJECT_FILES {
                        return Err(format!(
                            "{}: the Flow's directory is uploaded to its `host:` daemons, and it holds more than {} MiB or {MAX_PROJECT_FILES} files: put the Flow in a directory of its own",
                            root.display(),
                            MAX_PROJECT_BYTES >> 20
                        ));
                    }
                }
            }
        }
        files.sort();
        let digest = crate::workspace::digest::of_files(root, &files).map_err(|e| format!("{}: {e}", root.display()))?;
        Ok(Project { root: root.to_path_buf(), files, digest })
    }

    fn tar_gz(&self) -> Result<Vec<u8>, String> {
        let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(encoder);
        for rel in &self.files {
            tar.append_path_with_name(self.root.join(rel), rel).map_err(|e| format!("{rel}: {e}"))?;
        }
        tar.into_inner().and_then(|gz| gz.finish()).map_err(|e| format!("packing the project: {e}"))
    }
}

/// A `.yml`/`.yaml` file that declares `jtype: Flow`.
fn is_flow_yaml(path: &Path) -> bool {
    let yaml = path.extension().is_some_and(|e| e == "yml" || e == "yaml");
    yaml && std::fs::read_to_string(path).is_ok_and(|text| text.lines().any(|l| l.contains("jtype") && l.contains("Flow")))
}

/// `host` as messages name it.
pub fn label(host: &RemoteHost) -> &str {
    host.api.strip_prefix("http://").unwrap_or(&host.api)
}

fn with_token(request: RequestBuilder, host: &RemoteHost) -> RequestBuilder {
    match &host.token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// The daemon's answer as JSON, or an error naming the host and what the daemon said.
fn answer(host: &RemoteHost, what: &str, response: Result<Response, reqwest::Error>) -> Result<Value, String> {
    let at = label(host);
    let response = response.map_err(|e| {
        if e.is_connect() || e.is_timeout() {
            format!("host {at}: unreachable while {what}: {}", root_cause(&e))
        } else {
            format!("host {at}: {what}: {}", root_cause(&e))
        }
    })?;
    let status = response.status();
    let body: Value = response.json().unwrap_or(Value::Null);
    if status.as_u16() == 401 {
        return Err(format!("host {at}: the token was refused (401 unauthorized) while {what}; set `token:` next to `host:`"));
    }
    if !status.is_success() {
        let code = body.get("code").and_then(Value::as_str).unwrap_or("");
        let message = body.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(format!("host {at}: {what}: {status} {code}: {message}"));
    }
    Ok(body)
}

use crate::client::http::root_cause;

impl Remotes {
    /// `root`: the Flow YAML's directory (what is uploaded); `skip`: directories not to upload
    /// (the local pods' data).
    pub fn new(root: &Path, skip: &[PathBuf], options: RemoteOptions) -> Result<Self, String> {
        let build = |timeout: Option<Duration>| {
            crate::client::http::builder(options.ca_file.as_deref())?
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(timeout)
                .build()
                .map_err(|e| format!("HTTP client: {e}"))
        };
        let mut remotes = Remotes {
            client: build(Some(CALL_TIMEOUT))?,
            streaming: build(None)?,
            options,
            project: Project::collect(root, skip)?,
            workspaces: BTreeMap::new(),
            deployments: Vec::new(),
            leases: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
            renewer: None,
        };
        remotes.keep_leases();
        Ok(remotes)
    }

    /// `GET /status`: the daemon answers, accepts the token and reaches its Docker engine.
    pub fn check(&self, host: &RemoteHost) -> Result<(), String> {
        let status = answer(host, "checking its status", with_token(self.client.get(format!("{}/status", host.api)), host).send())?;
        if status.pointer("/docker/reachable").and_then(Value::as_bool) == Some(false) {
            let why = status.pointer("/docker/error").and_then(Value::as_str).unwrap_or("");
            return Err(format!("host {}: its Docker engine is not reachable: {why}", label(host)));
        }
        Ok(())
    }

    /// The workspace on `host` holding the project: one whose digest matches, else a new upload.
    /// Waits until it is ACTIVE.
    pub fn workspace(&mut self, host: &RemoteHost, interrupted: &AtomicBool) -> Result<String, String> {
        if let Some(id) = self.workspaces.get(&host.api) {
            return Ok(id.clone());
        }
        let url = format!("{}/workspaces", host.api);
        let found = answer(host, "looking for the project", with_token(self.client.get(&url).query(&[("digest", &self.project.digest)]), host).send())?;
        let candidates = found.as_array().cloned().unwrap_or_default();
        let state = |w: &Value| w.get("state").and_then(Value::as_str).unwrap_or("").to_string();
        let reusable = candidates.iter().find(|w| state(w) == "ACTIVE").or_else(|| candidates.iter().find(|w| state(w) == "PENDING"));
        let id = match reusable.and_then(|w| w.get("id")).and_then(Value::as_str) {
            Some(id) => {
                tracing::info!("host {}: reusing {id} (same files, {})", label(host), self.project.digest);
                id.to_string()
            }
            None => {
                let archive = self.project.tar_gz()?;
                let size = archive.len() >> 10;
                let part = reqwest::blocking::multipart::Part::bytes(archive).file_name("project.tar.gz");
                let form = reqwest::blocking::multipart::Form::new().part("files", part);
                // The project's earlier version there is updated in place: its pods' data
                // (`workspace/<pod>`) stays with it, and no stale copy piles up on the host.
                let request = match self.previous(host) {
                    Some(previous) => {
                        tracing::info!("host {}: updating {previous} to this version of the project ({} files, {size} KiB)", label(host), self.project.files.len());
                        self.client.put(format!("{url}/{previous}"))
                    }
                    None => {
                        tracing::info!("host {}: uploading the project ({} files, {size} KiB)", label(host), self.project.files.len());
                        self.client.post(&url)
                    }
                };
                let created = answer(host, "uploading the project", with_token(request.multipart(form).timeout(Duration::from_secs(300)), host).send())?;
                created.get("id").and_then(Value::as_str).ok_or_else(|| format!("host {}: the upload's answer has no id", label(host)))?.to_string()
            }
        };
        self.wait_active(host, &format!("{}/workspaces/{id}", host.api), &format!("workspace {id}"), interrupted)?;
        self.workspaces.insert(host.api.clone(), id.clone());
        self.remember(host, &id);
        Ok(id)
    }

    /// Where this project's workspaces are remembered per host: `.jinad-remote.json` next to the
    /// YAML (hidden, so never uploaded).
    fn known(&self) -> (PathBuf, BTreeMap<String, String>) {
        let path = self.project.root.join(".jinad-remote.json");
        let known = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        (path, known)
    }

    /// The workspace an earlier version of this project got on `host`, if it is still there and
    /// can take an update (ACTIVE or FAILED).
    fn previous(&self, host: &RemoteHost) -> Option<String> {
        let (_, known) = self.known();
        let id = known.get(&host.api)?;
        let row = answer(host, "looking for the previous version", with_token(self.client.get(format!("{}/workspaces/{id}", host.api)), host).send()).ok()?;
        matches!(row.get("state").and_then(Value::as_str), Some("ACTIVE" | "FAILED")).then(|| id.clone())
    }

    fn remember(&self, host: &RemoteHost, id: &str) {
        let (path, mut known) = self.known();
        known.insert(host.api.clone(), id.to_string());
        if let Ok(text) = serde_json::to_string_pretty(&known) {
            if let Err(e) = std::fs::write(&path, text) {
                tracing::warn!("cannot remember the remote workspaces in {}: {e}", path.display());
            }
        }
    }

    /// Polls `url` until the row is ACTIVE; FAILED, DELETING, gone or too slow is an error.
    fn wait_active(&self, host: &RemoteHost, url: &str, what: &str, interrupted: &AtomicBool) -> Result<Value, String> {
        let deadline = Instant::now() + self.options.start_timeout;
        loop {
            if interrupted.load(Ordering::SeqCst) {
                return Err("interrupted while starting".into());
            }
            let row = answer(host, &format!("waiting for {what}"), with_token(self.client.get(url), host).send())?;
            match row.get("state").and_then(Value::as_str) {
                Some("ACTIVE") => return Ok(row),
                Some("PENDING") if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
                Some("PENDING") => return Err(format!("host {}: {what} not ACTIVE within {} s", label(host), self.options.start_timeout.as_secs())),
                other => {
                    let code = row.get("error_code").and_then(Value::as_str).unwrap_or("");
                    let message = row.get("error_message").and_then(Value::as_str).unwrap_or("");
                    return Err(format!("host {}: {what} is {}: {code}: {message}", label(host), other.unwrap_or("?")));
                }
            }
        }
    }

    /// Starts `pod` on `host` (`kind`: `pods`, or `peas` for one pea of a spread pod) with the
    /// arguments `body` (the workspace and lease are added), and waits until it is ACTIVE.
    pub fn start(&mut self, host: &RemoteHost, kind: &'static str, pod: &str, mut body: Value, interrupted: &AtomicBool) -> Result<Started, String> {
        let workspace = self.workspace(host, interrupted)?;
        body["workspace_id"] = json!(workspace);
        body["lease_seconds"] = json!(self.options.lease.as_secs().max(1));
        let created = answer(host, &format!("starting pod {pod}"), with_token(self.client.post(format!("{}/{kind}", host.api)).json(&body), host).send())?;
        let id = created.get("id").and_then(Value::as_str).ok_or_else(|| format!("host {}: the answer has no id", label(host)))?.to_string();
        // Known before it is ready, so that closing removes it whatever happens next, and its
        // lease renewed from now on (starting the other pods may take long: uploads, builds).
        self.deployments.push(Deployment { host: host.clone(), kind, id: id.clone(), pod: pod.to_string() });
        if let Ok(mut leases) = self.leases.lock() {
            leases.push((host.clone(), format!("{}/{kind}/{id}/lease", host.api), pod.to_string()));
        }
        let row = self.wait_active(host, &format!("{}/{kind}/{id}", host.api), &format!("pod {pod} ({id})"), interrupted)?;
        // Its containers run now: follow what they print.
        self.follow_logs(self.deployments.len() - 1);
        started(&row).ok_or_else(|| format!("host {}: pod {pod} ({id}) is ACTIVE but reports no addresses", label(host)))
    }

    /// Copies the deployment's logs to stderr, each line prefixed `[pod@host]`, until its
    /// containers stop (the stream ends) or the process exits.
    fn follow_logs(&self, index: usize) {
        let Some(d) = self.deployments.get(index) else { return };
        let request = with_token(self.streaming.get(format!("{}/{}/{}/logs", d.host.api, d.kind, d.id)).query(&[("follow", "true")]), &d.host);
        let prefix = format!("[{}@{}]", d.pod, label(&d.host));
        let _ = std::thread::Builder::new().name("remote-logs".into()).spawn(move || {
            let Ok(response) = request.send() else { return };
            if !response.status().is_success() {
                return;
            }
            for line in std::io::BufReader::new(response).lines() {
                let Ok(line) = line else { break };
                eprintln!("{prefix} {line}");
            }
        });
    }

    /// Renews every deployment's lease, every third of the lease, until [`Remotes::close`].
    fn keep_leases(&mut self) {
        let every = (self.options.lease / 3).max(Duration::from_millis(300));
        let client = self.client.clone();
        let stop = self.stop.clone();
        let shared = self.leases.clone();
        self.renewer = std::thread::Builder::new()
            .name("remote-leases".into())
            .spawn(move || {
                let mut failing: Vec<bool> = Vec::new();
                let mut failed: Vec<bool> = Vec::new();
                let mut next = Instant::now() + every;
                while !stop.load(Ordering::SeqCst) {
                    if Instant::now() < next {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    next = Instant::now() + every;
                    let leases = shared.lock().map(|l| l.clone()).unwrap_or_default();
                    failing.resize(leases.len(), false);
                    failed.resize(leases.len(), false);
                    for (((host, url, pod), failing), failed) in leases.iter().zip(failing.iter_mut()).zip(failed.iter_mut()) {
                        let request = with_token(client.put(url).timeout(every.min(CALL_TIMEOUT)), host);
                        match answer(host, &format!("renewing the lease of pod {pod}"), request.send()) {
                            // Its daemon saw it fail (a container exited): say so once.
                            Ok(row) if row.get("state").and_then(Value::as_str) == Some("FAILED") && !*failed => {
                                *failed = true;
                                let code = row.get("error_code").and_then(Value::as_str).unwrap_or("");
                                let message = row.get("error_message").and_then(Value::as_str).unwrap_or("");
                                tracing::error!("host {}: pod {pod} FAILED ({code}): {message}; requests it should answer fail until the Flow is restarted", label(host));
                            }
                            Ok(_) if *failing => {
                                tracing::info!("host {}: the lease of pod {pod} is renewed again", label(host));
                                *failing = false;
                            }
                            Ok(_) => {}
                            Err(e) if !*failing => {
                                tracing::warn!("{e}");
                                *failing = true;
                            }
                            Err(_) => {}
                        }
                    }
                }
            })
            .ok();
    }

    /// Deletes every deployment on every host (in parallel, at most [`DELETE_TIMEOUT`] each);
    /// returns what could not be deleted (those go when their lease runs out).
    pub fn close(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        let lease = self.options.lease.as_secs();
        let deletes: Vec<JoinHandle<Option<String>>> = self
            .deployments
            .drain(..)
            .filter_map(|d| {
                let request = with_token(self.client.delete(format!("{}/{}/{}", d.host.api, d.kind, d.id)).timeout(DELETE_TIMEOUT), &d.host);
                std::thread::Builder::new()
                    .name("remote-delete".into())
                    .spawn(move || match answer(&d.host, &format!("deleting pod {} ({})", d.pod, d.id), request.send()) {
                        Ok(_) => None,
                        // Already gone (its lease ran out, or someone deleted it).
                        Err(e) if e.contains("deployment_not_found") => None,
                        Err(e) => Some(format!("{e}; it goes when its lease of {lease} s runs out")),
                    })
                    .ok()
            })
            .collect();
        deletes.into_iter().filter_map(|h| h.join().ok().flatten()).collect()
    }
}

impl Drop for Remotes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The addresses in an ACTIVE pod's or pea's view.
fn started(row: &Value) -> Option<Started> {
    let ports = row.get("ports")?;
    let text = |v: &Value| v.as_str().map(str::to_string);
    let nodes = ports.get("peas")?.as_object()?.iter().filter_map(|(name, addr)| Some((name.clone(), text(addr)?))).collect();
    let out = match ports.get("out").and_then(Value::as_object) {
        Some(out) => out.iter().filter_map(|(name, addr)| Some((name.clone(), text(addr)?))).collect(),
        None => BTreeMap::new(),
    };
    Some(Started { in_addr: text(ports.get("in")?)?, ctrl_addr: text(ports.get("ctrl")?)?, nodes, out })
}

/// The `POST /pods` (or `/peas`) body for `pod`, which runs on `remote`'s hosts, results going
/// to `out` (consumer → address or `bind`).
fn pod_body(pod: &PodSpec, remote: &RemotePod, out: &BTreeMap<String, String>) -> Value {
    let mut body = json!({
        "name": pod.name,
        "uses": remote.uses,
        "with": remote.with,
        "py_modules": remote.py_modules,
        "replicas": pod.replicas,
        "shards": pod.shards,
        "needs": pod.needs,
        "env": pod.env,
        "out": out,
    });
    if let Some(polling) = &remote.polling {
        body["polling"] = polling.clone();
    }
    body
}

/// Where the remote pods run: a whole pod on one host (by pod index), or the peas of a pod
/// spread over several hosts (its head and tail run here).
#[derive(Default)]
pub struct Placed {
    pub pods: BTreeMap<usize, Started>,
    pub spread: BTreeMap<usize, Vec<RemotePea>>,
}

/// Starts every `host:` pod on its daemon(s), consumers before producers. A remote pod's results
/// go to a remote consumer's input directly; for anything that runs here (a local pod, the head
/// of a spread pod, the gateway) the remote pod binds them (`bind`) and this side connects.
pub fn place(spec: &FlowSpec, remotes: &mut Remotes, interrupted: &AtomicBool) -> Result<Placed, String> {
    let mut checked = std::collections::BTreeSet::new();
    for host in spec.pods.iter().filter_map(|p| p.remote.as_ref()).flat_map(|r| &r.hosts) {
        if checked.insert(host.api.clone()) {
            remotes.check(host)?;
        }
    }
    let mut placed = Placed::default();
    for &i in spec.order.iter().rev() {
        let pod = &spec.pods[i];
        let Some(remote) = &pod.remote else { continue };
        let peas = pod.pea_names();
        if remote.spread(peas.len()) {
            // One pea per host in turn; each binds its results for the tail here.
            let mut started = Vec::new();
            for (k, (shard, replica, pea)) in peas.into_iter().enumerate() {
                let host = &remote.hosts[k % remote.hosts.len()];
                let out = BTreeMap::from([("tail".to_string(), BIND.to_string())]);
                let mut body = pod_body(pod, remote, &out);
                body["shard_id"] = shard.into();
                body["replica_id"] = replica.into();
                let s = remotes.start(host, "peas", &pod.name, body, interrupted)?;
                let out_addr = s.out.get("tail").cloned().ok_or_else(|| format!("host {}: pea {pea} reports no bound output", label(host)))?;
                tracing::info!("pod {}: pea {pea} runs on {}", pod.name, label(host));
                started.push(RemotePea { name: pea, shard, in_addr: s.in_addr, out_addr, ctrl_addr: s.ctrl_addr });
            }
            placed.spread.insert(i, started);
            continue;
        }
        let mut out = BTreeMap::new();
        match spec.consumers(i) {
            consumers if consumers.is_empty() => {
                out.insert("gateway".to_string(), BIND.to_string());
            }
            consumers => {
                for j in consumers {
                    let addr = placed.pods.get(&j).map(|s| s.in_addr.clone()).unwrap_or_else(|| BIND.to_string());
                    out.insert(spec.pods[j].name.clone(), addr);
                }
            }
        }
        let host = &remote.hosts[0];
        let body = pod_body(pod, remote, &out);
        let s = remotes.start(host, "pods", &pod.name, body, interrupted)?;
        tracing::info!("pod {} runs on {}", pod.name, label(host));
        placed.pods.insert(i, s);
    }
    Ok(placed)
}

