//! What start and stop jobs and reconciliation share about a deployment's containers: the
//! container spec of a planned node, collecting logs before containers go, and removing them.

use std::time::Duration;

use crate::build_log::BuildLog;
use crate::daemon::Daemon;
use crate::deployment::plan::Planned;
use crate::deployment::WORKSPACE_MOUNT;
use crate::docker::{labels, ContainerSpec, DockerError, Limits, RestartPolicy};
use crate::ids::ObjectId;
use crate::store::{ContainerRecord, DeploymentRow};
use crate::workspace::dockerfile::BINARY_PATH;
use crate::workspace::paths::CONTAINER_USER;

/// How long a pea has after SIGTERM to persist and exit.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Log lines of a failing container kept in `error_message`.
pub const FAILURE_LINES: usize = 20;

pub struct Placement {
    pub image: String,
    pub network: String,
    pub workspace: ObjectId,
    pub envs: Vec<(String, String)>,
    pub limits: Limits,
    pub restart: RestartPolicy,
}

/// A container of the workspace: its image, on its network, the workspace directory mounted at
/// `/workspace` (its working directory), running as the directory's owner, never root (see
/// `paths::container_user`), reaching the host as `host.docker.internal`; nothing more.
pub fn in_workspace(daemon: &Daemon, workspace: &ObjectId, name: &str, image: &str, network: &str) -> ContainerSpec {
    let dir = crate::workspace::dir(daemon, workspace);
    let user = match crate::workspace::paths::container_user(&dir) {
        Ok(user) => Some(user),
        Err(e) => {
            tracing::warn!(%workspace, "cannot hand the workspace to the container user: {e}; running as {}:{}", CONTAINER_USER.0, CONTAINER_USER.1);
            Some(format!("{}:{}", CONTAINER_USER.0, CONTAINER_USER.1))
        }
    };
    ContainerSpec {
        name: name.to_string(),
        image: image.to_string(),
        user,
        network: Some(network.to_string()),
        binds: vec![format!("{}:{WORKSPACE_MOUNT}", dir.display())],
        workdir: Some(WORKSPACE_MOUNT.to_string()),
        publish_ip: daemon.config.publish_ip().to_string(),
        extra_hosts: vec!["host.docker.internal:host-gateway".to_string()],
        ..Default::default()
    }
}

pub fn container_spec(daemon: &Daemon, row: &DeploymentRow, at: &Placement, node: &Planned) -> ContainerSpec {
    ContainerSpec {
        entrypoint: Some(vec![BINARY_PATH.to_string()]),
        cmd: node.args.clone(),
        env: at.envs.clone(),
        labels: labels::for_deployment(&daemon.daemon_id, &row.id, at.workspace.as_str(), &row.kind, &node.pea),
        publish: node.publish.clone(),
        limits: at.limits,
        restart: at.restart,
        ..in_workspace(daemon, &at.workspace, &node.name, &at.image, &at.network)
    }
}

/// The row's containers on the engine, as (pea, docker id, name).
pub async fn of_row(daemon: &Daemon, id: &ObjectId) -> Result<Vec<(String, String, String)>, DockerError> {
    let mut found: Vec<(String, String, String)> = daemon
        .engine
        .own_containers(&[(labels::ID, id.as_str())])
        .await?
        .into_iter()
        .map(|c| (c.labels.get(labels::PEA).cloned().unwrap_or_default(), c.docker_id, c.name.trim_start_matches('/').to_string()))
        .collect();
    found.sort_by(|a, b| a.2.cmp(&b.2));
    Ok(found)
}

/// Appends every container's output to the row's log, each line prefixed with its pea, then
/// stops (SIGTERM, so executors persist) and removes the containers. The log stays after them.
pub async fn collect_and_remove(daemon: &Daemon, id: &ObjectId) -> Result<(), DockerError> {
    let containers = of_row(daemon, id).await?;
    for (pea, docker_id, _) in &containers {
        daemon.engine.stop_container(docker_id, STOP_GRACE).await?;
        let lines = daemon.engine.container_logs(docker_id, 100_000).await?;
        let mut log = BuildLog::append(&daemon.config.logs_dir(), id);
        for line in lines {
            log.line(&format!("[{pea}] {line}"));
        }
        drop(log);
        daemon.engine.remove_container(docker_id).await?;
    }
    Ok(())
}

/// The last lines of one container, for a FAILED row's message.
pub async fn last_lines(daemon: &Daemon, name: &str, n: usize) -> String {
    match daemon.engine.container_logs(name, n).await {
        Ok(lines) if lines.is_empty() => "(no output)".to_string(),
        Ok(lines) => lines.join("\n"),
        Err(e) => format!("(its logs cannot be read: {e})"),
    }
}

/// A record of what the engine says about a container now.
pub async fn observe(daemon: &Daemon, pea: &str, name: &str) -> Result<ContainerRecord, DockerError> {
    Ok(match daemon.engine.inspect_container(name).await? {
        None => ContainerRecord { pea: pea.into(), name: name.into(), state: "missing".into(), ..Default::default() },
        Some(s) => ContainerRecord {
            pea: pea.into(),
            name: name.into(),
            id: s.id,
            state: if s.running { "running" } else if s.restarting { "restarting" } else { "exited" }.into(),
            exit_code: if s.running { None } else { s.exit_code },
            restarts: s.restart_count,
        },
    })
}
