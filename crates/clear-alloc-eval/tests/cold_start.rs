//! The cold-start bar of issue 9: curves learned online from completions reach 95 % of
//! the accuracy of a server that knows the true curves within 20 windows and stay
//! there, with and without correctness feedback; the full run is
//! `cargo run --release -p clear-alloc-eval --example cold_start`.

use clear_alloc_eval::cold_start::{settled_from, ColdStart, WindowAccuracy};

/// A smaller run than the example's (300 arrivals per window, 30 windows), for debug
/// test time.
fn config() -> ColdStart {
    ColdStart::default()
        .windows(30)
        .arrivals_per_window(300)
        .seed(11)
}

/// Every window from window 20 on (and from earlier, if it settles earlier) is at
/// ≥ 95 % of the reference.
fn assert_reaches_and_stays(rows: &[WindowAccuracy], what: &str) {
    let settled = settled_from(rows, 0.95);
    let worst = rows[20..]
        .iter()
        .map(WindowAccuracy::ratio)
        .fold(f64::INFINITY, f64::min);
    assert!(
        settled <= 20,
        "{what}: below 95 % of the reference until window {settled}; worst from 20 on {worst:.3}"
    );
}

#[test]
fn learned_curves_reach_and_keep_95_percent_of_the_true_curves() {
    assert_reaches_and_stays(&config().feedback(true).run().unwrap(), "with feedback");
    assert_reaches_and_stays(&config().feedback(false).run().unwrap(), "lengths only");
}

#[test]
fn the_wrong_priors_alone_fall_far_short() {
    // Without learning the same run stays well below the bar: the priors' errors
    // matter, so the test above measures learning.
    let frozen = config().learning(false).run().unwrap();
    let late: Vec<f64> = frozen[20..].iter().map(WindowAccuracy::ratio).collect();
    let mean = late.iter().sum::<f64>() / late.len() as f64;
    assert!(mean < 0.8, "priors alone reach {mean:.3} of the reference");
}
