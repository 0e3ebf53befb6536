//! Where an [`OnlineAllocator`](super::OnlineAllocator) gets its window budget from.
//!
//! The lease model is documented on [`BudgetLedger`].

use super::clear::clear_price;
use super::reservoir::SampledQuery;
use crate::model::{Curve, ShiftedSurge};
use std::fmt;

/// Tokens granted by a [`BudgetLedger`], and when to ask for more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lease {
    /// Tokens added to what the allocator holds for the window (may be 0).
    pub tokens: u64,
    /// Ask for more once fewer than this many tokens are held (or a request wants
    /// more than is held); 0: do not ask again in this window (the in-process ledger,
    /// or a spent budget). A window that opens with 0 splits its tokens into
    /// per-thread shards; one with a low-water mark admits on one word all window
    /// long, where the allocator sees its held tokens run low.
    pub refill_below: u64,
}

/// A source of window budgets for an [`OnlineAllocator`](super::OnlineAllocator):
/// the allocator's own budget ([`InProcessLedger`], the default) or a budget shared by
/// a fleet of allocators (the `clear-alloc-redis` crate).
///
/// # The lease model
///
/// The allocator admits against tokens it *holds* for the current window (its central
/// pool and its threads' shards), never against a shared counter, so `admit` stays O(1) and lock-free
/// whatever the ledger. The ledger hands tokens out in leases:
///
/// 1. At each window's start ([`BudgetLedger::open`]) the allocator receives its first
///    lease and a low-water mark.
/// 2. When an admission leaves fewer held tokens than the low-water mark, or a request
///    wants more than is held, one thread at a time asks for more
///    ([`BudgetLedger::extend`]); the others keep admitting against what is held.
/// 3. At the window's end ([`BudgetLedger::release`]) the tokens still held go back.
///
/// The allocator charges a window `leased − released`, and a ledger grants at most
/// what its window budget has left, so the tokens charged in a window summed over
/// every allocator sharing a ledger never exceed the window budget. Refunds
/// ([`OnlineAllocator::complete`](super::OnlineAllocator::complete)) go back to the
/// tokens the allocator holds, so they are spent again or released, never minted.
///
/// [`InProcessLedger`], the default, leases the whole budget at each window's start
/// and has no low-water mark: the allocator never calls it between windows, which is
/// the behaviour of an allocator that owns its budget.
///
/// # Implementing a ledger
///
/// Implementations must never grant, summed over every allocator they serve, more
/// tokens for a window than its budget minus what was released to it. The allocator
/// calls `extend` from a request's thread (never two at once per allocator), and
/// `open`, `release` and `next_price` from [`end_window`](super::OnlineAllocator::end_window)
/// (and `open` once from `build`). None of them may panic; a ledger that cannot reach
/// its store grants what it can (possibly 0) and reports the fault its own way.
pub trait BudgetLedger<C: Curve = ShiftedSurge>: Send + Sync + fmt::Debug {
    /// Starts window `window` (the allocator's 0-based count) whose budget is
    /// `budget` tokens: the allocator's first lease for it.
    fn open(&self, window: u64, budget: u64) -> Lease;

    /// More tokens for the open window `window`: at least `needed` if it can (0 when
    /// the call is a low-water refill), at most what the window has left.
    fn extend(&self, window: u64, needed: u64) -> Lease;

    /// `unused` tokens leased for window `window` go back to its budget: at the
    /// window's end (after the next one was opened) the tokens still held, or at once
    /// the part of a lease that would lift the allocator's holding above the budget.
    fn release(&self, window: u64, unused: u64);

    /// The price the next window admits at, given what this allocator saw in the
    /// window that closed. The default is the allocator's own re-clear,
    /// [`ClosedWindow::local_price`]; a fleet publishes the sample and clears one price
    /// for all replicas with [`ClosedWindow::clear`].
    fn next_price(&self, closed: &ClosedWindow<'_, C>) -> f64 {
        closed.local_price()
    }

    /// The price a new allocator starts at, when the ledger knows one (a fleet's
    /// current price, so that a replica joining a running fleet does not admit at its
    /// initial price); `None` (the default) keeps the builder's initial price. Called
    /// once, from `build`, after the first `open`.
    fn current_price(&self, _window: u64) -> Option<f64> {
        None
    }
}

