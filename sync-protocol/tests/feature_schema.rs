//! The Feature document: constructor, readers, writers, tolerance.
#![allow(clippy::unwrap_used)]

mod support;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use canopy_protocol::feature::{
    self, FeatureStatus, Importance, NewFeature, NewQueueEntry, NewSession, QueueStatus,
    QueueUpdate, SessionStatus, Writer,
};
use canopy_protocol::{ChangeMeta, SCHEMA_VERSION, SchemaError, ids};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value as Json;
use support::*;

fn new_feature() -> NewFeature {
    NewFeature {
        feature_id: FEATURE.into(),
        title: "Title".into(),
        description: String::new(),
        repo: None,
        created_by: "alice".into(),
        created_by_name: "Alice".into(),
        created_at: T0,
    }
}

/// "Text", "Str", "Int", "Null", "Bool", "F64", "Map", "List", or "missing".
fn kind<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> &'static str {
    match doc.get(obj, key).unwrap() {
        None => "missing",
        Some((Value::Object(ObjType::Text), _)) => "Text",
        Some((Value::Object(ObjType::List), _)) => "List",
        Some((Value::Object(_), _)) => "Map",
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(_) => "Str",
            ScalarValue::Int(_) => "Int",
            ScalarValue::Null => "Null",
            ScalarValue::Boolean(_) => "Bool",
            ScalarValue::F64(_) => "F64",
            _ => "other scalar",
        },
    }
}

fn obj<D: ReadDoc>(doc: &D, parent: &ObjId, prop: impl Into<automerge::Prop>) -> ObjId {
    match doc.get(parent, prop).unwrap().unwrap() {
        (Value::Object(_), id) => id,
        other => panic!("not an object: {other:?}"),
    }
}

#[test]
fn constructor_produces_every_field() {
    let doc = feature::new_feature_document(&new_feature()).unwrap();
    let expected = [
        ("schema", "Int"),
        ("feature_id", "Str"),
        ("title", "Text"),
        ("description", "Text"),
        ("status", "Str"),
        ("repo", "Null"),
        ("created_by", "Str"),
        ("created_at", "Int"),
        ("participants", "Map"),
        ("sessions", "Map"),
        ("queue", "List"),
        ("learnings", "List"),
        ("decisions", "List"),
        ("key_files", "Map"),
        ("notes", "Text"),
    ];
    for (key, want) in expected {
        assert_eq!(kind(&doc, &ROOT, key), want, "root key {key}");
    }
    assert_eq!(doc.keys(ROOT).count(), expected.len(), "no extra root keys");
    let participants = obj(&doc, &ROOT, "participants");
    let alice = obj(&doc, &participants, "alice");
    assert_eq!(kind(&doc, &alice, "name"), "Str");

    let read = feature::read(&doc).unwrap();
    assert_eq!(read.schema, SCHEMA_VERSION);
    assert_eq!(read.feature_id, FEATURE);
    assert_eq!(read.title, "Title");
    assert_eq!(read.status, FeatureStatus::Active);
    assert_eq!(read.created_at, T0);
    assert_eq!(read.participants["alice"].role, feature::OWNER_ROLE);
    assert!(read.sessions.is_empty() && read.queue.is_empty() && read.notes.is_empty());

    // One change, with a real time and a message.
    let changes = doc.get_changes(&[]);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].timestamp(), T0 / 1000);
    assert_eq!(
        changes[0].message().unwrap(),
        &format!("create feature {FEATURE}")
    );
}

#[test]
fn constructor_validates_its_input() {
    let bad_id = NewFeature {
        feature_id: "ftr_short".into(),
        ..new_feature()
    };
    assert!(matches!(
        feature::new_feature_document(&bad_id),
        Err(SchemaError::InvalidId {
            field: "feature_id",
            ..
        })
    ));
    let bad_user = NewFeature {
        created_by: "two words".into(),
        ..new_feature()
    };
    assert!(matches!(
        feature::new_feature_document(&bad_user),
        Err(SchemaError::InvalidId {
            field: "created_by",
            ..
        })
    ));
}

#[test]
fn every_writer_round_trips_through_read() {
    let doc = sample_document();
    let read = feature::read(&doc).unwrap();
    assert_eq!(read, sample_expected());
    // The JSON form (the server's HTTP snapshot) round-trips too.
    let json = serde_json::to_string(&read).unwrap();
    assert_eq!(
        serde_json::from_str::<feature::FeatureDoc>(&json).unwrap(),
        read
    );
    // And survives save/load.
    let loaded = Automerge::load(&doc.save()).unwrap();
    assert_eq!(feature::read(&loaded).unwrap(), read);
}

