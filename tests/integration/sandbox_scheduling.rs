//! When sandboxes start and stop, whatever the backend (local processes
//! here: fast and always available): the global limit queues starts and
//! says so, typing a prompt warms a sandbox, idle sandboxes hibernate and
//! the next prompt continues.

use std::time::Duration;

use canopy_protocol::{
    ephemeral::{Ephemeral, Typing},
    feature::QueueStatus,
};

use crate::common::*;

async fn status_of(base: &str, feature_id: &str, entry: &str) -> QueueStatus {
    let doc = document(base, feature_id).await;
    doc.queue
        .into_iter()
        .find(|e| e.id == entry)
        .unwrap()
        .status
}

async fn until_done(base: &str, feature_id: &str, entry: &str) {
    let status = settled(base, feature_id, entry).await.status;
    assert_eq!(status, QueueStatus::Done, "{entry}");
}

/// The sandbox state a session shows, and why.
async fn sandbox_of(
    base: &str,
    feature_id: &str,
    session_id: &str,
) -> Option<(String, Option<String>)> {
    let doc = document(base, feature_id).await;
    let s = doc.sessions.get(session_id)?.sandbox.clone()?;
    Some((s.state, s.detail))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starts_beyond_the_sandbox_limit_wait_and_the_session_says_so() {
    let model = Model::start().await;
    let dir = tempfile::tempdir().unwrap();
    let _reaper = Reaper(dir.path().to_owned());
    let mut config = agent_config(dir.path(), &model.url());
    config.max_sandboxes = 1;
    let server = start_with(config).await;
    let base = server.url().to_owned();
    let (fid, _) = create_feature(&base, "One at a time").await;
    let a = create_session(&base, &fid, "First").await;
    let b = create_session(&base, &fid, "Second").await;
    let first = enqueue(&base, &fid, &a, "write a.txt: first").await;
    until_done(&base, &fid, &first).await;

    // A's sandbox stays up (idle), holding the only slot: B waits.
    let second = enqueue(&base, &fid, &b, "write b.txt: second").await;
    let detail = until_some("B says it waits for a sandbox", async || match sandbox_of(
        &base, &fid, &b,
    )
    .await?
    {
        (state, Some(detail)) if state == "queued" => Some(detail),
        _ => None,
    })
    .await;
    assert!(detail.contains("all 1 allowed"), "{detail}");
    assert_eq!(status_of(&base, &fid, &second).await, QueueStatus::Queued);
    let m = metrics(&base).await;
    assert!(m.contains("\ncanopy_sandbox_starts_waiting 1\n"), "{m}");
    assert!(m.contains("\ncanopy_sandboxes_running 1\n"), "{m}");

    // A is done: its sandbox stops and B's starts.
    let resp = http()
        .post(format!("{base}/api/features/{fid}/sessions/{a}/complete"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    until_done(&base, &fid, &second).await;
    let (state, detail) = sandbox_of(&base, &fid, &b).await.unwrap();
    assert_eq!(state, "running");
    assert_eq!(detail, None);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn typing_warms_a_sandbox_and_an_idle_one_hibernates_until_the_next_prompt() {
    let model = Model::start().await;
    let dir = tempfile::tempdir().unwrap();
    let _reaper = Reaper(dir.path().to_owned());
    let mut config = agent_config(dir.path(), &model.url());
    config.sandbox_idle_secs = Some(4);
    let server = start_with(config).await;
    let base = server.url().to_owned();
    let me = user_id_of(&base, TOKEN).await;
    let (viewer, viewer_token) = add_user(&server, "vera").await;
    let (fid, doc) = create_feature(&base, "Warm me").await;
    assert_eq!(set_member(&base, &fid, &viewer, "viewer").await, 200);
    let watched = create_session(&base, &fid, "Viewer types here").await;
    let typed = create_session(&base, &fid, "Someone types here").await;

    let typing = |user: &str, session: &str| {
        Ephemeral::Typing(Typing {
            user_id: user.to_owned(),
            session_id: session.to_owned(),
        })
        .encode()
        .unwrap()
    };
    let vera = Peer::connect_as(&server.sync_url(), &viewer_token, "vera").await;
    let vera_doc = vera.find(&doc).await;
    let peer = Peer::connect(&server.sync_url(), "me").await;
    let handle = peer.find(&doc).await;
    // A viewer cannot prompt, so their typing warms nothing; then someone
    // who can types (after it, on one connection's ordered stream).
    vera_doc.broadcast(typing(&viewer, &watched));
    tokio::time::sleep(Duration::from_millis(200)).await;
    handle.broadcast(typing(&me, &typed));
    let (state, _) = until_some("typing starts the sandbox", async || {
        let s = sandbox_of(&base, &fid, &typed).await?;
        (s.0 == "running").then_some(s)
    })
    .await;
    assert_eq!(state, "running");
    assert!(
        sandbox_of(&base, &fid, &watched).await.is_none(),
        "a viewer's typing warmed a sandbox"
    );
    assert!(
        dir.path()
            .join("sandboxes")
            .join(&typed)
            .join("sandbox.json")
            .exists()
    );

    // Nobody prompts: it hibernates.
    let detail = until_some("the idle sandbox hibernates", async || {
        match sandbox_of(&base, &fid, &typed).await? {
            (state, Some(detail)) if state == "hibernated" => Some(detail),
            _ => None,
        }
    })
    .await;
    assert!(detail.contains("idle"), "{detail}");
    let m = metrics(&base).await;
    assert!(
        m.contains("canopy_sandbox_hibernations_total{reason=\"ok\"} 1\n"),
        "{m}"
    );
    assert!(
        !dir.path()
            .join("sandboxes")
            .join(&typed)
            .join("sandbox.json")
            .exists()
    );

    // The next prompt starts it again, with the workspace as it was.
    let entry = enqueue(&base, &fid, &typed, "write later.txt: after a nap").await;
    until_done(&base, &fid, &entry).await;
    let file = dir
        .path()
        .join("sandboxes")
        .join(&typed)
        .join("workspace/later.txt");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "after a nap");
    vera.stop().await;
    peer.stop().await;
    server.stop().await.unwrap();
}
