//! An online admission loop: requests arrive one at a time, each gets its
//! `max_new_tokens` from one carried shadow price, finished requests refund what they
//! did not use, and the price is re-cleared at every window boundary.
//!
//! ```text
//! cargo run --release --example online_server
//! ```
//!
//! Twelve windows of 40 requests each get 6 000 tokens per window (150 per request).
//! The first six windows are mostly easy requests (GSM8K-like curves of SPEC §2), the
//! last six mostly hard ones (AIME-like); each request's threshold spreads around its
//! class's, as a threshold predictor's estimates would. Each funded request generates
//! its solution length `τ + Gamma(2, w)` or stops at its grant, and `complete` refunds
//! the rest to the window. The table shows, per window, the arrivals, the abandoned
//! requests, the tokens charged against the budget, the refunds, the price the window
//! admitted at and the price re-cleared for the next one: after the shift it falls
//! within the allocator's four-window history, because hard requests are worth less
//! per token. A real server calls `admit` in its request handler and `end_window` from
//! a timer every `window_length()`.

use clear_alloc::online::OnlineAllocator;
use clear_alloc::{Query, ShiftedSurge};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Gamma, StandardNormal};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // (threshold, width, ceiling) of an easy and a hard class; each request's
    // predicted threshold spreads around its class's.
    let classes = [(151.0, 101.0, 0.95), (304.0, 280.0, 0.35)];
    let online = OnlineAllocator::builder()
        .tokens_per_window(6_000)
        .default_cap(4096)
        // Start near the expected price (from a batch solve or the last run); at
        // price 0 the first arrivals would take their whole caps.
        .initial_price(1e-3)
        .build()?;
    let mut rng = StdRng::seed_from_u64(7);

    println!("window  mix   arrivals  abandoned  charged/budget  refunded  price      next price");
    for window in 0..12 {
        let share_easy = if window < 6 { 0.8 } else { 0.2 };
        for _ in 0..40 {
            let (tau, width, ceiling) = classes[usize::from(rng.random::<f64>() >= share_easy)];
            let z: f64 = rng.sample(StandardNormal);
            let curve = ShiftedSurge::new(tau * (0.4 * z).exp(), width, ceiling)?;
            let ticket = online.admit(&Query::new(curve))?;
            if ticket.is_abandoned() {
                continue; // answer from a cheap path, or reject
            }
            // The model stops by itself after τ + Gamma(2, w) tokens, or at the grant.
            let length = curve.threshold() + rng.sample(Gamma::new(2.0, width)?);
            let used = ticket.tokens().min(length as u64);
            online.complete(ticket, used)?; // refunds the unused part of the grant
        }
        let report = online.end_window();
        println!(
            "{:>6}  {:<4}  {:>8}  {:>9}  {:>6} / {:<6}  {:>8}  {:<9.3e}  {:.3e}",
            report.window,
            if window < 6 { "easy" } else { "hard" },
            report.arrivals,
            report.abandoned,
            report.charged,
            report.budget,
            report.refunded,
            report.price,
            report.next_price,
        );
    }
    Ok(())
}
