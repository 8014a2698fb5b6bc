//! The SQLite store: the only module that runs SQL. One file per table.

pub mod deployments;
pub mod events;
pub mod images;
pub mod workspaces;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::ids::ObjectId;
use crate::state::State;

pub use deployments::{ContainerRecord, DeploymentChange, DeploymentRow};
pub use events::{EventRow, Since};
pub use workspaces::{Seen, StateCounts, WorkspaceChange, WorkspaceRow};

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

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
    /// Notified after every write of a row's state, for `GET /events?follow=true`.
    changes: std::sync::Arc<tokio::sync::Notify>,
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
        Ok(Store { pool, changes: Default::default() })
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The journal mode the connection really uses (`wal`); for status and tests.
    pub async fn journal_mode(&self) -> Result<String, StoreError> {
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(&self.pool).await?;
        Ok(mode)
    }

    /// The one write path for any row's state (workspaces and deployments alike):
    /// `UPDATE <table> SET state = ?, <set>, version = version + 1 … WHERE id = ? AND state = ? AND
    /// version = ?`. Refuses illegal edges before any SQL; `Conflict`/`NotFound` when the row
    /// moved on since the caller's snapshot `seen`.
    pub(crate) async fn compare_and_set<R>(
        &self,
        table: &'static str,
        id: &ObjectId,
        seen: Seen,
        to: State,
        set: &str,
        binds: Vec<Option<String>>,
    ) -> Result<R, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        let expected = seen.state;
        if to != expected && !expected.can_become(to) {
            return Err(StoreError::IllegalTransition { id: id.clone(), from: expected, to });
        }
        let sql = format!(
            "UPDATE {table} SET state = ?, {set}, version = version + 1, updated_at = {NOW} \
             WHERE id = ? AND state = ? AND version = ? RETURNING *"
        );
        let mut query = sqlx::query_as::<_, R>(&sql).bind(to);
        for value in binds {
            query = query.bind(value);
        }
        let updated = query.bind(id.as_str()).bind(expected).bind(seen.version).fetch_optional(&self.pool).await?;
        match updated {
            Some(row) => {
                self.announce_change();
                Ok(row)
            }
            None => {
                let actual: Option<(State,)> = sqlx::query_as(&format!("SELECT state FROM {table} WHERE id = ?"))
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                match actual {
                    Some((actual,)) => Err(StoreError::Conflict { id: id.clone(), expected, actual }),
                    None => Err(StoreError::NotFound(id.clone())),
                }
            }
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
