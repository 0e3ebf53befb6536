//! `clear-alloc allocate` as a library function: request bytes in, response JSON out,
//! so that the program, its tests and the fuzz target run the same code.
//!
//! The request is read once, straight from its bytes (see `request.rs`; a large one
//! on all cores, `parallel.rs`), and the response is written straight from the
//! allocation, compact unless `--pretty`.
//!
//! ```
//! use clear_alloc_cli::allocate::{run_allocate, AllocateOptions};
//!
//! let request = br#"{"budget": 500, "queries": [{"id": "q", "threshold": 100, "width": 50, "ceiling": 0.9}]}"#;
//! let response = run_allocate(request, &AllocateOptions::default())?;
//! assert!(response.contains(r#""total_tokens":500"#));
//! let err = run_allocate(br#"{"budget": 1, "queries": []} trailing"#, &AllocateOptions::default());
//! assert!(err.unwrap_err().starts_with("request: trailing characters"));
//! # Ok::<(), String>(())
//! ```

use std::io::Write;

use crate::input::{check_size, one_line};
use crate::request;
pub use crate::request::Request;

/// Default for `--max-request-bytes`: 64 MiB, some 500 000 queries as written by
/// `clear-alloc fit`.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 64 << 20;
/// Default for `--max-queries`.
pub const DEFAULT_MAX_QUERIES: usize = 1_000_000;

/// The command line of `clear-alloc allocate`: budget or price overrides, the
/// resource limits and the response's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocateOptions {
    budget: Option<u64>,
    price: Option<f64>,
    max_request_bytes: u64,
    max_queries: usize,
    pretty: bool,
}

impl Default for AllocateOptions {
    fn default() -> Self {
        AllocateOptions {
            budget: None,
            price: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_queries: DEFAULT_MAX_QUERIES,
            pretty: false,
        }
    }
}

impl AllocateOptions {
    /// Reads the options after `allocate`: `--budget N`, `--price X`,
    /// `--max-request-bytes N`, `--max-queries N`, `--pretty`.
    ///
    /// # Errors
    /// A one-line message for an unknown option, a missing value or a value that
    /// does not parse (the program exits with status 2).
    pub fn from_args(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut options = AllocateOptions::default();
        while let Some(flag) = args.next() {
            if flag == "--pretty" {
                options.pretty = true;
                continue;
            }
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
                         --max-request-bytes N, --max-queries N or --pretty)"
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

    /// Whether the response is indented (`--pretty`) rather than compact.
    pub fn pretty(&self) -> bool {
        self.pretty
    }
}

/// Reads a request, applies the command line's budget or price, allocates, and
/// returns the response as JSON (compact, or indented with `--pretty`).
///
/// # Errors
/// As [`write_allocate`].
pub fn run_allocate(input: &[u8], options: &AllocateOptions) -> Result<String, String> {
    let mut json = Vec::new();
    write_allocate(input, options, &mut json)?;
    String::from_utf8(json).map_err(|e| one_line(&format!("response: {e}")))
}

/// [`run_allocate`] writing the response to `out` as it is serialised, with no copy
/// of it in memory (give it a buffered writer); nothing is written unless the request
/// is valid and allocated. It is [`read_request`], [`Request::allocate`] and
/// [`Request::write_response`] in turn.
///
/// # Errors
/// One line (control characters escaped) naming what is wrong: the JSON, trailing
/// input after the request, a query and its field, or a limit exceeded; or why
/// writing to `out` failed (`response: …`).
pub fn write_allocate(
    input: &[u8],
    options: &AllocateOptions,
    out: impl Write,
) -> Result<(), String> {
    let request = read_request(input, options)?;
    let allocation = request.allocate()?;
    request.write_response(&allocation, options.pretty, out)
}

/// Reads the request in `input` (nothing but whitespace may follow it) within the
/// limits of `options`, and applies their budget or price.
///
/// # Errors
/// One line naming what is wrong: the JSON (with its path, `queries[3].threshold: …`),
/// input after the request, or a limit exceeded. A query that is well-formed JSON but
/// not a valid query is reported by [`Request::allocate`].
pub fn read_request<'a>(input: &'a [u8], options: &AllocateOptions) -> Result<Request<'a>, String> {
    check_size(
        input.len(),
        options.max_request_bytes,
        "request",
        "--max-request-bytes",
    )?;
    let mut request = request::read(input, options.max_queries)?;
    if let Some(count) = request.over_limit {
        return Err(format!(
            "request: {count} queries, more than the limit of {} (--max-queries raises it)",
            options.max_queries
        ));
    }
    let terms = &mut request.terms;
    if let Some(budget) = options.budget {
        terms.budget = Some(budget);
        terms.price = None;
    }
    if let Some(price) = options.price {
        terms.price = Some(price);
        terms.budget = None;
    }
    Ok(request)
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
