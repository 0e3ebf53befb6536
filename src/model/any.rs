//! [`AnyCurve`]: one batch of queries with curves of different kinds.

use super::curve::Curve;
use super::hull::HullBidder;
use super::mixture::MixtureBidder;
use super::{Mixture, PiecewiseLinear, ShiftedSurge};
use crate::solver::{Bid, BidRule, Bidder, Bidding};

/// A curve of any of the crate's kinds, for a batch that mixes them (each query's
/// bids still use its own kind's method). A batch of one kind is faster as that
/// kind: `Query<ShiftedSurge>` keeps the closed form without a branch per bid.
///
/// ```
/// use clear_alloc::{AnyCurve, Allocator, PiecewiseLinear, Query, ShiftedSurge};
///
/// let queries = vec![
///     Query::new(AnyCurve::from(ShiftedSurge::new(150.0, 100.0, 0.9)?)).with_cap(2048),
///     Query::new(AnyCurve::from(PiecewiseLinear::new([(100.0, 0.0), (400.0, 0.8)])?))
///         .with_cap(2048),
/// ];
/// let allocation = Allocator::default().allocate(&queries, 600)?;
/// assert!(allocation.total_tokens() <= 600);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AnyCurve {
    /// A shifted surge (closed forms).
    Surge(ShiftedSurge),
    /// A mixture of shifted surges.
    Mixture(Mixture),
    /// A piecewise-linear curve through points.
    PiecewiseLinear(PiecewiseLinear),
    /// The empirical curve of rollouts.
    #[cfg(feature = "fit")]
    Empirical(crate::fit::EmpiricalCurve),
}

impl From<ShiftedSurge> for AnyCurve {
    fn from(curve: ShiftedSurge) -> Self {
        AnyCurve::Surge(curve)
    }
}

impl From<Mixture> for AnyCurve {
    fn from(curve: Mixture) -> Self {
        AnyCurve::Mixture(curve)
    }
}

impl From<PiecewiseLinear> for AnyCurve {
    fn from(curve: PiecewiseLinear) -> Self {
        AnyCurve::PiecewiseLinear(curve)
    }
}

#[cfg(feature = "fit")]
impl From<crate::fit::EmpiricalCurve> for AnyCurve {
    fn from(curve: crate::fit::EmpiricalCurve) -> Self {
        AnyCurve::Empirical(curve)
    }
}

/// Calls `$method` on the curve inside, whatever its kind.
macro_rules! each {
    ($self:expr, $curve:ident => $body:expr) => {
        match $self {
            AnyCurve::Surge($curve) => $body,
            AnyCurve::Mixture($curve) => $body,
            AnyCurve::PiecewiseLinear($curve) => $body,
            #[cfg(feature = "fit")]
            AnyCurve::Empirical($curve) => $body,
        }
    };
}

impl Curve for AnyCurve {
    type Bidder = AnyBidder;

    fn bidder(&self, weight: f64, cap: f64) -> AnyBidder {
        match self {
            AnyCurve::Surge(c) => AnyBidder::Surge(c.bidder(weight, cap)),
            AnyCurve::Mixture(c) => AnyBidder::Mixture(c.bidder(weight, cap)),
            AnyCurve::PiecewiseLinear(c) => AnyBidder::Hull(c.bidder(weight, cap)),
            #[cfg(feature = "fit")]
            AnyCurve::Empirical(c) => AnyBidder::Hull(c.bidder(weight, cap)),
        }
    }

    fn utility(&self, budget: f64) -> f64 {
        each!(self, c => Curve::utility(c, budget))
    }

    fn marginal(&self, budget: f64) -> f64 {
        each!(self, c => Curve::marginal(c, budget))
    }

    fn ceiling(&self) -> f64 {
        each!(self, c => Curve::ceiling(c))
    }

    fn threshold(&self) -> f64 {
        each!(self, c => Curve::threshold(c))
    }

    fn peak_marginal(&self) -> f64 {
        each!(self, c => Curve::peak_marginal(c))
    }
}

/// The bidder of an [`AnyCurve`].
#[derive(Debug, Clone, PartialEq)]
pub enum AnyBidder {
    /// A shifted surge's.
    Surge(Bidder),
    /// A mixture's.
    Mixture(MixtureBidder),
    /// A point curve's hull.
    Hull(HullBidder),
}

/// Calls `$method` on the bidder inside, whatever its kind.
macro_rules! each_bidder {
    ($self:expr, $b:ident => $body:expr) => {
        match $self {
            AnyBidder::Surge($b) => $body,
            AnyBidder::Mixture($b) => $body,
            AnyBidder::Hull($b) => $body,
        }
    };
}

impl Bidding for AnyBidder {
    fn cap(&self) -> f64 {
        each_bidder!(self, b => Bidding::cap(b))
    }
    fn threshold(&self) -> f64 {
        each_bidder!(self, b => Bidding::threshold(b))
    }
    fn fundable(&self) -> bool {
        each_bidder!(self, b => Bidding::fundable(b))
    }
    fn max_price_under(&self, rule: BidRule) -> f64 {
        each_bidder!(self, b => Bidding::max_price_under(b, rule))
    }
    fn bid_by(&self, price: f64, rule: BidRule) -> Bid {
        each_bidder!(self, b => Bidding::bid_by(b, price, rule))
    }
    fn bid_funded(&self, price: f64) -> Bid {
        each_bidder!(self, b => Bidding::bid_funded(b, price))
    }
    fn funded_bid_at(&self, tokens: f64) -> Bid {
        each_bidder!(self, b => Bidding::funded_bid_at(b, tokens))
    }
    fn abandonment_price_within(&self, limit: f64) -> f64 {
        each_bidder!(self, b => Bidding::abandonment_price_within(b, limit))
    }
}
