//! Concurrent edits on forks of one document merge as the protocol promises.
#![allow(clippy::unwrap_used)]

mod support;

use automerge::{ActorId, Automerge};
use canopy_protocol::feature::{
    self, NewLearning, NewQueueEntry, QueueStatus, QueueUpdate, Writer,
};
use canopy_protocol::{ChangeMeta, ids};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::*;

fn fork(doc: &Automerge, actor: u8) -> Automerge {
    doc.fork().with_actor(ActorId::from(vec![actor; 16]))
}

fn append(doc: &mut Automerge, author: &str, text: &str) -> String {
    let id = ids::new_queue_entry_id();
    doc.transact_with(
        |_| ChangeMeta::now(format!("queue prompt {id}")).commit_options(),
        |tx| {
            feature::append_queue_entry(
                tx,
                &NewQueueEntry {
                    id: id.clone(),
                    session_id: S2.into(),
                    author: author.into(),
                    text: text.into(),
                    created_at: T0,
                },
            )
        },
    )
    .unwrap();
    id
}

fn sync_both(a: &mut Automerge, b: &mut Automerge) {
    a.merge(b).unwrap();
    b.merge(a).unwrap();
}

fn queue_ids(doc: &Automerge) -> Vec<String> {
    feature::read(doc)
        .unwrap()
        .queue
        .into_iter()
        .map(|q| q.id)
        .collect()
}

#[test]
fn concurrent_queue_appends_both_survive_in_one_order() {
    let base = sample_document();
    assert_eq!(feature::read(&base).unwrap(), sample_expected());
    let mut a = fork(&base, 1);
    let mut b = fork(&base, 2);
    let from_a = append(&mut a, "alice", "from alice");
    let from_b = append(&mut b, "bob", "from bob");
    sync_both(&mut a, &mut b);
    let (qa, qb) = (queue_ids(&a), queue_ids(&b));
    assert_eq!(qa, qb, "same order on both sides");
    assert_eq!(qa.len(), 5);
    assert!(qa.contains(&from_a) && qa.contains(&from_b));
    assert_eq!(feature::read(&a).unwrap(), feature::read(&b).unwrap());
}

#[test]
fn random_concurrent_appends_converge() {
    for seed in 0..24 {
        let mut rng = StdRng::seed_from_u64(seed);
        let base = sample_document();
        let mut a = fork(&base, 1);
        let mut b = fork(&base, 2);
        let mut mine_a = Vec::new();
        let mut mine_b = Vec::new();
        for round in 0..rng.random_range(1..4) {
            for _ in 0..rng.random_range(0..4) {
                mine_a.push(append(&mut a, "alice", &format!("a{round}")));
            }
            for _ in 0..rng.random_range(0..4) {
                mine_b.push(append(&mut b, "bob", &format!("b{round}")));
            }
            if rng.random_bool(0.5) {
                sync_both(&mut a, &mut b);
            }
        }
        sync_both(&mut a, &mut b);
        let (qa, qb) = (queue_ids(&a), queue_ids(&b));
        assert_eq!(qa, qb, "seed {seed}");
        assert_eq!(qa.len(), 3 + mine_a.len() + mine_b.len(), "seed {seed}");
        // Each peer's own entries keep their relative order.
        for mine in [&mine_a, &mine_b] {
            let positions: Vec<usize> = mine
                .iter()
                .map(|id| qa.iter().position(|q| q == id).unwrap())
                .collect();
            assert!(positions.windows(2).all(|w| w[0] < w[1]), "seed {seed}");
        }
    }
}

#[test]
fn concurrent_notes_edits_merge() {
    let base = sample_document();
    let mut a = fork(&base, 1);
    let mut b = fork(&base, 2);
    a.transact_with(
        |_| ChangeMeta::now("notes").commit_options(),
        |tx| feature::splice_notes(tx, 0, 0, "[alice] "),
    )
    .unwrap();
    let end = NOTES.chars().count();
    b.transact_with(
        |_| ChangeMeta::now("notes").commit_options(),
        |tx| feature::splice_notes(tx, end, 0, " [bob]"),
    )
    .unwrap();
    // set_notes applies a diff, so it merges with a concurrent splice too.
    let mut c = fork(&base, 3);
    let replaced = NOTES.replace("Friday", "Monday");
    c.transact_with(
        |_| ChangeMeta::now("notes").commit_options(),
        |tx| feature::set_notes(tx, &replaced),
    )
    .unwrap();
    sync_both(&mut a, &mut b);
    sync_both(&mut a, &mut c);
    b.merge(&mut c).unwrap();
    let want = format!("[alice] {} [bob]", NOTES.replace("Friday", "Monday"));
    for doc in [&a, &b, &c] {
        assert_eq!(feature::read(doc).unwrap().notes, want);
    }
}

#[test]
fn concurrent_learnings_and_status_changes_converge() {
    let base = sample_document();
    let mut server = fork(&base, 1);
    let mut client = fork(&base, 2);
    // The server dispatches Q2 while a client cancels it: both are allowed
    // locally, the merge picks one deterministically, and the server must
    // arbitrate afterwards (the queue is not an exactly-once work queue).
    server
        .transact_with(
            |_| ChangeMeta::now("dispatch").commit_options(),
            |tx| {
                feature::set_queue_status(
                    tx,
                    Q2,
                    &QueueUpdate::new(QueueStatus::Dispatched, Writer::Server, T0),
                )
            },
        )
        .unwrap();
    client
        .transact_with(
            |_| ChangeMeta::now("cancel").commit_options(),
            |tx| {
                feature::set_queue_status(
                    tx,
                    Q2,
                    &QueueUpdate::new(QueueStatus::Cancelled, Writer::Client, T0),
                )?;
                feature::add_learning(
                    tx,
                    &NewLearning {
                        id: ids::new_learning_id(),
                        text: "client learned".into(),
                        author: "bob".into(),
                        from_session: None,
                        importance: feature::Importance::Low,
                        files: vec![],
                        created_at: T0,
                    },
                )
            },
        )
        .unwrap();
    sync_both(&mut server, &mut client);
    let (rs, rc) = (
        feature::read(&server).unwrap(),
        feature::read(&client).unwrap(),
    );
    assert_eq!(rs, rc);
    assert!([QueueStatus::Dispatched, QueueStatus::Cancelled].contains(&rs.queue[1].status));
    assert_eq!(rs.learnings.len(), 2);
}
