//! The command line: one `Config` for `jinad serve`, validated once at start-up.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "jinad", version, about = "jinad: builds uploaded projects into Docker images and runs Flows, Pods and Peas")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: REST API, SQLite store, build workers and reconciliation.
    Serve(Config),
    /// Print the OpenAPI document of the daemon's REST API (what openapi/openapi.json holds).
    Openapi {
        /// Print the Flow gateway's API instead (what openapi/gateway.json holds).
        #[arg(long)]
        gateway: bool,
    },
    /// Run a Flow YAML locally: every pod in this process, behind an HTTP gateway. No daemon, no Docker.
    Flow(crate::runtime::roles::FlowArgs),
    /// Run one pod (head, shards × replicas, tail) in this process, wired by addresses.
    Pod(crate::runtime::roles::PodArgs),
    /// Run one pea (a pod without replicas or shards).
    Pea(crate::runtime::roles::PodArgs),
    /// Run the HTTP gateway alone, in front of pods that run elsewhere.
    Gateway(crate::runtime::roles::GatewayArgs),
    /// Measure the runtime against the figures of DESIGN.md §4 and print one table.
    Bench(crate::runtime::bench::BenchArgs),
    /// Write a Flow as manifests for Docker Compose / Swarm or Kubernetes.
    #[command(subcommand)]
    Export(crate::export::command::ExportCommand),
    /// Push a workspace's image to a registry (through the daemon that built it).
    Push(crate::export::command::PushArgs),
    /// Client: upload, list, inspect, delete workspaces and follow their builds.
    #[command(visible_alias = "ws")]
    Workspaces(crate::client::commands::ClientArgs<crate::client::commands::WorkspaceCommand>),
    /// Client: start, list, inspect, delete flows and follow their logs.
    Flows(crate::client::commands::ClientArgs<crate::client::commands::FlowCommand>),
    /// Client: list, inspect, delete pods and follow their logs.
    Pods(crate::client::commands::ClientArgs<crate::client::commands::ObjectCommand>),
    /// Client: list, inspect, delete peas and follow their logs.
    Peas(crate::client::commands::ClientArgs<crate::client::commands::ObjectCommand>),
    /// Client: the timeline of state changes (`GET /events`), `-f` to follow it.
    Events(crate::client::commands::EventArgs),
    /// Client: the daemon's status (`GET /status`).
    Status(crate::client::commands::StatusArgs),
    /// Client: collect the daemon's build cache now (`POST /gc`) and say what it freed.
    Gc(crate::client::commands::GcArgs),
    /// Check a node (`tcp://HOST:PORT`, its control port) or a gateway (`http://…/ready`): exit 0
    /// when ready. What exported containers' healthchecks run.
    Probe(crate::runtime::probe::ProbeArgs),
}

impl Command {
    /// Whether the command logs through `tracing` (the daemon and the runtime roles do; the
    /// client commands and the one-shot printers speak for themselves).
    pub fn logs(&self) -> bool {
        !matches!(
            self,
            Command::Openapi { .. }
                | Command::Probe(_)
                | Command::Workspaces(_)
                | Command::Flows(_)
                | Command::Pods(_)
                | Command::Peas(_)
                | Command::Events(_)
                | Command::Status(_)
                | Command::Gc(_)
        )
    }
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Directory for everything the daemon keeps: the SQLite file, workspaces, build logs, temp files.
    #[arg(long, env = "JINAD_DATA_DIR", default_value = "/tmp/jinad")]
    pub data_dir: PathBuf,

    /// Address to bind. The default keeps the API on this machine.
    #[arg(long, env = "JINAD_BIND", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port to listen on.
    #[arg(long, env = "JINAD_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Base image for a workspace; `{python}` is replaced by the `.jinad` `python` setting.
    /// Air-gapped hosts use the image from docker/build-base-image.sh: `jinad/python:{python}-bookworm`.
    #[arg(long, env = "JINAD_BASE_IMAGE_TEMPLATE", default_value = "python:{python}-slim")]
    pub base_image_template: String,

