//! Identity and access: who a caller is (API tokens, sync tickets) and what
//! they may do with each feature (memberships). The HTTP layer and the sync
//! share policy both ask here; nothing else decides access.

pub mod members;
pub mod secret;
pub mod ticket;
pub mod users;

use serde::Serialize;

pub use members::{Members, Role};
pub use secret::ServerKey;
pub use ticket::{TicketClaims, Tickets};
pub use users::{NewUser, TokenInfo, User, Users};

use crate::db::DbError;

/// Identity and access errors.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, unknown, revoked or disabled credentials. One
    /// variant on purpose: the caller learns nothing from the difference.
    #[error("missing or invalid credentials")]
    BadCredentials,
    /// A sync ticket that is malformed, tampered with or already used.
    #[error("invalid sync ticket")]
    BadTicket,
    /// A sync ticket past its expiry (or from before a restart).
    #[error("expired sync ticket")]
    TicketExpired,
    /// Input the caller should fix.
    #[error("{0}")]
    Invalid(String),
    /// Something with that name exists.
    #[error("{0}")]
    Conflict(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The server key could not be loaded.
    #[error("server key: {0}")]
    Key(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What a token may act as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenScope {
    /// A person, with their memberships.
    User,
    /// A sandbox's sidecar: role `agent` on one feature, one session.
    Agent {
        /// The feature it works on.
        feature_id: String,
        /// The session it runs.
        session_id: String,
    },
}

impl TokenScope {
    fn as_str(&self) -> &'static str {
        match self {
            TokenScope::User => "user",
            TokenScope::Agent { .. } => "agent",
        }
    }

    fn from_columns(scope: &str, feature: Option<String>, session: Option<String>) -> Self {
        match (scope, feature, session) {
            ("agent", Some(feature_id), Some(session_id)) => TokenScope::Agent {
                feature_id,
                session_id,
            },
            // An agent row without its scope cannot act as anyone else: the
            // schema's CHECK keeps this from happening; treat it as a user
            // token of the same (sandbox) user, who has no memberships.
            _ => TokenScope::User,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `usr_…`
    pub user_id: String,
    /// Short name.
    pub handle: String,
    /// Display name.
    pub display_name: String,
    /// Email for git attribution.
    pub email: Option<String>,
    /// The token used.
    pub token_id: String,
    /// What the token may act as.
    pub scope: TokenScope,
}

/// Peer ids of people's sync connections: `u:<user_id>:<suffix>`. The
/// server chooses the suffix (or accepts one the user's client reuses across
/// reconnects), and pins the connection to the whole id.
pub fn user_peer_prefix(user_id: &str) -> String {
    format!("u:{user_id}:")
}

/// The user behind a peer id the server issued, if it is a person's.
pub fn user_of_peer(peer_id: &str) -> Option<&str> {
    match identify_peer(peer_id)? {
        PeerIdentity::User(u) => Some(u),
        PeerIdentity::Agent { .. } => None,
    }
}

/// Peer ids of sandbox sidecars: `a:<feature_id>:<session_id>:<suffix>`.
/// Only an agent token scoped to that feature and session gets one.
pub fn agent_peer_prefix(feature_id: &str, session_id: &str) -> String {
    format!("a:{feature_id}:{session_id}:")
}

/// Who a server-issued peer id stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerIdentity<'a> {
    /// A person.
    User(&'a str),
    /// A session's agent (its sandbox sidecar).
    Agent {
        /// The feature it works on.
        feature_id: &'a str,
        /// The session it runs.
        session_id: &'a str,
    },
}

/// Parse a peer id the server issued (`u:…` or `a:…`).
pub fn identify_peer(peer_id: &str) -> Option<PeerIdentity<'_>> {
    if let Some(rest) = peer_id.strip_prefix("u:") {
        let (user, suffix) = rest.split_once(':')?;
        return (!user.is_empty() && !suffix.is_empty()).then_some(PeerIdentity::User(user));
    }
    let rest = peer_id.strip_prefix("a:")?;
    let mut parts = rest.splitn(3, ':');
    let (feature_id, session_id, suffix) = (parts.next()?, parts.next()?, parts.next()?);
    (!feature_id.is_empty() && !session_id.is_empty() && !suffix.is_empty()).then_some(
        PeerIdentity::Agent {
            feature_id,
            session_id,
        },
    )
}

/// The name a peer writes under: its user id, or `agent:<session_id>`.
pub fn author_of_peer(peer_id: &str) -> Option<String> {
    Some(match identify_peer(peer_id)? {
        PeerIdentity::User(u) => u.to_owned(),
        PeerIdentity::Agent { session_id, .. } => format!("agent:{session_id}"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_name_their_user() {
        assert_eq!(user_of_peer("u:usr_abc:x1"), Some("usr_abc"));
        assert_eq!(
            user_of_peer(&format!("{}zz", user_peer_prefix("usr_q"))),
            Some("usr_q")
        );
        for bad in [
            "",
            "u:",
            "u::x",
            "u:usr_a:",
            "usr_a",
            "a:ses_1:x",
            "storage-server",
        ] {
            assert_eq!(user_of_peer(bad), None, "{bad}");
        }
        let agent = format!("{}x1", agent_peer_prefix("ftr_a", "ses_b"));
        assert_eq!(
            identify_peer(&agent),
            Some(PeerIdentity::Agent {
                feature_id: "ftr_a",
                session_id: "ses_b"
            })
        );
        assert_eq!(user_of_peer(&agent), None);
        assert_eq!(author_of_peer(&agent).as_deref(), Some("agent:ses_b"));
        assert_eq!(author_of_peer("u:usr_q:z").as_deref(), Some("usr_q"));
        for bad in ["a:", "a:ftr_a:ses_b:", "a::ses_b:x", "a:ftr_a::x"] {
            assert_eq!(identify_peer(bad), None, "{bad}");
        }
    }
}
