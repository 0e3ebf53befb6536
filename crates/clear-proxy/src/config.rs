//! Configuration: command-line flags and a TOML file, merged (flags win) into a
//! [`ConfigBuilder`] and validated once into an immutable [`Config`].

use crate::classes::{ClassSpec, ClassTable};
use crate::dialect::{Dialect, ThinkingField};
use crate::fleet::LedgerSpec;
use crate::request::RequestRules;
use clap::Parser;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What to do with a request the allocator abandons (grants 0 thinking tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AbandonPolicy {
    /// 429 with `Retry-After` (the next window) and an OpenAI-style error body.
    Reject,
    /// Forward with thinking disabled and a small `max_tokens` (`cheap_max_tokens`).
    Cheap,
    /// Forward to the fallback upstream and/or model, without thinking.
    Fallback,
}

/// The command line. Every flag can also be set in the `--config` file; a flag given
/// on the command line wins over the file.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "clear-proxy",
    version,
    about = "CLEAR in front of any OpenAI-compatible engine"
)]
pub struct Flags {
    /// Base URL of the engine, e.g. http://127.0.0.1:8000 (plain HTTP).
    #[arg(long)]
    pub upstream: Option<String>,
    /// Address to listen on, e.g. 0.0.0.0:9000 [default: 127.0.0.1:9000].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Completion tokens (thinking grant + answer reserve) each window may authorise.
    #[arg(long)]
    pub tokens_per_window: Option<u64>,
    /// Window length in seconds; the price is re-cleared at each window's end.
    #[arg(long)]
    pub window: Option<f64>,
    /// Tokens kept for the answer on top of the thinking grant [default: 256].
    #[arg(long)]
    pub answer_reserve: Option<u64>,
    /// Where the grant is written in the request [default: openai].
    #[arg(long, value_enum)]
    pub dialect: Option<Dialect>,
    /// What to do with abandoned requests [default: reject].
    #[arg(long, value_enum)]
    pub on_abandon: Option<AbandonPolicy>,
    /// TOML file with the same settings and more (classes, priors, fallback).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Upstream timeout in seconds: for the response headers, and between two
    /// streamed chunks [default: 300].
    #[arg(long)]
    pub upstream_timeout: Option<f64>,
    /// Log level: error, warn, info, debug or trace [default: info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// Share the window budget and the price with every proxy started with the same
    /// ledger and namespace: redis://HOST:PORT/DB. `--tokens-per-window` is then the
    /// whole fleet's budget.
    #[arg(long)]
    pub ledger: Option<String>,
    /// The fleet's budget name on the ledger (several budgets, e.g. one per tenant,
    /// on one Redis) [default: default]. 1 to 64 of A-Z a-z 0-9 _ . -
    #[arg(long)]
    pub namespace: Option<String>,
    /// Learn each class's curve from its completions (lengths, stops at the limit,
    /// and `POST /v1/clear/feedback`), starting from the configured curve.
    #[arg(long)]
    pub learn: bool,
}

