//! One replica of a fleet: an `OnlineAllocator` on a Redis ledger, fed random traffic,
//! printing one line per window. The fleet tests start several of these as separate
//! processes; you can too:
//!
//! ```text
//! cargo run -p clear-alloc-redis --example replica -- --namespace demo --budget 300000 \
//!     --window-ms 500 --windows 10 --rate 2000 --seed 1
//! ```
//!
//! Each window prints `window=K epoch=E arrivals=N abandoned=A charged=C price=P
//! next_price=Q`; the last line is `stats round_trips=R leases=L failures=F`.

use clear_alloc::online::OnlineAllocator;
use clear_alloc::{Query, ShiftedSurge};
use clear_alloc_redis::RedisLedger;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    url: String,
    namespace: String,
    replica: Option<String>,
    budget: u64,
    window: Duration,
    windows: u64,
    rate: f64,
    seed: u64,
    fallback: u64,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        url: "redis://127.0.0.1:6379/0".into(),
        namespace: "demo".into(),
        replica: None,
        budget: 300_000,
        window: Duration::from_millis(500),
        windows: 10,
        rate: 2_000.0,
        seed: 1,
        fallback: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--url" => args.url = value,
            "--namespace" => args.namespace = value,
            "--replica" => args.replica = Some(value),
            "--budget" => args.budget = number(&value)?,
            "--window-ms" => args.window = Duration::from_millis(number(&value)?),
            "--windows" => args.windows = number(&value)?,
            "--rate" => {
                args.rate = value
                    .parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite() && *r > 0.0)
                    .ok_or(format!("--rate {value}: must be a number > 0"))?
            }
            "--seed" => args.seed = number(&value)?,
            "--fallback" => args.fallback = number(&value)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("replica: {e}");
            std::process::exit(2);
        }
    };
    let mut builder = RedisLedger::builder(&args.url)
        .namespace(&args.namespace)
        .window(args.window)
        .fallback_share(args.fallback);
    if let Some(id) = &args.replica {
        builder = builder.replica_id(id);
    }
    let ledger = match builder.build() {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("replica: {e}");
            std::process::exit(2);
        }
    };
    let online = match OnlineAllocator::builder()
        .tokens_per_window(args.budget)
        .default_cap(2048)
        .history_windows(2)
        .ledger(ledger.clone())
        .build()
    {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("replica: {e}");
            std::process::exit(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (online, stop) = (online.clone(), stop.clone());
        let (rate, seed) = (args.rate, args.seed);
        std::thread::spawn(move || serve(&online, &stop, rate, seed))
    };
    let mut out = std::io::stdout().lock();
    for _ in 0..args.windows {
        std::thread::sleep(ledger.until_next_window());
        let r = online.end_window();
        let epoch = ledger.epoch_of(r.window).unwrap_or(u64::MAX);
        let _ = writeln!(
            out,
            "window={} epoch={epoch} arrivals={} abandoned={} charged={} price={:e} next_price={:e}",
            r.window, r.arrivals, r.abandoned, r.charged, r.price, r.next_price
        );
        let _ = out.flush();
    }
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    let s = ledger.stats();
    let _ = writeln!(
        out,
        "stats round_trips={} leases={} failures={} prices_cleared={} prices_read={} prices_missed={}",
        s.round_trips, s.leases, s.failures, s.prices_cleared, s.prices_read, s.prices_missed
    );
}

/// Poisson-like arrivals at `rate` per second in 5 ms ticks; each request uses a
/// random 50–100 % of its grant and completes at once.
fn serve(online: &OnlineAllocator, stop: &AtomicBool, rate: f64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let tick = Duration::from_millis(5);
    let per_tick = rate * tick.as_secs_f64();
    let mut next = Instant::now();
    let mut owed = 0.0;
    while !stop.load(Ordering::Relaxed) {
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            let curve = ShiftedSurge::new(
                rng.random_range(50.0..700.0),
                rng.random_range(60.0..300.0),
                rng.random_range(0.2..1.0),
            )
            .expect("valid ranges");
            let Ok(ticket) = online.admit(&Query::new(curve)) else {
                continue;
            };
            let used = (ticket.tokens() as f64 * rng.random_range(0.5..1.0)) as u64;
            let _ = online.complete(ticket, used);
        }
        next += tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}
