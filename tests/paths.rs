//! The allocator's paths give the same result to the last bit: a plain `allocate`, a
//! `Workspace` reused across different batches (sizes, budgets, curve types,
//! options), and — built with `--features parallel` — the same calls on one thread
//! and on several (`cargo test -p clear-alloc --features parallel --test paths`).
//! The results' correctness is the business of the optimality and property suites;
//! this one pins that every path reaches the same one.

use clear_alloc::{Allocation, Allocator, Curve, Mixture, Query, ShiftedSurge, Workspace};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Heterogeneous queries around the Figure-1 fits; some with caps and weights.
fn heterogeneous(n: usize, seed: u64) -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let curve = ShiftedSurge::new(
                rng.random_range(50.0..900.0),
                rng.random_range(60.0..400.0),
                rng.random_range(0.1..1.0),
            )
            .unwrap();
            let mut query = Query::new(curve);
            if rng.random_bool(0.2) {
                query = query.with_cap(rng.random_range(50..6000));
            }
            if rng.random_bool(0.2) {
                query = query.with_weight(rng.random_range(0.5..3.0)).unwrap();
            }
            query
        })
        .collect()
}

/// Queries sharing one shape (one W₋₁ per pass), differing in threshold.
fn shared_shape(n: usize, seed: u64) -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(seed);
    let shape = ShiftedSurge::new(0.0, 200.0, 0.8).unwrap();
    (0..n)
        .map(|_| Query::new(shape.with_threshold(rng.random_range(50.0..900.0)).unwrap()))
        .collect()
}

/// Two-component mixtures: a curve type whose bidders are not copied side by side.
fn mixtures(n: usize, seed: u64) -> Vec<Query<Mixture>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let shape = ShiftedSurge::new(0.0, 150.0, 0.85).unwrap();
    (0..n)
        .map(|_| {
            let centre: f64 = rng.random_range(50.0..900.0);
            let components = [
                (0.4, shape.with_threshold(centre).unwrap()),
                (0.6, shape.with_threshold(1.8 * centre).unwrap()),
            ];
            Query::new(Mixture::new(components).unwrap())
        })
        .collect()
}

/// Equal to the last bit: grants, utilities, decisions, prices and totals (`==` on
/// f64 would let 0.0 and −0.0 pass; NaN never occurs here).
fn assert_identical(a: &Allocation, b: &Allocation, what: &str) {
    assert_eq!(a.queries().len(), b.queries().len(), "{what}");
    let bits = |x: &Allocation| {
        (
            x.price().map(f64::to_bits),
            x.marginal_price().map(f64::to_bits),
            x.total_utility().to_bits(),
            x.passes(),
        )
    };
    assert_eq!(bits(a), bits(b), "{what}");
    for (k, (p, q)) in a.queries().iter().zip(b.queries()).enumerate() {
        assert_eq!(
            (p.tokens, p.utility.to_bits(), p.decision),
            (q.tokens, q.utility.to_bits(), q.decision),
            "{what}: query {k}"
        );
    }
    assert_eq!(
        (a.total_tokens(), a.budget(), a.leftover()),
        (b.total_tokens(), b.budget(), b.leftover()),
        "{what}"
    );
}

/// Allocates each batch plainly and through one workspace, in order, and checks that
/// the results agree.
fn check_workspace<C: Curve>(allocator: &Allocator, batches: &[(Vec<Query<C>>, u64)]) {
    let mut workspace = Workspace::new();
    for (k, (queries, budget)) in batches.iter().enumerate() {
        let plain = allocator.allocate(queries, *budget).unwrap();
        let reused = allocator
            .allocate_with(&mut workspace, queries, *budget)
            .unwrap();
        let what = format!("batch {k}: {} queries, budget {budget}", queries.len());
        assert_identical(&plain, reused, &what);
    }
}

