//! `/workspaces`: upload, list, inspect, update, delete, build logs.

use std::sync::Arc;
use std::time::Duration;

use rocket::form::{self, Form, FromForm, Strict};
use rocket::fs::TempFile;
use rocket::http::{ContentType, Status};
use rocket::response::stream::ByteStream;
use rocket::serde::json::Json;
use rocket::{delete, get, post, put, routes, Request, Route, State as Managed};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use utoipa::ToSchema;

use super::query::{single, strict_bool};
use super::Located;
use crate::daemon::Daemon;
use crate::error::{describe, ApiError, ApiResult, Code, ErrorBody};
use crate::ids::{Kind, ObjectId};
use crate::state::State;
use crate::store::WorkspaceRow;
use crate::workspace::jinad_file::JinadSettings;
use crate::workspace::upload::UploadedPart;
use crate::workspace::{self, UploadMode};

/// The logs route sends the file in pieces of at most this many bytes.
const LOG_CHUNK: usize = 64 * 1024;

pub fn routes() -> Vec<Route> {
    routes![create, list, get_one, update, remove, logs]
}

/// A workspace as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceView {
    /// `jworkspace-<uuid>`
    pub id: String,
    pub state: State,
    /// Set when `state` is FAILED: a stable snake_case reason (`build_failed`, `invalid_jinad`, …).
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The workspace's files, relative paths.
    pub files: Vec<String>,
    /// The `.jinad` settings of the last build.
    pub settings: Option<JinadSettings>,
    /// Docker image of the last successful build.
    pub image_id: Option<String>,
    pub image_tag: Option<String>,
    /// Docker network of the workspace (`jworkspace-<uuid>`).
    pub network_id: Option<String>,
    /// The `.jinad` `run` container: `container`, `state` (running, exited, restarting, missing),
    /// `exit_code`, and `ports` (container port → published `host:port`).
    #[schema(value_type = Option<Object>)]
    pub project: Option<serde_json::Value>,
    /// `sha256:…` of the workspace's files when its last build started (paths and contents; see
    /// `GET /workspaces?digest=`): a Flow elsewhere reuses a workspace whose digest matches its
    /// project instead of uploading it again.
    pub digest: Option<String>,
    /// Builds started so far.
    pub builds: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<WorkspaceRow> for WorkspaceView {
    fn from(row: WorkspaceRow) -> Self {
        WorkspaceView {
            files: row.file_list(),
            settings: row.settings.as_deref().and_then(|s| serde_json::from_str(s).ok()),
            project: row.project.as_deref().and_then(|s| serde_json::from_str(s).ok()),
            id: row.id,
            state: row.state,
            error_code: row.error_code,
            error_message: row.error_message,
            image_id: row.image_id,
            image_tag: row.image_tag,
            network_id: row.network_id,
            digest: row.digest,
            builds: row.builds,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// An id in the OpenAPI document: `<prefix>-<uuid>` (a bare uuid is accepted too, as in JinaD),
/// with the pattern the handlers accept, so generated clients and fuzzers know it.
macro_rules! id_schema {
    ($name:ident, $prefix:literal) => {
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^(", $prefix, "-)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")))
                    .description(Some(concat!("`", $prefix, "-<uuid>`; a bare uuid is accepted too")))
                    .into()
            }
        }

        impl ToSchema for $name {}
    };
}
pub(crate) use id_schema;

id_schema!(WorkspaceId, "jworkspace");

/// One uploaded file (any file; `.tar.gz`, `.tgz`, `.tar` and `.zip` archives are unpacked).
#[derive(ToSchema, Deserialize)]
#[schema(value_type = String, format = Binary)]
pub struct UploadedFile(#[allow(dead_code)] Vec<u8>);

/// The multipart body of an upload: the field `files`, once per file, and nothing else.
// `Deserialize` only so that `deny_unknown_fields` makes the schema say `additionalProperties:
// false`; the handlers read the body as a strict rocket form, which refuses other fields too.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadForm {
    /// Repeat the field once per file. A file name may contain sub-directories (`pkg/mod.py`).
    #[allow(dead_code)]
    #[schema(min_items = 1)]
    files: Vec<UploadedFile>,
}

#[derive(FromForm)]
pub struct Upload<'r> {
    files: Vec<TempFile<'r>>,
}

