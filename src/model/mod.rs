//! The shifted-surge utility curve of one query (SPEC §2) and its best response to a
//! token price (SPEC §3).
//!
//! The model is the one of Wan et al., *The Shadow Price of Reasoning* (ICML 2026,
//! arXiv 2606.03092): with `x = max(0, b − τ)`,
//!
//! ```text
//! marginal  φ(b) = α · x · e^(−βx)
//! utility   U(b) = (α/β²) · [1 − (1 + βx) · e^(−βx)]
//! ```
//!
//! `U/U∞` is the CDF of `τ + Gamma(2, β)`, the share of correct solutions that finish
//! within `b` tokens. Internally the curve is stored as `(τ, β, p)` with `p = α/β²`,
//! and every formula is written in the dimensionless `z = βx`, so that widths from
//! 1e-300 to 1e300 tokens neither overflow `α = pβ²` nor lose precision.
//!
//! The best response to a price λ uses the closed form of the stationary point,
//! `b*(λ) = τ − W₋₁(−βλ/α)/β`, evaluated with the [`lambert_w`] crate. On that branch
//! `z e^(−z) = r` with `r = λ/(pβ)`, so `e^z = z/r`: the rational-abandonment test
//! (is the surplus at `b*` positive?) needs no further exponential, which keeps the
//! allocator's per-query loop down to one W₋₁ evaluation.

use crate::error::{self, Result, Subject};

mod any;
mod curve;
mod hull;
mod mixture;
mod piecewise;
#[cfg(feature = "serde")]
mod serialize;

pub use any::AnyCurve;
pub use curve::Curve;
pub use mixture::Mixture;
pub use piecewise::PiecewiseLinear;

/// `1/e`, the largest value of `z e^(−z)`.
pub(crate) const INV_E: f64 = 1.0 / std::f64::consts::E;

/// One query's shifted-surge accuracy curve: zero up to the emergence threshold τ,
/// then a surge of width `w = 1/β`, then diminishing returns up to the ceiling
/// `p = α/β²`.
///
/// Construct it from the accuracy parameters `(τ, w, p)` with [`ShiftedSurge::new`] or
/// from the paper's `(τ, α, β)` with [`ShiftedSurge::from_alpha_beta`]; both validate.
///
/// ```
/// use clear_alloc::{Phase, ShiftedSurge};
///
/// // The paper's illustration: α = 1.5, β = 1/200, τ = 200.
/// let curve = ShiftedSurge::from_alpha_beta(200.0, 1.5, 1.0 / 200.0)?;
/// assert_eq!(curve.inflection(), 400.0);
/// assert_eq!(curve.phase(300.0), Phase::Surge);
/// assert!(curve.marginal(251.8) < 60.0 && curve.marginal(252.0) > 60.0);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftedSurge {
    threshold: f64,
    beta: f64,
    ceiling: f64,
}

/// Where a budget falls on a curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Phase {
    /// `b ≤ τ`: no correct answer can appear yet, `U = 0`.
    Strict,
    /// `τ < b < τ + w`: increasing returns, `U` convex.
    Surge,
    /// `b ≥ τ + w`: diminishing returns, `U` concave.
    Ample,
}

/// A curve parameter must be finite and ≥ 0.
fn non_negative(field: &'static str, value: f64) -> Result<()> {
    error::non_negative(Subject::Parameter, field, value)
}

/// A curve parameter must be finite and > 0.
fn positive(field: &'static str, value: f64) -> Result<()> {
    error::positive(Subject::Parameter, field, value)
}

/// A curve parameter must satisfy `ok`.
fn check(field: &'static str, value: f64, ok: bool, reason: &'static str) -> Result<()> {
    error::ensure(ok, Subject::Parameter, field, value, reason)
}

impl ShiftedSurge {
    /// A curve from the accuracy parameterisation: threshold τ ≥ 0 tokens, surge width
    /// `w = 1/β > 0` tokens and ceiling `p = U∞ ≥ 0` (the accuracy with unlimited
    /// tokens).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) naming the field when a value is NaN, infinite, or
    /// out of its domain, or when the width is so small that the peak marginal utility
    /// `p/(w e)` overflows.
    pub fn new(threshold: f64, width: f64, ceiling: f64) -> Result<Self> {
        non_negative("threshold", threshold)?;
        positive("width", width)?;
        non_negative("ceiling", ceiling)?;
        let beta = 1.0 / width;
        check(
            "width",
            width,
            beta.is_finite(),
            "is too small: 1/width overflows",
        )?;
        Self::checked(threshold, beta, ceiling, "ceiling", ceiling)
    }

