//! The noise sweep (issue 9, SPEC §7): CLEAR on noisy threshold predictions taken at
//! face value (point), shrunk to the posterior median, or integrated over the
//! posterior mixture, against the oracle; four streams, σ = 0, 0.25, 0.5, 1, budgets
//! 100–1000 tokens per query, accuracies averaged over 5 seeds of 500 queries.
//!
//! `cargo run --release -p clear-alloc-eval --example noise_sweep [prior_spread]`
//! (default: the pools' own spread, 0.4).

use clear_alloc_eval::noise::{NoiseRow, NoiseSweep};
use clear_alloc_eval::sim::Mix;
use std::error::Error;

const SIGMAS: [f64; 4] = [0.0, 0.25, 0.5, 1.0];
const SEEDS: u64 = 5;

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{:.0} %", 100.0 * x))
}

fn main() -> Result<(), Box<dyn Error>> {
    // An optional prior spread σ₀ other than the pools' 0.4 (a misspecified prior).
    let prior_spread: Option<f64> = std::env::args().nth(1).map(|s| s.parse()).transpose()?;
    if let Some(s) = prior_spread {
        println!("prior spread σ₀ = {s} (the streams draw thresholds with 0.4)");
    }
    let budgets: Vec<u64> = (1..=10).map(|k| 100 * k).collect();
    let mut summary = Vec::new();
    for mix in Mix::ALL {
        println!(
            "\n{} (accuracy %, mean of {SEEDS} seeds × 500 queries)",
            mix.name()
        );
        println!("| σ | tokens/query | point | shrunk | mixture | no-prior mixture | oracle | shrunk closes | mixture closes |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for sigma in SIGMAS {
            let runs = (0..SEEDS)
                .map(|seed| {
                    let sweep = NoiseSweep::new(mix).seed(seed);
                    match prior_spread {
                        Some(s) => sweep.prior_spread(s),
                        None => sweep,
                    }
                    .run(sigma, &budgets)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let rows: Vec<NoiseRow> = (0..budgets.len())
                .map(|i| NoiseRow::mean(&runs.iter().map(|r| r[i]).collect::<Vec<_>>()))
                .collect();
            for r in &rows {
                println!(
                    "| {sigma} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
                    r.tokens_per_query,
                    100.0 * r.point,
                    100.0 * r.shrunk,
                    100.0 * r.mixture,
                    100.0 * r.naive,
                    100.0 * r.oracle,
                    pct(r.gap_closed(r.shrunk)),
                    pct(r.gap_closed(r.mixture)),
                );
            }
            summary.push((mix, sigma, rows));
        }
    }
    println!("\nSummary: share of the point-to-oracle gap closed (range over budgets), and the least gain over point allocation of either posterior method, any budget (points)");
    println!("| stream | σ | shrunk 200–500 | mixture 200–500 | shrunk 100–1000 | mixture 100–1000 | least gain over point | no-prior mixture vs point |");
    println!("|---|---|---|---|---|---|---|---|");
    for (mix, sigma, rows) in &summary {
        if *sigma == 0.0 {
            continue;
        }
        let range = |lo: u64, hi: u64, f: fn(&NoiseRow) -> f64| {
            let closed: Vec<f64> = rows
                .iter()
                .filter(|r| (lo..=hi).contains(&r.tokens_per_query))
                .filter_map(|r| r.gap_closed(f(r)))
                .collect();
            let min = closed.iter().copied().fold(f64::INFINITY, f64::min);
            let max = closed.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if closed.is_empty() {
                "–".to_string()
            } else {
                format!("{:.0}–{:.0} %", 100.0 * min, 100.0 * max)
            }
        };
        let worst = rows
            .iter()
            .flat_map(|r| [r.shrunk - r.point, r.mixture - r.point])
            .fold(f64::INFINITY, f64::min);
        let naive_lo = rows
            .iter()
            .map(|r| r.naive - r.point)
            .fold(f64::INFINITY, f64::min);
        let naive_hi = rows
            .iter()
            .map(|r| r.naive - r.point)
            .fold(f64::NEG_INFINITY, f64::max);
        println!(
            "| {} | {sigma} | {} | {} | {} | {} | {:+.2} | {:+.2} to {:+.2} |",
            mix.name(),
            range(200, 500, |r| r.shrunk),
            range(200, 500, |r| r.mixture),
            range(100, 1000, |r| r.shrunk),
            range(100, 1000, |r| r.mixture),
            100.0 * worst,
            100.0 * naive_lo,
            100.0 * naive_hi
        );
    }
    Ok(())
}
