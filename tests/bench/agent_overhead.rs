//! Agent overhead benchmark (issue 4): what Canopy adds on top of OpenCode.
//!
//! ```sh
//! cargo bench --bench agent_overhead -- [--runs 60] [--chunks 2] [--warmup 2]
//! ```
//!
//! One process, one scripted model (`canopy::devmodel`), two paths to the
//! same pinned OpenCode binary, interleaved run by run so both share the
//! machine's conditions:
//!
//! - **direct**: a local-process sandbox and one OpenCode session driven
//!   with `prompt_async`, its `/event` stream followed by this process;
//! - **canopy**: an in-process Canopy server with the dispatcher on, a writer
//!   peer that appends queue entries over sync and a watcher peer (another
//!   user, another samod repo) that sees them settle.
//!
//! Per run, with the prompt `slow <chunks>: <tag>` (the model streams
//! `<chunks>` chunks, 200 ms apart):
//!
//! - **A**, start to model: direct, from just before `prompt_async` to the
//!   model receiving the request (the one with tools; title requests are
//!   ignored); canopy, from just before the writer's append to the same.
//! - **B**, model to done: from the model handing its last chunk and
//!   `[DONE]` to the HTTP layer to, direct, `session.idle` on the client's
//!   event stream; canopy, the entry `done` on the watcher's replica.
//!
//! The canopy side is also split at the server's own replica (watched in
//! process, no network hop), to show where the time goes.
//!
//! See docs/benchmarks.md ("Agent overhead") for results.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use automerge::Automerge;
use canopy::{
    devmodel::{DevModel, Finished, Received},
    opencode::{Known, OpenCodeClient, Prompt},
    sandbox::{
        Sandbox, SandboxBackend, SandboxSpec, local::LocalProcesses, opencode_config::ModelConfig,
    },
    server::RunningServer,
};
use canopy_protocol::{
    ChangeMeta,
    feature::{self, NewQueueEntry, QueueStatus, SessionStatus},
};
use futures::StreamExt;
use samod::{BackoffConfig, DocHandle, DocumentId, PeerId, Repo};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The first user's token of the benchmark's server.
const TOKEN: &str = "canopy_benchtokenaaaaaaaaaa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
/// Longest any single step may take (a sandbox start is seconds).
const PATIENCE: Duration = Duration::from_secs(120);
/// Pause between runs, so one run's tail does not overlap the next one.
const SETTLE: Duration = Duration::from_millis(300);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn opencode_bin() -> PathBuf {
    let bin = root().join("sandbox/opencode/node_modules/.bin/opencode");
    assert!(
        bin.exists(),
        "OpenCode is not installed: run `make opencode`"
    );
    bin
}

/// The sidecar of this build profile, built first if missing.
fn sidecar_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_owned();
    let bin = profile_dir.join("canopy-sidecar");
    if !bin.exists() {
        let release = profile_dir.ends_with("release");
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "canopy-sidecar"])
            .current_dir(root());
        if release {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().expect("cargo").success(),
            "cannot build the sidecar"
        );
    }
    bin
}

/// The direct baseline's sandbox has no server to sync with.
fn offline_sidecar() -> canopy::sandbox::SidecarSpec {
    canopy::sandbox::SidecarSpec {
        server_url: "http://127.0.0.1:9".into(),
        token: "no-server".into(),
        feature_doc: "automerge:2Cs2kDKqTjDR7TgYcQ84TEEJNWEw".into(),
    }
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {PATIENCE:?}: {what}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `b - a` in milliseconds, negative if `b` came first.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    if b >= a { ms(b - a) } else { -ms(a - b) }
}

// ------------------------------------------------------------------ model

/// The model's notifications, filtered to the agent's requests for one tag.
struct ModelEvents {
    received: broadcast::Receiver<Received>,
    finished: broadcast::Receiver<Finished>,
}

impl ModelEvents {
    fn new(model: &DevModel) -> Self {
        ModelEvents {
            received: model.subscribe(),
            finished: model.subscribe_finished(),
        }
    }

    /// When the model received the request (with tools) for `tag`, and
    /// when it finished answering it.
    async fn run(&mut self, tag: &str) -> (Instant, Instant) {
        let received = within(&format!("the model receives {tag}"), async {
            loop {
                match self.received.recv().await {
                    Ok(r) if r.with_tools && r.prompt.contains(tag) => return r.at,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("model events: {e}"),
                }
            }
        })
        .await;
        let finished = within(&format!("the model answers {tag}"), async {
            loop {
                match self.finished.recv().await {
                    Ok(f) if f.with_tools && f.prompt.contains(tag) => return f.at,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("model events: {e}"),
                }
            }
        })
        .await;
        (received, finished)
    }
}

