//! The HTTP layer: rocket routes that translate between HTTP and the domain, one module per
//! resource. Handlers never wait on Docker; they write rows and wake the workers.

pub mod auth;
pub mod deployments;
pub mod events;
pub mod export;
pub mod gc;
pub mod openapi;
pub mod query;
pub mod status;
pub mod workspaces;

use std::sync::Arc;

use rocket::data::{ByteUnit, Limits};
use rocket::figment::Figment;
use rocket::http::Status;
use rocket::{catch, catchers, Build, Request, Rocket};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::daemon::Daemon;
use crate::error::{ApiError, Code};

/// A JSON body with a status and a `Location` header (201 on create, 202 on delete).
pub struct Located<T> {
    pub status: rocket::http::Status,
    pub location: String,
    pub body: T,
}

impl<'r, T: serde::Serialize> rocket::response::Responder<'r, 'static> for Located<T> {
    fn respond_to(self, request: &'r Request<'_>) -> rocket::response::Result<'static> {
        let mut response = rocket::serde::json::Json(self.body).respond_to(request)?;
        response.set_status(self.status);
        response.set_header(rocket::http::Header::new("Location", self.location));
        Ok(response)
    }
}

/// The host a request reached the daemon at (its `Host` header without the port), for the
/// addresses the daemon reports ([`crate::config::Config::advertised_host`]).
pub struct ReachedAt(pub Option<String>);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for ReachedAt {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        let host = request.host().map(|h| h.domain().as_str().trim_start_matches('[').trim_end_matches(']').to_string());
        // Only a plain host name or address is ever echoed back into a reported address.
        let plain = host.filter(|h| !h.is_empty() && h.len() <= 253 && h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':')));
        rocket::request::Outcome::Success(ReachedAt(plain))
    }
}

/// The rocket application for a daemon, on the configured address. `token`: the API token, if
/// the daemon has one (every route but liveness and readiness then needs it).
pub fn rocket(daemon: Arc<Daemon>, token: Option<&str>) -> Result<Rocket<Build>, String> {
    let config = &daemon.config;
    let max = ByteUnit::from(config.max_upload_size);
    let figment = Figment::from(rocket::Config::default())
        .merge(("address", config.host))
        .merge(("port", config.port))
        .merge(("temp_dir", config.tmp_dir()))
        .merge(("limits", Limits::default().limit("data-form", max).limit("file", max).limit("json", ByteUnit::Mebibyte(4))))
        .merge(("log_level", rocket::config::LogLevel::Critical))
        .merge(("cli_colors", false))
        .merge(("ident", concat!("jinad/", env!("CARGO_PKG_VERSION"))));
    let rocket = rocket::custom(config.tls().configure(figment)?);
    let rocket = match token {
        Some(token) => rocket.attach(auth::BearerAuth::new(token)).mount("/", auth::routes()),
        None => rocket,
    };
    Ok(rocket
        .manage(daemon)
        .attach(crate::metrics::HttpMetrics)
        .mount("/", status::routes())
        .mount("/", workspaces::routes())
        .mount("/", deployments::routes())
        .mount("/", export::routes())
        .mount("/", events::routes())
        .mount("/", gc::routes())
        .mount("/", SwaggerUi::new("/docs/<_..>").url("/openapi.json", openapi::ApiDoc::openapi()))
        .register("/", catchers![default_catcher]))
}

/// Errors rocket produces itself (unknown route, bad form, too large) get the same body as ours.
/// A path that exists with other methods answers 405 with `Allow`, not 404.
#[catch(default)]
fn default_catcher(status: Status, request: &Request<'_>) -> ApiError {
    if let Some(allowed) = crate::http_methods::not_allowed(status, request) {
        let mut error = ApiError::new(
            Code::MethodNotAllowed,
            format!("this method is not allowed on {}; allowed: {}", request.uri().path(), allowed.join(", ")),
        );
        error.allow = Some(allowed.join(", "));
        return error;
    }
    let code = match status.code {
        404 => Code::NotFound,
        405 => Code::MethodNotAllowed,
        413 => Code::UploadTooLarge,
        422 => Code::UnprocessableEntity,
        500..=599 => Code::Internal,
        _ => Code::BadRequest,
    };
    let what = match code {
        Code::NotFound => format!("no route for {} {}", request.method(), request.uri().path()),
        _ => format!("{} {}: {}", request.method(), request.uri().path(), status.reason_lossy()),
    };
    ApiError::new(code, what)
}