    /// A curve from the paper's parameterisation: threshold τ ≥ 0, amplitude α > 0 and
    /// surge rate β > 0 (1/tokens). The ceiling is `α/β²`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) naming the field when a value is NaN, infinite or out
    /// of its domain, or when `α/β²` or `α/(βe)` overflows.
    pub fn from_alpha_beta(threshold: f64, alpha: f64, beta: f64) -> Result<Self> {
        non_negative("threshold", threshold)?;
        positive("alpha", alpha)?;
        positive("beta", beta)?;
        check(
            "beta",
            beta,
            (1.0 / beta).is_finite(),
            "is too small: the width 1/beta overflows",
        )?;
        let ceiling = alpha / beta / beta;
        check(
            "beta",
            beta,
            ceiling.is_finite(),
            "is too small for alpha: the ceiling alpha/beta^2 overflows",
        )?;
        Self::checked(threshold, beta, ceiling, "alpha", alpha)
    }

    fn checked(
        threshold: f64,
        beta: f64,
        ceiling: f64,
        field: &'static str,
        value: f64,
    ) -> Result<Self> {
        let curve = ShiftedSurge {
            threshold,
            beta,
            ceiling,
        };
        check(
            field,
            value,
            curve.peak_marginal().is_finite(),
            "makes the peak marginal utility overflow",
        )?;
        Ok(curve)
    }

    /// The same shape (width and ceiling) with another threshold; the serving-time
    /// path of the paper, where only τ is predicted per query.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) when `threshold` is NaN, infinite or negative.
    pub fn with_threshold(&self, threshold: f64) -> Result<Self> {
        non_negative("threshold", threshold)?;
        Ok(ShiftedSurge { threshold, ..*self })
    }

    /// The emergence threshold τ in tokens.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The surge width `w = 1/β` in tokens: distance from the threshold to the
    /// steepest point.
    pub fn width(&self) -> f64 {
        1.0 / self.beta
    }

    /// The surge rate β in 1/tokens.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The amplitude `α = pβ²` (may underflow to 0 or overflow to ∞ for extreme widths;
    /// the curve's own computations never form it).
    pub fn alpha(&self) -> f64 {
        self.ceiling * self.beta * self.beta
    }

    /// The ceiling `U∞ = α/β²`: the utility with unlimited tokens.
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// The inflection point `τ + w`, where the marginal utility peaks.
    pub fn inflection(&self) -> f64 {
        self.threshold + self.width()
    }

    /// The peak marginal utility `φ_max = α/(βe)`, reached at the inflection point.
    pub fn peak_marginal(&self) -> f64 {
        self.ceiling * self.beta * INV_E
    }

    /// The mean length of a correct solution, `τ + 2w`.
    pub fn mean_correct_length(&self) -> f64 {
        self.threshold + 2.0 * self.width()
    }

    /// The phase of the curve at budget `b` (a NaN budget compares as past every
    /// boundary, so it reads as [`Phase::Ample`]).
    pub fn phase(&self, budget: f64) -> Phase {
        if budget <= self.threshold {
            Phase::Strict
        } else if budget < self.inflection() {
            Phase::Surge
        } else {
            Phase::Ample
        }
    }

    /// `z = β · max(0, b − τ)`.
    pub(crate) fn z(&self, budget: f64) -> f64 {
        self.beta * (budget - self.threshold).max(0.0)
    }

    /// The utility `U(b)`: expected accuracy with a budget of `b` tokens.
    /// `U(b) = 0` for `b ≤ τ`; NaN in gives NaN out.
    pub fn utility(&self, budget: f64) -> f64 {
        if budget.is_nan() {
            return f64::NAN;
        }
        self.ceiling * surge_cdf(self.z(budget))
    }

    /// The marginal utility `φ(b) = dU/db` (utility per token) at budget `b`.
    pub fn marginal(&self, budget: f64) -> f64 {
        if budget.is_nan() {
            return f64::NAN;
        }
        self.ceiling * self.beta * surge_density(self.z(budget))
    }

