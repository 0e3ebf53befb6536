use super::*;
use crate::online::Completion;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};

fn truth() -> ShiftedSurge {
    ShiftedSurge::new(150.0, 100.0, 0.8).unwrap()
}

/// `n` completions of `truth()` under grants uniform in [100, 800], as a server sees
/// them.
fn completions(n: usize, with_correct: bool, seed: u64) -> Vec<Completed> {
    let t = truth();
    let mut rng = StdRng::seed_from_u64(seed);
    let gamma = Gamma::new(2.0, t.width()).unwrap();
    (0..n)
        .map(|_| {
            let grant: u64 = rng.random_range(100..=800);
            let length = (t.threshold() + gamma.sample(&mut rng)).ceil() as u64;
            let correct = rng.random::<f64>() < t.ceiling();
            let completion = if length <= grant {
                let c = Completion::finished(length);
                if with_correct {
                    c.with_correct(correct)
                } else {
                    c
                }
            } else {
                Completion::cut_off(grant)
            };
            Completed {
                credited: 0,
                grant,
                completion,
            }
        })
        .collect()
}

fn off_prior() -> CurvePrior {
    // Threshold off by 2×, width by 1.5×, ceiling by 0.2.
    CurvePrior::builder()
        .curve(ShiftedSurge::new(300.0, 150.0, 0.6).unwrap())
        .build()
        .unwrap()
}

fn learn(with_correct: bool) -> ShiftedSurge {
    let learner = CurveLearner::builder()
        .prior("c", off_prior())
        .refit_every(500)
        .decay(1.0)
        .build()
        .unwrap();
    for c in completions(1_500, with_correct, 3) {
        learner.observe("c", &c).unwrap();
    }
    learner.end_window();
    learner.curve(&"c")
}

#[test]
fn a_wrong_prior_is_corrected_by_censored_completions() {
    let learned = learn(true);
    let t = truth();
    assert!(
        (learned.threshold() / t.threshold() - 1.0).abs() < 0.1,
        "{learned:?}"
    );
    assert!(
        (learned.width() / t.width() - 1.0).abs() < 0.15,
        "{learned:?}"
    );
    assert!(
        (learned.ceiling() - t.ceiling()).abs() < 0.04,
        "{learned:?}"
    );
}

#[test]
fn without_correctness_the_shape_is_learned_and_the_prior_ceiling_kept() {
    let learned = learn(false);
    let t = truth();
    assert!(
        (learned.threshold() / t.threshold() - 1.0).abs() < 0.1,
        "{learned:?}"
    );
    assert!(
        (learned.width() / t.width() - 1.0).abs() < 0.15,
        "{learned:?}"
    );
    assert_eq!(learned.ceiling(), 0.6);
}

#[test]
fn ignoring_censoring_would_bias_the_width_down() {
    // The same completions with the cut-off ones dropped: the survivors are the short
    // ones, so the width fitted on them alone is too small — the reason for the
    // survival terms.
    let finished_only: Vec<Completed> = completions(1_500, true, 3)
        .into_iter()
        .filter(|c| c.completion.finished)
        .collect();
    let learner = CurveLearner::builder()
        .prior("c", off_prior())
        .refit_every(10_000)
        .build()
        .unwrap();
    for c in &finished_only {
        learner.observe("c", c).unwrap();
    }
    learner.end_window();
    assert!(learner.curve(&"c").width() < 0.85 * truth().width());
}

#[test]
fn the_sample_is_bounded_and_abandoned_requests_teach_nothing() {
    let learner = CurveLearner::builder()
        .capacity(100)
        .refit_every(40)
        .build()
        .unwrap();
    let mut refits = 0;
    for c in completions(250, true, 1) {
        refits += usize::from(learner.observe(1u8, &c).unwrap());
    }
    assert_eq!(learner.sample_len(&1), 100);
    assert_eq!(refits, 6);
    let abandoned = Completed {
        credited: 0,
        grant: 0,
        completion: Completion::cut_off(0),
    };
    assert!(!learner.observe(2u8, &abandoned).unwrap());
    assert_eq!(learner.sample_len(&2), 0);
    assert_eq!(learner.curve(&2), CurvePrior::weak().curve());
}

#[test]
fn old_completions_fade_back_toward_the_prior() {
    let learner = CurveLearner::builder()
        .prior("c", off_prior())
        .decay(0.5)
        .refit_every(10_000)
        .build()
        .unwrap();
    for c in completions(300, true, 5) {
        learner.observe("c", &c).unwrap();
    }
    learner.end_window();
    let fresh = learner.curve(&"c").threshold();
    // Refits happen only for classes with new completions; add one per window.
    let one = completions(1, true, 9)[0];
    for _ in 0..30 {
        learner.observe("c", &one).unwrap();
        learner.end_window();
    }
    let faded = learner.curve(&"c").threshold();
    assert!(fresh < 200.0, "fresh fit {fresh}");
    assert!(
        (faded - 300.0).abs() < (fresh - 300.0).abs(),
        "fresh {fresh}, faded {faded}"
    );
}

