//! History browser benchmark (issue 8): server time for a history page, the
//! document at a point in the middle, and a diff across 1,000 changes, on
//! feature documents with 10k and 100k changes.
//!
//! ```sh
//! cargo bench --bench history -- [--changes 10000,100000] [--samples 20]
//! ```
//!
//! The server runs in this process (`canopy::server::start`, the release
//! build under `cargo bench`) on a fresh SQLite data directory; one samod
//! peer writes the history over a real WebSocket, then the server is
//! restarted so the first request finds nothing cached. Every number is an
//! HTTP request on loopback, timed until its body is read: what a browser
//! waits for, JSON encoding included.
//!
//! The issue names no peer product (none offers this), so the baseline is
//! the obvious implementation with the same automerge version, in the same
//! run: `fork_at` + hydrate for `at`, and `fork_at` + `diff` for a diff
//! (each without HTTP, so the ratios flatter the baseline).
//!
//! Under `cargo test --all-targets` (no `--bench` flag) it runs a small
//! smoke version that checks its own results, so it cannot rot.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::{
    collections::HashSet,
    path::Path,
    time::{Duration, Instant},
};

use automerge::{Automerge, ChangeHash, ObjType, ROOT, ReadDoc, transaction::Transactable};
use canopy::{config::ServerConfig, server::RunningServer};
use canopy_protocol::{ChangeMeta, feature, ids};
use samod::{BackoffConfig, PeerId, Repo};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod support;
use support::{TOKEN, arg_list, hand_over, user_id};

async fn start(dir: &Path) -> RunningServer {
    let mut config = ServerConfig::for_data_dir(dir);
    config.bootstrap_token = Some(TOKEN.into());
    config.dispatch = false;
    // The benchmark's own requests are the load: do not rate limit them.
    config.api_rate_per_minute = 1_000_000;
    config.sync_rate_limit = 100_000;
    config.sync_rate_burst = 100_000;
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    canopy::server::start(config, listener, CancellationToken::new())
        .await
        .unwrap()
}

fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {TOKEN}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .default_headers(headers)
        .build()
        .unwrap()
}

/// `GET url`: the body and how long the whole request took, in ms.
async fn timed(client: &reqwest::Client, url: &str) -> (Value, f64) {
    let started = Instant::now();
    let resp = client.get(url).send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert!(status.is_success(), "{url}: {status} {body}");
    (body, ms)
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> Value {
    let resp = client.post(&url).json(&body).send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.unwrap()
}

/// One change; `None` when `f` changed nothing (no change is recorded).
fn commit<F>(doc: &mut Automerge, msg: &str, f: F) -> Option<ChangeHash>
where
    F: FnOnce(
        &mut automerge::transaction::Transaction<'_>,
    ) -> Result<(), canopy_protocol::SchemaError>,
{
    doc.transact_with(|_| ChangeMeta::now(msg).commit_options(), f)
        .map_err(|e| e.error)
        .unwrap()
        .hash
}

fn text_len(
    doc: &impl ReadDoc,
    obj: &automerge::ObjId,
    key: &str,
) -> Option<(automerge::ObjId, usize)> {
    match doc.get(obj, key) {
        Ok(Some((automerge::Value::Object(ObjType::Text), id))) => {
            let len = doc.length(&id);
            Some((id, len))
        }
        _ => None,
    }
}

/// A feature's life in `n` changes, by one person: per hundred changes, two
/// learnings added, two edited and one removed, a decision, a key file, a
/// prompt, the notes trimmed, and typing in the notes for the rest (most
/// changes of a long-lived document are keystrokes). Returns every
/// change's hash, oldest first.
fn grow(doc: &mut Automerge, n: usize, author: &str, session: &str) -> Vec<ChangeHash> {
    let mut hashes = Vec::with_capacity(n);
    for i in 0..n {
        let hash = match i % 100 {
            0 | 50 => commit(doc, "Add a learning", |tx| {
                feature::add_learning(
                    tx,
                    &feature::NewLearning {
                        id: ids::new_learning_id(),
                        text: format!("fact {i}: the build needs a warm cache"),
                        author: author.into(),
                        from_session: None,
                        importance: feature::Importance::Low,
                        files: vec![],
                        created_at: canopy_protocol::unix_ms_now(),
                    },
                )
            }),
            25 | 75 => commit(doc, "Edit a learning", |tx| {
                let (list, len) = match tx.get(ROOT, "learnings")? {
                    Some((_, list)) => {
                        let len = tx.length(&list);
                        (list, len)
                    }
                    None => return Ok(()),
                };
                if let Some((_, item)) = tx.get(&list, len / 2)?
                    && let Some((text, at)) = text_len(&*tx, &item, "text")
                {
                    tx.splice_text(&text, at.min(5), 0, "really ")?;
                }
                Ok(())
            }),
            90 => commit(doc, "Remove a learning", |tx| {
                if let Some((_, list)) = tx.get(ROOT, "learnings")?
                    && tx.length(&list) > 3
                {
                    tx.delete(&list, 1)?;
                }
                Ok(())
            }),
            10 => commit(doc, "Record a decision", |tx| {
                feature::add_decision(
                    tx,
                    &feature::NewDecision {
                        id: ids::new_decision_id(),
                        decision: format!("decision {i}: keep the cache"),
                        rationale: "it saves minutes".into(),
                        alternatives: vec!["no cache".into()],
                        author: author.into(),
                        from_session: None,
                        created_at: canopy_protocol::unix_ms_now(),
                    },
                )
            }),
            30 => commit(doc, "Mark a key file", |tx| {
                feature::mark_key_file(tx, &format!("src/m{}.rs", i % 50), Some("hot path"), None)
            }),
            60 => commit(doc, "Queue a prompt", |tx| {
                feature::append_queue_entry(
                    tx,
                    &feature::NewQueueEntry {
                        id: ids::new_queue_entry_id(),
                        session_id: session.into(),
                        author: author.into(),
                        text: format!("prompt {i}: tidy the module"),
                        created_at: canopy_protocol::unix_ms_now(),
                    },
                )
            }),
            95 => commit(doc, "Trim the notes", |tx| {
                let (notes, len) = text_len(&*tx, &ROOT, "notes").unwrap();
                if len > 40 {
                    tx.splice_text(&notes, len - 20, 10, "")?;
                }
                Ok(())
            }),
            _ => None,
        };
        // Typing in the notes, and whenever the planned edit found nothing
        // to change: every step is one change.
        let hash = hash.or_else(|| {
            commit(doc, "Edit the notes", |tx| {
                let len = text_len(&*tx, &ROOT, "notes").map_or(0, |(_, l)| l);
                feature::splice_notes(tx, len, 0, "w ")
            })
        });
        hashes.push(hash.unwrap());
    }
    hashes
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95), v[v.len() - 1])
}

