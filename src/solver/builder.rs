//! The allocator's options and their one validating step.

use super::bid::BidRule;
use super::Allocator;
use crate::error::{at_least_one, ensure, Result, Subject};

/// Configures an [`Allocator`]; every option has a default.
///
/// ```
/// use clear_alloc::Allocator;
///
/// let allocator = Allocator::builder().default_cap(8192).granularity(16).build()?;
/// assert_eq!(allocator.granularity(), 16);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AllocatorBuilder {
    default_cap: u64,
    granularity: u64,
    tolerance: f64,
    max_iterations: usize,
    abandonment: bool,
}

impl Default for AllocatorBuilder {
    fn default() -> Self {
        AllocatorBuilder {
            default_cap: Allocator::DEFAULT_CAP,
            granularity: 1,
            tolerance: 1e-3,
            max_iterations: 200,
            abandonment: true,
        }
    }
}

impl AllocatorBuilder {
    /// Cap for queries without one of their own (the model's maximum generation
    /// length); default [`Allocator::DEFAULT_CAP`].
    pub fn default_cap(mut self, tokens: u64) -> Self {
        self.default_cap = tokens;
        self
    }

    /// Allocations are multiples of this many tokens (≥ 1); default 1.
    pub fn granularity(mut self, tokens: u64) -> Self {
        self.granularity = tokens;
        self
    }

    /// Relative tolerance of the price search (in (0, 1)); default 1e-3. The search
    /// stops once the demand at the feasible end is within this share of the budget,
    /// or the price is bracketed to within this relative width. The leftover step
    /// spends what remains, so a looser tolerance costs nothing but which queries at
    /// the edge of solvency are funded: the surplus they would have added at the
    /// marginal price is at most this share of their utility.
    pub fn tolerance(mut self, relative: f64) -> Self {
        self.tolerance = relative;
        self
    }

    /// Upper bound on the steps of each price search (≥ 1); default 200. It bounds
    /// every search separately — the sample's, the clearing one, and each re-clear of
    /// the leftover step — not the passes of a whole call. Whatever the bound, the
    /// result is feasible.
    pub fn max_iterations(mut self, steps: usize) -> Self {
        self.max_iterations = steps;
        self
    }

    /// Whether queries that cannot pay their way are abandoned (default `true`); an
    /// ablation switch for the evaluation, not part of the stable API.
    /// `false` is the paper's "CLEAR without abandonment" ablation: every query buys
    /// up to where its marginal utility meets the price whenever it can, even at a
    /// negative surplus, and is dropped only when the price exceeds its peak marginal
    /// utility. It shows what rational abandonment is worth; do not serve with it.
    #[doc(hidden)]
    pub fn abandonment(mut self, enabled: bool) -> Self {
        self.abandonment = enabled;
        self
    }

    /// Checks the options and builds the allocator.
    ///
    /// # Errors
    /// [`Error::InvalidOption`](crate::Error::InvalidOption) naming the option.
    pub fn build(self) -> Result<Allocator> {
        at_least_one(Subject::Option, "granularity", self.granularity)?;
        ensure(
            self.tolerance > 0.0 && self.tolerance < 1.0,
            Subject::Option,
            "tolerance",
            self.tolerance,
            "must be in (0, 1)",
        )?;
        at_least_one(
            Subject::Option,
            "max_iterations",
            self.max_iterations as u64,
        )?;
        Ok(Allocator {
            default_cap: self.default_cap,
            granularity: self.granularity,
            tolerance: self.tolerance,
            max_iterations: self.max_iterations,
            rule: if self.abandonment {
                BidRule::Rational
            } else {
                BidRule::KeepAll
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_names_the_first_bad_option() {
        let err = Allocator::builder().granularity(0).build().unwrap_err();
        assert_eq!(
            err.to_string(),
            "option granularity = 0 is invalid: must be >= 1"
        );
        for tolerance in [0.0, 1.0, f64::NAN, -0.5] {
            let err = Allocator::builder()
                .tolerance(tolerance)
                .build()
                .unwrap_err();
            assert!(err.to_string().starts_with("option tolerance = "), "{err}");
        }
        let err = Allocator::builder().max_iterations(0).build().unwrap_err();
        assert_eq!(
            err.to_string(),
            "option max_iterations = 0 is invalid: must be >= 1"
        );
    }

    #[test]
    fn defaults_are_valid_and_options_stick() {
        let a = Allocator::builder()
            .default_cap(77)
            .granularity(8)
            .abandonment(false)
            .build()
            .unwrap();
        assert_eq!((a.default_cap(), a.granularity()), (77, 8));
        assert_eq!(a.rule, BidRule::KeepAll);
        assert_eq!(Allocator::default().default_cap(), Allocator::DEFAULT_CAP);
    }
}
