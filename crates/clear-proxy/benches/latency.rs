//! Latency the proxy adds: open-loop load at a fixed rate against the mock engine
//! directly and through the proxy (same process, 127.0.0.1), alternating rounds,
//! reporting p50 and p99 of each and their difference.
//!
//! `cargo bench -p clear-proxy --bench latency` (rate and length:
//! `CLEAR_BENCH_RATE`, default 1000 requests/s; `CLEAR_BENCH_SECONDS` per round,
//! default 5; two rounds each).
//!
//! With `CLEAR_BENCH_LEDGER=redis://127.0.0.1:6379/0`, a third path: a proxy on that
//! fleet ledger (a fresh namespace, 1-second windows so that window ends, lease
//! refills and the fleet price run during the measurement), alternating with the
//! other two. Its answers other than 200 are counted and reported, not failed.

#[path = "../tests/support/mock.rs"]
mod mock;

use clear_proxy::{ConfigBuilder, Proxy};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BODY: &str = r#"{"model": "m", "messages": [{"role": "user", "content": "think=20 answer=5"}], "max_tokens": 2048}"#;

fn env_or(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sends `rate` requests per second for `seconds` (each at its scheduled instant,
/// whether or not earlier ones have finished) and returns the sorted latencies.
async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    rate: f64,
    seconds: f64,
    refused: Option<&Arc<AtomicU64>>,
) -> Vec<Duration> {
    let total = (rate * seconds) as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until(start + period * i as u32).await;
        let client = client.clone();
        let url = url.to_string();
        let refused = refused.cloned();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = client.post(&url).body(BODY).send().await.expect("request");
            match &refused {
                Some(count) if response.status() != 200 => {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                _ => assert_eq!(response.status(), 200),
            }
            let _ = response.bytes().await.expect("body");
            sent.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        latencies.push(t.await.expect("task"));
    }
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let rate = env_or("CLEAR_BENCH_RATE", 1000.0);
    let seconds = env_or("CLEAR_BENCH_SECONDS", 5.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let engine = mock::Mock::start().await;
        let config = ConfigBuilder::from_toml(&format!(
            "upstream = \"{}\"\ntokens_per_window = 1000000000\nwindow = 3600.0\ndialect = \"vllm\"\nlog_level = \"error\"",
            engine.url()
        ))
        .expect("toml")
        .build()
        .expect("config");
        let addr = serve(Proxy::new(config).expect("proxy")).await;
        let fleet_addr = match std::env::var("CLEAR_BENCH_LEDGER").ok() {
            Some(url) => {
                let namespace = format!("bench-{}", std::process::id());
                let config = ConfigBuilder::from_toml(&format!(
                    "upstream = \"{}\"\ntokens_per_window = 1000000000\nwindow = 1.0\ndialect = \"vllm\"\nlog_level = \"error\"\nledger = \"{url}\"\nnamespace = \"{namespace}\"",
                    engine.url()
                ))
                .expect("toml")
                .build()
                .expect("config");
                let addr = serve(Proxy::new(config).expect("ledger proxy")).await;
                // A new namespace's first window is unfunded: start after it.
                tokio::time::sleep(Duration::from_millis(1100)).await;
                Some(addr)
            }
            None => None,
        };
        let refused = Arc::new(AtomicU64::new(0));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .tcp_nodelay(true)
            .build()
            .expect("client");
        let direct_url = format!("{}/v1/chat/completions", engine.url());
        let proxy_url = format!("http://{addr}/v1/chat/completions");
        let fleet_url = fleet_addr.map(|a| format!("http://{a}/v1/chat/completions"));
        // Warm every path (connections, allocator, caches).
        open_loop(&client, &direct_url, rate, 0.5, None).await;
        open_loop(&client, &proxy_url, rate, 0.5, None).await;
        if let Some(url) = &fleet_url {
            open_loop(&client, url, rate, 0.5, Some(&Arc::new(AtomicU64::new(0)))).await;
        }
        let (mut direct, mut proxied, mut fleet) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..2 {
            direct.extend(open_loop(&client, &direct_url, rate, seconds, None).await);
            proxied.extend(open_loop(&client, &proxy_url, rate, seconds, None).await);
            if let Some(url) = &fleet_url {
                fleet.extend(open_loop(&client, url, rate, seconds, Some(&refused)).await);
            }
        }
        direct.sort();
        proxied.sort();
        fleet.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "clear-proxy latency at {rate} req/s, {} requests per path",
            direct.len()
        );
        for (name, p) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999)] {
            let (d, x) = (percentile(&direct, p), percentile(&proxied, p));
            println!(
                "{name}: direct {:.3} ms, through the proxy {:.3} ms, added {:.3} ms",
                ms(d),
                ms(x),
                ms(x) - ms(d)
            );
            if !fleet.is_empty() {
                let f = percentile(&fleet, p);
                println!(
                    "{name}: through a proxy on the Redis ledger {:.3} ms, added {:.3} ms",
                    ms(f),
                    ms(f) - ms(d)
                );
            }
        }
        if !fleet.is_empty() {
            println!(
                "ledger path: {} of {} answers were not 200 (abandoned)",
                refused.load(Ordering::Relaxed),
                fleet.len()
            );
        }
    });
}

/// Serves `proxy` on a loopback port until the process ends.
async fn serve(proxy: Proxy) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { proxy.serve(listener, std::future::pending()).await });
    addr
}