/// The prompt of one run; `tag` (`[canopy 12]`) is bracketed, so that no
/// tag is part of another.
fn script(chunks: usize, tag: &str) -> String {
    if chunks == 0 {
        tag.to_owned()
    } else {
        format!("slow {chunks}: {tag}")
    }
}

// ----------------------------------------------------------------- direct

/// OpenCode on its own: a local sandbox, one session, its event stream.
struct Direct {
    backend: LocalProcesses,
    sandbox: Sandbox,
    client: OpenCodeClient,
    dir: String,
    session: String,
    /// When `session.idle` for the session arrived on the event stream.
    idle: mpsc::UnboundedReceiver<Instant>,
    follower: tokio::task::JoinHandle<()>,
}

impl Direct {
    async fn start(model: &DevModel, root: &Path) -> Direct {
        let backend = LocalProcesses::new(
            opencode_bin(),
            sidecar_bin(),
            root.to_owned(),
            ModelConfig::scripted(&model.base_url()),
        );
        let sandbox = within(
            "the direct sandbox starts",
            backend.start(SandboxSpec {
                session_id: canopy_protocol::ids::new_session_id(),
                feature_id: canopy_protocol::ids::new_feature_id(),
                repo: None,
                sidecar: offline_sidecar(),
            }),
        )
        .await
        .unwrap();
        let client = OpenCodeClient::new(&sandbox.base_url, &sandbox.password);
        let dir = sandbox.workspace.to_string_lossy().into_owned();
        let session = client.create_session(&dir).await.unwrap();
        let mut events = Box::pin(client.events(&dir).await.unwrap());
        let (tx, idle) = mpsc::unbounded_channel();
        let ours = session.clone();
        let follower = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let Ok(event) = event else { continue };
                let at = Instant::now();
                match event.known() {
                    Known::SessionIdle { session_id } if session_id == ours => {
                        let _ = tx.send(at);
                    }
                    Known::SessionError { error, .. } => {
                        println!("  direct: session error: {error}");
                    }
                    _ => {}
                }
            }
        });
        Direct {
            backend,
            sandbox,
            client,
            dir,
            session,
            idle,
            follower,
        }
    }

    /// One run: prompt, then A and B as the module doc defines them.
    async fn run(&mut self, text: String, model: &mut ModelEvents, tag: &str) -> Sample {
        while self.idle.try_recv().is_ok() {}
        let prompt = Prompt {
            text,
            system: Some("You work on the feature \"agent overhead\".".into()),
            model: Some(("canopy".into(), canopy::devmodel::MODEL_ID.into())),
            ..Prompt::default()
        };
        let t0 = Instant::now();
        self.client
            .prompt_async(&self.session, &self.dir, &prompt)
            .await
            .unwrap();
        let (received, finished) = model.run(tag).await;
        let idle = within(&format!("session.idle after {tag}"), async {
            loop {
                let at = self.idle.recv().await.expect("the event stream ended");
                if at > received {
                    return at;
                }
            }
        })
        .await;
        Sample {
            a: signed_ms(t0, received),
            b: signed_ms(finished, idle),
            parts: HashMap::new(),
        }
    }

    async fn stop(self) {
        self.follower.abort();
        self.backend.stop(&self.sandbox.session_id).await.unwrap();
    }
}

// ----------------------------------------------------------------- canopy

/// A samod peer dialed into the server with `token`.
struct Peer {
    repo: Repo,
    dialer: samod::DialerHandle<canopy::client::Refused>,
}

impl Peer {
    async fn connect(base: &str, token: &str, user: &str, name: &str) -> Peer {
        let repo = Repo::build_tokio()
            .with_peer_id(PeerId::from(format!("u:{user}:{name}")))
            .load()
            .await;
        let dialer = canopy::client::dial_with_token(
            &repo,
            base,
            token,
            BackoffConfig {
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(500),
                max_retries: None,
            },
        )
        .unwrap();
        within("peer handshake", dialer.established())
            .await
            .unwrap();
        Peer { repo, dialer }
    }

