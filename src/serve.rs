//! `jinad serve`: open the store, reconcile with Docker, start the workers, then serve the API.

use std::time::Duration;

use crate::config::Config;
use crate::daemon::Daemon;
use crate::{api, reconcile, worker};

pub async fn serve(config: Config) -> Result<(), String> {
    let reconcile_every = Duration::from_secs(config.reconcile_interval.max(1));
    // Before anything else: a daemon reachable from other machines never runs without a token.
    let token = config.api_token()?;
    config.tls().files()?;
    let scheme = config.tls().scheme();
    let daemon = Daemon::open(config).await?;
    tracing::info!(daemon_id = %daemon.daemon_id, data_dir = %daemon.config.data_dir.display(), "starting");

    // Before serving (no upload can be in flight): what uploads cut by a crash left behind.
    match crate::workspace::sweep_leftovers(&daemon).await {
        Ok(0) => {}
        Ok(n) => tracing::info!("swept {n} leftovers of interrupted uploads"),
        Err(e) => tracing::warn!("cannot sweep leftovers of interrupted uploads: {e}"),
    }
    // Before serving: make the rows agree with Docker. An unreachable engine does not stop the
    // daemon; rows wait in PENDING and the periodic pass catches up.
    match reconcile::reconcile(&daemon).await {
        Ok(report) => tracing::info!(?report, "reconciled at start"),
        Err(e) => tracing::warn!("Docker not reachable at start, reconciliation postponed: {e}"),
    }
    match crate::workspace::push::sweep_leftovers(&daemon).await {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} image names left by interrupted pushes"),
        Err(e) => tracing::warn!("cannot look for what interrupted pushes left: {e}"),
    }
    tokio::spawn(worker::run_scheduler(daemon.clone()));
    tokio::spawn(reconcile::run_periodically(daemon.clone(), reconcile_every));
    tokio::spawn(reconcile::on_container_exits(daemon.clone()));
    tokio::spawn(crate::deployment::lease::run_expiry(daemon.clone()));
    tokio::spawn(prune_events(daemon.clone()));
    tokio::spawn(crate::build_cache::run_policy(daemon.clone()));

    let announce = rocket::fairing::AdHoc::on_liftoff("announce", move |rocket| {
        Box::pin(async move {
            // Scripts and tests wait for this line; with `--port 0` it carries the real port.
            println!("jinad listening on {scheme}://{}:{}", rocket.config().address, rocket.config().port);
        })
    });
    api::rocket(daemon.clone(), token.as_deref())?.attach(announce).launch().await.map_err(|e| format!("API server: {e}"))?;
    daemon.store.close().await;
    Ok(())
}

/// Drops the events older than `--event-retention`, at start and every minute.
async fn prune_events(daemon: std::sync::Arc<Daemon>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        match daemon.store.prune_events(daemon.config.event_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!("dropped {n} events older than {} s", daemon.config.event_retention),
            Err(e) => tracing::warn!("pruning events: {e}"),
        }
    }
}
