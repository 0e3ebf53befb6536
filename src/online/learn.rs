//! Curves learned online from completions (SPEC §7); see [`CurveLearner`].

use super::ticket::Completed;
use crate::error::{non_negative, positive, Error, Result, Subject};
use crate::fit::likelihood::{ln_granted_lengths, Granted};
use crate::fit::optimise::maximise_nd;
use crate::model::ShiftedSurge;
use crate::prior::ThresholdPrior;
use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Where a class's learning starts: a curve, and how far its threshold and width may
/// be off (standard deviations of their logarithms) and how many completions its
/// ceiling is worth. Build it with [`CurvePrior::builder`], or take
/// [`CurvePrior::weak`] or [`CurvePrior::from_threshold_prior`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePrior {
    curve: ShiftedSurge,
    threshold_spread: f64,
    width_spread: f64,
    ceiling_strength: f64,
}

/// Builder for [`CurvePrior`].
#[derive(Debug, Clone, Copy)]
pub struct CurvePriorBuilder {
    prior: CurvePrior,
}

impl CurvePriorBuilder {
    /// The prior curve (its threshold, width and ceiling are the prior's centre).
    pub fn curve(mut self, curve: ShiftedSurge) -> Self {
        self.prior.curve = curve;
        self
    }

    /// Standard deviation of `ln τ` around the prior threshold (finite, > 0; default
    /// 1: a factor e either way is one standard deviation).
    pub fn threshold_spread(mut self, sigma: f64) -> Self {
        self.prior.threshold_spread = sigma;
        self
    }

    /// Standard deviation of `ln w` around the prior width (finite, > 0; default 1).
    pub fn width_spread(mut self, sigma: f64) -> Self {
        self.prior.width_spread = sigma;
        self
    }

    /// How many judged completions the prior ceiling is worth (finite, ≥ 0; default
    /// 10).
    pub fn ceiling_strength(mut self, completions: f64) -> Self {
        self.prior.ceiling_strength = completions;
        self
    }

    /// Validates the prior.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the field.
    pub fn build(self) -> Result<CurvePrior> {
        let p = self.prior;
        positive(Subject::Option, "threshold_spread", p.threshold_spread)?;
        positive(Subject::Option, "width_spread", p.width_spread)?;
        non_negative(Subject::Option, "ceiling_strength", p.ceiling_strength)?;
        Ok(p)
    }
}

impl CurvePrior {
    /// A builder starting from [`CurvePrior::weak`]'s curve and the default spreads.
    pub fn builder() -> CurvePriorBuilder {
        CurvePriorBuilder {
            prior: CurvePrior {
                threshold_spread: 1.0,
                width_spread: 1.0,
                ceiling_strength: 10.0,
                ..Self::weak()
            },
        }
    }

    /// A weak default for a class nothing is known about: threshold 200 and width 200
    /// tokens, each uncertain by a factor e² (σ = 2 in logs), ceiling 0.5 worth two
    /// completions. Without correctness feedback the ceiling stays 0.5.
    pub fn weak() -> Self {
        CurvePrior {
            curve: ShiftedSurge::new(200.0, 200.0, 0.5).expect("a valid constant curve"),
            threshold_spread: 2.0,
            width_spread: 2.0,
            ceiling_strength: 2.0,
        }
    }

    /// A learner's prior from a class's [`ThresholdPrior`]: its median curve, the
    /// spread of its thresholds as the threshold's uncertainty, a width uncertain by a
    /// factor e, and the ceiling worth 10 completions.
    pub fn from_threshold_prior(prior: &ThresholdPrior) -> Self {
        CurvePrior {
            curve: prior.median_curve(),
            // A point prior (spread 0) would forbid learning; keep it at least 0.1.
            threshold_spread: prior.spread().max(0.1),
            width_spread: 1.0,
            ceiling_strength: 10.0,
        }
    }

    /// The prior curve.
    pub fn curve(&self) -> ShiftedSurge {
        self.curve
    }
}

