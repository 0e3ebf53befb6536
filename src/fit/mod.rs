//! Curves from data (SPEC §5): maximum-likelihood fits of sampled rollouts, a shared
//! ("model-intrinsic") shape across queries, least-squares fits of budget sweeps, and
//! the empirical curve.
//!
//! The model is that of Wan et al., *The Shadow Price of Reasoning* (ICML 2026, arXiv
//! 2606.03092), Figure 2 and §5 of the crate's SPEC: the length of a correct rollout is
//! `τ + Gamma(2, β)`, and a query answers correctly with probability `p` given unlimited
//! tokens. For fixed τ the rate has the closed form `β̂ = 2k / Σ(L − τ)`, so the
//! likelihood is profiled over τ ∈ [0, min L) and maximised with Brent's method
//! (argmin). Rollouts cut off at the sampling cap `M` are censored: the correct lengths
//! then follow the law truncated at `M` (no closed form), and argmin's Nelder–Mead
//! maximises over `(τ, β)` jointly (the derivation is in the source of the private
//! `likelihood` submodule).
//!
//! ```
//! use clear_alloc::fit::{Rollout, RolloutFit};
//!
//! let rollouts: Vec<Rollout> = [212, 260, 305, 331, 390, 402, 455, 520, 640, 700]
//!     .into_iter()
//!     .map(Rollout::correct)
//!     .chain([Rollout::failed(150), Rollout::failed(900)])
//!     .collect();
//! let fitted = RolloutFit::default().fit("q1", &rollouts)?;
//! assert!(fitted.curve.threshold() < 212.0);
//! assert!((fitted.curve.ceiling() - 10.0 / 12.0).abs() < 1e-12);
//! assert!(fitted.ks_distance.unwrap() < 0.3);
//! # Ok::<(), clear_alloc::Error>(())
//! ```

mod empirical;
#[cfg(feature = "serde")]
mod io;
pub(crate) mod likelihood;
pub(crate) mod optimise;
mod shared;
mod sweep;

pub use empirical::EmpiricalCurve;
#[cfg(feature = "serde")]
pub use io::{read_rollouts_csv, read_rollouts_jsonl};
pub use shared::{SharedCeiling, SharedFit, SharedShape};
pub use sweep::{fit_sweep, SweepCeiling, SweepFit};

use crate::error::{ensure, Error, QueryRef, Result, Subject};
use crate::model::ShiftedSurge;
use crate::solver::Query;
use likelihood::Sample;

/// One sampled completion of a query: its length in tokens, whether its answer was
/// correct, and whether it was cut off at the sampling cap.
///
/// A rollout marked both correct and truncated counts as correct at its length (its
/// answer is known); a truncated incorrect one is censored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    /// Tokens generated.
    pub tokens: u64,
    /// Whether the answer was correct.
    pub correct: bool,
    /// Whether generation stopped at the sampling cap.
    pub truncated: bool,
}

impl Rollout {
    /// A rollout that finished with a correct answer after `tokens` tokens.
    pub fn correct(tokens: u64) -> Self {
        Rollout {
            tokens,
            correct: true,
            truncated: false,
        }
    }

    /// A rollout that finished with a wrong answer after `tokens` tokens.
    pub fn failed(tokens: u64) -> Self {
        Rollout {
            tokens,
            correct: false,
            truncated: false,
        }
    }

    /// A rollout cut off at the sampling cap after `tokens` tokens, without an answer.
    pub fn truncated(tokens: u64) -> Self {
        Rollout {
            tokens,
            correct: false,
            truncated: true,
        }
    }
}

/// The rollouts of one query, as read from a file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryRollouts {
    /// The query's id.
    pub id: String,
    /// Its rollouts, in input order.
    pub rollouts: Vec<Rollout>,
}

/// How many rollouts of each kind a fit saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RolloutCounts {
    /// All rollouts.
    pub rollouts: usize,
    /// Rollouts with a correct answer.
    pub correct: usize,
    /// Rollouts that finished with a wrong answer.
    pub failed: usize,
    /// Rollouts cut off at the cap without an answer.
    pub truncated: usize,
}

/// How a curve was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitMethod {
    /// Profile likelihood over τ with the closed-form rate (no censoring).
    ClosedForm,
    /// Joint Nelder–Mead over (τ, β) of the likelihood truncated at the sampling cap.
    Censored,
    /// Threshold fitted under a width shared with other queries.
    SharedWidth,
    /// No correct rollout: the ceiling is 0 and the curve is flagged insolvent.
    Insolvent,
}

