//! The history browser's API: who changed what and when, the feature at any
//! heads, diffs between versions, restore, and bad input.

use std::collections::HashSet;

use automerge::{ChangeHash, ReadDoc, transaction::Transactable};
use canopy_protocol::feature;
use samod::DocHandle;
use serde_json::{Value, json};

use crate::common::*;

/// One scripted edit: who made it and the document after it.
struct Step {
    hash: ChangeHash,
    author: String,
    heads: Vec<ChangeHash>,
    state: Value,
}

/// Make one change on `handle`, wait until the server has it, and return
/// the step (the writer's replica right after it).
async fn step(
    base: &str,
    feature_id: &str,
    handle: &DocHandle,
    author: &str,
    message: &str,
    f: impl FnOnce(
        &mut automerge::transaction::Transaction<'_>,
    ) -> Result<(), canopy_protocol::SchemaError>,
) -> Step {
    let hash = handle.with_document(|doc| {
        doc.transact_with(
            |_| canopy_protocol::ChangeMeta::now(message).commit_options(),
            f,
        )
        .unwrap()
        .hash
        .unwrap()
    });
    let want = hash.to_string();
    eventually("the server has the change", async || {
        snapshot(base, feature_id).await["heads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == want.as_str())
    })
    .await;
    let (heads, state) = handle.with_document(|doc| {
        (
            doc.get_heads(),
            canopy::history::to_json(&doc.hydrate(None)),
        )
    });
    Step {
        hash,
        author: author.to_owned(),
        heads,
        state,
    }
}

fn heads_param(heads: &[ChangeHash]) -> String {
    heads
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

async fn get(token: &str, url: String) -> (u16, Value) {
    let r = http_as(token).get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Apply the API's patches to a JSON document; written here, apart from
/// the server's own code, so the test checks the format, not itself.
fn apply(doc: &mut Value, patch: &Value) {
    let mut target = &mut *doc;
    for p in patch["path"].as_array().unwrap() {
        target = match p {
            Value::String(k) => target.get_mut(k.as_str()).unwrap(),
            Value::Number(n) => target.get_mut(n.as_u64().unwrap() as usize).unwrap(),
            _ => panic!("bad path {patch}"),
        };
    }
    let index = patch["index"].as_u64().map(|i| i as usize);
    match (patch["action"].as_str().unwrap(), target) {
        ("put", Value::Object(m)) => {
            m.insert(
                patch["key"].as_str().unwrap().into(),
                patch["value"].clone(),
            );
        }
        ("put", Value::Array(a)) => a[index.unwrap()] = patch["value"].clone(),
        ("insert", Value::Array(a)) => {
            let at = index.unwrap();
            for (k, v) in patch["values"].as_array().unwrap().iter().enumerate() {
                a.insert(at + k, v.clone());
            }
        }
        ("delete", Value::Object(m)) => {
            m.remove(patch["key"].as_str().unwrap());
        }
        ("delete", Value::Array(a)) => {
            let (at, n) = (index.unwrap(), patch["length"].as_u64().unwrap() as usize);
            a.drain(at..at + n);
        }
        ("delete", Value::String(s)) => {
            let (at, n) = (index.unwrap(), patch["length"].as_u64().unwrap() as usize);
            *s = s.chars().take(at).chain(s.chars().skip(at + n)).collect();
        }
        ("splice_text", Value::String(s)) => {
            let at = index.unwrap();
            let text = patch["value"].as_str().unwrap();
            *s = s
                .chars()
                .take(at)
                .chain(text.chars())
                .chain(s.chars().skip(at))
                .collect();
        }
        (other, t) => panic!("cannot apply {other} to {t}"),
    }
}

/// Delete the learning with `id` (no helper in the schema crate: clients
/// delete by index).
fn delete_learning(
    tx: &mut automerge::transaction::Transaction<'_>,
    id: &str,
) -> Result<(), canopy_protocol::SchemaError> {
    let (_, list) = tx.get(automerge::ROOT, "learnings").unwrap().unwrap();
    for i in 0..tx.length(&list) {
        let (_, item) = tx.get(&list, i).unwrap().unwrap();
        let found = match tx.get(&item, "id").unwrap() {
            Some((automerge::Value::Scalar(s), _)) => s.as_str() == Some(id),
            _ => false,
        };
        if found {
            tx.delete(&list, i).unwrap();
            return Ok(());
        }
    }
    panic!("no learning {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_every_change_with_its_author_and_versions_diff_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let started = now_ms();
    let (feature_id, doc) = create_feature(&base, "history of a feature").await;
    let session = create_session(&base, &feature_id, "the agent's session").await;
    let alice = user_id_of(&base, TOKEN).await;
    let (bob, bob_token) = add_member(&server, &feature_id, "bob", "contributor").await;
    let (carol, carol_token) = add_member(&server, &feature_id, "carol", "contributor").await;
    let (_, viewer_token) = add_member(&server, &feature_id, "vic", "viewer").await;
    let (_, stranger_token) = add_user(&server, "mallory").await;
    let (_, agent_token) = server
        .state()
        .users()
        .create_token(
            &alice,
            "sandbox",
            canopy::auth::TokenScope::Agent {
                feature_id: feature_id.clone(),
                session_id: session.clone(),
            },
        )
        .await
        .unwrap();

    let a = Peer::connect(&server.sync_url(), "alice").await;
    let b = Peer::connect_as(&server.sync_url(), &bob_token, "bob").await;
    let c = Peer::connect_as(&server.sync_url(), &carol_token, "carol").await;
    let (agent_repo, _dialer) = connect_agent(&base, &agent_token, &feature_id, &session).await;
    let (ha, hb, hc) = (a.find(&doc).await, b.find(&doc).await, c.find(&doc).await);
    let hg = within("the agent finds the feature", agent_repo.find(doc.clone()))
        .await
        .unwrap()
        .unwrap();
    let agent = format!("agent:{session}");

    // The script: each person and the agent in turn, each step on a replica
    // that has all the earlier ones.
    let mut steps = Vec::new();
    let doomed = learning("Tokens expire after an hour", &alice);
    let doomed_id = doomed.id.clone();
    steps.push(
        step(&base, &feature_id, &ha, &alice, "alice: a learning", |tx| {
            feature::add_learning(tx, &doomed)
        })
        .await,
    );
    eventually("bob has alice's learning", async || {
        read(&hb).learnings.len() == 1
    })
    .await;
    steps.push(
        step(&base, &feature_id, &hb, &bob, "bob: notes", |tx| {
            feature::set_notes(tx, "Bob's plan: ship it.")
        })
        .await,
    );
    eventually("carol has bob's notes", async || {
        !read(&hc).notes.is_empty()
    })
    .await;
    let decision = feature::NewDecision {
        id: canopy_protocol::ids::new_decision_id(),
        decision: "Use OAuth".into(),
        rationale: "Everyone has an account".into(),
        alternatives: vec!["Passwords".into()],
        from_session: None,
        author: carol.clone(),
        created_at: now_ms(),
    };
    steps.push(
        step(&base, &feature_id, &hc, &carol, "carol: a decision", |tx| {
            feature::add_decision(tx, &decision)
        })
        .await,
    );
    eventually("the agent has carol's decision", async || {
        hg.with_document(|d| feature::read(d).unwrap().decisions.len()) == 1
    })
    .await;
    let agents_learning = learning("The login page lives in src/login.rs", &agent);
    steps.push(
        step(&base, &feature_id, &hg, &agent, "agent: a learning", |tx| {
            feature::add_learning(tx, &agents_learning)
        })
        .await,
    );
    eventually("alice has the agent's learning", async || {
        read(&ha).learnings.len() == 2
    })
    .await;
    steps.push(
        step(&base, &feature_id, &ha, &alice, "alice: more notes", |tx| {
            feature::splice_notes(tx, 0, 0, "Alice: ")
        })
        .await,
    );
    eventually("alice's replica is current", async || {
        read(&hb).notes.starts_with("Alice: ")
    })
    .await;
    let before_delete = steps.last().unwrap().heads.clone();
    steps.push(
        step(
            &base,
            &feature_id,
            &hb,
            &bob,
            "bob: delete a learning",
            |tx| delete_learning(tx, &doomed_id),
        )
        .await,
    );

    // 1. The history: every change once, newest first, right author, real
    //    time, a summary; paged by 2.
    let mut listed: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = format!("{base}/api/features/{feature_id}/history?limit=2");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = get(&viewer_token, url).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        listed.extend(page["changes"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    let all: Vec<ChangeHash> =
        ha.with_document(|d| d.get_changes(&[]).iter().map(|c| c.hash()).collect());
    let hashes: Vec<&str> = listed.iter().map(|c| c["hash"].as_str().unwrap()).collect();
    assert_eq!(
        hashes.len(),
        all.len(),
        "each change exactly once: {hashes:?}"
    );
    assert_eq!(
        hashes.iter().collect::<HashSet<_>>().len(),
        hashes.len(),
        "a change listed twice"
    );
    for h in &all {
        assert!(
            hashes.contains(&h.to_string().as_str()),
            "change {h} not listed"
        );
    }
    // Newest first: no change is listed before one that depends on it.
    for (i, c) in listed.iter().enumerate() {
        for p in c["parents"].as_array().unwrap() {
            let at = hashes
                .iter()
                .position(|h| *h == p.as_str().unwrap())
                .unwrap();
            assert!(at > i, "parent {p} listed before its child {}", c["hash"]);
        }
    }
    let now = now_ms();
    for s in &steps {
        let c = listed
            .iter()
            .find(|c| c["hash"] == s.hash.to_string().as_str())
            .unwrap();
        assert_eq!(c["author"], s.author.as_str(), "{c}");
        let t = c["time"].as_i64().unwrap();
        assert!(
            t >= started - 1000 && t <= now + 1000,
            "time {t} outside the test ({started}..{now})"
        );
    }
    // The feature's creation is by alice, through the API.
    let first = listed.last().unwrap();
    assert_eq!(first["author"], alice.as_str(), "{first}");
    let summary_of = |s: &Step| {
        listed
            .iter()
            .find(|c| c["hash"] == s.hash.to_string().as_str())
            .unwrap()["summary"]["touched"]
            .clone()
    };
    let added = summary_of(&steps[0]);
    assert_eq!(
        json!([
            added[0]["kind"],
            added[0]["id"],
            added[0]["action"],
            added[0]["inserted"]
        ]),
        json!([
            "learnings",
            doomed_id,
            "added",
            "Tokens expire after an hour".chars().count()
        ]),
        "{added}"
    );
    let notes = summary_of(&steps[1]);
    assert_eq!(notes[0]["kind"], "notes", "{notes}");
    assert_eq!(
        notes[0]["inserted"],
        "Bob's plan: ship it.".chars().count(),
        "{notes}"
    );
    assert_eq!(summary_of(&steps[2])[0]["kind"], "decisions");
    assert_eq!(summary_of(&steps[2])[0]["id"], decision.id.as_str());
    assert_eq!(summary_of(&steps[4])[0]["inserted"], 7);
    let deleted = summary_of(&steps[5]);
    assert_eq!(
        json!([deleted[0]["kind"], deleted[0]["id"], deleted[0]["action"]]),
        json!(["learnings", doomed_id, "deleted"]),
        "{deleted}"
    );
    // Filters: by author, by path.
    let (_, mine) = get(
        &viewer_token,
        format!("{base}/api/features/{feature_id}/history?author={agent}"),
    )
    .await;
    let mine: Vec<&Value> = mine["changes"].as_array().unwrap().iter().collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["hash"], steps[3].hash.to_string().as_str());
    let (_, about) = get(
        &viewer_token,
        format!("{base}/api/features/{feature_id}/history?path=learnings/{doomed_id}"),
    )
    .await;
    let about: Vec<&str> = about["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["hash"].as_str().unwrap())
        .collect();
    assert_eq!(
        about,
        vec![steps[5].hash.to_string(), steps[0].hash.to_string()]
    );

    // 2. `at` every step's heads is the document the writer had then; a
    //    diff between two points, applied to the earlier, gives the later.
    for s in &steps {
        let (status, at) = get(
            &viewer_token,
            format!(
                "{base}/api/features/{feature_id}/at?heads={}",
                heads_param(&s.heads)
            ),
        )
        .await;
        assert_eq!(status, 200, "{at}");
        assert_eq!(at["document"], s.state, "at {:?}", s.heads);
    }
    for (i, j) in [(0, 5), (1, 3), (2, 4), (0, 1)] {
        let (from, to) = (&steps[i], &steps[j]);
        let (status, d) = get(
            &viewer_token,
            format!(
                "{base}/api/features/{feature_id}/diff?from={}&to={}",
                heads_param(&from.heads),
                heads_param(&to.heads)
            ),
        )
        .await;
        assert_eq!(status, 200, "{d}");
        let mut state = from.state.clone();
        for p in d["patches"].as_array().unwrap() {
            apply(&mut state, p);
        }
        assert_eq!(state, to.state, "diff {i}..{j}: {d}");
    }
    // The deleted learning's patch says what was removed.
    let (_, d) = get(
        &viewer_token,
        format!(
            "{base}/api/features/{feature_id}/diff?from={}&to={}",
            heads_param(&steps[4].heads),
            heads_param(&steps[5].heads)
        ),
    )
    .await;
    let gone = &d["patches"][0];
    assert_eq!(gone["action"], "delete", "{d}");
    assert_eq!(gone["old"][0]["id"], doomed_id.as_str(), "{d}");

    // 3. Restore brings the learning back as a new change by the caller.
    let r = http_as(&bob_token)
        .post(format!("{base}/api/features/{feature_id}/restore"))
        .json(&json!({"heads": heads_param(&before_delete), "path": ["learnings", doomed_id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let restored: Value = r.json().await.unwrap();
    let change = restored["change"].as_str().unwrap().to_owned();
    let snap = snapshot(&base, &feature_id).await;
    let back = snap["document"]["learnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == doomed_id.as_str())
        .cloned();
    assert_eq!(back.unwrap()["text"], "Tokens expire after an hour");
    // Its author is known at once (not only once the origin is written).
    let (_, page) = get(
        &viewer_token,
        format!("{base}/api/features/{feature_id}/history?limit=2"),
    )
    .await;
    assert_eq!(page["changes"][0]["hash"], change.as_str(), "{page}");
    assert_eq!(page["changes"][0]["author"], bob.as_str(), "{page}");
    // Restoring what is already there writes nothing.
    let again: Value = http_as(&bob_token)
        .post(format!("{base}/api/features/{feature_id}/restore"))
        .json(&json!({"heads": heads_param(&before_delete), "path": ["learnings", doomed_id]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["change"], Value::Null, "{again}");
    assert_eq!(again["heads"], restored["heads"], "{again}");
    let (_, page) = get(
        &viewer_token,
        format!("{base}/api/features/{feature_id}/history?path=learnings/{doomed_id}"),
    )
    .await;
    let about: Vec<&str> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["hash"].as_str().unwrap())
        .collect();
    assert_eq!(
        about,
        vec![
            change.clone(),
            steps[5].hash.to_string(),
            steps[0].hash.to_string()
        ],
        "{page}"
    );
    assert_eq!(
        page["changes"][0]["summary"]["touched"][0]["action"],
        "added"
    );

    // 4. Bad input: 400 with a clear message; strangers 404; viewers may
    //    browse but not restore.
    let (other, _) = create_feature(&base, "another feature").await;
    create_session(&base, &other, "a second change there").await;
    let (_, other_page) = get(
        TOKEN,
        format!("{base}/api/features/{other}/history?limit=1"),
    )
    .await;
    let foreign_cursor = other_page["next"].as_str().map(str::to_owned);
    let unknown = "ab".repeat(32);
    let cases = [
        (
            format!("{base}/api/features/{feature_id}/at?heads=zz"),
            "bad_heads",
        ),
        (
            format!("{base}/api/features/{feature_id}/at?heads={unknown}"),
            "bad_heads",
        ),
        (
            format!("{base}/api/features/{feature_id}/at?heads="),
            "bad_heads",
        ),
        (
            format!(
                "{base}/api/features/{feature_id}/diff?from={unknown}&to={}",
                heads_param(&steps[0].heads)
            ),
            "bad_heads",
        ),
        (
            format!("{base}/api/features/{feature_id}/history?cursor=not-a-cursor"),
            "bad_cursor",
        ),
        (
            format!("{base}/api/features/{feature_id}/history?path=learnings//x"),
            "bad_path",
        ),
        (
            format!("{base}/api/features/{feature_id}/history?limit=0"),
            "bad_limit",
        ),
        (
            format!("{base}/api/features/{feature_id}/history?limit=100000"),
            "bad_limit",
        ),
    ];
    for (url, code) in &cases {
        let (status, body) = get(&viewer_token, url.clone()).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["error"]["code"], *code, "{url}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    if let Some(c) = foreign_cursor {
        let (status, body) = get(
            &viewer_token,
            format!("{base}/api/features/{feature_id}/history?cursor={c}"),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "bad_cursor");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("another"),
            "{body}"
        );
    } else {
        panic!("the other feature's history has one page only; no cursor to try");
    }
    for (body, code) in [
        (
            json!({"heads": heads_param(&before_delete), "path": "learnings/lrn_nosuchlearning0000000"}),
            "bad_path",
        ),
        (
            json!({"heads": heads_param(&before_delete), "path": "queue"}),
            "bad_path",
        ),
        (json!({"heads": "nothex", "path": "notes"}), "bad_heads"),
    ] {
        let r = http_as(&bob_token)
            .post(format!("{base}/api/features/{feature_id}/restore"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], code);
    }
    let r = http_as(&viewer_token)
        .post(format!("{base}/api/features/{feature_id}/restore"))
        .json(&json!({"heads": heads_param(&before_delete), "path": "notes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    for url in [
        format!("{base}/api/features/{feature_id}/history"),
        format!(
            "{base}/api/features/{feature_id}/at?heads={}",
            heads_param(&steps[0].heads)
        ),
        format!(
            "{base}/api/features/{feature_id}/diff?from={0}&to={0}",
            heads_param(&steps[0].heads)
        ),
    ] {
        let (status, body) = get(&stranger_token, url.clone()).await;
        assert_eq!(status, 404, "{url}: {body}");
    }
    let r = http_as(&stranger_token)
        .post(format!("{base}/api/features/{feature_id}/restore"))
        .json(&json!({"heads": heads_param(&before_delete), "path": "notes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    a.stop().await;
    b.stop().await;
    c.stop().await;
    agent_repo.stop().await;
    server.stop().await.unwrap();
}
