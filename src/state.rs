//! The life cycle every row goes through, and which moves are legal.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PENDING → ACTIVE | FAILED`; `ACTIVE | FAILED → PENDING` on an update; any live state → `DELETING`,
/// after which the row disappears (or, if something cannot be removed, `FAILED` with the reason). `DELETING` exists because removing Docker objects is background
/// work that must survive a restart like any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "UPPERCASE")]
#[sqlx(rename_all = "UPPERCASE")]
pub enum State {
    Pending,
    Active,
    Failed,
    Deleting,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Active => "ACTIVE",
            State::Failed => "FAILED",
            State::Deleting => "DELETING",
        }
    }

    /// Whether `self → to` is a legal transition.
    pub fn can_become(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Pending, Active)
                | (Pending, Failed)
                | (Active, Pending)
                | (Active, Failed)
                | (Failed, Pending)
                | (Pending | Active | Failed, Deleting)
                // A delete that cannot succeed says why; DELETE again retries it.
                | (Deleting, Failed)
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::State::*;

    #[test]
    fn transitions() {
        assert!(Pending.can_become(Active));
        assert!(Pending.can_become(Failed));
        assert!(Failed.can_become(Pending));
        assert!(!Failed.can_become(Active));
        assert!(!Deleting.can_become(Pending));
        assert!(!Deleting.can_become(Active));
        assert!(!Active.can_become(Active));
    }
}
