//! Forwarding to the engine, non-streaming and streaming, and settling the grant.
//!
//! Streams are relayed by a task of their own that owns the grant: it ends when the
//! engine finishes, fails or stalls, when the client goes away (the channel to the
//! client's body closes) or when shutdown cancels it, and in every case the grant is
//! settled with the tokens counted so far. Dropping the engine's response closes its
//! connection, which makes vLLM and SGLang abort the generation.

use crate::admission::Grant;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::sse::{inspect, EventSplitter};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Everything a forwarded request needs besides its body.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The HTTP client (pooled connections to the engine).
    pub client: reqwest::Client,
    /// Timeout for the response headers and between streamed chunks.
    pub timeout: Duration,
    /// Becomes `true` when in-flight requests must be cancelled (shutdown).
    pub cancel: watch::Receiver<bool>,
    /// Where outcomes are counted.
    pub metrics: Arc<Metrics>,
}

/// Headers that describe one hop, not the request (RFC 9110 §7.6.1), plus those the
/// proxy sets itself.
const NOT_FORWARDED: [&str; 12] = [
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // The proxy reads bodies (usage); it does not decompress them.
    "accept-encoding",
    "content-type",
];

/// Client headers passed to the engine (authorization and custom headers included).
pub fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if !NOT_FORWARDED.contains(&name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out
}

