//! Seeded traffic streams and the evaluation of allocation methods on them: the
//! experiment of Wan et al., *The Shadow Price of Reasoning* (ICML 2026, §7; SPEC §6),
//! rebuilt from the curve fits of SPEC §2.
//!
//! A [`Stream`] mixes easy, medium and hard queries ([`Pool`]s fitted to the paper's
//! Figure 1: GSM8K, MATH500 and AIME/AMC on Qwen2.5-Math-7B) in one of the paper's four
//! proportions ([`Mix`]). Every query has a *true* curve, and a *predicted* one whose
//! threshold carries multiplicative log-normal noise `τ̂ = τ·e^(σZ)`, `Z ~ N(0, 1)`
//! (the paper's §7.3 robustness study). Methods allocate on the predicted curves and
//! are scored on the true ones ([`evaluate`]); a [`Sweep`] runs a line-up of
//! [`Method`]s over a range of budgets.
//!
//! **\[ours\]** The paper does not publish its per-query curves. Here each pool's
//! thresholds and widths spread log-normally around the Figure-1 fit (median = fit),
//! and ceilings (the accuracy with unlimited tokens) are Beta-distributed with means
//! 0.9, 0.7 and 0.35: hard problems are often unsolvable whatever the budget. By
//! default the predictor knows each query's width and ceiling and only the threshold
//! is noisy, so with σ = 0 CLEAR *is* the oracle; [`StreamConfig::pooled_shape`] makes
//! it know only the pool's. The paper's streams saturate far lower than these
//! ceilings; [`StreamConfig::ceiling_scale`] scales them, and [`crate::calibrate`]
//! finds the scale at which uniform matches the paper's levels.
//!
//! ```
//! use clear_alloc_eval::sim::{evaluate, Mix, StreamConfig};
//! use clear_alloc_eval::baselines::Uniform;
//! use clear_alloc::Allocator;
//!
//! let stream = StreamConfig::new(Mix::Balanced).queries(200).seed(7).generate()?;
//! let clear = evaluate(&Allocator::default(), &stream, 200)?;
//! let uniform = evaluate(&Uniform::default(), &stream, 200)?;
//! assert!(clear.expected_accuracy > uniform.expected_accuracy);
//! # Ok::<(), clear_alloc::Error>(())
//! ```

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, StandardNormal};

use clear_alloc::Query;
use clear_alloc::ShiftedSurge;
use clear_alloc::{Error, QueryRef, Result};

mod evaluate;

pub use evaluate::{evaluate, Evaluation, Method, Sweep};

/// The difficulty class of a query: which pool it was drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Difficulty {
    /// Grade-school arithmetic (GSM8K-like).
    Easy,
    /// Competition-style problems (MATH500-like).
    Medium,
    /// Olympiad-style problems (AIME/AMC-like).
    Hard,
}

impl Difficulty {
    /// The three classes, easy to hard.
    pub const ALL: [Difficulty; 3] = [Difficulty::Easy, Difficulty::Medium, Difficulty::Hard];
}

/// The distribution of the curves in one pool of problems.
///
/// Threshold and width are log-normal around their medians (`median · e^(spread·Z)`);
/// the ceiling is Beta with the given mean and concentration `κ` (`Beta(mκ, (1−m)κ)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pool {
    /// Median threshold τ in tokens.
    pub threshold: f64,
    /// Log-normal spread (σ of `ln τ`) of the thresholds around the median.
    pub threshold_spread: f64,
    /// Median surge width `w = 1/β` in tokens.
    pub width: f64,
    /// Log-normal spread of the widths.
    pub width_spread: f64,
    /// Mean ceiling (accuracy with unlimited tokens), in (0, 1).
    pub ceiling_mean: f64,
    /// Beta concentration of the ceilings: larger means less spread.
    pub ceiling_concentration: f64,
}

