//! Reading a large request's `queries` array on all cores: one cheap look at the bytes
//! splits the array into ranges at commas between its queries, and each range is read on
//! its own thread, in input order: straight into its own part of one vector when the
//! queries are shifted surges (no `[` in them), else into vectors of its own that are
//! then joined. Each query of the plainest form is read by [`crate::plain`], any other
//! by `serde_json`.
//!
//! The split is only a guess (a `}` and a `,`), checked by the reading itself: each
//! range is read from a true query boundary, so it reads cleanly to its end only if
//! that end is one too (a guess inside a string or a nested array leaves the last query
//! unfinished). Whatever is not read cleanly here (a malformed or invalid query, a guess
//! that missed, a request over its query limit, an unusual layout) is read again
//! on one thread by [`read_serial`](crate::request::read_serial), so every error is
//! the one the serial reader gives, with its path, line and column.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use clear_alloc::{Query, ShiftedSurge};
use rayon::iter::{IntoParallelRefIterator, ParallelExtend, ParallelIterator};

use crate::plain;
use crate::request::{read_serial, Batch, BorrowedId, Request};
use crate::wire::QueryFields;

/// Requests smaller than this are read on one thread: a thread costs more than it saves.
const MIN_BYTES: usize = 1 << 20;

/// Each range holds at least this many bytes of queries.
const MIN_RANGE_BYTES: usize = 512 << 10;

/// Ranges per thread: the threads take the next range as they finish one, so a thread
/// that shares its core with another program reads fewer of them.
const RANGES_PER_THREAD: usize = 4;

/// A thread adds to the shared count of queries read after this many, so that a
/// request over its limit is given up early without the threads contending on it.
const COUNT_STEP: usize = 1024;

/// The request in `input` read on all cores; `None` if it is small, not laid out as
/// expected, or anything in it is wrong (then it is for the serial reader).
pub(crate) fn read(input: &[u8], max_queries: usize) -> Option<Request<'_>> {
    let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    if input.len() < MIN_BYTES || threads < 2 {
        return None;
    }
    let parts = (threads * RANGES_PER_THREAD).min(input.len() / MIN_RANGE_BYTES);
    let targets: Vec<usize> = (1..parts).map(|k| input.len() / parts * k).collect();
    read_split(input, max_queries, &targets, threads)
}

/// [`read`] on `threads` threads, splitting the queries near each of the byte
/// positions `targets` (increasing).
pub(crate) fn read_split<'a>(
    input: &'a [u8],
    max_queries: usize,
    targets: &[usize],
    threads: usize,
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
    if ends.is_empty() {
        return None;
    }
    let mut ranges = vec![Range {
        start: open,
        end: Some(ends[0]),
    }];
    ranges.extend(ends.iter().enumerate().map(|(k, &comma)| Range {
        start: comma + 1,
        end: ends.get(k + 1).copied(),
    }));
    let reader = RangeReader {
        input,
        max_queries,
        threads,
        counted: AtomicUsize::new(0),
    };
    let (queries, ids, close) = match surge_bounds(input, &ranges, max_queries) {
        Some(bounds) => reader.read_in_place(&ranges, &bounds)?,
        None => reader.read_and_join(&ranges)?,
    };
    if ids.len() > max_queries {
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
        queries,
        ids,
        invalid: None,
        over_limit: None,
    })
}

/// The most queries each range can hold, when the queries look like shifted surges:
/// no `[` anywhere in the ranges (every other kind of curve is an array), so each
/// query is an object with no object inside, and a range holds at most as many as it
/// has `}` (more only if ids hold some). `None` when a `[` is found, or the ranges may
/// hold more queries than `max_queries` (the bounds would reserve more than the limit).
fn surge_bounds(input: &[u8], ranges: &[Range], max_queries: usize) -> Option<Vec<usize>> {
    // A pass over the whole request: on all cores.
    let bounds: Vec<usize> = ranges
        .par_iter()
        .map(|range| closing_braces_if_flat(&input[range.start..range.end.unwrap_or(input.len())]))
        .collect::<Option<_>>()?;
    // The last range's count includes the request's own closing brace.
    (bounds.iter().sum::<usize>() <= max_queries.saturating_add(1)).then_some(bounds)
}

