//! The Redis ledger: leases of one window budget per epoch, the local fallback share
//! while Redis is unreachable, and the restart rule.

use crate::chunk::{ChargeRate, ChunkRule};
use crate::config::{Clock, RedisLedgerBuilder};
use crate::error::Error;
use crate::keys::Keys;
use crate::link::Link;
use crate::scripts::{LeaseReply, Scripts};
use crate::stats::{Counters, LedgerStats};
use clear_alloc::online::{BudgetLedger, ClosedWindow, Lease};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Windows whose epochs a ledger remembers (for late releases and reports).
const REMEMBERED: usize = 8;

/// A [`BudgetLedger`] in Redis: every replica built with the same Redis and
/// namespace shares one budget per window and admits at one price. See the crate
/// docs for the key layout and the fault rules.
///
/// ```no_run
/// use clear_alloc::online::OnlineAllocator;
/// use clear_alloc_redis::RedisLedger;
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let window = Duration::from_secs(10);
/// let ledger = Arc::new(
///     RedisLedger::builder("redis://127.0.0.1:6379/0")
///         .namespace("tenant-a")
///         .window(window)
///         .build()?,
/// );
/// ledger.ping()?; // fail fast at start-up
/// let online = OnlineAllocator::builder()
///     .tokens_per_second(6_000.0, window) // the fleet's total
///     .ledger(ledger.clone())
///     .build()
///     .expect("valid options");
/// // Timer thread: end windows on the wall clock's boundaries, shared by the fleet.
/// loop {
///     std::thread::sleep(ledger.until_next_window());
///     let report = online.end_window();
///     println!("charged {} next price {:.2e}", report.charged, report.next_price);
///     # break;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RedisLedger {
    pub(crate) link: Link,
    pub(crate) keys: Keys,
    pub(crate) scripts: Scripts,
    pub(crate) counters: Counters,
    pub(crate) namespace: String,
    pub(crate) replica: String,
    pub(crate) window: Duration,
    clock: Clock,
    rule: ChunkRule,
    fallback_share: u64,
    pub(crate) price_wait: Duration,
    pub(crate) io_timeout: Duration,
    pub(crate) share_price: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// `(window, epoch)` of the last windows opened, newest last.
    epochs: [(u64, u64); REMEMBERED],
    opened: usize,
    budget: u64,
    rate: ChargeRate,
    /// Tokens leased from Redis in the last window, kept until its release.
    closing_leased: u64,
    closing_seconds: f64,
    /// Tokens leased from Redis in the current window.
    leased: u64,
    /// Fallback tokens granted in the current window, and left to grant.
    fallback_given: u64,
    /// Fallback tokens granted in the last window, kept until its release.
    closing_fallback: u64,
    fallback_left: u64,
    /// The current epoch has nothing more to lease (spent, or lost in a restart).
    exhausted: bool,
}

impl State {
    fn epoch_of(&self, window: u64) -> Option<u64> {
        self.epochs[..self.opened.min(REMEMBERED)]
            .iter()
            .rev()
            .find(|&&(w, _)| w == window)
            .map(|&(_, e)| e)
    }

    fn current_epoch(&self) -> Option<u64> {
        (self.opened > 0).then(|| self.epochs[(self.opened - 1).min(REMEMBERED - 1)].1)
    }

