//! The JSON contract: the request and response types of `clear-alloc allocate` and
//! the query list that `clear-alloc fit` prints.
//!
//! Every field of a [`QuerySpec`] is optional on the wire so that a missing or bad
//! field is reported by [`QuerySpec::to_query`] with the query's position, id and the
//! field's name, rather than by a generic deserialisation error.
//!
//! ```
//! use clear_alloc_cli::wire::{AllocationRequest, AllocationResponse};
//!
//! let request: AllocationRequest = serde_json::from_str(r#"{
//!     "budget": 1000,
//!     "queries": [
//!         {"id": "easy", "threshold": 151, "width": 101, "ceiling": 0.95},
//!         {"id": "hard", "threshold": 304, "alpha": 2e-6, "beta": 0.00357}
//!     ]
//! }"#)?;
//! let response: AllocationResponse = request.run()?;
//! assert!(response.total_tokens <= 1000);
//! assert_eq!(response.allocations[0].id.as_deref(), Some("easy"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::response::ResponseView;

use clear_alloc::fit::{EmpiricalCurve, FittedCurve, Rollout};
use clear_alloc::{
    Allocation, Allocator, AnyCurve, Curve, Decision, Error, Mixture, PiecewiseLinear, Query,
    QueryRef, Result, ShiftedSurge,
};

/// One query as the JSON contract spells it: its curve, and optionally `cap`,
/// `weight` and `id`.
///
/// The curve is one of:
/// - a shifted surge: `threshold` plus either `width` and `ceiling` or `alpha` and
///   `beta`;
/// - `"mixture": [{"weight", "threshold", "width", "ceiling"}, …]`, a mixture of
///   shifted surges (weights ≥ 0, at least one positive; they are normalised to sum
///   to 1, so `[1, 1]` means half and half);
/// - `"points": [[tokens, utility], …]`, a piecewise-linear curve (tokens strictly
///   increasing, utility non-decreasing and finite; linear from `(0, 0)` to the first
///   point and between points, flat after the last);
/// - `"rollouts": [{"tokens", "correct", "truncated"}, …]`, the empirical curve of
///   the query's rollouts (the share correct within `b` tokens).
///
/// `expected_utility` in the response is computed on these curves as given.
///
/// [`QueryFields`] with the id held as a `String`; the program itself reads ids
/// borrowed from the request's bytes.
pub type QuerySpec = QueryFields<String>;

/// The fields of one query on the wire (see [`QuerySpec`]), generic in how the id is
/// held.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryFields<Id> {
    /// The caller's name for the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// Emergence threshold τ in tokens.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Surge width `w = 1/β` in tokens (with `ceiling`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<f64>,
    /// Ceiling `U∞` (with `width`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<f64>,
    /// Amplitude α (with `beta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Surge rate β in 1/tokens (with `alpha`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// The query's own cap in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<u64>,
    /// Priority weight (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// A mixture of shifted surges, instead of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixture: Option<Vec<ComponentSpec>>,
    /// Points `[tokens, utility]` of a piecewise-linear curve, instead of a surge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<Vec<(f64, f64)>>,
    /// Rollouts whose empirical curve is the query's curve, instead of a surge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollouts: Option<Vec<RolloutSpec>>,
}

/// One component of a `"mixture"`: a weight and a shifted surge's accuracy form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    /// The component's weight (≥ 0; the weights are normalised to sum to 1).
    pub weight: f64,
    /// Emergence threshold τ in tokens.
    pub threshold: f64,
    /// Surge width in tokens.
    pub width: f64,
    /// Ceiling `U∞`.
    pub ceiling: f64,
}

/// One rollout of a `"rollouts"` curve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// Tokens generated.
    pub tokens: u64,
    /// Whether the answer was correct.
    pub correct: bool,
    /// Whether generation stopped at the sampling cap (default false).
    #[serde(default)]
    pub truncated: bool,
}

/// The field of a curve kind's error, prefixed with the kind's key, so that the
/// one-line error names where in the query the bad value sits.
fn in_kind(kind: &'static str, field: &'static str) -> &'static str {
    match (kind, field) {
        ("mixture", "weight") => "mixture.weight",
        ("mixture", "threshold") => "mixture.threshold",
        ("mixture", "width") => "mixture.width",
        ("mixture", "ceiling") => "mixture.ceiling",
        ("points", "tokens") => "points.tokens",
        ("points", "utility") => "points.utility",
        _ => kind,
    }
}

