//! # clear-alloc-redis
//!
//! A fleet of servers shares one token budget: a [`BudgetLedger`] in Redis for
//! [`clear_alloc`]'s [`OnlineAllocator`]. Every replica built with the same Redis and
//! namespace leases chunks of one budget per window, admits locally against its lease
//! (no round trip per request), returns what it did not use at the window's end, and
//! admits at one price cleared from the demand samples of every replica.
//!
//! The ledger serves allocators of [`ShiftedSurge`] queries (the default curve type):
//! it implements `BudgetLedger<ShiftedSurge>` only, because the demand samples it
//! stores in Redis are encoded as `(threshold, width, ceiling, weight, cap)` records.
//! An allocator of another curve type (`OnlineAllocator<Mixture>`, say) needs a
//! ledger of its own (see [`BudgetLedger`] for what one implements).
//!
//! ```no_run
//! use clear_alloc::online::OnlineAllocator;
//! use clear_alloc_redis::RedisLedger;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let window = Duration::from_secs(10);
//! let ledger = Arc::new(
//!     RedisLedger::builder("redis://127.0.0.1:6379/0")
//!         .namespace("tenant-a")
//!         .window(window)
//!         .build()?,
//! );
//! let online = OnlineAllocator::builder()
//!     .tokens_per_second(6_000.0, window) // the whole fleet's rate
//!     .ledger(ledger.clone())
//!     .build()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crate's README has the key layout, the lease rules, and the fault rules: what
//! happens when Redis is unreachable (admit within the held lease, then refuse, or
//! grant a configured fallback share that can overrun the budget by at most that
//! share per replica and window) and when Redis restarts (the window in progress is
//! never funded twice: it stays unfunded, and budgets resume at the next window).
//!
//! [`BudgetLedger`]: clear_alloc::online::BudgetLedger
//! [`OnlineAllocator`]: clear_alloc::online::OnlineAllocator
//! [`ShiftedSurge`]: clear_alloc::ShiftedSurge
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chunk;
mod config;
mod demand;
mod error;
mod keys;
mod ledger;
mod link;
mod scripts;
mod share;
mod stats;

pub use config::{Clock, RedisLedgerBuilder};
pub use error::Error;
pub use ledger::RedisLedger;
pub use stats::LedgerStats;

/// The README's Rust example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
