//! The sidecar's sync peer: a samod repo with a store on disk (so a restart
//! of the sidecar loses nothing), dialing the server's `/sync` with the
//! sandbox token and reconnecting with back-off for as long as the server is
//! away. A refused token is final: the sidecar says why and exits.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use canopy_protocol::client::{self, ApiTickets, Refused, TicketFetchError, TicketSource};
use futures::future::BoxFuture;
use samod::{BackoffConfig, DialerHandle, PeerId, Repo, storage::TokioFilesystemStorage};

/// Why the sidecar cannot (or may no longer) sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The server refused the sandbox token, or the token is for another
    /// feature or session. Retrying cannot help.
    #[error("{0}")]
    Refused(String),
    /// Local setup failed (the store, a bad URL).
    #[error("{0}")]
    Setup(String),
}

/// Back-off between connection attempts: quick at first, never more than a
/// few seconds, since the server is usually close (same host or cluster).
pub fn backoff() -> BackoffConfig {
    BackoffConfig {
        initial_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(3),
        max_retries: None,
    }
}

/// The repo, with its store under `dir` and a peer id the server will issue
/// tickets for (`a:<feature>:<session>:<suffix>`), kept across restarts.
pub async fn open_repo(dir: &Path, feature_id: &str, session_id: &str) -> Result<Repo, SyncError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| SyncError::Setup(format!("cannot create {}: {e}", dir.display())))?;
    let suffix_file = dir.join("peer-suffix");
    let suffix = match std::fs::read_to_string(&suffix_file) {
        Ok(s)
            if !s.trim().is_empty()
                && s.trim()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            s.trim().to_owned()
        }
        _ => {
            let s = format!("sc{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
            std::fs::write(&suffix_file, &s).map_err(|e| {
                SyncError::Setup(format!("cannot write {}: {e}", suffix_file.display()))
            })?;
            s
        }
    };
    let peer_id = format!("a:{feature_id}:{session_id}:{suffix}");
    let repo = Repo::build_tokio()
        .with_storage(TokioFilesystemStorage::new(dir.join("store")))
        .with_peer_id(PeerId::from(peer_id.as_str()))
        .load()
        .await;
    Ok(repo)
}

/// Who the server says the sandbox token belongs to (`GET /api/me`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// Valid, and scoped to this feature and session.
    Ok,
    /// The server could not be asked; the replica works offline meanwhile.
    Unreachable(String),
}

/// Ask the server whether the token is good for this feature and session.
pub async fn check_token(
    server_url: &str,
    token: &str,
    feature_id: &str,
    session_id: &str,
) -> Result<TokenCheck, SyncError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| SyncError::Setup(e.to_string()))?;
    let url = format!("{}/api/me", server_url.trim_end_matches('/'));
    let resp = match http.get(&url).bearer_auth(token).send().await {
        Ok(r) => r,
        Err(e) => return Ok(TokenCheck::Unreachable(e.to_string())),
    };
    let status = resp.status();
    if status.is_server_error() {
        return Ok(TokenCheck::Unreachable(format!("HTTP {status}")));
    }
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        return Err(SyncError::Refused(refusal_message(
            status.as_u16(),
            &body.to_string(),
        )));
    }
    let scope = &body["scope"];
    if scope["kind"] != "agent" {
        return Err(SyncError::Refused(
            "the sandbox token is a person's API token, not a sandbox token; the sidecar needs the token the server minted for this sandbox".into(),
        ));
    }
    if scope["feature_id"] != feature_id || scope["session_id"] != session_id {
        return Err(SyncError::Refused(format!(
            "the sandbox token is for feature {} session {}, but this sandbox runs feature {feature_id} session {session_id}",
            scope["feature_id"].as_str().unwrap_or("?"),
            scope["session_id"].as_str().unwrap_or("?"),
        )));
    }
    Ok(TokenCheck::Ok)
}

fn refusal_message(status: u16, body: &str) -> String {
    let detail: String = body.chars().take(300).collect();
    match status {
        401 => format!(
            "the server refused the sandbox token (HTTP 401: expired, revoked or unknown): {detail}"
        ),
        403 => format!("the server forbids this sandbox token (HTTP 403): {detail}"),
        _ => format!("the server refused the sandbox token (HTTP {status}): {detail}"),
    }
}