    /// The budget at which the curve reaches `fraction` of its ceiling, i.e. the
    /// `fraction`-quantile of the length of a correct solution.
    ///
    /// ```
    /// # use clear_alloc::ShiftedSurge;
    /// let curve = ShiftedSurge::new(150.0, 100.0, 0.9)?;
    /// let b = curve.budget_for_fraction(0.5)?;
    /// assert!((curve.utility(b) / curve.ceiling() - 0.5).abs() < 1e-12);
    /// # Ok::<(), clear_alloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) unless `0 ≤ fraction < 1`.
    pub fn budget_for_fraction(&self, fraction: f64) -> Result<f64> {
        check(
            "fraction",
            fraction,
            (0.0..1.0).contains(&fraction),
            "must be in [0, 1)",
        )?;
        if fraction == 0.0 {
            return Ok(self.threshold);
        }
        // (1 + z) e^(−z) = 1 − q  ⇔  −(1 + z) e^(−(1 + z)) = −(1 − q)/e.
        let w = lambert_w::lambert_wm1(-(1.0 - fraction) * INV_E);
        let z = (-w - 1.0).max(0.0);
        Ok(self.threshold + z / self.beta)
    }

    /// The stationary point `b*(λ) = τ − W₋₁(−βλ/α)/β` on the concave branch, where
    /// `φ(b*) = λ`; `None` unless `0 < λ < φ_max`.
    pub fn stationary_budget(&self, price: f64) -> Option<f64> {
        let scale = self.ceiling * self.beta;
        if price > 0.0 && price < scale * INV_E {
            Some(self.threshold + surge_z(price / scale) / self.beta)
        } else {
            None
        }
    }

    /// The surplus `U(b) − λ b` of spending `b` tokens at price λ per token.
    pub fn surplus(&self, budget: f64, price: f64) -> f64 {
        self.utility(budget) - price * budget
    }
}

/// `z e^(−z)`, 0 (not NaN) for z = ∞.
pub(crate) fn surge_density(z: f64) -> f64 {
    surge_cdf_and_density(z).1
}

/// `P(2, z) = 1 − (1 + z) e^(−z)`, the regularised lower incomplete gamma function of
/// shape 2: the CDF of Gamma(2, 1).
pub(crate) fn surge_cdf(z: f64) -> f64 {
    surge_cdf_and_density(z).0
}

/// `(P(2, z), z e^(−z))` with one exponential.
///
/// The direct form `1 − (1 + z) e^(−z)` cancels catastrophically for small z (both
/// terms are ≈ 1), so below z = 1 the CDF sums `e^(−z) Σ_{k≥2} z^k/k!`, whose terms
/// are all positive; from z = 1 on the direct form is at least 0.26 and exact to an
/// ulp or two.
pub(crate) fn surge_cdf_and_density(z: f64) -> (f64, f64) {
    if z <= 0.0 {
        return (0.0, 0.0);
    }
    if z > 1e3 {
        // e^(−z) underflows; also keeps ∞ · 0 from making a NaN.
        return (1.0, 0.0);
    }
    let e = (-z).exp();
    let cdf = if z < 1.0 {
        let mut term = z * z / 2.0;
        let mut sum = term;
        let mut k = 2.0;
        while term > sum * 1e-17 {
            k += 1.0;
            term *= z / k;
            sum += term;
        }
        sum * e
    } else {
        1.0 - (1.0 + z) * e
    };
    (cdf, z * e)
}