/// Prose a person writes is Text; everything else is a scalar.
fn is_prose(path: &[String]) -> bool {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    matches!(
        p.as_slice(),
        ["title" | "description" | "notes"]
            | ["sessions", _, "title" | "scope"]
            | ["queue", _, "text"]
            | ["learnings", _, "text"]
            | ["decisions", _, "decision" | "rationale"]
            | ["decisions", _, "alternatives", _]
            | ["key_files", _, "note"]
    )
}

/// Every string in the document, with its path and whether it is Text.
fn strings(
    doc: &Automerge,
    obj: &ObjId,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, bool)>,
) {
    let children: Vec<(String, Value<'_>, ObjId)> = match doc.object_type(obj).unwrap() {
        ObjType::List => doc
            .values(obj)
            .enumerate()
            .map(|(i, (v, id))| (i.to_string(), v, id))
            .collect(),
        _ => doc
            .keys(obj)
            .map(|k| {
                let (v, id) = doc.get(obj, k.as_str()).unwrap().unwrap();
                (k, v, id)
            })
            .collect(),
    };
    for (key, value, id) in children {
        path.push(key);
        match value {
            Value::Object(ObjType::Text) => out.push((path.clone(), true)),
            Value::Object(_) => strings(doc, &id, path, out),
            Value::Scalar(s) if s.is_str() => out.push((path.clone(), false)),
            Value::Scalar(_) => {}
        }
        path.pop();
    }
}

#[test]
fn prose_is_text_and_machine_values_are_scalars() {
    let doc = sample_document();
    let mut found = Vec::new();
    strings(&doc, &ROOT, &mut Vec::new(), &mut found);
    assert!(found.len() > 40, "the sample covers many strings");
    for (path, is_text) in found {
        assert_eq!(is_text, is_prose(&path), "{}", path.join("."));
    }
}

/// Writes `json` into `doc` at `obj[prop]`, choosing at random between the
/// representations a peer may use for the same meaning.
fn put_any(
    tx: &mut AutoCommit,
    obj: &ObjId,
    prop: automerge::Prop,
    json: &Json,
    rng: &mut StdRng,
    insert: bool,
) {
    let scalar = |v: ScalarValue, tx: &mut AutoCommit| match (&prop, insert) {
        (automerge::Prop::Seq(i), true) => tx.insert(obj, *i, v).unwrap(),
        _ => tx.put(obj, prop.clone(), v).unwrap(),
    };
    let object = |ty: ObjType, tx: &mut AutoCommit| match (&prop, insert) {
        (automerge::Prop::Seq(i), true) => tx.insert_object(obj, *i, ty).unwrap(),
        _ => tx.put_object(obj, prop.clone(), ty).unwrap(),
    };
    match json {
        Json::Null => scalar(ScalarValue::Null, tx),
        Json::Bool(b) => scalar(ScalarValue::Boolean(*b), tx),
        Json::String(s) => {
            if rng.random_bool(0.5) {
                scalar(ScalarValue::Str(s.as_str().into()), tx);
            } else {
                let t = object(ObjType::Text, tx);
                tx.splice_text(&t, 0, 0, s).unwrap();
            }
        }
        Json::Number(n) => {
            let v = match n.as_i64() {
                Some(i) => match rng.random_range(0..5) {
                    0 => ScalarValue::Int(i),
                    1 => ScalarValue::Uint(u64::try_from(i).unwrap()),
                    2 => ScalarValue::Timestamp(i),
                    3 => ScalarValue::counter(i),
                    _ => ScalarValue::F64(i as f64),
                },
                None => ScalarValue::F64(n.as_f64().unwrap()),
            };
            scalar(v, tx);
        }
        Json::Array(items) => {
            let list = object(ObjType::List, tx);
            for (i, item) in items.iter().enumerate() {
                put_any(tx, &list, i.into(), item, rng, true);
            }
        }
        Json::Object(map) => {
            let m = object(ObjType::Map, tx);
            for (k, v) in map {
                put_any(tx, &m, k.as_str().into(), v, rng, false);
            }
        }
    }
}

