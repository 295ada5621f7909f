//! A local stand-in for a GitHub Enterprise host, for integration tests
//! that must talk to "GitHub" without a network.
//!
//! One HTTP server on `127.0.0.1:0` answers, with GitHub's own shapes
//! (REST API version 2022-11-28, as in GitHub's published OpenAPI
//! description and the examples on docs.github.com):
//!
//! * REST under `/api/v3` (the Enterprise layout):
//!   - `GET  /repos/{owner}/{repo}/installation` (App JWT) → `installation`
//!   - `GET  /app/installations/{id}` (App JWT) → `installation`
//!   - `POST /app/installations/{id}/access_tokens` (App JWT) → 201
//!     `installation-token` (`ghs_…`, one hour)
//!   - `GET  /user` (user token) → `private-user`; an installation token → 403
//!     "Resource not accessible by integration"
//!   - `GET  /user/emails` (user token with `user` or `user:email` scope) → `[email]`
//!   - `GET  /repos/{owner}/{repo}` → `full-repository`
//!   - `GET  /repos/{owner}/{repo}/pulls` (`state`, `head=owner:branch`,
//!     `base`, `direction`, `per_page`, `page`) → `[pull-request-simple]`; a
//!     `head` without `owner:` is ignored, as GitHub does
//!   - `POST /repos/{owner}/{repo}/pulls` → 201 `pull-request`, or 422
//!     "Validation Failed" (already exists for head+base, head/base not a
//!     branch, no commits between, missing field)
//!   - `GET|PATCH /repos/{owner}/{repo}/pulls/{number}` → `pull-request`
//!
//!   Errors are `{"message","documentation_url","status"}`: 401 "Bad
//!   credentials" / "Requires authentication" / "A JSON web token could not
//!   be decoded", 403 "Resource not accessible by integration", 404 "Not
//!   Found" (private repositories are invisible to those who may not see them).
//! * OAuth web flow: `GET /login/oauth/authorize` (302 back with `code` and
//!   `state`) and `POST /login/oauth/access_token` (form, JSON or query
//!   parameters; JSON answer with `Accept: application/json`, form-encoded
//!   otherwise; errors are HTTP 200 with `error`, `error_description`,
//!   `error_uri`, as GitHub does).
//! * Git smart HTTP at `/{owner}/{repo}.git/…` (and without `.git`),
//!   served by `git http-backend` as CGI, with HTTP Basic auth whose password
//!   (or, with no password, user name) is a token; 401 with
//!   `WWW-Authenticate: Basic realm="GitHub"` when credentials are missing or
//!   bad.
//!
//! Every request is recorded ([`FakeGitHub::requests`]); `path` is the full
//! request path, including `/api/v3`. Bodies over 10 MiB are refused (413).
//! The server runs on its own thread and Tokio runtime, so a test may block
//! its own thread (say, on a `git` child process) without stalling it.
//!
//! App JWTs are verified with `jsonwebtoken`'s `rust_crypto` provider: a test
//! crate that also enables `jsonwebtoken/aws_lc_rs` must install a provider.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use rand::Rng as _;
use serde_json::{Value, json};

const MAX_BODY: usize = 10 * 1024 * 1024;
/// How much of an oversized body is read and dropped before answering 413.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
const DOCS: &str = "https://docs.github.com/rest";
const CODE_LIFETIME: Duration = Duration::from_secs(600);
const INSTALLATION_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const APP_SLUG: &str = "canopy-test-app";
const MSG_BAD_CREDENTIALS: &str = "Bad credentials";
const MSG_REQUIRES_AUTH: &str = "Requires authentication";
const MSG_JWT_UNDECODABLE: &str = "A JSON web token could not be decoded";
const MSG_NOT_ACCESSIBLE: &str = "Resource not accessible by integration";

/// A user account on the fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeUser {
    pub login: String,
    pub id: u64,
    pub name: String,
    pub email: String,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, …
    pub method: String,
    /// The full path, without the query (`/api/v3/user`, `/o/r.git/info/refs`).
    pub path: String,
    /// The raw query string (`""` when none).
    pub query: String,
    /// `app`, `installation:<id>`, `user:<login>`, `anonymous` or `invalid`.
    pub auth: String,
    /// The JSON (or form, as an object of strings) body; `null` otherwise.
    pub body: Value,
}

/// A fake GitHub Enterprise host. Dropping it stops the server and removes
/// its repositories.
pub struct FakeGitHub {
    shared: Arc<Shared>,
    private_key_pem: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    // Dropped last: the server is gone by then.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for FakeGitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGitHub")
            .field("web_url", &self.shared.web_url)
            .field("app_id", &self.shared.app_id)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

struct Shared {
    app_id: u64,
    client_id: String,
    client_secret: String,
    web_url: String,
    api_url: String,
    host: String,
    repos_root: PathBuf,
    home: PathBuf,
    work_root: PathBuf,
    http_backend: PathBuf,
    path_env: String,
    decoding_key: jsonwebtoken::DecodingKey,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    users: HashMap<String, UserRec>,
    signed_in: Option<String>,
    repos: HashMap<String, RepoState>,
    installations: HashMap<u64, InstallationRec>,
    org_ids: HashMap<String, u64>,
    tokens: HashMap<String, TokenRec>,
    issued: Vec<String>,
    codes: HashMap<String, CodeRec>,
    /// GitHub App user tokens: `ghu_` access tokens that expire (8 hours)
    /// with a single-use `ghr_` refresh token.
    /// Their lifetime in seconds (GitHub's: eight hours); `None`: OAuth
    /// App tokens that do not expire.
    expiring_user_tokens: Option<u64>,
    refresh_tokens: HashMap<String, RefreshRec>,
    requests: Vec<Recorded>,
    next_id: u64,
}

struct UserRec {
    user: FakeUser,
    created: SystemTime,
}

struct RepoState {
    owner: String,
    name: String,
    id: u64,
    installed: bool,
    anonymous: bool,
    created: SystemTime,
    pulls: Vec<Pull>,
}

#[derive(Clone)]
struct Pull {
    number: u64,
    id: u64,
    title: String,
    body: Option<String>,
    open: bool,
    draft: bool,
    head_ref: String,
    base_ref: String,
    head_sha: String,
    base_sha: String,
    opened_by: Actor,
    created: SystemTime,
    updated: SystemTime,
    closed: Option<SystemTime>,
    maintainer_can_modify: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Actor {
    User(String),
    Bot,
}

struct InstallationRec {
    id: u64,
    owner: String,
    created: SystemTime,
}

struct TokenRec {
    who: Who,
    expires: Option<SystemTime>,
    revoked: bool,
}

struct RefreshRec {
    login: String,
    scopes: Vec<String>,
    used: bool,
}

struct CodeRec {
    login: String,
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    issued: Instant,
    used: bool,
}

/// Who a request authenticated as.
#[derive(Clone, Debug)]
enum Who {
    Anonymous,
    Invalid(String),
    App,
    Installation {
        id: u64,
        /// Repository names the token was narrowed to (`None`: all of the installation's).
        repos: Option<Vec<String>>,
    },
    User {
        login: String,
        scopes: Vec<String>,
    },
}

impl Who {
    fn label(&self) -> String {
        match self {
            Who::Anonymous => "anonymous".into(),
            Who::Invalid(_) => "invalid".into(),
            Who::App => "app".into(),
            Who::Installation { id, .. } => format!("installation:{id}"),
            Who::User { login, .. } => format!("user:{login}"),
        }
    }

    fn has_scope(&self, wanted: &[&str]) -> bool {
        match self {
            Who::User { scopes, .. } => scopes.iter().any(|s| wanted.contains(&s.as_str())),
            _ => false,
        }
    }
}

fn repo_key(owner: &str, name: &str) -> String {
    format!(
        "{}/{}",
        owner.to_ascii_lowercase(),
        name.to_ascii_lowercase()
    )
}

impl Inner {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn repo(&self, owner: &str, name: &str) -> Option<&RepoState> {
        self.repos.get(&repo_key(owner, name))
    }

    fn installation_for_owner(&self, owner: &str) -> Option<&InstallationRec> {
        self.installations
            .values()
            .find(|i| i.owner.eq_ignore_ascii_case(owner))
    }

    /// Whether installation `id` (narrowed to `repos`) reaches `repo`.
    fn installation_reaches(&self, id: u64, repos: Option<&Vec<String>>, repo: &RepoState) -> bool {
        repo.installed
            && self
                .installation_for_owner(&repo.owner)
                .is_some_and(|i| i.id == id)
            && repos.is_none_or(|names| names.iter().any(|n| n.eq_ignore_ascii_case(&repo.name)))
    }

    fn lookup_token(&self, token: &str) -> Who {
        match self.tokens.get(token) {
            Some(rec) if !rec.revoked && rec.expires.is_none_or(|e| e > SystemTime::now()) => {
                rec.who.clone()
            }
            _ => Who::Invalid(MSG_BAD_CREDENTIALS.into()),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, method: &str, path: &str, query: &str, auth: String, body: Value) {
        self.lock().requests.push(Recorded {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            auth,
            body,
        });
    }

    fn bare_path(&self, owner: &str, name: &str) -> PathBuf {
        self.repos_root.join(owner).join(format!("{name}.git"))
    }

    fn bot_id(&self) -> u64 {
        41_000_000 + self.app_id
    }

    fn bot_login(&self) -> String {
        format!("{APP_SLUG}[bot]")
    }

    /// Who the REST `Authorization` header names.
    fn api_who(&self, headers: &HeaderMap) -> Who {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Who::Anonymous;
        };
        let Ok(value) = value.to_str() else {
            return Who::Invalid(MSG_BAD_CREDENTIALS.into());
        };
        let (scheme, credential) = value.trim().split_once(' ').unwrap_or((value, ""));
        let credential = credential.trim();
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" | "token" => {
                if looks_like_jwt(credential) {
                    match self.verify_jwt(credential) {
                        Ok(()) => Who::App,
                        Err(message) => Who::Invalid(message),
                    }
                } else {
                    self.lock().lookup_token(credential)
                }
            }
            "basic" => match basic_token(credential) {
                Some(token) => self.lock().lookup_token(&token),
                None => Who::Invalid(MSG_BAD_CREDENTIALS.into()),
            },
            _ => Who::Invalid(MSG_BAD_CREDENTIALS.into()),
        }
    }

