//! The online curve learner: the curve a request of a named class is admitted on (the
//! proxy's lookup, by `&str`, beside one `String` made per lookup as a baseline),
//! recording one completion (the `complete_with` side of a request, no refit), and
//! refitting one class from 1 000 completions censored at their own grants (what
//! `end_window` does per class, off the admit path).

use std::hint::black_box;

use clear_alloc::online::{Completed, Completion, CurveLearner, CurvePrior};
use clear_alloc::ShiftedSurge;
use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};

const SAMPLE: usize = 1_000;

/// Completions of a class with curve (151, 101, 0.9) under grants uniform in 100–800.
fn completions(n: usize) -> Vec<Completed> {
    let mut rng = StdRng::seed_from_u64(3);
    let gamma = Gamma::new(2.0, 101.0).unwrap();
    (0..n)
        .map(|_| {
            let grant: u64 = rng.random_range(100..=800);
            let length = (151.0f64 + gamma.sample(&mut rng)).ceil() as u64;
            let completion = if length <= grant {
                Completion::finished(length).with_correct(rng.random::<f64>() < 0.9)
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

fn learner() -> CurveLearner<u32> {
    let prior = CurvePrior::builder()
        .curve(ShiftedSurge::new(302.0, 151.0, 0.9).unwrap())
        .build()
        .unwrap();
    CurveLearner::builder()
        .capacity(SAMPLE)
        .refit_every(usize::MAX)
        // No decay: every iteration ends a window, and the fit must see all 1 000.
        .decay(1.0)
        .prior(0, prior)
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let data = completions(SAMPLE);
    let full = learner();
    for done in &data {
        full.observe(0, done).unwrap();
    }
    let named = CurveLearner::<String>::builder()
        .prior("math".to_string(), CurvePrior::weak())
        .build()
        .unwrap();
    let class = black_box("math");
    c.bench_function("learn/curve_to_admit (class by &str)", |b| {
        b.iter(|| black_box(named.curve_to_admit(class)))
    });
    c.bench_function("learn/curve_to_admit (a String per lookup)", |b| {
        b.iter(|| black_box(named.curve_to_admit(&class.to_string())))
    });
    c.bench_function("learn/observe (no refit)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % SAMPLE;
            black_box(full.observe(0, &data[i]).unwrap())
        })
    });
    c.bench_function("learn/refit one class of 1000 completions", |b| {
        b.iter(|| {
            // A fresh completion marks the class for refitting at the window's end.
            full.observe(0, &data[0]).unwrap();
            full.end_window();
            black_box(full.curve(&0))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
