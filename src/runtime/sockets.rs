//! ZeroMQ plumbing shared by peas, heads, tails and the gateway.
//!
//! Socket roles (see ARCHITECTURE.md): every node binds one PULL socket for data and one REP socket
//! for control; it sends with one PUSH socket per downstream node, connected to that node's PULL.
//! PUSH sockets use `ZMQ_IMMEDIATE` (nothing is queued for a peer that is not connected) and a send
//! timeout, so a dead peer turns into an error instead of an unbounded queue or a hang.
//!
//! Across machines (a remote pod, see ARCHITECTURE.md) the direction flips for what comes back:
//! the remote pod *binds* its output ([`Target::bind`]) and the Flow's PULL *connects* to it
//! ([`pull_from`]), so the remote side never needs an address of the Flow's machine. TCP sockets
//! send ZeroMQ heartbeats: a peer behind a cut link is dropped within [`HEARTBEAT_TIMEOUT`], and
//! sends to it then fail (and are answered as errors) instead of vanishing into a dead connection.

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::message::{self, ControlReply, ControlRequest, Kind};

/// How long a send waits for a connected peer before the request fails as `unreachable`.
pub const SEND_TIMEOUT: Duration = Duration::from_millis(1000);

/// How often a TCP connection is probed, and how long without an answer drops it.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1000);
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(3000);

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot {action} {addr}: {source}")]
    Zmq { action: &'static str, addr: String, source: zmq::Error },
    #[error("no reply from {addr} within {ms} ms")]
    Timeout { addr: String, ms: u128 },
    #[error("bad reply from {addr}: {source}")]
    Wire { addr: String, source: message::WireError },
}

/// The process-wide ZeroMQ context (one I/O thread).
pub fn context() -> &'static zmq::Context {
    static CTX: OnceLock<zmq::Context> = OnceLock::new();
    CTX.get_or_init(zmq::Context::new)
}

fn zerr<'a>(action: &'static str, addr: &'a str) -> impl FnOnce(zmq::Error) -> SocketError + 'a {
    move |source| SocketError::Zmq { action, addr: addr.to_string(), source }
}

/// ZeroMQ heartbeats on a TCP socket (`inproc` and `ipc` need none).
fn heartbeats(socket: &zmq::Socket, addr: &str) -> Result<(), SocketError> {
    if addr.starts_with("tcp://") {
        socket.set_heartbeat_ivl(HEARTBEAT_INTERVAL.as_millis() as i32).map_err(zerr("configure", addr))?;
        socket.set_heartbeat_timeout(HEARTBEAT_TIMEOUT.as_millis() as i32).map_err(zerr("configure", addr))?;
        socket.set_heartbeat_ttl(2 * HEARTBEAT_TIMEOUT.as_millis() as i32).map_err(zerr("configure", addr))?;
    }
    Ok(())
}

/// Binds `kind` on `addr` (`tcp://HOST:PORT`, port 0 = any free port, or `inproc://NAME`) and
/// returns the socket with the address peers connect to.
pub fn bind(kind: zmq::SocketType, addr: &str) -> Result<(zmq::Socket, String), SocketError> {
    let socket = context().socket(kind).map_err(zerr("create a socket for", addr))?;
    socket.set_linger(0).map_err(zerr("configure", addr))?;
    heartbeats(&socket, addr)?;
    let wanted = match addr.strip_suffix(":0") {
        Some(prefix) if addr.starts_with("tcp://") => format!("{prefix}:*"),
        _ => addr.to_string(),
    };
    socket.bind(&wanted).map_err(zerr("bind", addr))?;
    let bound = socket
        .get_last_endpoint()
        .map_err(zerr("read the endpoint of", addr))?
        .unwrap_or_else(|_| wanted.clone());
    Ok((socket, connectable(&bound)))
}

/// The address peers use for a socket bound at `bound` when nobody said which host to advertise:
/// `tcp://0.0.0.0:P` listens everywhere, and this host reaches it at 127.0.0.1. Processes that
/// others reach from elsewhere (containers) say what to advertise: [`advertised`].
fn connectable(bound: &str) -> String {
    match bound.strip_prefix("tcp://0.0.0.0:") {
        Some(port) => format!("tcp://127.0.0.1:{port}"),
        None => bound.to_string(),
    }
}

