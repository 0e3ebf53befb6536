//! The hot path: a request's best response at the current price, reserved from the
//! tokens this allocator holds for the window (its thread's shard of them, or the
//! central pool), with a lease refill from the ledger when they run low.

use super::reservoir::SampledQuery;
use super::shard::{pooled_mark, shard_index};
use super::window::{packed_epoch, packed_remaining};
use super::{lock, OnlineAllocator, Ticket};
use crate::error::Result;
use crate::model::Curve;
use crate::solver::{Bidding, Query};
use std::sync::atomic::Ordering;
use std::sync::TryLockError;

/// Whole tokens of a real-valued best response (NaN and negatives → 0), at most `cap`.
#[inline]
pub(super) fn whole_tokens(tokens: f64, cap: u64) -> u64 {
    (tokens.max(0.0) as u64).min(cap)
}

/// The best response at `price` under the tighter cap "what the window has left".
pub(super) fn tight_grant<C: Curve>(curve: &C, weight: f64, price: f64, remaining: u64) -> u64 {
    let tight = curve.bidder(weight, remaining as f64);
    whole_tokens(tight.bid(price).tokens(), remaining)
}

impl<C: Curve> OnlineAllocator<C> {
    /// Admits one request: returns its ticket, whose [`tokens`](Ticket::tokens) are
    /// the query's best response at the current price (SPEC §3), limited to what the
    /// window has left. No allocation; for a shifted surge one or two W₋₁
    /// evaluations, for other curves their own best response (see
    /// [`admit_prepared`](Self::admit_prepared) for requests of a known class). With a
    /// shared [`BudgetLedger`](super::BudgetLedger), the few admissions that find the
    /// held tokens low also ask the ledger for a new lease (see its docs).
    ///
    /// # Errors
    /// None today: a [`Query`] is valid once built (its weight is checked by
    /// [`Query::with_weight`]); the `Result` leaves room for checks to come.
    pub fn admit(&self, query: &Query<C>) -> Result<Ticket> {
        let cap = query.cap().unwrap_or(self.default_cap);
        let bidder = query.curve().bidder(query.weight(), cap as f64);
        let price = self.price();
        let wanted = whole_tokens(bidder.bid(price).tokens(), cap);
        Ok(self.reserve(
            wanted,
            |remaining| tight_grant(query.curve(), query.weight(), price, remaining),
            || SampledQuery::of(query, self.default_cap),
        ))
    }

    /// Counts and samples an arrival that wants `wanted` tokens, and reserves them
    /// from the window (or `tight(remaining)` when fewer remain): the part of
    /// admission after the best response, shared by [`admit`](Self::admit) and
    /// [`admit_prepared`](Self::admit_prepared). The thread's shard grants them when
    /// it holds them (taking a slice of the pool when it runs dry); the pool decides
    /// the rest, after gathering every shard's tokens when it is short, so that a
    /// request gets less than it wants only when the whole window has less left.
    #[inline(always)]
    pub(super) fn reserve(
        &self,
        wanted: u64,
        tight: impl Fn(u64) -> u64,
        sampled: impl FnOnce() -> SampledQuery<C>,
    ) -> Ticket {
        let index = shard_index();
        let shard = &self.shards[index];
        let arrival = shard.arrivals.fetch_add(1, Ordering::Relaxed);
        self.sample(index, arrival, sampled);

        let (tokens, short) = match self.reserve_in_shard(shard, wanted) {
            Some(granted) => granted,
            None => self.reserve_in_pool(wanted, tight),
        };
        if tokens == 0 {
            shard.abandoned.fetch_add(1, Ordering::Relaxed);
        }
        Ticket {
            tokens,
            epoch: self.full_epoch(short),
            allocator: self.id,
        }
    }

