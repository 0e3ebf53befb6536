//! Cold start: curves learned online from completions against a server that knows
//! the true curves (see `clear_alloc_eval::cold_start`). Prints accuracy per window with
//! and without correctness feedback and writes an SVG.
//!
//! `cargo run --release -p clear-alloc-eval --example cold_start [out.svg [tokens_per_query [arrivals_per_window]]]`
//! (default `crates/clear-alloc-eval/figures/cold_start.svg`).

use clear_alloc_eval::cold_start::{settled_from, ColdStart, WindowAccuracy};
use plotters::prelude::*;
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "crates/clear-alloc-eval/figures/cold_start.svg".into());
    let tokens: u64 = std::env::args().nth(2).map_or(Ok(160), |t| t.parse())?;
    let arrivals: usize = std::env::args().nth(3).map_or(Ok(600), |t| t.parse())?;
    let config = ColdStart::default()
        .tokens_per_query(tokens)
        .arrivals_per_window(arrivals);
    let with = config.clone().feedback(true).run()?;
    let without = config.clone().feedback(false).run()?;
    let frozen = config.clone().learning(false).run()?;
    let mean = |rows: &[WindowAccuracy]| {
        rows.iter().map(WindowAccuracy::ratio).sum::<f64>() / rows.len() as f64
    };
    println!(
        "{tokens} tokens/query, {arrivals} arrivals/window; mean ratio to the reference: feedback {:.3}, lengths only {:.3}, priors never updated {:.3}",
        mean(&with),
        mean(&without),
        mean(&frozen)
    );
    println!(
        "| window | reference | learned (feedback) | ratio | learned (lengths only) | ratio | priors only | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for ((a, b), c) in with.iter().zip(&without).zip(&frozen) {
        if a.window < 10 || a.window % 5 == 4 {
            println!(
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                a.window,
                a.reference,
                a.learned,
                a.ratio(),
                b.learned,
                b.ratio(),
                c.learned,
                c.ratio()
            );
        }
    }
    for (name, rows) in [("feedback", &with), ("lengths only", &without)] {
        let settled = settled_from(rows, 0.95);
        let worst_after_20 = rows[20.min(rows.len() - 1)..]
            .iter()
            .map(WindowAccuracy::ratio)
            .fold(f64::INFINITY, f64::min);
        println!(
            "{name}: at >= 95 % of the reference in every window from window {settled}; worst ratio from window 20: {worst_after_20:.3}"
        );
    }
    let label = format!("window ({arrivals} arrivals, {tokens} tokens per query)");
    plot(&out, &label, &with, &without, &frozen)?;
    println!("wrote {out}");
    Ok(())
}

/// One line of the chart: its name, its points and its colour.
type Line<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

fn plot(
    path: &str,
    x_desc: &str,
    with: &[WindowAccuracy],
    without: &[WindowAccuracy],
    frozen: &[WindowAccuracy],
) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, (960, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let y_max = with
        .iter()
        .chain(without)
        .flat_map(|r| [r.learned, r.reference])
        .fold(0.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Cold start: accuracy per window, learned curves vs true curves",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..with.len() as f64, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("expected accuracy")
        .draw()?;
    let series: [Line; 4] = [
        (
            "reference (true curves)",
            with.iter()
                .map(|r| (r.window as f64, r.reference))
                .collect(),
            BLACK,
        ),
        (
            "learned, correctness feedback",
            with.iter().map(|r| (r.window as f64, r.learned)).collect(),
            BLUE,
        ),
        (
            "learned, lengths only",
            without
                .iter()
                .map(|r| (r.window as f64, r.learned))
                .collect(),
            RED,
        ),
        (
            "priors only (never updated)",
            frozen
                .iter()
                .map(|r| (r.window as f64, r.learned))
                .collect(),
            RGBColor(150, 150, 150),
        ),
    ];
    for (name, points, color) in series {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
