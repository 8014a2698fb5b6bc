//! The `deployments` table: flows, pods and peas. Same life cycle and the same compare-and-set
//! as workspaces ([`Store::compare_and_set`]); only the columns of what runs differ.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::{Seen, StateCounts, Store, StoreError};
use crate::ids::{Kind, ObjectId};
use crate::state::State;

#[derive(Debug, Clone, FromRow)]
pub struct DeploymentRow {
    pub id: String,
    /// `flow`, `pod` or `pea`.
    pub kind: String,
    pub workspace_id: String,
    pub state: State,
    pub version: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// JSON: what was asked for.
    pub spec: String,
    /// JSON array of [`ContainerRecord`].
    pub containers: String,
    pub gateway_url: Option<String>,
    /// JSON object: published ports.
    pub ports: Option<String>,
    pub starts: i64,
    pub created_at: String,
    pub updated_at: String,
    /// Set for a deployment made for a Flow elsewhere: it must be renewed within this many seconds.
    pub lease_seconds: Option<i64>,
    /// When the lease runs out (UTC, like `created_at`); then the row is deleted.
    pub lease_expires_at: Option<String>,
}

/// One container of a deployment as the row remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct ContainerRecord {
    /// The pea (or `gateway`, `pod/head`, `pod/tail`) it runs.
    pub pea: String,
    /// The container's name: reachable by it on the workspace network.
    pub name: String,
    pub id: String,
    /// `running`, `exited`, `restarting`, `missing`.
    pub state: String,
    pub exit_code: Option<i64>,
    pub restarts: i64,
}

pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Flow => "flow",
        Kind::Pod => "pod",
        Kind::Pea => "pea",
        Kind::Workspace => "workspace",
    }
}

impl DeploymentRow {
    pub fn kind(&self) -> Option<Kind> {
        match self.kind.as_str() {
            "flow" => Some(Kind::Flow),
            "pod" => Some(Kind::Pod),
            "pea" => Some(Kind::Pea),
            _ => None,
        }
    }

    pub fn object_id(&self) -> Option<ObjectId> {
        ObjectId::parse(self.kind()?, &self.id).ok()
    }

    pub fn workspace(&self) -> Option<ObjectId> {
        ObjectId::parse(Kind::Workspace, &self.workspace_id).ok()
    }

    pub fn seen(&self) -> Seen {
        Seen { state: self.state, version: self.version }
    }

    pub fn container_list(&self) -> Vec<ContainerRecord> {
        serde_json::from_str(&self.containers).unwrap_or_default()
    }

    pub fn spec_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.spec).unwrap_or_default()
    }
}

/// What a transition writes besides the new state.
#[derive(Debug, Clone)]
pub enum DeploymentChange {
    /// A start begins (stays PENDING): counts it and records the containers it is starting.
    StartAttempt { containers: Vec<ContainerRecord> },
    Activate { containers: Vec<ContainerRecord>, gateway_url: Option<String>, ports: Option<serde_json::Value> },
    /// What reconciliation saw of an ACTIVE row's containers (stays ACTIVE).
    Observed { containers: Vec<ContainerRecord> },
    Fail { code: String, message: String, containers: Vec<ContainerRecord> },
    Delete,
}

