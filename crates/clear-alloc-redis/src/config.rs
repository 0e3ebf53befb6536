//! Options of a [`RedisLedger`] and their validation.

use crate::chunk::ChunkRule;
use crate::error::Error;
use crate::ledger::RedisLedger;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a replica's windows map to the fleet's epochs (one budget key per epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Clock {
    /// Epoch `⌊unix time / window⌋`: replicas that end their windows on the wall
    /// clock's window boundaries (see [`RedisLedger::until_next_window`]) share
    /// epochs without talking to each other. The default.
    #[default]
    Wall,
    /// Epoch = the allocator's window count: for hosts that end every replica's
    /// windows together (tests, a central timer).
    Counted,
}

/// Options of a [`RedisLedger`]; [`build`](Self::build) validates them.
///
/// ```
/// use clear_alloc_redis::RedisLedger;
/// use std::time::Duration;
///
/// let ledger = RedisLedger::builder("redis://127.0.0.1:6379/0")
///     .namespace("tenant-a")
///     .window(Duration::from_secs(10))
///     .build()?; // does not connect yet
/// assert_eq!(ledger.namespace(), "tenant-a");
/// # Ok::<(), clear_alloc_redis::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RedisLedgerBuilder {
    pub(crate) url: String,
    pub(crate) namespace: String,
    pub(crate) window: Option<Duration>,
    pub(crate) clock: Clock,
    pub(crate) replica: Option<String>,
    pub(crate) io_timeout: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) lease_horizon: Option<Duration>,
    pub(crate) min_chunk: u64,
    pub(crate) max_chunk_share: f64,
    pub(crate) fallback_share: u64,
    pub(crate) price_wait: Option<Duration>,
    pub(crate) share_price: bool,
}

impl RedisLedgerBuilder {
    pub(crate) fn new(url: &str) -> Self {
        RedisLedgerBuilder {
            url: url.to_owned(),
            namespace: "default".to_owned(),
            window: None,
            clock: Clock::Wall,
            replica: None,
            io_timeout: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            lease_horizon: None,
            min_chunk: 256,
            max_chunk_share: 0.25,
            fallback_share: 0,
            price_wait: None,
            share_price: true,
        }
    }

    /// The budget's name on the Redis (default `default`): replicas with the same
    /// Redis and namespace share one window budget and one price. 1 to 64 of
    /// `A-Z a-z 0-9 _ . -`.
    pub fn namespace(mut self, name: &str) -> Self {
        self.namespace = name.to_owned();
        self
    }

    /// The window length (required; the same on every replica, and the allocator's).
    pub fn window(mut self, length: Duration) -> Self {
        self.window = Some(length);
        self
    }

    /// How windows map to epochs (default [`Clock::Wall`]).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// This replica's name in the fleet (default: process id and start time). Names
    /// must differ between live replicas of one namespace.
    pub fn replica_id(mut self, id: &str) -> Self {
        self.replica = Some(id.to_owned());
        self
    }

    /// Most time one Redis call may take, connecting included (default 200 ms). A
    /// call that takes longer counts as Redis being unreachable.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Longest wait between reconnection attempts (default 5 s; the wait starts at
    /// 50 ms and doubles).
    pub fn max_backoff(mut self, wait: Duration) -> Self {
        self.max_backoff = wait;
        self
    }

    /// How long one lease should last at the replica's charge rate (default a tenth
    /// of the window). Longer means fewer round trips and more tokens idle on a
    /// replica while others may lack them.
    pub fn lease_horizon(mut self, horizon: Duration) -> Self {
        self.lease_horizon = Some(horizon);
        self
    }

    /// The smallest lease in tokens (default 256).
    pub fn min_chunk(mut self, tokens: u64) -> Self {
        self.min_chunk = tokens;
        self
    }

    /// The largest lease as a share of the window budget (default 0.25), so that the
    /// first replicas of a window cannot take it all.
    pub fn max_chunk_share(mut self, share: f64) -> Self {
        self.max_chunk_share = share;
        self
    }

    /// Tokens per window this replica may grant on its own while Redis is
    /// unreachable (default 0: admit only within the held lease, then refuse). Each
    /// replica can overrun the fleet's window budget by at most this many tokens per
    /// window of outage.
    pub fn fallback_share(mut self, tokens: u64) -> Self {
        self.fallback_share = tokens;
        self
    }

    /// How long the replica clearing the fleet's price waits for the others' samples
    /// at a window's end (default a tenth of the window, at most 200 ms). The others
    /// wait up to twice this (plus the I/O timeout) for the price, then keep theirs.
    pub fn price_wait(mut self, wait: Duration) -> Self {
        self.price_wait = Some(wait);
        self
    }

