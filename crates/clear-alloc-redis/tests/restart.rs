//! A Redis restart mid-window, on a redis-server of the test's own (the machine's
//! Redis is shared, so it is not the one restarted): the fleet never charges a window
//! more than its budget, and budgets resume at the next window.

mod common;

use clear_alloc::online::{OnlineAllocator, WindowReport};
use clear_alloc_redis::{Clock, RedisLedger};
use common::*;
use std::sync::Arc;
use std::time::Duration;

const BUDGET: u64 = 200_000;

fn end_all(fleet: &[OnlineAllocator]) -> Vec<WindowReport> {
    std::thread::scope(|s| {
        let handles: Vec<_> = fleet.iter().map(|a| s.spawn(|| a.end_window())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Admits `arrivals` requests round-robin over the fleet; each uses half its grant.
/// Returns the tokens used (what the fleet's windows are charged).
fn serve(fleet: &[OnlineAllocator], seed: u64, arrivals: usize) -> u64 {
    let mut spent = 0;
    for (i, c) in curves(seed, arrivals).into_iter().enumerate() {
        let online = &fleet[i % fleet.len()];
        let ticket = online.admit(&query(c)).unwrap();
        let used = ticket.tokens() / 2;
        spent += used;
        online.complete(ticket, used).unwrap();
    }
    spent
}

#[test]
fn a_restart_mid_window_never_overruns_and_budgets_resume_at_the_next_window() {
    let mut server = PrivateRedis::start();
    let url = server.url();
    let ledgers: Vec<_> = (0..3)
        .map(|i| {
            Arc::new(
                RedisLedger::builder(&url)
                    .namespace("restart")
                    .window(Duration::from_secs(1))
                    .clock(Clock::Counted)
                    .replica_id(&format!("r{i}"))
                    .io_timeout(Duration::from_millis(100))
                    .max_backoff(Duration::from_millis(100))
                    .max_chunk_share(0.1)
                    .build()
                    .unwrap(),
            )
        })
        .collect();
    let fleet: Vec<_> = ledgers
        .iter()
        .map(|l| {
            OnlineAllocator::builder()
                .tokens_per_window(BUDGET)
                .default_cap(2048)
                .history_windows(2)
                .ledger(l.clone())
                .build()
                .unwrap()
        })
        .collect();
    let mut windows = Vec::new();
    for window in 0..7u64 {
        if window == 3 {
            serve(&fleet, window, 300);
            let held: u64 = fleet.iter().map(|a| a.remaining()).sum();
            server.kill();
            server.restart(); // empty: no persistence
                              // Past the backoff, so the next refill reaches the new server.
            std::thread::sleep(Duration::from_millis(250));
            let after = serve(&fleet, 100 + window, 900);
            // Only the leases held when Redis lost its state were spent after it.
            assert!(
                after <= held,
                "spent {after} after the restart, held {held}"
            );
        } else {
            serve(&fleet, window, 1_200);
        }
        windows.push(end_all(&fleet));
    }
    let mut con = connect(&url);
    for (w, reports) in windows.iter().enumerate() {
        let charged: u64 = reports.iter().map(|r| r.charged).sum();
        assert!(charged <= BUDGET, "window {w}: charged {charged}");
        let funded = charged > 0;
        // Window 0 is the namespace's first (unfunded); 1, 2 normal; 3 restarted
        // mid-way (charged only what was held); 4 on: funded again.
        assert_eq!(funded, w != 0, "window {w}: charged {charged}");
        if w >= 4 {
            assert!(charged > BUDGET / 2, "window {w} recovered only {charged}");
        }
    }
    // Redis remembers the restart's window as the generation and never re-created its
    // budget.
    assert_eq!(get_i64(&mut con, &key("restart", "gen")), Some(3));
    assert_eq!(get_i64(&mut con, &key("restart", "budget:3")), None);
    let reconnects: u64 = ledgers.iter().map(|l| l.stats().reconnects).sum();
    assert!(reconnects >= 3, "every replica reconnected: {reconnects}");
}
