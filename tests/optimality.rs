//! CLEAR against the exact optimum (dynamic programming on a token grid) on small
//! random batches (SPEC §4 quality bound).

use clear_alloc::exact::ExactOptimum;
use clear_alloc::{AllocationPolicy, Allocator, Query, ShiftedSurge};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A random batch of `n` queries drawn around the Figure-1 fits of SPEC §2; a third of
/// the queries get a weight and a third a cap of their own, often before the
/// inflection point.
fn batch(rng: &mut StdRng, n: usize) -> Vec<Query> {
    (0..n)
        .map(|_| {
            let tau = rng.random_range(0.0..600.0);
            let width = rng.random_range(40.0..300.0);
            let ceiling = rng.random_range(0.2..1.0);
            let mut q = Query::new(ShiftedSurge::new(tau, width, ceiling).unwrap()).with_cap(4000);
            if rng.random_bool(0.3) {
                q = q.with_weight(rng.random_range(0.2..3.0)).unwrap();
            }
            if rng.random_bool(0.3) {
                q = q.with_cap(rng.random_range(50..1500));
            }
            q
        })
        .collect()
}

fn largest_weighted_ceiling(queries: &[Query]) -> f64 {
    queries
        .iter()
        .map(|q| q.weight() * q.curve().ceiling())
        .fold(0.0, f64::max)
}

#[test]
fn gap_to_dynamic_programming_optimum_is_small() {
    const GRID: u64 = 5;
    let mut rng = StdRng::seed_from_u64(7);
    let allocator = Allocator::default();
    let dp = ExactOptimum::builder().grid(GRID).build().unwrap();
    let mut gaps = Vec::new();
    for trial in 0..300 {
        let n = rng.random_range(2..=12);
        let queries = batch(&mut rng, n);
        let per_query = rng.random_range(50..1200);
        let budget = per_query * n as u64;
        let ours = allocator.allocate(&queries, budget).unwrap();
        let best = dp.allocate(&queries, budget).unwrap();
        assert!(ours.total_tokens() <= budget);
        // The grid optimum is at most the true optimum, which the price solution is
        // within one query's (weighted) utility of (SPEC §4).
        let bound = largest_weighted_ceiling(&queries);
        let gap = best.total_utility() - ours.total_utility();
        assert!(
            gap <= bound,
            "trial {trial}: gap {gap} exceeds the largest weighted ceiling {bound}"
        );
        if best.total_utility() > 0.0 {
            gaps.push(gap / best.total_utility());
        }
    }
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    let worst = gaps[gaps.len() - 1];
    eprintln!(
        "relative gap to DP: median {:.4} %, worst {:.4} % over {} batches",
        100.0 * median,
        100.0 * worst,
        gaps.len()
    );
    assert!(median <= 0.005, "median relative gap {median} > 0.5 %");
}

/// A budget the price cannot place: the second query's cap-early curve is worth its
/// whole 200-token remainder, which an earlier leftover step left unspent (0.81 against
/// the optimum's 1.01).
#[test]
fn the_leftover_goes_where_it_buys_something() {
    let queries = vec![
        Query::new(
            ShiftedSurge::new(
                388.83874373126554,
                1.0 / 0.005014914146271242,
                0.6640539503499175,
            )
            .unwrap(),
        )
        .with_cap(800)
        .with_weight(2.0)
        .unwrap(),
        Query::new(
            ShiftedSurge::new(
                31.77134569338915,
                1.0 / 0.00552180579754756,
                0.8334344047453994,
            )
            .unwrap(),
        )
        .with_cap(1000),
    ];
    let ours = Allocator::default().allocate(&queries, 1000).unwrap();
    let best = ExactOptimum::builder()
        .grid(1)
        .build()
        .unwrap()
        .allocate(&queries, 1000)
        .unwrap();
    assert!(
        ours.total_utility() >= best.total_utility() * (1.0 - 1e-6),
        "ours {:?} = {}, optimum {:?} = {}",
        ours.tokens().collect::<Vec<_>>(),
        ours.total_utility(),
        best.tokens().collect::<Vec<_>>(),
        best.total_utility()
    );
}
