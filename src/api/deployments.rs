//! `/flows`, `/pods`, `/peas`: start, list, inspect, delete, logs. The three kinds share one view
//! ([`DeploymentView`]) and one set of handlers; only the create request differs.

use std::sync::Arc;

use rocket::data::{Data, ToByteUnit};
use rocket::http::{ContentType, Status};
use rocket::response::stream::ByteStream;
use rocket::serde::json::Json;
use rocket::{delete, get, post, put, routes, Route, State as Managed};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::query::{single, strict_bool};
use super::workspaces::id_schema;
use super::{Located, ReachedAt};
use crate::daemon::Daemon;
use crate::deployment::{self, DeployError, FlowRequest, PodRequest};
use crate::docker::{Limits, RestartPolicy};
use crate::error::{describe, ApiError, ApiResult, Code, ErrorBody};
use crate::ids::{Kind, ObjectId};
use crate::state::State;
use crate::store::{ContainerRecord, DeploymentRow};

id_schema!(FlowId, "jflow");
id_schema!(PodId, "jpod");
id_schema!(PeaId, "jpea");

pub fn routes() -> Vec<Route> {
    routes![
        create_flow, list_flows, get_flow, delete_flow, flow_logs, create_pod, list_pods, get_pod, delete_pod, pod_logs, create_pea,
        list_peas, get_pea, delete_pea, pea_logs, renew_pod_lease, renew_pea_lease
    ]
}

/// A flow, pod or pea as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentView {
    /// `jflow-<uuid>`, `jpod-<uuid>` or `jpea-<uuid>`.
    pub id: String,
    /// `flow`, `pod` or `pea`.
    pub kind: String,
    pub state: State,
    /// Set when `state` is FAILED: `container_exited`, `start_timeout`, `invalid_flow`, …
    pub error_code: Option<String>,
    /// For a failed container: the pea, its exit code and its last log lines.
    pub error_message: Option<String>,
    pub workspace_id: String,
    /// A flow's YAML, relative to the workspace.
    pub filename: Option<String>,
    /// The containers of the last start, one per pea, head, tail and gateway.
    pub containers: Vec<ContainerRecord>,
    /// A flow's gateway as published on the host: `http://host:port`.
    pub gateway_url: Option<String>,
    /// The gateway on the workspace network, `http://ip:8080`: from the daemon's own host it is
    /// reachable there without the engine's port proxy (faster); not from other machines.
    pub gateway_direct_url: Option<String>,
    /// A pod's or pea's published addresses: `in` (data), `ctrl`, and every node's control port.
    #[schema(value_type = Option<Object>)]
    pub ports: Option<serde_json::Value>,
    pub limits: Limits,
    pub restart: RestartPolicy,
    /// What was asked for.
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    /// Starts attempted.
    pub starts: i64,
    /// Set when the pod or pea was created with a lease: it is deleted unless renewed
    /// (`PUT …/lease`) before `lease_expires_at`.
    pub lease_seconds: Option<i64>,
    pub lease_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl DeploymentView {
    /// The view with every published address naming `host` (see `--advertise-host`).
    pub fn advertised(mut self, host: &str) -> Self {
        fn rewrite(value: &mut serde_json::Value, host: &str) {
            match value {
                serde_json::Value::String(addr) => *addr = with_host(addr, host),
                serde_json::Value::Object(map) => map.values_mut().for_each(|v| rewrite(v, host)),
                serde_json::Value::Array(list) => list.iter_mut().for_each(|v| rewrite(v, host)),
                _ => {}
            }
        }
        self.gateway_url = self.gateway_url.map(|u| with_host(&u, host));
        if let Some(ports) = self.ports.as_mut() {
            rewrite(ports, host);
        }
        self
    }
}

/// `scheme://HOST:PORT…` with `HOST` replaced (IPv6 hosts bracketed); anything else unchanged.
fn with_host(addr: &str, host: &str) -> String {
    let Some((scheme, rest)) = addr.split_once("://") else { return addr.to_string() };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => {
            let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
            format!("{scheme}://{host}:{port}{path}")
        }
        _ => addr.to_string(),
    }
}

