//! A seeded simulation of an LLM server under a token-rate budget, comparing three
//! ways of setting each request's `max_new_tokens`:
//!
//! - **online CLEAR**: [`OnlineAllocator`] with a carried price, per-window budget and
//!   refunds for requests that stop early;
//! - **online CLEAR without refunds**: the same, but requests keep their whole grant
//!   (like for like with the hindsight reference);
//! - **uniform**: one global cap (the budget per expected request), same window budget
//!   and refunds;
//! - **hindsight CLEAR**: batch [`Allocator::allocate`] on each window's arrivals,
//!   known in advance (the upper reference; it cannot recycle refunds).
//!
//! Requests arrive as a Poisson process whose mix shifts halfway from easy-heavy to
//! hard-heavy. Each request has a true curve (the paper's Figure-1 fits with a
//! jittered threshold); whether it can be solved at all is a coin with the curve's
//! ceiling, and its length is drawn from `τ + Gamma(2, β)` (SPEC §2) — a request is
//! correct when it is solvable and its length fits its grant, so its expected accuracy
//! is exactly `U(grant)`. **[ours]** Unsolvable requests are assumed to have the same
//! length distribution. A request decodes at a fixed speed and returns its unused
//! tokens when it stops.
//!
//! Run: `cargo run --release --example server_sim [-- out.svg]` (default
//! `target/server_sim.svg`). Prints a table and writes an SVG of the price and the
//! accuracy over time.

use clear_alloc::online::OnlineAllocator;
use clear_alloc::{Allocator, Query, ShiftedSurge};
use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, Gamma, LogNormal};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::error::Error;
use std::time::Duration;

const SEED: u64 = 2026;
const WINDOWS: usize = 120;
const WINDOW_SECS: f64 = 10.0;
/// The mix shifts at the start of this window.
const SHIFT_WINDOW: usize = 60;
const ARRIVALS_PER_SEC: f64 = 20.0;
/// 300 tokens per expected request: scarce for this traffic.
const TOKENS_PER_SEC: f64 = 6_000.0;
const CAP: u64 = 4096;
/// Per-request decode speed, tokens per second.
const DECODE_PER_SEC: f64 = 200.0;
/// Windows left out of the accuracy summary while the online price warms up.
const WARM_UP: usize = 5;
const EASY_HEAVY: [f64; 3] = [0.7, 0.2, 0.1];
const HARD_HEAVY: [f64; 3] = [0.1, 0.2, 0.7];

/// One simulated request with its hidden outcome.
struct Request {
    arrival: f64,
    window: usize,
    query: Query,
    solvable: bool,
    /// Tokens it would generate with no cap.
    length: f64,
}

impl Request {
    fn used(&self, grant: u64) -> u64 {
        (self.length.ceil() as u64).min(grant)
    }

    fn correct(&self, grant: u64) -> bool {
        grant > 0 && self.solvable && self.length <= grant as f64
    }
}

fn class_curve(class: usize) -> ShiftedSurge {
    match class {
        0 => ShiftedSurge::new(151.0, 101.0, 0.95),
        1 => ShiftedSurge::new(142.0, 218.0, 0.75),
        _ => ShiftedSurge::new(304.0, 280.0, 0.35),
    }
    .expect("the Figure-1 fits are valid curves")
}

fn traffic(rng: &mut StdRng) -> Result<Vec<Request>, Box<dyn Error>> {
    let gap = Exp::new(ARRIVALS_PER_SEC)?;
    let jitter = LogNormal::new(0.0, 0.3)?;
    let end = WINDOWS as f64 * WINDOW_SECS;
    let mut requests = Vec::new();
    let mut t = gap.sample(rng);
    while t < end {
        let window = (t / WINDOW_SECS) as usize;
        let mix = if window < SHIFT_WINDOW {
            EASY_HEAVY
        } else {
            HARD_HEAVY
        };
        let u: f64 = rng.random();
        let class = if u < mix[0] {
            0
        } else if u < mix[0] + mix[1] {
            1
        } else {
            2
        };
        let base = class_curve(class);
        let curve = base.with_threshold(base.threshold() * jitter.sample(rng))?;
        let length = curve.threshold() + Gamma::new(2.0, curve.width())?.sample(rng);
        requests.push(Request {
            arrival: t,
            window,
            query: Query::new(curve).with_cap(CAP),
            solvable: rng.random::<f64>() < curve.ceiling(),
            length,
        });
        t += gap.sample(rng);
    }
    Ok(requests)
}