    async fn find(&self, doc: &DocumentId) -> DocHandle {
        within("find", self.repo.find(doc.clone()))
            .await
            .unwrap()
            .expect("document unavailable")
    }

    async fn stop(self) {
        self.dialer.close();
        self.repo.stop().await;
    }
}

/// A queue entry's status seen on a replica for the first time.
type Transition = (Instant, String, QueueStatus);

/// Report the status of the entry `tracked` names as `handle`'s replica
/// shows it, each time it changes. Only that entry is read, so the cost of
/// watching does not grow with the queue.
fn watch_queue(
    handle: DocHandle,
    mut tracked: watch::Receiver<Option<String>>,
) -> (
    mpsc::UnboundedReceiver<Transition>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut changes = handle.changes();
        let mut last: Option<(String, QueueStatus)> = None;
        loop {
            let at = Instant::now();
            let id = tracked.borrow_and_update().clone();
            if let Some(id) = id {
                let status =
                    handle.with_document(|d| feature::find_queue_entry(d, &id).map(|e| e.status));
                if let Some(status) = status {
                    let now = Some((id.clone(), status.clone()));
                    if last != now {
                        last = now;
                        let _ = tx.send((at, id, status));
                    }
                }
            }
            tokio::select! {
                next = changes.next() => if next.is_none() { return },
                moved = tracked.changed() => if moved.is_err() { return },
            }
        }
    });
    (rx, task)
}

