//! Every method on one 500-query stream (Balanced, 300 tokens per query: scarce), and
//! the exact DP at its largest practical sizes, one thread.

use clear_alloc::{AllocationPolicy, Allocator};
use clear_alloc_eval::baselines::{
    ExactOptimum, GreedyMarginal, NoAbandonment, Oracle, Proportional, Uniform,
};
use clear_alloc_eval::sim::{Mix, StreamConfig};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;

fn methods(c: &mut Criterion) {
    let stream = StreamConfig::new(Mix::Balanced)
        .threshold_noise(0.5)
        .seed(2026)
        .generate()
        .unwrap();
    let cap = stream.cap();
    let budget = 300 * stream.len() as u64;
    let clear = Allocator::builder().default_cap(cap).build().unwrap();
    let policies: Vec<Box<dyn AllocationPolicy + '_>> = vec![
        Box::new(Uniform::default().with_default_cap(cap)),
        Box::new(Proportional::default().with_default_cap(cap)),
        Box::new(GreedyMarginal::new(16).unwrap().with_default_cap(cap)),
        Box::new(NoAbandonment::new(Allocator::builder().default_cap(cap)).unwrap()),
        Box::new(clear.clone()),
        Box::new(Oracle::new(clear, stream.truth())),
    ];
    let mut group = c.benchmark_group("method-500q-300tpq");
    for policy in &policies {
        group.bench_function(policy.name(), |b| {
            b.iter(|| {
                policy
                    .allocate(black_box(stream.predicted()), black_box(budget))
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// The DP's cost is N·(B/δ)·min(cap/δ, B/δ): 500 queries at 1500 tokens per query on
/// a 50-token grid (15 000 cells, 82 steps per query), and 100 queries at 1500 tokens
/// per query on a 10-token grid (15 000 cells, 409 steps per query).
fn exact(c: &mut Criterion) {
    let mut group = c.benchmark_group("exact");
    group.sample_size(10);
    for (queries, grid) in [(500usize, 50u64), (100, 10)] {
        let stream = StreamConfig::new(Mix::Balanced)
            .queries(queries)
            .seed(2026)
            .generate()
            .unwrap();
        let budget = 1500 * queries as u64;
        let dp = ExactOptimum::builder()
            .grid(grid)
            .default_cap(stream.cap())
            .build()
            .unwrap();
        group.bench_with_input(
            BenchmarkId::new(format!("{queries}q-1500tpq"), format!("grid{grid}")),
            &stream,
            |b, s| b.iter(|| dp.allocate(black_box(s.predicted()), budget).unwrap()),
        );
    }
    group.finish();
}

criterion_group!(benches, methods, exact);
criterion_main!(benches);
