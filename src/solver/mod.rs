//! The shadow-price allocator (SPEC §3–4): one global price per token, found by a
//! bracketed search, at which every query buys the tokens worth their price and the
//! queries that cannot pay their way are abandoned.
//!
//! # Algorithm
//!
//! 1. **Prepare** (one pass, `market`; bids in `bid`): fold each query's weight and
//!    cap into the constants of its best response, so that a bid at a price costs at
//!    most one W₋₁ evaluation and the rational-abandonment test costs a few flops. (A
//!    [`Query`] is valid once built, so nothing is checked here.) Every step below is
//!    generic over the [`Curve`]: a curve without a closed form brings
//!    its own bidder (a root search between the turning points of a mixture's
//!    marginal, the concave hull of a point curve).
//! 2. **Clear** the market: total demand `D(λ)` is non-increasing in λ with jumps where
//!    queries are abandoned. A bracket `D(lo) > B ≥ D(hi)` on `ln λ` is narrowed by the
//!    secant through the two latest points — which sees the jumps, where Newton on the
//!    smooth part would not — with Illinois false position and bisection as safeguards,
//!    so it always terminates (`search`, shared with the online re-clear); until a low
//!    end is known the search steps down by doubling strides. Large batches start from
//!    a solve on a strided sample (512 queries, one in 1 000 above 512 000), a margin
//!    of 2.5 of its standard errors below the sample's price, with the sample's secant
//!    slope steering the first step; once a low end is known only the queries funded
//!    there are visited, compacted side by side (`subset`); everything after clearing
//!    works on them alone. For shifted surges that first pass is fused with step 1
//!    (`Market::scan`): the batch is prepared and bid at the start in one sweep that
//!    keeps only the queries funded there, so the bidders of the rest are never
//!    stored. A table bound on each query's abandonment price (`bid`) spares a bid
//!    above it the W₋₁. Sums over the
//!    batch are taken in fixed chunks and added in order (`chunks`), so the optional
//!    `parallel` feature splits them across threads without changing a bit. When all queries
//!    share one shape (the paper's model-intrinsic α, β) W₋₁ is evaluated once per pass
//!    instead of once per query.
//! 3. **Spend the leftover** (SPEC §4.2, `leftover`): the feasible end of the bracket leaves part of
//!    the budget unspent, because `D` jumps. The queries that become solvent together
//!    inside the bracket are funded, most solvent first, while they fit; the price is
//!    re-cleared among the funded queries alone (their marginal utility falls to the
//!    *marginal price*); and a small search adds queries one move at a time — one takes
//!    what is left, or joins (in small batches also replaces the least solvent) with
//!    the price re-cleared among all — keeping a move only if the batch's utility rises.
//! 4. **Round** (`rounding`) to whole tokens (multiples of the granularity), hand the rounding
//!    remainder to the queries that lost the most to rounding, and check `Σ ≤ B` in
//!    exact integer arithmetic.
//!
//! The price solution is within one query's utility of the optimum of the non-concave
//! problem (Shapley–Folkman; Udell & Boyd 2016, for one linear constraint).

use crate::error::{self, Result, Subject};
use crate::model::Curve;

mod allocation;
mod bid;
mod builder;
mod chunks;
mod leftover;
mod market;
mod query;
mod rounding;
mod scratch;
mod search;
mod subset;
mod workspace;

pub use allocation::{Allocation, Decision, QueryAllocation};
pub(crate) use bid::{Bid, BidRule, Bidder, Bidding, Scanned};
pub use builder::AllocatorBuilder;
pub(crate) use query::check_weight;
pub use query::Query;
pub(crate) use search::{clear_weighted, WeightedSample};
use workspace::Utilities;
pub use workspace::Workspace;

use leftover::{EdgeEffort, Ends, Leftover, Spent};
use market::Market;
use scratch::Scratch;
use search::LOG_PRICE_FLOOR;
use subset::{Bidders, Members};

