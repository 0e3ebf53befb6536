//! Prepared admission through the public API: a prepared query is granted exactly
//! what `admit` grants for it, before and after price changes, for any curve type; and
//! threads admitting prepared classes while windows end never overspend a window.

use clear_alloc::online::{OnlineAllocator, OnlineAllocatorBuilder};
use clear_alloc::{Mixture, Query, ShiftedSurge};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[macro_use]
mod soak_support;

fn surge(threshold: f64, width: f64, ceiling: f64) -> ShiftedSurge {
    ShiftedSurge::new(threshold, width, ceiling).unwrap()
}

proptest! {
    #![proptest_config(soak_support::config(64, 0xc1ea0012))]

    /// Each window's price is whatever the re-clear makes of random traffic; at every
    /// price, including the first admission after a change (the cache refill), the
    /// prepared query gets `admit`'s grant for the same query.
    #[test]
    fn a_prepared_query_gets_admits_grant_at_every_price(
        classes in proptest::collection::vec(
            (0.0f64..1500.0, 10.0f64..600.0, 0.05f64..1.0, proptest::option::of(0u64..6000), 0.1f64..5.0),
            1..6,
        ),
        traffic in proptest::collection::vec(0usize..6, 0..300),
        windows in 1usize..5,
        initial_price in prop_oneof![Just(0.0), 1e-6f64..1e-2],
        budget in 1_000u64..2_000_000,
    ) {
        let online = OnlineAllocator::builder()
            .tokens_per_window(budget)
            .default_cap(4096)
            .initial_price(initial_price)
            .samples_per_window(32)
            .build()
            .unwrap();
        let queries: Vec<Query> = classes
            .iter()
            .map(|&(t, w, p, cap, weight)| {
                let q = Query::new(surge(t, w, p)).with_weight(weight).unwrap();
                match cap {
                    Some(cap) => q.with_cap(cap),
                    None => q,
                }
            })
            .collect();
        let prepared: Vec<_> = queries.iter().map(|q| online.prepare(q)).collect();
        for _ in 0..windows {
            for &i in &traffic {
                let i = i % queries.len();
                // Each pair runs back to back against the same remaining budget: the
                // plain admission's ticket goes back first.
                let plain = online.admit(&queries[i]).unwrap();
                let expected = plain.tokens();
                online.complete(plain, 0).unwrap();
                let ticket = online.admit_prepared(&prepared[i]).unwrap();
                prop_assert_eq!(ticket.tokens(), expected);
            }
            online.end_window();
        }
    }
}

soak_properties!(a_prepared_query_gets_admits_grant_at_every_price);

#[test]
fn prepared_mixtures_get_admits_grant() {
    let online = OnlineAllocatorBuilder::<Mixture>::new()
        .tokens_per_window(50_000)
        .build()
        .unwrap();
    let mixture = Mixture::new([
        (0.3, surge(100.0, 80.0, 0.9)),
        (0.7, surge(400.0, 150.0, 0.9)),
    ])
    .unwrap();
    let query = Query::new(mixture).with_cap(3_000);
    let class = online.prepare(&query);
    for _ in 0..4 {
        for _ in 0..60 {
            let plain = online.admit(&query).unwrap();
            let expected = plain.tokens();
            online.complete(plain, 0).unwrap();
            assert_eq!(online.admit_prepared(&class).unwrap().tokens(), expected);
        }
        assert!(online.end_window().charged <= 50_000);
    }
    assert!(
        online.price() > 0.0,
        "the budget is scarce: the price must rise"
    );
}

#[test]
fn threads_admitting_prepared_classes_never_overspend_a_window() {
    let budget = 200_000;
    let online = Arc::new(
        OnlineAllocator::builder()
            .tokens_per_window(budget)
            .default_cap(4096)
            .samples_per_window(64)
            .build()
            .unwrap(),
    );
    let classes: Arc<Vec<_>> = Arc::new(
        [
            (151.0, 101.0, 0.95),
            (142.0, 218.0, 0.75),
            (304.0, 280.0, 0.35),
        ]
        .iter()
        .map(|&(t, w, p)| online.prepare(&Query::new(surge(t, w, p))))
        .collect(),
    );
    // Per window: tokens granted and tokens credited back, from every thread.
    let ledger: Arc<Mutex<HashMap<u64, (u64, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let (online, classes, ledger, stop) = (
                online.clone(),
                classes.clone(),
                ledger.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let ticket = online.admit_prepared(&classes[i % 3]).unwrap();
                    let (window, tokens) = (ticket.window(), ticket.tokens());
                    let credited = online
                        .complete(ticket, tokens / (1 + i as u64 % 4))
                        .unwrap();
                    let mut ledger = ledger.lock().unwrap();
                    let entry = ledger.entry(window).or_default();
                    entry.0 += tokens;
                    entry.1 += credited;
                }
            })
        })
        .collect();
    let mut reports = Vec::new();
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(2));
        reports.push(online.end_window());
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let ledger = ledger.lock().unwrap();
    for report in &reports {
        assert!(report.charged <= budget);
        let (granted, credited) = ledger.get(&report.window).copied().unwrap_or_default();
        // What the window charged is what its tickets kept: granted minus refunds.
        assert_eq!(
            report.charged,
            granted - credited,
            "window {}",
            report.window
        );
    }
    assert!(
        reports.iter().filter(|r| r.price > 0.0).count() > 10,
        "the budget must be scarce enough to price"
    );
}
