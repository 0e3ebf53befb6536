//! The price search (SPEC §4): one bracketed search on `ln λ` for the price at which
//! a non-increasing demand meets a budget, shared by every caller that clears a
//! market — the batch allocator, its presolve sample, its re-clears, and the online
//! allocator's re-clear over weighted reservoir samples ([`clear_weighted`]).
//!
//! A caller supplies demand as a [`Demand`]; the search keeps a [`Bracket`]
//! `demand(lo) > budget ≥ demand(hi)` and narrows it. Demand is a step-plus-smooth
//! function of `ln λ` (each abandonment is a jump), so Newton's method on the smooth
//! part alone overshoots: the secant through the two latest points sees the jumps too,
//! with Illinois false position and bisection as safeguards, so the search always
//! terminates.

use super::bid::Bidder;

/// `ln` of (about) the smallest positive normal f64: the low end of every bracket,
/// where demand is taken at its limit as λ → 0⁺ without being evaluated. A search that
/// reaches it stops there (a price of 0 for every practical purpose).
pub(crate) const LOG_PRICE_FLOOR: f64 = -708.0;

/// Total demand at one price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub log_price: f64,
    pub tokens: f64,
    /// `d tokens / d ln λ` of the continuous part (≤ 0).
    pub slope: f64,
    /// Queries funded.
    pub funded: usize,
}

impl Point {
    /// Nothing demanded yet at `e^log_price`, by `funded` queries: the start of a tally.
    pub fn empty(log_price: f64, funded: usize) -> Self {
        Point {
            log_price,
            tokens: 0.0,
            slope: 0.0,
            funded,
        }
    }

    pub fn price(&self) -> f64 {
        self.log_price.exp()
    }

    /// The demand of these queries and of `later`, at this point's price: counts and
    /// sums added (in this order, so that chunked sums do not depend on threads).
    pub fn then(self, later: Point) -> Point {
        Point {
            tokens: self.tokens + later.tokens,
            slope: self.slope + later.slope,
            funded: self.funded + later.funded,
            ..self
        }
    }
}

/// A demand function the search can clear: total tokens wanted at a price, non-
/// increasing in the price.
pub(crate) trait Demand {
    /// Demand at `e^log_price`. The slope may be left at 0 unless `with_slope` asks
    /// for it (it costs a division per funded query in the batch allocator).
    fn at(&mut self, log_price: f64, with_slope: bool) -> Point;

    /// Told, after each evaluation, whether the point became the bracket's feasible
    /// end; the batch allocator keeps the bids of each end this way.
    fn settle(&mut self, _point: &Point, _feasible: bool) {}
}

/// Weighted reservoir samples as one demand: each bidder stands for `weight`
/// requests, so demand is `Σ weight · b_i(λ)` (best responses with rational
/// abandonment).
pub(crate) struct WeightedSample<'a>(pub &'a [(Bidder, f64)]);

impl WeightedSample<'_> {
    /// Demand at `price` itself. The search's points are evaluated at `exp(ln λ)`,
    /// which can round across a bidder's jump; a price handed to callers is checked
    /// here, where it is exact.
    pub(crate) fn tokens_at(&self, price: f64) -> f64 {
        self.0
            .iter()
            .map(|(bidder, weight)| weight * bidder.bid(price).tokens())
            .sum()
    }
}

impl Demand for WeightedSample<'_> {
    fn at(&mut self, log_price: f64, _with_slope: bool) -> Point {
        let price = log_price.exp();
        let mut point = Point::empty(log_price, 0);
        for (bidder, weight) in self.0 {
            let bid = bidder.bid(price);
            let tokens = bid.tokens();
            if tokens > 0.0 {
                point.funded += 1;
                point.tokens += weight * tokens;
                point.slope += weight * bid.log_price_slope();
            }
        }
        point
    }
}

