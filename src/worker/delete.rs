//! The delete job: remove everything a DELETING workspace owns — its containers, network, images,
//! files and log — then the row. Only objects labelled with this workspace and this daemon are
//! touched. An unreachable engine is waited out; any other error is retried a few times, then the
//! row ends FAILED (`delete_failed`) with the reason, and `DELETE` again tries again.

use super::Outcome;
use crate::daemon::Daemon;
use crate::docker::{labels, DockerError};
use crate::error::Code;
use crate::ids::ObjectId;
use crate::state::State;
use crate::store::{DeploymentChange, StoreError, WorkspaceChange};

/// Attempts before a delete that keeps failing for a reason other than an unreachable engine
/// gives up and says why on the row.
pub const ATTEMPTS: u32 = 3;

enum DeleteError {
    /// Worth waiting for (the engine is down, the database busy).
    Transient(String),
    Permanent(String),
}

impl From<DockerError> for DeleteError {
    fn from(e: DockerError) -> Self {
        if e.is_retryable() {
            DeleteError::Transient(e.to_string())
        } else {
            DeleteError::Permanent(e.to_string())
        }
    }
}

/// `attempt` counts from 1.
pub async fn run(daemon: &Daemon, id: &ObjectId, attempt: u32) -> Outcome {
    // From a listing that may be stale: only a row that is DELETING now.
    match daemon.store.get_workspace(id).await {
        Ok(row) if row.state == State::Deleting => {}
        Ok(_) | Err(StoreError::NotFound(_)) => return Outcome::Done,
        Err(e) => return Outcome::Retry(e.to_string()),
    }
    // The cascade: the workspace's flows, pods and peas go first (their stop jobs stop the
    // containers and remove the rows); the database refuses to remove a workspace they name.
    match cascade(daemon, id).await {
        Ok(true) => {}
        Ok(false) => return Outcome::Waiting,
        Err(e) => return Outcome::Retry(e.to_string()),
    }
    match delete(daemon, id).await {
        Ok(()) => Outcome::Done,
        Err(DeleteError::Transient(reason)) => Outcome::Retry(reason),
        Err(DeleteError::Permanent(reason)) if attempt < ATTEMPTS => Outcome::Retry(reason),
        Err(DeleteError::Permanent(reason)) => {
            tracing::warn!(%id, "delete failed {attempt} times, giving up: {reason}");
            let Ok(row) = daemon.store.get_workspace(id).await else { return Outcome::Done };
            if row.state != State::Deleting {
                return Outcome::Done;
            }
            let change = WorkspaceChange::Fail { code: Code::DeleteFailed.as_str().into(), message: reason };
            match daemon.store.transition_workspace(id, row.seen(), change).await {
                Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Outcome::Done,
                Err(e) => Outcome::Retry(e.to_string()),
            }
        }
    }
}

/// Moves every deployment of the workspace to DELETING; `true` once none is left.
async fn cascade(daemon: &Daemon, id: &ObjectId) -> Result<bool, StoreError> {
    let deployments = daemon.store.deployments_of(id).await?;
    for row in &deployments {
        let Some(dep) = row.object_id() else { continue };
        if row.state != State::Deleting {
            match daemon.store.transition_deployment(&dep, row.seen(), DeploymentChange::Delete).await {
                Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if !deployments.is_empty() {
        daemon.wake.notify_one();
    }
    Ok(deployments.is_empty())
}

async fn delete(daemon: &Daemon, id: &ObjectId) -> Result<(), DeleteError> {
    let engine = &daemon.engine;
    for container in engine.own_containers(&[(labels::WORKSPACE, id.as_str())]).await? {
        engine.remove_container(&container.docker_id).await?;
    }
    for network in engine.own_networks(&[(labels::WORKSPACE, id.as_str())]).await? {
        engine.remove_network(&network.docker_id).await?;
    }
    // Its tag goes (which deletes the image unless another workspace's tag names it too); an image
    // only this workspace's label names (a project Dockerfile's) goes by id.
    let (tag, build_tag) = (id.image_tag(), id.build_tag());
    for image in engine.own_images(&[(labels::ROLE, "workspace")]).await? {
        let owners = crate::reconcile::image_owners(&image);
        let mine: Vec<&String> = image.tags.iter().filter(|t| **t == tag || **t == build_tag).collect();
        if !mine.is_empty() {
            for t in mine {
                engine.remove_image(t).await?;
            }
        } else if owners == [id.clone()] {
            engine.remove_image(&image.docker_id).await?;
        }
    }
    let dir = crate::workspace::dir(daemon, id);
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DeleteError::Permanent(format!("cannot remove {}: {e}", dir.display()))),
    }
    let _ = tokio::fs::remove_file(crate::build_log::path(&daemon.config.logs_dir(), id)).await;
    match daemon.store.remove_workspace(id).await {
        Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e @ StoreError::Conflict { .. }) => Err(DeleteError::Permanent(e.to_string())),
        Err(e) => Err(DeleteError::Transient(e.to_string())),
    }
}
