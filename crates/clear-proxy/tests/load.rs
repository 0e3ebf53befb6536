//! Under load: 520 concurrent requests per window through the proxy, four windows,
//! on 127.0.0.1, with a barrier in the mock engine so that every request of a window
//! is decided before any completes (the most demanding interleaving for the budget).
//!
//! Checks, per window: the charge never exceeds the budget; the charge equals the
//! tokens the engine reported for the granted requests (so every grant was settled
//! exactly once, and every refund reached its window); no grant is left open.
//!
//! Accuracy: each request carries its true curve in `x-clear-*` headers (a perfect
//! threshold predictor); its accuracy is the *expected* accuracy of its thinking
//! grant on that curve, `U(grant)` (0 when rejected). The same trace goes, window by
//! window in the same order, through the core's `OnlineAllocator` directly (admit the
//! whole window, then complete each request with the tokens the engine would use,
//! then end the window). The proxy's mean accuracy must not fall more than 2 % below
//! it.

#[path = "support/draws.rs"]
mod draws;
#[path = "support/harness.rs"]
mod harness;
#[path = "support/mock.rs"]
mod mock;

use clear_alloc::online::OnlineAllocator;
use clear_alloc::{Query, ShiftedSurge};
use draws::Draws;
use harness::start;
use mock::Mock;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WINDOWS: usize = 4;
const PER_WINDOW: usize = 520;
const BUDGET: u64 = 220_000;
/// Both start near the cleared price, so that no window is first-come-first-served
/// at price 0 (a lottery over arrival order, which differs between the two).
const INITIAL_PRICE: f64 = 3.5e-4;
const RESERVE: u64 = 32;
const ANSWER: u64 = 20;
const CLIENT_MAX: u64 = 4000;
/// The whole window is sampled, so the re-cleared price does not depend on the
/// order of arrivals (which differs between the proxy and the sequential reference).
const SAMPLES: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Request {
    curve: ShiftedSurge,
    think: u64,
    stream: bool,
}

/// Easy, medium and hard requests (thresholds jittered ±30 %), a fifth streaming;
/// each would think past its threshold by up to three widths if unbounded.
fn trace() -> Vec<Request> {
    let mut s = Draws::new(0xC1EA_10AD);
    let kinds = [
        (150.0, 100.0, 0.95),
        (400.0, 300.0, 0.7),
        (1200.0, 800.0, 0.35),
    ];
    (0..WINDOWS * PER_WINDOW)
        .map(|i| {
            let (t, w, p) = kinds[(s.uniform() * 3.0) as usize % 3];
            let threshold = t * (0.7 + 0.6 * s.uniform());
            let curve = ShiftedSurge::new(threshold.round(), w, p).unwrap();
            let think = (threshold + 3.0 * w * s.uniform()) as u64;
            Request {
                curve,
                think,
                stream: i % 5 == 0,
            }
        })
        .collect()
}

/// Tokens the mock engine generates for a completion grant (thinking stops at the
/// thinking budget, the answer fits the rest).
fn used(r: &Request, completion: u64) -> u64 {
    let thinking = r.think.min(completion - RESERVE);
    thinking + ANSWER.min(completion - thinking)
}

