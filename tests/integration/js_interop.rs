//! Acceptance 2: the official JS client (`@automerge/automerge-repo` 2.5 with
//! its WebSocket client adapter, in Node) syncs with the server both ways,
//! authenticated with a sync ticket as a browser would be.

use automerge::{ObjType, ReadDoc, Value as AmValue};
use canopy_protocol::feature;
use serde_json::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_js_client_syncs_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    // Authors must name the user who writes (the server verifies it).
    let me = user_id_of(&base, TOKEN).await;
    let (feature_id, doc) = create_feature(&base, "interop").await;
    let session = create_session(&base, &feature_id, "js session").await;

    // Rust writes first.
    let rust = Peer::connect(&server.sync_url(), "rust").await;
    let h = rust.find(&doc).await;
    edit(&h, "learn", |tx| {
        feature::add_learning(tx, &learning("written by rust", &me))
    });
    rust.synced(&h).await;

    // JS reads Rust's change, then writes its own and waits for the server to have it.
    let out = node(
        "interop-client.mjs",
        &[
            &base,
            TOKEN,
            &format!("automerge:{doc}"),
            &session,
            "written by rust",
            &feature_id,
        ],
    )
    .await;
    let report: Value = serde_json::from_str(out.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("bad output from the JS client ({e}): {out}"));
    assert_eq!(report["saw_rust_learning"], true);
    // It came in through a ticket, pinned to a peer id in its user's namespace.
    assert!(
        report["peer_id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("u:{me}:")),
        "{report}"
    );
    let js_entry = report["queue_entry_id"].as_str().unwrap().to_owned();

    // Rust receives the JS change, including strings JS wrote as Text objects.
    eventually("rust sees the JS queue entry", async || {
        read(&h).queue.iter().any(|q| q.id == js_entry)
    })
    .await;
    let d = read(&h);
    let entry = d.queue.iter().find(|q| q.id == js_entry).unwrap();
    assert_eq!(entry.text, "from the JS client");
    assert_eq!(entry.author, me);
    assert_eq!(entry.session_id, session);
    assert_eq!(entry.status, feature::QueueStatus::Queued);
    assert!(
        d.learnings
            .iter()
            .any(|l| l.text == "learned in JS" && l.author == me)
    );
    assert!(d.notes.starts_with("JS was here. "), "{}", d.notes);

    // Prove the JS strings really are Text objects, not scalars.
    let kind = h.with_document(|doc| {
        let queue = doc.get(automerge::ROOT, "queue").unwrap().unwrap().1;
        let n = doc.length(&queue);
        let last = doc.get(&queue, n - 1).unwrap().unwrap().1;
        match doc.get(&last, "text").unwrap().unwrap().0 {
            AmValue::Object(t) => Some(t),
            AmValue::Scalar(_) => None,
        }
    });
    assert_eq!(kind, Some(ObjType::Text), "JS should write strings as Text");

    // And the server's JSON view agrees.
    let snap = snapshot(&base, &feature_id).await;
    assert!(
        snap["document"]["queue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["id"] == js_entry.as_str() && q["text"] == "from the JS client")
    );
    rust.stop().await;
    server.stop().await.unwrap();
}