/// The lowest price, to a relative `tolerance`, at which the weighted sample's
/// demand is at most `target` (SPEC §4, the feasible end of the bracket), searched
/// from `warm`: the online allocator's re-clear. Keeps `warm` when the sample is
/// empty; 0 when every cap fits.
pub(crate) fn clear_weighted(
    sample: &[(Bidder, f64)],
    target: f64,
    warm: f64,
    tolerance: f64,
) -> f64 {
    if sample.is_empty() {
        return warm;
    }
    // Demand as λ → 0⁺: every bidder that can use its cap takes it.
    let at_zero = WeightedSample(sample).tokens_at(0.0);
    if at_zero <= target {
        return 0.0;
    }
    // Nobody is funded at or above the highest abandonment price: demand 0 there.
    let top = sample
        .iter()
        .map(|(bidder, _)| bidder.max_price())
        .fold(0.0, f64::max);
    let mut bracket = Bracket::new(top, at_zero);
    let start = if warm > 0.0 && warm < top {
        warm.ln()
    } else {
        bracket.hi.log_price - std::f64::consts::LN_2
    };
    // Each step at least halves the bracket every four, from at most ~710 e-folds
    // wide: a few hundred steps reach any tolerance f64 can resolve.
    let search = Search {
        tolerance,
        max_iterations: 1000,
        stop: Stop::Lowest,
    };
    let target_tokens = target * (1.0 - 0.5 * tolerance);
    search.run(
        &mut WeightedSample(sample),
        &mut bracket,
        start,
        target,
        target_tokens,
    );
    // While the feasible end is still the top price (demand 0 there by definition,
    // never evaluated), exp(ln top) can round a hair below it, where the top bidder
    // still buys: return the top price itself.
    if bracket.hi.log_price >= top.ln() {
        return top.max(bracket.hi.price());
    }
    bracket.hi.price()
}

/// When a search has found its price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Once the feasible end's demand is within the tolerance of the budget, or the
    /// bracket is narrower than the tolerance: the batch allocator, whose leftover
    /// step spends what the feasible end leaves.
    Close,
    /// Only once the bracket is narrower than the tolerance: the lowest feasible
    /// price to that tolerance (the online re-clear, which has no leftover step).
    Lowest,
}

/// How long a search may go on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Search {
    /// A share of the budget (for [`Stop::Close`]) and a width in `ln λ`.
    pub tolerance: f64,
    /// Most evaluations.
    pub max_iterations: usize,
    pub stop: Stop,
}

impl Search {
    /// Narrows `bracket` from `start` (a log-price) until [`Search::stop`] says it has
    /// its price, aiming each step
    /// at demand `target` (a little under the budget, so that steps land on the
    /// feasible side). Returns the evaluations made; only the first asks for a slope.
    pub fn run(
        &self,
        demand: &mut impl Demand,
        bracket: &mut Bracket,
        start: f64,
        budget: f64,
        target: f64,
    ) -> usize {
        let mut log_price = start;
        let mut passes = 0;
        for _ in 0..self.max_iterations {
            let point = demand.at(log_price, passes == 0);
            passes += 1;
            let feasible = bracket.update(point, budget);
            demand.settle(&point, feasible);
            let done = match self.stop {
                Stop::Close => bracket.done(budget, self.tolerance),
                Stop::Lowest => bracket.narrow(self.tolerance),
            };
            if done {
                break;
            }
            log_price = bracket.next(target);
        }
        passes
    }
}

/// A bracket `demand(lo) > budget ≥ demand(hi)` on `ln λ`, narrowed by the Illinois
/// variant of false position, with bisection whenever four steps fail to halve it.
///
/// Until a low end has been evaluated, the search steps down from the high end, by
/// the latest secant (or Newton) step when there is one, and at least by strides that
/// double.
#[derive(Debug, Clone)]
pub(crate) struct Bracket {
    pub lo: Point,
    /// Whether `lo` was evaluated (rather than being the floor's limit).
    pub lo_real: bool,
    pub hi: Point,
    /// Illinois weights: halved each time the same end is kept twice in a row.
    lo_weight: f64,
    hi_weight: f64,
    last_kept_lo: Option<bool>,
    widths: [f64; 4],
    stride: f64,
    /// The two latest evaluated points, oldest first.
    recent: [Option<Point>; 2],
}

impl Bracket {
    /// The widest bracket: demand `floor_tokens` at the floor price, nothing at
    /// `top_price` (where nobody is funded).
    pub fn new(top_price: f64, floor_tokens: f64) -> Self {
        Bracket {
            lo: Point {
                log_price: LOG_PRICE_FLOOR,
                tokens: floor_tokens,
                slope: 0.0,
                funded: usize::MAX,
            },
            lo_real: false,
            hi: Point {
                log_price: top_price.ln().max(LOG_PRICE_FLOOR + 1.0),
                tokens: 0.0,
                slope: 0.0,
                funded: 0,
            },
            lo_weight: 1.0,
            hi_weight: 1.0,
            last_kept_lo: None,
            widths: [f64::INFINITY; 4],
            stride: 0.25,
            recent: [None; 2],
        }
    }

