//! What GitHub's events change in a feature: a session's pull request (its
//! link and state), and a merged pull request completes its session.

use automerge::Automerge;
use canopy_protocol::{
    ChangeMeta,
    feature::{self, PullRequest, QueueStatus, SessionStatus},
    git,
};
use samod::DocHandle;
use serde::Serialize;

use super::{Actor, FeatureError, FeatureService};
use crate::{github::RepoName, registry::DocKind};

/// Who changes a feature on GitHub's word (history shows it as the author).
pub const GITHUB: &str = "@github";

/// A feature's document, as found for a repository.
#[derive(Debug, Clone)]
pub struct RepoFeature {
    /// `ftr_…`.
    pub feature_id: String,
    handle: DocHandle,
}

/// A session a pull request belongs to.
#[derive(Debug, Clone)]
pub struct PrSession {
    /// `ftr_…`.
    pub feature_id: String,
    /// `ses_…`.
    pub session_id: String,
    handle: DocHandle,
}

/// What recording a pull request did.
#[derive(Debug, Clone, Serialize)]
pub struct PrRecorded {
    /// The feature.
    pub feature_id: String,
    /// The session.
    pub session_id: String,
    /// `open`, `closed` or `merged`.
    pub state: String,
    /// Whether this completed the session.
    pub completed: bool,
    /// Why a merged pull request did not complete its session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_completed: Option<String>,
}

impl FeatureService {
    /// The features whose repository is `repo`.
    ///
    /// Reads each feature document's `repo` (documents are in memory once
    /// opened); a deployment with thousands of features would keep the
    /// repository in the registry instead.
    pub async fn features_of_repo(
        &self,
        repo: &RepoName,
    ) -> Result<Vec<RepoFeature>, FeatureError> {
        let mut found = Vec::new();
        for (doc_id, feature_id) in self.registry.documents_of_kind(DocKind::Feature) {
            let Some(handle) = self.repo.find(doc_id).await? else {
                continue;
            };
            let url = handle
                .with_document_async(|d| feature::read_repo(d).map(|r| r.url))
                .await?;
            if url.as_deref().and_then(RepoName::from_url).as_ref() == Some(repo) {
                found.push(RepoFeature { feature_id, handle });
            }
        }
        found.sort_by(|a, b| a.feature_id.cmp(&b.feature_id));
        Ok(found)
    }

    /// The session of one of `features` that a pull request is for: the
    /// one whose pull request it already is (by number), else the one its
    /// branch names (see [`canopy_protocol::git`]).
    pub async fn session_of_pull_request(
        &self,
        features: &[RepoFeature],
        branch: &str,
        number: u64,
    ) -> Result<Option<PrSession>, FeatureError> {
        let key = git::session_key_of_branch(branch).map(str::to_owned);
        for f in features {
            let key = key.clone();
            let found = f
                .handle
                .with_document_async(move |doc| pr_session(doc, key.as_deref(), number))
                .await?;
            if let Some(session_id) = found {
                return Ok(Some(PrSession {
                    feature_id: f.feature_id.clone(),
                    session_id,
                    handle: f.handle.clone(),
                }));
            }
        }
        Ok(None)
    }

    /// Record `pr` in its session. A merged pull request completes the
    /// session, unless one of its prompts is running (it says so); a
    /// completed session stays completed whatever the pull request does.
    #[tracing::instrument(skip(self, pr), fields(feature_id = %at.feature_id, session_id = %at.session_id))]
    pub async fn record_pull_request(
        &self,
        at: &PrSession,
        pr: PullRequest,
    ) -> Result<PrRecorded, FeatureError> {
        self.ensure_writable()?;
        let handle = &at.handle;
        self.bind_server_actor(handle).await?;
        let actor = Actor {
            user_id: GITHUB.into(),
            name: "GitHub".into(),
        };
        let sid = at.session_id.clone();
        let state = pr.state.clone();
        let (completed, not_completed) = self
            .write_for(handle, &actor, move |doc| record(doc, &sid, &pr))
            .await??;
        tracing::info!(state, completed, "pull request recorded");
        Ok(PrRecorded {
            feature_id: at.feature_id.clone(),
            session_id: at.session_id.clone(),
            state,
            completed,
            not_completed,
        })
    }
}

