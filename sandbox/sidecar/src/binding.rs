//! What ties a sidecar to one session: given at start (environment) or by
//! the server's `POST /v1/claim` to a pooled sidecar that already runs
//! OpenCode.
//!
//! The sandbox token lives in memory only: it is never written to disk,
//! logged, or passed on to OpenCode.

use canopy_protocol::{
    ids,
    sidecar::{ClaimRequest, RepoSource, WorkspaceStatus},
};
use samod::DocumentId;
use tokio::sync::oneshot;

/// Longest server URL, repository URL or token accepted.
const MAX_URL_BYTES: usize = 4096;
/// Longest branch name accepted.
const MAX_BRANCH_BYTES: usize = 255;

/// The session a sidecar works for, and how to reach its server.
#[derive(Clone, PartialEq, Eq)]
pub struct Binding {
    /// The server's base URL (`http(s)://…`).
    pub server_url: String,
    /// The sandbox token (role `agent`, this feature and session).
    pub sandbox_token: String,
    /// The feature (`ftr_…`).
    pub feature_id: String,
    /// The session (`ses_…`).
    pub session_id: String,
    /// The feature's document (`automerge:…`).
    pub feature_doc: String,
    /// What to clone into an empty workspace (with `--prepare-workspace`).
    pub repo: Option<RepoSource>,
}

/// Not derived: the token must not end up in logs.
impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("server_url", &self.server_url)
            .field("feature_id", &self.feature_id)
            .field("session_id", &self.session_id)
            .field("feature_doc", &self.feature_doc)
            .field("repo", &self.repo.as_ref().map(|r| &r.branch))
            .finish_non_exhaustive()
    }
}

impl From<ClaimRequest> for Binding {
    fn from(c: ClaimRequest) -> Self {
        Binding {
            server_url: c.server_url,
            sandbox_token: c.sandbox_token,
            feature_id: c.feature_id,
            session_id: c.session_id,
            feature_doc: c.feature_doc,
            repo: c.repo,
        }
    }
}

impl Binding {
    /// Check every value; the document id on success. `names` says how the
    /// values were given (the environment variables, or the claim's fields)
    /// so the error names what to fix.
    pub fn validate(&self, names: Names) -> Result<DocumentId, String> {
        let [server, token, feature, session, doc] = names.fields();
        let base = self.server_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://"))
            || base.len() > MAX_URL_BYTES
            || base.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "{server} {:?} is not an http(s):// URL",
                truncate(&self.server_url)
            ));
        }
        if self.sandbox_token.is_empty()
            || self.sandbox_token.len() > MAX_URL_BYTES
            || self
                .sandbox_token
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            // Never echoed: it is a secret.
            return Err(format!(
                "{token} must be 1 to {MAX_URL_BYTES} bytes without spaces"
            ));
        }
        if !ids::is_valid_id(ids::FEATURE_PREFIX, &self.feature_id) {
            return Err(format!(
                "{feature} {:?} is not a feature id",
                truncate(&self.feature_id)
            ));
        }
        if !ids::is_valid_id(ids::SESSION_PREFIX, &self.session_id) {
            return Err(format!(
                "{session} {:?} is not a session id",
                truncate(&self.session_id)
            ));
        }
        let doc_id = parse_doc(&self.feature_doc).ok_or_else(|| {
            format!(
                "{doc} {:?} is not a document id",
                truncate(&self.feature_doc)
            )
        })?;
        if let Some(repo) = &self.repo {
            validate_repo(repo, names)?;
        }
        Ok(doc_id)
    }
}

/// How a binding's values were named where they came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// `CANOPY_*` environment variables (or their flags).
    Env,
    /// The fields of a [`ClaimRequest`].
    Claim,
}

impl Names {
    fn fields(self) -> [&'static str; 5] {
        match self {
            Names::Env => [
                "CANOPY_SERVER_URL",
                "CANOPY_SANDBOX_TOKEN",
                "CANOPY_FEATURE_ID",
                "CANOPY_SESSION_ID",
                "CANOPY_FEATURE_DOC",
            ],
            Names::Claim => [
                "server_url",
                "sandbox_token",
                "feature_id",
                "session_id",
                "feature_doc",
            ],
        }
    }

    fn repo(self) -> [&'static str; 3] {
        match self {
            Names::Env => [
                "CANOPY_REPO_URL",
                "CANOPY_REPO_BRANCH",
                "CANOPY_REPO_WORK_BRANCH",
            ],
            Names::Claim => ["repo.url", "repo.branch", "repo.work_branch"],
        }
    }
}

