//! The HTTP server: routes, the per-request flow, the window timer and shutdown.

use crate::admission::{Admission, Decision, WindowSummary};
use crate::config::{AbandonPolicy, Config};
use crate::error::ApiError;
use crate::forward::{forward_once, forward_stream, forwarded_headers, GrantHeaders, Upstream};
use crate::learning::FeedbackOutcome;
use crate::metrics::Metrics;
use crate::request::{parse_request, Endpoint};
use axum::body::{to_bytes, Body};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use clear_alloc_redis::RedisLedger;
use serde_json::Value;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Response header: thinking tokens granted (0 on the cheap and fallback paths).
pub const GRANT_HEADER: &str = "x-clear-grant";
/// Response header: completion tokens authorised (thinking grant + answer reserve).
pub const MAX_TOKENS_HEADER: &str = "x-clear-max-tokens";
/// Response header: the request's class.
pub const CLASS_RESPONSE_HEADER: &str = "x-clear-class";
/// Response header: the proxy's id for the request (quote it in feedback).
pub const REQUEST_ID_HEADER: &str = "x-clear-request-id";

#[derive(Debug)]
struct AppState {
    config: Config,
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    upstream: Upstream,
    /// Parsed once: [engine, fallback] × [chat, completions].
    urls: [[reqwest::Url; 2]; 2],
    cancel: watch::Sender<bool>,
    next_id: AtomicU64,
}

/// The proxy: build it from a [`Config`], then [`serve`](Self::serve) it.
#[derive(Debug, Clone)]
pub struct Proxy {
    state: Arc<AppState>,
}

impl Proxy {
    /// Builds the allocator, the metrics and the upstream client; with a ledger in
    /// the config, connects to it first (a blocking round trip: see
    /// [`LedgerSpec::connect`](crate::fleet::LedgerSpec::connect)).
    ///
    /// # Errors
    /// A message when the ledger is unreachable, or the allocator or the HTTP client
    /// cannot be built.
    pub fn new(config: Config) -> Result<Self, String> {
        let ledger = match config.ledger() {
            Some(spec) => Some(spec.connect().map_err(|e| format!("ledger: {e}"))?),
            None => None,
        };
        Self::with_ledger(config, ledger)
    }

    /// As [`new`](Self::new), with a ledger already connected (or none, which makes
    /// the proxy's budget its own whatever the config says).
    ///
    /// # Errors
    /// A message when the allocator or the HTTP client cannot be built.
    pub fn with_ledger(config: Config, ledger: Option<Arc<RedisLedger>>) -> Result<Self, String> {
        let metrics = Arc::new(if ledger.is_some() {
            Metrics::with_ledger()
        } else {
            Metrics::new()
        });
        let admission = Arc::new(Admission::new(&config, Arc::clone(&metrics), ledger)?);
        let client = reqwest::Client::builder()
            .connect_timeout(
                config
                    .upstream_timeout
                    .min(std::time::Duration::from_secs(10)),
            )
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("upstream client: {e}"))?;
        let (cancel, cancel_rx) = watch::channel(false);
        let url = |base: &str, endpoint: Endpoint| {
            reqwest::Url::parse(&format!("{base}{}", endpoint.path()))
                .map_err(|e| format!("upstream URL {base:?}: {e}"))
        };
        let mut urls = Vec::new();
        for base in [&config.upstream, &config.fallback_upstream] {
            urls.push([
                url(base, Endpoint::ChatCompletions)?,
                url(base, Endpoint::Completions)?,
            ]);
        }
        let urls: [[reqwest::Url; 2]; 2] =
            urls.try_into().map_err(|_| "two upstreams".to_string())?;
        Ok(Proxy {
            state: Arc::new(AppState {
                upstream: Upstream {
                    client,
                    timeout: config.upstream_timeout,
                    cancel: cancel_rx,
                    metrics: Arc::clone(&metrics),
                },
                config,
                urls,
                admission,
                metrics,
                cancel,
                next_id: AtomicU64::new(0),
            }),
        })
    }

    /// The routes: `POST /v1/chat/completions`, `POST /v1/completions` (also under
    /// `/classes/{class}`), `POST /v1/clear/feedback`, `GET /healthz`, `GET /metrics`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/completions", post(completions))
            .route("/classes/{class}/v1/chat/completions", post(classed_chat))
            .route("/classes/{class}/v1/completions", post(classed_completions))
            .route("/v1/clear/feedback", post(feedback))
            .route("/healthz", get(|| async { "ok" }))
            .route("/metrics", get(metrics))
            .with_state(Arc::clone(&self.state))
    }

    /// Ends the current window now (the timer of [`serve`](Self::serve) does this
    /// every window; a host driving windows itself calls it directly). With a ledger
    /// this blocks on Redis round trips: call it from a thread of its own (or
    /// `spawn_blocking`), not from an async task.
    pub fn end_window(&self) -> WindowSummary {
        self.state.admission.end_window()
    }

    /// The summaries of the last closed windows (up to 64), oldest first.
    pub fn recent_windows(&self) -> Vec<WindowSummary> {
        self.state.admission.recent_windows()
    }

    /// The metrics exposition text, as `GET /metrics` serves it.
    pub fn metrics_text(&self) -> String {
        self.state.admission.observe();
        self.state.metrics.encode()
    }

    /// Cancels every in-flight request; their grants are refunded.
    pub fn cancel_in_flight(&self) {
        let _ = self.state.cancel.send(true);
    }

    /// Serves on `listener` until `shutdown` resolves, ending a window every window
    /// length. After `shutdown`, no new connection is accepted; requests in flight
    /// get the configured grace period, then are cancelled and refunded.
    ///
    /// # Errors
    /// The server's I/O error.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let timer = WindowTimer::start(Arc::clone(&self.state.admission))?;
        let proxy = self.clone();
        let grace = self.state.config.shutdown_grace;
        let signal = async move {
            shutdown.await;
            tracing::info!(
                grace_s = grace.as_secs_f64(),
                "shutting down: draining in-flight requests"
            );
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                proxy.cancel_in_flight();
            });
        };
        // Small writes (SSE events, short answers) must not wait for Nagle's algorithm.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(signal)
            .await;
        // Whatever is still open (nothing, after a graceful drain) is refunded.
        self.cancel_in_flight();
        timer.stop();
        result
    }
}

