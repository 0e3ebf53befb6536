//! Learning each class's curve from its completions (`learn = true`, `--learn`).
//!
//! A proxy sees, for every granted request, how many completion tokens the engine
//! generated and whether it stopped by itself or hit its limit (`finish_reason =
//! "length"`): a length censored at the request's own grant, which is what the core's
//! [`CurveLearner`] fits (SPEC §7). The learner works on *completion* curves — the
//! thinking curve shifted right by the class's answer reserve, the curve admission
//! prices — so its prior for a class is the configured curve shifted by the reserve,
//! and what it learns is admitted as it is.
//!
//! Correctness arrives later, if at all, through `POST /v1/clear/feedback`. A completed
//! request therefore waits in a bounded queue until its feedback arrives or until the
//! next window has ended (so feedback has at least one whole window to arrive); then it
//! is learned from, with or without its correctness. Without feedback the learner
//! learns the curve of finishing within `b` tokens and keeps the class's configured
//! ceiling (see [`CurveLearner`]).
//!
//! Requests whose client gave its own curve (`x-clear-threshold`, `-width`,
//! `-ceiling`) are admitted on that curve and not learned from: their lengths say
//! nothing about the class's. Requests that failed, timed out or were cut off by their
//! client's disconnect are not learned from either.

use crate::classes::{Class, ClassTable};
use crate::metrics::Metrics;
use clear_alloc::online::{Completed, Completion, CurveLearner, CurvePrior};
use clear_alloc::ShiftedSurge;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// Completions waiting for feedback, at most; beyond it the oldest is learned from at
/// once, without its correctness (a bounded memory whatever the feedback rate).
pub const MAX_PENDING: usize = 65_536;

/// A completed request waiting for its feedback.
#[derive(Debug, Clone)]
struct Pending {
    class: String,
    completed: Completed,
    /// The window count when it completed.
    window: u64,
}

#[derive(Debug, Default)]
struct Queue {
    by_id: HashMap<String, Pending>,
    /// Request ids in completion order (an id may already have left `by_id`).
    order: VecDeque<String>,
    windows_ended: u64,
}

/// The per-class learner with its feedback queue.
#[derive(Debug)]
pub struct Learning {
    learner: CurveLearner<String>,
    classes: Vec<String>,
    queue: Mutex<Queue>,
}

/// What feedback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackOutcome {
    /// The request was waiting: learned from with its correctness.
    Learned,
    /// Unknown or already learned request id (too late, or never learnable).
    Recorded,
}

/// The completion curve of a class: its thinking curve shifted by its answer reserve.
pub fn completion_curve(class: &Class) -> Option<ShiftedSurge> {
    class
        .curve
        .with_threshold(class.curve.threshold() + class.answer_reserve as f64)
        .ok()
}

impl Learning {
    /// A learner whose prior for each class is its configured curve shifted by its
    /// answer reserve, with the core's default spreads (a factor e either way on
    /// threshold and width) and the ceiling worth 10 judged completions; `exploration`
    /// is the share of each class's requests admitted on an optimistic curve
    /// ([`CurveLearner::curve_to_admit`]; in `[0, 1)`, checked by the config).
    pub fn new(classes: &ClassTable, exploration: f64) -> Self {
        let mut builder = CurveLearner::builder().exploration(exploration);
        for class in classes.iter() {
            let prior = completion_curve(class)
                .and_then(|curve| CurvePrior::builder().curve(curve).build().ok());
            if let Some(prior) = prior {
                builder = builder.prior(class.name.clone(), prior);
            }
        }
        Learning {
            learner: builder
                .build()
                .expect("the learner options are valid (exploration checked by the config)"),
            classes: classes.names().map(str::to_string).collect(),
            queue: Mutex::new(Queue::default()),
        }
    }

    /// Sets the learned-curve gauges of every class.
    pub fn publish(&self, metrics: &Metrics) {
        for class in &self.classes {
            metrics.learned(class, &self.curve(class), self.sample_len(class));
        }
    }

    /// The class's current completion curve (its prior until it has learned).
    pub fn curve(&self, class: &str) -> ShiftedSurge {
        self.learner.curve(class)
    }

    /// The completion curve to admit the class's next request on: its current one,
    /// or for the exploration share an optimistic one.
    pub fn curve_to_admit(&self, class: &str) -> ShiftedSurge {
        self.learner.curve_to_admit(class)
    }

