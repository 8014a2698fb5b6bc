//! Packs a project directory into a `.tar.gz` for an upload, leaving out what `.jinadignore`
//! files say (gitignore syntax, one per directory, as `.gitignore` works) and `.git`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

/// The packed project: a temporary `.tar.gz` (deleted on drop) and what it holds.
#[derive(Debug)]
pub struct Packed {
    pub file: tempfile::NamedTempFile,
    /// Bytes of the archive.
    pub size: u64,
    pub files: usize,
    /// Bytes of the files packed (before compression).
    pub content: u64,
}

/// The name of the ignore file, looked for in every directory of the project.
pub const IGNORE_FILE: &str = ".jinadignore";

pub fn pack(root: &Path) -> Result<Packed, String> {
    let meta = std::fs::metadata(root).map_err(|e| format!("{}: {e}", root.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", root.display()));
    }
    let mut walk = ignore::WalkBuilder::new(root);
    // Hidden files are part of a project (`.jinad`); only `.jinadignore` rules leave things out.
    walk.standard_filters(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .follow_links(false)
        .sort_by_file_path(|a, b| a.cmp(b))
        .filter_entry(|entry| entry.file_name() != ".git");
    let file = tempfile::Builder::new().prefix("jinad-upload-").suffix(".tar.gz").tempfile().map_err(|e| format!("temporary archive: {e}"))?;
    let writer = BufWriter::with_capacity(1 << 20, file.reopen().map_err(|e| format!("temporary archive: {e}"))?);
    let mut tar = tar::Builder::new(GzEncoder::new(writer, Compression::fast()));
    tar.follow_symlinks(false);
    let (mut files, mut content) = (0usize, 0u64);
    for entry in walk.build() {
        let entry = entry.map_err(|e| format!("{}: {e}", root.display()))?;
        let path = entry.path();
        let Ok(relative) = path.strip_prefix(root) else { continue };
        if relative.as_os_str().is_empty() {
            continue;
        }
        let kind = entry.file_type().ok_or_else(|| format!("{}: cannot tell its type", path.display()))?;
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() && !kind.is_symlink() {
            // FIFOs, sockets and devices are not project files (the daemon refuses them too).
            eprintln!("skipping {} (not a file)", path.display());
            continue;
        }
        tar.append_path_with_name(path, relative).map_err(|e| format!("{}: {e}", path.display()))?;
        files += 1;
        if kind.is_file() {
            content += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    if files == 0 {
        return Err(format!("{}: nothing to upload (empty, or every file is in {IGNORE_FILE})", root.display()));
    }
    let gz = tar.into_inner().map_err(|e| format!("temporary archive: {e}"))?;
    let mut writer = gz.finish().map_err(|e| format!("temporary archive: {e}"))?;
    writer.flush().map_err(|e| format!("temporary archive: {e}"))?;
    drop(writer);
    let size = File::open(file.path()).and_then(|f| f.metadata()).map(|m| m.len()).map_err(|e| format!("temporary archive: {e}"))?;
    Ok(Packed { file, size, files, content })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(packed: &Packed) -> Vec<String> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(File::open(packed.file.path()).unwrap()));
        archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn jinadignore_rules_apply_per_directory_and_git_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, text) in [
            (".jinad", "[build]\n"),
            (".jinadignore", "*.log\ndata/\n!keep.log\n"),
            ("flow.yml", "jtype: Flow\n"),
            ("run.log", "x"),
            ("keep.log", "x"),
            ("data/big.bin", "x"),
            ("pkg/mod.py", "x"),
            ("pkg/.jinadignore", "secret.txt\n"),
            ("pkg/secret.txt", "x"),
            (".git/HEAD", "x"),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let packed = pack(root).unwrap();
        assert_eq!(names(&packed), [".jinad", ".jinadignore", "flow.yml", "keep.log", "pkg/.jinadignore", "pkg/mod.py"]);
        assert_eq!(packed.files, 6);
    }

    #[test]
    fn an_empty_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(pack(dir.path()).unwrap_err().contains("nothing to upload"));
        assert!(pack(&dir.path().join("missing")).is_err());
    }
}
