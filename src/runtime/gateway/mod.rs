//! The gateway: HTTP in front of the pods ([`http`]) and the ZeroMQ side that sends requests in and
//! collects the answers ([`dispatcher`]).

pub mod dispatcher;
pub mod http;
pub mod metrics;

pub use dispatcher::{Dispatcher, GatewayError, GatewayPlan};
