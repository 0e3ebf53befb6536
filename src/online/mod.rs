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
//! current price (for a shifted surge one W₋₁ evaluation, no allocation) and reserves
//! the tokens from the current window's budget. When the window's remaining budget is
//! smaller than the best response, the query gets its best response under the tighter
//! cap "what is left" (SPEC §3 with `cap = remaining`), which may be 0.
//!
//! At each window boundary ([`OnlineAllocator::end_window`]) the price is re-cleared
//! (SPEC §4) against the demand seen in the last few windows: a bounded uniform
//! sample of each window's arrivals (the arrivals of smallest hash key), each standing for
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
//! # Any curve
//!
//! The allocator is generic over the [`Curve`] of its queries and monomorphised:
//! `OnlineAllocator` alone is `OnlineAllocator<ShiftedSurge>` (closed-form best
//! response), and [`OnlineAllocatorBuilder::<C>::new`](OnlineAllocatorBuilder::new)
//! builds one for [`Mixture`](crate::Mixture) (a posterior over the threshold, say),
//! [`PiecewiseLinear`](crate::PiecewiseLinear), the empirical curve of the `fit`
//! feature, or [`AnyCurve`](crate::AnyCurve) to mix kinds in one stream. Each admits
//! with its curve's own best response; the demand sample clones the curve of only
//! the few arrivals it keeps. The re-clear uses the solver's price search for
//! shifted surges and bisection in `ln λ` for the other curve types.
//!
//! # Prepared classes
//!
//! Requests of a known class (one curve, weight and cap: a class with a shared shape,
//! a cached posterior) can skip the per-request work: [`OnlineAllocator::prepare`]
//! folds the curve's constants once into a [`PreparedQuery`], and
//! [`OnlineAllocator::admit_prepared`] reads the class's grant from a cache in the
//! handle while the price is unchanged, so that admission costs little more than the
//! window's atomics (`docs/PERFORMANCE.md` has the figures). The grant is the one
//! `admit` gives.
//!
//! # Where the budget comes from
//!
//! An allocator admits against the tokens it holds for the window. By default it
//! holds the whole budget ([`InProcessLedger`]); a [`BudgetLedger`] shared by several
//! allocators — replicas of one server, say — leases each of them chunks of one
//! window budget, so that their charges summed never exceed it, and can set one price
//! for them all from their merged demand samples (see [`BudgetLedger`] for the
//! lease rules, and the `clear-alloc-redis` crate for a ledger in Redis).
//!
//! # Concurrency
//!
//! The allocator is `Send + Sync` (for every curve type); share it behind an `Arc`.
//! Admission takes no blocking lock (but for pooling the shards, once per window at
//! most), and threads admitting and completing requests on one allocator write no
//! shared cache line while their shards hold tokens:
//!
//! - The window's tokens are split into shards, one per thread (up to 8 shards,
//!   dealt round-robin; more threads share them), each on a cache line of its own
//!   with that thread's arrival, abandonment and refund counts. A shard's epoch and
//!   tokens are packed into one `AtomicU64` updated by compare-and-swap, so a
//!   reservation and the window it belongs to change together and a window rollover
//!   can never be charged twice; a refund goes to the completing thread's shard.
//! - A shard that runs dry takes a slice (at least 1/32) of the window's central
//!   pool. When the pool cannot cover a request, every shard's tokens go back to the
//!   pool and the shards close for the rest of the window: from then on, admissions
//!   and refunds use the pool's one word, so a request is granted less than its best
//!   response only when the whole window has less left (then the best response under
//!   that cap), as with one word. Token moves between the pool and the shards take
//!   the lease lock, which `end_window` takes too, so the window's unused tokens are
//!   counted exactly; a thread that finds the lock busy admits from the pool instead,
//!   and waits for the lock only to pool the shards.
//! - The price is an `AtomicU64` (the bits of an `f64`) read by every admission and
//!   written once per window. The demand sample sits behind a `Mutex` that `admit`
//!   takes only for an arrival whose hash key is below the sample's largest, and only
//!   if it is free; otherwise the arrival is counted but not sampled, which thins the
//!   sample at random without making any request wait.
//!
//! `end_window` takes the locks; it runs once per window. With a shared ledger whose
//! lease has a low-water mark, the window admits in the pool from its start (the
//! refill needs the held tokens in one word to see them run low): a lease refill
//! takes the lease lock, from the one admission that finds the held tokens low (the
//! others do not wait), or from a request that wants more than is held.
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

mod admit;
mod boundary;
mod builder;
mod clear;
#[cfg(feature = "fit")]
mod learn;
mod ledger;
mod prepared;
mod reservoir;
mod shard;
#[cfg(test)]
mod test_support;
mod ticket;
mod window;

pub use boundary::WindowReport;
pub use builder::OnlineAllocatorBuilder;
#[cfg(feature = "fit")]
pub use learn::{CurveLearner, CurveLearnerBuilder, CurvePrior, CurvePriorBuilder};
pub use ledger::{BudgetLedger, ClosedWindow, InProcessLedger, Lease};
pub use prepared::PreparedQuery;
pub use reservoir::SampledQuery;
pub use ticket::{Completed, Completion, Ticket};
pub use window::MAX_WINDOW_BUDGET;

