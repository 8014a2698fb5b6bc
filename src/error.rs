//! The API's error type: every error body is `{"code": "...", "message": "..."}` with a stable,
//! snake_case `code`. The table of codes lives in [`Code`].

use rocket::http::{ContentType, Status};
use rocket::response::{self, Responder};
use rocket::Request;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::InvalidId;
use crate::store::StoreError;

/// A table of stable error codes. Each row is a variant, its snake_case name, the HTTP status it
/// answers with (`None` for codes that only ever appear on a FAILED row) and its meaning. The
/// OpenAPI descriptions ([`describe`]), the error body's `code` enum and README's tables all come
/// from such a table, so they cannot drift from the code. Used for the daemon ([`Code`]) and the
/// Flow gateway (`runtime::gateway::GatewayCode`).
macro_rules! error_codes {
    ($(#[$meta:meta])* pub enum $name:ident { $( $variant:ident = $text:literal, $status:expr, $doc:literal; )* }) => {
        $(#[$meta])*
        // The names are the variants in snake_case (a test checks they equal the table's text:
        // utoipa does not see a `rename` that comes through a macro argument).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( #[doc = $doc] $variant, )*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
        }

        impl $crate::error::StableCode for $name {
            fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
            fn http_status(self) -> Option<u16> {
                match self { $($name::$variant => $status,)* }
            }
            fn meaning(self) -> &'static str {
                match self { $($name::$variant => $doc,)* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::error::StableCode::as_str(*self))
            }
        }
    };
}
pub(crate) use error_codes;

/// What every table of error codes offers.
pub trait StableCode: Copy + 'static {
    fn as_str(self) -> &'static str;
    /// The HTTP status of an error response with this code; `None` for row-only codes.
    fn http_status(self) -> Option<u16>;
    /// What the code means.
    fn meaning(self) -> &'static str;
}

/// An OpenAPI response description: `summary` and the codes it may carry, from the table.
pub fn describe<C: StableCode>(summary: &str, codes: &[C]) -> String {
    let list: Vec<String> = codes.iter().map(|c| format!("`{}`", c.as_str())).collect();
    format!("{summary}: {}", list.join(", "))
}

/// A README table of `codes` (a test checks README holds exactly this).
pub fn markdown_table<C: StableCode>(codes: &[C]) -> String {
    let mut out = String::from("| code | status | meaning |\n|---|---|---|\n");
    for code in codes {
        let status = code.http_status().map_or("on a FAILED row".to_string(), |s| s.to_string());
        out.push_str(&format!("| `{}` | {status} | {} |\n", code.as_str(), code.meaning()));
    }
    out
}

