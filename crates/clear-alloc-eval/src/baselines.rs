//! The allocation methods CLEAR is compared with (SPEC §6; Wan et al., *The Shadow
//! Price of Reasoning*, ICML 2026, §7). Every one implements
//! [`AllocationPolicy`]: the same queries and budget in, the same [`Allocation`] out.
//!
//! | policy | rule | cost |
//! |---|---|---|
//! | [`Uniform`] | every query gets `⌊B/N⌋` tokens, capped: one global `max_tokens` | O(N) |
//! | [`Proportional`] | tokens ∝ predicted threshold τ̂ᵢ, water-filled under the caps | O(N log N) |
//! | [`NoAbandonment`] | CLEAR's price, but every query buys whenever its marginal meets the price | as CLEAR |
//! | [`GreedyMarginal`] | repeatedly give one step to the query whose utility rises most | O((B/step) log N) |
//! | [`ExactOptimum`] | dynamic programming on a token grid δ | O(N·K·k), K = B/δ, k = cap/δ |
//! | [`Oracle`] | CLEAR on the *true* curves instead of the predicted ones | as CLEAR |
//!
//! # Why greedy fails on S-curves
//! A shifted-surge curve is flat (`U = 0`) below its threshold. A query below its
//! threshold shows a gain of exactly zero for one more step, however close it is to
//! the surge; greedy cannot see the payoff of crossing it. [`GreedyMarginal`] breaks
//! ties towards the query with the fewest tokens, so while every gain is zero it
//! behaves like [`Uniform`]; once the easiest query crosses its threshold, that query's
//! gain is the only positive one and it is fed until its curve flattens — typically to
//! its cap — while the others stay starved. On concave utilities greedy is optimal; on
//! S-curves it is a negative control.
//!
//! # The exact optimum
//! [`ExactOptimum`] (re-exported from [`clear_alloc::exact`]) restricts grants to multiples of
//! a grid step δ and solves the knapsack exactly: `O(N·K·min(k, K))` time for
//! `K = B/δ` cells and `k = cap/δ` steps per query, `O(N·K)` memory, and it refuses
//! tables above [`ExactOptimum::MAX_TABLE`] entries. It is optimal among grid
//! allocations, so a method whose grants are multiples of δ (every policy here accepts
//! a granularity) can never beat it; a method on a finer grid can, by at most the grid
//! error `Σᵢ φᵢ,max · δ`.
//!
//! ```
//! use clear_alloc_eval::baselines::{GreedyMarginal, Proportional, Uniform};
//! use clear_alloc::{AllocationPolicy, Allocator, Query, ShiftedSurge};
//!
//! let easy = ShiftedSurge::new(151.0, 101.0, 0.9)?;
//! let hard = ShiftedSurge::new(304.0, 280.0, 0.35)?;
//! let queries: Vec<Query> = (0..10)
//!     .map(|i| Query::new(if i % 2 == 0 { easy } else { hard }).with_cap(4096))
//!     .collect();
//! let policies: [&dyn AllocationPolicy; 4] = [
//!     &Uniform::default(),
//!     &Proportional::default(),
//!     &GreedyMarginal::new(16)?,
//!     &Allocator::default(),
//! ];
//! for policy in policies {
//!     let allocation = policy.allocate(&queries, 2_000)?; // 200 tokens per query
//!     assert!(allocation.total_tokens() <= 2_000);
//!     println!("{:>12}: {:.3}", policy.name(), allocation.mean_utility());
//! }
//! # Ok::<(), clear_alloc::Error>(())
//! ```

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use clear_alloc::{Allocation, AllocationPolicy, Allocator, AllocatorBuilder, Query};
use clear_alloc::{Error, Result};

pub use clear_alloc::exact::ExactOptimum;

/// The cap and granularity every simple baseline shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grid {
    default_cap: u64,
    granularity: u64,
}

impl Default for Grid {
    fn default() -> Self {
        Grid {
            default_cap: Allocator::DEFAULT_CAP,
            granularity: 1,
        }
    }
}

