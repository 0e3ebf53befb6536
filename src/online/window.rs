//! The packed window state: the window's epoch and tokens held for it (in the central
//! pool, or in one thread shard) share one `AtomicU64`, so that a reservation and the
//! window it belongs to change together and a window rollover can never be charged
//! twice.

use std::sync::atomic::AtomicU64;

/// Bits of the packed window state that hold the remaining budget.
pub(super) const REMAINING_BITS: u32 = 40;
pub(super) const REMAINING_MASK: u64 = (1 << REMAINING_BITS) - 1;

/// The largest budget one window may have: 2⁴⁰ − 1 ≈ 1.1 · 10¹² tokens (the packed
/// window state keeps the remaining budget in 40 bits).
pub const MAX_WINDOW_BUDGET: u64 = REMAINING_MASK;

/// Packs a window epoch (its low 24 bits) and the remaining budget into one word.
pub(super) fn pack(epoch: u64, remaining: u64) -> u64 {
    (epoch << REMAINING_BITS) | remaining
}

pub(super) fn packed_epoch(state: u64) -> u64 {
    state >> REMAINING_BITS
}

pub(super) fn packed_remaining(state: u64) -> u64 {
    state & REMAINING_MASK
}

/// `epoch` reduced to the bits the packed state keeps.
pub(super) fn short_epoch(epoch: u64) -> u64 {
    epoch & (u64::MAX >> REMAINING_BITS)
}

/// The full window count whose low bits are `short`, given the current full count
/// `now`: the latest window at or before `now` with those low bits. Exact as long as
/// fewer than 2^24 windows separate the two.
pub(super) fn full_epoch(now: u64, short: u64) -> u64 {
    let elapsed = short_epoch(short_epoch(now).wrapping_sub(short));
    // `elapsed ≤ now` whenever `short` came from the same allocator; saturate anyway so
    // that a foreign value cannot underflow.
    now.saturating_sub(elapsed)
}

/// The central pool of the window: the tokens no shard holds (all of them, once the
/// shards are pooled), on a cache line of its own (128 bytes covers the
/// adjacent-line prefetch of x86 and the 128-byte lines of Apple silicon). Admissions
/// touch it only when their shard runs dry, or for the whole window when the shards
/// are pooled.
#[derive(Debug)]
#[repr(align(128))]
pub(super) struct Central {
    /// `epoch (low 24 bits) << 40 | tokens in the pool`.
    pub(super) window_state: AtomicU64,
    /// Below this many held tokens an admission asks the ledger for more; 0 (the
    /// in-process ledger) never asks. Written once per lease, read by the admissions
    /// that reach the pool.
    pub(super) refill_below: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::super::test_support::online;
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn packing_round_trips_and_epoch_wraps_in_24_bits() {
        let state = pack(short_epoch(7), 12_345);
        assert_eq!(packed_epoch(state), 7);
        assert_eq!(packed_remaining(state), 12_345);
        assert_eq!(short_epoch(1 << 24), 0);
        assert_eq!(
            packed_epoch(pack(short_epoch((1 << 24) - 1), MAX_WINDOW_BUDGET)),
            (1 << 24) - 1
        );
    }

    #[test]
    fn full_epoch_recovers_the_window_across_a_rollover() {
        let online = online(100);
        online.end_window();
        online.end_window();
        assert_eq!(online.full_epoch(short_epoch(2)), 2);
        assert_eq!(online.full_epoch(short_epoch(1)), 1);
    }

    #[test]
    fn full_epoch_recovers_the_window_after_many_rollovers() {
        // A thread preempted between its reservation in window 1 and the epoch load
        // while five windows end: the ticket must still name window 1.
        let online = online(100);
        for _ in 0..5 {
            online.end_window();
        }
        assert_eq!(online.window(), 5);
        assert_eq!(online.full_epoch(short_epoch(1)), 1);
        assert_eq!(online.full_epoch(short_epoch(0)), 0);
        assert_eq!(online.full_epoch(short_epoch(5)), 5);
    }

    #[test]
    fn full_epoch_is_exact_across_the_24_bit_wrap() {
        let online = online(100);
        // Window 2^24 + 3 is current; the reservation was made in window 2^24 − 2,
        // whose short epoch 2^24 − 2 is numerically above the current short epoch 3.
        let now = (1u64 << 24) + 3;
        online.epoch.store(now, Ordering::Release);
        let reserved = (1u64 << 24) - 2;
        assert_eq!(online.full_epoch(short_epoch(reserved)), reserved);
        // The largest lag it resolves: 2^24 − 1 windows.
        let oldest = now - ((1u64 << 24) - 1);
        assert_eq!(online.full_epoch(short_epoch(oldest)), oldest);
        assert_eq!(online.full_epoch(short_epoch(now)), now);
    }
}
