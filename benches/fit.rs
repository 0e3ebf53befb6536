//! Fitting 1 000 queries × 64 rollouts: alone (closed-form profile), with censoring
//! (Nelder–Mead), and with one shared width.

use std::hint::black_box;

use clear_alloc::fit::{QueryRollouts, Rollout, RolloutFit, SharedCeiling};
use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};

const QUERIES: usize = 1_000;
const ROLLOUTS: usize = 64;

/// Queries with thresholds, widths and ceilings spread around the Figure-1 fits; rollouts
/// longer than `cap` are cut off there.
fn queries(cap: u64, shared_width: Option<f64>) -> Vec<QueryRollouts> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..QUERIES)
        .map(|i| {
            let threshold = rng.random_range(100.0..400.0);
            let width = shared_width.unwrap_or_else(|| rng.random_range(80.0..300.0));
            let ceiling = rng.random_range(0.5..0.95);
            let gamma = Gamma::new(2.0, width).unwrap();
            let rollouts = (0..ROLLOUTS)
                .map(|_| {
                    let correct = rng.random::<f64>() < ceiling;
                    let length = if correct {
                        threshold + gamma.sample(&mut rng)
                    } else {
                        rng.random_range(50.0..3000.0)
                    };
                    let tokens = length.round() as u64;
                    if tokens > cap {
                        Rollout::truncated(cap)
                    } else if correct {
                        Rollout::correct(tokens)
                    } else {
                        Rollout::failed(tokens)
                    }
                })
                .collect();
            QueryRollouts {
                id: format!("q{i}"),
                rollouts,
            }
        })
        .collect()
}

fn fit_each(options: &RolloutFit, queries: &[QueryRollouts]) -> usize {
    queries
        .iter()
        .filter(|q| options.fit(&q.id, &q.rollouts).is_ok())
        .count()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("fit_1000x64");
    group.sample_size(10);
    let uncapped = queries(u64::MAX, None);
    let options = RolloutFit::default();
    group.bench_function("closed_form", |b| {
        b.iter(|| fit_each(&options, black_box(&uncapped)))
    });
    let capped = queries(1_000, None);
    let censored = RolloutFit::builder().sampling_cap(1_000).build().unwrap();
    group.bench_function("censored_cap_1000", |b| {
        b.iter(|| fit_each(&censored, black_box(&capped)))
    });
    let shared = queries(u64::MAX, Some(150.0));
    group.bench_function("shared_width", |b| {
        b.iter(|| {
            options
                .fit_shared(black_box(&shared), SharedCeiling::PerQuery)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
