//! `GET /status`, `GET /` (liveness, as in JinaD) and `GET /ready` (readiness). The last two
//! answer without a token.

use std::sync::Arc;

use rocket::serde::json::Json;
use rocket::{get, routes, Route, State as Managed};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::daemon::Daemon;
use crate::error::ApiResult;
use crate::ids::Kind;

pub fn routes() -> Vec<Route> {
    routes![alive, ready, status, metrics]
}

/// Rows per state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub struct StateCountsView {
    pub pending: i64,
    pub active: i64,
    pub failed: i64,
    pub deleting: i64,
}

impl From<crate::store::StateCounts> for StateCountsView {
    fn from(c: crate::store::StateCounts) -> Self {
        StateCountsView { pending: c.pending, active: c.active, failed: c.failed, deleting: c.deleting }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DockerStatus {
    /// Whether the Docker engine answered just now.
    pub reachable: bool,
    /// The engine's version, when reachable.
    pub version: Option<String>,
    /// The API version negotiated with the engine.
    pub api_version: Option<String>,
    /// Why it is unreachable.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DaemonStatus {
    /// jinad's version.
    pub version: String,
    /// This daemon's persistent id; its Docker objects carry it as the `jinad.daemon` label.
    pub daemon_id: String,
    pub uptime_seconds: f64,
    pub docker: DockerStatus,
    pub workspaces: StateCountsView,
    pub flows: StateCountsView,
    pub pods: StateCountsView,
    pub peas: StateCountsView,
    /// Base image template for workspace images.
    pub base_image_template: String,
}

/// Liveness: answers `{}` as soon as the daemon serves. Needs no token.
#[utoipa::path(get, path = "/", tag = "status", security(()), responses((status = 200, description = "The daemon is alive", body = Object)))]
#[get("/")]
pub fn alive() -> Json<serde_json::Value> {
    Json(serde_json::json!({}))
}

/// Readiness: `{"ready": true}` once the daemon reconciled its rows with Docker and serves, while
/// its database answers. Needs no token.
#[utoipa::path(get, path = "/ready", tag = "status", security(()), responses(
    (status = 200, description = "Ready", body = Object),
    (status = 500, description = "The database does not answer", body = crate::error::ErrorBody)))]
#[get("/ready")]
pub async fn ready(daemon: &Managed<Arc<Daemon>>) -> ApiResult<Json<serde_json::Value>> {
    daemon.store.count_workspaces().await?;
    Ok(Json(serde_json::json!({"ready": true})))
}

/// The daemon's version, uptime, rows per state and whether Docker is reachable.
#[utoipa::path(get, path = "/status", tag = "status", responses(
    (status = 200, description = "Daemon status", body = DaemonStatus),
    (status = 500, description = "Database error", body = crate::error::ErrorBody)))]
#[get("/status")]
pub async fn status(daemon: &Managed<Arc<Daemon>>) -> ApiResult<Json<DaemonStatus>> {
    let counts = daemon.store.count_workspaces().await?;
    let flows = daemon.store.count_deployments(Kind::Flow).await?;
    let pods = daemon.store.count_deployments(Kind::Pod).await?;
    let peas = daemon.store.count_deployments(Kind::Pea).await?;
    let docker = match daemon.engine.ping().await {
        Ok(info) => DockerStatus { reachable: true, version: Some(info.version), api_version: Some(info.api_version), error: None },
        Err(e) => DockerStatus { reachable: false, version: None, api_version: None, error: Some(e.to_string()) },
    };
    Ok(Json(DaemonStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        daemon_id: daemon.daemon_id.clone(),
        uptime_seconds: daemon.started.elapsed().as_secs_f64(),
        docker,
        workspaces: counts.into(),
        flows: flows.into(),
        pods: pods.into(),
        peas: peas.into(),
        base_image_template: daemon.config.base_image_template.clone(),
    }))
}

/// Prometheus metrics, in the text exposition format (0.0.4): `jinad_objects{kind,state}` (as
/// `GET /status` counts them), `jinad_build_duration_seconds`, `jinad_start_duration_seconds`,
/// `jinad_reconcile_runs_total`, `jinad_reconcile_actions_total`, `jinad_docker_errors_total`,
/// `jinad_http_requests_total{method,route,status}`, `jinad_http_request_duration_seconds`.
#[utoipa::path(get, path = "/metrics", tag = "status", responses(
    (status = 200, description = "The metrics", content_type = "text/plain", body = String),
    (status = 500, description = "Database error", body = crate::error::ErrorBody)))]
#[get("/metrics")]
pub async fn metrics(daemon: &Managed<Arc<Daemon>>) -> ApiResult<(rocket::http::ContentType, String)> {
    let text = crate::metrics::scrape(daemon).await.map_err(|e| crate::error::ApiError::new(crate::error::Code::Internal, e))?;
    Ok((rocket::http::ContentType::new("text", "plain").with_params(("version", "0.0.4")), text))
}
