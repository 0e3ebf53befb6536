//! The shadow-price allocator (SPEC §3–4): one global price per token, found by a
//! bracketed search, at which every query buys the tokens worth their price and the
//! queries that cannot pay their way are abandoned.
//!
//! # Algorithm
//!
//! 1. **Prepare** (one pass): validate each query and fold its weight and cap into the
//!    constants of its best response, so that a bid at a price costs at most one W₋₁
//!    evaluation and the rational-abandonment test costs a few flops.
//! 2. **Clear** the market: total demand `D(λ)` is non-increasing in λ with jumps where
//!    queries are abandoned. A bracket `D(lo) > B ≥ D(hi)` on `ln λ` is narrowed by the
//!    secant through the two latest points — which sees the jumps, where Newton on the
//!    smooth part would not — with Illinois false position and bisection as safeguards,
//!    so it always terminates; until a low end is known the search steps down by
//!    doubling strides. Large batches start from a solve on a strided sample, and once
//!    a low end is known only the queries funded there are visited. When all queries
//!    share one shape (the paper's model-intrinsic α, β) W₋₁ is evaluated once per pass
//!    instead of once per query.
//! 3. **Spend the leftover** (SPEC §4.2): the feasible end of the bracket leaves part of
//!    the budget unspent, because `D` jumps. The queries that become solvent together
//!    inside the bracket are funded, most solvent first, while they fit; the price is
//!    re-cleared among the funded queries alone (their marginal utility falls to the
//!    *marginal price*); and a small search adds queries one move at a time — one takes
//!    what is left, or joins (in small batches also replaces the least solvent) with
//!    the price re-cleared among all — keeping a move only if the batch's utility rises.
//! 4. **Round** to whole tokens (multiples of the granularity), hand the rounding
//!    remainder to the queries that lost the most to rounding, and check `Σ ≤ B` in
//!    exact integer arithmetic.
//!
//! The price solution is within one query's utility of the optimum of the non-concave
//! problem (Shapley–Folkman; Udell & Boyd 2016, for one linear constraint).

use crate::error::{Error, Result};
use crate::model::{BidRule, ShiftedSurge};

mod market;
use market::Market;

/// A candidate allocation during the leftover step.
#[derive(Clone)]
struct Plan {
    grants: Vec<u64>,
    marginal_price: f64,
    funded: Vec<usize>,
    /// Queries added by the leftover step.
    edges: Vec<usize>,
    /// Queries solvent at the price that the leftover step dropped for an edge query.
    displaced: Vec<usize>,
}

/// How hard the leftover step searches. In a small batch one query is a large share
/// of the utility and a search is cheap, so it gets the full search; in a large one
/// an edge query is worth little and every try costs a pass, so one quick round.
#[derive(Debug, Clone, Copy)]
struct EdgeEffort {
    /// Moves applied one after another.
    rounds: usize,
    /// First moves each followed to the end (near-ties between them are common when
    /// the budget covers only a few queries).
    branches: usize,
    /// Whether a move may also drop the least solvent funded query.
    swaps: bool,
    /// Up to this many candidates, every one is tried.
    exhaustive: usize,
    /// Candidates tried per ranking otherwise.
    tries: usize,
    /// Whether candidates are also ranked by surplus at the marginal price, besides
    /// solvency.
    both_rankings: bool,
}

impl EdgeEffort {
    /// Batches up to this size get the full search.
    const SMALL_BATCH: usize = 64;

    fn for_batch(n: usize) -> Self {
        if n <= Self::SMALL_BATCH {
            EdgeEffort {
                rounds: 8,
                branches: 6,
                swaps: true,
                exhaustive: 16,
                tries: 3,
                both_rankings: true,
            }
        } else {
            EdgeEffort {
                rounds: 1,
                branches: 1,
                swaps: false,
                exhaustive: 0,
                tries: 3,
                both_rankings: false,
            }
        }
    }
}

/// One query to allocate: its curve and, optionally, a cap, a weight and an id.
///
/// ```
/// use clear_alloc::{Query, ShiftedSurge};
///
/// let query = Query::new(ShiftedSurge::new(250.0, 200.0, 0.9)?)
///     .with_cap(4096)
///     .with_weight(2.0)
///     .with_id("q1");
/// assert_eq!(query.cap, Some(4096));
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The query's utility curve.
    pub curve: ShiftedSurge,
    /// Most tokens this query may get; `None` uses the allocator's default cap.
    pub cap: Option<u64>,
    /// Priority: the objective counts `weight · U(b)`. Must be finite and ≥ 0.
    pub weight: f64,
    /// The caller's name for the query, echoed in errors.
    pub id: Option<String>,
}

