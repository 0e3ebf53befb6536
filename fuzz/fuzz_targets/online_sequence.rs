//! The online allocator under an arbitrary sequence of admit (plain or through a
//! prepared class) / complete / end_window decoded from the input, checked against a model of the window's books: a grant is
//! at most its cap and what the window had left, a refund reaches its window only
//! while it is open and exactly the unused tokens, and each window's report has
//! `charged = granted − refunded ≤ budget`, with exact arrival, abandonment and refund
//! counts (one thread, so no count races the boundary).
#![no_main]

use clear_alloc::online::{OnlineAllocator, PreparedQuery, Ticket, MAX_WINDOW_BUDGET};
use clear_alloc::{Query, ShiftedSurge};
use libfuzzer_sys::fuzz_target;

/// The input as a stream of numbers; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u64 {
        u64::from(u16::from_le_bytes([self.byte(), self.byte()]))
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0; 8];
        b.iter_mut().for_each(|x| *x = self.byte());
        u64::from_le_bytes(b)
    }
    /// Mostly everyday values, sometimes any f64 at all (NaN, ∞, subnormals).
    fn float(&mut self, scale: f64) -> f64 {
        match self.byte() {
            0..=239 => f64::from(self.byte()) * scale / 16.0,
            _ => f64::from_bits(self.u64()),
        }
    }
}

/// What the model expects of the open window.
#[derive(Default)]
struct Books {
    granted: u64,
    refunded: u64,
    arrivals: u64,
    abandoned: u64,
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let budget = match input.byte() {
        0 => MAX_WINDOW_BUDGET,
        1 => 1,
        _ => 1 + input.u16() * 8,
    };
    let default_cap = 1 + input.u16();
    let options = input.byte();
    let Ok(online) = OnlineAllocator::builder()
        .tokens_per_window(budget)
        .default_cap(default_cap)
        .initial_price(input.float(1e-3))
        .history_windows(1 + usize::from(options & 7))
        .samples_per_window(1 + usize::from(options >> 3))
        .refund_aware(options & 0x80 != 0)
        .seed(input.u64())
        .build()
    else {
        return;
    };
    let stranger = OnlineAllocator::builder()
        .tokens_per_window(100)
        .build()
        .unwrap();
    let mut tickets: Vec<Ticket> = Vec::new();
    let mut prepared: Vec<PreparedQuery> = Vec::new();
    let mut books = Books::default();
    let mut window = online.window();
    assert_eq!(window, 0);
    for _ in 0..2_000 {
        if input.0.is_empty() {
            break;
        }
        match input.byte() % 8 {
            0..=3 => {
                let curve = ShiftedSurge::new(
                    input.float(64.0),
                    input.float(32.0),
                    input.float(1.0 / 255.0),
                );
                let Ok(curve) = curve else { continue };
                // A weight the query refuses never reaches the allocator.
                let weighted = Query::new(curve).with_weight(input.float(1.0 / 16.0));
                let cap = match input.byte() {
                    0..=127 => None,
                    _ => Some(input.u16()),
                };
                let Ok(mut query) = weighted else { continue };
                if let Some(cap) = cap {
                    query = query.with_cap(cap);
                }
                // Some arrivals come through a prepared class: a new one, or one
                // prepared earlier (its cached grant may be from an older price).
                let via = input.byte();
                if via >= 160 && (prepared.len() < 16 || via >= 224) {
                    prepared.push(online.prepare(&query));
                }
                let before = online.remaining();
                let (result, cap) = if via >= 160 {
                    let class = &prepared[usize::from(via) % prepared.len()];
                    (online.admit_prepared(class), Some(class.cap()))
                } else {
                    (online.admit(&query), cap)
                };
                let Ok(ticket) = result else {
                    assert_eq!(online.remaining(), before, "a refused query was charged");
                    continue;
                };
                assert!(ticket.tokens() <= cap.unwrap_or(default_cap));
                assert!(ticket.tokens() <= before, "granted more than was left");
                assert_eq!(online.remaining(), before - ticket.tokens());
                assert_eq!(ticket.window(), window);
                assert_eq!(ticket.is_abandoned(), ticket.tokens() == 0);
                books.granted += ticket.tokens();
                books.arrivals += 1;
                books.abandoned += u64::from(ticket.is_abandoned());
                tickets.push(ticket);
            }
            4 | 5 if !tickets.is_empty() => {
                let pick = usize::from(input.byte()) % tickets.len();
                let ticket = tickets.swap_remove(pick);
                let grant = ticket.tokens();
                // Up to twice the grant: using more than granted is an error.
                let used = grant.saturating_mul(2) * u64::from(input.byte()) / 255;
                let open = ticket.window() == window;
                let before = online.remaining();
                let result = online.complete(ticket, used);
                let expected = if open { grant.saturating_sub(used) } else { 0 };
                let credited = online.remaining() - before;
                assert_eq!(
                    credited, expected,
                    "refund of {grant} − {used}, open {open}"
                );
                if used > grant {
                    assert!(result.is_err());
                } else {
                    assert_eq!(result, Ok(expected));
                }
                books.refunded += credited;
                assert!(online.remaining() <= budget);
            }
            6 => {
                let ticket = stranger.admit(&Query::new(ShiftedSurge::new(1.0, 1.0, 1.0).unwrap()));
                let before = online.remaining();
                assert!(online.complete(ticket.unwrap(), 0).is_err());
                assert_eq!(online.remaining(), before);
            }
            _ => {
                let price = online.price();
                let report = online.end_window();
                assert_eq!(report.window, window);
                assert_eq!(report.budget, budget);
                assert_eq!(report.price, price);
                assert!(report.charged <= budget, "{report:?}");
                assert_eq!(report.charged, books.granted - books.refunded, "{report:?}");
                assert_eq!(report.refunded, books.refunded, "{report:?}");
                assert_eq!(report.arrivals, books.arrivals, "{report:?}");
                assert_eq!(report.abandoned, books.abandoned, "{report:?}");
                assert!(
                    report.next_price.is_finite() && report.next_price >= 0.0,
                    "{report:?}"
                );
                window += 1;
                assert_eq!(online.window(), window);
                assert_eq!(online.remaining(), budget);
                books = Books::default();
            }
        }
    }
});
