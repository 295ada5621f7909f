//! Canopy server: the sync hub for Feature documents.
//!
//! # Layout
//!
//! - [`config`]: command line and environment configuration.
//! - [`auth`]: users, API tokens, sync tickets and memberships.
//! - [`audit`]: the append-only audit log.
//! - [`attribution`]: which user each Automerge actor belongs to, and who
//!   delivered each change.
//! - [`server`]: assembles everything and runs it on a bound listener.
//! - [`http`]: the router (JSON API, `/sync`, health, metrics).
//! - [`sync`]: samod's repo, the per-connection gateway and the access policy.
//! - [`storage`]: samod storage on SQLite and the durable-heads index.
//! - [`db`]: the SQLite database (one writer thread, pooled readers).
//! - [`registry`]: which documents are shared; feature summaries.
//! - [`features`]: feature operations behind the API.
//! - [`summaries`]: keeps listed titles and statuses in step with documents.
//! - [`client`]: a samod dialer for `/sync`, used by Rust peers.
//! - [`devmodel`]: the scripted OpenAI-compatible model (offline default).
//! - [`opencode`]: a client for the OpenCode agent server in each sandbox.
//! - [`sandbox`]: where sessions' agents run (local processes by default).
//! - [`metrics`], [`telemetry`]: Prometheus metrics and logging.

pub mod admin;
pub mod attribution;
pub mod audit;
pub mod auth;
/// The Rust sync client lives in the protocol crate (the sidecar uses it too).
pub use canopy_protocol::client;
pub mod config;
pub mod db;
pub mod devmodel;
pub mod dispatch;
pub mod features;
pub mod github;
pub mod history;
pub mod http;
pub mod metrics;
pub mod opencode;
pub mod ratelimit;
pub mod registry;
pub mod sandbox;
pub mod server;
pub mod state;
pub mod storage;
pub mod summaries;
pub mod sync;
pub mod telemetry;
pub mod verify;
