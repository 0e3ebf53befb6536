//! The empirical curve of one query: the step function "share of rollouts that were
//! correct within `b` tokens", and its Kolmogorov–Smirnov distance to a fitted curve.

use crate::error::{Error, Result};
use crate::fit::Rollout;
use crate::model::ShiftedSurge;

/// One query's empirical accuracy curve: `U(b)` is the share of its rollouts that
/// finished correctly within `b` tokens.
///
/// It is the non-parametric counterpart of a fitted [`ShiftedSurge`] and can stand in
/// for the true curve when an allocation is evaluated on held-out rollouts.
///
/// ```
/// use clear_alloc::fit::{EmpiricalCurve, Rollout};
///
/// let rollouts = [
///     Rollout::correct(120),
///     Rollout::correct(300),
///     Rollout::failed(80),
///     Rollout::truncated(1024),
/// ];
/// let curve = EmpiricalCurve::from_rollouts(&rollouts)?;
/// assert_eq!(curve.utility(100.0), 0.0);
/// assert_eq!(curve.utility(120.0), 0.25); // one of four rollouts correct by 120 tokens
/// assert_eq!(curve.utility(5000.0), 0.5);
/// assert_eq!(curve.ceiling(), 0.5);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EmpiricalCurve {
    /// Lengths of the correct rollouts, ascending.
    correct: Vec<f64>,
    rollouts: usize,
}

impl EmpiricalCurve {
    /// The empirical curve of a query's rollouts (correct ones count at their length;
    /// failed and truncated ones never count).
    ///
    /// # Errors
    /// [`Error::InsufficientData`] when `rollouts` is empty.
    pub fn from_rollouts(rollouts: &[Rollout]) -> Result<Self> {
        if rollouts.is_empty() {
            return Err(Error::InsufficientData {
                query: None,
                reason: "empirical curve: no rollouts".into(),
            });
        }
        let mut correct: Vec<f64> = rollouts
            .iter()
            .filter(|r| r.correct)
            .map(|r| r.tokens as f64)
            .collect();
        correct.sort_by(f64::total_cmp);
        Ok(EmpiricalCurve {
            correct,
            rollouts: rollouts.len(),
        })
    }

    /// The share of rollouts correct within `budget` tokens; NaN in gives NaN out.
    pub fn utility(&self, budget: f64) -> f64 {
        if budget.is_nan() {
            return f64::NAN;
        }
        let within = self.correct.partition_point(|&length| length <= budget);
        within as f64 / self.rollouts as f64
    }

    /// The share of rollouts that were correct at all: the curve's value at ∞.
    pub fn ceiling(&self) -> f64 {
        self.correct.len() as f64 / self.rollouts as f64
    }

    /// The lengths of the correct rollouts, ascending.
    pub fn correct_lengths(&self) -> &[f64] {
        &self.correct
    }

    /// How many rollouts the curve was built from.
    pub fn rollouts(&self) -> usize {
        self.rollouts
    }

    /// The Kolmogorov–Smirnov distance between the empirical CDF of the correct
    /// lengths and the fitted curve's CDF of a correct length, `U(b)/U∞`; `None` when
    /// there is no correct rollout.
    pub fn ks_distance(&self, fitted: &ShiftedSurge) -> Option<f64> {
        let unit = unit_curve(fitted).ok()?;
        ks_distance(&self.correct, |x| unit.utility(x))
    }
}

/// `fitted` with ceiling 1: `U(b)/U∞`, the CDF of the length of a correct rollout,
/// which every KS distance here compares the correct lengths with.
pub(crate) fn unit_curve(fitted: &ShiftedSurge) -> Result<ShiftedSurge> {
    ShiftedSurge::new(fitted.threshold(), fitted.width(), 1.0)
}

/// `sup_x |F_n(x) − F(x)|` for sorted `sample` and a continuous CDF `cdf`.
///
/// The supremum of a step function against a continuous one is reached next to a
/// jump, so it is enough to compare `F` at every distinct value with the empirical CDF
/// just before and just after its jump (ties jump together).
pub(crate) fn ks_distance(sample: &[f64], cdf: impl Fn(f64) -> f64) -> Option<f64> {
    if sample.is_empty() {
        return None;
    }
    let n = sample.len() as f64;
    let mut distance: f64 = 0.0;
    let mut i = 0;
    while i < sample.len() {
        let value = sample[i];
        let mut j = i;
        while j < sample.len() && sample[j] == value {
            j += 1;
        }
        let fitted = cdf(value);
        distance = distance
            .max((fitted - i as f64 / n).abs())
            .max((j as f64 / n - fitted).abs());
        i = j;
    }
    Some(distance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn ks_of_a_uniform_grid_against_the_uniform_cdf() {
        // Points at 1/8, 3/8, 5/8, 7/8 against U(0,1): every jump straddles F by 1/8.
        let sample = [0.125, 0.375, 0.625, 0.875];
        assert_abs_diff_eq!(ks_distance(&sample, |x| x).unwrap(), 0.125, epsilon = 1e-15);
    }

    #[test]
    fn ks_counts_ties_as_one_jump() {
        // Two points at 0.5 against U(0,1): the CDF jumps from 0 to 1 at 0.5.
        assert_abs_diff_eq!(
            ks_distance(&[0.5, 0.5], |x| x).unwrap(),
            0.5,
            epsilon = 1e-15
        );
        assert_eq!(ks_distance(&[], |x| x), None);
    }

    #[test]
    fn empty_rollouts_are_an_error_and_nan_budget_is_nan() {
        assert!(EmpiricalCurve::from_rollouts(&[]).is_err());
        let curve = EmpiricalCurve::from_rollouts(&[Rollout::failed(3)]).unwrap();
        assert!(curve.utility(f64::NAN).is_nan());
        assert_eq!(curve.ceiling(), 0.0);
        assert_eq!(
            curve.ks_distance(&ShiftedSurge::new(1.0, 1.0, 1.0).unwrap()),
            None
        );
    }
}
