//! Sandbox start benchmark (issue 6): how long a new session waits for its
//! sandbox.
//!
//! ```sh
//! cargo bench --bench sandbox_start -- [--runs 20] [--warmup 1] [--opencode-runs 5]
//!     [--variants local,cold,warm,restore,clone] [--sidecar-bin PATH]
//! ```
//!
//! One process: an in-process Canopy server (dispatch off: only its sync
//! hub, API and users are used), one scripted model (`canopy::devmodel`),
//! and the backends under test. Per run a fresh feature and session are
//! created over HTTP and a sandbox token is minted for it as the
//! dispatcher's worker does; then the clock starts, just before
//! `backend.start(spec)`, and stops when the sandbox is **ready**: `start`
//! has returned and the sidecar's `/v1/status` (polled every 5 ms) says
//! OpenCode is `up`, the feature document is loaded (`replica_loaded`) and
//! the sync connection to the server is up (`connected`).
//!
//! Variants, interleaved round-robin so they share the machine's
//! conditions (one warm-up round, not counted):
//!
//! - **local**: `LocalProcesses` (the pinned OpenCode, this profile's
//!   sidecar);
//! - **cold**: `DockerSandboxes`, no warm pool, host networking;
//! - **warm**: another `DockerSandboxes` with a pool of 2 kept by
//!   `keep_pool`; the run waits (untimed) for both warm containers first,
//!   and afterwards for the pool to refill, so a refill does not overlap the
//!   next variant's run;
//! - **restore**: per run, untimed: a cold start, a file written into the
//!   workspace (`docker exec`), `hibernate` (snapshot + stop); timed: `start`
//!   of the same session again. The file is checked afterwards;
//! - **clone**: like cold, with a repository (200 small files, 4 commits)
//!   served by `git daemon` on loopback, reported separately.
//!
//! Every Docker variant has a backend of its own (its own server id), and
//! every sandbox is removed after its run; at the end everything labelled
//! with the benchmark's server ids (containers, volumes, snapshot images) is
//! removed, also after a panic. The Docker variants need the image
//! `canopy-sandbox:bench`, built (untimed) at the start with this
//! profile's sidecar through `canopy sandbox build-image`.
//!
//! A sandbox that is not ready 30 s after `start` returned is counted as
//! "not ready": its last status and its log are printed, and the run is
//! left out of the statistics (the table has a column for them).
//!
//! After each run, untimed, the sidecar's log (and, in Docker, the
//! container's creation and start times) give the moments between the
//! clock's start and ready, for the breakdown table. After the rounds,
//! OpenCode is booted on its own a few times (`--opencode-runs`) and probed
//! with concurrent health requests, to tell its own boot from the health
//! checks' waiting.
//!
//! `cargo test --all-targets` runs this without `--bench`: a smoke run of
//! the local variant only (no image build), so the benchmark cannot rot.
//!
//! See docs/benchmarks.md ("Sandbox start") for results.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::{
    collections::BTreeMap,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use canopy::{
    auth::TokenScope,
    devmodel::DevModel,
    sandbox::{
        RepoSpec, Sandbox, SandboxBackend, SandboxSpec, SidecarSpec,
        docker::{DockerConfig, DockerSandboxes, LABEL_SERVER},
        local::LocalProcesses,
        opencode_config::ModelConfig,
    },
    server::RunningServer,
};
use canopy_protocol::sidecar::SidecarStatus;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The first user's token of the benchmark's server.
const TOKEN: &str = "canopy_benchtokenaaaaaaaaaa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
/// The sandbox image the Docker variants run.
const IMAGE: &str = "canopy-sandbox:bench";
/// Longest any single step may take.
const PATIENCE: Duration = Duration::from_secs(180);
/// How long a started sandbox may take to be ready (seconds normally).
const READY_PATIENCE: Duration = Duration::from_secs(30);
/// How often the sidecar's status is asked while waiting for ready.
const POLL: Duration = Duration::from_millis(5);
/// Pause between runs, so one run's tail does not overlap the next one.
const SETTLE: Duration = Duration::from_millis(300);
/// Warm containers the pool variant keeps.
const POOL: usize = 2;
/// The file the restore variant writes before hibernating.
const RESTORE_MARKER: &str = "/sandbox/workspace/bench-restore-marker";
/// The test repository: files, commits.
const REPO_FILES: usize = 200;
const REPO_COMMITS: usize = 4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn opencode_bin() -> PathBuf {
    let bin = root().join("sandbox/opencode/node_modules/.bin/opencode");
    assert!(
        bin.exists(),
        "OpenCode is not installed: run `make opencode`"
    );
    bin
}

/// The sidecar of this build profile (`target/release/canopy-sidecar`
/// under `cargo bench`), brought up to date first: `cargo bench` builds
/// this package only, and a stale sidecar would be measured (and baked
/// into the image).
/// `--sidecar-bin` overrides it (to measure a changed sidecar).
fn sidecar_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(bin) = SIDECAR_OVERRIDE.get() {
                assert!(bin.exists(), "no sidecar at {}", bin.display());
                return bin.clone();
            }
            let exe = std::env::current_exe().expect("current exe");
            let profile_dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .expect("target/<profile>/deps")
                .to_owned();
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "-q", "-p", "canopy-sidecar"])
                .current_dir(root());
            if profile_dir.ends_with("release") {
                cmd.arg("--release");
            }
            assert!(
                cmd.status().expect("cargo").success(),
                "cannot build the sidecar"
            );
            let bin = profile_dir.join("canopy-sidecar");
            assert!(bin.exists(), "no sidecar at {}", bin.display());
            bin
        })
        .clone()
}