    /// Takes `point` as the latest evaluated one for the next secant step, without
    /// moving either end: a point on a line that estimates demand's slope, before the
    /// search's first real point (its secant through that first point is then the
    /// estimate's slope).
    pub fn remember(&mut self, point: Point) {
        self.recent = [self.recent[1], Some(point)];
    }

    fn width(&self) -> f64 {
        self.hi.log_price - self.lo.log_price
    }

    /// Whether the feasible end has reached the floor price.
    pub fn at_floor(&self) -> bool {
        self.hi.log_price <= LOG_PRICE_FLOOR + 1.0
    }

    /// Records an evaluated point; returns whether it became the feasible end.
    pub fn update(&mut self, point: Point, budget: f64) -> bool {
        self.recent = [self.recent[1], Some(point)];
        let feasible = point.tokens <= budget;
        if feasible {
            self.hi = point;
            self.hi_weight = 1.0;
        } else {
            self.lo = point;
            self.lo_real = true;
            self.lo_weight = 1.0;
        }
        // The end *not* replaced was kept: damp it if it was kept last time too.
        let kept_lo = feasible;
        if self.last_kept_lo == Some(kept_lo) {
            if kept_lo {
                self.lo_weight *= 0.5;
            } else {
                self.hi_weight *= 0.5;
            }
        }
        self.last_kept_lo = Some(kept_lo);
        feasible
    }

    /// Whether the search can stop: the feasible end is within `tolerance` of the
    /// budget, or the bracket cannot usefully shrink.
    pub fn done(&self, budget: f64, tolerance: f64) -> bool {
        let close = self.hi.tokens >= budget * (1.0 - tolerance);
        close || self.narrow(tolerance)
    }

    /// Whether the bracket cannot usefully shrink further: narrower than `tolerance`
    /// (or than adjacent floats allow), or with its feasible end at the floor price,
    /// where demand is as high as f64 prices can make it.
    pub fn narrow(&self, tolerance: f64) -> bool {
        let width = self.width();
        self.at_floor()
            || (self.lo_real
                && (width <= tolerance || width <= 1e-14 * (1.0 + self.hi.log_price.abs())))
    }