/// Per-window results of one method.
#[derive(Default, Clone)]
struct WindowStats {
    requests: usize,
    correct: usize,
    expected: f64,
    used: u64,
    abandoned: usize,
    charged: u64,
    price: Option<f64>,
}

/// What a serving policy needs from the event loop.
trait Server {
    /// Grant for a request; the returned handle comes back in `finish`.
    fn admit(&mut self, request: &Request) -> (u64, usize);
    fn finish(&mut self, handle: usize, used: u64);
    /// Ends a window; returns the tokens it was charged and the price it admitted at.
    fn end_window(&mut self) -> (u64, Option<f64>);
}

struct OnlineServer {
    online: OnlineAllocator,
    /// Whether finished requests return their unused tokens.
    refunds: bool,
    tickets: Vec<Option<clear_alloc::online::Ticket>>,
}

impl Server for OnlineServer {
    fn admit(&mut self, request: &Request) -> (u64, usize) {
        let ticket = self
            .online
            .admit(&request.query)
            .expect("simulated queries are valid");
        let tokens = ticket.tokens();
        self.tickets.push(Some(ticket));
        (tokens, self.tickets.len() - 1)
    }

    fn finish(&mut self, handle: usize, used: u64) {
        if let Some(ticket) = self.tickets[handle].take() {
            let reported = if self.refunds { used } else { ticket.tokens() };
            self.online
                .complete(ticket, reported)
                .expect("used never exceeds the grant");
        }
    }

    fn end_window(&mut self) -> (u64, Option<f64>) {
        let report = self.online.end_window();
        (report.charged, Some(report.price))
    }
}

/// One global cap, with the same window budget and refund rule as the online server.
struct UniformServer {
    cap: u64,
    budget: u64,
    remaining: u64,
    window: usize,
    /// (window, grant) per request.
    grants: Vec<(usize, u64)>,
}

impl Server for UniformServer {
    fn admit(&mut self, _: &Request) -> (u64, usize) {
        let grant = self.cap.min(self.remaining);
        self.remaining -= grant;
        self.grants.push((self.window, grant));
        (grant, self.grants.len() - 1)
    }

    fn finish(&mut self, handle: usize, used: u64) {
        let (window, grant) = self.grants[handle];
        if window == self.window {
            self.remaining += grant - used;
        }
    }

    fn end_window(&mut self) -> (u64, Option<f64>) {
        let charged = self.budget - self.remaining;
        self.remaining = self.budget;
        self.window += 1;
        (charged, None)
    }
}

type Running = BinaryHeap<Reverse<(u64, usize, u64)>>;

fn micros(t: f64) -> u64 {
    (t * 1e6) as u64
}

/// Processes, in time order, the completions and window boundaries up to time `t`.
fn advance_to(
    t: f64,
    server: &mut dyn Server,
    running: &mut Running,
    stats: &mut [WindowStats],
    window: &mut usize,
) {
    loop {
        let boundary = (*window + 1) as f64 * WINDOW_SECS;
        let next_finish = running.peek().map(|Reverse((f, _, _))| *f);
        match next_finish {
            Some(f) if f <= micros(t.min(boundary)) => {
                let Reverse((_, handle, used)) = running.pop().expect("peeked");
                server.finish(handle, used);
            }
            _ if boundary <= t && *window < WINDOWS => {
                let (charged, price) = server.end_window();
                stats[*window].charged = charged;
                stats[*window].price = price;
                *window += 1;
            }
            _ => break,
        }
    }
}

/// Replays the arrivals through `server` in time order, with completions at the
/// decode speed and window boundaries every `WINDOW_SECS`.
fn serve(server: &mut dyn Server, requests: &[Request]) -> Vec<WindowStats> {
    let mut stats = vec![WindowStats::default(); WINDOWS];
    // Completions as (finish time in µs, handle, tokens used).
    let mut running: Running = BinaryHeap::new();
    let mut window = 0;
    for request in requests {
        advance_to(
            request.arrival,
            server,
            &mut running,
            &mut stats,
            &mut window,
        );
        let (grant, handle) = server.admit(request);
        let used = request.used(grant);
        let s = &mut stats[request.window];
        s.requests += 1;
        s.correct += request.correct(grant) as usize;
        s.expected += request.query.curve().utility(grant as f64);
        s.used += used;
        s.abandoned += (grant == 0) as usize;
        let finish = request.arrival + used as f64 / DECODE_PER_SEC;
        running.push(Reverse((micros(finish), handle, used)));
    }
    advance_to(f64::INFINITY, server, &mut running, &mut stats, &mut window);
    stats
}

