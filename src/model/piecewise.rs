//! A piecewise-linear curve from user points: for curves measured by other means and
//! for the paper's triangular and quadratic ablations (sampled finely enough).

use super::curve::Curve;
use super::hull::{Between, HullBidder, Points};
use crate::error::{Error, Result};

/// A utility curve through user points `(tokens, utility)`: `U(0) = 0`, linear from
/// `(0, 0)` to the first point and between points, flat after the last.
///
/// Tokens must be finite, ≥ 0 and strictly increasing; utilities finite, ≥ 0 and
/// non-decreasing; a point at 0 tokens must have utility 0 (the curve counts what
/// reasoning tokens add: subtract the accuracy without reasoning first). Its best
/// response to a price lies on the upper concave hull of the points (see
/// [`Curve`]; the math is in the `hull` module's source).
///
/// ```
/// use clear_alloc::{Curve, PiecewiseLinear};
///
/// // Nothing below 100 tokens, 50 % at 200, 60 % from 300 on.
/// let curve = PiecewiseLinear::new([(100.0, 0.0), (200.0, 0.5), (300.0, 0.6)])?;
/// assert_eq!(curve.utility(150.0), 0.25);
/// assert_eq!(curve.utility(1e6), 0.6);
/// // Worth 200 tokens at a price below 0.5/200 per token, nothing above it.
/// assert_eq!(curve.abandonment_price(4096.0)?, 0.0025);
/// assert_eq!(curve.best_response(0.002, 4096.0)?, 200.0);
/// assert_eq!(curve.best_response(0.003, 4096.0)?, 0.0);
/// assert!(PiecewiseLinear::new([(200.0, 0.5), (100.0, 0.6)]).is_err());
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PiecewiseLinear {
    points: Points,
    /// `max_b U(b)/b`.
    steepest: f64,
}

impl PiecewiseLinear {
    /// The curve through `points` (see the type's docs for the rules).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `points` (empty), `tokens` (NaN, infinite,
    /// negative or not strictly increasing) or `utility` (NaN, infinite, negative,
    /// decreasing, or positive at 0 tokens).
    pub fn new(points: impl IntoIterator<Item = (f64, f64)>) -> Result<PiecewiseLinear> {
        let points: Vec<(f64, f64)> = points.into_iter().collect();
        if points.is_empty() {
            return Err(Error::invalid_parameter(
                "points",
                0usize,
                "must hold at least one (tokens, utility) point",
            ));
        }
        let mut last = (f64::NEG_INFINITY, 0.0);
        for &(tokens, utility) in &points {
            let bad = |field, value, reason| Err(Error::invalid_parameter(field, value, reason));
            if !(tokens.is_finite() && tokens >= 0.0) {
                return bad("tokens", tokens, "must be finite and >= 0");
            }
            if tokens <= last.0 {
                return bad(
                    "tokens",
                    tokens,
                    "must increase strictly from point to point",
                );
            }
            if !(utility.is_finite() && utility >= 0.0) {
                return bad("utility", utility, "must be finite and >= 0");
            }
            if utility < last.1 {
                return bad("utility", utility, "must not decrease from point to point");
            }
            if tokens == 0.0 && utility > 0.0 {
                return bad(
                    "utility",
                    utility,
                    "must be 0 at 0 tokens (the curve counts what reasoning tokens add)",
                );
            }
            last = (tokens, utility);
        }
        let points = Points {
            points: points.into(),
            between: Between::Linear,
        };
        let steepest = points.best_ratio(f64::INFINITY);
        Ok(PiecewiseLinear { points, steepest })
    }

    /// The points, as given.
    pub fn points(&self) -> &[(f64, f64)] {
        &self.points.points
    }
}

impl Curve for PiecewiseLinear {
    type Bidder = HullBidder;

    fn bidder(&self, weight: f64, cap: f64) -> HullBidder {
        self.points.bidder(weight, cap)
    }

    fn utility(&self, budget: f64) -> f64 {
        self.points.utility(budget)
    }

    /// The slope of the segment right of `budget`.
    fn marginal(&self, budget: f64) -> f64 {
        self.points.marginal(budget)
    }

    fn ceiling(&self) -> f64 {
        self.points.points.last().map_or(0.0, |&(_, u)| u)
    }

    fn threshold(&self) -> f64 {
        self.points.threshold()
    }

    /// The slope of the hull's first segment, `max_b U(b)/b`.
    fn peak_marginal(&self) -> f64 {
        self.steepest
    }
}

/// The empirical curve's best response is on its concave majorant: the upper hull of
/// the tops of its steps (a correct rollout of length `L` counts from token
/// `max(L, 1)`).
#[cfg(feature = "fit")]
impl Curve for crate::fit::EmpiricalCurve {
    type Bidder = HullBidder;

