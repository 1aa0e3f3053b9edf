//! The Plan (IR level 4): a DAG of costed steps that evaluates a function for concrete
//! sizes. Every step is also a TIR statement of [`Plan::program`], so a plan can be run
//! step by step on the reference evaluator and checked against direct evaluation.
//!
//! Cost convention (documented for users in `tessera plan --help`):
//! - a pairwise `Contract` step costs opt_einsum's FLOPs: the product of the sizes of all
//!   its distinct indices, times 2 when it sums an index (a multiply-add), else times 1;
//! - `Map` and `Reduce` steps cost one FLOP per operation per element of the loop nest
//!   they run (a reduction adds one per element for the accumulation);
//! - "naive" is every original statement evaluated as one loop nest over all its indices,
//!   with the same per-operation counting (opt_einsum's naive cost for a single einsum).
//!
//! Bytes are result sizes; peak memory is the largest total of intermediates alive at
//! once when steps run in order and each intermediate is freed after its last use.

mod build;
pub mod fuse;
mod print;
mod slice;
mod svg;

pub use build::{plan, PlanError, PlanOptions};
pub use slice::{slice_class, SliceClass};

use crate::tir;
use serde::Serialize;

/// What a step does.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    /// A pairwise contraction; indices labelled by role as in a batched GEMM
    /// (`batch` in both inputs and the result, `m` only in the first input and the
    /// result, `n` only in the second and the result, `k` summed between both, and
    /// `sum_a`/`sum_b` summed within one input).
    Contract { batch: Vec<String>, m: Vec<String>, n: Vec<String>, k: Vec<String>, sum_a: Vec<String>, sum_b: Vec<String> },
    /// A fused elementwise expression.
    Map,
    /// A reduction (`sum`, `max` or `min`) of a fused elementwise expression.
    Reduce { op: String },
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    #[serde(flatten)]
    pub kind: StepKind,
    /// The tensor the step defines, e.g. `S[n, n, n]`-shaped `S`.
    pub result: String,
    pub shape: Vec<u64>,
    /// Tensors the step reads.
    pub inputs: Vec<String>,
    /// For contractions, the pairwise einsum (`ia,ja->ij`); else the expression.
    pub einsum: String,
    pub flops: f64,
    pub bytes: u64,
    /// Index of the source statement this step comes from.
    pub statement: usize,
}

/// A slice loop: steps `first..=last` run once per value of the sliced indices, so that
/// their intermediates fit the memory limit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Slice {
    pub indices: Vec<String>,
    pub count: u64,
    pub first: usize,
    pub last: usize,
    /// FLOPs added by recomputing steps per slice.
    pub extra_flops: f64,
    /// The `(tensor, axis)` whose class of linked axes the loop runs over (see
    /// [`slice_class`]); the executor slices every axis of that class.
    #[serde(skip)]
    pub axis: (tir::TensorId, usize),
}

/// The algebra pass's summary, when it ran.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlgebraSummary {
    pub stop_reason: String,
    pub iterations: usize,
    pub nodes: usize,
    pub cost_before: f64,
    pub cost_after: f64,
    pub rules_fired: Vec<(String, usize)>,
}

/// Steps that run as one fused kernel instead of one after another.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fusion {
    /// `online_softmax`: attention's max, exponentials, sum and product with the values,
    /// streamed over blocks of keys so that no row of scores is ever complete.
    pub kind: String,
    /// The steps it computes (the last one defines its result).
    pub steps: Vec<usize>,
    /// Index names: the query row, the keys (softmax runs over them jointly), the value.
    pub row: String,
    pub keys: Vec<String>,
    pub value: String,
    /// The keys a row sees, when masked (`j - i <= 0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    /// FLOPs of the steps it replaces, times the fraction of (row, key) pairs the mask
    /// lets through (the streamed kernel skips the rest).
    pub flops: f64,
    #[serde(skip)]
    pub form: fuse::OnlineSoftmax,
}

/// A dim and the size it is planned for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DimSize {
    pub name: String,
    pub size: u64,
}

/// A costed, deterministic evaluation plan for one function at concrete sizes.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub function: String,
    pub dtype: String,
    pub dims: Vec<DimSize>,
    pub steps: Vec<Step>,
    pub slices: Vec<Slice>,
    pub flops: f64,
    pub naive_flops: f64,
    pub speedup: f64,
    pub peak_bytes: u64,
    pub memory_limit: Option<u64>,
    pub search_ms: f64,
    pub algebra: Option<AlgebraSummary>,
    /// For a single einsum (one statement summing a product of distinct inputs): the
    /// contraction order over its operands in opt_einsum's linear format. Pairs come
    /// from the path search; a last entry of more than two positions (or one, for a
    /// lone operand) is a single loop nest over what is left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<Vec<usize>>>,
    /// Groups of steps that run fused (the steps and `program` stay as they are, so the
    /// plan still runs step by step on the oracle).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fusions: Vec<Fusion>,
    /// How the products of the steps are computed (`program` already says it).
    #[serde(skip_serializing_if = "is_exact")]
    pub mul: tir::lmul::MulMode,
    /// The steps as a TIR function (one statement per step), runnable by the oracle.
    #[serde(skip)]
    pub program: tir::Function,
}

fn is_exact(m: &tir::lmul::MulMode) -> bool {
    *m == tir::lmul::MulMode::Exact
}

impl Plan {
    /// The plan as JSON (`tessera plan --format json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests;