/// How many `}` `bytes` holds, or `None` if it holds a `[`; counted in blocks of
/// byte-sized lanes, so that the count runs on the vector unit.
fn closing_braces_if_flat(bytes: &[u8]) -> Option<usize> {
    const LANES: usize = 32;
    let (mut closes, mut opens) = (0, false);
    // A lane counts at most 255 braces before it is added up.
    let mut blocks = bytes.chunks_exact(LANES * 255);
    for block in &mut blocks {
        let (mut lane_closes, mut lane_opens) = ([0u8; LANES], [false; LANES]);
        for chunk in block.chunks_exact(LANES) {
            for ((close, open), &b) in lane_closes.iter_mut().zip(&mut lane_opens).zip(chunk) {
                *close += u8::from(b == b'}');
                *open |= b == b'[';
            }
        }
        closes += lane_closes.iter().map(|&n| usize::from(n)).sum::<usize>();
        opens |= lane_opens.contains(&true);
    }
    for &b in blocks.remainder() {
        closes += usize::from(b == b'}');
        opens |= b == b'[';
    }
    (!opens).then_some(closes)
}

/// A range of the queries array to read.
struct Range {
    /// The byte after the `[` or the comma before the range's first query.
    start: usize,
    /// The comma after its last query; `None` for the last range, which ends at the
    /// array's `]`.
    end: Option<usize>,
}

/// What the ranges read: the queries, their ids, and the byte after the array's `]`.
type Queries<'a> = (Batch, Vec<Option<BorrowedId<'a>>>, Option<usize>);

/// Reads the ranges of one request on its threads.
struct RangeReader<'a> {
    input: &'a [u8],
    max_queries: usize,
    threads: usize,
    /// Queries read so far by all ranges (counted [`COUNT_STEP`] at a time).
    counted: AtomicUsize,
}

impl<'a> RangeReader<'a> {
    /// Reads each range straight into its own part of one vector of queries and one
    /// of ids, sized by `bounds` (see [`surge_bounds`]): nothing is copied after the
    /// reading but to close the gaps where a range held fewer queries than its bound.
    fn read_in_place(&self, ranges: &[Range], bounds: &[usize]) -> Option<Queries<'a>> {
        let total = bounds.iter().sum();
        // Filled on all cores: the first touch of each page (a page fault) is most of
        // the cost of so large a vector.
        let placeholder = Query::new(ShiftedSurge::new(0.0, 1.0, 1.0).ok()?);
        let mut queries = Vec::with_capacity(total);
        queries.par_extend(rayon::iter::repeat_n(placeholder, total));
        let mut ids = Vec::with_capacity(total);
        ids.par_extend(rayon::iter::repeat_n(None, total));
        let mut work = Vec::with_capacity(ranges.len());
        let (mut queries_left, mut ids_left) = (&mut queries[..], &mut ids[..]);
        for (range, &bound) in ranges.iter().zip(bounds) {
            let (queries_slot, rest) = queries_left.split_at_mut(bound);
            let (ids_slot, ids_rest) = ids_left.split_at_mut(bound);
            (queries_left, ids_left) = (rest, ids_rest);
            work.push((range, queries_slot, ids_slot));
        }
        let read = self.on_threads(work, |(range, queries, ids)| {
            let mut len = 0;
            let close = range.read(self, |spec| {
                // A slot for each query: more only if a query is not an object.
                let (query, id) = (queries.get_mut(len)?, ids.get_mut(len)?);
                spec.is_surge().then_some(())?;
                *query = spec.to_unnamed_surge(len).ok()?;
                *id = spec.id;
                len += 1;
                Some(())
            })?;
            Some((len, close))
        })?;
        let lens: Vec<usize> = read.iter().map(|&(len, _)| len).collect();
        close_gaps(&mut queries, bounds, &lens);
        close_gaps(&mut ids, bounds, &lens);
        let close = read.last()?.1;
        Some((Batch::Surges(queries), ids, close))
    }

    /// Reads each range into vectors of its own and appends them in order to the
    /// first range's, which has room for all: for queries of any curve.
    fn read_and_join(&self, ranges: &[Range]) -> Option<Queries<'a>> {
        let work: Vec<(usize, &Range)> = ranges.iter().enumerate().collect();
        let read = self.on_threads(work, |(k, range)| {
            // The first range keeps room for all the queries, which the others join.
            let bytes = match (k, range.end) {
                (0, _) | (_, None) => self.input.len() - range.start,
                (_, Some(end)) => end - range.start,
            };
            let capacity = self.max_queries.min(bytes / 39);
            let mut queries = Batch::Surges(Vec::with_capacity(capacity));
            let mut ids = Vec::with_capacity(capacity);
            let close = range.read(self, |spec| {
                queries.push(&spec, ids.len()).ok()?;
                ids.push(spec.id);
                Some(())
            })?;
            Some((queries, ids, close))
        })?;
        let mut read = read.into_iter();
        let (mut queries, mut ids, mut close) = read.next()?;
        for (more, mut more_ids, more_close) in read {
            queries.append(more).ok()?;
            ids.append(&mut more_ids);
            close = more_close;
        }
        Some((queries, ids, close))
    }

    /// `run` on each item of `work`, on up to [`threads`](Self::threads) threads that
    /// each take the next item as they finish one; the results in the order of
    /// `work`, or `None` as soon as one is `None`.
    fn on_threads<W: Send, R: Send>(
        &self,
        work: Vec<W>,
        run: impl Fn(W) -> Option<R> + Sync,
    ) -> Option<Vec<R>> {
        let count = work.len();
        let queue = Mutex::new(work.into_iter().enumerate());
        let failed = AtomicBool::new(false);
        let take = || {
            let mut done = Vec::new();
            while !failed.load(Ordering::Relaxed) {
                let Some((k, item)) = queue.lock().ok().and_then(|mut queue| queue.next()) else {
                    break;
                };
                let result = run(item);
                failed.fetch_or(result.is_none(), Ordering::Relaxed);
                done.push((k, result));
            }
            done
        };
        let mut done = std::thread::scope(|scope| {
            let others: Vec<_> = (1..self.threads.min(count))
                .map(|_| scope.spawn(take))
                .collect();
            let mut done = take();
            for other in others {
                done.extend(other.join().ok()?);
            }
            Some(done)
        })?;
        if failed.into_inner() || done.len() != count {
            return None;
        }
        done.sort_unstable_by_key(|&(k, _)| k);
        done.into_iter().map(|(_, result)| result).collect()
    }
}

