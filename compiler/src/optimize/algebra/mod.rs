//! Algebraic rewriting with egg: TIR → equivalent, cheaper TIR for one set of sizes.
//!
//! The function is translated into an e-graph of tensor terms ([`lang`]) whose central
//! node is a multi-operand contraction `Σ Π`; named rules ([`rules`]) add equal forms
//! (merging statements, distributing and factoring, pulling factors out of sums,
//! folding constants, Kronecker identities, exposing shared sub-contractions); a DAG
//! extractor ([`extract`]) picks the cheapest form under a FLOP cost model ([`cost`])
//! counting shared terms once; and the result is written back as TIR ([`emit`]).
//! Statements the pass does not understand pass through unchanged.
//!
//! The returned function is specialised to the sizes it was planned for: dims used as
//! numbers and sizes of summed indices may have been folded into literals.

mod build;
mod cost;
mod emit;
mod extract;
mod konst;
mod lang;
pub mod rules;
#[cfg(test)]
mod tests;

use crate::tir::{self, Bindings, Function};
use egg::{BackoffScheduler, Runner, StopReason};
use std::time::{Duration, Instant};

pub use rules::Rule;

/// Bounds of one run.
#[derive(Clone, Debug)]
pub struct AlgebraOptions {
    /// Stop once the e-graph holds more nodes than this.
    pub node_limit: usize,
    /// When set, also stop at the node budget this problem warrants (below `node_limit`).
    pub budget: Option<NodeBudget>,
    /// Stop after this many rounds of rule application.
    pub iter_limit: usize,
    /// Stop rewriting after this long (extraction and emission come after).
    pub time_limit: Duration,
}

impl Default for AlgebraOptions {
    fn default() -> Self {
        AlgebraOptions {
            node_limit: 20_000,
            budget: Some(NodeBudget::default()),
            iter_limit: 30,
            time_limit: Duration::from_secs(1),
        }
    }
}

/// Rewriting work scaled to the problem: the e-graph may grow to `per_start_node` times
/// the nodes it starts with (the program's contractions, sums and calls), and to at
/// least `min_nodes`. Each new node costs a path search of its contraction in the cost
/// model and a share of extraction, so this bounds the pass by a multiple of the path
/// search the program needs anyway. Unlike a time limit it keeps plans deterministic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeBudget {
    pub min_nodes: usize,
    pub per_start_node: usize,
}

impl Default for NodeBudget {
    /// Measured on the workloads and the latency set (`bench/latency/`): every rewrite
    /// they gain is found within 1,000 nodes (tensor_attention::poly, which distributes a
    /// square, needs the most), while without the budget products of sums such as the
    /// MKOR step grow to the 20,000-node limit for a 0.8% gain found by 100 nodes.
    fn default() -> Self {
        NodeBudget { min_nodes: 1_000, per_start_node: 16 }
    }
}

