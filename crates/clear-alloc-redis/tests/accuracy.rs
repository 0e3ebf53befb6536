//! Three replicas on a Redis ledger serving a trace split among them reach within 3 %
//! of the expected utility one allocator reaches serving the whole trace (utility of
//! the grants on the requests' true curves), at the same window budget.

mod common;

use clear_alloc::online::OnlineAllocator;
use clear_alloc_redis::{Clock, RedisLedger};
use common::*;
use std::sync::Arc;
use std::time::Duration;

const WINDOWS: u64 = 13;
const ARRIVALS: usize = 3_000;
/// 300 tokens per arrival: scarce (a request's cap is 2 048).
const BUDGET: u64 = 300 * ARRIVALS as u64;

fn options() -> clear_alloc::online::OnlineAllocatorBuilder {
    OnlineAllocator::builder()
        .tokens_per_window(BUDGET)
        .default_cap(2048)
        .history_windows(2)
}

#[test]
fn three_replicas_on_a_split_trace_are_within_three_percent_of_one_allocator() {
    let mut con = redis();
    let ns = namespace("accuracy");
    let single = options().build().unwrap();
    let fleet: Vec<_> = (0..3)
        .map(|i| {
            let ledger = RedisLedger::builder(REDIS_URL)
                .namespace(&ns)
                .window(Duration::from_secs(1))
                .clock(Clock::Counted)
                .replica_id(&format!("r{i}"))
                .build()
                .unwrap();
            options().ledger(Arc::new(ledger)).build().unwrap()
        })
        .collect();
    let (mut one, mut three) = (0.0, 0.0);
    for window in 0..WINDOWS {
        let trace = curves(1_000 + window, ARRIVALS);
        let (mut u1, mut u3) = (0.0, 0.0);
        for (i, curve) in trace.iter().enumerate() {
            let q = query(*curve);
            u1 += curve.utility(single.admit(&q).unwrap().tokens() as f64);
            u3 += curve.utility(fleet[i % 3].admit(&q).unwrap().tokens() as f64);
        }
        let single_report = single.end_window();
        let reports: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = fleet.iter().map(|a| s.spawn(|| a.end_window())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let charged: u64 = reports.iter().map(|r| r.charged).sum();
        assert!(charged <= BUDGET);
        eprintln!(
            "window {window}: one allocator {u1:.1} (charged {}, price {:.3e}), three replicas \
             {u3:.1} (charged {charged}, prices {:.3e} {:.3e} {:.3e}), abandoned {} vs {}",
            single_report.charged,
            single_report.price,
            reports[0].price,
            reports[1].price,
            reports[2].price,
            single_report.abandoned,
            reports.iter().map(|r| r.abandoned).sum::<u64>(),
        );
        // Window 0 is the fleet namespace's first: unfunded by the restart rule.
        if window > 0 {
            one += u1;
            three += u3;
        }
    }
    let gap = (three - one) / one;
    eprintln!(
        "expected utility: one allocator {one:.1}, three replicas {three:.1}, gap {:+.2} %",
        100.0 * gap
    );
    assert!(gap.abs() <= 0.03, "gap {:+.2} %", 100.0 * gap);
    wipe(&mut con, &ns);
}
