//! The stop job of a DELETING flow, pod or pea: stop its containers with SIGTERM (executors
//! persist), collect their output into the row's log, remove them, then remove the row and its log.

use super::containers;
use super::Outcome;
use crate::daemon::Daemon;
use crate::error::Code;
use crate::ids::ObjectId;
use crate::state::State;
use crate::store::{DeploymentChange, StoreError};

/// Attempts before a stop that keeps failing (not for an unreachable engine) says why on the row.
pub const ATTEMPTS: u32 = 3;

pub async fn run(daemon: &Daemon, id: &ObjectId, attempt: u32) -> Outcome {
    // From a listing that may be stale: only a row that is DELETING now.
    match daemon.store.get_deployment(id).await {
        Ok(row) if row.state == State::Deleting => {}
        Ok(_) | Err(StoreError::NotFound(_)) => return Outcome::Done,
        Err(e) => return Outcome::Retry(e.to_string()),
    }
    let error = match containers::collect_and_remove(daemon, id).await {
        Ok(()) => match daemon.store.remove_deployment(id).await {
            Ok(()) | Err(StoreError::NotFound(_) | StoreError::Conflict { .. }) => {
                let _ = tokio::fs::remove_file(crate::build_log::path(&daemon.config.logs_dir(), id)).await;
                return Outcome::Done;
            }
            Err(e) => return Outcome::Retry(e.to_string()),
        },
        Err(e) if e.is_retryable() || attempt < ATTEMPTS => return Outcome::Retry(e.to_string()),
        Err(e) => e.to_string(),
    };
    let Ok(row) = daemon.store.get_deployment(id).await else { return Outcome::Done };
    if row.state != State::Deleting {
        return Outcome::Done;
    }
    let change = DeploymentChange::Fail { code: Code::DeleteFailed.as_str().into(), message: error, containers: row.container_list() };
    match daemon.store.transition_deployment(id, row.seen(), change).await {
        Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Outcome::Done,
        Err(e) => Outcome::Retry(e.to_string()),
    }
}
