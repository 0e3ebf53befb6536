//! `clear-alloc allocate`: the allocator as a sidecar, JSON request on stdin, JSON
//! response on stdout.
//!
//! ```text
//! clear-alloc allocate < request.json
//! clear-alloc fit rollouts.csv | clear-alloc allocate --budget 20000
//! ```
//!
//! Request: `{"budget": 120000, "default_cap": 8192, "granularity": 1, "queries": [{"id":
//! "q1", "threshold": 250, "width": 200, "ceiling": 0.9, "cap": 4096, "weight": 1.0}, …]}`.
//! A query may give `alpha` and `beta` instead of `width` and `ceiling`; `price` may be
//! given instead of `budget`. `--budget N` or `--price X` on the command line complete
//! (or override) the document, so the output of `clear-alloc fit` pipes straight in.
//!
//! Response: `{"price": …, "marginal_price": …, "total_tokens": …, "leftover": …,
//! "expected_utility": …, "allocations": [{"id": "q1", "tokens": 812, "utility": 0.71,
//! "abandoned": false, "decision": "funded"}, …]}` in input order.
//!
//! Bad input: exit status 1 and one line on stderr naming the query and the field.

use std::io::Read;

use clear_alloc_cli::wire::AllocationRequest;

/// Runs the subcommand with the arguments after `allocate`.
pub fn run(mut args: impl Iterator<Item = String>) -> Result<(), String> {
    let mut request = read_request()?;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--budget" => {
                request.budget = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--budget {value:?}: {e}"))?,
                );
                request.price = None;
            }
            "--price" => {
                request.price = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--price {value:?}: {e}"))?,
                );
                request.budget = None;
            }
            other => {
                return Err(format!(
                    "unknown option {other} (expected --budget N or --price X)"
                ))
            }
        }
    }
    let response = request.run().map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&response).map_err(|e| e.to_string())?;
    println!("{json}");
    Ok(())
}

fn read_request() -> Result<AllocationRequest, String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| format!("reading stdin: {e}"))?;
    let mut deserializer = serde_json::Deserializer::from_str(&input);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            format!("request: {inner}")
        } else {
            format!("{path}: {inner}")
        }
    })
}