    /// Completions the class's sample holds.
    pub fn sample_len(&self, class: &str) -> usize {
        self.learner.sample_len(class)
    }

    /// A granted request of `class` completed: it waits for its feedback.
    pub fn completed(&self, request_id: String, class: String, completed: Completed) {
        let overflow = {
            let mut queue = lock(&self.queue);
            let window = queue.windows_ended;
            queue.order.push_back(request_id.clone());
            queue.by_id.insert(
                request_id,
                Pending {
                    class,
                    completed,
                    window,
                },
            );
            let mut overflow = Vec::new();
            while queue.by_id.len() > MAX_PENDING {
                let Some(oldest) = queue.order.pop_front() else {
                    break;
                };
                overflow.extend(queue.by_id.remove(&oldest));
            }
            overflow
        };
        self.learn(overflow);
    }

    /// Feedback on a request: when it is waiting, it is learned from now with its
    /// correctness.
    pub fn feedback(&self, request_id: &str, correct: bool) -> FeedbackOutcome {
        let Some(mut pending) = lock(&self.queue).by_id.remove(request_id) else {
            return FeedbackOutcome::Recorded;
        };
        pending.completed.completion.correct = Some(correct);
        self.learn(vec![pending]);
        FeedbackOutcome::Learned
    }

    /// A window ended: completions that have waited since before the previous window
    /// ended are learned from without feedback, then every class with new
    /// completions is refitted. Runs a fit per class (milliseconds): call it off the
    /// async runtime's workers.
    pub fn end_window(&self) {
        let due = {
            let mut queue = lock(&self.queue);
            queue.windows_ended += 1;
            let cutoff = queue.windows_ended.saturating_sub(1);
            let mut due = Vec::new();
            while let Some(id) = queue.order.front() {
                match queue.by_id.get(id) {
                    Some(p) if p.window >= cutoff => break,
                    Some(_) => {
                        let id = queue.order.pop_front().expect("front exists");
                        due.extend(queue.by_id.remove(&id));
                    }
                    // Learned already through feedback.
                    None => {
                        queue.order.pop_front();
                    }
                }
            }
            due
        };
        self.learn(due);
        self.learner.end_window();
    }

    fn learn(&self, completions: Vec<Pending>) {
        for p in completions {
            // `observe` refuses only `used > grant`, which admission clamps away.
            let _ = self.learner.observe(p.class, &p.completed);
        }
    }
}

/// How a granted request ended, for the learner: the tokens it used and whether the
/// engine stopped it at its limit.
pub fn completion(used: u64, hit_limit: bool) -> Completion {
    if hit_limit {
        Completion::cut_off(used)
    } else {
        Completion::finished(used)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classes::tests::table;

    fn done(grant: u64, used: u64, hit_limit: bool) -> Completed {
        Completed {
            credited: grant - used,
            grant,
            completion: completion(used, hit_limit),
        }
    }

    #[test]
    fn the_prior_is_the_class_curve_shifted_by_its_reserve() {
        let learning = Learning::new(&table(), 0.0);
        // Threshold 300, answer reserve 64.
        assert_eq!(learning.curve("math").threshold(), 364.0);
    }

    #[test]
    fn a_completion_waits_for_feedback_then_a_whole_window() {
        let learning = Learning::new(&table(), 0.0);
        learning.completed("a".into(), "math".into(), done(900, 300, false));
        learning.completed("b".into(), "math".into(), done(900, 320, false));
        assert_eq!(
            learning.feedback("a", true),
            FeedbackOutcome::Learned,
            "waiting"
        );
        assert_eq!(learning.feedback("a", true), FeedbackOutcome::Recorded);
        assert_eq!(learning.sample_len("math"), 1);
        // "b" completed in window 0: the end of window 0 leaves it a window more.
        learning.end_window();
        assert_eq!(learning.sample_len("math"), 1);
        learning.end_window();
        assert_eq!(learning.sample_len("math"), 2);
        assert_eq!(learning.feedback("b", false), FeedbackOutcome::Recorded);
    }

    #[test]
    fn the_queue_is_bounded() {
        let learning = Learning::new(&table(), 0.0);
        for i in 0..MAX_PENDING + 10 {
            learning.completed(i.to_string(), "math".into(), done(900, 300, false));
        }
        assert_eq!(lock(&learning.queue).by_id.len(), MAX_PENDING);
        assert_eq!(learning.sample_len("math"), 10);
    }
}
