//! Options of an [`OnlineAllocator`] and their validation.

use super::boundary::Clearing;
use super::ledger::{BudgetLedger, InProcessLedger};
use super::reservoir::Sampler;
use super::shard::{pooled_mark, Shard};
use super::window::{pack, Central, MAX_WINDOW_BUDGET};
use super::{Leases, OnlineAllocator};
use crate::error::{Error, Result, Value};
use crate::model::{Curve, ShiftedSurge};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Gives every allocator an id so that a ticket cannot be refunded to another one.
static NEXT_ALLOCATOR_ID: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, Copy, PartialEq)]
enum BudgetSpec {
    Unset,
    PerWindow(u64),
    PerSecond { rate: f64, window: Duration },
}

/// Options of an [`OnlineAllocator`]; [`build`](Self::build) validates them.
///
/// ```
/// use clear_alloc::online::OnlineAllocator;
/// use std::time::Duration;
///
/// // 2 000 tokens per second, re-cleared every 5 seconds.
/// let online = OnlineAllocator::builder()
///     .tokens_per_second(2_000.0, Duration::from_secs(5))
///     .default_cap(8192)
///     .build()?;
/// assert_eq!(online.window_budget(), 10_000);
/// assert_eq!(online.window_length(), Some(Duration::from_secs(5)));
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OnlineAllocatorBuilder<C: Curve = ShiftedSurge> {
    budget: BudgetSpec,
    default_cap: u64,
    initial_price: f64,
    history_windows: usize,
    samples_per_window: usize,
    refund_aware: bool,
    seed: u64,
    ledger: Option<Arc<dyn BudgetLedger<C>>>,
}

impl<C: Curve> PartialEq for OnlineAllocatorBuilder<C> {
    /// Options are equal when every value is, and both use the same ledger (the same
    /// `Arc`, or both the default).
    fn eq(&self, other: &Self) -> bool {
        let same_ledger = match (&self.ledger, &other.ledger) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_ledger
            && self.budget == other.budget
            && self.default_cap == other.default_cap
            && self.initial_price.to_bits() == other.initial_price.to_bits()
            && self.history_windows == other.history_windows
            && self.samples_per_window == other.samples_per_window
            && self.refund_aware == other.refund_aware
            && self.seed == other.seed
    }
}

impl<C: Curve> Default for OnlineAllocatorBuilder<C> {
    fn default() -> Self {
        OnlineAllocatorBuilder {
            budget: BudgetSpec::Unset,
            default_cap: crate::Allocator::DEFAULT_CAP,
            initial_price: 0.0,
            history_windows: 4,
            samples_per_window: 256,
            refund_aware: true,
            seed: 0x5EED,
            ledger: None,
        }
    }
}

impl<C: Curve> OnlineAllocatorBuilder<C> {
    /// The default options for queries of curve type `C` (what
    /// [`OnlineAllocator::builder`] gives for [`ShiftedSurge`]); a budget must be set.
    ///
    /// ```
    /// use clear_alloc::online::OnlineAllocatorBuilder;
    /// use clear_alloc::{Mixture, Query, ShiftedSurge};
    ///
    /// let online = OnlineAllocatorBuilder::<Mixture>::new()
    ///     .tokens_per_window(10_000)
    ///     .initial_price(1e-4)
    ///     .build()?;
    /// let surge = ShiftedSurge::new(150.0, 100.0, 0.9)?;
    /// let unsure = Mixture::new([(0.5, surge), (0.5, surge.with_threshold(400.0)?)])?;
    /// assert!(online.admit(&Query::new(unsure).with_cap(2_000))?.tokens() > 0);
    /// # Ok::<(), clear_alloc::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The budget of each window, in tokens (1 ..= [`MAX_WINDOW_BUDGET`]). The host
    /// decides when a window ends by calling [`OnlineAllocator::end_window`].
    pub fn tokens_per_window(mut self, tokens: u64) -> Self {
        self.budget = BudgetSpec::PerWindow(tokens);
        self
    }

