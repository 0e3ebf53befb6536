use super::*;
use approx::assert_relative_eq;

fn prior(median: f64, spread: f64) -> ThresholdPrior {
    ThresholdPrior::builder()
        .median_threshold(median)
        .spread(spread)
        .width(100.0)
        .ceiling(0.8)
        .build()
        .unwrap()
}

fn calibration(spread: f64, sigma: f64) -> Calibration {
    Calibration::builder()
        .prior(prior(200.0, spread))
        .noise(PredictorNoise::new(sigma).unwrap())
        .build()
        .unwrap()
}

#[test]
fn shrinkage_matches_the_normal_normal_closed_form() {
    // σ₀ = 0.5, σ = 1: weight σ₀²/(σ₀² + σ²) = 0.25/1.25 = 0.2, s² = 1/(4 + 1) = 0.2.
    let c = calibration(0.5, 1.0);
    assert_relative_eq!(c.shrinkage_weight(), 0.2, max_relative = 1e-15);
    let p = c.posterior(1000.0).unwrap();
    let m = 0.2 * 1000f64.ln() + 0.8 * 200f64.ln();
    assert_relative_eq!(p.ln_mean(), m, max_relative = 1e-14);
    assert_relative_eq!(p.ln_sd(), 0.2f64.sqrt(), max_relative = 1e-14);
    assert_relative_eq!(p.shrunk().threshold(), m.exp(), max_relative = 1e-12);
    assert_eq!(p.shrunk().width(), 100.0);
    assert_eq!(p.shrunk().ceiling(), 0.8);
}

#[test]
fn an_exact_predictor_is_believed_and_a_point_prior_is_not_moved() {
    let exact = calibration(0.5, 0.0).posterior(777.0).unwrap();
    assert_relative_eq!(exact.shrunk().threshold(), 777.0, max_relative = 1e-12);
    assert_eq!(exact.ln_sd(), 0.0);
    let point = calibration(0.0, 0.7).posterior(777.0).unwrap();
    assert_relative_eq!(point.shrunk().threshold(), 200.0, max_relative = 1e-12);
    assert_eq!(point.ln_sd(), 0.0);
}

#[test]
fn a_predictor_bias_is_removed_before_shrinking() {
    // Every prediction twice the fitted threshold: bias ln 2, and a spread of 0.
    let pairs = [(200.0, 100.0), (600.0, 300.0), (1000.0, 500.0)];
    let noise = PredictorNoise::estimate(&pairs).unwrap();
    assert_relative_eq!(noise.bias(), 2f64.ln(), max_relative = 1e-12);
    assert!(noise.sigma() < 1e-12);
    let c = Calibration::builder()
        .prior(prior(200.0, 0.5))
        .noise(noise)
        .build()
        .unwrap();
    assert_relative_eq!(
        c.posterior(640.0).unwrap().shrunk().threshold(),
        320.0,
        max_relative = 1e-9
    );
}

#[test]
fn noise_is_the_sample_deviation_of_the_log_errors() {
    // Log errors +0.2, −0.2, +0.4, −0.4: mean 0, variance (0.04+0.04+0.16+0.16)/3.
    let pairs: Vec<(f64, f64)> = [0.2f64, -0.2, 0.4, -0.4]
        .iter()
        .map(|e| (300.0 * e.exp(), 300.0))
        .collect();
    let noise = PredictorNoise::estimate(&pairs).unwrap();
    assert!(noise.bias().abs() < 1e-12);
    assert_relative_eq!(noise.sigma(), (0.4f64 / 3.0).sqrt(), max_relative = 1e-12);
}

#[test]
fn gauss_hermite_small_rules_are_the_textbook_ones() {
    let (z, w) = gauss_hermite(1).unwrap();
    assert_eq!((z, w), (vec![0.0], vec![1.0]));
    // Two nodes: ±1 with weight 1/2; three: 0 (2/3) and ±√3 (1/6).
    let (z, w) = gauss_hermite(2).unwrap();
    assert_relative_eq!(z[0], -1.0, max_relative = 1e-13);
    assert_relative_eq!(z[1], 1.0, max_relative = 1e-13);
    assert_relative_eq!(w[0], 0.5, max_relative = 1e-13);
    let (z, w) = gauss_hermite(3).unwrap();
    assert_relative_eq!(z[2], 3f64.sqrt(), max_relative = 1e-13);
    assert_relative_eq!(w[1], 2.0 / 3.0, max_relative = 1e-13);
    assert_relative_eq!(w[2], 1.0 / 6.0, max_relative = 1e-13);
}

#[test]
fn gauss_hermite_integrates_normal_moments_exactly_to_degree_2n_minus_1() {
    for n in [4, 9, 20, 40] {
        let (z, w) = gauss_hermite(n).unwrap();
        assert!(z.windows(2).all(|p| p[0] < p[1]), "nodes ascending");
        let moment = |k: i32| z.iter().zip(&w).map(|(z, w)| w * z.powi(k)).sum::<f64>();
        // E[Z^(2j)] = (2j − 1)!!, odd moments 0.
        let mut double_factorial = 1.0;
        for j in 0..n.min(10) as i32 {
            if j > 0 {
                double_factorial *= (2 * j - 1) as f64;
            }
            assert_relative_eq!(moment(2 * j), double_factorial, max_relative = 1e-9);
            assert!(moment(2 * j + 1).abs() < 1e-9 * double_factorial.max(1.0));
        }
    }
}

