//! Admission control for a serving loop: one shadow price carried from window to
//! window, a token budget per window, and refunds for requests that stop early.
//!
//! # The math
//!
//! The price solution of SPEC §3–4 (Wan et al., *The Shadow Price of Reasoning*, ICML
//! 2026) needs the whole batch only to find the price λ; given λ, every query's grant
//! is its own best response `b_i(λ)` (SPEC §3: the stationary point
//! `τ − W₋₁(−βλ/α)/β`, its cap, or 0 when the query is insolvent). A server that sees
//! requests one at a time can therefore carry λ as its only state and answer each
//! arrival in O(1): [`OnlineAllocator::admit`] evaluates the best response at the
//! current price (one W₋₁ evaluation, no allocation) and reserves the tokens from the
//! current window's budget. When the window's remaining budget is smaller than the
//! best response, the query gets its best response under the tighter cap "what is
//! left" (SPEC §3 with `cap = remaining`), which may be 0.
//!
//! At each window boundary ([`OnlineAllocator::end_window`]) the price is re-cleared
//! (SPEC §4) against the demand seen in the last few windows: a bounded reservoir
//! sample of each window's arrivals (Vitter's Algorithm R), each sample standing for
//! `arrivals / samples` requests, so that the estimated demand of one window is
//!
//! ```text
//! D̂(λ) = (1/H) Σ_windows (n_w / m_w) Σ_{i ∈ sample_w} b_i(λ),
//! ```
//!
//! a non-increasing step function of λ (SPEC §3). The new price is the feasible end of
//! a bracket `D̂(lo) > B ≥ D̂(hi)` found by a geometric search started at the last
//! price (the warm start) and narrowed by bisection in `ln λ`. Old windows drop out of
//! the history, so the price follows a shift of the traffic mix within `H` windows.
//!
//! **\[ours\]** Refunds: a request that stops before its grant returns the unused tokens
//! with [`OnlineAllocator::complete`]. They are credited to the window that granted
//! them if it is still open (so early finishers free budget for later arrivals), and
//! are not carried into a later window (so no window ever spends more than its
//! budget). When refunds recycle part of each grant, the price is cleared against the
//! budget divided by the measured share of a grant that is really spent, which lets
//! the window grant more than its budget gross while its net charge stays within it.
//!
//! # Concurrency
//!
//! The allocator is `Send + Sync`; share it behind an `Arc`. The hot path takes no
//! blocking lock: the price is an `AtomicU64` (the bits of an `f64`), and the window's
//! epoch and remaining budget are packed into one `AtomicU64` updated by
//! compare-and-swap, so a reservation and the window it belongs to change together
//! and a window rollover can never be charged twice. The demand sample sits behind a
//! `Mutex` that `admit` takes only for the few arrivals the reservoir keeps, and only
//! if it is free; otherwise the arrival is counted but not sampled, which thins the
//! sample at random without making any request wait. `end_window` takes the locks;
//! it runs once per window.
//!
//! # Example: a serving loop
//!
//! ```
//! use clear_alloc::online::OnlineAllocator;
//! use clear_alloc::{Query, ShiftedSurge};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let online = Arc::new(
//!     OnlineAllocator::builder()
//!         .tokens_per_second(6_000.0, Duration::from_secs(10)) // 60 000 tokens per window
//!         .default_cap(4096)
//!         .build()?,
//! );
//!
//! // Request handler (any thread): the curve comes from your threshold predictor.
//! let query = Query::new(ShiftedSurge::new(151.0, 101.0, 0.95)?).with_id("req-17");
//! let ticket = online.admit(&query)?;
//! if ticket.is_abandoned() {
//!     // answer from the cheap path, or reject
//! } else {
//!     let max_new_tokens = ticket.tokens();
//!     let generated = max_new_tokens.min(230); // ... run the model ...
//!     online.complete(ticket, generated)?; // refunds the unused tokens
//! }
//!
//! // Timer thread, every online.window_length():
//! let report = online.end_window();
//! println!(
//!     "charged {} of {} tokens; next price {:.2e}",
//!     report.charged, report.budget, report.next_price
//! );
//! # Ok::<(), clear_alloc::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::solver::Bidder;
use crate::solver::Query;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Bits of the packed window state that hold the remaining budget.
const REMAINING_BITS: u32 = 40;
const REMAINING_MASK: u64 = (1 << REMAINING_BITS) - 1;