    /// Largest accepted upload (the whole multipart body), e.g. `100MiB`, `512k`, `1000000`.
    #[arg(long, env = "JINAD_MAX_UPLOAD_SIZE", default_value = "100MiB", value_parser = parse_size)]
    pub max_upload_size: u64,

    /// Largest total size of the files an upload unpacks to (archives included), against decompression bombs.
    #[arg(long, env = "JINAD_MAX_UNPACKED_SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub max_unpacked_size: u64,

    /// Most files one upload may unpack to.
    #[arg(long, env = "JINAD_MAX_UNPACKED_FILES", default_value_t = 100_000)]
    pub max_unpacked_files: u64,

    /// Docker engine address (`unix:///var/run/docker.sock`, `tcp://host:2375`); default: DOCKER_HOST or the local socket.
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,

    /// Most parts (files) one multipart upload may have.
    #[arg(long, env = "JINAD_MAX_UPLOAD_PARTS", default_value_t = 1000)]
    pub max_upload_parts: usize,

    /// Largest build log kept per workspace; above it the head and the tail are kept.
    #[arg(long, env = "JINAD_MAX_BUILD_LOG", default_value = "4MiB", value_parser = parse_size)]
    pub max_build_log: u64,

    /// IPv4 range the workspace networks get their subnets from (Docker's default pools hold ~30).
    #[arg(long, env = "JINAD_NETWORK_POOL", default_value = "10.200.0.0/14")]
    pub network_pool: String,

    /// Prefix length of each workspace subnet cut from `--network-pool` (24: 254 addresses each).
    #[arg(long, env = "JINAD_NETWORK_PREFIX", default_value_t = 24)]
    pub network_prefix: u8,

    /// How many builds and deletions run at once.
    #[arg(long, env = "JINAD_WORKERS", default_value_t = 2)]
    pub workers: usize,

    /// Seconds between two reconciliations of the rows with what Docker really has.
    #[arg(long, env = "JINAD_RECONCILE_INTERVAL", default_value_t = 30)]
    pub reconcile_interval: u64,

    /// How many flow/pod/pea starts and stops run at once (apart from builds: a container start
    /// never waits behind a long pip install).
    #[arg(long, env = "JINAD_CONTAINER_WORKERS", default_value_t = 4)]
    pub container_workers: usize,

    /// Seconds a flow, pod or pea has to become ready before it is FAILED `start_timeout`.
    #[arg(long, env = "JINAD_START_TIMEOUT", default_value_t = 60)]
    pub start_timeout: u64,

    /// Host address the ports of flows, pods and peas are published on. Default: 127.0.0.1 when
    /// the API is bound to loopback, else the API's bind address (0.0.0.0: every interface).
    #[arg(long, env = "JINAD_PUBLISH_IP")]
    pub publish_ip: Option<IpAddr>,

    /// The host name or address reported for published ports (`gateway_url`, `ports`), so that
    /// other machines can reach them. Default: the publish address, or, when that is 0.0.0.0, the
    /// host the request reached the daemon at (its `Host` header).
    #[arg(long, alias = "public-host", env = "JINAD_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,

    /// A file holding the API token (or set JINAD_TOKEN). With a token, every route but `GET /`
    /// and `GET /ready` needs `Authorization: Bearer <token>`. Required when `--host` is not a
    /// loopback address.
    #[arg(long, env = "JINAD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Longest lease a pod or pea may ask for (`lease_seconds`), in seconds.
    #[arg(long, env = "JINAD_MAX_LEASE", default_value_t = 86_400)]
    pub max_lease: u64,

    /// PEM certificate chain: serve the API over HTTPS (with `--tls-key`). Clients of a private
    /// CA or a self-signed certificate pass it as `--ca-file` / `JINAD_CA_FILE`.
    #[arg(long, env = "JINAD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "JINAD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Largest the build cache may grow (runtime images of older binaries, layers nothing uses),
    /// e.g. `10GiB`; `0` turns the policy off. Evicts least recently used first, never what a
    /// workspace, a container or a running build uses.
    #[arg(long, env = "JINAD_CACHE_MAX_SIZE", default_value = "10GiB", value_parser = parse_size)]
    pub cache_max_size: u64,

