//! End to end: a client, the proxy and a mock engine on 127.0.0.1, over HTTP.
//!
//! Default class prior: threshold 256, width 512, ceiling 0.9, thinking cap 8192;
//! answer reserve 256 unless a test sets it; price 0 until a window ends, so a
//! request is granted its completion cap while the window has room.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/mock.rs"]
mod mock;

use harness::start;
use mock::Mock;
use serde_json::Value;
use std::time::Duration;

const BUDGET: u64 = 100_000;

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_is_written_for_vllm_and_the_unused_part_refunded() {
    let engine = Mock::start().await;
    let proxy = start(&engine.url(), "dialect = \"vllm\"").await;
    let a = proxy
        .chat("think=300 answer=20", ", \"max_tokens\": 2000", &[])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Cap 2000 (the client's), price 0: the whole cap, of which 256 is the reserve.
    assert_eq!(a.grant(), 2000 - 256);
    assert_eq!(a.header("x-clear-max-tokens").as_deref(), Some("2000"));
    let seen = engine.last_request();
    assert_eq!(seen["max_tokens"], 2000);
    assert_eq!(seen["thinking_token_budget"], 1744);
    assert_eq!(a.json()["usage"]["completion_tokens"], 320);
    // Charged what was used, the rest refunded to the open window.
    assert_eq!(proxy.remaining(), BUDGET - 320);
    assert_eq!(
        proxy.metric("clear_refunded_tokens_total"),
        (2000 - 320) as f64
    );
    assert_eq!(
        proxy.metric("clear_requests_total{decision=\"granted\"}"),
        1.0
    );
    assert_eq!(proxy.metric("clear_grants_in_flight"), 0.0);
    let window = proxy.proxy.end_window();
    assert_eq!((window.charged, window.budget), (320, BUDGET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_relayed_and_refunded_from_its_usage() {
    let engine = Mock::start().await;
    let proxy = start(&engine.url(), "dialect = \"vllm\"").await;
    let a = proxy
        .chat("think=30 answer=5", ", \"stream\": true", &[])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    let events = a.events();
    // 35 token chunks, the finish chunk, [DONE]; the usage chunk the proxy asked for
    // is not shown to a client that did not ask for it.
    assert_eq!(events.len(), 37, "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(events.iter().all(|e| !e.contains("\"usage\"")));
    assert_eq!(
        engine.last_request()["stream_options"]["include_usage"],
        true
    );
    assert_eq!(proxy.remaining(), BUDGET - 35);

    // A client that asks for usage gets it.
    let a = proxy
        .chat(
            "think=30 answer=5",
            ", \"stream\": true, \"stream_options\": {\"include_usage\": true}",
            &[],
        )
        .await;
    let usage: Vec<Value> = a
        .events()
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|v| v.get("usage").is_some())
        .collect();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["usage"]["completion_tokens"], 35);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_usage_the_streamed_deltas_are_counted() {
    let engine = Mock::start().await;
    let proxy = start(&engine.url(), "").await;
    let a = proxy
        .chat("think=50 answer=7 nousage", ", \"stream\": true", &[])
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(proxy.remaining(), BUDGET - 57);
    // Non-streaming without usage: the whole grant is charged (the proxy cannot know).
    let a = proxy
        .chat("think=50 answer=7 nousage", ", \"max_tokens\": 900", &[])
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(proxy.remaining(), BUDGET - 57 - 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialect_writes_its_field_and_never_raises_the_clients_limit() {
    let engine = Mock::start().await;
    for (dialect, pointer) in [
        ("sglang", Some("/chat_template_kwargs/thinking_budget")),
        ("dynamo", Some("/nvext/max_thinking_tokens")),
        ("openai", None),
    ] {
        let proxy = start(
            &engine.url(),
            &format!("dialect = \"{dialect}\"\nanswer_reserve = 32"),
        )
        .await;
        let a = proxy
            .chat(
                "think=10000 answer=5",
                ", \"max_completion_tokens\": 500",
                &[],
            )
            .await;
        assert_eq!(a.status, 200, "{dialect}: {}", a.body);
        let seen = engine.last_request();
        assert_eq!(seen["max_completion_tokens"], 500, "{dialect}");
        assert!(seen.get("max_tokens").is_none(), "{dialect}");
        match pointer {
            Some(p) => assert_eq!(seen.pointer(p), Some(&Value::from(468)), "{dialect}"),
            None => {
                assert!(seen.get("thinking_token_budget").is_none());
                assert!(seen.get("nvext").is_none());
            }
        }
        if pointer.is_some() {
            // Thinking stopped at its grant (468) and the answer fit in the reserve.
            assert_eq!(a.json()["choices"][0]["finish_reason"], "stop", "{dialect}");
            assert_eq!(proxy.metric("clear_censored_total"), 0.0, "{dialect}");
            assert_eq!(proxy.remaining(), BUDGET - 473, "{dialect}");
        } else {
            // No thinking field: the thinking ran into the limit, a censored
            // observation, and the answer was cut.
            assert_eq!(a.json()["choices"][0]["finish_reason"], "length");
            assert_eq!(proxy.metric("clear_censored_total"), 1.0);
            assert_eq!(proxy.remaining(), BUDGET - 500);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_window_rejects_with_429_and_retry_after() {
    let engine = Mock::start().await;
    let proxy = start(
        &engine.url(),
        "tokens_per_window = 1000\nanswer_reserve = 100\nwindow = 30.0",
    )
    .await;
    let first = proxy
        .chat("think=10000", ", \"max_tokens\": 900", &[])
        .await;
    assert_eq!(first.status, 200);
    assert_eq!(proxy.remaining(), 100);
    // 100 tokens left: no more than the answer reserve, so nothing to think with.
    let second = proxy.chat("think=10", "", &[]).await;
    assert_eq!(second.status, 429, "{}", second.body);
    let retry: u64 = second.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let error = &second.json()["error"];
    assert_eq!(error["type"], "rate_limit_error");
    assert_eq!(error["code"], "budget_exhausted");
    assert!(error["message"].as_str().unwrap().contains("retry after"));
    // Not charged, and the engine never saw it.
    assert_eq!(proxy.remaining(), 100);
    assert_eq!(engine.requests().len(), 1);
    assert_eq!(
        proxy.metric("clear_requests_total{decision=\"rejected\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_the_curve_cannot_pay_abandons_the_request() {
    let engine = Mock::start().await;
    // A price above the prior's peak marginal (0.9 / (512 e) ≈ 6.5e-4) funds nobody.
    let proxy = start(&engine.url(), "initial_price = 0.01").await;
    let a = proxy.chat("think=10", "", &[]).await;
    assert_eq!(a.status, 429);
    assert_eq!(proxy.remaining(), BUDGET);
    assert!(engine.requests().is_empty());
    // An easier request (a short, steep, high curve in the headers) still cannot pay
    // 0.01 per token; a far lower price funds it.
    let cheap = start(&engine.url(), "initial_price = 0.0001").await;
    let a = cheap
        .chat(
            "think=10",
            "",
            &[
                ("x-clear-threshold", "20"),
                ("x-clear-width", "50"),
                ("x-clear-ceiling", "1"),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.grant() > 20, "{}", a.grant());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cheap_policy_forwards_without_thinking() {
    let engine = Mock::start().await;
    let proxy = start(
        &engine.url(),
        "initial_price = 0.01\non_abandon = \"cheap\"\ncheap_max_tokens = 64\ndialect = \"vllm\"",
    )
    .await;
    let a = proxy.chat("think=500 answer=10", "", &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.grant(), 0);
    let seen = engine.last_request();
    assert_eq!(seen["thinking_token_budget"], 0);
    assert_eq!(seen["max_tokens"], 64);
    assert_eq!(proxy.remaining(), BUDGET);
    assert_eq!(
        proxy.metric("clear_requests_total{decision=\"cheap\"}"),
        1.0
    );
    // Streaming on the cheap path works the same way.
    let a = proxy
        .chat("think=0 answer=3", ", \"stream\": true", &[])
        .await;
    assert_eq!(a.events().last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_policy_goes_to_the_fallback_engine() {
    let engine = Mock::start().await;
    let small = Mock::start().await;
    let proxy = start(
        &engine.url(),
        &format!(
            "initial_price = 0.01\non_abandon = \"fallback\"\nfallback_upstream = \"{}\"\nfallback_model = \"small\"\nfallback_max_tokens = 128",
            small.url()
        ),
    )
    .await;
    let a = proxy
        .chat("think=0 answer=10", ", \"max_tokens\": 4000", &[])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(engine.requests().is_empty());
    let seen = small.last_request();
    assert_eq!(seen["model"], "small");
    assert_eq!(seen["max_tokens"], 128);
    assert_eq!(proxy.remaining(), BUDGET);
}

async fn refused_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upstream_is_a_502_and_refunds() {
    let port = refused_port().await;
    let proxy = start(&format!("http://127.0.0.1:{port}"), "").await;
    for extra in ["", ", \"stream\": true"] {
        let a = proxy.chat("think=10", extra, &[]).await;
        assert_eq!(a.status, 502, "{}", a.body);
        assert_eq!(a.json()["error"]["type"], "upstream_error");
    }
    assert_eq!(proxy.remaining(), BUDGET);
    assert_eq!(proxy.metric("clear_grants_in_flight"), 0.0);
    assert_eq!(
        proxy.metric("clear_upstream_errors_total{kind=\"refused\"}"),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_errors_refund_5xx_is_502_and_4xx_passes_through() {
    let engine = Mock::start().await;
    let proxy = start(&engine.url(), "").await;
    let a = proxy.chat("fail=500", "", &[]).await;
    assert_eq!(a.status, 502);
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("500"));
    let a = proxy.chat("fail=503", ", \"stream\": true", &[]).await;
    assert_eq!(a.status, 502);
    let a = proxy.chat("fail=422", "", &[]).await;
    assert_eq!(a.status, 422);
    assert_eq!(a.json()["error"]["message"], "mock failure");
    assert_eq!(proxy.remaining(), BUDGET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_is_a_504_and_refunds() {
    let engine = Mock::start().await;
    let proxy = start(&engine.url(), "upstream_timeout = 0.3").await;
    for extra in ["", ", \"stream\": true"] {
        let a = proxy.chat("hang", extra, &[]).await;
        assert_eq!(a.status, 504, "{}", a.body);
        assert_eq!(a.json()["error"]["code"], "upstream_timeout");
    }
    // A stream that stalls midway ends with an error event.
    let a = proxy
        .chat("think=20 delay_ms=1000", ", \"stream\": true", &[])
        .await;
    assert_eq!(a.status, 200);
    let last = a.events().last().cloned().unwrap();
    assert!(last.contains("upstream_timeout"), "{last}");
    assert_eq!(proxy.remaining(), BUDGET);
    assert_eq!(proxy.metric("clear_grants_in_flight"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_stream_stops_the_engine_and_refunds_the_rest() {
    let engine = Mock::start().await;
    let proxy = start(&engine.url(), "").await;
    let mut response = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .body(r#"{"messages": [{"role": "user", "content": "think=3000 delay_ms=2"}], "stream": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0;
    while received < 20 {
        received += response.chunk().await.unwrap().unwrap().len();
    }
    drop(response);
    wait_until("the grant to settle", || {
        proxy.metric("clear_grants_in_flight") == 0.0
    })
    .await;
    let charged = BUDGET - proxy.remaining();
    assert!((1..3010).contains(&charged), "charged {charged}");
    // The engine stopped soon after the proxy dropped its connection.
    let generated = engine
        .record
        .generated
        .load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = engine
        .record
        .generated
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        later < 3010 && later <= generated + 8,
        "{generated} then {later}"
    );
    assert_eq!(
        proxy.metric("clear_upstream_errors_total{kind=\"disconnect\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_cut_off_mid_stream_charges_what_was_streamed() {
    let engine = Mock::start().await;
    let proxy = start(&engine.url(), "").await;
    let a = proxy
        .chat("think=100 die_after=40", ", \"stream\": true", &[])
        .await;
    assert_eq!(a.status, 200);
    assert!(!a.events().iter().any(|e| e == "[DONE]"));
    assert_eq!(proxy.remaining(), BUDGET - 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_naming_the_field_and_charges_nothing() {
    let engine = Mock::start().await;
    let proxy = start(&engine.url(), "max_body_bytes = 4096\ndialect = \"dynamo\"").await;
    let chat = "/v1/chat/completions";
    let ok = r#"{"messages": []}"#;
    // (path, body, headers, expected status, expected `param`)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (chat, "{not json".into(), vec![], 400, "body"),
        (chat, "[1]".into(), vec![], 400, "body"),
        (chat, "".into(), vec![], 400, "body"),
        (
            chat,
            r#"{"messages": "hi"}"#.into(),
            vec![],
            400,
            "messages",
        ),
        (
            chat,
            r#"{"messages": [], "model": 7}"#.into(),
            vec![],
            400,
            "model",
        ),
        (
            chat,
            r#"{"messages": [], "max_tokens": 1e12}"#.into(),
            vec![],
            400,
            "max_tokens",
        ),
        (
            chat,
            r#"{"messages": [], "max_tokens": 99999999999}"#.into(),
            vec![],
            400,
            "max_tokens",
        ),
        (
            chat,
            r#"{"messages": [], "max_tokens": -1}"#.into(),
            vec![],
            400,
            "max_tokens",
        ),
        (
            chat,
            r#"{"messages": [], "max_tokens": "100"}"#.into(),
            vec![],
            400,
            "max_tokens",
        ),
        (
            chat,
            r#"{"messages": [], "max_tokens": 0}"#.into(),
            vec![],
            400,
            "max_tokens",
        ),
        (chat, r#"{"messages": [], "n": 4}"#.into(), vec![], 400, "n"),
        (
            chat,
            r#"{"messages": [], "stream": 1}"#.into(),
            vec![],
            400,
            "stream",
        ),
        (
            chat,
            r#"{"messages": [], "nvext": []}"#.into(),
            vec![],
            400,
            "nvext",
        ),
        (
            "/v1/completions",
            r#"{"prompt": 5}"#.into(),
            vec![],
            400,
            "prompt",
        ),
        (
            chat,
            ok.into(),
            vec![("x-clear-class", "nope")],
            400,
            "x-clear-class",
        ),
        (
            chat,
            ok.into(),
            vec![("x-clear-threshold", "lots")],
            400,
            "x-clear-threshold",
        ),
        (
            chat,
            ok.into(),
            vec![("x-clear-threshold", "NaN")],
            400,
            "x-clear-threshold",
        ),
        (
            chat,
            ok.into(),
            vec![("x-clear-threshold", "-3")],
            400,
            "x-clear-threshold",
        ),
        (
            chat,
            ok.into(),
            vec![("x-clear-width", "0")],
            400,
            "x-clear-width",
        ),
        (
            chat,
            ok.into(),
            vec![("x-clear-ceiling", "inf")],
            400,
            "x-clear-ceiling",
        ),
        (
            "/classes/nope/v1/chat/completions",
            ok.into(),
            vec![],
            400,
            "route class",
        ),
        (
            chat,
            format!(r#"{{"messages": [], "pad": "{}"}}"#, "x".repeat(5000)),
            vec![],
            413,
            "body",
        ),
    ];
    let n = cases.len();
    for (path, body, headers, status, param) in cases {
        let a = proxy.post(path, &body, &headers).await;
        assert_eq!(
            a.status, status,
            "{path} {body:.60} {headers:?}: {}",
            a.body
        );
        let error = &a.json()["error"];
        assert_eq!(error["param"], param, "{}", a.body);
        assert!(
            error["message"].as_str().unwrap().starts_with(param),
            "{}",
            a.body
        );
    }
    assert_eq!(proxy.remaining(), BUDGET);
    assert!(engine.requests().is_empty());
    assert_eq!(
        proxy.metric("clear_requests_total{decision=\"invalid\"}"),
        n as f64
    );
    // And the proxy still serves.
    assert_eq!(proxy.chat("think=5", "", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classes_come_from_route_header_and_model() {
    let engine = Mock::start().await;
    let proxy = start(
        &engine.url(),
        "answer_reserve = 16\n[classes.default]\nthreshold = 100.0\nwidth = 100.0\nceiling = 0.9\nmax_thinking_tokens = 1000\n\
         [classes.math]\nthreshold = 300.0\nwidth = 280.0\nceiling = 0.4\nmax_thinking_tokens = 3000\nmodels = [\"qwen-math\"]\n",
    )
    .await;
    let by_model = proxy
        .post(
            "/v1/chat/completions",
            r#"{"model": "qwen-math", "messages": []}"#,
            &[],
        )
        .await;
    assert_eq!(by_model.header("x-clear-class").as_deref(), Some("math"));
    assert_eq!(by_model.grant(), 3000);
    let by_header = proxy.chat("", "", &[("x-clear-class", "math")]).await;
    assert_eq!(by_header.grant(), 3000);
    let by_route = proxy
        .post(
            "/classes/math/v1/chat/completions",
            r#"{"messages": []}"#,
            &[],
        )
        .await;
    assert_eq!(by_route.header("x-clear-class").as_deref(), Some("math"));
    let default = proxy.chat("", "", &[]).await;
    assert_eq!(default.header("x-clear-class").as_deref(), Some("default"));
    assert_eq!(default.grant(), 1000);
    assert!(proxy
        .metric_line("clear_grant_tokens_count{class=\"math\"}")
        .is_some_and(|v| v == 3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_metrics_and_feedback() {
    let engine = Mock::start().await;
    let proxy = start(&engine.url(), "").await;
    assert_eq!(proxy.get("/healthz").await, (200, "ok".to_string()));
    let _ = proxy.chat("think=5", "", &[]).await;
    let (status, text) = proxy.get("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "clear_price ",
        "clear_window_budget_tokens 100000",
        "clear_window_charged_tokens 15",
        "clear_requests_total{decision=\"granted\"} 1",
        "clear_refunded_tokens_total ",
        "clear_grant_tokens_bucket{",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    let a = proxy
        .post(
            "/v1/clear/feedback",
            r#"{"request_id": "clr-0", "correct": true, "length": 15}"#,
            &[],
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let a = proxy
        .post("/v1/clear/feedback", r#"{"request_id": "clr-0"}"#, &[])
        .await;
    assert_eq!(
        (a.status, a.json()["error"]["param"].as_str()),
        (400, Some("correct"))
    );
    let a = proxy
        .post(
            "/v1/clear/feedback",
            r#"{"request_id": "clr-0", "correct": false, "class": "zzz"}"#,
            &[],
        )
        .await;
    assert_eq!(
        (a.status, a.json()["error"]["param"].as_str()),
        (400, Some("class"))
    );
    assert_eq!(proxy.metric("clear_feedback_total{correct=\"true\"}"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_timer_closes_windows_and_restores_the_budget() {
    let engine = Mock::start().await;
    let proxy = start(&engine.url(), "window = 0.4").await;
    let _ = proxy.chat("think=100 answer=0", "", &[]).await;
    let charged_now = BUDGET - proxy.remaining();
    assert!(charged_now == 100 || proxy.metric("clear_windows_total") >= 1.0);
    wait_until("a window to close", || {
        proxy.metric("clear_windows_total") >= 1.0
    })
    .await;
    assert_eq!(proxy.remaining(), BUDGET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_cancels_and_refunds_in_flight_grants() {
    let engine = Mock::start().await;
    let mut proxy = start(&engine.url(), "shutdown_grace = 0.3").await;
    let mut response = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .body(r#"{"messages": [{"role": "user", "content": "think=5000 delay_ms=2"}], "stream": true}"#)
        .send()
        .await
        .unwrap();
    let _ = response.chunk().await.unwrap();
    assert_eq!(proxy.metric("clear_grants_in_flight"), 1.0);
    let started = std::time::Instant::now();
    let reader = tokio::spawn(async move {
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            body.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&body).to_string()
    });
    proxy.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let tail = reader.await.unwrap();
    assert!(
        tail.contains("shutting_down"),
        "{}",
        &tail[tail.len().saturating_sub(300)..]
    );
    assert_eq!(proxy.metric("clear_grants_in_flight"), 0.0);
    let charged = BUDGET - proxy.remaining();
    assert!(charged < 5000, "charged {charged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_starts_with_flags_alone() {
    let engine = Mock::start().await;
    let port = refused_port().await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_clear-proxy"))
        .args([
            "--upstream",
            &engine.url(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tokens-per-window",
            "5000",
            "--window",
            "10",
            "--dialect",
            "vllm",
            "--log-level",
            "warn",
        ])
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            ready = r.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let answer = client
        .post(format!("{base}/v1/chat/completions"))
        .body(r#"{"messages": [{"role": "user", "content": "think=10"}], "max_tokens": 1000}"#)
        .send()
        .await;
    // SIGTERM: a graceful exit (nothing in flight, so at once).
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut exited = None;
    for _ in 0..400 {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(ready);
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
    let answer = answer.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-clear-grant"], "744");
    assert_eq!(engine.last_request()["thinking_token_budget"], 744);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clear-proxy"))
        .args([
            "--upstream",
            "http://127.0.0.1:1",
            "--tokens-per-window",
            "0",
            "--window",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokens_per_window"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_completions_endpoint_is_forwarded_to_the_same_path() {
    let engine = Mock::start().await;
    let proxy = start(&engine.url(), "dialect = \"vllm\"").await;
    let a = proxy
        .post(
            "/v1/completions",
            r#"{"prompt": "think=12 answer=3", "max_tokens": 1000, "stream": true}"#,
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.events().last().map(String::as_str), Some("[DONE]"));
    assert_eq!(engine.last_request()["prompt"], "think=12 answer=3");
    assert_eq!(engine.last_request()["thinking_token_budget"], 1000 - 256);
    assert_eq!(proxy.remaining(), BUDGET - 15);
}
