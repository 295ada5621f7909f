//! Acceptance 3: a peer goes offline, both sides edit (queue appends,
//! learnings, notes text), it reconnects, and every replica converges with
//! the same queue order.

use canopy_protocol::feature;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_merge_with_one_queue_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let me = user_id_of(&base, TOKEN).await;
    let (feature_id, doc) = create_feature(&base, "offline merge").await;
    let session = create_session(&base, &feature_id, "the session").await;

    let alice = Peer::connect(&server.sync_url(), "alice").await;
    let bob = Peer::connect(&server.sync_url(), "bob").await;
    let a = alice.find(&doc).await;
    let b = bob.find(&doc).await;
    edit(&a, "notes", |tx| feature::set_notes(tx, "shared start"));
    alice.synced(&a).await;
    eventually("bob sees the notes", async || {
        read(&b).notes == "shared start"
    })
    .await;

    // Alice drops off the network.
    assert_eq!(server.state().hub().connection_count(), 2);
    alice.dialer.close();
    eventually("the server sees alice leave", async || {
        server.state().hub().connection_count() == 1
    })
    .await;

    // Both edit while apart.
    for i in 0..4 {
        edit(&a, "queue", |tx| {
            feature::append_queue_entry(
                tx,
                &queue_entry(&session, &format!("alice offline {i}"), &me),
            )
        });
        edit(&b, "queue", |tx| {
            feature::append_queue_entry(tx, &queue_entry(&session, &format!("bob online {i}"), &me))
        });
    }
    edit(&a, "learn", |tx| {
        feature::add_learning(tx, &learning("alice learned offline", &me))
    });
    edit(&b, "learn", |tx| {
        feature::add_learning(tx, &learning("bob learned online", &me))
    });
    edit(&a, "notes", |tx| {
        feature::splice_notes(tx, 0, 0, "[alice] ")
    });
    let end = read(&b).notes.chars().count();
    edit(&b, "notes", |tx| {
        feature::splice_notes(tx, end, 0, " [bob]")
    });
    // The server has bob's edits but not alice's.
    bob.synced(&b).await;
    let snap = snapshot(&base, &feature_id).await;
    assert_eq!(snap["document"]["queue"].as_array().unwrap().len(), 4);

    // Alice comes back.
    let dialer = redial(&alice.repo, &server.sync_url());
    within("alice reconnects", dialer.established())
        .await
        .unwrap();
    within(
        "server has alice's changes",
        a.they_have_our_changes(dialer.connection_id().unwrap()),
    )
    .await;
    eventually("bob has alice's offline edits", async || {
        heads(&a) == heads(&b)
    })
    .await;

    let (da, db) = (read(&a), read(&b));
    assert_eq!(da, db);
    let ids = |d: &feature::FeatureDoc| d.queue.iter().map(|q| q.id.clone()).collect::<Vec<_>>();
    let snap = snapshot(&base, &feature_id).await;
    let server_ids: Vec<String> = snap["document"]["queue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(da.queue.len(), 8);
    assert_eq!(ids(&da), ids(&db));
    assert_eq!(ids(&da), server_ids, "the server's queue order differs");
    // Each author's own entries keep their relative order.
    for who in ["alice offline", "bob online"] {
        let mine: Vec<&str> = da
            .queue
            .iter()
            .map(|q| q.text.as_str())
            .filter(|t| t.starts_with(who))
            .collect();
        assert_eq!(
            mine,
            (0..4).map(|i| format!("{who} {i}")).collect::<Vec<_>>()
        );
    }
    assert_eq!(da.learnings.len(), 2);
    assert!(da.notes.starts_with("[alice] shared start"), "{}", da.notes);
    assert!(da.notes.ends_with(" [bob]"), "{}", da.notes);
    assert_eq!(snap["document"]["notes"], da.notes);

    dialer.close();
    alice.stop().await;
    bob.stop().await;
    server.stop().await.unwrap();
}
