//! The crate's one error type, and the one helper that checks a value against its
//! rule.
//!
//! Every variant carries what a caller needs to find and fix the input: the query
//! (its position and id, as a [`QueryRef`]), the field, and the offending value — a
//! float as a float and a count as an integer ([`Value`]). Every message is one line.

use std::fmt;

/// Everything that can go wrong in this crate.
///
/// Bad input is always reported through this enum, never by a panic. The enum and
/// its variants are `#[non_exhaustive]`: match with `..`, and build errors (in a
/// crate that extends this one) with the constructors such as
/// [`Error::invalid_option`].
///
/// ```
/// use clear_alloc::{Error, ShiftedSurge};
///
/// let err = ShiftedSurge::new(f64::NAN, 100.0, 0.9).unwrap_err();
/// assert!(matches!(err, Error::InvalidParameter { field: "threshold", .. }));
/// assert_eq!(err.to_string(), "threshold = NaN is invalid: must be finite and >= 0");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter of a single curve (or a single call) is out of its domain.
    #[error("{field} = {value} is invalid: {reason}")]
    #[non_exhaustive]
    InvalidParameter {
        /// The parameter's name, e.g. `"width"`.
        field: &'static str,
        /// The value that was passed.
        value: Value,
        /// What the value must be.
        reason: &'static str,
    },

    /// A field of one query in a batch is out of its domain.
    #[error("{query}: {field} = {value} is invalid: {reason}")]
    #[non_exhaustive]
    InvalidQuery {
        /// The query.
        query: QueryRef,
        /// The field's name, e.g. `"weight"`.
        field: &'static str,
        /// The value that was passed.
        value: Value,
        /// What the value must be.
        reason: &'static str,
    },

    /// An option of the allocator (or another configurable component) is invalid.
    #[error("option {option} = {value} is invalid: {reason}")]
    #[non_exhaustive]
    InvalidOption {
        /// The option's name, e.g. `"granularity"`.
        option: &'static str,
        /// The value that was passed.
        value: Value,
        /// What the value must be.
        reason: &'static str,
    },

    /// A required field is absent, or conflicts with another.
    #[error("{}{field} {reason}", QueryPrefix(.query))]
    #[non_exhaustive]
    MissingField {
        /// The query the field belongs to, when it belongs to one.
        query: Option<QueryRef>,
        /// The field's name, e.g. `"ceiling"`.
        field: &'static str,
        /// What is wrong, e.g. `"is missing (width was given)"`.
        reason: &'static str,
    },

    /// The data given (for one query, or for a fit across queries) cannot determine
    /// what was asked of it.
    #[error("{}{reason}", QueryPrefix(.query))]
    #[non_exhaustive]
    InsufficientData {
        /// The query, when the data is one query's; otherwise the reason names the
        /// data (e.g. `"budget sweep: …"`).
        query: Option<QueryRef>,
        /// Why the data is not enough.
        reason: String,
    },

    /// A record of an input file could not be read.
    #[error("line {line}: field `{field}`: {reason}")]
    #[non_exhaustive]
    Parse {
        /// 1-based line number in the input (the header is line 1).
        line: usize,
        /// The field that could not be read.
        field: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// A query named in an error: its position in the batch and its id, each when known.
///
/// It prints as `query 3 (id "q7")`, `query 3`, or `query "q7"`; the id is quoted
/// with escapes, so a message stays on one line whatever the id holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct QueryRef {
    /// Position of the query in its batch (0-based), when the error comes from a
    /// batch.
    pub index: Option<usize>,
    /// The query's id, when it has one.
    pub id: Option<String>,
}

impl QueryRef {
    /// The query at `index` in its batch, with its id if it has one.
    pub fn at(index: usize, id: Option<&str>) -> Self {
        QueryRef {
            index: Some(index),
            id: id.map(str::to_owned),
        }
    }

    /// A query known only by its id.
    pub fn named(id: &str) -> Self {
        QueryRef {
            index: None,
            id: Some(id.to_owned()),
        }
    }
}

