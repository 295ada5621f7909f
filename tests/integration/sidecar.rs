//! Issue 5's acceptance: the sandbox sidecar, end to end with real
//! processes (server, sidecar, pinned OpenCode, scripted model): feature
//! tools over MCP, the live context file, working while the server is away,
//! attributed commits, OpenCode's restarts, refused tokens, dependent
//! sessions and malformed tool calls.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use canopy::{
    auth::{NewUser, TokenScope},
    server::RunningServer,
};
use canopy_protocol::{
    feature::{self, QueueStatus, SessionStatus},
    sidecar::{ClaimRequest, SidecarStatus},
};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::common::*;

fn sandbox_dir(data: &Path, session_id: &str) -> PathBuf {
    data.join("sandboxes").join(session_id)
}

fn context_file(data: &Path, session_id: &str) -> PathBuf {
    sandbox_dir(data, session_id).join("sidecar/feature-context.md")
}

/// A server running agents in local sandboxes against its own scripted
/// model, on a fresh data directory.
struct Agents {
    model: Model,
    server: RunningServer,
    base: String,
    _reaper: Reaper,
    dir: tempfile::TempDir,
}

impl Agents {
    async fn start() -> Agents {
        let model = Model::start().await;
        let dir = tempfile::tempdir().unwrap();
        let server = start_with(agent_config(dir.path(), &model.model.base_url())).await;
        let base = server.url().to_owned();
        Agents {
            model,
            server,
            base,
            _reaper: Reaper(dir.path().to_owned()),
            dir,
        }
    }

    async fn stop(self) {
        self.server.stop().await.unwrap();
    }
}

async fn until_running(base: &str, feature_id: &str, entry: &str) {
    until_some(&format!("entry {entry} runs"), async || {
        let doc = document(base, feature_id).await;
        doc.queue
            .iter()
            .any(|e| e.id == entry && e.status == QueueStatus::Running)
            .then_some(())
    })
    .await;
}

/// The sum of a Prometheus metric's samples (all label sets).
async fn metric(base: &str, name: &str) -> f64 {
    let text = http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// OpenCode's pid in a session's sandbox (not the sidecar's).
fn opencode_pid(data: &Path, session_id: &str) -> Option<i32> {
    let marker = format!("CANOPY_SANDBOX_SESSION={session_id}");
    let _ = data;
    running_pids().into_iter().find(|pid| {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        args.iter().any(|a| *a == b"serve")
            && !args.first().is_some_and(|a| a.ends_with(b"canopy-sidecar"))
            && env.split(|b| *b == 0).any(|v| v == marker.as_bytes())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learning_reaches_people_and_sibling_agents() {
    let w = Agents::start().await;
    let (m, dir, server, base) = (&w.model, w.dir.path(), &w.server, w.base.clone());
    let (fid, doc) = create_feature(&base, "Pagination").await;
    let a = create_session(&base, &fid, "API").await;
    let b = create_session(&base, &fid, "Client").await;
    // A second client watches the document over sync.
    let peer = Peer::connect(&server.sync_url(), "watcher").await;
    let watched = peer.find(&doc).await;
    let mut ephemera = watched.ephemera();
    // Session B is up first, so its context file exists.
    let warm = enqueue_as(TOKEN, &base, &fid, &b, "hello").await;
    assert_eq!(settled(&base, &fid, &warm).await.status, QueueStatus::Done);
    // B's sidecar says it is alive, without touching the document's history.
    let beat = until_some("a heartbeat from B's sidecar", async || {
        let bytes = tokio::time::timeout(Duration::from_secs(1), ephemera.next())
            .await
            .ok()??;
        match canopy_protocol::ephemeral::Ephemeral::decode(&bytes) {
            // Earlier beats (while OpenCode started) may still be queued.
            Ok(canopy_protocol::ephemeral::Ephemeral::Heartbeat(h))
                if h.session_id == b && h.sandbox_state == "up" =>
            {
                Some(h)
            }
            _ => None,
        }
    })
    .await;
    assert!(beat.opencode_instance.is_some());
    assert_eq!(beat.restarts, Some(0));

    let learning = "The API pages with opaque cursors, never offsets";
    let call = enqueue_as(
        TOKEN,
        &base,
        &fid,
        &a,
        &format!(
            "tool canopy_add_learning {}",
            json!({"text": learning, "importance": "high", "files": ["src/api.rs"]})
        ),
    )
    .await;
    let got = until_some("the learning reaches the second client", async || {
        read(&watched)
            .learnings
            .into_iter()
            .find(|l| l.text == learning)
    })
    .await;
    assert_eq!(got.author, format!("agent:{a}"));
    assert_eq!(got.from_session.as_deref(), Some(a.as_str()));
    assert_eq!(got.files, vec!["src/api.rs".to_owned()]);
    assert_eq!(settled(&base, &fid, &call).await.status, QueueStatus::Done);
    // In session B's context file, rewritten by B's sidecar.
    let file = context_file(dir, &b);
    until_some("session B's context file has the learning", async || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.contains(learning))
    })
    .await;
    // And B's next prompt carries it to the model.
    let mut received = m.model.subscribe();
    let next = enqueue_as(TOKEN, &base, &fid, &b, "what do we know?").await;
    assert_eq!(settled(&base, &fid, &next).await.status, QueueStatus::Done);
    let mut carried = false;
    while let Ok(r) = received.try_recv() {
        if r.with_tools && r.prompt.contains("what do we know?") {
            carried |= r.system.contains(learning);
            assert!(
                r.tools.iter().any(|t| t == "canopy_add_learning"),
                "the feature tools are offered: {:?}",
                r.tools
            );
        }
    }
    assert!(carried, "B's prompt did not carry the learning");
    peer.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_agent_keeps_working_while_the_server_is_away() {
    let m = Model::start().await;
    let dir = tempfile::tempdir().unwrap();
    let _reaper = Reaper(dir.path().to_owned());
    let url = m.model.base_url();
    // The server comes back where the sandbox knows it: the same port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "--dispatch",
        "true",
        "--model-url",
        url.as_str(),
        "--listen",
        listen.as_str(),
    ];
    let server = ServerProcess::start(dir.path(), &args).await;
    let base = server.url.clone();
    assert!(base.ends_with(&format!(":{port}")), "{base}");
    let (fid, _) = create_feature(&base, "Offline work").await;
    let sid = create_session(&base, &fid, "Research").await;
    let script = [
        "script:".to_owned(),
        "run: sleep 6".to_owned(),
        format!(
            "tool canopy_add_learning {}",
            json!({"text": "learned offline one"})
        ),
        format!(
            "tool canopy_add_learning {}",
            json!({"text": "learned offline two", "importance": "low"})
        ),
        format!(
            "tool canopy_record_decision {}",
            json!({"decision": "decided offline", "rationale": "the server was away", "alternatives": ["wait"]})
        ),
    ]
    .join("\n");
    let entry = enqueue_as(TOKEN, &base, &fid, &sid, &script).await;
    until_running(&base, &fid, &entry).await;
    server.kill().await;
    let away = tokio::time::Instant::now();
    // While the server is away the sidecar keeps working: the agent's writes
    // land in its replica and in the context file.
    let file = context_file(dir.path(), &sid);
    until_some("the sidecar records the work offline", async || {
        std::fs::read_to_string(&file).ok().filter(|t| {
            t.contains("learned offline one")
                && t.contains("learned offline two")
                && t.contains("decided offline")
        })
    })
    .await;
    tokio::time::sleep_until(away + Duration::from_secs(30)).await;

    let server = ServerProcess::start(dir.path(), &args).await;
    let base = server.url.clone();
    let log = sandbox_dir(dir.path(), &sid).join("sidecar.log");
    let _show = ShowOnPanic(log);
    let doc = until_some("all three arrive", async || {
        let doc = document(&base, &fid).await;
        (doc.learnings.len() >= 2 && !doc.decisions.is_empty()).then_some(doc)
    })
    .await;
    let count = |t: &str| doc.learnings.iter().filter(|l| l.text == t).count();
    assert_eq!(count("learned offline one"), 1, "{:?}", doc.learnings);
    assert_eq!(count("learned offline two"), 1, "{:?}", doc.learnings);
    assert_eq!(doc.learnings.len(), 2);
    assert_eq!(doc.decisions.len(), 1);
    assert_eq!(doc.decisions[0].decision, "decided offline");
    assert_eq!(doc.decisions[0].author, format!("agent:{sid}"));
    let settled = settled(&base, &fid, &entry).await;
    assert_eq!(settled.status, QueueStatus::Done, "{settled:?}");
    // Still once each after the run settled.
    let doc = document(&base, &fid).await;
    assert_eq!(doc.learnings.len(), 2);
    assert_eq!(doc.decisions.len(), 1);
    let status = server.terminate().await;
    assert!(status.success());
}

/// Prints a log file if the test fails while it is alive.
struct ShowOnPanic(PathBuf);

impl Drop for ShowOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {}:\n{}",
                self.0.display(),
                std::fs::read_to_string(&self.0).unwrap_or_default()
            );
        }
    }
}

