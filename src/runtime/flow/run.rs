//! Runs a whole Flow in this process: every pea, head and tail is a thread with its own ZeroMQ
//! sockets (loopback TCP, or `inproc`), the gateway is an HTTP server on the tokio runtime.
//! Start order is downstream first, so every node's outputs exist when it starts; stop order is
//! gateway first, then pods from the entry down, so executors `close()` (and persist) last.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::containers::Containers;
use super::remote::{self, Placed, RemoteOptions, Remotes};
use super::spec::{FlowSpec, Need};
use crate::runtime::gateway::{self, Dispatcher, GatewayPlan};
use crate::runtime::pod::{self, Output, RunningPod, Transport, Wiring};
use crate::runtime::sockets;

/// How long every pea has to answer `status` after the Flow started it.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RunningFlow {
    pub spec: FlowSpec,
    pub dispatcher: Arc<Dispatcher>,
    /// Indexed like `spec.pods`.
    pods: Vec<Option<RunningPod>>,
    /// The pods running in containers (JEP 2), if any.
    containers: Option<Containers>,
    /// The pods running on other jinad daemons (`host:`), if any.
    remotes: Option<Remotes>,
}

impl RunningFlow {
    pub fn start(spec: FlowSpec, transport: Transport) -> Result<Self, String> {
        Self::start_until(spec, transport, &AtomicBool::new(false), &RemoteOptions::default())
    }

    /// [`RunningFlow::start`], given up (everything started so far stopped and removed) as soon
    /// as `interrupted` is set: Ctrl-C / SIGTERM while the flow starts.
    pub fn start_until(spec: FlowSpec, transport: Transport, interrupted: &AtomicBool, remote: &RemoteOptions) -> Result<Self, String> {
        // Remote pods first: a local node that takes their results pulls from an address they
        // report, and a remote pod sending to another remote pod needs that one's input.
        let mut remotes = None;
        let mut placed = Placed::default();
        if spec.pods.iter().any(|p| p.remote.is_some()) {
            let mut skip = vec![spec.workspace.clone(), spec.base.join(crate::workspace::digest::PODS_DATA)];
            skip.extend(spec.pods.iter().map(|p| p.workspace.clone()));
            let root = spec.base.clone();
            let mut r = Remotes::new(&root, &skip, remote.clone())?;
            match remote::place(&spec, &mut r, interrupted) {
                Ok(p) => placed = p,
                Err(e) => {
                    for problem in r.close() {
                        warn!("while stopping: {problem}");
                    }
                    return Err(e);
                }
            }
            remotes = Some(r);
        }
        let mut flow = match Self::start_local(spec, transport, interrupted, &placed) {
            Ok(flow) => flow,
            Err(e) => {
                for problem in remotes.map(Remotes::close).unwrap_or_default() {
                    warn!("while stopping: {problem}");
                }
                return Err(e);
            }
        };
        flow.remotes = remotes;
        Ok(flow)
    }