/// `--sidecar-bin`.
static SIDECAR_OVERRIDE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {PATIENCE:?}: {what}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn unix_ms(t: SystemTime) -> f64 {
    ms(t.duration_since(UNIX_EPOCH).unwrap_or_default())
}

// ---------------------------------------------------------------- docker

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

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What Docker holds for the benchmark's server ids.
fn docker_objects(server_id: &str) -> Vec<String> {
    let filter = format!("label={LABEL_SERVER}={server_id}");
    let mut out = Vec::new();
    for (kind, listed) in [
        ("container", docker_try(&["ps", "-aq", "--filter", &filter])),
        (
            "volume",
            docker_try(&["volume", "ls", "-q", "--filter", &filter]),
        ),
        ("image", docker_try(&["images", "-q", "--filter", &filter])),
    ] {
        for id in lines(&listed.unwrap_or_default()) {
            out.push(format!("{kind} {id}"));
        }
    }
    out
}

/// Removes everything labelled with the benchmark's server ids when
/// dropped, including after a panic.
struct DockerLeftovers(Vec<String>);

impl DockerLeftovers {
    fn clean(&self) {
        for id in &self.0 {
            let filter = format!("label={LABEL_SERVER}={id}");
            let containers =
                lines(&docker_try(&["ps", "-aq", "--filter", &filter]).unwrap_or_default());
            if !containers.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(containers.iter().map(String::as_str));
                let _ = docker_try(&args);
            }
            for v in
                lines(&docker_try(&["volume", "ls", "-q", "--filter", &filter]).unwrap_or_default())
            {
                let _ = docker_try(&["volume", "rm", "-f", &v]);
            }
            for i in lines(&docker_try(&["images", "-q", "--filter", &filter]).unwrap_or_default())
            {
                let _ = docker_try(&["image", "rm", "-f", &i]);
            }
        }
    }
}

impl Drop for DockerLeftovers {
    fn drop(&mut self) {
        self.clean();
    }
}

/// Whether a Docker daemon answers, both to the CLI and to bollard.
async fn docker_available() -> bool {
    let cli = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    cli && canopy::sandbox::docker::connect(None).await.is_ok()
}

/// `canopy sandbox build-image --tag canopy-sandbox:bench` with this
/// profile's sidecar.
fn build_image() -> Duration {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(["sandbox", "build-image", "--tag", IMAGE])
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
    started.elapsed()
}

/// A backend with the server's defaults (2 GiB, 2 CPUs, 1024 pids, 512 MiB
/// `/tmp`), host networking.
fn docker_backend(server_id: String, model: &ModelConfig, pool_size: usize) -> DockerSandboxes {
    DockerSandboxes::new(DockerConfig {
        host: None,
        image: IMAGE.into(),
        network: "host".into(),
        memory_mb: 2048,
        cpus: 2.0,
        pids: 1024,
        tmp_mb: 512,
        pool_size,
        server_id,
        model: model.clone(),
    })
}

/// The running container of `session_id` among `server_id`'s.
fn container_of(server_id: &str, session_id: &str) -> String {
    let filter = format!("label={LABEL_SERVER}={server_id}");
    let names = docker(&["ps", "--filter", &filter, "--format", "{{.Names}}"]);
    lines(&names)
        .into_iter()
        .find(|n| n.ends_with(session_id))
        .unwrap_or_else(|| panic!("no running container for {session_id} in {names:?}"))
}

// ------------------------------------------------------------- repository

/// `git …` in `dir`, panicking on failure.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare repository of `REPO_FILES` small files over `REPO_COMMITS`
/// commits on `main`, at `<dir>/repos/repo.git`; returns `<dir>/repos`.
fn make_repo(dir: &Path) -> PathBuf {
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    let write = |i: usize, version: usize| {
        let path = work.join(format!("src/mod{:02}/file{i:03}.txt", i % 20));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let body: String = (0..20)
            .map(|l| format!("file {i} version {version} line {l}: some text to clone\n"))
            .collect();
        std::fs::write(path, body).unwrap();
    };
    // 1: three quarters of the files; 2: the rest; 3 and 4: edits.
    let first = REPO_FILES * 3 / 4;
    for i in 0..first {
        write(i, 0);
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "initial files"]);
    for i in first..REPO_FILES {
        write(i, 0);
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "more files"]);
    for c in 2..REPO_COMMITS {
        for i in (c..REPO_FILES).step_by(7) {
            write(i, c);
        }
        git(&work, &["commit", "-q", "-am", &format!("edit {c}")]);
    }
    let repos = dir.join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    git(dir, &["clone", "-q", "--bare", "work", "repos/repo.git"]);
    repos
}

