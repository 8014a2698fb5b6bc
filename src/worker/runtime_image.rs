//! The runtime image: a base image plus this very executable, built once per (base image, binary
//! digest) and shared by every workspace image built `FROM` it. Workspace builds therefore never
//! send the binary (tens to hundreds of MB) again.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::daemon::Daemon;
use crate::docker::{labels, DockerError};
use crate::workspace::{context, dockerfile};

/// The file the running process was started from; `/proc/self/exe` keeps pointing at it even if
/// a rebuild replaced the file on disk.
fn own_executable() -> PathBuf {
    let proc = PathBuf::from("/proc/self/exe");
    if proc.exists() {
        proc
    } else {
        std::env::current_exe().unwrap_or(proc)
    }
}

static DIGEST: OnceCell<String> = OnceCell::const_new();

/// Hex sha256 of the running executable, computed once.
pub async fn binary_digest() -> std::io::Result<String> {
    DIGEST
        .get_or_try_init(|| async {
            tokio::task::spawn_blocking(|| {
                let mut file = std::fs::File::open(own_executable())?;
                let mut hasher = Sha256::new();
                std::io::copy(&mut file, &mut hasher)?;
                Ok(format!("{:x}", hasher.finalize()))
            })
            .await
            .map_err(std::io::Error::other)?
        })
        .await
        .cloned()
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeImageError {
    #[error("base image `{0}` is not on this Docker engine (no registry is used: build it with docker/build-base-image.sh, or point --base-image-template at an image you have)")]
    BaseMissing(String),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("cannot prepare the runtime image: {0}")]
    Io(#[from] std::io::Error),
}

/// The tag of the runtime image for `base_image`, building it if the engine does not have it.
pub async fn ensure(daemon: &Daemon, base_image: &str, log: &mut crate::build_log::BuildLog) -> Result<String, RuntimeImageError> {
    let base_id = daemon
        .engine
        .image_id(base_image)
        .await?
        .ok_or_else(|| RuntimeImageError::BaseMissing(base_image.to_string()))?;
    let digest = binary_digest().await?;
    let base_short = base_id.trim_start_matches("sha256:");
    let tag = format!("jinad/runtime:{}-{}", &digest[..12], &base_short[..12.min(base_short.len())]);
    let mut built = daemon.runtime_images.lock().await;
    // Asked of the engine every time: a runtime image is never evicted while it is this
    // binary's, but `docker rmi` by hand is always possible.
    if let Some(id) = daemon.engine.image_id(&tag).await? {
        built.insert(base_id, tag.clone());
        log.note(&format!("runtime image {tag} (base {base_image}) is present"));
        touch(daemon, &id).await;
        return Ok(tag);
    }
    log.note(&format!("building runtime image {tag}: {base_image} + this jinad binary"));
    let ctx = tempfile::Builder::new().prefix("runtime-").suffix(".tar").tempfile_in(daemon.config.tmp_dir())?;
    let ctx_path = ctx.path().to_path_buf();
    let text = format!("{}{}", dockerfile::runtime(base_image), dockerfile::label_line(&labels::for_runtime()));
    tokio::task::spawn_blocking(move || context::write_runtime_context(&ctx_path, &text, &own_executable()))
        .await
        .map_err(std::io::Error::other)??;
    {
        // Like every build: the build cache never evicts while it runs.
        let _building = daemon.build_gate.read().await;
        daemon.engine.build_image(ctx.path(), "Dockerfile", &tag, &Default::default(), &mut |line| log.line(line)).await?;
    }
    built.insert(base_id, tag.clone());
    if let Some(id) = daemon.engine.image_id(&tag).await? {
        touch(daemon, &id).await;
    }
    Ok(tag)
}

/// The build cache evicts the least recently used runtime image first.
async fn touch(daemon: &Daemon, image_id: &str) {
    if let Err(e) = daemon.store.touch_image(image_id).await {
        tracing::debug!("recording the use of {image_id}: {e}");
    }
}