impl fmt::Display for QueryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.index, &self.id) {
            (Some(index), Some(id)) => write!(f, "query {index} (id {id:?})"),
            (Some(index), None) => write!(f, "query {index}"),
            (None, Some(id)) => write!(f, "query {id:?}"),
            (None, None) => write!(f, "query"),
        }
    }
}

/// The offending value in an error: a real number, or a count of tokens, queries or
/// steps, kept as an integer so that it prints exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A real number (a weight, a price, a curve parameter).
    Real(f64),
    /// A count (tokens, a length, a granularity); wide enough for a sum of `u64`s.
    Integer(u128),
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Real(value)
    }
}

impl From<u64> for Value {
    fn from(value: u64) -> Self {
        Value::Integer(value.into())
    }
}

impl From<usize> for Value {
    fn from(value: usize) -> Self {
        Value::Integer(value as u128)
    }
}

impl From<u128> for Value {
    fn from(value: u128) -> Self {
        Value::Integer(value)
    }
}

/// Reals as written for people: plain for everyday magnitudes, in exponent form for
/// tiny or huge ones (Rust's `Display` would print 1e-300 with 300 digits); integers
/// exactly.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Integer(n) => write!(f, "{n}"),
            Value::Real(x) => {
                let magnitude = x.abs();
                if magnitude != 0.0 && magnitude.is_finite() && !(1e-4..1e15).contains(&magnitude) {
                    write!(f, "{x:e}")
                } else {
                    write!(f, "{x}")
                }
            }
        }
    }
}

/// Formats `query 3 (id "q4"): ` before a query's field, or nothing.
struct QueryPrefix<'a>(&'a Option<QueryRef>);

impl fmt::Display for QueryPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(query) => write!(f, "{query}: "),
            None => Ok(()),
        }
    }
}

impl Error {
    /// An invalid parameter of a curve or a call.
    pub fn invalid_parameter(
        field: &'static str,
        value: impl Into<Value>,
        reason: &'static str,
    ) -> Self {
        Error::InvalidParameter {
            field,
            value: value.into(),
            reason,
        }
    }

    /// An invalid field of one query.
    pub fn invalid_query(
        query: QueryRef,
        field: &'static str,
        value: impl Into<Value>,
        reason: &'static str,
    ) -> Self {
        Error::InvalidQuery {
            query,
            field,
            value: value.into(),
            reason,
        }
    }

    /// An invalid option of a configurable component.
    pub fn invalid_option(
        option: &'static str,
        value: impl Into<Value>,
        reason: &'static str,
    ) -> Self {
        Error::InvalidOption {
            option,
            value: value.into(),
            reason,
        }
    }

    /// A missing or conflicting field, of a query when `query` names one.
    pub fn missing_field(
        query: Option<QueryRef>,
        field: &'static str,
        reason: &'static str,
    ) -> Self {
        Error::MissingField {
            query,
            field,
            reason,
        }
    }

    /// Names the query an error belongs to: a curve-level [`Error::InvalidParameter`]
    /// becomes an [`Error::InvalidQuery`], and a query error that lacks the position
    /// or id gets them; other variants pass through unchanged.
    #[doc(hidden)]
    pub fn for_query(self, query: QueryRef) -> Error {
        let fill = |known: QueryRef| QueryRef {
            index: known.index.or(query.index),
            id: known.id.or_else(|| query.id.clone()),
        };
        match self {
            Error::InvalidParameter {
                field,
                value,
                reason,
            } => Error::InvalidQuery {
                query,
                field,
                value,
                reason,
            },
            Error::InvalidQuery {
                query: known,
                field,
                value,
                reason,
            } => Error::InvalidQuery {
                query: fill(known),
                field,
                value,
                reason,
            },
            other => other,
        }
    }
}

/// The one check behind every validation in the crate: `Ok` when `ok`, else the
/// error for `subject`'s `field` with its value and the rule it breaks.
pub(crate) fn ensure(
    ok: bool,
    subject: Subject,
    field: &'static str,
    value: impl Into<Value>,
    reason: &'static str,
) -> Result<()> {
    if ok {
        return Ok(());
    }
    Err(match subject {
        Subject::Parameter => Error::invalid_parameter(field, value, reason),
        Subject::Option => Error::invalid_option(field, value, reason),
    })
}

