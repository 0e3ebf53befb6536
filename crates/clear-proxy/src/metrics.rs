//! The proxy's Prometheus metrics (served at `GET /metrics` in the OpenMetrics text
//! format, which Prometheus scrapes natively). The crate README lists what each one
//! means.

use crate::fleet::LedgerMetrics;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels of a counter split by one dimension (`decision`, `kind`, `class`, ...).
type Labels = Vec<(&'static str, String)>;

/// Every metric the proxy exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `clear_price`: the current shadow price per token.
    pub price: Gauge<f64, AtomicU64>,
    /// `clear_window_budget_tokens`.
    pub window_budget: Gauge,
    /// `clear_window_charged_tokens`: tokens the current window has paid for so far.
    pub window_charged: Gauge,
    /// `clear_window_remaining_tokens`.
    pub window_remaining: Gauge,
    /// `clear_last_window_charged_tokens`: what the last closed window paid for.
    pub last_window_charged: Gauge,
    /// `clear_windows_total`: windows closed.
    pub windows: Counter,
    /// `clear_requests_total{decision}`.
    pub requests: Family<Labels, Counter>,
    /// `clear_granted_tokens_total`: completion tokens granted (gross, before refunds).
    pub granted_tokens: Counter,
    /// `clear_used_tokens_total`: completion tokens the engine reported (or the proxy
    /// counted) for granted requests.
    pub used_tokens: Counter,
    /// `clear_refunded_tokens_total`: unused tokens credited back to their window.
    pub refunded_tokens: Counter,
    /// `clear_grants_in_flight`: grants not yet settled.
    pub in_flight: Gauge,
    /// `clear_grants_settled_total`: grants settled (completed or refunded).
    pub settled: Counter,
    /// `clear_grant_tokens{class}`: histogram of completion-token grants per class.
    pub grants: Family<Labels, Histogram, fn() -> Histogram>,
    /// `clear_upstream_errors_total{kind}`: refused, status, timeout, disconnect,
    /// shutdown, body.
    pub upstream_errors: Family<Labels, Counter>,
    /// `clear_censored_total`: completions that stopped at their limit
    /// (`finish_reason = length`).
    pub censored: Counter,
    /// `clear_feedback_total{correct}`: feedback reports received.
    pub feedback: Family<Labels, Counter>,
    /// `clear_learned_{threshold,width}_tokens{class}`, `clear_learned_ceiling{class}`
    /// and `clear_learned_sample_completions{class}`: each class's learned completion
    /// curve and the completions it was learned from (with `learn = true`), updated
    /// when a window ends.
    pub learned: [Family<Labels, Gauge<f64, AtomicU64>>; 4],
    /// `clear_ledger_*`: the fleet ledger's counters, when the proxy has one.
    pub ledger: Option<LedgerMetrics>,
}

