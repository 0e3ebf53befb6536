//! `learn = true`: each class's curve learned from its completions through the proxy,
//! against a mock engine whose lengths come from a known law.

#[path = "support/draws.rs"]
mod draws;
#[path = "support/harness.rs"]
mod harness;
#[path = "support/mock.rs"]
mod mock;

use draws::Draws;
use harness::{start, Running};
use mock::Mock;

/// The mock's answer length, and the reserve the class keeps for it.
const ANSWER: u64 = 16;
/// The true thinking law: `THRESHOLD + Gamma(2, WIDTH)` tokens (the length law of a
/// shifted surge, SPEC §2). The completion curve the proxy learns is shifted by the
/// answer: threshold `THRESHOLD + ANSWER`, same width.
const THRESHOLD: f64 = 300.0;
const WIDTH: f64 = 60.0;

/// Thinking tokens a request would spend unbounded, drawn from the true law.
fn thinking(draws: &mut Draws) -> u64 {
    let gamma = -WIDTH * ((1.0 - draws.uniform()).ln() + (1.0 - draws.uniform()).ln());
    (THRESHOLD + gamma).round() as u64
}

/// A class whose configured curve is off: threshold half the truth, width twice.
/// `max_thinking` limits the grant, so completions longer than it are cut off.
fn config(max_thinking: u64) -> String {
    config_with(150.0, max_thinking, "")
}

fn config_with(threshold: f64, max_thinking: u64, extra: &str) -> String {
    format!(
        "learn = true\ntokens_per_window = 10000000\nanswer_reserve = {ANSWER}\n{extra}\n\
         [classes.default]\nthreshold = {threshold:.1}\nwidth = 120.0\nceiling = 0.9\n\
         max_thinking_tokens = {max_thinking}\n"
    )
}

fn learned(proxy: &Running, what: &str) -> f64 {
    proxy
        .metric_line(&format!("clear_learned_{what}{{class=\"default\"}}"))
        .unwrap_or(f64::NAN)
}

/// Sends `n` requests with thinking lengths from the true law, 8 at a time, every
/// other one streamed; returns the ids of those granted.
async fn traffic(proxy: &Running, n: usize, seed: u64) -> Vec<String> {
    let (ids, rejected) = traffic_counted(proxy, n, seed).await;
    assert_eq!(rejected, 0);
    ids
}

