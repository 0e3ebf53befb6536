//! Calibration of the streams' ceilings to the paper's accuracy levels.
//!
//! The streams of [`crate::sim`] take their thresholds and widths from the paper's
//! Figure-1 fits, but their ceilings (accuracy with unlimited tokens) are assumptions,
//! and the paper's streams saturate far lower (near 32 % on Balanced). Uniform
//! allocation gives every query the same tokens whatever its ceiling, so its accuracy at
//! any budget is *linear* in the ceiling scales: `Σ_pool s_pool · u_pool(b)`, where
//! `u_pool(b)` is the pool's share of uniform's unscaled accuracy. Matching uniform to
//! the paper's uniform row ([`crate::paper`]) is therefore a small non-negative least
//! squares problem, solved here exactly. CLEAR's rows are not used, so comparing CLEAR
//! on the calibrated streams with the paper's CLEAR rows is an out-of-sample check.
//!
//! ```
//! use clear_alloc_eval::calibrate::{calibrate, Target, Tie};
//! use clear_alloc_eval::paper::PaperRows;
//! use clear_alloc_eval::sim::{Mix, StreamConfig};
//!
//! let target = Target {
//!     config: StreamConfig::new(Mix::Balanced).queries(100).seed(1),
//!     uniform: PaperRows::of(Mix::Balanced).uniform_points(),
//! };
//! let fit = calibrate(&[target], Tie::PerStream)?;
//! let [easy, medium, hard] = fit.configs[0].ceiling_scales();
//! assert!(easy == medium && medium == hard && easy > 0.0 && easy < 1.0);
//! # Ok::<(), clear_alloc::Error>(())
//! ```

use crate::baselines::Uniform;
use crate::sim::StreamConfig;
use clear_alloc::{AllocationPolicy, Error, Result};

/// Which ceiling scales are free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tie {
    /// One scale per stream, shared by its three pools (CLEAR's grants unchanged).
    PerStream,
    /// One scale per pool (easy, medium, hard), shared by all the streams: the same
    /// problems have the same ceilings in every mix.
    PerPool,
    /// Three scales per stream.
    PerStreamAndPool,
}

/// A stream and the uniform accuracies it should reproduce.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The stream; its own ceiling scales are ignored (calibration starts from 1).
    pub config: StreamConfig,
    /// (tokens per query, uniform's accuracy as a fraction in [0, 1]).
    pub uniform: Vec<(u64, f64)>,
}

/// The result of [`calibrate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The targets' configurations, in order, with the fitted ceiling scales set.
    pub configs: Vec<StreamConfig>,
    /// Root mean square of uniform's fitted accuracy minus the target, over all points.
    pub rms: f64,
    /// Largest absolute difference between uniform's fitted accuracy and the target.
    pub max_deviation: f64,
}

/// Finds the ceiling scales (≥ 0) that minimise the squared difference between
/// uniform's expected accuracy on the streams and the targets.
///
/// A pool with no queries in the streams it is fitted on keeps scale 1.
///
/// # Errors
/// [`Error::InvalidOption`] when there are no targets, a target has no points or a
/// target accuracy is not finite; whatever generating the streams or uniform returns.
pub fn calibrate(targets: &[Target], tie: Tie) -> Result<Calibration> {
    if targets.is_empty() {
        return Err(invalid("targets", 0.0, "must list at least one stream"));
    }
    // Per target, per point: the three pools' shares of uniform's unscaled accuracy.
    let mut designs = Vec::with_capacity(targets.len());
    for target in targets {
        designs.push(pool_shares(target)?);
    }
    let scales: Vec<[f64; 3]> = match tie {
        Tie::PerPool => {
            let rows: Vec<_> = designs.iter().flatten().copied().collect();
            vec![nnls_pools(&rows); targets.len()]
        }
        Tie::PerStreamAndPool => designs.iter().map(|rows| nnls_pools(rows)).collect(),
        Tie::PerStream => designs
            .iter()
            .map(|rows| {
                let summed: Vec<_> = rows
                    .iter()
                    .map(|(x, y)| ([x.iter().sum::<f64>(), 0.0, 0.0], *y))
                    .collect();
                [nnls_pools(&summed)[0]; 3]
            })
            .collect(),
    };
    let residuals: Vec<f64> = designs
        .iter()
        .zip(&scales)
        .flat_map(|(rows, s)| {
            rows.iter()
                .map(move |(x, y)| x.iter().zip(s).map(|(x, s)| x * s).sum::<f64>() - y)
        })
        .collect();
    let rms = (residuals.iter().map(|r| r * r).sum::<f64>() / residuals.len() as f64).sqrt();
    let max_deviation = residuals.iter().fold(0.0_f64, |m, r| m.max(r.abs()));
    let configs = targets
        .iter()
        .zip(scales)
        .map(|(t, s)| t.config.clone().pool_ceiling_scales(s))
        .collect();
    Ok(Calibration {
        configs,
        rms,
        max_deviation,
    })
}

/// One row per target point: uniform's accuracy split by pool at ceiling scale 1, and
/// the target accuracy.
fn pool_shares(target: &Target) -> Result<Vec<([f64; 3], f64)>> {
    if target.uniform.is_empty() {
        return Err(invalid("uniform", 0.0, "must list at least one point"));
    }
    let stream = target.config.clone().ceiling_scale(1.0).generate()?;
    let n = stream.len() as u64;
    let uniform = Uniform::default();
    let mut rows = Vec::with_capacity(target.uniform.len());
    for &(tokens_per_query, accuracy) in &target.uniform {
        if !accuracy.is_finite() {
            return Err(invalid("uniform", accuracy, "must be finite"));
        }
        let budget = tokens_per_query
            .checked_mul(n)
            .ok_or(Error::invalid_parameter(
                "tokens_per_query",
                tokens_per_query,
                "times the number of queries overflows u64",
            ))?;
        let allocation = uniform.allocate(stream.predicted(), budget)?;
        let mut shares = [0.0; 3];
        for ((query, tokens), difficulty) in stream
            .truth()
            .iter()
            .zip(allocation.tokens())
            .zip(stream.difficulties())
        {
            if tokens > 0 {
                shares[*difficulty as usize] += query.curve().utility(tokens as f64) / n as f64;
            }
        }
        rows.push((shares, accuracy));
    }
    Ok(rows)
}

