//! An in-memory [`Engine`] for deterministic tests of workers, uploads and reconciliation. It
//! models what the races are about: builds that leave labelled intermediate layers while they
//! run (and fail if one is removed under them, as Docker does), identical contexts that give
//! the same image id (the layer cache), tags that move, untagging that deletes an image with its
//! last tag, subnets that must not overlap. A test can pause builds at two points, make the
//! engine unreachable, or make the next call of an operation fail.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::{labels, ContainerSpec, ContainerStatus, DockerError, Engine, EngineInfo, ManagedObject};

/// Where a build can be held by a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pause {
    /// The labelled intermediate layer exists, the final image does not.
    MidBuild,
    /// The image is built and tagged; `build_image` has not returned yet.
    Built,
}

#[derive(Debug, Clone, Default)]
pub struct FakeImage {
    pub id: String,
    pub tags: Vec<String>,
    pub labels: HashMap<String, String>,
    /// An intermediate layer of a running build: listed (it has no child yet) and labelled like
    /// the final image, exactly what a careless reconciler would take for an orphan.
    pub intermediate: bool,
}

#[derive(Debug, Clone, Default)]
pub struct FakeNetwork {
    pub id: String,
    pub name: String,
    pub subnet: String,
    pub labels: HashMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct FakeContainer {
    pub spec: ContainerSpec,
    pub status: ContainerStatus,
    pub logs: Vec<String>,
}

#[derive(Default)]
pub struct World {
    pub images: HashMap<String, FakeImage>,
    pub networks: HashMap<String, FakeNetwork>,
    pub containers: HashMap<String, ManagedObject>,
    /// Containers started by `run_container`, by name: their state and output. A test makes
    /// one exit with `running = false` and an `exit_code`, or removes it.
    pub running: HashMap<String, FakeContainer>,
    pub unreachable: bool,
    /// Operation name → the error its next calls return, and how many more times.
    pub failures: HashMap<&'static str, (DockerError, u32)>,
    /// Calls per operation name.
    pub calls: HashMap<&'static str, usize>,
    paused: HashMap<Pause, bool>,
    /// Builds waiting at a pause point.
    waiting: HashMap<Pause, usize>,
    next: u64,
}

impl World {
    /// A started container by name or id.
    pub fn container(&mut self, name_or_id: &str) -> Option<&mut FakeContainer> {
        self.running.values_mut().find(|c| c.spec.name == name_or_id || c.status.id == name_or_id)
    }
}

/// How often a paused build, or a test waiting for one, looks again.
const POLL: std::time::Duration = std::time::Duration::from_millis(5);

pub struct FakeEngine {
    daemon_id: String,
    world: Mutex<World>,
}

impl FakeEngine {
    pub fn new(daemon_id: &str) -> Arc<Self> {
        Arc::new(FakeEngine { daemon_id: daemon_id.to_string(), world: Mutex::new(World::default()) })
    }

    /// Make the next `times` calls of `op` fail with `error`.
    pub fn fail(&self, op: &'static str, error: DockerError, times: u32) {
        self.with(|w| w.failures.insert(op, (error, times)));
    }

    /// Look at or change the engine's state.
    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.world.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Hold every build that reaches `point` until [`FakeEngine::resume`].
    pub fn pause(&self, point: Pause) {
        self.with(|w| w.paused.insert(point, true));
    }

    pub fn resume(&self, point: Pause) {
        self.with(|w| w.paused.insert(point, false));
    }

    /// Wait until `n` builds wait at `point`.
    pub async fn wait_paused(&self, point: Pause, n: usize) {
        while !self.with(|w| w.waiting.get(&point).copied().unwrap_or(0) >= n) {
            tokio::time::sleep(POLL).await;
        }
    }

    /// An image the engine has, by id or tag.
    pub fn image(&self, reference: &str) -> Option<FakeImage> {
        self.with(|w| find_image(w, reference).and_then(|id| w.images.get(&id).cloned()))
    }

