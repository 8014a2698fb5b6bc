//! The runtime's command-line roles: `jinad flow`, `jinad pod`, `jinad pea`, `jinad gateway`.
//! Each prints one line when it is ready (the flow its URL, a pod/pea a JSON object with its
//! addresses) and stops cleanly on Ctrl-C / SIGTERM.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};

use super::executor::ExecutorSpec;
use super::flow::remote::RemoteOptions;
use super::flow::{FlowSpec, RunningFlow};
use super::gateway::{self, Dispatcher, GatewayPlan};
use super::message::{self, ControlReply, ControlRequest, Kind};
use super::node::{self, Node, Role};
use super::pod::{self, Output, PodSpec, Transport};
use super::polling::{Polling, PollingSpec};
use super::sockets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    Tcp,
    Inproc,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Tcp => Transport::Tcp,
            TransportArg::Inproc => Transport::Inproc,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct FlowArgs {
    /// The Flow YAML.
    pub file: PathBuf,
    /// Gateway port (overrides `with.port`; 0 = any free port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Gateway address (overrides `with.host`).
    #[arg(long)]
    pub host: Option<IpAddr>,
    /// How the peas of this process talk: `inproc` (ZeroMQ in-process, fastest) or `tcp` (loopback).
    #[arg(long, value_enum, default_value = "inproc")]
    pub transport: TransportArg,
    /// Lease of the pods started on `host:` daemons, in seconds: a host deletes them when the
    /// Flow has not renewed it for this long (the Flow was killed or cut off).
    #[arg(long, default_value_t = super::flow::remote::DEFAULT_LEASE_SECS)]
    pub remote_lease: u64,
    /// Seconds a `host:` daemon may take to build the uploaded project and start a pod.
    #[arg(long, default_value_t = super::flow::remote::DEFAULT_START_TIMEOUT_SECS)]
    pub remote_timeout: u64,
    /// PEM certificates that verify `host:` daemons served over HTTPS (self-signed, private CA).
    #[arg(long, env = "JINAD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PodArgs {
    #[arg(long)]
    pub name: String,
    /// A built-in executor (Passthrough, HashEncoder, VectorIndexer), or with --py-modules a Python class.
    #[arg(long, default_value = "Passthrough")]
    pub uses: String,
    /// Python files defining the class named by --uses; repeat for several.
    #[arg(long = "py-modules")]
    pub py_modules: Vec<PathBuf>,
    /// The executor's arguments, as a JSON object.
    #[arg(long = "with", default_value = "{}")]
    pub with_json: String,
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// `any`, `all`, or a JSON object such as `{"/search": "all", "*": "any"}`. Default: /index any, /search all.
    #[arg(long)]
    pub polling: Option<String>,
    /// Parts each request arrives in (the number of the pod's `needs`).
    #[arg(long, default_value_t = 1)]
    pub needs: usize,
    #[arg(long, default_value = "workspace")]
    pub workspace: PathBuf,
    /// Address to bind; in a container use 0.0.0.0.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port of the data input (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub port_in: u16,
    /// Port of the control socket (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub port_ctrl: u16,
    /// Where results go, `NAME=tcp://HOST:PORT`; repeat for several.
    #[arg(long = "out", value_parser = named_addr)]
    pub outputs: Vec<(String, String)>,
    /// Results for `NAME`, on a PUSH socket this process binds at `tcp://HOST:PORT`: the consumer
    /// connects to it (a remote pod's results to a Flow on another machine); repeat for several.
    #[arg(long = "out-bind", value_parser = named_addr)]
    pub bound_outputs: Vec<(String, String)>,
    /// `KEY=VALUE`, set on this process for the executor.
    #[arg(long = "env", value_parser = key_value)]
    pub env: Vec<(String, String)>,
    /// The host others reach this process at, written into the addresses it prints (default: the
    /// bound host; 127.0.0.1 for 0.0.0.0). In a container: its name on the network.
    #[arg(long)]
    pub advertise: Option<String>,
    /// `jinad pea` only: what this process runs of its pod — `pea` (an executor), or the `head` /
    /// `tail` of a pod with several peas (each pea, head and tail in its own process/container).
    #[arg(long, value_enum, default_value = "pea")]
    pub role: NodeRole,
    /// `jinad pea` only: take the pod (executor, arguments, `needs`, env, workspace) from this
    /// Flow YAML, the executor named by `--pod`; `--uses`/`--with`/… are then ignored.
    #[arg(long)]
    pub from_flow: Option<PathBuf>,
    /// `jinad pea` only: the pod this pea belongs to (its workspace, its `--replicas`/`--shards`).
    #[arg(long)]
    pub pod: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub shard_id: usize,
    #[arg(long, default_value_t = 0)]
    pub replica_id: usize,
    /// A head's peas, `SHARD=NAME=tcp://HOST:PORT`; repeat for every replica of every shard.
    #[arg(long = "shard-out", value_parser = shard_addr)]
    pub shard_outputs: Vec<(usize, String, String)>,
    /// A head: each `--shard-out` host is a DNS name for all the replicas of its shard (a
    /// Compose/Swarm service in `dnsrr` mode, a Kubernetes headless Service): connect to every
    /// address it resolves to and follow it (resolved again every 2 s), so requests are spread
    /// over the replicas one by one. Without it ZeroMQ connects to one address per name.
    #[arg(long)]
    pub resolve_all: bool,
    /// A head's tail, `NAME=tcp://HOST:PORT`.
    #[arg(long, value_parser = named_addr)]
    pub tail: Option<(String, String)>,
}

