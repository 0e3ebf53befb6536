//! Reading a request straight from its bytes, once: each query is validated as it is
//! read (no list of specs is kept), its id is borrowed from the input (copied only
//! when it holds an escape), and the query limit is enforced while reading, so that a
//! request over it costs no more memory than the limit allows.
//!
//! The contract is [`AllocationRequest`]'s: the same fields, the same errors with the
//! same JSON paths; what differs is only what is kept. A query that is not valid is
//! remembered and reported after the whole request has been read, so that a JSON error
//! anywhere in it comes first, as when the request is parsed whole and then validated.

use std::borrow::Cow;
use std::fmt;
use std::io::Write;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use clear_alloc::{Allocation, AnyCurve, Error, Query, ShiftedSurge};

use crate::input::one_line;
use crate::response::ResponseView;
use crate::wire::{AllocationRequest, QueryFields};

/// A query's id as read: borrowed from the request's bytes unless it holds an escape.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct BorrowedId<'a>(pub(crate) Cow<'a, str>);

impl AsRef<str> for BorrowedId<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for BorrowedId<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = BorrowedId<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, id: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedId(Cow::Borrowed(id)))
            }
            fn visit_str<E: de::Error>(self, id: &str) -> Result<Self::Value, E> {
                Ok(BorrowedId(Cow::Owned(id.to_owned())))
            }
            fn visit_string<E: de::Error>(self, id: String) -> Result<Self::Value, E> {
                Ok(BorrowedId(Cow::Owned(id)))
            }
        }
        deserializer.deserialize_str(IdVisitor)
    }
}

/// A request as `clear-alloc allocate` reads it (with
/// [`read_request`](crate::allocate::read_request)): its queries validated, their ids
/// borrowed from the request's bytes.
#[derive(Debug)]
pub struct Request<'a> {
    /// Budget, price, default cap and granularity (`queries` is left empty).
    pub(crate) terms: AllocationRequest,
    /// The queries, validated, without their ids; up to the first invalid one.
    pub(crate) queries: Batch,
    /// Each query's id, in input order.
    pub(crate) ids: Vec<Option<BorrowedId<'a>>>,
    /// The first query that is not valid.
    pub(crate) invalid: Option<Error>,
    /// How many queries the request holds, when that is more than the limit.
    pub(crate) over_limit: Option<usize>,
}

impl Request<'_> {
    /// How many queries the request holds.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the request holds no query.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Query `index`'s id.
    fn id(&self, index: usize) -> Option<&str> {
        self.ids[index].as_ref().map(AsRef::as_ref)
    }

    /// Allocates the request's budget (or prices its queries) as
    /// [`AllocationRequest::run`] does.
    ///
    /// # Errors
    /// One line: a bad `default_cap` or `granularity`, the first query that is not
    /// valid (naming it and the field), a batch whose total utility overflows, or a
    /// missing or conflicting budget and price.
    pub fn allocate(&self) -> Result<Allocation, String> {
        let invalid = |e: &Error| one_line(&e.to_string());
        let allocator = self.terms.allocator().map_err(|e| invalid(&e))?;
        if let Some(error) = &self.invalid {
            return Err(invalid(error));
        }
        let id_of = |i| self.id(i);
        match &self.queries {
            Batch::Surges(queries) => self.terms.clear(&allocator, queries, id_of),
            Batch::Mixed(queries) => self.terms.clear(&allocator, queries, id_of),
        }
        .map_err(|e| invalid(&e))
    }

    /// Writes the response to `allocation` (of this request) to `out`: an
    /// [`AllocationResponse`](crate::wire::AllocationResponse), compact or, if
    /// `pretty`, indented.
    ///
    /// # Errors
    /// Why writing to `out` failed (`response: …`).
    pub fn write_response(
        &self,
        allocation: &Allocation,
        pretty: bool,
        out: impl Write,
    ) -> Result<(), String> {
        let ids = self.ids.iter().map(|id| id.as_ref().map(AsRef::as_ref));
        let response = ResponseView::new(allocation, ids);
        if pretty {
            serde_json::to_writer_pretty(out, &response).map_err(std::io::Error::from)
        } else {
            response.write_compact(out)
        }
        .map_err(|e| one_line(&format!("response: {e}")))
    }
}