/// Batch CLEAR on each window's arrivals, known in advance.
fn hindsight(requests: &[Request], budget: u64) -> Result<Vec<WindowStats>, Box<dyn Error>> {
    let allocator = Allocator::builder().default_cap(CAP).build()?;
    let mut stats = vec![WindowStats::default(); WINDOWS];
    for (w, s) in stats.iter_mut().enumerate() {
        let batch: Vec<&Request> = requests.iter().filter(|r| r.window == w).collect();
        let queries: Vec<Query> = batch.iter().map(|r| r.query.clone()).collect();
        let allocation = allocator.allocate(&queries, budget)?;
        s.requests = batch.len();
        s.price = allocation.price();
        s.charged = allocation.total_tokens();
        for (r, a) in batch.iter().zip(allocation.queries()) {
            s.correct += r.correct(a.tokens) as usize;
            s.expected += a.utility;
            s.used += r.used(a.tokens);
            s.abandoned += (a.tokens == 0) as usize;
        }
    }
    Ok(stats)
}

struct Summary {
    accuracy: f64,
    expected: f64,
    used_per_request: f64,
    abandoned: f64,
}

fn summarise(stats: &[WindowStats]) -> Summary {
    let n: usize = stats.iter().map(|s| s.requests).sum::<usize>().max(1);
    let n = n as f64;
    Summary {
        accuracy: stats.iter().map(|s| s.correct).sum::<usize>() as f64 / n,
        expected: stats.iter().map(|s| s.expected).sum::<f64>() / n,
        used_per_request: stats.iter().map(|s| s.used).sum::<u64>() as f64 / n,
        abandoned: stats.iter().map(|s| s.abandoned).sum::<usize>() as f64 / n,
    }
}

fn per_window_accuracy(stats: &[WindowStats]) -> Vec<(f64, f64)> {
    stats
        .iter()
        .enumerate()
        .map(|(w, s)| (w as f64, s.correct as f64 / s.requests.max(1) as f64))
        .collect()
}

/// One line per method: its name, its points and its colour.
type Series<'a> = Vec<(&'a str, Vec<(f64, f64)>, RGBColor)>;

