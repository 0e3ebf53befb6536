//! The window boundary: the held lease goes back to the ledger, the next window opens
//! with a fresh lease, and the price is re-cleared from the recent demand.

use super::clear::clear_price;
use super::ledger::ClosedWindow;
use super::reservoir::SampledQuery;
use super::shard::{open_tokens, opening, pooled_mark};
use super::window::{pack, packed_remaining, short_epoch};
use super::{lock, OnlineAllocator};
use crate::model::Curve;
use std::sync::atomic::Ordering;

/// What happened in one window, returned by [`OnlineAllocator::end_window`].
///
/// `charged` is exact. The counts (`arrivals`, `abandoned`, `refunded`) are statistics:
/// a call that races with the window boundary may be counted in the neighbouring
/// window (an arrival before the boundary, its abandonment after it, so one window's
/// `abandoned` can exceed its `arrivals`), though their sums over all windows are
/// exact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowReport {
    /// The window that ended (0-based).
    pub window: u64,
    /// Requests admitted during the window (including abandoned ones).
    pub arrivals: u64,
    /// Requests granted 0 tokens.
    pub abandoned: u64,
    /// Tokens the window paid for net of refunds: what this allocator leased for it
    /// minus what it held at its end (`budget − remaining` with the in-process
    /// ledger); never more than the budget, nor, summed over the allocators sharing a
    /// ledger, than the budget.
    pub charged: u64,
    /// Refunds credited back to the window while it was open.
    pub refunded: u64,
    /// The window's budget (the fleet's total with a shared ledger).
    pub budget: u64,
    /// The price the window admitted at.
    pub price: f64,
    /// The price re-cleared for the next window.
    pub next_price: f64,
}

#[derive(Debug)]
pub(super) struct Clearing<C: Curve> {
    /// Scratch space for the weighted sample (allocated once, at build).
    pub(super) weighted: Vec<(C::Bidder, f64)>,
    /// The closed window's own sample, handed to the ledger (allocated once).
    pub(super) closed: Vec<SampledQuery<C>>,
    /// Smoothed share of the gross grants that windows end up paying for.
    pub(super) spent_share: f64,
}

