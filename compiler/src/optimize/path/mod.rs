//! Contraction-path search: the order in which to contract one multi-operand
//! contraction (an einsum) pairwise.
//!
//! A [`Network`] lists each input's index labels, the output labels and every label's
//! size; [`optimize_path`] returns a [`ContractionPath`] in opt_einsum's linear format.
//!
//! # Cost convention (opt_einsum's)
//!
//! A pairwise step costs the product of the sizes of all distinct labels of its two
//! operands, times 2 when at least one label is summed in that step (a multiply-add per
//! term) and times 1 otherwise (a pure outer or Hadamard product); the cost of a path
//! is the sum over its steps ([`pairwise_flops`]). A label is summed in a step when no
//! other remaining operand and not the output uses it, so hyperedges (labels shared by
//! three or more inputs) and batch labels (kept in the output) are handled exactly. A
//! label that occurs in only one input and not in the output is summed by the first
//! step that uses that input, as opt_einsum counts it. An input that repeats a label (a
//! diagonal) counts as its set of distinct labels. Costs are `f64`: no overflow; a
//! cost beyond `f64`'s range is infinite, and a zero size makes a product zero even
//! next to an infinite one.
//!
//! Networks with fewer than two inputs need no pairwise step: the path is empty, the
//! largest intermediate is 0, and the cost is 0 except for a single input that sums
//! some label away, which costs the product of its distinct labels' sizes (one
//! addition per element read), following opt_einsum's count for a one-operand step.
//!
//! # Algorithms
//!
//! * Exact dynamic programming (`dp.rs`): every split of every subset for up to
//!   [`FULL_DP_MAX`] inputs, so outer products are considered too; above that, the
//!   search space of opt_einsum's `dp` (subsets connected through summed labels), but
//!   searched best-first with an admissible bound instead of opt_einsum's repeated
//!   level sweeps under a rising cost cap, and pruned by the cost of a known path;
//!   components are joined exactly afterwards.
//! * Branch-and-bound over pairs (`bb.rs`), bounded by the best path so far.
//! * opt_einsum's greedy heuristic and randomised greedy (`greedy.rs`): seeded,
//!   perturbed greedy runs, best kept; then subtree reconfiguration (`reconf.rs`),
//!   which re-solves subtrees of up to 8 operands exactly.
//! * [`Method::Auto`]: the exact search outright up to [`FULL_DP_MAX`] inputs; above,
//!   greedy, then the exact search bounded by the greedy cost with a small work limit
//!   (chains and trees finish here), then 63 randomised greedy runs for a tighter
//!   bound and the exact search again with the work limit of half the budget (a fifth
//!   above 40 inputs). If that gives up: more randomised greedy runs (a work count per
//!   budget second), reconfiguration of the best four paths, and a narrow
//!   branch-and-bound polish up to 40 inputs. A path is always returned when no memory
//!   limit is set; the floor is one greedy run, which may exceed a tiny budget on huge
//!   networks.
//!
//! "Optimal" ([`ContractionPath::optimal`]) means proven optimal for the convention
//! over all contraction trees for up to [`FULL_DP_MAX`] inputs, and above that over the
//! trees that never form an outer product between operands connected through a summed
//! label (opt_einsum `dp`'s space; an outer product inside such a component is rarely
//! cheaper, and opt_einsum's `dp` never considers one either).
//!
//! # Determinism and memoisation
//!
//! The searches stop on counts of work derived from the time budget, so the same
//! input and options give the same path. The wall-clock budget is only a safety net
//! for slow or loaded machines: a search it cuts short still returns its best path so
//! far (such a result is not cached, as it may not repeat). Every search runs on a
//! canonical form of the network (labels merged and renumbered, inputs reordered; see
//! `cache.rs`) and is memoised in a bounded [`PathCache`] keyed by that form plus the
//! options, so a repeated sub-problem costs only its canonicalisation, and a result
//! never depends on what the cache held before; the cached path is mapped back
//! through the input permutation.

mod bb;
mod bits;
mod cache;
mod dp;
mod greedy;
mod join;
mod problem;
mod reconf;
mod rng;
mod tree;

#[cfg(test)]
mod tests;

pub use cache::{CacheStats, PathCache};
pub use dp::FULL_DP_MAX;

