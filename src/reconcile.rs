//! Reconciliation: make the rows and what the Docker engine really has agree. Runs before the API
//! serves and then every `--reconcile-interval` seconds.
//!
//! - ACTIVE workspaces whose image or network is gone are queued for a rebuild (PENDING).
//! - Objects labelled with this daemon's id whose row is gone are removed, and so are images of a
//!   settled workspace that are not its current image (left by a crash mid-build or by a rebuild).
//! - Objects of other daemons are never touched. PENDING and DELETING rows are the workers' business.

use std::sync::Arc;
use std::time::Duration;

use crate::build_log::BuildLog;
use crate::daemon::Daemon;
use crate::docker::{labels, DockerError};
use crate::ids::{Kind, ObjectId};
use crate::state::State;
use crate::store::WorkspaceChange;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub requeued: Vec<String>,
    pub removed_images: usize,
    pub removed_networks: usize,
    pub removed_containers: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

pub async fn reconcile(daemon: &Daemon) -> Result<Report, ReconcileError> {
    let engine = &daemon.engine;
    let store = &daemon.store;
    let mut report = Report::default();

    for row in store.workspaces_in(&[State::Active]).await? {
        let Some(id) = row.object_id() else { continue };
        let image_ok = match row.image_id.as_deref() {
            Some(image) => engine.image_id(image).await?.is_some(),
            None => false,
        };
        let network_ok = engine.network_id(id.as_str()).await?.is_some();
        if !(image_ok && network_ok) {
            let what = if image_ok { "network" } else { "image" };
            BuildLog::append(&daemon.config.logs_dir(), &id).note(&format!("reconcile: the {what} is gone; rebuilding"));
            if store.transition_workspace(&id, State::Active, WorkspaceChange::Requeue { files: None }).await.is_ok() {
                report.requeued.push(id.to_string());
            }
        }
    }

    for container in engine.own_containers(&[]).await? {
        let owner = container.labels.get(labels::WORKSPACE).cloned().unwrap_or_default();
        if !store.workspace_exists(&owner).await? {
            engine.remove_container(&container.docker_id).await?;
            report.removed_containers += 1;
        }
    }
    for network in engine.own_networks(&[]).await? {
        let Some(row_id) = network.row_id() else { continue };
        if !store.workspace_exists(row_id).await? {
            engine.remove_network(&network.docker_id).await?;
            report.removed_networks += 1;
        }
    }
    for image in engine.own_images(&[]).await? {
        let Some(row_id) = image.row_id() else { continue };
        let stale = match ObjectId::parse(Kind::Workspace, row_id) {
            // Only workspaces own images; leave anything else to whoever made it.
            Err(_) => false,
            Ok(id) => match store.get_workspace(&id).await {
                Err(crate::store::StoreError::NotFound(_)) => true,
                Err(e) => return Err(e.into()),
                Ok(row) => {
                    matches!(row.state, State::Active | State::Failed)
                        && row.image_id.as_deref() != Some(image.docker_id.as_str())
                }
            },
        };
        if stale {
            engine.remove_image(&image.docker_id, true).await?;
            report.removed_images += 1;
        }
    }
    Ok(report)
}

/// Reconcile every `interval`, forever; an unreachable engine just skips a round.
pub async fn run_periodically(daemon: Arc<Daemon>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match reconcile(&daemon).await {
            Ok(report) if report != Report::default() => {
                tracing::info!(?report, "reconciled");
                daemon.wake.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("reconciliation skipped: {e}"),
        }
    }
}