/// The largest budget one window may have: 2⁴⁰ − 1 ≈ 1.1 · 10¹² tokens (the packed
/// window state keeps the remaining budget in 40 bits).
pub const MAX_WINDOW_BUDGET: u64 = REMAINING_MASK;

/// Relative width of the final price bracket at a window boundary.
const PRICE_TOLERANCE: f64 = 1e-6;

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
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineAllocatorBuilder {
    budget: BudgetSpec,
    default_cap: u64,
    initial_price: f64,
    history_windows: usize,
    samples_per_window: usize,
    refund_aware: bool,
    seed: u64,
}

impl Default for OnlineAllocatorBuilder {
    fn default() -> Self {
        OnlineAllocatorBuilder {
            budget: BudgetSpec::Unset,
            default_cap: crate::Allocator::DEFAULT_CAP,
            initial_price: 0.0,
            history_windows: 4,
            samples_per_window: 256,
            refund_aware: true,
            seed: 0x5EED,
        }
    }
}

impl OnlineAllocatorBuilder {
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
    /// cap until the first window shows the demand).
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

    /// Validates the options and allocates the (bounded) sample memory.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when no budget was set, the budget is 0 or above
    /// [`MAX_WINDOW_BUDGET`], the rate is NaN, infinite or not positive, the window is
    /// empty, the initial price is NaN, infinite or negative, or the history or the
    /// sample size is 0 (or absurdly large).
    pub fn build(self) -> Result<OnlineAllocator> {
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
        let slots = (0..self.history_windows)
            .map(|_| WindowSample {
                bidders: Vec::with_capacity(capacity),
                arrivals: 0,
            })
            .collect();
        Ok(OnlineAllocator {
            id: NEXT_ALLOCATOR_ID.fetch_add(1, Ordering::Relaxed),
            budget,
            window_length,
            default_cap: self.default_cap,
            refund_aware: self.refund_aware,
            price_bits: AtomicU64::new(self.initial_price.to_bits()),
            epoch: AtomicU64::new(0),
            samples_per_window: capacity as u64,
            seed: self.seed,
            hot: HotCounters {
                window_state: AtomicU64::new(pack(0, budget)),
                arrivals: AtomicU64::new(0),
                abandoned: AtomicU64::new(0),
                credited: AtomicU64::new(0),
            },
            sampler: Mutex::new(Sampler {
                slots,
                current: 0,
                closed: 0,
            }),
            clearing: Mutex::new(Clearing {
                weighted: Vec::with_capacity(capacity * self.history_windows),
                spent_share: 1.0,
            }),
        })
    }
}

fn option(option: &'static str, value: f64, reason: &'static str) -> Error {
    Error::invalid_option(option, value, reason)
}

/// Packs a window epoch (its low 24 bits) and the remaining budget into one word.
fn pack(epoch: u64, remaining: u64) -> u64 {
    (epoch << REMAINING_BITS) | remaining
}

fn packed_epoch(state: u64) -> u64 {
    state >> REMAINING_BITS
}

/// `epoch` reduced to the bits the packed state keeps.
fn short_epoch(epoch: u64) -> u64 {
    epoch & (u64::MAX >> REMAINING_BITS)
}

/// Whole tokens of a real-valued best response (NaN and negatives → 0), at most `cap`.
fn whole_tokens(tokens: f64, cap: u64) -> u64 {
    (tokens.max(0.0) as u64).min(cap)
}

/// One request's grant: the tokens it may spend and the window that paid for them.
///
/// A ticket is not `Clone`: [`OnlineAllocator::complete`] consumes it, so a refund
/// cannot be claimed twice.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "pass the ticket to `complete` when the request finishes, to refund unused tokens"]
pub struct Ticket {
    tokens: u64,
    epoch: u64,
    allocator: u64,
}

impl Ticket {
    /// Tokens the request may generate (its `max_new_tokens`); 0 means abandoned:
    /// route the request to a cheap path or reject it.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Whether the request was abandoned (granted 0 tokens).
    pub fn is_abandoned(&self) -> bool {
        self.tokens == 0
    }

