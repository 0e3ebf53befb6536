//! Many threads on one allocator: prepared and plain admissions, refunds held across
//! window boundaries and windows ended while the threads run, on budgets small
//! enough that the threads' shards run dry and are pooled within a window; and more
//! threads than shards, with refunds made on other threads and windows ended by a
//! timer thread. The books the threads keep must match the window reports exactly.

use clear_alloc::online::{OnlineAllocator, PreparedQuery, Ticket};
use clear_alloc::{Query, ShiftedSurge};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

#[macro_use]
mod soak_support;

/// What one thread saw: per request (window that paid, tokens granted, tokens
/// credited back), and its admission count.
struct Books {
    requests: Vec<(u64, u64, u64)>,
    admitted: u64,
}

fn classes() -> Vec<Query> {
    [
        (151.0, 101.0, 0.95),
        (142.0, 218.0, 0.75),
        (304.0, 280.0, 0.35),
    ]
    .into_iter()
    .map(|(t, w, c)| Query::new(ShiftedSurge::new(t, w, c).unwrap()).with_cap(2_000))
    .collect()
}

fn worker(
    online: &OnlineAllocator,
    prepared: &[PreparedQuery],
    seed: u64,
    requests: u64,
    progress: &AtomicU64,
) -> Books {
    let mut rng = StdRng::seed_from_u64(seed);
    let queries = classes();
    let mut books = Books {
        requests: Vec::new(),
        admitted: 0,
    };
    let mut held: Vec<Ticket> = Vec::new();
    let finish = |ticket: Ticket, rng: &mut StdRng, books: &mut Books| {
        let (window, tokens) = (ticket.window(), ticket.tokens());
        let used = rng.random_range(0..=tokens);
        let back = online.complete(ticket, used).unwrap();
        assert!(back == 0 || back == tokens - used, "partial refund {back}");
        books.requests.push((window, tokens, back));
    };
    for _ in 0..requests {
        let class = rng.random_range(0..prepared.len());
        let ticket = if rng.random::<f64>() < 0.7 {
            online.admit_prepared(&prepared[class]).unwrap()
        } else {
            // A request of its own size: the shard may hold too little for it.
            let cap = rng.random_range(0..6_000);
            online.admit(&queries[class].clone().with_cap(cap)).unwrap()
        };
        assert!(ticket.tokens() <= online.window_budget());
        books.admitted += 1;
        progress.fetch_add(1, Ordering::Release);
        held.push(ticket);
        // Completions in a shuffled order, some after the window that paid ended.
        if held.len() > 16 || rng.random::<f64>() < 0.4 {
            let ticket = held.swap_remove(rng.random_range(0..held.len()));
            finish(ticket, &mut rng, &mut books);
        }
    }
    for ticket in held {
        finish(ticket, &mut rng, &mut books);
    }
    books
}

proptest! {
    // A fixed seed keeps CI deterministic (the thread schedule is not, which is the
    // point: the checks hold under any interleaving).
    #![proptest_config(soak_support::config(12, 0xc1ea0011))]

    /// Each window's report charges exactly what its tickets were granted less what
    /// was credited back to it, never more than the budget; the counts add up over
    /// the windows; and once every request is done, the tokens the allocator still
    /// holds are the budget less the open window's charge.
    #[test]
    fn threads_sharing_an_allocator_keep_exact_books(
        threads in 2u64..=6,
        budget in 2_000u64..200_000,
        requests in 200u64..2_000,
        windows in 0u64..6,
        price in prop_oneof![Just(0.0), 1e-5f64..1e-3],
    ) {
        let online = Arc::new(
            OnlineAllocator::builder()
                .tokens_per_window(budget)
                .default_cap(2_000)
                .initial_price(price)
                .samples_per_window(64)
                .build()
                .unwrap(),
        );
        let prepared: Arc<Vec<_>> = Arc::new(classes().iter().map(|q| online.prepare(q)).collect());
        let progress = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (online, prepared, progress) =
                    (Arc::clone(&online), Arc::clone(&prepared), Arc::clone(&progress));
                std::thread::spawn(move || {
                    worker(&online, &prepared, 0x7e4d + t, requests, &progress)
                })
            })
            .collect();
        // Windows end at fixed shares of the admissions, not on a clock.
        let total = threads * requests;
        let mut reports = Vec::new();
        for k in 1..=windows {
            let due = total * k / (windows + 1);
            while progress.load(Ordering::Acquire) < due && !workers.iter().any(|w| w.is_finished()) {
                std::thread::yield_now();
            }
            reports.push(online.end_window());
        }
        let books: Vec<Books> = workers.into_iter().map(|w| w.join().unwrap()).collect();

        let mut by_window: HashMap<u64, (u64, u64)> = HashMap::new();
        for &(window, tokens, back) in books.iter().flat_map(|b| &b.requests) {
            let entry = by_window.entry(window).or_default();
            entry.0 += tokens;
            entry.1 += back;
        }
        // Every ticket is completed: what the open window holds is its budget less
        // its net grants, wherever (pool or shards) the tokens sit.
        let open = online.window();
        let (granted, back) = by_window.get(&open).copied().unwrap_or_default();
        prop_assert_eq!(online.remaining(), budget - (granted - back));
        reports.push(online.end_window());

        for (i, report) in reports.iter().enumerate() {
            prop_assert_eq!(report.window, i as u64);
            prop_assert!(report.charged <= budget, "{:?}", report);
            let (granted, back) = by_window.get(&report.window).copied().unwrap_or_default();
            prop_assert_eq!(report.charged, granted - back, "{:?}", report);
        }
        let sum = |f: fn(&clear_alloc::online::WindowReport) -> u64| reports.iter().map(f).sum::<u64>();
        let requests_made: Vec<_> = books.iter().flat_map(|b| &b.requests).collect();
        prop_assert_eq!(sum(|r| r.arrivals), books.iter().map(|b| b.admitted).sum::<u64>());
        prop_assert_eq!(
            sum(|r| r.abandoned),
            requests_made.iter().filter(|r| r.1 == 0).count() as u64
        );
        prop_assert_eq!(sum(|r| r.refunded), requests_made.iter().map(|r| r.2).sum::<u64>());
    }
}