    /// Who git's HTTP Basic credentials name.
    fn git_who(&self, headers: &HeaderMap) -> Who {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Who::Anonymous;
        };
        let value = value.to_str().unwrap_or("");
        let (scheme, credential) = value.trim().split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Who::Invalid(MSG_BAD_CREDENTIALS.into());
        }
        match basic_token(credential.trim()) {
            Some(token) => self.lock().lookup_token(&token),
            None => Who::Invalid(MSG_BAD_CREDENTIALS.into()),
        }
    }

    /// GitHub's checks on an App JWT: RS256 by the App key, `iss` the App id
    /// (number or string) or client id, `iat` not in the future, `exp` in the
    /// future but at most ten minutes ahead.
    fn verify_jwt(&self, token: &str) -> Result<(), String> {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        // `iss` is a number from most clients: checked below, not by the crate.
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Value>(token, &self.decoding_key, &validation).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires".to_owned()
                }
                _ => MSG_JWT_UNDECODABLE.to_owned(),
            }
        })?;
        let claims = data.claims;
        let now = unix_now();
        let iss_ok = match &claims["iss"] {
            Value::Number(n) => n.as_u64() == Some(self.app_id),
            Value::String(s) => *s == self.app_id.to_string() || *s == self.client_id,
            _ => false,
        };
        if !iss_ok {
            return Err("'Issuer' claim ('iss') must be an Integer".into());
        }
        match claims["iat"].as_u64() {
            Some(iat) if iat <= now + 60 => {}
            _ => {
                return Err("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued".into());
            }
        }
        match claims["exp"].as_u64() {
            Some(exp) if exp <= now + 600 + 60 => Ok(()),
            _ => Err("'Expiration time' claim ('exp') is too far in the future".into()),
        }
    }

    /// Runs git (no user or system configuration) and returns its trimmed
    /// stdout when it succeeds.
    fn git_sync(&self, args: &[&str], cwd: Option<&Path>) -> Option<String> {
        let mut cmd = std::process::Command::new("git");
        self.git_env(&mut cmd);
        cmd.args(args);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let out = cmd.output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn git_env(&self, cmd: &mut std::process::Command) {
        cmd.env_clear()
            .env("PATH", &self.path_env)
            .env("HOME", &self.home)
            .env("LANG", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "Fake GitHub")
            .env("GIT_AUTHOR_EMAIL", "fake@github.invalid")
            .env("GIT_COMMITTER_NAME", "Fake GitHub")
            .env("GIT_COMMITTER_EMAIL", "fake@github.invalid");
    }

    fn branch_sha(&self, bare: &Path, branch: &str) -> Option<String> {
        if branch.is_empty() || branch.starts_with('-') {
            return None;
        }
        let bare = bare.to_string_lossy();
        self.git_sync(
            &[
                "--git-dir",
                &bare,
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}^{{commit}}"),
            ],
            None,
        )
    }

    fn pr_stats(&self, bare: &Path, base: &str, head: &str) -> Stats {
        let bare = bare.to_string_lossy();
        let commits = self
            .git_sync(
                &[
                    "--git-dir",
                    &bare,
                    "rev-list",
                    "--count",
                    &format!("{base}..{head}"),
                ],
                None,
            )
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut stats = Stats {
            commits,
            ..Stats::default()
        };
        if let Some(numstat) = self.git_sync(
            &[
                "--git-dir",
                &bare,
                "diff",
                "--numstat",
                &format!("{base}...{head}"),
            ],
            None,
        ) {
            for line in numstat.lines() {
                let mut parts = line.split('\t');
                stats.additions += parts
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                stats.deletions += parts
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                stats.changed_files += 1;
            }
        }
        stats
    }
}

#[derive(Default, Clone, Copy)]
struct Stats {
    commits: u64,
    additions: u64,
    deletions: u64,
    changed_files: u64,
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

impl FakeGitHub {
    /// Starts the server. Generates an RSA-2048 App key pair with the
    /// `openssl` CLI (the private key in PKCS#1 PEM, as GitHub hands it out).
    pub async fn start(app_id: u64, client_id: &str, client_secret: &str) -> FakeGitHub {
        let dir = tempfile::Builder::new()
            .prefix("fake-github-")
            .tempdir()
            .expect("fake GitHub: cannot make a temporary directory");
        let repos_root = dir.path().join("repos");
        let home = dir.path().join("home");
        let work_root = dir.path().join("work");
        for d in [&repos_root, &home, &work_root] {
            std::fs::create_dir_all(d).expect("fake GitHub: cannot make its directories");
        }

        let key_path = dir.path().join("app-key.pem");
        let key_path_str = key_path.to_string_lossy().into_owned();
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &key_path_str,
        ])
        .await;
        let private_key_pem = openssl(&["pkey", "-in", &key_path_str, "-traditional"]).await;
        let public_key_pem = openssl(&["pkey", "-in", &key_path_str, "-pubout"]).await;
        let decoding_key = jsonwebtoken::DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .expect("fake GitHub: openssl's public key is not an RSA PEM key");