impl Grid {
    fn with_granularity(self, tokens: u64, option: &'static str) -> Result<Self> {
        if tokens == 0 {
            return Err(Error::invalid_option(option, 0.0, "must be >= 1"));
        }
        Ok(Grid {
            granularity: tokens,
            ..self
        })
    }

    /// The query's cap rounded down to the granularity (as [`Allocator::cap_of`]).
    fn cap_of(&self, query: &Query) -> u64 {
        self.round_down(query.cap().unwrap_or(self.default_cap))
    }

    /// `tokens` rounded down to a multiple of the granularity.
    fn round_down(&self, tokens: u64) -> u64 {
        tokens - tokens % self.granularity
    }

    fn finish(&self, queries: &[Query], grants: Vec<u64>, budget: u64) -> Result<Allocation> {
        Allocation::from_tokens(queries, grants, self.default_cap, Some(budget))
    }
}

/// Uniform allocation: every query gets `⌊B/N⌋` tokens (rounded down to the
/// granularity), capped at its cap. This is a server with one global `max_tokens`; what
/// a capped query does not use is not handed to the others.
///
/// ```
/// use clear_alloc_eval::baselines::Uniform;
/// use clear_alloc::{AllocationPolicy, Query, ShiftedSurge};
///
/// let curve = ShiftedSurge::new(100.0, 50.0, 0.9)?;
/// let queries = [Query::new(curve).with_cap(120), Query::new(curve)];
/// let allocation = Uniform::default().allocate(&queries, 401)?;
/// assert_eq!(allocation.tokens().collect::<Vec<_>>(), [120, 200]);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Uniform {
    grid: Grid,
}

impl Uniform {
    /// Uniform shares that are multiples of `granularity` tokens.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when `granularity` is 0.
    pub fn new(granularity: u64) -> Result<Self> {
        Ok(Uniform {
            grid: Grid::default().with_granularity(granularity, "granularity")?,
        })
    }

    /// Cap for queries without one of their own (default
    /// [`Allocator::DEFAULT_CAP`]).
    pub fn with_default_cap(mut self, tokens: u64) -> Self {
        self.grid.default_cap = tokens;
        self
    }
}

impl AllocationPolicy for Uniform {
    fn name(&self) -> &str {
        "uniform"
    }

    fn allocate(&self, queries: &[Query], budget: u64) -> Result<Allocation> {
        let share = match queries.len() as u64 {
            0 => 0,
            n => self.grid.round_down(budget / n),
        };
        let grants = queries
            .iter()
            .map(|q| share.min(self.grid.cap_of(q)))
            .collect();
        self.grid.finish(queries, grants, budget)
    }
}

/// Predictor-proportional allocation (the paper's baseline): tokens in proportion to
/// each query's predicted threshold τ̂ᵢ, `bᵢ = min(capᵢ, s·τ̂ᵢ)` with the scale `s`
/// chosen so that the budget is spent (water-filling: what capped queries cannot take
/// goes to the others), then rounded down to the granularity.
///
/// A query predicted to need no tokens (τ̂ = 0) gets none. When every τ̂ is 0 there is
/// nothing to be proportional to, and the budget is split uniformly.
///
/// ```
/// use clear_alloc_eval::baselines::Proportional;
/// use clear_alloc::{AllocationPolicy, Query, ShiftedSurge};
///
/// let queries = [
///     Query::new(ShiftedSurge::new(100.0, 50.0, 0.9)?),
///     Query::new(ShiftedSurge::new(300.0, 50.0, 0.9)?),
/// ];
/// let allocation = Proportional::default().allocate(&queries, 800)?;
/// assert_eq!(allocation.tokens().collect::<Vec<_>>(), [200, 600]);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Proportional {
    grid: Grid,
}

impl Proportional {
    /// Proportional shares that are multiples of `granularity` tokens.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when `granularity` is 0.
    pub fn new(granularity: u64) -> Result<Self> {
        Ok(Proportional {
            grid: Grid::default().with_granularity(granularity, "granularity")?,
        })
    }

