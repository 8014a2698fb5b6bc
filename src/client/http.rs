//! The HTTP side of every command that talks to a daemon (the CLI client, `jinad push`, `jinad
//! export --host`, remote pods): one place builds the HTTP clients, with the CA file that
//! verifies a daemon's TLS certificate, and turns the daemon's error bodies into messages.

use std::path::Path;
use std::time::Duration;

use reqwest::blocking::{Client, ClientBuilder, RequestBuilder, Response};
use serde::de::DeserializeOwned;

/// [`crate::error::ErrorBody`] as it comes over the wire.
#[derive(serde::Deserialize)]
struct WireError {
    code: String,
    message: String,
}

/// A daemon that does not answer within this is unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP client builder that trusts the certificates of `ca_file` (PEM, one or more) besides
/// the usual public roots: a daemon with a self-signed certificate or a private CA.
pub fn builder(ca_file: Option<&Path>) -> Result<ClientBuilder, String> {
    let mut builder = Client::builder().connect_timeout(CONNECT_TIMEOUT).no_proxy().use_rustls_tls();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("CA file {}: {e}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("CA file {}: {e}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!("CA file {}: no PEM certificate in it", path.display()));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder)
}

/// The innermost cause of an error: what a user can act on ("certificate signed by unknown
/// authority", "connection refused").
pub fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}

/// Why a request failed, for a person.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{url}: unreachable: {cause}")]
    Unreachable { url: String, cause: String },
    /// The daemon answered with an error body (`code` as a string: a newer daemon may know codes
    /// this binary does not).
    #[error("{code}: {message}")]
    Refused { status: u16, code: String, message: String },
    #[error("{url}: {status}: {text}")]
    Unexpected { url: String, status: u16, text: String },
}

/// Sends `request` with the bearer `token` and reads a JSON `T` from a 2xx answer.
pub fn call<T: DeserializeOwned>(request: RequestBuilder, token: Option<&str>) -> Result<T, CallError> {
    let response = send(request, token)?;
    let url = response.url().to_string();
    let status = response.status().as_u16();
    response.json::<T>().map_err(|e| CallError::Unexpected { url, status, text: format!("unexpected body: {}", root_cause(&e)) })
}

/// Sends `request` with the bearer `token`; a non-2xx answer is an error (with the daemon's
/// `{code, message}` when it has one).
pub fn send(request: RequestBuilder, token: Option<&str>) -> Result<Response, CallError> {
    let request = match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    let (client, request) = request.build_split();
    let request = request.map_err(|e| CallError::Unreachable { url: String::new(), cause: root_cause(&e) })?;
    let url = request.url().to_string();
    let response = client.execute(request).map_err(|e| {
        let mut cause = root_cause(&e);
        // What hyper says when an http:// request reaches a TLS port.
        if url.starts_with("http://") && cause.contains("invalid HTTP version") {
            cause.push_str(" (the daemon speaks TLS: use https://)");
        }
        CallError::Unreachable { url: url.clone(), cause }
    })?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        return Ok(response);
    }
    let text = response.text().unwrap_or_default();
    match serde_json::from_str::<WireError>(&text) {
        Ok(body) => Err(CallError::Refused { status, code: body.code, message: body.message }),
        Err(_) => Err(CallError::Unexpected { url, status, text: text.chars().take(500).collect() }),
    }
}
