//! Property tests: arbitrary rollout sets never panic and give a valid curve or a
//! typed error.

use clear_alloc::fit::{
    fit_sweep, EmpiricalCurve, FitMethod, QueryRollouts, Rollout, RolloutFit, SharedCeiling,
    SweepCeiling,
};
use clear_alloc::Error;
use proptest::prelude::*;

#[macro_use]
mod soak_support;

/// Rollouts with lengths from 0 to extremes, any mix of outcomes (including all
/// failures, all truncated, ties, and empty sets).
fn rollouts() -> impl Strategy<Value = Vec<Rollout>> {
    let tokens = prop_oneof![0u64..4, 0u64..5_000, Just(u64::MAX / 4), 1u64..u64::MAX / 2];
    prop::collection::vec(
        (tokens, any::<bool>(), any::<bool>()).prop_map(|(tokens, correct, truncated)| Rollout {
            tokens,
            correct,
            truncated,
        }),
        0..40,
    )
}

fn expected_error(err: &Error) -> bool {
    matches!(
        err,
        Error::InsufficientData { .. }
            | Error::InvalidQuery { .. }
            | Error::InvalidParameter { .. }
    )
}

proptest! {
    // A fixed seed keeps CI deterministic.
    #![proptest_config(soak_support::config(200, 0xc1ea0002))]

    #[test]
    fn single_fits_are_valid_curves_or_typed_errors(data in rollouts(), censoring in any::<bool>()) {
        let options = RolloutFit::builder().censoring(censoring).min_correct(2).build().unwrap();
        match options.fit("q", &data) {
            Ok(fit) => {
                let c = fit.curve;
                prop_assert!(c.threshold().is_finite() && c.threshold() >= 0.0);
                prop_assert!(c.width().is_finite() && c.width() > 0.0);
                prop_assert!((0.0..=1.0).contains(&c.ceiling()));
                prop_assert_eq!(fit.insolvent, fit.counts.correct == 0);
                prop_assert_eq!(fit.counts.rollouts, data.len());
                prop_assert!(!fit.log_likelihood.is_nan());
                if let Some(ks) = fit.ks_distance {
                    prop_assert!((0.0..=1.0).contains(&ks));
                }
                // A fitted threshold sits at or below every correct length.
                if fit.method != FitMethod::Insolvent {
                    let shortest = data.iter().filter(|r| r.correct).map(|r| r.tokens).min().unwrap();
                    prop_assert!(c.threshold() <= shortest as f64);
                }
            }
            Err(err) => prop_assert!(expected_error(&err), "{err:?}"),
        }
    }

    #[test]
    fn batch_fits_are_valid_or_typed_errors(sets in prop::collection::vec(rollouts(), 0..6)) {
        let queries: Vec<QueryRollouts> = sets
            .into_iter()
            .enumerate()
            .map(|(i, rollouts)| QueryRollouts { id: format!("q{i}"), rollouts })
            .collect();
        let options = RolloutFit::default();
        match options.fit_many(&queries) {
            Ok(fits) => prop_assert_eq!(fits.len(), queries.len()),
            Err(err) => prop_assert!(expected_error(&err), "{err:?}"),
        }
        if let Err(err) = options.fit_shared(&queries, SharedCeiling::Shared) {
            prop_assert!(expected_error(&err), "{err:?}");
        }
    }

    #[test]
    fn empirical_curve_is_a_nondecreasing_share(data in rollouts(), a in 0.0f64..1e4, b in 0.0f64..1e4) {
        match EmpiricalCurve::from_rollouts(&data) {
            Ok(curve) => {
                let (lo, hi) = (a.min(b), a.max(b));
                prop_assert!(curve.utility(lo) <= curve.utility(hi));
                prop_assert!(curve.utility(hi) <= curve.ceiling());
            }
            Err(err) => prop_assert!(data.is_empty() && expected_error(&err)),
        }
    }

    #[test]
    fn sweeps_never_panic(points in prop::collection::vec((-10.0f64..1e5, -0.1f64..1.1), 0..10)) {
        for ceiling in [SweepCeiling::Normalised, SweepCeiling::Free, SweepCeiling::Fixed(0.7)] {
            match fit_sweep(&points, ceiling) {
                Ok(fit) => prop_assert!(fit.rmse.is_finite() && fit.max_error <= 1.0),
                Err(err) => prop_assert!(expected_error(&err), "{err:?}"),
            }
        }
    }
}

#[test]
fn nan_and_infinite_sweep_points_are_typed_errors() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(fit_sweep(&[(bad, 0.5), (1.0, 0.2), (3.0, 0.4)], SweepCeiling::Free).is_err());
        assert!(fit_sweep(&[(5.0, bad), (1.0, 0.2), (3.0, 0.4)], SweepCeiling::Free).is_err());
    }
}

soak_properties!(
    single_fits_are_valid_curves_or_typed_errors,
    batch_fits_are_valid_or_typed_errors,
    empirical_curve_is_a_nondecreasing_share,
    sweeps_never_panic,
);
