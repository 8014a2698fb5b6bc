//! A Flow as manifests for an orchestrator people already run (`jinad export compose|kubernetes`,
//! `GET /flows/{id}/export`): the same layout as a daemon-run Flow (one container per pea, a head
//! and a tail where a pod has several peas, the gateway), but as *services* an orchestrator
//! schedules, restarts and resolves by name.
//!
//! [`Topology::of`] is the one place that decides the services, their `jinad` commands and who
//! connects to whom; [`compose`] and [`kubernetes`] only dress it in their formats.
//!
//! Replicas of one shard are *one* service with `replicas` copies (so the orchestrator scales and
//! restarts them), reached by one DNS name that resolves to every copy's address (`dnsrr` in
//! Swarm, a headless Service in Kubernetes, the service name in Compose). ZeroMQ connections are
//! long-lived and a name resolves to one address per connection, so a load-balanced virtual IP
//! would send every request of the head to one replica; the head runs with `--resolve-all`
//! instead: it connects to every address of the name and follows it as replicas come and go,
//! spreading requests over them one by one.

pub mod command;
pub mod compose;
pub mod daemon;
pub mod kubernetes;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::deployment::plan::{CTRL_PORT, DATA_PORT, HTTP_PORT, RETURNS_PORT};
use crate::docker::containers::{Limits, RestartMode, RestartPolicy};
use crate::runtime::flow::FlowSpec;
use crate::workspace::dockerfile::BINARY_PATH;

/// What the manifests run and how.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// An image holding the `jinad` binary (on `PATH`, as in every workspace image) and the
    /// Flow's files.
    pub image: String,
    /// The Flow YAML's path inside the image; relative paths of the Flow start at its directory.
    pub flow_path: String,
    /// The gateway's published port.
    pub port: u16,
    /// Per container.
    pub limits: Limits,
    pub restart: RestartPolicy,
    /// Environment of every container: what `${{ ENV.NAME }}` in the YAML read at export time
    /// (each container reads the YAML again).
    pub env: BTreeMap<String, String>,
}

/// Why a Flow cannot be exported.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExportError(pub String);

/// How an orchestrator checks a node: its control port answers `status` ready, or the gateway's
/// `/ready`. Both run `jinad probe` inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Control(u16),
    Http { port: u16, path: &'static str },
}

impl Probe {
    /// The readiness probe as a command run in the container.
    pub fn command(&self) -> Vec<String> {
        let target = match self {
            Probe::Control(port) => format!("tcp://127.0.0.1:{port}"),
            Probe::Http { port, path } => format!("http://127.0.0.1:{port}{path}"),
        };
        vec![BINARY_PATH.to_string(), "probe".to_string(), target]
    }

    /// The liveness probe: as [`Probe::command`], but the gateway only has to answer HTTP.
    /// (A Swarm task gets its DNS name only once healthy, and a gateway is ready only once the
    /// leaves connected back to it by that name: its health cannot wait for its readiness.)
    pub fn alive_command(&self) -> Vec<String> {
        let mut command = self.command();
        if matches!(self, Probe::Http { .. }) {
            command.insert(2, "--alive".to_string());
        }
        command
    }
}