    /// The window (0-based count of [`OnlineAllocator::end_window`] calls before the
    /// grant) that paid for the tokens.
    pub fn window(&self) -> u64 {
        self.epoch
    }
}

/// What happened in one window, returned by [`OnlineAllocator::end_window`].
///
/// `charged` is exact. The counts (`arrivals`, `abandoned`, `refunded`) are statistics:
/// a call that races with the window boundary may be counted in the neighbouring
/// window, though their sums over all windows are exact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowReport {
    /// The window that ended (0-based).
    pub window: u64,
    /// Requests admitted during the window (including abandoned ones).
    pub arrivals: u64,
    /// Requests granted 0 tokens.
    pub abandoned: u64,
    /// Tokens the window paid for net of refunds: `budget − remaining` at its end;
    /// never more than the budget.
    pub charged: u64,
    /// Refunds credited back to the window while it was open.
    pub refunded: u64,
    /// The window's budget.
    pub budget: u64,
    /// The price the window admitted at.
    pub price: f64,
    /// The price re-cleared for the next window.
    pub next_price: f64,
}

/// A bounded sample of one window's arrivals.
#[derive(Debug)]
struct WindowSample {
    bidders: Vec<Bidder>,
    /// All arrivals of the window, sampled or not.
    arrivals: u64,
}

#[derive(Debug)]
struct Sampler {
    /// A ring of the last `history_windows` windows; `current` is filling.
    slots: Vec<WindowSample>,
    current: usize,
    /// Windows closed so far (the ring is full once this reaches its length).
    closed: u64,
}

impl Sampler {
    /// Stores `bidder` in the filling window's sample: appended while the sample is
    /// not full (`slot` is `None`), else over the sample at `slot`.
    fn store(&mut self, slot: Option<usize>, bidder: Bidder, capacity: usize) {
        let bidders = &mut self.slots[self.current].bidders;
        match slot {
            Some(i) if i < bidders.len() => bidders[i] = bidder,
            _ if bidders.len() < capacity => bidders.push(bidder),
            _ => {}
        }
    }

    /// Closes the filling window with its arrival count, writes the history's
    /// weighted sample into `out`, and starts an empty window.
    fn close_window(&mut self, arrivals: u64, out: &mut Vec<(Bidder, f64)>) {
        self.slots[self.current].arrivals = arrivals;
        self.closed += 1;
        let windows = self.closed.min(self.slots.len() as u64) as f64;
        out.clear();
        for slot in self.slots.iter().take(windows as usize) {
            if slot.bidders.is_empty() {
                // An idle window adds no demand but still counts in the average.
                continue;
            }
            let weight = slot.arrivals as f64 / slot.bidders.len() as f64 / windows;
            out.extend(slot.bidders.iter().map(|&b| (b, weight)));
        }
        self.current = (self.current + 1) % self.slots.len();
        let next = &mut self.slots[self.current];
        next.bidders.clear();
        next.arrivals = 0;
    }
}

#[derive(Debug)]
struct Clearing {
    /// Scratch space for the weighted sample (allocated once, at build).
    weighted: Vec<(Bidder, f64)>,
    /// Smoothed share of the gross grants that windows end up paying for.
    spent_share: f64,
}

/// Admission control with a carried shadow price, for a server's lifetime.
///
/// Build it once with [`OnlineAllocator::builder`], share it behind an `Arc`, call
/// [`admit`](Self::admit) for each arriving request, [`complete`](Self::complete) when
/// it finishes, and [`end_window`](Self::end_window) at each window boundary (from a
/// timer, every [`window_length`](Self::window_length) when the budget is a rate).
///
/// Invariants, under any interleaving of calls from any number of threads:
/// - within a window, tokens granted minus refunds credited to it never exceed its
///   budget;
/// - a ticket is refunded at most once, only to the window that granted it, and
///   never by more than it was granted.
///
/// ```
/// use clear_alloc::online::OnlineAllocator;
/// use clear_alloc::{Query, ShiftedSurge};
///
/// let online = OnlineAllocator::builder()
///     .tokens_per_window(3_000)
///     .default_cap(4096)
///     .initial_price(1e-4)
///     .build()?;
/// let easy = Query::new(ShiftedSurge::new(151.0, 101.0, 0.95)?);
///
/// let ticket = online.admit(&easy)?;
/// assert!(ticket.tokens() > 0 && ticket.tokens() <= 3_000);
/// // ... generate at most ticket.tokens() tokens; it stopped after 320 ...
/// let credited = online.complete(ticket, 320)?;
/// assert_eq!(online.remaining(), 3_000 - 320);
/// # let _ = credited;
///
/// let report = online.end_window(); // from a timer in a real server
/// assert_eq!((report.arrivals, report.charged), (1, 320));
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug)]
pub struct OnlineAllocator {
    id: u64,
    budget: u64,
    window_length: Option<Duration>,
    default_cap: u64,
    refund_aware: bool,
    price_bits: AtomicU64,
    /// The full window count; guards the 24-bit epoch against wrap-around.
    epoch: AtomicU64,
    samples_per_window: u64,
    seed: u64,
    /// Written by every request: kept off the cache line of the read-mostly price.
    hot: HotCounters,
    sampler: Mutex<Sampler>,
    clearing: Mutex<Clearing>,
}

