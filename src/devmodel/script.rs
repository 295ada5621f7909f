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
//! | `script:` + one step per line | step 1 | step k+1 after k tool results |
//! | anything else | `You said: <text>` | |
//!
//! A script's first line is exactly `script:`; every following non-blank
//! line is one step in one of the tool forms above (`write`, `run:`,
//! `tool`). The last step may instead be `slow <n>: <text>`, `fail:
//! <message>` or plain text (answered verbatim). The answer counts the
//! `tool` messages after the last user message (one per tool call in the
//! OpenAI chat format): with `k` of them it is step `k + 1`, and once every
//! step has run it is `Done: <n> steps.` (`Done: 1 step.` for one). Each step is one line, so a
//! scripted `write` writes one line of content.
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
    let after_user = &messages[last_user + 1..];
    if let Some(steps) = script_steps(&prompt) {
        let done = after_user.iter().filter(|m| m["role"] == "tool").count();
        return script_step(&steps, done);
    }
    // After the tool ran: the tool's result follows the user message.
    if let Some(result) = after_user.iter().rev().find(|m| m["role"] == "tool") {
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
    single_step(&prompt)
}

/// The steps of a multi-step script (`script:` then one step per line), or
/// `None` when the prompt is a single-step one.
fn script_steps(prompt: &str) -> Option<Vec<&str>> {
    let mut lines = prompt.lines();
    if lines.next()?.trim() != "script:" {
        return None;
    }
    Some(
        lines
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect(),
    )
}

/// The answer to a script after `done` tool results: the next step, or a
/// summary once all of them ran.
fn script_step(steps: &[&str], done: usize) -> Reply {
    let Some(step) = steps.get(done) else {
        return Reply::text(match steps.len() {
            0 => "Say `script:` followed by one step per line.".to_owned(),
            1 => "Done: 1 step.".to_owned(),
            n => format!("Done: {n} steps."),
        });
    };
    let is_form = ["write ", "run:", "tool ", "slow ", "fail:"]
        .iter()
        .any(|form| step.starts_with(form));
    if is_form {
        single_step(step)
    } else {
        // Plain text is the script's own closing words.
        Reply::text(*step)
    }
}

/// The first answer to a single-step prompt (a tool call, text or an error).
fn single_step(prompt: &str) -> Reply {
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

    /// A script conversation after `results` tool calls have run.
    fn scripted(script: &str, results: usize) -> Reply {
        let mut messages = vec![
            json!({"role":"system","content":"You are an agent."}),
            json!({"role":"user","content":"earlier prompt"}),
            json!({"role":"tool","content":"an older result"}),
            json!({"role":"user","content":[{"type":"text","text":script}]}),
        ];
        for i in 0..results {
            messages.push(json!({"role":"assistant","content":null,"tool_calls":[]}));
            messages.push(json!({"role":"tool","content":format!("result {i}")}));
        }
        decide(&req(Value::Array(messages), true))
    }

    fn text_of(reply: Reply) -> String {
        let Reply::Text { chunks, .. } = reply else {
            panic!("expected text, got {reply:?}")
        };
        chunks.concat()
    }

    const THREE_TOOLS: &str = "script:\nwrite a.txt: first\n\n  run: cat a.txt  \ntool canopy_add_learning {\"text\":\"x\"}\n";

    #[test]
    fn a_script_answers_one_step_per_tool_result() {
        assert_eq!(
            scripted(THREE_TOOLS, 0),
            Reply::ToolCall {
                name: "write".into(),
                arguments: json!({"filePath": "a.txt", "content": "first"})
            }
        );
        assert_eq!(
            scripted(THREE_TOOLS, 1),
            Reply::ToolCall {
                name: "bash".into(),
                arguments: json!({"command": "cat a.txt", "description": "Run the requested command"})
            }
        );
        assert_eq!(
            scripted(THREE_TOOLS, 2),
            Reply::ToolCall {
                name: "canopy_add_learning".into(),
                arguments: json!({"text": "x"})
            }
        );
        assert_eq!(text_of(scripted(THREE_TOOLS, 3)), "Done: 3 steps.");
        // More results than steps (a retried call, say) still ends it.
        assert_eq!(text_of(scripted(THREE_TOOLS, 5)), "Done: 3 steps.");
        assert_eq!(text_of(scripted("script:\nrun: true", 1)), "Done: 1 step.");
    }

    #[test]
    fn a_script_can_end_in_text_slow_or_failure() {
        let script = "script:\nwrite b.txt: two words\nAll done, see b.txt.";
        assert!(matches!(
            scripted(script, 0),
            Reply::ToolCall { name, arguments } if name == "write" && arguments["content"] == "two words"
        ));
        assert_eq!(text_of(scripted(script, 1)), "All done, see b.txt.");

        let Reply::Text { chunks, delay } = scripted("script:\nrun: ls\nslow 3: wait", 1) else {
            panic!()
        };
        assert_eq!((chunks.len(), delay), (3, SLOW_CHUNK_DELAY));
        assert_eq!(
            scripted("script:\nrun: ls\nfail: out of quota", 1),
            Reply::Error {
                status: 500,
                message: "out of quota".into()
            }
        );
    }

    #[test]
    fn scripts_need_the_exact_header() {
        assert!(text_of(scripted("script:\n\n", 0)).contains("script:"));
        // Not a script: the first line is more than `script:`.
        assert_eq!(
            text_of(scripted("script: run: ls\nrun: ls", 0)),
            "You said: script: run: ls"
        );
        // The title request names a script session by its first line.
        let Reply::Text { chunks, .. } = decide(&req(
            json!([{"role":"system","content":"Generate a title"},{"role":"user","content":THREE_TOOLS}]),
            false,
        )) else {
            panic!()
        };
        assert_eq!(chunks.concat(), "script:");
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