/// A request's queries: shifted surges only, as most requests are, which the allocator
/// serves without dispatching on the curve's kind; or curves of any kind.
#[derive(Debug)]
pub(crate) enum Batch {
    /// Every query so far is a shifted surge.
    Surges(Vec<Query<ShiftedSurge>>),
    /// Some query is of another kind.
    Mixed(Vec<Query<AnyCurve>>),
}

impl Batch {
    /// Adds query `index` of `spec`.
    ///
    /// # Errors
    /// As [`QueryFields::to_query`].
    pub(crate) fn push<Id: AsRef<str>>(
        &mut self,
        spec: &QueryFields<Id>,
        index: usize,
    ) -> Result<(), Error> {
        match self {
            Batch::Surges(queries) if spec.is_surge() => {
                queries.push(spec.to_unnamed_surge(index)?);
            }
            Batch::Surges(surges) => {
                let query = spec.to_unnamed_query(index)?;
                let mut queries = widen(surges, surges.capacity())?;
                queries.push(query);
                *self = Batch::Mixed(queries);
            }
            Batch::Mixed(queries) => queries.push(spec.to_unnamed_query(index)?),
        }
        Ok(())
    }

    /// Appends `other`'s queries after this batch's, as queries of any curve if either
    /// batch holds another kind.
    pub(crate) fn append(&mut self, other: Batch) -> Result<(), Error> {
        match (&mut *self, other) {
            (Batch::Surges(queries), Batch::Surges(mut more)) => queries.append(&mut more),
            (Batch::Mixed(queries), Batch::Mixed(mut more)) => queries.append(&mut more),
            (Batch::Mixed(queries), Batch::Surges(more)) => {
                queries.append(&mut widen(&more, more.len())?)
            }
            (Batch::Surges(surges), Batch::Mixed(mut more)) => {
                let mut queries = widen(surges, surges.len() + more.len())?;
                queries.append(&mut more);
                *self = Batch::Mixed(queries);
            }
        }
        Ok(())
    }
}

/// `surges` as queries of any curve (with room for `capacity`): the same curve, weight
/// and cap each.
fn widen(surges: &[Query<ShiftedSurge>], capacity: usize) -> Result<Vec<Query<AnyCurve>>, Error> {
    let mut queries = Vec::with_capacity(capacity);
    for surge in surges {
        // Valid as the surge's query was.
        let widened = Query::new(AnyCurve::from(*surge.curve())).with_weight(surge.weight())?;
        queries.push(match surge.cap() {
            Some(cap) => widened.with_cap(cap),
            None => widened,
        });
    }
    Ok(queries)
}

/// Reads the request in `input`, which must hold nothing else but whitespace, keeping
/// at most `max_queries` queries.
///
/// # Errors
/// One line naming the JSON path of what is malformed (`queries[3].threshold: …`), or
/// `request: …` for the request as a whole and for input after it.
pub(crate) fn read(input: &[u8], max_queries: usize) -> Result<Request<'_>, String> {
    // Any error, or anything unusual, and the request is read again on one thread,
    // which names the error's path, line and column.
    match crate::parallel::read(input, max_queries) {
        Some(request) => Ok(request),
        None => read_serial(input, max_queries),
    }
}

/// [`read`] on this thread.
pub(crate) fn read_serial(input: &[u8], max_queries: usize) -> Result<Request<'_>, String> {
    // The smallest surge query, `{"threshold":0,"width":1,"ceiling":1},`, takes 39
    // bytes: room for that many queries means one allocation in the common case, and
    // reserved room that is never written costs no memory.
    let seed = RequestSeed {
        max_queries,
        capacity: max_queries.min(input.len() / 39),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    match seed.deserialize(&mut deserializer) {
        Ok(request) => {
            deserializer
                .end()
                .map_err(|e| format!("request: {e} (after the request's closing brace)"))?;
            Ok(request)
        }
        // Tracking the path costs a copy of every key read, so it is paid only to
        // name where the error is: reading the same bytes again fails at the same place.
        Err(error) => {
            Err(error_at_path(input, seed)
                .unwrap_or_else(|| one_line(&format!("request: {error}"))))
        }
    }
}

/// The error of reading `input` with `seed`, prefixed with its JSON path
/// (`queries[3].threshold: …`, or `request: …` for the request as a whole); `None` if
/// the input reads without error.
fn error_at_path(input: &[u8], seed: RequestSeed) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    let mut track = serde_path_to_error::Track::new();
    let result = seed.deserialize(serde_path_to_error::Deserializer::new(
        &mut deserializer,
        &mut track,
    ));
    let inner = result.err()?;
    let path = track.path().to_string();
    Some(if path == "." {
        one_line(&format!("request: {inner}"))
    } else {
        one_line(&format!("{path}: {inner}"))
    })
}

