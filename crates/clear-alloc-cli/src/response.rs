//! Writing the response straight from the allocation: the fields of an
//! [`AllocationResponse`](crate::wire::AllocationResponse), each grant made as it is written with its id borrowed (from
//! the queries, or from the request's bytes), so that no response is built in memory.
//!
//! Compact output, the program's default, is written field by field with the field
//! names as fixed bytes and only the values through `serde_json` (which escapes ids
//! and formats numbers); `--pretty` goes through `serde_json`'s indenting serialiser.
//! Both read back as the same response.

use std::io::Write;

use clear_alloc::{Allocation, Decision};
use serde::Serialize;

use crate::wire::unsigned_zero;

/// An [`AllocationResponse`](crate::wire::AllocationResponse) as it is written, without building one: the same fields
/// in the same order, each grant made from the allocation as it is serialised, with
/// its id borrowed (from the queries or straight from the request's bytes).
#[derive(Serialize)]
#[serde(bound = "GrantsView<'a, Ids>: Serialize")]
pub(crate) struct ResponseView<'a, Ids> {
    pub(crate) price: Option<f64>,
    pub(crate) marginal_price: Option<f64>,
    pub(crate) total_tokens: u64,
    pub(crate) leftover: u64,
    pub(crate) expected_utility: f64,
    #[serde(rename = "allocations")]
    grants: GrantsView<'a, Ids>,
}

/// The `allocations` of a [`ResponseView`]: `ids` zipped with the allocation's grants.
pub(crate) struct GrantsView<'a, Ids> {
    allocation: &'a Allocation,
    ids: Ids,
}

/// A [`QueryGrant`](crate::wire::QueryGrant) with its id borrowed.
#[derive(Serialize)]
pub(crate) struct GrantView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    pub tokens: u64,
    pub utility: f64,
    pub abandoned: bool,
    pub decision: Decision,
}

impl<'a, Ids: Iterator<Item = Option<&'a str>> + Clone> ResponseView<'a, Ids> {
    /// The response to `allocation`; `ids` yields each query's id in input order.
    pub(crate) fn new(allocation: &'a Allocation, ids: Ids) -> Self {
        ResponseView {
            price: allocation.price().map(unsigned_zero),
            marginal_price: allocation.marginal_price().map(unsigned_zero),
            total_tokens: allocation.total_tokens(),
            leftover: allocation.leftover(),
            expected_utility: unsigned_zero(allocation.total_utility()),
            grants: GrantsView { allocation, ids },
        }
    }

    /// Each query's grant, in input order.
    pub(crate) fn grants(&self) -> impl Iterator<Item = GrantView<'a>> {
        self.grants.iter()
    }
}

/// Responses with at least this many grants are formatted on two threads.
const PARALLEL_GRANTS: usize = 100_000;

/// Grants formatted at a time by each of the two threads: some 1.5 MB of JSON, so that
/// the few buffers that go back and forth stay in memory already touched.
const CHUNK_GRANTS: usize = 1 << 14;

