//! The prepared batch and the price searches over it.
//!
//! Every search here is a sequence of *passes*: one evaluation of each query's bid at
//! one price. A pass is the unit of cost (one W₋₁ per query on the concave branch), so
//! the searches are built to need few of them.

use super::bid::{Bid, BidRule, Bidding, Scanned};
use super::chunks;
use super::search::{Bracket, Demand, Point, Search, Stop};
use super::subset::Subset;
use super::{Allocator, Query};
use crate::error::{Error, QueryRef, Result};
use crate::model::{surge_z, Curve};

/// Prices below `e^LOG_PRICE_FLOOR` cannot be searched, so a batch must be able to pay
/// more than this for its best token: a margin of ~60 e-folds above the floor.
const MIN_TOP_PRICE: f64 = 1e-280;

/// Batches at least this large start the price search from a solve on a strided
/// sample.
const LARGE_BATCH: usize = 4096;

/// Size of the presolve sample: [`SAMPLE`] queries, or one in [`SAMPLE_STRIDE`] in
/// batches over half a million, where a fixed sample lands the first full pass far
/// enough off the budget to cost an extra pass (measured: 16 % off at 10⁶ queries),
/// while the sample's own passes stay a small share of one full pass.
const SAMPLE: usize = 512;
const SAMPLE_STRIDE: usize = 1000;

/// The batch, folded into per-query bidders.
pub(super) struct Market<B: Bidding> {
    /// The prepared bidders, in input order; empty after a [`Market::scan`], which
    /// keeps only the queries funded at its price (in the buffers' [`Subset`]).
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
    /// How many queries the batch has.
    len: usize,
}

/// What preparing the queries learns about the batch as a whole; merged chunk by
/// chunk in order, so it does not depend on how the batch was split.
#[derive(Debug, Clone, Copy)]
struct Summary {
    top_price: f64,
    top_query: usize,
    fundable_caps: u128,
    /// The first query's shape, and whether every query shares it.
    shape: Option<(f64, f64)>,
    shared: bool,
}

impl Summary {
    const EMPTY: Summary = Summary {
        top_price: 0.0,
        top_query: 0,
        fundable_caps: 0,
        shape: None,
        shared: true,
    };

    #[inline]
    fn add<B: Bidding>(&mut self, index: usize, bidder: &B, cap: u64, rule: BidRule) {
        self.add_facts(
            index,
            bidder.max_price_under(rule),
            bidder.fundable(),
            cap,
            bidder.shape(),
        );
    }

    /// [`Summary::add`] from the bidder's facts.
    #[inline]
    fn add_facts(
        &mut self,
        index: usize,
        max_price: f64,
        fundable: bool,
        cap: u64,
        shape: Option<(f64, f64)>,
    ) {
        if max_price > self.top_price {
            self.top_price = max_price;
            self.top_query = index;
        }
        if fundable {
            self.fundable_caps += cap as u128;
        }
        match shape {
            Some(this) => self.shared &= *self.shape.get_or_insert(this) == this,
            None => self.shared = false,
        }
    }

    /// `self` followed by `later`.
    fn then(self, later: Summary) -> Summary {
        let top = if later.top_price > self.top_price {
            later
        } else {
            self
        };
        Summary {
            top_price: top.top_price,
            top_query: top.top_query,
            fundable_caps: self.fundable_caps + later.fundable_caps,
            shape: self.shape.or(later.shape),
            shared: self.shared
                && later.shared
                && match (self.shape, later.shape) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                },
        }
    }
}

impl<B: Bidding> Market<B> {
    /// An empty market, to be filled by [`Market::refill`].
    pub fn empty(rule: BidRule) -> Self {
        Market {
            bidders: Vec::new(),
            caps: Vec::new(),
            rule,
            shared_scale: None,
            top_price: 0.0,
            top_query: 0,
            fundable_caps: 0,
            len: 0,
        }
    }

