//! Workspaces: the files a user uploads, and the operations the API offers on them. The build
//! itself is background work (`worker::build`); these functions only stage files and queue rows.

pub mod archive;
pub mod context;
pub mod digest;
pub mod push;
pub mod dockerfile;
pub mod jinad_file;
pub mod paths;
pub mod requirements;
pub mod upload;

use std::path::PathBuf;

use crate::daemon::Daemon;
use crate::ids::{Kind, ObjectId};
use crate::state::State;
use crate::store::{StoreError, WorkspaceChange, WorkspaceRow};
use upload::{Limits, UploadError, UploadedPart};

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("{0} is being built; send the update when its build has ended")]
    Busy(ObjectId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
}

fn io(context: &str) -> impl Fn(std::io::Error) -> WorkspaceError + '_ {
    move |e| WorkspaceError::Io(format!("{context}: {e}"))
}

/// How long an upload waits for a row someone else is acting on before it answers `workspace_busy`.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

pub fn dir(daemon: &Daemon, id: &ObjectId) -> PathBuf {
    daemon.config.workspaces_dir().join(id.as_str())
}

fn limits(daemon: &Daemon) -> Limits {
    Limits {
        max_unpacked_bytes: daemon.config.max_unpacked_size,
        max_unpacked_files: daemon.config.max_unpacked_files,
    }
}

/// Whether an upload may create the workspace or must find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// `POST /workspaces[?id=]`: create, or add to the workspace if the id exists.
    CreateOrUpdate,
    /// `PUT /workspaces/{id}`: the workspace must exist.
    UpdateOnly,
}

/// Stage the upload, then create the workspace (new id) or merge the files into it (existing id)
/// and queue a build. Returns the row and whether it was created.
pub async fn upload(
    daemon: &Daemon,
    id: Option<ObjectId>,
    parts: Vec<UploadedPart>,
    mode: UploadMode,
) -> Result<(WorkspaceRow, bool), WorkspaceError> {
    if let (UploadMode::UpdateOnly, Some(id)) = (mode, &id) {
        daemon.store.get_workspace(id).await?;
    }
    let tmp = daemon.config.tmp_dir();
    let limits = limits(daemon);
    let staged = tokio::task::spawn_blocking(move || upload::stage(&parts, &tmp, limits))
        .await
        .map_err(|e| WorkspaceError::Io(e.to_string()))??;

    let id = id.unwrap_or_else(|| ObjectId::mint(Kind::Workspace));
    let dest = dir(daemon, &id);
    // The row's lock: no worker, reconciliation or other upload acts on it meanwhile. A build
    // holds it for its whole length, so waiting long means "busy".
    let Some(_row) = daemon.row_locks.lock_within(id.as_str(), LOCK_WAIT).await else {
        return Err(WorkspaceError::Busy(id));
    };
    let existing = match daemon.store.get_workspace(&id).await {
        Ok(row) => Some(row),
        Err(StoreError::NotFound(_)) if mode == UploadMode::CreateOrUpdate => None,
        Err(e) => return Err(e.into()),
    };
    match existing {
        None => {
            staged.check_new()?;
            let files = staged.files().to_vec();
            let moved_dest = dest.clone();
            tokio::task::spawn_blocking(move || staged.create(&moved_dest))
                .await
                .map_err(|e| WorkspaceError::Io(e.to_string()))?
                .map_err(io("cannot store the workspace files"))?;
            match daemon.store.insert_workspace(&id, &files).await {
                Ok(row) => Ok((row, true)),
                Err(e) => {
                    let _ = tokio::fs::remove_dir_all(&dest).await;
                    Err(e.into())
                }
            }
        }
        Some(row) => {
            match row.state {
                State::Pending => return Err(WorkspaceError::Busy(id)),
                State::Deleting => {
                    return Err(StoreError::IllegalTransition { id, from: State::Deleting, to: State::Pending }.into())
                }
                State::Active | State::Failed => {}
            }
            // Check first (nothing written), then queue the rebuild, then move the files in: a
            // `kill -9` during the move leaves a queued row, whose build lists the files again.
            let checked_dest = dest.clone();
            let (staged, mut files) = tokio::task::spawn_blocking(move || -> Result<_, WorkspaceError> {
                std::fs::create_dir_all(&checked_dest).map_err(io("workspace directory"))?;
                staged.check_merge(&checked_dest)?;
                let existing = paths::list_files(&checked_dest).map_err(io("cannot list the workspace files"))?;
                Ok((staged, existing))
            })
            .await
            .map_err(|e| WorkspaceError::Io(e.to_string()))??;
            files.extend(staged.files().iter().cloned());
            files.sort();
            files.dedup();
            let row = daemon
                .store
                .transition_workspace(&id, row.seen(), WorkspaceChange::Requeue { files: Some(files) })
                .await?;
            let moved_dest = dest.clone();
            tokio::task::spawn_blocking(move || staged.merge_into(&moved_dest))
                .await
                .map_err(|e| WorkspaceError::Io(e.to_string()))?
                .map_err(io("cannot store the workspace files"))?;
            Ok((row, false))
        }
    }
}

/// Queue the removal of a workspace and everything it owns. Deleting twice is not an error. No
/// row lock: the compare-and-set is enough, and a running build notices the row left PENDING.
pub async fn delete(daemon: &Daemon, id: &ObjectId) -> Result<WorkspaceRow, WorkspaceError> {
    loop {
        let row = daemon.store.get_workspace(id).await?;
        if row.state == State::Deleting {
            return Ok(row);
        }
        match daemon.store.transition_workspace(id, row.seen(), WorkspaceChange::Delete).await {
            // The row moved on between the read and the write (a build ended): look again.
            Err(StoreError::Conflict { .. }) => continue,
            other => return Ok(other?),
        }
    }
}

/// Removes a directory tree, or a file or link (never following it).
fn remove_entry(path: &std::path::Path) -> std::io::Result<()> {
    if path.is_dir() && !path.is_symlink() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Removes what uploads cut short by a crash left behind: everything under `<data>/tmp`, and
/// workspace directories no row names (an upload killed between moving its files in and inserting
/// its row). Runs at start, before the API serves, so no upload is in flight. Returns how many.
pub async fn sweep_leftovers(daemon: &Daemon) -> Result<usize, WorkspaceError> {
    let mut swept = 0;
    let tmp = daemon.config.tmp_dir();
    for entry in std::fs::read_dir(&tmp).map_err(io("reading the temp dir"))? {
        remove_entry(&entry.map_err(io("reading the temp dir"))?.path()).map_err(io("sweeping the temp dir"))?;
        swept += 1;
    }
    for entry in std::fs::read_dir(daemon.config.workspaces_dir()).map_err(io("reading the workspaces dir"))? {
        let entry = entry.map_err(io("reading the workspaces dir"))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let known = match ObjectId::parse(Kind::Workspace, &name) {
            Ok(id) if id.as_str() == name => daemon.store.workspace_exists(&name).await?,
            _ => false,
        };
        if !known {
            tracing::info!("removing {}: no workspace row names it (an upload cut short)", entry.path().display());
            remove_entry(&entry.path()).map_err(io("sweeping the workspaces dir"))?;
            swept += 1;
        }
    }
    Ok(swept)
}