    /// Cap for queries without one of their own (default
    /// [`Allocator::DEFAULT_CAP`]).
    pub fn with_default_cap(mut self, tokens: u64) -> Self {
        self.grid.default_cap = tokens;
        self
    }
}

impl AllocationPolicy for Proportional {
    fn name(&self) -> &str {
        "proportional"
    }

    fn allocate(&self, queries: &[Query], budget: u64) -> Result<Allocation> {
        let caps: Vec<f64> = queries.iter().map(|q| self.grid.cap_of(q) as f64).collect();
        let thresholds: Vec<f64> = queries.iter().map(|q| q.curve().threshold()).collect();
        if thresholds.iter().all(|&t| t == 0.0) {
            return Uniform { grid: self.grid }.allocate(queries, budget);
        }
        let scale = water_level(&thresholds, &caps, budget as f64);
        let grants = queries
            .iter()
            .enumerate()
            .map(|(i, _)| {
                // τ̂ = 0 gets nothing even when the caps fit and the scale is ∞ (where
                // ∞ · 0 would be NaN, and NaN.min(cap) the whole cap).
                if thresholds[i] <= 0.0 {
                    return 0;
                }
                // `as` saturates, and the min keeps a float sum that rounds up off the cap.
                let tokens = (scale * thresholds[i]).min(caps[i]) as u64;
                self.grid.round_down(tokens)
            })
            .collect::<Vec<u64>>();
        self.grid
            .finish(queries, trim_to_budget(grants, budget), budget)
    }
}

/// The largest `s` with `Σ min(capᵢ, s·tᵢ) ≤ budget` (∞ when the caps fit): the queries
/// are visited in the order in which they hit their caps as `s` grows.
fn water_level(shares: &[f64], caps: &[f64], budget: f64) -> f64 {
    let mut order: Vec<usize> = (0..shares.len()).filter(|&i| shares[i] > 0.0).collect();
    order.sort_by(|&a, &b| (caps[a] / shares[a]).total_cmp(&(caps[b] / shares[b])));
    let mut free_shares: f64 = order.iter().map(|&i| shares[i]).sum();
    let mut capped_tokens = 0.0;
    for &i in &order {
        let level = caps[i] / shares[i];
        // Demand at this level: the capped queries so far plus `level` times the rest.
        if capped_tokens + level * free_shares > budget {
            return (budget - capped_tokens) / free_shares;
        }
        capped_tokens += caps[i];
        free_shares -= shares[i];
    }
    f64::INFINITY
}

/// Float rounding can put a proportional sum a few tokens over the budget; take the
/// excess back from the largest grants so that `Σ ≤ budget` holds in integers.
fn trim_to_budget(mut grants: Vec<u64>, budget: u64) -> Vec<u64> {
    let mut total: u128 = grants.iter().map(|&g| g as u128).sum();
    while total > budget as u128 {
        let (largest, _) = grants
            .iter()
            .enumerate()
            .max_by_key(|&(_, &g)| g)
            .expect("a positive total has a positive grant");
        let take = (total - budget as u128).min(grants[largest] as u128) as u64;
        grants[largest] -= take;
        total -= take as u128;
    }
    grants
}

/// CLEAR without rational abandonment (the paper's ablation): the same market-clearing
/// price, but every query buys up to where its marginal utility meets the price even
/// at a negative surplus. Built on `Allocator::builder().abandonment(false)`; the gap
/// between it and CLEAR is what abandonment is worth.
///
/// ```
/// use clear_alloc_eval::baselines::NoAbandonment;
/// use clear_alloc::{AllocationPolicy, Allocator, Query, ShiftedSurge};
///
/// let easy = Query::new(ShiftedSurge::new(151.0, 101.0, 0.9)?);
/// let hard = Query::new(ShiftedSurge::new(304.0, 280.0, 0.35)?);
/// let queries = [easy.clone(), hard, easy];
/// let funded_all = NoAbandonment::default().allocate(&queries, 900)?;
/// let clear = Allocator::default().allocate(&queries, 900)?;
/// assert!(clear.total_utility() >= funded_all.total_utility());
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NoAbandonment {
    allocator: Allocator,
}

