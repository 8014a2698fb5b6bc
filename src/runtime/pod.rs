//! A pod: one executor, `shards` partitions × `replicas` copies. With one pea it is just that pea;
//! with more it gets a head (distributes by polling) and a tail (collects and merges).
//! Pea names: `pod`, or `pod/head`, `pod/tail`, `pod/shard-i`, `pod/rep-j`, `pod/shard-i/rep-j`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::executor::{ExecutorContext, ExecutorSpec};
use super::message::ControlRequest;
use super::node::{self, Node, Role};
use super::polling::Polling;
use super::sockets::{self, SocketError, Target};

#[derive(Debug, Clone)]
pub struct PodSpec {
    pub name: String,
    pub executor: ExecutorSpec,
    pub replicas: usize,
    pub shards: usize,
    pub polling: Polling,
    /// Parts each request arrives in: the number of the pod's `needs`.
    pub needs: usize,
    /// The pod's own directory; shard `i` of a sharded pod uses `shard-i` inside it.
    pub workspace: PathBuf,
    pub env: BTreeMap<String, String>,
    /// Set when `jinad flow` runs this pod in a container (JEP 2: `uses: docker://IMAGE` or `image:`).
    pub container: Option<ContainerPod>,
    /// Set when `jinad flow` runs this pod on other jinad daemons (`host:`).
    pub remote: Option<RemotePod>,
}

/// A jinad daemon a remote pod runs on: its API (`http://HOST:PORT`) and token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHost {
    pub api: String,
    pub token: Option<String>,
}

/// A pod that runs on other jinad daemons (`host:` in the Flow YAML): what `POST /pods` there is
/// asked to run. With several hosts and several peas the peas are spread over them.
#[derive(Debug, Clone, PartialEq)]
pub struct RemotePod {
    pub hosts: Vec<RemoteHost>,
    pub uses: String,
    pub with: serde_json::Map<String, serde_json::Value>,
    /// Relative to the Flow YAML's directory (which is what is uploaded).
    pub py_modules: Vec<String>,
    pub polling: Option<serde_json::Value>,
}

impl RemotePod {
    /// Whether the peas are spread over the hosts (head and tail then run in the Flow's process).
    pub fn spread(&self, peas: usize) -> bool {
        self.hosts.len() > 1 && peas > 1
    }
}

/// A pod that runs in a container of `image` instead of in this process.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPod {
    pub image: String,
    /// `jinad pod` arguments choosing the executor (`--uses`, `--with`, `--py-modules`), from the
    /// YAML (`image:` + `uses:`); `None` for `uses: docker://IMAGE`, whose own `CMD` chooses it.
    pub executor_args: Option<Vec<String>>,
    /// `--polling` as JSON, when the YAML sets it.
    pub polling: Option<String>,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Loopback TCP: what crosses processes and containers.
    Tcp,
    /// ZeroMQ's in-process transport: the same sockets and frames, no kernel round trip.
    Inproc,
}

