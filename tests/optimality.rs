//! CLEAR against the exact optimum (dynamic programming on a token grid) on small
//! random batches (SPEC §4 quality bound).

use clear_alloc::exact::ExactOptimum;
use clear_alloc::{AllocationPolicy, Allocator, Query, ShiftedSurge};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A random batch of `n` queries drawn around the Figure-1 fits of SPEC §2.
fn batch(rng: &mut StdRng, n: usize) -> Vec<Query> {
    (0..n)
        .map(|_| {
            let tau = rng.random_range(0.0..600.0);
            let width = rng.random_range(40.0..300.0);
            let ceiling = rng.random_range(0.2..1.0);
            Query::new(ShiftedSurge::new(tau, width, ceiling).unwrap()).with_cap(4000)
        })
        .collect()
}

#[test]
fn gap_to_dynamic_programming_optimum_is_small() {
    const GRID: u64 = 5;
    let mut rng = StdRng::seed_from_u64(7);
    let allocator = Allocator::default();
    let dp = ExactOptimum::new(GRID).unwrap();
    let mut gaps = Vec::new();
    for trial in 0..300 {
        let n = rng.random_range(2..=12);
        let queries = batch(&mut rng, n);
        let per_query = rng.random_range(50..1200);
        let budget = per_query * n as u64;
        let ours = allocator.allocate(&queries, budget).unwrap();
        let best = dp.allocate(&queries, budget).unwrap();
        assert!(ours.total_tokens() <= budget);
        // Grid error: the DP cannot use the last < GRID tokens of each query.
        let peak = queries
            .iter()
            .map(|q| q.curve.peak_marginal())
            .fold(0.0, f64::max);
        let grid_error = peak * GRID as f64 * n as f64;
        let max_ceiling = queries
            .iter()
            .map(|q| q.curve.ceiling())
            .fold(0.0, f64::max);
        let gap = best.total_utility() - ours.total_utility();
        assert!(
            gap <= max_ceiling + grid_error,
            "trial {trial}: gap {gap} exceeds one ceiling {max_ceiling} + grid error {grid_error}"
        );
        if best.total_utility() > 0.0 {
            gaps.push(gap / best.total_utility());
        }
    }
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    let worst = gaps[gaps.len() - 1];
    eprintln!(
        "relative gap to DP: median {median:.5}, worst {worst:.5} over {} batches",
        gaps.len()
    );
    assert!(median <= 0.005, "median relative gap {median} > 0.5 %");
}