impl Default for NoAbandonment {
    fn default() -> Self {
        NoAbandonment::new(Allocator::builder()).expect("the default options are valid")
    }
}

impl NoAbandonment {
    /// The ablation with the options of `builder` (its abandonment switch is overridden).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] as for [`AllocatorBuilder::build`].
    pub fn new(builder: AllocatorBuilder) -> Result<Self> {
        Ok(NoAbandonment {
            allocator: builder.abandonment(false).build()?,
        })
    }

    /// The underlying allocator (with abandonment switched off).
    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }
}

impl AllocationPolicy for NoAbandonment {
    fn name(&self) -> &str {
        "CLEAR w/o abandonment"
    }

    fn allocate(&self, queries: &[Query], budget: u64) -> Result<Allocation> {
        self.allocator.allocate(queries, budget)
    }
}

/// Greedy marginal gain in fixed steps: repeatedly give `step` tokens to the query
/// whose weighted utility rises most, until the budget or every cap is used. Ties
/// (above all the exact zeros below every threshold) go to the query with the fewest
/// tokens, then the lowest index.
///
/// A **negative control**: see the [module docs](self) for why it fails on S-curves.
///
/// It runs one heap operation per step, so its time grows with the number of steps
/// it can take, `min(B, Σ capᵢ) / step`; above [`GreedyMarginal::MAX_STEPS`] it
/// refuses with [`Error::InvalidOption`] (option `step`) instead of running for
/// seconds or hours. Use a coarser step for large budgets.
///
/// ```
/// use clear_alloc_eval::baselines::GreedyMarginal;
/// use clear_alloc::{AllocationPolicy, Query, ShiftedSurge};
///
/// // Two identical queries with a 100-token threshold and 200 tokens: greedy spreads
/// // the zero-gain steps evenly, so one query barely crosses its threshold.
/// let curve = ShiftedSurge::new(100.0, 50.0, 0.9)?;
/// let queries = [Query::new(curve), Query::new(curve)];
/// let allocation = GreedyMarginal::new(10)?.allocate(&queries, 200)?;
/// assert_eq!(allocation.tokens().collect::<Vec<_>>(), [110, 90]);
/// // 0.9·(1 − 1.2·e^−0.2) ≈ 0.016, where all 200 tokens on one query earn
/// // 0.9·(1 − 3·e^−2) ≈ 0.53.
/// assert!(allocation.total_utility() < 0.02);
/// assert!(curve.utility(200.0) > 0.5);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreedyMarginal {
    grid: Grid,
}

impl GreedyMarginal {
    /// The most steps one allocation may take (10⁸, on the order of a second or two
    /// on one core): a bound on the running time, checked before any work.
    pub const MAX_STEPS: u64 = 100_000_000;

    /// Greedy in steps of `step` tokens (all grants are multiples of it).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when `step` is 0.
    pub fn new(step: u64) -> Result<Self> {
        Ok(GreedyMarginal {
            grid: Grid::default().with_granularity(step, "step")?,
        })
    }

    /// Cap for queries without one of their own (default
    /// [`Allocator::DEFAULT_CAP`]).
    pub fn with_default_cap(mut self, tokens: u64) -> Self {
        self.grid.default_cap = tokens;
        self
    }

    /// The step in tokens.
    pub fn step(&self) -> u64 {
        self.grid.granularity
    }
}

/// One candidate step in the greedy heap; the greatest is taken first.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    gain: f64,
    tokens: u64,
    index: usize,
}

impl Eq for Step {}

impl Ord for Step {
    fn cmp(&self, other: &Self) -> Ordering {
        self.gain
            .total_cmp(&other.gain)
            .then_with(|| other.tokens.cmp(&self.tokens))
            .then_with(|| other.index.cmp(&self.index))
    }
}

impl PartialOrd for Step {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl AllocationPolicy for GreedyMarginal {
    fn name(&self) -> &str {
        "greedy marginal"
    }

