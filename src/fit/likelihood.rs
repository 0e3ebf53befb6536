//! The likelihood of one query's rollouts under the shifted-surge model (SPEC §5).
//!
//! A correct rollout's length is a draw of `τ + Gamma(2, β)`, with density
//! `β² x e^(−βx)` at `x = L − τ > 0`. When rollouts were cut off at a sampling cap `M`,
//! only correct lengths up to `M` can be seen, so the correct lengths follow the same
//! law *truncated* at `M`: their conditional log-likelihood gains the term
//! `−k ln P(2, β(M − τ))`, where `P(2, ·)` is the Gamma(2) CDF.
//!
//! Counts: a rollout ends correct within the cap (probability `p F(M − τ)`), ends
//! incorrect within the cap, or is cut off. Leaving the law of incorrect lengths free,
//! these three cells are a saturated multinomial, so their maximum-likelihood
//! probabilities are the observed shares, whatever `(τ, β)` is; the ceiling follows as
//! `p̂ = (k/n) / F(M − τ)`, clamped to `(k + n_cut)/n` (every cut-off rollout would
//! have become correct). Without a cap the truncation term vanishes, `p̂ = k/n`, and
//! for fixed τ the rate has the closed form `β̂ = 2k / Σ(L − τ)`.

use crate::model::surge_cdf;

/// One query's rollouts reduced to what the likelihood needs.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Lengths of the correct rollouts, ascending.
    pub correct: Vec<f64>,
    /// All rollouts.
    pub rollouts: usize,
    /// Rollouts counted as failures (finished incorrect; also the cut-off ones when
    /// censoring is ignored).
    pub failed: usize,
    /// Rollouts treated as censored at `cap`.
    pub censored: usize,
    /// The sampling cap `M`, when censoring is modelled and some rollout was cut off.
    pub cap: Option<f64>,
}

impl Sample {
    pub fn k(&self) -> f64 {
        self.correct.len() as f64
    }

    /// The smallest correct length: τ must stay below it.
    pub fn min_length(&self) -> f64 {
        self.correct.first().copied().unwrap_or(0.0)
    }

    /// A correct rollout of 0 tokens pins τ at 0: no other threshold gives it a
    /// positive density.
    pub fn pinned(&self) -> bool {
        self.min_length() <= 0.0
    }

    pub fn all_lengths_equal(&self) -> bool {
        self.correct.first() == self.correct.last()
    }

    pub fn excess_sum(&self, threshold: f64) -> f64 {
        self.correct.iter().map(|l| l - threshold).sum()
    }

    /// `ln P(2, β(M − τ))`, the log-probability that a correct rollout ends within the
    /// cap; 0 without a cap.
    pub fn ln_within_cap(&self, threshold: f64, beta: f64) -> f64 {
        match self.cap {
            Some(cap) => surge_cdf(beta * (cap - threshold)).ln(),
            None => 0.0,
        }
    }

    /// The log-likelihood of the correct lengths at `(τ, β)`, conditional on ending
    /// within the cap. −∞ outside the domain. When τ is pinned at 0, the terms of
    /// zero-length rollouts (`ln 0`, the same for every β) are left out, so that β can
    /// still be compared; [`Sample::log_likelihood`] puts them back.
    pub fn ln_lengths(&self, threshold: f64, beta: f64) -> f64 {
        let pinned = self.pinned() && threshold == 0.0;
        if !(beta > 0.0 && beta.is_finite()) || (!pinned && threshold >= self.min_length()) {
            return f64::NEG_INFINITY;
        }
        let mut ln_excess = 0.0;
        let mut excess = 0.0;
        for &length in &self.correct {
            let x = length - threshold;
            if x > 0.0 {
                ln_excess += x.ln();
                excess += x;
            }
        }
        let k = self.k();
        2.0 * k * beta.ln() + ln_excess - beta * excess - k * self.ln_within_cap(threshold, beta)
    }

    /// The closed-form rate for fixed τ without a cap: `β̂ = 2k / Σ(L − τ)`.
    pub fn closed_form_beta(&self, threshold: f64) -> f64 {
        2.0 * self.k() / self.excess_sum(threshold)
    }

    /// The ceiling that maximises the likelihood of the counts given `(τ, β)`.
    pub fn ceiling(&self, threshold: f64, beta: f64) -> f64 {
        let n = self.rollouts as f64;
        let k = self.k();
        let within = self.ln_within_cap(threshold, beta).exp();
        let most = (k + self.censored as f64) / n;
        ((k / n) / within).min(most).clamp(0.0, 1.0)
    }

