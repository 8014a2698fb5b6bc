//! The daemon's shared state, handed to the HTTP handlers and the background workers.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use crate::config::Config;
use crate::docker::Engine;
use crate::store::Store;

pub struct Daemon {
    pub config: Config,
    pub store: Store,
    pub engine: Engine,
    pub daemon_id: String,
    pub started: Instant,
    /// Wakes the scheduler after a handler queued work (the queue itself is the database).
    pub wake: Notify,
    /// Serialises the short "move files in + change the row" step of uploads and deletions, so an
    /// update never races the build worker or another update of the same workspace.
    pub commit_lock: tokio::sync::Mutex<()>,
    /// The runtime image already built by this process, per base image id.
    pub runtime_images: tokio::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Daemon {
    /// Create the data directories, load the daemon id and open the database. Errors are for the operator.
    pub async fn open(config: Config) -> Result<Arc<Daemon>, String> {
        for dir in [config.data_dir.clone(), config.workspaces_dir(), config.logs_dir(), config.tmp_dir()] {
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let daemon_id = crate::daemon_id::load_or_create(&config.data_dir).map_err(|e| format!("daemon id: {e}"))?;
        let store = Store::open(&config.db_path()).await.map_err(|e| format!("database: {e}"))?;
        let engine = Engine::new(config.docker_host.clone(), daemon_id.clone());
        Ok(Arc::new(Daemon {
            config,
            store,
            engine,
            daemon_id,
            started: Instant::now(),
            wake: Notify::new(),
            commit_lock: tokio::sync::Mutex::new(()),
            runtime_images: Default::default(),
        }))
    }
}
