//! The forge's API, behind [`GitHost`]: installation tokens for the App,
//! the OAuth web flow, the signed-in user, and pull requests. The one
//! implementation, [`GitHubHost`], speaks GitHub's REST API through
//! octocrab against a configurable base URL (github.com or an Enterprise
//! server); tests point it at a local server that answers GitHub's real
//! shapes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use octocrab::{Octocrab, models::InstallationToken, params};
use serde::Deserialize;

/// A repository on the forge.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoRef {
    /// Owner (user or organisation), as written in the URL.
    pub owner: String,
    /// Repository name, without `.git`.
    pub name: String,
}

impl std::fmt::Display for RepoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A token that stops working at `expires_at` (unix ms), if it says.
#[derive(Clone)]
pub struct ExpiringToken {
    /// The secret.
    pub token: String,
    /// Unix milliseconds.
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for ExpiringToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpiringToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The account behind a user token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostUser {
    /// The forge's numeric id (stable across renames).
    pub id: u64,
    /// Login (`octocat`).
    pub login: String,
    /// Display name, if set.
    pub name: Option<String>,
    /// Primary verified email, if the token may read it.
    pub email: Option<String>,
}

/// What a pull request should say.
#[derive(Debug, Clone)]
pub struct PullRequestDraft {
    /// Title.
    pub title: String,
    /// Markdown body.
    pub body: String,
    /// The branch with the work.
    pub head: String,
    /// The branch it goes into.
    pub base: String,
    /// The session's pull request, if it has one: updated, not opened again.
    pub existing: Option<u64>,
}

/// A pull request as the forge reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestInfo {
    /// Web URL.
    pub url: String,
    /// Number.
    pub number: u64,
    /// `open`, `closed` or `merged`.
    pub state: String,
    /// Login of whoever opened it (a bot for the App).
    pub opened_by: String,
    /// Whether this call opened it (not an update).
    pub created: bool,
}

/// Why a forge call failed.
#[derive(Debug, thiserror::Error)]
pub enum GitHostError {
    /// The credentials were refused (401).
    #[error("the forge refused the credentials: {0}")]
    Unauthorized(String),
    /// Allowed in, but not to do this (403), or the repository is not
    /// visible to these credentials (404).
    #[error("the forge does not allow it: {0}")]
    Forbidden(String),
    /// The request was understood and refused (422 and the like).
    #[error("the forge refused the request: {0}")]
    Rejected(String),
    /// Not configured (no App, no OAuth client).
    #[error("{0}")]
    NotConfigured(&'static str),
    /// The forge did not answer, or answered nonsense.
    #[error("the forge is unavailable: {0}")]
    Unavailable(String),
}

impl GitHostError {
    fn from_octocrab(e: octocrab::Error) -> Self {
        match e {
            octocrab::Error::GitHub { source, .. } => {
                let detail = match &source.errors {
                    Some(errors) if !errors.is_empty() => format!(
                        "{} ({})",
                        source.message,
                        errors
                            .iter()
                            .map(|e| e
                                .get("message")
                                .and_then(|m| m.as_str())
                                .map_or_else(|| e.to_string(), str::to_owned))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    _ => source.message.clone(),
                };
                match source.status_code.as_u16() {
                    401 => GitHostError::Unauthorized(detail),
                    403 | 404 => GitHostError::Forbidden(detail),
                    400..=499 => GitHostError::Rejected(detail),
                    _ => GitHostError::Unavailable(detail),
                }
            }
            other => GitHostError::Unavailable(other.to_string()),
        }
    }

    /// Whether another identity might succeed where this one failed.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            GitHostError::Unauthorized(_) | GitHostError::Forbidden(_)
        )
    }
}

