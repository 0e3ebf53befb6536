//! Calibrated thresholds (SPEC §7): a log-normal prior over a class's thresholds, the
//! noise of a threshold predictor, and the posterior curve of one request.
//!
//! The paper predicts only τ per request and shares the shape; a predictor's error
//! then costs accuracy, because a noisy τ̂ far from the class's typical threshold is
//! believed as much as one near it. With a prior `ln τ ~ N(μ, σ₀²)` per class (from
//! the fitted thresholds of that class) and a predictor whose error is
//! `ln τ̂ = ln τ + bias + σε`, the posterior is normal in `ln τ`:
//!
//! ```text
//! s² = 1 / (1/σ₀² + 1/σ²)        m = s² · (μ/σ₀² + (ln τ̂ − bias)/σ²)
//! ```
//!
//! Two curves follow: the *shrunk* curve `U(b; τ = e^m)` (the posterior median of τ,
//! a [`ShiftedSurge`] the allocator prices in closed form), and the posterior
//! *mixture* `E[U(b; τ) | τ̂] ≈ Σ_k w_k U(b; e^(m + s z_k))` over Gauss–Hermite nodes
//! `z_k` ([`ThresholdPosterior::components`]).
//!
//! The predictor stays the caller's: anything implementing [`ThresholdPredictor`],
//! including a closure `Fn(&Request) -> f64`.
//!
//! ```
//! use clear_alloc::prior::{Calibration, PredictorNoise, ThresholdPrior};
//!
//! // A class whose thresholds spread log-normally (σ₀ = 0.5) around 150 tokens.
//! let prior = ThresholdPrior::builder()
//!     .median_threshold(150.0)
//!     .spread(0.5)
//!     .width(100.0)
//!     .ceiling(0.9)
//!     .build()?;
//! // A predictor as noisy as the prior is wide: the posterior splits the difference.
//! let noise = PredictorNoise::new(0.5)?;
//! let calibration = Calibration::builder().prior(prior).noise(noise).build()?;
//! let posterior = calibration.posterior(600.0)?;
//! assert!((posterior.shrunk().threshold() - 300.0).abs() < 1e-9); // √(150 · 600)
//! assert_eq!(posterior.components(9)?.len(), 9);
//! // Either curve goes to the allocator.
//! use clear_alloc::{Allocator, Query};
//! let mixture = vec![Query::new(posterior.mixture(9)?).with_cap(4096); 10];
//! assert!(Allocator::default().allocate(&mixture, 3_000)?.total_tokens() <= 3_000);
//! # Ok::<(), clear_alloc::Error>(())
//! ```

mod quadrature;

pub use quadrature::{gauss_hermite, MAX_NODES};

use crate::error::{non_negative, positive, Error, Result, Subject};
use crate::model::{Mixture, ShiftedSurge};

/// The smallest threshold, in tokens, taken into `ln τ`: a fitted or predicted τ of 0
/// (a query that answers at once) would otherwise put the log-normal at −∞.
pub const MIN_THRESHOLD: f64 = 1.0;

fn ln_threshold(tau: f64) -> f64 {
    tau.max(MIN_THRESHOLD).ln()
}

/// A class's prior over thresholds: `ln τ ~ N(μ, σ₀²)`, with the class's shared width
/// and ceiling. Build it with [`ThresholdPrior::builder`] or fit it with
/// [`ThresholdPrior::from_fits`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdPrior {
    ln_median: f64,
    spread: f64,
    shape: ShiftedSurge,
}

/// Builder for [`ThresholdPrior`]; every field is required.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThresholdPriorBuilder {
    median_threshold: Option<f64>,
    spread: Option<f64>,
    width: Option<f64>,
    ceiling: Option<f64>,
}

impl ThresholdPriorBuilder {
    /// The median threshold `e^μ` in tokens (finite, ≥ 0; below
    /// [`MIN_THRESHOLD`] it counts as that).
    pub fn median_threshold(mut self, tokens: f64) -> Self {
        self.median_threshold = Some(tokens);
        self
    }

    /// The spread σ₀ of `ln τ` (finite, ≥ 0; 0 means every threshold is the median).
    pub fn spread(mut self, sigma: f64) -> Self {
        self.spread = Some(sigma);
        self
    }

    /// The class's shared surge width in tokens (finite, > 0).
    pub fn width(mut self, tokens: f64) -> Self {
        self.width = Some(tokens);
        self
    }

