//! JEP 2 in `jinad flow`: the pods marked `uses: docker://IMAGE` or `image: IMAGE` run as one
//! container each (`jinad pod` inside, binding 0.0.0.0 with its data and control ports published
//! on 127.0.0.1), the rest of the Flow stays in this process. A container reaches this host as
//! `host.docker.internal` (added with `host-gateway`); this process reaches a container at its
//! published ports. Containers are labelled with this process's id: closing the Flow (also on
//! Ctrl-C / SIGTERM) stops and removes them, and the next `jinad flow` removes the ones a crashed
//! run left.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::docker::{labels, ContainerSpec, DockerEngine, Engine};
use crate::runtime::pod::{ContainerPod, Output, PodSpec};
use crate::runtime::sockets;
use crate::workspace::dockerfile::BINARY_PATH;

const ROLE: &str = "local-flow";
/// The process that started the container.
const PID: &str = "jinad.flow-pid";
const DATA_PORT: u16 = 5555;
const CTRL_PORT: u16 = 5556;
/// Where the pod's workspace directory is mounted.
const MOUNT: &str = "/jinad/workspace";
pub const HOST_FROM_CONTAINERS: &str = "host.docker.internal";

pub struct Containers {
    runtime: tokio::runtime::Runtime,
    engine: DockerEngine,
    /// Names of the containers this run started.
    started: Vec<String>,
}

/// The container of pod `pod` of this `jinad flow` process.
fn container_name(pod: &str) -> String {
    format!("jinad-flow-{}-{pod}", std::process::id())
}

/// Whether process `pid` still runs a jinad (a crashed run's pid may have been reused).
fn alive(pid: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).contains("jinad")).unwrap_or(false)
}

