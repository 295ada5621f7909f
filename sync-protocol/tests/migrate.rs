//! Schema versions and migration.
#![allow(clippy::unwrap_used)]

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, ObjType, ROOT, ReadDoc, Value};
use canopy_protocol::feature::{self, QueueStatus};
use canopy_protocol::migrate::{self, Migration, ROOT_CONTAINERS};
use canopy_protocol::{ChangeMeta, SCHEMA_VERSION, SchemaError};

#[test]
fn an_empty_document_gets_every_container_and_the_schema() {
    let mut doc = Automerge::new();
    let outcome = doc
        .transact_with(
            |_| ChangeMeta::now("migrate").commit_options(),
            |tx| migrate::migrate(tx),
        )
        .unwrap()
        .result;
    assert_eq!(
        outcome,
        Migration {
            from: 0,
            to: SCHEMA_VERSION
        }
    );
    assert!(outcome.changed());
    assert_eq!(migrate::schema_version(&doc), Some(SCHEMA_VERSION));
    for (key, ty) in ROOT_CONTAINERS {
        match doc.get(ROOT, key).unwrap() {
            Some((Value::Object(found), _)) => assert_eq!(found, ty, "{key}"),
            other => panic!("{key}: {other:?}"),
        }
    }
    let read = feature::read(&doc).unwrap();
    assert_eq!(read.schema, SCHEMA_VERSION);
    assert_eq!(
        read,
        feature::FeatureDoc {
            schema: 1,
            ..Default::default()
        }
    );
}

#[test]
fn migrating_a_current_document_is_a_no_op() {
    let mut doc = AutoCommit::new();
    assert!(migrate::migrate(&mut doc).unwrap().changed());
    doc.commit();
    let heads = doc.get_heads();
    let outcome = migrate::migrate(&mut doc).unwrap();
    assert!(!outcome.changed());
    assert_eq!(doc.pending_ops(), 0);
    doc.commit();
    assert_eq!(doc.get_heads(), heads, "no change committed");
}

#[test]
fn migration_keeps_existing_content() {
    // A schema-less document from an early client.
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "notes", "scalar notes").unwrap();
    doc.put(ROOT, "title", "scalar title").unwrap();
    doc.put(ROOT, "queue", "garbage").unwrap();
    let learnings = doc.put_object(ROOT, "learnings", ObjType::List).unwrap();
    let l = doc.insert_object(&learnings, 0, ObjType::Map).unwrap();
    doc.put(&l, "text", "kept").unwrap();
    assert_eq!(feature::read(&doc).unwrap().schema, 0);

    let outcome = migrate::migrate(&mut doc).unwrap();
    assert_eq!(outcome.from, 0);
    let read = feature::read(&doc).unwrap();
    assert_eq!(read.notes, "scalar notes");
    assert_eq!(read.title, "scalar title");
    assert_eq!(read.learnings[0].text, "kept");
    assert!(read.queue.is_empty());
    for key in ["notes", "title"] {
        assert!(matches!(
            doc.get(ROOT, key).unwrap(),
            Some((Value::Object(ObjType::Text), _))
        ));
    }
}

#[test]
fn a_newer_schema_is_refused_everywhere() {
    let mut doc = AutoCommit::new();
    migrate::migrate(&mut doc).unwrap();
    doc.put(ROOT, "schema", SCHEMA_VERSION + 1).unwrap();
    let newer = |r: Result<(), SchemaError>| {
        assert!(
            matches!(r, Err(SchemaError::UnsupportedSchema { found, supported })
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{r:?}"
        );
    };
    newer(feature::read(&doc).map(drop));
    newer(migrate::migrate(&mut doc).map(drop));
    newer(migrate::check_supported(&doc).map(drop));
    newer(feature::set_notes(&mut doc, "x"));
    newer(feature::set_title(&mut doc, "x"));
    newer(feature::set_queue_status(
        &mut doc,
        "q_abcdefghijklmnopqrst",
        &feature::QueueUpdate::new(QueueStatus::Cancelled, feature::Writer::Client, 0),
    ));
    // But the document before the upgrade is still readable as history.
    let before = AutoCommit::new();
    assert_eq!(feature::read(&before).unwrap().schema, 0);
}
