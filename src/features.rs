//! Feature operations behind the HTTP API: create a feature (document +
//! registry entry), read it, add sessions and queue entries for clients that
//! do not speak CRDT.
//!
//! Every change the server makes carries a real timestamp and a short
//! message, and goes through samod so it is persisted and synced like any
//! peer's change.

use automerge::Automerge;
use canopy_protocol::{
    ChangeMeta,
    feature::{
        self, FeatureDoc, NewFeature, NewQueueEntry, NewSession, QueueEntry, QueueStatus, RepoRef,
        SessionStatus,
    },
    ids, unix_ms_now,
};
use samod::{DocHandle, DocumentId, Repo};
use serde::Serialize;

use crate::{
    attribution::Attribution,
    auth::{Members, Role, User, members::Member},
    db::Database,
    registry::{FeatureRecord, Registry, RegistryError},
    summaries::Opened,
};

mod github;
mod history;
pub use github::{GITHUB, PrRecorded, PrSession, RepoFeature};
pub use history::{HistoryRequest, HistoryTarget, Restored};

/// Limits on what people send; generous for real use, small enough that one
/// request cannot bloat a document.
pub mod limits {
    /// Feature and session titles, in characters.
    pub const TITLE_CHARS: usize = 200;
    /// Descriptions and scopes, in characters.
    pub const DESCRIPTION_CHARS: usize = 20_000;
    /// Unfinished queue entries per session, all users together: a
    /// backstop above the per-user limit.
    pub const QUEUED_PER_SESSION: usize = 1000;
    /// `depends_on` entries.
    pub const DEPENDENCIES: usize = 32;
    /// Repository URLs and branch names.
    pub const REF_CHARS: usize = 2048;
    /// Page size for listings.
    pub const PAGE_MAX: u32 = 500;
}

/// Per-user limits on what people queue (configurable; see `canopy serve --help`).
#[derive(Debug, Clone, Copy)]
pub struct FeatureLimits {
    /// Unfinished prompts one user may have in one session.
    pub queued_per_user: usize,
    /// Largest prompt, in UTF-8 bytes.
    pub prompt_bytes: usize,
}

/// Who is making a request: an authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// User id recorded as author.
    pub user_id: String,
    /// Display name.
    pub name: String,
}

impl From<&crate::auth::Principal> for Actor {
    fn from(p: &crate::auth::Principal) -> Self {
        Actor {
            user_id: p.user_id.clone(),
            name: p.display_name.clone(),
        }
    }
}

/// Feature operation errors; the HTTP layer maps them to status codes.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// No such feature (or not visible to the caller).
    #[error("feature {0} not found")]
    NotFound(String),
    /// No such session in the feature.
    #[error("session {0} not found in this feature")]
    SessionNotFound(String),
    /// A field is invalid.
    #[error("{0}")]
    Invalid(String),
    /// Too many unfinished queue entries.
    #[error(
        "session {0} already has {1} of your prompts unfinished; wait for some to finish or cancel one"
    )]
    QueueFull(String, usize),
    /// Something is larger than its limit.
    #[error("{0}")]
    TooLarge(String),
    /// Storage refuses writes.
    #[error("storage is not accepting writes: {0}")]
    Unavailable(String),
    /// The caller is a member but their role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The document could not be read or changed.
    #[error("document error: {0}")]
    Document(String),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The request conflicts with the session's state (a run in flight).
    #[error("{0}")]
    Busy(String),
    /// The hub is stopping.
    #[error("the server is shutting down")]
    Stopped,
    /// A history request is malformed or names what the document lacks.
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
}

impl From<samod::Stopped> for FeatureError {
    fn from(_: samod::Stopped) -> Self {
        FeatureError::Stopped
    }
}

/// What `create` returns.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedFeature {
    /// `ftr_…`
    pub feature_id: String,
    /// `automerge:…`, what clients `find`.
    pub doc_url: String,
    /// The bare document id.
    pub document_id: String,
}

/// A feature document rendered as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureSnapshot {
    /// `ftr_…`
    pub feature_id: String,
    /// `automerge:…`
    pub doc_url: String,
    /// Current heads (hex change hashes).
    pub heads: Vec<String>,
    /// The document.
    pub document: FeatureDoc,
}

/// Input for a new feature.
#[derive(Debug, Clone)]
pub struct CreateFeature {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Repository.
    pub repo: Option<RepoRef>,
}