impl Containers {
    /// Connects to the engine (`DOCKER_HOST` or the local socket) and removes what crashed runs left.
    pub fn connect() -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let engine = DockerEngine::new(std::env::var("DOCKER_HOST").ok(), String::new());
        let containers = Containers { runtime, engine, started: Vec::new() };
        let leftovers = containers
            .runtime
            .block_on(containers.engine.labelled_containers(&[(labels::MANAGED, "true"), (labels::ROLE, ROLE)]))
            .map_err(|e| format!("pods in containers need the Docker engine: {e}"))?;
        for c in leftovers {
            let owner = c.labels.get(PID).cloned().unwrap_or_default();
            if !alive(&owner) {
                tracing::info!("removing {}, left by a `jinad flow` (pid {owner}) that is gone", c.name);
                let _ = containers.runtime.block_on(containers.engine.remove_container(&c.docker_id));
            }
        }
        Ok(containers)
    }

    /// Starts `pod` in a container; returns its (data, control) addresses as this host reaches them.
    pub fn start(&mut self, pod: &PodSpec, container: &ContainerPod, outputs: &[Output]) -> Result<(String, String), String> {
        let name = container_name(&pod.name);
        let mut args = vec!["pod".to_string()];
        match &container.executor_args {
            Some(given) => args.extend(given.iter().cloned()),
            None => {
                let cmd = self
                    .runtime
                    .block_on(self.engine.image_command(&container.image))
                    .map_err(|e| format!("pod {}: {e}", pod.name))?
                    .ok_or_else(|| format!("pod {}: the image {} is not on the engine (no registry is used)", pod.name, container.image))?;
                // The image's CMD names the executor (`pod --uses … --with …`); a bare one runs Passthrough.
                args.extend(cmd.into_iter().skip_while(|a| a == "pod" || a == "pea" || a.ends_with("/jinad")));
            }
        }
        for (flag, value) in [("--name", pod.name.clone()), ("--replicas", pod.replicas.to_string()), ("--shards", pod.shards.to_string()), ("--needs", pod.needs.to_string())] {
            args.extend([flag.to_string(), value]);
        }
        args.extend(["--host", "0.0.0.0", "--port-in", "5555", "--port-ctrl", "5556", "--workspace", MOUNT, "--advertise", "127.0.0.1"].map(String::from));
        if let Some(polling) = &container.polling {
            args.extend(["--polling".to_string(), polling.clone()]);
        }
        for out in outputs {
            // This process's sockets, as a container reaches them.
            args.extend(["--out".to_string(), format!("{}={}", out.name, sockets::advertised(&out.addr, Some(HOST_FROM_CONTAINERS)))]);
        }
        // Only the pod's own directory is mounted (at `<MOUNT>/<pod>`, where `jinad pod` looks).
        let user = Some(pod_directory(&pod.workspace).map_err(|e| format!("pod {}: {e}", pod.name))?);
        let dir = pod.workspace.canonicalize().map_err(|e| format!("pod {}: {}: {e}", pod.name, pod.workspace.display()))?;
        let spec = ContainerSpec {
            name: name.clone(),
            image: container.image.clone(),
            entrypoint: Some(vec![BINARY_PATH.to_string()]),
            cmd: args,
            user,
            env: pod.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            labels: HashMap::from([
                (labels::MANAGED.to_string(), "true".to_string()),
                (labels::ROLE.to_string(), ROLE.to_string()),
                (labels::PEA.to_string(), pod.name.clone()),
                (PID.to_string(), std::process::id().to_string()),
            ]),
            network: None,
            binds: vec![format!("{}:{MOUNT}/{}", dir.display(), pod.name)],
            workdir: None,
            publish: vec![DATA_PORT, CTRL_PORT],
            publish_ip: "127.0.0.1".into(),
            extra_hosts: vec![format!("{HOST_FROM_CONTAINERS}:host-gateway")],
            ..Default::default()
        };
        self.started.push(name.clone());
        self.runtime.block_on(self.engine.run_container(&spec)).map_err(|e| format!("pod {}: {e}", pod.name))?;
        let status = self
            .runtime
            .block_on(self.engine.inspect_container(&name))
            .map_err(|e| format!("pod {}: {e}", pod.name))?
            .ok_or_else(|| format!("pod {}: its container vanished", pod.name))?;
        let port = |p: u16| status.ports.get(&p).copied().ok_or_else(|| format!("pod {}: port {p} is not published", pod.name));
        Ok((format!("tcp://127.0.0.1:{}", port(DATA_PORT)?), format!("tcp://127.0.0.1:{}", port(CTRL_PORT)?)))
    }

    /// Whether the pod's container stopped (or vanished).
    pub fn has_exited(&self, pod: &str) -> bool {
        let name = container_name(pod);
        match self.runtime.block_on(self.engine.inspect_container(&name)) {
            Ok(Some(status)) => !status.running && !status.restarting,
            Ok(None) => self.started.contains(&name),
            Err(_) => false,
        }
    }

    /// The last lines of a pod's container, for an error message.
    pub fn last_lines(&self, pod: &str) -> String {
        let name = container_name(pod);
        self.runtime.block_on(self.engine.container_logs(&name, 20)).map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Stops (SIGTERM: executors persist) and removes every container of this run.
    pub fn remove_all(&mut self) {
        for name in std::mem::take(&mut self.started) {
            let engine = &self.engine;
            let done = self.runtime.block_on(async {
                engine.stop_container(&name, Duration::from_secs(10)).await?;
                engine.remove_container(&name).await
            });
            if let Err(e) = done {
                tracing::warn!("cannot remove container {name}: {e}");
            }
        }
    }
}

/// Makes sure the pod's workspace directory exists and says who the container runs as: its owner
/// — never root. A directory this call creates (or one an earlier run handed over) goes to the
/// unprivileged container user; an existing root-owned one is refused: jinad never hands over a
/// directory it did not create (it could be a project, or `/`).
fn pod_directory(dir: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let (uid, gid) = crate::workspace::paths::CONTAINER_USER;
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(format!("{} is not a directory", dir.display())),
        Ok(meta) if meta.uid() != 0 => Ok(format!("{}:{}", meta.uid(), meta.gid())),
        Ok(_) => Err(format!(
            "its workspace {} belongs to root and jinad did not create it; containers never run as root: give it to another user, or let jinad create it",
            dir.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            if std::fs::symlink_metadata(dir).map(|m| m.uid() == 0).unwrap_or(false) {
                std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(|e| format!("{}: {e}", dir.display()))?;
                return Ok(format!("{uid}:{gid}"));
            }
            let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
            Ok(format!("{}:{}", meta.uid(), meta.gid()))
        }
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        self.remove_all();
    }
}
