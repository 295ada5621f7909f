//! The Docker sandbox backend (bollard): one container per session, for
//! teams that run untrusted agent code.
//!
//! Every container starts *unbound*: its sidecar starts OpenCode and waits
//! for the server's `POST /v1/claim` (sandbox token, server URL, feature,
//! session, repository). So a cold start, a restart, a restore from a
//! snapshot and a warm-pool claim are one path, and the sandbox token is
//! never in a container's configuration (which `docker inspect` shows and
//! `docker commit` would copy into an image).
//!
//! What Docker holds, all labelled `dev.canopy.server=<this server's id>`:
//!
//! ```text
//! container canopy-<srv>-<feature>-<session>   a session's sandbox
//! container canopy-<srv>-pool-<n>              a warm, unclaimed sandbox
//! container canopy-<srv>-snap-<session>        a snapshot being taken
//! volume    canopy-ws-<session> / -pool-<n>    /sandbox: workspace, replica,
//!                                              OpenCode's data
//! image     canopy-snapshot:<session>          an idle session's /sandbox
//! ```
//!
//! A claimed pool container is renamed to its session's name (labels cannot
//! change), so the name is what [`SandboxBackend::reconcile`] reads.
//!
//! Least privilege: non-root (the image's `canopy` user), every capability
//! dropped, `no-new-privileges`, a read-only root filesystem with a tmpfs
//! `/tmp` and the volume at `/sandbox`, memory / CPU / pids limits. The
//! network mode is configurable: `host` keeps every packet on this machine's
//! loopback (what tests use), any other mode publishes OpenCode's and the
//! sidecar's ports on 127.0.0.1 only.
//!
//! Idle sandboxes are [`SandboxBackend::hibernate`]d: the container stops,
//! `/sandbox` is copied into a helper container which is committed as the
//! snapshot image, and the volume is removed. The next start creates the
//! container from the snapshot with a fresh volume, which Docker fills from
//! the image.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use bollard::{
    Docker,
    models::{
        ContainerCreateBody, ContainerInspectResponse, HostConfig, Mount, MountType, PortBinding,
        VolumeCreateRequest,
    },
    query_parameters::{
        CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
        LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
        RenameContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
    },
};
use canopy_protocol::sidecar::{ClaimRequest, RepoSource, SidecarStatus};
use futures::{StreamExt, future::BoxFuture};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

mod container;
mod pool;
mod reconcile;
mod snapshot;

use super::{
    Sandbox, SandboxBackend, SandboxError, SandboxSpec,
    local::{free_port, secret, tail},
    opencode_config::{self, ModelConfig},
    sidecar_claim, sidecar_status,
};

/// The label every object of ours carries: the server's id.
pub const LABEL_SERVER: &str = "dev.canopy.server";
/// `session`, `pool`, `snapshot`.
const LABEL_ROLE: &str = "dev.canopy.role";
const LABEL_FEATURE: &str = "dev.canopy.feature";
const LABEL_SESSION: &str = "dev.canopy.session";
/// Where the volume is mounted (the image's `/sandbox` layout).
const SANDBOX_DIR: &str = "/sandbox";
const WORKSPACE: &str = "/sandbox/workspace";
/// OpenCode's and the sidecar's ports inside a container with a network of
/// its own (published on 127.0.0.1).
const INNER_OPENCODE_PORT: u16 = 4096;
const INNER_SIDECAR_PORT: u16 = 4097;
/// How long a container gets until OpenCode answers.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a left-over container gets to answer at reconcile.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Between SIGTERM and SIGKILL (the sidecar stops OpenCode, flushes its
/// replica).
const STOP_GRACE_SECS: i32 = 8;
/// The snapshot image's repository.
const SNAPSHOT_REPO: &str = "canopy-snapshot";

/// How the Docker backend runs sandboxes.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The daemon (`unix:///…`, `tcp://…`); `None`: `DOCKER_HOST` or the
    /// local socket.
    pub host: Option<String>,
    /// The sandbox image (`canopy sandbox build-image`).
    pub image: String,
    /// `host`, `bridge`, or a network's name.
    pub network: String,
    /// Memory limit per sandbox, in MiB.
    pub memory_mb: u64,
    /// CPU limit per sandbox, in CPUs.
    pub cpus: f64,
    /// Process limit per sandbox.
    pub pids: i64,
    /// Size of the `/tmp` tmpfs, in MiB.
    pub tmp_mb: u64,
    /// Warm containers kept ready to be claimed.
    pub pool_size: usize,
    /// This server's id (labels): another server's objects are never
    /// touched.
    pub server_id: String,
    /// Which model OpenCode talks to.
    pub model: ModelConfig,
}

