//! The local-process sandbox backend with the real OpenCode binary: the
//! workspace (clone, fallback, reuse), the record that lets a new server
//! adopt running sandboxes, reconcile's clean-up, restart, remove and
//! stop_all, and that stopping leaves no process behind.
//!
//! Sandboxes deliberately outlive their backend, so every test keeps its
//! root in a [`Root`], which kills whatever still runs under it when the
//! test ends (passed or not).

use std::{os::unix::fs::PermissionsExt as _, path::PathBuf, time::Duration};

use canopy::{
    devmodel::{DevModel, MODEL_ID},
    opencode::OpenCodeClient,
    sandbox::{
        RepoSpec, Sandbox, SandboxBackend, SandboxSpec, local::LocalProcesses,
        opencode_config::ModelConfig,
    },
};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// Tests that never prompt give OpenCode a model that is not there; it only
/// looks for it when asked something.
const NO_MODEL: &str = "http://127.0.0.1:9/v1";

/// A temporary directory whose processes (anything whose working directory
/// is under it) are killed when it is dropped.
struct Root(tempfile::TempDir);

impl Root {
    fn new() -> Root {
        Root(tempfile::tempdir().unwrap())
    }

    fn sandboxes(&self) -> PathBuf {
        self.0.path().join("sandboxes")
    }

    fn backend(&self, model_url: &str) -> LocalProcesses {
        LocalProcesses::new(
            opencode_bin(),
            sidecar_bin(),
            self.sandboxes(),
            ModelConfig::scripted(model_url),
        )
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        for pid in processes_in(self.0.path()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn spec(session_id: &str, repo: Option<RepoSpec>) -> SandboxSpec {
    SandboxSpec {
        session_id: session_id.to_owned(),
        feature_id: "ftr_aaaaaaaaaaaaaaaaaaaa".to_owned(),
        repo,
        sidecar: offline_sidecar(),
    }
}

/// Running OpenCode processes serving `sandbox`'s port.
fn opencode_serving(sandbox: &Sandbox) -> Vec<i32> {
    let port = sandbox.base_url.rsplit(':').next().unwrap().to_owned();
    running_pids()
        .into_iter()
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.iter().any(|a| a.contains("opencode"))
                && args.windows(2).any(|w| w[0] == "--port" && w[1] == port)
        })
        .collect()
}

/// The sandbox's sidecar: a `canopy-sidecar` process with the session's
/// marker.
fn sidecar_of(sandbox: &Sandbox) -> Vec<i32> {
    let marker = format!("CANOPY_SANDBOX_SESSION={}", sandbox.session_id);
    running_pids()
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            cmdline
                .split(|b| *b == 0)
                .next()
                .is_some_and(|a| a.ends_with(b"canopy-sidecar"))
                && env.split(|b| *b == 0).any(|v| v == marker.as_bytes())
        })
        .collect()
}

async fn healthy(sandbox: &Sandbox) -> bool {
    OpenCodeClient::new(&sandbox.base_url, &sandbox.password)
        .healthy(Duration::from_secs(5))
        .await
}

/// A sandbox whose session pushed its branch before (its workspace lost)
/// continues from that branch, not from the base branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_continues_on_the_branch_it_pushed_before() {
    let root = Root::new();
    let bare = bare_repo(root.0.path());
    let session_id = canopy_protocol::ids::new_session_id();
    let work = canopy_protocol::git::session_branch("Widget", "Add tests", &session_id);
    let seed = root.0.path().join("seed");
    git(&seed, &["checkout", "-q", "-b", &work]).unwrap();
    std::fs::write(seed.join("NOTES.md"), "earlier work\n").unwrap();
    git(&seed, &["add", "NOTES.md"]).unwrap();
    git(
        &seed,
        &[
            "-c",
            "user.name=Agent",
            "-c",
            "user.email=a@example.invalid",
            "commit",
            "-q",
            "-m",
            "earlier",
        ],
    )
    .unwrap();
    git(&seed, &["push", "-q", bare.to_str().unwrap(), &work]).unwrap();

    let backend = root.backend(NO_MODEL);
    let s = start_on_branch(&backend, &session_id, &bare, &work).await;
    assert_eq!(
        std::fs::read_to_string(s.workspace.join("NOTES.md")).unwrap(),
        "earlier work\n"
    );
    // Shallow: the branch's last commit, without the history behind it.
    assert_eq!(
        git(&s.workspace, &["log", "--format=%s"]).unwrap(),
        "earlier"
    );
    assert_eq!(
        git(&s.workspace, &["rev-parse", "--is-shallow-repository"]).unwrap(),
        "true"
    );
    backend.stop(&session_id).await.unwrap();
}