/// Draws one chart of per-window series, with a legend.
fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    y_max: f64,
    series: Series,
) -> Result<(), Box<dyn Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..WINDOWS as f64, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()?;
    for (name, points, color) in series {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn plot(path: &str, methods: &[(&str, &[WindowStats], RGBColor)]) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, (960, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(360);
    let scale = 1e4;
    let prices: Series = methods
        .iter()
        .map(|&(name, stats, color)| {
            let points = stats
                .iter()
                .enumerate()
                .filter_map(|(w, s)| s.price.map(|p| (w as f64, p * scale)))
                .collect();
            (name, points, color)
        })
        .filter(|(_, points, _): &(&str, Vec<(f64, f64)>, RGBColor)| !points.is_empty())
        .collect();
    let max_price = prices
        .iter()
        .flat_map(|(_, points, _)| points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    panel(
        &top,
        "Shadow price per window",
        ("window (10 s)", "price (1e-4 per token)"),
        (1.1 * max_price).max(1e-9),
        prices,
    )?;
    let accuracy: Series = methods
        .iter()
        .map(|&(name, stats, color)| (name, per_window_accuracy(stats), color))
        .collect();
    panel(
        &bottom,
        "Accuracy per window",
        (
            "window (10 s); mix shifts easy -> hard at window 60",
            "fraction correct",
        ),
        1.0,
        accuracy,
    )?;
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/server_sim.svg".into());
    let mut rng = StdRng::seed_from_u64(SEED);
    let requests = traffic(&mut rng)?;

    let window = Duration::from_secs_f64(WINDOW_SECS);
    let online_server = |refunds: bool| -> Result<OnlineServer, clear_alloc::Error> {
        Ok(OnlineServer {
            online: OnlineAllocator::builder()
                .tokens_per_second(TOKENS_PER_SEC, window)
                .default_cap(CAP)
                .refund_aware(refunds)
                .build()?,
            refunds,
            tickets: Vec::with_capacity(requests.len()),
        })
    };
    let mut server = online_server(true)?;
    let budget = server.online.window_budget();
    let online_stats = serve(&mut server, &requests);
    // Like for like with hindsight, which cannot recycle refunds either.
    let no_refund_stats = serve(&mut online_server(false)?, &requests);
    let mut uniform_server = UniformServer {
        cap: (TOKENS_PER_SEC / ARRIVALS_PER_SEC) as u64,
        budget,
        remaining: budget,
        window: 0,
        grants: Vec::with_capacity(requests.len()),
    };
    let uniform_stats = serve(&mut uniform_server, &requests);
    let hindsight_stats = hindsight(&requests, budget)?;

    println!(
        "{} requests in {WINDOWS} windows of {WINDOW_SECS} s; {ARRIVALS_PER_SEC} req/s; \
         budget {budget} tokens per window ({TOKENS_PER_SEC} tok/s); mix shifts easy -> \
         hard at window {SHIFT_WINDOW}; first {WARM_UP} windows and {WARM_UP} after the \
         shift excluded from phase means",
        requests.len()
    );
    let methods: [(&str, &[WindowStats]); 4] = [
        ("online CLEAR", &online_stats),
        ("online, no refund", &no_refund_stats),
        ("uniform cap", &uniform_stats),
        ("hindsight CLEAR", &hindsight_stats),
    ];
    let phases: [(&str, std::ops::Range<usize>); 3] = [
        ("easy-heavy", WARM_UP..SHIFT_WINDOW),
        ("hard-heavy", SHIFT_WINDOW + WARM_UP..WINDOWS),
        ("whole run", 0..WINDOWS),
    ];
    println!(
        "\n{:<11} {:<16} {:>9} {:>9} {:>11} {:>10} {:>12} {:>8}",
        "phase", "method", "accuracy", "E[acc]", "tokens/req", "abandoned", "max charge", "over"
    );
    for (phase, range) in &phases {
        let reference = summarise(&hindsight_stats[range.clone()]).accuracy;
        for (name, stats) in &methods {
            let s = summarise(&stats[range.clone()]);
            let max_charge = stats[range.clone()]
                .iter()
                .map(|w| w.charged as f64 / budget as f64)
                .fold(0.0, f64::max);
            let over = stats[range.clone()]
                .iter()
                .filter(|w| w.charged > budget)
                .count();
            println!(
                "{phase:<11} {name:<18} {:>9.4} {:>9.4} {:>11.1} {:>9.1}% {:>11.1}% {over:>8}",
                s.accuracy,
                s.expected,
                s.used_per_request,
                100.0 * s.abandoned,
                100.0 * max_charge,
            );
        }
        let online = summarise(&online_stats[range.clone()]).accuracy;
        let no_refund = summarise(&no_refund_stats[range.clone()]).accuracy;
        println!(
            "{:<11} accuracy / hindsight: online {:.3}, online without refunds {:.3}\n",
            "",
            online / reference,
            no_refund / reference
        );
    }

    println!("window  online price  no-refund price  hindsight price   online acc  hindsight acc");
    // Every fifth window, and every window around the shift.
    for w in
        (0..WINDOWS).filter(|w| w % 5 == 0 || (SHIFT_WINDOW - 1..=SHIFT_WINDOW + 5).contains(w))
    {
        let acc = |s: &WindowStats| s.correct as f64 / s.requests.max(1) as f64;
        println!(
            "{w:>6}  {:>12.3e}  {:>15.3e}  {:>15.3e}  {:>11.3}  {:>13.3}",
            online_stats[w].price.unwrap_or(f64::NAN),
            no_refund_stats[w].price.unwrap_or(f64::NAN),
            hindsight_stats[w].price.unwrap_or(0.0),
            acc(&online_stats[w]),
            acc(&hindsight_stats[w]),
        );
    }

    plot(
        &out,
        &[
            ("online CLEAR", &online_stats, BLUE),
            ("online, no refunds", &no_refund_stats, GREEN),
            ("uniform cap", &uniform_stats, RED),
            ("hindsight CLEAR", &hindsight_stats, BLACK),
        ],
    )?;
    println!("\nwrote {out}");
    Ok(())
}
