//! The `clear-alloc` program on inputs that once surprised it (issue 13): run as a
//! process, checking stdout, stderr and the exit status.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_clear-alloc");

struct Output {
    status: i32,
    stdout: String,
    stderr: String,
}

/// The program with `args`, every stream piped.
fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = spawn(args);
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    // A broken pipe is what a refused oversized input gives the writer; ignore it.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Output {
        status: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Asserts a failure with one line on stderr that starts with `start`.
fn assert_one_line_error(out: &Output, status: i32, start: &str) {
    assert_eq!(out.status, status, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr.matches('\n').count(),
        1,
        "not one line: {:?}",
        out.stderr
    );
    assert!(out.stderr.ends_with('\n'));
    assert!(out.stderr.starts_with(start), "{:?}", out.stderr);
}

const QUERY: &str = r#"{"threshold": 100, "width": 50, "ceiling": 0.9}"#;

#[test]
fn trailing_input_after_the_request_is_refused() {
    let out = run(
        &["allocate"],
        br#"{"budget":10,"queries":[]}{"budget":"x"} junk"#,
    );
    assert_one_line_error(
        &out,
        1,
        "error: request: trailing characters at line 1 column 27",
    );
    // Trailing whitespace is not input.
    let fine = run(&["allocate"], b"{\"budget\":10,\"queries\":[]}\n\n  \t\n");
    assert_eq!(fine.status, 0, "{}", fine.stderr);
}

#[test]
fn errors_that_echo_input_stay_on_one_line() {
    let out = run(
        &["allocate"],
        b"{\"budget\":1,\"queries\":[],\"a\\nb\\u001b[2J\":1}",
    );
    assert_one_line_error(
        &out,
        1,
        "error: a\\nb\\u{1b}[2J: unknown field `a\\nb\\u{1b}[2J`",
    );
    let id = br#"{"budget":1,"queries":[{"id":"x\r\ny","threshold":-1,"width":1,"ceiling":1}]}"#;
    let out = run(&["allocate"], id);
    assert_one_line_error(&out, 1, "error: query 0 (id \"x\\r\\ny\"): threshold = -1");
    let out = run(&["allocate", "--bud\nget", "5"], b"");
    assert_one_line_error(&out, 2, "error: unknown option \"--bud\\nget\"");
    // A quoted CSV id with a line break, in an error from the fit itself.
    let csv = "query_id,tokens,correct,truncated\n\"a\nb\",500,true,false\n";
    let out = run(&["fit", "--sampling-cap", "100"], csv.as_bytes());
    assert_one_line_error(&out, 1, "fit: query 0 (id \"a\\nb\"): tokens = 500");
}