async fn git(dir: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_peoples_prompts_become_two_attributed_commits() {
    let w = Agents::start().await;
    let (dir, server, base) = (w.dir.path(), &w.server, w.base.clone());
    let (fid, _) = create_feature(&base, "Two authors").await;
    let sid = create_session(&base, &fid, "Shared work").await;
    let users = server.state().users();
    let admin = user_id_of(&base, TOKEN).await;
    let bob = users
        .create_user(NewUser {
            handle: "bob".into(),
            display_name: "Bob Builder".into(),
            email: Some("bob@example.com".into()),
        })
        .await
        .unwrap();
    let (_, bob_token) = users
        .create_token(&bob.user_id, "test", TokenScope::User)
        .await
        .unwrap();
    let resp = http()
        .put(format!("{base}/api/features/{fid}/members/{}", bob.user_id))
        .json(&json!({"role": "contributor"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());

    let first = enqueue_as(TOKEN, &base, &fid, &sid, "write admin.txt: from the admin").await;
    let second = enqueue_as(
        &bob_token,
        &base,
        &fid,
        &sid,
        "write bob.txt: from bob\nmore words",
    )
    .await;
    let first = settled(&base, &fid, &first).await;
    let second = settled(&base, &fid, &second).await;
    assert_eq!(first.status, QueueStatus::Done, "{first:?}");
    assert_eq!(second.status, QueueStatus::Done, "{second:?}");
    let workspace = sandbox_dir(dir, &sid).join("workspace");
    let log = git(
        &workspace,
        &[
            "log",
            "--format=%H|%an|%ae|%cn|%s|%(trailers:key=Canopy-Queue-Entry,valueonly,separator=)",
        ],
    )
    .await;
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(lines.len(), 2, "{log}");
    // Newest first: Bob's, then the admin's.
    let admin_user = users.user(&admin).await.unwrap().unwrap();
    assert_eq!(lines[0][1], "Bob Builder");
    assert_eq!(lines[0][2], "bob@example.com");
    assert_eq!(lines[0][4], "write bob.txt: from bob");
    assert_eq!(lines[0][5].trim(), second.id);
    assert_eq!(lines[1][1], admin_user.display_name);
    assert_eq!(lines[1][4], "write admin.txt: from the admin");
    assert_eq!(lines[1][5].trim(), first.id);
    for l in &lines {
        assert_eq!(l[3], "Canopy");
    }
    // Each commit holds its own prompt's work only.
    let files = |c: &str| {
        let c = c.to_owned();
        let w = workspace.clone();
        async move { git(&w, &["show", "--name-only", "--format=", &c]).await }
    };
    assert_eq!(files(lines[0][0]).await.trim(), "bob.txt");
    assert_eq!(files(lines[1][0]).await.trim(), "admin.txt");
    // The entries carry their commits; the session its files, branch, head.
    let doc = until_some("the commits are recorded", async || {
        let doc = document(&base, &fid).await;
        let done = doc.queue.iter().filter(|e| e.commit.is_some()).count();
        (done == 2).then_some(doc)
    })
    .await;
    let commit_of = |id: &str| {
        doc.queue
            .iter()
            .find(|e| e.id == id)
            .unwrap()
            .commit
            .clone()
    };
    assert_eq!(commit_of(&second.id).as_deref(), Some(lines[0][0]));
    assert_eq!(commit_of(&first.id).as_deref(), Some(lines[1][0]));
    let session = &doc.sessions[&sid];
    assert_eq!(
        session.files_changed,
        vec!["admin.txt".to_owned(), "bob.txt".to_owned()]
    );
    let sandbox = session.sandbox.clone().unwrap();
    assert_eq!(sandbox.head.as_deref(), Some(lines[0][0]));
    assert!(sandbox.branch.is_some());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_opencode_is_restarted_by_the_sidecar() {
    let w = Agents::start().await;
    let (dir, base) = (w.dir.path(), w.base.clone());
    let (fid, _) = create_feature(&base, "Crashes").await;
    let sid = create_session(&base, &fid, "Survive").await;
    let slow = enqueue_as(TOKEN, &base, &fid, &sid, "slow 100: tick").await;
    let after = enqueue_as(TOKEN, &base, &fid, &sid, "write after.txt: still works").await;
    until_running(&base, &fid, &slow).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox_dir(dir, &sid).join("sandbox.json")).unwrap(),
    )
    .unwrap();
    let sidecar = record["pid"].as_i64().unwrap() as i32;
    let pid = opencode_pid(dir, &sid).expect("OpenCode runs");
    // Kill OpenCode's process group, as the OOM killer might.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    let e = settled(&base, &fid, &slow).await;
    assert_eq!(e.status, QueueStatus::Failed);
    assert!(
        e.error
            .as_deref()
            .unwrap()
            .contains("stopped during the run"),
        "{e:?}"
    );
    let e = settled(&base, &fid, &after).await;
    assert_eq!(e.status, QueueStatus::Done, "{e:?}");
    let workspace = sandbox_dir(dir, &sid).join("workspace");
    assert_eq!(
        std::fs::read_to_string(workspace.join("after.txt")).unwrap(),
        "still works"
    );
    // The sidecar restarted OpenCode; the sandbox itself was not replaced.
    let new_pid = opencode_pid(dir, &sid).expect("OpenCode runs again");
    assert_ne!(new_pid, pid);
    assert_eq!(proc_state(sidecar).map(|s| s != 'Z'), Some(true));
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox_dir(dir, &sid).join("sandbox.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["pid"].as_i64().unwrap() as i32, sidecar);
    let log = std::fs::read_to_string(sandbox_dir(dir, &sid).join("sidecar.log")).unwrap();
    assert!(log.contains("OpenCode stopped; restarting it"), "{log}");
    // Operators see it: the heartbeats report the restart.
    until_some("the restart reaches the metrics", async || {
        let n = metric(&base, "canopy_opencode_restarts_total").await;
        (n >= 1.0).then_some(())
    })
    .await;
    w.stop().await;
}

/// The sidecar binary configured for a sandbox of `feature_id` /
/// `session_id` under `scratch`, with an OpenCode that cannot start.
fn sidecar_command(
    base: &str,
    token: &str,
    feature_id: &str,
    session_id: &str,
    doc_url: &str,
    scratch: &Path,
) -> tokio::process::Command {
    let workspace = scratch.join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let mut command = tokio::process::Command::new(sidecar_bin());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("CANOPY_SERVER_URL", base)
        .env("CANOPY_SANDBOX_TOKEN", token)
        .env("CANOPY_FEATURE_ID", feature_id)
        .env("CANOPY_SESSION_ID", session_id)
        .env("CANOPY_FEATURE_DOC", doc_url)
        .env("CANOPY_WORKSPACE", &workspace)
        .env("CANOPY_STATE_DIR", scratch.join("state"))
        .env("CANOPY_OPENCODE_BIN", "/bin/false")
        .env("CANOPY_OPENCODE_PORT", "9")
        .env("CANOPY_OPENCODE_PASSWORD", "x")
        .env("CANOPY_SIDECAR_SECRET", "y")
        .kill_on_drop(true);
    command
}

/// Run the sidecar until it exits by itself; its status and stderr.
async fn run_sidecar(mut command: tokio::process::Command) -> (std::process::ExitStatus, String) {
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the sidecar should exit by itself")
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_sandbox_token_ends_the_sidecar_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (fid, doc) = create_feature(&base, "Guarded").await;
    let sid = create_session(&base, &fid, "Agent").await;
    let (other_fid, _) = create_feature(&base, "Elsewhere").await;
    let other_sid = create_session(&base, &other_fid, "Other").await;
    let doc_url = format!("automerge:{doc}");
    let users = server.state().users();
    let admin = user_id_of(&base, TOKEN).await;
    let scope = |f: &str, s: &str| TokenScope::Agent {
        feature_id: f.into(),
        session_id: s.into(),
    };
    let (_, expired) = users
        .create_token_expiring(&admin, "sandbox", scope(&fid, &sid), Some(now_ms() - 1000))
        .await
        .unwrap();
    let (_, other) = users
        .create_token(&admin, "sandbox", scope(&other_fid, &other_sid))
        .await
        .unwrap();
    let (revoked_info, revoked) = users
        .create_token(&admin, "sandbox", scope(&fid, &sid))
        .await
        .unwrap();
    assert!(users.revoke_token(&revoked_info.token_id).await.unwrap());
    let failures = || metric(&base, "canopy_auth_failures_total");
    for (name, token, want) in [
        ("expired", expired.as_str(), "expired, revoked or unknown"),
        ("revoked", revoked.as_str(), "expired, revoked or unknown"),
        ("garbage", "canopy_nope", "expired, revoked or unknown"),
        ("another feature's", other.as_str(), "is for feature"),
    ] {
        let before = failures().await;
        let scratch = tempfile::tempdir().unwrap();
        let (status, stderr) = run_sidecar(sidecar_command(
            &base,
            token,
            &fid,
            &sid,
            &doc_url,
            scratch.path(),
        ))
        .await;
        assert_eq!(status.code(), Some(3), "{name} token: {stderr}");
        assert!(stderr.contains(want), "{name} token: {stderr}");
        // One look, no retry storm.
        let after = failures().await;
        assert!(
            after - before <= 2.0,
            "{name} token: {before} → {after} auth failures"
        );
    }
    // A valid token but a server that is not there: the sidecar keeps
    // trying (it works offline) until it is told to stop.
    let (_, good) = users
        .create_token(&admin, "sandbox", scope(&fid, &sid))
        .await
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut child = sidecar_command(
        "http://127.0.0.1:9",
        &good,
        &fid,
        &sid,
        &doc_url,
        scratch.path(),
    )
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "it gave up on an absent server"
    );
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_requested_session_starts_once_its_dependency_is_completed() {
    let w = Agents::start().await;
    let (dir, base) = (w.dir.path(), w.base.clone());
    let (fid, _) = create_feature(&base, "Follow-ups").await;
    let a = create_session(&base, &fid, "Build the API").await;
    let ask = enqueue_as(
        TOKEN,
        &base,
        &fid,
        &a,
        &format!(
            "tool canopy_request_session {}",
            json!({"title": "Document the API", "scope": "Write docs/api.md", "depends_on_current": true})
        ),
    )
    .await;
    assert_eq!(settled(&base, &fid, &ask).await.status, QueueStatus::Done);
    let (b, session) = until_some("the requested session appears", async || {
        let doc = document(&base, &fid).await;
        doc.sessions
            .into_iter()
            .find(|(_, s)| s.title == "Document the API")
    })
    .await;
    assert_eq!(session.status, SessionStatus::Pending);
    assert_eq!(session.depends_on, vec![a.clone()]);
    assert_eq!(session.created_by, format!("agent:{a}"));
    assert_eq!(session.scope, "Write docs/api.md");

    let waiting = enqueue_as(TOKEN, &base, &fid, &b, "write docs.txt: the docs").await;
    // Session A keeps working meanwhile; B's prompt waits for A.
    let more = enqueue_as(TOKEN, &base, &fid, &a, "write api.txt: the api").await;
    assert_eq!(settled(&base, &fid, &more).await.status, QueueStatus::Done);
    let doc = document(&base, &fid).await;
    let e = doc.queue.iter().find(|e| e.id == waiting).unwrap();
    assert_eq!(e.status, QueueStatus::Queued, "it did not wait: {e:?}");
    assert_eq!(doc.sessions[&b].status, SessionStatus::Pending);
    assert!(!sandbox_dir(dir, &b).join("sandbox.json").exists());

    let resp = http()
        .post(format!("{base}/api/features/{fid}/sessions/{a}/complete"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let e = settled(&base, &fid, &waiting).await;
    assert_eq!(e.status, QueueStatus::Done, "{e:?}");
    assert!(sandbox_dir(dir, &b).join("workspace/docs.txt").exists());
    let doc = document(&base, &fid).await;
    assert_eq!(doc.sessions[&a].status, SessionStatus::Completed);
    // Completing a session with a prompt in flight is refused.
    let slow = enqueue_as(TOKEN, &base, &fid, &b, "slow 30: busy").await;
    until_running(&base, &fid, &slow).await;
    let resp = http()
        .post(format!("{base}/api/features/{fid}/sessions/{b}/complete"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    w.stop().await;
}

/// The sidecar's MCP endpoint and OpenCode's bearer token for it, read the
/// way OpenCode gets them (its environment).
fn mcp_endpoint(data: &Path, session_id: &str) -> (String, String) {
    let pid = opencode_pid(data, session_id).expect("OpenCode runs");
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let config = env
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"OPENCODE_CONFIG_CONTENT="))
        .expect("OpenCode's config");
    let config: Value = serde_json::from_slice(config).unwrap();
    let canopy = &config["mcp"]["canopy"];
    let auth = canopy["headers"]["Authorization"]
        .as_str()
        .unwrap()
        .to_owned();
    (canopy["url"].as_str().unwrap().to_owned(), auth)
}

/// One JSON-RPC call over MCP streamable HTTP; the `result` or `error`.
async fn mcp(url: &str, auth: &str, session: Option<&str>, body: Value) -> (Value, Option<String>) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("authorization", auth)
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.unwrap();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    let json_text = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|l| l.starts_with('{'))
        .map(str::to_owned)
        .unwrap_or(text);
    let v: Value = serde_json::from_str(&json_text).unwrap_or(Value::Null);
    (v, sid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_tool_calls_get_tool_errors_and_the_document_stays_valid() {
    let w = Agents::start().await;
    let (dir, base) = (w.dir.path(), w.base.clone());
    let (fid, _) = create_feature(&base, "Hostile").await;
    let sid = create_session(&base, &fid, "Fuzz").await;
    // Through the agent: a wrong type is a tool error the model sees.
    let bad = enqueue_as(
        TOKEN,
        &base,
        &fid,
        &sid,
        &format!("tool canopy_add_learning {}", json!({"text": 5})),
    )
    .await;
    assert_eq!(settled(&base, &fid, &bad).await.status, QueueStatus::Done);
    // Directly, as OpenCode talks to it: bigger and stranger inputs.
    let (url, auth) = mcp_endpoint(dir, &sid);
    let (init, session) = mcp(
        &url,
        &auth,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
    )
    .await;
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    let session = session.expect("an MCP session");
    let _ = mcp(
        &url,
        &auth,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    let huge = "x".repeat(1 << 20);
    let calls = [
        json!({"name": "add_learning", "arguments": {"text": huge}}),
        json!({"name": "add_learning", "arguments": {}}),
        json!({"name": "add_learning", "arguments": {"text": "ok", "importance": "urgent"}}),
        json!({"name": "record_decision", "arguments": {"decision": "d"}}),
        json!({"name": "mark_key_file", "arguments": {"path": "../../etc/passwd"}}),
        json!({"name": "mark_key_file", "arguments": {"path": "/abs"}}),
        json!({"name": "request_session", "arguments": {"title": 7, "scope": "s"}}),
        json!({"name": "no_such_tool", "arguments": {}}),
    ];
    for (i, params) in calls.iter().enumerate() {
        let (answer, _) = mcp(
            &url,
            &auth,
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call", "params": params}),
        )
        .await;
        let is_error = answer["result"]["isError"] == true || answer.get("error").is_some();
        assert!(is_error, "call {i} was not refused: {answer}");
    }
    // Without the bearer token: refused before MCP.
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Still serving, and nothing bad was written.
    let (ok, _) = mcp(
        &url,
        &auth,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params":
            {"name": "add_learning", "arguments": {"text": "a fine learning"}}}),
    )
    .await;
    assert_ne!(ok["result"]["isError"], true, "{ok}");
    let doc = until_some("the good learning arrives", async || {
        let doc = document(&base, &fid).await;
        (!doc.learnings.is_empty()).then_some(doc)
    })
    .await;
    assert_eq!(doc.learnings.len(), 1, "{:?}", doc.learnings);
    assert_eq!(doc.learnings[0].text, "a fine learning");
    assert_eq!(doc.sessions.len(), 1);
    assert!(doc.key_files.is_empty());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_a_session_checks_who_asks_and_what() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (fid, _) = create_feature(&base, "Done soon").await;
    let sid = create_session(&base, &fid, "Finish it").await;
    let (_, viewer) = add_member(&server, &fid, "vera", "viewer").await;
    let (_, stranger) = add_user(&server, "sam").await;
    let complete = async |token: &str, session: &str| {
        let resp = http_as(token)
            .post(format!(
                "{base}/api/features/{fid}/sessions/{session}/complete"
            ))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    };
    let (status, body) = complete(&viewer, &sid).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = complete(&stranger, &sid).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = complete(TOKEN, "ses_aaaaaaaaaaaaaaaaaaaa").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unknown_session");
    let (status, body) = complete(TOKEN, "..%2F..%2Fetc").await;
    assert_eq!(status, 422, "{body}");
    // Nothing changed so far.
    let doc = document(&base, &fid).await;
    assert_eq!(doc.sessions[&sid].status, SessionStatus::Pending);
    let (status, body) = complete(TOKEN, &sid).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    let doc = document(&base, &fid).await;
    assert_eq!(doc.sessions[&sid].status, SessionStatus::Completed);
    // Again: still completed, still fine.
    let (status, _) = complete(TOKEN, &sid).await;
    assert_eq!(status, 200);
    server.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Pooled sidecars (containers): started before any session, bound by
// `POST /v1/claim`; workspaces they prepare themselves.

/// The control secret `sidecar_command` gives the sidecar.
const CONTROL_SECRET: &str = "y";

/// `sidecar_command` without the five binding variables: a pooled sidecar.
fn pooled_command(scratch: &Path) -> tokio::process::Command {
    let mut command = sidecar_command("", "", "", "", "", scratch);
    for var in [
        "CANOPY_SERVER_URL",
        "CANOPY_SANDBOX_TOKEN",
        "CANOPY_FEATURE_ID",
        "CANOPY_SESSION_ID",
        "CANOPY_FEATURE_DOC",
    ] {
        command.env_remove(var);
    }
    command
}

/// Run the real OpenCode against `model` (the offline scripted model), with
/// a home of its own under `scratch`, as the local backend does.
fn with_opencode(command: &mut tokio::process::Command, scratch: &Path, model_url: &str) {
    use canopy::sandbox::opencode_config::{ModelConfig, QUIET_ENV, opencode_config};
    let home = scratch.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    command
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env(
            "OPENCODE_CONFIG_CONTENT",
            opencode_config(&ModelConfig::scripted(model_url)).to_string(),
        )
        .envs(QUIET_ENV)
        .env("CANOPY_OPENCODE_BIN", opencode_bin())
        .env("CANOPY_OPENCODE_PORT", port.to_string())
        .env("CANOPY_OPENCODE_PASSWORD", "oc-password")
        // Reaped with the scratch directory if the test fails.
        .current_dir(scratch.join("workspace"));
}

/// A sidecar the test started, as a container runtime would.
struct TestSidecar {
    child: tokio::process::Child,
    control: String,
    _log: ShowOnPanic,
}

impl TestSidecar {
    /// Start it and wait until its control API answers.
    async fn start(mut command: tokio::process::Command, scratch: &Path) -> TestSidecar {
        let state = scratch.join("state");
        // A previous run's address must not be mistaken for this one's.
        let _ = std::fs::remove_file(state.join("sidecar.addr"));
        let log_path = scratch.join(format!("sidecar-{:08x}.log", rand::random::<u32>()));
        let log = std::fs::File::create(&log_path).unwrap();
        command.stdout(log.try_clone().unwrap()).stderr(log);
        let child = command.spawn().unwrap();
        let addr = until_some("the sidecar writes its address", async || {
            std::fs::read_to_string(state.join("sidecar.addr"))
                .ok()
                .filter(|a| a.parse::<std::net::SocketAddr>().is_ok())
        })
        .await;
        let sidecar = TestSidecar {
            child,
            control: format!("http://{addr}"),
            _log: ShowOnPanic(log_path),
        };
        until_some("the control API answers", async || {
            sidecar.try_status().await
        })
        .await;
        sidecar
    }

    async fn try_status(&self) -> Option<SidecarStatus> {
        let resp = http_as(CONTROL_SECRET)
            .get(format!("{}/v1/status", self.control))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    async fn status(&self) -> SidecarStatus {
        self.try_status().await.expect("GET /v1/status")
    }

    /// `POST /v1/claim` with `body` as given and `secret`; the status code
    /// and the JSON answer.
    async fn post_claim(&self, secret: &str, body: String) -> (u16, Value) {
        let resp = http_as(secret)
            .post(format!("{}/v1/claim", self.control))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn claim(&self, claim: &ClaimRequest) -> (u16, Value) {
        self.post_claim(CONTROL_SECRET, serde_json::to_string(claim).unwrap())
            .await
    }

    /// SIGTERM, and its exit status.
    async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the sidecar stops after SIGTERM")
            .unwrap()
    }
}

/// A sandbox token for `session_id`, minted as the server mints them.
async fn sandbox_token(server: &RunningServer, feature_id: &str, session_id: &str) -> String {
    let admin = user_id_of(server.url(), TOKEN).await;
    let scope = TokenScope::Agent {
        feature_id: feature_id.into(),
        session_id: session_id.into(),
    };
    server
        .state()
        .users()
        .create_token(&admin, "sandbox", scope)
        .await
        .unwrap()
        .1
}

fn claim_for(
    base: &str,
    token: &str,
    feature_id: &str,
    session_id: &str,
    doc: &samod::DocumentId,
) -> ClaimRequest {
    ClaimRequest {
        server_url: base.to_owned(),
        sandbox_token: token.to_owned(),
        feature_id: feature_id.to_owned(),
        session_id: session_id.to_owned(),
        feature_doc: format!("automerge:{doc}"),
        repo: None,
    }
}

/// The sidecar's MCP endpoint and bearer token, read from the environment
/// of the OpenCode process `pid` (where OpenCode gets them).
fn mcp_endpoint_of(pid: u32) -> (String, String) {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let config = env
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"OPENCODE_CONFIG_CONTENT="))
        .expect("OpenCode's config");
    let config: Value = serde_json::from_slice(config).unwrap();
    let canopy = &config["mcp"]["canopy"];
    (
        canopy["url"].as_str().unwrap().to_owned(),
        canopy["headers"]["Authorization"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

/// An initialised MCP session.
async fn mcp_session(url: &str, auth: &str) -> String {
    let (init, session) = mcp(
        url,
        auth,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
    )
    .await;
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    let session = session.expect("an MCP session");
    let _ = mcp(
        url,
        auth,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pooled_sidecar_runs_opencode_before_it_is_claimed() {
    let w = Agents::start().await;
    let (server, base) = (&w.server, w.base.clone());
    let scratch = w.dir.path().join("pool");
    let mut command = pooled_command(&scratch);
    with_opencode(&mut command, &scratch, &w.model.model.base_url());
    command.env("CANOPY_PREPARE_WORKSPACE", "true");
    let sidecar = TestSidecar::start(command, &scratch).await;

    // Unbound, OpenCode up.
    let before = until_some("OpenCode is up before any claim", async || {
        let s = sidecar.status().await;
        (s.opencode.phase == "up").then_some(s)
    })
    .await;
    assert_eq!(before.session_id, "");
    assert!(before.workspace.is_none(), "{before:?}");
    assert!(!before.replica_loaded);
    let instance = before.opencode.instance.clone();
    assert!(!instance.is_empty());
    // MCP is served already, and says why the tools cannot work yet.
    let (url, auth) = mcp_endpoint_of(before.opencode.pid.unwrap());
    let mcp_id = mcp_session(&url, &auth).await;
    let (early, _) = mcp(
        &url,
        &auth,
        Some(&mcp_id),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params":
            {"name": "add_learning", "arguments": {"text": "too early"}}}),
    )
    .await;
    assert_eq!(early["result"]["isError"], true, "{early}");
    assert!(
        early["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("not bound to a session yet"),
        "{early}"
    );

    // The server's side: a session starting in a docker sandbox, a token.
    let (fid, doc) = create_feature(&base, "Warm pool").await;
    let sid = create_session(&base, &fid, "Claimed").await;
    let peer = Peer::connect(&server.sync_url(), "orchestrator").await;
    let handle = peer.find(&doc).await;
    edit(&handle, "sandbox starting", |tx| {
        feature::set_session_status(tx, &sid, &SessionStatus::Starting)?;
        feature::set_session_sandbox(
            tx,
            &sid,
            Some(&feature::Sandbox {
                backend: "docker".into(),
                state: "starting".into(),
                workspace_ready: false,
                ..Default::default()
            }),
        )
    });
    peer.synced(&handle).await;
    let token = sandbox_token(server, &fid, &sid).await;

    let (code, body) = sidecar
        .claim(&claim_for(&base, &token, &fid, &sid, &doc))
        .await;
    assert_eq!(code, 200, "{body}");
    let claimed: SidecarStatus = serde_json::from_value(body).unwrap();
    assert_eq!(claimed.session_id, sid);
    assert_eq!(claimed.opencode.instance, instance);
    let workspace = claimed.workspace.clone().expect("the workspace status");
    assert_eq!(workspace.branch.as_deref(), Some("main"));
    assert_eq!(workspace.clone_error, None);
    assert!(scratch.join("workspace/.git").is_dir());
    assert_eq!(sidecar.status().await.session_id, sid);

    // The sidecar reports the session ready in the document.
    let session = until_some("the sidecar writes ready", async || {
        let doc = document(&base, &fid).await;
        let s = doc.sessions.get(&sid)?.clone();
        let ready = s.status == SessionStatus::Ready
            && s.sandbox
                .as_ref()
                .is_some_and(|b| b.state == "running" && b.workspace_ready);
        ready.then_some(s)
    })
    .await;
    let sandbox = session.sandbox.unwrap();
    assert_eq!(sandbox.backend, "docker");
    assert_eq!(sandbox.branch.as_deref(), Some("main"));
    // The same MCP session now writes into the document.
    let learning = "Pooled sandboxes answer at once";
    let (ok, _) = mcp(
        &url,
        &auth,
        Some(&mcp_id),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params":
            {"name": "add_learning", "arguments": {"text": learning}}}),
    )
    .await;
    assert_ne!(ok["result"]["isError"], true, "{ok}");
    let got = until_some("the learning reaches the server", async || {
        document(&base, &fid)
            .await
            .learnings
            .into_iter()
            .find(|l| l.text == learning)
    })
    .await;
    assert_eq!(got.author, format!("agent:{sid}"));
    let after = until_some("the replica is loaded and connected", async || {
        let s = sidecar.status().await;
        (s.replica_loaded && s.connected).then_some(s)
    })
    .await;
    assert_eq!(after.opencode.instance, instance, "OpenCode was restarted");
    assert_eq!(after.opencode.restarts, 0);
    // Nothing of the token on disk.
    for file in walk(&scratch.join("state")) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the sandbox token is in {}",
            file.display()
        );
    }
    assert_eq!(sidecar.terminate().await.code(), Some(0));
    peer.stop().await;
    w.stop().await;
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_checked_and_only_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (fid, doc) = create_feature(&base, "Claims").await;
    let a = create_session(&base, &fid, "A").await;
    let b = create_session(&base, &fid, "B").await;
    let token_a = sandbox_token(&server, &fid, &a).await;
    let token_b = sandbox_token(&server, &fid, &b).await;
    let scratch = tempfile::tempdir().unwrap();
    let sidecar = TestSidecar::start(pooled_command(scratch.path()), scratch.path()).await;
    assert_eq!(sidecar.status().await.session_id, "");
    let good_a = claim_for(&base, &token_a, &fid, &a, &doc);
    let good_b = claim_for(&base, &token_b, &fid, &b, &doc);

    // The control secret, like every /v1 call.
    let body = serde_json::to_string(&good_a).unwrap();
    let (code, err) = sidecar.post_claim("wrong", body.clone()).await;
    assert_eq!(code, 401, "{err}");
    // Malformed.
    let (code, err) = sidecar.post_claim(CONTROL_SECRET, "{nope".into()).await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(err["error"]["code"], "invalid");
    let (code, err) = sidecar
        .post_claim(CONTROL_SECRET, json!({"session_id": a}).to_string())
        .await;
    assert_eq!(code, 400, "{err}");
    let mut bad = good_a.clone();
    bad.feature_id = "ftr_../../etc".into();
    let (code, err) = sidecar.claim(&bad).await;
    assert_eq!(code, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("feature_id"),
        "{err}"
    );
    let mut bad = good_a.clone();
    bad.session_id = "ses_short".into();
    assert_eq!(sidecar.claim(&bad).await.0, 400);
    let mut bad = good_a.clone();
    bad.feature_doc = "automerge:not-a-document".into();
    assert_eq!(sidecar.claim(&bad).await.0, 400);
    let (code, _) = sidecar
        .post_claim(CONTROL_SECRET, "x".repeat(100 * 1024))
        .await;
    assert_eq!(code, 413);
    // A token the server refuses (unknown; another session's): 403, and
    // the sidecar stays unbound and serving.
    let mut refused = good_a.clone();
    refused.sandbox_token = "canopy_nope".into();
    let (code, err) = sidecar.claim(&refused).await;
    assert_eq!(code, 403, "{err}");
    assert_eq!(err["error"]["code"], "refused");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired, revoked or unknown"),
        "{err}"
    );
    let mut crossed = good_a.clone();
    crossed.sandbox_token = token_b.clone();
    let (code, err) = sidecar.claim(&crossed).await;
    assert_eq!(code, 403, "{err}");
    let status = sidecar.status().await;
    assert_eq!(status.session_id, "");
    assert!(!status.replica_loaded);

    // Two claims at once: exactly one wins.
    let ((code_a, body_a), (code_b, body_b)) =
        tokio::join!(sidecar.claim(&good_a), sidecar.claim(&good_b));
    let mut codes = [code_a, code_b];
    codes.sort_unstable();
    assert_eq!(codes, [200, 409], "{body_a} {body_b}");
    let (winner, loser, won) = if code_a == 200 {
        (&good_a, &good_b, body_a)
    } else {
        (&good_b, &good_a, body_b)
    };
    assert_eq!(won["session_id"], winner.session_id.as_str());
    // Repeating the winning claim is fine; the other stays refused.
    let (code, again) = sidecar.claim(winner).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["session_id"], winner.session_id.as_str());
    let (code, err) = sidecar.claim(loser).await;
    assert_eq!(code, 409, "{err}");
    assert_eq!(err["error"]["code"], "already_claimed");
    assert_eq!(sidecar.status().await.session_id, winner.session_id);
    until_some("the claimed sidecar loads the document", async || {
        let s = sidecar.status().await;
        (s.replica_loaded && s.connected).then_some(())
    })
    .await;
    assert_eq!(sidecar.terminate().await.code(), Some(0));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_binding_is_a_setup_error() {
    let scratch = tempfile::tempdir().unwrap();
    let mut command = sidecar_command(
        "http://127.0.0.1:9",
        "t",
        "ftr_aaaaaaaaaaaaaaaaaaaa",
        "ses_aaaaaaaaaaaaaaaaaaaa",
        "automerge:2Cs2kDKqTjDR7TgYcQ84TEEJNWEw",
        scratch.path(),
    );
    command
        .env_remove("CANOPY_SANDBOX_TOKEN")
        .env_remove("CANOPY_FEATURE_DOC");
    let (status, stderr) = run_sidecar(command).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("CANOPY_SANDBOX_TOKEN, CANOPY_FEATURE_DOC are missing"),
        "{stderr}"
    );
    assert!(!scratch.path().join("state/sidecar.addr").exists());
}

/// A bound sidecar that prepares its own workspace from `repo_url`, with a
/// server that is not there (it works offline).
fn preparing_command(scratch: &Path, repo_url: &str, branch: &str) -> tokio::process::Command {
    let mut command = sidecar_command(
        "http://127.0.0.1:9",
        "canopy_offline",
        "ftr_aaaaaaaaaaaaaaaaaaaa",
        "ses_aaaaaaaaaaaaaaaaaaaa",
        "automerge:2Cs2kDKqTjDR7TgYcQ84TEEJNWEw",
        scratch,
    );
    command
        .env("CANOPY_PREPARE_WORKSPACE", "1")
        .env("CANOPY_REPO_URL", repo_url)
        .env("CANOPY_REPO_BRANCH", branch)
        .env("CANOPY_REPO_WORK_BRANCH", SESSION_BRANCH);
    command
}

/// The session branch of the preparing sidecar's session.
const SESSION_BRANCH: &str = "canopy/widget/add-tests-aaaaaaaa";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_prepares_its_workspace_and_keeps_it() {
    // A repository to clone: a bare origin with one commit on `feature-x`.
    let repos = tempfile::tempdir().unwrap();
    let origin = repos.path().join("origin.git");
    let work = repos.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(repos.path(), &["init", "-q", "--bare", "origin.git"]).await;
    git(&work, &["init", "-q", "-b", "feature-x"]).await;
    std::fs::write(work.join("README.md"), "hello from origin\n").unwrap();
    git(&work, &["add", "README.md"]).await;
    git(
        &work,
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            "first",
        ],
    )
    .await;
    let url = format!("file://{}", origin.display());
    git(&work, &["push", "-q", &url, "feature-x"]).await;

    let scratch = tempfile::tempdir().unwrap();
    let workspace = scratch.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    // Left over from nothing in particular: cleared before the clone.
    std::fs::write(workspace.join("stray.txt"), "junk").unwrap();
    let sidecar = TestSidecar::start(
        preparing_command(scratch.path(), &url, "feature-x"),
        scratch.path(),
    )
    .await;
    let status = sidecar.status().await;
    assert_eq!(status.session_id, "ses_aaaaaaaaaaaaaaaaaaaa");
    let ws = status.workspace.expect("the workspace status");
    // The session's own branch, made from feature-x.
    assert_eq!(ws.branch.as_deref(), Some(SESSION_BRANCH));
    assert_eq!(ws.clone_error, None);
    assert_eq!(
        std::fs::read_to_string(workspace.join("README.md")).unwrap(),
        "hello from origin\n"
    );
    assert!(!workspace.join("stray.txt").exists());
    assert_eq!(
        git(&workspace, &["config", "--local", "user.name"])
            .await
            .trim(),
        "Canopy agent"
    );
    // The agent's work, then a restart: nothing is cloned again.
    std::fs::write(workspace.join("agent.txt"), "work in progress").unwrap();
    assert_eq!(sidecar.terminate().await.code(), Some(0));
    let sidecar = TestSidecar::start(
        preparing_command(scratch.path(), &url, "feature-x"),
        scratch.path(),
    )
    .await;
    let ws = sidecar.status().await.workspace.unwrap();
    assert_eq!(ws.branch.as_deref(), Some(SESSION_BRANCH));
    assert_eq!(ws.clone_error, None);
    assert_eq!(
        std::fs::read_to_string(workspace.join("agent.txt")).unwrap(),
        "work in progress"
    );
    assert!(workspace.join("README.md").exists());
    assert_eq!(sidecar.terminate().await.code(), Some(0));

    // A repository that cannot be cloned: an empty one on `main`, and why.
    let scratch = tempfile::tempdir().unwrap();
    let workspace = scratch.path().join("workspace");
    let sidecar = TestSidecar::start(
        preparing_command(scratch.path(), "file:///nonexistent", "main"),
        scratch.path(),
    )
    .await;
    let ws = sidecar.status().await.workspace.unwrap();
    assert_eq!(ws.branch.as_deref(), Some("main"));
    let error = ws.clone_error.expect("a clone error");
    assert!(
        error.contains("cannot clone file:///nonexistent"),
        "{error}"
    );
    assert!(workspace.join(".git").is_dir());
    assert_eq!(
        std::fs::read_dir(&workspace).unwrap().count(),
        1,
        "only .git"
    );
    std::fs::write(workspace.join("agent.txt"), "kept").unwrap();
    assert_eq!(sidecar.terminate().await.code(), Some(0));
    let sidecar = TestSidecar::start(
        preparing_command(scratch.path(), "file:///nonexistent", "main"),
        scratch.path(),
    )
    .await;
    let ws = sidecar.status().await.workspace.unwrap();
    assert_eq!(ws.clone_error.as_deref(), Some(error.as_str()));
    assert_eq!(
        std::fs::read_to_string(workspace.join("agent.txt")).unwrap(),
        "kept"
    );
    assert_eq!(sidecar.terminate().await.code(), Some(0));
}