error_codes! {
    /// Every error code of the daemon: of an error response, or of a FAILED row (`error_code`).
    pub enum Code {
    BadRequest = "bad_request", Some(400), "The request is malformed (bad multipart body, bad query).";
    InvalidId = "invalid_id", Some(400), "The id is not `<kind>-<uuid>` (or a bare uuid).";
    NoFiles = "no_files", Some(400), "The upload has no part in the `files` field.";
    TooManyParts = "too_many_parts", Some(400), "The upload has more parts than `--max-upload-parts`.";
    InvalidFilename = "invalid_filename", Some(400), "A file name is empty, absolute, has `..`, or clashes with a directory.";
    InvalidArchive = "invalid_archive", Some(400), "An archive cannot be read.";
    UnsafeArchivePath = "unsafe_archive_path", Some(400), "An archive entry is absolute or has `..`.";
    UnsafeArchiveLink = "unsafe_archive_link", Some(400), "A symlink points outside the workspace, dangles, or a path goes through one.";
    UnsafeArchiveEntry = "unsafe_archive_entry", Some(400), "An archive holds a device file, FIFO, socket or sparse file.";
    ArchiveTooLarge = "archive_too_large", Some(400), "The upload unpacks to more bytes or files than allowed.";
    Unauthorized = "unauthorized", Some(401), "The daemon has a token (`--token-file`) and the request has no `Authorization: Bearer <token>` with it.";
    NotFound = "not_found", Some(404), "No such route.";
    InvalidFlow = "invalid_flow", Some(400), "The Flow YAML cannot run (missing, outside the workspace, bad YAML, unknown executor, unset `${{ ENV.X }}`); the message names the line or field.";
    InvalidPod = "invalid_pod", Some(400), "A pod's or pea's arguments are wrong (executor, `with`, replicas, shards, outputs, limits, restart policy); the message says which.";
    InvalidReference = "invalid_reference", Some(400), "The image reference is not `REGISTRY[:PORT]/NAME[:TAG]`.";
    InvalidExport = "invalid_export", Some(400), "The flow cannot be exported (a `host:` or `docker://` pod, names that are not DNS names, a bad `format`, `namespace` or `port`); the message says which.";
    WorkspaceNotFound = "workspace_not_found", Some(404), "No workspace with this id.";
    DeploymentNotFound = "deployment_not_found", Some(404), "No flow, pod or pea with this id.";
    MethodNotAllowed = "method_not_allowed", Some(405), "The path exists but not with this method (see `Allow`).";
    WorkspaceBusy = "workspace_busy", Some(409), "A build of this workspace is running.";
    InvalidStateTransition = "invalid_state_transition", Some(409), "The request does not apply in the row's state.";
    WorkspaceNotActive = "workspace_not_active", Some(409), "The workspace is FAILED or being deleted: nothing starts in it.";
    NoImage = "no_image", Some(409), "The workspace has no image yet (PENDING), or will have none (FAILED, being deleted).";
    PodNameTaken = "pod_name_taken", Some(409), "A live pod or pea of this workspace already has this name (and, for peas, the same shard and replica): the two would share one data directory.";
    NoLease = "no_lease", Some(409), "The pod or pea was created without `lease_seconds`: there is no lease to renew.";
    BuildsRunning = "builds_running", Some(409), "`POST /gc` waited 30 s for running builds to end; the cache is collected after them (or try again).";
    UploadTooLarge = "upload_too_large", Some(413), "The request body is larger than `--max-upload-size`.";
    UnprocessableEntity = "unprocessable_entity", Some(422), "The body is well-formed but not what the route takes.";
    Internal = "internal", Some(500), "A bug or an unexpected local error; details are in the daemon's log.";
    EngineFailed = "engine_failed", Some(502), "The Docker engine did not answer, or refused what the request needs; the message is its answer.";
    PushFailed = "push_failed", Some(502), "The engine could not push the image (registry unreachable, refused it, or needs a login); the message is its answer.";
    InvalidJinad = "invalid_jinad", None, "Build: the `.jinad` file has an unknown key or a bad value.";
    InvalidRequirements = "invalid_requirements", None, "Build: `requirements.txt` names a local file that is missing or outside the workspace.";
    DockerfileNotFound = "dockerfile_not_found", None, "Build: the Dockerfile `.jinad` names is missing or outside the workspace.";
    BaseImageNotFound = "base_image_not_found", None, "Build: the base image is not on the engine (no registry is used).";
    BuildFailed = "build_failed", None, "Build: a Dockerfile step failed; `error_message` is the engine's error, the log has the rest.";
    NetworkPoolExhausted = "network_pool_exhausted", None, "Build: every subnet of `--network-pool` is in use.";
    DockerError = "docker_error", None, "The engine refused a request; `error_message` is its answer.";
    WorkspaceFailed = "workspace_failed", None, "Start: the workspace's build failed, or it went away, before the start.";
    ContainerStartFailed = "container_start_failed", None, "Start: the engine refused to create or start a container; `error_message` is its answer.";
    ContainerExited = "container_exited", None, "A container exited; `error_message` names the pea, the exit code and its last log lines.";
    ContainerMissing = "container_missing", None, "A container of an ACTIVE row was removed behind the daemon's back.";
    StartTimeout = "start_timeout", None, "Start: not ready within `--start-timeout`; `error_message` has the last log lines.";
    DeleteFailed = "delete_failed", None, "Delete: something the workspace owns cannot be removed; `error_message` says what.";
    }
}

