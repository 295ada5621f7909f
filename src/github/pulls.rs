//! A session's way to GitHub: the git credential its sandbox pushes with,
//! and the pull request it becomes.
//!
//! Credentials, best first: an installation token of the App (an hour
//! long, only for repositories the App is installed on), else the GitHub
//! token of the person the sandbox works for. They reach the sandbox only
//! through its git credential helper, on request: never a document, a
//! workspace's `.git/config`, a log line or an image.
//!
//! A pull request is opened as the person who asked (their token, from
//! "Sign in with GitHub"), else as the App, else the caller gets the
//! compare page to open it by hand.

use canopy_protocol::feature::{FeatureDoc, QueueStatus};

use super::{
    SharedGitHost,
    accounts::Accounts,
    client::{GitHostError, RepoRef, UserToken},
};

/// A user token is refreshed when it has less than this left: a push or
/// a pull request started with it must not outlive it.
const USER_TOKEN_MARGIN_MS: i64 = 5 * 60 * 1000;

/// A credential for git over HTTPS.
#[derive(Clone)]
pub struct GitCredential {
    /// `x-access-token` for App tokens, the login for a user's.
    pub username: String,
    /// The token.
    pub password: String,
    /// Unix milliseconds, when known.
    pub expires_at: Option<i64>,
    /// `app` or `user`.
    pub source: &'static str,
}

impl std::fmt::Debug for GitCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredential")
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The forge and the accounts linked to it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Access {
    host: SharedGitHost,
    accounts: Accounts,
}

impl Access {
    /// Over `host` and `accounts`.
    pub fn new(host: SharedGitHost, accounts: Accounts) -> Access {
        Access { host, accounts }
    }

    /// The forge.
    pub fn host(&self) -> &SharedGitHost {
        &self.host
    }

    /// Linked accounts.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// `user_id`'s GitHub token, refreshed first when it has expired or
    /// is about to (GitHub App user tokens live eight hours); `None` when
    /// the user has none, or it expired and cannot be refreshed (it is
    /// then forgotten: they sign in with GitHub again).
    ///
    /// Two refreshes at once: a refresh token works once, so the loser is
    /// refused; it then finds the winner's token stored, and uses that.
    ///
    /// # Errors
    /// The account store failed, or the forge could not be asked.
    pub async fn user_token(&self, user_id: &str) -> Result<Option<UserToken>, String> {
        let Some(stored) = self
            .accounts
            .stored_token(user_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let now = canopy_protocol::unix_ms_now();
        let token = stored.token;
        if token
            .expires_at
            .is_none_or(|at| at - now > USER_TOKEN_MARGIN_MS)
        {
            return Ok(Some(token));
        }
        let refresh = token
            .refresh_token
            .clone()
            .filter(|_| token.refresh_expires_at.is_none_or(|at| at > now));
        let Some(refresh) = refresh else {
            if token.expires_at.is_some_and(|at| at > now) {
                // Nothing to refresh it with, but it still works: use it.
                return Ok(Some(token));
            }
            tracing::info!(
                user_id,
                "the user's GitHub token expired and cannot be refreshed; forgetting it"
            );
            self.forget(user_id).await;
            return Ok(None);
        };
        match self.host.refresh_user_token(&refresh).await {
            Ok(fresh) => {
                if self
                    .accounts
                    .store_refreshed(user_id, stored.version, &fresh)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    tracing::debug!(user_id, "refreshed the user's GitHub token");
                    Ok(Some(fresh))
                } else {
                    // Stored by someone else meanwhile: theirs is as good.
                    self.current_token(user_id).await
                }
            }
            Err(GitHostError::Rejected(why)) => {
                let now_stored = self
                    .accounts
                    .stored_token(user_id)
                    .await
                    .map_err(|e| e.to_string())?;
                match now_stored {
                    Some(s) if s.version != stored.version => Ok(Some(s.token)),
                    _ => {
                        tracing::info!(user_id, reason = %why, "GitHub refused the refresh token; forgetting the user's token");
                        self.forget(user_id).await;
                        Ok(None)
                    }
                }
            }
            Err(e) => Err(format!("cannot refresh the GitHub token: {e}")),
        }
    }

