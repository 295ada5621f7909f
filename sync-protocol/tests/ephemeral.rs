//! Ephemeral messages: CBOR encoding, limits and forward compatibility.
#![allow(clippy::unwrap_used)]

use canopy_protocol::EphemeralError;
use canopy_protocol::ephemeral::{
    AgentOutput, Cursor, Ephemeral, Heartbeat, MAX_MESSAGE_BYTES, OutputKind, Presence,
    PresenceStatus, Refused, Typing,
};
use ciborium::Value as Cbor;

fn cbor(value: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

fn map(entries: &[(&str, Cbor)]) -> Cbor {
    Cbor::Map(
        entries
            .iter()
            .map(|(k, v)| (Cbor::Text((*k).into()), v.clone()))
            .collect(),
    )
}

fn text(s: &str) -> Cbor {
    Cbor::Text(s.into())
}

fn samples() -> Vec<Ephemeral> {
    vec![
        Ephemeral::Presence(Presence {
            user_id: "alice".into(),
            name: Some("Alice".into()),
            status: PresenceStatus::Active,
            session_id: Some("ses_abcdefghijklmnopqrst".into()),
            cursor: Some(Cursor {
                path: "src/main.rs".into(),
                line: 12,
            }),
        }),
        Ephemeral::Presence(Presence {
            user_id: "bob".into(),
            name: None,
            status: PresenceStatus::Away,
            session_id: None,
            cursor: None,
        }),
        Ephemeral::Typing(Typing {
            user_id: "bob".into(),
            session_id: "ses_abcdefghijklmnopqrst".into(),
        }),
        Ephemeral::Heartbeat(Heartbeat {
            session_id: "ses_abcdefghijklmnopqrst".into(),
            sandbox_state: "running".into(),
            at: 1_763_000_000_000,
            opencode_instance: None,
            restarts: None,
        }),
        Ephemeral::AgentOutput(AgentOutput {
            session_id: "ses_abcdefghijklmnopqrst".into(),
            message_id: "msg_1".into(),
            part_id: "prt_1".into(),
            kind: OutputKind::Reasoning,
            text: "Thinking about 🚀".into(),
            seq: 7,
        }),
        Ephemeral::Refused(Refused {
            reason: "read_only".into(),
            message: "viewers cannot change this feature".into(),
        }),
    ]
}

#[test]
fn every_message_round_trips() {
    for msg in samples() {
        let bytes = msg.encode().unwrap();
        assert_eq!(Ephemeral::decode(&bytes).unwrap(), msg);
    }
}

#[test]
fn the_encoding_is_a_flat_snake_case_map() {
    let msg = &samples()[4];
    let value: Cbor = ciborium::from_reader(msg.encode().unwrap().as_slice()).unwrap();
    let want = map(&[
        ("type", text("agent_output")),
        ("session_id", text("ses_abcdefghijklmnopqrst")),
        ("message_id", text("msg_1")),
        ("part_id", text("prt_1")),
        ("kind", text("reasoning")),
        ("text", text("Thinking about 🚀")),
        ("seq", Cbor::Integer(7.into())),
    ]);
    assert_eq!(value, want);
    // Absent optional fields are left out rather than sent as null.
    let value: Cbor = ciborium::from_reader(samples()[1].encode().unwrap().as_slice()).unwrap();
    assert_eq!(value.as_map().unwrap().len(), 3);
}

#[test]
fn decoding_is_lenient_where_it_is_safe() {
    // Unknown fields are ignored; null optionals are absent; unknown enum
    // values are kept.
    let bytes = cbor(&map(&[
        ("type", text("presence")),
        ("user_id", text("carol")),
        ("status", text("dnd")),
        ("cursor", Cbor::Null),
        ("avatar", text("https://example.com/c.png")),
    ]));
    assert_eq!(
        Ephemeral::decode(&bytes).unwrap(),
        Ephemeral::Presence(Presence {
            user_id: "carol".into(),
            name: None,
            status: PresenceStatus::Unknown("dnd".into()),
            session_id: None,
            cursor: None,
        })
    );
}

#[test]
fn unknown_types_decode_as_unknown() {
    let bytes = cbor(&map(&[
        ("type", text("selection")),
        ("range", Cbor::Array(vec![])),
    ]));
    let msg = Ephemeral::decode(&bytes).unwrap();
    assert_eq!(
        msg,
        Ephemeral::Unknown {
            kind: "selection".into()
        }
    );
    assert_eq!(msg.kind(), "selection");
    assert_eq!(
        msg.encode(),
        Err(EphemeralError::EncodeUnknown("selection".into()))
    );
}

#[test]
fn malformed_messages_are_typed_errors() {
    type Check = fn(&EphemeralError) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (vec![], |e| matches!(e, EphemeralError::Cbor(_))),
        (vec![0xff, 0x00], |e| matches!(e, EphemeralError::Cbor(_))),
        (cbor(&text("presence")), |e| {
            *e == EphemeralError::MissingType
        }),
        (cbor(&map(&[("user_id", text("x"))])), |e| {
            *e == EphemeralError::MissingType
        }),
        (cbor(&map(&[("type", Cbor::Integer(1.into()))])), |e| {
            *e == EphemeralError::MissingType
        }),
        (
            cbor(&map(&[("type", text("typing")), ("user_id", text("x"))])),
            |e| matches!(e, EphemeralError::Malformed { kind, .. } if kind == "typing"),
        ),
        (
            cbor(&map(&[
                ("type", text("heartbeat")),
                ("session_id", text("s")),
                ("sandbox_state", text("up")),
                ("at", text("now")),
            ])),
            |e| matches!(e, EphemeralError::Malformed { kind, .. } if kind == "heartbeat"),
        ),
        (
            {
                let mut b = samples()[2].encode().unwrap();
                b.push(0);
                b
            },
            |e| matches!(e, EphemeralError::Cbor(m) if m.contains("trailing")),
        ),
    ];
    for (bytes, check) in cases {
        let err = Ephemeral::decode(&bytes).unwrap_err();
        assert!(check(&err), "{bytes:02x?}: {err}");
    }
}

#[test]
fn the_size_limit_holds_both_ways() {
    let output = |len: usize| {
        Ephemeral::AgentOutput(AgentOutput {
            session_id: "s".into(),
            message_id: "m".into(),
            part_id: "p".into(),
            kind: OutputKind::Text,
            text: "x".repeat(len),
            seq: 0,
        })
    };
    // Find the largest text that fits, then check both sides of the edge.
    let overhead = output(0).encode().unwrap().len() + 4;
    let fits = output(MAX_MESSAGE_BYTES - overhead).encode().unwrap();
    assert!(fits.len() <= MAX_MESSAGE_BYTES);
    Ephemeral::decode(&fits).unwrap();
    assert!(matches!(
        output(MAX_MESSAGE_BYTES).encode(),
        Err(EphemeralError::TooLarge {
            max: MAX_MESSAGE_BYTES,
            ..
        })
    ));
    // Oversized input is refused before it is parsed, even if it is junk.
    let junk = vec![0xffu8; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        Ephemeral::decode(&junk),
        Err(EphemeralError::TooLarge {
            len: MAX_MESSAGE_BYTES + 1,
            max: MAX_MESSAGE_BYTES
        })
    );
}