        let http_backend = find_http_backend();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("fake GitHub: cannot bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("fake GitHub: cannot make the listener non-blocking");
        let port = listener
            .local_addr()
            .expect("fake GitHub: the listener has no address")
            .port();
        let host = format!("127.0.0.1:{port}");
        let web_url = format!("http://{host}");
        let shared = Arc::new(Shared {
            app_id,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            api_url: format!("{web_url}/api/v3"),
            web_url,
            host,
            repos_root,
            home,
            work_root,
            http_backend,
            path_env: std::env::var("PATH")
                .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            decoding_key,
            inner: Mutex::new(Inner {
                next_id: 100_000,
                ..Inner::default()
            }),
        });

        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("fake-github".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("fake-github-worker")
                    .enable_all()
                    .build()
                    .expect("fake GitHub: cannot start its runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("fake GitHub: cannot adopt the listener");
                    tokio::select! {
                        _ = async { axum::serve(listener, app).await } => {}
                        _ = shutdown_rx => {}
                    }
                });
                runtime.shutdown_background();
            })
            .expect("fake GitHub: cannot start its thread");

        FakeGitHub {
            shared,
            private_key_pem,
            shutdown: Some(shutdown),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn web_url(&self) -> String {
        self.shared.web_url.clone()
    }

    /// `http://127.0.0.1:PORT/api/v3`
    pub fn api_url(&self) -> String {
        self.shared.api_url.clone()
    }

    /// The App's private key (`-----BEGIN RSA PRIVATE KEY-----`, PKCS#1).
    pub fn app_private_key_pem(&self) -> String {
        self.private_key_pem.clone()
    }

    pub fn app_id(&self) -> u64 {
        self.shared.app_id
    }

    /// The App's slug; its bot user is `<slug>[bot]`.
    pub fn app_slug(&self) -> String {
        APP_SLUG.to_owned()
    }

    /// The login of the App's bot user (who opens pull requests with an installation token).
    pub fn bot_login(&self) -> String {
        self.shared.bot_login()
    }

    /// The App's installation on `owner`, if any repository of `owner` has it.
    pub fn installation_id(&self, owner: &str) -> Option<u64> {
        self.shared
            .lock()
            .installation_for_owner(owner)
            .map(|i| i.id)
    }

    /// A bare repository OWNER/NAME with one commit on `main` (`README.md`,
    /// `src/lib.rs`), served at `{web_url}/OWNER/NAME.git`. `installed`:
    /// whether the App is installed on it (the App has one installation per
    /// owner, `repository_selection: "selected"`). Returns the clone URL.
    /// Panics if the names are unusable or the repository exists.
    pub fn create_repo(&self, owner: &str, name: &str, installed: bool) -> String {
        let shared = &self.shared;
        assert!(
            valid_name(owner) && valid_name(name),
            "fake GitHub: {owner:?}/{name:?} is not a repository name"
        );
        assert!(
            shared.lock().repo(owner, name).is_none(),
            "fake GitHub: {owner}/{name} exists already"
        );
        let bare = shared.bare_path(owner, name);
        std::fs::create_dir_all(&bare).expect("fake GitHub: cannot make the repository directory");
        let bare_str = bare.to_string_lossy().into_owned();
        let git = |args: &[&str], cwd: Option<&Path>| {
            shared
                .git_sync(args, cwd)
                .unwrap_or_else(|| panic!("fake GitHub: `git {}` failed", args.join(" ")))
        };
        git(
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                &bare_str,
            ],
            None,
        );
        git(
            &["--git-dir", &bare_str, "config", "http.receivepack", "true"],
            None,
        );

        let work = tempfile::Builder::new()
            .prefix("seed-")
            .tempdir_in(&shared.work_root)
            .expect("fake GitHub: cannot make a work tree");
        let w = work.path();
        git(&["init", "--quiet", "--initial-branch=main"], Some(w));
        std::fs::write(
            w.join("README.md"),
            format!("# {name}\n\nA repository on the fake GitHub used by tests.\n"),
        )
        .expect("fake GitHub: cannot write README.md");
        std::fs::create_dir_all(w.join("src")).expect("fake GitHub: cannot make src/");
        std::fs::write(
            w.join("src/lib.rs"),
            "/// Adds two numbers.\npub fn add(a: u64, b: u64) -> u64 {\n    a + b\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        assert_eq!(super::add(2, 2), 4);\n    }\n}\n",
        )
        .expect("fake GitHub: cannot write src/lib.rs");
        git(&["add", "-A"], Some(w));
        git(&["commit", "--quiet", "-m", "Initial commit"], Some(w));
        git(
            &["push", "--quiet", &bare_str, "main:refs/heads/main"],
            Some(w),
        );
        drop(work);

        let mut inner = shared.lock();
        let id = inner.next_id();
        if installed && inner.installation_for_owner(owner).is_none() {
            let installation = inner.next_id();
            inner.installations.insert(
                installation,
                InstallationRec {
                    id: installation,
                    owner: owner.to_owned(),
                    created: SystemTime::now(),
                },
            );
        }
        let owner_key = owner.to_ascii_lowercase();
        if !inner.org_ids.contains_key(&owner_key) {
            let org = inner.next_id();
            inner.org_ids.insert(owner_key, org);
        }
        inner.repos.insert(
            repo_key(owner, name),
            RepoState {
                owner: owner.to_owned(),
                name: name.to_owned(),
                id,
                installed,
                anonymous: false,
                created: SystemTime::now(),
                pulls: Vec::new(),
            },
        );
        format!("{}/{owner}/{name}.git", shared.web_url)
    }

    /// Allows git fetches and pushes to OWNER/NAME without credentials (the
    /// repository also becomes public to the REST API for reading).
    /// Panics if there is no such repository.
    pub fn allow_anonymous(&self, owner: &str, name: &str) {
        let mut inner = self.shared.lock();
        let repo = inner
            .repos
            .get_mut(&repo_key(owner, name))
            .unwrap_or_else(|| panic!("fake GitHub: no repository {owner}/{name}"));
        repo.anonymous = true;
    }

    pub fn bare_repo_path(&self, owner: &str, name: &str) -> PathBuf {
        let inner = self.shared.lock();
        match inner.repo(owner, name) {
            Some(r) => self.shared.bare_path(&r.owner, &r.name),
            None => self.shared.bare_path(owner, name),
        }
    }

    pub fn add_user(&self, login: &str, id: u64, name: &str, email: &str) {
        self.shared.lock().users.insert(
            login.to_ascii_lowercase(),
            UserRec {
                user: FakeUser {
                    login: login.to_owned(),
                    id,
                    name: name.to_owned(),
                    email: email.to_owned(),
                },
                created: SystemTime::now(),
            },
        );
    }

    /// Whom the OAuth authorize page treats as signed in (the next
    /// `/login/oauth/authorize` redirects back with a code for them).
    /// Panics if `login` was not added with [`FakeGitHub::add_user`].
    pub fn sign_in_as(&self, login: &str) {
        let mut inner = self.shared.lock();
        let user = inner
            .users
            .get(&login.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("fake GitHub: no user {login:?}; call add_user first"))
            .user
            .login
            .clone();
        inner.signed_in = Some(user);
    }

    /// Signs everybody out: the authorize page answers 403 until `sign_in_as`.
    pub fn sign_out(&self) {
        self.shared.lock().signed_in = None;
    }

    /// Every token the fake ever issued (installation and OAuth user tokens).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().issued.clone()
    }

    /// Pull requests of OWNER/NAME as `GET /repos/{owner}/{repo}/pulls/{n}`
    /// would return them, by number.
    pub fn pulls(&self, owner: &str, name: &str) -> Vec<Value> {
        let (pulls, bare) = {
            let inner = self.shared.lock();
            match inner.repo(owner, name) {
                Some(r) => (r.pulls.clone(), self.shared.bare_path(&r.owner, &r.name)),
                None => return Vec::new(),
            }
        };
        let views = refresh_pulls(&self.shared, &bare, pulls, true);
        let inner = self.shared.lock();
        let Some(repo) = inner.repo(owner, name) else {
            return Vec::new();
        };
        views
            .iter()
            .map(|v| pull_json(&self.shared, &inner, repo, v, true))
            .collect()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// Marks a token revoked: later use answers 401.
    /// Issue user tokens that expire after `secs` seconds, with refresh
    /// tokens, from now on, as a GitHub App with "Expire user
    /// authorization tokens" does (there: eight hours).
    pub fn expiring_user_tokens(&self, secs: u64) {
        self.shared.lock().expiring_user_tokens = Some(secs);
    }

    /// Every user access token issued so far has expired (as if their
    /// time had come); refresh tokens still work.
    pub fn expire_user_tokens(&self) {
        let past = SystemTime::now() - Duration::from_secs(1);
        for rec in self.shared.lock().tokens.values_mut() {
            if matches!(rec.who, Who::User { .. }) {
                rec.expires = Some(past);
            }
        }
    }

    pub fn revoke(&self, token: &str) {
        if let Some(rec) = self.shared.lock().tokens.get_mut(token) {
            rec.revoked = true;
        }
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn openssl(args: &[&str]) -> String {
    let out = tokio::process::Command::new("openssl")
        .args(args)
        .output()
        .await
        .expect("fake GitHub: cannot run the openssl CLI");
    assert!(
        out.status.success(),
        "fake GitHub: `openssl {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("fake GitHub: openssl printed non-UTF-8")
}

fn find_http_backend() -> PathBuf {
    let exec_path = std::process::Command::new("git")
        .arg("--exec-path")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if let Some(dir) = exec_path {
        let candidate = Path::new(&dir).join("git-http-backend");
        if candidate.exists() {
            return candidate;
        }
    }
    PathBuf::from("/usr/lib/git-core/git-http-backend")
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.ends_with(".git")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

// ---------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let headers = parts.headers;

    // An oversized body is still read (up to a bound) before the 413, so the
    // client sees the answer rather than a broken pipe.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        None
    } else {
        axum::body::to_bytes(body, DRAIN_LIMIT)
            .await
            .ok()
            .filter(|b| b.len() <= MAX_BODY)
    };
    let Some(body) = body else {
        let who = if parse_git_path(&path).is_some() {
            shared.git_who(&headers)
        } else {
            shared.api_who(&headers)
        };
        shared.record(method.as_str(), &path, &query, who.label(), Value::Null);
        return api_error(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large", DOCS).into_response();
    };

    let (auth, recorded_body, response) = if path == "/api/v3" || path.starts_with("/api/v3/") {
        let who = shared.api_who(&headers);
        let rest = &path["/api/v3".len()..];
        let response = api(&shared, &method, rest, &query, &body, &who).await;
        (who.label(), body_value(&headers, &body), response)
    } else if path == "/login/oauth/authorize" {
        let response = oauth_authorize(&shared, &method, &query);
        ("anonymous".to_owned(), Value::Null, response)
    } else if path == "/login/oauth/access_token" {
        let response = oauth_access_token(&shared, &method, &query, &headers, &body);
        (
            "anonymous".to_owned(),
            body_value(&headers, &body),
            response,
        )
    } else if let Some((owner, repo, op)) = parse_git_path(&path) {
        let who = shared.git_who(&headers);
        let response = git(
            &shared, &method, &owner, &repo, op, &query, &headers, body, &who,
        )
        .await;
        (who.label(), Value::Null, response)
    } else {
        let who = shared.api_who(&headers);
        (
            who.label(),
            Value::Null,
            text(StatusCode::NOT_FOUND, "Not Found\n"),
        )
    };
    shared.record(method.as_str(), &path, &query, auth, recorded_body);
    response
}

fn body_value(headers: &HeaderMap, body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return v;
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        let map: serde_json::Map<String, Value> = parse_form(&String::from_utf8_lossy(body))
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        return Value::Object(map);
    }
    Value::Null
}

// ---------------------------------------------------------------------------
// REST
// ---------------------------------------------------------------------------

/// A REST error: status and GitHub's JSON error body.
struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

fn api_error(status: StatusCode, message: &str, doc: &str) -> ApiError {
    ApiError {
        status,
        body: json!({
            "message": message,
            "documentation_url": doc,
            "status": status.as_u16().to_string(),
        }),
    }
}

fn not_found(doc: &str) -> ApiError {
    api_error(StatusCode::NOT_FOUND, "Not Found", doc)
}

fn validation_failed(errors: Value, doc: &str) -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        body: json!({
            "message": "Validation Failed",
            "errors": errors,
            "documentation_url": doc,
            "status": "422",
        }),
    }
}

type ApiResult = Result<Response, ApiError>;

const DOC_REPO_INSTALLATION: &str = "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app";
const DOC_INSTALLATION: &str =
    "https://docs.github.com/rest/apps/apps#get-an-installation-for-the-authenticated-app";
const DOC_ACCESS_TOKEN: &str =
    "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app";
const DOC_USER: &str = "https://docs.github.com/rest/users/users#get-the-authenticated-user";
const DOC_EMAILS: &str =
    "https://docs.github.com/rest/users/emails#list-email-addresses-for-the-authenticated-user";
const DOC_REPO: &str = "https://docs.github.com/rest/repos/repos#get-a-repository";
const DOC_LIST_PULLS: &str = "https://docs.github.com/rest/pulls/pulls#list-pull-requests";
const DOC_CREATE_PULL: &str = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request";
const DOC_GET_PULL: &str = "https://docs.github.com/rest/pulls/pulls#get-a-pull-request";
const DOC_UPDATE_PULL: &str = "https://docs.github.com/rest/pulls/pulls#update-a-pull-request";

async fn api(
    shared: &Arc<Shared>,
    method: &Method,
    rest: &str,
    query: &str,
    body: &[u8],
    who: &Who,
) -> Response {
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode_path)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let result = match (method.as_str(), segs.as_slice()) {
        ("GET", ["repos", owner, name, "installation"]) => {
            repo_installation(shared, who, owner, name)
        }
        ("GET", ["app", "installations", id]) => get_installation(shared, who, id),
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            create_access_token(shared, who, id, body)
        }
        ("GET", ["user"]) => get_user(shared, who),
        ("GET", ["user", "emails"]) => get_emails(shared, who),
        ("GET", ["repos", owner, name]) => get_repo(shared, who, owner, name),
        ("GET", ["repos", owner, name, "pulls"]) => {
            list_pulls(shared, who, owner, name, query).await
        }
        ("POST", ["repos", owner, name, "pulls"]) => {
            create_pull(shared, who, owner, name, body).await
        }
        ("GET", ["repos", owner, name, "pulls", number]) => {
            get_pull(shared, who, owner, name, number).await
        }
        ("PATCH", ["repos", owner, name, "pulls", number]) => {
            update_pull(shared, who, owner, name, number, body).await
        }
        _ => match who {
            Who::Invalid(message) => Err(api_error(StatusCode::UNAUTHORIZED, message, DOCS)),
            _ => Err(not_found(DOCS)),
        },
    };
    let mut response = result.unwrap_or_else(ApiError::into_response);
    add_github_headers(&mut response, who);
    response
}

fn add_github_headers(response: &mut Response, who: &Who) {
    let h = response.headers_mut();
    let reset = (unix_now() + 3600).to_string();
    let pairs: [(&str, String); 8] = [
        ("x-github-api-version-selected", "2022-11-28".into()),
        ("x-github-media-type", "github.v3; format=json".into()),
        ("x-github-enterprise-version", "3.17.0".into()),
        ("x-github-request-id", random_hex(8).to_uppercase()),
        ("x-ratelimit-limit", "5000".into()),
        ("x-ratelimit-remaining", "4999".into()),
        ("x-ratelimit-reset", reset),
        ("x-ratelimit-resource", "core".into()),
    ];
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    if let Who::User { scopes, .. } = who
        && let Ok(v) = HeaderValue::from_str(&scopes.join(", "))
    {
        h.insert("x-oauth-scopes", v);
    }
}