/// One service: a node of the Flow (a pea, a shard's replicas, a head, a tail, the gateway).
#[derive(Debug, Clone)]
pub struct Service {
    /// The DNS name others reach it by (a DNS label: lowercase letters, digits, `-`).
    pub name: String,
    /// Its name in the runtime (`idx/shard-0`, `idx/head`, `gateway`): logs and errors say it.
    pub pea: String,
    /// The pod it belongs to (`None` for the gateway).
    pub pod: Option<String>,
    /// What it is: `gateway`, `pea`, `head` or `tail`.
    pub role: &'static str,
    /// Arguments of the image's `jinad` entrypoint.
    pub args: Vec<String>,
    pub replicas: usize,
    /// Ports it listens on, by name.
    pub ports: Vec<(&'static str, u16)>,
    pub probe: Probe,
    /// A stateful shard's data directory inside the container: a volume per shard goes there.
    pub state_dir: Option<String>,
    /// Services it connects to (its outputs, a head's shards and tail, the gateway's entries).
    pub connects_to: Vec<String>,
    /// Replicated: its name must resolve to every replica (headless / dnsrr).
    pub replicated: bool,
}

impl Service {
    pub fn is_gateway(&self) -> bool {
        self.role == "gateway"
    }
}

/// The services of a Flow, the gateway first.
#[derive(Debug, Clone)]
pub struct Topology {
    pub services: Vec<Service>,
    pub options: ExportOptions,
    /// The Flow YAML as given (the Kubernetes ConfigMap carries it).
    pub yaml: String,
    /// The YAML's file name.
    pub yaml_name: String,
}

fn addr(service: &str, port: u16) -> String {
    format!("tcp://{service}:{port}")
}

/// `name` as a DNS label (Compose, Swarm and Kubernetes names): lowercase, `_` → `-`.
fn dns_label(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-").trim_matches('-').to_string()
}

fn valid_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Topology {
    /// Plans the services of the Flow YAML `yaml`. `yaml_name`: its file name. The YAML is read as
    /// the containers will read it: at `options.flow_path`, with `options.env` as environment.
    pub fn of(yaml: &str, yaml_name: &str, options: ExportOptions) -> Result<Self, ExportError> {
        let in_image = Path::new(&options.flow_path);
        if !in_image.is_absolute() || in_image.file_name().is_none() {
            return Err(ExportError(format!("the Flow's path in the image must be an absolute file path, not `{}`", options.flow_path)));
        }
        let base = in_image.parent().unwrap_or(Path::new("/"));
        let spec = FlowSpec::parse_with_env(yaml, base, &|name| options.env.get(name).cloned()).map_err(|e| ExportError(format!("{yaml_name}: {e}")))?;
        options.limits.check().map_err(ExportError)?;
        // `on-failure` without `max_retries` is "no limit" here (orchestrators have none by default).
        if options.restart.max_retries.is_some_and(|n| !(1..=100).contains(&n)) {
            return Err(ExportError("max_retries: 1..=100".into()));
        }
        check_image(&options.image)?;
        for pod in &spec.pods {
            if pod.remote.is_some() {
                return Err(ExportError(format!("executor `{}`: `host:` pods run on other jinad daemons; an exported Flow runs every pod in the cluster (remove `host:`)", pod.name)));
            }
            if pod.container.is_some() {
                return Err(ExportError(format!("executor `{}`: `docker://`/`image:` pods are not exported yet; every pod runs the Flow's image (`--image`)", pod.name)));
            }
        }
        let mut services = Vec::new();
        let flow = options.flow_path.clone();
        // Pods in reverse DAG order: a pod's consumers are planned (and named) before it.
        let mut entries: Vec<Option<String>> = vec![None; spec.pods.len()];
        let mut pod_services: Vec<Vec<Service>> = vec![Vec::new(); spec.pods.len()];
        for &i in spec.order.iter().rev() {
            let pod = &spec.pods[i];
            let base = dns_label(&pod.name);
            let outputs: Vec<(String, String)> = match spec.consumers(i) {
                consumers if consumers.is_empty() => vec![("gateway".to_string(), "gateway".to_string())],
                consumers => consumers.iter().filter_map(|&j| entries[j].clone().map(|e| (spec.pods[j].name.clone(), e))).collect(),
            };
            let node_args = |pea: &str, service: &str| -> Vec<String> {
                [
                    "pea", "--from-flow", &flow, "--pod", &pod.name, "--name", pea, "--host", "0.0.0.0", "--port-in", &DATA_PORT.to_string(),
                    "--port-ctrl", &CTRL_PORT.to_string(), "--advertise", service,
                ]
                .map(String::from)
                .to_vec()
            };
            let out_args = |args: &mut Vec<String>, outputs: &[(String, String)]| {
                for (name, service) in outputs {
                    let port = if service == "gateway" { RETURNS_PORT } else { DATA_PORT };
                    args.extend(["--out".to_string(), format!("{name}={}", addr(service, port))]);
                }
            };
            let node = |name: String, pea: String, role: &'static str, args: Vec<String>, connects_to: Vec<String>| Service {
                name,
                pea,
                pod: Some(pod.name.clone()),
                role,
                args,
                replicas: 1,
                ports: vec![("data", DATA_PORT), ("ctrl", CTRL_PORT)],
                probe: Probe::Control(CTRL_PORT),
                state_dir: None,
                connects_to,
                replicated: false,
            };
            let consumers: Vec<String> = outputs.iter().map(|(_, s)| s.clone()).collect();
            if pod.shards * pod.replicas == 1 {
                let mut args = node_args(&pod.name, &base);
                out_args(&mut args, &outputs);
                let mut single = node(base.clone(), pod.name.clone(), "pea", args, consumers);
                if pod.executor.stateful() {
                    single.state_dir = Some(pod.context(&pod.name, 0, 0).workspace.to_string_lossy().into_owned());
                }
                entries[i] = Some(base);
                pod_services[i] = vec![single];
                continue;
            }
            let head = format!("{base}-head");
            let tail = format!("{base}-tail");
            let tail_pea = format!("{}/tail", pod.name);
            let mut nodes = Vec::new();
            let mut head_args = node_args(&format!("{}/head", pod.name), &head);
            head_args.extend(["--role".into(), "head".into(), "--tail".into(), format!("{tail_pea}={}", addr(&tail, DATA_PORT))]);
            if pod.replicas > 1 {
                head_args.push("--resolve-all".into());
            }
            let mut shard_services = Vec::new();
            for shard in 0..pod.shards {
                let (service, pea) = if pod.shards == 1 {
                    (format!("{base}-peas"), format!("{}/peas", pod.name))
                } else {
                    (format!("{base}-shard-{shard}"), format!("{}/shard-{shard}", pod.name))
                };
                head_args.extend(["--shard-out".into(), format!("{shard}={pea}={}", addr(&service, DATA_PORT))]);
                let mut args = node_args(&pea, &service);
                args.extend(["--shard-id".into(), shard.to_string(), "--replica-id".into(), "0".into()]);
                out_args(&mut args, &[(tail_pea.clone(), tail.clone())]);
                let mut s = node(service.clone(), pea.clone(), "pea", args, vec![tail.clone()]);
                s.replicas = pod.replicas;
                s.replicated = pod.replicas > 1;
                if pod.executor.stateful() {
                    s.state_dir = Some(pod.context(&pea, shard, 0).workspace.to_string_lossy().into_owned());
                }
                shard_services.push(service);
                nodes.push(s);
            }
            let mut connects = shard_services.clone();
            connects.push(tail.clone());
            nodes.insert(0, node(head.clone(), format!("{}/head", pod.name), "head", head_args, connects));
            let mut tail_args = node_args(&tail_pea, &tail);
            tail_args.extend(["--role".into(), "tail".into()]);
            out_args(&mut tail_args, &outputs);
            nodes.push(node(tail.clone(), tail_pea, "tail", tail_args, consumers));
            entries[i] = Some(head);
            pod_services[i] = nodes;
        }
        let mut gateway_args: Vec<String> = [
            "gateway", "--host", "0.0.0.0", "--port", &HTTP_PORT.to_string(), "--returns", &format!("tcp://0.0.0.0:{RETURNS_PORT}"),
            "--advertise", "gateway", "--leaves", &spec.leaves().len().to_string(), "--timeout-ms", &spec.timeout.as_millis().to_string(),
        ]
        .map(String::from)
        .to_vec();
        let mut gateway_connects = Vec::new();
        for i in spec.entries() {
            let entry = entries[i].clone().unwrap_or_default();
            gateway_args.extend(["--entry".into(), format!("{}={}", spec.pods[i].name, addr(&entry, DATA_PORT))]);
            gateway_connects.push(entry);
        }
        for node in pod_services.iter().flatten() {
            gateway_args.extend(["--pea".into(), format!("{}={}", node.pea, addr(&node.name, CTRL_PORT))]);
        }
        services.push(Service {
            name: "gateway".into(),
            pea: "gateway".into(),
            pod: None,
            role: "gateway",
            args: gateway_args,
            replicas: 1,
            ports: vec![("http", HTTP_PORT), ("returns", RETURNS_PORT)],
            probe: Probe::Http { port: HTTP_PORT, path: "/ready" },
            state_dir: None,
            connects_to: gateway_connects,
            replicated: false,
        });
        // Pods in the YAML's order, each pod's nodes head, peas, tail.
        services.extend(pod_services.into_iter().flatten());
        let mut seen = BTreeSet::new();
        for s in &services {
            if !valid_label(&s.name) {
                return Err(ExportError(format!("`{}` (of `{}`) is not a valid DNS name; rename the executor (letters, digits, `-`; at most 50 characters)", s.name, s.pea)));
            }
            if !seen.insert(s.name.clone()) {
                return Err(ExportError(format!("two services would be named `{}`; rename one of the executors (names are lowercased, `_` becomes `-`)", s.name)));
            }
        }
        Ok(Topology { services, options, yaml: yaml.to_string(), yaml_name: yaml_name.to_string() })
    }

