//! Writes the seeded request the JSON program is measured on (see
//! `benches/support/mod.rs`) to stdout:
//!
//! ```text
//! cargo run --release -p clear-alloc-cli --example request -- 1000000 > /tmp/request-1m.json
//! time clear-alloc allocate < /tmp/request-1m.json > /dev/null
//! ```

#[path = "../benches/support/mod.rs"]
mod support;

use std::io::Write;

fn main() -> std::process::ExitCode {
    let n = match std::env::args().nth(1).map(|n| n.parse::<usize>()) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("usage: request N (the number of queries)");
            return std::process::ExitCode::from(2);
        }
    };
    let json = support::heterogeneous_request(n);
    match std::io::stdout().lock().write_all(json.as_bytes()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("request: stdout: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
