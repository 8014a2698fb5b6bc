//! The start job of a PENDING flow, pod or pea: wait for its workspace's image, plan the
//! containers, remove what an interrupted earlier start left, start every container, and wait
//! until the Flow's gateway (or every node of a pod) answers — or a container exits, or the
//! start times out. ACTIVE records the containers and the published addresses; FAILED the
//! reason with the failing container's last log lines, after collecting every container's
//! output into the row's log and removing them (nothing is left half-started).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::containers::{self, Placement, FAILURE_LINES};
use super::Outcome;
use crate::daemon::Daemon;
use crate::deployment::{self, plan, FlowRequest, PodRequest};
use crate::docker::DockerError;
use crate::error::Code;
use crate::ids::{Kind, ObjectId};
use crate::runtime::message::ControlRequest;
use crate::runtime::sockets;
use crate::state::State;
use crate::store::{ContainerRecord, DeploymentChange, StoreError};

/// How often readiness and the containers are looked at while starting.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// Why a start ended without ACTIVE.
enum Stop {
    /// Worth retrying as it is (the engine or the database is unreachable).
    Retry(String),
    Fail(Code, String),
    /// The row moved on (deleted meanwhile): nothing more to do here.
    Moved,
}

impl From<DockerError> for Stop {
    fn from(e: DockerError) -> Self {
        if e.is_retryable() {
            Stop::Retry(e.to_string())
        } else {
            Stop::Fail(Code::ContainerStartFailed, e.to_string())
        }
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } | StoreError::NotFound(_) => Stop::Moved,
            other => Stop::Retry(other.to_string()),
        }
    }
}

pub async fn run(daemon: &Arc<Daemon>, id: &ObjectId) -> Outcome {
    match start(daemon, id).await {
        Ok(outcome) => outcome,
        Err(Stop::Retry(reason)) => Outcome::Retry(reason),
        Err(Stop::Moved) => Outcome::Done,
        Err(Stop::Fail(code, message)) => fail(daemon, id, code, message).await,
    }
}

