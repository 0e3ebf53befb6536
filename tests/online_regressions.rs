//! Inputs the `online_sequence` fuzz target (fuzz/) found, as regression tests through
//! the public API.

use clear_alloc::online::OnlineAllocator;
use clear_alloc::{Query, ShiftedSurge};
use std::sync::mpsc;
use std::time::Duration;

/// `end_window` after a window whose only sampled arrival is worth a subnormal price
/// per token at most (ceiling 6.5e-319 over a width of 510 tokens): it must return.
/// A search that starts at half the highest abandonment price rounds it to 0 here and
/// never leaves 0 by doubling; the watchdog turns such a hang into a failure.
#[test]
fn end_window_returns_when_the_best_price_is_subnormal() {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let online = OnlineAllocator::builder()
            .tokens_per_window(1)
            .default_cap(277)
            .initial_price(6.25e-5)
            .history_windows(1)
            .samples_per_window(1)
            .build()
            .unwrap();
        let curve = ShiftedSurge::new(0.0, 510.0, 6.47577e-319).unwrap();
        let _ = online
            .admit(&Query::new(curve).with_weight(0.015625).unwrap())
            .unwrap();
        done.send(online.end_window()).unwrap();
    });
    let report = finished
        .recv_timeout(Duration::from_secs(20))
        .expect("end_window did not return within 20 s");
    assert!(report.next_price.is_finite() && report.next_price >= 0.0);
}

/// A class of identical requests (one prior curve for all) must keep being served.
/// Their demand jumps from "all buy" to "none buys" at their abandonment price; a
/// re-clear that took the feasible side of that jump priced every request of the next
/// window out, charged nothing, saw the same sample again and never recovered (found
/// by the `online_server` example and the cold-start simulation).
#[test]
fn a_class_of_identical_requests_is_not_priced_out_for_good() {
    let online = OnlineAllocator::builder()
        .tokens_per_window(6_000)
        .default_cap(4_096)
        .build()
        .unwrap();
    let query = Query::new(ShiftedSurge::new(151.0, 101.0, 0.95).unwrap());
    for window in 0..8 {
        let mut funded = 0;
        for _ in 0..40 {
            let ticket = online.admit(&query).unwrap();
            funded += u64::from(!ticket.is_abandoned());
            let used = ticket.tokens();
            online.complete(ticket, used).unwrap();
        }
        let report = online.end_window();
        assert!(report.charged <= 6_000);
        // Window 0 runs at price 0 (the first requests take whole caps); after it,
        // 40 requests want ~400 tokens each and a window can fund about 15 of them.
        assert!(
            window == 0 || (funded >= 5 && report.charged >= 3_000),
            "window {window}: {funded} funded, {} of 6 000 tokens charged at price {:e}",
            report.charged,
            report.next_price,
        );
    }
}