#[test]
fn any_mix_of_string_and_number_representations_reads_the_same() {
    let expected = sample_expected();
    let json = serde_json::to_value(&expected).unwrap();
    for seed in 0..64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut doc = AutoCommit::new();
        for (k, v) in json.as_object().unwrap() {
            put_any(&mut doc, &ROOT, k.as_str().into(), v, &mut rng, false);
        }
        assert_eq!(feature::read(&doc).unwrap(), expected, "seed {seed}");
        // Partial readers are just as tolerant.
        assert_eq!(
            feature::read_session(&doc, S1).as_ref(),
            expected.sessions.get(S1)
        );
        assert_eq!(
            feature::find_queue_entry(&doc, Q2).as_ref(),
            expected.queue.get(1)
        );
        assert_eq!(
            feature::unfinished_queue_entries(&doc, S1),
            1,
            "seed {seed}"
        );
    }
}

#[test]
fn writers_edit_documents_whose_strings_are_text() {
    // A document as JS writes it: every string a Text object.
    let json = serde_json::to_value(sample_expected()).unwrap();
    let mut doc = AutoCommit::new();
    let mut rng = StdRng::seed_from_u64(7);
    for (k, v) in json.as_object().unwrap() {
        put_any(&mut doc, &ROOT, k.as_str().into(), v, &mut rng, false);
    }
    feature::set_queue_status(
        &mut doc,
        Q2,
        &QueueUpdate::new(QueueStatus::Dispatched, Writer::Server, T0 + 1),
    )
    .unwrap();
    feature::set_title(&mut doc, "New title").unwrap();
    feature::set_session_status(&mut doc, S2, &SessionStatus::Starting).unwrap();
    feature::mark_key_file(&mut doc, "docs/auth.md", Some("Tell everyone."), Some(S2)).unwrap();
    doc.commit_with(ChangeMeta::now("server edits").commit_options());

    let read = feature::read(&doc).unwrap();
    assert_eq!(read.queue[1].status, QueueStatus::Dispatched);
    assert_eq!(read.title, "New title");
    assert_eq!(read.sessions[S2].status, SessionStatus::Starting);
    assert_eq!(read.key_files["docs/auth.md"].note, "Tell everyone.");
    assert_eq!(read.key_files["docs/auth.md"].sessions, vec![S2.to_owned()]);
}

#[test]
fn malformed_items_are_skipped_and_missing_fields_default() {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "schema", 1).unwrap();
    let queue = doc.put_object(ROOT, "queue", ObjType::List).unwrap();
    doc.insert(&queue, 0, "not an entry").unwrap();
    let q = doc.insert_object(&queue, 1, ObjType::Map).unwrap();
    doc.put(&q, "id", Q1).unwrap();
    doc.insert_object(&queue, 2, ObjType::List).unwrap();
    let sessions = doc.put_object(ROOT, "sessions", ObjType::Map).unwrap();
    doc.put(&sessions, "ses_notamap", 5).unwrap();
    doc.put_object(&sessions, S1, ObjType::Map).unwrap();
    doc.put(ROOT, "notes", 42).unwrap();
    doc.put(ROOT, "created_at", "yesterday").unwrap();

    let read = feature::read(&doc).unwrap();
    assert_eq!(read.queue.len(), 1);
    assert_eq!(read.queue[0].id, Q1);
    assert_eq!(read.queue[0].status, QueueStatus::Queued);
    assert_eq!(read.sessions.keys().collect::<Vec<_>>(), vec![S1]);
    assert_eq!(read.sessions[S1], feature::Session::default());
    assert_eq!(read.notes, "");
    assert_eq!(read.created_at, 0);
    assert_eq!(
        feature::queue_len(&doc),
        3,
        "raw length counts malformed items"
    );
}

