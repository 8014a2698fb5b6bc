//! The Flow YAML: parsed strictly (unknown keys are errors, with their line), then checked as a
//! whole (names, `uses`, `needs` as a DAG) with errors that name the field.
//!
//! `${{ ENV.NAME }}` anywhere is replaced by the environment variable (an unset one is an error).
//!
//! ```yaml
//! jtype: Flow
//! version: '1'
//! with: {port: 12345, host: 127.0.0.1, protocol: http, timeout_ms: 10000, workspace: ./workspace}
//! executors:                 # alias: pods
//!   - name: enc
//!     uses: HashEncoder
//!     with: {dim: 64}
//!   - name: idx
//!     uses: VectorIndexer
//!     shards: 2              # alias: parallel
//!     replicas: 1
//!     polling: {/index: any, /search: all}
//!     needs: [enc]           # default: the previous executor (the first: gateway)
//!     env: {KEY: value}
//!   - name: mine
//!     uses: MyExecutor       # a Python class …
//!     py_modules: [executors/mine.py]   # … defined in these files (relative to the YAML)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::runtime::executor::ExecutorSpec;
use crate::runtime::polling::{Polling, PollingSpec};
use crate::runtime::pod::{ContainerPod, PodSpec, RemotePod};
#[cfg(test)]
use crate::runtime::pod::RemoteHost;

