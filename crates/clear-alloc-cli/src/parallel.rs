//! Reading a large request's `queries` array on all cores: one cheap look at the bytes
//! splits the array into ranges at commas between its queries, each range is read on
//! its own thread, and the queries are put back together in input order.
//!
//! The split is only a guess (a `}` and a `,`), checked by the reading itself: each
//! range is read from a true query boundary, so it reads cleanly to its end only if
//! that end is one too (a guess inside a string or a nested array leaves the last query
//! unfinished). Whatever is not read cleanly here (a malformed or invalid query, a guess
//! that missed, a request over its query limit, an unusual layout) is read again
//! on one thread by [`read_serial`](crate::request::read_serial), so every error is
//! the one the serial reader gives, with its path, line and column.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::request::{read_serial, Batch, BorrowedId, Request};
use crate::wire::QueryFields;

/// Requests smaller than this are read on one thread: a thread costs more than it saves.
const MIN_BYTES: usize = 1 << 20;

/// Each thread reads at least this many bytes of queries.
const MIN_RANGE_BYTES: usize = 512 << 10;

/// A thread adds to the shared count of queries read after this many, so that a
/// request over its limit is given up early without the threads contending on it.
const COUNT_STEP: usize = 1024;

/// The request in `input` read on all cores; `None` if it is small, not laid out as
/// expected, or anything in it is wrong (then it is for the serial reader).
pub(crate) fn read(input: &[u8], max_queries: usize) -> Option<Request<'_>> {
    if input.len() < MIN_BYTES {
        return None;
    }
    let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let parts = threads.min(input.len() / MIN_RANGE_BYTES);
    if parts < 2 {
        return None;
    }
    let targets: Vec<usize> = (1..parts).map(|k| input.len() / parts * k).collect();
    read_split(input, max_queries, &targets)
}

/// [`read`], splitting the queries near each of the byte positions `targets`
/// (increasing).
pub(crate) fn read_split<'a>(
    input: &'a [u8],
    max_queries: usize,
    targets: &[usize],
) -> Option<Request<'a>> {
    let open = queries_start(input)?;
    let mut ends = Vec::with_capacity(targets.len());
    for &target in targets {
        let from = ends.last().map_or(open, |&end| end + 1).max(target);
        match comma_after_query(input, from) {
            Some(end) => ends.push(end),
            None => break,
        }
    }
    if ends.is_empty() && !targets.is_empty() {
        return None;
    }
    let mut starts = vec![open];
    starts.extend(ends.iter().map(|end| end + 1));
    let counted = AtomicUsize::new(0);
    let read_range = |k: usize| {
        let end = ends.get(k).copied();
        // The first range keeps room for all the queries, which the others join.
        let bytes = if k == 0 {
            input.len()
        } else {
            end.unwrap_or(input.len()) - starts[k]
        };
        let range = Range {
            start: starts[k],
            end,
            capacity: max_queries.min(bytes / 39),
        };
        range.read(input, max_queries, &counted)
    };
    let mut ranges = std::thread::scope(|scope| {
        let others: Vec<_> = (1..starts.len())
            .map(|k| scope.spawn(move || read_range(k)))
            .collect();
        let mut ranges = vec![read_range(0)];
        ranges.extend(others.into_iter().map(|t| t.join().ok().flatten()));
        ranges
    })
    .into_iter();
    let mut all = ranges.next()??;
    let mut close = all.close;
    for range in ranges {
        let mut range = range?;
        all.queries.append(range.queries).ok()?;
        all.ids.append(&mut range.ids);
        close = range.close;
    }
    if all.ids.len() > max_queries {
        return None;
    }
    // The rest of the request, with an empty array in place of the queries: a few bytes,
    // read as the serial reader reads them.
    let close = close?;
    let mut rest = Vec::with_capacity(open + 1 + input.len() - close);
    rest.extend_from_slice(&input[..open]);
    rest.push(b']');
    rest.extend_from_slice(&input[close..]);
    let terms = read_serial(&rest, max_queries).ok()?.terms;
    Some(Request {
        terms,
        queries: all.queries,
        ids: all.ids,
        invalid: None,
        over_limit: None,
    })
}

/// A range of the queries array to read.
struct Range {
    /// The byte after the `[` or the comma before the range's first query.
    start: usize,
    /// The comma after its last query; `None` for the last range, which ends at the
    /// array's `]`.
    end: Option<usize>,
    /// Room to reserve for its queries.
    capacity: usize,
}

/// The queries of a [`Range`], valid, in input order.
struct RangeQueries<'a> {
    queries: Batch,
    ids: Vec<Option<BorrowedId<'a>>>,
    /// For the last range, the byte after the array's `]`.
    close: Option<usize>,
}

