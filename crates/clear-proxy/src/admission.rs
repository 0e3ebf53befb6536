//! Admission: the one module that talks to the core's online allocator.
//!
//! A request is admitted on its *completion* curve: its thinking curve shifted right
//! by the answer reserve, capped at its completion limit. The allocator then prices
//! and charges thinking grant and answer reserve together, so the window budget
//! counts every completion token the proxy authorises. A grant that does not exceed
//! the reserve leaves no thinking and is treated as abandoned.
//!
//! A [`Grant`] owns the allocator's ticket and settles it exactly once: with the
//! tokens used when the request completes, or, when it is dropped early (upstream
//! failure, timeout, client gone, shutdown), with the tokens counted so far, so the
//! rest is refunded to the window that granted it (while that window is open).

use crate::config::Config;
use crate::error::ApiError;
use crate::fleet;
use crate::learning::{self, FeedbackOutcome, Learning};
use crate::metrics::Metrics;
use crate::request::ParsedRequest;
use clear_alloc::online::{OnlineAllocator, Ticket};
use clear_alloc::Query;
use clear_alloc_redis::RedisLedger;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Closed windows whose summaries are kept (see [`Admission::recent_windows`]).
const KEPT_WINDOWS: usize = 64;

/// The largest budget one window may have.
pub const MAX_WINDOW_BUDGET: u64 = clear_alloc::online::MAX_WINDOW_BUDGET;

/// The allocator with its window clock and metrics.
#[derive(Debug)]
pub struct Admission {
    online: OnlineAllocator,
    metrics: Arc<Metrics>,
    window: Duration,
    window_started: Mutex<Instant>,
    ledger: Option<Arc<RedisLedger>>,
    /// Tokens the ledger had leased (and granted from its fallback share) when the
    /// current window opened, for the live `clear_window_charged_tokens` of a fleet.
    leased_before: Mutex<u64>,
    recent: Mutex<VecDeque<WindowSummary>>,
    /// The per-class curve learner, when the config asks for one.
    learning: Option<Learning>,
}

/// What one window did, reported when it ends.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct WindowSummary {
    /// The window that ended (0-based, this proxy's count).
    pub window: u64,
    /// Its fleet epoch (`⌊unix time / window⌋` at its start) when the proxy shares a
    /// ledger: the windows of a fleet's replicas with the same epoch share one budget.
    pub epoch: Option<u64>,
    /// Its budget.
    pub budget: u64,
    /// Tokens it paid for, net of refunds; never above `budget`.
    pub charged: u64,
    /// Refunds credited to it while open.
    pub refunded: u64,
    /// Requests it admitted (abandoned ones included).
    pub arrivals: u64,
    /// Requests it abandoned.
    pub abandoned: u64,
    /// The price it admitted at.
    pub price: f64,
    /// The price of the next window.
    pub next_price: f64,
}

/// The decision for one request.
#[derive(Debug)]
pub enum Decision {
    /// Granted completion tokens (thinking + answer reserve).
    Granted(Grant),
    /// Abandoned: the request's curve cannot pay the price for tokens beyond its
    /// answer reserve. Nothing was charged.
    Abandoned {
        /// Seconds until the window ends.
        retry_after: u64,
        /// The price it could not pay.
        price: f64,
    },
}