async fn http_json(req: reqwest::RequestBuilder) -> Value {
    let resp = req.bearer_auth(TOKEN).send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// Canopy with agents on, a writer and a watcher.
struct Canopy {
    server: RunningServer,
    session_id: String,
    author: String,
    writer: Peer,
    watcher: Peer,
    writer_doc: DocHandle,
    watcher_doc: DocHandle,
    /// Status changes on the watcher's replica and on the server's own.
    at_watcher: mpsc::UnboundedReceiver<Transition>,
    at_server: mpsc::UnboundedReceiver<Transition>,
    /// The entry the watching tasks follow.
    tracked: watch::Sender<Option<String>>,
    watch_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Canopy {
    async fn start(model: &DevModel, data_dir: &Path) -> Canopy {
        let mut config = canopy::config::ServerConfig::for_data_dir(data_dir);
        config.bootstrap_token = Some(TOKEN.to_owned());
        config.dispatch = true;
        config.opencode_bin = opencode_bin();
        config.sidecar_bin = Some(sidecar_bin());
        config.model_url = Some(model.base_url());
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let server = canopy::server::start(config, listener, CancellationToken::new())
            .await
            .unwrap();
        let base = server.url().to_owned();
        let http = reqwest::Client::new();
        let me = http_json(http.get(format!("{base}/api/me"))).await;
        let author = me["user_id"].as_str().unwrap().to_owned();
        let feature = http_json(
            http.post(format!("{base}/api/features"))
                .json(&json!({"title": "agent overhead", "description": "benchmark"})),
        )
        .await;
        let feature_id = feature["feature_id"].as_str().unwrap().to_owned();
        let doc: DocumentId = feature["document_id"].as_str().unwrap().parse().unwrap();
        let session = http_json(
            http.post(format!("{base}/api/features/{feature_id}/sessions"))
                .json(&json!({"title": "overhead"})),
        )
        .await;
        let session_id = session["session_id"].as_str().unwrap().to_owned();
        // The watcher is another user, a member who reads along.
        let users = server.state().users();
        let bob = users
            .create_user(canopy::auth::NewUser {
                handle: "watcher".into(),
                display_name: "Watcher".into(),
                email: None,
            })
            .await
            .unwrap();
        let (_, bob_token) = users
            .create_token(&bob.user_id, "bench", canopy::auth::TokenScope::User)
            .await
            .unwrap();
        http_json(
            http.put(format!(
                "{base}/api/features/{feature_id}/members/{}",
                bob.user_id
            ))
            .json(&json!({"role": "contributor"})),
        )
        .await;
        let writer = Peer::connect(&base, TOKEN, &author, "writer").await;
        let watcher = Peer::connect(&base, &bob_token, &bob.user_id, "watcher").await;
        let writer_doc = writer.find(&doc).await;
        let watcher_doc = watcher.find(&doc).await;
        let server_doc = within(
            "the server's replica",
            server.state().hub().repo().find(doc),
        )
        .await
        .unwrap()
        .unwrap();
        let (tracked, follow) = watch::channel(None);
        let (at_watcher, t1) = watch_queue(watcher_doc.clone(), follow.clone());
        let (at_server, t2) = watch_queue(server_doc, follow);
        Canopy {
            server,
            session_id,
            author,
            writer,
            watcher,
            writer_doc,
            watcher_doc,
            at_watcher,
            at_server,
            tracked,
            watch_tasks: vec![t1, t2],
        }
    }

    /// One run: the writer appends, then A and B as the module doc defines
    /// them, and the split at the server's replica.
    async fn run(&mut self, text: String, model: &mut ModelEvents, tag: &str) -> Sample {
        let entry = NewQueueEntry {
            id: canopy_protocol::ids::new_queue_entry_id(),
            session_id: self.session_id.clone(),
            author: self.author.clone(),
            text,
            created_at: canopy_protocol::unix_ms_now(),
        };
        // The watching tasks follow this entry from now on.
        self.tracked.send_replace(Some(entry.id.clone()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        while self.at_watcher.try_recv().is_ok() {}
        while self.at_server.try_recv().is_ok() {}
        let t0 = Instant::now();
        self.writer_doc.with_document(|d: &mut Automerge| {
            d.transact_with(
                |_| ChangeMeta::now("queue a prompt").commit_options(),
                |tx| feature::append_queue_entry(tx, &entry),
            )
            .map_err(|f| f.error)
            .unwrap();
        });
        let (received, finished) = model.run(tag).await;
        let done_at_watcher = until_status(&mut self.at_watcher, &entry.id, "watcher").await;
        // The server's replica showed every step before the watcher saw
        // `done` (its watching task may report them a little later).
        let mut at_server: HashMap<String, Instant> = HashMap::new();
        within(
            &format!("entry {} done on the server's replica", entry.id),
            async {
                while !at_server.contains_key("done") {
                    let (at, id, status) =
                        self.at_server.recv().await.expect("the watcher stopped");
                    if id == entry.id {
                        at_server.entry(status.as_str().to_owned()).or_insert(at);
                        at_server.entry("arrived".into()).or_insert(at);
                    }
                }
            },
        )
        .await;
        // A step the watching task saw coalesced with the next one takes
        // that one's time.
        let on_server = |s: &str| {
            let later = ["dispatched", "running", "done"];
            let from = later.iter().position(|l| *l == s).unwrap_or(0);
            std::iter::once(s)
                .chain(later[from..].iter().copied())
                .find_map(|k| at_server.get(k).copied())
                .unwrap_or_else(|| panic!("the server never showed {s}"))
        };
        let parts = HashMap::from([
            ("sync in", signed_ms(t0, on_server("arrived"))),
            (
                "pickup",
                signed_ms(on_server("arrived"), on_server("dispatched")),
            ),
            (
                "dispatched to model",
                signed_ms(on_server("dispatched"), received),
            ),
            (
                "model to done on server",
                signed_ms(finished, on_server("done")),
            ),
            ("sync out", signed_ms(on_server("done"), done_at_watcher)),
            (
                "model to commit at watcher",
                signed_ms(finished, self.until_idle().await),
            ),
        ]);
        Sample {
            a: signed_ms(t0, received),
            b: signed_ms(finished, done_at_watcher),
            parts,
        }
    }

    /// When the watcher's replica shows the session `idle` again: the run's
    /// commit is recorded with it, after `done`. Polled (1 ms), so it is
    /// reported, not part of A or B; the next run starts after it, as the
    /// worker's next prompt would.
    async fn until_idle(&self) -> Instant {
        let sid = self.session_id.clone();
        within("the session is idle again", async {
            loop {
                let status = self.watcher_doc.with_document(|d: &mut Automerge| {
                    feature::read_session(d, &sid).map(|s| s.status)
                });
                if status.is_some_and(|s| s != SessionStatus::Running) {
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
    }

    async fn stop(self) {
        for t in self.watch_tasks {
            t.abort();
        }
        self.writer.stop().await;
        self.watcher.stop().await;
        self.server.stop().await.unwrap();
    }
}

async fn until_status(
    rx: &mut mpsc::UnboundedReceiver<Transition>,
    id: &str,
    replica: &str,
) -> Instant {
    within(
        &format!("entry {id} done on the {replica}'s replica"),
        async {
            loop {
                let (at, seen, status) = rx.recv().await.expect("the watcher stopped");
                if seen != id {
                    continue;
                }
                match status {
                    QueueStatus::Done => return at,
                    QueueStatus::Failed | QueueStatus::Rejected | QueueStatus::Cancelled => {
                        panic!("entry {id} ended {status:?}")
                    }
                    _ => {}
                }
            }
        },
    )
    .await
}

// ---------------------------------------------------------------- results

struct Sample {
    /// Start to model, ms.
    a: f64,
    /// Model to done, ms.
    b: f64,
    /// Canopy only: the split at the server's replica.
    parts: HashMap<&'static str, f64>,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Stats {
    p50: f64,
    p99: f64,
    mean: f64,
    max: f64,
}

fn stats(values: &[f64]) -> Stats {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pick = |p: f64| {
        if v.is_empty() {
            f64::NAN
        } else {
            v[((v.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    Stats {
        p50: pick(0.5),
        p99: pick(0.99),
        mean: v.iter().sum::<f64>() / v.len().max(1) as f64,
        max: pick(1.0),
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "n/a".into()
    }
}

/// Processes whose working directory is under `dir` (OpenCodes left over).
fn processes_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cwd) = std::fs::read_link(e.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            out.push(format!("{name}: {}", cmd.trim()));
        }
    }
    out
}

/// Ends whatever still runs under the benchmark's directory when dropped,
/// including after a panic (a local sandbox outlives a dropped backend).
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for p in processes_under(&self.0) {
            let pid = p.split(':').next().and_then(|p| p.parse::<i32>().ok());
            if let Some(pid) = pid.filter(|&p| p > 1 && p != std::process::id() as i32) {
                println!("  ending left-over process {p}");
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn arg(args: &[String], flag: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect(flag))
}

/// One number per sample.
type Metric = fn(&Sample) -> f64;

fn column(samples: &[Sample], f: Metric) -> Stats {
    stats(&samples.iter().map(f).collect::<Vec<_>>())
}

/// Print the tables (markdown); return the raw numbers.
fn report(direct: &[Sample], canopy: &[Sample], chunks: usize, measured: Duration) -> Value {
    let runs = direct.len();
    println!(
        "\n{runs} runs each, interleaved; prompt `{}`; {:.0} s measured; \
         p99 is the nearest-rank value at round(0.99 × (n − 1)), the maximum below 51 runs\n",
        script(chunks, "[<path> <i>]"),
        measured.as_secs_f64()
    );
    let rows: [(&str, Metric); 3] = [
        ("A: start → model receives the request", |s| s.a),
        ("B: model's last chunk → done seen by the client", |s| s.b),
        ("A + B", |s| s.a + s.b),
    ];
    println!(
        "| measurement | direct p50 / p99 / mean ms | Canopy p50 / p99 / mean ms \
         | added p50 ms | added p99 ms | ratio p50 | ratio p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for (name, f) in rows {
        let d = column(direct, f);
        let c = column(canopy, f);
        println!(
            "| {name} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:+.1} | {:+.1} | {} | {} |",
            d.p50,
            d.p99,
            d.mean,
            c.p50,
            c.p99,
            c.mean,
            c.p50 - d.p50,
            c.p99 - d.p99,
            ratio(c.p50, d.p50),
            ratio(c.p99, d.p99),
        );
        summary.push(json!({"measurement": name, "direct": d, "canopy": c}));
    }
    // Paired: each Canopy run against the direct run just before it.
    let paired: Vec<f64> = direct
        .iter()
        .zip(canopy)
        .map(|(d, c)| (c.a + c.b) - (d.a + d.b))
        .collect();
    let p = stats(&paired);
    println!(
        "\npaired added ms per run (Canopy A+B − the direct A+B just before it): \
         p50 {:.1}, p99 {:.1}, mean {:.1}",
        p.p50, p.p99, p.mean
    );
    println!("\nCanopy split at the server's own replica (watched in process, no network hop):\n");
    println!("| step | p50 ms | p99 ms | mean ms |");
    println!("|---|---|---|---|");
    let steps = [
        (
            "sync in",
            "A: writer's append → entry on the server's replica",
        ),
        ("pickup", "A: entry on the server → `dispatched` there"),
        (
            "dispatched to model",
            "A: `dispatched` → the model receives the request",
        ),
        (
            "model to done on server",
            "B: model's last chunk → `done` on the server's replica",
        ),
        (
            "sync out",
            "B: `done` on the server → `done` on the watcher's replica",
        ),
        (
            "model to commit at watcher",
            "after B: model's last chunk → the commit recorded and the session `idle` at the watcher (polled)",
        ),
    ];
    let mut split = Vec::new();
    for (key, label) in steps {
        let s = stats(&canopy.iter().map(|x| x.parts[key]).collect::<Vec<_>>());
        println!("| {label} | {:.1} | {:.1} | {:.1} |", s.p50, s.p99, s.mean);
        split.push(json!({"step": key, "stats": s}));
    }
    json!({
        "runs": runs,
        "chunks": chunks,
        "summary": summary,
        "paired_added": p,
        "canopy_split": split,
        "direct": direct.iter().map(|s| json!({"a": s.a, "b": s.b})).collect::<Vec<_>>(),
        "canopy": canopy.iter().map(|s| json!({"a": s.a, "b": s.b, "parts": s.parts})).collect::<Vec<_>>(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help") {
        println!("cargo bench --bench agent_overhead -- [--runs 60] [--chunks 2] [--warmup 2]");
        return;
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: a
    // short smoke run then, so the benchmark cannot rot.
    let smoke = !args.iter().any(|a| a == "--bench");
    let runs = arg(&args, "--runs", if smoke { 2 } else { 60 });
    let warmup = arg(&args, "--warmup", if smoke { 1 } else { 2 });
    let chunks = arg(&args, "--chunks", 2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Canonical: /proc reports working directories resolved.
    let tmp_path = tmp.path().canonicalize().unwrap();
    let _reaper = Reaper(tmp_path.clone());
    runtime.block_on(async move {
        let stop_model = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let model = DevModel::start(listener, stop_model.clone()).unwrap();
        let mut events = ModelEvents::new(&model);

        println!("== starting OpenCode directly and Canopy (dispatch on), same scripted model");
        let started = Instant::now();
        let mut direct = Direct::start(&model, &tmp_path.join("direct")).await;
        let mut canopy = Canopy::start(&model, &tmp_path.join("canopy")).await;
        println!("   up in {:.1} s", started.elapsed().as_secs_f64());

        // Warm-up: the Canopy sandbox starts on its first prompt; both
        // sessions get their title request out of the way.
        for i in 0..warmup {
            let tag = format!("[warm-up direct {i}]");
            let s = direct.run(script(chunks, &tag), &mut events, &tag).await;
            println!("  warm-up direct  A={:>7.1} ms  B={:>7.1} ms", s.a, s.b);
            let tag = format!("[warm-up canopy {i}]");
            let s = canopy.run(script(chunks, &tag), &mut events, &tag).await;
            println!("  warm-up canopy  A={:>7.1} ms  B={:>7.1} ms", s.a, s.b);
            tokio::time::sleep(SETTLE).await;
        }

        let mut d_samples = Vec::new();
        let mut c_samples = Vec::new();
        let measured = Instant::now();
        for i in 0..runs {
            let tag = format!("[direct {i}]");
            let d = direct.run(script(chunks, &tag), &mut events, &tag).await;
            tokio::time::sleep(SETTLE).await;
            let tag = format!("[canopy {i}]");
            let c = canopy.run(script(chunks, &tag), &mut events, &tag).await;
            tokio::time::sleep(SETTLE).await;
            println!(
                "  run {i:>3}: direct A={:>6.1} B={:>6.1}   canopy A={:>6.1} B={:>6.1}   added {:>6.1} ms",
                d.a,
                d.b,
                c.a,
                c.b,
                (c.a + c.b) - (d.a + d.b)
            );
            d_samples.push(d);
            c_samples.push(c);
        }
        let measured = measured.elapsed();

        direct.stop().await;
        canopy.stop().await;
        stop_model.cancel();
        // Nothing of ours may survive: every sandbox ran under `tmp`.
        let mut left = processes_under(&tmp_path);
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = processes_under(&tmp_path);
        }
        assert!(left.is_empty(), "processes left running: {left:?}");

        let raw = report(&d_samples, &c_samples, chunks, measured);
        if smoke {
            println!("\nsmoke run only; `cargo bench --bench agent_overhead` for numbers");
            return;
        }
        let out = root().join("bench-results");
        std::fs::create_dir_all(&out).unwrap();
        let path = out.join("agent_overhead.json");
        std::fs::write(&path, serde_json::to_string_pretty(&raw).unwrap()).unwrap();
        println!("\nraw results: {}", path.display());
    });
}