/// One completion kept in a class's sample.
#[derive(Debug, Clone, Copy)]
struct Record {
    length: f64,
    finished: bool,
    correct: Option<bool>,
    window: u64,
}

/// One class's sample and current curve.
#[derive(Debug, Clone)]
struct ClassState {
    prior: CurvePrior,
    curve: ShiftedSurge,
    records: VecDeque<Record>,
    since_fit: usize,
    /// Requests admitted with [`CurveLearner::curve_to_admit`], for exploration.
    admitted: u64,
}

/// A per-class curve learner fed by completions: a server with no offline rollouts
/// learns each class's curve from what its requests do under their grants. `K` names a
/// class (a route, a task type, a tenant).
///
/// # The model \[ours\]
///
/// Every completion of a class is a draw of the length law `τ + Gamma(2, β)` (the
/// model reasons until it answers), and its answer is correct with probability `p`,
/// independently of its length; so the accuracy with `b` tokens is `p · F(b − τ)`,
/// the class's shifted surge. A completion that stops by itself at `L` contributes the
/// density `f(L − τ)`; one cut off at its grant `g` (or earlier, by the client) the
/// survival `1 − F(g − τ)`: each request is censored at its *own* grant, the
/// generalisation of `fit`'s censoring at one sampling cap. `(τ, β)` is the maximum a
/// posteriori of these terms under the class's [`CurvePrior`] (log-normal around its
/// threshold and width), by Nelder–Mead over `(ln τ, ln w)`; with correctness reported,
/// `p` is the share of correct answers among the finished completions, shrunk to the
/// prior ceiling by `ceiling_strength` pseudo-observations.
///
/// **Without a correctness signal** the learner learns only the curve of *finishing*
/// within `b` tokens, `F(b − τ)`, and keeps the class's ceiling from its prior: the
/// learned curve is `p_prior · F(b − τ)`. A prior ceiling that is wrong stays wrong.
///
/// The sample of each class is bounded (the latest `capacity` completions) and
/// decaying: a completion seen `k` windows ago weighs `decay^k`, so the curve follows a
/// drift of the model or the traffic. Refits happen in [`CurveLearner::observe`] every
/// `refit_every` completions of a class and in [`CurveLearner::end_window`], never in
/// `admit`; the fit runs outside the learner's lock on a copy of the class's sample.
///
/// Abandoned requests (grant 0) teach nothing, and cut-off ones little: a class
/// whose curve makes it look hopeless at the current price is never granted enough
/// tokens to be corrected. Admit its requests with
/// [`curve_to_admit`](CurveLearner::curve_to_admit) and a small
/// [`exploration`](CurveLearnerBuilder::exploration) share, which admits a few of
/// them on an optimistic curve.
///
/// ```
/// use clear_alloc::online::{Completion, CurveLearner, CurvePrior, OnlineAllocator};
/// use clear_alloc::{Query, ShiftedSurge};
///
/// let learner = CurveLearner::<&str>::builder()
///     .default_prior(CurvePrior::weak())
///     .refit_every(50)
///     .build()?;
/// let online = OnlineAllocator::builder().tokens_per_window(100_000).build()?;
/// for i in 0..200u64 {
///     let query = Query::new(learner.curve(&"math")).with_cap(2_000);
///     let ticket = online.admit(&query)?;
///     let length = 300 + (i * 37) % 400; // what the model generated
///     let completion = if length <= ticket.tokens() {
///         Completion::finished(length).with_correct(i % 4 != 0)
///     } else {
///         Completion::cut_off(ticket.tokens())
///     };
///     learner.observe("math", &online.complete_with(ticket, completion)?)?;
/// }
/// learner.end_window();
/// let learned = learner.curve(&"math");
/// assert!(learned.threshold() > 100.0 && learned.threshold() < 300.0);
/// assert!((learned.ceiling() - 0.75).abs() < 0.1);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug)]
pub struct CurveLearner<K> {
    capacity: usize,
    decay: f64,
    refit_every: usize,
    /// Every this many requests of a class, one is admitted on its optimistic curve
    /// (0: never).
    explore_every: u64,
    default_prior: CurvePrior,
    classes: Mutex<HashMap<K, ClassState>>,
    window: std::sync::atomic::AtomicU64,
}

