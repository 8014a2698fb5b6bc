//! `requirements.txt`: which local files it names (wheels, sdists, included requirement files,
//! local directories), so they go into the dependency layer of the image with it.

use std::path::{Path, PathBuf};

use super::paths::safe_relative;

pub const FILE_NAME: &str = "requirements.txt";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequirementsError {
    #[error("requirements.txt line {line}: `{reference}` points outside the workspace")]
    Outside { line: usize, reference: String },
    #[error("requirements.txt line {line}: `{reference}` is not a file of the workspace")]
    Missing { line: usize, reference: String },
}

/// The workspace-relative paths `requirements.txt` refers to (following `-r` includes), checked to
/// exist under `root`. `requirements.txt` itself is not in the list.
pub fn local_files(root: &Path) -> Result<Vec<PathBuf>, RequirementsError> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut queue = vec![PathBuf::from(FILE_NAME)];
    while let Some(file) = queue.pop() {
        let Ok(text) = std::fs::read_to_string(root.join(&file)) else { continue };
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let Some((reference, include)) = local_reference(raw) else { continue };
            let rel = safe_relative(&base.join(&reference))
                .filter(|_| !Path::new(&reference).is_absolute())
                .ok_or_else(|| RequirementsError::Outside { line, reference: reference.clone() })?;
            if !root.join(&rel).exists() {
                return Err(RequirementsError::Missing { line, reference });
            }
            if !found.contains(&rel) {
                if include {
                    queue.push(rel.clone());
                }
                found.push(rel);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The local path a requirements line names, and whether it is an included requirements file.
fn local_reference(raw: &str) -> Option<(String, bool)> {
    let line = raw.split(" #").next().unwrap_or("").trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    for flag in ["-r", "--requirement", "-c", "--constraint"] {
        if let Some(rest) = line.strip_prefix(flag) {
            if rest.starts_with([' ', '=']) {
                return Some((rest.trim_start_matches([' ', '=']).trim().to_string(), true));
            }
        }
    }
    let spec = ["-e", "--editable"]
        .iter()
        .find_map(|flag| line.strip_prefix(flag).filter(|r| r.starts_with([' ', '='])))
        .map(|r| r.trim_start_matches([' ', '=']).trim())
        .unwrap_or(line);
    if spec.starts_with('-') || spec.contains("://") {
        return None;
    }
    let path = spec.split(';').next().unwrap_or(spec).trim();
    let looks_local = path.starts_with("./")
        || path.starts_with("../")
        || path.starts_with('/')
        || path == "."
        || [".whl", ".tar.gz", ".zip", ".tgz"].iter().any(|ext| path.ends_with(ext));
    looks_local.then(|| (path.to_string(), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_local_references() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("wheels")).unwrap();
        std::fs::write(root.join("wheels/a-1.0-py3-none-any.whl"), b"x").unwrap();
        std::fs::write(root.join("more.txt"), "./wheels/a-1.0-py3-none-any.whl\n").unwrap();
        std::fs::write(root.join(FILE_NAME), "numpy==1.0\n# c\n-r more.txt\nrequests>=2 ; python_version>'3'\n").unwrap();
        let files = local_files(root).unwrap();
        assert_eq!(files, vec![PathBuf::from("more.txt"), PathBuf::from("wheels/a-1.0-py3-none-any.whl")]);

        std::fs::write(root.join(FILE_NAME), "./missing-1.0-py3-none-any.whl\n").unwrap();
        assert!(matches!(local_files(root), Err(RequirementsError::Missing { line: 1, .. })));
        std::fs::write(root.join(FILE_NAME), "/etc/x.whl\n").unwrap();
        assert!(matches!(local_files(root), Err(RequirementsError::Outside { .. })));
    }
}
