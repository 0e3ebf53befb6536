//! The prepared batch and the price searches over it.
//!
//! Every search here is a sequence of *passes*: one evaluation of each query's bid at
//! one price. A pass is the unit of cost (one W₋₁ per query on the concave branch), so
//! the searches are built to need few of them.

use super::bid::{Bid, BidRule, Bidding};
use super::search::{Bracket, Demand, Point, Search, Stop};
use super::{Allocator, Query};
use crate::error::{Error, QueryRef, Result};
use crate::model::{surge_z, Curve};

/// Prices below `e^LOG_PRICE_FLOOR` cannot be searched, so a batch must be able to pay
/// more than this for its best token: a margin of ~60 e-folds above the floor.
const MIN_TOP_PRICE: f64 = 1e-280;

/// Batches at least this large start the price search from a solve on a strided
/// sample.
const LARGE_BATCH: usize = 4096;

/// Size of the presolve sample.
const SAMPLE: usize = 512;

/// The batch, folded into per-query bidders.
pub(super) struct Market<B: Bidding> {
    pub bidders: Vec<B>,
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

impl<B: Bidding> Market<B> {
    /// Prepares the queries' bidders, in one pass.
    pub fn prepare<C: Curve<Bidder = B>>(allocator: &Allocator, queries: &[Query<C>]) -> Self {
        let mut bidders = Vec::with_capacity(queries.len());
        let mut caps = Vec::with_capacity(queries.len());
        let mut top_price = 0.0f64;
        let mut fundable_caps = 0u128;
        let mut shape = None;
        let mut shared = true;
        let mut top_query = 0;
        for (index, query) in queries.iter().enumerate() {
            let cap = allocator.cap_of(query);
            let bidder = query.curve().bidder(query.weight(), cap as f64);
            let max_price = bidder.max_price_under(allocator.rule);
            if max_price > top_price {
                top_price = max_price;
                top_query = index;
            }
            if bidder.fundable() {
                fundable_caps += cap as u128;
            }
            match bidder.shape() {
                Some(this_shape) => shared &= *shape.get_or_insert(this_shape) == this_shape,
                None => shared = false,
            }
            bidders.push(bidder);
            caps.push(cap);
        }
        Market {
            bidders,
            caps,
            rule: allocator.rule,
            shared_scale: shape.filter(|_| shared).map(|(scale, _)| scale),
            top_price,
            top_query,
            fundable_caps,
        }
    }

    /// Prices below `e^LOG_PRICE_FLOOR` cannot be searched: a batch whose best token is
    /// worth less than [`MIN_TOP_PRICE`] is an error — but only when a search is needed.
    pub fn check_priceable<C: Curve>(&self, queries: &[Query<C>]) -> Result<()> {
        if self.top_price > 0.0 && self.top_price < MIN_TOP_PRICE {
            let query = &queries[self.top_query];
            return Err(Error::invalid_query(
                QueryRef::at(self.top_query, query.id()),
                "weight",
                query.weight(),
                "is too small to price: weight times peak marginal utility is below 1e-280 \
                 for every query in the batch; scale all weights up (the allocation does \
                 not change)",
            ));
        }
        Ok(())
    }

