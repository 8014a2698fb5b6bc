//! A content digest of a tree of files, so that a Flow on another machine can tell whether a
//! daemon already holds its project (and skip the upload). The daemon records it when a build
//! starts (`digest` of a workspace); `jinad flow` computes it over the files it would upload.
//! Both sides run this function, so they agree exactly when the files agree: the relative paths
//! (`/`-separated, sorted) and each file's bytes (a link: its target). Modes, times and empty
//! directories do not count, and neither does [`PODS_DATA`]: what pods write while they run is
//! not the project.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The directory of a workspace where pods keep their data (`jinad pod --workspace`'s default).
pub const PODS_DATA: &str = "workspace";

/// `sha256:<hex>` of the files `rel_paths` (relative to `root`), those under [`PODS_DATA`] left out.
pub fn of_files(root: &Path, rel_paths: &[String]) -> std::io::Result<String> {
    let data = format!("{PODS_DATA}/");
    let mut sorted: Vec<&String> = rel_paths.iter().filter(|p| !p.starts_with(&data)).collect();
    sorted.sort();
    sorted.dedup();
    let mut tree = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    for rel in sorted {
        let path = root.join(rel);
        let meta = std::fs::symlink_metadata(&path)?;
        let mut file_hash = Sha256::new();
        let kind = if meta.file_type().is_symlink() {
            file_hash.update(std::fs::read_link(&path)?.to_string_lossy().as_bytes());
            b'L'
        } else {
            let mut file = std::fs::File::open(&path)?;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                file_hash.update(&buf[..n]);
            }
            b'F'
        };
        tree.update([kind]);
        tree.update(rel.as_bytes());
        tree.update([0]);
        tree.update(file_hash.finalize());
    }
    Ok(format!("sha256:{}", hex(&tree.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::of_files;

    #[test]
    fn same_files_same_digest_and_any_change_shows() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for dir in [a.path(), b.path()] {
            std::fs::create_dir_all(dir.join("x")).unwrap();
            std::fs::write(dir.join("x/one.py"), "print(1)\n").unwrap();
            std::fs::write(dir.join("flow.yml"), "jtype: Flow\n").unwrap();
        }
        let files = vec!["x/one.py".to_string(), "flow.yml".to_string()];
        let reversed: Vec<String> = files.iter().rev().cloned().collect();
        let da = of_files(a.path(), &files).unwrap();
        assert_eq!(da, of_files(b.path(), &reversed).unwrap(), "order of the list does not matter");
        assert!(da.starts_with("sha256:") && da.len() == 7 + 64);
        std::fs::write(b.path().join("x/one.py"), "print(2)\n").unwrap();
        assert_ne!(da, of_files(b.path(), &files).unwrap(), "content counts");
        std::fs::write(b.path().join("x/one.py"), "print(1)\n").unwrap();
        std::fs::rename(b.path().join("x/one.py"), b.path().join("x/two.py")).unwrap();
        let renamed = vec!["x/two.py".to_string(), "flow.yml".to_string()];
        assert_ne!(da, of_files(b.path(), &renamed).unwrap(), "names count");
        std::fs::create_dir_all(a.path().join("workspace/idx")).unwrap();
        std::fs::write(a.path().join("workspace/idx/index.log"), "data").unwrap();
        let with_data = vec!["x/one.py".to_string(), "flow.yml".to_string(), "workspace/idx/index.log".to_string()];
        assert_eq!(da, of_files(a.path(), &with_data).unwrap(), "pods' data is not the project");
    }
}
