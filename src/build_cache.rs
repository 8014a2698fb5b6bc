//! The build cache, bounded. What the daemon leaves on the engine besides what runs: runtime
//! images (one per binary and base image), the layers of workspace images, what failed builds
//! left, and step containers a killed classic build left behind. Its size is the bytes of every
//! layer of this daemon's images and runtime images, down to (not including) the base images.
//!
//! Eviction, least recently used first (`image_uses`, else the image's creation time), of leaves
//! only: runtime images of other binaries and untagged layers nothing uses. Never: an image a
//! container uses (any container, any state), the image of any workspace row, this binary's
//! runtime images, an image someone else tagged, or anything while a build of this daemon runs
//! (the whole pass holds the build gate exclusively: a build's newest layer is an untagged leaf
//! until its next step starts on it). Removal is never forced, so the engine refuses anything
//! that gained a child or a container meanwhile.
//!
//! Policy: with `--cache-max-size`, after every build and every minute, a pass that finds the
//! cache over the limit evicts until it is under (and does nothing at all otherwise). On demand (`POST /gc`, `jinad gc`): everything
//! evictable.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::daemon::Daemon;
use crate::docker::inventory::{ContainerInfo, ImageRecord};
use crate::docker::{labels, DockerError};

/// A stopped step container younger than this may belong to a build that is about to start it
/// (another daemon's, on the same engine): left alone.
const LEAKED_CONTAINER_AGE: i64 = 30;
/// How often the policy checks the cache's size (besides after every build).
const POLICY_EVERY: Duration = Duration::from_secs(60);

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GcReport {
    /// Bytes of the cache before and after the pass.
    pub size_before: u64,
    pub size_after: u64,
    /// The limit the pass worked to (`--cache-max-size`), or `null` on demand (everything evictable).
    pub limit: Option<u64>,
    /// Bytes the removed images held.
    pub freed_bytes: u64,
    pub removed_images: Vec<EvictedImage>,
    /// Step containers of killed builds (no labels, created from a cache image by id).
    pub removed_containers: Vec<String>,
}

/// One image the pass removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvictedImage {
    pub id: String,
    /// Its tags (`jinad/runtime:…` of another binary), empty for a layer.
    pub tags: Vec<String>,
    /// Bytes freed: its own layer and the untagged parents that went with it.
    pub bytes: u64,
    /// When it was last used (unix seconds).
    pub last_used: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("builds are running; the cache is collected when they end (or try again)")]
    BuildsRunning,
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The engine's images as a graph, narrowed to the cache.
pub struct Cache {
    images: HashMap<String, ImageRecord>,
    /// Child ids per image id.
    children: HashMap<String, HashSet<String>>,
    /// Images of the cache: this daemon's and runtime images, and their ancestors down to the
    /// first image that is someone else's (a base image).
    members: HashSet<String>,
    /// Images that must stay, and their ancestors.
    kept: HashSet<String>,
    /// Where the cache's chains end: the base images.
    bases: HashSet<String>,
}

impl Cache {
    /// `own`: whether an image is this daemon's (or a runtime image); `keep`: ids that must stay.
    pub fn new(images: Vec<ImageRecord>, own: impl Fn(&ImageRecord) -> bool, keep: &HashSet<String>) -> Self {
        let images: HashMap<String, ImageRecord> = images.into_iter().map(|i| (i.id.clone(), i)).collect();
        let mut children: HashMap<String, HashSet<String>> = HashMap::new();
        for image in images.values() {
            if let Some(parent) = &image.parent {
                children.entry(parent.clone()).or_default().insert(image.id.clone());
            }
        }
        let mut cache = Cache { images, children, members: HashSet::new(), kept: HashSet::new(), bases: HashSet::new() };
        let roots: Vec<String> = cache.images.values().filter(|i| own(i)).map(|i| i.id.clone()).collect();
        for id in roots {
            let mut at = Some(id);
            while let Some(id) = at {
                let Some(image) = cache.images.get(&id) else { break };
                let foreign = !own(image) && !image.tags.is_empty();
                if foreign {
                    cache.bases.insert(id);
                    break;
                }
                if !cache.members.insert(id.clone()) {
                    break;
                }
                at = image.parent.clone();
            }
        }
        for id in keep {
            cache.keep(id);
        }
        // An image someone else also tagged is theirs too.
        let tagged: Vec<String> = cache.members.iter().filter(|id| cache.images[*id].tags.iter().any(|t| !is_jinad_tag(t))).cloned().collect();
        for id in tagged {
            cache.keep(&id);
        }
        cache
    }

