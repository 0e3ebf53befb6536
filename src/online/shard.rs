//! Shards of the window's tokens: each thread admits against a shard of its own, on
//! its own cache line, so that threads sharing one allocator do not contend for one
//! word. A shard that runs dry takes a slice of the central pool; when the pool
//! cannot cover a request, every shard's tokens go back to the pool for the rest of
//! the window, and admissions decide there exactly as they would on one word.
//!
//! Token movements between the pool and the shards (a slice taken, the shards
//! pooled) happen under the allocator's lease lock, which
//! [`end_window`](super::OnlineAllocator::end_window) takes too, so no token is ever
//! in transit when a window's unused tokens are counted.

use super::window::{pack, packed_epoch, packed_remaining, REMAINING_MASK};
use super::{lock, OnlineAllocator};
use crate::model::Curve;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::TryLockError;

/// Shards per allocator. More shards than threads cost only memory (128 bytes each)
/// and some tokens parked in idle shards until the pool runs low; threads beyond
/// the count share shards (correct, only slower).
pub(super) const SHARDS: usize = 8;

/// The token field of a closed shard: an open shard always holds fewer tokens.
pub(super) const CLOSED: u64 = REMAINING_MASK;

/// A dry shard takes at least this fraction (1 / `SLICE`) of the pool, so that
/// under steady traffic each shard goes to the pool about once per `SLICE` of it
/// spent, and the pool shrinks geometrically rather than in request-sized steps.
const SLICE: u64 = 4 * SHARDS as u64;

/// How many slices one admission takes at most before it decides in the pool
/// (threads sharing a shard may spend each slice before it does).
const MAX_SLICES: u32 = 4;

/// One shard: its tokens and the counts of the requests its threads admitted and
/// completed, written by those threads only (usually one).
#[derive(Debug)]
#[repr(align(128))]
pub(super) struct Shard {
    /// `epoch (low 24 bits) << 40 | tokens held`, [`CLOSED`] tokens when pooled.
    pub(super) state: AtomicU64,
    /// Admissions counted here this window; also numbers them for the reservoir.
    pub(super) arrivals: AtomicU64,
    pub(super) abandoned: AtomicU64,
    /// Refunds credited through this shard (to it, or to the pool).
    pub(super) credited: AtomicU64,
}

impl Shard {
    /// An empty shard of the window with short epoch `short`, open or pooled.
    pub(super) fn new(short: u64, open: bool) -> Self {
        Shard {
            state: AtomicU64::new(opening(short, open)),
            arrivals: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            credited: AtomicU64::new(0),
        }
    }
}

/// The state a shard starts a window in: empty, or closed when the window admits
/// in the pool from the start (a ledger that refills on a low-water mark needs the
/// held tokens in one place to see them run low).
pub(super) fn opening(short: u64, open: bool) -> u64 {
    pack(short, if open { 0 } else { CLOSED })
}

/// The value of [`OnlineAllocator::pooled`] for the window with short epoch `short`
/// (never 0, the value of "no window pooled").
pub(super) fn pooled_mark(short: u64) -> u64 {
    short | 1 << 24
}

