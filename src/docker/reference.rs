//! Image references as the engine reads them: `[REGISTRY[:PORT]/]PATH[:TAG][@sha256:HEX]`,
//! checked by Docker's own grammar so a bad one is refused here with a reason, not by the engine
//! (or a cluster) later.

/// A checked reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry host (with its port), when the first part names one.
    pub registry: Option<String>,
    /// `registry/path` (the repository, as tagged and pushed).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// A path component: lower-case letters and digits, separated by `.`, `_`, `__` or dashes.
fn component_ok(part: &str) -> bool {
    let bytes = part.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        if c.is_ascii_alphanumeric() {
            // An upper-case letter.
            return false;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let sep = &part[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

fn registry_ok(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let labels_ok = !host.is_empty()
        && host.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !l.starts_with('-') && !l.ends_with('-'));
    labels_ok && port.is_none_or(|p| p.chars().all(|c| c.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// Parses `reference`; `registry_required`: a reference without a registry host would go to
/// Docker Hub (refused for pushes).
pub fn parse(reference: &str, registry_required: bool) -> Result<Reference, String> {
    let bad = |why: &str| Err(format!("`{}`: {why}", reference.chars().take(120).collect::<String>()));
    if reference.is_empty() || reference.len() > 255 {
        return bad("empty or longer than 255 characters");
    }
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => {
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
                return bad("a digest is `sha256:` and 64 lower-case hex digits");
            }
            (name, Some(digest.to_string()))
        }
        None => (reference, None),
    };
    let (repository, tag) = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (name, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty() && tag.len() <= 128 && tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) && !tag.starts_with(['.', '-']);
        if !ok {
            return bad("a tag is at most 128 letters, digits and `._-`, not starting with `.` or `-`");
        }
    }
    let (registry, path) = match repository.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (Some(first), rest),
        _ => (None, repository),
    };
    match registry {
        Some(r) if !registry_ok(r) => return bad("not a valid registry HOST[:PORT] (port 1-65535)"),
        None if registry_required => return bad("no registry: the first part must be a registry host (with a `.` or a `:PORT`, or `localhost`)"),
        _ => {}
    }
    if !path.split('/').all(component_ok) {
        return bad("a repository is lower-case letters and digits separated by `.`, `_`, `__` or `-`, its parts by `/`");
    }
    Ok(Reference { registry: registry.map(str::to_string), repository: repository.to_string(), tag: tag.map(str::to_string), digest })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn docker_grammar() {
        let r = parse("127.0.0.1:5000/search:v1", true).unwrap();
        assert_eq!((r.repository.as_str(), r.tag.as_deref()), ("127.0.0.1:5000/search", Some("v1")));
        assert_eq!(parse("reg.example.com/team/a__b-c.d", true).unwrap().tag, None);
        assert!(parse("localhost/a:b", true).is_ok());
        assert!(parse("search:v1", false).is_ok());
        let digest = format!("r.io/a@sha256:{}", "a".repeat(64));
        assert_eq!(parse(&digest, true).unwrap().digest.unwrap().len(), 71);
        for bad in [
            "search:v1", "127.0.0.1:5000/Search:v1", "127.0.0.1:5000/a:-x", "r.io/a@sha256:00", "", "r.io/a b:c", "r.io//a", "r.io/x..y",
            "r.io/x-", "r.io/a___b", "-reg.io/a", "[::1]/a", "127.0.0.1:99999/x", "127.0.0.1:0/x", "jworkspace-../x", "r.io/a:",
        ] {
            assert!(parse(bad, true).is_err(), "{bad}");
        }
    }
}
