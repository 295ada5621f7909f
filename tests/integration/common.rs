//! Shared test harness: real servers on 127.0.0.1:0 with real SQLite files,
//! real WebSocket peers, and the server binary for crash tests.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use canopy::{config::ServerConfig, server::RunningServer};
use samod::{BackoffConfig, DocHandle, DocumentId, PeerId, Repo};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// How long a test waits for something that should happen quickly; a
/// failure to happen within it is a failure, not a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Run `fut`, failing the test with `what` if it does not finish in time.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {PATIENCE:?} waiting for: {what}"),
    }
}

/// The API token of the first user (`admin`) of every test server: tests
/// start servers with `--bootstrap-token` so restarts and child processes
/// share one known credential.
pub const TOKEN: &str = "canopy_testtokenaaaaaaaaaaa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// The test configuration for `dir`.
pub fn config_for(dir: &Path) -> ServerConfig {
    let mut config = ServerConfig::for_data_dir(dir);
    config.bootstrap_token = Some(TOKEN.to_owned());
    // Agents only where a test asks for them (`agent_config`): a queued
    // prompt elsewhere must stay queued, not start OpenCode.
    config.dispatch = false;
    config
}

/// The pinned OpenCode binary; fails loudly when `make opencode` has not run.
pub fn opencode_bin() -> PathBuf {
    let bin = repo_root().join("sandbox/opencode/node_modules/.bin/opencode");
    assert!(
        bin.exists(),
        "OpenCode is not installed: run `make opencode` (make test does)"
    );
    bin
}

/// The sandbox sidecar binary of this build (`target/<profile>/
/// canopy-sidecar`), built first if a narrower `cargo test` skipped it.
pub fn sidecar_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/<profile>/deps/integration-… → target/<profile>
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().unwrap().parent().unwrap().to_owned();
            let bin = profile_dir.join("canopy-sidecar");
            if !bin.exists() {
                let status = std::process::Command::new(env!("CARGO"))
                    .args(["build", "-p", "canopy-sidecar"])
                    .current_dir(repo_root())
                    .status()
                    .unwrap();
                assert!(status.success(), "cannot build canopy-sidecar");
            }
            assert!(bin.exists(), "no sidecar at {}", bin.display());
            bin
        })
        .clone()
}

/// A sidecar configuration for sandboxes without a server (backend tests):
/// the sidecar works offline, retrying a port where nothing listens.
pub fn offline_sidecar() -> canopy::sandbox::SidecarSpec {
    canopy::sandbox::SidecarSpec {
        server_url: "http://127.0.0.1:9".into(),
        token: "no-server".into(),
        feature_doc: "automerge:2Cs2kDKqTjDR7TgYcQ84TEEJNWEw".into(),
    }
}

/// A server that runs agents in local sandboxes against the model at
/// `model_url` (a test's own `DevModel`).
pub fn agent_config(dir: &Path, model_url: &str) -> ServerConfig {
    let mut config = config_for(dir);
    config.dispatch = true;
    config.opencode_bin = opencode_bin();
    config.sidecar_bin = Some(sidecar_bin());
    config.model_url = Some(model_url.to_owned());
    config
}

/// Start an in-process server on `dir` with default settings.
pub async fn start_server(dir: &Path) -> RunningServer {
    start_with(config_for(dir)).await
}

/// Start an in-process server with a custom configuration (start from
/// [`config_for`] to keep the known token).
pub async fn start_with(config: ServerConfig) -> RunningServer {
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    canopy::server::start(config, listener, CancellationToken::new())
        .await
        .unwrap()
}

/// An HTTP client for the API, authenticated as the first user.
pub fn http() -> reqwest::Client {
    http_as(TOKEN)
}

/// An HTTP client authenticated with `token`.
pub fn http_as(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .unwrap()
}

/// An HTTP client with no credentials.
pub fn http_anon() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The base URL (`http://…`) of a sync URL (`ws://…/sync`).
pub fn base_of(sync_url: &str) -> String {
    sync_url
        .trim_end_matches("/sync")
        .replacen("ws://", "http://", 1)
}