    async fn current_token(&self, user_id: &str) -> Result<Option<UserToken>, String> {
        Ok(self
            .accounts
            .stored_token(user_id)
            .await
            .map_err(|e| e.to_string())?
            .map(|s| s.token))
    }

    async fn forget(&self, user_id: &str) {
        if let Err(e) = self.accounts.forget_token(user_id).await {
            tracing::warn!(user_id, error = %e, "cannot forget the user's GitHub token");
        }
    }

    /// What a sandbox working for `user_id` may clone and push
    /// `repo_url` with; `None` for repositories elsewhere, or when neither
    /// the App nor the user can give one.
    ///
    /// # Errors
    /// The forge or the account store failed.
    pub async fn git_credential(
        &self,
        repo_url: &str,
        user_id: &str,
    ) -> Result<Option<GitCredential>, String> {
        let Some(repo) = self.host.repo(repo_url) else {
            return Ok(None);
        };
        match self.host.installation_token(&repo).await {
            Ok(Some(token)) => {
                return Ok(Some(GitCredential {
                    username: "x-access-token".into(),
                    password: token.token,
                    expires_at: token.expires_at,
                    source: "app",
                }));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(%repo, error = %e, "no installation token; trying the user's"),
        }
        let account = self
            .accounts
            .by_user(user_id)
            .await
            .map_err(|e| e.to_string())?;
        let token = self.user_token(user_id).await?;
        Ok(match (account, token) {
            (Some(account), Some(token)) => Some(GitCredential {
                username: account.login,
                password: token.access_token,
                expires_at: token.expires_at,
                source: "user",
            }),
            _ => None,
        })
    }
}

/// How a pull request came to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// As the person who asked (their login).
    AsUser(String),
    /// As the App.
    AsApp,
}

/// Longest prompt quoted in a body, in characters.
const PROMPT_CHARS: usize = 600;
/// GitHub refuses bodies over 65,536 characters; stay well inside.
const BODY_CHARS: usize = 60_000;

/// Text from people, made safe to put in a body: no `@mention` pings
/// anyone (a zero-width joiner after `@`), no HTML comments hide text.
fn inert(text: &str) -> String {
    text.replace('@', "@\u{2060}").replace("<!--", "&lt;!--")
}

fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

