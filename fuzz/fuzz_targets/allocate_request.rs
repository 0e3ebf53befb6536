//! JSON request bytes → `clear-alloc allocate` (the program's own code path), checking
//! the response's invariants, not only that nothing panics:
//! Σ tokens ≤ budget, each grant ≤ its cap and a multiple of the granularity,
//! abandoned ⇔ 0 tokens, the totals add up, and the response re-serialises and reads
//! back equal. Every error is one line.
#![no_main]

use clear_alloc::Allocator;
use clear_alloc_cli::allocate::{run_allocate, AllocateOptions};
use clear_alloc_cli::wire::{AllocationRequest, AllocationResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let json = match run_allocate(data, &AllocateOptions::default()) {
        Ok(json) => json,
        Err(message) => {
            assert!(
                !message.contains(['\n', '\r']),
                "error spans lines: {message:?}"
            );
            return;
        }
    };
    // Accepted: the bytes are exactly one request.
    let request: AllocationRequest = serde_json::from_slice(data).expect("accepted request");
    let response: AllocationResponse = serde_json::from_str(&json).expect("response reads back");
    let again = serde_json::to_string(&response).expect("response re-serialises");
    let back: AllocationResponse = serde_json::from_str(&again).expect("re-serialised reads");
    assert_eq!(back, response);

    assert_eq!(response.allocations.len(), request.queries.len());
    let granularity = request.granularity.unwrap_or(1);
    let default_cap = request.default_cap.unwrap_or(Allocator::DEFAULT_CAP);
    let mut total: u64 = 0;
    let mut utility = 0.0;
    for (spec, grant) in request.queries.iter().zip(&response.allocations) {
        assert_eq!(grant.id, spec.id);
        assert!(
            grant.tokens <= spec.cap.unwrap_or(default_cap),
            "{grant:?} over its cap"
        );
        assert_eq!(
            grant.tokens % granularity,
            0,
            "{grant:?} off the granularity"
        );
        assert_eq!(grant.abandoned, grant.tokens == 0, "{grant:?}");
        assert!(
            grant.utility.is_finite() && grant.utility >= 0.0,
            "{grant:?}"
        );
        total = total
            .checked_add(grant.tokens)
            .expect("Σ tokens overflows u64");
        utility += grant.utility;
    }
    assert_eq!(response.total_tokens, total);
    assert!(response.expected_utility.is_finite());
    let tolerance = 1e-9 * utility.abs().max(1e-300) * request.queries.len() as f64;
    assert!(
        (response.expected_utility - utility).abs() <= tolerance,
        "expected_utility {} vs Σ {utility}",
        response.expected_utility
    );
    if let Some(budget) = request.budget {
        assert!(total <= budget, "Σ tokens {total} > budget {budget}");
        assert_eq!(response.leftover, budget - total);
    } else {
        assert_eq!(response.leftover, 0);
    }
    for price in [response.price, response.marginal_price]
        .into_iter()
        .flatten()
    {
        assert!(
            price.is_finite() && price >= 0.0 && price.is_sign_positive(),
            "{price}"
        );
    }
});