pub const MAX_PEAS_PER_POD: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowYaml {
    jtype: Option<String>,
    #[serde(default)]
    version: Option<Value>,
    #[serde(default)]
    with: WithYaml,
    #[serde(default, alias = "pods")]
    executors: Vec<PodYaml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WithYaml {
    #[serde(alias = "port_expose")]
    port: Option<u16>,
    host: Option<IpAddr>,
    protocol: Option<String>,
    timeout_ms: Option<u64>,
    workspace: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PodYaml {
    name: Option<String>,
    uses: Option<String>,
    #[serde(default)]
    with: Map<String, Value>,
    replicas: Option<usize>,
    #[serde(alias = "parallel")]
    shards: Option<usize>,
    polling: Option<PollingSpec>,
    needs: Option<Needs>,
    #[serde(default)]
    env: BTreeMap<String, Scalar>,
    workspace: Option<PathBuf>,
    /// A remote jinad (`HOST:PORT`), or a list of them to spread the pod's peas over.
    host: Option<super::hosts::HostsYaml>,
    /// The token of the `host:` daemons (each list entry may carry its own).
    token: Option<String>,
    image: Option<String>,
    /// Python files to import; `uses` is then a class defined in them.
    #[serde(default)]
    py_modules: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Needs {
    One(String),
    Many(Vec<String>),
}

/// Environment values may be written as numbers or booleans; they become strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Scalar::Text(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// Where a pod takes its input from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Gateway,
    Pod(usize),
}

#[derive(Debug, Clone)]
pub struct FlowSpec {
    pub host: IpAddr,
    pub port: u16,
    /// How long the gateway waits for a request before it answers with an error.
    pub timeout: Duration,
    pub workspace: PathBuf,
    /// The YAML's directory: relative paths start there, and it is what remote hosts get.
    pub base: PathBuf,
    pub env: BTreeMap<String, String>,
    pub pods: Vec<PodSpec>,
    /// `needs[i]`: the inputs of pod `i`.
    pub needs: Vec<Vec<Need>>,
    /// Pods in an order where every pod comes after what it needs.
    pub order: Vec<usize>,
}

/// A Flow YAML that cannot run; the message names the line or the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FlowError(pub String);

impl FlowSpec {
    pub fn load(path: &Path) -> Result<Self, FlowError> {
        let text = std::fs::read_to_string(path).map_err(|e| FlowError(format!("cannot read {}: {e}", path.display())))?;
        // Absolute, so that `flow.yml` (no directory part) has a directory too; links are kept.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, &base).map_err(|FlowError(m)| FlowError(format!("{}: {m}", path.display())))
    }

    /// Parses `text`; relative paths are taken from `base` (the YAML file's directory);
    /// `${{ ENV.NAME }}` comes from this process's environment.
    pub fn parse(text: &str, base: &Path) -> Result<Self, FlowError> {
        Self::parse_with_env(text, base, &|name| std::env::var(name).ok())
    }

    /// [`FlowSpec::parse`] with `${{ ENV.NAME }}` looked up in `env` (the daemon plans a Flow
    /// with the `envs` of the request, which its containers then get as their environment).
    pub fn parse_with_env(text: &str, base: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, FlowError> {
        let expanded = expand_env(text, env)?;
        let text = expanded.as_str();
        let yaml: FlowYaml = yaml_serde::from_str(text).map_err(|e| FlowError(e.to_string()))?;
        match yaml.jtype.as_deref() {
            Some("Flow") => {}
            Some(other) => return Err(FlowError(format!("jtype: expected `Flow`, got `{other}`"))),
            None => return Err(FlowError("jtype: missing (write `jtype: Flow`)".into())),
        }
        if let Some(v) = &yaml.version {
            let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            if v != "1" && v != "1.0" {
                return Err(FlowError(format!("version: `{v}` is not supported (use '1')")));
            }
        }
        if let Some(p) = yaml.with.protocol.as_deref() {
            if !p.eq_ignore_ascii_case("http") {
                return Err(FlowError(format!("with.protocol: `{p}` is not supported (only http)")));
            }
        }
        if yaml.executors.is_empty() {
            return Err(FlowError("executors: a Flow needs at least one executor".into()));
        }
        let workspace = base.join(yaml.with.workspace.unwrap_or_else(|| PathBuf::from("workspace")));
        let env: BTreeMap<String, String> = yaml.with.env.into_iter().map(|(k, v)| (k, v.into_string())).collect();

        let mut names: HashMap<String, usize> = HashMap::new();
        let mut pods = Vec::new();
        let mut raw_needs = Vec::new();
        for (i, pod) in yaml.executors.into_iter().enumerate() {
            let name = pod.name.clone().unwrap_or_else(|| format!("pod{i}"));
            let at = |field: &str| located(text, i, field, format!("executors[{i}] ({name}).{field}"));
            let err = |field: &str, message: String| FlowError(format!("{}: {message}", at(field)));
            if !valid_name(&name) {
                return Err(err("name", format!("`{name}` must start with a letter or `_` and hold only letters, digits, `_` and `-`")));
            }
            if name == "gateway" {
                return Err(err("name", "`gateway` is reserved".into()));
            }
            if names.insert(name.clone(), i).is_some() {
                return Err(err("name", format!("`{name}` is used twice")));
            }
            let hosts = match pod.host {
                None if pod.token.is_some() => return Err(err("token", "`token` goes with `host:`".into())),
                None => None,
                Some(hosts) => Some(super::hosts::remote_hosts(hosts, pod.token.as_deref()).map_err(|m| err("host", m))?),
            };
            if hosts.is_some() && pod.image.is_some() {
                return Err(err("image", "a `host:` pod runs in the remote daemon's workspace image; `image:` is for local containers".into()));
            }
            if hosts.is_some() && pod.workspace.is_some() {
                return Err(err("workspace", "a `host:` pod keeps its data on its host, in the workspace there".into()));
            }
            let uses = pod.uses.unwrap_or_else(|| "Passthrough".to_string());
            if hosts.is_some() && uses.starts_with("docker://") {
                return Err(err("uses", "a `host:` pod runs in the remote daemon's workspace image; `docker://` is for local containers".into()));
            }
            let mut remote_modules = Vec::new();
            if hosts.is_some() {
                for m in &pod.py_modules {
                    let inside = crate::workspace::paths::safe_relative(m).filter(|_| base.join(m).is_file());
                    match inside {
                        Some(rel) => remote_modules.push(rel.to_string_lossy().replace('\\', "/")),
                        None => return Err(err("py_modules", format!("`{}` must be a file inside the Flow's directory (it is uploaded to the `host:`)", m.display()))),
                    }
                }
            }
            let remote = hosts.map(|hosts| RemotePod {
                hosts,
                uses: uses.clone(),
                with: pod.with.clone(),
                py_modules: remote_modules,
                polling: pod.polling.as_ref().and_then(|p| serde_json::to_value(p).ok()),
            });
            let polling_json = pod.polling.as_ref().and_then(|p| serde_json::to_string(p).ok());
            // JEP 2: `uses: docker://IMAGE` (the image's CMD chooses the executor) or `image:` with
            // `uses:` (this YAML chooses it); either way `jinad flow` runs the pod in a container.
            let (executor, container) = match (uses.strip_prefix("docker://"), pod.image.clone()) {
                (Some(_), Some(_)) => return Err(err("image", "give `uses: docker://IMAGE` or `image: IMAGE`, not both".into())),
                (Some(image), None) => {
                    if !pod.with.is_empty() || !pod.py_modules.is_empty() {
                        return Err(err("with", "a `docker://` pod's executor and arguments come from the image's CMD; write `image: IMAGE` with `uses:`/`with:` to choose them here".into()));
                    }
                    let container = ContainerPod { image: valid_image(image).map_err(|m| err("uses", m))?, executor_args: None, polling: polling_json.clone() };
                    (ExecutorSpec::Passthrough, Some(container))
                }
                (None, Some(image)) => {
                    let mut args = vec!["--uses".to_string(), uses.clone(), "--with".to_string(), Value::Object(pod.with.clone()).to_string()];
                    for m in &pod.py_modules {
                        args.extend(["--py-modules".to_string(), m.to_string_lossy().into_owned()]);
                    }
                    // Built-in executors are checked here; a Python class lives in the image.
                    let executor = if pod.py_modules.is_empty() {
                        ExecutorSpec::parse(&uses, &pod.with).map_err(|m| err(if m.contains("unknown executor") { "uses" } else { "with" }, m))?
                    } else {
                        ExecutorSpec::Passthrough
                    };
                    let container = ContainerPod { image: valid_image(&image).map_err(|m| err("image", m))?, executor_args: Some(args), polling: polling_json.clone() };
                    (executor, Some(container))
                }
                (None, None) if pod.py_modules.is_empty() => {
                    (ExecutorSpec::parse(&uses, &pod.with).map_err(|m| err(if m.contains("unknown executor") { "uses" } else { "with" }, m))?, None)
                }
                (None, None) => {
                    let modules = pod.py_modules.iter().map(|m| base.join(m)).collect();
                    (ExecutorSpec::python(&uses, modules, &pod.with).map_err(|m| err("py_modules", m))?, None)
                }
            };
            let replicas = pod.replicas.unwrap_or(1);
            let shards = pod.shards.unwrap_or(1);
            for (field, n) in [("replicas", replicas), ("shards", shards)] {
                if n == 0 || n > MAX_PEAS_PER_POD {
                    return Err(err(field, format!("must be between 1 and {MAX_PEAS_PER_POD} (got {n})")));
                }
            }
            if replicas * shards > MAX_PEAS_PER_POD {
                return Err(err("replicas", format!("replicas × shards must be at most {MAX_PEAS_PER_POD}")));
            }
            if replicas > 1 && executor.stateful() {
                return Err(err("replicas", format!("{uses} keeps state per shard: use `shards`, not `replicas`")));
            }
            let polling = Polling::from_spec(pod.polling).map_err(|m| err("polling", m))?;
            let pod_workspace = match pod.workspace {
                Some(w) => base.join(w),
                None => workspace.join(&name),
            };
            let mut pod_env = env.clone();
            pod_env.extend(pod.env.into_iter().map(|(k, v)| (k, v.into_string())));
            raw_needs.push(match pod.needs {
                None if i == 0 => vec!["gateway".to_string()],
                None => vec![pods.last().map(|p: &PodSpec| p.name.clone()).unwrap_or_default()],
                Some(Needs::One(n)) => vec![n],
                Some(Needs::Many(list)) => list,
            });
            pods.push(PodSpec { name, executor, replicas, shards, polling, needs: 1, workspace: pod_workspace, env: pod_env, container, remote });
        }

        let mut needs = Vec::new();
        for (i, list) in raw_needs.iter().enumerate() {
            let at = located(text, i, "needs", format!("executors[{i}] ({}).needs", pods[i].name));
            if list.is_empty() {
                return Err(FlowError(format!("{at}: must name at least one pod or `gateway`")));
            }
            let mut resolved = Vec::new();
            for n in list {
                let need = match n.as_str() {
                    "gateway" => Need::Gateway,
                    other => match names.get(other) {
                        Some(&j) if j == i => return Err(FlowError(format!("{at}: a pod cannot need itself"))),
                        Some(&j) => Need::Pod(j),
                        None => return Err(FlowError(format!("{at}: no executor is named `{other}`"))),
                    },
                };
                if resolved.contains(&need) {
                    return Err(FlowError(format!("{at}: `{n}` is listed twice")));
                }
                resolved.push(need);
            }
            pods[i].needs = resolved.len();
            needs.push(resolved);
        }
        let order = topological_order(&pods, &needs)?;
        Ok(FlowSpec {
            host: yaml.with.host.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            port: yaml.with.port.unwrap_or(0),
            timeout: Duration::from_millis(yaml.with.timeout_ms.unwrap_or(10_000).max(1)),
            workspace,
            base: base.to_path_buf(),
            env,
            pods,
            needs,
            order,
        })
    }

    /// The pods that take their input from the gateway.
    pub fn entries(&self) -> Vec<usize> {
        (0..self.pods.len()).filter(|&i| self.needs[i].contains(&Need::Gateway)).collect()
    }

    /// The pods no other pod needs: their output goes back to the gateway.
    pub fn leaves(&self) -> Vec<usize> {
        (0..self.pods.len()).filter(|&i| !self.needs.iter().any(|n| n.contains(&Need::Pod(i)))).collect()
    }

    /// The pods that need pod `i`.
    pub fn consumers(&self, i: usize) -> Vec<usize> {
        (0..self.pods.len()).filter(|&j| self.needs[j].contains(&Need::Pod(i))).collect()
    }
}

/// Replaces every `${{ ENV.NAME }}` (Jina's syntax) by the variable's value from this process's
/// environment; an unset variable is an error naming its line.
fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, FlowError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let line = text[..text.len() - rest.len() + start].matches('\n').count() + 1;
        let after = &rest[start + 3..];
        let end = after.find("}}").ok_or_else(|| FlowError(format!("line {line}: `${{{{` without a closing `}}}}`")))?;
        let expr = after[..end].trim();
        let name = expr
            .strip_prefix("ENV.")
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| FlowError(format!("line {line}: `${{{{ {expr} }}}}`: only `${{{{ ENV.NAME }}}}` is supported")))?;
        let value = env(name).ok_or_else(|| FlowError(format!("line {line}: the environment variable {name} is not set")))?;
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `path` prefixed with the line of `field` in the `i`-th executor, when the YAML is in block style
/// (the usual one): `line 7, executors[1] (b).needs`. YAML and type errors carry their line from
/// the parser; this gives the checks made after parsing a line too.
fn located(text: &str, i: usize, field: &str, path: String) -> String {
    match field_line(text, i, field) {
        Some(line) => format!("line {line}, {path}"),
        None => path,
    }
}

fn field_line(text: &str, i: usize, field: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let list = lines.iter().position(|l| l.starts_with("executors:") || l.starts_with("pods:"))?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    // Items: lines `<indent>- ` at the indentation of the first item, until a top-level key.
    let mut items = Vec::new();
    let mut item_indent = None;
    for (n, l) in lines.iter().enumerate().skip(list + 1) {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if indent(l) == 0 && !trimmed.starts_with('-') {
            break;
        }
        if trimmed.starts_with("- ") || trimmed == "-" {
            let at = *item_indent.get_or_insert(indent(l));
            if indent(l) == at {
                items.push(n);
            }
        }
    }
    let start = *items.get(i)?;
    let end = items.get(i + 1).copied().unwrap_or(lines.len());
    let key = format!("{field}:");
    (start..end)
        .find(|&n| lines[n].trim_start().trim_start_matches("- ").starts_with(&key))
        .or(Some(start))
        .map(|n| n + 1)
}

/// A Docker image reference: no spaces or control characters, not empty, not an option.
fn valid_image(image: &str) -> Result<String, String> {
    let ok = !image.is_empty() && image.len() <= 255 && !image.starts_with('-') && image.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(image.to_string())
    } else {
        Err(format!("`{image}` is not an image reference"))
    }
}

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 64
}

