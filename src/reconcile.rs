//! Reconciliation: make the rows and what the Docker engine really has agree. Runs before the API
//! serves and then every `--reconcile-interval` seconds.
//!
//! - ACTIVE workspaces whose tag no longer names their image, or whose network is gone, are queued
//!   for a rebuild (PENDING).
//! - Objects of this daemon whose row is gone are removed: containers and networks by their
//!   `jinad.workspace`/`jinad.id` label, images by untagging the `jworkspace:<uuid>` tag of a gone
//!   row (the image itself goes with its last tag), and images of a project Dockerfile that an
//!   earlier build of a settled row left behind. A `jworkspace:<uuid>-build` tag of a row nobody
//!   is building is untagged too: an interrupted build's, or one a killed daemon left running.
//! - Never touched: objects of other daemons; anything of a row that is PENDING or DELETING, or
//!   whose lock someone holds (a worker, an upload): each row is looked at under its lock, taken
//!   with `try_lock`, so a busy row is skipped for this round. Untagged images no row names look
//!   exactly like the newest layer of a running build: they are swept only under the build gate
//!   (`Daemon::build_gate`, taken with `try_write`), i.e. while no build of this daemon runs.
//! - An engine error on one object is recorded and the round goes on; only an unreachable engine
//!   ends it early.

use std::sync::Arc;
use std::time::Duration;

use crate::build_log::BuildLog;
use crate::daemon::Daemon;
use crate::docker::{labels, DockerError, ManagedObject};
use crate::ids::{Kind, ObjectId};
use crate::state::State;
use crate::docker::RestartPolicy;
use crate::error::Code;
use crate::store::{DeploymentChange, WorkspaceChange};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub requeued: Vec<String>,
    /// Flows, pods and peas moved to FAILED because a container exited or vanished.
    pub failed: Vec<String>,
    pub removed_images: usize,
    pub removed_networks: usize,
    pub removed_containers: usize,
    /// Rows skipped because someone was acting on them.
    pub skipped_busy: usize,
    /// Engine errors on single objects (the round went on).
    pub errors: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// An engine error on one object: the round goes on, unless the engine is unreachable.
fn record(report: &mut Report, what: &str, e: DockerError) -> Result<(), ReconcileError> {
    if e.is_retryable() {
        return Err(e.into());
    }
    tracing::warn!("reconcile: {what}: {e}");
    report.errors.push(format!("{what}: {e}"));
    Ok(())
}

pub async fn reconcile(daemon: &Daemon) -> Result<Report, ReconcileError> {
    let outcome = pass(daemon).await;
    let m = &daemon.metrics;
    match &outcome {
        Ok(report) => {
            m.reconciles.with_label_values(&["ok"]).inc();
            for (action, n) in [
                ("requeued", report.requeued.len()),
                ("failed", report.failed.len()),
                ("removed_image", report.removed_images),
                ("removed_network", report.removed_networks),
                ("removed_container", report.removed_containers),
                ("skipped_busy", report.skipped_busy),
                ("error", report.errors.len()),
            ] {
                m.reconciled.with_label_values(&[action]).inc_by(n as u64);
            }
        }
        Err(_) => m.reconciles.with_label_values(&["error"]).inc(),
    }
    outcome
}

async fn pass(daemon: &Daemon) -> Result<Report, ReconcileError> {
    let mut report = Report::default();
    check_active_rows(daemon, &mut report).await?;
    check_active_deployments(daemon, &mut report).await?;
    remove_orphans(daemon, &mut report).await?;
    Ok(report)
}

async fn check_active_rows(daemon: &Daemon, report: &mut Report) -> Result<(), ReconcileError> {
    let (engine, store) = (&daemon.engine, &daemon.store);
    for listed in store.workspaces_in(&[State::Active]).await? {
        let Some(id) = listed.object_id() else { continue };
        let Some(_row_lock) = daemon.row_locks.try_lock(id.as_str()) else {
            report.skipped_busy += 1;
            continue;
        };
        // Read again under the lock: the listing may be stale.
        let row = store.get_workspace(&id).await?;
        if row.state != State::Active {
            continue;
        }
        if let Some(before) = row.project.as_deref().and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok()) {
            let name = crate::worker::project::container_name(&id);
            let now = crate::worker::project::view(daemon, &name, engine.inspect_container(&name).await?.as_ref());
            if now != before {
                let _ = store.transition_workspace(&id, row.seen(), WorkspaceChange::Project { project: Some(now) }).await;
                continue;
            }
        }
        let tagged = engine.image_id(&id.image_tag()).await?;
        let image_ok = tagged.is_some() && tagged == row.image_id;
        let network_ok = engine.network_id(id.as_str()).await?.is_some();
        if !(image_ok && network_ok) {
            let what = if image_ok { "network" } else { "image" };
            BuildLog::append(&daemon.config.logs_dir(), &id).note(&format!("reconcile: the {what} is gone; rebuilding"));
            if store.transition_workspace(&id, row.seen(), WorkspaceChange::Requeue { files: None }).await.is_ok() {
                report.requeued.push(id.to_string());
            }
        }
    }
    Ok(())
}

