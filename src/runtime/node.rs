//! A node is one thread with a data input (PULL), a control socket (REP) and a role:
//! - **pea**: runs an executor; joins parts when its pod has several `needs`;
//! - **head**: spreads requests over shards (polling `any`: one, `all`: every one) and, within a
//!   shard, over replicas (round-robin, skipping replicas that are not connected);
//! - **tail**: waits for one part (`any`) or one per shard (`all`), merges, sends on.
//!
//! A request that cannot be delivered goes back to the gateway (`reply_to`) as an error naming the
//! node that could not be reached, so the client gets an answer instead of a hang.

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;

use tracing::{debug, warn};

use super::executor::Executor;
use super::join::Joiner;
use super::message::{self, ControlReply, ControlRequest, DataRequest, Kind};
use super::polling::{PollMode, Polling};
use super::sockets::{self, SocketError, Target};

/// The sockets a node listens on, bound before the node starts so peers can be wired to them.
pub struct Bound {
    pub input: zmq::Socket,
    pub in_addr: String,
    pub ctrl: zmq::Socket,
    pub ctrl_addr: String,
}

pub fn bind(in_addr: &str, ctrl_addr: &str) -> Result<Bound, SocketError> {
    let (input, in_addr) = sockets::bind(zmq::PULL, in_addr)?;
    input.set_rcvhwm(10_000).map_err(|source| SocketError::Zmq { action: "configure", addr: in_addr.clone(), source })?;
    let (ctrl, ctrl_addr) = sockets::bind(zmq::REP, ctrl_addr)?;
    Ok(Bound { input, in_addr, ctrl, ctrl_addr })
}

pub enum Role {
    Pea { executor: Box<dyn Executor>, pod: String, outputs: Vec<Target> },
    Head { polling: Polling, shards: Vec<Vec<Target>>, next_shard: usize, next_replica: Vec<usize>, tail: Target },
    Tail { polling: Polling, shards: usize, outputs: Vec<Target> },
}

impl Role {
    /// The targets that follow a DNS name ([`Target::connect_all`]).
    fn targets_mut(&mut self) -> Vec<&mut Target> {
        match self {
            Role::Pea { outputs, .. } | Role::Tail { outputs, .. } => outputs.iter_mut().collect(),
            Role::Head { shards, tail, .. } => shards.iter_mut().flatten().chain(std::iter::once(tail)).collect(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Role::Pea { .. } => "pea",
            Role::Head { .. } => "head",
            Role::Tail { .. } => "tail",
        }
    }
}

pub struct Node {
    pub name: String,
    role: Role,
    bound: Bound,
    processed: u64,
    /// Parts each request arrives in (the pod's `needs`), joined before the role sees it; a tail
    /// expects one part per shard or one, by polling.
    needs: usize,
    joiner: Joiner,
    /// PUSH sockets to gateways' return addresses, for requests that cannot go on.
    reply_sockets: HashMap<String, Target>,
}

impl Node {
    pub fn new(name: &str, role: Role, bound: Bound) -> Self {
        Node { name: name.to_string(), role, bound, processed: 0, needs: 1, joiner: Joiner::default(), reply_sockets: HashMap::new() }
    }

    /// Makes the node wait for `needs` parts of each request and merge them first.
    pub fn joining(mut self, needs: usize) -> Self {
        self.needs = needs.max(1);
        self
    }

    pub fn in_addr(&self) -> &str {
        &self.bound.in_addr
    }

    /// Also take requests from the PUSH socket bound at `addr` (a remote pod's output).
    pub fn pull_from(&self, addr: &str) -> Result<(), SocketError> {
        sockets::pull_from(&self.bound.input, addr)
    }

    pub fn ctrl_addr(&self) -> &str {
        &self.bound.ctrl_addr
    }

    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name(self.name.clone()).spawn(move || self.run())
    }

