//! The Transcript document: constructor, sorted idempotent upserts,
//! tolerant readers, limits.
#![allow(clippy::unwrap_used)]

use automerge::transaction::{Transactable, Transaction};
use automerge::{
    ActorId, AutoCommit, Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value,
};
use canopy_protocol::transcript::{
    self, MAX_OUTPUT_CHARS, MAX_TEXT_BYTES, Message, MessageUpsert, NewTranscript, Part, PartKind,
    PartUpsert, Role, ToolState, Usage,
};
use canopy_protocol::{ChangeMeta, SchemaError, feature};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::json;

const SESSION: &str = "ses_implementprovider234";
const FEATURE: &str = "ftr_abcdefghijklmnopqrst";
const T0: i64 = 1_763_000_000_000;

fn new_doc() -> Automerge {
    transcript::new_transcript_document(&NewTranscript {
        session_id: SESSION.into(),
        feature_id: FEATURE.into(),
    })
    .unwrap()
}

/// Runs `f` in one transaction; returns the new change's hash, or `None`
/// if the transaction had no operations (Automerge records no change).
fn edit(
    doc: &mut Automerge,
    f: impl FnOnce(&mut Transaction<'_>) -> Result<(), SchemaError>,
) -> Option<ChangeHash> {
    doc.transact_with(|_| ChangeMeta::at("edit", T0 / 1000).commit_options(), f)
        .unwrap_or_else(|failure| panic!("{}", failure.error))
        .hash
}

/// Runs `f` in one transaction that is expected to fail; returns the error
/// and checks that nothing was left in the transaction.
fn refused(
    doc: &mut Automerge,
    f: impl FnOnce(&mut Transaction<'_>) -> Result<(), SchemaError>,
) -> SchemaError {
    let heads = doc.get_heads();
    let mut tx = doc.transaction();
    let err = f(&mut tx).unwrap_err();
    assert_eq!(tx.pending_ops(), 0, "a refused upsert wrote something");
    tx.rollback();
    assert_eq!(doc.get_heads(), heads);
    err
}

fn msg(id: &str, role: Role) -> MessageUpsert {
    MessageUpsert {
        id: id.into(),
        role,
        created_at: T0,
        ..MessageUpsert::default()
    }
}

fn text_part(id: &str, text: &str) -> PartUpsert {
    PartUpsert {
        id: id.into(),
        kind: PartKind::Text,
        text: Some(text.into()),
        ..PartUpsert::default()
    }
}

fn tool_part(id: &str, state: ToolState, output: Option<&str>) -> PartUpsert {
    PartUpsert {
        id: id.into(),
        kind: PartKind::Tool,
        tool: Some("bash".into()),
        state: Some(state),
        input: Some(r#"{"command":"cargo test"}"#.into()),
        output: output.map(str::to_owned),
        ..PartUpsert::default()
    }
}

fn part_ids(m: &Message) -> Vec<&str> {
    m.parts.iter().map(|p| p.id.as_str()).collect()
}

/// "Text", "Str", "Int", "F64", "Bool", "Map", "List", "missing", or
/// "other".
fn kind<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> &'static str {
    match doc.get(obj, key).unwrap() {
        None => "missing",
        Some((Value::Object(ObjType::Text), _)) => "Text",
        Some((Value::Object(ObjType::List), _)) => "List",
        Some((Value::Object(_), _)) => "Map",
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(_) => "Str",
            ScalarValue::Int(_) => "Int",
            ScalarValue::F64(_) => "F64",
            ScalarValue::Boolean(_) => "Bool",
            _ => "other",
        },
    }
}

fn obj<D: ReadDoc>(doc: &D, parent: &ObjId, prop: impl Into<automerge::Prop>) -> ObjId {
    match doc.get(parent, prop).unwrap().unwrap() {
        (Value::Object(_), id) => id,
        other => panic!("not an object: {other:?}"),
    }
}

/// A transcript with a prompt and an answer holding every kind of part.
fn sample() -> Automerge {
    let mut doc = new_doc();
    edit(&mut doc, |tx| {
        transcript::upsert_message(
            tx,
            &MessageUpsert {
                author: Some("alice".into()),
                queue_entry: Some("q_firstprompt2345678ab".into()),
                ..msg("msg_001", Role::User)
            },
        )?;
        transcript::upsert_part(tx, "msg_001", &text_part("prt_001", "Add a login page"))?;
        transcript::upsert_message(
            tx,
            &MessageUpsert {
                finish: Some("tool-calls".into()),
                usage: Some(Usage {
                    input_tokens: 1200,
                    output_tokens: 340,
                    cost_usd: 0.0125,
                }),
                ..msg("msg_002", Role::Assistant)
            },
        )?;
        transcript::upsert_part(
            tx,
            "msg_002",
            &PartUpsert {
                id: "prt_002".into(),
                kind: PartKind::Step,
                ..PartUpsert::default()
            },
        )?;
        transcript::upsert_part(
            tx,
            "msg_002",
            &PartUpsert {
                kind: PartKind::Reasoning,
                ..text_part("prt_003", "The user wants a form.")
            },
        )?;
        transcript::upsert_part(
            tx,
            "msg_002",
            &tool_part("prt_004", ToolState::Completed, Some("ok")),
        )?;
        transcript::upsert_part(
            tx,
            "msg_002",
            &PartUpsert {
                error: Some("permission denied".into()),
                ..tool_part("prt_005", ToolState::Error, None)
            },
        )?;
        transcript::upsert_part(tx, "msg_002", &text_part("prt_006", "Café ☕ done 🚀"))
    })
    .unwrap();
    doc
}

#[test]
fn constructor_writes_the_root() {
    let doc = new_doc();
    assert_eq!(doc.get_changes(&[]).len(), 1);
    let change = &doc.get_changes(&[])[0];
    assert_eq!(
        change.message(),
        Some(format!("create transcript {SESSION}").as_str())
    );
    assert!(change.timestamp() > 0, "changes carry a real time");
    assert_eq!(kind(&doc, &ROOT, "schema"), "Int");
    assert_eq!(kind(&doc, &ROOT, "session_id"), "Str");
    assert_eq!(kind(&doc, &ROOT, "feature_id"), "Str");
    assert_eq!(kind(&doc, &ROOT, "messages"), "List");
    let read = transcript::read(&doc).unwrap();
    assert_eq!(read.schema, transcript::SCHEMA_VERSION);
    assert_eq!(read.session_id, SESSION);
    assert_eq!(read.feature_id, FEATURE);
    assert!(read.messages.is_empty());
}

#[test]
fn constructor_refuses_bad_ids() {
    for (session_id, feature_id, field) in [
        ("ses_short", FEATURE, "session_id"),
        (FEATURE, FEATURE, "session_id"),
        (SESSION, "ftr_ABCDEFGHIJKLMNOPQRST", "feature_id"),
        (SESSION, SESSION, "feature_id"),
    ] {
        let err = transcript::new_transcript_document(&NewTranscript {
            session_id: session_id.into(),
            feature_id: feature_id.into(),
        })
        .unwrap_err();
        assert!(
            matches!(&err, SchemaError::InvalidId { field: f, .. } if *f == field),
            "{err:?}"
        );
    }
}

#[test]
fn sample_reads_back_field_by_field() {
    let doc = sample();
    let read = transcript::read(&doc).unwrap();
    let expected = vec![
        Message {
            id: "msg_001".into(),
            role: Role::User,
            author: Some("alice".into()),
            queue_entry: Some("q_firstprompt2345678ab".into()),
            created_at: T0,
            parts: vec![Part {
                id: "prt_001".into(),
                kind: PartKind::Text,
                text: Some("Add a login page".into()),
                ..Part::default()
            }],
            finish: None,
            error: None,
            usage: None,
        },
        Message {
            id: "msg_002".into(),
            role: Role::Assistant,
            author: None,
            queue_entry: None,
            created_at: T0,
            parts: vec![
                Part {
                    id: "prt_002".into(),
                    kind: PartKind::Step,
                    ..Part::default()
                },
                Part {
                    id: "prt_003".into(),
                    kind: PartKind::Reasoning,
                    text: Some("The user wants a form.".into()),
                    ..Part::default()
                },
                Part {
                    id: "prt_004".into(),
                    kind: PartKind::Tool,
                    tool: Some("bash".into()),
                    state: Some(ToolState::Completed),
                    input: Some(r#"{"command":"cargo test"}"#.into()),
                    output: Some("ok".into()),
                    ..Part::default()
                },
                Part {
                    id: "prt_005".into(),
                    kind: PartKind::Tool,
                    tool: Some("bash".into()),
                    state: Some(ToolState::Error),
                    input: Some(r#"{"command":"cargo test"}"#.into()),
                    error: Some("permission denied".into()),
                    ..Part::default()
                },
                Part {
                    id: "prt_006".into(),
                    kind: PartKind::Text,
                    text: Some("Café ☕ done 🚀".into()),
                    ..Part::default()
                },
            ],
            finish: Some("tool-calls".into()),
            error: None,
            usage: Some(Usage {
                input_tokens: 1200,
                output_tokens: 340,
                cost_usd: 0.0125,
            }),
        },
    ];
    assert_eq!(read.messages, expected);

    // Representation: prose is Text, machine values are scalars.
    let messages = obj(&doc, &ROOT, "messages");
    let m2 = obj(&doc, &messages, 1);
    assert_eq!(kind(&doc, &m2, "id"), "Str");
    assert_eq!(kind(&doc, &m2, "role"), "Str");
    assert_eq!(kind(&doc, &m2, "created_at"), "Int");
    assert_eq!(kind(&doc, &m2, "finish"), "Str");
    assert_eq!(kind(&doc, &m2, "author"), "missing");
    let usage = obj(&doc, &m2, "usage");
    assert_eq!(kind(&doc, &usage, "input_tokens"), "Int");
    assert_eq!(kind(&doc, &usage, "cost_usd"), "F64");
    let parts = obj(&doc, &m2, "parts");
    let step = obj(&doc, &parts, 0);
    assert_eq!(kind(&doc, &step, "type"), "Str");
    assert_eq!(kind(&doc, &step, "text"), "missing");
    assert_eq!(kind(&doc, &obj(&doc, &parts, 1), "text"), "Text");
    let tool = obj(&doc, &parts, 2);
    for key in ["tool", "state", "input", "output"] {
        assert_eq!(kind(&doc, &tool, key), "Str", "{key}");
    }
    assert_eq!(kind(&doc, &tool, "truncated"), "missing");
}

#[test]
fn json_has_the_document_shape() {
    let doc = sample();
    let json = serde_json::to_value(transcript::read(&doc).unwrap()).unwrap();
    assert_eq!(json["schema"], json!(1));
    assert_eq!(json["session_id"], json!(SESSION));
    let user = &json["messages"][0];
    assert_eq!(user["role"], json!("user"));
    assert_eq!(user["author"], json!("alice"));
    assert!(user.get("finish").is_none(), "absent fields are left out");
    assert!(user.get("usage").is_none());
    let parts = &json["messages"][1]["parts"];
    assert_eq!(parts[0], json!({ "id": "prt_002", "type": "step" }));
    assert_eq!(parts[2]["state"], json!("completed"));
    assert!(parts[2].get("truncated").is_none());
    assert_eq!(
        json["messages"][1]["usage"],
        json!({ "input_tokens": 1200, "output_tokens": 340, "cost_usd": 0.0125 })
    );
}

#[test]
fn messages_are_inserted_in_id_order() {
    // One change per upsert, as the dispatcher learns about them.
    let mut doc = new_doc();
    for id in ["msg_3", "msg_1", "msg_2"] {
        edit(&mut doc, |tx| {
            transcript::upsert_message(tx, &msg(id, Role::Assistant))
        });
    }
    assert_eq!(transcript::message_ids(&doc), ["msg_1", "msg_2", "msg_3"]);

    // In one transaction, and around ids that sort in ASCII order
    // ('-' < digits < uppercase < '_' < lowercase).
    let mut doc = new_doc();
    edit(&mut doc, |tx| {
        for id in ["msg_b", "msg_A", "msg_9", "msg-1", "msg_a", "msg_0"] {
            transcript::upsert_message(tx, &msg(id, Role::Assistant))?;
        }
        Ok(())
    });
    assert_eq!(
        transcript::message_ids(&doc),
        ["msg-1", "msg_0", "msg_9", "msg_A", "msg_a", "msg_b"]
    );
    let read = transcript::read(&doc).unwrap();
    let ids: Vec<_> = read.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, transcript::message_ids(&doc));
}

#[test]
fn parts_are_inserted_in_id_order() {
    let mut doc = new_doc();
    edit(&mut doc, |tx| {
        transcript::upsert_message(tx, &msg("msg_1", Role::Assistant))
    });
    for id in ["prt_3", "prt_1", "prt_2"] {
        edit(&mut doc, |tx| {
            transcript::upsert_part(tx, "msg_1", &text_part(id, id))
        });
    }
    let m = transcript::find_message(&doc, "msg_1").unwrap();
    assert_eq!(part_ids(&m), ["prt_1", "prt_2", "prt_3"]);
    let texts: Vec<_> = m.parts.iter().map(|p| p.text.as_deref().unwrap()).collect();
    assert_eq!(texts, ["prt_1", "prt_2", "prt_3"]);
    // Updating a middle part keeps the order and the count.
    edit(&mut doc, |tx| {
        transcript::upsert_part(tx, "msg_1", &text_part("prt_2", "changed"))
    });
    let m = transcript::find_message(&doc, "msg_1").unwrap();
    assert_eq!(part_ids(&m), ["prt_1", "prt_2", "prt_3"]);
    assert_eq!(m.parts[1].text.as_deref(), Some("changed"));
}

#[test]
fn repeating_every_upsert_commits_nothing() {
    let mut doc = sample();
    let heads = doc.get_heads();
    let changes = doc.get_changes(&[]).len();
    let replay = |tx: &mut Transaction<'_>| {
        // The same upserts as `sample`, in another order.
        transcript::upsert_part(tx, "msg_002", &text_part("prt_006", "Café ☕ done 🚀"))?;
        transcript::upsert_message(
            tx,
            &MessageUpsert {
                finish: Some("tool-calls".into()),
                usage: Some(Usage {
                    input_tokens: 1200,
                    output_tokens: 340,
                    cost_usd: 0.0125,
                }),
                ..msg("msg_002", Role::Assistant)
            },
        )?;
        transcript::upsert_part(
            tx,
            "msg_002",
            &tool_part("prt_004", ToolState::Completed, Some("ok")),
        )?;
        transcript::upsert_part(
            tx,
            "msg_002",
            &PartUpsert {
                error: Some("permission denied".into()),
                ..tool_part("prt_005", ToolState::Error, None)
            },
        )?;
        transcript::upsert_message(
            tx,
            &MessageUpsert {
                author: Some("alice".into()),
                queue_entry: Some("q_firstprompt2345678ab".into()),
                ..msg("msg_001", Role::User)
            },
        )?;
        transcript::upsert_part(tx, "msg_001", &text_part("prt_001", "Add a login page"))?;
        // Fewer fields than stored: nothing is cleared either.
        transcript::upsert_message(tx, &msg("msg_002", Role::Assistant))?;
        transcript::upsert_part(
            tx,
            "msg_002",
            &PartUpsert {
                id: "prt_004".into(),
                kind: PartKind::Tool,
                ..PartUpsert::default()
            },
        )?;
        assert_eq!(tx.pending_ops(), 0);
        Ok(())
    };
    assert_eq!(edit(&mut doc, replay), None, "no change is recorded");
    assert_eq!(doc.get_heads(), heads);
    assert_eq!(doc.get_changes(&[]).len(), changes);

    // The same on an AutoCommit.
    let mut auto = AutoCommit::load(&sample().save()).unwrap();
    let heads = auto.get_heads();
    transcript::upsert_part(
        &mut auto,
        "msg_002",
        &text_part("prt_006", "Café ☕ done 🚀"),
    )
    .unwrap();
    transcript::upsert_message(&mut auto, &msg("msg_002", Role::Assistant)).unwrap();
    assert_eq!(auto.pending_ops(), 0);
    assert_eq!(auto.commit(), None);
    assert_eq!(auto.get_heads(), heads);
}

#[test]
fn changed_fields_are_updated_and_text_is_diffed() {
    let mut doc = sample();
    let long = "word ".repeat(200);
    edit(&mut doc, |tx| {
        transcript::upsert_part(tx, "msg_002", &text_part("prt_006", &long))
    });
    // Appending a few characters to settled text costs a few operations.
    let mut tx = doc.transaction();
    transcript::upsert_part(
        &mut tx,
        "msg_002",
        &text_part("prt_006", &format!("{long}end")),
    )
    .unwrap();
    assert_eq!(tx.pending_ops(), 3);
    tx.commit();

    edit(&mut doc, |tx| {
        transcript::upsert_message(
            tx,
            &MessageUpsert {
                finish: Some("stop".into()),
                error: Some("rate limited".into()),
                usage: Some(Usage {
                    input_tokens: 1200,
                    output_tokens: 400,
                    cost_usd: 0.02,
                }),
                created_at: T0 + 5,
                ..msg("msg_002", Role::Assistant)
            },
        )?;
        transcript::upsert_part(
            tx,
            "msg_002",
            &PartUpsert {
                tool: None,
                input: None,
                ..tool_part("prt_004", ToolState::Running, Some("partial"))
            },
        )
    });
    let m = transcript::find_message(&doc, "msg_002").unwrap();
    assert_eq!(m.finish.as_deref(), Some("stop"));
    assert_eq!(m.error.as_deref(), Some("rate limited"));
    assert_eq!(m.created_at, T0 + 5);
    assert_eq!(m.usage.as_ref().unwrap().output_tokens, 400);
    assert_eq!(m.usage.as_ref().unwrap().cost_usd, 0.02);
    assert_eq!(
        m.parts[4].text.as_deref(),
        Some(format!("{long}end").as_str())
    );
    let tool = transcript::find_part(&doc, "msg_002", "prt_004").unwrap();
    assert_eq!(tool.state, Some(ToolState::Running));
    assert_eq!(tool.output.as_deref(), Some("partial"));
    assert_eq!(tool.tool.as_deref(), Some("bash"), "None leaves it alone");
    assert_eq!(tool.input.as_deref(), Some(r#"{"command":"cargo test"}"#));
    assert_eq!(part_ids(&m).len(), 5);
}

#[test]
fn output_is_truncated_by_characters() {
    let mut doc = sample();
    // 4000 two-byte characters fit; one more four-byte character does not.
    let fits = "é".repeat(MAX_OUTPUT_CHARS);
    let long = format!("{fits}🚀 and more");
    edit(&mut doc, |tx| {
        transcript::upsert_part(
            tx,
            "msg_002",
            &tool_part("prt_004", ToolState::Completed, Some(&fits)),
        )
    });
    let p = transcript::find_part(&doc, "msg_002", "prt_004").unwrap();
    assert_eq!(p.output.as_deref(), Some(fits.as_str()));
    assert!(!p.truncated);

    edit(&mut doc, |tx| {
        transcript::upsert_part(
            tx,
            "msg_002",
            &tool_part("prt_004", ToolState::Completed, Some(&long)),
        )
    });
    let p = transcript::find_part(&doc, "msg_002", "prt_004").unwrap();
    assert_eq!(p.output.as_deref(), Some(fits.as_str()));
    assert_eq!(p.output.as_ref().unwrap().chars().count(), MAX_OUTPUT_CHARS);
    assert!(p.truncated);
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["truncated"], json!(true));

    // Writing the same long output again is a no-op.
    let replay = edit(&mut doc, |tx| {
        transcript::upsert_part(
            tx,
            "msg_002",
            &tool_part("prt_004", ToolState::Completed, Some(&long)),
        )
    });
    assert_eq!(replay, None);

    // A short output clears the flag.
    edit(&mut doc, |tx| {
        transcript::upsert_part(
            tx,
            "msg_002",
            &tool_part("prt_004", ToolState::Completed, Some("ok")),
        )
    });
    let p = transcript::find_part(&doc, "msg_002", "prt_004").unwrap();
    assert_eq!(p.output.as_deref(), Some("ok"));
    assert!(!p.truncated);

    // An output over MAX_TEXT_BYTES is cut, not refused.
    let huge = "x".repeat(MAX_TEXT_BYTES + 1);
    edit(&mut doc, |tx| {
        transcript::upsert_part(
            tx,
            "msg_002",
            &tool_part("prt_004", ToolState::Completed, Some(&huge)),
        )
    });
    let p = transcript::find_part(&doc, "msg_002", "prt_004").unwrap();
    assert_eq!(p.output.unwrap().len(), MAX_OUTPUT_CHARS);
    assert!(p.truncated);
}

#[test]
fn unknown_kinds_and_states_round_trip() {
    let mut doc = sample();
    edit(&mut doc, |tx| {
        transcript::upsert_part(
            tx,
            "msg_002",
            &PartUpsert {
                id: "prt_007".into(),
                kind: PartKind::from("patch"),
                state: Some(ToolState::from("awaiting-approval")),
                ..PartUpsert::default()
            },
        )?;
        transcript::upsert_message(tx, &msg("msg_003", Role::from("system")))
    });
    let read = transcript::read(&doc).unwrap();
    let p = &read.messages[1].parts[5];
    assert_eq!(p.kind, PartKind::Unknown("patch".into()));
    assert_eq!(
        p.state,
        Some(ToolState::Unknown("awaiting-approval".into()))
    );
    assert_eq!(read.messages[2].role, Role::Unknown("system".into()));
    let json = serde_json::to_value(p).unwrap();
    assert_eq!(json["type"], json!("patch"));
    assert_eq!(json["state"], json!("awaiting-approval"));
    // And back through serde.
    let back: Part = serde_json::from_value(json).unwrap();
    assert_eq!(&back, p);
}

#[test]
fn strings_read_as_text_or_scalar() {
    // Written the way JS Automerge 3 writes plain strings: everything Text,
    // and a text part whose text is a scalar (an older or foreign writer).
    let mut doc = AutoCommit::new();
    let put_text = |doc: &mut AutoCommit, obj: &ObjId, key: &str, s: &str| {
        let t = doc.put_object(obj, key, ObjType::Text).unwrap();
        doc.splice_text(&t, 0, 0, s).unwrap();
    };
    doc.put(ROOT, "schema", 1_u64).unwrap(); // Uint: any numeric type reads
    put_text(&mut doc, &ROOT, "session_id", SESSION);
    put_text(&mut doc, &ROOT, "feature_id", FEATURE);
    let messages = doc.put_object(ROOT, "messages", ObjType::List).unwrap();
    let m = doc.insert_object(&messages, 0, ObjType::Map).unwrap();
    put_text(&mut doc, &m, "id", "msg_1");
    put_text(&mut doc, &m, "role", "user");
    put_text(&mut doc, &m, "author", "alice");
    doc.put(&m, "created_at", T0 as f64).unwrap();
    let parts = doc.put_object(&m, "parts", ObjType::List).unwrap();
    let p = doc.insert_object(&parts, 0, ObjType::Map).unwrap();
    put_text(&mut doc, &p, "id", "prt_1");
    put_text(&mut doc, &p, "type", "text");
    doc.put(&p, "text", "scalar text").unwrap();
    let p2 = doc.insert_object(&parts, 1, ObjType::Map).unwrap();
    put_text(&mut doc, &p2, "id", "prt_2");
    put_text(&mut doc, &p2, "type", "tool");
    put_text(&mut doc, &p2, "state", "completed");
    put_text(&mut doc, &p2, "output", "Text output");
    doc.commit();

    let read = transcript::read(&doc).unwrap();
    assert_eq!(read.session_id, SESSION);
    let m0 = &read.messages[0];
    assert_eq!((m0.id.as_str(), &m0.role), ("msg_1", &Role::User));
    assert_eq!(m0.author.as_deref(), Some("alice"));
    assert_eq!(m0.created_at, T0);
    assert_eq!(m0.parts[0].text.as_deref(), Some("scalar text"));
    assert_eq!(m0.parts[1].state, Some(ToolState::Completed));
    assert_eq!(m0.parts[1].output.as_deref(), Some("Text output"));

    // The writers find Text ids, and treat equal values as equal whatever
    // their representation.
    let heads = doc.get_heads();
    transcript::upsert_message(
        &mut doc,
        &MessageUpsert {
            author: Some("alice".into()),
            ..msg("msg_1", Role::User)
        },
    )
    .unwrap();
    transcript::upsert_part(&mut doc, "msg_1", &text_part("prt_1", "scalar text")).unwrap();
    transcript::upsert_part(
        &mut doc,
        "msg_1",
        &PartUpsert {
            id: "prt_2".into(),
            kind: PartKind::Tool,
            state: Some(ToolState::Completed),
            output: Some("Text output".into()),
            ..PartUpsert::default()
        },
    )
    .unwrap();
    assert_eq!(doc.pending_ops(), 0);
    assert_eq!(doc.commit(), None);
    assert_eq!(doc.get_heads(), heads);

    // A changed text turns the scalar into Text with the new content.
    transcript::upsert_part(
        &mut doc,
        "msg_1",
        &text_part("prt_1", "scalar text, edited"),
    )
    .unwrap();
    doc.commit();
    assert_eq!(kind(&doc, &p, "text"), "Text");
    assert_eq!(
        transcript::find_part(&doc, "msg_1", "prt_1")
            .unwrap()
            .text
            .as_deref(),
        Some("scalar text, edited")
    );
}

#[test]
fn malformed_items_are_skipped() {
    let mut doc = AutoCommit::load(&sample().save()).unwrap();
    let messages = obj(&doc, &ROOT, "messages");
    doc.insert(&messages, 0, "not a message").unwrap();
    let no_id = doc.insert_object(&messages, 1, ObjType::Map).unwrap();
    doc.put(&no_id, "role", "user").unwrap();
    let m2 = obj(&doc, &messages, 3);
    let parts = obj(&doc, &m2, "parts");
    doc.insert(&parts, 2, 42_i64).unwrap();
    let bad_part = doc.insert_object(&parts, 0, ObjType::Map).unwrap();
    doc.put(&bad_part, "id", 7_i64).unwrap();
    // A message whose parts are not a list, and ill-typed fields.
    let m3 = doc.insert_object(&messages, 4, ObjType::Map).unwrap();
    doc.put(&m3, "id", "msg_003").unwrap();
    doc.put(&m3, "parts", "nope").unwrap();
    doc.put(&m3, "created_at", "yesterday").unwrap();
    doc.put(&m3, "usage", 5_i64).unwrap();
    doc.commit();

    let read = transcript::read(&doc).unwrap();
    let ids: Vec<_> = read.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["msg_001", "msg_002", "msg_003"]);
    assert_eq!(transcript::message_ids(&doc), ids);
    assert_eq!(read.messages[1].parts.len(), 5);
    assert_eq!(read.messages[2].parts, vec![]);
    assert_eq!(read.messages[2].created_at, 0);
    assert_eq!(read.messages[2].usage, None);

    // Writers step over the junk and keep the order.
    transcript::upsert_message(&mut doc, &msg("msg_000", Role::User)).unwrap();
    transcript::upsert_message(&mut doc, &msg("msg_0025", Role::User)).unwrap();
    transcript::upsert_part(&mut doc, "msg_003", &text_part("prt_1", "x")).unwrap();
    transcript::upsert_part(&mut doc, "msg_002", &text_part("prt_0035", "y")).unwrap();
    doc.commit();
    assert_eq!(
        transcript::message_ids(&doc),
        ["msg_000", "msg_001", "msg_002", "msg_0025", "msg_003"]
    );
    let m = transcript::find_message(&doc, "msg_002").unwrap();
    assert_eq!(
        part_ids(&m),
        [
            "prt_002", "prt_003", "prt_0035", "prt_004", "prt_005", "prt_006"
        ]
    );
    assert_eq!(
        part_ids(&transcript::find_message(&doc, "msg_003").unwrap()),
        ["prt_1"]
    );
}

#[test]
fn concurrent_inserts_of_one_id_read_as_one() {
    // Two writers (which Canopy avoids: only the server writes) insert the
    // same message concurrently. With these actors the merge keeps the list
    // sorted: [msg_1 (a), msg_1 (b), msg_2 (b)].
    let base = new_doc();
    let mut a = base.fork().with_actor(ActorId::from([0xff; 16]));
    let mut b = base.fork().with_actor(ActorId::from([0x01; 16]));
    edit(&mut a, |tx| {
        transcript::upsert_message(tx, &msg("msg_1", Role::User))
    });
    edit(&mut b, |tx| {
        transcript::upsert_message(tx, &msg("msg_1", Role::User))?;
        transcript::upsert_message(tx, &msg("msg_2", Role::Assistant))
    });
    a.merge(&mut b).unwrap();
    let messages = obj(&a, &ROOT, "messages");
    assert_eq!(a.length(&messages), 3, "the merge keeps both copies");
    assert_eq!(a.object_type(obj(&a, &messages, 0)).unwrap(), ObjType::Map);
    assert_eq!(transcript::message_ids(&a), ["msg_1", "msg_2"]);
    assert_eq!(transcript::read(&a).unwrap().messages.len(), 2);
    // The writer updates the copy readers show.
    edit(&mut a, |tx| {
        transcript::upsert_message(
            tx,
            &MessageUpsert {
                finish: Some("stop".into()),
                ..msg("msg_1", Role::User)
            },
        )
    });
    assert_eq!(
        transcript::find_message(&a, "msg_1")
            .unwrap()
            .finish
            .as_deref(),
        Some("stop")
    );
    assert_eq!(
        transcript::read(&a).unwrap().messages[0].finish.as_deref(),
        Some("stop")
    );
}

#[test]
fn bad_input_is_refused_before_writing() {
    let mut doc = sample();
    let too_long = "m".repeat(transcript::MAX_ID_BYTES + 1);
    for bad in ["", "msg 1", "msg/1", "msg_é", too_long.as_str()] {
        let err = refused(&mut doc, |tx| {
            transcript::upsert_message(tx, &msg(bad, Role::User))
        });
        assert!(
            matches!(
                err,
                SchemaError::InvalidId {
                    field: "message_id",
                    ..
                }
            ),
            "{bad:?}: {err:?}"
        );
        let err = refused(&mut doc, |tx| {
            transcript::upsert_part(tx, "msg_001", &text_part(bad, "x"))
        });
        assert!(
            matches!(
                err,
                SchemaError::InvalidId {
                    field: "part_id",
                    ..
                }
            ),
            "{bad:?}: {err:?}"
        );
        let err = refused(&mut doc, |tx| {
            transcript::upsert_part(tx, bad, &text_part("prt_9", "x"))
        });
        assert!(
            matches!(
                err,
                SchemaError::InvalidId {
                    field: "message_id",
                    ..
                }
            ),
            "{bad:?}: {err:?}"
        );
    }
    let err = refused(&mut doc, |tx| {
        transcript::upsert_message(
            tx,
            &MessageUpsert {
                author: Some("al ice".into()),
                ..msg("msg_9", Role::User)
            },
        )
    });
    assert!(
        matches!(
            err,
            SchemaError::InvalidId {
                field: "author",
                ..
            }
        ),
        "{err:?}"
    );
    let err = refused(&mut doc, |tx| {
        transcript::upsert_message(
            tx,
            &MessageUpsert {
                queue_entry: Some("q_nope".into()),
                ..msg("msg_9", Role::User)
            },
        )
    });
    assert!(
        matches!(
            err,
            SchemaError::InvalidId {
                field: "queue_entry",
                ..
            }
        ),
        "{err:?}"
    );
    let err = refused(&mut doc, |tx| {
        transcript::upsert_message(
            tx,
            &MessageUpsert {
                usage: Some(Usage {
                    cost_usd: f64::NAN,
                    ..Usage::default()
                }),
                ..msg("msg_9", Role::Assistant)
            },
        )
    });
    assert!(
        matches!(
            err,
            SchemaError::InvalidValue {
                field: "usage.cost_usd",
                ..
            }
        ),
        "{err:?}"
    );

    // Text over 1 MiB (bytes) is refused; exactly 1 MiB is accepted.
    let big = "é".repeat(MAX_TEXT_BYTES / 2 + 1);
    let err = refused(&mut doc, |tx| {
        transcript::upsert_part(tx, "msg_002", &text_part("prt_9", &big))
    });
    assert!(
        matches!(err, SchemaError::InvalidValue { field: "text", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("1 MiB"), "{err}");
    let err = refused(&mut doc, |tx| {
        transcript::upsert_part(
            tx,
            "msg_002",
            &PartUpsert {
                input: Some(big.clone()),
                ..tool_part("prt_9", ToolState::Running, None)
            },
        )
    });
    assert!(
        matches!(err, SchemaError::InvalidValue { field: "input", .. }),
        "{err:?}"
    );
    // (Checked on `input`, a scalar: 1 MiB of Text is slow in debug builds.)
    edit(&mut doc, |tx| {
        transcript::upsert_part(
            tx,
            "msg_002",
            &PartUpsert {
                input: Some("a".repeat(MAX_TEXT_BYTES)),
                ..tool_part("prt_9", ToolState::Running, None)
            },
        )
    });

    // A part of a message that does not exist.
    let err = refused(&mut doc, |tx| {
        transcript::upsert_part(tx, "msg_404", &text_part("prt_1", "x"))
    });
    assert!(
        matches!(&err, SchemaError::NotFound { kind: "message", id } if id == "msg_404"),
        "{err:?}"
    );
}

#[test]
fn read_at_shows_the_past() {
    let mut doc = new_doc();
    edit(&mut doc, |tx| {
        transcript::upsert_message(tx, &msg("msg_2", Role::Assistant))
    });
    edit(&mut doc, |tx| {
        transcript::upsert_part(tx, "msg_2", &text_part("prt_1", "draft"))
    });
    let before = doc.get_heads();
    edit(&mut doc, |tx| {
        transcript::upsert_part(tx, "msg_2", &text_part("prt_1", "final answer"))?;
        transcript::upsert_message(tx, &msg("msg_1", Role::User))
    });

    let then = transcript::read_at(&doc, &before).unwrap();
    assert_eq!(then.messages.len(), 1);
    assert_eq!(then.messages[0].parts[0].text.as_deref(), Some("draft"));
    let first = transcript::read_at(&doc, &doc.get_heads()[..0]).unwrap_err();
    assert!(
        matches!(
            first,
            SchemaError::InvalidValue {
                field: "schema",
                ..
            }
        ),
        "{first:?}"
    );
    let created = doc.get_changes(&[])[0].hash();
    assert!(
        transcript::read_at(&doc, &[created])
            .unwrap()
            .messages
            .is_empty()
    );
    let now = transcript::read(&doc).unwrap();
    assert_eq!(
        now.messages[1].parts[0].text.as_deref(),
        Some("final answer")
    );
    assert_eq!(transcript::read_at(&doc, &doc.get_heads()).unwrap(), now);

    let unknown = ChangeHash([7; 32]);
    assert!(matches!(
        transcript::read_at(&doc, &[unknown]),
        Err(SchemaError::UnknownHeads(h)) if h == vec![unknown]
    ));
}

#[test]
fn only_transcripts_are_read_or_written() {
    // A Feature document also has `schema: 1`, but no `session_id`.
    let mut feature_doc = feature::new_feature_document(&feature::NewFeature {
        feature_id: FEATURE.into(),
        title: "Title".into(),
        description: String::new(),
        repo: None,
        created_by: "alice".into(),
        created_by_name: "Alice".into(),
        created_at: T0,
    })
    .unwrap();
    assert!(matches!(
        transcript::read(&feature_doc),
        Err(SchemaError::InvalidValue {
            field: "session_id",
            ..
        })
    ));
    let err = refused(&mut feature_doc, |tx| {
        transcript::upsert_message(tx, &msg("msg_1", Role::User))
    });
    assert!(matches!(err, SchemaError::InvalidValue { .. }), "{err:?}");

    // An empty document.
    assert!(matches!(
        transcript::read(&Automerge::new()),
        Err(SchemaError::InvalidValue {
            field: "schema",
            ..
        })
    ));

    // A newer transcript.
    let mut newer = sample();
    edit(&mut newer, |tx| {
        tx.put(ROOT, "schema", 2_i64)?;
        Ok(())
    });
    assert!(matches!(
        transcript::read(&newer),
        Err(SchemaError::UnsupportedSchema {
            found: 2,
            supported: 1
        })
    ));
    let err = refused(&mut newer, |tx| {
        transcript::upsert_part(tx, "msg_001", &text_part("prt_001", "changed"))
    });
    assert!(
        matches!(err, SchemaError::UnsupportedSchema { .. }),
        "{err:?}"
    );
    // Partial readers do not check (the server checks on load).
    assert_eq!(transcript::message_ids(&newer), ["msg_001", "msg_002"]);
}

#[test]
fn partial_readers() {
    let doc = sample();
    assert_eq!(transcript::message_ids(&doc), ["msg_001", "msg_002"]);
    let full = transcript::read(&doc).unwrap();
    assert_eq!(
        transcript::find_message(&doc, "msg_002").as_ref(),
        Some(&full.messages[1])
    );
    assert_eq!(transcript::find_message(&doc, "msg_404"), None);
    assert_eq!(
        transcript::find_part(&doc, "msg_002", "prt_004").as_ref(),
        Some(&full.messages[1].parts[2])
    );
    assert_eq!(transcript::find_part(&doc, "msg_001", "prt_004"), None);
    assert_eq!(transcript::find_part(&doc, "msg_404", "prt_004"), None);
    assert!(transcript::message_ids(&Automerge::new()).is_empty());
}

#[test]
fn random_arrival_order_stays_sorted() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut ids: Vec<String> = (0..100).map(|i| format!("msg_{i:04}")).collect();
    let mut doc = AutoCommit::load(&new_doc().save()).unwrap();
    let messages = obj(&doc, &ROOT, "messages");
    // Junk a foreign writer might leave, which readers and writers skip.
    doc.insert(&messages, 0, "junk").unwrap();
    ids.shuffle(&mut rng);
    for (n, id) in ids.iter().enumerate() {
        transcript::upsert_message(&mut doc, &msg(id, Role::Assistant)).unwrap();
        for part in ["prt_b", "prt_a", "prt_c"].choose_multiple(&mut rng, 2) {
            transcript::upsert_part(&mut doc, id, &text_part(part, id)).unwrap();
        }
        if n % 40 == 0 {
            let at = rng.random_range(0..=doc.length(&messages));
            doc.insert_object(&messages, at, ObjType::Map).unwrap();
        }
        if rng.random_bool(0.3) {
            doc.commit();
        }
    }
    doc.commit();
    ids.sort();
    assert_eq!(transcript::message_ids(&doc), ids);
    let read = transcript::read(&doc).unwrap();
    for m in &read.messages {
        let parts = part_ids(m);
        assert!(parts.is_sorted(), "{parts:?}");
        assert_eq!(parts.len(), 2);
    }

    // Everything again, in another order: nothing changes.
    ids.shuffle(&mut rng);
    for id in &ids {
        transcript::upsert_message(&mut doc, &msg(id, Role::Assistant)).unwrap();
    }
    for m in &read.messages {
        for p in &m.parts {
            transcript::upsert_part(&mut doc, &m.id, &text_part(&p.id, &m.id)).unwrap();
        }
    }
    assert_eq!(doc.pending_ops(), 0);
}

#[test]
fn total_usage_sums_assistant_messages_once_each() {
    let mut doc = sample();
    assert_eq!(
        transcript::total_usage(&doc),
        Usage {
            input_tokens: 1200,
            output_tokens: 340,
            cost_usd: 0.0125,
        }
    );
    edit(&mut doc, |tx| {
        transcript::upsert_message(
            tx,
            &MessageUpsert {
                usage: Some(Usage {
                    input_tokens: 10,
                    output_tokens: 5,
                    cost_usd: 0.5,
                }),
                ..msg("msg_003", Role::Assistant)
            },
        )?;
        // A user message never counts, whatever it carries.
        transcript::upsert_message(
            tx,
            &MessageUpsert {
                usage: Some(Usage {
                    input_tokens: 1_000_000,
                    output_tokens: 1,
                    cost_usd: 9.0,
                }),
                ..msg("msg_004", Role::User)
            },
        )
    })
    .unwrap();
    let total = transcript::total_usage(&doc);
    assert_eq!(total.input_tokens, 1210);
    assert_eq!(total.output_tokens, 345);
    assert!((total.cost_usd - 0.5125).abs() < 1e-9);
    // A second copy of msg_003 (a concurrent insert elsewhere) counts once.
    let messages = match doc.get(ROOT, "messages").unwrap() {
        Some((Value::Object(ObjType::List), id)) => id,
        other => panic!("messages: {other:?}"),
    };
    let mut tx = doc.transaction();
    let dup = tx.insert_object(&messages, 0, ObjType::Map).unwrap();
    tx.put(&dup, "id", "msg_003").unwrap();
    tx.put(&dup, "role", "assistant").unwrap();
    let u = tx.put_object(&dup, "usage", ObjType::Map).unwrap();
    tx.put(&u, "input_tokens", 99_i64).unwrap();
    tx.commit();
    // The first copy in the list is the one read, as everywhere else: the
    // inserted one, without output tokens or cost.
    let total = transcript::total_usage(&doc);
    assert_eq!(total.input_tokens, 1200 + 99);
    assert_eq!(total.output_tokens, 340);
    assert!((total.cost_usd - 0.0125).abs() < 1e-9);
}
