//! A fleet: three proxies on one Redis ledger and namespace, in front of the mock
//! engine, with concurrent traffic for a few windows. They share one window budget
//! (`tokens_per_window` is the fleet's total) and admit at one price.
//!
//! Needs the Redis on 127.0.0.1:6379 and fails (never skips) when it is not
//! reachable. Every test uses a namespace of its own.

#[path = "support/draws.rs"]
mod draws;
#[path = "support/harness.rs"]
mod harness;
#[path = "support/mock.rs"]
mod mock;

use clear_test_redis::{key, namespace, redis, PrivateRedis, REDIS_URL};
use draws::Draws;
use harness::{start, Running};
use mock::Mock;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The fleet's budget per window, shared by the three proxies.
const BUDGET: u64 = 40_000;
const WINDOW_S: f64 = 2.0;
const REPLICAS: usize = 3;
const CLIENTS_PER_REPLICA: usize = 3;

/// One client: requests with random thresholds (100 to 1 600 tokens) that would
/// think far past any grant (so they use all of it and little is refunded: the
/// window's charge is its grants), until `until`. Counts answers by status.
async fn client(proxy: Arc<Running>, seed: u64, until: Instant, counts: Arc<[AtomicU64; 3]>) {
    let mut draws = Draws::new(seed);
    while Instant::now() < until {
        let threshold = 100 + draws.next_u64() % 1500;
        let think = threshold * 20;
        let answer = proxy
            .chat(
                &format!("think={think} answer=40"),
                ", \"max_tokens\": 3000",
                &[("x-clear-threshold", &threshold.to_string())],
            )
            .await;
        let slot = match answer.status {
            200 => 0,
            429 => 1,
            _ => 2,
        };
        assert!(slot < 2, "status {}: {}", answer.status, answer.body);
        counts[slot].fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_proxies_share_one_window_budget_and_one_price() {
    let mut redis = redis();
    let namespace = namespace("fleet");
    let engine = Mock::start().await;
    let toml = format!(
        "dialect = \"vllm\"\nwindow = {WINDOW_S}\ntokens_per_window = {BUDGET}\nanswer_reserve = 32\n\
         ledger = \"{REDIS_URL}\"\nnamespace = \"{namespace}\"\n"
    );
    let window = Duration::from_secs_f64(WINDOW_S);
    let millis = window.as_millis() as u64;
    let unix_millis = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    // The ledger opens the next epoch from a twentieth of a window before a boundary.
    // Proxies built on both sides of that point would open different first epochs (the
    // later one funded), so build them well before it.
    let into = unix_millis() % millis;
    if into > millis - millis / 20 - millis / 4 {
        tokio::time::sleep(Duration::from_millis(millis - into + 50)).await;
    }
    let mut proxies = Vec::new();
    for _ in 0..REPLICAS {
        proxies.push(Arc::new(start(&engine.url(), &toml).await));
    }
    // A new namespace's first window is unfunded (Redis cannot tell it from a lost
    // one); traffic covers it and the two full windows after it. Should the builds have
    // run into the twentieth of a window before a boundary after all, the first epoch is
    // the next one: count from `now` plus that margin.
    let now = unix_millis();
    let first_end = ((now + millis / 20) / millis + 1) * millis;
    let until = Instant::now() + Duration::from_millis(first_end - now) + 2 * window;
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let mut clients = Vec::new();
    for (r, proxy) in proxies.iter().enumerate() {
        for c in 0..CLIENTS_PER_REPLICA {
            let seed = (r * 100 + c) as u64;
            clients.push(tokio::spawn(client(
                Arc::clone(proxy),
                seed,
                until,
                Arc::clone(&counts),
            )));
        }
    }
    for c in clients {
        c.await.unwrap();
    }
    // Let every proxy close the last window with traffic (and one more).
    tokio::time::sleep(window + window / 2).await;

    // Each proxy's closed windows, by fleet epoch.
    let mut epochs: BTreeMap<u64, Vec<(u64, f64)>> = BTreeMap::new();
    for p in &proxies {
        for w in p.proxy.recent_windows() {
            let epoch = w.epoch.expect("a fleet proxy's windows have epochs");
            assert_eq!(
                w.budget, BUDGET,
                "every proxy's window budget is the fleet's"
            );
            assert!(w.charged <= BUDGET);
            epochs
                .entry(epoch)
                .or_default()
                .push((w.charged, w.next_price));
        }
    }
    let closed_by_all: Vec<u64> = epochs
        .iter()
        .filter(|(_, ws)| ws.len() == REPLICAS)
        .map(|(&e, _)| e)
        .collect();
    assert!(
        closed_by_all.len() >= 3,
        "expected the unfunded window and two funded ones, got {epochs:?}"
    );
    eprintln!("fleet windows by epoch (charged, next price) per proxy: {epochs:?}");
    let mut busiest = 0;
    let mut priced = false;
    for &epoch in &closed_by_all {
        let windows = &epochs[&epoch];
        let charged: u64 = windows.iter().map(|w| w.0).sum();
        // The fleet's promise, from the proxies' own reports.
        assert!(
            charged <= BUDGET,
            "epoch {epoch}: the proxies charged {charged} > {BUDGET}: {windows:?}"
        );
        // The same from Redis: what is left of the epoch's budget after every lease
        // and release (no key: the epoch was never funded).
        let left: Option<u64> = redis::cmd("GET")
            .arg(key(&namespace, &format!("budget:{epoch}")))
            .query(&mut redis)
            .unwrap();
        match left {
            Some(left) => assert_eq!(
                BUDGET - left,
                charged,
                "epoch {epoch}: Redis says {} tokens were spent, the proxies {charged}",
                BUDGET - left
            ),
            None => assert_eq!(charged, 0, "epoch {epoch} was unfunded"),
        }
        busiest = busiest.max(charged);
        // One price: every proxy admits the next epoch at the price in Redis.
        let published: Option<String> = redis::cmd("GET")
            .arg(key(&namespace, &format!("price:{}", epoch + 1)))
            .query(&mut redis)
            .unwrap();
        if let Some(text) = published {
            let price: f64 = text.parse().unwrap();
            for w in windows {
                assert_eq!(w.1, price, "epoch {epoch}: {windows:?} vs Redis {price}");
            }
            priced |= price > 0.0;
        }
    }
    // The traffic asked for far more than the budget and used its grants whole: the
    // fleet spent most of it (so the bound above was tight),
    // turned requests away, and the shared price rose.
    assert!(
        busiest >= BUDGET * 3 / 4,
        "the busiest window charged only {busiest}: {epochs:?}"
    );
    let (ok, rejected) = (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
    );
    eprintln!("granted {ok}, rejected {rejected}");
    assert!(ok > 0 && rejected > 0, "granted {ok}, rejected {rejected}");
    assert!(
        priced,
        "no window cleared a positive fleet price: {epochs:?}"
    );

    // Each proxy exports its ledger's counters.
    for p in &proxies {
        let (status, text) = p.get("/metrics").await;
        assert_eq!(status, 200);
        let value = |name: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
        };
        assert!(value("clear_ledger_round_trips_total") > 0.0);
        assert!(value("clear_ledger_leases_total") > 0.0);
        assert_eq!(value("clear_ledger_errors_total"), 0.0);
        assert_eq!(value("clear_ledger_connected"), 1.0);
        assert!(value("clear_ledger_unfunded_windows_total") >= 1.0);
        assert_eq!(value("clear_window_budget_tokens"), BUDGET as f64);
        assert_eq!(value("clear_grants_in_flight"), 0.0);
    }

    for p in proxies {
        if let Ok(mut p) = Arc::try_unwrap(p) {
            p.shutdown().await.unwrap();
        }
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("clear-alloc:{{{namespace}}}:*"))
        .query(&mut redis)
        .unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL").arg(keys).query::<()>(&mut redis).unwrap();
    }
}

