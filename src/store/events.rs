//! The `events` table: the timeline of state changes. Rows are written by the triggers of
//! migration 0006 with the change itself; this module only reads and prunes them.

use sqlx::FromRow;

use super::{Store, StoreError};
use crate::state::State;

#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub seq: i64,
    pub object_id: String,
    pub kind: String,
    pub workspace_id: String,
    pub from_state: Option<State>,
    pub to_state: Option<State>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub at: String,
}

/// Where a page of events starts (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// After this event (`seq`).
    Seq(i64),
    /// After this time (`YYYY-MM-DDTHH:MM:SS[.fff]Z`, compared as the stored UTC text).
    Time(String),
}

impl Store {
    /// Events after `since`, oldest first, at most `limit`; `object` narrows them to one object,
    /// or, for a workspace id, to the workspace and everything that runs in it.
    pub async fn events(&self, since: &Since, object: Option<&str>, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        let (cursor, bind) = match since {
            Since::Seq(seq) => ("seq > ?", seq.to_string()),
            Since::Time(at) => ("at > ?", at.clone()),
        };
        let sql = match object {
            // Two indexed branches instead of an OR that would scan the table.
            Some(_) => format!(
                "SELECT * FROM (SELECT * FROM events WHERE object_id = ?1 AND {c} UNION SELECT * FROM events WHERE workspace_id = ?1 AND {c}) ORDER BY seq LIMIT ?3",
                c = cursor.replace('?', "?2")
            ),
            None => format!("SELECT * FROM events WHERE {cursor} ORDER BY seq LIMIT ?"),
        };
        let query = sqlx::query_as::<_, EventRow>(&sql);
        let query = match (object, since) {
            (Some(object), Since::Seq(seq)) => query.bind(object.to_string()).bind(*seq),
            (Some(object), Since::Time(_)) => query.bind(object.to_string()).bind(bind),
            (None, Since::Seq(seq)) => query.bind(*seq),
            (None, Since::Time(_)) => query.bind(bind),
        };
        Ok(query.bind(i64::from(limit)).fetch_all(self.pool()).await?)
    }

    /// The newest event's `seq` (0 when there is none).
    pub async fn last_event(&self) -> Result<i64, StoreError> {
        let (seq,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM events").fetch_one(self.pool()).await?;
        Ok(seq.unwrap_or(0))
    }

    /// Delete the events older than `seconds`; returns how many went.
    pub async fn prune_events(&self, seconds: u64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM events WHERE at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ? || ' seconds')")
            .bind(seconds as i64)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// Resolves at the next change of any row made through this store (possibly already made:
    /// create it before reading, then await it).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changes.notified()
    }

    /// Wake whoever waits in [`Store::changed`].
    pub(crate) fn announce_change(&self) {
        self.changes.notify_waiters();
    }
}