/// The query a spec's errors name: its position and id, made into a [`QueryRef`] (a
/// copy of the id) only for an error, not for every query read.
#[derive(Clone, Copy)]
struct At<'s> {
    index: usize,
    id: Option<&'s str>,
}

impl At<'_> {
    fn query(self) -> QueryRef {
        QueryRef::at(self.index, self.id)
    }
}

/// A curve constructor's error, as an error of query `at` in the field of `kind`.
fn kind_error<'s>(kind: &'static str, at: At<'s>) -> impl Fn(Error) -> Error + 's {
    move |error| match error {
        Error::InvalidParameter {
            field,
            value,
            reason,
            ..
        } => Error::invalid_query(at.query(), in_kind(kind, field), value, reason),
        other => other.for_query(at.query()),
    }
}

impl<Id: AsRef<str>> QueryFields<Id> {
    /// Validates the spec into a [`Query`]; `index` is its position, for errors.
    ///
    /// # Errors
    /// [`Error::MissingField`] naming the query and the field that is missing or
    /// conflicting; [`Error::InvalidQuery`] naming the query and the field that is out
    /// of its domain.
    pub fn to_query(&self, index: usize) -> Result<Query<AnyCurve>> {
        let query = self.to_unnamed_query(index)?;
        Ok(match &self.id {
            Some(id) => query.with_id(id.as_ref()),
            None => query,
        })
    }

    /// [`to_query`](Self::to_query) without copying the id into the query: its errors
    /// still name it, and the program echoes it from the request.
    pub(crate) fn to_unnamed_query(&self, index: usize) -> Result<Query<AnyCurve>> {
        let at = self.at(index);
        self.with_cap_and_weight(self.curve(at)?, at)
    }

    /// Whether the spec gives a shifted surge (or no curve at all, an error of
    /// [`to_unnamed_surge`](Self::to_unnamed_surge)), rather than another kind.
    pub(crate) fn is_surge(&self) -> bool {
        self.mixture.is_none() && self.points.is_none() && self.rollouts.is_none()
    }

    /// [`to_unnamed_query`](Self::to_unnamed_query) for a spec that
    /// [`is_surge`](Self::is_surge): the query with its surge as such, which the
    /// allocator serves without dispatching on the curve's kind.
    pub(crate) fn to_unnamed_surge(&self, index: usize) -> Result<Query<ShiftedSurge>> {
        let at = self.at(index);
        self.with_cap_and_weight(self.surge(at)?, at)
    }

