//! Reading rollouts from CSV (header `query_id,tokens,correct,truncated`, columns in
//! any order, extra columns ignored) and from JSON lines with the same fields.
//!
//! Fields are read as text and converted here rather than by serde's derive, so that
//! an error names the line and the field rather than a byte offset.

use std::io::{BufRead, Read};

use super::{QueryRollouts, Rollout};
use crate::error::{Error, Result};

const FIELDS: [&str; 4] = ["query_id", "tokens", "correct", "truncated"];

/// Groups rollouts by query id, queries in order of first appearance.
#[derive(Default)]
struct Grouper {
    queries: Vec<QueryRollouts>,
    index: std::collections::HashMap<String, usize>,
}

impl Grouper {
    fn push(&mut self, id: &str, rollout: Rollout) {
        let next = self.queries.len();
        let at = *self.index.entry(id.to_owned()).or_insert(next);
        if at == next {
            self.queries.push(QueryRollouts {
                id: id.to_owned(),
                rollouts: Vec::new(),
            });
        }
        self.queries[at].rollouts.push(rollout);
    }
}

fn parse_error(line: usize, field: &str, reason: impl Into<String>) -> Error {
    Error::Parse {
        line,
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn parse_tokens(line: usize, text: &str) -> Result<u64> {
    text.trim().parse::<u64>().map_err(|_| {
        parse_error(
            line,
            "tokens",
            format!("{text:?} is not a whole number of tokens >= 0"),
        )
    })
}

fn parse_flag(line: usize, field: &str, text: &str) -> Result<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(parse_error(
            line,
            field,
            format!("{text:?} is not a boolean (true/false, 1/0, yes/no)"),
        )),
    }
}

fn parse_id(line: usize, text: &str) -> Result<&str> {
    let id = text.trim();
    if id.is_empty() {
        Err(parse_error(line, "query_id", "is empty"))
    } else {
        Ok(id)
    }
}

/// Reads rollouts from CSV with a header naming the columns `query_id`, `tokens`,
/// `correct` and `truncated`.
///
/// ```
/// use clear_alloc::fit::read_rollouts_csv;
///
/// let csv = "query_id,tokens,correct,truncated\nq1,250,true,false\nq2,4096,false,true\nq1,90,0,0\n";
/// let queries = read_rollouts_csv(csv.as_bytes())?;
/// assert_eq!(queries.len(), 2);
/// assert_eq!(queries[0].id, "q1");
/// assert_eq!(queries[0].rollouts.len(), 2);
/// assert!(queries[1].rollouts[0].truncated);
///
/// let err = read_rollouts_csv("query_id,tokens,correct,truncated\nq1,-5,true,false\n".as_bytes())
///     .unwrap_err();
/// assert!(err.to_string().starts_with("line 2: field `tokens`"));
/// # Ok::<(), clear_alloc::Error>(())
/// ```
///
/// # Errors
/// [`Error::Parse`] naming the line (the header is line 1) and the field: a missing
/// column, a malformed record, a non-integer or negative token count, a flag that is
/// not a boolean, an empty id.
pub fn read_rollouts_csv(reader: impl Read) -> Result<Vec<QueryRollouts>> {
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| parse_error(1, "header", e.to_string()))?
        .clone();
    let mut columns = [0usize; 4];
    for (slot, name) in columns.iter_mut().zip(FIELDS) {
        *slot = headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| parse_error(1, name, "column is missing from the header"))?;
    }
    let mut grouper = Grouper::default();
    for (i, record) in csv.records().enumerate() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(i + 2, |p| p.line() as usize);
            parse_error(line, "record", e.to_string())
        })?;
        let line = record.position().map_or(i + 2, |p| p.line() as usize);
        let field = |k: usize| record.get(columns[k]).unwrap_or("");
        let id = parse_id(line, field(0))?;
        let rollout = Rollout {
            tokens: parse_tokens(line, field(1))?,
            correct: parse_flag(line, "correct", field(2))?,
            truncated: parse_flag(line, "truncated", field(3))?,
        };
        grouper.push(id, rollout);
    }
    Ok(grouper.queries)
}

