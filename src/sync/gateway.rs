//! The sync gateway: one per `/sync` WebSocket, between the socket and samod.
//!
//! samod trusts its transport. The gateway is where the server defends
//! itself and where it keeps its promises:
//!
//! - **Input.** Every frame is checked before samod sees it: binary only,
//!   one well-formed protocol message, `join` first with protocol `"1"`, a
//!   valid document id and automerge sync header, and a per-connection rate
//!   limit. A violation gets an `error` message with the reason and a close
//!   frame with a specific code (see `sync-protocol/README.md`).
//! - **Existence.** A message about a document the peer may not see is
//!   answered here with `doc-unavailable` and never reaches samod, so a storm
//!   of made-up ids costs no memory (samod keeps a document actor for every
//!   id it is asked about until the server stops).
//! - **Durability.** An outgoing `sync`/`request` waits until the heads it
//!   announces are committed to SQLite (see
//!   [`DurableIndex`](crate::storage::DurableIndex)).

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use canopy_protocol::{
    ephemeral::{self, Ephemeral, Refused},
    wire::{self, Envelope, MessageType, WireDocumentId, WireError},
};
use futures::{SinkExt, StreamExt, channel::mpsc as fmpsc};
use samod::{AcceptorHandle, DocumentId, PeerId, Transport};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::policy::{Access, AccessPolicy};
use crate::{
    audit::AuditAction,
    db::StorageHealth,
    metrics::{Direction, Metrics},
    ratelimit::TokenBucket,
    storage::{Durability, DurableIndex},
};

/// WebSocket close codes the gateway uses (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down or the peer went silent.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol (shape, order, version).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Text frames.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Bytes that are not CBOR, or an invalid document id or sync payload.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Rate limit, or a protocol violation samod detected (identity).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame larger than the configured limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server cannot serve the connection.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Per-connection limits.
#[derive(Debug, Clone)]
pub struct SyncLimits {
    /// Largest accepted message, in bytes.
    pub max_message_bytes: usize,
    /// Sustained messages per second per connection.
    pub rate_per_sec: u32,
    /// Messages a connection may send in a burst.
    pub burst: u32,
    /// How long an outgoing message may wait for durability while storage is
    /// healthy and idle before it is released anyway.
    pub durability_idle: Duration,
    /// Interval between server pings.
    pub ping_interval: Duration,
    /// Close a connection that sent nothing (not even a pong) for this long.
    pub idle_timeout: Duration,
}

impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits {
            max_message_bytes: 16 << 20,
            rate_per_sec: 500,
            burst: 2000,
            durability_idle: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// What every connection needs from the hub.
#[derive(Debug)]
pub(crate) struct GatewayContext {
    pub(crate) acceptor: AcceptorHandle,
    pub(crate) policy: AccessPolicy,
    pub(crate) durable: Arc<DurableIndex>,
    pub(crate) storage_health: watch::Receiver<StorageHealth>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: SyncLimits,
    pub(crate) server_peer_id: String,
    pub(crate) audit: crate::audit::AuditLog,
    pub(crate) attribution: crate::attribution::Attribution,
    pub(crate) repo: samod::Repo,
    pub(crate) shutdown: CancellationToken,
}

/// Least time between two `refused` notices to one connection for one
/// document: a viewer typing away gets told, not flooded.
const REFUSAL_NOTICE_INTERVAL: Duration = Duration::from_secs(10);

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Instructions from the reader half to the writer half.
#[derive(Debug)]
enum Control {
    /// Send a frame the gateway produced (e.g. `doc-unavailable`).
    Send(Vec<u8>),
    /// Send `{type:"error"}` and a close frame, then stop.
    Reject { code: u16, reason: String },
}

/// Who a connection was authenticated as (from its sync ticket).
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The only peer id the connection may join as.
    pub peer_id: String,
    /// The user (or agent principal) behind it.
    pub principal: String,
}

