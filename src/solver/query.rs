//! One query to allocate: a curve with an optional cap, a weight and an id.

use crate::error::{self, Result, Subject};
use crate::model::{Curve, ShiftedSurge};

/// One query to allocate: its curve and, optionally, a cap, a weight and an id.
///
/// A `Query` is valid once built, like the [`ShiftedSurge`] it holds: the curve was
/// checked by its constructor, every `u64` is a valid cap, and
/// [`with_weight`](Query::with_weight) — the one setter that can receive a bad value
/// — is fallible. So the allocators never meet an invalid query.
///
/// ```
/// use clear_alloc::{Query, ShiftedSurge};
///
/// let query = Query::new(ShiftedSurge::new(250.0, 200.0, 0.9)?)
///     .with_cap(4096)
///     .with_weight(2.0)?
///     .with_id("q1");
/// assert_eq!(query.cap(), Some(4096));
/// assert_eq!(query.id(), Some("q1"));
/// assert!(query.clone().with_weight(f64::NAN).is_err());
/// # Ok::<(), clear_alloc::Error>(())
/// ```
///
/// The curve may be any [`Curve`]; the default is the [`ShiftedSurge`].
#[derive(Debug, Clone, PartialEq)]
pub struct Query<C: Curve = ShiftedSurge> {
    curve: C,
    cap: Option<u64>,
    weight: f64,
    id: Option<String>,
}

impl<C: Curve> Query<C> {
    /// A query with no cap of its own, weight 1 and no id.
    pub fn new(curve: C) -> Self {
        Query {
            curve,
            cap: None,
            weight: 1.0,
            id: None,
        }
    }

    /// Sets the query's own cap in tokens (any value is valid; 0 abandons the query).
    pub fn with_cap(mut self, cap: u64) -> Self {
        self.cap = Some(cap);
        self
    }

    /// Sets the priority weight: the objective counts `weight · U(b)`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) (field `weight`)
    /// unless the weight is finite and ≥ 0 and the weighted ceiling and peak marginal
    /// utility are representable. The error names no query; a caller building a
    /// batch names it by its position.
    pub fn with_weight(mut self, weight: f64) -> Result<Self> {
        check_weight(&self.curve, weight)?;
        self.weight = weight;
        Ok(self)
    }

    /// Sets the id used in errors and reports.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The query's utility curve.
    pub fn curve(&self) -> &C {
        &self.curve
    }

    /// Most tokens this query may get; `None` uses the allocator's default cap.
    pub fn cap(&self) -> Option<u64> {
        self.cap
    }

    /// The priority weight (finite and ≥ 0; default 1).
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// The caller's name for the query.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The weighted utility `weight · U(tokens)`.
    pub(crate) fn utility(&self, tokens: f64) -> f64 {
        self.weight * self.curve.utility(tokens)
    }
}

/// The weight a query of `curve` may carry: finite, ≥ 0, and small enough that the
/// constants its bidder forms stay finite (checked by [`Query::with_weight`] and by
/// the online allocator's sampled arrivals).
pub(crate) fn check_weight<C: Curve>(curve: &C, weight: f64) -> Result<()> {
    error::non_negative(Subject::Parameter, "weight", weight)?;
    // `peak · e` is the surge's `ceiling / width`, the constant its bidder forms.
    let steepest = curve.peak_marginal() * std::f64::consts::E;
    error::ensure(
        (weight * curve.ceiling()).is_finite() && (weight * steepest).is_finite(),
        Subject::Parameter,
        "weight",
        weight,
        "is too large: weight times ceiling (or ceiling / width) overflows",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn curve() -> ShiftedSurge {
        ShiftedSurge::new(100.0, 50.0, 0.9).unwrap()
    }

    #[test]
    fn with_weight_rejects_what_the_objective_cannot_use() {
        for bad in [-1.0, f64::NAN, f64::INFINITY, -0.0 - 1e-300] {
            let err = Query::new(curve()).with_weight(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidParameter {
                        field: "weight",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
        // Finite, but weight × ceiling / width overflows.
        let wide = ShiftedSurge::new(0.0, 1.0, 1e300).unwrap();
        let err = Query::new(wide).with_weight(1e10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "weight = 10000000000 is invalid: is too large: weight times ceiling (or \
             ceiling / width) overflows"
        );
        assert_eq!(Query::new(curve()).with_weight(0.0).unwrap().weight(), 0.0);
    }

    #[test]
    fn a_rejected_weight_leaves_nothing_half_set() {
        let query = Query::new(curve()).with_cap(7).with_id("q");
        assert!(query.clone().with_weight(-2.0).is_err());
        assert_eq!(query.weight(), 1.0);
        let weighted = query.with_weight(2.5).unwrap();
        assert_eq!(
            (weighted.cap(), weighted.weight(), weighted.id()),
            (Some(7), 2.5, Some("q"))
        );
        assert_eq!(weighted.utility(150.0), 2.5 * curve().utility(150.0));
    }
}
