//! The Docker engine. The rest of the daemon sees the [`Engine`] trait, [`DockerError`] and plain
//! data; [`DockerEngine`] is the real one (the only user of bollard), [`fake::FakeEngine`] an
//! in-memory one for deterministic tests of workers and reconciliation.

pub mod containers;
pub mod fake;
pub mod labels;

pub use containers::{ContainerSpec, ContainerStatus, Limits, RestartMode, RestartPolicy};

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::container::LogOutput;
use bollard::models::{
    BuildInfo, ContainerCreateBody, EndpointSettings, HostConfig, Ipam, IpamConfig, NetworkCreateRequest, NetworkingConfig,
    PortBinding, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    ListNetworksOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    StopContainerOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::Mutex;

/// How long one plain API call may take before the engine counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Builds can legitimately take long (pip); the engine has this long to finish one.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);

/// What went wrong talking to the engine, by kind: the transport, the engine's answer (with its
/// HTTP status), or a failed build step. Callers decide by kind and status, never by message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DockerError {
    /// The engine cannot be reached (socket missing, refused, timed out): retry later.
    #[error("Docker engine unreachable: {0}")]
    Unavailable(String),
    /// The build itself failed (a Dockerfile step, `pip install`): the engine's error, and the
    /// last line of the output that reads as an error, if any (escape codes removed).
    #[error("{0}")]
    BuildFailed(String),
    /// The engine answered with an error status.
    #[error("Docker engine error {status}: {message}")]
    Api { status: u16, message: String },
    #[error("Docker client error: {0}")]
    Other(String),
}

impl DockerError {
    /// Worth retrying later with the same input (as opposed to a permanent failure).
    pub fn is_retryable(&self) -> bool {
        matches!(self, DockerError::Unavailable(_))
    }

    /// The engine answered 404 (for lookups and removals: the object does not exist).
    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::Api { status: 404, .. })
    }
}

impl From<BollardError> for DockerError {
    fn from(e: BollardError) -> Self {
        match e {
            BollardError::DockerResponseServerError { status_code, message } => {
                DockerError::Api { status: status_code, message: strip_ansi(&message) }
            }
            BollardError::SocketNotFoundError(path) => DockerError::Unavailable(format!("no socket at {path}")),
            BollardError::RequestTimeoutError => DockerError::Unavailable("request timed out".into()),
            e @ (BollardError::IOError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::HyperLegacyError { .. }
            | BollardError::HttpClientError { .. }) => DockerError::Unavailable(e.to_string()),
            other => DockerError::Other(other.to_string()),
        }
    }
}

/// A lookup or removal whose 404 is a normal outcome: `Ok(None)`.
fn found<T>(result: Result<T, BollardError>) -> Result<Option<T>, DockerError> {
    match result.map_err(DockerError::from) {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(other) => Err(other),
    }
}

