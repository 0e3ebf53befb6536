//! A cold-start server: classes of requests whose curves nobody measured, learned
//! online from completions (SPEC §7) while an online allocator serves them.
//!
//! Three classes with the curves of the [`Pool`] medians (easy,
//! medium, hard; every request of a class has its class's curve) arrive in a
//! Balanced mix. Two servers see the same arrivals and the same completion lengths
//! (common random numbers): the *reference* admits every request with its class's
//! true curve; the *learner* admits it with the curve its
//! [`CurveLearner`] holds for the class, which
//! starts from a prior whose threshold is off by a factor 2 and whose width is off by
//! a factor 1.5, in both directions across the classes, and is refitted at every
//! window's end. A request's completion length is a draw of `τ + Gamma(2, β)` of its
//! class; it finishes if that fits its grant and is otherwise cut off at the grant; its
//! answer is correct with the class's ceiling (reported only with feedback on). Each
//! window scores both servers by the expected accuracy of their grants under the true
//! curves, `Σ U(grant) / arrivals`.

use clear_alloc::online::{Completion, CurveLearner, CurvePrior, OnlineAllocator};
use clear_alloc::{Error, Query, Result, ShiftedSurge};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};

use crate::sim::Pool;

/// Options of the simulation; [`ColdStart::run`] validates them.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdStart {
    windows: usize,
    arrivals_per_window: usize,
    tokens_per_query: u64,
    feedback: bool,
    learning: bool,
    seed: u64,
    threshold_factors: [f64; 3],
    width_factors: [f64; 3],
}

/// One window of the simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowAccuracy {
    /// The window (0-based).
    pub window: usize,
    /// Mean expected accuracy of the learner's grants.
    pub learned: f64,
    /// Mean expected accuracy of the reference's grants.
    pub reference: f64,
}

impl WindowAccuracy {
    /// `learned / reference` (1 when the reference's accuracy is 0).
    pub fn ratio(&self) -> f64 {
        if self.reference > 0.0 {
            self.learned / self.reference
        } else {
            1.0
        }
    }
}

/// The window from which every later window of `rows` has a learned accuracy of at
/// least `share` of the reference's: one past the last window below it (0 when none
/// is).
pub fn settled_from(rows: &[WindowAccuracy], share: f64) -> usize {
    rows.iter()
        .rposition(|r| r.ratio() < share)
        .map_or(0, |last| last + 1)
}

impl Default for ColdStart {
    /// 40 windows of 600 arrivals at 160 tokens per query, correctness feedback on,
    /// seed 0; prior thresholds off by ×2, ×½, ×2 and widths by ×1.5, ×⅔, ×1.5 for
    /// the easy, medium and hard class.
    fn default() -> Self {
        ColdStart {
            windows: 40,
            arrivals_per_window: 600,
            tokens_per_query: 160,
            feedback: true,
            learning: true,
            seed: 0,
            threshold_factors: [2.0, 0.5, 2.0],
            width_factors: [1.5, 1.0 / 1.5, 1.5],
        }
    }
}

impl ColdStart {
    /// Number of windows (≥ 1).
    pub fn windows(mut self, n: usize) -> Self {
        self.windows = n;
        self
    }

    /// Arrivals per window (≥ 1).
    pub fn arrivals_per_window(mut self, n: usize) -> Self {
        self.arrivals_per_window = n;
        self
    }

    /// Window budget per arrival, in tokens (≥ 1).
    pub fn tokens_per_query(mut self, tokens: u64) -> Self {
        self.tokens_per_query = tokens;
        self
    }

    /// Whether completions report correctness.
    pub fn feedback(mut self, on: bool) -> Self {
        self.feedback = on;
        self
    }

    /// Whether the learner observes completions at all (default `true`); `false`
    /// serves on the priors throughout, the cost of not learning.
    pub fn learning(mut self, on: bool) -> Self {
        self.learning = on;
        self
    }