/// Collects the containers' output, removes them, and moves the row to FAILED.
pub async fn fail(daemon: &Daemon, id: &ObjectId, code: Code, message: String) -> Outcome {
    tracing::warn!(%id, code = code.as_str(), "start failed: {message}");
    let mut records = Vec::new();
    if let Ok(found) = containers::of_row(daemon, id).await {
        for (pea, docker_id, name) in found {
            if let Ok(mut record) = containers::observe(daemon, &pea, &docker_id).await {
                record.name = name;
                records.push(record);
            }
        }
    }
    match containers::collect_and_remove(daemon, id).await {
        // What the row shows: how each container ended, and that it is gone now.
        Ok(()) => records.iter_mut().for_each(|r| r.state = format!("removed after {}", r.state)),
        Err(e) if e.is_retryable() => return Outcome::Retry(e.to_string()),
        Err(e) => tracing::warn!(%id, "cannot remove the containers of a failed start: {e}"),
    }
    let Ok(row) = daemon.store.get_deployment(id).await else { return Outcome::Done };
    if !matches!(row.state, State::Pending | State::Active) {
        return Outcome::Done;
    }
    let change = DeploymentChange::Fail { code: code.as_str().into(), message, containers: records };
    match daemon.store.transition_deployment(id, row.seen(), change).await {
        Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Outcome::Done,
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

async fn start(daemon: &Arc<Daemon>, id: &ObjectId) -> Result<Outcome, Stop> {
    let row = daemon.store.get_deployment(id).await?;
    if row.state != State::Pending {
        return Ok(Outcome::Done);
    }
    let kind = row.kind().ok_or_else(|| Stop::Fail(Code::Internal, format!("unknown kind `{}`", row.kind)))?;
    let ws_id = row.workspace().ok_or_else(|| Stop::Fail(Code::Internal, "bad workspace id".into()))?;
    let ws = match daemon.store.get_workspace(&ws_id).await {
        Ok(ws) => ws,
        Err(StoreError::NotFound(_)) => return Err(Stop::Fail(Code::WorkspaceFailed, format!("{ws_id} is gone"))),
        Err(e) => return Err(Stop::Retry(e.to_string())),
    };
    let (image, network) = match (ws.state, ws.image_id.clone(), ws.network_id.clone()) {
        (State::Pending, ..) => return Ok(Outcome::Waiting),
        (State::Active, Some(image), Some(network)) => (image, network),
        (state, ..) => {
            let reason = ws.error_message.clone().map(|m| format!(": {m}")).unwrap_or_default();
            return Err(Stop::Fail(Code::WorkspaceFailed, format!("{ws_id} is {state}{reason}")));
        }
    };
    let root = crate::workspace::dir(daemon, &ws_id);
    let spec = row.spec_json();
    let (planned, placement) = match kind {
        Kind::Flow => {
            let req: FlowRequest = serde_json::from_value(spec).map_err(|e| Stop::Fail(Code::Internal, e.to_string()))?;
            // Checked again: the workspace's files may have changed since the request.
            let flow = deployment::check_flow(&root, &req.filename, &req.envs).map_err(|e| Stop::Fail(Code::InvalidFlow, e))?;
            let planned = plan::flow(id, &flow.spec, &flow.yaml_in_container);
            let envs = req.envs.into_iter().collect();
            (planned, Placement { image, network, workspace: ws_id.clone(), envs, limits: req.limits, restart: req.restart })
        }
        Kind::Pod | Kind::Pea => {
            let req: PodRequest = serde_json::from_value(spec).map_err(|e| Stop::Fail(Code::Internal, e.to_string()))?;
            let pod = deployment::check_pod(&root, kind, &req).map_err(|e| Stop::Fail(Code::InvalidPod, e))?;
            let planned = plan::pod(id, &req.name, &pod.peas, &pod.args, &pod.outputs);
            (planned, Placement { image, network, workspace: ws_id.clone(), envs: Vec::new(), limits: req.limits, restart: req.restart })
        }
        Kind::Workspace => return Err(Stop::Fail(Code::Internal, "a workspace is not a deployment".into())),
    };
    let starting = planned
        .iter()
        .map(|p| ContainerRecord { pea: p.pea.clone(), name: p.name.clone(), state: "starting".into(), ..Default::default() })
        .collect();
    let row = daemon.store.transition_deployment(id, row.seen(), DeploymentChange::StartAttempt { containers: starting }).await?;
    // A start a crash interrupted may have left some containers: begin from none.
    containers::collect_and_remove(daemon, id).await?;
    for node in &planned {
        daemon.engine.run_container(&containers::container_spec(daemon, &row, &placement, node)).await?;
    }
    let (records, gateway_url, ports) = wait_ready(daemon, id, kind, &planned).await?;
    let row = daemon.store.get_deployment(id).await?;
    if row.state != State::Pending {
        return Ok(Outcome::Done);
    }
    daemon.store.transition_deployment(id, row.seen(), DeploymentChange::Activate { containers: records, gateway_url, ports }).await?;
    tracing::info!(%id, "started {} containers", planned.len());
    Ok(Outcome::Done)
}

type Ready = (Vec<ContainerRecord>, Option<String>, Option<serde_json::Value>);

async fn wait_ready(daemon: &Daemon, id: &ObjectId, kind: Kind, planned: &[plan::Planned]) -> Result<Ready, Stop> {
    let deadline = Instant::now() + Duration::from_secs(daemon.config.start_timeout.max(1));
    let host = daemon.config.advertised_host(None);
    let probe_ip = match daemon.config.publish_ip() { ip if ip.is_unspecified() => "127.0.0.1".to_string(), ip => ip.to_string() };
    loop {
        // A DELETE meanwhile ends the start; the stop job removes the containers.
        if daemon.store.get_deployment(id).await?.state != State::Pending {
            return Err(Stop::Moved);
        }
        let mut records = Vec::new();
        let mut published: Vec<(&plan::Planned, std::collections::BTreeMap<u16, u16>)> = Vec::new();
        let mut gateway_ip = None;
        for node in planned {
            let status = daemon.engine.inspect_container(&node.name).await?;
            let Some(status) = status else {
                return Err(Stop::Fail(Code::ContainerMissing, format!("{}: its container {} vanished while starting", node.pea, node.name)));
            };
            if !status.running && !status.restarting {
                let code = status.exit_code.map_or("unknown".to_string(), |c| c.to_string());
                let oom = if status.oom_killed { " (out of memory)" } else { "" };
                let lines = containers::last_lines(daemon, &node.name, FAILURE_LINES).await;
                return Err(Stop::Fail(Code::ContainerExited, format!("{} exited with code {code}{oom} while starting:\n{lines}", node.pea)));
            }
            records.push(ContainerRecord {
                pea: node.pea.clone(),
                name: node.name.clone(),
                id: status.id.clone(),
                state: "running".into(),
                exit_code: None,
                restarts: status.restart_count,
            });
            if gateway_ip.is_none() {
                gateway_ip = status.ips.first().cloned();
            }
            published.push((node, status.ports));
        }
        let ready = match kind {
            Kind::Flow => match published.first().and_then(|(_, p)| p.get(&plan::HTTP_PORT)) {
                Some(port) if http_ready(&probe_ip, *port).await => {
                    // The gateway on the workspace network too: from the daemon's host it is
                    // reachable there without the engine's port proxy (about 1.5x the throughput).
                    let direct = gateway_ip.as_ref().map(|ip| format!("http://{ip}:{}", plan::HTTP_PORT));
                    Some((Some(format!("http://{host}:{port}")), direct.map(|d| json!({"gateway_direct_url": d}))))
                }
                _ => None,
            },
            _ => pods_ready(&probe_ip, &host, &published).await.map(|ports| (None, Some(ports))),
        };
        if let Some((url, ports)) = ready {
            return Ok((records, url, ports));
        }
        if Instant::now() > deadline {
            let mut message = format!("not ready within {} s (--start-timeout)", daemon.config.start_timeout);
            for node in planned {
                message.push_str(&format!("\n[{}]\n{}", node.pea, containers::last_lines(daemon, &node.name, 5).await));
            }
            return Err(Stop::Fail(Code::StartTimeout, message));
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// `GET /ready` of a gateway answers 200.
async fn http_ready(ip: &str, port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        stream.write_all(format!("GET /ready HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(1), attempt).await.ok().flatten().unwrap_or(false)
}

/// Every node of a pod answers `status` on its published control port; returns the addresses.
async fn pods_ready(ip: &str, host: &str, published: &[(&plan::Planned, std::collections::BTreeMap<u16, u16>)]) -> Option<serde_json::Value> {
    let mut peas = serde_json::Map::new();
    for (node, ports) in published {
        let ctrl = *ports.get(&plan::CTRL_PORT)?;
        let probe = format!("tcp://{ip}:{ctrl}");
        let ok = tokio::task::spawn_blocking(move || sockets::control(&probe, ControlRequest::Status, Duration::from_millis(300)))
            .await
            .ok()?
            .ok()?
            .ready;
        if !ok {
            return None;
        }
        peas.insert(node.pea.clone(), json!(format!("tcp://{host}:{ctrl}")));
    }
    let mut out = serde_json::Map::new();
    for (node, ports) in published {
        for (name, port) in &node.bound_outputs {
            out.insert(name.clone(), json!(format!("tcp://{host}:{}", ports.get(port)?)));
        }
    }
    let (_, ports) = published.first()?;
    Some(json!({
        "in": format!("tcp://{host}:{}", ports.get(&plan::DATA_PORT)?),
        "ctrl": format!("tcp://{host}:{}", ports.get(&plan::CTRL_PORT)?),
        "peas": peas,
        "out": out,
    }))
}
