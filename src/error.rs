//! The API's error type: every error body is `{"code": "...", "message": "..."}` with a stable,
//! snake_case `code`. The table of codes lives in [`Code`].

use rocket::http::{ContentType, Status};
use rocket::response::{self, Responder};
use rocket::Request;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::InvalidId;
use crate::store::StoreError;

/// Every error code the API can answer with, and its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BadRequest,
    InvalidId,
    NotFound,
    WorkspaceNotFound,
    NoFiles,
    InvalidFilename,
    UploadTooLarge,
    ArchiveTooLarge,
    InvalidArchive,
    UnsafeArchivePath,
    UnsafeArchiveLink,
    UnsafeArchiveEntry,
    WorkspaceBusy,
    InvalidStateTransition,
    UnprocessableEntity,
    DockerUnavailable,
    Internal,
}

impl Code {
    pub fn status(self) -> Status {
        use Code::*;
        match self {
            BadRequest | InvalidId | NoFiles | InvalidFilename | ArchiveTooLarge | InvalidArchive
            | UnsafeArchivePath | UnsafeArchiveLink | UnsafeArchiveEntry => Status::BadRequest,
            NotFound | WorkspaceNotFound => Status::NotFound,
            UploadTooLarge => Status::PayloadTooLarge,
            WorkspaceBusy | InvalidStateTransition => Status::Conflict,
            UnprocessableEntity => Status::UnprocessableEntity,
            DockerUnavailable => Status::ServiceUnavailable,
            Internal => Status::InternalServerError,
        }
    }

    pub fn as_str(self) -> &'static str {
        use Code::*;
        match self {
            BadRequest => "bad_request",
            InvalidId => "invalid_id",
            NotFound => "not_found",
            WorkspaceNotFound => "workspace_not_found",
            NoFiles => "no_files",
            InvalidFilename => "invalid_filename",
            UploadTooLarge => "upload_too_large",
            ArchiveTooLarge => "archive_too_large",
            InvalidArchive => "invalid_archive",
            UnsafeArchivePath => "unsafe_archive_path",
            UnsafeArchiveLink => "unsafe_archive_link",
            UnsafeArchiveEntry => "unsafe_archive_entry",
            WorkspaceBusy => "workspace_busy",
            InvalidStateTransition => "invalid_state_transition",
            UnprocessableEntity => "unprocessable_entity",
            DockerUnavailable => "docker_unavailable",
            Internal => "internal",
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[schema(example = json!({"code": "workspace_not_found", "message": "jworkspace-6b3f0b0e-6a57-4f6e-a0f5-0b8e6b1d2c3a not found"}))]
pub struct ErrorBody {
    /// Stable, machine-readable, snake_case.
    pub code: String,
    /// For humans; may change between versions.
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!("{context}: {error}");
        ApiError::new(Code::Internal, format!("{context}: internal error"))
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code.as_str().into(), message: self.message.clone() }
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
