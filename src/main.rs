//! The `canopy` binary: parse the configuration, set up logging, bind the
//! listener and hand it to the server with a shutdown token.

use anyhow::Context;
use canopy::config::{Cli, Command, SandboxCommand, ServerConfig};
use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    canopy::telemetry::init(cli.log_format, &cli.log).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(config) => serve(*config).await,
            Command::DevModel { listen } => dev_model(listen).await,
            Command::User { data, command } => {
                print(canopy::admin::user(&data.data_dir, command).await?);
                Ok(())
            }
            Command::Token { data, command } => {
                print(canopy::admin::token(&data.data_dir, command).await?);
                Ok(())
            }
            Command::Sandbox { command } => sandbox(command).await,
        }
    })
}

#[allow(clippy::print_stdout)]
fn print(s: String) {
    print!("{s}");
}

async fn sandbox(command: SandboxCommand) -> anyhow::Result<()> {
    use canopy::sandbox::image;
    match command {
        SandboxCommand::BuildImage {
            tag,
            sidecar_bin,
            opencode_bin,
            docker_host,
        } => {
            let sidecar_bin = sidecar_bin.unwrap_or_else(image::default_sidecar_bin);
            let spec = image::BuildSpec::new(tag, sidecar_bin, opencode_bin);
            // A missing input is reported before Docker is asked anything.
            spec.check_inputs()?;
            let docker = canopy::sandbox::docker::connect(docker_host.as_deref()).await?;
            let started = std::time::Instant::now();
            let id =
                image::build_image(&docker, &spec, &mut |line: &str| eprintln!("{line}")).await?;
            eprintln!("Built {} in {:.1?}", spec.tag, started.elapsed());
            print(format!("{} {id}\n", spec.tag));
            Ok(())
        }
    }
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));
    let server = canopy::server::start(config, listener, shutdown)
        .await
        .context("cannot start the server")?;
    #[allow(clippy::print_stdout)]
    {
        println!("Canopy listening on {}", server.url());
        println!("  API:    {}/api/features", server.url());
        println!("  sync:   {}", server.sync_url());
        println!("  health: {}/readyz", server.url());
        if let Some(first) = server.first_user() {
            println!();
            println!(
                "First start: created user {:?}. Its API token (shown once, keep it secret):",
                first.user.handle
            );
            println!("  {}", first.token);
            println!(
                "  try:   curl -H 'Authorization: Bearer {}' {}/api/me",
                first.token,
                server.url()
            );
            // A fragment never reaches the server or its logs; the web
            // client reads the token from it and forgets the URL.
            println!("  login: {}/#token={}", server.url(), first.token);
            println!("More users: canopy user add <handle> --name … --email …");
        }
    }
    server.wait().await.context("server stopped with an error")
}

async fn dev_model(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));
    let model = canopy::devmodel::DevModel::start(listener, shutdown.clone())
        .context("cannot start the scripted model")?;
    print(format!(
        "Scripted model (offline, deterministic; no API key) listening on {}\n",
        model.base_url()
    ));
    shutdown.cancelled().await;
    Ok(())
}

/// Cancel on SIGINT or SIGTERM (Docker and systemd send SIGTERM).
async fn on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
    shutdown.cancel();
}