/// The grants of one allocation before they become an [`Allocation`], by position
/// among the queries they cover (see [`Bidders`]).
struct Outcome {
    grants: Vec<u64>,
    /// Queries funded by the leftover step although insolvent at the price.
    edges: Vec<usize>,
    /// Queries solvent at the price that the leftover step dropped for an edge query.
    displaced: Vec<usize>,
    budget: Option<u64>,
    /// The clearing price and the marginal price.
    prices: (f64, f64),
    passes: usize,
}

/// Anything that splits a token budget among queries: the CLEAR [`Allocator`] and the
/// baselines it is compared with, on shifted-surge queries (so that policies stay
/// object-safe; [`Allocator::allocate`] and
/// [`ExactOptimum::allocate`](crate::exact::ExactOptimum::allocate) take any
/// [`Curve`]).
pub trait AllocationPolicy {
    /// A short name for tables and plots.
    fn name(&self) -> &str;

    /// Splits `budget` tokens among `queries`.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`](crate::Error::InvalidQuery) for a query the method
    /// cannot price; [`Error::InvalidOption`](crate::Error::InvalidOption) when the
    /// method cannot handle this batch and budget with its options (e.g. the exact
    /// optimum's table would be too large).
    fn allocate(&self, queries: &[Query], budget: u64) -> Result<Allocation>;
}

/// The CLEAR allocator: splits a token budget by a market-clearing shadow price.
///
/// Build it once with [`Allocator::builder`] (or use [`Allocator::default`]) and call
/// [`Allocator::allocate`] at every scheduling step; it holds no state between calls.
///
/// ```
/// use clear_alloc::{Allocator, Query, ShiftedSurge};
///
/// let easy = ShiftedSurge::new(151.0, 101.0, 0.95)?;
/// let hard = ShiftedSurge::new(304.0, 280.0, 0.40)?;
/// let queries: Vec<Query> = (0..10)
///     .map(|i| Query::new(if i % 2 == 0 { easy } else { hard }))
///     .collect();
///
/// let allocation = Allocator::default().allocate(&queries, 3_000)?;
/// assert!(allocation.total_tokens() <= 3_000);
/// // Scarce budget: the hard queries are abandoned, the easy ones funded.
/// assert_eq!(allocation.abandoned().collect::<Vec<_>>(), [1, 3, 5, 7, 9]);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Allocator {
    default_cap: u64,
    granularity: u64,
    tolerance: f64,
    max_iterations: usize,
    rule: BidRule,
}

impl Default for Allocator {
    fn default() -> Self {
        AllocatorBuilder::default()
            .build()
            .expect("the default options are valid")
    }
}

impl Allocator {
    /// The cap for queries without one of their own, 32 768 tokens, unless
    /// [`AllocatorBuilder::default_cap`] says otherwise; the online allocator and the
    /// exact optimum use it too. Every query needs a finite cap — without one its
    /// demand grows without bound as the price falls to 0 (SPEC §4) — and the right
    /// one is the model's maximum generation length; 2¹⁵ is a common such limit for
    /// reasoning models, and generous enough that a default-capped query is rarely
    /// capped at the prices a scarce budget sets.
    pub const DEFAULT_CAP: u64 = 32_768;

    /// A builder with the default options.
    pub fn builder() -> AllocatorBuilder {
        AllocatorBuilder::default()
    }

    /// Cap for queries without one of their own.
    pub fn default_cap(&self) -> u64 {
        self.default_cap
    }

    /// Allocations are multiples of this many tokens.
    pub fn granularity(&self) -> u64 {
        self.granularity
    }

    /// A query's effective cap: its own or the default, rounded down to the
    /// granularity. (For methods compared with this one, which must see the same
    /// caps; not part of the stable API.)
    #[doc(hidden)]
    pub fn cap_of<C: Curve>(&self, query: &Query<C>) -> u64 {
        self.round_down_whole(query.cap().unwrap_or(self.default_cap))
    }

