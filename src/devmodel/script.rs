//! What the scripted model answers: a pure function of the request, so the
//! whole agent loop is deterministic and runs offline.
//!
//! The last user message is the script (its first line decides):
//!
//! | prompt | first answer | after the tool result |
//! |---|---|---|
//! | `write <path>: <content>` | a `write` tool call (`filePath`, `content`) | `Wrote <path>.` |
//! | `run: <command>` | a `bash` tool call (`command`, `description`) | `Ran it:` + the output's first line |
//! | `tool <name> <json args>` | a call of tool `<name>` (an MCP tool, say) | `Called <name>:` + the result's first line |
//! | `slow <n>: <text>` | `<text>` streamed as `n` chunks, 200 ms apart | |
//! | `fail: <message>` | an HTTP 500 provider error with `<message>` | |
//! | anything else | `You said: <text>` | |
//!
//! A request without tools whose system text asks for a title (OpenCode
//! names its sessions this way) gets a short plain-text title.

use std::time::Duration;

use serde_json::{Value, json};

/// Delay between chunks of a `slow` answer.
pub const SLOW_CHUNK_DELAY: Duration = Duration::from_millis(200);

/// Largest `slow` chunk count honoured.
const MAX_SLOW_CHUNKS: usize = 10_000;

/// The model's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Text, streamed in `chunks`, `delay` apart.
    Text {
        /// The pieces, in order (they concatenate to the answer).
        chunks: Vec<String>,
        /// Pause before each chunk after the first.
        delay: Duration,
    },
    /// One tool call.
    ToolCall {
        /// Tool name.
        name: String,
        /// Arguments (a JSON object).
        arguments: Value,
    },
    /// A provider error.
    Error {
        /// HTTP status.
        status: u16,
        /// The message.
        message: String,
    },
}

impl Reply {
    fn text(s: impl Into<String>) -> Reply {
        Reply::Text {
            chunks: split_words(&s.into()),
            delay: Duration::ZERO,
        }
    }
}