impl Store {
    pub async fn insert_deployment(
        &self,
        id: &ObjectId,
        kind: Kind,
        workspace: &ObjectId,
        spec: &serde_json::Value,
        lease_seconds: Option<u64>,
    ) -> Result<DeploymentRow, StoreError> {
        let result = sqlx::query_as::<_, DeploymentRow>(
            "INSERT INTO deployments (id, kind, workspace_id, state, spec, lease_seconds, lease_expires_at) \
             SELECT ?, ?, ?, 'PENDING', ?, ?, CASE WHEN ? IS NULL THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || ? || ' seconds') END \
             WHERE EXISTS (SELECT 1 FROM workspaces WHERE id = ? AND state IN ('PENDING', 'ACTIVE')) \
             RETURNING *",
        )
        .bind(id.as_str())
        .bind(kind_name(kind))
        .bind(workspace.as_str())
        .bind(spec.to_string())
        .bind(lease_seconds.map(|s| s as i64))
        .bind(lease_seconds.map(|s| s as i64))
        .bind(lease_seconds.map(|s| s as i64))
        .bind(workspace.as_str())
        .fetch_optional(self.pool())
        .await;
        match result {
            Ok(Some(row)) => {
                self.announce_change();
                Ok(row)
            }
            // The workspace is gone, FAILED or being deleted: say which.
            Ok(None) => {
                let ws = self.get_workspace(workspace).await?;
                Err(StoreError::Conflict { id: workspace.clone(), expected: State::Active, actual: ws.state })
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::AlreadyExists(id.clone())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_deployment(&self, id: &ObjectId) -> Result<DeploymentRow, StoreError> {
        sqlx::query_as::<_, DeploymentRow>("SELECT * FROM deployments WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    pub async fn list_deployments(&self, kind: Kind) -> Result<Vec<DeploymentRow>, StoreError> {
        Ok(sqlx::query_as::<_, DeploymentRow>("SELECT * FROM deployments WHERE kind = ? ORDER BY created_at, id")
            .bind(kind_name(kind))
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn deployments_of(&self, workspace: &ObjectId) -> Result<Vec<DeploymentRow>, StoreError> {
        Ok(sqlx::query_as::<_, DeploymentRow>("SELECT * FROM deployments WHERE workspace_id = ? ORDER BY created_at, id")
            .bind(workspace.as_str())
            .fetch_all(self.pool())
            .await?)
    }

    /// Rows in one of `states`, oldest change first: the work queue.
    pub async fn deployments_in(&self, states: &[State]) -> Result<Vec<DeploymentRow>, StoreError> {
        let marks = vec!["?"; states.len()].join(", ");
        let sql = format!("SELECT * FROM deployments WHERE state IN ({marks}) ORDER BY updated_at, id");
        let mut query = sqlx::query_as::<_, DeploymentRow>(&sql);
        for state in states {
            query = query.bind(*state);
        }
        Ok(query.fetch_all(self.pool()).await?)
    }

    pub async fn count_deployments(&self, kind: Kind) -> Result<StateCounts, StoreError> {
        let rows: Vec<(State, i64)> = sqlx::query_as("SELECT state, COUNT(*) FROM deployments WHERE kind = ? GROUP BY state")
            .bind(kind_name(kind))
            .fetch_all(self.pool())
            .await?;
        Ok(StateCounts::from_rows(rows))
    }

    pub async fn transition_deployment(&self, id: &ObjectId, seen: Seen, change: DeploymentChange) -> Result<DeploymentRow, StoreError> {
        let json = |c: &Vec<ContainerRecord>| Some(serde_json::to_string(c).unwrap_or_else(|_| "[]".into()));
        let (to, set, binds): (State, &str, Vec<Option<String>>) = match &change {
            DeploymentChange::StartAttempt { containers } => {
                (seen.state, "starts = starts + 1, containers = ?, gateway_url = NULL, ports = NULL", vec![json(containers)])
            }
            DeploymentChange::Activate { containers, gateway_url, ports } => (
                State::Active,
                "containers = ?, gateway_url = ?, ports = ?, error_code = NULL, error_message = NULL",
                vec![json(containers), gateway_url.clone(), ports.as_ref().map(|p| p.to_string())],
            ),
            DeploymentChange::Observed { containers } => (seen.state, "containers = ?", vec![json(containers)]),
            DeploymentChange::Fail { code, message, containers } => (
                State::Failed,
                "error_code = ?, error_message = ?, containers = ?, gateway_url = NULL, ports = NULL",
                vec![Some(code.clone()), Some(message.clone()), json(containers)],
            ),
            DeploymentChange::Delete => (State::Deleting, "error_code = NULL, error_message = NULL", vec![]),
        };
        self.compare_and_set("deployments", id, seen, to, set, binds).await
    }

    /// Remove a DELETING row whose containers are gone.
    pub async fn remove_deployment(&self, id: &ObjectId) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM deployments WHERE id = ? AND state = 'DELETING'")
            .bind(id.as_str())
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 1 {
            self.announce_change();
            return Ok(());
        }
        let actual = self.get_deployment(id).await?.state;
        Err(StoreError::Conflict { id: id.clone(), expected: State::Deleting, actual })
    }

    /// Renews the lease of a leased row that is not being deleted (`lease_seconds` from now).
    /// `Ok(None)`: the row has no lease.
    pub async fn renew_lease(&self, id: &ObjectId) -> Result<Option<DeploymentRow>, StoreError> {
        let row = self.get_deployment(id).await?;
        if row.lease_seconds.is_none() {
            return Ok(None);
        }
        let renewed = sqlx::query_as::<_, DeploymentRow>(
            "UPDATE deployments SET lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || lease_seconds || ' seconds') \
             WHERE id = ? AND lease_seconds IS NOT NULL AND state != 'DELETING' RETURNING *",
        )
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await?;
        match renewed {
            Some(row) => Ok(Some(row)),
            None => {
                let actual = self.get_deployment(id).await?.state;
                Err(StoreError::Conflict { id: id.clone(), expected: State::Active, actual })
            }
        }
    }

    /// Whether the row's lease has run out now (a renewal may have landed since it was listed).
    pub async fn lease_expired(&self, id: &ObjectId) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM deployments WHERE id = ? AND lease_expires_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Leased rows whose lease ran out and that are not being deleted yet.
    pub async fn expired_leases(&self) -> Result<Vec<DeploymentRow>, StoreError> {
        Ok(sqlx::query_as::<_, DeploymentRow>(
            "SELECT * FROM deployments WHERE lease_expires_at IS NOT NULL AND lease_expires_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now') AND state != 'DELETING' ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Whether a deployment row with this id exists; reconciliation uses it to find orphans.
    pub async fn deployment_exists(&self, id: &str) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM deployments WHERE id = ?").bind(id).fetch_optional(self.pool()).await?;
        Ok(row.is_some())
    }
}