/// Docker sandboxes.
#[derive(Debug)]
pub struct DockerSandboxes {
    config: DockerConfig,
    /// The client once the daemon answered; dropped when it stops answering,
    /// so the next call connects again. Cloned out (a handle), never held
    /// across `.await`.
    client: Mutex<Option<Docker>>,
    /// Sandboxes running for sessions, by session id.
    running: Mutex<HashMap<String, Running>>,
    /// Warm containers, ready to be claimed.
    pool: Mutex<Vec<Endpoint>>,
    /// Wakes the pool filler.
    refill: Notify,
    /// Names of pool containers: unique within this server process.
    next_pool: std::sync::atomic::AtomicU64,
    /// Set by [`SandboxBackend::stop_all`]: no more warm containers.
    closed: std::sync::atomic::AtomicBool,
    /// Held (shared) while a warm container is being made, so `stop_all`
    /// can wait for those and remove them too.
    warming: tokio::sync::RwLock<()>,
}

/// A session's running container.
#[derive(Debug, Clone)]
struct Running {
    container: String,
}

/// How to reach a container's OpenCode and sidecar.
#[derive(Clone)]
struct Endpoint {
    container: String,
    opencode_port: u16,
    sidecar_port: u16,
    password: String,
    control_secret: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("container", &self.container)
            .field("opencode_port", &self.opencode_port)
            .field("sidecar_port", &self.sidecar_port)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    fn control_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.sidecar_port)
    }

    fn sandbox(&self, feature_id: &str, session_id: &str, status: &SidecarStatus) -> Sandbox {
        let workspace = status.workspace.clone().unwrap_or_default();
        Sandbox {
            session_id: session_id.to_owned(),
            feature_id: feature_id.to_owned(),
            base_url: format!("http://127.0.0.1:{}", self.opencode_port),
            password: self.password.clone(),
            control_url: self.control_url(),
            control_secret: self.control_secret.clone(),
            workspace: PathBuf::from(WORKSPACE),
            backend: "docker".into(),
            branch: workspace.branch,
            clone_error: workspace.clone_error,
        }
    }
}

/// What a container's name says it is.
#[derive(Debug, PartialEq, Eq)]
enum Named {
    Session {
        feature_id: String,
        session_id: String,
    },
    Pool,
    Snapshot,
}