/// Builder for [`CurveLearner`].
#[derive(Debug, Clone)]
pub struct CurveLearnerBuilder<K> {
    capacity: usize,
    decay: f64,
    refit_every: usize,
    exploration: f64,
    default_prior: CurvePrior,
    priors: Vec<(K, CurvePrior)>,
}

impl<K: Hash + Eq + Clone> CurveLearnerBuilder<K> {
    /// Completions kept per class, the latest ones (≥ 2; default 1 000).
    pub fn capacity(mut self, completions: usize) -> Self {
        self.capacity = completions;
        self
    }

    /// Weight factor per window of age (in (0, 1]; default 0.8: a completion 10
    /// windows old weighs about a tenth of a fresh one).
    pub fn decay(mut self, factor: f64) -> Self {
        self.decay = factor;
        self
    }

    /// Refit a class after this many new completions (≥ 1; default 200), besides at
    /// every [`CurveLearner::end_window`].
    pub fn refit_every(mut self, completions: usize) -> Self {
        self.refit_every = completions;
        self
    }

    /// The share of a class's requests that [`CurveLearner::curve_to_admit`] admits on
    /// the class's *optimistic* curve, to learn whether more tokens help (in
    /// `[0, 1)`; default 0, no exploration). See [`CurveLearner::curve_to_admit`].
    pub fn exploration(mut self, share: f64) -> Self {
        self.exploration = share;
        self
    }

    /// The prior of classes without one of their own (default [`CurvePrior::weak`]).
    pub fn default_prior(mut self, prior: CurvePrior) -> Self {
        self.default_prior = prior;
        self
    }

    /// The prior of one class.
    pub fn prior(mut self, class: K, prior: CurvePrior) -> Self {
        self.priors.push((class, prior));
        self
    }

