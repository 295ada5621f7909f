//! Canopy users linked to GitHub accounts, with the user's GitHub token
//! kept for opening pull requests on their behalf.
//!
//! The token is encrypted at rest with AES-256-GCM under a key that is not
//! in the database (an operator's `CANOPY_GITHUB_TOKEN_KEY`, else
//! `github-token.key` in the data directory, mode 0600): a copied database
//! file alone gives nobody a GitHub token. The associated data binds each
//! ciphertext to its user, so rows cannot be swapped between users.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use rusqlite::{OptionalExtension, params};

use super::client::HostUser;
use crate::db::{Database, DbError};

/// File name of the generated key in the data directory.
pub const KEY_FILE: &str = "github-token.key";

/// The key of stored user tokens: given, or read from (or made in) a file
/// on first use.
#[derive(Clone)]
pub struct TokenKey {
    source: KeySource,
    loaded: Arc<OnceLock<Result<[u8; 32], String>>>,
}

#[derive(Clone)]
enum KeySource {
    Given([u8; 32]),
    File(PathBuf),
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            KeySource::Given(_) => f.write_str("TokenKey(given)"),
            KeySource::File(p) => write!(f, "TokenKey({})", p.display()),
        }
    }
}

impl TokenKey {
    /// From 64 hex digits.
    ///
    /// # Errors
    /// Anything but 32 bytes of hex.
    pub fn from_hex(hex: &str) -> Result<TokenKey, String> {
        let bytes =
            hex::decode(hex.trim()).map_err(|_| "CANOPY_GITHUB_TOKEN_KEY is not hex".to_owned())?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "CANOPY_GITHUB_TOKEN_KEY must be 32 bytes (64 hex digits)".to_owned())?;
        Ok(TokenKey {
            source: KeySource::Given(key),
            loaded: Arc::default(),
        })
    }

    /// `github-token.key` in `dir`, made on first use.
    pub fn in_dir(dir: &Path) -> TokenKey {
        TokenKey {
            source: KeySource::File(dir.join(KEY_FILE)),
            loaded: Arc::default(),
        }
    }

    fn key(&self) -> Result<[u8; 32], String> {
        self.loaded
            .get_or_init(|| match &self.source {
                KeySource::Given(k) => Ok(*k),
                KeySource::File(path) => load_or_make(path),
            })
            .clone()
    }

    fn cipher(&self) -> Result<Aes256Gcm, String> {
        let key = self.key()?;
        Aes256Gcm::new_from_slice(&key).map_err(|e| e.to_string())
    }

    /// `nonce ‖ ciphertext` of `token`, bound to `user_id`.
    ///
    /// # Errors
    /// The key cannot be read or made.
    pub fn seal(&self, user_id: &str, token: &str) -> Result<Vec<u8>, String> {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher()?
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: token.as_bytes(),
                    aad: user_id.as_bytes(),
                },
            )
            .map_err(|_| "cannot encrypt the token".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(out)
    }

    /// The token in `sealed`, if it is `user_id`'s and this key's.
    ///
    /// # Errors
    /// Another key, another user's row, or damage.
    pub fn open(&self, user_id: &str, sealed: &[u8]) -> Result<String, String> {
        if sealed.len() < 12 + 16 {
            return Err("the stored token is damaged".into());
        }
        let (nonce, body) = sealed.split_at(12);
        let plain = self
            .cipher()?
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: user_id.as_bytes(),
                },
            )
            .map_err(|_| {
                "the stored GitHub token cannot be decrypted (another key, or damage); sign in with GitHub again".to_owned()
            })?;
        String::from_utf8(plain).map_err(|_| "the stored token is damaged".into())
    }
}

fn load_or_make(path: &Path) -> Result<[u8; 32], String> {
    let shown = path.display();
    match std::fs::read(path) {
        Ok(bytes) => {
            return hex::decode(String::from_utf8_lossy(&bytes).trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| format!("{shown} is not a 64-hex-digit key"));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key: [u8; 32] = rand::random();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    }
    // `create_new`: two servers on one data directory must not each make
    // a key and lose the other's tokens.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(hex::encode(key).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write {shown}: {e}"))?;
            tracing::info!(path = %shown, "made the key that encrypts stored GitHub tokens");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_make(path),
        Err(e) => Err(format!("cannot make {shown}: {e}")),
    }
}

/// A linked account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The Canopy user.
    pub user_id: String,
    /// GitHub's id.
    pub github_id: u64,
    /// GitHub login.
    pub login: String,
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The key failed.
    #[error("{0}")]
    Key(String),
    /// The GitHub account is linked to another Canopy user.
    #[error("the GitHub account {login} is already linked to another Canopy user")]
    LinkedElsewhere {
        /// The account.
        login: String,
    },
}

/// The links, over the database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Accounts {
    db: Database,
    key: TokenKey,
}

fn id_of(github_id: u64) -> i64 {
    i64::try_from(github_id).unwrap_or(i64::MAX)
}