fn docker_error(e: bollard::errors::Error) -> SandboxError {
    use bollard::errors::Error;
    match e {
        Error::DockerResponseServerError {
            status_code,
            message,
        } => SandboxError::Start(format!("Docker answered {status_code}: {message}")),
        Error::HyperResponseError { .. }
        | Error::IOError { .. }
        | Error::RequestTimeoutError
        | Error::SocketNotFoundError(_) => {
            SandboxError::Unavailable(format!("the Docker daemon does not answer: {e}"))
        }
        other => SandboxError::Start(format!("Docker: {other}")),
    }
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl DockerSandboxes {
    /// A backend for `config`. Connects lazily: a daemon that is not there
    /// yet fails sandbox starts (with a clear error), not the server.
    pub fn new(config: DockerConfig) -> Self {
        DockerSandboxes {
            config,
            client: Mutex::new(None),
            running: Mutex::new(HashMap::new()),
            pool: Mutex::new(Vec::new()),
            refill: Notify::new(),
            next_pool: std::sync::atomic::AtomicU64::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
            warming: tokio::sync::RwLock::new(()),
        }
    }

    /// Check the daemon answers and the image is there; for a clear message
    /// at server start.
    pub async fn check(&self) -> Result<(), SandboxError> {
        let docker = self.docker().await?;
        match docker.inspect_image(&self.config.image).await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Err(SandboxError::Start(format!(
                "the sandbox image {} does not exist; build it with `canopy sandbox build-image`",
                self.config.image
            ))),
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn docker(&self) -> Result<Docker, SandboxError> {
        if let Some(d) = self.lock_client().clone() {
            return Ok(d);
        }
        let docker = connect(self.config.host.as_deref()).await?;
        *self.lock_client() = Some(docker.clone());
        Ok(docker)
    }

    fn lock_client(&self) -> std::sync::MutexGuard<'_, Option<Docker>> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Vec<Endpoint>> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Map a Docker error, forgetting the client when the daemon is gone (so
    /// the next call reconnects).
    fn failed(&self, e: bollard::errors::Error) -> SandboxError {
        let e = docker_error(e);
        if matches!(e, SandboxError::Unavailable(_)) {
            *self.lock_client() = None;
        }
        e
    }

    fn prefix(&self) -> String {
        let short: String = self.config.server_id.chars().take(12).collect();
        format!("canopy-{short}-")
    }

    fn session_name(&self, feature_id: &str, session_id: &str) -> String {
        format!("{}{feature_id}-{session_id}", self.prefix())
    }

    fn parse_name(&self, name: &str) -> Option<Named> {
        let rest = name.trim_start_matches('/').strip_prefix(&self.prefix())?;
        if rest.starts_with("pool-") {
            return Some(Named::Pool);
        }
        if rest.starts_with("snap-") {
            return Some(Named::Snapshot);
        }
        let (feature_id, session_id) = rest.split_once('-')?;
        let valid =
            canopy_protocol::ids::is_valid_id(canopy_protocol::ids::FEATURE_PREFIX, feature_id)
                && canopy_protocol::ids::is_valid_id(
                    canopy_protocol::ids::SESSION_PREFIX,
                    session_id,
                );
        valid.then(|| Named::Session {
            feature_id: feature_id.to_owned(),
            session_id: session_id.to_owned(),
        })
    }

    fn labels(&self, role: &str, ids: Option<(&str, &str)>) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_SERVER.to_owned(), self.config.server_id.clone()),
            (LABEL_ROLE.to_owned(), role.to_owned()),
        ]);
        if let Some((feature_id, session_id)) = ids {
            labels.insert(LABEL_FEATURE.to_owned(), feature_id.to_owned());
            labels.insert(LABEL_SESSION.to_owned(), session_id.to_owned());
        }
        labels
    }

    fn host_network(&self) -> bool {
        self.config.network == "host"
    }

    async fn tail_logs(&self, docker: &Docker, container: &str, lines: usize) -> String {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut out = String::new();
        let mut stream = docker.logs(container, Some(options));
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        tail(&out, lines, 64 * 1024)
    }

    /// Bind a started container to the session.
    async fn claim(
        &self,
        endpoint: &Endpoint,
        spec: &SandboxSpec,
    ) -> Result<SidecarStatus, SandboxError> {
        let request = ClaimRequest {
            server_url: spec.sidecar.server_url.clone(),
            sandbox_token: spec.sidecar.token.clone(),
            feature_id: spec.feature_id.clone(),
            session_id: spec.session_id.clone(),
            feature_doc: spec.sidecar.feature_doc.clone(),
            repo: spec.repo.as_ref().map(|r| RepoSource {
                url: r.url.clone(),
                branch: r.branch.clone(),
                work_branch: r.work_branch.clone(),
                depth: (r.depth > 0).then_some(r.depth),
                credential: r.credential.clone(),
            }),
        };
        sidecar_claim(&endpoint.control_url(), &endpoint.control_secret, &request)
            .await
            .map_err(|e| {
                SandboxError::Start(format!("cannot bind the sandbox to its session: {e}"))
            })
    }

    /// Remove a container (and nothing else); gone already is fine.
    async fn discard(&self, docker: &Docker, name: &str) -> Result<(), SandboxError> {
        match docker
            .remove_container(
                name,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn remove_volume(&self, docker: &Docker, volume: &str) {
        match docker
            .remove_volume(
                volume,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Ok(()) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => tracing::warn!(volume, error = %e, "cannot remove a sandbox volume"),
        }
    }

    /// The volume mounted at `/sandbox` in a container.
    fn volume_of(info: &ContainerInspectResponse) -> Option<String> {
        info.mounts
            .as_ref()?
            .iter()
            .find(|m| m.destination.as_deref() == Some(SANDBOX_DIR))
            .and_then(|m| m.name.clone())
    }

    /// The session's container (running or not), found by its name.
    async fn find_session_container(
        &self,
        docker: &Docker,
        session_id: &str,
    ) -> Result<Option<(String, ContainerInspectResponse)>, SandboxError> {
        for (name, named) in self.ours(docker).await? {
            if !matches!(&named, Named::Session { session_id: s, .. } if s == session_id) {
                continue;
            }
            match docker.inspect_container(&name, None).await {
                Ok(info) => return Ok(Some((name, info))),
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(self.failed(e)),
            }
        }
        Ok(None)
    }

    async fn image_exists(&self, docker: &Docker, image: &str) -> Result<bool, SandboxError> {
        match docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn volume_exists(&self, docker: &Docker, volume: &str) -> Result<bool, SandboxError> {
        match docker.inspect_volume(volume).await {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn create_volume(
        &self,
        docker: &Docker,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), SandboxError> {
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_owned()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn launch(&self, spec: SandboxSpec) -> Result<Sandbox, SandboxError> {
        if !canopy_protocol::ids::is_valid_id(
            canopy_protocol::ids::SESSION_PREFIX,
            &spec.session_id,
        ) || !canopy_protocol::ids::is_valid_id(
            canopy_protocol::ids::FEATURE_PREFIX,
            &spec.feature_id,
        ) {
            return Err(SandboxError::Invalid("not a session or feature id".into()));
        }
        let docker = self.docker().await?;
        let session_id = spec.session_id.clone();
        let name = self.session_name(&spec.feature_id, &session_id);
        self.running().remove(&session_id);
        let ids = Some((spec.feature_id.as_str(), session_id.as_str()));
        let ws_volume = format!("canopy-ws-{}", session_id.to_lowercase());
        let snapshot = Self::snapshot_image(&session_id);

        // Where does this session's /sandbox come from?
        let mut image = self.config.image.clone();
        let mut restored = false;
        let volume = if let Some((old, info)) =
            self.find_session_container(&docker, &session_id).await?
        {
            // A restart: the same volume, a fresh container (new secrets,
            // new ports).
            let volume = Self::volume_of(&info).unwrap_or_else(|| ws_volume.clone());
            self.stop_container(&docker, &old).await;
            self.discard(&docker, &old).await?;
            volume
        } else if self.volume_exists(&docker, &ws_volume).await? {
            ws_volume
        } else if self.image_exists(&docker, &snapshot).await? {
            // Docker fills the new, empty volume from the snapshot's
            // /sandbox.
            self.create_volume(&docker, &ws_volume, self.labels("session", ids))
                .await?;
            image = snapshot.clone();
            restored = true;
            ws_volume
        } else {
            // A new session: a warm container if there is one.
            while let Some(endpoint) = self.take_warm() {
                match self.bind_warm(&docker, &endpoint, &spec, &name).await {
                    Ok(sandbox) => return Ok(sandbox),
                    Err(e) => {
                        tracing::warn!(container = %endpoint.container, error = %e, "a warm sandbox could not be claimed; discarding it");
                        self.discard_pooled(&docker, &endpoint).await;
                    }
                }
            }
            self.create_volume(&docker, &ws_volume, self.labels("session", ids))
                .await?;
            ws_volume
        };
        let endpoint = self
            .create(&docker, &name, &image, &volume, self.labels("session", ids))
            .await?;
        let ready = async {
            self.wait_up(&docker, &endpoint).await?;
            self.claim(&endpoint, &spec).await
        }
        .await;
        let status = match ready {
            Ok(status) => status,
            Err(e) => {
                // Keep the container (stopped) for its logs and its volume.
                self.stop_container(&docker, &endpoint.container).await;
                return Err(e);
            }
        };
        if restored {
            // The volume holds the session now; the snapshot's layers go once
            // nothing uses them.
            if let Err(e) = docker
                .remove_image(
                    &snapshot,
                    Some(RemoveImageOptionsBuilder::new().force(true).build()),
                    None,
                )
                .await
            {
                tracing::warn!(image = %snapshot, error = %e, "cannot remove a restored snapshot");
            }
            tracing::info!(session_id, "sandbox restored from its snapshot");
        }
        let sandbox = endpoint.sandbox(&spec.feature_id, &session_id, &status);
        self.running().insert(
            session_id.clone(),
            Running {
                container: endpoint.container.clone(),
            },
        );
        tracing::info!(session_id, container = %endpoint.container, "docker sandbox ready");
        Ok(sandbox)
    }

    async fn stop_container(&self, docker: &Docker, name: &str) {
        match docker
            .stop_container(
                name,
                Some(
                    StopContainerOptionsBuilder::new()
                        .t(STOP_GRACE_SECS)
                        .build(),
                ),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if not_found(&e) => {}
            // 304: not running.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => tracing::warn!(container = name, error = %e, "cannot stop a container"),
        }
    }
}

impl SandboxBackend for DockerSandboxes {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn start(&self, spec: SandboxSpec) -> BoxFuture<'_, Result<Sandbox, SandboxError>> {
        Box::pin(self.launch(spec))
    }

    fn stop(&self, session_id: &str) -> BoxFuture<'_, Result<(), SandboxError>> {
        let session_id = session_id.to_owned();
        Box::pin(async move {
            let tracked = self.running().remove(&session_id);
            let docker = self.docker().await?;
            let name = match tracked {
                Some(r) => Some(r.container),
                None => self
                    .find_session_container(&docker, &session_id)
                    .await?
                    .map(|(n, _)| n),
            };
            if let Some(name) = name {
                // Stopped, not removed: the container names the session's
                // volume (a claimed pool container's volume is not named
                // after the session).
                self.stop_container(&docker, &name).await;
            }
            Ok(())
        })
    }

    fn alive(&self, session_id: &str) -> BoxFuture<'_, bool> {
        let container = self.running().get(session_id).map(|r| r.container.clone());
        Box::pin(async move {
            let Some(container) = container else {
                return false;
            };
            let Ok(docker) = self.docker().await else {
                return false;
            };
            match docker.inspect_container(&container, None).await {
                Ok(info) => info.state.and_then(|s| s.running).unwrap_or(false),
                Err(e) => {
                    let _ = self.failed(e);
                    false
                }
            }
        })
    }

    fn reconcile(&self) -> BoxFuture<'_, Result<Vec<Sandbox>, SandboxError>> {
        Box::pin(async move {
            let docker = self.docker().await?;
            let found = self.ours(&docker).await?;
            let adopted = futures::future::join_all(found.into_iter().map(|(name, named)| {
                let docker = docker.clone();
                async move { self.adopt(&docker, &name, named).await }
            }))
            .await;
            self.refill.notify_one();
            Ok(adopted.into_iter().flatten().collect())
        })
    }

    fn remove(&self, session_id: &str) -> BoxFuture<'_, Result<(), SandboxError>> {
        let session_id = session_id.to_owned();
        Box::pin(async move {
            self.running().remove(&session_id);
            let docker = self.docker().await?;
            if let Some((name, info)) = self.find_session_container(&docker, &session_id).await? {
                self.discard(&docker, &name).await?;
                if let Some(v) = Self::volume_of(&info) {
                    self.remove_volume(&docker, &v).await;
                }
            }
            self.remove_volume(&docker, &format!("canopy-ws-{}", session_id.to_lowercase()))
                .await;
            let snapshot = Self::snapshot_image(&session_id);
            match docker
                .remove_image(
                    &snapshot,
                    Some(RemoveImageOptionsBuilder::new().force(true).build()),
                    None,
                )
                .await
            {
                Ok(_) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(self.failed(e)),
            }
            tracing::info!(%session_id, "docker sandbox removed");
            Ok(())
        })
    }

    fn stop_all(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.closed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            // Warm containers being made are discarded when done.
            drop(self.warming.write().await);
            let containers: Vec<String> =
                self.running().drain().map(|(_, r)| r.container).collect();
            let pooled: Vec<Endpoint> = self.pool().drain(..).collect();
            let Ok(docker) = self.docker().await else {
                return;
            };
            futures::future::join_all(containers.iter().map(|c| self.stop_container(&docker, c)))
                .await;
            // Warm containers are cheap to make again and hold nothing.
            futures::future::join_all(pooled.iter().map(|e| self.discard_pooled(&docker, e))).await;
        })
    }

    fn hibernate(&self, session_id: &str) -> BoxFuture<'_, Result<(), SandboxError>> {
        let session_id = session_id.to_owned();
        Box::pin(async move { self.snapshot_and_stop(&session_id).await })
    }

    fn logs(&self, session_id: &str, lines: usize) -> BoxFuture<'_, Result<String, SandboxError>> {
        let session_id = session_id.to_owned();
        Box::pin(async move {
            let docker = self.docker().await?;
            let Some((name, _)) = self.find_session_container(&docker, &session_id).await? else {
                return Err(SandboxError::Invalid(format!(
                    "session {session_id} has no sandbox container"
                )));
            };
            Ok(self.tail_logs(&docker, &name, lines).await)
        })
    }

    fn sessions(&self) -> BoxFuture<'_, Vec<(String, String)>> {
        Box::pin(async move {
            let Ok(docker) = self.docker().await else {
                return Vec::new();
            };
            let mut out: Vec<(String, String)> = self
                .ours(&docker)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(_, named)| match named {
                    Named::Session {
                        feature_id,
                        session_id,
                    } => Some((feature_id, session_id)),
                    _ => None,
                })
                .collect();
            // Snapshots of sessions whose container is gone.
            if let Ok(images) = docker
                .list_images(Some(
                    bollard::query_parameters::ListImagesOptionsBuilder::new()
                        .filters(&HashMap::from([(
                            "label",
                            vec![format!("{LABEL_SERVER}={}", self.config.server_id)],
                        )]))
                        .build(),
                ))
                .await
            {
                for image in images {
                    let (Some(f), Some(s)) = (
                        image.labels.get(LABEL_FEATURE),
                        image.labels.get(LABEL_SESSION),
                    ) else {
                        continue;
                    };
                    if !out.iter().any(|(_, x)| x == s) {
                        out.push((f.clone(), s.clone()));
                    }
                }
            }
            out
        })
    }

    fn has_warm(&self) -> bool {
        !self.pool().is_empty()
    }
}