    /// Seed of the arrivals, lengths and answers.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The true curves of the easy, medium and hard class: the pools' medians.
    pub fn true_curves() -> Result<[ShiftedSurge; 3]> {
        let curve = |p: Pool| ShiftedSurge::new(p.threshold, p.width, p.ceiling_mean);
        Ok([curve(Pool::EASY)?, curve(Pool::MEDIUM)?, curve(Pool::HARD)?])
    }

    /// Runs the simulation.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming `windows`, `arrivals_per_window` or
    /// `tokens_per_query` when 0 or when the window budget overflows; whatever the
    /// allocators return.
    pub fn run(&self) -> Result<Vec<WindowAccuracy>> {
        if self.windows == 0 {
            return Err(Error::invalid_option("windows", 0.0, "must be >= 1"));
        }
        if self.arrivals_per_window == 0 {
            return Err(Error::invalid_option(
                "arrivals_per_window",
                0.0,
                "must be >= 1",
            ));
        }
        let budget = self
            .tokens_per_query
            .checked_mul(self.arrivals_per_window as u64)
            .filter(|&b| b > 0)
            .ok_or_else(|| {
                Error::invalid_option(
                    "tokens_per_query",
                    self.tokens_per_query as f64,
                    "must be >= 1, and times the arrivals fit in u64",
                )
            })?;
        let truth = Self::true_curves()?;
        let mut learner = CurveLearner::builder().refit_every(usize::MAX);
        for (class, curve) in truth.iter().enumerate() {
            let prior = ShiftedSurge::new(
                curve.threshold() * self.threshold_factors[class],
                curve.width() * self.width_factors[class],
                curve.ceiling(),
            )?;
            learner = learner.prior(class, CurvePrior::builder().curve(prior).build()?);
        }
        let learner = learner.build()?;
        let server = || {
            OnlineAllocator::builder()
                .tokens_per_window(budget)
                .default_cap(crate::sim::StreamConfig::DEFAULT_CAP)
                .seed(self.seed)
                .build()
        };
        let (learned_server, reference_server) = (server()?, server()?);
        let lengths: Vec<Gamma<f64>> = truth
            .iter()
            .map(|c| Gamma::new(2.0, c.width()).expect("a positive width"))
            .collect();
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut rows = Vec::with_capacity(self.windows);
        for window in 0..self.windows {
            let (mut learned, mut reference) = (0.0, 0.0);
            for _ in 0..self.arrivals_per_window {
                let class = rng.random_range(0..3usize);
                let t = &truth[class];
                let length = (t.threshold() + lengths[class].sample(&mut rng)).ceil() as u64;
                let correct = rng.random::<f64>() < t.ceiling();

                let ticket = reference_server.admit(&Query::new(*t))?;
                reference += t.utility(ticket.tokens() as f64);
                let used = length.min(ticket.tokens());
                reference_server.complete(ticket, used)?;

                let ticket = learned_server.admit(&Query::new(learner.curve(&class)))?;
                let grant = ticket.tokens();
                learned += t.utility(grant as f64);
                let completion = if length <= grant {
                    let finished = Completion::finished(length);
                    if self.feedback {
                        finished.with_correct(correct)
                    } else {
                        finished
                    }
                } else {
                    Completion::cut_off(grant)
                };
                let completed = learned_server.complete_with(ticket, completion)?;
                if self.learning {
                    learner.observe(class, &completed)?;
                }
            }
            learner.end_window();
            learned_server.end_window();
            reference_server.end_window();
            let n = self.arrivals_per_window as f64;
            rows.push(WindowAccuracy {
                window,
                learned: learned / n,
                reference: reference / n,
            });
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_by_name() {
        let err = ColdStart::default().windows(0).run().unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidOption {
                option: "windows",
                ..
            }
        ));
        let err = ColdStart::default().tokens_per_query(0).run().unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidOption {
                option: "tokens_per_query",
                ..
            }
        ));
    }
}