    /// The full log-likelihood of the rollouts at `(τ, β, p)`: `ln p + ln f(L − τ)`
    /// per correct rollout, `ln(1 − p)` per failure and `ln(1 − p F(M − τ))` per
    /// censored rollout. −∞ when a correct rollout has 0 tokens.
    pub fn log_likelihood(&self, threshold: f64, beta: f64, ceiling: f64) -> f64 {
        let k = self.k();
        let zero_lengths = self.correct.iter().any(|&l| l - threshold <= 0.0);
        if zero_lengths {
            return f64::NEG_INFINITY;
        }
        let lengths = self.ln_lengths(threshold, beta) + k * self.ln_within_cap(threshold, beta);
        let within = self.ln_within_cap(threshold, beta).exp();
        let failures = xlny(self.failed as f64, 1.0 - ceiling);
        let censored = xlny(self.censored as f64, 1.0 - ceiling * within);
        xlny(k, ceiling) + lengths + failures + censored
    }
}

/// One completion a server saw, censored at its own grant: its length when it stopped
/// by itself, else the tokens it had used when it was cut off (its grant, or less if
/// the client left), with the weight it carries in a decaying sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Granted {
    /// Tokens generated.
    pub length: f64,
    /// Whether it stopped by itself (`length` is a draw of the length law) or was cut
    /// off (the length law survived `length` tokens).
    pub finished: bool,
    /// The observation's weight (1 when fresh).
    pub weight: f64,
}

/// The weighted log-likelihood of completion lengths under `τ + Gamma(2, β)`, each
/// censored at its own point: `Σ w ln f(L − τ)` over the finished ones plus
/// `Σ w ln(1 − F(g − τ))` over the cut-off ones. The generalisation of
/// [`Sample::ln_lengths`] from one sampling cap to a cap per rollout; −∞ outside the
/// domain (β ≤ 0, or a finished length at or below τ).
pub(crate) fn ln_granted_lengths(sample: &[Granted], threshold: f64, beta: f64) -> f64 {
    if !(beta > 0.0 && beta.is_finite()) {
        return f64::NEG_INFINITY;
    }
    let ln_beta = beta.ln();
    let mut total = 0.0;
    for o in sample {
        let x = o.length - threshold;
        if o.finished {
            if x <= 0.0 {
                return f64::NEG_INFINITY;
            }
            total += o.weight * (2.0 * ln_beta + x.ln() - beta * x);
        } else if x > 0.0 {
            // Survival of Gamma(2): (1 + z) e^(−z), in logs without cancellation.
            let z = beta * x;
            total += o.weight * (z.ln_1p() - z);
        }
    }
    total
}

/// `x ln y` with the convention `0 ln 0 = 0`.
fn xlny(x: f64, y: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        x * y.ln()
    }
}

