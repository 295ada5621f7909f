//! `canopy user …` and `canopy token …`: administration straight on the
//! data directory's database. SQLite's locking makes this safe while the
//! server runs; the server checks tokens on every request, so a revocation
//! or a disabled user takes effect on the next one.

use std::path::Path;

use crate::{
    audit::{AuditAction, AuditLog},
    auth::{AuthError, NewUser, TokenScope, Users},
    config::{TokenCommand, UserCommand},
    db::{Database, DbConfig, DbError},
    metrics::Metrics,
};

/// Administration errors, printed by the binary.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The database could not be opened.
    #[error("cannot open the database in {dir}: {source}")]
    Open {
        /// The data directory.
        dir: String,
        /// Why.
        source: DbError,
    },
    /// The data directory has no database (yet).
    #[error("no Canopy database in {0}; start the server once (`make run`) or pass --data-dir")]
    NoDatabase(String),
    /// The operation failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A named user does not exist.
    #[error("no user with handle {0:?}")]
    NoUser(String),
}

async fn open(data_dir: &Path) -> Result<(Database, Users, AuditLog), AdminError> {
    let path = data_dir.join("canopy.db");
    if !path.exists() {
        return Err(AdminError::NoDatabase(data_dir.display().to_string()));
    }
    let dir = data_dir.display().to_string();
    let db =
        tokio::task::spawn_blocking(move || Database::open(DbConfig::new(path), Metrics::new()))
            .await
            .map_err(|e| AdminError::Open {
                dir: dir.clone(),
                source: DbError::Task(e.to_string()),
            })?
            .map_err(|source| AdminError::Open { dir, source })?;
    let users = Users::new(db.clone());
    let audit = AuditLog::new(db.clone());
    Ok((db, users, audit))
}

async fn user_id(users: &Users, handle: &str) -> Result<String, AdminError> {
    users
        .user_by_handle(handle)
        .await?
        .map(|u| u.user_id)
        .ok_or_else(|| AdminError::NoUser(handle.to_owned()))
}

/// Run `canopy user …`; returns what to print.
pub async fn user(data_dir: &Path, command: UserCommand) -> Result<String, AdminError> {
    let (db, users, audit) = open(data_dir).await?;
    let out = user_inner(&users, &audit, command).await;
    db.close().await;
    out
}

async fn user_inner(
    users: &Users,
    audit: &AuditLog,
    command: UserCommand,
) -> Result<String, AdminError> {
    Ok(match command {
        UserCommand::Add {
            handle,
            name,
            email,
        } => {
            let user = users
                .create_user(NewUser {
                    handle,
                    display_name: name,
                    email,
                })
                .await?;
            let (info, token) = users
                .create_token(&user.user_id, "created with the user", TokenScope::User)
                .await?;
            audit
                .record(
                    Some(&user.user_id),
                    None,
                    AuditAction::UserCreated,
                    format!(
                        "user {} created with token {} (CLI)",
                        user.handle, info.token_id
                    ),
                )
                .await;
            format!(
                "created user {} ({})\ntoken {} (shown once, keep it secret):\n{token}\n",
                user.handle, user.user_id, info.token_id
            )
        }
        UserCommand::List => {
            let mut out = String::from("HANDLE\tUSER ID\tNAME\tEMAIL\tSTATUS\n");
            for u in users.list_users().await? {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    u.handle,
                    u.user_id,
                    u.display_name,
                    u.email.as_deref().unwrap_or("-"),
                    if u.disabled { "disabled" } else { "active" }
                ));
            }
            out
        }
        UserCommand::Disable { handle } => {
            let id = user_id(users, &handle).await?;
            users.set_disabled(&id, true).await?;
            audit
                .record(
                    Some(&id),
                    None,
                    AuditAction::UserDisabled,
                    format!("{handle} disabled (CLI)"),
                )
                .await;
            format!("disabled {handle}: their tokens and tickets no longer work\n")
        }
        UserCommand::Enable { handle } => {
            let id = user_id(users, &handle).await?;
            users.set_disabled(&id, false).await?;
            audit
                .record(
                    Some(&id),
                    None,
                    AuditAction::UserDisabled,
                    format!("{handle} enabled (CLI)"),
                )
                .await;
            format!("enabled {handle}\n")
        }
    })
}

/// Run `canopy token …`; returns what to print.
pub async fn token(data_dir: &Path, command: TokenCommand) -> Result<String, AdminError> {
    let (db, users, audit) = open(data_dir).await?;
    let out = token_inner(&users, &audit, command).await;
    db.close().await;
    out
}

async fn token_inner(
    users: &Users,
    audit: &AuditLog,
    command: TokenCommand,
) -> Result<String, AdminError> {
    Ok(match command {
        TokenCommand::Create { user, label } => {
            let id = user_id(users, &user).await?;
            let (info, token) = users.create_token(&id, &label, TokenScope::User).await?;
            audit
                .record(
                    Some(&id),
                    None,
                    AuditAction::TokenCreated,
                    format!("token {} for {user} (CLI)", info.token_id),
                )
                .await;
            format!(
                "token {} for {user} (shown once, keep it secret):\n{token}\n",
                info.token_id
            )
        }
        TokenCommand::List { user } => {
            let filter = match &user {
                Some(h) => Some(user_id(users, h).await?),
                None => None,
            };
            let mut out = String::from("TOKEN ID\tUSER ID\tSCOPE\tLABEL\tSTATUS\n");
            for t in users.list_tokens(filter.as_deref()).await? {
                let scope = match &t.scope {
                    TokenScope::User => "user".to_owned(),
                    TokenScope::Agent { session_id, .. } => format!("agent:{session_id}"),
                };
                out.push_str(&format!(
                    "{}\t{}\t{scope}\t{}\t{}\n",
                    t.token_id,
                    t.user_id,
                    if t.label.is_empty() { "-" } else { &t.label },
                    if t.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                ));
            }
            out
        }
        TokenCommand::Revoke { token_id } => {
            if users.revoke_token(&token_id).await? {
                audit
                    .record(
                        None,
                        None,
                        AuditAction::TokenRevoked,
                        format!("token {token_id} revoked (CLI)"),
                    )
                    .await;
                format!("revoked {token_id}\n")
            } else {
                return Err(AuthError::NotFound(format!(
                    "no active token {token_id:?} (see `canopy token list`)"
                ))
                .into());
            }
        }
    })
}
