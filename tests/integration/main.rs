//! Integration tests: real servers on 127.0.0.1, real SQLite files, real
//! WebSockets, the official JS packages and the server binary.
//!
//! One test binary (each `mod` is a topic) keeps link time down.

#![allow(clippy::unwrap_used, clippy::print_stdout, unreachable_pub)]

mod agents;
mod auth;
mod bad_input;
mod cli;
mod common;
mod convergence;
mod devmodel;
mod docker;
mod docker_image;
mod durability;
mod fake_github;
mod github;
mod history;
mod http_api;
mod js_interop;
mod offline;
mod opencode_model;
mod ops;
mod pull_requests;
mod sandbox_local;
mod sandbox_scheduling;
mod sidecar;
mod storage_failure;
