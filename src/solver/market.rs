//! The prepared batch and the price searches over it.
//!
//! Every search here is a sequence of *passes*: one evaluation of each query's bid at
//! one price. A pass is the unit of cost (one W₋₁ per query on the concave branch), so
//! the searches are built to need few of them.

use super::{Allocator, Query};
use crate::error::{Error, Result};
use crate::model::{surge_z, Bid, BidRule, Bidder};

/// `ln` of (about) the smallest positive normal f64: the low end of every bracket,
/// where demand is taken at its limit as λ → 0⁺ without being evaluated. A search that
/// reaches it stops there (a price of 0 for every practical purpose).
pub(super) const LOG_PRICE_FLOOR: f64 = -708.0;

/// Prices below `e^LOG_PRICE_FLOOR` cannot be searched, so a batch must be able to pay
/// more than this for its best token: a margin of ~60 e-folds above the floor.
const MIN_TOP_PRICE: f64 = 1e-280;

/// Batches at least this large start the price search from a solve on a strided
/// sample.
const LARGE_BATCH: usize = 4096;

/// Size of the presolve sample.
const SAMPLE: usize = 512;

/// Total demand at one price.
#[derive(Debug, Clone, Copy)]
pub(super) struct Demand {
    pub log_price: f64,
    pub tokens: f64,
    /// `d tokens / d ln λ` of the continuous part (≤ 0).
    pub slope: f64,
    /// Queries funded.
    pub funded: usize,
}

impl Demand {
    pub fn price(&self) -> f64 {
        self.log_price.exp()
    }
}

/// The batch, validated and folded into per-query bidders.
pub(super) struct Market {
    pub bidders: Vec<Bidder>,
    pub caps: Vec<u64>,
    pub rule: BidRule,
    /// Set when every query has the same `(scale, β)`: then `z(λ)` is shared and a pass
    /// costs one W₋₁ instead of one per query.
    shared_scale: Option<f64>,
    /// No query is funded at or above this price.
    pub top_price: f64,
    /// The query that sets `top_price`.
    top_query: usize,
    /// Σ caps of the queries that can use their cap: demand as λ → 0⁺.
    pub fundable_caps: u128,
}

impl Market {
    /// Validates `queries` and prepares their bidders, in one pass.
    pub fn prepare(allocator: &Allocator, queries: &[Query]) -> Result<Market> {
        let mut bidders = Vec::with_capacity(queries.len());
        let mut caps = Vec::with_capacity(queries.len());
        let mut top_price = 0.0f64;
        let mut fundable_caps = 0u128;
        let mut shape = None;
        let mut shared = true;
        let mut top_query = 0;
        for (index, query) in queries.iter().enumerate() {
            query.validate(index)?;
            let cap = allocator.cap_of(query);
            let bidder = Bidder::new(&query.curve, query.weight, cap as f64);
            let max_price = bidder.max_price_under(allocator.rule);
            if max_price > top_price {
                top_price = max_price;
                top_query = index;
            }
            if bidder.fundable() {
                fundable_caps += cap as u128;
            }
            let this_shape = bidder.shape();
            shared &= *shape.get_or_insert(this_shape) == this_shape;
            bidders.push(bidder);
            caps.push(cap);
        }
        Ok(Market {
            bidders,
            caps,
            rule: allocator.rule,
            shared_scale: shape.filter(|_| shared).map(|(scale, _)| scale),
            top_price,
            top_query,
            fundable_caps,
        })
    }

    /// Prices below `e^LOG_PRICE_FLOOR` cannot be searched: a batch whose best token is
    /// worth less than [`MIN_TOP_PRICE`] is an error — but only when a search is needed.
    pub fn check_priceable(&self, queries: &[Query]) -> Result<()> {
        if self.top_price > 0.0 && self.top_price < MIN_TOP_PRICE {
            let query = &queries[self.top_query];
            return Err(Error::InvalidQuery {
                index: self.top_query,
                id: query.id.clone(),
                field: "weight",
                value: query.weight,
                reason: "is too small to price: weight times peak marginal utility is below \
                         1e-280 for every query in the batch; scale all weights up (the \
                         allocation does not change)",
            });
        }
        Ok(())
    }

