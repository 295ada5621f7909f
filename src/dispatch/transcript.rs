//! OpenCode's messages and parts, as transcript upserts. OpenCode's shapes
//! are wide and still moving; only what the transcript shows is taken, and
//! anything unrecognised is skipped rather than failing the run.

use canopy_protocol::{
    feature::Usage,
    transcript::{MessageUpsert, PartKind, PartUpsert, Role, ToolState},
};
use serde_json::Value;

/// Who queued the prompt a user message came from.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    /// The user message id Canopy chose.
    pub message_id: String,
    /// The prompt's author (a user id).
    pub author: String,
    /// The queue entry.
    pub queue_entry: String,
}

/// An OpenCode message `info` as an upsert; `None` for messages that do not
/// belong to `origin`'s run (other prompts, malformed info).
pub(super) fn message(info: &Value, origin: &Origin) -> Option<MessageUpsert> {
    let id = info.get("id")?.as_str()?;
    let role = info.get("role")?.as_str()?;
    let created_at = info
        .pointer("/time/created")
        .and_then(Value::as_i64)
        .unwrap_or_else(canopy_protocol::unix_ms_now);
    match role {
        "user" if id == origin.message_id => Some(MessageUpsert {
            id: id.to_owned(),
            role: Role::User,
            author: Some(origin.author.clone()),
            queue_entry: Some(origin.queue_entry.clone()),
            created_at,
            finish: None,
            error: None,
            usage: None,
        }),
        "assistant" if info.get("parentID").and_then(Value::as_str) == Some(&origin.message_id) => {
            Some(MessageUpsert {
                id: id.to_owned(),
                role: Role::Assistant,
                author: None,
                queue_entry: None,
                created_at,
                finish: info
                    .get("finish")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                error: info.get("error").map(error_text),
                usage: Some(usage(info)),
            })
        }
        _ => None,
    }
}

/// The usage an assistant message reports.
pub(super) fn usage(info: &Value) -> Usage {
    let n = |p: &str| info.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: n("/tokens/input"),
        output_tokens: n("/tokens/output"),
        cost_usd: info.get("cost").and_then(Value::as_f64).unwrap_or(0.0),
    }
}

/// OpenCode's error union (`{name, data: {message}}`) as one line.
pub(super) fn error_text(error: &Value) -> String {
    let name = error.get("name").and_then(Value::as_str);
    let message = error
        .pointer("/data/message")
        .and_then(Value::as_str)
        .or_else(|| error.get("message").and_then(Value::as_str));
    match (name, message) {
        (_, Some(m)) if !m.is_empty() => m.to_owned(),
        (Some(n), _) => n.to_owned(),
        _ => error.to_string(),
    }
}

/// Whether an error is OpenCode's answer to an abort.
pub(super) fn is_abort(error: &Value) -> bool {
    error.get("name").and_then(Value::as_str) == Some("MessageAbortedError")
}

/// A part, converted.
#[derive(Debug, Clone)]
pub(super) struct ConvertedPart {
    /// The message it belongs to.
    pub message_id: String,
    /// The upsert.
    pub upsert: PartUpsert,
    /// `(tool, full output)` of a finished tool call, kept in SQLite.
    pub full_output: Option<(String, String)>,
}

/// An OpenCode part as an upsert; `None` for kinds the transcript does not
/// show (snapshots, patches, step starts…).
pub(super) fn part(part: &Value) -> Option<ConvertedPart> {
    let id = part.get("id")?.as_str()?.to_owned();
    let message_id = part.get("messageID")?.as_str()?.to_owned();
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let empty = PartUpsert {
        id,
        kind: PartKind::Text,
        text: None,
        tool: None,
        state: None,
        input: None,
        output: None,
        error: None,
    };
    let (upsert, full_output) = match part.get("type")?.as_str()? {
        "text" => (
            PartUpsert {
                text: Some(s(part, "text").unwrap_or_default()),
                ..empty
            },
            None,
        ),
        "reasoning" => (
            PartUpsert {
                kind: PartKind::Reasoning,
                text: Some(s(part, "text").unwrap_or_default()),
                ..empty
            },
            None,
        ),
        "tool" => {
            let state = part.get("state").cloned().unwrap_or(Value::Null);
            let status = s(&state, "status").map(ToolState::from);
            let tool = s(part, "tool").unwrap_or_default();
            let output = s(&state, "output");
            let full = match (&status, &output) {
                (Some(st), Some(out)) if st.is_terminal() => Some((tool.clone(), out.clone())),
                _ => None,
            };
            (
                PartUpsert {
                    kind: PartKind::Tool,
                    tool: Some(tool),
                    state: status,
                    input: state.get("input").map(Value::to_string),
                    output,
                    error: s(&state, "error"),
                    ..empty
                },
                full,
            )
        }
        "step-finish" => (
            PartUpsert {
                kind: PartKind::Step,
                text: s(part, "reason").map(|r| format!("step finished: {r}")),
                ..empty
            },
            None,
        ),
        _ => return None,
    };
    Some(ConvertedPart {
        message_id,
        upsert,
        full_output,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn origin() -> Origin {
        Origin {
            message_id: "msg_1".into(),
            author: "usr_a".into(),
            queue_entry: "q_1".into(),
        }
    }

    #[test]
    fn only_the_runs_messages_are_taken() {
        let user = json!({"id": "msg_1", "role": "user", "time": {"created": 5}});
        let m = message(&user, &origin()).unwrap();
        assert_eq!(m.author.as_deref(), Some("usr_a"));
        assert_eq!(m.queue_entry.as_deref(), Some("q_1"));
        let other_user = json!({"id": "msg_0", "role": "user"});
        assert!(message(&other_user, &origin()).is_none());
        let answer = json!({"id": "msg_2", "role": "assistant", "parentID": "msg_1",
            "finish": "stop", "cost": 0.5, "tokens": {"input": 10, "output": 3},
            "error": {"name": "APIError", "data": {"message": "rate limited"}}});
        let m = message(&answer, &origin()).unwrap();
        assert_eq!(m.error.as_deref(), Some("rate limited"));
        assert_eq!(m.usage.unwrap().output_tokens, 3);
        let foreign = json!({"id": "msg_3", "role": "assistant", "parentID": "msg_0"});
        assert!(message(&foreign, &origin()).is_none());
    }

    #[test]
    fn tool_parts_keep_their_full_output_aside() {
        let p = json!({"id": "prt_1", "messageID": "msg_2", "type": "tool", "tool": "bash",
            "state": {"status": "completed", "input": {"command": "ls"}, "output": "a\nb"}});
        let c = part(&p).unwrap();
        assert_eq!(c.upsert.state, Some(ToolState::Completed));
        assert_eq!(c.upsert.input.as_deref(), Some(r#"{"command":"ls"}"#));
        assert_eq!(c.full_output, Some(("bash".into(), "a\nb".into())));
        let running = json!({"id": "prt_1", "messageID": "msg_2", "type": "tool", "tool": "bash",
            "state": {"status": "running", "input": {}}});
        assert!(part(&running).unwrap().full_output.is_none());
        assert!(part(&json!({"id": "p", "messageID": "m", "type": "snapshot"})).is_none());
        assert!(part(&json!({"type": "text"})).is_none());
    }

    #[test]
    fn errors_read_as_one_line() {
        assert_eq!(
            error_text(&json!({"name": "MessageAbortedError"})),
            "MessageAbortedError"
        );
        assert!(is_abort(
            &json!({"name": "MessageAbortedError", "data": {"message": "Aborted"}})
        ));
    }
}
