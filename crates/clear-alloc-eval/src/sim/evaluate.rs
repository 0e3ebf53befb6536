//! Evaluating allocation methods on a [`Stream`]: the accuracy of one method at one
//! budget ([`evaluate`]), and a line-up of [`Method`]s over a range of budgets
//! ([`Sweep`]).

use super::{positive, Mix, Stream};
use crate::baselines::{
    ExactOptimum, GreedyMarginal, NoAbandonment, Oracle, Proportional, Uniform,
};
use clear_alloc::{AllocationPolicy, Allocator, Error, Result};

/// One method at one budget on one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The method's [`AllocationPolicy::name`].
    pub method: String,
    /// The stream's mix.
    pub mix: Mix,
    /// σ of the stream's threshold noise.
    pub threshold_noise: f64,
    /// The budget, in tokens per query (the total budget is this times the stream's
    /// length).
    pub tokens_per_query: u64,
    /// Tokens granted, per query (at most `tokens_per_query`).
    pub spent_per_query: f64,
    /// Mean true accuracy at the grants: `Σ Uᵢ(bᵢ) / N` under the true curves.
    pub expected_accuracy: f64,
    /// The accuracy the method planned for: its allocation's mean utility on the
    /// curves it was given (the predicted ones; the true ones for the oracle). This is
    /// the objective the methods compete on, so gaps to [`Method::Exact`] are measured
    /// here; with σ = 0 and per-query shapes it equals `expected_accuracy`.
    pub planned_accuracy: f64,
    /// Share of queries answered correctly in one Bernoulli draw per query
    /// ([`Stream::outcome_draws`]).
    pub sampled_accuracy: f64,
    /// Share of queries granted no tokens.
    pub abandonment_rate: f64,
}

/// Runs `policy` on the stream's predicted curves with `tokens_per_query · N` tokens
/// and scores its grants on the true curves.
///
/// # Errors
/// [`Error::InvalidParameter`] (field `tokens_per_query`) when the total budget
/// overflows; whatever the policy returns.
pub fn evaluate(
    policy: &dyn AllocationPolicy,
    stream: &Stream,
    tokens_per_query: u64,
) -> Result<Evaluation> {
    let n = stream.len() as f64;
    let budget =
        tokens_per_query
            .checked_mul(stream.len() as u64)
            .ok_or(Error::invalid_parameter(
                "tokens_per_query",
                tokens_per_query,
                "times the number of queries overflows u64",
            ))?;
    let allocation = policy.allocate(stream.predicted(), budget)?;
    let accuracies: Vec<f64> = stream
        .truth()
        .iter()
        .zip(allocation.tokens())
        .map(|(q, tokens)| {
            if tokens == 0 {
                0.0
            } else {
                q.curve().utility(tokens as f64)
            }
        })
        .collect();
    let correct = accuracies
        .iter()
        .zip(stream.outcome_draws())
        .filter(|(p, draw)| *draw < *p)
        .count();
    Ok(Evaluation {
        method: policy.name().to_owned(),
        mix: stream.mix(),
        threshold_noise: stream.threshold_noise(),
        tokens_per_query,
        spent_per_query: allocation.total_tokens() as f64 / n,
        expected_accuracy: accuracies.iter().sum::<f64>() / n,
        planned_accuracy: allocation.mean_utility(),
        sampled_accuracy: correct as f64 / n,
        abandonment_rate: allocation.abandonment_rate(),
    })
}

/// The methods of the comparison: the baselines of SPEC §6 but TALE-EP (which needs a
/// language model to estimate its own budget), CLEAR itself, the greedy negative
/// control and the exact grid optimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// [`Uniform`].
    Uniform,
    /// [`Proportional`] to the predicted threshold.
    Proportional,
    /// [`GreedyMarginal`], the negative control.
    Greedy,
    /// [`NoAbandonment`]: CLEAR's price without rational abandonment.
    NoAbandonment,
    /// CLEAR ([`Allocator`]) on the predicted curves.
    Clear,
    /// [`Oracle`]: CLEAR on the true curves.
    Oracle,
    /// [`ExactOptimum`] on the predicted curves (dynamic programming on a grid).
    Exact,
}

impl Method {
    /// Every method but the exact optimum: the ones cheap enough for any budget.
    pub const HEURISTICS: [Method; 6] = [
        Method::Uniform,
        Method::Proportional,
        Method::Greedy,
        Method::NoAbandonment,
        Method::Clear,
        Method::Oracle,
    ];

    /// Every method, the exact optimum last (it is by far the slowest).
    pub const ALL: [Method; 7] = {
        let h = Self::HEURISTICS;
        [h[0], h[1], h[2], h[3], h[4], h[5], Method::Exact]
    };

