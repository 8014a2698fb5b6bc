//! The Docker engine. The rest of the daemon sees the [`Engine`] trait, [`DockerError`] and plain
//! data; [`DockerEngine`] (`bollard_engine.rs`) is the real one, [`fake::FakeEngine`] an
//! in-memory one for deterministic tests of workers and reconciliation.

mod bollard_engine;
pub mod containers;
pub mod fake;
pub mod inventory;
pub mod labels;
pub mod reference;

pub use bollard_engine::DockerEngine;
pub use containers::{ContainerSpec, ContainerStatus, Limits, RestartMode, RestartPolicy};

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::errors::Error as BollardError;

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

    /// The engine refused a network because its subnet overlaps one it has.
    pub fn is_subnet_taken(&self) -> bool {
        matches!(self, DockerError::Api { status: 403, message } if message.contains("overlaps"))
    }

    /// The engine answered 404 (for lookups and removals: the object does not exist).
    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::Api { status: 404, .. })
    }
}

impl From<BollardError> for DockerError {
    fn from(e: BollardError) -> Self {
        let error = Self::from_bollard(e);
        crate::metrics::DOCKER_ERRORS.with_label_values(&[&error.metric_code()]).inc();
        error
    }
}

impl DockerError {
    /// The `code` label of `jinad_docker_errors_total`.
    pub fn metric_code(&self) -> String {
        match self {
            DockerError::Unavailable(_) => "unavailable".into(),
            DockerError::BuildFailed(_) => "build_failed".into(),
            DockerError::Api { status, .. } => format!("api_{status}"),
            DockerError::Other(_) => "other".into(),
        }
    }

    fn from_bollard(e: BollardError) -> Self {
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
    /// Remove an image by tag or id, and its parents that are left untagged and unused: what
    /// the build cache evicts. Never forced (an image a container uses, or with children,
    /// stays). Only while no build of this daemon runs.
    async fn evict_image(&self, reference: &str) -> Result<(), DockerError>;
    /// Every image of the engine, intermediate layers included.
    async fn all_images(&self) -> Result<Vec<inventory::ImageRecord>, DockerError>;
    /// Every container of the engine, whoever made it, of any state.
    async fn all_containers(&self) -> Result<Vec<inventory::ContainerInfo>, DockerError>;
    /// Tag an image (by id) as `repo:tag`, moving the tag if another image had it.
    async fn tag_image(&self, image: &str, reference: &str) -> Result<(), DockerError>;
    /// Push `repo:tag` (already tagged) to the registry `repo` names, without credentials (a
    /// registry that needs a login is not supported yet); returns the digest the registry stored
    /// the manifest under.
    async fn push_image(&self, repo: &str, tag: &str) -> Result<String, DockerError>;
    /// Every name of an image: its `repo:tag`s and its `repo@digest`s (what pushes leave).
    async fn image_references(&self, image: &str) -> Result<Vec<String>, DockerError>;
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

    /// The `jinad.id` of each of this daemon's containers that stops (exits, is killed, dies), as
    /// it happens; the stream ends when the engine connection does (subscribe again).
    async fn container_exits(&self) -> Result<tokio::sync::mpsc::Receiver<String>, DockerError>;
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
