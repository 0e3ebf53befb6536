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
//! a width shared across the file), `--report` (a fit summary per query on stderr),
//! `--max-input-bytes N` (default 256 MiB) and `--max-rollouts N` (default 10 000 000):
//! larger input is refused before it is fitted, and never read past the byte limit.

use clear_alloc::fit::{read_rollouts_csv, read_rollouts_jsonl, RolloutFit};
use clear_alloc_cli::input::{one_line, read_bounded};
use clear_alloc_cli::wire::QuerySpec;

use crate::Failure;

/// Default for `--max-input-bytes`: 256 MiB, some ten million rollouts as CSV.
const DEFAULT_MAX_INPUT_BYTES: u64 = 256 << 20;
/// Default for `--max-rollouts`.
const DEFAULT_MAX_ROLLOUTS: usize = 10_000_000;

/// Runs the subcommand with the arguments after `fit`; every message is one line.
pub fn run(args: impl Iterator<Item = String>) -> Result<(), Failure> {
    fit(args).map_err(|failure| match failure {
        Failure::Usage(message) => Failure::Usage(one_line(&message)),
        Failure::Input(message) => Failure::Input(one_line(&message)),
    })
}

fn fit(mut args: impl Iterator<Item = String>) -> Result<(), Failure> {
    let mut path = None;
    let mut builder = RolloutFit::builder();
    let mut report = false;
    let mut max_input_bytes = DEFAULT_MAX_INPUT_BYTES;
    let mut max_rollouts = DEFAULT_MAX_ROLLOUTS;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64, Failure> {
            let text = args
                .next()
                .ok_or(Failure::Usage(format!("{name} needs a value")))?;
            text.parse()
                .map_err(|_| Failure::Usage(format!("{name}: {text:?} is not a whole number")))
        };
        match arg.as_str() {
            "--sampling-cap" => builder = builder.sampling_cap(value("--sampling-cap")?),
            "--min-correct" => builder = builder.min_correct(value("--min-correct")? as usize),
            "--max-input-bytes" => max_input_bytes = value("--max-input-bytes")?,
            "--max-rollouts" => max_rollouts = value("--max-rollouts")? as usize,
            "--report" => report = true,
            "-h" | "--help" => {
                println!("usage: clear-alloc fit [--sampling-cap N] [--min-correct K] [--report] [--max-input-bytes N] [--max-rollouts N] [FILE.csv|FILE.jsonl|-]");
                return Ok(());
            }
            _ if path.is_none() => path = Some(arg),
            _ => return Err(Failure::Usage(format!("unexpected argument {arg:?}"))),
        }
    }
    let options = builder.build().map_err(|e| Failure::Usage(e.to_string()))?;
    let jsonl = path.as_deref().is_some_and(|p| p.ends_with(".jsonl"));
    let source = path.as_deref().unwrap_or("stdin");
    let input = match path.as_deref() {
        None | Some("-") => read_bounded(
            std::io::stdin().lock(),
            max_input_bytes,
            source,
            "--max-input-bytes",
        ),
        Some(p) => std::fs::File::open(p)
            .map_err(|e| format!("{p}: {e}"))
            .and_then(|file| read_bounded(file, max_input_bytes, p, "--max-input-bytes")),
    }
    .map_err(Failure::Input)?;
    let queries = if jsonl {
        read_rollouts_jsonl(input.as_slice())
    } else {
        read_rollouts_csv(input.as_slice())
    }
    .map_err(|e| Failure::Input(format!("{source}: {e}")))?;
    let rollouts: usize = queries.iter().map(|q| q.rollouts.len()).sum();
    if rollouts > max_rollouts {
        return Err(Failure::Input(format!(
            "{source}: {rollouts} rollouts, more than the limit of {max_rollouts} \
             (--max-rollouts raises it)"
        )));
    }
    let fits = options
        .fit_many(&queries)
        .map_err(|e| Failure::Input(e.to_string()))?;
    if report {
        for fit in &fits {
            eprintln!(
                "{}",
                one_line(&format!(
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
                ))
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
    let json = serde_json::to_string_pretty(&output).map_err(|e| Failure::Input(e.to_string()))?;
    println!("{json}");
    Ok(())
}