    /// Adds an image as if another build made it; returns its id.
    pub fn add_image(&self, tags: &[&str], image_labels: &[(&str, &str)]) -> String {
        self.with(|w| {
            w.next += 1;
            let id = format!("sha256:{:064x}", w.next);
            let image = FakeImage {
                id: id.clone(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                labels: image_labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                intermediate: false,
            };
            w.images.insert(id.clone(), image);
            id
        })
    }

    /// Adds a network someone else made (e.g. on a subnet of our pool).
    pub fn add_network(&self, name: &str, subnet: &str, network_labels: &[(&str, &str)]) -> String {
        self.with(|w| {
            w.next += 1;
            let id = format!("net{:08}", w.next);
            let labels = network_labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            w.networks.insert(id.clone(), FakeNetwork { id: id.clone(), name: name.into(), subnet: subnet.into(), labels });
            id
        })
    }

    fn enter(&self, op: &'static str) -> Result<(), DockerError> {
        self.with(|w| {
            *w.calls.entry(op).or_default() += 1;
            if w.unreachable {
                return Err(DockerError::Unavailable("fake engine switched off".into()));
            }
            match w.failures.get_mut(op) {
                Some((e, left)) if *left > 0 => {
                    *left -= 1;
                    Err(e.clone())
                }
                _ => Ok(()),
            }
        })
    }

    async fn hold(&self, point: Pause) {
        let mut counted = false;
        loop {
            let paused = self.with(|w| {
                let paused = w.paused.get(&point).copied().unwrap_or(false);
                if paused && !counted {
                    *w.waiting.entry(point).or_default() += 1;
                }
                if !paused && counted {
                    *w.waiting.entry(point).or_default() -= 1;
                }
                paused
            });
            if !paused {
                return;
            }
            counted = true;
            tokio::time::sleep(POLL).await;
        }
    }

    fn own(&self, labels_of: &HashMap<String, String>, extra: &[(&str, &str)]) -> bool {
        labels_of.get(labels::MANAGED).map(String::as_str) == Some("true")
            && labels_of.get(labels::DAEMON) == Some(&self.daemon_id)
            && extra.iter().all(|(k, v)| labels_of.get(*k).map(String::as_str) == Some(*v))
    }
}

fn find_image(w: &World, reference: &str) -> Option<String> {
    if w.images.contains_key(reference) {
        return Some(reference.to_string());
    }
    w.images.values().find(|i| i.tags.iter().any(|t| t == reference)).map(|i| i.id.clone())
}

/// The `LABEL k="v" …` lines of a Dockerfile (values JSON-quoted, as jinad writes them).
fn dockerfile_labels(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("LABEL ")) {
        for pair in line.split_whitespace() {
            if let Some((k, v)) = pair.split_once('=') {
                out.insert(k.to_string(), serde_json::from_str(v).unwrap_or_else(|_| v.to_string()));
            }
        }
    }
    out
}

/// The Dockerfile inside a build context tar.
fn dockerfile_in(context: &Path, dockerfile: &str) -> std::io::Result<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(context)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.to_string_lossy() == dockerfile {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text)?;
            return Ok(text);
        }
    }
    Ok(String::new())
}

#[rocket::async_trait]
impl Engine for FakeEngine {
    async fn ping(&self) -> Result<EngineInfo, DockerError> {
        self.enter("ping")?;
        Ok(EngineInfo { version: "fake".into(), api_version: "fake".into() })
    }

    async fn image_id(&self, name: &str) -> Result<Option<String>, DockerError> {
        self.enter("image_id")?;
        Ok(self.with(|w| find_image(w, name)))
    }

    async fn image_references(&self, image: &str) -> Result<Vec<String>, DockerError> {
        self.enter("image_references")?;
        Ok(self.with(|w| find_image(w, image).and_then(|id| w.images.get(&id).map(|i| i.tags.clone())).unwrap_or_default()))
    }