/// The result of fitting one query.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedCurve {
    /// The query's id.
    pub id: String,
    /// The fitted curve.
    pub curve: ShiftedSurge,
    /// True when no rollout was correct: the curve's ceiling is 0 and its threshold
    /// and width are placeholders (the longest rollout, and the shared width or the
    /// longest rollout); an allocator abandons such a query at any positive price.
    pub insolvent: bool,
    /// The log-likelihood of the rollouts at the fitted parameters (see
    /// [`FitMethod`]); −∞ when a correct rollout has 0 tokens.
    pub log_likelihood: f64,
    /// The rollouts by kind.
    pub counts: RolloutCounts,
    /// Kolmogorov–Smirnov distance between the empirical CDF of the correct lengths
    /// and the fitted CDF of a correct length (truncated at the sampling cap when
    /// censoring was modelled); `None` without a correct rollout.
    pub ks_distance: Option<f64>,
    /// How the curve was obtained.
    pub method: FitMethod,
}

impl FittedCurve {
    /// The fitted curve as a [`Query`] carrying the id, ready for an allocator.
    pub fn to_query(&self) -> Query {
        Query::new(self.curve).with_id(self.id.clone())
    }
}

/// Options for fitting rollouts; build with [`RolloutFit::builder`].
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutFit {
    sampling_cap: Option<u64>,
    min_correct: usize,
    censoring: bool,
}

impl Default for RolloutFit {
    /// No stated sampling cap, at least 5 correct rollouts for a shape of its own,
    /// censoring modelled.
    fn default() -> Self {
        RolloutFit {
            sampling_cap: None,
            min_correct: 5,
            censoring: true,
        }
    }
}

/// Builder for [`RolloutFit`].
#[derive(Debug, Clone, Default)]
pub struct RolloutFitBuilder {
    options: RolloutFit,
}

impl RolloutFitBuilder {
    /// The sampling cap `M` the rollouts were drawn with. Rollouts longer than it are
    /// rejected. Without it, the longest rollout of a query stands in for `M`.
    pub fn sampling_cap(mut self, cap: u64) -> Self {
        self.options.sampling_cap = Some(cap);
        self
    }

    /// The fewest correct rollouts from which one query's width is fitted alone
    /// (default 5; at least 2). The Cramér–Rao bound puts the relative standard error
    /// of the width at ≥ 1/√(2k) even with τ known, 32 % at k = 5; queries with fewer
    /// correct rollouts need a shared shape.
    pub fn min_correct(mut self, count: usize) -> Self {
        self.options.min_correct = count;
        self
    }

    /// Whether truncated rollouts are treated as censored (default) or, for
    /// comparison, as plain failures — the naive estimator, biased when the cap cuts
    /// into the length distribution.
    pub fn censoring(mut self, modelled: bool) -> Self {
        self.options.censoring = modelled;
        self
    }

    /// Validates the options.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a sampling cap of 0 or `min_correct < 2`.
    pub fn build(self) -> Result<RolloutFit> {
        let o = self.options;
        if let Some(cap) = o.sampling_cap {
            ensure(
                cap >= 1,
                Subject::Option,
                "sampling_cap",
                cap,
                "must be >= 1 token",
            )?;
        }
        ensure(
            o.min_correct >= 2,
            Subject::Option,
            "min_correct",
            o.min_correct,
            "must be >= 2: one length cannot pin a width",
        )?;
        Ok(o)
    }
}

/// A single-query fit, or the reason it needs a shared shape.
enum Single {
    Fitted(FittedCurve),
    NeedsShape(String),
}

impl RolloutFit {
    /// A builder starting from the defaults.
    pub fn builder() -> RolloutFitBuilder {
        RolloutFitBuilder::default()
    }

    /// Fits one query's rollouts alone.
    ///
    /// No correct rollout gives an insolvent curve (ceiling 0, [`FitMethod::Insolvent`]),
    /// not an error.
    ///
    /// # Errors
    /// [`Error::InsufficientData`] naming the query when there are no rollouts, fewer
    /// correct rollouts than `min_correct`, all correct lengths are equal, or the
    /// censored likelihood has no interior maximum — the width cannot be pinned; fit a
    /// shared shape ([`RolloutFit::fit_shared`] or [`RolloutFit::fit_many`]).
    /// [`Error::InvalidQuery`] (field `tokens`) for a rollout beyond the sampling cap.
    pub fn fit(&self, id: &str, rollouts: &[Rollout]) -> Result<FittedCurve> {
        match self.fit_single(0, id, rollouts)? {
            Single::Fitted(curve) => Ok(curve),
            Single::NeedsShape(reason) => Err(Error::InsufficientData {
                query: Some(QueryRef::named(id)),
                reason,
            }),
        }
    }

