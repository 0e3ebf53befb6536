//! Bidding: a query's demand for tokens at a price (SPEC §3), with its weight and cap
//! folded into a [`Bidder`] once so that a bid costs at most one W₋₁ evaluation, and
//! the curve's public best response built on it.
//!
//! On the concave branch `z e^(−z) = r` with `r = λ/(pβ)`, so `e^z = z/r`: the
//! rational-abandonment test (is the surplus at `b*` positive?) needs no further
//! exponential.

use crate::error::{self, Result, Subject};
use crate::model::{surge_cdf, surge_cdf_and_density, surge_density, surge_z, ShiftedSurge, INV_E};

impl ShiftedSurge {
    /// The best response to price λ ≥ 0 under a cap (SPEC §3): the budget in
    /// `[0, cap]` that maximises the surplus `U(b) − λb`, which is 0 (rational
    /// abandonment) unless the best candidate's surplus is positive.
    ///
    /// ```
    /// # use clear_alloc::ShiftedSurge;
    /// let curve = ShiftedSurge::from_alpha_beta(200.0, 1.5, 1.0 / 200.0)?;
    /// let b = curve.best_response(60.0, 4096.0)?;
    /// assert!((b - 708.5).abs() < 0.1); // φ(b) = 60 on the concave branch
    /// assert_eq!(curve.best_response(1e6, 4096.0)?, 0.0); // too expensive: abandoned
    /// # Ok::<(), clear_alloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) when the price or the cap is NaN, infinite or
    /// negative.
    pub fn best_response(&self, price: f64, cap: f64) -> Result<f64> {
        error::non_negative(Subject::Parameter, "price", price)?;
        error::non_negative(Subject::Parameter, "cap", cap)?;
        Ok(Bidder::new(self, 1.0, cap).bid(price).tokens())
    }

    /// The abandonment price under a cap: the query's best response is funded at
    /// prices below it and abandoned at prices at or above it (SPEC §3). It equals the
    /// best average utility per token, `max_{0 < b ≤ cap} U(b)/b`, reached where the
    /// tangent from the origin touches the curve; computed by a few Newton steps.
    ///
    /// ```
    /// # use clear_alloc::ShiftedSurge;
    /// let curve = ShiftedSurge::new(300.0, 100.0, 0.8)?;
    /// let price = curve.abandonment_price(8192.0)?;
    /// assert!(curve.best_response(price * 0.999, 8192.0)? > 0.0);
    /// assert_eq!(curve.best_response(price * 1.001, 8192.0)?, 0.0);
    /// # Ok::<(), clear_alloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) when the cap is NaN, infinite or negative.
    pub fn abandonment_price(&self, cap: f64) -> Result<f64> {
        error::non_negative(Subject::Parameter, "cap", cap)?;
        Ok(Bidder::new(self, 1.0, cap).abandonment_price())
    }
}

/// One query's demand at a price, as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bid {
    /// Best response is 0 tokens.
    Out,
    /// Best response is the cap.
    AtCap(f64),
    /// Best response is the stationary point of a shifted surge; `z = β(b* − τ)`
    /// gives the slope (computed only when the search asks for it).
    Interior {
        /// The stationary point.
        tokens: f64,
        /// `β(b* − τ)`.
        z: f64,
        /// The surge rate.
        beta: f64,
    },
    /// Best response is below the cap on any other curve, with its slope
    /// `d tokens / d ln λ` (0 at a vertex of a concave hull).
    Smooth {
        /// The best response.
        tokens: f64,
        /// `d tokens / d ln λ` (≤ 0).
        slope: f64,
    },
}

impl Bid {
    /// The tokens bid (0 when out).
    pub fn tokens(self) -> f64 {
        match self {
            Bid::Out => 0.0,
            Bid::AtCap(cap) => cap,
            Bid::Interior { tokens, .. } | Bid::Smooth { tokens, .. } => tokens,
        }
    }