soak_properties!(threads_sharing_an_allocator_keep_exact_books);

/// What the completing threads and the admitting threads saw, by window: tokens
/// granted and tokens credited back.
type Ledger = Arc<Mutex<HashMap<u64, (u64, u64)>>>;

fn complete_into(online: &OnlineAllocator, ticket: Ticket, used: u64, ledger: &Ledger) {
    let (window, tokens) = (ticket.window(), ticket.tokens());
    let back = online.complete(ticket, used).unwrap();
    let mut ledger = ledger.lock().unwrap();
    let entry = ledger.entry(window).or_default();
    entry.0 += tokens;
    entry.1 += back;
}

/// More admitting threads than shards (so two share one), half the tickets completed
/// by other threads (so refunds land in other threads' shards), and windows ended by
/// a thread of their own every 300 µs while the others run: each window still charges
/// exactly its tickets' grants less their refunds, never more than its budget.
#[test]
fn shared_shards_cross_thread_refunds_and_a_window_timer_keep_exact_books() {
    const ADMITTING: u64 = 12;
    const REQUESTS: u64 = 1_500;
    for (round, budget) in [2_000u64, 7_777, 40_000, 100_000].into_iter().enumerate() {
        let online = Arc::new(
            OnlineAllocator::builder()
                .tokens_per_window(budget)
                .default_cap(2_000)
                .initial_price(0.0)
                .samples_per_window(16)
                .build()
                .unwrap(),
        );
        let ledger: Ledger = Arc::default();
        let (handoff, tickets) = mpsc::channel::<Ticket>();
        let tickets = Arc::new(Mutex::new(tickets));
        let mut threads = Vec::new();
        for t in 0..ADMITTING {
            let (online, handoff, ledger) =
                (Arc::clone(&online), handoff.clone(), Arc::clone(&ledger));
            threads.push(std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(0x5ba4 + 100 * round as u64 + t);
                let query = classes()[0].clone();
                for i in 0..REQUESTS {
                    let cap = rng.random_range(0..3_000);
                    let ticket = online.admit(&query.clone().with_cap(cap)).unwrap();
                    if i % 2 == 0 {
                        handoff.send(ticket).unwrap();
                    } else {
                        let used = rng.random_range(0..=ticket.tokens());
                        complete_into(&online, ticket, used, &ledger);
                    }
                }
            }));
        }
        drop(handoff);
        for c in 0..3 {
            let (online, tickets, ledger) = (
                Arc::clone(&online),
                Arc::clone(&tickets),
                Arc::clone(&ledger),
            );
            threads.push(std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(0xc0de + c);
                loop {
                    let next = tickets.lock().unwrap().recv();
                    let Ok(ticket) = next else { break };
                    let used = rng.random_range(0..=ticket.tokens());
                    complete_into(&online, ticket, used, &ledger);
                }
            }));
        }
        let done = Arc::new(AtomicBool::new(false));
        let timer = {
            let (online, done) = (Arc::clone(&online), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut reports = Vec::new();
                while !done.load(Ordering::Acquire) {
                    std::thread::sleep(std::time::Duration::from_micros(300));
                    reports.push(online.end_window());
                }
                reports
            })
        };
        for thread in threads {
            thread.join().unwrap();
        }
        done.store(true, Ordering::Release);
        let mut reports = timer.join().unwrap();
        let ledger = ledger.lock().unwrap();
        let (granted, back) = ledger.get(&online.window()).copied().unwrap_or_default();
        assert_eq!(
            online.remaining(),
            budget - (granted - back),
            "budget {budget}"
        );
        reports.push(online.end_window());
        for report in &reports {
            let (granted, back) = ledger.get(&report.window).copied().unwrap_or_default();
            assert!(report.charged <= budget, "{report:?}");
            assert_eq!(report.charged, granted - back, "{report:?}");
        }
        let arrivals: u64 = reports.iter().map(|r| r.arrivals).sum();
        assert_eq!(arrivals, ADMITTING * REQUESTS, "budget {budget}");
    }
}
