//! GitHub: what the server knows of it, asks of it and hears from it.
//!
//! - [`client`]: the REST API behind [`GitHost`] (installation tokens of
//!   the App, the OAuth web flow, pull requests), at a configurable base
//!   URL for GitHub Enterprise.
//! - [`accounts`]: Canopy users linked to GitHub accounts, their tokens
//!   encrypted at rest (AES-256-GCM).
//! - [`webhook`]: deliveries checked against the configured secret
//!   (HMAC-SHA256 of the body, compared in constant time), each delivery id
//!   acted on once; pull request events are matched to the session whose
//!   branch the pull request comes from (see [`canopy_protocol::git`]).
//! - [`pulls`]: pushing a session's branch and opening its pull request
//!   as the person who asked, else as the App, else a compare link.

pub mod accounts;
pub mod client;
pub(crate) mod deliveries;
pub mod oauth;
pub mod pulls;
pub mod webhook;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use clap::Args;

pub use client::{GitHost, GitHubHost, RepoRef, SharedGitHost};

/// GitHub settings, from flags or `CANOPY_GITHUB_*` variables.
#[derive(Debug, Clone, Args)]
pub struct GitHubArgs {
    /// The secret GitHub signs webhook deliveries with (the App's or the
    /// repository's "webhook secret"). Without it (or the file form) the
    /// webhook endpoint does not exist.
    #[arg(long, env = "CANOPY_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub github_webhook_secret: Option<String>,

    /// A file holding the webhook secret (surrounding whitespace ignored),
    /// instead of `--github-webhook-secret`.
    #[arg(
        long,
        env = "CANOPY_GITHUB_WEBHOOK_SECRET_FILE",
        conflicts_with = "github_webhook_secret"
    )]
    pub github_webhook_secret_file: Option<PathBuf>,

    /// GitHub's web address: repositories, pull request pages and sign-in
    /// live here (`https://github.example.com` for GitHub Enterprise).
    #[arg(
        long,
        env = "CANOPY_GITHUB_WEB_URL",
        default_value = "https://github.com"
    )]
    pub github_web_url: String,

    /// GitHub's REST API (`https://github.example.com/api/v3` for GitHub
    /// Enterprise).
    #[arg(
        long,
        env = "CANOPY_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: String,

    /// The GitHub App's id. With its private key, the server mints
    /// short-lived installation tokens for clones and pushes and opens pull
    /// requests as the App when the asking person has not signed in with
    /// GitHub.
    #[arg(
        long,
        env = "CANOPY_GITHUB_APP_ID",
        requires = "github_app_private_key_file"
    )]
    pub github_app_id: Option<u64>,

    /// The App's private key (PEM), as GitHub generated it.
    #[arg(
        long,
        env = "CANOPY_GITHUB_APP_PRIVATE_KEY_FILE",
        requires = "github_app_id"
    )]
    pub github_app_private_key_file: Option<PathBuf>,

    /// The OAuth client id of the App (or of an OAuth App): enables "Sign in
    /// with GitHub".
    #[arg(
        long,
        env = "CANOPY_GITHUB_CLIENT_ID",
        requires = "github_client_secret_file"
    )]
    pub github_client_id: Option<String>,

    /// A file holding the OAuth client secret.
    #[arg(
        long,
        env = "CANOPY_GITHUB_CLIENT_SECRET_FILE",
        requires = "github_client_id"
    )]
    pub github_client_secret_file: Option<PathBuf>,

    /// The key (64 hex digits) that encrypts stored GitHub user tokens.
    /// Without it the key is `github-token.key` in the data directory,
    /// made on first use.
    #[arg(long, env = "CANOPY_GITHUB_TOKEN_KEY", hide_env_values = true)]
    pub github_token_key: Option<String>,

    /// Let a GitHub account with no Canopy user sign in, creating the user
    /// (name, email and login from GitHub). Off: only accounts linked by
    /// a signed-in user (`POST /api/github/link`) may sign in.
    #[arg(
        long,
        env = "CANOPY_GITHUB_SIGNUP",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub github_signup: bool,
}

impl Default for GitHubArgs {
    fn default() -> Self {
        GitHubArgs {
            github_webhook_secret: None,
            github_webhook_secret_file: None,
            github_web_url: "https://github.com".into(),
            github_api_url: "https://api.github.com".into(),
            github_app_id: None,
            github_app_private_key_file: None,
            github_client_id: None,
            github_client_secret_file: None,
            github_token_key: None,
            github_signup: false,
        }
    }
}

/// Why the GitHub settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GitHubConfigError {
    /// A secret file could not be read.
    #[error("reading {what} from {path}: {error}")]
    SecretFile {
        /// Which secret.
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        error: String,
    },
    /// A secret is empty or too short to be one.
    #[error("the GitHub webhook secret is {0} bytes; use at least 16 random bytes")]
    WeakSecret(usize),
    /// A URL, key or other setting is unusable.
    #[error("GitHub settings: {0}")]
    Invalid(String),
}

/// GitHub as configured, resolved at start.
#[derive(Clone)]
pub struct GitHub {
    webhook_secret: Option<webhook::Secret>,
    host: SharedGitHost,
    token_key: accounts::TokenKey,
    signup: bool,
    sign_ins: oauth::SignIns,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("webhook", &self.webhook_secret.is_some())
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

fn read_secret(what: &'static str, path: &Path) -> Result<String, GitHubConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| GitHubConfigError::SecretFile {
            what,
            path: path.display().to_string(),
            error: e.to_string(),
        })
}