/// What a checked field belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject {
    /// A curve parameter or an argument of a call.
    Parameter,
    /// An option of a builder.
    Option,
}

/// `value` must be finite and ≥ 0.
pub(crate) fn non_negative(subject: Subject, field: &'static str, value: f64) -> Result<()> {
    ensure(
        value.is_finite() && value >= 0.0,
        subject,
        field,
        value,
        "must be finite and >= 0",
    )
}

/// `value` must be finite and > 0.
pub(crate) fn positive(subject: Subject, field: &'static str, value: f64) -> Result<()> {
    ensure(
        value.is_finite() && value > 0.0,
        subject,
        field,
        value,
        "must be finite and > 0",
    )
}

/// A count `value` must be at least 1.
pub(crate) fn at_least_one(subject: Subject, field: &'static str, value: u64) -> Result<()> {
    ensure(value != 0, subject, field, value, "must be >= 1")
}

/// Shorthand for `std::result::Result<T, clear_alloc::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_errors_name_index_id_field_and_value() {
        let err = Error::invalid_parameter("weight", -1.0, "must be finite and >= 0")
            .for_query(QueryRef::at(3, Some("q7")));
        assert_eq!(
            err.to_string(),
            "query 3 (id \"q7\"): weight = -1 is invalid: must be finite and >= 0"
        );
        let anonymous = Error::invalid_query(QueryRef::at(0, None), "cap", 0u64, "x");
        assert_eq!(anonymous.to_string(), "query 0: cap = 0 is invalid: x");
        let named = Error::InsufficientData {
            query: Some(QueryRef::named("a\nb")),
            reason: "no rollouts".into(),
        };
        assert_eq!(named.to_string(), "query \"a\\nb\": no rollouts");
    }

    #[test]
    fn for_query_fills_what_a_query_error_lacks() {
        let err = Error::invalid_query(QueryRef::named("q"), "weight", 2.0, "x")
            .for_query(QueryRef::at(5, Some("other")));
        assert_eq!(
            err.to_string(),
            "query 5 (id \"q\"): weight = 2 is invalid: x"
        );
    }

    #[test]
    fn extreme_values_print_in_exponent_form_and_integers_exactly() {
        let tiny = Error::invalid_parameter("weight", 1e-300, "x");
        assert_eq!(tiny.to_string(), "weight = 1e-300 is invalid: x");
        let huge = Error::invalid_option("granularity", u64::MAX, "x");
        assert_eq!(
            huge.to_string(),
            "option granularity = 18446744073709551615 is invalid: x"
        );
        let plain = Error::invalid_parameter("width", -2.5, "x");
        assert_eq!(plain.to_string(), "width = -2.5 is invalid: x");
        let sum = Error::invalid_parameter("tokens", 2 * u64::MAX as u128, "x");
        assert_eq!(
            sum.to_string(),
            "tokens = 36893488147419103230 is invalid: x"
        );
    }

    #[test]
    fn for_query_leaves_other_variants_alone() {
        let err = Error::Parse {
            line: 2,
            field: "tokens".into(),
            reason: "not a number".into(),
        };
        assert_eq!(err.clone().for_query(QueryRef::at(1, None)), err);
    }

    #[test]
    fn ensure_builds_the_error_for_its_subject() {
        assert!(ensure(true, Subject::Option, "x", 1.0, "r").is_ok());
        let err = non_negative(Subject::Parameter, "weight", f64::NAN)
            .unwrap_err()
            .for_query(QueryRef::at(2, None));
        assert_eq!(
            err.to_string(),
            "query 2: weight = NaN is invalid: must be finite and >= 0"
        );
        let err = at_least_one(Subject::Option, "granularity", 0u64).unwrap_err();
        assert_eq!(
            err.to_string(),
            "option granularity = 0 is invalid: must be >= 1"
        );
        assert!(positive(Subject::Parameter, "width", 0.0).is_err());
    }
}
