//! Shared by the Redis tests: the machine's Redis (required, never skipped), unique
//! namespaces, a private redis-server to kill and restart, and seeded traffic.
#![allow(dead_code)] // each test file uses a different part

use clear_alloc::{Query, ShiftedSurge};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The Redis the project's machines run (see the crate README).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// A connection to the machine's Redis; fails the test with the command that starts
/// one when it is not reachable.
pub fn redis() -> redis::Connection {
    connect(REDIS_URL)
}

pub fn connect(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).unwrap();
    match client.get_connection_with_timeout(Duration::from_secs(2)) {
        Ok(c) => c,
        Err(err) => panic!(
            "these tests need a Redis at {url}, which is not reachable ({err}); start one \
             with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" \
             --appendonly no"
        ),
    }
}

/// A namespace no other test run uses.
pub fn namespace(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "t-{test}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// `key` of namespace `ns` (the layout the crate README documents).
pub fn key(ns: &str, rest: &str) -> String {
    format!("clear-alloc:{{{ns}}}:{rest}")
}

pub fn get_i64(con: &mut redis::Connection, key: &str) -> Option<i64> {
    redis::cmd("GET").arg(key).query(con).unwrap()
}

/// Deletes every key of namespace `ns`, as a Redis restart without persistence would.
pub fn wipe(con: &mut redis::Connection, ns: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("clear-alloc:{{{ns}}}:*"))
        .query(con)
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query(con).unwrap();
    }
}

/// A redis-server of the test's own on a free loopback port, without persistence, so
/// that it can be killed and restarted (the machine's Redis is shared).
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = PrivateRedis { port, child: None };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH for the restart tests");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        let start = Instant::now();
        while client
            .get_connection_with_timeout(Duration::from_millis(100))
            .is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "private redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (its state is lost: no persistence).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Seeded random traffic around the paper's Figure-1 fits: threshold, width, ceiling.
pub fn curves(seed: u64, n: usize) -> Vec<ShiftedSurge> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let threshold = rng.random_range(50.0..700.0);
            let width = rng.random_range(60.0..300.0);
            let ceiling = rng.random_range(0.2..1.0);
            ShiftedSurge::new(threshold, width, ceiling).unwrap()
        })
        .collect()
}

pub fn query(curve: ShiftedSurge) -> Query {
    Query::new(curve).with_cap(2048)
}
