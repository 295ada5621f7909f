//! `canopy-sidecar`: the Feature document inside a sandbox.
//!
//! One process per sandbox, next to the agent. It keeps a replica of the
//! session's Feature document (synced with the server over the
//! automerge-repo protocol, stored locally so it survives restarts and
//! server outages), supervises `opencode serve`, writes the live feature
//! context the agent reads as instructions, serves the agent's feature tools
//! over MCP, and commits the workspace after each prompt under the name of
//! the person who asked.
//!
//! It starts bound to its session (everything in the environment) or
//! pooled: a container started before any session exists runs OpenCode at
//! once and is bound by the server's `POST /v1/claim`, so a session gets a
//! warm sandbox in well under a second.
//!
//! # Layout
//!
//! - [`config`]: environment and flags.
//! - [`binding`]: the session a sidecar works for, from the environment or
//!   from a claim of a pooled sidecar.
//! - [`workspace`]: the workspace a container's sidecar prepares itself.
//! - [`replica`]: reads and attributed, timestamped writes of the replica.
//! - [`sync`]: the local repo, its store and the connection to the server.
//! - [`supervisor`]: OpenCode's process: start, health, restart, stop.
//! - [`context`]: the feature context as markdown, kept current on disk.
//! - [`tools`]: the agent's feature tools (MCP, streamable HTTP).
//! - [`git`]: attributed commits of the workspace, and its pushes.
//! - [`credential`]: git credentials on request (the helper mode).
//! - [`control`]: the HTTP listener: MCP for the agent, the control API
//!   (status, commit, claim) for the server.
//! - [`run`]: wires it all together until SIGTERM.

pub mod binding;
pub mod config;
pub mod context;
pub mod control;
pub mod credential;
pub mod git;
pub mod replica;
pub mod run;
pub mod supervisor;
pub mod sync;
pub mod tools;
pub mod workspace;

pub use config::Config;
