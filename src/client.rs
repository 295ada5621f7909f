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

/// Dials `ws://…/sync` with automatic reconnection (driven by samod).
#[derive(Debug, Clone)]
pub struct WsDialer {
    url: Url,
}

impl WsDialer {
    /// A dialer for a `ws://` or `wss://` URL.
    pub fn new(url: Url) -> Self {
        WsDialer { url }
    }
}

impl Dialer for WsDialer {
    type Error = Refused;

    fn url(&self) -> Url {
        self.url.clone()
    }

    fn connect(&self) -> BoxFuture<'static, Result<Transport, DialError<Self::Error>>> {
        let url = self.url.clone();
        Box::pin(async move {
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

/// Connect `repo` to a Canopy server's sync URL, reconnecting with backoff.
pub fn dial(
    repo: &Repo,
    sync_url: Url,
    backoff: BackoffConfig,
) -> Result<DialerHandle<Refused>, samod::Stopped> {
    repo.dial(backoff, Arc::new(WsDialer::new(sync_url)))
}