impl<C: Curve> OnlineAllocator<C> {
    /// Ends the current window: opens the next one with a fresh lease from the ledger
    /// (the full budget, by default), returns the unused tokens of this one, and
    /// re-clears the price against the demand of the last `history_windows` windows,
    /// starting from the current price (or takes the price a shared ledger sets).
    /// Call it from one timer (concurrent calls are serialised). Cost: about 20–40
    /// passes over at most `history_windows × samples_per_window` samples, one W₋₁
    /// evaluation each, plus what the ledger's calls cost.
    pub fn end_window(&self) -> WindowReport {
        let mut leases = lock(&self.leases);
        let mut clearing = lock(&self.clearing);
        let price = self.price();
        let epoch = self.epoch.load(Ordering::Acquire);
        // The next window's lease is in hand before this window stops admitting, so a
        // ledger's round trip never leaves the allocator without a window.
        let lease = self.ledger.open(epoch + 1, self.budget);
        let first = lease.tokens.min(self.budget);
        self.epoch.store(epoch + 1, Ordering::Release);
        self.window_salt.store(
            super::reservoir::salt(epoch + 1, self.seed),
            Ordering::Relaxed,
        );
        let short = short_epoch(epoch + 1);
        // Stored before the swap that opens the window, which publishes it: a request
        // that sees the new window sees its low-water mark too.
        self.central
            .refill_below
            .store(lease.refill_below, Ordering::Relaxed);
        let closed = self
            .central
            .window_state
            .swap(pack(short, first), Ordering::AcqRel);
        // The shards are empty at the start; they are used only when the lease is
        // final (no low-water mark), for a refill must see every held token run low.
        let sharded = lease.refill_below == 0;
        let mut unused = packed_remaining(closed);
        for shard in &self.shards {
            let was = shard.state.swap(opening(short, sharded), Ordering::AcqRel);
            unused += open_tokens(was, short_epoch(epoch));
        }
        self.pooled.store(
            if sharded { 0 } else { pooled_mark(short) },
            Ordering::Release,
        );
        let leased = std::mem::replace(&mut leases.leased, first);
        drop(leases);
        if lease.tokens > first {
            self.ledger.release(epoch + 1, lease.tokens - first);
        }
        self.ledger.release(epoch, unused);
        // Every unused token came from this window's lease.
        debug_assert!(unused <= leased, "{unused} unused of {leased} leased");
        let charged = leased.saturating_sub(unused);
        let (mut arrivals, mut abandoned, mut refunded) = (0, 0, 0);
        for shard in &self.shards {
            arrivals += shard.arrivals.swap(0, Ordering::Relaxed);
            abandoned += shard.abandoned.swap(0, Ordering::Relaxed);
            refunded += shard.credited.swap(0, Ordering::Relaxed);
        }

        let Clearing {
            weighted,
            closed: closed_sample,
            spent_share,
        } = &mut *clearing;
        {
            let mut sampler = lock(&self.sampler);
            closed_sample.clear();
            closed_sample.clone_from(&sampler.filling().queries);
            sampler.close_window(arrivals, weighted);
            // The new window's sample is empty: every arrival is a candidate again.
            self.sample_ceiling.store(u64::MAX, Ordering::Relaxed);
        }
        let granted = charged + refunded;
        if self.refund_aware && granted > 0 {
            let share = charged as f64 / granted as f64;
            *spent_share = (0.5 * *spent_share + 0.5 * share).clamp(0.1, 1.0);
        }
        let target = if self.refund_aware {
            self.budget as f64 / *spent_share
        } else {
            self.budget as f64
        };
        let local_price = clear_price::<C>(weighted, target, price);
        let next_price = self.ledger.next_price(&ClosedWindow {
            window: epoch,
            arrivals,
            charged,
            budget: self.budget,
            sample: closed_sample,
            history_windows: self.history_windows,
            target,
            price,
            local_price,
        });
        // A ledger's price is used only if it is one.
        let next_price = if next_price.is_finite() && next_price >= 0.0 {
            next_price
        } else {
            local_price
        };
        self.price_bits
            .store(next_price.to_bits(), Ordering::Relaxed);
        // Published after the price: a reader that sees the new generation sees the
        // new price (or a newer one).
        self.price_generation.fetch_add(1, Ordering::Release);
        WindowReport {
            window: epoch,
            arrivals,
            abandoned,
            charged,
            refunded,
            budget: self.budget,
            price,
            next_price,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{curve, online};
    use super::*;
    use crate::{Allocator, Query};
    use approx::assert_relative_eq;

    #[test]
    fn the_cleared_price_matches_the_batch_allocators_on_the_same_sample() {
        // One window, sample = all arrivals (fewer than the reservoir), no refunds:
        // the online price must clear the same market as `Allocator::allocate`.
        let online = OnlineAllocator::builder()
            .tokens_per_window(30_000)
            .default_cap(4096)
            .history_windows(1)
            .build()
            .unwrap();
        let queries: Vec<Query> = (0..100)
            .map(|i| {
                let t = 100.0 + 7.0 * i as f64;
                Query::new(curve(t, 80.0 + 3.0 * i as f64, 0.3 + 0.006 * i as f64))
            })
            .collect();
        for q in &queries {
            let _ = online.admit(q).unwrap();
        }
        let report = online.end_window();
        let batch = Allocator::builder()
            .default_cap(4096)
            .tolerance(1e-7)
            .build()
            .unwrap()
            .allocate(&queries, 30_000)
            .unwrap();
        let batch_price = batch.price().unwrap();
        assert_relative_eq!(report.next_price, batch_price, max_relative = 1e-3);
        // The feasible end: the sample's demand at the price fits the budget.
        let demand: f64 = queries
            .iter()
            .map(|q| q.curve().best_response(report.next_price, 4096.0).unwrap())
            .sum();
        assert!(demand <= 30_000.0 + 1e-6);
    }

    #[test]
    fn an_idle_history_keeps_the_price() {
        let online = OnlineAllocator::builder()
            .tokens_per_window(1_000)
            .initial_price(3e-4)
            .build()
            .unwrap();
        let report = online.end_window();
        assert_eq!(report.arrivals, 0);
        assert_eq!(report.next_price, 3e-4);
    }

    #[test]
    fn ample_budget_clears_at_price_zero() {
        let online = online(1_000_000);
        for _ in 0..10 {
            let _ = online.admit(&Query::new(curve(100.0, 100.0, 0.9))).unwrap();
        }
        assert_eq!(online.end_window().next_price, 0.0);
    }

    #[test]
    fn a_window_charges_what_it_granted_net_of_refunds_and_restores_the_budget() {
        let online = online(10_000);
        let q = Query::new(curve(100.0, 100.0, 0.9)).with_cap(3_000);
        let a = online.admit(&q).unwrap();
        let _b = online.admit(&q).unwrap();
        online.complete(a, 1_000).unwrap();
        let report = online.end_window();
        assert_eq!((report.charged, report.refunded), (4_000, 2_000));
        assert_eq!(online.remaining(), 10_000);
    }
}