/// What one `jinad pea` process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NodeRole {
    Pea,
    Head,
    Tail,
}

#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// A pod the gateway sends requests to, `NAME=tcp://HOST:PORT`; repeat for several.
    #[arg(long = "entry", value_parser = named_addr, required = true)]
    pub entries: Vec<(String, String)>,
    /// How many pods answer each request.
    #[arg(long, default_value_t = 1)]
    pub leaves: usize,
    /// A pea's control address `NAME=tcp://HOST:PORT`: readiness waits for it; a timeout names it if silent.
    #[arg(long = "pea", value_parser = named_addr)]
    pub peas: Vec<(String, String)>,
    /// Where answers come back (bind address; port 0 = any).
    #[arg(long, default_value = "tcp://127.0.0.1:0")]
    pub returns: String,
    /// The host the peas send answers to (the reply-to address's host; default: the bound host,
    /// 127.0.0.1 for 0.0.0.0). In a container: its name on the network.
    #[arg(long)]
    pub advertise: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}

fn named_addr(s: &str) -> Result<(String, String), String> {
    let (name, addr) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected NAME=tcp://HOST:PORT"))?;
    if !addr.starts_with("tcp://") && !addr.starts_with("inproc://") && !addr.starts_with("ipc://") {
        return Err(format!("`{addr}`: expected tcp://HOST:PORT"));
    }
    Ok((name.to_string(), addr.to_string()))
}

fn shard_addr(s: &str) -> Result<(usize, String, String), String> {
    let (shard, rest) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected SHARD=NAME=tcp://HOST:PORT"))?;
    let shard = shard.parse().map_err(|_| format!("`{shard}`: expected a shard number"))?;
    let (name, addr) = named_addr(rest)?;
    Ok((shard, name, addr))
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("`{s}`: expected KEY=VALUE"))
}

/// Set when SIGINT or SIGTERM arrives.
fn stop_signal() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let _ = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                if let Ok(mut term) = signal(SignalKind::terminate()) {
                    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
                } else {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        });
        set.store(true, Ordering::SeqCst);
    });
    flag
}

pub fn flow(args: FlowArgs) -> Result<(), String> {
    args.tls.files()?;
    let mut spec = FlowSpec::load(&args.file).map_err(|e| e.to_string())?;
    if let Some(port) = args.port {
        spec.port = port;
    }
    if let Some(host) = args.host {
        spec.host = host;
    }
    // `with.env` is the Flow's: set it on this process (every pod runs here) before any thread starts.
    // A pod's own `env` reaches its executor through `ExecutorContext::env`.
    for (key, value) in &spec.env {
        std::env::set_var(key, value);
    }
    let started = Instant::now();
    // Ctrl-C / SIGTERM while starting: stop what started (containers included) and exit.
    let interrupted = stop_signal();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let remote = RemoteOptions {
        lease: Duration::from_secs(args.remote_lease.max(1)),
        start_timeout: Duration::from_secs(args.remote_timeout.max(1)),
        ca_file: args.ca_file.clone(),
    };
    let flow = RunningFlow::start_until(spec, args.transport.into(), &interrupted, &remote)?;
    if interrupted.load(Ordering::SeqCst) {
        let problems = flow.stop();
        return if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) };
    }
    runtime.block_on(flow.serve(&args.tls, move |url| {
        // Scripts, tests and `jinad bench` wait for this line.
        println!("jinad flow ready: {url} ({} ms)", started.elapsed().as_millis());
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }))
}

