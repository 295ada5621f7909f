//! Follow a feature live, as a sync peer: prints the queue and the newest
//! learnings every time anyone changes the document.
//!
//! ```sh
//! cargo run --example watch_feature -- http://127.0.0.1:8420 ftr_…
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
    let base = base.trim_end_matches('/');
    let info: serde_json::Value = reqwest::get(format!("{base}/api/features/{feature_id}"))
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
    let sync_url = format!("{}/sync", base.replacen("http", "ws", 1));

    let repo = Repo::build_tokio().load().await;
    let dialer = canopy::client::dial(&repo, sync_url.parse()?, BackoffConfig::default())?;
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
