//! `canopy-sidecar`: see the library docs. Exit codes: 0 after SIGTERM or
//! Ctrl-C, 2 for bad configuration, 3 when the server refuses the sandbox.

use clap::Parser;
use tokio_util::sync::CancellationToken;

use canopy_sidecar::{Config, run::RunError};

/// The server refused the sandbox token; restarting will not help.
const EXIT_REFUSED: i32 = 3;
/// Bad configuration or local setup.
const EXIT_SETUP: i32 = 2;

fn main() {
    // git's credential helper: this binary in a second mode.
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(canopy_sidecar::credential::HELPER_MODE) {
        std::process::exit(canopy_sidecar::credential::helper_main(
            args.next().as_deref(),
        ));
    }
    serve();
}

#[tokio::main]
async fn serve() {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CANOPY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping");
            shutdown.cancel();
        });
    }
    tracing::info!(
        feature_id = config.feature_id.as_deref().unwrap_or(""),
        session_id = config.session_id.as_deref().unwrap_or(""),
        "canopy-sidecar starting"
    );
    match canopy_sidecar::run::run(config, shutdown).await {
        Ok(()) => {}
        Err(e) => {
            let code = match e {
                RunError::Refused(_) => EXIT_REFUSED,
                RunError::Setup(_) => EXIT_SETUP,
            };
            tracing::error!("{e}");
            eprintln!("canopy-sidecar: {e}");
            std::process::exit(code);
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
