//! Ids of the things inside a Feature document.
//!
//! An id is a short type prefix and 20 random characters, for example
//! `ses_k3v7q2m4x5c6b7n2a3p4`. The prefix makes ids self-describing in logs,
//! URLs and support requests, and lets the server refuse an id of the wrong
//! kind before it looks anything up. 20 characters of base32 carry 100 bits,
//! so ids minted concurrently by offline clients do not collide.
//!
//! Canopy generates the random part from the lowercase RFC 4648 base32
//! alphabet (`a-z`, `2-7`). Validation accepts any lowercase ASCII letter or
//! digit, so a JS client may mint ids with `Math.random().toString(36)` or a
//! base36 encoder: still URL-safe, fixed length, and cheap to check.

use rand::Rng;

/// Prefix of feature ids.
pub const FEATURE_PREFIX: &str = "ftr_";
/// Prefix of session ids.
pub const SESSION_PREFIX: &str = "ses_";
/// Prefix of queue entry ids.
pub const QUEUE_ENTRY_PREFIX: &str = "q_";
/// Prefix of learning ids.
pub const LEARNING_PREFIX: &str = "lrn_";
/// Prefix of decision ids.
pub const DECISION_PREFIX: &str = "dec_";

/// Number of random characters after the prefix.
pub const RANDOM_LEN: usize = 20;

/// Longest accepted user id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 128;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A new random id with the given prefix.
pub fn new_id(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut id = String::with_capacity(prefix.len() + RANDOM_LEN);
    id.push_str(prefix);
    // 256 is a multiple of 32, so masking a random byte is unbiased.
    id.extend((0..RANDOM_LEN).map(|_| char::from(ALPHABET[usize::from(rng.random::<u8>() & 31)])));
    id
}

/// A new feature id (`ftr_…`).
pub fn new_feature_id() -> String {
    new_id(FEATURE_PREFIX)
}

/// A new session id (`ses_…`).
pub fn new_session_id() -> String {
    new_id(SESSION_PREFIX)
}

/// A new queue entry id (`q_…`).
pub fn new_queue_entry_id() -> String {
    new_id(QUEUE_ENTRY_PREFIX)
}

/// A new learning id (`lrn_…`).
pub fn new_learning_id() -> String {
    new_id(LEARNING_PREFIX)
}

/// A new decision id (`dec_…`).
pub fn new_decision_id() -> String {
    new_id(DECISION_PREFIX)
}

/// Whether `s` is `prefix` followed by exactly [`RANDOM_LEN`] lowercase ASCII
/// letters or digits. Use it on every id that arrives from a client.
pub fn is_valid_id(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == RANDOM_LEN
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Whether `s` can be a user id: 1 to [`MAX_USER_ID_BYTES`] bytes with no
/// whitespace or control characters. User ids are minted by the server's
/// identity layer, not by this crate, so only their shape is checked.
pub fn is_valid_user_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_USER_ID_BYTES
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}
