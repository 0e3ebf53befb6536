//! A finite mixture of shifted surges (SPEC §7): `U(b) = Σ_k w_k U_k(b)`, e.g. the
//! posterior curve `E[U(b; τ) | τ̂]` over Gauss–Hermite nodes in `ln τ`.
//!
//! # The best response
//!
//! A mixture has no closed-form best response, and its marginal `φ = Σ_k w_k φ_k` can
//! have several local maxima (one bump per well-separated component), so `U(b) − λb`
//! can have several local maxima too. The method is exact up to root-finding
//! precision, given the turning points of `φ`:
//!
//! 1. **Turning points, once per mixture** ([`Mixture::new`]; they depend on neither
//!    the weight nor the cap nor the price). `φ = 0` up to the smallest threshold
//!    `τ_min`, and past the last inflection `T = max_k (τ_k + w_k)` every component
//!    decreases, so `φ` does. On `[τ_min, T]` the sign of the right derivative `φ'`
//!    is read on a grid — each component's threshold and quarter-widths up to its
//!    inflection, plus a uniform grid of step `min_k w_k / 4` (at most 512 points) —
//!    and every sign change is bisected to 1e-12 relative. (`φ'` jumps up at each
//!    `τ_k`, which makes a local minimum at a kink; bisection on the sign finds
//!    those too.) Between consecutive turning points `φ` is monotone.
//! 2. **Candidates per price.** A local maximum of `U(b) − λb` inside `(0, cap)` has
//!    `φ(b) = λ` with `φ` decreasing through λ, so each *decreasing* stretch of `φ`
//!    holds at most one, found by Newton's method on `φ(b) = λ` safeguarded by
//!    bisection inside the stretch's bracket. The candidates are those roots, the cap
//!    and 0; the best response is the one with the largest surplus, and 0 unless that
//!    surplus is positive (rational abandonment).
//! 3. **Abandonment price** `max U(b)/b`: the ratio's derivative has the sign of
//!    `g(b) = bφ(b) − U(b)`, and `g' = bφ'` has the sign of `φ'`, so `g` is monotone
//!    on each stretch and its `+ → −` crossings (on decreasing stretches) are the local
//!    maxima of `U(b)/b`; each is bisected, and the cap is a candidate too.
//!
//! The grid could only miss a pair of turning points closer together than a quarter
//! of the narrowest width — a shallow wiggle of `φ` whose effect on the surplus is
//! second order; the unit tests compare the best response with a dense grid search.

use super::curve::Curve;
use super::ShiftedSurge;
use crate::error::{Error, Result};
use crate::solver::{Bid, BidRule, Bidding};
use std::sync::Arc;

/// A weighted mixture of shifted surges: `U(b) = Σ_k w_k U_k(b)`.
///
/// The weights are normalised to sum to 1 (so the mixture is an expectation over its
/// components); components of weight 0 are dropped. Cloning is cheap (the components
/// and the precomputed turning points of the marginal are shared).
///
/// ```
/// use clear_alloc::{Allocator, Curve, Mixture, Query, ShiftedSurge};
///
/// // Uncertain threshold: 150 or 450 tokens with equal odds.
/// let shape = ShiftedSurge::new(150.0, 100.0, 0.9)?;
/// let mixture = Mixture::new([(1.0, shape), (1.0, shape.with_threshold(450.0)?)])?;
/// assert_eq!(mixture.components()[0].0, 0.5);
/// assert!((mixture.utility(1e6) - 0.9).abs() < 1e-12);
///
/// let queries = vec![Query::new(mixture).with_cap(4096); 10];
/// let allocation = Allocator::default().allocate(&queries, 3_000)?;
/// assert!(allocation.total_tokens() <= 3_000);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Mixture {
    inner: Arc<Inner>,
}