/// Serve one upgraded `/sync` socket until it closes.
pub(crate) async fn serve(
    socket: WebSocket,
    remote: std::net::SocketAddr,
    ctx: Arc<GatewayContext>,
    auth: Authenticated,
) {
    let conn = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!(
        "sync_connection",
        conn,
        %remote,
        peer_id = %auth.peer_id,
        user_id = %auth.principal
    );
    async move {
        let started = Instant::now();
        ctx.metrics.ws_connections.inc();
        ctx.metrics.ws_connections_total.inc();
        tracing::debug!("connection opened");
        ctx.audit
            .record(
                Some(&auth.principal),
                None,
                AuditAction::ConnectionOpened,
                format!("peer {} from {remote}", auth.peer_id),
            )
            .await;

        let (ws_tx, mut ws_rx) = socket.split();
        let (to_samod, samod_in) = fmpsc::channel::<Vec<u8>>(32);
        let (samod_out, from_samod) = fmpsc::channel::<Vec<u8>>(64);
        let (ctl_tx, ctl_rx) = mpsc::channel::<Control>(64);
        // samod enforces the pin as well: belt and braces with the gateway's
        // own check of the join.
        let transport = Transport::new(samod_in.map(Ok::<_, Infallible>), samod_out)
            .with_expected_peer_id(PeerId::from(auth.peer_id.clone()));
        let accepted = ctx.acceptor.accept(transport);
        let last_seen = Arc::new(AtomicU64::new(0));

        let writer = tokio::spawn(
            write_loop(
                ws_tx,
                from_samod,
                ctl_rx,
                ctx.clone(),
                last_seen.clone(),
                started,
            )
            .in_current_span(),
        );
        let mut unreadable = false;
        if accepted.is_err() {
            let _ = ctl_tx
                .send(Control::Reject {
                    code: close_code::INTERNAL_ERROR,
                    reason: "the sync hub is stopping".into(),
                })
                .await;
        } else {
            let mut reader = Reader {
                ctx: &ctx,
                principal: auth.principal.clone(),
                notices: HashMap::new(),
                notice_count: 0,
                expected_peer: auth.peer_id.clone(),
                peer: None,
                bucket: TokenBucket::new(
                    f64::from(ctx.limits.rate_per_sec),
                    f64::from(ctx.limits.burst),
                ),
                ctl: ctl_tx,
                to_samod,
                last_seen,
                started,
            };
            unreadable = reader.run(&mut ws_rx).await;
            drop(reader); // disconnects samod
            // Closing a socket with unread input makes the kernel send a
            // reset, which can destroy the close frame explaining a refusal
            // before the peer reads it. Keep reading until the peer closes.
            drain(&mut ws_rx, Duration::from_secs(2)).await;
        }
        let _ = writer.await;
        if unreadable {
            // The input can no longer be read (an oversized frame): keep the
            // socket open briefly so the peer reads the close frame first.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        ctx.metrics.ws_connections.dec();
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            "connection closed"
        );
        ctx.audit
            .record(
                Some(&auth.principal),
                None,
                AuditAction::ConnectionClosed,
                format!(
                    "peer {} after {:.1} s",
                    auth.peer_id,
                    started.elapsed().as_secs_f64()
                ),
            )
            .await;
    }
    .instrument(span)
    .await
}

struct Reader<'a> {
    ctx: &'a GatewayContext,
    principal: String,
    /// When this connection was last told, per document, that its changes
    /// were refused.
    notices: HashMap<DocumentId, Instant>,
    notice_count: u64,
    expected_peer: String,
    peer: Option<PeerId>,
    bucket: TokenBucket,
    ctl: mpsc::Sender<Control>,
    to_samod: fmpsc::Sender<Vec<u8>>,
    last_seen: Arc<AtomicU64>,
    started: Instant,
}