/// The default ledger: the allocator owns the whole budget of every window.
///
/// ```
/// use clear_alloc::online::{BudgetLedger, InProcessLedger};
///
/// let ledger: &dyn BudgetLedger = &InProcessLedger;
/// let lease = ledger.open(0, 10_000);
/// assert_eq!((lease.tokens, lease.refill_below), (10_000, 0));
/// assert_eq!(ledger.extend(0, 50).tokens, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InProcessLedger;

impl<C: Curve> BudgetLedger<C> for InProcessLedger {
    fn open(&self, _window: u64, budget: u64) -> Lease {
        Lease {
            tokens: budget,
            refill_below: 0,
        }
    }

    fn extend(&self, _window: u64, _needed: u64) -> Lease {
        Lease::default()
    }

    fn release(&self, _window: u64, _unused: u64) {}
}

/// What one allocator saw in the window that just closed, handed to
/// [`BudgetLedger::next_price`].
#[derive(Debug)]
pub struct ClosedWindow<'a, C: Curve = ShiftedSurge> {
    pub(super) window: u64,
    pub(super) arrivals: u64,
    pub(super) charged: u64,
    pub(super) budget: u64,
    pub(super) sample: &'a [SampledQuery<C>],
    pub(super) history_windows: usize,
    pub(super) target: f64,
    pub(super) price: f64,
    pub(super) local_price: f64,
}

impl<C: Curve> ClosedWindow<'_, C> {
    /// The window that closed (the allocator's 0-based count).
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Requests this allocator admitted in the window (sampled or not).
    pub fn arrivals(&self) -> u64 {
        self.arrivals
    }

    /// Tokens this allocator charged the window, net of refunds.
    pub fn charged(&self) -> u64 {
        self.charged
    }

    /// The window's budget (a fleet's total when the ledger is shared).
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// This allocator's reservoir sample of the window's arrivals; each stands for
    /// `arrivals / sample.len()` of them.
    pub fn sample(&self) -> &[SampledQuery<C>] {
        self.sample
    }

    /// How many recent windows the price is cleared against.
    pub fn history_windows(&self) -> usize {
        self.history_windows
    }

    /// The price the window admitted at.
    pub fn price(&self) -> f64 {
        self.price
    }

    /// The price re-cleared from this allocator's own history alone.
    pub fn local_price(&self) -> f64 {
        self.local_price
    }

    /// The price that clears a merged sample: `weighted` holds sampled arrivals with
    /// the number of requests each stands for in one average window (for a fleet:
    /// `arrivals / sample length` of its replica's window, divided by the number of
    /// windows merged). The target is the window budget, scaled as the allocator's own
    /// re-clear scales it for refunds; the search starts at the window's price.
    /// Allocates the search's scratch space: call it once per window.
    pub fn clear(&self, weighted: &[(SampledQuery<C>, f64)]) -> f64 {
        let sample: Vec<_> = weighted
            .iter()
            .filter(|(_, weight)| weight.is_finite() && *weight > 0.0)
            .map(|(q, weight)| (q.bidder(), *weight))
            .collect();
        clear_price::<C>(&sample, self.target, self.price)
    }
}

#[cfg(test)]
mod tests {
    use super::super::OnlineAllocator;
    use super::*;
    use crate::{Query, ShiftedSurge};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    /// A fleet ledger in memory: one budget, leases of `chunk` tokens, and a record
    /// of every price request.
    #[derive(Debug)]
    struct Shared {
        left: AtomicU64,
        chunk: u64,
        merged: Mutex<Vec<(SampledQuery, f64)>>,
        current: Option<f64>,
    }

    impl Shared {
        /// Leases of `chunk` tokens; `current` is the fleet price it reports.
        fn new(chunk: u64, current: Option<f64>) -> Arc<Self> {
            Arc::new(Shared {
                left: AtomicU64::new(0),
                chunk,
                merged: Mutex::new(Vec::new()),
                current,
            })
        }

        fn take(&self, wanted: u64) -> u64 {
            let mut left = self.left.load(Ordering::Acquire);
            loop {
                let grant = wanted.min(left);
                match self.left.compare_exchange(
                    left,
                    left - grant,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return grant,
                    Err(now) => left = now,
                }
            }
        }
    }

    impl BudgetLedger for Shared {
        fn open(&self, _window: u64, budget: u64) -> Lease {
            // Every window starts afresh for this test ledger's single user.
            self.left.store(budget, Ordering::Release);
            self.extend(0, 0)
        }