    /// Prepares the queries' bidders.
    pub fn prepare<C: Curve<Bidder = B>>(allocator: &Allocator, queries: &[Query<C>]) -> Self {
        let mut market = Market::empty(allocator.rule);
        market.refill(allocator, queries);
        market
    }

    /// Prepares the queries' bidders into this market's memory, in one pass (on
    /// several threads for a large batch with the `parallel` feature).
    pub fn refill<C: Curve<Bidder = B>>(&mut self, allocator: &Allocator, queries: &[Query<C>]) {
        let rule = allocator.rule;
        self.rule = rule;
        self.bidders.clear();
        self.caps.clear();
        self.len = queries.len();
        let mut summary = Summary::EMPTY;
        #[cfg(feature = "parallel")]
        if chunks::parallel(queries.len()) {
            use rayon::prelude::*;
            let prepare = |query: &Query<C>| {
                let cap = allocator.cap_of(query);
                (query.curve().bidder(query.weight(), cap as f64), cap)
            };
            queries
                .par_iter()
                .map(prepare)
                .unzip_into_vecs(&mut self.bidders, &mut self.caps);
            let caps = &self.caps;
            summary = chunks::fold(
                &self.bidders,
                &mut vec![(); queries.len()],
                Summary::EMPTY,
                |offset, bidders, _| {
                    let mut part = Summary::EMPTY;
                    for (k, bidder) in bidders.iter().enumerate() {
                        part.add(offset + k, bidder, caps[offset + k], rule);
                    }
                    part
                },
                Summary::then,
            );
        }
        if self.bidders.len() != queries.len() {
            self.bidders.reserve(queries.len());
            self.caps.reserve(queries.len());
            summary = self.push_each(allocator, queries.iter());
        }
        self.summarise(summary);
    }

    /// Prepares `queries` one after another onto the market's bidders, and sums them up.
    fn push_each<'q, C: Curve<Bidder = B> + 'q>(
        &mut self,
        allocator: &Allocator,
        queries: impl Iterator<Item = &'q Query<C>>,
    ) -> Summary {
        let mut summary = Summary::EMPTY;
        for (index, query) in queries.enumerate() {
            let cap = allocator.cap_of(query);
            let bidder = query.curve().bidder(query.weight(), cap as f64);
            summary.add(index, &bidder, cap, allocator.rule);
            self.bidders.push(bidder);
            self.caps.push(cap);
        }
        summary
    }

    fn summarise(&mut self, summary: Summary) {
        self.shared_scale = summary
            .shape
            .filter(|_| summary.shared)
            .map(|(scale, _)| scale);
        self.top_price = summary.top_price;
        self.top_query = summary.top_query;
        self.fundable_caps = summary.fundable_caps;
    }