fn quote(text: &str) -> String {
    clip(text, PROMPT_CHARS)
        .lines()
        .map(|l| format!("> {}", inert(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The title and body of session `session_id`'s pull request: its
/// prompts with their authors, the learnings and decisions it produced,
/// and a link back to it.
pub fn draft(doc: &FeatureDoc, session_id: &str, link: &str) -> (String, String) {
    let name = |user_id: &str| -> String {
        doc.participants
            .get(user_id)
            .map(|p| p.name.clone())
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| user_id.to_owned())
    };
    let session = doc.sessions.get(session_id);
    let session_title = session.map(|s| s.title.trim()).unwrap_or_default();
    let title = match (doc.title.trim(), session_title) {
        ("", "") => format!("Canopy session {session_id}"),
        (f, "") => f.to_owned(),
        ("", s) => s.to_owned(),
        (f, s) => format!("{f}: {s}"),
    };
    let mut body = String::new();
    if let Some(scope) = session.map(|s| s.scope.trim()).filter(|s| !s.is_empty()) {
        body.push_str(&inert(&clip(scope, 2_000)));
        body.push_str("\n\n");
    }
    let prompts: Vec<_> = doc
        .queue
        .iter()
        .filter(|e| {
            e.session_id == session_id
                && matches!(
                    e.status,
                    QueueStatus::Done | QueueStatus::Running | QueueStatus::Dispatched
                )
        })
        .collect();
    body.push_str("## Prompts\n\n");
    if prompts.is_empty() {
        body.push_str("_None yet._\n");
    }
    for (i, e) in prompts.iter().enumerate() {
        body.push_str(&format!(
            "{}. **{}**{}\n{}\n\n",
            i + 1,
            inert(&name(&e.author)),
            e.commit
                .as_deref()
                .map(|c| format!(" ({})", &c[..c.len().min(12)]))
                .unwrap_or_default(),
            quote(&e.text)
        ));
    }
    let learnings: Vec<_> = doc
        .learnings
        .iter()
        .filter(|l| l.from_session.as_deref() == Some(session_id))
        .collect();
    if !learnings.is_empty() {
        body.push_str("## Learnings\n\n");
        for l in learnings {
            body.push_str(&format!(
                "- {} ({})\n",
                inert(&clip(&l.text, 1_000)),
                inert(&name(&l.author))
            ));
        }
        body.push('\n');
    }
    let decisions: Vec<_> = doc
        .decisions
        .iter()
        .filter(|d| d.from_session.as_deref() == Some(session_id))
        .collect();
    if !decisions.is_empty() {
        body.push_str("## Decisions\n\n");
        for d in decisions {
            body.push_str(&format!("- **{}**", inert(&clip(&d.decision, 500))));
            if !d.rationale.trim().is_empty() {
                body.push_str(&format!(": {}", inert(&clip(&d.rationale, 1_000))));
            }
            body.push_str(&format!(" ({})\n", inert(&name(&d.author))));
        }
        body.push('\n');
    }
    let footer = format!(
        "---\nFrom the Canopy session [{}]({link}).\n",
        inert(if session_title.is_empty() {
            session_id
        } else {
            session_title
        })
    );
    let room = BODY_CHARS.saturating_sub(footer.chars().count());
    let mut body = clip(&body, room);
    body.push_str("\n\n");
    body.push_str(&footer);
    (clip(&title, 200), body)
}

/// Who asked for work in a session, most recent first: the authors of its
/// prompts (running, then done), then its creator.
pub fn askers(doc: &FeatureDoc, session_id: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |u: &str| {
        if !u.is_empty() && !out.iter().any(|o| o == u) {
            out.push(u.to_owned());
        }
    };
    for e in doc.queue.iter().rev() {
        if e.session_id == session_id
            && matches!(e.status, QueueStatus::Running | QueueStatus::Dispatched)
        {
            push(&e.author);
        }
    }
    for e in doc.queue.iter().rev() {
        if e.session_id == session_id && e.status == QueueStatus::Done {
            push(&e.author);
        }
    }
    if let Some(s) = doc.sessions.get(session_id) {
        push(&s.created_by);
    }
    out
}

/// The repository of `doc` on `host`, and the branch its pull requests go
/// into.
///
/// # Errors
/// No repository, or one on another forge.
pub fn target(host: &SharedGitHost, doc: &FeatureDoc) -> Result<(RepoRef, String), String> {
    let repo = doc.repo.as_ref().ok_or("the feature has no repository")?;
    let on_host = host.repo(&repo.url).ok_or_else(|| {
        format!(
            "the feature's repository ({}) is not on the configured GitHub",
            redact(&repo.url)
        )
    })?;
    let base = repo
        .feature_branch
        .clone()
        .unwrap_or_else(|| repo.base_branch.clone());
    Ok((on_host, base))
}

/// `url` without user info.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}/{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn mentions_and_comments_in_text_are_made_inert() {
        assert_eq!(
            inert("ping @octocat <!-- hidden"),
            "ping @\u{2060}octocat &lt;!-- hidden"
        );
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip(" ab ", 3), "ab");
        assert_eq!(quote("one\ntwo"), "> one\n> two");
        assert_eq!(
            redact("https://x-access-token:ghs_1@github.com/a/b.git"),
            "https://github.com/a/b.git"
        );
    }
}
