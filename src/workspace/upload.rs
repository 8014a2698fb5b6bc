//! Turning an upload into workspace files, all-or-nothing: every part is unpacked into a staging
//! directory under `<data>/tmp`, checked, and only then moved into `<data>/workspaces/<id>/`.
//! A rejected upload is dropped with its staging directory and leaves nothing behind.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::archive::{self, ArchiveKind, Budget, UnpackError};
use super::paths::{entry_at, first_bad_link, list_files, resolve_with, safe_relative, symlinks, Entry};

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
    #[error("link `{path}` {why}: a link must point at something inside the workspace")]
    BadLink { path: String, why: super::paths::Unresolved },
    #[error("`{path}` goes through the link `{link}`; uploads never write through links")]
    ThroughLink { path: String, link: String },
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
                if std::fs::symlink_metadata(dir.path().join(&rel)).is_ok_and(|m| m.is_dir()) {
                    return Err(UploadError::Clash { path: part.name.clone(), existing: "directory", new: "file" });
                }
                // Never through a link an archive of this upload planted, and never onto one:
                // whatever sits at the path is removed first, so the copy creates a new file.
                let target = archive::prepare_parent(dir.path(), &rel, &part.name).map_err(|e| match e {
                    // `x` then `x/y`: a file where a directory is needed.
                    UnpackError::Invalid { .. } => UploadError::Clash { path: part.name.clone(), existing: "file", new: "directory" },
                    other => other.into(),
                })?;
                std::fs::copy(&part.path, &target)?;
            }
        }
    }
    let files = list_files(dir.path())?;
    Ok(Staged { dir, files })
}

impl Staged {
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Check a tree that becomes a new workspace on its own: every link must resolve inside it,
    /// and the answer does not depend on where the tree sits (resolution treats the tree as the
    /// whole world, see `paths::resolve_with`). Updates are checked by [`Staged::check_merge`].
    pub fn check_new(&self) -> Result<(), UploadError> {
        match first_bad_link(self.dir.path())? {
            Some((link, why)) => Err(UploadError::BadLink { path: link.display().to_string(), why }),
            None => Ok(()),
        }
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

    /// Check that the staged tree can be merged over `dest`: no file turns into a directory or the
    /// other way round, no staged path goes through a link of `dest`, and every link of the merged
    /// tree (old and new) resolves inside it. Nothing is written.
    pub fn check_merge(&self, dest: &Path) -> Result<(), UploadError> {
        for file in &self.files {
            let mut probe = PathBuf::new();
            let parts: Vec<_> = Path::new(file).components().collect();
            for (i, part) in parts.iter().enumerate() {
                probe.push(part);
                let last = i + 1 == parts.len();
                match entry_at(dest, &probe)? {
                    Entry::Dir if last => {
                        return Err(UploadError::Clash { path: file.clone(), existing: "directory", new: "file" })
                    }
                    Entry::File if !last => {
                        return Err(UploadError::Clash { path: file.clone(), existing: "file", new: "directory" })
                    }
                    Entry::Link(_) if !last => {
                        return Err(UploadError::ThroughLink { path: file.clone(), link: probe.display().to_string() })
                    }
                    _ => {}
                }
            }
        }
        // The merged tree as it will be: a staged entry replaces the workspace's, directories merge.
        let staged = self.dir.path();
        let overlay = |rel: &Path| -> std::io::Result<Entry> {
            match entry_at(staged, rel)? {
                Entry::Missing => entry_at(dest, rel),
                Entry::Dir => Ok(match entry_at(dest, rel)? {
                    Entry::Missing | Entry::Dir => Entry::Dir,
                    other => other,
                }),
                other => Ok(other),
            }
        };
        let mut links = symlinks(staged)?;
        links.extend(symlinks(dest)?);
        for link in links {
            if let Err(why) = resolve_with(&overlay, &link)? {
                return Err(UploadError::BadLink { path: link.display().to_string(), why });
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
