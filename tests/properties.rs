//! Property tests of the allocator's invariants over arbitrary input, NaN and extremes
//! included.

use clear_alloc::{Allocator, Decision, Error, Query, ShiftedSurge};
use proptest::prelude::*;

#[macro_use]
mod soak_support;

/// Many cases, and a fixed seed so that CI runs the same ones every time; the soak tier
/// runs them deeper from fresh seeds.
fn config() -> ProptestConfig {
    soak_support::config(2000, 20261129)
}

/// Any f64 a caller might pass: mostly plausible values, often the nasty ones.
fn any_param() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0..2000.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-1.0),
        1 => Just(0.0),
        1 => Just(1e-300),
        1 => Just(1e300),
        1 => Just(f64::MIN_POSITIVE),
    ]
}

fn any_budget() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0..200_000u64,
        1 => Just(0u64),
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

/// Plausible queries (valid curves) for the economic properties.
fn plausible_query() -> impl Strategy<Value = Query> {
    (
        0.0..800.0f64,
        20.0..400.0f64,
        0.05..1.0f64,
        prop::option::of(50u64..5000),
    )
        .prop_map(|(tau, width, ceiling, cap)| {
            let q = Query::new(ShiftedSurge::new(tau, width, ceiling).unwrap());
            match cap {
                Some(c) => q.with_cap(c),
                None => q,
            }
        })
}