    /// The next log-price to evaluate, aiming at demand `target`.
    pub fn next(&mut self, target: f64) -> f64 {
        let (lo, hi) = (self.lo.log_price, self.hi.log_price);
        let width = hi - lo;
        // Termination guard: a bracket that has not halved in four steps is bisected.
        let stalled = width > 0.5 * self.widths[0];
        self.widths = [self.widths[1], self.widths[2], self.widths[3], width];
        let inside = |u: f64| u > lo && u < hi;
        if stalled && self.lo_real {
            return 0.5 * (lo + hi);
        }
        // The secant through the two latest points converges superlinearly where
        // demand is smooth at the scale of the steps; with one point, Newton on the
        // smooth part, half-stepped, since the jumps make demand steeper than that.
        let step = match self.recent {
            [Some(a), Some(b)] => {
                let slope = (b.tokens - a.tokens) / (b.log_price - a.log_price);
                (slope < 0.0).then(|| b.log_price + (target - b.tokens) / slope)
            }
            [_, Some(b)] => {
                (b.slope < 0.0).then(|| b.log_price + 0.5 * (target - b.tokens) / b.slope)
            }
            _ => None,
        };
        if !self.lo_real {
            // Still looking for a price where demand exceeds the budget: step down from
            // the feasible end, at least by a stride that doubles each time, so that a
            // step from a nearly empty market cannot crawl.
            self.stride *= 2.0;
            let floor = (hi - self.stride).max(0.5 * (lo + hi));
            return step
                .filter(|&u| u < hi)
                .map_or(floor, |u| u.min(hi - 1e-3).max(floor));
        }
        if let Some(u) = step.filter(|&u| inside(u)) {
            return u;
        }
        // False position on the bracket's ends, Illinois-damped.
        let f_lo = self.lo_weight * (self.lo.tokens - target);
        let f_hi = self.hi_weight * (self.hi.tokens - target);
        let false_position = hi - f_hi * (hi - lo) / (f_hi - f_lo);
        if inside(false_position) {
            false_position
        } else {
            0.5 * (lo + hi)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ShiftedSurge;
    use proptest::prelude::*;

    /// A demand given as a function of the price returning `(tokens, d tokens / d ln λ)`.
    struct DemandFn<F>(pub F);

    impl<F: FnMut(f64) -> (f64, f64)> Demand for DemandFn<F> {
        fn at(&mut self, log_price: f64, _with_slope: bool) -> Point {
            let (tokens, slope) = (self.0)(log_price.exp());
            Point {
                log_price,
                tokens,
                slope,
                funded: 0,
            }
        }
    }

    fn point(log_price: f64, tokens: f64) -> Point {
        Point {
            log_price,
            tokens,
            slope: 0.0,
            funded: 1,
        }
    }

    #[test]
    fn update_moves_the_end_on_the_point_s_side() {
        let mut bracket = Bracket::new(1.0, 1000.0);
        assert!(!bracket.lo_real);
        assert!(bracket.update(point(-1.0, 50.0), 100.0));
        assert_eq!(bracket.hi.log_price, -1.0);
        assert!(!bracket.update(point(-3.0, 500.0), 100.0));
        assert_eq!(bracket.lo.log_price, -3.0);
        assert!(bracket.lo_real);
        // Exactly the budget is feasible.
        assert!(bracket.update(point(-2.0, 100.0), 100.0));
        assert_eq!(bracket.hi.log_price, -2.0);
        assert!(bracket.done(100.0, 1e-3));
    }

    #[test]
    fn without_a_low_end_steps_go_down_by_doubling_strides() {
        // No slope information: pure strides, 0.5, 1, 2, 4 … below the feasible end.
        let mut bracket = Bracket::new(1.0, 1e9);
        let mut u = 0.0;
        let mut strides = Vec::new();
        for _ in 0..4 {
            bracket.update(point(u, 0.0), 100.0);
            let next = bracket.next(99.0);
            strides.push(u - next);
            u = next;
        }
        assert_eq!(strides, [0.5, 1.0, 2.0, 4.0]);
    }

    #[test]
    fn a_stalled_bracket_is_bisected() {
        let mut bracket = Bracket::new(1.0, 1e9);
        bracket.update(point(-10.0, 1e6), 100.0);
        bracket.update(point(0.0, 0.0), 100.0);
        // Keep offering points that barely move the low end: after four steps that
        // fail to halve the width, the step is the midpoint.
        let mut saw_bisection = false;
        for k in 0..8 {
            let next = bracket.next(99.0);
            let (lo, hi) = (bracket.lo.log_price, bracket.hi.log_price);
            assert!(
                next > lo && next < hi,
                "step {k}: {next} outside ({lo}, {hi})"
            );
            saw_bisection |= next == 0.5 * (lo + hi);
            bracket.update(point(lo + 1e-3, 1e6), 100.0);
        }
        assert!(saw_bisection);
    }

    #[test]
    fn the_floor_ends_the_search() {
        let mut bracket = Bracket::new(1e-300, 10.0);
        bracket.update(point(LOG_PRICE_FLOOR + 0.5, 5.0), 100.0);
        assert!(bracket.at_floor());
        assert!(bracket.narrow(1e-9));
    }

    #[test]
    fn weighted_sample_clears_and_keeps_the_edge_cases() {
        let curve = ShiftedSurge::new(100.0, 50.0, 0.9).unwrap();
        let sample = vec![(Bidder::new(&curve, 1.0, 1000.0), 10.0); 4];
        // Empty: the warm price is kept; all caps fit: price 0.
        assert_eq!(clear_weighted(&[], 100.0, 0.25, 1e-3), 0.25);
        assert_eq!(clear_weighted(&sample, 40_000.0, 0.25, 1e-3), 0.0);
        let price = clear_weighted(&sample, 10_000.0, 0.0, 1e-3);
        let demand = |p: f64| WeightedSample(&sample).at(p.ln(), false).tokens;
        assert!(demand(price) <= 10_000.0);
        assert!(demand(price * 0.998) > 10_000.0);
    }

    /// A random batch of bidders with weights: a non-increasing step-plus-smooth
    /// demand, as the allocator and the online re-clear see it.
    fn bidders() -> impl Strategy<Value = Vec<(Bidder, f64)>> {
        prop::collection::vec(
            (
                0.0..2000.0f64,
                1.0..500.0f64,
                0.01..1.0f64,
                0.1..10.0f64,
                1u64..5000,
            )
                .prop_map(|(t, w, p, weight, cap)| {
                    let curve = ShiftedSurge::new(t, w, p).unwrap();
                    (Bidder::new(&curve, 1.0, cap as f64), weight)
                }),
            1..40,
        )
    }

    proptest! {
        // A fixed seed keeps CI deterministic; the soak tier explores further.
        #![proptest_config(ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xC1EA_5EA2),
            ..ProptestConfig::default()
        })]