/// Only an App JWT may call `/app/…` and `…/installation`.
fn require_app(who: &Who) -> Result<(), ApiError> {
    match who {
        Who::App => Ok(()),
        Who::Anonymous => Err(api_error(StatusCode::UNAUTHORIZED, MSG_REQUIRES_AUTH, DOCS)),
        Who::Invalid(message) => Err(api_error(StatusCode::UNAUTHORIZED, message, DOCS)),
        Who::Installation { .. } | Who::User { .. } => Err(api_error(
            StatusCode::UNAUTHORIZED,
            MSG_JWT_UNDECODABLE,
            DOCS,
        )),
    }
}

/// Whether `who` may read (or write) OWNER/NAME through the REST API;
/// the repository's key when so. Private repositories are 404 to those who
/// may not see them, as on GitHub.
fn repo_access(
    inner: &Inner,
    who: &Who,
    owner: &str,
    name: &str,
    write: bool,
    doc: &str,
) -> Result<String, ApiError> {
    if let Who::Invalid(message) = who {
        return Err(api_error(StatusCode::UNAUTHORIZED, message, DOCS));
    }
    let Some(repo) = inner.repo(owner, name) else {
        return Err(not_found(doc));
    };
    let public_read = repo.anonymous && !write;
    let allowed = match who {
        Who::Invalid(_) => false,
        Who::Anonymous => {
            if repo.anonymous && write {
                return Err(api_error(StatusCode::UNAUTHORIZED, MSG_REQUIRES_AUTH, doc));
            }
            public_read
        }
        Who::App => {
            return Err(api_error(StatusCode::FORBIDDEN, MSG_NOT_ACCESSIBLE, doc));
        }
        Who::Installation { id, repos } => {
            if inner.installation_reaches(*id, repos.as_ref(), repo) || public_read {
                true
            } else if repo.anonymous {
                return Err(api_error(StatusCode::FORBIDDEN, MSG_NOT_ACCESSIBLE, doc));
            } else {
                false
            }
        }
        Who::User { .. } => {
            who.has_scope(&["repo"])
                || public_read
                || (repo.anonymous && who.has_scope(&["public_repo"]))
        }
    };
    if allowed {
        Ok(repo_key(&repo.owner, &repo.name))
    } else {
        Err(not_found(doc))
    }
}

fn repo_installation(shared: &Shared, who: &Who, owner: &str, name: &str) -> ApiResult {
    require_app(who)?;
    let inner = shared.lock();
    let repo = inner
        .repo(owner, name)
        .ok_or_else(|| not_found(DOC_REPO_INSTALLATION))?;
    if !repo.installed {
        return Err(not_found(DOC_REPO_INSTALLATION));
    }
    let installation = inner
        .installation_for_owner(&repo.owner)
        .ok_or_else(|| not_found(DOC_REPO_INSTALLATION))?;
    Ok(json_response(
        StatusCode::OK,
        &installation_json(shared, &inner, installation),
    ))
}

fn get_installation(shared: &Shared, who: &Who, id: &str) -> ApiResult {
    require_app(who)?;
    let inner = shared.lock();
    let installation = id
        .parse::<u64>()
        .ok()
        .and_then(|id| inner.installations.get(&id))
        .ok_or_else(|| not_found(DOC_INSTALLATION))?;
    Ok(json_response(
        StatusCode::OK,
        &installation_json(shared, &inner, installation),
    ))
}

fn create_access_token(shared: &Shared, who: &Who, id: &str, body: &[u8]) -> ApiResult {
    require_app(who)?;
    let request: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|_| {
            api_error(
                StatusCode::BAD_REQUEST,
                "Problems parsing JSON",
                DOC_ACCESS_TOKEN,
            )
        })?
    };
    let mut inner = shared.lock();
    let installation_id = id
        .parse::<u64>()
        .ok()
        .filter(|id| inner.installations.contains_key(id))
        .ok_or_else(|| not_found(DOC_ACCESS_TOKEN))?;
    let owner = inner
        .installations
        .get(&installation_id)
        .map(|i| i.owner.clone())
        .unwrap_or_default();
    let installed: Vec<(String, u64)> = inner
        .repos
        .values()
        .filter(|r| r.installed && r.owner.eq_ignore_ascii_case(&owner))
        .map(|r| (r.name.clone(), r.id))
        .collect();

    let mut narrowed: Option<Vec<String>> = None;
    if let Some(names) = request.get("repositories").and_then(Value::as_array) {
        let mut picked = Vec::new();
        for n in names {
            let n = n.as_str().unwrap_or("");
            match installed
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(n))
            {
                Some((name, _)) => picked.push(name.clone()),
                None => return Err(inaccessible_repositories()),
            }
        }
        narrowed = Some(picked);
    }
    if let Some(ids) = request.get("repository_ids").and_then(Value::as_array) {
        let mut picked = narrowed.take().unwrap_or_default();
        for i in ids {
            match installed.iter().find(|(_, id)| Some(*id) == i.as_u64()) {
                Some((name, _)) => picked.push(name.clone()),
                None => return Err(inaccessible_repositories()),
            }
        }
        narrowed = Some(picked);
    }

    let token = format!("ghs_{}", random_alnum(36));
    let expires = SystemTime::now() + INSTALLATION_TOKEN_LIFETIME;
    inner.tokens.insert(
        token.clone(),
        TokenRec {
            who: Who::Installation {
                id: installation_id,
                repos: narrowed.clone(),
            },
            expires: Some(expires),
            revoked: false,
        },
    );
    inner.issued.push(token.clone());

    let permissions = match request.get("permissions") {
        Some(Value::Object(p)) if !p.is_empty() => Value::Object(p.clone()),
        _ => installation_permissions(),
    };
    let mut answer = json!({
        "token": token,
        "expires_at": rfc3339(expires),
        "permissions": permissions,
        "repository_selection": "selected",
    });
    if let Some(names) = &narrowed {
        let repos: Vec<Value> = names
            .iter()
            .filter_map(|n| inner.repo(&owner, n))
            .map(|r| repo_json(shared, &inner, r, None))
            .collect();
        answer["repositories"] = Value::Array(repos);
    }
    Ok(json_response(StatusCode::CREATED, &answer))
}

fn inaccessible_repositories() -> ApiError {
    api_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "There is at least one repository that does not exist or is not accessible to the parent installation.",
        DOC_ACCESS_TOKEN,
    )
}

fn user_only<'a>(who: &'a Who, doc: &str) -> Result<(&'a str, &'a [String]), ApiError> {
    match who {
        Who::User { login, scopes } => Ok((login, scopes)),
        Who::Anonymous => Err(api_error(StatusCode::UNAUTHORIZED, MSG_REQUIRES_AUTH, doc)),
        Who::Invalid(message) => Err(api_error(StatusCode::UNAUTHORIZED, message, DOCS)),
        Who::App | Who::Installation { .. } => {
            Err(api_error(StatusCode::FORBIDDEN, MSG_NOT_ACCESSIBLE, doc))
        }
    }
}

fn get_user(shared: &Shared, who: &Who) -> ApiResult {
    let (login, _) = user_only(who, DOC_USER)?;
    let inner = shared.lock();
    let rec = inner
        .users
        .get(&login.to_ascii_lowercase())
        .ok_or_else(|| api_error(StatusCode::UNAUTHORIZED, MSG_BAD_CREDENTIALS, DOCS))?;
    let user = &rec.user;
    let owned = inner
        .repos
        .values()
        .filter(|r| r.owner.eq_ignore_ascii_case(login))
        .count();
    let mut body = simple_user_json(shared, &user.login, user.id, "User");
    let extra = json!({
        "user_view_type": "private",
        "name": user.name,
        "company": null,
        "blog": "",
        "location": null,
        "email": user.email,
        "notification_email": user.email,
        "hireable": null,
        "bio": null,
        "twitter_username": null,
        "public_repos": 0,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "created_at": rfc3339(rec.created),
        "updated_at": rfc3339(rec.created),
        "private_gists": 0,
        "total_private_repos": owned,
        "owned_private_repos": owned,
        "disk_usage": 0,
        "collaborators": 0,
        "two_factor_authentication": false,
        "plan": {"name": "enterprise", "space": 976_562_499, "collaborators": 0, "private_repos": 9999},
    });
    merge(&mut body, extra);
    Ok(json_response(StatusCode::OK, &body))
}

fn get_emails(shared: &Shared, who: &Who) -> ApiResult {
    let (login, _) = user_only(who, DOC_EMAILS)?;
    if !who.has_scope(&["user", "user:email"]) {
        // What GitHub answers a token without the scope.
        return Err(not_found(DOC_EMAILS));
    }
    let inner = shared.lock();
    let rec = inner
        .users
        .get(&login.to_ascii_lowercase())
        .ok_or_else(|| api_error(StatusCode::UNAUTHORIZED, MSG_BAD_CREDENTIALS, DOCS))?;
    let host = shared.host.split(':').next().unwrap_or("127.0.0.1");
    let body = json!([
        {"email": rec.user.email, "primary": true, "verified": true, "visibility": "private"},
        {
            "email": format!("{}+{}@users.noreply.{host}", rec.user.id, rec.user.login),
            "primary": false,
            "verified": true,
            "visibility": null,
        },
    ]);
    Ok(json_response(StatusCode::OK, &body))
}

fn get_repo(shared: &Shared, who: &Who, owner: &str, name: &str) -> ApiResult {
    let inner = shared.lock();
    let key = repo_access(&inner, who, owner, name, false, DOC_REPO)?;
    let repo = inner.repos.get(&key).ok_or_else(|| not_found(DOC_REPO))?;
    Ok(json_response(
        StatusCode::OK,
        &repo_json(shared, &inner, repo, Some(who)),
    ))
}

/// Pull requests with their current head and base commits (and, for the
/// full shape, diff statistics), read from the bare repository.
struct PullView {
    pull: Pull,
    stats: Option<Stats>,
}