impl Admission {
    /// The allocator the config describes (its default cap: the default class's
    /// thinking cap).
    ///
    /// # Errors
    /// The allocator's validation error as a message (the config validated the same
    /// values first, so this is not expected).
    ///
    /// With a `ledger` (see [`crate::fleet`]), `tokens_per_window` is the budget of
    /// every allocator on the ledger together, and the first window is leased here
    /// (one blocking Redis round trip).
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        ledger: Option<Arc<RedisLedger>>,
    ) -> Result<Self, String> {
        let tokens_per_window = config.tokens_per_window;
        let initial_price = config.initial_price;
        let mut builder = OnlineAllocator::builder()
            .tokens_per_window(tokens_per_window)
            .default_cap(config.classes.default_class().max_thinking_tokens)
            .initial_price(initial_price)
            .samples_per_window(config.samples_per_window)
            .history_windows(config.history_windows);
        if let Some(l) = &ledger {
            builder = builder.ledger(l.clone());
        }
        let leased_before = Mutex::new(leased_so_far(ledger.as_deref()));
        let online = builder.build().map_err(|e| e.to_string())?;
        let learning = config
            .learn
            .then(|| Learning::new(&config.classes, config.learn_exploration));
        if let Some(l) = &learning {
            l.publish(&metrics);
        }
        metrics.window_budget.set(tokens_per_window as i64);
        // A replica joining a running fleet starts at the fleet's price.
        metrics.price.set(online.price());
        Ok(Admission {
            online,
            metrics,
            window: config.window,
            window_started: Mutex::new(Instant::now()),
            ledger,
            leased_before,
            recent: Mutex::new(VecDeque::with_capacity(KEPT_WINDOWS)),
            learning,
        })
    }

    /// The curve learner, when the proxy learns (`learn = true`).
    pub fn learning(&self) -> Option<&Learning> {
        self.learning.as_ref()
    }

    /// Feedback on a request (`POST /v1/clear/feedback`): learned from when the proxy
    /// learns and the request is waiting for it; `None` when the proxy does not learn.
    pub fn feedback(&self, request_id: &str, correct: bool) -> Option<FeedbackOutcome> {
        Some(self.learning.as_ref()?.feedback(request_id, correct))
    }

    /// The fleet ledger, when the budget is shared.
    pub fn ledger(&self) -> Option<&Arc<RedisLedger>> {
        self.ledger.as_ref()
    }

    /// The summaries of the last closed windows (up to 64), oldest first.
    pub fn recent_windows(&self) -> Vec<WindowSummary> {
        lock(&self.recent).iter().copied().collect()
    }

    /// The current price per token.
    pub fn price(&self) -> f64 {
        self.online.price()
    }

    /// The budget of every window.
    pub fn window_budget(&self) -> u64 {
        self.online.window_budget()
    }

    /// Tokens the current window can still grant.
    pub fn remaining(&self) -> u64 {
        self.online.remaining()
    }

    /// Seconds (at least 1) until the current window ends.
    pub fn retry_after(&self) -> u64 {
        let left = match &self.ledger {
            Some(l) => l.until_next_window(),
            None => self
                .window
                .saturating_sub(lock(&self.window_started).elapsed()),
        };
        left.as_secs_f64().ceil().max(1.0) as u64
    }

    /// The window length.
    pub fn window_length(&self) -> Duration {
        self.window
    }

    /// Time until this proxy should end its window: the window length after the last
    /// end, or with a ledger the wall clock's next window boundary (which every
    /// replica of the fleet shares).
    pub fn until_window_end(&self) -> Duration {
        match &self.ledger {
            Some(l) => l.until_next_window(),
            None => self
                .window
                .saturating_sub(lock(&self.window_started).elapsed()),
        }
    }

    /// Admits one parsed request; `request_id` names it in feedback.
    ///
    /// When the proxy learns and the request takes its class's curve, it is admitted
    /// on the class's learned completion curve, and learned from when it completes.
    ///
    /// # Errors
    /// A 400 when the allocator rejects the query (its curve cannot be shifted by
    /// the answer reserve, e.g. a threshold near the largest float).
    pub fn admit(
        self: &Arc<Self>,
        request: &ParsedRequest,
        request_id: &str,
    ) -> Result<Decision, ApiError> {
        let reserve = request.answer_reserve;
        let learning = self.learning.as_ref().filter(|_| !request.curve_given);
        let curve = match learning {
            Some(l) => l.curve_to_admit(&request.class),
            None => request
                .curve
                .with_threshold(request.curve.threshold() + reserve as f64)
                .map_err(|e| ApiError::invalid("x-clear-threshold", e))?,
        };
        let query = Query::new(curve).with_cap(request.completion_cap());
        let admitted = match self.ledger {
            // A lease refill inside `admit` is a Redis round trip (rare: a few per
            // thousand admissions, at most the ledger's I/O timeout).
            Some(_) => fleet::may_block(|| self.online.admit(&query)),
            None => self.online.admit(&query),
        };
        let ticket = admitted.map_err(|e| ApiError::invalid("x-clear-*", e))?;
        if ticket.tokens() <= reserve {
            // No thinking left: refund whatever was reserved (it is still the same
            // window unless it just ended, in which case nothing is owed to it).
            let _ = self.online.complete(ticket, 0);
            return Ok(Decision::Abandoned {
                retry_after: self.retry_after(),
                price: self.price(),
            });
        }
        let tokens = ticket.tokens();
        self.metrics.granted_tokens.inc_by(tokens);
        self.metrics.in_flight.inc();
        self.metrics
            .grants
            .get_or_create(&vec![("class", request.class.clone())])
            .observe(tokens as f64);
        Ok(Decision::Granted(Grant {
            admission: Arc::clone(self),
            ticket: Some(ticket),
            tokens,
            answer_reserve: reserve,
            used: 0,
            learn: learning.map(|_| Learned {
                request_id: request_id.to_string(),
                class: request.class.clone(),
                hit_limit: false,
                finished: false,
            }),
        }))
    }

    /// Ends the window: restores the budget and re-clears the price. With a ledger
    /// this makes a few blocking Redis round trips (releasing the lease, publishing
    /// the demand sample, the fleet's price, the next lease): call it off the async
    /// runtime's workers, as [`crate::Proxy::serve`] does.
    pub fn end_window(&self) -> WindowSummary {
        let before = self.ledger.as_ref().map(|l| l.stats());
        let report = self.online.end_window();
        *lock(&self.window_started) = Instant::now();
        if let Some(learning) = &self.learning {
            learning.end_window();
            learning.publish(&self.metrics);
        }
        if let (Some(l), Some(before)) = (&self.ledger, &before) {
            *lock(&self.leased_before) = before.tokens_leased + before.fallback_tokens;
            fleet::log_faults(before, &l.stats(), report.window);
        }
        self.metrics.windows.inc();
        self.metrics.last_window_charged.set(report.charged as i64);
        self.metrics.price.set(report.next_price);
        let summary = WindowSummary {
            window: report.window,
            epoch: self.ledger.as_ref().and_then(|l| l.epoch_of(report.window)),
            budget: report.budget,
            charged: report.charged,
            refunded: report.refunded,
            arrivals: report.arrivals,
            abandoned: report.abandoned,
            price: report.price,
            next_price: report.next_price,
        };
        let mut recent = lock(&self.recent);
        if recent.len() == KEPT_WINDOWS {
            recent.pop_front();
        }
        recent.push_back(summary);
        summary
    }

    /// Refreshes the gauges read at scrape time.
    pub fn observe(&self) {
        let remaining = self.online.remaining();
        let charged = match &self.ledger {
            // What this replica took from the fleet's budget in this window, net
            // of refunds (approximate while the window turns over).
            Some(l) => {
                let stats = l.stats();
                if let Some(m) = &self.metrics.ledger {
                    m.set(&stats);
                }
                (stats.tokens_leased + stats.fallback_tokens)
                    .saturating_sub(*lock(&self.leased_before))
                    .saturating_sub(remaining)
            }
            None => self.online.window_budget().saturating_sub(remaining),
        };
        self.metrics.window_remaining.set(remaining as i64);
        self.metrics.window_charged.set(charged as i64);
        self.metrics.price.set(self.online.price());
    }

    fn settle(&self, ticket: Ticket, used: u64, learned: Option<Learned>) {
        let granted = ticket.tokens();
        if used > granted {
            tracing::warn!(
                granted,
                used,
                "the engine generated more tokens than granted"
            );
        }
        let used = used.min(granted);
        // `complete` only fails for a foreign ticket or `used > granted`, both
        // excluded here.
        let credited = match (learned, &self.learning) {
            (Some(l), Some(learning)) if l.finished => {
                let completion = learning::completion(used, l.hit_limit);
                match self.online.complete_with(ticket, completion) {
                    Ok(completed) => {
                        let credited = completed.credited;
                        learning.completed(l.request_id, l.class, completed);
                        credited
                    }
                    Err(_) => 0,
                }
            }
            _ => self.online.complete(ticket, used).unwrap_or(0),
        };
        self.metrics.used_tokens.inc_by(used);
        self.metrics.refunded_tokens.inc_by(credited);
        self.metrics.in_flight.dec();
        self.metrics.settled.inc();
    }
}

