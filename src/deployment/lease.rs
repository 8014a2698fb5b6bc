//! Leases: a pod or pea created for a Flow on another machine (`lease_seconds`) lives only while
//! that Flow renews it (`PUT /pods/{id}/lease`). When the Flow is killed, or the link to it is cut,
//! renewals stop and this sweeper deletes the row like a `DELETE` would (containers get SIGTERM,
//! executors persist, then everything goes). Expiry is wall-clock time kept in the row, so a
//! daemon that was down or cut off itself deletes what expired meanwhile as soon as it runs again.

use std::sync::Arc;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::deployment::{self, DeployError};
use crate::ids::ObjectId;
use crate::store::{DeploymentRow, StoreError};

/// How often expired leases are looked for.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Renews the lease of `id`: `Ok(None)` when the row has none.
pub async fn renew(daemon: &Daemon, id: &ObjectId) -> Result<Option<DeploymentRow>, StoreError> {
    daemon.store.renew_lease(id).await
}

/// Moves every row whose lease ran out to DELETING; returns how many.
pub async fn expire(daemon: &Daemon) -> Result<usize, DeployError> {
    let mut n = 0;
    for row in daemon.store.expired_leases().await? {
        let Some(id) = row.object_id() else { continue };
        // Renewed since it was listed: keep it.
        if !daemon.store.lease_expired(&id).await? {
            continue;
        }
        match deployment::delete(daemon, &id).await {
            Ok(_) => {
                tracing::warn!(%id, "lease of {} s not renewed: deleting", row.lease_seconds.unwrap_or_default());
                n += 1;
            }
            // Deleted meanwhile.
            Err(DeployError::Store(StoreError::NotFound(_))) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Runs [`expire`] every [`SWEEP_EVERY`] for the daemon's lifetime.
pub async fn run_expiry(daemon: Arc<Daemon>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = expire(&daemon).await {
            tracing::warn!("expiring leases: {e}");
        }
    }
}
