//! The scripted model drives the real OpenCode binary (pinned in
//! `sandbox/opencode`): a prompt makes OpenCode call the model, the model
//! asks for the `write` tool, OpenCode writes the file, the model reports.
//! This proves the model speaks what OpenCode's OpenAI-compatible provider
//! expects, before the sandbox and dispatcher build on it.

use std::{path::PathBuf, time::Duration};

use canopy::devmodel::DevModel;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::*;

fn opencode_bin() -> PathBuf {
    let bin = repo_root().join("sandbox/opencode/node_modules/.bin/opencode");
    assert!(
        bin.exists(),
        "OpenCode is not installed: run `make opencode` (make test does)"
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_opencode_writes_a_file_on_the_scripted_models_word() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = CancellationToken::new();
    let model = DevModel::start(listener, stop.clone()).unwrap();

    let home = tempfile::tempdir().unwrap();
    let workspace = home.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    // No "$schema" key: with it, OpenCode 1.18.33 tries to fetch the schema
    // and its routes hang without network.
    let config = json!({
        "autoupdate": false,
        "share": "disabled",
        "model": "canopy/canopy-scripted",
        "small_model": "canopy/canopy-scripted",
        "enabled_providers": ["canopy"],
        "provider": {"canopy": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Canopy scripted model (offline)",
            "options": {"baseURL": model.base_url(), "apiKey": "offline"},
            "models": {"canopy-scripted": {"name": "Scripted", "tool_call": true,
                        "limit": {"context": 100000, "output": 4096}}}
        }},
        "permission": {"edit": "allow", "bash": "allow", "question": "deny", "webfetch": "deny"},
        "lsp": false,
        "formatter": false,
        "snapshot": false
    });
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let password = format!("pw-{:016x}", rand::random::<u64>());
    let mut child = tokio::process::Command::new(opencode_bin())
        .args([
            "serve",
            "--hostname",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .current_dir(&workspace)
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env("XDG_STATE_HOME", home.path().join("state"))
        .env("HOME", home.path())
        .env("OPENCODE_CONFIG_CONTENT", config.to_string())
        .env("OPENCODE_SERVER_PASSWORD", &password)
        .env("OPENCODE_DISABLE_AUTOUPDATE", "1")
        .env("OPENCODE_DISABLE_SHARE", "1")
        .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
        .env("OPENCODE_DISABLE_LSP_DOWNLOAD", "1")
        .env("OPENCODE_DISABLE_DEFAULT_PLUGINS", "1")
        .env("OPENCODE_DISABLE_PROJECT_CONFIG", "1")
        .stdout(std::fs::File::create(home.path().join("opencode.out")).unwrap())
        // A file, not a pipe nobody reads (a full pipe would stall it).
        .stderr(std::fs::File::create(home.path().join("opencode.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let get = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .basic_auth("opencode", Some(&password))
    };
    let post = |path: &str| {
        client
            .post(format!("{base}{path}"))
            .basic_auth("opencode", Some(&password))
    };

    // Up, and it refuses anyone without the password.
    let log = home.path().join("opencode.log");
    let up = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            if let Ok(r) = get("/global/health")
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        up.is_ok(),
        "opencode did not start:\n{}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        std::fs::read_to_string(home.path().join("opencode.out")).unwrap_or_default()
    );
    let r = client
        .get(format!("{base}/global/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let dir = workspace.to_str().unwrap();
    let session: Value = post(&format!("/session?directory={dir}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = session["id"].as_str().expect("a session id").to_owned();
    let answer = tokio::time::timeout(
        Duration::from_secs(120),
        post(&format!("/session/{sid}/message?directory={dir}"))
            .json(&json!({
                "model": {"providerID": "canopy", "modelID": "canopy-scripted"},
                "parts": [{"type": "text", "text": "write hello.txt: hi from the scripted model"}]
            }))
            .send(),
    )
    .await
    .expect("the agent loop did not finish")
    .unwrap();
    let status = answer.status();
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer["info"]["error"].is_null(), "{answer}");
    assert_eq!(
        std::fs::read_to_string(workspace.join("hello.txt")).unwrap(),
        "hi from the scripted model"
    );
    let text: String = answer["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "text")
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert!(text.contains("Wrote hello.txt."), "{answer}");
    assert!(model.request_count() >= 2, "the model was not asked twice");

    child.start_kill().unwrap();
    let _ = child.wait().await;
    stop.cancel();
}
