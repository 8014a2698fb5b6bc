//! The gateway's ZeroMQ side. A request becomes a [`DataRequest`] sent to the entry
//! pods; the answer comes back on the gateway's own PULL socket (one part per leaf pod, merged).
//! Every request ends: with the documents, with an error naming the pea, or with `timeout` after
//! the Flow's timeout (then the peas that do not answer `status` are named too).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tracing::warn;

use crate::runtime::document::Document;
use crate::runtime::join;
use crate::runtime::message::{ControlReply, ControlRequest, DataRequest};
use crate::runtime::sockets::{self, SocketError, Target};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("cannot start the gateway's collector thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot set up the gateway's metrics: {0}")]
    Metrics(String),
}

/// Why a request did not get documents back.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Invalid(String),
    #[error("{pea}: {message}")]
    Pea { request_id: String, pea: String, code: String, message: String },
    #[error("{message}")]
    Timeout { request_id: String, silent: Vec<String>, message: String },
}

/// What the gateway needs to know about the Flow behind it.
pub struct GatewayPlan {
    /// The pods that take requests from the gateway: (name, input address).
    pub entries: Vec<(String, String)>,
    /// How many pods answer each request (the leaves of the DAG).
    pub leaves: usize,
    /// Every pea's (name, control address), to name the silent ones after a timeout.
    pub peas: Vec<(String, String)>,
    pub timeout: Duration,
}

struct Pending {
    tx: oneshot::Sender<DataRequest>,
    deadline: Instant,
    parts: Vec<DataRequest>,
}

type PendingMap = Arc<Mutex<HashMap<String, Pending>>>;

pub struct Dispatcher {
    entries: Arc<Mutex<Vec<Target>>>,
    pending: PendingMap,
    reply_to: String,
    peas: Vec<(String, String)>,
    timeout: Duration,
    prefix: String,
    next_id: AtomicU64,
    ready: AtomicBool,
    stop: Arc<AtomicBool>,
    collector: Mutex<Option<JoinHandle<()>>>,
    /// What `GET /metrics` reports.
    pub metrics: super::metrics::GatewayMetrics,
}

impl Dispatcher {
    /// Binds the socket answers come back on; its address goes to the peas as `reply_to`.
    pub fn bind_returns(addr: &str) -> Result<(zmq::Socket, String), SocketError> {
        let (socket, reply_to) = sockets::bind(zmq::PULL, addr)?;
        socket.set_rcvhwm(100_000).map_err(|source| SocketError::Zmq { action: "configure", addr: reply_to.clone(), source })?;
        Ok((socket, reply_to))
    }

    /// Connects to the entry pods and starts collecting answers on `returns` (bound at `reply_to`).
    pub fn start(plan: GatewayPlan, returns: zmq::Socket, reply_to: String) -> Result<Self, StartError> {
        let metrics = super::metrics::GatewayMetrics::new().map_err(|e| StartError::Metrics(e.to_string()))?;
        let entries = plan.entries.iter().map(|(n, a)| Target::connect(n, a)).collect::<Result<Vec<_>, _>>()?;
        let pending: PendingMap = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let collector = {
            let (pending, stop, leaves) = (pending.clone(), stop.clone(), plan.leaves.max(1));
            std::thread::Builder::new()
                .name("gateway-collector".into())
                .spawn(move || collect(returns, pending, leaves, stop))
                .map_err(StartError::Thread)?
        };
        Ok(Dispatcher {
            entries: Arc::new(Mutex::new(entries)),
            pending,
            reply_to,
            peas: plan.peas,
            timeout: plan.timeout,
            prefix: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            next_id: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            stop,
            collector: Mutex::new(Some(collector)),
            metrics,
        })
    }