fn located(status: Status, row: WorkspaceRow) -> Located<WorkspaceView> {
    Located { status, location: format!("/workspaces/{}", row.id), body: row.into() }
}

/// What a bad upload answers with (400).
const UPLOAD_ERRORS: &[Code] = &[
    Code::BadRequest, Code::InvalidId, Code::NoFiles, Code::TooManyParts, Code::InvalidFilename, Code::InvalidArchive,
    Code::UnsafeArchivePath, Code::UnsafeArchiveLink, Code::UnsafeArchiveEntry, Code::ArchiveTooLarge,
];

/// A request whose declared `Content-Length` is within `--max-upload-size`; a larger one fails
/// with 413 (`upload_too_large`, from the catcher) before any of its body is read. A body sent
/// without a length is cut at the limit by rocket's form parsing instead.
pub struct WithinUploadLimit;

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for WithinUploadLimit {
    type Error = ();

    async fn from_request(request: &'r Request<'_>) -> rocket::request::Outcome<Self, ()> {
        let Some(daemon) = request.rocket().state::<Arc<Daemon>>() else {
            return rocket::request::Outcome::Error((Status::InternalServerError, ()));
        };
        let declared = request.headers().get_one("Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
        match declared {
            Some(length) if length > daemon.config.max_upload_size => rocket::request::Outcome::Error((Status::PayloadTooLarge, ())),
            _ => rocket::request::Outcome::Success(WithinUploadLimit),
        }
    }
}

fn parse_id(text: &str) -> ApiResult<ObjectId> {
    Ok(ObjectId::parse(Kind::Workspace, text)?)
}

/// Save the uploaded parts to disk (they are already streamed to temp files by rocket).
async fn received_parts(daemon: &Daemon, form: Result<Form<Strict<Upload<'_>>>, form::Errors<'_>>) -> ApiResult<(Vec<UploadedPart>, tempfile::TempDir)> {
    let upload = match form {
        Ok(form) => form.into_inner().into_inner(),
        Err(errors) if errors.status() == Status::PayloadTooLarge => {
            return Err(ApiError::new(
                Code::UploadTooLarge,
                format!("the upload is larger than the limit of {} bytes", daemon.config.max_upload_size),
            ))
        }
        // No `files` at all (maybe other fields instead): the actionable answer is `no_files`.
        Err(errors) if errors.iter().any(|e| matches!(e.kind, form::error::ErrorKind::Missing) && e.name.as_ref().is_none_or(|n| *n == "files")) => {
            return Err(ApiError::new(Code::NoFiles, "the upload has no files (send them in the repeated multipart field `files`, and no other field)"))
        }
        Err(errors) => return Err(ApiError::new(Code::BadRequest, format!("invalid multipart upload (only the repeated field `files` is taken): {errors}"))),
    };
    let raw = tempfile::Builder::new()
        .prefix("upload-")
        .tempdir_in(daemon.config.tmp_dir())
        .map_err(|e| ApiError::internal("upload temp dir", e))?;
    if upload.files.len() > daemon.config.max_upload_parts {
        return Err(ApiError::new(
            Code::TooManyParts,
            format!("the upload has {} parts; at most {} are accepted", upload.files.len(), daemon.config.max_upload_parts),
        ));
    }
    let mut parts = Vec::with_capacity(upload.files.len());
    for (index, mut file) in upload.files.into_iter().enumerate() {
        let name = file
            .raw_name()
            .map(|n| n.dangerous_unsafe_unsanitized_raw().as_str().to_string())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::new(Code::InvalidFilename, format!("part {} of `files` has no file name", index + 1)))?;
        let path = raw.path().join(index.to_string());
        file.move_copy_to(&path).await.map_err(|e| ApiError::internal("saving the upload", e))?;
        parts.push(UploadedPart { name, path });
    }
    Ok((parts, raw))
}