    /// Prepares the queries and takes a first pass at `e^log_price` in the same sweep,
    /// keeping only what the search needs once that price turns out to be a low end:
    /// the queries funded there, compacted into `set`, with their bids in `bids`. The
    /// market itself keeps no bidders (so it must be [`refill`](Market::refill)ed if
    /// the price is feasible after all). Sums are taken chunk by chunk as in a pass,
    /// so the point is the one a pass over the prepared market would give.
    pub fn scan<C: Curve<Bidder = B>>(
        &mut self,
        allocator: &Allocator,
        queries: &[Query<C>],
        log_price: f64,
        buffers: &mut ClearBuffers<B>,
    ) -> Point {
        debug_assert!(B::COMPACT, "a scan keeps copies of the funded bidders");
        let rule = allocator.rule;
        let price = log_price.exp();
        self.rule = rule;
        self.bidders.clear();
        self.caps.clear();
        self.len = queries.len();
        let ClearBuffers {
            set,
            current: bids,
            #[cfg(feature = "parallel")]
            parts,
            ..
        } = buffers;
        set.clear();
        bids.clear();
        // One chunk: its summary and point, its funded queries appended to `set`.
        let scan_chunk =
            |offset: usize, part: &[Query<C>], set: &mut Subset<B>, bids: &mut Vec<f64>| {
                let mut summary = Summary::EMPTY;
                let mut point = Point::empty(log_price, 0);
                for (k, query) in part.iter().enumerate() {
                    let cap = allocator.cap_of(query);
                    let (bidder, bid) =
                        match query.curve().scan(query.weight(), cap as f64, price, rule) {
                            Scanned::Bid(bidder, bid) => (bidder, bid),
                            Scanned::Out {
                                max_price,
                                fundable,
                                shape,
                            } => {
                                summary.add_facts(offset + k, max_price, fundable, cap, shape);
                                continue;
                            }
                        };
                    summary.add(offset + k, &bidder, cap, rule);
                    let tokens = bid.tokens();
                    if bid != Bid::Out {
                        point.funded += 1;
                        point.tokens += tokens;
                        point.slope += bid.log_price_slope();
                    }
                    if tokens > 0.0 {
                        set.push_prepared((offset + k) as u32, cap, bidder);
                        bids.push(tokens);
                    }
                }
                (summary, point)
            };
        let mut summary = Summary::EMPTY;
        let mut point = Point::empty(log_price, 0);
        #[cfg(feature = "parallel")]
        if chunks::parallel(queries.len()) {
            use rayon::prelude::*;
            // Each chunk's funded queries go to a part of its own, kept from call to
            // call: fresh memory for them on every call cost more page faults than the
            // second thread saved.
            let count = queries.len().div_ceil(chunks::CHUNK);
            if parts.len() < count {
                parts.resize_with(count, Default::default);
            }
            let found: Vec<_> = queries
                .par_chunks(chunks::CHUNK)
                .zip(parts[..count].par_iter_mut())
                .enumerate()
                .map(|(c, (part, (part_set, part_bids)))| {
                    part_set.clear();
                    part_bids.clear();
                    part_set.reserve(part.len());
                    part_bids.reserve(part.len());
                    scan_chunk(c * chunks::CHUNK, part, part_set, part_bids)
                })
                .collect();
            let funded: usize = parts[..count].iter().map(|(_, b)| b.len()).sum();
            set.reserve(funded);
            bids.reserve(funded);
            for ((part_summary, part_point), (part_set, part_bids)) in
                found.into_iter().zip(&*parts)
            {
                summary = summary.then(part_summary);
                point = point.then(part_point);
                set.extend_from(part_set);
                bids.extend_from_slice(part_bids);
            }
            self.summarise(summary);
            return point;
        }
        // Room for every query: the pages of the part never written are never mapped,
        // and the set does not grow by copying.
        set.reserve(queries.len());
        bids.reserve(queries.len());
        for (c, part) in queries.chunks(chunks::CHUNK).enumerate() {
            let (part_summary, part_point) = scan_chunk(c * chunks::CHUNK, part, set, bids);
            summary = summary.then(part_summary);
            point = point.then(part_point);
        }
        self.summarise(summary);
        point
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

    /// One query in `stride`, prepared.
    fn sample_of<C: Curve<Bidder = B>>(
        allocator: &Allocator,
        queries: &[Query<C>],
        stride: usize,
    ) -> Self {
        let mut sample = Market::empty(allocator.rule);
        let summary = sample.push_each(allocator, queries.iter().step_by(stride));
        sample.len = sample.bidders.len();
        sample.summarise(summary);
        sample
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// One pass: total demand at `e^log_price`, each query's bid written to `tokens`.
    pub fn demand(&self, log_price: f64, tokens: &mut [f64]) -> Point {
        self.pass(&self.bidders, |b| b, log_price, tokens, false)
    }

    /// One pass over the members of `set`: their bids at `e^log_price` written to
    /// `tokens` (by position in the set), and their total.
    fn demand_of(
        &self,
        set: &Subset<B>,
        log_price: f64,
        tokens: &mut [f64],
        with_slope: bool,
    ) -> Point {
        if B::COMPACT {
            self.pass(&set.bidders, |b| b, log_price, tokens, with_slope)
        } else {
            let bidders = &self.bidders[..];
            let at = |&i: &u32| -> &B { &bidders[i as usize] };
            self.pass(&set.index, at, log_price, tokens, with_slope)
        }
    }

    /// Total demand at `e^log_price` of the bidders `bidder(x)` for `x` in `inputs`,
    /// each bid written to `tokens`; summed in fixed chunks (see [`chunks`]). The slope
    /// costs a division per funded query, so it is summed only when `with_slope` asks
    /// for it.
    #[inline]
    fn pass<'b, A: Sync>(
        &self,
        inputs: &'b [A],
        bidder: impl Fn(&'b A) -> &'b B + Sync + Send,
        log_price: f64,
        tokens: &mut [f64],
        with_slope: bool,
    ) -> Point
    where
        B: 'b,
    {
        let price = log_price.exp();
        let rule = self.rule;
        let shared_z = self.shared_scale.map(|scale| surge_z(price / scale));
        chunks::fold(
            inputs,
            tokens,
            Point::empty(log_price, 0),
            |offset, part_inputs: &[A], tokens: &mut [f64]| {
                // Re-slice from `inputs` so the items keep its lifetime.
                let part_inputs = &inputs[offset..offset + part_inputs.len()];
                let mut part = Point::empty(log_price, 0);
                let mut tally = |slot: &mut f64, bid: Bid| {
                    *slot = bid.tokens();
                    if bid != Bid::Out {
                        part.funded += 1;
                        part.tokens += *slot;
                        if with_slope {
                            part.slope += bid.log_price_slope();
                        }
                    }
                };
                match shared_z {
                    Some(z) => part_inputs
                        .iter()
                        .zip(tokens)
                        .for_each(|(x, t)| tally(t, bidder(x).bid_shared(price, rule, z))),
                    None => part_inputs
                        .iter()
                        .zip(tokens)
                        .for_each(|(x, t)| tally(t, bidder(x).bid_by(price, rule))),
                }
                part
            },
            Point::then,
        )
    }
}

/// The memory of one market clearing, kept in a workspace between calls: bids at the
/// bracket's ends, first for every query, then — once a low end is known — for the
/// queries funded there alone ([`Subset`]).
pub(super) struct ClearBuffers<B> {
    /// Bids of every query at the latest price, before a low end is known.
    all_current: Vec<f64>,
    /// Bids of every query at the feasible end, before a low end is known.
    all_hi: Vec<f64>,
    /// The queries that can still be funded; after clearing, those funded at the low
    /// end (or, without one, at the feasible end).
    pub set: Subset<B>,
    /// Bids of the set's members at the latest price.
    current: Vec<f64>,
    /// Bids of the set's members at the feasible end.
    pub hi: Vec<f64>,
    /// Bids of the set's members at the infeasible end (empty without one).
    pub lo: Vec<f64>,
    /// A parallel [`Market::scan`]'s funded queries and their bids, chunk by chunk,
    /// before they are joined into `set`. Each part keeps room for a whole chunk, so
    /// a workspace that served a large batch with the `parallel` feature holds about
    /// one more copy of the funded queries' bidders (touched memory; the room never
    /// written is not mapped).
    #[cfg(feature = "parallel")]
    parts: Vec<(Subset<B>, Vec<f64>)>,
}

impl<B: Bidding> Default for ClearBuffers<B> {
    fn default() -> Self {
        ClearBuffers {
            all_current: Vec::new(),
            all_hi: Vec::new(),
            set: Subset::default(),
            current: Vec::new(),
            hi: Vec::new(),
            lo: Vec::new(),
            #[cfg(feature = "parallel")]
            parts: Vec::new(),
        }
    }
}

impl<B: Bidding> ClearBuffers<B> {
    /// Room for `n` bids in memory the buffers hold, for a single pass over every
    /// query (which overwrites all of them).
    pub fn one_pass(&mut self, n: usize) -> &mut [f64] {
        fit(&mut self.all_current, n);
        &mut self.all_current
    }

    /// Makes every query of `market` a member, with bids `tokens` at both ends: the
    /// leftover step of a small batch considers every query.
    pub fn widen(&mut self, market: &Market<B>) {
        let n = market.len();
        self.all_hi.clear();
        self.all_hi.resize(n, 0.0);
        self.all_current.clear();
        self.all_current.resize(n, 0.0);
        for (k, &i) in self.set.index.iter().enumerate() {
            self.all_hi[i as usize] = self.hi[k];
            if !self.lo.is_empty() {
                self.all_current[i as usize] = self.lo[k];
            }
        }
        let has_lo = !self.lo.is_empty();
        self.set.fill_all(market);
        self.hi.clear();
        self.hi.extend_from_slice(&self.all_hi);
        self.lo.clear();
        if has_lo {
            self.lo.extend_from_slice(&self.all_current);
        }
    }
}

/// Makes `v` `n` long for a pass to overwrite: its memory when large enough (its old
/// values left in place), else fresh zeroed memory, which the kernel maps only as the
/// pass first writes it, rather than zeroing it here and once more there.
fn fit(v: &mut Vec<f64>, n: usize) {
    if v.capacity() < n {
        *v = vec![0.0; n];
    } else {
        v.truncate(n);
        v.resize(n, 0.0);
    }
}

/// The presolve's start for the price search of a large batch.
struct Presolved {
    log_price: f64,
    /// Demand's slope in tokens per unit of log price, scaled from the sample's
    /// secant (< 0; 0 when the sample's demand was flat).
    slope: f64,
}

/// The search's first point, taken by [`Allocator::scan_first`], and the presolve's
/// slope of demand there.
pub(super) struct First {
    point: Point,
    slope: f64,
}

/// The outcome of market clearing: the final bracket's feasible end; the bids at its
/// ends are in the [`ClearBuffers`].
pub(super) struct Cleared {
    /// The feasible end: demand ≤ budget.
    pub hi: Point,
    pub passes: usize,
}

/// The whole batch as a [`Demand`], keeping every query's bid at both ends of the
/// bracket.
///
/// Queries out at the low end are out everywhere in the bracket: once a low end is
/// known, passes visit only the queries funded there, compacted into the buffers'
/// [`Subset`], which shrinks again at each new low end.
struct BatchDemand<'a, B: Bidding> {
    market: &'a Market<B>,
    buffers: &'a mut ClearBuffers<B>,
    /// Whether a low end is known (and the passes run over the subset).
    compact: bool,
    /// Whether `all_hi` holds the bids at an evaluated feasible end.
    all_hi_known: bool,
    /// The search's first point when a [`Market::scan`] has already taken it.
    first: Option<Point>,
}

impl<B: Bidding> Demand for BatchDemand<'_, B> {
    fn at(&mut self, log_price: f64, with_slope: bool) -> Point {
        if let Some(first) = self.first.take() {
            debug_assert_eq!(first.log_price, log_price);
            return first;
        }
        let buffers = &mut *self.buffers;
        if self.compact {
            self.market
                .demand_of(&buffers.set, log_price, &mut buffers.current, with_slope)
        } else {
            let market = self.market;
            market.pass(
                &market.bidders,
                |b| b,
                log_price,
                &mut buffers.all_current,
                with_slope,
            )
        }
    }

