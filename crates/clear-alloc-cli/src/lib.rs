//! The `clear-alloc` command-line program's JSON contract and its `allocate` step, as a
//! library so that its integration tests, fuzz targets and other programs can build
//! requests, run them and read responses.
//!
//! The program itself (`src/main.rs`) has two subcommands:
//!
//! ```text
//! clear-alloc fit rollouts.csv | clear-alloc allocate --budget 2000
//! clear-alloc allocate < request.json
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod allocate;
pub mod input;
mod parallel;
mod plain;
mod request;
mod response;
pub mod wire;

/// Internal: for the fuzz targets (`fuzz/`); not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// Reads the query object at the start of `input` with the plain reader that large
    /// requests use, and checks that what it reads is what `serde_json` reads from the
    /// same bytes (the same fields, numbers equal to the bit, the same end), panicking
    /// if not. Whether the plain reader read it (otherwise it is left to `serde_json`).
    pub fn plain_query(input: &[u8]) -> bool {
        crate::plain::read_as_serde_json_reads(input, 0)
    }
}
