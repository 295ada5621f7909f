//! Sync hub benchmark: Canopy against the JS reference sync server, side by
//! side in one run, same workload, same Rust clients.
//!
//! ```sh
//! make bench                       # builds the release server, then:
//! cargo bench --bench sync_hub -- [--peers 10,100,500] [--step-secs 6] [--docs 10000,100000]
//! ```
//!
//! What it measures (see docs/benchmarks.md for results and reading notes):
//! - fan-out: N peers on one feature document, each appending learnings at
//!   a steady aggregate rate; latency from a change to its arrival at every
//!   other peer (p50/p99), the highest rate sustained before latency
//!   degrades, server RSS and server CPU per delivered change;
//! - storage: bytes the server writes to disk per change on documents with
//!   10k and 100k changes in their history, and cold-load time of those
//!   documents after a restart.
//!
//! Both servers run as child processes; all clients are samod peers in this
//! process, so the client cost is identical for both.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use automerge::{Automerge, ReadDoc};
use canopy_protocol::{ChangeMeta, feature};
use futures::StreamExt;
use samod::{BackoffConfig, DocHandle, DocumentId, PeerId, Repo};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

// ---------------------------------------------------------------- servers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Canopy as shipped: every commit fsynced (survives power loss).
    Canopy,
    /// Canopy with `--sqlite-synchronous normal` (survives process crashes,
    /// like the JS server, which never fsyncs).
    CanopyNormal,
    Js,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Canopy => "canopy",
            Kind::CanopyNormal => "canopy-normal",
            Kind::Js => "js-reference",
        }
    }
}

struct Server {
    kind: Kind,
    child: tokio::process::Child,
    pid: u32,
    endpoint: Endpoint,
}

/// How peers reach a server: Canopy needs an API token and a peer id in its
/// user's namespace; the JS reference server takes anyone.
#[derive(Debug, Clone)]
struct Endpoint {
    sync_url: String,
    http_url: Option<String>,
    user_id: Option<String>,
}

mod support;
use support::{TOKEN, arg_list, hand_over, user_id};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Server {
    async fn start(kind: Kind, dir: &Path) -> Server {
        let mut cmd = match kind {
            Kind::Canopy | Kind::CanopyNormal => {
                // Cargo builds the server binary in the bench's own profile.
                let bin = env!("CARGO_BIN_EXE_canopy");
                let mut c = tokio::process::Command::new(bin);
                c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                    .arg(dir)
                    // The benchmark's own peers are the load; do not rate limit them.
                    .args(["--sync-rate-limit", "100000", "--sync-rate-burst", "100000"])
                    .args(["--bootstrap-token", TOKEN])
                    .env("CANOPY_LOG", "warn,samod_core=error");
                if kind == Kind::CanopyNormal {
                    c.args(["--sqlite-synchronous", "normal"]);
                }
                c
            }
            Kind::Js => {
                let js = root().join("tests/js");
                assert!(
                    js.join("node_modules/@automerge/automerge-repo").is_dir(),
                    "run `make js-deps` (make bench does)"
                );
                let mut c = tokio::process::Command::new("node");
                c.arg(js.join("reference-server.mjs")).arg("0").arg(dir);
                c
            }
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut sync_url = String::new();
        let mut http_url = None;
        while let Some(line) = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("server start timed out")
            .unwrap()
        {
            if let Some(u) = line.strip_prefix("Canopy listening on ") {
                http_url = Some(u.trim().to_owned());
                sync_url = format!("{}/sync", u.trim().replacen("http://", "ws://", 1));
                break;
            }
            if let Some(u) = line.strip_prefix("listening on ") {
                sync_url = u.trim().to_owned();
                break;
            }
        }
        assert!(!sync_url.is_empty(), "{} did not start", kind.name());
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let user_id = match &http_url {
            Some(base) => Some(user_id(base).await),
            None => None,
        };
        Server {
            kind,
            child,
            pid,
            endpoint: Endpoint {
                sync_url,
                http_url,
                user_id,
            },
        }
    }

    async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }

    fn stats(&self) -> ProcStats {
        ProcStats::read(self.pid)
    }
}

/// CPU, memory and disk counters of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct ProcStats {
    cpu_secs: f64,
    rss_kb: u64,
    hwm_kb: u64,
    write_bytes: u64,
}