    fn settle(&mut self, point: &Point, feasible: bool) {
        let market = self.market;
        let b = &mut *self.buffers;
        match (self.compact, feasible) {
            (false, true) => {
                std::mem::swap(&mut b.all_hi, &mut b.all_current);
                fit(&mut b.all_current, market.len());
                self.all_hi_known = true;
            }
            (false, false) => {
                // The first low end: the queries funded there become the set.
                b.set.clear();
                b.hi.clear();
                b.lo.clear();
                b.set.reserve(point.funded);
                b.hi.reserve(point.funded);
                b.lo.reserve(point.funded);
                for (i, &t) in b.all_current.iter().enumerate() {
                    if t > 0.0 {
                        b.set.push(market, i);
                        b.lo.push(t);
                        b.hi.push(if self.all_hi_known { b.all_hi[i] } else { 0.0 });
                    }
                }
                b.current.clear();
                b.current.resize(b.set.len(), 0.0);
                self.compact = true;
            }
            (true, true) => std::mem::swap(&mut b.hi, &mut b.current),
            (true, false) => {
                std::mem::swap(&mut b.lo, &mut b.current);
                b.set
                    .retain_bidding(&mut b.lo, &mut [&mut b.hi, &mut b.current]);
            }
        }
    }
}

impl<B: Bidding> BatchDemand<'_, B> {
    /// Leaves the buffers' set as the queries funded at the low end, or — without
    /// one — at the feasible end, with their bids.
    fn finish(self) {
        if self.compact {
            return;
        }
        let b = self.buffers;
        b.set.clear();
        b.hi.clear();
        b.lo.clear();
        if self.all_hi_known {
            for (i, &t) in b.all_hi.iter().enumerate() {
                if t > 0.0 {
                    b.set.push(self.market, i);
                    b.hi.push(t);
                }
            }
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
        let market = self.market;
        market.pass(
            &market.bidders,
            |b| b,
            log_price,
            &mut self.scratch,
            with_slope,
        )
    }
}

