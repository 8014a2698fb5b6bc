//! Flows, pods and peas: what runs in a workspace. The requests (`POST /flows`, `/pods`, `/peas`)
//! are checked here before a row is written, and turned into containers by [`plan`] when the
//! start job runs. The rows share the workspaces' life cycle and compare-and-set.

pub mod lease;
pub mod plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::daemon::Daemon;
use crate::docker::{Limits, RestartPolicy};
use crate::ids::{InvalidId, Kind, ObjectId};
use crate::runtime::executor::ExecutorSpec;
use crate::runtime::flow::spec::{valid_name, MAX_PEAS_PER_POD};
use crate::runtime::flow::FlowSpec;
use crate::runtime::polling::{Polling, PollingSpec};
use crate::state::State;
use crate::store::{DeploymentChange, DeploymentRow, StoreError};
use crate::workspace::paths::{self, Unresolved};

/// Where the workspace directory is mounted in every container (the image's copy of the files
/// is there too; the mount makes what executors write survive the container).
pub const WORKSPACE_MOUNT: &str = "/workspace";

/// Containers one flow may have (its gateway, every pea, head and tail).
pub const MAX_CONTAINERS_PER_FLOW: usize = 128;

/// `POST /flows`: start the Flow YAML `filename` of a workspace, every pea in its own container.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowRequest {
    /// The workspace whose image, network and files the flow uses.
    #[schema(value_type = crate::api::workspaces::WorkspaceId)]
    pub workspace_id: String,
    /// The Flow YAML, relative to the workspace.
    #[schema(example = "flow.yml")]
    pub filename: String,
    /// Environment of every container; `${{ ENV.NAME }}` in the YAML reads it.
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    /// Per container.
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub restart: RestartPolicy,
}

/// `POST /pods` and `POST /peas`: one pod (or pea) in containers, its ports published, sending its
/// results to `out`: the arguments of `jinad pod` / `jinad pea`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PodRequest {
    #[schema(value_type = crate::api::workspaces::WorkspaceId)]
    pub workspace_id: String,
    #[serde(default = "default_name")]
    pub name: String,
    /// A built-in executor, or with `py_modules` a Python class.
    #[serde(default = "default_uses")]
    pub uses: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub with: Map<String, Value>,
    /// Python files (relative to the workspace) defining the class `uses` names.
    #[serde(default)]
    pub py_modules: Vec<String>,
    #[serde(default = "one", deserialize_with = "crate::json_numbers::usize")]
    #[schema(minimum = 1, maximum = 64)]
    pub replicas: usize,
    #[serde(default = "one", deserialize_with = "crate::json_numbers::usize")]
    #[schema(minimum = 1, maximum = 64)]
    pub shards: usize,
    /// `any`, `all`, or per endpoint, e.g. `{"/search": "all", "*": "any"}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub polling: Option<Value>,
    /// Parts each request arrives in (the number of the pod's `needs` in the Flow that uses it).
    #[serde(default = "one", deserialize_with = "crate::json_numbers::usize")]
    #[schema(minimum = 1, maximum = 64)]
    pub needs: usize,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Where results go: name → `tcp://HOST:PORT` as the container reaches it (the daemon's host
    /// is `host.docker.internal`), or `bind`: the pod binds that output on a published port
    /// (`ports.out.NAME`) and the consumer connects to it — how a Flow on another machine takes
    /// a remote pod's results without the pod having to reach it.
    pub out: BTreeMap<String, String>,
    /// A pea only: which pea of its pod it is, when the pod's other peas run elsewhere (a Flow
    /// spreading one pod over several hosts): `replicas`/`shards` then describe the whole pod,
    /// and both ids are required.
    #[serde(default, deserialize_with = "crate::json_numbers::option_u64")]
    #[schema(minimum = 0, maximum = 63)]
    pub shard_id: Option<u64>,
    #[serde(default, deserialize_with = "crate::json_numbers::option_u64")]
    #[schema(minimum = 0, maximum = 63)]
    pub replica_id: Option<u64>,
    /// With a lease, the pod lives only while someone renews it (`PUT /pods/{id}/lease`) within
    /// this many seconds; then it is deleted. A Flow on another machine sets it, so that what it
    /// started goes away even when the Flow is killed or cut off.
    #[serde(default, deserialize_with = "crate::json_numbers::option_u64")]
    #[schema(minimum = 1)]
    pub lease_seconds: Option<u64>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub restart: RestartPolicy,
}

