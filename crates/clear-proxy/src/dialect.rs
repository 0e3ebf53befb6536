//! Engine dialects: where a grant is written in an OpenAI-compatible request body.
//!
//! Every dialect sets the completion-token limit (`max_tokens`, and
//! `max_completion_tokens` when the client used it) to the thinking grant plus the
//! answer reserve. Engines that enforce a separate thinking budget also get the
//! thinking grant in their own field.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The engine behind the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Dialect {
    /// Plain OpenAI API: only `max_tokens` / `max_completion_tokens` are written.
    Openai,
    /// vLLM: the thinking grant goes into `thinking_token_budget`.
    Vllm,
    /// SGLang: the thinking grant goes into `chat_template_kwargs.thinking_budget`
    /// (the chat-template hint; set `thinking_field` for the strict or
    /// logit-processor budget).
    Sglang,
    /// NVIDIA Dynamo: the thinking grant goes into `nvext.max_thinking_tokens`.
    Dynamo,
}

impl Dialect {
    /// Dotted path of the dialect's thinking-budget field, if it has one.
    pub fn thinking_field(self) -> Option<&'static [&'static str]> {
        match self {
            Dialect::Openai => None,
            Dialect::Vllm => Some(&["thinking_token_budget"]),
            Dialect::Sglang => Some(&["chat_template_kwargs", "thinking_budget"]),
            Dialect::Dynamo => Some(&["nvext", "max_thinking_tokens"]),
        }
    }
}

/// Where the thinking grant goes: the configured path, else the dialect's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinkingField(Option<Vec<String>>);

impl ThinkingField {
    /// The field of `dialect`, unless `custom` (a dotted path split on `.`) overrides it.
    pub fn new(dialect: Dialect, custom: Option<&[String]>) -> Self {
        ThinkingField(match custom {
            Some(path) => Some(path.to_vec()),
            None => dialect
                .thinking_field()
                .map(|p| p.iter().map(|s| s.to_string()).collect()),
        })
    }

    /// The dotted name, for error messages.
    pub fn name(&self) -> Option<String> {
        self.0.as_ref().map(|p| p.join("."))
    }

    /// Reads the field from a request body (the client's own thinking cap).
    pub fn get<'a>(&self, body: &'a Map<String, Value>) -> Option<&'a Value> {
        let path = self.0.as_ref()?;
        let (last, parents) = path.split_last()?;
        let mut object = body;
        for key in parents {
            object = object.get(key)?.as_object()?;
        }
        object.get(last)
    }

    /// Writes `tokens` into the field, creating parent objects (a parent that is not
    /// an object is replaced: the request was validated before, see
    /// [`crate::request`]).
    pub fn set(&self, body: &mut Map<String, Value>, tokens: u64) {
        let Some((last, parents)) = self.0.as_ref().and_then(|p| p.split_last()) else {
            return;
        };
        let mut object = body;
        for key in parents {
            let slot = object
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            object = match slot {
                Value::Object(map) => map,
                _ => return,
            };
        }
        object.insert(last.clone(), Value::from(tokens));
    }

    /// Whether the dialect has a thinking field at all.
    pub fn exists(&self) -> bool {
        self.0.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_dialect_writes_its_own_field() {
        let cases = [
            (Dialect::Vllm, json!({"thinking_token_budget": 300})),
            (
                Dialect::Sglang,
                json!({"chat_template_kwargs": {"thinking_budget": 300}}),
            ),
            (
                Dialect::Dynamo,
                json!({"nvext": {"max_thinking_tokens": 300}}),
            ),
            (Dialect::Openai, json!({})),
        ];
        for (dialect, expected) in cases {
            let field = ThinkingField::new(dialect, None);
            let mut body = Map::new();
            field.set(&mut body, 300);
            assert_eq!(Value::Object(body.clone()), expected, "{dialect:?}");
            if field.exists() {
                assert_eq!(field.get(&body), Some(&json!(300)));
            }
        }
    }

    #[test]
    fn setting_keeps_sibling_fields() {
        let field = ThinkingField::new(Dialect::Dynamo, None);
        let mut body = json!({"nvext": {"top_k": 5}}).as_object().unwrap().clone();
        field.set(&mut body, 7);
        assert_eq!(
            Value::Object(body),
            json!({"nvext": {"top_k": 5, "max_thinking_tokens": 7}})
        );
    }
}
