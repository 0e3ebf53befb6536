//! The connection to Redis: opened lazily, re-opened with exponential backoff after a
//! failure, every call bounded by a timeout, every fault logged once per outage.

use crate::stats::Counters;
use redis::{Client, Connection, RedisResult};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The first wait before reconnecting; it doubles up to the configured maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

struct State {
    connection: Option<Connection>,
    /// No attempt to reconnect before this instant.
    retry_at: Option<Instant>,
    backoff: Duration,
    down_since: Option<Instant>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("connected", &self.connection.is_some())
            .field("retry_at", &self.retry_at)
            .field("backoff", &self.backoff)
            .field("down_since", &self.down_since)
            .finish()
    }
}

/// One connection shared by a ledger's calls (they are few and mostly serialised by
/// the allocator already).
#[derive(Debug)]
pub(crate) struct Link {
    client: Client,
    url: String,
    timeout: Duration,
    max_backoff: Duration,
    state: Mutex<State>,
}

impl Link {
    pub(crate) fn new(
        client: Client,
        url: String,
        timeout: Duration,
        max_backoff: Duration,
    ) -> Link {
        Link {
            client,
            url,
            timeout,
            max_backoff,
            state: Mutex::new(State {
                connection: None,
                retry_at: None,
                backoff: FIRST_BACKOFF,
                down_since: None,
            }),
        }
    }

    /// The Redis URL, for messages.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `call` (one round trip) on the connection, opening it first if needed.
    /// A connection that turns out dead (Redis restarted, say) is replaced and the
    /// call tried once more at once; only then does the link back off. `None` when
    /// Redis is unreachable, in backoff, or answered with an error; the fault is
    /// logged and counted, and never panics.
    pub(crate) fn call<T>(
        &self,
        counters: &Counters,
        what: &str,
        mut call: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Option<T> {
        let mut state = self.lock();
        let mut fresh = false;
        loop {
            if state.connection.is_none() {
                if state.retry_at.is_some_and(|at| Instant::now() < at) {
                    return None;
                }
                Counters::add(&counters.round_trips, 1);
                match self.connect() {
                    Ok(connection) => {
                        state.connection = Some(connection);
                        fresh = true;
                    }
                    Err(err) => {
                        self.fail(&mut state, counters, what, &err);
                        return None;
                    }
                }
            }
            let connection = state.connection.as_mut()?;
            Counters::add(&counters.round_trips, 1);
            match call(connection) {
                Ok(value) => {
                    if let Some(since) = state.down_since.take() {
                        Counters::add(&counters.reconnects, 1);
                        tracing::info!(
                            url = %self.url,
                            "redis ledger: reconnected after {:.1} s; leasing from Redis again",
                            since.elapsed().as_secs_f64()
                        );
                    }
                    counters.disconnected.store(false, Ordering::Relaxed);
                    state.backoff = FIRST_BACKOFF;
                    state.retry_at = None;
                    return Some(value);
                }
                Err(err)
                    if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() =>
                {
                    state.connection = None;
                    if !fresh && !err.is_timeout() {
                        // A connection from before a restart: try a new one now.
                        if state.down_since.is_none() {
                            state.down_since = Some(Instant::now());
                        }
                        continue;
                    }
                    self.fail(&mut state, counters, what, &err);
                    return None;
                }
                Err(err) => {
                    Counters::add(&counters.failures, 1);
                    tracing::error!(url = %self.url, "redis ledger: {what} failed: {err}");
                    return None;
                }
            }
        }
    }

    fn connect(&self) -> RedisResult<Connection> {
        let connection = self.client.get_connection_with_timeout(self.timeout)?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    /// Records an outage: backs off, and logs its start once (and each retry at debug).
    fn fail(&self, state: &mut State, counters: &Counters, what: &str, err: &redis::RedisError) {
        Counters::add(&counters.failures, 1);
        let wait = state.backoff;
        state.retry_at = Some(Instant::now() + wait);
        state.backoff = (wait * 2).min(self.max_backoff);
        if !counters.disconnected.swap(true, Ordering::Relaxed) {
            if state.down_since.is_none() {
                state.down_since = Some(Instant::now());
            }
            tracing::warn!(
                url = %self.url,
                "redis ledger: Redis unreachable during {what} ({err}); admitting within \
                 the held lease (and the fallback share, if any); retrying with backoff"
            );
        } else {
            tracing::debug!(url = %self.url, "redis ledger: still unreachable ({err}); next try in {wait:?}");
        }
    }
}
