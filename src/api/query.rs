//! Query parameters read strictly: given at most once, booleans exactly `true`/`false`.

use crate::error::{ApiError, ApiResult, Code};

/// A query parameter given at most once (rocket reads a repeated one as "not given").
pub fn single(uri: &rocket::http::uri::Origin<'_>, name: &str) -> ApiResult<Option<String>> {
    let mut values = uri.query().into_iter().flat_map(|q| q.segments()).filter(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::new(Code::BadRequest, format!("`{name}` is given more than once")));
    }
    Ok(first)
}

/// A boolean query parameter, strictly `true` or `false` (rocket's own parsing reads `follow=3`
/// as "not given").
pub fn strict_bool(uri: &rocket::http::uri::Origin<'_>, name: &str) -> ApiResult<Option<bool>> {
    match single(uri, name)?.as_deref() {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(v) => Err(ApiError::new(Code::BadRequest, format!("`{name}` must be `true` or `false`, not `{}`", v.chars().take(40).collect::<String>()))),
    }
}

