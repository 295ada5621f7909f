//! Attributed commits of the workspace (the git repository the agent edits).
//!
//! The sidecar commits after each queue entry of its session finishes and
//! before the next one starts, so one commit never mixes two people's
//! prompts. The author is the person who asked, the committer is Canopy,
//! and a `Canopy-Queue-Entry` trailer ties the commit to its prompt.
//!
//! The repository is the agent's, so it is not trusted: hooks, fsmonitor
//! commands and signing are switched off, the author's identity goes
//! through the environment, and the message through stdin. The system and
//! global git configs are ignored so the machine's settings cannot change
//! what is committed.
//!
//! `refs/canopy/base` marks where the session started ([`mark_base`]); the
//! files a session changed are counted from there.

use std::{
    path::Path,
    process::{Output, Stdio},
    time::Duration,
};

use canopy_protocol::sidecar::{FileDiff, SessionDiff};
use tokio::{io::AsyncWriteExt, process::Command};

/// The committer of every Canopy commit (the author is the person).
pub const COMMITTER_NAME: &str = "Canopy";
/// The committer's email.
pub const COMMITTER_EMAIL: &str = "canopy@localhost";
/// The ref that marks where the session started.
pub const BASE_REF: &str = "refs/canopy/base";
/// The trailer naming the queue entry a commit belongs to.
pub const TRAILER: &str = "Canopy-Queue-Entry";

/// Longest subject line, "…" included (git's customary width).
const MAX_SUBJECT_CHARS: usize = 72;
/// Longest body kept: a commit message is not the place for a whole essay.
const MAX_BODY_CHARS: usize = 16 * 1024;
/// Longest author name accepted.
const MAX_NAME_CHARS: usize = 200;
/// Longest author email accepted (RFC 3696's limit).
const MAX_EMAIL_CHARS: usize = 320;
/// Longest queue entry id accepted (the control API's limit).
const MAX_ENTRY_BYTES: usize = 100;
/// How long one git command may take before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of git's stderr an error keeps.
const MAX_STDERR_BYTES: usize = 2048;

/// Configuration that keeps the untrusted repository from running
/// commands as the sidecar or changing the output we parse.
const SAFE_CONFIG: &[&str] = &[
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.quotepath=false",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
];

/// Variables of the sidecar's own environment that would redirect git to
/// another repository, inject configuration or fix the commit identity.
const INHERITED_ENV_REMOVED: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
];

// The control API's body and answer: a contract with the server, so they
// live in the protocol crate.
pub use canopy_protocol::sidecar::{CommitOutcome, CommitRequest};

/// A git operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The request cannot be committed as given.
    #[error("{0}")]
    Invalid(String),
    /// git ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Git {
        /// The command, without the safety options.
        command: String,
        /// Its exit status.
        status: String,
        /// The start of its stderr.
        stderr: String,
    },
    /// git could not be run.
    #[error("cannot run git: {0}")]
    Io(#[from] std::io::Error),
    /// git took too long and was killed.
    #[error("`{0}` timed out after {secs} s", secs = COMMAND_TIMEOUT.as_secs())]
    Timeout(String),
}

