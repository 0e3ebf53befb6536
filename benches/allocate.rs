//! Price-search speed: one `allocate` call on N heterogeneous queries (and on N queries
//! sharing the paper's model-intrinsic α, β), one thread.

use clear_alloc::{Allocator, Query, ShiftedSurge};
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

criterion_group!(benches, allocate);
criterion_main!(benches);