/// The session (of this document) for pull request `number` or branch key
/// `key`.
fn pr_session(doc: &Automerge, key: Option<&str>, number: u64) -> Option<String> {
    let sessions = feature::session_ids(doc);
    let by_number = sessions.iter().find(|sid| {
        feature::read_session(doc, sid)
            .and_then(|s| s.pr)
            .is_some_and(|p| p.number == number)
    });
    by_number
        .or_else(|| {
            let key = key?;
            sessions.iter().find(|sid| git::is_session_key(sid, key))
        })
        .cloned()
}

/// Write `pr` into session `sid`; returns (completed, why not).
fn record(
    doc: &mut Automerge,
    sid: &str,
    pr: &PullRequest,
) -> Result<(bool, Option<String>), FeatureError> {
    let session = feature::read_session(doc, sid)
        .ok_or_else(|| FeatureError::SessionNotFound(sid.to_owned()))?;
    let running = session.status == SessionStatus::Running
        || feature::open_queue_entries_with_objects(doc)
            .into_iter()
            .any(|(_, e)| {
                e.session_id == sid
                    && matches!(e.status, QueueStatus::Dispatched | QueueStatus::Running)
            });
    let complete = pr.state == "merged" && session.status != SessionStatus::Completed && !running;
    let not_completed = (pr.state == "merged" && running)
        .then(|| "a prompt of the session is running; complete it when it ends".to_owned());
    if session.pr.as_ref() == Some(pr) && !complete {
        return Ok((false, not_completed));
    }
    let message = format!("pull request #{} {}", pr.number, pr.state);
    doc.transact_with(
        |_| ChangeMeta::now(message.clone()).commit_options(),
        |tx| {
            feature::set_session_pr(tx, sid, Some(pr))?;
            if complete {
                feature::set_session_status(tx, sid, &SessionStatus::Completed)?;
            }
            Ok::<_, canopy_protocol::SchemaError>(())
        },
    )
    .map_err(|f| FeatureError::Document(f.error.to_string()))?;
    Ok((complete, not_completed))
}

impl FeatureService {
    /// The feature's document and session `session_id` of it, for
    /// `actor` who may write, to open the session's pull request.
    pub async fn session_for_pull_request(
        &self,
        feature_id: &str,
        session_id: &str,
        actor: &Actor,
    ) -> Result<(feature::FeatureDoc, PrSession), FeatureError> {
        self.check_session(feature_id, session_id, actor, true)
            .await?;
        let (_, handle) = self.handle(feature_id).await?;
        let doc = handle
            .with_document_async(|d| feature::read(d))
            .await?
            .map_err(|e| FeatureError::Document(e.to_string()))?;
        Ok((
            doc,
            PrSession {
                feature_id: feature_id.to_owned(),
                session_id: session_id.to_owned(),
                handle,
            },
        ))
    }

    /// Record the pull request `actor` opened (or updated) for a session.
    pub async fn set_pull_request(
        &self,
        at: &PrSession,
        actor: &Actor,
        pr: PullRequest,
    ) -> Result<(), FeatureError> {
        self.ensure_writable()?;
        self.bind_server_actor(&at.handle).await?;
        let sid = at.session_id.clone();
        self.write_for(&at.handle, actor, move |doc| {
            if feature::read_session(doc, &sid).and_then(|s| s.pr).as_ref() == Some(&pr) {
                return Ok(());
            }
            let message = format!("pull request #{} {}", pr.number, pr.state);
            doc.transact_with(
                |_| ChangeMeta::now(message.clone()).commit_options(),
                |tx| feature::set_session_pr(tx, &sid, Some(&pr)),
            )
            .map(|_| ())
            .map_err(|f| FeatureError::Document(f.error.to_string()))
        })
        .await?
    }
}
