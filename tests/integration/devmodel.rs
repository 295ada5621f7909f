//! The scripted model over real HTTP: what OpenCode's OpenAI-compatible
//! provider sends, and what it gets back (streaming SSE and plain JSON), and
//! bad requests.

use canopy::devmodel::DevModel;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::*;

async fn start() -> (DevModel, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = CancellationToken::new();
    (DevModel::start(listener, stop.clone()).unwrap(), stop)
}

/// POST a streaming request; return the decoded `data:` payloads.
async fn stream(base: &str, body: Value) -> Vec<Value> {
    let resp = http_anon()
        .post(format!("{base}/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = resp.text().await.unwrap();
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "write", "parameters": {}}},
           {"type": "function", "function": {"name": "bash", "parameters": {}}}])
}

#[tokio::test]
async fn the_scripted_model_speaks_openai_chat_completions() {
    let (model, stop) = start().await;
    let base = model.base_url();
    let mut seen = model.subscribe();

    let models: Value = http_anon()
        .get(format!("{base}/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], canopy::devmodel::MODEL_ID);

    // A write: one tool call, finish_reason tool_calls, usage.
    let chunks = stream(
        &base,
        json!({"model": "canopy-scripted", "stream": true, "tools": tools(),
               "messages": [{"role": "system", "content": "You are an agent."},
                            {"role": "user", "content": [{"type": "text", "text": "write hello.txt: hi"}]}]}),
    )
    .await;
    let call = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "write");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"filePath": "hello.txt", "content": "hi"}));
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let got = seen.recv().await.unwrap();
    assert!(got.with_tools);

    // The tool ran: the final text, streamed.
    let chunks = stream(
        &base,
        json!({"model": "canopy-scripted", "stream": true, "tools": tools(),
               "messages": [{"role": "user", "content": "write hello.txt: hi"},
                            {"role": "assistant", "content": null, "tool_calls": [call]},
                            {"role": "tool", "tool_call_id": call["id"], "content": "Wrote file successfully."}]}),
    )
    .await;
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Wrote hello.txt.");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // The title request (no tools), not streamed.
    let title: Value = http_anon()
        .post(format!("{base}/chat/completions"))
        .json(&json!({"model": "canopy-scripted",
                      "messages": [{"role": "system", "content": "Generate a short title"},
                                   {"role": "user", "content": "write hello.txt: hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        title["choices"][0]["message"]["content"],
        "write hello.txt: hi"
    );

    // A provider error.
    let r = http_anon()
        .post(format!("{base}/chat/completions"))
        .json(&json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "fail: out of credits"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["message"], "out of credits");

    // Bad requests: clear OpenAI-style errors, and the model keeps serving.
    for bad in ["{", "[]", "{\"messages\": 5}"] {
        let r = http_anon()
            .post(format!("{base}/chat/completions"))
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    let r = http_anon()
        .post(format!("{base}/chat/completions"))
        .header("content-type", "application/json")
        .body(vec![b' '; 40 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(model.request_count() >= 4);
    stop.cancel();
}

#[tokio::test]
async fn a_slow_answer_streams_over_time() {
    let (model, stop) = start().await;
    let started = std::time::Instant::now();
    let chunks = stream(
        &model.base_url(),
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "slow 3: thinking"}]}),
    )
    .await;
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "thinking 1 2");
    // Two pauses between three chunks: it really was streamed slowly.
    assert!(started.elapsed() >= 2 * canopy::devmodel::script::SLOW_CHUNK_DELAY);
    stop.cancel();
}