/// Input for a new session.
#[derive(Debug, Clone)]
pub struct CreateSession {
    /// Title.
    pub title: String,
    /// Scope.
    pub scope: String,
    /// Sessions this one waits for.
    pub depends_on: Vec<String>,
}

/// Input for a queue entry.
#[derive(Debug, Clone)]
pub struct Enqueue {
    /// Session to run the prompt in.
    pub session_id: String,
    /// The prompt.
    pub text: String,
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), FeatureError> {
    let n = value.chars().count();
    if n > max {
        return Err(FeatureError::Invalid(format!(
            "{field} is {n} characters long; the limit is {max}"
        )));
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), FeatureError> {
    if required && value.trim().is_empty() {
        return Err(FeatureError::Invalid(format!("{field} must not be empty")));
    }
    if value.chars().any(|c| c == '\0') {
        return Err(FeatureError::Invalid(format!(
            "{field} must not contain NUL characters"
        )));
    }
    check_len(field, value, max)
}

fn check_repo(repo: &RepoRef) -> Result<(), FeatureError> {
    check_text("repo.url", &repo.url, limits::REF_CHARS, true)?;
    let url = repo.url.as_str();
    let scheme_ok = ["https://", "http://", "ssh://", "git://", "file://"]
        .iter()
        .any(|s| url.starts_with(s))
        || (url.starts_with("git@") && url.contains(':'));
    if !scheme_ok || url.chars().any(char::is_whitespace) {
        return Err(FeatureError::Invalid(format!(
            "repo.url {url:?} is not a git URL (https://, ssh://, git://, file:// or git@host:path)"
        )));
    }
    for (field, value) in [
        ("repo.base_branch", Some(&repo.base_branch)),
        ("repo.feature_branch", repo.feature_branch.as_ref()),
    ] {
        if let Some(b) = value {
            check_text(field, b, 255, field == "repo.base_branch")?;
            if b.starts_with('-')
                || b.contains("..")
                || b.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(FeatureError::Invalid(format!(
                    "{field} {b:?} is not a valid branch name"
                )));
            }
        }
    }
    Ok(())
}

/// Feature operations. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FeatureService {
    registry: Registry,
    members: Members,
    attribution: Attribution,
    limits: FeatureLimits,
    repo: Repo,
    db: Database,
    opened: Opened,
    history: crate::history::HistoryCache,
}

impl FeatureService {
    /// A service over the registry, memberships and samod repo.
    pub fn new(
        registry: Registry,
        members: Members,
        attribution: Attribution,
        limits: FeatureLimits,
        repo: Repo,
        db: Database,
        opened: Opened,
    ) -> Self {
        FeatureService {
            registry,
            members,
            attribution,
            limits,
            repo,
            db,
            opened,
            history: crate::history::HistoryCache::default(),
        }
    }

    /// `actor`'s role in the feature. Not a member is the same answer as no
    /// such feature: a feature a user cannot see does not exist for them.
    pub fn role(&self, feature_id: &str, actor: &Actor) -> Result<Role, FeatureError> {
        self.members
            .role(feature_id, &actor.user_id)
            .ok_or_else(|| FeatureError::NotFound(feature_id.to_owned()))
    }

    fn require_write(&self, feature_id: &str, actor: &Actor) -> Result<(), FeatureError> {
        let role = self.role(feature_id, actor)?;
        if role.can_write() {
            Ok(())
        } else {
            Err(FeatureError::Forbidden(format!(
                "your role in feature {feature_id} is {}; it cannot change the feature",
                role.as_str()
            )))
        }
    }

    /// Bind the actor the server writes this document with to
    /// [`crate::attribution::SERVER`], so no client can claim it.
    async fn bind_server_actor(&self, handle: &DocHandle) -> Result<(), FeatureError> {
        let actor = handle
            .with_document_async(|d| d.get_actor().to_hex_string())
            .await?;
        self.attribution
            .bind(&[actor], crate::attribution::SERVER)
            .await
            .map_err(|e| FeatureError::Unavailable(e.to_string()))
    }

    fn ensure_writable(&self) -> Result<(), FeatureError> {
        match self.db.health() {
            crate::db::StorageHealth::Ok => Ok(()),
            crate::db::StorageHealth::Failed { error } => Err(FeatureError::Unavailable(error)),
        }
    }

