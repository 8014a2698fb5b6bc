//! The gateway's HTTP API (its OpenAPI document: `jinad openapi --gateway`, committed as
//! `openapi/gateway.json`):
//! - `POST /post` `{"endpoint": "/index", "data": [docs], "parameters": {}}` (`execEndpoint` accepted);
//! - `POST /index`, `/search`, `/update`, `/delete` `{"data", "parameters"}`;
//! - `GET /ready` (200 once every pea answered, else 503), `GET /status`, `GET /openapi.json`.
//!
//! Answers: 200 `{"request_id", "endpoint", "data", "routes"}`; errors `{"code", "message", "pea"?,
//! "request_id"?, "not_answering"?}` with 400 `invalid_request`, 404 `not_found`,
//! 500 `executor_error`/`executor_panic`, 502 `unreachable`, 503 `not_ready`, 504 `timeout`.

// Rocket responders are returned by value; an error body of 128 bytes on an error path is fine.
#![allow(clippy::result_large_err)]

use std::net::IpAddr;
use std::sync::Arc;

use rocket::data::{ByteUnit, Limits};
use rocket::figment::Figment;
use rocket::http::Status;
use rocket::response::status::Custom;
use rocket::serde::json::Json;
use rocket::{catch, catchers, get, post, routes, Build, Request, Rocket, State};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{OpenApi, ToSchema};

use super::{Dispatcher, GatewayError};
use crate::runtime::document::Document;

type Reply = Result<Json<Answer>, Custom<Json<ErrorBody>>>;
type Body<'r, T> = Result<Json<T>, rocket::serde::json::Error<'r>>;

/// A request to any endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostBody {
    /// The endpoint executors dispatch on, e.g. `/index`; must start with `/`. Alias: `execEndpoint`.
    #[serde(alias = "execEndpoint", alias = "exec_endpoint")]
    endpoint: String,
    #[serde(default)]
    data: Vec<Document>,
    /// Passed to every executor; keys under `parameters.<pod name>` override for that pod.
    /// `top_k` cuts merged matches, `metric` (default `cosine`) orders them.
    #[serde(default)]
    #[schema(value_type = Object)]
    parameters: Map<String, Value>,
}

/// A request to a fixed endpoint (`/index`, `/search`, `/update`, `/delete`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrudBody {
    #[serde(default)]
    data: Vec<Document>,
    #[serde(default)]
    #[schema(value_type = Object)]
    parameters: Map<String, Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Answer {
    request_id: String,
    endpoint: String,
    data: Vec<Document>,
    /// The peas that handled the request, in order.
    routes: Vec<String>,
}

/// Every error: a stable `code` and a message; `pea` names the pea that failed or cannot be reached.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    code: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pea: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    /// After a timeout: the peas that did not answer a status probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_answering: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    ready: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayStatus {
    ready: bool,
    version: String,
    /// Requests sent into the Flow and not answered yet.
    pending: usize,
    /// Every pea (and head, tail) behind this gateway, as it answered a status probe just now.
    peas: Vec<PeaStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PeaStatus {
    name: String,
    /// False when it did not answer within 300 ms.
    answering: bool,
    /// `pea`, `head`, `tail`, or `pod` (a `jinad pod` process).
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    /// Requests it handled so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    processed: Option<u64>,
}

fn error(status: Status, code: &str, message: impl Into<String>) -> Custom<Json<ErrorBody>> {
    Custom(status, Json(ErrorBody { code: code.into(), message: message.into(), pea: None, request_id: None, not_answering: None }))
}

async fn run(d: &Dispatcher, endpoint: String, data: Vec<Document>, parameters: Map<String, Value>) -> Reply {
    if !endpoint.starts_with('/') {
        return Err(error(Status::BadRequest, "invalid_request", format!("endpoint `{endpoint}` must start with `/`")));
    }
    match d.call(endpoint, data, parameters).await {
        Ok(answer) => Ok(Json(Answer { request_id: answer.request_id, endpoint: answer.endpoint, data: answer.docs, routes: answer.routes })),
        Err(GatewayError::Invalid(m)) => Err(error(Status::BadRequest, "invalid_request", m)),
        Err(GatewayError::Pea { request_id, pea, code, message }) => {
            let status = if code == "unreachable" { Status::BadGateway } else { Status::InternalServerError };
            Err(Custom(status, Json(ErrorBody { code, message, pea: Some(pea), request_id: Some(request_id), not_answering: None })))
        }
        Err(GatewayError::Timeout { request_id, silent, message }) => Err(Custom(
            Status::GatewayTimeout,
            Json(ErrorBody { code: "timeout".into(), message, pea: None, request_id: Some(request_id), not_answering: Some(silent) }),
        )),
    }
}

fn body<T>(parsed: Body<'_, T>) -> Result<T, Custom<Json<ErrorBody>>> {
    parsed.map(Json::into_inner).map_err(|e| {
        let message = match e {
            rocket::serde::json::Error::Io(e) => format!("cannot read the body: {e}"),
            rocket::serde::json::Error::Parse(_, e) => format!("bad JSON body: {e}"),
        };
        error(Status::BadRequest, "invalid_request", message)
    })
}

async fn crud(d: &Dispatcher, endpoint: &str, parsed: Body<'_, CrudBody>) -> Reply {
    let b = body(parsed)?;
    run(d, endpoint.to_string(), b.data, b.parameters).await
}

