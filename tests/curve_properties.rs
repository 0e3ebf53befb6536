//! Property tests of the allocator's invariants for the curve types besides the
//! shifted surge: mixtures, piecewise-linear curves and batches that mix kinds.

use clear_alloc::{
    Allocation, Allocator, AnyCurve, Curve, Decision, Mixture, PiecewiseLinear, Query, ShiftedSurge,
};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

fn config() -> ProptestConfig {
    ProptestConfig {
        rng_seed: RngSeed::Fixed(20261130),
        ..ProptestConfig::with_cases(400)
    }
}

fn surge() -> impl Strategy<Value = ShiftedSurge> {
    (0.0..1500.0f64, 1.0..500.0f64, 0.0..1.0f64)
        .prop_map(|(t, w, p)| ShiftedSurge::new(t, w, p).unwrap())
}

fn mixture() -> impl Strategy<Value = Mixture> {
    prop::collection::vec((0.0..1.0f64, surge()), 1..10).prop_map(|mut components| {
        components[0].0 += 0.01;
        Mixture::new(components).unwrap()
    })
}

fn piecewise() -> impl Strategy<Value = PiecewiseLinear> {
    prop::collection::vec((0.5..600.0f64, 0.0..0.4f64), 1..10).prop_map(|steps| {
        let (mut tokens, mut utility) = (0.0, 0.0);
        PiecewiseLinear::new(steps.into_iter().map(|(dt, du)| {
            tokens += dt;
            utility += du;
            (tokens, utility)
        }))
        .unwrap()
    })
}

fn any_curve() -> impl Strategy<Value = AnyCurve> {
    prop_oneof![
        surge().prop_map(AnyCurve::from),
        mixture().prop_map(AnyCurve::from),
        piecewise().prop_map(AnyCurve::from),
    ]
}

/// A query with an optional cap and weight.
fn query<C: Curve + 'static>(curve: impl Strategy<Value = C>) -> impl Strategy<Value = Query<C>> {
    (
        curve,
        prop::option::of(0u64..5000),
        prop::option::of(0.0..5.0f64),
    )
        .prop_map(|(curve, cap, weight)| {
            let mut q = Query::new(curve);
            if let Some(cap) = cap {
                q = q.with_cap(cap);
            }
            if let Some(weight) = weight {
                q = q.with_weight(weight).unwrap();
            }
            q
        })
}

fn budget() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0..100_000u64, 1 => Just(0u64), 1 => Just(u64::MAX)]
}

/// Σ ≤ B, every grant within its cap, and a query is abandoned exactly when it gets
/// nothing (and a grant buys utility).
fn check<C: Curve>(queries: &[Query<C>], budget: u64, a: &Allocation) -> Result<(), TestCaseError> {
    let allocator = Allocator::default();
    prop_assert!(a.total_tokens() <= budget);
    let sum: u128 = a.queries().iter().map(|r| r.tokens as u128).sum();
    prop_assert!(sum <= budget as u128);
    for (q, r) in queries.iter().zip(a.queries()) {
        prop_assert!(r.tokens <= allocator.cap_of(q));
        prop_assert_eq!(
            r.decision == Decision::Abandoned || r.decision == Decision::Displaced,
            r.tokens == 0
        );
        if r.tokens > 0 {
            prop_assert!(q.curve().utility(r.tokens as f64) > 0.0, "{r:?}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mixtures_keep_the_budget_caps_and_abandonment(
        queries in prop::collection::vec(query(mixture()), 0..12),
        budget in budget(),
    ) {
        let a = Allocator::default().allocate(&queries, budget).unwrap();
        check(&queries, budget, &a)?;
    }

    #[test]
    fn piecewise_linear_curves_keep_the_budget_caps_and_abandonment(
        queries in prop::collection::vec(query(piecewise()), 0..12),
        budget in budget(),
    ) {
        let a = Allocator::default().allocate(&queries, budget).unwrap();
        check(&queries, budget, &a)?;
    }

    #[test]
    fn mixed_batches_keep_the_budget_caps_and_abandonment(
        queries in prop::collection::vec(query(any_curve()), 0..12),
        budget in budget(),
    ) {
        let a = Allocator::default().allocate(&queries, budget).unwrap();
        check(&queries, budget, &a)?;
    }

    /// The best response is never beaten by a grid of budgets under the cap, and it
    /// is 0 exactly above the abandonment price.
    #[test]
    fn best_responses_beat_a_grid(
        curve in any_curve(),
        cap in 1.0..5000.0f64,
        share in 0.0..1.5f64,
    ) {
        let top = curve.abandonment_price(cap).unwrap();
        let price = top * share;
        let b = curve.best_response(price, cap).unwrap();
        prop_assert!(b <= cap);
        let ours = curve.utility(b) - price * b;
        let scale = curve.ceiling().max(1e-300);
        for i in 0..=2000 {
            let x = cap * i as f64 / 2000.0;
            let theirs = curve.utility(x) - price * x;
            prop_assert!(ours >= theirs - 1e-9 * scale, "{b} ({ours}) vs {x} ({theirs})");
        }
        if share > 1.0 + 1e-9 {
            prop_assert_eq!(b, 0.0);
        }
        if share < 1.0 - 1e-9 && top > 0.0 {
            prop_assert!(b > 0.0);
        }
    }
}
