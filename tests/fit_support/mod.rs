//! Seeded synthetic rollouts drawn from known curves, shared by the `fit*` tests.
#![allow(dead_code)]

use clear_alloc::fit::Rollout;
use clear_alloc::ShiftedSurge;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};

/// `n` rollouts of a query whose true curve is `curve`: correct with probability
/// `ceiling`, at length `τ + Gamma(2, 1/w)` rounded to whole tokens; wrong ones end
/// at a length uniform on [1, 3(τ + 2w)]. With a `cap`, any rollout longer than it is cut
/// off there (truncated, no answer).
pub fn draw(curve: &ShiftedSurge, n: usize, cap: Option<u64>, seed: u64) -> Vec<Rollout> {
    let mut rng = StdRng::seed_from_u64(seed);
    let gamma = Gamma::new(2.0, curve.width()).unwrap();
    let wrong_top = 3.0 * curve.mean_correct_length();
    (0..n)
        .map(|_| {
            let correct = rng.random::<f64>() < curve.ceiling();
            let length = if correct {
                curve.threshold() + gamma.sample(&mut rng)
            } else {
                rng.random_range(1.0..wrong_top)
            };
            let tokens = length.round() as u64;
            match cap {
                Some(cap) if tokens > cap => Rollout::truncated(cap),
                _ if correct => Rollout::correct(tokens),
                _ => Rollout::failed(tokens),
            }
        })
        .collect()
}
