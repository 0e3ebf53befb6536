//! A model of one window's books for the online property tests: random sequences of
//! admit / complete / end_window, and the check that the allocator's accounts match
//! the tickets it issued after every call (no window charges more than its budget).

use clear_alloc::online::{OnlineAllocator, OnlineAllocatorBuilder, Ticket};
use clear_alloc::{Curve, Error, Query};
use proptest::prelude::*;

/// One call on the allocator.
#[derive(Debug, Clone)]
pub enum Op {
    /// Admits a query of class `class` (modulo the classes given), with a cap.
    Admit {
        class: usize,
        cap: Option<u64>,
    },
    /// Completes an outstanding ticket, having used a share of its grant (above 1:
    /// more than granted, an error).
    Complete {
        pick: usize,
        used_share: f64,
    },
    EndWindow,
}

/// Calls on `classes` classes, admissions most often.
pub fn op(classes: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..classes, proptest::option::of(0u64..3000))
            .prop_map(|(class, cap)| Op::Admit { class, cap }),
        4 => (any::<usize>(), 0.0f64..1.3)
            .prop_map(|(pick, used_share)| Op::Complete { pick, used_share }),
        1 => Just(Op::EndWindow),
    ]
}

/// The allocator the books are checked on: `budget` tokens per window, default cap
/// `cap`, a short history and a small sample (so that windows re-clear often).
pub fn allocator<C: Curve>(budget: u64, cap: u64, initial_price: f64) -> OnlineAllocator<C> {
    OnlineAllocatorBuilder::<C>::new()
        .tokens_per_window(budget)
        .default_cap(cap)
        .initial_price(initial_price)
        .history_windows(2)
        .samples_per_window(16)
        .build()
        .unwrap()
}

/// Runs `ops` on `online` (a fresh allocator of `budget` tokens per window and default
/// cap `cap`), keeping the test's own ledger of the current window (tickets granted in
/// it, refunds credited to it), and checks the allocator against it after every call.
pub fn check_books<C: Curve>(
    online: &OnlineAllocator<C>,
    curves: &[C],
    budget: u64,
    cap: u64,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut outstanding: Vec<Ticket> = Vec::new();
    let (mut granted, mut credited) = (0u64, 0u64);
    for op in ops {
        match *op {
            Op::Admit { class, cap: own } => {
                let query = Query::new(curves[class % curves.len()].clone());
                let query = match own {
                    Some(c) => query.with_cap(c),
                    None => query,
                };
                let ticket = online.admit(&query).unwrap();
                prop_assert!(ticket.tokens() <= own.unwrap_or(cap));
                prop_assert_eq!(ticket.window(), online.window());
                granted += ticket.tokens();
                outstanding.push(ticket);
            }
            Op::Complete { pick, used_share } => {
                if outstanding.is_empty() {
                    continue;
                }
                let ticket = outstanding.swap_remove(pick % outstanding.len());
                let (tokens, current) = (ticket.tokens(), ticket.window() == online.window());
                let used = (tokens as f64 * used_share).round() as u64;
                let result = online.complete(ticket, used);
                if used > tokens {
                    let is_tokens_used_error = matches!(
                        result,
                        Err(Error::InvalidParameter {
                            field: "tokens_used",
                            ..
                        })
                    );
                    prop_assert!(is_tokens_used_error);
                } else {
                    let back = result.unwrap();
                    // The full unused part comes back, but only to its own window.
                    prop_assert_eq!(back, if current { tokens - used } else { 0 });
                    credited += back;
                }
            }
            Op::EndWindow => {
                let report = online.end_window();
                prop_assert_eq!(report.charged, granted - credited);
                prop_assert_eq!(report.refunded, credited);
                prop_assert!(report.charged <= budget);
                prop_assert!(report.next_price.is_finite() && report.next_price >= 0.0);
                granted = 0;
                credited = 0;
            }
        }
        // Net charge = budget − remaining: no negative and no double-counted budget.
        prop_assert!(credited <= granted);
        prop_assert!(granted - credited <= budget);
        prop_assert_eq!(online.remaining(), budget - (granted - credited));
    }
    Ok(())
}