/// The library's online allocator on the same trace.
fn reference(trace: &[Request]) -> (f64, Vec<u64>) {
    let online = OnlineAllocator::builder()
        .tokens_per_window(BUDGET)
        .default_cap(8192)
        .samples_per_window(SAMPLES)
        .initial_price(INITIAL_PRICE)
        .build()
        .unwrap();
    let mut utility = 0.0;
    let mut charged = Vec::new();
    for window in trace.chunks(PER_WINDOW) {
        let tickets: Vec<_> = window
            .iter()
            .map(|r| {
                let shifted = r
                    .curve
                    .with_threshold(r.curve.threshold() + RESERVE as f64)
                    .unwrap();
                online
                    .admit(&Query::new(shifted).with_cap(CLIENT_MAX))
                    .unwrap()
            })
            .collect();
        for (r, ticket) in window.iter().zip(tickets) {
            let tokens = ticket.tokens();
            if tokens <= RESERVE {
                online.complete(ticket, 0).unwrap();
                continue;
            }
            utility += r.curve.utility((tokens - RESERVE) as f64);
            online.complete(ticket, used(r, tokens)).unwrap();
        }
        let report = online.end_window();
        eprintln!(
            "library window: charged {} arrivals {} abandoned {} next price {:.3e}",
            report.charged, report.arrivals, report.abandoned, report.next_price
        );
        charged.push(report.charged);
    }
    (utility / trace.len() as f64, charged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_twenty_concurrent_requests_per_window_stay_within_budget_and_match_the_library(
) {
    let started = Instant::now();
    let engine = Mock::start().await;
    let proxy = Arc::new(
        start(
            &engine.url(),
            &format!("tokens_per_window = {BUDGET}\nanswer_reserve = {RESERVE}\ndialect = \"vllm\"\nsamples_per_window = {SAMPLES}\ninitial_price = {INITIAL_PRICE}"),
        )
        .await,
    );
    let trace = trace();
    let mut utility = 0.0;
    let mut decided_total = 0usize;
    let mut peak_in_flight = 0.0f64;
    for (w, window) in trace.chunks(PER_WINDOW).enumerate() {
        engine.hold();
        let tasks: Vec<_> = window
            .iter()
            .map(|r| {
                let proxy = Arc::clone(&proxy);
                let r = *r;
                tokio::spawn(async move {
                    let c = r.curve;
                    let headers = [
                        ("x-clear-threshold", c.threshold().to_string()),
                        ("x-clear-width", c.width().to_string()),
                        ("x-clear-ceiling", c.ceiling().to_string()),
                    ];
                    let headers: Vec<(&str, &str)> =
                        headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let stream = if r.stream {
                        ", \"stream\": true, \"stream_options\": {\"include_usage\": true}"
                    } else {
                        ""
                    };
                    let extra = format!(", \"max_tokens\": {CLIENT_MAX}{stream}");
                    let prompt = format!("think={} answer={ANSWER} gated", r.think);
                    proxy.chat(&prompt, &extra, &headers).await
                })
            })
            .collect();
        // Every request decided (granted ones waiting at the engine) before any
        // completes.
        let decided = || {
            proxy.metric("clear_requests_total{decision=\"granted\"}")
                + proxy.metric("clear_requests_total{decision=\"rejected\"}")
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while decided() < (decided_total + PER_WINDOW) as f64 {
            assert!(
                Instant::now() < deadline,
                "window {w}: requests not decided in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let granted_now = proxy.metric("clear_requests_total{decision=\"granted\"}") as u64;
        while engine.requests().len() < granted_now as usize {
            assert!(
                Instant::now() < deadline,
                "window {w}: granted requests did not reach the engine"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak_in_flight = peak_in_flight.max(proxy.metric("clear_grants_in_flight"));
        engine.release();
        let mut reported = 0u64;
        for (task, r) in tasks.into_iter().zip(window) {
            let answer = task.await.unwrap();
            match answer.status {
                200 => {
                    let grant = answer.grant();
                    utility += r.curve.utility(grant as f64);
                    let usage = if r.stream {
                        answer
                            .events()
                            .iter()
                            .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
                            .find_map(|v| v["usage"]["completion_tokens"].as_u64())
                            .expect("a usage chunk")
                    } else {
                        answer.json()["usage"]["completion_tokens"]
                            .as_u64()
                            .unwrap()
                    };
                    assert_eq!(usage, used(r, grant + RESERVE));
                    reported += usage;
                }
                429 => {}
                other => panic!("window {w}: status {other}: {}", answer.body),
            }
        }
        let granted_total = granted_now;
        decided_total += PER_WINDOW;
        assert_eq!(proxy.metric("clear_grants_in_flight"), 0.0, "window {w}");
        assert_eq!(
            proxy.metric("clear_grants_settled_total") as u64,
            granted_total
        );
        let report = proxy.proxy.end_window();
        assert!(report.charged <= report.budget, "window {w}: {report:?}");
        assert_eq!(
            report.charged, reported,
            "window {w}: charge vs engine usage"
        );
        eprintln!(
            "window {w}: charged {} of {}, {} granted so far, next price {:.3e}",
            report.charged, report.budget, granted_total, report.next_price
        );
    }
    let generated = engine
        .record
        .generated
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(generated as f64, proxy.metric("clear_used_tokens_total"));
    let proxy_accuracy = utility / trace.len() as f64;
    let (library_accuracy, _) = reference(&trace);
    eprintln!(
        "accuracy: proxy {proxy_accuracy:.4}, library {library_accuracy:.4} \
         (ratio {:.4}); peak grants in flight {peak_in_flight}; {:.1} s",
        proxy_accuracy / library_accuracy,
        started.elapsed().as_secs_f64()
    );
    assert!(peak_in_flight >= 100.0);
    // The proxy decides a window's requests in the order the concurrent clients
    // reach it, the library in trace order; which requests the window rations when
    // it runs dry depends on that order, and a lucky order has put the proxy 2.07 %
    // *above* the library (1 run in ~5 on a loaded machine). Falling behind is what
    // the bar guards against; the upper bound only catches the absurd (the budget
    // checks above catch overspending).
    assert!(
        proxy_accuracy >= 0.98 * library_accuracy && proxy_accuracy <= 1.05 * library_accuracy,
        "proxy {proxy_accuracy} vs library {library_accuracy}"
    );
    assert!(started.elapsed() < Duration::from_secs(300));
}

/// 500 concurrent requests in one window, each ending differently: answered,
/// streamed with and without usage, refused by the engine (5xx), cut off mid-stream,
/// answered without usage. Every grant must be settled exactly once, with exactly the
/// tokens the engine generated for it (the whole grant when it reported nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_requests_with_failures_are_all_settled_exactly() {
    const N: usize = 500;
    const MAX: u64 = 2000;
    let engine = Mock::start().await;
    let proxy = Arc::new(
        start(
            &engine.url(),
            "tokens_per_window = 10000000\nanswer_reserve = 64\ndialect = \"dynamo\"",
        )
        .await,
    );
    let mut s = Draws::new(0x005E_771E);
    let cases: Vec<(String, bool, u64)> = (0..N)
        .map(|i| {
            let think = (s.uniform() * 3000.0) as u64;
            let answer = 1 + (s.uniform() * 40.0) as u64;
            // Thinking stops at the grant minus the reserve; the answer fits the rest.
            let thinking = think.min(MAX - 64);
            let full = thinking + answer.min(MAX - thinking);
            let base = format!("think={think} answer={answer} gated");
            match i % 6 {
                0 => (base, false, full),
                1 => (base, true, full),
                2 => (format!("{base} nousage"), true, full),
                3 => (format!("{base} fail=500"), i % 12 == 3, 0),
                4 => (format!("{base} die_after=7"), true, full.min(7)),
                _ => (format!("{base} nousage"), false, MAX),
            }
        })
        .collect();
    engine.hold();
    let tasks: Vec<_> = cases
        .iter()
        .map(|(prompt, stream, _)| {
            let proxy = Arc::clone(&proxy);
            let extra = format!(", \"max_tokens\": {MAX}, \"stream\": {stream}");
            let prompt = prompt.clone();
            tokio::spawn(async move { proxy.chat(&prompt, &extra, &[]).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.requests().len() < N {
        assert!(
            Instant::now() < deadline,
            "requests did not all reach the engine"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.metric("clear_grants_in_flight"), N as f64);
    engine.release();
    for (task, (prompt, _, _)) in tasks.into_iter().zip(&cases) {
        let answer = task.await.unwrap();
        let expected = if prompt.contains("fail=") { 502 } else { 200 };
        assert_eq!(answer.status, expected, "{prompt}: {}", answer.body);
    }
    let expected: u64 = cases.iter().map(|(_, _, used)| used).sum();
    assert_eq!(proxy.metric("clear_grants_in_flight"), 0.0);
    assert_eq!(proxy.metric("clear_grants_settled_total"), N as f64);
    let report = proxy.proxy.end_window();
    assert_eq!(report.charged, expected);
    assert_eq!(report.charged + report.refunded, N as u64 * MAX);
}
