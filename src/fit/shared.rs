//! One width (and optionally one ceiling) shared by many queries, each with its own
//! threshold: the paper's "model-intrinsic" α and β (SPEC §5).
//!
//! For a fixed rate β every query's threshold maximises its own likelihood
//! independently ([`threshold_for_beta`]), so the joint likelihood profiles down to a
//! function of β alone, which Brent's method (argmin) maximises over `ln w`.

use super::likelihood::{threshold_for_beta, Sample};
use super::{finish, insolvent, optimise, FitMethod, FittedCurve, QueryRollouts, RolloutFit};
use crate::error::{Error, Result};
use crate::model::ShiftedSurge;

/// Whether the ceiling is fitted per query or shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedCeiling {
    /// Every query keeps the ceiling its own counts give.
    PerQuery,
    /// One ceiling for all solvent queries (queries without a correct rollout stay
    /// insolvent with ceiling 0).
    Shared,
}

/// A width and ceiling shared across queries: with a predicted threshold it makes a
/// curve, the paper's serving-time path.
///
/// ```
/// use clear_alloc::fit::SharedShape;
///
/// let shape = SharedShape::new(120.0, 0.8)?;
/// let curve = shape.curve(250.0)?; // a threshold from any predictor
/// assert_eq!((curve.threshold(), curve.width(), curve.ceiling()), (250.0, 120.0, 0.8));
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SharedShape {
    width: f64,
    ceiling: f64,
}

impl SharedShape {
    /// A shape of width `w > 0` tokens and ceiling `p ≥ 0`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the field, as [`ShiftedSurge::new`].
    pub fn new(width: f64, ceiling: f64) -> Result<Self> {
        ShiftedSurge::new(0.0, width, ceiling)?;
        Ok(SharedShape { width, ceiling })
    }

    /// The surge width `w` in tokens.
    pub fn width(&self) -> f64 {
        self.width
    }

    /// The ceiling: shared, or with per-query ceilings the pooled share of rollouts
    /// that would be correct with unlimited tokens (a default for new queries).
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// The curve of a query whose threshold is `threshold`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when the threshold is NaN, infinite or negative.
    pub fn curve(&self, threshold: f64) -> Result<ShiftedSurge> {
        ShiftedSurge::new(threshold, self.width, self.ceiling)
    }
}

/// The result of a shared-shape fit.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedFit {
    /// The shared width and the shared (or pooled) ceiling.
    pub shape: SharedShape,
    /// One curve per query, in input order.
    pub curves: Vec<FittedCurve>,
    /// The joint log-likelihood (sum over queries).
    pub log_likelihood: f64,
}

impl RolloutFit {
    /// Fits one width across all `queries` (and one ceiling with
    /// [`SharedCeiling::Shared`]), with a threshold per query. Queries without a
    /// correct rollout get insolvent curves and do not inform the shape.
    ///
    /// ```
    /// use clear_alloc::fit::{QueryRollouts, Rollout, RolloutFit, SharedCeiling};
    ///
    /// let query = |id: &str, lengths: &[u64]| QueryRollouts {
    ///     id: id.into(),
    ///     rollouts: lengths.iter().copied().map(Rollout::correct).collect(),
    /// };
    /// let queries = [query("a", &[160, 250, 340]), query("b", &[510, 600, 700])];
    /// let fit = RolloutFit::default().fit_shared(&queries, SharedCeiling::Shared)?;
    /// assert_eq!(fit.curves.len(), 2);
    /// assert!((fit.curves[0].curve.width() / fit.shape.width() - 1.0).abs() < 1e-12);
    /// assert!(fit.curves[1].curve.threshold() > fit.curves[0].curve.threshold());
    /// # Ok::<(), clear_alloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InsufficientData`] (query `"(shared shape)"`) when no query has two
    /// distinct correct lengths or the width runs to the edge of its search range
    /// (0.01 tokens to 100 × the longest rollout); the errors of [`RolloutFit::fit`]
    /// for empty queries and rollouts beyond the cap.
    pub fn fit_shared(
        &self,
        queries: &[QueryRollouts],
        ceiling: SharedCeiling,
    ) -> Result<SharedFit> {
        let mut samples = Vec::with_capacity(queries.len());
        for (index, query) in queries.iter().enumerate() {
            samples.push(self.sample(index, &query.id, &query.rollouts)?);
        }
        let shared_error = |reason: &str| Error::InsufficientData {
            query: None,
            reason: format!("shared shape: {reason}"),
        };
        if !samples
            .iter()
            .any(|(s, _)| s.correct.len() >= 2 && !s.all_lengths_equal())
        {
            return Err(shared_error(
                "no query has two distinct correct lengths: the width is not identifiable",
            ));
        }
        let longest = samples
            .iter()
            .flat_map(|(s, _)| s.correct.last().copied().into_iter().chain(s.cap))
            .fold(1.0_f64, f64::max);
        let solvent: Vec<&Sample> = samples
            .iter()
            .map(|(s, _)| s)
            .filter(|s| !s.correct.is_empty())
            .collect();
        let profile = |ln_width: f64| {
            let beta = (-ln_width).exp();
            solvent
                .iter()
                .map(|s| s.ln_lengths(threshold_for_beta(s, beta), beta))
                .sum::<f64>()
        };
        let (lo, hi) = (0.01_f64.ln(), (100.0 * longest).ln());
        let grid = 48;
        let (ln_width, _) = optimise::maximise_1d(profile, lo, hi, grid);
        let cell = (hi - lo) / grid as f64;
        if ln_width < lo + cell || ln_width > hi - cell {
            return Err(shared_error(&format!(
                "the shared width runs to the edge of its range ({:.3} tokens): the \
                 correct lengths do not pin it",
                ln_width.exp()
            )));
        }
        let width = ln_width.exp();
        let beta = 1.0 / width;
        let thresholds: Vec<f64> = samples
            .iter()
            .map(|(s, _)| threshold_for_beta(s, beta))
            .collect();
        let pooled = pooled_ceiling(&samples, &thresholds, beta);
        let shape = SharedShape::new(width, pooled)?;
        let mut curves = Vec::with_capacity(queries.len());
        for ((query, (sample, counts)), &threshold) in queries.iter().zip(&samples).zip(&thresholds)
        {
            let curve = if sample.correct.is_empty() {
                insolvent(&query.id, &query.rollouts, Some(width), *counts)?
            } else {
                let p = match ceiling {
                    SharedCeiling::PerQuery => sample.ceiling(threshold, beta),
                    SharedCeiling::Shared => pooled,
                };
                finish(
                    &query.id,
                    sample,
                    *counts,
                    threshold,
                    beta,
                    p,
                    FitMethod::SharedWidth,
                )?
            };
            curves.push(curve);
        }
        let log_likelihood = curves.iter().map(|c| c.log_likelihood).sum();
        Ok(SharedFit {
            shape,
            curves,
            log_likelihood,
        })
    }
}