    /// Serves until a `terminate` control command (or until the process ends).
    pub fn run(mut self) {
        // Targets that follow a DNS name are refreshed between polls (at least every 0.5 s).
        let follows_dns = self.role.targets_mut().iter().any(|t| t.follows_dns());
        let timeout = if follows_dns { 500 } else { -1 };
        loop {
            if follows_dns {
                self.role.targets_mut().into_iter().for_each(Target::refresh);
            }
            let (data_ready, ctrl_ready) = {
                let mut items = [self.bound.input.as_poll_item(zmq::POLLIN), self.bound.ctrl.as_poll_item(zmq::POLLIN)];
                if let Err(e) = zmq::poll(&mut items, timeout) {
                    warn!(node = %self.name, "poll failed: {e}");
                    return;
                }
                (items[0].is_readable(), items[1].is_readable())
            };
            if ctrl_ready && self.control() {
                return;
            }
            if data_ready {
                for _ in 0..256 {
                    match self.bound.input.recv_bytes(zmq::DONTWAIT) {
                        Ok(frame) => self.data(&frame),
                        Err(_) => break,
                    }
                }
            }
        }
    }

    /// Answers one control command; `true` when the node must stop.
    fn control(&mut self) -> bool {
        let Ok(frame) = self.bound.ctrl.recv_bytes(zmq::DONTWAIT) else { return false };
        let command = message::decode::<ControlRequest>(Kind::Control, &frame);
        let mut reply = ControlReply {
            name: self.name.clone(),
            role: self.role.name().to_string(),
            ready: true,
            processed: self.processed,
            waiting: self.joiner.waiting() as u64,
            message: String::new(),
        };
        let stop = matches!(command, Ok(ControlRequest::Terminate));
        match command {
            Ok(ControlRequest::Status) => {}
            Ok(ControlRequest::Terminate) => {
                reply.ready = false;
                if let Role::Pea { executor, .. } = &mut self.role {
                    if let Err(e) = executor.close() {
                        warn!(node = %self.name, "close failed: {e}");
                        reply.message = e;
                    }
                }
            }
            Err(e) => reply.message = format!("bad control request: {e}"),
        }
        match message::encode(Kind::ControlReply, &reply) {
            Ok(bytes) => {
                if let Err(e) = self.bound.ctrl.send(bytes, 0) {
                    warn!(node = %self.name, "cannot answer a control request: {e}");
                }
            }
            Err(e) => warn!(node = %self.name, "cannot encode a control reply: {e}"),
        }
        stop
    }

    fn data(&mut self, frame: &[u8]) {
        let req = match DataRequest::from_frame(frame) {
            Ok(req) => req,
            Err(e) => {
                warn!(node = %self.name, "dropped a frame: {e}");
                return;
            }
        };
        self.processed += 1;
        let expected = match &self.role {
            Role::Tail { polling, shards, .. } => match polling.mode(&req.endpoint) {
                PollMode::All => *shards,
                PollMode::Any => 1,
            },
            _ => self.needs,
        };
        if expected <= 1 {
            // A whole request: heads and tails pass on the frame they got instead of encoding it again.
            self.role_data(req, Some(frame));
        } else if let Some(joined) = self.joiner.add(req, expected) {
            self.role_data(joined, None);
        }
    }