/// As [`traffic`], also counting the requests rejected (429).
async fn traffic_counted(proxy: &Running, n: usize, seed: u64) -> (Vec<String>, usize) {
    let mut draws = Draws::new(seed);
    let prompts: Vec<String> = (0..n)
        .map(|_| format!("think={} answer={ANSWER}", thinking(&mut draws)))
        .collect();
    let (mut ids, mut rejected) = (Vec::new(), 0);
    for chunk in prompts.chunks(8) {
        let answers = futures_util::future::join_all(chunk.iter().enumerate().map(|(i, p)| {
            let stream = if i % 2 == 1 {
                r#", "stream": true"#
            } else {
                ""
            };
            proxy.chat(p, stream, &[])
        }))
        .await;
        for a in answers {
            if a.status == 429 {
                rejected += 1;
                continue;
            }
            assert_eq!(a.status, 200, "{}", a.body);
            ids.push(a.header("x-clear-request-id").expect("a request id"));
        }
    }
    (ids, rejected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_learns_its_curve_from_lengths_censored_at_the_grant() {
    let engine = Mock::start().await;
    // Thinking capped at 400: about 60 % of the true lengths (median ≈ 401) fit.
    let proxy = start(&engine.url(), &config(400)).await;
    assert_eq!(learned(&proxy, "threshold_tokens"), 150.0 + ANSWER as f64);
    traffic(&proxy, 400, 7).await;
    let censored = proxy.metric("clear_censored_total");
    assert!((100.0..300.0).contains(&censored), "{censored} cut off");
    // Completions wait a whole window for feedback, then are learned from.
    proxy.proxy.end_window();
    assert_eq!(learned(&proxy, "sample_completions"), 0.0);
    proxy.proxy.end_window();
    assert_eq!(learned(&proxy, "sample_completions"), 400.0);
    let threshold = learned(&proxy, "threshold_tokens");
    let width = learned(&proxy, "width_tokens");
    let truth = THRESHOLD + ANSWER as f64;
    assert!(
        (threshold - truth).abs() < 0.1 * truth,
        "threshold {threshold} vs {truth}"
    );
    assert!(
        (width - WIDTH).abs() < 0.25 * WIDTH,
        "width {width} vs {WIDTH}"
    );
    // No feedback: the ceiling stays the configured one.
    assert_eq!(learned(&proxy, "ceiling"), 0.9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_teaches_the_ceiling_and_given_curves_are_not_learned() {
    let engine = Mock::start().await;
    let proxy = start(&engine.url(), &config(4096)).await;
    let ids = traffic(&proxy, 120, 11).await;
    for (i, id) in ids.iter().enumerate() {
        let body = format!(r#"{{"request_id": "{id}", "correct": {}}}"#, i % 4 == 0);
        let a = proxy.post("/v1/clear/feedback", &body, &[]).await;
        assert_eq!(
            (a.status, a.json()["status"].as_str()),
            (202, Some("learned"))
        );
    }
    let again = format!(r#"{{"request_id": "{}", "correct": true}}"#, ids[0]);
    let a = proxy.post("/v1/clear/feedback", &again, &[]).await;
    assert_eq!(a.json()["status"], "recorded", "learned once only");
    // A client's own curve is admitted as given and not learned from.
    for _ in 0..5 {
        let a = proxy
            .chat("think=50", "", &[("x-clear-threshold", "40")])
            .await;
        assert_eq!(a.status, 200);
    }
    proxy.proxy.end_window();
    assert_eq!(learned(&proxy, "sample_completions"), 120.0);
    // A quarter correct: the prior's 0.9, worth 10 completions, is outweighed by 120
    // judged ones (0.8 weight after one window's decay): (9 + 24) / (10 + 96) ≈ 0.31.
    let ceiling = learned(&proxy, "ceiling");
    assert!((ceiling - 0.31).abs() < 0.05, "ceiling {ceiling}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exploration_rescues_a_class_whose_prior_looks_hopeless() {
    let engine = Mock::start().await;
    // Configured threshold 1200 > the thinking cap 400: the class's curve cannot pay
    // for any grant, so without exploration every request is rejected and nothing is
    // learned; with 10 % exploration one in ten is admitted on an optimistic curve.
    let hopeless = config_with(1200.0, 400, "");
    let proxy = start(&engine.url(), &hopeless).await;
    let (_, rejected) = traffic_counted(&proxy, 40, 3).await;
    assert_eq!(rejected, 40);
    proxy.proxy.end_window();
    proxy.proxy.end_window();
    assert_eq!(learned(&proxy, "sample_completions"), 0.0);

    let exploring = config_with(1200.0, 400, "learn_exploration = 0.1");
    let proxy = start(&engine.url(), &exploring).await;
    let (ids, _) = traffic_counted(&proxy, 400, 5).await;
    assert!((35..=45).contains(&ids.len()), "{} explored", ids.len());
    proxy.proxy.end_window();
    proxy.proxy.end_window();
    let threshold = learned(&proxy, "threshold_tokens");
    let truth = THRESHOLD + ANSWER as f64;
    assert!(
        (threshold - truth).abs() < 0.25 * truth,
        "threshold {threshold} vs {truth}"
    );
    // Learned: the class is admitted on its own curve again.
    let (granted, rejected) = traffic_counted(&proxy, 40, 9).await;
    assert!(
        granted.len() > 30,
        "{} granted, {rejected} rejected",
        granted.len()
    );
}