    /// `d tokens / d ln λ` (≤ 0): the slope the price search's Newton step uses.
    pub fn log_price_slope(self) -> f64 {
        match self {
            Bid::Interior { z, beta, .. } => z / (beta * (1.0 - z)),
            Bid::Smooth { slope, .. } => slope,
            _ => 0.0,
        }
    }
}

/// What the solver asks of one query's prepared curve (its weight and cap folded
/// in): bids at a price under each rule, and the prices where the bids change.
/// Nominally public so that [`Curve`](crate::Curve) can name it; it lives in a private
/// module, so only the crate implements it.
pub trait Bidding: Clone + std::fmt::Debug + Send + Sync {
    /// Whether the solver should copy bidders of this type side by side for its
    /// passes over the queries still in play: true for a small bidder that owns no
    /// memory, whose copy is cheaper than the scattered reads it saves.
    const COMPACT: bool = false;

    /// The cap in tokens.
    fn cap(&self) -> f64;
    /// Grants at or below this many tokens buy nothing.
    fn threshold(&self) -> f64;
    /// Whether anything is worth buying at all: `U(cap) > 0`.
    fn fundable(&self) -> bool;
    /// The largest price at which `rule` funds this query.
    fn max_price_under(&self, rule: BidRule) -> f64;
    /// Demand at `price` under `rule`.
    fn bid_by(&self, price: f64, rule: BidRule) -> Bid;
    /// Demand at a price ignoring abandonment, non-increasing in the price (used to
    /// spend a leftover among queries that are already funded).
    fn bid_funded(&self, price: f64) -> Bid;
    /// The bid of a funded query whose best response is `tokens`, rebuilt cheaply.
    fn funded_bid_at(&self, tokens: f64) -> Bid;
    /// `max_{0 < b ≤ min(cap, limit)} w·U(b)/b`.
    fn abandonment_price_within(&self, limit: f64) -> f64;

    /// The largest price at which this query can be funded (rational rule).
    fn max_price(&self) -> f64 {
        self.max_price_under(BidRule::Rational)
    }
    /// Best response at `price` (with rational abandonment).
    fn bid(&self, price: f64) -> Bid {
        self.bid_by(price, BidRule::Rational)
    }
    /// The price at which the best response switches from funded to abandoned.
    fn abandonment_price(&self) -> f64 {
        self.abandonment_price_within(self.cap())
    }
    /// The `(scale, β)` of a shifted surge: queries sharing it share `z(λ)`.
    fn shape(&self) -> Option<(f64, f64)> {
        None
    }
    /// Demand at `price` under `rule` given the shared `z(λ)` of its shape.
    fn bid_shared(&self, price: f64, rule: BidRule, _z: f64) -> Bid {
        self.bid_by(price, rule)
    }
}

impl Bidding for Bidder {
    const COMPACT: bool = true;

    fn cap(&self) -> f64 {
        Bidder::cap(self)
    }
    fn threshold(&self) -> f64 {
        Bidder::threshold(self)
    }
    fn fundable(&self) -> bool {
        Bidder::fundable(self)
    }
    fn max_price_under(&self, rule: BidRule) -> f64 {
        Bidder::max_price_under(self, rule)
    }
    #[inline]
    fn bid_by(&self, price: f64, rule: BidRule) -> Bid {
        Bidder::bid_by(self, price, rule)
    }
    fn bid_funded(&self, price: f64) -> Bid {
        Bidder::bid_funded(self, price)
    }
    fn funded_bid_at(&self, tokens: f64) -> Bid {
        Bidder::funded_bid_at(self, tokens)
    }
    fn abandonment_price_within(&self, limit: f64) -> f64 {
        Bidder::abandonment_price_within(self, limit)
    }
    fn max_price(&self) -> f64 {
        Bidder::max_price(self)
    }
    #[inline]
    fn bid(&self, price: f64) -> Bid {
        Bidder::bid(self, price)
    }
    fn shape(&self) -> Option<(f64, f64)> {
        Some(Bidder::shape(self))
    }
    #[inline]
    fn bid_shared(&self, price: f64, rule: BidRule, z: f64) -> Bid {
        self.bid_with(price, rule, || z)
    }
}