/// The root `z ≥ 1` of `z e^(−z) = r` for `0 < r ≤ 1/e`: `z = −W₋₁(−r)`.
pub(crate) fn surge_z(r: f64) -> f64 {
    if r >= INV_E {
        return 1.0;
    }
    let w = lambert_w::lambert_wm1(-r);
    // Rounding right at the branch point can push the argument just past −1/e.
    if w.is_nan() {
        1.0
    } else {
        (-w).max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use approx::assert_relative_eq;

    fn paper() -> ShiftedSurge {
        ShiftedSurge::from_alpha_beta(200.0, 1.5, 1.0 / 200.0).unwrap()
    }

    #[test]
    fn utility_and_marginal_at_hand_computed_points() {
        // τ = 100, w = 50, p = 0.8 at b = 200: z = 2.
        let c = ShiftedSurge::new(100.0, 50.0, 0.8).unwrap();
        let e2 = (-2.0f64).exp();
        assert_relative_eq!(
            c.utility(200.0),
            0.8 * (1.0 - 3.0 * e2),
            max_relative = 1e-15
        );
        assert_relative_eq!(
            c.marginal(200.0),
            0.8 / 50.0 * 2.0 * e2,
            max_relative = 1e-15
        );
        assert_eq!(c.utility(100.0), 0.0);
        assert_eq!(c.utility(-5.0), 0.0);
        assert_eq!(c.marginal(99.0), 0.0);
        // Paper parameterisation: α/β² = 1.5 · 200² = 60 000.
        assert_relative_eq!(paper().ceiling(), 60_000.0, max_relative = 1e-15);
        assert_relative_eq!(paper().peak_marginal(), 1.5 * 200.0 / std::f64::consts::E);
    }

    #[test]
    fn utility_at_inflection_is_one_minus_two_over_e() {
        for (tau, w, p) in [(0.0, 1.0, 1.0), (151.0, 101.0, 0.7), (3e5, 2e4, 0.3)] {
            let c = ShiftedSurge::new(tau, w, p).unwrap();
            assert_relative_eq!(
                c.utility(c.inflection()) / p,
                1.0 - 2.0 / std::f64::consts::E,
                max_relative = 1e-14
            );
            assert_relative_eq!(
                c.marginal(c.inflection()),
                c.peak_marginal(),
                max_relative = 1e-14
            );
        }
    }

    #[test]
    fn paper_illustration_phi_at_least_60_on_its_interval() {
        let c = paper();
        // Lower branch W₀ gives 251.8, upper W₋₁ gives 708.5 (SPEC §2).
        assert!(c.marginal(251.7) < 60.0);
        assert!(c.marginal(251.9) > 60.0);
        assert!(c.marginal(708.4) > 60.0);
        assert!(c.marginal(708.6) < 60.0);
        let b = c.stationary_budget(60.0).unwrap();
        assert!((b - 708.5).abs() < 0.05, "{b}");
        assert_relative_eq!(c.marginal(b), 60.0, max_relative = 1e-12);
    }

    #[test]
    fn derivative_of_utility_is_marginal() {
        let c = ShiftedSurge::new(151.0, 101.0, 0.9).unwrap();
        for b in [152.0, 160.0, 200.0, 252.0, 400.0, 1000.0] {
            let h = 1e-3;
            let numeric = (c.utility(b + h) - c.utility(b - h)) / (2.0 * h);
            assert_relative_eq!(numeric, c.marginal(b), max_relative = 1e-6);
        }
    }

    #[test]
    fn small_z_utility_keeps_relative_precision() {
        // U ≈ p z²/2 for tiny z; the naive 1 − (1+z)e^(−z) returns 0 or noise here.
        let c = ShiftedSurge::new(1e6, 1e6, 1.0).unwrap();
        let b = 1e6 + 1e-2; // z = 1e-8
        assert_relative_eq!(c.utility(b), 0.5e-16, max_relative = 1e-7);
        // Series and closed form agree where they meet.
        assert_relative_eq!(surge_cdf(1.0 - 1e-12), surge_cdf(1.0), max_relative = 1e-10);
        assert_relative_eq!(
            surge_cdf(1.0),
            1.0 - 2.0 / std::f64::consts::E,
            max_relative = 1e-15
        );
        assert_eq!(surge_cdf(800.0), 1.0);
    }

    #[test]
    fn phases() {
        let c = ShiftedSurge::new(100.0, 50.0, 1.0).unwrap();
        assert_eq!(c.phase(0.0), Phase::Strict);
        assert_eq!(c.phase(100.0), Phase::Strict);
        assert_eq!(c.phase(120.0), Phase::Surge);
        assert_eq!(c.phase(150.0), Phase::Ample);
        assert_eq!(c.phase(1e9), Phase::Ample);
    }

    #[test]
    fn constructors_validate_every_field() {
        let bad = [
            ShiftedSurge::new(f64::NAN, 1.0, 1.0),
            ShiftedSurge::new(-1.0, 1.0, 1.0),
            ShiftedSurge::new(f64::INFINITY, 1.0, 1.0),
            ShiftedSurge::new(0.0, 0.0, 1.0),
            ShiftedSurge::new(0.0, -1.0, 1.0),
            ShiftedSurge::new(0.0, f64::INFINITY, 1.0),
            ShiftedSurge::new(0.0, 1.0, -0.1),
            ShiftedSurge::new(0.0, 1.0, f64::NAN),
            ShiftedSurge::new(0.0, 1e-310, 1.0),
            ShiftedSurge::new(0.0, 1e-300, 1e300),
            ShiftedSurge::from_alpha_beta(0.0, 0.0, 1.0),
            ShiftedSurge::from_alpha_beta(0.0, 1.0, 0.0),
            ShiftedSurge::from_alpha_beta(0.0, f64::NAN, 1.0),
            ShiftedSurge::from_alpha_beta(0.0, 1.0, 1e-200),
        ];
        for result in bad {
            assert!(
                matches!(result, Err(Error::InvalidParameter { .. })),
                "{result:?}"
            );
        }
        let err = ShiftedSurge::new(0.0, -3.0, 1.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "width = -3 is invalid: must be finite and > 0"
        );
    }

    #[test]
    fn extreme_but_valid_parameters_stay_finite() {
        for (tau, w, p) in [
            (0.0, 1e-300, 1.0),
            (1e300, 1e300, 1e-300),
            (0.0, 1e300, 1e300),
        ] {
            let c = ShiftedSurge::new(tau, w, p).unwrap();
            for b in [0.0, 1.0, 1e10, 1.8e19, 1e300] {
                let u = c.utility(b);
                assert!(u.is_finite() && (0.0..=p).contains(&u), "{u}");
                assert!(c.marginal(b).is_finite());
            }
            let r = c.best_response(c.peak_marginal() / 2.0, 1.8e19).unwrap();
            assert!(r.is_finite());
            // The best response is never worse than taking the cap (or nothing).
            for price in [1e-300, c.peak_marginal() * 1e-6] {
                let b = c.best_response(price, 900.0).unwrap();
                let best_corner = c.surplus(900.0, price).max(0.0);
                assert!(
                    c.surplus(b, price) >= best_corner - 1e-12 * p,
                    "τ {tau} w {w} p {p} price {price}: {b} tokens"
                );
            }
        }
    }

    #[test]
    fn best_response_candidates_and_surplus_test() {
        let c = paper();
        // Uncapped interior: the stationary point.
        let b = c.best_response(60.0, 32768.0).unwrap();
        assert_relative_eq!(b, c.stationary_budget(60.0).unwrap());
        assert!(c.surplus(b, 60.0) > 0.0);
        // Cap below b* with a positive surplus: the cap (U(500) = 26 530 > 50 · 500) …
        assert_eq!(c.best_response(50.0, 500.0).unwrap(), 500.0);
        // … and with a negative one, nothing (26 530 < 60 · 500).
        assert_eq!(c.best_response(60.0, 500.0).unwrap(), 0.0);
        // Cap inside the surge: the cap if its surplus is positive, else nothing.
        assert_eq!(c.best_response(1.0, 300.0).unwrap(), 300.0);
        assert_eq!(c.best_response(100.0, 300.0).unwrap(), 0.0);
        // Above the peak marginal nothing is worth buying.
        assert_eq!(
            c.best_response(c.peak_marginal() * 1.01, 32768.0).unwrap(),
            0.0
        );
        // Price 0: the whole cap.
        assert_eq!(c.best_response(0.0, 32768.0).unwrap(), 32768.0);
        // Brute force over a token grid agrees on the funded/abandoned decision.
        for price in [1.0, 20.0, 60.0, 80.0, 100.0, 110.0] {
            let best = (0..=4000)
                .map(|b| c.surplus(b as f64, price))
                .fold(0.0f64, f64::max);
            let ours = c.best_response(price, 4000.0).unwrap();
            assert!(
                (c.surplus(ours, price) - best).abs() <= 1e-6 * c.ceiling(),
                "price {price}: {ours} vs grid best {best}"
            );
        }
        assert!(c.best_response(f64::NAN, 1.0).is_err());
        assert!(c.best_response(1.0, -1.0).is_err());
    }
    #[test]
    fn abandonment_price_has_zero_surplus() {
        let c = ShiftedSurge::new(300.0, 100.0, 0.8).unwrap();
        let price = c.abandonment_price(1e5).unwrap();
        let b = c.stationary_budget(price).unwrap();
        assert!(c.surplus(b, price).abs() < 1e-12);
        // Higher threshold, same shape: insolvent at a lower price.
        let harder = c.with_threshold(600.0).unwrap();
        assert!(harder.abandonment_price(1e5).unwrap() < price);
        // An early cap decides by average utility per token.
        let early = c.abandonment_price(350.0).unwrap();
        assert_relative_eq!(early, c.utility(350.0) / 350.0, max_relative = 1e-12);
    }

    #[test]
    fn budget_for_fraction_inverts_the_utility() {
        let c = ShiftedSurge::new(142.0, 218.0, 1.0).unwrap();
        for q in [1e-9, 0.01, 0.2642, 0.5, 0.9, 0.999999] {
            let b = c.budget_for_fraction(q).unwrap();
            assert_relative_eq!(c.utility(b), q, max_relative = 1e-7);
        }
        assert_eq!(c.budget_for_fraction(0.0).unwrap(), 142.0);
        assert!(c.budget_for_fraction(1.0).is_err());
        assert!(c.budget_for_fraction(f64::NAN).is_err());
    }
}