#[derive(Debug, Default, serde::Serialize)]
struct Row {
    changes: usize,
    what: String,
    first_ms: f64,
    p50_ms: f64,
    p95_ms: f64,
    max_ms: f64,
    baseline_p50_ms: Option<f64>,
}

impl Row {
    fn print(&self) {
        let base = self
            .baseline_p50_ms
            .map(|b| format!("{b:.1} ({:.2}x)", b / self.p50_ms))
            .unwrap_or_else(|| "–".into());
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            self.changes, self.what, self.first_ms, self.p50_ms, self.p95_ms, self.max_ms, base
        );
    }
}

fn row(changes: usize, what: &str, first: f64, rest: Vec<f64>, baseline: Option<Vec<f64>>) -> Row {
    let (p50, p95, max) = stats(rest);
    Row {
        changes,
        what: what.into(),
        first_ms: first,
        p50_ms: p50,
        p95_ms: p95,
        max_ms: max.max(first),
        baseline_p50_ms: baseline.map(|b| stats(b).0),
    }
}

async fn run(n: usize, samples: usize, smoke: bool) -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let base = server.url().to_owned();
    let client = http();
    let created = post(
        &client,
        format!("{base}/api/features"),
        json!({"title": "History bench", "description": "a long life"}),
    )
    .await;
    let fid = created["feature_id"].as_str().unwrap().to_owned();
    let doc_id: samod::DocumentId = created["document_id"].as_str().unwrap().parse().unwrap();
    let session = post(
        &client,
        format!("{base}/api/features/{fid}/sessions"),
        json!({"title": "Bench session"}),
    )
    .await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = user_id(&base).await;

    // Write the history on a fork, then hand it to the server in one sync.
    let repo = Repo::build_tokio()
        .with_peer_id(PeerId::from(format!("u:{user}:bench-history")))
        .load()
        .await;
    let dialer =
        canopy::client::dial_with_token(&repo, &base, TOKEN, BackoffConfig::default()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), dialer.established())
        .await
        .unwrap()
        .unwrap();
    let handle = repo.find(doc_id).await.unwrap().unwrap();
    let mut fork = handle.with_document(|d| d.fork());
    let built = Instant::now();
    let hashes = grow(&mut fork, n, &user, &session);
    let build_secs = built.elapsed().as_secs_f64();
    let ingest_secs = hand_over(&handle, &mut fork, dialer.connection_id().unwrap()).await;
    let doc = handle.with_document(|d| d.fork());
    let total = doc.get_changes(&[]).len();
    dialer.close();
    repo.stop().await;
    server.stop().await.unwrap();
    println!(
        "  {n} changes ({total} in all): built in {build_secs:.1} s, taken by the server in {ingest_secs:.1} s"
    );

    // A fresh start: nothing cached, the document loads from SQLite.
    let server = start(dir.path()).await;
    let base = server.url().to_owned();
    let feature = format!("{base}/api/features/{fid}");
    let mut rows = Vec::new();

    // The first page, cold (the document loads, the change index is built).
    let (first_page, cold) = timed(&client, &format!("{feature}/history?limit=50")).await;
    assert_eq!(first_page["total"].as_u64(), Some(total as u64));
    let mut warm = Vec::new();
    for _ in 0..samples {
        warm.push(
            timed(&client, &format!("{feature}/history?limit=50"))
                .await
                .1,
        );
    }
    rows.push(row(n, "history, first page of 50", cold, warm, None));

    // Every page, oldest last: each change exactly once.
    let mut seen = HashSet::new();
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{feature}/history?limit=200&cursor={c}"),
            None => format!("{feature}/history?limit=200"),
        };
        let (page, ms) = timed(&client, &url).await;
        pages.push(ms);
        for c in page["changes"].as_array().unwrap() {
            assert!(seen.insert(c["hash"].as_str().unwrap().to_owned()));
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), total, "paging lost or repeated changes");
    let first = pages[0];
    rows.push(row(n, "history, every page of 200", first, pages, None));

    // Filtered: the scan reads summaries until the page is full.
    let (_, cold) = timed(
        &client,
        &format!("{feature}/history?limit=50&path=learnings"),
    )
    .await;
    let mut warm = Vec::new();
    for _ in 0..samples {
        warm.push(
            timed(
                &client,
                &format!("{feature}/history?limit=50&path=learnings"),
            )
            .await
            .1,
        );
    }
    rows.push(row(n, "history, 50 touching learnings", cold, warm, None));

    // `at` in the middle: distinct points, so no rendered version is reused.
    let mid = n / 2;
    let mut ats = Vec::new();
    let mut baseline = Vec::new();
    for k in 0..=samples {
        let h = hashes[mid + k];
        let (body, ms) = timed(&client, &format!("{feature}/at?heads={h}")).await;
        assert_eq!(body["document"]["title"], "History bench");
        ats.push(ms);
        let started = Instant::now();
        let old = doc.fork_at(&[h]).unwrap();
        let json = canopy::history::to_json(&old.hydrate(None));
        std::hint::black_box(serde_json::to_vec(&json).unwrap());
        baseline.push(started.elapsed().as_secs_f64() * 1000.0);
        if smoke && k == 0 {
            let ours = &body["document"];
            assert_eq!(*ours, json, "`at` differs from fork_at");
        }
    }
    let first = ats.remove(0);
    rows.push(row(n, "at, the middle", first, ats, Some(baseline)));

    // Diff across 1,000 changes (fewer in a smoke run).
    let span = 1000.min(n / 4);
    let mut diffs = Vec::new();
    let mut baseline = Vec::new();
    for k in 0..=samples {
        let (from, to) = (hashes[mid - span + k], hashes[mid + k]);
        let (body, ms) = timed(&client, &format!("{feature}/diff?from={from}&to={to}")).await;
        assert!(!body["patches"].as_array().unwrap().is_empty());
        diffs.push(ms);
        if smoke {
            // The patches, applied to one version, give the other; both ways.
            for (a, b) in [(from, to), (to, from)] {
                let (patches, _) = timed(&client, &format!("{feature}/diff?from={a}&to={b}")).await;
                let (mut state, _) = timed(&client, &format!("{feature}/at?heads={a}")).await;
                let (want, _) = timed(&client, &format!("{feature}/at?heads={b}")).await;
                for p in patches["patches"].as_array().unwrap() {
                    canopy::history::apply_patch(&mut state["document"], p).unwrap();
                }
                assert_eq!(state["document"], want["document"], "diff {a} → {b}");
            }
        }
        let started = Instant::now();
        let old = doc.fork_at(&[from]).unwrap();
        std::hint::black_box(old.hydrate(None));
        let patches = old.diff(&[from], &[to]);
        std::hint::black_box(patches);
        baseline.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let first = diffs.remove(0);
    rows.push(row(
        n,
        &format!("diff across {span} changes"),
        first,
        diffs,
        Some(baseline),
    ));

    server.stop().await.unwrap();
    rows
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help") {
        println!("cargo bench --bench history -- [--changes 10000,100000] [--samples 20]");
        return;
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` does not.
    let smoke = !args.iter().any(|a| a == "--bench");
    let sizes = arg_list(
        &args,
        "--changes",
        if smoke { &[400] } else { &[10_000, 100_000] },
    );
    let samples = arg_list(&args, "--samples", &[if smoke { 3 } else { 20 }])[0];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut rows = Vec::new();
        for &n in &sizes {
            rows.extend(run(n, samples, smoke).await);
        }
        println!(
            "\n| changes | request | first ms | p50 ms | p95 ms | max ms | baseline p50 ms (ratio) |"
        );
        println!("|---|---|---|---|---|---|---|");
        for r in &rows {
            r.print();
        }
        if smoke {
            println!("\nsmoke run only; `cargo bench --bench history` for numbers");
            return;
        }
        let out = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-results");
        std::fs::create_dir_all(&out).unwrap();
        let path = out.join("history.json");
        std::fs::write(&path, serde_json::to_string_pretty(&rows).unwrap()).unwrap();
        println!("\nraw results: {}", path.display());
    });
}