    fn start_local(spec: FlowSpec, transport: Transport, interrupted: &AtomicBool, placed: &Placed) -> Result<Self, String> {
        let in_container = |i: usize| spec.pods[i].container.is_some();
        let whole_remote = |i: usize| placed.pods.contains_key(&i);
        let mut containers = if (0..spec.pods.len()).any(in_container) { Some(Containers::connect()?) } else { None };
        // What a container sends to must listen where containers reach it (`host.docker.internal`).
        let for_containers = "tcp://0.0.0.0:0".to_string();
        let returns_addr = if spec.leaves().into_iter().any(in_container) { for_containers.clone() } else { transport.local_addr() };
        let (returns, reply_to) = Dispatcher::bind_returns(&returns_addr).map_err(|e| e.to_string())?;
        // Remote leaves bind their results for the gateway: its returns socket connects to them.
        for i in spec.leaves().into_iter().filter(|&i| whole_remote(i)) {
            if let Some(addr) = placed.pods.get(&i).and_then(|p| p.out.get("gateway")) {
                sockets::pull_from(&returns, addr).map_err(|e| e.to_string())?;
            }
        }
        let mut pods: Vec<Option<RunningPod>> = spec.pods.iter().map(|_| None).collect();
        let mut flow_err = None;
        for &i in spec.order.iter().rev() {
            let pod = &spec.pods[i];
            if let Some(remote) = placed.pods.get(&i) {
                pods[i] = Some(RunningPod::remote(&pod.name, remote.in_addr.clone(), remote.nodes.clone()));
                continue;
            }
            let outputs: Vec<Output> = match spec.consumers(i) {
                consumers if consumers.is_empty() => vec![Output::to("gateway", &reply_to)],
                consumers => consumers.iter().filter_map(|&j| pods[j].as_ref().map(|p| Output::to(&spec.pods[j].name, &p.in_addr))).collect(),
            };
            // Results of remote pods this pod needs: bound there, pulled from here.
            let pull_from: Vec<String> = spec.needs[i]
                .iter()
                .filter_map(|n| match n {
                    Need::Pod(j) => placed.pods.get(j).and_then(|r| r.out.get(&pod.name)).cloned(),
                    Need::Gateway => None,
                })
                .collect();
            let remote_peas = placed.spread.get(&i).map(Vec::as_slice).unwrap_or_default();
            let started = match (&pod.container, containers.as_mut()) {
                (Some(container), Some(runner)) => {
                    runner.start(pod, container, &outputs).map(|(data, ctrl)| RunningPod::elsewhere(&pod.name, data, ctrl))
                }
                _ => {
                    let fed_by_container = spec.needs[i].iter().any(|n| matches!(n, Need::Pod(j) if in_container(*j)));
                    let in_addr = if fed_by_container { for_containers.clone() } else { transport.local_addr() };
                    let wiring = Wiring { in_addr: &in_addr, ctrl_addr: &transport.local_addr(), inner: transport, outputs: &outputs, pull_from: &pull_from, remote_peas };
                    pod::start_wired(pod, &wiring).map_err(|e| e.to_string())
                }
            };
            match started {
                Ok(running) => pods[i] = Some(running),
                Err(e) => {
                    flow_err = Some(e);
                    break;
                }
            }
        }
        let started = |pods: Vec<Option<RunningPod>>| pods.into_iter().flatten().collect::<Vec<_>>();
        if let Some(e) = flow_err {
            stop_pods(started(pods));
            return Err(e);
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        let not_ready = pods.iter().flatten().find_map(|p| loop {
            if interrupted.load(Ordering::SeqCst) {
                return Some("interrupted while starting".to_string());
            }
            let container_said = |c: &Containers| Some(c.last_lines(&p.name)).filter(|l| !l.is_empty());
            // A pod's container that exited will never answer: say so at once, with its output.
            if let Some(c) = containers.as_ref().filter(|c| c.has_exited(&p.name)) {
                let lines = container_said(c).unwrap_or_default();
                return Some(format!("pod {}: its container exited while starting:\n{lines}", p.name));
            }
            match p.wait_ready((Instant::now() + Duration::from_millis(200)).min(deadline)) {
                Ok(()) => return None,
                Err(_) if Instant::now() < deadline => continue,
                Err(e) => {
                    let lines = containers.as_ref().and_then(container_said);
                    return Some(format!("pod {} did not get ready: {e}{}", p.name, lines.map(|l| format!("; its container said:\n{l}")).unwrap_or_default()));
                }
            }
        });
        if let Some(e) = not_ready {
            stop_pods(started(pods));
            return Err(e);
        }
        let plan = GatewayPlan {
            entries: spec
                .entries()
                .into_iter()
                .filter_map(|i| pods[i].as_ref().map(|p| (spec.pods[i].name.clone(), p.in_addr.clone())))
                .collect(),
            leaves: spec.leaves().len(),
            peas: pods.iter().flatten().flat_map(|p| p.all_nodes().cloned().collect::<Vec<_>>()).collect(),
            timeout: spec.timeout,
        };
        let dispatcher = match Dispatcher::start(plan, returns, reply_to) {
            Ok(d) => Arc::new(d),
            Err(e) => {
                stop_pods(started(pods));
                return Err(e.to_string());
            }
        };
        dispatcher.set_ready(true);
        Ok(RunningFlow { spec, dispatcher, pods, containers, remotes: None })
    }

    /// Serves HTTP until Ctrl-C / SIGTERM, then stops everything. `announce` gets the gateway's URL.
    pub async fn serve(self, tls: &crate::tls::TlsArgs, announce: impl Fn(&str) + Send + Sync + 'static) -> Result<(), String> {
        let scheme = tls.scheme();
        let rocket = match gateway::http::rocket(self.dispatcher.clone(), self.spec.host, self.spec.port, tls) {
            Ok(rocket) => rocket,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || self.stop()).await;
                return Err(e);
            }
        };
        let rocket = rocket.attach(
            rocket::fairing::AdHoc::on_liftoff("announce", move |r| {
                let url = format!("{scheme}://{}:{}", r.config().address, r.config().port);
                announce(&url);
                Box::pin(async {})
            }),
        );
        let served = rocket.launch().await.map(|_| ()).map_err(|e| format!("the gateway stopped: {e}"));
        let problems = tokio::task::spawn_blocking(move || self.stop()).await.unwrap_or_default();
        for p in &problems {
            warn!("while stopping: {p}");
        }
        served
    }

    /// Stops the gateway side and every pod; executors persist. Returns what went wrong.
    pub fn stop(mut self) -> Vec<String> {
        self.dispatcher.set_ready(false);
        let mut ordered = Vec::new();
        for &i in &self.spec.order {
            if let Some(p) = self.pods[i].take() {
                ordered.push(p);
            }
        }
        let mut problems = stop_pods(ordered);
        if let Some(containers) = self.containers.as_mut() {
            containers.remove_all();
        }
        if let Some(remotes) = self.remotes.take() {
            problems.extend(remotes.close());
        }
        self.dispatcher.shutdown();
        info!("flow stopped");
        problems
    }
}

fn stop_pods(pods: Vec<RunningPod>) -> Vec<String> {
    pods.into_iter().flat_map(|p| p.stop(Duration::from_secs(10))).collect()
}
