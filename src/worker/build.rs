//! The build job: turn a PENDING workspace into an image and a network, then ACTIVE — or FAILED with
//! a code and the reason. Idempotent: the image tag and the network name derive from the row id, so
//! a build interrupted by a crash is simply run again.

use std::collections::HashMap;

use super::{Outcome, runtime_image::{self, RuntimeImageError}};
use crate::build_log::BuildLog;
use crate::daemon::Daemon;
use crate::docker::{labels, DockerError};
use crate::ids::ObjectId;
use crate::state::State;
use crate::store::{StoreError, WorkspaceChange};
use crate::workspace::{context, dockerfile, jinad_file, requirements};

/// A permanent failure: the row goes FAILED with this code and message.
struct Failure {
    code: &'static str,
    message: String,
}

fn fail(code: &'static str, message: impl Into<String>) -> Failure {
    Failure { code, message: message.into() }
}

/// What stops a build: a permanent failure, or an engine we should try again later.
enum Stop {
    Fail(Failure),
    Retry(String),
    /// The row left PENDING under us (deleted meanwhile): nothing more to do.
    Gone,
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Stop::Fail(f)
    }
}

impl From<DockerError> for Stop {
    fn from(e: DockerError) -> Self {
        match e {
            e if e.is_retryable() => Stop::Retry(e.to_string()),
            DockerError::BuildFailed(message) => Stop::Fail(fail("build_failed", message)),
            other => Stop::Fail(fail("docker_error", other.to_string())),
        }
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } | StoreError::NotFound(_) => Stop::Gone,
            other => Stop::Retry(other.to_string()),
        }
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Fail(fail("internal", format!("workspace files: {e}")))
    }
}

pub async fn run(daemon: &Daemon, id: &ObjectId) -> Outcome {
    let mut log = BuildLog::create(&daemon.config.logs_dir(), id);
    match build(daemon, id, &mut log).await {
        Ok(()) => Outcome::Done,
        Err(Stop::Gone) => {
            log.note("the workspace left PENDING during the build (deleted?); result discarded");
            Outcome::Done
        }
        Err(Stop::Retry(reason)) => {
            log.note(&format!("will retry: {reason}"));
            Outcome::Retry(reason)
        }
        Err(Stop::Fail(Failure { code, message })) => {
            log.note(&format!("FAILED ({code}): {message}"));
            let change = WorkspaceChange::Fail { code: code.into(), message };
            match daemon.store.transition_workspace(id, State::Pending, change).await {
                Ok(_) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound(_)) => Outcome::Done,
                Err(e) => Outcome::Retry(e.to_string()),
            }
        }
    }
}

async fn build(daemon: &Daemon, id: &ObjectId, log: &mut BuildLog) -> Result<(), Stop> {
    let row = daemon.store.get_workspace(id).await?;
    if row.state != State::Pending {
        return Err(Stop::Gone);
    }
    let root = crate::workspace::dir(daemon, id);
    log.note(&format!("build #{} of {id}", row.builds + 1));

    // 1. The project's settings.
    let settings = match tokio::fs::read_to_string(root.join(jinad_file::FILE_NAME)).await {
        Ok(text) => jinad_file::parse(&text).map_err(|e| fail("invalid_jinad", e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => jinad_file::JinadSettings::default(),
        Err(e) => return Err(fail("invalid_jinad", format!("cannot read .jinad: {e}")).into()),
    };
    for warning in &settings.warnings {
        log.note(warning);
    }
    let settings_json = serde_json::to_value(&settings).unwrap_or_default();
    daemon
        .store
        .transition_workspace(id, State::Pending, WorkspaceChange::BuildStarted { settings: settings_json })
        .await?;

    // 2. What goes into the dependency layer.
    let requirement_files = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || requirements::local_files(&root))
            .await
            .map_err(|e| fail("internal", e.to_string()))?
            .map_err(|e| fail("invalid_requirements", e.to_string()))?
    };

    // 3. The runtime image (base + jinad), then the workspace's Dockerfile.
    let base = dockerfile::base_image(&daemon.config.base_image_template, &settings.python);
    let runtime = match runtime_image::ensure(daemon, &base, log).await {
        Ok(tag) => tag,
        Err(RuntimeImageError::BaseMissing(_)) => {
            let e = RuntimeImageError::BaseMissing(base.clone());
            return Err(fail("base_image_not_found", e.to_string()).into());
        }
        Err(RuntimeImageError::Docker(e)) => return Err(e.into()),
        Err(RuntimeImageError::Io(e)) => return Err(fail("internal", e.to_string()).into()),
    };
    let object_labels = labels::for_row(&daemon.daemon_id, id.as_str(), id.as_str());
    let build_args: HashMap<String, String> = dockerfile::FORWARDED_BUILD_ARGS
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let arg_names: Vec<&str> = dockerfile::FORWARDED_BUILD_ARGS.into_iter().filter(|k| build_args.contains_key(*k)).collect();
    let text = match settings.custom_dockerfile() {
        None => dockerfile::default_workspace(&runtime, &arg_names, &labels::for_workspace_image(&daemon.daemon_id)),
        Some(path) => {
            let rel = crate::workspace::paths::safe_relative(std::path::Path::new(path))
                .ok_or_else(|| fail("dockerfile_not_found", format!("dockerfile `{path}` is outside the workspace")))?;
            let user = tokio::fs::read_to_string(root.join(rel))
                .await
                .map_err(|e| fail("dockerfile_not_found", format!("dockerfile `{path}`: {e}")))?;
            log.note(&format!("using the project's Dockerfile `{path}`"));
            dockerfile::user_workspace(&user, &runtime, &object_labels)
        }
    };

    // 4. The image.
    let ctx = tempfile::Builder::new().prefix("context-").suffix(".tar").tempfile_in(daemon.config.tmp_dir())?;
    {
        let (out, root, text, files) = (ctx.path().to_path_buf(), root.clone(), text.clone(), requirement_files.clone());
        tokio::task::spawn_blocking(move || context::write_workspace_context(&out, &root, &text, &files))
            .await
            .map_err(|e| fail("internal", e.to_string()))??;
    }
    let tag = id.image_tag();
    log.note(&format!("building {tag}"));
    let image_id = daemon
        .engine
        .build_image(ctx.path(), dockerfile::DOCKERFILE_PATH, &tag, &build_args, |line| log.line(line))
        .await?;
    drop(ctx);

    // 5. The network.
    let network_id = daemon.engine.ensure_network(id.as_str(), &object_labels).await?;
    log.note(&format!("network {} ({})", id, short(&network_id)));

    // 6. Done: ACTIVE, and the image of the previous build goes.
    let change = WorkspaceChange::Activate { image_id: image_id.clone(), image_tag: tag, network_id };
    daemon.store.transition_workspace(id, State::Pending, change).await?;
    log.note(&format!("ACTIVE: image {}", short(&image_id)));
    // Images of earlier builds (an update, or a build a crash interrupted) are no longer needed.
    if let Err(e) = crate::reconcile::remove_stale_images(daemon).await {
        tracing::info!(%id, "previous images stay until the next reconciliation: {e}");
    }
    Ok(())
}

fn short(docker_id: &str) -> &str {
    let id = docker_id.trim_start_matches("sha256:");
    &id[..12.min(id.len())]
}