/// The binary's start-up with a ledger it cannot reach: exit code 2, one line naming
/// the URL, nothing served.
#[test]
fn an_unreachable_ledger_stops_the_start_with_exit_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_clear-proxy"))
        .args([
            "--upstream",
            "http://127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
            "--tokens-per-window",
            "1000",
            "--window",
            "1",
            "--ledger",
            "redis://127.0.0.1:1/0",
            "--namespace",
            "nobody-listens",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("clear-proxy: ledger: ") && stderr.contains("redis://127.0.0.1:1/0"),
        "{stderr}"
    );
}

/// A namespace without a ledger, or a ledger URL that is not Redis's, is a setting
/// error (exit code 2 naming it), checked before anything connects.
#[test]
fn ledger_settings_are_validated() {
    for (args, field) in [
        (vec!["--namespace", "a"], "namespace"),
        (vec!["--ledger", "http://127.0.0.1:6379"], "ledger"),
        (
            vec!["--ledger", REDIS_URL, "--namespace", "has space"],
            "namespace",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_clear-proxy"))
            .args([
                "--upstream",
                "http://127.0.0.1:9",
                "--tokens-per-window",
                "1000",
                "--window",
                "1",
            ])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("clear-proxy: config: {field}: ")),
            "{args:?}: {stderr}"
        );
    }
}

