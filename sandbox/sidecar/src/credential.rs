//! Git credentials in the sandbox, served on request and never stored.
//!
//! git (the agent's, or the sidecar's own push) runs with a credential
//! helper configured in its environment only: `canopy-sidecar
//! git-credential`, this binary in a second mode. The helper asks the
//! sidecar (`POST /git/credential`, with the MCP bearer the agent's
//! processes already hold), and the sidecar asks the server with the
//! sandbox token, which mints a short-lived token of the forge. Nothing
//! reaches `.git/config`, the document, a log line or the container's
//! filesystem; the sidecar keeps the answer in memory until shortly before
//! it expires.

use std::{
    io::{BufRead, Write},
    sync::{Arc, Mutex},
    time::Duration,
};

use canopy_protocol::sidecar::{CredentialRequest, GitCredential};

/// The helper's argument that selects this mode.
pub const HELPER_MODE: &str = "git-credential";
/// Where the helper finds the sidecar.
pub const URL_VAR: &str = "CANOPY_CREDENTIAL_URL";
/// The bearer the helper presents.
pub const TOKEN_VAR: &str = "CANOPY_CREDENTIAL_TOKEN";

/// A credential is asked for again when it has less than this left.
const MARGIN_MS: i64 = 5 * 60 * 1000;

/// How the sidecar reaches the server for its session.
#[derive(Clone)]
pub struct Source {
    /// The server's base URL.
    pub server_url: String,
    /// The sandbox token.
    pub token: String,
    /// The feature.
    pub feature_id: String,
    /// The session.
    pub session_id: String,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("server_url", &self.server_url)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// The sidecar's side: its session's source and the last answer.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    source: Arc<Mutex<Option<Source>>>,
    cached: Arc<Mutex<Option<(String, GitCredential)>>>,
}

/// Why no credential could be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Not bound to a session yet.
    #[error("this sandbox is not bound to a session yet")]
    NotBound,
    /// The server has none for this host (no App, no signed-in user).
    #[error("{0}")]
    None(String),
    /// The server could not be asked.
    #[error("cannot ask the server for a git credential: {0}")]
    Unreachable(String),
}

impl Credentials {
    /// Work for `source` from now on.
    pub fn bind(&self, source: Source) {
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = Some(source);
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// How to reach the server for the bound session, if bound.
    pub fn source(&self) -> Option<Source> {
        self.source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Drop the cached credential (the forge refused it: revoked, or
    /// expired early); `true` if there was one.
    pub fn forget(&self) -> bool {
        self.cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some()
    }

    /// A credential for `req.host`, cached or asked of the server.
    ///
    /// # Errors
    /// Not bound, none to be had, or the server unreachable.
    pub async fn get(&self, req: &CredentialRequest) -> Result<GitCredential, CredentialError> {
        let now = canopy_protocol::unix_ms_now();
        if let Some((host, c)) = self
            .cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            && host == req.host
            && c.expires_at.is_none_or(|t| t - now > MARGIN_MS)
        {
            return Ok(c);
        }
        let source = self
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(CredentialError::NotBound)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CredentialError::Unreachable(e.to_string()))?;
        let url = format!(
            "{}/api/features/{}/sessions/{}/git-credential",
            source.server_url.trim_end_matches('/'),
            source.feature_id,
            source.session_id
        );
        let resp = http
            .post(&url)
            .bearer_auth(&source.token)
            .json(req)
            .send()
            .await
            .map_err(|e| CredentialError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| CredentialError::Unreachable(e.without_url().to_string()))?;
        if !status.is_success() {
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or("no message")
                .to_owned();
            return Err(if status.is_server_error() {
                CredentialError::Unreachable(format!("HTTP {status}: {message}"))
            } else {
                CredentialError::None(message)
            });
        }
        let credential: GitCredential = serde_json::from_value(body)
            .map_err(|e| CredentialError::Unreachable(format!("unreadable answer: {e}")))?;
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((req.host.clone(), credential.clone()));
        Ok(credential)
    }
}

/// The environment that makes git use this binary as its only credential
/// helper, asking the sidecar listening at `sidecar` (`host:port`).
pub fn helper_env(sidecar: &str, token: &str) -> Vec<(String, String)> {
    let exe = std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "canopy-sidecar".into());
    // git runs the helper through the shell: quote the path.
    let quoted = format!("'{}'", exe.replace('\'', r"'\''"));
    let mut env = canopy_protocol::git::credential_helper_env(&format!("{quoted} {HELPER_MODE}"));
    env.push((URL_VAR.into(), format!("http://{sidecar}/git/credential")));
    env.push((TOKEN_VAR.into(), token.into()));
    env
}

/// The helper mode: git runs `canopy-sidecar git-credential <action>` and
/// speaks its credential protocol on stdin/stdout. Only `get` answers;
/// `store` and `erase` have nothing to do (nothing is stored). Returns the
/// exit code.
pub fn helper_main(action: Option<&str>) -> i32 {
    if action != Some("get") {
        return 0;
    }
    let mut fields = std::collections::BTreeMap::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once('=') {
            fields.insert(k.to_owned(), v.to_owned());
        }
    }
    let (Ok(url), Ok(token)) = (std::env::var(URL_VAR), std::env::var(TOKEN_VAR)) else {
        eprintln!("canopy-sidecar git-credential: {URL_VAR} and {TOKEN_VAR} are not set");
        return 1;
    };
    let request = CredentialRequest {
        protocol: fields.get("protocol").cloned().unwrap_or_default(),
        host: fields.get("host").cloned().unwrap_or_default(),
    };
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                let resp = reqwest::Client::new()
                    .post(&url)
                    .timeout(Duration::from_secs(60))
                    .bearer_auth(&token)
                    .json(&request)
                    .send()
                    .await
                    .map_err(|e| e.without_url().to_string())?;
                let status = resp.status();
                let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(body["error"]["message"]
                        .as_str()
                        .unwrap_or("no message")
                        .to_owned());
                }
                serde_json::from_value::<GitCredential>(body).map_err(|e| e.to_string())
            })
        });
    match answer {
        Ok(c) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "username={}\npassword={}\n", c.username, c.password);
            0
        }
        Err(e) => {
            // git goes on without (and fails with the remote's answer).
            eprintln!(
                "canopy-sidecar git-credential: no credential for {}: {e}",
                request.host
            );
            0
        }
    }
}