/// The repository served on loopback (containers on the host network
/// reach it): `git daemon`, or the dumb HTTP protocol with Python's file
/// server where there is no `git daemon`.
struct GitServer {
    child: std::process::Child,
    url: String,
    how: &'static str,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        // Its own process group (pgid = its pid): `git daemon` runs
        // `git-daemon` as a child, which killing `git` alone would leave.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `git ls-remote url` answers within a few seconds.
fn answers(url: &str) -> bool {
    for _ in 0..50 {
        let ok = Command::new("git")
            .args(["ls-remote", url])
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn serve_repo(repos: &Path) -> GitServer {
    let port = free_port();
    let daemon = Command::new("git")
        .arg("daemon")
        .arg("--export-all")
        .arg(format!("--base-path={}", repos.display()))
        .arg(format!("--port={port}"))
        .arg("--listen=127.0.0.1")
        .arg("--reuseaddr")
        .arg(repos)
        .current_dir(repos)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Ok(child) = daemon {
        let server = GitServer {
            child,
            url: format!("git://127.0.0.1:{port}/repo.git"),
            how: "git daemon",
        };
        if answers(&server.url) {
            return server;
        }
        println!("   `git daemon` does not answer; serving the repository over dumb HTTP");
    }
    git(&repos.join("repo.git"), &["update-server-info"]);
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(repos)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 for the dumb HTTP server");
    let server = GitServer {
        child,
        url: format!("http://127.0.0.1:{port}/repo.git"),
        how: "python3 -m http.server (dumb HTTP)",
    };
    assert!(answers(&server.url), "the test repository cannot be served");
    server
}

// ------------------------------------------------------------- breakdown

/// Moments in the sidecar's log, by the message that marks them.
const LOG_MARKS: [(&str, &str); 8] = [
    ("sidecar process starts", ": canopy-sidecar starting"),
    ("sidecar listens", ": serving MCP and the control API"),
    ("OpenCode up (sidecar's health check)", ": OpenCode is up"),
    ("claimed (POST /v1/claim answered)", ": claimed"),
    (
        "repository cloned",
        ": repository cloned into the workspace",
    ),
    ("bound to the session", ": bound to the session"),
    ("connected to the server", ": connected to the server"),
    ("feature document loaded", ": feature document loaded"),
];
const CREATED: &str = "container created";
const STARTED: &str = "container started";
const START_RETURNED: &str = "start() returned";
const READY: &str = "ready (status polled)";

/// The order of the breakdown table's rows.
fn mark_order() -> Vec<&'static str> {
    let mut order = vec![CREATED, STARTED];
    order.extend(LOG_MARKS.iter().map(|(k, _)| *k));
    order.extend([START_RETURNED, READY]);
    order
}

/// `2026-11-22T06:03:55.123456789Z` (UTC) → milliseconds since the epoch.
fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let frac_ms = if frac.is_empty() {
        0.0
    } else {
        let digits: String = frac.chars().take(9).collect();
        digits.parse::<f64>().ok()? / 10f64.powi(digits.len() as i32) * 1000.0
    };
    Some(secs as f64 * 1000.0 + frac_ms)
}

/// Without ANSI colour sequences.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The first moment of each log mark, ms after `wall0`.
fn log_marks(log: &str, wall0: f64, marks: &mut BTreeMap<&'static str, f64>) {
    for line in log.lines().map(strip_ansi) {
        let Some(at) = line.split_whitespace().next().and_then(parse_rfc3339) else {
            continue;
        };
        for (key, needle) in LOG_MARKS {
            if line.contains(needle) {
                marks.entry(key).or_insert(at - wall0);
            }
        }
    }
}

/// Marks of a Docker run: the container's creation and start (Docker's
/// records) and the sidecar's log.
fn docker_marks(container: &str, wall0: f64, marks: &mut BTreeMap<&'static str, f64>) {
    let times = docker(&[
        "inspect",
        "-f",
        "{{.Created}} {{.State.StartedAt}}",
        container,
    ]);
    let mut it = times.split_whitespace();
    if let Some(at) = it.next().and_then(parse_rfc3339) {
        marks.insert(CREATED, at - wall0);
    }
    if let Some(at) = it.next().and_then(parse_rfc3339) {
        marks.insert(STARTED, at - wall0);
    }
    let out = Command::new("docker")
        .args(["logs", container])
        .output()
        .unwrap();
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    log_marks(&log, wall0, marks);
}

// ---------------------------------------------------------------- the runs

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Local,
    Cold,
    Warm,
    Restore,
    Clone,
}

const ALL: [Variant; 5] = [
    Variant::Local,
    Variant::Cold,
    Variant::Warm,
    Variant::Restore,
    Variant::Clone,
];

impl Variant {
    fn key(self) -> &'static str {
        match self {
            Variant::Local => "local",
            Variant::Cold => "cold",
            Variant::Warm => "warm",
            Variant::Restore => "restore",
            Variant::Clone => "clone",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::Local => "local processes",
            Variant::Cold => "docker cold",
            Variant::Warm => "docker warm pool",
            Variant::Restore => "docker restore from snapshot",
            Variant::Clone => "docker cold + clone",
        }
    }

    fn parse(s: &str) -> Variant {
        ALL.into_iter()
            .find(|v| v.key() == s)
            .unwrap_or_else(|| panic!("unknown variant {s:?}: local, cold, warm, restore, clone"))
    }
}

#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    /// `start` called → returned, ms.
    start: f64,
    /// `start` called → ready, ms.
    ready: f64,
    /// Moments between, ms after the clock started (negative: before it,
    /// a warm container's boot).
    marks: BTreeMap<&'static str, f64>,
    /// Why the sandbox never became ready (then `ready` is NaN and the
    /// run is left out of the statistics).
    failed: Option<String>,
}

