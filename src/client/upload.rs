//! `jinad workspaces create DIR`: pack the directory, upload it with a progress bar, then show
//! the build log live until the workspace is ACTIVE (exit 0, its id on stdout) or FAILED (exit 1
//! with the reason).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::blocking::multipart::{Form, Part};
use reqwest::Method;

use super::Connection;
use crate::api::workspaces::WorkspaceView;
use crate::state::State;

/// What became of an upload.
pub struct Created {
    pub workspace: WorkspaceView,
    /// Bytes sent and how long sending took.
    pub sent: u64,
    pub upload_time: Duration,
}

/// Packs and uploads `dir` as a new workspace; with `wait`, follows the build to its end.
pub fn create(connection: &Connection, dir: &Path, wait: bool, timeout: Duration) -> Result<Created, String> {
    let spinner = ProgressBar::new_spinner().with_message(format!("packing {}", dir.display()));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let packed = super::pack::pack(dir);
    spinner.finish_and_clear();
    let packed = packed?;
    eprintln!("packed {} files ({}) into {}", packed.files, human(packed.content), human(packed.size));

    let bar = ProgressBar::new(packed.size).with_style(
        ProgressStyle::with_template("uploading [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let file = std::fs::File::open(packed.file.path()).map_err(|e| format!("temporary archive: {e}"))?;
    let part = Part::reader_with_length(bar.wrap_read(file), packed.size)
        .file_name("project.tar.gz")
        .mime_str("application/gzip")
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let request = connection.streaming(Method::POST, "/workspaces").multipart(Form::new().part("files", part));
    let workspace: WorkspaceView = connection.call(request).map_err(|e| format!("upload refused: {e}"))?;
    let upload_time = started.elapsed();
    bar.finish_and_clear();
    eprintln!("uploaded {} in {:.1} s: {} {}", human(packed.size), upload_time.as_secs_f64(), workspace.id, workspace.state);
    let created = Created { workspace, sent: packed.size, upload_time };
    if !wait {
        return Ok(created);
    }
    let workspace = follow_build(connection, &created.workspace.id, timeout)?;
    Ok(Created { workspace, ..created })
}

/// Streams the build log to stderr until the workspace leaves PENDING; its final view.
pub fn follow_build(connection: &Connection, id: &str, timeout: Duration) -> Result<WorkspaceView, String> {
    let deadline = Instant::now() + timeout;
    let logs = connection.send(connection.streaming(Method::GET, &format!("/workspaces/{id}/logs?follow=true")));
    match logs {
        Ok(response) => {
            let mut stderr = std::io::stderr().lock();
            for line in BufReader::new(response).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(stderr, "  | {line}");
            }
        }
        Err(e) => eprintln!("cannot follow the build log ({e}); waiting for the build"),
    }
    loop {
        let view: WorkspaceView = connection.call(connection.get(&format!("/workspaces/{id}"))).map_err(|e| format!("{id}: {e}"))?;
        match view.state {
            State::Active => {
                eprintln!("{id} ACTIVE: image {}", view.image_tag.as_deref().unwrap_or("-"));
                return Ok(view);
            }
            State::Failed => {
                return Err(format!(
                    "{id} FAILED {}: {}",
                    view.error_code.as_deref().unwrap_or("?"),
                    view.error_message.as_deref().unwrap_or("")
                ))
            }
            State::Deleting => return Err(format!("{id} is being deleted")),
            State::Pending if Instant::now() > deadline => {
                return Err(format!("{id} is still PENDING after {} s (--timeout)", timeout.as_secs()))
            }
            State::Pending => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// `12.3 MiB`.
pub fn human(bytes: u64) -> String {
    indicatif::BinaryBytes(bytes).to_string()
}