impl ProcStats {
    fn read(pid: u32) -> ProcStats {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the parenthesised command: state is field 3; utime 14, stime 15.
        let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let cpu_secs = (ticks(11) + ticks(12)) as f64 / 100.0;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        let write_bytes = io
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        ProcStats {
            cpu_secs,
            rss_kb: kb("VmRSS:"),
            hwm_kb: kb("VmHWM:"),
            write_bytes,
        }
    }
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let p = e.path();
            total += if p.is_dir() {
                dir_size(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    total
}

// ------------------------------------------------------------------ peers

async fn peer(
    endpoint: &Endpoint,
    name: String,
) -> (Repo, samod::DialerHandle<canopy::client::Refused>) {
    let peer_id = match &endpoint.user_id {
        Some(user) => format!("u:{user}:{name}"),
        None => name,
    };
    let repo = Repo::build_tokio()
        .with_peer_id(PeerId::from(peer_id.clone()))
        .load()
        .await;
    let tickets = endpoint.http_url.as_ref().map(|base| {
        Arc::new(canopy::client::ApiTickets::new(base, TOKEN, &peer_id))
            as Arc<dyn canopy::client::TicketSource>
    });
    let dialer = canopy::client::dial(
        &repo,
        endpoint.sync_url.parse().unwrap(),
        tickets,
        BackoffConfig {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_retries: None,
        },
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(60), dialer.established())
        .await
        .expect("handshake timed out")
        .unwrap();
    (repo, dialer)
}

fn commit<F>(doc: &mut Automerge, msg: &str, f: F)
where
    F: FnOnce(
        &mut automerge::transaction::Transaction<'_>,
    ) -> Result<(), canopy_protocol::SchemaError>,
{
    doc.transact_with(|_| ChangeMeta::now(msg).commit_options(), f)
        .map_err(|e| e.error)
        .unwrap();
}

/// A learning by `author` (on Canopy, the writing user's id: the server
/// verifies authors and would otherwise correct every one).
fn new_learning(text: String, author: &str) -> feature::NewLearning {
    feature::NewLearning {
        id: canopy_protocol::ids::new_learning_id(),
        text,
        author: author.into(),
        from_session: None,
        importance: feature::Importance::Low,
        files: vec![],
        created_at: canopy_protocol::unix_ms_now(),
    }
}

/// The learnings' texts from index `from` on.
fn learning_texts(doc: &Automerge, from: usize) -> (usize, Vec<String>) {
    let Ok(Some((_, list))) = doc.get(automerge::ROOT, "learnings") else {
        return (0, vec![]);
    };
    let len = doc.length(&list);
    let mut out = Vec::new();
    for i in from..len {
        if let Ok(Some((_, item))) = doc.get(&list, i)
            && let Ok(Some((v, id))) = doc.get(&item, "text")
        {
            let text = match v {
                automerge::Value::Object(_) => doc.text(&id).unwrap_or_default(),
                automerge::Value::Scalar(s) => match s.as_ref() {
                    automerge::ScalarValue::Str(s) => s.to_string(),
                    _ => String::new(),
                },
            };
            out.push(text);
        }
    }
    (len, out)
}

/// Create the feature document on `server` and return its id.
async fn make_document(server: &Server) -> DocumentId {
    match server.kind {
        Kind::Canopy | Kind::CanopyNormal => {
            let base = server.endpoint.http_url.as_ref().unwrap();
            let resp: serde_json::Value = reqwest::Client::new()
                .post(format!("{base}/api/features"))
                .bearer_auth(TOKEN)
                .json(&json!({"title": "bench", "description": "fan-out benchmark"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            resp["document_id"].as_str().unwrap().parse().unwrap()
        }
        Kind::Js => {
            // The JS server stores whatever a client pushes: push the same
            // initial document Canopy's API would create.
            let (repo, dialer) = peer(&server.endpoint, "bench-bootstrap".into()).await;
            let doc = feature::new_feature_document(&feature::NewFeature {
                feature_id: canopy_protocol::ids::new_feature_id(),
                title: "bench".into(),
                description: "fan-out benchmark".into(),
                repo: None,
                created_by: "bench".into(),
                created_by_name: "Bench".into(),
                created_at: canopy_protocol::unix_ms_now(),
            })
            .unwrap();
            let h = repo.create(doc).await.unwrap();
            h.they_have_our_changes(dialer.connection_id().unwrap())
                .await;
            let id = h.document_id().clone();
            dialer.close();
            repo.stop().await;
            id
        }
    }
}

// ------------------------------------------------------------- fan-out run

struct Tracker {
    sent: Mutex<HashMap<u64, Instant>>,
    samples: Mutex<Vec<f64>>,
    delivered: AtomicU64,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Step {
    rate: f64,
    changes: u64,
    expected: u64,
    delivered: u64,
    p50_ms: f64,
    p99_ms: f64,
    server_cpu_ms_per_delivery: f64,
    server_rss_mb: f64,
    server_write_bytes_per_change: f64,
    client_cpu_ms_per_delivery: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[derive(Debug, Clone, serde::Serialize)]
struct FanoutResult {
    server: &'static str,
    peers: usize,
    steps: Vec<Step>,
    sustained_rate: f64,
    peak_rss_mb: f64,
}

type Client = (
    Repo,
    samod::DialerHandle<canopy::client::Refused>,
    DocHandle,
);

/// One server under fan-out load: its peers, and what was measured so far.
struct Side {
    kind: Kind,
    server: Server,
    _dir: tempfile::TempDir,
    clients: Vec<Client>,
    tracker: Arc<Tracker>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
    seq: u64,
    steps: Vec<Step>,
    baseline_p99: Option<f64>,
    sustained: f64,
    peak_rss_kb: u64,
    degraded: bool,
}

impl Side {
    async fn start(kind: Kind, peers: usize) -> Side {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(kind, dir.path()).await;
        let doc_id = make_document(&server).await;
        // Connect the peers, a few at a time.
        let mut clients: Vec<Client> = Vec::new();
        for chunk in (0..peers).collect::<Vec<_>>().chunks(25) {
            let joined = futures::future::join_all(chunk.iter().map(|i| {
                let endpoint = server.endpoint.clone();
                let doc_id = doc_id.clone();
                async move {
                    let (repo, dialer) = peer(&endpoint, format!("bench-{i}")).await;
                    let handle = tokio::time::timeout(Duration::from_secs(60), repo.find(doc_id))
                        .await
                        .expect("find timed out")
                        .unwrap()
                        .expect("document unavailable");
                    (repo, dialer, handle)
                }
            }))
            .await;
            clients.extend(joined);
        }
        let tracker = Arc::new(Tracker {
            sent: Mutex::new(HashMap::new()),
            samples: Mutex::new(Vec::new()),
            delivered: AtomicU64::new(0),
        });
        // Every peer records arrivals of other peers' learnings. Concurrent
        // appends can land before items already seen (the list's merged
        // order), so each look re-reads a window at the end and dedupes by
        // sequence number.
        let mut listeners = Vec::new();
        for (i, (_, _, handle)) in clients.iter().enumerate() {
            let handle = handle.clone();
            let tracker = tracker.clone();
            listeners.push(tokio::spawn(async move {
                let mut seen_len = handle.with_document(|d| learning_texts(d, 0).0);
                let mut seen = std::collections::HashSet::new();
                let mut changes = handle.changes();
                while changes.next().await.is_some() {
                    let from = seen_len.saturating_sub(32);
                    let (len, texts) = handle.with_document(|d| learning_texts(d, from));
                    seen_len = len;
                    let now = Instant::now();
                    for t in texts {
                        let mut parts = t.split(':');
                        let (Some("b"), Some(seq), Some(writer)) =
                            (parts.next(), parts.next(), parts.next())
                        else {
                            continue;
                        };
                        if writer.parse::<usize>().ok() == Some(i) {
                            continue;
                        }
                        let Ok(seq) = seq.parse::<u64>() else {
                            continue;
                        };
                        if !seen.insert(seq) {
                            continue;
                        }
                        let sent = tracker.sent.lock().unwrap().get(&seq).copied();
                        if let Some(sent) = sent {
                            tracker
                                .samples
                                .lock()
                                .unwrap()
                                .push(now.duration_since(sent).as_secs_f64() * 1000.0);
                            tracker.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        Side {
            kind,
            server,
            _dir: dir,
            clients,
            tracker,
            listeners,
            seq: 0,
            steps: Vec::new(),
            baseline_p99: None,
            sustained: 0.0,
            peak_rss_kb: 0,
            degraded: false,
        }
    }

    /// Run one load step at `rate` changes/s for `step`, then drain.
    async fn step(&mut self, rate: f64, step: Duration) {
        let peers = self.clients.len();
        self.tracker.samples.lock().unwrap().clear();
        self.tracker.delivered.store(0, Ordering::Relaxed);
        let before = self.server.stats();
        let client_before = ProcStats::read(std::process::id());
        let started = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut changes = 0u64;
        let mut rss_max = 0;
        let author = self
            .server
            .endpoint
            .user_id
            .clone()
            .unwrap_or_else(|| "bench".into());
        while started.elapsed() < step {
            ticker.tick().await;
            let seq = self.seq;
            let writer = (seq as usize) % peers;
            self.tracker
                .sent
                .lock()
                .unwrap()
                .insert(seq, Instant::now());
            let text = format!("b:{seq}:{writer}");
            self.clients[writer].2.with_document(|d| {
                commit(d, "bench learning", |tx| {
                    feature::add_learning(tx, &new_learning(text, &author))
                })
            });
            self.seq += 1;
            changes += 1;
            if changes.is_multiple_of(16) {
                rss_max = rss_max.max(self.server.stats().rss_kb);
            }
        }
        let expected = changes * (peers as u64 - 1);
        // Drain: give stragglers up to 10 s.
        let drain_start = Instant::now();
        while self.tracker.delivered.load(Ordering::Relaxed) < expected
            && drain_start.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let after = self.server.stats();
        let client_after = ProcStats::read(std::process::id());
        rss_max = rss_max.max(after.rss_kb);
        self.peak_rss_kb = self.peak_rss_kb.max(after.hwm_kb);
        let delivered = self.tracker.delivered.load(Ordering::Relaxed);
        let mut samples = self.tracker.samples.lock().unwrap().clone();
        samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p50 = percentile(&samples, 0.5);
        let p99 = percentile(&samples, 0.99);
        let s = Step {
            rate,
            changes,
            expected,
            delivered,
            p50_ms: p50,
            p99_ms: p99,
            server_cpu_ms_per_delivery: (after.cpu_secs - before.cpu_secs) * 1000.0
                / delivered.max(1) as f64,
            server_rss_mb: rss_max as f64 / 1024.0,
            server_write_bytes_per_change: (after.write_bytes - before.write_bytes) as f64
                / changes.max(1) as f64,
            client_cpu_ms_per_delivery: (client_after.cpu_secs - client_before.cpu_secs) * 1000.0
                / delivered.max(1) as f64,
        };
        println!(
            "  {:<13} peers={peers:<4} rate={rate:>6.1}/s  delivered {delivered}/{expected}  p50={p50:>8.1}ms p99={p99:>8.1}ms  server cpu/delivery={:.3}ms (clients {:.3}ms) rss={:.1}MB",
            self.kind.name(),
            s.server_cpu_ms_per_delivery,
            s.client_cpu_ms_per_delivery,
            s.server_rss_mb
        );
        let complete = delivered as f64 >= expected as f64 * 0.999;
        let base = *self.baseline_p99.get_or_insert(p99.max(1.0));
        let ok = complete && p99 <= (base * 3.0).max(base + 250.0);
        self.steps.push(s);
        if ok {
            self.sustained = rate;
        } else {
            self.degraded = true;
        }
    }

    async fn finish(self) -> FanoutResult {
        let peers = self.clients.len();
        for l in self.listeners {
            l.abort();
        }
        for (repo, dialer, _) in self.clients {
            dialer.close();
            repo.stop().await;
        }
        self.server.stop().await;
        FanoutResult {
            server: self.kind.name(),
            peers,
            steps: self.steps,
            sustained_rate: self.sustained,
            peak_rss_mb: self.peak_rss_kb as f64 / 1024.0,
        }
    }
}

/// Both servers under the same load, steps interleaved so that each pair of
/// measurements shares the machine's conditions (the machines are noisy).
async fn fanout(peers: usize, rates: &[f64], step: Duration) -> Vec<FanoutResult> {
    let mut sides = vec![
        Side::start(Kind::Canopy, peers).await,
        Side::start(Kind::Js, peers).await,
    ];
    for &rate in rates {
        for side in sides.iter_mut().filter(|s| !s.degraded) {
            side.step(rate, step).await;
            // Let the server settle before the next measurement.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if sides.iter().all(|s| s.degraded) {
            break;
        }
    }
    let mut out = Vec::new();
    for side in sides {
        out.push(side.finish().await);
    }
    out
}

// -------------------------------------------------------- big documents run

#[derive(Debug, Clone, serde::Serialize)]
struct BigDocResult {
    server: &'static str,
    history_changes: usize,
    saved_bytes: usize,
    ingest_secs: f64,
    write_bytes_per_change: f64,
    disk_bytes: u64,
    cold_load_ms: f64,
}

/// Append `n` changes of typical shape: typing into the notes (9 in 10) and a
/// learning (1 in 10).
fn grow(doc: &mut Automerge, n: usize, author: &str) {
    for i in 0..n {
        if i.is_multiple_of(10) {
            commit(doc, "learning", |tx| {
                feature::add_learning(tx, &new_learning(format!("fact {i}"), author))
            });
        } else {
            let len = tx_notes_len(doc);
            commit(doc, "typing", |tx| feature::splice_notes(tx, len, 0, "w "));
        }
    }
}

fn tx_notes_len(doc: &Automerge) -> usize {
    match doc.get(automerge::ROOT, "notes") {
        Ok(Some((_, id))) => doc.length(&id),
        _ => 0,
    }
}

async fn big_document(kind: Kind, history: usize, extra: usize) -> BigDocResult {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(kind, dir.path()).await;
    let doc_id = make_document(&server).await;
    let (repo, dialer) = peer(&server.endpoint, "bench-big".into()).await;
    let handle = repo.find(doc_id.clone()).await.unwrap().unwrap();

    // Build the history on a fork, then hand it to the server in one sync.
    let mut fork = handle.with_document(|d| d.fork());
    let author = server
        .endpoint
        .user_id
        .clone()
        .unwrap_or_else(|| "bench".into());
    grow(&mut fork, history, &author);
    let saved_bytes = fork.save().len();
    let ingest_secs = hand_over(&handle, &mut fork, dialer.connection_id().unwrap()).await;
    // Give the server a moment to finish compaction of the ingest.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Steady single changes on the big document.
    let before = server.stats();
    for i in 0..extra {
        handle.with_document(|d| {
            let len = tx_notes_len(d);
            commit(d, "typing", |tx| {
                feature::splice_notes(tx, len, 0, if i.is_multiple_of(2) { "a" } else { "b" })
            })
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::timeout(
        Duration::from_secs(120),
        handle.they_have_our_changes(dialer.connection_id().unwrap()),
    )
    .await
    .expect("server did not take the extra changes");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.stats();
    let heads = {
        let mut h = handle.with_document(|d| d.get_heads());
        h.sort();
        h
    };
    dialer.close();
    repo.stop().await;
    server.stop().await;
    let disk_bytes = dir_size(dir.path());

    // Cold load: restart on the same data, time a fresh peer's find until it
    // has the whole document (median of 3).
    let mut loads = Vec::new();
    for _ in 0..3 {
        let server = Server::start(kind, dir.path()).await;
        let started = Instant::now();
        let (repo, dialer) = peer(&server.endpoint, "bench-cold".into()).await;
        let h = tokio::time::timeout(Duration::from_secs(600), repo.find(doc_id.clone()))
            .await
            .expect("cold load timed out")
            .unwrap()
            .expect("document lost");
        loop {
            let mut now = h.with_document(|d| d.get_heads());
            now.sort();
            if now == heads {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), h.changes().next()).await;
        }
        loads.push(started.elapsed().as_secs_f64() * 1000.0);
        dialer.close();
        repo.stop().await;
        server.stop().await;
    }
    loads.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let r = BigDocResult {
        server: kind.name(),
        history_changes: history,
        saved_bytes,
        ingest_secs,
        write_bytes_per_change: (after.write_bytes - before.write_bytes) as f64 / extra as f64,
        disk_bytes,
        cold_load_ms: loads[1],
    };
    println!(
        "  {:<13} history={history:<7} saved={}B  ingest={:.2}s  write/change={:.0}B  disk={}B  cold-load={:.0}ms",
        kind.name(),
        r.saved_bytes,
        r.ingest_secs,
        r.write_bytes_per_change,
        r.disk_bytes,
        r.cold_load_ms
    );
    r
}

// ------------------------------------------------------------------ main

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "n/a".into()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help") {
        println!(
            "cargo bench --bench sync_hub -- [--peers 10,100,500] [--step-secs 6] [--docs 10000,100000]"
        );
        return;
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` does not. Under
    // test, run a seconds-long smoke version so the benchmark cannot rot.
    let smoke = !args.iter().any(|a| a == "--bench");
    let peers = arg_list(&args, "--peers", if smoke { &[3] } else { &[10, 100, 500] });
    let docs = arg_list(
        &args,
        "--docs",
        if smoke { &[300] } else { &[10_000, 100_000] },
    );
    let step =
        Duration::from_secs(arg_list(&args, "--step-secs", &[if smoke { 1 } else { 6 }])[0] as u64);
    let skip_fanout = args.iter().any(|a| a == "--skip-fanout");
    let skip_docs = args.iter().any(|a| a == "--skip-docs");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        println!("== fan-out: N peers on one document, learnings at a steady aggregate rate");
        let mut fanouts = Vec::new();
        for &n in peers.iter().filter(|_| !skip_fanout) {
            // Aggregate rates: deliveries grow with N, so the ladder is per N.
            let rates: Vec<f64> = match n {
                _ if smoke => vec![5.0],
                0..=20 => vec![5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0],
                21..=150 => vec![2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0],
                _ => vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
            };
            fanouts.extend(fanout(n, &rates, step).await);
        }
        println!("== big documents: bytes written per change, cold load");
        let mut bigs = Vec::new();
        for &h in docs.iter().filter(|_| !skip_docs) {
            for kind in [Kind::Canopy, Kind::CanopyNormal, Kind::Js] {
                bigs.push(big_document(kind, h, if smoke { 10 } else { 100 }).await);
            }
        }

        // Summary with ratios Canopy / JS.
        println!("\n| peers | server | p50 ms @ base | p99 ms @ base | sustained changes/s | peak RSS MB | server CPU ms / delivery | client CPU ms / delivery |");
        println!("|---|---|---|---|---|---|---|---|");
        for r in &fanouts {
            let base = &r.steps[0];
            println!(
                "| {} | {} | {:.1} | {:.1} | {} | {:.1} | {:.3} | {:.3} |",
                r.peers,
                r.server,
                base.p50_ms,
                base.p99_ms,
                r.sustained_rate,
                r.peak_rss_mb,
                base.server_cpu_ms_per_delivery,
                base.client_cpu_ms_per_delivery
            );
        }
        println!("\n| peers | p50 ratio | p99 ratio | throughput ratio | memory ratio | CPU/delivery ratio |  (Canopy / JS)");
        println!("|---|---|---|---|---|---|");
        for pair in fanouts.chunks(2) {
            let (c, j) = (&pair[0], &pair[1]);
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                c.peers,
                ratio(c.steps[0].p50_ms, j.steps[0].p50_ms),
                ratio(c.steps[0].p99_ms, j.steps[0].p99_ms),
                ratio(c.sustained_rate, j.sustained_rate),
                ratio(c.peak_rss_mb, j.peak_rss_mb),
                ratio(c.steps[0].server_cpu_ms_per_delivery, j.steps[0].server_cpu_ms_per_delivery),
            );
        }
        println!("\n| history | server | write B/change | disk B | cold load ms | ingest s |");
        println!("|---|---|---|---|---|---|");
        for r in &bigs {
            println!(
                "| {} | {} | {:.0} | {} | {:.0} | {:.2} |",
                r.history_changes, r.server, r.write_bytes_per_change, r.disk_bytes, r.cold_load_ms, r.ingest_secs
            );
        }
        if smoke {
            for r in &fanouts {
                assert!(r.steps[0].delivered > 0, "{}: nothing delivered", r.server);
            }
            println!("\nsmoke run only; `cargo bench --bench sync_hub` for numbers");
            return;
        }
        let out = root().join("bench-results");
        std::fs::create_dir_all(&out).unwrap();
        let path = out.join("sync_hub.json");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&json!({"fanout": fanouts, "big_documents": bigs})).unwrap(),
        )
        .unwrap();
        println!("\nraw results: {}", path.display());
    });
}
