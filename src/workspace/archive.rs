//! Unpacking uploaded archives (`.tar`, `.tar.gz`, `.tgz`, `.zip`) into a staging directory, refusing
//! anything that could write outside it or exhaust the disk: `..` and absolute paths, links that
//! point outside, device files and FIFOs, and more bytes or entries than the budget allows.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::paths::{link_destination, safe_relative};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{archive}: entry `{entry}` has an unsafe path (absolute or with `..`)")]
    UnsafePath { archive: String, entry: String },
    #[error("{archive}: link `{entry}` points outside the workspace")]
    UnsafeLink { archive: String, entry: String },
    #[error("{archive}: entry `{entry}` is a {kind}, which a workspace may not contain")]
    UnsafeEntry { archive: String, entry: String, kind: &'static str },
    #[error("the upload unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the upload unpacks to more than {limit} files")]
    TooManyFiles { limit: u64 },
    #[error("{archive}: not a valid archive: {reason}")]
    Invalid { archive: String, reason: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What an upload may still unpack to; shared by all the files of one upload.
#[derive(Debug)]
pub struct Budget {
    pub bytes_left: u64,
    pub files_left: u64,
    bytes_limit: u64,
    files_limit: u64,
}

impl Budget {
    pub fn new(bytes: u64, files: u64) -> Self {
        Budget { bytes_left: bytes, files_left: files, bytes_limit: bytes, files_limit: files }
    }

    pub fn take_file(&mut self, bytes: u64) -> Result<(), UnpackError> {
        if self.files_left == 0 {
            return Err(UnpackError::TooManyFiles { limit: self.files_limit });
        }
        if bytes > self.bytes_left {
            return Err(UnpackError::TooLarge { limit: self.bytes_limit });
        }
        self.files_left -= 1;
        self.bytes_left -= bytes;
        Ok(())
    }

    /// Copy at most the declared size; a stream longer than it declared is refused.
    fn copy(&self, reader: &mut impl Read, declared: u64, dest: &Path) -> Result<(), UnpackError> {
        let mut out = File::create(dest)?;
        let copied = io::copy(&mut reader.take(declared + 1), &mut out)?;
        if copied > declared {
            return Err(UnpackError::TooLarge { limit: self.bytes_limit });
        }
        Ok(())
    }
}

/// The kinds of archive we unpack, from the uploaded file's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    Zip,
}

impl ArchiveKind {
    pub fn of(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            Some(ArchiveKind::TarGz)
        } else if lower.ends_with(".tar") {
            Some(ArchiveKind::Tar)
        } else if lower.ends_with(".zip") {
            Some(ArchiveKind::Zip)
        } else {
            None
        }
    }
}

/// Unpack `archive` (named `name` in the upload) into `dest`, under `budget`.
pub fn unpack(kind: ArchiveKind, archive: &Path, name: &str, dest: &Path, budget: &mut Budget) -> Result<(), UnpackError> {
    let file = File::open(archive)?;
    match kind {
        ArchiveKind::Tar => unpack_tar(file, name, dest, budget),
        ArchiveKind::TarGz => unpack_tar(flate2::read::GzDecoder::new(file), name, dest, budget),
        ArchiveKind::Zip => unpack_zip(file, name, dest, budget),
    }
}

fn invalid(name: &str, reason: impl ToString) -> UnpackError {
    UnpackError::Invalid { archive: name.into(), reason: reason.to_string() }
}

fn unpack_tar(reader: impl Read, name: &str, dest: &Path, budget: &mut Budget) -> Result<(), UnpackError> {
    use tar::EntryType;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    for entry in archive.entries().map_err(|e| invalid(name, e))? {
        let mut entry = entry.map_err(|e| invalid(name, e))?;
        let raw = entry.path().map_err(|e| invalid(name, e))?.into_owned();
        let shown = raw.display().to_string();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink) {
            continue;
        }
        let rel = safe_relative(&raw);
        let rel = match (rel, kind) {
            (Some(rel), _) => rel,
            // `./` itself is the archive's root directory.
            (None, EntryType::Directory) if raw.components().all(|c| matches!(c, std::path::Component::CurDir)) => continue,
            (None, _) => return Err(UnpackError::UnsafePath { archive: name.into(), entry: shown }),
        };
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.header().size().map_err(|e| invalid(name, e))?;
                budget.take_file(size)?;
                let target = prepare_parent(dest, &rel, name)?;
                budget.copy(&mut entry, size, &target)?;
                set_mode(&target, entry.header().mode().unwrap_or(0o644))?;
            }
            EntryType::Directory => {
                budget.take_file(0)?;
                std::fs::create_dir_all(inside(dest, &rel, name)?)?;
            }
            EntryType::Symlink => {
                let target = entry.link_name().map_err(|e| invalid(name, e))?.map(|t| t.into_owned());
                let target = target.ok_or_else(|| invalid(name, format!("link `{shown}` has no target")))?;
                budget.take_file(0)?;
                make_symlink(dest, &rel, &target, name, &shown)?;
            }
            EntryType::Link => {
                // A hard link names another entry of the archive: copy that file.
                let source = entry.link_name().map_err(|e| invalid(name, e))?.map(|t| t.into_owned());
                let source = source
                    .as_deref()
                    .and_then(safe_relative)
                    .ok_or_else(|| UnpackError::UnsafeLink { archive: name.into(), entry: shown.clone() })?;
                let from = inside(dest, &source, name)?;
                let meta = std::fs::symlink_metadata(&from)
                    .map_err(|_| invalid(name, format!("hard link `{shown}` names a file the archive does not hold")))?;
                // Only a regular file of the archive: copying "through" a symlink would read
                // whatever it points at (a host file, a device).
                if !meta.file_type().is_file() {
                    return Err(UnpackError::UnsafeLink { archive: name.into(), entry: shown });
                }
                let size = meta.len();
                budget.take_file(size)?;
                let target = prepare_parent(dest, &rel, name)?;
                std::fs::copy(&from, &target)?;
            }
            EntryType::Char => return Err(unsafe_entry(name, shown, "character device")),
            EntryType::Block => return Err(unsafe_entry(name, shown, "block device")),
            EntryType::Fifo => return Err(unsafe_entry(name, shown, "FIFO")),
            EntryType::GNUSparse => return Err(unsafe_entry(name, shown, "sparse file")),
            _ => return Err(unsafe_entry(name, shown, "special entry")),
        }
    }
    Ok(())
}

