//! Issue 6's acceptance: Docker sandboxes, with real containers of the
//! image `canopy sandbox build-image` makes, the pinned OpenCode and the
//! scripted model, on host networking so every packet stays on loopback.
//!
//! Without a Docker daemon these tests say so and pass, unless
//! `CANOPY_REQUIRE_DOCKER=1` (CI sets it): then they fail.

use std::{path::Path, process::Command, sync::OnceLock};

use canopy::{config::SandboxKind, server::RunningServer};
use canopy_protocol::{
    feature::QueueStatus,
    transcript::{self, PartKind},
};
use samod::DocumentId;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// Docker tests share two cores with the rest of the suite: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `docker …`, its stdout; panics with stderr on failure.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `docker …` that may fail.
fn docker_try(args: &[&str]) -> Option<String> {
    let out = Command::new("docker").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The sandbox image of this build (the debug sidecar), built once per test
/// run through `canopy sandbox build-image`.
pub fn test_image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let tag = "canopy-sandbox:it".to_owned();
            let out = Command::new(env!("CARGO_BIN_EXE_canopy"))
                .args(["sandbox", "build-image", "--tag", &tag])
                .arg("--sidecar-bin")
                .arg(sidecar_bin())
                .arg("--opencode-bin")
                .arg(opencode_bin())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "build-image failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            tag
        })
        .clone()
}

/// Everything Docker holds for a server id: removed when dropped, so a
/// failing test leaves nothing running.
struct DockerObjects(String);

impl DockerObjects {
    fn of(data: &Path) -> DockerObjects {
        DockerObjects(canopy::sandbox::docker::server_id(data).unwrap())
    }

    fn filter(&self) -> String {
        format!("label=dev.canopy.server={}", self.0)
    }

    /// Container names (running or not).
    fn containers(&self, all: bool) -> Vec<String> {
        let filter = self.filter();
        let mut args = vec!["ps", "--filter", &filter, "--format", "{{.Names}}"];
        if all {
            args.push("-a");
        }
        docker(&args)
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The running container of `session_id`.
    fn session_container(&self, session_id: &str) -> Option<String> {
        self.containers(false)
            .into_iter()
            .find(|n| n.ends_with(session_id))
    }

    fn pooled(&self) -> Vec<String> {
        self.containers(false)
            .into_iter()
            .filter(|n| n.contains("-pool-"))
            .collect()
    }
}

impl Drop for DockerObjects {
    fn drop(&mut self) {
        let filter = self.filter();
        if let Some(ids) = docker_try(&["ps", "-aq", "--filter", &filter]) {
            let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = docker_try(&args);
            }
        }
        for kind in ["volume", "image"] {
            let listed = if kind == "volume" {
                docker_try(&["volume", "ls", "-q", "--filter", &filter])
            } else {
                docker_try(&["images", "-q", "--filter", &filter])
            };
            for id in listed.unwrap_or_default().lines().filter(|l| !l.is_empty()) {
                let _ = docker_try(&[kind, "rm", "-f", id]);
            }
        }
    }
}

/// A server configuration with Docker sandboxes.
fn docker_config(dir: &Path, model_url: &str, pool: u64) -> canopy::config::ServerConfig {
    let mut config = agent_config(dir, model_url);
    config.sandbox = SandboxKind::Docker;
    config.docker.sandbox_image = test_image();
    config.docker.docker_network = "host".into();
    config.docker.warm_pool = pool;
    config.docker.sandbox_memory_mb = 1024;
    config.docker.sandbox_cpus = 1.5;
    config.docker.sandbox_pids = 512;
    config
}

