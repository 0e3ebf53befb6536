//! Lease sizing: a chunk covers the tokens this replica is expected to charge over the
//! lease horizon, so a busy replica takes large chunks (few round trips) and an idle
//! one small ones (few tokens stranded on it while others starve).

use std::time::{Duration, Instant};

/// The sizing rule's options (validated by the builder).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ChunkRule {
    /// How long one chunk should last at the replica's charge rate.
    pub(crate) horizon: Duration,
    /// The smallest chunk (tokens).
    pub(crate) min_chunk: u64,
    /// The largest chunk, as a share of the window budget.
    pub(crate) max_share: f64,
}

/// The replica's charge rate: smoothed over windows, and the current window's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChargeRate {
    /// Tokens per second, smoothed over past windows; `None` before the first window
    /// ended.
    smoothed: Option<f64>,
    opened: Instant,
    /// Tokens leased in the current window so far.
    leased: u64,
}

impl ChargeRate {
    pub(crate) fn new(now: Instant) -> ChargeRate {
        ChargeRate {
            smoothed: None,
            opened: now,
            leased: 0,
        }
    }

    /// A new window opens `now`: returns the tokens leased in the last one and its
    /// length in seconds, for [`observe`](Self::observe) once its charge is known.
    pub(crate) fn start(&mut self, now: Instant) -> (u64, f64) {
        let last = (self.leased, now.duration_since(self.opened).as_secs_f64());
        self.opened = now;
        self.leased = 0;
        last
    }

    /// A window of `seconds` charged `charged` tokens.
    pub(crate) fn observe(&mut self, charged: u64, seconds: f64) {
        if seconds > 0.0 {
            let rate = charged as f64 / seconds;
            self.smoothed = Some(match self.smoothed {
                Some(old) => 0.5 * old + 0.5 * rate,
                None => rate,
            });
        }
    }

    /// A window ended after charging `charged` tokens; the next one opens `now`.
    #[cfg(test)]
    fn close_window(&mut self, charged: u64, now: Instant) {
        let (_, seconds) = self.start(now);
        self.observe(charged, seconds);
    }

    /// Tokens were leased in the current window.
    pub(crate) fn leased(&mut self, tokens: u64) {
        self.leased = self.leased.saturating_add(tokens);
    }

    /// The rate a chunk is sized for: the smoothed one, or the current window's if
    /// traffic has risen above it (measured once half a horizon has passed, so that the
    /// window's first lease does not read as a burst).
    fn rate(&self, rule: &ChunkRule, now: Instant) -> Option<f64> {
        let elapsed = now.duration_since(self.opened).as_secs_f64();
        let current =
            (elapsed >= 0.5 * rule.horizon.as_secs_f64()).then(|| self.leased as f64 / elapsed);
        match (self.smoothed, current) {
            (Some(s), Some(c)) => Some(s.max(c)),
            (s, c) => s.or(c),
        }
    }
}

impl ChunkRule {
    /// The next chunk for a window of `budget` tokens: at least `needed` (the tokens a
    /// waiting request lacks), within the rule's bounds and the budget.
    pub(crate) fn chunk(&self, rate: &ChargeRate, budget: u64, needed: u64, now: Instant) -> u64 {
        let max = ((budget as f64 * self.max_share) as u64).max(self.min_chunk);
        let sized = match rate.rate(self, now) {
            Some(r) => (r * self.horizon.as_secs_f64()) as u64,
            // No history yet: a quarter of the largest chunk.
            None => max / 4,
        };
        sized.clamp(self.min_chunk, max).max(needed).min(budget)
    }

    /// Held tokens below which the allocator asks for the next chunk: a quarter of it,
    /// so that the refill's round trip overlaps the last quarter's admissions.
    pub(crate) fn refill_below(chunk: u64) -> u64 {
        (chunk / 4).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: ChunkRule = ChunkRule {
        horizon: Duration::from_millis(100),
        min_chunk: 100,
        max_share: 0.25,
    };

    #[test]
    fn a_busier_replica_takes_larger_chunks_within_the_bounds() {
        let t0 = Instant::now();
        let mut slow = ChargeRate::new(t0);
        let mut busy = ChargeRate::new(t0);
        let t1 = t0 + Duration::from_secs(1);
        slow.close_window(5_000, t1); // 5 000 tokens/s → 500 per 100 ms
        busy.close_window(50_000, t1); // 50 000 tokens/s → 5 000 per 100 ms
        assert_eq!(RULE.chunk(&slow, 1_000_000, 0, t1), 500);
        assert_eq!(RULE.chunk(&busy, 1_000_000, 0, t1), 5_000);
        // Bounds: the minimum, the budget share, and what a waiting request needs.
        assert_eq!(RULE.chunk(&slow, 1_000, 0, t1), 250);
        assert_eq!(RULE.chunk(&ChargeRate::new(t1), 1_000_000, 0, t1), 62_500);
        let mut idle = ChargeRate::new(t0);
        idle.close_window(0, t1);
        assert_eq!(RULE.chunk(&idle, 1_000_000, 0, t1), 100);
        assert_eq!(RULE.chunk(&idle, 1_000_000, 700, t1), 700);
        assert_eq!(RULE.chunk(&idle, 50, 700, t1), 50);
    }

    #[test]
    fn a_burst_within_the_window_grows_the_chunk() {
        let t0 = Instant::now();
        let mut rate = ChargeRate::new(t0);
        rate.close_window(5_000, t0 + Duration::from_secs(1));
        let t1 = t0 + Duration::from_secs(1);
        rate.leased(40_000); // 40 000 tokens in the first 200 ms: 200 000 tokens/s
        let t2 = t1 + Duration::from_millis(200);
        assert_eq!(RULE.chunk(&rate, 10_000_000, 0, t2), 20_000);
        assert_eq!(ChunkRule::refill_below(20_000), 5_000);
    }
}
