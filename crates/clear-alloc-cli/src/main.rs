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

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::process::ExitCode;

use clear_alloc_cli::allocate::{read_request, AllocateOptions};
use clear_alloc_cli::input::read_bounded;

mod fit;

const USAGE: &str = "usage: clear-alloc <allocate|fit> [OPTIONS]
  clear-alloc allocate [--budget N | --price X] [--max-request-bytes N] [--max-queries N] [--pretty] < request.json
  clear-alloc fit [--sampling-cap N] [--min-correct K] [--report] [--max-input-bytes N] [--max-rollouts N] [FILE.csv|FILE.jsonl|-]";

/// Why a subcommand failed; each message is one line.
enum Failure {
    /// The command line is wrong (exit status 2).
    Usage(String),
    /// The input is wrong (exit status 1).
    Input(String),
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (prefix, result) = match args.next().as_deref() {
        Some("allocate") => ("error", allocate(args)),
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
        Err(Failure::Input(message)) => {
            eprintln!("{prefix}: {message}");
            ExitCode::FAILURE
        }
        Err(Failure::Usage(message)) => {
            eprintln!("{prefix}: {message}");
            ExitCode::from(2)
        }
    }
}

/// `clear-alloc allocate`: the request on stdin (read up to `--max-request-bytes`), the
/// response on stdout (compact JSON and a newline; `--pretty` indents it); see
/// [`clear_alloc_cli::allocate`].
fn allocate(args: impl Iterator<Item = String>) -> Result<(), Failure> {
    let options = AllocateOptions::from_args(args).map_err(Failure::Usage)?;
    let input = read_bounded(
        std::io::stdin().lock(),
        options.max_request_bytes(),
        "stdin",
        "--max-request-bytes",
    )
    .map_err(Failure::Input)?;
    let request = read_request(&input, &options).map_err(Failure::Input)?;
    let allocation = request.allocate().map_err(Failure::Input)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout());
    request
        .write_response(&allocation, options.pretty(), &mut out)
        .map_err(Failure::Input)?;
    writeln!(out)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Input(format!("response: {e}")))?;
    // The process ends next: its memory (some 300 MB at a million queries) goes back
    // to the system in one piece rather than freed query by query.
    std::mem::forget(allocation);
    std::mem::forget(request);
    std::mem::forget(input);
    Ok(())
}

/// The program's standard output as a plain file, written in the pieces given to it:
/// `std::io::stdout()` is line-buffered and so searches every write for a newline
/// (some 90 MB of them at a million queries). `stdout()` itself if it has no file
/// descriptor to share.
fn stdout() -> Box<dyn Write> {
    let stdout = std::io::stdout();
    match stdout.as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(File::from(fd)),
        Err(_) => Box::new(stdout.lock()),
    }
}
