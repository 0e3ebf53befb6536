//! Parsing a client's request and writing a grant into it.
//!
//! [`parse_request`] is the proxy's whole input surface for a completion request
//! (headers and body): it validates what the proxy relies on, finds the class and
//! the curve, and never panics. The body is kept as a JSON object, so fields the proxy
//! does not know pass through to the engine untouched.

use crate::classes::{given_curve, ClassTable};
use crate::dialect::ThinkingField;
use crate::error::ApiError;
use axum::http::HeaderMap;
use clear_alloc::ShiftedSurge;
use serde_json::{Map, Value};

/// The OpenAI endpoints the proxy allocates for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
}

impl Endpoint {
    /// The path under the upstream's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
        }
    }
}

/// What [`parse_request`] checks a request against.
#[derive(Debug, Clone, Copy)]
pub struct RequestRules<'a> {
    /// The classes and their priors.
    pub classes: &'a ClassTable,
    /// The engine's thinking-budget field.
    pub thinking_field: &'a ThinkingField,
    /// Largest `max_tokens` (and thinking budget) a client may ask for.
    pub max_tokens_limit: u64,
}

/// A validated request, ready to receive a grant.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    body: Map<String, Value>,
    /// The endpoint it was sent to.
    pub endpoint: Endpoint,
    /// Its class's name.
    pub class: String,
    /// Its curve of accuracy against thinking tokens.
    pub curve: ShiftedSurge,
    /// Whether the client gave the curve (`x-clear-*` headers) rather than taking its
    /// class's: then it is admitted on it as given and not learned from.
    pub curve_given: bool,
    /// Completion tokens kept for the answer on top of the thinking grant.
    pub answer_reserve: u64,
    /// Most thinking tokens it may be granted (the class's cap, and the client's own
    /// thinking budget if it sent one).
    pub max_thinking_tokens: u64,
    /// The client's own completion limit (`max_tokens` / `max_completion_tokens`).
    pub client_max_tokens: Option<u64>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether the client asked for the final usage chunk of a stream itself.
    pub client_wants_usage: bool,
    /// The `model` field.
    pub model: Option<String>,
}

/// A non-negative integer field, at most `limit`; `None` when absent or null.
fn token_count(
    value: Option<&Value>,
    name: &str,
    min: u64,
    limit: u64,
) -> Result<Option<u64>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=limit).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::invalid(
                name,
                format!("must be an integer in {min} ..= {limit}, got {v}"),
            )),
        },
    }
}

fn optional_bool(body: &Map<String, Value>, name: &str) -> Result<bool, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(ApiError::invalid(
            name,
            format!("must be a boolean, got {v}"),
        )),
    }
}

/// Validates a completion request and finds its class and curve.
///
/// `route_class` is the class named in the path (`/classes/{class}/v1/...`), if any.
///
/// ```
/// use axum::http::HeaderMap;
/// use clear_proxy::{parse_request, ConfigBuilder, Endpoint};
///
/// let config = ConfigBuilder::from_toml(
///     "upstream = \"http://127.0.0.1:8000\"\ntokens_per_window = 10000\nwindow = 5.0\ndialect = \"vllm\"\nanswer_reserve = 100",
/// )?
/// .build()?;
/// let body = br#"{"model": "m", "messages": [], "max_tokens": 1000}"#;
/// let parsed = parse_request(config.request_rules(), Endpoint::ChatCompletions, None, &HeaderMap::new(), body)
///     .expect("a valid request");
/// assert_eq!(parsed.completion_cap(), 1000);
/// // A grant of 600 completion tokens: 500 to think, 100 for the answer.
/// let forwarded: serde_json::Value =
///     serde_json::from_slice(&parsed.granted_body(config.thinking_field(), 600))?;
/// assert_eq!(forwarded["thinking_token_budget"], 500);
/// assert_eq!(forwarded["max_tokens"], 600);
///
/// let bad = parse_request(config.request_rules(), Endpoint::ChatCompletions, None, &HeaderMap::new(), b"{\"messages\": [], \"max_tokens\": -1}");
/// assert_eq!(bad.unwrap_err().param.as_deref(), Some("max_tokens"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// A 400 [`ApiError`] naming the field or header: a body that is not a JSON object;
/// `model`, `stream`, `stream_options`, `messages`/`prompt` of the wrong type;
/// `max_tokens`/`max_completion_tokens` not an integer in 1 ..= the limit; `n` ≠ 1
/// (grants are per completion); a thinking budget of the wrong type; an unknown
/// class; a malformed `x-clear-*` header.
pub fn parse_request(
    rules: RequestRules<'_>,
    endpoint: Endpoint,
    route_class: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ParsedRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("is not valid JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    };
    let model = match body.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return Err(ApiError::invalid(
                "model",
                format!("must be a string, got {v}"),
            ))
        }
    };
    match endpoint {
        Endpoint::ChatCompletions => {
            if !body.get("messages").is_some_and(Value::is_array) {
                return Err(ApiError::invalid(
                    "messages",
                    "must be an array of messages",
                ));
            }
        }
        Endpoint::Completions => match body.get("prompt") {
            Some(Value::String(_)) | Some(Value::Array(_)) => {}
            _ => return Err(ApiError::invalid("prompt", "must be a string or an array")),
        },
    }
    let stream = optional_bool(&body, "stream")?;
    let client_wants_usage = match body.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => optional_bool(o, "include_usage")
            .map_err(|_| ApiError::invalid("stream_options.include_usage", "must be a boolean"))?,
        Some(v) => {
            return Err(ApiError::invalid(
                "stream_options",
                format!("must be an object, got {v}"),
            ))
        }
    };
    match body.get("n") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64() == Some(1) => {}
        Some(v) => {
            return Err(ApiError::invalid(
                "n",
                format!("only n = 1 is supported (a grant is per completion), got {v}"),
            ))
        }
    }
    let limit = rules.max_tokens_limit;
    let max_tokens = token_count(body.get("max_tokens"), "max_tokens", 1, limit)?;
    let max_completion = token_count(
        body.get("max_completion_tokens"),
        "max_completion_tokens",
        1,
        limit,
    )?;
    let client_max_tokens = match (max_tokens, max_completion) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let client_thinking = match rules.thinking_field.name() {
        Some(name) => {
            check_parents(&body, &name)?;
            token_count(rules.thinking_field.get(&body), &name, 0, limit)?
        }
        None => None,
    };
    let class = rules
        .classes
        .resolve(route_class, headers, model.as_deref())?;
    let given = given_curve(class, headers)?;
    let max_thinking_tokens = client_thinking.map_or(class.max_thinking_tokens, |c| {
        c.min(class.max_thinking_tokens)
    });
    Ok(ParsedRequest {
        body,
        endpoint,
        class: class.name.clone(),
        curve: given.unwrap_or(class.curve),
        curve_given: given.is_some(),
        answer_reserve: class.answer_reserve,
        max_thinking_tokens,
        client_max_tokens,
        stream,
        client_wants_usage,
        model,
    })
}

