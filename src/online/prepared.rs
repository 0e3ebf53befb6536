//! A query prepared once for many admissions: its best response's constants folded
//! once, and its grant at the current price cached until the price changes, so that
//! admitting a request of a known class costs the window's atomics and little else.

use super::admit::{tight_grant, whole_tokens};
use super::reservoir::SampledQuery;
use super::{OnlineAllocator, Ticket};
use crate::error::{Error, Result};
use crate::model::{Curve, ShiftedSurge};
use crate::solver::{Bidding, Query};
use std::sync::atomic::{AtomicU64, Ordering};

/// Cached grants are whole tokens below this (larger ones are computed every time):
/// the low 32 bits of the cache word hold the grant, the high 32 the price generation.
const GRANT_BITS: u32 = 32;
const GRANT_MASK: u64 = (1 << GRANT_BITS) - 1;

/// A [`Query`] prepared for repeated admission by one [`OnlineAllocator`]: every
/// request of a class that shares one curve, weight and cap (a class with a shared
/// shape, or a curve the server caches) is admitted with
/// [`OnlineAllocator::admit_prepared`], which grants exactly what
/// [`admit`](OnlineAllocator::admit) grants for the query, without recomputing the
/// curve's constants or, while the price is unchanged, its best response.
///
/// The grant at the current price is cached in the handle, tagged with the
/// allocator's price generation (bumped at every [`end_window`](OnlineAllocator::end_window)),
/// so the first admission after a price change computes it and the others read it.
/// Share the handle between threads by reference or behind an `Arc`; the cache is
/// one atomic word, written once per price change.
///
/// ```
/// use clear_alloc::online::OnlineAllocator;
/// use clear_alloc::{Query, ShiftedSurge};
///
/// let online = OnlineAllocator::builder()
///     .tokens_per_window(10_000)
///     .default_cap(4096)
///     .initial_price(1e-4)
///     .build()?;
/// // At start-up: one handle per request class.
/// let easy = Query::new(ShiftedSurge::new(151.0, 101.0, 0.95)?);
/// let class = online.prepare(&easy);
///
/// // Per request (any thread):
/// let ticket = online.admit_prepared(&class)?;
/// assert_eq!(ticket.tokens(), online.admit(&easy)?.tokens());
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug)]
pub struct PreparedQuery<C: Curve = ShiftedSurge> {
    /// The query with its cap fixed, as the reservoir samples it.
    query: SampledQuery<C>,
    bidder: C::Bidder,
    /// The allocator that prepared it: the cached grant is at its price.
    allocator: u64,
    /// `(price generation + 1) mod 2³² << 32 | grant`; 0 (generation tag 0) is empty.
    cache: AtomicU64,
}

impl<C: Curve> PreparedQuery<C> {
    /// The query's curve.
    pub fn curve(&self) -> &C {
        self.query.curve()
    }

    /// The query's priority weight.
    pub fn weight(&self) -> f64 {
        self.query.weight()
    }

    /// The query's cap: its own, or the preparing allocator's default.
    pub fn cap(&self) -> u64 {
        self.query.cap()
    }
}

/// The cache word's tag for price generation `generation`: never 0, the empty tag,
/// unless 2³² − 1 generations (windows) have passed.
#[inline]
fn tag(generation: u64) -> u64 {
    (generation.wrapping_add(1) & GRANT_MASK) << GRANT_BITS
}

impl<C: Curve> OnlineAllocator<C> {
    /// Prepares `query` for [`admit_prepared`](Self::admit_prepared): its cap (its
    /// own or this allocator's default) and the constants of its best response are
    /// fixed now.
    pub fn prepare(&self, query: &Query<C>) -> PreparedQuery<C> {
        let query = SampledQuery::of(query, self.default_cap);
        PreparedQuery {
            bidder: query.bidder(),
            query,
            allocator: self.id,
            cache: AtomicU64::new(0),
        }
    }

    /// Admits one request of a prepared class: the same grant as
    /// [`admit`](Self::admit) of the prepared query, the same window accounting and
    /// sampling, with the best response read from the handle's cache while the price
    /// is unchanged. See [`PreparedQuery`].
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] (field `prepared`) when the handle was prepared by
    /// another allocator (its cached grant is at another price); nothing is reserved.
    #[inline]
    pub fn admit_prepared(&self, prepared: &PreparedQuery<C>) -> Result<Ticket> {
        if prepared.allocator != self.id {
            return Err(Error::invalid_parameter(
                "prepared",
                prepared.allocator,
                "was prepared by a different online allocator",
            ));
        }
        // A grant cached under this generation was computed at its price or a newer
        // one (the price is stored before the generation is published), and is used
        // only until the next generation is published.
        let generation = self.price_generation.load(Ordering::Acquire);
        let cached = prepared.cache.load(Ordering::Relaxed);
        let wanted = if cached & !GRANT_MASK == tag(generation) {
            cached & GRANT_MASK
        } else {
            let wanted = whole_tokens(prepared.bidder.bid(self.price()).tokens(), prepared.cap());
            if wanted < GRANT_MASK {
                prepared
                    .cache
                    .store(tag(generation) | wanted, Ordering::Relaxed);
            }
            wanted
        };
        let query = &prepared.query;
        Ok(self.reserve(
            wanted,
            |remaining| tight_grant(query.curve(), query.weight(), self.price(), remaining),
            || query.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::curve;
    use super::*;
    use crate::Error;

    #[test]
    fn a_prepared_query_is_granted_what_admit_grants_across_price_changes() {
        let online = OnlineAllocator::builder()
            .tokens_per_window(1_000_000)
            .default_cap(4096)
            .initial_price(1e-4)
            .build()
            .unwrap();
        let query = Query::new(curve(200.0, 200.0, 0.9));
        let class = online.prepare(&query);
        for price in [1e-4f64, 3e-4, 1e-5, 0.0, 1.0, 2e-4] {
            // As `end_window` publishes a new price.
            online.price_bits.store(price.to_bits(), Ordering::Relaxed);
            online.price_generation.fetch_add(1, Ordering::Release);
            let expected = whole_tokens(query.curve().best_response(price, 4096.0).unwrap(), 4096);
            // The first admission at a price fills the cache, the others read it.
            for _ in 0..3 {
                assert_eq!(online.admit_prepared(&class).unwrap().tokens(), expected);
                assert_eq!(online.admit(&query).unwrap().tokens(), expected);
            }
        }
    }

    #[test]
    fn a_handle_from_another_allocator_is_refused() {
        let build = || {
            OnlineAllocator::builder()
                .tokens_per_window(1_000)
                .build()
                .unwrap()
        };
        let (a, b) = (build(), build());
        let class = a.prepare(&Query::new(curve(100.0, 100.0, 0.9)));
        let err = b.admit_prepared(&class).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidParameter {
                field: "prepared",
                ..
            }
        ));
        assert_eq!(b.remaining(), 1_000);
    }

    #[test]
    fn the_cache_tag_skips_the_empty_word() {
        assert_ne!(tag(0), 0);
        assert_eq!(
            tag(u64::from(u32::MAX)),
            0,
            "only after 2^32 - 1 generations"
        );
        assert_ne!(tag(1), tag(2));
    }
}
