//! Build logs: one plain-text file per workspace under `<data>/logs/`, rewritten by every build and
//! streamed by `GET /workspaces/{id}/logs`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ids::ObjectId;

pub fn path(logs_dir: &Path, id: &ObjectId) -> PathBuf {
    logs_dir.join(format!("{id}.log"))
}

/// An open log; every line is written through at once so followers see it.
pub struct BuildLog {
    file: Option<File>,
}

impl BuildLog {
    /// Start a fresh log for a new build.
    pub fn create(logs_dir: &Path, id: &ObjectId) -> Self {
        let file = std::fs::create_dir_all(logs_dir).and_then(|_| File::create(path(logs_dir, id)));
        if let Err(e) = &file {
            tracing::warn!(%id, "cannot write the build log: {e}");
        }
        BuildLog { file: file.ok() }
    }

    /// Append to the existing log (reconciliation notes, retries).
    pub fn append(logs_dir: &Path, id: &ObjectId) -> Self {
        let file = std::fs::create_dir_all(logs_dir)
            .and_then(|_| OpenOptions::new().create(true).append(true).open(path(logs_dir, id)));
        BuildLog { file: file.ok() }
    }

    /// A line from Docker's build output.
    pub fn line(&mut self, text: &str) {
        if let Some(file) = self.file.as_mut() {
            let _ = writeln!(file, "{}", text.trim_end_matches(['\r', '\n']));
        }
    }

    /// A line from jinad itself.
    pub fn note(&mut self, text: &str) {
        self.line(&format!("[jinad] {text}"));
    }
}