#[test]
fn unknown_enum_values_round_trip() {
    let mut doc = AutoCommit::load(&sample_document().save()).unwrap();
    doc.put(ROOT, "status", "paused").unwrap();
    let sessions = obj(&doc, &ROOT, "sessions");
    let s1 = obj(&doc, &sessions, S1);
    doc.put(&s1, "status", "hibernating").unwrap();
    let queue = obj(&doc, &ROOT, "queue");
    let q2 = obj(&doc, &queue, 1);
    doc.put(&q2, "status", "deferred").unwrap();
    let learnings = obj(&doc, &ROOT, "learnings");
    let l1 = obj(&doc, &learnings, 0);
    doc.put(&l1, "importance", "critical").unwrap();

    let read = feature::read(&doc).unwrap();
    assert_eq!(read.status, FeatureStatus::Unknown("paused".into()));
    assert_eq!(
        read.sessions[S1].status,
        SessionStatus::Unknown("hibernating".into())
    );
    assert_eq!(
        read.queue[1].status,
        QueueStatus::Unknown("deferred".into())
    );
    assert_eq!(
        read.learnings[0].importance,
        Importance::Unknown("critical".into())
    );

    // JSON keeps the strings verbatim.
    let json = serde_json::to_value(&read).unwrap();
    assert_eq!(json["status"], "paused");
    assert_eq!(json["queue"][1]["status"], "deferred");
    assert_eq!(
        serde_json::from_value::<feature::FeatureDoc>(json).unwrap(),
        read
    );

    // Writing a value back does not change it.
    feature::set_status(&mut doc, &read.status).unwrap();
    feature::set_session_status(&mut doc, S1, &read.sessions[S1].status).unwrap();
    let again = feature::read(&doc).unwrap();
    assert_eq!(again.status, read.status);
    assert_eq!(again.sessions[S1].status, read.sessions[S1].status);

    // An older server never moves an entry out of a status it does not know.
    for to in QueueStatus::KNOWN {
        let err = feature::set_queue_status(
            &mut doc,
            Q2,
            &QueueUpdate::new(to.clone(), Writer::Server, T0),
        )
        .unwrap_err();
        assert!(matches!(err, SchemaError::Transition { .. }), "{err}");
    }
    assert_eq!(
        feature::read(&doc).unwrap().queue[1].status,
        QueueStatus::Unknown("deferred".into())
    );
}

#[test]
fn known_enum_values_parse_back_to_themselves() {
    fn check<E>(known: &[E])
    where
        E: std::fmt::Debug
            + PartialEq
            + for<'a> From<&'a str>
            + serde::Serialize
            + serde::de::DeserializeOwned,
        E: std::fmt::Display,
    {
        for v in known {
            let s = v.to_string();
            assert_eq!(&E::from(s.as_str()), v);
            assert_eq!(s, s.to_lowercase(), "lowercase on the wire");
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(&serde_json::from_str::<E>(&json).unwrap(), v);
        }
    }
    check(FeatureStatus::KNOWN);
    check(SessionStatus::KNOWN);
    check(QueueStatus::KNOWN);
    check(Importance::KNOWN);
    let names: Vec<&str> = QueueStatus::KNOWN.iter().map(QueueStatus::as_str).collect();
    assert_eq!(
        names,
        [
            "queued",
            "dispatched",
            "running",
            "done",
            "failed",
            "cancelled",
            "rejected"
        ]
    );
}

#[test]
fn queue_transitions_follow_the_rules() {
    use QueueStatus::*;
    let client: &[(QueueStatus, QueueStatus)] = &[(Queued, Cancelled)];
    let server: &[(QueueStatus, QueueStatus)] = &[
        (Queued, Dispatched),
        (Queued, Rejected),
        (Queued, Cancelled),
        (Dispatched, Running),
        (Dispatched, Failed),
        (Dispatched, Cancelled),
        (Running, Done),
        (Running, Failed),
        (Running, Cancelled),
    ];
    let unknown = Unknown("deferred".into());
    let mut all = QueueStatus::KNOWN.to_vec();
    all.push(unknown);
    for from in &all {
        for to in &all {
            for (by, allowed) in [(Writer::Client, client), (Writer::Server, server)] {
                let want = allowed.contains(&(from.clone(), to.clone()));
                assert_eq!(
                    from.check_transition(to, by).is_ok(),
                    want,
                    "{from} -> {to} by {by}"
                );
            }
        }
        // Terminal statuses allow nothing.
        if from.is_terminal() {
            assert!(
                all.iter()
                    .all(|to| from.check_transition(to, Writer::Server).is_err())
            );
        }
    }
    assert!(!QueueStatus::Unknown("x".into()).is_terminal());
}

