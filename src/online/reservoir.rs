//! The reservoir of demand samples: a bounded sample of each window's arrivals (the
//! `k` arrivals of smallest hash key, a uniform sample without replacement), kept for
//! the last `history_windows` windows, from which the price is re-cleared.

use super::OnlineAllocator;
use crate::error::Result;
use crate::model::{Curve, ShiftedSurge};
use crate::solver::{check_weight, Query};
use std::sync::atomic::Ordering;

/// One arrival kept in a window's demand sample: its curve (any [`Curve`] type, a
/// [`ShiftedSurge`] by default), weight and cap.
///
/// A [`BudgetLedger`](super::BudgetLedger) shared by a fleet publishes these so that
/// one price can be cleared from the demand every replica saw (see
/// [`ClosedWindow::clear`](super::ClosedWindow::clear)).
///
/// ```
/// use clear_alloc::online::SampledQuery;
/// use clear_alloc::ShiftedSurge;
///
/// let sampled = SampledQuery::new(ShiftedSurge::new(151.0, 101.0, 0.95)?, 1.0, 4096)?;
/// assert_eq!(sampled.cap(), 4096);
/// assert!(SampledQuery::new(*sampled.curve(), f64::NAN, 4096).is_err());
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampledQuery<C: Curve = ShiftedSurge> {
    pub(super) curve: C,
    pub(super) weight: f64,
    pub(super) cap: u64,
}

impl<C: Curve> SampledQuery<C> {
    /// A sampled arrival with its priority weight and cap in tokens.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) (field `weight`) when the weight is NaN, infinite
    /// or negative, or weight × ceiling (or weight × the steepest slope) overflows —
    /// the checks a query passes before it is admitted.
    pub fn new(curve: C, weight: f64, cap: u64) -> Result<Self> {
        check_weight(&curve, weight)?;
        Ok(SampledQuery { curve, weight, cap })
    }

    /// An arrival of `query`, with its cap fixed (its own, or `default_cap`).
    pub(super) fn of(query: &Query<C>, default_cap: u64) -> Self {
        SampledQuery {
            curve: query.curve().clone(),
            weight: query.weight(),
            cap: query.cap().unwrap_or(default_cap),
        }
    }

    /// The arrival's accuracy curve.
    pub fn curve(&self) -> &C {
        &self.curve
    }

    /// The arrival's priority weight.
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// The arrival's cap in tokens (its own, or the allocator's default).
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// The constants of its best response, as the price search needs them.
    pub(super) fn bidder(&self) -> C::Bidder {
        self.curve.bidder(self.weight, self.cap as f64)
    }
}

/// A bounded sample of one window's arrivals.
#[derive(Debug)]
pub(super) struct WindowSample<C: Curve> {
    /// A max-heap on `keys`: the sample's largest key is `keys[0]`.
    pub(super) queries: Vec<SampledQuery<C>>,
    /// The hash key of each sampled arrival, beside it.
    keys: Vec<u64>,
    /// All arrivals of the window, sampled or not.
    pub(super) arrivals: u64,
}

impl<C: Curve> WindowSample<C> {
    fn swap(&mut self, a: usize, b: usize) {
        self.keys.swap(a, b);
        self.queries.swap(a, b);
    }

    /// Restores the heap order above entry `i`.
    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.keys[parent] >= self.keys[i] {
                break;
            }
            self.swap(parent, i);
            i = parent;
        }
    }

    /// Restores the heap order below entry `i`.
    fn sift_down(&mut self, mut i: usize) {
        let len = self.keys.len();
        loop {
            let (left, right) = (2 * i + 1, 2 * i + 2);
            let mut largest = i;
            if left < len && self.keys[left] > self.keys[largest] {
                largest = left;
            }
            if right < len && self.keys[right] > self.keys[largest] {
                largest = right;
            }
            if largest == i {
                break;
            }
            self.swap(i, largest);
            i = largest;
        }
    }
}

#[derive(Debug)]
pub(super) struct Sampler<C: Curve> {
    /// A ring of the last `history_windows` windows; `current` is filling.
    slots: Vec<WindowSample<C>>,
    current: usize,
    /// Windows closed so far (the ring is full once this reaches its length).
    closed: u64,
}