/// The URL and branch as `git clone` may be given them (the server checks
/// the same when a feature names its repository).
pub fn validate_repo(repo: &RepoSource, names: Names) -> Result<(), String> {
    let [url_name, branch_name, work_name] = names.repo();
    let url = repo.url.as_str();
    let scheme_ok = ["https://", "http://", "ssh://", "git://", "file://"]
        .iter()
        .any(|s| url.starts_with(s))
        || (url.starts_with("git@") && url.contains(':'));
    if !scheme_ok
        || url.len() > MAX_URL_BYTES
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        // The URL may carry credentials: not echoed.
        return Err(format!(
            "{url_name} is not a git URL (https://, ssh://, git://, file:// or git@host:path)"
        ));
    }
    for (name, branch) in [
        (branch_name, Some(repo.branch.as_str())),
        (work_name, repo.work_branch.as_deref()),
    ] {
        let Some(branch) = branch else { continue };
        if branch.len() > MAX_BRANCH_BYTES
            || branch.starts_with('-')
            || branch.contains("..")
            || branch.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "{name} {:?} is not a valid branch name",
                truncate(branch)
            ));
        }
    }
    Ok(())
}

fn parse_doc(s: &str) -> Option<DocumentId> {
    s.strip_prefix("automerge:").unwrap_or(s).parse().ok()
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}

/// Who the sidecar works for once bound, as the control API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The feature.
    pub feature_id: String,
    /// The session.
    pub session_id: String,
    /// The workspace as the sidecar prepared it (`None`: prepared by the
    /// backend).
    pub workspace: Option<WorkspaceStatus>,
}

/// A claim the control API accepted, handed to the sidecar's run: the
/// binding, the workspace already prepared for it, and where to say
/// whether binding worked.
#[derive(Debug)]
pub struct Claim {
    /// The binding.
    pub binding: Binding,
    /// The prepared workspace.
    pub workspace: Option<WorkspaceStatus>,
    /// `Ok` once the sidecar is bound (the replica is open and the
    /// connection dialing), or why it cannot be.
    pub accepted: oneshot::Sender<Result<(), String>>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn good() -> Binding {
        Binding {
            server_url: "http://127.0.0.1:1".into(),
            sandbox_token: "canopy_secret".into(),
            feature_id: ids::new_feature_id(),
            session_id: ids::new_session_id(),
            feature_doc: "automerge:2Cs2kDKqTjDR7TgYcQ84TEEJNWEw".into(),
            repo: Some(RepoSource {
                url: "https://user:pw@example.com/r.git".into(),
                branch: "main".into(),
                work_branch: Some("canopy/f/s-abcdefgh".into()),
                depth: None,
                credential: None,
            }),
        }
    }

    #[test]
    fn bindings_are_checked_and_errors_name_the_field() {
        assert!(good().validate(Names::Claim).is_ok());
        let bad = |f: fn(&mut Binding), want: &str, names: Names| {
            let mut b = good();
            f(&mut b);
            let e = b.validate(names).unwrap_err();
            assert!(e.contains(want), "{e} lacks {want}");
            assert!(!e.contains("canopy_secret") && !e.contains("pw@"), "{e}");
        };
        bad(
            |b| b.feature_id = "x".into(),
            "feature_id \"x\" is not a feature id",
            Names::Claim,
        );
        bad(
            |b| b.session_id = "ses_".into(),
            "CANOPY_SESSION_ID",
            Names::Env,
        );
        bad(
            |b| b.feature_doc = "automerge:nope".into(),
            "feature_doc",
            Names::Claim,
        );
        bad(
            |b| b.server_url = "ftp://x".into(),
            "server_url",
            Names::Claim,
        );
        bad(
            |b| b.sandbox_token = "canopy secret".into(),
            "sandbox_token must be",
            Names::Claim,
        );
        bad(
            |b| b.repo.as_mut().unwrap().url = "ext::sh -c pw@".into(),
            "repo.url is not a git URL",
            Names::Claim,
        );
        bad(
            |b| b.repo.as_mut().unwrap().branch = "--upload-pack=x".into(),
            "CANOPY_REPO_BRANCH",
            Names::Env,
        );
        bad(
            |b| b.repo.as_mut().unwrap().work_branch = Some("-b x".into()),
            "repo.work_branch",
            Names::Claim,
        );
        assert!(!format!("{:?}", good()).contains("canopy_secret"));
        assert!(!format!("{:?}", good()).contains("pw@"));
    }
}
