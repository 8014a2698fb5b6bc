//! `host:` of a Flow YAML executor: one jinad daemon (`HOST:PORT`), or a list of them to spread a
//! pod's peas over; each with the pod's `token:` or its own (`{host: …, token: …}`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::spec::MAX_PEAS_PER_POD;
use crate::runtime::pod::RemoteHost;

// `Many` first: serde builds a struct from a sequence too, so `[a, b]` would otherwise read as
// one `{host: a, token: b}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum HostsYaml {
    Many(Vec<HostYaml>),
    One(HostYaml),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum HostYaml {
    Addr(String),
    WithToken(HostWithToken),
}

#[derive(Debug)]
pub struct HostWithToken {
    host: String,
    token: Option<String>,
}

/// Only from a mapping `{host, token}` (never from a sequence, which serde would allow).
impl<'de> Deserialize<'de> for HostWithToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            host: String,
            token: Option<String>,
        }
        let map = BTreeMap::<String, Value>::deserialize(d)?;
        let Fields { host, token } = serde_json::from_value(Value::Object(map.into_iter().collect())).map_err(serde::de::Error::custom)?;
        Ok(HostWithToken { host, token })
    }
}

/// The daemons of a `host:` (one, or a list), each `HOST:PORT` (or `http://HOST:PORT`), with the
/// entry's own `token` or else the pod's.
pub fn remote_hosts(hosts: HostsYaml, token: Option<&str>) -> Result<Vec<RemoteHost>, String> {
    let items = match hosts {
        HostsYaml::One(one) => vec![one],
        HostsYaml::Many(list) => list,
    };
    if items.is_empty() || items.len() > MAX_PEAS_PER_POD {
        return Err(format!("give one to {MAX_PEAS_PER_POD} hosts"));
    }
    items
        .into_iter()
        .map(|item| {
            let (addr, own) = match item {
                HostYaml::Addr(addr) => (addr, None),
                HostYaml::WithToken(HostWithToken { host, token }) => (host, token),
            };
            let token = own.or_else(|| token.map(str::to_string)).filter(|t| !t.is_empty());
            Ok(RemoteHost { api: remote_api(&addr)?, token })
        })
        .collect()
}

/// `HOST:PORT` or `http://HOST:PORT` → `http://HOST:PORT`; `https://HOST:PORT` stays (a daemon
/// with `--tls-cert`, verified with the public roots or `jinad flow --ca-file`).
fn remote_api(addr: &str) -> Result<String, String> {
    let (scheme, rest) = match addr.strip_prefix("https://") {
        Some(rest) => ("https", rest),
        None => ("http", addr.strip_prefix("http://").unwrap_or(addr)),
    };
    let bare = rest.trim_end_matches('/');
    let ok = bare.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
    });
    if !ok {
        return Err(format!("`{addr}` is not HOST:PORT (a jinad daemon's API)"));
    }
    Ok(format!("{scheme}://{bare}"))
}

