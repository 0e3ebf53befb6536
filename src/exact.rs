//! The exact optimum of the (non-concave) allocation problem on a token grid, by
//! dynamic programming: the reference that the price solution and the baselines are
//! measured against.
//!
//! Grants are restricted to multiples of a grid step `δ`; with `K = budget/δ` cells
//! and `k_i = cap_i/δ`, the table costs `O(Σ_i K·k_i) ≤ O(N·K²)` time and `O(N·K)`
//! memory (one `u32` choice per query and cell, to recover the grants). A few hundred
//! queries at a few thousand cells take well under a second; the solver refuses
//! tables larger than [`ExactOptimum::MAX_TABLE`] entries, or more than
//! [`ExactOptimum::MAX_WORK`] steps, rather than exhaust memory or time.
//!
//! The grid optimum is a lower bound on the true optimum; the gap is the *grid error*,
//! at most `Σ_i max φ_i · δ`.

use crate::error::{at_least_one, Error, Result, Subject};
use crate::model::Curve;
use crate::solver::{Allocation, AllocationPolicy, Query};

/// Exact optimum by dynamic programming on a token grid.
///
/// ```
/// use clear_alloc::{exact::ExactOptimum, AllocationPolicy, Allocator, Query, ShiftedSurge};
///
/// let queries: Vec<Query> = [(100.0, 60.0), (300.0, 120.0), (500.0, 200.0)]
///     .iter()
///     .map(|&(tau, w)| Query::new(ShiftedSurge::new(tau, w, 1.0).unwrap()).with_cap(2000))
///     .collect();
/// let optimum = ExactOptimum::builder().grid(10).build()?.allocate(&queries, 1200)?;
/// let clear = Allocator::default().allocate(&queries, 1200)?;
/// assert!(clear.total_utility() >= optimum.total_utility() - 1.0); // one ceiling
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ExactOptimum {
    grid: u64,
    default_cap: u64,
}

/// Configures an [`ExactOptimum`]; every option has a default.
#[derive(Debug, Clone, PartialEq)]
pub struct ExactOptimumBuilder {
    grid: u64,
    default_cap: u64,
}

impl Default for ExactOptimumBuilder {
    fn default() -> Self {
        ExactOptimumBuilder {
            grid: 1,
            default_cap: crate::Allocator::DEFAULT_CAP,
        }
    }
}

impl ExactOptimumBuilder {
    /// Grants are multiples of this many tokens (≥ 1); default 1, exact on whole
    /// tokens, which only small budgets afford (see [`ExactOptimum::MAX_TABLE`]).
    pub fn grid(mut self, tokens: u64) -> Self {
        self.grid = tokens;
        self
    }

    /// Cap for queries without one of their own; default
    /// [`Allocator::DEFAULT_CAP`](crate::Allocator::DEFAULT_CAP).
    pub fn default_cap(mut self, tokens: u64) -> Self {
        self.default_cap = tokens;
        self
    }

    /// Checks the options and builds the solver.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when the grid is 0.
    pub fn build(self) -> Result<ExactOptimum> {
        at_least_one(Subject::Option, "grid", self.grid)?;
        Ok(ExactOptimum {
            grid: self.grid,
            default_cap: self.default_cap,
        })
    }
}

impl ExactOptimum {
    /// Largest DP table (queries × cells) the solver accepts: bounds the memory.
    pub const MAX_TABLE: u64 = 50_000_000;

    /// Most inner steps (Σ over queries of grant steps × cells) the solver accepts:
    /// bounds the time, to a few tens of seconds on one core.
    pub const MAX_WORK: u64 = 20_000_000_000;

    /// A builder with the default options.
    pub fn builder() -> ExactOptimumBuilder {
        ExactOptimumBuilder::default()
    }

    /// The grid step in tokens.
    pub fn grid(&self) -> u64 {
        self.grid
    }

    /// Cap for queries without one of their own.
    pub fn default_cap(&self) -> u64 {
        self.default_cap
    }
}

impl AllocationPolicy for ExactOptimum {
    fn name(&self) -> &str {
        "exact DP"
    }

    /// # Errors
    /// As [`ExactOptimum::allocate`].
    fn allocate(&self, queries: &[Query], budget: u64) -> Result<Allocation> {
        ExactOptimum::allocate(self, queries, budget)
    }
}