/// What to do with one inbound message.
enum Verdict {
    Forward,
    /// Forward (the peer still needs the server's changes), and tell the
    /// peer its own changes were not accepted.
    ForwardRefused(DocumentId),
    /// Forward a read-only peer's sync message, then tell the peer its
    /// changes were not accepted if its heads are ones the server lacks
    /// (changes made locally, which a stock client never sends unasked).
    ForwardCheckHeads(DocumentId, Vec<automerge::ChangeHash>),
    /// Changes from a writer: check and bind their actors, then forward.
    Attribute(DocumentId, Box<automerge::sync::Message>),
    Reply(Vec<u8>),
    Drop(&'static str),
    Reject {
        code: u16,
        reason: String,
        metric: &'static str,
    },
}

fn reject(code: u16, metric: &'static str, reason: impl Into<String>) -> Verdict {
    Verdict::Reject {
        code,
        reason: reason.into(),
        metric,
    }
}

fn parse_document_id(id: WireDocumentId<'_>) -> Option<DocumentId> {
    match id {
        WireDocumentId::Str(s) => s.parse().ok(),
        WireDocumentId::Bytes(b) => DocumentId::try_from(b.to_vec()).ok(),
    }
}

/// Peer ids are opaque strings; keep them printable and bounded.
fn valid_peer_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.chars().all(|c| !c.is_control())
}