/// A server with Docker sandboxes, its model, and what it holds in Docker
/// (removed when dropped). Holds the Docker tests' turn.
struct World {
    server: RunningServer,
    base: String,
    objects: DockerObjects,
    _model: Model,
    _dir: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl World {
    /// `None` when no Docker daemon answers (see [`docker_or_skip`]).
    async fn start(
        test: &str,
        pool: u64,
        tweak: impl FnOnce(&mut canopy::config::ServerConfig),
    ) -> Option<World> {
        if !docker_or_skip(test) {
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().await;
        let model = Model::start().await;
        let dir = tempfile::tempdir().unwrap();
        let objects = DockerObjects::of(dir.path());
        let mut config = docker_config(dir.path(), &model.url(), pool);
        tweak(&mut config);
        let server = start_with(config).await;
        let base = server.url().to_owned();
        Some(World {
            server,
            base,
            objects,
            _model: model,
            _dir: dir,
            _turn: turn,
        })
    }

    /// Stop the server; what it left in Docker is removed when the result
    /// is dropped.
    async fn stop(self) -> DockerObjects {
        let World {
            server, objects, ..
        } = self;
        server.stop().await.unwrap();
        objects
    }
}

async fn run_ok(base: &str, feature_id: &str, session_id: &str, text: &str) {
    let id = enqueue(base, feature_id, session_id, text).await;
    let entry = settled(base, feature_id, &id).await;
    assert_eq!(entry.status, QueueStatus::Done, "{text:?}: {entry:?}");
}

fn exec(container: &str, script: &str) -> String {
    docker(&["exec", container, "sh", "-c", script])
}

fn inspect(container: &str) -> Value {
    let text = docker(&["inspect", container]);
    serde_json::from_str::<Value>(&text).unwrap()[0].clone()
}

async fn logs(base: &str, feature_id: &str, session_id: &str, query: &str) -> (u16, String) {
    let resp = http()
        .get(format!(
            "{base}/api/features/{feature_id}/sessions/{session_id}/logs{query}"
        ))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prompt_runs_in_a_locked_down_container_and_commits_as_its_author() {
    let Some(w) = World::start("a_prompt_runs_in_a_locked_down_container", 0, |_| {}).await else {
        return;
    };
    let (server, base, objects) = (&w.server, w.base.clone(), &w.objects);
    let (fid, doc_id) = create_feature(&base, "In a container").await;
    let sid = create_session(&base, &fid, "Contained").await;

    run_ok(&base, &fid, &sid, "write hello.txt: hello from a container").await;

    // The file is in the container's workspace, committed by the sidecar
    // with the person who asked as author.
    let container = objects
        .session_container(&sid)
        .expect("the session's container runs");
    assert_eq!(
        exec(&container, "cat /sandbox/workspace/hello.txt"),
        "hello from a container"
    );
    let me = server
        .state()
        .users()
        .user(&user_id_of(&base, TOKEN).await)
        .await
        .unwrap()
        .unwrap();
    let log = exec(
        &container,
        "cd /sandbox/workspace && git log --format='%an|%s' && git show --name-only --format= HEAD",
    );
    let mut lines = log.lines();
    assert_eq!(
        lines.next(),
        Some(
            format!(
                "{}|write hello.txt: hello from a container",
                me.display_name
            )
            .as_str()
        ),
        "{log}"
    );
    assert_eq!(lines.last(), Some("hello.txt"), "{log}");
    let doc = document(&base, &fid).await;
    let session = &doc.sessions[&sid];
    assert_eq!(session.files_changed, vec!["hello.txt".to_owned()]);
    assert_eq!(session.sandbox.as_ref().unwrap().backend, "docker");

    // The transcript shows the write.
    let peer = Peer::connect(&server.sync_url(), "reader").await;
    let feature = peer.find(&doc_id).await;
    let url = read(&feature).sessions[&sid].transcript.clone().unwrap();
    let tid: DocumentId = url.trim_start_matches("automerge:").parse().unwrap();
    let t = peer.find(&tid).await;
    let transcript = t.with_document(|d| transcript::read(d).unwrap());
    let write = transcript
        .messages
        .iter()
        .flat_map(|m| m.parts.iter())
        .find(|p| p.kind == PartKind::Tool && p.tool.as_deref() == Some("write"))
        .expect("a write tool call in the transcript");
    assert!(
        write
            .input
            .as_deref()
            .unwrap_or_default()
            .contains("hello.txt"),
        "{write:?}"
    );

    // Least privilege, as Docker reports it.
    let info = inspect(&container);
    let host = &info["HostConfig"];
    assert_eq!(host["CapDrop"], json!(["ALL"]), "{host}");
    assert!(
        host["CapAdd"].is_null() || host["CapAdd"] == json!([]),
        "{host}"
    );
    assert_eq!(host["ReadonlyRootfs"], json!(true));
    assert!(
        host["SecurityOpt"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o.as_str().unwrap().starts_with("no-new-privileges")),
        "{host}"
    );
    assert_eq!(host["Memory"], json!(1024_i64 << 20));
    assert_eq!(host["NanoCpus"], json!(1_500_000_000_i64));
    assert_eq!(host["PidsLimit"], json!(512));
    assert_eq!(host["Privileged"], json!(false));
    assert_eq!(host["NetworkMode"], json!("host"));
    assert_eq!(
        host["Tmpfs"]["/tmp"].as_str().map(|s| s.contains("size=")),
        Some(true)
    );
    assert_eq!(info["Config"]["User"], json!("canopy"));
    assert_eq!(exec(&container, "id -u"), "10001");
    assert_eq!(
        exec(&container, "grep CapEff /proc/self/status | tr -d ' \\t'"),
        "CapEff:0000000000000000"
    );
    // The token is not in the container's configuration.
    let env = info["Config"]["Env"].to_string();
    assert!(!env.contains("CANOPY_SANDBOX_TOKEN"), "{env}");

    // A prompt that writes outside the workspace fails inside the sandbox,
    // and nothing on the host changes.
    let marker = format!("canopy-escape-{}", std::process::id());
    let host_before = std::fs::read_dir("/usr/local/bin").unwrap().count();
    // Encoded, so OpenCode's own path check (which refuses commands naming
    // paths outside the project) does not stop it first: the kernel must.
    let escape = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("touch /usr/local/bin/{marker} /etc/{marker} /{marker}; echo exit=$?"),
    );
    run_ok(
        &base,
        &fid,
        &sid,
        &format!(
            "script:\nrun: echo {escape} | base64 -d | sh\nrun: echo x > /sandbox/workspace/inside.txt && echo ok"
        ),
    )
    .await;
    assert_eq!(
        exec(
            &container,
            &format!("ls /usr/local/bin/{marker} /etc/{marker} /{marker} 2>/dev/null | wc -l")
        ),
        "0"
    );
    assert_eq!(exec(&container, "cat /sandbox/workspace/inside.txt"), "x");
    for p in [
        format!("/usr/local/bin/{marker}"),
        format!("/etc/{marker}"),
        format!("/{marker}"),
    ] {
        assert!(!Path::new(&p).exists(), "{p} appeared on the host");
    }
    assert_eq!(
        std::fs::read_dir("/usr/local/bin").unwrap().count(),
        host_before
    );
    until_some("the agent saw its writes refused", async || {
        let transcript = t.with_document(|d| transcript::read(d).unwrap());
        let outputs: Vec<String> = transcript
            .messages
            .iter()
            .flat_map(|m| m.parts.iter())
            .filter_map(|p| p.output.clone().or(p.error.clone()))
            .collect();
        let seen = outputs
            .iter()
            .any(|o| o.contains("Read-only file system") && o.contains("exit=1"));
        if !seen {
            eprintln!("outputs so far: {outputs:?}");
        }
        seen.then_some(())
    })
    .await;

    peer.stop().await;

    // The container's logs, through the API.
    let (status, text) = logs(&base, &fid, &sid, "?lines=50").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("serving MCP and the control API"), "{text}");
    assert!(text.lines().count() <= 50);
    let (status, text) = logs(&base, &fid, &sid, "?lines=0").await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = logs(&base, &fid, &sid, "?lines=x").await;
    assert_eq!(status, 400, "{text}");
    let other = create_session(&base, &fid, "Never started").await;
    let (status, text) = logs(&base, &fid, &other, "").await;
    assert_eq!(status, 404, "{text}");
    let unknown = canopy_protocol::ids::new_session_id();
    let (status, text) = logs(&base, &fid, &unknown, "").await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("unknown_session"), "{text}");
    let (status, text) = logs(&base, &fid, "ses_../../etc", "").await;
    assert!(status == 404 || status == 422, "{status}: {text}");

