//! The Redis ledger against the machine's Redis (127.0.0.1:6379; the tests fail, not
//! skip, when it is not reachable): atomic leases, releases, the restart rule, one
//! price, and the behaviour when Redis is unreachable.

mod common;

use clear_alloc::online::{BudgetLedger, OnlineAllocator, WindowReport};
use clear_alloc_redis::{Clock, RedisLedger};
use common::*;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

fn ledger(url: &str, ns: &str, replica: &str) -> RedisLedger {
    RedisLedger::builder(url)
        .namespace(ns)
        .window(Duration::from_secs(1))
        .clock(Clock::Counted)
        .replica_id(replica)
        .max_chunk_share(0.1)
        .build()
        .unwrap()
}

fn allocator(ledger: Arc<RedisLedger>, budget: u64) -> OnlineAllocator {
    OnlineAllocator::builder()
        .tokens_per_window(budget)
        .default_cap(2048)
        .history_windows(2)
        .ledger(ledger)
        .build()
        .unwrap()
}

/// Ends every replica's window at once (as a fleet's timers do).
fn end_all(fleet: &[OnlineAllocator]) -> Vec<WindowReport> {
    std::thread::scope(|s| {
        let handles: Vec<_> = fleet.iter().map(|a| s.spawn(|| a.end_window())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_leases_grant_exactly_the_budget_and_never_more() {
    let mut con = redis();
    let ns = namespace("concurrent");
    let budget = 1_000_000;
    let ledgers: Vec<_> = (0..6)
        .map(|i| ledger(REDIS_URL, &ns, &format!("r{i}")))
        .collect();
    // The namespace's first window is unfunded (the restart rule); window 1 is not.
    assert_eq!(ledgers[0].open(0, budget).tokens, 0);
    let granted: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = ledgers
            .iter()
            .map(|l| {
                s.spawn(move || {
                    let mut lease = l.open(1, budget);
                    let mut total = lease.tokens;
                    while lease.refill_below > 0 {
                        lease = l.extend(1, 0);
                        total += lease.tokens;
                    }
                    total
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(granted, budget);
    assert_eq!(get_i64(&mut con, &key(&ns, "budget:1")), Some(0));
    let members: u64 = redis::cmd("SCARD")
        .arg(key(&ns, "members:1"))
        .query(&mut con)
        .unwrap();
    assert_eq!(members, 6);
    wipe(&mut con, &ns);
}

#[test]
fn a_fleet_charges_leased_minus_released_and_redis_agrees() {
    let mut con = redis();
    let ns = namespace("charges");
    let budget = 200_000;
    let fleet: Vec<_> = (0..2)
        .map(|i| allocator(Arc::new(ledger(REDIS_URL, &ns, &format!("r{i}"))), budget))
        .collect();
    end_all(&fleet); // past the unfunded first window
    let curves = curves(1, 300);
    for (i, c) in curves.iter().enumerate() {
        let ticket = fleet[i % 2].admit(&query(*c)).unwrap();
        let used = ticket.tokens() / 2;
        fleet[i % 2].complete(ticket, used).unwrap();
    }
    let reports = end_all(&fleet);
    let charged: u64 = reports.iter().map(|r| r.charged).sum();
    assert!(charged > 0 && charged <= budget, "charged {charged}");
    // Every lease of window 1 that was not charged came back to Redis.
    let left = get_i64(&mut con, &key(&ns, "budget:1")).unwrap();
    assert_eq!(left as u64, budget - charged);
    wipe(&mut con, &ns);
}

#[test]
fn lost_state_mid_window_leaves_that_window_unfunded_and_the_next_one_full() {
    let mut con = redis();
    let ns = namespace("lost");
    let budget = 100_000;
    let redis_ledger = Arc::new(ledger(REDIS_URL, &ns, "r0"));
    let online = allocator(redis_ledger.clone(), budget);
    assert_eq!(
        online.remaining(),
        0,
        "first window of a namespace: unfunded"
    );
    online.end_window();
    let held = online.remaining();
    assert!(held > 0 && held <= budget / 10, "one chunk held: {held}");
    // Redis loses the namespace (a restart without persistence).
    wipe(&mut con, &ns);
    let mut granted = 0;
    for c in curves(2, 2_000) {
        granted += online.admit(&query(c)).unwrap().tokens();
    }
    // Only the held lease was spent: the lost window's budget was not re-created.
    assert!(granted <= held, "granted {granted} > held {held}");
    assert_eq!(get_i64(&mut con, &key(&ns, "budget:1")), None);
    assert_eq!(get_i64(&mut con, &key(&ns, "gen")), Some(1));
    assert!(redis_ledger.stats().unfunded_windows >= 2);
    let report = online.end_window();
    assert_eq!(report.charged, granted);
    // The next window is funded again (recovery within one window boundary).
    assert!(online.remaining() > 0);
    let left = get_i64(&mut con, &key(&ns, "budget:2")).unwrap() as u64;
    assert_eq!(left + online.remaining(), budget);
    wipe(&mut con, &ns);
}

#[test]
fn replicas_admit_at_one_price_cleared_by_one_of_them() {
    let mut con = redis();
    let ns = namespace("price");
    let budget = 60_000;
    let ledgers: Vec<_> = (0..3)
        .map(|i| Arc::new(ledger(REDIS_URL, &ns, &format!("r{i}"))))
        .collect();
    let fleet: Vec<_> = ledgers
        .iter()
        .map(|l| allocator(l.clone(), budget))
        .collect();
    end_all(&fleet);
    for (i, c) in curves(3, 900).into_iter().enumerate() {
        let _ = fleet[i % 3].admit(&query(c)).unwrap();
    }
    let reports = end_all(&fleet);
    let price = reports[0].next_price;
    assert!(
        price > 0.0,
        "900 requests for 60 000 tokens: the budget is scarce"
    );
    for r in &reports {
        assert_eq!(r.next_price, price);
    }
    let cleared: u64 = ledgers.iter().map(|l| l.stats().prices_cleared).sum();
    let read: u64 = ledgers.iter().map(|l| l.stats().prices_read).sum();
    assert_eq!((cleared, read), (2, 4), "one clearer per window boundary");
    let published: f64 = redis::cmd("GET")
        .arg(key(&ns, "price:2"))
        .query::<String>(&mut con)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(published, price);
    // The merged demand is three replicas' (one third each): a lone replica's own
    // re-clear of its third would have found a lower price.
    let hlen: u64 = redis::cmd("HLEN")
        .arg(key(&ns, "demand:1"))
        .query(&mut con)
        .unwrap();
    assert_eq!(hlen, 3);
    wipe(&mut con, &ns);
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn unreachable_redis_refuses_without_panicking_and_says_so() {
    let url = format!("redis://127.0.0.1:{}/0", closed_port());
    let ledger = Arc::new(ledger(&url, &namespace("down"), "r0"));
    let err = ledger.ping().unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");
    let online = allocator(ledger.clone(), 100_000);
    for c in curves(4, 50) {
        assert!(online.admit(&query(c)).unwrap().is_abandoned());
    }
    let report = online.end_window();
    assert_eq!(report.charged, 0);
    let stats = ledger.stats();
    assert!(stats.failures >= 1 && !stats.connected, "{stats:?}");
}

#[test]
fn the_fallback_share_bounds_what_a_cut_off_replica_grants_per_window() {
    let url = format!("redis://127.0.0.1:{}/0", closed_port());
    let ledger = Arc::new(
        RedisLedger::builder(&url)
            .namespace("down-fallback")
            .window(Duration::from_secs(1))
            .clock(Clock::Counted)
            .fallback_share(5_000)
            .build()
            .unwrap(),
    );
    let online = allocator(ledger.clone(), 100_000);
    for _ in 0..3 {
        let mut granted = 0;
        for c in curves(5, 200) {
            granted += online.admit(&query(c)).unwrap().tokens();
        }
        assert!(granted > 0 && granted <= 5_000, "granted {granted}");
        assert!(online.end_window().charged <= 5_000);
    }
    assert!(ledger.stats().fallback_tokens <= 3 * 5_000 + 5_000);
}

#[test]
fn a_replica_joining_a_running_fleet_starts_at_the_fleets_price() {
    let mut con = redis();
    let ns = namespace("join");
    let _: () = redis::cmd("SET")
        .arg(key(&ns, "price:0"))
        .arg("0.00042")
        .query(&mut con)
        .unwrap();
    let online = OnlineAllocator::builder()
        .tokens_per_window(10_000)
        .ledger(Arc::new(ledger(REDIS_URL, &ns, "late")))
        .build()
        .unwrap();
    assert_eq!(online.price(), 4.2e-4);
    // Without a published price the builder's initial price stands.
    let fresh_ns = namespace("join-fresh");
    let fresh = OnlineAllocator::builder()
        .tokens_per_window(10_000)
        .initial_price(1e-4)
        .ledger(Arc::new(ledger(REDIS_URL, &fresh_ns, "r0")))
        .build()
        .unwrap();
    assert_eq!(fresh.price(), 1e-4);
    wipe(&mut con, &ns);
    wipe(&mut con, &fresh_ns);
}
