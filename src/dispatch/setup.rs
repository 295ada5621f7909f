//! Choosing the agents' model and sandbox backend from the configuration,
//! and starting the dispatcher.

use std::sync::Arc;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Deps, Dispatcher, Store};
use crate::{
    attribution::Attribution,
    audit::AuditLog,
    auth::Members,
    config::{SandboxKind, ServerConfig},
    db::Database,
    devmodel::DevModel,
    registry::Registry,
    sandbox::{
        SandboxBackend,
        docker::{DockerConfig, DockerSandboxes},
        local::LocalProcesses,
        opencode_config::{self, ModelConfig},
    },
};

/// What `GET /api/agent` reports: which model and sandboxes agents use.
#[derive(Debug, Clone, Serialize)]
pub struct AgentInfo {
    /// `provider/model`.
    pub model: String,
    /// For people: says clearly when the model is the offline script.
    pub label: String,
    /// The offline scripted model (no API key set).
    pub offline: bool,
    /// The sandbox backend.
    pub sandbox: String,
    /// Whether sandboxes isolate the agent from this machine.
    pub isolated: bool,
}

/// The model the configuration selects; starts the embedded scripted model
/// when nothing else is configured.
pub async fn model_for(
    config: &ServerConfig,
    shutdown: &CancellationToken,
) -> std::io::Result<ModelConfig> {
    let named = config.model.as_deref().and_then(|m| m.split_once('/'));
    if let Some(url) = &config.model_url {
        let mut m = ModelConfig::scripted(url);
        if let Some((provider, model)) = named {
            m.provider = provider.to_owned();
            m.model = model.to_owned();
        }
        return Ok(m);
    }
    let keys = [
        (
            "anthropic",
            "ANTHROPIC_API_KEY",
            &config.anthropic_api_key,
            opencode_config::DEFAULT_ANTHROPIC_MODEL,
        ),
        (
            "openai",
            "OPENAI_API_KEY",
            &config.openai_api_key,
            opencode_config::DEFAULT_OPENAI_MODEL,
        ),
    ];
    for (provider, var, key, default_model) in keys {
        if let Some(key) = key.as_deref().filter(|k| !k.trim().is_empty()) {
            let model = match named {
                Some((p, m)) if p == provider => m,
                _ => default_model,
            };
            return Ok(ModelConfig::builtin(provider, model, var, key));
        }
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let model = DevModel::start(listener, shutdown.clone())?;
    tracing::warn!(
        url = %model.base_url(),
        "OFFLINE MODE: no ANTHROPIC_API_KEY or OPENAI_API_KEY set; agents use the scripted model, \
         which follows scripts in the prompt (e.g. \"write hello.txt: hi\") and is not an AI"
    );
    Ok(ModelConfig::scripted(&model.base_url()))
}

/// The services the dispatcher works with.
#[derive(Debug, Clone)]
pub struct Services {
    /// samod.
    pub repo: samod::Repo,
    /// Shared documents.
    pub registry: Registry,
    /// Memberships.
    pub members: Members,
    /// Actor bindings.
    pub attribution: Attribution,
    /// Audit log.
    pub audit: AuditLog,
    /// SQLite.
    pub db: Database,
    /// Users (sandbox tokens, commit authors).
    pub users: crate::auth::Users,
    /// The server's base URL as sandboxes reach it.
    pub sandbox_server_url: String,
    /// Prometheus metrics.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The forge: git credentials for clones.
    pub github: crate::github::pulls::Access,
}

/// Start the dispatcher as configured.
pub async fn start(
    config: &ServerConfig,
    services: Services,
    shutdown: CancellationToken,
) -> std::io::Result<(Dispatcher, AgentInfo)> {
    let model = model_for(config, &shutdown).await?;
    let backend: Arc<dyn SandboxBackend> = match config.sandbox {
        SandboxKind::Local => {
            let bin = if config.opencode_bin.is_relative() {
                std::env::current_dir()?.join(&config.opencode_bin)
            } else {
                config.opencode_bin.clone()
            };
            if !bin.exists() {
                tracing::warn!(path = %bin.display(), "OpenCode is not installed there (run `make opencode`); prompts will fail until it is");
            }
            let sidecar = match &config.sidecar_bin {
                Some(p) if p.is_relative() => std::env::current_dir()?.join(p),
                Some(p) => p.clone(),
                None => std::env::current_exe()?
                    .parent()
                    .map(|d| d.join("canopy-sidecar"))
                    .unwrap_or_else(|| "canopy-sidecar".into()),
            };
            if !sidecar.exists() {
                tracing::warn!(path = %sidecar.display(), "the sandbox sidecar is not built there (run `cargo build -p canopy-sidecar` or `make run`); prompts will fail until it is");
            }
            Arc::new(LocalProcesses::new(
                bin,
                sidecar,
                config.sandboxes_dir(),
                model.clone(),
            ))
        }
        SandboxKind::Docker => {
            let server_id = crate::sandbox::docker::server_id(&config.data_dir)
                .map_err(std::io::Error::other)?;
            let d = &config.docker;
            let docker = Arc::new(DockerSandboxes::new(DockerConfig {
                host: d.docker_host.clone(),
                image: d.sandbox_image.clone(),
                network: d.docker_network.clone(),
                memory_mb: d.sandbox_memory_mb,
                cpus: d.sandbox_cpus,
                pids: d.sandbox_pids,
                tmp_mb: d.sandbox_tmp_mb,
                pool_size: usize::try_from(d.warm_pool).unwrap_or(0),
                server_id,
                model: model.clone(),
            }));
            match docker.check().await {
                Ok(()) => {
                    tracing::info!(image = %d.sandbox_image, network = %d.docker_network, "Docker sandboxes ready")
                }
                // The server still serves documents; starts fail (and queued
                // prompts wait) until Docker answers.
                Err(e) => {
                    tracing::error!(error = %e, "Docker sandboxes are unavailable; prompts wait until Docker answers")
                }
            }
            tokio::spawn(docker.clone().keep_pool(shutdown.clone()));
            docker
        }
    };
    let info = AgentInfo {
        model: model.full_name(),
        label: model.label(),
        offline: model.is_scripted() && config.model_url.is_none(),
        sandbox: backend.name().to_owned(),
        isolated: config.sandbox != SandboxKind::Local,
    };
    tracing::info!(model = %info.label, sandbox = %info.sandbox, "agents enabled");
    let deps = Deps {
        repo: services.repo,
        registry: services.registry,
        members: services.members,
        attribution: services.attribution,
        audit: services.audit,
        store: Store::new(services.db),
        backend,
        users: services.users,
        github: services.github,
        clone_depth: config.clone_depth,
        sandbox_server_url: services.sandbox_server_url,
        metrics: services.metrics.clone(),
        token_ttl: std::time::Duration::from_secs(u64::from(config.sandbox_token_hours) * 3600),
        max_prompt_bytes: config.max_prompt_bytes as usize,
        model: Some((model.provider.clone(), model.model.clone())),
        slots: Arc::new(super::slots::Slots::new(
            config.max_sandboxes as usize,
            services.metrics.sandboxes_running.clone(),
            services.metrics.sandbox_starts_waiting.clone(),
        )),
        idle_after: match (config.sandbox_idle_secs, config.sandbox_idle_minutes) {
            (Some(secs), _) => Some(std::time::Duration::from_secs(secs)),
            (None, 0) => None,
            (None, minutes) => Some(std::time::Duration::from_secs(minutes * 60)),
        },
    };
    Ok((Dispatcher::start(deps, shutdown).await, info))
}