fn grant_histogram() -> Histogram {
    // 16 tokens to ~500 000 tokens, doubling.
    Histogram::new(exponential_buckets(16.0, 2.0, 16))
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        Self::build(false)
    }

    /// As [`new`](Self::new), plus the `clear_ledger_*` metrics of a fleet ledger.
    pub fn with_ledger() -> Self {
        Self::build(true)
    }

    fn build(ledger: bool) -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            price: Gauge::default(),
            window_budget: Gauge::default(),
            window_charged: Gauge::default(),
            window_remaining: Gauge::default(),
            last_window_charged: Gauge::default(),
            windows: Counter::default(),
            requests: Family::default(),
            granted_tokens: Counter::default(),
            used_tokens: Counter::default(),
            refunded_tokens: Counter::default(),
            in_flight: Gauge::default(),
            settled: Counter::default(),
            grants: Family::new_with_constructor(grant_histogram),
            upstream_errors: Family::default(),
            censored: Counter::default(),
            feedback: Family::default(),
            learned: Default::default(),
            ledger: None,
        };
        registry.register(
            "clear_price",
            "Shadow price per completion token",
            m.price.clone(),
        );
        registry.register(
            "clear_window_budget_tokens",
            "Completion tokens each window may authorise",
            m.window_budget.clone(),
        );
        registry.register(
            "clear_window_charged_tokens",
            "Tokens the current window has paid for, net of refunds",
            m.window_charged.clone(),
        );
        registry.register(
            "clear_window_remaining_tokens",
            "Tokens the current window can still grant",
            m.window_remaining.clone(),
        );
        registry.register(
            "clear_last_window_charged_tokens",
            "Tokens the last closed window paid for, net of refunds",
            m.last_window_charged.clone(),
        );
        registry.register("clear_windows", "Windows closed", m.windows.clone());
        registry.register(
            "clear_requests",
            "Completion requests by decision (granted, rejected, cheap, fallback, invalid)",
            m.requests.clone(),
        );
        registry.register(
            "clear_granted_tokens",
            "Completion tokens granted, before refunds",
            m.granted_tokens.clone(),
        );
        registry.register(
            "clear_used_tokens",
            "Completion tokens used by granted requests",
            m.used_tokens.clone(),
        );
        registry.register(
            "clear_refunded_tokens",
            "Unused tokens credited back to the window that granted them",
            m.refunded_tokens.clone(),
        );
        registry.register(
            "clear_grants_in_flight",
            "Grants not yet settled",
            m.in_flight.clone(),
        );
        registry.register(
            "clear_grants_settled",
            "Grants settled (completed or refunded)",
            m.settled.clone(),
        );
        registry.register(
            "clear_grant_tokens",
            "Completion-token grant per request, by class",
            m.grants.clone(),
        );
        registry.register(
            "clear_upstream_errors",
            "Upstream failures by kind",
            m.upstream_errors.clone(),
        );
        registry.register(
            "clear_censored",
            "Completions that stopped at their limit (finish_reason = length)",
            m.censored.clone(),
        );
        registry.register(
            "clear_feedback",
            "Feedback reports received",
            m.feedback.clone(),
        );
        for (family, name, help) in [
            (
                &m.learned[0],
                "clear_learned_threshold_tokens",
                "Learned emergence threshold of each class's completion curve",
            ),
            (
                &m.learned[1],
                "clear_learned_width_tokens",
                "Learned surge width of each class's completion curve",
            ),
            (
                &m.learned[2],
                "clear_learned_ceiling",
                "Learned ceiling (accuracy plateau) of each class's curve",
            ),
            (
                &m.learned[3],
                "clear_learned_sample_completions",
                "Completions each class's learned curve was fitted to",
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        let ledger = ledger.then(|| LedgerMetrics::register(&mut registry));
        Metrics {
            registry,
            ledger,
            ..m
        }
    }

    /// Counts one request under `decision`.
    pub fn request(&self, decision: &'static str) {
        self.requests
            .get_or_create(&vec![("decision", decision.to_string())])
            .inc();
    }

    /// Counts one upstream failure of `kind`.
    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc();
    }

    /// Sets the learned-curve gauges of `class`.
    pub fn learned(&self, class: &str, curve: &clear_alloc::ShiftedSurge, sample: usize) {
        let labels = vec![("class", class.to_string())];
        let values = [
            curve.threshold(),
            curve.width(),
            curve.ceiling(),
            sample as f64,
        ];
        for (family, value) in self.learned.iter().zip(values) {
            family.get_or_create(&labels).set(value);
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_metric_names_are_exported() {
        let m = Metrics::new();
        m.request("granted");
        m.refunded_tokens.inc_by(5);
        m.price.set(1.5e-4);
        let text = m.encode();
        for name in [
            "clear_price 0.00015",
            "clear_window_budget_tokens",
            "clear_window_charged_tokens",
            "clear_requests_total{decision=\"granted\"} 1",
            "clear_refunded_tokens_total 5",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
