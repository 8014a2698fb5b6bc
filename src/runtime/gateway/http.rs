//! The gateway's HTTP API:
//! - `POST /post` `{"endpoint": "/index", "data": [docs], "parameters": {}}` (`execEndpoint` accepted);
//! - `POST /index`, `/search`, `/update`, `/delete` `{"data", "parameters"}`;
//! - `GET /ready` (200 once every pea answered, else 503), `GET /status`.
//!
//! Answers: 200 `{"request_id", "endpoint", "data", "routes"}`; errors `{"code", "message", "pea"?,
//! "request_id"?}` with 400 `invalid_request`, 404 `not_found`, 500 `executor_error`/`executor_panic`,
//! 502 `unreachable`, 503 `not_ready`, 504 `timeout`.

use std::net::IpAddr;
use std::sync::Arc;

use rocket::data::{ByteUnit, Limits};
use rocket::figment::Figment;
use rocket::http::Status;
use rocket::response::status::Custom;
use rocket::serde::json::Json;
use rocket::{catch, catchers, get, post, routes, Build, Request, Rocket, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{Dispatcher, GatewayError};
use crate::runtime::document::Document;

type Reply = Result<Json<Answer>, Custom<Json<Value>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    #[serde(alias = "execEndpoint", alias = "exec_endpoint")]
    endpoint: String,
    #[serde(default)]
    data: Vec<Document>,
    #[serde(default)]
    parameters: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CrudBody {
    #[serde(default)]
    data: Vec<Document>,
    #[serde(default)]
    parameters: Map<String, Value>,
}

#[derive(Debug, Serialize)]
struct Answer {
    request_id: String,
    endpoint: String,
    data: Vec<Document>,
    routes: Vec<String>,
}

fn error(status: Status, code: &str, message: impl Into<String>) -> Custom<Json<Value>> {
    Custom(status, Json(json!({"code": code, "message": message.into()})))
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
            Err(Custom(status, Json(json!({"code": code, "message": message, "pea": pea, "request_id": request_id}))))
        }
        Err(GatewayError::Timeout { request_id, silent, message }) => Err(Custom(
            Status::GatewayTimeout,
            Json(json!({"code": "timeout", "message": message, "request_id": request_id, "not_answering": silent})),
        )),
    }
}

fn body<T>(parsed: Result<Json<T>, rocket::serde::json::Error<'_>>) -> Result<T, Custom<Json<Value>>> {
    parsed.map(Json::into_inner).map_err(|e| {
        let message = match e {
            rocket::serde::json::Error::Io(e) => format!("cannot read the body: {e}"),
            rocket::serde::json::Error::Parse(_, e) => format!("bad JSON body: {e}"),
        };
        error(Status::BadRequest, "invalid_request", message)
    })
}

#[post("/post", data = "<parsed>")]
async fn post(d: &State<Arc<Dispatcher>>, parsed: Result<Json<PostBody>, rocket::serde::json::Error<'_>>) -> Reply {
    let b = body(parsed)?;
    run(d, b.endpoint, b.data, b.parameters).await
}

#[post("/<endpoint>", data = "<parsed>", rank = 2)]
async fn crud(d: &State<Arc<Dispatcher>>, endpoint: &str, parsed: Result<Json<CrudBody>, rocket::serde::json::Error<'_>>) -> Reply {
    if !matches!(endpoint, "index" | "search" | "update" | "delete") {
        return Err(error(Status::NotFound, "not_found", format!("no route POST /{endpoint}; use POST /post for custom endpoints")));
    }
    let b = body(parsed)?;
    run(d, format!("/{endpoint}"), b.data, b.parameters).await
}

#[get("/ready")]
fn ready(d: &State<Arc<Dispatcher>>) -> Custom<Json<Value>> {
    if d.is_ready() {
        Custom(Status::Ok, Json(json!({"ready": true})))
    } else {
        Custom(Status::ServiceUnavailable, Json(json!({"ready": false, "code": "not_ready", "message": "the Flow is starting or stopping"})))
    }
}

#[get("/status")]
fn status(d: &State<Arc<Dispatcher>>) -> Json<Value> {
    Json(json!({
        "ready": d.is_ready(),
        "version": env!("CARGO_PKG_VERSION"),
        "pending": d.pending(),
        "peas": d.pea_names(),
    }))
}

#[catch(default)]
fn catch_all(status: Status, req: &Request<'_>) -> Json<Value> {
    let code = match status.code {
        404 => "not_found",
        413 => "payload_too_large",
        400 | 422 => "invalid_request",
        _ => "internal",
    };
    Json(json!({"code": code, "message": format!("{} {}: {}", req.method(), req.uri(), status.reason_lossy())}))
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
        .mount("/", routes![post, crud, ready, status])
        .register("/", catchers![catch_all])
}