/// The forge, as the server uses it.
pub trait GitHost: Send + Sync + std::fmt::Debug {
    /// The repository `url` names, if it is on this forge.
    fn repo(&self, url: &str) -> Option<RepoRef>;
    /// Whether an App is configured (installation tokens, PRs as the App).
    fn has_app(&self) -> bool;
    /// Whether sign-in with the forge is configured.
    fn has_oauth(&self) -> bool;
    /// Where to send a person's browser to sign in.
    fn authorize_url(&self, state: &str, redirect_uri: &str) -> Option<String>;
    /// A token of the App's installation on `repo`, minted or cached;
    /// `None` when there is no App or it is not installed there.
    fn installation_token<'a>(
        &'a self,
        repo: &'a RepoRef,
    ) -> BoxFuture<'a, Result<Option<ExpiringToken>, GitHostError>>;
    /// Trade an OAuth code for the user's token.
    fn exchange_code<'a>(
        &'a self,
        code: &'a str,
        redirect_uri: &'a str,
    ) -> BoxFuture<'a, Result<UserToken, GitHostError>>;
    /// A new user token for a refresh token (each refresh token works
    /// once); `Rejected` when the forge refuses it.
    fn refresh_user_token<'a>(
        &'a self,
        refresh_token: &'a str,
    ) -> BoxFuture<'a, Result<UserToken, GitHostError>>;
    /// Who a user token belongs to.
    fn user<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<HostUser, GitHostError>>;
    /// Open the pull request (or update the one there is) with `token`.
    fn pull_request<'a>(
        &'a self,
        token: &'a str,
        repo: &'a RepoRef,
        draft: &'a PullRequestDraft,
    ) -> BoxFuture<'a, Result<PullRequestInfo, GitHostError>>;
    /// The page where a person can open the pull request by hand.
    fn compare_url(&self, repo: &RepoRef, base: &str, head: &str) -> String;
}

/// How long a forge request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// An installation token is minted again when it has less than this left
/// (they live an hour): a push started with it must not outlive it.
const TOKEN_MARGIN_MS: i64 = 10 * 60 * 1000;

/// The App's identity.
#[derive(Clone)]
pub struct AppCredentials {
    /// App id.
    pub id: u64,
    /// PEM of its private key (RSA).
    pub private_key_pem: String,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The OAuth client of the App (or an OAuth App).
#[derive(Clone)]
pub struct OAuthClient {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// GitHub (or GitHub Enterprise) through octocrab.
pub struct GitHubHost {
    api_url: String,
    web_url: String,
    web_host: String,
    app: Option<Octocrab>,
    oauth: Option<OAuthClient>,
    http: reqwest::Client,
    installations: Mutex<HashMap<RepoRef, (u64, ExpiringToken)>>,
}

impl std::fmt::Debug for GitHubHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubHost")
            .field("api_url", &self.api_url)
            .field("web_url", &self.web_url)
            .field("app", &self.app.is_some())
            .field("oauth", &self.oauth.is_some())
            .finish_non_exhaustive()
    }
}

/// The host part of `url` (`https://host:port/…` → `host`), lowercase.
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit('@').next()?.split(':').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

impl GitHubHost {
    /// A client of the forge at `web_url` (pages, git, OAuth) and
    /// `api_url` (REST).
    ///
    /// # Errors
    /// An unusable URL or App key.
    pub fn new(
        web_url: &str,
        api_url: &str,
        app: Option<AppCredentials>,
        oauth: Option<OAuthClient>,
    ) -> Result<GitHubHost, String> {
        let web_url = web_url.trim_end_matches('/').to_owned();
        let api_url = api_url.trim_end_matches('/').to_owned();
        let web_host =
            host_of(&web_url).ok_or_else(|| format!("{web_url:?} is not an http(s) URL"))?;
        if host_of(&api_url).is_none() {
            return Err(format!("{api_url:?} is not an http(s) URL"));
        }
        let app = match app {
            Some(app) => {
                let key = octocrab::EncodingKey::from_rsa_pem(app.private_key_pem.as_bytes())
                    .map_err(|e| {
                        format!("the GitHub App private key is not an RSA PEM key: {e}")
                    })?;
                Some(
                    builder(&api_url)?
                        .app(octocrab::models::AppId(app.id), key)
                        .build()
                        .map_err(|e| format!("cannot make the GitHub client: {e}"))?,
                )
            }
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(GitHubHost {
            api_url,
            web_url,
            web_host,
            app,
            oauth,
            http,
            installations: Mutex::new(HashMap::new()),
        })
    }

    /// `POST /login/oauth/access_token` with the OAuth client's
    /// credentials and `fields` (a code, or a refresh token).
    async fn token_endpoint(
        &self,
        mut fields: serde_json::Value,
    ) -> Result<UserToken, GitHostError> {
        let oauth = self.oauth.as_ref().ok_or(GitHostError::NotConfigured(
            "sign-in with GitHub is not configured",
        ))?;
        fields["client_id"] = oauth.client_id.clone().into();
        fields["client_secret"] = oauth.client_secret.clone().into();
        let asked_at = canopy_protocol::unix_ms_now();
        let answer = self
            .http
            .post(format!("{}/login/oauth/access_token", self.web_url))
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&fields)
            .send()
            .await
            .map_err(|e| GitHostError::Unavailable(e.without_url().to_string()))?;
        if !answer.status().is_success() {
            return Err(GitHostError::Unavailable(format!(
                "the token endpoint answered {}",
                answer.status()
            )));
        }
        let answer: OAuthAnswer = answer
            .json()
            .await
            .map_err(|e| GitHostError::Unavailable(e.without_url().to_string()))?;
        let at = |secs: Option<i64>| secs.map(|s| asked_at.saturating_add(s.saturating_mul(1000)));
        match (answer.access_token, answer.error) {
            (Some(token), None) if !token.is_empty() => Ok(UserToken {
                access_token: token,
                expires_at: at(answer.expires_in),
                refresh_token: answer.refresh_token.filter(|t| !t.is_empty()),
                refresh_expires_at: at(answer.refresh_token_expires_in),
            }),
            (_, error) => Err(GitHostError::Rejected(
                answer
                    .error_description
                    .or(error)
                    .unwrap_or_else(|| "no token in the answer".into()),
            )),
        }
    }

