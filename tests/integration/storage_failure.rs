//! When SQLite cannot commit (here: the storage quota is exhausted, a real
//! SQLITE_FULL), the server says so, stops accepting changes, and loses
//! nothing: what it stored stays, and what it had not stored is still held by
//! the peer that wrote it.

use std::time::Duration;

use automerge::transaction::Transactable;
use canopy_protocol::feature;
use serde_json::Value;

use crate::common::*;

async fn status_and_json(url: String) -> (u16, Value) {
    let r = http().get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_server_read_only_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path());
    config.storage_quota_mb = Some(1);
    let server = start_with(config).await;
    let base = server.url().to_owned();
    let (feature_id, doc) = create_feature(&base, "quota").await;
    let stored_before = snapshot(&base, &feature_id).await;

    let writer = Peer::connect(&server.sync_url(), "writer").await;
    let h = writer.find(&doc).await;
    // Big changes until the server reports that storage failed. A big scalar
    // value is one operation, so this fills the disk without burning CPU.
    let blob = "x".repeat(100_000);
    let mut written = 0;
    within("storage fills up", async {
        loop {
            written += 1;
            let key = format!("attachment_{written}");
            edit(&h, "attach", |tx| {
                tx.put(automerge::ROOT, key.as_str(), blob.as_str())?;
                Ok(())
            });
            tokio::time::sleep(Duration::from_millis(30)).await;
            if status_and_json(format!("{base}/readyz")).await.0 == 503 {
                break;
            }
        }
    })
    .await;
    assert!(
        written > 3,
        "the quota should hold a few changes before failing"
    );
    let (status, ready) = status_and_json(format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    assert_eq!(ready["storage"]["writable"], false);
    assert!(
        ready["storage"]["error"].as_str().unwrap().contains("full"),
        "{ready}"
    );

    let text = metrics(&base).await;
    assert!(text.contains("canopy_storage_writable 0"));
    assert!(text.contains("canopy_storage_errors_total{operation=\"commit\"}"));

    // REST writes are refused with 503 and a JSON error.
    let r = http()
        .post(format!("{base}/api/features"))
        .json(&serde_json::json!({"title": "refused"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    // Reads still work.
    assert_eq!(
        snapshot(&base, &feature_id).await["document"]["title"],
        "quota"
    );

    // A change made now is not accepted by the server (read-only sharing).
    edit(&h, "late", |tx| {
        feature::set_notes(tx, "written while the disk was full")
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let snap = snapshot(&base, &feature_id).await;
    assert_ne!(snap["document"]["notes"], "written while the disk was full");

    // Stop (the writer gives up on what it could not store) and restart with room.
    server.stop().await.unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let after = snapshot(&base, &feature_id).await;
    assert_eq!(
        after["document"]["title"],
        stored_before["document"]["title"]
    );

    // The peer still holds everything it wrote; reconnecting delivers it.
    let dialer = redial(&writer.repo, &server.sync_url());
    within("reconnect", dialer.established()).await.unwrap();
    within(
        "server has the peer's changes",
        h.they_have_our_changes(dialer.connection_id().unwrap()),
    )
    .await;
    let snap = snapshot(&base, &feature_id).await;
    assert_eq!(snap["document"]["notes"], "written while the disk was full");
    let mut server_heads: Vec<String> = snap["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    server_heads.sort();
    let peer_heads: Vec<String> = heads(&h).iter().map(|x| x.to_string()).collect();
    assert_eq!(
        server_heads, peer_heads,
        "the server is missing some of the peer's changes"
    );
    let attachments = h.with_document(|d| {
        use automerge::ReadDoc;
        d.keys(automerge::ROOT)
            .filter(|k| k.starts_with("attachment_"))
            .count()
    });
    assert_eq!(attachments, written);
    let (status, _) = status_and_json(format!("{base}/readyz")).await;
    assert_eq!(status, 200);
    dialer.close();
    writer.stop().await;
    server.stop().await.unwrap();
}