/// Split text into word-sized chunks that concatenate back to it.
fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in s.chars() {
        current.push(c);
        if c == ' ' {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

/// The text of a message's `content` (a string, or an array of parts).
fn content_text(message: &Value) -> String {
    match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// Decide the answer to a chat-completions request body.
pub fn decide(request: &Value) -> Reply {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let has_tools = request["tools"].as_array().is_some_and(|t| !t.is_empty());
    let system: String = messages
        .iter()
        .filter(|m| m["role"] == "system")
        .map(content_text)
        .collect::<Vec<_>>()
        .join("\n");
    let Some(last_user) = messages.iter().rposition(|m| m["role"] == "user") else {
        return Reply::text("There is no user message to answer.");
    };
    let prompt = content_text(&messages[last_user]);
    if !has_tools && system.to_lowercase().contains("title") {
        let title: String = first_line(&prompt).chars().take(50).collect();
        return Reply::text(if title.is_empty() {
            "Untitled session".to_owned()
        } else {
            title
        });
    }
    // After the tool ran: the tool's result follows the user message.
    if let Some(result) = messages[last_user + 1..]
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
    {
        let output = content_text(result);
        let line = first_line(&output);
        let script = first_line(&prompt);
        return Reply::text(if let Some(rest) = script.strip_prefix("write ") {
            let path = rest.split_once(':').map_or(rest, |(p, _)| p).trim();
            format!("Wrote {path}.")
        } else if script.starts_with("run:") {
            format!("Ran it: {line}")
        } else if let Some(rest) = script.strip_prefix("tool ") {
            let name = rest.split_whitespace().next().unwrap_or("the tool");
            format!("Called {name}: {line}")
        } else {
            format!("Done: {line}")
        });
    }
    let script = prompt.trim_start();
    if let Some(rest) = script.strip_prefix("write ") {
        let Some((path, content)) = rest.split_once(':') else {
            return Reply::text("Say `write <path>: <content>`.");
        };
        return Reply::ToolCall {
            name: "write".into(),
            arguments: json!({
                "filePath": path.trim(),
                "content": content.strip_prefix(' ').unwrap_or(content),
            }),
        };
    }
    if let Some(command) = script.strip_prefix("run:") {
        return Reply::ToolCall {
            name: "bash".into(),
            arguments: json!({
                "command": command.trim(),
                "description": "Run the requested command",
            }),
        };
    }
    if let Some(rest) = script.strip_prefix("tool ") {
        let (name, args) = rest
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((rest.trim(), "{}"));
        let arguments = serde_json::from_str::<Value>(args.trim()).unwrap_or_else(|_| json!({}));
        return Reply::ToolCall {
            name: name.to_owned(),
            arguments,
        };
    }
    if let Some(rest) = script.strip_prefix("slow ") {
        let (n, text) = rest.split_once(':').unwrap_or((rest, " streaming slowly"));
        let n = n
            .trim()
            .parse::<usize>()
            .unwrap_or(10)
            .clamp(1, MAX_SLOW_CHUNKS);
        let text = text.trim();
        return Reply::Text {
            chunks: (0..n)
                .map(|i| {
                    if i == 0 {
                        text.to_owned()
                    } else {
                        format!(" {i}")
                    }
                })
                .collect(),
            delay: SLOW_CHUNK_DELAY,
        };
    }
    if let Some(message) = script.strip_prefix("fail:") {
        return Reply::Error {
            status: 500,
            message: message.trim().to_owned(),
        };
    }
    Reply::text(format!("You said: {}", first_line(script)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(messages: Value, tools: bool) -> Value {
        json!({
            "model": "canopy-scripted",
            "messages": messages,
            "tools": if tools { json!([{"type":"function","function":{"name":"write"}}]) } else { json!([]) },
        })
    }

    #[test]
    fn write_calls_the_tool_then_reports() {
        let first = decide(&req(
            json!([{"role":"user","content":"write hello.txt: hi there"}]),
            true,
        ));
        assert_eq!(
            first,
            Reply::ToolCall {
                name: "write".into(),
                arguments: json!({"filePath": "hello.txt", "content": "hi there"})
            }
        );
        let second = decide(&req(
            json!([
                {"role":"user","content":[{"type":"text","text":"write hello.txt: hi there"}]},
                {"role":"assistant","content":null,"tool_calls":[]},
                {"role":"tool","content":"Wrote file successfully."}
            ]),
            true,
        ));
        let Reply::Text { chunks, .. } = second else {
            panic!()
        };
        assert_eq!(chunks.concat(), "Wrote hello.txt.");
    }

    #[test]
    fn the_other_scripts() {
        assert!(matches!(
            decide(&req(json!([{"role":"user","content":"run: ls -la"}]), true)),
            Reply::ToolCall { name, arguments } if name == "bash" && arguments["command"] == "ls -la"
        ));
        assert!(matches!(
            decide(&req(json!([{"role":"user","content":"tool canopy_add_learning {\"text\":\"x\"}"}]), true)),
            Reply::ToolCall { name, arguments } if name == "canopy_add_learning" && arguments["text"] == "x"
        ));
        let Reply::Text { chunks, delay } = decide(&req(
            json!([{"role":"user","content":"slow 5: thinking"}]),
            true,
        )) else {
            panic!()
        };
        assert_eq!(chunks.len(), 5);
        assert_eq!(delay, SLOW_CHUNK_DELAY);
        assert_eq!(
            decide(&req(
                json!([{"role":"user","content":"fail: quota exceeded"}]),
                true
            )),
            Reply::Error {
                status: 500,
                message: "quota exceeded".into()
            }
        );
        let Reply::Text { chunks, .. } = decide(&req(
            json!([{"role":"system","content":"Generate a title for this conversation"},{"role":"user","content":"write a.txt: b"}]),
            false,
        )) else {
            panic!()
        };
        assert_eq!(chunks.concat(), "write a.txt: b");
        let Reply::Text { chunks, .. } =
            decide(&req(json!([{"role":"user","content":"hello"}]), true))
        else {
            panic!()
        };
        assert_eq!(chunks.concat(), "You said: hello");
    }

    #[test]
    fn odd_requests_still_get_an_answer() {
        for body in [
            json!({}),
            json!({"messages": "nope"}),
            json!({"messages": [{"role": "user"}]}),
        ] {
            assert!(matches!(decide(&body), Reply::Text { .. }), "{body}");
        }
        let Reply::Text { chunks, .. } = decide(&req(
            json!([{"role":"user","content":"slow 999999999: x"}]),
            true,
        )) else {
            panic!()
        };
        assert_eq!(chunks.len(), MAX_SLOW_CHUNKS);
    }
}
