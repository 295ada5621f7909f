//! Finding what Docker holds for this server (by name) and adopting it at
//! server start.

use super::{container::endpoint_of, *};

impl DockerSandboxes {
    pub(super) async fn adopt(&self, docker: &Docker, name: &str, named: Named) -> Option<Sandbox> {
        let info = docker.inspect_container(name, None).await.ok()?;
        let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let endpoint = endpoint_of(name, &info, self.host_network());
        match (named, running, endpoint) {
            (
                Named::Session {
                    feature_id,
                    session_id,
                },
                true,
                Some(endpoint),
            ) => {
                let status = tokio::time::timeout(ADOPT_TIMEOUT, async {
                    loop {
                        if let Ok(s) =
                            sidecar_status(&endpoint.control_url(), &endpoint.control_secret).await
                        {
                            return s;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                })
                .await;
                match status {
                    Ok(status) if status.session_id == session_id => {
                        let sandbox = endpoint.sandbox(&feature_id, &session_id, &status);
                        self.running().insert(
                            session_id.clone(),
                            Running {
                                container: name.to_owned(),
                            },
                        );
                        tracing::info!(%session_id, container = name, "adopted a running docker sandbox");
                        Some(sandbox)
                    }
                    _ => {
                        tracing::info!(%session_id, container = name, "stopping a left-over sandbox that does not answer");
                        self.stop_container(docker, name).await;
                        None
                    }
                }
            }
            (Named::Session { .. }, _, _) => None,
            (Named::Pool, true, Some(endpoint)) => {
                match sidecar_status(&endpoint.control_url(), &endpoint.control_secret).await {
                    Ok(status) if status.session_id.is_empty() => {
                        self.pool().push(endpoint);
                        None
                    }
                    _ => {
                        self.discard_pooled(docker, &endpoint).await;
                        None
                    }
                }
            }
            (Named::Pool, _, _) => {
                let volume = Self::volume_of(&info);
                let _ = self.discard(docker, name).await;
                if let Some(v) = volume {
                    self.remove_volume(docker, &v).await;
                }
                None
            }
            (Named::Snapshot, _, _) => {
                // An interrupted snapshot: the session's volume is intact.
                let _ = self.discard(docker, name).await;
                None
            }
        }
    }

    pub(super) async fn ours(&self, docker: &Docker) -> Result<Vec<(String, Named)>, SandboxError> {
        let list = docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&HashMap::from([(
                        "label",
                        vec![format!("{LABEL_SERVER}={}", self.config.server_id)],
                    )]))
                    .build(),
            ))
            .await
            .map_err(|e| self.failed(e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_owned();
                let named = self.parse_name(&name)?;
                Some((name, named))
            })
            .collect())
    }
}
