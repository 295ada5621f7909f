//! Sign-ins with GitHub under way: the OAuth `state` of each, remembered
//! for ten minutes and usable once. A sign-in (not a link) is also bound
//! to the browser that began it by a cookie, so nobody can finish a
//! sign-in of their own in someone else's browser (login CSRF).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// How long a sign-in may take, in milliseconds.
pub const STATE_TTL_MS: i64 = 10 * 60 * 1000;
/// Most sign-ins under way at once (older ones are forgotten first).
const MAX_PENDING: usize = 10_000;

/// What a finished sign-in does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Sign in (or up); then go to `return_to` (a path of this server).
    SignIn {
        /// Where the browser goes after.
        return_to: String,
    },
    /// Link the account to this signed-in user.
    Link {
        /// The user.
        user_id: String,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    purpose: Purpose,
    expires_at: i64,
}

/// The sign-ins under way. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SignIns {
    pending: Arc<Mutex<HashMap<String, Pending>>>,
}

impl SignIns {
    /// Begin one: its new state.
    pub fn begin(&self, purpose: Purpose) -> String {
        let state = format!("{:032x}", rand::random::<u128>());
        let now = canopy_protocol::unix_ms_now();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, p| p.expires_at > now);
        if pending.len() >= MAX_PENDING
            && let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.expires_at)
                .map(|(k, _)| k.clone())
        {
            pending.remove(&oldest);
        }
        pending.insert(
            state.clone(),
            Pending {
                purpose,
                expires_at: now + STATE_TTL_MS,
            },
        );
        state
    }

    /// Finish one: what it was for, if `state` is known and fresh (it is
    /// forgotten either way).
    pub fn finish(&self, state: &str) -> Option<Purpose> {
        let now = canopy_protocol::unix_ms_now();
        let found = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(state)?;
        (found.expires_at > now).then_some(found.purpose)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn states_are_used_once() {
        let s = SignIns::default();
        let state = s.begin(Purpose::Link {
            user_id: "usr_a".into(),
        });
        assert_eq!(state.len(), 32);
        assert!(s.finish("nope").is_none());
        assert_eq!(
            s.finish(&state),
            Some(Purpose::Link {
                user_id: "usr_a".into()
            })
        );
        assert!(s.finish(&state).is_none());
    }
}