impl Pool {
    /// GSM8K fit of SPEC §2, (τ, w) ≈ (151, 101); ceilings around 0.9.
    pub const EASY: Pool = Pool {
        threshold: 151.0,
        threshold_spread: 0.4,
        width: 101.0,
        width_spread: 0.25,
        ceiling_mean: 0.9,
        ceiling_concentration: 10.0,
    };
    /// MATH500 fit of SPEC §2, (τ, w) ≈ (142, 218); ceilings around 0.7.
    pub const MEDIUM: Pool = Pool {
        threshold: 142.0,
        threshold_spread: 0.4,
        width: 218.0,
        width_spread: 0.25,
        ceiling_mean: 0.7,
        ceiling_concentration: 4.0,
    };
    /// AIME/AMC fit of SPEC §2, (τ, w) ≈ (304, 280); ceilings around 0.35, many near 0.
    pub const HARD: Pool = Pool {
        threshold: 304.0,
        threshold_spread: 0.4,
        width: 280.0,
        width_spread: 0.25,
        ceiling_mean: 0.35,
        ceiling_concentration: 2.0,
    };

    fn validate(&self) -> Result<()> {
        let checks: [(&'static str, f64, bool, &'static str); 6] = [
            (
                "pool.threshold",
                self.threshold,
                self.threshold.is_finite() && self.threshold >= 0.0,
                "must be finite and >= 0",
            ),
            (
                "pool.threshold_spread",
                self.threshold_spread,
                self.threshold_spread.is_finite() && self.threshold_spread >= 0.0,
                "must be finite and >= 0",
            ),
            (
                "pool.width",
                self.width,
                self.width.is_finite() && self.width > 0.0,
                "must be finite and > 0",
            ),
            (
                "pool.width_spread",
                self.width_spread,
                self.width_spread.is_finite() && self.width_spread >= 0.0,
                "must be finite and >= 0",
            ),
            (
                "pool.ceiling_mean",
                self.ceiling_mean,
                self.ceiling_mean > 0.0 && self.ceiling_mean < 1.0,
                "must be in (0, 1)",
            ),
            (
                "pool.ceiling_concentration",
                self.ceiling_concentration,
                self.ceiling_concentration.is_finite() && self.ceiling_concentration > 0.0,
                "must be finite and > 0",
            ),
        ];
        for (option, value, ok, reason) in checks {
            if !ok {
                return Err(Error::invalid_option(option, value, reason));
            }
        }
        Ok(())
    }

    /// One query's true curve, its ceiling multiplied by `ceiling_scale` after the draw
    /// (so the scale changes no random draw).
    fn sample(&self, rng: &mut StdRng, ceiling_scale: f64) -> Result<ShiftedSurge> {
        let z_tau: f64 = rng.sample(StandardNormal);
        let z_width: f64 = rng.sample(StandardNormal);
        let m = self.ceiling_mean;
        let k = self.ceiling_concentration;
        let ceilings = Beta::new(m * k, (1.0 - m) * k).map_err(|_| {
            Error::invalid_option(
                "pool.ceiling_concentration",
                k,
                "gives no valid Beta distribution with this mean",
            )
        })?;
        let ceiling: f64 = ceilings.sample(rng);
        ShiftedSurge::new(
            self.threshold * (self.threshold_spread * z_tau).exp(),
            self.width * (self.width_spread * z_width).exp(),
            ceiling * ceiling_scale,
        )
    }
}

/// The paper's four traffic mixes of easy, medium and hard queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mix {
    /// A third of each.
    Balanced,
    /// 70 % easy, 20 % medium, 10 % hard.
    MostlyEasy,
    /// 10 % easy, 20 % medium, 70 % hard.
    MostlyHard,
    /// 45 % easy, 10 % medium, 45 % hard: the extremes, little in between.
    UShaped,
}

impl Mix {
    /// The four mixes in the paper's order.
    pub const ALL: [Mix; 4] = [
        Mix::Balanced,
        Mix::MostlyEasy,
        Mix::MostlyHard,
        Mix::UShaped,
    ];

    /// The paper's name of the mix.
    pub fn name(&self) -> &'static str {
        match self {
            Mix::Balanced => "Balanced",
            Mix::MostlyEasy => "MostlyEasy",
            Mix::MostlyHard => "MostlyHard",
            Mix::UShaped => "UShaped",
        }
    }

    /// Shares of easy, medium and hard queries (they sum to 1).
    pub fn shares(&self) -> [f64; 3] {
        match self {
            Mix::Balanced => [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],
            Mix::MostlyEasy => [0.7, 0.2, 0.1],
            Mix::MostlyHard => [0.1, 0.2, 0.7],
            Mix::UShaped => [0.45, 0.1, 0.45],
        }
    }

    /// How many of `n` queries fall in each class: rounded shares, the rounding
    /// remainder going to the hard class.
    pub fn counts(&self, n: usize) -> [usize; 3] {
        let [easy, medium, _] = self.shares();
        let easy = (easy * n as f64).round() as usize;
        let medium = ((medium * n as f64).round() as usize).min(n - easy);
        [easy, medium, n - easy - medium]
    }
}

