//! The `.jinad` `run` container: JinaD's end-to-end project. A workspace whose `.jinad` says
//! `run = "python app.py"` gets one container `<workspace id>-run` of its image running that
//! command (through `sh -c`), with the `.jinad` `ports` published; a rebuild replaces it. Its
//! name, state and host ports show on the workspace row.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::containers::{self, STOP_GRACE};
use crate::daemon::Daemon;
use crate::docker::{labels, ContainerStatus, DockerError};
use crate::ids::ObjectId;
use crate::workspace::jinad_file::JinadSettings;

pub fn container_name(id: &ObjectId) -> String {
    format!("{id}-run")
}

/// Removes the previous project container and, when `.jinad` has `run`, starts it on `image`.
/// Returns what the row shows.
pub async fn restart(daemon: &Daemon, id: &ObjectId, image: &str, network: &str, settings: &JinadSettings) -> Result<Option<Value>, DockerError> {
    let name = container_name(id);
    if daemon.engine.inspect_container(&name).await?.is_some() {
        daemon.engine.stop_container(&name, STOP_GRACE).await?;
        daemon.engine.remove_container(&name).await?;
    }
    let Some(run) = &settings.run else { return Ok(None) };
    let mut labels = labels::for_row(&daemon.daemon_id, id.as_str(), id.as_str());
    labels.insert(labels::ROLE.into(), "project".into());
    labels.insert(labels::PEA.into(), "run".into());
    let spec = crate::docker::ContainerSpec {
        entrypoint: Some(vec!["sh".into(), "-c".into(), run.clone()]),
        labels,
        publish: settings.ports.clone(),
        ..containers::in_workspace(daemon, id, &name, image, network)
    };
    daemon.engine.run_container(&spec).await?;
    let status = daemon.engine.inspect_container(&name).await?;
    Ok(Some(view(daemon, &name, status.as_ref())))
}

/// The row's JSON for the project container as the engine reports it now.
pub fn view(daemon: &Daemon, name: &str, status: Option<&ContainerStatus>) -> Value {
    let host = daemon.config.advertised_host(None);
    let ports: BTreeMap<String, String> =
        status.map(|s| s.ports.iter().map(|(c, h)| (c.to_string(), format!("{host}:{h}"))).collect()).unwrap_or_default();
    let state = match status {
        None => "missing",
        Some(s) if s.running => "running",
        Some(s) if s.restarting => "restarting",
        Some(_) => "exited",
    };
    json!({"container": name, "state": state, "exit_code": status.filter(|s| !s.running).and_then(|s| s.exit_code), "ports": ports})
}