/// Locks `mutex` even if a thread panicked while holding it (the guarded values are
/// valid after any partial update).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Tokens `ledger` has leased and granted from its fallback share so far.
fn leased_so_far(ledger: Option<&RedisLedger>) -> u64 {
    ledger.map_or(0, |l| {
        let s = l.stats();
        s.tokens_leased + s.fallback_tokens
    })
}

/// One admitted request's grant; settles its ticket exactly once.
#[derive(Debug)]
pub struct Grant {
    admission: Arc<Admission>,
    ticket: Option<Ticket>,
    tokens: u64,
    answer_reserve: u64,
    used: u64,
    learn: Option<Learned>,
}

/// What the learner needs of a granted request.
#[derive(Debug)]
struct Learned {
    request_id: String,
    class: String,
    /// The engine stopped it at its limit (`finish_reason = "length"`).
    hit_limit: bool,
    /// It ran to its end ([`Grant::finish`]), rather than failing or being dropped.
    finished: bool,
}

impl Grant {
    /// Completion tokens granted (thinking + answer reserve).
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The thinking part of the grant.
    pub fn thinking_tokens(&self) -> u64 {
        self.tokens - self.answer_reserve
    }

    /// Records tokens generated so far (from a stream), so that a grant dropped
    /// early refunds only the rest.
    pub fn record_used(&mut self, used: u64) {
        self.used = used;
    }

    /// Records that the engine stopped the request at its limit (`finish_reason =
    /// "length"`): its length is censored at the grant.
    pub fn record_limit(&mut self) {
        if let Some(l) = self.learn.as_mut() {
            l.hit_limit = true;
        }
    }

    /// Settles the grant with the tokens the request used; the rest is refunded. A
    /// grant finished this way (not dropped early) is learned from.
    pub fn finish(mut self, used: u64) {
        self.used = used;
        if let Some(l) = self.learn.as_mut() {
            l.finished = true;
        }
        // Drop settles.
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.admission.settle(ticket, self.used, self.learn.take());
        }
    }
}