    /// # Errors
    /// - [`Error::InvalidQuery`] as for [`Allocator::allocate`].
    /// - [`Error::InvalidOption`] (option `step`) when the allocation would take more
    ///   than [`GreedyMarginal::MAX_STEPS`] steps: `min(budget, Σ caps) / step`.
    fn allocate(&self, queries: &[Query], budget: u64) -> Result<Allocation> {
        let step = self.grid.granularity;
        let caps: Vec<u64> = queries.iter().map(|q| self.grid.cap_of(q)).collect();
        // Every step spends `step` tokens of the budget and of some cap, so this bounds
        // the loop below; u128 because the caps may sum past u64::MAX.
        let spendable = (budget as u128).min(caps.iter().map(|&c| c as u128).sum());
        if spendable / step as u128 > Self::MAX_STEPS as u128 {
            return Err(Error::invalid_option(
                "step",
                step,
                "too small for the budget: more than GreedyMarginal::MAX_STEPS steps",
            ));
        }
        let gain = |i: usize, tokens: u64| {
            let curve = &queries[i].curve();
            queries[i].weight()
                * (curve.utility((tokens + step) as f64) - curve.utility(tokens as f64))
        };
        let next_step = |i: usize, tokens: u64| {
            // checked, not saturating: a sum that saturates at a cap of u64::MAX would
            // pass the test and then overflow in `tokens + step`.
            tokens
                .checked_add(step)
                .is_some_and(|next| next <= caps[i])
                .then(|| Step {
                    gain: gain(i, tokens),
                    tokens,
                    index: i,
                })
        };
        let mut heap: BinaryHeap<Step> =
            (0..queries.len()).filter_map(|i| next_step(i, 0)).collect();
        let mut grants = vec![0u64; queries.len()];
        let mut left = budget;
        while left >= step {
            let Some(best) = heap.pop() else { break };
            grants[best.index] += step;
            left -= step;
            if let Some(next) = next_step(best.index, grants[best.index]) {
                heap.push(next);
            }
        }
        self.grid.finish(queries, grants, budget)
    }
}

/// The oracle: CLEAR run on the *true* curves instead of the predicted ones it is
/// handed. It bounds what a better threshold predictor could buy (the paper's §7.3).
///
/// ```
/// use clear_alloc_eval::baselines::Oracle;
/// use clear_alloc::{AllocationPolicy, Allocator, Query, ShiftedSurge};
///
/// let truth = [Query::new(ShiftedSurge::new(150.0, 100.0, 0.9)?)];
/// let predicted = [Query::new(ShiftedSurge::new(600.0, 100.0, 0.9)?)];
/// let oracle = Oracle::new(Allocator::default(), &truth);
/// let allocation = oracle.allocate(&predicted, 400)?;
/// assert_eq!(allocation, Allocator::default().allocate(&truth, 400)?);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Oracle<'a> {
    allocator: Allocator,
    truth: &'a [Query],
}

impl<'a> Oracle<'a> {
    /// CLEAR with `allocator`'s options, seeing `truth`: the true curves of the queries
    /// it will be asked to allocate, in the same order.
    pub fn new(allocator: Allocator, truth: &'a [Query]) -> Self {
        Oracle { allocator, truth }
    }
}

