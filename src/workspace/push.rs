//! `POST /workspaces/{id}/push`: a workspace image, tagged for a registry and pushed, so an
//! orchestrator elsewhere can pull it (what `jinad export` manifests name).

use crate::daemon::Daemon;
use crate::docker::DockerError;
use crate::ids::ObjectId;
use crate::state::State;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    InvalidReference(String),
    #[error("{0}")]
    NoImage(String),
    #[error("{0}")]
    Engine(String),
}

/// A pushed image: where, and the digest the registry stored it under (pull it by
/// `REPOSITORY@DIGEST`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Pushed {
    /// `REGISTRY/NAME:TAG` as asked.
    pub reference: String,
    /// `sha256:…` of the manifest in the registry.
    pub digest: String,
    /// `REGISTRY/NAME@sha256:…`: the image, immutably.
    pub pinned: String,
}

/// Splits `REGISTRY[:PORT]/NAME[:TAG]` into repository and tag (`latest` when none); refuses
/// what Docker would refuse, a digest, and a reference without a registry host (it would go to
/// Docker Hub).
pub fn split_reference(reference: &str) -> Result<(String, String), String> {
    let parsed = crate::docker::reference::parse(reference, true).map_err(|e| format!("{e} (expected REGISTRY[:PORT]/NAME[:TAG], e.g. 127.0.0.1:5000/search:v1)"))?;
    if parsed.digest.is_some() {
        return Err(format!("`{reference}`: a push names a tag, not a digest"));
    }
    Ok((parsed.repository, parsed.tag.unwrap_or_else(|| "latest".to_string())))
}

/// Where a push records the name it is about to put on the engine, until it has taken it off
/// again: what a `kill -9` leaves there is what the next start removes (and nothing else).
fn records(daemon: &Daemon) -> std::path::PathBuf {
    daemon.config.data_dir.join("pushes")
}

fn record_path(daemon: &Daemon, name: &str) -> std::path::PathBuf {
    use sha2::Digest;
    records(daemon).join(format!("{:x}", sha2::Sha256::digest(name.as_bytes())))
}

/// Tags workspace `id`'s image as `reference`, pushes it, and takes the tag off again (the image
/// stays owned by the workspace's own tag, so deleting the workspace still frees it; a tag the
/// engine already had under that name is put back). Pushes of one reference take turns: the tag
/// is shared, so two at once could push each other's image.
pub async fn push(daemon: &Daemon, id: &ObjectId, reference: &str) -> Result<Pushed, PushError> {
    let (repo, tag) = split_reference(reference).map_err(PushError::InvalidReference)?;
    let full = format!("{repo}:{tag}");
    let _turn = daemon.row_locks.lock_within(&format!("push#{full}"), std::time::Duration::from_secs(3600)).await;
    let ws = daemon.store.get_workspace(id).await?;
    let image = match (ws.state, ws.image_id.clone()) {
        (State::Active, Some(image)) => image,
        (State::Pending, _) => return Err(PushError::NoImage(format!("{id} is PENDING: it has no image to push yet"))),
        (state, _) => return Err(PushError::NoImage(format!("{id} is {state}: it has no image to push"))),
    };
    let engine = |e: DockerError| PushError::Engine(e.to_string());
    let previous = daemon.engine.image_id(&full).await.map_err(engine)?;
    let record = record_path(daemon, &full);
    let io = |e: std::io::Error| PushError::Engine(format!("cannot record the push: {e}"));
    tokio::fs::create_dir_all(records(daemon)).await.map_err(io)?;
    tokio::fs::write(&record, format!("{full}\n{}\n", previous.clone().unwrap_or_default())).await.map_err(io)?;
    let outcome = async {
        daemon.engine.tag_image(&image, &full).await?;
        daemon.engine.push_image(&repo, &tag).await
    }
    .await;
    // The push's names go whatever happened (the tag, and the `repo@digest` the engine records):
    // only the workspace's tag may own the image, or deleting the workspace would not free it.
    let mut names = vec![full.clone()];
    if let Ok(digest) = &outcome {
        names.push(format!("{repo}@{digest}"));
    }
    take_off(daemon, &names, previous.as_deref()).await;
    let _ = tokio::fs::remove_file(&record).await;
    let digest = outcome.map_err(engine)?;
    Ok(Pushed { reference: full, pinned: format!("{repo}@{digest}"), digest })
}

/// Removes `names` from the engine; the first (the tag) goes back to `previous` if it named
/// another image before.
async fn take_off(daemon: &Daemon, names: &[String], previous: Option<&str>) {
    for (i, name) in names.iter().enumerate() {
        let result = match previous {
            Some(before) if i == 0 => daemon.engine.tag_image(before, name).await,
            _ => daemon.engine.remove_image(name).await,
        };
        if let Err(e) = result {
            if !e.is_not_found() {
                tracing::warn!("cannot take {name} off the engine after a push: {e}");
            }
        }
    }
}

/// What pushes a `kill -9` interrupted left (their records): the tag goes, or back to the image
/// it named before. Run at start, before the API serves. Returns how many it cleaned.
pub async fn sweep_leftovers(daemon: &Daemon) -> Result<usize, DockerError> {
    let Ok(mut dir) = tokio::fs::read_dir(records(daemon)).await else { return Ok(0) };
    let mut cleaned = 0;
    while let Ok(Some(entry)) = dir.next_entry().await {
        let Ok(text) = tokio::fs::read_to_string(entry.path()).await else { continue };
        let mut lines = text.lines();
        let (Some(name), previous) = (lines.next(), lines.next().filter(|p| !p.is_empty())) else { continue };
        take_off(daemon, &[name.to_string()], previous).await;
        let _ = tokio::fs::remove_file(entry.path()).await;
        cleaned += 1;
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn references_need_a_registry_and_valid_parts() {
        assert_eq!(split_reference("127.0.0.1:5000/search:v1").unwrap(), ("127.0.0.1:5000/search".into(), "v1".into()));
        assert_eq!(split_reference("reg.example.com/team/search").unwrap(), ("reg.example.com/team/search".into(), "latest".into()));
        assert_eq!(split_reference("localhost/a:b").unwrap().0, "localhost/a");
        for bad in ["search:v1", "ubuntu", "127.0.0.1:5000/Search:v1", "127.0.0.1:5000/a:-x", "127.0.0.1:5000/a@sha256:00", "", "r.io/a b:c", "r.io//a", "r.io/x..y"] {
            assert!(split_reference(bad).is_err(), "{bad}");
        }
    }
}