fn refresh_pulls(
    shared: &Shared,
    bare: &Path,
    pulls: Vec<Pull>,
    with_stats: bool,
) -> Vec<PullView> {
    let mut shas: HashMap<String, Option<String>> = HashMap::new();
    let mut sha = |branch: &str| {
        shas.entry(branch.to_owned())
            .or_insert_with(|| shared.branch_sha(bare, branch))
            .clone()
    };
    pulls
        .into_iter()
        .map(|mut pull| {
            if pull.open {
                if let Some(s) = sha(&pull.head_ref) {
                    pull.head_sha = s;
                }
                if let Some(s) = sha(&pull.base_ref) {
                    pull.base_sha = s;
                }
            }
            let stats = with_stats.then(|| shared.pr_stats(bare, &pull.base_sha, &pull.head_sha));
            PullView { pull, stats }
        })
        .collect()
}

/// Stores refreshed head/base commits back.
fn store_shas(inner: &mut Inner, key: &str, views: &[PullView]) {
    if let Some(repo) = inner.repos.get_mut(key) {
        for view in views {
            if let Some(p) = repo.pulls.iter_mut().find(|p| p.number == view.pull.number) {
                p.head_sha.clone_from(&view.pull.head_sha);
                p.base_sha.clone_from(&view.pull.base_sha);
            }
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("fake GitHub: a git task panicked")
}

async fn list_pulls(
    shared: &Arc<Shared>,
    who: &Who,
    owner: &str,
    name: &str,
    query: &str,
) -> ApiResult {
    let params: HashMap<String, String> = parse_form(query).into_iter().collect();
    let (key, bare, pulls, repo_owner) = {
        let inner = shared.lock();
        let key = repo_access(&inner, who, owner, name, false, DOC_LIST_PULLS)?;
        let repo = inner
            .repos
            .get(&key)
            .ok_or_else(|| not_found(DOC_LIST_PULLS))?;
        (
            key.clone(),
            shared.bare_path(&repo.owner, &repo.name),
            repo.pulls.clone(),
            repo.owner.clone(),
        )
    };
    let state = params.get("state").map_or("open", String::as_str);
    if !matches!(state, "open" | "closed" | "all") {
        return Err(validation_failed(
            json!([{"resource": "Issue", "field": "state", "code": "invalid"}]),
            DOC_LIST_PULLS,
        ));
    }
    // GitHub ignores a `head` that is not `owner:branch`.
    let head = params.get("head").and_then(|h| h.split_once(':'));
    let base = params.get("base");
    let mut selected: Vec<Pull> = pulls
        .into_iter()
        .filter(|p| match state {
            "open" => p.open,
            "closed" => !p.open,
            _ => true,
        })
        .filter(|p| {
            head.is_none_or(|(o, b)| o.eq_ignore_ascii_case(&repo_owner) && p.head_ref == b)
        })
        .filter(|p| base.is_none_or(|b| p.base_ref == *b))
        .collect();
    let sort = params.get("sort").map_or("created", String::as_str);
    let default_direction = if sort == "popularity" || sort == "long-running" {
        "asc"
    } else {
        "desc"
    };
    let ascending = params
        .get("direction")
        .map_or(default_direction, String::as_str)
        == "asc";
    match sort {
        "updated" => selected.sort_by_key(|p| (p.updated, p.number)),
        _ => selected.sort_by_key(|p| p.number),
    }
    if !ascending {
        selected.reverse();
    }
    let per_page = params
        .get("per_page")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = params
        .get("page")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = selected.len();
    let last_page = total.div_ceil(per_page).max(1);
    let page_items: Vec<Pull> = selected
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();

    let shared2 = Arc::clone(shared);
    let views = blocking(move || refresh_pulls(&shared2, &bare, page_items, false)).await;
    let mut inner = shared.lock();
    store_shas(&mut inner, &key, &views);
    let repo = inner
        .repos
        .get(&key)
        .ok_or_else(|| not_found(DOC_LIST_PULLS))?;
    let items: Vec<Value> = views
        .iter()
        .map(|v| pull_json(shared, &inner, repo, v, false))
        .collect();
    let mut response = json_response(StatusCode::OK, &Value::Array(items));
    if last_page > 1 {
        let link_for = |p: usize| {
            let mut pairs: Vec<(String, String)> = parse_form(query)
                .into_iter()
                .filter(|(k, _)| k != "page")
                .collect();
            pairs.push(("page".into(), p.to_string()));
            format!(
                "<{}/repos/{}/{}/pulls?{}>",
                shared.api_url,
                repo.owner,
                repo.name,
                encode_form(&pairs)
            )
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(format!("{}; rel=\"prev\"", link_for(page - 1)));
        }
        if page < last_page {
            links.push(format!("{}; rel=\"next\"", link_for(page + 1)));
            links.push(format!("{}; rel=\"last\"", link_for(last_page)));
        }
        if page > 1 {
            links.push(format!("{}; rel=\"first\"", link_for(1)));
        }
        if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(response)
}

fn actor_of(who: &Who) -> Actor {
    match who {
        Who::User { login, .. } => Actor::User(login.clone()),
        _ => Actor::Bot,
    }
}

fn parse_json_object(body: &[u8], doc: &str) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(api_error(
            StatusCode::BAD_REQUEST,
            "Problems parsing JSON",
            doc,
        )),
    }
}

async fn create_pull(
    shared: &Arc<Shared>,
    who: &Who,
    owner: &str,
    name: &str,
    body: &[u8],
) -> ApiResult {
    let doc = DOC_CREATE_PULL;
    let (key, bare, repo_owner) = {
        let inner = shared.lock();
        let key = repo_access(&inner, who, owner, name, true, doc)?;
        let repo = inner.repos.get(&key).ok_or_else(|| not_found(doc))?;
        (
            key.clone(),
            shared.bare_path(&repo.owner, &repo.name),
            repo.owner.clone(),
        )
    };
    let request = parse_json_object(body, doc)?;
    let field = |name: &str| request.get(name).and_then(Value::as_str).map(str::to_owned);
    let mut missing = Vec::new();
    for f in ["title", "head", "base"] {
        if field(f).is_none_or(|v| v.is_empty()) {
            missing.push(json!({"resource": "PullRequest", "code": "missing_field", "field": f}));
        }
    }
    if !missing.is_empty() {
        return Err(validation_failed(Value::Array(missing), doc));
    }
    let title = field("title").unwrap_or_default();
    let head_param = field("head").unwrap_or_default();
    let base_ref = field("base").unwrap_or_default();
    let pr_body = field("body");
    let draft = request
        .get("draft")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let maintainer_can_modify = request
        .get("maintainer_can_modify")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let head_ref = match head_param.split_once(':') {
        Some((o, b)) if o.eq_ignore_ascii_case(&repo_owner) => b.to_owned(),
        // A fork's branch: the fake has no forks.
        Some(_) => String::new(),
        None => head_param.clone(),
    };

    let (head_sha, base_sha, stats) = {
        let shared2 = Arc::clone(shared);
        let (head_ref, base_ref) = (head_ref.clone(), base_ref.clone());
        blocking(move || {
            let head_sha = shared2.branch_sha(&bare, &head_ref);
            let base_sha = shared2.branch_sha(&bare, &base_ref);
            let stats = match (&head_sha, &base_sha) {
                (Some(h), Some(b)) => Some(shared2.pr_stats(&bare, b, h)),
                _ => None,
            };
            (head_sha, base_sha, stats)
        })
        .await
    };
    let mut invalid = Vec::new();
    if head_sha.is_none() {
        invalid.push(json!({"resource": "PullRequest", "field": "head", "code": "invalid"}));
    }
    if base_sha.is_none() {
        invalid.push(json!({"resource": "PullRequest", "field": "base", "code": "invalid"}));
    }
    let (Some(head_sha), Some(base_sha), Some(stats)) = (head_sha, base_sha, stats) else {
        return Err(validation_failed(Value::Array(invalid), doc));
    };

    let mut inner = shared.lock();
    let repo = inner.repos.get(&key).ok_or_else(|| not_found(doc))?;
    if repo
        .pulls
        .iter()
        .any(|p| p.open && p.head_ref == head_ref && p.base_ref == base_ref)
    {
        return Err(validation_failed(
            json!([{
                "resource": "PullRequest",
                "code": "custom",
                "message": format!("A pull request already exists for {}:{head_ref}.", repo.owner),
            }]),
            doc,
        ));
    }
    if stats.commits == 0 {
        return Err(validation_failed(
            json!([{
                "resource": "PullRequest",
                "code": "custom",
                "message": format!("No commits between {base_ref} and {head_ref}"),
            }]),
            doc,
        ));
    }
    let id = inner.next_id();
    let now = SystemTime::now();
    let repo = inner.repos.get_mut(&key).ok_or_else(|| not_found(doc))?;
    let number = repo.pulls.iter().map(|p| p.number).max().unwrap_or(0) + 1;
    let pull = Pull {
        number,
        id,
        title,
        body: pr_body,
        open: true,
        draft,
        head_ref,
        base_ref,
        head_sha,
        base_sha,
        opened_by: actor_of(who),
        created: now,
        updated: now,
        closed: None,
        maintainer_can_modify,
    };
    repo.pulls.push(pull.clone());
    let repo = inner.repos.get(&key).ok_or_else(|| not_found(doc))?;
    let view = PullView {
        pull,
        stats: Some(stats),
    };
    let body = pull_json(shared, &inner, repo, &view, true);
    let mut response = json_response(StatusCode::CREATED, &body);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}/repos/{}/{}/pulls/{number}",
        shared.api_url, repo.owner, repo.name
    )) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// One pull request, refreshed from the bare repository.
async fn one_pull(
    shared: &Arc<Shared>,
    key: &str,
    number: u64,
    doc: &str,
) -> Result<PullView, ApiError> {
    let (bare, pull) = {
        let inner = shared.lock();
        let repo = inner.repos.get(key).ok_or_else(|| not_found(doc))?;
        let pull = repo
            .pulls
            .iter()
            .find(|p| p.number == number)
            .cloned()
            .ok_or_else(|| not_found(doc))?;
        (shared.bare_path(&repo.owner, &repo.name), pull)
    };
    let shared2 = Arc::clone(shared);
    let mut views = blocking(move || refresh_pulls(&shared2, &bare, vec![pull], true)).await;
    let view = views.pop().ok_or_else(|| not_found(doc))?;
    store_shas(&mut shared.lock(), key, std::slice::from_ref(&view));
    Ok(view)
}

