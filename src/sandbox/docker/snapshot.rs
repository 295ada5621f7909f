//! Snapshots of idle sandboxes: `/sandbox` committed to an image, restored
//! by the next start.

use super::*;

impl DockerSandboxes {
    pub(super) fn snapshot_image(session_id: &str) -> String {
        format!("{SNAPSHOT_REPO}:{session_id}")
    }

    /// Snapshot the session's `/sandbox` into an image, then remove the
    /// container and its volume.
    pub(super) async fn snapshot_and_stop(&self, session_id: &str) -> Result<(), SandboxError> {
        let docker = self.docker().await?;
        self.running().remove(session_id);
        let Some((name, info)) = self.find_session_container(&docker, session_id).await? else {
            return Ok(());
        };
        let Some(volume) = Self::volume_of(&info) else {
            return Err(SandboxError::Io(format!(
                "container {name} has no sandbox volume"
            )));
        };
        let labels = info
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let feature_id = match self.parse_name(&name) {
            Some(Named::Session { feature_id, .. }) => feature_id,
            _ => labels.get(LABEL_FEATURE).cloned().unwrap_or_default(),
        };
        self.stop_container(&docker, &name).await;
        // The copy runs in a throwaway container of the sandbox image: the
        // volume never leaves Docker, and the committed layer holds exactly
        // /sandbox.
        let helper = format!("{}snap-{}", self.prefix(), session_id);
        self.discard(&docker, &helper).await?;
        let body = ContainerCreateBody {
            image: Some(self.config.image.clone()),
            entrypoint: Some(vec![
                "cp".into(),
                "-a".into(),
                "/from/.".into(),
                "/sandbox/".into(),
            ]),
            cmd: Some(Vec::new()),
            labels: Some(self.labels("snapshot", Some((&feature_id, session_id)))),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges:true".into()]),
                mounts: Some(vec![Mount {
                    target: Some("/from".into()),
                    source: Some(volume.clone()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&helper).build()),
                body,
            )
            .await
            .map_err(|e| self.failed(e))?;
        let copied = async {
            docker
                .start_container(&helper, None)
                .await
                .map_err(|e| self.failed(e))?;
            let mut wait = docker.wait_container(
                &helper,
                Some(
                    WaitContainerOptionsBuilder::new()
                        .condition("not-running")
                        .build(),
                ),
            );
            match wait.next().await {
                Some(Ok(r)) if r.status_code == 0 => {}
                Some(Ok(r)) => {
                    return Err(SandboxError::Io(format!(
                        "copying the workspace for the snapshot failed (exit {}): {}",
                        r.status_code,
                        self.tail_logs(&docker, &helper, 10).await
                    )));
                }
                // The wait stream reports a non-zero exit as an error too.
                Some(Err(e)) => {
                    return Err(SandboxError::Io(format!(
                        "copying the workspace for the snapshot failed: {e}: {}",
                        self.tail_logs(&docker, &helper, 10).await
                    )));
                }
                None => return Err(SandboxError::Io("lost the snapshot copy".into())),
            }
            docker
                .commit_container(
                    CommitContainerOptionsBuilder::new()
                        .container(&helper)
                        .repo(SNAPSHOT_REPO)
                        .tag(session_id)
                        .comment("canopy: an idle session's /sandbox")
                        .pause(false)
                        .changes("ENTRYPOINT [\"/usr/local/bin/canopy-sidecar\"]\nCMD []")
                        .build(),
                    bollard::models::ContainerConfig {
                        labels: Some(self.labels("snapshot", Some((&feature_id, session_id)))),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| self.failed(e))?;
            Ok(())
        }
        .await;
        let _ = self.discard(&docker, &helper).await;
        copied?;
        self.discard(&docker, &name).await?;
        self.remove_volume(&docker, &volume).await;
        tracing::info!(session_id, image = %Self::snapshot_image(session_id), "idle sandbox snapshotted and stopped");
        Ok(())
    }
}