    fn sample(&self, stride: usize) -> Self {
        let bidders: Vec<B> = self.bidders.iter().step_by(stride).cloned().collect();
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
    pub fn demand(&self, log_price: f64, tokens: &mut [f64]) -> Point {
        self.demand_of(log_price, 0..self.len(), tokens, false)
    }

    /// Point at `e^log_price` of the queries in `among` (the others must be out at
    /// this price); their bids are written to `tokens`. The slope costs a division per
    /// funded query, so it is summed only when `with_slope` asks for it.
    fn demand_of(
        &self,
        log_price: f64,
        among: impl Iterator<Item = usize>,
        tokens: &mut [f64],
        with_slope: bool,
    ) -> Point {
        let price = log_price.exp();
        let mut total = Point::empty(log_price, 0);
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
            Some(z) => among.for_each(|i| tally(i, self.bidders[i].bid_shared(price, rule, z))),
            None => among.for_each(|i| tally(i, self.bidders[i].bid_by(price, rule))),
        }
        total
    }
}

/// The outcome of market clearing: the final bracket and the bids at its ends.
pub(super) struct Cleared {
    /// The feasible end: demand ≤ budget.
    pub hi: Point,
    /// Bids at `hi` (0 = out).
    pub hi_tokens: Vec<f64>,
    /// Bids at the infeasible end, when one was evaluated.
    pub lo_tokens: Option<Vec<f64>>,
    pub passes: usize,
}

/// The whole batch as a [`Demand`], keeping every query's bid at both ends of the
/// bracket.
///
/// Queries out at the low end are out everywhere in the bracket: once a low end is
/// known, passes visit only the queries funded there. Every buffer is kept at 0
/// outside that set, so a pass over it leaves whole, valid bids behind.
struct BatchDemand<'a, B: Bidding> {
    market: &'a Market<B>,
    /// Bids at the latest price.
    current: Vec<f64>,
    hi_tokens: Vec<f64>,
    lo_tokens: Option<Vec<f64>>,
    active: Option<Vec<usize>>,
}

impl<B: Bidding> Demand for BatchDemand<'_, B> {
    fn at(&mut self, log_price: f64, with_slope: bool) -> Point {
        let market = self.market;
        match &self.active {
            Some(among) => market.demand_of(
                log_price,
                among.iter().copied(),
                &mut self.current,
                with_slope,
            ),
            None => market.demand_of(log_price, 0..market.len(), &mut self.current, with_slope),
        }
    }

    fn settle(&mut self, point: &Point, feasible: bool) {
        if feasible {
            std::mem::swap(&mut self.hi_tokens, &mut self.current);
            return;
        }
        let n = self.market.len();
        let lo = self.lo_tokens.get_or_insert_with(|| vec![0.0; n]);
        std::mem::swap(lo, &mut self.current);
        let shrunk = self
            .active
            .as_ref()
            .is_none_or(|a| 4 * point.funded < 3 * a.len());
        if shrunk {
            let among: Vec<usize> = match &self.active {
                Some(a) => a.iter().copied().filter(|&i| lo[i] > 0.0).collect(),
                None => (0..n).filter(|&i| lo[i] > 0.0).collect(),
            };
            // `current` now holds the previous low end's bids: clear the ones that
            // left the set.
            match &self.active {
                Some(a) => a.iter().for_each(|&i| {
                    if lo[i] == 0.0 {
                        self.current[i] = 0.0
                    }
                }),
                None => self.current.iter_mut().for_each(|t| *t = 0.0),
            }
            self.active = Some(among);
        }
    }
}

/// The strided sample of a large batch as a [`Demand`] (its bids are not kept).
struct SampleDemand<'a, B: Bidding> {
    market: &'a Market<B>,
    scratch: Vec<f64>,
}

impl<B: Bidding> Demand for SampleDemand<'_, B> {
    fn at(&mut self, log_price: f64, with_slope: bool) -> Point {
        let n = self.market.len();
        self.market
            .demand_of(log_price, 0..n, &mut self.scratch, with_slope)
    }
}

impl Allocator {
    /// Market clearing (SPEC §4): narrows a bracket on the price until the feasible end
    /// is within tolerance of the budget or the bracket is narrower than the tolerance
    /// (relative to the price).
    pub(super) fn clear<B: Bidding>(&self, market: &Market<B>, budget: f64) -> Cleared {
        let n = market.len();
        let mut bracket = Bracket::new(market.top_price, market.fundable_caps as f64);
        let target = budget * (1.0 - 0.5 * self.tolerance);
        let start = self.starting_point(market, budget, &bracket);
        let mut demand = BatchDemand {
            market,
            current: vec![0.0; n],
            hi_tokens: vec![0.0; n],
            lo_tokens: None,
            active: None,
        };
        let search = Search {
            tolerance: self.tolerance,
            max_iterations: self.max_iterations,
            stop: Stop::Close,
        };
        let passes = search.run(&mut demand, &mut bracket, start, budget, target);
        Cleared {
            hi: bracket.hi,
            hi_tokens: demand.hi_tokens,
            lo_tokens: demand.lo_tokens,
            passes,
        }
    }