#[test]
fn the_mixture_reproduces_the_log_normal_mean_of_the_threshold() {
    // E[τ | τ̂] = e^(m + s²/2) for a log-normal posterior.
    let p = calibration(0.5, 1.0).posterior(1000.0).unwrap();
    let components = p.components(20).unwrap();
    let weight: f64 = components.iter().map(|(w, _)| w).sum();
    let mean: f64 = components.iter().map(|(w, c)| w * c.threshold()).sum();
    assert_relative_eq!(weight, 1.0, max_relative = 1e-12);
    assert_relative_eq!(
        mean,
        (p.ln_mean() + p.ln_sd().powi(2) / 2.0).exp(),
        max_relative = 1e-10
    );
    // Odd node count: the middle component is the shrunk curve.
    let nine = p.components(9).unwrap();
    assert_relative_eq!(
        nine[4].1.threshold(),
        p.shrunk().threshold(),
        max_relative = 1e-12
    );
}

#[test]
fn bad_input_is_an_error_naming_the_field() {
    let missing = ThresholdPrior::builder().median_threshold(100.0).build();
    assert!(matches!(
        missing,
        Err(Error::MissingField {
            field: "spread",
            ..
        })
    ));
    let nan = ThresholdPrior::builder()
        .median_threshold(100.0)
        .spread(f64::NAN)
        .width(10.0)
        .ceiling(0.5)
        .build();
    assert!(matches!(
        nan,
        Err(Error::InvalidOption {
            option: "spread",
            ..
        })
    ));
    let zero_width = ThresholdPrior::builder()
        .median_threshold(100.0)
        .spread(0.5)
        .width(0.0)
        .ceiling(0.5)
        .build();
    assert!(matches!(
        zero_width,
        Err(Error::InvalidOption {
            option: "width",
            ..
        })
    ));
    assert!(matches!(
        PredictorNoise::new(-1.0),
        Err(Error::InvalidParameter { field: "sigma", .. })
    ));
    assert!(matches!(
        calibration(0.5, 1.0).posterior(f64::INFINITY),
        Err(Error::InvalidParameter {
            field: "predicted_threshold",
            ..
        })
    ));
    assert!(matches!(
        PredictorNoise::estimate(&[(1.0, 1.0), (f64::NAN, 2.0)]),
        Err(Error::InvalidQuery {
            field: "predicted",
            ..
        })
    ));
    assert!(matches!(
        PredictorNoise::estimate(&[(1.0, 1.0)]),
        Err(Error::InsufficientData { .. })
    ));
    assert!(matches!(
        gauss_hermite(0),
        Err(Error::InvalidParameter { field: "nodes", .. })
    ));
    assert!(matches!(
        Calibration::builder().prior(prior(1.0, 1.0)).build(),
        Err(Error::MissingField { field: "noise", .. })
    ));
}

#[test]
fn a_closure_is_a_predictor() {
    let c = calibration(0.5, 0.0);
    let predictor = |prompt: &str| 10.0 * prompt.len() as f64;
    let p = c.posterior_for(&predictor, "twenty characters...").unwrap();
    assert_relative_eq!(p.shrunk().threshold(), 200.0, max_relative = 1e-12);
}

#[cfg(feature = "fit")]
#[test]
fn a_prior_from_fits_takes_log_moments_and_the_mean_ceiling() {
    use crate::fit::{FitMethod, FittedCurve, RolloutCounts};
    let fitted = |tau: f64, ceiling: f64, insolvent: bool| FittedCurve {
        id: String::new(),
        curve: ShiftedSurge::new(tau, 100.0, ceiling).unwrap(),
        insolvent,
        log_likelihood: 0.0,
        counts: RolloutCounts::default(),
        ks_distance: None,
        method: FitMethod::SharedWidth,
    };
    let fits = [
        fitted(100.0, 0.9, false),
        fitted(400.0, 0.6, false),
        fitted(5000.0, 0.0, true),
    ];
    let prior = ThresholdPrior::from_fits(&fits).unwrap();
    // ln τ: ln 100, ln 400 → median 200, sd = ln 4 / √2.
    assert_relative_eq!(prior.median_threshold(), 200.0, max_relative = 1e-12);
    assert_relative_eq!(
        prior.spread(),
        4f64.ln() / 2f64.sqrt(),
        max_relative = 1e-12
    );
    assert_relative_eq!(prior.ceiling(), 0.5, max_relative = 1e-12);
    assert_relative_eq!(prior.width(), 100.0, max_relative = 1e-12);
    assert!(matches!(
        ThresholdPrior::from_fits(&fits[1..]),
        Err(Error::InsufficientData { .. })
    ));
}

#[test]
fn the_mixture_curve_is_the_weighted_sum_of_its_components() {
    use crate::Curve;
    let p = calibration(0.5, 1.0).posterior(400.0).unwrap();
    let mixture = p.mixture(9).unwrap();
    for b in [50.0, 200.0, 350.0, 800.0, 3000.0] {
        let direct: f64 = p
            .components(9)
            .unwrap()
            .iter()
            .map(|(w, c)| w * c.utility(b))
            .sum();
        assert_relative_eq!(mixture.utility(b), direct, max_relative = 1e-12);
    }
}
