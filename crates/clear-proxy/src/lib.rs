//! # clear-proxy
//!
//! CLEAR in front of any OpenAI-compatible engine (vLLM, SGLang, Dynamo, llama.cpp,
//! mistral.rs): a proxy that decides, across all requests under one token budget per
//! window, how many reasoning tokens each request may spend, and writes that grant
//! into the request in the engine's dialect.
//!
//! Per request: find its class and curve ([`classes`]), [`admission`] prices it
//! against the window's budget with the core's online allocator, the grant is written
//! into the body ([`request`], [`dialect`]), the request is forwarded
//! ([`forward`], streaming or not) and unused tokens are refunded from the engine's
//! `usage`. The binary `clear-proxy` wires this to flags and a TOML file
//! ([`config`]); the crate README has the operator's guide.
//!
//! ```no_run
//! use clear_proxy::{ConfigBuilder, Proxy};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ConfigBuilder::from_toml(
//!     "upstream = \"http://127.0.0.1:8000\"\ntokens_per_window = 200000\nwindow = 10.0\ndialect = \"vllm\"\n",
//! )?
//! .build()?;
//! let proxy = Proxy::new(config.clone())?;
//! let listener = tokio::net::TcpListener::bind(config.listen()).await?;
//! proxy.serve(listener, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admission;
pub mod classes;
pub mod config;
pub mod dialect;
pub mod error;
pub mod fleet;
pub mod forward;
pub mod learning;
pub mod metrics;
pub mod request;
pub mod server;
pub mod sse;

pub use config::{AbandonPolicy, Config, ConfigBuilder, ConfigError, Flags};
pub use dialect::Dialect;
pub use error::ApiError;
pub use request::{parse_request, Endpoint, ParsedRequest, RequestRules};
pub use server::Proxy;
