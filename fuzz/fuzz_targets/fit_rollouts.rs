//! Rollout files (CSV or JSON lines, chosen by the first byte) → the readers → the
//! fit → the `queries` document `clear-alloc fit` prints → `clear-alloc allocate`.
//! Checks that nothing panics and that what the fit returns is usable: one curve per
//! query in input order, counts that match the rollouts, insolvent ⇔ no correct
//! rollout, and a printed document that allocates without error.
#![no_main]

use clear_alloc::fit::{read_rollouts_csv, read_rollouts_jsonl, RolloutFit};
use clear_alloc_cli::allocate::{run_allocate, AllocateOptions};
use clear_alloc_cli::wire::QuerySpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, text)) = data.split_first() else {
        return;
    };
    let read = if mode & 1 == 0 {
        read_rollouts_csv(text)
    } else {
        read_rollouts_jsonl(text)
    };
    let Ok(queries) = read else {
        return;
    };
    let mut builder = RolloutFit::builder()
        .censoring(mode & 2 == 0)
        .min_correct(2 + usize::from(mode >> 5));
    if mode & 4 != 0 {
        // A sampling cap from the input's own lengths, so that some rollouts hit it.
        let cap = queries
            .iter()
            .flat_map(|q| &q.rollouts)
            .map(|r| r.tokens)
            .max()
            .unwrap_or(1)
            .max(1);
        builder = builder.sampling_cap(cap);
    }
    let Ok(fits) = builder.build().expect("valid options").fit_many(&queries) else {
        return;
    };
    assert_eq!(fits.len(), queries.len());
    for (fit, query) in fits.iter().zip(&queries) {
        assert_eq!(fit.id, query.id);
        assert_eq!(fit.counts.rollouts, query.rollouts.len());
        let correct = query.rollouts.iter().filter(|r| r.correct).count();
        assert_eq!(fit.counts.correct, correct);
        assert_eq!(fit.insolvent, correct == 0, "{fit:?}");
        if fit.insolvent {
            assert_eq!(fit.curve.ceiling(), 0.0, "{fit:?}");
        }
        if let Some(ks) = fit.ks_distance {
            assert!((0.0..=1.0).contains(&ks), "{fit:?}");
        }
    }
    // What `clear-alloc fit | clear-alloc allocate --budget 1000` does.
    let specs: Vec<QuerySpec> = fits.iter().map(QuerySpec::from).collect();
    let document = serde_json::json!({ "budget": 1000, "queries": specs }).to_string();
    if let Err(message) = run_allocate(document.as_bytes(), &AllocateOptions::default()) {
        panic!("the fit's output does not allocate: {message}\n{document}");
    }
});