/// The user id behind `token`.
pub async fn user_id_of(base: &str, token: &str) -> String {
    let me: Value = http_as(token)
        .get(format!("{base}/api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    me["user_id"].as_str().expect("GET /api/me").to_owned()
}

/// A sync ticket for `token`'s user as peer `u:<user>:<suffix>`; returns
/// `(peer_id, url to dial)`.
pub async fn ticket(base: &str, token: &str, suffix: &str) -> (String, String) {
    let user = user_id_of(base, token).await;
    let peer_id = format!("u:{user}:{suffix}");
    let resp = http_as(token)
        .post(format!("{base}/api/sync-ticket"))
        .json(&json!({ "peer_id": peer_id }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "sync ticket: {:?}", resp.text().await);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["peer_id"], peer_id.as_str());
    (peer_id, body["url"].as_str().unwrap().to_owned())
}

/// `PUT /api/features/{id}/members/{user}` as the first user; returns the status.
pub async fn set_member(base: &str, feature_id: &str, user: &str, role: &str) -> u16 {
    http()
        .put(format!("{base}/api/features/{feature_id}/members/{user}"))
        .json(&json!({ "role": role }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A new user who is `role` in `feature_id` (set by the first user, an
/// owner); returns `(user_id, token)`.
pub async fn add_member(
    server: &RunningServer,
    feature_id: &str,
    handle: &str,
    role: &str,
) -> (String, String) {
    let user = add_user(server, handle).await;
    assert_eq!(
        set_member(server.url(), feature_id, handle, role).await,
        200
    );
    user
}

/// `GET /api/features/{id}/audit` as the first user (an owner).
pub async fn audit_log(base: &str, feature_id: &str) -> Value {
    let resp = http()
        .get(format!("{base}/api/features/{feature_id}/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Make a user with a token (in-process server only); returns
/// `(user_id, token)`.
pub async fn add_user(server: &RunningServer, handle: &str) -> (String, String) {
    let users = server.state().users();
    let user = users
        .create_user(canopy::auth::NewUser {
            handle: handle.to_owned(),
            display_name: format!("{handle} (test)"),
            email: Some(format!("{handle}@example.com")),
        })
        .await
        .unwrap();
    let (_, token) = users
        .create_token(&user.user_id, "test", canopy::auth::TokenScope::User)
        .await
        .unwrap();
    (user.user_id, token)
}

/// `POST /api/features` and return `(feature_id, document_id)`.
pub async fn create_feature(base: &str, title: &str) -> (String, DocumentId) {
    create_feature_with(
        base,
        json!({ "title": title, "description": "made by a test" }),
    )
    .await
}

/// `POST /api/features` with this body (a repository, say).
pub async fn create_feature_with(base: &str, body: Value) -> (String, DocumentId) {
    let resp = http()
        .post(format!("{base}/api/features"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        201,
        "create feature: {:?}",
        resp.text().await
    );
    let body: Value = resp.json().await.unwrap();
    let feature_id = body["feature_id"].as_str().unwrap().to_owned();
    let doc_id: DocumentId = body["document_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        body["doc_url"].as_str().unwrap(),
        format!("automerge:{doc_id}")
    );
    (feature_id, doc_id)
}

/// `POST /api/features/{id}/sessions` and return the session id.
pub async fn create_session(base: &str, feature_id: &str, title: &str) -> String {
    let resp = http()
        .post(format!("{base}/api/features/{feature_id}/sessions"))
        .json(&json!({ "title": title }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        201,
        "create session: {:?}",
        resp.text().await
    );
    let body: Value = resp.json().await.unwrap();
    body["session_id"].as_str().unwrap().to_owned()
}

/// Redial `repo` (after a `close`) as the first user.
pub fn redial(repo: &Repo, sync_url: &str) -> samod::DialerHandle<canopy::client::Refused> {
    canopy::client::dial_with_token(repo, &base_of(sync_url), TOKEN, BackoffConfig::default())
        .unwrap()
}

/// `GET url` as JSON (any status).
pub async fn get_json(url: impl reqwest::IntoUrl) -> Value {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

/// `GET /metrics` as text.
pub async fn metrics(base: &str) -> String {
    http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `GET /api/features/{id}`.
pub async fn snapshot(base: &str, feature_id: &str) -> Value {
    let resp = http()
        .get(format!("{base}/api/features/{feature_id}"))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "GET feature {feature_id}: {body}");
    body
}

/// A Rust peer: its own samod repo (in memory) dialed into the server.
pub struct Peer {
    pub repo: Repo,
    pub dialer: samod::DialerHandle<canopy::client::Refused>,
}

impl Peer {
    /// Connect a new in-memory peer as the first user and wait for the handshake.
    pub async fn connect(sync_url: &str, name: &str) -> Peer {
        Peer::connect_as(sync_url, TOKEN, name).await
    }

    /// Connect a new in-memory peer with `token` and wait for the handshake.
    pub async fn connect_as(sync_url: &str, token: &str, name: &str) -> Peer {
        let base = base_of(sync_url);
        let user = user_id_of(&base, token).await;
        let repo = Repo::build_tokio()
            .with_peer_id(PeerId::from(format!(
                "u:{user}:{name}-{:08x}",
                rand::random::<u32>()
            )))
            .load()
            .await;
        let dialer = canopy::client::dial_with_token(
            &repo,
            &base,
            token,
            BackoffConfig {
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(500),
                max_retries: None,
            },
        )
        .unwrap();
        within("peer handshake", dialer.established())
            .await
            .unwrap();
        Peer { repo, dialer }
    }

    /// Find a document through the server.
    pub async fn find(&self, doc: &DocumentId) -> DocHandle {
        within("find", self.repo.find(doc.clone()))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("document {doc} unavailable"))
    }

    /// Wait until the server has acknowledged everything this peer has for `handle`.
    pub async fn synced(&self, handle: &DocHandle) {
        let conn = self.dialer.connection_id().expect("connected");
        within("server has our changes", handle.they_have_our_changes(conn)).await;
    }

    pub async fn stop(self) {
        self.dialer.close();
        self.repo.stop().await;
    }
}

/// Poll `check` until it returns true.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    within(what, async {
        loop {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The URL a `canopy serve` child (stdout piped) prints when it listens;
/// its stdout is drained from then on, so it never blocks on a full pipe.
pub async fn printed_url(child: &mut tokio::process::Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = within("server prints its URL", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("Canopy listening on ") {
                return url.trim().to_owned();
            }
        }
        panic!("server exited before printing its URL");
    })
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    url
}

/// The server binary as a child process (for SIGKILL tests).
pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub url: String,
}

impl ServerProcess {
    /// Start `canopy serve` on `dir` and wait for it to print its URL.
    pub async fn start(dir: &Path, extra: &[&str]) -> ServerProcess {
        // Any free port, unless the test chose one.
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_canopy"))
            .arg("serve")
            .args(listen)
            .arg("--data-dir")
            .arg(dir)
            .arg("--bootstrap-token")
            .arg(TOKEN)
            .args(extra)
            .env("CANOPY_LOG", "warn")
            // As in `config_for`: agents only when `extra` says `--dispatch true`.
            .env("CANOPY_DISPATCH", "false")
            .env(
                "CANOPY_OPENCODE_BIN",
                repo_root().join("sandbox/opencode/node_modules/.bin/opencode"),
            )
            .env("CANOPY_SIDECAR_BIN", sidecar_bin())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = printed_url(&mut child).await;
        ServerProcess { child, url }
    }

    pub fn sync_url(&self) -> String {
        format!("{}/sync", self.url.replacen("http://", "ws://", 1))
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap();
        let status = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
        within("server exits after SIGTERM", self.child.wait())
            .await
            .unwrap()
    }
}

/// Repository root (for the JS programs under tests/js).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run a Node program from tests/js; fail loudly if Node or the pinned
/// packages are missing.
pub async fn node(script: &str, args: &[&str]) -> String {
    let js = repo_root().join("tests/js");
    assert!(
        js.join("node_modules/@automerge/automerge-repo").is_dir(),
        "the JS interop packages are not installed: run `make js-deps` (make test does)"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("node")
            .arg(js.join(script))
            .args(args)
            .current_dir(&js)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("node {script} timed out"))
    .unwrap_or_else(|e| panic!("cannot run node (is Node.js installed?): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "node {script} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Apply one change to a document, with a message and a real timestamp.
pub fn edit<F>(handle: &DocHandle, message: &str, f: F)
where
    F: FnOnce(
        &mut automerge::transaction::Transaction<'_>,
    ) -> Result<(), canopy_protocol::SchemaError>,
{
    handle.with_document(|doc| {
        doc.transact_with(
            |_| canopy_protocol::ChangeMeta::now(message).commit_options(),
            f,
        )
        .unwrap_or_else(|e| panic!("{message}: {}", e.error));
    });
}

/// The typed document.
pub fn read(handle: &DocHandle) -> canopy_protocol::feature::FeatureDoc {
    handle.with_document(|doc| canopy_protocol::feature::read(doc).unwrap())
}

/// Current heads, sorted.
pub fn heads(handle: &DocHandle) -> Vec<automerge::ChangeHash> {
    let mut h = handle.with_document(|doc| doc.get_heads());
    h.sort();
    h
}

/// A learning to add.
pub fn learning(text: &str, author: &str) -> canopy_protocol::feature::NewLearning {
    canopy_protocol::feature::NewLearning {
        id: canopy_protocol::ids::new_learning_id(),
        text: text.to_owned(),
        author: author.to_owned(),
        from_session: None,
        importance: canopy_protocol::feature::Importance::Medium,
        files: vec![],
        created_at: now_ms(),
    }
}

/// A queue entry to append.
pub fn queue_entry(
    session_id: &str,
    text: &str,
    author: &str,
) -> canopy_protocol::feature::NewQueueEntry {
    canopy_protocol::feature::NewQueueEntry {
        id: canopy_protocol::ids::new_queue_entry_id(),
        session_id: session_id.to_owned(),
        author: author.to_owned(),
        text: text.to_owned(),
        created_at: now_ms(),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `/proc/<pid>/stat`'s state letter.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

pub fn running_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| proc_state(*pid).is_some_and(|s| s != 'Z'))
        .collect()
}

/// Running processes whose working directory is under `dir`: a sandbox's
/// OpenCode and everything its agent started.
pub fn processes_in(dir: &Path) -> Vec<i32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    running_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
        })
        .collect()
}

/// Kills, when dropped, every process whose working directory is under its
/// directory: sandboxes outlive the server by design, and a failing test
/// must not leave them running.
pub struct Reaper(pub PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in processes_in(&self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// The scripted model on a free loopback port, stopped when dropped.
pub struct Model {
    pub model: canopy::devmodel::DevModel,
    _stop: tokio_util::sync::DropGuard,
}

impl Model {
    pub async fn start() -> Model {
        let stop = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let model = canopy::devmodel::DevModel::start(listener, stop.clone()).unwrap();
        Model {
            model,
            _stop: stop.drop_guard(),
        }
    }

    /// Its `…/v1` base URL.
    pub fn url(&self) -> String {
        self.model.base_url()
    }
}

/// Whether a Docker daemon answers. Without one: fail when
/// `CANOPY_REQUIRE_DOCKER=1`, else print a loud note and return false (the
/// caller returns: skipped).
pub fn docker_or_skip(test: &str) -> bool {
    let answer = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output();
    let why = match answer {
        Ok(out) if out.status.success() => return true,
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        Err(e) => format!("cannot run the docker CLI: {e}"),
    };
    if std::env::var("CANOPY_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!(
            "{test}: CANOPY_REQUIRE_DOCKER=1 but no Docker daemon answers ({why}); \
             start one (apt-get install docker.io && dockerd &) or unset CANOPY_REQUIRE_DOCKER"
        );
    }
    eprintln!(
        "\n!!!!!!!!\n!!! SKIPPED {test}: no Docker daemon answers ({why}).\n\
         !!! Set CANOPY_REQUIRE_DOCKER=1 to make this a failure.\n!!!!!!!!\n"
    );
    false
}

/// The feature document as the API's snapshot shows it.
pub async fn document(base: &str, feature_id: &str) -> canopy_protocol::feature::FeatureDoc {
    let snap = snapshot(base, feature_id).await;
    serde_json::from_value(snap["document"].clone()).unwrap()
}

/// Queue a prompt over the API as the first user; its entry id.
pub async fn enqueue(base: &str, feature_id: &str, session_id: &str, text: &str) -> String {
    enqueue_as(TOKEN, base, feature_id, session_id, text).await
}

/// Queue a prompt over the API as the holder of `token`; its entry id.
pub async fn enqueue_as(
    token: &str,
    base: &str,
    feature_id: &str,
    session_id: &str,
    text: &str,
) -> String {
    let resp = http_as(token)
        .post(format!("{base}/api/features/{feature_id}/queue"))
        .json(&json!({ "session_id": session_id, "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// How long a test waits for agent work: a sandbox start (a container on
/// a loaded machine), then a few model round trips.
pub const AGENT_PATIENCE: Duration = Duration::from_secs(180);

/// Poll `check` every 100 ms until it returns a value.
pub async fn until_some<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    tokio::time::timeout(AGENT_PATIENCE, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out after {AGENT_PATIENCE:?}: {what}"))
}

/// Wait until queue entry `entry` has settled and its run is wrapped up:
/// the session no longer runs it (the server writes `idle` with the run's
/// commit, after the outcome), or it runs a later entry already.
pub async fn settled(
    base: &str,
    feature_id: &str,
    entry: &str,
) -> canopy_protocol::feature::QueueEntry {
    use canopy_protocol::feature::{QueueStatus, SessionStatus};
    until_some(&format!("entry {entry} settles"), async || {
        let doc = document(base, feature_id).await;
        let found = doc
            .queue
            .iter()
            .find(|e| e.id == entry && e.status.is_terminal())?;
        let session = doc.sessions.get(&found.session_id);
        let wrapped_up = session.is_none_or(|s| s.status != SessionStatus::Running)
            || doc.queue.iter().any(|e| {
                e.session_id == found.session_id
                    && e.id != entry
                    && matches!(e.status, QueueStatus::Dispatched | QueueStatus::Running)
            });
        wrapped_up.then(|| found.clone())
    })
    .await
}

/// A sidecar's replica: a samod repo with `agent_token` (an agent token for
/// `feature_id`/`session_id`) connected to the server, and its dialer.
pub async fn connect_agent(
    base: &str,
    agent_token: &str,
    feature_id: &str,
    session_id: &str,
) -> (samod::Repo, samod::DialerHandle<canopy::client::Refused>) {
    let repo = samod::Repo::build_tokio()
        .with_peer_id(samod::PeerId::from(format!(
            "a:{feature_id}:{session_id}:sidecar"
        )))
        .load()
        .await;
    let dialer =
        canopy::client::dial_with_token(&repo, base, agent_token, samod::BackoffConfig::default())
            .unwrap();
    within("the agent connects", dialer.established())
        .await
        .unwrap();
    (repo, dialer)
}

/// Run git in `cwd`; its trimmed stdout, or `Err(stderr)`.
pub fn git(cwd: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A bare repository under `dir` whose branch `trunk` has one commit with
/// `README.md`.
pub fn bare_repo(dir: &Path) -> PathBuf {
    let bare = dir.join("origin.git");
    let seed = dir.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    git(dir, &["init", "-q", "--bare", "-b", "trunk", "origin.git"]).unwrap();
    git(&seed, &["init", "-q", "-b", "trunk"]).unwrap();
    std::fs::write(seed.join("README.md"), "hello from trunk\n").unwrap();
    git(&seed, &["add", "README.md"]).unwrap();
    git(
        &seed,
        &[
            "-c",
            "user.name=Seed",
            "-c",
            "user.email=seed@example.invalid",
            "commit",
            "-q",
            "-m",
            "seed",
        ],
    )
    .unwrap();
    git(&seed, &["push", "-q", bare.to_str().unwrap(), "trunk"]).unwrap();
    bare
}