    fn keep(&mut self, id: &str) {
        let mut at = Some(id.to_string());
        while let Some(id) = at {
            if !self.kept.insert(id.clone()) {
                break;
            }
            at = self.images.get(&id).and_then(|i| i.parent.clone());
        }
    }

    /// The bytes of an image's own layer (its size less its parent's).
    fn layer(&self, id: &str) -> u64 {
        let Some(image) = self.images.get(id) else { return 0 };
        let parent = image.parent.as_ref().and_then(|p| self.images.get(p)).map_or(0, |p| p.size);
        image.size.saturating_sub(parent)
    }

    pub fn size(&self) -> u64 {
        self.members.iter().map(|id| self.layer(id)).sum()
    }

    /// Whether `id` is an image of the cache or a base image it builds on.
    pub fn holds(&self, id: &str) -> bool {
        self.members.contains(id) || self.bases.contains(id)
    }

    /// Leaves that may go, each with the bytes its removal frees (itself and the untagged
    /// parents left childless).
    pub fn evictable(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for id in &self.members {
            if self.kept.contains(id) || self.children.get(id).is_some_and(|c| !c.is_empty()) {
                continue;
            }
            let mut bytes = self.layer(id);
            let mut child = id.clone();
            let mut parent = self.images.get(id).and_then(|i| i.parent.clone());
            while let Some(p) = parent {
                let only_child = self.children.get(&p).is_some_and(|c| c.len() == 1 && c.contains(&child));
                let image = match self.images.get(&p) {
                    Some(image) if only_child && image.tags.is_empty() && self.members.contains(&p) && !self.kept.contains(&p) => image,
                    _ => break,
                };
                bytes += self.layer(&p);
                child = p.clone();
                parent = image.parent.clone();
            }
            out.push((id.clone(), bytes));
        }
        out
    }

    /// Forget `id` and the parents its removal took along (as [`Cache::evictable`] counted them).
    pub fn remove(&mut self, id: &str) {
        let mut at = Some(id.to_string());
        while let Some(id) = at {
            let Some(image) = self.images.remove(&id) else { break };
            self.members.remove(&id);
            at = None;
            if let Some(parent) = image.parent {
                if let Some(siblings) = self.children.get_mut(&parent) {
                    siblings.remove(&id);
                    let pruned = siblings.is_empty()
                        && self.images.get(&parent).is_some_and(|p| p.tags.is_empty())
                        && self.members.contains(&parent)
                        && !self.kept.contains(&parent);
                    if pruned {
                        at = Some(parent);
                    }
                }
            }
        }
    }

    pub fn image(&self, id: &str) -> Option<&ImageRecord> {
        self.images.get(id)
    }
}

/// Tags jinad gives: runtime images and workspace images (`jworkspace:<uuid>[-build]`).
fn is_jinad_tag(tag: &str) -> bool {
    tag.starts_with("jinad/runtime:") || tag.starts_with("jworkspace:")
}

/// One pass: evicts until the cache is at most `limit` bytes (`None`: everything evictable).
/// `wait`: how long to wait for running builds to end; without, a pass that finds one running
/// gives up at once.
pub async fn collect(daemon: &Daemon, limit: Option<u64>, wait: Option<Duration>) -> Result<GcReport, GcError> {
    let _no_build = match wait {
        Some(wait) => tokio::time::timeout(wait, daemon.build_gate.write()).await.map_err(|_| GcError::BuildsRunning)?,
        None => daemon.build_gate.try_write().map_err(|_| GcError::BuildsRunning)?,
    };
    let mut report = GcReport { limit, ..Default::default() };
    let (mut cache, containers) = survey(daemon).await?;
    report.size_before = cache.size();
    daemon.metrics.set_cache_size(report.size_before);
    // The policy does nothing while the cache is within its limit.
    if limit.is_some_and(|limit| report.size_before <= limit) {
        report.size_after = report.size_before;
        return Ok(report);
    }

    // Step containers of killed builds first: they pin the layers they were created from.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    for container in &containers {
        if leaked_step(container, &cache, now) {
            match daemon.engine.remove_container(&container.id).await {
                Ok(()) => report.removed_containers.push(container.id.clone()),
                Err(e) => tracing::warn!("cannot remove the leaked build container {}: {e}", container.id),
            }
        }
    }
    if !report.removed_containers.is_empty() {
        (cache, _) = survey(daemon).await?;
    }

    let uses = daemon.store.image_uses().await?;
    let target = limit.unwrap_or(0);
    let mut size = cache.size();
    let mut refused = HashSet::new();
    while size > target || limit.is_none() {
        let last_used = |id: &str| uses.get(id).copied().unwrap_or_else(|| cache.image(id).map_or(0, |i| i.created));
        let next = cache.evictable().into_iter().filter(|(id, _)| !refused.contains(id)).min_by_key(|(id, _)| (last_used(id), id.clone()));
        let Some((id, bytes)) = next else { break };
        let tags = cache.image(&id).map(|i| i.tags.clone()).unwrap_or_default();
        let used = last_used(&id);
        match evict(daemon, &id, &tags).await {
            Ok(()) => {
                cache.remove(&id);
                size = size.saturating_sub(bytes);
                report.freed_bytes += bytes;
                report.removed_images.push(EvictedImage { id, tags, bytes, last_used: used });
            }
            Err(e) => {
                // It gained a child or a container meanwhile (another daemon): not ours to force.
                tracing::info!("the build cache keeps {id}: {e}");
                refused.insert(id);
            }
        }
    }
    let gone: Vec<String> = report.removed_images.iter().map(|i| i.id.clone()).collect();
    daemon.store.forget_images(&gone).await?;
    report.size_after = survey(daemon).await?.0.size();
    daemon.metrics.set_cache_size(report.size_after);
    Ok(report)
}