/// Start a sandbox of `bare`'s trunk on the session branch `work`; it must
/// clone without error and be on that branch.
async fn start_on_branch(
    backend: &LocalProcesses,
    session_id: &str,
    bare: &std::path::Path,
    work: &str,
) -> Sandbox {
    let s = backend
        .start(spec(
            session_id,
            Some(RepoSpec {
                url: format!("file://{}", bare.display()),
                branch: "trunk".into(),
                work_branch: Some(work.to_owned()),
                // Shallow, as sessions clone: the pushed branch is fetched.
                depth: 1,
                credential: None,
            }),
        ))
        .await
        .unwrap();
    assert_eq!(s.clone_error, None);
    assert_eq!(s.branch.as_deref(), Some(work));
    s
}

fn record_path(root: &Root, session_id: &str) -> PathBuf {
    root.sandboxes().join(session_id).join("sandbox.json")
}

fn read_record(root: &Root, session_id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(record_path(root, session_id)).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_sandbox_clones_the_repository_on_its_branch() {
    let root = Root::new();
    let bare = bare_repo(root.0.path());
    let backend = root.backend(NO_MODEL);
    assert_eq!(backend.name(), "local");
    let session_id = canopy_protocol::ids::new_session_id();
    let work = canopy_protocol::git::session_branch("Widget", "Add tests", &session_id);
    // On its own branch, made from trunk.
    let s = start_on_branch(&backend, &session_id, &bare, &work).await;
    assert_eq!(s.backend, "local");
    assert_eq!(s.session_id, session_id);
    assert_eq!(s.feature_id, "ftr_aaaaaaaaaaaaaaaaaaaa");
    assert_eq!(
        s.workspace,
        root.sandboxes().join(&session_id).join("workspace")
    );
    assert_eq!(
        std::fs::read_to_string(s.workspace.join("README.md")).unwrap(),
        "hello from trunk\n"
    );
    assert_eq!(git(&s.workspace, &["log", "--format=%s"]).unwrap(), "seed");
    // The agent can commit: it has an identity in the workspace.
    assert_eq!(
        git(&s.workspace, &["config", "--local", "user.email"]).unwrap(),
        "agent@canopy.invalid"
    );
    assert_eq!(
        git(&s.workspace, &["config", "--local", "user.name"]).unwrap(),
        "Canopy agent"
    );
    assert!(healthy(&s).await);
    assert!(backend.alive(&session_id).await);
    assert_eq!(opencode_serving(&s).len(), 1);

    // The record a later server adopts from: private, and complete.
    let path = record_path(&root, &session_id);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let record = read_record(&root, &session_id);
    assert_eq!(record["password"], s.password.as_str());
    assert_eq!(record["session_id"], session_id.as_str());
    assert_eq!(record["feature_id"], "ftr_aaaaaaaaaaaaaaaaaaaa");
    assert_eq!(record["branch"], work.as_str());
    assert!(record["clone_error"].is_null());
    // The recorded process is the sidecar, which runs OpenCode.
    assert_eq!(vec![record["pid"].as_i64().unwrap() as i32], sidecar_of(&s));
    assert!(
        record["control_secret"]
            .as_str()
            .is_some_and(|c| c.len() >= 32)
    );
    assert!(
        s.control_url
            .ends_with(&format!(":{}", record["sidecar_port"]))
    );
    assert!(s.base_url.ends_with(&format!(":{}", record["port"])));
    assert!(record["started_at"].as_u64().unwrap() > 0);

    backend.stop(&session_id).await.unwrap();
    assert!(!backend.alive(&session_id).await);
    assert!(!healthy(&s).await);
    assert!(!path.exists(), "the record outlived the sandbox");
    assert_eq!(processes_in(&root.sandboxes()), Vec::<i32>::new());
    // The workspace is kept.
    assert!(s.workspace.join("README.md").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_repository_gives_an_empty_one_and_says_why() {
    let root = Root::new();
    let bare = bare_repo(root.0.path());
    let backend = root.backend(NO_MODEL);
    let unreachable = canopy_protocol::ids::new_session_id();
    let s = backend
        .start(spec(
            &unreachable,
            Some(RepoSpec {
                url: "http://someone:hunter2@127.0.0.1:9/nope.git".into(),
                branch: "trunk".into(),
                work_branch: None,
                depth: 0,
                credential: None,
            }),
        ))
        .await
        .unwrap();
    let why = s.clone_error.clone().expect("a clone error");
    assert!(why.contains("http://127.0.0.1:9/nope.git"), "{why}");
    assert!(
        why.contains("127.0.0.1 port 9") || why.contains("unable to access"),
        "{why}"
    );
    assert!(
        !why.contains("hunter2") && !why.contains("someone"),
        "{why}"
    );
    assert_eq!(s.branch.as_deref(), Some("main"));
    assert!(s.workspace.join(".git").is_dir());
    assert!(
        git(&s.workspace, &["rev-parse", "--verify", "HEAD"]).is_err(),
        "an empty repository has no commits"
    );
    assert!(healthy(&s).await);

    // A branch the repository does not have fails the same way.
    let bad_branch = canopy_protocol::ids::new_session_id();
    let t = backend
        .start(spec(
            &bad_branch,
            Some(RepoSpec {
                url: format!("file://{}", bare.display()),
                branch: "no-such-branch".into(),
                work_branch: None,
                depth: 0,
                credential: None,
            }),
        ))
        .await
        .unwrap();
    let why = t.clone_error.clone().expect("a clone error");
    assert!(why.contains("no-such-branch"), "{why}");
    assert_eq!(t.branch.as_deref(), Some("main"));
    assert!(!t.workspace.join("README.md").exists());
    assert!(healthy(&t).await);

    // stop_all ends both.
    backend.stop_all().await;
    assert!(!backend.alive(&unreachable).await);
    assert!(!backend.alive(&bad_branch).await);
    assert!(!healthy(&s).await && !healthy(&t).await);
    assert!(!record_path(&root, &unreachable).exists());
    assert!(!record_path(&root, &bad_branch).exists());
    assert_eq!(processes_in(&root.sandboxes()), Vec::<i32>::new());

    // The workspace is reused on the next start (no second clone attempt),
    // and still says why it is empty.
    let again = backend.start(spec(&unreachable, None)).await.unwrap();
    assert_eq!(again.clone_error, s.clone_error);
    assert_eq!(again.branch.as_deref(), Some("main"));
    backend.stop_all().await;
    assert_eq!(processes_in(&root.sandboxes()), Vec::<i32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_server_adopts_running_sandboxes_and_can_stop_them() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let model_stop = CancellationToken::new();
    let model = DevModel::start(listener, model_stop.clone()).unwrap();
    let root = Root::new();
    let session_id = canopy_protocol::ids::new_session_id();
    let first = root.backend(&model.base_url());
    let s = first.start(spec(&session_id, None)).await.unwrap();
    // The server dies without a word: no destructor runs.
    std::mem::forget(first);
    assert!(healthy(&s).await, "the sandbox went with its server");

    let second = root.backend(&model.base_url());
    assert!(!second.alive(&session_id).await, "not adopted yet");
    let adopted = second.reconcile().await.unwrap();
    assert_eq!(adopted, vec![s.clone()]);
    assert!(second.alive(&session_id).await);
    assert!(healthy(&adopted[0]).await);
    // Reconciling again changes nothing.
    assert_eq!(second.reconcile().await.unwrap(), vec![s.clone()]);
    assert_eq!(opencode_serving(&s).len(), 1);

    // The adopted OpenCode works: its agent starts a process that outlives
    // the command (a dev server, say) ...
    let http = reqwest::Client::new();
    let dir = s.workspace.to_str().unwrap().to_owned();
    let session: Value = http
        .post(format!("{}/session?directory={dir}", s.base_url))
        .basic_auth("opencode", Some(&s.password))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let oc_session = session["id"].as_str().expect("a session id").to_owned();
    let before = processes_in(&root.sandboxes());
    let answer: Value = tokio::time::timeout(
        Duration::from_secs(120),
        http.post(format!(
            "{}/session/{oc_session}/message?directory={dir}",
            s.base_url
        ))
        .basic_auth("opencode", Some(&s.password))
        .json(&json!({
            "model": {"providerID": "canopy", "modelID": MODEL_ID},
            "parts": [{"type": "text", "text": "run: sleep 600 >/dev/null 2>&1 &"}]
        }))
        .send(),
    )
    .await
    .expect("the agent loop did not finish")
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(answer["info"]["error"].is_null(), "{answer}");
    let after = processes_in(&root.sandboxes());
    let started: Vec<i32> = after
        .iter()
        .copied()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(
        !started.is_empty(),
        "the agent's background command is not running ({before:?} → {after:?})"
    );

    // ... and stopping the adopted sandbox ends all of it.
    second.stop(&session_id).await.unwrap();
    assert!(!second.alive(&session_id).await);
    assert!(!healthy(&s).await);
    assert!(!record_path(&root, &session_id).exists());
    assert_eq!(opencode_serving(&s), Vec::<i32>::new());
    assert_eq!(processes_in(&root.sandboxes()), Vec::<i32>::new());
    // Idempotent, and nothing is left to adopt.
    second.stop(&session_id).await.unwrap();
    assert_eq!(
        root.backend(NO_MODEL).reconcile().await.unwrap(),
        Vec::<Sandbox>::new()
    );
    model_stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_stops_what_does_not_answer_and_forgets_bad_records() {
    let root = Root::new();
    // A real OpenCode whose record no longer lets anyone in (the password
    // is wrong): it cannot be used, so it is stopped.
    let unusable = canopy_protocol::ids::new_session_id();
    let first = root.backend(NO_MODEL);
    let s = first.start(spec(&unusable, None)).await.unwrap();
    std::mem::forget(first);
    let mut record = read_record(&root, &unusable);
    record["password"] = json!("not-the-password");
    std::fs::write(record_path(&root, &unusable), record.to_string()).unwrap();

    // A record whose pid is now someone else's process.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let stale = canopy_protocol::ids::new_session_id();
    std::fs::create_dir_all(root.sandboxes().join(&stale)).unwrap();
    std::fs::write(
        record_path(&root, &stale),
        json!({
            "pid": sleeper.id(), "port": 9, "password": "x",
            "feature_id": "ftr_aaaaaaaaaaaaaaaaaaaa", "session_id": stale,
            "workspace": root.sandboxes().join(&stale).join("workspace"),
            "branch": null, "clone_error": null, "started_at": 1
        })
        .to_string(),
    )
    .unwrap();
    // A record that names pid 1 (it must never be signalled).
    let init = canopy_protocol::ids::new_session_id();
    std::fs::create_dir_all(root.sandboxes().join(&init)).unwrap();
    let mut init_record = read_record(&root, &stale);
    init_record["pid"] = json!(1);
    init_record["session_id"] = json!(init);
    std::fs::write(record_path(&root, &init), init_record.to_string()).unwrap();
    // Malformed records.
    let garbage = canopy_protocol::ids::new_session_id();
    std::fs::create_dir_all(root.sandboxes().join(&garbage)).unwrap();
    std::fs::write(record_path(&root, &garbage), "{not json").unwrap();
    let misfiled = canopy_protocol::ids::new_session_id();
    std::fs::create_dir_all(root.sandboxes().join(&misfiled)).unwrap();
    std::fs::write(record_path(&root, &misfiled), init_record.to_string()).unwrap();
    // Not a session directory: not ours to touch.
    let foreign = root.sandboxes().join("not-a-session");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("sandbox.json"), "{}").unwrap();

    let backend = root.backend(NO_MODEL);
    assert_eq!(backend.reconcile().await.unwrap(), Vec::<Sandbox>::new());
    for session in [&unusable, &stale, &init, &garbage, &misfiled] {
        assert!(
            !record_path(&root, session).exists(),
            "{session}'s record was kept"
        );
        assert!(!backend.alive(session).await);
    }
    assert!(foreign.join("sandbox.json").exists());
    assert_eq!(
        sleeper.try_wait().unwrap(),
        None,
        "reconcile killed a process that is not a sandbox"
    );
    assert_eq!(opencode_serving(&s), Vec::<i32>::new(), "not stopped");
    assert!(!healthy(&s).await);
    assert_eq!(processes_in(&root.sandboxes()), Vec::<i32>::new());
    // The workspaces are kept: the session may start again.
    assert!(s.workspace.join(".git").is_dir());
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replaces_the_process_and_remove_deletes_everything() {
    let root = Root::new();
    let backend = root.backend(NO_MODEL);
    let session_id = canopy_protocol::ids::new_session_id();
    let first = backend.start(spec(&session_id, None)).await.unwrap();
    std::fs::write(first.workspace.join("notes.md"), "work in progress").unwrap();
    let first_pids = opencode_serving(&first);
    assert_eq!(first_pids.len(), 1);

    // Starting a running session restarts it.
    let second = backend.start(spec(&session_id, None)).await.unwrap();
    assert_ne!(second.base_url, first.base_url);
    assert_ne!(second.password, first.password);
    assert_eq!(second.workspace, first.workspace);
    assert_eq!(
        opencode_serving(&first),
        Vec::<i32>::new(),
        "the first is still there"
    );
    assert!(
        first_pids
            .iter()
            .all(|p| proc_state(*p).is_none_or(|s| s == 'Z'))
    );
    assert!(!healthy(&first).await);
    assert!(healthy(&second).await);
    assert!(backend.alive(&session_id).await);
    assert_eq!(
        std::fs::read_to_string(second.workspace.join("notes.md")).unwrap(),
        "work in progress"
    );
    assert_eq!(
        read_record(&root, &session_id)["password"],
        second.password.as_str()
    );
    // The previous run's log is kept next to the new one.
    let dir = root.sandboxes().join(&session_id);
    assert!(dir.join("sidecar.log.1").exists());
    let mut expected = [sidecar_of(&second), opencode_serving(&second)].concat();
    expected.sort_unstable();
    let mut running = processes_in(&root.sandboxes());
    running.sort_unstable();
    assert_eq!(running, expected);

    backend.remove(&session_id).await.unwrap();
    assert!(!dir.exists(), "the session directory is still there");
    assert!(!backend.alive(&session_id).await);
    assert!(!healthy(&second).await);
    assert_eq!(processes_in(root.0.path()), Vec::<i32>::new());
    // Removing or stopping what is not there is fine; bad ids are refused.
    backend.remove(&session_id).await.unwrap();
    backend.stop(&session_id).await.unwrap();
    let err = backend.remove("../../etc").await.unwrap_err();
    assert!(err.to_string().contains("not a session id"), "{err}");
    assert!(!backend.alive("../../etc").await);
}
