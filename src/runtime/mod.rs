//! The runtime that runs inside containers (and locally with `jinad flow`): Documents, the wire
//! format, executors, peas/heads/tails over ZeroMQ, pods, Flows and the HTTP gateway.

pub mod bench;
pub mod child;
pub mod document;
pub mod executor;
pub mod flow;
pub mod gateway;
pub mod join;
pub mod message;
pub mod node;
pub mod pod;
pub mod probe;
pub mod polling;
pub mod roles;
pub mod sockets;
