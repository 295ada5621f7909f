//! The schema round trip with the official JS implementation
//! (`@automerge/automerge` from `tests/js`, driven by
//! `tests/js/schema-roundtrip.mjs`): documents written by the Rust writers
//! read correctly in JS, documents written the way a browser writes them
//! read correctly in Rust, and ephemeral messages cross both ways.
//!
//! Needs Node.js 20+ and `make js-deps`; without them the tests
//! fail (never skip) so that CI cannot pass without the interop check.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use automerge::{Automerge, ObjType, ROOT, ReadDoc, Value};
use canopy_protocol::ephemeral::{Ephemeral, KNOWN_TYPES};
use canopy_protocol::feature::{
    self, FeatureStatus, Importance, NewLearning, QueueStatus, QueueUpdate, SessionStatus, Writer,
};
use canopy_protocol::{ChangeMeta, ids};
use serde_json::Value as Json;
use support::*;

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("tests/js")
}

/// Runs the round-trip script and returns its stdout; panics with its
/// output if it fails.
fn node(args: &[&Path]) -> String {
    let js = js_dir();
    assert!(
        js.join("node_modules/@automerge/automerge/package.json")
            .is_file()
            && js
                .join("node_modules/@automerge/automerge-repo/package.json")
                .is_file(),
        "the JS packages are missing from {}: run `make js-deps`",
        js.display()
    );
    let out = Command::new("node")
        .arg(js.join("schema-roundtrip.mjs"))
        .args(args)
        .current_dir(&js)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `node` ({e}): install Node.js 20+, then run `make js-deps`")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "node schema-roundtrip.mjs {args:?} failed ({}):\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Differences between two JSON values; numbers compare by value, so `0`
/// from JS equals `0.0` from Rust.
fn json_diff(actual: &Json, expected: &Json, path: &str, out: &mut Vec<String>) {
    match (actual, expected) {
        (Json::Number(a), Json::Number(e)) if a.as_f64() == e.as_f64() => {}
        (Json::Array(a), Json::Array(e)) if a.len() == e.len() => {
            for (i, (a, e)) in a.iter().zip(e).enumerate() {
                json_diff(a, e, &format!("{path}[{i}]"), out);
            }
        }
        (Json::Object(a), Json::Object(e)) => {
            for key in a.keys().chain(e.keys().filter(|k| !a.contains_key(*k))) {
                let sub = format!("{path}.{key}");
                match (a.get(key), e.get(key)) {
                    (Some(a), Some(e)) => json_diff(a, e, &sub, out),
                    (a, e) => out.push(format!("{sub}: rust {a:?}, js {e:?}")),
                }
            }
        }
        (a, e) if a == e => {}
        (a, e) => out.push(format!("{path}: rust {a}, js {e}")),
    }
}

fn assert_same_json(rust: &Json, js: &Json) {
    let mut diffs = Vec::new();
    json_diff(rust, js, "", &mut diffs);
    assert!(
        diffs.is_empty(),
        "Rust and JS disagree:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn a_document_written_in_rust_reads_correctly_in_js() {
    let dir = tempfile::tempdir().unwrap();
    let doc_file = dir.path().join("feature.automerge");
    let expected_file = dir.path().join("expected.json");
    std::fs::write(&doc_file, sample_document().save()).unwrap();
    std::fs::write(
        &expected_file,
        serde_json::to_vec(&sample_expected()).unwrap(),
    )
    .unwrap();
    node(&[
        Path::new("read"),
        &doc_file,
        &expected_file,
        Path::new("--rust-written"),
    ]);
}

#[test]
fn a_document_written_in_js_reads_correctly_in_rust_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let doc_file = dir.path().join("feature.automerge");
    let js_json: Json = serde_json::from_str(&node(&[Path::new("write"), &doc_file])).unwrap();
    let mut doc = Automerge::load(&std::fs::read(&doc_file).unwrap()).unwrap();

    // JS wrote every string, ids and statuses included, as Text.
    for key in ["feature_id", "status", "created_by", "title"] {
        assert!(
            matches!(
                doc.get(ROOT, key).unwrap(),
                Some((Value::Object(ObjType::Text), _))
            ),
            "{key} should be Text in a JS-written document"
        );
    }

    // Every field reads as JS wrote it.
    let read = feature::read(&doc).unwrap();
    assert_same_json(&serde_json::to_value(&read).unwrap(), &js_json);
    // And the typed values are the known ones, not fallbacks.
    assert_eq!(read.schema, 1);
    assert!(ids::is_valid_id(ids::FEATURE_PREFIX, &read.feature_id));
    assert_eq!(read.title, "Café login ☕ (JS)");
    assert_eq!(
        read.notes, "Hello 🚀 big world",
        "JS splices at UTF-16 offsets"
    );
    assert_eq!(read.status, FeatureStatus::Active);
    assert!(read.repo.as_ref().unwrap().full_clone, "{:?}", read.repo);
    assert_eq!(read.queue.len(), 2);
    assert_eq!(read.queue[0].status, QueueStatus::Queued);
    assert_eq!(read.queue[1].status, QueueStatus::Cancelled);
    assert!(read.queue[1].finished_at.unwrap() > T0);
    assert_eq!(read.learnings[0].importance, Importance::Low);
    let running: Vec<_> = read
        .sessions
        .iter()
        .filter(|(_, s)| s.status == SessionStatus::Running)
        .collect();
    assert_eq!(running.len(), 1);
    let (s2, session) = running[0];
    assert_eq!(session.usage.cost_usd, 0.125);
    assert_eq!(session.pr.as_ref().unwrap().number, 7);
    assert!(session.sandbox.as_ref().unwrap().workspace_ready);
    assert_eq!(session.sandbox.as_ref().unwrap().head, None);

    // The server edits the JS document with the Rust writers...
    let entry = read.queue[0].clone();
    let s1 = entry.session_id.clone();
    let notes_end = read.notes.chars().count();
    doc.transact_with(
        |_| ChangeMeta::now("server edits").commit_options(),
        |tx| {
            feature::set_queue_status(
                tx,
                &entry.id,
                &QueueUpdate::new(QueueStatus::Dispatched, Writer::Server, T0),
            )?;
            feature::set_queue_status(
                tx,
                &entry.id,
                &QueueUpdate::new(QueueStatus::Running, Writer::Server, T0 + 1),
            )?;
            feature::set_session_status(tx, &s1, &SessionStatus::Running)?;
            feature::splice_notes(tx, notes_end, 0, " — from Rust ✅")?;
            feature::mark_key_file(tx, "web/login.tsx", None, Some(s2))?;
            feature::add_learning(
                tx,
                &NewLearning {
                    id: ids::new_learning_id(),
                    text: "Rust can edit JS documents.".into(),
                    author: "server".into(),
                    from_session: Some(s2.clone()),
                    importance: Importance::Medium,
                    files: vec![],
                    created_at: T0 + 2,
                },
            )
        },
    )
    .unwrap();
    let edited = feature::read(&doc).unwrap();
    assert_eq!(edited.queue[0].status, QueueStatus::Running);
    assert_eq!(edited.queue[0].started_at, Some(T0 + 1));
    assert_eq!(edited.notes, "Hello 🚀 big world — from Rust ✅");
    assert_eq!(
        edited.key_files["web/login.tsx"].sessions,
        vec![s1.clone(), s2.clone()]
    );
    assert_eq!(edited.learnings.len(), 2);

    // ...and JS reads the result exactly as Rust does.
    let expected_file = dir.path().join("expected.json");
    std::fs::write(&expected_file, serde_json::to_vec(&edited).unwrap()).unwrap();
    std::fs::write(&doc_file, doc.save()).unwrap();
    node(&[Path::new("read"), &doc_file, &expected_file]);
}

fn sample_messages() -> Vec<Ephemeral> {
    use canopy_protocol::ephemeral::*;
    vec![
        Ephemeral::Presence(Presence {
            user_id: "alice".into(),
            name: Some("Alice Ünal".into()),
            status: PresenceStatus::Away,
            session_id: Some(S1.into()),
            cursor: Some(Cursor {
                path: "src/lib.rs".into(),
                line: 42,
            }),
        }),
        Ephemeral::Typing(Typing {
            user_id: "bob".into(),
            session_id: S1.into(),
        }),
        Ephemeral::Heartbeat(Heartbeat {
            session_id: S1.into(),
            sandbox_state: "running".into(),
            at: T0,
            opencode_instance: None,
            restarts: None,
        }),
        Ephemeral::AgentOutput(AgentOutput {
            session_id: S1.into(),
            message_id: "msg_01".into(),
            part_id: "prt_01".into(),
            kind: OutputKind::Text,
            text: "Done 🎉".into(),
            seq: 3,
        }),
        Ephemeral::Refused(Refused {
            reason: "read_only".into(),
            message: "viewers cannot change this feature".into(),
        }),
    ]
}

#[test]
fn ephemeral_messages_cross_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("messages.json");
    let rust: Vec<Json> = sample_messages()
        .iter()
        .map(|m| {
            let hex: String = m
                .encode()
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            serde_json::json!({ "hex": hex, "expect": m })
        })
        .collect();
    std::fs::write(&file, serde_json::to_vec(&rust).unwrap()).unwrap();

    let from_js: Vec<Json> = serde_json::from_str(&node(&[Path::new("ephemeral"), &file])).unwrap();
    assert!(from_js.len() >= 5);
    for item in from_js {
        let hex = item["hex"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let decoded = Ephemeral::decode(&bytes)
            .unwrap_or_else(|e| panic!("JS message {}: {e}", item["expect"]));
        let kind = item["expect"]["type"].as_str().unwrap();
        if KNOWN_TYPES.contains(&kind) {
            let expect: Ephemeral = serde_json::from_value(item["expect"].clone()).unwrap();
            assert_eq!(decoded, expect);
        } else {
            assert_eq!(decoded, Ephemeral::Unknown { kind: kind.into() });
        }
    }
}