impl ExactOptimum {
    /// The exact optimum on the grid for queries with any [`Curve`]: the DP needs only
    /// each curve's utility at the grid points.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when the
    /// table would exceed [`ExactOptimum::MAX_TABLE`] entries or the work
    /// [`ExactOptimum::MAX_WORK`] steps.
    pub fn allocate<C: Curve>(&self, queries: &[Query<C>], budget: u64) -> Result<Allocation> {
        if queries.is_empty() {
            return Allocation::from_tokens(queries, Vec::new(), self.default_cap, Some(budget));
        }
        let cells = budget / self.grid;
        let steps: Vec<u64> = queries
            .iter()
            .map(|q| (q.cap().unwrap_or(self.default_cap) / self.grid).min(cells))
            .collect();
        let table = (queries.len() as u64).saturating_mul(cells.saturating_add(1));
        // Work: every query tries every grant at every cell.
        let work = steps
            .iter()
            .fold(0u64, |sum, &k| sum.saturating_add(k.saturating_mul(cells)));
        if table > Self::MAX_TABLE || work > Self::MAX_WORK {
            return Err(Error::invalid_option(
                "grid",
                self.grid,
                "too fine for this budget and batch: the DP table or its work is too large",
            ));
        }
        let cells = cells as usize;
        // best[k]: the most utility the queries so far can get from at most k cells.
        let mut best = vec![0.0f64; cells + 1];
        let mut next = vec![0.0f64; cells + 1];
        let mut choice = vec![0u32; queries.len() * (cells + 1)];
        let mut values = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            let most = steps[i] as usize;
            values.clear();
            values.extend((0..=most).map(|m| q.utility((m as u64 * self.grid) as f64)));
            let row = &mut choice[i * (cells + 1)..(i + 1) * (cells + 1)];
            for k in 0..=cells {
                let (mut top, mut arg) = (best[k], 0);
                for m in 1..=most.min(k) {
                    let v = best[k - m] + values[m];
                    if v > top {
                        top = v;
                        arg = m;
                    }
                }
                next[k] = top;
                row[k] = arg as u32;
            }
            std::mem::swap(&mut best, &mut next);
        }
        let mut grants = vec![0u64; queries.len()];
        let mut k = cells;
        for i in (0..queries.len()).rev() {
            let m = choice[i * (cells + 1) + k] as usize;
            grants[i] = m as u64 * self.grid;
            k -= m;
        }
        Allocation::from_tokens(queries, grants, self.default_cap, Some(budget))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShiftedSurge;

    #[test]
    fn matches_brute_force_on_tiny_instances() {
        let curves = [(20.0, 10.0, 1.0), (50.0, 5.0, 0.6), (0.0, 30.0, 0.3)];
        let queries: Vec<Query> = curves
            .iter()
            .map(|&(t, w, p)| Query::new(ShiftedSurge::new(t, w, p).unwrap()).with_cap(100))
            .collect();
        for budget in [0u64, 10, 40, 75, 130, 300] {
            let dp = ExactOptimum::builder()
                .grid(5)
                .build()
                .unwrap()
                .allocate(&queries, budget)
                .unwrap();
            let mut brute = 0.0f64;
            for a in (0..=100).step_by(5) {
                for b in (0..=100).step_by(5) {
                    for c in (0..=100).step_by(5) {
                        if a + b + c <= budget {
                            let u = queries[0].curve().utility(a as f64)
                                + queries[1].curve().utility(b as f64)
                                + queries[2].curve().utility(c as f64);
                            brute = brute.max(u);
                        }
                    }
                }
            }
            approx::assert_relative_eq!(dp.total_utility(), brute, max_relative = 1e-12);
            assert!(dp.total_tokens() <= budget);
        }
    }

    #[test]
    fn refuses_unbounded_budgets_and_work() {
        let q = vec![Query::new(ShiftedSurge::new(1.0, 1.0, 1.0).unwrap()).with_cap(u64::MAX)];
        let err = ExactOptimum::builder()
            .grid(1)
            .build()
            .unwrap()
            .allocate(&q, u64::MAX)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidOption { option: "grid", .. }));
        let none = ExactOptimum::builder()
            .grid(1)
            .build()
            .unwrap()
            .allocate::<ShiftedSurge>(&[], u64::MAX)
            .unwrap();
        assert_eq!(none.total_tokens(), 0);
        // A small table but 8 · 200 000² steps: refused for time, not memory.
        let q = vec![Query::new(ShiftedSurge::new(1.0, 1.0, 1.0).unwrap()).with_cap(200_000); 8];
        assert!(ExactOptimum::builder()
            .build()
            .unwrap()
            .allocate(&q, 200_000)
            .is_err());
    }

    #[test]
    fn refuses_oversized_tables() {
        let q = vec![Query::new(ShiftedSurge::new(1.0, 1.0, 1.0).unwrap()); 1000];
        let err = ExactOptimum::builder()
            .grid(1)
            .build()
            .unwrap()
            .allocate(&q, 1_000_000)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidOption { option: "grid", .. }));
        let err = ExactOptimum::builder().grid(0).build().unwrap_err();
        assert_eq!(err.to_string(), "option grid = 0 is invalid: must be >= 1");
    }
}
