//! The curve's serde form (feature `serde`): it serialises as `{"threshold", "width",
//! "ceiling"}` and deserialises from that or from the paper's `{"threshold", "alpha",
//! "beta"}`, validated by the constructors, so a curve read from JSON is as valid as
//! one built in code.

use serde::{Deserialize, Serialize};

use super::ShiftedSurge;
use crate::error::Error;

impl Serialize for ShiftedSurge {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Curve {
            threshold: f64,
            width: f64,
            ceiling: f64,
        }
        Curve {
            threshold: self.threshold(),
            width: self.width(),
            ceiling: self.ceiling(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ShiftedSurge {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Curve {
            threshold: Option<f64>,
            width: Option<f64>,
            ceiling: Option<f64>,
            alpha: Option<f64>,
            beta: Option<f64>,
        }
        let c = Curve::deserialize(deserializer)?;
        let missing = |field: &'static str, reason: &'static str| Error::MissingField {
            query: None,
            field,
            reason,
        };
        let threshold = c
            .threshold
            .ok_or_else(|| missing("threshold", "is missing"))
            .map_err(serde::de::Error::custom)?;
        match (c.width, c.ceiling, c.alpha, c.beta) {
            (Some(width), Some(ceiling), None, None) => {
                ShiftedSurge::new(threshold, width, ceiling)
            }
            (None, None, Some(alpha), Some(beta)) => {
                ShiftedSurge::from_alpha_beta(threshold, alpha, beta)
            }
            (Some(_), None, None, None) => Err(missing("ceiling", "is missing (width was given)")),
            (None, Some(_), None, None) => Err(missing("width", "is missing (ceiling was given)")),
            (None, None, Some(_), None) => Err(missing("beta", "is missing (alpha was given)")),
            (None, None, None, Some(_)) => Err(missing("alpha", "is missing (beta was given)")),
            (None, None, None, None) => Err(missing(
                "width",
                "is missing: give width and ceiling, or alpha and beta",
            )),
            _ => Err(missing(
                "width",
                "conflicts with alpha/beta: give width and ceiling, or alpha and beta",
            )),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_the_paper_form() {
        let curve = ShiftedSurge::new(151.0, 101.0, 0.95).unwrap();
        let json = serde_json::to_string(&curve).unwrap();
        assert_eq!(json, r#"{"threshold":151.0,"width":101.0,"ceiling":0.95}"#);
        let back: ShiftedSurge = serde_json::from_str(&json).unwrap();
        assert_eq!(back, curve);
        let paper: ShiftedSurge =
            serde_json::from_str(r#"{"threshold":151,"alpha":5e-5,"beta":0.01}"#).unwrap();
        assert!((paper.width() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn curve_round_trips_through_json() {
        let curve = ShiftedSurge::new(142.0, 218.0, 0.8).unwrap();
        let json = serde_json::to_string(&curve).unwrap();
        assert_eq!(json, r#"{"threshold":142.0,"width":218.0,"ceiling":0.8}"#);
        let back: ShiftedSurge = serde_json::from_str(&json).unwrap();
        assert_eq!(back, curve);
        let paper: ShiftedSurge =
            serde_json::from_str(r#"{"threshold":200,"alpha":1.5,"beta":0.005}"#).unwrap();
        assert!((paper.ceiling() / 60_000.0 - 1.0).abs() < 1e-12);
        assert!(
            serde_json::from_str::<ShiftedSurge>(r#"{"threshold":1,"width":-1,"ceiling":1}"#)
                .is_err()
        );
    }

    #[test]
    fn rejects_incomplete_conflicting_and_invalid_curves() {
        for (json, needle) in [
            (r#"{"width":1,"ceiling":0.5}"#, "threshold"),
            (r#"{"threshold":1,"width":1}"#, "ceiling"),
            (
                r#"{"threshold":1,"width":1,"ceiling":0.5,"alpha":1}"#,
                "conflicts",
            ),
            (r#"{"threshold":1,"width":-1,"ceiling":0.5}"#, "width"),
        ] {
            let err = serde_json::from_str::<ShiftedSurge>(json).unwrap_err();
            assert!(err.to_string().contains(needle), "{json}: {err}");
        }
    }
}
