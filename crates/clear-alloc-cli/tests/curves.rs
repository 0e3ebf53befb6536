//! The curve kinds of the JSON contract (`mixture`, `points`, `rollouts`), through the
//! real binary.

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `clear-alloc allocate` on `request`: exit success, stdout, stderr.
fn allocate(request: &serde_json::Value) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clear-alloc"))
        .arg("allocate")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `p · [1 − (1 + z) e^(−z)]`, written out here rather than taken from the library.
fn surge(tau: f64, width: f64, ceiling: f64, b: f64) -> f64 {
    let z = ((b - tau) / width).max(0.0);
    ceiling * (1.0 - (1.0 + z) * (-z).exp())
}

#[test]
fn a_batch_mixes_every_curve_kind_and_reports_utility_on_the_curves_as_given() {
    let request = serde_json::json!({
        "budget": 2400,
        "default_cap": 4096,
        "queries": [
            {"id": "surge", "threshold": 150, "width": 100, "ceiling": 0.9},
            {"id": "mixture", "mixture": [
                {"weight": 1, "threshold": 100, "width": 80, "ceiling": 0.9},
                {"weight": 3, "threshold": 400, "width": 80, "ceiling": 0.9}
            ]},
            {"id": "points", "points": [[100, 0.0], [300, 0.6], [600, 0.8]]},
            {"id": "rollouts", "rollouts": [
                {"tokens": 200, "correct": true},
                {"tokens": 350, "correct": true},
                {"tokens": 500, "correct": false},
                {"tokens": 4096, "correct": false, "truncated": true}
            ]}
        ]
    });
    let (ok, stdout, stderr) = allocate(&request);
    assert!(ok, "{stderr}");
    let response: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let grants: Vec<f64> = response["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["tokens"].as_f64().unwrap())
        .collect();
    assert_eq!(grants.len(), 4);
    assert!(grants.iter().sum::<f64>() <= 2400.0);
    // Each query's utility, computed here from its spec.
    let b = &grants;
    let points = |x: f64| {
        if x <= 100.0 {
            0.0
        } else if x <= 300.0 {
            0.6 * (x - 100.0) / 200.0
        } else if x <= 600.0 {
            0.6 + 0.2 * (x - 300.0) / 300.0
        } else {
            0.8
        }
    };
    let rollouts = |x: f64| [200.0, 350.0].iter().filter(|&&l| l <= x).count() as f64 / 4.0;
    let expected = [
        surge(150.0, 100.0, 0.9, b[0]),
        0.25 * surge(100.0, 80.0, 0.9, b[1]) + 0.75 * surge(400.0, 80.0, 0.9, b[1]),
        points(b[2]),
        rollouts(b[3]),
    ];
    for (i, e) in expected.iter().enumerate() {
        let reported = response["allocations"][i]["utility"].as_f64().unwrap();
        assert!((reported - e).abs() < 1e-12, "query {i}: {reported} vs {e}");
    }
    let total = response["expected_utility"].as_f64().unwrap();
    assert!((total - expected.iter().sum::<f64>()).abs() < 1e-12);
    // The empirical curve is worth buying only at a step: at 200 or 350 tokens.
    assert!(b[3] == 0.0 || b[3] == 200.0 || b[3] == 350.0, "{b:?}");
    // Everything is solvent here at 600 tokens per query.
    assert!(grants.iter().all(|&g| g > 0.0), "{b:?}");
}

#[test]
fn malformed_curves_get_one_line_errors_naming_the_query_and_field() {
    let cases = [
        (
            serde_json::json!({"id": "m", "mixture": [
                {"weight": -1, "threshold": 100, "width": 80, "ceiling": 0.9}]}),
            "query 0 (id \"m\"): mixture.weight = -1 is invalid",
        ),
        (
            serde_json::json!({"mixture": [
                {"weight": 1, "threshold": 100, "width": 0, "ceiling": 0.9}]}),
            "query 0: mixture.width = 0 is invalid",
        ),
        (
            serde_json::json!({"mixture": []}),
            "query 0: mixture.weight = 0 is invalid",
        ),
        (
            serde_json::json!({"points": [[100, 0.5], [200, 0.4]]}),
            "query 0: points.utility = 0.4 is invalid: must not decrease",
        ),
        (
            serde_json::json!({"points": [[200, 0.5], [100, 0.6]]}),
            "query 0: points.tokens = 100 is invalid: must increase strictly",
        ),
        (
            serde_json::json!({"points": []}),
            "query 0: points = 0 is invalid",
        ),
        (
            serde_json::json!({"rollouts": []}),
            "query 0: rollouts is empty",
        ),
        (
            serde_json::json!({"points": [[100, 0.5]], "threshold": 10}),
            "query 0: points conflicts with threshold",
        ),
        (
            serde_json::json!({"points": [[100, 0.5]], "rollouts": [{"tokens": 5, "correct": true}]}),
            "query 0: rollouts conflicts with another curve",
        ),
        (
            serde_json::json!({"points": [[100, 0.5, 7]]}),
            "queries[0].points[0]",
        ),
        (
            serde_json::json!({"rollouts": [{"tokens": -5, "correct": true}]}),
            "queries[0].rollouts[0].tokens",
        ),
    ];
    for (query, start) in cases {
        let request = serde_json::json!({"budget": 1000, "queries": [query]});
        let (ok, stdout, stderr) = allocate(&request);
        assert!(!ok, "{query}: {stdout}");
        assert!(stderr.contains(start), "{query}: {stderr:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr:?}");
    }
}