    /// The class's shared ceiling (finite, ≥ 0).
    pub fn ceiling(mut self, ceiling: f64) -> Self {
        self.ceiling = Some(ceiling);
        self
    }

    /// Validates the prior.
    ///
    /// # Errors
    /// [`Error::MissingField`] naming an unset field; [`Error::InvalidOption`] naming a
    /// field that is NaN, infinite or out of range.
    pub fn build(self) -> Result<ThresholdPrior> {
        let require = |value: Option<f64>, field: &'static str| {
            value.ok_or_else(|| Error::missing_field(None, field, "is required for a prior"))
        };
        let median = require(self.median_threshold, "median_threshold")?;
        let spread = require(self.spread, "spread")?;
        let width = require(self.width, "width")?;
        let ceiling = require(self.ceiling, "ceiling")?;
        non_negative(Subject::Option, "median_threshold", median)?;
        non_negative(Subject::Option, "spread", spread)?;
        positive(Subject::Option, "width", width)?;
        non_negative(Subject::Option, "ceiling", ceiling)?;
        let shape = ShiftedSurge::new(0.0, width, ceiling).map_err(|e| match e {
            Error::InvalidParameter {
                field,
                value,
                reason,
            } => Error::InvalidOption {
                option: field,
                value,
                reason,
            },
            other => other,
        })?;
        Ok(ThresholdPrior {
            ln_median: ln_threshold(median),
            spread,
            shape,
        })
    }
}

impl ThresholdPrior {
    /// A builder with every field unset.
    pub fn builder() -> ThresholdPriorBuilder {
        ThresholdPriorBuilder::default()
    }

    /// The prior of a class from the `fit` results of its queries: μ and σ₀ are the
    /// mean and standard deviation (divisor `n − 1`) of `ln τ` over the solvent fits,
    /// the width is the geometric mean of their widths (the shared width when they
    /// were fitted with one), and the ceiling is the mean ceiling over *all* fits,
    /// insolvent ones (ceiling 0) included, since they are part of the class's
    /// accuracy.
    ///
    /// # Errors
    /// [`Error::InsufficientData`] with fewer than two solvent fits.
    #[cfg(feature = "fit")]
    pub fn from_fits(fits: &[crate::fit::FittedCurve]) -> Result<Self> {
        let solvent: Vec<&ShiftedSurge> = fits
            .iter()
            .filter(|f| !f.insolvent)
            .map(|f| &f.curve)
            .collect();
        if solvent.len() < 2 {
            return Err(Error::InsufficientData {
                query: None,
                reason: format!(
                    "threshold prior: {} solvent fit(s); at least 2 are needed for a spread",
                    solvent.len()
                ),
            });
        }
        let (ln_median, spread) = mean_and_sd(solvent.iter().map(|c| ln_threshold(c.threshold())));
        let (ln_width, _) = mean_and_sd(solvent.iter().map(|c| c.width().ln()));
        let ceiling = fits.iter().map(|f| f.curve.ceiling()).sum::<f64>() / fits.len() as f64;
        Ok(ThresholdPrior {
            ln_median,
            spread,
            shape: ShiftedSurge::new(0.0, ln_width.exp(), ceiling)?,
        })
    }

    /// The prior median threshold `e^μ` in tokens.
    pub fn median_threshold(&self) -> f64 {
        self.ln_median.exp()
    }

    /// μ, the prior mean of `ln τ`.
    pub fn ln_mean(&self) -> f64 {
        self.ln_median
    }

    /// σ₀, the prior spread of `ln τ`.
    pub fn spread(&self) -> f64 {
        self.spread
    }

    /// The class's shared width in tokens.
    pub fn width(&self) -> f64 {
        self.shape.width()
    }

    /// The class's shared ceiling.
    pub fn ceiling(&self) -> f64 {
        self.shape.ceiling()
    }

    /// The class's curve at its median threshold: what a request of this class is
    /// worth before anything is known about it.
    pub fn median_curve(&self) -> ShiftedSurge {
        self.curve_at(self.ln_median)
    }

    /// The class's shape at threshold `e^ln_tau`.
    fn curve_at(&self, ln_tau: f64) -> ShiftedSurge {
        // A finite ln τ gives a finite, positive threshold, which the shape accepts.
        self.shape
            .with_threshold(ln_tau.exp().min(f64::MAX))
            .unwrap_or(self.shape)
    }
}

