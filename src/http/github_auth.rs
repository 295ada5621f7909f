//! Sign in with GitHub (the OAuth web flow):
//!
//! - `GET /api/github/login?return_to=/path`: to GitHub's authorize page
//!   (outside token auth: a browser navigates here).
//! - `POST /api/github/link`: a signed-in user's authorize URL, to link
//!   their GitHub account (and keep its token for pull requests).
//! - `GET /api/github/callback?code&state`: GitHub sends the browser
//!   back; the code is traded for the user's token (stored encrypted), the
//!   Canopy user found, linked or (with `--github-signup`) created, and for
//!   a sign-in the browser is handed a Canopy API token in the URL's
//!   fragment (never sent to a server, not kept in history by the client).

use axum::{
    Json,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, auth::Caller};
use crate::{
    audit::AuditAction,
    auth::{NewUser, TokenScope, users::valid_handle},
    github::client::query_escape,
    github::oauth::Purpose,
    state::AppState,
};

/// The cookie that binds a sign-in to the browser that began it.
const COOKIE: &str = "canopy_github_state";
/// How long a token handed to a browser at sign-in lives.
const SIGN_IN_TOKEN_MS: i64 = 30 * 24 * 3600 * 1000;

fn not_configured() -> ApiError {
    ApiError::not_found("sign-in with GitHub is not configured on this server")
}

