//! The noise sweep of issue 9 (SPEC §7): allocation on noisy threshold predictions,
//! taken at face value ("point"), shrunk to the posterior median, or integrated over
//! the posterior (a Gauss–Hermite mixture), against the oracle on the true curves.
//!
//! The prior of each query is its pool's log-normal spread of thresholds, exactly as
//! [`StreamConfig`] draws them (median [`Pool::threshold`],
//! σ₀ = [`Pool::threshold_spread`], 0.4 for the three pools), with the query's own
//! width and ceiling (the stream's predictor knows them; only τ is noisy), and the
//! predictor's noise σ is the stream's. Every method is scored on the true curves.

use clear_alloc::prior::{gauss_hermite, Calibration, PredictorNoise, ThresholdPrior};
use clear_alloc::{Allocator, Query, Result, ShiftedSurge};

use crate::sim::{Mix, Pool, Stream, StreamConfig};

/// Gauss–Hermite nodes of the posterior mixture.
pub const MIXTURE_NODES: usize = 9;

/// The accuracy of the four allocations of one stream at one budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseRow {
    /// The traffic mix.
    pub mix: Mix,
    /// σ of the predictor's log-scale threshold error.
    pub sigma: f64,
    /// Budget in tokens per query.
    pub tokens_per_query: u64,
    /// Expected accuracy (true curves) of CLEAR on the predictions as given.
    pub point: f64,
    /// ... on the shrunk curves (posterior median threshold).
    pub shrunk: f64,
    /// ... on the posterior mixture curves.
    pub mixture: f64,
    /// ... on a mixture around the prediction without a prior (`ln τ ~ N(ln τ̂, σ²)`),
    /// the naive alternative.
    pub naive: f64,
    /// ... on the true curves.
    pub oracle: f64,
}

impl NoiseRow {
    /// Share of the gap between point allocation and the oracle that `accuracy`
    /// closes; `None` when the gap is below `1e-4` (nothing to close).
    pub fn gap_closed(&self, accuracy: f64) -> Option<f64> {
        let gap = self.oracle - self.point;
        (gap > 1e-4).then(|| (accuracy - self.point) / gap)
    }

    /// The averages of rows of the same mix, σ and budget (e.g. over seeds).
    pub fn mean(rows: &[NoiseRow]) -> NoiseRow {
        let n = rows.len() as f64;
        let avg = |f: fn(&NoiseRow) -> f64| rows.iter().map(f).sum::<f64>() / n;
        NoiseRow {
            point: avg(|r| r.point),
            shrunk: avg(|r| r.shrunk),
            mixture: avg(|r| r.mixture),
            naive: avg(|r| r.naive),
            oracle: avg(|r| r.oracle),
            ..rows[0]
        }
    }
}

/// One stream of the sweep; build with [`NoiseSweep::new`], run with
/// [`NoiseSweep::run`].
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSweep {
    mix: Mix,
    queries: usize,
    seed: u64,
    prior_spread: Option<f64>,
}

impl NoiseSweep {
    /// The stream of `mix`: 500 queries, seed 0, the prior spread of the pools.
    pub fn new(mix: Mix) -> Self {
        NoiseSweep {
            mix,
            queries: 500,
            seed: 0,
            prior_spread: None,
        }
    }

    /// Number of queries.
    pub fn queries(mut self, n: usize) -> Self {
        self.queries = n;
        self
    }

    /// Seed of the stream.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// A prior spread σ₀ other than the pools' own (0.4): a misspecified prior, e.g.
    /// the 0.5 of the reference computation.
    pub fn prior_spread(mut self, sigma: f64) -> Self {
        self.prior_spread = Some(sigma);
        self
    }

