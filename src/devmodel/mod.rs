//! The scripted model: an OpenAI-compatible HTTP server (`GET /v1/models`,
//! `POST /v1/chat/completions`, streaming or not) whose answers are a pure
//! function of the prompt ([`script`]). It lets the whole agent loop (Canopy
//! → OpenCode → model → tools) run deterministically with no API key and no
//! network: the offline default of `make run` and the model of every test.
//! `canopy dev-model` runs it on its own.

pub mod script;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, Sse},
    },
    routing::{get, post},
};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use script::Reply;

/// The model id it reports and answers to.
pub const MODEL_ID: &str = "canopy-scripted";

/// Largest request accepted (conversations with tool output get long).
const MAX_REQUEST_BYTES: usize = 32 << 20;

/// One request the model received, for tests and benchmarks.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// The last user message's text.
    pub prompt: String,
    /// Whether the request offered tools (OpenCode's title request does not).
    pub with_tools: bool,
    /// The system messages' text (the agent's instructions and context).
    pub system: String,
    /// The names of the tools offered.
    pub tools: Vec<String>,
}

/// One answer the model has finished sending, for benchmarks: a streamed
/// answer once its last chunk and `[DONE]` are handed to the HTTP layer, a
/// plain one just before its JSON is. Provider errors are not reported.
#[derive(Debug, Clone)]
pub struct Finished {
    /// When the last of it was sent.
    pub at: Instant,
    /// The last user message's text (as in [`Received`]).
    pub prompt: String,
    /// Whether the request offered tools.
    pub with_tools: bool,
}

#[derive(Debug)]
struct Shared {
    received: broadcast::Sender<Received>,
    finished: broadcast::Sender<Finished>,
    count: AtomicU64,
}

/// A running scripted model.
#[derive(Debug, Clone)]
pub struct DevModel {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl DevModel {
    /// Serve on `listener` until `shutdown` fires.
    pub fn start(
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<DevModel> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            received: broadcast::channel(1024).0,
            finished: broadcast::channel(1024).0,
            count: AtomicU64::new(0),
        });
        let app = router(shared.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the scripted model stopped");
            }
        });
        tracing::info!(%addr, "scripted model (offline, no API key) listening");
        Ok(DevModel { addr, shared })
    }

    /// The OpenAI base URL (`http://host:port/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests received so far.
    pub fn request_count(&self) -> u64 {
        self.shared.count.load(Ordering::Relaxed)
    }

    /// Every request from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Received> {
        self.shared.received.subscribe()
    }

    /// Every answer finished from now on (see [`Finished`]).
    pub fn subscribe_finished(&self) -> broadcast::Receiver<Finished> {
        self.shared.finished.subscribe()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(shared)
}

fn openai_error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": kind, "code": null}})),
    )
        .into_response()
}

async fn models() -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "canopy"}],
    }))
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn chat(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "the body must be a JSON object",
            );
        }
        Err(e) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("malformed JSON: {e}"),
            );
        }
    };
    if !request["messages"].is_array() {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "`messages` must be an array",
        );
    }
    let prompt = request["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    let with_tools = request["tools"].as_array().is_some_and(|t| !t.is_empty());
    let system = request["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter(|m| m["role"] == "system")
                .map(|m| match &m["content"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let tools = request["tools"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    shared.count.fetch_add(1, Ordering::Relaxed);
    let _ = shared.received.send(Received {
        at: Instant::now(),
        prompt: prompt.clone(),
        with_tools,
        system,
        tools,
    });
    let reply = script::decide(&request);
    let model = request["model"].as_str().unwrap_or(MODEL_ID).to_owned();
    let id = format!("chatcmpl-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    if let Reply::Error { status, message } = &reply {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return openai_error(status, "server_error", message.clone());
    }
    let finished = shared.finished.clone();
    let done = move || {
        let _ = finished.send(Finished {
            at: Instant::now(),
            prompt,
            with_tools,
        });
    };
    if request["stream"].as_bool() == Some(true) {
        // Reported when the body is polled past `[DONE]`: everything has
        // been handed to the HTTP layer.
        let after = futures::stream::once(async move { done() })
            .filter_map(|()| std::future::ready(None::<Result<Event, Infallible>>));
        Sse::new(stream(reply, id, model).chain(after)).into_response()
    } else {
        let body = complete(reply, &id, &model);
        done();
        Json(body).into_response()
    }
}

fn usage(completion_tokens: usize) -> Value {
    json!({"prompt_tokens": 10, "completion_tokens": completion_tokens, "total_tokens": 10 + completion_tokens})
}

/// A non-streaming `chat.completion`.
fn complete(reply: Reply, id: &str, model: &str) -> Value {
    let (message, finish, tokens) = match reply {
        Reply::Text { chunks, .. } => {
            let n = chunks.len();
            (
                json!({"role": "assistant", "content": chunks.concat()}),
                "stop",
                n,
            )
        }
        Reply::ToolCall { name, arguments } => (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": format!("call_{id}"), "type": "function",
                "function": {"name": name, "arguments": arguments.to_string()},
            }]}),
            "tool_calls",
            1,
        ),
        Reply::Error { .. } => (json!({"role": "assistant", "content": ""}), "stop", 0),
    };
    json!({
        "id": id, "object": "chat.completion", "created": unix_secs(), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage(tokens),
    })
}

fn chunk(id: &str, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id, "object": "chat.completion.chunk", "created": unix_secs(), "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

/// `chat.completion.chunk` events, then the finish, the usage and `[DONE]`.
fn stream(
    reply: Reply,
    id: String,
    model: String,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut events: Vec<(std::time::Duration, Value)> = Vec::new();
    let (finish, tokens) = match reply {
        Reply::Text { chunks, delay } => {
            let n = chunks.len();
            for (i, text) in chunks.into_iter().enumerate() {
                let delta = if i == 0 {
                    json!({"role": "assistant", "content": text})
                } else {
                    json!({"content": text})
                };
                let wait = if i == 0 {
                    std::time::Duration::ZERO
                } else {
                    delay
                };
                events.push((wait, chunk(&id, &model, delta, None)));
            }
            ("stop", n)
        }
        Reply::ToolCall { name, arguments } => {
            events.push((
                std::time::Duration::ZERO,
                chunk(
                    &id,
                    &model,
                    json!({"role": "assistant", "tool_calls": [{
                        "index": 0, "id": format!("call_{id}"), "type": "function",
                        "function": {"name": name, "arguments": arguments.to_string()},
                    }]}),
                    None,
                ),
            ));
            ("tool_calls", 1)
        }
        Reply::Error { .. } => ("stop", 0),
    };
    let mut last = chunk(&id, &model, json!({}), Some(finish));
    last["usage"] = usage(tokens);
    events.push((std::time::Duration::ZERO, last));
    futures::stream::iter(events)
        .then(|(wait, value)| async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Ok(Event::default().data(value.to_string()))
        })
        .chain(futures::stream::once(async {
            Ok(Event::default().data("[DONE]"))
        }))
}