/// Every setting, each optional; what the TOML file deserialises into and what
/// [`Flags`] are merged into. [`build`](Self::build) validates it into a [`Config`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ConfigBuilder {
    /// See [`Flags::upstream`].
    pub upstream: Option<String>,
    /// See [`Flags::listen`].
    pub listen: Option<SocketAddr>,
    /// See [`Flags::tokens_per_window`].
    pub tokens_per_window: Option<u64>,
    /// See [`Flags::window`] (seconds).
    pub window: Option<f64>,
    /// See [`Flags::answer_reserve`]; a class may override it.
    pub answer_reserve: Option<u64>,
    /// See [`Flags::dialect`].
    pub dialect: Option<Dialect>,
    /// Dotted path of the thinking-budget field, overriding the dialect's
    /// (e.g. `custom_params.thinking_budget` for SGLang's logit processor).
    pub thinking_field: Option<String>,
    /// See [`Flags::on_abandon`].
    pub on_abandon: Option<AbandonPolicy>,
    /// `max_tokens` of the cheap path [default: 256].
    pub cheap_max_tokens: Option<u64>,
    /// Base URL of the fallback engine (policy `fallback`; default: the upstream).
    pub fallback_upstream: Option<String>,
    /// Model name written into fallback requests (policy `fallback`).
    pub fallback_model: Option<String>,
    /// `max_tokens` of fallback requests [default: 1024].
    pub fallback_max_tokens: Option<u64>,
    /// Largest request body accepted, in bytes [default: 1 MiB].
    pub max_body_bytes: Option<usize>,
    /// Largest `max_tokens` a client may ask for [default: 1 048 576].
    pub max_tokens_limit: Option<u64>,
    /// See [`Flags::upstream_timeout`] (seconds).
    pub upstream_timeout: Option<f64>,
    /// Seconds in-flight requests may run after a shutdown signal before they are
    /// cancelled and refunded [default: 10].
    pub shutdown_grace: Option<f64>,
    /// Price per token until the first window ends [default: 0].
    pub initial_price: Option<f64>,
    /// Arrivals the allocator keeps per window to re-clear the price [default: 256].
    /// More make the price steadier (less sampling noise) at a little memory.
    pub samples_per_window: Option<usize>,
    /// Recent windows the price is cleared against [default: 4].
    pub history_windows: Option<usize>,
    /// Class of requests that name no class and whose model matches none.
    pub default_class: Option<String>,
    /// The classes and their prior curves, by name.
    pub classes: Option<BTreeMap<String, ClassSpec>>,
    /// See [`Flags::log_level`].
    pub log_level: Option<String>,
    /// See [`Flags::ledger`].
    pub ledger: Option<String>,
    /// See [`Flags::namespace`].
    pub namespace: Option<String>,
    /// See [`Flags::learn`] [default: false].
    pub learn: Option<bool>,
    /// With `learn`: the share of each class's requests admitted on an optimistic
    /// curve (threshold e^(-2) of the learned one), so that a class whose curve looks
    /// hopeless at the price is still observed; in [0, 1) [default: 0].
    pub learn_exploration: Option<f64>,
}

/// A setting that failed validation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The setting, e.g. `tokens_per_window` or `classes.math.width`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config: {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// The validated configuration; immutable once built.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) upstream: String,
    pub(crate) listen: SocketAddr,
    pub(crate) tokens_per_window: u64,
    pub(crate) window: Duration,
    pub(crate) dialect: Dialect,
    pub(crate) thinking_field: ThinkingField,
    pub(crate) on_abandon: AbandonPolicy,
    pub(crate) cheap_max_tokens: u64,
    pub(crate) fallback_upstream: String,
    pub(crate) fallback_model: Option<String>,
    pub(crate) fallback_max_tokens: u64,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_tokens_limit: u64,
    pub(crate) upstream_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
    pub(crate) initial_price: f64,
    pub(crate) samples_per_window: usize,
    pub(crate) history_windows: usize,
    pub(crate) classes: ClassTable,
    pub(crate) log_level: tracing::Level,
    pub(crate) ledger: Option<LedgerSpec>,
    pub(crate) learn: bool,
    pub(crate) learn_exploration: f64,
}

/// A setting in seconds, from a millisecond to a day: a shorter one would round to a
/// zero `Duration` (nanoseconds) and spin a timer.
fn seconds(field: &str, value: f64) -> Result<Duration, ConfigError> {
    if value.is_finite() && (0.001..=86_400.0).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError::new(
            field,
            format!("must be in [0.001, 86400] seconds, got {value}"),
        ))
    }
}

/// Top-level request fields the proxy reads or writes besides the thinking field.
const REQUEST_KEYS: [&str; 8] = [
    "model",
    "messages",
    "prompt",
    "stream",
    "stream_options",
    "n",
    "max_tokens",
    "max_completion_tokens",
];

fn base_url(field: &str, url: &str) -> Result<String, ConfigError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        ConfigError::new(
            field,
            format!("must start with http:// (no TLS to the engine), got {url:?}"),
        )
    })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(ConfigError::new(field, format!("has no host: {url:?}")));
    }
    Ok(url.trim_end_matches('/').to_string())
}

