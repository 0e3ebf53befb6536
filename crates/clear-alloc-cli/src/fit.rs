//! `clear-alloc fit`: fits shifted-surge curves to sampled rollouts and prints them as
//! the `queries` array of the JSON that `clear-alloc allocate` reads:
//!
//! ```text
//! clear-alloc fit rollouts.csv | clear-alloc allocate --budget 20000
//! ```
//!
//! Input: CSV with the header `query_id,tokens,correct,truncated`, or JSON lines with
//! the same fields (a file ending in `.jsonl`); `-` or no argument reads CSV from
//! stdin. Options: `--sampling-cap N` (tokens; rollouts longer are rejected),
//! `--min-correct K` (correct rollouts needed to fit a width alone; fewer falls back to
//! a width shared across the file), `--report` (a fit summary per query on stderr).

use std::io::Read;

use clear_alloc::fit::{read_rollouts_csv, read_rollouts_jsonl, RolloutFit};
use clear_alloc_cli::wire::QuerySpec;

/// Runs the subcommand with the arguments after `fit`.
pub fn run(mut args: impl Iterator<Item = String>) -> Result<(), String> {
    let mut path = None;
    let mut builder = RolloutFit::builder();
    let mut report = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let text = args.next().ok_or(format!("{name} needs a value"))?;
            text.parse()
                .map_err(|_| format!("{name}: {text:?} is not a whole number"))
        };
        match arg.as_str() {
            "--sampling-cap" => builder = builder.sampling_cap(value("--sampling-cap")?),
            "--min-correct" => builder = builder.min_correct(value("--min-correct")? as usize),
            "--report" => report = true,
            "-h" | "--help" => {
                println!("usage: clear-alloc fit [--sampling-cap N] [--min-correct K] [--report] [FILE.csv|FILE.jsonl|-]");
                return Ok(());
            }
            _ if path.is_none() => path = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let options = builder.build().map_err(|e| e.to_string())?;
    let mut input = Vec::new();
    let jsonl = path.as_deref().is_some_and(|p| p.ends_with(".jsonl"));
    match path.as_deref() {
        None | Some("-") => std::io::stdin()
            .read_to_end(&mut input)
            .map_err(|e| format!("stdin: {e}"))?,
        Some(p) => {
            input = std::fs::read(p).map_err(|e| format!("{p}: {e}"))?;
            input.len()
        }
    };
    let queries = if jsonl {
        read_rollouts_jsonl(input.as_slice())
    } else {
        read_rollouts_csv(input.as_slice())
    }
    .map_err(|e| format!("{}: {e}", path.as_deref().unwrap_or("stdin")))?;
    let fits = options.fit_many(&queries).map_err(|e| e.to_string())?;
    if report {
        for fit in &fits {
            eprintln!(
                "{:>12}  tau {:>8.1}  width {:>8.1}  ceiling {:.3}  n {:>4}  correct {:>4}  truncated {:>4}  KS {}  loglik {:.2}  {:?}",
                fit.id,
                fit.curve.threshold(),
                fit.curve.width(),
                fit.curve.ceiling(),
                fit.counts.rollouts,
                fit.counts.correct,
                fit.counts.truncated,
                fit.ks_distance.map_or("-".into(), |d| format!("{d:.3}")),
                fit.log_likelihood,
                fit.method,
            );
        }
    }
    #[derive(serde::Serialize)]
    struct Output {
        queries: Vec<QuerySpec>,
    }
    let output = Output {
        queries: fits.iter().map(QuerySpec::from).collect(),
    };
    let json = serde_json::to_string_pretty(&output).map_err(|e| e.to_string())?;
    println!("{json}");
    Ok(())
}