/// Every parent of a dotted field present in the body must be an object, so that the
/// grant can be written without discarding a client's value.
fn check_parents(body: &Map<String, Value>, dotted: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = dotted.split('.').collect();
    let mut object = body;
    for (depth, key) in parts.iter().enumerate().take(parts.len().saturating_sub(1)) {
        match object.get(*key) {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Object(o)) => object = o,
            Some(v) => {
                return Err(ApiError::invalid(
                    parts[..=depth].join("."),
                    format!("must be an object, got {v}"),
                ))
            }
        }
    }
    Ok(())
}

impl ParsedRequest {
    /// Most completion tokens (thinking + answer reserve) the request may be granted:
    /// never above the client's own limit.
    pub fn completion_cap(&self) -> u64 {
        let own = self.max_thinking_tokens.saturating_add(self.answer_reserve);
        self.client_max_tokens.map_or(own, |m| m.min(own))
    }

    /// The body to forward with a grant of `completion_tokens` (thinking grant +
    /// answer reserve): the limit fields set to it, the thinking field (if the dialect
    /// has one) to the thinking part, and the stream's usage chunk requested.
    pub fn granted_body(&self, field: &ThinkingField, completion_tokens: u64) -> Vec<u8> {
        let thinking = completion_tokens.saturating_sub(self.answer_reserve);
        self.body_with(Some(field), thinking, completion_tokens, None)
    }

    /// The body of the cheap path: thinking 0 where the dialect has the field, and at
    /// most `max_tokens` completion tokens.
    pub fn cheap_body(&self, field: &ThinkingField, max_tokens: u64) -> Vec<u8> {
        let limit = self
            .client_max_tokens
            .map_or(max_tokens, |m| m.min(max_tokens));
        self.body_with(Some(field), 0, limit, None)
    }

    /// The body for the fallback engine: its model (if given) and at most
    /// `max_tokens`, thinking fields left as the client sent them.
    pub fn fallback_body(&self, model: Option<&str>, max_tokens: u64) -> Vec<u8> {
        let limit = self
            .client_max_tokens
            .map_or(max_tokens, |m| m.min(max_tokens));
        self.body_with(None, 0, limit, model)
    }

