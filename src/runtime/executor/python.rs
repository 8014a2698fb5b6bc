//! Python executors: a user class in the workspace's modules, run by a `python3` child process
//! through the bridge shipped in this binary (`python_bridge.py`, standard library only). The pea
//! exchanges length-prefixed JSON frames with it over the child's stdin/stdout.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{Executor, ExecutorContext};
use crate::runtime::document::Document;

const BRIDGE: &str = include_str!("python_bridge.py");

/// Largest frame accepted from the bridge.
const MAX_FRAME: usize = 1 << 30;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The class to instantiate.
    pub class: String,
    /// Files imported in order (absolute paths); the class is taken from the last that defines it.
    pub modules: Vec<PathBuf>,
    /// Keyword arguments of the class's `__init__`.
    pub with: Map<String, Value>,
}

impl Config {
    pub fn validated(self) -> Result<Self, String> {
        let identifier = |s: &str| {
            let mut c = s.chars();
            matches!(c.next(), Some(f) if f.is_alphabetic() || f == '_') && c.all(|x| x.is_alphanumeric() || x == '_')
        };
        if !identifier(&self.class) {
            return Err(format!("`{}` is not a Python class name", self.class));
        }
        if self.modules.is_empty() {
            return Err("a Python executor needs `py_modules`".into());
        }
        for m in &self.modules {
            if m.extension().and_then(|e| e.to_str()) != Some("py") {
                return Err(format!("{} is not a .py file", m.display()));
            }
            if !m.is_file() {
                return Err(format!("{} does not exist", m.display()));
            }
        }
        Ok(self)
    }
}

/// The interpreter: `JINAD_PYTHON`, else `python3` on the PATH.
fn interpreter() -> String {
    std::env::var("JINAD_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

pub struct PythonExecutor {
    name: String,
    child: Child,
    to_child: BufWriter<ChildStdin>,
    from_child: BufReader<ChildStdout>,
    dead: Option<String>,
}

#[derive(Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    error: String,
    #[serde(default)]
    docs: Option<Vec<Document>>,
}

impl PythonExecutor {
    pub fn start(config: &Config, ctx: &ExecutorContext) -> Result<Self, String> {
        let bridge_config = json!({
            "class": config.class,
            "modules": config.modules,
            "with": config.with,
            "workspace": ctx.workspace,
            "runtime": {"name": ctx.name, "pod": ctx.pod, "shard_id": ctx.shard_id, "shards": ctx.shards, "replica_id": ctx.replica_id},
        });
        let python = interpreter();
        let mut command = Command::new(&python);
        // Its own process group: a terminal's Ctrl-C goes to the flow, which closes the executor.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .arg("-u")
            .arg("-c")
            .arg(BRIDGE)
            .arg(bridge_config.to_string())
            .envs(&ctx.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run `{python}` (set JINAD_PYTHON to the interpreter): {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err("the Python bridge has no pipes".into());
        };
        let mut executor = PythonExecutor {
            name: ctx.name.clone(),
            child,
            to_child: BufWriter::new(stdin),
            from_child: BufReader::new(stdout),
            dead: None,
        };
        let ready = executor.read()?;
        if !ready.ok {
            return Err(format!("{} could not be loaded:\n{}", config.class, ready.error.trim_end()));
        }
        Ok(executor)
    }

    fn write(&mut self, msg: &Value) -> Result<(), String> {
        let body = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
        let len = u32::try_from(body.len()).map_err(|_| "request too large for the Python bridge".to_string())?;
        self.to_child
            .write_all(&len.to_be_bytes())
            .and_then(|_| self.to_child.write_all(&body))
            .and_then(|_| self.to_child.flush())
            .map_err(|e| self.died(format!("cannot write to it: {e}")))
    }

    fn read(&mut self) -> Result<Reply, String> {
        let mut head = [0u8; 4];
        if let Err(e) = self.from_child.read_exact(&mut head) {
            return Err(self.died(format!("no answer: {e}")));
        }
        let len = u32::from_be_bytes(head) as usize;
        if len > MAX_FRAME {
            return Err(self.died(format!("a frame of {len} bytes")));
        }
        let mut body = vec![0u8; len];
        if let Err(e) = self.from_child.read_exact(&mut body) {
            return Err(self.died(format!("a torn answer: {e}")));
        }
        serde_json::from_slice(&body).map_err(|e| format!("the Python executor returned documents jinad cannot read: {e}"))
    }

    /// Marks the bridge dead (its stderr is in this process's log) and says so.
    fn died(&mut self, what: String) -> String {
        let status = match self.child.try_wait() {
            Ok(Some(s)) => format!(" (exited: {s})"),
            _ => String::new(),
        };
        let message = format!("the Python process of {} is gone{status}: {what}", self.name);
        self.dead = Some(message.clone());
        message
    }
}

impl Executor for PythonExecutor {
    fn handle(&mut self, endpoint: &str, docs: &mut Vec<Document>, parameters: &Map<String, Value>) -> Result<(), String> {
        if let Some(dead) = &self.dead {
            return Err(dead.clone());
        }
        self.write(&json!({"op": "call", "endpoint": endpoint, "docs": docs, "parameters": parameters}))?;
        let reply = self.read()?;
        if !reply.ok {
            return Err(reply.error.trim_end().to_string());
        }
        if let Some(new) = reply.docs {
            *docs = new;
        }
        Ok(())
    }

    /// Asks the class to `close()`, then waits (at most 10 s) for the process to end.
    fn close(&mut self) -> Result<(), String> {
        if let Some(dead) = &self.dead {
            return Err(dead.clone());
        }
        self.write(&json!({"op": "close"}))?;
        let reply = self.read()?;
        crate::runtime::child::wait_or_kill(&mut self.child, Duration::from_secs(10));
        self.dead = Some(format!("{} is closed", self.name));
        if reply.ok {
            Ok(())
        } else {
            Err(reply.error.trim_end().to_string())
        }
    }
}

impl Drop for PythonExecutor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