impl Range {
    /// Reads the range's queries; `None` unless each is well-formed and valid, they end
    /// exactly at the range's end, and no more than `max_queries` have been read in all
    /// (`counted`, shared by the ranges).
    fn read<'a>(
        &self,
        input: &'a [u8],
        max_queries: usize,
        counted: &AtomicUsize,
    ) -> Option<RangeQueries<'a>> {
        let bytes = &input[..self.end.unwrap_or(input.len())];
        let mut queries = Batch::Surges(Vec::with_capacity(self.capacity));
        let mut ids = Vec::with_capacity(self.capacity);
        let mut uncounted = 0;
        let mut at = self.start;
        let close = loop {
            // A reader per query: `serde_json` reads one value and says where it ended.
            let mut reader = serde_json::Deserializer::from_slice(&bytes[at..])
                .into_iter::<QueryFields<BorrowedId<'a>>>();
            let spec = reader.next()?.ok()?;
            at += reader.byte_offset();
            queries.push(&spec, ids.len()).ok()?;
            ids.push(spec.id);
            uncounted += 1;
            if uncounted == COUNT_STEP {
                if counted.fetch_add(uncounted, Ordering::Relaxed) + uncounted > max_queries {
                    return None;
                }
                uncounted = 0;
            }
            at = skip_whitespace(bytes, at);
            match bytes.get(at) {
                None if self.end.is_some() => break None,
                Some(b',') => at += 1,
                Some(b']') if self.end.is_none() => break Some(at + 1),
                _ => return None,
            }
        };
        if counted.fetch_add(uncounted, Ordering::Relaxed) + uncounted > max_queries {
            return None;
        }
        Some(RangeQueries {
            queries,
            ids,
            close,
        })
    }
}

/// The first byte at or after `at` that is not JSON whitespace (or the length).
fn skip_whitespace(input: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = input.get(at) {
        at += 1;
    }
    at
}

/// The byte after the `[` of the request's `queries` array, when the request is an
/// object whose keys before `queries` are plain (no escapes) and hold scalars, as
/// every valid request's do; `None` otherwise.
fn queries_start(input: &[u8]) -> Option<usize> {
    let mut at = skip_whitespace(input, 0);
    (input.get(at) == Some(&b'{')).then_some(())?;
    loop {
        at = skip_whitespace(input, at + 1);
        (input.get(at) == Some(&b'"')).then_some(())?;
        let key_start = at + 1;
        let key_len = input[key_start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\')?;
        let key = &input[key_start..key_start + key_len];
        at = skip_whitespace(input, key_start + key_len + 1);
        (input.get(at) == Some(&b':')).then_some(())?;
        at = skip_whitespace(input, at + 1);
        if key == b"queries" {
            return (input.get(at) == Some(&b'[')).then_some(at + 1);
        }
        // A number, `true`, `false`, `null` or a string without quotes inside.
        at = match input.get(at)? {
            b'"' => at + 1 + input[at + 1..].iter().position(|&b| b == b'"')? + 1,
            b'{' | b'[' => return None,
            _ => at + input[at..].iter().position(|b| b",} \t\n\r".contains(b))?,
        };
        at = skip_whitespace(input, at);
        (input.get(at) == Some(&b',')).then_some(())?;
    }
}

/// The first comma at or after `from` that follows a `}` (and whitespace): where one
/// query may end and the next begin.
fn comma_after_query(input: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        at += input.get(at..)?.iter().position(|&b| b == b'}')?;
        let next = skip_whitespace(input, at + 1);
        if input.get(next) == Some(&b',') {
            return Some(next);
        }
        at += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queries_array_is_found_after_scalar_keys_only() {
        let start = |s: &str| queries_start(s.as_bytes());
        assert_eq!(start(r#"{"queries":[]}"#), Some(12));
        assert_eq!(
            start(r#" { "budget" : 5 , "price":null,"queries" :[ ]}"#),
            Some(43)
        );
        assert_eq!(start(r#"{"id":"a,}b","queries":[]}"#), Some(24));
        assert_eq!(start(r#"{"x":{},"queries":[]}"#), None);
        assert_eq!(start(r#"{"quer\u0069es":[]}"#), None);
        assert_eq!(start(r#"{"queries":{}}"#), None);
        assert_eq!(start(r#"[{"queries":[]}]"#), None);
        assert_eq!(start(r#"{"budget":1}"#), None);
    }

    #[test]
    fn a_split_is_a_comma_after_a_closing_brace() {
        let input = br#"[{"a":1} , {"b":[1,2]},{}]"#;
        assert_eq!(comma_after_query(input, 0), Some(9));
        assert_eq!(comma_after_query(input, 10), Some(22));
        assert_eq!(comma_after_query(input, 23), None);
    }
}