impl GitHub {
    /// Resolve `args` (read secret files and keys; the user-token key is
    /// read from, or made in, `data_dir`).
    ///
    /// # Errors
    /// A file that cannot be read, a secret too short to trust, an
    /// unusable URL or key.
    pub fn from_args(args: &GitHubArgs, data_dir: &Path) -> Result<GitHub, GitHubConfigError> {
        let secret = match (
            &args.github_webhook_secret,
            &args.github_webhook_secret_file,
        ) {
            (Some(s), _) => Some(s.trim().to_owned()),
            (None, Some(path)) => Some(read_secret("the GitHub webhook secret", path)?),
            (None, None) => None,
        };
        if let Some(s) = &secret
            && s.len() < 16
        {
            return Err(GitHubConfigError::WeakSecret(s.len()));
        }
        let app = match (args.github_app_id, &args.github_app_private_key_file) {
            (Some(id), Some(path)) => Some(client::AppCredentials {
                id,
                private_key_pem: read_secret("the GitHub App private key", path)?,
            }),
            _ => None,
        };
        let oauth = match (&args.github_client_id, &args.github_client_secret_file) {
            (Some(id), Some(path)) => Some(client::OAuthClient {
                client_id: id.trim().to_owned(),
                client_secret: read_secret("the GitHub OAuth client secret", path)?,
            }),
            _ => None,
        };
        let host = GitHubHost::new(&args.github_web_url, &args.github_api_url, app, oauth)
            .map_err(GitHubConfigError::Invalid)?;
        let token_key = match &args.github_token_key {
            Some(hex) => accounts::TokenKey::from_hex(hex).map_err(GitHubConfigError::Invalid)?,
            None => accounts::TokenKey::in_dir(data_dir),
        };
        Ok(GitHub {
            webhook_secret: secret.map(|s| webhook::Secret::new(s.into_bytes())),
            host: Arc::new(host),
            token_key,
            signup: args.github_signup,
            sign_ins: oauth::SignIns::default(),
        })
    }

    /// The webhook secret, if webhooks are configured.
    pub fn webhook_secret(&self) -> Option<&webhook::Secret> {
        self.webhook_secret.as_ref()
    }

    /// The forge's API.
    pub fn host(&self) -> &SharedGitHost {
        &self.host
    }

    /// Whether unknown GitHub accounts may sign up.
    pub fn signup(&self) -> bool {
        self.signup
    }

    /// Sign-ins under way (OAuth states).
    pub fn sign_ins(&self) -> &oauth::SignIns {
        &self.sign_ins
    }

    /// The key of stored user tokens.
    pub fn token_key(&self) -> &accounts::TokenKey {
        &self.token_key
    }
}

/// A repository as `host/owner/name`, lowercase, without `.git`: how a
/// feature's `repo.url` and a webhook's repository are compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoName(String);

impl RepoName {
    /// From a git URL: `https://host/owner/name(.git)`, `ssh://git@host/…`,
    /// `git@host:owner/name(.git)`. `None` for anything else (local paths,
    /// `file://`), which no forge sends events about.
    pub fn from_url(url: &str) -> Option<RepoName> {
        let url = url.trim();
        let (host, path) = if let Some(rest) = url.strip_prefix("git@") {
            rest.split_once(':')?
        } else {
            let rest = ["https://", "http://", "ssh://", "git://"]
                .iter()
                .find_map(|s| url.strip_prefix(s))?;
            let (authority, path) = rest.split_once('/')?;
            // Drop user info and port: the same repository either way.
            let host = authority.rsplit('@').next()?;
            (host.split(':').next()?, path)
        };
        let path = path.trim_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        let (owner, name) = path.split_once('/')?;
        if host.is_empty() || owner.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(RepoName(
            format!("{host}/{owner}/{name}").to_ascii_lowercase(),
        ))
    }
}

impl std::fmt::Display for RepoName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn repository_urls_compare_by_host_owner_and_name() {
        let want = RepoName::from_url("https://github.com/Acme/Widget").unwrap();
        for same in [
            "https://github.com/acme/widget.git",
            "git@github.com:acme/widget.git",
            "ssh://git@github.com:22/acme/widget",
            "https://x-access-token:abc@github.com/acme/widget/",
        ] {
            assert_eq!(RepoName::from_url(same).as_ref(), Some(&want), "{same}");
        }
        assert_eq!(want.to_string(), "github.com/acme/widget");
        for other in [
            "https://ghe.example.com/acme/widget",
            "https://github.com/acme/widget2",
        ] {
            assert_ne!(RepoName::from_url(other).as_ref(), Some(&want), "{other}");
        }
        for none in [
            "file:///srv/repo.git",
            "/srv/repo",
            "https://github.com/acme",
            "https://github.com/a/b/c",
        ] {
            assert_eq!(RepoName::from_url(none), None, "{none}");
        }
    }

    #[test]
    fn secrets_are_read_from_files_and_must_be_long() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "  0123456789abcdef0123\n").unwrap();
        let gh = GitHub::from_args(
            &GitHubArgs {
                github_webhook_secret_file: Some(file),
                ..GitHubArgs::default()
            },
            dir.path(),
        )
        .unwrap();
        assert!(gh.webhook_secret().is_some());
        assert!(matches!(
            GitHub::from_args(
                &GitHubArgs {
                    github_webhook_secret: Some("short".into()),
                    ..GitHubArgs::default()
                },
                dir.path()
            ),
            Err(GitHubConfigError::WeakSecret(5))
        ));
        assert!(matches!(
            GitHub::from_args(
                &GitHubArgs {
                    github_webhook_secret_file: Some(dir.path().join("missing")),
                    ..GitHubArgs::default()
                },
                dir.path()
            ),
            Err(GitHubConfigError::SecretFile { .. })
        ));
        assert!(
            GitHub::from_args(&GitHubArgs::default(), dir.path())
                .unwrap()
                .webhook_secret()
                .is_none()
        );
    }
}