    /// How long `GET /events` keeps a state change (`90s`, `30m`, `12h`, `7d`, or seconds; `0`
    /// keeps none past the next minute's pruning).
    #[arg(long, env = "JINAD_EVENT_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub event_retention: u64,

    /// Longest a `GET /events?follow=true` stream stays open, in seconds (then the client
    /// reconnects with `Last-Event-ID`, as SSE clients do); bounds what one connection holds.
    #[arg(long, env = "JINAD_EVENT_FOLLOW_MAX", default_value = "1h", value_parser = parse_duration)]
    pub event_follow_max: u64,
}

/// Shortest token accepted: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 16;

impl Config {
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("jinad.sqlite")
    }
    pub fn workspaces_dir(&self) -> PathBuf {
        self.data_dir.join("workspaces")
    }
    /// Where published ports listen.
    pub fn publish_ip(&self) -> IpAddr {
        match self.publish_ip {
            Some(ip) => ip,
            None if self.host.is_loopback() => IpAddr::from([127, 0, 0, 1]),
            None => self.host,
        }
    }

    /// The host in `gateway_url` and in published addresses, for a request that reached the
    /// daemon at `reached_at` (the host of its `Host` header, if any).
    pub fn advertised_host(&self, reached_at: Option<&str>) -> String {
        let ip = self.publish_ip();
        match (&self.advertise_host, reached_at) {
            (Some(host), _) => host.clone(),
            (None, _) if !ip.is_unspecified() => ip.to_string(),
            (None, Some(host)) if !host.is_empty() => host.to_string(),
            (None, _) => "127.0.0.1".to_string(),
        }
    }

    /// The API token: `--token-file`, else `JINAD_TOKEN`; `None` without either. A daemon bound
    /// to anything but loopback refuses to start without one.
    pub fn api_token(&self) -> Result<Option<String>, String> {
        let token = match &self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("--token-file {}: {e}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var("JINAD_TOKEN").ok().map(|t| t.trim().to_string()),
        };
        match token {
            Some(t) if t.len() < MIN_TOKEN_LEN => Err(format!("the API token must be at least {MIN_TOKEN_LEN} characters")),
            Some(t) if t.chars().any(|c| c.is_control() || c.is_whitespace()) => Err("the API token must not hold spaces or control characters".into()),
            None if !self.host.is_loopback() => Err(format!(
                "--host {} is not a loopback address: give the API a token (--token-file FILE or JINAD_TOKEN), or bind 127.0.0.1",
                self.host
            )),
            other => Ok(other),
        }
    }
    /// The TLS files, as the gateway's options take them.
    pub fn tls(&self) -> crate::tls::TlsArgs {
        crate::tls::TlsArgs { tls_cert: self.tls_cert.clone(), tls_key: self.tls_key.clone() }
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }
    /// The network pool, checked.
    pub fn network_pool(&self) -> Result<crate::network_pool::Pool, String> {
        crate::network_pool::Pool::new(&self.network_pool, self.network_prefix).map_err(|e| format!("--network-pool: {e}"))
    }
}

/// `123`, `10k`, `10KiB`, `5M`, `5MB`, `1GiB` (binary multiples; case-insensitive).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("`{text}` is not a size"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use k, M or G)")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("`{text}` is too large"))
}

/// `45`, `90s`, `30m`, `12h`, `7d`: a duration in seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("`{text}` is not a duration (say 90s, 30m, 12h or 7d)"))?;
    let factor: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown duration unit `{other}` (use s, m, h or d)")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_size};

    #[test]
    fn durations() {
        assert_eq!(parse_duration("45"), Ok(45));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(parse_duration("7w").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("1T").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