impl<C: Curve> Sampler<C> {
    /// A ring of `windows` empty samples of room for `capacity` arrivals each.
    pub(super) fn new(windows: usize, capacity: usize) -> Self {
        let slots = (0..windows)
            .map(|_| WindowSample {
                queries: Vec::with_capacity(capacity),
                keys: Vec::with_capacity(capacity),
                arrivals: 0,
            })
            .collect();
        Sampler {
            slots,
            current: 0,
            closed: 0,
        }
    }

    /// Offers the arrival of hash key `key` to the filling window's sample of room
    /// for `capacity`: kept (and `sampled` called) while the sample is not full, or
    /// in place of the largest key when `key` is smaller. Returns the key an arrival
    /// must now be below to be kept: the largest once the sample is full.
    fn offer(
        &mut self,
        key: u64,
        sampled: impl FnOnce() -> SampledQuery<C>,
        capacity: usize,
    ) -> u64 {
        let sample = &mut self.slots[self.current];
        if sample.keys.len() < capacity {
            sample.keys.push(key);
            sample.queries.push(sampled());
            sample.sift_up(sample.keys.len() - 1);
        } else if sample.keys.first().is_some_and(|&largest| key < largest) {
            sample.keys[0] = key;
            sample.queries[0] = sampled();
            sample.sift_down(0);
        }
        if sample.keys.len() < capacity {
            u64::MAX
        } else {
            sample.keys[0]
        }
    }

    /// The window being filled.
    pub(super) fn filling(&self) -> &WindowSample<C> {
        &self.slots[self.current]
    }

    /// Closes the filling window with its arrival count, writes the history's
    /// weighted sample into `out`, and starts an empty window.
    pub(super) fn close_window(&mut self, arrivals: u64, out: &mut Vec<(C::Bidder, f64)>) {
        self.slots[self.current].arrivals = arrivals;
        self.closed += 1;
        let windows = self.closed.min(self.slots.len() as u64) as f64;
        out.clear();
        for slot in self.slots.iter().take(windows as usize) {
            if slot.queries.is_empty() {
                // An idle window adds no demand but still counts in the average.
                continue;
            }
            let weight = slot.arrivals as f64 / slot.queries.len() as f64 / windows;
            out.extend(slot.queries.iter().map(|q| (q.bidder(), weight)));
        }
        self.current = (self.current + 1) % self.slots.len();
        let next = &mut self.slots[self.current];
        next.queries.clear();
        next.keys.clear();
        next.arrivals = 0;
    }
}

/// splitmix64's finaliser (Steele, Lea & Flood 2014): a cheap, well-mixed hash that
/// stands in for a random number, so that sampling needs no shared RNG state.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The reservoir's hash salt for window `window`: arrivals are hashed with it, so
/// that each window keeps a different pseudo-random subset.
pub(super) fn salt(window: u64, seed: u64) -> u64 {
    mix(window ^ seed)
}

impl<C: Curve> OnlineAllocator<C> {
    /// Bottom-k sampling (priority sampling with equal weights; Cohen & Kaplan 2007):
    /// every arrival gets a pseudo-random key, a hash of its shard, its number in the
    /// shard and the window, and the sample keeps the `k` arrivals of smallest key —
    /// a uniform sample without replacement of the window's arrivals, which, unlike
    /// Algorithm R, needs no count of all arrivals while the window runs, so the
    /// shards count their own. An arrival reads the sample's largest key (written
    /// only when the sample changes, about `k · ln(n / k)` times in `n` arrivals) and
    /// takes the lock only when its key is below it, and only if the lock is free;
    /// otherwise it is counted but not sampled, which thins the sample at random.
    #[inline]
    pub(super) fn sample(
        &self,
        shard: usize,
        arrival: u64,
        sampled: impl FnOnce() -> SampledQuery<C>,
    ) {
        let salt = self.window_salt.load(Ordering::Relaxed);
        let key = mix(arrival ^ ((shard as u64) << SHARD_SHIFT) ^ salt);
        if key < self.sample_ceiling.load(Ordering::Relaxed) {
            self.keep(key, sampled);
        }
    }

    /// Offers a candidate arrival to the sample if it is free, cloning its curve only
    /// when it is kept (the rare path of [`sample`](Self::sample), out of line so that
    /// the common one stays small).
    #[cold]
    #[inline(never)]
    fn keep(&self, key: u64, sampled: impl FnOnce() -> SampledQuery<C>) {
        if let Ok(mut sampler) = self.sampler.try_lock() {
            let ceiling = sampler.offer(key, sampled, self.samples_per_window as usize);
            self.sample_ceiling.store(ceiling, Ordering::Relaxed);
        }
    }
}

