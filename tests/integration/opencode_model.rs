//! The scripted model drives the real OpenCode binary (pinned in
//! `sandbox/opencode`): a prompt makes OpenCode call the model, the model
//! asks for the `write` tool, OpenCode writes the file, the model reports.
//! This proves the model speaks what OpenCode's OpenAI-compatible provider
//! expects, before the sandbox and dispatcher build on it.

use std::{path::PathBuf, time::Duration};

use canopy::{
    devmodel::DevModel,
    opencode::{Known, OpenCodeClient, OpenCodeError, Prompt},
    sandbox::{
        Sandbox, SandboxBackend, SandboxSpec, local::LocalProcesses, opencode_config::ModelConfig,
    },
};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// A real `opencode serve` in a local-process sandbox, with the scripted
/// model as its only provider.
struct OpenCode {
    backend: LocalProcesses,
    sandbox: Sandbox,
    _root: tempfile::TempDir,
    base: String,
    password: String,
    workspace: PathBuf,
}

impl OpenCode {
    async fn start(model: &DevModel) -> OpenCode {
        let root = tempfile::tempdir().unwrap();
        let backend = LocalProcesses::new(
            opencode_bin(),
            sidecar_bin(),
            root.path().to_owned(),
            ModelConfig::scripted(&model.base_url()),
        );
        let sandbox = backend
            .start(SandboxSpec {
                session_id: canopy_protocol::ids::new_session_id(),
                feature_id: canopy_protocol::ids::new_feature_id(),
                repo: None,
                sidecar: offline_sidecar(),
            })
            .await
            .unwrap();
        assert!(
            sandbox.workspace.join(".git").is_dir(),
            "the workspace is a git repository"
        );
        OpenCode {
            base: sandbox.base_url.clone(),
            password: sandbox.password.clone(),
            workspace: sandbox.workspace.clone(),
            sandbox,
            backend,
            _root: root,
        }
    }

    fn client(&self) -> OpenCodeClient {
        OpenCodeClient::new(&self.base, &self.password)
    }

    fn dir(&self) -> &str {
        self.workspace.to_str().unwrap()
    }

    async fn stop(self) {
        self.backend.stop(&self.sandbox.session_id).await.unwrap();
        assert!(
            !self.client().healthy(Duration::from_secs(2)).await,
            "OpenCode still answers after stop"
        );
    }
}

async fn model() -> (DevModel, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = CancellationToken::new();
    (DevModel::start(listener, stop.clone()).unwrap(), stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_opencode_writes_a_file_on_the_scripted_models_word() {
    let (model, stop) = model().await;
    let oc = OpenCode::start(&model).await;
    // It refuses anyone without the password.
    let r = reqwest::get(format!("{}/global/health", oc.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        !OpenCodeClient::new(&oc.base, "wrong")
            .healthy(Duration::from_secs(5))
            .await
    );

    let client = reqwest::Client::new();
    let dir = oc.dir().to_owned();
    let session: Value = client
        .post(format!("{}/session?directory={dir}", oc.base))
        .basic_auth("opencode", Some(&oc.password))
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
        client
            .post(format!("{}/session/{sid}/message?directory={dir}", oc.base))
            .basic_auth("opencode", Some(&oc.password))
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
        std::fs::read_to_string(oc.workspace.join("hello.txt")).unwrap(),
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
    oc.stop().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opencode_client_runs_a_prompt_and_follows_its_events() {
    let (model, stop) = model().await;
    let oc = OpenCode::start(&model).await;
    let client = oc.client();
    let dir = oc.dir().to_owned();
    let session = client.create_session(&dir).await.unwrap();
    let mut events = Box::pin(client.events(&dir).await.unwrap());
    client
        .prompt_async(
            &session,
            &dir,
            &Prompt {
                text: "write notes.md: from the Rust client".into(),
                system: Some("You work on the feature \"client test\".".into()),
                model: Some(("canopy".into(), "canopy-scripted".into())),
                ..Prompt::default()
            },
        )
        .await
        .unwrap();
    // Follow the run until the session is idle.
    let mut deltas = String::new();
    let mut tool_completed = false;
    let idle = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(event) = events.next().await {
            let event = event.unwrap();
            match event.known() {
                Known::PartDelta {
                    session_id, delta, ..
                } if session_id == session => {
                    deltas.push_str(delta);
                }
                Known::PartUpdated { session_id, part }
                    if session_id == session
                        && part["type"] == "tool"
                        && part["state"]["status"] == "completed" =>
                {
                    tool_completed = true;
                }
                Known::SessionIdle { session_id } if session_id == session => return true,
                Known::SessionError { error, .. } => panic!("the run failed: {error}"),
                _ => {}
            }
        }
        false
    })
    .await;
    assert_eq!(idle, Ok(true), "no session.idle");
    assert!(tool_completed, "no completed tool part seen");
    assert!(deltas.contains("Wrote notes.md."), "streamed: {deltas:?}");
    assert_eq!(
        std::fs::read_to_string(oc.workspace.join("notes.md")).unwrap(),
        "from the Rust client"
    );
    // Reconcile over REST: the user message and the assistant's answer.
    let messages = client.messages(&session, &dir).await.unwrap();
    assert_eq!(messages[0]["info"]["role"], "user");
    assert!(
        messages
            .iter()
            .any(|m| m["info"]["role"] == "assistant" && m["info"]["finish"] == "stop")
    );
    // A page of the newest: the same last messages, in the same order.
    assert!(messages.len() >= 3, "{messages:?}");
    let recent = client.recent_messages(&session, &dir, 2).await.unwrap();
    let ids = |ms: &[serde_json::Value]| {
        ms.iter()
            .map(|m| m["info"]["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&recent), ids(&messages[messages.len() - 2..]));
    let changed = client.vcs_status(&dir).await.unwrap();
    assert!(
        changed
            .iter()
            .any(|f| f["file"].as_str().is_some_and(|p| p.ends_with("notes.md"))),
        "{changed:?}"
    );
    // Idle sessions are not listed as busy; aborting an idle one is fine.
    let status = client.session_status(&dir).await.unwrap();
    assert!(
        status.get(&session).is_none() || status[&session]["type"] == "idle",
        "{status}"
    );
    client.abort(&session, &dir).await.unwrap();
    // Errors come back as errors.
    let err = client.messages("ses_doesnotexist", &dir).await.unwrap_err();
    assert!(matches!(err, OpenCodeError::Status { .. }), "{err}");
    oc.stop().await;
    stop.cancel();
}

#[tokio::test]
async fn a_local_sandbox_refuses_bad_session_ids() {
    let root = tempfile::tempdir().unwrap();
    let backend = LocalProcesses::new(
        opencode_bin(),
        sidecar_bin(),
        root.path().to_owned(),
        ModelConfig::scripted("http://127.0.0.1:9/v1"),
    );
    for bad in ["../../etc", "ses_", "", "ses_aaaaaaaaaaaaaaaaaaaa/../x"] {
        let err = backend
            .start(SandboxSpec {
                session_id: bad.into(),
                feature_id: "ftr_aaaaaaaaaaaaaaaaaaaa".into(),
                repo: None,
                sidecar: offline_sidecar(),
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a session id"), "{bad}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "nothing was created"
    );
    // Stopping what is not running is fine.
    backend.stop("ses_aaaaaaaaaaaaaaaaaaaa").await.unwrap();
}
