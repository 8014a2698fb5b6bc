//! [`DockerEngine`]: the [`Engine`] through bollard, the only code that talks to Docker.

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

use super::{
    build_failure_message, labels, strip_ansi, ContainerSpec, ContainerStatus, DockerError, Engine, EngineInfo, ManagedObject, RestartMode,
};

/// How long one plain API call may take before the engine counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Builds can legitimately take long (pip); the engine has this long to finish one.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);

/// A lookup or removal whose 404 is a normal outcome: `Ok(None)`.
fn found<T>(result: Result<T, BollardError>) -> Result<Option<T>, DockerError> {
    match result.map_err(DockerError::from) {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(other) => Err(other),
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

    pub(super) async fn client(&self) -> Result<Docker, DockerError> {
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
    pub(super) async fn reset_on<T>(&self, result: Result<T, DockerError>) -> Result<T, DockerError> {
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

    async fn image_references(&self, image: &str) -> Result<Vec<String>, DockerError> {
        let result = async {
            Ok(found(self.client().await?.inspect_image(image).await)?
                .map(|i| i.repo_tags.unwrap_or_default().into_iter().chain(i.repo_digests.unwrap_or_default()).collect())
                .unwrap_or_default())
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

    async fn evict_image(&self, reference: &str) -> Result<(), DockerError> {
        // The same call: by id or by its only tag, removing the parents left dangling.
        self.remove_dangling_image(reference).await
    }

    async fn all_images(&self) -> Result<Vec<super::inventory::ImageRecord>, DockerError> {
        let result = self.list_all_images().await;
        self.reset_on(result).await
    }

    async fn all_containers(&self) -> Result<Vec<super::inventory::ContainerInfo>, DockerError> {
        let result = self.list_all_containers().await;
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

    async fn push_image(&self, repo: &str, tag: &str) -> Result<String, DockerError> {
        let result = async {
            let client = self.client().await?;
            let options = bollard::query_parameters::PushImageOptionsBuilder::default().tag(tag).build();
            let mut stream = client.push_image(repo, Some(options), None);
            let mut digest = None;
            while let Some(info) = stream.next().await {
                let info = info?;
                if let Some(d) = info.status.as_deref().and_then(pushed_digest) {
                    digest = Some(d);
                }
            }
            digest.ok_or_else(|| DockerError::Api { status: 500, message: format!("the engine pushed {repo}:{tag} but reported no digest") })
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

    async fn container_exits(&self) -> Result<tokio::sync::mpsc::Receiver<String>, DockerError> {
        let client = self.client().await?;
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["die".to_string()]),
            ("label".to_string(), vec![format!("{}={}", labels::DAEMON, self.daemon_id)]),
        ]);
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let mut stream = client.events(Some(bollard::query_parameters::EventsOptions { filters: Some(filters), ..Default::default() }));
            while let Some(Ok(event)) = stream.next().await {
                let row = event.actor.and_then(|a| a.attributes).and_then(|mut attributes| attributes.remove(labels::ID));
                if let Some(row) = row {
                    if tx.send(row).await.is_err() {
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

/// The digest in a push's last status line, `TAG: digest: sha256:… size: N`.
fn pushed_digest(status: &str) -> Option<String> {
    let rest = status.split_once("digest: ")?.1;
    let digest = rest.split_whitespace().next()?;
    (digest.starts_with("sha256:") && digest.len() == 71).then(|| digest.to_string())
}
