//! The paper's cost–accuracy comparison (Wan et al., ICML 2026, §7; SPEC §6), on the
//! crate's simulated traffic streams: every method at budgets from 100 to 3000 tokens
//! per query on the four 500-query streams.
//!
//! ```text
//! cargo run --release --example pareto [-- --out DIR] [--pooled-shape]
//! ```
//!
//! Writes `DIR/pareto.csv` (every evaluation) and `DIR/pareto.svg` (accuracy against
//! tokens per query, one panel per stream, and the abandonment rate below), and prints
//! three tables: CLEAR against uniform, CLEAR against the exact optimum (both on a
//! 50-token grid), and CLEAR's accuracy as the threshold predictor gets noisier.
//! `DIR` defaults to this crate's `figures` folder.

use std::error::Error;
use std::path::PathBuf;

use clear_alloc_eval::sim::{Evaluation, Method, Mix, Stream, StreamConfig, Sweep};
use plotters::prelude::*;

/// Budgets of the main sweep, tokens per query.
const BUDGETS: [u64; 11] = [100, 150, 200, 300, 400, 500, 700, 1000, 1500, 2000, 3000];
/// Grid of the exact optimum, and the granularity CLEAR gets when compared with it.
const GRID: u64 = 50;
/// Threshold-noise levels of the robustness table.
const SIGMAS: [f64; 4] = [0.0, 0.25, 0.5, 1.0];
/// The noise level of the "realistic predictor" curve in the figure.
const FIGURE_SIGMA: f64 = 0.5;
/// Budgets of the robustness table (the noise sweep itself covers all of `BUDGETS`).
const NOISE_BUDGETS: [u64; 3] = [200, 500, 1000];
const SEED: u64 = 2026;

struct Options {
    out: PathBuf,
    pooled_shape: bool,
}

fn options() -> Result<Options, Box<dyn Error>> {
    let mut options = Options {
        out: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/figures")),
        pooled_shape: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => options.out = args.next().ok_or("--out needs a directory")?.into(),
            "--pooled-shape" => options.pooled_shape = true,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok(options)
}

fn stream(mix: Mix, sigma: f64, pooled_shape: bool) -> clear_alloc::Result<Stream> {
    StreamConfig::new(mix)
        .seed(SEED)
        .threshold_noise(sigma)
        .pooled_shape(pooled_shape)
        .generate()
}

fn find<'a>(rows: &'a [Evaluation], method: &str, budget: u64) -> &'a Evaluation {
    rows.iter()
        .find(|r| r.method == method && r.tokens_per_query == budget)
        .expect("every method was run at every budget")
}

