//! Bearer-token authentication of the whole API. With a token (`--token-file` / `JINAD_TOKEN`),
//! every request but `GET /` (liveness) and `GET /ready` (readiness) must carry
//! `Authorization: Bearer <token>`; any other is answered 401 `unauthorized`.
//!
//! One fairing rather than a guard per handler, so a route added later (Swagger UI and the
//! OpenAPI document included) cannot forget it: a request that fails the check is rewritten to
//! [`UNAUTHORIZED_PATH`], whose only route answers 401. The token is kept as its SHA-256 and
//! compared in constant time; it is never logged.

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::uri::Origin;
use rocket::http::Method;
use rocket::{get, routes, Data, Request, Route};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, Code};

/// Where a refused request is sent; not part of the public API.
pub const UNAUTHORIZED_PATH: &str = "/_jinad/unauthorized";

/// The OpenAPI name of the scheme.
pub const SCHEME: &str = "bearer";

pub struct BearerAuth {
    token_hash: [u8; 32],
}

impl BearerAuth {
    pub fn new(token: &str) -> Self {
        BearerAuth { token_hash: Sha256::digest(token.as_bytes()).into() }
    }

    /// Whether the `Authorization` header value carries the token (constant time in its content:
    /// both sides are hashed first, so neither length nor a matching prefix shows in the timing).
    pub fn accepts(&self, authorization: Option<&str>) -> bool {
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let Some(given) = authorization.and_then(|v| v.split_once(' ')).filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, t)| t) else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        given.iter().zip(self.token_hash.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Routes that answer without a token: liveness and readiness.
pub fn is_public(method: Method, path: &str) -> bool {
    matches!(method, Method::Get | Method::Head) && matches!(path, "/" | "/ready")
}

#[rocket::async_trait]
impl Fairing for BearerAuth {
    fn info(&self) -> Info {
        Info { name: "bearer token", kind: Kind::Request }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        if is_public(request.method(), request.uri().path().as_str()) || self.accepts(request.headers().get_one("Authorization")) {
            return;
        }
        if let Ok(uri) = Origin::parse(UNAUTHORIZED_PATH) {
            request.set_method(Method::Get);
            request.set_uri(uri);
        }
    }
}

#[get("/_jinad/unauthorized")]
fn unauthorized() -> ApiError {
    ApiError::new(Code::Unauthorized, "this daemon needs `Authorization: Bearer <token>` (the token of its --token-file)")
}

pub fn routes() -> Vec<Route> {
    routes![unauthorized]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_passes() {
        let auth = BearerAuth::new("s3cret-token-0123456789");
        assert!(auth.accepts(Some("Bearer s3cret-token-0123456789")));
        assert!(auth.accepts(Some("BEARER s3cret-token-0123456789")));
        for bad in [None, Some(""), Some("Bearer"), Some("Bearer "), Some("s3cret-token-0123456789"), Some("Basic s3cret-token-0123456789"), Some("Bearer s3cret-token-012345678"), Some("Bearer s3cret-token-01234567890")] {
            assert!(!auth.accepts(bad), "{bad:?}");
        }
        assert!(is_public(Method::Get, "/") && is_public(Method::Get, "/ready"));
        assert!(!is_public(Method::Post, "/") && !is_public(Method::Get, "/status") && !is_public(Method::Get, "/docs/"));
    }
}