async fn get_pull(
    shared: &Arc<Shared>,
    who: &Who,
    owner: &str,
    name: &str,
    number: &str,
) -> ApiResult {
    let doc = DOC_GET_PULL;
    let key = repo_access(&shared.lock(), who, owner, name, false, doc)?;
    let number = number.parse::<u64>().map_err(|_| not_found(doc))?;
    let view = one_pull(shared, &key, number, doc).await?;
    let inner = shared.lock();
    let repo = inner.repos.get(&key).ok_or_else(|| not_found(doc))?;
    Ok(json_response(
        StatusCode::OK,
        &pull_json(shared, &inner, repo, &view, true),
    ))
}

async fn update_pull(
    shared: &Arc<Shared>,
    who: &Who,
    owner: &str,
    name: &str,
    number: &str,
    body: &[u8],
) -> ApiResult {
    let doc = DOC_UPDATE_PULL;
    let key = repo_access(&shared.lock(), who, owner, name, true, doc)?;
    let number = number.parse::<u64>().map_err(|_| not_found(doc))?;
    let request = parse_json_object(body, doc)?;
    let (bare, exists) = {
        let inner = shared.lock();
        let repo = inner.repos.get(&key).ok_or_else(|| not_found(doc))?;
        (
            shared.bare_path(&repo.owner, &repo.name),
            repo.pulls.iter().any(|p| p.number == number),
        )
    };
    if !exists {
        return Err(not_found(doc));
    }
    let new_state = match request.get("state") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "open" || s == "closed" => Some(s == "open"),
        Some(_) => {
            return Err(validation_failed(
                json!([{"resource": "PullRequest", "field": "state", "code": "invalid"}]),
                doc,
            ));
        }
    };
    let new_base = request
        .get("base")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(base) = new_base.clone() {
        let shared2 = Arc::clone(shared);
        let bare = bare.clone();
        let exists = blocking(move || shared2.branch_sha(&bare, &base).is_some()).await;
        if !exists {
            return Err(validation_failed(
                json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]),
                doc,
            ));
        }
    }
    {
        let mut inner = shared.lock();
        let repo = inner.repos.get_mut(&key).ok_or_else(|| not_found(doc))?;
        let repo_owner = repo.owner.clone();
        let others: Vec<(String, String)> = repo
            .pulls
            .iter()
            .filter(|p| p.open && p.number != number)
            .map(|p| (p.head_ref.clone(), p.base_ref.clone()))
            .collect();
        let pull = repo
            .pulls
            .iter_mut()
            .find(|p| p.number == number)
            .ok_or_else(|| not_found(doc))?;
        let will_be_open = new_state.unwrap_or(pull.open);
        let will_base = new_base.clone().unwrap_or_else(|| pull.base_ref.clone());
        if will_be_open
            && (!pull.open || new_base.is_some())
            && others.contains(&(pull.head_ref.clone(), will_base.clone()))
        {
            return Err(validation_failed(
                json!([{
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": format!("A pull request already exists for {repo_owner}:{}.", pull.head_ref),
                }]),
                doc,
            ));
        }
        let now = SystemTime::now();
        if let Some(title) = request.get("title").and_then(Value::as_str) {
            pull.title = title.to_owned();
        }
        match request.get("body") {
            Some(Value::String(s)) => pull.body = Some(s.clone()),
            Some(Value::Null) => pull.body = None,
            _ => {}
        }
        if let Some(m) = request
            .get("maintainer_can_modify")
            .and_then(Value::as_bool)
        {
            pull.maintainer_can_modify = m;
        }
        if let Some(base) = new_base {
            pull.base_ref = base;
        }
        if let Some(open) = new_state {
            if open != pull.open {
                pull.closed = if open { None } else { Some(now) };
            }
            pull.open = open;
        }
        pull.updated = now;
    }
    let view = one_pull(shared, &key, number, doc).await?;
    let inner = shared.lock();
    let repo = inner.repos.get(&key).ok_or_else(|| not_found(doc))?;
    Ok(json_response(
        StatusCode::OK,
        &pull_json(shared, &inner, repo, &view, true),
    ))
}

// ---------------------------------------------------------------------------
// JSON shapes
// ---------------------------------------------------------------------------

fn node_id(kind_code: &str, kind: &str, id: u64) -> String {
    // GitHub's legacy global node id: base64("<len>:<Type><id>").
    base64::engine::general_purpose::STANDARD.encode(format!("{kind_code}:{kind}{id}"))
}

/// GitHub's `simple-user` shape.
fn simple_user_json(shared: &Shared, login: &str, id: u64, kind: &str) -> Value {
    let web = &shared.web_url;
    let node = match kind {
        "Organization" => node_id("012", "Organization", id),
        _ => node_id("04", "User", id),
    };
    account_fields(
        login,
        id,
        &node,
        &format!("{web}/avatars/u/{id}?"),
        &format!("{web}/{login}"),
        &format!("{}/users/{login}", shared.api_url),
        kind,
    )
}

fn bot_json(shared: &Shared) -> Value {
    let web = &shared.web_url;
    let id = shared.bot_id();
    account_fields(
        &shared.bot_login(),
        id,
        &node_id("03", "Bot", id),
        &format!("{web}/avatars/in/{}?", shared.app_id),
        &format!("{web}/apps/{APP_SLUG}"),
        &format!("{}/users/{APP_SLUG}%5Bbot%5D", shared.api_url),
        "Bot",
    )
}

/// The account fields users and bots share; `u` is the account's API URL.
fn account_fields(
    login: &str,
    id: u64,
    node: &str,
    avatar: &str,
    html: &str,
    u: &str,
    kind: &str,
) -> Value {
    json!({
        "login": login,
        "id": id,
        "node_id": node,
        "avatar_url": avatar,
        "gravatar_id": "",
        "url": u,
        "html_url": html,
        "followers_url": format!("{u}/followers"),
        "following_url": format!("{u}/following{{/other_user}}"),
        "gists_url": format!("{u}/gists{{/gist_id}}"),
        "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/subscriptions"),
        "organizations_url": format!("{u}/orgs"),
        "repos_url": format!("{u}/repos"),
        "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"),
        "type": kind,
        "user_view_type": "public",
        "site_admin": false,
    })
}

/// The account `login` (a user if one was added, an organization otherwise).
fn account_json(shared: &Shared, inner: &Inner, login: &str) -> Value {
    match inner.users.get(&login.to_ascii_lowercase()) {
        Some(rec) => simple_user_json(shared, &rec.user.login, rec.user.id, "User"),
        None => {
            let id = inner
                .org_ids
                .get(&login.to_ascii_lowercase())
                .copied()
                .unwrap_or(1);
            simple_user_json(shared, login, id, "Organization")
        }
    }
}

fn actor_json(shared: &Shared, inner: &Inner, actor: &Actor) -> Value {
    match actor {
        Actor::Bot => bot_json(shared),
        Actor::User(login) => match inner.users.get(&login.to_ascii_lowercase()) {
            Some(rec) => simple_user_json(shared, &rec.user.login, rec.user.id, "User"),
            None => simple_user_json(shared, login, 0, "User"),
        },
    }
}

fn installation_permissions() -> Value {
    json!({"contents": "write", "metadata": "read", "pull_requests": "write"})
}

fn installation_json(shared: &Shared, inner: &Inner, installation: &InstallationRec) -> Value {
    let account = account_json(shared, inner, &installation.owner);
    let is_user = account["type"] == "User";
    let html_url = if is_user {
        format!(
            "{}/settings/installations/{}",
            shared.web_url, installation.id
        )
    } else {
        format!(
            "{}/organizations/{}/settings/installations/{}",
            shared.web_url, installation.owner, installation.id
        )
    };
    json!({
        "id": installation.id,
        "client_id": shared.client_id,
        "account": account.clone(),
        "repository_selection": "selected",
        "access_tokens_url": format!("{}/app/installations/{}/access_tokens", shared.api_url, installation.id),
        "repositories_url": format!("{}/installation/repositories", shared.api_url),
        "html_url": html_url,
        "app_id": shared.app_id,
        "app_slug": APP_SLUG,
        "target_id": account["id"].clone(),
        "target_type": account["type"].clone(),
        "permissions": installation_permissions(),
        "events": ["pull_request", "push"],
        "created_at": rfc3339(installation.created),
        "updated_at": rfc3339(installation.created),
        "single_file_name": null,
        "has_multiple_single_files": false,
        "single_file_paths": [],
        "suspended_by": null,
        "suspended_at": null,
    })
}