    /// Fits every query alone where its data pins a width, and the rest (few correct
    /// rollouts, equal lengths) with a width shared across all solvent queries, fitted
    /// only when needed. Curves come back in input order.
    ///
    /// # Errors
    /// The first error of [`RolloutFit::fit`] other than a missing width, or the error
    /// of [`RolloutFit::fit_shared`] when a shared width is needed but cannot be fitted.
    pub fn fit_many(&self, queries: &[QueryRollouts]) -> Result<Vec<FittedCurve>> {
        let mut singles = Vec::with_capacity(queries.len());
        for (index, query) in queries.iter().enumerate() {
            singles.push(self.fit_single(index, &query.id, &query.rollouts)?);
        }
        let needs_shape = singles.iter().any(|s| matches!(s, Single::NeedsShape(_)));
        let shared = if needs_shape {
            Some(self.fit_shared(queries, SharedCeiling::PerQuery)?)
        } else {
            None
        };
        Ok(singles
            .into_iter()
            .enumerate()
            .map(|(i, single)| match (single, &shared) {
                (Single::Fitted(curve), _) => curve,
                (Single::NeedsShape(_), Some(shared)) => shared.curves[i].clone(),
                (Single::NeedsShape(_), None) => unreachable!("a shared fit exists when needed"),
            })
            .collect())
    }

    /// Fits one query's threshold (and ceiling) under a given shape's width: the route
    /// for a query with too few correct rollouts to fit a width of its own.
    ///
    /// # Errors
    /// As [`RolloutFit::fit`] for empty input or rollouts beyond the cap.
    pub fn fit_threshold(
        &self,
        id: &str,
        rollouts: &[Rollout],
        shape: &SharedShape,
    ) -> Result<FittedCurve> {
        let (sample, counts) = self.sample(0, id, rollouts)?;
        if sample.correct.is_empty() {
            return insolvent(id, rollouts, Some(shape.width()), counts);
        }
        let beta = 1.0 / shape.width();
        let threshold = likelihood::threshold_for_beta(&sample, beta);
        let ceiling = sample.ceiling(threshold, beta);
        finish(
            id,
            &sample,
            counts,
            threshold,
            beta,
            ceiling,
            FitMethod::SharedWidth,
        )
    }

    fn fit_single(&self, index: usize, id: &str, rollouts: &[Rollout]) -> Result<Single> {
        let (sample, counts) = self.sample(index, id, rollouts)?;
        let k = sample.correct.len();
        if k == 0 {
            return insolvent(id, rollouts, None, counts).map(Single::Fitted);
        }
        if k < self.min_correct {
            return Ok(Single::NeedsShape(format!(
                "only {k} correct rollout(s), fewer than the {} needed to fit a width alone: \
                 use a shared shape",
                self.min_correct
            )));
        }
        if sample.all_lengths_equal() {
            return Ok(Single::NeedsShape(format!(
                "all {k} correct rollouts have {} tokens: the width is not identifiable; \
                 use a shared shape",
                sample.min_length()
            )));
        }
        let (threshold, beta, method) = match fit_shape(&sample) {
            Some(shape) => shape,
            None => {
                return Ok(Single::NeedsShape(
                    "the censored likelihood grows without bound as the width grows: the \
                     correct lengths do not show where the surge ends; use a shared shape"
                        .to_owned(),
                ))
            }
        };
        let ceiling = sample.ceiling(threshold, beta);
        finish(id, &sample, counts, threshold, beta, ceiling, method).map(Single::Fitted)
    }

    /// Validates `rollouts` and reduces them to a likelihood sample.
    fn sample(
        &self,
        index: usize,
        id: &str,
        rollouts: &[Rollout],
    ) -> Result<(Sample, RolloutCounts)> {
        if rollouts.is_empty() {
            return Err(Error::InsufficientData {
                query: Some(QueryRef::named(id)),
                reason: "no rollouts".to_owned(),
            });
        }
        if let Some(cap) = self.sampling_cap {
            if let Some(long) = rollouts.iter().find(|r| r.tokens > cap) {
                return Err(Error::invalid_query(
                    QueryRef::at(index, Some(id)),
                    "tokens",
                    long.tokens,
                    "exceeds the sampling cap",
                ));
            }
        }
        let mut counts = RolloutCounts {
            rollouts: rollouts.len(),
            ..RolloutCounts::default()
        };
        let mut correct = Vec::new();
        for r in rollouts {
            if r.correct {
                counts.correct += 1;
                correct.push(r.tokens as f64);
            } else if r.truncated {
                counts.truncated += 1;
            } else {
                counts.failed += 1;
            }
        }
        correct.sort_by(f64::total_cmp);
        let censor = self.censoring && counts.truncated > 0;
        let longest = rollouts.iter().map(|r| r.tokens).max().unwrap_or(0);
        let sample = Sample {
            correct,
            rollouts: counts.rollouts,
            failed: counts.failed + if censor { 0 } else { counts.truncated },
            censored: if censor { counts.truncated } else { 0 },
            cap: censor.then(|| self.sampling_cap.unwrap_or(longest) as f64),
        };
        Ok((sample, counts))
    }
}

