//! Acceptance tests on the simulated traffic streams (SPEC §6), through the public
//! API.

use clear_alloc::{AllocationPolicy, Allocator};
use clear_alloc_eval::baselines::Uniform;
use clear_alloc_eval::sim::{evaluate, Evaluation, Method, Mix, Stream, StreamConfig, Sweep};
use proptest::prelude::*;

/// The budgets of the example's sweep.
const SWEEP: [u64; 11] = [100, 150, 200, 300, 400, 500, 700, 1000, 1500, 2000, 3000];

fn stream(mix: Mix, queries: usize, sigma: f64) -> Stream {
    StreamConfig::new(mix)
        .queries(queries)
        .threshold_noise(sigma)
        .seed(2026)
        .generate()
        .unwrap()
}

fn of(rows: &[Evaluation], method: Method, budget: u64) -> &Evaluation {
    rows.iter()
        .find(|r| r.method == method.name() && r.tokens_per_query == budget)
        .unwrap()
}

fn largest_ceiling(stream: &Stream) -> f64 {
    stream
        .truth()
        .iter()
        .map(|q| q.curve().ceiling())
        .fold(0.0, f64::max)
}

/// With exact thresholds, CLEAR at least doubles uniform's expected accuracy at 200
/// tokens per query wherever hard problems are common (the paper reports 2.5–4× at
/// 300 tokens per query).
#[test]
fn clear_doubles_uniform_when_budgets_are_scarce() {
    for mix in [Mix::Balanced, Mix::MostlyHard, Mix::UShaped] {
        let s = stream(mix, 500, 0.0);
        let clear = evaluate(
            &Allocator::builder().default_cap(4096).build().unwrap(),
            &s,
            200,
        )
        .unwrap();
        let uniform = evaluate(&Uniform::default(), &s, 200).unwrap();
        eprintln!(
            "{:<10} 200 tok/q: CLEAR {:.4}, uniform {:.4}, ratio {:.2}",
            mix.name(),
            clear.expected_accuracy,
            uniform.expected_accuracy,
            clear.expected_accuracy / uniform.expected_accuracy
        );
        assert!(clear.expected_accuracy >= 2.0 * uniform.expected_accuracy);
    }
}

/// On 100-query streams, with CLEAR on the DP's 50-token grid: the exact optimum is
/// never beaten (every method here allocates on its grid, and it is the best grid
/// allocation — a method above it would be a DP bug), and CLEAR is within 1 % of it at
/// every budget of the sweep. Measured on the curves the methods are given (`planned`)
/// so that the check also holds with noisy predictions.
#[test]
fn clear_is_within_one_percent_of_the_exact_optimum() {
    // The oracle plans on the true curves: another objective once σ > 0.
    let methods: Vec<Method> = Method::ALL
        .into_iter()
        .filter(|&m| m != Method::Oracle)
        .collect();
    let sweep = Sweep::new(SWEEP.to_vec())
        .unwrap()
        .methods(&methods)
        .granularity(50)
        .unwrap()
        .greedy_step(50)
        .unwrap()
        .exact_grid(50)
        .unwrap();
    for (mix, sigma) in [
        (Mix::Balanced, 0.0),
        (Mix::MostlyEasy, 0.0),
        (Mix::MostlyHard, 0.0),
        (Mix::UShaped, 0.0),
        (Mix::Balanced, 0.5),
    ] {
        let rows = sweep.run(&stream(mix, 100, sigma)).unwrap();
        for budget in SWEEP {
            let best = of(&rows, Method::Exact, budget).planned_accuracy;
            for &method in &methods {
                let u = of(&rows, method, budget).planned_accuracy;
                assert!(
                    u <= best + 1e-12,
                    "{} σ={sigma} {budget}: {} {u} beats the DP {best}",
                    mix.name(),
                    method.name()
                );
            }
            let clear = of(&rows, Method::Clear, budget).planned_accuracy;
            assert!(
                clear >= 0.99 * best,
                "{} σ={sigma} {budget}: CLEAR {clear} < 99 % of {best}",
                mix.name()
            );
        }
    }
}

/// With budgets of 2000 tokens per query and more, most queries can be funded near
/// saturation: CLEAR may lose at most one query's worth (its largest ceiling, SPEC
/// §4's bound) against uniform, with exact or noisy thresholds.
#[test]
fn ample_budgets_cost_clear_at_most_one_query() {
    for sigma in [0.0, 0.5] {
        for mix in Mix::ALL {
            let s = stream(mix, 500, sigma);
            let one_query = largest_ceiling(&s) / s.len() as f64;
            let rows = Sweep::new(vec![2000, 3000, 4096])
                .unwrap()
                .methods(&[Method::Uniform, Method::Clear])
                .run(&s)
                .unwrap();
            for budget in [2000, 3000, 4096] {
                let clear = of(&rows, Method::Clear, budget).expected_accuracy;
                let uniform = of(&rows, Method::Uniform, budget).expected_accuracy;
                assert!(
                    clear >= uniform - one_query,
                    "{} σ={sigma} {budget}: CLEAR {clear} < uniform {uniform} − {one_query}",
                    mix.name()
                );
            }
        }
    }
}