/// What the solver's first pass learns of one query: its bidder and bid, or — when
/// the bid is out and none of the bidder's other constants is needed — only what the
/// batch's summary takes. Nominally public so that [`Curve`](crate::Curve) can name
/// it; only the crate builds it.
#[derive(Debug, Clone, Copy)]
pub enum Scanned<B> {
    /// The prepared bidder and its bid.
    Bid(B, Bid),
    /// Out at the price, with the bidder's summary facts.
    Out {
        /// [`Bidding::max_price_under`] the rule.
        max_price: f64,
        /// [`Bidding::fundable`].
        fundable: bool,
        /// [`Bidding::shape`].
        shape: Option<(f64, f64)>,
    },
}

/// A curve with its weight and cap folded into the constants the best response needs,
/// computed once so that a bid at a price costs at most one W₋₁ evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bidder {
    threshold: f64,
    beta: f64,
    /// `weight · p · β`: the marginal is `scale · z e^(−z)`.
    scale: f64,
    cap: f64,
    /// At prices up to this one the cap is the only funded candidate: +∞ when the cap
    /// is at or before the inflection point, else the marginal at the cap.
    cap_regime_until: f64,
    /// `weight · U(cap) / cap`: the cap is funded below this price.
    cap_price: f64,
    /// `weight · φ(cap)`: the marginal utility of the last token of the cap.
    cap_marginal: f64,
    /// No price at or above this one funds the query under the rational rule: an
    /// upper bound on its abandonment price ([`solvency_bound`]), which spares a bid
    /// there its W₋₁.
    solvent_below: f64,
}

/// How a query responds to a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BidRule {
    /// Best response with rational abandonment: funded only at a positive surplus.
    Rational,
    /// No abandonment: the query buys up to where its marginal utility meets the price
    /// whenever it can (the paper's "CLEAR without abandonment" ablation).
    KeepAll,
}

impl Bidder {
    /// `weight` must be finite and ≥ 0 and `cap` finite and ≥ 0 (the caller checks).
    #[inline]
    pub(crate) fn new(curve: &ShiftedSurge, weight: f64, cap: f64) -> Bidder {
        let (scale, solvent_below) = Bidder::scale_and_bound(curve, weight);
        Bidder::with_scale(curve, weight, cap, scale, solvent_below)
    }

    /// The marginal's scale `wpβ` and the solvency bound `scale · g(βτ)`.
    #[inline]
    fn scale_and_bound(curve: &ShiftedSurge, weight: f64) -> (f64, f64) {
        // Grouped so that a large weight and a small width cannot overflow on the way.
        let scale = weight * (curve.ceiling() * curve.beta());
        (
            scale,
            scale * solvency_bound(curve.beta() * curve.threshold()),
        )
    }

    /// [`Bidder::new`] given [`Bidder::scale_and_bound`].
    #[inline]
    fn with_scale(
        curve: &ShiftedSurge,
        weight: f64,
        cap: f64,
        scale: f64,
        solvent_below: f64,
    ) -> Bidder {
        let z_cap = curve.z(cap);
        let (cdf_cap, density_cap) = surge_cdf_and_density(z_cap);
        let cap_marginal = scale * density_cap;
        let cap_regime_until = if z_cap <= 1.0 {
            f64::INFINITY
        } else {
            cap_marginal
        };
        let cap_price = if cap > 0.0 {
            weight * curve.ceiling() * cdf_cap / cap
        } else {
            0.0
        };
        Bidder {
            threshold: curve.threshold(),
            beta: curve.beta(),
            scale,
            cap,
            cap_regime_until,
            cap_price,
            cap_marginal,
            solvent_below,
        }
    }