/// Configures a [`Stream`]; build it with [`StreamConfig::generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    mix: Mix,
    queries: usize,
    threshold_noise: f64,
    pooled_shape: bool,
    cap: u64,
    seed: u64,
    pools: [Pool; 3],
    ceiling_scales: [f64; 3],
}

impl StreamConfig {
    /// The paper's setting for `mix`: 500 queries, exact thresholds (σ = 0), a cap of
    /// [`StreamConfig::DEFAULT_CAP`] tokens, seed 0, the pools [`Pool::EASY`],
    /// [`Pool::MEDIUM`], [`Pool::HARD`], ceilings unscaled.
    pub fn new(mix: Mix) -> Self {
        StreamConfig {
            mix,
            queries: 500,
            threshold_noise: 0.0,
            pooled_shape: false,
            cap: Self::DEFAULT_CAP,
            seed: 0,
            pools: [Pool::EASY, Pool::MEDIUM, Pool::HARD],
            ceiling_scales: [1.0; 3],
        }
    }

    /// Every query's cap: 4 096 tokens, the context length of Qwen2.5-Math-7B.
    pub const DEFAULT_CAP: u64 = 4096;

    /// Number of queries (≥ 1).
    pub fn queries(mut self, n: usize) -> Self {
        self.queries = n;
        self
    }

    /// σ of the multiplicative log-normal noise on the predicted thresholds (≥ 0).
    pub fn threshold_noise(mut self, sigma: f64) -> Self {
        self.threshold_noise = sigma;
        self
    }

    /// When `true`, the predicted curves carry their pool's median width and mean
    /// ceiling instead of the query's own (the predictor knows the kind of problem, not
    /// the problem); default `false`.
    pub fn pooled_shape(mut self, pooled: bool) -> Self {
        self.pooled_shape = pooled;
        self
    }

    /// Every query's cap in tokens (≥ 1).
    pub fn cap(mut self, tokens: u64) -> Self {
        self.cap = tokens;
        self
    }

    /// Seed of all random draws. The true curves and the outcome draws depend on the
    /// seed alone, not on σ, so streams that differ only in σ hold the same queries.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The easy, medium and hard pools.
    pub fn pools(mut self, easy: Pool, medium: Pool, hard: Pool) -> Self {
        self.pools = [easy, medium, hard];
        self
    }

    /// Multiplies every query's ceiling (true and predicted) by `scale` (finite, ≥ 0);
    /// default 1. Thresholds, widths and every random draw stay the same, so CLEAR's
    /// grants do not change (all utilities scale alike, only the price does) and every
    /// method's accuracy scales by `scale`. [`crate::calibrate`] finds the scale at
    /// which uniform matches the paper's accuracy levels.
    pub fn ceiling_scale(self, scale: f64) -> Self {
        self.pool_ceiling_scales([scale; 3])
    }

    /// One ceiling scale per pool, easy, medium, hard (each finite, ≥ 0), as
    /// [`StreamConfig::ceiling_scale`]. Unlike one scale for all, unequal scales change
    /// the pools' relative worth and so CLEAR's grants.
    pub fn pool_ceiling_scales(mut self, scales: [f64; 3]) -> Self {
        self.ceiling_scales = scales;
        self
    }

    /// The ceiling scales of the easy, medium and hard pools.
    pub fn ceiling_scales(&self) -> [f64; 3] {
        self.ceiling_scales
    }

    /// The traffic mix.
    pub fn mix(&self) -> Mix {
        self.mix
    }