    /// Where the search starts: for large batches, just below the clearing price of a
    /// strided sample with a proportional budget; otherwise one e-fold below the top
    /// price.
    fn starting_point<B: Bidding>(
        &self,
        market: &Market<B>,
        budget: f64,
        bracket: &Bracket,
    ) -> f64 {
        let n = market.len();
        let (lo, hi) = (bracket.lo.log_price, bracket.hi.log_price);
        if n >= LARGE_BATCH {
            let stride = n / SAMPLE;
            let sample = market.sample(stride);
            let scale = n as f64 / sample.len() as f64;
            let mut sample_bracket = Bracket::new(sample.top_price, f64::INFINITY);
            let sample_budget = budget / scale;
            let target = sample_budget * (1.0 - 0.5 * self.tolerance);
            let search = Search {
                tolerance: self.tolerance.max(1e-3),
                max_iterations: self.max_iterations,
                stop: Stop::Close,
            };
            let mut demand = SampleDemand {
                market: &sample,
                scratch: vec![0.0; sample.len()],
            };
            let start = (hi - 1.0).max(0.5 * (lo + hi));
            search.run(
                &mut demand,
                &mut sample_bracket,
                start,
                sample_budget,
                target,
            );
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShiftedSurge;

    fn query(t: f64, w: f64, p: f64, cap: u64) -> Query {
        Query::new(ShiftedSurge::new(t, w, p).unwrap()).with_cap(cap)
    }

    #[test]
    fn prepare_folds_caps_shapes_and_the_top_price() {
        let allocator = Allocator::default();
        // Same width and ceiling: one shared z(λ) per pass.
        let same = [query(100.0, 50.0, 0.9, 1000), query(300.0, 50.0, 0.9, 1000)];
        let market = Market::prepare(&allocator, &same);
        assert!(market.shared_scale.is_some());
        assert_eq!(market.fundable_caps, 2000);
        // A cap at the threshold buys nothing: not fundable, so not in the floor demand.
        let mixed = [query(100.0, 50.0, 0.9, 1000), query(300.0, 80.0, 0.9, 300)];
        let market = Market::prepare(&allocator, &mixed);
        assert!(market.shared_scale.is_none());
        assert_eq!(market.fundable_caps, 1000);
        assert_eq!(market.top_query, 0);
        assert_eq!(market.top_price, market.bidders[0].max_price());
    }

    #[test]
    fn a_pass_over_a_subset_leaves_the_others_alone() {
        let allocator = Allocator::default();
        let qs = [query(100.0, 50.0, 0.9, 1000), query(100.0, 50.0, 0.9, 1000)];
        let market = Market::prepare(&allocator, &qs);
        let mut all = vec![0.0; 2];
        let full = market.demand(f64::NEG_INFINITY, &mut all);
        assert_eq!((full.tokens, full.funded), (2000.0, 2));
        let mut some = vec![-1.0; 2];
        let one = market.demand_of((1e-4f64).ln(), [1].into_iter(), &mut some, true);
        assert_eq!(one.funded, 1);
        assert_eq!(some[0], -1.0);
        assert!(some[1] > 100.0 && one.slope < 0.0);
    }

    #[test]
    fn a_batch_too_cheap_to_price_names_its_best_query() {
        let allocator = Allocator::default();
        let curve = ShiftedSurge::new(100.0, 50.0, 0.9).unwrap();
        let qs: Vec<Query> = (0..3)
            .map(|i| {
                Query::new(curve)
                    .with_weight(1e-300 * (i + 1) as f64)
                    .unwrap()
                    .with_id(format!("q{i}"))
            })
            .collect();
        let err = Market::prepare(&allocator, &qs)
            .check_priceable(&qs)
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "query 2 (id \"q2\"): weight = 3e-300 is invalid: is too small to price"
            ),
            "{err}"
        );
    }
}
