//! The result of an allocation: per-query grants, utilities and decisions, the
//! price and the totals.

use super::Query;
use crate::error::{Error, QueryRef, Result};

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
    pub(super) queries: Vec<QueryAllocation>,
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
    /// [`Error::InvalidQuery`] when a grant exceeds its query's cap;
    /// [`Error::InvalidParameter`] when the lengths differ or the grants (summed
    /// exactly) exceed `budget`.
    pub fn from_tokens<C: crate::Curve>(
        queries: &[Query<C>],
        tokens: Vec<u64>,
        default_cap: u64,
        budget: Option<u64>,
    ) -> Result<Allocation> {
        if tokens.len() != queries.len() {
            return Err(Error::invalid_parameter(
                "tokens",
                tokens.len(),
                "must have one entry per query",
            ));
        }
        let mut out = Vec::with_capacity(queries.len());
        for (index, (query, &granted)) in queries.iter().zip(&tokens).enumerate() {
            let cap = query.cap().unwrap_or(default_cap);
            if granted > cap {
                return Err(Error::invalid_query(
                    QueryRef::at(index, query.id()),
                    "tokens",
                    granted,
                    "exceeds the query's cap",
                ));
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
                utility: query.utility(granted as f64),
                decision,
            });
        }
        // In u128: the grants of two queries with huge caps can sum past u64::MAX,
        // where a saturating u64 sum would compare as within a budget of u64::MAX.
        let total: u128 = tokens.iter().map(|&t| u128::from(t)).sum();
        if let Some(budget) = budget {
            if total > u128::from(budget) {
                return Err(Error::invalid_parameter(
                    "tokens",
                    total,
                    "the grants exceed the budget",
                ));
            }
        }
        Ok(Allocation::assemble(out, None, None, budget, 0))
    }

    /// An empty allocation, to be filled by [`Allocation::reset`] and
    /// [`Allocation::seal`].
    pub(super) fn empty() -> Allocation {
        Allocation::assemble(Vec::new(), None, None, None, 0)
    }

    /// What a query that gets nothing and was not displaced is.
    pub(super) const ABANDONED: QueryAllocation = QueryAllocation {
        tokens: 0,
        utility: 0.0,
        decision: Decision::Abandoned,
    };

    /// Starts over for `n` queries in the memory already held: the results, every
    /// one [`Allocation::ABANDONED`] from the returned position on, and before it as
    /// the last call left them, for the caller to write.
    pub(super) fn resize(&mut self, n: usize) -> (&mut [QueryAllocation], usize) {
        let stale = self.queries.len().min(n);
        self.queries.resize(n, Self::ABANDONED);
        (&mut self.queries, stale)
    }

    /// Sets the prices and totals once the per-query results are in place; the caller
    /// sums the grants and utilities (in query order, so the utility sum is the one
    /// [`Allocation::assemble`] would give).
    pub(super) fn seal(
        &mut self,
        prices: (Option<f64>, Option<f64>),
        budget: Option<u64>,
        passes: usize,
        totals: (u128, f64),
    ) {
        self.price = prices.0;
        self.marginal_price = prices.1;
        self.budget = budget;
        self.total_tokens = u64::try_from(totals.0).unwrap_or(u64::MAX);
        self.total_utility = totals.1;
        self.passes = passes;
    }

    pub(super) fn assemble(
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

    /// Passes over the batch the solver made (a measure of its cost; for tests and
    /// benchmarks of the solver, not part of the stable API).
    #[doc(hidden)]
    pub fn passes(&self) -> usize {
        self.passes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShiftedSurge;

    fn queries(n: usize) -> Vec<Query> {
        vec![Query::new(ShiftedSurge::new(100.0, 50.0, 0.9).unwrap()); n]
    }

    #[test]
    fn from_tokens_decides_by_grant_and_cap() {
        let qs = [queries(2), vec![queries(1)[0].clone().with_cap(300)]].concat();
        let a = Allocation::from_tokens(&qs, vec![0, 250, 300], 1000, Some(600)).unwrap();
        let decisions: Vec<Decision> = a.queries().iter().map(|q| q.decision).collect();
        assert_eq!(
            decisions,
            [Decision::Abandoned, Decision::Funded, Decision::Capped]
        );
        assert_eq!((a.total_tokens(), a.leftover()), (550, 50));
        assert_eq!(a.abandoned().collect::<Vec<_>>(), [0]);
        assert_eq!(a.price(), None);
    }

    #[test]
    fn from_tokens_names_the_query_and_counts_exactly() {
        let qs = queries(2);
        let err = Allocation::from_tokens(&qs, vec![1, 2001], 2000, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "query 1: tokens = 2001 is invalid: exceeds the query's cap"
        );
        let err = Allocation::from_tokens(&qs, vec![1], 2000, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokens = 1 is invalid: must have one entry per query"
        );
        let err = Allocation::from_tokens(&qs, vec![600, 601], 2000, Some(1200)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokens = 1201 is invalid: the grants exceed the budget"
        );
    }

    #[test]
    fn empty_batch_has_zero_rates() {
        let a = Allocation::from_tokens::<ShiftedSurge>(&[], vec![], 1, Some(5)).unwrap();
        assert_eq!((a.mean_utility(), a.abandonment_rate()), (0.0, 0.0));
        assert_eq!(a.leftover(), 5);
    }
}
