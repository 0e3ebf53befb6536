//! Request classes and their curves.
//!
//! A class groups requests whose accuracy-vs-budget curve is alike (a task type, a
//! tenant, a model). Each class has a prior curve, an answer reserve and a cap on the
//! thinking grant. A request's class comes from, in order: the route
//! (`/classes/{class}/v1/...`), the `x-clear-class` header, a class listing the
//! request's `model`, else the default class. A request may also carry its own curve
//! (a per-request threshold prediction) in `x-clear-threshold`, `x-clear-width` and
//! `x-clear-ceiling`; each given header replaces that parameter of the class's prior.

use crate::config::ConfigError;
use crate::error::ApiError;
use axum::http::HeaderMap;
use clear_alloc::ShiftedSurge;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// Header naming the request's class.
pub const CLASS_HEADER: &str = "x-clear-class";
/// Header carrying the request's emergence threshold, in tokens.
pub const THRESHOLD_HEADER: &str = "x-clear-threshold";
/// Header carrying the request's surge width, in tokens.
pub const WIDTH_HEADER: &str = "x-clear-width";
/// Header carrying the request's ceiling (accuracy plateau, in (0, 1]).
pub const CEILING_HEADER: &str = "x-clear-ceiling";

/// The prior curve used when no class is configured: a placeholder to start from until
/// classes are configured or requests carry their own threshold.
const DEFAULT_PRIOR: (f64, f64, f64) = (256.0, 512.0, 0.9);
/// The thinking cap when a class sets none.
const DEFAULT_MAX_THINKING: u64 = 8192;
/// Name of the class built when none is configured.
pub const DEFAULT_CLASS: &str = "default";

/// One class as written in the config file (`[classes.NAME]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClassSpec {
    /// Prior emergence threshold τ, in tokens.
    pub threshold: f64,
    /// Prior surge width w, in tokens.
    pub width: f64,
    /// Prior ceiling p, in (0, 1].
    pub ceiling: f64,
    /// Answer reserve of this class (default: the global `answer_reserve`).
    pub answer_reserve: Option<u64>,
    /// Most thinking tokens one request of the class may be granted (default 8192).
    pub max_thinking_tokens: Option<u64>,
    /// Model names whose requests belong to this class.
    #[serde(default)]
    pub models: Vec<String>,
}

/// A validated class.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    /// Its name (the metrics label).
    pub name: String,
    /// Its prior curve of accuracy against thinking tokens.
    pub curve: ShiftedSurge,
    /// Completion tokens kept for the answer on top of the thinking grant.
    pub answer_reserve: u64,
    /// Most thinking tokens one request may be granted.
    pub max_thinking_tokens: u64,
}

/// All classes, looked up by name and by model.
#[derive(Debug, Clone)]
pub struct ClassTable {
    classes: Vec<Class>,
    by_name: HashMap<String, usize>,
    by_model: HashMap<String, usize>,
    default: usize,
}

impl ClassTable {
    pub(crate) fn build(
        specs: BTreeMap<String, ClassSpec>,
        default_class: Option<String>,
        answer_reserve: u64,
        max_tokens_limit: u64,
    ) -> Result<Self, ConfigError> {
        let mut specs = specs;
        if specs.is_empty() || (default_class.is_none() && !specs.contains_key(DEFAULT_CLASS)) {
            let (threshold, width, ceiling) = DEFAULT_PRIOR;
            specs.entry(DEFAULT_CLASS.to_string()).or_insert(ClassSpec {
                threshold,
                width,
                ceiling,
                answer_reserve: None,
                max_thinking_tokens: None,
                models: Vec::new(),
            });
        }
        let mut table = ClassTable {
            classes: Vec::new(),
            by_name: HashMap::new(),
            by_model: HashMap::new(),
            default: 0,
        };
        for (name, spec) in specs {
            let field = |f: &str| format!("classes.{name}.{f}");
            let curve = ShiftedSurge::new(spec.threshold, spec.width, spec.ceiling)
                .map_err(|e| ConfigError::new(field("curve"), e.to_string()))?;
            let reserve = spec.answer_reserve.unwrap_or(answer_reserve);
            let max_thinking = spec.max_thinking_tokens.unwrap_or(DEFAULT_MAX_THINKING);
            if reserve > max_tokens_limit {
                return Err(ConfigError::new(
                    field("answer_reserve"),
                    "above max_tokens_limit",
                ));
            }
            if max_thinking == 0 || max_thinking > max_tokens_limit {
                return Err(ConfigError::new(
                    field("max_thinking_tokens"),
                    format!("must be in 1 ..= max_tokens_limit, got {max_thinking}"),
                ));
            }
            let index = table.classes.len();
            for model in spec.models {
                if table.by_model.insert(model.clone(), index).is_some() {
                    return Err(ConfigError::new(
                        field("models"),
                        format!("model {model:?} is listed by two classes"),
                    ));
                }
            }
            table.by_name.insert(name.clone(), index);
            table.classes.push(Class {
                name,
                curve,
                answer_reserve: reserve,
                max_thinking_tokens: max_thinking,
            });
        }
        let default_name = default_class.unwrap_or_else(|| DEFAULT_CLASS.to_string());
        table.default = *table.by_name.get(&default_name).ok_or_else(|| {
            ConfigError::new(
                "default_class",
                format!("{default_name:?} is not a configured class"),
            )
        })?;
        Ok(table)
    }

    /// The class of requests that name none.
    pub fn default_class(&self) -> &Class {
        &self.classes[self.default]
    }

