//! The leftover step (SPEC §4.2): the feasible end of the price bracket leaves part
//! of the budget unspent, because demand jumps where queries are abandoned. The
//! queries that become solvent together inside the bracket are funded, most solvent
//! first, while they fit; the price is re-cleared among the funded queries alone
//! (their marginal utility falls to the *marginal price*); and a small search adds
//! queries one move at a time — one takes what is left, or joins (in small batches
//! also replaces the least solvent) with the price re-cleared among all — keeping a
//! move only if the batch's utility rises.

use super::bid::{Bid, BidRule, Bidding};
use super::chunks;
use super::scratch::Scratch;
use super::search::{Bracket, Point};
use super::subset::Members;
use super::{scatter, utility_of, Allocator, Query};
use crate::model::Curve;

/// A candidate allocation during the leftover step.
#[derive(Clone)]
pub(super) struct Plan {
    pub grants: Vec<u64>,
    pub marginal_price: f64,
    pub funded: Vec<usize>,
    /// Queries added by the leftover step.
    pub edges: Vec<usize>,
    /// Queries solvent at the price that the leftover step dropped for an edge query.
    pub displaced: Vec<usize>,
}

/// How hard the leftover step searches. In a small batch one query is a large share
/// of the utility and a search is cheap, so it gets the full search; in a large one
/// an edge query is worth little and every try costs a pass, so one quick round.
#[derive(Debug, Clone, Copy)]
pub(super) struct EdgeEffort {
    /// Moves applied one after another.
    rounds: usize,
    /// First moves each followed to the end (near-ties between them are common when
    /// the budget covers only a few queries).
    branches: usize,
    /// Whether a move may also drop the least solvent funded query.
    swaps: bool,
    /// Up to this many candidates, every one is tried.
    exhaustive: usize,
    /// Candidates tried per ranking otherwise.
    tries: usize,
    /// Whether candidates are also ranked by surplus at the marginal price, besides
    /// solvency.
    both_rankings: bool,
}

impl EdgeEffort {
    /// Batches up to this size get the full search.
    pub const SMALL_BATCH: usize = 64;

    pub fn for_batch(n: usize) -> Self {
        if n <= Self::SMALL_BATCH {
            EdgeEffort {
                rounds: 8,
                branches: 6,
                swaps: true,
                exhaustive: 16,
                tries: 3,
                both_rankings: true,
            }
        } else {
            EdgeEffort {
                rounds: 1,
                branches: 1,
                swaps: false,
                exhaustive: 0,
                tries: 3,
                both_rankings: false,
            }
        }
    }
}

/// Everything one leftover step reads: the batch, its prepared market, the budget
/// and the clearing price, where every re-clear starts.
pub(super) struct Leftover<'a, C: Curve> {
    pub allocator: &'a Allocator,
    pub queries: &'a [Query<C>],
    /// The queries in play (every query in a small batch), by position: the step
    /// works on these alone.
    pub market: Members<'a, C::Bidder>,
    pub budget: u64,
    /// `ln` of the clearing price.
    pub start_log_price: f64,
    pub effort: EdgeEffort,
    /// Memory for the vectors as long as the members (see [`Scratch`]).
    pub scratch: &'a Scratch,
}

/// The bids at the ends of the cleared bracket, by position among the members.
pub(super) struct Ends<'a> {
    /// The feasible end.
    pub hi: Point,
    pub hi_tokens: &'a [f64],
    /// Bids at the infeasible end, when one was evaluated.
    pub lo_tokens: Option<&'a [f64]>,
}

/// The leftover step's result.
pub(super) struct Spent {
    pub plan: Plan,
    pub passes: usize,
}

impl Plan {
    /// Gives the plan's long vectors back to `scratch`.
    fn recycle(self, scratch: &Scratch) {
        scratch.grants.give(self.grants);
        scratch.positions.give(self.funded);
    }
}

