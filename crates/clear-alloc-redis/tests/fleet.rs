//! Three replicas as separate processes (the `replica` example, which `cargo test`
//! builds) on the machine's Redis, random traffic, one killed mid-window: every
//! window's summed charge stays within the budget, checked from the replicas' reports
//! and from Redis; the survivors go on; the price falls to the two survivors' demand.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WINDOW_MS: u64 = 400;
const BUDGET: u64 = 600_000;

#[derive(Debug, Clone, Copy)]
struct Line {
    epoch: u64,
    arrivals: u64,
    charged: u64,
}

/// The `replica` example beside this test binary: `cargo build` names it `replica`,
/// `cargo test` (which builds examples too) `replica-HASH`; the newest wins.
fn replica_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let newest = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name == "replica"
                    || name
                        .strip_prefix("replica-")
                        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            })
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
            .map(|e| e.path())
    });
    newest.unwrap_or_else(|| {
        panic!(
            "the replica example is missing from {}: `cargo test -p clear-alloc-redis` \
             builds it (or run `cargo build -p clear-alloc-redis --example replica`)",
            dir.display()
        )
    })
}

fn spawn(ns: &str, index: u64, windows: u64) -> (Child, Arc<Mutex<Vec<Line>>>) {
    let mut child = Command::new(replica_binary())
        .args(["--url", REDIS_URL, "--namespace", ns])
        .args(["--replica", &format!("r{index}")])
        .args(["--budget", &BUDGET.to_string()])
        .args(["--window-ms", &WINDOW_MS.to_string()])
        .args(["--windows", &windows.to_string()])
        .args(["--rate", "2000", "--seed", &(10 + index).to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = child.stdout.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if !line.starts_with("window=") {
                continue;
            }
            let field = |name: &str| -> u64 {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            };
            sink.lock().unwrap().push(Line {
                epoch: field("epoch="),
                arrivals: field("arrivals="),
                charged: field("charged="),
            });
        }
    });
    (child, lines)
}

fn now_epoch() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    ms / WINDOW_MS
}

fn price(con: &mut redis::Connection, ns: &str, epoch: u64) -> f64 {
    redis::cmd("GET")
        .arg(key(ns, &format!("price:{epoch}")))
        .query::<Option<String>>(con)
        .unwrap()
        .unwrap_or_else(|| panic!("no price for epoch {epoch}"))
        .parse()
        .unwrap()
}

#[test]
fn three_replicas_share_one_budget_and_survive_a_crash() {
    let mut con = redis();
    let ns = namespace("fleet");
    let windows = 14;
    let mut replicas: Vec<_> = (0..3).map(|i| spawn(&ns, i, windows)).collect();
    // Kill replica 2 in the middle of its 7th window.
    let start = Instant::now();
    while replicas[0].1.lock().unwrap().len() < 6 {
        for (i, (child, _)) in replicas.iter_mut().enumerate() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("replica {i} exited early ({status}); its stderr is above");
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "replicas report nothing"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(WINDOW_MS / 2));
    let killed_in = now_epoch();
    replicas[2].0.kill().unwrap();
    for (child, _) in &mut replicas {
        let status = child.wait().unwrap();
        let _ = status; // the killed one exits by signal, the others with 0
    }
    std::thread::sleep(Duration::from_millis(100)); // let the readers drain
    let mut per_epoch: BTreeMap<u64, Vec<(usize, Line)>> = BTreeMap::new();
    for (i, (_, lines)) in replicas.iter().enumerate() {
        for line in lines.lock().unwrap().iter() {
            per_epoch.entry(line.epoch).or_default().push((i, *line));
        }
    }
    let last = *per_epoch.keys().last().unwrap();
    let mut funded = 0;
    for (&epoch, lines) in &per_epoch {
        let reported: u64 = lines.iter().map(|(_, l)| l.charged).sum();
        assert!(
            reported <= BUDGET,
            "epoch {epoch}: replicas charged {reported}"
        );
        let Some(left) = get_i64(&mut con, &key(&ns, &format!("budget:{epoch}"))) else {
            assert_eq!(reported, 0, "epoch {epoch} had no budget yet charged");
            continue;
        };
        funded += 1;
        assert!(left >= 0 && left as u64 <= BUDGET);
        let spent = BUDGET - left as u64;
        eprintln!(
            "epoch {epoch}: {} reports, charged {reported}, Redis spent {spent}",
            lines.len()
        );
        assert!(
            reported <= spent,
            "epoch {epoch}: reported {reported} > Redis {spent}"
        );
        if epoch < killed_in && lines.len() == 3 && epoch != last {
            // Every lease of a window all three replicas closed came back or was
            // charged: Redis and the reports agree to the token.
            assert_eq!(reported, spent, "epoch {epoch}");
        }
    }
    assert!(funded >= 10, "only {funded} funded windows");
    // The survivors go on after the crash.
    for e in killed_in + 1..last {
        let lines = &per_epoch[&e];
        assert_eq!(lines.len(), 2, "epoch {e}: {lines:?}");
        assert!(lines
            .iter()
            .all(|(i, l)| *i < 2 && l.arrivals > 0 && l.charged > 0));
    }
    // The price follows the demand of two replicas: the samples of the windows after
    // the crash come from two, and the price cleared from them is lower.
    let hlen = |con: &mut redis::Connection, e: u64| -> u64 {
        redis::cmd("HLEN")
            .arg(key(&ns, &format!("demand:{e}")))
            .query(con)
            .unwrap()
    };
    assert_eq!(hlen(&mut con, killed_in - 1), 3);
    assert_eq!(hlen(&mut con, killed_in + 1), 2);
    // Prices of the two windows before the crash (cleared from three replicas'
    // demand) and of two windows cleared from the survivors' demand alone.
    let before = 0.5 * (price(&mut con, &ns, killed_in - 2) + price(&mut con, &ns, killed_in - 1));
    let after = 0.5 * (price(&mut con, &ns, killed_in + 3) + price(&mut con, &ns, killed_in + 4));
    eprintln!("crash in epoch {killed_in}; price {before:e} before, {after:e} after");
    assert!(
        after < 0.9 * before,
        "price before the crash {before:e}, after {after:e}"
    );
    wipe(&mut con, &ns);
}