impl AllocationPolicy for Oracle<'_> {
    fn name(&self) -> &str {
        "oracle"
    }

    /// # Errors
    /// [`Error::InvalidParameter`] (field `queries`) when the batch is not as long as
    /// the true curves; otherwise as [`Allocator::allocate`] on the true curves.
    fn allocate(&self, queries: &[Query], budget: u64) -> Result<Allocation> {
        if queries.len() != self.truth.len() {
            return Err(Error::invalid_parameter(
                "queries",
                queries.len(),
                "must be as many as the oracle's true curves",
            ));
        }
        self.allocator.allocate(self.truth, budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use clear_alloc::{QueryRef, ShiftedSurge, Value};

    fn query(tau: f64, width: f64, ceiling: f64) -> Query {
        Query::new(ShiftedSurge::new(tau, width, ceiling).unwrap())
    }

    #[test]
    fn water_level_spends_the_budget_exactly_when_caps_bind() {
        // Shares 1, 2, 3 with caps 10, 100, 100: at s = 10 query 0 caps (10 + 20 + 30 =
        // 60 tokens); 100 tokens need 10 + 5 s' = 100, s' = 18.
        let s = water_level(&[1.0, 2.0, 3.0], &[10.0, 100.0, 100.0], 100.0);
        assert_relative_eq!(s, 18.0, max_relative = 1e-12);
        assert_eq!(water_level(&[1.0, 1.0], &[5.0, 5.0], 10.0), f64::INFINITY);
        assert_eq!(water_level(&[0.0], &[5.0], 10.0), f64::INFINITY);
    }

    #[test]
    fn trim_takes_the_excess_from_the_largest_grants() {
        assert_eq!(trim_to_budget(vec![5, 9, 3], 15), vec![5, 7, 3]);
        assert_eq!(trim_to_budget(vec![5, 9, 3], 17), vec![5, 9, 3]);
    }

    #[test]
    fn proportional_water_fills_under_caps() {
        let queries = [
            query(100.0, 50.0, 0.9).with_cap(150),
            query(100.0, 50.0, 0.9),
            query(300.0, 50.0, 0.9),
        ];
        // Uncapped, s = 1000/500 = 2 would give query 0 200 > 150; it caps at 150 and
        // the other two share 850 in proportion 1 : 3.
        let a = Proportional::default().allocate(&queries, 1000).unwrap();
        assert_eq!(a.tokens().collect::<Vec<_>>(), [150, 212, 637]);
    }

    #[test]
    fn proportional_without_thresholds_is_uniform() {
        let queries = [query(0.0, 50.0, 0.9), query(0.0, 80.0, 0.5)];
        let a = Proportional::new(10)
            .unwrap()
            .allocate(&queries, 255)
            .unwrap();
        assert_eq!(a.tokens().collect::<Vec<_>>(), [120, 120]);
    }

    #[test]
    fn greedy_feeds_the_first_query_past_its_threshold() {
        // Thresholds 40 and 100, 300 tokens in steps of 20. Every step below a
        // threshold gains exactly 0, so the ties go round-robin: query 0 to 20, query 1
        // to 20, query 0 to 40. Now query 0's next step is the only one that gains, and
        // it stays so (query 1 would need 100 tokens first): query 0 takes the other 240.
        let queries = [query(40.0, 30.0, 1.0), query(100.0, 30.0, 1.0)];
        let a = GreedyMarginal::new(20)
            .unwrap()
            .allocate(&queries, 300)
            .unwrap();
        assert_eq!(a.tokens().collect::<Vec<_>>(), [280, 20]);
    }

    #[test]
    fn greedy_respects_caps_and_leaves_the_remainder() {
        let queries = [
            query(0.0, 30.0, 1.0).with_cap(25),
            query(0.0, 30.0, 1.0).with_cap(35),
        ];
        let a = GreedyMarginal::new(10)
            .unwrap()
            .allocate(&queries, 1000)
            .unwrap();
        assert_eq!(a.tokens().collect::<Vec<_>>(), [20, 30]);
    }

    #[test]
    fn proportional_gives_nothing_to_a_zero_threshold_when_caps_fit() {
        // Caps 1000 + 1000 > 1500, but τ̂ = 0 wants nothing, so the other query's cap
        // (1000 ≤ 1500) is all that is demanded: the caps that matter fit.
        let queries = [
            query(0.0, 50.0, 0.9).with_cap(1000),
            query(100.0, 50.0, 0.9).with_cap(1000),
        ];
        let a = Proportional::default().allocate(&queries, 1500).unwrap();
        assert_eq!(a.tokens().collect::<Vec<_>>(), [0, 1000]);
        // The same when the budget covers every cap.
        let a = Proportional::default().allocate(&queries, 5000).unwrap();
        assert_eq!(a.tokens().collect::<Vec<_>>(), [0, 1000]);
    }

    #[test]
    fn greedy_takes_one_step_to_a_cap_of_u64_max() {
        // One step of u64::MAX tokens fits the cap exactly; a second would overflow.
        let queries = [query(10.0, 5.0, 1.0).with_cap(u64::MAX)];
        let a = GreedyMarginal::new(u64::MAX)
            .unwrap()
            .allocate(&queries, u64::MAX)
            .unwrap();
        assert_eq!(a.tokens().collect::<Vec<_>>(), [u64::MAX]);
    }

    #[test]
    fn huge_caps_budgets_and_granularities_do_not_overflow() {
        let queries = [
            query(10.0, 5.0, 1.0).with_cap(u64::MAX),
            query(20.0, 5.0, 1.0).with_cap(u64::MAX - 1),
            query(0.0, 5.0, 1.0),
        ];
        let half = 1u64 << 63;
        let policies: [&dyn AllocationPolicy; 6] = [
            &Uniform::new(half).unwrap(),
            &Uniform::new(1).unwrap().with_default_cap(u64::MAX),
            &Proportional::new(half).unwrap(),
            &Proportional::new(1).unwrap().with_default_cap(u64::MAX),
            &GreedyMarginal::new(half).unwrap(),
            &GreedyMarginal::new(u64::MAX)
                .unwrap()
                .with_default_cap(u64::MAX),
        ];
        for policy in policies {
            for budget in [0, 1, half, u64::MAX - 1, u64::MAX] {
                let a = policy.allocate(&queries, budget).unwrap();
                let total: u128 = a.tokens().map(u128::from).sum();
                assert!(total <= u128::from(budget), "{}: {budget}", policy.name());
            }
        }
    }

    #[test]
    fn greedy_refuses_more_than_max_steps_by_name() {
        let queries = [query(10.0, 5.0, 1.0).with_cap(u64::MAX)];
        let greedy = GreedyMarginal::new(1).unwrap();
        let err = greedy
            .allocate(&queries, GreedyMarginal::MAX_STEPS + 1)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidOption {
                    option: "step",
                    value: Value::Integer(1),
                    ..
                }
            ),
            "{err:?}"
        );
        // What bounds the work is the spendable total min(budget, Σ caps), not the
        // budget: a budget of u64::MAX over a 200-token cap is 100 steps of 2.
        let coarse = GreedyMarginal::new(2).unwrap();
        let spend = |budget| {
            let capped = [query(10.0, 5.0, 1.0).with_cap(200)];
            coarse.allocate(&capped, budget).map(|a| a.total_tokens())
        };
        assert_eq!(spend(u64::MAX).unwrap(), 200);
        assert_eq!(spend(2 * GreedyMarginal::MAX_STEPS + 2).unwrap(), 200);
    }

    #[test]
    fn zero_granularity_and_step_are_rejected_by_name() {
        let options = [
            Uniform::new(0).unwrap_err(),
            Proportional::new(0).unwrap_err(),
            GreedyMarginal::new(0).unwrap_err(),
        ];
        let names: Vec<_> = options
            .iter()
            .map(|e| match e {
                Error::InvalidOption { option, .. } => *option,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(names, ["granularity", "granularity", "step"]);
    }

    #[test]
    fn bad_weights_are_refused_before_any_policy_sees_them() {
        // A query is validated when built, so no policy can be handed a bad weight;
        // a batch names the query by position and id as the allocator's errors do.
        let err = query(10.0, 5.0, 1.0)
            .with_id("q")
            .with_weight(f64::NAN)
            .unwrap_err()
            .for_query(QueryRef::at(1, Some("q")));
        assert!(
            matches!(&err, Error::InvalidQuery { query, field: "weight", .. }
                if query.index == Some(1) && query.id.as_deref() == Some("q")),
            "{err:?}"
        );
    }

    #[test]
    fn oracle_rejects_a_batch_of_another_length() {
        let truth = [query(10.0, 5.0, 1.0)];
        let oracle = Oracle::new(Allocator::default(), &truth);
        assert!(matches!(
            oracle.allocate(&[], 10),
            Err(Error::InvalidParameter {
                field: "queries",
                ..
            })
        ));
    }
}