    /// Every budget of `tokens_per_query` with threshold noise `sigma`.
    ///
    /// # Errors
    /// [`Error::InvalidOption`](clear_alloc::Error::InvalidOption) naming the option
    /// of a bad stream or prior; whatever the allocator returns.
    pub fn run(&self, sigma: f64, tokens_per_query: &[u64]) -> Result<Vec<NoiseRow>> {
        let config = StreamConfig::new(self.mix)
            .queries(self.queries)
            .threshold_noise(sigma)
            .seed(self.seed);
        let stream = config.generate()?;
        let (shrunk, mixture) = self.posterior_queries(&stream)?;
        let naive = naive_queries(&stream)?;
        let allocator = Allocator::builder().default_cap(stream.cap()).build()?;
        let mut rows = Vec::with_capacity(tokens_per_query.len());
        for &t in tokens_per_query {
            let budget = t.saturating_mul(stream.len() as u64);
            let grants = |a: clear_alloc::Allocation| score(&stream, a.tokens());
            rows.push(NoiseRow {
                mix: self.mix,
                sigma,
                tokens_per_query: t,
                point: grants(allocator.allocate(stream.predicted(), budget)?),
                shrunk: grants(allocator.allocate(&shrunk, budget)?),
                mixture: grants(allocator.allocate(&mixture, budget)?),
                naive: grants(allocator.allocate(&naive, budget)?),
                oracle: grants(allocator.allocate(stream.truth(), budget)?),
            });
        }
        Ok(rows)
    }

    /// The shrunk and mixture queries of a stream's predictions.
    fn posterior_queries(
        &self,
        stream: &Stream,
    ) -> Result<(Vec<Query>, Vec<Query<clear_alloc::Mixture>>)> {
        let pools = [Pool::EASY, Pool::MEDIUM, Pool::HARD];
        posterior_queries(stream, &pools, self.prior_spread)
    }
}

/// The shrunk and mixture queries of a stream's predictions.
fn posterior_queries(
    stream: &Stream,
    pools: &[Pool; 3],
    prior_spread: Option<f64>,
) -> Result<(Vec<Query>, Vec<Query<clear_alloc::Mixture>>)> {
    let noise = PredictorNoise::new(stream.threshold_noise())?;
    let mut shrunk = Vec::with_capacity(stream.len());
    let mut mixture = Vec::with_capacity(stream.len());
    for (i, predicted) in stream.predicted().iter().enumerate() {
        let pool = pools[stream.difficulties()[i] as usize];
        let curve: &ShiftedSurge = predicted.curve();
        let prior = ThresholdPrior::builder()
            .median_threshold(pool.threshold)
            .spread(prior_spread.unwrap_or(pool.threshold_spread))
            .width(curve.width())
            .ceiling(curve.ceiling())
            .build()?;
        let calibration = Calibration::builder().prior(prior).noise(noise).build()?;
        let posterior = calibration.posterior(curve.threshold())?;
        let cap = predicted.cap().unwrap_or(stream.cap());
        shrunk.push(Query::new(posterior.shrunk()).with_cap(cap));
        mixture.push(Query::new(posterior.mixture(MIXTURE_NODES)?).with_cap(cap));
    }
    Ok((shrunk, mixture))
}

/// Mixtures over `ln τ ~ N(ln τ̂, σ²)`: the prediction's noise without a prior.
fn naive_queries(stream: &Stream) -> Result<Vec<Query<clear_alloc::Mixture>>> {
    let (z, w) = gauss_hermite(MIXTURE_NODES)?;
    let sigma = stream.threshold_noise();
    stream
        .predicted()
        .iter()
        .map(|q| {
            let c = q.curve();
            let parts = z
                .iter()
                .zip(&w)
                .map(|(z, w)| Ok((*w, c.with_threshold(c.threshold() * (sigma * z).exp())?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(Query::new(clear_alloc::Mixture::new(parts)?)
                .with_cap(q.cap().unwrap_or(stream.cap())))
        })
        .collect()
}

/// Mean true accuracy of `tokens` grants.
fn score(stream: &Stream, tokens: impl Iterator<Item = u64>) -> f64 {
    let total: f64 = stream
        .truth()
        .iter()
        .zip(tokens)
        .map(|(q, b)| {
            if b == 0 {
                0.0
            } else {
                q.curve().utility(b as f64)
            }
        })
        .sum();
    total / stream.len() as f64
}
