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
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod baselines;
pub mod calibrate;
pub mod paper;
pub mod sim;