fn topological_order(pods: &[PodSpec], needs: &[Vec<Need>]) -> Result<Vec<usize>, FlowError> {
    let n = pods.len();
    let mut indegree: Vec<usize> = needs.iter().map(|l| l.iter().filter(|x| matches!(x, Need::Pod(_))).count()).collect();
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop() {
        order.push(i);
        for j in 0..n {
            if needs[j].contains(&Need::Pod(i)) {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.push(j);
                }
            }
        }
    }
    if order.len() < n {
        let cycle: Vec<&str> = (0..n).filter(|i| !order.contains(i)).map(|i| pods[i].name.as_str()).collect();
        return Err(FlowError(format!("needs: the executors {} form a cycle", cycle.join(", "))));
    }
    // Every pod has needs; one that needs no pod needs the gateway, so all are reachable.
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FlowSpec, String> {
        FlowSpec::parse(text, Path::new("/flows")).map_err(|e| e.0)
    }

    #[test]
    fn chain_defaults_dag_and_aliases() {
        let f = parse("jtype: Flow\nwith: {port_expose: 1234}\npods:\n  - name: a\n  - name: b\n    uses: HashEncoder\n    with: {dim: 8}\n  - name: c\n    needs: [a, b]\n    parallel: 2\n    uses: VectorIndexer\n").unwrap();
        assert_eq!(f.port, 1234);
        assert_eq!(f.needs[0], vec![Need::Gateway]);
        assert_eq!(f.needs[1], vec![Need::Pod(0)]);
        assert_eq!(f.needs[2], vec![Need::Pod(0), Need::Pod(1)]);
        assert_eq!((f.pods[2].needs, f.pods[2].shards), (2, 2));
        assert_eq!(f.entries(), [0]);
        assert_eq!(f.leaves(), [2]);
        assert_eq!(f.consumers(0), [1, 2]);
        assert_eq!(f.pods[2].workspace, Path::new("/flows/workspace/c"));
        let pos = |i| f.order.iter().position(|&x| x == i).unwrap();
        assert!(pos(0) < pos(1) && pos(1) < pos(2));
    }

    #[test]
    fn environment_variables_are_expanded() {
        std::env::set_var("JINAD_TEST_DIM", "12");
        let f = parse("jtype: Flow\nexecutors:\n  - uses: HashEncoder\n    with: {dim: ${{ ENV.JINAD_TEST_DIM }}}\n").unwrap();
        assert_eq!(f.pods[0].executor, ExecutorSpec::parse("HashEncoder", &serde_json::from_str(r#"{"dim": 12}"#).unwrap()).unwrap());
        let e = parse("jtype: Flow\nexecutors:\n  - name: ${{ ENV.JINAD_TEST_SURELY_UNSET }}\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("JINAD_TEST_SURELY_UNSET"), "{e}");
        assert!(parse("jtype: Flow\nexecutors:\n  - name: ${{ HOME }}\n").unwrap_err().contains("ENV.NAME"));
        assert!(parse("jtype: Flow\nexecutors:\n  - name: ${{ ENV.X\n").unwrap_err().contains("closing"));
    }

    #[test]
    fn remote_hosts_with_their_tokens() {
        // Two plain hosts are two hosts (not one host whose token is the second).
        let two = parse("jtype: Flow\nexecutors:\n  - name: a\n    shards: 2\n    host: [b:8000, c:8000]\n    token: t\n").unwrap();
        let hosts = &two.pods[0].remote.as_ref().unwrap().hosts;
        assert_eq!(hosts.iter().map(|h| (h.api.as_str(), h.token.as_deref())).collect::<Vec<_>>(), [("http://b:8000", Some("t")), ("http://c:8000", Some("t"))]);
        let two = parse("jtype: Flow\nexecutors:\n  - name: a\n    shards: 2\n    host:\n      - b:8000\n      - c:8000\n").unwrap();
        assert_eq!(two.pods[0].remote.as_ref().unwrap().hosts.len(), 2);
        // A daemon with TLS keeps its scheme (verified with `jinad flow --ca-file`).
        let tls = parse("jtype: Flow\nexecutors:\n  - name: a\n    host: https://b:8443/\n").unwrap();
        assert_eq!(tls.pods[0].remote.as_ref().unwrap().hosts[0].api, "https://b:8443");
        let f = parse(
            "jtype: Flow\nexecutors:\n  - name: a\n    host: 10.0.0.2:8000\n    token: tb\n  - name: b\n    uses: VectorIndexer\n    shards: 3\n    token: shared\n    host:\n      - http://10.0.0.2:8000/\n      - {host: 'c.example:8001', token: tc}\n",
        )
        .unwrap();
        let a = f.pods[0].remote.as_ref().unwrap();
        assert_eq!(a.hosts, vec![RemoteHost { api: "http://10.0.0.2:8000".into(), token: Some("tb".into()) }]);
        assert!(!a.spread(1));
        let b = f.pods[1].remote.as_ref().unwrap();
        assert_eq!(
            b.hosts,
            vec![
                RemoteHost { api: "http://10.0.0.2:8000".into(), token: Some("shared".into()) },
                RemoteHost { api: "http://c.example:8001".into(), token: Some("tc".into()) }
            ]
        );
        assert!(b.spread(3), "three shards over two hosts: spread, head and tail here");
        assert_eq!((b.uses.as_str(), f.pods[1].shards), ("VectorIndexer", 3));
        assert!(f.pods.iter().all(|p| p.container.is_none()));
    }

    #[test]
    fn errors_name_the_line_or_field() {
        let flow = |body: &str| format!("jtype: Flow\nexecutors:\n{body}");
        let cases: &[(String, &[&str])] = &[
            (flow("  - name: a\n    usess: X\n"), &["usess", "line 4"]),
            (flow("  - name: a\n    replicas: two\n"), &["line 4"]),
            (flow("  - name: a\n  - name: b\n    needs: [zz]\n"), &["line 5, executors[1] (b).needs", "zz"]),
            (flow("  - name: a\n    # a comment\n\n  - uses: Nope\n    name: b\n"), &["line 6, executors[1] (b).uses"]),
            ("jtype: Flow\nexecutors: [{name: a}, {name: b, needs: zz}]\n".into(), &["executors[1] (b).needs"]),
            (flow("  - name: a\n    needs: b\n  - name: b\n    needs: a\n"), &["cycle"]),
            (flow("  - name: a\n    uses: Nope\n"), &["executors[0] (a).uses"]),
            (flow("  - name: a\n    uses: HashEncoder\n    with: {dim: -1}\n"), &["executors[0] (a).with"]),
            (flow("  - name: a\n    uses: VectorIndexer\n    replicas: 2\n"), &["shards"]),
            (flow("  - name: a\n  - name: a\n"), &["twice"]),
            ("executors:\n  - name: a\n".into(), &["jtype"]),
            ("jtype: Flow\nexecutors: []\n".into(), &["at least one"]),
            (flow("  - name: a\n    shards: 0\n"), &["shards"]),
            (flow("  - name: a\n    uses: docker://x\n    with: {dim: 3}\n"), &["executors[0] (a).with", "CMD"]),
            (flow("  - name: a\n    uses: docker://x\n    image: y\n"), &["not both"]),
            (flow("  - name: a\n    uses: docker://\n"), &["image reference"]),
            (flow("  - name: a\n    host: nowhere\n"), &["executors[0] (a).host", "HOST:PORT"]),
            (flow("  - name: a\n    host: https://\n"), &["HOST:PORT"]),
            (flow("  - name: a\n    host: []\n"), &["one to"]),
            (flow("  - name: a\n    token: t\n"), &["executors[0] (a).token", "host"]),
            (flow("  - name: a\n    host: b:8000\n    image: x\n"), &["executors[0] (a).image"]),
            (flow("  - name: a\n    host: b:8000\n    workspace: w\n"), &["executors[0] (a).workspace"]),
            (flow("  - name: a\n    host: [{host: b:8000, tokn: x}]\n"), &["executors[0]"]),
            (flow("  - name: a\n    host: b:8000\n    uses: X\n    py_modules: [../x.py]\n"), &["py_modules", "inside"]),
        ];
        for (yaml, wanted) in cases {
            let e = parse(yaml).unwrap_err();
            for w in *wanted {
                assert!(e.contains(w), "{yaml:?}: `{e}` lacks `{w}`");
            }
        }
    }
}
