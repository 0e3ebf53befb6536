//! Bytes → the CLI's plain query reader (`plain::read_query`, which large requests'
//! parallel read tries on each query before `serde_json`), through
//! `clear_alloc_cli::fuzzing::plain_query`.
//!
//! Checks beyond "no panic": whatever the plain reader reads, `serde_json` reads from
//! the same bytes as a `QueryFields` too, with the same fields, every number equal to
//! the bit, and ending at the same byte. Input it does not read (`None`) is left to
//! `serde_json` and needs no check.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    clear_alloc_cli::fuzzing::plain_query(data);
});