/// Removes terminal escape sequences (colours, cursor moves) and other control characters but
/// newlines and tabs: build output and engine messages end up in JSON and on terminals.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.peek() {
                // CSI: ESC [ parameters… final byte in @..~
                Some('[') => {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: ESC ] … BEL or ESC \
                Some(']') => {
                    chars.next();
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.peek() == Some(&'\\')) {
                            if c == '\u{1b}' {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                _ => {
                    chars.next();
                }
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The failure message of a build: the engine's error, preceded by the last output line that
/// reads as an error (pip's `ERROR: …`), never a warning.
pub fn build_failure_message(output_tail: &[String], engine_error: &str) -> String {
    let engine_error = strip_ansi(engine_error).trim().to_string();
    let is_error = |line: &&String| {
        let l = line.trim_start().to_ascii_lowercase();
        l.starts_with("error") || l.starts_with("e: ") || l.contains("error:")
    };
    match output_tail.iter().rev().find(is_error) {
        Some(line) if !engine_error.contains(line.trim()) => format!("{}\n{engine_error}", line.trim()),
        _ => engine_error,
    }
}

/// The engine boundary: everything the daemon asks of Docker. Object names and labels are the
/// caller's; implementations only carry them out.
#[rocket::async_trait]
pub trait Engine: Send + Sync {
    async fn ping(&self) -> Result<EngineInfo, DockerError>;
    /// The id of an image (by name, tag or id), or `None` if the engine has no such image.
    async fn image_id(&self, name: &str) -> Result<Option<String>, DockerError>;
    /// Build `context` (a tar file) into an image tagged `tag`, sending each output line to `log`.
    /// Returns the image id.
    async fn build_image(
        &self,
        context: &Path,
        dockerfile: &str,
        tag: &str,
        build_args: &HashMap<String, String>,
        log: &mut (dyn for<'l> FnMut(&'l str) + Send),
    ) -> Result<String, DockerError>;
    /// Remove an image reference: a tag only untags (the image goes with its last tag), an id
    /// removes the image unless another tag still names it. Never forced, never prunes parents:
    /// they are the layer cache other builds share and may be committing on right now.
    async fn remove_image(&self, reference: &str) -> Result<(), DockerError>;
    /// Remove an untagged image and the untagged parents no other image uses (what a failed or
    /// killed build left). Only while no build of this daemon runs: a parent may be its layer.
    async fn remove_dangling_image(&self, id: &str) -> Result<(), DockerError>;
    /// Tag an image (by id) as `repo:tag`, moving the tag if another image had it.
    async fn tag_image(&self, image: &str, reference: &str) -> Result<(), DockerError>;
    /// The network named `name` on `subnet`, created (bridge, labelled) if missing. Returns its id.
    async fn ensure_network(&self, name: &str, subnet: &str, labels: &HashMap<String, String>) -> Result<String, DockerError>;
    async fn network_id(&self, name: &str) -> Result<Option<String>, DockerError>;
    /// Remove a network by name or id; a missing network is not an error.
    async fn remove_network(&self, name: &str) -> Result<(), DockerError>;
    /// The IPv4 subnets of every network on the engine (ours or not): a new one must not overlap.
    async fn used_subnets(&self) -> Result<Vec<String>, DockerError>;
    /// Images of this daemon, optionally narrowed by more labels.
    async fn own_images(&self, extra: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError>;
    /// Networks of this daemon, optionally narrowed by more labels.
    async fn own_networks(&self, extra: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError>;
    /// Containers of this daemon (running or not), optionally narrowed by more labels.
    async fn own_containers(&self, extra: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError>;
    /// Stop and remove a container; a missing container is not an error.
    async fn remove_container(&self, id: &str) -> Result<(), DockerError>;
    /// Create and start the container `spec.name`. One that already runs under that name is kept
    /// (a start job repeated after a restart); a stopped one is replaced. Returns its id.
    async fn run_container(&self, spec: &ContainerSpec) -> Result<String, DockerError>;
    /// The container's state and published ports, `None` if there is no such container.
    async fn inspect_container(&self, name: &str) -> Result<Option<ContainerStatus>, DockerError>;
    /// The last `tail` lines of its output (stdout and stderr); empty for a missing container.
    async fn container_logs(&self, name: &str, tail: usize) -> Result<Vec<String>, DockerError>;
    /// Its output from the start, then every new line until it stops (or the receiver is dropped).
    async fn follow_container_logs(&self, name: &str) -> Result<tokio::sync::mpsc::Receiver<String>, DockerError>;
    /// SIGTERM, up to `grace` for it to exit (executors persist), then SIGKILL; a missing or
    /// stopped container is not an error.
    async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), DockerError>;
    /// Containers carrying every one of `labels`, whoever created them (`jinad flow` runs label
    /// theirs without a daemon id).
    async fn labelled_containers(&self, labels: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError>;
    /// An image's `CMD`, `None` if the image is not on the engine.
    async fn image_command(&self, image: &str) -> Result<Option<Vec<String>>, DockerError>;
}

/// What the engine says about itself.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub version: String,
    pub api_version: String,
}

/// A Docker object carrying our labels.
#[derive(Debug, Clone)]
pub struct ManagedObject {
    pub docker_id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    /// For images: every `repo:tag` (the first is `name`); empty for a dangling image.
    pub tags: Vec<String>,
}

impl ManagedObject {
    pub fn row_id(&self) -> Option<&str> {
        self.labels.get(labels::ID).map(String::as_str)
    }
}

/// The real engine, through bollard, lazily connected: the daemon starts and serves even while
/// Docker is down.
pub struct DockerEngine {
    address: Option<String>,
    client: Mutex<Option<Docker>>,
    daemon_id: String,
}

impl DockerEngine {
    pub fn new(address: Option<String>, daemon_id: String) -> Self {
        DockerEngine { address, client: Mutex::new(None), daemon_id }
    }

    async fn client(&self) -> Result<Docker, DockerError> {
        let mut guard = self.client.lock().await;
        if let Some(client) = guard.as_ref() {
            return Ok(client.clone());
        }
        let timeout = CALL_TIMEOUT.as_secs();
        let client = match self.address.as_deref() {
            Some(addr) if addr.starts_with("unix://") || addr.starts_with('/') => {
                Docker::connect_with_unix(addr, timeout, bollard::API_DEFAULT_VERSION)
            }
            Some(addr) => Docker::connect_with_http(addr, timeout, bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_local_defaults(),
        }?;
        let client = tokio::time::timeout(Duration::from_secs(5), client.negotiate_version())
            .await
            .map_err(|_| DockerError::Unavailable("version negotiation timed out".into()))??;
        *guard = Some(client.clone());
        Ok(client)
    }

    /// Forget the connection after a transport error, so the next call negotiates again.
    async fn reset_on<T>(&self, result: Result<T, DockerError>) -> Result<T, DockerError> {
        if matches!(result, Err(DockerError::Unavailable(_))) {
            *self.client.lock().await = None;
        }
        result
    }

    async fn network_id_with(&self, client: &Docker, name: &str) -> Result<Option<String>, DockerError> {
        let filters = HashMap::from([("name", vec![name])]);
        let networks = client.list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filters).build())).await?;
        // The name filter matches substrings; keep the exact name.
        Ok(networks.into_iter().find(|n| n.name.as_deref() == Some(name)).and_then(|n| n.id))
    }

    /// Every container (running or not) the filters select.
    async fn containers_filtered(&self, filters: HashMap<String, Vec<String>>) -> Result<Vec<ManagedObject>, DockerError> {
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let containers = self.client().await?.list_containers(Some(options)).await?;
        Ok(containers
            .into_iter()
            .map(|c| ManagedObject {
                docker_id: c.id.unwrap_or_default(),
                name: c.names.and_then(|n| n.into_iter().next()).unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
                tags: Vec::new(),
            })
            .collect())
    }

    fn own_filters(&self, extra: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        let mut label_filters = vec![format!("{}=true", labels::MANAGED), format!("{}={}", labels::DAEMON, self.daemon_id)];
        label_filters.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
        HashMap::from([("label".to_string(), label_filters)])
    }
}

#[rocket::async_trait]
impl Engine for DockerEngine {
    async fn ping(&self) -> Result<EngineInfo, DockerError> {
        let result = async {
            let client = self.client().await?;
            let version = tokio::time::timeout(Duration::from_secs(3), client.version())
                .await
                .map_err(|_| DockerError::Unavailable("ping timed out".into()))??;
            Ok(EngineInfo {
                version: version.version.unwrap_or_default(),
                api_version: client.client_version().to_string(),
            })
        }
        .await;
        self.reset_on(result).await
    }

    async fn image_id(&self, name: &str) -> Result<Option<String>, DockerError> {
        let result = async {
            Ok(found(self.client().await?.inspect_image(name).await)?.and_then(|image| image.id))
        }
        .await;
        self.reset_on(result).await
    }

    async fn build_image(
        &self,
        context: &Path,
        dockerfile: &str,
        tag: &str,
        build_args: &HashMap<String, String>,
        log: &mut (dyn for<'l> FnMut(&'l str) + Send),
    ) -> Result<String, DockerError> {
        let result = async {
            let client = self.client().await?;
            let options = BuildImageOptionsBuilder::default()
                .dockerfile(dockerfile)
                .t(tag)
                .rm(true)
                .forcerm(true)
                .buildargs(build_args)
                .build();
            let file = tokio::fs::File::open(context).await.map_err(|e| DockerError::Other(e.to_string()))?;
            let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
            let mut stream = client.build_image(options, None, Some(body));
            let mut tail: Vec<String> = Vec::new();
            let run = async {
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(BuildInfo { stream: Some(text), .. }) => {
                            for line in text.lines().map(strip_ansi).filter(|l| !l.trim().is_empty()) {
                                log(&line);
                                tail.push(line);
                                if tail.len() > 20 {
                                    tail.remove(0);
                                }
                            }
                        }
                        Ok(BuildInfo { status: Some(status), .. }) => log(&strip_ansi(&status)),
                        Ok(BuildInfo { error_detail: Some(detail), .. }) => {
                            let error = detail.message.unwrap_or_default();
                            log(&strip_ansi(&error));
                            return Err(DockerError::BuildFailed(build_failure_message(&tail, &error)));
                        }
                        Ok(_) => {}
                        Err(BollardError::DockerStreamError { error }) => {
                            log(&strip_ansi(&error));
                            return Err(DockerError::BuildFailed(build_failure_message(&tail, &error)));
                        }
                        Err(e) => return Err(DockerError::from(e)),
                    }
                }
                Ok(())
            };
            tokio::time::timeout(BUILD_TIMEOUT, run)
                .await
                .map_err(|_| DockerError::BuildFailed(format!("build did not finish in {BUILD_TIMEOUT:?}")))??;
            match client.inspect_image(tag).await {
                Ok(image) => image.id.ok_or_else(|| DockerError::Other(format!("image {tag} has no id"))),
                Err(e) => Err(DockerError::from(e)),
            }
        }
        .await;
        self.reset_on(result).await
    }

    async fn remove_image(&self, reference: &str) -> Result<(), DockerError> {
        let result = async {
            let options = RemoveImageOptionsBuilder::default().force(false).noprune(true).build();
            found(self.client().await?.remove_image(reference, Some(options), None).await).map(drop)
        }
        .await;
        self.reset_on(result).await
    }

    async fn remove_dangling_image(&self, id: &str) -> Result<(), DockerError> {
        let result = async {
            let options = RemoveImageOptionsBuilder::default().force(false).noprune(false).build();
            found(self.client().await?.remove_image(id, Some(options), None).await).map(drop)
        }
        .await;
        self.reset_on(result).await
    }

    async fn tag_image(&self, image: &str, reference: &str) -> Result<(), DockerError> {
        let (repo, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
        let result = async {
            let options = TagImageOptionsBuilder::default().repo(repo).tag(tag).build();
            self.client().await?.tag_image(image, Some(options)).await.map_err(DockerError::from)
        }
        .await;
        self.reset_on(result).await
    }

    async fn ensure_network(&self, name: &str, subnet: &str, network_labels: &HashMap<String, String>) -> Result<String, DockerError> {
        let result = async {
            let client = self.client().await?;
            if let Some(id) = self.network_id_with(&client, name).await? {
                return Ok(id);
            }
            let request = NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                labels: Some(network_labels.clone()),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig { subnet: Some(subnet.to_string()), ..Default::default() }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            match client.create_network(request).await {
                Ok(created) => Ok(created.id),
                // Lost a race with another creator of the same name: use theirs.
                Err(BollardError::DockerResponseServerError { status_code: 409, .. }) => self
                    .network_id_with(&client, name)
                    .await?
                    .ok_or_else(|| DockerError::Other(format!("network {name} vanished after a conflict"))),
                Err(e) => Err(e.into()),
            }
        }
        .await;
        self.reset_on(result).await
    }

    async fn network_id(&self, name: &str) -> Result<Option<String>, DockerError> {
        let result = async {
            let client = self.client().await?;
            self.network_id_with(&client, name).await
        }
        .await;
        self.reset_on(result).await
    }

    async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        let result = async { found(self.client().await?.remove_network(name).await).map(drop) }.await;
        self.reset_on(result).await
    }

    async fn used_subnets(&self) -> Result<Vec<String>, DockerError> {
        let result = async {
            let networks = self.client().await?.list_networks(None::<bollard::query_parameters::ListNetworksOptions>).await?;
            Ok(networks
                .into_iter()
                .filter_map(|n| n.ipam.and_then(|i| i.config))
                .flatten()
                .filter_map(|c| c.subnet)
                .collect())
        }
        .await;
        self.reset_on(result).await
    }

    async fn own_images(&self, extra: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError> {
        let result = async {
            let options = ListImagesOptionsBuilder::default().filters(&self.own_filters(extra)).build();
            let images = self.client().await?.list_images(Some(options)).await?;
            Ok(images
                .into_iter()
                .map(|i| ManagedObject {
                    name: i.repo_tags.first().cloned().unwrap_or_default(),
                    docker_id: i.id,
                    labels: i.labels,
                    tags: i.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect(),
                })
                .collect())
        }
        .await;
        self.reset_on(result).await
    }

    async fn own_networks(&self, extra: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError> {
        let result = async {
            let options = ListNetworksOptionsBuilder::default().filters(&self.own_filters(extra)).build();
            let networks = self.client().await?.list_networks(Some(options)).await?;
            Ok(networks
                .into_iter()
                .map(|n| ManagedObject {
                    docker_id: n.id.unwrap_or_default(),
                    name: n.name.unwrap_or_default(),
                    labels: n.labels.unwrap_or_default(),
                    tags: Vec::new(),
                })
                .collect())
        }
        .await;
        self.reset_on(result).await
    }

    async fn own_containers(&self, extra: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError> {
        let result = self.containers_filtered(self.own_filters(extra)).await;
        self.reset_on(result).await
    }

    async fn remove_container(&self, id: &str) -> Result<(), DockerError> {
        let result = async {
            let options = RemoveContainerOptionsBuilder::default().force(true).v(false).build();
            found(self.client().await?.remove_container(id, Some(options)).await).map(drop)
        }
        .await;
        self.reset_on(result).await
    }

    async fn run_container(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        let result = async {
            let client = self.client().await?;
            if let Some(existing) = found(client.inspect_container(&spec.name, None::<bollard::query_parameters::InspectContainerOptions>).await)? {
                let running = existing.state.as_ref().and_then(|s| s.running).unwrap_or(false);
                if running {
                    return Ok(existing.id.unwrap_or_default());
                }
                let options = RemoveContainerOptionsBuilder::default().force(true).build();
                found(client.remove_container(&spec.name, Some(options)).await)?;
            }
            let options = CreateContainerOptionsBuilder::default().name(&spec.name).build();
            let created = client.create_container(Some(options), container_body(spec)).await?;
            client.start_container(&created.id, None::<bollard::query_parameters::StartContainerOptions>).await?;
            Ok(created.id)
        }
        .await;
        self.reset_on(result).await
    }

    async fn inspect_container(&self, name: &str) -> Result<Option<ContainerStatus>, DockerError> {
        let result = async {
            let Some(info) = found(self.client().await?.inspect_container(name, None::<bollard::query_parameters::InspectContainerOptions>).await)? else {
                return Ok(None);
            };
            let state = info.state.unwrap_or_default();
            let mut ports = std::collections::BTreeMap::new();
            let settings = info.network_settings.unwrap_or_default();
            let ips: Vec<String> = settings
                .networks
                .clone()
                .unwrap_or_default()
                .into_values()
                .filter_map(|n| n.ip_address.filter(|ip| !ip.is_empty()))
                .collect();
            for (key, bindings) in settings.ports.unwrap_or_default() {
                let Some(port) = key.strip_suffix("/tcp").and_then(|p| p.parse::<u16>().ok()) else { continue };
                let host = bindings.unwrap_or_default().iter().find_map(|b| b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()));
                if let Some(host) = host {
                    ports.insert(port, host);
                }
            }
            Ok(Some(ContainerStatus {
                id: info.id.unwrap_or_default(),
                running: state.running.unwrap_or(false),
                restarting: state.restarting.unwrap_or(false),
                exit_code: state.exit_code,
                restart_count: info.restart_count.unwrap_or(0),
                ips,
                oom_killed: state.oom_killed.unwrap_or(false),
                ports,
                error: state.error.filter(|e| !e.is_empty()),
            }))
        }
        .await;
        self.reset_on(result).await
    }

    async fn container_logs(&self, name: &str, tail: usize) -> Result<Vec<String>, DockerError> {
        let result = async {
            let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&tail.to_string()).build();
            let client = self.client().await?;
            let mut stream = client.logs(name, Some(options));
            let mut lines = Vec::new();
            while let Some(chunk) = tokio::time::timeout(CALL_TIMEOUT, stream.next()).await.map_err(|_| DockerError::Unavailable("the engine did not send the logs".into()))? {
                match chunk {
                    Ok(output) => push_lines(&mut lines, &output),
                    Err(e) => {
                        let e = DockerError::from(e);
                        return if e.is_not_found() { Ok(Vec::new()) } else { Err(e) };
                    }
                }
            }
            Ok(lines)
        }
        .await;
        self.reset_on(result).await
    }

    async fn follow_container_logs(&self, name: &str) -> Result<tokio::sync::mpsc::Receiver<String>, DockerError> {
        let client = self.client().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let name = name.to_string();
        tokio::spawn(async move {
            let options = LogsOptionsBuilder::default().stdout(true).stderr(true).follow(true).build();
            let mut stream = client.logs(&name, Some(options));
            while let Some(Ok(output)) = stream.next().await {
                let mut lines = Vec::new();
                push_lines(&mut lines, &output);
                for line in lines {
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), DockerError> {
        let result = async {
            let options = StopContainerOptionsBuilder::default().t(grace.as_secs().min(600) as i32).build();
            match self.client().await?.stop_container(name, Some(options)).await {
                // 304: already stopped.
                Err(BollardError::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
                other => found(other).map(drop),
            }
        }
        .await;
        self.reset_on(result).await
    }

    async fn labelled_containers(&self, wanted: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError> {
        let filters = HashMap::from([("label".to_string(), wanted.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>())]);
        let result = self.containers_filtered(filters).await;
        self.reset_on(result).await
    }

    async fn image_command(&self, image: &str) -> Result<Option<Vec<String>>, DockerError> {
        let result = async {
            let inspected = found(self.client().await?.inspect_image(image).await)?;
            Ok(inspected.map(|i| i.config.and_then(|c| c.cmd).unwrap_or_default()))
        }
        .await;
        self.reset_on(result).await
    }
}

/// Log frames split into lines (a frame may hold several, or end without a newline).
fn push_lines(lines: &mut Vec<String>, output: &LogOutput) {
    let bytes = match output {
        LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message } => message,
        LogOutput::StdIn { .. } => return,
    };
    let text = String::from_utf8_lossy(bytes);
    lines.extend(text.lines().map(strip_ansi));
}

/// The engine's create body: no privileges, no host network, no engine socket — only the
/// workspace network, the declared binds and the published ports.
fn container_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let exposed: HashMap<String, HashMap<(), ()>> = spec.publish.iter().map(|p| (format!("{p}/tcp"), HashMap::new())).collect();
    let bindings = spec
        .publish
        .iter()
        .map(|p| (format!("{p}/tcp"), Some(vec![PortBinding { host_ip: Some(spec.publish_ip.clone()), host_port: Some(String::new()) }])))
        .collect();
    let restart = match spec.restart.policy {
        RestartMode::Never => bollard::models::RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None },
        RestartMode::OnFailure => bollard::models::RestartPolicy {
            name: Some(RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: Some(i64::from(spec.restart.max_retries.unwrap_or(1))),
        },
    };
    let host_config = HostConfig {
        binds: Some(spec.binds.clone()),
        port_bindings: Some(bindings),
        network_mode: spec.network.clone(),
        extra_hosts: Some(spec.extra_hosts.clone()),
        privileged: Some(false),
        nano_cpus: spec.limits.cpus.map(|c| (c * 1e9) as i64),
        memory: spec.limits.memory.map(|m| m as i64),
        restart_policy: Some(restart),
        ..Default::default()
    };
    let networking = spec.network.as_ref().map(|n| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(n.clone(), EndpointSettings::default())])),
    });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: Some(spec.cmd.clone()),
        user: spec.user.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(spec.labels.clone()),
        working_dir: spec.workdir.clone(),
        exposed_ports: Some(exposed),
        host_config: Some(host_config),
        networking_config: networking,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_codes_are_removed() {
        assert_eq!(strip_ansi("\u{1b}[1;33mWARNING\u{1b}[0m: x\r"), "WARNING: x");
        assert_eq!(strip_ansi("a\u{1b}]0;title\u{7}b\tc\n"), "ab\tc\n");
    }

    #[test]
    fn the_failure_message_is_the_error_not_a_warning() {
        let tail = vec![
            "ERROR: No matching distribution found for nope==1".to_string(),
            "WARNING: Running pip as the 'root' user can result in broken permissions".to_string(),
        ];
        let message = build_failure_message(&tail, "The command '/bin/sh -c pip install' returned a non-zero code: 1");
        assert_eq!(message, "ERROR: No matching distribution found for nope==1\nThe command '/bin/sh -c pip install' returned a non-zero code: 1");
        assert_eq!(build_failure_message(&tail[1..], "\u{1b}[31mfailed to export image\u{1b}[0m"), "failed to export image");
    }
}