/// The request's fields, as [`AllocationRequest`] names them.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Budget,
    Price,
    DefaultCap,
    Granularity,
    Queries,
}

/// Reads the request's object.
#[derive(Clone, Copy)]
struct RequestSeed {
    max_queries: usize,
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for RequestSeed {
    type Value = Request<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        const FIELDS: &[&str] = &["budget", "price", "default_cap", "granularity", "queries"];
        deserializer.deserialize_struct("AllocationRequest", FIELDS, self)
    }
}

/// Reads the value of field `name` into `slot`, unless it was read already.
fn once<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> Visitor<'de> for RequestSeed {
    type Value = Request<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct AllocationRequest")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut budget, mut price, mut default_cap, mut granularity) = (None, None, None, None);
        let mut queries = None;
        while let Some(field) = map.next_key()? {
            match field {
                Field::Budget => once(&mut map, &mut budget, "budget")?,
                Field::Price => once(&mut map, &mut price, "price")?,
                Field::DefaultCap => once(&mut map, &mut default_cap, "default_cap")?,
                Field::Granularity => once(&mut map, &mut granularity, "granularity")?,
                Field::Queries => {
                    if queries.is_some() {
                        return Err(de::Error::duplicate_field("queries"));
                    }
                    queries = Some(map.next_value_seed(QueriesSeed(self))?);
                }
            }
        }
        let queries = queries.ok_or_else(|| de::Error::missing_field("queries"))?;
        Ok(Request {
            terms: AllocationRequest {
                budget: budget.flatten(),
                price: price.flatten(),
                default_cap: default_cap.flatten(),
                granularity: granularity.flatten(),
                queries: Vec::new(),
            },
            ..queries
        })
    }
}

/// Reads the `queries` array (within the request's limits), validating each query as
/// it comes.
struct QueriesSeed(RequestSeed);

