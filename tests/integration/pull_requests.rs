//! GitHub end to end (issue 9, acceptance 1, 2, 4, 5): the server binary
//! (its logs captured) with real sandboxes and OpenCode driven by the
//! scripted model, against a fake GitHub Enterprise on loopback that
//! speaks the real protocols: `git http-backend` behind HTTP Basic
//! credentials for clone and push, GitHub's REST shapes for the App's
//! installation tokens, OAuth, users and pull requests (octocrab talks to
//! it through its base URL).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::*;
use crate::fake_github::FakeGitHub;

pub(crate) const APP_ID: u64 = 4242;
pub(crate) const CLIENT_ID: &str = "Iv1.canopytest0001";
pub(crate) const CLIENT_SECRET: &str = "canopy-test-oauth-client-secret";
const WEBHOOK_SECRET: &str = "whsec-pr-test-0123456789abcdef";

/// `canopy serve` with GitHub configured, its stderr (debug logs) in
/// `dir/server.log`.
struct Server {
    child: tokio::process::Child,
    base: String,
}

impl Server {
    async fn start(dir: &Path, gh: &FakeGitHub, model_url: &str) -> Server {
        let key = dir.join("app.pem");
        std::fs::write(&key, gh.app_private_key_pem()).unwrap();
        let secret = dir.join("client-secret");
        std::fs::write(&secret, CLIENT_SECRET).unwrap();
        let hook = dir.join("webhook-secret");
        std::fs::write(&hook, WEBHOOK_SECRET).unwrap();
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::File::create(data.join("server.log")).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_canopy"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--bootstrap-token", TOKEN])
            .arg("--data-dir")
            .arg(&data)
            .args(["--dispatch", "true", "--model-url", model_url])
            .args(["--github-web-url", &gh.web_url()])
            .args(["--github-api-url", &gh.api_url()])
            .args(["--github-app-id", &APP_ID.to_string()])
            .arg("--github-app-private-key-file")
            .arg(&key)
            .args(["--github-client-id", CLIENT_ID])
            .arg("--github-client-secret-file")
            .arg(&secret)
            .arg("--github-webhook-secret-file")
            .arg(&hook)
            .args(["--github-signup", "true"])
            .env("CANOPY_LOG", "debug")
            .env("CANOPY_OPENCODE_BIN", opencode_bin())
            .env("CANOPY_SIDECAR_BIN", sidecar_bin())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = printed_url(&mut child).await;
        Server { child, base }
    }

    async fn stop(mut self) {
        let pid = self.child.id().unwrap();
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        let _ = within("server exits", self.child.wait()).await;
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location in a {} answer", resp.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The browser's part of the OAuth flow: GitHub's authorize page (the fake
/// answers for whoever is signed in there) and back to Canopy's callback.
async fn through_github(authorize_url: &str, cookie: Option<&str>) -> reqwest::Response {
    let web = no_redirects();
    let at_github = web.get(authorize_url).send().await.unwrap();
    assert_eq!(
        at_github.status(),
        302,
        "{}",
        at_github.text().await.unwrap()
    );
    let callback = location(&at_github);
    let mut req = web.get(&callback);
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    req.send().await.unwrap()
}

/// A fresh browser begins a sign-in with GitHub (back to `/f/x`): the
/// cookie that binds it, and GitHub's authorize URL.
async fn begin_sign_in(base: &str) -> (String, String) {
    let start = no_redirects()
        .get(format!("{base}/api/github/login?return_to=/f/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        start.status(),
        303,
        "{}",
        start.text().await.unwrap_or_default()
    );
    let cookie = start.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (cookie, location(&start))
}

/// `GET /api/github/config`, without a token.
async fn github_config(base: &str) -> Value {
    http_anon()
        .get(format!("{base}/api/github/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Sign in with GitHub in a fresh browser: the Canopy token handed back.
async fn sign_in(base: &str) -> String {
    let (cookie, authorize) = begin_sign_in(base).await;
    let back = through_github(&authorize, Some(&cookie)).await;
    assert_eq!(
        back.status(),
        303,
        "{}",
        back.text().await.unwrap_or_default()
    );
    let to = location(&back);
    let token = to
        .strip_prefix("/f/x#canopy_token=")
        .unwrap_or_else(|| panic!("unexpected redirect {to}"));
    token.to_owned()
}

async fn post(base: &str, token: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = http_as(token)
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn open_pr(
    base: &str,
    token: &str,
    feature_id: &str,
    session_id: &str,
) -> (u16, Value) {
    post(
        base,
        token,
        &format!("/api/features/{feature_id}/sessions/{session_id}/pr"),
        json!({}),
    )
    .await
}

pub(crate) fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            files_under(&path, out);
        } else if meta.is_file() {
            out.push(path);
        }
    }
}

async fn webhook(base: &str, event: &str, delivery: &str, payload: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(payload).unwrap();
    let sig = canopy::github::webhook::Secret::new(WEBHOOK_SECRET.as_bytes().to_vec()).sign(&body);
    let resp = http_anon()
        .post(format!("{base}/api/github/webhook"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn review_comment(pr: &Value, repo_web: &str, login: &str, id: u64, body: &str) -> Value {
    json!({
        "action": "created",
        "comment": {
            "id": 1_000 + id,
            "body": body,
            "path": "alice.txt",
            "line": 1,
            "diff_hunk": "@@ -0,0 +1 @@\n+from alice",
            "html_url": format!("{}#discussion_r{}", pr["html_url"].as_str().unwrap(), 1_000 + id),
            "user": { "login": login, "id": id, "type": "User" }
        },
        "pull_request": pr,
        "repository": {
            "id": 77,
            "name": "widget",
            "full_name": "acme/widget",
            "html_url": repo_web,
            "owner": { "login": "acme", "id": 9 }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_clone_push_and_open_pull_requests_as_the_people_who_asked() {
    let gh = FakeGitHub::start(APP_ID, CLIENT_ID, CLIENT_SECRET).await;
    let widget = gh.create_repo("acme", "widget", true);
    let gadget = gh.create_repo("acme", "gadget", false);
    gh.allow_anonymous("acme", "gadget");
    gh.add_user("alice-gh", 101, "Alice Admin", "alice@example.com");
    gh.add_user("bob-gh", 102, "Bob Builder", "bob@example.com");

    let stop = tokio_util::sync::CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let model = canopy::devmodel::DevModel::start(listener, stop.clone()).unwrap();
    let _model_stop = stop.drop_guard();
    let dir = tempfile::tempdir().unwrap();
    let _reaper = Reaper(dir.path().to_owned());
    let server = Server::start(dir.path(), &gh, &model.base_url()).await;
    let base = server.base.clone();

    // The admin (an API-token user) links their GitHub account.
    let (status, linked) = post(&base, TOKEN, "/api/github/link", json!({})).await;
    assert_eq!(status, 200, "{linked}");
    gh.sign_in_as("alice-gh");
    let back = through_github(linked["authorize_url"].as_str().unwrap(), None).await;
    assert_eq!(back.status(), 303);
    assert_eq!(location(&back), "/#github=linked");

    // Bob has no Canopy user: signing in with GitHub makes one.
    gh.sign_in_as("bob-gh");
    let bob = sign_in(&base).await;
    let me = get_json_as(&base, &bob, "/api/me").await;
    assert_eq!(me["handle"], "bob-gh", "{me}");
    assert_eq!(me["display_name"], "Bob Builder");
    assert_eq!(me["email"], "bob@example.com");
    // A state is good once; a callback with a forged state is refused.
    let forged = no_redirects()
        .get(format!(
            "{base}/api/github/callback?code=abc&state={}",
            "0".repeat(32)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    // What a sign-in page may offer, asked by anyone.
    assert_eq!(
        github_config(&base).await,
        json!({ "sign_in": true, "signup": true })
    );
    // GitHub says no: the browser goes back where it was, the reason in
    // the fragment (not a bare JSON error).
    let (cookie, authorize) = begin_sign_in(&base).await;
    let state = authorize
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("state="))
        .unwrap()
        .to_owned();
    let refused = no_redirects()
        .get(format!(
            "{base}/api/github/callback?error=access_denied&error_description=The+user+said+no&state={state}"
        ))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 303);
    let to = location(&refused);
    assert!(
        to.starts_with("/f/x#github_error=github_refused&message=") && to.contains("said%20no"),
        "{to}"
    );

    let (feature_id, _) = create_feature_with(
        &base,
        json!({
            "title": "Widget polish",
            "description": "small things",
            "repo": { "url": widget, "base_branch": "main" }
        }),
    )
    .await;
    assert_eq!(
        set_member(&base, &feature_id, "bob-gh", "contributor").await,
        200
    );
    let s1 = create_session(&base, &feature_id, "Greetings").await;

    // Bad input: git credentials are for the session's sandbox only; a
    // person asking gets 403, whatever the body.
    let path = format!("/api/features/{feature_id}/sessions/{s1}/git-credential");
    let (status, refused) = post(&base, TOKEN, &path, json!({ "host": "127.0.0.1" })).await;
    assert_eq!(status, 403, "{refused}");
    let (status, _) = post(&base, TOKEN, &path, json!("not an object")).await;
    assert_eq!(status, 403);
    // A feature without a repository has no pull request to open.
    let (bare_feature, _) = create_feature(&base, "No repository").await;
    let lonely = create_session(&base, &bare_feature, "Alone").await;
    let (status, none) = open_pr(&base, TOKEN, &bare_feature, &lonely).await;
    assert_eq!(status, 409, "{none}");
    assert_eq!(none["error"]["code"], "no_github_repository");
    // A session of another feature, or a malformed id, is no session of
    // this one.
    for other in [lonely.as_str(), "ses_nonsense"] {
        let (status, unknown) = open_pr(&base, TOKEN, &feature_id, other).await;
        assert_eq!(status, 422, "{unknown}");
        assert_eq!(unknown["error"]["code"], "unknown_session");
    }
    // A callback without a state, or with GitHub's refusal, changes nothing.
    let missing = no_redirects()
        .get(format!("{base}/api/github/callback?code=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);

    // 1. Two people's prompts, two attributed commits.
    let first = enqueue(&base, &feature_id, &s1, "write alice.txt: from alice").await;
    let second = enqueue_as(&bob, &base, &feature_id, &s1, "write bob.txt: from bob").await;
    settled(&base, &feature_id, &first).await;
    let done = settled(&base, &feature_id, &second).await;
    assert_eq!(done.status, canopy_protocol::feature::QueueStatus::Done);
    let workspace = dir
        .path()
        .join("data/sandboxes")
        .join(&s1)
        .join("workspace");
    assert_eq!(
        git(&workspace, &["rev-parse", "--is-shallow-repository"]).unwrap(),
        "true",
        "clones are shallow by default"
    );
    let states = sandbox_states(&base, &feature_id, &s1).await;
    assert!(
        states
            .iter()
            .any(|(s, d)| s == "syncing" && d == "cloning the repository (last 1 commit(s))"),
        "{states:?}"
    );
    let branch = canopy_protocol::git::session_branch("Widget polish", "Greetings", &s1);
    let (status, opened) = open_pr(&base, TOKEN, &feature_id, &s1).await;
    assert_eq!(status, 201, "{opened}");
    assert_eq!(opened["opened_as"], "user", "{opened}");
    assert_eq!(opened["opened_by"], "alice-gh", "{opened}");
    assert_eq!(opened["branch"], branch.as_str());
    let pr_url = format!("{}/acme/widget/pull/1", gh.web_url());
    assert_eq!(opened["pr"]["url"], pr_url.as_str());
    // The branch on the server has both people's commits.
    let bare = gh.bare_repo_path("acme", "widget");
    let log = git(&bare, &["log", "--format=%an|%s", &branch]).unwrap();
    let authors: Vec<&str> = log.lines().take(2).collect();
    assert!(authors[0].starts_with("Bob Builder|"), "{log}");
    assert!(
        authors[1].starts_with("admin|") || authors[1].starts_with("Admin"),
        "{log}"
    );
    // The pull request says who asked for what, and links back.
    let pulls = gh.pulls("acme", "widget");
    assert_eq!(pulls.len(), 1);
    let pr = &pulls[0];
    assert_eq!(pr["user"]["login"], "alice-gh");
    assert_eq!(pr["head"]["ref"], branch.as_str());
    assert_eq!(pr["base"]["ref"], "main");
    let body = pr["body"].as_str().unwrap();
    assert!(body.contains("Bob Builder"), "{body}");
    assert!(body.contains("> write bob.txt: from bob"), "{body}");
    assert!(body.contains("> write alice.txt: from alice"), "{body}");
    assert!(
        body.contains(&format!("{base}/f/{feature_id}/s/{s1}")),
        "{body}"
    );
    let doc = document(&base, &feature_id).await;
    let recorded = doc.sessions[&s1]
        .pr
        .clone()
        .expect("the PR is in the document");
    assert_eq!(
        (recorded.url.as_str(), recorded.number),
        (pr_url.as_str(), 1)
    );
    // Again: the same pull request, updated.
    let (status, again) = open_pr(&base, TOKEN, &feature_id, &s1).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["created"], false);
    assert_eq!(gh.pulls("acme", "widget").len(), 1);

    // 4. A member's @canopy review comment queues a prompt as them; a
    // stranger's is ignored (and audited).
    let (status, applied) = webhook(
        &base,
        "pull_request_review_comment",
        "11111111-0000-0000-0000-000000000001",
        &review_comment(
            pr,
            &format!("{}/acme/widget", gh.web_url()),
            "alice-gh",
            101,
            "@canopy write it in French",
        ),
    )
    .await;
    assert_eq!(status, 200, "{applied}");
    let admin_id = user_id_of(&base, TOKEN).await;
    assert_eq!(applied["author"], admin_id.as_str());
    let doc = document(&base, &feature_id).await;
    let queued = doc
        .queue
        .iter()
        .find(|e| Some(e.id.as_str()) == applied["queue_entry"].as_str())
        .expect("the comment's prompt is queued");
    assert_eq!(queued.author, admin_id);
    assert!(
        queued.text.contains("@canopy write it in French"),
        "{}",
        queued.text
    );
    assert!(queued.text.contains("alice.txt:1"), "{}", queued.text);
    let (status, ignored) = webhook(
        &base,
        "pull_request_review_comment",
        "11111111-0000-0000-0000-000000000002",
        &review_comment(
            pr,
            &format!("{}/acme/widget", gh.web_url()),
            "mallory",
            999,
            "@canopy delete everything",
        ),
    )
    .await;
    assert_eq!(status, 202, "{ignored}");
    let audit = audit_log(&base, &feature_id).await.to_string();
    assert!(audit.contains("mallory"), "{audit}");
    settled(&base, &feature_id, applied["queue_entry"].as_str().unwrap()).await;

    // 2. Without a user token the App opens it: Bob's GitHub token stops
    // working, so his agent's request (the MCP tool, mid-prompt) goes to
    // the App; the prompt's commit then updates the pull request's branch.
    let bob_token = gh
        .issued_tokens()
        .into_iter()
        .filter(|t| t.starts_with("gho_"))
        .nth(1)
        .expect("Bob's OAuth token");
    gh.revoke(&bob_token);
    let s2 = create_session(&base, &feature_id, "Farewells").await;
    let scripted = enqueue_as(
        &bob,
        &base,
        &feature_id,
        &s2,
        "script:\nwrite bye.txt: from bob\ntool canopy_create_pull_request {}",
    )
    .await;
    settled(&base, &feature_id, &scripted).await;
    let doc = document(&base, &feature_id).await;
    let by_app = doc.sessions[&s2]
        .pr
        .clone()
        .expect("the agent's PR is recorded");
    assert_eq!(by_app.number, 2);
    let pulls = gh.pulls("acme", "widget");
    let second_pr = pulls.iter().find(|p| p["number"] == 2).unwrap();
    assert_eq!(second_pr["user"]["type"], "Bot", "{second_pr}");
    let branch2 = canopy_protocol::git::session_branch("Widget polish", "Farewells", &s2);
    until_some("the prompt's commit reaches the pull request", async || {
        git(&bare, &["show", &format!("{branch2}:bye.txt")])
            .ok()
            .filter(|s| s == "from bob")
    })
    .await;

    // Without any way to open it: the compare page.
    let (f2, _) = create_feature_with(
        &base,
        json!({ "title": "Gadget", "repo": { "url": gadget, "base_branch": "main" } }),
    )
    .await;
    assert_eq!(set_member(&base, &f2, "bob-gh", "contributor").await, 200);
    let s3 = create_session(&base, &f2, "Tweak").await;
    let e3 = enqueue_as(&bob, &base, &f2, &s3, "write g.txt: gadget").await;
    settled(&base, &f2, &e3).await;
    let (status, compare) = open_pr(&base, &bob, &f2, &s3).await;
    assert_eq!(status, 200, "{compare}");
    assert_eq!(compare["pr"], Value::Null);
    let branch3 = canopy_protocol::git::session_branch("Gadget", "Tweak", &s3);
    assert_eq!(
        compare["compare_url"],
        format!(
            "{}/acme/gadget/compare/main...{branch3}?expand=1",
            gh.web_url()
        )
        .as_str()
    );
    assert!(gh.pulls("acme", "gadget").is_empty());

    // 5. No token anywhere: documents, transcripts, logs (the server's,
    // the sandboxes'), workspaces (`.git/config` included) and the
    // database, which keeps user tokens encrypted.
    let tokens = gh.issued_tokens();
    assert!(
        tokens.iter().any(|t| t.starts_with("ghs_")),
        "installation tokens were used"
    );
    assert!(tokens.iter().filter(|t| t.starts_with("gho_")).count() >= 2);
    let mut texts = Vec::new();
    for (f, sessions) in [(&feature_id, vec![&s1, &s2]), (&f2, vec![&s3])] {
        texts.push(snapshot(&base, f).await.to_string());
        for s in sessions {
            let history = get_json_as(
                &base,
                TOKEN,
                &format!("/api/features/{f}/sessions/{s}/transcript/history"),
            )
            .await;
            let newest = history["changes"][0]["hash"]
                .as_str()
                .expect("a transcript")
                .to_owned();
            let at = get_json_as(
                &base,
                TOKEN,
                &format!("/api/features/{f}/sessions/{s}/transcript/at?heads={newest}"),
            )
            .await;
            assert!(
                at.to_string().contains("Wrote"),
                "the transcript has the run: {at}"
            );
            texts.push(at.to_string());
        }
    }
    server.stop().await;
    let config = std::fs::read_to_string(workspace.join(".git/config")).unwrap();
    assert!(config.contains(&widget), "{config}");
    let mut files = Vec::new();
    files_under(&dir.path().join("data"), &mut files);
    assert!(files.iter().any(|f| f.ends_with("server.log")));
    for token in &tokens {
        for (i, text) in texts.iter().enumerate() {
            assert!(
                !text.contains(token.as_str()),
                "a token is in document/transcript {i}"
            );
        }
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "a token is in {}",
                file.display()
            );
        }
    }
    let log = std::fs::read_to_string(dir.path().join("data/server.log")).unwrap();
    assert!(
        log.contains("pull request"),
        "the log is the server's debug log"
    );
}

/// Acceptance 2's other half: a server with no GitHub App at all. The
/// sandbox clones and pushes with the GitHub token of the person it works
/// for (the admin, who linked their account), the whole history as the
/// feature asks; the admin's pull request is opened as them; Bob, who has
/// no GitHub account, gets the compare page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_an_app_people_open_pull_requests_or_get_a_compare_link() {
    let gh = FakeGitHub::start(APP_ID, CLIENT_ID, CLIENT_SECRET).await;
    let widget = gh.create_repo("acme", "widget", false);
    gh.add_user("alice-gh", 101, "Alice Admin", "alice@example.com");
    // A GitHub App's OAuth client: user tokens expire, with refresh
    // tokens. A minute, inside the margin in which Canopy refreshes them
    // before use: every use refreshes.
    gh.expiring_user_tokens(60);
    let model = Model::start().await;
    let dir = tempfile::tempdir().unwrap();
    let _reaper = Reaper(dir.path().to_owned());
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let mut config = agent_config(dir.path(), &model.url());
    config.github.github_web_url = gh.web_url();
    config.github.github_api_url = gh.api_url();
    config.github.github_client_id = Some(CLIENT_ID.into());
    config.github.github_client_secret_file = Some(secret);
    let server = start_with(config).await;
    let base = server.url().to_owned();

    let (status, linked) = post(&base, TOKEN, "/api/github/link", json!({})).await;
    assert_eq!(status, 200, "{linked}");
    gh.sign_in_as("alice-gh");
    let back = through_github(linked["authorize_url"].as_str().unwrap(), None).await;
    assert_eq!(back.status(), 303);
    let (_, bob) = add_user(&server, "bob").await;
    // `/api/me` says who is linked, so the web client can offer to link.
    let me = get_json_as(&base, TOKEN, "/api/me").await;
    assert_eq!(me["github"], json!({ "login": "alice-gh" }), "{me}");
    let me = get_json_as(&base, &bob, "/api/me").await;
    assert_eq!(me["github"], Value::Null, "{me}");
    assert_eq!(
        github_config(&base).await,
        json!({ "sign_in": true, "signup": false })
    );

    let (feature_id, _) = create_feature_with(
        &base,
        json!({
            "title": "Appless",
            "repo": { "url": widget, "base_branch": "main", "full_clone": true }
        }),
    )
    .await;
    assert_eq!(
        set_member(&base, &feature_id, "bob", "contributor").await,
        200
    );
    let sid = create_session(&base, &feature_id, "By hand").await;
    let first = enqueue(&base, &feature_id, &sid, "write a.txt: by the admin").await;
    let second = enqueue_as(&bob, &base, &feature_id, &sid, "write b.txt: by bob").await;
    settled(&base, &feature_id, &first).await;
    let done = settled(&base, &feature_id, &second).await;
    assert_eq!(done.status, canopy_protocol::feature::QueueStatus::Done);
    // The feature asked for the whole history.
    let workspace = dir.path().join("sandboxes").join(&sid).join("workspace");
    assert_eq!(
        git(&workspace, &["rev-parse", "--is-shallow-repository"]).unwrap(),
        "false"
    );
    assert!(document(&base, &feature_id).await.repo.unwrap().full_clone);
    // The session showed `syncing` while it cloned, then became ready.
    let states = sandbox_states(&base, &feature_id, &sid).await;
    let syncing = states
        .iter()
        .position(|(s, d)| s == "syncing" && d == "cloning the repository (whole history)")
        .unwrap_or_else(|| panic!("no syncing state: {states:?}"));
    assert!(
        states[syncing + 1..]
            .iter()
            .any(|(s, _)| s == "ready" || s == "running"),
        "{states:?}"
    );

    // Every token issued so far stops working: what works next was
    // refreshed.
    gh.expire_user_tokens();

    // Bob asks: the branch is pushed (with the admin's refreshed token),
    // but nobody can open the pull request for him.
    let branch = canopy_protocol::git::session_branch("Appless", "By hand", &sid);
    let (status, compare) = open_pr(&base, &bob, &feature_id, &sid).await;
    assert_eq!(status, 200, "{compare}");
    assert_eq!(compare["pr"], Value::Null);
    assert_eq!(
        compare["compare_url"],
        format!(
            "{}/acme/widget/compare/main...{branch}?expand=1",
            gh.web_url()
        )
        .as_str()
    );
    let bare = gh.bare_repo_path("acme", "widget");
    assert_eq!(
        git(&bare, &["show", &format!("{branch}:b.txt")]).unwrap(),
        "by bob"
    );
    assert!(gh.pulls("acme", "widget").is_empty());
    assert!(
        document(&base, &feature_id).await.sessions[&sid]
            .pr
            .is_none()
    );

    // The admin asks: opened as them.
    let (status, opened) = open_pr(&base, TOKEN, &feature_id, &sid).await;
    assert_eq!(status, 201, "{opened}");
    assert_eq!(opened["opened_as"], "user", "{opened}");
    assert_eq!(opened["opened_by"], "alice-gh");
    let pulls = gh.pulls("acme", "widget");
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0]["user"]["login"], "alice-gh");

    // The App was never asked for, and git was only ever let in as the
    // admin, with refreshed tokens (each refresh token works once: the
    // fake refuses a second use, so every refresh stored its successor).
    let requests = gh.requests();
    let refreshes = requests
        .iter()
        .filter(|r| {
            r.path == "/login/oauth/access_token" && r.body["grant_type"] == "refresh_token"
        })
        .count();
    let issued = gh.issued_tokens();
    assert!(refreshes >= 2, "{refreshes} refreshes");
    assert_eq!(
        issued.iter().filter(|t| t.starts_with("ghu_")).count(),
        refreshes + 1,
        "{issued:?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.auth != "app" && !r.auth.starts_with("installation:")),
        "no App credentials were used"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.path.ends_with("/git-receive-pack") && r.auth == "user:alice-gh"),
        "the push went in as the admin"
    );
    server.stop().await.unwrap();
}

/// Every sandbox state session `sid` went through, oldest first, with its
/// detail, read from the feature's history (each change to the session, as
/// the document was right after it).
async fn sandbox_states(base: &str, feature_id: &str, sid: &str) -> Vec<(String, String)> {
    let mut hashes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/features/{feature_id}/history?limit=200&path=sessions/{sid}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get_json_as(base, TOKEN, &path).await;
        for change in page["changes"].as_array().unwrap() {
            hashes.push(change["hash"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut states: Vec<(String, String)> = Vec::new();
    for hash in hashes.iter().rev() {
        let at = get_json_as(
            base,
            TOKEN,
            &format!("/api/features/{feature_id}/at?heads={hash}"),
        )
        .await;
        let sandbox = &at["document"]["sessions"][sid]["sandbox"];
        if let Some(state) = sandbox["state"].as_str() {
            let seen = (
                state.to_owned(),
                sandbox["detail"].as_str().unwrap_or_default().to_owned(),
            );
            if states.last() != Some(&seen) {
                states.push(seen);
            }
        }
    }
    states
}

async fn get_json_as(base: &str, token: &str, path: &str) -> Value {
    let resp = http_as(token)
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}
