//! Turning an upload into workspace files, all-or-nothing: every part is unpacked into a staging
//! directory under `<data>/tmp`, checked, and only then moved into `<data>/workspaces/<id>/`.
//! A rejected upload is dropped with its staging directory and leaves nothing behind.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::archive::{self, ArchiveKind, Budget, UnpackError};
use super::paths::{links_stay_inside, list_files, safe_relative};

/// One part of the multipart upload, already on disk.
#[derive(Debug)]
pub struct UploadedPart {
    /// The file name the client sent (may contain sub-directories).
    pub name: String,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the upload has no files (send them in the repeated multipart field `files`)")]
    NoFiles,
    #[error("`{0}` is not a valid file name (it must be a relative path without `..`)")]
    InvalidFilename(String),
    #[error("`{path}` would replace a {existing} of the workspace with a {new}")]
    Clash { path: String, existing: &'static str, new: &'static str },
    #[error(transparent)]
    Unpack(#[from] UnpackError),
}

impl From<std::io::Error> for UploadError {
    fn from(e: std::io::Error) -> Self {
        UploadError::Unpack(UnpackError::Io(e))
    }
}

/// Limits for one upload.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_unpacked_bytes: u64,
    pub max_unpacked_files: u64,
}

/// A validated upload, waiting in its staging directory.
#[derive(Debug)]
pub struct Staged {
    dir: TempDir,
    files: Vec<String>,
}

/// Unpack and check every part into a fresh staging directory in `tmp_dir`.
pub fn stage(parts: &[UploadedPart], tmp_dir: &Path, limits: Limits) -> Result<Staged, UploadError> {
    if parts.is_empty() {
        return Err(UploadError::NoFiles);
    }
    let dir = tempfile::Builder::new().prefix("stage-").tempdir_in(tmp_dir)?;
    let mut budget = Budget::new(limits.max_unpacked_bytes, limits.max_unpacked_files);
    for part in parts {
        let rel = safe_relative(Path::new(&part.name)).ok_or_else(|| UploadError::InvalidFilename(part.name.clone()))?;
        match ArchiveKind::of(&part.name) {
            Some(kind) => archive::unpack(kind, &part.path, &part.name, dir.path(), &mut budget)?,
            None => {
                let size = std::fs::metadata(&part.path)?.len();
                budget.take_file(size)?;
                let target = dir.path().join(&rel);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    return Err(UploadError::Clash { path: part.name.clone(), existing: "directory", new: "file" });
                }
                std::fs::copy(&part.path, &target)?;
            }
        }
    }
    if let Some(link) = links_stay_inside(dir.path())? {
        return Err(UnpackError::UnsafeLink { archive: "upload".into(), entry: link.display().to_string() }.into());
    }
    let files = list_files(dir.path())?;
    Ok(Staged { dir, files })
}

impl Staged {
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Move the staged tree to `dest`, which must not exist yet (a new workspace).
    pub fn create(self, dest: &Path) -> std::io::Result<()> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let staged = self.dir.keep();
        std::fs::rename(&staged, dest).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&staged);
        })
    }

    /// Check that the staged tree can be merged over `dest` without turning a file into a directory
    /// or the other way round. Nothing is written.
    pub fn check_merge(&self, dest: &Path) -> Result<(), UploadError> {
        for file in &self.files {
            let mut probe = dest.to_path_buf();
            let parts: Vec<_> = Path::new(file).components().collect();
            for (i, part) in parts.iter().enumerate() {
                probe.push(part);
                let last = i + 1 == parts.len();
                match std::fs::symlink_metadata(&probe) {
                    Ok(meta) if last && meta.is_dir() => {
                        return Err(UploadError::Clash { path: file.clone(), existing: "directory", new: "file" })
                    }
                    Ok(meta) if !last && meta.is_file() => {
                        return Err(UploadError::Clash { path: file.clone(), existing: "file", new: "directory" })
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Move every staged file over `dest` (an existing workspace), replacing files of the same name.
    /// Call [`Staged::check_merge`] first.
    pub fn merge_into(self, dest: &Path) -> std::io::Result<()> {
        for file in &self.files {
            let from = self.dir.path().join(file);
            let to = dest.join(file);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&from, &to)?;
        }
        Ok(())
    }
}
