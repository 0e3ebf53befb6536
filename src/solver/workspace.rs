//! The allocator's reusable memory: a server that allocates at every scheduling step
//! keeps one [`Workspace`] and passes it to [`Allocator::allocate_with`], so that after
//! the first call of a given size the solver's buffers as long as the batch are
//! memory it already holds.

use super::allocation::Allocation;
use super::chunks;
use super::market::{ClearBuffers, Market};
use super::scratch::Scratch;
use super::subset::Bidders;
#[cfg(doc)]
use super::Allocator;
use super::{utility_of, weighted_utility, BidRule, Bidding, Query};
use crate::model::{Curve, ShiftedSurge};

/// Memory for [`Allocator::allocate_with`], kept between calls: the prepared bidders,
/// the bids at the ends of the price bracket, the leftover step's and rounding's
/// vectors, and the [`Allocation`] itself, which the call fills and lends back.
///
/// One workspace serves batches of any size and any allocator; it holds no results
/// that carry over from one call to the next (each call starts afresh), only memory.
/// It is typed by the curve of the queries, [`ShiftedSurge`] unless said otherwise.
///
/// ```
/// use clear_alloc::{Allocator, Query, ShiftedSurge, Workspace};
///
/// let allocator = Allocator::default();
/// let mut workspace = Workspace::new();
/// for step in 0..3 {
///     let queries: Vec<Query> = (0..100)
///         .map(|i| Query::new(ShiftedSurge::new(100.0 + (i + step) as f64, 80.0, 0.9).unwrap()))
///         .collect();
///     let allocation = allocator.allocate_with(&mut workspace, &queries, 20_000)?;
///     assert!(allocation.total_tokens() <= 20_000);
///     // The same result as the plain call, without fresh memory.
///     assert_eq!(*allocation, allocator.allocate(&queries, 20_000)?);
/// }
/// # Ok::<(), clear_alloc::Error>(())
/// ```
pub struct Workspace<C: Curve = ShiftedSurge> {
    pub(super) market: Market<C::Bidder>,
    pub(super) clearing: ClearBuffers<C::Bidder>,
    pub(super) utilities: Utilities<C>,
    pub(super) scratch: Scratch,
    pub(super) allocation: Allocation,
}

impl<C: Curve> Workspace<C> {
    /// An empty workspace; it grows to the largest batch it has served.
    pub fn new() -> Self {
        Workspace {
            market: Market::empty(BidRule::Rational),
            clearing: ClearBuffers::default(),
            utilities: Utilities::default(),
            scratch: Scratch::new(),
            allocation: Allocation::empty(),
        }
    }

    /// A workspace for one call: it keeps no leftover-step vectors between its uses
    /// (see [`Scratch::one_shot`]).
    pub(super) fn one_shot() -> Self {
        Workspace {
            scratch: Scratch::one_shot(),
            ..Workspace::new()
        }
    }

    /// The allocation of the latest call (empty before the first), taken out of the
    /// workspace, which keeps the rest of its memory.
    pub fn take_allocation(&mut self) -> Allocation {
        std::mem::replace(&mut self.allocation, Allocation::empty())
    }
}

impl<C: Curve> Default for Workspace<C> {
    fn default() -> Self {
        Workspace::new()
    }
}

impl<C: Curve> std::fmt::Debug for Workspace<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("queries", &self.market.len())
            .finish_non_exhaustive()
    }
}

/// The utilities of an allocation's members, before they are summed in order, and
/// the memory that computes them.
pub(super) struct Utilities<C> {
    pub values: Vec<f64>,
    /// The members' curves and weights, side by side.
    curves: Vec<(C, f64)>,
}

impl<C> Default for Utilities<C> {
    fn default() -> Self {
        Utilities {
            values: Vec::new(),
            curves: Vec::new(),
        }
    }
}

impl<C: Curve> Utilities<C> {
    /// `values[k]`: the utility of member `k` of `members` granted `grants[k]` (on
    /// several threads for many with the `parallel` feature).
    pub fn compute<B: Bidding>(
        &mut self,
        queries: &[Query<C>],
        members: &(impl Bidders<B> + Sync),
        grants: &[u64],
    ) {
        if !B::COMPACT {
            chunks::map_into(grants, &mut self.values, |k, &tokens| {
                utility_of(&queries[members.query(k)], tokens)
            });
            return;
        }
        // A small curve is copied out of its query first: this loop's loads overlap,
        // where the utility's own loop would stall on each scattered query in turn
        // (measured: about a tenth of an allocation of 10⁶ queries).
        chunks::map_into(grants, &mut self.curves, |k, _| {
            let query = &queries[members.query(k)];
            (query.curve().clone(), query.weight())
        });
        let curves = &self.curves;
        chunks::map_into(grants, &mut self.values, |k, &tokens| {
            let (curve, weight) = &curves[k];
            weighted_utility(curve, *weight, tokens)
        });
    }
}