impl Allocator {
    /// The first pass of a large batch of small bidders, fused with preparing them
    /// ([`Market::scan`]) at the presolve's price, which lands just below the clearing
    /// price: the pass is then the search's low end, and only the queries funded there
    /// are kept. `None` — and `market` must be [`refill`](Market::refill)ed — when
    /// the batch is small, its bidders are not [`Bidding::COMPACT`], or the price turns
    /// out feasible (or the batch unpriceable) after all.
    pub(super) fn scan_first<C: Curve>(
        &self,
        market: &mut Market<C::Bidder>,
        queries: &[Query<C>],
        budget: f64,
        buffers: &mut ClearBuffers<C::Bidder>,
    ) -> Option<First> {
        if !C::Bidder::COMPACT || queries.len() < LARGE_BATCH {
            return None;
        }
        let start = self.presolve(queries, budget);
        let point = market.scan(self, queries, start.log_price, buffers);
        if point.tokens <= budget || market.top_price < MIN_TOP_PRICE {
            return None;
        }
        // As a pass that lands on the low end leaves them: nothing known at the
        // feasible end (the top price, where nobody buys).
        let funded = buffers.set.len();
        for ends in [&mut buffers.hi, &mut buffers.lo] {
            ends.clear();
            ends.resize(funded, 0.0);
        }
        Some(First {
            point,
            slope: start.slope,
        })
    }

