//! Online admission speed: `admit` latency on one thread, `admit` + `complete` on one
//! and on two threads sharing one allocator (throughput), and the cost of a window
//! boundary (re-clearing the price from a full sample).

use clear_alloc::online::{OnlineAllocator, PreparedQuery};
use clear_alloc::{Query, ShiftedSurge};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 1 024 queries spread around the paper's Figure-1 fits, cycled through by the
/// benchmarks so that the price hits every branch of the best response.
fn queries() -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..1024)
        .map(|_| {
            let tau = rng.random_range(50.0..900.0);
            let width = rng.random_range(60.0..400.0);
            let ceiling = rng.random_range(0.1..1.0);
            Query::new(ShiftedSurge::new(tau, width, ceiling).unwrap()).with_cap(4096)
        })
        .collect()
}

/// A window too large to run out during a benchmark, at a price where about a third
/// of these queries are abandoned.
fn allocator() -> OnlineAllocator {
    OnlineAllocator::builder()
        .tokens_per_window(clear_alloc::online::MAX_WINDOW_BUDGET)
        .default_cap(4096)
        .initial_price(8e-4)
        .build()
        .unwrap()
}

/// `per_thread` admit + complete pairs on each of `threads` threads (admitting the
/// prepared handles when `prepared` is set); wall time.
fn run_threads(
    online: &Arc<OnlineAllocator>,
    queries: &Arc<Vec<Query>>,
    prepared: Option<&Arc<Vec<PreparedQuery>>>,
    threads: u64,
    per_thread: u64,
) -> Duration {
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let online = Arc::clone(online);
            let queries = Arc::clone(queries);
            let prepared = prepared.cloned();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let at = ((i + t * 512) % 1024) as usize;
                    let ticket = match &prepared {
                        Some(prepared) => online.admit_prepared(&prepared[at]).unwrap(),
                        None => online.admit(&queries[at]).unwrap(),
                    };
                    let used = ticket.tokens() / 2;
                    black_box(online.complete(ticket, used).unwrap());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    start.elapsed()
}

fn online(c: &mut Criterion) {
    let queries = queries();
    let mut group = c.benchmark_group("online");
    group.throughput(Throughput::Elements(1));

    // The floor of any admission that shares a budget word: one atomic
    // read-modify-write on it. `admit` is reported as a ratio against this.
    let word = std::sync::atomic::AtomicU64::new(u64::MAX);
    group.bench_function("fetch_sub (baseline)", |b| {
        b.iter(|| black_box(word.fetch_sub(black_box(1), std::sync::atomic::Ordering::AcqRel)))
    });

    let online = allocator();
    let mut i = 0;
    group.bench_function("admit", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            black_box(online.admit(black_box(&queries[i])).unwrap())
        })
    });

    // The same queries prepared once (one handle per class): the grant is cached
    // while the price holds.
    let prepared: Vec<_> = queries.iter().map(|q| online.prepare(q)).collect();
    let mut i = 0;
    group.bench_function("admit_prepared", |b| {
        b.iter(|| {
            i = (i + 1) % prepared.len();
            black_box(online.admit_prepared(black_box(&prepared[i])).unwrap())
        })
    });

    let mut i = 0;
    group.bench_function("admit+complete", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            let ticket = online.admit(black_box(&queries[i])).unwrap();
            let used = ticket.tokens() / 2;
            black_box(online.complete(ticket, used).unwrap())
        })
    });

    let shared = Arc::new(allocator());
    let shared_queries = Arc::new(queries.clone());
    let shared_prepared = Arc::new(
        queries
            .iter()
            .map(|q| shared.prepare(q))
            .collect::<Vec<_>>(),
    );
    for threads in [1u64, 2] {
        // Each iteration is one admit + complete pair; `threads` threads share them.
        group.bench_function(format!("admit+complete/{threads}-threads"), |b| {
            b.iter_custom(|iters| {
                run_threads(
                    &shared,
                    &shared_queries,
                    None,
                    threads,
                    iters.div_ceil(threads),
                )
            })
        });
        group.bench_function(format!("admit_prepared+complete/{threads}-threads"), |b| {
            b.iter_custom(|iters| {
                let prepared = Some(&shared_prepared);
                run_threads(
                    &shared,
                    &shared_queries,
                    prepared,
                    threads,
                    iters.div_ceil(threads),
                )
            })
        });
    }

    // A window boundary with a full history (4 windows × 256 samples) and a scarce
    // budget (300 tokens per arrival), so the price search has work to do.
    let boundary = OnlineAllocator::builder()
        .tokens_per_window(2048 * 300)
        .default_cap(4096)
        .build()
        .unwrap();
    group.bench_function("end_window", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for q in queries.iter().cycle().take(2048) {
                    let _ = boundary.admit(q).unwrap();
                }
                let start = Instant::now();
                black_box(boundary.end_window());
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, online);
criterion_main!(benches);