/// The atomics every request writes, on a cache line of their own (128 bytes covers
/// the adjacent-line prefetch of x86 and the 128-byte lines of Apple silicon).
#[derive(Debug)]
#[repr(align(128))]
struct HotCounters {
    /// `epoch (low 24 bits) << 40 | remaining budget`.
    window_state: AtomicU64,
    arrivals: AtomicU64,
    abandoned: AtomicU64,
    credited: AtomicU64,
}

/// splitmix64's finaliser (Steele, Lea & Flood 2014): a cheap, well-mixed hash that
/// stands in for a random number, so that sampling needs no shared RNG state.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Locks `mutex` even if a thread panicked while holding it: the guarded state is a
/// sample and its scratch space, valid after any partial update.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OnlineAllocator {
    /// A builder with the default options; a budget must be set.
    pub fn builder() -> OnlineAllocatorBuilder {
        OnlineAllocatorBuilder::default()
    }

    /// The budget of every window, in tokens.
    pub fn window_budget(&self) -> u64 {
        self.budget
    }

    /// The window length, when the budget was given as a rate.
    pub fn window_length(&self) -> Option<Duration> {
        self.window_length
    }

    /// Cap for queries without one of their own.
    pub fn default_cap(&self) -> u64 {
        self.default_cap
    }

    /// The current shadow price, per token.
    pub fn price(&self) -> f64 {
        f64::from_bits(self.price_bits.load(Ordering::Relaxed))
    }

    /// The current window (0-based).
    pub fn window(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Tokens the current window can still grant.
    pub fn remaining(&self) -> u64 {
        self.hot.window_state.load(Ordering::Acquire) & REMAINING_MASK
    }

    /// Admits one request: returns its ticket, whose [`tokens`](Ticket::tokens) are
    /// the query's best response at the current price (SPEC §3), limited to what the
    /// window has left. O(1): one or two W₋₁ evaluations and no allocation.
    ///
    /// # Errors
    /// None today: a [`Query`] is valid once built (its weight is checked by
    /// [`Query::with_weight`]); the `Result` leaves room for checks to come.
    pub fn admit(&self, query: &Query) -> Result<Ticket> {
        let cap = query.cap().unwrap_or(self.default_cap);
        let bidder = Bidder::new(query.curve(), query.weight(), cap as f64);
        let price = self.price();
        let wanted = whole_tokens(bidder.bid(price).tokens(), cap);

        let arrival = self.hot.arrivals.fetch_add(1, Ordering::Relaxed);
        self.sample(arrival, bidder);

        let mut state = self.hot.window_state.load(Ordering::Acquire);
        let (tokens, short) = loop {
            let remaining = state & REMAINING_MASK;
            let grant = if wanted <= remaining {
                wanted
            } else {
                // Best response under the tighter cap "what the window has left".
                let tight = Bidder::new(query.curve(), query.weight(), remaining as f64);
                whole_tokens(tight.bid(price).tokens(), remaining)
            };
            if grant == 0 {
                break (0, packed_epoch(state));
            }
            match self.hot.window_state.compare_exchange_weak(
                state,
                state - grant,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break (grant, packed_epoch(state)),
                Err(now) => state = now,
            }
        };
        if tokens == 0 {
            self.hot.abandoned.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Ticket {
            tokens,
            epoch: self.full_epoch(short),
            allocator: self.id,
        })
    }

    /// Algorithm R (Vitter 1985) on the window's arrival number `n` (0-based): the
    /// first `k` arrivals fill the sample, and arrival `n ≥ k` replaces sample `j` when
    /// `j = hash(n) mod (n + 1)` falls below `k`, so every arrival ends up in the
    /// sample with the same probability. Only the arrivals that are stored (a share
    /// `k / n` of them) take the lock, and only if it is free.
    fn sample(&self, arrival: u64, bidder: Bidder) {
        let capacity = self.samples_per_window;
        let slot = if arrival < capacity {
            None
        } else {
            let epoch = self.epoch.load(Ordering::Relaxed);
            let pick = mix(arrival ^ mix(epoch ^ self.seed)) % (arrival + 1);
            if pick >= capacity {
                return;
            }
            Some(pick as usize)
        };
        if let Ok(mut sampler) = self.sampler.try_lock() {
            sampler.store(slot, bidder, capacity as usize);
        }
    }

    /// The full window count whose low bits are `short`: the latest window at or
    /// before the current one with those low bits. `end_window` advances the full
    /// count before it publishes the new packed epoch, so `short` (read from the packed
    /// state earlier) is never ahead of the count read here; the windows that ended in
    /// between are the difference of the short epochs modulo 2^24. This is exact as
    /// long as fewer than 2^24 windows end while one `admit` runs, however long the
    /// thread is preempted short of that.
    fn full_epoch(&self, short: u64) -> u64 {
        let now = self.epoch.load(Ordering::Acquire);
        let elapsed = short_epoch(short_epoch(now).wrapping_sub(short));
        // `elapsed ≤ now` whenever `short` came from this allocator; saturate anyway so
        // that a foreign value cannot underflow.
        now.saturating_sub(elapsed)
    }

    /// Reports that a request finished after generating `tokens_used` tokens, and
    /// refunds the unused part of its grant to its window if that window is still
    /// open. Returns the tokens credited back (0 when the window has ended).
    ///
    /// # Errors
    /// - [`Error::InvalidParameter`] (field `ticket`) when the ticket was issued by
    ///   another allocator; nothing is refunded.
    /// - [`Error::InvalidParameter`] (field `tokens_used`) when `tokens_used` exceeds
    ///   the grant; the request is still completed (with nothing to refund).
    pub fn complete(&self, ticket: Ticket, tokens_used: u64) -> Result<u64> {
        if ticket.allocator != self.id {
            return Err(Error::invalid_parameter(
                "ticket",
                ticket.allocator,
                "was issued by a different online allocator",
            ));
        }
        let unused = ticket.tokens.saturating_sub(tokens_used);
        let mut credited = 0;
        if unused > 0 {
            let mut state = self.hot.window_state.load(Ordering::Acquire);
            // The packed epoch changes with every window, so the compare-and-swap
            // fails if the window ends in between: a refund can only reach the
            // window that paid for it.
            while packed_epoch(state) == short_epoch(ticket.epoch)
                && self.epoch.load(Ordering::Acquire) == ticket.epoch
            {
                let remaining = (state & REMAINING_MASK) + unused;
                debug_assert!(remaining <= self.budget, "refund above the budget");
                let next = pack(packed_epoch(state), remaining.min(self.budget));
                match self.hot.window_state.compare_exchange_weak(
                    state,
                    next,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        credited = unused;
                        break;
                    }
                    Err(now) => state = now,
                }
            }
            if credited > 0 {
                self.hot.credited.fetch_add(credited, Ordering::Relaxed);
            }
        }
        if tokens_used > ticket.tokens {
            return Err(Error::invalid_parameter(
                "tokens_used",
                tokens_used,
                "exceeds the tokens the ticket granted",
            ));
        }
        Ok(credited)
    }

    /// Ends the current window: restores the full budget for the next one and
    /// re-clears the price against the demand of the last `history_windows` windows,
    /// starting from the current price. Call it from one timer (concurrent calls are
    /// serialised). Cost: about 20–40 passes over at most `history_windows ×
    /// samples_per_window` samples, one W₋₁ evaluation each.
    pub fn end_window(&self) -> WindowReport {
        let mut clearing = lock(&self.clearing);
        let price = self.price();
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel);
        let closed = self
            .hot
            .window_state
            .swap(pack(short_epoch(epoch + 1), self.budget), Ordering::AcqRel);
        let charged = self.budget - (closed & REMAINING_MASK);
        let arrivals = self.hot.arrivals.swap(0, Ordering::Relaxed);
        let abandoned = self.hot.abandoned.swap(0, Ordering::Relaxed);
        let refunded = self.hot.credited.swap(0, Ordering::Relaxed);

        let Clearing {
            weighted,
            spent_share,
        } = &mut *clearing;
        lock(&self.sampler).close_window(arrivals, weighted);
        let granted = charged + refunded;
        if self.refund_aware && granted > 0 {
            let share = charged as f64 / granted as f64;
            *spent_share = (0.5 * *spent_share + 0.5 * share).clamp(0.1, 1.0);
        }
        let target = if self.refund_aware {
            self.budget as f64 / *spent_share
        } else {
            self.budget as f64
        };
        let next_price = clear_price(weighted, target, price);
        self.price_bits
            .store(next_price.to_bits(), Ordering::Relaxed);
        WindowReport {
            window: epoch,
            arrivals,
            abandoned,
            charged,
            refunded,
            budget: self.budget,
            price,
            next_price,
        }
    }
}

