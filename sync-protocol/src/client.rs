//! A samod [`Dialer`] for Canopy's `/sync` endpoint over tokio-tungstenite:
//! what Rust peers (tests, benchmarks, the sandbox sidecar) use to connect.

use std::sync::Arc;

use futures::{SinkExt, StreamExt, TryStreamExt, future::BoxFuture};
use samod::{BackoffConfig, DialError, Dialer, DialerHandle, Repo, Transport, Url};
use tokio_tungstenite::tungstenite::{self, Message, http::StatusCode};

/// The server refused the WebSocket upgrade with a client error (bad
/// ticket, no such endpoint): retrying would not help.
#[derive(Debug, thiserror::Error)]
#[error("the server refused the sync connection with HTTP {status}")]
pub struct Refused {
    /// The HTTP status of the refusal.
    pub status: u16,
}

/// Where a dialer gets a fresh sync ticket before each connection attempt
/// (a ticket is good once, and for a minute).
pub trait TicketSource: Send + Sync + std::fmt::Debug + 'static {
    /// A ticket for this peer's next connection.
    fn ticket(&self) -> BoxFuture<'static, Result<String, TicketFetchError>>;
}

/// Why a ticket could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TicketFetchError {
    /// The server answered with an error status; retrying will not help.
    #[error("the server refused a sync ticket with HTTP {status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error body.
        body: String,
    },
    /// The request failed on the way (server down, network); worth retrying.
    #[error("cannot reach the server for a sync ticket: {0}")]
    Unreachable(String),
}

/// Tickets from `POST /api/sync-ticket` with an API token, for a peer id the
/// token's user owns (`u:<user_id>:<suffix>`), so reconnects keep it.
#[derive(Clone)]
pub struct ApiTickets {
    endpoint: String,
    token: String,
    peer_id: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for ApiTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTickets")
            .field("endpoint", &self.endpoint)
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl ApiTickets {
    /// Tickets from the server at `base_url` (`http://host:port`).
    pub fn new(base_url: &str, token: &str, peer_id: &str) -> Self {
        ApiTickets {
            endpoint: format!("{}/api/sync-ticket", base_url.trim_end_matches('/')),
            token: token.to_owned(),
            peer_id: peer_id.to_owned(),
            http: reqwest::Client::new(),
        }
    }
}

impl TicketSource for ApiTickets {
    fn ticket(&self) -> BoxFuture<'static, Result<String, TicketFetchError>> {
        let request = self
            .http
            .post(&self.endpoint)
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "peer_id": self.peer_id }));
        Box::pin(async move {
            let resp = request
                .send()
                .await
                .map_err(|e| TicketFetchError::Unreachable(e.to_string()))?;
            let status = resp.status();
            if status.is_server_error() {
                return Err(TicketFetchError::Unreachable(format!("HTTP {status}")));
            }
            let body: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| TicketFetchError::Unreachable(e.to_string()))?;
            if !status.is_success() {
                return Err(TicketFetchError::Refused {
                    status: status.as_u16(),
                    body: body.to_string(),
                });
            }
            body["ticket"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| TicketFetchError::Unreachable("no ticket in the answer".into()))
        })
    }
}

/// Dials `ws://…/sync` with automatic reconnection (driven by samod),
/// fetching a ticket before each attempt. Without a ticket source it dials
/// the URL as is (for other automerge-repo servers, e.g. in benchmarks).
#[derive(Debug, Clone)]
pub struct WsDialer {
    url: Url,
    tickets: Option<Arc<dyn TicketSource>>,
}

impl WsDialer {
    /// A dialer for a `ws://` or `wss://` URL.
    pub fn new(url: Url, tickets: Option<Arc<dyn TicketSource>>) -> Self {
        WsDialer { url, tickets }
    }
}

impl Dialer for WsDialer {
    type Error = Refused;

    fn url(&self) -> Url {
        self.url.clone()
    }

    fn connect(&self) -> BoxFuture<'static, Result<Transport, DialError<Self::Error>>> {
        let mut url = self.url.clone();
        let tickets = self.tickets.clone();
        Box::pin(async move {
            if let Some(tickets) = tickets {
                let ticket = match tickets.ticket().await {
                    Ok(t) => t,
                    Err(TicketFetchError::Refused { status, body }) => {
                        tracing::warn!(status, %body, "sync ticket refused");
                        return Err(DialError::PermanentFailure(Refused { status }));
                    }
                    Err(e) => return Err(DialError::transient(e)),
                };
                url.query_pairs_mut().append_pair("ticket", &ticket);
            }
            let (ws, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok(ok) => ok,
                Err(tungstenite::Error::Http(resp)) if resp.status().is_client_error() => {
                    return Err(DialError::PermanentFailure(Refused {
                        status: resp.status().as_u16(),
                    }));
                }
                Err(tungstenite::Error::Http(resp))
                    if resp.status() == StatusCode::SERVICE_UNAVAILABLE =>
                {
                    return Err(DialError::transient(Refused {
                        status: resp.status().as_u16(),
                    }));
                }
                Err(e) => return Err(DialError::transient(e)),
            };
            let (sink, stream) = ws.split();
            let stream = stream
                .try_filter_map(|msg| async move {
                    Ok(match msg {
                        Message::Binary(bytes) => Some(bytes.to_vec()),
                        _ => None,
                    })
                })
                .boxed();
            let sink = sink.with(|bytes: Vec<u8>| async move {
                Ok::<_, tungstenite::Error>(Message::Binary(bytes.into()))
            });
            Ok(Transport::new(stream, Box::pin(sink)))
        })
    }
}

/// Connect `repo` to a sync URL, reconnecting with backoff; each attempt
/// takes a fresh ticket from `tickets` (Canopy needs one).
pub fn dial(
    repo: &Repo,
    sync_url: Url,
    tickets: Option<Arc<dyn TicketSource>>,
    backoff: BackoffConfig,
) -> Result<DialerHandle<Refused>, samod::Stopped> {
    repo.dial(backoff, Arc::new(WsDialer::new(sync_url, tickets)))
}

/// Connect `repo` to the Canopy server at `base_url` (`http://host:port`)
/// with an API token. The repo's peer id must be `u:<token's user id>:…`.
pub fn dial_with_token(
    repo: &Repo,
    base_url: &str,
    token: &str,
    backoff: BackoffConfig,
) -> Result<DialerHandle<Refused>, DialSetupError> {
    let base = base_url.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}/sync")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}/sync")
    } else {
        return Err(DialSetupError::BadUrl(base.to_owned()));
    };
    let url: Url = ws
        .parse()
        .map_err(|_| DialSetupError::BadUrl(base.to_owned()))?;
    let tickets: Arc<dyn TicketSource> =
        Arc::new(ApiTickets::new(base, token, repo.peer_id().as_str()));
    Ok(dial(repo, url, Some(tickets), backoff)?)
}

/// Why a dialer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DialSetupError {
    /// Not an `http://` or `https://` base URL.
    #[error("not an http(s) base URL: {0}")]
    BadUrl(String),
    /// The repo is stopping.
    #[error("the repo has stopped")]
    Stopped(#[from] samod::Stopped),
}
