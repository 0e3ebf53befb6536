//! The allocator's reusable memory: a server that allocates at every scheduling step
//! keeps one [`Workspace`] and passes it to [`Allocator::allocate_with`], so that after
//! the first call of a given size the solver's buffers as long as the batch are
//! memory it already holds.

use super::allocation::Allocation;
use super::market::{ClearBuffers, Market};
use super::BidRule;
#[cfg(doc)]
use super::{Allocator, Query};
use crate::model::{Curve, ShiftedSurge};

/// Memory for [`Allocator::allocate_with`], kept between calls: the prepared bidders,
/// the bids at the ends of the price bracket, and the [`Allocation`] itself, which the
/// call fills and lends back.
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
    /// Utilities of the granted queries, before they are summed in order.
    pub(super) utilities: Vec<f64>,
    pub(super) allocation: Allocation,
}

impl<C: Curve> Workspace<C> {
    /// An empty workspace; it grows to the largest batch it has served.
    pub fn new() -> Self {
        Workspace {
            market: Market::empty(BidRule::Rational),
            clearing: ClearBuffers::default(),
            utilities: Vec::new(),
            allocation: Allocation::empty(),
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
