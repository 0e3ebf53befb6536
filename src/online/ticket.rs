//! Tickets and refunds: a grant names the window that paid for it, and a request that
//! stops early returns the unused tokens to that window while it is still open.

use super::shard::{shard_index, Shard, CLOSED};
use super::window::{pack, packed_epoch, packed_remaining, short_epoch};
use super::OnlineAllocator;
use crate::error::{Error, Result};
use crate::model::Curve;
use std::sync::atomic::Ordering;

/// One request's grant: the tokens it may spend and the window that paid for them.
///
/// A ticket is not `Clone`: [`OnlineAllocator::complete`] consumes it, so a refund
/// cannot be claimed twice.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "pass the ticket to `complete` when the request finishes, to refund unused tokens"]
pub struct Ticket {
    pub(super) tokens: u64,
    pub(super) epoch: u64,
    pub(super) allocator: u64,
}

impl Ticket {
    /// Tokens the request may generate (its `max_new_tokens`); 0 means abandoned:
    /// route the request to a cheap path or reject it.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Whether the request was abandoned (granted 0 tokens).
    pub fn is_abandoned(&self) -> bool {
        self.tokens == 0
    }

    /// The window (0-based count of [`OnlineAllocator::end_window`] calls before the
    /// grant) that paid for the tokens.
    pub fn window(&self) -> u64 {
        self.epoch
    }
}

/// How a request ended: what [`OnlineAllocator::complete_with`] reports and a
/// curve learner learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// Tokens the request generated (at most its grant).
    pub used: u64,
    /// Whether it stopped by itself (`true`) or was cut off at its grant, or earlier
    /// by the client (`false`: its length is censored at `used`).
    pub finished: bool,
    /// Whether its answer was correct, when the server knows (a verifier, a user's
    /// feedback); `None` otherwise.
    pub correct: Option<bool>,
}

impl Completion {
    /// A request that stopped by itself after `used` tokens, correctness unknown.
    pub fn finished(used: u64) -> Self {
        Completion {
            used,
            finished: true,
            correct: None,
        }
    }

    /// A request cut off after `used` tokens (at its grant, or by the client).
    pub fn cut_off(used: u64) -> Self {
        Completion {
            used,
            finished: false,
            correct: None,
        }
    }

    /// The same completion with its answer known to be correct or not.
    pub fn with_correct(mut self, correct: bool) -> Self {
        self.correct = Some(correct);
        self
    }
}

/// A completed request: the tokens refunded, and what a learner needs to know about
/// it (its grant, the censoring point of a cut-off completion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    /// Tokens credited back to the window that paid for the grant.
    pub credited: u64,
    /// The tokens the ticket granted.
    pub grant: u64,
    /// How the request ended.
    pub completion: Completion,
}

impl<C: Curve> OnlineAllocator<C> {
    /// [`complete`](Self::complete) that also says how the request ended, for a curve
    /// learner (`CurveLearner::observe`, feature `fit`): whether it stopped by itself
    /// and, when known, whether it was correct. The refund is the same.
    ///
    /// ```
    /// use clear_alloc::online::{Completion, OnlineAllocator};
    /// use clear_alloc::{Query, ShiftedSurge};
    ///
    /// let online = OnlineAllocator::builder().tokens_per_window(10_000).build()?;
    /// let query = Query::new(ShiftedSurge::new(151.0, 101.0, 0.9)?).with_cap(800);
    /// let ticket = online.admit(&query)?;
    /// let done = online.complete_with(ticket, Completion::finished(320).with_correct(true))?;
    /// assert_eq!((done.grant, done.credited), (800, 480));
    /// # Ok::<(), clear_alloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`complete`](Self::complete), with `tokens_used` meaning
    /// [`Completion::used`].
    pub fn complete_with(&self, ticket: Ticket, completion: Completion) -> Result<Completed> {
        let grant = ticket.tokens;
        let credited = self.complete(ticket, completion.used)?;
        Ok(Completed {
            credited,
            grant,
            completion,
        })
    }

    /// Reports that a request finished after generating `tokens_used` tokens, and
    /// refunds the unused part of its grant to its window if that window is still
    /// open. Returns the tokens credited back (0 when the window has ended).
    ///
    /// # Errors
    /// - [`Error::InvalidParameter`] (field `ticket`) when the ticket was issued by
    ///   another allocator; nothing is refunded.
    /// - [`Error::InvalidParameter`] (field `tokens_used`) when `tokens_used` exceeds
    ///   the grant; the request is still completed (with nothing to refund).
    pub fn complete(&self, ticket: Ticket, tokens_used: u64) -> Result<u64> {
        if ticket.allocator != self.id {
            return Err(Error::invalid_parameter(
                "ticket",
                ticket.allocator,
                "was issued by a different online allocator",
            ));
        }
        let unused = ticket.tokens.saturating_sub(tokens_used);
        let mut credited = 0;
        if unused > 0 {
            let shard = &self.shards[shard_index()];
            credited = match self.refund_to_shard(shard, &ticket, unused) {
                Some(credited) => credited,
                None => self.refund_to_pool(&ticket, unused),
            };
            if credited > 0 {
                shard.credited.fetch_add(credited, Ordering::Relaxed);
            }
        }
        if tokens_used > ticket.tokens {
            return Err(Error::invalid_parameter(
                "tokens_used",
                tokens_used,
                "exceeds the tokens the ticket granted",
            ));
        }
        Ok(credited)
    }

