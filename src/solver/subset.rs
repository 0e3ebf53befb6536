//! The queries still in play, compacted: once the price search has a low end, only
//! the queries funded there can be funded anywhere in the bracket, and everything
//! after the first pass — the remaining passes, the leftover step, rounding and the
//! result — works on them alone, by position in this set.

use super::bid::Bidding;
use super::market::Market;

/// A subset of the batch in input order: the queries' indices (`u32`: a batch of 2³²
/// queries would need hundreds of gigabytes of bidders), their caps, and — when the
/// bidder type is small and owns no memory ([`Bidding::COMPACT`]) — copies of their
/// bidders side by side, so that a pass reads them contiguously.
#[derive(Debug, Clone)]
pub(super) struct Subset<B> {
    pub index: Vec<u32>,
    pub caps: Vec<u64>,
    /// Empty unless `B::COMPACT`.
    pub bidders: Vec<B>,
}

impl<B: Bidding> Default for Subset<B> {
    fn default() -> Self {
        Subset {
            index: Vec::new(),
            caps: Vec::new(),
            bidders: Vec::new(),
        }
    }
}

impl<B: Bidding> Subset<B> {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn clear(&mut self) {
        self.index.clear();
        self.caps.clear();
        self.bidders.clear();
    }

    /// Room for `additional` more members.
    pub fn reserve(&mut self, additional: usize) {
        self.index.reserve(additional);
        self.caps.reserve(additional);
        if B::COMPACT {
            self.bidders.reserve(additional);
        }
    }

    /// Appends query `i` of `market`.
    #[inline]
    pub fn push(&mut self, market: &Market<B>, i: usize) {
        self.index.push(i as u32);
        self.caps.push(market.caps[i]);
        if B::COMPACT {
            self.bidders.push(market.bidders[i].clone());
        }
    }

    /// Appends query `i`, prepared as `bidder` under `cap`, without a market.
    #[inline]
    pub fn push_prepared(&mut self, i: u32, cap: u64, bidder: B) {
        self.index.push(i);
        self.caps.push(cap);
        if B::COMPACT {
            self.bidders.push(bidder);
        }
    }

    /// Appends the members of `later`, queries after all of this set's.
    #[cfg(feature = "parallel")]
    pub fn extend_from(&mut self, later: &Subset<B>) {
        self.index.extend_from_slice(&later.index);
        self.caps.extend_from_slice(&later.caps);
        self.bidders.extend_from_slice(&later.bidders);
    }

    /// Every query of `market`, in order.
    pub fn fill_all(&mut self, market: &Market<B>) {
        self.clear();
        for i in 0..market.len() {
            self.push(market, i);
        }
    }

    /// Keeps the members bidding at `bids` (by position, `bids[k] > 0`), in order,
    /// moving `bids` and the other arrays in `values` (all as long as the set) along.
    pub fn retain_bidding(&mut self, bids: &mut Vec<f64>, values: &mut [&mut Vec<f64>]) {
        // Members before the first one out stay where they are.
        let Some(first_out) = bids.iter().position(|&bid| bid <= 0.0) else {
            return;
        };
        let mut kept = first_out;
        for k in first_out..self.len() {
            if bids[k] <= 0.0 {
                continue;
            }
            self.index[kept] = self.index[k];
            self.caps[kept] = self.caps[k];
            if B::COMPACT {
                self.bidders.swap(kept, k);
            }
            bids[kept] = bids[k];
            for v in values.iter_mut() {
                v[kept] = v[k];
            }
            kept += 1;
        }
        self.index.truncate(kept);
        self.caps.truncate(kept);
        self.bidders.truncate(kept);
        bids.truncate(kept);
        for v in values.iter_mut() {
            v.truncate(kept);
        }
    }
}

/// A subset together with its market: what the leftover step and rounding see.
pub(super) struct Members<'a, B: Bidding> {
    pub market: &'a Market<B>,
    pub set: &'a Subset<B>,
}

impl<B: Bidding> Clone for Members<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Bidding> Copy for Members<'_, B> {}

impl<'a, B: Bidding> Members<'a, B> {
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// The query at position `k`, as an index into the batch.
    #[inline]
    pub fn query(&self, k: usize) -> usize {
        self.set.index[k] as usize
    }

    #[inline]
    pub fn bidder(&self, k: usize) -> &'a B {
        if B::COMPACT {
            &self.set.bidders[k]
        } else {
            &self.market.bidders[self.set.index[k] as usize]
        }
    }

    #[inline]
    pub fn cap(&self, k: usize) -> u64 {
        self.set.caps[k]
    }
}

/// Bidders and caps by position: the whole market, or the members of a subset.
pub(super) trait Bidders<B> {
    /// The query at position `k`, as an index into the batch.
    fn query(&self, k: usize) -> usize;
    /// The first position whose query is `i` or later (positions are in query order).
    fn first_from(&self, i: usize) -> usize;
    fn bidder(&self, k: usize) -> &B;
    fn cap(&self, k: usize) -> u64;
}

impl<B: Bidding> Bidders<B> for Market<B> {
    fn query(&self, k: usize) -> usize {
        k
    }
    fn first_from(&self, i: usize) -> usize {
        i.min(self.len())
    }
    #[inline]
    fn bidder(&self, k: usize) -> &B {
        &self.bidders[k]
    }
    #[inline]
    fn cap(&self, k: usize) -> u64 {
        self.caps[k]
    }
}

impl<B: Bidding> Bidders<B> for Members<'_, B> {
    fn query(&self, k: usize) -> usize {
        Members::query(self, k)
    }
    fn first_from(&self, i: usize) -> usize {
        self.set.index.partition_point(|&q| (q as usize) < i)
    }
    #[inline]
    fn bidder(&self, k: usize) -> &B {
        Members::bidder(self, k)
    }
    #[inline]
    fn cap(&self, k: usize) -> u64 {
        Members::cap(self, k)
    }
}
