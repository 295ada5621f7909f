//! Id generation and validation.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use canopy_protocol::ids::{self, RANDOM_LEN};

#[test]
fn generated_ids_are_valid_and_distinct() {
    type Maker = fn() -> String;
    let makers: [(&str, Maker); 5] = [
        (ids::FEATURE_PREFIX, ids::new_feature_id),
        (ids::SESSION_PREFIX, ids::new_session_id),
        (ids::QUEUE_ENTRY_PREFIX, ids::new_queue_entry_id),
        (ids::LEARNING_PREFIX, ids::new_learning_id),
        (ids::DECISION_PREFIX, ids::new_decision_id),
    ];
    let mut seen = HashSet::new();
    for (prefix, make) in makers {
        for _ in 0..500 {
            let id = make();
            assert!(ids::is_valid_id(prefix, &id), "{id}");
            assert_eq!(id.len(), prefix.len() + RANDOM_LEN);
            assert!(
                id[prefix.len()..]
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')),
                "{id}"
            );
            for (other, _) in makers {
                if other != prefix {
                    assert!(!ids::is_valid_id(other, &id), "{id} is not a {other} id");
                }
            }
            assert!(seen.insert(id));
        }
    }
}

#[test]
fn every_character_is_used() {
    let all: HashSet<u8> = (0..200)
        .flat_map(|_| ids::new_session_id().into_bytes())
        .collect();
    for b in b"abcdefghijklmnopqrstuvwxyz234567" {
        assert!(all.contains(b), "{}", char::from(*b));
    }
}

#[test]
fn malformed_ids_are_rejected() {
    let good = ids::new_session_id();
    assert!(ids::is_valid_id(ids::SESSION_PREFIX, &good));
    // Base36 ids minted by JS clients are accepted.
    assert!(ids::is_valid_id(
        ids::QUEUE_ENTRY_PREFIX,
        "q_0189abcdxyz0189abcdx"
    ));
    let mut bad = vec![
        String::new(),
        "ses_".into(),
        good[..good.len() - 1].into(),
        format!("{good}a"),
        good.to_uppercase(),
        good.replace("ses_", "SES_"),
        good.replace("ses_", "ses-"),
        good.replace("ses_", ""),
        format!(" {good}"),
    ];
    // Every position rejects every character outside [a-z0-9].
    for pos in 4..good.len() {
        for c in ['A', '_', '-', '.', '/', ' ', 'é', '\0'] {
            let mut s: Vec<char> = good.chars().collect();
            s[pos] = c;
            bad.push(s.into_iter().collect());
        }
    }
    for s in bad {
        assert!(!ids::is_valid_id(ids::SESSION_PREFIX, &s), "{s:?}");
    }
}

#[test]
fn user_ids_are_checked_for_shape() {
    for good in [
        "alice",
        "user:42:nonce",
        "a@b.example",
        "ünïcode",
        &"x".repeat(ids::MAX_USER_ID_BYTES),
    ] {
        assert!(ids::is_valid_user_id(good), "{good}");
    }
    for bad in [
        "",
        "two words",
        "tab\there",
        "line\n",
        "nul\0",
        &"x".repeat(ids::MAX_USER_ID_BYTES + 1),
    ] {
        assert!(!ids::is_valid_user_id(bad), "{bad:?}");
    }
}
