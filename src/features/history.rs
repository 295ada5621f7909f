//! The history browser's reads and restores, with the feature's access
//! rules: members (viewers included) browse, writers restore.

use std::sync::Arc;

use canopy_protocol::ChangeMeta;
use samod::{DocHandle, DocumentId};
use serde_json::Value;

use super::{Actor, FeatureError, FeatureService};
use crate::history::{self, Page, PageQuery};

/// Which document of a feature to browse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryTarget {
    /// The feature document.
    Feature,
    /// The transcript of this session.
    Transcript(String),
}

/// A history page request, as given (parsed here).
#[derive(Debug, Clone, Default)]
pub struct HistoryRequest {
    /// Entries per page.
    pub limit: Option<usize>,
    /// A cursor from an earlier page.
    pub cursor: Option<String>,
    /// Only changes by this author.
    pub author: Option<String>,
    /// Only changes touching this path.
    pub path: Option<String>,
}

/// What a restore wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    /// The new change (hex), absent if nothing differed.
    pub change: Option<String>,
    /// Its message.
    pub message: String,
    /// The document's heads after it.
    pub heads: Vec<String>,
}

impl FeatureService {
    /// The handle and storage key of the document `target` names, for a
    /// member of the feature.
    async fn history_doc(
        &self,
        feature_id: &str,
        actor: &Actor,
        target: &HistoryTarget,
    ) -> Result<(DocHandle, String), FeatureError> {
        self.role(feature_id, actor)?;
        let (record, feature) = self.handle(feature_id).await?;
        let HistoryTarget::Transcript(session_id) = target else {
            return Ok((feature, record.document_id));
        };
        self.check_session(feature_id, session_id, actor, false)
            .await?;
        let sid = session_id.clone();
        let url = feature
            .with_document_async(move |d| {
                canopy_protocol::feature::read_session(d, &sid).and_then(|s| s.transcript)
            })
            .await?;
        let id: DocumentId = url
            .as_deref()
            .and_then(|u| u.strip_prefix("automerge:").unwrap_or(u).parse().ok())
            .ok_or_else(|| {
                FeatureError::Invalid(format!("session {session_id} has no transcript yet"))
            })?;
        let handle = self.repo.find(id.clone()).await?.ok_or_else(|| {
            FeatureError::Document(format!("transcript {id} is missing from storage"))
        })?;
        Ok((handle, id.to_string()))
    }

    /// A page of the document's changes, newest first.
    #[tracing::instrument(skip(self, actor, request))]
    pub async fn history(
        &self,
        feature_id: &str,
        actor: &Actor,
        target: &HistoryTarget,
        request: HistoryRequest,
    ) -> Result<Page, FeatureError> {
        let (handle, key) = self.history_doc(feature_id, actor, target).await?;
        let query = PageQuery {
            limit: request.limit.unwrap_or(50),
            before: request
                .cursor
                .as_deref()
                .map(|c| history::decode_cursor(&key, c))
                .transpose()?,
            author: request.author,
            path: request
                .path
                .as_deref()
                .map(history::parse_path)
                .transpose()?,
        };
        // Filtering by author needs every change's author up front; a plain
        // page needs only its own (looked up after).
        let all_origins = match &query.author {
            Some(_) => Some(
                self.attribution
                    .origins(&key, None)
                    .await
                    .map_err(|e| FeatureError::Unavailable(e.to_string()))?,
            ),
            None => None,
        };
        let filtered = all_origins.is_some();
        let cache = self.history.of(&key);
        let attribution = self.attribution.clone();
        let mut page = handle
            .with_document_async(move |doc| {
                let mut h = cache.lock().unwrap_or_else(|p| p.into_inner());
                let author_of = |hash: &automerge::ChangeHash, actor: &str| {
                    all_origins
                        .as_ref()
                        .and_then(|o| o.get(&hash.to_string()).cloned())
                        .or_else(|| attribution.owner(actor))
                };
                history::page(doc, &mut h, &query, &author_of)
            })
            .await??;
        if !filtered && !page.changes.is_empty() {
            let hashes = page.changes.iter().map(|c| c.hash.clone()).collect();
            let origins = self
                .attribution
                .origins(&key, Some(hashes))
                .await
                .map_err(|e| FeatureError::Unavailable(e.to_string()))?;
            for c in &mut page.changes {
                if let Some(user) = origins.get(&c.hash) {
                    c.author = Some(user.clone());
                }
            }
        }
        page.next = page.next.map(|h| history::encode_cursor(&key, &h));
        Ok(page)
    }

