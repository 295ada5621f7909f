//! Secrets: random API tokens stored only as hashes, constant-time checks,
//! and the server key that signs sync tickets.

use std::path::Path;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthError;

/// What every API token starts with, so secret scanners and people can tell
/// one apart from other strings.
pub const TOKEN_PREFIX: &str = "canopy_";

/// Bytes of randomness in a token's secret part.
const SECRET_BYTES: usize = 32;

/// Length of a token id's random part (base32 characters).
const TOKEN_ID_CHARS: usize = 20;

/// A freshly minted API token: the part shown once to its owner, and what the
/// database keeps.
#[derive(Debug)]
pub struct MintedToken {
    /// `tok_…`: the public, non-secret identifier (listing, revoking).
    pub token_id: String,
    /// `canopy_<id>_<secret>`: shown once, never stored.
    pub token: String,
    /// SHA-256 of the secret part: what the database keeps.
    pub secret_hash: [u8; 32],
}

/// Mint a new API token.
pub fn mint_token() -> MintedToken {
    let id_part = canopy_protocol::ids::new_id("");
    let id_part = &id_part[..TOKEN_ID_CHARS.min(id_part.len())];
    let mut secret = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    let encoded = URL_SAFE_NO_PAD.encode(secret);
    MintedToken {
        token_id: format!("tok_{id_part}"),
        token: format!("{TOKEN_PREFIX}{id_part}_{encoded}"),
        secret_hash: Sha256::digest(secret).into(),
    }
}

/// A presented token split into its id and the hash of its secret. The hash
/// is computed here so that lookups never see the secret itself.
#[derive(Debug)]
pub struct PresentedToken {
    /// `tok_…`
    pub token_id: String,
    /// SHA-256 of the presented secret.
    pub secret_hash: [u8; 32],
}

/// Parse a presented token. Any malformed token is the same error as a
/// wrong one, so a caller learns nothing from the difference.
pub fn parse_token(token: &str) -> Result<PresentedToken, AuthError> {
    let rest = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(AuthError::BadCredentials)?;
    let (id, secret) = rest.split_once('_').ok_or(AuthError::BadCredentials)?;
    if id.len() != TOKEN_ID_CHARS
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(AuthError::BadCredentials);
    }
    let secret = URL_SAFE_NO_PAD
        .decode(secret)
        .map_err(|_| AuthError::BadCredentials)?;
    if secret.len() != SECRET_BYTES {
        return Err(AuthError::BadCredentials);
    }
    Ok(PresentedToken {
        token_id: format!("tok_{id}"),
        secret_hash: Sha256::digest(&secret).into(),
    })
}

/// Constant-time equality of two secret hashes.
pub fn hashes_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The key that signs sync tickets.
#[derive(Clone)]
pub struct ServerKey([u8; 32]);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

impl ServerKey {
    /// The raw key bytes.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key from its hex or base64url form (the `CANOPY_SERVER_KEY` value).
    pub fn parse(s: &str) -> Result<ServerKey, AuthError> {
        let s = s.trim();
        let bytes = hex::decode(s)
            .ok()
            .or_else(|| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
            .ok_or_else(|| AuthError::Key("the server key is neither hex nor base64url".into()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| AuthError::Key("the server key must be 32 bytes".into()))?;
        Ok(ServerKey(key))
    }

    /// Read the key from `path`, creating it (owner-only permissions) on
    /// first start.
    pub fn load_or_create(path: &Path) -> Result<ServerKey, AuthError> {
        match std::fs::read_to_string(path) {
            Ok(s) => {
                ServerKey::parse(&s).map_err(|e| AuthError::Key(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                write_private(path, hex::encode(key).as_bytes())
                    .map_err(|e| AuthError::Key(format!("cannot write {}: {e}", path.display())))?;
                tracing::info!(path = %path.display(), "created a new server key");
                Ok(ServerKey(key))
            }
            Err(e) => Err(AuthError::Key(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }
}

/// Create `path` readable by its owner only; refuse to overwrite.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_parses_to_its_own_hash() {
        let minted = mint_token();
        let presented = parse_token(&minted.token).unwrap();
        assert_eq!(presented.token_id, minted.token_id);
        assert!(hashes_equal(&presented.secret_hash, &minted.secret_hash));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let minted = mint_token();
        let mut flipped = minted.token.clone().into_bytes();
        // A character inside the secret (the last one carries padding bits).
        let i = TOKEN_PREFIX.len() + TOKEN_ID_CHARS + 1 + 5;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        let presented = parse_token(&flipped).unwrap();
        assert!(!hashes_equal(&presented.secret_hash, &minted.secret_hash));
        for bad in [
            "",
            "canopy_",
            "Bearer x",
            &minted.token[1..],
            &minted.token[..minted.token.len() - 2],
            "canopy_AAAAAAAAAAAAAAAAAAAA_AAAA",
        ] {
            assert!(parse_token(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_server_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        let a = ServerKey::load_or_create(&path).unwrap();
        let b = ServerKey::load_or_create(&path).unwrap();
        assert_eq!(a.bytes(), b.bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        }
        assert!(ServerKey::parse("zz").is_err());
        assert!(ServerKey::parse(&"ab".repeat(31)).is_err());
    }
}
