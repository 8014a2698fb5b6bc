//! The daemon's shared state, handed to the HTTP handlers and the background workers.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use crate::config::Config;
use crate::docker::{DockerEngine, Engine};
use crate::network_pool::Pool;
use crate::row_locks::RowLocks;
use crate::store::Store;

pub struct Daemon {
    pub config: Config,
    pub store: Store,
    pub engine: Arc<dyn Engine>,
    pub daemon_id: String,
    pub started: Instant,
    /// Wakes the scheduler after a handler queued work (the queue itself is the database).
    pub wake: Notify,
    /// One lock per row: workers, uploads and reconciliation never act on a row at the same time.
    pub row_locks: RowLocks,
    /// Held shared by every image build while the engine builds; reconciliation takes it
    /// exclusively (only with `try_write`) to sweep untagged layers, so it never sweeps while a
    /// build of this daemon may be committing a layer.
    pub build_gate: tokio::sync::RwLock<()>,
    /// Where workspace networks get their subnets.
    pub network_pool: Pool,
    /// The runtime image already built by this process, per base image id.
    pub runtime_images: tokio::sync::Mutex<std::collections::HashMap<String, String>>,
    /// What `GET /metrics` reports.
    pub metrics: crate::metrics::Metrics,
    /// Notified when a build ends: the build cache's policy checks the cache then.
    pub build_ended: Notify,
}

impl Daemon {
    /// Create the data directories, load the daemon id and open the database, on the real Docker
    /// engine. Errors are for the operator.
    pub async fn open(config: Config) -> Result<Arc<Daemon>, String> {
        let address = config.docker_host.clone();
        Self::open_with_engine(config, move |daemon_id| Arc::new(DockerEngine::new(address, daemon_id.to_string()))).await
    }

    /// The same on any engine (tests use the in-memory fake); `engine` gets the daemon id.
    pub async fn open_with_engine(config: Config, engine: impl FnOnce(&str) -> Arc<dyn Engine>) -> Result<Arc<Daemon>, String> {
        let network_pool = config.network_pool()?;
        for dir in [config.data_dir.clone(), config.workspaces_dir(), config.logs_dir(), config.tmp_dir()] {
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let daemon_id = crate::daemon_id::load_or_create(&config.data_dir).map_err(|e| format!("daemon id: {e}"))?;
        let store = Store::open(&config.db_path()).await.map_err(|e| format!("database: {e}"))?;
        let engine = engine(&daemon_id);
        Ok(Arc::new(Daemon {
            config,
            store,
            engine,
            daemon_id,
            started: Instant::now(),
            wake: Notify::new(),
            row_locks: RowLocks::default(),
            build_gate: tokio::sync::RwLock::new(()),
            network_pool,
            runtime_images: Default::default(),
            metrics: crate::metrics::Metrics::new().map_err(|e| format!("metrics: {e}"))?,
            build_ended: Notify::new(),
        }))
    }
}