/// The maximum-likelihood `(τ, β)` of a sample with at least two distinct correct
/// lengths; `None` when the censored likelihood has no interior maximum.
fn fit_shape(sample: &Sample) -> Option<(f64, f64, FitMethod)> {
    // Start (and, without censoring, finish) with the closed-form profile.
    let threshold = if sample.pinned() {
        0.0
    } else {
        let profile = |t: f64| sample_profile(sample, t);
        optimise::maximise_1d(profile, 0.0, sample.min_length(), 32).0
    };
    let beta = sample.closed_form_beta(threshold);
    let Some(cap) = sample.cap else {
        return Some((threshold, beta, FitMethod::ClosedForm));
    };
    // The width may not run past this many caps: beyond it the truncated law is flat
    // on [τ, M] and the data says nothing more.
    let widest = 1e3 * cap;
    let min_ln_beta = -widest.ln();
    let (threshold, ln_beta) = if sample.pinned() {
        let f = |v: f64| sample.ln_lengths(0.0, v.exp());
        let v0 = beta.ln();
        (0.0, optimise::maximise_1d(f, min_ln_beta, v0 + 5.0, 40).0)
    } else {
        let top = sample.min_length();
        let f = |x: &[f64]| {
            if !(0.0..1.0).contains(&x[0]) || x[1] < min_ln_beta {
                f64::NEG_INFINITY
            } else {
                sample.ln_lengths(x[0] * top, x[1].exp())
            }
        };
        let start = [(threshold / top).min(0.99), beta.ln()];
        let step = if start[0] > 0.5 { -0.2 } else { 0.2 };
        let x = optimise::maximise_nd(f, &start, &[step, -0.5]);
        (x[0] * top, x[1])
    };
    // Pressed against the width limit: no interior maximum.
    if ln_beta < min_ln_beta + 1.0 {
        return None;
    }
    Some((threshold, ln_beta.exp(), FitMethod::Censored))
}

/// The likelihood of the correct lengths profiled over β at threshold τ (no cap):
/// `2k ln(2k / S) + Σ ln(L − τ) − 2k` with `S = Σ(L − τ)`.
fn sample_profile(sample: &Sample, threshold: f64) -> f64 {
    if threshold >= sample.min_length() {
        return f64::NEG_INFINITY;
    }
    sample.ln_lengths(threshold, sample.closed_form_beta(threshold))
}

/// Assembles the fitted curve and its diagnostics.
fn finish(
    id: &str,
    sample: &Sample,
    counts: RolloutCounts,
    threshold: f64,
    beta: f64,
    ceiling: f64,
    method: FitMethod,
) -> Result<FittedCurve> {
    let curve =
        ShiftedSurge::new(threshold, 1.0 / beta, ceiling).map_err(|e| Error::InsufficientData {
            query: Some(QueryRef::named(id)),
            reason: format!("the fit left the model's domain ({e})"),
        })?;
    let within_cap = sample.ln_within_cap(threshold, beta).exp();
    let unit = empirical::unit_curve(&curve)?;
    let ks_distance =
        empirical::ks_distance(&sample.correct, |x| (unit.utility(x) / within_cap).min(1.0));
    Ok(FittedCurve {
        id: id.to_owned(),
        curve,
        insolvent: false,
        log_likelihood: sample.log_likelihood(threshold, beta, ceiling),
        counts,
        ks_distance,
        method,
    })
}

