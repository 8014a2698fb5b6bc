//! The SQLite store: the only module that runs SQL. One file per table.

pub mod workspaces;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::ids::ObjectId;
use crate::state::State;

pub use workspaces::{Seen, WorkspaceChange, WorkspaceRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(ObjectId),
    /// A compare-and-set lost: the row is not in the state the caller expected.
    #[error("{id} is {actual}, not {expected}")]
    Conflict { id: ObjectId, expected: State, actual: State },
    /// The requested move is not an edge of the state machine.
    #[error("{id}: illegal transition {from} → {to}")]
    IllegalTransition { id: ObjectId, from: State, to: State },
    #[error("{0} already exists")]
    AlreadyExists(ObjectId),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Open (creating if needed) the database file in WAL mode and apply the migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The journal mode the connection really uses (`wal`); for status and tests.
    pub async fn journal_mode(&self) -> Result<String, StoreError> {
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(&self.pool).await?;
        Ok(mode)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
