//! CLEAR and uniform at the paper's accuracy levels.
//!
//! ```text
//! cargo run --release -p clear-alloc-eval --example paper_levels
//! ```
//!
//! The streams' ceilings are assumptions (see `clear_alloc_eval::sim`), so their
//! accuracies sit far above the paper's. This program scales the ceilings so that
//! uniform matches the paper's uniform rows (SPEC §6) by least squares
//! (`clear_alloc_eval::calibrate`), three ways: one scale per stream, one scale per pool
//! shared by the four streams, and three scales per stream. It then runs CLEAR and
//! uniform on the calibrated streams (500 queries, seed 2026 as in `pareto`) at 100–1500
//! tokens per query and prints, as Markdown, their accuracies next to the paper's rows,
//! the abandonment rate where the paper gives it, and how far each calibration's CLEAR
//! lies from the paper's CLEAR row, which the calibration never saw.

use clear_alloc_eval::calibrate::{calibrate, Calibration, Target, Tie};
use clear_alloc_eval::paper::{PaperRows, BUDGETS};
use clear_alloc_eval::sim::{Evaluation, Method, Mix, StreamConfig, Sweep};

/// CLEAR's and uniform's rows on one calibrated stream.
struct Measured {
    uniform: Vec<Evaluation>,
    clear: Vec<Evaluation>,
}

fn measure(config: &StreamConfig) -> clear_alloc::Result<Measured> {
    let stream = config.generate()?;
    let rows = Sweep::new(BUDGETS.to_vec())?
        .methods(&[Method::Uniform, Method::Clear])
        .run(&stream)?;
    let (uniform, clear) = rows.chunks(2).map(|r| (r[0].clone(), r[1].clone())).unzip();
    Ok(Measured { uniform, clear })
}

/// Root mean square and largest absolute value of `ours − paper` (points), over the
/// budgets where the paper has a value.
fn deviation(ours: &[f64], paper: &[Option<f64>]) -> (f64, f64) {
    let d: Vec<f64> = ours
        .iter()
        .zip(paper)
        .filter_map(|(o, p)| p.map(|p| o - p))
        .collect();
    let rms = (d.iter().map(|x| x * x).sum::<f64>() / d.len() as f64).sqrt();
    (rms, d.iter().fold(0.0_f64, |m, x| m.max(x.abs())))
}

fn row(label: &str, cells: impl IntoIterator<Item = String>) {
    let cells: Vec<String> = cells.into_iter().collect();
    println!("| {label} | {} |", cells.join(" | "));
}

fn pct(values: &[f64]) -> Vec<String> {
    values.iter().map(|v| format!("{v:.1}")).collect()
}

fn opt(values: &[Option<f64>]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.map_or("–".into(), |v| format!("{v:.1}")))
        .collect()
}

fn scales(s: [f64; 3]) -> String {
    if s[0] == s[1] && s[1] == s[2] {
        format!("{:.3}", s[0])
    } else {
        format!("{:.3} / {:.3} / {:.3}", s[0], s[1], s[2])
    }
}

fn main() -> clear_alloc::Result<()> {
    let targets: Vec<Target> = Mix::ALL
        .iter()
        .map(|&mix| Target {
            config: StreamConfig::new(mix).seed(2026),
            uniform: PaperRows::of(mix).uniform_points(),
        })
        .collect();
    let ties = [
        ("one scale per stream", Tie::PerStream),
        ("one scale per pool, shared by the streams", Tie::PerPool),
        ("three scales per stream", Tie::PerStreamAndPool),
    ];
    let fits: Vec<Calibration> = ties
        .iter()
        .map(|&(_, tie)| calibrate(&targets, tie))
        .collect::<clear_alloc::Result<_>>()?;

    let header = BUDGETS.map(|b| b.to_string()).join(" | ");
    let rule = "---:|".repeat(BUDGETS.len());
    let mut summary = Vec::new();
    for ((name, _), fit) in ties.iter().zip(&fits) {
        println!("### Calibrated with {name}\n");
        println!(
            "Uniform's fit to the paper's uniform rows: RMS {:.2} points, largest {:.2} points.\n",
            100.0 * fit.rms,
            100.0 * fit.max_deviation
        );
        for config in &fit.configs {
            let mix = config.mix();
            let paper = PaperRows::of(mix);
            let measured = measure(config)?;
            let uniform: Vec<f64> = measured
                .uniform
                .iter()
                .map(|e| 100.0 * e.expected_accuracy)
                .collect();
            let clear: Vec<f64> = measured
                .clear
                .iter()
                .map(|e| 100.0 * e.expected_accuracy)
                .collect();
            let abandoned: Vec<f64> = measured
                .clear
                .iter()
                .map(|e| 100.0 * e.abandonment_rate)
                .collect();
            println!(
                "**{}**, ceiling scale (easy / medium / hard) {}: accuracy %, abandoned %\n",
                mix.name(),
                scales(config.ceiling_scales())
            );
            println!("| tokens/query | {header} |\n|---|{rule}");
            row("paper CLEAR (DABA)", pct(&paper.clear));
            row("CLEAR", pct(&clear));
            row("paper uniform", opt(&paper.uniform));
            row("uniform", pct(&uniform));
            if let Some(abandoned_paper) = paper.abandoned {
                row(
                    "paper abandoned",
                    abandoned_paper.map(|a| format!("{a:.0}")),
                );
            }
            row("abandoned", abandoned.iter().map(|a| format!("{a:.0}")));
            println!();
            summary.push((
                *name,
                mix,
                config.ceiling_scales(),
                deviation(&clear, &paper.clear.map(Some)),
                deviation(&uniform, &paper.uniform),
                paper.abandoned.map(|a| deviation(&abandoned, &a.map(Some))),
            ));
        }
    }

    println!("### Distance to the paper's rows (points: RMS / largest)\n");
    println!("| calibration | stream | scale(s) | CLEAR | uniform | abandoned |");
    println!("|---|---|---|---:|---:|---:|");
    for (name, mix, s, clear, uniform, abandoned) in summary {
        println!(
            "| {name} | {} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {} |",
            mix.name(),
            scales(s),
            clear.0,
            clear.1,
            uniform.0,
            uniform.1,
            abandoned.map_or("–".into(), |(r, m)| format!("{r:.1} / {m:.1}")),
        );
    }
    Ok(())
}