/// The `out` value that makes a pod bind the output instead of connecting it.
pub const BIND: &str = "bind";

fn default_name() -> String {
    "pod".into()
}
fn default_uses() -> String {
    "Passthrough".into()
}
fn one() -> usize {
    1
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Id(#[from] InvalidId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    InvalidFlow(String),
    #[error("{0}")]
    InvalidPod(String),
    #[error("{0} is {1}: nothing starts in it")]
    WorkspaceNotActive(ObjectId, State),
    #[error("{0}")]
    NameTaken(String),
}

/// A checked flow: the parsed spec and where its YAML is inside the containers.
pub struct CheckedFlow {
    pub spec: FlowSpec,
    pub yaml_in_container: String,
    /// The YAML as it is in the workspace (before `${{ ENV.X }}` is replaced).
    pub text: String,
}

/// Reads and checks the Flow YAML `filename` of the workspace at `root` (links followed only
/// inside it), with `${{ ENV.X }}` from `envs`.
pub fn check_flow(root: &Path, filename: &str, envs: &BTreeMap<String, String>) -> Result<CheckedFlow, String> {
    let rel = paths::safe_relative(Path::new(filename)).ok_or_else(|| format!("filename: `{filename}` must be a relative path inside the workspace"))?;
    let real = match paths::resolve_inside(root, &rel).map_err(|e| format!("{filename}: {e}"))? {
        Ok(real) => real,
        Err(Unresolved::Dangling) => return Err(format!("{filename}: no such file in the workspace")),
        Err(why) => return Err(format!("{filename}: {why}")),
    };
    let text = std::fs::read_to_string(root.join(&real)).map_err(|e| format!("{filename}: {e}"))?;
    let dir = real.parent().map(Path::to_path_buf).unwrap_or_default();
    // Messages name paths inside the workspace, never where the workspace is on the host.
    let hide_root = |e: String| e.replace(&format!("{}/", root.display()), "");
    let spec = FlowSpec::parse_with_env(&text, &root.join(&dir), &|name| envs.get(name).cloned()).map_err(|e| hide_root(format!("{filename}: {e}")))?;
    // The gateway, every pea, and a head and a tail for a pod of several peas.
    let containers = 1 + spec.pods.iter().map(|p| p.shards * p.replicas).map(|n| if n > 1 { n + 2 } else { n }).sum::<usize>();
    if containers > MAX_CONTAINERS_PER_FLOW {
        return Err(format!("{filename}: the flow needs {containers} containers (gateway, peas, heads, tails); at most {MAX_CONTAINERS_PER_FLOW}"));
    }
    for pod in &spec.pods {
        if pod.remote.is_some() {
            return Err(format!(
                "{filename}: executor `{}`: `host:` pods are for `jinad flow` (it starts them on that host); a flow on a daemon runs every pod here",
                pod.name
            ));
        }
        if pod.container.is_some() {
            return Err(format!(
                "{filename}: executor `{}`: `docker://`/`image:` pods are for `jinad flow`; here every pod already runs in a container of the workspace image",
                pod.name
            ));
        }
        if let ExecutorSpec::Python(config) = &pod.executor {
            for module in &config.modules {
                let inside = module.strip_prefix(root).ok().and_then(paths::safe_relative).map(|m| paths::resolve_inside(root, &m));
                if !matches!(inside, Some(Ok(Ok(_)))) {
                    return Err(format!("{filename}: executor `{}`: py_modules must stay inside the workspace", pod.name));
                }
            }
        }
    }
    let yaml_in_container = PathBuf::from(WORKSPACE_MOUNT).join(&real).to_string_lossy().into_owned();
    Ok(CheckedFlow { spec, yaml_in_container, text })
}

/// The pea names of a checked pod request, and the `jinad pea` arguments that describe its pod.
#[derive(Debug)]
pub struct CheckedPod {
    pub peas: Vec<(usize, usize, String)>,
    pub args: Vec<String>,
    pub outputs: Vec<(String, String)>,
}

/// Checks a pod or pea request the way `jinad pod`/`pea` would, before anything starts.
pub fn check_pod(root: &Path, kind: Kind, req: &PodRequest) -> Result<CheckedPod, String> {
    if !valid_name(&req.name) || req.name == "gateway" {
        return Err(format!("name: `{}` must start with a letter or `_`, hold only letters, digits, `_`, `-` (at most 64), and not be `gateway`", req.name));
    }
    for (field, n) in [("replicas", req.replicas), ("shards", req.shards)] {
        if n == 0 || n > MAX_PEAS_PER_POD {
            return Err(format!("{field}: must be between 1 and {MAX_PEAS_PER_POD} (got {n})"));
        }
    }
    if req.replicas * req.shards > MAX_PEAS_PER_POD {
        return Err(format!("replicas × shards must be at most {MAX_PEAS_PER_POD}"));
    }
    if kind == Kind::Pod && (req.shard_id.is_some() || req.replica_id.is_some()) {
        return Err("shard_id/replica_id: only a pea is one pea of its pod (POST /peas)".into());
    }
    let (shard_id, replica_id) = match (req.shard_id, req.replica_id) {
        (Some(s), Some(r)) => (usize::try_from(s).unwrap_or(usize::MAX), usize::try_from(r).unwrap_or(usize::MAX)),
        (None, None) if req.shards * req.replicas == 1 => (0, 0),
        _ if kind == Kind::Pod => (0, 0),
        _ => {
            return Err(
                "a pea is one pea: with replicas/shards (its pod's) give both shard_id and replica_id, or run the whole pod with POST /pods".into(),
            )
        }
    };
    if kind == Kind::Pea && (shard_id >= req.shards || replica_id >= req.replicas) {
        return Err(format!(
            "shard_id/replica_id: a pea of a pod of {} shards × {} replicas is shard 0..{} and replica 0..{}",
            req.shards,
            req.replicas,
            req.shards.saturating_sub(1),
            req.replicas.saturating_sub(1)
        ));
    }
    if req.needs == 0 || req.needs > MAX_PEAS_PER_POD {
        return Err(format!("needs: must be between 1 and {MAX_PEAS_PER_POD}"));
    }
    let executor = if req.py_modules.is_empty() {
        ExecutorSpec::parse(&req.uses, &req.with).map_err(|e| format!("uses/with: {e}"))?
    } else {
        let mut modules = Vec::new();
        for m in &req.py_modules {
            let rel = paths::safe_relative(Path::new(m)).ok_or_else(|| format!("py_modules: `{m}` must be a relative path inside the workspace"))?;
            match paths::resolve_inside(root, &rel).map_err(|e| format!("py_modules: {m}: {e}"))? {
                Ok(real) => modules.push(root.join(real)),
                Err(why) => return Err(format!("py_modules: `{m}` {why}")),
            }
        }
        ExecutorSpec::python(&req.uses, modules, &req.with).map_err(|e| format!("py_modules: {e}"))?
    };
    if req.replicas > 1 && executor.stateful() {
        return Err(format!("replicas: {} keeps state per shard: use shards, not replicas", req.uses));
    }
    let polling = match &req.polling {
        None => None,
        Some(p) => Some(
            serde_json::from_value::<PollingSpec>(p.clone())
                .map_err(|_| format!("polling: expected `any`, `all`, or an object of endpoint → `any`/`all` (got {p})"))?,
        ),
    };
    Polling::from_spec(polling).map_err(|e| format!("polling: {e}"))?;
    if req.out.is_empty() {
        return Err("out: at least one output `name: tcp://HOST:PORT` (or `name: bind`) is needed".into());
    }
    if req.out.len() > plan::MAX_OUTPUTS {
        return Err(format!("out: at most {} outputs", plan::MAX_OUTPUTS));
    }
    let mut outputs = Vec::new();
    for (name, addr) in &req.out {
        if !valid_name(name) {
            return Err(format!("out: `{name}` is not a valid name"));
        }
        if addr == BIND {
            outputs.push((name.clone(), addr.clone()));
            continue;
        }
        let port_ok = addr.strip_prefix("tcp://").and_then(|a| a.rsplit_once(':')).is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok {
            return Err(format!("out.{name}: `{addr}` is not tcp://HOST:PORT or `bind`"));
        }
        outputs.push((name.clone(), addr.clone()));
    }
    check_env_names("env", req.env.keys())?;
    let mut args: Vec<String> = vec![
        "--uses".into(),
        req.uses.clone(),
        "--with".into(),
        Value::Object(req.with.clone()).to_string(),
        "--replicas".into(),
        req.replicas.to_string(),
        "--shards".into(),
        req.shards.to_string(),
        "--needs".into(),
        req.needs.to_string(),
    ];
    for m in &req.py_modules {
        args.extend(["--py-modules".into(), m.clone()]);
    }
    if let Some(p) = &req.polling {
        args.extend(["--polling".into(), match p.as_str() { Some(s) => s.to_string(), None => p.to_string() }]);
    }
    for (k, v) in &req.env {
        args.extend(["--env".into(), format!("{k}={v}")]);
    }
    let mut peas = crate::runtime::pod::pea_names(&req.name, req.shards, req.replicas);
    if kind == Kind::Pea {
        // One pea of its pod: only that one runs here, as that shard and replica.
        peas.retain(|(shard, replica, _)| *shard == shard_id && *replica == replica_id);
        args.extend(["--shard-id".into(), shard_id.to_string(), "--replica-id".into(), replica_id.to_string()]);
    }
    Ok(CheckedPod { peas, args, outputs })
}

/// Environment variable names a container can be given.
fn check_env_names<'a>(field: &str, mut names: impl Iterator<Item = &'a String>) -> Result<(), String> {
    match names.find(|k| k.is_empty() || k.contains('=') || k.contains('\0')) {
        Some(bad) => Err(format!("{field}: `{bad}` is not a variable name")),
        None => Ok(()),
    }
}