impl From<DeploymentRow> for DeploymentView {
    fn from(row: DeploymentRow) -> Self {
        let spec = row.spec_json();
        fn field<T: serde::de::DeserializeOwned + Default>(spec: &serde_json::Value, name: &str) -> T {
            spec.get(name).cloned().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default()
        }
        let published: Option<serde_json::Value> = row.ports.as_deref().and_then(|p| serde_json::from_str(p).ok());
        DeploymentView {
            containers: row.container_list(),
            filename: spec.get("filename").and_then(|f| f.as_str()).map(str::to_string),
            limits: field(&spec, "limits"),
            restart: field(&spec, "restart"),
            // A flow keeps its direct gateway address in `ports`; pods and peas their addresses.
            gateway_direct_url: published.as_ref().and_then(|p| p.get("gateway_direct_url")).and_then(|u| u.as_str()).map(str::to_string),
            ports: published.filter(|_| row.kind != "flow"),
            spec,
            id: row.id,
            kind: row.kind,
            state: row.state,
            error_code: row.error_code,
            error_message: row.error_message,
            workspace_id: row.workspace_id,
            gateway_url: row.gateway_url,
            starts: row.starts,
            lease_seconds: row.lease_seconds,
            lease_expires_at: row.lease_expires_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

fn located(status: Status, kind: Kind, row: DeploymentRow, host: &str) -> Located<DeploymentView> {
    Located { status, location: format!("/{}s/{}", crate::store::deployments::kind_name(kind), row.id), body: DeploymentView::from(row).advertised(host) }
}

/// The host published addresses are reported with, for a request that reached the daemon at `at`.
fn host(daemon: &Daemon, at: &ReachedAt) -> String {
    daemon.config.advertised_host(at.0.as_deref())
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::Id(e) => e.into(),
            DeployError::Store(e) => e.into(),
            DeployError::InvalidFlow(m) => ApiError::new(Code::InvalidFlow, m),
            DeployError::InvalidPod(m) => ApiError::new(Code::InvalidPod, m),
            e @ DeployError::WorkspaceNotActive(..) => ApiError::new(Code::WorkspaceNotActive, e.to_string()),
            DeployError::NameTaken(m) => ApiError::new(Code::PodNameTaken, m),
        }
    }
}

/// The JSON body of a create request; at most 1 MiB.
async fn json_body<T: serde::de::DeserializeOwned>(data: Data<'_>) -> ApiResult<Option<T>> {
    let text = data.open(1.mebibytes()).into_string().await.map_err(|e| ApiError::new(Code::BadRequest, format!("cannot read the body: {e}")))?;
    if !text.is_complete() {
        return Err(ApiError::new(Code::UploadTooLarge, "the body is larger than 1 MiB"));
    }
    if text.trim().is_empty() {
        return Ok(None);
    }
    // `null` is no request either.
    serde_json::from_str::<Option<T>>(&text).map_err(|e| ApiError::new(Code::UnprocessableEntity, format!("the body: {e}")))
}

const CREATE_ERRORS: &[Code] = &[Code::BadRequest, Code::InvalidId, Code::InvalidFlow, Code::InvalidPod];

/// Start a Flow of a workspace on Docker: every pea (each replica, shard, head and tail) and the
/// gateway in its own container of the workspace image, on the workspace network; only the
/// gateway's port is published (`gateway_url`). 201 with the row, PENDING; it becomes ACTIVE when
/// the gateway answers `/ready`, or FAILED with the failing container's last log lines.
/// JinaD's form `POST /flows?workspace_id=…&filename=…` with no body is accepted too (a request
/// gives one or the other: both, or neither, is 400 `bad_request`).
#[utoipa::path(post, path = "/flows", tag = "flows", operation_id = "create_flow",
    request_body(content = FlowRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Queued (PENDING)", body = DeploymentView),
        (status = 400, description = describe("Bad request", CREATE_ERRORS), body = ErrorBody),
        (status = 404, description = describe("No such workspace", &[Code::WorkspaceNotFound]), body = ErrorBody),
        (status = 409, description = describe("The workspace cannot run anything", &[Code::WorkspaceNotActive]), body = ErrorBody),
        (status = 413, description = describe("Body too large", &[Code::UploadTooLarge]), body = ErrorBody),
        (status = 422, description = describe("Not a flow request", &[Code::UnprocessableEntity]), body = ErrorBody)))]