/// Record where the session starts: point [`BASE_REF`] at HEAD unless it
/// already exists (a restarted sidecar keeps the first base). A repository
/// without commits gets the empty tree as its base, so a sidecar restarted
/// after the first commits still counts them.
pub async fn mark_base(workspace: &Path) -> Result<(), GitError> {
    if rev(workspace, BASE_REF).await?.is_some() {
        return Ok(());
    }
    let base = match resolve(workspace, "HEAD").await? {
        Some(head) => head,
        None => empty_tree(workspace, true).await?,
    };
    // The empty old value makes git refuse if someone created it meanwhile.
    match git_ok(workspace, &["update-ref", BASE_REF, &base, ""]).await {
        Ok(_) => Ok(()),
        Err(e) if rev(workspace, BASE_REF).await?.is_some() => {
            tracing::debug!(error = %e, "the base appeared concurrently");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Commit everything in the workspace for one finished queue entry, as its
/// author, and report where the workspace stands.
pub async fn commit_entry(
    workspace: &Path,
    req: &CommitRequest,
) -> Result<CommitOutcome, GitError> {
    validate(req)?;
    let message = message(req);
    git_ok(workspace, &["add", "-A"]).await?;
    let commit = if staged_changes(workspace).await? {
        let env = [
            ("GIT_AUTHOR_NAME", req.author_name.trim()),
            ("GIT_AUTHOR_EMAIL", req.author_email.trim()),
            ("GIT_COMMITTER_NAME", COMMITTER_NAME),
            ("GIT_COMMITTER_EMAIL", COMMITTER_EMAIL),
        ];
        let args = [
            "commit",
            "-q",
            "--no-verify",
            "--no-gpg-sign",
            // Keeps lines starting with `#` (markdown headings in prompts).
            "--cleanup=whitespace",
            "-F",
            "-",
        ];
        let out = run(workspace, &args, Some(message.as_bytes()), &env).await?;
        check(&args, out)?;
        resolve(workspace, "HEAD").await?
    } else {
        None
    };
    let (branch, head) = status_summary(workspace).await?;
    let files_changed = files_changed(workspace, head.is_some()).await?;
    Ok(CommitOutcome {
        commit,
        files_changed,
        branch,
        head,
    })
}

/// Everything the session changed since its base, committed or not
/// (untracked files included, ignored ones not), with patches up to the
/// size limits of [`SessionDiff`].
///
/// The working tree is staged into a scratch index (a copy of the real one,
/// so unchanged files are not hashed again), never the real index, so a
/// diff does not disturb the next commit.
pub async fn session_diff(workspace: &Path) -> Result<SessionDiff, GitError> {
    let head = resolve(workspace, "HEAD").await?;
    let base = match rev(workspace, &format!("{BASE_REF}^{{tree}}")).await? {
        Some(base) => base,
        None => empty_tree(workspace, false).await?,
    };
    let git_dir =
        String::from_utf8_lossy(&git_ok(workspace, &["rev-parse", "--absolute-git-dir"]).await?)
            .trim()
            .to_owned();
    // A directory, not an empty file: git refuses an empty index file, and
    // before the first `git add` there is no real index to copy.
    let scratch = tempfile::Builder::new()
        .prefix("canopy-diff-")
        .tempdir_in(&git_dir)?;
    let scratch_index = scratch.path().join("index");
    let real = Path::new(&git_dir).join("index");
    if real.is_file() {
        tokio::fs::copy(&real, &scratch_index).await?;
    }
    let index = scratch_index.to_string_lossy().into_owned();
    let env = [("GIT_INDEX_FILE", index.as_str())];
    let base = base.as_str();
    let staged = |args: &'static [&'static str]| async move {
        let mut all: Vec<&str> = args.to_vec();
        all.push(base);
        all.push("--");
        let out = run(workspace, &all, None, &env).await?;
        check(&all, out)
    };
    let out = run(workspace, &["add", "-A"], None, &env).await?;
    check(&["add", "-A"], out)?;
    let numstat = staged(&["diff", "--cached", "--numstat", "-z", "--no-renames"]).await?;
    let statuses = staged(&["diff", "--cached", "--name-status", "-z", "--no-renames"]).await?;
    let mut files: Vec<FileDiff> = Vec::new();
    // `<A|M|D|T>\0<path>\0` pairs.
    let fields = split_nul(&statuses);
    for pair in fields.chunks(2) {
        let [code, path] = pair else { continue };
        files.push(FileDiff {
            path: path.clone(),
            status: match code.as_str() {
                "A" => "added",
                "D" => "deleted",
                _ => "modified",
            }
            .to_owned(),
            ..FileDiff::default()
        });
    }
    // `<added>\t<deleted>\t<path>\0`, `-\t-\t` for binary files.
    for line in split_nul(&numstat) {
        let mut parts = line.splitn(3, '\t');
        let (Some(added), Some(deleted), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if let Some(f) = files.iter_mut().find(|f| f.path == path) {
            f.binary = added == "-";
            f.additions = added.parse().unwrap_or(0);
            f.deletions = deleted.parse().unwrap_or(0);
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut budget = SessionDiff::MAX_PATCH_BYTES;
    let mut truncated = false;
    for f in files.iter_mut().filter(|f| !f.binary) {
        if budget == 0 {
            truncated = true;
            continue;
        }
        let args = [
            "diff",
            "--cached",
            "--no-renames",
            "--no-ext-diff",
            "--no-color",
            "--unified=3",
            base,
            "--",
            f.path.as_str(),
        ];
        let patch = check(&args, run(workspace, &args, None, &env).await?)?;
        // From the first hunk on: the header repeats what the entry says.
        let text = String::from_utf8_lossy(&patch);
        let hunks = text.find("\n@@").map_or("", |at| &text[at + 1..]);
        if hunks.len() > SessionDiff::MAX_FILE_PATCH_BYTES.min(budget) {
            truncated = true;
            continue;
        }
        budget -= hunks.len();
        f.patch = Some(hunks.to_owned());
    }
    Ok(SessionDiff {
        head,
        files,
        truncated,
    })
}

/// The current branch and commit, for heartbeats and status.
pub async fn status_summary(
    workspace: &Path,
) -> Result<(Option<String>, Option<String>), GitError> {
    let args = ["symbolic-ref", "--short", "-q", "HEAD"];
    let out = run(workspace, &args, None, &[]).await?;
    // Exit status 1 without stderr: HEAD is detached.
    let branch = match out.status.code() {
        Some(1) if out.stderr.is_empty() => None,
        _ => non_empty(check(&args, out)?),
    };
    let head = resolve(workspace, "HEAD").await?;
    Ok((branch, head))
}

/// Refuse what would forge or break the commit's identity or trailer.
fn validate(req: &CommitRequest) -> Result<(), GitError> {
    let entry = &req.queue_entry;
    if entry.is_empty()
        || entry.len() > MAX_ENTRY_BYTES
        || entry.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(GitError::Invalid(format!(
            "queue_entry must be 1 to {MAX_ENTRY_BYTES} bytes without spaces or control characters"
        )));
    }
    let name = req.author_name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(GitError::Invalid(format!(
            "author_name must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(|c| c == '<' || c == '>' || c.is_control()) {
        return Err(GitError::Invalid(
            "author_name must not contain `<`, `>`, line breaks or control characters".into(),
        ));
    }
    // git drops these from the ends of a name and refuses what is left empty.
    if name.chars().all(|c| ".,:;\"'\\ ".contains(c)) {
        return Err(GitError::Invalid(
            "author_name must contain more than punctuation".into(),
        ));
    }
    let email = req.author_email.trim();
    if email.is_empty() || email.chars().count() > MAX_EMAIL_CHARS {
        return Err(GitError::Invalid(format!(
            "author_email must be 1 to {MAX_EMAIL_CHARS} characters"
        )));
    }
    if email
        .chars()
        .any(|c| c == '<' || c == '>' || c.is_whitespace() || c.is_control())
    {
        return Err(GitError::Invalid(
            "author_email must not contain `<`, `>`, spaces or control characters".into(),
        ));
    }
    Ok(())
}

/// Subject, optional body and the queue entry trailer.
fn message(req: &CommitRequest) -> String {
    let subject =
        subject(&req.subject).unwrap_or_else(|| format!("Canopy prompt {}", req.queue_entry));
    let mut message = subject;
    message.push_str("\n\n");
    if let Some(body) = req.body.as_deref().and_then(body) {
        message.push_str(&body);
        message.push_str("\n\n");
    }
    message.push_str(&format!("{TRAILER}: {}\n", req.queue_entry));
    message
}

/// The prompt's first non-blank line, without control characters, cut to
/// [`MAX_SUBJECT_CHARS`].
fn subject(prompt: &str) -> Option<String> {
    let line = prompt
        .lines()
        .map(|line| {
            line.chars()
                .map(|c| if c == '\t' { ' ' } else { c })
                .filter(|c| !c.is_control())
                .collect::<String>()
        })
        .find(|line| !line.trim().is_empty())?;
    let line = line.trim();
    if line.chars().count() <= MAX_SUBJECT_CHARS {
        return Some(line.to_owned());
    }
    let cut: String = line.chars().take(MAX_SUBJECT_CHARS - 1).collect();
    Some(format!("{}…", cut.trim_end()))
}

/// The body without control characters other than newlines and tabs (they
/// would garble logs and terminals), or `None` when nothing is left.
fn body(text: &str) -> Option<String> {
    let clean: String = text
        .replace("\r\n", "\n")
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect();
    let clean = clean.trim();
    if clean.is_empty() {
        return None;
    }
    if clean.chars().count() <= MAX_BODY_CHARS {
        return Some(clean.to_owned());
    }
    let cut: String = clean.chars().take(MAX_BODY_CHARS - 1).collect();
    Some(format!("{cut}…"))
}

/// Whether the index differs from HEAD (or holds anything, before the
/// first commit).
async fn staged_changes(workspace: &Path) -> Result<bool, GitError> {
    let args = ["diff", "--cached", "--quiet", "--no-ext-diff"];
    let out = run(workspace, &args, None, &[]).await?;
    match out.status.code() {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        _ => check(&args, out).map(|_| false),
    }
}

/// The session's changed paths: committed since the base, plus whatever is
/// not committed (ignored files aside).
async fn files_changed(workspace: &Path, has_head: bool) -> Result<Vec<String>, GitError> {
    let mut paths = Vec::new();
    if has_head {
        // A commit, or the empty tree for a session that began without one.
        let base = match rev(workspace, &format!("{BASE_REF}^{{tree}}")).await? {
            Some(base) => base,
            None => empty_tree(workspace, false).await?,
        };
        let out = git_ok(
            workspace,
            &[
                "diff",
                "--name-only",
                "-z",
                "--no-renames",
                "--no-ext-diff",
                &base,
                "HEAD",
                "--",
            ],
        )
        .await?;
        paths.extend(split_nul(&out));
    }
    let out = git_ok(
        workspace,
        &[
            "status",
            "--porcelain=v1",
            "-z",
            "--no-renames",
            "--untracked-files=all",
        ],
    )
    .await?;
    // Each entry is `XY <path>`.
    paths.extend(
        split_nul(&out)
            .into_iter()
            .filter_map(|entry| entry.get(3..).map(str::to_owned)),
    );
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// The empty tree's id in this repository's hash (SHA-1 or SHA-256).
/// With `store`, it is written into the object database (a ref may only
/// point at an object that exists there).
async fn empty_tree(workspace: &Path, store: bool) -> Result<String, GitError> {
    let args: &[&str] = if store {
        &["hash-object", "-w", "-t", "tree", "--stdin"]
    } else {
        &["hash-object", "-t", "tree", "--stdin"]
    };
    let out = git_ok(workspace, args).await?;
    non_empty(out).ok_or_else(|| GitError::Git {
        command: "git hash-object -t tree --stdin".into(),
        status: "exit status: 0".into(),
        stderr: "no object id".into(),
    })
}

/// The commit `rev` names, or `None` if it does not exist.
async fn resolve(workspace: &Path, name: &str) -> Result<Option<String>, GitError> {
    rev(workspace, &format!("{name}^{{commit}}")).await
}

/// The object `spec` names, or `None` if there is none.
async fn rev(workspace: &Path, spec: &str) -> Result<Option<String>, GitError> {
    let args = ["rev-parse", "-q", "--verify", spec];
    let out = run(workspace, &args, None, &[]).await?;
    // Exit status 1 without stderr: no such commit.
    if out.status.code() == Some(1) && out.stderr.is_empty() {
        return Ok(None);
    }
    Ok(non_empty(check(&args, out)?))
}

fn split_nul(out: &[u8]) -> Vec<String> {
    out.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn non_empty(out: Vec<u8>) -> Option<String> {
    let s = String::from_utf8_lossy(&out).trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// Push the checked-out `branch` to `origin` as `refs/heads/<branch>`,
/// with `env` (the credential helper's); returns the pushed head. A
/// rejected push (the remote moved on) is an error that says so.
pub async fn push(
    workspace: &Path,
    branch: &str,
    env: &[(String, String)],
) -> Result<String, GitError> {
    if branch.is_empty()
        || branch.len() > 250
        || branch.starts_with('-')
        || branch.contains("..")
        || branch
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
    {
        return Err(GitError::Invalid(format!(
            "{branch:?} is not a branch name"
        )));
    }
    let current = non_empty(git_ok(workspace, &["symbolic-ref", "--short", "-q", "HEAD"]).await?);
    if current.as_deref() != Some(branch) {
        return Err(GitError::Invalid(format!(
            "the workspace is on {}, not on {branch}",
            current.as_deref().unwrap_or("a detached head")
        )));
    }
    let head = rev(workspace, "HEAD")
        .await?
        .ok_or_else(|| GitError::Invalid("the branch has no commit to push".into()))?;
    let refspec = format!("HEAD:refs/heads/{branch}");
    let args = ["push", "--quiet", "--porcelain", "origin", refspec.as_str()];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = run(workspace, &args, None, &env).await?;
    check(&args, out)?;
    Ok(head)
}

/// Run git and return its stdout, or the error if it failed.
async fn git_ok(workspace: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let out = run(workspace, args, None, &[]).await?;
    check(args, out)
}

fn check(args: &[&str], out: Output) -> Result<Vec<u8>, GitError> {
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(GitError::Git {
        command: describe(args),
        status: out.status.to_string(),
        stderr: truncate(String::from_utf8_lossy(&out.stderr).trim()),
    })
}

fn describe(args: &[&str]) -> String {
    format!("git {}", args.join(" "))
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_STDERR_BYTES {
        return s.to_owned();
    }
    let mut end = MAX_STDERR_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Run one git command in the workspace with the safety options, feeding
/// it `input` if given, killed after [`COMMAND_TIMEOUT`].
async fn run(
    workspace: &Path,
    args: &[&str],
    input: Option<&[u8]>,
    env: &[(&str, &str)],
) -> Result<Output, GitError> {
    let mut command = Command::new("git");
    command
        .args(SAFE_CONFIG)
        .args(args)
        .current_dir(workspace)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for name in INHERITED_ENV_REMOVED {
        command.env_remove(name);
    }
    // A workspace that lost its `.git` must fail, not commit to a
    // repository that happens to enclose it.
    if let Some(parent) = std::path::absolute(workspace)?.parent()
        && let Some(parent) = parent.to_str()
        && !parent.contains(':')
    {
        command.env("GIT_CEILING_DIRECTORIES", parent);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn()?;
    let stdin = child.stdin.take();
    let work = async move {
        // Feed stdin while git runs, so neither side waits on a full pipe.
        let feed = async move {
            if let (Some(mut stdin), Some(input)) = (stdin, input) {
                stdin.write_all(input).await?;
                stdin.shutdown().await?;
            }
            Ok::<_, std::io::Error>(())
        };
        let (fed, out) = tokio::join!(feed, child.wait_with_output());
        let out = out?;
        // git may exit without reading all of stdin; its status says more.
        if let Err(e) = fed
            && out.status.success()
        {
            return Err(e);
        }
        Ok(out)
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, work).await {
        Ok(out) => Ok(out?),
        Err(_) => Err(GitError::Timeout(describe(args))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::{os::unix::fs::PermissionsExt, path::PathBuf};

    use super::*;

    /// Run git in `dir` for the test's own setup and checks.
    fn sh(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Setup")
            .env("GIT_AUTHOR_EMAIL", "setup@example.com")
            .env("GIT_COMMITTER_NAME", "Setup")
            .env("GIT_COMMITTER_EMAIL", "setup@example.com")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn repo() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        sh(&path, &["init", "-q", "-b", "main"]);
        (dir, path)
    }

    fn write(dir: &Path, path: &str, content: &str) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn request(entry: &str, name: &str, email: &str, subject: &str) -> CommitRequest {
        CommitRequest {
            queue_entry: entry.into(),
            author_name: name.into(),
            author_email: email.into(),
            subject: subject.into(),
            body: None,
        }
    }

    fn log(dir: &Path) -> Vec<String> {
        sh(
            dir,
            &[
                "log",
                "--format=%an <%ae>|%cn|%s|%(trailers:key=Canopy-Queue-Entry,valueonly)",
            ],
        )
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
    }

    #[tokio::test]
    async fn two_prompts_by_two_people_make_two_attributed_commits() {
        let (_tmp, dir) = repo();
        write(&dir, "README.md", "hello\n");
        sh(&dir, &["add", "-A"]);
        sh(&dir, &["commit", "-q", "-m", "initial"]);
        mark_base(&dir).await.unwrap();

        write(&dir, "a.txt", "from ada\n");
        let first = commit_entry(
            &dir,
            &request("q_1", "Ada Lovelace", "ada@example.com", "Add a.txt"),
        )
        .await
        .unwrap();
        write(&dir, "sub/b.txt", "from grace\n");
        let mut req = request(
            "q_2",
            "Grace Hopper",
            "grace@example.com",
            "# Add b\nplease",
        );
        // A trailer in the body does not pass for the real one.
        req.body =
            Some("Some details.\r\n\n# not a comment\n\nCanopy-Queue-Entry: q_9\u{7}".into());
        let second = commit_entry(&dir, &req).await.unwrap();

        assert_eq!(
            log(&dir),
            [
                "Grace Hopper <grace@example.com>|Canopy|# Add b|q_2",
                "Ada Lovelace <ada@example.com>|Canopy|Add a.txt|q_1",
                "Setup <setup@example.com>|Setup|initial|",
            ]
        );
        assert_eq!(
            sh(&dir, &["log", "-1", "--format=%ce|%b"]),
            "canopy@localhost|Some details.\n\n# not a comment\n\nCanopy-Queue-Entry: q_9\n\n\
             Canopy-Queue-Entry: q_2\n\n"
        );
        let head = sh(&dir, &["rev-parse", "HEAD"]).trim().to_owned();
        assert_eq!(second.commit.as_deref(), Some(head.as_str()));
        assert_eq!(second.head.as_deref(), Some(head.as_str()));
        assert_eq!(second.branch.as_deref(), Some("main"));
        assert_ne!(first.commit, second.commit);
        // Cumulative since the base; README.md predates it.
        assert_eq!(first.files_changed, ["a.txt"]);
        assert_eq!(second.files_changed, ["a.txt", "sub/b.txt"]);
    }

    #[tokio::test]
    async fn nothing_to_commit_still_reports_the_state() {
        let (_tmp, dir) = repo();
        write(&dir, "a.txt", "a\n");
        sh(&dir, &["add", "-A"]);
        sh(&dir, &["commit", "-q", "-m", "initial"]);
        mark_base(&dir).await.unwrap();
        write(&dir, "b.txt", "b\n");
        commit_entry(&dir, &request("q_1", "Ada", "ada@example.com", "b"))
            .await
            .unwrap();
        let head = sh(&dir, &["rev-parse", "HEAD"]).trim().to_owned();

        let outcome = commit_entry(&dir, &request("q_2", "Ada", "ada@example.com", "noop"))
            .await
            .unwrap();
        assert_eq!(
            outcome,
            CommitOutcome {
                commit: None,
                files_changed: vec!["b.txt".into()],
                branch: Some("main".into()),
                head: Some(head.clone()),
            }
        );
        assert_eq!(
            status_summary(&dir).await.unwrap(),
            (Some("main".into()), Some(head.clone()))
        );
        // Detached HEAD: no branch.
        sh(&dir, &["checkout", "-q", "--detach"]);
        assert_eq!(status_summary(&dir).await.unwrap(), (None, Some(head)));
    }

    #[tokio::test]
    async fn the_base_stays_put_and_ignored_files_do_not_count() {
        let (_tmp, dir) = repo();
        write(&dir, "old.txt", "old\n");
        write(&dir, ".gitignore", "*.log\n");
        sh(&dir, &["add", "-A"]);
        sh(&dir, &["commit", "-q", "-m", "initial"]);
        let start = sh(&dir, &["rev-parse", "HEAD"]);
        mark_base(&dir).await.unwrap();
        // The agent commits on its own; a restart marks the base again.
        write(&dir, "agent.txt", "by the agent\n");
        sh(&dir, &["add", "-A"]);
        sh(&dir, &["commit", "-q", "-m", "agent commit"]);
        mark_base(&dir).await.unwrap();
        assert_eq!(sh(&dir, &["rev-parse", BASE_REF]), start);

        write(&dir, "debug.log", "ignored\n");
        write(&dir, "old.txt", "changed\n");
        write(&dir, "naïve.txt", "non-ASCII\n");
        let outcome = commit_entry(&dir, &request("q_1", "Ada", "ada@example.com", "edit"))
            .await
            .unwrap();
        assert!(outcome.commit.is_some());
        assert_eq!(outcome.files_changed, ["agent.txt", "naïve.txt", "old.txt"]);
    }

    #[tokio::test]
    async fn a_repository_without_commits_gets_its_first() {
        let (_tmp, dir) = repo();
        mark_base(&dir).await.unwrap();
        // The base is the empty tree (no commit to point at).
        assert_eq!(
            sh(&dir, &["cat-file", "-t", BASE_REF]).trim(),
            "tree",
            "the base of a repository without commits"
        );
        assert_eq!(
            rev(&dir, BASE_REF).await.unwrap(),
            Some(empty_tree(&dir, false).await.unwrap())
        );
        assert_eq!(
            status_summary(&dir).await.unwrap(),
            (Some("main".into()), None)
        );

        let empty = commit_entry(&dir, &request("q_0", "Ada", "ada@example.com", "nothing"))
            .await
            .unwrap();
        assert_eq!(
            empty,
            CommitOutcome {
                commit: None,
                files_changed: vec![],
                branch: Some("main".into()),
                head: None,
            }
        );

        write(&dir, "first.txt", "1\n");
        let outcome = commit_entry(&dir, &request("q_1", "Ada", "ada@example.com", "first"))
            .await
            .unwrap();
        assert!(outcome.commit.is_some());
        assert_eq!(outcome.head, outcome.commit);
        assert_eq!(outcome.files_changed, ["first.txt"]);
        assert_eq!(log(&dir), ["Ada <ada@example.com>|Canopy|first|q_1"]);

        write(&dir, "second.txt", "2\n");
        let outcome = commit_entry(&dir, &request("q_2", "Ada", "ada@example.com", "second"))
            .await
            .unwrap();
        assert_eq!(outcome.files_changed, ["first.txt", "second.txt"]);

        // A restarted sidecar keeps the empty base: the first commits still
        // count.
        mark_base(&dir).await.unwrap();
        write(&dir, "third.txt", "3\n");
        let outcome = commit_entry(&dir, &request("q_3", "Ada", "ada@example.com", "third"))
            .await
            .unwrap();
        assert_eq!(
            outcome.files_changed,
            ["first.txt", "second.txt", "third.txt"]
        );
    }

    #[tokio::test]
    async fn the_session_diff_shows_committed_dirty_and_new_files_since_the_base() {
        let (_tmp, dir) = repo();
        write(&dir, "kept.txt", "same\n");
        write(&dir, "old.txt", "one\ntwo\n");
        write(&dir, "gone.txt", "bye\n");
        write(&dir, ".gitignore", "*.log\n");
        sh(&dir, &["add", "-A"]);
        sh(&dir, &["commit", "-q", "-m", "start"]);
        mark_base(&dir).await.unwrap();
        // Committed by a run, then changed again and left dirty, plus an
        // untracked file, a deletion, a binary file and an ignored one.
        write(&dir, "old.txt", "one\n2\nthree\n");
        commit_entry(&dir, &request("q_1", "Ada", "ada@example.com", "edit"))
            .await
            .unwrap();
        write(&dir, "old.txt", "one\n2\nthree\nfour\n");
        write(&dir, "new.txt", "fresh\n");
        std::fs::remove_file(dir.join("gone.txt")).unwrap();
        std::fs::write(dir.join("pic.bin"), [0u8, 159, 146, 150, 0, 1]).unwrap();
        write(&dir, "debug.log", "ignored\n");
        let index_before = std::fs::read(dir.join(".git/index")).unwrap();

        let d = session_diff(&dir).await.unwrap();
        let summary: Vec<_> = d
            .files
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    f.status.as_str(),
                    f.additions,
                    f.deletions,
                    f.binary,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("gone.txt", "deleted", 0, 1, false),
                ("new.txt", "added", 1, 0, false),
                ("old.txt", "modified", 3, 1, false),
                ("pic.bin", "added", 0, 0, true),
            ]
        );
        let old = d.files.iter().find(|f| f.path == "old.txt").unwrap();
        let patch = old.patch.as_deref().unwrap();
        assert!(patch.starts_with("@@"), "{patch}");
        assert!(patch.contains("-two\n+2\n+three\n+four\n"), "{patch}");
        assert_eq!(d.files.iter().find(|f| f.binary).unwrap().patch, None);
        assert!(!d.truncated);
        assert_eq!(d.head, resolve(&dir, "HEAD").await.unwrap());
        // The real index is untouched, and no scratch index is left behind.
        assert_eq!(std::fs::read(dir.join(".git/index")).unwrap(), index_before);
        let left: Vec<_> = std::fs::read_dir(dir.join(".git"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("canopy-diff"))
            .collect();
        assert!(left.is_empty(), "{left:?}");

        // Past the size limit a file keeps its counts and loses its patch.
        write(
            &dir,
            "big.txt",
            &"x\n".repeat(SessionDiff::MAX_FILE_PATCH_BYTES),
        );
        let d = session_diff(&dir).await.unwrap();
        let big = d.files.iter().find(|f| f.path == "big.txt").unwrap();
        assert_eq!(big.additions as usize, SessionDiff::MAX_FILE_PATCH_BYTES);
        assert_eq!(big.patch, None);
        assert!(d.truncated);
    }

    #[tokio::test]
    async fn the_session_diff_works_before_anything_was_ever_staged() {
        // A fresh repository has no index file at all; the diff must not
        // hand git an empty one (git calls that corrupt).
        let (_tmp, dir) = repo();
        write(&dir, "first.txt", "one\ntwo\n");
        assert!(!dir.join(".git/index").exists());
        let d = session_diff(&dir).await.unwrap();
        let files: Vec<_> = d
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.status.as_str(), f.additions))
            .collect();
        assert_eq!(files, [("first.txt", "added", 2)]);
        assert!(
            !dir.join(".git/index").exists(),
            "the real index is untouched"
        );
        let left: Vec<_> = std::fs::read_dir(dir.join(".git"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("canopy-diff"))
            .collect();
        assert!(left.is_empty(), "scratch left behind: {left:?}");
    }

    #[tokio::test]
    async fn subjects_are_cleaned_and_cut() {
        let (_tmp, dir) = repo();
        write(&dir, "a.txt", "a\n");
        let long = format!("\n  \t\u{7}Make\tit {}\nsecond line\n", "x".repeat(500));
        commit_entry(&dir, &request("q_1", "Ada", "ada@example.com", &long))
            .await
            .unwrap();
        let subject = sh(&dir, &["log", "-1", "--format=%s"]);
        let subject = subject.trim_end_matches('\n');
        assert_eq!(subject.chars().count(), MAX_SUBJECT_CHARS);
        assert!(subject.starts_with("Make it xxx"), "{subject}");
        assert!(subject.ends_with("x…"), "{subject}");

        write(&dir, "b.txt", "b\n");
        commit_entry(
            &dir,
            &request("q_2", "Ada", "ada@example.com", " \n\u{1b}\n"),
        )
        .await
        .unwrap();
        assert_eq!(
            sh(&dir, &["log", "-1", "--format=%s"]),
            "Canopy prompt q_2\n"
        );
    }

    #[tokio::test]
    async fn hostile_identities_are_refused_before_anything_is_committed() {
        let (_tmp, dir) = repo();
        write(&dir, "a.txt", "a\n");
        let bad = [
            request("q_1", "x\nSigned-off-by: y", "y@example.com", "s"),
            request("q_1", "Eve <eve@evil>", "y@example.com", "s"),
            request("q_1", "", "y@example.com", "s"),
            request("q_1", &"n".repeat(201), "y@example.com", "s"),
            request("q_1", "Eve", "eve@example.com>x", "s"),
            request("q_1", "Eve", "eve @example.com", "s"),
            request("q_1", "Eve", "", "s"),
            request("q_1", "Eve", &format!("{}@e.com", "e".repeat(320)), "s"),
            request("q 1\nX: y", "Eve", "eve@example.com", "s"),
        ];
        for req in bad {
            let err = commit_entry(&dir, &req).await.unwrap_err();
            assert!(matches!(err, GitError::Invalid(_)), "{req:?}: {err}");
        }
        assert_eq!(status_summary(&dir).await.unwrap().1, None);
        // Nothing was even staged.
        assert_eq!(sh(&dir, &["status", "--porcelain"]), "?? a.txt\n");
    }

    #[tokio::test]
    async fn hooks_of_the_workspace_do_not_run() {
        let (_tmp, dir) = repo();
        let hooks = dir.join(".git/hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        for hook in [
            "pre-commit",
            "commit-msg",
            "prepare-commit-msg",
            "post-commit",
        ] {
            let path = hooks.join(hook);
            std::fs::write(&path, "#!/bin/sh\ntouch hook-ran\nexit 1\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        write(&dir, "a.txt", "a\n");
        let outcome = commit_entry(&dir, &request("q_1", "Ada", "ada@example.com", "a"))
            .await
            .unwrap();
        assert!(outcome.commit.is_some());
        assert!(!dir.join("hook-ran").exists());
        assert_eq!(log(&dir), ["Ada <ada@example.com>|Canopy|a|q_1"]);
    }

    #[tokio::test]
    async fn errors_say_what_failed() {
        let dir = tempfile::tempdir().unwrap();
        let err = commit_entry(dir.path(), &request("q_1", "Ada", "a@b.c", "s"))
            .await
            .unwrap_err();
        let GitError::Git {
            command, stderr, ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(command, "git add -A");
        assert!(stderr.contains("not a git repository"), "{stderr}");
        assert!(mark_base(dir.path()).await.is_err());
        assert_eq!(truncate(&"é".repeat(2000)).len(), 2048 + "…".len());
    }
}