impl Code {
    pub fn as_str(self) -> &'static str {
        StableCode::as_str(self)
    }

    pub fn status(self) -> Status {
        Status::from_code(self.http_status().unwrap_or(500)).unwrap_or(Status::InternalServerError)
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[schema(example = json!({"code": "workspace_not_found", "message": "jworkspace-6b3f0b0e-6a57-4f6e-a0f5-0b8e6b1d2c3a not found"}))]
pub struct ErrorBody {
    /// Stable, machine-readable, snake_case.
    pub code: Code,
    /// For humans; may change between versions.
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// The `Allow` header of a 405.
    pub allow: Option<String>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), allow: None }
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!("{context}: {error}");
        ApiError::new(Code::Internal, format!("{context}: internal error"))
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code, message: self.message.clone() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl From<InvalidId> for ApiError {
    fn from(e: InvalidId) -> Self {
        ApiError::new(Code::InvalidId, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) if id.kind_prefix() == "jworkspace" => {
                ApiError::new(Code::WorkspaceNotFound, format!("{id} not found"))
            }
            StoreError::NotFound(id) if matches!(id.kind_prefix(), "jflow" | "jpod" | "jpea") => {
                ApiError::new(Code::DeploymentNotFound, format!("{id} not found"))
            }
            StoreError::NotFound(id) => ApiError::new(Code::NotFound, format!("{id} not found")),
            StoreError::Conflict { id, actual, .. } => ApiError::new(
                Code::InvalidStateTransition,
                format!("{id} is {actual}; the request does not apply in that state"),
            ),
            StoreError::IllegalTransition { id, from, to } => {
                ApiError::new(Code::InvalidStateTransition, format!("{id}: cannot go from {from} to {to}"))
            }
            StoreError::AlreadyExists(id) => {
                ApiError::new(Code::InvalidStateTransition, format!("{id} already exists"))
            }
            other => ApiError::internal("store", other),
        }
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let json = serde_json::to_string(&self.body()).map_err(|_| Status::InternalServerError)?;
        let mut response = (ContentType::JSON, json).respond_to(request)?;
        response.set_status(self.code.status());
        if let Some(allow) = self.allow {
            response.set_header(rocket::http::Header::new("Allow", allow));
        }
        if self.code == Code::Unauthorized {
            response.set_header(rocket::http::Header::new("WWW-Authenticate", "Bearer realm=\"jinad\""));
        }
        Ok(response)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<crate::workspace::WorkspaceError> for ApiError {
    fn from(e: crate::workspace::WorkspaceError) -> Self {
        use crate::workspace::archive::UnpackError;
        use crate::workspace::upload::UploadError;
        use crate::workspace::WorkspaceError as W;
        let message = e.to_string();
        let code = match e {
            W::Busy(_) => Code::WorkspaceBusy,
            W::Store(store) => return store.into(),
            W::Io(io) => return ApiError::internal("workspace files", io),
            W::Upload(UploadError::NoFiles) => Code::NoFiles,
            W::Upload(UploadError::InvalidFilename(_) | UploadError::Clash { .. }) => Code::InvalidFilename,
            W::Upload(UploadError::BadLink { .. } | UploadError::ThroughLink { .. }) => Code::UnsafeArchiveLink,
            W::Upload(UploadError::Unpack(unpack)) => match unpack {
                UnpackError::UnsafePath { .. } => Code::UnsafeArchivePath,
                UnpackError::UnsafeLink { .. } => Code::UnsafeArchiveLink,
                UnpackError::UnsafeEntry { .. } => Code::UnsafeArchiveEntry,
                UnpackError::TooLarge { .. } | UnpackError::TooManyFiles { .. } => Code::ArchiveTooLarge,
                UnpackError::Invalid { .. } => Code::InvalidArchive,
                UnpackError::Io(io) => return ApiError::internal("unpacking the upload", io),
            },
        };
        ApiError::new(code, message)
    }
}
