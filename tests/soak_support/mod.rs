//! The soak tier's switch for the property suites: one config helper that gives CI a
//! fixed seed and the suite's own case count, and gives the soak run
//! (`cargo test --release --tests -- --ignored`) [`SOAK_CASES`] cases from a fresh seed, so the
//! same property bodies run at both depths.
//!
//! A soak failure prints its seed; `CLEAR_ALLOC_SOAK_SEED=<seed>` repeats the run, and
//! `CLEAR_ALLOC_SOAK_CASES=<n>` changes its depth.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use proptest::test_runner::{Config, RngSeed};

/// Cases per property in the soak tier.
pub const SOAK_CASES: u32 = 100_000;

thread_local! {
    /// Whether the properties running on this thread are soaking; proptest runs a
    /// property's cases on the calling thread.
    static SOAKING: Cell<bool> = const { Cell::new(false) };
}

/// The proptest config of a property: `cases` cases from the fixed `seed` (so CI runs
/// the same cases every time), or in the soak tier [`SOAK_CASES`] from a fresh seed.
pub fn config(cases: u32, seed: u64) -> Config {
    if !SOAKING.with(Cell::get) {
        return Config {
            rng_seed: RngSeed::Fixed(seed),
            ..Config::with_cases(cases)
        };
    }
    let seed = env_number("CLEAR_ALLOC_SOAK_SEED").unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        now.as_secs() ^ u64::from(now.subsec_nanos()).rotate_left(32)
    });
    let cases = env_number("CLEAR_ALLOC_SOAK_CASES").map_or(SOAK_CASES, |n| n as u32);
    eprintln!("  {cases} cases, seed {seed} (CLEAR_ALLOC_SOAK_SEED={seed} repeats them)");
    Config {
        rng_seed: RngSeed::Fixed(seed),
        ..Config::with_cases(cases)
    }
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
    )
}

/// Runs `properties` (the test functions that `proptest!` generated) in soak mode.
pub fn soak(properties: &[(&str, fn())]) {
    SOAKING.with(|s| s.set(true));
    for (name, property) in properties {
        eprintln!("soak: {name}");
        property();
    }
    SOAKING.with(|s| s.set(false));
}

/// Declares the file's `soak` test: the named properties in soak mode, ignored unless
/// asked for with `--ignored`.
macro_rules! soak_properties {
    ($($property:ident),+ $(,)?) => {
        /// The soak tier (`cargo test --release --tests -- --ignored`): this file's properties
        /// at `SOAK_CASES` cases each, from fresh seeds.
        #[test]
        #[ignore = "soak tier: cargo test --release --tests -- --ignored"]
        fn soak() {
            soak_support::soak(&[$((stringify!($property), $property as fn())),+]);
        }
    };
}