proptest! {
    #![proptest_config(config())]

    /// Whatever comes in: a typed error or an allocation within budget and caps.
    #[test]
    fn never_panics_never_overspends(
        raw in prop::collection::vec(
            (any_param(), any_param(), any_param(), any_param(), prop::option::of(any::<u64>())),
            0..12,
        ),
        budget in any_budget(),
        granularity in prop_oneof![Just(1u64), 1..200u64, Just(u64::MAX), 1u64 << 40..u64::MAX],
        default_cap in prop_oneof![Just(32_768u64), Just(u64::MAX), 0..10_000u64],
    ) {
        let mut queries = Vec::new();
        for (tau, width, ceiling, weight, cap) in raw {
            match ShiftedSurge::new(tau, width, ceiling) {
                Ok(curve) => match Query::new(curve).with_weight(weight) {
                    Ok(q) => queries.push(match cap {
                        Some(c) => q.with_cap(c),
                        None => q,
                    }),
                    Err(e) => {
                        // Rejected at construction: the weight is invalid, or weight ×
                        // ceiling (or × peak marginal scale) overflows.
                        prop_assert!(
                            matches!(e, Error::InvalidParameter { field: "weight", .. }),
                            "unexpected error {e:?}"
                        );
                        let bad = !(weight.is_finite() && weight >= 0.0);
                        let overflows = !(weight * (curve.ceiling() * curve.beta())).is_finite()
                            || !(weight * curve.ceiling()).is_finite();
                        prop_assert!(bad || overflows, "weight {weight} rejected: {e}");
                    }
                },
                Err(e) => prop_assert!(
                    matches!(e, Error::InvalidParameter { .. }),
                    "unexpected error kind {e:?}"
                ),
            }
        }
        let allocator = Allocator::builder()
            .default_cap(default_cap)
            .granularity(granularity)
            .build()
            .unwrap();
        match allocator.allocate(&queries, budget) {
            Ok(a) => {
                let total: u128 = a.tokens().map(|t| t as u128).sum();
                prop_assert!(total <= budget as u128);
                prop_assert_eq!(a.queries().len(), queries.len());
                for (q, r) in queries.iter().zip(a.queries()) {
                    prop_assert!(r.tokens <= q.cap().unwrap_or(default_cap));
                    prop_assert_eq!(r.tokens % granularity, 0);
                    prop_assert!(r.utility.is_finite() && r.utility >= 0.0);
                }
                prop_assert!(a.total_utility().is_finite());
            }
            Err(Error::InvalidQuery { field, .. }) => {
                // Every query was valid when built: the only batch error left is that
                // no query can pay 1e-280 for its best token — too small to price.
                prop_assert_eq!(field, "weight");
                let solvency = queries
                    .iter()
                    .map(|q| {
                        let cap = allocator.cap_of(q) as f64;
                        q.weight() * q.curve().abandonment_price(cap).unwrap_or(0.0)
                    })
                    .fold(0.0, f64::max);
                prop_assert!(solvency < 1e-280);
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    /// More budget never lowers the total utility by more than one query's worth. The
    /// price solution alone is monotone, but the leftover step's search is a heuristic:
    /// what is guaranteed is that each allocation is within one query's (weighted)
    /// utility of the optimum (SPEC §4), and the optimum is monotone in the budget.
    /// Rare batches do lose a little (see `more_budget_loses_at_most_one_query`).
    #[test]
    fn more_budget_never_loses_more_than_one_query(
        queries in prop::collection::vec(plausible_query(), 1..15),
        budget in 0u64..20_000,
        extra in 1u64..5_000,
    ) {
        let allocator = Allocator::builder().default_cap(5000).build().unwrap();
        let less = allocator.allocate(&queries, budget).unwrap();
        let more = allocator.allocate(&queries, budget + extra).unwrap();
        let largest = queries
            .iter()
            .map(|q| q.weight() * q.curve().ceiling())
            .fold(0.0, f64::max);
        prop_assert!(
            more.total_utility() >= less.total_utility() - largest,
            "budget {budget}: {} ; budget {}: {}",
            less.total_utility(), budget + extra, more.total_utility()
        );
    }

    /// Identical queries are funded equally (to within rounding) or abandoned; the
    /// leftover step may add edge queries on top.
    #[test]
    fn identical_queries_are_treated_alike(
        query in plausible_query(),
        copies in 2usize..20,
        budget in 0u64..40_000,
    ) {
        let queries = vec![query; copies];
        let a = Allocator::default().allocate(&queries, budget).unwrap();
        let funded: Vec<u64> = a
            .queries()
            .iter()
            .filter(|r| matches!(r.decision, Decision::Funded | Decision::Capped))
            .map(|r| r.tokens)
            .collect();
        if let (Some(lo), Some(hi)) = (funded.iter().min(), funded.iter().max()) {
            prop_assert!(hi - lo <= 1, "funded unequally: {funded:?}");
        }
    }

    /// Among queries that differ only in threshold, a harder one is never funded while
    /// an easier one is abandoned.
    #[test]
    fn higher_thresholds_are_abandoned_first(
        mut thresholds in prop::collection::vec(0.0..1500.0f64, 2..15),
        width in 20.0..400.0f64,
        ceiling in 0.05..1.0f64,
        per_query in 0u64..1500,
    ) {
        thresholds.sort_by(f64::total_cmp);
        let queries: Vec<Query> = thresholds
            .iter()
            .map(|&t| Query::new(ShiftedSurge::new(t, width, ceiling).unwrap()))
            .collect();
        let a = Allocator::default()
            .allocate(&queries, per_query * queries.len() as u64)
            .unwrap();
        let funded: Vec<bool> = a.tokens().map(|t| t > 0).collect();
        // Sorted by threshold, funded queries must form a prefix.
        let first_abandoned = funded.iter().position(|f| !f).unwrap_or(funded.len());
        prop_assert!(
            funded[first_abandoned..].iter().all(|f| !f),
            "thresholds {thresholds:?} funded {funded:?}"
        );
    }
}

/// What the method guarantees whatever the batch: each allocation is within one query's
/// utility of the optimum (SPEC §4), and the optimum is monotone in the budget, so more
/// budget can lower the total by at most the largest ceiling. This batch was found by a
/// 1 000 000-case run of a strict version of the property above (the optimum at 1 386
/// tokens swaps the first query out for the other two).
#[test]
fn more_budget_loses_at_most_one_query() {
    let curves = [
        (
            367.04588235875826,
            0.0054078212472475524,
            0.9762499952692999,
        ),
        (774.2121971259015, 0.01564710235330216, 0.951170803893878),
        (0.0, 0.008442940382091573, 0.05),
    ];
    let queries: Vec<Query> = curves
        .iter()
        .map(|&(tau, beta, p)| Query::new(ShiftedSurge::new(tau, 1.0 / beta, p).unwrap()))
        .collect();
    let allocator = Allocator::builder().default_cap(5000).build().unwrap();
    let less = allocator.allocate(&queries, 1340).unwrap();
    let more = allocator.allocate(&queries, 1386).unwrap();
    let largest_ceiling = curves.iter().map(|c| c.2).fold(0.0, f64::max);
    assert!(more.total_utility() >= less.total_utility() - largest_ceiling);
    // Both stay within one ceiling of the exact optimum on a 1-token grid.
    let exact = clear_alloc::exact::ExactOptimum::builder()
        .grid(1)
        .default_cap(5000)
        .build()
        .unwrap();
    for (budget, ours) in [(1340, &less), (1386, &more)] {
        let best = clear_alloc::AllocationPolicy::allocate(&exact, &queries, budget).unwrap();
        assert!(ours.total_utility() >= best.total_utility() - largest_ceiling);
    }
}

soak_properties!(
    never_panics_never_overspends,
    more_budget_never_loses_more_than_one_query,
    identical_queries_are_treated_alike,
    higher_thresholds_are_abandoned_first,
);
