//! The `clear-alloc` command-line program's JSON contract, as a library so that its
//! integration tests and other programs can build requests and read responses.
//!
//! The program itself (`src/main.rs`) has two subcommands:
//!
//! ```text
//! clear-alloc fit rollouts.csv | clear-alloc allocate --budget 2000
//! clear-alloc allocate < request.json
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod wire;
