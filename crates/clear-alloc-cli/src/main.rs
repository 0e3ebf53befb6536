//! `clear-alloc`: fit shifted-surge curves to rollouts and allocate a token budget
//! across queries, JSON in and JSON out.
//!
//! ```text
//! clear-alloc fit rollouts.csv | clear-alloc allocate --budget 2000
//! clear-alloc allocate < request.json
//! ```
//!
//! Exit status 0 on success, 1 on bad input (one line on stderr naming the query and
//! the field), 2 on a bad command line.
#![forbid(unsafe_code)]

use std::process::ExitCode;

mod allocate;
mod fit;

const USAGE: &str = "usage: clear-alloc <allocate|fit> [OPTIONS]
  clear-alloc allocate [--budget N | --price X] < request.json
  clear-alloc fit [--sampling-cap N] [--min-correct K] [--report] [FILE.csv|FILE.jsonl|-]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (prefix, result) = match args.next().as_deref() {
        Some("allocate") => ("error", allocate::run(args)),
        Some("fit") => ("fit", fit::run(args)),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("clear-alloc {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        other => {
            match other {
                Some(command) => eprintln!("error: unknown command {command:?}\n{USAGE}"),
                None => eprintln!("{USAGE}"),
            }
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{prefix}: {message}");
            ExitCode::FAILURE
        }
    }
}
