//! Operations: health, readiness, metrics, signals, logs and the command line.

use std::process::Stdio;

use serde_json::Value;

use crate::common::*;

#[tokio::test]
async fn health_ready_metrics_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let base = server.url().to_owned();
    let client = http();

    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["storage"]["writable"], true);

    let (_, doc) = create_feature(&base, "metrics").await;
    let peer = Peer::connect(&server.sync_url(), "metrics").await;
    let _handle = peer.find(&doc).await;

    let text = metrics(&base).await;
    for needle in [
        "canopy_ws_connections 1",
        "canopy_documents_loaded 1",
        "canopy_sync_messages_total{direction=\"in\",kind=\"join\"} 1",
        "canopy_sync_messages_total{direction=\"out\",kind=\"sync\"}",
        "canopy_sync_bytes_total{direction=\"in\"}",
        "canopy_storage_seconds_bucket{",
        "canopy_storage_writable 1",
        "canopy_http_requests_total{method=\"POST\",route=\"/api/features\",status=\"201\"} 1",
        "canopy_durability_wait_seconds_count",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }

    let index: Value = client
        .get(&base)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index["sync"], server.sync_url());
    peer.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let proc = ServerProcess::start(dir.path(), &[]).await;
    let (feature_id, _) = create_feature(&proc.url, "survives SIGTERM").await;
    let status = proc.terminate().await;
    assert!(status.success(), "exit status {status}");
    // The WAL was checkpointed into the main file at shutdown.
    let wal = dir.path().join("canopy.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "WAL not checkpointed at shutdown"
    );
    let proc = ServerProcess::start(dir.path(), &[]).await;
    let snap = snapshot(&proc.url, &feature_id).await;
    assert_eq!(snap["document"]["title"], "survives SIGTERM");
    proc.terminate().await;
}

#[tokio::test]
async fn json_logs_and_command_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    // --log-format json writes one JSON object per line to stderr.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let first = within("a log line", lines.next_line())
        .await
        .unwrap()
        .unwrap();
    let parsed: Value = serde_json::from_str(&first)
        .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {first}"));
    assert!(parsed["level"].is_string() && parsed["fields"].is_object());
    child.start_kill().unwrap();
    let _ = child.wait().await;

    // Malformed flags and env vars fail fast with a clear message.
    for (args, env, needle) in [
        (
            vec!["serve", "--listen", "not-an-address"],
            None,
            "--listen",
        ),
        (
            vec!["serve", "--max-message-bytes", "5"],
            None,
            "--max-message-bytes",
        ),
        (
            vec!["serve", "--sqlite-synchronous", "sometimes"],
            None,
            "--sqlite-synchronous",
        ),
        (
            vec!["serve"],
            Some(("CANOPY_SYNC_RATE_LIMIT", "lots")),
            "--sync-rate-limit",
        ),
        (vec!["frobnicate"], None, "unrecognized subcommand"),
    ] {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_canopy"));
        cmd.args(&args).arg("--data-dir").arg(dir.path());
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = within("canopy exits", cmd.output()).await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }

    // A port that is taken is reported, not panicked on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
}