fn redirect_uri(state: &AppState) -> String {
    format!(
        "{}/api/github/callback",
        state.public_url().trim_end_matches('/')
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginQuery {
    return_to: Option<String>,
}

/// A path of this server (no scheme, no host, no `//`), else `/`.
fn local_path(p: Option<&str>) -> String {
    match p {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && p.len() <= 512
                && !p.contains('\\')
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// `GET /api/github/login`.
pub(super) async fn login(
    State(state): State<AppState>,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let github = state.github();
    let sign_in = github.sign_ins().begin(Purpose::SignIn {
        return_to: local_path(query.return_to.as_deref()),
    });
    let url = github
        .host()
        .authorize_url(&sign_in, &redirect_uri(&state))
        .ok_or_else(not_configured)?;
    let secure = if state.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={sign_in}; HttpOnly; SameSite=Lax; Path=/api/github; Max-Age=600{secure}"
    );
    let mut response = Redirect::to(&url).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// `GET /api/github/config` (public): what a sign-in page may offer.
pub(super) async fn config(State(state): State<AppState>) -> Json<serde_json::Value> {
    let github = state.github();
    Json(json!({
        "sign_in": github.host().has_oauth(),
        "signup": github.signup(),
    }))
}

/// `POST /api/github/link`: for a signed-in person.
pub(super) async fn link(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    if !matches!(who.scope, TokenScope::User) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a sandbox token cannot link a GitHub account",
        ));
    }
    let github = state.github();
    let sign_in = github.sign_ins().begin(Purpose::Link {
        user_id: who.user_id.clone(),
    });
    let url = github
        .host()
        .authorize_url(&sign_in, &redirect_uri(&state))
        .ok_or_else(not_configured)?;
    Ok(Json(json!({ "authorize_url": url })).into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn cookie_state(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// `GET /api/github/callback`.
pub(super) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let github = state.github();
    if !github.host().has_oauth() {
        return Err(not_configured());
    }
    let sign_in = query
        .state
        .clone()
        .filter(|s| s.len() == 32)
        .ok_or_else(|| ApiError::bad_request("bad_state", "the state parameter is missing"))?;
    let purpose = github.sign_ins().finish(&sign_in).ok_or_else(|| {
        ApiError::bad_request(
            "bad_state",
            "this sign-in is unknown, used or older than ten minutes; start again",
        )
    })?;
    // From here on the browser came back from GitHub for a sign-in or a
    // link it began: a failure goes back to the page it came from, with
    // the reason in the fragment, rather than a bare JSON error.
    let back_to = match &purpose {
        Purpose::SignIn { return_to } => return_to.clone(),
        Purpose::Link { .. } => "/".to_owned(),
    };
    match complete(&state, &headers, query, sign_in, purpose).await {
        Ok(response) => Ok(response),
        Err(e) => {
            tracing::info!(
                code = e.code(),
                error = e.message(),
                "sign-in with GitHub failed"
            );
            Ok(no_store(
                Redirect::to(&format!(
                    "{back_to}#github_error={}&message={}",
                    e.code(),
                    query_escape(e.message())
                ))
                .into_response(),
            ))
        }
    }
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The rest of the callback, once its sign-in is known.
async fn complete(
    state: &AppState,
    headers: &HeaderMap,
    query: CallbackQuery,
    sign_in: String,
    purpose: Purpose,
) -> Result<Response, ApiError> {
    let github = state.github();
    if let Some(error) = query.error {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "github_refused",
            format!(
                "GitHub did not authorize Canopy: {}",
                query.error_description.unwrap_or(error)
            ),
        ));
    }
    if matches!(purpose, Purpose::SignIn { .. })
        && cookie_state(headers).as_deref() != Some(sign_in.as_str())
    {
        return Err(ApiError::bad_request(
            "bad_state",
            "this sign-in was begun in another browser; start again here",
        ));
    }
    let code = query
        .code
        .filter(|c| !c.is_empty() && c.len() <= 256)
        .ok_or_else(|| ApiError::bad_request("bad_code", "the code parameter is missing"))?;
    let host = github.host();
    let bad_gateway = |e: crate::github::client::GitHostError| {
        ApiError::new(StatusCode::BAD_GATEWAY, "github_failed", e.to_string())
    };
    let token = host
        .exchange_code(&code, &redirect_uri(state))
        .await
        .map_err(|e| match e {
            crate::github::client::GitHostError::Rejected(m) => ApiError::new(
                StatusCode::FORBIDDEN,
                "github_refused",
                format!("GitHub refused the sign-in: {m}"),
            ),
            other => bad_gateway(other),
        })?;
    let gh = host.user(&token.access_token).await.map_err(bad_gateway)?;
    let accounts = state.github_access().accounts();
    let linked_err = |e: crate::github::accounts::AccountError| match e {
        crate::github::accounts::AccountError::LinkedElsewhere { .. } => {
            ApiError::new(StatusCode::CONFLICT, "already_linked", e.to_string())
        }
        other => ApiError::internal(other),
    };
    match purpose {
        Purpose::Link { user_id } => {
            accounts
                .link(&user_id, &gh, &token)
                .await
                .map_err(linked_err)?;
            state
                .audit()
                .record(
                    Some(&user_id),
                    None,
                    AuditAction::GitHubSignIn,
                    format!("linked GitHub account {}", gh.login),
                )
                .await;
            Ok(no_store(Redirect::to("/#github=linked").into_response()))
        }
        Purpose::SignIn { return_to } => {
            let user_id = match accounts
                .by_github_id(gh.id)
                .await
                .map_err(ApiError::internal)?
            {
                Some(account) => account.user_id,
                None if github.signup() => create_user(state, &gh).await?,
                None => {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "not_linked",
                        format!(
                            "no Canopy user is linked to the GitHub account {}: sign in with your API token and link GitHub first (this server does not create users at sign-in)",
                            gh.login
                        ),
                    ));
                }
            };
            let user = state
                .users()
                .user(&user_id)
                .await?
                .filter(|u| !u.disabled)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::FORBIDDEN,
                        "user_disabled",
                        "this user is disabled",
                    )
                })?;
            accounts
                .link(&user.user_id, &gh, &token)
                .await
                .map_err(linked_err)?;
            let (_, api_token) = state
                .users()
                .create_token_expiring(
                    &user.user_id,
                    "web sign-in with GitHub",
                    TokenScope::User,
                    Some(canopy_protocol::unix_ms_now() + SIGN_IN_TOKEN_MS),
                )
                .await?;
            state
                .audit()
                .record(
                    Some(&user.user_id),
                    None,
                    AuditAction::GitHubSignIn,
                    format!("signed in with GitHub account {}", gh.login),
                )
                .await;
            let mut response =
                Redirect::to(&format!("{return_to}#canopy_token={api_token}")).into_response();
            // The state is used: forget the cookie.
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{COOKIE}=; HttpOnly; SameSite=Lax; Path=/api/github; Max-Age=0"
            )) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(no_store(response))
        }
    }
}

/// A new Canopy user for `gh`: handle from the login (another if taken).
async fn create_user(
    state: &AppState,
    gh: &crate::github::client::HostUser,
) -> Result<String, ApiError> {
    let base: String = gh
        .login
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(30)
        .collect();
    let base = if base.is_empty() {
        "github-user".to_owned()
    } else {
        base
    };
    for n in 0..10 {
        let handle = match n {
            0 => base.clone(),
            1 => format!("{base}-gh"),
            n => format!("{base}-gh{n}"),
        };
        if !valid_handle(&handle) {
            continue;
        }
        match state
            .users()
            .create_user(NewUser {
                handle: handle.clone(),
                display_name: gh.name.clone().unwrap_or_else(|| gh.login.clone()),
                email: gh.email.clone(),
            })
            .await
        {
            Ok(user) => {
                state
                    .audit()
                    .record(
                        Some(&user.user_id),
                        None,
                        AuditAction::UserCreated,
                        format!(
                            "user {handle} created at sign-in with GitHub ({})",
                            gh.login
                        ),
                    )
                    .await;
                return Ok(user.user_id);
            }
            Err(crate::auth::AuthError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("no free handle for GitHub account {}", gh.login),
    ))
}
