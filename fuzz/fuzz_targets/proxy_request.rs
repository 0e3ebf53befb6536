//! The proxy's request parsing and rewriting: `clear_proxy::parse_request` on an
//! arbitrary body and arbitrary `x-clear-*` header values, under one of five configs
//! (the four dialects, and a custom dotted thinking field), then
//! `ParsedRequest::granted_body` / `cheap_body` for grants up to the request's cap.
//!
//! Input: byte 0 chooses the config (low 3 bits), the endpoint (bit 3) and whether a
//! route class is given (bit 4, the class named by the first header segment); the
//! rest is split on 0xFF: up to four header values (threshold, width, ceiling, class;
//! an empty segment means no header) and the body (the last segment).
//!
//! Checks beyond "no panic":
//! - an error is a 400 naming a field or header the parser knows, in one line;
//! - a parsed request's cap never exceeds the client's own `max_tokens` /
//!   `max_completion_tokens`, nor its thinking cap plus the answer reserve;
//! - every rewritten body is one JSON object; the limit fields written equal the grant
//!   (never above the client's own limit); the thinking field holds the thinking part
//!   where the dialect has one, and no dialect field is added or changed where it has
//!   none; a stream asks for usage; every other field is passed through unchanged.
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use clear_proxy::{parse_request, Config, ConfigBuilder, Endpoint, ParsedRequest};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// Every thinking-budget field a dialect (or the custom config) writes.
const THINKING_PATHS: [&[&str]; 4] = [
    &["thinking_token_budget"],
    &["chat_template_kwargs", "thinking_budget"],
    &["nvext", "max_thinking_tokens"],
    &["custom", "budget"],
];

const LIMIT: u64 = 100_000;

/// A dotted field as its keys.
type FieldPath = &'static [&'static str];

/// Each config with the thinking field it writes, if any.
fn configs() -> &'static [(Config, Option<FieldPath>)] {
    static CONFIGS: OnceLock<Vec<(Config, Option<FieldPath>)>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let dialects: [(&str, Option<FieldPath>); 5] = [
            ("dialect = \"openai\"", None),
            ("dialect = \"vllm\"", Some(THINKING_PATHS[0])),
            ("dialect = \"sglang\"", Some(THINKING_PATHS[1])),
            ("dialect = \"dynamo\"", Some(THINKING_PATHS[2])),
            (
                "dialect = \"vllm\"\nthinking_field = \"custom.budget\"",
                Some(THINKING_PATHS[3]),
            ),
        ];
        dialects
            .iter()
            .map(|(line, path)| {
                let toml = format!(
                    "upstream = \"http://127.0.0.1:8000\"\ntokens_per_window = 100000\n\
                     window = 5.0\nanswer_reserve = 100\nmax_tokens_limit = {LIMIT}\n{line}\n\
                     [classes.default]\nthreshold = 200.0\nwidth = 300.0\nceiling = 0.9\n\
                     max_thinking_tokens = 4000\n\
                     [classes.math]\nthreshold = 900.0\nwidth = 600.0\nceiling = 0.8\n\
                     answer_reserve = 50\nmodels = [\"m-math\"]\n"
                );
                let config = ConfigBuilder::from_toml(&toml)
                    .and_then(ConfigBuilder::build)
                    .expect("the fuzz configs are valid");
                (config, *path)
            })
            .collect()
    })
}

fn get<'a>(body: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut object = body;
    for key in parents {
        object = object.get(*key)?.as_object()?;
    }
    object.get(*last)
}

/// The fields a request error may name.
fn known_param(param: &str, thinking: Option<&[&str]>) -> bool {
    const FIELDS: [&str; 16] = [
        "body",
        "model",
        "messages",
        "prompt",
        "stream",
        "stream_options",
        "stream_options.include_usage",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "x-clear-threshold",
        "x-clear-width",
        "x-clear-ceiling",
        "x-clear-class",
        "x-clear-*",
        "route class",
    ];
    FIELDS.contains(&param)
        || thinking
            .is_some_and(|path| (1..=path.len()).any(|depth| path[..depth].join(".") == param))
}

