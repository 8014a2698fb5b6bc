//! The client's commands and what each does.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use reqwest::Method;

use super::{output, upload, ConnectArgs, Connection};
use crate::api::deployments::DeploymentView;
use crate::api::events::{EventPage, EventView, MAX_PAGE};
use crate::api::workspaces::WorkspaceView;
use crate::deployment::FlowRequest;
use crate::state::State;

#[derive(Debug, Clone, Args)]
pub struct ClientArgs<C: Subcommand> {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: C,
}

#[derive(Debug, Clone, Subcommand)]
pub enum WorkspaceCommand {
    /// Upload a directory as a workspace (honours `.jinadignore`), show the build, print its id.
    #[command(visible_alias = "upload")]
    Create {
        dir: PathBuf,
        /// Print the id once uploaded; do not wait for the build.
        #[arg(long, short)]
        detach: bool,
        /// Seconds the build may take before the command gives up waiting (the build goes on).
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    #[command(flatten)]
    Object(ObjectCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub enum FlowCommand {
    /// Start a Flow of a workspace, wait until it serves, print its gateway URL.
    Start {
        /// The workspace (`jworkspace-…`).
        workspace: String,
        /// The Flow YAML, relative to the workspace.
        #[arg(long, short, default_value = "flow.yml")]
        file: String,
        /// `NAME=VALUE` for every container (`${{ ENV.NAME }}` in the YAML), repeatable.
        #[arg(long = "env", short)]
        envs: Vec<String>,
        /// Print the id once queued; do not wait.
        #[arg(long, short)]
        detach: bool,
        /// Seconds to wait for it to serve.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    #[command(flatten)]
    Object(ObjectCommand),
}

/// What every kind of object has: workspaces, flows, pods and peas (pods and peas are created
/// by Flows elsewhere or `POST /pods`, and only listed, inspected, removed and followed here).
#[derive(Debug, Clone, Subcommand)]
pub enum ObjectCommand {
    /// List them: a table, `--json` for the API's objects, `-q` for the ids.
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Print them as JSON, as the API shows them.
    Inspect { ids: Vec<String> },
    /// Delete them (a workspace: with everything that runs in it).
    #[command(visible_alias = "delete")]
    Rm(RemoveArgs),
    /// Print the logs: a workspace's build log, or the containers' output.
    Logs(LogArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Print JSON (the API's own objects) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print the ids only.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RemoveArgs {
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Wait until they are gone.
    #[arg(long, short)]
    pub wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    pub id: String,
    /// Keep streaming new lines.
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Debug, Clone, Args)]
pub struct EventArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Only events after this `seq` or UTC time (`2026-01-31T12:00:00Z`).
    #[arg(long)]
    pub since: Option<String>,
    /// Only this object's events (a workspace: also those of what runs in it).
    #[arg(long)]
    pub object: Option<String>,
    /// Keep streaming new events.
    #[arg(long, short)]
    pub follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the daemon's report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn fail(e: super::CallError) -> String {
    e.to_string()
}

pub fn workspaces(args: ClientArgs<WorkspaceCommand>) -> Result<(), String> {
    let c = Connection::open(&args.connect)?;
    match args.command {
        WorkspaceCommand::Create { dir, detach, timeout } => {
            let created = upload::create(&c, &dir, !detach, Duration::from_secs(timeout))?;
            println!("{}", created.workspace.id);
            Ok(())
        }
        WorkspaceCommand::Object(command) => object::<WorkspaceView>(&c, "workspaces", command, |r| &r.id, output::workspaces),
    }
}

pub fn flows(args: ClientArgs<FlowCommand>) -> Result<(), String> {
    let c = Connection::open(&args.connect)?;
    match args.command {
        FlowCommand::Start { workspace, file, envs, detach, timeout } => {
            let mut env = BTreeMap::new();
            for pair in envs {
                let (name, value) = pair.split_once('=').ok_or_else(|| format!("--env {pair}: say NAME=VALUE"))?;
                env.insert(name.to_string(), value.to_string());
            }
            let request = FlowRequest { workspace_id: workspace, filename: file, envs: env, limits: Default::default(), restart: Default::default() };
            let flow: DeploymentView = c.call(c.post("/flows").json(&request)).map_err(fail)?;
            eprintln!("{} {}", flow.id, flow.state);
            if detach {
                println!("{}", flow.id);
                return Ok(());
            }
            let flow = wait_deployment(&c, "flows", &flow.id, Duration::from_secs(timeout))?;
            println!("{}", flow.gateway_url.as_deref().unwrap_or(&flow.id));
            Ok(())
        }
        FlowCommand::Object(command) => object::<DeploymentView>(&c, "flows", command, |r| &r.id, output::deployments),
    }
}

/// `plural`: `pods` or `peas`.
pub fn deployments(plural: &str, args: ClientArgs<ObjectCommand>) -> Result<(), String> {
    let c = Connection::open(&args.connect)?;
    object::<DeploymentView>(&c, plural, args.command, |r| &r.id, output::deployments)
}

/// `ls`, `inspect`, `rm`, `logs` of one kind (`plural`: its path), whose view is `T`.
fn object<T: serde::de::DeserializeOwned + serde::Serialize>(
    c: &Connection,
    plural: &str,
    command: ObjectCommand,
    id: impl Fn(&T) -> &String,
    table: impl Fn(&[T]) -> String,
) -> Result<(), String> {
    match command {
        ObjectCommand::Ls(list) => {
            let rows: Vec<T> = c.call(c.get(&format!("/{plural}"))).map_err(fail)?;
            print_list(&list, &rows, id, table)
        }
        ObjectCommand::Inspect { ids } => inspect::<T>(c, plural, &ids),
        ObjectCommand::Rm(remove) => remove_all(c, plural, &remove),
        ObjectCommand::Logs(logs) => stream_logs(c, plural, &logs),
    }
}

fn print_list<T: serde::Serialize>(list: &ListArgs, rows: &[T], id: impl Fn(&T) -> &String, table: impl Fn(&[T]) -> String) -> Result<(), String> {
    let text = if list.json {
        output::json(&rows)
    } else if list.quiet {
        rows.iter().map(|r| format!("{}\n", id(r))).collect()
    } else {
        table(rows)
    };
    print!("{text}");
    Ok(())
}

/// Like `docker inspect`: a JSON array of the objects; exit 1 if one of them is missing.
fn inspect<T: serde::de::DeserializeOwned + serde::Serialize>(c: &Connection, plural: &str, ids: &[String]) -> Result<(), String> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for id in ids {
        match c.call::<T>(c.get(&format!("/{plural}/{}", id_segment(id)?))) {
            Ok(view) => found.push(view),
            Err(e) => missing.push(format!("{id}: {e}")),
        }
    }
    print!("{}", output::json(&found));
    match missing.is_empty() {
        true => Ok(()),
        false => Err(missing.join("\n")),
    }
}

fn remove_all(c: &Connection, plural: &str, remove: &RemoveArgs) -> Result<(), String> {
    let mut errors = Vec::new();
    for id in &remove.ids {
        match c.send(c.delete(&format!("/{plural}/{}", id_segment(id)?))) {
            Ok(_) => {
                if remove.wait {
                    if let Err(e) = wait_gone(c, plural, id) {
                        errors.push(e);
                        continue;
                    }
                }
                println!("{id}");
            }
            Err(e) => errors.push(format!("{id}: {e}")),
        }
    }
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("\n")),
    }
}

/// Until `GET` answers 404; a delete that ends FAILED is an error.
fn wait_gone(c: &Connection, plural: &str, id: &str) -> Result<(), String> {
    loop {
        match c.send(c.get(&format!("/{plural}/{}", id_segment(id)?))) {
            Err(super::CallError::Refused { status: 404, .. }) => return Ok(()),
            Err(e) => return Err(format!("{id}: {e}")),
            Ok(answer) => {
                let row: serde_json::Value = answer.json().unwrap_or_default();
                if row.get("state").and_then(|s| s.as_str()) == Some("FAILED") {
                    return Err(format!("{id}: the delete failed: {}", row.get("error_message").and_then(|m| m.as_str()).unwrap_or("")));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Until the flow (pod, pea) is ACTIVE; FAILED is an error with its reason.
fn wait_deployment(c: &Connection, plural: &str, id: &str, timeout: Duration) -> Result<DeploymentView, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let view: DeploymentView = c.call(c.get(&format!("/{plural}/{}", id_segment(id)?))).map_err(|e| format!("{id}: {e}"))?;
        match view.state {
            State::Active => {
                eprintln!("{id} ACTIVE");
                return Ok(view);
            }
            State::Failed => {
                return Err(format!("{id} FAILED {}: {}", view.error_code.as_deref().unwrap_or("?"), view.error_message.as_deref().unwrap_or("")))
            }
            State::Deleting => return Err(format!("{id} is being deleted")),
            State::Pending if Instant::now() > deadline => return Err(format!("{id} is still PENDING after {} s", timeout.as_secs())),
            State::Pending => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

fn stream_logs(c: &Connection, plural: &str, logs: &LogArgs) -> Result<(), String> {
    let path = format!("/{plural}/{}/logs?follow={}", id_segment(&logs.id)?, logs.follow);
    let mut response = c.send(c.streaming(Method::GET, &path)).map_err(fail)?;
    let mut stdout = std::io::stdout().lock();
    match std::io::copy(&mut response, &mut stdout) {
        Ok(_) => Ok(()),
        // `| head` closed the pipe: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("reading the logs: {e}")),
    }
}

pub fn events(args: EventArgs) -> Result<(), String> {
    let c = Connection::open(&args.connect)?;
    let print = |e: &EventView| -> bool {
        let line = if args.json { serde_json::to_string(e).unwrap_or_default() } else { output::event_line(e) };
        writeln!(std::io::stdout().lock(), "{line}").is_ok()
    };
    let mut query = Vec::new();
    if let Some(object) = &args.object {
        query.push(format!("object={}", segment(object)));
    }
    let mut since = args.since.clone().map(|s| segment(&s));
    if !args.follow {
        loop {
            let mut q = query.clone();
            q.push(format!("limit={MAX_PAGE}"));
            if let Some(since) = &since {
                q.push(format!("since={since}"));
            }
            let page: EventPage = c.call(c.get(&format!("/events?{}", q.join("&")))).map_err(fail)?;
            for event in &page.events {
                if !print(event) {
                    return Ok(());
                }
            }
            if page.events.len() < MAX_PAGE as usize {
                return Ok(());
            }
            since = Some(page.next.to_string());
        }
    }
    // Server-Sent Events; the daemon closes a stream after `--event-follow-max`: reconnect from
    // the last event seen, as an EventSource would (`Last-Event-ID`).
    loop {
        let mut q = query.clone();
        q.push("follow=true".into());
        if let Some(since) = &since {
            q.push(format!("since={since}"));
        }
        let response = c.send(c.streaming(Method::GET, &format!("/events?{}", q.join("&")))).map_err(fail)?;
        for line in BufReader::new(response).lines() {
            let Ok(line) = line else { break };
            let Some(data) = line.strip_prefix("data:") else { continue };
            let event: EventView = serde_json::from_str(data.trim()).map_err(|e| format!("an event the daemon sent: {e}"))?;
            since = Some(event.seq.to_string());
            if !print(&event) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn status(args: StatusArgs) -> Result<(), String> {
    let c = Connection::open(&args.connect)?;
    let status: crate::api::status::DaemonStatus = c.call(c.get("/status")).map_err(fail)?;
    print!("{}", output::json(&status));
    Ok(())
}

/// An object id as a URL path segment: ids are letters, digits and `-`; anything else (`..`, `/`,
/// an empty id) is refused here rather than resolved by URL normalisation into another path.
fn id_segment(id: &str) -> Result<String, String> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!("`{}` is not an id (`jworkspace-<uuid>`, `jflow-<uuid>`, …)", id.chars().take(70).collect::<String>()));
    }
    Ok(id.to_string())
}

/// An id or value as one URL path or query segment (ids are `[a-z0-9-]`; anything else is
/// percent-encoded so it reaches the daemon as given, to be refused there).
fn segment(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `POST /gc`: what was removed, and the cache's size before and after.
pub fn gc(args: GcArgs) -> Result<(), String> {
    let c = Connection::open(&args.connect)?;
    // The daemon waits up to 30 s for running builds, then collects.
    let report: crate::build_cache::GcReport = c.call(c.streaming(Method::POST, "/gc")).map_err(fail)?;
    if args.json {
        print!("{}", output::json(&report));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = report
        .removed_images
        .iter()
        .map(|i| vec![i.id.chars().take(19).collect(), upload::human(i.bytes), if i.tags.is_empty() { "(layer)".into() } else { i.tags.join(", ") }])
        .collect();
    if !rows.is_empty() {
        print!("{}", output::table(&["IMAGE", "FREED", "TAGS"], &rows));
    }
    for container in &report.removed_containers {
        println!("removed leaked build container {}", container.chars().take(12).collect::<String>());
    }
    println!(
        "freed {} ({} images, {} containers); the build cache holds {} (was {})",
        upload::human(report.freed_bytes),
        report.removed_images.len(),
        report.removed_containers.len(),
        upload::human(report.size_after),
        upload::human(report.size_before)
    );
    Ok(())
}