impl ConfigBuilder {
    /// Reads a TOML file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file when it cannot be read or parsed (unknown keys
    /// are errors, so a typo is not silently ignored).
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), e.to_string()))?;
        Self::from_toml(&text).map_err(|e| ConfigError::new(path.display().to_string(), e.reason))
    }

    /// Parses TOML text.
    ///
    /// # Errors
    /// A [`ConfigError`] with the parser's message.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::new("config", e.to_string()))
    }

    /// The file named by `--config` (if any) with the flags laid over it.
    ///
    /// # Errors
    /// As [`from_file`](Self::from_file).
    pub fn from_flags(flags: &Flags) -> Result<Self, ConfigError> {
        let mut builder = match &flags.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        let f = flags.clone();
        macro_rules! over {
            ($($name:ident),*) => { $( if f.$name.is_some() { builder.$name = f.$name; } )* };
        }
        over!(
            upstream,
            listen,
            tokens_per_window,
            window,
            answer_reserve,
            dialect,
            on_abandon,
            upstream_timeout,
            log_level,
            ledger,
            namespace
        );
        if f.learn {
            builder.learn = Some(true);
        }
        Ok(builder)
    }

    /// Validates every setting.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, naming the setting: a missing upstream, budget
    /// or window; a budget of 0 or above 2⁴⁰ − 1; a window or timeout that is not a
    /// positive finite number of seconds; a curve parameter out of its domain; a
    /// default class that is not defined.
    pub fn build(self) -> Result<Config, ConfigError> {
        let upstream = base_url(
            "upstream",
            self.upstream
                .as_deref()
                .ok_or_else(|| ConfigError::new("upstream", "is required (--upstream URL)"))?,
        )?;
        let tokens_per_window = self.tokens_per_window.ok_or_else(|| {
            ConfigError::new("tokens_per_window", "is required (--tokens-per-window N)")
        })?;
        if !(1..=crate::admission::MAX_WINDOW_BUDGET).contains(&tokens_per_window) {
            return Err(ConfigError::new(
                "tokens_per_window",
                format!("must be in 1 ..= 2^40 - 1, got {tokens_per_window}"),
            ));
        }
        let window = seconds(
            "window",
            self.window
                .ok_or_else(|| ConfigError::new("window", "is required (--window SECONDS)"))?,
        )?;
        let max_tokens_limit = self.max_tokens_limit.unwrap_or(1 << 20);
        if max_tokens_limit == 0 {
            return Err(ConfigError::new("max_tokens_limit", "must be at least 1"));
        }
        let answer_reserve = self.answer_reserve.unwrap_or(256);
        if answer_reserve > max_tokens_limit {
            return Err(ConfigError::new(
                "answer_reserve",
                format!(
                    "must be at most max_tokens_limit ({max_tokens_limit}), got {answer_reserve}"
                ),
            ));
        }
        let initial_price = self.initial_price.unwrap_or(0.0);
        if !(initial_price.is_finite() && initial_price >= 0.0) {
            return Err(ConfigError::new(
                "initial_price",
                format!("must be finite and >= 0, got {initial_price}"),
            ));
        }
        let cheap_max_tokens = self.cheap_max_tokens.unwrap_or(256);
        let fallback_max_tokens = self.fallback_max_tokens.unwrap_or(1024);
        for (field, v) in [
            ("cheap_max_tokens", cheap_max_tokens),
            ("fallback_max_tokens", fallback_max_tokens),
        ] {
            if v == 0 || v > max_tokens_limit {
                return Err(ConfigError::new(
                    field,
                    format!("must be in 1 ..= max_tokens_limit ({max_tokens_limit}), got {v}"),
                ));
            }
        }
        let fallback_upstream = match &self.fallback_upstream {
            Some(url) => base_url("fallback_upstream", url)?,
            None => upstream.clone(),
        };
        let max_body_bytes = self.max_body_bytes.unwrap_or(1 << 20);
        if max_body_bytes == 0 {
            return Err(ConfigError::new("max_body_bytes", "must be at least 1"));
        }
        let custom_field = match &self.thinking_field {
            None => None,
            Some(path) => {
                let parts: Vec<String> = path.split('.').map(str::to_string).collect();
                if parts.iter().any(String::is_empty) {
                    return Err(ConfigError::new(
                        "thinking_field",
                        format!(
                            "must be a dotted path like nvext.max_thinking_tokens, got {path:?}"
                        ),
                    ));
                }
                // The proxy reads these itself: a thinking budget written into one
                // would make every request invalid.
                if REQUEST_KEYS.contains(&parts[0].as_str()) {
                    return Err(ConfigError::new(
                        "thinking_field",
                        format!(
                            "must not be inside a request field the proxy reads ({}), got {path:?}",
                            REQUEST_KEYS.join(", ")
                        ),
                    ));
                }
                Some(parts)
            }
        };
        let level = self.log_level.as_deref().unwrap_or("info");
        let log_level = level.parse::<tracing::Level>().map_err(|_| {
            ConfigError::new(
                "log_level",
                format!("must be error, warn, info, debug or trace, got {level:?}"),
            )
        })?;
        let samples_per_window = self.samples_per_window.unwrap_or(256);
        if !(1..=65_536).contains(&samples_per_window) {
            return Err(ConfigError::new(
                "samples_per_window",
                format!("must be in 1 ..= 65536, got {samples_per_window}"),
            ));
        }
        let history_windows = self.history_windows.unwrap_or(4);
        if !(1..=1024).contains(&history_windows) {
            return Err(ConfigError::new(
                "history_windows",
                format!("must be in 1 ..= 1024, got {history_windows}"),
            ));
        }
        let learn_exploration = self.learn_exploration.unwrap_or(0.0);
        if !(0.0..1.0).contains(&learn_exploration) {
            return Err(ConfigError::new(
                "learn_exploration",
                format!("must be in [0, 1), got {learn_exploration}"),
            ));
        }
        let ledger = LedgerSpec::build(self.ledger, self.namespace, window)?;
        let dialect = self.dialect.unwrap_or(Dialect::Openai);
        let classes = ClassTable::build(
            self.classes.unwrap_or_default(),
            self.default_class,
            answer_reserve,
            max_tokens_limit,
        )?;
        Ok(Config {
            upstream,
            listen: self
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9000))),
            tokens_per_window,
            window,
            dialect,
            thinking_field: ThinkingField::new(dialect, custom_field.as_deref()),
            on_abandon: self.on_abandon.unwrap_or(AbandonPolicy::Reject),
            cheap_max_tokens,
            fallback_upstream,
            fallback_model: self.fallback_model,
            fallback_max_tokens,
            max_body_bytes,
            max_tokens_limit,
            upstream_timeout: seconds("upstream_timeout", self.upstream_timeout.unwrap_or(300.0))?,
            shutdown_grace: seconds("shutdown_grace", self.shutdown_grace.unwrap_or(10.0))?,
            initial_price,
            samples_per_window,
            history_windows,
            classes,
            log_level,
            ledger,
            learn: self.learn.unwrap_or(false),
            learn_exploration,
        })
    }
}