impl Query {
    /// A query with no cap of its own, weight 1 and no id.
    pub fn new(curve: ShiftedSurge) -> Self {
        Query {
            curve,
            cap: None,
            weight: 1.0,
            id: None,
        }
    }

    /// Sets the query's own cap in tokens.
    pub fn with_cap(mut self, cap: u64) -> Self {
        self.cap = Some(cap);
        self
    }

    /// Sets the weight (checked when the query is allocated).
    pub fn with_weight(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the id used in errors and reports.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Checks what the curve's constructor cannot: the weight must be finite and ≥ 0,
    /// and the weighted ceiling and peak marginal must be representable. `index` is the
    /// query's position in its batch, for the error. Every allocation method calls this.
    ///
    /// ```
    /// # use clear_alloc::{Error, Query, ShiftedSurge};
    /// let query = Query::new(ShiftedSurge::new(100.0, 50.0, 0.9)?).with_weight(-1.0);
    /// assert!(matches!(query.validate(4), Err(Error::InvalidQuery { index: 4, field: "weight", .. })));
    /// # Ok::<(), clear_alloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] naming the weight.
    pub fn validate(&self, index: usize) -> Result<()> {
        let weight = self.weight;
        let reason = if !(weight.is_finite() && weight >= 0.0) {
            "must be finite and >= 0"
        } else if !(weight * self.curve.ceiling()).is_finite()
            || !(weight * (self.curve.ceiling() * self.curve.beta())).is_finite()
        {
            "is too large: weight times ceiling (or ceiling / width) overflows"
        } else {
            return Ok(());
        };
        Err(Error::InvalidQuery {
            index,
            id: self.id.clone(),
            field: "weight",
            value: weight,
            reason,
        })
    }
}

/// What the allocator decided for one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Decision {
    /// No tokens: the query cannot pay its way at the price (rational abandonment).
    Abandoned,
    /// Funded at the point where its marginal utility meets the price.
    Funded,
    /// Funded up to its cap.
    Capped,
    /// Funded although insolvent at the price: a query at the edge of solvency that
    /// the leftover step added (with what was left, or by re-clearing the price)
    /// because the batch's utility is higher with it (SPEC §4.2).
    Edge,
    /// No tokens although solvent at the price: the leftover step found the batch's
    /// utility higher with an edge query in its place.
    Displaced,
}

/// One query's share of an [`Allocation`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QueryAllocation {
    /// Whole tokens granted (a multiple of the granularity; 0 = abandoned).
    pub tokens: u64,
    /// Expected utility `weight · U(tokens)`; with unit weights, the probability of a
    /// correct answer.
    pub utility: f64,
    /// Why the query got what it got.
    pub decision: Decision,
}

/// The result of an allocation: per-query tokens and utilities in input order, plus
/// the price and totals.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Allocation {
    queries: Vec<QueryAllocation>,
    price: Option<f64>,
    marginal_price: Option<f64>,
    budget: Option<u64>,
    total_tokens: u64,
    total_utility: f64,
    passes: usize,
}

impl Allocation {
    /// Builds an allocation from whole-token grants chosen by any method (a baseline,
    /// an exact solver), checking them against the queries' caps and computing the
    /// utilities. Queries without a cap of their own use `default_cap`.
    ///
    /// ```
    /// use clear_alloc::{Allocation, Query, ShiftedSurge};
    ///
    /// let queries = vec![Query::new(ShiftedSurge::new(100.0, 50.0, 0.9)?); 2];
    /// let uniform = Allocation::from_tokens(&queries, vec![300, 300], 8192, Some(600))?;
    /// assert_eq!(uniform.total_tokens(), 600);
    /// # Ok::<(), clear_alloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] when a query's weight is invalid or a grant exceeds its
    /// cap; [`Error::InvalidParameter`] when the lengths differ or the grants exceed
    /// `budget`.
    pub fn from_tokens(
        queries: &[Query],
        tokens: Vec<u64>,
        default_cap: u64,
        budget: Option<u64>,
    ) -> Result<Allocation> {
        if tokens.len() != queries.len() {
            return Err(Error::InvalidParameter {
                field: "tokens",
                value: tokens.len() as f64,
                reason: "must have one entry per query",
            });
        }
        let mut out = Vec::with_capacity(queries.len());
        for (index, (query, &granted)) in queries.iter().zip(&tokens).enumerate() {
            query.validate(index)?;
            let cap = query.cap.unwrap_or(default_cap);
            if granted > cap {
                return Err(Error::InvalidQuery {
                    index,
                    id: query.id.clone(),
                    field: "tokens",
                    value: granted as f64,
                    reason: "exceeds the query's cap",
                });
            }
            let decision = if granted == 0 {
                Decision::Abandoned
            } else if granted == cap {
                Decision::Capped
            } else {
                Decision::Funded
            };
            out.push(QueryAllocation {
                tokens: granted,
                utility: query.weight * query.curve.utility(granted as f64),
                decision,
            });
        }
        let allocation = Allocation::assemble(out, None, None, budget, 0);
        if let Some(budget) = budget {
            if allocation.total_tokens > budget {
                return Err(Error::InvalidParameter {
                    field: "tokens",
                    value: allocation.total_tokens as f64,
                    reason: "the grants exceed the budget",
                });
            }
        }
        Ok(allocation)
    }

