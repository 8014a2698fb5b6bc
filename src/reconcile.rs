//! Reconciliation: make the rows and what the Docker engine really has agree. Runs before the API
//! serves and then every `--reconcile-interval` seconds.
//!
//! - ACTIVE workspaces whose image or network is gone are queued for a rebuild (PENDING).
//! - Objects labelled with this daemon's id whose row is gone are removed, and so are workspace
//!   images no row uses (left by a crash mid-build or by a rebuild, which moves the tag).
//! - Objects of other daemons are never touched. PENDING and DELETING rows are the workers' business.

use std::sync::Arc;
use std::time::Duration;

use crate::build_log::BuildLog;
use crate::daemon::Daemon;
use crate::docker::{labels, DockerError, ManagedObject};
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
    report.removed_images = remove_stale_images(daemon).await?;
    Ok(report)
}

/// The workspaces an image belongs to: one per `jworkspace:<uuid>` tag (two workspaces with the
/// same requirements and the same files get the same image), or, for images built from a
/// project's own Dockerfile, its `jinad.id` label. Empty for a dangling image of an earlier build.
pub fn image_owners(image: &ManagedObject) -> Vec<ObjectId> {
    let mut owners: Vec<ObjectId> = image.tags.iter().filter_map(|t| ObjectId::from_image_tag(t)).collect();
    if let Some(id) = image.labels.get(labels::ID).and_then(|id| ObjectId::parse(Kind::Workspace, id).ok()) {
        if !owners.contains(&id) {
            owners.push(id);
        }
    }
    owners
}

/// Removes this daemon's workspace images that no settled row uses: images of deleted
/// workspaces, and images of earlier builds (a rebuild moved the tag; a crash left one behind).
/// An image a row still points at — even a PENDING row's previous build — is kept.
pub async fn remove_stale_images(daemon: &Daemon) -> Result<usize, ReconcileError> {
    let (engine, store) = (&daemon.engine, &daemon.store);
    let rows = store.workspaces_in(&[State::Pending, State::Active, State::Failed, State::Deleting]).await?;
    let in_use: std::collections::HashSet<&str> = rows.iter().filter_map(|r| r.image_id.as_deref()).collect();
    let mut removed = 0;
    for image in engine.own_images(&[(labels::ROLE, "workspace")]).await? {
        if in_use.contains(image.docker_id.as_str()) {
            continue;
        }
        // Stale when every owner is gone or settled on another image; a PENDING row's new image
        // is tagged before the row records it, so it stays.
        let stale = image_owners(&image).iter().all(|id| match rows.iter().find(|r| r.id == id.as_str()) {
            None => true,
            Some(row) => matches!(row.state, State::Active | State::Failed),
        });
        if stale {
            match engine.remove_image(&image.docker_id, true).await {
                Ok(()) => removed += 1,
                Err(e @ DockerError::Unavailable(_)) => return Err(e.into()),
                // In use by a container, say: it goes in a later round.
                Err(e) => tracing::info!("stale image {} stays for now: {e}", image.docker_id),
            }
        }
    }
    Ok(removed)
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