async fn evict(daemon: &Daemon, id: &str, tags: &[String]) -> Result<(), DockerError> {
    // Several tags: all but the last go first (an id with several tags is not removed unforced).
    if let Some((_, rest)) = tags.split_last() {
        for tag in rest {
            daemon.engine.remove_image(tag).await?;
        }
    }
    daemon.engine.evict_image(tags.last().map_or(id, String::as_str)).await
}

/// The cache as the engine has it now, and every container.
async fn survey(daemon: &Daemon) -> Result<(Cache, Vec<ContainerInfo>), GcError> {
    let images = daemon.engine.all_images().await?;
    let containers = daemon.engine.all_containers().await?;
    let mut keep: HashSet<String> = containers.iter().map(|c| c.image_id.clone()).collect();
    let rows = daemon.store.list_workspaces().await?;
    let live: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    for row in &rows {
        keep.extend(row.image_id.clone());
    }
    // A workspace tag of a row that exists (its build tag too, between the build and the row's
    // update): reconciliation, not the cache, decides about those.
    for image in &images {
        let owned = image.tags.iter().filter_map(|t| crate::ids::ObjectId::from_image_tag(t)).any(|(id, _)| live.contains(id.as_str()));
        if owned {
            keep.insert(image.id.clone());
        }
    }
    let digest = crate::worker::runtime_image::binary_digest().await.unwrap_or_default();
    let current = format!("jinad/runtime:{}-", &digest[..12.min(digest.len())]);
    for image in &images {
        if image.tags.iter().any(|t| t.starts_with(&current)) {
            keep.insert(image.id.clone());
        }
    }
    let daemon_id = daemon.daemon_id.clone();
    let own = move |i: &ImageRecord| {
        i.labels.get(labels::MANAGED).map(String::as_str) == Some("true")
            && (i.labels.get(labels::ROLE).map(String::as_str) == Some("runtime") || i.labels.get(labels::DAEMON) == Some(&daemon_id))
    };
    Ok((Cache::new(images, own, &keep), containers))
}

/// A step container the classic builder left: a build step's command (`/bin/sh -c …`), a name
/// Docker generated, stopped,
/// unlabelled by jinad, created from a cache image or base image given by id (as the builder
/// does; `docker run` gives names), and not just created.
fn leaked_step(container: &ContainerInfo, cache: &Cache, now: i64) -> bool {
    let by_id = container.image.starts_with("sha256:") || (container.image.len() >= 12 && container.image.bytes().all(|b| b.is_ascii_hexdigit()));
    // Every step of a classic build runs `/bin/sh -c <RUN command>` or `/bin/sh -c #(nop) <step>`.
    let step = container.command.starts_with("/bin/sh -c ") && docker_generated_name(&container.name);
    step && matches!(container.state.as_str(), "created" | "exited" | "dead")
        && !container.labels.contains_key(labels::ID)
        && by_id
        && cache.holds(&container.image_id)
        && now - container.created > LEAKED_CONTAINER_AGE
}

