//! The delete job: remove everything a DELETING workspace owns — its containers, network, images,
//! files and log — then the row. Only objects labelled with this workspace and this daemon are touched.

use super::Outcome;
use crate::daemon::Daemon;
use crate::docker::{labels, DockerError};
use crate::ids::ObjectId;
use crate::store::StoreError;

pub async fn run(daemon: &Daemon, id: &ObjectId) -> Outcome {
    match delete(daemon, id).await {
        Ok(()) => Outcome::Done,
        Err(e) => Outcome::Retry(e),
    }
}

async fn delete(daemon: &Daemon, id: &ObjectId) -> Result<(), String> {
    let docker = |e: DockerError| e.to_string();
    let engine = &daemon.engine;
    for container in engine.own_containers(&[(labels::WORKSPACE, id.as_str())]).await.map_err(docker)? {
        engine.remove_container(&container.docker_id).await.map_err(docker)?;
    }
    for network in engine.own_networks(&[(labels::WORKSPACE, id.as_str())]).await.map_err(docker)? {
        engine.remove_network(&network.docker_id).await.map_err(docker)?;
    }
    // Its tag goes (which deletes the image unless another workspace's tag names it too); an image
    // only this workspace's label names goes by id.
    let tag = id.image_tag();
    for image in engine.own_images(&[(labels::ROLE, "workspace")]).await.map_err(docker)? {
        let owners = crate::reconcile::image_owners(&image);
        if image.tags.contains(&tag) {
            engine.remove_image(&tag, owners.len() == 1).await.map_err(docker)?;
        } else if owners == [id.clone()] {
            engine.remove_image(&image.docker_id, true).await.map_err(docker)?;
        }
    }
    let dir = crate::workspace::dir(daemon, id);
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", dir.display())),
    }
    let _ = tokio::fs::remove_file(crate::build_log::path(&daemon.config.logs_dir(), id)).await;
    match daemon.store.remove_workspace(id).await {
        Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
