//! # clear-alloc
//!
//! Shadow-price allocation of a reasoning-token budget across the queries of an LLM
//! inference server: CLEAR, from Wan et al., *The Shadow Price of Reasoning* (ICML
//! 2026, arXiv 2606.03092). Give it each query's accuracy curve and a total budget; it
//! returns every query's grant in whole tokens (its `max_new_tokens`), never more than
//! the budget in total, and 0 for the queries that are not worth their tokens.
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
//! # The math in brief
//!
//! The mathematical contract is `docs/SPEC.md` in the repository; the sections below
//! cite it.
//!
//! **The shifted-surge curve** (SPEC §2). A query's accuracy with `b` reasoning tokens
//! is zero up to an *emergence threshold* τ, then surges and saturates at a *ceiling*
//! p: with `x = max(0, b − τ)` and the *surge width* `w = 1/β`,
//!
//! ```text
//! U(b) = p · [1 − (1 + βx) · e^(−βx)]        marginal accuracy φ(b) = p·β² · x · e^(−βx)
//! ```
//!
//! `U/p` is the distribution function of `τ + Gamma(2, β)`, the share of correct
//! solutions that finish within `b` tokens. Returns increase up to the inflection
//! `τ + w` and diminish after it, so the problem "maximise `Σ Uᵢ(bᵢ)` subject to
//! `Σ bᵢ ≤ B`" is not concave.
//!
//! **The price** (SPEC §3). At a price λ per token every query maximises its surplus
//! `U(b) − λb` under its cap. On the concave branch the stationary point has a closed
//! form, `b*(λ) = τ − W₋₁(−λ/(pβ))/β`, with W₋₁ the lower real branch of Lambert W.
//! The allocator finds the one price at which the queries' demands fill the budget
//! (SPEC §4): total demand falls as the price rises, so the price is bracketed and
//! narrowed. Whole-token rounding and a leftover step then spend what the price leaves
//! over, and the total never exceeds the budget.
//!
//! **Abandonment** (SPEC §3). A query whose best surplus at the price is not positive
//! gets 0 tokens: crossing its threshold costs more than the accuracy it buys. Each
//! query has an abandonment price (its best accuracy per token, `max U(b)/b`) above
//! which it is abandoned; the host answers it from a cheap path or rejects it.
//!
//! **Quality** (SPEC §4). The price solution is within one query's utility of the
//! optimum of the non-concave problem (Shapley–Folkman); against the exact optimum of
//! [`exact::ExactOptimum`] it is measured much closer (`docs/EVALUATION.md`).
//!
//! # API tour
//!
//! - [`ShiftedSurge`]: one query's curve, from `(threshold, width, ceiling)` with
//!   [`ShiftedSurge::new`] or the paper's `(τ, α, β)`. It answers questions on its own:
//!   utility, marginal utility, phase, inflection, best response to a price.
//! - [`Curve`]: what the allocator needs of any curve (utility, marginal, best
//!   response to a price under a cap, abandonment price). Implemented by
//!   [`ShiftedSurge`] (closed forms), [`Mixture`] (a weighted mixture of shifted
//!   surges, e.g. a posterior over the threshold; best response by a safeguarded root
//!   search between the turning points of its marginal), [`PiecewiseLinear`] (a curve
//!   through user points) and `fit::EmpiricalCurve` (the share of rollouts correct
//!   within `b` tokens) — the last two bid on their upper concave hull. [`AnyCurve`]
//!   lets one batch mix kinds. The allocators are generic over the curve and
//!   monomorphised, so a batch of shifted surges keeps its closed-form speed.
//! - [`Query`]: a curve with an optional cap (`Query::new(curve).with_cap(4096)`),
//!   weight (priority) and id; `Query` alone means `Query<ShiftedSurge>`.
//! - [`Allocator`]: CLEAR. `Allocator::default()`, or configured once with the
//!   validating builder, `Allocator::builder().default_cap(8192).build()?`, then
//!   called at every scheduling step: `allocate(&queries, budget)`, or at a given
//!   price. A server that allocates at every step keeps a [`Workspace`] and calls
//!   `allocate_with(&mut workspace, &queries, budget)`: the same result, in memory
//!   the workspace already holds.
//! - [`Allocation`]: each query's grant, utility and decision, and
//!   `total_tokens()`, `price()`, `mean_utility()`, `abandoned()`.
//! - [`online::OnlineAllocator`]: admission control for a serving loop that sees
//!   requests one at a time: `admit` grants at a carried price in O(1), `complete`
//!   refunds unused tokens, `end_window` re-clears the price (see
//!   `examples/online_server.rs`). It takes queries of any [`Curve`] type
//!   (`OnlineAllocator<C = ShiftedSurge>`, monomorphised); `prepare` and
//!   `admit_prepared` admit a known class without recomputing its curve's constants
//!   or, while the price holds, its grant. `complete_with` also says
//!   whether the request stopped by itself and, when known, whether it was correct;
//!   with the `fit` feature an [`online::CurveLearner`] learns each class's curve from
//!   those completions.
//! - [`exact::ExactOptimum`]: the exact optimum by dynamic programming on a token
//!   grid, the yardstick for small batches (any curve).
//! - [`prior`]: calibrated thresholds (SPEC §7): a log-normal prior per class, the
//!   noise of the caller's threshold predictor, and the posterior curve of a request
//!   (shrunk, or a mixture over Gauss–Hermite nodes).
//! - [`fit`] (feature `fit`): curves from what a server has: sampled rollouts of a
//!   query (maximum likelihood, with censoring at the sampling cap), many queries with a
//!   shared shape (the paper's model-intrinsic α, β), or accuracy measured at a few
//!   budgets (SPEC §5).
//!
//! Bad input (NaN, infinities, out-of-range values) is an [`Error`] naming the query
//! and the field, never a panic.
//!
//! ```
//! use clear_alloc::{Allocator, Query, ShiftedSurge};
//!
//! let curve = ShiftedSurge::new(142.0, 218.0, 0.7)?;
//! let queries = vec![Query::new(curve).with_cap(1024); 10];
//! let allocator = Allocator::builder().default_cap(4096).build()?;
//! // 1 024 tokens per query: every query reaches its cap, at price 0.
//! let ample = allocator.allocate(&queries, 10 * 1024)?;
//! assert_eq!(ample.total_tokens(), 10 * 1024);
//! assert_eq!(ample.abandoned().count(), 0);
//! // 50 tokens per query: below the threshold, so some queries must go without.
//! let scarce = allocator.allocate(&queries, 10 * 50)?;
//! assert!(scarce.total_tokens() <= 500);
//! assert!(scarce.abandoned().count() > 0);
//! # Ok::<(), clear_alloc::Error>(())
//! ```
//!
//! # Crate features
//!
//! - `fit` (default): the [`fit`] module, fitting curves to rollouts and budget sweeps.
//!   It pulls in `argmin` (Brent and Nelder–Mead) and `argmin-math`, its only users.
//! - `serde` (default): `Serialize`/`Deserialize` for the curve (as
//!   `{"threshold", "width", "ceiling"}`, or the paper's alpha/beta on input) and the
//!   allocation results, and the rollout readers of `fit` (CSV, JSON lines; `csv`,
//!   `serde_json`).
//! - `parallel` (off): [`Allocator::allocate`] and [`Allocator::allocate_with`] split
//!   the sweeps over a large batch (preparing the queries, the price search's passes,
//!   rounding, the utilities) across rayon's threads, from 32 768 queries up. Sums
//!   are taken in fixed chunks of 4 096 queries and added in order, so the result is
//!   the same to the last bit on any number of threads (`tests/paths.rs`). It pulls
//!   in `rayon`; `RAYON_NUM_THREADS` (or a pool the caller `install`s) sets the
//!   threads, and a one-thread pool takes the serial path.
//!
//! A server that only allocates needs none of them:
//! `clear-alloc = { version = "0.1", default-features = false }`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
pub mod exact;
#[cfg(feature = "fit")]
pub mod fit;
mod model;
pub mod online;
pub mod prior;
mod solver;

pub use error::{Error, QueryRef, Result, Value};
pub use model::{AnyCurve, Curve, Mixture, Phase, PiecewiseLinear, ShiftedSurge};
pub use solver::{
    Allocation, AllocationPolicy, Allocator, AllocatorBuilder, Decision, Query, QueryAllocation,
    Workspace,
};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