fn check_common(limits: &Limits, restart: &RestartPolicy) -> Result<(), String> {
    limits.check()?;
    restart.check()
}

fn check_lease(daemon: &Daemon, lease_seconds: Option<u64>) -> Result<(), String> {
    match lease_seconds {
        Some(s) if s == 0 || s > daemon.config.max_lease => Err(format!("lease_seconds: must be between 1 and {} (--max-lease)", daemon.config.max_lease)),
        _ => Ok(()),
    }
}

/// The workspace a request names, if something may start in it (PENDING: the start waits for
/// the build; ACTIVE).
async fn startable_workspace(daemon: &Daemon, workspace_id: &str) -> Result<ObjectId, DeployError> {
    let ws = ObjectId::parse(Kind::Workspace, workspace_id)?;
    let row = daemon.store.get_workspace(&ws).await?;
    match row.state {
        State::Pending | State::Active => Ok(ws),
        other => Err(DeployError::WorkspaceNotActive(ws, other)),
    }
}

pub async fn create_flow(daemon: &Daemon, req: FlowRequest) -> Result<DeploymentRow, DeployError> {
    let ws = startable_workspace(daemon, &req.workspace_id).await?;
    check_common(&req.limits, &req.restart).map_err(DeployError::InvalidFlow)?;
    check_env_names("envs", req.envs.keys()).map_err(DeployError::InvalidFlow)?;
    let root = daemon.config.workspaces_dir().join(ws.as_str());
    check_flow(&root, &req.filename, &req.envs).map_err(DeployError::InvalidFlow)?;
    let req = FlowRequest { workspace_id: ws.to_string(), ..req };
    insert(daemon, Kind::Flow, &ws, serde_json::to_value(&req).unwrap_or_default(), None).await
}

