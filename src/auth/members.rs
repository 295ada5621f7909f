//! Per-feature memberships: the access control list. SQLite is the
//! authority; an in-memory copy answers the sync share policy without a
//! query per message, and a version channel tells live connections when to
//! ask again.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
};

use rusqlite::params;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::AuthError;
use crate::db::Database;

/// A member's role in one feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Full control, including membership.
    Owner,
    /// Reads and writes the feature.
    Contributor,
    /// Reads only.
    Viewer,
}

impl Role {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Contributor => "contributor",
            Role::Viewer => "viewer",
        }
    }

    /// Parse the stored and wire name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "contributor" => Some(Role::Contributor),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// Whether the role may change the feature.
    pub fn can_write(self) -> bool {
        matches!(self, Role::Owner | Role::Contributor)
    }
}

/// One membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// `usr_…`
    pub user_id: String,
    /// The user's handle.
    pub handle: String,
    /// The user's display name.
    pub display_name: String,
    /// The role.
    pub role: Role,
    /// Who added them.
    pub added_by: String,
    /// Unix milliseconds.
    pub added_at: i64,
}

type Acl = HashMap<String, HashMap<String, Role>>;

/// The membership store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Members {
    db: Database,
    acl: Arc<RwLock<Acl>>,
    /// Disabled users have no role anywhere. Users are disabled from the
    /// CLI (another process), so the set is refreshed from the database.
    disabled: Arc<RwLock<HashSet<String>>>,
    version: Arc<watch::Sender<u64>>,
}

impl Members {
    /// Load every membership.
    pub async fn load(db: Database) -> Result<Members, AuthError> {
        let rows = db
            .read(|conn| {
                let mut stmt = conn.prepare("SELECT feature_id, user_id, role FROM members")?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?;
        let mut acl: Acl = HashMap::new();
        for (feature, user, role) in rows {
            // The schema's CHECK constraint admits only known roles.
            if let Some(role) = Role::parse(&role) {
                acl.entry(feature).or_default().insert(user, role);
            }
        }
        let members = Members {
            db,
            acl: Arc::new(RwLock::new(acl)),
            disabled: Arc::default(),
            version: Arc::new(watch::channel(0).0),
        };
        members.refresh_disabled().await?;
        Ok(members)
    }

    /// Re-read which users are disabled; if that changed, every live share
    /// decision is re-made (a disabled user's connections stop receiving
    /// and their changes stop being accepted). Returns whether it changed.
    pub async fn refresh_disabled(&self) -> Result<bool, AuthError> {
        let now: HashSet<String> = self
            .db
            .read(|conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT user_id FROM users WHERE disabled = 1")?;
                let rows = stmt
                    .query_map([], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<HashSet<_>>>()?;
                Ok(rows)
            })
            .await?;
        let changed = {
            let mut disabled = self.disabled.write().unwrap_or_else(|p| p.into_inner());
            let changed = *disabled != now;
            *disabled = now;
            changed
        };
        if changed {
            self.version.send_modify(|v| *v += 1);
        }
        Ok(changed)
    }

    /// `user_id`'s role in `feature_id`, if any (none for a disabled user).
    pub fn role(&self, feature_id: &str, user_id: &str) -> Option<Role> {
        if self
            .disabled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(user_id)
        {
            return None;
        }
        self.acl
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(feature_id)?
            .get(user_id)
            .copied()
    }

    /// Notified whenever any membership changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Set `user_id`'s role in `feature_id` (insert or change).
    pub async fn set(
        &self,
        feature_id: &str,
        user_id: &str,
        role: Role,
        added_by: &str,
    ) -> Result<(), AuthError> {
        let (f, u, by) = (
            feature_id.to_owned(),
            user_id.to_owned(),
            added_by.to_owned(),
        );
        let now = canopy_protocol::unix_ms_now();
        self.db
            .write(128, move |conn| {
                conn.execute(
                    "INSERT INTO members (feature_id, user_id, role, added_by, added_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (feature_id, user_id) DO UPDATE SET role = excluded.role",
                    params![f, u, role.as_str(), by, now],
                )?;
                Ok(())
            })
            .await?;
        self.acl
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(feature_id.to_owned())
            .or_default()
            .insert(user_id.to_owned(), role);
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Record in memory that `user_id` owns the new feature `feature_id`,
    /// whose registration writes the row (see `Registry::register_feature`).
    /// If that write fails the feature does not exist, so the entry grants
    /// nothing.
    pub(crate) fn note_owner(&self, feature_id: &str, user_id: &str) {
        self.acl
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(feature_id.to_owned())
            .or_default()
            .insert(user_id.to_owned(), Role::Owner);
        self.version.send_modify(|v| *v += 1);
    }

    /// Remove `user_id` from `feature_id`. Returns whether they were a member.
    pub async fn remove(&self, feature_id: &str, user_id: &str) -> Result<bool, AuthError> {
        let (f, u) = (feature_id.to_owned(), user_id.to_owned());
        let n = self
            .db
            .write_returning(64, move |conn| {
                conn.execute(
                    "DELETE FROM members WHERE feature_id = ?1 AND user_id = ?2",
                    params![f, u],
                )
            })
            .await?;
        if let Some(m) = self
            .acl
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(feature_id)
        {
            m.remove(user_id);
        }
        self.version.send_modify(|v| *v += 1);
        Ok(n > 0)
    }

    /// The members of a feature, owners first.
    pub async fn list(&self, feature_id: &str) -> Result<Vec<Member>, AuthError> {
        let f = feature_id.to_owned();
        let rows = self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT m.user_id, u.handle, u.display_name, m.role, m.added_by, m.added_at
                     FROM members m JOIN users u ON u.user_id = m.user_id
                     WHERE m.feature_id = ?1 ORDER BY m.added_at, u.handle",
                )?;
                let rows = stmt
                    .query_map([f], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, i64>(5)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?;
        let mut members: Vec<Member> = rows
            .into_iter()
            .filter_map(
                |(user_id, handle, display_name, role, added_by, added_at)| {
                    Some(Member {
                        user_id,
                        handle,
                        display_name,
                        role: Role::parse(&role)?,
                        added_by,
                        added_at,
                    })
                },
            )
            .collect();
        members.sort_by_key(|m| m.role != Role::Owner);
        Ok(members)
    }

    /// Feature ids `user_id` is a member of.
    pub fn features_of(&self, user_id: &str) -> Vec<String> {
        self.acl
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, m)| m.contains_key(user_id))
            .map(|(f, _)| f.clone())
            .collect()
    }
}
