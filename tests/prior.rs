//! Calibrated thresholds through the public API: a prior fitted from rollouts, the
//! noise of a predictor from held-out pairs, posterior curves into the allocator; and
//! the posterior's invariants as properties.

mod fit_support;

use clear_alloc::fit::RolloutFit;
use clear_alloc::prior::{gauss_hermite, Calibration, PredictorNoise, ThresholdPrior};
use clear_alloc::{Allocator, Curve, Query, ShiftedSurge};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

#[test]
fn rollouts_to_prior_to_posterior_to_allocation() {
    // 40 queries of one class: thresholds log-normal around 200 (σ₀ = 0.4), width 120.
    let mut rng = StdRng::seed_from_u64(1);
    let truths: Vec<ShiftedSurge> = (0..40)
        .map(|_| {
            let z: f64 = rng.sample(StandardNormal);
            ShiftedSurge::new(200.0 * (0.4 * z).exp(), 120.0, 0.8).unwrap()
        })
        .collect();
    let fits: Vec<_> = truths
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let rollouts = fit_support::draw(t, 300, None, i as u64);
            RolloutFit::default()
                .fit(&format!("q{i}"), &rollouts)
                .unwrap()
        })
        .collect();
    let prior = ThresholdPrior::from_fits(&fits).unwrap();
    assert!(
        (prior.median_threshold() / 200.0 - 1.0).abs() < 0.2,
        "{prior:?}"
    );
    assert!((prior.spread() - 0.4).abs() < 0.15, "{prior:?}");
    assert!((prior.width() / 120.0 - 1.0).abs() < 0.15, "{prior:?}");
    assert!((prior.ceiling() - 0.8).abs() < 0.05, "{prior:?}");

    // A predictor with log error σ = 0.7 on the held-out fitted thresholds.
    let pairs: Vec<(f64, f64)> = fits
        .iter()
        .map(|f| {
            let z: f64 = rng.sample(StandardNormal);
            (f.curve.threshold() * (0.7 * z).exp(), f.curve.threshold())
        })
        .collect();
    let noise = PredictorNoise::estimate(&pairs).unwrap();
    assert!((noise.sigma() - 0.7).abs() < 0.2, "{noise:?}");

    let calibration = Calibration::builder()
        .prior(prior)
        .noise(noise)
        .build()
        .unwrap();
    let predictor = |i: &usize| pairs[*i].0;
    let posteriors: Vec<_> = (0..pairs.len())
        .map(|i| calibration.posterior_for(&predictor, &i).unwrap())
        .collect();
    let shrunk: Vec<Query> = posteriors
        .iter()
        .map(|p| Query::new(p.shrunk()).with_cap(2048))
        .collect();
    let mixture: Vec<_> = posteriors
        .iter()
        .map(|p| Query::new(p.mixture(9).unwrap()).with_cap(2048))
        .collect();
    let allocator = Allocator::default();
    for budget in [3_000, 8_000, 20_000] {
        assert!(allocator.allocate(&shrunk, budget).unwrap().total_tokens() <= budget);
        assert!(allocator.allocate(&mixture, budget).unwrap().total_tokens() <= budget);
    }
}

proptest! {
    #[test]
    fn the_posterior_median_lies_between_prior_and_prediction(
        median in 1.0f64..5_000.0,
        spread in 0.0f64..3.0,
        sigma in 0.0f64..3.0,
        predicted in 1.0f64..20_000.0,
    ) {
        let prior = ThresholdPrior::builder()
            .median_threshold(median)
            .spread(spread)
            .width(100.0)
            .ceiling(0.7)
            .build()
            .unwrap();
        let c = Calibration::builder()
            .prior(prior)
            .noise(PredictorNoise::new(sigma).unwrap())
            .build()
            .unwrap();
        let p = c.posterior(predicted).unwrap();
        let (lo, hi) = (median.ln().min(predicted.ln()), median.ln().max(predicted.ln()));
        prop_assert!(p.ln_mean() >= lo - 1e-9 && p.ln_mean() <= hi + 1e-9);
        // The posterior is never wider than either source of information.
        prop_assert!(p.ln_sd() <= spread.min(sigma) + 1e-12);
        let parts = p.components(7).unwrap();
        let total: f64 = parts.iter().map(|(w, _)| w).sum();
        prop_assert!((total - 1.0).abs() < 1e-12);
        // A mixture's utility lies between its components' utilities.
        let mixture = p.mixture(7).unwrap();
        for b in [0.0, 50.0, 400.0, 3_000.0] {
            let us: Vec<f64> = parts.iter().map(|(_, c)| c.utility(b)).collect();
            let (min, max) = us.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, z), &u| (a.min(u), z.max(u)));
            let u = mixture.utility(b);
            prop_assert!(u >= min - 1e-12 && u <= max + 1e-12);
        }
    }

    #[test]
    fn gauss_hermite_weights_are_a_symmetric_distribution(n in 1usize..=64) {
        let (z, w) = gauss_hermite(n).unwrap();
        prop_assert!(w.iter().all(|&w| w >= 0.0));
        prop_assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for i in 0..n {
            prop_assert!((z[i] + z[n - 1 - i]).abs() < 1e-9 * z[i].abs().max(1.0));
        }
        // E[Z²] = 1 for every n ≥ 2.
        if n >= 2 {
            let second: f64 = z.iter().zip(&w).map(|(z, w)| w * z * z).sum();
            prop_assert!((second - 1.0).abs() < 1e-9);
        }
    }
}