// The query is read by `single`, strictly.
#[post("/flows", data = "<data>")]
pub async fn create_flow(daemon: &Managed<Arc<Daemon>>, at: ReachedAt, uri: &rocket::http::uri::Origin<'_>, data: Data<'_>) -> ApiResult<Located<DeploymentView>> {
    let (workspace_id, filename) = (single(uri, "workspace_id")?, single(uri, "filename")?);
    let body: Option<FlowRequest> = json_body(data).await?;
    let request = match (body, workspace_id, filename) {
        (Some(body), None, None) => body,
        (None, Some(workspace_id), Some(filename)) => FlowRequest { workspace_id, filename, envs: Default::default(), limits: Default::default(), restart: Default::default() },
        (Some(_), ..) => return Err(ApiError::new(Code::BadRequest, "give the request in the query or in the body, not both")),
        (None, ..) => return Err(ApiError::new(Code::BadRequest, "`workspace_id` and `filename` are required (query or JSON body)")),
    };
    let row = deployment::create_flow(daemon, request).await?;
    Ok(located(Status::Created, Kind::Flow, row, &host(daemon, &at)))
}

async fn create(daemon: &Daemon, kind: Kind, at: &ReachedAt, data: Data<'_>) -> ApiResult<Located<DeploymentView>> {
    let request: PodRequest = json_body(data).await?.ok_or_else(|| ApiError::new(Code::BadRequest, "a JSON body is required"))?;
    let row = deployment::create_pod(daemon, kind, request).await?;
    Ok(located(Status::Created, kind, row, &host(daemon, at)))
}

/// Start one pod on Docker (its head, peas and tail each in a container), with its data input and
/// control ports published (`ports`), so a Flow elsewhere can use it. 201, PENDING → ACTIVE when
/// every node answers `status`.
#[utoipa::path(post, path = "/pods", tag = "pods", operation_id = "create_pod", request_body = PodRequest,
    responses(
        (status = 201, description = "Queued (PENDING)", body = DeploymentView),
        (status = 400, description = describe("Bad request", CREATE_ERRORS), body = ErrorBody),
        (status = 404, description = describe("No such workspace", &[Code::WorkspaceNotFound]), body = ErrorBody),
        (status = 409, description = describe("The workspace cannot run anything, or the name is taken", &[Code::WorkspaceNotActive, Code::PodNameTaken]), body = ErrorBody),
        (status = 413, description = describe("Body too large", &[Code::UploadTooLarge]), body = ErrorBody),
        (status = 422, description = describe("Not a pod request", &[Code::UnprocessableEntity]), body = ErrorBody)))]
#[post("/pods", data = "<data>")]
pub async fn create_pod(daemon: &Managed<Arc<Daemon>>, at: ReachedAt, data: Data<'_>) -> ApiResult<Located<DeploymentView>> {
    create(daemon, Kind::Pod, &at, data).await
}

/// Start one pea on Docker, its ports published. As `POST /pods`; `replicas`/`shards` with
/// `shard_id`/`replica_id` make it that one pea of a pod whose other peas run elsewhere.
#[utoipa::path(post, path = "/peas", tag = "peas", operation_id = "create_pea", request_body = PodRequest,
    responses(
        (status = 201, description = "Queued (PENDING)", body = DeploymentView),
        (status = 400, description = describe("Bad request", CREATE_ERRORS), body = ErrorBody),
        (status = 404, description = describe("No such workspace", &[Code::WorkspaceNotFound]), body = ErrorBody),
        (status = 409, description = describe("The workspace cannot run anything, or the name is taken", &[Code::WorkspaceNotActive, Code::PodNameTaken]), body = ErrorBody),
        (status = 413, description = describe("Body too large", &[Code::UploadTooLarge]), body = ErrorBody),
        (status = 422, description = describe("Not a pea request", &[Code::UnprocessableEntity]), body = ErrorBody)))]
#[post("/peas", data = "<data>")]
pub async fn create_pea(daemon: &Managed<Arc<Daemon>>, at: ReachedAt, data: Data<'_>) -> ApiResult<Located<DeploymentView>> {
    create(daemon, Kind::Pea, &at, data).await
}

async fn list(daemon: &Daemon, kind: Kind, at: &ReachedAt) -> ApiResult<Json<Vec<DeploymentView>>> {
    let host = host(daemon, at);
    Ok(Json(daemon.store.list_deployments(kind).await?.into_iter().map(|r| DeploymentView::from(r).advertised(&host)).collect()))
}

async fn get_one(daemon: &Daemon, kind: Kind, id: &str, at: &ReachedAt) -> ApiResult<Json<DeploymentView>> {
    let id = ObjectId::parse(kind, id)?;
    Ok(Json(DeploymentView::from(daemon.store.get_deployment(&id).await?).advertised(&host(daemon, at))))
}