    /// The query at `index` of this spec, as its errors name it.
    fn at(&self, index: usize) -> At<'_> {
        At {
            index,
            id: self.id.as_ref().map(AsRef::as_ref),
        }
    }

    /// The query of `curve` with the spec's cap and weight.
    fn with_cap_and_weight<C: Curve>(&self, curve: C, at: At<'_>) -> Result<Query<C>> {
        let mut query = Query::new(curve)
            .with_weight(self.weight.unwrap_or(1.0))
            .map_err(|e| e.for_query(at.query()))?;
        if let Some(cap) = self.cap {
            query = query.with_cap(cap);
        }
        Ok(query)
    }

    /// The query's curve, of whichever kind the spec gives (exactly one).
    fn curve(&self, at: At<'_>) -> Result<AnyCurve> {
        let missing = |field: &'static str, reason: &'static str| {
            Error::missing_field(Some(at.query()), field, reason)
        };
        let surge_fields = self.threshold.is_some()
            || self.width.is_some()
            || self.ceiling.is_some()
            || self.alpha.is_some()
            || self.beta.is_some();
        let kinds = [
            ("mixture", self.mixture.is_some()),
            ("points", self.points.is_some()),
            ("rollouts", self.rollouts.is_some()),
        ];
        let mut given = kinds.iter().filter(|k| k.1).map(|k| k.0);
        let Some(kind) = given.next() else {
            return self.surge(at).map(AnyCurve::from);
        };
        if let Some(other) = given.next() {
            return Err(missing(
                other,
                "conflicts with another curve: give one of threshold/width/ceiling, mixture, \
                 points or rollouts",
            ));
        }
        if surge_fields {
            return Err(missing(
                kind,
                "conflicts with threshold/width/ceiling/alpha/beta: give one curve",
            ));
        }
        let error = kind_error(kind, at);
        match (&self.mixture, &self.points, &self.rollouts) {
            (Some(components), ..) => {
                let components = components
                    .iter()
                    .map(|c| {
                        ShiftedSurge::new(c.threshold, c.width, c.ceiling).map(|s| (c.weight, s))
                    })
                    .collect::<Result<Vec<_>>>()
                    .map_err(&error)?;
                Mixture::new(components).map(AnyCurve::from).map_err(error)
            }
            (_, Some(points), _) => PiecewiseLinear::new(points.iter().copied())
                .map(AnyCurve::from)
                .map_err(error),
            (.., Some(rollouts)) => {
                let rollouts: Vec<Rollout> = rollouts
                    .iter()
                    .map(|r| Rollout {
                        tokens: r.tokens,
                        correct: r.correct,
                        truncated: r.truncated,
                    })
                    .collect();
                if rollouts.is_empty() {
                    return Err(missing("rollouts", "is empty: give at least one rollout"));
                }
                EmpiricalCurve::from_rollouts(&rollouts)
                    .map(AnyCurve::from)
                    .map_err(error)
            }
            _ => unreachable!("one curve kind was given"),
        }
    }

    /// The shifted surge of the `threshold` and `width`/`ceiling` or `alpha`/`beta`
    /// fields.
    fn surge(&self, at: At<'_>) -> Result<ShiftedSurge> {
        let missing = |field: &'static str, reason: &'static str| {
            Error::missing_field(Some(at.query()), field, reason)
        };
        let threshold = self
            .threshold
            .ok_or_else(|| missing("threshold", "is missing"))?;
        let accuracy_form = self.width.is_some() || self.ceiling.is_some();
        let paper_form = self.alpha.is_some() || self.beta.is_some();
        let curve = match (self.width, self.ceiling, self.alpha, self.beta) {
            (Some(width), Some(ceiling), None, None) => {
                ShiftedSurge::new(threshold, width, ceiling)
            }
            (None, None, Some(alpha), Some(beta)) => {
                ShiftedSurge::from_alpha_beta(threshold, alpha, beta)
            }
            _ if accuracy_form && paper_form => {
                return Err(missing(
                    if self.width.is_some() {
                        "width"
                    } else {
                        "ceiling"
                    },
                    "conflicts with alpha/beta: give width and ceiling, or alpha and beta",
                ))
            }
            (Some(_), None, ..) => return Err(missing("ceiling", "is missing (width was given)")),
            (None, Some(_), ..) => return Err(missing("width", "is missing (ceiling was given)")),
            (.., Some(_), None) => return Err(missing("beta", "is missing (alpha was given)")),
            (.., None, Some(_)) => return Err(missing("alpha", "is missing (beta was given)")),
            _ => {
                return Err(missing(
                    "width",
                    "is missing: give width and ceiling, or alpha and beta",
                ))
            }
        }
        .map_err(|e| e.for_query(at.query()))?;
        Ok(curve)
    }
}

impl From<&FittedCurve> for QuerySpec {
    fn from(fit: &FittedCurve) -> Self {
        QuerySpec {
            id: Some(fit.id.clone()),
            threshold: Some(fit.curve.threshold()),
            width: Some(fit.curve.width()),
            ceiling: Some(fit.curve.ceiling()),
            ..QuerySpec::default()
        }
    }
}

/// A request to the allocator sidecar: a `budget` in tokens or a `price` per token,
/// and the queries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationRequest {
    /// Total tokens to split (budget mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
    /// Utility per token (price mode), instead of a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Cap for queries without one (default 32 768).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_cap: Option<u64>,
    /// Allocations are multiples of this (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granularity: Option<u64>,
    /// The queries, in the order the response keeps.
    pub queries: Vec<QuerySpec>,
}

