//! A fleet of proxies sharing one window budget and one price through a Redis
//! [`RedisLedger`]: the `ledger`/`namespace` settings, the start-up check, the
//! ledger's fault counters as metrics, and running the ledger's blocking calls where
//! they cannot stall the async runtime.

use crate::config::ConfigError;
use clear_alloc_redis::{LedgerStats, RedisLedger};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Where the fleet's window budget lives: a Redis URL and the budget's namespace.
/// Validated when the config is built; [`connect`](Self::connect) reaches Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSpec {
    url: String,
    namespace: String,
    window: Duration,
}

impl LedgerSpec {
    /// Validates `ledger` and `namespace` (a namespace without a ledger is an error:
    /// it would silently do nothing). Does not connect.
    pub(crate) fn build(
        url: Option<String>,
        namespace: Option<String>,
        window: Duration,
    ) -> Result<Option<LedgerSpec>, ConfigError> {
        let Some(url) = url else {
            return match namespace {
                Some(_) => Err(ConfigError::new(
                    "namespace",
                    "needs a ledger (--ledger redis://HOST:PORT/DB)",
                )),
                None => Ok(None),
            };
        };
        let spec = LedgerSpec {
            url,
            namespace: namespace.unwrap_or_else(|| "default".to_string()),
            window,
        };
        spec.ledger().map_err(|e| match e {
            clear_alloc_redis::Error::InvalidOption {
                option,
                value,
                reason,
            } => {
                let field = if option == "url" { "ledger" } else { option };
                ConfigError::new(field, format!("{reason}, got {value:?}"))
            }
            other => ConfigError::new("ledger", other.to_string()),
        })?;
        Ok(Some(spec))
    }

    /// The Redis URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The budget's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn ledger(&self) -> Result<RedisLedger, clear_alloc_redis::Error> {
        RedisLedger::builder(&self.url)
            .namespace(&self.namespace)
            .window(self.window)
            .build()
    }

    /// Builds the ledger and checks that Redis answers (one blocking round trip,
    /// at most the ledger's I/O timeout of 200 ms plus the connect).
    ///
    /// # Errors
    /// [`clear_alloc_redis::Error::Unreachable`] naming the URL when Redis does not
    /// answer; the binary prints it and exits with code 2.
    pub fn connect(&self) -> Result<Arc<RedisLedger>, clear_alloc_redis::Error> {
        let ledger = self.ledger()?;
        ledger.ping()?;
        Ok(Arc::new(ledger))
    }
}

/// Runs `f`, which may block on one Redis round trip (a lease refill inside
/// `admit`), without stalling the other tasks of a multi-thread runtime: the worker
/// hands its queue to another thread first. On a current-thread runtime (where that
/// is impossible) or outside a runtime, `f` runs as is.
pub(crate) fn may_block<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The ledger's counters (`clear_ledger_*`), copied from [`RedisLedger::stats`] at
/// scrape time. The crate README lists what each one means.
#[derive(Debug, Default)]
pub struct LedgerMetrics {
    round_trips: Counter,
    errors: Counter,
    reconnects: Counter,
    leases: Counter,
    leased_tokens: Counter,
    released_tokens: Counter,
    fallback_tokens: Counter,
    unfunded_windows: Counter,
    prices: Family<Vec<(&'static str, &'static str)>, Counter>,
    connected: Gauge,
}

impl LedgerMetrics {
    /// Registers the metrics in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = LedgerMetrics::default();
        let counters = [
            (
                "clear_ledger_round_trips",
                "Round trips to the Redis ledger, successful or not",
                &m.round_trips,
            ),
            (
                "clear_ledger_errors",
                "Ledger calls that failed: Redis unreachable, slower than the I/O timeout, or an error reply",
                &m.errors,
            ),
            (
                "clear_ledger_reconnects",
                "Connections to Redis re-established after a failure",
                &m.reconnects,
            ),
            (
                "clear_ledger_leases",
                "Leases of the fleet's window budget taken by this replica",
                &m.leases,
            ),
            (
                "clear_ledger_leased_tokens",
                "Tokens leased from the fleet's window budgets",
                &m.leased_tokens,
            ),
            (
                "clear_ledger_released_tokens",
                "Unused leased tokens returned at windows' ends",
                &m.released_tokens,
            ),
            (
                "clear_ledger_fallback_tokens",
                "Tokens granted from the local fallback share while Redis was unreachable",
                &m.fallback_tokens,
            ),
            (
                "clear_ledger_unfunded_windows",
                "Windows without budget because Redis had no state for them (first window of a namespace, or after a Redis restart)",
                &m.unfunded_windows,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "clear_ledger_prices",
            "Window prices by source: cleared here for the fleet, read from the fleet, or missed (kept the last)",
            m.prices.clone(),
        );
        registry.register(
            "clear_ledger_connected",
            "1 when the last ledger call reached Redis",
            m.connected.clone(),
        );
        m
    }

