//! A client for the OpenCode agent server (1.18.33) that runs in each
//! sandbox: Basic auth, the routes the dispatcher needs, and the `/event`
//! stream. Responses are kept as JSON values where OpenCode's shapes are
//! wide and still moving (messages, parts); events are parsed tolerantly
//! ([`event`]). Every route takes the sandbox's workspace `directory`:
//! without it OpenCode scopes to its own working directory and `/event`
//! stays silent.

pub mod event;
pub mod sse;

use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::{Value, json};

pub use event::{Event, Known};

/// OpenCode client errors.
#[derive(Debug, thiserror::Error)]
pub enum OpenCodeError {
    /// The server could not be reached or the connection broke.
    #[error("cannot reach OpenCode: {0}")]
    Unreachable(String),
    /// The server answered with an error status.
    #[error("OpenCode answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The body (OpenCode's error JSON, usually).
        body: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from OpenCode: {0}")]
    Unexpected(String),
    /// The event stream broke.
    #[error("event stream: {0}")]
    Stream(String),
}

/// A client for one OpenCode server. Cheap to clone.
#[derive(Clone)]
pub struct OpenCodeClient {
    base: String,
    username: String,
    password: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for OpenCodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCodeClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What to ask: the prompt text, the extra system text, the model.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    /// The user's words.
    pub text: String,
    /// Context for this message (feature, author…), OpenCode's `system`.
    pub system: Option<String>,
    /// `(providerID, modelID)`; default: the configured model.
    pub model: Option<(String, String)>,
    /// The user message's id (`msg_…`, see [`ascending_id`]), chosen by the
    /// caller so a re-attaching dispatcher knows which message is its own.
    pub message_id: Option<String>,
    /// The id of the prompt's text part (`prt_…`).
    pub part_id: Option<String>,
}

impl Prompt {
    fn body(&self) -> Value {
        let mut part = json!({ "type": "text", "text": self.text });
        if let Some(id) = &self.part_id {
            part["id"] = json!(id);
        }
        let mut body = json!({ "parts": [part] });
        if let Some(id) = &self.message_id {
            body["messageID"] = json!(id);
        }
        if let Some(system) = &self.system {
            body["system"] = json!(system);
        }
        if let Some((provider, model)) = &self.model {
            body["model"] = json!({ "providerID": provider, "modelID": model });
        }
        body
    }
}

