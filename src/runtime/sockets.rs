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

use std::sync::OnceLock;
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

/// A downstream node: its name (for error messages) and a PUSH socket connected to its data input.
pub struct Target {
    pub name: String,
    pub addr: String,
    socket: zmq::Socket,
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
        Ok(Target { name: name.to_string(), addr: addr.to_string(), socket })
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
        Ok(Target { name: name.to_string(), addr: connectable(&bound), socket })
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