fn unpack_zip(file: File, name: &str, dest: &Path, budget: &mut Budget) -> Result<(), UnpackError> {
    let mut archive = zip::ZipArchive::new(file).map_err(|e| invalid(name, e))?;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| invalid(name, e))?;
        let shown = entry.name().to_string();
        let rel = entry
            .enclosed_name()
            .as_deref()
            .and_then(safe_relative)
            .ok_or_else(|| UnpackError::UnsafePath { archive: name.into(), entry: shown.clone() })?;
        let mode = entry.unix_mode().unwrap_or(0);
        match mode & 0o170000 {
            0o020000 => return Err(unsafe_entry(name, shown, "character device")),
            0o060000 => return Err(unsafe_entry(name, shown, "block device")),
            0o010000 => return Err(unsafe_entry(name, shown, "FIFO")),
            0o140000 => return Err(unsafe_entry(name, shown, "socket")),
            _ => {}
        }
        if entry.is_dir() {
            budget.take_file(0)?;
            std::fs::create_dir_all(inside(dest, &rel, name)?)?;
        } else if entry.is_symlink() {
            let mut target = String::new();
            entry.by_ref().take(4096).read_to_string(&mut target).map_err(|e| invalid(name, e))?;
            budget.take_file(0)?;
            make_symlink(dest, &rel, Path::new(&target), name, &shown)?;
        } else {
            let size = entry.size();
            budget.take_file(size)?;
            let target = prepare_parent(dest, &rel, name)?;
            budget.copy(&mut entry, size, &target).map_err(|e| match e {
                UnpackError::Io(io) => invalid(name, io),
                other => other,
            })?;
            if mode & 0o777 != 0 {
                set_mode(&target, mode)?;
            }
        }
    }
    Ok(())
}

fn unsafe_entry(archive: &str, entry: String, kind: &'static str) -> UnpackError {
    UnpackError::UnsafeEntry { archive: archive.into(), entry, kind }
}

/// `dest/rel`, refusing a path that goes through a symlink (an earlier entry or part may be a
/// link): nothing is ever written through a link, wherever it points. A component that exists as
/// a file where a directory is needed is an invalid archive, not an I/O failure.
fn inside(dest: &Path, rel: &Path, archive: &str) -> Result<PathBuf, UnpackError> {
    let path = dest.join(rel);
    let mut probe = dest.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for component in &parts[..parts.len().saturating_sub(1)] {
        probe.push(component);
        match std::fs::symlink_metadata(&probe) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(UnpackError::UnsafeLink { archive: archive.into(), entry: rel.display().to_string() })
            }
            Ok(meta) if !meta.is_dir() => {
                let what = probe.strip_prefix(dest).unwrap_or(&probe).display().to_string();
                return Err(invalid(archive, format!("`{}` needs `{what}` to be a directory, but it is a file", rel.display())));
            }
            _ => {}
        }
    }
    Ok(path)
}

/// Create the parent directories of `dest/rel` and clear whatever sits at `dest/rel` (a later entry
/// wins; a link there is removed, never followed), so that a file can be created at the path.
pub(crate) fn prepare_parent(dest: &Path, rel: &Path, archive: &str) -> Result<PathBuf, UnpackError> {
    let path = inside(dest, rel, archive)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if meta.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(path)
}

fn make_symlink(dest: &Path, rel: &Path, target: &Path, archive: &str, shown: &str) -> Result<(), UnpackError> {
    if link_destination(rel, target).is_none() {
        return Err(UnpackError::UnsafeLink { archive: archive.into(), entry: shown.into() });
    }
    let path = prepare_parent(dest, rel, archive)?;
    std::os::unix::fs::symlink(target, path)?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Keep the executable bits; never setuid/setgid/sticky, always owner-readable and writable.
    let mode = (mode & 0o755) | 0o600;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