/// Ends a window every window length. Without a ledger, a task on the runtime (an
/// `end_window` is a few microseconds). With a ledger, a thread of its own that ends
/// windows on the wall clock's boundaries, which every replica shares: its
/// `end_window` makes Redis round trips and may wait up to the ledger's price wait
/// for the fleet's price, which must not hold a runtime worker.
enum WindowTimer {
    Task(tokio::task::JoinHandle<()>),
    Thread(std::sync::mpsc::Sender<()>),
}

impl WindowTimer {
    fn start(admission: Arc<Admission>) -> std::io::Result<WindowTimer> {
        if admission.ledger().is_none() {
            return Ok(WindowTimer::Task(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(admission.until_window_end()).await;
                    log_window(&admission.end_window());
                }
            })));
        }
        // Dropping the sender (`stop`) wakes the thread and ends it.
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("clear-window".into())
            .spawn(move || {
                let length = admission.window_length();
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(admission.until_window_end())
                {
                    // Woken a little before the boundary (the wall clock slewed
                    // against the monotonic one): wait for it, so that the window
                    // is not ended twice.
                    let ahead = admission.until_window_end();
                    if ahead < length / 20 {
                        std::thread::sleep(ahead);
                    }
                    log_window(&admission.end_window());
                }
            })?;
        Ok(WindowTimer::Thread(stop))
    }

    fn stop(self) {
        match self {
            WindowTimer::Task(task) => task.abort(),
            WindowTimer::Thread(stop) => drop(stop),
        }
    }
}

fn log_window(report: &WindowSummary) {
    tracing::info!(
        window = report.window,
        epoch = report.epoch,
        charged = report.charged,
        budget = report.budget,
        arrivals = report.arrivals,
        abandoned = report.abandoned,
        next_price = report.next_price,
        "window closed"
    );
}

impl AppState {
    fn url(&self, fallback: bool, endpoint: Endpoint) -> &reqwest::Url {
        let e = match endpoint {
            Endpoint::ChatCompletions => 0,
            Endpoint::Completions => 1,
        };
        &self.urls[usize::from(fallback)][e]
    }
}

async fn chat(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    handle(s, Endpoint::ChatCompletions, None, headers, body).await
}

async fn completions(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    handle(s, Endpoint::Completions, None, headers, body).await
}

async fn classed_chat(
    State(s): State<Arc<AppState>>,
    Path(class): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(s, Endpoint::ChatCompletions, Some(class), headers, body).await
}

async fn classed_completions(
    State(s): State<Arc<AppState>>,
    Path(class): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(s, Endpoint::Completions, Some(class), headers, body).await
}

async fn handle(
    state: Arc<AppState>,
    endpoint: Endpoint,
    route_class: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle_inner(&state, endpoint, route_class.as_deref(), headers, body).await {
        Ok(response) => response,
        Err(error) => {
            if matches!(error.status.as_u16(), 400 | 413) {
                state.metrics.request("invalid");
            }
            tracing::debug!(%error, "request answered with an error");
            error.into_response()
        }
    }
}

async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::too_large(limit))
}

fn header_value(n: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&n.to_string()).unwrap_or_else(|_| HeaderValue::from_static("?"))
}

