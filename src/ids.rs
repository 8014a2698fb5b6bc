//! Object ids in the JinaD format: `<kind>-<uuid>`, e.g. `jworkspace-6b3f…`.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The kinds of objects the daemon tracks; the prefix of every id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Workspace,
    Flow,
    Pod,
    Pea,
}

impl Kind {
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Workspace => "jworkspace",
            Kind::Flow => "jflow",
            Kind::Pod => "jpod",
            Kind::Pea => "jpea",
        }
    }
}

const BUILD_SUFFIX: &str = "-build";

/// A validated object id. Parsing normalises the uuid to its dashed lower-case form, as JinaD did.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a valid {1} id (expected `{1}-<uuid>`)")]
pub struct InvalidId(pub String, pub &'static str);

impl ObjectId {
    pub fn mint(kind: Kind) -> Self {
        ObjectId(format!("{}-{}", kind.prefix(), Uuid::new_v4()))
    }

    /// Parse an id of the given kind. A bare uuid is accepted and prefixed (JinaD's `daemonize`).
    pub fn parse(kind: Kind, text: &str) -> Result<Self, InvalidId> {
        let invalid = || InvalidId(text.chars().take(100).collect(), kind.prefix());
        let uuid_part = match text.strip_prefix(kind.prefix()) {
            Some(rest) => rest.strip_prefix('-').ok_or_else(invalid)?,
            None => text,
        };
        // Exactly the hyphenated form (what the OpenAPI pattern declares); `Uuid` alone would also
        // take the simple, braced and URN forms.
        if uuid_part.len() != 36 {
            return Err(invalid());
        }
        let uuid = Uuid::from_str(uuid_part).map_err(|_| invalid())?;
        Ok(ObjectId(format!("{}-{}", kind.prefix(), uuid.hyphenated())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Docker tag of a workspace's image, `jworkspace:<uuid>`: what names the image's owner.
    pub fn image_tag(&self) -> String {
        format!("{}:{}", self.kind_prefix(), self.uuid_part())
    }

    /// The tag a build of a workspace writes, `jworkspace:<uuid>-build`. Only once the build has
    /// succeeded, under the row's lock, does the image also get [`ObjectId::image_tag`]: a build a
    /// crash left running in the engine can only ever move this tag, never the row's.
    pub fn build_tag(&self) -> String {
        format!("{}{BUILD_SUFFIX}", self.image_tag())
    }

    /// The workspace a `jworkspace:<uuid>` or `jworkspace:<uuid>-build` tag names, and whether it
    /// is the build tag.
    pub fn from_image_tag(tag: &str) -> Option<(ObjectId, bool)> {
        let rest = tag.strip_prefix(Kind::Workspace.prefix())?.strip_prefix(':')?;
        let (uuid, build) = match rest.strip_suffix(BUILD_SUFFIX) {
            Some(uuid) => (uuid, true),
            None => (rest, false),
        };
        ObjectId::parse(Kind::Workspace, uuid).ok().map(|id| (id, build))
    }

    /// The uuid part, used as the Docker image tag (`jworkspace:<uuid>`).
    pub fn uuid_part(&self) -> &str {
        self.0.split_once('-').map(|(_, u)| u).unwrap_or(&self.0)
    }

    pub fn kind_prefix(&self) -> &str {
        self.0.split_once('-').map(|(k, _)| k).unwrap_or(&self.0)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let id = ObjectId::mint(Kind::Workspace);
        assert_eq!(ObjectId::parse(Kind::Workspace, id.as_str()).unwrap(), id);
        assert_eq!(ObjectId::parse(Kind::Workspace, id.uuid_part()).unwrap(), id, "a bare uuid is prefixed");
        let simple = id.uuid_part().replace('-', "");
        assert!(ObjectId::parse(Kind::Workspace, &simple).is_err(), "only the form the spec declares");
        assert!(ObjectId::parse(Kind::Workspace, &format!("{{{}}}", id.uuid_part())).is_err());
        assert!(ObjectId::parse(Kind::Workspace, &format!("urn:uuid:{}", id.uuid_part())).is_err());
        assert!(ObjectId::parse(Kind::Workspace, "jflow-6b3f0b0e-6a57-4f6e-a0f5-0b8e6b1d2c3a").is_err());
        assert!(ObjectId::parse(Kind::Workspace, "jworkspace-nope").is_err());
        assert!(ObjectId::parse(Kind::Workspace, "../etc").is_err());
        assert_eq!(ObjectId::from_image_tag(&id.image_tag()), Some((id.clone(), false)));
        assert_eq!(ObjectId::from_image_tag(&id.build_tag()), Some((id.clone(), true)));
        assert_eq!(ObjectId::from_image_tag("jworkspace:nope-build"), None);
    }
}