    /// Where peas send what cannot go on.
    pub fn reply_to(&self) -> &str {
        &self.reply_to
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Requests sent and not answered yet.
    pub fn pending(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.collector.lock().ok().and_then(|mut c| c.take()) {
            let _ = handle.join();
        }
    }

    /// Sends one request through the Flow and waits for its answer (or the timeout).
    pub async fn call(&self, endpoint: String, docs: Vec<Document>, parameters: Map<String, Value>) -> Result<DataRequest, GatewayError> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("{}{:012x}", self.prefix, n);
        let mut docs = docs;
        for (i, doc) in docs.iter_mut().enumerate() {
            if doc.id.is_empty() {
                doc.id = format!("{request_id}-{i}");
            }
        }
        let req = DataRequest { request_id: request_id.clone(), endpoint, parameters, docs, error: None, routes: Vec::new(), reply_to: self.reply_to.clone() };
        let frame = req.to_frame().map_err(|e| GatewayError::Invalid(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(request_id.clone(), Pending { tx, deadline: Instant::now() + self.timeout, parts: Vec::new() });
        }
        if let Err(unreached) = self.send(frame).await {
            self.forget(&request_id);
            return Err(GatewayError::Pea {
                request_id,
                pea: unreached.clone(),
                code: "unreachable".into(),
                message: format!("{unreached} is not reachable"),
            });
        }
        // The collector drops expired requests; the extra second only guards against a collector that died.
        let answer = match tokio::time::timeout(self.timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(answer)) => Some(answer),
            _ => {
                self.forget(&request_id);
                None
            }
        };
        match answer {
            Some(mut answer) => match answer.error.take() {
                Some(e) => Err(GatewayError::Pea { request_id, pea: e.pea, code: e.code, message: e.message }),
                None => Ok(answer),
            },
            None => {
                let silent = self.silent_peas().await;
                let mut message = format!("no answer within {} ms", self.timeout.as_millis());
                if !silent.is_empty() {
                    message.push_str(&format!("; not answering: {}", silent.join(", ")));
                }
                Err(GatewayError::Timeout { request_id, silent, message })
            }
        }
    }

    fn forget(&self, request_id: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(request_id);
        }
    }

    /// Sends to every entry pod: at once when it takes the frame, else trying again every few
    /// milliseconds until [`sockets::SEND_TIMEOUT`]. The entries' mutex is held only for a
    /// non-blocking send and the waiting is a tokio sleep, so a dead entry pod never holds a worker
    /// thread or the mutex: concurrent requests each fail on their own deadline, not one after
    /// another. `Err` names an entry pod that could not be reached.
    async fn send(&self, frame: Vec<u8>) -> Result<(), String> {
        let deadline = Instant::now() + sockets::SEND_TIMEOUT;
        let count = self.entries.lock().map_err(|_| "gateway".to_string())?.len();
        let mut unsent: Vec<usize> = (0..count).collect();
        let mut pause = Duration::from_micros(200);
        loop {
            {
                let entries = self.entries.lock().map_err(|_| "gateway".to_string())?;
                unsent.retain(|&i| !entries[i].try_send(&frame));
                if unsent.is_empty() {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(entries[unsent[0]].name.clone());
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Asks every pea for its status at once (300 ms each, in parallel): (name, its reply or none).
    pub async fn probe_peas(&self) -> Vec<(String, Option<ControlReply>)> {
        let peas = self.peas.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::scope(|s| {
                let probes: Vec<_> = peas
                    .iter()
                    .map(|(name, ctrl)| s.spawn(move || (name.clone(), sockets::control(ctrl, ControlRequest::Status, Duration::from_millis(300)).ok())))
                    .collect();
                probes.into_iter().filter_map(|p| p.join().ok()).collect()
            })
        })
        .await
        .unwrap_or_default()
    }

    async fn silent_peas(&self) -> Vec<String> {
        self.probe_peas().await.into_iter().filter(|(_, reply)| reply.is_none()).map(|(name, _)| name).collect()
    }
}

/// Receives answers: merges the parts of each request and hands it to its waiting caller;
/// an error part answers at once; expired requests are dropped (their caller reports a timeout).
fn collect(returns: zmq::Socket, pending: PendingMap, leaves: usize, stop: Arc<AtomicBool>) {
    let mut last_sweep = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let readable = {
            let mut items = [returns.as_poll_item(zmq::POLLIN)];
            zmq::poll(&mut items, 50).is_ok() && items[0].is_readable()
        };
        if readable {
            for _ in 0..256 {
                let Ok(frame) = returns.recv_bytes(zmq::DONTWAIT) else { break };
                let part = match DataRequest::from_frame(&frame) {
                    Ok(part) => part,
                    Err(e) => {
                        warn!("gateway dropped a frame: {e}");
                        continue;
                    }
                };
                let Ok(mut map) = pending.lock() else { return };
                let id = part.request_id.clone();
                let Some(p) = map.get_mut(&id) else { continue };
                let failed = part.error.is_some();
                p.parts.push(part);
                if failed || p.parts.len() >= leaves {
                    if let Some(p) = map.remove(&id) {
                        // An error part answers alone: the caller sees the error first.
                        let answer = if failed { p.parts.into_iter().last().unwrap_or_default() } else { join::merge(p.parts) };
                        let _ = p.tx.send(answer);
                    }
                }
            }
        }
        if last_sweep.elapsed() > Duration::from_millis(50) {
            last_sweep = Instant::now();
            if let Ok(mut map) = pending.lock() {
                let now = Instant::now();
                map.retain(|_, p| p.deadline > now);
            }
        }
    }
}