    /// Market clearing (SPEC §4): narrows a bracket on the price until the feasible end
    /// is within tolerance of the budget or the bracket is narrower than the tolerance
    /// (relative to the price). The bids at the bracket's ends are left in `buffers`.
    /// `first` is the search's first point when [`Allocator::scan_first`] took it.
    pub(super) fn clear<C: Curve>(
        &self,
        market: &Market<C::Bidder>,
        queries: &[Query<C>],
        budget: f64,
        buffers: &mut ClearBuffers<C::Bidder>,
        first: Option<First>,
    ) -> Cleared {
        let n = market.len();
        let mut bracket = Bracket::new(market.top_price, market.fundable_caps as f64);
        let target = budget * (1.0 - 0.5 * self.tolerance);
        let start = match first {
            Some(First { point, slope }) => {
                // The sample's slope, which sees the jumps as the smooth slope of one
                // point does not, steers the first step.
                if slope < 0.0 {
                    bracket.remember(Point {
                        log_price: point.log_price - 0.05,
                        tokens: point.tokens - 0.05 * slope,
                        ..point
                    });
                }
                point.log_price
            }
            None => {
                fit(&mut buffers.all_current, n);
                self.starting_point(queries, budget, &bracket)
            }
        };
        let mut demand = BatchDemand {
            market,
            buffers,
            compact: first.is_some(),
            all_hi_known: false,
            first: first.map(|first| first.point),
        };
        let search = Search {
            tolerance: self.tolerance,
            max_iterations: self.max_iterations,
            stop: Stop::Close,
        };
        let passes = search.run(&mut demand, &mut bracket, start, budget, target);
        demand.finish();
        Cleared {
            hi: bracket.hi,
            passes,
        }
    }

