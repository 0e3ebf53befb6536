//! The re-clear at a window boundary: the lowest price at which a weighted sample of
//! the recent windows' demand fits the budget (SPEC §4), searched from the last price.
//!
//! For shifted surges the search is the solver's, the one the batch allocator uses
//! (secant steps on the smooth part of demand); other curve types, whose best response
//! is a root search of its own, are cleared by bisection in `ln λ` from a bracket
//! stepped out of the last price. This file states the online problem (the lowest
//! feasible price, SPEC §4, with rationing at a jump in demand) and tests it.

use crate::model::Curve;
use crate::solver::{Bidding, WeightedSample};

/// Relative width of the final price bracket at a window boundary.
pub(super) const PRICE_TOLERANCE: f64 = 1e-6;

/// `ln` of (about) the smallest positive normal f64: the low end of the bisection's
/// bracket, where demand is its limit as λ → 0⁺.
const LOG_PRICE_FLOOR: f64 = -708.0;

/// Estimated demand of one window at `price`: each bidder stands for `weight` requests.
pub(super) fn demand<C: Curve>(sample: &[(C::Bidder, f64)], price: f64) -> f64 {
    match C::surge_bidders(sample) {
        Some(surges) => WeightedSample(surges).tokens_at(price),
        None => sample
            .iter()
            .map(|(bidder, weight)| weight * bidder.bid(price).tokens())
            .sum(),
    }
}

/// The next window's price: the lowest feasible price of [`lowest_feasible_price`],
/// unless demand jumps there.
///
/// Demand is a step function where many sampled requests share one abandonment price
/// (identical curves, as a class with one prior curve has): just below it they all
/// buy, at it none does. The feasible end then strands the window's budget — more
/// than half of it by the rule here — and since every request of the next window
/// meets that same price, the window charges nothing and its sample says the same
/// again, for ever. The batch allocator funds some of the requests at such a jump
/// (its greedy step); online, the price just below the jump does the same: requests
/// buy in arrival order and admission, which never grants more than the window has
/// left, rations the rest. The budget promise is the admission's, so it holds.
pub(super) fn clear_price<C: Curve>(sample: &[(C::Bidder, f64)], target: f64, warm: f64) -> f64 {
    let feasible = lowest_feasible_price::<C>(sample, target, warm);
    if feasible > 0.0 && demand::<C>(sample, feasible) < 0.5 * target {
        // The search's bracket is narrower than this step, so `below` is on the side
        // where the jump's requests buy.
        let below = feasible * (1.0 - 2.0 * PRICE_TOLERANCE);
        if demand::<C>(sample, below) > target {
            return below;
        }
    }
    feasible
}

/// The lowest price (to `PRICE_TOLERANCE`) at which the weighted sample's demand is
/// at most `target` (SPEC §4, feasible end of the bracket), searched from `warm`.
/// Keeps `warm` when the sample is empty; 0 when even every cap fits.
pub(super) fn lowest_feasible_price<C: Curve>(
    sample: &[(C::Bidder, f64)],
    target: f64,
    warm: f64,
) -> f64 {
    match C::surge_bidders(sample) {
        Some(surges) => crate::solver::clear_weighted(surges, target, warm, PRICE_TOLERANCE),
        None => bisect::<C>(sample, target, warm),
    }
}