    fn with_token(&self, token: &str) -> Result<Octocrab, GitHostError> {
        builder(&self.api_url)
            .map_err(GitHostError::Unavailable)?
            .personal_token(token.to_owned())
            .build()
            .map_err(|e| GitHostError::Unavailable(e.to_string()))
    }

    async fn mint(
        &self,
        app: &Octocrab,
        repo: &RepoRef,
    ) -> Result<Option<(u64, ExpiringToken)>, GitHostError> {
        let installation = match app
            .apps()
            .get_repository_installation(&repo.owner, &repo.name)
            .await
        {
            Ok(i) => i,
            Err(e) => {
                return match GitHostError::from_octocrab(e) {
                    // Not installed on this repository.
                    GitHostError::Forbidden(_) => Ok(None),
                    other => Err(other),
                };
            }
        };
        let id = installation.id.0;
        let minted: InstallationToken = app
            .post(
                format!("/app/installations/{id}/access_tokens"),
                None::<&()>,
            )
            .await
            .map_err(GitHostError::from_octocrab)?;
        let expires_at = minted
            .expires_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        Ok(Some((
            id,
            ExpiringToken {
                token: minted.token,
                expires_at,
            },
        )))
    }
}

fn builder(
    api_url: &str,
) -> Result<
    octocrab::OctocrabBuilder<
        octocrab::NoSvc,
        octocrab::DefaultOctocrabBuilderConfig,
        octocrab::NoAuth,
        octocrab::NotLayerReady,
    >,
    String,
> {
    let builder = Octocrab::builder()
        .set_connect_timeout(Some(REQUEST_TIMEOUT))
        .set_read_timeout(Some(REQUEST_TIMEOUT));
    builder
        .base_uri(format!("{api_url}/"))
        .map_err(|e| format!("{api_url:?} is not a usable API URL: {e}"))
}

#[derive(Deserialize)]
struct OAuthAnswer {
    access_token: Option<String>,
    /// Seconds; only for tokens that expire (GitHub App user tokens).
    expires_in: Option<i64>,
    refresh_token: Option<String>,
    refresh_token_expires_in: Option<i64>,
    error: Option<String>,
    error_description: Option<String>,
}

/// A person's token from the forge's OAuth token endpoint. GitHub App
/// user tokens expire (eight hours) and come with a refresh token (six
/// months, single use); OAuth App tokens do not.
#[derive(Clone, PartialEq, Eq)]
pub struct UserToken {
    /// The access token.
    pub access_token: String,
    /// Unix ms, when it expires.
    pub expires_at: Option<i64>,
    /// The refresh token, when there is one.
    pub refresh_token: Option<String>,
    /// Unix ms, when the refresh token expires.
    pub refresh_expires_at: Option<i64>,
}

impl std::fmt::Debug for UserToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserToken")
            .field("expires_at", &self.expires_at)
            .field("refreshable", &self.refresh_token.is_some())
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish_non_exhaustive()
    }
}

impl UserToken {
    /// A token that does not expire.
    pub fn lasting(access_token: impl Into<String>) -> UserToken {
        UserToken {
            access_token: access_token.into(),
            expires_at: None,
            refresh_token: None,
            refresh_expires_at: None,
        }
    }
}

