//! `GET /flows/{id}/export`: a flow the daemon runs, as manifests for its workspace image.

use super::{compose, kubernetes, ExportError, ExportOptions, Topology};
use crate::daemon::Daemon;
use crate::deployment::{self, FlowRequest};
use crate::ids::ObjectId;
use crate::state::State;
use crate::store::StoreError;

/// The formats of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Compose,
    Kubernetes,
}

/// What an export hands back: a Compose file, or the Kubernetes manifests as a tar.gz.
pub enum Exported {
    Compose(String),
    Kubernetes(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum ExportFailure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    /// The workspace has no image to export (PENDING, FAILED, or being deleted).
    #[error("{0}")]
    NoImage(String),
}

impl From<ExportError> for ExportFailure {
    fn from(ExportError(m): ExportError) -> Self {
        ExportFailure::Invalid(m)
    }
}

/// The manifests of flow `id` (its YAML as the workspace holds it now, its `envs`, `limits` and
/// `restart`), running its workspace's image (`jworkspace:<uuid>`, which holds the files at
/// `/workspace`). `port`: the gateway's published port.
/// `id` is a flow's id.
/// `image`: what the manifests run instead (the workspace image pushed to a registry).
pub async fn flow(daemon: &Daemon, id: &ObjectId, format: Format, namespace: &str, port: u16, image: Option<String>) -> Result<Exported, ExportFailure> {
    let row = daemon.store.get_deployment(id).await?;
    let request: FlowRequest = serde_json::from_value(row.spec_json()).map_err(|e| ExportFailure::Invalid(format!("{id}: its request cannot be read: {e}")))?;
    let ws_id = row.workspace().ok_or_else(|| ExportFailure::Invalid(format!("{id}: bad workspace id")))?;
    let ws = daemon.store.get_workspace(&ws_id).await?;
    let image = match (ws.state, ws.image_tag.clone(), image) {
        (State::Active, Some(_), Some(given)) => given,
        (State::Active, Some(tag), None) => tag,
        (State::Pending, ..) => return Err(ExportFailure::NoImage(format!("{ws_id} is PENDING: it has no image to export yet"))),
        (state, ..) => return Err(ExportFailure::NoImage(format!("{ws_id} is {state}: it has no image to export"))),
    };
    let root = crate::workspace::dir(daemon, &ws_id);
    let checked = deployment::check_flow(&root, &request.filename, &request.envs).map_err(ExportFailure::Invalid)?;
    let options = ExportOptions {
        image,
        flow_path: checked.yaml_in_container.clone(),
        port,
        limits: request.limits,
        restart: request.restart,
        env: request.envs.clone(),
    };
    let name = request.filename.rsplit('/').next().unwrap_or(&request.filename).to_string();
    let topology = Topology::of(&checked.text, &name, options)?;
    Ok(match format {
        Format::Compose => Exported::Compose(compose::render(&topology)?),
        Format::Kubernetes => Exported::Kubernetes(kubernetes::tar_gz(&kubernetes::render(&topology, namespace)?, &id.to_string())?),
    })
}