impl AllocationRequest {
    /// Validates the request, allocates, and builds the response.
    ///
    /// # Errors
    /// [`Error::MissingField`] when neither or both of `budget` and `price` are given,
    /// or a query lacks a field; [`Error::InvalidParameter`] for an invalid price;
    /// [`Error::InvalidOption`] for a bad granularity; [`Error::InvalidQuery`] naming
    /// the first bad query and field, or the query whose weight makes the batch's total
    /// utility overflow.
    pub fn run(&self) -> Result<AllocationResponse> {
        let allocator = self.allocator()?;
        let queries = self
            .queries
            .iter()
            .enumerate()
            .map(|(i, spec)| spec.to_query(i))
            .collect::<Result<Vec<_>>>()?;
        let allocation = self.clear(&allocator, &queries, |i| queries[i].id())?;
        Ok(AllocationResponse::new(&queries, &allocation))
    }

    /// The allocator of the request's `default_cap` and `granularity`.
    pub(crate) fn allocator(&self) -> Result<Allocator> {
        let mut builder = Allocator::builder();
        if let Some(cap) = self.default_cap {
            builder = builder.default_cap(cap);
        }
        if let Some(g) = self.granularity {
            builder = builder.granularity(g);
        }
        builder.build()
    }

    /// Allocates `queries` (the request's, validated) by the request's budget or
    /// price; `id_of(i)` is query `i`'s id, which errors name.
    pub(crate) fn clear<'q, C: Curve>(
        &self,
        allocator: &Allocator,
        queries: &[Query<C>],
        id_of: impl Fn(usize) -> Option<&'q str>,
    ) -> Result<Allocation> {
        check_total_utility(queries, &id_of)?;
        match (self.budget, self.price) {
            (Some(budget), None) => allocator.allocate(queries, budget),
            (None, Some(price)) => allocator.allocate_at_price(queries, price),
            (Some(_), Some(_)) => Err(Error::missing_field(
                None,
                "price",
                "conflicts with budget: give exactly one of budget and price",
            )),
            (None, None) => Err(Error::missing_field(
                None,
                "budget",
                "is missing: give a budget (tokens) or a price (utility per token)",
            )),
        }
        .map_err(|error| match error {
            Error::InvalidQuery {
                query: QueryRef {
                    index: Some(index), ..
                },
                ..
            } => error.for_query(QueryRef::at(index, id_of(index))),
            other => other,
        })
    }
}

/// Each query's utility is at most `weight · ceiling`, which [`Query::with_weight`] keeps
/// finite, but their sum can still overflow (two weights of 1e308): the response's
/// `expected_utility` would then be infinite, which JSON cannot carry. Such a batch is
/// refused, naming the query at which the sum (in input order, as the allocation adds
/// it) overflows; `id_of(i)` is query `i`'s id.
fn check_total_utility<'q, C: Curve>(
    queries: &[Query<C>],
    id_of: impl Fn(usize) -> Option<&'q str>,
) -> Result<()> {
    let mut bound = 0.0_f64;
    for (index, query) in queries.iter().enumerate() {
        bound += query.weight() * query.curve().ceiling();
        if !bound.is_finite() {
            return Err(Error::invalid_query(
                QueryRef::at(index, id_of(index)),
                "weight",
                query.weight(),
                "makes the batch's total utility (the sum of weight times ceiling) \
                 overflow; scale all weights down (the allocation does not change)",
            ));
        }
    }
    Ok(())
}

/// `x` with a negative zero made positive: `-0.0` is what an empty sum or a `-0`
/// price gives, and is not what a reader of the response expects.
pub(crate) fn unsigned_zero(x: f64) -> f64 {
    x + 0.0
}

/// One query's line in an [`AllocationResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryGrant {
    /// The query's id, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Whole tokens granted.
    pub tokens: u64,
    /// Expected utility `weight · U(tokens)`.
    pub utility: f64,
    /// Whether the query got 0 tokens.
    pub abandoned: bool,
    /// What the allocator decided.
    pub decision: Decision,
}

/// The allocator sidecar's answer, queries in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocationResponse {
    /// The shadow price λ* (utility per token); `null` for an allocation not made by a
    /// price.
    pub price: Option<f64>,
    /// Marginal utility per token of the funded, uncapped queries; `null` likewise.
    pub marginal_price: Option<f64>,
    /// Tokens granted in all.
    pub total_tokens: u64,
    /// Budget left unspent (0 in price mode).
    pub leftover: u64,
    /// `Σ weight · U(tokens)`.
    pub expected_utility: f64,
    /// One line per query.
    pub allocations: Vec<QueryGrant>,
}

