//! A small OpenAI-compatible engine for the tests and the benchmark, on 127.0.0.1.
//!
//! Each request's hidden behaviour is written in its last message (or prompt) as
//! `key=value` words: `think=N` thinking tokens it would spend unbounded, `answer=M`
//! answer tokens, `delay_ms=K` per token, `fail=STATUS` to answer with that status,
//! `hang` to never answer, `die_after=K` to cut a stream after K tokens, `nousage` to
//! send no usage. It honours `max_tokens`/`max_completion_tokens` and every dialect's
//! thinking budget (`thinking_token_budget`, `chat_template_kwargs.thinking_budget`,
//! `nvext.max_thinking_tokens`), streams one token per chunk, and reports usage.
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the mock saw and did.
#[derive(Debug)]
pub struct Record {
    /// Every request body received, in arrival order.
    pub requests: Mutex<Vec<Value>>,
    /// Completion tokens generated (sent), over all requests.
    pub generated: AtomicU64,
    /// Open (`true`) lets `gated` requests proceed.
    pub gate: tokio::sync::watch::Sender<bool>,
}

/// A running mock engine.
pub struct Mock {
    pub addr: SocketAddr,
    pub record: Arc<Record>,
}

impl Mock {
    pub async fn start() -> Mock {
        let record = Arc::new(Record {
            requests: Mutex::default(),
            generated: AtomicU64::new(0),
            gate: tokio::sync::watch::channel(false).0,
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(serve))
            .route("/v1/completions", post(serve))
            .with_state(Arc::clone(&record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Mock { addr, record }
    }

    /// Lets `gated` requests proceed (and all later ones, until [`hold`](Self::hold)).
    pub fn release(&self) {
        self.record.gate.send_replace(true);
    }

    /// Makes `gated` requests wait again.
    pub fn hold(&self) {
        self.record.gate.send_replace(false);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Value> {
        self.record.requests.lock().unwrap().clone()
    }

    pub fn last_request(&self) -> Value {
        self.requests().last().cloned().unwrap_or(Value::Null)
    }
}

#[derive(Debug, Default, Clone)]
struct Plan {
    think: u64,
    answer: u64,
    delay_ms: u64,
    fail: Option<u16>,
    hang: bool,
    gated: bool,
    die_after: Option<u64>,
    no_usage: bool,
}

fn prompt_text(body: &Value) -> String {
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        return messages
            .last()
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
    }
    body.get("prompt")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn plan(body: &Value) -> Plan {
    let mut p = Plan {
        think: 100,
        answer: 10,
        ..Plan::default()
    };
    for word in prompt_text(body).split_whitespace() {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        let n = value.parse::<u64>().ok();
        match key {
            "think" => p.think = n.unwrap_or(p.think),
            "answer" => p.answer = n.unwrap_or(p.answer),
            "delay_ms" => p.delay_ms = n.unwrap_or(0),
            "fail" => p.fail = n.map(|s| s as u16),
            "hang" => p.hang = true,
            "gated" => p.gated = true,
            "die_after" => p.die_after = n,
            "nousage" => p.no_usage = true,
            _ => {}
        }
    }
    p
}

fn thinking_budget(body: &Value) -> Option<u64> {
    body.get("thinking_token_budget")
        .or_else(|| body.pointer("/chat_template_kwargs/thinking_budget"))
        .or_else(|| body.pointer("/nvext/max_thinking_tokens"))
        .and_then(Value::as_u64)
}

/// (thinking tokens, answer tokens, finish reason) under the request's limits.
fn generate(body: &Value, p: &Plan) -> (u64, u64, &'static str) {
    let limit = ["max_tokens", "max_completion_tokens"]
        .iter()
        .filter_map(|k| body.get(*k).and_then(Value::as_u64))
        .min()
        .unwrap_or(1 << 20);
    let thinking = p
        .think
        .min(thinking_budget(body).unwrap_or(u64::MAX))
        .min(limit);
    let answer = p.answer.min(limit - thinking);
    let finish = if thinking + answer == limit && (thinking < p.think || answer < p.answer) {
        "length"
    } else {
        "stop"
    };
    (thinking, answer, finish)
}

async fn serve(State(record): State<Arc<Record>>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "bad json").into_response();
    };
    record.requests.lock().unwrap().push(body.clone());
    let p = plan(&body);
    if p.gated {
        let mut gate = record.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
    }
    if p.hang {
        std::future::pending::<()>().await;
    }
    if let Some(status) = p.fail {
        return (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json!({"error": {"message": "mock failure", "type": "server_error", "param": null, "code": null}})
                .to_string(),
        )
            .into_response();
    }
    if p.max_tokens_is_zero(&body) {
        return (StatusCode::BAD_REQUEST, "max_tokens must be at least 1").into_response();
    }
    let (thinking, answer, finish) = generate(&body, &p);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let usage = json!({"prompt_tokens": 5, "completion_tokens": thinking + answer, "total_tokens": thinking + answer + 5});
    if !stream {
        if p.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(p.delay_ms * (thinking + answer))).await;
        }
        record
            .generated
            .fetch_add(thinking + answer, Ordering::Relaxed);
        let mut out = json!({
            "id": "mock", "object": "chat.completion", "model": body.get("model").cloned().unwrap_or(Value::Null),
            "choices": [{"index": 0, "message": {"role": "assistant", "reasoning_content": "r".repeat(thinking as usize), "content": "a".repeat(answer as usize)}, "finish_reason": finish}],
        });
        if !p.no_usage {
            out["usage"] = usage;
        }
        return ([("content-type", "application/json")], out.to_string()).into_response();
    }
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true)
        && !p.no_usage;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        for i in 0..thinking + answer {
            if p.die_after == Some(i) {
                return; // the connection is cut without [DONE]
            }
            if p.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(p.delay_ms)).await;
            }
            let delta = if i < thinking {
                json!({"reasoning_content": "r"})
            } else {
                json!({"content": "a"})
            };
            let chunk = json!({"id": "mock", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
            if tx
                .send(Bytes::from(format!("data: {chunk}\n\n")))
                .await
                .is_err()
            {
                return; // the client (the proxy) went away: stop generating
            }
            record.generated.fetch_add(1, Ordering::Relaxed);
        }
        let last =
            json!({"id": "mock", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]});
        let _ = tx.send(Bytes::from(format!("data: {last}\n\n"))).await;
        if include_usage {
            let u = json!({"id": "mock", "choices": [], "usage": usage});
            let _ = tx.send(Bytes::from(format!("data: {u}\n\n"))).await;
        }
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

impl Plan {
    fn max_tokens_is_zero(&self, body: &Value) -> bool {
        ["max_tokens", "max_completion_tokens"]
            .iter()
            .any(|k| body.get(*k).and_then(Value::as_u64) == Some(0))
    }
}
