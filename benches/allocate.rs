//! Price-search speed: one `allocate` call on N heterogeneous queries (and on N queries
//! sharing the paper's model-intrinsic α, β), one thread; and on N posterior mixtures
//! (9 components) and N empirical curves (32 rollouts each), the curve types without
//! a closed-form best response.

#[cfg(feature = "fit")]
use clear_alloc::fit::{EmpiricalCurve, Rollout};
use clear_alloc::{Allocator, Mixture, Query, ShiftedSurge};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;

/// N queries with thresholds, widths and ceilings spread around the Figure-1 fits.
fn heterogeneous(n: usize) -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(1);
    (0..n)
        .map(|_| {
            let tau = rng.random_range(50.0..900.0);
            let width = rng.random_range(60.0..400.0);
            let ceiling = rng.random_range(0.1..1.0);
            Query::new(ShiftedSurge::new(tau, width, ceiling).unwrap())
        })
        .collect()
}

/// N queries that differ only in threshold (the paper's serving-time setting).
fn shared_shape(n: usize) -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(2);
    let shape = ShiftedSurge::new(0.0, 200.0, 0.8).unwrap();
    (0..n)
        .map(|_| Query::new(shape.with_threshold(rng.random_range(50.0..900.0)).unwrap()))
        .collect()
}

/// The 9-node Gauss–Hermite rule for a standard normal (probabilists' nodes and
/// weights, weights summing to 1).
const GAUSS_HERMITE_9: [(f64, f64); 9] = [
    (-4.512_745_863_399_783, 2.234_584_400_774_658e-5),
    (-3.205_429_002_856_47, 2.789_141_321_231_769e-3),
    (-2.076_847_978_677_83, 4.991_640_676_521_79e-2),
    (-1.023_255_663_789_133, 0.244_097_502_894_939),
    (0.0, 0.406_349_206_349_206),
    (1.023_255_663_789_133, 0.244_097_502_894_939),
    (2.076_847_978_677_83, 4.991_640_676_521_79e-2),
    (3.205_429_002_856_47, 2.789_141_321_231_769e-3),
    (4.512_745_863_399_783, 2.234_584_400_774_658e-5),
];

/// N posterior mixtures over ln τ (spread 0.5, as SPEC §7's posterior at σ ≈ 0.7),
/// shape as in [`shared_shape`].
fn mixtures(n: usize) -> Vec<Query<Mixture>> {
    let mut rng = StdRng::seed_from_u64(3);
    let shape = ShiftedSurge::new(0.0, 200.0, 0.8).unwrap();
    (0..n)
        .map(|_| {
            let centre: f64 = rng.random_range(50.0..900.0);
            let components = GAUSS_HERMITE_9
                .iter()
                .map(|&(z, w)| (w, shape.with_threshold(centre * (0.5 * z).exp()).unwrap()));
            Query::new(Mixture::new(components).unwrap())
        })
        .collect()
}

#[cfg(feature = "fit")]
/// N empirical curves of 32 rollouts each, drawn from curves as in [`heterogeneous`].
fn empirical(n: usize) -> Vec<Query<EmpiricalCurve>> {
    let mut rng = StdRng::seed_from_u64(4);
    (0..n)
        .map(|_| {
            let tau = rng.random_range(50.0..900.0);
            let width: f64 = rng.random_range(60.0..400.0);
            let ceiling = rng.random_range(0.1..1.0);
            let rollouts: Vec<Rollout> = (0..32)
                .map(|_| {
                    let (u, v): (f64, f64) = (rng.random(), rng.random());
                    let length = (tau - width * ((1.0 - u).ln() + (1.0 - v).ln())) as u64;
                    if rng.random_bool(ceiling) {
                        Rollout::correct(length)
                    } else {
                        Rollout::failed(length)
                    }
                })
                .collect();
            Query::new(EmpiricalCurve::from_rollouts(&rollouts).unwrap())
        })
        .collect()
}

fn allocate(c: &mut Criterion) {
    let allocator = Allocator::builder().default_cap(8192).build().unwrap();
    let mut group = c.benchmark_group("allocate");
    for &n in &[1_000usize, 10_000, 100_000, 1_000_000] {
        if n >= 100_000 {
            group.sample_size(10);
        }
        // 300 tokens per query: scarce, about half the queries abandoned.
        let budget = 300 * n as u64;
        for (name, queries) in [
            ("heterogeneous", heterogeneous(n)),
            ("shared-shape", shared_shape(n)),
        ] {
            group.bench_with_input(BenchmarkId::new(name, n), &queries, |b, q| {
                b.iter(|| allocator.allocate(black_box(q), black_box(budget)).unwrap())
            });
        }
    }
    group.finish();
}

/// The curve types without a closed form, at 1 000 and 100 000 queries.
fn allocate_curves(c: &mut Criterion) {
    let allocator = Allocator::builder().default_cap(8192).build().unwrap();
    let mut group = c.benchmark_group("allocate");
    for &n in &[1_000usize, 100_000] {
        if n >= 100_000 {
            group.sample_size(10);
        }
        let budget = 300 * n as u64;
        let queries = mixtures(n);
        group.bench_with_input(BenchmarkId::new("mixture-9", n), &queries, |b, q| {
            b.iter(|| allocator.allocate(black_box(q), black_box(budget)).unwrap())
        });
        #[cfg(feature = "fit")]
        {
            let queries = empirical(n);
            group.bench_with_input(BenchmarkId::new("empirical-32", n), &queries, |b, q| {
                b.iter(|| allocator.allocate(black_box(q), black_box(budget)).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, allocate, allocate_curves);
criterion_main!(benches);
