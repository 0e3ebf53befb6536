//! Best responses on the upper concave hull, for curves given by points: the
//! [`PiecewiseLinear`](super::PiecewiseLinear) curve and the empirical curve of
//! rollouts.
//!
//! # The math
//!
//! For any curve, `max_{0 ≤ b ≤ cap} U(b) − λb` equals the maximum of `M(b) − λb`
//! where `M` is the least concave majorant of `U` on `[0, cap]` (a linear function
//! attains its maximum over a set and over its convex hull at an extreme point, and
//! the extreme points of the hypograph's hull lie on the graph). When `U` is linear
//! between breakpoints (or a right-continuous step function, whose steps' tops are the
//! only candidates), `M` is the upper hull of the points `(0, 0)`, the breakpoints
//! before the cap and `(cap, U(cap))`: a chain of vertices `v_0 = (0, 0), v_1, …`
//! with strictly decreasing slopes `s_0 > s_1 > …`. At price λ the best response is
//! the vertex `v_k` with `k = #{j : s_j > λ}` — 0 tokens (abandoned) when `s_0 ≤ λ`,
//! so the abandonment price is `s_0 = max_{0 < b ≤ cap} U(b)/b`. Demand is a
//! non-increasing step function of λ, flat between the slopes.

use crate::solver::{Bid, BidRule, Bidding};
use std::sync::Arc;

/// How a curve runs between its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Between {
    /// Linear between points, flat after the last (from `(0, 0)` to the first).
    Linear,
    /// A right-continuous step at each point (0 before the first).
    Step,
}

/// Points `(tokens, utility)` with tokens ascending, and how the curve runs between
/// them; the value of the curve at any budget.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Points {
    pub points: Arc<[(f64, f64)]>,
    pub between: Between,
}

impl Points {
    /// `U(b)` (0 for `b ≤ 0`).
    pub fn utility(&self, b: f64) -> f64 {
        if b.is_nan() {
            return f64::NAN;
        }
        let p = &self.points;
        let after = p.partition_point(|&(x, _)| x <= b);
        match self.between {
            Between::Step => after.checked_sub(1).map_or(0.0, |i| p[i].1),
            Between::Linear => {
                if b <= 0.0 {
                    return 0.0;
                }
                if after == p.len() {
                    return p.last().map_or(0.0, |&(_, u)| u);
                }
                let (x1, u1) = p[after];
                let (x0, u0) = after.checked_sub(1).map_or((0.0, 0.0), |i| p[i]);
                u0 + (u1 - u0) * (b - x0) / (x1 - x0)
            }
        }
    }

    /// The slope of the segment right of `b` (0 after the last point; 0 everywhere for
    /// steps).
    pub fn marginal(&self, b: f64) -> f64 {
        if b.is_nan() {
            return f64::NAN;
        }
        let p = &self.points;
        let after = p.partition_point(|&(x, _)| x <= b);
        if self.between == Between::Step || after == p.len() || b < 0.0 {
            return 0.0;
        }
        let (x1, u1) = p[after];
        let (x0, u0) = after.checked_sub(1).map_or((0.0, 0.0), |i| p[i]);
        (u1 - u0) / (x1 - x0)
    }

    /// The largest budget with `U = 0` (∞ when `U` is 0 everywhere). A step at `x`
    /// counts from whole token `⌈x⌉`, so a grant of `⌈x⌉ − 1` buys nothing.
    pub fn threshold(&self) -> f64 {
        let p = &self.points;
        let Some(first) = p.iter().position(|&(_, u)| u > 0.0) else {
            return f64::INFINITY;
        };
        match self.between {
            Between::Linear => first.checked_sub(1).map_or(0.0, |i| p[i].0),
            Between::Step => (p[first].0.ceil() - 1.0).max(0.0),
        }
    }

    /// `max_{0 < b ≤ limit} U(b)/b`, at the points and at the limit (a step counts
    /// from token 1 at the earliest).
    pub fn best_ratio(&self, limit: f64) -> f64 {
        let at_limit = if limit > 0.0 {
            self.utility(limit) / limit
        } else {
            0.0
        };
        self.points
            .iter()
            .map(|&(x, u)| (self.first_token(x), u))
            .take_while(|&(x, _)| x <= limit)
            .filter(|&(x, _)| x > 0.0)
            .map(|(x, u)| u / x)
            .fold(at_limit, f64::max)
    }

    /// Where a point's utility is first bought: a step counts from token 1 at the
    /// earliest (a grant of 0 is no grant).
    fn first_token(&self, x: f64) -> f64 {
        match self.between {
            Between::Linear => x,
            Between::Step => x.max(1.0),
        }
    }

