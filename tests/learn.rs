//! The online curve learner through the public API: whatever completions it is fed,
//! its curves stay valid, and a learner fed through `complete_with` follows the
//! grants the allocator made.

use clear_alloc::online::{Completed, Completion, CurveLearner, CurvePrior, OnlineAllocator};
use clear_alloc::{Query, ShiftedSurge};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn learned_curves_stay_valid_curves(
        events in prop::collection::vec((1u64..5_000, 0u64..5_000, any::<bool>(), prop::option::of(any::<bool>())), 1..120),
        decay in 0.05f64..=1.0,
    ) {
        let learner = CurveLearner::builder()
            .capacity(64)
            .decay(decay)
            .refit_every(16)
            .build()
            .unwrap();
        for (i, (grant, used, finished, correct)) in events.into_iter().enumerate() {
            let used = used.min(grant);
            let completion = Completion { used, finished, correct };
            learner.observe(i % 2, &Completed { credited: 0, grant, completion }).unwrap();
            if i % 30 == 29 {
                learner.end_window();
            }
        }
        learner.end_window();
        for class in [0, 1] {
            let c = learner.curve(&class);
            prop_assert!(c.threshold().is_finite() && c.threshold() >= 0.0, "{c:?}");
            prop_assert!(c.width().is_finite() && c.width() > 0.0, "{c:?}");
            prop_assert!((0.0..=1.0).contains(&c.ceiling()), "{c:?}");
            prop_assert!(learner.sample_len(&class) <= 64);
        }
    }
}

#[test]
fn a_learner_fed_by_complete_with_moves_from_its_prior_toward_the_lengths_it_sees() {
    let prior = CurvePrior::builder()
        .curve(ShiftedSurge::new(600.0, 300.0, 0.5).unwrap())
        .build()
        .unwrap();
    let learner = CurveLearner::builder()
        .prior("route", prior)
        .refit_every(100)
        .build()
        .unwrap();
    let online = OnlineAllocator::builder()
        .tokens_per_window(1_000_000)
        .build()
        .unwrap();
    // Every completion finishes between 150 and 250 tokens.
    for i in 0..300u64 {
        let query = Query::new(learner.curve(&"route")).with_cap(2_000);
        let ticket = online.admit(&query).unwrap();
        let length = 150 + (i * 7919) % 101;
        assert!(length <= ticket.tokens());
        let done = online
            .complete_with(ticket, Completion::finished(length))
            .unwrap();
        learner.observe("route", &done).unwrap();
    }
    let learned = learner.curve(&"route");
    assert!(learned.threshold() < 150.0, "{learned:?}");
    assert!(learned.mean_correct_length() < 260.0, "{learned:?}");
    assert_eq!(learned.ceiling(), 0.5, "no feedback: the prior's ceiling");
}
