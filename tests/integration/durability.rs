//! Acceptance 4 and 5: documents survive a restart, and a change the server
//! acknowledged survives SIGKILL.

use canopy_protocol::feature;
use serde_json::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_document_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let mut features = Vec::new();
    for i in 0..5 {
        let (id, doc) = create_feature(&base, &format!("feature {i}")).await;
        let sid = create_session(&base, &id, "s").await;
        let r = http()
            .post(format!("{base}/api/features/{id}/queue"))
            .json(&serde_json::json!({"session_id": sid, "text": format!("prompt {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        features.push((id, doc));
    }
    // A peer piles changes onto one document (enough to trigger compaction).
    let me = user_id_of(&base, TOKEN).await;
    let peer = Peer::connect(&server.sync_url(), "writer").await;
    let h = peer.find(&features[0].1).await;
    for i in 0..40 {
        edit(&h, "learn", |tx| {
            feature::add_learning(tx, &learning(&format!("l{i}"), &me))
        });
    }
    peer.synced(&h).await;
    let mut before: Vec<Value> = Vec::new();
    for (id, _) in &features {
        before.push(snapshot(&base, id).await);
    }
    peer.stop().await;
    server.stop().await.unwrap();

    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    for ((id, _), old) in features.iter().zip(&before) {
        let now = snapshot(&base, id).await;
        assert_eq!(&now, old, "feature {id} changed across a restart");
    }
    assert_eq!(
        before[0]["document"]["learnings"].as_array().unwrap().len(),
        40
    );
    let list: Value = get_json(format!("{base}/api/features")).await;
    assert_eq!(list["features"].as_array().unwrap().len(), 5);
    // And peers can sync them again.
    let peer = Peer::connect(&server.sync_url(), "reader").await;
    let h = peer.find(&features[0].1).await;
    assert_eq!(read(&h).learnings.len(), 40);
    peer.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_change_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = ServerProcess::start(dir.path(), &[]).await;
    let (feature_id, doc) = create_feature(&proc.url, "crash test").await;
    let me = user_id_of(&proc.url, TOKEN).await;
    let mut written = Vec::new();
    for round in 0..16 {
        // A fresh client with an in-memory replica writes a burst of changes,
        // waits until the server says it has them, and throws its replica away.
        let peer = Peer::connect(&proc.sync_url(), "crasher").await;
        let h = peer.find(&doc).await;
        let n = 1 + (round % 4) * 5; // some rounds cross samod's compaction threshold
        for i in 0..n {
            let text = format!("round {round} change {i}");
            edit(&h, "learn", |tx| {
                feature::add_learning(tx, &learning(&text, &me))
            });
            written.push(text);
        }
        peer.synced(&h).await;
        // Kill at once, with no shutdown code, then throw the replica away.
        proc.kill().await;
        drop(h);
        peer.stop().await;
        proc = ServerProcess::start(dir.path(), &[]).await;
        let snap = snapshot(&proc.url, &feature_id).await;
        let stored: Vec<&str> = snap["document"]["learnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["text"].as_str().unwrap())
            .collect();
        for text in &written {
            assert!(
                stored.contains(&text.as_str()),
                "acknowledged change {text:?} lost after SIGKILL in round {round}"
            );
        }
    }
    proc.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_acknowledges_a_change_only_once_it_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (feature_id, doc) = create_feature(&base, "slow disk").await;
    let me = user_id_of(&base, TOKEN).await;
    let peer = Peer::connect(&server.sync_url(), "patient").await;
    let h = peer.find(&doc).await;
    // A first change binds the peer's actor id to its user (a write the
    // server waits for before accepting that actor's first change).
    edit(&h, "hello", |tx| feature::set_notes(tx, "first"));
    peer.synced(&h).await;

    // The disk stalls; the peer writes.
    server.state().db().hold_commits();
    edit(&h, "learn", |tx| {
        feature::add_learning(tx, &learning("wait for it", &me))
    });
    let conn = peer.dialer.connection_id().unwrap();
    let ack = tokio::spawn(h.they_have_our_changes(conn));
    // The server has applied the change in memory…
    eventually("the server applied the change", async || {
        snapshot(&base, &feature_id).await["document"]["learnings"]
            .as_array()
            .unwrap()
            .len()
            == 1
    })
    .await;
    // …but must not tell the peer while it is not durable.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !ack.is_finished(),
        "the server acknowledged a change that was not on disk"
    );
    server.state().db().release_commits();
    within("acknowledgement after the commit", ack)
        .await
        .unwrap();
    peer.stop().await;
    server.stop().await.unwrap();
}