fn pod_spec(args: &PodArgs, pod_name: &str) -> Result<PodSpec, String> {
    let with: Map<String, Value> = serde_json::from_str(&args.with_json).map_err(|e| format!("--with: {e}"))?;
    let executor = if args.py_modules.is_empty() {
        ExecutorSpec::parse(&args.uses, &with)?
    } else {
        let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
        ExecutorSpec::python(&args.uses, args.py_modules.iter().map(|m| cwd.join(m)).collect(), &with)?
    };
    let polling = match args.polling.as_deref() {
        None => None,
        Some(p @ ("any" | "all")) => Some(serde_json::from_value::<PollingSpec>(json!(p)).map_err(|e| e.to_string())?),
        Some(p) => Some(serde_json::from_str::<PollingSpec>(p).map_err(|e| format!("--polling: {e}"))?),
    };
    if args.replicas == 0 || args.shards == 0 || args.replicas * args.shards > 64 {
        return Err("--replicas and --shards must be at least 1, and their product at most 64".into());
    }
    if args.replicas > 1 && executor.stateful() {
        return Err(format!("{} keeps state per shard: use --shards, not --replicas", args.uses));
    }
    Ok(PodSpec {
        name: pod_name.to_string(),
        executor,
        replicas: args.replicas,
        shards: args.shards,
        polling: Polling::from_spec(polling)?,
        needs: args.needs.max(1),
        workspace: args.workspace.join(pod_name),
        env: args.env.iter().cloned().collect::<BTreeMap<_, _>>(),
        container: None,
        remote: None,
    })
}

fn need_outputs(args: &PodArgs) -> Result<(), String> {
    if args.outputs.is_empty() && args.bound_outputs.is_empty() {
        return Err("at least one --out NAME=ADDR (or --out-bind NAME=ADDR) is needed".into());
    }
    Ok(())
}

/// The outputs of `--out` (connected) and `--out-bind` (bound).
fn outputs_of(args: &PodArgs) -> Vec<Output> {
    let connected = args.outputs.iter().map(|(name, addr)| Output::to(name, addr));
    connected.chain(args.bound_outputs.iter().map(|(name, addr)| Output { name: name.clone(), addr: addr.clone(), bind: true })).collect()
}

/// `{"NAME": address}` of the bound outputs among `targets`, as peers reach them.
fn bound_addresses(targets: &[sockets::Target], args: &PodArgs) -> Value {
    let bound: Map<String, Value> = targets
        .iter()
        .filter(|t| args.bound_outputs.iter().any(|(name, _)| *name == t.name))
        .map(|t| (t.name.clone(), json!(sockets::advertised(&t.addr, args.advertise.as_deref()))))
        .collect();
    Value::Object(bound)
}