#[derive(Debug, PartialEq)]
struct Inner {
    /// Normalised weights (all > 0) and curves.
    components: Vec<(f64, ShiftedSurge)>,
    /// Budgets where `φ` turns, ascending: a local maximum, then alternately a
    /// minimum and a maximum; `φ` decreases after the last.
    turns: Vec<f64>,
    threshold: f64,
    ceiling: f64,
    /// `max φ`.
    peak: f64,
    /// The uncapped maximiser of `U(b)/b` and that ratio.
    tangent: (f64, f64),
}

/// Most points of the uniform part of the turning-point grid.
const GRID_POINTS: usize = 512;

impl Mixture {
    /// A mixture of `(weight, curve)` components.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] (field `weight`) when a weight is NaN, infinite or
    /// negative, when no weight is positive, or when the weights' sum overflows.
    pub fn new(components: impl IntoIterator<Item = (f64, ShiftedSurge)>) -> Result<Mixture> {
        let mut kept = Vec::new();
        let mut total = 0.0;
        for (weight, curve) in components {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(Error::invalid_parameter(
                    "weight",
                    weight,
                    "must be finite and >= 0",
                ));
            }
            total += weight;
            if weight > 0.0 {
                kept.push((weight, curve));
            }
        }
        if !(total > 0.0 && total.is_finite()) {
            return Err(Error::invalid_parameter(
                "weight",
                total,
                "the mixture weights must sum to a finite value > 0",
            ));
        }
        for (weight, _) in &mut kept {
            *weight /= total;
        }
        let threshold = kept
            .iter()
            .filter(|(_, c)| c.ceiling() > 0.0)
            .map(|(_, c)| c.threshold())
            .fold(f64::INFINITY, f64::min);
        let ceiling = kept.iter().map(|(w, c)| w * c.ceiling()).sum();
        let mut inner = Inner {
            components: kept,
            turns: Vec::new(),
            threshold,
            ceiling,
            peak: 0.0,
            tangent: (0.0, 0.0),
        };
        if threshold.is_finite() {
            inner.turns = inner.find_turns();
            inner.peak = inner
                .turns
                .iter()
                .step_by(2)
                .map(|&t| inner.phi(t))
                .fold(0.0, f64::max);
            inner.tangent = inner.best_ratio(f64::INFINITY);
        }
        Ok(Mixture {
            inner: Arc::new(inner),
        })
    }

    /// The components with their normalised weights (summing to 1).
    pub fn components(&self) -> &[(f64, ShiftedSurge)] {
        &self.inner.components
    }

    /// The budgets where the marginal utility turns (a local maximum first, then
    /// alternately a minimum and a maximum), ascending.
    pub fn turning_points(&self) -> &[f64] {
        &self.inner.turns
    }
}

impl Inner {
    fn utility(&self, b: f64) -> f64 {
        self.components.iter().map(|(w, c)| w * c.utility(b)).sum()
    }

    fn phi(&self, b: f64) -> f64 {
        self.components.iter().map(|(w, c)| w * c.marginal(b)).sum()
    }

    /// `(φ(b), φ'(b))`, the right derivative at each threshold.
    fn phi_and_slope(&self, b: f64) -> (f64, f64) {
        let (mut phi, mut slope) = (0.0, 0.0);
        for (w, c) in &self.components {
            if b < c.threshold() {
                continue;
            }
            let z = c.beta() * (b - c.threshold());
            let e = if z > 1e3 { 0.0 } else { (-z).exp() };
            let scale = w * c.ceiling() * c.beta();
            phi += scale * z * e;
            slope += scale * c.beta() * (1.0 - z) * e;
        }
        (phi, slope)
    }

    fn rising(&self, b: f64) -> bool {
        self.phi_and_slope(b).1 > 0.0
    }

