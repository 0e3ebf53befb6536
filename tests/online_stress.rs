//! Soak tier (`cargo test --release --tests -- --ignored`): the online allocator under
//! wall-clock load for a bounded time — several threads admitting and completing, a
//! timer thread ending windows on its own schedule, and completions held back across
//! window boundaries (late refunds, which must not reach a closed window). Checked
//! exactly against every thread's ledger: each window's charge is what its tickets were
//! granted less what was credited back to it, never more than its budget, and the
//! refund and arrival counts add up over all windows.
//!
//! `CLEAR_ALLOC_SOAK_SECS` sets the duration (default 60 s).

use clear_alloc::online::{OnlineAllocator, Ticket};
use clear_alloc::{Query, ShiftedSurge};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WORKERS: u64 = 4;
const BUDGET: u64 = 200_000;
const WINDOW: Duration = Duration::from_millis(5);

/// One finished request: the window that paid, tokens granted, tokens credited back,
/// tokens left unused.
type Entry = (u64, u64, u64, u64);

fn worker(online: &OnlineAllocator, stop: &AtomicBool, seed: u64) -> (Vec<Entry>, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ledger = Vec::new();
    let mut admitted = 0;
    // Tickets completed later: some right away, some after sleeping past a boundary.
    let mut held: Vec<(Ticket, Instant)> = Vec::new();
    let finish = |ticket: Ticket, rng: &mut StdRng, ledger: &mut Vec<Entry>| {
        let (window, tokens) = (ticket.window(), ticket.tokens());
        let used = rng.random_range(0..=tokens);
        let back = online.complete(ticket, used).unwrap();
        assert!(back == 0 || back == tokens - used, "partial refund {back}");
        ledger.push((window, tokens, back, tokens - used));
    };
    while !stop.load(Ordering::Relaxed) {
        let threshold = rng.random_range(0.0..2_000.0);
        let width = rng.random_range(10.0..800.0);
        let ceiling = rng.random_range(0.05..1.0);
        let mut query = Query::new(ShiftedSurge::new(threshold, width, ceiling).unwrap())
            .with_weight(rng.random_range(0.1..4.0))
            .unwrap();
        if rng.random::<f64>() < 0.2 {
            query = query.with_cap(rng.random_range(0..8_192));
        }
        let ticket = online.admit(&query).unwrap();
        admitted += 1;
        // Late completions: one in 50 is held for 1–3 windows.
        let due = if rng.random::<f64>() < 0.02 {
            Instant::now() + WINDOW * rng.random_range(1..=3)
        } else {
            Instant::now()
        };
        held.push((ticket, due));
        let now = Instant::now();
        let mut i = 0;
        while i < held.len() {
            if held[i].1 <= now && (held.len() > 64 || rng.random::<f64>() < 0.5) {
                let (ticket, _) = held.swap_remove(i);
                finish(ticket, &mut rng, &mut ledger);
            } else {
                i += 1;
            }
        }
    }
    for (ticket, _) in held {
        finish(ticket, &mut rng, &mut ledger);
    }
    (ledger, admitted)
}

#[test]
#[ignore = "soak tier: cargo test --release --tests -- --ignored"]
fn windows_stay_within_budget_under_threads_a_timer_and_late_refunds() {
    let seconds: u64 = std::env::var("CLEAR_ALLOC_SOAK_SECS")
        .map(|s| s.parse().expect("CLEAR_ALLOC_SOAK_SECS is a whole number"))
        .unwrap_or(60);
    let online = Arc::new(
        OnlineAllocator::builder()
            .tokens_per_window(BUDGET)
            .default_cap(8_192)
            .initial_price(1e-4)
            .refund_aware(true)
            .build()
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|t| {
            let (online, stop) = (Arc::clone(&online), Arc::clone(&stop));
            std::thread::spawn(move || worker(&online, &stop, 0x50a4 + t))
        })
        .collect();
    let timer = {
        let (online, stop) = (Arc::clone(&online), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reports = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(WINDOW);
                reports.push(online.end_window());
            }
            reports
        })
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline && !workers.iter().any(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let mut reports = timer.join().unwrap();
    let (ledgers, admitted): (Vec<_>, Vec<_>) =
        workers.into_iter().map(|w| w.join().unwrap()).unzip();
    reports.push(online.end_window());

    let mut by_window: HashMap<u64, (u64, u64)> = HashMap::new();
    for &(window, tokens, back, _) in ledgers.iter().flatten() {
        let entry = by_window.entry(window).or_default();
        entry.0 += tokens;
        entry.1 += back;
    }
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(report.window, i as u64);
        assert!(report.charged <= BUDGET, "{report:?}");
        let (granted, back) = by_window.get(&report.window).copied().unwrap_or_default();
        assert_eq!(report.charged, granted - back, "{report:?}");
        assert!(report.next_price.is_finite() && report.next_price >= 0.0);
    }
    let arrivals: u64 = reports.iter().map(|r| r.arrivals).sum();
    assert_eq!(arrivals, admitted.iter().sum::<u64>());
    let refunded: u64 = reports.iter().map(|r| r.refunded).sum();
    let credited: u64 = ledgers.iter().flatten().map(|e| e.2).sum();
    assert_eq!(refunded, credited);
    // Enough happened for the checks to mean something: many windows, some of them
    // spent down, and refunds both credited and refused (late).
    let late = ledgers
        .iter()
        .flatten()
        .filter(|e| e.3 > 0 && e.2 == 0)
        .count();
    eprintln!(
        "{seconds} s: {} windows, {arrivals} admissions, {credited} tokens refunded, \
         {late} refunds refused (their window had closed)",
        reports.len()
    );
    assert!(reports.len() > 10 * seconds as usize);
    assert!(reports.iter().any(|r| r.charged > BUDGET / 2));
    assert!(credited > 0 && late > 0);
}