    fn assemble(
        queries: Vec<QueryAllocation>,
        price: Option<f64>,
        marginal_price: Option<f64>,
        budget: Option<u64>,
        passes: usize,
    ) -> Allocation {
        // Caps are u64 and each grant is at most its cap, but the sum of many can pass
        // u64::MAX; a budget-mode sum never does (it is ≤ the budget).
        let total: u128 = queries.iter().map(|q| q.tokens as u128).sum();
        let total_utility = queries.iter().map(|q| q.utility).sum();
        Allocation {
            queries,
            price,
            marginal_price,
            budget,
            total_tokens: u64::try_from(total).unwrap_or(u64::MAX),
            total_utility,
            passes,
        }
    }

    /// Per-query results, in input order.
    pub fn queries(&self) -> &[QueryAllocation] {
        &self.queries
    }

    /// Tokens per query, in input order.
    pub fn tokens(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.queries.iter().map(|q| q.tokens)
    }

    /// The shadow price λ* (utility per token): queries whose best surplus at this
    /// price is not positive were abandoned. 0 when the budget is not scarce; `None`
    /// for allocations not made by a price (see [`Allocation::from_tokens`]).
    pub fn price(&self) -> Option<f64> {
        self.price
    }

    /// The marginal utility per token of the funded, uncapped queries after the
    /// leftover step: below [`Allocation::price`] when the leftover was spent on them,
    /// above it when an edge query was added, equal when nothing was left over.
    pub fn marginal_price(&self) -> Option<f64> {
        self.marginal_price
    }

    /// The budget the allocation was made for (`None` in price mode).
    pub fn budget(&self) -> Option<u64> {
        self.budget
    }

    /// Tokens granted in all (saturates at `u64::MAX` in price mode with huge caps).
    pub fn total_tokens(&self) -> u64 {
        self.total_tokens
    }

    /// Budget minus tokens granted (0 in price mode).
    pub fn leftover(&self) -> u64 {
        self.budget
            .map_or(0, |b| b.saturating_sub(self.total_tokens))
    }

    /// The objective `Σ weight · U(tokens)`; with unit weights, the expected number of
    /// correct answers.
    pub fn total_utility(&self) -> f64 {
        self.total_utility
    }

    /// Mean utility per query (0 for an empty batch); with unit weights, the expected
    /// accuracy.
    pub fn mean_utility(&self) -> f64 {
        if self.queries.is_empty() {
            0.0
        } else {
            self.total_utility / self.queries.len() as f64
        }
    }

    /// Indices of the abandoned queries (those granted 0 tokens).
    pub fn abandoned(&self) -> impl Iterator<Item = usize> + '_ {
        self.queries
            .iter()
            .enumerate()
            .filter(|(_, q)| q.tokens == 0)
            .map(|(i, _)| i)
    }

    /// Share of queries abandoned (0 for an empty batch).
    pub fn abandonment_rate(&self) -> f64 {
        if self.queries.is_empty() {
            0.0
        } else {
            self.abandoned().count() as f64 / self.queries.len() as f64
        }
    }

    /// Passes over the batch the solver made (a measure of its cost).
    pub fn passes(&self) -> usize {
        self.passes
    }
}