#[derive(Deserialize)]
struct UserAnswer {
    id: u64,
    login: String,
    name: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
struct EmailAnswer {
    email: String,
    primary: bool,
    verified: bool,
}

fn pr_state(pr: &octocrab::models::pulls::PullRequest) -> String {
    if pr.merged_at.is_some() || pr.merged == Some(true) {
        return "merged".into();
    }
    match &pr.state {
        Some(octocrab::models::IssueState::Closed) => "closed".into(),
        _ => "open".into(),
    }
}

fn pr_info(pr: &octocrab::models::pulls::PullRequest, created: bool) -> PullRequestInfo {
    PullRequestInfo {
        url: pr
            .html_url
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        number: pr.number,
        state: pr_state(pr),
        opened_by: pr
            .user
            .as_ref()
            .map(|u| u.login.clone())
            .unwrap_or_default(),
        created,
    }
}

impl GitHost for GitHubHost {
    fn repo(&self, url: &str) -> Option<RepoRef> {
        let name = super::RepoName::from_url(url)?;
        let text = name.to_string();
        let mut parts = text.splitn(3, '/');
        let host = parts.next()?;
        if host != self.web_host {
            return None;
        }
        // The owner and name as written (GitHub's API ignores case).
        let url = url.trim().trim_end_matches('/');
        let url = url.strip_suffix(".git").unwrap_or(url);
        let mut segments = url.rsplit(['/', ':']);
        let name = segments.next()?.to_owned();
        let owner = segments.next()?.to_owned();
        Some(RepoRef { owner, name })
    }

    fn has_app(&self) -> bool {
        self.app.is_some()
    }

    fn has_oauth(&self) -> bool {
        self.oauth.is_some()
    }

    fn authorize_url(&self, state: &str, redirect_uri: &str) -> Option<String> {
        let oauth = self.oauth.as_ref()?;
        let query = serde_urlencoded_pairs(&[
            ("client_id", oauth.client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("scope", "repo read:user user:email"),
            ("state", state),
            ("allow_signup", "false"),
        ]);
        Some(format!("{}/login/oauth/authorize?{query}", self.web_url))
    }

    fn installation_token<'a>(
        &'a self,
        repo: &'a RepoRef,
    ) -> BoxFuture<'a, Result<Option<ExpiringToken>, GitHostError>> {
        Box::pin(async move {
            let Some(app) = &self.app else {
                return Ok(None);
            };
            let now = canopy_protocol::unix_ms_now();
            if let Some((_, token)) = self
                .installations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(repo)
                && token.expires_at.is_some_and(|t| t - now > TOKEN_MARGIN_MS)
            {
                return Ok(Some(token.clone()));
            }
            let minted = self.mint(app, repo).await?;
            let mut cache = self.installations.lock().unwrap_or_else(|p| p.into_inner());
            match minted {
                Some((id, token)) => {
                    cache.insert(repo.clone(), (id, token.clone()));
                    Ok(Some(token))
                }
                None => {
                    cache.remove(repo);
                    Ok(None)
                }
            }
        })
    }