/// The threshold that maximises the likelihood of `sample` for a fixed rate β.
///
/// Without a cap the score `kβ − Σ 1/(L − τ)` is decreasing in τ, so the maximiser is
/// 0 when the score is already ≤ 0 there and otherwise its unique root below the
/// smallest length; a Newton step kept inside the bracket finds it. With a cap the
/// truncation term breaks that monotonicity and a bounded search is used instead.
pub(crate) fn threshold_for_beta(sample: &Sample, beta: f64) -> f64 {
    if sample.pinned() || sample.correct.is_empty() {
        return 0.0;
    }
    let top = sample.min_length();
    if sample.cap.is_some() {
        return crate::fit::optimise::maximise_1d(|t| sample.ln_lengths(t, beta), 0.0, top, 16).0;
    }
    let k_beta = sample.k() * beta;
    let score = |t: f64| {
        let (mut s, mut slope) = (k_beta, 0.0);
        for &length in &sample.correct {
            let inv = 1.0 / (length - t);
            s -= inv;
            slope -= inv * inv;
        }
        (s, slope)
    };
    if score(0.0).0 <= 0.0 {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0, top);
    let mut t = 0.0;
    for _ in 0..100 {
        let (s, slope) = score(t);
        if s > 0.0 {
            lo = t;
        } else {
            hi = t;
        }
        let newton = t - s / slope;
        if (newton - t).abs() <= 1e-12 * top || hi - lo <= 1e-12 * top {
            return newton.clamp(lo, hi);
        }
        t = if newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn sample(correct: &[f64], failed: usize, censored: usize, cap: Option<f64>) -> Sample {
        Sample {
            correct: correct.to_vec(),
            rollouts: correct.len() + failed + censored,
            failed,
            censored,
            cap,
        }
    }

    #[test]
    fn uncensored_ceiling_is_the_share_correct() {
        let s = sample(&[10.0, 20.0, 30.0], 1, 0, None);
        assert_relative_eq!(s.ceiling(5.0, 0.1), 0.75);
    }

    #[test]
    fn censored_ceiling_divides_by_the_chance_to_finish_within_the_cap() {
        // τ = 0, β = 1/100, M = 200: F = P(2, 2) = 1 − 3e^(−2).
        let s = sample(&[50.0, 150.0], 2, 4, Some(200.0));
        let within = 1.0 - 3.0 * (-2.0f64).exp();
        assert_relative_eq!(
            s.ceiling(0.0, 0.01),
            (2.0 / 8.0) / within,
            max_relative = 1e-12
        );
        // A cap so short that almost nothing finishes: clamp at (k + censored)/n.
        let short = sample(&[5.0, 6.0], 0, 6, Some(7.0));
        assert_relative_eq!(short.ceiling(0.0, 0.001), 1.0);
        let short = sample(&[5.0, 6.0], 2, 4, Some(7.0));
        assert_relative_eq!(short.ceiling(0.0, 0.001), 6.0 / 8.0);
    }

    #[test]
    fn log_likelihood_matches_the_density_written_out() {
        // One correct rollout at 30 with τ = 10, β = 0.05, p = 0.5, one failure:
        // ln(0.5 · 0.05² · 20 · e^(−1)) + ln(0.5).
        let s = sample(&[30.0], 1, 0, None);
        let expected = (0.5f64 * 0.05 * 0.05 * 20.0 * (-1.0f64).exp()).ln() + 0.5f64.ln();
        assert_relative_eq!(
            s.log_likelihood(10.0, 0.05, 0.5),
            expected,
            max_relative = 1e-12
        );
        let censored = sample(&[30.0], 0, 1, Some(40.0));
        // Censored term: ln(1 − p · P(2, β(M − τ))) with βx = 1.5.
        let f = 1.0 - 2.5 * (-1.5f64).exp();
        let expected = (0.5f64 * 0.05 * 0.05 * 20.0 * (-1.0f64).exp()).ln() + (1.0 - 0.5 * f).ln();
        assert_relative_eq!(
            censored.log_likelihood(10.0, 0.05, 0.5),
            expected,
            max_relative = 1e-12
        );
    }

    #[test]
    fn granted_lengths_add_densities_and_survivals_at_each_own_grant() {
        // τ = 100, β = 0.01: a finish at 300 (x = 200, z = 2) with weight 1, a cut-off
        // at 150 (z = 0.5) with weight 0.5, a cut-off below τ (no information).
        let sample = [
            Granted {
                length: 300.0,
                finished: true,
                weight: 1.0,
            },
            Granted {
                length: 150.0,
                finished: false,
                weight: 0.5,
            },
            Granted {
                length: 80.0,
                finished: false,
                weight: 1.0,
            },
        ];
        let density = 0.01f64 * 0.01 * 200.0 * (-2.0f64).exp();
        let survival = 1.0 - (1.0 - 1.5 * (-0.5f64).exp());
        let expected = density.ln() + 0.5 * survival.ln();
        assert_relative_eq!(
            ln_granted_lengths(&sample, 100.0, 0.01),
            expected,
            max_relative = 1e-12
        );
        assert_eq!(ln_granted_lengths(&sample, 300.0, 0.01), f64::NEG_INFINITY);
        assert_eq!(ln_granted_lengths(&sample, 100.0, 0.0), f64::NEG_INFINITY);
    }

    #[test]
    fn threshold_for_beta_solves_the_score_equation() {
        let s = sample(&[100.0, 130.0, 170.0, 260.0], 0, 0, None);
        let beta = 0.03;
        let t = threshold_for_beta(&s, beta);
        let score: f64 = 4.0 * beta - s.correct.iter().map(|l| 1.0 / (l - t)).sum::<f64>();
        assert!(t > 0.0 && t < 100.0);
        assert!(score.abs() < 1e-9, "score {score}");
        // With one length the maximiser is the mode: τ = L − 1/β.
        let one = sample(&[500.0], 0, 0, None);
        assert_relative_eq!(threshold_for_beta(&one, 0.01), 400.0, max_relative = 1e-9);
        // A width larger than the length: the score is negative at 0, τ = 0.
        assert_eq!(threshold_for_beta(&one, 0.001), 0.0);
    }
}