#[test]
fn a_reused_workspace_gives_the_plain_result_on_changing_batches() {
    let allocator = Allocator::builder().default_cap(8192).build().unwrap();
    // Growing, shrinking, scarce, ample (price 0), tiny (full leftover search), and a
    // batch past the presolve sample's threshold.
    let batches: Vec<(Vec<Query>, u64)> = vec![
        (heterogeneous(5_000, 1), 300 * 5_000),
        (heterogeneous(40, 2), 3_000),
        (heterogeneous(20_000, 3), 100 * 20_000),
        (heterogeneous(300, 4), u64::MAX),
        (shared_shape(10_000, 5), 400 * 10_000),
        (heterogeneous(0, 6), 1_000),
        (heterogeneous(5_000, 1), 0),
        (heterogeneous(5_000, 7), 1_500 * 5_000),
    ];
    check_workspace(&allocator, &batches);
    let mixed: Vec<(Vec<Query<Mixture>>, u64)> = vec![
        (mixtures(3_000, 8), 300 * 3_000),
        (mixtures(50, 9), 20_000),
        (mixtures(6_000, 10), 200 * 6_000),
    ];
    check_workspace(&allocator, &mixed);
    // Another allocator's options through the same kind of workspace.
    let coarse = Allocator::builder()
        .granularity(64)
        .abandonment(false)
        .build()
        .unwrap();
    check_workspace(&coarse, &batches[..3]);
}

#[test]
fn large_batches_agree_across_paths() {
    let allocator = Allocator::builder().default_cap(8192).build().unwrap();
    let batches = vec![
        (heterogeneous(150_000, 11), 300 * 150_000),
        (shared_shape(120_000, 12), 300 * 120_000),
        (heterogeneous(100_000, 13), 1_500 * 100_000),
    ];
    check_workspace(&allocator, &batches);
    threads::check(&allocator, &batches);
    threads::check(&allocator, &[(mixtures(60_000, 14), 300 * 60_000)]);
}

proptest! {
    #![proptest_config(ProptestConfig {
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x9A7_4512),
        ..ProptestConfig::with_cases(64)
    })]

    /// Random sequences of batches through one workspace, small ones (the full
    /// leftover search) and ones past the presolve threshold.
    #[test]
    fn any_sequence_of_batches_through_one_workspace_matches(
        batches in prop::collection::vec(
            (prop_oneof![1usize..80, 4_000usize..9_000], any::<u64>(), 1u64..2_000),
            1..4,
        ),
        granularity in prop_oneof![Just(1u64), 1u64..100],
    ) {
        let allocator = Allocator::builder().granularity(granularity).build().unwrap();
        let batches: Vec<(Vec<Query>, u64)> = batches
            .into_iter()
            .map(|(n, seed, per_query)| (heterogeneous(n, seed), per_query * n as u64))
            .collect();
        check_workspace(&allocator, &batches);
        threads::check(&allocator, &batches);
    }
}

/// One thread against several: with the `parallel` feature, sweeps over large
/// batches run on rayon's threads unless the pool has one thread.
#[cfg(feature = "parallel")]
mod threads {
    use super::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    pub fn check<C: Curve>(allocator: &Allocator, batches: &[(Vec<Query<C>>, u64)]) {
        let (one, four) = (pool(1), pool(4));
        let mut workspace = Workspace::new();
        for (k, (queries, budget)) in batches.iter().enumerate() {
            let serial = one.install(|| allocator.allocate(queries, *budget).unwrap());
            let parallel = four.install(|| allocator.allocate(queries, *budget).unwrap());
            let what = format!("batch {k}: {} queries, budget {budget}", queries.len());
            assert_identical(&serial, &parallel, &what);
            let reused = four.install(|| {
                allocator
                    .allocate_with(&mut workspace, queries, *budget)
                    .unwrap()
                    .clone()
            });
            assert_identical(&serial, &reused, &what);
        }
    }
}

/// Without the `parallel` feature there is one path per call: nothing to compare.
#[cfg(not(feature = "parallel"))]
mod threads {
    use super::*;

    pub fn check<C: Curve>(_: &Allocator, _: &[(Vec<Query<C>>, u64)]) {}
}