    /// Checks the options and draws the stream.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the option.
    pub fn generate(&self) -> Result<Stream> {
        positive("queries", self.queries as u64)?;
        positive("cap", self.cap)?;
        if !(self.threshold_noise.is_finite() && self.threshold_noise >= 0.0) {
            return Err(Error::invalid_option(
                "threshold_noise",
                self.threshold_noise,
                "must be finite and >= 0",
            ));
        }
        self.pools.iter().try_for_each(Pool::validate)?;
        if let Some(&scale) = self
            .ceiling_scales
            .iter()
            .find(|s| !(s.is_finite() && **s >= 0.0))
        {
            return Err(Error::invalid_option(
                "ceiling_scale",
                scale,
                "must be finite and >= 0",
            ));
        }

        // Separate generators, so that σ changes the predictions and nothing else.
        let mut truth_rng = StdRng::seed_from_u64(self.seed);
        let mut noise_rng = StdRng::seed_from_u64(self.seed ^ 0x6e6f_6973_6520_7369);
        let mut draw_rng = StdRng::seed_from_u64(self.seed ^ 0x6472_6177_7320_2020);

        let mut difficulties: Vec<Difficulty> = Difficulty::ALL
            .iter()
            .zip(self.mix.counts(self.queries))
            .flat_map(|(&d, count)| std::iter::repeat_n(d, count))
            .collect();
        difficulties.shuffle(&mut truth_rng);

        let mut truth = Vec::with_capacity(self.queries);
        let mut predicted = Vec::with_capacity(self.queries);
        for (index, &difficulty) in difficulties.iter().enumerate() {
            let pool = &self.pools[difficulty as usize];
            let scale = self.ceiling_scales[difficulty as usize];
            let curve = pool.sample(&mut truth_rng, scale)?;
            let z: f64 = noise_rng.sample(StandardNormal);
            let guess = curve.threshold() * (self.threshold_noise * z).exp();
            let shape = if self.pooled_shape {
                ShiftedSurge::new(0.0, pool.width, pool.ceiling_mean * scale)?
            } else {
                curve
            };
            let id = format!("{}-{index}", self.mix.name());
            let prediction = shape
                .with_threshold(guess)
                .map_err(|e| e.for_query(QueryRef::at(index, Some(&id))))?;
            truth.push(Query::new(curve).with_cap(self.cap).with_id(id.clone()));
            predicted.push(Query::new(prediction).with_cap(self.cap).with_id(id));
        }
        let outcome_draws = (0..self.queries)
            .map(|_| draw_rng.random::<f64>())
            .collect();
        Ok(Stream {
            mix: self.mix,
            threshold_noise: self.threshold_noise,
            cap: self.cap,
            difficulties,
            truth,
            predicted,
            outcome_draws,
        })
    }
}

/// A generated traffic stream: true and predicted curves of the same queries.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    mix: Mix,
    threshold_noise: f64,
    cap: u64,
    difficulties: Vec<Difficulty>,
    truth: Vec<Query>,
    predicted: Vec<Query>,
    outcome_draws: Vec<f64>,
}

impl Stream {
    /// The mix it was drawn from.
    pub fn mix(&self) -> Mix {
        self.mix
    }

    /// σ of the noise on the predicted thresholds.
    pub fn threshold_noise(&self) -> f64 {
        self.threshold_noise
    }

    /// Every query's cap.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.truth.len()
    }

    /// Always `false`: a stream has at least one query.
    pub fn is_empty(&self) -> bool {
        self.truth.is_empty()
    }

    /// Each query's class.
    pub fn difficulties(&self) -> &[Difficulty] {
        &self.difficulties
    }

    /// The true curves, used for scoring (and by the [`Oracle`](crate::baselines::Oracle)).
    pub fn truth(&self) -> &[Query] {
        &self.truth
    }

    /// The predicted curves, which the methods allocate on.
    pub fn predicted(&self) -> &[Query] {
        &self.predicted
    }

    /// One uniform draw in [0, 1) per query: query i is answered correctly iff its draw
    /// is below its true accuracy at its grant. The same draws serve every method and
    /// budget (common random numbers), so sampled accuracies differ between methods
    /// only where their grants do.
    pub fn outcome_draws(&self) -> &[f64] {
        &self.outcome_draws
    }
}