    /// Validates the options.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming `capacity`, `decay`, `refit_every` or
    /// `exploration`.
    pub fn build(self) -> Result<CurveLearner<K>> {
        let invalid =
            |option, value: f64, reason| Err(Error::invalid_option(option, value, reason));
        if self.capacity < 2 {
            return invalid("capacity", self.capacity as f64, "must be >= 2");
        }
        if !(self.decay > 0.0 && self.decay <= 1.0) {
            return invalid("decay", self.decay, "must be in (0, 1]");
        }
        if self.refit_every < 1 {
            return invalid("refit_every", 0.0, "must be >= 1");
        }
        if !(0.0..1.0).contains(&self.exploration) {
            return invalid("exploration", self.exploration, "must be in [0, 1)");
        }
        // One request in every ⌈1/share⌉.
        let explore_every = if self.exploration > 0.0 {
            (1.0 / self.exploration).ceil() as u64
        } else {
            0
        };
        let classes = self
            .priors
            .into_iter()
            .map(|(k, prior)| (k, ClassState::new(prior)))
            .collect();
        Ok(CurveLearner {
            capacity: self.capacity,
            decay: self.decay,
            refit_every: self.refit_every,
            explore_every,
            default_prior: self.default_prior,
            classes: Mutex::new(classes),
            window: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

impl ClassState {
    fn new(prior: CurvePrior) -> Self {
        ClassState {
            prior,
            curve: prior.curve,
            records: VecDeque::new(),
            since_fit: 0,
            admitted: 0,
        }
    }
}

impl<K: Hash + Eq + Clone> CurveLearner<K> {
    /// A builder with the defaults.
    pub fn builder() -> CurveLearnerBuilder<K> {
        CurveLearnerBuilder {
            capacity: 1_000,
            decay: 0.8,
            refit_every: 200,
            exploration: 0.0,
            default_prior: CurvePrior::weak(),
            priors: Vec::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, ClassState>> {
        self.classes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The class's current curve: the last fit, or its prior's curve before any.
    ///
    /// `class` is any borrowed form of the key, as with [`HashMap::get`]: a `&str`
    /// for `String` classes, so a lookup allocates nothing. (As with `HashMap::get`,
    /// a `&&String` no longer dereferences to the key: pass `name.as_str()`.)
    pub fn curve<Q>(&self, class: &Q) -> ShiftedSurge
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock()
            .get(class)
            .map_or(self.default_prior.curve, |s| s.curve)
    }

    /// The curve to admit the class's next request with: its [`curve`](Self::curve),
    /// except for one request in every `⌈1/exploration⌉` (see
    /// [`CurveLearnerBuilder::exploration`]), admitted on the class's *optimistic*
    /// curve — its threshold lowered to the low end of the prior's range,
    /// `τ · e^(−2 σ_τ)` (σ_τ the prior's threshold spread).
    ///
    /// Why: a class whose curve looks too expensive at the current price is
    /// abandoned, or granted too little for any completion to finish; its
    /// completions then carry no news (a cut-off completion only says the length law
    /// survived the grant) and its curve never changes, however wrong. A lower
    /// threshold raises the price at which the curve is abandoned, so the optimistic
    /// curve is funded where the learned one is not, and a share of the class's
    /// requests runs long enough to show where it really finishes (if it finishes
    /// past the grant, the cut-off completions push the threshold back up).
    /// Exploration spends budget on requests the learned curve would not buy: keep
    /// the share small.
    ///
    /// ```
    /// use clear_alloc::online::{CurveLearner, CurvePrior};
    /// use clear_alloc::ShiftedSurge;
    ///
    /// let prior = CurvePrior::builder()
    ///     .curve(ShiftedSurge::new(600.0, 100.0, 0.8)?)
    ///     .threshold_spread(1.0)
    ///     .build()?;
    /// let learner = CurveLearner::builder()
    ///     .prior("hard", prior)
    ///     .exploration(0.1)
    ///     .build()?;
    /// let thresholds: Vec<f64> = (0..10)
    ///     .map(|_| learner.curve_to_admit(&"hard").threshold())
    ///     .collect();
    /// // One in ten is optimistic: 600 · e^-2 ≈ 81 tokens.
    /// assert_eq!(thresholds.iter().filter(|&&t| t < 100.0).count(), 1);
    /// # Ok::<(), clear_alloc::Error>(())
    /// ```
    ///
    /// `class` is a borrowed form of the key that can be turned back into one (a
    /// `&str` for `String` classes); a class not seen before is added with the
    /// default prior.
    pub fn curve_to_admit<Q>(&self, class: &Q) -> ShiftedSurge
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut classes = self.lock();
        // Looked up before it is inserted: a known class (nearly every request) costs
        // no owned copy of its key.
        let state = match classes.get_mut(class) {
            Some(state) => state,
            None => classes
                .entry(class.to_owned())
                .or_insert_with(|| ClassState::new(self.default_prior)),
        };
        state.admitted += 1;
        if self.explore_every == 0 || !state.admitted.is_multiple_of(self.explore_every) {
            return state.curve;
        }
        let low = state.curve.threshold() * (-2.0 * state.prior.threshold_spread).exp();
        state.curve.with_threshold(low).unwrap_or(state.curve)
    }

    /// Completions held for the class.
    pub fn sample_len<Q>(&self, class: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().get(class).map_or(0, |s| s.records.len())
    }

    /// Records one completion of `class`; refits the class when `refit_every`
    /// completions have arrived since its last fit. Returns whether it refitted. An
    /// abandoned request (grant 0) is ignored.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] (field `used`) when the completion used more tokens
    /// than its grant.
    pub fn observe(&self, class: K, completed: &Completed) -> Result<bool> {
        let c = completed.completion;
        if c.used > completed.grant {
            return Err(Error::invalid_parameter(
                "used",
                c.used,
                "exceeds the tokens the ticket granted",
            ));
        }
        if completed.grant == 0 {
            return Ok(false);
        }
        let window = self.window.load(std::sync::atomic::Ordering::Acquire);
        let due = {
            let mut classes = self.lock();
            let state = classes
                .entry(class.clone())
                .or_insert_with(|| ClassState::new(self.default_prior));
            if state.records.len() == self.capacity {
                state.records.pop_front();
            }
            state.records.push_back(Record {
                length: c.used as f64,
                // A correct answer cut off at the grant is still an answer at its length.
                finished: c.finished || c.correct == Some(true),
                correct: c.correct,
                window,
            });
            state.since_fit += 1;
            state.since_fit >= self.refit_every
        };
        if due {
            self.refit(&class, window);
        }
        Ok(due)
    }

    /// Closes a window: older completions weigh less from now on, and every class
    /// with new completions is refitted.
    pub fn end_window(&self) {
        let window = self
            .window
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        let due: Vec<K> = self
            .lock()
            .iter()
            .filter(|(_, s)| s.since_fit > 0)
            .map(|(k, _)| k.clone())
            .collect();
        for class in due {
            self.refit(&class, window);
        }
    }

    /// Refits one class on a copy of its sample, outside the lock.
    fn refit(&self, class: &K, window: u64) {
        let Some(state) = self.lock().get_mut(class).map(|s| {
            s.since_fit = 0;
            s.clone()
        }) else {
            return;
        };
        let curve = fit_class(&state, window, self.decay);
        if let Some(s) = self.lock().get_mut(class) {
            s.curve = curve;
        }
    }
}

/// The MAP curve of one class's sample at `window` (see the module docs).
fn fit_class(state: &ClassState, window: u64, decay: f64) -> ShiftedSurge {
    let prior = &state.prior;
    let weight = |r: &Record| decay.powf(window.saturating_sub(r.window) as f64);
    let sample: Vec<Granted> = state
        .records
        .iter()
        .map(|r| Granted {
            length: r.length,
            finished: r.finished,
            weight: weight(r),
        })
        .collect();
    let (ln_tau0, ln_w0) = (
        prior.curve.threshold().max(1.0).ln(),
        prior.curve.width().ln(),
    );
    let (vt, vw) = (
        2.0 * prior.threshold_spread.powi(2),
        2.0 * prior.width_spread.powi(2),
    );
    let objective = |theta: &[f64]| {
        let (tau, width) = (theta[0].exp(), theta[1].exp());
        ln_granted_lengths(&sample, tau, 1.0 / width)
            - (theta[0] - ln_tau0).powi(2) / vt
            - (theta[1] - ln_w0).powi(2) / vw
    };
    // Start inside the domain: below the shortest finished length.
    let shortest = sample
        .iter()
        .filter(|g| g.finished)
        .map(|g| g.length)
        .fold(f64::INFINITY, f64::min);
    let start_tau = state
        .curve
        .threshold()
        .max(1.0)
        .min(0.5 * shortest.max(2.0));
    let start = [start_tau.ln(), state.curve.width().ln()];
    let theta = maximise_nd(objective, &start, &[0.3, 0.3]);

    let (mut judged, mut correct) = (0.0, 0.0);
    for r in state.records.iter().filter(|r| r.finished) {
        if let Some(ok) = r.correct {
            let w = weight(r);
            judged += w;
            correct += if ok { w } else { 0.0 };
        }
    }
    let p0 = prior.curve.ceiling();
    let ceiling = if judged > 0.0 {
        (prior.ceiling_strength * p0 + correct) / (prior.ceiling_strength + judged)
    } else {
        p0
    };
    ShiftedSurge::new(theta[0].exp(), theta[1].exp(), ceiling).unwrap_or(state.curve)
}

#[cfg(test)]
mod tests;
