//! Reading one query of the plainest form without `serde`: an object whose keys are
//! among `id`, `threshold`, `width`, `ceiling`, `alpha`, `beta`, `cap` and `weight`,
//! each once, with numbers, `null`, or an id with no escape. Most large requests are
//! nothing else, and reading them so takes a fraction of the time.
//!
//! Anything else — another key, an escape, a negative number, a duplicate, malformed
//! JSON — is not read here but left to `serde_json`, which reads it (or names its
//! error) as it reads every query; what is read here is what `serde_json` reads from
//! the same bytes, number for number (both round to the nearest `f64`).

use crate::request::BorrowedId;
use crate::wire::QueryFields;

/// The query object starting at `input[at]` and the position just after its `}`;
/// `None` unless it is of the plain form.
pub(crate) fn read_query(input: &[u8], at: usize) -> Option<(QueryFields<BorrowedId<'_>>, usize)> {
    let mut query = QueryFields::default();
    let mut at = skip_whitespace(input, at);
    (input.get(at) == Some(&b'{')).then_some(())?;
    at = skip_whitespace(input, at + 1);
    if input.get(at) == Some(&b'}') {
        return Some((query, at + 1));
    }
    loop {
        // Keys are matched as bytes: one that is not UTF-8 is none of these.
        let (key, after) = string_bytes(input, at)?;
        at = skip_whitespace(input, after);
        (input.get(at) == Some(&b':')).then_some(())?;
        at = skip_whitespace(input, at + 1);
        at = match key {
            b"id" => value(input, at, &mut query.id, |input, at| {
                let (id, after) = string_bytes(input, at)?;
                let id = std::str::from_utf8(id).ok()?;
                Some((BorrowedId(id.into()), after))
            })?,
            b"threshold" => value(input, at, &mut query.threshold, number)?,
            b"width" => value(input, at, &mut query.width, number)?,
            b"ceiling" => value(input, at, &mut query.ceiling, number)?,
            b"alpha" => value(input, at, &mut query.alpha, number)?,
            b"beta" => value(input, at, &mut query.beta, number)?,
            b"cap" => value(input, at, &mut query.cap, whole_number)?,
            b"weight" => value(input, at, &mut query.weight, number)?,
            _ => return None,
        };
        at = skip_whitespace(input, at);
        match input.get(at)? {
            b',' => at = skip_whitespace(input, at + 1),
            b'}' => return Some((query, at + 1)),
            _ => return None,
        }
    }
}

/// Reads the value at `at` into `slot` with `read`; the position after the value.
/// `None` for a key given twice (an error for `serde_json` to name) and for `null`
/// (left to it, so that it also sees a key given after its `null`).
fn value<'a, T>(
    input: &'a [u8],
    at: usize,
    slot: &mut Option<T>,
    read: impl Fn(&'a [u8], usize) -> Option<(T, usize)>,
) -> Option<usize> {
    if slot.is_some() {
        return None;
    }
    let (value, after) = read(input, at)?;
    *slot = Some(value);
    Some(after)
}

