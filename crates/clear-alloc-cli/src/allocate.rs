//! `clear-alloc allocate` as a library function: request bytes in, response JSON out,
//! so that the program, its tests and the fuzz target run the same code.
//!
//! ```
//! use clear_alloc_cli::allocate::{run_allocate, AllocateOptions};
//!
//! let request = br#"{"budget": 500, "queries": [{"id": "q", "threshold": 100, "width": 50, "ceiling": 0.9}]}"#;
//! let response = run_allocate(request, &AllocateOptions::default())?;
//! assert!(response.contains("\"total_tokens\": 500"));
//! let err = run_allocate(br#"{"budget": 1, "queries": []} trailing"#, &AllocateOptions::default());
//! assert!(err.unwrap_err().starts_with("request: trailing characters"));
//! # Ok::<(), String>(())
//! ```

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use crate::input::{check_size, one_line};
use crate::wire::AllocationRequest;

/// Default for `--max-request-bytes`: 64 MiB, some 500 000 queries as written by
/// `clear-alloc fit`.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 64 << 20;
/// Default for `--max-queries`.
pub const DEFAULT_MAX_QUERIES: usize = 1_000_000;

/// The command line of `clear-alloc allocate`: budget or price overrides and the
/// resource limits.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocateOptions {
    budget: Option<u64>,
    price: Option<f64>,
    max_request_bytes: u64,
    max_queries: usize,
}

impl Default for AllocateOptions {
    fn default() -> Self {
        AllocateOptions {
            budget: None,
            price: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_queries: DEFAULT_MAX_QUERIES,
        }
    }
}

impl AllocateOptions {
    /// Reads the options after `allocate`: `--budget N`, `--price X`,
    /// `--max-request-bytes N`, `--max-queries N`.
    ///
    /// # Errors
    /// A one-line message for an unknown option, a missing value or a value that
    /// does not parse (the program exits with status 2).
    pub fn from_args(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut options = AllocateOptions::default();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or(format!("{flag:?} needs a value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{flag} {value:?}: {e}");
            match flag.as_str() {
                "--budget" => {
                    options.budget = Some(value.parse().map_err(|e| bad(&e))?);
                    options.price = None;
                }
                "--price" => {
                    options.price = Some(value.parse().map_err(|e| bad(&e))?);
                    options.budget = None;
                }
                "--max-request-bytes" => {
                    options.max_request_bytes = value.parse().map_err(|e| bad(&e))?
                }
                "--max-queries" => options.max_queries = value.parse().map_err(|e| bad(&e))?,
                _ => {
                    return Err(format!(
                        "unknown option {flag:?} (expected --budget N, --price X, \
                         --max-request-bytes N or --max-queries N)"
                    ))
                }
            }
        }
        Ok(options)
    }

    /// Most bytes a request may have.
    pub fn max_request_bytes(&self) -> u64 {
        self.max_request_bytes
    }

    /// Most queries a request may have.
    pub fn max_queries(&self) -> usize {
        self.max_queries
    }
}

/// Reads a request, applies the command line's budget or price, allocates, and
/// returns the response as pretty-printed JSON.
///
/// # Errors
/// One line (control characters escaped) naming what is wrong: the JSON, trailing
/// input after the request, a query and its field, or a limit exceeded.
pub fn run_allocate(input: &[u8], options: &AllocateOptions) -> Result<String, String> {
    check_size(
        input.len(),
        options.max_request_bytes,
        "request",
        "--max-request-bytes",
    )?;
    let too_many = |count: usize| {
        format!(
            "request: {count} queries, more than the limit of {} (--max-queries raises it)",
            options.max_queries
        )
    };
    // Every query takes at least three bytes (`{}` and a comma or bracket), so only a
    // request that long can exceed the limit; for it, count the queries without
    // building them, which would take some 50 times the request's size in memory.
    if input.len() / 3 > options.max_queries {
        if let Ok(QueryCount { queries: Count(n) }) = serde_json::from_slice(input) {
            if n > options.max_queries {
                return Err(too_many(n));
            }
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    let mut request: AllocationRequest = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                one_line(&format!("request: {inner}"))
            } else {
                one_line(&format!("{path}: {inner}"))
            }
        })?;
    deserializer
        .end()
        .map_err(|e| format!("request: {e} (after the request's closing brace)"))?;
    // Unreachable while the counting pass sees what the parser sees; kept so that the
    // limit does not depend on that.
    if request.queries.len() > options.max_queries {
        return Err(too_many(request.queries.len()));
    }
    if let Some(budget) = options.budget {
        request.budget = Some(budget);
        request.price = None;
    }
    if let Some(price) = options.price {
        request.price = Some(price);
        request.budget = None;
    }
    let response = request.run().map_err(|e| one_line(&e.to_string()))?;
    serde_json::to_string_pretty(&response).map_err(|e| one_line(&e.to_string()))
}

/// The request's `queries`, counted and skipped.
#[derive(Deserialize)]
struct QueryCount {
    #[serde(default)]
    queries: Count,
}

#[derive(Default)]
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Counter;
        impl<'de> Visitor<'de> for Counter {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
        }
        deserializer.deserialize_seq(Counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn options_parse_and_the_last_of_budget_and_price_wins() {
        let options = AllocateOptions::from_args(args(&[
            "--price",
            "0.5",
            "--budget",
            "7",
            "--max-queries",
            "3",
        ]))
        .unwrap();
        assert_eq!(options.budget, Some(7));
        assert_eq!(options.price, None);
        assert_eq!(options.max_queries(), 3);
        assert_eq!(options.max_request_bytes(), DEFAULT_MAX_REQUEST_BYTES);
        assert!(AllocateOptions::from_args(args(&["--budget"])).is_err());
        assert!(AllocateOptions::from_args(args(&["--max-queries", "-1"])).is_err());
    }

    #[test]
    fn the_query_limit_counts_queries_and_leaves_bad_json_to_the_parser() {
        let options = AllocateOptions::from_args(args(&["--max-queries", "2"])).unwrap();
        let query = r#"{"threshold": 1, "width": 1, "ceiling": 1}"#;
        let request = |n: usize| {
            format!(
                r#"{{"budget": 5, "queries": [{}]}}"#,
                vec![query; n].join(",")
            )
        };
        assert_eq!(
            run_allocate(request(3).as_bytes(), &options).unwrap_err(),
            "request: 3 queries, more than the limit of 2 (--max-queries raises it)"
        );
        assert!(run_allocate(request(2).as_bytes(), &options).is_ok());
        // Malformed and long enough to be counted: the parser's error, not the count's.
        let broken = format!("{}x", request(3));
        let err = run_allocate(broken.as_bytes(), &options).unwrap_err();
        assert!(err.starts_with("request: trailing characters"), "{err}");
    }
}