/// Anything that splits a token budget among queries: the CLEAR [`Allocator`] and the
/// baselines it is compared with.
pub trait AllocationPolicy {
    /// A short name for tables and plots.
    fn name(&self) -> &str;

    /// Splits `budget` tokens among `queries`.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] for a query with an invalid field;
    /// [`Error::InvalidOption`] when the method cannot handle this batch and budget
    /// with its options (e.g. the exact optimum's table would be too large).
    fn allocate(&self, queries: &[Query], budget: u64) -> Result<Allocation>;
}

/// Configures an [`Allocator`]; every option has a default.
///
/// ```
/// use clear_alloc::Allocator;
///
/// let allocator = Allocator::builder().default_cap(8192).granularity(16).build()?;
/// assert_eq!(allocator.granularity(), 16);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AllocatorBuilder {
    default_cap: u64,
    granularity: u64,
    tolerance: f64,
    max_iterations: usize,
    abandonment: bool,
}

impl Default for AllocatorBuilder {
    fn default() -> Self {
        AllocatorBuilder {
            default_cap: Allocator::DEFAULT_CAP,
            granularity: 1,
            tolerance: 1e-3,
            max_iterations: 200,
            abandonment: true,
        }
    }
}

impl AllocatorBuilder {
    /// Cap for queries without one of their own (the model's maximum generation
    /// length); default 32 768.
    pub fn default_cap(mut self, tokens: u64) -> Self {
        self.default_cap = tokens;
        self
    }

    /// Allocations are multiples of this many tokens (≥ 1); default 1.
    pub fn granularity(mut self, tokens: u64) -> Self {
        self.granularity = tokens;
        self
    }

    /// Relative tolerance of the price search (in (0, 1)); default 1e-3. The search
    /// stops once the demand at the feasible end is within this share of the budget,
    /// or the price is bracketed to within this relative width. The leftover step
    /// spends what remains, so a looser tolerance costs nothing but which queries at
    /// the edge of solvency are funded: the surplus they would have added at the
    /// marginal price is at most this share of their utility.
    pub fn tolerance(mut self, relative: f64) -> Self {
        self.tolerance = relative;
        self
    }

    /// Upper bound on the steps of each price search (≥ 1); default 200. It bounds
    /// every search separately — the sample's, the clearing one, and each re-clear of
    /// the leftover step — not the passes of a whole call. Whatever the bound, the
    /// result is feasible.
    pub fn max_iterations(mut self, steps: usize) -> Self {
        self.max_iterations = steps;
        self
    }

    /// Whether queries that cannot pay their way are abandoned (default `true`).
    /// `false` is the paper's "CLEAR without abandonment" ablation: every query buys
    /// up to where its marginal utility meets the price whenever it can, even at a
    /// negative surplus, and is dropped only when the price exceeds its peak marginal
    /// utility. It shows what rational abandonment is worth; do not serve with it.
    pub fn abandonment(mut self, enabled: bool) -> Self {
        self.abandonment = enabled;
        self
    }

