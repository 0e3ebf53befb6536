//! A loop of `allocate` calls on the `allocate` bench's heterogeneous batch, for the
//! tools that criterion does not suit: `valgrind --tool=callgrind` (instructions per
//! call: subtract a one-call run from a three-call run), `perf record` and
//! `/usr/bin/time -f %R` (page faults per call, the same way).
//!
//! ```text
//! cargo run --release --example allocate_loop -- 1000000 41           # with a workspace
//! cargo run --release --example allocate_loop -- 10000 2000 plain     # a plain allocate
//! valgrind --tool=callgrind target/release/examples/allocate_loop 1000000 3
//! ```
//!
//! Prints the median and the fastest call's wall time. Built from the workspace root,
//! the example links the core with the `parallel` feature (the command-line program
//! asks for it); `cargo run -p clear-alloc --release --example allocate_loop` builds it
//! without.

use clear_alloc::{Allocator, Workspace};
use std::process::ExitCode;
use std::time::Instant;

#[path = "../benches/support/batch.rs"]
mod batch;
use batch::heterogeneous;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |k: usize, name: &str| -> Result<usize, String> {
        let arg = args.get(k).ok_or(format!("missing {name}"))?;
        arg.parse()
            .map_err(|_| format!("{name} = {arg:?}: expected a whole number"))
    };
    let (n, calls) = match (number(0, "queries"), number(1, "calls")) {
        (Ok(n), Ok(calls)) if calls > 0 => (n, calls),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}\nusage: allocate_loop QUERIES CALLS [plain]");
            return ExitCode::FAILURE;
        }
        _ => {
            eprintln!("calls = 0: expected at least one call");
            return ExitCode::FAILURE;
        }
    };
    let plain = args.get(2).is_some_and(|a| a == "plain");
    let queries = heterogeneous(n);
    let allocator = Allocator::builder()
        .default_cap(8192)
        .build()
        .expect("valid options");
    let budget = 300 * n as u64;
    let mut workspace = Workspace::new();
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        let tokens = if plain {
            allocator
                .allocate(&queries, budget)
                .map(|a| a.total_tokens())
        } else {
            allocator
                .allocate_with(&mut workspace, &queries, budget)
                .map(|a| a.total_tokens())
        };
        times.push(start.elapsed().as_secs_f64() * 1e3);
        if let Err(e) = tokens {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{n} queries, {calls} calls{}: median {:.3} ms, fastest {:.3} ms",
        if plain {
            ", plain allocate"
        } else {
            ", one workspace"
        },
        times[times.len() / 2],
        times[0]
    );
    ExitCode::SUCCESS
}