/// `value` when it is at least 1, else an [`Error::InvalidOption`] naming `option`.
pub(crate) fn positive(option: &'static str, value: u64) -> Result<u64> {
    if value == 0 {
        Err(Error::invalid_option(option, 0.0, "must be >= 1"))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::Uniform;
    use approx::assert_relative_eq;
    use clear_alloc::Allocator;

    #[test]
    fn method_names_are_the_policy_names() {
        let stream = StreamConfig::new(Mix::Balanced)
            .queries(3)
            .generate()
            .unwrap();
        let sweep = Sweep::new(vec![100]).unwrap();
        for method in Method::ALL {
            assert_eq!(sweep.policy(method, &stream).unwrap().name(), method.name());
        }
    }

    #[test]
    fn counts_follow_the_shares_and_sum_to_n() {
        assert_eq!(Mix::Balanced.counts(500), [167, 167, 166]);
        assert_eq!(Mix::MostlyEasy.counts(500), [350, 100, 50]);
        assert_eq!(Mix::MostlyHard.counts(500), [50, 100, 350]);
        assert_eq!(Mix::UShaped.counts(500), [225, 50, 225]);
        for mix in Mix::ALL {
            for n in 1..40 {
                assert_eq!(mix.counts(n).iter().sum::<usize>(), n, "{mix:?} {n}");
            }
        }
    }

    #[test]
    fn stream_has_the_mix_composition_and_caps() {
        let stream = StreamConfig::new(Mix::MostlyHard).generate().unwrap();
        let hard = stream
            .difficulties()
            .iter()
            .filter(|&&d| d == Difficulty::Hard)
            .count();
        assert_eq!(hard, 350);
        assert!(stream.truth().iter().all(|q| q.cap() == Some(4096)));
        assert_eq!(stream.predicted().len(), 500);
    }

    #[test]
    fn zero_noise_predicts_exactly_and_noise_moves_only_thresholds() {
        let exact = StreamConfig::new(Mix::Balanced).seed(3).generate().unwrap();
        assert_eq!(exact.truth(), exact.predicted());
        let noisy = StreamConfig::new(Mix::Balanced)
            .seed(3)
            .threshold_noise(0.5)
            .generate()
            .unwrap();
        assert_eq!(noisy.truth(), exact.truth());
        assert_eq!(noisy.outcome_draws(), exact.outcome_draws());
        for (t, p) in noisy.truth().iter().zip(noisy.predicted()) {
            assert_eq!(t.curve().width(), p.curve().width());
            assert_ne!(t.curve().threshold(), p.curve().threshold());
        }
    }

    #[test]
    fn log_noise_has_the_requested_spread() {
        // ln(τ̂/τ) = σZ: its sample standard deviation over 2000 queries is σ within
        // a few percent (the standard error of a sample sd is σ/√(2n) ≈ 1.6 %).
        let sigma = 0.5;
        let stream = StreamConfig::new(Mix::Balanced)
            .queries(2000)
            .threshold_noise(sigma)
            .generate()
            .unwrap();
        let logs: Vec<f64> = stream
            .truth()
            .iter()
            .zip(stream.predicted())
            .map(|(t, p)| (p.curve().threshold() / t.curve().threshold()).ln())
            .collect();
        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
        let var = logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (logs.len() - 1) as f64;
        assert_relative_eq!(var.sqrt(), sigma, max_relative = 0.06);
        assert!(mean.abs() < 0.05);
    }

    #[test]
    fn pooled_shape_hides_the_query_shape() {
        let stream = StreamConfig::new(Mix::UShaped)
            .pooled_shape(true)
            .generate()
            .unwrap();
        for (p, d) in stream.predicted().iter().zip(stream.difficulties()) {
            let pool = [Pool::EASY, Pool::MEDIUM, Pool::HARD][*d as usize];
            assert_relative_eq!(p.curve().width(), pool.width, max_relative = 1e-12);
            assert_relative_eq!(p.curve().ceiling(), pool.ceiling_mean, max_relative = 1e-12);
        }
    }

    #[test]
    fn bad_options_are_named() {
        let name = |r: Result<Stream>| match r.unwrap_err() {
            Error::InvalidOption { option, .. } => option,
            other => panic!("{other:?}"),
        };
        let base = StreamConfig::new(Mix::Balanced);
        assert_eq!(name(base.clone().queries(0).generate()), "queries");
        assert_eq!(
            name(base.clone().threshold_noise(f64::NAN).generate()),
            "threshold_noise"
        );
        assert_eq!(
            name(base.clone().threshold_noise(-0.1).generate()),
            "threshold_noise"
        );
        assert_eq!(name(base.clone().cap(0).generate()), "cap");
        assert_eq!(
            name(base.clone().ceiling_scale(f64::NAN).generate()),
            "ceiling_scale"
        );
        assert_eq!(
            name(
                base.clone()
                    .pool_ceiling_scales([1.0, -0.5, 1.0])
                    .generate()
            ),
            "ceiling_scale"
        );
        let bad = Pool {
            ceiling_mean: 1.0,
            ..Pool::HARD
        };
        assert_eq!(
            name(base.clone().pools(Pool::EASY, Pool::MEDIUM, bad).generate()),
            "pool.ceiling_mean"
        );
        let bad = Pool {
            width: f64::INFINITY,
            ..Pool::EASY
        };
        assert_eq!(
            name(base.pools(bad, Pool::MEDIUM, Pool::HARD).generate()),
            "pool.width"
        );
        assert!(Sweep::new(vec![]).is_err());
        assert!(Sweep::new(vec![1]).unwrap().granularity(0).is_err());
    }

    #[test]
    fn ceiling_scales_move_only_their_pools_ceilings() {
        let plain = StreamConfig::new(Mix::UShaped)
            .queries(60)
            .seed(5)
            .generate()
            .unwrap();
        let scales = [0.5, 1.0, 0.25];
        let scaled = StreamConfig::new(Mix::UShaped)
            .queries(60)
            .seed(5)
            .pool_ceiling_scales(scales)
            .generate()
            .unwrap();
        assert_eq!(scaled.difficulties(), plain.difficulties());
        assert_eq!(scaled.outcome_draws(), plain.outcome_draws());
        for ((s, p), d) in scaled
            .truth()
            .iter()
            .zip(plain.truth())
            .zip(plain.difficulties())
        {
            assert_eq!(s.curve().threshold(), p.curve().threshold());
            assert_eq!(s.curve().width(), p.curve().width());
            let want = p.curve().ceiling() * scales[*d as usize];
            assert_relative_eq!(s.curve().ceiling(), want, max_relative = 1e-12);
        }
    }

    #[test]
    fn one_scale_leaves_clear_grants_and_scales_accuracy() {
        let config = StreamConfig::new(Mix::Balanced).queries(120).seed(9);
        let plain = config.clone().generate().unwrap();
        let half = config.ceiling_scale(0.5).generate().unwrap();
        let grants = |s: &Stream| {
            Allocator::default()
                .allocate(s.truth(), 300 * 120)
                .unwrap()
                .tokens()
                .collect::<Vec<_>>()
        };
        assert_eq!(grants(&half), grants(&plain));
        let a = evaluate(&Allocator::default(), &plain, 300).unwrap();
        let b = evaluate(&Allocator::default(), &half, 300).unwrap();
        assert_relative_eq!(
            b.expected_accuracy,
            0.5 * a.expected_accuracy,
            max_relative = 1e-6
        );
        assert_eq!(b.abandonment_rate, a.abandonment_rate);
    }

    #[test]
    fn evaluation_scores_on_the_truth() {
        // A single query with a noisy prediction: uniform ignores the prediction, so its
        // score is the true curve at 1000 tokens.
        let stream = StreamConfig::new(Mix::MostlyEasy)
            .queries(1)
            .threshold_noise(1.0)
            .generate()
            .unwrap();
        let truth = stream.truth()[0].curve();
        let eval = evaluate(&Uniform::default(), &stream, 1000).unwrap();
        assert_relative_eq!(
            eval.expected_accuracy,
            truth.utility(1000.0),
            max_relative = 1e-12
        );
        assert_eq!(eval.spent_per_query, 1000.0);
        let correct = stream.outcome_draws()[0] < truth.utility(1000.0);
        assert_eq!(eval.sampled_accuracy, if correct { 1.0 } else { 0.0 });
        assert!(matches!(
            evaluate(
                &Uniform::default(),
                &StreamConfig::new(Mix::Balanced)
                    .queries(2)
                    .generate()
                    .unwrap(),
                u64::MAX
            ),
            Err(Error::InvalidParameter {
                field: "tokens_per_query",
                ..
            })
        ));
    }
}
