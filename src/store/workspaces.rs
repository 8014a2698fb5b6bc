//! The `workspaces` table. Every state change goes through [`Store::transition_workspace`], a
//! compare-and-set on the expected state.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::{Store, StoreError};
use crate::ids::{Kind, ObjectId};
use crate::state::State;

#[derive(Debug, Clone, FromRow)]
pub struct WorkspaceRow {
    pub id: String,
    pub state: State,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// JSON array of relative paths.
    pub files: String,
    /// JSON object of the parsed `.jinad` settings.
    pub settings: Option<String>,
    pub image_id: Option<String>,
    pub image_tag: Option<String>,
    pub network_id: Option<String>,
    pub builds: i64,
    pub created_at: String,
    pub updated_at: String,
    /// Bumped by every transition; part of the compare-and-set.
    pub version: i64,
    /// The workspace network's subnet, from the daemon's pool.
    pub subnet: Option<String>,
    /// JSON: the `.jinad` `run` container (name, state, published ports).
    pub project: Option<String>,
    /// `sha256:…` of the files when the last build started ([`crate::workspace::digest`]).
    pub digest: Option<String>,
}

impl WorkspaceRow {
    pub fn object_id(&self) -> Option<ObjectId> {
        ObjectId::parse(Kind::Workspace, &self.id).ok()
    }

    pub fn file_list(&self) -> Vec<String> {
        serde_json::from_str(&self.files).unwrap_or_default()
    }

    /// What a transition from this snapshot expects to find.
    pub fn seen(&self) -> Seen {
        Seen { state: self.state, version: self.version }
    }
}

/// The state and version a compare-and-set expects: the snapshot the caller acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub state: State,
    pub version: i64,
}

/// What a transition writes besides the new state.
#[derive(Debug, Clone)]
pub enum WorkspaceChange {
    /// Queue a (re)build; `files` replaces the file list when the update added files.
    Requeue { files: Option<Vec<String>> },
    /// The build started: record the parsed settings and the files it builds (listed from disk
    /// again, so the row says what is there even after an update a crash cut short), and count
    /// the build (stays PENDING).
    BuildStarted { settings: serde_json::Value, files: Vec<String>, digest: String },
    Activate { image_id: String, image_tag: String, network_id: String },
    /// The `.jinad` `run` container as started or last seen (state unchanged); `None`: there is none.
    Project { project: Option<serde_json::Value> },
    Fail { code: String, message: String },
    Delete,
}

impl WorkspaceChange {
    fn target(&self, from: State) -> State {
        match self {
            WorkspaceChange::Requeue { .. } => State::Pending,
            WorkspaceChange::BuildStarted { .. } => from,
            WorkspaceChange::Activate { .. } => State::Active,
            WorkspaceChange::Project { .. } => from,
            WorkspaceChange::Fail { .. } => State::Failed,
            WorkspaceChange::Delete => State::Deleting,
        }
    }
}

/// Counts of rows per state, for `GET /status`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateCounts {
    pub pending: i64,
    pub active: i64,
    pub failed: i64,
    pub deleting: i64,
}

impl StateCounts {
    pub fn from_rows(rows: Vec<(State, i64)>) -> Self {
        let mut counts = StateCounts::default();
        for (state, n) in rows {
            match state {
                State::Pending => counts.pending = n,
                State::Active => counts.active = n,
                State::Failed => counts.failed = n,
                State::Deleting => counts.deleting = n,
            }
        }
        counts
    }
}