pub async fn create_pod(daemon: &Daemon, kind: Kind, req: PodRequest) -> Result<DeploymentRow, DeployError> {
    let ws = startable_workspace(daemon, &req.workspace_id).await?;
    check_common(&req.limits, &req.restart).map_err(DeployError::InvalidPod)?;
    check_lease(daemon, req.lease_seconds).map_err(DeployError::InvalidPod)?;
    let root = daemon.config.workspaces_dir().join(ws.as_str());
    check_pod(&root, kind, &req).map_err(DeployError::InvalidPod)?;
    let req = PodRequest { workspace_id: ws.to_string(), ..req };
    // Checked and inserted under one lock per workspace, so two requests cannot both pass.
    let _guard = daemon
        .row_locks
        .lock_within(&format!("{ws}#pod-names"), std::time::Duration::from_secs(30))
        .await
        .ok_or_else(|| DeployError::NameTaken(format!("{ws}: too many pod starts at once; try again")))?;
    name_free(daemon, &ws, kind, &req).await?;
    let lease = req.lease_seconds;
    insert(daemon, kind, &ws, serde_json::to_value(&req).unwrap_or_default(), lease).await
}

/// A pod's data lives in `workspace/<name>` of its workspace (a pea of a sharded pod in
/// `shard-i` inside it): two live pods or peas of one name would write the same files — two Flows
/// of one project on one host, say. Only peas of distinct shards or replicas may share a name.
async fn name_free(daemon: &Daemon, ws: &ObjectId, kind: Kind, req: &PodRequest) -> Result<(), DeployError> {
    for other in daemon.store.deployments_of(ws).await? {
        if other.state == State::Deleting || other.kind() == Some(Kind::Flow) {
            continue;
        }
        let Ok(spec) = serde_json::from_value::<PodRequest>(other.spec_json()) else { continue };
        if spec.name != req.name {
            continue;
        }
        let distinct_peas = kind == Kind::Pea
            && other.kind() == Some(Kind::Pea)
            && (spec.shard_id.unwrap_or(0), spec.replica_id.unwrap_or(0)) != (req.shard_id.unwrap_or(0), req.replica_id.unwrap_or(0));
        if !distinct_peas {
            let lease = other
                .lease_expires_at
                .map(|t| format!("; it was made for a Flow elsewhere, which renews its lease while it runs (now until {t}): stop that Flow, or wait that long after it was killed"))
                .unwrap_or_default();
            return Err(DeployError::NameTaken(format!(
                "{} `{}` of this workspace is {} and would share its data directory{lease}: delete it first, or use another name",
                other.id, req.name, other.state
            )));
        }
    }
    Ok(())
}

