//! `jinad workspaces|flows|pods|peas|events|gc|status`: a client of a daemon's API in the same
//! binary, with Docker-CLI habits (`ls`, `inspect`, `rm`, `logs -f`, ids on stdout, progress on
//! stderr). It reads and writes the server's own types (`WorkspaceView`, `DeploymentView`,
//! `EventView`, …), so the two cannot drift apart.

pub mod commands;
pub mod http;
pub mod output;
pub mod pack;
pub mod upload;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde::de::DeserializeOwned;

pub use http::CallError;

/// Where the daemon is and how to authenticate to it.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// The daemon: `http://HOST:PORT`, `https://HOST:PORT`, or `HOST:PORT` (http).
    #[arg(long = "host", short = 'H', env = "JINAD_HOST", default_value = "http://127.0.0.1:8000", global = true)]
    pub host: String,
    /// A file holding the daemon's API token (or set JINAD_TOKEN).
    #[arg(long, env = "JINAD_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// PEM certificates that verify the daemon's TLS certificate (a self-signed one, a private
    /// CA), besides the public roots.
    #[arg(long, env = "JINAD_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
}

/// A daemon's API.
pub struct Connection {
    /// `http(s)://host:port`, no trailing slash.
    pub base: String,
    token: Option<String>,
    /// For calls that answer at once.
    client: Client,
    /// Without a total timeout: uploads, log and event streams.
    streaming: Client,
}

/// `--host` as a base URL: `http(s)://HOST[:PORT]` (any case) or `HOST:PORT` (http); no path,
/// query or other scheme.
pub fn daemon_url(given: &str) -> Result<String, String> {
    let host = given.trim();
    let lower = host.to_ascii_lowercase();
    let with_scheme = if lower.starts_with("http://") || lower.starts_with("https://") {
        host.to_string()
    } else if host.contains("://") {
        return Err(format!("--host {given}: the daemon is http:// or https://"));
    } else {
        format!("http://{host}")
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|e| format!("--host {given}: {e}"))?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.host_str().is_none() {
        return Err(format!("--host {given}: give the daemon as http(s)://HOST:PORT, without a path or query"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// One API call that answers at once.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Connection {
    pub fn open(args: &ConnectArgs) -> Result<Self, String> {
        let base = daemon_url(&args.host)?;
        let token = match &args.token_file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| format!("--token-file {}: {e}", path.display()))?.trim().to_string()),
            None => std::env::var("JINAD_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
        };
        let build = |timeout: Option<Duration>| -> Result<Client, String> {
            http::builder(args.ca_file.as_deref())?.timeout(timeout).build().map_err(|e| format!("HTTP client: {e}"))
        };
        Ok(Connection { base, token, client: build(Some(CALL_TIMEOUT))?, streaming: build(None)? })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(self.url(path))
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.client.delete(self.url(path))
    }

    /// A request without a total timeout (uploads, streams).
    pub fn streaming(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.streaming.request(method, self.url(path))
    }

    /// Sends and reads the JSON answer as `T`.
    pub fn call<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, CallError> {
        http::call(request, self.token.as_deref())
    }

    /// Sends; the raw answer of a 2xx.
    pub fn send(&self, request: RequestBuilder) -> Result<Response, CallError> {
        http::send(request, self.token.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::daemon_url;

    #[test]
    fn daemon_urls() {
        assert_eq!(daemon_url("127.0.0.1:8000").unwrap(), "http://127.0.0.1:8000");
        assert_eq!(daemon_url("HTTPS://Daemon.example:8443/").unwrap(), "https://daemon.example:8443");
        for bad in ["ftp://x", "http://h:1/api", "http://h:1?x=1", "http://", "http://u@h:1"] {
            assert!(daemon_url(bad).is_err(), "{bad}");
        }
    }
}