    fn body_with(
        &self,
        field: Option<&ThinkingField>,
        thinking: u64,
        limit: u64,
        model: Option<&str>,
    ) -> Vec<u8> {
        let mut body = self.body.clone();
        if let Some(field) = field {
            field.set(&mut body, thinking);
        }
        let mut wrote = false;
        for name in ["max_tokens", "max_completion_tokens"] {
            if body.get(name).is_some_and(|v| !v.is_null()) {
                body.insert(name.into(), Value::from(limit));
                wrote = true;
            }
        }
        if !wrote {
            body.insert("max_tokens".into(), Value::from(limit));
        }
        if let Some(model) = model {
            body.insert("model".into(), Value::from(model));
        }
        if self.stream {
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            if let Value::Object(o) = options {
                o.insert("include_usage".into(), Value::Bool(true));
            }
        }
        // Serialising a `Map<String, Value>` cannot fail (string keys, finite numbers).
        serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::Dialect;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn rules<'a>(field: &'a ThinkingField, classes: &'a ClassTable) -> RequestRules<'a> {
        RequestRules {
            classes,
            thinking_field: field,
            max_tokens_limit: 100_000,
        }
    }

    fn classes() -> ClassTable {
        ClassTable::build(BTreeMap::new(), None, 100, 100_000).unwrap()
    }

    fn parse(dialect: Dialect, body: Value) -> Result<ParsedRequest, ApiError> {
        let field = ThinkingField::new(dialect, None);
        let classes = classes();
        parse_request(
            rules(&field, &classes),
            Endpoint::ChatCompletions,
            None,
            &HeaderMap::new(),
            body.to_string().as_bytes(),
        )
    }

    #[test]
    fn the_grant_never_exceeds_the_clients_limit() {
        let r = parse(Dialect::Vllm, json!({"messages": [], "max_tokens": 500})).unwrap();
        assert_eq!(r.completion_cap(), 500);
        let r = parse(
            Dialect::Vllm,
            json!({"messages": [], "max_tokens": 500, "max_completion_tokens": 300}),
        )
        .unwrap();
        assert_eq!(r.completion_cap(), 300);
        let r = parse(Dialect::Vllm, json!({"messages": []})).unwrap();
        assert_eq!(r.completion_cap(), 8192 + 100);
    }

    #[test]
    fn a_grant_is_written_in_the_dialect() {
        let field = ThinkingField::new(Dialect::Vllm, None);
        let r = parse(Dialect::Vllm, json!({"messages": [], "max_completion_tokens": 900, "stream": true, "extra": {"k": 1}})).unwrap();
        let out: Value = serde_json::from_slice(&r.granted_body(&field, 400)).unwrap();
        assert_eq!(out["thinking_token_budget"], 300);
        assert_eq!(out["max_completion_tokens"], 400);
        assert!(out.get("max_tokens").is_none());
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert_eq!(out["extra"], json!({"k": 1}));
        assert!(!r.client_wants_usage);
    }

    #[test]
    fn the_clients_thinking_budget_caps_the_grant() {
        let r = parse(
            Dialect::Dynamo,
            json!({"messages": [], "nvext": {"max_thinking_tokens": 50}}),
        )
        .unwrap();
        assert_eq!(r.max_thinking_tokens, 50);
        assert_eq!(r.completion_cap(), 150);
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let cases = [
            (json!([1, 2]), "body"),
            (json!({"messages": "hi"}), "messages"),
            (json!({"messages": [], "model": 3}), "model"),
            (json!({"messages": [], "stream": "yes"}), "stream"),
            (json!({"messages": [], "max_tokens": 0}), "max_tokens"),
            (json!({"messages": [], "max_tokens": -4}), "max_tokens"),
            (json!({"messages": [], "max_tokens": 1.5}), "max_tokens"),
            (json!({"messages": [], "max_tokens": 1e30}), "max_tokens"),
            (json!({"messages": [], "max_tokens": 100_001}), "max_tokens"),
            (
                json!({"messages": [], "max_completion_tokens": "9"}),
                "max_completion_tokens",
            ),
            (json!({"messages": [], "n": 3}), "n"),
            (
                json!({"messages": [], "stream_options": 1}),
                "stream_options",
            ),
            (json!({"messages": [], "nvext": 5}), "nvext"),
            (
                json!({"messages": [], "nvext": {"max_thinking_tokens": -1}}),
                "nvext.max_thinking_tokens",
            ),
        ];
        for (body, param) in cases {
            let err = parse(Dialect::Dynamo, body.clone()).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{body}: {err}");
            assert_eq!(err.status.as_u16(), 400);
        }
        let field = ThinkingField::new(Dialect::Openai, None);
        let classes = classes();
        let err = parse_request(
            rules(&field, &classes),
            Endpoint::ChatCompletions,
            None,
            &HeaderMap::new(),
            b"{not json",
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("body"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xC1EA_7010),
            ..proptest::prelude::ProptestConfig::with_cases(256)
        })]

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let field = ThinkingField::new(Dialect::Vllm, None);
            let classes = classes();
            let _ = parse_request(rules(&field, &classes), Endpoint::Completions, None, &HeaderMap::new(), &bytes);
        }

        /// Whatever the client's limit and the grant, the forwarded limit is the grant
        /// and the thinking field never exceeds it.
        #[test]
        fn forwarded_limits_respect_the_grant(max in 1u64..100_000, share in 0.0f64..=1.0) {
            let field = ThinkingField::new(Dialect::Sglang, None);
            let r = parse(Dialect::Sglang, json!({"messages": [], "max_tokens": max})).unwrap();
            let cap = r.completion_cap();
            proptest::prop_assert!(cap <= max);
            let grant = (cap as f64 * share) as u64;
            let out: Value = serde_json::from_slice(&r.granted_body(&field, grant)).unwrap();
            proptest::prop_assert_eq!(out["max_tokens"].as_u64(), Some(grant));
            let thinking = out["chat_template_kwargs"]["thinking_budget"].as_u64().unwrap();
            proptest::prop_assert!(thinking <= grant);
        }
    }
}
