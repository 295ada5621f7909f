//! Users and their API tokens, in SQLite. The database keeps only hashes of
//! token secrets; a token is checked against its hash in constant time, on
//! every request, so a revocation or a disabled user takes effect at once.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{
    AuthError, Principal, TokenScope,
    secret::{self, MintedToken},
};
use crate::db::Database;

/// Longest handle, in bytes.
pub const MAX_HANDLE: usize = 39;
/// Longest display name or email, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest token label, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// `usr_…`, stable.
    pub user_id: String,
    /// Unique short name, `[a-z0-9-]`.
    pub handle: String,
    /// Shown next to their work.
    pub display_name: String,
    /// For git attribution.
    pub email: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// A disabled user's tokens and tickets stop working.
    pub disabled: bool,
}

/// What a new user needs.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Unique short name.
    pub handle: String,
    /// Display name (defaults to the handle when empty).
    pub display_name: String,
    /// Email for git attribution.
    pub email: Option<String>,
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// `tok_…`
    pub token_id: String,
    /// Its owner.
    pub user_id: String,
    /// What the owner called it.
    pub label: String,
    /// `user`, or `agent` for a sandbox's token.
    pub scope: TokenScope,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, when revoked.
    pub revoked_at: Option<i64>,
    /// Unix milliseconds after which it no longer works (sandbox tokens).
    pub expires_at: Option<i64>,
}

/// Whether `handle` is acceptable: 1 to 39 of `[a-z0-9-]`, not starting or
/// ending with `-`.
pub fn valid_handle(handle: &str) -> bool {
    !handle.is_empty()
        && handle.len() <= MAX_HANDLE
        && handle
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !handle.starts_with('-')
        && !handle.ends_with('-')
}