async fn insert(daemon: &Daemon, kind: Kind, ws: &ObjectId, spec: Value, lease_seconds: Option<u64>) -> Result<DeploymentRow, DeployError> {
    let id = ObjectId::mint(kind);
    let row = daemon.store.insert_deployment(&id, kind, ws, &spec, lease_seconds).await.map_err(|e| match e {
        StoreError::Conflict { id, actual, .. } => DeployError::WorkspaceNotActive(id, actual),
        other => other.into(),
    })?;
    daemon.wake.notify_one();
    Ok(row)
}

/// `DELETE`: move the row to DELETING (the stop job removes its containers, then the row).
/// Deleting a row that is already DELETING is accepted again.
pub async fn delete(daemon: &Daemon, id: &ObjectId) -> Result<DeploymentRow, DeployError> {
    loop {
        let row = daemon.store.get_deployment(id).await?;
        if row.state == State::Deleting {
            daemon.wake.notify_one();
            return Ok(row);
        }
        match daemon.store.transition_deployment(id, row.seen(), DeploymentChange::Delete).await {
            Ok(row) => {
                daemon.wake.notify_one();
                return Ok(row);
            }
            // The row moved meanwhile (a start finished): look again.
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> PodRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn one_pea_of_a_spread_pod_runs_as_that_shard() {
        let root = Path::new("/nonexistent");
        let req = request(serde_json::json!({"workspace_id": "w", "name": "idx", "uses": "VectorIndexer", "shards": 2, "shard_id": 1, "replica_id": 0, "out": {"tail": "bind"}}));
        let checked = check_pod(root, Kind::Pea, &req).unwrap();
        assert_eq!(checked.peas, vec![(1, 0, "idx/shard-1".to_string())]);
        let args = checked.args.join(" ");
        assert!(args.contains("--shards 2") && args.contains("--shard-id 1 --replica-id 0"), "{args}");
        assert_eq!(checked.outputs, vec![("tail".to_string(), BIND.to_string())]);
        for (kind, body, wanted) in [
            (Kind::Pea, serde_json::json!({"workspace_id": "w", "shards": 2, "shard_id": 2, "replica_id": 0, "out": {"a": "bind"}}), "shard_id"),
            (Kind::Pea, serde_json::json!({"workspace_id": "w", "replicas": 2, "out": {"a": "bind"}}), "POST /pods"),
            (Kind::Pod, serde_json::json!({"workspace_id": "w", "shards": 2, "shard_id": 1, "out": {"a": "bind"}}), "only a pea"),
            (Kind::Pod, serde_json::json!({"workspace_id": "w", "out": {"a": "connect"}}), "or `bind`"),
        ] {
            let e = check_pod(root, kind, &request(body)).unwrap_err();
            assert!(e.contains(wanted), "{e}");
        }
    }
}
