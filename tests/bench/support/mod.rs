//! What the benchmark programs share (each includes this module).

#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use samod::DocHandle;

/// The first user's token of every Canopy server a benchmark starts.
pub(crate) const TOKEN: &str =
    "canopy_benchtokenaaaaaaaaaa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// `--flag 1,2,3` from the command line, else `default`.
pub(crate) fn arg_list(args: &[String], flag: &str, default: &[usize]) -> Vec<usize> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.split(',')
                .map(|x| x.trim().parse().expect(flag))
                .collect()
        })
        .unwrap_or_else(|| default.to_vec())
}

/// The user id behind [`TOKEN`] on the server at `base`.
pub(crate) async fn user_id(base: &str) -> String {
    let me: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/api/me"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    me["user_id"].as_str().unwrap().to_owned()
}

/// Merge a history built on `fork` into `handle` and wait until the peer
/// behind `connection` has all of it; returns the seconds that took.
pub(crate) async fn hand_over(
    handle: &DocHandle,
    fork: &mut automerge::Automerge,
    connection: samod::ConnectionId,
) -> f64 {
    let started = Instant::now();
    handle.with_document(|d| d.merge(fork).unwrap());
    tokio::time::timeout(
        Duration::from_secs(900),
        handle.they_have_our_changes(connection),
    )
    .await
    .expect("the server did not take the history");
    started.elapsed().as_secs_f64()
}