impl<C: Curve> Leftover<'_, C> {
    /// The query at position `k` among the members.
    fn query(&self, k: usize) -> &Query<C> {
        &self.queries[self.market.query(k)]
    }

    /// `Σ weight · U(grant)` of the members.
    fn total_utility(&self, grants: &[u64]) -> f64 {
        grants
            .iter()
            .enumerate()
            .map(|(k, &t)| utility_of(self.query(k), t))
            .sum()
    }

    /// Spends the leftover of a cleared market: funds the queries that fit, re-clears
    /// the price among them, and tries funding more (the no-abandonment ablation keeps
    /// its pure rule and only hands out what is left), keeping each move that raises
    /// the batch's utility.
    pub fn spend(&self, cleared: &Ends) -> Spent {
        let market = self.market;
        let (funded, left_out) = self.funded_set(cleared);
        let (marginal, spent, mut passes) = self.reclear(&funded, Some(cleared.hi_tokens));
        let mut tokens = self.scratch.bids.filled(market.len(), 0.0);
        scatter(&mut tokens, &funded, &spent);
        let grants = self
            .allocator
            .round(&market, &tokens, Some(self.budget), self.scratch);
        self.scratch.bids.give(tokens);
        self.scratch.bids.give(spent);
        let candidates = if self.queries.len() <= EdgeEffort::SMALL_BATCH {
            (0..market.len())
                .filter(|i| funded.binary_search(i).is_err())
                .collect()
        } else {
            left_out
        };
        let mut plan = Plan {
            grants,
            marginal_price: marginal,
            funded,
            edges: Vec::new(),
            displaced: Vec::new(),
        };
        passes += self.add_edges(&mut plan, candidates);
        if self.queries.len() <= EdgeEffort::SMALL_BATCH {
            self.top_up(&mut plan);
        }
        Spent { plan, passes }
    }

    /// Hands what the budget still has left, when it is more than rounding leaves, to
    /// the query it buys the most for, on its own curve, and repeats while that helps
    /// (at most a few times). A price
    /// places tokens only on a curve's concave majorant; a piecewise-linear or
    /// empirical curve whose next hull vertex is beyond the remainder can still turn
    /// it into utility between vertices.
    fn top_up(&self, plan: &mut Plan) {
        let market = self.market;
        for _ in 0..4 {
            let used: u128 = plan.grants.iter().map(|&t| t as u128).sum();
            let rest = u64::try_from((self.budget as u128).saturating_sub(used)).unwrap_or(0);
            let rest = self.allocator.round_down_whole(rest);
            // A remainder of a granule per funded query is rounding's to hand out
            // evenly, not a gap between hull vertices.
            let granule = self.allocator.granularity as u128;
            if (rest as u128) <= (plan.funded.len() as u128 + 1) * granule {
                return;
            }
            let mut best: Option<(f64, usize, u64)> = None;
            for i in 0..market.len() {
                let query = self.query(i);
                let grant = plan.grants[i].saturating_add(rest).min(market.cap(i));
                if grant as f64 <= market.bidder(i).threshold() {
                    continue;
                }
                let gain = utility_of(query, grant) - utility_of(query, plan.grants[i]);
                if gain > best.map_or(0.0, |b| b.0) {
                    best = Some((gain, i, grant));
                }
            }
            let Some((_, i, grant)) = best else {
                return;
            };
            if plan.grants[i] == 0 {
                plan.funded.push(i);
                plan.edges.push(i);
                plan.displaced.retain(|&d| d != i);
            }
            plan.grants[i] = grant;
        }
    }

    /// The funded set after clearing: the queries funded at the feasible end of the
    /// bracket, plus — most solvent first, while their bids fit in the budget — those
    /// that become funded only inside the bracket. Several queries can cross into
    /// solvency at one price (identical queries always do), and a price alone cannot
    /// fund some of them and not others. Also returns the ones that did not fit, in no
    /// particular order.
    fn funded_set(&self, cleared: &Ends) -> (Vec<usize>, Vec<usize>) {
        let market = self.market;
        let n = market.len();
        let (hi, lo) = (cleared.hi_tokens, cleared.lo_tokens.unwrap_or(&[]));
        // Only bids that fit the room can be funded; most solvent (highest abandonment
        // price) first among those.
        let mut room = self.budget as f64 - cleared.hi.tokens;
        let (mut funded, mut fits) = (self.scratch.positions.take(), Vec::new());
        let mut left_out = Vec::new();
        for (i, &at_hi) in hi[..n].iter().enumerate() {
            if at_hi > 0.0 {
                funded.push(i);
            } else if let Some(&bid) = lo.get(i).filter(|&&bid| at_hi == 0.0 && bid > 0.0) {
                if bid <= room {
                    fits.push(i);
                } else {
                    left_out.push(i);
                }
            }
        }
        if fits.is_empty() {
            return (funded, left_out);
        }
        let mut fitting = Vec::new();
        chunks::map_costly_into(&fits, &mut fitting, |_, &i| {
            (market.bidder(i).abandonment_price(), i)
        });
        fitting.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut joined = Vec::new();
        for (_, i) in fitting {
            if lo[i] <= room {
                room -= lo[i];
                joined.push(i);
            } else {
                left_out.push(i);
            }
        }
        if joined.is_empty() {
            return (funded, left_out);
        }
        // `funded` is in order already: merge the few that joined into it.
        joined.sort_unstable();
        let mut merged = self.scratch.positions.take();
        merge(&funded, &joined, &mut merged);
        self.scratch.positions.give(funded);
        (merged, left_out)
    }

    /// The queries to try funding on top of the funded set. All of `candidates` when
    /// there are few (see [`EdgeEffort`]); otherwise the most solvent given the budget
    /// (highest abandonment price with the budget as a cap) and, in small batches, also
    /// those with the largest surplus at `marginal_price` — two rankings, because the
    /// most solvent query may need tokens that only a costly squeeze of the others
    /// could free. Candidates whose utility could not matter are left out.
    fn edge_candidates(&self, candidates: &[usize], marginal_price: f64) -> Vec<usize> {
        let (market, effort) = (self.market, self.effort);
        let budget = self.budget as f64;
        // Funding one query gains at most its utility; below this share of what the
        // budget is worth at the margin, the extra re-clear is not worth its passes.
        let negligible = self.allocator.tolerance * marginal_price * budget;
        let useful: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&j| {
                // Cheapest bound first: a query's utility never exceeds weight × ceiling.
                let query = self.query(j);
                query.weight() * query.curve().ceiling() > negligible
                    && query.utility(market.bidder(j).cap().min(budget)) > negligible
            })
            .collect();
        if useful.len() <= effort.exhaustive.max(effort.tries) {
            return useful;
        }
        let top = |score: &dyn Fn(usize) -> f64| -> Vec<usize> {
            let mut scored: Vec<(f64, usize)> = useful.iter().map(|&j| (score(j), j)).collect();
            scored.select_nth_unstable_by(effort.tries - 1, |a, b| b.0.total_cmp(&a.0));
            scored[..effort.tries].iter().map(|&(_, j)| j).collect()
        };
        let mut picks = top(&|j| market.bidder(j).abandonment_price_within(budget));
        if !effort.both_rankings {
            return picks;
        }
        let surplus = |j: usize| {
            let bidder = &market.bidder(j);
            let grant = bidder
                .bid_by(marginal_price, BidRule::Rational)
                .tokens()
                .min(budget);
            self.query(j).utility(grant) - marginal_price * grant
        };
        for j in top(&surplus) {
            if !picks.contains(&j) {
                picks.push(j);
            }
        }
        picks
    }

    /// The leftover step's search (SPEC §4.2). A move tries one of the most promising
    /// candidates on top of the funded set — or, in small batches, in place of its
    /// least solvent member — with the price re-cleared among the new set. The search
    /// follows each of the best first moves greedily for up to [`EdgeEffort::rounds`]
    /// moves and keeps the best plan. Returns the passes.
    fn add_edges(&self, plan: &mut Plan, candidates: Vec<usize>) -> usize {
        let (market, effort) = (self.market, self.effort);
        let mut passes = 0;
        let mut first_moves = self.edge_moves(plan, &candidates, &mut passes);
        if first_moves.len() > effort.branches {
            for (_, other) in first_moves.drain(effort.branches..) {
                other.recycle(self.scratch);
            }
        }
        let mut best: Option<(f64, Plan)> = None;
        // In a small batch every query out of the plan is a candidate again, including
        // one a re-clear has squeezed out; a large batch keeps its short list.
        let unfunded = |plan: &Plan| -> Vec<usize> {
            if effort.exhaustive > 0 {
                (0..market.len())
                    .filter(|i| !plan.funded.contains(i))
                    .collect()
            } else {
                candidates
                    .iter()
                    .copied()
                    .filter(|i| !plan.funded.contains(i))
                    .collect()
            }
        };
        for (_, mut branch) in first_moves {
            for _ in 1..effort.rounds {
                let left = unfunded(&branch);
                let moves = self.edge_moves(&branch, &left, &mut passes);
                let mut moves = moves.into_iter();
                let Some((_, next)) = moves.next() else {
                    break;
                };
                moves.for_each(|(_, other)| other.recycle(self.scratch));
                std::mem::replace(&mut branch, next).recycle(self.scratch);
            }
            let value = self.total_utility(&branch.grants);
            if value > best.as_ref().map_or(f64::NEG_INFINITY, |b| b.0) {
                if let Some((_, worse)) = best.replace((value, branch)) {
                    worse.recycle(self.scratch);
                }
            } else {
                branch.recycle(self.scratch);
            }
        }
        if let Some((_, better)) = best {
            std::mem::replace(plan, better).recycle(self.scratch);
        }
        passes
    }

    /// The improving moves from `plan`, best first, each applied to a copy of it.
    fn edge_moves(
        &self,
        plan: &Plan,
        candidates: &[usize],
        passes: &mut usize,
    ) -> Vec<(f64, Plan)> {
        let (market, effort, budget) = (self.market, self.effort, self.budget);
        let allocator = self.allocator;
        let weakest = plan
            .funded
            .iter()
            .filter(|_| effort.swaps)
            .map(|&i| (market.bidder(i).abandonment_price(), i))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, i)| i);
        let mut moves = Vec::new();
        let tries = self.edge_candidates(candidates, plan.marginal_price);
        let used: u128 = plan.grants.iter().map(|&t| t as u128).sum();
        let rest = u64::try_from((budget as u128).saturating_sub(used)).unwrap_or(u64::MAX);
        // Re-clearing with a new query is the rational rule's move; the no-abandonment
        // ablation only hands out what is left.
        let reclear_moves = allocator.rule == BidRule::Rational;
        for j in tries {
            // The free move: j takes what the budget has left, nobody else changes.
            let leftover_grant = allocator
                .round_down_whole(rest)
                .min(market.cap(j))
                .saturating_add(plan.grants[j])
                .min(market.cap(j));
            let gain = utility_of(self.query(j), leftover_grant)
                - utility_of(self.query(j), plan.grants[j]);
            if gain > 0.0 && leftover_grant as f64 > market.bidder(j).threshold() {
                let mut next = self.copy(plan);
                next.grants[j] = leftover_grant;
                next.funded.push(j);
                next.edges.push(j);
                next.displaced.retain(|&i| i != j);
                moves.push((gain, next));
            }
            if !reclear_moves {
                continue;
            }
            for dropped in [None].into_iter().chain(weakest.map(Some)) {
                let mut set = self.scratch.positions.take();
                set.extend(plan.funded.iter().copied().filter(|&i| Some(i) != dropped));
                set.push(j);
                let (price, spent, extra) = self.reclear(&set, None);
                *passes += extra;
                let mut tokens = self.scratch.bids.filled(market.len(), 0.0);
                scatter(&mut tokens, &set, &spent);
                let mut grants = allocator.round(&market, &tokens, Some(budget), self.scratch);
                self.scratch.bids.give(tokens);
                self.scratch.bids.give(spent);
                self.give_rest(&mut grants, j);
                let gain: f64 = set
                    .iter()
                    .chain(&dropped)
                    .map(|&i| {
                        utility_of(self.query(i), grants[i])
                            - utility_of(self.query(i), plan.grants[i])
                    })
                    .sum();
                if gain > 0.0 {
                    let mut next = Plan {
                        grants,
                        marginal_price: price,
                        funded: self.scratch.positions.take(),
                        edges: plan.edges.clone(),
                        displaced: plan.displaced.clone(),
                    };
                    next.edges.push(j);
                    next.displaced.retain(|&i| i != j);
                    // The dropped query, and any the re-clear squeezed to nothing, leave
                    // the plan (and may come back as candidates).
                    for &i in set.iter().chain(&dropped) {
                        if next.grants[i] > 0 {
                            next.funded.push(i);
                        } else if next.edges.contains(&i) {
                            next.edges.retain(|&e| e != i);
                        } else if !next.displaced.contains(&i) {
                            next.displaced.push(i);
                        }
                    }
                    moves.push((gain, next));
                } else {
                    self.scratch.grants.give(grants);
                }
                self.scratch.positions.give(set);
            }
        }
        moves.sort_by(|a, b| b.0.total_cmp(&a.0));
        moves
    }

    /// A copy of `plan` whose long vectors are in `scratch`'s memory.
    fn copy(&self, plan: &Plan) -> Plan {
        let mut grants = self.scratch.grants.take();
        grants.extend_from_slice(&plan.grants);
        let mut funded = self.scratch.positions.take();
        funded.extend_from_slice(&plan.funded);
        Plan {
            grants,
            marginal_price: plan.marginal_price,
            funded,
            edges: plan.edges.clone(),
            displaced: plan.displaced.clone(),
        }
    }

    /// Hands what the budget has left to query `j`, up to its cap: the re-clear cannot
    /// place tokens below an edge query's inflection point, where its utility is convex
    /// and the best use of a small remainder is all of it.
    fn give_rest(&self, grants: &mut [u64], j: usize) {
        let (market, budget) = (self.market, self.budget);
        let used: u128 = grants.iter().map(|&t| t as u128).sum();
        let rest = u64::try_from((budget as u128).saturating_sub(used)).unwrap_or(u64::MAX);
        let grant = grants[j]
            .saturating_add(rest - rest % self.allocator.granularity)
            .min(market.cap(j));
        if grant as f64 > market.bidder(j).threshold() {
            grants[j] = grant;
        }
    }

    /// Spends `budget` among the `funded` queries alone, ignoring abandonment: the
    /// price at which their continuous demand meets the budget, found by Newton's
    /// method in `ln λ` (no jumps here) inside a [`Bracket`], starting at the clearing
    /// price.
    /// Returns the price, the funded queries' tokens (in the order of `funded`) and the
    /// passes made.
    ///
    /// `known`, when given, holds bids at the start price for the queries funded there
    /// (0 for the others), which spares the first pass most of its W₋₁ evaluations.
    fn reclear(&self, funded: &[usize], known: Option<&[f64]>) -> (f64, Vec<f64>, usize) {
        let allocator = self.allocator;
        let bidders = &self.market;
        let budget = self.budget as f64;
        let start_log_price = self.start_log_price;
        // Σ caps (demand at price 0) and the top price (nobody is funded at or above
        // it), in one sweep.
        let (all_caps, top) = chunks::reduce(
            funded,
            (0.0, 0.0),
            |part| {
                part.iter().fold((0.0, 0.0), |(caps, top): (f64, f64), &i| {
                    let bidder = bidders.bidder(i);
                    let price = bidder.max_price_under(BidRule::KeepAll);
                    (caps + bidder.cap(), top.max(price))
                })
            },
            |(caps, top), (more, other)| (caps + more, top.max(other)),
        );
        if all_caps <= budget {
            let mut caps = self.scratch.bids.take();
            caps.extend(funded.iter().map(|&i| bidders.bidder(i).cap()));
            return (0.0, caps, 0);
        }
        let demand = |log_price: f64, tokens: &mut [f64]| {
            let price = log_price.exp();
            demand_of(funded, log_price, tokens, |i| {
                bidders.bidder(i).bid_funded(price)
            })
        };
        let mut bracket = Bracket::new(top, all_caps);
        // The best feasible point so far starts as nothing bought at the top price.
        let mut best_tokens = self.scratch.bids.filled(funded.len(), 0.0);
        let mut best_price = top;
        let mut current = self.scratch.bids.filled(funded.len(), 0.0);
        // Rounding hands back up to one granule per funded query, by largest remainder,
        // so the continuous demand need only come within a quarter of that.
        let exact = (0.25 * funded.len() as f64 * allocator.granularity as f64).max(0.25);
        let mut passes = 0;
        let mut point = match known {
            Some(known) => {
                let price = start_log_price.exp();
                demand_of(funded, start_log_price, &mut current, |i| {
                    if known[i] > 0.0 {
                        bidders.bidder(i).funded_bid_at(known[i])
                    } else {
                        bidders.bidder(i).bid_funded(price)
                    }
                })
            }
            None => {
                passes += 1;
                demand(start_log_price, &mut current)
            }
        };
        for _ in 0..allocator.max_iterations {
            if bracket.update(point, budget) {
                best_price = point.price();
                std::mem::swap(&mut best_tokens, &mut current);
            }
            // Demand can still jump here — a forced edge query drops out above its
            // peak marginal — so a bracket this narrow means the budget falls in a
            // jump, and the caller hands the remainder to the edge query.
            if budget - bracket.hi.tokens <= exact || bracket.narrow(allocator.tolerance) {
                break;
            }
            let (lo, hi) = (bracket.lo.log_price, bracket.hi.log_price);
            let newton = point.log_price + (budget - 0.5 * exact - point.tokens) / point.slope;
            let next = if newton > lo && newton < hi {
                newton
            } else {
                bracket.next(budget - 0.5 * exact)
            };
            point = demand(next, &mut current);
            passes += 1;
        }
        self.scratch.bids.give(current);
        (best_price, best_tokens, passes)
    }
}