/// GitHub's `full-repository` shape (`permissions` when someone asked).
fn repo_json(shared: &Shared, inner: &Inner, repo: &RepoState, who: Option<&Who>) -> Value {
    let api = &shared.api_url;
    let web = &shared.web_url;
    let (o, n) = (&repo.owner, &repo.name);
    let r = format!("{api}/repos/{o}/{n}");
    let private = !repo.anonymous;
    let open_issues = repo.pulls.iter().filter(|p| p.open).count();
    let created = rfc3339(repo.created);
    let mut body = json!({
        "id": repo.id,
        "node_id": node_id("010", "Repository", repo.id),
        "name": n,
        "full_name": format!("{o}/{n}"),
        "private": private,
        "owner": account_json(shared, inner, o),
        "html_url": format!("{web}/{o}/{n}"),
        "description": format!("{n}, on the fake GitHub"),
        "fork": false,
        "url": r,
        "forks_url": format!("{r}/forks"),
        "keys_url": format!("{r}/keys{{/key_id}}"),
        "collaborators_url": format!("{r}/collaborators{{/collaborator}}"),
        "teams_url": format!("{r}/teams"),
        "hooks_url": format!("{r}/hooks"),
        "issue_events_url": format!("{r}/issues/events{{/number}}"),
        "events_url": format!("{r}/events"),
        "assignees_url": format!("{r}/assignees{{/user}}"),
        "branches_url": format!("{r}/branches{{/branch}}"),
        "tags_url": format!("{r}/tags"),
        "blobs_url": format!("{r}/git/blobs{{/sha}}"),
        "git_tags_url": format!("{r}/git/tags{{/sha}}"),
        "git_refs_url": format!("{r}/git/refs{{/sha}}"),
        "trees_url": format!("{r}/git/trees{{/sha}}"),
        "statuses_url": format!("{r}/statuses/{{sha}}"),
        "languages_url": format!("{r}/languages"),
        "stargazers_url": format!("{r}/stargazers"),
        "contributors_url": format!("{r}/contributors"),
        "subscribers_url": format!("{r}/subscribers"),
        "subscription_url": format!("{r}/subscription"),
        "commits_url": format!("{r}/commits{{/sha}}"),
        "git_commits_url": format!("{r}/git/commits{{/sha}}"),
        "comments_url": format!("{r}/comments{{/number}}"),
        "issue_comment_url": format!("{r}/issues/comments{{/number}}"),
        "contents_url": format!("{r}/contents/{{+path}}"),
        "compare_url": format!("{r}/compare/{{base}}...{{head}}"),
        "merges_url": format!("{r}/merges"),
    });
    merge(
        &mut body,
        json!({
            "archive_url": format!("{r}/{{archive_format}}{{/ref}}"),
            "downloads_url": format!("{r}/downloads"),
            "issues_url": format!("{r}/issues{{/number}}"),
            "pulls_url": format!("{r}/pulls{{/number}}"),
            "milestones_url": format!("{r}/milestones{{/number}}"),
            "notifications_url": format!("{r}/notifications{{?since,all,participating}}"),
            "labels_url": format!("{r}/labels{{/name}}"),
            "releases_url": format!("{r}/releases{{/id}}"),
            "deployments_url": format!("{r}/deployments"),
        }),
    );
    // (In parts: one `json!` this size overflows the macro recursion limit.)
    merge(
        &mut body,
        json!({
            "created_at": created,
            "updated_at": created,
            "pushed_at": rfc3339(SystemTime::now()),
            "git_url": format!("git://{}/{o}/{n}.git", shared.host),
            "ssh_url": format!("git@{}:{o}/{n}.git", shared.host.split(':').next().unwrap_or("127.0.0.1")),
            "clone_url": format!("{web}/{o}/{n}.git"),
            "svn_url": format!("{web}/{o}/{n}"),
            "homepage": null,
            "size": 1,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": "Rust",
            "has_issues": true,
        }),
    );
    merge(
        &mut body,
        json!({
            "has_projects": true,
            "has_downloads": true,
            "has_wiki": true,
            "has_pages": false,
            "has_discussions": false,
            "forks_count": 0,
            "mirror_url": null,
            "archived": false,
            "disabled": false,
            "open_issues_count": open_issues,
            "license": null,
            "allow_forking": true,
            "is_template": false,
            "web_commit_signoff_required": false,
            "topics": [],
            "visibility": if private { "private" } else { "public" },
            "forks": 0,
            "open_issues": open_issues,
            "watchers": 0,
            "default_branch": "main",
        }),
    );
    merge(
        &mut body,
        json!({
            "allow_squash_merge": true,
            "allow_merge_commit": true,
            "allow_rebase_merge": true,
            "allow_auto_merge": false,
            "delete_branch_on_merge": false,
            "allow_update_branch": false,
            "use_squash_pr_title_as_default": false,
            "squash_merge_commit_title": "COMMIT_OR_PR_TITLE",
            "squash_merge_commit_message": "COMMIT_MESSAGES",
            "merge_commit_title": "MERGE_MESSAGE",
            "merge_commit_message": "PR_TITLE",
            "network_count": 0,
            "subscribers_count": 1,
        }),
    );
    let permissions = match who {
        Some(Who::User { login, .. }) => {
            let admin = login.eq_ignore_ascii_case(&repo.owner);
            Some(
                json!({"admin": admin, "maintain": admin, "push": true, "triage": true, "pull": true}),
            )
        }
        Some(Who::Installation { .. }) => Some(
            json!({"admin": false, "maintain": false, "push": true, "triage": true, "pull": true}),
        ),
        _ => None,
    };
    if let Some(p) = permissions {
        body["permissions"] = p;
    }
    body
}

fn pull_json(
    shared: &Shared,
    inner: &Inner,
    repo: &RepoState,
    view: &PullView,
    full: bool,
) -> Value {
    let api = &shared.api_url;
    let web = &shared.web_url;
    let (o, n) = (&repo.owner, &repo.name);
    let pull = &view.pull;
    let num = pull.number;
    let r = format!("{api}/repos/{o}/{n}");
    let url = format!("{r}/pulls/{num}");
    let html = format!("{web}/{o}/{n}/pull/{num}");
    let repo_value = repo_json(shared, inner, repo, None);
    let owner_value = account_json(shared, inner, o);
    let association = match &pull.opened_by {
        Actor::User(login) if login.eq_ignore_ascii_case(o) => "OWNER",
        Actor::User(_) => "COLLABORATOR",
        Actor::Bot => "NONE",
    };
    let head = json!({
        "label": format!("{o}:{}", pull.head_ref),
        "ref": pull.head_ref,
        "sha": pull.head_sha,
        "user": owner_value.clone(),
        "repo": repo_value.clone(),
    });
    let base = json!({
        "label": format!("{o}:{}", pull.base_ref),
        "ref": pull.base_ref,
        "sha": pull.base_sha,
        "user": owner_value,
        "repo": repo_value,
    });
    let links = json!({
        "self": {"href": url},
        "html": {"href": html},
        "issue": {"href": format!("{r}/issues/{num}")},
        "comments": {"href": format!("{r}/issues/{num}/comments")},
        "review_comments": {"href": format!("{url}/comments")},
        "review_comment": {"href": format!("{r}/pulls/comments{{/number}}")},
        "commits": {"href": format!("{url}/commits")},
        "statuses": {"href": format!("{r}/statuses/{}", pull.head_sha)},
    });
    let mut body = json!({
        "url": url,
        "id": pull.id,
        "node_id": node_id("011", "PullRequest", pull.id),
        "html_url": html,
        "diff_url": format!("{html}.diff"),
        "patch_url": format!("{html}.patch"),
        "issue_url": format!("{r}/issues/{num}"),
        "number": num,
        "state": if pull.open { "open" } else { "closed" },
        "locked": false,
        "title": pull.title,
        "user": actor_json(shared, inner, &pull.opened_by),
        "body": pull.body,
        "created_at": rfc3339(pull.created),
        "updated_at": rfc3339(pull.updated),
        "closed_at": pull.closed.map(rfc3339),
        "merged_at": null,
        "merge_commit_sha": null,
        "assignee": null,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "labels": [],
        "milestone": null,
        "draft": pull.draft,
        "commits_url": format!("{url}/commits"),
        "review_comments_url": format!("{url}/comments"),
        "review_comment_url": format!("{r}/pulls/comments{{/number}}"),
        "comments_url": format!("{r}/issues/{num}/comments"),
        "statuses_url": format!("{r}/statuses/{}", pull.head_sha),
        "head": head,
        "base": base,
        "_links": links,
        "author_association": association,
        "auto_merge": null,
        "active_lock_reason": null,
    });
    if full {
        let stats = view.stats.unwrap_or_default();
        merge(
            &mut body,
            json!({
                "merged": false,
                "mergeable": null,
                "rebaseable": null,
                "mergeable_state": "unknown",
                "merged_by": null,
                "comments": 0,
                "review_comments": 0,
                "maintainer_can_modify": pull.maintainer_can_modify,
                "commits": stats.commits,
                "additions": stats.additions,
                "deletions": stats.deletions,
                "changed_files": stats.changed_files,
            }),
        );
    }
    body
}

fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(t), Value::Object(e)) = (target, extra) {
        t.extend(e);
    }
}

// ---------------------------------------------------------------------------
// OAuth web flow
// ---------------------------------------------------------------------------

fn html_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{title} · GitHub</title></head><body><h1>{title}</h1><p>{message}</p></body></html>\n"
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Body::from(body))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response error\n"))
}

fn split_scopes(scope: &str) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for s in scope.split([' ', ',']).filter(|s| !s.is_empty()) {
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    }
    scopes
}

fn oauth_authorize(shared: &Shared, method: &Method, query: &str) -> Response {
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    let params: HashMap<String, String> = parse_form(query).into_iter().collect();
    let client_id = params.get("client_id").map_or("", String::as_str);
    if client_id != shared.client_id {
        return html_page(
            StatusCode::BAD_REQUEST,
            "Invalid client",
            "The client_id passed is not that of a registered OAuth application.",
        );
    }
    let Some(redirect_uri) = params
        .get("redirect_uri")
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
    else {
        return html_page(
            StatusCode::BAD_REQUEST,
            "Redirect URI mismatch",
            "The redirect_uri MUST match the registered callback URL for this application.",
        );
    };
    let mut inner = shared.lock();
    let Some(login) = inner.signed_in.clone() else {
        return html_page(
            StatusCode::FORBIDDEN,
            "Sign in to GitHub",
            "Nobody is signed in to the fake GitHub (call sign_in_as).",
        );
    };
    let code = random_hex(20);
    inner.codes.insert(
        code.clone(),
        CodeRec {
            login,
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.clone(),
            scopes: split_scopes(params.get("scope").map_or("", String::as_str)),
            issued: Instant::now(),
            used: false,
        },
    );
    let mut pairs = vec![("code".to_owned(), code)];
    if let Some(state) = params.get("state") {
        pairs.push(("state".to_owned(), state.clone()));
    }
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{separator}{}", encode_form(&pairs));
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Body::from(
            "<html><body>You are being redirected.</body></html>",
        ))
        .unwrap_or_else(|_| text(StatusCode::BAD_REQUEST, "bad redirect_uri\n"))
}