    /// The turning points of `φ` (see the module docs).
    fn find_turns(&self) -> Vec<f64> {
        let live = || self.components.iter().filter(|(_, c)| c.ceiling() > 0.0);
        let end = live().map(|(_, c)| c.inflection()).fold(0.0, f64::max);
        let narrowest = live().map(|(_, c)| c.width()).fold(f64::INFINITY, f64::min);
        let start = self.threshold;
        let mut grid: Vec<f64> = Vec::new();
        for (_, c) in live() {
            grid.extend((0..=4).map(|j| c.threshold() + c.width() * j as f64 / 4.0));
        }
        let step = ((end - start) / GRID_POINTS as f64).max(narrowest / 4.0);
        if step > 0.0 && step.is_finite() {
            let mut b = start;
            while b < end {
                grid.push(b);
                b += step;
            }
        }
        grid.push(end);
        grid.retain(|&b| b >= start && b <= end);
        grid.sort_by(f64::total_cmp);
        grid.dedup();
        let mut turns = Vec::new();
        let mut rising = true;
        for pair in grid.windows(2) {
            let (a, c) = (pair[0], pair[1]);
            let next = self.rising(c);
            if next != rising {
                turns.push(self.sign_change(a, c, rising));
                rising = next;
            }
        }
        if rising {
            // φ' ≤ 0 at `end` for every component: the last rise turns there.
            turns.push(end);
        }
        turns
    }

    /// Bisects the change of `rising` inside `[a, c]`.
    fn sign_change(&self, mut a: f64, mut c: f64, rising_at_a: bool) -> f64 {
        while c - a > 1e-12 * c.abs().max(1.0) {
            let mid = 0.5 * (a + c);
            if mid <= a || mid >= c {
                break;
            }
            if self.rising(mid) == rising_at_a {
                a = mid;
            } else {
                c = mid;
            }
        }
        c
    }

