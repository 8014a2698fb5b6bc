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
use crate::error::{describe, StableCode};
use crate::runtime::document::strict::{self, Object};
use crate::runtime::document::Document;

type Reply = Result<Json<Answer>, Failure>;
/// A JSON body that must be an object (serde's derive alone would also take an array of fields).
type Body<'r, T> = Result<Json<Object<T>>, rocket::serde::json::Error<'r>>;

crate::error::error_codes! {
    /// Every error code of the gateway.
    pub enum GatewayCode {
        InvalidRequest = "invalid_request", Some(400), "The body is not valid JSON, not an object, has unknown fields, a bad endpoint, or a number a 32-bit float cannot hold.";
        NotFound = "not_found", Some(404), "No such route.";
        MethodNotAllowed = "method_not_allowed", Some(405), "The path exists but not with this method (see `Allow`).";
        PayloadTooLarge = "payload_too_large", Some(413), "The body is larger than the gateway takes.";
        ExecutorError = "executor_error", Some(500), "An executor raised an error; `pea` names it.";
        ExecutorPanic = "executor_panic", Some(500), "An executor panicked; `pea` names it.";
        Internal = "internal", Some(500), "A bug in the gateway.";
        Unreachable = "unreachable", Some(502), "A pea is down or not reachable; `pea` names it.";
        NotReady = "not_ready", Some(503), "The Flow is starting or stopping.";
        Timeout = "timeout", Some(504), "No answer in time; `not_answering` lists the silent peas.";
    }
}

/// A request to any endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostBody {
    /// The endpoint executors dispatch on, e.g. `/index`; must start with `/`. Alias: `execEndpoint`.
    #[serde(alias = "execEndpoint", alias = "exec_endpoint")]
    #[schema(pattern = "^/")]
    endpoint: String,
    #[serde(default, deserialize_with = "strict::objects")]
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
    #[serde(default, deserialize_with = "strict::objects")]
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
    #[schema(value_type = GatewayCode)]
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

/// An error answer: status, body, and for a 405 the `Allow` header.
pub struct Failure {
    inner: Custom<Json<ErrorBody>>,
    allow: Option<rocket::http::Header<'static>>,
}

impl<'r> rocket::response::Responder<'r, 'static> for Failure {
    fn respond_to(self, request: &'r Request<'_>) -> rocket::response::Result<'static> {
        let mut response = self.inner.respond_to(request)?;
        if let Some(allow) = self.allow {
            response.set_header(allow);
        }
        Ok(response)
    }
}

impl Failure {
    fn with(status: Status, body: ErrorBody) -> Self {
        Failure { inner: Custom(status, Json(body)), allow: None }
    }
}

fn error(code: GatewayCode, message: impl Into<String>) -> Failure {
    let status = Status::from_code(code.http_status().unwrap_or(500)).unwrap_or(Status::InternalServerError);
    Failure::with(status, ErrorBody { code: code.as_str().into(), message: message.into(), pea: None, request_id: None, not_answering: None })
}

async fn run(d: &Dispatcher, endpoint: String, data: Vec<Document>, parameters: Map<String, Value>) -> Reply {
    let started = std::time::Instant::now();
    let label = endpoint.clone();
    let reply = call(d, endpoint, data, parameters).await;
    let status = match &reply {
        Ok(_) => 200,
        Err(failure) => failure.inner.0.code,
    };
    d.metrics.observe(&label, status, started.elapsed().as_secs_f64());
    reply
}

async fn call(d: &Dispatcher, endpoint: String, data: Vec<Document>, parameters: Map<String, Value>) -> Reply {
    if !endpoint.starts_with('/') {
        return Err(error(GatewayCode::InvalidRequest, format!("endpoint `{endpoint}` must start with `/`")));
    }
    match d.call(endpoint, data, parameters).await {
        Ok(answer) => Ok(Json(Answer { request_id: answer.request_id, endpoint: answer.endpoint, data: answer.docs, routes: answer.routes })),
        Err(GatewayError::Invalid(m)) => Err(error(GatewayCode::InvalidRequest, m)),
        Err(GatewayError::Pea { request_id, pea, code, message }) => {
            let status = if code == GatewayCode::Unreachable.as_str() { Status::BadGateway } else { Status::InternalServerError };
            Err(Failure::with(status, ErrorBody { code, message, pea: Some(pea), request_id: Some(request_id), not_answering: None }))
        }
        Err(GatewayError::Timeout { request_id, silent, message }) => Err(Failure::with(
            Status::GatewayTimeout,
            ErrorBody { code: GatewayCode::Timeout.as_str().into(), message, pea: None, request_id: Some(request_id), not_answering: Some(silent) },
        )),
    }
}

fn body<T>(parsed: Body<'_, T>) -> Result<T, Failure> {
    parsed.map(|json| json.into_inner().0).map_err(|e| {
        let message = match e {
            rocket::serde::json::Error::Io(e) => format!("cannot read the body: {e}"),
            rocket::serde::json::Error::Parse(_, e) => format!("bad JSON body: {e}"),
        };
        error(GatewayCode::InvalidRequest, message)
    })
}

