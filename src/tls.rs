//! HTTPS for the daemon's API and a Flow's gateway: a PEM certificate chain and its private key,
//! served by rocket's TLS (rustls). Clients verify it with the public roots or a CA file
//! (`--ca-file`, [`crate::client::http::builder`]).

use std::path::PathBuf;

use clap::Args;
use rocket::figment::Figment;

/// `--tls-cert` and `--tls-key` of `jinad flow` and `jinad gateway` (the daemon has its own, with
/// environment variables).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// PEM certificate chain: serve HTTPS (with `--tls-key`).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// Both files, checked readable and PEM, or neither.
    pub fn files(&self) -> Result<Option<(PathBuf, PathBuf)>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => {
                for (what, path, marker) in [("--tls-cert", cert, "CERTIFICATE"), ("--tls-key", key, "PRIVATE KEY")] {
                    let text = std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
                    if !text.contains("-----BEGIN ") || !text.contains(marker) {
                        return Err(format!("{what} {}: not a PEM file with a {marker}", path.display()));
                    }
                }
                Ok(Some((cert.clone(), key.clone())))
            }
            _ => Err("--tls-cert and --tls-key go together".into()),
        }
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The rocket configuration with TLS when both files are given.
    pub fn configure(&self, figment: Figment) -> Result<Figment, String> {
        Ok(match self.files()? {
            Some((cert, key)) => figment.merge(("tls.certs", cert)).merge(("tls.key", key)),
            None => figment,
        })
    }
}
