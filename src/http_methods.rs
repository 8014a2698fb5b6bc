//! 405 instead of 404: which methods a path allows, from the routes rocket has mounted. Shared by
//! the daemon's API and the Flow gateway, whose catchers answer 405 with `Allow` when the path
//! exists with other methods.

use rocket::http::{Method, Status};
use rocket::Request;

/// If the catcher's `status` for `request` should be a 405, the methods to list in `Allow`:
/// - 404: no route matched, but the path exists with other methods;
/// - 400 on a GET: rocket hands a request with a method it does not know (`QUERY`, `FOO`) to the
///   catchers as a 400 GET (its "salvaged" request); our handlers answer their own errors, so a
///   400 reaching the catcher for a known path means exactly that.
pub fn not_allowed(status: Status, request: &Request<'_>) -> Option<Vec<String>> {
    let candidate = status.code == 404 || (status.code == 400 && request.method() == Method::Get);
    let allowed = if candidate { allowed_methods(request) } else { Vec::new() };
    (!allowed.is_empty()).then_some(allowed)
}

/// The methods of the mounted routes whose path template matches the request's path.
pub fn allowed_methods(request: &Request<'_>) -> Vec<String> {
    let path: Vec<&str> = request.uri().path().segments().collect();
    let mut methods: Vec<String> = request
        .rocket()
        .routes()
        .filter(|route| template_matches(route.uri.path(), &path))
        .map(|route| route.method.as_str().to_string())
        .collect();
    if methods.iter().any(|m| m == "GET") {
        methods.push("HEAD".into());
    }
    methods.sort();
    methods.dedup();
    methods
}

/// Whether a rocket path template (`/workspaces/<id>`, `/docs/<_..>`) matches the segments.
fn template_matches(template: &str, path: &[&str]) -> bool {
    let parts: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    let mut i = 0;
    for part in &parts {
        if part.starts_with('<') && part.ends_with("..>") {
            return true;
        }
        let Some(segment) = path.get(i) else { return false };
        if !(part.starts_with('<') && part.ends_with('>')) && part != segment {
            return false;
        }
        i += 1;
    }
    i == path.len()
}

#[cfg(test)]
mod tests {
    use super::template_matches;

    #[test]
    fn templates() {
        assert!(template_matches("/workspaces/<id>", &["workspaces", "x"]));
        assert!(!template_matches("/workspaces/<id>", &["workspaces"]));
        assert!(!template_matches("/workspaces/<id>", &["workspaces", "x", "logs"]));
        assert!(template_matches("/docs/<_..>", &["docs", "a", "b"]));
        assert!(template_matches("/", &[]));
    }
}