    fn remember(&mut self, window: u64, epoch: u64) {
        if self.opened >= REMEMBERED {
            self.epochs.rotate_left(1);
            self.epochs[REMEMBERED - 1] = (window, epoch);
        } else {
            self.epochs[self.opened] = (window, epoch);
        }
        self.opened += 1;
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How early (ms) before a boundary of windows `length` ms long a window opens as
/// the epoch after it: a twentieth of a window, so that a timer that fires a little
/// early still opens the next epoch.
fn early_margin(length: u128) -> u128 {
    length / 20
}

/// How long from `now` (ms) until the window open here ends, windows being `length`
/// ms: the end of the `open` epoch when that is the next boundary or the one after
/// it (no more than a window and the [early margin](early_margin) away), else the
/// next boundary (no epoch open yet, or one continued past a clock step back).
fn wait_until_window_end(now: u128, length: u128, open: Option<u64>) -> Duration {
    let next = (now / length + 1) * length;
    let end = open
        .map(|epoch| (epoch as u128 + 1).saturating_mul(length))
        .filter(|&end| end >= next && end - now <= length + early_margin(length))
        .unwrap_or(next);
    Duration::from_millis(u64::try_from(end - now).unwrap_or(u64::MAX))
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

impl RedisLedger {
    /// A builder for a ledger on the Redis at `url` (`redis://host:port/db`); the
    /// window length must be set.
    pub fn builder(url: &str) -> RedisLedgerBuilder {
        RedisLedgerBuilder::new(url)
    }

    pub(crate) fn new(
        options: RedisLedgerBuilder,
        client: redis::Client,
        window: Duration,
        replica: String,
        rule: ChunkRule,
        price_wait: Duration,
    ) -> RedisLedger {
        RedisLedger {
            link: Link::new(client, options.url, options.io_timeout, options.max_backoff),
            keys: Keys::new(&options.namespace),
            scripts: Scripts::new(),
            counters: Counters::default(),
            namespace: options.namespace,
            replica,
            window,
            clock: options.clock,
            rule,
            fallback_share: options.fallback_share,
            price_wait,
            io_timeout: options.io_timeout,
            share_price: options.share_price,
            state: Mutex::new(State {
                epochs: [(0, 0); REMEMBERED],
                opened: 0,
                budget: 0,
                rate: ChargeRate::new(Instant::now()),
                closing_leased: 0,
                closing_seconds: 0.0,
                leased: 0,
                fallback_given: 0,
                closing_fallback: 0,
                fallback_left: 0,
                exhausted: false,
            }),
        }
    }

    /// The namespace whose budget this ledger leases.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// This replica's name in the fleet.
    pub fn replica_id(&self) -> &str {
        &self.replica
    }

    /// Counters of round trips, leases and faults since the ledger was built.
    pub fn stats(&self) -> LedgerStats {
        self.counters.snapshot()
    }

    /// The fleet epoch of the allocator's window `window`, if it is one of the last
    /// few opened.
    pub fn epoch_of(&self, window: u64) -> Option<u64> {
        lock(&self.state).epoch_of(window)
    }

    /// Time until the wall clock's next window boundary: sleep this long, then call
    /// `end_window` ([`Clock::Wall`] fleets end their windows together this way).
    /// That is the end of the epoch open here, which is the next boundary's epoch
    /// when the window was opened a little early (a ledger built or a timer woken
    /// within a twentieth of a window before a boundary opens the epoch after it).
    pub fn until_next_window(&self) -> Duration {
        let open = match self.clock {
            Clock::Wall => lock(&self.state).current_epoch(),
            Clock::Counted => None,
        };
        wait_until_window_end(unix_millis(), self.window.as_millis().max(1), open)
    }

    /// Checks that Redis answers.
    ///
    /// # Errors
    /// [`Error::Unreachable`] with the client's reason.
    pub fn ping(&self) -> Result<(), Error> {
        let mut reason = String::from("no answer");
        let pong = self.link.call(&self.counters, "ping", |c| {
            redis::cmd("PING")
                .query::<String>(c)
                .inspect_err(|e| reason = e.to_string())
        });
        match pong {
            Some(_) => Ok(()),
            None => Err(Error::Unreachable {
                url: self.link.url().to_owned(),
                reason,
            }),
        }
    }

    /// Milliseconds every key of an epoch lives: long enough for late releases and
    /// for the price history (the allocator's default 4 windows, with room).
    pub(crate) fn ttl_millis(&self) -> u64 {
        (self.window.as_millis() as u64)
            .saturating_mul(32)
            .max(10_000)
    }

    fn epoch_for(&self, state: &State, window: u64) -> u64 {
        match self.clock {
            Clock::Counted => window,
            Clock::Wall => {
                let length = self.window.as_millis().max(1);
                let epoch = ((unix_millis() + early_margin(length)) / length) as u64;
                // Never go back (a clock step): continue the current epoch instead.
                epoch.max(state.current_epoch().unwrap_or(0))
            }
        }
    }

    /// One lease round trip for the current epoch, or the fallback share when Redis
    /// is unreachable.
    fn lease(&self, state: &mut State, epoch: u64, needed: u64) -> Lease {
        if state.exhausted {
            return Lease::default();
        }
        let now = Instant::now();
        let chunk = self.rule.chunk(&state.rate, state.budget, needed, now);
        let reply = self.link.call(&self.counters, "lease", |c| {
            self.scripts
                .lease
                .key(self.keys.budget(epoch))
                .key(self.keys.generation())
                .key(self.keys.members(epoch))
                .arg(epoch)
                .arg(state.budget)
                .arg(chunk)
                .arg(self.ttl_millis())
                .arg(&self.replica)
                .arg(needed)
                .invoke::<(i64, i64)>(c)
        });
        match reply.map(LeaseReply::decode) {
            Some(LeaseReply::Granted { tokens, left }) => {
                Counters::add(&self.counters.leases, 1);
                Counters::add(&self.counters.tokens_leased, tokens);
                state.rate.leased(tokens);
                state.leased += tokens;
                if left == 0 {
                    state.exhausted = true;
                }
                Lease {
                    tokens,
                    // From the grant, not the chunk asked for: a fair-share grant
                    // smaller than a chunk must not trigger a refill at once.
                    refill_below: if left == 0 {
                        0
                    } else {
                        ChunkRule::refill_below(tokens)
                    },
                }
            }
            Some(LeaseReply::Restarted | LeaseReply::Lost) => {
                state.exhausted = true;
                Counters::add(&self.counters.unfunded_windows, 1);
                tracing::warn!(
                    namespace = %self.namespace,
                    epoch,
                    "redis ledger: Redis has no state for this window (first use, or a \
                     restart lost it); the window is unfunded so that no budget is \
                     granted twice; budgets resume at the next window"
                );
                Lease::default()
            }
            None => {
                let give = state.fallback_left.min(chunk);
                state.fallback_left -= give;
                state.fallback_given += give;
                Counters::add(&self.counters.fallback_tokens, give);
                Lease {
                    tokens: give,
                    // Keep asking: the next call after the backoff reconnects.
                    refill_below: ChunkRule::refill_below(chunk),
                }
            }
        }
    }
}

/// For allocators of shifted-surge queries (the default curve type): the demand
/// samples go to Redis as `(threshold, width, ceiling, weight, cap)` records.
impl BudgetLedger for RedisLedger {
    fn open(&self, window: u64, budget: u64) -> Lease {
        let mut state = lock(&self.state);
        let epoch = self.epoch_for(&state, window);
        let continued = state.current_epoch() == Some(epoch);
        state.remember(window, epoch);
        state.budget = budget;
        let (leased, seconds) = state.rate.start(Instant::now());
        state.closing_leased = leased;
        state.closing_seconds = seconds;
        state.closing_fallback = 0;
        if !continued {
            state.leased = 0;
            state.closing_fallback = std::mem::take(&mut state.fallback_given);
            state.fallback_left = self.fallback_share;
            state.exhausted = false;
        }
        self.lease(&mut state, epoch, 0)
    }

    fn extend(&self, window: u64, needed: u64) -> Lease {
        let mut state = lock(&self.state);
        match state.epoch_of(window) {
            Some(epoch) if state.current_epoch() == Some(epoch) => {
                self.lease(&mut state, epoch, needed)
            }
            _ => Lease::default(),
        }
    }

    fn release(&self, window: u64, unused: u64) {
        let mut state = lock(&self.state);
        let Some(epoch) = state.epoch_of(window) else {
            return;
        };
        // Fallback tokens never came from Redis: count them as the unspent ones, so a
        // release returns at most what was leased from Redis.
        let returned = if state.current_epoch() == Some(epoch) {
            let returned = unused.saturating_sub(state.fallback_given);
            state.fallback_given = state.fallback_given.saturating_sub(unused);
            returned
        } else {
            // The window that ended: learn the replica's charge rate from it.
            let charged = state.closing_leased.saturating_sub(unused);
            let seconds = state.closing_seconds;
            state.rate.observe(charged, seconds);
            let returned = unused.saturating_sub(state.closing_fallback);
            state.closing_fallback = state.closing_fallback.saturating_sub(unused);
            returned
        };
        drop(state);
        if returned == 0 {
            return;
        }
        let done = self.link.call(&self.counters, "release", |c| {
            self.scripts
                .release
                .key(self.keys.budget(epoch))
                .arg(returned)
                .invoke::<i64>(c)
        });
        if done.is_some_and(|left| left >= 0) {
            Counters::add(&self.counters.tokens_released, returned);
        }
    }

    fn next_price(&self, closed: &ClosedWindow<'_>) -> f64 {
        if !self.share_price {
            return closed.local_price();
        }
        let (epoch, next) = {
            let state = lock(&self.state);
            (
                state.epoch_of(closed.window()),
                state.epoch_of(closed.window() + 1),
            )
        };
        match (epoch, next) {
            (Some(epoch), Some(next)) if next > epoch => self.fleet_price(closed, epoch, next),
            // The window continued the same epoch: keep the price.
            _ => closed.price(),
        }
    }

    fn current_price(&self, window: u64) -> Option<f64> {
        let epoch = self.epoch_of(window)?;
        let text = self.link.call(&self.counters, "read price", |c| {
            redis::cmd("GET")
                .arg(self.keys.price(epoch))
                .query::<Option<String>>(c)
        })??;
        text.parse::<f64>().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(clock: Clock) -> RedisLedger {
        RedisLedger::builder("redis://127.0.0.1:1/0")
            .window(Duration::from_millis(250))
            .clock(clock)
            .build()
            .unwrap()
    }

    #[test]
    fn a_timer_waits_for_the_end_of_the_epoch_open_here() {
        let ms = |d: Duration| d.as_millis();
        // No epoch open yet, or the one the wall clock is in: the next boundary.
        assert_eq!(ms(wait_until_window_end(10_300, 1_000, None)), 700);
        assert_eq!(ms(wait_until_window_end(10_300, 1_000, Some(10))), 700);
        // Opened 30 ms before the boundary, as the epoch after it (a twentieth of a
        // window early): its end, not the boundary, else the window just opened
        // would be ended at once and its epoch opened twice.
        assert_eq!(ms(wait_until_window_end(10_970, 1_000, Some(11))), 1_030);
        // An epoch continued past a clock step back, or one far ahead: the next
        // boundary, as a timer without it would.
        assert_eq!(ms(wait_until_window_end(10_300, 1_000, Some(9))), 700);
        assert_eq!(ms(wait_until_window_end(10_300, 1_000, Some(14))), 700);
    }

    #[test]
    fn the_window_to_epoch_ring_remembers_the_last_eight_windows() {
        let ledger = ledger(Clock::Counted);
        let mut state = lock(&ledger.state);
        assert_eq!(state.current_epoch(), None);
        for window in 0..20 {
            state.remember(window, 100 + window);
        }
        assert_eq!(state.current_epoch(), Some(119));
        assert_eq!(state.epoch_of(19), Some(119));
        assert_eq!(state.epoch_of(12), Some(112));
        assert_eq!(state.epoch_of(11), None);
    }

    #[test]
    fn wall_epochs_follow_the_clock_and_never_go_back() {
        let ledger = ledger(Clock::Wall);
        assert!(ledger.until_next_window() <= Duration::from_millis(250));
        let mut state = lock(&ledger.state);
        let now = ledger.epoch_for(&state, 0);
        let expected = ((unix_millis() + 12) / 250) as u64;
        assert!(
            now == expected || now + 1 == expected,
            "{now} vs {expected}"
        );
        // A replica that already opened a later epoch stays there.
        state.remember(0, now + 5);
        assert_eq!(ledger.epoch_for(&state, 1), now + 5);
        assert_eq!(ledger.epoch_for(&state, 1), now + 5);
        let counted = super::tests::ledger(Clock::Counted);
        assert_eq!(counted.epoch_for(&state, 7), 7);
    }

    #[test]
    fn a_cut_off_ledger_grants_only_its_fallback_share_per_window() {
        let ledger = RedisLedger::builder("redis://127.0.0.1:1/0")
            .window(Duration::from_secs(1))
            .clock(Clock::Counted)
            .fallback_share(700)
            .min_chunk(300)
            .max_chunk_share(0.001)
            .build()
            .unwrap();
        let first = ledger.open(0, 100_000);
        assert_eq!(first.tokens, 300);
        assert!(first.refill_below > 0, "keeps asking, to reconnect");
        assert_eq!(ledger.extend(0, 0).tokens, 300);
        assert_eq!(ledger.extend(0, 0).tokens, 100);
        assert_eq!(ledger.extend(0, 0).tokens, 0);
        // A new window, a new share.
        assert_eq!(ledger.open(1, 100_000).tokens, 300);
        let stats = ledger.stats();
        assert_eq!(stats.fallback_tokens, 1_000);
        assert!(!stats.connected && stats.failures >= 1);
    }
}
