//! A Flow: pods wired as a DAG behind a gateway. [`spec`] reads and checks the YAML; [`run`]
//! starts every pod (one thread per pea, head and tail) and the gateway in this process.

pub mod containers;
pub mod hosts;
pub mod remote;
pub mod run;
pub mod spec;

pub use run::RunningFlow;
pub use spec::{FlowError, FlowSpec, Need};