#[test]
fn set_queue_status_records_times_errors_and_commits() {
    let mut doc = AutoCommit::load(&sample_document().save()).unwrap();
    // Q2 queued -> dispatched -> failed: no started_at, finished_at and error set.
    feature::set_queue_status(
        &mut doc,
        Q2,
        &QueueUpdate::new(QueueStatus::Dispatched, Writer::Server, T0 + 20),
    )
    .unwrap();
    let e = feature::find_queue_entry(&doc, Q2).unwrap();
    assert_eq!((e.started_at, e.finished_at), (None, None));
    feature::set_queue_status(
        &mut doc,
        Q2,
        &QueueUpdate::new(QueueStatus::Failed, Writer::Server, T0 + 30)
            .with_error("sandbox did not start"),
    )
    .unwrap();
    let e = feature::find_queue_entry(&doc, Q2).unwrap();
    assert_eq!(e.status, QueueStatus::Failed);
    assert_eq!(e.finished_at, Some(T0 + 30));
    assert_eq!(e.error.as_deref(), Some("sandbox did not start"));
    assert_eq!(e.commit, None);

    // A client may not touch a finished entry, nor an unknown one.
    let err = feature::set_queue_status(
        &mut doc,
        Q2,
        &QueueUpdate::new(QueueStatus::Cancelled, Writer::Client, T0),
    )
    .unwrap_err();
    assert!(
        matches!(&err, SchemaError::Transition { id, source } if id == Q2 && source.from == QueueStatus::Failed)
    );
    let err = feature::set_queue_status(
        &mut doc,
        "q_nosuchentry23456789",
        &QueueUpdate::new(QueueStatus::Cancelled, Writer::Client, T0),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        SchemaError::NotFound {
            kind: "queue entry",
            ..
        }
    ));
}

#[test]
fn writers_reject_bad_input() {
    let mut doc = AutoCommit::load(&sample_document().save()).unwrap();
    let entry = |id: &str, session: &str, author: &str| NewQueueEntry {
        id: id.into(),
        session_id: session.into(),
        author: author.into(),
        text: "x".into(),
        created_at: T0,
    };
    let cases = [
        (entry("q_short", S1, "alice"), "id"),
        (entry("x_abcdefghijklmnopqrst", S1, "alice"), "id"),
        (entry("q_ABCDEFGHIJKLMNOPQRST", S1, "alice"), "id"),
        (
            entry(&ids::new_queue_entry_id(), "ses_nope", "alice"),
            "session_id",
        ),
        (entry(&ids::new_queue_entry_id(), S1, ""), "author"),
        (entry(&ids::new_queue_entry_id(), S1, "al ice"), "author"),
    ];
    for (e, field) in cases {
        let err = feature::append_queue_entry(&mut doc, &e).unwrap_err();
        assert!(
            matches!(err, SchemaError::InvalidId { field: f, .. } if f == field),
            "{e:?}: {err}"
        );
    }
    let unknown_session = entry(&ids::new_queue_entry_id(), &ids::new_session_id(), "alice");
    assert!(matches!(
        feature::append_queue_entry(&mut doc, &unknown_session),
        Err(SchemaError::NotFound {
            kind: "session",
            ..
        })
    ));
    assert!(matches!(
        feature::append_queue_entry(&mut doc, &entry(Q1, S1, "alice")),
        Err(SchemaError::AlreadyExists {
            kind: "queue entry",
            ..
        })
    ));
    let dup = NewSession {
        session_id: S1.into(),
        title: "again".into(),
        scope: String::new(),
        depends_on: vec![],
        created_by: "alice".into(),
        created_at: T0,
    };
    assert!(matches!(
        feature::add_session(&mut doc, &dup),
        Err(SchemaError::AlreadyExists {
            kind: "session",
            ..
        })
    ));
    let bad_dep = NewSession {
        session_id: ids::new_session_id(),
        depends_on: vec!["ftr_abcdefghijklmnopqrst".into()],
        ..dup
    };
    assert!(matches!(
        feature::add_session(&mut doc, &bad_dep),
        Err(SchemaError::InvalidId {
            field: "depends_on",
            ..
        })
    ));
    assert!(matches!(
        feature::set_session_status(&mut doc, "ses_unknown", &SessionStatus::Idle),
        Err(SchemaError::NotFound {
            kind: "session",
            ..
        })
    ));
    for path in ["", "a\u{0}b", &"x".repeat(feature::MAX_PATH_BYTES + 1)] {
        assert!(matches!(
            feature::mark_key_file(&mut doc, path, Some("n"), None),
            Err(SchemaError::InvalidValue { field: "path", .. })
        ));
    }
    assert!(feature::splice_notes(&mut doc, 10_000, 0, "x").is_err());
    // Nothing above reached the document.
    doc.commit();
    assert_eq!(feature::read(&doc).unwrap(), sample_expected());
}