    /// Credits `unused` tokens of `ticket` to the completing thread's shard while it
    /// is open in the ticket's window: `Some(credited)` (0 when the window has
    /// ended), or `None` when the pool must take them (the shard is closed, or not
    /// yet moved to the ticket's window by an `end_window` in progress, or would
    /// reach the closed mark).
    #[inline]
    fn refund_to_shard(&self, shard: &Shard, ticket: &Ticket, unused: u64) -> Option<u64> {
        let mut state = shard.state.load(Ordering::Acquire);
        loop {
            let held = packed_remaining(state);
            if packed_epoch(state) != short_epoch(ticket.epoch)
                || held == CLOSED
                || held + unused >= CLOSED
            {
                return None;
            }
            // The packed epoch changes with every window, so the compare-and-swap
            // fails if the window ends in between: a refund can only reach the
            // window that paid for it. The full count rules out a wrapped epoch.
            if self.epoch.load(Ordering::Acquire) != ticket.epoch {
                return Some(0);
            }
            match shard.state.compare_exchange_weak(
                state,
                state + unused,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(unused),
                Err(now) => state = now,
            }
        }
    }

    /// Credits `unused` tokens of `ticket` to the central pool if the ticket's window
    /// is still open; returns the tokens credited.
    #[cold]
    #[inline(never)]
    fn refund_to_pool(&self, ticket: &Ticket, unused: u64) -> u64 {
        let mut state = self.central.window_state.load(Ordering::Acquire);
        while packed_epoch(state) == short_epoch(ticket.epoch)
            && self.epoch.load(Ordering::Acquire) == ticket.epoch
        {
            let remaining = packed_remaining(state) + unused;
            // A refund returns tokens granted from what this allocator held, so it never
            // lifts the held tokens above what the window leased (≤ the budget).
            debug_assert!(remaining <= self.budget, "refund above the budget");
            let next = pack(packed_epoch(state), remaining.min(self.budget));
            match self.central.window_state.compare_exchange_weak(
                state,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return unused,
                Err(now) => state = now,
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::online;
    use super::*;
    use crate::{Query, ShiftedSurge};

    fn query() -> Query {
        Query::new(ShiftedSurge::new(100.0, 100.0, 0.9).unwrap()).with_cap(1_000)
    }

    #[test]
    fn a_refund_reaches_the_open_window_that_paid_for_it() {
        let online = online(5_000);
        let ticket = online.admit(&query()).unwrap();
        assert_eq!((ticket.tokens(), ticket.window()), (1_000, 0));
        assert_eq!(online.complete(ticket, 250).unwrap(), 750);
        assert_eq!(online.remaining(), 4_750);
    }

    #[test]
    fn complete_with_refunds_like_complete_and_reports_the_grant() {
        let online = online(5_000);
        let ticket = online.admit(&query()).unwrap();
        let done = online
            .complete_with(ticket, Completion::cut_off(1_000).with_correct(false))
            .unwrap();
        assert_eq!(done.credited, 0);
        assert_eq!(done.grant, 1_000);
        assert!(!done.completion.finished);
        assert_eq!(done.completion.correct, Some(false));
        let ticket = online.admit(&query()).unwrap();
        let done = online
            .complete_with(ticket, Completion::finished(400))
            .unwrap();
        assert_eq!((done.credited, online.remaining()), (600, 3_600));
        let ticket = online.admit(&query()).unwrap();
        let err = online
            .complete_with(ticket, Completion::finished(1_001))
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidParameter {
                field: "tokens_used",
                ..
            }
        ));
    }

    #[test]
    fn a_refund_after_the_window_ended_is_not_carried_over() {
        let online = online(5_000);
        let ticket = online.admit(&query()).unwrap();
        online.end_window();
        assert_eq!(online.complete(ticket, 0).unwrap(), 0);
        assert_eq!(online.remaining(), 5_000);
    }

    #[test]
    fn a_foreign_ticket_or_an_overrun_is_an_error_that_names_its_field() {
        let (a, b) = (online(5_000), online(5_000));
        let ticket = a.admit(&query()).unwrap();
        let err = b.complete(ticket, 0).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidParameter {
                field: "ticket",
                ..
            }
        ));
        let ticket = a.admit(&query()).unwrap();
        let err = a.complete(ticket, 1_001).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidParameter {
                field: "tokens_used",
                ..
            }
        ));
        assert_eq!(a.remaining(), 3_000, "nothing refunded on an overrun");
    }
}