    fn bidder(&self, weight: f64, cap: f64) -> HullBidder {
        empirical_points(self).bidder(weight, cap)
    }

    fn utility(&self, budget: f64) -> f64 {
        crate::fit::EmpiricalCurve::utility(self, budget)
    }

    /// 0: a step function is flat between its steps.
    fn marginal(&self, budget: f64) -> f64 {
        if budget.is_nan() {
            f64::NAN
        } else {
            0.0
        }
    }

    fn ceiling(&self) -> f64 {
        crate::fit::EmpiricalCurve::ceiling(self)
    }

    fn threshold(&self) -> f64 {
        empirical_points(self).threshold()
    }

    /// The slope of the majorant's first segment, `max_b U(b)/b`.
    fn peak_marginal(&self) -> f64 {
        empirical_points(self).best_ratio(f64::INFINITY)
    }
}

/// The tops of the empirical curve's steps, one per distinct correct length.
#[cfg(feature = "fit")]
fn empirical_points(curve: &crate::fit::EmpiricalCurve) -> Points {
    let n = curve.rollouts() as f64;
    let lengths = curve.correct_lengths();
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(lengths.len());
    for (i, &length) in lengths.iter().enumerate() {
        let share = (i + 1) as f64 / n;
        match points.last_mut() {
            Some(last) if last.0 == length => last.1 = share,
            _ => points.push((length, share)),
        }
    }
    Points {
        points: points.into(),
        between: Between::Step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_points_are_rejected_by_field() {
        let cases: [(&[(f64, f64)], &str); 7] = [
            (&[], "points = 0"),
            (&[(f64::NAN, 0.1)], "tokens = NaN"),
            (&[(-1.0, 0.1)], "tokens = -1"),
            (&[(100.0, 0.1), (100.0, 0.2)], "tokens = 100"),
            (&[(100.0, 0.3), (200.0, 0.2)], "utility = 0.2"),
            (&[(100.0, f64::INFINITY)], "utility = inf"),
            (&[(0.0, 0.1)], "utility = 0.1"),
        ];
        for (points, start) in cases {
            let err = PiecewiseLinear::new(points.iter().copied()).unwrap_err();
            assert!(err.to_string().starts_with(start), "{points:?}: {err}");
        }
    }

    #[test]
    fn best_response_matches_a_dense_grid() {
        // A triangular-ablation-like curve: convex, then concave, then flat.
        let curve = PiecewiseLinear::new(
            (0..=40)
                .map(|i| i as f64 * 50.0)
                .map(|b| (b, (b / 2000.0).powi(2) * (3.0 - 2.0 * b / 2000.0))),
        )
        .unwrap();
        for price in [1e-5, 1e-4, 3e-4, 5e-4, 7e-4, 1e-3] {
            for cap in [500.0, 1500.0, 3000.0] {
                let ours = curve.best_response(price, cap).unwrap();
                let grid = (0..=30_000)
                    .map(|i| cap * i as f64 / 30_000.0)
                    .map(|b| curve.utility(b) - price * b)
                    .fold(0.0, f64::max);
                let mine = curve.utility(ours) - price * ours;
                assert!(
                    (mine - grid).abs() <= 1e-12 && ours <= cap,
                    "price {price} cap {cap}: {ours} → {mine} vs {grid}"
                );
            }
        }
    }

    #[cfg(feature = "fit")]
    #[test]
    fn the_empirical_curve_bids_on_its_majorant() {
        use crate::fit::{EmpiricalCurve, Rollout};
        let rollouts = [
            Rollout::correct(120),
            Rollout::correct(120),
            Rollout::correct(300),
            Rollout::correct(2000),
            Rollout::failed(80),
            Rollout::truncated(4096),
        ];
        let curve = EmpiricalCurve::from_rollouts(&rollouts).unwrap();
        assert_eq!(Curve::threshold(&curve), 119.0);
        // Steepest: 2/6 at 120 tokens.
        approx::assert_relative_eq!(curve.abandonment_price(4096.0).unwrap(), 2.0 / 6.0 / 120.0);
        assert_eq!(curve.best_response(1e-3, 4096.0).unwrap(), 120.0);
        // (300 − 120) tokens buy 1/6: worth it below 1/6/180 per token.
        assert_eq!(curve.best_response(9e-4, 4096.0).unwrap(), 300.0);
        assert_eq!(curve.best_response(1e-5, 4096.0).unwrap(), 2000.0);
        assert_eq!(curve.best_response(1e-5, 1000.0).unwrap(), 300.0);
        assert_eq!(curve.best_response(0.01, 4096.0).unwrap(), 0.0);
    }
}