/// `(mean, standard deviation with divisor n − 1)`; the deviation is 0 for one value.
fn mean_and_sd(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = values.clone().count() as f64;
    let mean = values.clone().sum::<f64>() / n;
    if n < 2.0 {
        return (mean, 0.0);
    }
    let ss: f64 = values.map(|v| (v - mean) * (v - mean)).sum();
    (mean, (ss / (n - 1.0)).sqrt())
}

/// The error of a threshold predictor on the log scale: `ln τ̂ = ln τ + bias + σε`,
/// `ε ~ N(0, 1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictorNoise {
    sigma: f64,
    bias: f64,
}

impl PredictorNoise {
    /// An unbiased predictor with log-scale error σ (finite, ≥ 0; 0 means exact).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] (field `sigma`) when σ is NaN, infinite or negative.
    pub fn new(sigma: f64) -> Result<Self> {
        non_negative(Subject::Parameter, "sigma", sigma)?;
        Ok(PredictorNoise { sigma, bias: 0.0 })
    }

    /// The noise estimated from held-out pairs `(predicted τ̂, fitted τ)`: the bias is
    /// the mean of `ln τ̂ − ln τ` and σ its standard deviation (divisor `n − 1`).
    ///
    /// # Errors
    /// [`Error::InsufficientData`] with fewer than two pairs;
    /// [`Error::InvalidQuery`] naming the pair's index and field (`predicted` or
    /// `fitted`) for a value that is NaN, infinite or negative.
    pub fn estimate(pairs: &[(f64, f64)]) -> Result<Self> {
        if pairs.len() < 2 {
            return Err(Error::InsufficientData {
                query: None,
                reason: format!(
                    "predictor noise: {} pair(s) of predicted and fitted thresholds; at least 2 are needed",
                    pairs.len()
                ),
            });
        }
        for (index, &(predicted, fitted)) in pairs.iter().enumerate() {
            let at = crate::QueryRef::at(index, None);
            non_negative(Subject::Parameter, "predicted", predicted)
                .and_then(|()| non_negative(Subject::Parameter, "fitted", fitted))
                .map_err(|e| e.for_query(at))?;
        }
        let (bias, sigma) = mean_and_sd(
            pairs
                .iter()
                .map(|&(predicted, fitted)| ln_threshold(predicted) - ln_threshold(fitted)),
        );
        Ok(PredictorNoise { sigma, bias })
    }

    /// σ, the spread of the log-scale error.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// The mean log-scale error (0 for [`PredictorNoise::new`]); a posterior removes it
    /// from `ln τ̂` first.
    pub fn bias(&self) -> f64 {
        self.bias
    }
}

/// A class's prior and its predictor's noise: turns a predicted threshold into a
/// posterior. Build it with [`Calibration::builder`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    prior: ThresholdPrior,
    noise: PredictorNoise,
}

/// Builder for [`Calibration`]; both fields are required.
#[derive(Debug, Clone, Copy, Default)]
pub struct CalibrationBuilder {
    prior: Option<ThresholdPrior>,
    noise: Option<PredictorNoise>,
}

impl CalibrationBuilder {
    /// The class's prior.
    pub fn prior(mut self, prior: ThresholdPrior) -> Self {
        self.prior = Some(prior);
        self
    }

    /// The predictor's noise.
    pub fn noise(mut self, noise: PredictorNoise) -> Self {
        self.noise = Some(noise);
        self
    }

    /// Validates the calibration.
    ///
    /// # Errors
    /// [`Error::MissingField`] naming `prior` or `noise` when unset.
    pub fn build(self) -> Result<Calibration> {
        Ok(Calibration {
            prior: self
                .prior
                .ok_or_else(|| Error::missing_field(None, "prior", "is required"))?,
            noise: self
                .noise
                .ok_or_else(|| Error::missing_field(None, "noise", "is required"))?,
        })
    }
}

/// Maps a request to its predicted threshold τ̂ in tokens: the caller's model (the
/// paper uses a DeBERTa regressor on the prompt). Closures `Fn(&R) -> f64` implement
/// it.
pub trait ThresholdPredictor<R: ?Sized> {
    /// The predicted threshold of `request`, in tokens.
    fn predict(&self, request: &R) -> f64;
}

impl<R: ?Sized, F: Fn(&R) -> f64> ThresholdPredictor<R> for F {
    fn predict(&self, request: &R) -> f64 {
        self(request)
    }
}