/// Non-negative least squares in (at most) three unknowns: the best of the
/// unconstrained fits on every subset of the unknowns that comes out non-negative.
/// The problem is convex, so its minimum is the unconstrained minimum on its own
/// support, which is among the candidates. An unknown whose column is all zero (a pool
/// without queries) is not determined by the data and keeps 1.
fn nnls_pools(rows: &[([f64; 3], f64)]) -> [f64; 3] {
    let informative: Vec<usize> = (0..3)
        .filter(|&k| rows.iter().any(|(x, _)| x[k] != 0.0))
        .collect();
    let sse = |s: &[f64; 3]| -> f64 {
        rows.iter()
            .map(|(x, y)| {
                let fit: f64 = informative.iter().map(|&k| x[k] * s[k]).sum();
                (fit - y).powi(2)
            })
            .sum()
    };
    let mut best = [0.0; 3];
    let mut best_sse = sse(&best);
    for mask in 1u32..(1 << informative.len()) {
        let free: Vec<usize> = informative
            .iter()
            .enumerate()
            .filter(|(bit, _)| mask & (1 << bit) != 0)
            .map(|(_, &k)| k)
            .collect();
        let Some(solution) = normal_equations(rows, &free) else {
            continue;
        };
        if solution.iter().any(|&s| s < 0.0) {
            continue;
        }
        let mut candidate = [0.0; 3];
        for (&k, s) in free.iter().zip(solution) {
            candidate[k] = s;
        }
        let value = sse(&candidate);
        if value < best_sse {
            best = candidate;
            best_sse = value;
        }
    }
    for (k, scale) in best.iter_mut().enumerate() {
        if !informative.contains(&k) {
            *scale = 1.0;
        }
    }
    best
}

/// The least-squares solution on the columns `free`, by Gaussian elimination with
/// partial pivoting on the normal equations; `None` when they are singular.
fn normal_equations(rows: &[([f64; 3], f64)], free: &[usize]) -> Option<Vec<f64>> {
    let m = free.len();
    // Augmented matrix [XᵀX | Xᵀy].
    let mut a = vec![vec![0.0; m + 1]; m];
    for (x, y) in rows {
        for (i, &ki) in free.iter().enumerate() {
            for (j, &kj) in free.iter().enumerate() {
                a[i][j] += x[ki] * x[kj];
            }
            a[i][m] += x[ki] * y;
        }
    }
    let scale = a
        .iter()
        .map(|r| r[..m].iter().fold(0.0_f64, |s, v| s.max(v.abs())))
        .fold(0.0, f64::max);
    for col in 0..m {
        let pivot = (col..m).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))?;
        if a[pivot][col].abs() <= 1e-12 * scale {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col].clone();
        for (row, values) in a.iter_mut().enumerate() {
            if row != col {
                let factor = values[col] / pivot_row[col];
                for (v, p) in values[col..].iter_mut().zip(&pivot_row[col..]) {
                    *v -= factor * p;
                }
            }
        }
    }
    Some((0..m).map(|i| a[i][m] / a[i][i]).collect())
}

fn invalid(option: &'static str, value: f64, reason: &'static str) -> Error {
    Error::invalid_option(option, value, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn nnls_recovers_exact_scales() {
        let xs = [
            [0.1, 0.2, 0.3],
            [0.3, 0.1, 0.0],
            [0.2, 0.2, 0.1],
            [0.0, 0.1, 0.4],
        ];
        let truth = [0.5, 0.8, 0.3];
        let rows: Vec<_> = xs
            .iter()
            .map(|x| (*x, x.iter().zip(truth).map(|(x, s)| x * s).sum()))
            .collect();
        let got = nnls_pools(&rows);
        for k in 0..3 {
            assert_relative_eq!(got[k], truth[k], max_relative = 1e-9);
        }
    }

    #[test]
    fn nnls_clamps_at_zero_and_leaves_empty_pools_at_one() {
        // Targets that would need a negative medium scale: the medium scale goes to 0
        // and the easy scale is the one-variable least-squares fit.
        let rows = [([1.0, 1.0, 0.0], 0.0), ([1.0, 0.0, 0.0], 1.0)];
        let got = nnls_pools(&rows);
        assert_eq!(got[1], 0.0);
        assert_relative_eq!(got[0], 0.5, max_relative = 1e-12);
        assert_eq!(got[2], 1.0);
    }

    #[test]
    fn bad_targets_are_named() {
        use crate::sim::Mix;
        let option = |r: Result<Calibration>| match r.unwrap_err() {
            Error::InvalidOption { option, .. } => option,
            other => panic!("{other:?}"),
        };
        assert_eq!(option(calibrate(&[], Tie::PerStream)), "targets");
        let config = StreamConfig::new(Mix::Balanced).queries(5);
        let empty = Target {
            config: config.clone(),
            uniform: vec![],
        };
        assert_eq!(option(calibrate(&[empty], Tie::PerPool)), "uniform");
        let nan = Target {
            config,
            uniform: vec![(100, f64::NAN)],
        };
        assert_eq!(option(calibrate(&[nan], Tie::PerStream)), "uniform");
    }
}