async fn handle_inner(
    state: &AppState,
    endpoint: Endpoint,
    route_class: Option<&str>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let config = &state.config;
    let bytes = read_body(body, &headers, config.max_body_bytes).await?;
    let parsed = parse_request(
        config.request_rules(),
        endpoint,
        route_class,
        &headers,
        &bytes,
    )?;
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("clr-{id}");
    let mut extra: GrantHeaders = vec![
        (
            HeaderName::from_static(REQUEST_ID_HEADER),
            header_value(&request_id),
        ),
        (
            HeaderName::from_static(CLASS_RESPONSE_HEADER),
            header_value(&parsed.class),
        ),
    ];
    let forward_headers = forwarded_headers(&headers);
    let (url, body, grant) = match state.admission.admit(&parsed, &request_id)? {
        Decision::Granted(grant) => {
            state.metrics.request("granted");
            tracing::debug!(id, class = %parsed.class, thinking = grant.thinking_tokens(), completion = grant.tokens(), "granted");
            extra.push((
                HeaderName::from_static(GRANT_HEADER),
                header_value(grant.thinking_tokens()),
            ));
            extra.push((
                HeaderName::from_static(MAX_TOKENS_HEADER),
                header_value(grant.tokens()),
            ));
            let body = parsed.granted_body(&config.thinking_field, grant.tokens());
            (state.url(false, endpoint), body, Some(grant))
        }
        Decision::Abandoned { retry_after, price } => {
            tracing::debug!(id, class = %parsed.class, price, policy = ?config.on_abandon, "abandoned");
            match config.on_abandon {
                AbandonPolicy::Reject => {
                    state.metrics.request("rejected");
                    return Err(ApiError::abandoned(price, retry_after));
                }
                AbandonPolicy::Cheap => {
                    state.metrics.request("cheap");
                    extra.push((HeaderName::from_static(GRANT_HEADER), header_value(0)));
                    let body = parsed.cheap_body(&config.thinking_field, config.cheap_max_tokens);
                    (state.url(false, endpoint), body, None)
                }
                AbandonPolicy::Fallback => {
                    state.metrics.request("fallback");
                    extra.push((HeaderName::from_static(GRANT_HEADER), header_value(0)));
                    let body = parsed.fallback_body(
                        config.fallback_model.as_deref(),
                        config.fallback_max_tokens,
                    );
                    (state.url(true, endpoint), body, None)
                }
            }
        }
    };
    if parsed.stream {
        forward_stream(
            &state.upstream,
            url,
            forward_headers,
            body,
            grant,
            parsed.client_wants_usage,
            extra,
        )
        .await
    } else {
        forward_once(&state.upstream, url, forward_headers, body, grant, extra).await
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.admission.observe();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// `POST /v1/clear/feedback`: `{"request_id": "clr-17", "correct": true}` (optional
/// `class`, `length`). Counted in the metrics and logged; with `learn = true`, a
/// request still waiting for its feedback (up to a whole window after it completed)
/// is learned from with its correctness (`{"status":"learned"}`); otherwise the
/// answer is `{"status":"recorded"}`.
async fn feedback(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let result: Result<Response, ApiError> = async {
        let bytes = read_body(body, &headers, state.config.max_body_bytes).await?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid("body", format!("is not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        };
        let Some(Value::String(request_id)) = map.get("request_id") else {
            return Err(ApiError::invalid(
                "request_id",
                "is required and must be a string",
            ));
        };
        let correct = match map.get("correct") {
            Some(Value::Bool(b)) => *b,
            _ => {
                return Err(ApiError::invalid(
                    "correct",
                    "is required and must be a boolean",
                ))
            }
        };
        if let Some(class) = map.get("class") {
            let name = class
                .as_str()
                .ok_or_else(|| ApiError::invalid("class", "must be a string"))?;
            if !state.config.classes.names().any(|n| n == name) {
                return Err(ApiError::invalid(
                    "class",
                    format!("unknown class {name:?}"),
                ));
            }
        }
        if let Some(length) = map.get("length") {
            length
                .as_u64()
                .ok_or_else(|| ApiError::invalid("length", "must be a non-negative integer"))?;
        }
        state
            .metrics
            .feedback
            .get_or_create(&vec![("correct", correct.to_string())])
            .inc();
        let status = match state.admission.feedback(request_id, correct) {
            Some(FeedbackOutcome::Learned) => r#"{"status":"learned"}"#,
            _ => r#"{"status":"recorded"}"#,
        };
        tracing::info!(request_id = %request_id, correct, status, "feedback");
        Ok((
            StatusCode::ACCEPTED,
            [(header::CONTENT_TYPE, "application/json")],
            status,
        )
            .into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