use bits::{with_width, MAX_BIT_LABELS};
use dp::Budget;
use problem::{BitProblem, Found, Problem, Solution, Ssa};
use std::time::{Duration, Instant};

/// An index label; its size is `Network::sizes[label]`.
pub type Label = u32;

/// One einsum-like contraction: each input's index labels, the output labels, each
/// label's size (indexed by label; entries for unused labels are ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Network {
    pub inputs: Vec<Vec<Label>>,
    pub output: Vec<Label>,
    pub sizes: Vec<u64>,
}

/// Which search [`optimize_path`] runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Method {
    /// Picks by size and time budget (see the module docs).
    #[default]
    Auto,
    /// Exact dynamic programming; falls back to randomised greedy (and reports
    /// `optimal: false`) when the network has over 128 inputs or 1024 merged labels, or
    /// the time budget runs out.
    Optimal,
    /// Exhaustive branch-and-bound within the time budget, starting from the greedy
    /// path's cost as bound (over 128 inputs: greedy).
    BranchBound,
    /// opt_einsum's greedy heuristic.
    Greedy,
    /// The best of `trials` randomised greedy runs (the first is the plain greedy run),
    /// reproducible for a given `seed`.
    RandomGreedy { trials: usize, seed: u64 },
}

/// Options of [`optimize_path`].
#[derive(Clone, Debug, PartialEq)]
pub struct PathOptions {
    pub method: Method,
    /// Wall-clock budget of the search. [`Method::Auto`] sizes its work to fit it;
    /// every search stops when it is spent (greedy, the fallback, always finishes).
    pub time_budget: Duration,
    /// Largest allowed result of any step, in elements (the final result included).
    pub max_intermediate: Option<f64>,
}

impl Default for PathOptions {
    fn default() -> Self {
        PathOptions {
            method: Method::Auto,
            time_budget: Duration::from_secs(1),
            max_intermediate: None,
        }
    }
}

/// A contraction order with its cost.
#[derive(Clone, Debug, PartialEq)]
pub struct ContractionPath {
    /// opt_einsum's linear format: pairs of positions in the current operand list; the
    /// two operands are removed and their result is appended at the end.
    pub pairs: Vec<(usize, usize)>,
    /// Total cost under the convention of the module docs.
    pub flops: f64,
    /// Elements of the largest step result (the final result included; 0 without steps).
    pub largest_intermediate: f64,
    /// The algorithm that produced the path: "trivial", "dp", "branch-bound", "greedy"
    /// or "random-greedy".
    pub method: &'static str,
    /// Proven optimal for the cost convention (see the module docs for the space).
    pub optimal: bool,
    pub elapsed: Duration,
}

/// Cost of a path replayed on a network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PathCost {
    pub flops: f64,
    pub largest_intermediate: f64,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PathError {
    #[error(
        "input {input} uses label {label}, but sizes are given only for labels 0..{num_sizes}"
    )]
    LabelOutOfRange {
        input: usize,
        label: Label,
        num_sizes: usize,
    },
    #[error("output label {label} has no size: sizes are given only for labels 0..{num_sizes}")]
    OutputLabelOutOfRange { label: Label, num_sizes: usize },
    #[error("output label {label} occurs in no input")]
    OutputLabelMissing { label: Label },
    #[error("output label {label} is repeated")]
    RepeatedOutputLabel { label: Label },
    #[error("invalid memory limit {limit}: expected a number of elements >= 0")]
    InvalidMemoryLimit { limit: f64 },
    #[error("no contraction path found that keeps every intermediate within {limit} elements")]
    MemoryLimit { limit: f64 },
    #[error("invalid path at step {step}: {reason}")]
    InvalidPath { step: usize, reason: String },
    /// Always a bug in the path search, never a property of the input.
    #[error("internal error in the path search (a bug): {0}")]
    Internal(String),
}

