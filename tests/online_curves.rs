//! The online allocator with curves other than a shifted surge: mixtures,
//! piecewise-linear curves and `AnyCurve` batches keep every window within its budget
//! under any order of calls, a class of identical mixtures is priced where the batch
//! allocator prices the same requests, and a fleet ledger of mixtures clears one
//! price from the replicas' merged samples.

use clear_alloc::online::{
    BudgetLedger, ClosedWindow, Lease, OnlineAllocator, OnlineAllocatorBuilder, SampledQuery,
};
use clear_alloc::{Allocator, AnyCurve, Curve, Mixture, PiecewiseLinear, Query, ShiftedSurge};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[macro_use]
mod soak_support;
mod online_books;

use online_books::{allocator, check_books, op, Op};

const CAP: u64 = 4096;

fn surge(threshold: f64, width: f64, ceiling: f64) -> ShiftedSurge {
    ShiftedSurge::new(threshold, width, ceiling).unwrap()
}

/// A query whose threshold is uncertain: three equally likely thresholds around
/// `threshold` (the shape of a posterior mixture).
fn mixture(threshold: f64, width: f64, ceiling: f64) -> Mixture {
    Mixture::new([0.5, 1.0, 2.0].map(|scale| (1.0, surge(threshold * scale, width, ceiling))))
        .unwrap()
}

/// A triangular-ablation curve: nothing up to the threshold, then linear up to the
/// ceiling over `width` tokens, flat after.
fn ramp(threshold: f64, width: f64, ceiling: f64) -> PiecewiseLinear {
    PiecewiseLinear::new([(0.0, 0.0), (threshold, 0.0), (threshold + width, ceiling)]).unwrap()
}

/// Three classes of each kind: easy, medium, hard (the paper's Figure-1 fits).
const CLASSES: [(f64, f64, f64); 3] = [
    (151.0, 101.0, 0.95),
    (142.0, 218.0, 0.75),
    (304.0, 280.0, 0.35),
];

/// Runs `ops` against a fresh allocator of curve type `C` (see `check_books`).
fn run_ops<C: Curve>(
    curves: &[C],
    budget: u64,
    initial_price: f64,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let online = allocator::<C>(budget, CAP, initial_price);
    check_books(&online, curves, budget, CAP, ops)
}

proptest! {
    #![proptest_config(soak_support::config(48, 0xc1ea0009))]

    #[test]
    fn no_window_grants_more_than_its_budget_for_any_curve_type(
        budget in 200u64..20_000,
        initial_price in prop_oneof![Just(0.0), 1e-6f64..1e-3],
        ops in proptest::collection::vec(op(9), 1..150),
    ) {
        let mixtures: Vec<Mixture> = CLASSES.iter().map(|&(t, w, p)| mixture(t, w, p)).collect();
        let ramps: Vec<PiecewiseLinear> = CLASSES.iter().map(|&(t, w, p)| ramp(t, w, p)).collect();
        // All three kinds in one stream: classes 0–2 mixtures, 3–5 ramps, 6–8 surges.
        let any: Vec<AnyCurve> = mixtures
            .iter()
            .cloned()
            .map(AnyCurve::from)
            .chain(ramps.iter().cloned().map(AnyCurve::from))
            .chain(CLASSES.iter().map(|&(t, w, p)| AnyCurve::from(surge(t, w, p))))
            .collect();
        run_ops(&mixtures, budget, initial_price, &ops)?;
        run_ops(&ramps, budget, initial_price, &ops)?;
        run_ops(&any, budget, initial_price, &ops)?;
    }
}

soak_properties!(no_window_grants_more_than_its_budget_for_any_curve_type);

/// One window of `arrivals` identical mixtures, none refunded, then the window ends.
fn window_of<C: Curve>(online: &OnlineAllocator<C>, query: &Query<C>, arrivals: usize) -> u64 {
    (0..arrivals)
        .map(|_| online.admit(query).unwrap().tokens())
        .sum()
}

#[test]
fn a_class_of_identical_mixtures_is_priced_where_the_batch_allocator_prices_it() {
    // 1 000 arrivals per window of one mixture, 600 tokens each on average: the
    // price falls on the smooth part of demand (every request buys more than its
    // tangent point), where one price gives each request the same grant.
    let query = Query::new(mixture(200.0, 100.0, 0.9)).with_cap(CAP);
    let (arrivals, budget) = (1_000, 600_000);
    let batch = Allocator::builder()
        .default_cap(CAP)
        .tolerance(1e-7)
        .build()
        .unwrap()
        .allocate(&vec![query.clone(); arrivals], budget)
        .unwrap();
    let batch_price = batch.price().unwrap();

    let online = OnlineAllocatorBuilder::<Mixture>::new()
        .tokens_per_window(budget)
        .default_cap(CAP)
        .samples_per_window(64)
        .history_windows(2)
        .build()
        .unwrap();
    // Window 0 admits at price 0 (every request takes its cap until the budget runs
    // out); its sample, 64 copies of the one curve standing for 1 000 arrivals, is
    // the batch's market exactly, so the next price is the batch's.
    window_of(&online, &query, arrivals);
    let first = online.end_window();
    // Both prices clear the same demand, 1 000 · b(λ): the online search stops within
    // 1e-6 (relative) above the lowest feasible price, the batch search within 1e-7
    // of the budget, which moves λ by that over the demand's elasticity (|d ln D /
    // d ln λ| ≥ 0.1 for a surge mixture well above its threshold); 1e-4 covers both.
    let relative = |price: f64| (price - batch_price).abs() / batch_price;
    assert!(
        relative(first.next_price) < 1e-4,
        "{} vs {batch_price}",
        first.next_price
    );
    // And it stays there: each later window spends the budget to within one grant
    // (whole tokens) and re-clears the same price.
    let grant = query
        .curve()
        .best_response(first.next_price, CAP as f64)
        .unwrap();
    for _ in 0..3 {
        let spent = window_of(&online, &query, arrivals);
        let report = online.end_window();
        assert!(spent <= budget && spent as f64 >= budget as f64 - grant - arrivals as f64);
        assert!(
            relative(report.next_price) < 1e-4,
            "{} vs {batch_price}",
            report.next_price
        );
    }
    // A sanity check on the market itself: at the batch price each request's best
    // response is about its share of the budget.
    let share = query
        .curve()
        .best_response(batch_price, CAP as f64)
        .unwrap();
    assert!((share - 600.0).abs() < 1.0, "best response {share}");
}