/// Upload a project. Creates a workspace (201, PENDING) and queues its build; with `?id=` of an
/// existing workspace, adds the files to it and rebuilds (200).
#[utoipa::path(post, path = "/workspaces", tag = "workspaces", operation_id = "create_workspace",
    params(("id" = Option<WorkspaceId>, Query, description = "Add the files to this workspace (created with this id if it does not exist)")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Workspace created; its build is queued", body = WorkspaceView),
        (status = 200, description = "Files added to the existing workspace; its rebuild is queued", body = WorkspaceView),
        (status = 400, description = describe("Bad upload", UPLOAD_ERRORS), body = ErrorBody),
        (status = 409, description = describe("A build runs, or the workspace is being deleted", &[Code::WorkspaceBusy, Code::InvalidStateTransition]), body = ErrorBody),
        (status = 413, description = describe("Too large", &[Code::UploadTooLarge]), body = ErrorBody)))]
// `id` is read from the query by `single` (strictly: once at most), not by rocket.
#[post("/workspaces", data = "<form>")]
pub async fn create(
    daemon: &Managed<Arc<Daemon>>,
    uri: &rocket::http::uri::Origin<'_>,
    _size: WithinUploadLimit,
    form: Result<Form<Strict<Upload<'_>>>, form::Errors<'_>>,
) -> ApiResult<Located<WorkspaceView>> {
    let id = single(uri, "id")?.as_deref().map(parse_id).transpose()?;
    let (parts, _raw) = received_parts(daemon, form).await?;
    let (row, created) = workspace::upload(daemon, id, parts, UploadMode::CreateOrUpdate).await?;
    daemon.wake.notify_one();
    Ok(located(if created { Status::Created } else { Status::Ok }, row))
}

/// Add or replace files of a workspace and rebuild it.
#[utoipa::path(put, path = "/workspaces/{id}", tag = "workspaces", operation_id = "update_workspace",
    params(("id" = WorkspaceId, Path, description = "Workspace id")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Files stored; the rebuild is queued", body = WorkspaceView),
        (status = 400, description = describe("Bad upload", UPLOAD_ERRORS), body = ErrorBody),
        (status = 404, description = describe("No such workspace", &[Code::WorkspaceNotFound]), body = ErrorBody),
        (status = 409, description = describe("A build runs, or the workspace is being deleted", &[Code::WorkspaceBusy, Code::InvalidStateTransition]), body = ErrorBody),
        (status = 413, description = describe("Too large", &[Code::UploadTooLarge]), body = ErrorBody)))]
#[put("/workspaces/<id>", data = "<form>")]
pub async fn update(
    daemon: &Managed<Arc<Daemon>>,
    id: &str,
    _size: WithinUploadLimit,
    form: Result<Form<Strict<Upload<'_>>>, form::Errors<'_>>,
) -> ApiResult<Located<WorkspaceView>> {
    let id = parse_id(id)?;
    let (parts, _raw) = received_parts(daemon, form).await?;
    let (row, _) = workspace::upload(daemon, Some(id), parts, UploadMode::UpdateOnly).await?;
    daemon.wake.notify_one();
    Ok(located(Status::Ok, row))
}

/// Every workspace, oldest first; with `digest`, only those whose files have that digest.
#[utoipa::path(get, path = "/workspaces", tag = "workspaces", operation_id = "list_workspaces",
    params(("digest" = Option<String>, Query, description = "Only workspaces whose `digest` is this (`sha256:…`)")),
    responses((status = 200, description = "The workspaces", body = Vec<WorkspaceView>)))]
#[get("/workspaces?<digest>")]
pub async fn list(daemon: &Managed<Arc<Daemon>>, digest: Option<&str>) -> ApiResult<Json<Vec<WorkspaceView>>> {
    let rows = daemon.store.list_workspaces().await?;
    let wanted = |row: &WorkspaceRow| digest.is_none_or(|d| row.digest.as_deref() == Some(d));
    Ok(Json(rows.into_iter().filter(wanted).map(Into::into).collect()))
}

