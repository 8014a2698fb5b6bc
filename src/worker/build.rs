//! The build job: turn a PENDING workspace into an image and a network, then ACTIVE — or FAILED with
//! a code and the reason. Idempotent: the image tag and the network name derive from the row id,
//! so a build interrupted by a crash is simply run again. The scheduler holds the row's lock for
//! the whole job, and every write is a compare-and-set on the snapshot the job acted on.

use std::collections::HashMap;
use std::path::Path;

use super::{project, Outcome, runtime_image::{self, RuntimeImageError}};
use crate::build_log::BuildLog;
use crate::daemon::Daemon;
use crate::docker::{labels, DockerError};
use crate::error::Code;
use crate::ids::ObjectId;
use crate::state::State;
use crate::store::{StoreError, WorkspaceChange, WorkspaceRow};
use crate::workspace::{context, dockerfile, jinad_file, paths, requirements};

/// A permanent failure: the row goes FAILED with this code and message.
struct Failure {
    code: Code,
    message: String,
}

fn fail(code: Code, message: impl Into<String>) -> Failure {
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
            DockerError::BuildFailed(message) => Stop::Fail(fail(Code::BuildFailed, message)),
            other => Stop::Fail(fail(Code::DockerError, other.to_string())),
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
        Stop::Fail(fail(Code::Internal, format!("workspace files: {e}")))
    }
}

pub async fn run(daemon: &Daemon, id: &ObjectId) -> Outcome {
    // The row first: a job the scheduler started from a listing that went stale (the build had
    // just ended) must not truncate the log of the build that ended.
    let mut row = match daemon.store.get_workspace(id).await {
        Ok(row) if row.state == State::Pending => row,
        Ok(_) | Err(StoreError::NotFound(_)) => return Outcome::Done,
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    let mut log = BuildLog::create(&daemon.config.logs_dir(), id, daemon.config.max_build_log);
    match build(daemon, id, &mut row, &mut log).await {
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
            let change = WorkspaceChange::Fail { code: code.as_str().into(), message };
            match daemon.store.transition_workspace(id, row.seen(), change).await {
                Ok(_) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound(_)) => Outcome::Done,
                Err(e) => Outcome::Retry(e.to_string()),
            }
        }
    }
}

/// Reads a workspace file, following links only inside the workspace.
async fn read_workspace_file(root: &Path, rel: &str) -> std::io::Result<String> {
    let (root, rel) = (root.to_path_buf(), std::path::PathBuf::from(rel));
    tokio::task::spawn_blocking(move || paths::read_inside(&root, &rel)).await.map_err(std::io::Error::other)?
}