    /// Splits `budget` tokens among `queries` at the market-clearing shadow price.
    ///
    /// Guarantees, whatever the input: `Σ tokens ≤ budget`, every grant is at most its
    /// cap and a multiple of the granularity, and nothing panics. An empty batch gives
    /// an empty allocation; a zero budget abandons every query; a budget that covers
    /// every cap gives every query its cap (except those whose cap cannot reach their
    /// threshold) at price 0.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`](crate::Error::InvalidQuery) naming a query and its weight when no query in the batch
    /// can pay more than 1e-280 per token (scale the weights up; allocations do not
    /// depend on their scale). Every other input is valid: a [`Query`] is checked
    /// when it is built.
    pub fn allocate<C: Curve>(&self, queries: &[Query<C>], budget: u64) -> Result<Allocation> {
        let mut workspace = Workspace::one_shot();
        self.allocate_with(&mut workspace, queries, budget)?;
        Ok(workspace.take_allocation())
    }

    /// [`Allocator::allocate`] in the memory of a [`Workspace`]: the allocation is
    /// built in the workspace and lent back (clone it to keep it past the next call).
    /// Every buffer as long as the batch or its funded set — the prepared queries,
    /// the bids at the price bracket's ends, the leftover step's and rounding's
    /// vectors, the result — is the workspace's, so a caller that allocates at every
    /// scheduling step with one workspace touches no fresh memory of that size once
    /// the workspace has grown to its batches (what is left is a few vectors as long
    /// as the queries newly solvent inside the final price bracket, a small share).
    /// The result is the same as [`Allocator::allocate`]'s, bit for bit.
    ///
    /// ```
    /// use clear_alloc::{Allocator, Query, ShiftedSurge, Workspace};
    ///
    /// let allocator = Allocator::default();
    /// let mut workspace = Workspace::new();
    /// let queries = vec![Query::new(ShiftedSurge::new(151.0, 101.0, 0.95)?); 10];
    /// let allocation = allocator.allocate_with(&mut workspace, &queries, 3_000)?;
    /// assert!(allocation.total_tokens() <= 3_000);
    /// # Ok::<(), clear_alloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Allocator::allocate`].
    pub fn allocate_with<'w, C: Curve>(
        &self,
        workspace: &'w mut Workspace<C>,
        queries: &[Query<C>],
        budget: u64,
    ) -> Result<&'w Allocation> {
        let Workspace {
            market,
            clearing,
            utilities,
            scratch,
            allocation,
        } = workspace;
        let first = self.scan_first(market, queries, budget as f64, clearing);
        if first.is_none() {
            market.refill(self, queries);
        }
        let market = &*market;
        let flat = |grants, price, passes| Outcome {
            grants,
            edges: Vec::new(),
            displaced: Vec::new(),
            budget: Some(budget),
            prices: (price, price),
            passes,
        };
        if market.fundable_caps <= budget as u128 {
            // Not scarce: price 0, every query that can use its cap gets it.
            let tokens = clearing.one_pass(market.len());
            market.demand(f64::NEG_INFINITY, tokens);
            let grants = self.round(market, tokens, Some(budget), scratch);
            let outcome = flat(grants, 0.0, 1);
            self.finish(allocation, queries, market, (utilities, scratch), outcome);
            return Ok(allocation);
        }
        market.check_priceable(queries)?;
        let cleared = self.clear(market, queries, budget as f64, clearing, first);
        if market.len() <= EdgeEffort::SMALL_BATCH {
            // A small batch's leftover step considers every query.
            clearing.widen(market);
        }
        let members = Members {
            market,
            set: &clearing.set,
        };
        if cleared.hi.log_price <= LOG_PRICE_FLOOR + 1.0 {
            // Demand at the lowest representable price fits: more tokens would add less
            // utility than an f64 can hold, so the budget is ample in all but name.
            let grants = self.round(&members, &clearing.hi, Some(budget), scratch);
            let outcome = flat(grants, 0.0, cleared.passes);
            self.finish(allocation, queries, &members, (utilities, scratch), outcome);
            return Ok(allocation);
        }
        let leftover = Leftover {
            allocator: self,
            queries,
            market: members,
            budget,
            start_log_price: cleared.hi.log_price,
            effort: EdgeEffort::for_batch(market.len()),
            scratch,
        };
        let ends = Ends {
            hi: cleared.hi,
            hi_tokens: &clearing.hi,
            lo_tokens: (!clearing.lo.is_empty()).then_some(&clearing.lo[..]),
        };
        let Spent { plan, passes } = leftover.spend(&ends);
        scratch.positions.give(plan.funded);
        let outcome = Outcome {
            grants: plan.grants,
            edges: plan.edges,
            displaced: plan.displaced,
            budget: Some(budget),
            prices: (cleared.hi.price(), plan.marginal_price),
            passes: cleared.passes + passes,
        };
        self.finish(allocation, queries, &members, (utilities, scratch), outcome);
        Ok(allocation)
    }

    /// Allocates at a price given by the caller (utility per token) instead of a
    /// budget: every query takes its best response, independently of the others.
    /// An operator for whom "a correct answer is worth 2 000 tokens" passes
    /// `price = 1.0 / 2000.0`.
    ///
    /// ```
    /// # use clear_alloc::{Allocator, Query, ShiftedSurge};
    /// let queries = [Query::new(ShiftedSurge::new(151.0, 101.0, 0.95)?)];
    /// let allocation = Allocator::default().allocate_at_price(&queries, 1.0 / 2000.0)?;
    /// assert!(allocation.queries()[0].tokens > 151);
    /// # Ok::<(), clear_alloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) when the price is NaN, infinite or negative;
    /// [`Error::InvalidQuery`](crate::Error::InvalidQuery) as for [`Allocator::allocate`].
    pub fn allocate_at_price<C: Curve>(
        &self,
        queries: &[Query<C>],
        price: f64,
    ) -> Result<Allocation> {
        error::non_negative(Subject::Parameter, "price", price)?;
        let market = Market::prepare(self, queries);
        let mut tokens = vec![0.0; market.len()];
        market.demand(price.ln(), &mut tokens);
        let scratch = Scratch::one_shot();
        let grants = self.round(&market, &tokens, None, &scratch);
        let outcome = Outcome {
            grants,
            edges: Vec::new(),
            displaced: Vec::new(),
            budget: None,
            prices: (price, price),
            passes: 1,
        };
        let mut allocation = Allocation::empty();
        let memory = (&mut Utilities::default(), &scratch);
        self.finish(&mut allocation, queries, &market, memory, outcome);
        Ok(allocation)
    }
}