/// `jinad pea`: one node in this process — a pea (one executor), or the head or tail of a pod
/// whose peas run as processes (containers) of their own. It answers `status`/`terminate` on its
/// control port itself and stops on Ctrl-C / SIGTERM (executors persist first).
pub fn pea(args: PodArgs) -> Result<(), String> {
    let pod_name = match &args.pod {
        Some(pod) => pod.clone(),
        None if args.replicas != 1 || args.shards != 1 => {
            return Err("--replicas/--shards on a pea describe its pod: name it with --pod (to run a whole pod, use `jinad pod`)".into())
        }
        None => args.name.clone(),
    };
    let spec = match &args.from_flow {
        Some(file) => FlowSpec::load(file)
            .map_err(|e| e.to_string())?
            .pods
            .into_iter()
            .find(|p| p.name == pod_name)
            .ok_or_else(|| format!("{}: no executor is named `{pod_name}`", file.display()))?,
        None => pod_spec(&args, &pod_name)?,
    };
    if args.shard_id >= spec.shards || args.replica_id >= spec.replicas {
        return Err(format!("--shard-id/--replica-id must be below --shards ({}) / --replicas ({})", spec.shards, spec.replicas));
    }
    for (k, v) in &spec.env {
        std::env::set_var(k, v);
    }
    let sock = |e: sockets::SocketError| e.to_string();
    let open = |outs: &[Output]| -> Result<Vec<sockets::Target>, String> {
        outs.iter().map(|o| sockets::Target::open(&o.name, &o.addr, o.bind).map_err(sock)).collect()
    };
    let mut out_addresses = json!({});
    let bound = node::bind(&format!("tcp://{}:{}", args.host, args.port_in), &format!("tcp://{}:{}", args.host, args.port_ctrl)).map_err(sock)?;
    let node = match args.role {
        NodeRole::Pea => {
            need_outputs(&args)?;
            let context = spec.context(&args.name, args.shard_id, args.replica_id);
            let executor = spec.executor.build(&context)?;
            // A lone pea joins its pod's `needs`; behind a head it sees whole requests.
            let needs = if spec.shards * spec.replicas == 1 { spec.needs } else { 1 };
            let outputs = open(&outputs_of(&args))?;
            out_addresses = bound_addresses(&outputs, &args);
            let role = Role::Pea { executor, pod: spec.name.clone(), outputs };
            Node::new(&args.name, role, bound).joining(needs)
        }
        NodeRole::Head => {
            let (tail_name, tail_addr) = args.tail.clone().ok_or("a head needs --tail NAME=ADDR")?;
            let mut shards: Vec<Vec<sockets::Target>> = (0..spec.shards).map(|_| Vec::new()).collect();
            for (shard, name, addr) in &args.shard_outputs {
                let targets = shards.get_mut(*shard).ok_or_else(|| format!("--shard-out {shard}: the pod has {} shards", spec.shards))?;
                let target = if args.resolve_all { sockets::Target::connect_all(name, addr) } else { sockets::Target::connect(name, addr) };
                targets.push(target.map_err(sock)?);
            }
            if let Some(empty) = shards.iter().position(Vec::is_empty) {
                return Err(format!("a head needs --shard-out for every shard (none for shard {empty})"));
            }
            let role = Role::Head {
                polling: spec.polling.clone(),
                next_replica: vec![0; spec.shards],
                shards,
                next_shard: spec.shards - 1,
                tail: sockets::Target::connect(&tail_name, &tail_addr).map_err(sock)?,
            };
            Node::new(&args.name, role, bound).joining(spec.needs)
        }
        NodeRole::Tail => {
            need_outputs(&args)?;
            let outputs = open(&outputs_of(&args))?;
            out_addresses = bound_addresses(&outputs, &args);
            let role = Role::Tail { polling: spec.polling.clone(), shards: spec.shards, outputs };
            Node::new(&args.name, role, bound)
        }
    };
    let local_ctrl = node.ctrl_addr().to_string();
    let advertise = args.advertise.as_deref();
    let announce = json!({
        "name": args.name,
        "role": format!("{:?}", args.role).to_lowercase(),
        "in": sockets::advertised(node.in_addr(), advertise),
        "ctrl": sockets::advertised(&local_ctrl, advertise),
        "out": out_addresses,
    });
    let stop = stop_signal();
    let handle = node.spawn().map_err(|e| format!("cannot start the node's thread: {e}"))?;
    println!("{announce}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    loop {
        if handle.is_finished() {
            // `terminate` arrived on the control port: the executor already persisted.
            return handle.join().map_err(|_| "the node's thread panicked".to_string());
        }
        if stop.load(Ordering::SeqCst) {
            let reply = sockets::control(&local_ctrl, ControlRequest::Terminate, Duration::from_secs(10)).map_err(sock)?;
            let _ = handle.join();
            return if reply.message.is_empty() { Ok(()) } else { Err(reply.message) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `jinad pod`: every node of one pod in this process; a supervisor answers on the control port
/// for the whole pod (`status`: ready when every node is; `terminate`: stops all, then exits).
pub fn pod(args: PodArgs) -> Result<(), String> {
    if args.role != NodeRole::Pea || args.pod.is_some() || args.from_flow.is_some() || !args.shard_outputs.is_empty() || args.tail.is_some() || args.resolve_all {
        return Err("--role/--pod/--from-flow/--shard-out/--tail/--resolve-all are for `jinad pea`; `jinad pod` runs all of a pod's nodes".into());
    }
    need_outputs(&args)?;
    let spec = pod_spec(&args, &args.name)?;
    for (k, v) in &spec.env {
        std::env::set_var(k, v);
    }
    let outputs = outputs_of(&args);
    let in_addr = format!("tcp://{}:{}", args.host, args.port_in);
    let (ctrl, ctrl_addr) =
        sockets::bind(zmq::REP, &format!("tcp://{}:{}", args.host, args.port_ctrl)).map_err(|e| e.to_string())?;
    let stop = stop_signal();
    let running = pod::start(&spec, &in_addr, &Transport::Inproc.local_addr(), Transport::Inproc, &outputs).map_err(|e| e.to_string())?;
    running.wait_ready(Instant::now() + Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let advertise = args.advertise.as_deref();
    let out: Map<String, Value> = args.bound_outputs.iter().map(|(name, addr)| (name.clone(), json!(sockets::advertised(addr, advertise)))).collect();
    println!("{}", json!({"name": spec.name, "in": sockets::advertised(&running.in_addr, advertise), "ctrl": sockets::advertised(&ctrl_addr, advertise), "out": out, "peas": spec.pea_names().into_iter().map(|p| p.2).collect::<Vec<_>>()}));
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let nodes = running.nodes.clone();
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let readable = {
            let mut items = [ctrl.as_poll_item(zmq::POLLIN)];
            zmq::poll(&mut items, 100).is_ok() && items[0].is_readable()
        };
        if !readable {
            continue;
        }
        let Ok(frame) = ctrl.recv_bytes(0) else { continue };
        let command = message::decode::<ControlRequest>(Kind::Control, &frame);
        let mut reply = ControlReply { name: spec.name.clone(), role: "pod".into(), ..Default::default() };
        let terminate = matches!(command, Ok(ControlRequest::Terminate));
        match command {
            Ok(ControlRequest::Status) => {
                let mut ready = true;
                for (_, addr) in &nodes {
                    match sockets::control(addr, ControlRequest::Status, Duration::from_millis(500)) {
                        Ok(r) => {
                            reply.processed += r.processed;
                            reply.waiting += r.waiting;
                        }
                        Err(_) => ready = false,
                    }
                }
                reply.ready = ready;
            }
            Ok(ControlRequest::Terminate) => {}
            Err(e) => reply.message = format!("bad control request: {e}"),
        }
        if terminate {
            reply.message = running.stop(Duration::from_secs(10)).join("; ");
            if let Ok(bytes) = message::encode(Kind::ControlReply, &reply) {
                let _ = ctrl.send(bytes, 0);
            }
            return Ok(());
        }
        if let Ok(bytes) = message::encode(Kind::ControlReply, &reply) {
            let _ = ctrl.send(bytes, 0);
        }
    }
    let problems = running.stop(Duration::from_secs(10));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// `jinad gateway`: the HTTP gateway alone, in front of pods running elsewhere.
pub fn gateway(args: GatewayArgs) -> Result<(), String> {
    let (returns, reply_to) = Dispatcher::bind_returns(&args.returns).map_err(|e| e.to_string())?;
    // Ready needs the way back too: every leaf connected to the returns socket.
    let peers = sockets::count_peers(&returns, &reply_to).map_err(|e| e.to_string())?;
    let reply_to = sockets::advertised(&reply_to, args.advertise.as_deref());
    let plan = GatewayPlan {
        entries: args.entries.clone(),
        leaves: args.leaves.max(1),
        peas: args.peas.clone(),
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
    };
    let dispatcher = Arc::new(Dispatcher::start(plan, returns, reply_to).map_err(|e| e.to_string())?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let watcher = dispatcher.clone();
    let peas = args.peas.clone();
    let leaves = args.leaves.max(1);
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(3600);
        if !peas.iter().all(|(_, ctrl)| sockets::wait_ready(ctrl, deadline).is_ok()) {
            return;
        }
        while peers.load(Ordering::SeqCst) < leaves as i64 {
            if Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        watcher.set_ready(true);
    });
    let scheme = args.tls.scheme();
    let rocket = gateway::http::rocket(dispatcher.clone(), args.host, args.port, &args.tls)?.attach(rocket::fairing::AdHoc::on_liftoff(
        "announce",
        move |r| {
            println!("jinad gateway listening on {scheme}://{}:{}", r.config().address, r.config().port);
            let _ = std::io::Write::flush(&mut std::io::stdout());
            Box::pin(async {})
        },
    ));
    let served = runtime.block_on(rocket.launch()).map(|_| ()).map_err(|e| e.to_string());
    dispatcher.shutdown();
    served
}