/// `addr` (`tcp://HOST:PORT`) with its host replaced by `host` (`--advertise`): the address a
/// peer in another container or on another machine uses.
pub fn advertised(addr: &str, host: Option<&str>) -> String {
    match (host, addr.strip_prefix("tcp://").and_then(|rest| rest.rsplit_once(':'))) {
        (Some(host), Some((_, port))) => format!("tcp://{host}:{port}"),
        _ => addr.to_string(),
    }
}

/// How often a [`Target::connect_all`] resolves its name again.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(2);

/// A downstream node: its name (for error messages) and a PUSH socket connected to its data input.
pub struct Target {
    pub name: String,
    pub addr: String,
    socket: zmq::Socket,
    /// Set by [`Target::connect_all`]: the addresses the name resolves to, followed.
    replicas: Option<Replicas>,
}

/// Every address one DNS name resolves to (the replicas of a Compose/Swarm service in `dnsrr`
/// mode, or the pods behind a Kubernetes headless Service), each connected to by the same PUSH
/// socket, which then spreads messages over them per message. ZeroMQ itself resolves a name to
/// one address per connection, so a name with several replicas would otherwise reach only one.
/// A thread resolves the name every [`RESOLVE_INTERVAL`] (so a slow DNS never stalls the node);
/// the node's own thread connects new addresses and drops vanished ones ([`Target::refresh`]).
struct Replicas {
    host: String,
    port: u16,
    connected: BTreeSet<SocketAddr>,
    seen: u64,
    latest: Arc<Resolved>,
}

#[derive(Default)]
struct Resolved {
    generation: AtomicU64,
    addrs: Mutex<BTreeSet<SocketAddr>>,
}

fn endpoint(addr: &SocketAddr) -> String {
    format!("tcp://{addr}")
}

fn resolve(host: &str, port: u16) -> Option<BTreeSet<SocketAddr>> {
    (host, port).to_socket_addrs().ok().map(|addrs| addrs.collect())
}