/// Reads rollouts from JSON lines, one object per line with the fields `query_id`
/// (string), `tokens` (integer), `correct` and `truncated` (booleans); blank lines are
/// skipped.
///
/// ```
/// use clear_alloc::fit::read_rollouts_jsonl;
///
/// let jsonl = r#"{"query_id": "q1", "tokens": 250, "correct": true, "truncated": false}
/// {"query_id": "q1", "tokens": 4096, "correct": false, "truncated": true}"#;
/// let queries = read_rollouts_jsonl(jsonl.as_bytes())?;
/// assert_eq!(queries[0].rollouts.len(), 2);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
///
/// # Errors
/// [`Error::Parse`] naming the 1-based line and the field that is missing or has the
/// wrong type, or `record` for a line that is not a JSON object.
pub fn read_rollouts_jsonl(reader: impl BufRead) -> Result<Vec<QueryRollouts>> {
    let mut grouper = Grouper::default();
    for (i, text) in reader.lines().enumerate() {
        let line = i + 1;
        let text = text.map_err(|e| parse_error(line, "record", e.to_string()))?;
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| parse_error(line, "record", e.to_string()))?;
        let object = value
            .as_object()
            .ok_or_else(|| parse_error(line, "record", "is not a JSON object"))?;
        let get = |name: &str| {
            object
                .get(name)
                .ok_or_else(|| parse_error(line, name, "is missing"))
        };
        let id = get("query_id")?
            .as_str()
            .ok_or_else(|| parse_error(line, "query_id", "is not a string"))?;
        let id = parse_id(line, id)?;
        let tokens = get("tokens")?
            .as_u64()
            .ok_or_else(|| parse_error(line, "tokens", "is not a whole number of tokens >= 0"))?;
        let flag = |name: &str| {
            get(name)?
                .as_bool()
                .ok_or_else(|| parse_error(line, name, "is not a boolean"))
        };
        let rollout = Rollout {
            tokens,
            correct: flag("correct")?,
            truncated: flag("truncated")?,
        };
        grouper.push(id, rollout);
    }
    Ok(grouper.queries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_errors_name_line_and_field() {
        let cases = [
            ("query_id,tokens,correct\nq,1,true\n", 1, "truncated"),
            (
                "query_id,tokens,correct,truncated\nq,1,true,false\nq,1.5,true,false\n",
                3,
                "tokens",
            ),
            (
                "query_id,tokens,correct,truncated\nq,1,maybe,false\n",
                2,
                "correct",
            ),
            (
                "query_id,tokens,correct,truncated\n,1,true,false\n",
                2,
                "query_id",
            ),
            ("query_id,tokens,correct,truncated\nq,1,true\n", 2, "record"),
        ];
        for (input, line, field) in cases {
            match read_rollouts_csv(input.as_bytes()) {
                Err(Error::Parse {
                    line: l, field: f, ..
                }) => {
                    assert_eq!((l, f.as_str()), (line, field), "input {input:?}")
                }
                other => panic!("input {input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn csv_columns_may_come_in_any_order() {
        let input = "truncated,correct,tokens,query_id,model\nno,yes,12,a,m\n";
        let queries = read_rollouts_csv(input.as_bytes()).unwrap();
        assert_eq!(queries[0].rollouts, vec![Rollout::correct(12)]);
    }

    #[test]
    fn jsonl_errors_name_line_and_field() {
        let input = "{\"query_id\":\"a\",\"tokens\":1,\"correct\":true,\"truncated\":false}\n\n\
                     {\"query_id\":\"a\",\"tokens\":-1,\"correct\":true,\"truncated\":false}\n";
        assert!(matches!(
            read_rollouts_jsonl(input.as_bytes()),
            Err(Error::Parse { line: 3, ref field, .. }) if field == "tokens"
        ));
        let missing = "{\"query_id\":\"a\",\"tokens\":1,\"correct\":true}\n";
        assert!(matches!(
            read_rollouts_jsonl(missing.as_bytes()),
            Err(Error::Parse { line: 1, ref field, .. }) if field == "truncated"
        ));
        assert!(read_rollouts_jsonl("[1]\n".as_bytes()).is_err());
    }
}