impl Store {
    pub async fn insert_workspace(&self, id: &ObjectId, files: &[String]) -> Result<WorkspaceRow, StoreError> {
        let files = serde_json::to_string(files).unwrap_or_else(|_| "[]".into());
        let result = sqlx::query_as::<_, WorkspaceRow>(
            "INSERT INTO workspaces (id, state, files) VALUES (?, 'PENDING', ?) RETURNING *",
        )
        .bind(id.as_str())
        .bind(files)
        .fetch_one(self.pool())
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::AlreadyExists(id.clone())),
            other => {
                let row = other?;
                self.announce_change();
                Ok(row)
            }
        }
    }

    pub async fn get_workspace(&self, id: &ObjectId) -> Result<WorkspaceRow, StoreError> {
        sqlx::query_as::<_, WorkspaceRow>("SELECT * FROM workspaces WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    pub async fn list_workspaces(&self) -> Result<Vec<WorkspaceRow>, StoreError> {
        Ok(sqlx::query_as::<_, WorkspaceRow>("SELECT * FROM workspaces ORDER BY created_at, id")
            .fetch_all(self.pool())
            .await?)
    }

    /// Rows in one of `states`, oldest change first: the work queue.
    pub async fn workspaces_in(&self, states: &[State]) -> Result<Vec<WorkspaceRow>, StoreError> {
        let marks = vec!["?"; states.len()].join(", ");
        let sql = format!("SELECT * FROM workspaces WHERE state IN ({marks}) ORDER BY updated_at, id");
        let mut query = sqlx::query_as::<_, WorkspaceRow>(&sql);
        for state in states {
            query = query.bind(*state);
        }
        Ok(query.fetch_all(self.pool()).await?)
    }

    pub async fn count_workspaces(&self) -> Result<StateCounts, StoreError> {
        let rows: Vec<(State, i64)> = sqlx::query_as("SELECT state, COUNT(*) FROM workspaces GROUP BY state")
            .fetch_all(self.pool())
            .await?;
        Ok(StateCounts::from_rows(rows))
    }

    /// The one write path for a workspace's state: `UPDATE … WHERE id = ? AND state = ? AND
    /// version = ?`, bumping the version. Fails with `IllegalTransition` (nothing written) or
    /// `Conflict`/`NotFound` when the row moved on since the caller's snapshot.
    pub async fn transition_workspace(
        &self,
        id: &ObjectId,
        seen: Seen,
        change: WorkspaceChange,
    ) -> Result<WorkspaceRow, StoreError> {
        let to = change.target(seen.state);
        let (set, binds): (String, Vec<Option<String>>) = match &change {
            WorkspaceChange::Requeue { files: Some(files) } => (
                "files = ?, error_code = NULL, error_message = NULL".into(),
                vec![Some(serde_json::to_string(files).unwrap_or_else(|_| "[]".into()))],
            ),
            WorkspaceChange::Requeue { files: None } => ("error_code = NULL, error_message = NULL".into(), vec![]),
            WorkspaceChange::BuildStarted { settings, files, digest } => (
                "settings = ?, files = ?, digest = ?, builds = builds + 1".into(),
                vec![Some(settings.to_string()), Some(serde_json::to_string(files).unwrap_or_else(|_| "[]".into())), Some(digest.clone())],
            ),
            WorkspaceChange::Activate { image_id, image_tag, network_id } => (
                "image_id = ?, image_tag = ?, network_id = ?".into(),
                vec![Some(image_id.clone()), Some(image_tag.clone()), Some(network_id.clone())],
            ),
            WorkspaceChange::Project { project } => ("project = ?".into(), vec![project.as_ref().map(|p| p.to_string())]),
            WorkspaceChange::Fail { code, message } => {
                ("error_code = ?, error_message = ?".into(), vec![Some(code.clone()), Some(message.clone())])
            }
            WorkspaceChange::Delete => ("error_code = NULL, error_message = NULL".into(), vec![]),
        };
        self.compare_and_set("workspaces", id, seen, to, &set, binds).await
    }

    /// Give the workspace a subnet of `pool` that neither another row nor `taken` (the engine's
    /// networks) uses, unless it has one. `None` when the pool is exhausted.
    pub async fn allocate_subnet(
        &self,
        id: &ObjectId,
        pool: &crate::network_pool::Pool,
        taken: &[String],
    ) -> Result<Option<String>, StoreError> {
        loop {
            let row = self.get_workspace(id).await?;
            if let Some(subnet) = row.subnet {
                return Ok(Some(subnet));
            }
            let used: Vec<(String,)> = sqlx::query_as("SELECT subnet FROM workspaces WHERE subnet IS NOT NULL")
                .fetch_all(self.pool())
                .await?;
            let used: Vec<String> = used.into_iter().map(|(s,)| s).chain(taken.iter().cloned()).collect();
            let Some(subnet) = pool.first_free(&used) else { return Ok(None) };
            let done = sqlx::query("UPDATE workspaces SET subnet = ? WHERE id = ? AND subnet IS NULL")
                .bind(&subnet)
                .bind(id.as_str())
                .execute(self.pool())
                .await;
            match done {
                Ok(_) => continue,
                // Another row took it between the read and the write: pick again.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Forget the row's subnet if it is still `subnet` (the engine refused it: another daemon's
    /// network overlaps it), so that [`Store::allocate_subnet`] picks another.
    pub async fn release_subnet(&self, id: &ObjectId, subnet: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE workspaces SET subnet = NULL WHERE id = ? AND subnet = ?").bind(id.as_str()).bind(subnet).execute(self.pool()).await?;
        Ok(())
    }

    /// Remove a row whose Docker objects and files are gone; only a DELETING row can go.
    pub async fn remove_workspace(&self, id: &ObjectId) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM workspaces WHERE id = ? AND state = 'DELETING'")
            .bind(id.as_str())
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 1 {
            self.announce_change();
            return Ok(());
        }
        let actual = self.get_workspace(id).await?.state;
        Err(StoreError::Conflict { id: id.clone(), expected: State::Deleting, actual })
    }

    /// Whether a row with this id exists (any state); reconciliation uses it to find orphans.
    pub async fn workspace_exists(&self, id: &str) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM workspaces WHERE id = ?")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }
}
