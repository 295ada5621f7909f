//! Identity and access, adversarially: credentials, tickets, membership as
//! the only way to see a feature, read-only viewers, live revocation.

use std::time::Duration;

use canopy::sync::close_code;
use canopy_protocol::{
    feature,
    wire::{self, MessageType},
};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// Every route under `/api`, with a body that would be acceptable, so that
/// the only thing missing is the credential. Kept next to the router's
/// definition in `src/http/mod.rs`; an unknown path is checked too, which
/// covers routes this list forgets.
fn api_routes(feature: &str, session: &str) -> Vec<(reqwest::Method, String, Option<Value>)> {
    use reqwest::Method;
    vec![
        (Method::GET, "/api/features".into(), None),
        (
            Method::POST,
            "/api/features".into(),
            Some(json!({"title": "t"})),
        ),
        (Method::GET, format!("/api/features/{feature}"), None),
        (
            Method::POST,
            format!("/api/features/{feature}/sessions"),
            Some(json!({"title": "s"})),
        ),
        (
            Method::POST,
            format!("/api/features/{feature}/queue"),
            Some(json!({"session_id": session, "text": "go"})),
        ),
        (
            Method::GET,
            format!("/api/features/{feature}/members"),
            None,
        ),
        (
            Method::GET,
            format!("/api/features/{feature}/members/admin"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/features/{feature}/members/admin"),
            Some(json!({"role": "owner"})),
        ),
        (
            Method::DELETE,
            format!("/api/features/{feature}/members/admin"),
            None,
        ),
        (Method::GET, format!("/api/features/{feature}/audit"), None),
        (
            Method::GET,
            format!("/api/features/{feature}/history"),
            None,
        ),
        (
            Method::GET,
            format!("/api/features/{feature}/at?heads=00"),
            None,
        ),
        (
            Method::GET,
            format!("/api/features/{feature}/diff?from=00&to=00"),
            None,
        ),
        (
            Method::POST,
            format!("/api/features/{feature}/restore"),
            Some(json!({"heads": "00", "path": "notes"})),
        ),
        (
            Method::GET,
            format!("/api/features/{feature}/sessions/{session}/transcript/history"),
            None,
        ),
        (Method::POST, "/api/sync-ticket".into(), Some(json!({}))),
        (Method::GET, "/api/me".into(), None),
        (Method::GET, "/api/no/such/route".into(), None),
    ]
}

async fn assert_all_401(
    base: &str,
    client: &reqwest::Client,
    feature: &str,
    session: &str,
    what: &str,
) {
    for (method, path, body) in api_routes(feature, session) {
        let mut req = client.request(method.clone(), format!("{base}{path}"));
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{what}: {method} {path}");
        assert!(resp.headers().contains_key("www-authenticate"));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "unauthorized",
            "{what}: {method} {path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_refuses_missing_wrong_revoked_and_disabled_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (feature, _) = create_feature(&base, "guarded").await;
    let session = create_session(&base, &feature, "s").await;

    // With the right token every route answers something other than 401.
    for (method, path, body) in api_routes(&feature, &session) {
        if method == reqwest::Method::DELETE {
            continue; // would remove the only owner; refused with 422, not run here
        }
        let mut req = http().request(method.clone(), format!("{base}{path}"));
        if let Some(b) = &body {
            req = req.json(b);
        }
        let status = req.send().await.unwrap().status();
        assert_ne!(status, 401, "{method} {path} refused a valid token");
    }

    assert_all_401(&base, &http_anon(), &feature, &session, "no token").await;
    for wrong in [
        "nonsense",
        "canopy_",
        // Well-formed, unknown id.
        "canopy_zzzzzzzzzzzzzzzzzzzz_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        // The real id with a different secret.
        "canopy_testtokenaaaaaaaaaaa_BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert_all_401(&base, &http_as(wrong), &feature, &session, wrong).await;
    }
    // Basic auth or a bare token is not a bearer token.
    let r = http_anon()
        .get(format!("{base}/api/me"))
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Revoked.
    let (carol, carol_token) = add_user(&server, "carol").await;
    assert_eq!(user_id_of(&base, &carol_token).await, carol);
    let tokens = server
        .state()
        .users()
        .list_tokens(Some(&carol))
        .await
        .unwrap();
    assert!(
        server
            .state()
            .users()
            .revoke_token(&tokens[0].token_id)
            .await
            .unwrap()
    );
    assert_all_401(&base, &http_as(&carol_token), &feature, &session, "revoked").await;

    // Disabled.
    let (dave, dave_token) = add_user(&server, "dave").await;
    let (_, dave_url) = ticket(&base, &dave_token, "before-disable").await;
    server
        .state()
        .users()
        .set_disabled(&dave, true)
        .await
        .unwrap();
    assert_all_401(&base, &http_as(&dave_token), &feature, &session, "disabled").await;
    // …and the ticket they got a moment before does not open a WebSocket.
    let err = tokio_tungstenite::connect_async(dave_url)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401),
        "{err}"
    );
    server.stop().await.unwrap();
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn http_status(err: &tokio_tungstenite::tungstenite::Error) -> Option<u16> {
    match err {
        tokio_tungstenite::tungstenite::Error::Http(r) => Some(r.status().as_u16()),
        _ => None,
    }
}

async fn join_as(ws: &mut Ws, peer: &str) -> Option<Message> {
    ws.send(Message::Binary(wire::encode_join(peer, &["1"]).into()))
        .await
        .unwrap();
    within("an answer to join", ws.next())
        .await
        .map(Result::unwrap)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_are_single_use_unforgeable_and_pinned_to_their_peer() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let me = user_id_of(&base, TOKEN).await;

    // A good ticket works once.
    let (peer, url) = ticket(&base, TOKEN, "once").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    match join_as(&mut ws, &peer).await {
        Some(Message::Binary(b)) => {
            assert_eq!(wire::decode_envelope(&b).unwrap().kind, MessageType::Peer)
        }
        other => panic!("expected a peer message, got {other:?}"),
    }
    let reused = tokio_tungstenite::connect_async(&url).await.unwrap_err();
    assert_eq!(http_status(&reused), Some(401), "reused ticket: {reused}");

    // Tampered: change one character of the ticket.
    let (_, url) = ticket(&base, TOKEN, "tampered").await;
    let (head, t) = url.split_once("ticket=").unwrap();
    let mut bytes = t.as_bytes().to_vec();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{head}ticket={}", String::from_utf8(bytes).unwrap());
    let err = tokio_tungstenite::connect_async(&tampered)
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), Some(401), "tampered ticket: {err}");
    // The untouched ticket still works (the tampered attempt did not use it up).
    tokio_tungstenite::connect_async(&url).await.unwrap();

    // No ticket, garbage, a ticket from another server's key.
    for bad in [
        server.sync_url(),
        format!("{}?ticket=", server.sync_url()),
        format!("{}?ticket={}", server.sync_url(), "A".repeat(5000)),
    ] {
        let err = tokio_tungstenite::connect_async(&bad).await.unwrap_err();
        assert_eq!(http_status(&err), Some(401), "{bad}: {err}");
    }
    let other_dir = tempfile::tempdir().unwrap();
    let other = start_server(other_dir.path()).await;
    let (_, foreign) = ticket(other.url(), TOKEN, "foreign").await;
    let foreign = foreign.replace(
        other.url().trim_start_matches("http://"),
        base.trim_start_matches("http://"),
    );
    let err = tokio_tungstenite::connect_async(&foreign)
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), Some(401), "foreign ticket: {err}");
    other.stop().await.unwrap();

    // Bound to another peer id: joining as someone else closes the connection.
    let (_, url) = ticket(&base, TOKEN, "bound").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let _ = join_as(&mut ws, &format!("u:{me}:someone-else")).await;
    let closed = within("close after a mismatched join", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => {
                    return (u16::from(f.code), f.reason.to_string());
                }
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(closed.0, close_code::POLICY_VIOLATION, "{}", closed.1);

    // A user cannot ask for a peer id in someone else's namespace.
    let (_, carol_token) = add_user(&server, "carol").await;
    let r = http_as(&carol_token)
        .post(format!("{base}/api/sync-ticket"))
        .json(&json!({"peer_id": format!("u:{me}:stolen")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    for bad in ["", "u:", "x y", "storage-server"] {
        let r = http_as(&carol_token)
            .post(format!("{base}/api/sync-ticket"))
            .json(&json!({"peer_id": bad}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{bad:?} gave {}", r.status());
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_cannot_tell_a_feature_from_a_random_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (feature, doc) = create_feature(&base, "secret plans").await;
    let session = create_session(&base, &feature, "s").await;
    let (_, eve_token) = add_user(&server, "eve").await;
    let eve = http_as(&eve_token);
    let random = "ftr_aaaaaaaaaaaaaaaaaaaa";

    // Same status and same body for the real feature and a random id, on
    // every feature route.
    for (method, path, body) in [
        (reqwest::Method::GET, "", None),
        (
            reqwest::Method::POST,
            "/sessions",
            Some(json!({"title": "x"})),
        ),
        (
            reqwest::Method::POST,
            "/queue",
            Some(json!({"session_id": session, "text": "x"})),
        ),
        (reqwest::Method::GET, "/members", None),
        (reqwest::Method::GET, "/audit", None),
        (
            reqwest::Method::PUT,
            "/members/eve",
            Some(json!({"role": "owner"})),
        ),
    ] {
        let mut answers = Vec::new();
        for id in [feature.as_str(), random] {
            let mut req = eve.request(method.clone(), format!("{base}/api/features/{id}{path}"));
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap().replace(id, "<id>");
            answers.push((status, text));
        }
        assert_eq!(answers[0], answers[1], "{method} {path} tells them apart");
        assert_eq!(answers[0].0, 404, "{method} {path}");
    }
    // The listing does not include it.
    let list: Value = eve
        .get(format!("{base}/api/features"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["features"].as_array().unwrap().len(), 0);

    // Over sync: the same doc-unavailable for the real document and a random one.
    let eve_peer = Peer::connect_as(&server.sync_url(), &eve_token, "eve").await;
    let found = within("find", eve_peer.repo.find(doc.clone()))
        .await
        .unwrap();
    assert!(found.is_none(), "a non-member found the document");
    let random_doc = samod::DocumentId::new(&mut rand::rng());
    let found = within("find", eve_peer.repo.find(random_doc))
        .await
        .unwrap();
    assert!(found.is_none());
    eve_peer.stop().await;

    // Once added, eve sees it.
    assert_eq!(set_member(&base, &feature, "eve", "viewer").await, 200);
    let r = eve
        .get(format!("{base}/api/features/{feature}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await.unwrap();
}

/// A raw sync connection as `token`'s user, past the handshake.
struct RawPeer {
    ws: Ws,
    peer: String,
    server_peer: String,
}

impl RawPeer {
    async fn join(base: &str, token: &str, suffix: &str) -> RawPeer {
        let (peer, url) = ticket(base, token, suffix).await;
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let server_peer = match join_as(&mut ws, &peer).await {
            Some(Message::Binary(b)) => wire::decode_envelope(&b)
                .unwrap()
                .sender_id
                .unwrap()
                .to_owned(),
            other => panic!("expected a peer message, got {other:?}"),
        };
        RawPeer {
            ws,
            peer,
            server_peer,
        }
    }

    /// Send a sync message announcing `heads` and carrying `changes`.
    async fn sync(
        &mut self,
        doc: &samod::DocumentId,
        heads: Vec<automerge::ChangeHash>,
        changes: Vec<Vec<u8>>,
    ) {
        let message = automerge::sync::Message {
            heads,
            need: vec![],
            have: vec![],
            changes: changes.into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        }
        .encode();
        let frame = wire::encode_sync(
            MessageType::Sync,
            &self.peer,
            &self.server_peer,
            &doc.to_string(),
            &message,
        );
        self.ws.send(Message::Binary(frame.into())).await.unwrap();
    }

    /// The next `refused` notice, with the document it names.
    async fn refused(&mut self) -> (String, canopy_protocol::ephemeral::Refused) {
        use canopy_protocol::ephemeral::Ephemeral;
        within("a refused notice", async {
            loop {
                let Some(Ok(Message::Binary(b))) = self.ws.next().await else {
                    panic!("the connection ended without a notice");
                };
                let env = wire::decode_envelope(&b).unwrap();
                if env.kind == MessageType::Ephemeral
                    && let Ok(Ephemeral::Refused(r)) =
                        Ephemeral::decode(env.data.unwrap_or_default())
                {
                    let doc = match env.document_id.unwrap() {
                        wire::WireDocumentId::Str(s) => s.to_owned(),
                        wire::WireDocumentId::Bytes(b) => {
                            samod::DocumentId::try_from(b.to_vec()).unwrap().to_string()
                        }
                    };
                    return (doc, r);
                }
            }
        })
        .await
    }
}

/// Join as `token`'s user on a raw socket, push a sync message that carries
/// a change for `doc`, and return the `refused` notice the server sends back.
async fn pushed_change_is_refused(
    base: &str,
    token: &str,
    doc: &samod::DocumentId,
) -> canopy_protocol::ephemeral::Refused {
    use automerge::transaction::Transactable;
    let mut raw = RawPeer::join(base, token, "pusher").await;
    let mut local = automerge::Automerge::new();
    let mut tx = local.transaction();
    tx.put(automerge::ROOT, "notes", "pushed by a viewer")
        .unwrap();
    tx.commit();
    let change = local.get_changes(&[])[0].raw_bytes().to_vec();
    raw.sync(doc, local.get_heads(), vec![change]).await;
    raw.refused().await.1
}

/// Whether the feature's audit log has an entry with `action`.
async fn audited(base: &str, feature: &str, action: &str) -> bool {
    let audit = audit_log(base, feature).await;
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == action)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_edits_are_never_stored_or_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (feature, doc) = create_feature(&base, "read only for some").await;
    let (_, viv_token) = add_member(&server, &feature, "viv", "viewer").await;

    let owner = Peer::connect(&server.sync_url(), "owner").await;
    let o = owner.find(&doc).await;
    let viewer = Peer::connect_as(&server.sync_url(), &viv_token, "viv").await;
    let v = viewer.find(&doc).await;

    // The viewer receives the owner's changes…
    edit(&o, "owner note", |tx| {
        feature::set_notes(tx, "from the owner")
    });
    eventually("the viewer sees the owner's change", async || {
        read(&v).notes == "from the owner"
    })
    .await;

    // …but its own changes go nowhere. A current automerge peer learns from
    // the server's sync messages that the server is read-only for it (and
    // then does not even send its changes)…
    edit(&v, "viewer learning", |tx| {
        feature::add_learning(tx, &learning("planted by a viewer", "viv"))
    });
    eventually(
        "the viewer's replica knows the server ignores its changes",
        async || v.peers().0.values().any(|p| p.peer_read_only),
    )
    .await;
    // …and a client that pushes changes anyway is told they were refused.
    let pushed = pushed_change_is_refused(&base, &viv_token, &doc).await;
    assert_eq!(pushed.reason, "read_only");
    assert!(pushed.message.contains("not saved"), "{}", pushed.message);
    // Over HTTP too: a viewer cannot add sessions or prompts.
    let r = http_as(&viv_token)
        .post(format!("{base}/api/features/{feature}/sessions"))
        .json(&json!({"title": "sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The owner keeps writing; once the owner's later change has round-tripped
    // to the viewer, the viewer's change had every chance to travel.
    edit(&o, "owner note 2", |tx| feature::set_notes(tx, "second"));
    eventually("the viewer sees the second change", async || {
        read(&v).notes == "second"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        read(&o)
            .learnings
            .iter()
            .all(|l| l.text != "planted by a viewer"),
        "the owner received a viewer's change"
    );
    let snap = snapshot(&base, &feature).await;
    assert!(
        !snap.to_string().contains("planted by a viewer")
            && !snap.to_string().contains("pushed by a viewer"),
        "the server applied a viewer's change"
    );
    // The refusal is in the feature's audit log.
    assert!(audited(&base, &feature, "change_rejected").await);
    // Nor is it in storage after a restart.
    owner.stop().await;
    viewer.stop().await;
    server.stop().await.unwrap();
    let server = start_server(dir.path()).await;
    let snap = snapshot(server.url(), &feature).await;
    assert!(!snap.to_string().contains("planted by a viewer"));
    assert_eq!(snap["document"]["notes"], "second");
    server.stop().await.unwrap();
}

/// A viewer's client that made changes locally announces heads the server
/// lacks (without sending the changes, as stock clients do): it is told its
/// changes were refused. Heads the server has draw no notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_announcing_unknown_heads_is_told_they_were_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (known_feature, known_doc) = create_feature(&base, "heads it has").await;
    let (unknown_feature, unknown_doc) = create_feature(&base, "heads it lacks").await;
    let (_, viv_token) = add_member(&server, &known_feature, "viv", "viewer").await;
    assert_eq!(
        set_member(&base, &unknown_feature, "viv", "viewer").await,
        200
    );
    let owner = Peer::connect(&server.sync_url(), "owner").await;
    let server_heads = owner
        .find(&known_doc)
        .await
        .with_document(|d| d.get_heads());
    assert!(!server_heads.is_empty());

    let mut raw = RawPeer::join(&base, &viv_token, "heads").await;
    // First the server's own heads on one document, then heads it has
    // never seen on the other. Notices come back in order, so a notice for
    // the first document would arrive before the second's.
    raw.sync(&known_doc, server_heads, vec![]).await;
    raw.sync(&unknown_doc, vec![automerge::ChangeHash([7; 32])], vec![])
        .await;
    let (doc, refused) = raw.refused().await;
    assert_eq!(
        doc,
        unknown_doc.to_string(),
        "a notice for heads the server has"
    );
    assert_eq!(refused.reason, "read_only");
    assert!(audited(&base, &unknown_feature, "change_rejected").await);
    owner.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_contributor_stops_receiving_and_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (feature, doc) = create_feature(&base, "team work").await;
    let (carol_id, carol_token) = add_member(&server, &feature, "carol", "contributor").await;
    // The membership is mirrored into the document for display.
    let snap = snapshot(&base, &feature).await;
    assert_eq!(
        snap["document"]["participants"][&carol_id]["role"],
        "contributor"
    );

    let owner = Peer::connect(&server.sync_url(), "owner").await;
    let o = owner.find(&doc).await;
    let carol = Peer::connect_as(&server.sync_url(), &carol_token, "carol").await;
    let c = carol.find(&doc).await;

    // While a member, carol's edits arrive and she receives the owner's.
    edit(&c, "carol learns", |tx| {
        feature::add_learning(tx, &learning("carol was here", &carol_id))
    });
    eventually("the owner sees carol's learning", async || {
        read(&o)
            .learnings
            .iter()
            .any(|l| l.text == "carol was here")
    })
    .await;

    // Removed while connected.
    let r = http()
        .delete(format!("{base}/api/features/{feature}/members/carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let snap = snapshot(&base, &feature).await;
    assert!(snap["document"]["participants"].get(&carol_id).is_none());

    // The owner's next change never reaches her; hers never reach anyone.
    edit(&o, "after removal", |tx| {
        feature::set_notes(tx, "carol must not see this")
    });
    edit(&c, "carol after removal", |tx| {
        feature::add_learning(tx, &learning("written after removal", &carol_id))
    });
    owner.synced(&o).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_ne!(
        read(&c).notes,
        "carol must not see this",
        "a removed member got a change"
    );
    assert!(
        read(&o)
            .learnings
            .iter()
            .all(|l| l.text != "written after removal"),
        "a removed member's change was accepted"
    );
    let snap = snapshot(&base, &feature).await;
    assert!(!snap.to_string().contains("written after removal"));
    // And over HTTP the feature is gone for her.
    let r = http_as(&carol_token)
        .get(format!("{base}/api/features/{feature}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The last owner cannot be removed or demoted; the audit log has it all.
    assert_eq!(set_member(&base, &feature, "admin", "viewer").await, 422);
    let r = http()
        .delete(format!("{base}/api/features/{feature}/members/admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let audit = audit_log(&base, &feature).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["member_removed", "member_set"], "{audit}");
    // Nobody can rewrite it, not even with direct SQL.
    let conn = rusqlite::Connection::open(dir.path().join("canopy.db")).unwrap();
    assert!(conn.execute("DELETE FROM audit", []).is_err());
    assert!(conn.execute("UPDATE audit SET detail = 'x'", []).is_err());

    owner.stop().await;
    carol.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_give_clear_errors_and_do_not_slow_other_users() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path());
    config.api_rate_per_minute = 40;
    config.sync_rate_limit = 50;
    config.sync_rate_burst = 100;
    let server = start_with(config).await;
    let base = server.url().to_owned();
    let (feature, doc) = create_feature(&base, "busy").await;
    let session = create_session(&base, &feature, "s").await;
    let (_, carol_token) = add_user(&server, "carol").await;
    let (_, dave_token) = add_user(&server, "dave").await;
    assert_eq!(
        set_member(&base, &feature, "carol", "contributor").await,
        200
    );
    assert_eq!(
        set_member(&base, &feature, "dave", "contributor").await,
        200
    );
    let carol = http_as(&carol_token);
    let dave = http_as(&dave_token);
    let queue = |client: &reqwest::Client, text: String| {
        client
            .post(format!("{base}/api/features/{feature}/queue"))
            .json(&json!({"session_id": session, "text": text}))
            .send()
    };

    // The 11th unfinished prompt of one user is refused; another user's is not.
    for i in 0..10 {
        assert_eq!(
            queue(&carol, format!("prompt {i}")).await.unwrap().status(),
            201
        );
    }
    let r = queue(&carol, "one too many".into()).await.unwrap();
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_full");
    assert_eq!(
        queue(&dave, "dave's first".into()).await.unwrap().status(),
        201
    );
    let audit = audit_log(&base, &feature).await;
    assert!(
        audit["entries"].as_array().unwrap().iter().any(|e| {
            e["action"] == "limit_hit" && e["detail"].as_str().unwrap().contains("unfinished")
        }),
        "{audit}"
    );

    // A prompt over 64 KB, and a 1 MB one (over the request size limit).
    let r = queue(&dave, "x".repeat(70 * 1024)).await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "too_large"
    );
    let r = queue(&dave, "x".repeat(1 << 20)).await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );

    // Carol floods the API until she is limited; dave is not affected.
    let mut limited = None;
    for _ in 0..60 {
        let r = carol.get(format!("{base}/api/me")).send().await.unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the API rate limit never applied");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "retry-after {retry}");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limited"
    );
    let r = dave
        .get(format!("{base}/api/features/{feature}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "another user was limited by carol's flood");

    // A flood of sync messages on a raw socket, while dave's edits keep
    // reaching the owner.
    let owner = Peer::connect(&server.sync_url(), "owner").await;
    let o = owner.find(&doc).await;
    let dave_peer = Peer::connect_as(&server.sync_url(), &dave_token, "dave").await;
    let d = dave_peer.find(&doc).await;
    // Erin floods (carol has used up her API minute above).
    let (_, erin_token) = add_member(&server, &feature, "erin", "contributor").await;
    let (peer, url) = ticket(&base, &erin_token, "flood").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let server_peer = match join_as(&mut ws, &peer).await {
        Some(Message::Binary(b)) => wire::decode_envelope(&b)
            .unwrap()
            .sender_id
            .unwrap()
            .to_owned(),
        other => panic!("expected a peer message, got {other:?}"),
    };
    let empty_sync = {
        use automerge::sync::SyncDoc;
        automerge::Automerge::new()
            .generate_sync_message(&mut automerge::sync::State::new())
            .unwrap()
            .encode()
    };
    let frame = wire::encode_sync(
        MessageType::Request,
        &peer,
        &server_peer,
        &doc.to_string(),
        &empty_sync,
    );
    let flood = tokio::spawn(async move {
        for _ in 0..2_000 {
            if ws
                .send(Message::Binary(frame.clone().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        within("the flood is cut off", async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                    Some(Ok(_)) => continue,
                    other => panic!("expected a close frame, got {other:?}"),
                }
            }
        })
        .await
    });
    for i in 0..5 {
        edit(&d, "dave learns", |tx| {
            feature::add_learning(tx, &learning(&format!("dave {i}"), "dave"))
        });
    }
    eventually(
        "dave's edits reach the owner during the flood",
        async || {
            (0..5).all(|i| {
                read(&o)
                    .learnings
                    .iter()
                    .any(|l| l.text == format!("dave {i}"))
            })
        },
    )
    .await;
    assert_eq!(flood.await.unwrap(), close_code::POLICY_VIOLATION);
    let text = metrics(&base).await;
    assert!(
        text.contains("canopy_limit_hits_total{reason=\"api_rate\"}"),
        "{text}"
    );
    owner.stop().await;
    dave_peer.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_user_is_cut_off_live() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (feature, doc) = create_feature(&base, "cut off").await;
    let (dave_id, dave_token) = add_member(&server, &feature, "dave", "contributor").await;
    let owner = Peer::connect(&server.sync_url(), "owner").await;
    let o = owner.find(&doc).await;
    let dave = Peer::connect_as(&server.sync_url(), &dave_token, "dave").await;
    let d = dave.find(&doc).await;
    edit(&o, "before", |tx| feature::set_notes(tx, "before"));
    eventually("dave sees the owner's change", async || {
        read(&d).notes == "before"
    })
    .await;

    // Disabled in the database, as `canopy user disable` does from another
    // process: the server notices on its next refresh.
    server
        .state()
        .users()
        .set_disabled(&dave_id, true)
        .await
        .unwrap();
    let on_server = server
        .state()
        .hub()
        .repo()
        .find(doc.clone())
        .await
        .unwrap()
        .unwrap();
    eventually("the server stops sharing with dave", async || {
        on_server
            .peers()
            .0
            .values()
            .any(|p| p.share_config.map(|c| c.access) == Some(samod::ShareAccess::None))
    })
    .await;
    edit(&o, "after", |tx| {
        feature::set_notes(tx, "dave must not see this")
    });
    edit(&d, "dave after", |tx| {
        feature::add_learning(tx, &learning("dave after disable", &dave_id))
    });
    owner.synced(&o).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(read(&d).notes, "before", "a disabled user kept receiving");
    assert!(
        read(&o)
            .learnings
            .iter()
            .all(|l| l.text != "dave after disable")
    );
    let r = http_as(&dave_token)
        .get(format!("{base}/api/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    owner.stop().await;
    dave.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_id_belongs_to_the_user_who_first_used_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (feature, doc) = create_feature(&base, "who wrote this").await;
    let (carol_id, carol_token) = add_member(&server, &feature, "carol", "contributor").await;

    let owner = Peer::connect(&server.sync_url(), "owner").await;
    let o = owner.find(&doc).await;
    edit(&o, "owner writes", |tx| {
        feature::set_notes(tx, "by the owner")
    });
    owner.synced(&o).await;
    let owner_actor = o.with_document(|d| d.get_actor().clone());
    let owner_change = o.with_document(|d| d.get_heads()[0].to_string());

    // The server knows who delivered the owner's change.
    let db = rusqlite::Connection::open(dir.path().join("canopy.db")).unwrap();
    let me = user_id_of(&base, TOKEN).await;
    let origin: String = within("origin recorded", async {
        loop {
            let found = db.query_row(
                "SELECT user_id FROM change_origins WHERE change_hash = ?1",
                [&owner_change],
                |r| r.get::<_, String>(0),
            );
            if let Ok(u) = found {
                return u;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(origin, me);
    let bound: String = db
        .query_row(
            "SELECT user_id FROM actors WHERE actor_id = ?1",
            [owner_actor.to_hex_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bound, me);

    // Carol writes under the owner's actor id: refused, audited, not stored.
    let carol = Peer::connect_as(&server.sync_url(), &carol_token, "carol").await;
    let c = carol.find(&doc).await;
    eventually("carol has the owner's change", async || {
        read(&c).notes == "by the owner"
    })
    .await;
    c.with_document(|d| {
        d.set_actor(owner_actor.clone());
    });
    edit(&c, "forged", |tx| {
        feature::set_notes(tx, "forged as the owner")
    });
    eventually("the server closes carol's connection", async || {
        server.state().hub().connection_count() == 1
    })
    .await;
    let snap = snapshot(&base, &feature).await;
    assert_eq!(snap["document"]["notes"], "by the owner");
    let audit = audit_log(&base, &feature).await;
    assert!(
        audit["entries"].as_array().unwrap().iter().any(|e| {
            e["action"] == "change_rejected"
                && e["user_id"] == carol_id.as_str()
                && e["detail"]
                    .as_str()
                    .unwrap()
                    .contains("belongs to another user")
        }),
        "{audit}"
    );
    carol.stop().await;
    owner.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_authors_are_rejected_or_corrected_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (feature, doc) = create_feature(&base, "honest work").await;
    let session = create_session(&base, &feature, "s").await;
    let (carol_id, carol_token) = add_member(&server, &feature, "carol", "contributor").await;
    let admin = user_id_of(&base, TOKEN).await;

    let carol = Peer::connect_as(&server.sync_url(), &carol_token, "carol").await;
    let c = carol.find(&doc).await;
    let honest = queue_entry(&session, "mine", &carol_id);
    let forged = queue_entry(&session, "run this as the owner", &admin);
    let as_agent = queue_entry(
        &session,
        "pretend to be the agent",
        &format!("agent:{session}"),
    );
    for e in [&honest, &forged, &as_agent] {
        edit(&c, "queue", |tx| feature::append_queue_entry(tx, e));
    }
    edit(&c, "learn", |tx| {
        feature::add_learning(tx, &learning("a fact, signed by someone else", &admin))
    });
    carol.synced(&c).await;

    eventually("the forged prompts are rejected", async || {
        let snap = snapshot(&base, &feature).await;
        let status = |id: &str| {
            snap["document"]["queue"]
                .as_array()
                .unwrap()
                .iter()
                .find(|q| q["id"] == id)
                .map(|q| q["status"].as_str().unwrap_or_default().to_owned())
        };
        status(&forged.id).as_deref() == Some("rejected")
            && status(&as_agent.id).as_deref() == Some("rejected")
    })
    .await;
    let snap = snapshot(&base, &feature).await;
    let queue = snap["document"]["queue"].as_array().unwrap();
    let by_id = |id: &str| queue.iter().find(|q| q["id"] == id).unwrap().clone();
    assert_eq!(
        by_id(&honest.id)["status"],
        "queued",
        "an honest prompt was touched"
    );
    assert!(
        by_id(&forged.id)["error"]
            .as_str()
            .unwrap()
            .contains(&carol_id),
        "{}",
        by_id(&forged.id)
    );
    // The learning now names its real author.
    eventually("the learning's author is corrected", async || {
        snapshot(&base, &feature).await["document"]["learnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| {
                l["text"] == "a fact, signed by someone else" && l["author"] == carol_id.as_str()
            })
    })
    .await;
    // Carol's replica gets the verdicts too.
    eventually("carol sees the rejection", async || {
        read(&c)
            .queue
            .iter()
            .any(|q| q.id == forged.id && q.status == feature::QueueStatus::Rejected)
    })
    .await;
    // All of it is audited.
    eventually("the corrections are audited", async || {
        let audit = audit_log(&base, &feature).await;
        let details: Vec<String> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "change_rejected")
            .map(|e| e["detail"].as_str().unwrap().to_owned())
            .collect();
        details.iter().any(|d| d.contains(&forged.id))
            && details.iter().any(|d| d.contains(&as_agent.id))
    })
    .await;
    carol.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_token_syncs_its_own_feature_and_writes_as_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let (feature, doc) = create_feature(&base, "agent at work").await;
    let session = create_session(&base, &feature, "implement").await;
    let (_, other_doc) = create_feature(&base, "somewhere else").await;
    let admin = user_id_of(&base, TOKEN).await;
    let (_, agent_token) = server
        .state()
        .users()
        .create_token(
            &admin,
            "sandbox",
            canopy::auth::TokenScope::Agent {
                feature_id: feature.clone(),
                session_id: session.clone(),
            },
        )
        .await
        .unwrap();

    // The agent token opens its sync connection and nothing else.
    let r = http_as(&agent_token)
        .get(format!("{base}/api/features"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http_as(&agent_token)
        .post(format!("{base}/api/sync-ticket"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let prefix = format!("a:{feature}:{session}:");
    assert!(
        body["peer_id"].as_str().unwrap().starts_with(&prefix),
        "{body}"
    );
    // …and cannot pose as a person.
    let r = http_as(&agent_token)
        .post(format!("{base}/api/sync-ticket"))
        .json(&json!({"peer_id": format!("u:{admin}:sidecar")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let (repo, dialer) = connect_agent(&base, &agent_token, &feature, &session).await;
    let h = within("find", repo.find(doc.clone()))
        .await
        .unwrap()
        .expect("the agent cannot see its own feature");
    let elsewhere = within("find", repo.find(other_doc)).await.unwrap();
    assert!(elsewhere.is_none(), "the agent sees another feature");

    let author = format!("agent:{session}");
    edit(&h, "agent learns", |tx| {
        feature::add_learning(tx, &learning("the agent found this", &author))
    });
    within(
        "the server has the agent's change",
        h.they_have_our_changes(dialer.connection_id().unwrap()),
    )
    .await;
    // Give verification its chance, then check the author stands.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let snap = snapshot(&base, &feature).await;
    let learned = snap["document"]["learnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["text"] == "the agent found this")
        .cloned()
        .expect("the agent's learning is missing");
    assert_eq!(learned["author"], author.as_str());
    dialer.close();
    repo.stop().await;
    server.stop().await.unwrap();
}