/// The bytes of the string at `at` if it holds no escape and no control character,
/// and the position after its closing quote.
fn string_bytes(input: &[u8], at: usize) -> Option<(&[u8], usize)> {
    (input.get(at) == Some(&b'"')).then_some(())?;
    let len = input[at + 1..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    let end = at + 1 + len;
    (input[end] == b'"').then_some((&input[at + 1..end], end + 1))
}

/// The JSON number at `at`, if it is not negative and is finite as an `f64`, and the
/// position after it.
fn number(input: &[u8], at: usize) -> Option<(f64, usize)> {
    let end = number_end(input, at)?;
    let text = std::str::from_utf8(&input[at..end]).ok()?;
    let x: f64 = text.parse().ok()?;
    x.is_finite().then_some((x, end))
}

/// The JSON number at `at` if it is a whole number (no fraction, no exponent) that
/// fits in a `u64`, and the position after it.
fn whole_number(input: &[u8], at: usize) -> Option<(u64, usize)> {
    let end = number_end(input, at)?;
    let text = std::str::from_utf8(&input[at..end]).ok()?;
    Some((text.parse().ok()?, end))
}

/// The end of the JSON number (by its grammar, without a sign) at `at`.
fn number_end(input: &[u8], at: usize) -> Option<usize> {
    let digits = |from: usize| {
        let count = input[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        (count > 0).then_some(from + count)
    };
    let mut end = match input.get(at)? {
        b'0' => at + 1,
        b'1'..=b'9' => digits(at)?,
        _ => return None,
    };
    if input.get(end) == Some(&b'.') {
        end = digits(end + 1)?;
    }
    if let Some(b'e' | b'E') = input.get(end) {
        end += 1;
        if let Some(b'+' | b'-') = input.get(end) {
            end += 1;
        }
        end = digits(end)?;
    }
    Some(end)
}

/// The first byte at or after `at` that is not JSON whitespace (or the length).
fn skip_whitespace(input: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = input.get(at) {
        at += 1;
    }
    at
}

/// What `serde_json` reads from the value starting at `input[at]`, and the position
/// just after it; `None` if it refuses it.
fn serde_json_read(input: &[u8], at: usize) -> Option<(QueryFields<BorrowedId<'_>>, usize)> {
    let mut reader = serde_json::Deserializer::from_slice(input.get(at..)?)
        .into_iter::<QueryFields<BorrowedId<'_>>>();
    let query = reader.next()?.ok()?;
    Some((query, at + reader.byte_offset()))
}

/// Checks the module's contract on `input` from `at`: whatever [`read_query`] reads,
/// `serde_json` reads too, with the same fields, every number equal to the bit (`Debug`
/// prints an `f64` so that it reads back to the same bits, and tells `-0.0` from
/// `0.0`), ending at the same byte. Whether it was read here; panics naming the input
/// where the two differ. The unit tests and the `plain_query` fuzz target share it.
pub(crate) fn read_as_serde_json_reads(input: &[u8], at: usize) -> bool {
    let read = read_query(input, at);
    if let Some((query, end)) = &read {
        // Shown only on failure: building it for every input would slow the fuzzing.
        let shown = || String::from_utf8_lossy(input);
        let (expected, expected_end) = serde_json_read(input, at)
            .unwrap_or_else(|| panic!("read here, refused by serde_json: {}", shown()));
        assert_eq!(format!("{query:?}"), format!("{expected:?}"), "{}", shown());
        assert_eq!(*end, expected_end, "{}", shown());
    }
    read.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Checks [`read_as_serde_json_reads`] on the whole of `input`.
    fn read_as_serde(input: &str) -> bool {
        read_as_serde_json_reads(input.as_bytes(), 0)
    }

    #[test]
    fn plain_queries_are_read_as_serde_json_reads_them() {
        for input in [
            r#"{"id":"q0","threshold":878.1,"width":295.0,"ceiling":0.485}"#,
            r#" { "threshold" : 0 , "alpha":2e-6,"beta":3.57E+3, "cap": 18446744073709551615,
                "weight": 12345678901234567890123, "id": "é ~" } ,"#,
            "{\"id\":\"\u{7f}\"}",
            r#"{"threshold":1e-400,"width":0.1000000000000000055511151231257827,"ceiling":1}"#,
            r#"{}"#,
        ] {
            assert!(read_as_serde(input), "{input}");
        }
    }

    #[test]
    fn anything_else_is_left_to_serde_json() {
        for input in [
            r#"{"threshold":-0,"width":1,"ceiling":1}"#,
            r#"{"threshold":1,"threshold":2}"#,
            r#"{"threshold":null,"threshold":2}"#,
            r#"{"id":"a\"b","threshold":1}"#,
            r#"{"thres\u0068old":1}"#,
            r#"{"threshold":01}"#,
            r#"{"threshold":1.}"#,
            r#"{"threshold":.5}"#,
            r#"{"threshold":1e400}"#,
            r#"{"threshold":1e}"#,
            r#"{"cap":1.0}"#,
            r#"{"cap":18446744073709551616}"#,
            r#"{"mixture":[]}"#,
            r#"{"other":1}"#,
            "{\"id\":\"a\tb\"}",
            r#"{"threshold":1,}"#,
            r#"{"threshold":1 "width":1}"#,
            r#"{"threshold":true}"#,
            r#"[1,2,3]"#,
            r#"{"threshold":1"#,
        ] {
            assert!(!read_as_serde(input), "{input}");
        }
        let invalid_utf8 = b"{\"id\":\"\xff\"}";
        assert!(read_query(invalid_utf8, 0).is_none());
    }

    #[test]
    fn random_and_damaged_queries_read_as_serde_json_reads_them_or_are_left_to_it() {
        let mut rng = StdRng::seed_from_u64(5);
        let keys = [
            "id",
            "threshold",
            "width",
            "ceiling",
            "alpha",
            "beta",
            "cap",
            "weight",
        ];
        let values = [
            "0",
            "7",
            "-3",
            "0.5",
            "1e5",
            "2.5E-3",
            "1e309",
            "null",
            "\"q\"",
            "\"é\\n\"",
            "00",
            "18446744073709551615",
            "1.7976931348623157e308",
            "4.9e-324",
            "123456789.123456789",
        ];
        let mut read_here = 0;
        for _ in 0..20_000 {
            let fields: Vec<String> = (0..rng.random_range(0..6))
                .map(|_| {
                    let key = keys[rng.random_range(0..keys.len())];
                    let value = values[rng.random_range(0..values.len())];
                    let space = [" ", "", "\n\t"][rng.random_range(0..3)];
                    format!("\"{key}\"{space}:{space}{value}")
                })
                .collect();
            let mut input = format!("{{{}}}", fields.join(","));
            if rng.random_bool(0.3) {
                // One byte changed: anything may follow.
                let at = rng.random_range(0..input.len());
                let byte = b" \",:{}[]0123456789.eE-+\\nx"[rng.random_range(0..26)];
                let mut bytes = input.into_bytes();
                bytes[at] = byte;
                let Ok(damaged) = String::from_utf8(bytes) else {
                    continue;
                };
                input = damaged;
            }
            read_here += usize::from(read_as_serde(&input));
        }
        // The plain forms are common among these: most are read here.
        assert!(read_here > 2_000, "{read_here}");
    }
}