    /// [`Curve::scan`](crate::Curve::scan) for a shifted surge: out without the
    /// exponential at the cap when the price is at or above the solvency bound under
    /// the rational rule (out in every regime: the cap's average utility is at most
    /// the abandonment price), the cap is three widths or more past the threshold (so
    /// the peak marginal, not the cap's average, is the highest funding price) and
    /// the cap's average utility is clearly positive or exactly 0. The facts are the
    /// ones [`Bidder::new`] would give, to the bit.
    #[inline]
    pub(crate) fn scan(
        curve: &ShiftedSurge,
        weight: f64,
        cap: f64,
        price: f64,
        rule: BidRule,
    ) -> Scanned<Bidder> {
        let (scale, solvent_below) = Bidder::scale_and_bound(curve, weight);
        if rule == BidRule::Rational && price >= solvent_below && curve.z(cap) >= 3.0 {
            // The cap's average utility is `weight · ceiling · P(2, z_cap) / cap` with
            // P(2, z_cap) ≥ 0.8 from z_cap = 3 on: exactly 0 or clearly positive
            // unless it could underflow.
            let value = weight * curve.ceiling();
            let fundable = if value == 0.0 {
                Some(false)
            } else if value / cap >= 1e-300 {
                Some(true)
            } else {
                None
            };
            if let Some(fundable) = fundable {
                return Scanned::Out {
                    max_price: scale * INV_E,
                    fundable,
                    shape: Some((scale, curve.beta())),
                };
            }
        }
        let bidder = Bidder::with_scale(curve, weight, cap, scale, solvent_below);
        Scanned::Bid(bidder, bidder.bid_by(price, rule))
    }

    pub(crate) fn cap(&self) -> f64 {
        self.cap
    }

    pub(crate) fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The `(scale, β)` pair that fixes the shape of the marginal; queries sharing it
    /// share `z(λ)`.
    pub(crate) fn shape(&self) -> (f64, f64) {
        (self.scale, self.beta)
    }

    /// Whether anything is worth buying at all: `U(cap) > 0`.
    pub(crate) fn fundable(&self) -> bool {
        self.cap_price > 0.0
    }

    /// The largest price at which this query can be funded (all bids at or above it
    /// are `Out`): the peak marginal, or the cap price when the cap decides.
    #[inline]
    pub(crate) fn max_price(&self) -> f64 {
        if self.cap_regime_until.is_infinite() {
            self.cap_price
        } else {
            (self.scale * INV_E).max(self.cap_price)
        }
    }

    /// Best response at `price` (with rational abandonment).
    #[inline]
    pub(crate) fn bid(&self, price: f64) -> Bid {
        self.bid_with(price, BidRule::Rational, || surge_z(price / self.scale))
    }

    /// Demand at `price` under `rule`.
    #[inline]
    pub(crate) fn bid_by(&self, price: f64, rule: BidRule) -> Bid {
        self.bid_with(price, rule, || surge_z(price / self.scale))
    }

    /// Demand at `price` under `rule`, with `z(λ)` supplied lazily (the allocator
    /// shares it between queries of the same shape).
    #[inline]
    pub(crate) fn bid_with(&self, price: f64, rule: BidRule, z_at: impl FnOnce() -> f64) -> Bid {
        let rational = rule == BidRule::Rational;
        if price <= self.cap_regime_until {
            let affordable = if rational {
                price < self.cap_price
            } else {
                price < self.cap_marginal || self.cap_regime_until.is_finite()
            };
            self.at_cap_if(affordable)
        } else if price < self.scale * INV_E {
            if rational && price >= self.solvent_below {
                return Bid::Out;
            }
            let z = z_at();
            let tokens = self.threshold + z / self.beta;
            if tokens >= self.cap {
                // The cap comes first after all: far past the inflection its marginal
                // underflows to 0 (and so can z's argument), which hides the cap regime.
                return self.at_cap_if(!rational || price < self.cap_price);
            }
            let r = price / self.scale;
            // Surplus at b* is positive ⇔ e^z > 1 + (1 + βτ) z + z², and e^z = z/r.
            let t = self.beta * self.threshold;
            if !rational || z / r > 1.0 + (1.0 + t) * z + z * z {
                Bid::Interior {
                    tokens,
                    z,
                    beta: self.beta,
                }
            } else {
                Bid::Out
            }
        } else {
            Bid::Out
        }
    }