impl NodeBudget {
    /// The node budget for an e-graph that starts with `start` nodes.
    pub fn nodes(&self, start: usize) -> usize {
        self.min_nodes.max(self.per_start_node.saturating_mul(start))
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct AlgebraReport {
    /// Why rewriting stopped: "saturated", "node limit 20000", "node budget 1000 (...)",
    /// "iteration limit 30", "time limit 1s", or a message.
    pub stop_reason: String,
    pub iterations: usize,
    pub egraph_nodes: usize,
    pub egraph_classes: usize,
    pub elapsed: Duration,
    /// FLOPs of the function as written and of the result, under the given sizes.
    pub cost_before: f64,
    pub cost_after: f64,
    /// Rules that changed the e-graph, with how many times, in rule order.
    pub rules_fired: Vec<(String, usize)>,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AlgebraError {
    /// A dim of the function has no value in the sizes given.
    #[error("dim {0} has no size; algebraic rewriting plans for concrete sizes")]
    Unbound(String),
    /// A size overflows 64-bit arithmetic under the bindings.
    #[error("a size of fn {0} overflows 64-bit arithmetic under the given dims")]
    Overflow(String),
    /// The function given is not valid TIR.
    #[error("the function does not verify: {0}")]
    Invalid(String),
    /// An invariant failed. Always a bug.
    #[error("internal error (this is a bug in Tessera): algebraic rewriting: {0}")]
    Internal(String),
}

/// Rewrites `f` into an equivalent function that is cheaper under `sizes` (which must
/// bind every dim), or returns it unchanged when nothing cheaper is found.
pub fn optimize(f: &Function, sizes: &Bindings, opts: &AlgebraOptions) -> Result<(Function, AlgebraReport), AlgebraError> {
    optimize_with_rules(f, sizes, opts, &rules::all())
}

/// [`optimize`] with a chosen set of rules.
pub fn optimize_with_rules(
    f: &Function,
    sizes: &Bindings,
    opts: &AlgebraOptions,
    rules: &[Rule],
) -> Result<(Function, AlgebraReport), AlgebraError> {
    let start = Instant::now();
    // Gathers are opaque to the e-graph (their index inputs are no tensors it can
    // rewrite); the path search still orders the contractions of the gathered rows.
    if f.has_gathers() {
        let report = AlgebraReport {
            stop_reason: "not run (the function gathers)".to_string(),
            iterations: 0,
            egraph_nodes: 0,
            egraph_classes: 0,
            elapsed: start.elapsed(),
            cost_before: 0.0,
            cost_after: 0.0,
            rules_fired: Vec::new(),
        };
        return Ok((f.clone(), report));
    }
    let Saturated { mut built, egraph: eg, cost_model, before, mut report } = saturate(f, sizes, opts, rules)?;
    let roots: Vec<egg::Id> = built.roots.iter().map(|&r| eg.find(r)).collect();
    let after = extract::extract(&eg, &roots, &cost_model).map_err(AlgebraError::Internal)?;
    let out = if after.cost < before * (1.0 - 1e-9) {
        built.roots = roots;
        let g = emit::emit(f, &eg, &built, &after)?;
        tir::verify(&g).map_err(|e| AlgebraError::Internal(format!("the rewritten function does not verify: {e}\n{g}")))?;
        report.cost_after = after.cost;
        g
    } else {
        f.clone()
    };
    report.elapsed = start.elapsed();
    Ok((out, report))
}

/// The e-graph after rewriting, with what extraction and emission need.
struct Saturated {
    built: build::Built,
    egraph: lang::EG,
    cost_model: cost::CostModel,
    /// Cost of the function as written.
    before: f64,
    /// The report so far (`cost_after` is `cost_before`, `elapsed` zero).
    report: AlgebraReport,
}

fn saturate(f: &Function, sizes: &Bindings, opts: &AlgebraOptions, rules: &[Rule]) -> Result<Saturated, AlgebraError> {
    tir::verify(f).map_err(AlgebraError::Invalid)?;
    check_sizes(f, sizes)?;
    let mut built = build::build(f, sizes)?;
    let cost_model = cost::CostModel::new(built.opaque_cost.clone());
    let before = extract::extract(&built.egraph, &built.roots, &cost_model).map_err(AlgebraError::Internal)?.cost;
    let rewrites = rules.iter().map(rules::to_rewrite).collect::<Result<Vec<_>, _>>().map_err(AlgebraError::Internal)?;
    let mut egraph = std::mem::replace(&mut built.egraph, lang::EG::new(lang::TAnalysis::default()));
    let classes = egraph.number_of_classes();
    let start_nodes = egraph.total_size();
    let node_limit = opts.budget.map_or(opts.node_limit, |b| b.nodes(start_nodes).min(opts.node_limit));
    egraph.analysis.node_budget = node_limit;
    let runner = Runner::default()
        .with_egraph(egraph)
        // Matches are counted per e-class, so the limit before a rule is banned for a
        // while grows with the program.
        .with_scheduler(BackoffScheduler::default().with_initial_match_limit(1_000 + 2 * classes))
        .with_node_limit(node_limit)
        .with_iter_limit(opts.iter_limit)
        .with_time_limit(opts.time_limit)
        .run(&rewrites);
    let stop_reason = match &runner.stop_reason {
        Some(StopReason::Saturated) => "saturated".to_string(),
        Some(StopReason::IterationLimit(_)) => format!("iteration limit {}", opts.iter_limit),
        Some(StopReason::NodeLimit(_)) if node_limit < opts.node_limit => match opts.budget {
            Some(b) => format!(
                "node budget {node_limit} (the larger of {} and {} x {start_nodes} starting e-nodes)",
                b.min_nodes, b.per_start_node
            ),
            None => format!("node limit {node_limit}"),
        },
        Some(StopReason::NodeLimit(_)) => format!("node limit {}", opts.node_limit),
        Some(StopReason::TimeLimit(_)) => format!("time limit {:?}", opts.time_limit),
        Some(StopReason::Other(s)) => s.clone(),
        None => "not run".to_string(),
    };
    let mut rules_fired: Vec<(String, usize)> = Vec::new();
    for r in rules {
        let n: usize = runner.iterations.iter().filter_map(|it| it.applied.get(&egg::Symbol::from(r.name))).sum();
        if n > 0 {
            rules_fired.push((r.name.to_string(), n));
        }
    }
    let iterations = runner.iterations.len();
    let eg = runner.egraph;
    if let Some(e) = eg.analysis.errors.first() {
        return Err(AlgebraError::Internal(e.clone()));
    }
    let report = AlgebraReport {
        stop_reason,
        iterations,
        egraph_nodes: eg.total_size(),
        egraph_classes: eg.number_of_classes(),
        elapsed: Duration::ZERO,
        cost_before: before,
        cost_after: before,
        rules_fired,
    };
    Ok(Saturated { built, egraph: eg, cost_model, before, report })
}

/// Every dim must be bound and every size must evaluate.
fn check_sizes(f: &Function, b: &Bindings) -> Result<(), AlgebraError> {
    for (k, d) in f.dims.iter().enumerate() {
        if b.get(tir::DimId(k as u32)).is_none() {
            return Err(AlgebraError::Unbound(d.name.clone()));
        }
    }
    let overflow = || AlgebraError::Overflow(f.name.clone());
    for t in &f.tensors {
        for s in &t.shape {
            s.eval(b).map_err(|_| overflow())?;
        }
    }
    for s in &f.stmts {
        for v in &s.indices {
            v.range.eval(b).map_err(|_| overflow())?;
        }
    }
    Ok(())
}