/// Removes from `items`, laid out as consecutive parts of `bounds[k]` items of which
/// the first `lens[k]` are kept, the rest of each part, keeping the order.
fn close_gaps<T>(items: &mut Vec<T>, bounds: &[usize], lens: &[usize]) {
    let last = bounds.len() - 1;
    if bounds[..last] == lens[..last] {
        // Only the last part is short (by the request's closing brace, typically).
        items.truncate(items.len() - (bounds[last] - lens[last]));
        return;
    }
    let mut keep = bounds
        .iter()
        .zip(lens)
        .flat_map(|(&bound, &len)| (0..bound).map(move |i| i < len));
    items.retain(|_| keep.next().unwrap_or(false));
}

impl Range {
    /// Reads the range's queries, giving each to `keep`; the byte after the array's
    /// `]` for the last range. `None` unless each query is well-formed and `keep`
    /// takes it, they end exactly at the range's end, and no more than `max_queries`
    /// have been read in all (counted by all the ranges of `reader`).
    fn read<'a>(
        &self,
        reader: &RangeReader<'a>,
        mut keep: impl FnMut(QueryFields<BorrowedId<'a>>) -> Option<()>,
    ) -> Option<Option<usize>> {
        let (counted, max_queries) = (&reader.counted, reader.max_queries);
        let bytes = &reader.input[..self.end.unwrap_or(reader.input.len())];
        let mut uncounted = 0;
        let mut at = self.start;
        let close = loop {
            let spec = match plain::read_query(bytes, at) {
                Some((spec, after)) => {
                    at = after;
                    spec
                }
                None => {
                    // A reader per query: `serde_json` reads one value and says where
                    // it ended.
                    let mut reader = serde_json::Deserializer::from_slice(&bytes[at..])
                        .into_iter::<QueryFields<BorrowedId<'a>>>();
                    let spec = reader.next()?.ok()?;
                    at += reader.byte_offset();
                    spec
                }
            };
            keep(spec)?;
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
        Some(close)
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

/// The first comma at or after `from` that follows a `}` (and whitespace) and is
/// followed by [`QUERIES_AHEAD`] objects that look like queries: where one query most
/// likely ends and the next begins.
fn comma_after_query(input: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        at += input.get(at..)?.iter().position(|&b| b == b'}')?;
        let next = skip_whitespace(input, at + 1);
        if input.get(next) == Some(&b',') && queries_follow(input, next + 1) {
            return Some(next);
        }
        at += 1;
    }
}

/// How many objects after a guessed split must look like queries: enough to step out
/// of the mixtures and rollouts that requests hold.
const QUERIES_AHEAD: usize = 8;

/// Whether [`QUERIES_AHEAD`] objects, each followed by a comma, start at `at`, each
/// beginning with a query's key (`{"id"`, `{"threshold"`, …): not so in a list of
/// rollouts, nor at the end of a mixture, whose `]` comes first.
fn queries_follow(input: &[u8], mut at: usize) -> bool {
    const KEYS: [&[u8]; 11] = [
        b"id",
        b"threshold",
        b"width",
        b"ceiling",
        b"alpha",
        b"beta",
        b"cap",
        b"weight",
        b"mixture",
        b"points",
        b"rollouts",
    ];
    for _ in 0..QUERIES_AHEAD {
        at = skip_whitespace(input, at);
        let Some(rest) = input.get(at..) else {
            return false;
        };
        let key = rest.strip_prefix(b"{").map(|r| {
            let r = &r[skip_whitespace(r, 0)..];
            r.strip_prefix(b"\"").and_then(|r| {
                KEYS.iter()
                    .find(|k| r.starts_with(k) && r.get(k.len()) == Some(&b'"'))
            })
        });
        if !matches!(key, Some(Some(_))) {
            return false;
        }
        // To the object's end, minding strings and nesting.
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let Some(len) = rest.iter().position(|&b| {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                return false;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    return depth == 0;
                }
                _ => {}
            }
            false
        }) else {
            return false;
        };
        at = skip_whitespace(input, at + len + 1);
        if input.get(at) != Some(&b',') {
            return false;
        }
        at += 1;
    }
    true
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
    fn gaps_between_parts_are_closed_in_order() {
        let mut items: Vec<u32> = (0..10).collect();
        close_gaps(&mut items, &[3, 3, 4], &[3, 3, 2]);
        assert_eq!(items, [0, 1, 2, 3, 4, 5, 6, 7]);
        let mut items: Vec<u32> = (0..10).collect();
        close_gaps(&mut items, &[3, 3, 4], &[1, 3, 4]);
        assert_eq!(items, [0, 3, 4, 5, 6, 7, 8, 9]);
        let mut items: Vec<u32> = (0..6).collect();
        close_gaps(&mut items, &[2, 0, 4], &[0, 0, 3]);
        assert_eq!(items, [2, 3, 4]);
    }

