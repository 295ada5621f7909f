//! GitHub webhooks (issue 9, acceptance 3 and the stranger half of 4): a
//! real server with a webhook secret, deliveries signed as GitHub signs
//! them, with GitHub's payload shapes.

use canopy::github::webhook::Secret;
use serde_json::{Value, json};

use crate::common::*;

const SECRET: &str = "whsec-test-0123456789abcdef";

struct Hook {
    base: String,
    client: reqwest::Client,
}

impl Hook {
    /// POST a delivery; `sign` with this secret (None: no signature).
    async fn send(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        sign: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/api/github/webhook", self.base))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("user-agent", "GitHub-Hookshot/test");
        if !delivery.is_empty() {
            req = req.header("x-github-delivery", delivery);
        }
        if let Some(secret) = sign {
            req = req.header(
                "x-hub-signature-256",
                Secret::new(secret.as_bytes().to_vec()).sign(body),
            );
        }
        let resp = req.body(body.to_vec()).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn deliver(&self, event: &str, delivery: &str, payload: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(payload).unwrap();
        self.send(event, delivery, &body, Some(SECRET)).await
    }
}

fn repository(full_name: &str) -> Value {
    json!({
        "id": 1296269,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": full_name.split('/').nth(1).unwrap(),
        "full_name": full_name,
        "private": false,
        "html_url": format!("https://github.com/{full_name}"),
        "clone_url": format!("https://github.com/{full_name}.git"),
        "ssh_url": format!("git@github.com:{full_name}.git"),
        "default_branch": "main",
        "owner": { "login": full_name.split('/').next().unwrap(), "id": 1, "type": "Organization" }
    })
}

fn pull_request(number: u64, branch: &str, state: &str, merged: bool) -> Value {
    json!({
        "url": format!("https://api.github.com/repos/acme/widget/pulls/{number}"),
        "id": 1000 + number,
        "html_url": format!("https://github.com/acme/widget/pull/{number}"),
        "number": number,
        "state": state,
        "locked": false,
        "title": "Add tests",
        "user": { "login": "alice-gh", "id": 11, "type": "User" },
        "body": "Opened by Canopy",
        "draft": false,
        "merged": merged,
        "merged_at": if merged { json!("2026-11-22T10:00:00Z") } else { Value::Null },
        "head": { "label": format!("acme:{branch}"), "ref": branch, "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e" },
        "base": { "label": "acme:main", "ref": "main", "sha": "e5bd3914e2e596debea16f433f57875b5b90bcd6" }
    })
}

fn pr_event(action: &str, repo: &str, pr: Value) -> Value {
    json!({
        "action": action,
        "number": pr["number"],
        "pull_request": pr,
        "repository": repository(repo),
        "sender": { "login": "alice-gh", "id": 11, "type": "User" }
    })
}

/// What a refused delivery must not have changed: the feature's history.
async fn changes(base: &str, feature_id: &str) -> u64 {
    get_json(format!("{base}/api/features/{feature_id}/history?limit=1")).await["total"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn webhooks_track_pull_requests_and_refuse_what_they_cannot_trust() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path());
    config.github.github_webhook_secret = Some(SECRET.into());
    let server = start_with(config).await;
    let base = server.url().to_owned();
    let hook = Hook {
        base: base.clone(),
        client: http_anon(),
    };
    // No OAuth app configured: nothing to offer at sign-in, and the
    // login route says so.
    let offered = get_json(format!("{base}/api/github/config")).await;
    assert_eq!(offered["sign_in"], false, "{offered}");
    let login = http_anon()
        .get(format!("{base}/api/github/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 404);

    let (fid, _) = create_feature_with(
        &base,
        json!({
            "title": "Widget work",
            "description": "with a repository",
            "repo": { "url": "git@github.com:Acme/widget.git", "base_branch": "main" }
        }),
    )
    .await;
    let sid = create_session(&base, &fid, "Add tests").await;
    let other_sid = create_session(&base, &fid, "Add tests").await;
    let branch = canopy_protocol::git::session_branch("Widget work", "Add tests", &sid);
    // A feature without a repository is never matched.
    create_feature(&base, "No repository").await;
    let session = |doc: &Value, s: &str| doc["document"]["sessions"][s].clone();

    // Opened on the session's branch: the link and state land in the session.
    let (status, body) = hook
        .deliver(
            "pull_request",
            "d-opened",
            &pr_event(
                "opened",
                "acme/widget",
                pull_request(7, &branch, "open", false),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "applied");
    assert_eq!(body["session_id"], sid.as_str());
    let doc = snapshot(&base, &fid).await;
    assert_eq!(
        session(&doc, &sid)["pr"],
        json!({ "url": "https://github.com/acme/widget/pull/7", "number": 7, "state": "open" })
    );
    assert!(
        session(&doc, &other_sid)["pr"].is_null(),
        "only its own session"
    );
    let history = get_json(format!("{base}/api/features/{fid}/history?limit=1")).await;
    assert_eq!(history["changes"][0]["author"], "@github");
    assert_eq!(history["changes"][0]["message"], "pull request #7 open");
    let before = changes(&base, &fid).await;

    // Refused, and nothing changes.
    let opened = serde_json::to_vec(&pr_event(
        "closed",
        "acme/widget",
        pull_request(7, &branch, "closed", true),
    ))
    .unwrap();
    for (what, event, delivery, body, sign, want, code) in [
        (
            "replayed delivery",
            "pull_request",
            "d-opened",
            opened.clone(),
            Some(SECRET),
            409,
            "replayed_delivery",
        ),
        (
            "no signature",
            "pull_request",
            "d-1",
            opened.clone(),
            None,
            401,
            "bad_signature",
        ),
        (
            "another secret",
            "pull_request",
            "d-2",
            opened.clone(),
            Some("another-secret-0123456789"),
            401,
            "bad_signature",
        ),
        (
            "no delivery id",
            "pull_request",
            "",
            opened.clone(),
            Some(SECRET),
            400,
            "bad_delivery",
        ),
        (
            "hostile delivery id",
            "pull_request",
            "d 7; rm -rf /",
            opened.clone(),
            Some(SECRET),
            400,
            "bad_delivery",
        ),
        (
            "not JSON",
            "pull_request",
            "d-3",
            b"{\"action\":".to_vec(),
            Some(SECRET),
            400,
            "bad_payload",
        ),
        (
            "not a pull request",
            "pull_request",
            "d-4",
            br#"{"action":"opened","pull_request":{"number":"x"}}"#.to_vec(),
            Some(SECRET),
            400,
            "bad_payload",
        ),
        (
            "oversized",
            "pull_request",
            "d-5",
            vec![b' '; 2 << 20],
            Some(SECRET),
            413,
            "",
        ),
    ] {
        let (status, body) = hook.send(event, delivery, &body, sign).await;
        assert_eq!(status, want, "{what}: {body}");
        if !code.is_empty() {
            assert_eq!(body["error"]["code"], code, "{what}: {body}");
        }
    }
    // A tampered body under a signature of the original.
    let mut tampered = opened.clone();
    let signature = Secret::new(SECRET.as_bytes().to_vec()).sign(&opened);
    tampered.extend_from_slice(b" ");
    let resp = hook
        .client
        .post(format!("{base}/api/github/webhook"))
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "d-6")
        .header("x-hub-signature-256", signature)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // An unknown repository is refused; the same delivery, once it names a
    // known repository, is not a replay (the refusal changed nothing).
    let merged = |repo: &str| pr_event("closed", repo, pull_request(7, &branch, "closed", true));
    let (status, body) = hook
        .deliver("pull_request", "d-merged", &merged("acme/gadget"))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_repository")),
        "{body}"
    );
    assert_eq!(
        changes(&base, &fid).await,
        before,
        "refusals change nothing"
    );
    assert!(session(&snapshot(&base, &fid).await, &sid)["status"] != "completed");

    // Not Canopy's: a ping, another event, a branch of no session.
    assert_eq!(
        hook.deliver(
            "ping",
            "d-ping",
            &json!({"zen": "Keep it logically awesome."})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        hook.deliver("push", "d-push", &json!({"ref": "refs/heads/main"}))
            .await
            .0,
        202
    );
    let (status, body) = hook
        .deliver(
            "pull_request",
            "d-foreign",
            &pr_event(
                "opened",
                "acme/widget",
                pull_request(8, "feature/by-hand", "open", false),
            ),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("ignored")),
        "{body}"
    );

    // A stranger's @canopy request on the pull request: ignored, audited.
    let comment = json!({
        "action": "created",
        "comment": {
            "id": 99, "body": "@canopy please also cover the error path",
            "user": { "login": "mallory-gh", "id": 66, "type": "User" },
            "html_url": "https://github.com/acme/widget/pull/7#discussion_r99",
            "path": "src/lib.rs", "line": 3
        },
        "pull_request": pull_request(7, &branch, "open", false),
        "repository": repository("acme/widget"),
        "sender": { "login": "mallory-gh", "id": 66, "type": "User" }
    });
    let (status, body) = hook
        .deliver("pull_request_review_comment", "d-comment", &comment)
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("ignored")),
        "{body}"
    );
    let doc = snapshot(&base, &fid).await;
    assert_eq!(
        doc["document"]["queue"],
        json!([]),
        "no prompt from a stranger"
    );
    let audit = audit_log(&base, &fid).await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "webhook_refused"
                && e["detail"].as_str().unwrap().contains("mallory-gh")),
        "{audit}"
    );
    assert_eq!(changes(&base, &fid).await, before);

    // Merged: the session is completed.
    let (status, body) = hook
        .deliver("pull_request", "d-merged", &merged("acme/widget"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["completed"], true);
    let doc = snapshot(&base, &fid).await;
    assert_eq!(session(&doc, &sid)["status"], "completed");
    assert_eq!(session(&doc, &sid)["pr"]["state"], "merged");
    assert_eq!(session(&doc, &other_sid)["status"], "pending");

    let m = metrics(&base).await;
    for outcome in [
        "applied",
        "ignored",
        "bad_signature",
        "replayed",
        "unknown_repository",
        "stranger",
    ] {
        assert!(
            m.contains(&format!(
                "github_webhook_deliveries_total{{reason=\"{outcome}\"}}"
            )),
            "{outcome} not counted"
        );
    }
    server.stop().await.unwrap();

    // Without a secret there is no webhook to call.
    let server = start_server(dir.path()).await;
    let hook = Hook {
        base: server.url().to_owned(),
        client: http_anon(),
    };
    let (status, _) = hook
        .deliver(
            "pull_request",
            "d-late",
            &pr_event(
                "opened",
                "acme/widget",
                pull_request(9, &branch, "open", false),
            ),
        )
        .await;
    assert_eq!(status, 404);
    server.stop().await.unwrap();
}