/// The cost of one pairwise step under the convention of the module docs: the product
/// of the sizes of the distinct labels of `a` and `b`, times 2 when some label of either
/// is not in `keep` (summed in this step). Labels without a size count as size 1.
pub fn pairwise_flops(a: &[Label], b: &[Label], keep: &[Label], sizes: &[u64]) -> f64 {
    let mut all: Vec<Label> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    all.dedup();
    let size = |l: Label| sizes.get(l as usize).map_or(1.0, |&s| s as f64);
    let product = problem::product(all.iter().map(|&l| size(l)));
    let summed = all.iter().any(|l| !keep.contains(l));
    if summed {
        2.0 * product
    } else {
        product
    }
}

/// opt_einsum's naive cost: all inputs multiplied in one loop nest over every label,
/// `size(all labels) * (max(1, inputs - 1) + [some label summed])`.
pub fn naive_flops(net: &Network) -> Result<f64, PathError> {
    validate(net)?;
    let mut all: Vec<Label> = net.inputs.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    let product = problem::product(all.iter().map(|&l| net.sizes[l as usize] as f64));
    let summed = all.iter().any(|l| !net.output.contains(l));
    let terms = net.inputs.len().saturating_sub(1).max(1) as f64;
    Ok(product * (terms + if summed { 1.0 } else { 0.0 }))
}