async fn remove(daemon: &Daemon, kind: Kind, id: &str, at: &ReachedAt) -> ApiResult<Located<DeploymentView>> {
    let id = ObjectId::parse(kind, id)?;
    let row = deployment::delete(daemon, &id).await?;
    Ok(located(Status::Accepted, kind, row, &host(daemon, at)))
}

async fn renew_lease(daemon: &Daemon, kind: Kind, id: &str, at: &ReachedAt) -> ApiResult<Json<DeploymentView>> {
    let id = ObjectId::parse(kind, id)?;
    match deployment::lease::renew(daemon, &id).await? {
        Some(row) => Ok(Json(DeploymentView::from(row).advertised(&host(daemon, at)))),
        None => Err(ApiError::new(Code::NoLease, format!("{id} was created without `lease_seconds`"))),
    }
}

/// Renews a pod's lease: it now expires `lease_seconds` from now. A Flow renews the pods it
/// started elsewhere every third of their lease.
#[utoipa::path(put, path = "/pods/{id}/lease", tag = "pods", operation_id = "renew_pod_lease",
    params(("id" = PodId, Path, description = "The pod's id")),
    responses(
        (status = 200, description = "Renewed", body = DeploymentView),
        (status = 400, description = describe("Bad id", &[Code::InvalidId]), body = ErrorBody),
        (status = 404, description = describe("Not found", &[Code::DeploymentNotFound]), body = ErrorBody),
        (status = 409, description = describe("No lease, or being deleted", &[Code::NoLease, Code::InvalidStateTransition]), body = ErrorBody)))]
#[put("/pods/<id>/lease")]
pub async fn renew_pod_lease(daemon: &Managed<Arc<Daemon>>, id: &str, at: ReachedAt) -> ApiResult<Json<DeploymentView>> {
    renew_lease(daemon, Kind::Pod, id, &at).await
}

/// Renews a pea's lease. As `PUT /pods/{id}/lease`.
#[utoipa::path(put, path = "/peas/{id}/lease", tag = "peas", operation_id = "renew_pea_lease",
    params(("id" = PeaId, Path, description = "The pea's id")),
    responses(
        (status = 200, description = "Renewed", body = DeploymentView),
        (status = 400, description = describe("Bad id", &[Code::InvalidId]), body = ErrorBody),
        (status = 404, description = describe("Not found", &[Code::DeploymentNotFound]), body = ErrorBody),
        (status = 409, description = describe("No lease, or being deleted", &[Code::NoLease, Code::InvalidStateTransition]), body = ErrorBody)))]
#[put("/peas/<id>/lease")]
pub async fn renew_pea_lease(daemon: &Managed<Arc<Daemon>>, id: &str, at: ReachedAt) -> ApiResult<Json<DeploymentView>> {
    renew_lease(daemon, Kind::Pea, id, &at).await
}