impl AllocationPolicy for Allocator {
    fn name(&self) -> &str {
        "CLEAR"
    }

    fn allocate(&self, queries: &[Query], budget: u64) -> Result<Allocation> {
        Allocator::allocate(self, queries, budget)
    }
}

impl Allocator {
    /// Per-query results with decisions and utilities, written to `out`: every query
    /// abandoned, then the granted ones (`outcome` by position in `members`) filled
    /// in, their utilities computed (on several threads for many with the `parallel`
    /// feature) and summed in query order. The grants go back to `scratch`.
    fn finish<C: Curve>(
        &self,
        out: &mut Allocation,
        queries: &[Query<C>],
        members: &(impl Bidders<C::Bidder> + Sync),
        (utilities, scratch): (&mut Utilities<C>, &Scratch),
        outcome: Outcome,
    ) {
        let Outcome {
            grants,
            edges,
            displaced,
            budget,
            prices,
            passes,
        } = outcome;
        utilities.compute(queries, members, &grants);
        let utilities = &utilities.values;
        // Each stretch of the result is written whole (once: a stretch new to the
        // vector is abandoned already), abandoned but for the members granted there:
        // members are in query order, so a stretch's members are a run of positions.
        let (results, stale) = out.resize(queries.len());
        chunks::for_each_mut(results, |offset, part| {
            let end = offset + part.len();
            part[..stale.clamp(offset, end) - offset].fill(Allocation::ABANDONED);
            let mut k = members.first_from(offset);
            while k < grants.len() && members.query(k) < end {
                let tokens = grants[k];
                if tokens > 0 {
                    part[members.query(k) - offset] = QueryAllocation {
                        tokens,
                        utility: utilities[k],
                        decision: if edges.contains(&k) {
                            Decision::Edge
                        } else if tokens == members.cap(k) {
                            Decision::Capped
                        } else {
                            Decision::Funded
                        },
                    };
                }
                k += 1;
            }
        });
        // Totals in member order, which is query order.
        let (mut total_tokens, mut total_utility) = (0u128, 0.0f64);
        for (&tokens, &utility) in grants.iter().zip(utilities.iter()) {
            if tokens > 0 {
                total_tokens += tokens as u128;
                total_utility += utility;
            }
        }
        // Displaced queries hold no tokens unless a later move funded them again.
        for &k in &displaced {
            let result = &mut out.queries[members.query(k)];
            if result.tokens == 0 {
                result.decision = Decision::Displaced;
            }
        }
        out.seal(
            (Some(prices.0), Some(prices.1)),
            budget,
            passes,
            (total_tokens, total_utility),
        );
        scratch.grants.give(grants);
    }
}