    /// Run `f` on the document, and record `actor` as the author of the
    /// change(s) it made (the server writes them with its own actor, on
    /// the caller's behalf; the history browser shows the caller).
    async fn write_for<R: Send + 'static>(
        &self,
        handle: &DocHandle,
        actor: &Actor,
        f: impl FnOnce(&mut Automerge) -> R + Send + 'static,
    ) -> Result<R, FeatureError> {
        let (result, made) = handle
            .with_document_async(move |doc| {
                let before = doc.get_heads();
                let result = f(doc);
                let made: Vec<String> = doc
                    .get_heads()
                    .iter()
                    .filter(|h| !before.contains(h))
                    .map(ToString::to_string)
                    .collect();
                (result, made)
            })
            .await?;
        if !made.is_empty() {
            self.attribution.record_origins(
                &handle.document_id().to_string(),
                &actor.user_id,
                crate::attribution::SERVER,
                made,
            );
        }
        Ok(result)
    }

    /// Create a feature: its document (persisted before this returns) and
    /// its registry entry, which makes the document visible to peers.
    #[tracing::instrument(skip_all, fields(feature_id = tracing::field::Empty, document_id = tracing::field::Empty))]
    pub async fn create(
        &self,
        input: CreateFeature,
        actor: &Actor,
    ) -> Result<CreatedFeature, FeatureError> {
        check_text("title", &input.title, limits::TITLE_CHARS, true)?;
        check_text(
            "description",
            &input.description,
            limits::DESCRIPTION_CHARS,
            false,
        )?;
        if let Some(repo) = &input.repo {
            check_repo(repo)?;
        }
        self.ensure_writable()?;

        let feature_id = ids::new_feature_id();
        tracing::Span::current().record("feature_id", feature_id.as_str());
        let created_at = unix_ms_now();
        let doc: Automerge = feature::new_feature_document(&NewFeature {
            feature_id: feature_id.clone(),
            title: input.title.trim().to_owned(),
            description: input.description,
            repo: input.repo,
            created_by: actor.user_id.clone(),
            created_by_name: actor.name.clone(),
            created_at,
        })
        .map_err(|e| FeatureError::Document(e.to_string()))?;
        let handle = self.repo.create(doc).await?;
        self.bind_server_actor(&handle).await?;
        let first: Vec<String> = handle
            .with_document_async(|d| {
                d.get_changes(&[])
                    .iter()
                    .map(|c| c.hash().to_string())
                    .collect()
            })
            .await?;
        self.attribution.record_origins(
            &handle.document_id().to_string(),
            &actor.user_id,
            crate::attribution::SERVER,
            first,
        );
        let document_id = handle.document_id().clone();
        tracing::Span::current().record("document_id", tracing::field::display(&document_id));
        let record = FeatureRecord {
            feature_id: feature_id.clone(),
            document_id: document_id.to_string(),
            title: input.title.trim().to_owned(),
            status: "active".into(),
            created_by: actor.user_id.clone(),
            created_at,
            updated_at: created_at,
        };
        // The owner's membership is written with the registration, and
        // known to the share policy before the document is.
        self.members.note_owner(&feature_id, &actor.user_id);
        self.registry
            .register_feature(record, document_id.clone())
            .await?;
        // samod opened the document before it was registered; follow it now.
        self.opened.notify(document_id.clone());
        tracing::info!(feature_id, document_id = %document_id, "feature created");
        Ok(CreatedFeature {
            feature_id,
            doc_url: handle.url().to_string(),
            document_id: document_id.to_string(),
        })
    }

    /// Features `actor` is a member of, newest first.
    pub async fn list(
        &self,
        actor: &Actor,
        limit: u32,
        before: Option<(i64, String)>,
    ) -> Result<Vec<FeatureRecord>, FeatureError> {
        Ok(self
            .registry
            .list_features_for(&actor.user_id, limit.clamp(1, limits::PAGE_MAX), before)
            .await?)
    }

    async fn handle(&self, feature_id: &str) -> Result<(FeatureRecord, DocHandle), FeatureError> {
        if !ids::is_valid_id(ids::FEATURE_PREFIX, feature_id) {
            return Err(FeatureError::NotFound(feature_id.to_owned()));
        }
        let record = self
            .registry
            .feature(feature_id)
            .await?
            .ok_or_else(|| FeatureError::NotFound(feature_id.to_owned()))?;
        let doc_id: DocumentId = record.document_id.parse().map_err(|_| {
            FeatureError::Document(format!("bad document id {}", record.document_id))
        })?;
        let handle = self.repo.find(doc_id).await?.ok_or_else(|| {
            FeatureError::Document(format!(
                "document {} of feature {feature_id} is missing from storage",
                record.document_id
            ))
        })?;
        Ok((record, handle))
    }

    /// The current document as JSON.
    #[tracing::instrument(skip(self, actor))]
    pub async fn snapshot(
        &self,
        feature_id: &str,
        actor: &Actor,
    ) -> Result<FeatureSnapshot, FeatureError> {
        self.role(feature_id, actor)?;
        let (record, handle) = self.handle(feature_id).await?;
        let (doc, heads) = handle
            .with_document_async(|doc| (feature::read(doc), doc.get_heads()))
            .await?;
        let document = doc.map_err(|e| FeatureError::Document(e.to_string()))?;
        Ok(FeatureSnapshot {
            feature_id: record.feature_id,
            doc_url: handle.url().to_string(),
            heads: heads.iter().map(|h| h.to_string()).collect(),
            document,
        })
    }

    /// Add a session (status `pending`).
    #[tracing::instrument(skip(self, input, actor))]
    pub async fn add_session(
        &self,
        feature_id: &str,
        input: CreateSession,
        actor: &Actor,
    ) -> Result<(String, feature::Session), FeatureError> {
        check_text("title", &input.title, limits::TITLE_CHARS, true)?;
        check_text("scope", &input.scope, limits::DESCRIPTION_CHARS, false)?;
        if input.depends_on.len() > limits::DEPENDENCIES {
            return Err(FeatureError::Invalid(format!(
                "depends_on lists {} sessions; the limit is {}",
                input.depends_on.len(),
                limits::DEPENDENCIES
            )));
        }
        for dep in &input.depends_on {
            if !ids::is_valid_id(ids::SESSION_PREFIX, dep) {
                return Err(FeatureError::Invalid(format!(
                    "depends_on entry {dep:?} is not a session id"
                )));
            }
        }
        self.require_write(feature_id, actor)?;
        self.ensure_writable()?;
        let (_, handle) = self.handle(feature_id).await?;
        self.bind_server_actor(&handle).await?;
        let session_id = ids::new_session_id();
        let new = NewSession {
            session_id: session_id.clone(),
            title: input.title.trim().to_owned(),
            scope: input.scope,
            depends_on: input.depends_on,
            created_by: actor.user_id.clone(),
            created_at: unix_ms_now(),
        };
        let sid = session_id.clone();
        let session = self
            .write_for(&handle, actor, move |doc| {
                for dep in &new.depends_on {
                    if feature::read_session(doc, dep).is_none() {
                        return Err(FeatureError::Invalid(format!(
                            "depends_on: session {dep} does not exist in this feature"
                        )));
                    }
                }
                doc.transact_with(
                    |_| ChangeMeta::now(format!("add session {sid}")).commit_options(),
                    |tx| feature::add_session(tx, &new),
                )
                .map_err(|f| FeatureError::Document(f.error.to_string()))?;
                feature::read_session(doc, &sid).ok_or_else(|| {
                    FeatureError::Document("session vanished after being added".into())
                })
            })
            .await??;
        tracing::info!(feature_id, session_id, "session added");
        Ok((session_id, session))
    }

    /// Check that `session_id` exists in the feature and that `actor` may
    /// see it (or change it, with `write`).
    pub async fn check_session(
        &self,
        feature_id: &str,
        session_id: &str,
        actor: &Actor,
        write: bool,
    ) -> Result<(), FeatureError> {
        if write {
            self.require_write(feature_id, actor)?;
        } else {
            self.role(feature_id, actor)?;
        }
        if !ids::is_valid_id(ids::SESSION_PREFIX, session_id) {
            return Err(FeatureError::SessionNotFound(session_id.to_owned()));
        }
        let (_, handle) = self.handle(feature_id).await?;
        let sid = session_id.to_owned();
        let exists = handle
            .with_document_async(move |doc| feature::read_session(doc, &sid).is_some())
            .await?;
        if exists {
            Ok(())
        } else {
            Err(FeatureError::SessionNotFound(session_id.to_owned()))
        }
    }

    /// Mark a session `completed`: its work is done, and sessions that
    /// depend on it may start. Refused while one of its prompts runs.
    #[tracing::instrument(skip(self, actor))]
    pub async fn complete_session(
        &self,
        feature_id: &str,
        session_id: &str,
        actor: &Actor,
    ) -> Result<(), FeatureError> {
        self.check_session(feature_id, session_id, actor, true)
            .await?;
        let (_, handle) = self.handle(feature_id).await?;
        let sid = session_id.to_owned();
        self
            .write_for(&handle, actor, move |doc| {
                // A run whose entry settled is still `running` until its
                // commit is recorded.
                let in_flight = feature::open_queue_entries_with_objects(doc)
                    .into_iter()
                    .any(|(_, e)| {
                        e.session_id == sid
                            && matches!(e.status, QueueStatus::Dispatched | QueueStatus::Running)
                    })
                    || feature::read_session(doc, &sid)
                        .is_some_and(|s| s.status == SessionStatus::Running);
                if in_flight {
                    return Err(FeatureError::Busy(format!(
                        "session {sid} is running a prompt; stop it or wait before completing the session"
                    )));
                }
                doc.transact_with(
                    |_| ChangeMeta::now(format!("complete session {sid}")).commit_options(),
                    |tx| feature::set_session_status(tx, &sid, &SessionStatus::Completed),
                )
                .map_err(|f| FeatureError::Document(f.error.to_string()))?;
                Ok(())
            })
            .await??;
        tracing::info!(feature_id, session_id, "session completed");
        Ok(())
    }

    /// Append a prompt to the queue, as `queued`.
    #[tracing::instrument(skip(self, input, actor), fields(session_id = %input.session_id))]
    pub async fn enqueue(
        &self,
        feature_id: &str,
        input: Enqueue,
        actor: &Actor,
    ) -> Result<QueueEntry, FeatureError> {
        check_text("text", &input.text, usize::MAX, true)?;
        if input.text.len() > self.limits.prompt_bytes {
            return Err(FeatureError::TooLarge(format!(
                "the prompt is {} bytes; the limit is {} bytes",
                input.text.len(),
                self.limits.prompt_bytes
            )));
        }
        if !ids::is_valid_id(ids::SESSION_PREFIX, &input.session_id) {
            return Err(FeatureError::SessionNotFound(input.session_id));
        }
        self.require_write(feature_id, actor)?;
        self.ensure_writable()?;
        let (_, handle) = self.handle(feature_id).await?;
        self.bind_server_actor(&handle).await?;
        let entry = NewQueueEntry {
            id: ids::new_queue_entry_id(),
            session_id: input.session_id,
            author: actor.user_id.clone(),
            text: input.text,
            created_at: unix_ms_now(),
        };
        let entry_id = entry.id.clone();
        let per_user = self.limits.queued_per_user;
        let queued = self
            .write_for(&handle, actor, move |doc| {
                if feature::read_session(doc, &entry.session_id).is_none() {
                    return Err(FeatureError::SessionNotFound(entry.session_id.clone()));
                }
                let mine =
                    feature::unfinished_queue_entries_by(doc, &entry.session_id, &entry.author);
                if mine >= per_user {
                    return Err(FeatureError::QueueFull(entry.session_id.clone(), mine));
                }
                let all = feature::unfinished_queue_entries(doc, &entry.session_id);
                if all >= limits::QUEUED_PER_SESSION {
                    return Err(FeatureError::QueueFull(entry.session_id.clone(), all));
                }
                doc.transact_with(
                    |_| ChangeMeta::now(format!("queue prompt {}", entry.id)).commit_options(),
                    |tx| feature::append_queue_entry(tx, &entry),
                )
                .map_err(|f| FeatureError::Document(f.error.to_string()))?;
                feature::find_queue_entry(doc, &entry.id)
                    .ok_or_else(|| FeatureError::Document("queue entry vanished".into()))
            })
            .await??;
        tracing::info!(feature_id, queue_entry = entry_id, "prompt queued");
        Ok(queued)
    }

    /// The members of a feature; any member may look.
    pub async fn members(
        &self,
        feature_id: &str,
        actor: &Actor,
    ) -> Result<Vec<Member>, FeatureError> {
        self.role(feature_id, actor)?;
        self.members
            .list(feature_id)
            .await
            .map_err(|e| FeatureError::Document(e.to_string()))
    }

    fn require_owner(&self, feature_id: &str, actor: &Actor) -> Result<(), FeatureError> {
        match self.role(feature_id, actor)? {
            Role::Owner => Ok(()),
            role => Err(FeatureError::Forbidden(format!(
                "only owners manage members; your role in feature {feature_id} is {}",
                role.as_str()
            ))),
        }
    }

    /// Refuse a change that would leave the feature without an owner.
    async fn keep_an_owner(
        &self,
        feature_id: &str,
        user_id: &str,
        new_role: Option<Role>,
    ) -> Result<(), FeatureError> {
        if self.members.role(feature_id, user_id) != Some(Role::Owner)
            || new_role == Some(Role::Owner)
        {
            return Ok(());
        }
        let owners = self
            .members
            .list(feature_id)
            .await
            .map_err(|e| FeatureError::Document(e.to_string()))?
            .iter()
            .filter(|m| m.role == Role::Owner)
            .count();
        if owners <= 1 {
            return Err(FeatureError::Invalid(
                "a feature must keep at least one owner; add another owner first".into(),
            ));
        }
        Ok(())
    }

    /// Give `user` `role` in the feature (owners only), and mirror it into
    /// the document's participants for display.
    #[tracing::instrument(skip(self, actor, user), fields(user_id = %user.user_id))]
    pub async fn set_member(
        &self,
        feature_id: &str,
        actor: &Actor,
        user: &User,
        role: Role,
    ) -> Result<(), FeatureError> {
        self.require_owner(feature_id, actor)?;
        if user.disabled {
            return Err(FeatureError::Invalid(format!(
                "user {} is disabled",
                user.handle
            )));
        }
        self.keep_an_owner(feature_id, &user.user_id, Some(role))
            .await?;
        self.ensure_writable()?;
        self.members
            .set(feature_id, &user.user_id, role, &actor.user_id)
            .await
            .map_err(|e| FeatureError::Unavailable(e.to_string()))?;
        let (_, handle) = self.handle(feature_id).await?;
        self.bind_server_actor(&handle).await?;
        let (uid, participant) = (
            user.user_id.clone(),
            feature::Participant {
                name: user.display_name.clone(),
                role: role.as_str().to_owned(),
            },
        );
        self.write_for(&handle, actor, move |doc| {
            doc.transact_with(
                |_| {
                    ChangeMeta::now(format!("member {uid} is {}", participant.role))
                        .commit_options()
                },
                |tx| feature::set_participant(tx, &uid, &participant),
            )
            .map(|_| ())
            .map_err(|f| FeatureError::Document(f.error.to_string()))
        })
        .await??;
        tracing::info!(feature_id, role = role.as_str(), "member set");
        Ok(())
    }

    /// Remove `user_id` from the feature: owners remove anyone, anyone may
    /// leave. Their live connections stop receiving changes at once (the
    /// share policy follows the membership).
    #[tracing::instrument(skip(self, actor))]
    pub async fn remove_member(
        &self,
        feature_id: &str,
        actor: &Actor,
        user_id: &str,
    ) -> Result<(), FeatureError> {
        if actor.user_id != user_id {
            self.require_owner(feature_id, actor)?;
        } else {
            self.role(feature_id, actor)?;
        }
        if self.members.role(feature_id, user_id).is_none() {
            return Err(FeatureError::Invalid(format!(
                "{user_id} is not a member of this feature"
            )));
        }
        self.keep_an_owner(feature_id, user_id, None).await?;
        self.ensure_writable()?;
        self.members
            .remove(feature_id, user_id)
            .await
            .map_err(|e| FeatureError::Unavailable(e.to_string()))?;
        let (_, handle) = self.handle(feature_id).await?;
        self.bind_server_actor(&handle).await?;
        let uid = user_id.to_owned();
        self.write_for(&handle, actor, move |doc| {
            doc.transact_with(
                |_| ChangeMeta::now(format!("member {uid} removed")).commit_options(),
                |tx| feature::remove_participant(tx, &uid),
            )
            .map(|_| ())
            .map_err(|f| FeatureError::Document(f.error.to_string()))
        })
        .await??;
        tracing::info!(feature_id, user_id, "member removed");
        Ok(())
    }
}
