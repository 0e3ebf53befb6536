//! Shared by the Redis tests: seeded traffic, and (from `clear-test-redis`, shared
//! with the proxy's fleet tests) the machine's Redis, unique namespaces and a private
//! redis-server to kill and restart.
#![allow(dead_code)] // each test file uses a different part

use clear_alloc::{Query, ShiftedSurge};
pub use clear_test_redis::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Seeded random traffic around the paper's Figure-1 fits: threshold, width, ceiling.
pub fn curves(seed: u64, n: usize) -> Vec<ShiftedSurge> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let threshold = rng.random_range(50.0..700.0);
            let width = rng.random_range(60.0..300.0);
            let ceiling = rng.random_range(0.2..1.0);
            ShiftedSurge::new(threshold, width, ceiling).unwrap()
        })
        .collect()
}

pub fn query(curve: ShiftedSurge) -> Query {
    Query::new(curve).with_cap(2048)
}
