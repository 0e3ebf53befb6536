//! The [`Curve`] trait: what the allocator needs to know of a query's accuracy curve.
//!
//! Every allocator is generic over it and monomorphised, so a batch of
//! [`ShiftedSurge`](crate::ShiftedSurge) curves keeps its closed-form best response
//! (one W₋₁ evaluation per bid) while a batch of [`Mixture`](crate::Mixture),
//! [`PiecewiseLinear`](crate::PiecewiseLinear) or empirical curves uses theirs.
//! [`AnyCurve`](crate::AnyCurve) lets one batch mix kinds.

use crate::error::{self, Result, Subject};
use crate::solver::Bidding;

/// A query's expected utility (accuracy) as a function of its reasoning-token budget:
/// non-decreasing, `U(b) = 0` up to [`threshold`](Curve::threshold), bounded by
/// [`ceiling`](Curve::ceiling).
///
/// The allocator needs, besides `U` and its marginal, the *best response* to a price
/// λ under a cap — the budget in `[0, cap]` that maximises the surplus `U(b) − λb`,
/// 0 unless that surplus is positive (rational abandonment, SPEC §3) — and the
/// *abandonment price*, `max_{0 < b ≤ cap} U(b)/b`, above which the best response is
/// 0. Each curve type computes both its own way (see its docs): a closed form for
/// [`ShiftedSurge`](crate::ShiftedSurge), a safeguarded root search between the
/// turning points of the marginal for [`Mixture`](crate::Mixture), the upper concave
/// hull for [`PiecewiseLinear`](crate::PiecewiseLinear) and the empirical curve.
///
/// The trait is implemented by the crate's curve types (the preparation it asks for
/// is internal to the solver); a curve measured by other means enters as a
/// [`PiecewiseLinear`](crate::PiecewiseLinear).
///
/// ```
/// use clear_alloc::{Curve, Mixture, ShiftedSurge};
///
/// fn funded_at<C: Curve>(curve: &C, price: f64) -> bool {
///     curve.best_response(price, 4096.0).unwrap() > 0.0
/// }
/// let surge = ShiftedSurge::new(150.0, 100.0, 0.9)?;
/// let mixture = Mixture::new([(0.5, surge), (0.5, surge.with_threshold(600.0)?)])?;
/// assert!(funded_at(&surge, 1e-3) && funded_at(&mixture, 1e-4));
/// assert!(!funded_at(&mixture, 1.0));
/// # Ok::<(), clear_alloc::Error>(())
/// ```
pub trait Curve: Clone + std::fmt::Debug + Send + Sync {
    /// The curve with its priority weight and cap folded into the constants of its
    /// best response (internal to the solver).
    #[doc(hidden)]
    type Bidder: Bidding;

    /// Prepares the bidder for `weight · U` under `cap` (both finite and ≥ 0; the
    /// caller checks).
    #[doc(hidden)]
    fn bidder(&self, weight: f64, cap: f64) -> Self::Bidder;

    /// The bidder for `weight · U` under `cap` and its bid at `price` under `rule`,
    /// or — where a curve can tell cheaply that the bid is out — only what the
    /// batch's summary takes from it (internal to the solver's first pass).
    #[doc(hidden)]
    #[inline]
    fn scan(
        &self,
        weight: f64,
        cap: f64,
        price: f64,
        rule: crate::solver::BidRule,
    ) -> crate::solver::Scanned<Self::Bidder> {
        let bidder = self.bidder(weight, cap);
        let bid = bidder.bid_by(price, rule);
        crate::solver::Scanned::Bid(bidder, bid)
    }

    /// This curve type's weighted bidders as shifted-surge bidders, when they are
    /// (internal: the online re-clear then uses the solver's secant search on them;
    /// other curves are cleared by bisection).
    #[doc(hidden)]
    fn surge_bidders(_sample: &[(Self::Bidder, f64)]) -> Option<&[(crate::solver::Bidder, f64)]> {
        None
    }

    /// The utility `U(b)` with a budget of `b` tokens (NaN in gives NaN out).
    fn utility(&self, budget: f64) -> f64;

    /// The marginal utility `dU/db` at `b` (the right derivative where `U` has a
    /// kink; 0 between the steps of a step function).
    fn marginal(&self, budget: f64) -> f64;

    /// The utility with unlimited tokens, `sup_b U(b)`.
    fn ceiling(&self) -> f64;

    /// The largest budget at which the utility is still 0: grants at or below it buy
    /// nothing.
    fn threshold(&self) -> f64;

    /// The highest price at which any budget is worth buying: the peak of the
    /// marginal for smooth curves, the steepest slope of the concave majorant for
    /// piecewise-linear and empirical curves. The allocator checks that a query's
    /// weight times it is finite.
    fn peak_marginal(&self) -> f64;

    /// The best response to price λ ≥ 0 under a cap (SPEC §3): the budget in
    /// `[0, cap]` that maximises `U(b) − λb`, and 0 unless the surplus there is
    /// positive.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) when the price or
    /// the cap is NaN, infinite or negative.
    fn best_response(&self, price: f64, cap: f64) -> Result<f64> {
        error::non_negative(Subject::Parameter, "price", price)?;
        error::non_negative(Subject::Parameter, "cap", cap)?;
        Ok(self.bidder(1.0, cap).bid(price).tokens())
    }

    /// The abandonment price under a cap: the best average utility per token,
    /// `max_{0 < b ≤ cap} U(b)/b`. The best response is funded below it and 0 at or
    /// above it (SPEC §3).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) when the cap is NaN,
    /// infinite or negative.
    fn abandonment_price(&self, cap: f64) -> Result<f64> {
        error::non_negative(Subject::Parameter, "cap", cap)?;
        Ok(self.bidder(1.0, cap).abandonment_price())
    }
}

/// The closed forms of SPEC §2–3 (see [`ShiftedSurge`](crate::ShiftedSurge)).
impl Curve for crate::ShiftedSurge {
    type Bidder = crate::solver::Bidder;

    #[inline]
    fn bidder(&self, weight: f64, cap: f64) -> Self::Bidder {
        crate::solver::Bidder::new(self, weight, cap)
    }
    #[inline]
    fn scan(
        &self,
        weight: f64,
        cap: f64,
        price: f64,
        rule: crate::solver::BidRule,
    ) -> crate::solver::Scanned<Self::Bidder> {
        crate::solver::Bidder::scan(self, weight, cap, price, rule)
    }
    fn surge_bidders(sample: &[(Self::Bidder, f64)]) -> Option<&[(crate::solver::Bidder, f64)]> {
        Some(sample)
    }
    fn utility(&self, budget: f64) -> f64 {
        crate::ShiftedSurge::utility(self, budget)
    }
    fn marginal(&self, budget: f64) -> f64 {
        crate::ShiftedSurge::marginal(self, budget)
    }
    fn ceiling(&self) -> f64 {
        crate::ShiftedSurge::ceiling(self)
    }
    fn threshold(&self) -> f64 {
        crate::ShiftedSurge::threshold(self)
    }
    fn peak_marginal(&self) -> f64 {
        crate::ShiftedSurge::peak_marginal(self)
    }
    fn best_response(&self, price: f64, cap: f64) -> Result<f64> {
        crate::ShiftedSurge::best_response(self, price, cap)
    }
    fn abandonment_price(&self, cap: f64) -> Result<f64> {
        crate::ShiftedSurge::abandonment_price(self, cap)
    }
}