/// The pooled ceiling of the solvent queries: correct rollouts over the rollouts that
/// could have shown a correct answer within their cap, `Σk / Σ n F(M − τ)`, clamped to
/// `[0, 1]`. Without caps this is `Σk / Σn`, the shared-ceiling maximum-likelihood
/// estimate.
fn pooled_ceiling(
    samples: &[(Sample, super::RolloutCounts)],
    thresholds: &[f64],
    beta: f64,
) -> f64 {
    let (mut correct, mut reachable) = (0.0, 0.0);
    for ((sample, _), &threshold) in samples.iter().zip(thresholds) {
        if sample.correct.is_empty() {
            continue;
        }
        correct += sample.k();
        reachable += sample.rollouts as f64 * sample.ln_within_cap(threshold, beta).exp();
    }
    (correct / reachable).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::Rollout;
    use approx::assert_relative_eq;

    #[test]
    fn shared_shape_rejects_bad_parameters() {
        assert!(SharedShape::new(0.0, 0.5).is_err());
        assert!(SharedShape::new(10.0, f64::NAN).is_err());
        assert!(SharedShape::new(10.0, 0.5).unwrap().curve(-1.0).is_err());
    }

    #[test]
    fn one_query_shared_fit_agrees_with_the_single_fit() {
        // With one query, profiling τ inside β (shared) and β inside τ (single) are
        // two routes to the same maximum.
        let rollouts: Vec<Rollout> = [205, 230, 260, 300, 320, 390, 450, 560, 700]
            .into_iter()
            .map(Rollout::correct)
            .chain([Rollout::failed(90)])
            .collect();
        let options = RolloutFit::default();
        let single = options.fit("q", &rollouts).unwrap();
        let queries = [QueryRollouts {
            id: "q".into(),
            rollouts,
        }];
        let shared = options.fit_shared(&queries, SharedCeiling::Shared).unwrap();
        let curve = &shared.curves[0].curve;
        assert_relative_eq!(curve.width(), single.curve.width(), max_relative = 1e-4);
        assert_relative_eq!(
            curve.threshold(),
            single.curve.threshold(),
            max_relative = 1e-4
        );
        assert_relative_eq!(curve.ceiling(), 0.9, max_relative = 1e-12);
    }

    #[test]
    fn single_lengths_everywhere_cannot_pin_a_width() {
        let queries: Vec<QueryRollouts> = (0..5)
            .map(|i| QueryRollouts {
                id: format!("q{i}"),
                rollouts: vec![Rollout::correct(100 + 50 * i)],
            })
            .collect();
        let err = RolloutFit::default()
            .fit_shared(&queries, SharedCeiling::PerQuery)
            .unwrap_err();
        assert!(err.to_string().starts_with("shared shape: "), "{err}");
    }
}