    /// A token rate and the window length over which it is enforced: each window's
    /// budget is `⌊rate · window⌋` tokens. The host still ends windows (every
    /// [`OnlineAllocator::window_length`]).
    pub fn tokens_per_second(mut self, rate: f64, window: Duration) -> Self {
        self.budget = BudgetSpec::PerSecond { rate, window };
        self
    }

    /// Cap for queries without one of their own (default 32 768 tokens).
    pub fn default_cap(mut self, tokens: u64) -> Self {
        self.default_cap = tokens;
        self
    }

    /// The price used until the first window ends (default 0: every query gets its
    /// cap until the first window shows the demand), unless the ledger knows the
    /// current price ([`BudgetLedger::current_price`]).
    pub fn initial_price(mut self, price: f64) -> Self {
        self.initial_price = price;
        self
    }

    /// How many recent windows the price is cleared against (default 4). Fewer adapt
    /// faster to a shift in the traffic mix; more give a steadier price.
    pub fn history_windows(mut self, windows: usize) -> Self {
        self.history_windows = windows;
        self
    }

    /// Most arrivals kept per window for re-clearing the price (default 256).
    pub fn samples_per_window(mut self, samples: usize) -> Self {
        self.samples_per_window = samples;
        self
    }

    /// Whether the price accounts for refunds recycling budget within a window
    /// (default true; see the module docs). With `false` the price clears the grants
    /// alone against the budget.
    pub fn refund_aware(mut self, on: bool) -> Self {
        self.refund_aware = on;
        self
    }

    /// Seed of the reservoir sampler (default fixed, so runs are reproducible).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Where the window budgets come from (default: [`InProcessLedger`], the
    /// allocator owns the whole budget of every window). A ledger shared by several
    /// allocators makes [`tokens_per_window`](Self::tokens_per_window) (or the rate)
    /// the budget of them all together; see [`BudgetLedger`] for the lease rules.
    pub fn ledger(mut self, ledger: Arc<dyn BudgetLedger<C>>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Validates the options, allocates the (bounded) sample memory and opens the
    /// first window with the ledger.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when no budget was set, the budget is 0 or above
    /// [`MAX_WINDOW_BUDGET`], the rate is NaN, infinite or not positive, the window is
    /// empty, the initial price is NaN, infinite or negative, or the history or the
    /// sample size is 0 (or absurdly large).
    pub fn build(self) -> Result<OnlineAllocator<C>> {
        let (budget, window_length) = match self.budget {
            BudgetSpec::Unset => {
                return Err(option(
                    "tokens_per_window",
                    0.0,
                    "must be set (tokens_per_window or tokens_per_second)",
                ))
            }
            BudgetSpec::PerWindow(tokens) => (tokens, None),
            BudgetSpec::PerSecond { rate, window } => {
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(option("tokens_per_second", rate, "must be finite and > 0"));
                }
                if window.is_zero() {
                    return Err(option("window", 0.0, "must be longer than 0 s"));
                }
                let tokens = (rate * window.as_secs_f64()).floor();
                if tokens > MAX_WINDOW_BUDGET as f64 {
                    return Err(option(
                        "tokens_per_window",
                        tokens,
                        "rate × window must be at most 2^40 - 1 tokens",
                    ));
                }
                (tokens as u64, Some(window))
            }
        };
        if budget == 0 || budget > MAX_WINDOW_BUDGET {
            return Err(option(
                "tokens_per_window",
                budget as f64,
                "must be in 1 ..= 2^40 - 1 tokens",
            ));
        }
        if !(self.initial_price.is_finite() && self.initial_price >= 0.0) {
            return Err(option(
                "initial_price",
                self.initial_price,
                "must be finite and >= 0",
            ));
        }
        // The limits keep the sample memory bounded (a few MB at most).
        if !(1..=1024).contains(&self.history_windows) {
            return Err(option(
                "history_windows",
                self.history_windows as f64,
                "must be in 1 ..= 1024",
            ));
        }
        if !(1..=65_536).contains(&self.samples_per_window) {
            return Err(option(
                "samples_per_window",
                self.samples_per_window as f64,
                "must be in 1 ..= 65536",
            ));
        }
        let capacity = self.samples_per_window;
        let ledger: Arc<dyn BudgetLedger<C>> =
            self.ledger.unwrap_or_else(|| Arc::new(InProcessLedger));
        let first = ledger.open(0, budget);
        // One allocator never holds more than the whole window budget.
        let held = first.tokens.min(budget);
        if first.tokens > held {
            ledger.release(0, first.tokens - held);
        }
        let sharded = first.refill_below == 0;
        let price = ledger
            .current_price(0)
            .filter(|p| p.is_finite() && *p >= 0.0)
            .unwrap_or(self.initial_price);
        Ok(OnlineAllocator {
            id: NEXT_ALLOCATOR_ID.fetch_add(1, Ordering::Relaxed),
            budget,
            window_length,
            default_cap: self.default_cap,
            refund_aware: self.refund_aware,
            history_windows: self.history_windows,
            price_bits: AtomicU64::new(price.to_bits()),
            price_generation: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            samples_per_window: capacity as u64,
            seed: self.seed,
            window_salt: AtomicU64::new(super::reservoir::salt(0, self.seed)),
            sample_ceiling: AtomicU64::new(u64::MAX),
            central: Central {
                window_state: AtomicU64::new(pack(0, held)),
                refill_below: AtomicU64::new(first.refill_below),
            },
            // As `end_window` opens a window: sharded unless the lease has a
            // low-water mark.
            shards: std::array::from_fn(|_| Shard::new(0, sharded)),
            pooled: AtomicU64::new(if sharded { 0 } else { pooled_mark(0) }),
            ledger,
            leases: Mutex::new(Leases { leased: held }),
            sampler: Mutex::new(Sampler::new(self.history_windows, capacity)),
            clearing: Mutex::new(Clearing {
                weighted: Vec::with_capacity(capacity * self.history_windows),
                closed: Vec::with_capacity(capacity),
                spent_share: 1.0,
            }),
        })
    }
}