    /// The hull bidder of `weight · U` under `cap`.
    pub fn bidder(&self, weight: f64, cap: f64) -> HullBidder {
        let mut hull: Vec<(f64, f64)> = vec![(0.0, 0.0)];
        let candidates = self
            .points
            .iter()
            .map(|&(x, u)| (self.first_token(x), weight * u))
            .filter(|&(x, _)| x < cap)
            .chain((cap > 0.0).then(|| (cap, weight * self.utility(cap))));
        for point in candidates {
            while hull.len() >= 2 {
                let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
                // Drop b unless it lies strictly above the chord from a to the point.
                let cross = (b.0 - a.0) * (point.1 - a.1) - (b.1 - a.1) * (point.0 - a.0);
                if cross >= 0.0 {
                    hull.pop();
                } else {
                    break;
                }
            }
            if point.0 > hull[hull.len() - 1].0 {
                hull.push(point);
            }
        }
        // Flat segments buy nothing: the hull ends at its first highest vertex.
        while hull.len() >= 2 && hull[hull.len() - 1].1 <= hull[hull.len() - 2].1 {
            hull.pop();
        }
        let slopes = hull
            .windows(2)
            .map(|s| (s[1].1 - s[0].1) / (s[1].0 - s[0].0))
            .collect();
        HullBidder {
            hull,
            slopes,
            cap,
            threshold: self.threshold(),
            fundable: weight * self.utility(cap) > 0.0,
            points: self.clone(),
            weight,
        }
    }
}

/// A point curve's concave hull with its weight and cap folded in.
#[derive(Debug, Clone, PartialEq)]
pub struct HullBidder {
    /// Vertices from `(0, 0)`, ascending in tokens and utility.
    hull: Vec<(f64, f64)>,
    /// `slopes[k]` joins vertices `k` and `k + 1`; strictly decreasing and > 0.
    slopes: Vec<f64>,
    cap: f64,
    threshold: f64,
    fundable: bool,
    points: Points,
    weight: f64,
}

impl Bidding for HullBidder {
    fn cap(&self) -> f64 {
        self.cap
    }

    fn threshold(&self) -> f64 {
        self.threshold
    }

    fn fundable(&self) -> bool {
        self.fundable
    }

    fn max_price_under(&self, _rule: BidRule) -> f64 {
        self.slopes.first().copied().unwrap_or(0.0)
    }

    /// On the hull the rules agree: the hull is concave, so every vertex the price
    /// reaches has a positive surplus.
    fn bid_by(&self, price: f64, _rule: BidRule) -> Bid {
        let k = self.slopes.partition_point(|&s| s > price);
        if k == 0 {
            return Bid::Out;
        }
        let tokens = self.hull[k].0;
        if tokens >= self.cap {
            Bid::AtCap(self.cap)
        } else {
            Bid::Smooth { tokens, slope: 0.0 }
        }
    }

    fn bid_funded(&self, price: f64) -> Bid {
        self.bid_by(price, BidRule::KeepAll)
    }

    fn funded_bid_at(&self, tokens: f64) -> Bid {
        if tokens >= self.cap {
            Bid::AtCap(self.cap)
        } else {
            Bid::Smooth { tokens, slope: 0.0 }
        }
    }

    fn abandonment_price_within(&self, limit: f64) -> f64 {
        if limit >= self.cap {
            return self.max_price_under(BidRule::Rational);
        }
        self.weight * self.points.best_ratio(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(points: &[(f64, f64)]) -> Points {
        Points {
            points: points.into(),
            between: Between::Linear,
        }
    }

    #[test]
    fn linear_and_step_values() {
        let p = linear(&[(100.0, 0.0), (200.0, 0.5), (300.0, 0.6)]);
        assert_eq!(p.utility(50.0), 0.0);
        assert_eq!(p.utility(150.0), 0.25);
        assert_eq!(p.utility(1e9), 0.6);
        assert_eq!(p.marginal(150.0), 0.005);
        assert_eq!(p.marginal(400.0), 0.0);
        assert_eq!(p.threshold(), 100.0);
        let s = Points {
            points: [(120.0, 0.25), (300.0, 0.5)].into(),
            between: Between::Step,
        };
        assert_eq!(
            (s.utility(119.0), s.utility(120.0), s.utility(1e4)),
            (0.0, 0.25, 0.5)
        );
        assert_eq!(s.threshold(), 119.0);
    }

    #[test]
    fn hull_vertices_and_bids() {
        // Convex start (0 → 100 flat, then steep), then diminishing returns.
        let p = linear(&[(100.0, 0.0), (200.0, 0.5), (300.0, 0.6), (600.0, 0.7)]);
        let bidder = p.bidder(1.0, 1000.0);
        // The tangent from the origin touches (200, 0.5): slope 0.0025.
        assert_eq!(
            bidder.hull,
            [(0.0, 0.0), (200.0, 0.5), (300.0, 0.6), (600.0, 0.7)]
        );
        assert_eq!(bidder.max_price(), 0.0025);
        assert_eq!(bidder.bid(0.003), Bid::Out);
        assert_eq!(bidder.bid(0.002).tokens(), 200.0);
        assert_eq!(bidder.bid(0.0005).tokens(), 300.0);
        assert_eq!(bidder.bid(1e-6).tokens(), 600.0);
        // A cap inside a segment: the cap is the last vertex.
        let capped = p.bidder(2.0, 250.0);
        assert_eq!(capped.bid(1e-6), Bid::AtCap(250.0));
        assert_eq!(capped.abandonment_price_within(150.0), 2.0 * 0.25 / 150.0);
    }
}
