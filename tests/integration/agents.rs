//! Issue 4's acceptance: queue entries become real OpenCode runs (pinned
//! binary, local-process sandboxes) against the scripted model; transcripts,
//! streamed deltas, stop and cancel, crashes, and refused entries.

use std::{path::PathBuf, time::Duration};

use automerge::{ROOT, ReadDoc, transaction::Transactable};
use canopy::{devmodel::DevModel, server::RunningServer};
use canopy_protocol::{
    ephemeral::Ephemeral,
    feature::{self, FeatureDoc, QueueStatus, SessionStatus},
    transcript::{self, PartKind, Role, ToolState, TranscriptDoc},
};
use futures::StreamExt;
use samod::{DocHandle, DocumentId};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// Runs take a sandbox start (seconds) and a model round trip or two.
const RUN_PATIENCE: Duration = Duration::from_secs(120);

async fn within_run<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(RUN_PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {RUN_PATIENCE:?}: {what}"))
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    within_run(what, async {
        loop {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

struct World {
    server: RunningServer,
    model: DevModel,
    _model_stop: tokio_util::sync::DropGuard,
    _reaper: Reaper,
    dir: tempfile::TempDir,
    base: String,
    feature_id: String,
    doc: DocumentId,
    session_id: String,
}

impl World {
    async fn start() -> World {
        World::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut canopy::config::ServerConfig)) -> World {
        // `TEST_LOG=canopy=debug` shows the server's logs for a failing test.
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let stop = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let model = DevModel::start(listener, stop.clone()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = agent_config(dir.path(), &model.base_url());
        tweak(&mut config);
        let server = start_with(config).await;
        let base = server.url().to_owned();
        let (feature_id, doc) = create_feature(&base, "Agents at work").await;
        let session_id = create_session(&base, &feature_id, "Implement it").await;
        World {
            server,
            model,
            _model_stop: stop.drop_guard(),
            _reaper: Reaper(dir.path().to_owned()),
            dir,
            base,
            feature_id,
            doc,
            session_id,
        }
    }

    fn workspace(&self) -> PathBuf {
        self.dir
            .path()
            .join("sandboxes")
            .join(&self.session_id)
            .join("workspace")
    }

    async fn enqueue_api(&self, text: &str) -> String {
        let resp = http()
            .post(format!(
                "{}/api/features/{}/queue",
                self.base, self.feature_id
            ))
            .json(&json!({ "session_id": self.session_id, "text": text }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        resp.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn stop(self) {
        self.server.stop().await.unwrap();
    }
}

/// Append a prompt over sync, as `author`, and return its id.
fn append(handle: &DocHandle, session_id: &str, text: &str, author: &str) -> String {
    let entry = queue_entry(session_id, text, author);
    let id = entry.id.clone();
    edit(handle, "queue a prompt", |tx| {
        feature::append_queue_entry(tx, &entry)
    });
    id
}

fn entry(doc: &FeatureDoc, id: &str) -> feature::QueueEntry {
    find_entry(doc, id).unwrap_or_else(|| panic!("no entry {id}"))
}

/// The entry, once this replica has it.
fn find_entry(doc: &FeatureDoc, id: &str) -> Option<feature::QueueEntry> {
    doc.queue.iter().find(|e| e.id == id).cloned()
}

async fn until_status(handle: &DocHandle, id: &str, want: &[QueueStatus]) -> feature::QueueEntry {
    let mut last = None;
    within_run(&format!("entry {id} reaches {want:?}"), async {
        loop {
            if let Some(e) = find_entry(&read(handle), id) {
                if want.contains(&e.status) {
                    return e;
                }
                if last.as_ref() != Some(&e.status) {
                    last = Some(e.status.clone());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

fn read_transcript(handle: &DocHandle) -> TranscriptDoc {
    handle.with_document(|d| transcript::read(d).unwrap())
}

async fn open_transcript(peer: &Peer, feature: &DocHandle, session_id: &str) -> DocHandle {
    let mut url = None;
    until("the session links its transcript", async || {
        url = read(feature).sessions[session_id].transcript.clone();
        url.is_some()
    })
    .await;
    let url = url.unwrap();
    let id: DocumentId = url
        .strip_prefix("automerge:")
        .unwrap_or(&url)
        .parse()
        .unwrap();
    peer.find(&id).await
}

fn final_text(t: &TranscriptDoc, entry: &str) -> String {
    let user = t
        .messages
        .iter()
        .position(|m| m.queue_entry.as_deref() == Some(entry))
        .expect("the user message");
    t.messages[user + 1..]
        .iter()
        .take_while(|m| m.role == Role::Assistant)
        .flat_map(|m| m.parts.iter())
        .filter(|p| p.kind == PartKind::Text)
        .filter_map(|p| p.text.clone())
        .last()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prompt_queued_over_sync_runs_and_streams_to_everyone() {
    let w = World::start().await;
    let alice = user_id_of(&w.base, TOKEN).await;
    let (bob_id, bob_token) = add_user(&w.server, "bob").await;
    assert_eq!(
        set_member(&w.base, &w.feature_id, &bob_id, "contributor").await,
        200
    );

    let a = Peer::connect(&w.server.sync_url(), "alice").await;
    let b = Peer::connect_as(&w.server.sync_url(), &bob_token, "bob").await;
    let fa = a.find(&w.doc).await;
    let fb = b.find(&w.doc).await;
    let diff_url = format!(
        "{}/api/features/{}/sessions/{}/diff",
        w.base, w.feature_id, w.session_id
    );
    // No sandbox yet: no diff, and the answer says why.
    let resp = http().get(&diff_url).send().await.unwrap();
    assert_eq!(resp.status(), 409);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "sandbox_not_running"
    );

    // A first prompt starts the sandbox and creates the transcript; Bob
    // opens it and listens for streamed output from then on.
    let warm = append(
        &fa,
        &w.session_id,
        "slow 5: warming up the sandbox now",
        &alice,
    );
    let tb = open_transcript(&b, &fb, &w.session_id).await;
    let mut ephemera = tb.ephemera();
    until_status(&fb, &warm, &[QueueStatus::Done]).await;

    let id = append(&fa, &w.session_id, "write hello.txt: hi", &alice);
    // Bob sees every step: queued, then running, then done.
    let mut seen = vec![];
    until("Bob sees the entry finish", async || {
        let Some(s) = find_entry(&read(&fb), &id).map(|e| e.status) else {
            return false;
        };
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        s == QueueStatus::Done
    })
    .await;
    assert!(seen.contains(&QueueStatus::Running), "Bob saw {seen:?}");

    // Streamed deltas reached Bob before the settled text did.
    let mut early = false;
    let mut streamed = String::new();
    while let Ok(Some(bytes)) =
        tokio::time::timeout(Duration::from_millis(500), ephemera.next()).await
    {
        if let Ok(Ephemeral::AgentOutput(out)) = Ephemeral::decode(&bytes) {
            assert_eq!(out.session_id, w.session_id);
            streamed.push_str(&out.text);
            early |= !out.text.is_empty();
        }
    }
    assert!(early, "Bob received no streamed output");
    assert!(
        streamed.contains("warming up") && streamed.contains("Wrote hello.txt"),
        "streamed: {streamed:?}"
    );

    // The workspace has the file.
    assert_eq!(
        std::fs::read_to_string(w.workspace().join("hello.txt")).unwrap(),
        "hi"
    );
    // The transcript: the user message with its author, the tool call, the answer.
    let mut t = read_transcript(&tb);
    until("Bob's transcript has the answer", async || {
        t = read_transcript(&tb);
        final_text(&t, &id).contains("Wrote hello.txt")
    })
    .await;
    let user = t
        .messages
        .iter()
        .find(|m| m.queue_entry.as_deref() == Some(id.as_str()))
        .unwrap();
    assert_eq!(user.role, Role::User);
    assert_eq!(user.author.as_deref(), Some(alice.as_str()));
    assert_eq!(user.parts[0].text.as_deref(), Some("write hello.txt: hi"));
    let tool = t
        .messages
        .iter()
        .flat_map(|m| m.parts.iter())
        .find(|p| p.kind == PartKind::Tool && p.tool.as_deref() == Some("write"))
        .expect("a write tool call");
    assert_eq!(tool.state, Some(ToolState::Completed));
    assert!(tool.input.as_deref().unwrap().contains("hello.txt"));
    // Its full output is served over HTTP.
    let out = get_json(format!(
        "{}/api/features/{}/sessions/{}/tool-outputs/{}",
        w.base, w.feature_id, w.session_id, tool.id
    ))
    .await;
    assert_eq!(out["tool"], "write");
    // Messages are unique and in order.
    let ids: Vec<_> = t.messages.iter().map(|m| m.id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted);

    // The commit follows the outcome: the session is idle again with it.
    until("the run's commit is recorded", async || {
        let doc = read(&fb);
        entry(&doc, &id).commit.is_some()
            && doc.sessions[&w.session_id].status == SessionStatus::Idle
    })
    .await;
    let doc = read(&fb);
    let session = &doc.sessions[&w.session_id];
    assert!(
        session.files_changed.contains(&"hello.txt".to_owned()),
        "{session:?}"
    );
    assert_eq!(session.sandbox.as_ref().unwrap().backend, "local");
    assert!(entry(&doc, &id).started_at.is_some() && entry(&doc, &id).finished_at.is_some());

    // What a server that stopped between a run's outcome and its commit
    // leaves behind: `running` with nothing in flight. It is wrapped up
    // (committed, `idle`) without anyone queueing.
    let left_running = fa.with_document(|d| {
        d.transact_with(
            |_| canopy_protocol::ChangeMeta::now("left running").commit_options(),
            |tx| feature::set_session_status(tx, &w.session_id, &SessionStatus::Running),
        )
        .unwrap()
        .hash
        .unwrap()
    });
    // Idle in a document that has the change: the server answered it.
    until("the unfinished wrap-up is finished", async || {
        fb.with_document(|d| d.get_change_by_hash(&left_running).is_some())
            && read(&fb).sessions[&w.session_id].status == SessionStatus::Idle
    })
    .await;

    // The session's diff (Bob may read it): the file the agent wrote, with
    // its patch; a file left uncommitted in the workspace shows too.
    std::fs::write(w.workspace().join("scratch.md"), "draft\n").unwrap();
    let diff: Value = http_as(&bob_token)
        .get(&diff_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let files = diff["files"].as_array().unwrap();
    let hello = files.iter().find(|f| f["path"] == "hello.txt").unwrap();
    assert_eq!(hello["status"], "added", "{diff}");
    assert_eq!(hello["additions"], 1);
    assert!(hello["patch"].as_str().unwrap().contains("+hi"), "{diff}");
    assert!(files.iter().any(|f| f["path"] == "scratch.md"), "{diff}");
    assert_eq!(diff["truncated"], false);
    assert_eq!(diff["source"], "sandbox", "{diff}");
    // Unknown sessions and strangers get no diff.
    let missing = http()
        .get(format!(
            "{}/api/features/{}/sessions/{}/diff",
            w.base,
            w.feature_id,
            canopy_protocol::ids::new_session_id()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 422);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["code"],
        "unknown_session"
    );
    let (_, stranger) = add_user(&w.server, "mallory").await;
    let refused = http_as(&stranger).get(&diff_url).send().await.unwrap();
    assert!(
        matches!(refused.status().as_u16(), 403 | 404),
        "{}",
        refused.status()
    );

    // The history credits the dispatcher's writes to the session's agent,
    // and the prompt's copy in the transcript to its author.
    let feature_url = format!("{}/api/features/{}", w.base, w.feature_id);
    let agent = format!("agent:{}", w.session_id);
    let by_message = async |url: String, message: &str| -> Vec<String> {
        let page = get_json(url).await;
        page["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["message"] == message)
            .map(|c| c["author"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    until("the history credits the agent", async || {
        let running = by_message(format!("{feature_url}/history?limit=200"), "running").await;
        let prompts = by_message(
            format!(
                "{feature_url}/sessions/{}/transcript/history?limit=200",
                w.session_id
            ),
            "prompt",
        )
        .await;
        let output = by_message(
            format!(
                "{feature_url}/sessions/{}/transcript/history?limit=200",
                w.session_id
            ),
            "agent output",
        )
        .await;
        !running.is_empty()
            && running.iter().all(|a| *a == agent)
            && prompts.len() == 2
            && prompts.iter().all(|a| *a == alice)
            && !output.is_empty()
            && output.iter().all(|a| *a == agent)
    })
    .await;

    // Completed, the sandbox stops; the diff kept at the run's end still
    // answers.
    let done = http()
        .post(format!(
            "{}/api/features/{}/sessions/{}/complete",
            w.base, w.feature_id, w.session_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200, "{}", done.text().await.unwrap());
    let saved: Value = http_as(&bob_token)
        .get(&diff_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(saved["source"], "saved", "{saved}");
    assert!(saved["saved_at"].as_i64().unwrap() > 0, "{saved}");
    let kept = saved["files"].as_array().unwrap();
    let hello = kept.iter().find(|f| f["path"] == "hello.txt").unwrap();
    assert!(hello["patch"].as_str().unwrap().contains("+hi"), "{saved}");
    assert!(saved["head"].is_string(), "{saved}");

    a.stop().await;
    b.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_prompts_run_one_at_a_time_in_the_merged_order() {
    let w = World::start().await;
    let alice = user_id_of(&w.base, TOKEN).await;
    let (bob_id, bob_token) = add_user(&w.server, "bob").await;
    assert_eq!(
        set_member(&w.base, &w.feature_id, &bob_id, "contributor").await,
        200
    );
    let a = Peer::connect(&w.server.sync_url(), "alice").await;
    let b = Peer::connect_as(&w.server.sync_url(), &bob_token, "bob").await;
    let fa = a.find(&w.doc).await;
    let fb = b.find(&w.doc).await;

    // The agent is busy, so what follows queues up behind it.
    let busy = append(&fb, &w.session_id, "slow 15: busy", &bob_id);
    until_status(&fb, &busy, &[QueueStatus::Running]).await;
    // Alice goes offline and queues two prompts; Bob queues two online.
    a.dialer.close();
    let a1 = append(&fa, &w.session_id, "write alice1.txt: a1", &alice);
    let a2 = append(&fa, &w.session_id, "write alice2.txt: a2", &alice);
    let b1 = append(&fb, &w.session_id, "write bob1.txt: b1", &bob_id);
    let b2 = append(&fb, &w.session_id, "write bob2.txt: b2", &bob_id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _redialed = redial(&a.repo, &w.server.sync_url());

    for id in [&a1, &a2, &b1, &b2] {
        until_status(&fb, id, &[QueueStatus::Done]).await;
    }
    // Everyone agrees on the order, and the runs followed it without overlap.
    until("both replicas agree", async || {
        let ids = |d: &FeatureDoc| d.queue.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        ids(&read(&fa)) == ids(&read(&fb))
    })
    .await;
    let doc = read(&fb);
    let runs: Vec<_> = doc
        .queue
        .iter()
        .filter(|e| e.session_id == w.session_id && e.id != busy)
        .collect();
    assert_eq!(runs.len(), 4);
    // In list order, each ran after the one before it had finished.
    for pair in runs.windows(2) {
        assert!(
            pair[0].finished_at.unwrap() <= pair[1].started_at.unwrap(),
            "{} ran before {} finished",
            pair[1].id,
            pair[0].id
        );
    }
    // Each prompt is attributed to its author in the transcript.
    let tb = open_transcript(&b, &fb, &w.session_id).await;
    let mut t = read_transcript(&tb);
    until("the transcript has all four prompts", async || {
        t = read_transcript(&tb);
        t.messages.iter().filter(|m| m.role == Role::User).count() == 5
    })
    .await;
    for (id, author) in [(&a1, &alice), (&a2, &alice), (&b1, &bob_id), (&b2, &bob_id)] {
        let m = t
            .messages
            .iter()
            .find(|m| m.queue_entry.as_deref() == Some(id.as_str()))
            .unwrap();
        assert_eq!(m.author.as_deref(), Some(author.as_str()));
    }
    // Transcript order is queue order.
    let order: Vec<_> = t
        .messages
        .iter()
        .filter_map(|m| m.queue_entry.clone())
        .filter(|e| *e != busy)
        .collect();
    let queue_order: Vec<_> = runs.iter().map(|e| e.id.clone()).collect();
    assert_eq!(order, queue_order);
    for f in ["alice1.txt", "alice2.txt", "bob1.txt", "bob2.txt"] {
        assert!(w.workspace().join(f).exists(), "{f} missing");
    }
    a.stop().await;
    b.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_entries_never_run_and_stop_aborts_the_run() {
    let w = World::start().await;
    let alice = user_id_of(&w.base, TOKEN).await;
    let a = Peer::connect(&w.server.sync_url(), "alice").await;
    let fa = a.find(&w.doc).await;

    let slow = append(&fa, &w.session_id, "slow 100: tick", &alice);
    let skipped = append(&fa, &w.session_id, "write skipped.txt: never", &alice);
    let slow2 = append(&fa, &w.session_id, "slow 100: tock", &alice);
    let last = append(&fa, &w.session_id, "write last.txt: ran", &alice);
    // Withdraw a queued entry.
    edit(&fa, "cancel", |tx| {
        feature::set_queue_status(
            tx,
            &skipped,
            &feature::QueueUpdate::new(QueueStatus::Cancelled, feature::Writer::Client, now_ms()),
        )
    });

    // Stop the running slow entry through the API.
    until_status(&fa, &slow, &[QueueStatus::Running]).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stopped = http()
        .post(format!(
            "{}/api/features/{}/sessions/{}/stop",
            w.base, w.feature_id, w.session_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), 200);
    assert_eq!(
        stopped.json::<Value>().await.unwrap()["stopped"],
        slow.as_str()
    );
    let e = until_status(
        &fa,
        &slow,
        &[
            QueueStatus::Cancelled,
            QueueStatus::Done,
            QueueStatus::Failed,
        ],
    )
    .await;
    assert_eq!(e.status, QueueStatus::Cancelled, "{e:?}");

    // Cancel the second slow entry from a client while it runs.
    until_status(&fa, &slow2, &[QueueStatus::Running]).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    fa.with_document(|d| {
        let q = canopy_protocol::value::DocView::new(&*d, None);
        let obj = q
            .maps_in(&ROOT, "queue")
            .into_iter()
            .find(|o| q.str(o, "id").as_deref() == Some(slow2.as_str()))
            .unwrap();
        d.transact_with(
            |_| canopy_protocol::ChangeMeta::now("cancel running").commit_options(),
            |tx| tx.put(&obj, "status", "cancelled"),
        )
        .unwrap();
    });
    until_status(&fa, &last, &[QueueStatus::Done]).await;
    let doc = read(&fa);
    assert_eq!(entry(&doc, &skipped).status, QueueStatus::Cancelled);
    assert_eq!(entry(&doc, &slow2).status, QueueStatus::Cancelled);
    assert!(
        !w.workspace().join("skipped.txt").exists(),
        "a cancelled entry ran"
    );
    assert!(w.workspace().join("last.txt").exists());
    // The stopped run did not stream to its end (` 99` is its last chunk).
    let tr = open_transcript(&a, &fa, &w.session_id).await;
    let t = read_transcript(&tr);
    let stopped_text = final_text(&t, &slow);
    assert!(!stopped_text.contains(" 99"), "{stopped_text:?}");
    assert!(final_text(&t, &last).contains("Wrote last.txt"));

    // Stopping an idle session is not an error; a viewer may not stop.
    let idle = http()
        .post(format!(
            "{}/api/features/{}/sessions/{}/stop",
            w.base, w.feature_id, w.session_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(idle.json::<Value>().await.unwrap()["stopped"], Value::Null);
    let (viewer, viewer_token) = add_user(&w.server, "vera").await;
    assert_eq!(
        set_member(&w.base, &w.feature_id, &viewer, "viewer").await,
        200
    );
    let refused = http_as(&viewer_token)
        .post(format!(
            "{}/api/features/{}/sessions/{}/stop",
            w.base, w.feature_id, w.session_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let unknown = http()
        .post(format!(
            "{}/api/features/{}/sessions/ses_nosuchsession/stop",
            w.base, w.feature_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 422);
    a.stop().await;
    w.stop().await;
}

fn sandbox_pid(w: &World) -> u32 {
    let path = w
        .dir
        .path()
        .join("sandboxes")
        .join(&w.session_id)
        .join("sandbox.json");
    let record: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    record["pid"].as_u64().unwrap() as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_opencode_fails_the_entry_and_a_provider_error_is_reported() {
    let w = World::start().await;
    let alice = user_id_of(&w.base, TOKEN).await;
    let a = Peer::connect(&w.server.sync_url(), "alice").await;
    let fa = a.find(&w.doc).await;

    let slow = append(&fa, &w.session_id, "slow 100: tick", &alice);
    let after = append(&fa, &w.session_id, "write after.txt: still works", &alice);
    until_status(&fa, &slow, &[QueueStatus::Running]).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let pid = sandbox_pid(&w);
    // Kill OpenCode's whole process group, as the OOM killer might.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    let e = until_status(&fa, &slow, &[QueueStatus::Failed, QueueStatus::Done]).await;
    assert_eq!(e.status, QueueStatus::Failed);
    assert!(
        e.error
            .as_deref()
            .unwrap()
            .contains("stopped during the run"),
        "{e:?}"
    );
    // The sandbox came back and the next entry ran in it.
    until_status(&fa, &after, &[QueueStatus::Done]).await;
    assert!(w.workspace().join("after.txt").exists());
    assert_ne!(sandbox_pid(&w), pid, "the sandbox was restarted");

    // The provider fails: the entry fails with the provider's message.
    let failing = append(
        &fa,
        &w.session_id,
        "fail: quota exceeded for this key",
        &alice,
    );
    let e = until_status(&fa, &failing, &[QueueStatus::Failed, QueueStatus::Done]).await;
    assert_eq!(e.status, QueueStatus::Failed);
    assert!(
        e.error
            .as_deref()
            .unwrap()
            .contains("quota exceeded for this key"),
        "{e:?}"
    );
    let next = append(&fa, &w.session_id, "write next.txt: fine", &alice);
    until_status(&fa, &next, &[QueueStatus::Done]).await;
    a.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_entries_are_rejected_and_never_reach_opencode() {
    let w = World::start_with(|c| c.max_prompt_bytes = 1000).await;
    let alice = user_id_of(&w.base, TOKEN).await;
    let (bob_id, _) = add_user(&w.server, "bob").await;
    let a = Peer::connect(&w.server.sync_url(), "alice").await;
    let fa = a.find(&w.doc).await;

    let empty = append(&fa, &w.session_id, "   ", &alice);
    let huge = append(&fa, &w.session_id, &"x".repeat(2000), &alice);
    let forged = append(&fa, &w.session_id, "write forged.txt: x", &bob_id);
    // A hostile client writes an entry for a session that does not exist
    // (the typed writer refuses; raw Automerge does not).
    let ghost = "q_ghostentry00000000000000".to_owned();
    fa.with_document(|d| {
        d.transact_with(
            |_| canopy_protocol::ChangeMeta::now("raw entry").commit_options(),
            |tx| {
                let queue = match tx.get(ROOT, "queue")? {
                    Some((_, q)) => q,
                    None => tx.put_object(ROOT, "queue", automerge::ObjType::List)?,
                };
                let at = tx.length(&queue);
                let q = tx.insert_object(&queue, at, automerge::ObjType::Map)?;
                tx.put(&q, "id", ghost.as_str())?;
                tx.put(&q, "session_id", "ses_doesnotexist000000000")?;
                tx.put(&q, "author", alice.as_str())?;
                tx.put(&q, "text", "write ghost.txt: boo")?;
                tx.put(&q, "created_at", now_ms())?;
                tx.put(&q, "status", "queued")?;
                Ok::<_, automerge::AutomergeError>(())
            },
        )
        .unwrap();
    });
    for (id, reason) in [
        (&empty, "empty"),
        (&huge, "limit"),
        (&forged, "wrote it"),
        (&ghost, "does not exist"),
    ] {
        let e = until_status(
            &fa,
            id,
            &[
                QueueStatus::Rejected,
                QueueStatus::Done,
                QueueStatus::Failed,
            ],
        )
        .await;
        assert_eq!(e.status, QueueStatus::Rejected, "{e:?}");
        assert!(
            e.error.as_deref().unwrap().contains(reason),
            "{e:?} should say {reason}"
        );
    }
    // None of them reached OpenCode: no sandbox, no model request.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.model.request_count(), 0);
    assert!(
        !w.workspace().exists(),
        "a sandbox started for rejected entries"
    );
    // And a good entry still runs afterwards.
    // Clients that do not speak CRDT queue through the API.
    let good = w.enqueue_api("write good.txt: yes").await;
    until_status(&fa, &good, &[QueueStatus::Done]).await;
    let info = get_json(format!("{}/api/agent", w.base)).await;
    assert_eq!(info["enabled"], true);
    assert_eq!(info["agent"]["sandbox"], "local");
    assert_eq!(info["agent"]["isolated"], false);
    a.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkilled_server_reattaches_to_the_run_in_flight() {
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let model = DevModel::start(listener, stop.clone()).unwrap();
    let mut received = model.subscribe();
    let dir = tempfile::tempdir().unwrap();
    let _reaper = Reaper(dir.path().to_owned());
    let url = model.base_url();
    let args = ["--dispatch", "true", "--model-url", url.as_str()];
    let server = ServerProcess::start(dir.path(), &args).await;
    let base = server.url.clone();
    let (feature_id, _) = create_feature(&base, "Crash me").await;
    let session_id = create_session(&base, &feature_id, "Survive it").await;
    // `slow n: x` streams `x`, then ` 1` … ` n-1`, 200 ms apart.
    let text = "slow 30: steady".to_owned();
    let resp = http()
        .post(format!("{base}/api/features/{feature_id}/queue"))
        .json(&json!({ "session_id": session_id, "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = async |base: &str| -> (String, Value) {
        let snap = snapshot(base, &feature_id).await;
        let e = snap["document"]["queue"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id.as_str())
            .unwrap()
            .clone();
        (e["status"].as_str().unwrap().to_owned(), snap)
    };
    until("the slow entry runs", async || {
        status(&base).await.0 == "running"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.kill().await;

    let server = ServerProcess::start(dir.path(), &args).await;
    let base = server.url.clone();
    until("the entry completes after the restart", async || {
        status(&base).await.0 == "done"
    })
    .await;
    // The model was asked once: the run was re-attached, not prompted again.
    let mut slow_requests = 0;
    while let Ok(r) = received.try_recv() {
        if r.with_tools && r.prompt.starts_with("slow 30: steady") {
            slow_requests += 1;
        }
    }
    assert_eq!(slow_requests, 1, "the prompt was sent again");
    // The transcript has the prompt once and the whole answer.
    let (_, snap) = status(&base).await;
    let turl = snap["document"]["sessions"][&session_id]["transcript"]
        .as_str()
        .unwrap()
        .to_owned();
    let peer = Peer::connect(
        &format!("{}/sync", base.replacen("http://", "ws://", 1)),
        "after",
    )
    .await;
    let tid: DocumentId = turl.trim_start_matches("automerge:").parse().unwrap();
    let th = peer.find(&tid).await;
    let mut t = read_transcript(&th);
    let want = format!(
        "steady{}",
        (1..30).map(|i| format!(" {i}")).collect::<String>()
    );
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            t = read_transcript(&th);
            if final_text(&t, &id).trim_end() == want.trim_end() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the transcript does not hold the whole answer: {t:#?}"));
    let users = t.messages.iter().filter(|m| m.role == Role::User).count();
    assert_eq!(users, 1, "{t:?}");
    let mut ids: Vec<_> = t.messages.iter().map(|m| m.id.clone()).collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate messages");
    peer.stop().await;
    let status = server.terminate().await;
    assert!(status.success());
}

/// A feature with a repository: its session's sandbox clones it and works
/// on the session's own branch, made from the base branch, where the
/// agent's commit lands; the document says which branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_of_a_feature_with_a_repository_works_on_its_own_branch() {
    let w = World::start().await;
    let bare = bare_repo(w.dir.path());
    let (feature_id, doc) = create_feature_with(
        &w.base,
        json!({
            "title": "Repo work",
            "description": "a session on its own branch",
            "repo": { "url": format!("file://{}", bare.display()), "base_branch": "trunk" }
        }),
    )
    .await;
    let session_id = create_session(&w.base, &feature_id, "Add the greeting").await;
    let id = enqueue(&w.base, &feature_id, &session_id, "write hello.txt: hi").await;
    let peer = Peer::connect(&w.server.sync_url(), "watcher").await;
    let handle = peer.find(&doc).await;
    until_status(&handle, &id, &[QueueStatus::Done]).await;
    // The commit is recorded after the entry settles (server API 6).
    until("the run's commit is recorded", async || {
        find_entry(&read(&handle), &id).is_some_and(|e| e.commit.is_some())
    })
    .await;
    let done = entry(&read(&handle), &id);
    let branch = canopy_protocol::git::session_branch("Repo work", "Add the greeting", &session_id);
    let session = read(&handle).sessions[&session_id].clone();
    let sandbox = session.sandbox.expect("a sandbox");
    assert_eq!(sandbox.branch.as_deref(), Some(branch.as_str()));

    let workspace = w
        .dir
        .path()
        .join("sandboxes")
        .join(&session_id)
        .join("workspace");
    assert_eq!(
        git(&workspace, &["rev-parse", "--abbrev-ref", "HEAD"]).unwrap(),
        branch
    );
    // The agent's commit sits on the base branch's history.
    let log = git(&workspace, &["log", "--format=%H %s"]).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 2, "{log}");
    assert!(lines.last().unwrap().ends_with(" seed"), "{log}");
    assert_eq!(
        done.commit.as_deref().map(|c| c.len()),
        Some(40),
        "the entry records its commit"
    );
    assert!(
        log.contains(done.commit.as_deref().unwrap()),
        "{log} lacks {:?}",
        done.commit
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("hello.txt")).unwrap(),
        "hi"
    );
    peer.stop().await;
    w.stop().await;
}