#[test]
fn bad_options_and_overruns_are_errors_naming_the_field() {
    let build = |b: CurveLearnerBuilder<u8>| b.build().unwrap_err();
    assert!(matches!(
        build(CurveLearner::builder().capacity(1)),
        Error::InvalidOption {
            option: "capacity",
            ..
        }
    ));
    assert!(matches!(
        build(CurveLearner::builder().decay(f64::NAN)),
        Error::InvalidOption {
            option: "decay",
            ..
        }
    ));
    assert!(matches!(
        build(CurveLearner::builder().refit_every(0)),
        Error::InvalidOption {
            option: "refit_every",
            ..
        }
    ));
    assert!(matches!(
        CurvePrior::builder().threshold_spread(0.0).build(),
        Err(Error::InvalidOption {
            option: "threshold_spread",
            ..
        })
    ));
    let learner = CurveLearner::<u8>::builder().build().unwrap();
    let overrun = Completed {
        credited: 0,
        grant: 10,
        completion: Completion::finished(11),
    };
    assert!(matches!(
        learner.observe(0, &overrun),
        Err(Error::InvalidParameter { field: "used", .. })
    ));
}

/// A class whose prior threshold is 4× too high, admitted at a fixed price at which
/// the prior curve is abandoned (its best average utility per token, about
/// 6.7e-4, is below the price) while the true curve is funded (about 1.4e-3):
/// 20 windows of 100 requests, each granted its admission curve's best response,
/// each completion drawn from the truth.
fn explore(share: f64) -> ShiftedSurge {
    let prior = CurvePrior::builder()
        .curve(ShiftedSurge::new(600.0, 100.0, 0.8).unwrap())
        .threshold_spread(1.0)
        .build()
        .unwrap();
    let learner = CurveLearner::builder()
        .prior("c", prior)
        .exploration(share)
        .build()
        .unwrap();
    let (price, t) = (1e-3, truth());
    assert_eq!(prior.curve().best_response(price, 4096.0).unwrap(), 0.0);
    assert!(t.best_response(price, 4096.0).unwrap() > 0.0);
    let mut rng = StdRng::seed_from_u64(11);
    let gamma = Gamma::new(2.0, t.width()).unwrap();
    for _ in 0..20 {
        for _ in 0..100 {
            let curve = learner.curve_to_admit(&"c");
            let grant = curve.best_response(price, 4096.0).unwrap().floor() as u64;
            let length = (t.threshold() + gamma.sample(&mut rng)).ceil() as u64;
            let completion = if length <= grant {
                Completion::finished(length)
            } else {
                Completion::cut_off(grant)
            };
            let completed = Completed {
                credited: 0,
                grant,
                completion,
            };
            learner.observe("c", &completed).unwrap();
        }
        learner.end_window();
    }
    learner.curve(&"c")
}

#[test]
fn without_exploration_an_abandoned_class_never_learns() {
    assert_eq!(explore(0.0).threshold(), 600.0);
}

#[test]
fn exploration_finds_the_threshold_of_an_abandoned_class() {
    let learned = explore(0.1);
    // The truth is 150; the prior said 600.
    assert!(
        (100.0..250.0).contains(&learned.threshold()),
        "learned {learned:?}"
    );
    // And the learned curve is now funded at the price, so every request teaches.
    assert!(learned.best_response(1e-3, 4096.0).unwrap() > 0.0);
}

#[test]
fn exploration_must_be_a_share_below_one() {
    for bad in [-0.1, 1.0, f64::NAN] {
        let err = CurveLearner::<u8>::builder()
            .exploration(bad)
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidOption {
                option: "exploration",
                ..
            }
        ));
    }
}

#[test]
fn string_classes_are_looked_up_by_str_and_a_new_class_keeps_its_count() {
    let prior = CurvePrior::builder()
        .curve(ShiftedSurge::new(600.0, 100.0, 0.8).unwrap())
        .threshold_spread(1.0)
        .build()
        .unwrap();
    let learner = CurveLearner::<String>::builder()
        .default_prior(prior)
        .exploration(0.5)
        .build()
        .unwrap();
    assert_eq!(learner.curve("new"), prior.curve());
    assert_eq!(learner.sample_len("new"), 0);
    // Every second admission of a class is optimistic; the count lives in the class's
    // state, so it only turns over if the first admission created that state and the
    // later ones found it.
    let thresholds: Vec<f64> = (0..4)
        .map(|_| learner.curve_to_admit("new").threshold())
        .collect();
    let optimistic = 600.0 * (-2.0f64).exp();
    assert_eq!(thresholds[0], 600.0);
    assert!((thresholds[1] - optimistic).abs() < 1e-9, "{thresholds:?}");
    assert_eq!(thresholds[2], 600.0);
    assert!((thresholds[3] - optimistic).abs() < 1e-9, "{thresholds:?}");
}