/// `row` is the snapshot every write compares against; it follows each successful write.
async fn build(daemon: &Daemon, id: &ObjectId, row: &mut WorkspaceRow, log: &mut BuildLog) -> Result<(), Stop> {
    let root = crate::workspace::dir(daemon, id);
    log.note(&format!("build #{} of {id}", row.builds + 1));
    let previous_image = row.image_id.clone();

    // 1. The project's settings.
    let settings = match read_workspace_file(&root, jinad_file::FILE_NAME).await {
        Ok(text) => jinad_file::parse(&text).map_err(|e| fail(Code::InvalidJinad, e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => jinad_file::JinadSettings::default(),
        Err(e) => return Err(fail(Code::InvalidJinad, format!("cannot read .jinad: {e}")).into()),
    };
    for warning in &settings.warnings {
        log.note(warning);
    }
    let settings_json = serde_json::to_value(&settings).unwrap_or_default();
    let (files, digest) = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || {
            let files = paths::list_files(&root)?;
            let digest = crate::workspace::digest::of_files(&root, &files)?;
            Ok::<_, std::io::Error>((files, digest))
        })
        .await
        .map_err(|e| fail(Code::Internal, e.to_string()))??
    };
    *row = daemon
        .store
        .transition_workspace(id, row.seen(), WorkspaceChange::BuildStarted { settings: settings_json, files, digest })
        .await?;

    // 2. What goes into the dependency layer.
    let requirement_files = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || requirements::local_files(&root))
            .await
            .map_err(|e| fail(Code::Internal, e.to_string()))?
            .map_err(|e| fail(Code::InvalidRequirements, e.to_string()))?
    };

    // 3. The runtime image (base + jinad), then the workspace's Dockerfile.
    let base = dockerfile::base_image(&daemon.config.base_image_template, &settings.python);
    let runtime = match runtime_image::ensure(daemon, &base, log).await {
        Ok(tag) => tag,
        Err(RuntimeImageError::BaseMissing(_)) => {
            let e = RuntimeImageError::BaseMissing(base.clone());
            return Err(fail(Code::BaseImageNotFound, e.to_string()).into());
        }
        Err(RuntimeImageError::Docker(e)) => return Err(e.into()),
        Err(RuntimeImageError::Io(e)) => return Err(fail(Code::Internal, e.to_string()).into()),
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
            let rel = paths::safe_relative(Path::new(path))
                .ok_or_else(|| fail(Code::DockerfileNotFound, format!("dockerfile `{path}` is outside the workspace")))?;
            let user = read_workspace_file(&root, &rel.to_string_lossy())
                .await
                .map_err(|e| fail(Code::DockerfileNotFound, format!("dockerfile `{path}`: {e}")))?;
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
            .map_err(|e| fail(Code::Internal, e.to_string()))??;
    }
    // Built under the build tag; the row's own tag follows only once the build has succeeded,
    // here, under the row's lock (a build a crash left running can only move the build tag).
    let tag = id.image_tag();
    let build_tag = id.build_tag();
    log.note(&format!("building {tag}"));
    let image_id = {
        let _building = daemon.build_gate.read().await;
        daemon.engine.build_image(ctx.path(), dockerfile::DOCKERFILE_PATH, &build_tag, &build_args, &mut |line| log.line(line)).await?
    };
    drop(ctx);
    match daemon.engine.tag_image(&image_id, &tag).await {
        Err(e) if e.is_not_found() => return Err(Stop::Retry(format!("the image just built is gone ({e}); building again"))),
        other => other?,
    }

    // 5. The network, on a subnet of the daemon's own pool.
    const SUBNET_ATTEMPTS: u32 = 8;
    let network_id = match daemon.engine.network_id(id.as_str()).await? {
        Some(existing) => existing,
        None => {
            let mut attempt = 0;
            // Subnets the engine refused: another daemon's network may not be listed yet while
            // the engine already holds its subnet.
            let mut refused: Vec<String> = Vec::new();
            loop {
                let mut taken = daemon.engine.used_subnets().await?;
                taken.extend(refused.iter().cloned());
                let subnet = daemon.store.allocate_subnet(id, &daemon.network_pool, &taken).await?.ok_or_else(|| {
                    let pool = daemon.network_pool;
                    fail(
                        Code::NetworkPoolExhausted,
                        format!("all {} subnets of {} (/{}) are in use; delete workspaces or widen --network-pool", pool.capacity(), pool.range, pool.prefix),
                    )
                })?;
                match daemon.engine.ensure_network(id.as_str(), &subnet, &object_labels).await {
                    Ok(network) => {
                        log.note(&format!("network {id} on {subnet}"));
                        break network;
                    }
                    // Another daemon on this engine (its own database, the same pool) created a
                    // network on this subnet since we listed the engine's: drop it, pick again.
                    Err(e) if e.is_subnet_taken() && attempt < SUBNET_ATTEMPTS => {
                        attempt += 1;
                        log.note(&format!("subnet {subnet} was taken meanwhile ({e}); picking another"));
                        daemon.store.release_subnet(id, &subnet).await?;
                        refused.push(subnet);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    };

    // 6. The tag must still name what was built (nothing may have untagged it meanwhile) before
    //    the row says ACTIVE; if it does not, build again.
    match daemon.engine.image_id(&tag).await? {
        Some(current) if current == image_id => {}
        other => return Err(Stop::Retry(format!("the tag {tag} names {other:?} instead of the image just built; building again"))),
    }
    // 7. The `.jinad` `run` container (JinaD's end-to-end project), on the new image.
    let project = project::restart(daemon, id, &image_id, &network_id, &settings).await?;
    if project.is_some() || row.project.is_some() {
        *row = daemon.store.transition_workspace(id, row.seen(), WorkspaceChange::Project { project }).await?;
    }
    let change = WorkspaceChange::Activate { image_id: image_id.clone(), image_tag: tag, network_id };
    *row = daemon.store.transition_workspace(id, row.seen(), change).await?;
    log.note(&format!("ACTIVE: image {}", short(&image_id)));
    if let Err(e) = daemon.store.touch_image(&image_id).await {
        tracing::debug!("recording the use of {image_id}: {e}");
    }
    // The build tag has done its job (the image keeps the row's tag).
    if let Err(e) = daemon.engine.remove_image(&build_tag).await {
        tracing::info!(%id, "the build tag stays until the next reconciliation: {e}");
    }

    // 8. The image of the previous build, if the tag moved on: by id, so it goes only if no tag
    //    (another workspace's) still names it.
    //    Only when no tag names it any more: removing an image by id that has exactly one tag
    //    left (an identical workspace's) would untag and delete it under that workspace.
    if let Some(previous) = previous_image.filter(|p| *p != image_id) {
        let tagged = daemon.engine.own_images(&[(labels::ROLE, "workspace")]).await.map(|images| {
            images.into_iter().find(|i| i.docker_id == previous).map(|i| !i.tags.is_empty())
        });
        match tagged {
            Ok(Some(false)) => {
                if let Err(e) = daemon.engine.remove_image(&previous).await {
                    tracing::info!(%id, "the previous image {} stays: {e}", short(&previous));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::info!(%id, "the previous image {} stays: {e}", short(&previous)),
        }
    }
    Ok(())
}

fn short(docker_id: &str) -> &str {
    let id = docker_id.trim_start_matches("sha256:");
    &id[..12.min(id.len())]
}
