//! Counters of a ledger's traffic and faults, for logs and metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`RedisLedger`](crate::RedisLedger)'s counters since it was built
/// (monotonic, so a metrics exporter can publish them as counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LedgerStats {
    /// Round trips to Redis (a pipeline counts once), successful or not.
    pub round_trips: u64,
    /// Leases taken (the first of each window included).
    pub leases: u64,
    /// Tokens leased from Redis.
    pub tokens_leased: u64,
    /// Unused tokens returned to Redis at windows' ends.
    pub tokens_released: u64,
    /// Tokens granted from the local fallback share while Redis was unreachable.
    pub fallback_tokens: u64,
    /// Calls that failed because Redis was unreachable or answered with an error.
    pub failures: u64,
    /// Connections re-established after a failure.
    pub reconnects: u64,
    /// Windows that got no budget because Redis had lost the namespace's state.
    pub unfunded_windows: u64,
    /// Prices this replica cleared for the fleet.
    pub prices_cleared: u64,
    /// Prices read from the fleet (cleared by another replica).
    pub prices_read: u64,
    /// Windows whose fleet price was not available in time (the price was kept).
    pub prices_missed: u64,
    /// Whether the last call reached Redis.
    pub connected: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) round_trips: AtomicU64,
    pub(crate) leases: AtomicU64,
    pub(crate) tokens_leased: AtomicU64,
    pub(crate) tokens_released: AtomicU64,
    pub(crate) fallback_tokens: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) unfunded_windows: AtomicU64,
    pub(crate) prices_cleared: AtomicU64,
    pub(crate) prices_read: AtomicU64,
    pub(crate) prices_missed: AtomicU64,
    pub(crate) disconnected: std::sync::atomic::AtomicBool,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LedgerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LedgerStats {
            round_trips: get(&self.round_trips),
            leases: get(&self.leases),
            tokens_leased: get(&self.tokens_leased),
            tokens_released: get(&self.tokens_released),
            fallback_tokens: get(&self.fallback_tokens),
            failures: get(&self.failures),
            reconnects: get(&self.reconnects),
            unfunded_windows: get(&self.unfunded_windows),
            prices_cleared: get(&self.prices_cleared),
            prices_read: get(&self.prices_read),
            prices_missed: get(&self.prices_missed),
            connected: !self.disconnected.load(Ordering::Relaxed),
        }
    }
}
