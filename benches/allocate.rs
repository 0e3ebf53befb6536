//! Price-search speed: one `allocate` call on N heterogeneous queries (and on N queries
//! sharing the paper's model-intrinsic α, β), one thread; and on N posterior mixtures
//! (9 components) and N empirical curves (32 rollouts each), the curve types without
//! a closed-form best response.
//!
//! Beside each size, `pass` is one plain best-response pass over the same queries at
//! the allocation's clearing price (`curve().best_response(price, cap)`, summed), so
//! that "allocate ÷ one pass" is a ratio read off one run; `workspace` is the same
//! allocation through [`Allocator::allocate_with`] with one workspace reused across
//! iterations (a server's scheduling loop). Built with `--features parallel`, the
//! groups are named `allocate-parallel` and split large batches across rayon's
//! threads (`RAYON_NUM_THREADS` sets how many).
//!
//! 10 million queries (about 1 GB of queries, a few seconds per sample) are an opt-in
//! group: `CLEAR_BENCH_10M=1 cargo bench -p clear-alloc --bench allocate -- 10M`.

#[cfg(feature = "fit")]
use clear_alloc::fit::{EmpiricalCurve, Rollout};
use clear_alloc::{Allocator, Curve, Mixture, Query, ShiftedSurge, Workspace};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;

#[path = "support/batch.rs"]
mod batch;
use batch::heterogeneous;

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

/// The benchmark groups' name: the parallel build's figures are kept apart.
const GROUP: &str = if cfg!(feature = "parallel") {
    "allocate-parallel"
} else {
    "allocate"
};

/// The default cap of the benchmarks' allocator.
const CAP: u64 = 8192;

/// One plain best-response pass over `queries` at `price`: total tokens demanded.
fn one_pass<C: Curve>(queries: &[Query<C>], price: f64) -> f64 {
    queries
        .iter()
        .map(|q| q.curve().best_response(price, CAP as f64).unwrap())
        .sum()
}

/// `allocate`, `workspace` and `pass` on `queries` with 300 tokens per query (scarce:
/// about half the queries abandoned).
fn bench_size<C: Curve>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    queries: &[Query<C>],
) {
    let allocator = Allocator::builder().default_cap(CAP).build().unwrap();
    let n = queries.len();
    let budget = 300 * n as u64;
    group.bench_with_input(BenchmarkId::new(name, n), queries, |b, q| {
        b.iter(|| allocator.allocate(black_box(q), black_box(budget)).unwrap())
    });
    let mut workspace = Workspace::new();
    group.bench_with_input(
        BenchmarkId::new(format!("{name}/workspace"), n),
        queries,
        |b, q| {
            b.iter(|| {
                allocator
                    .allocate_with(&mut workspace, black_box(q), black_box(budget))
                    .unwrap()
                    .total_tokens()
            })
        },
    );
    let price = allocator
        .allocate(queries, budget)
        .unwrap()
        .price()
        .unwrap();
    group.bench_with_input(
        BenchmarkId::new(format!("{name}/pass"), n),
        queries,
        |b, q| b.iter(|| one_pass(black_box(q), black_box(price))),
    );
}

fn allocate(c: &mut Criterion) {
    let mut group = c.benchmark_group(GROUP);
    for &n in &[1_000usize, 10_000, 100_000, 1_000_000] {
        if n >= 100_000 {
            group.sample_size(10);
        }
        bench_size(&mut group, "heterogeneous", &heterogeneous(n));
        bench_size(&mut group, "shared-shape", &shared_shape(n));
    }
    group.finish();
}

/// 10 million heterogeneous queries, only with `CLEAR_BENCH_10M=1`.
fn allocate_10m(c: &mut Criterion) {
    if std::env::var_os("CLEAR_BENCH_10M").is_none_or(|v| v != "1") {
        return;
    }
    let mut group = c.benchmark_group(format!("{GROUP}-10M"));
    group.sample_size(10);
    bench_size(&mut group, "heterogeneous", &heterogeneous(10_000_000));
    group.finish();
}

/// The curve types without a closed form, at 1 000 and 100 000 queries.
fn allocate_curves(c: &mut Criterion) {
    let mut group = c.benchmark_group(GROUP);
    for &n in &[1_000usize, 100_000] {
        if n >= 100_000 {
            group.sample_size(10);
        }
        bench_size(&mut group, "mixture-9", &mixtures(n));
        #[cfg(feature = "fit")]
        bench_size(&mut group, "empirical-32", &empirical(n));
    }
    group.finish();
}

criterion_group!(benches, allocate, allocate_curves, allocate_10m);
criterion_main!(benches);