/// ACTIVE flows, pods and peas: every container must still run. One that exited (and that its
/// restart policy will not restart) or vanished moves the row to FAILED with the exit code and
/// its last log lines; the other containers are stopped and removed, their output kept in the log.
async fn check_active_deployments(daemon: &Daemon, report: &mut Report) -> Result<(), ReconcileError> {
    use crate::worker::containers;
    let store = &daemon.store;
    for listed in store.deployments_in(&[State::Active]).await? {
        let Some(id) = listed.object_id() else { continue };
        let Some(_row_lock) = daemon.row_locks.try_lock(id.as_str()) else {
            report.skipped_busy += 1;
            continue;
        };
        let row = store.get_deployment(&id).await?;
        if row.state != State::Active {
            continue;
        }
        let restart: RestartPolicy = row.spec_json().get("restart").cloned().and_then(|r| serde_json::from_value(r).ok()).unwrap_or_default();
        let mut seen = Vec::new();
        let mut broken = None;
        for record in row.container_list() {
            let now = containers::observe(daemon, &record.pea, &record.name).await?;
            let retries_left = restart.will_restart(now.restarts, now.exit_code);
            if broken.is_none() {
                broken = match now.state.as_str() {
                    "missing" => Some((Code::ContainerMissing, format!("{}: its container {} was removed", record.pea, record.name))),
                    "exited" if !retries_left => {
                        let code = now.exit_code.map_or("unknown".into(), |c| c.to_string());
                        let lines = containers::last_lines(daemon, &record.name, containers::FAILURE_LINES).await;
                        Some((Code::ContainerExited, format!("{} exited with code {code} after {} restarts:\n{lines}", record.pea, now.restarts)))
                    }
                    _ => None,
                };
            }
            seen.push(now);
        }
        if let Some((code, message)) = broken {
            crate::worker::start::fail(daemon, &id, code, message).await;
            report.failed.push(id.to_string());
        } else if seen != row.container_list() {
            let _ = store.transition_deployment(&id, row.seen(), DeploymentChange::Observed { containers: seen }).await;
        }
    }
    Ok(())
}