        fn extend(&self, _window: u64, needed: u64) -> Lease {
            Lease {
                tokens: self.take(needed.max(self.chunk)),
                refill_below: self.chunk / 2,
            }
        }

        fn release(&self, _window: u64, unused: u64) {
            self.left.fetch_add(unused, Ordering::AcqRel);
        }

        fn current_price(&self, _window: u64) -> Option<f64> {
            self.current
        }

        fn next_price(&self, closed: &ClosedWindow<'_>) -> f64 {
            let weight = closed.arrivals() as f64 / closed.sample().len().max(1) as f64;
            let mut merged = self.merged.lock().unwrap();
            merged.clear();
            merged.extend(closed.sample().iter().map(|&q| (q, weight)));
            closed.clear(&merged)
        }
    }

    /// Threshold 0: at price 0 any slice of the cap is worth granting.
    fn query() -> Query {
        Query::new(ShiftedSurge::new(0.0, 100.0, 0.9).unwrap()).with_cap(300)
    }

    #[test]
    fn an_allocator_on_leases_admits_the_whole_budget_and_charges_leased_minus_released() {
        let ledger = Shared::new(1_000, None);
        let online = OnlineAllocator::builder()
            .tokens_per_window(10_000)
            .history_windows(1)
            .ledger(ledger.clone())
            .build()
            .unwrap();
        assert_eq!(online.remaining(), 1_000, "the first lease is one chunk");
        let granted: u64 = (0..40)
            .map(|_| online.admit(&query()).unwrap().tokens())
            .sum();
        // 33 grants of 300 use 9 900 tokens; the 34th gets the last 100 (its best
        // response under what is left); the rest are abandoned.
        assert_eq!(granted, 10_000);
        assert_eq!(ledger.left.load(Ordering::Acquire), 0);
        let report = online.end_window();
        assert_eq!(report.charged, 10_000);
        assert_eq!(report.arrivals, 40);
    }

    #[test]
    fn unused_lease_goes_back_at_the_window_end_and_refunds_stay_local() {
        let ledger = Shared::new(1_000, None);
        let online = OnlineAllocator::builder()
            .tokens_per_window(10_000)
            .ledger(ledger.clone())
            .build()
            .unwrap();
        let ticket = online.admit(&query()).unwrap();
        assert_eq!(ticket.tokens(), 300);
        assert_eq!(online.complete(ticket, 100).unwrap(), 200);
        // The refund went back to the held lease, not to the shared budget.
        assert_eq!(online.remaining(), 900);
        assert_eq!(ledger.left.load(Ordering::Acquire), 9_000);
        let report = online.end_window();
        assert_eq!(report.charged, 100);
        // The next window was opened (a fresh budget minus its first chunk) before
        // the 900 unused tokens of the last one came back.
        assert_eq!(ledger.left.load(Ordering::Acquire), 9_000 + 900);
    }

    #[test]
    fn a_new_allocator_starts_at_the_ledgers_current_price() {
        let ledger = Shared::new(1_000, Some(2.5e-4));
        let builder = OnlineAllocator::builder()
            .tokens_per_window(10_000)
            .initial_price(1e-3);
        assert_eq!(builder.clone().build().unwrap().price(), 1e-3);
        assert_eq!(builder.ledger(ledger).build().unwrap().price(), 2.5e-4);
    }

    #[test]
    fn the_ledger_sets_the_next_price_from_the_merged_sample() {
        let ledger = Shared::new(100_000, None);
        let online = OnlineAllocator::builder()
            .tokens_per_window(3_000)
            .history_windows(1)
            .ledger(ledger.clone())
            .build()
            .unwrap();
        for _ in 0..30 {
            let _ = online.admit(&query()).unwrap();
        }
        let report = online.end_window();
        // The same single-window sample cleared locally gives the same price.
        let local = OnlineAllocator::builder()
            .tokens_per_window(3_000)
            .history_windows(1)
            .build()
            .unwrap();
        for _ in 0..30 {
            let _ = local.admit(&query()).unwrap();
        }
        assert!(report.next_price > 0.0);
        assert_eq!(report.next_price, local.end_window().next_price);
        assert_eq!(ledger.merged.lock().unwrap().len(), 30);
    }
}
