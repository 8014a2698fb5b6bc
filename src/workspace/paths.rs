//! Paths inside a workspace: what an uploaded name or an archive entry may be.

use std::path::{Component, Path, PathBuf};

/// A relative path with only normal components (no `..`, no root, no drive prefix, no `.` noise).
pub fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Where a symlink at `link` (relative to the workspace root) pointing at `target` lands, if it
/// stays inside the workspace. Absolute targets never do. Resolution is lexical; the extracted
/// tree is checked again on the real file system by [`links_stay_inside`].
pub fn link_destination(link: &Path, target: &Path) -> Option<PathBuf> {
    if target.is_absolute() {
        return None;
    }
    let mut parts: Vec<_> = link.parent().map(|p| p.components().collect()).unwrap_or_default();
    for component in target.components() {
        match component {
            Component::Normal(_) => parts.push(component),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Every symlink under `root` that resolves must resolve inside `root`: this catches chains of
/// links that look harmless one by one. Returns the first offending link.
pub fn links_stay_inside(root: &Path) -> std::io::Result<Option<PathBuf>> {
    let root = root.canonicalize()?;
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                if let Ok(real) = entry.path().canonicalize() {
                    if !real.starts_with(&root) {
                        return Ok(Some(entry.path().strip_prefix(&root).unwrap_or(&entry.path()).to_path_buf()));
                    }
                }
            } else if kind.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(None)
}

/// The files (and symlinks) under `root`, as sorted relative paths with `/` separators.
pub fn list_files(root: &Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                files.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(safe_relative(Path::new("a/./b.py")), Some(PathBuf::from("a/b.py")));
        assert_eq!(safe_relative(Path::new("../x")), None);
        assert_eq!(safe_relative(Path::new("a/../../x")), None);
        assert_eq!(safe_relative(Path::new("/etc/passwd")), None);
        assert_eq!(safe_relative(Path::new("")), None);
        assert_eq!(safe_relative(Path::new(".")), None);
    }

    #[test]
    fn links() {
        assert_eq!(link_destination(Path::new("a/l"), Path::new("../b")), Some(PathBuf::from("b")));
        assert_eq!(link_destination(Path::new("a/l"), Path::new("../../b")), None);
        assert_eq!(link_destination(Path::new("l"), Path::new("/etc")), None);
        assert_eq!(link_destination(Path::new("l"), Path::new("x/y")), Some(PathBuf::from("x/y")));
    }
}
