//! `jinad export compose|kubernetes` and `jinad push`: the command-line side of exports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use super::{compose, env_references, kubernetes, ExportOptions, Topology};
use crate::api::workspaces::WorkspaceView;
use crate::docker::containers::{Limits, RestartMode, RestartPolicy};
use crate::workspace::push::Pushed;

#[derive(Debug, Clone, Subcommand)]
pub enum ExportCommand {
    /// A Compose file (format 3.8) for `docker-compose up` or `docker stack deploy` (Swarm).
    Compose(ComposeArgs),
    /// Kubernetes manifests, one object per file, for `kubectl apply -f DIR`.
    Kubernetes(KubernetesArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Restart {
    /// Restart a container that exited with an error (Swarm, Compose).
    OnFailure,
    /// Leave an exited container stopped.
    Never,
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The Flow YAML.
    pub flow: PathBuf,
    /// An image holding the `jinad` binary and the Flow's files (a workspace image), or with
    /// `--host` the id of a workspace on that daemon (`jworkspace-…`): its image.
    #[arg(long)]
    pub image: String,
    /// The Flow YAML's path inside the image (default: `/workspace/` + its file name, where a
    /// workspace image holds its files).
    #[arg(long)]
    pub flow_path: Option<String>,
    /// A jinad daemon (`http(s)://HOST:PORT`) whose workspace `--image` names; its token comes
    /// from JINAD_TOKEN.
    #[arg(long)]
    pub host: Option<String>,
    /// PEM certificates that verify an `https://` `--host`.
    #[arg(long, env = "JINAD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// CPUs per container, e.g. `0.5`.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Bytes of memory per container.
    #[arg(long)]
    pub memory: Option<u64>,
    /// What the orchestrator does with a container that exits (Compose/Swarm; Kubernetes
    /// Deployments always restart).
    #[arg(long, value_enum, default_value = "on-failure")]
    pub restart: Restart,
    /// With `--restart on-failure`: at most this many restarts (1..=100; default: no limit).
    #[arg(long)]
    pub max_retries: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct ComposeArgs {
    #[command(flatten)]
    pub common: Common,
    /// The Compose file to write.
    pub out: PathBuf,
    /// The gateway's published port.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

#[derive(Debug, Clone, Args)]
pub struct KubernetesArgs {
    #[command(flatten)]
    pub common: Common,
    /// The directory to write the manifests into (created if missing; earlier jinad manifests in
    /// it are replaced, other files left alone).
    pub dir: PathBuf,
    #[arg(long, default_value = "jinad")]
    pub namespace: String,
}

#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// The workspace whose image to push (`jworkspace-…`).
    pub workspace: String,
    /// `REGISTRY[:PORT]/NAME[:TAG]`.
    pub reference: String,
    #[command(flatten)]
    pub connect: crate::client::ConnectArgs,
}

/// `--image`: an image reference, or a workspace's image on `--host`.
fn image(common: &Common) -> Result<String, String> {
    let Some(host) = &common.host else {
        if common.image.starts_with("jworkspace-") {
            return Err(format!("--image {}: a workspace id needs --host (the daemon that has it)", common.image));
        }
        return Ok(common.image.clone());
    };
    let id = crate::ids::ObjectId::parse(crate::ids::Kind::Workspace, &common.image).map_err(|e| format!("--image: {e}"))?;
    let connect = crate::client::ConnectArgs { host: host.clone(), token_file: None, ca_file: common.ca_file.clone() };
    let c = crate::client::Connection::open(&connect)?;
    let ws: WorkspaceView = c.call(c.get(&format!("/workspaces/{id}"))).map_err(|e| format!("{id} on {}: {e}", c.base))?;
    match (ws.state, ws.image_tag) {
        (crate::state::State::Active, Some(tag)) => Ok(tag),
        (state, _) => Err(format!("{} is {state}: it has no image yet", common.image)),
    }
}

fn topology(common: &Common) -> Result<Topology, String> {
    let yaml = std::fs::read_to_string(&common.flow).map_err(|e| format!("cannot read {}: {e}", common.flow.display()))?;
    let name = common.flow.file_name().map(|n| n.to_string_lossy().into_owned()).ok_or_else(|| format!("{}: not a file", common.flow.display()))?;
    let restart = match (common.restart, common.max_retries) {
        (Restart::Never, Some(_)) => return Err("--max-retries goes with --restart on-failure".into()),
        (_, Some(n)) if !(1..=100).contains(&n) => return Err("--max-retries: 1..=100".into()),
        (Restart::Never, None) => RestartPolicy { policy: RestartMode::Never, max_retries: None },
        (Restart::OnFailure, n) => RestartPolicy { policy: RestartMode::OnFailure, max_retries: n },
    };
    // `${{ ENV.X }}`: every container reads the YAML again, so it gets the values read here.
    let mut env = BTreeMap::new();
    for name in env_references(&yaml) {
        let value = std::env::var(&name).map_err(|_| format!("{}: the environment variable {name} is not set", common.flow.display()))?;
        env.insert(name, value);
    }
    let options = ExportOptions {
        image: image(common)?,
        flow_path: common.flow_path.clone().unwrap_or_else(|| format!("/workspace/{name}")),
        port: 0,
        limits: Limits { cpus: common.cpus, memory: common.memory },
        restart,
        env,
    };
    Topology::of(&yaml, &name, options).map_err(|e| e.0)
}

/// Writes `text` to `path` whole or not at all (a temporary file next to it, then a rename).
fn write_whole(path: &Path, text: &str) -> Result<(), String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // Manifests are read by others (kubectl, docker-compose run by a deploy user): not 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    tmp.persist(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

pub fn run(command: ExportCommand) -> Result<(), String> {
    match command {
        ExportCommand::Compose(args) => {
            if args.port == 0 {
                return Err("--port: 1..65535".into());
            }
            let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
            if same(&args.out, &args.common.flow) {
                return Err(format!("{}: the Compose file would overwrite the Flow YAML", args.out.display()));
            }
            let mut t = topology(&args.common)?;
            t.options.port = args.port;
            write_whole(&args.out, &compose::render(&t).map_err(|e| e.0)?)?;
            eprintln!("wrote {} ({} services, image {})", args.out.display(), t.services.len(), t.options.image);
            Ok(())
        }
        ExportCommand::Kubernetes(args) => {
            let t = topology(&args.common)?;
            let manifests = kubernetes::render(&t, &args.namespace).map_err(|e| e.0)?;
            std::fs::create_dir_all(&args.dir).map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
            let ours = |path: &Path| {
                path.extension().is_some_and(|e| e == "yaml")
                    && std::fs::read_to_string(path).is_ok_and(|text| text.starts_with("# jinad Flow `") && text.contains("generated by `jinad export kubernetes`"))
            };
            // A file of the user's with a manifest's name: stop before anything changes.
            if let Some(taken) = manifests.iter().map(|m| args.dir.join(&m.file)).find(|p| p.exists() && !ours(p)) {
                return Err(format!("{}: a file that is not a jinad manifest has a manifest's name; move it away", taken.display()));
            }
            // Manifests of an earlier export go: a service the Flow no longer has must not linger.
            for entry in std::fs::read_dir(&args.dir).map_err(|e| format!("cannot read {}: {e}", args.dir.display()))?.flatten() {
                let path = entry.path();
                if ours(&path) {
                    std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                }
            }
            for m in &manifests {
                write_whole(&args.dir.join(&m.file), &m.yaml)?;
            }
            eprintln!("wrote {} manifests to {} (namespace {}, image {})", manifests.len(), args.dir.display(), args.namespace, t.options.image);
            Ok(())
        }
    }
}

/// `jinad push`: asks the daemon to push a workspace's image; prints the pinned reference.
pub fn push(args: PushArgs) -> Result<(), String> {
    let id = crate::ids::ObjectId::parse(crate::ids::Kind::Workspace, &args.workspace).map_err(|e| e.to_string())?;
    let c = crate::client::Connection::open(&args.connect)?;
    let body = serde_json::json!({ "reference": args.reference });
    // A push may take long: no total timeout.
    let request = c.streaming(reqwest::Method::POST, &format!("/workspaces/{id}/push")).json(&body);
    let pushed: Pushed = c.call(request).map_err(|e| format!("push of {id}: {e}"))?;
    println!("{}", pushed.pinned);
    Ok(())
}
