//! The proxy's reading of an engine's event stream (`clear_proxy::sse`): arbitrary
//! bytes, cut into chunks at arbitrary points, through `EventSplitter::push` and
//! `rest`, and every event through `inspect` (what counts the tokens a stream is
//! charged for).
//!
//! Input: byte 0's low 4 bits are the number of cuts, the next two bytes per cut its
//! position (little-endian, modulo the stream's length plus one); the rest is the
//! stream.
//!
//! Checks beyond "no panic":
//! - nothing is lost, added or reordered: the events and the rest, joined, are the
//!   stream;
//! - each event ends at the first blank line (`\n\n` or `\n\r\n`) after its start, and
//!   the rest holds none;
//! - the cuts change nothing: the same events come out of one push of the whole
//!   stream;
//! - `inspect`: a usage-only event has a usage, no delta and no length finish; an
//!   event with no `data:` line says nothing.
#![no_main]

use clear_proxy::sse::{inspect, EventInfo, EventSplitter};
use libfuzzer_sys::fuzz_target;

/// The end (exclusive) of the first blank line in `bytes`, if any.
fn first_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| {
        let rest = &bytes[i..];
        if rest.starts_with(b"\n\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\n\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

fn split(stream: &[u8], cuts: &[usize]) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
    let mut splitter = EventSplitter::default();
    let mut events = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        let pushed = splitter
            .push(&stream[from..cut])
            .expect("a stream shorter than the event limit is never refused");
        events.extend(pushed.into_iter().map(|e| e.to_vec()));
        from = cut;
    }
    (events, splitter.rest().map(|r| r.to_vec()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(head & 15).min(rest.len() / 2);
    let (positions, stream) = rest.split_at(2 * count);
    let mut cuts: Vec<usize> = positions
        .chunks_exact(2)
        .map(|p| usize::from(u16::from_le_bytes([p[0], p[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();

    let (events, left) = split(stream, &cuts);
    let mut joined: Vec<u8> = events.concat();
    joined.extend(left.iter().flatten());
    assert_eq!(joined, stream, "events and rest must be the stream");
    for event in &events {
        assert_eq!(first_end(event), Some(event.len()), "{event:?}");
    }
    if let Some(left) = &left {
        assert_eq!(first_end(left), None, "the rest holds a whole event");
    }
    assert_eq!(
        split(stream, &[]),
        (events.clone(), left.clone()),
        "cuts changed the events"
    );

    for event in events.iter().chain(left.iter()) {
        let info = inspect(event);
        if info.usage_only {
            assert!(info.usage.is_some() && info.deltas == 0 && !info.hit_limit);
        }
        let has_data = event
            .split(|&b| b == b'\n')
            .any(|line| line.starts_with(b"data:"));
        if !has_data {
            assert_eq!(info, EventInfo::default());
        }
    }
});
