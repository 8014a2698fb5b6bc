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
/// what Docker would refuse, and a reference without a registry host (it would go to Docker Hub).
pub fn split_reference(reference: &str) -> Result<(String, String), String> {
    let bad = |why: &str| format!("`{reference}`: {why} (expected REGISTRY[:PORT]/NAME[:TAG], e.g. 127.0.0.1:5000/search:v1)");
    if reference.is_empty() || reference.len() > 255 || reference.contains('@') {
        return Err(bad("not a tag reference"));
    }
    let (repo, tag) = match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    };
    let Some((registry, path)) = repo.split_once('/') else { return Err(bad("no registry")) };
    if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
        return Err(bad("the first part must be a registry host (with a `.` or a `:PORT`, or `localhost`)"));
    }
    let registry_ok = registry.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    let path_ok = !path.is_empty()
        && path.split('/').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
        });
    let tag_ok = !tag.is_empty() && tag.len() <= 128 && tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) && !tag.starts_with(['.', '-']);
    let port_ok = registry.rsplit_once(':').is_none_or(|(_, port)| port.parse::<u16>().is_ok_and(|p| p > 0));
    if !registry_ok || !port_ok {
        return Err(bad("not a valid registry host[:port]"));
    }
    if !path_ok {
        return Err(bad("a repository is lower-case letters, digits and `._-`, its parts separated by `/`"));
    }
    if !tag_ok {
        return Err(bad("a tag is at most 128 letters, digits and `._-`, not starting with `.` or `-`"));
    }
    Ok((repo.to_string(), tag.to_string()))
}

/// Tags workspace `id`'s image as `reference`, pushes it, and removes the tag again (the image
/// stays owned by the workspace's own tag, so deleting the workspace still frees it).
pub async fn push(daemon: &Daemon, id: &ObjectId, reference: &str) -> Result<Pushed, PushError> {
    let (repo, tag) = split_reference(reference).map_err(PushError::InvalidReference)?;
    let ws = daemon.store.get_workspace(id).await?;
    let image = match (ws.state, ws.image_id.clone()) {
        (State::Active, Some(image)) => image,
        (State::Pending, _) => return Err(PushError::NoImage(format!("{id} is PENDING: it has no image to push yet"))),
        (state, _) => return Err(PushError::NoImage(format!("{id} is {state}: it has no image to push"))),
    };
    let full = format!("{repo}:{tag}");
    let engine = |e: DockerError| PushError::Engine(e.to_string());
    daemon.engine.tag_image(&image, &full).await.map_err(engine)?;
    let pushed = daemon.engine.push_image(&repo, &tag).await;
    // The push's names go whatever happened (the tag, and the `repo@digest` the engine records):
    // only the workspace's tag may own the image, or deleting the workspace would not free it.
    let mut names = vec![full.clone()];
    if let Ok(digest) = &pushed {
        names.push(format!("{repo}@{digest}"));
    }
    for name in names {
        if let Err(e) = daemon.engine.remove_image(&name).await {
            if !e.is_not_found() {
                tracing::warn!(%id, "cannot remove {name} from the engine: {e}");
            }
        }
    }
    let digest = pushed.map_err(engine)?;
    Ok(Pushed { reference: full, pinned: format!("{repo}@{digest}"), digest })
}

/// What pushes a `kill -9` interrupted left on this daemon's workspace images: every name but
/// the workspace's own tags (`jworkspace:…`). Run at start, before the API serves (no push is
/// in flight then). Returns how many names went.
pub async fn sweep_leftovers(daemon: &Daemon) -> Result<usize, DockerError> {
    let mut removed = 0;
    for image in daemon.engine.own_images(&[(crate::docker::labels::ROLE, "workspace")]).await? {
        for name in daemon.engine.image_references(&image.docker_id).await? {
            if name.starts_with("jworkspace:") || name.starts_with("jworkspace@") {
                continue;
            }
            match daemon.engine.remove_image(&name).await {
                Ok(()) => removed += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => tracing::warn!("cannot remove {name} (left by an interrupted push): {e}"),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn references_need_a_registry_and_valid_parts() {
        assert_eq!(split_reference("127.0.0.1:5000/search:v1").unwrap(), ("127.0.0.1:5000/search".into(), "v1".into()));
        assert_eq!(split_reference("reg.example.com/team/search").unwrap(), ("reg.example.com/team/search".into(), "latest".into()));
        assert_eq!(split_reference("localhost/a:b").unwrap().0, "localhost/a");
        for bad in ["search:v1", "ubuntu", "127.0.0.1:5000/Search:v1", "127.0.0.1:5000/a:-x", "127.0.0.1:5000/a@sha256:00", "", "r.io/a b:c", "r.io//a"] {
            assert!(split_reference(bad).is_err(), "{bad}");
        }
    }
}