/// Tickets for the sidecar's peer id; remembers why the server refused one,
/// so the exit message can say it.
#[derive(Debug, Clone)]
struct Tickets {
    inner: ApiTickets,
    refusal: Arc<Mutex<Option<String>>>,
}

impl TicketSource for Tickets {
    fn ticket(&self) -> BoxFuture<'static, Result<String, TicketFetchError>> {
        let fetch = self.inner.ticket();
        let refusal = self.refusal.clone();
        Box::pin(async move {
            let result = fetch.await;
            if let Err(TicketFetchError::Refused { status, body }) = &result
                && let Ok(mut slot) = refusal.lock()
            {
                *slot = Some(refusal_message(*status, body));
            }
            result
        })
    }
}

/// The live connection to the server.
#[derive(Debug)]
pub struct Connection {
    /// samod's dialer (reconnects by itself).
    pub dialer: DialerHandle<Refused>,
    refusal: Arc<Mutex<Option<String>>>,
}

impl Connection {
    /// Why the server refused us, once the dialer has given up.
    pub fn refusal(&self) -> String {
        self.refusal
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_else(|| "the server refused the sync connection".into())
    }
}

/// Dial the server's `/sync` with fresh tickets from the sandbox token.
pub fn connect(repo: &Repo, server_url: &str, token: &str) -> Result<Connection, SyncError> {
    let base = server_url.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}/sync")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}/sync")
    } else {
        return Err(SyncError::Setup(format!(
            "CANOPY_SERVER_URL must be http(s)://…, not {base:?}"
        )));
    };
    let url = ws
        .parse()
        .map_err(|_| SyncError::Setup(format!("bad server URL {base:?}")))?;
    let refusal = Arc::new(Mutex::new(None));
    let tickets = Tickets {
        inner: ApiTickets::new(base, token, repo.peer_id().as_str()),
        refusal: refusal.clone(),
    };
    let dialer = client::dial(repo, url, Some(Arc::new(tickets)), backoff())
        .map_err(|_| SyncError::Setup("the repo has stopped".into()))?;
    Ok(Connection { dialer, refusal })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use automerge::{ROOT, ReadDoc, transaction::Transactable};

    #[tokio::test]
    async fn the_replica_survives_a_restart_of_the_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let (f, s) = ("ftr_aaaaaaaaaaaaaaaaaaaa", "ses_aaaaaaaaaaaaaaaaaaaa");
        let repo = open_repo(dir.path(), f, s).await.unwrap();
        let peer = repo.peer_id().to_string();
        assert!(peer.starts_with(&format!("a:{f}:{s}:")), "{peer}");
        let handle = repo.create(automerge::Automerge::new()).await.unwrap();
        let id = handle.document_id().clone();
        handle
            .with_document_async(|d| {
                d.transact::<_, _, automerge::AutomergeError>(|tx| {
                    tx.put(ROOT, "written", "offline")?;
                    Ok(())
                })
                .unwrap();
            })
            .await
            .unwrap();
        repo.stop().await;

        // The next process: same store, same peer id, the change is there
        // without any server.
        let repo = open_repo(dir.path(), f, s).await.unwrap();
        assert_eq!(repo.peer_id().to_string(), peer);
        let handle = repo.find(id).await.unwrap().expect("found locally");
        let value = handle
            .with_document_async(|d| d.get(ROOT, "written").unwrap().map(|(v, _)| v.to_string()))
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some("\"offline\""));
        repo.stop().await;
    }

    #[tokio::test]
    async fn a_bad_server_url_is_a_setup_error() {
        let dir = tempfile::tempdir().unwrap();
        let repo = open_repo(
            dir.path(),
            "ftr_aaaaaaaaaaaaaaaaaaaa",
            "ses_aaaaaaaaaaaaaaaaaaaa",
        )
        .await
        .unwrap();
        assert!(matches!(
            connect(&repo, "ftp://example.com", "t"),
            Err(SyncError::Setup(_))
        ));
        repo.stop().await;
    }
}