    pub fn gateway(&self) -> &Service {
        &self.services[0]
    }

    /// Services that keep state: one volume (or claim) per shard.
    pub fn stateful(&self) -> impl Iterator<Item = &Service> {
        self.services.iter().filter(|s| s.state_dir.is_some())
    }

    /// Whether the orchestrator restarts a container that exited, and how often at most.
    pub fn restart(&self) -> (RestartMode, Option<u32>) {
        (self.options.restart.policy, self.options.restart.max_retries)
    }
}

/// Refuses what no engine or cluster would pull (Docker's reference grammar).
pub fn check_image(image: &str) -> Result<(), ExportError> {
    crate::docker::reference::parse(image, false).map(drop).map_err(|e| ExportError(format!("image {e}")))
}

/// `text` for a `#` comment line: control characters (a newline would end the comment) as `?`.
pub fn comment_safe(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// The names of `${{ ENV.NAME }}` references in a Flow YAML: what exported containers need set.
pub fn env_references(yaml: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = yaml;
    while let Some(start) = rest.find("${{") {
        let after = &rest[start + 3..];
        let Some(end) = after.find("}}") else { break };
        if let Some(name) = after[..end].trim().strip_prefix("ENV.") {
            names.insert(name.to_string());
        }
        rest = &after[end + 2..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const FLOW: &str = "jtype: Flow\nexecutors:\n  - name: enc\n    uses: HashEncoder\n  - name: mid\n    replicas: 2\n  - name: idx\n    uses: VectorIndexer\n    shards: 2\n";

    pub(crate) fn options() -> ExportOptions {
        ExportOptions {
            image: "reg.example/flow:1".into(),
            flow_path: "/workspace/flow.yml".into(),
            port: 8080,
            limits: Limits::default(),
            restart: RestartPolicy::default(),
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn services_follow_the_container_layout() {
        let t = Topology::of(FLOW, "flow.yml", options()).unwrap();
        let names: Vec<&str> = t.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["gateway", "enc", "mid-head", "mid-peas", "mid-tail", "idx-head", "idx-shard-0", "idx-shard-1", "idx-tail"]);
        let by = |n: &str| t.services.iter().find(|s| s.name == n).unwrap();
        assert_eq!(by("mid-peas").replicas, 2);
        assert!(by("mid-peas").replicated && !by("idx-shard-0").replicated);
        assert!(by("mid-head").args.contains(&"--resolve-all".to_string()));
        assert!(!by("idx-head").args.contains(&"--resolve-all".to_string()));
        assert_eq!(by("idx-shard-1").state_dir.as_deref(), Some("/workspace/workspace/idx/shard-1"));
        assert!(by("enc").state_dir.is_none());
        assert!(by("enc").args.join(" ").contains("--out mid=tcp://mid-head:5555"));
        assert!(by("idx-tail").args.join(" ").contains("--out gateway=tcp://gateway:5557"));
        assert!(by("gateway").args.join(" ").contains("--entry enc=tcp://enc:5555"));
        // Every address anyone connects to is a service of the set.
        for s in &t.services {
            for target in &s.connects_to {
                assert!(t.services.iter().any(|o| &o.name == target), "{} → {target}", s.name);
            }
        }
    }

    #[test]
    fn names_become_dns_labels_and_clashes_are_refused() {
        let t = Topology::of("jtype: Flow\nexecutors:\n  - name: My_Enc\n", "f.yml", options()).unwrap();
        assert_eq!(t.services[1].name, "my-enc");
        let clash = Topology::of("jtype: Flow\nexecutors:\n  - name: a_b\n  - name: a-b\n", "f.yml", options()).unwrap_err();
        assert!(clash.0.contains("two services would be named `a-b`"), "{clash}");
        let remote = Topology::of("jtype: Flow\nexecutors:\n  - name: a\n    host: 10.0.0.1:8000\n", "f.yml", options()).unwrap_err();
        assert!(remote.0.contains("`host:` pods"), "{remote}");
        let relative = Topology::of(FLOW, "f.yml", ExportOptions { flow_path: "flow.yml".into(), ..options() }).unwrap_err();
        assert!(relative.0.contains("absolute"), "{relative}");
    }

    #[test]
    fn env_references_are_found() {
        let refs = env_references("a: ${{ ENV.A }}\nb: ${{ENV.B_2}} ${{ ENV.A }}\n");
        assert_eq!(refs.into_iter().collect::<Vec<_>>(), ["A", "B_2"]);
    }
}