    /// Copies a snapshot of the ledger's counters (monotonic, so they stay counters).
    pub(crate) fn set(&self, s: &LedgerStats) {
        let pairs = [
            (&self.round_trips, s.round_trips),
            (&self.errors, s.failures),
            (&self.reconnects, s.reconnects),
            (&self.leases, s.leases),
            (&self.leased_tokens, s.tokens_leased),
            (&self.released_tokens, s.tokens_released),
            (&self.fallback_tokens, s.fallback_tokens),
            (&self.unfunded_windows, s.unfunded_windows),
        ];
        for (counter, value) in pairs {
            counter.inner().store(value, Ordering::Relaxed);
        }
        for (source, value) in [
            ("cleared", s.prices_cleared),
            ("read", s.prices_read),
            ("missed", s.prices_missed),
        ] {
            self.prices
                .get_or_create(&vec![("source", source)])
                .inner()
                .store(value, Ordering::Relaxed);
        }
        self.connected.set(i64::from(s.connected));
    }
}

/// Logs what went wrong with the ledger during a window (the ledger itself logs
/// when an outage starts and ends).
pub(crate) fn log_faults(before: &LedgerStats, after: &LedgerStats, window: u64) {
    let failures = after.failures - before.failures;
    let unfunded = after.unfunded_windows - before.unfunded_windows;
    let missed = after.prices_missed - before.prices_missed;
    let fallback = after.fallback_tokens - before.fallback_tokens;
    if failures + unfunded + missed + fallback > 0 {
        tracing::warn!(
            window,
            failures,
            unfunded,
            prices_missed = missed,
            fallback_tokens = fallback,
            connected = after.connected,
            "ledger faults in the window"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(1);

    #[test]
    fn no_ledger_is_the_default_and_a_namespace_alone_is_an_error() {
        assert_eq!(LedgerSpec::build(None, None, W), Ok(None));
        let e = LedgerSpec::build(None, Some("a".into()), W).unwrap_err();
        assert_eq!(e.field, "namespace");
    }

    #[test]
    fn bad_urls_and_namespaces_name_the_setting() {
        let e = LedgerSpec::build(Some("http://x:1".into()), None, W).unwrap_err();
        assert_eq!(e.field, "ledger");
        assert!(e.reason.contains("http://x:1"), "{e}");
        let e = LedgerSpec::build(Some("redis://127.0.0.1/0".into()), Some("a b".into()), W)
            .unwrap_err();
        assert_eq!(e.field, "namespace");
        let ok = LedgerSpec::build(Some("redis://127.0.0.1:6379/0".into()), None, W)
            .unwrap()
            .unwrap();
        assert_eq!(ok.namespace(), "default");
    }

    #[test]
    fn an_unreachable_redis_is_an_error_naming_the_url() {
        // Port 1 on loopback: nothing listens there.
        let spec = LedgerSpec::build(Some("redis://127.0.0.1:1/0".into()), None, W)
            .unwrap()
            .unwrap();
        let e = spec.connect().unwrap_err();
        assert!(matches!(e, clear_alloc_redis::Error::Unreachable { .. }));
        assert!(e.to_string().contains("redis://127.0.0.1:1/0"), "{e}");
    }

    #[test]
    fn blocking_calls_run_on_any_runtime_and_outside_one() {
        assert_eq!(may_block(|| 1), 1);
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // `block_in_place` would panic here: `may_block` must not use it.
        assert_eq!(current.block_on(async { may_block(|| 2) }), 2);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        assert_eq!(
            multi.block_on(async { tokio::spawn(async { may_block(|| 3) }).await.unwrap() }),
            3
        );
    }

    #[test]
    fn stats_are_exported_as_counters() {
        let mut registry = Registry::default();
        let m = LedgerMetrics::register(&mut registry);
        let mut s = LedgerStats::default();
        s.round_trips = 7;
        s.failures = 2;
        s.prices_missed = 1;
        s.connected = true;
        m.set(&s);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "clear_ledger_round_trips_total 7",
            "clear_ledger_errors_total 2",
            "clear_ledger_prices_total{source=\"missed\"} 1",
            "clear_ledger_connected 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
