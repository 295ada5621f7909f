//! Canopy protocol: the contract between the Canopy server, the in-sandbox
//! sidecar and third-party clients (including JS clients built on the
//! official `@automerge/automerge` and `@automerge/automerge-repo`).
//!
//! Each Feature is one Automerge document (and each agent session's
//! transcript another), synced over the automerge-repo
//! protocol. This crate defines what is *in* that document and how to read
//! and write it safely from Rust, the ephemeral messages that travel next to
//! it, and the envelope of the wire protocol. The human-readable
//! specification is `sync-protocol/README.md`; the TypeScript types for JS
//! clients are in `sync-protocol/schema/`.
//!
//! # Layout
//!
//! - [`feature`]: the Feature document (schema 1): typed values,
//!   [`feature::read`]/[`feature::read_at`], cheap partial readers, the
//!   constructor [`feature::new_feature_document`] and one writer per edit.
//! - [`transcript`]: the Transcript document (schema 1, one per session):
//!   what the agent did, written by the server with sorted, idempotent
//!   upserts ([`transcript::upsert_message`], [`transcript::upsert_part`])
//!   and read with [`transcript::read`].
//! - [`value`]: [`value::DocView`], the tolerant reader underneath, at the
//!   current state or at any past heads.
//! - [`migrate`]: [`SCHEMA_VERSION`] and the migration table.
//! - [`ids`]: prefixed random ids (`ftr_`, `ses_`, `q_`, `lrn_`, `dec_`) and
//!   their validation.
//! - [`ChangeMeta`]: message and real timestamp for every change.
//! - [`ephemeral`]: presence, typing, heartbeats and streamed agent output,
//!   as CBOR messages that never enter document history.
//! - [`wire`]: the automerge-repo protocol v1 envelope the server inspects.
//! - `client` (feature `client`): the Rust sync client, a samod dialer for
//!   Canopy's `/sync` that fetches a fresh ticket before each attempt.
//! - [`sidecar`]: the sidecar's control API (status, commit) as the server
//!   calls it.
//! - [`SchemaError`], [`TransitionError`], [`EphemeralError`]: typed errors.

mod change;
#[cfg(feature = "client")]
pub mod client;
pub mod ephemeral;
mod error;
pub mod feature;
pub mod git;
pub mod ids;
pub mod migrate;
pub mod sidecar;
mod string_enum;
pub mod transcript;
pub mod value;
pub mod wire;

pub use change::{ChangeMeta, unix_ms_now};
pub use error::{EphemeralError, SchemaError, TransitionError};
pub use migrate::SCHEMA_VERSION;
