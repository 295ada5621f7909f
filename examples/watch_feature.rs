//! Follow a feature live, as a sync peer: prints the queue and the newest
//! learnings every time anyone changes the document.
//!
//! ```sh
//! CANOPY_TOKEN=canopy_… cargo run --example watch_feature -- http://127.0.0.1:8420 ftr_…
//! ```

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use samod::{BackoffConfig, DocumentId, Repo};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(base), Some(feature_id)) = (args.next(), args.next()) else {
        bail!("usage: watch_feature <server-url> <feature-id>");
    };
    let token = std::env::var("CANOPY_TOKEN").context("set CANOPY_TOKEN to an API token")?;
    let base = base.trim_end_matches('/');
    let http = reqwest::Client::new();
    let me: serde_json::Value = http
        .get(format!("{base}/api/me"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()
        .context("the token was refused")?
        .json()
        .await?;
    let user_id = me["user_id"].as_str().context("no user id")?;
    let info: serde_json::Value = http
        .get(format!("{base}/api/features/{feature_id}"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()
        .context("cannot read the feature")?
        .json()
        .await?;
    let doc_id: DocumentId = info["doc_url"]
        .as_str()
        .and_then(|u| u.strip_prefix("automerge:"))
        .context("no doc_url in the response")?
        .parse()
        .map_err(|_| anyhow::anyhow!("bad document id"))?;
    // The server pins each connection to a peer id in the user's namespace.
    let peer_id = format!("u:{user_id}:watch-{:08x}", rand::random::<u32>());
    let repo = Repo::build_tokio()
        .with_peer_id(samod::PeerId::from(peer_id))
        .load()
        .await;
    let dialer = canopy::client::dial_with_token(&repo, base, &token, BackoffConfig::default())?;
    tokio::time::timeout(Duration::from_secs(10), dialer.established())
        .await
        .context("cannot reach the server")??;
    let handle = repo
        .find(doc_id)
        .await?
        .context("the server does not have this document")?;
    let mut changes = handle.changes();
    loop {
        let doc = handle.with_document(|d| canopy_protocol::feature::read(d))?;
        println!("\n== {} ({:?})", doc.title, doc.status);
        for q in &doc.queue {
            println!("  [{}] {} — {}", q.status, q.author, q.text);
        }
        for l in doc.learnings.iter().rev().take(5) {
            println!("  learned: {}", l.text);
        }
        if changes.next().await.is_none() {
            return Ok(());
        }
    }
}