    /// `frame` is `req` as received, when `req` is exactly that (not a merge of parts).
    fn role_data(&mut self, req: DataRequest, frame: Option<&[u8]>) {
        match &mut self.role {
            Role::Pea { executor, pod, outputs } => {
                let mut req = req;
                if req.error.is_none() {
                    let params = req.parameters_for(pod);
                    let endpoint = std::mem::take(&mut req.endpoint);
                    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| executor.handle(&endpoint, &mut req.docs, &params)));
                    req.endpoint = endpoint;
                    match outcome {
                        Ok(Ok(())) => {}
                        Ok(Err(message)) => req.fail(&self.name, "executor_error", message),
                        Err(panic) => req.fail(&self.name, "executor_panic", panic_text(&panic)),
                    }
                }
                req.routes.push(self.name.clone());
                let outputs: &[Target] = outputs;
                forward(&self.name, &mut self.reply_sockets, outputs, req, None);
            }
            Role::Head { polling, shards, next_shard, next_replica, tail } => {
                let frame = match encoded(&req, frame) {
                    Ok(frame) => frame,
                    Err(e) => return warn!(node = %self.name, "cannot encode request {}: {e}", req.request_id),
                };
                let chosen: Vec<usize> = match polling.mode(&req.endpoint) {
                    PollMode::All => (0..shards.len()).collect(),
                    PollMode::Any => {
                        *next_shard = (*next_shard + 1) % shards.len();
                        vec![*next_shard]
                    }
                };
                for shard in chosen {
                    if let Err(unreached) = send_to_replica(&shards[shard], &mut next_replica[shard], &frame) {
                        // The tail still gets its part, as an error, so it never waits forever.
                        let mut failed = req.clone();
                        failed.fail(&unreached, "unreachable", format!("{unreached} is not reachable"));
                        let tail: &Target = tail;
                        forward(&self.name, &mut self.reply_sockets, std::slice::from_ref(tail), failed, None);
                    }
                }
            }
            Role::Tail { outputs, .. } => {
                let outputs: &[Target] = outputs;
                forward(&self.name, &mut self.reply_sockets, outputs, req, frame);
            }
        }
    }
}

/// Round-robin over the replicas that take the frame at once; if none does, waits (bounded) for
/// the next one. `Err(name)` names a replica that could not be reached.
fn send_to_replica(replicas: &[Target], next: &mut usize, frame: &[u8]) -> Result<(), String> {
    let n = replicas.len();
    for step in 0..n {
        let i = (*next + step) % n;
        if replicas[i].try_send(frame) {
            *next = (i + 1) % n;
            return Ok(());
        }
    }
    let target = &replicas[*next % n];
    *next = (*next + 1) % n;
    target.send(frame).map_err(|_| target.name.clone())
}

/// `req` as a frame: the one it arrived in when there is one, else freshly encoded.
fn encoded<'a>(req: &DataRequest, frame: Option<&'a [u8]>) -> Result<Cow<'a, [u8]>, message::WireError> {
    match frame {
        Some(frame) => Ok(Cow::Borrowed(frame)),
        None => req.to_frame().map(Cow::Owned),
    }
}

/// Sends `req` (already encoded as `frame`, or encoded here) to every output; a send that fails
/// returns the request to its gateway as an error.
fn forward(me: &str, reply_sockets: &mut HashMap<String, Target>, outputs: &[Target], req: DataRequest, frame: Option<&[u8]>) {
    let frame = match encoded(&req, frame) {
        Ok(frame) => frame,
        Err(e) => return warn!(node = me, "cannot encode request {}: {e}", req.request_id),
    };
    for target in outputs {
        if target.send(&frame).is_ok() {
            continue;
        }
        let mut failed = req.clone();
        failed.error = None;
        failed.fail(&target.name, "unreachable", format!("{} is not reachable at {} (sent from {me})", target.name, target.addr));
        report(me, reply_sockets, failed);
    }
}

fn report(me: &str, reply_sockets: &mut HashMap<String, Target>, failed: DataRequest) {
    if failed.reply_to.is_empty() {
        warn!(node = me, "request {} lost: {:?}", failed.request_id, failed.error);
        return;
    }
    if !reply_sockets.contains_key(&failed.reply_to) {
        match Target::connect("gateway", &failed.reply_to) {
            Ok(t) => {
                reply_sockets.insert(failed.reply_to.clone(), t);
            }
            Err(e) => {
                warn!(node = me, "cannot reach the gateway: {e}");
                return;
            }
        }
    }
    let sent = match (reply_sockets.get(&failed.reply_to), failed.to_frame()) {
        (Some(t), Ok(frame)) => t.send(&frame).is_ok(),
        _ => false,
    };
    if !sent {
        debug!(node = me, "request {} lost, the gateway is gone too", failed.request_id);
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("executor panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("executor panicked: {s}")
    } else {
        "executor panicked".to_string()
    }
}
