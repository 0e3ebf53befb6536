//! Curves from budget sweeps: accuracy measured at a few budgets, as in the paper's
//! Figure 1, fitted by least squares.
//!
//! The model value at budget `b` is `p · P(2, (b − τ)/w)`. For fixed `(τ, w)` the best
//! free ceiling is the linear least-squares slope `Σ g y / Σ g²`, so every variant is a
//! two-dimensional problem in `(τ, ln w)`: a coarse grid picks the start and argmin's
//! Nelder–Mead polishes it.

use super::optimise;
use crate::error::{ensure, non_negative, Error, Result, Subject};
use crate::model::{surge_cdf, ShiftedSurge};

/// What the measured values are relative to the ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SweepCeiling {
    /// The values are `U(b)/U∞` (a recall curve that tends to 1): the ceiling is 1.
    Normalised,
    /// The values are accuracies and the ceiling is fitted too.
    Free,
    /// The values are accuracies and the ceiling is known.
    Fixed(f64),
}

/// A curve fitted to a budget sweep, with its residuals.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepFit {
    /// The fitted curve.
    pub curve: ShiftedSurge,
    /// Root-mean-square residual.
    pub rmse: f64,
    /// Largest absolute residual.
    pub max_error: f64,
}

/// Fits a curve to `(budget, accuracy)` points by least squares.
///
/// ```
/// use clear_alloc::fit::{fit_sweep, SweepCeiling};
/// use clear_alloc::ShiftedSurge;
///
/// let truth = ShiftedSurge::new(142.0, 218.0, 1.0)?;
/// let points: Vec<(f64, f64)> =
///     [128.0, 256.0, 512.0, 1024.0, 2048.0].iter().map(|&b| (b, truth.utility(b))).collect();
/// let fit = fit_sweep(&points, SweepCeiling::Normalised)?;
/// assert!((fit.curve.threshold() - 142.0).abs() < 0.5);
/// assert!((fit.curve.width() - 218.0).abs() < 0.5);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] for a NaN, infinite or negative budget, an accuracy
/// outside `[0, 1]`, or a fixed ceiling outside `[0, 1]`; [`Error::InsufficientData`]
/// with fewer distinct budgets than free parameters (2, or 3 with a free ceiling) or no
/// positive accuracy (then the threshold is only bounded below).
pub fn fit_sweep(points: &[(f64, f64)], ceiling: SweepCeiling) -> Result<SweepFit> {
    for &(budget, accuracy) in points {
        non_negative(Subject::Parameter, "budget", budget)?;
        ensure(
            (0.0..=1.0).contains(&accuracy),
            Subject::Parameter,
            "accuracy",
            accuracy,
            "must be in [0, 1]",
        )?;
    }
    if let SweepCeiling::Fixed(p) = ceiling {
        ensure(
            (0.0..=1.0).contains(&p),
            Subject::Parameter,
            "ceiling",
            p,
            "must be in [0, 1]",
        )?;
    }
    let insufficient = |reason: String| Error::InsufficientData {
        query: None,
        reason: format!("budget sweep: {reason}"),
    };
    let mut budgets: Vec<f64> = points.iter().map(|p| p.0).collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup();
    let needed = if ceiling == SweepCeiling::Free { 3 } else { 2 };
    if budgets.len() < needed {
        return Err(insufficient(format!(
            "{} distinct budget(s); {needed} are needed for the free parameters",
            budgets.len()
        )));
    }
    if !points.iter().any(|p| p.1 > 0.0) {
        return Err(insufficient(
            "no accuracy above 0: the threshold is only known to exceed the largest budget"
                .to_owned(),
        ));
    }
    let largest = budgets[budgets.len() - 1];
    // Residuals at (τ, w) with the ceiling fixed or profiled out; returns (SSE, p).
    let evaluate = |threshold: f64, width: f64| -> (f64, f64) {
        let shape: Vec<f64> = points
            .iter()
            .map(|&(b, _)| surge_cdf((b - threshold).max(0.0) / width))
            .collect();
        let p = match ceiling {
            SweepCeiling::Normalised => 1.0,
            SweepCeiling::Fixed(p) => p,
            SweepCeiling::Free => {
                let gy: f64 = shape.iter().zip(points).map(|(g, p)| g * p.1).sum();
                let gg: f64 = shape.iter().map(|g| g * g).sum();
                if gg > 0.0 {
                    (gy / gg).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            }
        };
        let sse = shape
            .iter()
            .zip(points)
            .map(|(g, point)| (p * g - point.1).powi(2))
            .sum();
        (sse, p)
    };
    let objective = |x: &[f64]| {
        if x[0] < 0.0 || x[0] > largest || !x[1].is_finite() {
            return f64::NEG_INFINITY;
        }
        -evaluate(x[0], x[1].exp()).0
    };
    // Coarse grid: τ over [0, largest], ln w over [ln 1, ln(10 · largest)].
    let (steps, ln_top) = (40, (10.0 * largest.max(1.0)).ln());
    let mut start = [0.0, 0.0];
    let mut best = f64::NEG_INFINITY;
    for i in 0..=steps {
        for j in 0..=steps {
            let x = [
                largest * i as f64 / steps as f64,
                ln_top * j as f64 / steps as f64,
            ];
            let value = objective(&x);
            if value > best {
                best = value;
                start = x;
            }
        }
    }
    let step_t = (largest / steps as f64).max(1.0);
    let x = optimise::maximise_nd(objective, &start, &[step_t, 0.2]);
    let (threshold, width) = (x[0], x[1].exp());
    let (sse, p) = evaluate(threshold, width);
    let curve = ShiftedSurge::new(threshold, width, p)?;
    let max_error = points
        .iter()
        .map(|&(b, y)| (curve.utility(b) - y).abs())
        .fold(0.0, f64::max);
    Ok(SweepFit {
        curve,
        rmse: (sse / points.len() as f64).sqrt(),
        max_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn free_ceiling_is_recovered_from_exact_points() {
        let truth = ShiftedSurge::new(300.0, 150.0, 0.62).unwrap();
        let points: Vec<(f64, f64)> = (1..=12)
            .map(|i| 100.0 * i as f64)
            .map(|b| (b, truth.utility(b)))
            .collect();
        let fit = fit_sweep(&points, SweepCeiling::Free).unwrap();
        assert_relative_eq!(fit.curve.threshold(), 300.0, max_relative = 1e-3);
        assert_relative_eq!(fit.curve.width(), 150.0, max_relative = 1e-3);
        assert_relative_eq!(fit.curve.ceiling(), 0.62, max_relative = 1e-3);
        assert!(fit.max_error < 1e-4);
    }

    #[test]
    fn bad_and_thin_sweeps_are_typed_errors() {
        let nan = fit_sweep(&[(f64::NAN, 0.5), (10.0, 0.6)], SweepCeiling::Normalised);
        assert!(matches!(
            nan,
            Err(Error::InvalidParameter {
                field: "budget",
                ..
            })
        ));
        let over = fit_sweep(&[(1.0, 1.5), (10.0, 0.6)], SweepCeiling::Normalised);
        assert!(matches!(
            over,
            Err(Error::InvalidParameter {
                field: "accuracy",
                ..
            })
        ));
        let two = fit_sweep(&[(1.0, 0.1), (10.0, 0.6)], SweepCeiling::Free);
        assert!(matches!(two, Err(Error::InsufficientData { .. })));
        let zeros = fit_sweep(&[(1.0, 0.0), (10.0, 0.0)], SweepCeiling::Normalised);
        assert!(matches!(zeros, Err(Error::InsufficientData { .. })));
        assert!(fit_sweep(&[], SweepCeiling::Fixed(0.5)).is_err());
        assert!(fit_sweep(&[(1.0, 0.1), (2.0, 0.2)], SweepCeiling::Fixed(2.0)).is_err());
    }
}
