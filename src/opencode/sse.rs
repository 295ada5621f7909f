//! A server-sent events parser: bytes in (in arbitrary pieces), the `data`
//! of each complete event out. OpenCode sends only `data:` lines, but the
//! parser follows the format (comments, `event:`/`id:` fields, multi-line
//! data, CRLF) so a proxy or a future version cannot confuse it.

/// Largest event accepted, in bytes; a stream that exceeds it is broken.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// Why the stream cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// An event grew past [`MAX_EVENT_BYTES`].
    #[error("an event exceeds {MAX_EVENT_BYTES} bytes")]
    TooLarge,
}

/// Incremental parser.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    /// Feed bytes; returns the data of every event completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, SseError> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(event) = self.line_done(&line) {
                    out.push(event);
                }
            } else {
                self.line.push(b);
                if self.line.len() + self.data.len() > MAX_EVENT_BYTES {
                    return Err(SseError::TooLarge);
                }
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<String> {
        if line.is_empty() {
            // Blank line: dispatch.
            if !self.has_data {
                return None;
            }
            self.has_data = false;
            let data = std::mem::take(&mut self.data);
            return Some(String::from_utf8_lossy(&data).into_owned());
        }
        if line[0] == b':' {
            return None; // comment
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_any_split() {
        let stream = b": hello\r\ndata: {\"a\":1}\r\n\r\nevent: x\nid: 7\ndata: line one\ndata: line two\n\ndata\n\n\n";
        for cut in 0..stream.len() {
            let mut p = SseParser::default();
            let mut got = p.feed(&stream[..cut]).unwrap();
            got.extend(p.feed(&stream[cut..]).unwrap());
            assert_eq!(
                got,
                vec!["{\"a\":1}", "line one\nline two", ""],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut p = SseParser::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(p.feed(&big), Err(SseError::TooLarge));
    }
}
