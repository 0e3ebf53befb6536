//! The crate's error type: bad options at build time, and an unreachable Redis when a
//! caller asks for a check.

use std::fmt;

/// What can go wrong when building or checking a [`RedisLedger`](crate::RedisLedger).
/// Once built, a ledger never fails a call: faults degrade to smaller leases (see the
/// crate docs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An option is invalid.
    InvalidOption {
        /// The option's name, e.g. `"namespace"`.
        option: &'static str,
        /// The value that was passed, as text.
        value: String,
        /// What the value must be.
        reason: &'static str,
    },
    /// Redis could not be reached (or answered with an error).
    Unreachable {
        /// The ledger's Redis URL.
        url: String,
        /// What the client reported.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidOption {
                option,
                value,
                reason,
            } => write!(f, "option {option} = {value:?} is invalid: {reason}"),
            Error::Unreachable { url, reason } => {
                write!(f, "Redis at {url} is unreachable: {reason}")
            }
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_option_or_the_url() {
        let e = Error::InvalidOption {
            option: "namespace",
            value: "a b".into(),
            reason: "must be 1 to 64 of A-Z a-z 0-9 _ . -",
        };
        assert_eq!(
            e.to_string(),
            "option namespace = \"a b\" is invalid: must be 1 to 64 of A-Z a-z 0-9 _ . -"
        );
        let e = Error::Unreachable {
            url: "redis://127.0.0.1:1/".into(),
            reason: "connection refused".into(),
        };
        assert!(e.to_string().contains("redis://127.0.0.1:1/"));
    }
}
