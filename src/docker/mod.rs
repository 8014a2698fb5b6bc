//! The Docker engine, through bollard. This is the only module that imports bollard; the rest of
//! the daemon sees [`Engine`], [`DockerError`] and plain data.

pub mod labels;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{BuildInfo, NetworkCreateRequest};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::Mutex;

/// How long one plain API call may take before the engine counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Builds can legitimately take long (pip); the engine has this long to finish one.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine cannot be reached (socket missing, refused, timed out): retry later.
    #[error("Docker engine unreachable: {0}")]
    Unavailable(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The build itself failed (a Dockerfile step, `pip install`); the message is Docker's.
    #[error("{0}")]
    BuildFailed(String),
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
}

impl From<BollardError> for DockerError {
    fn from(e: BollardError) -> Self {
        match e {
            BollardError::DockerResponseServerError { status_code: 404, message } => DockerError::NotFound(message),
            BollardError::DockerResponseServerError { status_code, message } => {
                DockerError::Api { status: status_code, message }
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

/// A call whose "not found" answer is a normal outcome: `Ok(None)`.
fn found<T>(result: Result<T, BollardError>) -> Result<Option<T>, DockerError> {
    match result.map_err(DockerError::from) {
        Ok(value) => Ok(Some(value)),
        Err(DockerError::NotFound(_)) => Ok(None),
        Err(other) => Err(other),
    }
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

/// A lazily connected engine client: the daemon starts and serves even while Docker is down.
pub struct Engine {
    address: Option<String>,
    client: Mutex<Option<Docker>>,
    daemon_id: String,
}

impl Engine {
    pub fn new(address: Option<String>, daemon_id: String) -> Self {
        Engine { address, client: Mutex::new(None), daemon_id }
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

    pub async fn ping(&self) -> Result<EngineInfo, DockerError> {
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

    /// The id of an image (by name, tag or id), or `None` if the engine has no such image.
    pub async fn image_id(&self, name: &str) -> Result<Option<String>, DockerError> {
        let result = async {
            Ok(found(self.client().await?.inspect_image(name).await)?.and_then(|image| image.id))
        }
        .await;
        self.reset_on(result).await
    }

    /// Build `context` (a tar file) into an image tagged `tag`, sending each output line to `log`.
    /// Returns the image id.
    pub async fn build_image(
        &self,
        context: &Path,
        dockerfile: &str,
        tag: &str,
        build_args: &HashMap<String, String>,
        mut log: impl FnMut(&str) + Send,
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
            let mut last_lines: Vec<String> = Vec::new();
            let run = async {
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(BuildInfo { stream: Some(text), .. }) => {
                            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                                log(line);
                                if !line.trim().is_empty() {
                                    last_lines.push(line.to_string());
                                    if last_lines.len() > 5 {
                                        last_lines.remove(0);
                                    }
                                }
                            }
                        }
                        Ok(BuildInfo { status: Some(status), .. }) => log(&status),
                        Ok(_) => {}
                        Err(BollardError::DockerStreamError { error }) => {
                            log(&error);
                            let mut message = last_lines.join("\n");
                            if !message.is_empty() {
                                message.push('\n');
                            }
                            message.push_str(&error);
                            return Err(DockerError::BuildFailed(message));
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

    /// Remove an image; a missing image is not an error. `force` also untags it from other names.
    /// Untagged parents are never pruned: they are the layer cache other workspaces share, and a
    /// concurrent build may be committing on top of one right now.
    pub async fn remove_image(&self, name: &str, force: bool) -> Result<(), DockerError> {
        let result = async {
            let options = RemoveImageOptionsBuilder::default().force(force).noprune(true).build();
            found(self.client().await?.remove_image(name, Some(options), None).await).map(drop)
        }
        .await;
        self.reset_on(result).await
    }

    /// The network named `name`, created (bridge, labelled) if it does not exist. Returns its id.
    pub async fn ensure_network(&self, name: &str, network_labels: &HashMap<String, String>) -> Result<String, DockerError> {
        let result = async {
            let client = self.client().await?;
            if let Some(id) = self.network_id_with(&client, name).await? {
                return Ok(id);
            }
            let request = NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                labels: Some(network_labels.clone()),
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

    async fn network_id_with(&self, client: &Docker, name: &str) -> Result<Option<String>, DockerError> {
        let filters = HashMap::from([("name", vec![name])]);
        let networks = client.list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filters).build())).await?;
        // The name filter matches substrings; keep the exact name.
        Ok(networks.into_iter().find(|n| n.name.as_deref() == Some(name)).and_then(|n| n.id))
    }

    pub async fn network_id(&self, name: &str) -> Result<Option<String>, DockerError> {
        let result = async {
            let client = self.client().await?;
            self.network_id_with(&client, name).await
        }
        .await;
        self.reset_on(result).await
    }

    /// Remove a network by name or id; a missing network is not an error.
    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        let result = async {
            found(self.client().await?.remove_network(name).await).map(drop)
        }
        .await;
        self.reset_on(result).await
    }

    fn own_filters(&self, extra: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        let mut label_filters = vec![format!("{}=true", labels::MANAGED), format!("{}={}", labels::DAEMON, self.daemon_id)];
        label_filters.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
        HashMap::from([("label".to_string(), label_filters)])
    }

    /// Images of this daemon, optionally narrowed by more labels.
    pub async fn own_images(&self, extra: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError> {
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

    /// Networks of this daemon, optionally narrowed by more labels.
    pub async fn own_networks(&self, extra: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError> {
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

    /// Containers of this daemon (running or not), optionally narrowed by more labels.
    pub async fn own_containers(&self, extra: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError> {
        let result = async {
            let options = ListContainersOptionsBuilder::default().all(true).filters(&self.own_filters(extra)).build();
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
        .await;
        self.reset_on(result).await
    }

    /// Stop and remove a container; a missing container is not an error.
    pub async fn remove_container(&self, id: &str) -> Result<(), DockerError> {
        let result = async {
            let options = RemoveContainerOptionsBuilder::default().force(true).v(false).build();
            found(self.client().await?.remove_container(id, Some(options)).await).map(drop)
        }
        .await;
        self.reset_on(result).await
    }
}
