//! Reading the programs' input within a size limit, and keeping what is echoed from it
//! on one line.
//!
//! ```
//! use clear_alloc_cli::input::{one_line, read_bounded};
//!
//! let input = read_bounded(&b"{}"[..], 10, "stdin", "--max-request-bytes")?;
//! assert_eq!(input, b"{}");
//! let err = read_bounded(&[b' '; 11][..], 10, "stdin", "--max-request-bytes").unwrap_err();
//! assert!(err.contains("more than 10 bytes"), "{err}");
//! assert_eq!(one_line("unknown field `a\nb`"), "unknown field `a\\nb`");
//! # Ok::<(), String>(())
//! ```

use std::io::Read;

/// Reads all of `reader`, but never more than `limit + 1` bytes: input beyond `limit`
/// is an error naming `source` and the `flag` that raises the limit, so an endless or
/// huge stream costs at most `limit` bytes of memory.
///
/// # Errors
/// A one-line message when reading fails or the input is longer than `limit`.
pub fn read_bounded(
    reader: impl Read,
    limit: u64,
    source: &str,
    flag: &str,
) -> Result<Vec<u8>, String> {
    let mut input = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut input)
        .map_err(|e| one_line(&format!("{source}: {e}")))?;
    check_size(input.len(), limit, source, flag)?;
    Ok(input)
}

/// The error for an input of `len` bytes when at most `limit` are accepted.
pub(crate) fn check_size(len: usize, limit: u64, source: &str, flag: &str) -> Result<(), String> {
    if len as u64 > limit {
        Err(one_line(&format!(
            "{source}: input is more than {limit} bytes, the limit ({flag} raises it)"
        )))
    } else {
        Ok(())
    }
}

/// `message` with every control character (newline, carriage return, escape, …) and
/// the Unicode line and paragraph separators written as an escape, so that an error
/// that echoes input (a field name, an id) is still one line on stderr.
pub fn one_line(message: &str) -> String {
    let mut line = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            line.extend(c.escape_debug());
        } else {
            line.push(c);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(one_line("a\r\nb\tc\u{1b}[2J"), "a\\r\\nb\\tc\\u{1b}[2J");
        assert_eq!(one_line("é \u{2028}"), "é \\u{2028}");
        assert_eq!(one_line("plain `q1`"), "plain `q1`");
    }

    #[test]
    fn exactly_the_limit_is_accepted_one_more_byte_is_not() {
        assert_eq!(read_bounded(&[7u8; 4][..], 4, "f", "--x").unwrap().len(), 4);
        let err = read_bounded(&[7u8; 5][..], 4, "f", "--x").unwrap_err();
        assert_eq!(
            err,
            "f: input is more than 4 bytes, the limit (--x raises it)"
        );
    }

    #[test]
    fn an_endless_reader_stops_at_the_limit() {
        let err = read_bounded(std::io::repeat(b'x'), 1 << 20, "stdin", "--x").unwrap_err();
        assert!(
            err.starts_with("stdin: input is more than 1048576 bytes"),
            "{err}"
        );
    }
}