/// This server's id for Docker labels: made once, kept in the data
/// directory, so a restarted server finds its own containers and never
/// another server's.
pub fn server_id(data_dir: &std::path::Path) -> Result<String, SandboxError> {
    let path = data_dir.join("server-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(id.to_owned());
        }
    }
    let id = format!("{:016x}", rand::random::<u64>());
    std::fs::create_dir_all(data_dir).map_err(|e| SandboxError::Io(e.to_string()))?;
    std::fs::write(&path, &id).map_err(|e| SandboxError::Io(e.to_string()))?;
    Ok(id)
}

/// Connect to the Docker daemon at `host` (`unix:///…`, `tcp://…`; `None`:
/// `DOCKER_HOST` or the local socket) and agree on an API version, so the
/// daemons our machines run (API 1.41) and newer ones both work. Fails if
/// no daemon answers.
pub async fn connect(host: Option<&str>) -> Result<Docker, SandboxError> {
    let client = match host {
        Some(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
            Docker::connect_with_http(h, 120, bollard::API_DEFAULT_VERSION)
        }
        Some(h) => Docker::connect_with_socket(
            h.trim_start_matches("unix://"),
            120,
            bollard::API_DEFAULT_VERSION,
        ),
        None => Docker::connect_with_local_defaults(),
    }
    .map_err(|e| SandboxError::Unavailable(format!("cannot reach Docker: {e}")))?;
    client
        .negotiate_version()
        .await
        .map_err(|e| SandboxError::Unavailable(format!("the Docker daemon does not answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> DockerSandboxes {
        DockerSandboxes::new(DockerConfig {
            host: None,
            image: "canopy-sandbox:test".into(),
            network: "host".into(),
            memory_mb: 512,
            cpus: 1.0,
            pids: 256,
            tmp_mb: 64,
            pool_size: 0,
            server_id: "0123456789abcdef".into(),
            model: ModelConfig {
                provider: "canopy".into(),
                model: "m".into(),
                base_url: None,
                env: Vec::new(),
            },
        })
    }

    #[test]
    fn names_say_what_a_container_is() {
        let b = backend();
        let f = canopy_protocol::ids::new_feature_id();
        let s = canopy_protocol::ids::new_session_id();
        let name = b.session_name(&f, &s);
        assert_eq!(
            b.parse_name(&format!("/{name}")),
            Some(Named::Session {
                feature_id: f.clone(),
                session_id: s.clone()
            })
        );
        assert_eq!(
            b.parse_name("canopy-0123456789ab-pool-x"),
            Some(Named::Pool)
        );
        assert_eq!(
            b.parse_name("canopy-0123456789ab-snap-x"),
            Some(Named::Snapshot)
        );
        // Another server's, or not ours at all.
        assert_eq!(
            b.parse_name(&name.replace("0123456789ab", "ffffffffffff")),
            None
        );
        assert_eq!(b.parse_name("canopy-0123456789ab-ftr_x-ses_y"), None);
        assert_eq!(b.parse_name("postgres"), None);
    }

    #[test]
    fn the_server_id_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = server_id(dir.path()).expect("id");
        assert_eq!(server_id(dir.path()).expect("id"), a);
        assert_eq!(a.len(), 16);
    }
}
