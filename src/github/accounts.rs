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

use super::client::{HostUser, UserToken};
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

/// A user's token as stored, with the version a refresh must replace.
#[derive(Debug, Clone)]
pub struct StoredToken {
    /// The token (it may have expired).
    pub token: UserToken,
    /// Grows with every token stored or forgotten.
    pub version: i64,
}

/// A token's columns, sealed.
struct SealedToken {
    token: Vec<u8>,
    expires_at: Option<i64>,
    refresh: Option<Vec<u8>>,
    refresh_expires_at: Option<i64>,
}

impl SealedToken {
    fn size(&self) -> usize {
        self.token.len() + self.refresh.as_ref().map_or(0, Vec::len)
    }
}

/// The associated data of a sealed refresh token: bound to its user, and
/// not interchangeable with the access token's column.
fn refresh_aad(user_id: &str) -> String {
    format!("{user_id}/refresh")
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
        token: &UserToken,
    ) -> Result<(), AccountError> {
        let sealed = self.seal_token(user_id, token)?;
        let (user, login, id) = (user_id.to_owned(), gh.login.clone(), id_of(gh.id));
        let now = canopy_protocol::unix_ms_now();
        let taken = self
            .db
            .write_returning(512 + sealed.size(), move |conn| {
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
                    "INSERT INTO github_accounts (user_id, github_id, login, token, linked_at, updated_at,
                                                  token_expires_at, refresh_token, refresh_expires_at, token_version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, 1)
                     ON CONFLICT (user_id) DO UPDATE SET github_id = ?2, login = ?3, token = ?4, updated_at = ?5,
                         token_expires_at = ?6, refresh_token = ?7, refresh_expires_at = ?8,
                         token_version = token_version + 1",
                    params![
                        user,
                        id,
                        login,
                        sealed.token,
                        now,
                        sealed.expires_at,
                        sealed.refresh,
                        sealed.refresh_expires_at
                    ],
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

    /// `user_id`'s GitHub token as stored, decrypted; `None` without a
    /// link or after the token was forgotten. It may have expired: see
    /// [`super::pulls::Access::user_token`], which refreshes it.
    ///
    /// # Errors
    /// The database or key failed, or the row cannot be decrypted.
    pub async fn stored_token(&self, user_id: &str) -> Result<Option<StoredToken>, AccountError> {
        let user = user_id.to_owned();
        type Row = (
            Option<Vec<u8>>,
            Option<i64>,
            Option<Vec<u8>>,
            Option<i64>,
            i64,
        );
        let row: Option<Row> = self
            .db
            .read(move |conn| {
                conn.query_row(
                    "SELECT token, token_expires_at, refresh_token, refresh_expires_at, token_version
                     FROM github_accounts WHERE user_id = ?1",
                    params![user],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
            })
            .await?;
        let Some((Some(token), expires_at, refresh, refresh_expires_at, version)) = row else {
            return Ok(None);
        };
        let open = |aad: &str, sealed: &[u8]| self.key.open(aad, sealed).map_err(AccountError::Key);
        Ok(Some(StoredToken {
            token: UserToken {
                access_token: open(user_id, &token)?,
                expires_at,
                refresh_token: refresh
                    .map(|r| open(&refresh_aad(user_id), &r))
                    .transpose()?,
                refresh_expires_at,
            },
            version,
        }))
    }

    /// Store `token`, refreshed from the token of `version`, unless the
    /// row moved on meanwhile; `false` then (another refresh won).
    ///
    /// # Errors
    /// The database or key failed.
    pub async fn store_refreshed(
        &self,
        user_id: &str,
        version: i64,
        token: &UserToken,
    ) -> Result<bool, AccountError> {
        let sealed = self.seal_token(user_id, token)?;
        let user = user_id.to_owned();
        let now = canopy_protocol::unix_ms_now();
        Ok(self
            .db
            .write_returning(512 + sealed.size(), move |conn| {
                let changed = conn.execute(
                    "UPDATE github_accounts SET token = ?3, token_expires_at = ?4, refresh_token = ?5,
                         refresh_expires_at = ?6, token_version = token_version + 1, updated_at = ?7
                     WHERE user_id = ?1 AND token_version = ?2",
                    params![
                        user,
                        version,
                        sealed.token,
                        sealed.expires_at,
                        sealed.refresh,
                        sealed.refresh_expires_at,
                        now
                    ],
                )?;
                Ok(changed == 1)
            })
            .await?)
    }

    fn seal_token(&self, user_id: &str, token: &UserToken) -> Result<SealedToken, AccountError> {
        Ok(SealedToken {
            token: self
                .key
                .seal(user_id, &token.access_token)
                .map_err(AccountError::Key)?,
            expires_at: token.expires_at,
            refresh: token
                .refresh_token
                .as_deref()
                .map(|r| self.key.seal(&refresh_aad(user_id), r))
                .transpose()
                .map_err(AccountError::Key)?,
            refresh_expires_at: token.refresh_expires_at,
        })
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
                    "UPDATE github_accounts SET token = NULL, token_expires_at = NULL, refresh_token = NULL,
                         refresh_expires_at = NULL, token_version = token_version + 1
                     WHERE user_id = ?1",
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

    #[tokio::test]
    async fn a_refresh_replaces_only_the_token_it_refreshed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(
            crate::db::DbConfig::new(dir.path().join("t.db")),
            crate::metrics::Metrics::new(),
        )
        .unwrap();
        let user = crate::auth::Users::new(db.clone())
            .create_user(crate::auth::NewUser {
                handle: "ann".into(),
                display_name: "Ann".into(),
                email: None,
            })
            .await
            .unwrap();
        let uid = user.user_id.as_str();
        let accounts = Accounts::new(db, TokenKey::in_dir(dir.path()));
        let gh = HostUser {
            id: 7,
            login: "ann-gh".into(),
            name: None,
            email: None,
        };
        let first = UserToken {
            access_token: "ghu_first".into(),
            expires_at: Some(1_000),
            refresh_token: Some("ghr_first".into()),
            refresh_expires_at: Some(9_000),
        };
        accounts.link(uid, &gh, &first).await.unwrap();
        let stored = accounts.stored_token(uid).await.unwrap().unwrap();
        assert_eq!(stored.token, first);

        // Two refreshes of the same version: the first is stored, the
        // second (stale) is not.
        let second = UserToken {
            access_token: "ghu_second".into(),
            refresh_token: Some("ghr_second".into()),
            ..first.clone()
        };
        assert!(
            accounts
                .store_refreshed(uid, stored.version, &second)
                .await
                .unwrap()
        );
        let third = UserToken::lasting("ghu_third");
        assert!(
            !accounts
                .store_refreshed(uid, stored.version, &third)
                .await
                .unwrap()
        );
        let now = accounts.stored_token(uid).await.unwrap().unwrap();
        assert_eq!(now.token, second);
        assert!(now.version > stored.version);

        // Forgetting drops the refresh token too.
        accounts.forget_token(uid).await.unwrap();
        assert!(accounts.stored_token(uid).await.unwrap().is_none());
        // A lasting token (an OAuth App's) has no expiry and no refresh.
        accounts.link(uid, &gh, &third).await.unwrap();
        assert_eq!(
            accounts.stored_token(uid).await.unwrap().unwrap().token,
            third
        );
    }

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
