//! OpenCode bus events, tolerantly: every event keeps its raw JSON, and the
//! few the dispatcher acts on are recognised by `type`. An event type or a
//! field this build does not know is never a parse failure.

use serde_json::Value;

/// One event from `GET /event`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `session.idle`, `message.part.delta`, …
    pub kind: String,
    /// The event's `properties`.
    pub properties: Value,
}

/// What the dispatcher cares about, recognised from an [`Event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Known<'a> {
    /// The session finished its run.
    SessionIdle {
        /// The session.
        session_id: &'a str,
    },
    /// The session's run failed (also sent on abort).
    SessionError {
        /// The session, if named.
        session_id: Option<&'a str>,
        /// `{name, data: {message}}`.
        error: &'a Value,
    },
    /// Streamed text for a part.
    PartDelta {
        /// The session.
        session_id: &'a str,
        /// The message.
        message_id: &'a str,
        /// The part.
        part_id: &'a str,
        /// The appended text.
        delta: &'a str,
    },
    /// A part was created or changed (text, tool call, step…).
    PartUpdated {
        /// The session.
        session_id: &'a str,
        /// The whole part.
        part: &'a Value,
    },
    /// A message was created or changed.
    MessageUpdated {
        /// The session.
        session_id: &'a str,
        /// The message info.
        info: &'a Value,
    },
    /// Anything else.
    Other,
}

impl Event {
    /// Parse one SSE `data` payload: `{type, properties}`.
    pub fn parse(data: &str) -> Option<Event> {
        let v: Value = serde_json::from_str(data).ok()?;
        let kind = v.get("type")?.as_str()?.to_owned();
        let properties = v.get("properties").cloned().unwrap_or(Value::Null);
        Some(Event { kind, properties })
    }

    /// The session an event is about, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.properties
            .get("sessionID")
            .and_then(Value::as_str)
            .or_else(|| {
                self.properties
                    .pointer("/part/sessionID")
                    .and_then(Value::as_str)
            })
            .or_else(|| {
                self.properties
                    .pointer("/info/sessionID")
                    .and_then(Value::as_str)
            })
    }

    /// Recognise the events the dispatcher acts on.
    pub fn known(&self) -> Known<'_> {
        let p = &self.properties;
        let s = |k: &str| p.get(k).and_then(Value::as_str);
        match self.kind.as_str() {
            "session.idle" => {
                s("sessionID").map_or(Known::Other, |session_id| Known::SessionIdle { session_id })
            }
            "session.error" => Known::SessionError {
                session_id: s("sessionID"),
                error: p.get("error").unwrap_or(&Value::Null),
            },
            "message.part.delta" => match (s("sessionID"), s("messageID"), s("partID"), s("delta"))
            {
                (Some(session_id), Some(message_id), Some(part_id), Some(delta)) => {
                    Known::PartDelta {
                        session_id,
                        message_id,
                        part_id,
                        delta,
                    }
                }
                _ => Known::Other,
            },
            "message.part.updated" => match (self.session_id(), p.get("part")) {
                (Some(session_id), Some(part)) => Known::PartUpdated { session_id, part },
                _ => Known::Other,
            },
            "message.updated" => match (self.session_id(), p.get("info")) {
                (Some(session_id), Some(info)) => Known::MessageUpdated { session_id, info },
                _ => Known::Other,
            },
            _ => Known::Other,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_events() {
        let e = Event::parse(
            r#"{"id":"evt1","type":"session.idle","properties":{"sessionID":"ses_1"}}"#,
        )
        .unwrap();
        assert_eq!(
            e.known(),
            Known::SessionIdle {
                session_id: "ses_1"
            }
        );
        let e = Event::parse(
            r#"{"type":"message.part.delta","properties":{"sessionID":"s","messageID":"m","partID":"p","field":"text","delta":"hi"}}"#,
        )
        .unwrap();
        assert!(matches!(e.known(), Known::PartDelta { delta: "hi", .. }));
        let e = Event::parse(r#"{"type":"message.part.updated","properties":{"part":{"sessionID":"s","type":"tool"}}}"#).unwrap();
        assert_eq!(e.session_id(), Some("s"));
        assert!(matches!(e.known(), Known::PartUpdated { .. }));
        // New and odd events: kept, never an error.
        let e =
            Event::parse(r#"{"type":"session.next.step.started","properties":{"weird":[1,2]}}"#)
                .unwrap();
        assert_eq!(e.known(), Known::Other);
        let e = Event::parse(r#"{"type":"session.idle","properties":{"sessionID":7}}"#).unwrap();
        assert_eq!(e.known(), Known::Other);
        for bad in ["", "not json", "[]", "{}", r#"{"type":5}"#] {
            assert!(Event::parse(bad).is_none(), "{bad}");
        }
    }
}