impl<'a, Ids: Iterator<Item = Option<&'a str>> + Clone + Send + Sync> ResponseView<'a, Ids> {
    /// Writes the response as compact JSON: the bytes `serde_json::to_writer` writes.
    pub(crate) fn write_compact(&self, out: impl Write) -> std::io::Result<()> {
        self.write_compact_from(out, PARALLEL_GRANTS, CHUNK_GRANTS)
    }

    /// [`write_compact`](Self::write_compact), with the grants formatted on two threads
    /// if there are `parallel_from` or more, `chunk` at a time each.
    fn write_compact_from(
        &self,
        mut out: impl Write,
        parallel_from: usize,
        chunk: usize,
    ) -> std::io::Result<()> {
        out.write_all(b"{\"price\":")?;
        serde_json::to_writer(&mut out, &self.price)?;
        out.write_all(b",\"marginal_price\":")?;
        serde_json::to_writer(&mut out, &self.marginal_price)?;
        out.write_all(b",\"total_tokens\":")?;
        serde_json::to_writer(&mut out, &self.total_tokens)?;
        out.write_all(b",\"leftover\":")?;
        serde_json::to_writer(&mut out, &self.leftover)?;
        out.write_all(b",\"expected_utility\":")?;
        serde_json::to_writer(&mut out, &self.expected_utility)?;
        out.write_all(b",\"allocations\":[")?;
        let count = self.grants.allocation.queries().len();
        if count < parallel_from.max(2) || chunk == 0 || chunk >= count {
            write_grants(self.grants(), true, &mut out)?;
        } else {
            self.write_grants_on_two_threads(chunk, &mut out)?;
        }
        out.write_all(b"]}")?;
        Ok(())
    }

    /// Writes the grants to `out`, `chunk` at a time: this thread formats the even
    /// chunks straight into `out`, another formats the odd ones into buffers that come
    /// back to it once written.
    fn write_grants_on_two_threads(
        &self,
        chunk: usize,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        let chunks = self.grants.allocation.queries().len().div_ceil(chunk);
        std::thread::scope(|scope| {
            let (formatted, to_write) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
            let (written, to_reuse) = std::sync::mpsc::channel::<Vec<u8>>();
            let odd = scope.spawn(move || {
                let mut grants = self.grants().skip(chunk);
                for _ in (1..chunks).step_by(2) {
                    // About 90 bytes a grant.
                    let mut buffer = to_reuse
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(chunk * 96));
                    buffer.clear();
                    write_grants(grants.by_ref().take(chunk), false, &mut buffer)?;
                    if formatted.send(buffer).is_err() {
                        // This thread failed to write; its error is the one reported.
                        break;
                    }
                    grants.nth(chunk - 1);
                }
                Ok(())
            });
            let mut grants = self.grants();
            for k in 0..chunks {
                if k % 2 == 0 {
                    write_grants(grants.by_ref().take(chunk), k == 0, out)?;
                } else {
                    let Ok(buffer) = to_write.recv() else {
                        // The other thread stopped early: its error, or its panic.
                        return odd
                            .join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                            .and_then(|()| Err(std::io::Error::other("grants left unformatted")));
                    };
                    out.write_all(&buffer)?;
                    // Gone only if the other thread is done.
                    let _ = written.send(buffer);
                    grants.nth(chunk - 1);
                }
            }
            odd.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// Writes `grants` to `out`, comma-separated, with a comma before the first unless
/// it is `first` in the response.
fn write_grants<'a>(
    grants: impl Iterator<Item = GrantView<'a>>,
    first: bool,
    out: &mut impl Write,
) -> std::io::Result<()> {
    // Each grant is put together in `line` and written in one call: many small
    // writes to a buffered writer cost more than the bytes they copy.
    let mut line = Vec::with_capacity(256);
    for (i, grant) in grants.enumerate() {
        line.clear();
        line.extend_from_slice(if first && i == 0 { b"{" } else { b",{" });
        if let Some(id) = grant.id {
            line.extend_from_slice(b"\"id\":");
            serde_json::to_writer(&mut line, id)?;
            line.push(b',');
        }
        line.extend_from_slice(b"\"tokens\":");
        serde_json::to_writer(&mut line, &grant.tokens)?;
        line.extend_from_slice(b",\"utility\":");
        serde_json::to_writer(&mut line, &grant.utility)?;
        line.extend_from_slice(if grant.abandoned {
            b",\"abandoned\":true,\"decision\":"
        } else {
            b",\"abandoned\":false,\"decision\":"
        });
        line.extend_from_slice(decision_json(grant.decision));
        line.push(b'}');
        out.write_all(&line)?;
    }
    Ok(())
}

impl<'a, Ids: Iterator<Item = Option<&'a str>> + Clone> GrantsView<'a, Ids> {
    fn iter(&self) -> impl Iterator<Item = GrantView<'a>> {
        self.ids
            .clone()
            .zip(self.allocation.queries())
            .map(|(id, a)| GrantView {
                id,
                tokens: a.tokens,
                utility: unsigned_zero(a.utility),
                abandoned: a.tokens == 0,
                decision: a.decision,
            })
    }
}