    async fn build_image(
        &self,
        context: &Path,
        dockerfile: &str,
        tag: &str,
        _build_args: &HashMap<String, String>,
        log: &mut (dyn for<'l> FnMut(&'l str) + Send),
    ) -> Result<String, DockerError> {
        self.enter("build_image")?;
        let bytes = std::fs::read(context).map_err(|e| DockerError::Other(e.to_string()))?;
        let text = dockerfile_in(context, dockerfile).map_err(|e| DockerError::Other(e.to_string()))?;
        let image_labels = dockerfile_labels(&text);
        // The same context gives the same image, as the layer cache does.
        let id = format!("sha256:{:x}", Sha256::digest(&bytes));
        let layer = format!("sha256:{:x}", Sha256::digest([bytes.as_slice(), b"layer"].concat()));
        self.with(|w| {
            w.images.entry(layer.clone()).or_insert(FakeImage {
                id: layer.clone(),
                tags: Vec::new(),
                labels: image_labels.clone(),
                intermediate: true,
            });
        });
        log("Step 1/2 : LABEL (fake)");
        self.hold(Pause::MidBuild).await;
        let result = self.with(|w| {
            if !w.images.contains_key(&layer) {
                return Err(DockerError::BuildFailed(format!("failed to set parent {layer}: unknown parent image ID")));
            }
            for image in w.images.values_mut() {
                image.tags.retain(|t| t != tag);
            }
            let image = w.images.entry(id.clone()).or_insert(FakeImage {
                id: id.clone(),
                tags: Vec::new(),
                labels: image_labels.clone(),
                intermediate: false,
            });
            image.tags.push(tag.to_string());
            // The layer is now a parent: `docker images` no longer lists it.
            w.images.remove(&layer);
            Ok(id.clone())
        });
        log("Successfully tagged (fake)");
        self.hold(Pause::Built).await;
        result
    }

    async fn remove_image(&self, reference: &str) -> Result<(), DockerError> {
        self.enter("remove_image")?;
        self.with(|w| {
            let Some(id) = find_image(w, reference) else { return Ok(()) };
            let Some(image) = w.images.get_mut(&id) else { return Ok(()) };
            if reference != id {
                image.tags.retain(|t| t != reference);
                if image.tags.is_empty() {
                    w.images.remove(&id);
                }
                return Ok(());
            }
            if image.tags.len() > 1 {
                return Err(DockerError::Api { status: 409, message: format!("image {id} is referenced in multiple repositories") });
            }
            w.images.remove(&id);
            Ok(())
        })
    }

    async fn remove_dangling_image(&self, id: &str) -> Result<(), DockerError> {
        self.enter("remove_dangling_image")?;
        self.with(|w| match w.images.get(id) {
            Some(image) if !image.tags.is_empty() => Err(DockerError::Api { status: 409, message: format!("{id} is tagged") }),
            _ => {
                w.images.remove(id);
                Ok(())
            }
        })
    }

    async fn push_image(&self, repo: &str, tag: &str) -> Result<String, DockerError> {
        self.enter("push_image")?;
        let reference = format!("{repo}:{tag}");
        self.with(|w| match find_image(w, &reference) {
            // No registry here: the digest is the image's id, as a content address would be.
            Some(id) => Ok(format!("sha256:{:0>64}", id.trim_start_matches("sha256:"))),
            None => Err(DockerError::Api { status: 404, message: format!("no such image: {reference}") }),
        })
    }

    async fn evict_image(&self, reference: &str) -> Result<(), DockerError> {
        self.enter("evict_image")?;
        self.with(|w| {
            if let Some(id) = find_image(w, reference) {
                w.images.remove(&id);
            }
            Ok(())
        })
    }

    async fn all_images(&self) -> Result<Vec<super::inventory::ImageRecord>, DockerError> {
        self.enter("all_images")?;
        Ok(self.with(|w| {
            w.images
                .values()
                .map(|i| super::inventory::ImageRecord { id: i.id.clone(), tags: i.tags.clone(), labels: i.labels.clone(), ..Default::default() })
                .collect()
        }))
    }

    async fn all_containers(&self) -> Result<Vec<super::inventory::ContainerInfo>, DockerError> {
        self.enter("all_containers")?;
        Ok(self.with(|w| {
            w.containers
                .values()
                .map(|c| super::inventory::ContainerInfo { id: c.docker_id.clone(), labels: c.labels.clone(), state: "running".into(), ..Default::default() })
                .collect()
        }))
    }

    async fn tag_image(&self, image: &str, reference: &str) -> Result<(), DockerError> {
        self.enter("tag_image")?;
        self.with(|w| {
            let Some(id) = find_image(w, image) else {
                return Err(DockerError::Api { status: 404, message: format!("no such image: {image}") });
            };
            // The image that had the tag keeps existing, untagged, as in Docker.
            for other in w.images.values_mut() {
                other.tags.retain(|t| t != reference);
            }
            if let Some(target) = w.images.get_mut(&id) {
                target.tags.push(reference.to_string());
            }
            Ok(())
        })
    }

    async fn ensure_network(&self, name: &str, subnet: &str, network_labels: &HashMap<String, String>) -> Result<String, DockerError> {
        self.enter("ensure_network")?;
        self.with(|w| {
            if let Some(existing) = w.networks.values().find(|n| n.name == name) {
                return Ok(existing.id.clone());
            }
            let wanted: crate::network_pool::Cidr = subnet.parse().map_err(|e: String| DockerError::Api { status: 400, message: e })?;
            let overlaps = w.networks.values().any(|n| n.subnet.parse::<crate::network_pool::Cidr>().is_ok_and(|c| c.overlaps(&wanted)));
            if overlaps {
                return Err(DockerError::Api { status: 403, message: "Pool overlaps with other one on this address space".into() });
            }
            w.next += 1;
            let id = format!("net{:08}", w.next);
            let network = FakeNetwork { id: id.clone(), name: name.into(), subnet: subnet.into(), labels: network_labels.clone() };
            w.networks.insert(id.clone(), network);
            Ok(id)
        })
    }

    async fn network_id(&self, name: &str) -> Result<Option<String>, DockerError> {
        self.enter("network_id")?;
        Ok(self.with(|w| w.networks.values().find(|n| n.name == name).map(|n| n.id.clone())))
    }

    async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        self.enter("remove_network")?;
        self.with(|w| w.networks.retain(|id, n| id != name && n.name != name));
        Ok(())
    }

    async fn used_subnets(&self) -> Result<Vec<String>, DockerError> {
        self.enter("used_subnets")?;
        Ok(self.with(|w| w.networks.values().map(|n| n.subnet.clone()).collect()))
    }

    async fn own_images(&self, extra: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError> {
        self.enter("own_images")?;
        Ok(self.with(|w| {
            w.images
                .values()
                .filter(|i| self.own(&i.labels, extra))
                .map(|i| ManagedObject { docker_id: i.id.clone(), name: i.tags.first().cloned().unwrap_or_default(), labels: i.labels.clone(), tags: i.tags.clone() })
                .collect()
        }))
    }

    async fn own_networks(&self, extra: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError> {
        self.enter("own_networks")?;
        Ok(self.with(|w| {
            w.networks
                .values()
                .filter(|n| self.own(&n.labels, extra))
                .map(|n| ManagedObject { docker_id: n.id.clone(), name: n.name.clone(), labels: n.labels.clone(), tags: Vec::new() })
                .collect()
        }))
    }

    async fn own_containers(&self, extra: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError> {
        self.enter("own_containers")?;
        Ok(self.with(|w| w.containers.values().filter(|c| self.own(&c.labels, extra)).cloned().collect()))
    }

    async fn remove_container(&self, id: &str) -> Result<(), DockerError> {
        self.enter("remove_container")?;
        self.with(|w| {
            let name = w.running.iter().find(|(n, c)| *n == id || c.status.id == id).map(|(n, c)| (n.clone(), c.status.id.clone()));
            if let Some((name, docker_id)) = name {
                w.running.remove(&name);
                w.containers.remove(&docker_id);
            }
            w.containers.remove(id)
        });
        Ok(())
    }

    async fn run_container(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        self.enter("run_container")?;
        Ok(self.with(|w| {
            if let Some(c) = w.running.get(&spec.name) {
                if c.status.running {
                    return c.status.id.clone();
                }
                let old = c.status.id.clone();
                w.containers.remove(&old);
            }
            w.next += 1;
            let id = format!("{:064x}", w.next);
            let ports = spec.publish.iter().enumerate().map(|(i, p)| (*p, 40_000 + (w.next as u16 % 1000) * 10 + i as u16)).collect();
            let status = ContainerStatus { id: id.clone(), running: true, ports, ..Default::default() };
            w.containers.insert(
                id.clone(),
                ManagedObject { docker_id: id.clone(), name: format!("/{}", spec.name), labels: spec.labels.clone(), tags: Vec::new() },
            );
            w.running.insert(spec.name.clone(), FakeContainer { spec: spec.clone(), status, logs: vec![format!("{} started", spec.name)] });
            id
        }))
    }

    async fn inspect_container(&self, name: &str) -> Result<Option<ContainerStatus>, DockerError> {
        self.enter("inspect_container")?;
        Ok(self.with(|w| w.running.iter().find(|(n, c)| *n == name || c.status.id == name).map(|(_, c)| c.status.clone())))
    }

    async fn container_logs(&self, name: &str, tail: usize) -> Result<Vec<String>, DockerError> {
        self.enter("container_logs")?;
        Ok(self.with(|w| {
            let logs = w.container(name).map(|c| c.logs.clone()).unwrap_or_default();
            logs[logs.len().saturating_sub(tail)..].to_vec()
        }))
    }

    async fn follow_container_logs(&self, name: &str) -> Result<tokio::sync::mpsc::Receiver<String>, DockerError> {
        self.enter("follow_container_logs")?;
        let logs = self.with(|w| w.container(name).map(|c| c.logs.clone()).unwrap_or_default());
        let (tx, rx) = tokio::sync::mpsc::channel(logs.len().max(1));
        for line in logs {
            let _ = tx.try_send(line);
        }
        Ok(rx)
    }

    async fn container_exits(&self) -> Result<tokio::sync::mpsc::Receiver<String>, DockerError> {
        self.enter("container_exits")?;
        // The fake has no event stream: an ended one (the periodic reconciliation covers it).
        let (_, rx) = tokio::sync::mpsc::channel(1);
        Ok(rx)
    }

    async fn labelled_containers(&self, wanted: &[(&str, &str)]) -> Result<Vec<ManagedObject>, DockerError> {
        self.enter("labelled_containers")?;
        Ok(self.with(|w| {
            w.containers.values().filter(|c| wanted.iter().all(|(k, v)| c.labels.get(*k).map(String::as_str) == Some(*v))).cloned().collect()
        }))
    }

    async fn image_command(&self, image: &str) -> Result<Option<Vec<String>>, DockerError> {
        self.enter("image_command")?;
        Ok(self.image(image).map(|_| Vec::new()))
    }

    async fn stop_container(&self, name: &str, _grace: std::time::Duration) -> Result<(), DockerError> {
        self.enter("stop_container")?;
        self.with(|w| {
            if let Some(c) = w.container(name) {
                if c.status.running {
                    c.status.running = false;
                    c.status.exit_code = Some(0);
                }
            }
        });
        Ok(())
    }
}
