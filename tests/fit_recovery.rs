//! Parameter recovery on seeded synthetic rollouts drawn from known curves.
//!
//! Target tolerances: threshold within 5 %, width within 10 %, in 95 % of trials. What a
//! fit can achieve is bounded by information: with `k` correct lengths the width's
//! relative standard error is at least `1/√(2k)` even with τ known (Fisher information
//! of a Gamma(2) rate, `2k/β²`), 5.6 % for the `k ≈ 160` correct rollouts of 200 at
//! ceiling 0.8 — so "width within 10 %" is a 1.8σ band there, which no unbiased
//! estimator meets in 95 % of trials (the normal rate is 93 %). The tests check the
//! target tolerances where the information allows it, and efficiency where it does
//! not.

mod fit_support;

use clear_alloc::fit::{FitMethod, QueryRollouts, RolloutFit, SharedCeiling};
use clear_alloc::ShiftedSurge;

const TRIALS: u64 = 100;

struct Recovery {
    threshold_within_5pct: u64,
    width_within_10pct: u64,
    both: u64,
    width_errors: Vec<f64>,
}

fn recovery(truth: &ShiftedSurge, rollouts: usize) -> Recovery {
    let mut r = Recovery {
        threshold_within_5pct: 0,
        width_within_10pct: 0,
        both: 0,
        width_errors: Vec::new(),
    };
    for seed in 0..TRIALS {
        let data = fit_support::draw(truth, rollouts, None, seed);
        let fit = RolloutFit::default().fit("q", &data).unwrap();
        assert_eq!(fit.method, FitMethod::ClosedForm);
        let t_err = (fit.curve.threshold() - truth.threshold()) / truth.threshold();
        let w_err = (fit.curve.width() - truth.width()) / truth.width();
        let (t_ok, w_ok) = (t_err.abs() <= 0.05, w_err.abs() <= 0.10);
        r.threshold_within_5pct += t_ok as u64;
        r.width_within_10pct += w_ok as u64;
        r.both += (t_ok && w_ok) as u64;
        r.width_errors.push(w_err);
    }
    eprintln!(
        "{rollouts} rollouts: threshold within 5 % {}/{TRIALS}, width within 10 % {}/{TRIALS}, both {}/{TRIALS}",
        r.threshold_within_5pct, r.width_within_10pct, r.both
    );
    r
}

#[test]
fn threshold_within_5pct_in_95_of_100_trials_at_200_rollouts() {
    let truth = ShiftedSurge::new(300.0, 120.0, 0.8).unwrap();
    let r = recovery(&truth, 200);
    assert!(
        r.threshold_within_5pct >= 95,
        "{}/100",
        r.threshold_within_5pct
    );
    // The width at the information limit (see the module note): at least 80 of 100
    // (the normal rate at 1.8σ is 93; 80 leaves room for binomial noise, sd ≈ 3).
    assert!(r.width_within_10pct >= 80, "{}/100", r.width_within_10pct);
}

#[test]
fn width_error_at_200_rollouts_is_near_the_cramer_rao_bound() {
    let truth = ShiftedSurge::new(300.0, 120.0, 0.8).unwrap();
    let errors = recovery(&truth, 200).width_errors;
    let n = errors.len() as f64;
    let mean = errors.iter().sum::<f64>() / n;
    let sd = (errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let bound = 1.0 / (2.0 * 160.0f64).sqrt();
    eprintln!("width: bias {mean:.4}, sd {sd:.4}, Cramér–Rao (τ known) {bound:.4}");
    assert!(mean.abs() < 0.02, "width bias {mean}");
    assert!(sd < 1.3 * bound, "width sd {sd} vs Cramér–Rao {bound}");
}

#[test]
fn both_tolerances_in_95_of_100_trials_at_400_rollouts() {
    let truth = ShiftedSurge::new(300.0, 120.0, 0.8).unwrap();
    let r = recovery(&truth, 400);
    assert!(r.both >= 95, "{}/100", r.both);
}

#[test]
fn censoring_keeps_the_ceiling_and_width_unbiased_where_ignoring_it_does_not() {
    // Cap 600 below the mean correct length 200 + 2·300 = 800: only
    // P(2, 400/300) = 38 % of correct solutions finish within it.
    let truth = ShiftedSurge::new(200.0, 300.0, 0.8).unwrap();
    let cap = 600;
    let fit = |censoring: bool, rollouts: usize, seeds: u64| {
        let options = RolloutFit::builder()
            .censoring(censoring)
            .sampling_cap(cap)
            .build()
            .unwrap();
        let (mut ceilings, mut widths) = (Vec::new(), Vec::new());
        for seed in 0..seeds {
            let data = fit_support::draw(&truth, rollouts, Some(cap), seed);
            // A rare sample leaves the censored width unpinned; that is an error, not a fit.
            if let Ok(f) = options.fit("q", &data) {
                ceilings.push(f.curve.ceiling());
                widths.push(f.curve.width());
            }
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let mean = ceilings.iter().sum::<f64>() / ceilings.len() as f64;
        eprintln!(
            "censoring {censoring}, {rollouts} rollouts: {} fits, mean ceiling {mean:.3}, median width {:.1}",
            ceilings.len(),
            median(widths.clone())
        );
        (ceilings.len() as u64, mean, median(widths))
    };
    let (ok, ceiling, width) = fit(true, 200, 50);
    let (_, naive_ceiling, naive_width) = fit(false, 200, 50);
    assert!(ok >= 48, "{ok} of 50 censored fits succeeded");
    // With censoring: within 12 % at 200 rollouts (small-sample bias; see below) ...
    assert!((ceiling / 0.8 - 1.0).abs() < 0.12, "ceiling {ceiling}");
    assert!((width / 300.0 - 1.0).abs() < 0.2, "width {width}");
    // ... without it, the cut-off solutions are counted as failures and the short ones
    // are all that is seen: both far too low.
    assert!(
        naive_ceiling < 0.5 && naive_width < 200.0,
        "{naive_ceiling} {naive_width}"
    );
    // Consistency: with 10× the rollouts the censored estimate closes in on the truth.
    let (_, ceiling, width) = fit(true, 2000, 10);
    assert!((ceiling / 0.8 - 1.0).abs() < 0.04, "ceiling {ceiling}");
    assert!((width / 300.0 - 1.0).abs() < 0.1, "width {width}");
}

#[test]
fn shared_width_is_recovered_from_many_thin_queries() {
    // 40 queries, 10 rollouts each (≈ 8 correct): alone each width has ≈ 25 % error;
    // shared over ≈ 320 correct lengths it should land within 10 %.
    let width = 150.0;
    let queries: Vec<QueryRollouts> = (0..40)
        .map(|i| {
            let truth = ShiftedSurge::new(100.0 + 20.0 * i as f64, width, 0.8).unwrap();
            QueryRollouts {
                id: format!("q{i}"),
                rollouts: fit_support::draw(&truth, 10, None, 1000 + i),
            }
        })
        .collect();
    let fit = RolloutFit::default()
        .fit_shared(&queries, SharedCeiling::Shared)
        .unwrap();
    assert!(
        (fit.shape.width() / width - 1.0).abs() < 0.1,
        "{}",
        fit.shape.width()
    );
    assert!(
        (fit.shape.ceiling() - 0.8).abs() < 0.06,
        "{}",
        fit.shape.ceiling()
    );
    // Thresholds follow the truth's order: Spearman-like check on the ends.
    let first = fit.curves[0].curve.threshold();
    let last = fit.curves[39].curve.threshold();
    assert!(
        last - first > 0.8 * 780.0 - 2.0 * width,
        "{first} .. {last}"
    );
}