async fn remove_orphans(daemon: &Daemon, report: &mut Report) -> Result<(), ReconcileError> {
    let engine = &daemon.engine;
    for container in engine.own_containers(&[]).await? {
        // A flow's, pod's or pea's container: an orphan when its row is gone.
        if let Some(row_id) = container.row_id().filter(|id| !id.starts_with(Kind::Workspace.prefix())).map(str::to_string) {
            let Some(_lock) = daemon.row_locks.try_lock(&row_id) else { continue };
            if !daemon.store.deployment_exists(&row_id).await? {
                match engine.remove_container(&container.docker_id).await {
                    Ok(()) => report.removed_containers += 1,
                    Err(e) => record(report, &format!("container {}", container.name), e)?,
                }
            }
            continue;
        }
        // Only containers the daemon created carry `jinad.workspace`. The intermediate containers
        // of a running build inherit the daemon's labels from the `LABEL` step, and nothing else:
        // they are the build's, never an orphan.
        let Some(owner) = container.labels.get(labels::WORKSPACE).cloned() else { continue };
        let Some(_lock) = daemon.row_locks.try_lock(&owner) else { continue };
        if !daemon.store.workspace_exists(&owner).await? {
            match engine.remove_container(&container.docker_id).await {
                Ok(()) => report.removed_containers += 1,
                Err(e) => record(report, &format!("container {}", container.name), e)?,
            }
        }
    }
    for network in engine.own_networks(&[]).await? {
        let Some(row_id) = network.row_id().map(str::to_string) else { continue };
        let Some(_lock) = daemon.row_locks.try_lock(&row_id) else { continue };
        if !daemon.store.workspace_exists(&row_id).await? {
            match engine.remove_network(&network.docker_id).await {
                Ok(()) => report.removed_networks += 1,
                Err(e) => record(report, &format!("network {}", network.name), e)?,
            }
        }
    }
    for image in engine.own_images(&[(labels::ROLE, "workspace")]).await? {
        // Tags first: the tag of a gone row goes, and so does the build tag of a row nobody is
        // building (left by a build a crash interrupted or left running in the engine); the
        // image goes with its last tag.
        for tag in &image.tags {
            let Some((owner, build_tag)) = ObjectId::from_image_tag(tag) else { continue };
            let Some(_lock) = daemon.row_locks.try_lock(owner.as_str()) else { continue };
            if build_tag || !daemon.store.workspace_exists(owner.as_str()).await? {
                match engine.remove_image(tag).await {
                    Ok(()) => report.removed_images += 1,
                    Err(e) => record(report, &format!("image tag {tag}"), e)?,
                }
            }
        }
        // An untagged layer with no owner: what a failed or killed build left (while a build runs,
        // its newest layer looks exactly like this). Swept only while no build of this daemon
        // runs; the gate is held for the removal, so no build starts meanwhile.
        if image.tags.is_empty() && !image.labels.contains_key(labels::ID) {
            if let Ok(_no_build) = daemon.build_gate.try_write() {
                match engine.remove_dangling_image(&image.docker_id).await {
                    Ok(()) => report.removed_images += 1,
                    Err(e) => record(report, &format!("untagged image {}", image.docker_id), e)?,
                }
            }
            continue;
        }
        // An untagged image a project Dockerfile built (labelled with its row): an earlier build.
        let labelled = image.labels.get(labels::ID).and_then(|id| ObjectId::parse(Kind::Workspace, id).ok());
        if let (Some(owner), true) = (labelled, image.tags.is_empty()) {
            let Some(_lock) = daemon.row_locks.try_lock(owner.as_str()) else { continue };
            let stale = match daemon.store.get_workspace(&owner).await {
                Ok(row) => matches!(row.state, State::Active | State::Failed) && row.image_id.as_deref() != Some(image.docker_id.as_str()),
                Err(crate::store::StoreError::NotFound(_)) => true,
                Err(e) => return Err(e.into()),
            };
            if stale {
                match engine.remove_image(&image.docker_id).await {
                    Ok(()) => report.removed_images += 1,
                    Err(e) => record(report, &format!("image {}", image.docker_id), e)?,
                }
            }
        }
    }
    Ok(())
}

/// The workspaces an image belongs to: one per `jworkspace:<uuid>` tag (two workspaces with the
/// same requirements and the same files get the same image), or, for images built from a
/// project's own Dockerfile, its `jinad.id` label. Empty for an untagged layer (build cache).
pub fn image_owners(image: &ManagedObject) -> Vec<ObjectId> {
    let mut owners: Vec<ObjectId> = image.tags.iter().filter_map(|t| ObjectId::from_image_tag(t).map(|(id, _)| id)).collect();
    owners.dedup();
    if let Some(id) = image.labels.get(labels::ID).and_then(|id| ObjectId::parse(Kind::Workspace, id).ok()) {
        if !owners.contains(&id) {
            owners.push(id);
        }
    }
    owners
}

/// Reconcile as soon as one of this daemon's containers stops (Docker's `die` events), so a row
/// whose container died turns FAILED (or is seen restarting) within a second instead of at the
/// next periodic pass. Bursts are coalesced; a lost event stream is subscribed again.
pub async fn on_container_exits(daemon: Arc<Daemon>) {
    loop {
        let mut exits = match daemon.engine.container_exits().await {
            Ok(exits) => exits,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        while let Some(row) = exits.recv().await {
            // A stop the daemon itself makes (delete, failed start) also dies: let it finish.
            tokio::time::sleep(Duration::from_millis(500)).await;
            while exits.try_recv().is_ok() {}
            tracing::debug!(%row, "a container stopped: reconciling");
            reconcile_and_report(&daemon, "reconciled after a container stopped").await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Reconcile every `interval`, forever; an unreachable engine just skips a round.
pub async fn run_periodically(daemon: Arc<Daemon>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        reconcile_and_report(&daemon, "reconciled").await;
    }
}

/// One pass; what it changed is logged as `what`, and wakes the workers.
async fn reconcile_and_report(daemon: &Daemon, what: &str) {
    match reconcile(daemon).await {
        Ok(report) if report != Report::default() => {
            tracing::info!(?report, "{what}");
            daemon.wake.notify_one();
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("reconciliation skipped: {e}"),
    }
}