/// `adjective_surname` (or `…_surname3`): the names Docker gives containers nobody named, as the
/// builder's step containers are. A container someone named is never taken for a leaked step.
fn docker_generated_name(name: &str) -> bool {
    let Some((left, right)) = name.split_once('_') else { return false };
    let right = right.trim_end_matches(|c: char| c.is_ascii_digit());
    !left.is_empty() && !right.is_empty() && left.bytes().all(|b| b.is_ascii_lowercase()) && right.bytes().all(|b| b.is_ascii_lowercase())
}

/// The policy: with `--cache-max-size`, a pass whenever a build ended and every minute.
pub async fn run_policy(daemon: Arc<Daemon>) {
    let limit = daemon.config.cache_max_size;
    if limit == 0 {
        return;
    }
    loop {
        let _ = tokio::time::timeout(POLICY_EVERY, daemon.build_ended.notified()).await;
        match collect(&daemon, Some(limit), None).await {
            Ok(report) if !report.removed_images.is_empty() || !report.removed_containers.is_empty() => tracing::info!(
                freed = report.freed_bytes,
                images = report.removed_images.len(),
                containers = report.removed_containers.len(),
                "build cache over {limit} bytes: evicted down to {}",
                report.size_after
            ),
            Ok(_) => {}
            // Another build is running: the pass after it ends tries again.
            Err(GcError::BuildsRunning) => {}
            Err(e) => tracing::warn!("build cache: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, parent: Option<&str>, size: u64, tags: &[&str], own: bool) -> ImageRecord {
        let mut labels = HashMap::new();
        if own {
            labels.insert("own".to_string(), "yes".to_string());
        }
        ImageRecord { id: id.into(), parent: parent.map(str::to_string), tags: tags.iter().map(|t| t.to_string()).collect(), labels, size, created: 0 }
    }

    fn cache(keep: &[&str]) -> Cache {
        // base(100) ← venv(+10) ← old runtime(+50, tagged) ; venv ← new runtime(+60) ← ws(+5, row's) ;
        // new runtime ← left(+7) ← leaf(+3): what a failed build left.
        let images = vec![
            image("base", None, 100, &["jinad/python:3.11-bookworm"], false),
            image("venv", Some("base"), 110, &[], false),
            image("old", Some("venv"), 160, &["jinad/runtime:aaaa-bbbb"], true),
            image("new", Some("venv"), 170, &["jinad/runtime:cccc-bbbb"], true),
            image("ws", Some("new"), 175, &["jworkspace:1"], true),
            image("left", Some("new"), 177, &[], false),
            image("leaf", Some("left"), 180, &[], true),
        ];
        let keep: HashSet<String> = keep.iter().map(|k| k.to_string()).collect();
        Cache::new(images, |i| i.labels.contains_key("own"), &keep)
    }

    #[test]
    fn the_cache_is_every_layer_above_the_base_images() {
        let c = cache(&["ws", "new"]);
        assert_eq!(c.size(), 10 + 50 + 60 + 5 + 7 + 3);
        assert!(c.holds("base") && c.holds("leaf") && !c.holds("nothing"));
        let mut evictable = c.evictable();
        evictable.sort();
        // The old runtime goes alone (venv has another child); the leaf takes its untagged parent.
        assert_eq!(evictable, vec![("leaf".to_string(), 10), ("old".to_string(), 50)]);
    }

    #[test]
    fn kept_images_and_their_ancestors_never_go() {
        let c = cache(&["ws", "new", "leaf", "old"]);
        assert!(c.evictable().is_empty());
    }

    #[test]
    fn removal_prunes_the_parents_it_counted() {
        let mut c = cache(&["ws", "new"]);
        c.remove("leaf");
        assert!(c.image("left").is_none(), "its only untagged parent went with it");
        assert!(c.image("new").is_some());
        c.remove("old");
        assert_eq!(c.size(), 10 + 60 + 5);
        assert!(c.evictable().is_empty());
    }

    #[test]
    fn only_docker_generated_names_can_be_leaked_steps() {
        for name in ["eager_turing", "brave_hopper12"] {
            assert!(docker_generated_name(name), "{name}");
        }
        for name in ["my-job", "review1-byid", "user_Job", "_x", "x_", "a_b_c", "job_1x"] {
            assert!(!docker_generated_name(name), "{name}");
        }
    }

    #[test]
    fn a_leaf_someone_else_tagged_stays() {
        let images = vec![image("base", None, 100, &["debian:12"], false), image("x", Some("base"), 150, &["jinad/runtime:a-b", "mine:1"], true)];
        let c = Cache::new(images, |i| i.labels.contains_key("own"), &HashSet::new());
        assert_eq!(c.size(), 50);
        assert!(c.evictable().is_empty());
    }
}