fn check_text(what: &str, s: &str, max: usize) -> Result<(), AuthError> {
    if s.chars().count() > max {
        return Err(AuthError::Invalid(format!(
            "{what} is longer than {max} characters"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(AuthError::Invalid(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}

const USER_COLUMNS: &str = "user_id, handle, display_name, email, created_at, disabled";

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        user_id: r.get(0)?,
        handle: r.get(1)?,
        display_name: r.get(2)?,
        email: r.get(3)?,
        created_at: r.get(4)?,
        disabled: r.get(5)?,
    })
}

/// The users and tokens store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Users {
    db: Database,
}

impl Users {
    /// The store over `db`.
    pub fn new(db: Database) -> Self {
        Users { db }
    }

    /// Add a user.
    pub async fn create_user(&self, new: NewUser) -> Result<User, AuthError> {
        let handle = new.handle.trim().to_owned();
        if !valid_handle(&handle) {
            return Err(AuthError::Invalid(format!(
                "handle {handle:?} must be 1 to {MAX_HANDLE} of a-z, 0-9 and '-', not starting or ending with '-'"
            )));
        }
        let display_name = match new.display_name.trim() {
            "" => handle.clone(),
            name => name.to_owned(),
        };
        check_text("display name", &display_name, MAX_NAME_CHARS)?;
        let email = new
            .email
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty());
        if let Some(email) = &email {
            check_text("email", email, MAX_NAME_CHARS)?;
            if !email.contains('@') || email.chars().any(char::is_whitespace) {
                return Err(AuthError::Invalid(format!(
                    "{email:?} is not an email address"
                )));
            }
        }
        let user = User {
            user_id: canopy_protocol::ids::new_id("usr_"),
            handle,
            display_name,
            email,
            created_at: canopy_protocol::unix_ms_now(),
            disabled: false,
        };
        let u = user.clone();
        let inserted = self
            .db
            .write_returning(256, move |conn| {
                conn.execute(
                    "INSERT INTO users (user_id, handle, display_name, email, created_at, disabled)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0) ON CONFLICT (handle) DO NOTHING",
                    params![u.user_id, u.handle, u.display_name, u.email, u.created_at],
                )
            })
            .await?;
        if inserted == 0 {
            return Err(AuthError::Conflict(format!(
                "a user with handle {:?} already exists",
                user.handle
            )));
        }
        Ok(user)
    }

    /// One user by handle.
    pub async fn user_by_handle(&self, handle: &str) -> Result<Option<User>, AuthError> {
        let handle = handle.to_owned();
        Ok(self
            .db
            .read(move |conn| {
                conn.query_row(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE handle = ?1"),
                    [handle],
                    user_from_row,
                )
                .optional()
            })
            .await?)
    }

    /// One user by id.
    pub async fn user(&self, user_id: &str) -> Result<Option<User>, AuthError> {
        let id = user_id.to_owned();
        Ok(self
            .db
            .read(move |conn| {
                conn.query_row(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = ?1"),
                    [id],
                    user_from_row,
                )
                .optional()
            })
            .await?)
    }

    /// Every user, by handle.
    pub async fn list_users(&self) -> Result<Vec<User>, AuthError> {
        Ok(self
            .db
            .read(|conn| {
                let mut stmt =
                    conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY handle"))?;
                let rows = stmt
                    .query_map([], user_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?)
    }

    /// How many users exist.
    pub async fn count(&self) -> Result<u64, AuthError> {
        Ok(self
            .db
            .read(|conn| conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)))
            .await?)
    }

    /// Disable or re-enable a user. Returns false if there is no such user.
    pub async fn set_disabled(&self, user_id: &str, disabled: bool) -> Result<bool, AuthError> {
        let id = user_id.to_owned();
        let n = self
            .db
            .write_returning(64, move |conn| {
                conn.execute(
                    "UPDATE users SET disabled = ?2 WHERE user_id = ?1",
                    params![id, disabled],
                )
            })
            .await?;
        Ok(n > 0)
    }

    /// Mint a token for `user_id`. The returned token string is the only copy.
    pub async fn create_token(
        &self,
        user_id: &str,
        label: &str,
        scope: TokenScope,
    ) -> Result<(TokenInfo, String), AuthError> {
        self.create_token_expiring(user_id, label, scope, None)
            .await
    }

    /// [`Users::create_token`], with an expiry (Unix milliseconds) after
    /// which the token is refused like a revoked one.
    pub async fn create_token_expiring(
        &self,
        user_id: &str,
        label: &str,
        scope: TokenScope,
        expires_at: Option<i64>,
    ) -> Result<(TokenInfo, String), AuthError> {
        let label = label.trim().to_owned();
        check_text("label", &label, MAX_LABEL_CHARS)?;
        let MintedToken {
            token_id,
            token,
            secret_hash,
        } = secret::mint_token();
        let info = TokenInfo {
            token_id,
            user_id: user_id.to_owned(),
            label,
            scope,
            created_at: canopy_protocol::unix_ms_now(),
            revoked_at: None,
            expires_at,
        };
        let i = info.clone();
        let inserted = self
            .db
            .write_returning(256, move |conn| {
                let (feature, session) = match &i.scope {
                    TokenScope::User => (None, None),
                    TokenScope::Agent {
                        feature_id,
                        session_id,
                    } => (Some(feature_id.as_str()), Some(session_id.as_str())),
                };
                conn.execute(
                    "INSERT INTO api_tokens
                       (token_id, user_id, secret_hash, label, scope, feature_id, session_id, created_at, expires_at)
                     SELECT ?1, user_id, ?3, ?4, ?5, ?6, ?7, ?8, ?9 FROM users WHERE user_id = ?2",
                    params![
                        i.token_id,
                        i.user_id,
                        secret_hash.as_slice(),
                        i.label,
                        i.scope.as_str(),
                        feature,
                        session,
                        i.created_at,
                        i.expires_at
                    ],
                )
            })
            .await?;
        if inserted == 0 {
            return Err(AuthError::NotFound(format!("no user {user_id}")));
        }
        Ok((info, token))
    }

    /// On a data directory without users, create the first one with an API
    /// token (the given one, or a new one) and make them the owner of every
    /// feature that has no owner (features created before identity existed).
    /// Returns the user and the token, or `None` if users already exist.
    pub async fn bootstrap(
        &self,
        handle: &str,
        token: Option<&str>,
    ) -> Result<Option<(User, String)>, AuthError> {
        if !valid_handle(handle) {
            return Err(AuthError::Invalid(format!(
                "bootstrap user handle {handle:?} must be 1 to {MAX_HANDLE} of a-z, 0-9 and '-'"
            )));
        }
        let (token_id, token, secret_hash) = match token {
            Some(t) => {
                let presented = secret::parse_token(t).map_err(|_| {
                    AuthError::Invalid(
                        "the bootstrap token is not a Canopy token (canopy_<20 chars>_<43 chars>)"
                            .into(),
                    )
                })?;
                (presented.token_id, t.to_owned(), presented.secret_hash)
            }
            None => {
                let m = secret::mint_token();
                (m.token_id, m.token, m.secret_hash)
            }
        };
        let user = User {
            user_id: canopy_protocol::ids::new_id("usr_"),
            handle: handle.to_owned(),
            display_name: handle.to_owned(),
            email: None,
            created_at: canopy_protocol::unix_ms_now(),
            disabled: false,
        };
        let u = user.clone();
        let created = self
            .db
            .write_returning(512, move |conn| {
                let users: i64 = conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
                if users > 0 {
                    return Ok(false);
                }
                conn.execute(
                    "INSERT INTO users (user_id, handle, display_name, email, created_at, disabled)
                     VALUES (?1, ?2, ?3, NULL, ?4, 0)",
                    params![u.user_id, u.handle, u.display_name, u.created_at],
                )?;
                conn.execute(
                    "INSERT INTO api_tokens (token_id, user_id, secret_hash, label, scope, created_at)
                     VALUES (?1, ?2, ?3, 'first start', 'user', ?4)",
                    params![token_id, u.user_id, secret_hash.as_slice(), u.created_at],
                )?;
                conn.execute(
                    "INSERT INTO members (feature_id, user_id, role, added_by, added_at)
                     SELECT feature_id, ?1, 'owner', ?1, ?2 FROM features
                     WHERE feature_id NOT IN (SELECT feature_id FROM members WHERE role = 'owner')",
                    params![u.user_id, u.created_at],
                )?;
                Ok(true)
            })
            .await?;
        Ok(created.then_some((user, token)))
    }

    /// Tokens, optionally of one user, newest first.
    pub async fn list_tokens(&self, user_id: Option<&str>) -> Result<Vec<TokenInfo>, AuthError> {
        let user = user_id.map(str::to_owned);
        Ok(self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT token_id, user_id, label, scope, feature_id, session_id, created_at, revoked_at, expires_at
                     FROM api_tokens WHERE ?1 IS NULL OR user_id = ?1
                     ORDER BY created_at DESC, token_id",
                )?;
                let rows = stmt
                    .query_map([user], |r| {
                        let scope: String = r.get(3)?;
                        Ok(TokenInfo {
                            token_id: r.get(0)?,
                            user_id: r.get(1)?,
                            label: r.get(2)?,
                            scope: TokenScope::from_columns(
                                &scope,
                                r.get(4)?,
                                r.get(5)?,
                            ),
                            created_at: r.get(6)?,
                            revoked_at: r.get(7)?,
                            expires_at: r.get(8)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?)
    }

    /// Revoke the sandbox tokens of a session (all, or all but `keep`).
    /// Returns how many were revoked.
    pub async fn revoke_agent_tokens(
        &self,
        feature_id: &str,
        session_id: &str,
        keep: Option<&str>,
    ) -> Result<usize, AuthError> {
        let (f, s, k) = (
            feature_id.to_owned(),
            session_id.to_owned(),
            keep.unwrap_or("").to_owned(),
        );
        let now = canopy_protocol::unix_ms_now();
        Ok(self
            .db
            .write_returning(128, move |conn| {
                conn.execute(
                    "UPDATE api_tokens SET revoked_at = ?4
                     WHERE scope = 'agent' AND feature_id = ?1 AND session_id = ?2
                       AND token_id != ?3 AND revoked_at IS NULL",
                    params![f, s, k, now],
                )
            })
            .await?)
    }

    /// Revoke a token. Returns false if there is no such (unrevoked) token.
    pub async fn revoke_token(&self, token_id: &str) -> Result<bool, AuthError> {
        let id = token_id.to_owned();
        let now = canopy_protocol::unix_ms_now();
        let n = self
            .db
            .write_returning(64, move |conn| {
                conn.execute(
                    "UPDATE api_tokens SET revoked_at = ?2 WHERE token_id = ?1 AND revoked_at IS NULL",
                    params![id, now],
                )
            })
            .await?;
        Ok(n > 0)
    }

    /// Who presents `token`, if anyone: the token must exist, match in
    /// constant time, be neither revoked nor expired, and belong to an
    /// enabled user. All
    /// failures are the same error.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let presented = secret::parse_token(token)?;
        let id = presented.token_id.clone();
        type Row = (
            Vec<u8>,
            Option<i64>,
            String,
            Option<String>,
            Option<String>,
            User,
        );
        let row: Option<Row> = self
            .db
            .read(move |conn| {
                conn.query_row(
                    // An expired token counts as revoked (at its expiry).
                    "SELECT t.secret_hash,
                            COALESCE(t.revoked_at, CASE WHEN t.expires_at <= ?2 THEN t.expires_at END),
                            t.scope, t.feature_id, t.session_id,
                            u.user_id, u.handle, u.display_name, u.email, u.created_at, u.disabled
                     FROM api_tokens t JOIN users u ON u.user_id = t.user_id
                     WHERE t.token_id = ?1",
                    params![id, canopy_protocol::unix_ms_now()],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            User {
                                user_id: r.get(5)?,
                                handle: r.get(6)?,
                                display_name: r.get(7)?,
                                email: r.get(8)?,
                                created_at: r.get(9)?,
                                disabled: r.get(10)?,
                            },
                        ))
                    },
                )
                .optional()
            })
            .await?;
        // Compare against something even when the id is unknown, so timing
        // does not tell a wrong id from a wrong secret.
        let stored = row.as_ref().map_or(&[0u8; 32][..], |r| r.0.as_slice());
        let matches = secret::hashes_equal(stored, &presented.secret_hash);
        let Some((_, revoked_at, scope, feature, session, user)) = row else {
            return Err(AuthError::BadCredentials);
        };
        if !matches || revoked_at.is_some() || user.disabled {
            return Err(AuthError::BadCredentials);
        }
        Ok(Principal {
            user_id: user.user_id,
            handle: user.handle,
            display_name: user.display_name,
            email: user.email,
            token_id: presented.token_id,
            scope: TokenScope::from_columns(&scope, feature, session),
        })
    }
}