/// Replays a path in linear format and returns its cost, checking that every pair is
/// valid and that the path ends with one operand holding exactly the output labels.
pub fn path_cost(net: &Network, pairs: &[(usize, usize)]) -> Result<PathCost, PathError> {
    validate(net)?;
    let sizes: Vec<f64> = net.sizes.iter().map(|&s| s as f64).collect();
    let mut count = vec![0u32; net.sizes.len()];
    let mut ops: Vec<Vec<u32>> = net
        .inputs
        .iter()
        .map(|v| {
            let mut v = v.clone();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    for op in &ops {
        for &l in op {
            count[l as usize] += 1;
        }
    }
    for &l in &net.output {
        count[l as usize] += 1;
    }
    if ops.len() <= 1 {
        if let Some(&(a, b)) = pairs.first() {
            let reason = format!("pair ({a}, {b}) but the network has {} input(s)", ops.len());
            return Err(PathError::InvalidPath { step: 0, reason });
        }
        return Ok(PathCost {
            flops: single_operand_flops(net),
            largest_intermediate: 0.0,
        });
    }
    let (mut flops, mut largest) = (0.0, 0.0f64);
    for (step, &(i, j)) in pairs.iter().enumerate() {
        if i == j || i >= ops.len() || j >= ops.len() {
            let reason = format!("pair ({i}, {j}) with {} operands", ops.len());
            return Err(PathError::InvalidPath { step, reason });
        }
        let (hi, lo) = (i.max(j), i.min(j));
        let b = ops.remove(hi);
        let a = ops.remove(lo);
        let (keep, cost) = problem::contract_lists(&a, &b, &mut count, &sizes);
        largest = largest.max(problem::product(keep.iter().map(|&l| sizes[l as usize])));
        flops += cost;
        ops.push(keep);
    }
    let mut out = net.output.clone();
    out.sort_unstable();
    match ops.as_slice() {
        [last] if *last == out => Ok(PathCost {
            flops,
            largest_intermediate: largest,
        }),
        [_] => Err(PathError::InvalidPath {
            step: pairs.len(),
            reason: "the result's labels differ from the output".into(),
        }),
        _ => Err(PathError::InvalidPath {
            step: pairs.len(),
            reason: format!("{} operands left", ops.len()),
        }),
    }
}

fn single_operand_flops(net: &Network) -> f64 {
    match net.inputs.as_slice() {
        [only] => {
            let mut ls = only.clone();
            ls.sort_unstable();
            ls.dedup();
            if ls.iter().any(|l| !net.output.contains(l)) {
                problem::product(ls.iter().map(|&l| net.sizes[l as usize] as f64))
            } else {
                0.0
            }
        }
        _ => 0.0,
    }
}

fn validate(net: &Network) -> Result<(), PathError> {
    let num_sizes = net.sizes.len();
    let mut used = std::collections::HashSet::new();
    for (input, labels) in net.inputs.iter().enumerate() {
        for &label in labels {
            if label as usize >= num_sizes {
                return Err(PathError::LabelOutOfRange {
                    input,
                    label,
                    num_sizes,
                });
            }
            used.insert(label);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for &label in &net.output {
        if label as usize >= num_sizes {
            return Err(PathError::OutputLabelOutOfRange { label, num_sizes });
        }
        if !seen.insert(label) {
            return Err(PathError::RepeatedOutputLabel { label });
        }
        if !used.contains(&label) {
            return Err(PathError::OutputLabelMissing { label });
        }
    }
    Ok(())
}

/// Finds a contraction path, memoised in the process-wide [`PathCache::global`].
pub fn optimize_path(net: &Network, opts: &PathOptions) -> Result<ContractionPath, PathError> {
    optimize_path_with_cache(net, opts, Some(PathCache::global()))
}

/// Like [`optimize_path`], with a cache of the caller's choosing (`None`: no memoisation,
/// as benchmarks want).
pub fn optimize_path_with_cache(
    net: &Network,
    opts: &PathOptions,
    cache: Option<&PathCache>,
) -> Result<ContractionPath, PathError> {
    let start = Instant::now();
    validate(net)?;
    let limit = opts.max_intermediate;
    if let Some(l) = limit {
        if l.is_nan() || l < 0.0 {
            return Err(PathError::InvalidMemoryLimit { limit: l });
        }
    }
    let n = net.inputs.len();
    if n <= 1 {
        return Ok(ContractionPath {
            pairs: Vec::new(),
            flops: single_operand_flops(net),
            largest_intermediate: 0.0,
            method: "trivial",
            optimal: true,
            elapsed: start.elapsed(),
        });
    }
    let (perm, canon) = cache::canonicalize(&Problem::from_network(net));
    let cached = cache.and_then(|c| c.get(&canon, opts.method, opts.time_budget, limit));
    let sol = match cached {
        Some(s) => s,
        None => {
            let s = solve(&canon, opts, start).ok_or(PathError::MemoryLimit {
                limit: limit.unwrap_or(f64::INFINITY),
            })?;
            if let Some(c) = cache {
                if !s.timed_out {
                    c.insert(&canon, opts.method, opts.time_budget, limit, &s);
                }
            }
            s
        }
    };
    // Canonical input c is original input perm[c]; intermediate ids are unchanged.
    let ssa: Vec<(u32, u32)> = sol
        .ssa
        .iter()
        .map(|&(a, b)| {
            let m = |x: u32| perm.get(x as usize).map_or(x, |&p| p as u32);
            (m(a), m(b))
        })
        .collect();
    let pairs = problem::ssa_to_linear(&ssa, n);
    let cost = path_cost(net, &pairs)
        .map_err(|e| PathError::Internal(format!("search returned a bad path: {e}")))?;
    Ok(ContractionPath {
        pairs,
        flops: cost.flops,
        largest_intermediate: cost.largest_intermediate,
        method: sol.method,
        optimal: sol.optimal,
        elapsed: start.elapsed(),
    })
}

/// Exact-search work units per second assumed when sizing Auto's work limit from the
/// time budget (about half what the project's 2-core Zen 4 machine does under load).
const DP_WORK_PER_SEC: f64 = 2.0e7;

/// Share of the budget Auto gives the exact search before falling back: half up to
/// [`AUTO_DP_LARGE`] inputs, less above, where a search that finishes at all finishes
/// fast (sparse, tree-like networks) and the heuristics need the time.
const AUTO_DP_SHARE: f64 = 0.5;
const AUTO_DP_SHARE_LARGE: f64 = 0.2;
const AUTO_DP_LARGE: usize = 40;

/// Randomised-greedy work allowed per second of budget, in candidate pairs pushed (a
/// trial on 100 inputs pushes about a thousand; the machine above does several million
/// a second).
const RG_PUSHES_PER_SEC: f64 = 1.5e6;

/// The quick randomised-greedy pass that tightens the bound of the exact search when
/// the plain greedy bound did not let it finish within [`EASY_WORK`] units: its trials
/// and its share of the randomised-greedy work.
const QUICK_TRIALS: usize = 64;
const QUICK_SHARE: f64 = 0.1;
const EASY_WORK: u64 = 20_000;

/// Most randomised-greedy trials Auto runs, and how many of the best it reconfigures.
const AUTO_TRIALS: usize = 4096;
const AUTO_KEEP: usize = 4;

/// Branch-and-bound polish: opt_einsum's `branch-2` breadth, for networks this size.
const POLISH_MAX_INPUTS: usize = 40;
const POLISH_WORK: u64 = 20_000;

fn solve(p: &Problem, opts: &PathOptions, start: Instant) -> Option<Solution> {
    let n = p.n();
    let limit = opts.max_intermediate;
    let at = |share: f64| deadline(start, opts.time_budget, share);
    let unlimited = |share: f64| Budget {
        work: u64::MAX,
        deadline: at(share),
    };
    let fits_bits = n <= 128 && p.nlabels() <= MAX_BIT_LABELS;
    if n == 2 {
        let ssa = vec![(0, 1)];
        p.ssa_cost(&ssa, limit)?;
        return Some(solution(ssa, "trivial", true, false));
    }
    match opts.method {
        Method::Greedy => {
            let (ssa, _) = greedy::greedy(p, limit)?;
            Some(solution(ssa, "greedy", false, false))
        }
        Method::RandomGreedy { trials, seed } => {
            let (best, timed_out) = greedy::random_greedy(
                p,
                0..trials.max(1),
                seed,
                limit,
                unlimited(1.0),
                Vec::new(),
                1,
            );
            let (ssa, _) = best.into_iter().next()?;
            Some(solution(ssa, "random-greedy", false, timed_out))
        }
        Method::BranchBound => {
            let g = greedy::greedy(p, limit);
            if !fits_bits {
                return g.map(|(ssa, _)| solution(ssa, "greedy", false, false));
            }
            let bound = g.as_ref().map_or(f64::INFINITY, |x| x.1);
            let (found, complete) =
                with_width!(p.nlabels(), run_bb(p, limit, None, bound, unlimited(1.0)))?;
            let ssa = found.map(|x| x.0).or(g.map(|x| x.0))?;
            Some(solution(ssa, "branch-bound", complete, !complete))
        }
        Method::Optimal | Method::Auto => {
            let auto = opts.method == Method::Auto;
            if fits_bits && n <= FULL_DP_MAX {
                if let Some(found) = with_width!(
                    p.nlabels(),
                    run_exact(p, limit, f64::INFINITY, unlimited(1.0))
                )? {
                    return Some(found);
                }
            }
            // Bound the exact search by a known path's cost: the search then scans far
            // fewer partners, and the path is the fallback when the search gives up.
            // Easy problems (chains, trees, small graphs) finish under the plain greedy
            // bound with little work; the others first get a better bound.
            let (mut known, mut timed_out) =
                greedy::random_greedy(p, 0..1, 0, limit, unlimited(1.0), Vec::new(), AUTO_KEEP);
            if fits_bits {
                let budget = if auto {
                    let share = if n > AUTO_DP_LARGE {
                        AUTO_DP_SHARE_LARGE
                    } else {
                        AUTO_DP_SHARE
                    };
                    let work =
                        (opts.time_budget.as_secs_f64() * share * DP_WORK_PER_SEC).max(1e5) as u64;
                    Budget {
                        work,
                        deadline: at(share),
                    }
                } else {
                    unlimited(1.0)
                };
                let upper = known.first().map_or(f64::INFINITY, |x| x.1);
                let easy = Budget {
                    work: EASY_WORK.min(budget.work),
                    ..budget
                };
                if let Some(found) = with_width!(p.nlabels(), run_exact(p, limit, upper, easy))? {
                    return Some(found);
                }
                let cut;
                (known, cut) = quick_heuristic(p, limit, opts, start, known);
                timed_out |= cut;
                let upper = known.first().map_or(f64::INFINITY, |x| x.1);
                if let Some(found) = with_width!(p.nlabels(), run_exact(p, limit, upper, budget))? {
                    return Some(found);
                }
                timed_out |= budget.expired();
            } else {
                let cut;
                (known, cut) = quick_heuristic(p, limit, opts, start, known);
                timed_out |= cut;
            }
            let (ssa, method, cut) = heuristic(p, limit, opts, start, known, auto)?;
            Some(solution(ssa, method, false, timed_out || cut))
        }
    }
}

/// `start + share * budget`, or no deadline when that is past what `Instant` holds
/// (`Duration::mul_f64` itself would panic near `Duration::MAX`).
fn deadline(start: Instant, budget: Duration, share: f64) -> Option<Instant> {
    Duration::try_from_secs_f64(budget.as_secs_f64() * share)
        .ok()
        .and_then(|d| start.checked_add(d))
}

fn solution(ssa: Ssa, method: &'static str, optimal: bool, timed_out: bool) -> Solution {
    Solution {
        ssa,
        method,
        optimal,
        timed_out,
    }
}

/// The exact search: [`dp::full_dp`] for small networks, [`dp::connected_dp`] above.
/// `None` when the budget ran out or the memory limit rules out the search space.
fn run_exact<const W: usize>(
    p: &Problem,
    limit: Option<f64>,
    upper: f64,
    budget: Budget,
) -> Option<Solution> {
    let bp = BitProblem::<W>::new(p);
    if p.n() <= FULL_DP_MAX {
        let (ssa, _) = dp::full_dp(&bp, limit)?;
        return Some(solution(ssa, "dp", true, false));
    }
    let mut work = 0;
    let (ssa, exact) = dp::connected_dp(&bp, limit, upper, budget, &mut work).ok()?;
    Some(solution(ssa, "dp", exact, false))
}

fn run_bb<const W: usize>(
    p: &Problem,
    limit: Option<f64>,
    nbranch: Option<usize>,
    bound: f64,
    budget: Budget,
) -> (Option<Found>, bool) {
    bb::branch_bound(&BitProblem::<W>::new(p), limit, nbranch, bound, budget)
}

/// Randomised greedy runs 1 to [`QUICK_TRIALS`] on top of the `known` paths: the best
/// few paths, cheapest first, and whether the deadline cut them short.
fn quick_heuristic(
    p: &Problem,
    limit: Option<f64>,
    opts: &PathOptions,
    start: Instant,
    known: Vec<Found>,
) -> (Vec<Found>, bool) {
    let work = (QUICK_SHARE * RG_PUSHES_PER_SEC * opts.time_budget.as_secs_f64()) as u64;
    let budget = Budget {
        work,
        deadline: deadline(start, opts.time_budget, 0.1),
    };
    greedy::random_greedy(p, 1..QUICK_TRIALS, 0, limit, budget, known, AUTO_KEEP)
}

/// The rest of the heuristic pipeline after [`quick_heuristic`]: more randomised greedy
/// runs, subtree reconfiguration of the best few, and for Auto a narrow
/// branch-and-bound on medium sizes. Returns the path, the method that found it and
/// whether the deadline cut a stage short.
fn heuristic(
    p: &Problem,
    limit: Option<f64>,
    opts: &PathOptions,
    start: Instant,
    known: Vec<Found>,
    polish: bool,
) -> Option<(Ssa, &'static str, bool)> {
    let at = |share: f64| deadline(start, opts.time_budget, share);
    let work = ((1.0 - QUICK_SHARE) * RG_PUSHES_PER_SEC * opts.time_budget.as_secs_f64()) as u64;
    let budget = Budget {
        work,
        deadline: at(0.75),
    };
    let (cands, mut timed_out) = greedy::random_greedy(
        p,
        QUICK_TRIALS..AUTO_TRIALS,
        0,
        limit,
        budget,
        known,
        AUTO_KEEP,
    );
    let (mut ssa, mut cost) = cands.first().cloned()?;
    let mut method = "random-greedy";
    let budget = Budget {
        work: u64::MAX,
        deadline: at(0.9),
    };
    for (cand, _) in &cands {
        if let Some((better, c, cut)) = reconf::reconfigure(p, cand, limit, budget, reconf::SUBTREE)
        {
            timed_out |= cut;
            if c < cost {
                ssa = better;
                cost = c;
            }
        }
    }
    if polish && p.n() <= POLISH_MAX_INPUTS && p.nlabels() <= MAX_BIT_LABELS {
        let budget = Budget {
            work: POLISH_WORK,
            deadline: at(1.0),
        };
        if let Some((Some((better, c)), _)) =
            with_width!(p.nlabels(), run_bb(p, limit, Some(2), cost, budget))
        {
            if c < cost {
                ssa = better;
                method = "branch-bound";
            }
        }
    }
    Some((ssa, method, timed_out))
}
