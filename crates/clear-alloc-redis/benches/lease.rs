//! Admissions per second of one replica leasing from the machine's Redis, against the
//! same allocator on its own budget (the in-process ledger) in the same run, and the
//! Redis round trips per 1 000 admissions at steady state (printed at the end).
//!
//! Windows end every 50 000 admissions (the boundary is not timed); the budget, 300
//! tokens per admission, runs scarce, so the leases shrink to fair shares as each
//! window drains.

use clear_alloc::online::OnlineAllocator;
use clear_alloc::{Query, ShiftedSurge};
use clear_alloc_redis::{Clock, RedisLedger};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PER_WINDOW: u64 = 50_000;
const BUDGET: u64 = 300 * PER_WINDOW;

fn queries() -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..1024)
        .map(|_| {
            let curve = ShiftedSurge::new(
                rng.random_range(50.0..900.0),
                rng.random_range(60.0..400.0),
                rng.random_range(0.1..1.0),
            )
            .unwrap();
            Query::new(curve).with_cap(4096)
        })
        .collect()
}

/// Times `iters` admissions, ending the window (untimed) every `PER_WINDOW`.
fn run(online: &OnlineAllocator, queries: &[Query], count: &mut u64, iters: u64) -> Duration {
    let mut timed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let batch = left.min(PER_WINDOW - *count % PER_WINDOW);
        let start = Instant::now();
        for i in 0..batch {
            let q = &queries[((*count + i) % 1024) as usize];
            let _ = black_box(online.admit(black_box(q)).unwrap());
        }
        timed += start.elapsed();
        *count += batch;
        left -= batch;
        if count.is_multiple_of(PER_WINDOW) {
            online.end_window();
        }
    }
    timed
}

fn lease(c: &mut Criterion) {
    let queries = queries();
    let ns = format!("bench-{}", std::process::id());
    let ledger = Arc::new(
        RedisLedger::builder("redis://127.0.0.1:6379/0")
            .namespace(&ns)
            .window(Duration::from_millis(10))
            .clock(Clock::Counted)
            .build()
            .unwrap(),
    );
    if let Err(e) = ledger.ping() {
        panic!(
            "this benchmark needs the Redis at 127.0.0.1:6379: {e}; start it with \
             redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no"
        );
    }
    let options = || {
        OnlineAllocator::builder()
            .tokens_per_window(BUDGET)
            .default_cap(4096)
            .initial_price(8e-4)
    };
    let local = options().build().unwrap();
    let leased = options().ledger(ledger.clone()).build().unwrap();
    // Past the namespace's unfunded first window, and one window of warm-up.
    leased.end_window();
    let mut count = 0;
    run(&leased, &queries, &mut count, PER_WINDOW);
    let before = (ledger.stats(), count);

    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(1));
    let mut local_count = 0;
    group.bench_function("admit/in-process", |b| {
        b.iter_custom(|iters| run(&local, &queries, &mut local_count, iters))
    });
    group.bench_function("admit/redis-leases", |b| {
        b.iter_custom(|iters| run(&leased, &queries, &mut count, iters))
    });
    group.finish();

    let after = ledger.stats();
    let admissions = count - before.1;
    let trips = after.round_trips - before.0.round_trips;
    eprintln!(
        "redis leases: {admissions} admissions, {trips} round trips ({:.3} per 1 000 \
         admissions), {} leases, {} windows, {} failures",
        1_000.0 * trips as f64 / admissions as f64,
        after.leases - before.0.leases,
        admissions / PER_WINDOW,
        after.failures - before.0.failures,
    );
}

criterion_group!(benches, lease);
criterion_main!(benches);
