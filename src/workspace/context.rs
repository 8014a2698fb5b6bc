//! Build contexts: deterministic tar files (zero times, root owner) written to a temp file and
//! streamed to the Docker engine.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tar::{Builder, Header, HeaderMode};

use super::dockerfile::{DOCKERFILE_PATH, REQUIREMENTS_DIR};
use super::requirements;

fn builder(out: &Path) -> std::io::Result<Builder<BufWriter<File>>> {
    let mut tar = Builder::new(BufWriter::new(File::create(out)?));
    tar.mode(HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    Ok(tar)
}

fn append_bytes(tar: &mut Builder<impl Write>, path: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut header = Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    tar.append_data(&mut header, path, bytes)
}

/// The context of the runtime image: its Dockerfile and the jinad executable.
pub fn write_runtime_context(out: &Path, dockerfile: &str, binary: &Path) -> std::io::Result<()> {
    let mut tar = builder(out)?;
    append_bytes(&mut tar, "Dockerfile", dockerfile.as_bytes(), 0o644)?;
    let mut file = File::open(binary)?;
    let mut header = Header::new_gnu();
    header.set_size(file.metadata()?.len());
    header.set_mode(0o755);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, "jinad", &mut file)?;
    tar.into_inner()?.flush()
}

/// The context of a workspace image: every workspace file, plus the generated Dockerfile and a copy
/// of `requirements.txt` and the local files it names under `.jinad-build/requirements/`.
pub fn write_workspace_context(
    out: &Path,
    root: &Path,
    dockerfile: &str,
    requirement_files: &[PathBuf],
) -> std::io::Result<()> {
    let mut tar = builder(out)?;
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == super::dockerfile::BUILD_DIR {
            continue;
        }
        if entry.file_type()?.is_dir() {
            tar.append_dir_all(&name, entry.path())?;
        } else {
            tar.append_path_with_name(entry.path(), &name)?;
        }
    }
    if root.join(requirements::FILE_NAME).is_file() {
        let mut wanted = vec![PathBuf::from(requirements::FILE_NAME)];
        wanted.extend(requirement_files.iter().cloned());
        for rel in wanted {
            let inside = Path::new(REQUIREMENTS_DIR).join(&rel);
            if root.join(&rel).is_dir() {
                tar.append_dir_all(&inside, root.join(&rel))?;
            } else {
                tar.append_path_with_name(root.join(&rel), &inside)?;
            }
        }
    } else {
        let mut header = Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(0o755);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, REQUIREMENTS_DIR, std::io::empty())?;
    }
    append_bytes(&mut tar, DOCKERFILE_PATH, dockerfile.as_bytes(), 0o644)?;
    tar.into_inner()?.flush()
}
