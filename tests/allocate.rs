//! The allocator through the public API: optimality conditions, edge cases and errors.

use approx::assert_relative_eq;
use clear_alloc::{Allocation, Allocator, Decision, Error, Query, QueryRef, ShiftedSurge};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn curve(tau: f64, width: f64, ceiling: f64) -> ShiftedSurge {
    ShiftedSurge::new(tau, width, ceiling).unwrap()
}

/// A heterogeneous batch around the Figure-1 fits, with random caps and weights.
fn random_batch(rng: &mut StdRng, n: usize) -> Vec<Query> {
    (0..n)
        .map(|i| {
            let mut q = Query::new(curve(
                rng.random_range(0.0..900.0),
                rng.random_range(40.0..400.0),
                rng.random_range(0.05..1.0),
            ))
            .with_id(format!("q{i}"));
            if rng.random_bool(0.3) {
                q = q.with_cap(rng.random_range(100..6000));
            }
            if rng.random_bool(0.3) {
                q = q.with_weight(rng.random_range(0.1..3.0)).unwrap();
            }
            q
        })
        .collect()
}

/// Best surplus of `query` at `price` on a 1-token grid up to its cap: an independent
/// check of the closed-form best response.
fn grid_best_surplus(query: &Query, cap: u64, price: f64) -> f64 {
    (0..=cap)
        .map(|b| query.weight() * query.curve().utility(b as f64) - price * b as f64)
        .fold(0.0, f64::max)
}