    let objects = w.stop().await;
    // Stopping the server stops the container; its volume stays.
    assert!(objects.session_container(&sid).is_none());
    drop(objects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_server_adopts_its_containers_and_removes_orphans() {
    if !docker_or_skip("a_killed_server_adopts_its_containers") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let model = Model::start().await;
    let dir = tempfile::tempdir().unwrap();
    let objects = DockerObjects::of(dir.path());
    let image = test_image();
    let model_url = model.url();
    let flags = [
        "--dispatch",
        "true",
        "--sandbox",
        "docker",
        "--sandbox-image",
        image.as_str(),
        "--warm-pool",
        "0",
        "--model-url",
        model_url.as_str(),
    ];
    let server = ServerProcess::start(dir.path(), &flags).await;
    let base = server.url.clone();
    let (fid, _) = create_feature(&base, "Survives").await;
    let a = create_session(&base, &fid, "A").await;
    let b = create_session(&base, &fid, "B").await;
    let (ea, eb) = (
        enqueue(&base, &fid, &a, "write a.txt: one").await,
        enqueue(&base, &fid, &b, "write b.txt: one").await,
    );
    assert_eq!(settled(&base, &fid, &ea).await.status, QueueStatus::Done);
    assert_eq!(settled(&base, &fid, &eb).await.status, QueueStatus::Done);
    let ca = objects.session_container(&a).unwrap();
    let cb = objects.session_container(&b).unwrap();
    let ids_before = (
        docker(&["inspect", "-f", "{{.Id}}", &ca]),
        docker(&["inspect", "-f", "{{.Id}}", &cb]),
    );

    server.kill().await;
    // The containers outlive the server.
    assert!(objects.session_container(&a).is_some());
    assert!(objects.session_container(&b).is_some());
    // A container of a session that no longer exists (in a feature that
    // does), left by the same server.
    let ghost = canopy_protocol::ids::new_session_id();
    let ghost_name = format!(
        "{}-{fid}-{ghost}",
        ca.split(&format!("-{fid}-")).next().unwrap()
    );
    docker(&[
        "create",
        "--name",
        &ghost_name,
        "--label",
        &format!("dev.canopy.server={}", objects.0),
        "--label",
        "dev.canopy.role=session",
        &image,
    ]);

    let server = ServerProcess::start(dir.path(), &flags).await;
    let base = server.url.clone();
    until_some("the orphan is removed", async || {
        (!objects.containers(true).contains(&ghost_name)).then_some(())
    })
    .await;
    // Both sessions continue in the same containers.
    run_ok(&base, &fid, &a, "write a2.txt: two").await;
    run_ok(&base, &fid, &b, "write b2.txt: two").await;
    let ids_after = (
        docker(&["inspect", "-f", "{{.Id}}", &ca]),
        docker(&["inspect", "-f", "{{.Id}}", &cb]),
    );
    assert_eq!(
        ids_before, ids_after,
        "the containers were adopted, not replaced"
    );
    assert_eq!(exec(&ca, "cat /sandbox/workspace/a.txt"), "one");
    assert_eq!(exec(&ca, "cat /sandbox/workspace/a2.txt"), "two");
    assert_eq!(exec(&cb, "cat /sandbox/workspace/b.txt"), "one");
    assert_eq!(exec(&cb, "cat /sandbox/workspace/b2.txt"), "two");
    assert_eq!(server.terminate().await.code(), Some(0));
    drop(objects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_sandbox_is_snapshotted_and_the_next_prompt_restores_it() {
    let Some(w) = World::start("an_idle_sandbox_is_snapshotted", 0, |c| {
        c.sandbox_idle_secs = Some(3)
    })
    .await
    else {
        return;
    };
    let (base, objects) = (w.base.clone(), &w.objects);
    let (fid, _) = create_feature(&base, "Sleeps").await;
    let sid = create_session(&base, &fid, "Idle").await;
    run_ok(&base, &fid, &sid, "write keep.txt: kept across a snapshot").await;

    let snapshot = format!("canopy-snapshot:{sid}");
    until_some("the idle sandbox is hibernated", async || {
        let doc = document(&base, &fid).await;
        let state = doc.sessions[&sid].sandbox.as_ref()?.state.clone();
        (state == "hibernated").then_some(())
    })
    .await;
    assert!(
        objects.containers(true).iter().all(|n| !n.ends_with(&sid)),
        "the container is gone"
    );
    assert!(
        docker_try(&["image", "inspect", &snapshot]).is_some(),
        "the snapshot exists"
    );
    let volumes = docker(&["volume", "ls", "-q", "--filter", &objects.filter()]);
    assert!(volumes.is_empty(), "the volume is gone: {volumes}");

    run_ok(&base, &fid, &sid, "write more.txt: after the restore").await;
    let container = objects.session_container(&sid).unwrap();
    assert_eq!(
        exec(&container, "cat /sandbox/workspace/keep.txt"),
        "kept across a snapshot"
    );
    assert_eq!(
        exec(&container, "cat /sandbox/workspace/more.txt"),
        "after the restore"
    );
    // Both prompts' commits are in the restored repository.
    let log = exec(&container, "cd /sandbox/workspace && git log --format=%s");
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(
        docker_try(&["image", "inspect", &snapshot]).is_none(),
        "the restored snapshot is removed"
    );
    drop(w.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_session_claims_a_warm_container_and_the_pool_refills() {
    let Some(w) = World::start("a_new_session_claims_a_warm_container", 2, |_| {}).await else {
        return;
    };
    let (base, objects) = (w.base.clone(), &w.objects);
    let pooled = until_some("two warm containers", async || {
        let p = objects.pooled();
        (p.len() == 2).then_some(p)
    })
    .await;
    let pooled_ids: Vec<String> = pooled
        .iter()
        .map(|n| docker(&["inspect", "-f", "{{.Id}}", n]))
        .collect();

    let (fid, _) = create_feature(&base, "Warm").await;
    let sid = create_session(&base, &fid, "Quick").await;
    run_ok(&base, &fid, &sid, "write warm.txt: claimed").await;
    let container = objects.session_container(&sid).unwrap();
    let id = docker(&["inspect", "-f", "{{.Id}}", &container]);
    assert!(
        pooled_ids.contains(&id),
        "the session runs in a pooled container"
    );
    assert_eq!(
        exec(&container, "cat /sandbox/workspace/warm.txt"),
        "claimed"
    );
    until_some("the pool refills", async || {
        let p = objects.pooled();
        (p.len() == 2 && !p.contains(&container)).then_some(())
    })
    .await;
    let objects = w.stop().await;
    // Warm containers are removed with the server; they hold nothing.
    assert!(objects.pooled().is_empty());
    drop(objects);
}

/// A Unix socket that forwards to the real Docker socket while `up`: a
/// Docker daemon that is down, then comes back.
struct FlakyDocker {
    path: std::path::PathBuf,
    up: tokio::sync::watch::Sender<bool>,
    _stop: tokio_util::sync::DropGuard,
}

impl FlakyDocker {
    fn start(dir: &Path) -> FlakyDocker {
        let path = dir.join("docker.sock");
        let (up, mut rx) = tokio::sync::watch::channel(false);
        let stop = CancellationToken::new();
        let (p, s) = (path.clone(), stop.clone());
        tokio::spawn(async move {
            // Down: no socket at all.
            loop {
                if *rx.borrow_and_update() {
                    break;
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    _ = s.cancelled() => return,
                }
            }
            let listener = tokio::net::UnixListener::bind(&p).unwrap();
            loop {
                let (mut conn, _) = tokio::select! {
                    c = listener.accept() => c.unwrap(),
                    _ = s.cancelled() => return,
                };
                tokio::spawn(async move {
                    if let Ok(mut real) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut real).await;
                    }
                });
            }
        });
        FlakyDocker {
            path,
            up,
            _stop: stop.drop_guard(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_docker_documents_are_served_and_prompts_wait_until_it_returns() {
    let sockets = tempfile::tempdir().unwrap();
    let flaky = FlakyDocker::start(sockets.path());
    let host = format!("unix://{}", flaky.path.display());
    // The server starts although Docker does not answer.
    let Some(w) = World::start("without_docker_documents_are_served", 0, |c| {
        c.docker.docker_host = Some(host)
    })
    .await
    else {
        return;
    };
    let (base, objects) = (w.base.clone(), &w.objects);
    let agent: Value = http()
        .get(format!("{base}/api/agent"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agent["agent"]["sandbox"], "docker", "{agent}");
    // Documents work.
    let (fid, _) = create_feature(&base, "No Docker yet").await;
    let sid = create_session(&base, &fid, "Waiting").await;
    let entry = enqueue(
        &base,
        &fid,
        &sid,
        "write late.txt: made once Docker answered",
    )
    .await;
    // The session shows why nothing runs; the prompt stays queued.
    let detail = until_some("the session shows the Docker error", async || {
        let doc = document(&base, &fid).await;
        let sandbox = doc.sessions[&sid].sandbox.clone()?;
        (sandbox.state == "failed").then_some(sandbox.detail?)
    })
    .await;
    assert!(detail.contains("Docker"), "{detail}");
    let doc = document(&base, &fid).await;
    let queued = doc.queue.iter().find(|e| e.id == entry).unwrap();
    assert_eq!(queued.status, QueueStatus::Queued, "{queued:?}");
    // Still serving everyone else.
    assert_eq!(
        http()
            .get(format!("{base}/api/features/{fid}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Docker comes back: the prompt runs without anyone touching it.
    flaky.up.send(true).unwrap();
    let done = settled(&base, &fid, &entry).await;
    assert_eq!(done.status, QueueStatus::Done, "{done:?}");
    let container = objects.session_container(&sid).unwrap();
    assert_eq!(
        exec(&container, "cat /sandbox/workspace/late.txt"),
        "made once Docker answered"
    );
    let doc = document(&base, &fid).await;
    let sandbox = doc.sessions[&sid].sandbox.clone().unwrap();
    assert_eq!(sandbox.detail, None, "{sandbox:?}");
    drop(w.stop().await);
}

/// Issue 9, acceptance 5 in a container: the session clones its
/// repository from a (fake) GitHub with the App's installation token,
/// pushes through the credential helper, and no token is left in the
/// document, the transcript, the logs, the workspace's git config, the
/// container's environment or the snapshot image.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_container_clones_and_pushes_with_app_tokens_and_keeps_none() {
    use crate::fake_github::FakeGitHub;
    use crate::pull_requests::{APP_ID, CLIENT_ID, CLIENT_SECRET, open_pr};

    if !docker_or_skip("a_container_clones_and_pushes_with_app_tokens") {
        return;
    }
    let gh = FakeGitHub::start(APP_ID, CLIENT_ID, CLIENT_SECRET).await;
    let widget = gh.create_repo("acme", "widget", true);
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("app.pem");
    std::fs::write(&key, gh.app_private_key_pem()).unwrap();
    let Some(w) = World::start("a_container_clones_and_pushes_with_app_tokens", 0, |c| {
        c.github.github_web_url = gh.web_url();
        c.github.github_api_url = gh.api_url();
        c.github.github_app_id = Some(APP_ID);
        c.github.github_app_private_key_file = Some(key.clone());
        c.sandbox_idle_secs = Some(3);
    })
    .await
    else {
        return;
    };
    let (base, objects) = (w.base.clone(), &w.objects);
    let (fid, doc_id) = create_feature_with(
        &base,
        json!({
            "title": "Contained widget",
            "repo": { "url": widget, "base_branch": "main" }
        }),
    )
    .await;
    let sid = create_session(&base, &fid, "Boxed").await;
    run_ok(&base, &fid, &sid, "write boxed.txt: written in a container").await;
    let container = objects
        .session_container(&sid)
        .expect("the session's container runs");
    assert_eq!(
        exec(
            &container,
            "cd /sandbox/workspace && git rev-parse --is-shallow-repository"
        ),
        "true",
        "the container's clone is shallow"
    );

    // The PR (the admin has no GitHub account: the App opens it) and a
    // second prompt pushed to its branch by git's credential helper.
    let (status, opened) = open_pr(&base, TOKEN, &fid, &sid).await;
    assert_eq!(status, 201, "{opened}");
    assert_eq!(opened["opened_as"], "app", "{opened}");
    run_ok(&base, &fid, &sid, "write again.txt: pushed by the helper").await;
    let bare = gh.bare_repo_path("acme", "widget");
    let branch = canopy_protocol::git::session_branch("Contained widget", "Boxed", &sid);
    until_some("the second commit reaches the branch", async || {
        git(&bare, &["show", &format!("{branch}:again.txt")])
            .ok()
            .filter(|s| s == "pushed by the helper")
    })
    .await;
    assert_eq!(
        git(&bare, &["show", &format!("{branch}:boxed.txt")]).unwrap(),
        "written in a container"
    );

    // What the running container holds: its git configuration (every
    // scope), its processes' environments, its configuration and logs.
    let mut texts = vec![
        exec(
            &container,
            "cd /sandbox/workspace && cat .git/config && git config --list --show-origin",
        ),
        exec(
            &container,
            "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'; true",
        ),
        docker(&["inspect", &container]),
        {
            let out = Command::new("docker")
                .args(["logs", &container])
                .output()
                .unwrap();
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        },
        logs(&base, &fid, &sid, "").await.1,
    ];
    assert!(texts[0].contains(&widget), "{}", texts[0]);
    assert!(
        texts[1].contains("GIT_CONFIG_"),
        "the helper is configured through the environment: {}",
        texts[1]
    );
    texts.push(snapshot(&base, &fid).await.to_string());
    let peer = Peer::connect(&w.server.sync_url(), "reader").await;
    let feature = peer.find(&doc_id).await;
    let url = read(&feature).sessions[&sid].transcript.clone().unwrap();
    let tid: DocumentId = url.trim_start_matches("automerge:").parse().unwrap();
    let t = peer.find(&tid).await;
    let transcript = t.with_document(|d| format!("{:?}", transcript::read(d).unwrap()));
    assert!(transcript.contains("again.txt"), "{transcript}");
    texts.push(transcript);

    // Idle: the container becomes an image. `docker save` writes its
    // layers uncompressed, so the archive's bytes are the files' bytes
    // (the workspace's file is found in it, as a check of the search).
    until_some("the idle sandbox is hibernated", async || {
        let doc = document(&base, &fid).await;
        let state = doc.sessions[&sid].sandbox.as_ref()?.state.clone();
        (state == "hibernated").then_some(())
    })
    .await;
    let archive = keys.path().join("snapshot.tar");
    docker(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        &format!("canopy-snapshot:{sid}"),
    ]);
    let image = std::fs::read(&archive).unwrap();
    let contains =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        contains(&image, "pushed by the helper"),
        "the snapshot holds the workspace"
    );

    let tokens = gh.issued_tokens();
    assert!(
        tokens.iter().any(|t| t.starts_with("ghs_")),
        "installation tokens were used: {tokens:?}"
    );
    for token in &tokens {
        for (i, text) in texts.iter().enumerate() {
            assert!(
                !text.contains(token.as_str()),
                "a token is in text {i}: {text}"
            );
        }
        assert!(!contains(&image, token), "a token is in the snapshot image");
    }
    drop(peer);
    drop(w.stop().await);
}
