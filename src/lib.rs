//! # clear-alloc
//!
//! Shadow-price allocation of a reasoning-token budget across the queries of an LLM
//! inference server: CLEAR, from Wan et al., *The Shadow Price of Reasoning* (ICML
//! 2026, arXiv 2606.03092).
//!
//! Each query's accuracy is a *shifted-surge* curve of its token budget
//! ([`ShiftedSurge`]): zero up to an emergence threshold, then a surge, then
//! diminishing returns. The [`Allocator`] finds one price per token at which the
//! queries' demands fill the budget; each query takes the tokens whose marginal
//! accuracy is worth the price, and queries that cannot pay their way get nothing
//! (*rational abandonment*).
//!
//! ```
//! use clear_alloc::{Allocator, Query, ShiftedSurge};
//!
//! // Curves fitted to the paper's Figure 1 (threshold, width, ceiling).
//! let gsm8k = ShiftedSurge::new(151.0, 101.0, 0.95)?;
//! let aime = ShiftedSurge::new(304.0, 280.0, 0.35)?;
//! let queries: Vec<Query> = (0..100)
//!     .map(|i| Query::new(if i % 4 == 0 { aime } else { gsm8k }).with_cap(8192))
//!     .collect();
//!
//! // 200 tokens per query: too few for every query to pass its threshold.
//! let allocation = Allocator::default().allocate(&queries, 20_000)?;
//! assert!(allocation.total_tokens() <= 20_000);
//! println!(
//!     "price {:.2e}/token, expected accuracy {:.3}, {} abandoned",
//!     allocation.price().unwrap(),
//!     allocation.mean_utility(),
//!     allocation.abandoned().count(),
//! );
//! # Ok::<(), clear_alloc::Error>(())
//! ```
//!
//! ## Modules
//!
//! The dependency runs one way: [`model`] ← [`solver`] ← everything else.
//!
//! - [`model`]: the curve, its phases and its best response to a price.
//! - [`solver`]: the allocator (budget mode and price mode) and the
//!   [`AllocationPolicy`] trait every method implements.
//! - [`exact`]: the exact optimum by dynamic programming, the yardstick.
//! - [`fit`] (feature `fit`): curves from sampled rollouts or budget sweeps.
//! - [`online`]: admission control for a serving loop with a carried price.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
pub mod exact;
#[cfg(feature = "fit")]
pub mod fit;
pub mod model;
pub mod online;
pub mod solver;

pub use error::{Error, QueryRef, Result, Value};
pub use model::{Phase, ShiftedSurge};
pub use solver::{
    Allocation, AllocationPolicy, Allocator, AllocatorBuilder, Decision, Query, QueryAllocation,
};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