/// Sends documents through the Flow to any endpoint.
#[utoipa::path(post, path = "/post", tag = "requests", request_body = PostBody, responses(
    (status = 200, description = "The documents after every executor", body = Answer),
    (status = 400, description = "`invalid_request`", body = ErrorBody),
    (status = 500, description = "`executor_error` or `executor_panic`, naming the pea", body = ErrorBody),
    (status = 502, description = "`unreachable`: a pea is down", body = ErrorBody),
    (status = 504, description = "`timeout`: no answer in time; silent peas are named", body = ErrorBody)))]
#[post("/post", data = "<parsed>")]
async fn post(d: &State<Arc<Dispatcher>>, parsed: Body<'_, PostBody>) -> Reply {
    let b = body(parsed)?;
    run(d, b.endpoint, b.data, b.parameters).await
}

/// `POST /<name>`: `POST /post` with that endpoint, one handler per route so each has its own
/// OpenAPI operation.
macro_rules! crud_route {
    ($handler:ident, $path:literal, $what:literal) => {
        #[doc = $what]
        #[utoipa::path(post, path = $path, tag = "requests", request_body = CrudBody, responses(
            (status = 200, description = "The documents after every executor", body = Answer),
            (status = "4XX", description = "Bad request", body = ErrorBody),
            (status = "5XX", description = "Executor error, unreachable pea or timeout", body = ErrorBody)))]
        #[post($path, data = "<parsed>")]
        async fn $handler(d: &State<Arc<Dispatcher>>, parsed: Body<'_, CrudBody>) -> Reply {
            crud(d, $path, parsed).await
        }
    };
}

crud_route!(index, "/index", "`POST /post` with endpoint `/index`.");
crud_route!(search, "/search", "`POST /post` with endpoint `/search`: each document comes back with `matches`.");
crud_route!(update, "/update", "`POST /post` with endpoint `/update`.");
crud_route!(delete, "/delete", "`POST /post` with endpoint `/delete`.");

/// 200 once every pea of the Flow answered; 503 while starting or stopping.
#[utoipa::path(get, path = "/ready", tag = "status", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "`not_ready`", body = ErrorBody)))]
#[get("/ready")]
fn ready(d: &State<Arc<Dispatcher>>) -> Result<Json<Readiness>, Custom<Json<ErrorBody>>> {
    if d.is_ready() {
        Ok(Json(Readiness { ready: true }))
    } else {
        Err(error(Status::ServiceUnavailable, "not_ready", "the Flow is starting or stopping"))
    }
}

/// Readiness, version, requests in flight, and every pea as it answers a status probe now.
#[utoipa::path(get, path = "/status", tag = "status", responses((status = 200, description = "Gateway status", body = GatewayStatus)))]
#[get("/status")]
async fn status(d: &State<Arc<Dispatcher>>) -> Json<GatewayStatus> {
    let peas = d
        .probe_peas()
        .await
        .into_iter()
        .map(|(name, reply)| PeaStatus {
            name,
            answering: reply.is_some(),
            role: reply.as_ref().map(|r| r.role.clone()),
            processed: reply.map(|r| r.processed),
        })
        .collect();
    Json(GatewayStatus { ready: d.is_ready(), version: env!("CARGO_PKG_VERSION").into(), pending: d.pending(), peas })
}

/// The gateway's own OpenAPI document, for client generators pointed at a running Flow.
#[get("/openapi.json")]
fn openapi() -> (rocket::http::ContentType, String) {
    (rocket::http::ContentType::JSON, openapi_json())
}

#[catch(default)]
fn catch_all(status: Status, req: &Request<'_>) -> Json<ErrorBody> {
    let code = match status.code {
        404 => "not_found",
        413 => "payload_too_large",
        400 | 422 => "invalid_request",
        _ => "internal",
    };
    error(status, code, format!("{} {}: {}", req.method(), req.uri(), status.reason_lossy())).1
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "jinad gateway",
        description = "The HTTP gateway of a jinad Flow (`jinad flow FLOW.yml`). Every error body is \
                       `{\"code\", \"message\"}` with a stable snake_case `code`; `pea` names the pea that failed.",
        license(name = "Apache-2.0")
    ),
    paths(post, index, search, update, delete, ready, status),
    tags(
        (name = "requests", description = "Documents through the Flow"),
        (name = "status", description = "Readiness and status"),
    )
)]
pub struct GatewayApi;

/// The gateway's OpenAPI document (what `openapi/gateway.json` holds).
pub fn openapi_json() -> String {
    GatewayApi::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The gateway's HTTP server on `host:port` (0 = any free port).
pub fn rocket(dispatcher: Arc<Dispatcher>, host: IpAddr, port: u16) -> Rocket<Build> {
    let figment = Figment::from(rocket::Config::default())
        .merge(("address", host))
        .merge(("port", port))
        .merge(("limits", Limits::default().limit("json", ByteUnit::Mebibyte(256))))
        .merge(("log_level", rocket::config::LogLevel::Off))
        .merge(("cli_colors", false))
        .merge(("ident", concat!("jinad-gateway/", env!("CARGO_PKG_VERSION"))));
    rocket::custom(figment)
        .manage(dispatcher)
        .mount("/", routes![post, index, search, update, delete, ready, status, openapi])
        .register("/", catchers![catch_all])
}
