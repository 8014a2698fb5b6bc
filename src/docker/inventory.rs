//! What the build cache needs to see of the engine: every image with its parent and size, and
//! every container with the image it was created from. Read by [`crate::build_cache`].

use std::collections::HashMap;

use bollard::query_parameters::{ListContainersOptionsBuilder, ListImagesOptionsBuilder};

use super::bollard_engine::DockerEngine;
use super::DockerError;

/// One image of the engine, intermediate layers included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageRecord {
    pub id: String,
    /// The image it was built on, when the engine built it (the classic builder records it).
    pub parent: Option<String>,
    pub tags: Vec<String>,
    pub labels: HashMap<String, String>,
    /// Bytes of the whole image, its parents' layers included.
    pub size: u64,
    /// Unix seconds.
    pub created: i64,
}

/// One container of the engine, of any state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    /// Its name, without the leading `/`.
    pub name: String,
    /// The image as the container was created with it: a name, or an id (`sha256:…`) as the
    /// classic builder gives its step containers.
    pub image: String,
    /// The image's id.
    pub image_id: String,
    pub labels: HashMap<String, String>,
    /// `created`, `running`, `exited`, `dead`, …
    pub state: String,
    /// The command, as `docker ps` shows it (`/bin/sh -c …` for a classic build's step).
    pub command: String,
    /// Unix seconds.
    pub created: i64,
}

impl DockerEngine {
    pub(super) async fn list_all_images(&self) -> Result<Vec<ImageRecord>, DockerError> {
        let options = ListImagesOptionsBuilder::default().all(true).build();
        let images = self.client().await?.list_images(Some(options)).await?;
        Ok(images
            .into_iter()
            .map(|i| ImageRecord {
                parent: Some(i.parent_id).filter(|p| !p.is_empty()),
                tags: i.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect(),
                labels: i.labels,
                size: u64::try_from(i.size).unwrap_or(0),
                created: i.created,
                id: i.id,
            })
            .collect())
    }

    pub(super) async fn list_all_containers(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let containers = self.client().await?.list_containers(Some(options)).await?;
        Ok(containers
            .into_iter()
            .map(|c| ContainerInfo {
                id: c.id.unwrap_or_default(),
                name: c.names.and_then(|n| n.into_iter().next()).unwrap_or_default().trim_start_matches('/').to_string(),
                image: c.image.unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                command: c.command.unwrap_or_default(),
                created: c.created.unwrap_or_default(),
            })
            .collect())
    }
}
