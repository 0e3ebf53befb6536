//! Round trip: rollouts → fitted curves → the JSON contract → a valid allocation.

use clear_alloc::fit::{read_rollouts_csv, read_rollouts_jsonl, EmpiricalCurve, RolloutFit};
use clear_alloc_cli::wire::{AllocationRequest, QuerySpec};

const ROLLOUTS: &str = include_str!("../data/rollouts.csv");

fn specs() -> Vec<QuerySpec> {
    let queries = read_rollouts_csv(ROLLOUTS.as_bytes()).unwrap();
    let fits = RolloutFit::default().fit_many(&queries).unwrap();
    fits.iter().map(QuerySpec::from).collect()
}

#[test]
fn fitted_curves_allocate_within_budget() {
    let queries = read_rollouts_csv(ROLLOUTS.as_bytes()).unwrap();
    let fits = RolloutFit::default().fit_many(&queries).unwrap();
    for budget in [500, 2_000, 20_000, 1_000_000] {
        let request = AllocationRequest {
            budget: Some(budget),
            queries: fits.iter().map(QuerySpec::from).collect(),
            ..Default::default()
        };
        let response = request.run().unwrap();
        assert!(response.total_tokens <= budget);
        assert_eq!(response.allocations.len(), queries.len());
        for (fit, grant) in fits.iter().zip(&response.allocations) {
            assert_eq!(grant.id.as_deref(), Some(fit.id.as_str()));
            // An insolvent query has ceiling 0: no token buys it anything.
            if fit.insolvent {
                assert_eq!(grant.utility, 0.0);
            }
        }
        // With a budget above Σ caps every query gets its default cap (32 768 tokens),
        // where each fitted curve is at its ceiling; a fitted ceiling is never below the
        // query's share of correct rollouts k/n (censoring only raises it).
        if budget == 1_000_000 {
            let empirical: f64 = queries
                .iter()
                .map(|q| {
                    EmpiricalCurve::from_rollouts(&q.rollouts)
                        .unwrap()
                        .ceiling()
                })
                .sum();
            assert!(
                response.expected_utility >= empirical - 1e-6,
                "{} vs {empirical}",
                response.expected_utility
            );
        }
    }
}

#[test]
fn printed_queries_document_completes_into_a_request() {
    // What `examples/fit.rs` prints, plus the budget `examples/allocate.rs` adds.
    let document = serde_json::json!({ "queries": specs() });
    let mut value = document.clone();
    value["budget"] = serde_json::json!(20_000);
    let request: AllocationRequest = serde_json::from_value(value).unwrap();
    let response = request.run().unwrap();
    assert!(response.total_tokens <= 20_000);
    assert_eq!(
        response.allocations.len(),
        document["queries"].as_array().unwrap().len()
    );
}

#[test]
fn jsonl_and_csv_give_the_same_fits() {
    let csv = read_rollouts_csv(ROLLOUTS.as_bytes()).unwrap();
    let jsonl: String = ROLLOUTS
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            format!(
                "{{\"query_id\":\"{}\",\"tokens\":{},\"correct\":{},\"truncated\":{}}}\n",
                f[0], f[1], f[2], f[3]
            )
        })
        .collect();
    let from_jsonl = read_rollouts_jsonl(jsonl.as_bytes()).unwrap();
    assert_eq!(csv, from_jsonl);
}