    /// Reserves `wanted` tokens (or `tight(remaining)`) from the central pool, on one
    /// word: the shards are pooled first when the pool alone cannot cover the
    /// request, and a shared ledger's lease is refilled when it runs low. Returns the
    /// tokens and the short epoch of the window that paid.
    #[cold]
    #[inline(never)]
    fn reserve_in_pool(&self, wanted: u64, tight: impl Fn(u64) -> u64) -> (u64, u64) {
        let mut state = self.central.window_state.load(Ordering::Acquire);
        let mut waits = 0;
        let mut ledger_dry = false;
        // The window whose pool `state` was read after its pooled mark, so that it
        // includes every token the shards gave back.
        let mut seen_pooled = None;
        let (tokens, short, held) = loop {
            let remaining = packed_remaining(state);
            let short = packed_epoch(state);
            if wanted > remaining && seen_pooled != Some(short) {
                if self.pooled.load(Ordering::Acquire) == pooled_mark(short) {
                    seen_pooled = Some(short);
                } else {
                    // The shards may hold what the pool lacks.
                    self.pool_shards(short);
                }
                state = self.central.window_state.load(Ordering::Acquire);
                continue;
            }
            if wanted > remaining
                && !ledger_dry
                && waits < MAX_REFILL_WAITS
                && self.central.refill_below.load(Ordering::Relaxed) > 0
            {
                // Rare: the lease ran out under a request; wait for a refill. Again
                // while the ledger still gives: a concurrent request may take the
                // refilled tokens first, or the ledger may give less than asked.
                waits += 1;
                ledger_dry = !self.refill(packed_epoch(state), wanted, true);
                state = self.central.window_state.load(Ordering::Acquire);
                continue;
            }
            let grant = if wanted <= remaining {
                wanted
            } else {
                tight(remaining)
            };
            if grant == 0 {
                break (0, packed_epoch(state), remaining);
            }
            match self.central.window_state.compare_exchange_weak(
                state,
                state - grant,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break (grant, packed_epoch(state), remaining - grant),
                Err(now) => state = now,
            }
        };
        if held < self.central.refill_below.load(Ordering::Relaxed) {
            // Low water: one admission tops the lease up; the others do not wait.
            self.refill(short, 0, false);
        }
        (tokens, short)
    }

    /// Asks the ledger for more tokens for the window whose packed epoch is `short`,
    /// unless that window has ended or another thread refilled meanwhile: when
    /// `wanted > 0` (a request waits), until `wanted` tokens are held; else (low
    /// water) while fewer than the low-water mark are held. `wait` blocks on a
    /// refill in progress; without it the call gives way to it. Returns whether a
    /// waiting request should look again: the ledger gave tokens, or enough were
    /// there already (another thread refilled), or the window rolled over.
    fn refill(&self, short: u64, wanted: u64, wait: bool) -> bool {
        let mut leases = if wait {
            lock(&self.leases)
        } else {
            match self.leases.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return false,
            }
        };
        // `end_window` takes this lock too, so the window cannot end while it is held.
        let state = self.central.window_state.load(Ordering::Acquire);
        let held = packed_remaining(state);
        let low = self.central.refill_below.load(Ordering::Relaxed);
        let enough = if wanted > 0 {
            held >= wanted
        } else {
            held >= low
        };
        if packed_epoch(state) != short || enough {
            return true;
        }
        if low == 0 {
            return false;
        }
        let window = self.epoch.load(Ordering::Acquire);
        let lease = self.ledger.extend(window, wanted.saturating_sub(held));
        // Leases never lift what this allocator leased for a window above the budget,
        // so held tokens stay below it and the packed add cannot carry.
        let accepted = lease
            .tokens
            .min(self.budget - leases.leased.min(self.budget));
        if lease.tokens > accepted {
            self.ledger.release(window, lease.tokens - accepted);
        }
        leases.leased += accepted;
        self.central
            .refill_below
            .store(lease.refill_below, Ordering::Relaxed);
        self.central
            .window_state
            .fetch_add(accepted, Ordering::AcqRel);
        accepted > 0
    }
}

/// How many refills one request waits for at most: each is a ledger round trip, so
/// this bounds an admission's latency when the lease keeps running out under it.
const MAX_REFILL_WAITS: u32 = 4;

#[cfg(test)]
mod tests {
    use super::super::test_support::{curve, online};
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn admit_grants_the_best_response_at_the_current_price() {
        let online = OnlineAllocator::builder()
            .tokens_per_window(1_000_000)
            .default_cap(4096)
            .initial_price(1e-4)
            .build()
            .unwrap();
        let c = curve(200.0, 200.0, 0.9);
        let ticket = online.admit(&Query::new(c)).unwrap();
        let expected = c.best_response(1e-4, 4096.0).unwrap().floor() as u64;
        assert_eq!(ticket.tokens(), expected);
        // And the grant is where the marginal meets the price (SPEC §3).
        assert_relative_eq!(
            c.marginal(ticket.tokens() as f64),
            1e-4,
            max_relative = 1e-2
        );
    }

    #[test]
    fn a_short_window_grants_the_best_response_under_what_is_left() {
        let online = online(500);
        // Price 0: the query wants its cap of 4096 but only 500 remain.
        let c = curve(100.0, 100.0, 0.9);
        let ticket = online.admit(&Query::new(c)).unwrap();
        assert_eq!(ticket.tokens(), 500);
        assert_eq!(online.remaining(), 0);
        assert!(online.admit(&Query::new(c)).unwrap().is_abandoned());
    }

    #[test]
    fn whole_tokens_floors_and_caps_and_maps_nan_to_zero() {
        assert_eq!(whole_tokens(12.9, 100), 12);
        assert_eq!(whole_tokens(1e30, 100), 100);
        assert_eq!(whole_tokens(-3.0, 100), 0);
        assert_eq!(whole_tokens(f64::NAN, 100), 0);
    }
}