    /// The cap if it is affordable and buys anything, else nothing.
    #[inline]
    fn at_cap_if(&self, affordable: bool) -> Bid {
        if affordable && self.cap_price > 0.0 {
            Bid::AtCap(self.cap)
        } else {
            Bid::Out
        }
    }

    /// The largest price at which `rule` funds this query.
    #[inline]
    pub(crate) fn max_price_under(&self, rule: BidRule) -> f64 {
        match rule {
            BidRule::Rational => self.max_price(),
            BidRule::KeepAll if self.cap_regime_until.is_infinite() => self.cap_marginal,
            BidRule::KeepAll => self.scale * INV_E,
        }
    }

    /// Demand on the concave branch at `price`, ignoring abandonment (used to spend a
    /// leftover among queries that are already funded).
    #[inline]
    pub(crate) fn bid_funded(&self, price: f64) -> Bid {
        if price <= self.cap_regime_until {
            Bid::AtCap(self.cap)
        } else if price < self.scale * INV_E {
            let z = surge_z(price / self.scale);
            let tokens = self.threshold + z / self.beta;
            if tokens >= self.cap {
                return Bid::AtCap(self.cap);
            }
            Bid::Interior {
                tokens,
                z,
                beta: self.beta,
            }
        } else {
            // Unreachable for a query funded at some price above this one: funded
            // queries are re-priced only downwards.
            Bid::Out
        }
    }

    /// The bid of a funded query whose best response is `tokens` (its cap, or a
    /// stationary point), rebuilt without a W₋₁ evaluation.
    #[inline]
    pub(crate) fn funded_bid_at(&self, tokens: f64) -> Bid {
        if tokens >= self.cap {
            Bid::AtCap(self.cap)
        } else {
            Bid::Interior {
                tokens,
                z: self.beta * (tokens - self.threshold),
                beta: self.beta,
            }
        }
    }

    /// The price at which the best response switches from funded to abandoned.
    pub(crate) fn abandonment_price(&self) -> f64 {
        self.abandonment_price_within(self.cap)
    }

    /// The abandonment price if no more than `limit` tokens could be granted: the best
    /// weighted average utility per token, `max_{0 < b ≤ min(cap, limit)} w·U(b)/b`.
    /// A query is solvent at λ exactly when some grant's average utility exceeds λ.
    pub(crate) fn abandonment_price_within(&self, limit: f64) -> f64 {
        let limit = self.cap.min(limit);
        if limit <= self.threshold || self.scale == 0.0 {
            return 0.0;
        }
        // The average U(b)/b rises until it meets the marginal φ(b) (the tangent from
        // the origin) and falls after.
        let z = tangent_z(self.beta * self.threshold);
        let tangent = self.threshold + z / self.beta;
        if tangent <= limit {
            self.scale * surge_density(z)
        } else {
            self.scale / self.beta * surge_cdf(self.beta * (limit - self.threshold)) / limit
        }
    }
}

/// An upper bound, within 1 %, on the abandonment price of a shifted surge per unit
/// of its marginal's scale `wpβ`, as a function of its threshold in widths, `t = βτ`.
///
/// The abandonment price over `wpβ` is `g(t) = max_z P(2, z)/(t + z)` — the density
/// `z e^(−z)` at the tangent point ([`tangent_z`]) — uncapped; a cap only lowers it.
/// Each `P(2, z)/(t + z)` falls as `t` grows, so `g` does, and `g(t_k)` bounds it on
/// `[t_k, t_(k+1))`. The grid is 128 steps per octave of `1 + t` up to `2²⁰` (read off
/// the bits of `1 + t`, no logarithm), so neighbouring bounds differ by under 1 %;
/// beyond it `g(t) < 1/t`. Both are raised by 1e-9 relative, far above the rounding of
/// the tangent point and of the bid's own surplus test, so a bid at or above the
/// bound is abandoned exactly as the test would find.
pub(crate) fn solvency_bound(t: f64) -> f64 {
    const OCTAVES: usize = 20;
    const STEP_BITS: u32 = 52 - 7;
    static TABLE: std::sync::LazyLock<Vec<f64>> = std::sync::LazyLock::new(|| {
        (0..OCTAVES << 7)
            .map(|k| {
                let x =
                    f64::from_bits((1023 + (k as u64 >> 7)) << 52 | (k as u64 & 127) << STEP_BITS);
                surge_density(tangent_z(x - 1.0)) * (1.0 + 1e-9)
            })
            .collect()
    });
    let x = 1.0 + t;
    if x.is_nan() {
        // No threshold in widths to read (a curve validates against this): the peak
        // marginal bounds every price that funds anything.
        return INV_E;
    }
    if x >= (1u64 << OCTAVES) as f64 {
        return INV_E.min((1.0 + 1e-9) / t);
    }
    let bits = x.to_bits();
    let k = (((bits >> 52) - 1023) << 7 | (bits >> STEP_BITS) & 127) as usize;
    TABLE[k]
}

