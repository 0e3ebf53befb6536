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