fn oauth_access_token(
    shared: &Shared,
    method: &Method,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if method != Method::POST {
        return text(StatusCode::NOT_FOUND, "Not Found\n");
    }
    let mut params: HashMap<String, String> = parse_form(query).into_iter().collect();
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            for (k, v) in map {
                if let Some(s) = v.as_str() {
                    params.insert(k, s.to_owned());
                }
            }
        }
        _ => params.extend(parse_form(&String::from_utf8_lossy(body))),
    }
    // Client credentials may also come as HTTP Basic.
    if let Some((id, secret)) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(basic_pair)
    {
        params.entry("client_id".into()).or_insert(id);
        params.entry("client_secret".into()).or_insert(secret);
    }
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let get = |k: &str| params.get(k).map_or("", String::as_str);

    let error = |code: &str, description: &str, anchor: &str| {
        oauth_answer(
            wants_json,
            &[
                ("error", code),
                ("error_description", description),
                (
                    "error_uri",
                    &format!(
                        "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#{anchor}"
                    ),
                ),
            ],
        )
    };
    if get("client_id") != shared.client_id || get("client_secret") != shared.client_secret {
        return error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
            "incorrect-client-credentials",
        );
    }
    let mut inner = shared.lock();
    if get("grant_type") == "refresh_token" {
        let refresh = get("refresh_token");
        let Some(rec) = inner.refresh_tokens.get_mut(refresh).filter(|r| !r.used) else {
            return error(
                "bad_refresh_token",
                "The refresh token passed is incorrect or expired.",
                "bad-refresh-token",
            );
        };
        rec.used = true;
        let (login, scopes) = (rec.login.clone(), rec.scopes.clone());
        let pairs = issue_user_token(&mut inner, login, scopes);
        drop(inner);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        return oauth_answer(wants_json, &pairs);
    }
    let code = get("code");
    let usable = inner.codes.get(code).is_some_and(|c| {
        !c.used && c.issued.elapsed() < CODE_LIFETIME && c.client_id == shared.client_id
    });
    if code.is_empty() || !usable {
        return error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
            "bad-verification-code",
        );
    }
    let redirect_uri = get("redirect_uri");
    if !redirect_uri.is_empty()
        && inner
            .codes
            .get(code)
            .is_some_and(|c| c.redirect_uri != redirect_uri)
    {
        return error(
            "redirect_uri_mismatch",
            "The redirect_uri MUST match the registered callback URL for this application.",
            "redirect-uri-mismatch2",
        );
    }
    let Some(rec) = inner.codes.get_mut(code) else {
        return error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
            "bad-verification-code",
        );
    };
    rec.used = true;
    let login = rec.login.clone();
    let scopes = rec.scopes.clone();
    let pairs = issue_user_token(&mut inner, login, scopes);
    drop(inner);
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    oauth_answer(wants_json, &pairs)
}

/// A user access token (and, when they expire, its refresh token): the
/// token endpoint's answer fields.
fn issue_user_token(
    inner: &mut Inner,
    login: String,
    scopes: Vec<String>,
) -> Vec<(&'static str, String)> {
    const REFRESH_SECS: u64 = 184 * 24 * 3600;
    let lifetime = inner.expiring_user_tokens;
    let expiring = lifetime.is_some();
    let prefix = if expiring { "ghu_" } else { "gho_" };
    let token = format!("{prefix}{}", random_alnum(36));
    inner.tokens.insert(
        token.clone(),
        TokenRec {
            who: Who::User {
                login: login.clone(),
                scopes: scopes.clone(),
            },
            expires: lifetime.map(|s| SystemTime::now() + Duration::from_secs(s)),
            revoked: false,
        },
    );
    inner.issued.push(token.clone());
    let mut pairs = vec![
        ("access_token", token),
        ("token_type", "bearer".to_owned()),
        ("scope", scopes.join(",")),
    ];
    if let Some(secs) = lifetime {
        let refresh = format!("ghr_{}", random_alnum(76));
        inner.refresh_tokens.insert(
            refresh.clone(),
            RefreshRec {
                login,
                scopes,
                used: false,
            },
        );
        inner.issued.push(refresh.clone());
        pairs.extend([
            ("expires_in", secs.to_string()),
            ("refresh_token", refresh),
            ("refresh_token_expires_in", REFRESH_SECS.to_string()),
        ]);
    }
    pairs
}

fn oauth_answer(json_wanted: bool, pairs: &[(&str, &str)]) -> Response {
    if json_wanted {
        let map: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| {
                // GitHub sends lifetimes as numbers.
                let value = match v.parse::<u64>() {
                    Ok(n) if k.ends_with("expires_in") => Value::from(n),
                    _ => Value::String((*v).to_owned()),
                };
                ((*k).to_owned(), value)
            })
            .collect();
        json_response(StatusCode::OK, &Value::Object(map))
    } else {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Response::builder()
            .status(StatusCode::OK)
            .header(
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(Body::from(encode_form(&owned)))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response error\n"))
    }
}

// ---------------------------------------------------------------------------
// Git smart HTTP
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GitOp {
    InfoRefs,
    UploadPack,
    ReceivePack,
}

fn parse_git_path(path: &str) -> Option<(String, String, GitOp)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (owner, repo, op) = match segs.as_slice() {
        [owner, repo, "info", "refs"] => (*owner, *repo, GitOp::InfoRefs),
        [owner, repo, "git-upload-pack"] => (*owner, *repo, GitOp::UploadPack),
        [owner, repo, "git-receive-pack"] => (*owner, *repo, GitOp::ReceivePack),
        _ => return None,
    };
    let name = repo.strip_suffix(".git").unwrap_or(repo);
    (valid_name(owner) && valid_name(name)).then(|| (owner.to_owned(), name.to_owned(), op))
}

fn git_deny(status: StatusCode, message: &str) -> Response {
    let mut response = text(status, message);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"GitHub\""),
        );
    }
    response
}

#[allow(clippy::too_many_arguments)]
async fn git(
    shared: &Arc<Shared>,
    method: &Method,
    owner: &str,
    name: &str,
    op: GitOp,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
    who: &Who,
) -> Response {
    let service = parse_form(query)
        .into_iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v);
    // Reads and writes need the same access here: an installation token
    // may write (`contents: write`), and so may a user token with `repo`.
    if op == GitOp::InfoRefs
        && !matches!(
            service.as_deref(),
            Some("git-upload-pack" | "git-receive-pack")
        )
    {
        return text(StatusCode::FORBIDDEN, "Please upgrade your git client.\n");
    }
    let method_ok = match op {
        GitOp::InfoRefs => method == Method::GET,
        GitOp::UploadPack | GitOp::ReceivePack => method == Method::POST,
    };
    if !method_ok {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }

    let (repo_owner, repo_name, remote_user) = {
        let inner = shared.lock();
        if let Who::Invalid(_) = who {
            return git_deny(
                StatusCode::UNAUTHORIZED,
                "Invalid username or token. Password authentication is not supported for Git operations.\n",
            );
        }
        let repo = inner.repo(owner, name);
        let anonymous_ok = repo.is_some_and(|r| r.anonymous);
        if matches!(who, Who::Anonymous) && !anonymous_ok {
            // As GitHub: ask for credentials, whether or not the repository exists.
            return git_deny(StatusCode::UNAUTHORIZED, "Authentication required.\n");
        }
        let Some(repo) = repo else {
            return git_deny(StatusCode::NOT_FOUND, "Repository not found.\n");
        };
        let (allowed, remote_user) = match who {
            Who::Anonymous | Who::Invalid(_) => (anonymous_ok, None),
            Who::App => (anonymous_ok, None),
            Who::Installation { id, repos } => (
                anonymous_ok || inner.installation_reaches(*id, repos.as_ref(), repo),
                Some(shared.bot_login()),
            ),
            Who::User { login, .. } => (
                anonymous_ok || who.has_scope(&["repo"]),
                Some(login.clone()),
            ),
        };
        if !allowed {
            return git_deny(StatusCode::NOT_FOUND, "Repository not found.\n");
        }
        (repo.owner.clone(), repo.name.clone(), remote_user)
    };

    let suffix = match op {
        GitOp::InfoRefs => "info/refs",
        GitOp::UploadPack => "git-upload-pack",
        GitOp::ReceivePack => "git-receive-pack",
    };
    let path_info = format!("/{repo_owner}/{repo_name}.git/{suffix}");
    run_http_backend(
        shared,
        method,
        &path_info,
        query,
        headers,
        body,
        remote_user,
    )
    .await
}

async fn run_http_backend(
    shared: &Shared,
    method: &Method,
    path_info: &str,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
    remote_user: Option<String>,
) -> Response {
    use tokio::io::AsyncWriteExt as _;

    let header_str = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut cmd = tokio::process::Command::new(&shared.http_backend);
    cmd.env_clear()
        .env("PATH", &shared.path_env)
        .env("HOME", &shared.home)
        .env("LANG", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &shared.repos_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "fake-github")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", path_info)
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string());
    if let Some(ct) = header_str(header::CONTENT_TYPE) {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(ce) = header_str(header::CONTENT_ENCODING) {
        cmd.env("HTTP_CONTENT_ENCODING", ce);
    }
    if let Some(proto) = headers.get("git-protocol").and_then(|v| v.to_str().ok()) {
        cmd.env("GIT_PROTOCOL", proto)
            .env("HTTP_GIT_PROTOCOL", proto);
    }
    if let Some(user) = remote_user {
        cmd.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot run {}: {e}\n", shared.http_backend.display()),
            );
        }
    };
    let stdin = child.stdin.take();
    let writer = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            // The backend may stop reading early; its answer says why.
            let _ = stdin.write_all(&body).await;
            let _ = stdin.shutdown().await;
        }
    });
    let output = child.wait_with_output().await;
    let _ = writer.await;
    match output {
        Ok(out) => parse_cgi(&out.stdout).unwrap_or_else(|| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!(
                    "git http-backend answered nonsense: {}\n",
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        }),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("git http-backend failed: {e}\n"),
        ),
    }
}

/// A CGI answer: header lines (`Status:` among them), a blank line, the body.
fn parse_cgi(out: &[u8]) -> Option<Response> {
    let crlf = find(out, b"\r\n\r\n").map(|i| (i, 4));
    let lf = find(out, b"\n\n").map(|i| (i, 2));
    let (end, sep) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => return None,
    };
    let head = std::str::from_utf8(&out[..end]).ok()?;
    let body = out[end + sep..].to_vec();
    let mut builder = Response::builder().status(StatusCode::OK);
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next()?.parse::<u16>().ok()?;
            builder = builder.status(StatusCode::from_u16(code).ok()?);
        } else {
            builder = builder.header(name.trim(), value);
        }
    }
    builder.body(Body::from(body)).ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(bytes))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response error\n"))
}

fn text(status: StatusCode, message: &str) -> Response {
    let mut response = Response::new(Body::from(message.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.split('.').count() == 3
}

/// `user:password` from a Basic credential.
fn basic_pair(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    Some((user.to_owned(), password.to_owned()))
}

/// The token in a Basic credential: the password, or the user name when the
/// password is empty (`TOKEN:` and `TOKEN:x-oauth-basic` both work on GitHub).
fn basic_token(encoded: &str) -> Option<String> {
    let (user, password) = basic_pair(encoded)?;
    let token = if password.is_empty() || password == "x-oauth-basic" {
        user
    } else {
        password
    };
    (!token.is_empty()).then_some(token)
}

fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn random_hex(n: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(HEX[rng.random_range(0..16)]))
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SSZ`
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_decode_path(s: &str) -> String {
    percent_decode(s, false)
}

fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_form(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}