    /// The document as it was at `heads` (comma-separated hex).
    #[tracing::instrument(skip(self, actor))]
    pub async fn at(
        &self,
        feature_id: &str,
        actor: &Actor,
        target: &HistoryTarget,
        heads: &str,
    ) -> Result<(Vec<String>, Arc<Value>), FeatureError> {
        let (handle, key) = self.history_doc(feature_id, actor, target).await?;
        let cache = self.history.of(&key);
        let raw = heads.to_owned();
        handle
            .with_document_async(move |doc| {
                let heads = history::parse_heads(doc, &raw)?;
                let mut h = cache.lock().unwrap_or_else(|p| p.into_inner());
                let value = history::at(doc, &mut h, &heads);
                Ok((heads.iter().map(ToString::to_string).collect(), value))
            })
            .await?
    }

    /// The patches from `from` to `to` (each comma-separated hex heads).
    #[tracing::instrument(skip(self, actor))]
    pub async fn diff(
        &self,
        feature_id: &str,
        actor: &Actor,
        target: &HistoryTarget,
        from: &str,
        to: &str,
    ) -> Result<Vec<Value>, FeatureError> {
        let (handle, _) = self.history_doc(feature_id, actor, target).await?;
        let (from, to) = (from.to_owned(), to.to_owned());
        handle
            .with_document_async(move |doc| {
                let from = history::parse_heads(doc, &from)?;
                let to = history::parse_heads(doc, &to)?;
                Ok(history::diff(doc, &from, &to)?)
            })
            .await?
    }

    /// Write the value `path` had at `heads` as a new change by `actor`.
    #[tracing::instrument(skip(self, actor))]
    pub async fn restore(
        &self,
        feature_id: &str,
        actor: &Actor,
        heads: &str,
        path: &str,
    ) -> Result<Restored, FeatureError> {
        self.require_write(feature_id, actor)?;
        self.ensure_writable()?;
        let (record, handle) = self.handle(feature_id).await?;
        self.bind_server_actor(&handle).await?;
        let path = history::parse_path(path)?;
        let raw = heads.to_owned();
        let (change, message, heads) = handle
            .with_document_async(move |doc| {
                let heads = history::parse_heads(doc, &raw)?;
                let then = doc.hydrate(Some(&heads));
                let short: Vec<String> = heads
                    .iter()
                    .map(|h| h.to_string()[..8].to_owned())
                    .collect();
                let mut message = String::new();
                let outcome = doc.transact_with(
                    |m: &String| ChangeMeta::now(m.clone()).commit_options(),
                    |tx| {
                        history::restore(&then, tx, &path).map(|what| {
                            message = format!("{what} as of {}", short.join(","));
                            message.clone()
                        })
                    },
                );
                match outcome {
                    Ok(ok) => Ok((
                        ok.hash,
                        message,
                        doc.get_heads()
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>(),
                    )),
                    Err(f) => Err(FeatureError::from(f.error)),
                }
            })
            .await??;
        if let Some(hash) = change {
            self.attribution.record_origins(
                &record.document_id,
                &actor.user_id,
                crate::attribution::SERVER,
                vec![hash.to_string()],
            );
        }
        tracing::info!(feature_id, %message, "value restored");
        Ok(Restored {
            change: change.map(|h| h.to_string()),
            message,
            heads,
        })
    }
}
