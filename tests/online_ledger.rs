//! The lease model through the public API: allocators sharing one budget through a
//! `BudgetLedger` written outside the crate. Whatever the chunk size, the traffic, the
//! refunds and the window boundaries, the tokens charged in a window summed over the
//! allocators never exceed its budget, and every token leased is charged or released.

use clear_alloc::online::{BudgetLedger, Lease, OnlineAllocator};
use clear_alloc::{Query, ShiftedSurge};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One budget per window in memory, leased in chunks of `chunk` tokens.
#[derive(Debug)]
struct Fleet {
    chunk: u64,
    /// window → (left, leased, released)
    windows: Mutex<HashMap<u64, (u64, u64, u64)>>,
}

impl Fleet {
    fn take(&self, window: u64, budget: u64, wanted: u64) -> Lease {
        let mut windows = self.windows.lock().unwrap();
        let entry = windows.entry(window).or_insert((budget, 0, 0));
        let tokens = wanted.max(self.chunk).min(entry.0);
        entry.0 -= tokens;
        entry.1 += tokens;
        Lease {
            tokens,
            refill_below: if entry.0 == 0 { 0 } else { self.chunk / 2 + 1 },
        }
    }
}

impl BudgetLedger for Fleet {
    fn open(&self, window: u64, budget: u64) -> Lease {
        self.take(window, budget, 0)
    }

    fn extend(&self, window: u64, needed: u64) -> Lease {
        // The budget is set by the first open of the window.
        self.take(window, 0, needed)
    }

    fn release(&self, window: u64, unused: u64) {
        let mut windows = self.windows.lock().unwrap();
        let entry = windows
            .get_mut(&window)
            .expect("released an unopened window");
        entry.0 += unused;
        entry.2 += unused;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x1EA5E),
        ..ProptestConfig::with_cases(64)
    })]

    #[test]
    fn a_shared_budget_is_never_overrun_and_every_lease_is_accounted_for(
        budget in 1u64..20_000,
        chunk in 1u64..5_000,
        replicas in 1usize..4,
        // (replica, threshold, width, cap, share of the grant used, end the window?)
        steps in proptest::collection::vec(
            (0usize..3, 0.0f64..600.0, 20.0f64..300.0, 0u64..3_000, 0.0f64..=1.0, proptest::bool::weighted(0.05)),
            1..300,
        ),
    ) {
        let fleet = Arc::new(Fleet { chunk, windows: Mutex::new(HashMap::new()) });
        let allocators: Vec<_> = (0..replicas)
            .map(|_| {
                OnlineAllocator::builder()
                    .tokens_per_window(budget)
                    .initial_price(1e-4)
                    .ledger(fleet.clone())
                    .build()
                    .unwrap()
            })
            .collect();
        let mut charged: HashMap<u64, u64> = HashMap::new();
        for (r, threshold, width, cap, used, end) in steps {
            let online = &allocators[r % replicas];
            let curve = ShiftedSurge::new(threshold, width, 0.9).unwrap();
            let ticket = online.admit(&Query::new(curve).with_cap(cap)).unwrap();
            let spend = (ticket.tokens() as f64 * used) as u64;
            online.complete(ticket, spend).unwrap();
            if end {
                for a in &allocators {
                    let report = a.end_window();
                    *charged.entry(report.window).or_default() += report.charged;
                }
            }
        }
        for a in &allocators {
            let report = a.end_window();
            *charged.entry(report.window).or_default() += report.charged;
        }
        let windows = fleet.windows.lock().unwrap();
        for (window, total) in charged {
            prop_assert!(total <= budget, "window {window}: {total} > {budget}");
            if let Some(&(left, leased, released)) = windows.get(&window) {
                prop_assert_eq!(leased - released, total, "window {}", window);
                prop_assert_eq!(left, budget - total);
            } else {
                prop_assert_eq!(total, 0);
            }
        }
    }
}

/// A ledger that gives at most `chunk` tokens per call, whatever is needed (a fair
/// share among replicas can be smaller than one request).
#[derive(Debug)]
struct Stingy {
    chunk: u64,
    left: Mutex<u64>,
}

impl BudgetLedger for Stingy {
    fn open(&self, _window: u64, _budget: u64) -> Lease {
        Lease {
            tokens: 0,
            refill_below: 1,
        }
    }

    fn extend(&self, _window: u64, _needed: u64) -> Lease {
        let mut left = self.left.lock().unwrap();
        let tokens = self.chunk.min(*left);
        *left -= tokens;
        Lease {
            tokens,
            refill_below: 1,
        }
    }

    fn release(&self, _window: u64, unused: u64) {
        *self.left.lock().unwrap() += unused;
    }
}

/// A request that needs more than one refill brings is not cut short while the
/// ledger still gives: at price 0 it takes its whole cap (300) from two refills of
/// 200, where a single refill would have left it 200 (its best response under them).
#[test]
fn a_request_waits_for_as_many_refills_as_the_ledger_gives() {
    let ledger = Arc::new(Stingy {
        chunk: 200,
        left: Mutex::new(10_000),
    });
    let online = OnlineAllocator::builder()
        .tokens_per_window(10_000)
        .default_cap(300)
        .ledger(ledger.clone())
        .build()
        .unwrap();
    let query = Query::new(ShiftedSurge::new(50.0, 100.0, 0.9).unwrap());
    let ticket = online.admit(&query).unwrap();
    assert_eq!(ticket.tokens(), 300);
    assert_eq!(*ledger.left.lock().unwrap(), 10_000 - 400);
    // A dry ledger ends the wait: the next request takes what is held (100).
    *ledger.left.lock().unwrap() = 0;
    assert_eq!(online.admit(&query).unwrap().tokens(), 100);
}