#[test]
fn an_overflowing_total_utility_is_refused_naming_the_query() {
    let heavy = r#"{"threshold": 1, "width": 1, "ceiling": 1, "weight": 1e308}"#;
    let request = format!(r#"{{"budget": 100, "queries": [{heavy}, {heavy}]}}"#);
    let out = run(&["allocate"], request.as_bytes());
    assert_one_line_error(
        &out,
        1,
        "error: query 1: weight = 1e308 is invalid: makes the batch's total utility",
    );
    // One such query alone is representable, and answered.
    let one = format!(r#"{{"budget": 100, "queries": [{heavy}]}}"#);
    let out = run(&["allocate"], one.as_bytes());
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("null"), "{}", out.stdout);
}

/// The value after `"key":` in the response, read by Rust's own parser.
fn number_after(json: &str, key: &str) -> f64 {
    let start = json.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
    let text: String = json[start..]
        .trim_start()
        .chars()
        .take_while(|c| !matches!(c, ',' | '\n' | '}'))
        .collect();
    text.parse().unwrap()
}

#[test]
fn numbers_are_read_to_the_nearest_f64() {
    // Decimal strings that serde_json's default (fast) parser reads one ulp off; found
    // by comparing it against `str::parse` on random 17-digit decimals.
    for price in [
        "1.8271138339594778e-16",
        "9.5233071271705465e-21",
        "8.3575876580499574e-38",
    ] {
        let request = format!(r#"{{"price": {price}, "queries": []}}"#);
        let out = run(&["allocate"], request.as_bytes());
        assert_eq!(out.status, 0, "{}", out.stderr);
        assert_eq!(
            number_after(&out.stdout, "price"),
            price.parse::<f64>().unwrap(),
            "{price}"
        );
    }
}

#[test]
fn zeros_are_reported_without_a_sign() {
    let empty = run(&["allocate"], br#"{"budget": 100, "queries": []}"#);
    assert_eq!(empty.status, 0, "{}", empty.stderr);
    assert!(
        empty.stdout.contains("\"expected_utility\":0.0"),
        "{}",
        empty.stdout
    );
    let request = format!(r#"{{"queries": [{QUERY}]}}"#);
    for price in ["-0", "-0.0"] {
        let out = run(&["allocate", "--price", price], request.as_bytes());
        assert_eq!(out.status, 0, "{}", out.stderr);
        assert!(out.stdout.contains("\"price\":0.0"), "{}", out.stdout);
        assert!(!out.stdout.contains("-0"), "{}", out.stdout);
    }
}

#[test]
fn whole_numbers_in_errors_are_printed_in_full() {
    let csv = "query_id,tokens,correct,truncated\nq,18446744073709551615,true,false\n";
    let out = run(&["fit", "--sampling-cap", "100"], csv.as_bytes());
    assert_one_line_error(
        &out,
        1,
        "fit: query 0 (id \"q\"): tokens = 18446744073709551615 is invalid: exceeds the sampling cap",
    );
}

#[test]
fn bad_command_lines_exit_with_status_2() {
    let out = run(&["allocate", "--budget", "ten"], b"{}");
    assert_one_line_error(&out, 2, "error: --budget \"ten\": invalid digit");
    let out = run(&["allocate", "--max-queries"], b"{}");
    assert_one_line_error(&out, 2, "error: \"--max-queries\" needs a value");
    let out = run(&["fit", "--min-correct", "1"], b"");
    assert_one_line_error(&out, 2, "fit: option min_correct = 1 is invalid");
}

#[test]
fn requests_over_the_query_limit_are_refused() {
    let request = |n: usize| {
        format!(
            r#"{{"budget": 1000, "queries": [{}]}}"#,
            vec![QUERY; n].join(",")
        )
    };
    let out = run(&["allocate", "--max-queries", "3"], request(4).as_bytes());
    assert_one_line_error(
        &out,
        1,
        "error: request: 4 queries, more than the limit of 3 (--max-queries raises it)",
    );
    let out = run(&["allocate", "--max-queries", "3"], request(3).as_bytes());
    assert_eq!(out.status, 0, "{}", out.stderr);
}

#[test]
fn requests_over_the_byte_limit_are_refused() {
    let request = format!(r#"{{"budget": 1000, "queries": [{QUERY}]}}"#);
    let limit = request.len().to_string();
    let out = run(
        &["allocate", "--max-request-bytes", &limit],
        request.as_bytes(),
    );
    assert_eq!(out.status, 0, "{}", out.stderr);
    let longer = format!("{request} ");
    let out = run(
        &["allocate", "--max-request-bytes", &limit],
        longer.as_bytes(),
    );
    assert_one_line_error(
        &out,
        1,
        &format!("error: stdin: input is more than {limit} bytes, the limit (--max-request-bytes raises it)"),
    );
}

/// Runs the program on an endless stdin: it must stop reading at its limit and fail
/// rather than buffer input until memory runs out.
fn run_on_endless_stdin(args: &[&str], line: &'static [u8]) -> Output {
    let mut child = spawn(args);
    let mut pipe = child.stdin.take().unwrap();
    std::thread::spawn(move || while pipe.write_all(line).is_ok() {});
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still reading an endless stdin after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Output {
        status: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[test]
fn an_endless_stdin_is_refused_at_the_default_limits() {
    let out = run_on_endless_stdin(&["allocate"], b"                                ");
    assert_one_line_error(
        &out,
        1,
        "error: stdin: input is more than 67108864 bytes, the limit (--max-request-bytes raises it)",
    );
    let out = run_on_endless_stdin(
        &["fit", "--max-input-bytes", "1000000"],
        b"q,1,true,false\n",
    );
    assert_one_line_error(
        &out,
        1,
        "fit: stdin: input is more than 1000000 bytes, the limit (--max-input-bytes raises it)",
    );
}

#[test]
fn fit_input_over_the_rollout_limit_is_refused() {
    let csv =
        "query_id,tokens,correct,truncated\nq,10,true,false\nq,20,true,false\nq,30,false,false\n";
    let out = run(&["fit", "--max-rollouts", "2"], csv.as_bytes());
    assert_one_line_error(
        &out,
        1,
        "fit: stdin: 3 rollouts, more than the limit of 2 (--max-rollouts raises it)",
    );
    let out = run(&["fit", "--max-rollouts", "3"], csv.as_bytes());
    assert_eq!(out.status, 0, "{}", out.stderr);
}

#[test]
fn the_response_is_compact_unless_pretty_and_the_same_either_way() {
    let request = format!(
        r#"{{"budget": 500, "queries": [{QUERY}, {{"id": "b", "threshold": 20, "width": 90, "ceiling": 0.5}}]}}"#
    );
    let compact = run(&["allocate"], request.as_bytes());
    let pretty = run(&["allocate", "--pretty"], request.as_bytes());
    assert_eq!(compact.status, 0, "{}", compact.stderr);
    assert_eq!(pretty.status, 0, "{}", pretty.stderr);
    // One line: no newline but the last, no space outside strings (none hold one here).
    assert_eq!(
        compact.stdout.matches('\n').count(),
        1,
        "{}",
        compact.stdout
    );
    assert!(compact.stdout.ends_with("}\n"), "{}", compact.stdout);
    assert!(!compact.stdout.contains(' '), "{}", compact.stdout);
    // Indented: one field a line.
    assert!(
        pretty.stdout.contains("\n  \"total_tokens\": "),
        "{}",
        pretty.stdout
    );
    assert!(pretty.stdout.ends_with("}\n"), "{}", pretty.stdout);
    let read = |json: &str| serde_json::from_str::<serde_json::Value>(json).unwrap();
    assert_eq!(read(&compact.stdout), read(&pretty.stdout));
    // And the answer is the request's: both queries, ids echoed in order.
    let value = read(&compact.stdout);
    assert_eq!(value["allocations"].as_array().unwrap().len(), 2);
    assert_eq!(value["allocations"][0].get("id"), None);
    assert_eq!(value["allocations"][1]["id"], "b");
}