    /// Checks the options and builds the allocator.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the option.
    pub fn build(self) -> Result<Allocator> {
        if self.granularity == 0 {
            return Err(Error::InvalidOption {
                option: "granularity",
                value: 0.0,
                reason: "must be >= 1",
            });
        }
        if !(self.tolerance > 0.0 && self.tolerance < 1.0) {
            return Err(Error::InvalidOption {
                option: "tolerance",
                value: self.tolerance,
                reason: "must be in (0, 1)",
            });
        }
        if self.max_iterations == 0 {
            return Err(Error::InvalidOption {
                option: "max_iterations",
                value: 0.0,
                reason: "must be >= 1",
            });
        }
        Ok(Allocator {
            default_cap: self.default_cap,
            granularity: self.granularity,
            tolerance: self.tolerance,
            max_iterations: self.max_iterations,
            rule: if self.abandonment {
                BidRule::Rational
            } else {
                BidRule::KeepAll
            },
        })
    }
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
    /// The default cap, 32 768 tokens.
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
    /// granularity.
    pub fn cap_of(&self, query: &Query) -> u64 {
        self.round_down_whole(query.cap.unwrap_or(self.default_cap))
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
    /// [`Error::InvalidQuery`] naming the query and the field when a weight is NaN,
    /// infinite or negative or so large that weighted utilities overflow (see
    /// [`Query::validate`]), or when no query in the batch can pay more than 1e-280 per
    /// token (scale the weights up; allocations do not depend on their scale).
    pub fn allocate(&self, queries: &[Query], budget: u64) -> Result<Allocation> {
        let market = Market::prepare(self, queries)?;
        if market.fundable_caps <= budget as u128 {
            // Not scarce: price 0, every query that can use its cap gets it.
            let mut tokens = vec![0.0; market.len()];
            market.demand(f64::NEG_INFINITY, &mut tokens);
            let grants = self.round(&market, &tokens, Some(budget));
            return Ok(self.finish(queries, &market, grants, &[], Some(budget), (0.0, 0.0), 1));
        }
        market.check_priceable(queries)?;
        let budget_f = budget as f64;
        let cleared = self.clear(&market, budget_f);
        if cleared.hi.log_price <= market::LOG_PRICE_FLOOR + 1.0 {
            // Demand at the lowest representable price fits: more tokens would add less
            // utility than an f64 can hold, so the budget is ample in all but name.
            let grants = self.round(&market, &cleared.hi_tokens, Some(budget));
            return Ok(self.finish(
                queries,
                &market,
                grants,
                &[],
                Some(budget),
                (0.0, 0.0),
                cleared.passes,
            ));
        }
        let price = cleared.hi.price();
        let mut passes = cleared.passes;
        let (funded, left_out) = self.funded_set(&market, &cleared, budget_f);

        // Spend the leftover (SPEC §4.2): re-clear the price among the funded queries …
        let (marginal, spent, extra) = self.reclear(
            &market,
            &funded,
            budget_f,
            cleared.hi.log_price,
            Some(&cleared.hi_tokens),
        );
        passes += extra;
        let mut tokens = vec![0.0; market.len()];
        scatter(&mut tokens, &funded, &spent);
        let grants = self.round(&market, &tokens, Some(budget));

        // … and try funding more: the most promising queries left out, one at a time,
        // with what is left or with the price re-cleared among all (the no-abandonment
        // ablation keeps its pure rule and only hands out what is left). Keep each move
        // that raises the batch's utility.
        let candidates = if market.len() <= EdgeEffort::SMALL_BATCH {
            (0..market.len())
                .filter(|i| funded.binary_search(i).is_err())
                .collect()
        } else {
            left_out
        };
        let mut plan = Plan {
            grants,
            marginal_price: marginal,
            funded,
            edges: Vec::new(),
            displaced: Vec::new(),
        };
        passes += self.add_edges(
            queries,
            &market,
            &mut plan,
            candidates,
            budget,
            cleared.hi.log_price,
        );
        let mut result = self.finish(
            queries,
            &market,
            plan.grants,
            &plan.edges,
            Some(budget),
            (price, plan.marginal_price),
            passes,
        );
        // Displaced queries hold no tokens, so `finish` marked them abandoned.
        for &k in &plan.displaced {
            if result.queries[k].tokens == 0 {
                result.queries[k].decision = Decision::Displaced;
            }
        }
        Ok(result)
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
    /// [`Error::InvalidParameter`] when the price is NaN, infinite or negative;
    /// [`Error::InvalidQuery`] as for [`Allocator::allocate`].
    pub fn allocate_at_price(&self, queries: &[Query], price: f64) -> Result<Allocation> {
        if !(price.is_finite() && price >= 0.0) {
            return Err(Error::InvalidParameter {
                field: "price",
                value: price,
                reason: "must be finite and >= 0",
            });
        }
        let market = Market::prepare(self, queries)?;
        let mut tokens = vec![0.0; market.len()];
        market.demand(price.ln(), &mut tokens);
        let grants = self.round(&market, &tokens, None);
        Ok(self.finish(queries, &market, grants, &[], None, (price, price), 1))
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
    /// The funded set after clearing: the queries funded at the feasible end of the
    /// bracket, plus — most solvent first, while their bids fit in the budget — those
    /// that become funded only inside the bracket. Several queries can cross into
    /// solvency at one price (identical queries always do), and a price alone cannot
    /// fund some of them and not others. Also returns the ones that did not fit, in no
    /// particular order.
    fn funded_set(
        &self,
        market: &Market,
        cleared: &market::Cleared,
        budget: f64,
    ) -> (Vec<usize>, Vec<usize>) {
        let n = market.len();
        let mut funded: Vec<usize> = (0..n).filter(|&i| cleared.hi_tokens[i] > 0.0).collect();
        let Some(lo) = &cleared.lo_tokens else {
            return (funded, Vec::new());
        };
        // Only bids that fit the room can be funded; most solvent (highest abandonment
        // price) first among those.
        let mut room = budget - cleared.hi.tokens;
        let mut left_out = Vec::new();
        let mut fitting = Vec::new();
        for i in (0..n).filter(|&i| cleared.hi_tokens[i] == 0.0 && lo[i] > 0.0) {
            if lo[i] <= room {
                fitting.push((market.bidders[i].abandonment_price(), i));
            } else {
                left_out.push(i);
            }
        }
        fitting.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        for (_, i) in fitting {
            if lo[i] <= room {
                room -= lo[i];
                funded.push(i);
            } else {
                left_out.push(i);
            }
        }
        funded.sort_unstable();
        (funded, left_out)
    }

    /// The queries to try funding on top of the funded set. All of `candidates` when
    /// there are few (see [`EdgeEffort`]); otherwise the most solvent given the budget
    /// (highest abandonment price with the budget as a cap) and, in small batches, also
    /// those with the largest surplus at `marginal_price` — two rankings, because the
    /// most solvent query may need tokens that only a costly squeeze of the others
    /// could free. Candidates whose utility could not matter are left out.
    fn edge_candidates(
        &self,
        effort: EdgeEffort,
        queries: &[Query],
        market: &Market,
        candidates: &[usize],
        marginal_price: f64,
        budget: f64,
    ) -> Vec<usize> {
        // Funding one query gains at most its utility; below this share of what the
        // budget is worth at the margin, the extra re-clear is not worth its passes.
        let negligible = self.tolerance * marginal_price * budget;
        let useful: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&j| {
                // Cheapest bound first: a query's utility never exceeds weight × ceiling.
                let query = &queries[j];
                query.weight * query.curve.ceiling() > negligible
                    && utility_at(query, market.bidders[j].cap().min(budget)) > negligible
            })
            .collect();
        if useful.len() <= effort.exhaustive.max(effort.tries) {
            return useful;
        }
        let top = |score: &dyn Fn(usize) -> f64| -> Vec<usize> {
            let mut scored: Vec<(f64, usize)> = useful.iter().map(|&j| (score(j), j)).collect();
            scored.select_nth_unstable_by(effort.tries - 1, |a, b| b.0.total_cmp(&a.0));
            scored[..effort.tries].iter().map(|&(_, j)| j).collect()
        };
        let mut picks = top(&|j| market.bidders[j].abandonment_price_within(budget));
        if !effort.both_rankings {
            return picks;
        }
        let surplus = |j: usize| {
            let bidder = &market.bidders[j];
            let grant = bidder
                .bid_by(marginal_price, BidRule::Rational)
                .tokens()
                .min(budget);
            utility_at(&queries[j], grant) - marginal_price * grant
        };
        for j in top(&surplus) {
            if !picks.contains(&j) {
                picks.push(j);
            }
        }
        picks
    }

    /// The leftover step's search (SPEC §4.2). A move tries one of the most promising
    /// candidates on top of the funded set — or, in small batches, in place of its
    /// least solvent member — with the price re-cleared among the new set. The search
    /// follows each of the best first moves greedily for up to [`EdgeEffort::rounds`]
    /// moves and keeps the best plan. Returns the passes.
    fn add_edges(
        &self,
        queries: &[Query],
        market: &Market,
        plan: &mut Plan,
        candidates: Vec<usize>,
        budget: u64,
        start_log_price: f64,
    ) -> usize {
        let effort = EdgeEffort::for_batch(market.len());
        let mut passes = 0;
        let mut first_moves = self.edge_moves(
            effort,
            queries,
            market,
            plan,
            &candidates,
            budget,
            start_log_price,
            &mut passes,
        );
        first_moves.truncate(effort.branches);
        let mut best: Option<(f64, Plan)> = None;
        // In a small batch every query out of the plan is a candidate again, including
        // one a re-clear has squeezed out; a large batch keeps its short list.
        let unfunded = |plan: &Plan| -> Vec<usize> {
            if effort.exhaustive > 0 {
                (0..market.len())
                    .filter(|i| !plan.funded.contains(i))
                    .collect()
            } else {
                candidates
                    .iter()
                    .copied()
                    .filter(|i| !plan.funded.contains(i))
                    .collect()
            }
        };
        for (_, mut branch) in first_moves {
            for _ in 1..effort.rounds {
                let left = unfunded(&branch);
                let moves = self.edge_moves(
                    effort,
                    queries,
                    market,
                    &branch,
                    &left,
                    budget,
                    start_log_price,
                    &mut passes,
                );
                let Some((_, next)) = moves.into_iter().next() else {
                    break;
                };
                branch = next;
            }
            let value = total_utility_of(queries, &branch.grants);
            if value > best.as_ref().map_or(f64::NEG_INFINITY, |b| b.0) {
                best = Some((value, branch));
            }
        }
        if let Some((_, better)) = best {
            *plan = better;
        }
        passes
    }

    /// The improving moves from `plan`, best first, each applied to a copy of it.
    #[allow(clippy::too_many_arguments)]
    fn edge_moves(
        &self,
        effort: EdgeEffort,
        queries: &[Query],
        market: &Market,
        plan: &Plan,
        candidates: &[usize],
        budget: u64,
        start_log_price: f64,
        passes: &mut usize,
    ) -> Vec<(f64, Plan)> {
        let budget_f = budget as f64;
        let weakest = plan
            .funded
            .iter()
            .filter(|_| effort.swaps)
            .map(|&i| (market.bidders[i].abandonment_price(), i))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, i)| i);
        let mut moves = Vec::new();
        let tries = self.edge_candidates(
            effort,
            queries,
            market,
            candidates,
            plan.marginal_price,
            budget_f,
        );
        let used: u128 = plan.grants.iter().map(|&t| t as u128).sum();
        let rest = u64::try_from((budget as u128).saturating_sub(used)).unwrap_or(u64::MAX);
        // Re-clearing with a new query is the rational rule's move; the no-abandonment
        // ablation only hands out what is left.
        let reclear_moves = self.rule == BidRule::Rational;
        for j in tries {
            // The free move: j takes what the budget has left, nobody else changes.
            let leftover_grant = self
                .round_down_whole(rest)
                .min(market.caps[j])
                .saturating_add(plan.grants[j])
                .min(market.caps[j]);
            let gain =
                utility_of(&queries[j], leftover_grant) - utility_of(&queries[j], plan.grants[j]);
            if gain > 0.0 && leftover_grant as f64 > market.bidders[j].threshold() {
                let mut next = plan.clone();
                next.grants[j] = leftover_grant;
                next.funded.push(j);
                next.edges.push(j);
                next.displaced.retain(|&i| i != j);
                moves.push((gain, next));
            }
            if !reclear_moves {
                continue;
            }
            for dropped in [None].into_iter().chain(weakest.map(Some)) {
                let mut set: Vec<usize> = plan
                    .funded
                    .iter()
                    .copied()
                    .filter(|&i| Some(i) != dropped)
                    .collect();
                set.push(j);
                let (price, spent, extra) =
                    self.reclear(market, &set, budget_f, start_log_price, None);
                *passes += extra;
                let mut tokens = vec![0.0; market.len()];
                scatter(&mut tokens, &set, &spent);
                let mut grants = self.round(market, &tokens, Some(budget));
                self.give_rest(market, &mut grants, j, budget);
                let gain: f64 = set
                    .iter()
                    .chain(&dropped)
                    .map(|&i| {
                        utility_of(&queries[i], grants[i]) - utility_of(&queries[i], plan.grants[i])
                    })
                    .sum();
                if gain > 0.0 {
                    let mut next = Plan {
                        grants,
                        marginal_price: price,
                        funded: Vec::with_capacity(set.len()),
                        edges: plan.edges.clone(),
                        displaced: plan.displaced.clone(),
                    };
                    next.edges.push(j);
                    next.displaced.retain(|&i| i != j);
                    // The dropped query, and any the re-clear squeezed to nothing, leave
                    // the plan (and may come back as candidates).
                    for &i in set.iter().chain(&dropped) {
                        if next.grants[i] > 0 {
                            next.funded.push(i);
                        } else if next.edges.contains(&i) {
                            next.edges.retain(|&e| e != i);
                        } else if !next.displaced.contains(&i) {
                            next.displaced.push(i);
                        }
                    }
                    moves.push((gain, next));
                }
            }
        }
        moves.sort_by(|a, b| b.0.total_cmp(&a.0));
        moves
    }