/// Tokens an open shard of the window `short` holds, read from its state (0 when it
/// is closed or of another window).
pub(super) fn open_tokens(state: u64, short: u64) -> u64 {
    let tokens = packed_remaining(state);
    if packed_epoch(state) == short && tokens != CLOSED {
        tokens
    } else {
        0
    }
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard, dealt round-robin at its first admission.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The calling thread's shard index (the same for every allocator).
#[inline]
pub(super) fn shard_index() -> usize {
    SHARD
        .try_with(|shard| {
            let index = shard.get();
            if index < SHARDS {
                index
            } else {
                let index = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
                shard.set(index);
                index
            }
        })
        // During thread teardown: any shard is correct.
        .unwrap_or(0)
}

impl<C: Curve> OnlineAllocator<C> {
    /// Reserves `wanted` tokens from `shard`, taking slices of the pool as it runs
    /// dry: `Some((tokens, short epoch))` when the shard granted them (or `wanted` is
    /// 0), `None` when the request must be decided in the pool (the shard is closed,
    /// the pool cannot cover it, or another thread is moving tokens).
    #[inline]
    pub(super) fn reserve_in_shard(&self, shard: &Shard, wanted: u64) -> Option<(u64, u64)> {
        let mut state = shard.state.load(Ordering::Acquire);
        let mut slices = 0;
        loop {
            let held = packed_remaining(state);
            if held == CLOSED {
                return None;
            }
            if wanted == 0 {
                return Some((0, packed_epoch(state)));
            }
            if wanted > held {
                if slices == MAX_SLICES || !self.take_slice(shard, wanted) {
                    return None;
                }
                slices += 1;
                state = shard.state.load(Ordering::Acquire);
                continue;
            }
            match shard.state.compare_exchange_weak(
                state,
                state - wanted,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some((wanted, packed_epoch(state))),
                Err(now) => state = now,
            }
        }
    }

    /// Tops `shard` up from the pool so that it holds `wanted` tokens, taking at least
    /// 1 / [`SLICE`] of the pool; pools every shard instead when the pool cannot cover
    /// the shortfall. Returns whether the shard should be tried again (false: decide
    /// in the pool). Gives way (false) when the lease lock is busy.
    #[cold]
    #[inline(never)]
    fn take_slice(&self, shard: &Shard, wanted: u64) -> bool {
        let _leases = match self.leases.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        // Under the lock every shard is of the pool's window (`end_window` moves them
        // all while holding it), and no other thread moves tokens.
        let state = shard.state.load(Ordering::Acquire);
        let held = packed_remaining(state);
        if held == CLOSED {
            return false;
        }
        if held >= wanted {
            return true;
        }
        let short = packed_epoch(state);
        let need = wanted - held;
        let mut pool = self.central.window_state.load(Ordering::Acquire);
        let slice = loop {
            debug_assert_eq!(packed_epoch(pool), short, "a shard of another window");
            let left = packed_remaining(pool);
            if left < need {
                self.pool_shards_locked(short);
                return false;
            }
            let slice = (left / SLICE).max(need);
            match self.central.window_state.compare_exchange_weak(
                pool,
                pool - slice,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break slice,
                Err(now) => pool = now,
            }
        };
        // Refunds may have added to the shard meanwhile; it must stay below the
        // closed mark (reachable only with a budget of `MAX_WINDOW_BUDGET`).
        let mut state = shard.state.load(Ordering::Acquire);
        loop {
            if packed_remaining(state) + slice >= CLOSED {
                self.central.window_state.fetch_add(slice, Ordering::AcqRel);
                self.pool_shards_locked(short);
                return false;
            }
            match shard.state.compare_exchange_weak(
                state,
                state + slice,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
    }

    /// Moves every shard's tokens into the pool and closes the shards for the rest
    /// of the window `short`, unless the window has ended or is pooled already, so
    /// that the next decision sees every token the window has left.
    #[cold]
    #[inline(never)]
    pub(super) fn pool_shards(&self, short: u64) {
        let _leases = lock(&self.leases);
        if packed_epoch(self.central.window_state.load(Ordering::Acquire)) == short
            && self.pooled.load(Ordering::Acquire) != pooled_mark(short)
        {
            self.pool_shards_locked(short);
        }
    }

    /// [`pool_shards`](Self::pool_shards) for a caller that holds the lease lock and
    /// has checked that `short` is the current window.
    fn pool_shards_locked(&self, short: u64) {
        let mut gathered = 0;
        for shard in &self.shards {
            let was = shard.state.swap(pack(short, CLOSED), Ordering::AcqRel);
            debug_assert_eq!(packed_epoch(was), short, "a shard of another window");
            gathered += open_tokens(was, short);
        }
        // What the shards held came from the pool, so the sum fits the budget.
        self.central
            .window_state
            .fetch_add(gathered, Ordering::AcqRel);
        // Published after the tokens, so a request that sees the mark and then
        // reserves from a stale view of the pool fails its compare-and-swap.
        self.pooled.store(pooled_mark(short), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{curve, online};
    use super::*;
    use crate::Query;

    /// A shard that is not the calling thread's, as another thread would use it.
    fn other_shard() -> usize {
        (shard_index() + 1) % SHARDS
    }

    /// Parks tokens in another thread's shard: it admits `wanted` tokens there and
    /// keeps the rest of its slice. Returns the tokens parked.
    fn park(online: &OnlineAllocator, wanted: u64) -> u64 {
        let shard = &online.shards[other_shard()];
        assert_eq!(online.reserve_in_shard(shard, wanted), Some((wanted, 0)));
        open_tokens(shard.state.load(Ordering::Acquire), 0)
    }

    #[test]
    fn tokens_parked_in_another_shard_are_granted_to_a_request_that_needs_them() {
        let online = online(10_000);
        // A slice is 1/32 of the pool: 312 tokens, 100 of them granted.
        assert_eq!(park(&online, 100), 212);
        assert_eq!(online.remaining(), 9_900);
        // More than the pool holds, as much as the window has left: granted in full.
        let all = Query::new(curve(100.0, 100.0, 0.9)).with_cap(9_900);
        assert_eq!(online.admit(&all).unwrap().tokens(), 9_900);
        assert_eq!(online.remaining(), 0);
        assert!(online.admit(&all).unwrap().is_abandoned());
    }

    #[test]
    fn a_request_the_window_cannot_fit_gets_what_one_word_would_give_it() {
        // The best response under the cap "what is left" (SPEC §3), whether the
        // tokens left sit in the pool alone or partly in shards.
        let query = Query::new(curve(3_000.0, 4_000.0, 0.9)).with_cap(30_000);
        for price in [0.0, 1e-5, 4e-5, 1e-4] {
            let build = |budget| {
                OnlineAllocator::builder()
                    .tokens_per_window(budget)
                    .initial_price(price)
                    .build()
                    .unwrap()
            };
            let sharded = build(10_000);
            park(&sharded, 100);
            let single = build(9_900);
            let expected = single.admit(&query).unwrap().tokens();
            assert_eq!(sharded.admit(&query).unwrap().tokens(), expected, "{price}");
            assert_eq!(sharded.remaining(), single.remaining(), "{price}");
        }
    }

    #[test]
    fn a_refund_after_pooling_goes_to_the_pool_and_is_granted_again() {
        let online = online(1_000);
        let first = online
            .admit(&Query::new(curve(100.0, 100.0, 0.9)).with_cap(600))
            .unwrap();
        // Wants more than is left: the shards are pooled for the rest of the window.
        let second = online
            .admit(&Query::new(curve(100.0, 100.0, 0.9)).with_cap(900))
            .unwrap();
        assert_eq!((first.tokens(), second.tokens()), (600, 400));
        assert_eq!(online.pooled.load(Ordering::Acquire), pooled_mark(0));
        assert_eq!(online.complete(first, 100).unwrap(), 500);
        assert_eq!(online.remaining(), 500);
        let again = online
            .admit(&Query::new(curve(100.0, 100.0, 0.9)).with_cap(500))
            .unwrap();
        assert_eq!(again.tokens(), 500);
        // The next window opens its shards again.
        online.end_window();
        assert_eq!(online.pooled.load(Ordering::Acquire), 0);
        assert_eq!(online.remaining(), 1_000);
    }

    #[test]
    fn a_window_charges_tokens_parked_in_shards_as_unused() {
        let online = online(10_000);
        park(&online, 100);
        let report = online.end_window();
        assert_eq!(report.charged, 100);
        assert_eq!(online.remaining(), 10_000);
    }
}