    /// Whether replicas clear one price from their merged samples (default true);
    /// with false each replica keeps its own re-clear (budgets are still shared).
    pub fn share_price(mut self, on: bool) -> Self {
        self.share_price = on;
        self
    }

    /// Validates the options. Does not connect: the first lease does (see
    /// [`RedisLedger::ping`] to check the connection at start-up).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the option: a URL the client cannot parse, a
    /// namespace or replica id outside its character set, no window or one shorter
    /// than 1 ms, a zero timeout, a lease horizon of zero or longer than the window, a
    /// zero `min_chunk`, or a chunk share outside (0, 1].
    pub fn build(self) -> Result<RedisLedger, Error> {
        let invalid = |option, value: String, reason| Error::InvalidOption {
            option,
            value,
            reason,
        };
        let client = redis::Client::open(self.url.as_str()).map_err(|_| {
            invalid(
                "url",
                self.url.clone(),
                "must be redis://host:port/db (or rediss://, unix://)",
            )
        })?;
        if !valid_name(&self.namespace) {
            return Err(invalid(
                "namespace",
                self.namespace.clone(),
                "must be 1 to 64 of A-Z a-z 0-9 _ . -",
            ));
        }
        if let Some(id) = &self.replica {
            if !valid_name(id) {
                return Err(invalid(
                    "replica_id",
                    id.clone(),
                    "must be 1 to 64 of A-Z a-z 0-9 _ . -",
                ));
            }
        }
        let window = match self.window {
            Some(w) if w >= Duration::from_millis(1) => w,
            w => {
                return Err(invalid(
                    "window",
                    format!("{w:?}"),
                    "must be set and >= 1 ms",
                ))
            }
        };
        if self.io_timeout.is_zero() {
            return Err(invalid("io_timeout", "0s".into(), "must be > 0"));
        }
        if self.max_backoff.is_zero() {
            return Err(invalid("max_backoff", "0s".into(), "must be > 0"));
        }
        let horizon = self.lease_horizon.unwrap_or(window / 10);
        if horizon.is_zero() || horizon > window {
            return Err(invalid(
                "lease_horizon",
                format!("{horizon:?}"),
                "must be > 0 and at most the window",
            ));
        }
        if self.min_chunk == 0 {
            return Err(invalid("min_chunk", "0".into(), "must be >= 1 token"));
        }
        if !(self.max_chunk_share > 0.0 && self.max_chunk_share <= 1.0) {
            return Err(invalid(
                "max_chunk_share",
                self.max_chunk_share.to_string(),
                "must be in (0, 1]",
            ));
        }
        let price_wait = self
            .price_wait
            .unwrap_or((window / 10).min(Duration::from_millis(200)));
        let replica = self.replica.clone().unwrap_or_else(default_replica_id);
        let rule = ChunkRule {
            horizon,
            min_chunk: self.min_chunk,
            max_share: self.max_chunk_share,
        };
        Ok(RedisLedger::new(
            self, client, window, replica, rule, price_wait,
        ))
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `pid-nanoseconds`: unique among the replicas of one machine and, with clocks that
/// differ at all, across machines.
fn default_replica_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RedisLedgerBuilder {
        RedisLedger::builder("redis://127.0.0.1:6379/0").window(Duration::from_secs(1))
    }

    fn option_of(result: Result<RedisLedger, Error>) -> &'static str {
        match result {
            Err(Error::InvalidOption { option, .. }) => option,
            other => panic!("expected an invalid option, got {other:?}"),
        }
    }

    #[test]
    fn bad_options_are_errors_naming_the_option() {
        assert!(base().build().is_ok());
        assert_eq!(
            option_of(
                RedisLedger::builder("http://x")
                    .window(Duration::from_secs(1))
                    .build()
            ),
            "url"
        );
        assert_eq!(option_of(base().namespace("").build()), "namespace");
        assert_eq!(option_of(base().namespace("a:b").build()), "namespace");
        assert_eq!(
            option_of(base().namespace(&"x".repeat(65)).build()),
            "namespace"
        );
        assert_eq!(option_of(base().replica_id("a b").build()), "replica_id");
        assert_eq!(
            option_of(RedisLedger::builder("redis://127.0.0.1/").build()),
            "window"
        );
        assert_eq!(option_of(base().window(Duration::ZERO).build()), "window");
        assert_eq!(
            option_of(base().io_timeout(Duration::ZERO).build()),
            "io_timeout"
        );
        assert_eq!(
            option_of(base().lease_horizon(Duration::from_secs(2)).build()),
            "lease_horizon"
        );
        assert_eq!(option_of(base().min_chunk(0).build()), "min_chunk");
        assert_eq!(
            option_of(base().max_chunk_share(f64::NAN).build()),
            "max_chunk_share"
        );
        assert_eq!(
            option_of(base().max_chunk_share(1.5).build()),
            "max_chunk_share"
        );
    }
}