    /// Where the search starts: for large batches, the presolve's price when it is
    /// inside the bracket; otherwise one e-fold below the top price.
    fn starting_point<C: Curve>(
        &self,
        queries: &[Query<C>],
        budget: f64,
        bracket: &Bracket,
    ) -> f64 {
        let (lo, hi) = (bracket.lo.log_price, bracket.hi.log_price);
        if queries.len() >= LARGE_BATCH {
            let guess = self.presolve(queries, budget).log_price;
            if guess > lo && guess < hi {
                return guess;
            }
        }
        (hi - 1.0).max(0.5 * (lo + hi))
    }

    /// A starting log price for a large batch: just below the clearing price of a
    /// strided sample with a proportional budget.
    fn presolve<C: Curve>(&self, queries: &[Query<C>], budget: f64) -> Presolved {
        let n = queries.len();
        let stride = n / SAMPLE.max(n / SAMPLE_STRIDE);
        let sample = Market::sample_of(self, queries, stride);
        let scale = n as f64 / sample.len() as f64;
        let mut sample_bracket = Bracket::new(sample.top_price, f64::INFINITY);
        let (lo, hi) = (sample_bracket.lo.log_price, sample_bracket.hi.log_price);
        let sample_budget = budget / scale;
        let target = sample_budget * (1.0 - 0.5 * self.tolerance);
        // The sample's demand is a few per cent off the batch's (its standard error
        // below), so its price need not be found closer than 1 %.
        let search = Search {
            tolerance: self.tolerance.max(1e-2),
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
        // Start below the sample's price by its own uncertainty, so that the first
        // full pass lands on the infeasible side — the bracket then has a low end, and
        // the passes after it visit only the queries funded there — yet near the root.
        // The sample's total demand has a standard error of √(m·Var t) over m bids t;
        // demand's secant over 5 % of price turns that into log price: 2.5 standard
        // errors, but at least 2 % (measured at 10 000 queries: a full pass saved)
        // and at most 50 %.
        let price = sample_bracket.hi.log_price;
        let here = demand.at(price, false);
        let (sum, sum_sq) = demand
            .scratch
            .iter()
            .fold((0.0, 0.0), |(s, q), &t| (s + t, q + t * t));
        let m = demand.scratch.len() as f64;
        let error = (sum_sq - sum * sum / m).max(0.0).sqrt();
        let below = demand.at(price - 0.05, false);
        let slope = (below.tokens - here.tokens) / 0.05;
        let margin = if slope > 0.0 {
            (2.5 * error / slope).clamp(0.02, 0.5)
        } else {
            0.02
        };
        Presolved {
            log_price: price - margin,
            slope: -slope * scale,
        }
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

    /// `n` queries of varied thresholds, widths, ceilings and caps (a few that cannot
    /// use their cap), from a fixed linear congruential stream.
    fn varied(n: usize) -> Vec<Query> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut unit = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let threshold = 50.0 + 850.0 * unit();
                let cap = if unit() < 0.05 { 40 } else { 8192 };
                query(threshold, 60.0 + 340.0 * unit(), 0.1 + 0.9 * unit(), cap)
            })
            .collect()
    }

    #[test]
    fn a_scan_is_a_prepared_pass_and_its_compaction() {
        let allocator = Allocator::default();
        let qs = varied(3 * chunks::CHUNK + 17);
        let prepared = Market::prepare(&allocator, &qs);
        for log_price in [(1e-4f64).ln(), (5e-4f64).ln(), (1e-3f64).ln()] {
            let mut tokens = vec![0.0; qs.len()];
            let pass = prepared.pass(&prepared.bidders, |b| b, log_price, &mut tokens, true);
            let mut scanned = Market::empty(BidRule::Rational);
            let mut buffers = ClearBuffers::default();
            let point = scanned.scan(&allocator, &qs, log_price, &mut buffers);
            let (set, bids) = (&buffers.set, &buffers.current);
            // The same sums, chunk by chunk, slope included.
            assert_eq!(
                (point.tokens, point.funded, point.slope),
                (pass.tokens, pass.funded, pass.slope)
            );
            assert_eq!(
                (scanned.top_price, scanned.top_query, scanned.fundable_caps),
                (
                    prepared.top_price,
                    prepared.top_query,
                    prepared.fundable_caps
                )
            );
            assert_eq!(scanned.len(), qs.len());
            assert!(scanned.bidders.is_empty());
            // Exactly the queries bidding there, in order, with their bids and bidders.
            let funded: Vec<u32> = (0..qs.len() as u32)
                .filter(|&i| tokens[i as usize] > 0.0)
                .collect();
            assert!(!funded.is_empty() && funded.len() < qs.len());
            assert_eq!(set.index, funded);
            for (k, &i) in set.index.iter().enumerate() {
                let i = i as usize;
                assert_eq!(bids[k], tokens[i]);
                assert_eq!(set.caps[k], prepared.caps[i]);
                assert_eq!(set.bidders[k], prepared.bidders[i]);
            }
        }
    }

    #[test]
    fn a_scan_that_lands_feasible_falls_back_to_the_prepared_market() {
        // Every 16th query is worth a thousand times the others: the strided presolve
        // sample holds only those, so its price is far too high for the batch.
        let allocator = Allocator::default();
        let n = 2 * LARGE_BATCH;
        let qs: Vec<Query> = varied(n)
            .into_iter()
            .enumerate()
            .map(|(i, q)| {
                let weight = if i % (n / SAMPLE) == 0 { 1000.0 } else { 1.0 };
                q.with_weight(weight).unwrap()
            })
            .collect();
        let budget = 300 * n as u64;
        let mut market = Market::empty(BidRule::Rational);
        let mut buffers = ClearBuffers::default();
        let first = allocator.scan_first(&mut market, &qs, budget as f64, &mut buffers);
        assert!(first.is_none(), "the scan should land feasible here");
        // The allocation goes on from the prepared market, and clears.
        let a = allocator.allocate(&qs, budget).unwrap();
        assert!(a.total_tokens() <= budget);
        assert!(a.total_tokens() as f64 >= 0.99 * budget as f64);
        let price = a.price().unwrap();
        let prepared = Market::prepare(&allocator, &qs);
        let mut tokens = vec![0.0; n];
        assert!(prepared.demand(price.ln(), &mut tokens).tokens <= budget as f64);
        assert!(prepared.demand((price * 0.99).ln(), &mut tokens).tokens > budget as f64);
    }

    #[test]
    fn a_pass_over_a_subset_leaves_the_others_alone() {
        let allocator = Allocator::default();
        let qs = [query(100.0, 50.0, 0.9, 1000), query(100.0, 50.0, 0.9, 1000)];
        let market = Market::prepare(&allocator, &qs);
        let mut all = vec![0.0; 2];
        let full = market.demand(f64::NEG_INFINITY, &mut all);
        assert_eq!((full.tokens, full.funded), (2000.0, 2));
        // A subset of query 1 alone: its bid is written at its position, 0.
        let mut set = Subset::default();
        set.push(&market, 1);
        assert_eq!(set.index, [1]);
        let mut some = vec![-1.0; 1];
        let one = market.demand_of(&set, (1e-4f64).ln(), &mut some, true);
        assert_eq!(one.funded, 1);
        assert!(some[0] > 100.0 && one.slope < 0.0);
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
