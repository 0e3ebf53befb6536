//! OpenAI-style error responses: `{"error": {"message", "type", "param", "code"}}`.
//!
//! Clients of an OpenAI-compatible endpoint already parse this shape, so every
//! failure the proxy reports (bad input, abandonment, upstream trouble) uses it, with
//! `param` naming the offending field or header.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// HTTP status (400, 413, 429, 502, 503, 504).
    pub status: StatusCode,
    /// Human-readable explanation, naming the field and the value where there is one.
    pub message: String,
    /// OpenAI error `type`, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// The field or header at fault (`max_tokens`, `x-clear-threshold`).
    pub param: Option<String>,
    /// Machine-readable code, e.g. `invalid_value`, `budget_exhausted`.
    pub code: &'static str,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A 400 about one field: `"<param>: <reason>"`.
    pub fn invalid(param: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        let param = param.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("{param}: {reason}"),
            kind: "invalid_request_error",
            param: Some(param),
            code: "invalid_value",
            retry_after: None,
        }
    }

    /// A 413: the body is larger than the configured limit.
    pub fn too_large(limit: usize) -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("body: larger than the limit of {limit} bytes"),
            kind: "invalid_request_error",
            param: Some("body".into()),
            code: "body_too_large",
            retry_after: None,
        }
    }

    /// A 429 for an abandoned request: the window's price is above what the request's
    /// curve can pay; retry after the window ends.
    pub fn abandoned(price: f64, retry_after: u64) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "reasoning budget: the request cannot pay the current price of {price:.3e} per token \
                 (rational abandonment); retry after the window ends in {retry_after} s"
            ),
            kind: "rate_limit_error",
            param: None,
            code: "budget_exhausted",
            retry_after: Some(retry_after),
        }
    }

    /// A 502: the upstream refused, failed or answered with an error.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_GATEWAY,
            message: message.into(),
            kind: "upstream_error",
            param: None,
            code: "upstream_failed",
            retry_after: None,
        }
    }

    /// A 504: the upstream did not answer in time.
    pub fn timeout(after: std::time::Duration) -> Self {
        ApiError {
            status: StatusCode::GATEWAY_TIMEOUT,
            message: format!("upstream: no answer within {} ms", after.as_millis()),
            kind: "upstream_error",
            param: None,
            code: "upstream_timeout",
            retry_after: None,
        }
    }

    /// A 503: the proxy is shutting down and cancelled the request.
    pub fn shutting_down() -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message:
                "clear-proxy is shutting down; the request was cancelled and its grant refunded"
                    .into(),
            kind: "server_error",
            param: None,
            code: "shutting_down",
            retry_after: Some(1),
        }
    }

    /// The JSON body, also used for the error event of a stream that fails midway.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body().to_string(),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_names_the_field() {
        let e = ApiError::invalid("max_tokens", "must be an integer >= 1, got -3");
        let body = e.body();
        assert_eq!(body["error"]["param"], "max_tokens");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(
            body["error"]["message"],
            "max_tokens: must be an integer >= 1, got -3"
        );
    }

    #[test]
    fn abandonment_carries_retry_after() {
        let response = ApiError::abandoned(1e-3, 7).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }
}