impl Calibration {
    /// A builder with both fields unset.
    pub fn builder() -> CalibrationBuilder {
        CalibrationBuilder::default()
    }

    /// The class's prior.
    pub fn prior(&self) -> &ThresholdPrior {
        &self.prior
    }

    /// The predictor's noise.
    pub fn noise(&self) -> &PredictorNoise {
        &self.noise
    }

    /// The weight of the (de-biased) prediction in the posterior mean of `ln τ`,
    /// `σ₀² / (σ₀² + σ²)`; the prior mean gets the rest. An exact predictor (σ = 0)
    /// gets weight 1, a point prior (σ₀ = 0 < σ) weight 0.
    pub fn shrinkage_weight(&self) -> f64 {
        let (v0, v) = (self.prior.spread.powi(2), self.noise.sigma.powi(2));
        if v == 0.0 {
            1.0
        } else {
            v0 / (v0 + v)
        }
    }

    /// The posterior of τ given the prediction τ̂ (tokens; below [`MIN_THRESHOLD`] it
    /// counts as that).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] (field `predicted_threshold`) when τ̂ is NaN,
    /// infinite or negative.
    pub fn posterior(&self, predicted_threshold: f64) -> Result<ThresholdPosterior> {
        non_negative(
            Subject::Parameter,
            "predicted_threshold",
            predicted_threshold,
        )?;
        let k = self.shrinkage_weight();
        let observed = ln_threshold(predicted_threshold) - self.noise.bias;
        let (v0, v) = (self.prior.spread.powi(2), self.noise.sigma.powi(2));
        let variance = if v == 0.0 || v0 == 0.0 {
            0.0
        } else {
            1.0 / (1.0 / v0 + 1.0 / v)
        };
        Ok(ThresholdPosterior {
            ln_mean: k * observed + (1.0 - k) * self.prior.ln_median,
            ln_sd: variance.sqrt(),
            prior: self.prior,
        })
    }

    /// The posterior of the threshold `predictor` predicts for `request`.
    ///
    /// # Errors
    /// As [`Calibration::posterior`].
    pub fn posterior_for<R: ?Sized>(
        &self,
        predictor: &impl ThresholdPredictor<R>,
        request: &R,
    ) -> Result<ThresholdPosterior> {
        self.posterior(predictor.predict(request))
    }
}

/// The posterior of one request's threshold: `ln τ | τ̂ ~ N(m, s²)`, with the class's
/// shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdPosterior {
    ln_mean: f64,
    ln_sd: f64,
    prior: ThresholdPrior,
}

impl ThresholdPosterior {
    /// m, the posterior mean of `ln τ`.
    pub fn ln_mean(&self) -> f64 {
        self.ln_mean
    }

    /// s, the posterior standard deviation of `ln τ`.
    pub fn ln_sd(&self) -> f64 {
        self.ln_sd
    }

    /// The shrunk curve: the class's shape at the posterior median threshold `e^m`.
    pub fn shrunk(&self) -> ShiftedSurge {
        self.prior.curve_at(self.ln_mean)
    }

    /// The posterior mixture as `nodes` weighted shifted surges at the Gauss–Hermite
    /// thresholds `e^(m + s z_k)` (weights sum to 1). Its utility
    /// `Σ w_k U(b; τ_k)` integrates `E[U(b; τ) | τ̂]` exactly for integrands that are
    /// polynomials of degree < 2·nodes in `ln τ`; 9 nodes are plenty for allocation.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] (field `nodes`) unless 1 ≤ nodes ≤
    /// [`MAX_NODES`].
    pub fn components(&self, nodes: usize) -> Result<Vec<(f64, ShiftedSurge)>> {
        let (z, w) = gauss_hermite(nodes)?;
        Ok(z.iter()
            .zip(&w)
            .map(|(z, w)| (*w, self.prior.curve_at(self.ln_mean + self.ln_sd * z)))
            .collect())
    }

    /// The posterior mixture curve `E[U(b; τ) | τ̂]` over `nodes` Gauss–Hermite
    /// components ([`ThresholdPosterior::components`]), ready for the allocator.
    ///
    /// # Errors
    /// As [`ThresholdPosterior::components`].
    pub fn mixture(&self, nodes: usize) -> Result<Mixture> {
        Mixture::new(self.components(nodes)?)
    }
}

#[cfg(test)]
mod tests;