    fn exchange_code<'a>(
        &'a self,
        code: &'a str,
        redirect_uri: &'a str,
    ) -> BoxFuture<'a, Result<UserToken, GitHostError>> {
        Box::pin(self.token_endpoint(serde_json::json!({
            "code": code,
            "redirect_uri": redirect_uri,
        })))
    }

    fn refresh_user_token<'a>(
        &'a self,
        refresh_token: &'a str,
    ) -> BoxFuture<'a, Result<UserToken, GitHostError>> {
        Box::pin(self.token_endpoint(serde_json::json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        })))
    }

    fn user<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<HostUser, GitHostError>> {
        Box::pin(async move {
            let crab = self.with_token(token)?;
            let user: UserAnswer = crab
                .get("/user", None::<&()>)
                .await
                .map_err(GitHostError::from_octocrab)?;
            let mut email = user.email.filter(|e| !e.is_empty());
            if email.is_none() {
                // A private email is only in the email list (scope
                // `user:email`); no list is no email, not an error.
                let emails: Vec<EmailAnswer> = crab
                    .get("/user/emails", None::<&()>)
                    .await
                    .unwrap_or_default();
                email = emails
                    .into_iter()
                    .find(|e| e.primary && e.verified)
                    .map(|e| e.email);
            }
            Ok(HostUser {
                id: user.id,
                login: user.login,
                name: user.name.filter(|n| !n.is_empty()),
                email,
            })
        })
    }

    fn pull_request<'a>(
        &'a self,
        token: &'a str,
        repo: &'a RepoRef,
        draft: &'a PullRequestDraft,
    ) -> BoxFuture<'a, Result<PullRequestInfo, GitHostError>> {
        Box::pin(async move {
            let crab = self.with_token(token)?;
            let pulls = crab.pulls(&repo.owner, &repo.name);
            let update = |number: u64| {
                let pulls = crab.pulls(&repo.owner, &repo.name);
                async move {
                    pulls
                        .update(number)
                        .title(&draft.title)
                        .body(&draft.body)
                        .send()
                        .await
                        .map(|pr| pr_info(&pr, false))
                        .map_err(GitHostError::from_octocrab)
                }
            };
            if let Some(number) = draft.existing {
                match update(number).await {
                    Ok(info) => return Ok(info),
                    // Gone (or never this repository's): open a new one.
                    Err(GitHostError::Forbidden(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            match pulls
                .create(&draft.title, &draft.head, &draft.base)
                .body(&draft.body)
                .send()
                .await
            {
                Ok(pr) => Ok(pr_info(&pr, true)),
                Err(e) => {
                    let e = GitHostError::from_octocrab(e);
                    if !matches!(&e, GitHostError::Rejected(m) if m.contains("already exists")) {
                        return Err(e);
                    }
                    // Opened before (by hand, or the record was lost):
                    // that one is the session's.
                    let open = pulls
                        .list()
                        .state(params::State::Open)
                        .head(format!("{}:{}", repo.owner, draft.head))
                        .send()
                        .await
                        .map_err(GitHostError::from_octocrab)?;
                    let number = open.items.first().map(|pr| pr.number).ok_or(e)?;
                    update(number).await
                }
            }
        })
    }

    fn compare_url(&self, repo: &RepoRef, base: &str, head: &str) -> String {
        format!(
            "{}/{}/{}/compare/{}...{}?expand=1",
            self.web_url,
            repo.owner,
            repo.name,
            url_path_escape(base),
            url_path_escape(head)
        )
    }
}

/// `k=v&…`, each part percent-encoded.
fn serde_urlencoded_pairs(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes all but RFC 3986's unreserved characters.
pub fn query_escape(s: &str) -> String {
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

/// A branch name in a URL path: `/` stays (GitHub's compare pages take it
/// as is), everything unusual is escaped.
fn url_path_escape(s: &str) -> String {
    s.split('/').map(query_escape).collect::<Vec<_>>().join("/")
}

/// A shared forge client.
pub type SharedGitHost = Arc<dyn GitHost>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn repositories_are_recognised_on_this_host_only() {
        let host = GitHubHost::new(
            "https://ghe.example.com",
            "https://ghe.example.com/api/v3",
            None,
            None,
        )
        .unwrap();
        let want = RepoRef {
            owner: "Acme".into(),
            name: "Widget".into(),
        };
        for url in [
            "https://ghe.example.com/Acme/Widget.git",
            "https://ghe.example.com/Acme/Widget",
            "git@ghe.example.com:Acme/Widget.git",
        ] {
            assert_eq!(host.repo(url).as_ref(), Some(&want), "{url}");
        }
        assert_eq!(host.repo("https://github.com/Acme/Widget"), None);
        assert_eq!(host.repo("file:///srv/widget.git"), None);
        assert_eq!(
            host.compare_url(&want, "main", "canopy/a/b-1"),
            "https://ghe.example.com/Acme/Widget/compare/main...canopy/a/b-1?expand=1"
        );
        let oauth = GitHubHost::new(
            "https://github.com",
            "https://api.github.com",
            None,
            Some(OAuthClient {
                client_id: "Iv1.abc".into(),
                client_secret: "s".into(),
            }),
        )
        .unwrap();
        assert_eq!(
            oauth
                .authorize_url("st&ate", "http://127.0.0.1:1/api/github/callback")
                .unwrap(),
            "https://github.com/login/oauth/authorize?client_id=Iv1.abc&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fapi%2Fgithub%2Fcallback&scope=repo%20read%3Auser%20user%3Aemail&state=st%26ate&allow_signup=false"
        );
        assert!(GitHubHost::new("nonsense", "https://api.github.com", None, None).is_err());
    }
}