impl Resolved {
    fn publish(&self, addrs: BTreeSet<SocketAddr>) {
        if let Ok(mut current) = self.addrs.lock() {
            if *current != addrs {
                *current = addrs;
                self.generation.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

impl Target {
    fn push_socket(addr: &str) -> Result<zmq::Socket, SocketError> {
        let socket = context().socket(zmq::PUSH).map_err(zerr("create a socket for", addr))?;
        socket.set_linger(0).map_err(zerr("configure", addr))?;
        socket.set_immediate(true).map_err(zerr("configure", addr))?;
        socket.set_sndtimeo(SEND_TIMEOUT.as_millis() as i32).map_err(zerr("configure", addr))?;
        socket.set_sndhwm(10_000).map_err(zerr("configure", addr))?;
        heartbeats(&socket, addr)?;
        Ok(socket)
    }

    pub fn connect(name: &str, addr: &str) -> Result<Self, SocketError> {
        let socket = Self::push_socket(addr)?;
        socket.connect(addr).map_err(zerr("connect to", addr))?;
        Ok(Target { name: name.to_string(), addr: addr.to_string(), socket, replicas: None })
    }

    /// A PUSH socket connected to *every* address the host of `addr` (`tcp://NAME:PORT`)
    /// resolves to, now and as it changes (see [`Replicas`]); the node calls [`Target::refresh`].
    /// A name that does not resolve yet is no error: sends fail as `unreachable` until it does.
    pub fn connect_all(name: &str, addr: &str) -> Result<Self, SocketError> {
        let (host, port) = addr
            .strip_prefix("tcp://")
            .and_then(|rest| rest.rsplit_once(':'))
            .and_then(|(host, port)| Some((host.trim_start_matches('[').trim_end_matches(']').to_string(), port.parse::<u16>().ok()?)))
            .ok_or_else(|| SocketError::Zmq { action: "resolve", addr: addr.to_string(), source: zmq::Error::EINVAL })?;
        let socket = Self::push_socket(addr)?;
        socket.set_ipv6(true).map_err(zerr("configure", addr))?;
        let latest = Arc::new(Resolved::default());
        latest.publish(resolve(&host, port).unwrap_or_default());
        let weak = Arc::downgrade(&latest);
        let (h, p) = (host.clone(), port);
        std::thread::Builder::new()
            .name(format!("resolve {host}"))
            .spawn(move || loop {
                std::thread::sleep(RESOLVE_INTERVAL);
                let found = resolve(&h, p);
                // The target is gone: so is the reason to resolve.
                let Some(latest) = weak.upgrade() else { return };
                if let Some(found) = found {
                    latest.publish(found);
                }
            })
            .map_err(|_| SocketError::Zmq { action: "start a resolver for", addr: addr.to_string(), source: zmq::Error::ENOMEM })?;
        let mut target = Target {
            name: name.to_string(),
            addr: addr.to_string(),
            socket,
            replicas: Some(Replicas { host, port, connected: BTreeSet::new(), seen: u64::MAX, latest }),
        };
        target.refresh();
        Ok(target)
    }

    /// Whether [`Target::refresh`] has anything to do (the node then polls with a timeout).
    pub fn follows_dns(&self) -> bool {
        self.replicas.is_some()
    }

    /// Connects the addresses the name newly resolves to and disconnects the vanished ones.
    pub fn refresh(&mut self) {
        let Some(replicas) = &mut self.replicas else { return };
        let generation = replicas.latest.generation.load(Ordering::SeqCst);
        if generation == replicas.seen {
            return;
        }
        let wanted = match replicas.latest.addrs.lock() {
            Ok(addrs) => addrs.clone(),
            Err(_) => return,
        };
        replicas.seen = generation;
        for gone in replicas.connected.difference(&wanted) {
            if let Err(e) = self.socket.disconnect(&endpoint(gone)) {
                tracing::debug!(target = %self.name, "disconnect {gone}: {e}");
            }
        }
        for new in wanted.difference(&replicas.connected) {
            if let Err(e) = self.socket.connect(&endpoint(new)) {
                tracing::warn!(target = %self.name, "cannot connect to {new} ({}:{}): {e}", replicas.host, replicas.port);
            }
        }
        tracing::debug!(target = %self.name, "{}:{} resolves to {wanted:?}", replicas.host, replicas.port);
        replicas.connected = wanted;
    }

    /// The addresses this target is connected to now, for a target that follows a name.
    pub fn resolved(&self) -> Vec<SocketAddr> {
        self.replicas.as_ref().map(|r| r.connected.iter().copied().collect()).unwrap_or_default()
    }

    /// A PUSH socket bound at `addr` that the consumer `name` connects its PULL to
    /// ([`pull_from`]): how a remote pod hands its results to a Flow on another machine. Until
    /// the consumer is connected, sends fail after [`SEND_TIMEOUT`] like sends to a dead peer.
    pub fn bind(name: &str, addr: &str) -> Result<Self, SocketError> {
        let socket = Self::push_socket(addr)?;
        let wanted = match addr.strip_suffix(":0") {
            Some(prefix) if addr.starts_with("tcp://") => format!("{prefix}:*"),
            _ => addr.to_string(),
        };
        socket.bind(&wanted).map_err(zerr("bind", addr))?;
        let bound = socket.get_last_endpoint().map_err(zerr("read the endpoint of", addr))?.unwrap_or_else(|_| wanted.clone());
        Ok(Target { name: name.to_string(), addr: connectable(&bound), socket, replicas: None })
    }

    /// [`Target::bind`] when `bind`, else [`Target::connect`].
    pub fn open(name: &str, addr: &str, bind: bool) -> Result<Self, SocketError> {
        if bind {
            Self::bind(name, addr)
        } else {
            Self::connect(name, addr)
        }
    }

    /// Sends without waiting: `false` if the peer is not connected or its queue is full.
    pub fn try_send(&self, frame: &[u8]) -> bool {
        self.socket.send(frame, zmq::DONTWAIT).is_ok()
    }

    /// Sends, waiting at most [`SEND_TIMEOUT`] for the peer.
    pub fn send(&self, frame: &[u8]) -> Result<(), SocketError> {
        self.socket.send(frame, 0).map_err(zerr("send to", &self.addr))
    }
}

/// Counts the peers connected to the bound socket `socket` now (accepted minus disconnected
/// connections), from ZeroMQ's socket monitor, read by a thread of its own. A gateway in a
/// container uses it to report ready only once its leaves have connected back to it: behind an
/// orchestrator's DNS the return path may open a moment after everything else answers.
pub fn count_peers(socket: &zmq::Socket, name: &str) -> Result<Arc<std::sync::atomic::AtomicI64>, SocketError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let endpoint = format!("inproc://jinad-monitor-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let events = zmq::SocketEvent::ACCEPTED as i32 | zmq::SocketEvent::DISCONNECTED as i32;
    socket.monitor(&endpoint, events).map_err(zerr("monitor", name))?;
    let peers = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let monitor = context().socket(zmq::PAIR).map_err(zerr("create a monitor for", name))?;
    monitor.connect(&endpoint).map_err(zerr("monitor", name))?;
    let counted = peers.clone();
    std::thread::Builder::new()
        .name("peers-monitor".into())
        .spawn(move || {
            // Each event: a frame with the event id (u16) and a value (u32), then the address.
            while let Ok(frames) = monitor.recv_multipart(0) {
                let Some(id) = frames.first().and_then(|f| f.get(..2)).map(|b| u16::from_le_bytes([b[0], b[1]])) else { continue };
                match zmq::SocketEvent::from_raw(id) {
                    zmq::SocketEvent::ACCEPTED => counted.fetch_add(1, Ordering::SeqCst),
                    zmq::SocketEvent::DISCONNECTED => counted.fetch_sub(1, Ordering::SeqCst),
                    zmq::SocketEvent::MONITOR_STOPPED => return,
                    _ => continue,
                };
            }
        })
        .map_err(|_| SocketError::Zmq { action: "start a monitor for", addr: name.to_string(), source: zmq::Error::ENOMEM })?;
    Ok(peers)
}

/// Makes the PULL socket `input` also receive from the PUSH socket bound at `addr` (a remote
/// pod's output), besides what is pushed to its own bound address.
pub fn pull_from(input: &zmq::Socket, addr: &str) -> Result<(), SocketError> {
    input.connect(addr).map_err(zerr("connect to", addr))
}

/// Sends one control command to the REP socket at `addr` and waits at most `timeout` for the reply.
/// A fresh REQ socket per call: a REQ socket that timed out cannot be reused.
pub fn control(addr: &str, command: ControlRequest, timeout: Duration) -> Result<ControlReply, SocketError> {
    let socket = context().socket(zmq::REQ).map_err(zerr("create a socket for", addr))?;
    socket.set_linger(0).map_err(zerr("configure", addr))?;
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    socket.set_sndtimeo(ms).map_err(zerr("configure", addr))?;
    socket.set_rcvtimeo(ms).map_err(zerr("configure", addr))?;
    socket.connect(addr).map_err(zerr("connect to", addr))?;
    let frame = message::encode(Kind::Control, &command).map_err(|source| SocketError::Wire { addr: addr.into(), source })?;
    let timed_out = || SocketError::Timeout { addr: addr.to_string(), ms: timeout.as_millis() };
    socket.send(frame, 0).map_err(|_| timed_out())?;
    let reply = socket.recv_bytes(0).map_err(|_| timed_out())?;
    message::decode(Kind::ControlReply, &reply).map_err(|source| SocketError::Wire { addr: addr.into(), source })
}

/// Asks `addr` for its status until it answers ready or `deadline` passes.
pub fn wait_ready(addr: &str, deadline: std::time::Instant) -> Result<ControlReply, SocketError> {
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match control(addr, ControlRequest::Status, left.min(Duration::from_millis(500)).max(Duration::from_millis(10))) {
            Ok(reply) if reply.ready => return Ok(reply),
            Ok(_) | Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(_) => return Err(SocketError::Timeout { addr: addr.to_string(), ms: 0 }),
            Err(e) => return Err(e),
        }
    }
}