impl OpenCodeClient {
    /// A client for `base` (`http://127.0.0.1:port`) with the sandbox's
    /// password (user `opencode`).
    pub fn new(base: &str, password: &str) -> Self {
        OpenCodeClient {
            base: base.trim_end_matches('/').to_owned(),
            username: "opencode".into(),
            password: password.to_owned(),
            // No overall timeout: a synchronous prompt lasts as long as the
            // agent works. Connects fail fast.
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    fn url(&self, path: &str, directory: Option<&str>) -> String {
        match directory {
            Some(d) => {
                let mut u = format!("{}{path}", self.base);
                u.push(if path.contains('?') { '&' } else { '?' });
                u.push_str("directory=");
                u.push_str(&urlencode(d));
                u
            }
            None => format!("{}{path}", self.base),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, OpenCodeError> {
        let resp = req
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .map_err(|e| OpenCodeError::Unreachable(e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            Ok(resp)
        } else {
            let body = resp.text().await.unwrap_or_default();
            Err(OpenCodeError::Status {
                status: status.as_u16(),
                body: body.chars().take(2000).collect(),
            })
        }
    }

    async fn json(&self, req: reqwest::RequestBuilder) -> Result<Value, OpenCodeError> {
        self.send(req)
            .await?
            .json()
            .await
            .map_err(|e| OpenCodeError::Unexpected(e.to_string()))
    }

    /// `GET /global/health`, answered within `timeout` (a starting server
    /// can accept a connection and not answer yet).
    pub async fn healthy(&self, timeout: Duration) -> bool {
        let req = self
            .http
            .get(self.url("/global/health", None))
            .timeout(timeout);
        matches!(self.send(req).await, Ok(r) if r.status().is_success())
    }

    /// `POST /session?directory=…`: a new session; returns its id.
    pub async fn create_session(&self, directory: &str) -> Result<String, OpenCodeError> {
        let v = self
            .json(
                self.http
                    .post(self.url("/session", Some(directory)))
                    .json(&json!({})),
            )
            .await?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| OpenCodeError::Unexpected(format!("no session id in {v}")))
    }

    /// `POST /session/{id}/prompt_async`: start a run; returns at once.
    pub async fn prompt_async(
        &self,
        session: &str,
        directory: &str,
        prompt: &Prompt,
    ) -> Result<(), OpenCodeError> {
        let path = format!("/session/{session}/prompt_async");
        self.send(
            self.http
                .post(self.url(&path, Some(directory)))
                .json(&prompt.body()),
        )
        .await
        .map(|_| ())
    }

    /// `POST /session/{id}/abort`.
    pub async fn abort(&self, session: &str, directory: &str) -> Result<(), OpenCodeError> {
        let path = format!("/session/{session}/abort");
        self.send(self.http.post(self.url(&path, Some(directory))))
            .await
            .map(|_| ())
    }

    /// `GET /session/{id}/message`: `[{info, parts}]`, oldest first.
    pub async fn messages(
        &self,
        session: &str,
        directory: &str,
    ) -> Result<Vec<Value>, OpenCodeError> {
        self.message_list(session, directory, None).await
    }

    /// `GET /session/{id}/message?limit=N`: the newest `limit` messages,
    /// oldest first. Cheap however long the session is.
    pub async fn recent_messages(
        &self,
        session: &str,
        directory: &str,
        limit: usize,
    ) -> Result<Vec<Value>, OpenCodeError> {
        self.message_list(session, directory, Some(limit)).await
    }

    async fn message_list(
        &self,
        session: &str,
        directory: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Value>, OpenCodeError> {
        let path = match limit {
            Some(n) => format!("/session/{session}/message?limit={n}"),
            None => format!("/session/{session}/message"),
        };
        match self
            .json(self.http.get(self.url(&path, Some(directory))))
            .await?
        {
            Value::Array(items) => Ok(items),
            other => Err(OpenCodeError::Unexpected(format!("messages: {other}"))),
        }
    }

    /// `GET /session/status`: busy sessions (idle ones are omitted).
    pub async fn session_status(&self, directory: &str) -> Result<Value, OpenCodeError> {
        self.json(self.http.get(self.url("/session/status", Some(directory))))
            .await
    }

    /// `GET /vcs/status`: `[{file, additions, deletions, status}]`.
    pub async fn vcs_status(&self, directory: &str) -> Result<Vec<Value>, OpenCodeError> {
        match self
            .json(self.http.get(self.url("/vcs/status", Some(directory))))
            .await?
        {
            Value::Array(items) => Ok(items),
            other => Err(OpenCodeError::Unexpected(format!("vcs status: {other}"))),
        }
    }

    /// `GET /vcs/diff?mode=git`: the working tree's diff.
    pub async fn vcs_diff(&self, directory: &str) -> Result<Vec<Value>, OpenCodeError> {
        match self
            .json(
                self.http
                    .get(self.url("/vcs/diff?mode=git", Some(directory))),
            )
            .await?
        {
            Value::Array(items) => Ok(items),
            other => Err(OpenCodeError::Unexpected(format!("vcs diff: {other}"))),
        }
    }

    /// `POST /permission/{id}/reply`.
    pub async fn reply_permission(&self, request: &str, reply: &str) -> Result<(), OpenCodeError> {
        let path = format!("/permission/{request}/reply");
        self.send(
            self.http
                .post(self.url(&path, None))
                .json(&json!({ "reply": reply })),
        )
        .await
        .map(|_| ())
    }

    /// `POST /question/{id}/reject`.
    pub async fn reject_question(&self, request: &str) -> Result<(), OpenCodeError> {
        let path = format!("/question/{request}/reject");
        self.send(self.http.post(self.url(&path, None)))
            .await
            .map(|_| ())
    }

    /// `GET /event?directory=…`: the event stream for a workspace. It has no
    /// resume: after a break, reconnect and resync over the REST routes.
    pub async fn events(
        &self,
        directory: &str,
    ) -> Result<
        impl Stream<Item = Result<Event, OpenCodeError>> + Send + Sync + 'static + use<>,
        OpenCodeError,
    > {
        let resp = self
            .send(self.http.get(self.url("/event", Some(directory))))
            .await?;
        let mut parser = sse::SseParser::default();
        Ok(resp
            .bytes_stream()
            .map(move |chunk| -> Vec<Result<Event, OpenCodeError>> {
                match chunk {
                    Err(e) => vec![Err(OpenCodeError::Stream(e.to_string()))],
                    Ok(bytes) => match parser.feed(&bytes) {
                        Err(e) => vec![Err(OpenCodeError::Stream(e.to_string()))],
                        // Payloads that are not events are skipped, not fatal.
                        Ok(datas) => datas
                            .iter()
                            .filter_map(|d| Event::parse(d))
                            .map(Ok)
                            .collect(),
                    },
                }
            })
            .flat_map(futures::stream::iter))
    }
}

/// A new id in OpenCode's ascending format: `<prefix>_`, 12 hex digits of
/// `(unix ms × 4096 + counter) mod 2⁴⁸`, 14 random base62 characters.
/// OpenCode orders messages and parts by id, so ids Canopy picks must sort
/// after the ones OpenCode made before them.
pub fn ascending_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let ms = u64::try_from(canopy_protocol::unix_ms_now()).unwrap_or(0);
    // Strictly increasing across calls, even within one millisecond.
    let mut prev = LAST.load(Ordering::Relaxed);
    let value = loop {
        let next = (ms * 0x1000).max(prev + 1);
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(p) => prev = p,
        }
    };
    let mut id = format!("{prefix}_{:012x}", value & 0xFFFF_FFFF_FFFF);
    for _ in 0..14 {
        id.push(BASE62[rand::random_range(0..BASE62.len())] as char);
    }
    id
}

/// Percent-encode a query value.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascending_ids_sort_in_creation_order() {
        let ids: Vec<String> = (0..1000).map(|_| ascending_id("msg")).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(
            ids.iter()
                .all(|i| i.len() == 4 + 26 && i.starts_with("msg_"))
        );
    }

    #[test]
    fn directories_are_encoded_into_the_query() {
        let c = OpenCodeClient::new("http://127.0.0.1:1/", "pw");
        assert_eq!(
            c.url("/vcs/diff?mode=git", Some("/tmp/a b&c")),
            "http://127.0.0.1:1/vcs/diff?mode=git&directory=/tmp/a%20b%26c"
        );
        assert_eq!(
            c.url("/event", Some("/w")),
            "http://127.0.0.1:1/event?directory=/w"
        );
        assert_eq!(
            Prompt {
                text: "hi".into(),
                system: Some("ctx".into()),
                model: Some(("canopy".into(), "m".into())),
                ..Prompt::default()
            }
            .body(),
            json!({"parts":[{"type":"text","text":"hi"}],"system":"ctx","model":{"providerID":"canopy","modelID":"m"}})
        );
    }
}
