//! The warm pool: started, unbound containers a new session claims.

use super::*;

impl DockerSandboxes {
    /// Claim a warm container for the session and rename it to the
    /// session's name.
    pub(super) async fn bind_warm(
        &self,
        docker: &Docker,
        endpoint: &Endpoint,
        spec: &SandboxSpec,
        name: &str,
    ) -> Result<Sandbox, SandboxError> {
        let status = self.claim(endpoint, spec).await?;
        docker
            .rename_container(
                &endpoint.container,
                RenameContainerOptionsBuilder::new().name(name).build(),
            )
            .await
            .map_err(|e| self.failed(e))?;
        let mut endpoint = endpoint.clone();
        endpoint.container = name.to_owned();
        let sandbox = endpoint.sandbox(&spec.feature_id, &spec.session_id, &status);
        self.running().insert(
            spec.session_id.clone(),
            Running {
                container: name.to_owned(),
            },
        );
        tracing::info!(session_id = %spec.session_id, container = name, "claimed a warm docker sandbox");
        Ok(sandbox)
    }

    pub(super) fn take_warm(&self) -> Option<Endpoint> {
        let taken = self.pool().pop();
        if taken.is_some() {
            self.refill.notify_one();
        }
        taken
    }

    pub(super) async fn discard_pooled(&self, docker: &Docker, endpoint: &Endpoint) {
        let volume = docker
            .inspect_container(&endpoint.container, None)
            .await
            .ok()
            .as_ref()
            .and_then(Self::volume_of);
        let _ = self.discard(docker, &endpoint.container).await;
        if let Some(v) = volume {
            self.remove_volume(docker, &v).await;
        }
    }

    /// Start one warm container; it joins the pool once OpenCode is up.
    pub(super) async fn warm_one(&self) -> Result<(), SandboxError> {
        let _warming = self.warming.read().await;
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let docker = self.docker().await?;
        let n = self
            .next_pool
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}-{n}", &secret()[..8]);
        let name = format!("{}pool-{tag}", self.prefix());
        let volume = format!("canopy-pool-{tag}");
        self.create_volume(&docker, &volume, self.labels("pool", None))
            .await?;
        let endpoint = match self
            .create(
                &docker,
                &name,
                &self.config.image,
                &volume,
                self.labels("pool", None),
            )
            .await
        {
            Ok(e) => e,
            Err(e) => {
                self.remove_volume(&docker, &volume).await;
                return Err(e);
            }
        };
        if let Err(e) = self.wait_up(&docker, &endpoint).await {
            self.discard_pooled(&docker, &endpoint).await;
            return Err(e);
        }
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            self.discard_pooled(&docker, &endpoint).await;
            return Ok(());
        }
        self.pool().push(endpoint);
        Ok(())
    }

    /// Keep [`DockerConfig::pool_size`] warm containers until `shutdown`;
    /// back off while Docker fails.
    pub async fn keep_pool(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            while self.pool().len() < self.config.pool_size && !shutdown.is_cancelled() {
                // Not cancelled halfway: a container made but not yet
                // pooled would be left behind.
                let warmed = self.warm_one().await;
                match warmed {
                    Ok(()) => backoff = Duration::from_secs(1),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot warm a sandbox; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown.cancelled() => return,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
            tokio::select! {
                _ = self.refill.notified() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// How many warm containers wait now.
    pub fn warm_count(&self) -> usize {
        self.pool().len()
    }
}