/// [`lowest_feasible_price`] for any bidder: the bracket `demand(lo) > target ≥
/// demand(hi)` in `ln λ` starts at the floor and the highest abandonment price (where
/// demand is 0), is stepped out of the warm start with doubling steps (a price near
/// the last one is bracketed in a few evaluations), then halved to the tolerance:
/// about 30 evaluations of the sample's demand.
fn bisect<C: Curve>(sample: &[(C::Bidder, f64)], target: f64, warm: f64) -> f64 {
    if sample.is_empty() {
        return warm;
    }
    if demand::<C>(sample, 0.0) <= target {
        return 0.0;
    }
    let top = sample
        .iter()
        .map(|(bidder, _)| bidder.max_price())
        .fold(0.0, f64::max);
    let fits = |log_price: f64| demand::<C>(sample, log_price.exp()) <= target;
    let (mut lo, mut hi) = (LOG_PRICE_FLOOR, top.ln());
    if warm > 0.0 && warm < top {
        let mut at = warm.ln();
        let mut step = 0.05;
        let below = fits(at);
        if below {
            hi = at;
        } else {
            lo = at;
        }
        loop {
            at = if below { at - step } else { at + step };
            step *= 2.0;
            if at <= lo || at >= hi {
                break;
            }
            if fits(at) {
                hi = at;
                if !below {
                    break;
                }
            } else {
                lo = at;
                if below {
                    break;
                }
            }
        }
    }
    while hi - lo > PRICE_TOLERANCE {
        let mid = 0.5 * (lo + hi);
        if fits(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    // Still the top price (demand 0 there by definition, never evaluated): exp(ln top)
    // can round a hair below it, where the top bidder still buys.
    if hi >= top.ln() {
        top
    } else {
        hi.exp()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::curve;
    use super::*;
    use crate::solver::Bidder;
    use crate::ShiftedSurge;

    #[test]
    fn an_empty_sample_keeps_the_warm_price() {
        assert_eq!(clear_price::<ShiftedSurge>(&[], 10.0, 3e-4), 3e-4);
    }

    #[test]
    fn a_target_above_every_cap_clears_at_zero() {
        let sample = [(Bidder::new(&curve(100.0, 100.0, 0.9), 1.0, 500.0), 2.0)];
        assert_eq!(demand::<ShiftedSurge>(&sample, 0.0), 1000.0);
        assert_eq!(clear_price::<ShiftedSurge>(&sample, 1000.0, 1e-3), 0.0);
        assert!(clear_price::<ShiftedSurge>(&sample, 999.0, 1e-3) > 0.0);
    }

    #[test]
    fn identical_curves_are_priced_just_below_their_jump() {
        // 40 identical requests, each buying about 400 tokens below the abandonment
        // price and nothing at it; the window has 6 000 tokens.
        let bidder = Bidder::new(&curve(151.0, 101.0, 0.95), 1.0, 4096.0);
        let sample = [(bidder, 40.0)];
        let feasible = lowest_feasible_price::<ShiftedSurge>(&sample, 6000.0, 0.0);
        assert_eq!(
            demand::<ShiftedSurge>(&sample, feasible),
            0.0,
            "the feasible end abandons all"
        );
        let price = clear_price::<ShiftedSurge>(&sample, 6000.0, 0.0);
        assert!(price < feasible && price >= feasible * (1.0 - 3.0 * PRICE_TOLERANCE));
        assert!(
            demand::<ShiftedSurge>(&sample, price) > 6000.0,
            "just below the jump they all buy"
        );
    }

    #[test]
    fn a_price_that_strands_less_than_half_the_budget_is_kept() {
        // Two curves whose demand falls in two steps: at the feasible end one still buys.
        let sample = [
            (Bidder::new(&curve(100.0, 100.0, 0.9), 1.0, 4096.0), 1.0),
            (Bidder::new(&curve(100.0, 100.0, 0.5), 1.0, 4096.0), 1.0),
        ];
        let both = demand::<ShiftedSurge>(&sample, 0.0) - 1.0;
        let feasible = lowest_feasible_price::<ShiftedSurge>(&sample, both, 1e-3);
        assert!(demand::<ShiftedSurge>(&sample, feasible) >= 0.5 * both);
        assert_eq!(clear_price::<ShiftedSurge>(&sample, both, 1e-3), feasible);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xC1EA_0009),
            ..proptest::prelude::ProptestConfig::with_cases(64)
        })]

        /// Bisection (any curve type) and the solver's secant search (surges) find
        /// the same lowest feasible price: the same surges wrapped in `AnyCurve` go
        /// through the bisection. Both stop within `PRICE_TOLERANCE` above the one
        /// infimum of the feasible prices, so they agree to twice that.
        #[test]
        fn bisection_finds_the_solvers_price(
            curves in proptest::collection::vec(
                (0.0f64..2000.0, 10.0f64..800.0, 0.01f64..1.0, 1u64..8192, 0.1f64..10.0),
                1..40,
            ),
            target_share in 0.05f64..1.0,
            warm in proptest::prop_oneof![proptest::strategy::Just(0.0), 1e-9f64..1.0],
        ) {
            let surges: Vec<(Bidder, f64)> = curves
                .iter()
                .map(|&(t, w, p, cap, scale)| (Bidder::new(&curve(t, w, p), 1.0, cap as f64), scale))
                .collect();
            let wrapped: Vec<_> = curves
                .iter()
                .map(|&(t, w, p, cap, scale)| {
                    (crate::AnyCurve::from(curve(t, w, p)).bidder(1.0, cap as f64), scale)
                })
                .collect();
            let target = target_share * demand::<ShiftedSurge>(&surges, 0.0);
            let secant = lowest_feasible_price::<ShiftedSurge>(&surges, target, warm);
            let bisected = lowest_feasible_price::<crate::AnyCurve>(&wrapped, target, warm);
            proptest::prop_assert!(
                (secant - bisected).abs() <= 2.5 * PRICE_TOLERANCE * secant.max(bisected),
                "secant {secant}, bisection {bisected}"
            );
            proptest::prop_assert!(demand::<crate::AnyCurve>(&wrapped, bisected) <= target);
        }
    }

    proptest::proptest! {
        // A fixed seed keeps CI deterministic.
        #![proptest_config(proptest::prelude::ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xC1EA_0006),
            ..proptest::prelude::ProptestConfig::with_cases(128)
        })]

        /// The re-cleared price is the lowest feasible one (SPEC §4) whatever the warm
        /// start: demand at it fits the target, and just below it does not.
        #[test]
        fn the_feasible_end_is_found_from_any_warm_start(
            curves in proptest::collection::vec(
                (0.0f64..2000.0, 10.0f64..800.0, 0.01f64..1.0, 0u64..8192, 0.1f64..3.0, 0.1f64..10.0),
                1..40,
            ),
            target_share in 0.0f64..1.2,
            warm in proptest::prop_oneof![proptest::strategy::Just(0.0), 1e-9f64..1.0],
        ) {
            let sample: Vec<(Bidder, f64)> = curves
                .iter()
                .map(|&(t, w, p, cap, weight, scale)| {
                    (Bidder::new(&curve(t, w, p), weight, cap as f64), scale)
                })
                .collect();
            let caps = demand::<ShiftedSurge>(&sample, 0.0);
            // The next window's price is the feasible end, or just below a jump that
            // would strand more than half the target.
            let next = clear_price::<ShiftedSurge>(&sample, target_share * caps, warm);
            let feasible = lowest_feasible_price::<ShiftedSurge>(&sample, target_share * caps, warm);
            proptest::prop_assert!(
                next == feasible
                    || (next < feasible
                        && demand::<ShiftedSurge>(&sample, feasible) < 0.5 * target_share * caps
                        && demand::<ShiftedSurge>(&sample, next) > target_share * caps)
            );
            let target = target_share * caps;
            let price = lowest_feasible_price::<ShiftedSurge>(&sample, target, warm);
            proptest::prop_assert!(price.is_finite() && price >= 0.0);
            proptest::prop_assert!(demand::<ShiftedSurge>(&sample, price) <= target * (1.0 + 1e-12));
            if price > 1e-300 {
                let below = price * (1.0 - 2.0 * PRICE_TOLERANCE);
                proptest::prop_assert!(demand::<ShiftedSurge>(&sample, below) > target);
            } else {
                proptest::prop_assert!(caps <= target || price > 0.0);
            }
        }
    }
}
