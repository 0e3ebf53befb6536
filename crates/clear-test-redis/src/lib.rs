//! Test support shared by the Redis ledger's tests and the proxy's fleet tests: the
//! machine's Redis (required, never skipped: a test fails naming the command that
//! starts one), namespaces no other run uses, the ledger's key layout, and a private
//! redis-server of the test's own to kill and restart.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The Redis the project's machines run (see the Redis crate's README).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// A connection to the machine's Redis; fails the test with the command that starts
/// one when it is not reachable.
pub fn redis() -> redis::Connection {
    connect(REDIS_URL)
}

/// A connection to the Redis at `url` that answers `PING`; fails the test with the
/// command that starts one when it does not.
pub fn connect(url: &str) -> redis::Connection {
    let fail = |err: &dyn std::fmt::Display| -> ! {
        panic!(
            "these tests need a Redis at {url}, which is not reachable ({err}); start one \
             with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" \
             --appendonly no"
        )
    };
    let client = redis::Client::open(url).unwrap_or_else(|e| fail(&e));
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| fail(&e));
    redis::cmd("PING")
        .query::<String>(&mut con)
        .unwrap_or_else(|e| fail(&e));
    con
}

/// A namespace no other test run uses.
pub fn namespace(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_nanos();
    format!(
        "t-{test}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// `rest` (e.g. `budget:1234`) of namespace `ns`, in the layout the Redis crate's
/// README documents.
pub fn key(ns: &str, rest: &str) -> String {
    format!("clear-alloc:{{{ns}}}:{rest}")
}

/// The integer at `key`, if any.
pub fn get_i64(con: &mut redis::Connection, key: &str) -> Option<i64> {
    redis::cmd("GET")
        .arg(key)
        .query(con)
        .expect("GET of an integer key")
}

/// Deletes every key of namespace `ns`, as a Redis restart without persistence would.
pub fn wipe(con: &mut redis::Connection, ns: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("clear-alloc:{{{ns}}}:*"))
        .query(con)
        .expect("KEYS of a namespace");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query(con).expect("DEL");
    }
}

/// A redis-server of the test's own on a free loopback port, without persistence, so
/// that it can be killed and restarted (the machine's Redis is shared). Killed when
/// dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one and waits until it answers.
    pub fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut redis = PrivateRedis { port, child: None };
        redis.restart();
        redis
    }

    /// Its URL.
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
            .expect("redis-server must be on PATH for the restart and outage tests");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("a valid URL");
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