impl<'a, Ids: Iterator<Item = Option<&'a str>> + Clone> Serialize for GrantsView<'a, Ids> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// A decision as JSON: its lowercase name, quoted, as it serialises.
fn decision_json(decision: Decision) -> &'static [u8] {
    match decision {
        Decision::Abandoned => b"\"abandoned\"",
        Decision::Funded => b"\"funded\"",
        Decision::Capped => b"\"capped\"",
        Decision::Edge => b"\"edge\"",
        Decision::Displaced => b"\"displaced\"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::AllocationResponse;
    use clear_alloc::{Allocator, Query, ShiftedSurge};

    #[test]
    fn grants_written_a_chunk_at_a_time_on_two_threads_are_in_order() {
        let queries: Vec<Query> = (0..1000)
            .map(|i| {
                let query =
                    Query::new(ShiftedSurge::new(f64::from(i % 97) * 9.0, 40.0, 0.9).unwrap());
                if i % 3 == 0 {
                    query.with_id(format!("q{i}"))
                } else {
                    query
                }
            })
            .collect();
        let allocation = Allocator::default().allocate(&queries, 60_000).unwrap();
        let view = ResponseView::new(&allocation, queries.iter().map(Query::id));
        let expected =
            serde_json::to_string(&AllocationResponse::new(&queries, &allocation)).unwrap();
        // Chunks that divide the grants evenly, and a last chunk short, odd and even.
        for chunk in [7, 100, 250, 999] {
            let mut compact = Vec::new();
            view.write_compact_from(&mut compact, 2, chunk).unwrap();
            assert_eq!(
                String::from_utf8(compact).unwrap(),
                expected,
                "chunk {chunk}"
            );
        }
    }

    /// Takes `room` bytes, then fails.
    struct Full {
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room < buf.len() {
                return Err(std::io::Error::other("disk full"));
            }
            self.room -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_stops_both_threads_with_its_error() {
        let queries = vec![Query::new(ShiftedSurge::new(100.0, 50.0, 0.9).unwrap()); 500];
        let allocation = Allocator::default().allocate(&queries, 30_000).unwrap();
        let view = ResponseView::new(&allocation, queries.iter().map(Query::id));
        // Early in the response, and some chunks into it.
        for room in [200, 3_000] {
            let err = view.write_compact_from(Full { room }, 2, 10).unwrap_err();
            assert_eq!(err.to_string(), "disk full");
        }
    }

    #[test]
    fn decisions_are_written_as_they_serialise() {
        use Decision::*;
        for decision in [Abandoned, Funded, Capped, Edge, Displaced] {
            assert_eq!(
                decision_json(decision),
                serde_json::to_string(&decision).unwrap().as_bytes()
            );
        }
    }

    #[test]
    fn compact_output_is_what_serde_json_writes() {
        // Funded, capped and abandoned queries; ids absent, plain and needing escapes.
        let queries = vec![
            Query::new(ShiftedSurge::new(100.0, 50.0, 0.9).unwrap()).with_id("a\"b\n\u{1}é"),
            Query::new(ShiftedSurge::new(100.0, 50.0, 0.9).unwrap()).with_cap(120),
            Query::new(ShiftedSurge::new(5000.0, 50.0, 0.1).unwrap()).with_id("far"),
        ];
        let by_budget = Allocator::default().allocate(&queries, 500).unwrap();
        let by_price = Allocator::default()
            .allocate_at_price(&queries, 0.0)
            .unwrap();
        let empty = Allocator::default().allocate(&queries[..0], 10).unwrap();
        for (queries, allocation) in [
            (&queries[..], by_budget),
            (&queries[..], by_price),
            (&queries[..0], empty),
        ] {
            let view = ResponseView::new(&allocation, queries.iter().map(Query::id));
            let response = AllocationResponse::new(queries, &allocation);
            // On one thread, and on two a chunk of one or two grants at a time.
            for (parallel_from, chunk) in [(PARALLEL_GRANTS, CHUNK_GRANTS), (2, 1), (2, 2)] {
                let mut compact = Vec::new();
                view.write_compact_from(&mut compact, parallel_from, chunk)
                    .unwrap();
                assert_eq!(
                    String::from_utf8(compact).unwrap(),
                    serde_json::to_string(&response).unwrap()
                );
            }
            assert_eq!(
                serde_json::to_string_pretty(&view).unwrap(),
                serde_json::to_string_pretty(&response).unwrap()
            );
        }
    }
}
