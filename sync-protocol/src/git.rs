//! Git names Canopy gives to a feature's work: each session works on its
//! own branch, `canopy/<feature-slug>/<session-slug>`, so its commits, its
//! pull request and the forge's events about that pull request can be told
//! apart from every other session's.
//!
//! The slugs are made from the titles when the session starts and never
//! change after (a renamed feature keeps its branches). The session slug
//! ends with the first [`BRANCH_ID_CHARS`] random characters of the
//! session id, so a branch names its session even if two sessions share a
//! title; [`session_key_of_branch`] reads them back.

use crate::ids;

/// Characters of the session id's random part that end its branch name.
pub const BRANCH_ID_CHARS: usize = 8;

/// Longest slug made from a title, in bytes.
const SLUG_BYTES: usize = 40;

/// `title` as a branch name segment: lowercase ASCII letters and digits,
/// words joined by `-`, at most 40 bytes; `fallback` when nothing is left.
pub fn slug(title: &str, fallback: &str) -> String {
    let mut out = String::new();
    for word in title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_ascii_lowercase();
        let extra = usize::from(!out.is_empty()) + word.len();
        if out.len() + extra > SLUG_BYTES {
            if out.is_empty() {
                out.push_str(&word[..SLUG_BYTES]);
            }
            break;
        }
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&word);
    }
    if out.is_empty() {
        fallback.to_owned()
    } else {
        out
    }
}

/// The branch a session works on.
pub fn session_branch(feature_title: &str, session_title: &str, session_id: &str) -> String {
    let key = session_id
        .strip_prefix(ids::SESSION_PREFIX)
        .unwrap_or(session_id)
        .get(..BRANCH_ID_CHARS)
        .unwrap_or_default();
    format!(
        "canopy/{}/{}-{key}",
        slug(feature_title, "feature"),
        slug(session_title, "session")
    )
}

/// The session key (see [`session_branch`]) a branch name ends with, if it
/// is one of Canopy's session branches.
pub fn session_key_of_branch(branch: &str) -> Option<&str> {
    let rest = branch.strip_prefix("canopy/")?;
    let (_, session) = rest.split_once('/')?;
    if session.contains('/') {
        return None;
    }
    let (_, key) = session.rsplit_once('-')?;
    (key.len() == BRANCH_ID_CHARS
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    .then_some(key)
}

/// Whether `session_id` is the session a branch's key names.
pub fn is_session_key(session_id: &str, key: &str) -> bool {
    session_id
        .strip_prefix(ids::SESSION_PREFIX)
        .and_then(|r| r.get(..BRANCH_ID_CHARS))
        == Some(key)
}

/// The environment that hands `username`/`password` to one git process
/// as an HTTP `Authorization` header. `GIT_CONFIG_*` variables are
/// command-line configuration to git: nothing reaches a config file, and
/// the secret is in no argument (which `ps` shows).
pub fn credential_env(username: &str, password: &str) -> Vec<(String, String)> {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    vec![
        ("GIT_CONFIG_COUNT".into(), "1".into()),
        ("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()),
        (
            "GIT_CONFIG_VALUE_0".into(),
            format!("Authorization: Basic {basic}"),
        ),
    ]
}

/// The environment that makes git ask `helper` (a shell command line, run
/// as `helper get|store|erase`) for credentials, and nothing else: the
/// list of helpers is emptied first.
pub fn credential_helper_env(helper: &str) -> Vec<(String, String)> {
    vec![
        ("GIT_CONFIG_COUNT".into(), "2".into()),
        ("GIT_CONFIG_KEY_0".into(), "credential.helper".into()),
        ("GIT_CONFIG_VALUE_0".into(), String::new()),
        ("GIT_CONFIG_KEY_1".into(), "credential.helper".into()),
        ("GIT_CONFIG_VALUE_1".into(), format!("!{helper}")),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn branches_name_their_session() {
        let sid = "ses_abcdefgh234567abcdef";
        let b = session_branch("Fix the Login — page!", "Add tests (unit)", sid);
        assert_eq!(b, "canopy/fix-the-login-page/add-tests-unit-abcdefgh");
        let key = session_key_of_branch(&b).unwrap();
        assert!(is_session_key(sid, key));
        assert!(!is_session_key("ses_zzzzzzzz234567abcdef", key));
        assert_eq!(
            session_branch("", "日本語", sid),
            "canopy/feature/session-abcdefgh"
        );
        let long = "word ".repeat(30);
        let b = session_branch(&long, &long, sid);
        assert!(b.split('/').all(|seg| seg.len() <= 40 + 9), "{b}");
        assert_eq!(
            session_key_of_branch(&b),
            Some("abcdefgh"),
            "long titles still end with the key"
        );
        for not_ours in [
            "main",
            "canopy/x",
            "canopy/x/y",
            "canopy/x/y-ABCDEFGH",
            "canopy/x/y/z-abcdefgh",
            "feature/x/y-abcdefgh",
        ] {
            assert_eq!(session_key_of_branch(not_ours), None, "{not_ours}");
        }
    }
}
