//! The daemon's persistent identity. Every Docker object carries it as the `jinad.daemon` label, so
//! several daemons can share one engine and each reconciles only its own objects.

use std::io::ErrorKind;
use std::path::Path;

use uuid::Uuid;

const FILE: &str = "daemon-id";

/// Read `<data>/daemon-id`, or create it (`jinad-<uuid>`) on first start.
pub fn load_or_create(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if valid(text.trim()) => return Ok(text.trim().to_string()),
        Ok(text) => {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("{} holds `{}`, not a daemon id", path.display(), text.trim()),
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("jinad-{}", Uuid::new_v4());
    // Write then rename, so a crash never leaves a half-written id.
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

fn valid(text: &str) -> bool {
    text.strip_prefix("jinad-").is_some_and(|u| Uuid::parse_str(u).is_ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn persists() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::load_or_create(dir.path()).unwrap();
        let b = super::load_or_create(dir.path()).unwrap();
        assert_eq!(a, b);
        std::fs::write(dir.path().join("daemon-id"), "garbage").unwrap();
        assert!(super::load_or_create(dir.path()).is_err());
    }
}
