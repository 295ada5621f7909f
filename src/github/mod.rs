//! GitHub: what the server knows of it and hears from it.
//!
//! This part covers the webhook (`POST /api/github/webhook`): deliveries
//! are checked against the configured secret (HMAC-SHA256 of the body,
//! compared in constant time), each delivery id is acted on once, and pull
//! request events are matched to the session whose branch the pull request
//! comes from (see [`canopy_protocol::git`]) in a feature of the same
//! repository. Minting tokens, cloning and opening pull requests come on top
//! of the same configuration.

pub(crate) mod deliveries;
pub mod webhook;

use std::path::PathBuf;

use clap::Args;

/// GitHub settings, from flags or `CANOPY_GITHUB_*` variables.
#[derive(Debug, Clone, Default, Args)]
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
}

/// Why the GitHub settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GitHubConfigError {
    /// A secret file could not be read.
    #[error("reading the GitHub webhook secret from {path}: {error}")]
    SecretFile {
        /// The file.
        path: String,
        /// What went wrong.
        error: String,
    },
    /// A secret is empty or too short to be one.
    #[error("the GitHub webhook secret is {0} bytes; use at least 16 random bytes")]
    WeakSecret(usize),
}

/// GitHub as configured, resolved at start.
#[derive(Clone)]
pub struct GitHub {
    webhook_secret: Option<webhook::Secret>,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("webhook", &self.webhook_secret.is_some())
            .finish()
    }
}

impl GitHub {
    /// Resolve `args` (read secret files).
    ///
    /// # Errors
    /// A secret file that cannot be read, or a secret too short to trust.
    pub fn from_args(args: &GitHubArgs) -> Result<GitHub, GitHubConfigError> {
        let secret = match (
            &args.github_webhook_secret,
            &args.github_webhook_secret_file,
        ) {
            (Some(s), _) => Some(s.trim().to_owned()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| GitHubConfigError::SecretFile {
                        path: path.display().to_string(),
                        error: e.to_string(),
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if let Some(s) = &secret
            && s.len() < 16
        {
            return Err(GitHubConfigError::WeakSecret(s.len()));
        }
        Ok(GitHub {
            webhook_secret: secret.map(|s| webhook::Secret::new(s.into_bytes())),
        })
    }

    /// The webhook secret, if webhooks are configured.
    pub fn webhook_secret(&self) -> Option<&webhook::Secret> {
        self.webhook_secret.as_ref()
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
        let gh = GitHub::from_args(&GitHubArgs {
            github_webhook_secret: None,
            github_webhook_secret_file: Some(file),
        })
        .unwrap();
        assert!(gh.webhook_secret().is_some());
        assert!(matches!(
            GitHub::from_args(&GitHubArgs {
                github_webhook_secret: Some("short".into()),
                github_webhook_secret_file: None,
            }),
            Err(GitHubConfigError::WeakSecret(5))
        ));
        assert!(matches!(
            GitHub::from_args(&GitHubArgs {
                github_webhook_secret: None,
                github_webhook_secret_file: Some(dir.path().join("missing")),
            }),
            Err(GitHubConfigError::SecretFile { .. })
        ));
        assert!(
            GitHub::from_args(&GitHubArgs::default())
                .unwrap()
                .webhook_secret()
                .is_none()
        );
    }
}