impl AllocationResponse {
    /// The response for `allocation` of `queries`.
    pub fn new<C: Curve>(queries: &[Query<C>], allocation: &Allocation) -> Self {
        let view = ResponseView::new(allocation, queries.iter().map(Query::id));
        AllocationResponse {
            price: view.price,
            marginal_price: view.marginal_price,
            total_tokens: view.total_tokens,
            leftover: view.leftover,
            expected_utility: view.expected_utility,
            allocations: view
                .grants()
                .map(|grant| QueryGrant {
                    id: grant.id.map(str::to_owned),
                    tokens: grant.tokens,
                    utility: grant.utility,
                    abandoned: grant.abandoned,
                    decision: grant.decision,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_errors_name_query_and_field() {
        let spec = QuerySpec {
            id: Some("q2".into()),
            threshold: Some(10.0),
            width: Some(5.0),
            ..QuerySpec::default()
        };
        let err = spec.to_query(2).unwrap_err();
        assert!(matches!(
            err,
            Error::MissingField {
                query: Some(ref q),
                field: "ceiling",
                ..
            } if q.index == Some(2)
        ));
        assert_eq!(
            err.to_string(),
            "query 2 (id \"q2\"): ceiling is missing (width was given)"
        );
        let bad = QuerySpec {
            threshold: Some(-1.0),
            width: Some(5.0),
            ceiling: Some(1.0),
            ..QuerySpec::default()
        };
        assert_eq!(
            bad.to_query(0).unwrap_err().to_string(),
            "query 0: threshold = -1 is invalid: must be finite and >= 0"
        );
    }

    #[test]
    fn mixed_parameterisations_are_a_conflict() {
        let spec = QuerySpec {
            threshold: Some(10.0),
            ceiling: Some(0.9),
            alpha: Some(1.0),
            beta: Some(0.1),
            ..QuerySpec::default()
        };
        let err = spec.to_query(0).unwrap_err();
        assert!(
            err.to_string().contains("conflicts with alpha/beta"),
            "{err}"
        );
    }

    #[test]
    fn responses_round_trip_through_json() {
        let queries = vec![Query::new(ShiftedSurge::new(100.0, 50.0, 0.9).unwrap()).with_id("a")];
        let by_price = Allocator::default().allocate(&queries, 500).unwrap();
        let by_hand = Allocation::from_tokens(&queries, vec![300], 8192, None).unwrap();
        for allocation in [by_price, by_hand] {
            let response = AllocationResponse::new(&queries, &allocation);
            let json = serde_json::to_string(&response).unwrap();
            let back: AllocationResponse = serde_json::from_str(&json).unwrap();
            assert_eq!(back, response);
        }
    }

    #[test]
    fn a_total_utility_that_overflows_is_refused_at_the_query_that_overflows_it() {
        let heavy = QuerySpec {
            id: Some("h".into()),
            threshold: Some(1.0),
            width: Some(1.0),
            ceiling: Some(1.0),
            weight: Some(1e308),
            ..QuerySpec::default()
        };
        let mut request = AllocationRequest {
            price: Some(0.5),
            queries: vec![heavy.clone()],
            ..AllocationRequest::default()
        };
        assert!(request.run().unwrap().expected_utility.is_finite());
        request.queries.push(heavy);
        let err = request.run().unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidQuery {
                    query: QueryRef { index: Some(1), .. },
                    field: "weight",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn zeros_in_a_response_are_unsigned() {
        let request = AllocationRequest {
            price: Some(-0.0),
            ..AllocationRequest::default()
        };
        let response = request.run().unwrap();
        assert!(response.price.unwrap().is_sign_positive());
        assert!(response.marginal_price.unwrap().is_sign_positive());
        assert!(response.expected_utility.is_sign_positive());
    }

    #[test]
    fn request_needs_exactly_one_of_budget_and_price() {
        let mut request = AllocationRequest::default();
        assert!(request.run().is_err());
        request.budget = Some(10);
        request.price = Some(0.1);
        assert!(request.run().is_err());
        request.price = None;
        assert_eq!(request.run().unwrap().allocations.len(), 0);
    }
}
