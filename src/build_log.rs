//! Build logs: one plain-text file per workspace under `<data>/logs/`, rewritten by every build and
//! streamed by `GET /workspaces/{id}/logs`. A log is capped (`--max-build-log`): past half the cap
//! the lines go to a bounded tail kept in memory, written after a `[jinad] … cut …` line when the
//! build ends, so the file holds the head and the tail and never more than about the cap.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ids::ObjectId;

pub fn path(logs_dir: &Path, id: &ObjectId) -> PathBuf {
    logs_dir.join(format!("{id}.log"))
}

/// An open log; every line of the head is written through at once so followers see it.
pub struct BuildLog {
    file: Option<File>,
    /// Bytes the head may still take.
    head_left: u64,
    /// Lines past the head, at most `tail_cap` bytes of them.
    tail: VecDeque<String>,
    tail_bytes: u64,
    tail_cap: u64,
    cut_lines: u64,
    cut_bytes: u64,
}

impl BuildLog {
    /// Start a fresh log for a new build, holding at most about `cap` bytes.
    pub fn create(logs_dir: &Path, id: &ObjectId, cap: u64) -> Self {
        let file = std::fs::create_dir_all(logs_dir).and_then(|_| File::create(path(logs_dir, id)));
        if let Err(e) = &file {
            tracing::warn!(%id, "cannot write the build log: {e}");
        }
        Self::with_file(file.ok(), cap)
    }

    /// Append a few notes to the existing log (reconciliation); not capped.
    pub fn append(logs_dir: &Path, id: &ObjectId) -> Self {
        let file = std::fs::create_dir_all(logs_dir)
            .and_then(|_| OpenOptions::new().create(true).append(true).open(path(logs_dir, id)));
        Self::with_file(file.ok(), u64::MAX)
    }

    fn with_file(file: Option<File>, cap: u64) -> Self {
        let half = cap / 2;
        BuildLog { file, head_left: cap - half, tail: VecDeque::new(), tail_bytes: 0, tail_cap: half, cut_lines: 0, cut_bytes: 0 }
    }

    /// A line from Docker's build output.
    pub fn line(&mut self, text: &str) {
        let line = format!("{}\n", text.trim_end_matches(['\r', '\n']));
        let size = line.len() as u64;
        if self.tail.is_empty() && size <= self.head_left {
            self.head_left -= size;
            if let Some(file) = self.file.as_mut() {
                let _ = file.write_all(line.as_bytes());
            }
            return;
        }
        self.head_left = 0;
        self.tail_bytes += size;
        self.tail.push_back(line);
        while self.tail_bytes > self.tail_cap {
            let Some(old) = self.tail.pop_front() else { break };
            self.tail_bytes -= old.len() as u64;
            self.cut_lines += 1;
            self.cut_bytes += old.len() as u64;
        }
    }

    /// A line from jinad itself.
    pub fn note(&mut self, text: &str) {
        self.line(&format!("[jinad] {text}"));
    }
}

impl Drop for BuildLog {
    /// Writes the tail (after a note of what was cut) when the build is over.
    fn drop(&mut self) {
        let Some(file) = self.file.as_mut() else { return };
        if self.cut_lines > 0 {
            let _ = writeln!(file, "[jinad] … {} lines ({} bytes) cut: the log keeps its head and its tail …", self.cut_lines, self.cut_bytes);
        }
        for line in self.tail.drain(..) {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_log_keeps_its_head_and_tail_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::mint(crate::ids::Kind::Workspace);
        {
            let mut log = BuildLog::create(dir.path(), &id, 1000);
            for i in 0..10_000 {
                log.line(&format!("line {i:05}"));
            }
            log.note("FAILED (build_failed): the end");
        }
        let text = std::fs::read_to_string(path(dir.path(), &id)).unwrap();
        assert!(text.len() < 1200, "{} bytes", text.len());
        assert!(text.starts_with("line 00000\n"), "{text}");
        assert!(text.contains("lines ("), "{text}");
        assert!(text.contains("line 09999\n"));
        assert!(text.ends_with("[jinad] FAILED (build_failed): the end\n"), "{text}");
    }
}
