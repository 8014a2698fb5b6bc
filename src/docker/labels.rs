//! The labels every Docker object of the daemon carries, so reconciliation can find it again.

use std::collections::HashMap;

pub const MANAGED: &str = "jinad.managed";
/// The row the object belongs to.
pub const ID: &str = "jinad.id";
pub const WORKSPACE: &str = "jinad.workspace";
/// The daemon that created it: a daemon only ever reconciles or removes its own objects.
pub const DAEMON: &str = "jinad.daemon";
/// `runtime` for the shared runtime images (no row of their own), `workspace` for workspace images
/// (which would otherwise inherit `runtime` from their parent).
pub const ROLE: &str = "jinad.role";

pub fn for_row(daemon_id: &str, row_id: &str, workspace_id: &str) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (ID.to_string(), row_id.to_string()),
        (WORKSPACE.to_string(), workspace_id.to_string()),
        (DAEMON.to_string(), daemon_id.to_string()),
        (ROLE.to_string(), "workspace".to_string()),
    ])
}

/// The pea a container runs (`idx/shard-0`, `gateway`).
pub const PEA: &str = "jinad.pea";

/// The labels of a container of a flow, pod or pea (`kind`): its row, its workspace, its pea.
pub fn for_deployment(daemon_id: &str, row_id: &str, workspace_id: &str, kind: &str, pea: &str) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (ID.to_string(), row_id.to_string()),
        (WORKSPACE.to_string(), workspace_id.to_string()),
        (DAEMON.to_string(), daemon_id.to_string()),
        (ROLE.to_string(), kind.to_string()),
        (PEA.to_string(), pea.to_string()),
    ])
}

/// The labels of a default workspace image: the daemon's only, so the image's layers are shared
/// by all its workspaces; the workspace itself is named by the tag.
pub fn for_workspace_image(daemon_id: &str) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (DAEMON.to_string(), daemon_id.to_string()),
        (ROLE.to_string(), "workspace".to_string()),
    ])
}

/// The labels of a runtime image. No daemon id: the image depends only on the base and the binary,
/// so daemons sharing an engine build the very same image under the same tag (a per-daemon label
/// would make two images race for one tag and defeat the layer cache of workspaces built on it).
pub fn for_runtime() -> HashMap<String, String> {
    HashMap::from([(MANAGED.to_string(), "true".to_string()), (ROLE.to_string(), "runtime".to_string())])
}
