//! Keeps the registry's feature summaries (title and status, what
//! `GET /api/features` lists) in step with the documents, whoever edits them:
//! the API, a browser, an agent.
//!
//! samod reports every document it opens; for each registered feature
//! document a small task follows its changes and writes the summary back,
//! debounced so a burst of typing in the title costs one SQLite write. The
//! same task verifies the authors of what people wrote ([`crate::verify`]).

use std::time::Duration;

use canopy_protocol::feature;
use futures::{FutureExt, StreamExt};
use samod::{DocumentId, Repo};
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    attribution::Attribution,
    audit::{AuditAction, AuditLog},
    registry::{DocKind, Registry},
};

/// What a follower needs besides the document.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// Actor bindings.
    pub attribution: Attribution,
    /// Where corrections are recorded.
    pub audit: AuditLog,
}

const DEBOUNCE: Duration = Duration::from_millis(500);

/// Tells the refresher which documents are open.
#[derive(Debug, Clone)]
pub struct Opened(mpsc::UnboundedSender<DocumentId>);

impl Opened {
    /// A document is open in samod (or was just registered).
    pub fn notify(&self, doc: DocumentId) {
        let _ = self.0.send(doc);
    }
}

/// A channel for [`Opened`] notifications and its receiving end.
pub fn channel() -> (Opened, mpsc::UnboundedReceiver<DocumentId>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Opened(tx), rx)
}

/// Run the refresher until `shutdown`.
pub fn spawn(
    repo: Repo,
    registry: Registry,
    verifier: Verifier,
    mut opened: mpsc::UnboundedReceiver<DocumentId>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) {
    let tracker = tasks.clone();
    tasks.spawn(async move {
        let mut watching = std::collections::HashSet::new();
        loop {
            let doc = tokio::select! {
                doc = opened.recv() => match doc { Some(d) => d, None => return },
                _ = shutdown.cancelled() => return,
            };
            let Some(shared) = registry.lookup(&doc) else { continue };
            if shared.kind != DocKind::Feature || !watching.insert(doc.clone()) {
                continue;
            }
            let span = tracing::info_span!("feature_summary", feature_id = %shared.feature_id, document_id = %doc);
            tracker.spawn(
                follow(
                    repo.clone(),
                    registry.clone(),
                    verifier.clone(),
                    doc,
                    shared.feature_id,
                    shutdown.clone(),
                )
                .instrument(span),
            );
        }
    });
}

async fn follow(
    repo: Repo,
    registry: Registry,
    verifier: Verifier,
    doc: DocumentId,
    feature_id: String,
    shutdown: CancellationToken,
) {
    let handle = match repo.find(doc).await {
        Ok(Some(h)) => h,
        Ok(None) => return,
        Err(_) => return,
    };
    // Corrections below are the server's writes: its actor is nobody else's.
    let actor = match handle
        .with_document_async(|d| d.get_actor().to_hex_string())
        .await
    {
        Ok(a) => a,
        Err(_) => return,
    };
    if let Err(e) = verifier
        .attribution
        .bind(&[actor], crate::attribution::SERVER)
        .await
    {
        tracing::warn!(error = %e, "cannot bind the server's actor; not verifying authors");
    }
    let mut changes = handle.changes();
    let mut last = None;
    loop {
        let attribution = verifier.attribution.clone();
        let Ok(corrections) = handle
            .with_document_async(move |d| crate::verify::correct_forged_authors(d, &attribution))
            .await
        else {
            return;
        };
        match corrections {
            Ok(list) => {
                for c in list {
                    tracing::warn!(what = %c.what, claimed = %c.claimed, writer = %c.writer, "forged author corrected");
                    verifier
                        .audit
                        .record(
                            None,
                            Some(&feature_id),
                            AuditAction::ChangeRejected,
                            format!(
                                "{}: names {:?} as author, written by {}",
                                c.what, c.claimed, c.writer
                            ),
                        )
                        .await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot verify authors"),
        }
        let Ok(summary) = handle
            .with_document_async(|d| feature::read_summary(d))
            .await
        else {
            return;
        };
        if last.as_ref() != Some(&summary) {
            let (title, status) = &summary;
            let now = canopy_protocol::unix_ms_now();
            match registry
                .update_summary(&feature_id, title, status.as_str(), now)
                .await
            {
                Ok(()) => last = Some(summary),
                Err(e) => tracing::warn!(error = %e, "cannot refresh the feature summary"),
            }
        }
        tokio::select! {
            next = changes.next() => if next.is_none() { return },
            _ = shutdown.cancelled() => return,
        }
        // Debounce: let a burst of edits settle, then read once.
        tokio::select! {
            _ = tokio::time::sleep(DEBOUNCE) => {}
            _ = shutdown.cancelled() => return,
        }
        while let Some(Some(_)) = changes.next().now_or_never() {}
    }
}
