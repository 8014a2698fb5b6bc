//! What leaves the daemon for an orchestrator: `GET /flows/{id}/export` (a flow as a Compose file
//! or Kubernetes manifests) and `POST /workspaces/{id}/push` (its image, to a registry).

use std::sync::Arc;

use rocket::http::{ContentType, Header};
use rocket::serde::json::Json;
use rocket::{get, post, routes, Responder, Route, State as Managed};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::deployments::FlowId;
use super::query::single;
use super::workspaces::WorkspaceId;
use crate::daemon::Daemon;
use crate::error::{describe, ApiError, ApiResult, Code, ErrorBody};
use crate::export::daemon::{self as exporting, ExportFailure, Exported, Format};
use crate::export::kubernetes;
use crate::ids::{Kind, ObjectId};
use crate::workspace::push::{self, PushError, Pushed};

pub fn routes() -> Vec<Route> {
    routes![export_flow, push_workspace]
}

impl From<ExportFailure> for ApiError {
    fn from(e: ExportFailure) -> Self {
        match e {
            ExportFailure::Store(e) => e.into(),
            ExportFailure::Invalid(m) => ApiError::new(Code::InvalidExport, m),
            ExportFailure::NoImage(m) => ApiError::new(Code::NoImage, m),
        }
    }
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Store(e) => e.into(),
            PushError::InvalidReference(m) => ApiError::new(Code::InvalidReference, m),
            PushError::NoImage(m) => ApiError::new(Code::NoImage, m),
            PushError::Engine(m) => ApiError::new(Code::PushFailed, m),
        }
    }
}

/// What `GET /flows/{id}/export` writes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Compose,
    Kubernetes,
}

/// A tar.gz of Kubernetes manifests.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ManifestArchive(#[allow(dead_code)] Vec<u8>);

#[derive(Responder)]
pub enum ExportBody {
    Compose(String, ContentType),
    Kubernetes(Vec<u8>, ContentType, Header<'static>),
}

/// The flow as manifests for an orchestrator, running its workspace's image (`jworkspace:<uuid>`;
/// push it with `POST /workspaces/{id}/push` for a cluster to pull, and replace the image name).
/// `compose`: one Compose file (runs with `docker-compose up` and `docker stack deploy`);
/// `kubernetes`: a tar.gz of one manifest per object under `<flow id>/`, for `kubectl apply -f`.
#[utoipa::path(get, path = "/flows/{id}/export", tag = "flows", operation_id = "export_flow",
    params(
        ("id" = FlowId, Path, description = "The flow's id"),
        ("format" = ExportFormat, Query, description = "`compose` or `kubernetes`"),
        ("namespace" = Option<String>, Query, description = "Kubernetes namespace (default `jinad`)", pattern = r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"),
        ("port" = Option<u16>, Query, description = "The gateway's published port in a Compose file (default 8080)", minimum = 1, maximum = 65535),
        ("image" = Option<String>, Query, description = "The image the manifests run (default: the workspace's `jworkspace:<uuid>`, which only this engine has; name the pushed reference for a cluster)", max_length = 255, pattern = r"^(((localhost|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+)(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))/)?[a-z0-9]+([_-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$")),
    responses(
        (status = 200, description = "A Compose file (`application/yaml`) or a tar.gz of Kubernetes manifests (`application/gzip`)",
            content((String = "application/yaml"), (ManifestArchive = "application/gzip"))),
        (status = 400, description = describe("Bad request", &[Code::InvalidId, Code::BadRequest, Code::InvalidExport]), body = ErrorBody),
        (status = 404, description = describe("Not found", &[Code::DeploymentNotFound, Code::WorkspaceNotFound]), body = ErrorBody),
        (status = 409, description = describe("The workspace has no image", &[Code::NoImage]), body = ErrorBody)))]
#[get("/flows/<id>/export")]
pub async fn export_flow(daemon: &Managed<Arc<Daemon>>, id: &str, uri: &rocket::http::uri::Origin<'_>) -> ApiResult<ExportBody> {
    let id = ObjectId::parse(Kind::Flow, id)?;
    let format = match single(uri, "format")?.as_deref() {
        Some("compose") => Format::Compose,
        Some("kubernetes") => Format::Kubernetes,
        Some(other) => return Err(ApiError::new(Code::InvalidExport, format!("format: `{}` is neither `compose` nor `kubernetes`", other.chars().take(40).collect::<String>()))),
        None => return Err(ApiError::new(Code::InvalidExport, "format: `compose` or `kubernetes` is required")),
    };
    let namespace = single(uri, "namespace")?.unwrap_or_else(|| "jinad".to_string());
    kubernetes::check_namespace(&namespace).map_err(|e| ApiError::new(Code::InvalidExport, e.0))?;
    let port = match single(uri, "port")? {
        None => 8080,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| ApiError::new(Code::InvalidExport, "port: 1..65535"))?,
    };
    let image = single(uri, "image")?;
    if let Some(image) = &image {
        crate::export::check_image(image).map_err(|e| ApiError::new(Code::InvalidExport, e.0))?;
    }
    Ok(match exporting::flow(daemon, &id, format, &namespace, port, image).await? {
        Exported::Compose(text) => ExportBody::Compose(text, ContentType::new("application", "yaml")),
        Exported::Kubernetes(bytes) => ExportBody::Kubernetes(
            bytes,
            ContentType::GZIP,
            Header::new("Content-Disposition", format!("attachment; filename=\"{id}-kubernetes.tar.gz\"")),
        ),
    })
}

/// `POST /workspaces/{id}/push`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// `REGISTRY[:PORT]/NAME[:TAG]` (tag `latest` when none); the registry part is a host with a
    /// `.` or a port, or `localhost` (a bare `NAME` would go to Docker Hub).
    #[schema(example = "127.0.0.1:5000/search:v1", max_length = 255,
        pattern = r"^((localhost|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+)(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))(/[a-z0-9]+([._-][a-z0-9]+)*)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")]
    pub reference: String,
}

/// Tags the workspace's image as `reference`, pushes it to that registry (no login: a registry
/// that needs one is refused by the engine) and removes the tag again. Answers when the push is
/// done, with the digest to pull by. The one route that waits on the engine for long: a push
/// takes as long as the upload to the registry does.
#[utoipa::path(post, path = "/workspaces/{id}/push", tag = "workspaces", operation_id = "push_workspace",
    params(("id" = WorkspaceId, Path, description = "The workspace's id")),
    request_body = PushRequest,
    responses(
        (status = 200, description = "Pushed", body = Pushed),
        (status = 400, description = describe("Bad request", &[Code::InvalidId, Code::InvalidReference]), body = ErrorBody),
        (status = 404, description = describe("No such workspace", &[Code::WorkspaceNotFound]), body = ErrorBody),
        (status = 409, description = describe("The workspace has no image", &[Code::NoImage]), body = ErrorBody),
        (status = 422, description = describe("Not a push request", &[Code::UnprocessableEntity]), body = ErrorBody),
        (status = 502, description = describe("The engine could not push", &[Code::PushFailed]), body = ErrorBody)))]
#[post("/workspaces/<id>/push", data = "<request>")]
pub async fn push_workspace(daemon: &Managed<Arc<Daemon>>, id: &str, request: Result<Json<PushRequest>, rocket::serde::json::Error<'_>>) -> ApiResult<Json<Pushed>> {
    let id = ObjectId::parse(Kind::Workspace, id)?;
    let request = request.map_err(|e| ApiError::new(Code::UnprocessableEntity, format!("the body: {e}")))?;
    Ok(Json(push::push(daemon, &id, &request.reference).await?))
}