/// Estimated demand of one window at `price`.
fn demand(sample: &[(Bidder, f64)], price: f64) -> f64 {
    sample
        .iter()
        .map(|(bidder, weight)| weight * bidder.bid(price).tokens())
        .sum()
}

/// The lowest price (to `PRICE_TOLERANCE`) at which the weighted sample's demand is
/// at most `target` (SPEC §4, feasible end of the bracket), searched from `warm`.
/// Keeps `warm` when the sample is empty; 0 when even every cap fits.
fn clear_price(sample: &[(Bidder, f64)], target: f64, warm: f64) -> f64 {
    if sample.is_empty() {
        return warm;
    }
    if demand(sample, 0.0) <= target {
        return 0.0;
    }
    // Nobody is funded at or above the highest abandonment price: demand 0 there.
    let ceiling = sample
        .iter()
        .map(|(b, _)| b.max_price())
        .fold(0.0, f64::max);
    let start = if warm > 0.0 && warm < ceiling {
        warm
    } else {
        0.5 * ceiling
    };
    let (mut lo, mut hi);
    if demand(sample, start) > target {
        lo = start;
        hi = start;
        loop {
            hi = (2.0 * hi).min(ceiling);
            if hi >= ceiling || demand(sample, hi) <= target {
                break;
            }
            lo = hi;
        }
    } else {
        hi = start;
        lo = start;
        // Demand near 0 is Σ caps > target, so this ends; the count guards underflow.
        for _ in 0..2100 {
            lo *= 0.5;
            if demand(sample, lo) > target {
                break;
            }
            hi = lo;
        }
    }
    while hi > lo * (1.0 + PRICE_TOLERANCE) && lo > 0.0 {
        // Not sqrt(lo·hi): the product underflows for prices below ~1e-154.
        let mid = lo * (hi / lo).sqrt();
        if !(mid > lo && mid < hi) {
            break;
        }
        if demand(sample, mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Allocator, ShiftedSurge};
    use approx::assert_relative_eq;

    fn curve(t: f64, w: f64, p: f64) -> ShiftedSurge {
        ShiftedSurge::new(t, w, p).unwrap()
    }

    fn online(budget: u64) -> OnlineAllocator {
        OnlineAllocator::builder()
            .tokens_per_window(budget)
            .default_cap(4096)
            .build()
            .unwrap()
    }

    #[test]
    fn packing_round_trips_and_epoch_wraps_in_24_bits() {
        let state = pack(short_epoch(7), 12_345);
        assert_eq!(packed_epoch(state), 7);
        assert_eq!(state & REMAINING_MASK, 12_345);
        assert_eq!(short_epoch(1 << 24), 0);
        assert_eq!(
            packed_epoch(pack(short_epoch((1 << 24) - 1), MAX_WINDOW_BUDGET)),
            (1 << 24) - 1
        );
    }

    #[test]
    fn admit_grants_the_best_response_at_the_current_price() {
        let online = OnlineAllocator::builder()
            .tokens_per_window(1_000_000)
            .default_cap(4096)
            .initial_price(1e-4)
            .build()
            .unwrap();
        let c = curve(200.0, 200.0, 0.9);
        let ticket = online.admit(&Query::new(c)).unwrap();
        let expected = c.best_response(1e-4, 4096.0).unwrap().floor() as u64;
        assert_eq!(ticket.tokens(), expected);
        // And the grant is where the marginal meets the price (SPEC §3).
        assert_relative_eq!(
            c.marginal(ticket.tokens() as f64),
            1e-4,
            max_relative = 1e-2
        );
    }

    #[test]
    fn a_short_window_grants_the_best_response_under_what_is_left() {
        let online = online(500);
        // Price 0: the query wants its cap of 4096 but only 500 remain.
        let c = curve(100.0, 100.0, 0.9);
        let ticket = online.admit(&Query::new(c)).unwrap();
        assert_eq!(ticket.tokens(), 500);
        assert_eq!(online.remaining(), 0);
        assert!(online.admit(&Query::new(c)).unwrap().is_abandoned());
    }

    #[test]
    fn the_cleared_price_matches_the_batch_allocators_on_the_same_sample() {
        // One window, sample = all arrivals (fewer than the reservoir), no refunds:
        // the online price must clear the same market as `Allocator::allocate`.
        let online = OnlineAllocator::builder()
            .tokens_per_window(30_000)
            .default_cap(4096)
            .history_windows(1)
            .build()
            .unwrap();
        let queries: Vec<Query> = (0..100)
            .map(|i| {
                let t = 100.0 + 7.0 * i as f64;
                Query::new(curve(t, 80.0 + 3.0 * i as f64, 0.3 + 0.006 * i as f64))
            })
            .collect();
        for q in &queries {
            let _ = online.admit(q).unwrap();
        }
        let report = online.end_window();
        let batch = Allocator::builder()
            .default_cap(4096)
            .tolerance(1e-7)
            .build()
            .unwrap()
            .allocate(&queries, 30_000)
            .unwrap();
        let batch_price = batch.price().unwrap();
        assert_relative_eq!(report.next_price, batch_price, max_relative = 1e-3);
        // The feasible end: the sample's demand at the price fits the budget.
        let demand: f64 = queries
            .iter()
            .map(|q| q.curve().best_response(report.next_price, 4096.0).unwrap())
            .sum();
        assert!(demand <= 30_000.0 + 1e-6);
    }

    #[test]
    fn the_reservoir_stays_bounded_and_scales_by_arrivals() {
        let online = OnlineAllocator::builder()
            .tokens_per_window(1_000)
            .samples_per_window(8)
            .history_windows(2)
            .build()
            .unwrap();
        let q = Query::new(curve(100.0, 100.0, 0.9));
        for _ in 0..1000 {
            let _ = online.admit(&q).unwrap();
        }
        assert_eq!(lock(&online.sampler).slots[0].bidders.len(), 8);
        let mut out = Vec::new();
        lock(&online.sampler).close_window(1000, &mut out);
        // 8 samples standing for 1000 arrivals, averaged over 1 closed window.
        assert_eq!(out.len(), 8);
        assert_relative_eq!(out.iter().map(|(_, w)| w).sum::<f64>(), 1000.0);
    }

    #[test]
    fn the_hashed_reservoir_keeps_early_and_late_arrivals_alike() {
        // Algorithm R keeps every arrival with probability k/n; a sampler that kept
        // the first k (or favoured the last) would split these counts unevenly.
        let online = OnlineAllocator::builder()
            .tokens_per_window(1_000)
            .samples_per_window(100)
            .history_windows(1)
            .build()
            .unwrap();
        let (mut early, mut late) = (0usize, 0usize);
        for _ in 0..100 {
            for i in 0..1000 {
                let _ = online
                    .admit(&Query::new(curve(i as f64, 100.0, 0.9)))
                    .unwrap();
            }
            {
                let sampler = lock(&online.sampler);
                let sample = &sampler.slots[0].bidders;
                assert_eq!(sample.len(), 100);
                early += sample.iter().filter(|b| b.threshold() < 500.0).count();
                late += sample.iter().filter(|b| b.threshold() >= 500.0).count();
            }
            online.end_window();
        }
        // 10 000 draws, 5 000 expected on each side; the standard deviation is 50.
        assert!(early.abs_diff(late) < 400, "early {early}, late {late}");
    }

    #[test]
    fn an_idle_history_keeps_the_price() {
        let online = OnlineAllocator::builder()
            .tokens_per_window(1_000)
            .initial_price(3e-4)
            .build()
            .unwrap();
        let report = online.end_window();
        assert_eq!(report.arrivals, 0);
        assert_eq!(report.next_price, 3e-4);
    }

    #[test]
    fn ample_budget_clears_at_price_zero() {
        let online = online(1_000_000);
        for _ in 0..10 {
            let _ = online.admit(&Query::new(curve(100.0, 100.0, 0.9))).unwrap();
        }
        assert_eq!(online.end_window().next_price, 0.0);
    }

    proptest::proptest! {
        // A fixed seed keeps CI deterministic.
        #![proptest_config(proptest::prelude::ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xC1EA_0006),
            ..proptest::prelude::ProptestConfig::with_cases(128)
        })]

        /// The re-cleared price is the lowest feasible one (SPEC §4) whatever the warm
        /// start: demand at it fits the target, and just below it does not.
        #[test]
        fn clear_price_finds_the_feasible_end_from_any_warm_start(
            curves in proptest::collection::vec(
                (0.0f64..2000.0, 10.0f64..800.0, 0.01f64..1.0, 0u64..8192, 0.1f64..3.0, 0.1f64..10.0),
                1..40,
            ),
            target_share in 0.0f64..1.2,
            warm in proptest::prop_oneof![proptest::strategy::Just(0.0), 1e-9f64..1.0],
        ) {
            let sample: Vec<(Bidder, f64)> = curves
                .iter()
                .map(|&(t, w, p, cap, weight, scale)| {
                    (Bidder::new(&curve(t, w, p), weight, cap as f64), scale)
                })
                .collect();
            let caps = demand(&sample, 0.0);
            let target = target_share * caps;
            let price = clear_price(&sample, target, warm);
            proptest::prop_assert!(price.is_finite() && price >= 0.0);
            proptest::prop_assert!(demand(&sample, price) <= target * (1.0 + 1e-12));
            if price > 1e-300 {
                let below = price * (1.0 - 2.0 * PRICE_TOLERANCE);
                proptest::prop_assert!(demand(&sample, below) > target);
            } else {
                proptest::prop_assert!(caps <= target || price > 0.0);
            }
        }
    }

    #[test]
    fn full_epoch_recovers_the_window_across_a_rollover() {
        let online = online(100);
        online.end_window();
        online.end_window();
        assert_eq!(online.full_epoch(short_epoch(2)), 2);
        assert_eq!(online.full_epoch(short_epoch(1)), 1);
    }

    #[test]
    fn full_epoch_recovers_the_window_after_many_rollovers() {
        // A thread preempted between its reservation in window 1 and the epoch load
        // while five windows end: the ticket must still name window 1.
        let online = online(100);
        for _ in 0..5 {
            online.end_window();
        }
        assert_eq!(online.window(), 5);
        assert_eq!(online.full_epoch(short_epoch(1)), 1);
        assert_eq!(online.full_epoch(short_epoch(0)), 0);
        assert_eq!(online.full_epoch(short_epoch(5)), 5);
    }

    #[test]
    fn full_epoch_is_exact_across_the_24_bit_wrap() {
        let online = online(100);
        // Window 2^24 + 3 is current; the reservation was made in window 2^24 − 2,
        // whose short epoch 2^24 − 2 is numerically above the current short epoch 3.
        let now = (1u64 << 24) + 3;
        online.epoch.store(now, Ordering::Release);
        let reserved = (1u64 << 24) - 2;
        assert_eq!(online.full_epoch(short_epoch(reserved)), reserved);
        // The largest lag it resolves: 2^24 − 1 windows.
        let oldest = now - ((1u64 << 24) - 1);
        assert_eq!(online.full_epoch(short_epoch(oldest)), oldest);
        assert_eq!(online.full_epoch(short_epoch(now)), now);
    }
}