fn option(option: &'static str, value: impl Into<Value>, reason: &'static str) -> Error {
    Error::invalid_option(option, value, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::Lease;

    /// A ledger that grants more than asked (a buggy fleet ledger), recording what
    /// came back.
    #[derive(Debug, Default)]
    struct Generous {
        released: AtomicU64,
    }

    impl BudgetLedger for Generous {
        fn open(&self, _window: u64, budget: u64) -> Lease {
            Lease {
                tokens: 3 * budget,
                refill_below: 1,
            }
        }

        fn extend(&self, _window: u64, _needed: u64) -> Lease {
            Lease {
                tokens: 1_000,
                refill_below: 1,
            }
        }

        fn release(&self, _window: u64, unused: u64) {
            self.released.fetch_add(unused, Ordering::Relaxed);
        }
    }

    #[test]
    fn builders_are_equal_when_their_options_and_ledger_are() {
        let ledger: Arc<dyn BudgetLedger> = Arc::new(InProcessLedger);
        let a = OnlineAllocator::builder().tokens_per_window(10);
        assert_eq!(a, a.clone());
        assert_eq!(
            a.clone().ledger(ledger.clone()),
            a.clone().ledger(ledger.clone())
        );
        assert_ne!(
            a.clone().ledger(ledger),
            a.clone().ledger(Arc::new(InProcessLedger))
        );
        assert_ne!(a.clone(), a.clone().ledger(Arc::new(InProcessLedger)));
        assert_ne!(a.clone(), a.seed(1));
    }

    #[test]
    fn an_allocator_never_holds_more_than_the_window_budget() {
        let ledger = Arc::new(Generous::default());
        let online = OnlineAllocator::builder()
            .tokens_per_window(5_000)
            .ledger(ledger.clone())
            .build()
            .unwrap();
        // 15 000 offered at the start: 5 000 kept, 10 000 released at once.
        assert_eq!(online.remaining(), 5_000);
        assert_eq!(ledger.released.load(Ordering::Relaxed), 10_000);
        let report = online.end_window();
        assert_eq!(report.charged, 0);
        assert_eq!(online.remaining(), 5_000);
        // 10 000 more at the next open, plus the 5 000 unused of window 0.
        assert_eq!(ledger.released.load(Ordering::Relaxed), 25_000);
    }
}
