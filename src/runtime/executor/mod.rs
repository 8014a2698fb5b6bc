//! Executors: what a pea runs. A Rust trait with one entry point per request and a `close()`
//! that persists; the built-in ones are chosen by name in a Flow's `uses:`.

mod hash_encoder;
mod passthrough;
pub mod python;
mod vector_indexer;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::document::Document;

pub use hash_encoder::HashEncoder;
pub use passthrough::Passthrough;
pub use vector_indexer::VectorIndexer;

/// What a pea tells its executor about where it runs.
#[derive(Debug, Clone, Default)]
pub struct ExecutorContext {
    /// The pea's name, e.g. `idx/shard-1`.
    pub name: String,
    pub pod: String,
    /// A directory of its own (per pod and shard), for executors that keep state.
    pub workspace: PathBuf,
    pub shard_id: usize,
    pub shards: usize,
    pub replica_id: usize,
    /// The pod's `env:`; set on the process too when the pod runs as its own process.
    pub env: BTreeMap<String, String>,
}

pub trait Executor: Send {
    /// Handles one request. An endpoint the executor does not serve leaves `docs` unchanged.
    /// An `Err` becomes an error response that names this pea.
    fn handle(&mut self, endpoint: &str, docs: &mut Vec<Document>, parameters: &Map<String, Value>) -> Result<(), String>;

    /// Called once when the pea stops gracefully: persist here.
    fn close(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// A validated `uses:` + `with:` pair, ready to be built once per pea.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorSpec {
    Passthrough,
    HashEncoder(hash_encoder::Config),
    VectorIndexer(vector_indexer::Config),
    /// A user class from `py_modules`, run by the Python bridge.
    Python(python::Config),
}

/// The names `uses:` accepts.
pub const BUILTIN: [&str; 3] = ["Passthrough", "HashEncoder", "VectorIndexer"];

impl ExecutorSpec {
    /// Checks `uses` and its `with` arguments; the error says which argument is wrong.
    pub fn parse(uses: &str, with: &Map<String, Value>) -> Result<Self, String> {
        match uses {
            "Passthrough" | "BaseExecutor" => {
                if let Some(key) = with.keys().next() {
                    return Err(format!("Passthrough takes no arguments (got `{key}`)"));
                }
                Ok(ExecutorSpec::Passthrough)
            }
            "HashEncoder" => Ok(ExecutorSpec::HashEncoder(args::<hash_encoder::Config>(with)?.validated()?)),
            "VectorIndexer" => Ok(ExecutorSpec::VectorIndexer(args(with)?)),
            other => Err(format!("unknown executor `{other}`; built in: {} (a Python class needs `py_modules`)", BUILTIN.join(", "))),
        }
    }

    /// A Python class (`uses: ClassName` with `py_modules`); the modules must exist.
    pub fn python(class: &str, modules: Vec<PathBuf>, with: &Map<String, Value>) -> Result<Self, String> {
        Ok(ExecutorSpec::Python(python::Config { class: class.to_string(), modules, with: with.clone() }.validated()?))
    }

    /// Stateful executors keep data per shard and must not be replicated.
    pub fn stateful(&self) -> bool {
        matches!(self, ExecutorSpec::VectorIndexer(_))
    }

    pub fn build(&self, ctx: &ExecutorContext) -> Result<Box<dyn Executor>, String> {
        Ok(match self {
            ExecutorSpec::Passthrough => Box::new(Passthrough),
            ExecutorSpec::HashEncoder(config) => Box::new(HashEncoder::new(config.clone())),
            ExecutorSpec::VectorIndexer(config) => Box::new(VectorIndexer::open(config.clone(), ctx)?),
            ExecutorSpec::Python(config) => Box::new(python::PythonExecutor::start(config, ctx)?),
        })
    }
}

fn args<T: DeserializeOwned>(with: &Map<String, Value>) -> Result<T, String> {
    serde_json::from_value(Value::Object(with.clone())).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked() {
        let with = |s: &str| serde_json::from_str::<Map<String, Value>>(s).unwrap();
        assert!(ExecutorSpec::parse("HashEncoder", &with(r#"{"dim": 16}"#)).is_ok());
        let err = ExecutorSpec::parse("HashEncoder", &with(r#"{"dimm": 16}"#)).unwrap_err();
        assert!(err.contains("dimm"), "{err}");
        assert!(ExecutorSpec::parse("HashEncoder", &with(r#"{"dim": 0}"#)).is_err());
        assert!(ExecutorSpec::parse("Passthrough", &with(r#"{"x": 1}"#)).is_err());
        assert!(ExecutorSpec::parse("Nope", &with("{}")).unwrap_err().contains("VectorIndexer"));
    }
}
