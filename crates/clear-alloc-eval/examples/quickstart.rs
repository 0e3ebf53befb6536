//! CLEAR against uniform allocation on a mixed batch of easy, medium and hard queries.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//!
//! The batch is the paper's Balanced stream (`clear_alloc_eval::sim`): 500 queries drawn from
//! easy / medium / hard pools whose thresholds and widths spread around the Figure-1
//! fits of SPEC §2 (GSM8K (151, 101), MATH500 (142, 218), AIME/AMC (304, 280) tokens),
//! with ceilings that leave many hard problems unsolvable. For each budget per query it
//! prints the expected accuracy of CLEAR and of uniform allocation (one global
//! `max_tokens`), their ratio, the share of queries CLEAR abandons, and the price.

use clear_alloc::{AllocationPolicy, Allocator};
use clear_alloc_eval::baselines::Uniform;
use clear_alloc_eval::sim::{Mix, StreamConfig};

fn main() -> Result<(), clear_alloc::Error> {
    let stream = StreamConfig::new(Mix::Balanced)
        .queries(500)
        .seed(2026) // the seed of examples/pareto.rs, so the figures agree
        .generate()?;
    let queries = stream.truth();
    let clear = Allocator::builder().default_cap(stream.cap()).build()?;
    let uniform = Uniform::new(1)?.with_default_cap(stream.cap());

    println!(
        "CLEAR vs uniform on {} queries ({} stream: easy, medium and hard problems)\n",
        queries.len(),
        stream.mix().name()
    );
    println!(
        "{:>12} {:>10} {:>10} {:>8} {:>10} {:>12}",
        "tokens/query", "CLEAR", "uniform", "ratio", "abandoned", "price/token"
    );
    for per_query in [100u64, 200, 300, 500, 800, 1000, 1500] {
        let budget = per_query * queries.len() as u64;
        let ours = clear.allocate(queries, budget)?;
        let base = uniform.allocate(queries, budget)?;
        let ratio = if base.mean_utility() > 0.0 {
            format!("{:.1}x", ours.mean_utility() / base.mean_utility())
        } else {
            "-".into()
        };
        println!(
            "{:>12} {:>9.1}% {:>9.1}% {:>8} {:>9.0}% {:>12.2e}",
            per_query,
            100.0 * ours.mean_utility(),
            100.0 * base.mean_utility(),
            ratio,
            100.0 * ours.abandonment_rate(),
            ours.price().unwrap_or(f64::NAN),
        );
    }
    println!("\nAccuracy is expected accuracy under the queries' curves; the price is utility per token.");
    Ok(())
}