impl Config {
    /// The address to listen on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The log level.
    pub fn log_level(&self) -> tracing::Level {
        self.log_level
    }

    /// The fleet's ledger, when the window budget is shared.
    pub fn ledger(&self) -> Option<&LedgerSpec> {
        self.ledger.as_ref()
    }

    /// Whether each class's curve is learned from its completions.
    pub fn learn(&self) -> bool {
        self.learn
    }

    /// The engine's dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Where the thinking grant is written.
    pub fn thinking_field(&self) -> &ThinkingField {
        &self.thinking_field
    }

    /// What [`crate::parse_request`] checks requests against under this config.
    pub fn request_rules(&self) -> RequestRules<'_> {
        RequestRules {
            classes: &self.classes,
            thinking_field: &self.thinking_field,
            max_tokens_limit: self.max_tokens_limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> ConfigBuilder {
        ConfigBuilder {
            upstream: Some("http://127.0.0.1:8000/".into()),
            tokens_per_window: Some(10_000),
            window: Some(5.0),
            ..ConfigBuilder::default()
        }
    }

    #[test]
    fn settings_in_seconds_run_from_a_millisecond_to_a_day() {
        for ok in [0.001, 1.5, 86_400.0] {
            assert_eq!(seconds("window", ok).unwrap(), Duration::from_secs_f64(ok));
        }
        for bad in [
            0.0,
            0.000_999,
            1e-10,
            -1.0,
            86_400.001,
            f64::NAN,
            f64::INFINITY,
        ] {
            let e = seconds("upstream_timeout", bad).unwrap_err();
            assert_eq!(e.field, "upstream_timeout");
            assert!(e.reason.contains("[0.001, 86400]"), "{}", e.reason);
        }
    }

    #[test]
    fn flags_alone_are_enough() {
        let flags = Flags::try_parse_from([
            "clear-proxy",
            "--upstream",
            "http://10.0.0.2:8000",
            "--listen",
            "0.0.0.0:9000",
            "--tokens-per-window",
            "200000",
            "--window",
            "10",
            "--answer-reserve",
            "128",
            "--dialect",
            "vllm",
            "--on-abandon",
            "cheap",
        ])
        .unwrap();
        let config = ConfigBuilder::from_flags(&flags).unwrap().build().unwrap();
        assert_eq!(config.upstream, "http://10.0.0.2:8000");
        assert_eq!(config.tokens_per_window, 200_000);
        assert_eq!(config.window, Duration::from_secs(10));
        assert_eq!(config.dialect, Dialect::Vllm);
        assert_eq!(config.on_abandon, AbandonPolicy::Cheap);
        assert_eq!(config.classes.default_class().answer_reserve, 128);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("clear-proxy-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("proxy.toml");
        std::fs::write(
            &path,
            "upstream = \"http://a:1\"\ntokens_per_window = 5\nwindow = 2.0\ndialect = \"dynamo\"\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(path),
            tokens_per_window: Some(7),
            ..Flags::default()
        };
        let config = ConfigBuilder::from_flags(&flags).unwrap().build().unwrap();
        assert_eq!(config.tokens_per_window, 7);
        assert_eq!(config.dialect, Dialect::Dynamo);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let cases: Vec<(ConfigBuilder, &str)> = vec![
            (
                ConfigBuilder {
                    upstream: None,
                    ..minimal()
                },
                "upstream",
            ),
            (
                ConfigBuilder {
                    upstream: Some("https://x".into()),
                    ..minimal()
                },
                "upstream",
            ),
            (
                ConfigBuilder {
                    tokens_per_window: Some(0),
                    ..minimal()
                },
                "tokens_per_window",
            ),
            (
                ConfigBuilder {
                    tokens_per_window: Some(1 << 40),
                    ..minimal()
                },
                "tokens_per_window",
            ),
            (
                ConfigBuilder {
                    window: Some(f64::NAN),
                    ..minimal()
                },
                "window",
            ),
            (
                ConfigBuilder {
                    window: Some(-1.0),
                    ..minimal()
                },
                "window",
            ),
            (
                ConfigBuilder {
                    initial_price: Some(f64::INFINITY),
                    ..minimal()
                },
                "initial_price",
            ),
            (
                ConfigBuilder {
                    thinking_field: Some("a..b".into()),
                    ..minimal()
                },
                "thinking_field",
            ),
            (
                ConfigBuilder {
                    thinking_field: Some("messages.budget".into()),
                    ..minimal()
                },
                "thinking_field",
            ),
            (
                ConfigBuilder {
                    thinking_field: Some("max_tokens".into()),
                    ..minimal()
                },
                "thinking_field",
            ),
            (
                // Rounds to a zero Duration.
                ConfigBuilder {
                    window: Some(1e-10),
                    ..minimal()
                },
                "window",
            ),
            (
                ConfigBuilder {
                    upstream_timeout: Some(1e-4),
                    ..minimal()
                },
                "upstream_timeout",
            ),
            (
                ConfigBuilder {
                    default_class: Some("nope".into()),
                    ..minimal()
                },
                "default_class",
            ),
            (
                ConfigBuilder {
                    log_level: Some("loud".into()),
                    ..minimal()
                },
                "log_level",
            ),
            (
                ConfigBuilder {
                    learn_exploration: Some(1.0),
                    ..minimal()
                },
                "learn_exploration",
            ),
            (
                ConfigBuilder {
                    learn_exploration: Some(f64::NAN),
                    ..minimal()
                },
                "learn_exploration",
            ),
        ];
        for (builder, field) in cases {
            let err = builder.build().unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let err = ConfigBuilder::from_toml("upstream = \"http://a:1\"\ntokens_per_windw = 5\n")
            .unwrap_err();
        assert!(err.reason.contains("tokens_per_windw"), "{err}");
    }
}