/// The positive root of `e^z = 1 + (1 + t) z + z²`: where the tangent from the origin
/// touches a curve whose threshold is `t` widths (`t = βτ`), in units of the width.
///
/// Newton's method on `f(z) = z − ln(1 + (1 + t) z + z²)`, started from one
/// fixed-point step off `2 + ln(1 + t)`, which lands within 0.15 of the root and right
/// of the minimum of `f` at `z ≈ 1` (so the iteration cannot fall back to the trivial
/// root `z = 0`); three or four steps then reach full precision.
pub(crate) fn tangent_z(t: f64) -> f64 {
    if !t.is_finite() {
        return f64::INFINITY;
    }
    let seed = 2.0 + t.ln_1p();
    let mut z = (1.0 + (1.0 + t) * seed + seed * seed).ln();
    for _ in 0..100 {
        let q = 1.0 + (1.0 + t) * z + z * z;
        let f = z - q.ln();
        let slope = 1.0 - ((1.0 + t) + 2.0 * z) / q;
        let step = f / slope;
        z -= step;
        if step.abs() <= 1e-14 * z {
            break;
        }
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_solvency_bound_is_above_and_near_the_abandonment_price() {
        // Against the abandonment price itself, on a spread of thresholds in widths,
        // including grid points and the ends of the table.
        let mut t = 0.0;
        while t < 3e6 {
            for t in [t, t * (1.0 + 1e-12), t * 0.999] {
                let exact = surge_density(tangent_z(t));
                let bound = solvency_bound(t);
                assert!(bound >= exact * (1.0 + 1e-10), "t = {t}: {bound} < {exact}");
                let slack = if t < (1u64 << 20) as f64 {
                    1.012
                } else {
                    1.0 + 1e-4
                };
                assert!(bound <= exact * slack, "t = {t}: {bound} far above {exact}");
            }
            t = t * 1.37 + 0.011;
        }
        // A bid just at the bound is out; just under the true abandonment price, in.
        let curve = ShiftedSurge::new(400.0, 100.0, 0.8).unwrap();
        let bidder = Bidder::new(&curve, 1.0, 1e6);
        assert_eq!(bidder.bid(bidder.solvent_below), Bid::Out);
        assert!(
            bidder
                .bid(bidder.abandonment_price() * (1.0 - 1e-9))
                .tokens()
                > 0.0
        );
    }

    #[test]
    fn tangent_point_solves_its_equation() {
        // t = 1: e^z = (1 + z)² ⇔ z = 2 ln(1 + z), root 2.51286241725…
        approx::assert_relative_eq!(
            tangent_z(1.0),
            2.512_862_417_252_339_5,
            max_relative = 1e-13
        );
        for t in [0.0, 1e-9, 0.3, 7.0, 1e4, 1e12, 1e200] {
            let z = tangent_z(t);
            let q = 1.0 + (1.0 + t) * z + z * z;
            assert!((z - q.ln()).abs() <= 1e-12 * z, "t = {t}: z = {z}");
            assert!(z > 1.0);
        }
        assert!(tangent_z(f64::INFINITY).is_infinite());
    }
}