/// Resolves when shutdown cancels in-flight requests.
async fn cancelled(mut cancel: watch::Receiver<bool>) {
    // If the sender is gone the proxy is gone; never resolve then.
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn classify(metrics: &Metrics, error: reqwest::Error, timeout: Duration) -> ApiError {
    if error.is_timeout() {
        metrics.upstream_error("timeout");
        ApiError::timeout(timeout)
    } else if error.is_connect() {
        metrics.upstream_error("refused");
        ApiError::bad_gateway(format!("upstream: cannot connect: {error}"))
    } else {
        metrics.upstream_error("body");
        ApiError::bad_gateway(format!("upstream: {error}"))
    }
}

/// One exchange with the engine, bounded by the upstream timeout and cancelled by
/// shutdown; a failure is counted and turned into the client's error.
async fn bounded<T>(
    up: &Upstream,
    exchange: impl Future<Output = reqwest::Result<T>>,
) -> Result<T, ApiError> {
    tokio::select! {
        result = tokio::time::timeout(up.timeout, exchange) => match result {
            Err(_) => {
                up.metrics.upstream_error("timeout");
                Err(ApiError::timeout(up.timeout))
            }
            Ok(Err(e)) => Err(classify(&up.metrics, e, up.timeout)),
            Ok(Ok(value)) => Ok(value),
        },
        _ = cancelled(up.cancel.clone()) => {
            up.metrics.upstream_error("shutdown");
            Err(ApiError::shutting_down())
        }
    }
}

/// Sends the request and waits for the response headers.
async fn send(
    up: &Upstream,
    url: &reqwest::Url,
    headers: HeaderMap,
    body: Vec<u8>,
) -> Result<reqwest::Response, ApiError> {
    let request = up
        .client
        .post(url.clone())
        .headers(headers)
        .body(body)
        .send();
    bounded(up, request).await
}

/// An engine's error answer: 4xx pass through (the request was wrong for the
/// engine), anything else is a 502.
async fn upstream_status(up: &Upstream, response: reqwest::Response) -> Result<Response, ApiError> {
    let status = response.status();
    let text = tokio::time::timeout(up.timeout, response.text())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    up.metrics.upstream_error("status");
    if status.is_client_error() {
        let mut passed = Response::new(Body::from(text));
        *passed.status_mut() =
            StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        passed.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(passed);
    }
    let snippet: String = text.chars().take(500).collect();
    Err(ApiError::bad_gateway(format!(
        "upstream answered {}: {snippet}",
        status.as_u16()
    )))
}

/// The parts of a completion the proxy reads.
#[derive(Debug, serde::Deserialize)]
struct Outcome {
    usage: Option<UsageTokens>,
    choices: Option<Vec<Finish>>,
}

#[derive(Debug, serde::Deserialize)]
struct UsageTokens {
    completion_tokens: Option<u64>,
}

#[derive(Debug, serde::Deserialize)]
struct Finish {
    finish_reason: Option<String>,
}

/// Headers the proxy adds to every forwarded answer.
pub type GrantHeaders = Vec<(HeaderName, HeaderValue)>;

fn with_headers(mut response: Response, extra: GrantHeaders) -> Response {
    for (name, value) in extra {
        response.headers_mut().insert(name, value);
    }
    response
}

/// Forwards a non-streaming request and settles `grant` with the engine's usage (the
/// whole grant when the engine reports none).
///
/// # Errors
/// 502 when the engine is unreachable, fails (5xx) or sends an unreadable body; 504
/// on timeout; 503 when shutdown cancels the request. The grant is refunded in full.
pub async fn forward_once(
    up: &Upstream,
    url: &reqwest::Url,
    headers: HeaderMap,
    body: Vec<u8>,
    grant: Option<Grant>,
    extra: GrantHeaders,
) -> Result<Response, ApiError> {
    let response = send(up, url, headers, body).await?;
    if !response.status().is_success() {
        return upstream_status(up, response)
            .await
            .map(|r| with_headers(r, extra));
    }
    let bytes = bounded(up, response.bytes()).await?;
    if let Some(mut grant) = grant {
        // Only `usage` and the finish reasons are read; the rest is skipped unparsed.
        let outcome: Option<Outcome> = serde_json::from_slice(&bytes).ok();
        let used = outcome
            .as_ref()
            .and_then(|o| o.usage.as_ref()?.completion_tokens);
        if outcome.is_some_and(|o| {
            o.choices
                .iter()
                .flatten()
                .any(|c| c.finish_reason.as_deref() == Some("length"))
        }) {
            up.metrics.censored.inc();
            grant.record_limit();
        }
        // Without usage the proxy cannot know: charge the whole grant.
        let used = used.unwrap_or(grant.tokens());
        grant.finish(used);
    }
    let mut out = Response::new(Body::from(bytes));
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(with_headers(out, extra))
}

/// Forwards a streaming request: answers with the event stream once the engine has
/// answered with a success status, and relays it from a task that settles `grant`.
///
/// # Errors
/// As [`forward_once`], for failures before the first byte. Failures later end the
/// stream with an OpenAI-style `error` event.
pub async fn forward_stream(
    up: &Upstream,
    url: &reqwest::Url,
    headers: HeaderMap,
    body: Vec<u8>,
    grant: Option<Grant>,
    client_wants_usage: bool,
    extra: GrantHeaders,
) -> Result<Response, ApiError> {
    let response = send(up, url, headers, body).await?;
    if !response.status().is_success() {
        return upstream_status(up, response)
            .await
            .map(|r| with_headers(r, extra));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    tokio::spawn(relay(up.clone(), response, tx, grant, client_wants_usage));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut out = Response::new(Body::from_stream(stream));
    let h = out.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(with_headers(out, extra))
}

fn error_event(error: &ApiError) -> Bytes {
    Bytes::from(format!("data: {}\n\n", error.body()))
}

/// Relays the engine's events to the client and settles the grant.
async fn relay(
    up: Upstream,
    response: reqwest::Response,
    tx: mpsc::Sender<Bytes>,
    mut grant: Option<Grant>,
    client_wants_usage: bool,
) {
    let mut upstream = response.bytes_stream();
    let mut splitter = EventSplitter::default();
    let mut tally = Tally::default();
    let cancel = up.cancel.clone();
    let failure: Option<ApiError> = loop {
        let next = tokio::select! {
            next = tokio::time::timeout(up.timeout, upstream.next()) => next,
            _ = tx.closed() => {
                up.metrics.upstream_error("disconnect");
                break None;
            }
            _ = cancelled(cancel.clone()) => {
                up.metrics.upstream_error("shutdown");
                break Some(ApiError::shutting_down());
            }
        };
        let events = match next {
            Err(_) => {
                up.metrics.upstream_error("timeout");
                break Some(ApiError::timeout(up.timeout));
            }
            Ok(None) => {
                let rest: Vec<Bytes> = splitter.rest().into_iter().collect();
                let _ = tally.forward(&up, &tx, rest, client_wants_usage).await;
                if let Some(mut grant) = grant.take() {
                    if tally.hit_limit {
                        grant.record_limit();
                    }
                    grant.finish(tally.used());
                }
                return;
            }
            Ok(Some(Err(e))) => break Some(classify(&up.metrics, e, up.timeout)),
            Ok(Some(Ok(chunk))) => match splitter.push(&chunk) {
                Ok(events) => events,
                Err(reason) => {
                    up.metrics.upstream_error("body");
                    break Some(ApiError::bad_gateway(format!("upstream: {reason}")));
                }
            },
        };
        if tally
            .forward(&up, &tx, events, client_wants_usage)
            .await
            .is_err()
        {
            up.metrics.upstream_error("disconnect");
            break None;
        }
        if let Some(grant) = grant.as_mut() {
            grant.record_used(tally.used());
        }
    };
    if let Some(error) = failure {
        let _ = tx.send(error_event(&error)).await;
    }
    // Dropping the grant settles it with the tokens counted so far.
    drop(grant);
}

/// What a relayed stream has told about the tokens it used.
#[derive(Debug, Default)]
struct Tally {
    /// Content deltas seen (one token each, as engines stream them).
    counted: u64,
    /// The engine's own count, from its last `usage` event.
    usage: Option<u64>,
    /// A choice finished for `length`: the grant cut the answer off.
    hit_limit: bool,
}

impl Tally {
    /// Tokens to charge: the engine's count when it sent one, else the deltas.
    fn used(&self) -> u64 {
        self.usage.unwrap_or(self.counted)
    }

    /// Sends events on to the client, reading usage and counting deltas. Fails when
    /// the client has gone away.
    async fn forward(
        &mut self,
        up: &Upstream,
        tx: &mpsc::Sender<Bytes>,
        events: Vec<Bytes>,
        client_wants_usage: bool,
    ) -> Result<(), mpsc::error::SendError<Bytes>> {
        for event in events {
            let info = inspect(&event);
            self.counted += info.deltas;
            if info.usage.is_some() {
                self.usage = info.usage;
            }
            if info.hit_limit {
                up.metrics.censored.inc();
                self.hit_limit = true;
            }
            if info.usage_only && !client_wants_usage {
                continue;
            }
            tx.send(event).await?;
        }
        Ok(())
    }
}