/// Where the shard index goes in a key's hash input, above any arrival number.
const SHARD_SHIFT: u32 = 56;

#[cfg(test)]
mod tests {
    use super::super::lock;
    use super::super::test_support::curve;
    use super::*;
    use crate::Error;
    use approx::assert_relative_eq;

    #[test]
    fn the_reservoir_stays_bounded_and_scales_by_arrivals() {
        let online = OnlineAllocator::builder()
            .tokens_per_window(1_000)
            .samples_per_window(8)
            .history_windows(2)
            .build()
            .unwrap();
        let q = Query::new(curve(100.0, 100.0, 0.9));
        for _ in 0..1000 {
            let _ = online.admit(&q).unwrap();
        }
        assert_eq!(lock(&online.sampler).filling().queries.len(), 8);
        let mut out = Vec::new();
        lock(&online.sampler).close_window(1000, &mut out);
        // 8 samples standing for 1000 arrivals, averaged over 1 closed window.
        assert_eq!(out.len(), 8);
        assert_relative_eq!(out.iter().map(|(_, w)| w).sum::<f64>(), 1000.0);
    }

    #[test]
    fn the_hashed_reservoir_keeps_early_and_late_arrivals_alike() {
        // Algorithm R keeps every arrival with probability k/n; a sampler that kept
        // the first k (or favoured the last) would split these counts unevenly.
        let online = OnlineAllocator::builder()
            .tokens_per_window(1_000)
            .samples_per_window(100)
            .history_windows(1)
            .build()
            .unwrap();
        let (mut early, mut late) = (0usize, 0usize);
        for _ in 0..100 {
            for i in 0..1000 {
                let _ = online
                    .admit(&Query::new(curve(i as f64, 100.0, 0.9)))
                    .unwrap();
            }
            {
                let sampler = lock(&online.sampler);
                let sample = &sampler.filling().queries;
                assert_eq!(sample.len(), 100);
                early += sample
                    .iter()
                    .filter(|q| q.curve().threshold() < 500.0)
                    .count();
                late += sample
                    .iter()
                    .filter(|q| q.curve().threshold() >= 500.0)
                    .count();
            }
            online.end_window();
        }
        // 10 000 draws, 5 000 expected on each side; the standard deviation is 50.
        assert!(early.abs_diff(late) < 400, "early {early}, late {late}");
    }

    #[test]
    fn arrivals_of_every_shard_are_kept_alike() {
        // Each shard numbers its own arrivals from 0; the keys must still be drawn
        // alike across shards, or the sample would favour some threads' requests.
        let online = OnlineAllocator::builder()
            .tokens_per_window(1_000)
            .samples_per_window(400)
            .history_windows(1)
            .build()
            .unwrap();
        let shards = super::super::shard::SHARDS;
        let mut kept = vec![0usize; shards];
        for _ in 0..50 {
            // 8 shards × 500 arrivals, interleaved as concurrent threads would be.
            for arrival in 0..500 {
                for shard in 0..shards {
                    let sampled =
                        SampledQuery::of(&Query::new(curve(shard as f64, 100.0, 0.9)), 4096);
                    online.sample(shard, arrival, || sampled);
                }
            }
            {
                let sampler = lock(&online.sampler);
                let sample = &sampler.filling().queries;
                assert_eq!(sample.len(), 400);
                for q in sample {
                    kept[q.curve().threshold() as usize] += 1;
                }
            }
            online.end_window();
        }
        // 20 000 draws, 2 500 expected per shard; the standard deviation is about 47.
        for (shard, &n) in kept.iter().enumerate() {
            assert!(n.abs_diff(2_500) < 300, "shard {shard}: {n} of 20 000");
        }
    }

    #[test]
    fn a_sampled_query_rejects_weights_a_query_would_reject() {
        let c = curve(100.0, 1e-300, 0.9);
        assert!(SampledQuery::new(c, 1.0, 10).is_ok());
        let err = SampledQuery::new(c, 1e300, 10).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidParameter {
                field: "weight",
                ..
            }
        ));
        assert!(SampledQuery::new(c, -1.0, 10).is_err());
        assert!(SampledQuery::new(c, f64::INFINITY, 10).is_err());
    }
}