    /// The names of all classes.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.classes.iter().map(|c| c.name.as_str())
    }

    /// All classes.
    pub fn iter(&self) -> impl Iterator<Item = &Class> {
        self.classes.iter()
    }

    /// The request's class: from the route, else the header, else its model, else
    /// the default.
    ///
    /// # Errors
    /// 400 naming `x-clear-class` (or the route) when the named class does not exist
    /// or the header is not UTF-8.
    pub fn resolve(
        &self,
        route_class: Option<&str>,
        headers: &HeaderMap,
        model: Option<&str>,
    ) -> Result<&Class, ApiError> {
        let named = |name: &str, param: &str| {
            self.by_name
                .get(name)
                .map(|&i| &self.classes[i])
                .ok_or_else(|| ApiError::invalid(param, format!("unknown class {name:?}")))
        };
        if let Some(name) = route_class {
            return named(name, "route class");
        }
        if let Some(value) = headers.get(CLASS_HEADER) {
            let name = value
                .to_str()
                .map_err(|_| ApiError::invalid(CLASS_HEADER, "is not visible ASCII"))?;
            return named(name.trim(), CLASS_HEADER);
        }
        if let Some(&i) = model.and_then(|m| self.by_model.get(m)) {
            return Ok(&self.classes[i]);
        }
        Ok(self.default_class())
    }
}

/// One curve parameter from a header, if present.
fn header_number(headers: &HeaderMap, name: &str) -> Result<Option<f64>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::invalid(name, "is not visible ASCII"))?;
    let number: f64 = text
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid(name, format!("must be a number, got {text:?}")))?;
    if !number.is_finite() {
        return Err(ApiError::invalid(
            name,
            format!("must be finite, got {text:?}"),
        ));
    }
    Ok(Some(number))
}

/// The request's curve: the class's prior with each parameter given in a header
/// replaced.
///
/// # Errors
/// 400 naming the header when it is not a finite number or the resulting curve is
/// invalid (negative threshold, width ≤ 0, ceiling outside (0, 1]).
pub fn request_curve(class: &Class, headers: &HeaderMap) -> Result<ShiftedSurge, ApiError> {
    Ok(given_curve(class, headers)?.unwrap_or(class.curve))
}

/// The curve the request's headers give (the class's prior for each parameter not
/// given), or `None` when it gives none.
///
/// # Errors
/// As [`request_curve`].
pub fn given_curve(class: &Class, headers: &HeaderMap) -> Result<Option<ShiftedSurge>, ApiError> {
    let threshold = header_number(headers, THRESHOLD_HEADER)?;
    let width = header_number(headers, WIDTH_HEADER)?;
    let ceiling = header_number(headers, CEILING_HEADER)?;
    if threshold.is_none() && width.is_none() && ceiling.is_none() {
        return Ok(None);
    }
    let prior = class.curve;
    ShiftedSurge::new(
        threshold.unwrap_or(prior.threshold()),
        width.unwrap_or(prior.width()),
        ceiling.unwrap_or(prior.ceiling()),
    )
    .map_err(|e| {
        // Name the header the core's error is about.
        let message = e.to_string();
        let param = if message.starts_with("threshold") {
            THRESHOLD_HEADER
        } else if message.starts_with("width") {
            WIDTH_HEADER
        } else if message.starts_with("ceiling") {
            CEILING_HEADER
        } else {
            "x-clear-*"
        };
        ApiError::invalid(param, message)
    })
    .map(Some)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// A `math` class (threshold 300, width 280, ceiling 0.4, reserve 64, for the
    /// model `qwen3-math`) beside the default one.
    pub(crate) fn table() -> ClassTable {
        let mut specs = BTreeMap::new();
        specs.insert(
            "math".to_string(),
            ClassSpec {
                threshold: 300.0,
                width: 280.0,
                ceiling: 0.4,
                answer_reserve: Some(64),
                max_thinking_tokens: Some(4096),
                models: vec!["qwen3-math".into()],
            },
        );
        ClassTable::build(specs, None, 256, 1 << 20).unwrap()
    }

    #[test]
    fn class_comes_from_route_then_header_then_model_then_default() {
        let t = table();
        let mut h = HeaderMap::new();
        assert_eq!(t.resolve(None, &h, Some("other")).unwrap().name, "default");
        assert_eq!(
            t.resolve(None, &h, Some("qwen3-math")).unwrap().name,
            "math"
        );
        h.insert(CLASS_HEADER, HeaderValue::from_static("default"));
        assert_eq!(
            t.resolve(None, &h, Some("qwen3-math")).unwrap().name,
            "default"
        );
        assert_eq!(t.resolve(Some("math"), &h, None).unwrap().name, "math");
        h.insert(CLASS_HEADER, HeaderValue::from_static("chemistry"));
        let err = t.resolve(None, &h, None).unwrap_err();
        assert_eq!(err.param.as_deref(), Some(CLASS_HEADER));
    }

    #[test]
    fn headers_replace_the_prior_and_bad_ones_are_400() {
        let t = table();
        let math = t.resolve(Some("math"), &HeaderMap::new(), None).unwrap();
        let mut h = HeaderMap::new();
        h.insert(THRESHOLD_HEADER, HeaderValue::from_static("120"));
        let c = request_curve(math, &h).unwrap();
        assert_eq!((c.threshold(), c.width(), c.ceiling()), (120.0, 280.0, 0.4));
        for (name, bad) in [
            (THRESHOLD_HEADER, "abc"),
            (THRESHOLD_HEADER, "NaN"),
            (THRESHOLD_HEADER, "-5"),
            (WIDTH_HEADER, "0"),
            (CEILING_HEADER, "-0.5"),
            (CEILING_HEADER, "inf"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(bad));
            let err = request_curve(math, &h).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(name), "{name}: {bad}: {err}");
        }
    }
}