impl<'de> DeserializeSeed<'de> for QueriesSeed {
    type Value = Request<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for QueriesSeed {
    type Value = Request<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let RequestSeed {
            max_queries,
            capacity,
        } = self.0;
        let mut queries = Batch::Surges(Vec::with_capacity(capacity));
        let mut ids = Vec::with_capacity(capacity);
        let mut invalid = None;
        let mut count = 0;
        while count < max_queries {
            let Some(spec) = seq.next_element::<QueryFields<BorrowedId<'de>>>()? else {
                break;
            };
            if invalid.is_none() {
                invalid = queries.push(&spec, count).err();
            }
            ids.push(spec.id);
            count += 1;
        }
        // Past the limit the queries are only counted, for the error.
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok(Request {
            terms: AllocationRequest::default(),
            queries,
            ids,
            invalid,
            over_limit: (count > max_queries).then_some(count),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Query `i` of `batch` as a query of any curve: curve, cap and weight.
    fn parts(batch: &Batch, i: usize) -> (AnyCurve, Option<u64>, f64) {
        match batch {
            Batch::Surges(queries) => {
                let q = &queries[i];
                (AnyCurve::from(*q.curve()), q.cap(), q.weight())
            }
            Batch::Mixed(queries) => {
                let q = &queries[i];
                (q.curve().clone(), q.cap(), q.weight())
            }
        }
    }

    /// Checks `input`'s queries against the derived parser's, validated one by one.
    fn assert_reads_as_derived(input: &[u8]) -> Request<'_> {
        let derived: AllocationRequest = serde_json::from_slice(input).unwrap();
        let request = read(input, 10).unwrap();
        assert_eq!(
            request.terms,
            AllocationRequest {
                queries: Vec::new(),
                ..derived.clone()
            }
        );
        assert_eq!(request.len(), derived.queries.len());
        for (i, spec) in derived.queries.iter().enumerate() {
            assert_eq!(request.id(i), spec.id.as_deref());
            let query = spec.to_query(i).unwrap();
            let expected = (query.curve().clone(), query.cap(), query.weight());
            assert_eq!(parts(&request.queries, i), expected, "query {i}");
        }
        request
    }

    #[test]
    fn ids_are_borrowed_unless_they_hold_an_escape() {
        let input = br#"{"queries": [{"id": "plain", "points": [[1, 1]]},
                                     {"id": "new\nline", "points": [[1, 1]]},
                                     {"points": [[1, 1]]}]}"#;
        let request = assert_reads_as_derived(input);
        assert!(matches!(
            request.ids[0],
            Some(BorrowedId(Cow::Borrowed("plain")))
        ));
        assert!(matches!(&request.ids[1], Some(BorrowedId(Cow::Owned(id))) if id == "new\nline"));
        assert_eq!(request.ids[2], None);
    }

    #[test]
    fn the_request_reads_as_the_derived_parser_reads_it() {
        let input = br#"{"granularity": 5, "price": null, "budget": 700, "default_cap": 900,
            "queries": [{"id": "a", "threshold": 10, "width": 20, "ceiling": 0.5, "cap": 40},
                        {"threshold": 1, "alpha": 0.001, "beta": 0.01, "weight": 2}]}"#;
        let request = assert_reads_as_derived(input);
        assert!(matches!(request.queries, Batch::Surges(_)));
    }

    #[test]
    fn surges_read_before_another_curve_are_kept_with_their_cap_and_weight() {
        let input = br#"{"queries": [
            {"threshold": 10, "width": 20, "ceiling": 0.5, "cap": 40, "weight": 3},
            {"threshold": 1, "alpha": 0.001, "beta": 0.01},
            {"points": [[100, 0.5]], "weight": 0.5},
            {"id": "d", "threshold": 7, "width": 9, "ceiling": 1}]}"#;
        let request = assert_reads_as_derived(input);
        assert!(matches!(request.queries, Batch::Mixed(_)));
    }

    #[test]
    fn errors_name_the_path_as_the_derived_parser_does() {
        for (input, message) in [
            (
                &br#"{"budget": 1, "budget": 2, "queries": []}"#[..],
                "request: duplicate field `budget` at line 1 column 22",
            ),
            (
                br#"{"budget": 1}"#,
                "request: missing field `queries` at line 1 column 13",
            ),
            (
                br#"{"queries": [], "extra": 1}"#,
                "extra: unknown field `extra`, expected one of `budget`, `price`, \
                 `default_cap`, `granularity`, `queries` at line 1 column 23",
            ),
            (
                br#"{"queries": [{"id": 5}]}"#,
                "queries[0].id: invalid type: integer `5`, expected a string at line 1 column 21",
            ),
            (
                br#"{"queries": {}}"#,
                "queries: invalid type: map, expected a sequence at line 1 column 12",
            ),
            (
                br#"[]"#,
                "request: invalid type: sequence, expected struct AllocationRequest at line 1 column 2",
            ),
        ] {
            // The message of the derived parser, as the program wrote it before.
            let derived = serde_path_to_error::deserialize::<_, AllocationRequest>(
                &mut serde_json::Deserializer::from_slice(input),
            )
            .map(|_| ())
            .map_err(|e| match e.path().to_string() {
                path if path == "." => format!("request: {}", e.into_inner()),
                path => format!("{path}: {}", e.into_inner()),
            });
            if input != b"[]" {
                assert_eq!(derived.err().as_deref(), Some(message));
            }
            assert_eq!(read(input, 10).err().as_deref(), Some(message));
        }
    }

    #[test]
    fn queries_past_the_limit_are_counted_not_kept() {
        let input =
            br#"{"queries": [{"points": [[1, 1]]}, {"points": [[1, 1]]}, {"not": "a query"}]}"#;
        let request = read(input, 1).unwrap();
        assert_eq!(request.over_limit, Some(3));
        assert_eq!(request.len(), 1);
        assert_eq!(
            read(input, 3)
                .unwrap_err()
                .matches("unknown field `not`")
                .count(),
            1
        );
    }

    #[test]
    fn an_invalid_query_waits_for_the_rest_of_the_request() {
        let bad =
            br#"{"queries": [{"threshold": -1, "width": 1, "ceiling": 1}, {"points": [[1, 1]]}]}"#;
        let request = read(bad, 10).unwrap();
        assert_eq!(
            request.invalid.unwrap().to_string(),
            "query 0: threshold = -1 is invalid: must be finite and >= 0"
        );
        assert_eq!(request.ids.len(), 2);
        let malformed =
            br#"{"queries": [{"threshold": -1, "width": 1, "ceiling": 1}, {"points": 5}]}"#;
        assert!(read(malformed, 10)
            .unwrap_err()
            .starts_with("queries[1].points:"));
    }
}