use crate::model::{Curve, ShiftedSurge};
use boundary::Clearing;
use reservoir::Sampler;
use shard::{open_tokens, Shard, SHARDS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use window::{packed_epoch, packed_remaining, Central};

/// Admission control with a carried shadow price, for a server's lifetime.
///
/// Build it once with [`OnlineAllocator::builder`], share it behind an `Arc`, call
/// [`admit`](Self::admit) for each arriving request, [`complete`](Self::complete) when
/// it finishes, and [`end_window`](Self::end_window) at each window boundary (from a
/// timer, every [`window_length`](Self::window_length) when the budget is a rate).
///
/// Invariants, under any interleaving of calls from any number of threads:
/// - within a window, tokens granted minus refunds credited to it never exceed its
///   budget (summed over every allocator that shares a [`BudgetLedger`]);
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
pub struct OnlineAllocator<C: Curve = ShiftedSurge> {
    id: u64,
    budget: u64,
    window_length: Option<Duration>,
    default_cap: u64,
    refund_aware: bool,
    price_bits: AtomicU64,
    /// Bumped after each price change, so that a [`PreparedQuery`] knows when its
    /// cached grant is stale.
    price_generation: AtomicU64,
    /// The full window count; guards the 24-bit epoch against wrap-around.
    epoch: AtomicU64,
    history_windows: usize,
    samples_per_window: u64,
    seed: u64,
    /// `mix(window ^ seed)`, the reservoir's hash salt for the current window
    /// (written at each window boundary, read by the arrivals past the first few).
    window_salt: AtomicU64,
    /// The largest hash key in the filling window's sample once it is full (else
    /// `u64::MAX`): arrivals with a larger key are not sampled. Written only when the
    /// sample changes.
    sample_ceiling: AtomicU64,
    /// The tokens no shard holds; admissions reach it when their shard runs dry.
    central: Central,
    /// Each thread admits against its shard (`shard::shard_index`): written by
    /// every request, each on a cache line of its own.
    shards: [Shard; SHARDS],
    /// `shard::pooled_mark` of the window whose shards are pooled (closed, their
    /// tokens in `central`), or 0: a request the pool cannot cover pools the shards
    /// first unless this marks its window.
    pooled: AtomicU64,
    ledger: Arc<dyn BudgetLedger<C>>,
    /// Taken by a lease refill and by `end_window`, so the two never interleave.
    leases: Mutex<Leases>,
    sampler: Mutex<Sampler<C>>,
    clearing: Mutex<Clearing<C>>,
}

/// What the allocator has leased for the current window.
#[derive(Debug)]
struct Leases {
    /// Tokens leased for the current window (its whole budget with the in-process
    /// ledger); the window is charged this minus what it releases at its end.
    leased: u64,
}

/// Locks `mutex` even if a thread panicked while holding it: the guarded state is a
/// sample, its scratch space or a lease count, valid after any partial update.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OnlineAllocator {
    /// A builder with the default options for [`ShiftedSurge`] queries; a budget must
    /// be set. For another curve type, start from
    /// [`OnlineAllocatorBuilder::<C>::new`](OnlineAllocatorBuilder::new).
    pub fn builder() -> OnlineAllocatorBuilder {
        OnlineAllocatorBuilder::default()
    }
}

impl<C: Curve> OnlineAllocator<C> {
    /// The budget of every window, in tokens (shared by every allocator on the same
    /// [`BudgetLedger`], when the ledger is shared).
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

    /// Tokens the current window can still grant here: what this allocator holds
    /// of the window's budget (all that is left of it with the in-process ledger).
    ///
    /// The sum of the central pool and the thread shards, read one after the
    /// other: exact when no other thread admits or completes meanwhile. Meanwhile a
    /// slice moving from the pool to a shard can be read in both, and shards pooled
    /// back in neither, so the figure is a gauge, clamped to the window's budget.
    pub fn remaining(&self) -> u64 {
        let pool = self.central.window_state.load(Ordering::Acquire);
        let short = packed_epoch(pool);
        let held = self
            .shards
            .iter()
            .map(|shard| open_tokens(shard.state.load(Ordering::Acquire), short))
            .sum::<u64>()
            + packed_remaining(pool);
        held.min(self.budget)
    }

    /// The full window count whose low bits are `short`: the latest window at or
    /// before the current one with those low bits. `end_window` advances the full
    /// count before it publishes the new packed epoch, so `short` (read from the packed
    /// state earlier) is never ahead of the count read here; the windows that ended in
    /// between are the difference of the short epochs modulo 2^24. This is exact as
    /// long as fewer than 2^24 windows end while one `admit` runs, however long the
    /// thread is preempted short of that.
    fn full_epoch(&self, short: u64) -> u64 {
        window::full_epoch(self.epoch.load(Ordering::Acquire), short)
    }
}