impl Reader<'_> {
    /// Serve inbound frames; returns true if the input became unreadable
    /// (the socket holds input that will never be read).
    async fn run(&mut self, ws_rx: &mut futures::stream::SplitStream<WebSocket>) -> bool {
        loop {
            let next = tokio::select! {
                next = ws_rx.next() => next,
                _ = self.ctx.shutdown.cancelled() => return false,
            };
            let msg = match next {
                None => return false,
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    if is_capacity_error(e) {
                        self.reject(
                            close_code::MESSAGE_TOO_BIG,
                            "too_big",
                            format!(
                                "message exceeds the limit of {} bytes",
                                self.ctx.limits.max_message_bytes
                            ),
                        )
                        .await;
                        return true;
                    }
                    return false;
                }
            };
            self.last_seen
                .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
            let bytes = match msg {
                Message::Binary(bytes) => bytes,
                Message::Text(_) => {
                    self.reject(
                        close_code::UNSUPPORTED_DATA,
                        "text_frame",
                        "text frames are not part of the automerge-repo protocol; send binary CBOR frames"
                            .to_owned(),
                    )
                    .await;
                    return false;
                }
                Message::Close(_) => return false,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if self.bucket.take().is_err() {
                self.reject(
                    close_code::POLICY_VIOLATION,
                    "rate_limited",
                    format!(
                        "rate limit exceeded: more than {} messages/s (burst {})",
                        self.ctx.limits.rate_per_sec, self.ctx.limits.burst
                    ),
                )
                .await;
                return false;
            }
            let verdict = match wire::decode_envelope(&bytes) {
                Err(e) => {
                    self.ctx
                        .metrics
                        .message(Direction::In, "invalid", bytes.len());
                    let code = match e {
                        WireError::Cbor(_) => close_code::INVALID_PAYLOAD,
                        _ => close_code::PROTOCOL_ERROR,
                    };
                    reject(code, "malformed", format!("malformed message: {e}"))
                }
                Ok(env) => {
                    self.ctx
                        .metrics
                        .message(Direction::In, env.kind.as_str(), bytes.len());
                    self.judge(&env)
                }
            };
            match verdict {
                Verdict::Forward => {
                    if self.to_samod.send(bytes.to_vec()).await.is_err() {
                        // samod closed the connection; the writer says why.
                        return false;
                    }
                }
                Verdict::Reply(frame) => {
                    if self.ctl.send(Control::Send(frame)).await.is_err() {
                        return false;
                    }
                }
                Verdict::ForwardRefused(doc) => {
                    if self.to_samod.send(bytes.to_vec()).await.is_err() {
                        return false;
                    }
                    self.ctx.metrics.reject("read_only_changes");
                    if let Some(frame) = self.refusal_notice(&doc).await
                        && self.ctl.send(Control::Send(frame)).await.is_err()
                    {
                        return false;
                    }
                }
                Verdict::ForwardCheckHeads(doc, heads) => {
                    if self.to_samod.send(bytes.to_vec()).await.is_err() {
                        return false;
                    }
                    if self.lacks_any(&doc, heads).await {
                        self.ctx.metrics.reject("read_only_changes");
                        if let Some(frame) = self.refusal_notice(&doc).await
                            && self.ctl.send(Control::Send(frame)).await.is_err()
                        {
                            return false;
                        }
                    }
                }
                Verdict::Attribute(doc, message) => match self.attribute(&doc, &message).await {
                    Ok(()) => {
                        if self.to_samod.send(bytes.to_vec()).await.is_err() {
                            return false;
                        }
                    }
                    Err(reason) => {
                        self.ctx
                            .audit
                            .record(
                                Some(&self.principal),
                                self.ctx.policy.feature_of(&doc).as_deref(),
                                AuditAction::ChangeRejected,
                                format!("document {doc}: {reason}"),
                            )
                            .await;
                        self.reject(close_code::POLICY_VIOLATION, "foreign_actor", reason)
                            .await;
                        return false;
                    }
                },
                Verdict::Drop(metric) => self.ctx.metrics.reject(metric),
                Verdict::Reject {
                    code,
                    reason,
                    metric,
                } => {
                    self.reject(code, metric, reason).await;
                    return false;
                }
            }
        }
    }

    /// Check who wrote the changes in `message`: every change the server
    /// does not already have must be by an actor of this connection's user
    /// (an unknown actor becomes theirs, persisted before the change is
    /// accepted). Records the origin of new changes. The error is the
    /// reason to give the peer.
    async fn attribute(
        &mut self,
        doc: &DocumentId,
        message: &automerge::sync::Message,
    ) -> Result<(), String> {
        let attribution = &self.ctx.attribution;
        // Parse the changes: one per chunk in the v1 format; a v2 chunk is a
        // compressed run of changes, read by loading it onto the server's
        // copy of the document.
        let mut changes: Vec<(String, String)> = Vec::new();
        let mut packed: Vec<Vec<u8>> = Vec::new();
        for chunk in message.changes.iter() {
            match automerge::Change::try_from(chunk) {
                Ok(c) => changes.push((c.actor_id().to_hex_string(), c.hash().to_string())),
                Err(_) => packed.push(chunk.to_vec()),
            }
        }
        let all_own = packed.is_empty()
            && changes.iter().all(|(actor, _)| {
                attribution.owner(actor).as_deref() == Some(self.principal.as_str())
            });
        let fresh: Vec<(String, String)> = if all_own {
            changes
        } else {
            // Changes by other actors are fine if the server already has
            // them (a peer may resend); only new ones must be the user's own.
            let handle = match self.ctx.repo.find(doc.clone()).await {
                Ok(Some(h)) => h,
                _ => return Err(format!("document {doc} is not available")),
            };
            handle
                .with_document_async(move |d| {
                    use automerge::ReadDoc;
                    let mut fresh: Vec<(String, String)> = changes
                        .into_iter()
                        .filter(|(_, hash)| {
                            hash.parse::<automerge::ChangeHash>()
                                .ok()
                                .and_then(|h| d.get_change_by_hash(&h))
                                .is_none()
                        })
                        .collect();
                    if !packed.is_empty() {
                        let heads = d.get_heads();
                        let mut scratch = d.fork();
                        for chunk in &packed {
                            // Unreadable input is for samod to refuse.
                            let _ = scratch.load_incremental(chunk);
                        }
                        fresh.extend(
                            scratch
                                .get_changes(&heads)
                                .into_iter()
                                .map(|c| (c.actor_id().to_hex_string(), c.hash().to_string())),
                        );
                    }
                    fresh
                })
                .await
                .map_err(|_| "the server is stopping".to_owned())?
        };
        let mut actors: Vec<String> = fresh.iter().map(|(a, _)| a.clone()).collect();
        actors.sort();
        actors.dedup();
        match attribution.bind(&actors, &self.principal).await {
            Ok(()) => {}
            Err(crate::attribution::AttributionError::Foreign { actor, .. }) => {
                return Err(format!(
                    "a change by actor {actor} belongs to another user; write with your own actor id"
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot bind actors");
                return Err("the server cannot record who wrote these changes right now".into());
            }
        }
        let peer = self.expected_peer.clone();
        attribution.record_origins(
            &doc.to_string(),
            &self.principal,
            &peer,
            fresh.into_iter().map(|(_, h)| h).collect(),
        );
        Ok(())
    }

    /// Whether the server's copy of `doc` lacks any of `heads`.
    async fn lacks_any(&self, doc: &DocumentId, heads: Vec<automerge::ChangeHash>) -> bool {
        let Ok(Some(handle)) = self.ctx.repo.find(doc.clone()).await else {
            return false;
        };
        handle
            .with_document_async(move |d| {
                use automerge::ReadDoc;
                heads.iter().any(|h| d.get_change_by_hash(h).is_none())
            })
            .await
            .unwrap_or(false)
    }

    /// A `refused` ephemeral message for `doc`, unless this connection was
    /// told recently; audited when sent.
    async fn refusal_notice(&mut self, doc: &DocumentId) -> Option<Vec<u8>> {
        let now = Instant::now();
        if self
            .notices
            .get(doc)
            .is_some_and(|at| now.duration_since(*at) < REFUSAL_NOTICE_INTERVAL)
        {
            return None;
        }
        self.notices.insert(doc.clone(), now);
        let peer = self.peer.as_ref()?.to_string();
        let message = Ephemeral::Refused(Refused {
            reason: "read_only".into(),
            message: "this document is read-only for you (a viewer, or the server cannot store changes right now); your changes were not saved".into(),
        })
        .encode()
        .ok()?;
        self.notice_count += 1;
        self.ctx
            .audit
            .record(
                Some(&self.principal),
                self.ctx.policy.feature_of(doc).as_deref(),
                AuditAction::ChangeRejected,
                format!("read-only: changes from peer {peer} on document {doc} not accepted"),
            )
            .await;
        Some(wire::encode_ephemeral(
            &self.ctx.server_peer_id,
            &peer,
            &doc.to_string(),
            &self.ctx.server_peer_id,
            self.notice_count,
            &message,
        ))
    }

    async fn reject(&self, code: u16, metric: &'static str, reason: String) {
        self.ctx.metrics.reject(metric);
        if matches!(metric, "rate_limited" | "too_big") {
            self.ctx.metrics.limit_hit(metric);
            self.ctx
                .audit
                .record(
                    Some(&self.principal),
                    None,
                    AuditAction::LimitHit,
                    format!("sync connection of peer {}: {reason}", self.expected_peer),
                )
                .await;
        }
        tracing::info!(code, reason = %reason, "closing sync connection");
        let _ = self.ctl.send(Control::Reject { code, reason }).await;
    }

    fn judge(&mut self, env: &Envelope<'_>) -> Verdict {
        use close_code::*;
        let Some(peer) = self.peer.clone() else {
            if env.kind != MessageType::Join {
                return reject(
                    PROTOCOL_ERROR,
                    "no_join",
                    format!("expected a join message first, got {}", env.kind.as_str()),
                );
            }
            if !env.offers_supported_version() {
                return reject(
                    PROTOCOL_ERROR,
                    "unsupported_version",
                    format!(
                        "unsupported protocol version {:?}; this server speaks [\"{}\"]",
                        env.supported_protocol_versions,
                        wire::PROTOCOL_VERSION
                    ),
                );
            }
            let sender = env.sender_id.unwrap_or_default();
            if !valid_peer_id(sender) {
                return reject(PROTOCOL_ERROR, "bad_peer_id", "invalid senderId");
            }
            if sender != self.expected_peer {
                return reject(
                    POLICY_VIOLATION,
                    "peer_id_mismatch",
                    format!(
                        "this connection's ticket is for peer {}, but join names {sender}",
                        self.expected_peer
                    ),
                );
            }
            self.peer = Some(PeerId::from(sender));
            return Verdict::Forward;
        };
        // Gossip (ephemeral) keeps its original author; everything else must
        // come from the peer that joined.
        if env.kind != MessageType::Ephemeral
            && let Some(sender) = env.sender_id
            && sender != peer.as_str()
        {
            return reject(
                POLICY_VIOLATION,
                "peer_id_mismatch",
                format!("peer ID mismatch: joined as {peer}, message claims {sender}"),
            );
        }
        match env.kind {
            MessageType::Join | MessageType::Peer => reject(
                PROTOCOL_ERROR,
                "unexpected_handshake",
                format!(
                    "unexpected {} message after the handshake",
                    env.kind.as_str()
                ),
            ),
            MessageType::Request | MessageType::Sync => {
                let Some(doc) = env.document_id.and_then(parse_document_id) else {
                    return reject(INVALID_PAYLOAD, "bad_document_id", "invalid documentId");
                };
                let heads = match wire::sync_message_heads(env.data.unwrap_or_default()) {
                    Ok(heads) => heads,
                    Err(e) => return reject(INVALID_PAYLOAD, "bad_sync_message", e.to_string()),
                };
                let access = self.ctx.policy.decide(&doc, &peer);
                if access == Access::ReadWrite && env.kind == MessageType::Sync {
                    match automerge::sync::Message::decode(env.data.unwrap_or_default()) {
                        Ok(m) if !m.changes.is_empty() => {
                            return Verdict::Attribute(doc, Box::new(m));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            return reject(INVALID_PAYLOAD, "bad_sync_message", e.to_string());
                        }
                    }
                }
                match access {
                    Access::None => {
                        self.ctx.metrics.reject("unavailable_document");
                        tracing::debug!(document_id = %doc, "document unavailable");
                        Verdict::Reply(wire::encode_doc_unavailable(
                            &self.ctx.server_peer_id,
                            peer.as_str(),
                            &doc.to_string(),
                        ))
                    }
                    Access::ReadWrite => Verdict::Forward,
                    Access::ReadOnly => {
                        // samod ignores a read-only peer's changes; say so.
                        let carries_changes = env.kind == MessageType::Sync
                            && automerge::sync::Message::decode(env.data.unwrap_or_default())
                                .is_ok_and(|m| !m.changes.is_empty());
                        if carries_changes {
                            Verdict::ForwardRefused(doc)
                        } else if env.kind == MessageType::Sync && !heads.is_empty() {
                            Verdict::ForwardCheckHeads(doc, heads)
                        } else {
                            Verdict::Forward
                        }
                    }
                }
            }
            MessageType::Ephemeral | MessageType::DocUnavailable => {
                let Some(doc) = env.document_id.and_then(parse_document_id) else {
                    return reject(INVALID_PAYLOAD, "bad_document_id", "invalid documentId");
                };
                // Ephemeral messages are relayed to every peer of the
                // document: a large one is an amplification attack.
                let size = env.data.map_or(0, <[u8]>::len);
                if env.kind == MessageType::Ephemeral && size > ephemeral::MAX_MESSAGE_BYTES {
                    return reject(
                        MESSAGE_TOO_BIG,
                        "ephemeral_too_big",
                        format!(
                            "ephemeral message of {size} bytes exceeds the limit of {} bytes",
                            ephemeral::MAX_MESSAGE_BYTES
                        ),
                    );
                }
                match self.ctx.policy.decide(&doc, &peer) {
                    Access::None => Verdict::Drop("unavailable_document"),
                    _ => Verdict::Forward,
                }
            }
            MessageType::Leave | MessageType::Error => Verdict::Forward,
            // samod ignores remote-heads gossip; do not make it parse it.
            MessageType::RemoteSubscriptionChange | MessageType::RemoteHeadsChanged => {
                Verdict::Drop("remote_heads_ignored")
            }
        }
    }
}

async fn drain(ws_rx: &mut futures::stream::SplitStream<WebSocket>, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut errors = 0;
    while let Ok(next) = tokio::time::timeout_at(deadline, ws_rx.next()).await {
        match next {
            None => return,
            Some(Err(_)) => {
                errors += 1;
                if errors > 64 {
                    return;
                }
            }
            Some(Ok(_)) => {}
        }
    }
}

fn is_capacity_error(e: axum::Error) -> bool {
    let inner = e.into_inner();
    matches!(
        inner.downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

/// A close reason must fit in a control frame (123 bytes of UTF-8).
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

async fn write_loop(
    mut ws: futures::stream::SplitSink<WebSocket, Message>,
    mut from_samod: fmpsc::Receiver<Vec<u8>>,
    mut ctl: mpsc::Receiver<Control>,
    ctx: Arc<GatewayContext>,
    last_seen: Arc<AtomicU64>,
    started: Instant,
) {
    let mut ping = tokio::time::interval(ctx.limits.ping_interval);
    ping.tick().await;
    let mut ctl_open = true;
    let mut samod_error: Option<String> = None;
    // A peer that does not read its socket for this long is dropped rather
    // than letting samod queue messages for it without bound.
    const SEND_TIMEOUT: Duration = Duration::from_secs(30);
    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: close_reason(reason).into(),
        }))
    };
    loop {
        tokio::select! {
            biased;
            c = ctl.recv(), if ctl_open => match c {
                Some(Control::Send(frame)) => {
                    ctx.metrics.message(Direction::Out, "doc-unavailable", frame.len());
                    if ws.send(Message::Binary(frame.into())).await.is_err() {
                        return;
                    }
                }
                Some(Control::Reject { code, reason }) => {
                    let frame = wire::encode_error(&reason);
                    ctx.metrics.message(Direction::Out, "error", frame.len());
                    let _ = ws.send(Message::Binary(frame.into())).await;
                    let _ = ws.send(close(code, &reason)).await;
                    return;
                }
                None => ctl_open = false,
            },
            _ = ctx.shutdown.cancelled() => {
                let _ = ws.send(close(close_code::GOING_AWAY, "server shutting down")).await;
                return;
            }
            frame = from_samod.next() => match frame {
                Some(frame) => {
                    let kind = match wire::decode_envelope(&frame) {
                        Ok(env) => {
                            if matches!(env.kind, MessageType::Sync | MessageType::Request)
                                && !wait_until_durable(&ctx, &env).await
                            {
                                let _ = ws.send(close(close_code::GOING_AWAY, "server shutting down")).await;
                                return;
                            }
                            if env.kind == MessageType::Error {
                                samod_error = env.message.map(str::to_owned);
                            }
                            env.kind.as_str()
                        }
                        Err(_) => "invalid",
                    };
                    ctx.metrics.message(Direction::Out, kind, frame.len());
                    match tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::Binary(frame.into()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            ctx.metrics.reject("slow_consumer");
                            tracing::info!("closing a peer that stopped reading");
                            return;
                        }
                    }
                }
                None => {
                    let msg = match &samod_error {
                        Some(reason) => close(close_code::POLICY_VIOLATION, reason),
                        None => close(close_code::NORMAL, "connection closed"),
                    };
                    let _ = ws.send(msg).await;
                    return;
                }
            },
            _ = ping.tick() => {
                let idle = started.elapsed().saturating_sub(Duration::from_millis(last_seen.load(Ordering::Relaxed)));
                if idle > ctx.limits.idle_timeout {
                    ctx.metrics.reject("idle_timeout");
                    let _ = ws.send(close(close_code::GOING_AWAY, "no traffic from peer; closing idle connection")).await;
                    return;
                }
                if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Hold an outgoing message until the heads it announces are durable.
/// Returns false if the server is shutting down first.
async fn wait_until_durable(ctx: &GatewayContext, env: &Envelope<'_>) -> bool {
    let (Some(doc), Some(data)) = (env.document_id.and_then(parse_document_id), env.data) else {
        return true;
    };
    let Ok(heads) = wire::sync_message_heads(data) else {
        return true;
    };
    let started = Instant::now();
    let doc = doc.to_string();
    let storage = ctx.storage_health.clone();
    let outcome = tokio::select! {
        o = ctx.durable.wait(&doc, &heads, ctx.limits.durability_idle, || storage.borrow().is_ok()) => o,
        _ = ctx.shutdown.cancelled() => return false,
    };
    ctx.metrics
        .durability_wait_seconds
        .observe(started.elapsed().as_secs_f64());
    if outcome == Durability::TimedOutIdle {
        ctx.metrics.durability_timeouts.inc();
        tracing::warn!(document_id = %doc, "released a sync message whose heads were not found in the durable index");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = "é".repeat(200);
        let r = close_reason(&long);
        assert!(r.len() <= 123);
        assert!(long.starts_with(&r));
    }
}
