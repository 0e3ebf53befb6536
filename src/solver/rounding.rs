//! Rounding to whole tokens: multiples of the granularity, within the caps, with the
//! rounding remainder handed back and `Σ ≤ budget` enforced in integers.

use super::bid::Bidding;
use super::chunks;
use super::scratch::Scratch;
use super::subset::Bidders;
use super::Allocator;

impl Allocator {
    /// Whole tokens: round down to the granularity and the cap, drop grants that do
    /// not pass the threshold (they buy nothing), then — with a budget — give the
    /// rounding remainder back, one granule each, to the queries that lost the most,
    /// and enforce `Σ ≤ budget` in integers. The grants and the losses live in
    /// `scratch`'s memory.
    pub(super) fn round<B: Bidding>(
        &self,
        market: &(impl Bidders<B> + Sync),
        tokens: &[f64],
        budget: Option<u64>,
        scratch: &Scratch,
    ) -> Vec<u64> {
        let g = self.granularity;
        let useful = |i: usize, grant: u64| grant as f64 > market.bidder(i).threshold();
        let mut grants = scratch.grants.take();
        chunks::map_into(tokens, &mut grants, |i, &t| {
            let cap = market.cap(i);
            // A bid at the cap is granted the integer cap: above 2^53 the f64 bid is the
            // cap rounded, and rounding down would grant less than a budget that covers
            // every cap allows, and call it funded, not capped.
            let grant = if t >= market.bidder(i).cap() {
                cap
            } else {
                self.round_down(t).min(cap)
            };
            if grant > 0 && market.bidder(i).threshold() < grant as f64 {
                grant
            } else {
                0
            }
        });
        let Some(budget) = budget else {
            return grants;
        };
        let budget = budget as u128;
        let mut used: u128 = chunks::reduce(
            &grants,
            0,
            |part| part.iter().map(|&x| x as u128).sum(),
            |a, b| a + b,
        );
        if used + g as u128 <= budget {
            // What each query lost to rounding, where one more granule fits it (a
            // loss that counts is positive, as `t > grant`).
            let grants_now = &grants;
            let mut losers = scratch.losers.take();
            let mut losses = scratch.bids.take();
            chunks::positive_into(tokens.len(), &mut losers, &mut losses, |i| {
                let (t, grant) = (tokens[i], grants_now[i]);
                let more_fits = grant
                    .checked_add(g)
                    .is_some_and(|more| more <= market.cap(i) && useful(i, more));
                if t > grant as f64 && more_fits {
                    t - grant as f64
                } else {
                    0.0
                }
            });
            scratch.bids.give(losses);
            let k = (((budget - used) / g as u128) as usize).min(losers.len());
            if k > 0 && k < losers.len() {
                losers.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            }
            for &(_, i) in &losers[..k] {
                grants[i] += g;
                used += g as u128;
            }
            scratch.losers.give(losers);
        }
        // Floating-point sums of huge budgets can round up; take any excess back.
        for grant in grants.iter_mut() {
            if used <= budget {
                break;
            }
            let take = ((used - budget).div_ceil(g as u128) * g as u128).min(*grant as u128);
            *grant -= take as u64;
            used -= take;
        }
        grants
    }

    /// `tokens` rounded down to a multiple of the granularity, as whole tokens
    /// (saturating; negative and NaN give 0).
    fn round_down(&self, tokens: f64) -> u64 {
        self.round_down_whole(tokens as u64)
    }

    /// `tokens` rounded down to a multiple of the granularity (the common granularity
    /// 1 skips the integer division, which is costly in a per-query loop).
    pub(super) fn round_down_whole(&self, tokens: u64) -> u64 {
        if self.granularity == 1 {
            tokens
        } else {
            tokens - tokens % self.granularity
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::market::Market;
    use crate::{Query, ShiftedSurge};

    fn market(allocator: &Allocator, caps: &[u64]) -> Market<crate::solver::Bidder> {
        let curve = ShiftedSurge::new(100.0, 50.0, 0.9).unwrap();
        let queries: Vec<Query> = caps
            .iter()
            .map(|&c| Query::new(curve).with_cap(c))
            .collect();
        Market::prepare(allocator, &queries)
    }

    #[test]
    fn grants_are_multiples_of_the_granularity_within_caps() {
        let allocator = Allocator::builder().granularity(16).build().unwrap();
        // Caps are rounded down to the granularity when the market is prepared.
        let m = market(&allocator, &[1000, 1000, 200]);
        assert_eq!(m.caps, [992, 992, 192]);
        let grants = allocator.round(&m, &[150.0, 999.0, 500.0], None, &Scratch::new());
        assert_eq!(grants, [144, 992, 192]);
        assert!(grants.iter().all(|g| g % 16 == 0));
    }

    #[test]
    fn grants_that_cannot_pass_the_threshold_are_dropped() {
        let allocator = Allocator::builder().granularity(64).build().unwrap();
        let m = market(&allocator, &[1000, 1000]);
        // 127 rounds to 64, below the threshold of 100: it buys nothing.
        assert_eq!(
            allocator.round(&m, &[127.0, 130.0], None, &Scratch::new()),
            [0, 128]
        );
    }

    #[test]
    fn the_remainder_goes_to_the_largest_losses() {
        let allocator = Allocator::builder().granularity(10).build().unwrap();
        let m = market(&allocator, &[1000, 1000, 1000]);
        // Rounded down: 200, 300, 400 = 900; budget 920 has room for two granules,
        // which go to the two largest fractional losses (9 and 5, not 1).
        let grants = allocator.round(&m, &[209.0, 301.0, 405.0], Some(920), &Scratch::new());
        assert_eq!(grants, [210, 300, 410]);
    }

    #[test]
    fn the_sum_never_exceeds_the_budget() {
        let allocator = Allocator::default();
        let m = market(&allocator, &[u64::MAX, u64::MAX]);
        // Float bids can sum past the budget; integers take the excess back.
        let grants = allocator.round(
            &m,
            &[6e18, 6e18],
            Some(10_000_000_000_000_000_000),
            &Scratch::new(),
        );
        let sum: u128 = grants.iter().map(|&g| g as u128).sum();
        assert!(sum <= 10_000_000_000_000_000_000);
    }

    #[test]
    fn a_bid_at_the_cap_gets_the_integer_cap() {
        let allocator = Allocator::default();
        let cap = (1u64 << 53) + 1;
        let m = market(&allocator, &[cap]);
        let bid = m.bidders[0].cap();
        assert_eq!(bid as u64, 1 << 53);
        assert_eq!(
            allocator.round(&m, &[bid], Some(u64::MAX), &Scratch::new()),
            [cap]
        );
    }

    #[test]
    fn round_down_handles_granularity_one_and_nonsense() {
        let one = Allocator::default();
        assert_eq!(one.round_down(7.9), 7);
        assert_eq!(one.round_down(f64::NAN), 0);
        assert_eq!(one.round_down(-3.0), 0);
        let g = Allocator::builder().granularity(7).build().unwrap();
        assert_eq!(g.round_down_whole(20), 14);
        // Saturates at u64::MAX = 2^64 − 1 ≡ 1 (mod 7).
        assert_eq!(g.round_down(1e30), u64::MAX - 1);
    }
}
