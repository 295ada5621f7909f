//! The server's client of a sandbox sidecar's control API
//! ([`canopy_protocol::sidecar`]): which OpenCode process runs now, and the
//! commit after each prompt.

use std::{sync::LazyLock, time::Duration};

use canopy_protocol::sidecar::{
    ClaimRequest, CommitOutcome, CommitRequest, PushOutcome, PushRequest, SessionDiff,
    SidecarStatus,
};

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// Not reachable (stopped, restarting, network).
    #[error("cannot reach the sandbox's sidecar: {0}")]
    Unreachable(String),
    /// It answered with an error.
    #[error("the sandbox's sidecar answered HTTP {status}: {message}")]
    Failed {
        /// HTTP status.
        status: u16,
        /// Its error message.
        message: String,
    },
}

/// One client for every sidecar: its pool keeps the loopback connections
/// warm between calls (a run asks a sidecar every second), and a client is
/// not free to build. Each call sets its own timeout.
static HTTP: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default()
});

struct Call(Duration);

impl Call {
    fn get(&self, url: String) -> reqwest::RequestBuilder {
        HTTP.get(url).timeout(self.0)
    }

    fn post(&self, url: String) -> reqwest::RequestBuilder {
        HTTP.post(url).timeout(self.0)
    }
}

fn http(timeout: Duration) -> Call {
    Call(timeout)
}

async fn answer<T: serde::de::DeserializeOwned>(
    resp: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, SidecarError> {
    let resp = resp.map_err(|e| SidecarError::Unreachable(e.to_string()))?;
    let status = resp.status();
    if !status.is_success() {
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        return Err(SidecarError::Failed {
            status: status.as_u16(),
            message: body["error"]["message"]
                .as_str()
                .unwrap_or("no message")
                .to_owned(),
        });
    }
    resp.json()
        .await
        .map_err(|e| SidecarError::Unreachable(format!("unreadable answer: {e}")))
}

/// `GET /v1/status`.
pub async fn sidecar_status(
    control_url: &str,
    secret: &str,
) -> Result<SidecarStatus, SidecarError> {
    answer(
        http(Duration::from_secs(3))
            .get(format!("{control_url}/v1/status"))
            .bearer_auth(secret)
            .send()
            .await,
    )
    .await
}

/// `GET /v1/diff`.
pub async fn sidecar_diff(control_url: &str, secret: &str) -> Result<SessionDiff, SidecarError> {
    answer(
        // It stages the workspace into a scratch index: a large tree takes
        // a while.
        http(Duration::from_secs(60))
            .get(format!("{control_url}/v1/diff"))
            .bearer_auth(secret)
            .send()
            .await,
    )
    .await
}

/// `POST /v1/commit`.
pub async fn sidecar_commit(
    control_url: &str,
    secret: &str,
    request: &CommitRequest,
) -> Result<CommitOutcome, SidecarError> {
    answer(
        http(Duration::from_secs(120))
            .post(format!("{control_url}/v1/commit"))
            .bearer_auth(secret)
            .json(request)
            .send()
            .await,
    )
    .await
}

/// `POST /v1/claim`: bind a pooled (or freshly started, unbound) sidecar to
/// its session.
pub async fn sidecar_claim(
    control_url: &str,
    secret: &str,
    request: &ClaimRequest,
) -> Result<SidecarStatus, SidecarError> {
    answer(
        // The claim clones the repository when there is one.
        http(Duration::from_secs(90))
            .post(format!("{control_url}/v1/claim"))
            .bearer_auth(secret)
            .json(request)
            .send()
            .await,
    )
    .await
}

/// `POST /v1/push`: push the session's branch (git asks the server for its
/// credential through the sandbox's credential helper).
pub async fn sidecar_push(
    control_url: &str,
    secret: &str,
    request: &PushRequest,
) -> Result<PushOutcome, SidecarError> {
    answer(
        http(Duration::from_secs(180))
            .post(format!("{control_url}/v1/push"))
            .bearer_auth(secret)
            .json(request)
            .send()
            .await,
    )
    .await
}