impl Transport {
    pub fn local_addr(self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        match self {
            Transport::Tcp => "tcp://127.0.0.1:0".to_string(),
            Transport::Inproc => format!("inproc://jinad-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("pod `{pod}`: {source}")]
    Socket { pod: String, source: SocketError },
    #[error("pea `{pea}`: cannot start its executor: {message}")]
    Executor { pea: String, message: String },
    #[error("pod `{pod}`: {message}")]
    Wiring { pod: String, message: String },
    #[error("pea `{pea}`: cannot start a thread: {source}")]
    Thread { pea: String, source: std::io::Error },
}

/// A downstream node, by name and input address; with `bind`, `addr` is where this pod binds the
/// output for the consumer to connect to (a remote pod's results, see `sockets::Target::bind`).
#[derive(Debug, Clone)]
pub struct Output {
    pub name: String,
    pub addr: String,
    pub bind: bool,
}

impl Output {
    /// An output that connects to the consumer's input at `addr`.
    pub fn to(name: &str, addr: &str) -> Self {
        Output { name: name.to_string(), addr: addr.to_string(), bind: false }
    }
}

/// A pea of a pod whose head and tail run here but whose peas run on other machines (`host:` a
/// list): where it takes requests, where it binds its results for the tail, its control port.
#[derive(Debug, Clone)]
pub struct RemotePea {
    pub name: String,
    pub shard: usize,
    pub in_addr: String,
    pub out_addr: String,
    pub ctrl_addr: String,
}

/// How a pod started here is wired: its entry's addresses, where inner nodes bind, where results
/// go, which bound outputs of remote pods its entry pulls from, and its peas that run remotely
/// (then only the head and the tail run here).
pub struct Wiring<'a> {
    pub in_addr: &'a str,
    pub ctrl_addr: &'a str,
    pub inner: Transport,
    pub outputs: &'a [Output],
    pub pull_from: &'a [String],
    pub remote_peas: &'a [RemotePea],
}

pub struct RunningPod {
    pub name: String,
    /// Where the pod takes requests (its head, or its only pea).
    pub in_addr: String,
    /// Every node's (name, control address) this process stops, head first.
    pub nodes: Vec<(String, String)>,
    /// Nodes that run on another jinad (name, control address): checked for readiness and named
    /// when silent, but stopped by deleting them there, not by `terminate`.
    pub remote_nodes: Vec<(String, String)>,
    handles: Vec<JoinHandle<()>>,
}

impl PodSpec {
    pub fn pea_names(&self) -> Vec<(usize, usize, String)> {
        pea_names(&self.name, self.shards, self.replicas)
    }

    pub fn context(&self, name: &str, shard: usize, replica: usize) -> ExecutorContext {
        ExecutorContext {
            name: name.to_string(),
            pod: self.name.clone(),
            workspace: if self.shards > 1 { self.workspace.join(format!("shard-{shard}")) } else { self.workspace.clone() },
            shard_id: shard,
            shards: self.shards,
            replica_id: replica,
            env: self.env.clone(),
        }
    }
}

/// The peas of a pod `name` with `shards` × `replicas`: (shard, replica, pea name).
pub fn pea_names(name: &str, shards: usize, replicas: usize) -> Vec<(usize, usize, String)> {
    let mut names = Vec::new();
    for shard in 0..shards {
        for replica in 0..replicas {
            let pea = match (shards, replicas) {
                (1, 1) => name.to_string(),
                (1, _) => format!("{name}/rep-{replica}"),
                (_, 1) => format!("{name}/shard-{shard}"),
                _ => format!("{name}/shard-{shard}/rep-{replica}"),
            };
            names.push((shard, replica, pea));
        }
    }
    names
}

/// Binds every node of the pod (the entry on `in_addr`/`ctrl_addr`, inner nodes on `inner`),
/// builds the executors and starts one thread per node.
pub fn start(spec: &PodSpec, in_addr: &str, ctrl_addr: &str, inner: Transport, outputs: &[Output]) -> Result<RunningPod, PodError> {
    start_wired(spec, &Wiring { in_addr, ctrl_addr, inner, outputs, pull_from: &[], remote_peas: &[] })
}

/// [`start`] with the whole [`Wiring`].
pub fn start_wired(spec: &PodSpec, wiring: &Wiring) -> Result<RunningPod, PodError> {
    let Wiring { in_addr, ctrl_addr, inner, outputs, pull_from, remote_peas } = *wiring;
    let sock = |source| PodError::Socket { pod: spec.name.clone(), source };
    let connect = |outs: &[Output]| -> Result<Vec<Target>, PodError> {
        outs.iter().map(|o| Target::open(&o.name, &o.addr, o.bind).map_err(sock)).collect()
    };
    let mut nodes: Vec<Node> = Vec::new();
    let remote = !remote_peas.is_empty();
    let peas = if remote { Vec::new() } else { spec.pea_names() };

    let single = peas.len() == 1;
    let pea_in: Vec<node::Bound> = peas
        .iter()
        .map(|_| if single { node::bind(in_addr, ctrl_addr) } else { node::bind(&inner.local_addr(), &inner.local_addr()) })
        .collect::<Result<_, _>>()
        .map_err(sock)?;

    let tail_name = format!("{}/tail", spec.name);
    let tail = if single { None } else { Some(node::bind(&inner.local_addr(), &inner.local_addr()).map_err(sock)?) };
    if let Some(tail) = &tail {
        for pea in remote_peas {
            sockets::pull_from(&tail.input, &pea.out_addr).map_err(sock)?;
        }
    }
    let pea_outputs: Vec<Output> = match &tail {
        Some(t) => vec![Output::to(&tail_name, &t.in_addr)],
        None => outputs.to_vec(),
    };

    let mut shard_targets: Vec<Vec<Target>> = (0..spec.shards).map(|_| Vec::new()).collect();
    for pea in remote_peas {
        let targets = shard_targets
            .get_mut(pea.shard)
            .ok_or_else(|| PodError::Wiring { pod: spec.name.clone(), message: format!("{}: no shard {} in a pod of {}", pea.name, pea.shard, spec.shards) })?;
        targets.push(Target::connect(&pea.name, &pea.in_addr).map_err(sock)?);
    }
    let mut pea_nodes = Vec::new();
    for ((shard, replica, name), bound) in peas.iter().zip(pea_in) {
        let executor = spec
            .executor
            .build(&spec.context(name, *shard, *replica))
            .map_err(|message| PodError::Executor { pea: name.clone(), message })?;
        if !single {
            shard_targets[*shard].push(Target::connect(name, &bound.in_addr).map_err(sock)?);
        }
        // Inside a sharded pod the head joins the pod's `needs`; a lone pea joins them itself.
        let needs = if single { spec.needs } else { 1 };
        let role = Role::Pea { executor, pod: spec.name.clone(), outputs: connect(&pea_outputs)? };
        pea_nodes.push(Node::new(name, role, bound).joining(needs));
    }

    let entry_addr: String;
    if let Some(tail) = tail {
        let head_name = format!("{}/head", spec.name);
        let head = node::bind(in_addr, ctrl_addr).map_err(sock)?;
        for addr in pull_from {
            sockets::pull_from(&head.input, addr).map_err(sock)?;
        }
        entry_addr = head.in_addr.clone();
        // The head joins the pod's `needs` before it distributes: a pea behind a head sees whole requests.
        let head_role = Role::Head {
            polling: spec.polling.clone(),
            next_replica: vec![0; spec.shards],
            shards: shard_targets,
            next_shard: spec.shards - 1,
            tail: Target::connect(&tail_name, &tail.in_addr).map_err(sock)?,
        };
        nodes.push(Node::new(&head_name, head_role, head).joining(spec.needs));
        let tail_role = Role::Tail { polling: spec.polling.clone(), shards: spec.shards, outputs: connect(outputs)? };
        nodes.extend(pea_nodes);
        nodes.push(Node::new(&tail_name, tail_role, tail));
    } else {
        entry_addr = pea_nodes.first().map(|n| n.in_addr().to_string()).unwrap_or_default();
        for node in &pea_nodes {
            for addr in pull_from {
                node.pull_from(addr).map_err(sock)?;
            }
        }
        nodes.extend(pea_nodes);
    }

    // Head first, then the peas, then the tail: the order `stop` terminates them in.
    let control: Vec<(String, String)> = nodes.iter().map(|n| (n.name.clone(), n.ctrl_addr().to_string())).collect();
    let mut handles = Vec::new();
    for node in nodes {
        let name = node.name.clone();
        handles.push(node.spawn().map_err(|source| PodError::Thread { pea: name, source })?);
    }
    let remote_nodes = remote_peas.iter().map(|p| (p.name.clone(), p.ctrl_addr.clone())).collect();
    Ok(RunningPod { name: spec.name.clone(), in_addr: entry_addr, nodes: control, remote_nodes, handles })
}

impl RunningPod {
    /// A pod running elsewhere (a container) that answers on `ctrl` for all its nodes.
    pub fn elsewhere(name: &str, in_addr: String, ctrl: String) -> Self {
        RunningPod { name: name.to_string(), in_addr, nodes: vec![(name.to_string(), ctrl)], remote_nodes: Vec::new(), handles: Vec::new() }
    }

    /// A pod running on another jinad: requests go to `in_addr`; `remote_nodes` answer `status`.
    /// Stopping it is deleting it there.
    pub fn remote(name: &str, in_addr: String, remote_nodes: Vec<(String, String)>) -> Self {
        RunningPod { name: name.to_string(), in_addr, nodes: Vec::new(), remote_nodes, handles: Vec::new() }
    }

    /// Every node's (name, control address), remote ones included.
    pub fn all_nodes(&self) -> impl Iterator<Item = &(String, String)> {
        self.nodes.iter().chain(&self.remote_nodes)
    }

    /// Waits until every node answers `status` as ready.
    pub fn wait_ready(&self, deadline: Instant) -> Result<(), SocketError> {
        for (_, ctrl) in self.all_nodes() {
            sockets::wait_ready(ctrl, deadline)?;
        }
        Ok(())
    }

    /// Terminates every node (head first, so nothing new reaches the peas), lets executors
    /// persist, joins the threads. A node that does not answer within `timeout` (an executor stuck
    /// in a call) is left behind rather than waited for: stopping never hangs. Returns what went
    /// wrong, by node.
    pub fn stop(self, timeout: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        let mut handles = self.handles.into_iter();
        for (name, ctrl) in &self.nodes {
            let handle = handles.next();
            match sockets::control(ctrl, ControlRequest::Terminate, timeout) {
                Ok(reply) => {
                    if !reply.message.is_empty() {
                        problems.push(format!("{name}: {}", reply.message));
                    }
                    if handle.is_some_and(|h| h.join().is_err()) {
                        problems.push(format!("{name}: its thread panicked"));
                    }
                }
                Err(e) => problems.push(format!("{name}: {e}; left running")),
            }
        }
        problems
    }
}
