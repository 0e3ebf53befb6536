//! `admit`, `admit_prepared` and `complete` must not allocate (the hot path of a server). A counting
//! global allocator checks it; this file holds a single test so that no other test's
//! allocations can be counted.

use clear_alloc::online::{OnlineAllocator, OnlineAllocatorBuilder};
use clear_alloc::{Mixture, Query, ShiftedSurge};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwards the caller's layout unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn admit_and_complete_do_not_allocate() {
    let online = OnlineAllocator::builder()
        .tokens_per_window(200_000)
        .default_cap(4096)
        .initial_price(5e-4)
        .samples_per_window(64)
        .build()
        .unwrap();
    let queries: Vec<Query> = (0..500)
        .map(|i| {
            let curve =
                ShiftedSurge::new(50.0 + 3.0 * i as f64, 100.0 + (i % 7) as f64 * 40.0, 0.9);
            Query::new(curve.unwrap()).with_id(format!("q{i}"))
        })
        .collect();
    // Warm up: fill the reservoir past its capacity and roll a window, so the counted
    // loop sees both the filling and the replacing branch of the sampler.
    for q in &queries {
        let _ = online.admit(q).unwrap();
    }
    online.end_window();

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut granted = 0;
    for q in &queries {
        let ticket = online.admit(q).unwrap();
        let used = ticket.tokens() / 3;
        granted += ticket.tokens();
        online.complete(ticket, used).unwrap();
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(
        granted > 0,
        "the loop must grant something to mean anything"
    );
    assert_eq!(after - before, 0, "allocations in 500 admit + complete");

    // Prepared once (that allocates nothing either for a surge), admitted many times,
    // across a price change so that the cache is refilled in the counted loop.
    let prepared: Vec<_> = queries.iter().map(|q| online.prepare(q)).collect();
    online.end_window();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut granted = 0;
    for p in prepared.iter().chain(&prepared) {
        let ticket = online.admit_prepared(p).unwrap();
        let used = ticket.tokens() / 3;
        granted += ticket.tokens();
        online.complete(ticket, used).unwrap();
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(granted > 0);
    assert_eq!(
        after - before,
        0,
        "allocations in 1 000 admit_prepared + complete"
    );

    // Mixtures too: their bidder and the sample's copy share the curve's components.
    let mixtures = OnlineAllocatorBuilder::<Mixture>::new()
        .tokens_per_window(200_000)
        .initial_price(5e-4)
        .samples_per_window(64)
        .build()
        .unwrap();
    let queries: Vec<Query<Mixture>> = (0..500)
        .map(|i| {
            let surge = |t: f64| ShiftedSurge::new(t, 100.0 + (i % 7) as f64 * 40.0, 0.9);
            let low = 50.0 + 3.0 * i as f64;
            let curve =
                Mixture::new([(0.5, surge(low).unwrap()), (0.5, surge(2.0 * low).unwrap())]);
            Query::new(curve.unwrap()).with_cap(4096)
        })
        .collect();
    for q in &queries {
        let _ = mixtures.admit(q).unwrap();
    }
    mixtures.end_window();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut granted = 0;
    for q in &queries {
        let ticket = mixtures.admit(q).unwrap();
        granted += ticket.tokens();
        mixtures.complete(ticket, 0).unwrap();
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(granted > 0);
    assert_eq!(
        after - before,
        0,
        "allocations in 500 mixture admit + complete"
    );
}