/// The Docker backends, one server id each.
struct DockerSide {
    cold: DockerSandboxes,
    warm: Arc<DockerSandboxes>,
    restore: DockerSandboxes,
    clone: DockerSandboxes,
    pool_stop: CancellationToken,
    repo: RepoSpec,
    git: GitServer,
}

impl DockerSide {
    fn backend(&self, v: Variant) -> &DockerSandboxes {
        match v {
            Variant::Cold => &self.cold,
            Variant::Warm => &self.warm,
            Variant::Restore => &self.restore,
            Variant::Clone => &self.clone,
            Variant::Local => unreachable!("not a Docker variant"),
        }
    }

    async fn wait_pool(&self) {
        within("the warm pool fills", async {
            while self.warm.warm_count() < POOL {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
}

struct Bench {
    server: RunningServer,
    base: String,
    http: reqwest::Client,
    /// For `/v1/status` polls: one client, connections kept.
    status_http: reqwest::Client,
    owner: String,
    local: LocalProcesses,
    local_root: PathBuf,
    docker: Option<DockerSide>,
    /// Server ids by variant, for `docker ps` filters.
    ids: BTreeMap<&'static str, String>,
}

async fn http_json(req: reqwest::RequestBuilder) -> Value {
    let resp = req.bearer_auth(TOKEN).send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");
    body
}

fn is_ready(status: &SidecarStatus, session_id: &str) -> bool {
    status.session_id == session_id
        && status.opencode.phase == "up"
        && status.replica_loaded
        && status.connected
}

impl Bench {
    /// A new feature: its id and document URL.
    async fn feature(&self, title: &str) -> (String, String) {
        let feature = http_json(
            self.http
                .post(format!("{}/api/features", self.base))
                .json(&json!({"title": title, "description": "sandbox start benchmark"})),
        )
        .await;
        (
            feature["feature_id"].as_str().unwrap().to_owned(),
            format!("automerge:{}", feature["document_id"].as_str().unwrap()),
        )
    }

    async fn session(&self, feature_id: &str) -> String {
        let session = http_json(
            self.http
                .post(format!("{}/api/features/{feature_id}/sessions", self.base))
                .json(&json!({"title": "start"})),
        )
        .await;
        session["session_id"].as_str().unwrap().to_owned()
    }

    /// What the worker hands the backend: a fresh sandbox token for the
    /// session, the server's URL, the feature document.
    async fn spec(
        &self,
        feature_id: &str,
        feature_doc: &str,
        session_id: &str,
        repo: Option<RepoSpec>,
    ) -> SandboxSpec {
        let (_, token) = self
            .server
            .state()
            .users()
            .create_token_expiring(
                &self.owner,
                &format!("sandbox {session_id}"),
                TokenScope::Agent {
                    feature_id: feature_id.to_owned(),
                    session_id: session_id.to_owned(),
                },
                Some(canopy_protocol::unix_ms_now() + 3_600_000),
            )
            .await
            .unwrap();
        SandboxSpec {
            session_id: session_id.to_owned(),
            feature_id: feature_id.to_owned(),
            repo,
            sidecar: SidecarSpec {
                server_url: self.base.clone(),
                token,
                feature_doc: feature_doc.to_owned(),
            },
        }
    }

    /// Poll the sidecar until the sandbox is ready.
    /// Poll the sidecar until the sandbox is ready; `Err`: why not (its
    /// last status and its logs), after `READY_PATIENCE`.
    async fn wait_ready(
        &self,
        backend: &dyn SandboxBackend,
        sandbox: &Sandbox,
    ) -> Result<SidecarStatus, String> {
        let mut last = String::from("no answer yet");
        let waited = tokio::time::timeout(READY_PATIENCE, async {
            loop {
                match self
                    .status_http
                    .get(format!("{}/v1/status", sandbox.control_url))
                    .bearer_auth(&sandbox.control_secret)
                    .send()
                    .await
                {
                    Ok(resp) => {
                        let code = resp.status();
                        let body = resp.text().await.unwrap_or_default();
                        match serde_json::from_str::<SidecarStatus>(&body) {
                            Ok(status) if is_ready(&status, &sandbox.session_id) => {
                                return status;
                            }
                            Ok(status) => last = format!("{status:?}"),
                            Err(_) => last = format!("HTTP {code}: {body}"),
                        }
                    }
                    Err(e) => last = format!("unreachable: {e}"),
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        match waited {
            Ok(status) => Ok(status),
            Err(_) => {
                let logs = backend
                    .logs(&sandbox.session_id, 80)
                    .await
                    .unwrap_or_else(|e| format!("(no logs: {e})"));
                Err(format!(
                    "sandbox {} ({}) not ready {READY_PATIENCE:?} after start() returned; \
                     its last status: {last}\nits logs end:\n{}",
                    sandbox.session_id,
                    backend.name(),
                    strip_ansi(&logs)
                ))
            }
        }
    }

    /// The measurement: `start` → returned → ready.
    async fn timed(
        &self,
        backend: &dyn SandboxBackend,
        spec: SandboxSpec,
    ) -> (Sandbox, Sample, f64) {
        let session_id = spec.session_id.clone();
        let wall0 = unix_ms(SystemTime::now());
        let t0 = Instant::now();
        let sandbox = within(
            &format!("{} starts {session_id}", backend.name()),
            backend.start(spec),
        )
        .await
        .unwrap_or_else(|e| panic!("{} cannot start {session_id}: {e}", backend.name()));
        let start = t0.elapsed();
        let waited = self.wait_ready(backend, &sandbox).await;
        let ready = t0.elapsed();
        let mut marks = BTreeMap::new();
        marks.insert(START_RETURNED, ms(start));
        let failed = match waited {
            Ok(_) => {
                marks.insert(READY, ms(ready));
                None
            }
            Err(why) => {
                println!(
                    "\n!! NOT READY (counted as a failure, left out of the statistics): {why}\n"
                );
                Some(why)
            }
        };
        let sample = Sample {
            start: ms(start),
            ready: if failed.is_some() {
                f64::NAN
            } else {
                ms(ready)
            },
            marks,
            failed,
        };
        (sandbox, sample, wall0)
    }

    async fn run(&self, v: Variant, round: usize) -> Sample {
        let (feature_id, doc) = self.feature(&format!("{} {round}", v.key())).await;
        let session_id = self.session(&feature_id).await;
        match v {
            Variant::Local => {
                let spec = self.spec(&feature_id, &doc, &session_id, None).await;
                let (_, mut sample, wall0) = self.timed(&self.local, spec).await;
                let log =
                    std::fs::read_to_string(self.local_root.join(&session_id).join("sidecar.log"))
                        .unwrap_or_default();
                log_marks(&log, wall0, &mut sample.marks);
                within("local remove", self.local.remove(&session_id))
                    .await
                    .unwrap();
                sample
            }
            Variant::Cold | Variant::Warm | Variant::Clone => {
                let d = self.docker.as_ref().expect("Docker variants need Docker");
                let backend = d.backend(v);
                if v == Variant::Warm {
                    d.wait_pool().await;
                }
                let repo = (v == Variant::Clone).then(|| d.repo.clone());
                let spec = self.spec(&feature_id, &doc, &session_id, repo).await;
                let (sandbox, mut sample, wall0) = self.timed(backend, spec).await;
                let container = container_of(&self.ids[v.key()], &session_id);
                docker_marks(&container, wall0, &mut sample.marks);
                if v == Variant::Clone {
                    assert_eq!(sandbox.clone_error, None, "the clone failed in {container}");
                    let files = docker(&[
                        "exec",
                        &container,
                        "git",
                        "-C",
                        "/sandbox/workspace",
                        "ls-files",
                    ]);
                    assert_eq!(
                        files.lines().count(),
                        REPO_FILES,
                        "the clone in {container} is not the repository"
                    );
                }
                within("docker remove", backend.remove(&session_id))
                    .await
                    .unwrap();
                if v == Variant::Warm {
                    // Refilled before the next variant's run.
                    d.wait_pool().await;
                }
                sample
            }
            Variant::Restore => {
                let d = self.docker.as_ref().expect("Docker variants need Docker");
                let backend = &d.restore;
                let id = &self.ids[v.key()];
                // Untimed: a session with a file in its workspace, then
                // hibernated.
                let spec = self.spec(&feature_id, &doc, &session_id, None).await;
                let sandbox = within("restore: first start", backend.start(spec))
                    .await
                    .unwrap();
                if let Err(why) = self.wait_ready(backend, &sandbox).await {
                    // Untimed; the file can be written all the same.
                    println!("\n!! restore's first start not ready (untimed): {why}\n");
                }
                let container = container_of(id, &session_id);
                let content = format!("written before hibernating {session_id}");
                docker(&[
                    "exec",
                    &container,
                    "sh",
                    "-c",
                    &format!("echo '{content}' > {RESTORE_MARKER}"),
                ]);
                within("hibernate", backend.hibernate(&session_id))
                    .await
                    .unwrap();
                let snapshot = format!("canopy-snapshot:{session_id}");
                assert!(
                    docker_try(&["image", "inspect", &snapshot]).is_some(),
                    "hibernate left no snapshot {snapshot}"
                );
                assert!(
                    docker_try(&["inspect", &container]).is_none(),
                    "hibernate left the container {container}"
                );
                // Timed: the same session again, with a new token (as the
                // worker mints one per start).
                let spec = self.spec(&feature_id, &doc, &session_id, None).await;
                let (_, mut sample, wall0) = self.timed(backend, spec).await;
                let container = container_of(id, &session_id);
                docker_marks(&container, wall0, &mut sample.marks);
                let found = docker_try(&["exec", &container, "cat", RESTORE_MARKER]);
                if found.as_deref() != Some(content.as_str()) {
                    panic!(
                        "RESTORE LOST THE WORKSPACE: {RESTORE_MARKER} in {container} reads {found:?}, \
                         expected {content:?}"
                    );
                }
                within("docker remove", backend.remove(&session_id))
                    .await
                    .unwrap();
                sample
            }
        }
    }
}

// ------------------------------------------------------- OpenCode alone

/// One boot of OpenCode on its own (no sidecar), probed the way a careful
/// health check would: a TCP connect every 10 ms until its port accepts,
/// and from then on a new `GET /global/health` (a connection of its own,
/// 3 s timeout) every 20 ms, each in its own task, until one is answered.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Boot {
    /// Spawn → the port accepts a connection, ms.
    accepts: f64,
    /// Spawn → the first health answer, ms (its completion).
    answers: f64,
    /// Health requests sent after the port accepted that were never
    /// answered (timed out after 3 s) although later ones were.
    hung: usize,
    /// Of all probes sent.
    probes: usize,
}

async fn opencode_alone(dir: &Path, model: &ModelConfig) -> Boot {
    let workspace = dir.join("workspace");
    let home = dir.join("home");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    git(&workspace, &["init", "-q", "-b", "main"]);
    let port = free_port();
    let password = "bench";
    let mut child = tokio::process::Command::new(opencode_bin())
        .args([
            "serve",
            "--hostname",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .current_dir(&workspace)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("OPENCODE_SERVER_PASSWORD", password)
        .env(
            "OPENCODE_CONFIG_CONTENT",
            canopy::sandbox::opencode_config::opencode_config(model).to_string(),
        )
        .envs(canopy::sandbox::opencode_config::QUIET_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let accepts = within("OpenCode's port accepts", async {
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return t0.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/global/health");
    let mut probes = tokio::task::JoinSet::new();
    let (tx, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let answers = within("OpenCode answers its health check", async {
        loop {
            let (http, url, tx) = (http.clone(), url.clone(), tx.clone());
            probes.spawn(async move {
                match http
                    .get(&url)
                    .basic_auth("opencode", Some(password))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let _ = tx.send(t0.elapsed());
                        false
                    }
                    Err(e) => e.is_timeout(),
                    Ok(_) => false,
                }
            });
            tokio::select! {
                Some(at) = answered.recv() => return at,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    let sent = probes.len();
    let mut hung = 0;
    while let Some(timed_out) = probes.join_next().await {
        if timed_out.unwrap_or(false) {
            hung += 1;
        }
    }
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.wait().await;
    Boot {
        accepts: ms(accepts),
        answers: ms(answers),
        hung,
        probes: sent,
    }
}

// ---------------------------------------------------------------- results

#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Stats {
    p50: f64,
    p95: f64,
    min: f64,
    max: f64,
    n: usize,
}

/// Nearest rank: the value at round(p × (n − 1)) of the sorted values.
fn stats(values: &[f64]) -> Stats {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pick = |p: f64| {
        if v.is_empty() {
            f64::NAN
        } else {
            v[((v.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    Stats {
        p50: pick(0.5),
        p95: pick(0.95),
        min: pick(0.0),
        max: pick(1.0),
        n: v.len(),
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "n/a".into()
    }
}

fn report(samples: &BTreeMap<&'static str, Vec<Sample>>, order: &[Variant]) -> Value {
    let ready = |v: Variant| {
        stats(
            &samples
                .get(v.key())
                .map(|s| {
                    s.iter()
                        .filter(|x| x.failed.is_none())
                        .map(|x| x.ready)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
    };
    let local = ready(Variant::Local);
    println!(
        "\nstart() called → ready (OpenCode up, feature document loaded, connected to the server); \
         p95 is the nearest-rank value at round(0.95 × (n − 1))\n"
    );
    println!(
        "| variant | ready runs | not ready | p50 ms | p95 ms | min ms | max ms | start() returned p50 ms | p50 / local |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for &v in order {
        let s = ready(v);
        let returned = stats(&samples[v.key()].iter().map(|x| x.start).collect::<Vec<_>>());
        let failed = samples[v.key()]
            .iter()
            .filter(|x| x.failed.is_some())
            .count();
        println!(
            "| {} | {} | {failed} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            v.label(),
            s.n,
            s.p50,
            s.p95,
            s.min,
            s.max,
            returned.p50,
            ratio(s.p50, local.p50),
        );
        summary.push(
            json!({"variant": v.key(), "ready": s, "start_returned": returned, "not_ready": failed}),
        );
    }
    let has = |v: Variant| order.contains(&v);
    println!();
    let pairs = [
        (Variant::Cold, Variant::Local, "docker cold / local"),
        (Variant::Warm, Variant::Local, "docker warm / local"),
        (Variant::Restore, Variant::Local, "docker restore / local"),
        (Variant::Warm, Variant::Cold, "docker warm / docker cold"),
        (
            Variant::Restore,
            Variant::Cold,
            "docker restore / docker cold",
        ),
    ];
    for (a, b, label) in pairs {
        if has(a) && has(b) {
            println!("- {label} (p50): {}", ratio(ready(a).p50, ready(b).p50));
        }
    }
    if has(Variant::Clone) && has(Variant::Cold) {
        let (c, k) = (ready(Variant::Clone), ready(Variant::Cold));
        println!(
            "- clone − docker cold: p50 {:+.0} ms, p95 {:+.0} ms (clone / cold p50 {})",
            c.p50 - k.p50,
            c.p95 - k.p95,
            ratio(c.p50, k.p50)
        );
    }

    println!(
        "\nWhere the time goes: p50 ms after the clock started (untimed reads of the sidecar's \
         log and Docker's records; `before`: a warm container's boot, before the claim)\n"
    );
    print!("| moment |");
    for &v in order {
        print!(" {} |", v.label());
    }
    println!();
    println!("|---|{}", "---|".repeat(order.len()));
    let mut breakdown = Vec::new();
    for mark in mark_order() {
        let cells: Vec<Option<f64>> = order
            .iter()
            .map(|v| {
                let values: Vec<f64> = samples[v.key()]
                    .iter()
                    .filter_map(|s| s.marks.get(mark).copied())
                    .collect();
                (!values.is_empty()).then(|| stats(&values).p50)
            })
            .collect();
        if cells.iter().all(Option::is_none) {
            continue;
        }
        print!("| {mark} |");
        for c in &cells {
            match c {
                None => print!(" |"),
                Some(x) if *x < 0.0 => print!(" before |"),
                Some(x) => print!(" {x:.0} |"),
            }
        }
        println!();
        breakdown.push(json!({"moment": mark, "p50": cells}));
    }
    json!({
        "summary": summary,
        "breakdown": breakdown,
        "samples": samples,
    })
}

fn report_boots(boots: &[Boot]) -> Value {
    if boots.is_empty() {
        return Value::Null;
    }
    let accepts = stats(&boots.iter().map(|b| b.accepts).collect::<Vec<_>>());
    let answers = stats(&boots.iter().map(|b| b.answers).collect::<Vec<_>>());
    let hung: usize = boots.iter().map(|b| b.hung).sum();
    let probes: usize = boots.iter().map(|b| b.probes).sum();
    println!(
        "\nOpenCode alone (no sidecar, no container), {} boots after the runs, untimed in the table above:\n",
        boots.len()
    );
    println!("| OpenCode alone | p50 ms | p95 ms | min ms | max ms |");
    println!("|---|---|---|---|---|");
    for (label, s) in [
        ("spawn → its port accepts connections", accepts),
        ("spawn → first answer to `GET /global/health`", answers),
    ] {
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} | {:.0} |",
            s.p50, s.p95, s.min, s.max
        );
    }
    println!(
        "\nhealth requests sent after the port accepted that were never answered (3 s timeout): \
         {hung} of {probes}, in {} of {} boots",
        boots.iter().filter(|b| b.hung > 0).count(),
        boots.len()
    );
    json!({"boots": boots, "accepts": accepts, "answers": answers, "hung": hung, "probes": probes})
}

// ------------------------------------------------------------------ setup

/// Processes whose working directory is under `dir` (local sandboxes left
/// over).
fn processes_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cwd) = std::fs::read_link(e.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            out.push(format!("{name}: {}", cmd.trim()));
        }
    }
    out
}

/// Ends whatever still runs under the benchmark's directory when dropped,
/// including after a panic (a local sandbox outlives a dropped backend).
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for p in processes_under(&self.0) {
            let pid = p.split(':').next().and_then(|p| p.parse::<i32>().ok());
            if let Some(pid) = pid.filter(|&p| p > 1 && p != std::process::id() as i32) {
                println!("  ending left-over process {p}");
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help") {
        println!(
            "cargo bench --bench sandbox_start -- [--runs 20] [--warmup 1] [--opencode-runs 5] \
             [--variants local,cold,warm,restore,clone] [--sidecar-bin PATH]"
        );
        return;
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: a
    // short smoke run of the local variant then (no image build), so the
    // benchmark cannot rot.
    let smoke = !args.iter().any(|a| a == "--bench");
    let runs: usize =
        arg(&args, "--runs").map_or(if smoke { 1 } else { 20 }, |v| v.parse().expect("--runs"));
    let warmup: usize = arg(&args, "--warmup").map_or(1, |v| v.parse().expect("--warmup"));
    let opencode_runs: usize = arg(&args, "--opencode-runs")
        .map_or(if smoke { 1 } else { 5 }, |v| {
            v.parse().expect("--opencode-runs")
        });
    if let Some(bin) = arg(&args, "--sidecar-bin") {
        let _ = SIDECAR_OVERRIDE.set(PathBuf::from(bin));
    }
    let mut order: Vec<Variant> = match arg(&args, "--variants") {
        Some(list) => list.split(',').map(|s| Variant::parse(s.trim())).collect(),
        None if smoke => vec![Variant::Local],
        None => ALL.to_vec(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Canonical: /proc reports working directories resolved.
    let tmp_path = tmp.path().canonicalize().unwrap();
    let _reaper = Reaper(tmp_path.clone());
    runtime.block_on(async move {
        let with_docker = order.iter().any(|v| *v != Variant::Local);
        if with_docker && !docker_available().await {
            println!("!! no Docker daemon answers: running the local variant only");
            order.retain(|v| *v == Variant::Local);
        }
        let stop_model = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let model = DevModel::start(listener, stop_model.clone()).unwrap();
        let model_config = ModelConfig::scripted(&model.base_url());

        let mut config = canopy::config::ServerConfig::for_data_dir(tmp_path.join("server"));
        config.bootstrap_token = Some(TOKEN.to_owned());
        config.dispatch = false;
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let server = canopy::server::start(config, listener, CancellationToken::new())
            .await
            .unwrap();
        let base = server.url().to_owned();
        let http = reqwest::Client::new();
        let me = http_json(http.get(format!("{base}/api/me"))).await;
        let owner = me["user_id"].as_str().unwrap().to_owned();

        let local_root = tmp_path.join("local");
        let local = LocalProcesses::new(
            opencode_bin(),
            sidecar_bin(),
            local_root.clone(),
            model_config.clone(),
        );
        println!(
            "== sidecar {}, OpenCode {}",
            sidecar_bin().display(),
            opencode_bin().display()
        );

        let mut ids = BTreeMap::new();
        let mut leftovers = DockerLeftovers(Vec::new());
        let docker_side = if order.iter().any(|v| *v != Variant::Local) {
            println!("== building {IMAGE} (untimed)");
            let took = build_image();
            println!("   built in {:.1} s", took.as_secs_f64());
            // A data directory, and so a server id, per backend: none sees
            // another's containers.
            let backend = |v: Variant, pool: usize| {
                let id =
                    canopy::sandbox::docker::server_id(&tmp_path.join(format!("docker-{}", v.key())))
                        .unwrap();
                (docker_backend(id.clone(), &model_config, pool), id)
            };
            let (cold, id) = backend(Variant::Cold, 0);
            ids.insert(Variant::Cold.key(), id);
            let (warm, id) = backend(Variant::Warm, POOL);
            ids.insert(Variant::Warm.key(), id);
            let (restore, id) = backend(Variant::Restore, 0);
            ids.insert(Variant::Restore.key(), id);
            let (clone, id) = backend(Variant::Clone, 0);
            ids.insert(Variant::Clone.key(), id);
            leftovers.0 = ids.values().cloned().collect();
            cold.check().await.unwrap();
            let warm = Arc::new(warm);
            let pool_stop = CancellationToken::new();
            if order.contains(&Variant::Warm) {
                tokio::spawn(warm.clone().keep_pool(pool_stop.clone()));
            }
            let repos = make_repo(&tmp_path.join("git"));
            let git = serve_repo(&repos);
            println!(
                "== test repository: {REPO_FILES} files, {REPO_COMMITS} commits, at {} ({})",
                git.url, git.how
            );
            Some(DockerSide {
                cold,
                warm,
                restore,
                clone,
                pool_stop,
                repo: RepoSpec {
                    url: git.url.clone(),
                    branch: "main".into(),
                    work_branch: None,
                    depth: 0,
                    credential: None,
                },
                git,
            })
        } else {
            None
        };
        let bench = Bench {
            server,
            base,
            http,
            status_http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap(),
            owner,
            local,
            local_root,
            docker: docker_side,
            ids,
        };
        if let Some(d) = &bench.docker
            && order.contains(&Variant::Warm)
        {
            println!("== waiting for the warm pool ({POOL} containers, untimed)");
            d.wait_pool().await;
        }

        println!(
            "== {} variant(s), {warmup} warm-up round(s) + {runs} run(s) each, interleaved",
            order.len()
        );
        let measured = Instant::now();
        let mut samples: BTreeMap<&'static str, Vec<Sample>> =
            order.iter().map(|v| (v.key(), Vec::new())).collect();
        for round in 0..warmup + runs {
            let counted = round >= warmup;
            let mut line = if counted {
                format!("  run {:>3}:", round - warmup)
            } else {
                "  warm-up:".to_owned()
            };
            for &v in &order {
                let s = bench.run(v, round).await;
                if s.failed.is_some() {
                    line.push_str(&format!("  {} NOT READY", v.key()));
                } else {
                    line.push_str(&format!("  {} {:>6.0} ms", v.key(), s.ready));
                }
                if counted {
                    samples.get_mut(v.key()).unwrap().push(s);
                }
                tokio::time::sleep(SETTLE).await;
            }
            println!("{line}");
        }
        let measured = measured.elapsed();
        println!("   measured in {:.0} s", measured.as_secs_f64());

        let mut boots = Vec::new();
        for i in 0..opencode_runs {
            let boot = opencode_alone(&tmp_path.join(format!("alone-{i}")), &model_config).await;
            println!(
                "  OpenCode alone {i}: port accepts {:.0} ms, first health answer {:.0} ms, {} of {} probes hung",
                boot.accepts, boot.answers, boot.hung, boot.probes
            );
            boots.push(boot);
            tokio::time::sleep(SETTLE).await;
        }

        let raw = report(&samples, &order);
        let alone = report_boots(&boots);

        // Tear down: everything stopped, nothing left in Docker or under tmp.
        let Bench { server, docker, local, .. } = bench;
        local.stop_all().await;
        if let Some(d) = docker {
            d.pool_stop.cancel();
            d.cold.stop_all().await;
            d.warm.stop_all().await;
            d.restore.stop_all().await;
            d.clone.stop_all().await;
            drop(d.git);
            leftovers.clean();
            let left: Vec<String> = leftovers.0.iter().flat_map(|id| docker_objects(id)).collect();
            assert!(left.is_empty(), "left in Docker: {left:?}");
            println!("\n(Docker: nothing of the benchmark's server ids is left; the image {IMAGE} is kept)");
        }
        server.stop().await.unwrap();
        stop_model.cancel();
        let mut left = processes_under(&tmp_path);
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = processes_under(&tmp_path);
        }
        assert!(left.is_empty(), "processes left running: {left:?}");

        if smoke {
            println!("\nsmoke run only; `cargo bench --bench sandbox_start` for numbers");
            return;
        }
        let out = root().join("bench-results");
        std::fs::create_dir_all(&out).unwrap();
        let path = out.join("sandbox_start.json");
        let raw = json!({
            "runs": runs,
            "warmup": warmup,
            "measured_secs": measured.as_secs_f64(),
            "results": raw,
            "opencode_alone": alone,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&raw).unwrap()).unwrap();
        println!("raw results: {}", path.display());
    });
}