/// Redis goes away while a proxy runs: no request fails with anything but 200 or the
/// abandonment 429, a window without Redis grants nothing (the budget is never
/// overrun), the metrics show the outage, and grants resume after Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_refuses_beyond_the_held_lease_and_recovers() {
    let mut redis = PrivateRedis::start();
    let engine = Mock::start().await;
    let window = Duration::from_secs(1);
    let toml = format!(
        "dialect = \"vllm\"\nwindow = 1.0\ntokens_per_window = {BUDGET}\nanswer_reserve = 32\n\
         ledger = \"{}\"\nnamespace = \"outage\"\n",
        redis.url()
    );
    let mut proxy = start(&engine.url(), &toml).await;
    let ask = || proxy.chat("think=100 answer=10", ", \"max_tokens\": 500", &[]);
    // Past the namespace's unfunded first window.
    let mut granted = false;
    let deadline = Instant::now() + 4 * window;
    while !granted && Instant::now() < deadline {
        granted = ask().await.status == 200;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(granted, "no grant within four windows of the start");

    redis.kill();
    let windows_before = proxy.metric("clear_windows_total");
    let mut statuses = BTreeMap::new();
    // Through the rest of this window and all of the next (opened without Redis).
    while proxy.metric("clear_windows_total") < windows_before + 2.0 {
        // Read before sending: the window count rises only once the new window is
        // open, so a request sent after that is admitted in it.
        let after_boundary = proxy.metric("clear_windows_total") > windows_before;
        let a = ask().await;
        *statuses.entry((after_boundary, a.status)).or_insert(0u32) += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("(after the first window end without Redis, status) -> count: {statuses:?}");
    assert!(
        statuses.keys().all(|&(_, s)| s == 200 || s == 429),
        "{statuses:?}"
    );
    assert!(
        !statuses.contains_key(&(true, 200)),
        "a window opened without Redis granted tokens: {statuses:?}"
    );
    assert!(statuses.contains_key(&(true, 429)), "{statuses:?}");
    let (status, text) = proxy.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("clear_ledger_connected 0"), "{text}");
    assert!(!text.contains("clear_ledger_errors_total 0\n"), "{text}");

    redis.restart();
    // The restarted Redis has lost the namespace: the window in progress stays
    // unfunded, budgets resume at the next boundary (after the reconnect backoff).
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut back = false;
    while !back && Instant::now() < deadline {
        back = ask().await.status == 200;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "no grant within 12 s of Redis coming back");
    assert_eq!(proxy.metric("clear_ledger_connected"), 1.0);
    assert!(proxy.metric("clear_ledger_reconnects_total") >= 1.0);
    proxy.shutdown().await.unwrap();
}
