//! `POST /gc`: collect the build cache now (everything evictable), and say what it freed.

use std::sync::Arc;
use std::time::Duration;

use rocket::serde::json::Json;
use rocket::{post, routes, Route, State as Managed};

use crate::build_cache::{self, GcError, GcReport};
use crate::daemon::Daemon;
use crate::error::{describe, ApiError, ApiResult, Code, ErrorBody};

pub fn routes() -> Vec<Route> {
    routes![collect]
}

/// How long `POST /gc` waits for running builds to end.
const WAIT_FOR_BUILDS: Duration = Duration::from_secs(30);

impl From<GcError> for ApiError {
    fn from(e: GcError) -> Self {
        match e {
            GcError::BuildsRunning => ApiError::new(Code::BuildsRunning, e.to_string()),
            GcError::Docker(e) => ApiError::new(Code::EngineFailed, e.to_string()),
            GcError::Store(e) => e.into(),
        }
    }
}

/// Removes every evictable image of the build cache — runtime images of other jinad binaries,
/// layers nothing uses — and the step containers killed builds left, least recently used first;
/// never an image a workspace, a container or a running build uses. Waits up to 30 s for running
/// builds of this daemon to end. (`--cache-max-size` does the same on its own, down to the limit.)
#[utoipa::path(post, path = "/gc", tag = "status", operation_id = "collect_build_cache",
    responses(
        (status = 200, description = "What was removed, and the cache's size before and after", body = GcReport),
        (status = 409, description = describe("Builds kept running", &[Code::BuildsRunning]), body = ErrorBody),
        (status = 502, description = describe("The engine failed", &[Code::EngineFailed]), body = ErrorBody)))]
#[post("/gc")]
pub async fn collect(daemon: &Managed<Arc<Daemon>>) -> ApiResult<Json<GcReport>> {
    Ok(Json(build_cache::collect(daemon, None, Some(WAIT_FOR_BUILDS)).await?))
}
