//! Builders the online module's unit tests share.

use super::OnlineAllocator;
use crate::ShiftedSurge;

/// A valid curve; panics on invalid parameters, which only a test can pass.
pub(super) fn curve(t: f64, w: f64, p: f64) -> ShiftedSurge {
    ShiftedSurge::new(t, w, p).unwrap()
}

/// An in-process allocator with `budget` tokens per window and a 4 096-token cap.
pub(super) fn online(budget: u64) -> OnlineAllocator {
    OnlineAllocator::builder()
        .tokens_per_window(budget)
        .default_cap(4096)
        .build()
        .unwrap()
}