/// The logs: what earlier containers of the row printed (collected when they stopped), then
/// every live container's output, each line prefixed with `[pea]`. With `follow`, new lines
/// stream until the containers stop.
async fn logs(daemon: &Managed<Arc<Daemon>>, kind: Kind, id: &str, uri: &rocket::http::uri::Origin<'_>) -> ApiResult<(ContentType, ByteStream![Vec<u8>])> {
    let id = ObjectId::parse(kind, id)?;
    let follow = strict_bool(uri, "follow")?.unwrap_or(false);
    daemon.store.get_deployment(&id).await?;
    let daemon: Arc<Daemon> = daemon.inner().clone();
    let stream = ByteStream! {
        let path = crate::build_log::path(&daemon.config.logs_dir(), &id);
        if let Ok(kept) = tokio::fs::read(&path).await {
            yield kept;
        }
        let live = crate::worker::containers::of_row(&daemon, &id).await.unwrap_or_default();
        if follow {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
            for (pea, docker_id, _) in live {
                let Ok(mut lines) = daemon.engine.follow_container_logs(&docker_id).await else { continue };
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(line) = lines.recv().await {
                        if tx.send(format!("[{pea}] {line}\n")).await.is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            while let Some(line) = rx.recv().await {
                yield line.into_bytes();
            }
        } else {
            for (pea, docker_id, _) in live {
                let lines = daemon.engine.container_logs(&docker_id, 100_000).await.unwrap_or_default();
                let mut chunk = String::new();
                for line in lines {
                    chunk.push_str(&format!("[{pea}] {line}\n"));
                }
                yield chunk.into_bytes();
            }
        }
    };
    Ok((ContentType::Plain, stream))
}

/// Generates the list, get, delete and logs routes of one kind (utoipa needs literal paths).
macro_rules! kind_routes {
    ($kind:expr, $id_schema:ty, $tag:literal, $list:ident, $get:ident, $delete:ident, $logs:ident, $plural:literal, $one:literal, $one_doc:literal, $logs_path:literal, $logs_doc:literal, $what:literal) => {
        #[doc = concat!("Every ", $what, ", oldest first.")]
        #[utoipa::path(get, path = $plural, tag = $tag, operation_id = concat!("list_", $tag),
            responses((status = 200, description = concat!("All ", $tag), body = Vec<DeploymentView>)))]
        #[get($plural)]
        pub async fn $list(daemon: &Managed<Arc<Daemon>>, at: ReachedAt) -> ApiResult<Json<Vec<DeploymentView>>> {
            list(daemon, $kind, &at).await
        }

        #[doc = concat!("One ", $what, ": state, reason, workspace, containers with their peas and states, published addresses.")]
        #[utoipa::path(get, path = $one_doc, tag = $tag, operation_id = concat!("get_", $what),
            params(("id" = $id_schema, Path, description = concat!("The ", $what, "'s id"))),
            responses(
                (status = 200, description = concat!("The ", $what), body = DeploymentView),
                (status = 400, description = describe("Bad id", &[Code::InvalidId]), body = ErrorBody),
                (status = 404, description = describe("Not found", &[Code::DeploymentNotFound]), body = ErrorBody)))]
        #[get($one)]
        pub async fn $get(daemon: &Managed<Arc<Daemon>>, id: &str, at: ReachedAt) -> ApiResult<Json<DeploymentView>> {
            get_one(daemon, $kind, id, &at).await
        }

        #[doc = concat!("Stop and remove a ", $what, ": 202, DELETING; its containers get SIGTERM (executors persist), then go, then the row.")]
        #[utoipa::path(delete, path = $one_doc, tag = $tag, operation_id = concat!("delete_", $what),
            params(("id" = $id_schema, Path, description = concat!("The ", $what, "'s id"))),
            responses(
                (status = 202, description = "Deletion queued", body = DeploymentView),
                (status = 400, description = describe("Bad id", &[Code::InvalidId]), body = ErrorBody),
                (status = 404, description = describe("Not found", &[Code::DeploymentNotFound]), body = ErrorBody)))]
        #[delete($one)]
        pub async fn $delete(daemon: &Managed<Arc<Daemon>>, id: &str, at: ReachedAt) -> ApiResult<Located<DeploymentView>> {
            remove(daemon, $kind, id, &at).await
        }

        #[doc = concat!("The ", $what, "'s container logs (plain text), each line prefixed with `[pea]`; kept after its containers stopped. `follow=true` streams until they stop.")]
        #[utoipa::path(get, path = $logs_doc, tag = $tag, operation_id = concat!("get_", $what, "_logs"),
            params(
                ("id" = $id_schema, Path, description = concat!("The ", $what, "'s id")),
                ("follow" = Option<bool>, Query, description = "Keep the response open and stream new lines")),
            responses(
                (status = 200, description = "The logs", content_type = "text/plain", body = String),
                (status = 400, description = describe("Bad id or query", &[Code::InvalidId, Code::BadRequest]), body = ErrorBody),
                (status = 404, description = describe("Not found", &[Code::DeploymentNotFound]), body = ErrorBody)))]
        #[get($logs_path)]
        pub async fn $logs(daemon: &Managed<Arc<Daemon>>, id: &str, uri: &rocket::http::uri::Origin<'_>) -> ApiResult<(ContentType, ByteStream![Vec<u8>])> {
            logs(daemon, $kind, id, uri).await
        }
    };
}

kind_routes!(Kind::Flow, FlowId, "flows", list_flows, get_flow, delete_flow, flow_logs, "/flows", "/flows/<id>", "/flows/{id}", "/flows/<id>/logs", "/flows/{id}/logs", "flow");
kind_routes!(Kind::Pod, PodId, "pods", list_pods, get_pod, delete_pod, pod_logs, "/pods", "/pods/<id>", "/pods/{id}", "/pods/<id>/logs", "/pods/{id}/logs", "pod");
kind_routes!(Kind::Pea, PeaId, "peas", list_peas, get_pea, delete_pea, pea_logs, "/peas", "/peas/<id>", "/peas/{id}", "/peas/<id>/logs", "/peas/{id}/logs", "pea");