        /// Monotone demand: the returned price is feasible and the lowest such to
        /// within the tolerance — a price lower by the tolerance (in ln λ) is not,
        /// unless the price is at the floor, below which the search does not go (a
        /// one-token-wide surge keeps demand above the target down to ~1e-300).
        #[test]
        fn weighted_search_clears_within_tolerance(
            sample in bidders(),
            share in 0.01..0.99f64,
            warm in prop_oneof![Just(0.0), 1e-8..1.0f64],
        ) {
            let tolerance = 1e-3;
            let at_zero = WeightedSample(&sample).at(f64::NEG_INFINITY, false).tokens;
            prop_assume!(at_zero > 0.0);
            let target = share * at_zero;
            let price = clear_weighted(&sample, target, warm, tolerance);
            // Demand at the price itself: exp(ln λ) can round across a bidder's jump.
            let at = |p: f64| WeightedSample(&sample).tokens_at(p);
            prop_assert!(price > 0.0);
            prop_assert!(at(price) <= target);
            let lower = price * (-1.01 * tolerance).exp();
            let at_floor = price.ln() <= LOG_PRICE_FLOOR + 1.0;
            prop_assert!(at_floor || at(lower) > target,
                "price {price}: demand {} vs target {target}", at(price));
        }

        /// Bracket invariants hold after every step of a search: the feasible end's
        /// demand is within the budget, an evaluated low end's above it, and the low
        /// end below the high end.
        #[test]
        fn bracket_invariants_hold_at_every_step(
            sample in bidders(),
            share in 0.01..0.99f64,
        ) {
            let mut demand = WeightedSample(&sample);
            let at_zero = demand.at(f64::NEG_INFINITY, false).tokens;
            prop_assume!(at_zero > 0.0);
            let budget = share * at_zero;
            let top = sample.iter().map(|(b, _)| b.max_price()).fold(0.0, f64::max);
            let mut bracket = Bracket::new(top, at_zero);
            let mut u = bracket.hi.log_price - 1.0;
            for _ in 0..200 {
                let p = demand.at(u, true);
                bracket.update(p, budget);
                prop_assert!(bracket.hi.tokens <= budget);
                prop_assert!(bracket.lo.tokens > budget);
                prop_assert!(bracket.lo.log_price < bracket.hi.log_price);
                if bracket.done(budget, 1e-6) {
                    break;
                }
                u = bracket.next(budget * (1.0 - 5e-7));
                prop_assert!(u > bracket.lo.log_price && u < bracket.hi.log_price);
            }
            prop_assert!(bracket.done(budget, 1e-6), "no convergence in 200 steps");
        }

        /// A smooth demand `C e^(−k ln λ)` given as a function: the search finds the
        /// price where it meets the budget.
        #[test]
        fn smooth_demand_is_cleared_to_the_budget(
            scale in 1.0..1e6f64,
            k in 0.1..5.0f64,
            budget in 1.0..1e5f64,
        ) {
            let mut demand = DemandFn(|price: f64| {
                let tokens = scale * price.powf(-k);
                (tokens, -k * tokens)
            });
            // Demand at the top price (the price where it equals 1e-9) is ~0.
            let top = (scale / 1e-9).powf(1.0 / k);
            let mut bracket = Bracket::new(top, f64::INFINITY);
            let search = Search { tolerance: 1e-6, max_iterations: 200, stop: Stop::Close };
            search.run(&mut demand, &mut bracket, top.ln() - 1.0, budget, budget * (1.0 - 5e-7));
            let exact = (scale / budget).powf(1.0 / k);
            prop_assert!(bracket.hi.tokens <= budget);
            prop_assert!(bracket.hi.tokens >= budget * (1.0 - 1e-6) || bracket.narrow(1e-6));
            // Demand within 1e-6 of the budget puts ln λ within 1e-6 / k of the root; a
            // bracket narrower than 1e-6 in ln λ, within 1e-6 of it.
            let bound = 1.01e-6 * (1.0 / k).max(1.0) + 1e-9;
            prop_assert!((bracket.hi.price() / exact).ln().abs() <= bound,
                "{} vs {exact}", bracket.hi.price());
        }
    }
}