    fn sample(&self, stride: usize) -> Market {
        let bidders: Vec<Bidder> = self.bidders.iter().step_by(stride).copied().collect();
        let caps = self.caps.iter().step_by(stride).copied().collect();
        Market {
            top_price: bidders
                .iter()
                .map(|b| b.max_price_under(self.rule))
                .fold(0.0, f64::max),
            bidders,
            caps,
            rule: self.rule,
            shared_scale: self.shared_scale,
            top_query: 0,
            fundable_caps: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.bidders.len()
    }

    /// One pass: total demand at `e^log_price`, each query's bid written to `tokens`.
    pub fn demand(&self, log_price: f64, tokens: &mut [f64]) -> Demand {
        self.demand_of(log_price, 0..self.len(), tokens, false)
    }

    /// Demand at `e^log_price` of the queries in `among` (the others must be out at
    /// this price); their bids are written to `tokens`. The slope costs a division per
    /// funded query, so it is summed only when `with_slope` asks for it.
    fn demand_of(
        &self,
        log_price: f64,
        among: impl Iterator<Item = usize>,
        tokens: &mut [f64],
        with_slope: bool,
    ) -> Demand {
        let price = log_price.exp();
        let mut total = Demand {
            log_price,
            tokens: 0.0,
            slope: 0.0,
            funded: 0,
        };
        let rule = self.rule;
        let mut tally = |i: usize, bid: Bid| {
            tokens[i] = bid.tokens();
            if bid != Bid::Out {
                total.funded += 1;
                total.tokens += tokens[i];
                if with_slope {
                    total.slope += bid.log_price_slope();
                }
            }
        };
        match self.shared_scale.map(|scale| surge_z(price / scale)) {
            Some(z) => among.for_each(|i| tally(i, self.bidders[i].bid_with(price, rule, || z))),
            None => among.for_each(|i| tally(i, self.bidders[i].bid_by(price, rule))),
        }
        total
    }
}

/// The outcome of market clearing: the final bracket and the bids at its ends.
pub(super) struct Cleared {
    /// The feasible end: demand ≤ budget.
    pub hi: Demand,
    /// Bids at `hi` (0 = out).
    pub hi_tokens: Vec<f64>,
    /// Bids at the infeasible end, when one was evaluated.
    pub lo_tokens: Option<Vec<f64>>,
    pub passes: usize,
}

/// A bracket `demand(lo) > budget ≥ demand(hi)` on `ln λ`, narrowed by the Illinois
/// variant of false position, with bisection whenever two steps fail to halve it.
///
/// Demand is a step-plus-smooth function of `ln λ` (each abandonment is a jump), so
/// Newton's method on the smooth part alone overshoots: the secant through the
/// bracket's ends sees the jumps too. Until a low end has been evaluated, the search
/// steps down from the high end, by the sample's secant slope when there is one, and
/// otherwise by strides that double.
struct Bracket {
    lo: Demand,
    lo_real: bool,
    hi: Demand,
    /// Illinois weights: halved each time the same end is kept twice in a row.
    lo_weight: f64,
    hi_weight: f64,
    last_kept_lo: Option<bool>,
    widths: [f64; 4],
    stride: f64,
    /// The two latest evaluated points, oldest first.
    recent: [Option<Demand>; 2],
}

impl Bracket {
    fn new(top_price: f64, floor_tokens: f64) -> Self {
        Bracket {
            lo: Demand {
                log_price: LOG_PRICE_FLOOR,
                tokens: floor_tokens,
                slope: 0.0,
                funded: usize::MAX,
            },
            lo_real: false,
            hi: Demand {
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

    fn width(&self) -> f64 {
        self.hi.log_price - self.lo.log_price
    }

    /// Whether the feasible end has reached the floor price.
    fn at_floor(&self) -> bool {
        self.hi.log_price <= LOG_PRICE_FLOOR + 1.0
    }

    /// Records an evaluated point; returns whether it became the feasible end.
    fn update(&mut self, point: Demand, budget: f64) -> bool {
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

    fn done(&self, budget: f64, tolerance: f64) -> bool {
        let close = self.hi.tokens >= budget * (1.0 - tolerance);
        close || self.narrow(tolerance)
    }

    /// Whether the bracket cannot usefully shrink further: narrower than `tolerance`
    /// (or than adjacent floats allow), or with its feasible end at the floor price,
    /// where demand is as high as f64 prices can make it.
    fn narrow(&self, tolerance: f64) -> bool {
        let width = self.width();
        self.at_floor()
            || (self.lo_real
                && (width <= tolerance || width <= 1e-14 * (1.0 + self.hi.log_price.abs())))
    }

    /// The next log-price to evaluate, aiming at demand `target`.
    fn next(&mut self, target: f64) -> f64 {
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

impl Allocator {
    /// Market clearing (SPEC §4): narrows a bracket on the price until the feasible end
    /// is within tolerance of the budget or the bracket is narrower than the tolerance
    /// (relative to the price).
    pub(super) fn clear(&self, market: &Market, budget: f64) -> Cleared {
        let n = market.len();
        let mut bracket = Bracket::new(market.top_price, market.fundable_caps as f64);
        let target = budget * (1.0 - 0.5 * self.tolerance);
        let mut log_price = self.starting_point(market, budget, &bracket);
        let mut current = vec![0.0; n];
        let mut hi_tokens = vec![0.0; n];
        let mut lo_tokens: Option<Vec<f64>> = None;
        // Queries out at the low end are out everywhere in the bracket: once a low end
        // is known, passes visit only the queries funded there. Every buffer is kept
        // at 0 outside that set, so a pass over it leaves whole, valid bids behind.
        let mut active: Option<Vec<usize>> = None;
        let mut passes = 0;
        for _ in 0..self.max_iterations {
            // Only the first point's slope is used (for the first step).
            let with_slope = passes == 0;
            let point = match &active {
                Some(among) => {
                    market.demand_of(log_price, among.iter().copied(), &mut current, with_slope)
                }
                None => market.demand_of(log_price, 0..n, &mut current, with_slope),
            };
            passes += 1;
            if bracket.update(point, budget) {
                std::mem::swap(&mut hi_tokens, &mut current);
            } else {
                let lo = lo_tokens.get_or_insert_with(|| vec![0.0; n]);
                std::mem::swap(lo, &mut current);
                let shrunk = active
                    .as_ref()
                    .is_none_or(|a| 4 * point.funded < 3 * a.len());
                if shrunk {
                    let among: Vec<usize> = match &active {
                        Some(a) => a.iter().copied().filter(|&i| lo[i] > 0.0).collect(),
                        None => (0..n).filter(|&i| lo[i] > 0.0).collect(),
                    };
                    // `current` now holds the previous low end's bids: clear the ones
                    // that left the set.
                    match &active {
                        Some(a) => a.iter().for_each(|&i| {
                            if lo[i] == 0.0 {
                                current[i] = 0.0
                            }
                        }),
                        None => current.iter_mut().for_each(|t| *t = 0.0),
                    }
                    active = Some(among);
                }
            }
            if bracket.done(budget, self.tolerance) {
                break;
            }
            log_price = bracket.next(target);
        }
        Cleared {
            hi: bracket.hi,
            hi_tokens,
            lo_tokens,
            passes,
        }
    }

    /// Where the search starts: for large batches, just below the clearing price of a
    /// strided sample with a proportional budget; otherwise one e-fold below the top
    /// price.
    fn starting_point(&self, market: &Market, budget: f64, bracket: &Bracket) -> f64 {
        let n = market.len();
        let (lo, hi) = (bracket.lo.log_price, bracket.hi.log_price);
        if n >= LARGE_BATCH {
            let stride = n / SAMPLE;
            let sample = market.sample(stride);
            let scale = n as f64 / sample.len() as f64;
            let mut sample_bracket = Bracket::new(sample.top_price, f64::INFINITY);
            let sample_budget = budget / scale;
            let target = sample_budget * (1.0 - 0.5 * self.tolerance);
            let mut scratch = vec![0.0; sample.len()];
            let mut log_price = (hi - 1.0).max(0.5 * (lo + hi));
            for _ in 0..self.max_iterations {
                let first = sample_bracket.recent[1].is_none();
                let point = sample.demand_of(log_price, 0..sample.len(), &mut scratch, first);
                sample_bracket.update(point, sample_budget);
                if sample_bracket.done(sample_budget, self.tolerance.max(1e-3)) {
                    break;
                }
                log_price = sample_bracket.next(target);
            }
            // Start 2 % below the sample's price: the first full pass then usually lands
            // on the infeasible side, so the bracket gets a low end — and the passes
            // after it the smaller active set — at once. (Measured: at 10 000 queries
            // this saves a full pass; much further below costs an extra step.)
            let guess = sample_bracket.hi.log_price - 0.02;
            if guess > lo && guess < hi {
                return guess;
            }
        }
        (hi - 1.0).max(0.5 * (lo + hi))
    }

    /// Spends `budget` among the `funded` queries alone, ignoring abandonment: the
    /// price at which their continuous demand meets the budget, found by Newton's
    /// method in `ln λ` (no jumps here) inside a bracket, starting at `start_log_price`.
    /// Returns the price, the funded queries' tokens (in the order of `funded`) and the
    /// passes made.
    ///
    /// `known`, when given, holds bids at the start price for the queries funded there
    /// (0 for the others), which spares the first pass most of its W₋₁ evaluations.
    pub(super) fn reclear(
        &self,
        market: &Market,
        funded: &[usize],
        budget: f64,
        start_log_price: f64,
        known: Option<&[f64]>,
    ) -> (f64, Vec<f64>, usize) {
        let bidders = &market.bidders;
        let all_caps: f64 = funded.iter().map(|&i| bidders[i].cap()).sum();
        if all_caps <= budget {
            return (0.0, funded.iter().map(|&i| bidders[i].cap()).collect(), 0);
        }
        let demand = |log_price: f64, tokens: &mut [f64]| {
            let price = log_price.exp();
            let mut point = Demand {
                log_price,
                tokens: 0.0,
                slope: 0.0,
                funded: funded.len(),
            };
            for (&i, slot) in funded.iter().zip(tokens.iter_mut()) {
                let bid = bidders[i].bid_funded(price);
                *slot = bid.tokens();
                point.tokens += *slot;
                point.slope += bid.log_price_slope();
            }
            point
        };
        let top = funded
            .iter()
            .map(|&i| bidders[i].max_price_under(BidRule::KeepAll))
            .fold(0.0, f64::max);
        let mut bracket = Bracket::new(top, all_caps);
        // The best feasible point so far starts as nothing bought at the top price.
        let mut best_tokens = vec![0.0; funded.len()];
        let mut best_price = top;
        let mut current = vec![0.0; funded.len()];
        // Rounding hands back up to one granule per funded query, by largest remainder,
        // so the continuous demand need only come within a quarter of that.
        let exact = (0.25 * funded.len() as f64 * self.granularity as f64).max(0.25);
        let mut passes = 0;
        let mut point = match known {
            Some(known) => {
                let price = start_log_price.exp();
                let mut point = Demand {
                    log_price: start_log_price,
                    tokens: 0.0,
                    slope: 0.0,
                    funded: funded.len(),
                };
                for (&i, slot) in funded.iter().zip(current.iter_mut()) {
                    let bid = if known[i] > 0.0 {
                        bidders[i].funded_bid_at(known[i])
                    } else {
                        bidders[i].bid_funded(price)
                    };
                    *slot = bid.tokens();
                    point.tokens += *slot;
                    point.slope += bid.log_price_slope();
                }
                point
            }
            None => {
                passes += 1;
                demand(start_log_price, &mut current)
            }
        };
        for _ in 0..self.max_iterations {
            if bracket.update(point, budget) {
                best_price = point.price();
                std::mem::swap(&mut best_tokens, &mut current);
            }
            // Demand can still jump here — a forced edge query drops out above its
            // peak marginal — so a bracket this narrow means the budget falls in a
            // jump, and the caller hands the remainder to the edge query.
            if budget - bracket.hi.tokens <= exact || bracket.narrow(self.tolerance) {
                break;
            }
            let (lo, hi) = (bracket.lo.log_price, bracket.hi.log_price);
            let newton = point.log_price + (budget - 0.5 * exact - point.tokens) / point.slope;
            let next = if newton > lo && newton < hi {
                newton
            } else {
                bracket.next(budget - 0.5 * exact)
            };
            point = demand(next, &mut current);
            passes += 1;
        }
        (best_price, best_tokens, passes)
    }
}