    #[test]
    fn surges_are_bounded_by_their_braces_and_other_curves_are_not() {
        let input = request(2_000, true, 1);
        let input = input.as_bytes();
        let ranges = [Range {
            start: queries_start(input).unwrap(),
            end: None,
        }];
        let bounds = surge_bounds(input, &ranges, 10_000).unwrap();
        // A brace more for each id that holds one, and the request's own.
        let braces_in_ids = input.windows(4).filter(|w| w == b" }, ").count();
        assert_eq!(bounds, [2_000 + braces_in_ids + 1]);
        assert_eq!(surge_bounds(input, &ranges, 1_000), None);
        let mixed = request(2_000, false, 1);
        assert_eq!(surge_bounds(mixed.as_bytes(), &ranges, 10_000), None);
        // The count in lanes agrees with a plain count, whatever the length.
        let queries = &input[ranges[0].start..];
        for len in [0, 1, 8159, 8160, 8161, 100_000] {
            let bytes = &queries[..len];
            let plain = bytes.iter().filter(|&&b| b == b'}').count();
            assert_eq!(closing_braces_if_flat(bytes), Some(plain));
        }
    }

    #[test]
    fn a_split_is_a_comma_after_a_closing_brace() {
        let query = r#"{"id":"}, {","points":[[1,1]]}"#;
        let queries = [query; QUERIES_AHEAD].join(" , ");
        let input = format!(r#"[{query} , {queries},{{"x":1}}]"#);
        let first = query.len() + 2;
        assert_eq!(comma_after_query(input.as_bytes(), 0), Some(first));
        assert_eq!(comma_after_query(input.as_bytes(), first + 1), None);
        // Inside a mixture or a list of rollouts is no place to split.
        let mixture = r#"{"mixture":[{"weight":1,"threshold":1,"width":1,"ceiling":1},{"weight":1,"threshold":1,"width":1,"ceiling":1}]}"#;
        let rollouts = r#"{"rollouts":[{"tokens":1,"correct":true},{"tokens":1,"correct":true}]}"#;
        for query in [mixture, rollouts] {
            let input = vec![query; QUERIES_AHEAD * 2].join(",");
            let split = comma_after_query(input.as_bytes(), 1).unwrap();
            assert_eq!(split % (query.len() + 1), query.len(), "{query}");
        }
    }

    use std::borrow::Cow;

    use clear_alloc::AnyCurve;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::wire::AllocationRequest;

    /// What a request read holds: its terms, ids, whether its queries are surges only,
    /// and each query's curve, cap and weight.
    type Contents = (
        AllocationRequest,
        Vec<Option<String>>,
        bool,
        Vec<(AnyCurve, Option<u64>, f64)>,
    );

    fn contents(request: &Request<'_>) -> Contents {
        let ids = request
            .ids
            .iter()
            .map(|id| id.as_ref().map(|id| id.as_ref().to_owned()))
            .collect();
        let (surges, queries) = match &request.queries {
            Batch::Surges(queries) => (
                true,
                queries
                    .iter()
                    .map(|q| (AnyCurve::from(*q.curve()), q.cap(), q.weight()))
                    .collect(),
            ),
            Batch::Mixed(queries) => (
                false,
                queries
                    .iter()
                    .map(|q| (q.curve().clone(), q.cap(), q.weight()))
                    .collect(),
            ),
        };
        (request.terms.clone(), ids, surges, queries)
    }

    /// A request of `n` queries of every kind, with escaped ids, caps, weights, and
    /// whitespace and commas inside strings and nested arrays where a split may be
    /// guessed; surges only if `surges_only`.
    fn request(n: usize, surges_only: bool, seed: u64) -> String {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut json = String::from("{ \"granularity\": 2,\n\"queries\" : [\n");
        for i in 0..n {
            if i > 0 {
                json.push_str([",", " , ", ",\n", "\t,"][rng.random_range(0..4)]);
            }
            // Every thousandth id is plain, for the errors placed at it.
            let id = match if i % 1000 == 0 {
                0
            } else {
                rng.random_range(0..4)
            } {
                0 => format!(r#""id":"q{i}","#),
                1 => format!(r#""id":"q{i} }}, {{\"x\"","#),
                2 => format!(
                    r#""id": "\u00e9{i}\n", "cap": {},"#,
                    rng.random_range(1..900)
                ),
                _ => String::new(),
            };
            let curve = match if surges_only { 0 } else { rng.random_range(0..5) } {
                0 => format!(
                    r#""threshold":{:.1},"width":{:.1},"ceiling":{:.3}"#,
                    rng.random_range(50.0..900.0),
                    rng.random_range(60.0..400.0),
                    rng.random_range(0.1..1.0)
                ),
                1 => format!(
                    r#""threshold": {}, "alpha": 2e-6, "beta": 0.003, "weight": {}"#,
                    rng.random_range(0..500),
                    rng.random_range(1..4)
                ),
                2 => r#""mixture":[{"weight":1,"threshold":10,"width":20,"ceiling":0.5},{"weight":2,"threshold":300,"width":50,"ceiling":0.9}]"#.to_owned(),
                3 => r#""points":[[100,0.25] , [400,0.5]]"#.to_owned(),
                _ => r#""rollouts":[{"tokens":120,"correct":true},{"tokens":900,"correct":false,"truncated":true}]"#.to_owned(),
            };
            json.push_str(&format!("{{{id}{curve}}}"));
        }
        json.push_str("\n], \"budget\": 77777 }\n");
        json
    }

    #[test]
    fn a_large_request_reads_on_all_cores_as_on_one() {
        for surges_only in [true, false] {
            let input = request(30_000, surges_only, 7);
            let input = input.as_bytes();
            assert!(input.len() > MIN_BYTES);
            let serial = read_serial(input, 50_000).unwrap();
            assert_eq!(serial.len(), 30_000);
            assert_eq!(serial.terms.budget, Some(77_777));
            let halves = read_split(input, 50_000, &[input.len() / 2], 2).unwrap();
            assert_eq!(contents(&halves), contents(&serial));
            // Ids are borrowed from the input unless they hold an escape.
            for id in halves.ids.iter().flatten() {
                assert!(matches!(id.0, Cow::Borrowed(_)) || id.0.contains(['é', '"']));
            }
            let read = super::read(input, 50_000).unwrap();
            assert_eq!(contents(&read), contents(&serial));
        }
    }

    #[test]
    fn any_split_reads_as_one_thread_reads_or_is_left_to_it() {
        let mut rng = StdRng::seed_from_u64(11);
        for round in 0..40 {
            let input = request(rng.random_range(1..400), round % 2 == 0, round);
            let input = input.as_bytes();
            let serial = contents(&read_serial(input, 1000).unwrap());
            let mut read_split_ways = 0;
            for _ in 0..20 {
                let mut targets: Vec<usize> = (0..rng.random_range(1..8))
                    .map(|_| rng.random_range(0..input.len()))
                    .collect();
                targets.sort_unstable();
                if let Some(request) = read_split(input, 1000, &targets, rng.random_range(1..4)) {
                    assert_eq!(contents(&request), serial, "split near {targets:?}");
                    read_split_ways += 1;
                }
            }
            // Surges only: every `}` followed by a comma ends a query, unless in an id.
            if round % 2 == 0 && serial.1.len() > 50 {
                assert!(read_split_ways > 0, "round {round}");
            }
        }
    }

    #[test]
    fn every_error_is_the_one_thread_s_error() {
        let valid = request(30_000, false, 3);
        let at = |needle: &str| valid.find(needle).unwrap();
        let query = r#"{"threshold":1,"width":1,"ceiling":1}"#;
        let cases = [
            // Malformed, then invalid, in the second half; trailing input; a second
            // `queries`; a wrong kind of key before the queries.
            valid.replacen(r#""id":"q20000","#, r#""id":"q20000","threshold":"x","#, 1),
            valid.replacen(r#""id":"q20000","#, r#""id":"q20000","weight":-1,"#, 1),
            format!("{valid} x"),
            valid.replacen(r#""budget""#, r#""queries":[],"budget""#, 1),
            valid.replacen(r#""granularity": 2"#, r#""granularity": [2]"#, 1),
            format!("{}{query},{query}]}}", &valid[..at("\n]")]),
        ];
        for (case, input) in cases.iter().enumerate() {
            let input = input.as_bytes();
            assert!(
                read_split(input, 50_000, &[input.len() / 2], 2).is_none(),
                "case {case}"
            );
            let outcome = |r: Request<'_>| {
                let invalid = r.invalid.as_ref().map(ToString::to_string);
                (contents(&r), invalid, r.over_limit)
            };
            let one_thread = read_serial(input, 50_000).map(outcome);
            let all_cores = crate::request::read(input, 50_000).map(outcome);
            assert_eq!(all_cores, one_thread, "case {case}");
        }
        let malformed = crate::request::read(cases[0].as_bytes(), 50_000).unwrap_err();
        assert!(
            malformed.starts_with("queries[20000].threshold: invalid type"),
            "{malformed}"
        );
        let invalid = crate::request::read(cases[1].as_bytes(), 50_000)
            .unwrap()
            .invalid
            .unwrap();
        assert!(
            invalid
                .to_string()
                .starts_with("query 20000 (id \"q20000\"): weight"),
            "{invalid}"
        );
        // Over the query limit: counted to the end, as on one thread.
        let over = crate::request::read(valid.as_bytes(), 29_999).unwrap();
        assert_eq!((over.over_limit, over.len()), (Some(30_000), 29_999));
    }
}