/// One workspace: state, reason, image, network, files, settings, times.
#[utoipa::path(get, path = "/workspaces/{id}", tag = "workspaces", operation_id = "get_workspace",
    params(("id" = WorkspaceId, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "The workspace", body = WorkspaceView),
        (status = 400, description = describe("Bad id", &[Code::InvalidId]), body = ErrorBody),
        (status = 404, description = describe("No such workspace", &[Code::WorkspaceNotFound]), body = ErrorBody)))]
#[get("/workspaces/<id>")]
pub async fn get_one(daemon: &Managed<Arc<Daemon>>, id: &str) -> ApiResult<Json<WorkspaceView>> {
    let id = parse_id(id)?;
    Ok(Json(daemon.store.get_workspace(&id).await?.into()))
}

/// Delete a workspace: its containers, network, images, files and row (202, DELETING; the row
/// disappears when everything is gone). Objects of other workspaces are never touched.
#[utoipa::path(delete, path = "/workspaces/{id}", tag = "workspaces", operation_id = "delete_workspace",
    params(("id" = WorkspaceId, Path, description = "Workspace id")),
    responses(
        (status = 202, description = "Deletion queued", body = WorkspaceView),
        (status = 400, description = describe("Bad id", &[Code::InvalidId]), body = ErrorBody),
        (status = 404, description = describe("No such workspace", &[Code::WorkspaceNotFound]), body = ErrorBody)))]
#[delete("/workspaces/<id>")]
pub async fn remove(daemon: &Managed<Arc<Daemon>>, id: &str) -> ApiResult<Located<WorkspaceView>> {
    let id = parse_id(id)?;
    let row = workspace::delete(daemon, &id).await?;
    daemon.wake.notify_one();
    Ok(located(Status::Accepted, row))
}

/// The build log (plain text). With `follow=true` the response stays open and streams new lines
/// until the build ends.
#[utoipa::path(get, path = "/workspaces/{id}/logs", tag = "workspaces", operation_id = "get_workspace_logs",
    params(
        ("id" = WorkspaceId, Path, description = "Workspace id"),
        ("follow" = Option<bool>, Query, description = "Keep the response open and stream the log while the build runs")),
    responses(
        (status = 200, description = "The build log", content_type = "text/plain", body = String),
        (status = 400, description = describe("Bad id", &[Code::InvalidId]), body = ErrorBody),
        (status = 404, description = describe("No such workspace", &[Code::WorkspaceNotFound]), body = ErrorBody)))]
// `follow` is read from the query by `strict_bool`, not by rocket.
#[get("/workspaces/<id>/logs")]
pub async fn logs(
    daemon: &Managed<Arc<Daemon>>,
    id: &str,
    uri: &rocket::http::uri::Origin<'_>,
) -> ApiResult<(ContentType, ByteStream![Vec<u8>])> {
    let id = parse_id(id)?;
    let follow = strict_bool(uri, "follow")?;
    daemon.store.get_workspace(&id).await?;
    let daemon: Arc<Daemon> = daemon.inner().clone();
    let follow = follow.unwrap_or(false);
    let path = crate::build_log::path(&daemon.config.logs_dir(), &id);
    let stream = ByteStream! {
        // Reads in chunks of at most LOG_CHUNK bytes; a rebuild truncates the file: start over.
        let mut offset = 0u64;
        let mut last_round = false;
        loop {
            if let Ok(mut file) = tokio::fs::File::open(&path).await {
                let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
                if len < offset {
                    offset = 0;
                }
                if file.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
                    let mut file = file.take(len - offset);
                    loop {
                        let mut chunk = vec![0u8; LOG_CHUNK];
                        match file.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                chunk.truncate(n);
                                offset += n as u64;
                                yield chunk;
                            }
                        }
                    }
                }
            }
            if !follow || last_round {
                break;
            }
            let building = matches!(daemon.store.get_workspace(&id).await, Ok(row) if row.state == State::Pending);
            if !building {
                // One last read catches lines written between the read and the state change.
                last_round = true;
                continue;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    Ok((ContentType::Plain, stream))
}
