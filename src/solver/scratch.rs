//! Vectors as long as the queries in play that the leftover step and rounding borrow
//! for one allocation and give back, so that a [`Workspace`](super::Workspace)'s later
//! calls reuse their memory: fresh memory of that size on every call cost about 2 500
//! page faults per allocation of 10⁶ queries, a tenth of its time.

use std::sync::{Mutex, PoisonError};

/// Vectors given back, ready to be lent again. A mutex (never contended: one
/// allocation at a time uses a workspace) rather than a `RefCell`, so that the
/// workspace stays `Sync`.
pub(super) struct Pool<T> {
    kept: Mutex<Vec<Vec<T>>>,
    /// How many vectors it keeps; more given back are dropped.
    most: usize,
}

/// How many vectors a pool keeps: an allocation holds at most a few of a kind at once.
const KEPT: usize = 8;

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool::new(KEPT)
    }
}

impl<T> Pool<T> {
    /// A pool that keeps up to `most` vectors.
    pub const fn new(most: usize) -> Self {
        Pool {
            kept: Mutex::new(Vec::new()),
            most,
        }
    }

    /// An empty vector, with the memory of one given back when there is one.
    pub fn take(&self) -> Vec<T> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v = kept.pop().unwrap_or_default();
        v.clear();
        v
    }

    /// Keeps `v`'s memory for a later [`Pool::take`].
    pub fn give(&self, v: Vec<T>) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < self.most && v.capacity() > 0 {
            kept.push(v);
        }
    }
}

impl<T: Clone> Pool<T> {
    /// `n` copies of `value`, in memory given back when there is some.
    pub fn filled(&self, n: usize, value: T) -> Vec<T> {
        let mut v = self.take();
        v.resize(n, value);
        v
    }
}

/// The pools of one workspace.
#[derive(Default)]
pub(super) struct Scratch {
    /// Tokens by position as `f64`: bids, and what rounding lost.
    pub bids: Pool<f64>,
    /// Whole-token grants by position.
    pub grants: Pool<u64>,
    /// Positions among the queries in play (funded sets).
    pub positions: Pool<usize>,
    /// Rounding's losers: what each lost, with its position.
    pub losers: Pool<(f64, usize)>,
}

impl Scratch {
    /// Empty pools (a `const fn`, so that tests can share one in a `static`).
    pub const fn new() -> Self {
        Scratch::keeping(KEPT)
    }

    /// Pools that keep nothing: for one allocation without a workspace, whose
    /// vectors are better freed as soon as they are done with, for the next to take
    /// their memory, than held to the end of the call and freed together (measured:
    /// the C allocator then returned the freed top of its heap to the kernel and took
    /// it back on the next call, 17 000 `brk` calls and 1.7× the time of a plain
    /// `allocate` at 10⁴ queries).
    pub const fn one_shot() -> Self {
        Scratch::keeping(0)
    }

    const fn keeping(most: usize) -> Self {
        Scratch {
            bids: Pool::new(most),
            grants: Pool::new(most),
            positions: Pool::new(most),
            losers: Pool::new(most),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_given_back_is_lent_again_empty_with_its_memory() {
        let pool = Pool::new(KEPT);
        let v = pool.filled(1000, 1.5);
        assert_eq!((v.len(), v[999]), (1000, 1.5));
        let address = v.as_ptr();
        pool.give(v);
        let again: Vec<f64> = pool.take();
        assert!(again.is_empty() && again.capacity() >= 1000);
        assert_eq!(again.as_ptr(), address);
        // Refilled, it holds the new value everywhere, not the old one.
        pool.give(again);
        assert!(pool.filled(500, 0.0).iter().all(|&x| x == 0.0));
    }

    #[test]
    fn a_pool_keeps_a_bounded_number_of_vectors() {
        let pool = Pool::new(KEPT);
        for _ in 0..3 * KEPT {
            pool.give(vec![0u64; 4]);
        }
        let kept = (0..3 * KEPT)
            .map(|_| pool.take())
            .filter(|v| v.capacity() > 0)
            .count();
        assert_eq!(kept, KEPT);
    }
}
