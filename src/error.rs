//! The crate's one error type.
//!
//! Every variant carries what a caller needs to find and fix the input: the query's
//! position (and id, when it has one), the field, and the offending value.

use std::fmt;

/// Everything that can go wrong in this crate.
///
/// Bad input is always reported through this enum, never by a panic.
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
    #[error("{field} = {} is invalid: {reason}", Num(*.value))]
    InvalidParameter {
        /// The parameter's name, e.g. `"width"`.
        field: &'static str,
        /// The value that was passed.
        value: f64,
        /// What the value must be.
        reason: &'static str,
    },

    /// A field of one query in a batch is out of its domain.
    #[error("query {index}{}: {field} = {} is invalid: {reason}", IdSuffix(.id), Num(*.value))]
    InvalidQuery {
        /// Position of the query in the batch (0-based).
        index: usize,
        /// The query's id, when it has one.
        id: Option<String>,
        /// The field's name, e.g. `"weight"`.
        field: &'static str,
        /// The value that was passed.
        value: f64,
        /// What the value must be.
        reason: &'static str,
    },

    /// An option of the allocator (or another configurable component) is invalid.
    #[error("option {option} = {} is invalid: {reason}", Num(*.value))]
    InvalidOption {
        /// The option's name, e.g. `"granularity"`.
        option: &'static str,
        /// The value that was passed.
        value: f64,
        /// What the value must be.
        reason: &'static str,
    },

    /// A required field is absent, or conflicts with another.
    #[error("{}{field} {reason}", QueryPrefix(.index, .id))]
    MissingField {
        /// Position of the query in the batch, when the field belongs to one.
        index: Option<usize>,
        /// The query's id, when it has one.
        id: Option<String>,
        /// The field's name, e.g. `"ceiling"`.
        field: &'static str,
        /// What is wrong, e.g. `"is missing (width was given)"`.
        reason: &'static str,
    },

    /// The data given for one query cannot determine what was asked of it.
    #[error("query {query}: {reason}")]
    InsufficientData {
        /// The query's id (or position, when it has no id).
        query: String,
        /// Why the data is not enough.
        reason: String,
    },

    /// A record of an input file could not be read.
    #[error("line {line}: field `{field}`: {reason}")]
    Parse {
        /// 1-based line number in the input (the header is line 1).
        line: usize,
        /// The field that could not be read.
        field: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl Error {
    /// Attaches a query's position and id to a curve-level [`Error::InvalidParameter`];
    /// other variants pass through unchanged.
    pub fn for_query(self, index: usize, id: Option<&str>) -> Error {
        match self {
            Error::InvalidParameter {
                field,
                value,
                reason,
            } => Error::InvalidQuery {
                index,
                id: id.map(str::to_owned),
                field,
                value,
                reason,
            },
            other => other,
        }
    }
}

/// Formats a value as written for people: whole numbers up to 2^64 (token counts,
/// options) in full, others plain for everyday magnitudes and in exponent form for tiny
/// or huge ones (Rust's `Display` would print 1e-300 with 300 digits).
struct Num(f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let magnitude = self.0.abs();
        if self.0.fract() == 0.0 && magnitude <= 18_446_744_073_709_551_616.0 {
            // `as u64` saturates 2^64 (what u64::MAX becomes as f64) to u64::MAX, which
            // reads back as the same f64.
            let sign = if self.0 < 0.0 { "-" } else { "" };
            write!(f, "{sign}{}", magnitude as u64)
        } else if magnitude != 0.0 && magnitude.is_finite() && !(1e-4..1e15).contains(&magnitude) {
            write!(f, "{:e}", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Formats ` (id "q1")` after a query index, or nothing.
struct IdSuffix<'a>(&'a Option<String>);

impl fmt::Display for IdSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, " (id {id:?})"),
            None => Ok(()),
        }
    }
}

/// Formats `query 3 (id "q4"): ` before a query's field, or nothing.
struct QueryPrefix<'a>(&'a Option<usize>, &'a Option<String>);

impl fmt::Display for QueryPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(index) => write!(f, "query {index}{}: ", IdSuffix(self.1)),
            None => Ok(()),
        }
    }
}

/// Shorthand for `std::result::Result<T, clear_alloc::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_errors_name_index_id_field_and_value() {
        let err = Error::InvalidParameter {
            field: "weight",
            value: -1.0,
            reason: "must be finite and >= 0",
        }
        .for_query(3, Some("q7"));
        assert_eq!(
            err.to_string(),
            "query 3 (id \"q7\"): weight = -1 is invalid: must be finite and >= 0"
        );
        let anonymous = Error::InvalidQuery {
            index: 0,
            id: None,
            field: "cap",
            value: 0.0,
            reason: "x",
        };
        assert_eq!(anonymous.to_string(), "query 0: cap = 0 is invalid: x");
    }

    #[test]
    fn extreme_values_print_in_exponent_form() {
        let tiny = Error::InvalidParameter {
            field: "weight",
            value: 1e-300,
            reason: "x",
        };
        assert_eq!(tiny.to_string(), "weight = 1e-300 is invalid: x");
        let huge = Error::InvalidOption {
            option: "granularity",
            value: 1.8446744073709552e19,
            reason: "x",
        };
        assert_eq!(
            huge.to_string(),
            "option granularity = 18446744073709551615 is invalid: x"
        );
        let beyond_u64 = Error::InvalidParameter {
            field: "weight",
            value: 1e300,
            reason: "x",
        };
        assert_eq!(beyond_u64.to_string(), "weight = 1e300 is invalid: x");
        let plain = Error::InvalidParameter {
            field: "width",
            value: -2.5,
            reason: "x",
        };
        assert_eq!(plain.to_string(), "width = -2.5 is invalid: x");
    }

    #[test]
    fn for_query_leaves_other_variants_alone() {
        let err = Error::Parse {
            line: 2,
            field: "tokens".into(),
            reason: "not a number".into(),
        };
        assert_eq!(err.clone().for_query(1, None), err);
    }
}
