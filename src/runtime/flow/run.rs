//! Runs a whole Flow in this process: every pea, head and tail is a thread with its own ZeroMQ
//! sockets (loopback TCP, or `inproc`), the gateway is an HTTP server on the tokio runtime.
//! Start order is downstream first, so every node's outputs exist when it starts; stop order is
//! gateway first, then pods from the entry down, so executors `close()` (and persist) last.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::containers::Containers;
use super::spec::{FlowSpec, Need};
use crate::runtime::gateway::{self, Dispatcher, GatewayPlan};
use crate::runtime::pod::{self, Output, RunningPod, Transport};

/// How long every pea has to answer `status` after the Flow started it.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RunningFlow {
    pub spec: FlowSpec,
    pub dispatcher: Arc<Dispatcher>,
    /// Indexed like `spec.pods`.
    pods: Vec<Option<RunningPod>>,
    /// The pods running in containers (JEP 2), if any.
    containers: Option<Containers>,
}

impl RunningFlow {
    pub fn start(spec: FlowSpec, transport: Transport) -> Result<Self, String> {
        Self::start_until(spec, transport, &AtomicBool::new(false))
    }

    /// [`RunningFlow::start`], given up (everything started so far stopped and removed) as soon
    /// as `interrupted` is set: Ctrl-C / SIGTERM while the flow starts.
    pub fn start_until(spec: FlowSpec, transport: Transport, interrupted: &AtomicBool) -> Result<Self, String> {
        let in_container = |i: usize| spec.pods[i].container.is_some();
        let mut containers = if (0..spec.pods.len()).any(in_container) { Some(Containers::connect()?) } else { None };
        // What a container sends to must listen where containers reach it (`host.docker.internal`).
        let for_containers = "tcp://0.0.0.0:0".to_string();
        let returns_addr = if spec.leaves().into_iter().any(in_container) { for_containers.clone() } else { transport.local_addr() };
        let (returns, reply_to) = Dispatcher::bind_returns(&returns_addr).map_err(|e| e.to_string())?;
        let mut pods: Vec<Option<RunningPod>> = spec.pods.iter().map(|_| None).collect();
        let mut flow_err = None;
        for &i in spec.order.iter().rev() {
            let outputs: Vec<Output> = match spec.consumers(i) {
                consumers if consumers.is_empty() => vec![Output { name: "gateway".into(), addr: reply_to.clone() }],
                consumers => consumers
                    .iter()
                    .filter_map(|&j| pods[j].as_ref().map(|p| Output { name: spec.pods[j].name.clone(), addr: p.in_addr.clone() }))
                    .collect(),
            };
            let pod = &spec.pods[i];
            let started = match (&pod.container, containers.as_mut()) {
                (Some(container), Some(runner)) => {
                    runner.start(pod, container, &outputs).map(|(data, ctrl)| RunningPod::elsewhere(&pod.name, data, ctrl))
                }
                _ => {
                    let fed_by_container = spec.needs[i].iter().any(|n| matches!(n, Need::Pod(j) if in_container(*j)));
                    let in_addr = if fed_by_container { for_containers.clone() } else { transport.local_addr() };
                    pod::start(pod, &in_addr, &transport.local_addr(), transport, &outputs).map_err(|e| e.to_string())
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
            peas: pods.iter().flatten().flat_map(|p| p.nodes.clone()).collect(),
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
        Ok(RunningFlow { spec, dispatcher, pods, containers })
    }

    /// Serves HTTP until Ctrl-C / SIGTERM, then stops everything. `announce` gets the gateway's URL.
    pub async fn serve(self, announce: impl Fn(&str) + Send + Sync + 'static) -> Result<(), String> {
        let rocket = gateway::http::rocket(self.dispatcher.clone(), self.spec.host, self.spec.port).attach(
            rocket::fairing::AdHoc::on_liftoff("announce", move |r| {
                let url = format!("http://{}:{}", r.config().address, r.config().port);
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
        let problems = stop_pods(ordered);
        if let Some(containers) = self.containers.as_mut() {
            containers.remove_all();
        }
        self.dispatcher.shutdown();
        info!("flow stopped");
        problems
    }
}

fn stop_pods(pods: Vec<RunningPod>) -> Vec<String> {
    pods.into_iter().flat_map(|p| p.stop(Duration::from_secs(10))).collect()
}