    /// The [`AllocationPolicy::name`] of the method's policy, as in [`Evaluation::method`].
    pub fn name(&self) -> &'static str {
        match self {
            Method::Uniform => "uniform",
            Method::Proportional => "proportional",
            Method::Greedy => "greedy marginal",
            Method::NoAbandonment => "CLEAR w/o abandonment",
            Method::Clear => "CLEAR",
            Method::Oracle => "oracle",
            Method::Exact => "exact DP",
        }
    }
}

/// A budget sweep: every method of a line-up at every budget, on one stream.
///
/// ```
/// use clear_alloc_eval::sim::{Method, Mix, StreamConfig, Sweep};
///
/// let stream = StreamConfig::new(Mix::UShaped).queries(50).generate()?;
/// let sweep = Sweep::new(vec![100, 300])?.methods(&[Method::Uniform, Method::Clear]);
/// let rows = sweep.run(&stream)?;
/// assert_eq!(rows.len(), 4);
/// assert_eq!(rows[1].method, "CLEAR");
/// # Ok::<(), clear_alloc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    budgets: Vec<u64>,
    methods: Vec<Method>,
    granularity: u64,
    greedy_step: u64,
    exact_grid: u64,
}

impl Sweep {
    /// A sweep over `tokens_per_query` budgets with every method of [`Method::ALL`],
    /// granularity 1, greedy steps of 16 tokens and a DP grid of 50 tokens.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when the list of budgets is empty.
    pub fn new(tokens_per_query: Vec<u64>) -> Result<Self> {
        if tokens_per_query.is_empty() {
            return Err(Error::invalid_option(
                "budgets",
                0.0,
                "must list at least one budget",
            ));
        }
        Ok(Sweep {
            budgets: tokens_per_query,
            methods: Method::ALL.to_vec(),
            granularity: 1,
            greedy_step: 16,
            exact_grid: 50,
        })
    }

    /// The methods to run, in this order.
    pub fn methods(mut self, methods: &[Method]) -> Self {
        self.methods = methods.to_vec();
        self
    }

    /// Granularity of uniform, proportional and both CLEAR variants. Set it to the DP
    /// grid to compare them with [`Method::Exact`] on equal terms.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when 0.
    pub fn granularity(mut self, tokens: u64) -> Result<Self> {
        self.granularity = positive("granularity", tokens)?;
        Ok(self)
    }

    /// Step of [`Method::Greedy`].
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when 0.
    pub fn greedy_step(mut self, tokens: u64) -> Result<Self> {
        self.greedy_step = positive("step", tokens)?;
        Ok(self)
    }

    /// Grid of [`Method::Exact`].
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when 0.
    pub fn exact_grid(mut self, tokens: u64) -> Result<Self> {
        self.exact_grid = positive("grid", tokens)?;
        Ok(self)
    }

    /// The policy behind `method`, seeing `stream` where it needs the truth.
    pub(super) fn policy<'a>(
        &self,
        method: Method,
        stream: &'a Stream,
    ) -> Result<Box<dyn AllocationPolicy + 'a>> {
        let g = self.granularity;
        let cap = stream.cap();
        let clear = || Allocator::builder().default_cap(cap).granularity(g);
        Ok(match method {
            Method::Uniform => Box::new(Uniform::new(g)?.with_default_cap(cap)),
            Method::Proportional => Box::new(Proportional::new(g)?.with_default_cap(cap)),
            Method::Greedy => {
                Box::new(GreedyMarginal::new(self.greedy_step)?.with_default_cap(cap))
            }
            Method::NoAbandonment => Box::new(NoAbandonment::new(clear())?),
            Method::Clear => Box::new(clear().build()?),
            Method::Oracle => Box::new(Oracle::new(clear().build()?, stream.truth())),
            Method::Exact => Box::new(
                ExactOptimum::builder()
                    .grid(self.exact_grid)
                    .default_cap(cap)
                    .build()?,
            ),
        })
    }

    /// Evaluates every method at every budget, budgets outermost.
    ///
    /// # Errors
    /// As [`evaluate`]; [`Error::InvalidOption`] when the DP table would be too large.
    pub fn run(&self, stream: &Stream) -> Result<Vec<Evaluation>> {
        let policies = self
            .methods
            .iter()
            .map(|&m| self.policy(m, stream))
            .collect::<Result<Vec<_>>>()?;
        let mut rows = Vec::with_capacity(self.budgets.len() * policies.len());
        for &budget in &self.budgets {
            for policy in &policies {
                rows.push(evaluate(policy.as_ref(), stream, budget)?);
            }
        }
        Ok(rows)
    }
}