    /// The decreasing stretches of `φ` inside `[0, limit]`, left to right.
    fn falling(&self, limit: f64) -> impl DoubleEndedIterator<Item = (f64, f64)> + '_ {
        let turns = &self.turns;
        (0..turns.len())
            .step_by(2)
            .map(move |i| (turns[i], turns.get(i + 1).copied().unwrap_or(f64::INFINITY)))
            .filter(move |&(a, _)| a < limit)
            .map(move |(a, c)| (a, c.min(limit)))
    }

    /// The root of `φ(b) = λ` in `[a, c]` where `φ` falls from `≥ λ` to `≤ λ`:
    /// Newton's method safeguarded by bisection.
    fn solve_phi(&self, price: f64, mut a: f64, mut c: f64) -> f64 {
        let mut b = 0.5 * (a + c);
        for _ in 0..200 {
            let (phi, slope) = self.phi_and_slope(b);
            let f = phi - price;
            if f > 0.0 {
                a = b;
            } else {
                c = b;
            }
            if f == 0.0 || c - a <= 1e-12 * c.abs().max(1.0) {
                break;
            }
            let newton = b - f / slope;
            b = if slope < 0.0 && newton > a && newton < c {
                newton
            } else {
                0.5 * (a + c)
            };
            if (newton - b).abs() <= f64::EPSILON * b && f.abs() <= 1e-15 * price {
                break;
            }
        }
        b
    }

    /// `max_{0 < b ≤ limit} U(b)/b` and its maximiser (see the module docs).
    fn best_ratio(&self, limit: f64) -> (f64, f64) {
        if !(limit > self.threshold) {
            return (0.0, 0.0);
        }
        let gap = |b: f64| self.phi(b) * b - self.utility(b);
        let mut best = if limit.is_finite() {
            (limit, self.utility(limit) / limit)
        } else {
            (0.0, 0.0)
        };
        for (a, c) in self.falling(limit) {
            let c = if c.is_finite() {
                c
            } else {
                // Far enough out that U(b)/b falls again (g < 0).
                let mut far = a.max(1.0) * 2.0;
                while gap(far) > 0.0 && far < 1e300 {
                    far *= 2.0;
                }
                far
            };
            if !(gap(a) > 0.0) {
                continue;
            }
            let (mut lo, mut hi) = (a, c);
            if gap(hi) > 0.0 {
                // Still rising at the end of the stretch (the limit cuts it).
                lo = hi;
            }
            while hi - lo > 1e-12 * hi.max(1.0) {
                let mid = 0.5 * (lo + hi);
                if gap(mid) > 0.0 {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let ratio = self.utility(lo) / lo;
            if ratio > best.1 {
                best = (lo, ratio);
            }
        }
        best
    }
}

impl Curve for Mixture {
    type Bidder = MixtureBidder;

    fn bidder(&self, weight: f64, cap: f64) -> MixtureBidder {
        let inner = &self.inner;
        let cap_utility = weight * inner.utility(cap);
        let abandonment = if inner.tangent.0 > 0.0 && inner.tangent.0 <= cap {
            weight * inner.tangent.1
        } else {
            weight * inner.best_ratio(cap).1
        };
        MixtureBidder {
            curve: self.clone(),
            weight,
            cap,
            cap_utility,
            abandonment,
        }
    }

    fn utility(&self, budget: f64) -> f64 {
        if budget.is_nan() {
            return f64::NAN;
        }
        self.inner.utility(budget)
    }

    fn marginal(&self, budget: f64) -> f64 {
        if budget.is_nan() {
            return f64::NAN;
        }
        self.inner.phi(budget)
    }

    fn ceiling(&self) -> f64 {
        self.inner.ceiling
    }

    /// The smallest threshold among components with a positive ceiling (∞ when
    /// every ceiling is 0).
    fn threshold(&self) -> f64 {
        self.inner.threshold
    }

    fn peak_marginal(&self) -> f64 {
        self.inner.peak
    }
}

/// A mixture with its weight and cap folded in.
#[derive(Debug, Clone, PartialEq)]
pub struct MixtureBidder {
    curve: Mixture,
    weight: f64,
    cap: f64,
    /// `weight · U(cap)`.
    cap_utility: f64,
    /// `weight · max_{b ≤ cap} U(b)/b`.
    abandonment: f64,
}

impl MixtureBidder {
    fn inner(&self) -> &Inner {
        &self.curve.inner
    }

    /// The stretch root as a bid: its slope `d b / d ln λ = φ/φ'`.
    fn smooth(&self, tokens: f64) -> Bid {
        let (phi, slope) = self.inner().phi_and_slope(tokens);
        let slope = if slope < 0.0 { phi / slope } else { 0.0 };
        Bid::Smooth { tokens, slope }
    }

    /// The largest `b ≤ cap` with `weight · φ(b) ≥ price`, or `Out`.
    fn keep_all(&self, price: f64) -> Bid {
        if !self.fundable() {
            return Bid::Out;
        }
        let inner = self.inner();
        let unit = price / self.weight;
        if price <= 0.0 || inner.phi(self.cap) >= unit {
            return Bid::AtCap(self.cap);
        }
        for (a, c) in inner.falling(self.cap).rev() {
            if inner.phi(a) >= unit {
                let c = if c.is_finite() { c } else { self.cap };
                return self.smooth(inner.solve_phi(unit, a, c));
            }
        }
        Bid::Out
    }
}

impl Bidding for MixtureBidder {
    fn cap(&self) -> f64 {
        self.cap
    }

    fn threshold(&self) -> f64 {
        self.inner().threshold
    }

    fn fundable(&self) -> bool {
        self.cap_utility > 0.0
    }

    fn max_price_under(&self, rule: BidRule) -> f64 {
        if !self.fundable() {
            return 0.0;
        }
        match rule {
            BidRule::Rational => self.abandonment,
            BidRule::KeepAll => {
                let inner = self.inner();
                let peaks = inner
                    .turns
                    .iter()
                    .step_by(2)
                    .filter(|&&t| t <= self.cap)
                    .map(|&t| inner.phi(t))
                    .fold(inner.phi(self.cap), f64::max);
                self.weight * peaks
            }
        }
    }

    fn bid_by(&self, price: f64, rule: BidRule) -> Bid {
        if rule == BidRule::KeepAll {
            return self.keep_all(price);
        }
        if !self.fundable() || price >= self.abandonment {
            return Bid::Out;
        }
        if price <= 0.0 {
            return Bid::AtCap(self.cap);
        }
        let inner = self.inner();
        let unit = price / self.weight;
        // Candidates: the cap, and the root of φ = λ on each falling stretch.
        let mut best = (self.cap, self.cap_utility - price * self.cap);
        let mut at_cap = true;
        for (a, c) in inner.falling(self.cap) {
            if inner.phi(a) < unit || inner.phi(c) >= unit {
                // No crossing here (a stretch still above λ at the cap leaves the cap
                // as its best point).
                continue;
            }
            let b = inner.solve_phi(unit, a, c);
            let surplus = self.weight * inner.utility(b) - price * b;
            if surplus > best.1 {
                best = (b, surplus);
                at_cap = false;
            }
        }
        if best.1 <= 0.0 {
            Bid::Out
        } else if at_cap {
            Bid::AtCap(self.cap)
        } else {
            self.smooth(best.0)
        }
    }

    fn bid_funded(&self, price: f64) -> Bid {
        self.keep_all(price)
    }

    fn funded_bid_at(&self, tokens: f64) -> Bid {
        if tokens >= self.cap {
            Bid::AtCap(self.cap)
        } else {
            self.smooth(tokens)
        }
    }

    fn abandonment_price_within(&self, limit: f64) -> f64 {
        if limit >= self.cap {
            return self.abandonment;
        }
        self.weight * self.inner().best_ratio(limit).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn surge(t: f64, w: f64, p: f64) -> ShiftedSurge {
        ShiftedSurge::new(t, w, p).unwrap()
    }

    /// Two far-apart bumps: φ has two local maxima.
    fn two_bumps() -> Mixture {
        Mixture::new([
            (0.5, surge(100.0, 50.0, 0.9)),
            (0.5, surge(900.0, 80.0, 0.8)),
        ])
        .unwrap()
    }

    /// Nine Gauss–Hermite-like nodes over ln τ around 300 tokens.
    fn nine() -> Mixture {
        let nodes: [f64; 9] = [-3.19, -2.27, -1.47, -0.72, 0.0, 0.72, 1.47, 2.27, 3.19];
        let weights = [4e-5, 5e-3, 0.09, 0.5, 0.72, 0.5, 0.09, 5e-3, 4e-5];
        Mixture::new(
            nodes
                .iter()
                .zip(weights)
                .map(|(z, w)| (w, surge(300.0 * (0.7 * z).exp(), 150.0, 0.8))),
        )
        .unwrap()
    }

    fn grid_best(m: &Mixture, price: f64, cap: f64) -> (f64, f64) {
        let mut best = (0.0, 0.0);
        let n = 200_000;
        for i in 1..=n {
            let b = cap * i as f64 / n as f64;
            let s = m.utility(b) - price * b;
            if s > best.1 {
                best = (b, s);
            }
        }
        best
    }

    #[test]
    fn weights_are_validated_and_normalised() {
        let c = surge(100.0, 50.0, 0.9);
        for bad in [vec![(-1.0, c)], vec![(f64::NAN, c)], vec![(0.0, c)], vec![]] {
            let err = Mixture::new(bad).unwrap_err();
            assert!(err.to_string().starts_with("weight = "), "{err}");
        }
        let m =
            Mixture::new([(3.0, c), (0.0, c), (1.0, c.with_threshold(200.0).unwrap())]).unwrap();
        assert_eq!(m.components().len(), 2);
        assert_eq!((m.components()[0].0, m.components()[1].0), (0.75, 0.25));
        assert!(Mixture::new([(1e308, c), (1e308, c)]).is_err());
    }

    #[test]
    fn utility_and_marginal_are_the_weighted_sums() {
        let m = two_bumps();
        let (a, b) = (surge(100.0, 50.0, 0.9), surge(900.0, 80.0, 0.8));
        for x in [0.0, 120.0, 500.0, 950.0, 3000.0] {
            let u = 0.5 * a.utility(x) + 0.5 * b.utility(x);
            assert!((m.utility(x) - u).abs() <= 1e-15);
            let h = 1e-3;
            if x > 101.0 && x < 2000.0 && (x - 900.0).abs() > 1.0 {
                let numeric = (m.utility(x + h) - m.utility(x - h)) / (2.0 * h);
                approx::assert_relative_eq!(numeric, m.marginal(x), max_relative = 1e-5);
            }
        }
        assert!((m.ceiling() - 0.85).abs() < 1e-15);
        assert_eq!(Curve::threshold(&m), 100.0);
    }

    #[test]
    fn turning_points_of_two_bumps() {
        let m = two_bumps();
        let t = m.turning_points();
        // A maximum at the first inflection, a minimum at the second threshold (a
        // kink), a maximum near the second inflection.
        assert_eq!(t.len(), 3, "{t:?}");
        approx::assert_relative_eq!(t[0], 150.0, max_relative = 1e-6);
        approx::assert_relative_eq!(t[1], 900.0, max_relative = 1e-9);
        assert!((t[2] - 980.0).abs() < 1.0, "{t:?}");
        let peak = 0.5 * surge(100.0, 50.0, 0.9).peak_marginal();
        approx::assert_relative_eq!(m.peak_marginal(), peak, max_relative = 1e-9);
    }

    #[test]
    fn best_response_matches_a_dense_grid() {
        for m in [two_bumps(), nine()] {
            let cap = 4000.0;
            let top = m.abandonment_price(cap).unwrap();
            for share in [1e-3, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.2] {
                let price = top * share;
                let ours = m.best_response(price, cap).unwrap();
                let (_, grid) = grid_best(&m, price, cap);
                let mine = if ours > 0.0 {
                    m.utility(ours) - price * ours
                } else {
                    0.0
                };
                assert!(
                    mine >= grid - 1e-9 && mine <= grid + 1e-6,
                    "price {price}: {ours} tokens, surplus {mine} vs grid {grid}"
                );
                assert_eq!(ours > 0.0, share < 1.0, "price {price}: {ours}");
            }
        }
    }

    #[test]
    fn a_second_bump_can_be_the_best_response() {
        // A tiny early bump and a large late one: at a low price the late one wins.
        let m = Mixture::new([
            (0.2, surge(50.0, 20.0, 0.3)),
            (0.8, surge(1000.0, 100.0, 1.0)),
        ])
        .unwrap();
        let b = m.best_response(1e-4, 5000.0).unwrap();
        assert!(b > 1100.0, "{b}");
        let early_cap = m.best_response(1e-4, 500.0).unwrap();
        assert!(early_cap > 50.0 && early_cap <= 500.0, "{early_cap}");
    }

    #[test]
    fn abandonment_price_matches_a_dense_grid_and_splits_the_response() {
        for m in [two_bumps(), nine()] {
            for cap in [120.0, 700.0, 4000.0] {
                let price = m.abandonment_price(cap).unwrap();
                let grid = (1..=100_000)
                    .map(|i| cap * i as f64 / 1e5)
                    .map(|b| m.utility(b) / b)
                    .fold(0.0, f64::max);
                approx::assert_relative_eq!(price, grid, max_relative = 1e-6);
                assert!(m.best_response(price * 0.999, cap).unwrap() > 0.0);
                assert_eq!(m.best_response(price * 1.001, cap).unwrap(), 0.0);
            }
        }
    }

    #[test]
    fn keep_all_demand_falls_with_the_price() {
        let m = nine();
        let bidder = m.bidder(2.0, 3000.0);
        let mut last = 0.0;
        for i in 0..200 {
            // Falling prices: demand never falls.
            let price = 2.0 * m.peak_marginal() * (1.0 - i as f64 / 200.0);
            let b = bidder.bid_funded(price).tokens();
            assert!(b >= last, "price {price}: {b} after {last}");
            last = b;
        }
        assert!(last > 0.0);
        assert_eq!(bidder.bid_funded(0.0), Bid::AtCap(3000.0));
    }
}