/// Writes `values[k]` to `out[indices[k]]`.
pub(super) fn scatter(out: &mut [f64], indices: &[usize], values: &[f64]) {
    for (&i, &v) in indices.iter().zip(values) {
        out[i] = v;
    }
}

pub(super) fn utility_of<C: Curve>(query: &Query<C>, tokens: u64) -> f64 {
    weighted_utility(query.curve(), query.weight(), tokens)
}

/// `weight · U(tokens)`, exactly 0 at 0 tokens.
pub(super) fn weighted_utility<C: Curve>(curve: &C, weight: f64, tokens: u64) -> f64 {
    if tokens == 0 {
        0.0
    } else {
        weight * curve.utility(tokens as f64)
    }
}

#[cfg(test)]
pub(super) fn total_utility_of<C: Curve>(queries: &[Query<C>], grants: &[u64]) -> f64 {
    queries
        .iter()
        .zip(grants)
        .map(|(q, &t)| utility_of(q, t))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShiftedSurge;

    fn queries(caps: &[u64]) -> Vec<Query> {
        let curve = ShiftedSurge::new(100.0, 50.0, 0.9).unwrap();
        caps.iter()
            .map(|&c| Query::new(curve).with_cap(c))
            .collect()
    }

    #[test]
    fn finish_names_each_decision() {
        let allocator = Allocator::default();
        let qs = queries(&[500, 500, 500, 500]);
        let market = Market::prepare(&allocator, &qs);
        let outcome = Outcome {
            grants: vec![0, 300, 500, 200],
            edges: vec![3],
            displaced: vec![0],
            budget: Some(1000),
            prices: (2e-3, 1e-3),
            passes: 7,
        };
        let mut a = Allocation::empty();
        let memory = (&mut Utilities::default(), &Scratch::new());
        allocator.finish(&mut a, &qs, &market, memory, outcome);
        let decisions: Vec<Decision> = a.queries().iter().map(|q| q.decision).collect();
        assert_eq!(
            decisions,
            [
                Decision::Displaced,
                Decision::Funded,
                Decision::Capped,
                Decision::Edge
            ]
        );
        assert_eq!((a.price(), a.marginal_price()), (Some(2e-3), Some(1e-3)));
        assert_eq!((a.total_tokens(), a.leftover(), a.passes()), (1000, 0, 7));
        assert_eq!(a.queries()[1].utility, qs[1].utility(300.0));
    }

    #[test]
    fn a_budget_over_every_cap_is_one_pass_at_price_zero() {
        let qs = queries(&[500, 700, 50]);
        let a = Allocator::default().allocate(&qs, 10_000).unwrap();
        // The cap of 50 cannot reach the threshold of 100: it buys nothing.
        assert_eq!(a.tokens().collect::<Vec<_>>(), [500, 700, 0]);
        assert_eq!((a.price(), a.passes()), (Some(0.0), 1));
        assert_eq!(a.queries()[2].decision, Decision::Abandoned);
    }

    #[test]
    fn price_mode_checks_the_price_and_grants_best_responses() {
        let qs = queries(&[4000]);
        let allocator = Allocator::default();
        for bad in [f64::NAN, -1.0, f64::INFINITY] {
            let err = allocator.allocate_at_price(&qs, bad).unwrap_err();
            assert!(err.to_string().starts_with("price = "), "{err}");
        }
        let a = allocator.allocate_at_price(&qs, 1e-3).unwrap();
        let best = qs[0].curve().best_response(1e-3, 4000.0).unwrap();
        assert_eq!(a.queries()[0].tokens, best as u64);
        assert_eq!(a.budget(), None);
    }
}