impl Accounts {
    /// The store.
    pub fn new(db: Database, key: TokenKey) -> Accounts {
        Accounts { db, key }
    }

    /// Link `user_id` to `gh` with `token` (replacing the user's earlier
    /// link and token).
    ///
    /// # Errors
    /// The account is another user's, or the database or key failed.
    pub async fn link(
        &self,
        user_id: &str,
        gh: &HostUser,
        token: &str,
    ) -> Result<(), AccountError> {
        let sealed = self.key.seal(user_id, token).map_err(AccountError::Key)?;
        let (user, login, id) = (user_id.to_owned(), gh.login.clone(), id_of(gh.id));
        let now = canopy_protocol::unix_ms_now();
        let taken = self
            .db
            .write_returning(256 + sealed.len(), move |conn| {
                let owner: Option<String> = conn
                    .query_row(
                        "SELECT user_id FROM github_accounts WHERE github_id = ?1",
                        params![id],
                        |r| r.get(0),
                    )
                    .optional()?;
                if owner.as_deref().is_some_and(|o| o != user) {
                    return Ok(true);
                }
                conn.execute(
                    "INSERT INTO github_accounts (user_id, github_id, login, token, linked_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                     ON CONFLICT (user_id) DO UPDATE SET github_id = ?2, login = ?3, token = ?4, updated_at = ?5",
                    params![user, id, login, sealed, now],
                )?;
                Ok(false)
            })
            .await?;
        if taken {
            return Err(AccountError::LinkedElsewhere {
                login: gh.login.clone(),
            });
        }
        Ok(())
    }

    /// The Canopy user linked to GitHub account `github_id`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn by_github_id(&self, github_id: u64) -> Result<Option<Account>, AccountError> {
        let id = id_of(github_id);
        self.one("github_id = ?1", rusqlite::types::Value::Integer(id))
            .await
    }

    /// The link of `user_id`, if any.
    ///
    /// # Errors
    /// The database failed.
    pub async fn by_user(&self, user_id: &str) -> Result<Option<Account>, AccountError> {
        self.one(
            "user_id = ?1",
            rusqlite::types::Value::Text(user_id.to_owned()),
        )
        .await
    }

    async fn one(
        &self,
        condition: &'static str,
        value: rusqlite::types::Value,
    ) -> Result<Option<Account>, AccountError> {
        Ok(self
            .db
            .read(move |conn| {
                conn.query_row(
                    &format!(
                        "SELECT user_id, github_id, login FROM github_accounts WHERE {condition}"
                    ),
                    params![value],
                    |r| {
                        Ok(Account {
                            user_id: r.get(0)?,
                            github_id: u64::try_from(r.get::<_, i64>(1)?).unwrap_or_default(),
                            login: r.get(2)?,
                        })
                    },
                )
                .optional()
            })
            .await?)
    }

    /// `user_id`'s GitHub token, decrypted; `None` without a link.
    ///
    /// # Errors
    /// The database or key failed, or the row cannot be decrypted.
    pub async fn token_of(&self, user_id: &str) -> Result<Option<String>, AccountError> {
        let user = user_id.to_owned();
        // No row, or a token forgotten (NULL): none.
        let sealed: Option<Vec<u8>> = self
            .db
            .read(move |conn| {
                conn.query_row(
                    "SELECT token FROM github_accounts WHERE user_id = ?1",
                    params![user],
                    |r| r.get::<_, Option<Vec<u8>>>(0),
                )
                .optional()
                .map(Option::flatten)
            })
            .await?;
        sealed
            .map(|s| self.key.open(user_id, &s))
            .transpose()
            .map_err(AccountError::Key)
    }

    /// Forget `user_id`'s token (GitHub refused it); the link stays, so the
    /// account is still known for webhooks.
    ///
    /// # Errors
    /// The database failed.
    pub async fn forget_token(&self, user_id: &str) -> Result<(), AccountError> {
        let user = user_id.to_owned();
        self.db
            .write(64, move |conn| {
                conn.execute(
                    "UPDATE github_accounts SET token = NULL WHERE user_id = ?1",
                    params![user],
                )?;
                Ok(())
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tokens_open_only_for_their_user_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = TokenKey::in_dir(dir.path());
        let sealed = key.seal("usr_a", "gho_secret").unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"gho_secret"));
        assert_eq!(key.open("usr_a", &sealed).unwrap(), "gho_secret");
        assert!(key.open("usr_b", &sealed).is_err(), "bound to its user");
        // The same file gives the same key; another key opens nothing.
        assert_eq!(
            TokenKey::in_dir(dir.path()).open("usr_a", &sealed).unwrap(),
            "gho_secret"
        );
        let other = TokenKey::from_hex(&"ab".repeat(32)).unwrap();
        assert!(other.open("usr_a", &sealed).is_err());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        assert!(TokenKey::from_hex("abcd").is_err());
        let mut damaged = sealed.clone();
        damaged[20] ^= 1;
        assert!(key.open("usr_a", &damaged).is_err());
    }
}
