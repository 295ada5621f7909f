//! Webhook deliveries: their signature, and what the events we act on say.
//!
//! GitHub signs the raw body with the webhook secret (HMAC-SHA256, hex, in
//! `X-Hub-Signature-256: sha256=…`) and names each delivery with a GUID
//! (`X-GitHub-Delivery`) that a redelivery repeats. Only the fields read
//! here are parsed; the shapes are GitHub's (`pull_request`,
//! `pull_request_review_comment`, `issue_comment` events).

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// The webhook secret. Its bytes are never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// A secret of these bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// Whether `header` (`sha256=<hex>`) is this secret's signature of
    /// `body`. The comparison takes the same time wherever the bytes
    /// differ.
    pub fn verify(&self, body: &[u8], header: Option<&str>) -> bool {
        let Some(sig) = header
            .and_then(|h| h.trim().strip_prefix("sha256="))
            .and_then(|hex_sig| hex::decode(hex_sig).ok())
        else {
            return false;
        };
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.0) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    }

    /// The `X-Hub-Signature-256` value for `body` (what GitHub sends).
    pub fn sign(&self, body: &[u8]) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

/// Whether `id` can be a delivery id: GitHub sends a GUID; anything short
/// and plain is accepted, nothing that could smuggle text into a log.
pub fn is_delivery_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The repository an event is about.
#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
    /// `https://host/owner/name`.
    pub html_url: String,
}

/// A GitHub account.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    /// The login.
    pub login: String,
    /// GitHub's id of the account (stable across renames).
    #[serde(default)]
    pub id: u64,
}

/// A branch end of a pull request.
#[derive(Debug, Clone, Deserialize)]
pub struct Branch {
    /// The branch name (`ref`).
    #[serde(rename = "ref")]
    pub name: String,
}

/// The fields of a pull request read here.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    /// Its number in the repository.
    pub number: u64,
    /// Web URL.
    pub html_url: String,
    /// `open` or `closed`.
    pub state: String,
    /// Whether it was merged (GitHub sends `merged` on `closed` events).
    #[serde(default)]
    pub merged: bool,
    /// The branch it merges from.
    pub head: Branch,
}

impl PullRequest {
    /// The state as Canopy records it: `open`, `closed` or `merged`.
    pub fn canopy_state(&self) -> &'static str {
        match (self.state.as_str(), self.merged) {
            (_, true) => "merged",
            ("closed", false) => "closed",
            _ => "open",
        }
    }
}

/// `pull_request` event.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestEvent {
    /// `opened`, `closed`, `reopened`, `edited`, `synchronize`, ….
    pub action: String,
    /// The pull request after the action.
    pub pull_request: PullRequest,
    /// Its repository.
    pub repository: Repository,
}

/// A comment on a pull request's diff or conversation.
#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    /// Its text (Markdown).
    pub body: String,
    /// Who wrote it.
    pub user: Account,
    /// Web URL.
    #[serde(default)]
    pub html_url: String,
    /// The file commented on.
    #[serde(default)]
    pub path: Option<String>,
    /// The line commented on (in the new version).
    #[serde(default)]
    pub line: Option<u64>,
    /// The diff around it.
    #[serde(default)]
    pub diff_hunk: Option<String>,
}

/// `pull_request_review_comment` event.
#[derive(Debug, Clone, Deserialize)]
pub struct ReviewCommentEvent {
    /// `created`, `edited`, `deleted`.
    pub action: String,
    /// The comment.
    pub comment: Comment,
    /// The pull request it is on.
    pub pull_request: PullRequest,
    /// Its repository.
    pub repository: Repository,
}

/// Whether a comment asks Canopy for something: it mentions `@canopy` as
/// a word (not `@canopy-bot`, not an e-mail address).
pub fn mentions_canopy(body: &str) -> bool {
    body.match_indices("@canopy").any(|(at, m)| {
        let before = body[..at].chars().next_back();
        let after = body[at + m.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_secret_and_the_body() {
        let secret = Secret::new(b"It's a Secret to Everybody".to_vec());
        // GitHub's documented example of a valid signature.
        let body = b"Hello, World!";
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(secret.sign(body), sig);
        assert!(secret.verify(body, Some(sig)));
        assert!(!secret.verify(b"Hello, World?", Some(sig)));
        assert!(!Secret::new(b"another".to_vec()).verify(body, Some(sig)));
        for bad in [
            None,
            Some(""),
            Some("sha1=abc"),
            Some("sha256=zz"),
            Some("sha256="),
        ] {
            assert!(!secret.verify(body, bad), "{bad:?}");
        }
    }

    #[test]
    fn mentions_are_words() {
        assert!(mentions_canopy("@canopy please add a test"));
        assert!(mentions_canopy("thanks!\n\n(@canopy: rename this)"));
        assert!(!mentions_canopy("@canopy-bot do it"));
        assert!(!mentions_canopy("mail me at me@canopy.dev"));
        assert!(!mentions_canopy("@canopyx"));
        assert!(!mentions_canopy("no mention"));
    }

    #[test]
    fn delivery_ids_are_plain() {
        assert!(is_delivery_id("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
        assert!(!is_delivery_id(""));
        assert!(!is_delivery_id("a b"));
        assert!(!is_delivery_id(&"a".repeat(65)));
    }
}
