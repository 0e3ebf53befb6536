//! The proxy's configuration file: `ConfigBuilder::from_toml` and `build` on arbitrary
//! text, what an operator's `--config` file can hold.
//!
//! Checks beyond "no panic":
//! - an error names the setting (a non-empty field) and says what is wrong with it;
//! - a built configuration's window is a positive number of seconds, at most a day;
//! - its request rules admit a plain chat request (a default class always exists).
#![no_main]

use axum::http::HeaderMap;
use clear_proxy::{parse_request, ConfigBuilder, Endpoint};
use libfuzzer_sys::fuzz_target;

const CHAT: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match ConfigBuilder::from_toml(text).and_then(ConfigBuilder::build) {
        Ok(config) => config,
        Err(e) => {
            assert!(!e.field.is_empty() && !e.reason.is_empty(), "{e:?}");
            return;
        }
    };
    let window = config.window().as_secs_f64();
    assert!(window > 0.0 && window <= 86_400.0, "window {window}");
    let parsed = parse_request(
        config.request_rules(),
        Endpoint::ChatCompletions,
        None,
        &HeaderMap::new(),
        CHAT,
    );
    assert!(parsed.is_ok(), "{text:?}: {parsed:?}");
});