/// The demand of the `funded` members at `e^log_price`, `bid(i)` being member `i`'s
/// bid there: each bid's tokens written to `tokens` (in the order of `funded`) and
/// summed chunk by chunk (on several threads for many with the `parallel` feature).
fn demand_of(
    funded: &[usize],
    log_price: f64,
    tokens: &mut [f64],
    bid: impl Fn(usize) -> Bid + Sync + Send,
) -> Point {
    chunks::fold(
        funded,
        tokens,
        Point::empty(log_price, 0),
        |_, part, slots| {
            let mut point = Point::empty(log_price, part.len());
            for (&i, slot) in part.iter().zip(slots.iter_mut()) {
                let bid = bid(i);
                *slot = bid.tokens();
                point.tokens += *slot;
                point.slope += bid.log_price_slope();
            }
            point
        },
        Point::then,
    )
}

/// The sorted union of two sorted, disjoint lists, written to `merged`.
fn merge(a: &[usize], b: &[usize], merged: &mut Vec<usize>) {
    merged.clear();
    merged.reserve(a.len() + b.len());
    let (mut j, mut k) = (0, 0);
    while j < a.len() && k < b.len() {
        if a[j] < b[k] {
            merged.push(a[j]);
            j += 1;
        } else {
            merged.push(b[k]);
            k += 1;
        }
    }
    merged.extend_from_slice(&a[j..]);
    merged.extend_from_slice(&b[k..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::market::{ClearBuffers, Market};
    use crate::solver::search::Point;
    use crate::solver::subset::Subset;
    use crate::solver::total_utility_of;
    use crate::ShiftedSurge;

    type Bidder = crate::solver::Bidder;

    /// Memory the tests' leftover steps share (a pool is safe to share between
    /// threads).
    static SCRATCH: Scratch = Scratch::new();

    /// Every query of the market as a subset.
    fn everyone(market: &Market<Bidder>) -> Subset<Bidder> {
        let mut set = Subset::default();
        set.fill_all(market);
        set
    }

    fn queries(curves: &[(f64, f64, f64)], cap: u64) -> Vec<Query> {
        curves
            .iter()
            .map(|&(t, w, p)| Query::new(ShiftedSurge::new(t, w, p).unwrap()).with_cap(cap))
            .collect()
    }

    fn leftover<'a>(
        allocator: &'a Allocator,
        queries: &'a [Query],
        market: &'a Market<Bidder>,
        set: &'a Subset<Bidder>,
        budget: u64,
    ) -> Leftover<'a, ShiftedSurge> {
        Leftover {
            allocator,
            queries,
            market: Members { market, set },
            budget,
            start_log_price: (1e-3f64).ln(),
            effort: EdgeEffort::for_batch(market.len()),
            scratch: &SCRATCH,
        }
    }

    fn plan(grants: Vec<u64>, funded: Vec<usize>, marginal_price: f64) -> Plan {
        Plan {
            grants,
            marginal_price,
            funded,
            edges: Vec::new(),
            displaced: Vec::new(),
        }
    }

    #[test]
    fn queries_solvent_inside_the_bracket_are_funded_most_solvent_first_while_they_fit() {
        let allocator = Allocator::default();
        // Same shape, different ceilings: query 2 is the most solvent, then 1, then 0.
        let qs = queries(
            &[(100.0, 50.0, 0.5), (100.0, 50.0, 0.7), (100.0, 50.0, 0.9)],
            1000,
        );
        let market = Market::prepare(&allocator, &qs);
        let set = everyone(&market);
        // Nobody is funded at the feasible end; everybody bids 300 at the other.
        let cleared = Ends {
            hi: Point {
                log_price: -5.0,
                tokens: 0.0,
                slope: 0.0,
                funded: 0,
            },
            hi_tokens: &[0.0; 3],
            lo_tokens: Some(&[300.0; 3]),
        };
        let step = leftover(&allocator, &qs, &market, &set, 700);
        let (funded, left_out) = step.funded_set(&cleared);
        assert_eq!(funded, [1, 2]);
        assert_eq!(left_out, [0]);
        // Without an evaluated low end, only the feasible end's queries are funded.
        let bare = Ends {
            lo_tokens: None,
            hi_tokens: &[0.0, 250.0, 0.0],
            ..cleared
        };
        assert_eq!(step.funded_set(&bare), (vec![1], vec![]));
    }

    #[test]
    fn merging_keeps_order() {
        let merged = |a: &[usize], b: &[usize]| {
            // Whatever the vector held before is gone.
            let mut out = vec![7, 7];
            merge(a, b, &mut out);
            out
        };
        assert_eq!(merged(&[1, 4, 9], &[0, 5, 12]), [0, 1, 4, 5, 9, 12]);
        assert_eq!(merged(&[], &[3]), [3]);
        assert_eq!(merged(&[2], &[]), [2]);
    }

    #[test]
    fn the_rest_goes_to_the_edge_query_only_past_its_threshold() {
        let allocator = Allocator::builder().granularity(10).build().unwrap();
        let qs = queries(&[(100.0, 50.0, 0.9), (100.0, 50.0, 0.9)], 1000);
        let market = Market::prepare(&allocator, &qs);
        let set = everyone(&market);
        let mut grants = vec![300, 0];
        leftover(&allocator, &qs, &market, &set, 1205).give_rest(&mut grants, 1);
        // 905 left, rounded down to the granularity, within the cap of 1000.
        assert_eq!(grants, [300, 900]);
        let mut grants = vec![300, 0];
        leftover(&allocator, &qs, &market, &set, 395).give_rest(&mut grants, 1);
        // 90 tokens would not pass the threshold of 100: they buy nothing.
        assert_eq!(grants, [300, 0]);
    }

    #[test]
    fn the_free_move_hands_the_leftover_to_a_candidate() {
        let allocator = Allocator::default();
        let qs = queries(&[(100.0, 50.0, 0.9), (200.0, 80.0, 0.9)], 2000);
        let market = Market::prepare(&allocator, &qs);
        let set = everyone(&market);
        let step = leftover(&allocator, &qs, &market, &set, 1000);
        let start = plan(vec![400, 0], vec![0], 1e-3);
        let mut passes = 0;
        let moves = step.edge_moves(&start, &[1], &mut passes);
        let (gain, best) = moves.first().expect("funding query 1 gains utility");
        assert!(*gain > 0.0);
        assert!(best.grants[1] > 200, "{:?}", best.grants);
        assert!(best.edges.contains(&1) && best.funded.contains(&1));
        assert!(best.grants.iter().sum::<u64>() <= 1000);
        // Moves come best first.
        assert!(moves.windows(2).all(|m| m[0].0 >= m[1].0));
    }

    #[test]
    fn without_abandonment_only_the_free_move_is_tried() {
        let allocator = Allocator::builder().abandonment(false).build().unwrap();
        let qs = queries(&[(100.0, 50.0, 0.9), (200.0, 80.0, 0.9)], 2000);
        let market = Market::prepare(&allocator, &qs);
        let set = everyone(&market);
        let step = leftover(&allocator, &qs, &market, &set, 1000);
        let mut passes = 0;
        let moves = step.edge_moves(&plan(vec![400, 0], vec![0], 1e-3), &[1], &mut passes);
        // One free move, and no re-clear (no passes).
        assert_eq!(moves.len(), 1);
        assert_eq!(passes, 0);
        assert_eq!(moves[0].1.grants, [400, 600]);
    }

    #[test]
    fn spending_the_leftover_never_loses_utility_or_the_budget() {
        let allocator = Allocator::default();
        let qs = queries(
            &[
                (151.0, 101.0, 0.95),
                (304.0, 280.0, 0.4),
                (151.0, 101.0, 0.95),
                (500.0, 200.0, 0.8),
                (50.0, 30.0, 0.3),
            ],
            4000,
        );
        let market = Market::prepare(&allocator, &qs);
        let set = everyone(&market);
        for budget in [300u64, 700, 1200, 2500] {
            let mut buffers = ClearBuffers::default();
            let cleared = allocator.clear(&market, &qs, budget as f64, &mut buffers, None);
            buffers.widen(&market);
            let at_price = allocator.round(&market, &buffers.hi, Some(budget), &SCRATCH);
            let step = Leftover {
                start_log_price: cleared.hi.log_price,
                ..leftover(&allocator, &qs, &market, &set, budget)
            };
            let ends = Ends {
                hi: cleared.hi,
                hi_tokens: &buffers.hi,
                lo_tokens: (!buffers.lo.is_empty()).then_some(&buffers.lo[..]),
            };
            let Spent { plan, .. } = step.spend(&ends);
            assert!(plan.grants.iter().sum::<u64>() <= budget);
            assert!(
                total_utility_of(&qs, &plan.grants) >= total_utility_of(&qs, &at_price) - 1e-12,
                "budget {budget}: {:?} vs {:?}",
                plan.grants,
                at_price
            );
        }
    }
}