/// A threshold-noise sweep (σ = 0, 0.25, 0.5, 1.0). Printed as a table; the
/// checks say what "graceful" means:
/// - no noise level lifts CLEAR above its σ = 0 accuracy by more than one query's
///   worth (σ = 0 is the oracle, itself within one query of the optimum);
/// - CLEAR loses at most a fifth of its σ = 0 accuracy even at σ = 1 (thresholds off
///   by a factor e^±1 for a third of the queries);
/// - and at scarce budgets (≤ 500 tokens per query) it stays above uniform, which
///   ignores the predictions.
#[test]
fn noise_degrades_clear_gracefully() {
    let sigmas = [0.0, 0.25, 0.5, 1.0];
    let budgets = vec![200, 500, 1000];
    eprintln!("stream      tok/q  uniform  CLEAR σ=0   0.25    0.5    1.0");
    for mix in Mix::ALL {
        let sweeps: Vec<Vec<Evaluation>> = sigmas
            .iter()
            .map(|&sigma| {
                Sweep::new(budgets.clone())
                    .unwrap()
                    .methods(&[Method::Uniform, Method::Clear])
                    .run(&stream(mix, 500, sigma))
                    .unwrap()
            })
            .collect();
        let one_query = largest_ceiling(&stream(mix, 500, 0.0)) / 500.0;
        for &budget in &budgets {
            let uniform = of(&sweeps[0], Method::Uniform, budget).expected_accuracy;
            let clear: Vec<f64> = sweeps
                .iter()
                .map(|rows| of(rows, Method::Clear, budget).expected_accuracy)
                .collect();
            eprintln!(
                "{:<11} {budget:>5} {:>8.4} {:>10.4} {:>6.4} {:>6.4} {:>6.4}",
                mix.name(),
                uniform,
                clear[0],
                clear[1],
                clear[2],
                clear[3]
            );
            for &c in &clear[1..] {
                assert!(c <= clear[0] + one_query, "{} {budget}", mix.name());
            }
            assert!(clear[3] >= 0.8 * clear[0], "{} {budget}", mix.name());
            if budget <= 500 {
                assert!(clear[3] > uniform, "{} {budget}", mix.name());
            }
        }
    }
}

/// Same seed, same stream; another seed, another stream.
#[test]
fn streams_are_reproducible() {
    let a = stream(Mix::UShaped, 200, 0.5);
    let b = stream(Mix::UShaped, 200, 0.5);
    assert_eq!(a, b);
    let c = StreamConfig::new(Mix::UShaped)
        .queries(200)
        .threshold_noise(0.5)
        .seed(1)
        .generate()
        .unwrap();
    assert_ne!(a.truth(), c.truth());
}

/// One Bernoulli draw per query: the sampled accuracy is a sum of independent
/// indicators with mean `Σ pᵢ`, so it lies within 4 standard deviations
/// `√(Σ pᵢ(1 − pᵢ))` of the expected accuracy.
#[test]
fn sampled_accuracy_agrees_with_the_expectation() {
    for mix in Mix::ALL {
        let s = stream(mix, 500, 0.25);
        for budget in [200, 700, 3000] {
            let clear = Allocator::builder().default_cap(4096).build().unwrap();
            let e = evaluate(&clear, &s, budget).unwrap();
            let a = clear
                .allocate(s.predicted(), budget * s.len() as u64)
                .unwrap();
            let variance: f64 = s
                .truth()
                .iter()
                .zip(a.tokens())
                .map(|(q, t)| q.curve().utility(t as f64))
                .map(|p| p * (1.0 - p))
                .sum();
            let sd = variance.sqrt() / s.len() as f64;
            assert!(
                (e.sampled_accuracy - e.expected_accuracy).abs() <= 4.0 * sd + 1e-12,
                "{} {budget}: sampled {} expected {} sd {sd}",
                mix.name(),
                e.sampled_accuracy,
                e.expected_accuracy
            );
        }
    }
}

proptest! {
    // A fixed seed keeps CI deterministic.
    #![proptest_config(ProptestConfig {
        rng_seed: proptest::test_runner::RngSeed::Fixed(0xc1ea0003),
        ..ProptestConfig::with_cases(24)
    })]

    /// Every evaluation reports shares in [0, 1] and spends within its budget, for any
    /// stream, noise level and budget.
    #[test]
    fn evaluations_are_well_formed(
        mix in prop::sample::select(Mix::ALL.to_vec()),
        queries in 1usize..60,
        sigma in 0.0..1.5f64,
        seed in any::<u64>(),
        budget in 0u64..3000,
    ) {
        let s = StreamConfig::new(mix).queries(queries).threshold_noise(sigma).seed(seed).generate().unwrap();
        let rows = Sweep::new(vec![budget]).unwrap().methods(&Method::HEURISTICS).run(&s).unwrap();
        prop_assert_eq!(rows.len(), Method::HEURISTICS.len());
        for r in rows {
            prop_assert!(r.spent_per_query <= budget as f64, "{}", r.method);
            for share in [r.expected_accuracy, r.sampled_accuracy, r.abandonment_rate, r.planned_accuracy] {
                prop_assert!((0.0..=1.0).contains(&share), "{} {share}", r.method);
            }
        }
    }
}

/// The Oracle and CLEAR coincide when the predictions are exact.
#[test]
fn oracle_is_clear_without_noise() {
    let s = stream(Mix::Balanced, 300, 0.0);
    let rows = Sweep::new(vec![150, 600])
        .unwrap()
        .methods(&[Method::Clear, Method::Oracle])
        .run(&s)
        .unwrap();
    for budget in [150, 600] {
        let clear = of(&rows, Method::Clear, budget);
        let oracle = of(&rows, Method::Oracle, budget);
        assert_eq!(clear.expected_accuracy, oracle.expected_accuracy);
        assert_eq!(clear.spent_per_query, oracle.spent_per_query);
    }
    assert_eq!(Allocator::default().name(), Method::Clear.name());
}
