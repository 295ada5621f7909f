//! Making a sandbox container: least privilege, the sidecar's environment,
//! ports on loopback; and reaching one again from its configuration.

use super::*;

impl DockerSandboxes {
    /// Create and start an unbound container from `image` with `volume` at
    /// `/sandbox`; returns once it runs (not yet healthy).
    pub(super) async fn create(
        &self,
        docker: &Docker,
        name: &str,
        image: &str,
        volume: &str,
        labels: HashMap<String, String>,
    ) -> Result<Endpoint, SandboxError> {
        let host = self.host_network();
        let (opencode_port, sidecar_port) = if host {
            (free_port()?, free_port()?)
        } else {
            (INNER_OPENCODE_PORT, INNER_SIDECAR_PORT)
        };
        let password = secret();
        let control_secret = secret();
        let bind = if host { "127.0.0.1" } else { "0.0.0.0" };
        let mut env = vec![
            format!("CANOPY_OPENCODE_PORT={opencode_port}"),
            format!("CANOPY_OPENCODE_HOSTNAME={bind}"),
            format!("CANOPY_OPENCODE_PASSWORD={password}"),
            format!("CANOPY_SIDECAR_LISTEN={bind}:{sidecar_port}"),
            format!("CANOPY_SIDECAR_SECRET={control_secret}"),
            "CANOPY_PREPARE_WORKSPACE=true".to_owned(),
            format!(
                "CANOPY_LOG={}",
                std::env::var("CANOPY_SIDECAR_LOG").unwrap_or_else(|_| "info".into())
            ),
            format!(
                "OPENCODE_CONFIG_CONTENT={}",
                opencode_config::opencode_config(&self.config.model)
            ),
        ];
        env.extend(
            opencode_config::QUIET_ENV
                .iter()
                .map(|(k, v)| format!("{k}={v}")),
        );
        // The provider's key, when a real provider is configured.
        env.extend(
            self.config
                .model
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}")),
        );

        let mut host_config = HostConfig {
            network_mode: Some(self.config.network.clone()),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_owned(),
                format!("rw,noexec,nosuid,size={}m", self.config.tmp_mb),
            )])),
            mounts: Some(vec![Mount {
                target: Some(SANDBOX_DIR.into()),
                source: Some(volume.to_owned()),
                typ: Some(MountType::VOLUME),
                read_only: Some(false),
                ..Default::default()
            }]),
            memory: Some(
                i64::try_from(self.config.memory_mb.saturating_mul(1 << 20)).unwrap_or(i64::MAX),
            ),
            // No swap beyond the memory limit.
            memory_swap: Some(
                i64::try_from(self.config.memory_mb.saturating_mul(1 << 20)).unwrap_or(i64::MAX),
            ),
            nano_cpus: Some((self.config.cpus * 1e9) as i64),
            pids_limit: Some(self.config.pids),
            // Reaps the agent's orphans (its dev servers, their children).
            init: Some(true),
            ..Default::default()
        };
        let mut exposed = None;
        if !host {
            let publish = |port: u16| {
                (
                    format!("{port}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )
            };
            host_config.port_bindings = Some(HashMap::from([
                publish(opencode_port),
                publish(sidecar_port),
            ]));
            host_config.extra_hosts = Some(vec!["host.docker.internal:host-gateway".into()]);
            exposed = Some(vec![
                format!("{opencode_port}/tcp"),
                format!("{sidecar_port}/tcp"),
            ]);
        }
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            env: Some(env),
            labels: Some(labels),
            host_config: Some(host_config),
            exposed_ports: exposed,
            stop_timeout: Some(i64::from(STOP_GRACE_SECS)),
            ..Default::default()
        };
        docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(name).build()),
                body,
            )
            .await
            .map_err(|e| {
                if not_found(&e) {
                    SandboxError::Start(format!(
                        "the sandbox image {image} does not exist; build it with \
                         `canopy sandbox build-image` (`make sandbox-image`)"
                    ))
                } else {
                    self.failed(e)
                }
            })?;
        if let Err(e) = docker.start_container(name, None).await {
            let _ = self.discard(docker, name).await;
            return Err(self.failed(e));
        }
        let mut endpoint = Endpoint {
            container: name.to_owned(),
            opencode_port,
            sidecar_port,
            password,
            control_secret,
        };
        if !host {
            let info = docker
                .inspect_container(name, None)
                .await
                .map_err(|e| self.failed(e))?;
            endpoint.opencode_port = published(&info, opencode_port)
                .ok_or_else(|| SandboxError::Start("OpenCode's port was not published".into()))?;
            endpoint.sidecar_port = published(&info, sidecar_port).ok_or_else(|| {
                SandboxError::Start("the sidecar's port was not published".into())
            })?;
        }
        Ok(endpoint)
    }

    /// Wait until the container's sidecar says OpenCode is up.
    pub(super) async fn wait_up(
        &self,
        docker: &Docker,
        endpoint: &Endpoint,
    ) -> Result<(), SandboxError> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            match sidecar_status(&endpoint.control_url(), &endpoint.control_secret).await {
                Ok(status) if status.opencode.phase == "up" => return Ok(()),
                Ok(status) if status.opencode.phase == "failed" => {
                    return Err(SandboxError::Start(format!(
                        "OpenCode does not start in the container: {}; its log ends:\n{}",
                        status.opencode.last_exit.unwrap_or_default(),
                        self.tail_logs(docker, &endpoint.container, 20).await
                    )));
                }
                _ => {}
            }
            let running = docker
                .inspect_container(&endpoint.container, None)
                .await
                .map_err(|e| self.failed(e))?
                .state
                .and_then(|s| s.running)
                .unwrap_or(false);
            if !running {
                return Err(SandboxError::Start(format!(
                    "the container exited while starting; its log ends:\n{}",
                    self.tail_logs(docker, &endpoint.container, 20).await
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SandboxError::Start(format!(
                    "the sandbox did not become healthy within {START_TIMEOUT:?}; its log ends:\n{}",
                    self.tail_logs(docker, &endpoint.container, 20).await
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The host port Docker published for a container port.
pub(super) fn published(info: &ContainerInspectResponse, port: u16) -> Option<u16> {
    info.network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .get(&format!("{port}/tcp"))?
        .as_ref()?
        .iter()
        .find_map(|b| b.host_port.as_ref()?.parse().ok())
}

/// Where a container's OpenCode and sidecar listen and their secrets, from
/// its configuration (for adoption by a later server).
pub(super) fn endpoint_of(
    name: &str,
    info: &ContainerInspectResponse,
    host: bool,
) -> Option<Endpoint> {
    let env: HashMap<&str, &str> = info
        .config
        .as_ref()?
        .env
        .as_ref()?
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let inner_oc: u16 = env.get("CANOPY_OPENCODE_PORT")?.parse().ok()?;
    let inner_sc: u16 = env
        .get("CANOPY_SIDECAR_LISTEN")?
        .rsplit_once(':')?
        .1
        .parse()
        .ok()?;
    let (opencode_port, sidecar_port) = if host {
        (inner_oc, inner_sc)
    } else {
        (published(info, inner_oc)?, published(info, inner_sc)?)
    };
    Some(Endpoint {
        container: name.to_owned(),
        opencode_port,
        sidecar_port,
        password: (*env.get("CANOPY_OPENCODE_PASSWORD")?).to_owned(),
        control_secret: (*env.get("CANOPY_SIDECAR_SECRET")?).to_owned(),
    })
}