#[test]
fn read_at_shows_past_versions() {
    let mut doc = sample_document();
    let before = doc.get_heads();
    doc.transact_with(
        |_| ChangeMeta::now("retitle").commit_options(),
        |tx| {
            feature::set_title(tx, "Renamed")?;
            feature::append_queue_entry(
                tx,
                &NewQueueEntry {
                    id: ids::new_queue_entry_id(),
                    session_id: S2.into(),
                    author: "bob".into(),
                    text: "later".into(),
                    created_at: T0 + 99_000,
                },
            )
        },
    )
    .unwrap();
    assert_eq!(feature::read(&doc).unwrap().title, "Renamed");
    assert_eq!(feature::read(&doc).unwrap().queue.len(), 4);
    assert_eq!(feature::read_at(&doc, &before).unwrap(), sample_expected());

    // Every change of the history reads at its own heads.
    let metas = doc.get_changes_meta(&[]);
    let first = feature::read_at(&doc, &[metas[0].hash]).unwrap();
    assert_eq!(first.title, "Add OAuth login");
    assert!(first.sessions.is_empty());
    for meta in &metas {
        assert!(meta.timestamp > 0, "every change has a real time");
        assert!(meta.message.as_deref().is_some_and(|m| !m.is_empty()));
        feature::read_at(&doc, &[meta.hash]).unwrap();
    }

    let other = feature::new_feature_document(&new_feature()).unwrap();
    let foreign = other.get_heads();
    assert!(
        matches!(feature::read_at(&doc, &foreign), Err(SchemaError::UnknownHeads(h)) if h == foreign)
    );
}

#[test]
fn partial_readers_agree_with_read() {
    let doc = sample_document();
    let full = feature::read(&doc).unwrap();
    assert_eq!(
        feature::session_ids(&doc),
        full.sessions.keys().cloned().collect::<Vec<_>>()
    );
    for (id, session) in &full.sessions {
        assert_eq!(feature::read_session(&doc, id).as_ref(), Some(session));
    }
    assert_eq!(feature::read_session(&doc, "ses_missing"), None);
    for entry in &full.queue {
        assert_eq!(
            feature::find_queue_entry(&doc, &entry.id).as_ref(),
            Some(entry)
        );
    }
    assert_eq!(feature::find_queue_entry(&doc, "q_missing"), None);
    assert_eq!(feature::queue_len(&doc), full.queue.len());
    assert_eq!(feature::learnings_len(&doc), full.learnings.len());
    assert_eq!(feature::decisions_len(&doc), full.decisions.len());
    assert_eq!(feature::unfinished_queue_entries(&doc, S1), 1);
    assert_eq!(feature::unfinished_queue_entries(&doc, S2), 0);
    assert_eq!(
        feature::next_queued(&doc, S1).map(|e| e.id),
        Some(Q2.to_owned())
    );
    assert_eq!(feature::next_queued(&doc, S2), None);
}

#[test]
fn writers_work_on_autocommit_and_create_missing_containers() {
    // A bare document from a foreign client: no containers at all.
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "schema", 1).unwrap();
    doc.put(ROOT, "notes", "plain scalar notes").unwrap();
    let session = feature::add_session(
        &mut doc,
        &NewSession {
            session_id: S1.into(),
            title: "t".into(),
            scope: "s".into(),
            depends_on: vec![],
            created_by: "alice".into(),
            created_at: T0,
        },
    )
    .unwrap();
    assert_eq!(session.status, SessionStatus::Pending);
    feature::append_queue_entry(
        &mut doc,
        &NewQueueEntry {
            id: Q1.into(),
            session_id: S1.into(),
            author: "alice".into(),
            text: "go".into(),
            created_at: T0,
        },
    )
    .unwrap();
    // Scalar notes become Text, keeping their content.
    feature::splice_notes(&mut doc, 0, 5, "Text").unwrap();
    doc.commit_with(ChangeMeta::at("foreign", 1).commit_options());
    assert_eq!(kind(&doc, &ROOT, "notes"), "Text");
    let read = feature::read(&doc).unwrap();
    assert_eq!(read.notes, "Text scalar notes");
    assert_eq!(read.sessions[S1], session);
    assert_eq!(read.queue[0].text, "go");
}