fn main() -> Result<(), Box<dyn Error>> {
    let options = options()?;
    std::fs::create_dir_all(&options.out)?;
    let started = std::time::Instant::now();

    let mut main_rows = Vec::new();
    let mut grid_rows = Vec::new();
    for mix in Mix::ALL {
        let stream = stream(mix, 0.0, options.pooled_shape)?;
        main_rows.extend(
            Sweep::new(BUDGETS.to_vec())?
                .methods(&Method::HEURISTICS)
                .run(&stream)?,
        );
        grid_rows.extend(
            Sweep::new(BUDGETS.to_vec())?
                .methods(&[Method::Uniform, Method::Clear, Method::Exact])
                .granularity(GRID)?
                .exact_grid(GRID)?
                .run(&stream)?,
        );
    }
    let mut noise_rows = Vec::new();
    for mix in Mix::ALL {
        for sigma in SIGMAS {
            let stream = stream(mix, sigma, options.pooled_shape)?;
            noise_rows.extend(
                Sweep::new(BUDGETS.to_vec())?
                    .methods(&[
                        Method::Uniform,
                        Method::Proportional,
                        Method::Clear,
                        Method::Oracle,
                    ])
                    .run(&stream)?,
            );
        }
    }

    write_csv(
        &options.out.join("pareto.csv"),
        &[
            ("main", &main_rows),
            ("grid50", &grid_rows),
            ("noise", &noise_rows),
        ],
    )?;
    let noisy_clear: Vec<Evaluation> = noise_rows
        .iter()
        .filter(|r| r.method == "CLEAR" && r.threshold_noise == FIGURE_SIGMA)
        .cloned()
        .collect();
    plot(
        &options.out.join("pareto.svg"),
        &main_rows,
        &grid_rows,
        &noisy_clear,
    )?;

    print_ratio_table(&main_rows);
    print_gap_table(&grid_rows);
    print_noise_table(&noise_rows);
    println!(
        "\nwrote {} and {} in {:.1} s",
        options.out.join("pareto.csv").display(),
        options.out.join("pareto.svg").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn write_csv(path: &PathBuf, parts: &[(&str, &Vec<Evaluation>)]) -> Result<(), Box<dyn Error>> {
    let mut out = csv::Writer::from_path(path)?;
    out.write_record([
        "sweep",
        "stream",
        "sigma",
        "method",
        "tokens_per_query",
        "spent_per_query",
        "expected_accuracy",
        "planned_accuracy",
        "sampled_accuracy",
        "abandonment_rate",
    ])?;
    for (sweep, rows) in parts {
        for r in rows.iter() {
            out.write_record([
                sweep.to_string(),
                r.mix.name().to_string(),
                r.threshold_noise.to_string(),
                r.method.clone(),
                r.tokens_per_query.to_string(),
                format!("{:.2}", r.spent_per_query),
                format!("{:.5}", r.expected_accuracy),
                format!("{:.5}", r.planned_accuracy),
                format!("{:.4}", r.sampled_accuracy),
                format!("{:.4}", r.abandonment_rate),
            ])?;
        }
    }
    out.flush()?;
    Ok(())
}

fn print_ratio_table(rows: &[Evaluation]) {
    println!("Expected accuracy (%) with exact thresholds (sigma = 0), 500 queries per stream");
    println!(
        "{:<11} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6}",
        "stream",
        "tok/q",
        "uniform",
        "prop.",
        "greedy",
        "no-aban",
        "CLEAR",
        "oracle",
        "x unif",
        "aband."
    );
    for mix in Mix::ALL {
        for budget in BUDGETS {
            let of = |m: &str| {
                rows.iter()
                    .find(|r| r.mix == mix && r.method == m && r.tokens_per_query == budget)
                    .expect("run")
            };
            let (u, c) = (of("uniform"), of("CLEAR"));
            println!(
                "{:<11} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>7.2} {:>5.0}%",
                mix.name(),
                budget,
                100.0 * u.expected_accuracy,
                100.0 * of("proportional").expected_accuracy,
                100.0 * of("greedy marginal").expected_accuracy,
                100.0 * of("CLEAR w/o abandonment").expected_accuracy,
                100.0 * c.expected_accuracy,
                100.0 * of("oracle").expected_accuracy,
                c.expected_accuracy / u.expected_accuracy,
                100.0 * c.abandonment_rate,
            );
        }
    }
}

fn print_gap_table(rows: &[Evaluation]) {
    println!(
        "\nCLEAR against the exact optimum, both on a {GRID}-token grid (expected accuracy %)"
    );
    println!(
        "{:<11} {:>6} {:>8} {:>8} {:>9}",
        "stream", "tok/q", "CLEAR", "exact", "gap (rel)"
    );
    for mix in Mix::ALL {
        let of_mix: Vec<Evaluation> = rows.iter().filter(|r| r.mix == mix).cloned().collect();
        for budget in BUDGETS {
            let c = find(&of_mix, "CLEAR", budget).planned_accuracy;
            let e = find(&of_mix, "exact DP", budget).planned_accuracy;
            println!(
                "{:<11} {:>6} {:>8.2} {:>8.2} {:>8.3}%",
                mix.name(),
                budget,
                100.0 * c,
                100.0 * e,
                100.0 * (e - c) / e
            );
        }
    }
}

fn print_noise_table(rows: &[Evaluation]) {
    println!("\nCLEAR's expected accuracy (%) as the threshold prediction gets noisier");
    print!(
        "{:<11} {:>6} {:>8} {:>8}",
        "stream", "tok/q", "uniform", "oracle"
    );
    for sigma in SIGMAS {
        print!(" {:>9}", format!("s={sigma}"));
    }
    println!(" {:>9}", "prop s=1");
    for mix in Mix::ALL {
        for budget in NOISE_BUDGETS {
            let of = |m: &str, sigma: f64| {
                rows.iter()
                    .find(|r| {
                        r.mix == mix
                            && r.method == m
                            && r.tokens_per_query == budget
                            && r.threshold_noise == sigma
                    })
                    .expect("run")
                    .expected_accuracy
            };
            print!(
                "{:<11} {:>6} {:>8.1} {:>8.1}",
                mix.name(),
                budget,
                100.0 * of("uniform", 0.0),
                100.0 * of("oracle", 0.0)
            );
            for sigma in SIGMAS {
                print!(" {:>9.1}", 100.0 * of("CLEAR", sigma));
            }
            println!(" {:>9.1}", 100.0 * of("proportional", 1.0));
        }
    }
}

/// Colour and label of each method in the figure.
fn style(method: &str) -> RGBColor {
    match method {
        "uniform" => RGBColor(120, 120, 120),
        "proportional" => RGBColor(230, 159, 0),
        "greedy marginal" => RGBColor(204, 121, 167),
        "CLEAR w/o abandonment" => RGBColor(86, 180, 233),
        "CLEAR" => RGBColor(0, 114, 178),
        "oracle" => RGBColor(0, 158, 115),
        _ => RGBColor(213, 94, 0),
    }
}

fn plot(
    path: &PathBuf,
    rows: &[Evaluation],
    grid_rows: &[Evaluation],
    noisy_clear: &[Evaluation],
) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, (1600, 820)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(540);
    let panels = top.split_evenly((1, 4));
    let lower = bottom.split_evenly((1, 4));
    for (i, mix) in Mix::ALL.into_iter().enumerate() {
        let of_mix = |rows: &[Evaluation], method: &str| -> Vec<(f64, f64, f64)> {
            rows.iter()
                .filter(|r| r.mix == mix && r.method == method)
                .map(|r| {
                    (
                        r.tokens_per_query as f64,
                        r.expected_accuracy,
                        r.abandonment_rate,
                    )
                })
                .collect()
        };
        // The exact optimum and the oracle thin, on top of CLEAR, which they match at
        // sigma = 0.
        let accuracy = |label: &str, colour, source: &[Evaluation], method: &str, width| Line {
            label: label.to_string(),
            colour,
            points: of_mix(source, method).iter().map(|p| (p.0, p.1)).collect(),
            width,
        };
        let mut lines: Vec<Line> = Method::HEURISTICS
            .iter()
            .map(|&m| {
                let width = if m == Method::Oracle { 1 } else { 2 };
                accuracy(m.name(), style(m.name()), rows, m.name(), width)
            })
            .collect();
        lines.push(accuracy(
            &format!("exact DP ({GRID}-token grid)"),
            style("exact DP"),
            grid_rows,
            "exact DP",
            1,
        ));
        lines.push(accuracy(
            &format!("CLEAR, noisy thresholds (sigma {FIGURE_SIGMA})"),
            BLACK,
            noisy_clear,
            "CLEAR",
            1,
        ));
        panel(
            &panels[i],
            Some(mix.name()),
            "expected accuracy",
            1.0,
            i == 0,
            SeriesLabelPosition::UpperLeft,
            &lines,
        )?;
        let abandonment: Vec<Line> = [
            ("CLEAR (= oracle at sigma 0)", "CLEAR", rows, 3),
            ("CLEAR w/o abandonment", "CLEAR w/o abandonment", rows, 2),
            ("exact DP", "exact DP", grid_rows, 1),
        ]
        .into_iter()
        .map(|(label, method, source, width)| Line {
            label: label.to_string(),
            colour: style(method),
            points: of_mix(source, method).iter().map(|p| (p.0, p.2)).collect(),
            width,
        })
        .collect();
        panel(
            &lower[i],
            None,
            "abandonment rate",
            1.0,
            i == 0,
            SeriesLabelPosition::UpperRight,
            &abandonment,
        )?;
    }
    root.present()?;
    Ok(())
}

/// One line of a panel.
struct Line {
    label: String,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
    width: u32,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// One panel: lines with points against tokens per query (log scale), a legend on the
/// first panel of a row.
fn panel(
    area: &Area,
    caption: Option<&str>,
    y_desc: &str,
    y_top: f64,
    legend: bool,
    legend_at: SeriesLabelPosition,
    lines: &[Line],
) -> Result<(), Box<dyn Error>> {
    let mut builder = ChartBuilder::on(area);
    if let Some(caption) = caption {
        builder.caption(caption, ("sans-serif", 22));
    }
    let mut chart = builder
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d((90f64..3300f64).log_scale(), 0f64..y_top)?;
    chart
        .configure_mesh()
        .x_desc("tokens per query")
        .y_desc(if legend { y_desc } else { "" })
        .x_labels(8)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{:.0}%", 100.0 * y))
        .draw()?;
    for line in lines {
        let colour = line.colour;
        let drawn = chart.draw_series(LineSeries::new(
            line.points.iter().copied(),
            colour.stroke_width(line.width),
        ))?;
        if legend {
            drawn.label(line.label.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        }
        chart.draw_series(
            line.points
                .iter()
                .map(|&p| Circle::new(p, 2, colour.filled())),
        )?;
    }
    if legend {
        chart
            .configure_series_labels()
            .position(legend_at)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()?;
    }
    Ok(())
}
