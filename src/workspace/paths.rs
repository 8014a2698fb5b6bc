//! Paths inside a workspace: what an uploaded name or an archive entry may be.

use std::path::{Component, Path, PathBuf};

/// A relative path with only normal components (no `..`, no root, no drive prefix, no `.` noise).
pub fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            // A name no file system takes (ext4 and others: 255 bytes) is a bad name, not an I/O error.
            Component::Normal(part) if part.len() > 255 => return None,
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

/// What sits at a relative path of a workspace tree, without following a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Missing,
    Dir,
    File,
    Link(PathBuf),
}

/// What is at `root/rel`, not following links.
pub fn entry_at(root: &Path, rel: &Path) -> std::io::Result<Entry> {
    match std::fs::symlink_metadata(root.join(rel)) {
        Ok(meta) if meta.file_type().is_symlink() => Ok(Entry::Link(std::fs::read_link(root.join(rel))?)),
        Ok(meta) if meta.is_dir() => Ok(Entry::Dir),
        Ok(_) => Ok(Entry::File),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => Ok(Entry::Missing),
        Err(e) => Err(e),
    }
}

/// Why a path does not resolve inside the workspace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    #[error("leaves the workspace")]
    Escapes,
    #[error("points at nothing")]
    Dangling,
    #[error("is a loop of links")]
    Loop,
}

/// Resolves `rel` inside a workspace whose entries `lookup` tells, following links the way the
/// kernel would but with the workspace as the whole world: an absolute target, or a `..` above the
/// root, escapes — wherever the tree sits on disk (a staging directory now, the workspace
/// directory later: the answer is the same). Returns the real relative path, which exists.
pub fn resolve_with(lookup: &dyn Fn(&Path) -> std::io::Result<Entry>, rel: &Path) -> Result<Result<PathBuf, Unresolved>, std::io::Error> {
    // The components still to walk, the next one last.
    let mut pending: Vec<std::ffi::OsString> = Vec::new();
    if !push_components(&mut pending, rel) {
        return Ok(Err(Unresolved::Escapes));
    }
    let mut done = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if !done.pop() {
                return Ok(Err(Unresolved::Escapes));
            }
            continue;
        }
        let next = done.join(&part);
        match lookup(&next)? {
            Entry::Missing => return Ok(Err(Unresolved::Dangling)),
            Entry::Dir | Entry::File => done = next,
            Entry::Link(target) => {
                links += 1;
                if links > 40 {
                    return Ok(Err(Unresolved::Loop));
                }
                if !push_components(&mut pending, &target) {
                    return Ok(Err(Unresolved::Escapes));
                }
            }
        }
    }
    Ok(Ok(done))
}

/// Puts `path`'s components on the `pending` stack (first one on top); false for an absolute path.
fn push_components(pending: &mut Vec<std::ffi::OsString>, path: &Path) -> bool {
    for component in path.components().rev() {
        match component {
            Component::Normal(part) => pending.push(part.to_os_string()),
            Component::ParentDir => pending.push("..".into()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// [`resolve_with`] on the tree at `root`.
pub fn resolve_inside(root: &Path, rel: &Path) -> std::io::Result<Result<PathBuf, Unresolved>> {
    resolve_with(&|p: &Path| entry_at(root, p), rel)
}

/// Reads the file at `rel` of the workspace at `root`, following links only inside it.
pub fn read_inside(root: &Path, rel: &Path) -> std::io::Result<String> {
    match resolve_inside(root, rel)? {
        Ok(real) => std::fs::read_to_string(root.join(real)),
        Err(Unresolved::Dangling) => Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} does not exist", rel.display()))),
        Err(why) => Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, format!("{} {why}", rel.display()))),
    }
}

/// Every symlink under `root`, relative to it (links to directories are not descended into).
pub fn symlinks(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                found.push(rel.join(entry.file_name()));
            } else if kind.is_dir() {
                stack.push(rel.join(entry.file_name()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The first link under `root` that does not resolve inside it (escaping or dangling), and why.
pub fn first_bad_link(root: &Path) -> std::io::Result<Option<(PathBuf, Unresolved)>> {
    for link in symlinks(root)? {
        if let Err(why) = resolve_inside(root, &link)? {
            return Ok(Some((link, why)));
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

/// The unprivileged user containers run as when the workspace belongs to root (`nobody`).
pub const CONTAINER_USER: (u32, u32) = (65534, 65534);

/// The `uid:gid` a container of the workspace at `root` runs as: the owner of the directory, so
/// what executors write stays removable by the daemon — but never root: a root-owned workspace
/// (a daemon running as root) is handed to [`CONTAINER_USER`] first (every entry, links
/// themselves rather than their targets), so no container can plant root-owned or setuid-root
/// files on the host.
pub fn container_user(root: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(root)?;
    if meta.uid() != 0 {
        return Ok(format!("{}:{}", meta.uid(), meta.gid()));
    }
    let (uid, gid) = CONTAINER_USER;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(format!("{uid}:{gid}"))
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
    fn resolution_is_confined_to_the_tree_wherever_it_sits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::create_dir_all(dir.path().join("other")).unwrap();
        std::fs::write(root.join("a.py"), "").unwrap();
        std::os::unix::fs::symlink("..", root.join("d/l")).unwrap();
        std::os::unix::fs::symlink("d/l/../other", root.join("x")).unwrap();
        std::os::unix::fs::symlink("d/l/a.py", root.join("ok")).unwrap();
        std::os::unix::fs::symlink("nothing", root.join("dangling")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("loop2", root.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", root.join("loop2")).unwrap();
        assert_eq!(resolve_inside(&root, Path::new("ok")).unwrap(), Ok(PathBuf::from("a.py")));
        assert_eq!(resolve_inside(&root, Path::new("d/l")).unwrap(), Ok(PathBuf::new()));
        // The chain: `d/l` is the root, so `d/l/..` is above it, even though `../other` exists on disk.
        assert_eq!(resolve_inside(&root, Path::new("x")).unwrap(), Err(Unresolved::Escapes));
        assert_eq!(resolve_inside(&root, Path::new("dangling")).unwrap(), Err(Unresolved::Dangling));
        assert_eq!(resolve_inside(&root, Path::new("abs")).unwrap(), Err(Unresolved::Escapes));
        assert_eq!(resolve_inside(&root, Path::new("loop1")).unwrap(), Err(Unresolved::Loop));
        assert!(read_inside(&root, Path::new("x")).is_err());
        assert!(read_inside(&root, Path::new("ok")).is_ok());
        let bad = first_bad_link(&root).unwrap().unwrap();
        assert_eq!(bad.0, PathBuf::from("abs"));
    }

    #[test]
    fn links() {
        assert_eq!(link_destination(Path::new("a/l"), Path::new("../b")), Some(PathBuf::from("b")));
        assert_eq!(link_destination(Path::new("a/l"), Path::new("../../b")), None);
        assert_eq!(link_destination(Path::new("l"), Path::new("/etc")), None);
        assert_eq!(link_destination(Path::new("l"), Path::new("x/y")), Some(PathBuf::from("x/y")));
    }
}

