//! The request the JSON program is measured on: N heterogeneous shifted surges (each
//! query its own threshold 50–900, width 60–400 and ceiling 0.1–1, as the core's
//! `allocate` bench draws them), an id each and a budget of 300 tokens per query.
//! Shared by the `json` bench and the `request` example that writes it to a file.

use std::fmt::Write;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Budget per query: scarce, as in the core's `allocate` bench.
pub const TOKENS_PER_QUERY: u64 = 300;

/// The request for `n` queries, compact, seeded (the same bytes on every run).
/// Parameters are written to 0.1 token and 0.001 of ceiling, as a fit rounded for
/// the wire would be, so that 1 000 000 queries fit the default 64 MiB request limit.
pub fn heterogeneous_request(n: usize) -> String {
    let mut rng = StdRng::seed_from_u64(1);
    let mut json = String::with_capacity(n * 72 + 64);
    write!(
        json,
        r#"{{"budget":{},"queries":["#,
        TOKENS_PER_QUERY * n as u64
    )
    .unwrap();
    for i in 0..n {
        let threshold = rng.random_range(50.0..900.0);
        let width = rng.random_range(60.0..400.0);
        let ceiling = rng.random_range(0.1..1.0);
        if i > 0 {
            json.push(',');
        }
        write!(
            json,
            r#"{{"id":"q{i}","threshold":{threshold:.1},"width":{width:.1},"ceiling":{ceiling:.3}}}"#
        )
        .unwrap();
    }
    json.push_str("]}");
    json
}