    /// Hands what the budget has left to query `j`, up to its cap: the re-clear cannot
    /// place tokens below an edge query's inflection point, where its utility is convex
    /// and the best use of a small remainder is all of it.
    fn give_rest(&self, market: &Market, grants: &mut [u64], j: usize, budget: u64) {
        let used: u128 = grants.iter().map(|&t| t as u128).sum();
        let rest = u64::try_from((budget as u128).saturating_sub(used)).unwrap_or(u64::MAX);
        let grant = grants[j]
            .saturating_add(rest - rest % self.granularity)
            .min(market.caps[j]);
        if grant as f64 > market.bidders[j].threshold() {
            grants[j] = grant;
        }
    }

    /// Whole tokens: round down to the granularity and the cap, drop grants that do
    /// not pass the threshold (they buy nothing), then — with a budget — give the
    /// rounding remainder back, one granule each, to the queries that lost the most,
    /// and enforce `Σ ≤ budget` in integers.
    fn round(&self, market: &Market, tokens: &[f64], budget: Option<u64>) -> Vec<u64> {
        let g = self.granularity;
        let useful = |i: usize, grant: u64| grant as f64 > market.bidders[i].threshold();
        let mut grants: Vec<u64> = tokens
            .iter()
            .zip(&market.caps)
            .enumerate()
            .map(|(i, (&t, &cap))| {
                let grant = self.round_down(t).min(cap);
                if grant > 0 && useful(i, grant) {
                    grant
                } else {
                    0
                }
            })
            .collect();
        let Some(budget) = budget else {
            return grants;
        };
        let budget = budget as u128;
        let mut used: u128 = grants.iter().map(|&x| x as u128).sum();
        if used + g as u128 <= budget {
            let mut losers: Vec<(f64, usize)> = (0..grants.len())
                .filter(|&i| tokens[i] > grants[i] as f64)
                .filter(|&i| {
                    grants[i]
                        .checked_add(g)
                        .is_some_and(|more| more <= market.caps[i] && useful(i, more))
                })
                .map(|i| (tokens[i] - grants[i] as f64, i))
                .collect();
            let k = (((budget - used) / g as u128) as usize).min(losers.len());
            if k > 0 && k < losers.len() {
                losers.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            }
            for &(_, i) in &losers[..k] {
                grants[i] += g;
                used += g as u128;
            }
        }
        // Floating-point sums of huge budgets can round up; take any excess back.
        for grant in grants.iter_mut() {
            if used <= budget {
                break;
            }
            let take = ((used - budget).div_ceil(g as u128) * g as u128).min(*grant as u128);
            *grant -= take as u64;
            used -= take;
        }
        grants
    }

