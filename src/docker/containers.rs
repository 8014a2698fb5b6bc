//! What the daemon asks of the engine about containers, as plain data (no bollard types).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `never`: the daemon moves the row to FAILED; `on-failure`: the engine restarts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    #[default]
    Never,
    OnFailure,
}

/// When the engine restarts a container that exited. `never` (the default) leaves the exit to the
/// daemon, which moves the row to FAILED with the exit code and the last log lines; `on-failure`
/// restarts after a non-zero exit at most `max_retries` times, then the row is FAILED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    #[serde(default)]
    pub policy: RestartMode,
    /// Required with `on-failure`, 1..=100.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::json_numbers::option_u32")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_retries: Option<u32>,
}

/// Per-container resource limits, passed to the engine as they are.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// CPUs, e.g. `0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.01, maximum = 256.0)]
    pub cpus: Option<f64>,
    /// Bytes of memory (at least 6 MiB, Docker's minimum).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::json_numbers::option_u64")]
    #[schema(minimum = 6291456, maximum = 1125899906842624_u64)]
    pub memory: Option<u64>,
}

impl Limits {
    pub fn check(&self) -> Result<(), String> {
        if let Some(c) = self.cpus {
            if !(0.01..=256.0).contains(&c) {
                return Err(format!("cpus: {c} is not between 0.01 and 256"));
            }
        }
        if let Some(m) = self.memory {
            if !(6 * 1024 * 1024..=1 << 50).contains(&m) {
                return Err(format!("memory: {m} bytes is not between 6 MiB and 1 PiB"));
            }
        }
        Ok(())
    }
}

impl RestartPolicy {
    pub fn check(&self) -> Result<(), String> {
        match (self.policy, self.max_retries) {
            (RestartMode::OnFailure, Some(n)) if (1..=100).contains(&n) => Ok(()),
            (RestartMode::OnFailure, _) => Err("restart.max_retries: `on-failure` needs max_retries between 1 and 100".into()),
            (RestartMode::Never, None) => Ok(()),
            (RestartMode::Never, Some(_)) => Err("restart.max_retries: only with `on-failure`".into()),
        }
    }

    /// Retries left after `restarts`, for a container that exited with `exit_code`.
    pub fn will_restart(&self, restarts: i64, exit_code: Option<i64>) -> bool {
        self.policy == RestartMode::OnFailure && exit_code != Some(0) && restarts < i64::from(self.max_retries.unwrap_or(0))
    }
}

/// A container to create and start.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Replaces the image's entrypoint when set.
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
    /// `uid:gid` to run as (the owner of the mounted workspace, so files stay removable).
    pub user: Option<String>,
    pub env: Vec<(String, String)>,
    pub labels: HashMap<String, String>,
    /// The network it joins (by name); reachable there by its container name.
    pub network: Option<String>,
    /// `host path:container path` bind mounts.
    pub binds: Vec<String>,
    pub workdir: Option<String>,
    /// Container TCP ports published on `publish_ip` at a port the engine picks.
    pub publish: Vec<u16>,
    pub publish_ip: String,
    /// `host.docker.internal:host-gateway`, for containers that reach the host.
    pub extra_hosts: Vec<String>,
    pub limits: Limits,
    pub restart: RestartPolicy,
}

/// What the engine says about one container now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerStatus {
    pub id: String,
    pub running: bool,
    /// The engine restarts it now (restart policy).
    pub restarting: bool,
    pub exit_code: Option<i64>,
    pub restart_count: i64,
    pub oom_killed: bool,
    /// Container port → published host port.
    pub ports: BTreeMap<u16, u16>,
    /// Its addresses on its networks.
    pub ips: Vec<String>,
    pub error: Option<String>,
}
