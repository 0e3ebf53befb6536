//! The heterogeneous batch that `benches/allocate.rs` times and
//! `examples/allocate_loop.rs` loops over (included by both with `#[path]`, so that
//! the example's instruction and page-fault counts are of the bench's queries).

use clear_alloc::{Query, ShiftedSurge};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// N queries with thresholds, widths and ceilings spread around the Figure-1 fits.
pub fn heterogeneous(n: usize) -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(1);
    (0..n)
        .map(|_| {
            let tau = rng.random_range(50.0..900.0);
            let width = rng.random_range(60.0..400.0);
            let ceiling = rng.random_range(0.1..1.0);
            Query::new(ShiftedSurge::new(tau, width, ceiling).expect("valid by construction"))
        })
        .collect()
}
