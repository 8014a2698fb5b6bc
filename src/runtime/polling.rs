//! Polling: per endpoint, whether a request goes to ANY one shard or to ALL of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    Any,
    All,
}

/// `default` applies to every endpoint not listed in `endpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Polling {
    pub default: PollMode,
    pub endpoints: BTreeMap<String, PollMode>,
}

impl Default for Polling {
    /// Jina's defaults: `/index` any, `/search` all, everything else any.
    fn default() -> Self {
        Polling {
            default: PollMode::Any,
            endpoints: [("/index".to_string(), PollMode::Any), ("/search".to_string(), PollMode::All)].into(),
        }
    }
}

/// What a Flow YAML may write: `polling: all`, or `polling: {/search: all, "*": any}`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum PollingSpec {
    One(PollMode),
    PerEndpoint(BTreeMap<String, PollMode>),
}

impl Polling {
    pub fn from_spec(spec: Option<PollingSpec>) -> Result<Self, String> {
        Ok(match spec {
            None => Polling::default(),
            Some(PollingSpec::One(mode)) => Polling { default: mode, endpoints: BTreeMap::new() },
            Some(PollingSpec::PerEndpoint(map)) => {
                let mut polling = Polling::default();
                for (endpoint, mode) in map {
                    if endpoint == "*" {
                        polling.default = mode;
                    } else if endpoint.starts_with('/') {
                        polling.endpoints.insert(endpoint, mode);
                    } else {
                        return Err(format!("polling endpoint `{endpoint}` must start with `/` (or be `*`)"));
                    }
                }
                polling
            }
        })
    }

    pub fn mode(&self, endpoint: &str) -> PollMode {
        self.endpoints.get(endpoint).copied().unwrap_or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let p = Polling::default();
        assert_eq!(p.mode("/index"), PollMode::Any);
        assert_eq!(p.mode("/search"), PollMode::All);
        assert_eq!(p.mode("/foo"), PollMode::Any);
        let p = Polling::from_spec(Some(PollingSpec::One(PollMode::All))).unwrap();
        assert_eq!(p.mode("/index"), PollMode::All);
        let map = [("/index".to_string(), PollMode::All), ("*".to_string(), PollMode::All)].into();
        let p = Polling::from_spec(Some(PollingSpec::PerEndpoint(map))).unwrap();
        assert_eq!((p.mode("/index"), p.mode("/search"), p.mode("/x")), (PollMode::All, PollMode::All, PollMode::All));
        let bad = [("index".to_string(), PollMode::All)].into();
        assert!(Polling::from_spec(Some(PollingSpec::PerEndpoint(bad))).is_err());
    }
}
