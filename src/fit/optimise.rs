//! Thin wrappers around argmin's Brent and Nelder–Mead minimisers, turned into
//! maximisers of closures that may return −∞ (outside the domain) or NaN.
//!
//! argmin minimises and dislikes non-finite costs, so every cost is mapped through
//! [`finite_cost`]: a value outside the domain becomes a large finite penalty, which
//! both solvers treat as "worse than anything seen".

use argmin::core::{CostFunction, Executor, State};
use argmin::solver::brent::BrentOpt;
use argmin::solver::neldermead::NelderMead;

/// A cost no real point reaches; the penalty for points outside the domain.
const PENALTY: f64 = 1e300;

fn finite_cost(value: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        PENALTY
    }
}

struct Negated<F>(F);

impl<F: Fn(f64) -> f64> CostFunction for Negated<F> {
    type Param = f64;
    type Output = f64;
    fn cost(&self, x: &f64) -> Result<f64, argmin::core::Error> {
        Ok(finite_cost(-(self.0)(*x)))
    }
}

struct NegatedVec<F>(F);

impl<F: Fn(&[f64]) -> f64> CostFunction for NegatedVec<F> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        Ok(finite_cost(-(self.0)(x)))
    }
}

/// The maximiser of `f` on `[lo, hi]` and its value.
///
/// A profile likelihood need not be unimodal, so a grid of `grid + 1` points first
/// locates the best cell and Brent's method then polishes inside its two neighbours.
/// The better of the grid point and Brent's answer is returned, so the result is never
/// worse than the grid.
pub(crate) fn maximise_1d(f: impl Fn(f64) -> f64, lo: f64, hi: f64, grid: usize) -> (f64, f64) {
    let grid = grid.max(2);
    let step = (hi - lo) / grid as f64;
    let at = |i: usize| if i == grid { hi } else { lo + step * i as f64 };
    let mut best = (lo, f(lo));
    let mut best_index = 0;
    for i in 1..=grid {
        let x = at(i);
        let value = f(x);
        if value > best.1 || best.1.is_nan() {
            best = (x, value);
            best_index = i;
        }
    }
    if step.is_nan() || step <= 0.0 {
        return best;
    }
    let left = at(best_index.saturating_sub(1));
    let right = at((best_index + 1).min(grid));
    let tolerance = 1e-10 * (hi - lo).abs().max(hi.abs()).max(1e-300);
    let solver = BrentOpt::new(left, right).set_tolerance(f64::EPSILON.sqrt(), tolerance);
    let polished = Executor::new(Negated(&f), solver)
        .configure(|state| state.max_iters(200))
        .run()
        .ok()
        .and_then(|result| result.state.get_best_param().copied());
    if let Some(x) = polished {
        let value = f(x);
        if value > best.1 {
            best = (x, value);
        }
    }
    best
}

/// The maximiser of `f` by Nelder–Mead from `start`, with initial simplex steps `steps`
/// (one per coordinate). Returns `start` when the solver cannot improve on it.
pub(crate) fn maximise_nd(f: impl Fn(&[f64]) -> f64, start: &[f64], steps: &[f64]) -> Vec<f64> {
    let mut simplex = vec![start.to_vec()];
    for (i, step) in steps.iter().enumerate() {
        let mut vertex = start.to_vec();
        vertex[i] += step;
        simplex.push(vertex);
    }
    let solver = match NelderMead::new(simplex).with_sd_tolerance(1e-12) {
        Ok(solver) => solver,
        Err(_) => return start.to_vec(),
    };
    let found = Executor::new(NegatedVec(&f), solver)
        .configure(|state| state.max_iters(2000))
        .run()
        .ok()
        .and_then(|result| result.state.get_best_param().cloned());
    match found {
        Some(x) if f(&x) >= f(start) => x,
        _ => start.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn brent_finds_the_global_peak_of_a_bimodal_function() {
        // Peaks at 1 (height 1) and 4 (height 2); a bare Brent start in the middle
        // could settle on either, the grid picks the right cell.
        let f = |x: f64| (-(x - 1.0).powi(2)).exp() + 2.0 * (-(x - 4.0).powi(2)).exp();
        let (x, value) = maximise_1d(f, 0.0, 6.0, 12);
        assert_abs_diff_eq!(x, 4.0, epsilon = 1e-3);
        assert!(value > 2.0 - 1e-6);
    }

    #[test]
    fn minus_infinity_outside_the_domain_is_a_penalty_not_an_error() {
        let f = |x: f64| {
            if x >= 1.0 {
                f64::NEG_INFINITY
            } else {
                x.ln_1p() - x * x
            }
        };
        let (x, _) = maximise_1d(f, 0.0, 1.0, 8);
        // d/dx [ln(1+x) − x²] = 0 ⇔ 1/(1+x) = 2x ⇔ x = (√3 − 1)/2.
        assert_abs_diff_eq!(x, (3f64.sqrt() - 1.0) / 2.0, epsilon = 1e-6);
    }

    #[test]
    fn nelder_mead_finds_a_quadratic_peak() {
        let f = |p: &[f64]| -(p[0] - 3.0).powi(2) - 2.0 * (p[1] + 1.0).powi(2);
        let x = maximise_nd(f, &[0.0, 0.0], &[0.5, 0.5]);
        assert_abs_diff_eq!(x[0], 3.0, epsilon = 1e-4);
        assert_abs_diff_eq!(x[1], -1.0, epsilon = 1e-4);
    }
}
