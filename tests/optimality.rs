//! CLEAR against the exact optimum (dynamic programming on a token grid) on small
//! random batches (SPEC §4 quality bound), for every curve type.

use clear_alloc::exact::ExactOptimum;
use clear_alloc::fit::{EmpiricalCurve, Rollout};
use clear_alloc::{Allocator, Curve, Mixture, PiecewiseLinear, Query, ShiftedSurge};
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

fn largest_weighted_ceiling<C: Curve>(queries: &[Query<C>]) -> f64 {
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

/// A random weight and a random early cap, as in [`batch`].
fn vary<C: Curve>(rng: &mut StdRng, curve: C) -> Query<C> {
    let mut q = Query::new(curve).with_cap(4000);
    if rng.random_bool(0.3) {
        q = q.with_weight(rng.random_range(0.2..3.0)).unwrap();
    }
    if rng.random_bool(0.3) {
        q = q.with_cap(rng.random_range(50..1500));
    }
    q
}

/// A posterior-like mixture: 3 to 9 components over a spread of thresholds with a
/// shared width and ceiling (as Gauss–Hermite nodes over ln τ give), sometimes with
/// a second, unrelated shape.
fn mixture(rng: &mut StdRng) -> Mixture {
    let k = rng.random_range(3..=9);
    let centre: f64 = rng.random_range(30.0..600.0);
    let spread: f64 = rng.random_range(0.1..1.0);
    let width = rng.random_range(40.0..300.0);
    let ceiling = rng.random_range(0.2..1.0);
    let other = ShiftedSurge::new(
        rng.random_range(0.0..900.0),
        rng.random_range(20.0..200.0),
        1.0,
    )
    .unwrap();
    Mixture::new((0..k).map(|j| {
        let z = -2.0 + 4.0 * j as f64 / (k - 1) as f64;
        let weight = (-0.5 * z * z).exp();
        let curve = if j == k - 1 && rng.random_bool(0.3) {
            other
        } else {
            ShiftedSurge::new(centre * (spread * z).exp(), width, ceiling).unwrap()
        };
        (weight, curve)
    }))
    .unwrap()
}

/// The empirical curve of 8 to 32 rollouts of a random shifted surge: correct with
/// probability p after `τ + Gamma(2, 1/w)` tokens, else failed.
fn empirical(rng: &mut StdRng) -> EmpiricalCurve {
    let tau = rng.random_range(0.0..600.0);
    let width: f64 = rng.random_range(40.0..300.0);
    let ceiling = rng.random_range(0.2..1.0);
    let n = rng.random_range(8..=32);
    let rollouts: Vec<Rollout> = (0..n)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random(), rng.random());
            let length = tau - width * ((1.0 - u1).ln() + (1.0 - u2).ln());
            if rng.random_bool(ceiling) {
                Rollout::correct(length.round() as u64)
            } else {
                Rollout::failed(length.round() as u64)
            }
        })
        .collect();
    EmpiricalCurve::from_rollouts(&rollouts).unwrap()
}

/// A piecewise-linear curve through 2 to 8 random points (convex and concave pieces).
fn piecewise(rng: &mut StdRng) -> PiecewiseLinear {
    let n = rng.random_range(2..=8);
    let mut tokens = 0.0;
    let mut utility = 0.0;
    PiecewiseLinear::new((0..n).map(|_| {
        tokens += rng.random_range(10.0..400.0);
        utility += rng.random_range(0.0..0.3);
        (tokens, utility)
    }))
    .unwrap()
}

/// CLEAR against the grid optimum on `trials` random batches of one curve type:
/// within the budget, within one weighted ceiling of the optimum (SPEC §4), and the
/// median relative gap.
fn gaps_to_optimum<C: Curve>(
    seed: u64,
    trials: usize,
    mut curve: impl FnMut(&mut StdRng) -> C,
) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let allocator = Allocator::default();
    let dp = ExactOptimum::builder().grid(5).build().unwrap();
    let mut gaps = Vec::new();
    for trial in 0..trials {
        let n = rng.random_range(2..=10);
        let queries: Vec<Query<C>> = (0..n)
            .map(|_| {
                let c = curve(&mut rng);
                vary(&mut rng, c)
            })
            .collect();
        let budget = rng.random_range(50..1200) * n as u64;
        let ours = allocator.allocate(&queries, budget).unwrap();
        let best = dp.allocate(&queries, budget).unwrap();
        assert!(ours.total_tokens() <= budget, "trial {trial}");
        for (q, a) in queries.iter().zip(ours.queries()) {
            assert!(a.tokens <= q.cap().unwrap(), "trial {trial}");
        }
        let bound = largest_weighted_ceiling(&queries);
        let gap = best.total_utility() - ours.total_utility();
        assert!(
            gap <= bound,
            "trial {trial}: gap {gap} > largest weighted ceiling {bound}"
        );
        if best.total_utility() > 0.0 {
            gaps.push(gap / best.total_utility());
        }
    }
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    eprintln!(
        "relative gap to DP: median {:.4} %, worst {:.4} % over {} batches",
        100.0 * median,
        100.0 * gaps[gaps.len() - 1],
        gaps.len()
    );
    median
}

#[test]
fn mixtures_are_close_to_the_optimum() {
    let median = gaps_to_optimum(11, 150, mixture);
    assert!(median <= 0.005, "median relative gap {median} > 0.5 %");
}

#[test]
fn empirical_curves_are_close_to_the_optimum() {
    let median = gaps_to_optimum(12, 150, empirical);
    assert!(median <= 0.01, "median relative gap {median} > 1 %");
}

#[test]
fn piecewise_linear_curves_are_close_to_the_optimum() {
    let median = gaps_to_optimum(13, 150, piecewise);
    assert!(median <= 0.01, "median relative gap {median} > 1 %");
}