    /// `tokens` rounded down to a multiple of the granularity, as whole tokens
    /// (saturating; negative and NaN give 0).
    fn round_down(&self, tokens: f64) -> u64 {
        self.round_down_whole(tokens as u64)
    }

    /// `tokens` rounded down to a multiple of the granularity (the common granularity
    /// 1 skips the integer division, which is costly in a per-query loop).
    fn round_down_whole(&self, tokens: u64) -> u64 {
        if self.granularity == 1 {
            tokens
        } else {
            tokens - tokens % self.granularity
        }
    }

    /// Per-query results with decisions and utilities.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        queries: &[Query],
        market: &Market,
        grants: Vec<u64>,
        edges: &[usize],
        budget: Option<u64>,
        prices: (f64, f64),
        passes: usize,
    ) -> Allocation {
        let results = grants
            .iter()
            .enumerate()
            .map(|(i, &tokens)| QueryAllocation {
                tokens,
                utility: utility_of(&queries[i], tokens),
                decision: if tokens == 0 {
                    Decision::Abandoned
                } else if edges.contains(&i) {
                    Decision::Edge
                } else if tokens == market.caps[i] {
                    Decision::Capped
                } else {
                    Decision::Funded
                },
            })
            .collect();
        Allocation::assemble(results, Some(prices.0), Some(prices.1), budget, passes)
    }
}

/// Writes `values[k]` to `out[indices[k]]`.
fn scatter(out: &mut [f64], indices: &[usize], values: &[f64]) {
    for (&i, &v) in indices.iter().zip(values) {
        out[i] = v;
    }
}

fn utility_of(query: &Query, tokens: u64) -> f64 {
    if tokens == 0 {
        0.0
    } else {
        utility_at(query, tokens as f64)
    }
}

fn total_utility_of(queries: &[Query], grants: &[u64]) -> f64 {
    queries
        .iter()
        .zip(grants)
        .map(|(q, &t)| utility_of(q, t))
        .sum()
}

fn utility_at(query: &Query, tokens: f64) -> f64 {
    query.weight * query.curve.utility(tokens)
}