#[test]
fn a_piecewise_linear_class_rations_at_its_jump_without_overspending() {
    // A ramp's best response is all or nothing: its whole ramp below the slope, 0
    // above. Demand is one jump, and the price just below it lets requests buy in
    // arrival order until the window runs out.
    let query = Query::new(ramp(100.0, 300.0, 0.9)).with_cap(CAP);
    let online = OnlineAllocatorBuilder::<PiecewiseLinear>::new()
        .tokens_per_window(40_000)
        .default_cap(CAP)
        .build()
        .unwrap();
    for _ in 0..4 {
        let spent = window_of(&online, &query, 200);
        let report = online.end_window();
        assert!(report.charged <= 40_000 && spent == report.charged);
    }
    // Once priced, every funded request gets its whole ramp (400 tokens): 100 of the
    // 200 fit, the rest are abandoned.
    let tickets: Vec<u64> = (0..200)
        .map(|_| online.admit(&query).unwrap().tokens())
        .collect();
    assert!(tickets.iter().all(|&t| t == 400 || t == 0), "{tickets:?}");
    assert_eq!(tickets.iter().sum::<u64>(), 40_000);
}

/// A replica's sampled arrival as published: the arrival, its replica's arrivals in
/// the window and its replica's sample length.
type Published = (SampledQuery<Mixture>, u64, usize);

/// A fleet ledger in memory for mixture queries: one budget per window leased in
/// chunks, and each window's published samples merged into one price.
#[derive(Debug, Default)]
struct MixtureFleet {
    chunk: u64,
    left: Mutex<HashMap<u64, u64>>,
    published: Mutex<HashMap<u64, Vec<Published>>>,
}

impl MixtureFleet {
    fn take(&self, window: u64, budget: Option<u64>, wanted: u64) -> Lease {
        let mut left = self.left.lock().unwrap();
        let left = left.entry(window).or_insert(budget.unwrap_or(0));
        let tokens = wanted.max(self.chunk).min(*left);
        *left -= tokens;
        Lease {
            tokens,
            refill_below: self.chunk / 2,
        }
    }
}

impl BudgetLedger<Mixture> for MixtureFleet {
    fn open(&self, window: u64, budget: u64) -> Lease {
        self.take(window, Some(budget), 0)
    }

    fn extend(&self, window: u64, needed: u64) -> Lease {
        self.take(window, None, needed)
    }

    fn release(&self, window: u64, unused: u64) {
        *self.left.lock().unwrap().entry(window).or_insert(0) += unused;
    }

    fn next_price(&self, closed: &ClosedWindow<'_, Mixture>) -> f64 {
        let mut published = self.published.lock().unwrap();
        let mine = published.entry(closed.window()).or_default();
        let len = closed.sample().len();
        mine.extend(
            closed
                .sample()
                .iter()
                .map(|q| (q.clone(), closed.arrivals(), len)),
        );
        let merged: Vec<(SampledQuery<Mixture>, f64)> = mine
            .iter()
            .map(|(q, arrivals, len)| (q.clone(), *arrivals as f64 / *len as f64))
            .collect();
        closed.clear(&merged)
    }
}

#[test]
fn a_fleet_of_mixture_allocators_shares_one_budget_and_one_price() {
    let ledger = Arc::new(MixtureFleet {
        chunk: 5_000,
        ..MixtureFleet::default()
    });
    let replica = || {
        OnlineAllocatorBuilder::<Mixture>::new()
            .tokens_per_window(300_000)
            .default_cap(CAP)
            .history_windows(1)
            .refund_aware(false)
            .samples_per_window(600)
            .ledger(ledger.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (replica(), replica());
    let queries: Vec<Query<Mixture>> = CLASSES
        .iter()
        .map(|&(t, w, p)| Query::new(mixture(t, w, p)))
        .collect();
    // 600 arrivals per replica at price 0: far more than the budget wants.
    let mut spent = 0;
    for i in 0..600 {
        spent += a.admit(&queries[i % 3]).unwrap().tokens();
        spent += b.admit(&queries[(i + 1) % 3]).unwrap().tokens();
    }
    assert!(spent <= 300_000, "the fleet spent {spent}");
    let charged = a.end_window().charged;
    let fleet = b.end_window();
    assert_eq!(charged + fleet.charged, spent);
    // B's price cleared both replicas' samples: the demand of 1 200 requests, 400
    // of each class, as one allocator that saw them all prices it.
    let alone = OnlineAllocatorBuilder::<Mixture>::new()
        .tokens_per_window(300_000)
        .default_cap(CAP)
        .history_windows(1)
        .refund_aware(false)
        .samples_per_window(1_200)
        .build()
        .unwrap();
    for i in 0..1_200 {
        let _ = alone.admit(&queries[i % 3]).unwrap();
    }
    let single = alone.end_window().next_price;
    assert!(single > 0.0);
    assert!(
        (fleet.next_price - single).abs() <= 3e-6 * single,
        "fleet {} vs one allocator {single}",
        fleet.next_price
    );
}
