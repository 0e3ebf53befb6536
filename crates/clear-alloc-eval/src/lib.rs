//! # clear-alloc-eval
//!
//! The evaluation of [`clear_alloc`], kept out of the published library: the
//! allocation methods CLEAR is compared with ([`baselines`]), the paper's traffic
//! streams and their evaluation ([`sim`]), the paper's reported accuracy levels
//! ([`paper`]) and the calibration of the streams to them ([`calibrate`]), and the
//! programs that print and plot the results (`examples/quickstart.rs`,
//! `examples/pareto.rs`, `examples/server_sim.rs`, `examples/paper_levels.rs`).
//!
//! It uses only the library's public API, so every figure it produces is one a user
//! of the library could reproduce.
//!
//! ```
//! use clear_alloc::Allocator;
//! use clear_alloc_eval::baselines::Uniform;
//! use clear_alloc_eval::sim::{evaluate, Mix, StreamConfig};
//!
//! let stream = StreamConfig::new(Mix::Balanced).queries(200).seed(7).generate()?;
//! let clear = evaluate(&Allocator::default(), &stream, 200)?;
//! let uniform = evaluate(&Uniform::default(), &stream, 200)?;
//! assert!(clear.expected_accuracy > uniform.expected_accuracy);
//! # Ok::<(), clear_alloc::Error>(())
//! ```
//!
//! Every method implements the core's [`AllocationPolicy`](clear_alloc::AllocationPolicy)
//! and returns the same `Allocation`, so a line-up can be compared on any curves:
//!
//! ```
//! use clear_alloc::{AllocationPolicy, Allocator};
//! use clear_alloc_eval::baselines::{Proportional, Uniform};
//! use clear_alloc_eval::sim::{Mix, StreamConfig};
//!
//! let stream = StreamConfig::new(Mix::Balanced).queries(200).seed(7).generate()?;
//! let queries = stream.truth();
//! let policies: [&dyn AllocationPolicy; 3] =
//!     [&Uniform::default(), &Proportional::default(), &Allocator::default()];
//! for policy in policies {
//!     let allocation = policy.allocate(queries, 200 * queries.len() as u64)?;
//!     println!("{}: {:.3}", policy.name(), allocation.mean_utility());
//! }
//! # Ok::<(), clear_alloc::Error>(())
//! ```
//!
//! The measured results, with the commands that reproduce them, are in the
//! repository's `docs/EVALUATION.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod baselines;
pub mod calibrate;
pub mod cold_start;
pub mod noise;
pub mod paper;
pub mod sim;
