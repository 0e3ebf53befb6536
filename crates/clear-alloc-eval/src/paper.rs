//! The paper's reported accuracy levels (SPEC §6, "Full figure rows"): CLEAR (the
//! paper's DABA rows), uniform and, for the Balanced stream, the abandonment rate, at
//! 100, 200, …, 1500 tokens per query on the four traffic streams.
//!
//! The numbers are read off the paper's figure, so they are approximate (about ±0.5
//! points). Cells the figure does not show are `None`.

use crate::sim::Mix;

/// The budgets of the paper's rows, in tokens per query: 100, 200, …, 1500.
pub const BUDGETS: [u64; 15] = [
    100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200, 1300, 1400, 1500,
];

/// One stream's rows of the paper's figure, in percent, one entry per [`BUDGETS`] entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperRows {
    /// The stream.
    pub mix: Mix,
    /// CLEAR's accuracy (%).
    pub clear: [f64; 15],
    /// Uniform's accuracy (%); `None` where the figure shows no value.
    pub uniform: [Option<f64>; 15],
    /// Share of queries CLEAR abandons (%), where the paper gives it (Balanced only).
    pub abandoned: Option<[f64; 15]>,
}

impl PaperRows {
    /// The paper's rows for `mix`.
    pub fn of(mix: Mix) -> PaperRows {
        match mix {
            Mix::Balanced => PaperRows {
                mix,
                clear: [
                    10.3, 16.8, 19.8, 21.6, 22.2, 23.2, 23.8, 25.0, 26.4, 29.0, 30.8, 31.4, 31.6,
                    32.1, 32.2,
                ],
                uniform: all([
                    0.8, 3.3, 7.8, 14.6, 17.6, 20.4, 22.9, 23.9, 25.0, 25.7, 28.0, 29.4, 30.2,
                    31.4, 32.0,
                ]),
                abandoned: Some([
                    77.0, 63.0, 51.0, 41.0, 32.0, 24.0, 15.0, 8.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                    0.0,
                ]),
            },
            Mix::MostlyEasy => PaperRows {
                mix,
                clear: [
                    20.2, 33.0, 43.9, 50.0, 52.4, 53.8, 54.6, 57.2, 58.4, 58.6, 58.8, 59.0, 59.6,
                    59.3, 59.2,
                ],
                uniform: [
                    Some(1.3),
                    Some(9.3),
                    Some(23.0),
                    Some(39.7),
                    Some(48.9),
                    Some(52.7),
                    None,
                    None,
                    None,
                    None,
                    Some(58.0),
                    Some(58.2),
                    Some(58.4),
                    Some(59.0),
                    Some(59.2),
                ],
                abandoned: None,
            },
            Mix::MostlyHard => PaperRows {
                mix,
                clear: [
                    4.8, 7.2, 8.6, 9.6, 10.6, 11.8, 12.0, 13.6, 13.8, 15.4, 18.6, 19.2, 19.8, 20.2,
                    20.6,
                ],
                uniform: all([
                    0.3, 1.3, 3.0, 5.1, 5.7, 8.1, 9.8, 10.6, 11.8, 12.6, 14.6, 17.1, 19.0, 20.0,
                    20.8,
                ]),
                abandoned: None,
            },
            Mix::UShaped => PaperRows {
                mix,
                clear: [
                    13.3, 21.6, 27.2, 30.0, 30.6, 30.8, 31.4, 31.6, 33.6, 34.2, 34.5, 34.7, 34.8,
                    35.0, 35.0,
                ],
                uniform: all([
                    0.9, 4.0, 13.5, 21.6, 28.1, 30.5, 31.6, 32.2, 32.6, 32.8, 33.6, 33.8, 34.0,
                    34.6, 34.8,
                ]),
                abandoned: None,
            },
        }
    }

    /// Uniform's known points as (tokens per query, accuracy as a fraction): the target
    /// of [`crate::calibrate`].
    pub fn uniform_points(&self) -> Vec<(u64, f64)> {
        BUDGETS
            .iter()
            .zip(self.uniform)
            .filter_map(|(&b, u)| u.map(|u| (b, u / 100.0)))
            .collect()
    }
}

fn all(row: [f64; 15]) -> [Option<f64>; 15] {
    row.map(Some)
}