/// The flagged zero-ceiling curve of a query without a correct rollout.
fn insolvent(
    id: &str,
    rollouts: &[Rollout],
    width: Option<f64>,
    counts: RolloutCounts,
) -> Result<FittedCurve> {
    let longest = rollouts.iter().map(|r| r.tokens).max().unwrap_or(0) as f64;
    let width = width.unwrap_or(longest.max(1.0));
    Ok(FittedCurve {
        id: id.to_owned(),
        curve: ShiftedSurge::new(longest, width, 0.0)?,
        insolvent: true,
        // With p = 0 every failure and censored rollout has probability 1.
        log_likelihood: 0.0,
        counts,
        ks_distance: None,
        method: FitMethod::Insolvent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn correct(lengths: &[u64]) -> Vec<Rollout> {
        lengths.iter().copied().map(Rollout::correct).collect()
    }

    #[test]
    fn closed_form_fit_is_a_stationary_point_of_the_likelihood() {
        // Independent check: at the MLE, nudging τ or β lowers the likelihood.
        let rollouts = correct(&[180, 210, 240, 260, 300, 350, 420, 510, 650, 900]);
        let fit = RolloutFit::default().fit("q", &rollouts).unwrap();
        let (t, b) = (fit.curve.threshold(), fit.curve.beta());
        let s = RolloutFit::default().sample(0, "q", &rollouts).unwrap().0;
        let at = |t: f64, b: f64| s.log_likelihood(t, b, 1.0);
        let best = at(t, b);
        assert_relative_eq!(best, fit.log_likelihood, max_relative = 1e-12);
        for (dt, db) in [(1.0, 0.0), (-1.0, 0.0), (0.0, 1e-4), (0.0, -1e-4)] {
            assert!(at(t + dt, b + db) < best, "moved by ({dt}, {db})");
        }
        // The closed-form rate: β = 2k / Σ(L − τ).
        let excess: f64 = rollouts.iter().map(|r| r.tokens as f64 - t).sum();
        assert_relative_eq!(b, 20.0 / excess, max_relative = 1e-12);
    }

    #[test]
    fn no_correct_rollout_is_insolvent_not_an_error() {
        let rollouts = [Rollout::failed(100), Rollout::truncated(4096)];
        let fit = RolloutFit::default().fit("hard", &rollouts).unwrap();
        assert!(fit.insolvent);
        assert_eq!(fit.curve.ceiling(), 0.0);
        assert_eq!(fit.method, FitMethod::Insolvent);
        assert_eq!(fit.counts.truncated, 1);
    }

    #[test]
    fn degenerate_single_query_data_names_the_problem() {
        let fit = RolloutFit::default();
        let err = fit.fit("q9", &correct(&[300, 400])).unwrap_err();
        assert!(err.to_string().contains("q9") && err.to_string().contains("shared shape"));
        let err = fit.fit("same", &correct(&[300; 8])).unwrap_err();
        assert!(err.to_string().contains("not identifiable"), "{err}");
        assert!(fit.fit("none", &[]).is_err());
    }

    #[test]
    fn zero_length_correct_rollouts_pin_the_threshold_at_zero() {
        let rollouts = correct(&[0, 10, 20, 30, 60]);
        let fit = RolloutFit::default().fit("z", &rollouts).unwrap();
        assert_eq!(fit.curve.threshold(), 0.0);
        // τ = 0: β = 2k/ΣL = 10/120.
        assert_relative_eq!(fit.curve.beta(), 10.0 / 120.0, max_relative = 1e-12);
        assert_eq!(fit.log_likelihood, f64::NEG_INFINITY);
        let err = RolloutFit::default()
            .fit("zeros", &correct(&[0; 6]))
            .unwrap_err();
        assert!(matches!(err, Error::InsufficientData { .. }));
    }

    #[test]
    fn lengths_beyond_the_stated_cap_are_rejected_by_field() {
        let fit = RolloutFit::builder().sampling_cap(500).build().unwrap();
        let err = fit
            .fit("q", &correct(&[100, 200, 300, 400, 600]))
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidQuery {
                field: "tokens",
                value: crate::Value::Integer(600),
                ..
            }
        ));
        assert!(RolloutFit::builder().min_correct(1).build().is_err());
        assert!(RolloutFit::builder().sampling_cap(0).build().is_err());
    }

    #[test]
    fn fit_many_falls_back_to_the_shared_width_only_where_needed() {
        let queries = vec![
            QueryRollouts {
                id: "rich".into(),
                rollouts: correct(&[220, 260, 300, 330, 380, 420, 500, 610]),
            },
            QueryRollouts {
                id: "poor".into(),
                rollouts: correct(&[700]),
            },
        ];
        let fits = RolloutFit::default().fit_many(&queries).unwrap();
        assert_eq!(fits[0].method, FitMethod::ClosedForm);
        assert_eq!(fits[1].method, FitMethod::SharedWidth);
        // One length under width w: the mode, τ = L − w.
        assert_relative_eq!(
            fits[1].curve.threshold(),
            700.0 - fits[1].curve.width(),
            max_relative = 1e-9
        );
    }
}