/// Equal JSON, numbers up to the last bits of a float (serde_json's default float
/// parser is not correctly rounded, so a float may move by an ulp through a parse and
/// a print: not something the proxy decides).
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            x == y
                || match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                    _ => false,
                }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(Some(x), Some(y)))
        }
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            x.len() == y.len() && x.iter().all(|(k, v)| same(Some(v), y.get(k)))
        }
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn check_body(
    parsed: &ParsedRequest,
    original: &Map<String, Value>,
    written: &[u8],
    limit: u64,
    thinking: Option<(&[&str], u64)>,
) {
    let value: Value = serde_json::from_slice(written).expect("a rewritten body is JSON");
    let Value::Object(out) = value else {
        panic!("a rewritten body is an object")
    };
    let mut wrote_limit = false;
    for name in ["max_tokens", "max_completion_tokens"] {
        if let Some(v) = out.get(name).filter(|v| !v.is_null()) {
            wrote_limit = true;
            assert_eq!(v.as_u64(), Some(limit), "{name} is the limit");
        }
    }
    assert!(wrote_limit, "a limit field is written");
    if let Some(own) = parsed.client_max_tokens {
        assert!(limit <= own, "limit {limit} above the client's {own}");
    }
    // The dialect's thinking field holds the thinking part; the others are untouched.
    let own_path = thinking.map(|(p, _)| p);
    for path in THINKING_PATHS {
        if Some(path) == own_path {
            let tokens = thinking.map(|(_, t)| t);
            assert_eq!(get(&out, path).and_then(Value::as_u64), tokens, "{path:?}");
        } else if own_path.is_none_or(|own| own[0] != path[0]) {
            assert!(
                same(get(&out, path), get(original, path)),
                "{path:?} changed"
            );
        }
    }
    if parsed.stream {
        assert_eq!(out["stream_options"]["include_usage"], Value::Bool(true));
    }
    let rewritten = |key: &str| {
        matches!(
            key,
            "max_tokens" | "max_completion_tokens" | "stream_options"
        ) || own_path.is_some_and(|p| p[0] == key)
    };
    for (key, v) in original {
        if !rewritten(key) {
            assert!(same(out.get(key), Some(v)), "{key} passed through");
        }
    }
    for key in out.keys() {
        assert!(
            original.contains_key(key) || rewritten(key),
            "{key} was added"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let all = configs();
    let (config, thinking_path) = &all[usize::from(head & 7) % all.len()];
    let endpoint = if head & 8 == 0 {
        Endpoint::ChatCompletions
    } else {
        Endpoint::Completions
    };
    let mut segments: Vec<&[u8]> = rest.splitn(5, |&b| b == 0xFF).collect();
    let body = segments.pop().unwrap_or_default();
    let names = [
        "x-clear-threshold",
        "x-clear-width",
        "x-clear-ceiling",
        "x-clear-class",
    ];
    let mut headers = HeaderMap::new();
    for (name, value) in names.iter().zip(&segments) {
        if value.is_empty() {
            continue;
        }
        // Bytes HTTP cannot carry in a header never reach the parser.
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    let route = (head & 16 != 0).then(|| {
        String::from_utf8_lossy(segments.first().copied().unwrap_or_default()).into_owned()
    });
    let result = parse_request(
        config.request_rules(),
        endpoint,
        route.as_deref(),
        &headers,
        body,
    );
    let parsed = match result {
        Err(e) => {
            assert_eq!(e.status.as_u16(), 400, "{e:?}");
            let param = e.param.as_deref().expect("an error names a field");
            assert!(
                known_param(param, *thinking_path),
                "unknown field {param:?}: {e:?}"
            );
            assert!(!e.message.is_empty() && !e.message.contains('\n'), "{e:?}");
            return;
        }
        Ok(parsed) => parsed,
    };
    let Ok(Value::Object(original)) = serde_json::from_slice::<Value>(body) else {
        panic!("a parsed request's body is a JSON object");
    };
    let reserve = parsed.answer_reserve;
    let cap = parsed.completion_cap();
    assert!(cap <= parsed.max_thinking_tokens.saturating_add(reserve));
    if let Some(own) = parsed.client_max_tokens {
        assert!(cap <= own && own <= LIMIT, "cap {cap}, client {own}");
    }
    // The server forwards a grant only when it exceeds the reserve, and never above
    // the cap; try the extremes and the middle.
    let grants = [reserve + 1, (reserve + 1 + cap) / 2, cap];
    for grant in grants.into_iter().filter(|&g| g > reserve && g <= cap) {
        let thinking = grant - reserve;
        assert!(thinking <= parsed.max_thinking_tokens);
        if let Some(own) = thinking_path
            .and_then(|p| get(&original, p))
            .and_then(Value::as_u64)
        {
            assert!(
                thinking <= own,
                "thinking {thinking} above the client's {own}"
            );
        }
        let written = parsed.granted_body(config.thinking_field(), grant);
        check_body(
            &parsed,
            &original,
            &written,
            grant,
            thinking_path.map(|p| (p, thinking)),
        );
    }
    let cheap_limit = parsed.client_max_tokens.map_or(256, |own| own.min(256));
    let cheap = parsed.cheap_body(config.thinking_field(), 256);
    check_body(
        &parsed,
        &original,
        &cheap,
        cheap_limit,
        thinking_path.map(|p| (p, 0)),
    );
});
