//! Hostile and malformed input on `/sync` and the API: each gets a clear
//! error, a healthy peer keeps being served in parallel, and nothing stored
//! changes.

use std::time::Duration;

use canopy::sync::close_code;
use canopy_protocol::wire::{self, MessageType};
use futures::{SinkExt, StreamExt};
use rusqlite::OptionalExtension;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw WebSocket on `/sync`, with a ticket for peer `u:<admin>:<name>`.
async fn raw(sync_url: &str, name: &str) -> Ws {
    let (_, url) = ticket(&base_of(sync_url), TOKEN, name).await;
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn join(ws: &mut Ws, peer: &str) -> String {
    ws.send(Message::Binary(wire::encode_join(peer, &["1"]).into()))
        .await
        .unwrap();
    match within("peer message", ws.next()).await {
        Some(Ok(Message::Binary(b))) => {
            let env = wire::decode_envelope(&b).unwrap();
            assert_eq!(env.kind, MessageType::Peer);
            env.sender_id.unwrap().to_owned()
        }
        other => panic!("expected a peer message, got {other:?}"),
    }
}

/// Read until the server closes; return the `error` message it sent (if
/// any) and the close code and reason.
async fn closed_with(ws: &mut Ws) -> (Option<String>, u16, String) {
    let mut error = None;
    within("the server closes the connection", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    if let Ok(env) = wire::decode_envelope(&b)
                        && env.kind == MessageType::Error
                    {
                        error = env.message.map(str::to_owned);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return (error, code, reason);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("connection broke without a close frame: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    })
    .await
}

/// Digest of everything stored except the chunks of `exclude`.
fn stored_digest(db: &std::path::Path, exclude: &str) -> Vec<(String, Vec<u8>)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT key, data FROM chunks WHERE key NOT LIKE ?1 || '/%' ORDER BY key")
        .unwrap();
    let mut rows: Vec<(String, Vec<u8>)> = stmt
        .query_map([exclude], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let features: Option<String> = conn
        .query_row(
            "SELECT group_concat(feature_id || title || document_id, ',') FROM features",
            [],
            |r| r.get(0),
        )
        .optional()
        .unwrap()
        .flatten();
    rows.push(("features".into(), features.unwrap_or_default().into_bytes()));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sync_input_is_refused_while_a_healthy_peer_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path());
    config.max_message_bytes = 128 * 1024;
    config.sync_rate_limit = 100;
    config.sync_rate_burst = 200;
    let server = start_with(config).await;
    let base = server.url().to_owned();
    let sync = server.sync_url();
    let me = user_id_of(&base, TOKEN).await;
    let p = |name: &str| format!("u:{me}:{name}");
    let (_, doc_a) = create_feature(&base, "A: must not change").await;
    let (feature_b, doc_b) = create_feature(&base, "B: the healthy peer's").await;

    // Make sure A is fully stored, then take the digest.
    let db = dir.path().join("canopy.db");
    let before = stored_digest(&db, &doc_b.to_string());

    // A healthy peer keeps writing to B the whole time.
    let healthy = Peer::connect(&sync, "healthy").await;
    let b = healthy.find(&doc_b).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = {
        let stop = stop.clone();
        let b = b.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.is_cancelled() {
                n += 1;
                b.with_document(|doc| {
                    doc.transact_with(
                        |_| canopy_protocol::ChangeMeta::now("healthy write").commit_options(),
                        |tx| canopy_protocol::feature::set_notes(tx, &format!("healthy write {n}")),
                    )
                    .unwrap();
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        })
    };

    // 1. A text frame.
    let mut ws = raw(&sync, "texter").await;
    ws.send(Message::Text("hello".into())).await.unwrap();
    let (err, code, _) = closed_with(&mut ws).await;
    assert_eq!(code, close_code::UNSUPPORTED_DATA);
    assert!(err.unwrap().contains("text frames"));

    // 2. Random bytes.
    let mut ws = raw(&sync, "random").await;
    ws.send(Message::Binary(vec![0xff, 0x13, 0x37, 0x00, 0x42].into()))
        .await
        .unwrap();
    let (err, code, _) = closed_with(&mut ws).await;
    assert!(
        code == close_code::INVALID_PAYLOAD || code == close_code::PROTOCOL_ERROR,
        "code {code}"
    );
    assert!(err.unwrap().starts_with("malformed message"));

    // 3. Valid CBOR of the wrong shape: an array, then a map without a type,
    //    then a sync message whose senderId is a number.
    for bad in [
        {
            let mut v = Vec::new();
            ciborium::into_writer(&json!([1, 2, 3]), &mut v).unwrap();
            v
        },
        {
            let mut v = Vec::new();
            ciborium::into_writer(&json!({"hello": "world"}), &mut v).unwrap();
            v
        },
        {
            let mut v = Vec::new();
            ciborium::into_writer(
                &json!({"type": "join", "senderId": 7, "supportedProtocolVersions": ["1"]}),
                &mut v,
            )
            .unwrap();
            v
        },
    ] {
        let mut ws = raw(&sync, "shapeless").await;
        ws.send(Message::Binary(bad.into())).await.unwrap();
        let (err, code, reason) = closed_with(&mut ws).await;
        assert_eq!(code, close_code::PROTOCOL_ERROR, "{reason}");
        assert!(err.unwrap().starts_with("malformed message"));
    }

    // 4. A join with an unsupported protocol version.
    let mut ws = raw(&sync, "old-client").await;
    ws.send(Message::Binary(
        wire::encode_join(&p("old-client"), &["0", "2"]).into(),
    ))
    .await
    .unwrap();
    let (err, code, _) = closed_with(&mut ws).await;
    assert_eq!(code, close_code::PROTOCOL_ERROR);
    assert!(err.unwrap().contains("unsupported protocol version"));

    // 5. Sync before join.
    let mut ws = raw(&sync, "early").await;
    let server_peer = server.state().hub().peer_id().to_owned();
    ws.send(Message::Binary(
        wire::encode_sync(
            MessageType::Request,
            "x",
            &server_peer,
            &doc_a.to_string(),
            &[0x42, 0, 0, 0, 0],
        )
        .into(),
    ))
    .await
    .unwrap();
    let (err, code, _) = closed_with(&mut ws).await;
    assert_eq!(code, close_code::PROTOCOL_ERROR);
    assert!(err.unwrap().contains("join"));

    // 6. A frame larger than the configured limit.
    let mut ws = raw(&sync, "big").await;
    join(&mut ws, &p("big")).await;
    let _ = ws.send(Message::Binary(vec![0u8; 200 * 1024].into())).await;
    let (_, code, reason) = closed_with(&mut ws).await;
    assert_eq!(code, close_code::MESSAGE_TOO_BIG, "{reason}");

    // 7. A request for a document id that is not registered: doc-unavailable,
    //    and the connection stays usable.
    let mut ws = raw(&sync, "curious").await;
    let server_peer = join(&mut ws, &p("curious")).await;
    let unknown = samod::DocumentId::new(&mut rand::rng()).to_string();
    let empty_sync = {
        use automerge::sync::SyncDoc;
        automerge::Automerge::new()
            .generate_sync_message(&mut automerge::sync::State::new())
            .unwrap()
            .encode()
    };
    for _ in 0..3 {
        ws.send(Message::Binary(
            wire::encode_sync(
                MessageType::Request,
                &p("curious"),
                &server_peer,
                &unknown,
                &empty_sync,
            )
            .into(),
        ))
        .await
        .unwrap();
        match within("doc-unavailable", ws.next()).await {
            Some(Ok(Message::Binary(b))) => {
                let env = wire::decode_envelope(&b).unwrap();
                assert_eq!(env.kind, MessageType::DocUnavailable);
                assert_eq!(env.document_id, Some(wire::WireDocumentId::Str(&unknown)));
            }
            other => panic!("expected doc-unavailable, got {other:?}"),
        }
    }
    // An invalid document id and a broken sync payload are refused.
    ws.send(Message::Binary(
        wire::encode_sync(
            MessageType::Sync,
            &p("curious"),
            &server_peer,
            "not-a-doc-id",
            &empty_sync,
        )
        .into(),
    ))
    .await
    .unwrap();
    let (err, code, _) = closed_with(&mut ws).await;
    assert_eq!(code, close_code::INVALID_PAYLOAD);
    assert!(err.unwrap().contains("documentId"));

    let mut ws = raw(&sync, "garbler").await;
    let server_peer = join(&mut ws, &p("garbler")).await;
    ws.send(Message::Binary(
        wire::encode_sync(
            MessageType::Sync,
            &p("garbler"),
            &server_peer,
            &doc_a.to_string(),
            b"\x42\xff",
        )
        .into(),
    ))
    .await
    .unwrap();
    let (err, code, _) = closed_with(&mut ws).await;
    assert_eq!(code, close_code::INVALID_PAYLOAD);
    assert!(err.unwrap().contains("sync message"));

    // 8. A storm of requests from one connection.
    let mut ws = raw(&sync, "stormy").await;
    let server_peer = join(&mut ws, &p("stormy")).await;
    let frame = wire::encode_sync(
        MessageType::Request,
        &p("stormy"),
        &server_peer,
        &unknown,
        &empty_sync,
    );
    let storm = async {
        for _ in 0..5_000 {
            if ws
                .send(Message::Binary(frame.clone().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    within("storm sent", storm).await;
    let (err, code, _) = closed_with(&mut ws).await;
    assert_eq!(code, close_code::POLICY_VIOLATION);
    assert!(err.unwrap().contains("rate limit"));

    // 9. A peer that claims someone else's identity after the handshake.
    let mut ws = raw(&sync, "honest").await;
    let server_peer = join(&mut ws, &p("honest")).await;
    ws.send(Message::Binary(
        wire::encode_sync(
            MessageType::Request,
            "impostor",
            &server_peer,
            &doc_a.to_string(),
            &empty_sync,
        )
        .into(),
    ))
    .await
    .unwrap();
    let (err, code, _) = closed_with(&mut ws).await;
    assert_eq!(code, close_code::POLICY_VIOLATION);
    assert!(err.unwrap().contains("peer ID mismatch"));

    // 10. An oversized ephemeral message (it would be relayed to every peer).
    let mut ws = raw(&sync, "shouty").await;
    let server_peer = join(&mut ws, &p("shouty")).await;
    ws.send(Message::Binary(
        wire::encode_ephemeral(
            &p("shouty"),
            &server_peer,
            &doc_b.to_string(),
            "s1",
            1,
            &vec![7u8; 70_000],
        )
        .into(),
    ))
    .await
    .unwrap();
    let (err, code, _) = closed_with(&mut ws).await;
    assert_eq!(code, close_code::MESSAGE_TOO_BIG);
    assert!(err.unwrap().contains("ephemeral"));

    // The healthy peer was served throughout: its writes reached the server.
    stop.cancel();
    let writes = writer.await.unwrap();
    healthy.synced(&b).await;
    let snap = snapshot(&base, &feature_b).await;
    assert_eq!(
        snap["document"]["notes"].as_str().unwrap(),
        format!("healthy write {writes}")
    );
    // …and nothing else that is stored changed.
    let after = stored_digest(&db, &doc_b.to_string());
    assert_eq!(before, after, "hostile input changed stored data");
    // The metrics saw the refusals.
    let text = metrics(&base).await;
    for reason in [
        "text_frame",
        "malformed",
        "unsupported_version",
        "rate_limited",
        "too_big",
    ] {
        assert!(
            text.contains(&format!(
                "canopy_ws_rejections_total{{reason=\"{reason}\"}}"
            )),
            "missing rejection metric {reason}"
        );
    }
    healthy.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_unregistered_document_is_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let peer = Peer::connect(&server.sync_url(), "pusher").await;
    // The peer creates a document locally and offers it to the server.
    let mut doc = automerge::Automerge::new();
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        use automerge::transaction::Transactable;
        tx.put(automerge::ROOT, "smuggled", "yes")?;
        Ok(())
    })
    .unwrap();
    let handle = peer.repo.create(doc).await.unwrap();
    let id = handle.document_id().to_string();
    // Give the peer ample opportunity to push it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let conn = rusqlite::Connection::open(dir.path().join("canopy.db")).unwrap();
    let stored: i64 = conn
        .query_row(
            "SELECT count(*) FROM chunks WHERE key LIKE ?1 || '/%'",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0, "the server stored a document nobody registered");
    // A second peer cannot find it through the server.
    let other = Peer::connect(&server.sync_url(), "other").await;
    let found = within("find", other.repo.find(handle.document_id().clone()))
        .await
        .unwrap();
    assert!(found.is_none());
    peer.stop().await;
    other.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_rest_input_gets_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (feature_id, _) = create_feature(&base, "real").await;
    let client = http();

    async fn expect(resp: reqwest::Response, status: u16, code: &str) -> Value {
        assert_eq!(resp.status().as_u16(), status);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
        body
    }

    // Malformed JSON.
    let r = client
        .post(format!("{base}/api/features"))
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    expect(r, 400, "malformed_json").await;
    // Not JSON at all.
    let r = client
        .post(format!("{base}/api/features"))
        .body("title=x")
        .send()
        .await
        .unwrap();
    expect(r, 415, "unsupported_media_type").await;
    // Missing field.
    let r = client
        .post(format!("{base}/api/features"))
        .json(&json!({"description": "no title"}))
        .send()
        .await
        .unwrap();
    let body = expect(r, 422, "invalid_field").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("title"));
    // Wrong type, unknown field, empty title.
    for bad in [
        json!({"title": 42}),
        json!({"title": "x", "colour": "red"}),
        json!({"title": "   "}),
        json!({"title": "x", "repo": {"url": "not a url"}}),
        json!({"title": "x", "repo": {"url": "https://github.com/a/b.git", "full_clone": "yes"}}),
    ] {
        let r = client
            .post(format!("{base}/api/features"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        expect(r, 422, "invalid_field").await;
    }
    // A 1 MB title.
    let r = client
        .post(format!("{base}/api/features"))
        .json(&json!({"title": "x".repeat(1 << 20)}))
        .send()
        .await
        .unwrap();
    expect(r, 413, "payload_too_large").await;
    // A 1000-character title fits the body limit but not the title limit.
    let r = client
        .post(format!("{base}/api/features"))
        .json(&json!({"title": "x".repeat(1000)}))
        .send()
        .await
        .unwrap();
    expect(r, 422, "invalid_field").await;
    // Unknown feature, malformed id.
    for id in ["ftr_aaaaaaaaaaaaaaaaaaaa", "nope", "../../etc"] {
        let r = client
            .get(format!("{base}/api/features/{id}"))
            .send()
            .await
            .unwrap();
        expect(r, 404, "not_found").await;
    }
    // Sessions and queue: unknown session, empty prompt, oversized prompt.
    let r = client
        .post(format!("{base}/api/features/{feature_id}/queue"))
        .json(&json!({"session_id": "ses_aaaaaaaaaaaaaaaaaaaa", "text": "go"}))
        .send()
        .await
        .unwrap();
    expect(r, 422, "unknown_session").await;
    let sid = create_session(&base, &feature_id, "s").await;
    let r = client
        .post(format!("{base}/api/features/{feature_id}/queue"))
        .json(&json!({"session_id": sid, "text": ""}))
        .send()
        .await
        .unwrap();
    expect(r, 422, "invalid_field").await;
    let r = client
        .post(format!("{base}/api/features/{feature_id}/sessions"))
        .json(&json!({"title": "s2", "depends_on": ["ses_bbbbbbbbbbbbbbbbbbbb"]}))
        .send()
        .await
        .unwrap();
    expect(r, 422, "invalid_field").await;
    // Unknown endpoint and wrong method.
    let r = client
        .get(format!("{base}/api/nothing"))
        .send()
        .await
        .unwrap();
    expect(r, 404, "not_found").await;
    let r = client
        .delete(format!("{base}/api/features"))
        .send()
        .await
        .unwrap();
    expect(r, 405, "method_not_allowed").await;
    // Bad query.
    let r = client
        .get(format!("{base}/api/features?limit=banana"))
        .send()
        .await
        .unwrap();
    expect(r, 400, "bad_query").await;
    // /sync without a ticket, with a bad one, and without a WebSocket upgrade.
    let r = client.get(format!("{base}/sync")).send().await.unwrap();
    expect(r, 401, "ticket_required").await;
    let r = client
        .get(format!("{base}/sync?ticket=forged"))
        .send()
        .await
        .unwrap();
    expect(r, 401, "invalid_ticket").await;
    let (_, url) = ticket(&base, TOKEN, "no-upgrade").await;
    let r = client
        .get(url.replacen("ws://", "http://", 1))
        .send()
        .await
        .unwrap();
    expect(r, 426, "websocket_required").await;

    // The one real feature is intact.
    let snap = snapshot(&base, &feature_id).await;
    assert_eq!(snap["document"]["title"], "real");
    server.stop().await.unwrap();
}
