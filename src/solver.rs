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
//!    queries are abandoned. A safeguarded Newton iteration in `ln λ` (the slope comes
//!    free with each pass) inside a bracket `D(lo) > B ≥ D(hi)`, falling back to
//!    bisection whenever Newton leaves the bracket or stalls, so it always terminates.
//!    For large batches a solve on a strided sample gives the starting price. When all
//!    queries share one shape (the paper's model-intrinsic α, β) W₋₁ is evaluated once
//!    per pass instead of once per query.
//! 3. **Spend the leftover** (SPEC §4.2): the feasible end of the bracket leaves part of
//!    the budget unspent, because `D` jumps. Re-clear the price among the funded
//!    queries alone (lowering their marginal utility to the *marginal price*), and try
//!    instead to fund the one query at the edge with the leftover; keep whichever
//!    gives more utility.
//! 4. **Round** to whole tokens (multiples of the granularity), hand the rounding
//!    remainder to the queries that lost the most to rounding, and check `Σ ≤ B` in
//!    exact integer arithmetic.
//!
//! The price solution is within one query's utility of the optimum of the non-concave
//! problem (Shapley–Folkman; Udell & Boyd 2016, for one linear constraint).

use crate::error::{Error, Result};
use crate::model::{surge_z, Bid, BidRule, Bidder, ShiftedSurge};

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
    /// Funded from the leftover budget that the price alone could not place: the one
    /// query at the edge of solvency (SPEC §4.2).
    Leftover,
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
    /// [`Error::InvalidQuery`] when a query's weight is invalid, a grant exceeds its
    /// cap, or the lengths differ; [`Error::InvalidParameter`] when the grants exceed
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
            check_weight(query, index)?;
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
    /// leftover was spent on them; at most [`Allocation::price`], equal when nothing
    /// was left over.
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
    /// [`Error::InvalidQuery`] for a query with an invalid field.
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
            tolerance: 1e-4,
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

    /// Relative budget tolerance of the price search (in (0, 1)); default 1e-4. The
    /// search stops once the demand at the feasible end is within this share of the
    /// budget (or no more than one query's abandonment separates the bracket's ends);
    /// the leftover step spends what remains, so this trades passes for nothing but
    /// the choice of which edge queries are funded.
    pub fn tolerance(mut self, relative: f64) -> Self {
        self.tolerance = relative;
        self
    }

    /// Upper bound on price-search steps (≥ 1); default 200. Whatever the bound, the
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
        let cap = query.cap.unwrap_or(self.default_cap);
        cap - cap % self.granularity
    }

    fn prepare(&self, queries: &[Query]) -> Result<Vec<Bidder>> {
        queries
            .iter()
            .enumerate()
            .map(|(index, query)| {
                check_weight(query, index)?;
                let bidder = Bidder::new(&query.curve, query.weight, self.cap_of(query) as f64);
                if !bidder.max_price().is_finite() {
                    return Err(Error::InvalidQuery {
                        index,
                        id: query.id.clone(),
                        field: "weight",
                        value: query.weight,
                        reason: "times the curve's peak marginal utility overflows",
                    });
                }
                Ok(bidder)
            })
            .collect()
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
    /// infinite or negative, or when weight × peak marginal utility overflows.
    pub fn allocate(&self, queries: &[Query], budget: u64) -> Result<Allocation> {
        let bidders = self.prepare(queries)?;
        let caps: Vec<u64> = queries.iter().map(|q| self.cap_of(q)).collect();
        let fundable_caps: u128 = bidders
            .iter()
            .zip(&caps)
            .filter(|(b, _)| b.fundable())
            .map(|(_, &c)| c as u128)
            .sum();
        if fundable_caps <= budget as u128 {
            // Not scarce: price 0, every query that can use its cap gets it.
            let tokens: Vec<f64> = bidders
                .iter()
                .map(|b| b.bid_by(0.0, self.rule).tokens())
                .collect();
            let grants = self.round(&bidders, &caps, &tokens, Some(budget));
            return Ok(self.finish(queries, &caps, grants, None, Some(budget), (0.0, 0.0), 1));
        }

        let market = Market::new(&bidders, self.rule);
        let budget_f = budget as f64;
        let mut passes = 0;
        let clearing = self.clear(&market, budget_f, &mut passes);
        let price = clearing.log_price.exp();

        // The funded set and its bids at the clearing price.
        let mut at_clearing = Spend {
            price,
            tokens: vec![0.0; bidders.len()],
        };
        let mut funded = Vec::new();
        for (i, bidder) in bidders.iter().enumerate() {
            let bid = bidder.bid_by(price, self.rule);
            if bid != Bid::Out {
                funded.push(i);
                at_clearing.tokens[i] = bid.tokens();
            }
        }
        passes += 1;

        // Spend the leftover (SPEC §4.2): re-clear among the funded queries …
        let spent = self.reclear(&bidders, &funded, budget_f, &at_clearing, &mut passes);
        let mut grants = self.round(&bidders, &caps, &spent.tokens, Some(budget));
        let mut marginal_price = spent.price;
        let mut edge = None;

        // … or fund the one query at the edge with the leftover, if that is worth more.
        if spent.price < price {
            let mut is_funded = vec![false; bidders.len()];
            funded.iter().for_each(|&i| is_funded[i] = true);
            let placed: u64 = self
                .round(&bidders, &caps, &at_clearing.tokens, None)
                .iter()
                .sum();
            let unspent = budget.saturating_sub(placed);
            if let Some((j, grant)) =
                self.edge_candidate(queries, &bidders, &caps, &is_funded, spent.price, unspent)
            {
                let rest = self.reclear(
                    &bidders,
                    &funded,
                    budget_f - grant as f64,
                    &at_clearing,
                    &mut passes,
                );
                let mut tokens = rest.tokens;
                tokens[j] = grant as f64;
                let candidate = self.round(&bidders, &caps, &tokens, Some(budget));
                if total_utility(queries, &candidate) > total_utility(queries, &grants) {
                    grants = candidate;
                    marginal_price = rest.price;
                    edge = Some(j);
                }
            }
        }
        Ok(self.finish(
            queries,
            &caps,
            grants,
            edge,
            Some(budget),
            (price, marginal_price),
            passes,
        ))
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
        let bidders = self.prepare(queries)?;
        let caps: Vec<u64> = queries.iter().map(|q| self.cap_of(q)).collect();
        let tokens: Vec<f64> = bidders
            .iter()
            .map(|b| b.bid_by(price, self.rule).tokens())
            .collect();
        let grants = self.round(&bidders, &caps, &tokens, None);
        Ok(self.finish(queries, &caps, grants, None, None, (price, price), 1))
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

/// Total demand at one price.
#[derive(Debug, Clone, Copy)]
struct Demand {
    log_price: f64,
    tokens: f64,
    /// `d tokens / d ln λ` of the continuous part (≤ 0).
    slope: f64,
    /// Queries funded; `usize::MAX` marks the virtual lower end of the bracket.
    funded: usize,
}

/// The prepared batch: one bidder per query, and the shape they share, if any.
struct Market<'a> {
    bidders: &'a [Bidder],
    rule: BidRule,
    shared_shape: Option<(f64, f64)>,
    /// No query is funded at or above this price.
    top_price: f64,
}

impl<'a> Market<'a> {
    fn new(bidders: &'a [Bidder], rule: BidRule) -> Self {
        let first = bidders.first().map(Bidder::shape);
        let shared_shape = first.filter(|&s| bidders.iter().all(|b| b.shape() == s));
        let top_price = bidders
            .iter()
            .map(|b| b.max_price_under(rule))
            .fold(0.0, f64::max);
        Market {
            bidders,
            rule,
            shared_shape,
            top_price,
        }
    }

    /// One pass: total demand, its slope and the funded count at `e^log_price`.
    fn demand(&self, log_price: f64) -> Demand {
        let price = log_price.exp();
        let mut total = Demand {
            log_price,
            tokens: 0.0,
            slope: 0.0,
            funded: 0,
        };
        let mut tally = |bid: Bid| {
            if bid != Bid::Out {
                total.funded += 1;
                total.tokens += bid.tokens();
                total.slope += bid.log_price_slope();
            }
        };
        let rule = self.rule;
        match self.shared_shape {
            Some((scale, _)) => {
                let z = surge_z(price / scale);
                self.bidders
                    .iter()
                    .for_each(|b| tally(b.bid_with(price, rule, || z)));
            }
            None => self
                .bidders
                .iter()
                .for_each(|b| tally(b.bid_by(price, rule))),
        }
        total
    }
}

/// `ln` of the smallest positive normal f64: the virtual low end of every bracket,
/// where demand is taken to be its limit as λ → 0⁺.
const LOG_PRICE_FLOOR: f64 = -708.0;

/// Batches above this size start the price search from a solve on a strided sample.
const PRESOLVE_MIN_QUERIES: usize = 4096;
/// Size of that sample.
const PRESOLVE_SAMPLE: usize = 512;

/// A bracketed root search on a non-increasing demand curve in `ln λ`.
///
/// Newton steps use the slope that every pass returns; a step that leaves the bracket,
/// or two steps that fail to halve it, are replaced by bisection (or, while the low end
/// is still virtual, by a step down that doubles each time). The bracket's ends keep
/// `demand(lo) > budget ≥ demand(hi)`, so the search cannot diverge, and `hi` is
/// always a feasible price.
struct Bracket {
    lo: Demand,
    hi: Demand,
    widths: [f64; 2],
    step_down: f64,
}

impl Bracket {
    fn new(top_price: f64) -> Self {
        let hi = Demand {
            log_price: top_price.ln().max(LOG_PRICE_FLOOR + 1.0),
            tokens: 0.0,
            slope: 0.0,
            funded: 0,
        };
        let lo = Demand {
            log_price: LOG_PRICE_FLOOR,
            tokens: f64::INFINITY,
            slope: 0.0,
            funded: usize::MAX,
        };
        Bracket {
            lo,
            hi,
            widths: [f64::INFINITY; 2],
            step_down: 1.0,
        }
    }

    fn width(&self) -> f64 {
        self.hi.log_price - self.lo.log_price
    }

    fn collapsed(&self) -> bool {
        self.width() <= 1e-14 * (1.0 + self.hi.log_price.abs())
    }

    fn update(&mut self, point: Demand, budget: f64) {
        if point.tokens > budget {
            self.lo = point;
        } else {
            self.hi = point;
        }
    }

    /// The next log-price to try, given the latest evaluated point.
    fn next(&mut self, point: Demand, target: f64) -> f64 {
        let (lo, hi) = (self.lo.log_price, self.hi.log_price);
        let width = hi - lo;
        let stalled = width > 0.5 * self.widths[0];
        self.widths = [self.widths[1], width];
        let newton = if point.slope < 0.0 {
            point.log_price + (target - point.tokens) / point.slope
        } else {
            f64::NAN
        };
        if newton > lo && newton < hi && !stalled {
            return newton;
        }
        if self.lo.funded == usize::MAX {
            // Low end still virtual: walk down from the high end, doubling the stride.
            self.step_down *= 2.0;
            return (hi - self.step_down).max(0.5 * (lo + hi));
        }
        0.5 * (lo + hi)
    }
}

/// The result of spending a budget among a fixed funded set.
struct Spend {
    price: f64,
    /// Tokens per query (0 outside the funded set).
    tokens: Vec<f64>,
}

impl Allocator {
    /// Market clearing (SPEC §4): returns the feasible end of the final bracket.
    fn clear(&self, market: &Market, budget: f64, passes: &mut usize) -> Demand {
        let mut bracket = Bracket::new(market.top_price);
        let mut log_price = self.starting_log_price(market, budget, &bracket);
        let target = budget * (1.0 - 0.5 * self.tolerance);
        for _ in 0..self.max_iterations {
            let point = market.demand(log_price);
            *passes += 1;
            bracket.update(point, budget);
            let close = bracket.hi.tokens >= budget * (1.0 - self.tolerance);
            let one_jump = bracket.lo.funded.saturating_sub(bracket.hi.funded) <= 1;
            if close || one_jump || bracket.collapsed() {
                break;
            }
            log_price = bracket.next(point, target);
        }
        bracket.hi
    }

    /// Where the search starts: for large batches, the clearing price of a strided
    /// sample with a proportional budget; otherwise one e-fold below the top price.
    fn starting_log_price(&self, market: &Market, budget: f64, bracket: &Bracket) -> f64 {
        let n = market.bidders.len();
        let (lo, hi) = (bracket.lo.log_price, bracket.hi.log_price);
        if n >= PRESOLVE_MIN_QUERIES {
            let stride = n / PRESOLVE_SAMPLE;
            let sample: Vec<Bidder> = market.bidders.iter().step_by(stride).copied().collect();
            let sample_market = Market::new(&sample, self.rule);
            let sample_budget = budget * sample.len() as f64 / n as f64;
            let mut ignored = 0;
            let guess = self
                .clear(&sample_market, sample_budget, &mut ignored)
                .log_price;
            if guess > lo && guess < hi {
                return guess;
            }
        }
        (hi - 1.0).max(0.5 * (lo + hi))
    }

    /// Spends `budget` among the `funded` queries alone, ignoring abandonment: the
    /// price that clears their continuous demand, searched from `from` (the clearing
    /// point, whose demand is already known). Returns the feasible end.
    fn reclear(
        &self,
        bidders: &[Bidder],
        funded: &[usize],
        budget: f64,
        from: &Spend,
        passes: &mut usize,
    ) -> Spend {
        let demand = |log_price: f64, tokens: &mut Vec<f64>| {
            let price = log_price.exp();
            let mut point = Demand {
                log_price,
                tokens: 0.0,
                slope: 0.0,
                funded: funded.len(),
            };
            for &i in funded {
                let bid = bidders[i].bid_funded(price);
                tokens[i] = bid.tokens();
                point.tokens += tokens[i];
                point.slope += bid.log_price_slope();
            }
            point
        };
        let all_caps: f64 = funded.iter().map(|&i| bidders[i].cap()).sum();
        let mut best = Spend {
            price: from.price,
            tokens: from.tokens.clone(),
        };
        if all_caps <= budget {
            for &i in funded {
                best.tokens[i] = bidders[i].cap();
            }
            best.price = 0.0;
            return best;
        }
        let top = funded
            .iter()
            .map(|&i| bidders[i].max_price())
            .fold(0.0, f64::max);
        let mut bracket = Bracket::new(top);
        let mut scratch = vec![0.0; bidders.len()];
        let mut point = demand(from.price.ln(), &mut scratch);
        *passes += 1;
        let exact = 0.25f64.max(1e-12 * budget);
        for _ in 0..self.max_iterations {
            bracket.update(point, budget);
            if point.tokens <= budget {
                best.price = point.log_price.exp();
                std::mem::swap(&mut best.tokens, &mut scratch);
            }
            if budget - bracket.hi.tokens <= exact || bracket.collapsed() {
                break;
            }
            let next = bracket.next(point, budget - 0.5 * exact);
            point = demand(next, &mut scratch);
            *passes += 1;
        }
        best
    }

    /// The best query to fund from the leftover instead of re-clearing: among the
    /// queries abandoned at `price` but solvent at the lower `marginal_price`, the one
    /// whose leftover-limited grant has the largest surplus at `marginal_price`.
    #[allow(clippy::too_many_arguments)]
    fn edge_candidate(
        &self,
        queries: &[Query],
        bidders: &[Bidder],
        caps: &[u64],
        is_funded: &[bool],
        marginal_price: f64,
        leftover: u64,
    ) -> Option<(usize, u64)> {
        let g = self.granularity;
        let mut best: Option<(usize, u64, f64)> = None;
        for (j, bidder) in bidders.iter().enumerate() {
            if is_funded[j] || bidder.max_price_under(self.rule) <= marginal_price {
                continue;
            }
            let want = bidder.bid_by(marginal_price, self.rule).tokens();
            if want == 0.0 {
                continue;
            }
            let grant = round_down(want, g)
                .min(caps[j])
                .min(leftover - leftover % g);
            if grant as f64 <= bidder.threshold() {
                continue;
            }
            let query = &queries[j];
            let surplus =
                query.weight * query.curve.utility(grant as f64) - marginal_price * grant as f64;
            if surplus > best.map_or(0.0, |b| b.2) {
                best = Some((j, grant, surplus));
            }
        }
        best.map(|(j, grant, _)| (j, grant))
    }

    /// Whole tokens: round down to the granularity and the cap, drop grants that do
    /// not pass the threshold (they buy nothing), then — with a budget — give the
    /// rounding remainder back, one granule each, to the queries that lost the most,
    /// and enforce `Σ ≤ budget` in integers.
    fn round(
        &self,
        bidders: &[Bidder],
        caps: &[u64],
        tokens: &[f64],
        budget: Option<u64>,
    ) -> Vec<u64> {
        let g = self.granularity;
        let useful = |i: usize, grant: u64| grant as f64 > bidders[i].threshold();
        let mut grants: Vec<u64> = tokens
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let grant = round_down(t, g).min(caps[i]);
                if useful(i, grant) {
                    grant
                } else {
                    0
                }
            })
            .collect();
        let Some(budget) = budget else {
            return grants;
        };
        let mut used: u128 = grants.iter().map(|&x| x as u128).sum();
        let budget = budget as u128;
        if used < budget {
            let mut losers: Vec<(f64, usize)> = (0..grants.len())
                .filter(|&i| tokens[i] > 0.0 && grants[i].saturating_add(g) <= caps[i])
                .filter(|&i| useful(i, grants[i] + g))
                .map(|i| (tokens[i] - grants[i] as f64, i))
                .filter(|&(loss, _)| loss > 0.0)
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
        let mut i = 0;
        while used > budget && i < grants.len() {
            let take = (grants[i] as u128).min(used - budget);
            let take = take.div_ceil(g as u128) * g as u128;
            let take = take.min(grants[i] as u128) as u64;
            grants[i] -= take;
            used -= take as u128;
            i += 1;
        }
        grants
    }

    /// Per-query results with decisions and utilities.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        queries: &[Query],
        caps: &[u64],
        grants: Vec<u64>,
        edge: Option<usize>,
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
                } else if edge == Some(i) {
                    Decision::Leftover
                } else if tokens == caps[i] {
                    Decision::Capped
                } else {
                    Decision::Funded
                },
            })
            .collect();
        Allocation::assemble(results, Some(prices.0), Some(prices.1), budget, passes)
    }
}

fn utility_of(query: &Query, tokens: u64) -> f64 {
    if tokens == 0 {
        0.0
    } else {
        query.weight * query.curve.utility(tokens as f64)
    }
}

fn total_utility(queries: &[Query], grants: &[u64]) -> f64 {
    queries
        .iter()
        .zip(grants)
        .map(|(q, &t)| utility_of(q, t))
        .sum()
}

/// `t` rounded down to a multiple of `g`, as whole tokens (saturating, NaN → 0).
fn round_down(tokens: f64, g: u64) -> u64 {
    let whole = tokens.max(0.0) as u64;
    whole - whole % g
}

fn check_weight(query: &Query, index: usize) -> Result<()> {
    if query.weight.is_finite() && query.weight >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidQuery {
            index,
            id: query.id.clone(),
            field: "weight",
            value: query.weight,
            reason: "must be finite and >= 0",
        })
    }
}