async fn crud(d: &Dispatcher, endpoint: &str, parsed: Body<'_, CrudBody>) -> Reply {
    let b = body(parsed)?;
    run(d, endpoint.to_string(), b.data, b.parameters).await
}

/// Sends documents through the Flow to any endpoint.
#[utoipa::path(post, path = "/post", tag = "requests", request_body = PostBody, responses(
    (status = 200, description = "The documents after every executor", body = Answer),
    (status = 400, description = describe("Bad request", &[GatewayCode::InvalidRequest]), body = ErrorBody),
    (status = 500, description = describe("An executor failed, named in `pea`", &[GatewayCode::ExecutorError, GatewayCode::ExecutorPanic]), body = ErrorBody),
    (status = 502, description = describe("A pea is down", &[GatewayCode::Unreachable]), body = ErrorBody),
    (status = 504, description = describe("No answer in time; silent peas are named", &[GatewayCode::Timeout]), body = ErrorBody)))]
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
            (status = 400, description = describe("Bad request", &[GatewayCode::InvalidRequest]), body = ErrorBody),
            (status = 500, description = describe("An executor failed, named in `pea`", &[GatewayCode::ExecutorError, GatewayCode::ExecutorPanic]), body = ErrorBody),
            (status = 502, description = describe("A pea is down", &[GatewayCode::Unreachable]), body = ErrorBody),
            (status = 504, description = describe("No answer in time; silent peas are named", &[GatewayCode::Timeout]), body = ErrorBody)))]
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
    (status = 503, description = describe("Not ready", &[GatewayCode::NotReady]), body = ErrorBody)))]
#[get("/ready")]
fn ready(d: &State<Arc<Dispatcher>>) -> Result<Json<Readiness>, Failure> {
    if d.is_ready() {
        Ok(Json(Readiness { ready: true }))
    } else {
        Err(error(GatewayCode::NotReady, "the Flow is starting or stopping"))
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

/// Prometheus metrics (text format 0.0.4): `jinad_gateway_requests_total{endpoint,status}`,
/// `jinad_gateway_request_duration_seconds{endpoint}`, `jinad_gateway_requests_in_flight`, and per
/// pea `jinad_pea_processed`, `jinad_pea_in_flight` and `jinad_pea_answering` (probed now). Endpoints other than
/// `/index`, `/search`, `/update`, `/delete` are counted as `other`.
#[utoipa::path(get, path = "/metrics", tag = "status", responses((status = 200, description = "The metrics", content_type = "text/plain", body = String)))]
#[get("/metrics")]
async fn metrics(d: &State<Arc<Dispatcher>>) -> Result<(rocket::http::ContentType, String), Failure> {
    let text = super::metrics::scrape(d).await.map_err(|e| error(GatewayCode::Internal, e))?;
    Ok((rocket::http::ContentType::new("text", "plain").with_params(("version", "0.0.4")), text))
}

/// The gateway's own OpenAPI document, for client generators pointed at a running Flow.
#[get("/openapi.json")]
fn openapi() -> (rocket::http::ContentType, String) {
    (rocket::http::ContentType::JSON, openapi_json())
}

#[catch(default)]
fn catch_all(status: Status, req: &Request<'_>) -> Failure {
    if let Some(allowed) = crate::http_methods::not_allowed(status, req) {
        let mut failure = error(GatewayCode::MethodNotAllowed, format!("this method is not allowed on {}; allowed: {}", req.uri().path(), allowed.join(", ")));
        failure.allow = Some(rocket::http::Header::new("Allow", allowed.join(", ")));
        return failure;
    }
    let code = match status.code {
        404 => GatewayCode::NotFound,
        405 => GatewayCode::MethodNotAllowed,
        413 => GatewayCode::PayloadTooLarge,
        400 | 422 => GatewayCode::InvalidRequest,
        _ => GatewayCode::Internal,
    };
    let mut failure = error(code, format!("{} {}: {}", req.method(), req.uri(), status.reason_lossy()));
    failure.inner.0 = status;
    failure
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "jinad gateway",
        description = "The HTTP gateway of a jinad Flow (`jinad flow FLOW.yml`). Every error body is \
                       `{\"code\", \"message\"}` with a stable snake_case `code`; `pea` names the pea that failed.",
        license(name = "Apache-2.0")
    ),
    paths(post, index, search, update, delete, ready, status, metrics),
    components(schemas(GatewayCode)),
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

/// The gateway's HTTP server on `host:port` (0 = any free port), HTTPS with `tls`.
pub fn rocket(dispatcher: Arc<Dispatcher>, host: IpAddr, port: u16, tls: &crate::tls::TlsArgs) -> Result<Rocket<Build>, String> {
    let figment = Figment::from(rocket::Config::default())
        .merge(("address", host))
        .merge(("port", port))
        .merge(("limits", Limits::default().limit("json", ByteUnit::Mebibyte(256))))
        .merge(("log_level", rocket::config::LogLevel::Off))
        .merge(("cli_colors", false))
        .merge(("ident", concat!("jinad-gateway/", env!("CARGO_PKG_VERSION"))));
    Ok(rocket::custom(tls.configure(figment)?)
        .manage(dispatcher)
        .mount("/", routes![post, index, search, update, delete, ready, status, metrics, openapi])
        .register("/", catchers![catch_all]))
}
