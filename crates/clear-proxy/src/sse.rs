//! Server-sent events from the engine: split into events, read usage, count deltas.
//!
//! The proxy relays a stream event by event (never re-encoding the client's data),
//! reading each event's JSON only to learn how many tokens were generated: the final
//! `usage` chunk when the engine sends one, else one token per content delta.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

/// Largest single event accepted from the engine (a runaway event is an upstream
/// failure, not unbounded memory).
pub const MAX_EVENT_BYTES: usize = 8 << 20;

/// Splits a byte stream into complete events (each with its blank-line terminator).
#[derive(Debug, Default)]
pub struct EventSplitter {
    buffer: BytesMut,
}

impl EventSplitter {
    /// Appends bytes and returns the events they complete.
    ///
    /// # Errors
    /// When a pending event grows beyond [`MAX_EVENT_BYTES`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, String> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buffer) {
            events.push(self.buffer.split_to(end).freeze());
        }
        if self.buffer.len() > MAX_EVENT_BYTES {
            return Err(format!("an event exceeded {MAX_EVENT_BYTES} bytes"));
        }
        Ok(events)
    }

    /// Whatever is left when the stream ends (an unterminated last event).
    pub fn rest(&mut self) -> Option<Bytes> {
        (!self.buffer.is_empty()).then(|| self.buffer.split().freeze())
    }
}

/// The end (exclusive) of the first complete event: after `\n\n` or `\r\n\r\n`.
fn event_end(buffer: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < buffer.len() {
        if buffer[i] == b'\n' {
            if buffer[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if buffer[i + 1] == b'\r' && buffer.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// What one event says about the completion.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventInfo {
    /// Content deltas in the event (one token each, the fallback count).
    pub deltas: u64,
    /// `usage.completion_tokens`, when the event carries it.
    pub usage: Option<u64>,
    /// Whether a choice finished with `finish_reason = "length"`.
    pub hit_limit: bool,
    /// A usage-only chunk (no choices): the proxy asked for it, so it is dropped
    /// unless the client asked too.
    pub usage_only: bool,
}

/// Reads an event's `data:` payload.
pub fn inspect(event: &[u8]) -> EventInfo {
    let mut data = Vec::new();
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
        }
    }
    if data.is_empty() || data == b"[DONE]" {
        return EventInfo::default();
    }
    let Ok(value) = serde_json::from_slice::<Value>(&data) else {
        return EventInfo::default();
    };
    let mut info = EventInfo {
        usage: completion_tokens(&value),
        ..EventInfo::default()
    };
    match value.get("choices").and_then(Value::as_array) {
        Some(choices) if !choices.is_empty() => {
            for choice in choices {
                let delta = choice.get("delta");
                let texts = [
                    delta.and_then(|d| d.get("content")),
                    delta.and_then(|d| d.get("reasoning_content")),
                    delta.and_then(|d| d.get("reasoning")),
                    choice.get("text"),
                ];
                if texts
                    .iter()
                    .any(|t| t.and_then(Value::as_str).is_some_and(|s| !s.is_empty()))
                {
                    info.deltas += 1;
                }
                if choice.get("finish_reason").and_then(Value::as_str) == Some("length") {
                    info.hit_limit = true;
                }
            }
        }
        _ => info.usage_only = info.usage.is_some(),
    }
    info
}

/// `usage.completion_tokens` of a response or chunk.
pub fn completion_tokens(value: &Value) -> Option<u64> {
    value.get("usage")?.get("completion_tokens")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks() {
        let mut s = EventSplitter::default();
        assert!(s.push(b"data: {\"a\"").unwrap().is_empty());
        let events = s.push(b":1}\n\ndata: [DONE]\r\n\r\ndata: x").unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(&events[0][..], b"data: {\"a\":1}\n\n");
        assert_eq!(&events[1][..], b"data: [DONE]\r\n\r\n");
        assert_eq!(s.rest().as_deref(), Some(&b"data: x"[..]));
    }

    #[test]
    fn deltas_usage_and_limits_are_read() {
        let delta =
            inspect(b"data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"hm\"}}]}\n\n");
        assert_eq!(delta.deltas, 1);
        let last =
            inspect(b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n");
        assert_eq!((last.deltas, last.hit_limit), (0, true));
        let usage = inspect(b"data: {\"choices\":[],\"usage\":{\"completion_tokens\":42}}\n\n");
        assert_eq!(usage.usage, Some(42));
        assert!(usage.usage_only);
        assert_eq!(inspect(b"data: [DONE]\n\n"), EventInfo::default());
        assert_eq!(inspect(b": keep-alive\n\n"), EventInfo::default());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xC1EA_55E0),
            ..proptest::prelude::ProptestConfig::with_cases(256)
        })]

        /// However the stream is cut into chunks, the same events come out, whole
        /// and in order, and nothing is lost at the end.
        #[test]
        fn chunking_never_changes_the_events(
            payloads in proptest::collection::vec("[a-z{}\":, ]{0,40}", 1..12),
            crlf in proptest::collection::vec(proptest::bool::ANY, 12),
            cuts in proptest::collection::vec(0usize..400, 0..10),
        ) {
            let events: Vec<String> = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| if crlf[i] { format!("data: {p}\r\n\r\n") } else { format!("data: {p}\n\n") })
                .collect();
            let stream = events.concat().into_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut splitter = EventSplitter::default();
            let mut out = Vec::new();
            for pair in cuts.windows(2) {
                out.extend(splitter.push(&stream[pair[0]..pair[1]]).unwrap());
            }
            proptest::prop_assert!(splitter.rest().is_none());
            let out: Vec<String> = out.iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect();
            proptest::prop_assert_eq!(out, events);
        }
    }

    #[test]
    fn a_runaway_event_is_an_error() {
        let mut s = EventSplitter::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(s.push(&big).is_err());
    }
}
