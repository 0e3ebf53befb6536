//! Budget-sweep fits against the SPEC §2 Figure-1 numbers.
//!
//! The SPEC quotes the fits (τ, w) ≈ (151, 101) GSM8K, (142, 218) MATH500 and
//! (304, 280) AIME/AMC, "to within 4 points at every budget from 128 to 8192 tokens",
//! but not the measured points. The points here are therefore the quoted curves at
//! half-octave budgets from 128 to 8192, moved by the full 4 points the SPEC allows,
//! in an alternating pattern; a fit must land near the quoted values.

use clear_alloc::fit::{fit_sweep, SweepCeiling};
use clear_alloc::ShiftedSurge;

fn figure_one_points(threshold: f64, width: f64) -> Vec<(f64, f64)> {
    let curve = ShiftedSurge::new(threshold, width, 1.0).unwrap();
    (0..=12)
        .map(|j| 128.0 * 2f64.powf(j as f64 / 2.0))
        .enumerate()
        .map(|(i, b)| {
            let recall = curve.utility(b);
            let shift = if i % 2 == 0 { 0.04 } else { -0.04 };
            (b, (recall + shift).clamp(0.0, 1.0))
        })
        .collect()
}

#[test]
fn figure_one_recall_curves_give_the_quoted_thresholds_and_widths() {
    for (name, threshold, width) in [
        ("GSM8K", 151.0, 101.0),
        ("MATH500", 142.0, 218.0),
        ("AIME/AMC", 304.0, 280.0),
    ] {
        let fit = fit_sweep(
            &figure_one_points(threshold, width),
            SweepCeiling::Normalised,
        )
        .unwrap();
        let (t, w) = (fit.curve.threshold(), fit.curve.width());
        eprintln!(
            "{name}: τ {t:.1} (quoted {threshold}), w {w:.1} (quoted {width}), max error {:.3}",
            fit.max_error
        );
        // The least-squares fit cannot be worse than the quoted curve, whose residuals
        // are at most 4 points by construction.
        assert!(fit.rmse <= 0.04 + 1e-9, "{name}: {fit:?}");
        assert!((t - threshold).abs() <= 0.1 * threshold, "{name}: τ {t}");
        assert!((w - width).abs() <= 0.1 * width, "{name}: w {w}");
    }
}

#[test]
fn exact_figure_one_curves_are_recovered_exactly() {
    for (threshold, width) in [(151.0, 101.0), (142.0, 218.0), (304.0, 280.0)] {
        let curve = ShiftedSurge::new(threshold, width, 1.0).unwrap();
        let points: Vec<(f64, f64)> = (0..=12)
            .map(|j| 128.0 * 2f64.powf(j as f64 / 2.0))
            .map(|b| (b, curve.utility(b)))
            .collect();
        let fit = fit_sweep(&points, SweepCeiling::Normalised).unwrap();
        approx::assert_relative_eq!(fit.curve.threshold(), threshold, max_relative = 1e-3);
        approx::assert_relative_eq!(fit.curve.width(), width, max_relative = 1e-3);
    }
}
