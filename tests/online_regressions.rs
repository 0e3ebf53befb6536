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