#[test]
fn kkt_conditions_hold_at_the_reported_prices() {
    let mut rng = StdRng::seed_from_u64(11);
    for granularity in [1u64, 16] {
        let allocator = Allocator::builder()
            .default_cap(4096)
            .granularity(granularity)
            .build()
            .unwrap();
        for _ in 0..40 {
            let n = rng.random_range(5..200);
            let queries = random_batch(&mut rng, n);
            let budget = rng.random_range(50..1500) * n as u64;
            let a = allocator.allocate(&queries, budget).unwrap();
            let price = a.price().unwrap();
            let marginal = a.marginal_price().unwrap();
            assert!(a.total_tokens() <= budget);
            let has_edge = a.queries().iter().any(|r| r.decision == Decision::Edge);
            assert!(has_edge || marginal <= price * (1.0 + 1e-12));
            let g = granularity as f64;
            for (q, r) in queries.iter().zip(a.queries()) {
                let cap = allocator.cap_of(q);
                assert!(r.tokens <= cap && r.tokens % granularity == 0);
                match r.decision {
                    Decision::Funded => {
                        // φ is decreasing on the concave branch; the continuous optimum
                        // lies within one granule of the grant.
                        let b = r.tokens as f64;
                        let lower = q.weight() * q.curve().marginal(b + g);
                        let upper = q.weight() * q.curve().marginal((b - g).max(0.0));
                        assert!(
                            lower <= marginal * (1.0 + 1e-9) && marginal <= upper * (1.0 + 1e-9),
                            "funded query: w·φ(b±g) = [{lower}, {upper}] does not bracket {marginal}"
                        );
                    }
                    Decision::Abandoned if price > 0.0 => {
                        let best = grid_best_surplus(q, cap, price);
                        assert!(
                            best <= 1e-9 * q.weight() * q.curve().ceiling(),
                            "abandoned query has surplus {best} at price {price}"
                        );
                    }
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn scarce_budget_abandons_the_hopeless_and_funds_the_easy() {
    // 10 easy (GSM8K fit) and 10 hard (AIME fit) queries, 200 tokens each: the easy
    // ones need about 151 + 2·101 tokens on average, the hard ones 304 + 2·280.
    let easy = curve(151.0, 101.0, 0.95);
    let hard = curve(304.0, 280.0, 0.4);
    let queries: Vec<Query> = (0..20)
        .map(|i| Query::new(if i < 10 { easy } else { hard }))
        .collect();
    let a = Allocator::default().allocate(&queries, 4000).unwrap();
    let easy_funded = a.queries()[..10].iter().filter(|r| r.tokens > 0).count();
    let hard_funded = a.queries()[10..].iter().filter(|r| r.tokens > 0).count();
    assert_eq!(hard_funded, 0);
    assert!(easy_funded >= 9, "{easy_funded}");
    // Uniform (200 each) gets far less: U_easy(200) ≈ 0.095, U_hard(200) = 0.
    let uniform: f64 = 10.0 * easy.utility(200.0);
    assert!(a.total_utility() > 3.0 * uniform);
}

#[test]
fn empty_zero_and_unbounded_budgets() {
    let allocator = Allocator::default();
    let empty = allocator.allocate::<ShiftedSurge>(&[], 1000).unwrap();
    assert_eq!(empty.queries().len(), 0);
    assert_eq!(empty.total_tokens(), 0);
    assert_eq!(empty.leftover(), 1000);

    let queries = vec![Query::new(curve(100.0, 50.0, 0.9)); 5];
    let none = allocator.allocate(&queries, 0).unwrap();
    assert_eq!(none.abandoned().count(), 5);
    assert_eq!(none.total_utility(), 0.0);

    let all = allocator.allocate(&queries, u64::MAX).unwrap();
    assert_eq!(all.price(), Some(0.0));
    assert!(all.tokens().all(|t| t == Allocator::DEFAULT_CAP));
    assert_eq!(all.leftover(), u64::MAX - 5 * Allocator::DEFAULT_CAP);
}

#[test]
fn huge_caps_and_budgets_do_not_overflow() {
    let queries: Vec<Query> = (0..4)
        .map(|i| Query::new(curve(100.0 * i as f64, 1e6, 0.9)).with_cap(u64::MAX))
        .collect();
    for budget in [u64::MAX, u64::MAX / 3, 1 << 60, 12_345] {
        let a = Allocator::default().allocate(&queries, budget).unwrap();
        let total: u128 = a.tokens().map(|t| t as u128).sum();
        assert!(total <= budget as u128, "{total} > {budget}");
    }
}

#[test]
fn extreme_parameters_give_a_result_or_an_error() {
    let params = [
        (0.0, 1e-300, 1.0),
        (1e300, 1.0, 1.0),
        (0.0, 1e300, 1e-300),
        (1e-300, 1e-300, 1e-300),
        (0.0, 1.0, 1e300),
    ];
    for (tau, w, p) in params {
        match ShiftedSurge::new(tau, w, p) {
            Ok(c) => {
                let queries = vec![Query::new(c); 3];
                for budget in [0, 1, 1000, u64::MAX] {
                    let a = Allocator::default().allocate(&queries, budget).unwrap();
                    assert!(a.total_tokens() <= budget);
                    assert!(a.total_utility().is_finite());
                }
            }
            Err(e) => assert!(matches!(e, Error::InvalidParameter { .. })),
        }
    }
}

#[test]
fn bad_weights_are_named_errors() {
    let good = Query::new(curve(100.0, 50.0, 0.9));
    for weight in [f64::NAN, f64::INFINITY, -1.0] {
        // A query with a bad weight cannot be built, so it never reaches a batch.
        let err = good.clone().with_id("bad").with_weight(weight).unwrap_err();
        match &err {
            Error::InvalidParameter { field, .. } => assert_eq!(*field, "weight"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().starts_with("weight = "), "{err}");
        // A caller building a batch names the query by its position and id.
        let named = err.for_query(QueryRef::at(1, Some("bad")));
        assert!(named
            .to_string()
            .starts_with("query 1 (id \"bad\"): weight"));
    }
    // A weight that makes the weighted peak marginal overflow.
    assert!(matches!(
        Query::new(curve(0.0, 1.0, 1e300)).with_weight(1e300),
        Err(Error::InvalidParameter {
            field: "weight",
            ..
        })
    ));
    assert!(Allocator::builder().granularity(0).build().is_err());
    assert!(Allocator::builder().tolerance(f64::NAN).build().is_err());
    assert!(Allocator::builder().tolerance(0.0).build().is_err());
    assert!(Allocator::builder().max_iterations(0).build().is_err());
    assert!(Allocator::default()
        .allocate_at_price(&[good], f64::NAN)
        .is_err());
}

/// Price mode against a brute-force search over every whole token up to the cap: the
/// grant's surplus is the best one to within one token's worth, and a query is never
/// granted tokens at a loss.
#[test]
fn price_mode_matches_a_brute_force_best_response() {
    let mut rng = StdRng::seed_from_u64(5);
    let queries = random_batch(&mut rng, 30);
    let allocator = Allocator::builder().default_cap(4096).build().unwrap();
    for price in [0.0, 1e-5, 1e-4, 5e-4, 2e-3, 1.0] {
        let a = allocator.allocate_at_price(&queries, price).unwrap();
        assert_eq!(a.budget(), None);
        for (q, r) in queries.iter().zip(a.queries()) {
            let cap = allocator.cap_of(q);
            let best = grid_best_surplus(q, cap, price);
            let ours = q.weight() * q.curve().utility(r.tokens as f64) - price * r.tokens as f64;
            // One token moves the surplus by at most the price plus the peak marginal.
            let slack = price + q.weight() * q.curve().peak_marginal() + 1e-12;
            assert!(
                ours >= best - slack,
                "price {price}: surplus {ours} < grid best {best}"
            );
            if r.tokens > 0 {
                assert!(ours > -slack, "price {price}: granted at a loss ({ours})");
            }
        }
    }
}

#[test]
fn weights_shift_tokens_to_priority_queries() {
    let c = curve(200.0, 100.0, 0.8);
    let queries = vec![Query::new(c), Query::new(c).with_weight(3.0).unwrap()];
    let a = Allocator::default().allocate(&queries, 700).unwrap();
    let [low, high] = [a.queries()[0], a.queries()[1]];
    assert!(
        high.tokens > low.tokens,
        "{} vs {}",
        high.tokens,
        low.tokens
    );
}

#[test]
fn without_abandonment_every_solvable_query_is_funded() {
    let easy = curve(151.0, 101.0, 0.95);
    let hard = curve(304.0, 280.0, 0.4);
    let queries: Vec<Query> = (0..20)
        .map(|i| Query::new(if i % 2 == 0 { easy } else { hard }))
        .collect();
    let keep_all = Allocator::builder().abandonment(false).build().unwrap();
    let budget = 20 * 600;
    let a = keep_all.allocate(&queries, budget).unwrap();
    assert!(a.total_tokens() <= budget);
    assert!(
        a.abandoned().count()
            < Allocator::default()
                .allocate(&queries, budget)
                .unwrap()
                .abandoned()
                .count()
    );
}

#[test]
fn granularity_and_caps_are_respected() {
    let mut rng = StdRng::seed_from_u64(3);
    let queries = random_batch(&mut rng, 300);
    let allocator = Allocator::builder()
        .default_cap(3000)
        .granularity(128)
        .build()
        .unwrap();
    let a = allocator.allocate(&queries, 300 * 250).unwrap();
    for (q, r) in queries.iter().zip(a.queries()) {
        assert_eq!(r.tokens % 128, 0);
        assert!(r.tokens <= q.cap().unwrap_or(3000));
        // A grant that does not pass the threshold would buy nothing.
        assert!(r.tokens == 0 || r.tokens as f64 > q.curve().threshold());
    }
    assert!(a.total_tokens() <= 300 * 250);
    assert!(a.leftover() < 128 * 300);
}

#[test]
fn large_batches_fill_the_budget() {
    let mut rng = StdRng::seed_from_u64(9);
    let queries = random_batch(&mut rng, 20_000);
    let budget = 300 * 20_000;
    let a = Allocator::default().allocate(&queries, budget).unwrap();
    assert!(a.total_tokens() <= budget);
    // Leftover is what rounding and caps leave: a token or so per query at most.
    assert!(a.leftover() <= 20_000, "leftover {}", a.leftover());
    assert!(a.passes() <= 12, "{} passes", a.passes());
}

#[test]
fn scaling_every_weight_by_a_power_of_two_scales_only_the_price() {
    // Every price-side quantity scales by the same power of two, exactly in binary
    // floating point, so the grants must not change at all.
    let mut rng = StdRng::seed_from_u64(21);
    let queries = random_batch(&mut rng, 80);
    let scale = 2f64.powi(-600);
    let scaled: Vec<Query> = queries
        .iter()
        .map(|q| q.clone().with_weight(q.weight() * scale).unwrap())
        .collect();
    let allocator = Allocator::builder().default_cap(4096).build().unwrap();
    let a = allocator.allocate(&queries, 80 * 300).unwrap();
    let b = allocator.allocate(&scaled, 80 * 300).unwrap();
    assert_eq!(
        a.tokens().collect::<Vec<_>>(),
        b.tokens().collect::<Vec<_>>()
    );
    assert_relative_eq!(
        b.price().unwrap(),
        a.price().unwrap() * scale,
        max_relative = 1e-12
    );
}

#[test]
fn weights_too_small_to_price_are_a_named_error() {
    let queries: Vec<Query> = (0..10)
        .map(|i| {
            Query::new(curve(151.0, 101.0, 0.9))
                .with_weight(1e-310)
                .unwrap()
                .with_id(format!("q{i}"))
        })
        .collect();
    let err = Allocator::default().allocate(&queries, 2000).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidQuery {
                field: "weight",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("scale all weights up"), "{err}");
}

#[test]
fn a_budget_ample_in_all_but_name_stops_at_price_zero() {
    // Caps of 32 768 tokens on curves of width 20: past ~τ + 745 w the marginal utility
    // underflows, so the true demand at any representable price is far below Σ caps.
    let queries: Vec<Query> = (0..2000)
        .map(|i| Query::new(curve(100.0 + (i % 7) as f64, 20.0, 0.9)))
        .collect();
    let budget = 20_000 * 2000;
    let a = Allocator::default().allocate(&queries, budget).unwrap();
    assert!(a.total_tokens() <= budget);
    assert_eq!(a.price(), Some(0.0));
    assert!(a.passes() <= 20, "{} passes", a.passes());
    // Every query is saturated: its utility equals its ceiling to f64 precision.
    for r in a.queries() {
        assert_relative_eq!(r.utility, 0.9, max_relative = 1e-12);
    }
}

#[test]
fn a_needlessly_tight_tolerance_still_terminates_quickly() {
    // Demand jumps where the budget falls: a bracket that cannot narrow below adjacent
    // floats must stop there, not run to `max_iterations`. In this batch a re-clear
    // once made 100 027 passes.
    let queries = vec![
        Query::new(curve(
            468.296156066883,
            1.0 / 0.005232998665052719,
            0.4835422126078882,
        )),
        Query::new(curve(
            333.3727927427287,
            1.0 / 0.011560143215614023,
            0.07259767266217172,
        ))
        .with_cap(2140),
        Query::new(curve(
            260.7088857017902,
            1.0 / 0.0033862458596279,
            0.17272325862580817,
        )),
        Query::new(curve(
            231.34108198714293,
            1.0 / 0.0032720832261622433,
            0.6778995284120987,
        ))
        .with_cap(2043),
        Query::new(curve(
            192.6112650018395,
            1.0 / 0.01438935935088983,
            0.05690377608862946,
        ))
        .with_cap(2293),
    ];
    let allocator = Allocator::builder()
        .default_cap(4096)
        .tolerance(1e-300)
        .max_iterations(100_000)
        .build()
        .unwrap();
    for budget in [700u64, 1500, 2820] {
        let a = allocator.allocate(&queries, budget).unwrap();
        assert!(a.total_tokens() <= budget);
        assert!(a.passes() < 5_000, "budget {budget}: {} passes", a.passes());
    }
}

#[test]
fn weights_too_small_to_price_are_fine_when_no_price_is_needed() {
    let queries = vec![
        Query::new(curve(151.0, 101.0, 0.9))
            .with_weight(1e-300)
            .unwrap()
            .with_cap(1000);
        3
    ];
    let a = Allocator::default().allocate(&queries, u64::MAX).unwrap();
    assert!(a.tokens().all(|t| t == 1000));
    let at_zero = Allocator::default()
        .allocate_at_price(&queries, 0.0)
        .unwrap();
    assert!(at_zero.tokens().all(|t| t == 1000));
}

/// Issue 13, item 4: grants whose exact sum passes `u64::MAX` exceed any `u64` budget,
/// though a saturating sum would compare as within a budget of `u64::MAX`.
#[test]
fn from_tokens_rejects_grants_whose_sum_overflows_u64() {
    let q = Query::new(curve(1.0, 1.0, 1.0)).with_cap(u64::MAX);
    let queries = [q.clone(), q];
    let result =
        Allocation::from_tokens(&queries, vec![u64::MAX, u64::MAX], u64::MAX, Some(u64::MAX));
    assert!(
        matches!(
            result,
            Err(Error::InvalidParameter {
                field: "tokens",
                ..
            })
        ),
        "{result:?}"
    );
    // One grant of u64::MAX alone fits a budget of u64::MAX.
    let one = Allocation::from_tokens(&queries[..1], vec![u64::MAX], u64::MAX, Some(u64::MAX));
    assert_eq!(one.unwrap().total_tokens(), u64::MAX);
}

/// Issue 13, item 5: a budget that covers every cap grants every cap exactly, even
/// above 2^53 where an f64 cannot hold it, and says so (capped, not funded).
#[test]
fn caps_above_2_pow_53_are_granted_exactly_and_capped() {
    let cap = (1u64 << 53) + 1;
    let queries = vec![Query::new(curve(100.0, 50.0, 0.9)).with_cap(cap); 2];
    for budget in [2 * cap, u64::MAX] {
        let a = Allocator::default().allocate(&queries, budget).unwrap();
        for r in a.queries() {
            assert_eq!(
                (r.tokens, r.decision),
                (cap, Decision::Capped),
                "budget {budget}"
            );
        }
        assert_eq!(a.total_tokens(), 2 * cap);
    }
    let at_zero = Allocator::default()
        .allocate_at_price(&queries, 0.0)
        .unwrap();
    assert!(at_zero
        .queries()
        .iter()
        .all(|r| (r.tokens, r.decision) == (cap, Decision::Capped)));
}

/// Weak duality: for any price λ ≥ 0, `λB + Σ max_b (w·U(b) − λb)` bounds the optimum
/// from above. At the allocation's price, large batches (whose search starts from the
/// fused first pass) must come within one query's utility of it (Shapley–Folkman).
#[test]
fn large_batches_are_within_one_query_of_the_dual_bound() {
    let mut rng = StdRng::seed_from_u64(31);
    let allocator = Allocator::builder().default_cap(8192).build().unwrap();
    for (n, per_query) in [(4096, 300u64), (9000, 100), (30_000, 300), (12_000, 1500)] {
        let queries = random_batch(&mut rng, n);
        let budget = per_query * n as u64;
        let a = allocator.allocate(&queries, budget).unwrap();
        assert!(a.total_tokens() <= budget);
        let price = a.price().unwrap();
        let surplus: f64 = queries
            .iter()
            .map(|q| {
                let cap = q.cap().unwrap_or(8192) as f64;
                let b = q.curve().best_response(price / q.weight(), cap).unwrap();
                (q.weight() * q.curve().utility(b) - price * b).max(0.0)
            })
            .sum();
        let dual = price * budget as f64 + surplus;
        let one_query = queries
            .iter()
            .map(|q| q.weight() * q.curve().ceiling())
            .fold(0.0, f64::max);
        let gap = dual - a.total_utility();
        assert!(
            gap >= -1e-9 * dual,
            "n = {n}: utility above the dual bound by {}",
            -gap
        );
        assert!(
            gap <= one_query,
            "n = {n}: {gap} below the dual bound (one query: {one_query})"
        );
    }
}
