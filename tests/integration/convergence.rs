//! Acceptance 1: two Rust peers edit one feature document through the server
//! and converge (same heads, same content), and the server agrees.

use canopy_protocol::feature;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rust_peers_converge_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    // Both peers act for the same user; authors must name the writer.
    let me = user_id_of(&base, TOKEN).await;
    let (feature_id, doc) = create_feature(&base, "Add OAuth login").await;
    let session = create_session(&base, &feature_id, "implement provider").await;

    let alice = Peer::connect(&server.sync_url(), "alice").await;
    let bob = Peer::connect(&server.sync_url(), "bob").await;
    let a = alice.find(&doc).await;
    let b = bob.find(&doc).await;
    assert_eq!(read(&a).title, "Add OAuth login");
    assert!(read(&b).sessions.contains_key(&session));

    // Both edit at the same time: learnings, queue entries, notes, a decision.
    let writer = |h: samod::DocHandle, who: &'static str, session: String, me: String| {
        tokio::spawn(async move {
            for i in 0..15 {
                edit(&h, "add learning", |tx| {
                    feature::add_learning(tx, &learning(&format!("{who} learned {i}"), &me))
                });
                if i % 5 == 0 {
                    edit(&h, "queue prompt", |tx| {
                        feature::append_queue_entry(
                            tx,
                            &queue_entry(&session, &format!("{who} asks {i}"), &me),
                        )
                    });
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let (ra, rb) = tokio::join!(
        writer(a.clone(), "alice", session.clone(), me.clone()),
        writer(b.clone(), "bob", session.clone(), me.clone())
    );
    ra.unwrap();
    rb.unwrap();
    edit(&a, "notes", |tx| feature::set_notes(tx, "alice's notes"));
    edit(&b, "notes", |tx| {
        feature::splice_notes(tx, 0, 0, "bob says hi. ")
    });

    alice.synced(&a).await;
    bob.synced(&b).await;
    eventually("both peers have every change", async || {
        heads(&a) == heads(&b) && read(&a).learnings.len() == 30
    })
    .await;

    let doc_a = read(&a);
    let doc_b = read(&b);
    assert_eq!(doc_a, doc_b, "same heads must mean same content");
    assert_eq!(doc_a.learnings.len(), 30);
    assert_eq!(doc_a.queue.len(), 6);
    assert!(doc_a.notes.contains("alice's notes") && doc_a.notes.contains("bob says hi."));

    // The server holds exactly the same state.
    let snap = snapshot(&base, &feature_id).await;
    let mut server_heads: Vec<String> = snap["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect();
    server_heads.sort();
    let peer_heads: Vec<String> = heads(&a).iter().map(|h| h.to_string()).collect();
    assert_eq!(server_heads, peer_heads);
    assert_eq!(snap["document"]["learnings"].as_array().unwrap().len(), 30);

    // Changes carry real timestamps and messages.
    let metas: Vec<(i64, Option<String>)> = a.with_document(|d| {
        d.get_changes_meta(&[])
            .into_iter()
            .map(|m| (m.timestamp, m.message.map(|s| s.to_string())))
            .collect()
    });
    let now_s = now_ms() / 1000;
    assert!(metas.len() > 30);
    for (time, message) in &metas {
        assert!(
            *time > now_s - 3600 && *time <= now_s + 5,
            "change time {time}"
        );
        assert!(message.as_deref().is_some_and(|s| !s.is_empty()));
    }

    alice.stop().await;
    bob.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_messages_are_relayed_and_never_stored() {
    use canopy_protocol::ephemeral::{Ephemeral, Typing};
    use futures::StreamExt;

    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (feature_id, doc) = create_feature(&base, "typing").await;
    let alice = Peer::connect(&server.sync_url(), "alice").await;
    let bob = Peer::connect(&server.sync_url(), "bob").await;
    let a = alice.find(&doc).await;
    let b = bob.find(&doc).await;
    let heads_before = snapshot(&base, &feature_id).await["heads"].clone();

    let mut incoming = b.ephemera();
    let typing = Ephemeral::Typing(Typing {
        user_id: "alice".into(),
        session_id: canopy_protocol::ids::new_session_id(),
    });
    // Broadcast until bob hears it (the first may race bob's subscription).
    let received = within("bob hears alice typing", async {
        loop {
            a.broadcast(typing.encode().unwrap());
            if let Ok(Some(bytes)) =
                tokio::time::timeout(std::time::Duration::from_millis(200), incoming.next()).await
            {
                return Ephemeral::decode(&bytes).unwrap();
            }
        }
    })
    .await;
    assert_eq!(received, typing);
    // Nothing about it entered the document.
    assert_eq!(snapshot(&base, &feature_id).await["heads"], heads_before);
    alice.stop().await;
    bob.stop().await;
    server.stop().await.unwrap();
}
