//! TIR (+ concrete sizes) → Plan.
//!
//! Each source statement becomes steps: inline reductions are hoisted into their own
//! statements; a summed right side is split into signed terms; each term's factors are
//! sorted into contraction operands, scalar constants, and factors that do not touch a
//! summed index (applied after the contraction, so `/Z[i]` leaves `Σ_{j,l}`); the
//! operands are contracted pairwise in the order the path search finds. Elementwise
//! statements become one fused `Map`, `max=`/`min=` one `Reduce`.

use super::{AlgebraSummary, DimSize, Plan, Step, StepKind};
use crate::optimize::path::{optimize_path, pairwise_flops, Network, PathOptions};
use crate::tir::{self, Bindings, Expr, IndexId, IndexVar, Position, ReduceOp, Size, TensorDecl, TensorId, TensorKind};
use std::time::{Duration, Instant};

/// How to plan.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Bytes of intermediates alive at once; more are sliced.
    pub memory_limit: Option<u64>,
    /// Whether slicing counts the steps that nesting a new loop with an overlapping one
    /// recomputes (right when the outer loop runs in many chunks; when the executor can
    /// keep it whole, ignoring them finds cheaper loops). `pipeline::compile_sliced`
    /// tries both.
    pub slice_nesting_cost: bool,
    pub path: PathOptions,
    /// Run the egg algebra pass first (with these bounds).
    pub algebra: Option<crate::optimize::algebra::AlgebraOptions>,
    /// How products are computed. The plan is found as for exact arithmetic; then every
    /// product of its steps becomes an L-Mul (`tir::lmul::MulMode::apply`), so its
    /// contractions run as loop kernels, not GEMMs, and no fusion (which computes its
    /// own products) is kept.
    pub mul: tir::lmul::MulMode,
}

impl Default for PlanOptions {
    /// No memory limit, `auto` path search, and the algebra pass bounded by nodes and
    /// iterations; its time limit is only a safety net, so that plans do not depend on
    /// how busy the machine is.
    fn default() -> Self {
        PlanOptions {
            memory_limit: None,
            slice_nesting_cost: true,
            path: PathOptions::default(),
            algebra: Some(crate::optimize::algebra::AlgebraOptions {
                time_limit: Duration::from_secs(20),
                ..Default::default()
            }),
            mul: tir::lmul::MulMode::Exact,
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// A dim is unbound or a size overflows.
    #[error("{0}")]
    Size(String),
    /// An invariant failed. Always a bug.
    #[error("internal error (this is a bug in Tessera): planner: {0}")]
    Internal(String),
}

type R<T> = Result<T, PlanError>;

/// Plans `f` for the sizes in `b` (every dim bound).
pub fn plan(f: &tir::Function, b: &Bindings, opts: &PlanOptions) -> R<Plan> {
    let start = Instant::now();
    let mut dims = Vec::new();
    for (k, d) in f.dims.iter().enumerate() {
        let v = b.get(tir::DimId(k as u32)).ok_or_else(|| PlanError::Size(format!("dim {} is not bound", d.name)))?;
        dims.push(DimSize { name: d.name.clone(), size: v });
    }
    let naive_flops = f.stmts.iter().map(|s| naive(s, b)).sum::<R<f64>>()?;
    let flops_of = |g: &tir::Function| lower_all(g, b, &opts.path).ok().map(|x| x.steps.iter().map(|s| s.flops).sum());
    let f = &crate::optimize::rewrite::rewrite(f, b, opts.algebra.is_some(), &flops_of).map_err(PlanError::Internal)?.0;
    let product = pure_product(f);
    let (source, algebra) = match &opts.algebra {
        // No rule can make a lone product of distinct inputs cheaper than the path search
        // does, and saturating its e-graph costs 100 to 3,000 times the search.
        Some(_) if product => (
            f.clone(),
            Some(AlgebraSummary {
                stop_reason: "not run (a single product: the path search alone is optimal)".to_string(),
                iterations: 0,
                nodes: 0,
                cost_before: 0.0,
                cost_after: 0.0,
                rules_fired: Vec::new(),
            }),
        ),
        Some(a) => match crate::optimize::algebra::optimize(f, b, a) {
            Ok((g, rep)) => (
                g,
                Some(AlgebraSummary {
                    stop_reason: rep.stop_reason,
                    iterations: rep.iterations,
                    nodes: rep.egraph_nodes,
                    cost_before: rep.cost_before,
                    cost_after: rep.cost_after,
                    rules_fired: rep.rules_fired,
                }),
            ),
            // The rewrite is an optimisation: without it the plan is still right, so a
            // failure (even an internal one) is reported rather than fatal.
            Err(e) => (
                f.clone(),
                Some(AlgebraSummary {
                    stop_reason: format!("skipped ({e})"),
                    iterations: 0,
                    nodes: 0,
                    cost_before: 0.0,
                    cost_after: 0.0,
                    rules_fired: Vec::new(),
                }),
            ),
        },
        None => (f.clone(), None),
    };
    let mut bld = lower_all(&source, b, &opts.path)?;
    let mut flops: f64 = bld.steps.iter().map(|s| s.flops).sum();
    let mut source = source;
    let mut algebra = algebra;
    // The rewrite's cost model and the plan's FLOP count can disagree in details; keep
    // the rewrite only when the plan of the function as written is not cheaper.
    if algebra.is_some() && source != *f {
        let plain = lower_all(f, b, &opts.path)?;
        let plain_flops: f64 = plain.steps.iter().map(|s| s.flops).sum();
        // A fused kernel beats any unfused order of the same steps, so the plan as
        // written also wins when the rewrite took apart an attention (e.g. by moving its
        // normalisation into the statements that read it).
        let fusions = |x: &Builder<'_>| super::fuse::find(&x.prog, b, &x.steps.iter().map(|s| s.flops).collect::<Vec<_>>()).len();
        let why = if plain_flops < flops {
            Some("the plan as written is cheaper")
        } else if fusions(&plain) > fusions(&bld) {
            Some("the plan as written fuses more")
        } else {
            None
        };
        if let Some(why) = why {
            bld = plain;
            flops = plain_flops;
            source = f.clone();
            if let Some(a) = algebra.as_mut() {
                a.stop_reason = format!("{}; rewrite not used ({why})", a.stop_reason);
            }
        }
    }
    let path = match product_reads(f) {
        Some(reads) if source == *f => product_path(&reads, &bld)?,
        _ => None,
    };
    let search_ms = bld.search.as_secs_f64() * 1e3;
    let mut plan = Plan {
        function: f.name.clone(),
        dtype: f.dtype.name().to_string(),
        dims,
        peak_bytes: 0,
        steps: bld.steps,
        slices: Vec::new(),
        flops,
        naive_flops,
        speedup: if flops > 0.0 { naive_flops / flops } else { 1.0 },
        memory_limit: opts.memory_limit,
        search_ms,
        algebra,
        path,
        fusions: Vec::new(),
        mul: tir::lmul::MulMode::Exact,
        program: bld.prog,
    };
    super::fuse::detect(&mut plan, b);
    plan.peak_bytes = super::slice::peak_bytes(&plan, &[]);
    if let Some(limit) = opts.memory_limit {
        super::slice::slice_to_fit(&mut plan, b, limit, opts.slice_nesting_cost)?;
        // Slicing may move steps: find the fusions of the sliced program.
        if !plan.slices.is_empty() {
            super::fuse::detect(&mut plan, b);
        }
    }
    if let Some(a) = plan.algebra.as_mut().filter(|_| product) {
        a.cost_before = plan.flops;
        a.cost_after = plan.flops;
    }
    if opts.mul != tir::lmul::MulMode::Exact {
        plan.program = opts.mul.apply(&plan.program);
        plan.fusions.clear();
        plan.mul = opts.mul;
    }
    plan.search_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(plan)
}

/// The tensor reads of `f` when it is one statement that sums a product of reads (times
/// literals), in written order; `None` for anything else.
fn product_reads(f: &tir::Function) -> Option<Vec<&Expr>> {
    let [s] = f.stmts.as_slice() else { return None };
    if s.op != ReduceOp::Sum {
        return None;
    }
    let mut reads = Vec::new();
    let mut stack = vec![&s.rhs];
    while let Some(e) = stack.pop() {
        match e {
            // Pushed in reverse so that factors come off the stack in written order.
            Expr::Mul(xs) => stack.extend(xs.iter().rev()),
            Expr::Lit(_) => {}
            Expr::Access(..) => reads.push(e),
            _ => return None,
        }
    }
    (!reads.is_empty()).then_some(reads)
}

/// Whether `f` is a single einsum: one statement that sums a product of reads of
/// distinct input tensors at plain indices (times literals).
///
/// Such a product gives the algebra pass nothing to do: no sum to distribute or factor,
/// no other statement to merge, no constant tensor to fold, no grouped index for the
/// Kronecker rules, and no tensor read twice whose sub-contraction could be shared.
pub(crate) fn pure_product(f: &tir::Function) -> bool {
    let Some(reads) = product_reads(f) else { return false };
    let mut seen = Vec::new();
    let plain_lhs = f.stmts.iter().all(|s| s.lhs.iter().all(|p| p.len() == 1));
    plain_lhs
        && reads.iter().all(|e| match e {
            Expr::Access(t, pos) => {
                let input = f.tensors.get(t.index()).is_some_and(|d| d.kind == TensorKind::Input);
                let fresh = !seen.contains(t);
                seen.push(*t);
                input && fresh && pos.iter().all(|p| p.len() == 1)
            }
            _ => false,
        })
}

/// The contraction order of a one-statement product in opt_einsum's linear format, over
/// its reads in written order: each entry lists positions in the current operand list,
/// which are removed and their result appended. Pairwise steps come from the path
/// search; reads it did not order (a lone read, a product with no summed index, scalar
/// factors) are combined in one last step, as the plan's final loop nest does. `None`
/// when the search ordered something other than the written reads.
fn product_path(reads: &[&Expr], bld: &Builder<'_>) -> R<Option<Vec<Vec<usize>>>> {
    let n = reads.len();
    // Operands by id: 0..n are the reads, n.. the results of the pairwise steps.
    let mut current: Vec<usize> = (0..n).collect();
    let mut path = Vec::new();
    if let Some((pairs, operands)) = &bld.single_path {
        // Each searched operand is one of the written reads; equal reads are interchangeable.
        let mut used = vec![false; n];
        let mut planned = Vec::with_capacity(operands.len());
        for o in operands {
            let Some(k) = (0..n).find(|&k| !used[k] && reads[k] == o) else { return Ok(None) };
            used[k] = true;
            planned.push(k);
        }
        for (step, &(p, q)) in pairs.iter().enumerate() {
            let (p, q) = (p.min(q), p.max(q));
            if q >= planned.len() || p == q {
                return Err(PlanError::Internal("path refers to a missing operand".into()));
            }
            let (b, a) = (planned.remove(q), planned.remove(p));
            let at = |id: usize| current.iter().position(|&c| c == id);
            let (Some(x), Some(y)) = (at(a), at(b)) else {
                return Err(PlanError::Internal("path uses an operand twice".into()));
            };
            path.push(vec![x.min(y), x.max(y)]);
            current.retain(|&c| c != a && c != b);
            current.push(n + step);
            planned.push(n + step);
        }
    }
    if current.len() > 1 || path.is_empty() {
        path.push((0..current.len()).collect());
    }
    Ok(Some(path))
}

/// Lowers every statement of `source` into steps.
fn lower_all<'a>(source: &tir::Function, b: &'a Bindings, path: &'a PathOptions) -> R<Builder<'a>> {
    let prog = source.without_stmts();
    let mut bld = Builder { b, prog, steps: Vec::new(), origin: 0, search: Duration::ZERO, path_opts: path, single_path: None, temps: 0, seen: Vec::new() };
    for (k, s) in source.stmts.iter().enumerate() {
        bld.origin = k;
        bld.lower(Target::Existing(s.target), s.lhs.clone(), s.op, s.rhs.clone(), &s.indices)?;
    }
    if let Err(e) = tir::verify(&bld.prog) {
        return Err(PlanError::Internal(format!("planned program does not verify: {e}")));
    }
    Ok(bld)
}

/// A searched contraction order (opt_einsum pairs) with the operands it orders.
type SearchedPath = (Vec<(usize, usize)>, Vec<Expr>);

enum Target {
    Existing(TensorId),
    New,
}

struct Builder<'a> {
    b: &'a Bindings,
    prog: tir::Function,
    steps: Vec<Step>,
    origin: usize,
    search: Duration,
    path_opts: &'a PathOptions,
    /// The pairs of the last multi-operand contraction with its operands (the einsum's,
    /// for one statement).
    single_path: Option<SearchedPath>,
    temps: usize,
    /// Canonical forms of the steps emitted into fresh intermediates, for reuse.
    seen: Vec<(StepKey, TensorId)>,
}

/// One signed product term of a summed right side.
struct Term {
    negative: bool,
    /// Scalar factors (no indices, no tensor reads), numerator and denominator.
    coef: Vec<Expr>,
    coef_den: Vec<Expr>,
    /// Tensor reads to contract (when there are two or more).
    operands: Vec<Expr>,
    /// Other factors touching a summed index: fused into a reduction, or materialised
    /// as operands when there is a contraction to order.
    fused: Vec<Expr>,
    /// Factors without summed indices, applied after the contraction.
    post: Vec<Expr>,
    post_den: Vec<Expr>,
}

fn free(e: &Expr) -> Vec<IndexId> {
    let mut v = Vec::new();
    e.free_indices(&mut v);
    v
}

fn reads_tensor(e: &Expr) -> bool {
    let mut v = Vec::new();
    e.tensors(&mut v);
    !v.is_empty()
}

/// Operations per element, not counting inline reductions' bodies.
fn ops(e: &Expr) -> f64 {
    match e {
        Expr::Lit(_) | Expr::Size(_) | Expr::Index(_) | Expr::Access(..) => 0.0,
        // A gathered read costs one operation (the index load), so a gather step costs
        // its result's size.
        Expr::Gather(..) => 1.0,
        Expr::Neg(a) => 1.0 + ops(a),
        Expr::Add(xs) | Expr::Mul(xs) => (xs.len() as f64 - 1.0) + xs.iter().map(ops).sum::<f64>(),
        Expr::Sub(a, b) | Expr::Div(a, b) => 1.0 + ops(a) + ops(b),
        Expr::Call(_, xs) => 1.0 + xs.iter().map(ops).sum::<f64>(),
        Expr::Select(c, a, b) => 1.0 + cond_ops(c) + ops(a) + ops(b),
        Expr::Reduce(..) => 0.0,
    }
}

fn cond_ops(c: &tir::Cond) -> f64 {
    match c {
        tir::Cond::Cmp(_, a, b) => 1.0 + ops(a) + ops(b),
        tir::Cond::And(cs) | tir::Cond::Or(cs) => (cs.len() as f64 - 1.0) + cs.iter().map(cond_ops).sum::<f64>(),
        tir::Cond::Not(x) => 1.0 + cond_ops(x),
    }
}

fn range(idx: &[IndexVar], i: IndexId, b: &Bindings) -> R<u64> {
    let v = idx.get(i.index()).ok_or_else(|| PlanError::Internal("index id out of range".into()))?;
    v.range.eval(b).map_err(|e| PlanError::Size(format!("index {}: {e:?}", v.name)))
}

fn elements(idx: &[IndexVar], ids: &[IndexId], b: &Bindings) -> R<f64> {
    ids.iter().map(|&i| range(idx, i, b).map(|v| v as f64)).product()
}

/// The naive cost of a source statement: one loop nest over all its indices.
fn naive(s: &tir::Stmt, b: &Bindings) -> R<f64> {
    let mut domain: Vec<IndexId> = s.lhs.iter().flatten().copied().collect();
    for &i in &s.reduced {
        if !domain.contains(&i) {
            domain.push(i);
        }
    }
    let accumulate = if s.reduced.is_empty() { 0.0 } else { 1.0 };
    naive_expr(&s.rhs, &domain, &s.indices, b).map(|x| x + accumulate * elements(&s.indices, &domain, b).unwrap_or(0.0))
}

fn naive_expr(e: &Expr, domain: &[IndexId], idx: &[IndexVar], b: &Bindings) -> R<f64> {
    let here = ops(e) * elements(idx, domain, b)?;
    let mut inner = 0.0;
    let mut visit = |x: &Expr| -> R<()> {
        if let Expr::Reduce(_, ids, body) = x {
            let mut d = domain.to_vec();
            d.extend(ids.iter().copied());
            inner += naive_expr(body, &d, idx, b)? + elements(idx, &d, b)?;
        }
        Ok(())
    };
    walk_reduces(e, &mut visit)?;
    Ok(here + inner)
}

/// Calls `f` on each outermost inline reduction of `e`.
fn walk_reduces(e: &Expr, f: &mut dyn FnMut(&Expr) -> R<()>) -> R<()> {
    match e {
        Expr::Reduce(..) => f(e),
        Expr::Lit(_) | Expr::Size(_) | Expr::Index(_) | Expr::Access(..) | Expr::Gather(..) => Ok(()),
        Expr::Neg(a) => walk_reduces(a, f),
        Expr::Add(xs) | Expr::Mul(xs) | Expr::Call(_, xs) => xs.iter().try_for_each(|x| walk_reduces(x, f)),
        Expr::Sub(a, b) | Expr::Div(a, b) => walk_reduces(a, f).and_then(|_| walk_reduces(b, f)),
        Expr::Select(c, a, b) => walk_cond(c, f).and_then(|_| walk_reduces(a, f)).and_then(|_| walk_reduces(b, f)),
    }
}

fn walk_cond(c: &tir::Cond, f: &mut dyn FnMut(&Expr) -> R<()>) -> R<()> {
    match c {
        tir::Cond::Cmp(_, a, b) => walk_reduces(a, f).and_then(|_| walk_reduces(b, f)),
        tir::Cond::And(cs) | tir::Cond::Or(cs) => cs.iter().try_for_each(|x| walk_cond(x, f)),
        tir::Cond::Not(x) => walk_cond(x, f),
    }
}

impl Builder<'_> {
    /// Lowers `target[lhs] = op over (free(rhs) - lhs) of rhs` into steps.
    fn lower(&mut self, target: Target, lhs: Vec<Position>, op: ReduceOp, rhs: Expr, idx: &[IndexVar]) -> R<TensorId> {
        let lhs_ids: Vec<IndexId> = lhs.iter().flatten().copied().collect();
        let rhs = self.hoist(rhs, &lhs_ids, idx)?;
        let reduced: Vec<IndexId> = free(&rhs).into_iter().filter(|i| !lhs_ids.contains(i)).collect();
        if reduced.is_empty() {
            return self.emit(target, lhs, ReduceOp::Sum, rhs, idx, StepHint::Map);
        }
        if op != ReduceOp::Sum {
            return self.emit(target, lhs, op, rhs, idx, StepHint::Reduce);
        }
        let mut signed = Vec::new();
        split_terms(rhs, false, &mut signed);
        let mut terms = Vec::new();
        for (negative, e) in signed {
            terms.push(self.term(negative, e, &reduced, idx)?);
        }
        let single = terms.len() == 1;
        let mut combined: Vec<(bool, Expr)> = Vec::new();
        for t in terms {
            let ops_ids: Vec<IndexId> = {
                let mut v = Vec::new();
                for o in t.operands.iter().chain(&t.fused) {
                    for i in free(o) {
                        if !v.contains(&i) {
                            v.push(i);
                        }
                    }
                }
                v
            };
            // Summed indices missing from every factor multiply the term by their size (a
            // factor, not an allocation: f64, which cannot overflow).
            let mut scale = 1.0f64;
            for &r in reduced.iter().filter(|r| !ops_ids.contains(r)) {
                scale *= range(idx, r, self.b)? as f64;
            }
            let mut coef = t.coef.clone();
            if scale != 1.0 {
                coef.push(Expr::Lit(scale));
            }
            let out: Vec<IndexId> = lhs_ids.iter().copied().filter(|i| ops_ids.contains(i)).collect();
            let direct = single && !t.negative && t.post.is_empty() && t.post_den.is_empty() && t.coef_den.is_empty() && out.len() == lhs_ids.len();
            let result = if t.operands.len() >= 2 {
                let final_target = if direct { Some((existing(&target), lhs.clone(), coef.clone())) } else { None };
                let r = self.contract(t.operands, &out, idx, final_target.as_ref())?;
                if direct {
                    return Ok(r.0);
                }
                Some(r.1)
            } else if t.operands.is_empty() && t.fused.is_empty() {
                None
            } else {
                // Fewer than two tensor operands: nothing to order, one fused reduction.
                let factors: Vec<Expr> = t.operands.into_iter().chain(t.fused).collect();
                let body = if factors.len() == 1 { factors.into_iter().next().unwrap_or(Expr::Lit(1.0)) } else { Expr::Mul(factors) };
                if direct {
                    return self.emit(target, lhs, ReduceOp::Sum, with_coef(body, coef), idx, StepHint::Reduce);
                }
                let positions: Vec<Position> = out.iter().map(|&i| vec![i]).collect();
                let id = self.emit(Target::New, positions.clone(), ReduceOp::Sum, body, idx, StepHint::Reduce)?;
                Some(Expr::Access(id, positions))
            };
            let mut factors = coef;
            if let Some(r) = result {
                factors.push(r);
            }
            factors.extend(t.post);
            let mut e = match factors.len() {
                0 => Expr::Lit(1.0),
                1 => factors.pop().ok_or_else(|| PlanError::Internal("factor".into()))?,
                _ => Expr::Mul(factors),
            };
            let den: Vec<Expr> = t.coef_den.into_iter().chain(t.post_den).collect();
            if !den.is_empty() {
                let d = if den.len() == 1 { den.into_iter().next().unwrap_or(Expr::Lit(1.0)) } else { Expr::Mul(den) };
                e = Expr::Div(Box::new(e), Box::new(d));
            }
            combined.push((t.negative, e));
        }
        // A lone read of a fresh intermediate needs no copy into another fresh one.
        if let (Target::New, [(false, Expr::Access(t, pos))]) = (&target, combined.as_slice()) {
            if *pos == lhs && self.prog.tensor(*t).kind == TensorKind::Temp {
                return Ok(*t);
            }
        }
        let mut iter = combined.into_iter();
        let (neg0, first) = iter.next().ok_or_else(|| PlanError::Internal("no terms".into()))?;
        let mut e = if neg0 { Expr::Neg(Box::new(first)) } else { first };
        for (neg, x) in iter {
            e = if neg {
                Expr::Sub(Box::new(e), Box::new(x))
            } else {
                match e {
                    Expr::Add(mut v) => {
                        v.push(x);
                        Expr::Add(v)
                    }
                    other => Expr::Add(vec![other, x]),
                }
            };
        }
        self.emit(target, lhs, ReduceOp::Sum, e, idx, StepHint::Map)
    }

    /// Replaces every inline reduction by a read of a new intermediate. Its indices come
    /// in the order of `order` (the enclosing statement's left side), then in order of
    /// appearance: the statement then reads each such intermediate along its own loops,
    /// and a sum of them is one contiguous pass.
    fn hoist(&mut self, e: Expr, order: &[IndexId], idx: &[IndexVar]) -> R<Expr> {
        let mut rec = |x: Expr| self.hoist(x, order, idx);
        Ok(match e {
            Expr::Reduce(op, ids, body) => {
                let body = rec(*body)?;
                let body_free = free(&body);
                let mut out: Vec<IndexId> = body_free.iter().copied().filter(|i| !ids.contains(i)).collect();
                out.sort_by_key(|i| order.iter().position(|o| o == i).unwrap_or(order.len()));
                // `lower` reduces only the indices the body uses. A reduced index the body
                // does not use still counts: a sum repeats the body once per value of it
                // (while the max or min of repeated values is that value).
                let mut absent = 1.0f64;
                for &i in ids.iter().filter(|i| !body_free.contains(i)) {
                    absent *= range(idx, i, self.b)? as f64;
                }
                if absent == 0.0 {
                    // An empty domain: the reduction is its identity.
                    return Ok(Expr::Lit(match op {
                        ReduceOp::Sum => 0.0,
                        ReduceOp::Max => f64::NEG_INFINITY,
                        ReduceOp::Min => f64::INFINITY,
                    }));
                }
                let positions: Vec<Position> = out.iter().map(|&i| vec![i]).collect();
                let t = self.lower(Target::New, positions.clone(), op, body, idx)?;
                let read = Expr::Access(t, positions);
                if op == ReduceOp::Sum && absent != 1.0 {
                    Expr::Mul(vec![Expr::Lit(absent), read])
                } else {
                    read
                }
            }
            Expr::Neg(a) => Expr::Neg(Box::new(rec(*a)?)),
            Expr::Add(xs) => Expr::Add(xs.into_iter().map(&mut rec).collect::<R<_>>()?),
            Expr::Mul(xs) => Expr::Mul(xs.into_iter().map(&mut rec).collect::<R<_>>()?),
            Expr::Call(f, xs) => Expr::Call(f, xs.into_iter().map(&mut rec).collect::<R<_>>()?),
            Expr::Sub(a, b) => Expr::Sub(Box::new(rec(*a)?), Box::new(rec(*b)?)),
            Expr::Div(a, b) => Expr::Div(Box::new(rec(*a)?), Box::new(rec(*b)?)),
            Expr::Select(c, a, b) => {
                let c = self.hoist_cond(*c, order, idx)?;
                Expr::Select(Box::new(c), Box::new(self.hoist(*a, order, idx)?), Box::new(self.hoist(*b, order, idx)?))
            }
            other => other,
        })
    }

    fn hoist_cond(&mut self, c: tir::Cond, order: &[IndexId], idx: &[IndexVar]) -> R<tir::Cond> {
        Ok(match c {
            tir::Cond::Cmp(op, a, b) => tir::Cond::Cmp(op, self.hoist(a, order, idx)?, self.hoist(b, order, idx)?),
            tir::Cond::And(cs) => tir::Cond::And(cs.into_iter().map(|x| self.hoist_cond(x, order, idx)).collect::<R<_>>()?),
            tir::Cond::Or(cs) => tir::Cond::Or(cs.into_iter().map(|x| self.hoist_cond(x, order, idx)).collect::<R<_>>()?),
            tir::Cond::Not(x) => tir::Cond::Not(Box::new(self.hoist_cond(*x, order, idx)?)),
        })
    }

    /// Sorts a product term's factors.
    fn term(&mut self, negative: bool, e: Expr, reduced: &[IndexId], idx: &[IndexVar]) -> R<Term> {
        let mut num = Vec::new();
        let mut den = Vec::new();
        let mut neg = negative;
        factors(e, &mut num, &mut den, &mut neg);
        let mut t = Term {
            negative: neg,
            coef: Vec::new(),
            coef_den: Vec::new(),
            operands: Vec::new(),
            fused: Vec::new(),
            post: Vec::new(),
            post_den: Vec::new(),
        };
        let touches = |x: &Expr| free(x).iter().any(|i| reduced.contains(i));
        for x in num {
            if free(&x).is_empty() && !reads_tensor(&x) {
                t.coef.push(x);
            } else if !touches(&x) {
                t.post.push(x);
            } else if matches!(x, Expr::Access(..)) {
                t.operands.push(x);
            } else {
                t.fused.push(x);
            }
        }
        for x in den {
            if free(&x).is_empty() && !reads_tensor(&x) {
                t.coef_den.push(x);
            } else if !touches(&x) {
                t.post_den.push(x);
            } else {
                t.fused.push(Expr::Div(Box::new(Expr::Lit(1.0)), Box::new(x)));
            }
        }
        if t.operands.len() >= 2 {
            // A contraction to order: other factors become operands of their own.
            for x in std::mem::take(&mut t.fused) {
                let ids = free(&x);
                let positions: Vec<Position> = ids.iter().map(|&i| vec![i]).collect();
                let id = self.emit(Target::New, positions.clone(), ReduceOp::Sum, x, idx, StepHint::Map)?;
                t.operands.push(Expr::Access(id, positions));
            }
            // Hadamard factors (reads without summed indices) join too: the path search
            // decides where they go.
            // Scalars stay outside: they cost one multiply per result element at the end.
            let (keep, post): (Vec<Expr>, Vec<Expr>) = std::mem::take(&mut t.post)
                .into_iter()
                .partition(|x| matches!(x, Expr::Access(_, pos) if !pos.is_empty()));
            t.operands.extend(keep);
            t.post = post;
        }
        Ok(t)
    }

    /// Contracts operands pairwise in the searched order. With `last`, the final step
    /// writes `(tensor, lhs, scalars)` directly. Returns the result tensor and a read of it.
    fn contract(
        &mut self,
        operands: Vec<Expr>,
        out: &[IndexId],
        idx: &[IndexVar],
        last: Option<&(Option<TensorId>, Vec<Position>, Vec<Expr>)>,
    ) -> R<(TensorId, Expr)> {
        let labels: Vec<Vec<IndexId>> = operands.iter().map(free).collect();
        let mut sizes = vec![0u64; idx.len()];
        for (k, s) in sizes.iter_mut().enumerate() {
            *s = range(idx, IndexId(k as u32), self.b)?;
        }
        let net = Network {
            inputs: labels.iter().map(|l| l.iter().map(|i| i.0).collect()).collect(),
            output: out.iter().map(|i| i.0).collect(),
            sizes,
        };
        let path = optimize_path(&net, self.path_opts).map_err(|e| PlanError::Internal(format!("path search: {e}")))?;
        self.search += path.elapsed;
        self.single_path = Some((path.pairs.clone(), operands.clone()));
        let mut current: Vec<(Expr, Vec<IndexId>)> = operands.into_iter().zip(labels).collect();
        let n_pairs = path.pairs.len();
        let mut result = None;
        for (step, &(p, q)) in path.pairs.iter().enumerate() {
            let (p, q) = (p.min(q), p.max(q));
            if q >= current.len() || p == q {
                return Err(PlanError::Internal("path refers to a missing operand".into()));
            }
            let (b_expr, b_lab) = current.remove(q);
            let (a_expr, a_lab) = current.remove(p);
            let needed: Vec<IndexId> = current.iter().flat_map(|(_, l)| l.iter().copied()).chain(out.iter().copied()).collect();
            let is_last = step + 1 == n_pairs;
            let res: Vec<IndexId> = if is_last {
                out.to_vec()
            } else {
                // The kept indices of the operand that keeps more elements come first, as a
                // GEMM's rows: a batch of data (rather than a weight or a constant) then
                // stays outermost through a chain of steps, whose kernels walk every
                // intermediate along that outer loop (contiguous, and fusable row by row).
                let kept = |lab: &[IndexId]| -> f64 {
                    lab.iter().filter(|i| needed.contains(i)).map(|i| net.sizes[i.index()] as f64).product()
                };
                let lead = kept(&b_lab) > kept(&a_lab);
                let (first, second) = if lead { (&b_lab, &a_lab) } else { (&a_lab, &b_lab) };
                let mut r: Vec<IndexId> = Vec::new();
                for &i in first.iter().chain(second.iter()) {
                    if needed.contains(&i) && !r.contains(&i) {
                        r.push(i);
                    }
                }
                r
            };
            // Read like a GEMM: the operand holding the first result index goes first.
            let swap = res.first().is_some_and(|r| b_lab.contains(r) && !a_lab.contains(r));
            let rhs = if swap { Expr::Mul(vec![b_expr, a_expr]) } else { Expr::Mul(vec![a_expr, b_expr]) };
            let (id, read) = match (is_last, last) {
                (true, Some((t, lhs, coef))) => {
                    let rhs = with_coef(rhs, coef.clone());
                    let tgt = match t {
                        Some(t) => Target::Existing(*t),
                        None => Target::New,
                    };
                    let id = self.emit(tgt, lhs.clone(), ReduceOp::Sum, rhs, idx, StepHint::Contract)?;
                    (id, Expr::Access(id, lhs.clone()))
                }
                _ => {
                    let positions: Vec<Position> = res.iter().map(|&i| vec![i]).collect();
                    let id = self.emit(Target::New, positions.clone(), ReduceOp::Sum, rhs, idx, StepHint::Contract)?;
                    (id, Expr::Access(id, positions))
                }
            };
            current.push((read.clone(), res));
            result = Some((id, read));
        }
        result.ok_or_else(|| PlanError::Internal("contraction of fewer than two operands".into()))
    }

    /// Appends one statement (and its step).
    fn emit(&mut self, target: Target, lhs: Vec<Position>, op: ReduceOp, rhs: Expr, idx: &[IndexVar], hint: StepHint) -> R<TensorId> {
        // A compact index table with only the indices this statement uses.
        let mut used: Vec<IndexId> = lhs.iter().flatten().copied().collect();
        collect_all_ids(&rhs, &mut used);
        let map = |i: IndexId| IndexId(used.iter().position(|u| *u == i).unwrap_or(0) as u32);
        let indices: Vec<IndexVar> = used.iter().map(|&i| idx[i.index()].clone()).collect();
        let lhs2: Vec<Position> = lhs.iter().map(|p| p.iter().map(|&i| map(i)).collect()).collect();
        let rhs2 = remap(&rhs, &map);
        let lhs_ids: Vec<IndexId> = lhs2.iter().flatten().copied().collect();
        let reduced: Vec<IndexId> = free(&rhs2).into_iter().filter(|i| !lhs_ids.contains(i)).collect();
        // A step computing what an earlier step computed reuses its result.
        let key = matches!(target, Target::New).then(|| canonical_key(&lhs2, op, &rhs2, &indices));
        if let Some(k) = &key {
            if let Some(&(_, t)) = self.seen.iter().find(|(s, _)| s == k) {
                return Ok(t);
            }
        }
        let target = match target {
            Target::Existing(t) => t,
            Target::New => {
                let mut shape = Vec::new();
                let mut factors = Vec::new();
                for p in &lhs2 {
                    let fs: Vec<Size> = p.iter().map(|i| indices[i.index()].range.clone()).collect();
                    let s = fs.iter().try_fold(Size::one(), |a, x| a.mul(x)).ok_or_else(|| PlanError::Size("size overflow".into()))?;
                    shape.push(s);
                    factors.push(fs);
                }
                let name = format!("%{}", self.temps);
                self.temps += 1;
                let id = TensorId(self.prog.tensors.len() as u32);
                self.prog.tensors.push(TensorDecl { name, kind: TensorKind::Temp, shape, factors, span: self.prog.span });
                id
            }
        };
        if let Some(k) = key {
            self.seen.push((k, target));
        }
        let stmt = tir::Stmt { target, lhs: lhs2, op, reduced: reduced.clone(), indices, rhs: rhs2, span: self.prog.span };
        let step = self.describe(&stmt, hint)?;
        self.prog.stmts.push(stmt);
        self.steps.push(step);
        Ok(target)
    }

    fn describe(&self, s: &tir::Stmt, hint: StepHint) -> R<Step> {
        let p = &self.prog;
        let lhs_ids: Vec<IndexId> = s.lhs.iter().flatten().copied().collect();
        let name_of = |i: &IndexId| s.indices[i.index()].name.clone();
        let decl = p.tensor(s.target);
        let shape: Vec<u64> = decl.shape.iter().map(|x| x.eval(self.b).unwrap_or(0)).collect();
        let elems: f64 = shape.iter().map(|&x| x as f64).product();
        let bytes = (elems * p.dtype.size_of() as f64) as u64;
        let mut reads = Vec::new();
        s.rhs.tensors(&mut reads);
        let inputs: Vec<String> = reads.iter().map(|t| p.tensor(*t).name.clone()).collect();
        let result = decl.name.clone();
        let mut domain = lhs_ids.clone();
        domain.extend(s.reduced.iter().copied());
        let dom = elements(&s.indices, &domain, self.b)?;
        let (kind, einsum, flops) = match (hint, &s.rhs) {
            (StepHint::Contract, Expr::Mul(xs)) => {
                let operands: Vec<&Expr> = xs.iter().filter(|x| matches!(x, Expr::Access(..))).collect();
                let (a, b) = match operands.as_slice() {
                    [a, b] => (free(a), free(b)),
                    _ => return Err(PlanError::Internal("contract step without two operands".into())),
                };
                let sizes: Vec<u64> = (0..s.indices.len()).map(|k| range(&s.indices, IndexId(k as u32), self.b)).collect::<R<_>>()?;
                let lab = |v: &[IndexId]| v.iter().map(|i| i.0).collect::<Vec<u32>>();
                // A compile-time constant operand that lowering unrolls skips its zeros:
                // work scales with its density.
                let density: f64 = operands
                    .iter()
                    .filter_map(|x| match x {
                        Expr::Access(t, _) => p.constant(*t).filter(|c| c.unrolled()),
                        _ => None,
                    })
                    .map(|c| c.nonzeros() as f64 / c.values.len().max(1) as f64)
                    .product();
                let flops = pairwise_flops(&lab(&a), &lab(&b), &lab(&lhs_ids), &sizes) * density;
                let pick = |f: &dyn Fn(&IndexId) -> bool, from: &[IndexId]| from.iter().filter(|i| f(i)).map(name_of).collect::<Vec<_>>();
                let in_out = |i: &IndexId| lhs_ids.contains(i);
                let kind = StepKind::Contract {
                    batch: pick(&|i| b.contains(i) && in_out(i), &a),
                    m: pick(&|i| !b.contains(i) && in_out(i), &a),
                    n: pick(&|i| !a.contains(i) && in_out(i), &b),
                    k: pick(&|i| b.contains(i) && !in_out(i), &a),
                    sum_a: pick(&|i| !b.contains(i) && !in_out(i), &a),
                    sum_b: pick(&|i| !a.contains(i) && !in_out(i), &b),
                };
                let names = |v: &[IndexId]| v.iter().map(name_of).collect::<Vec<_>>();
                let mut text = einsum_text(&[names(&a), names(&b)], &names(&lhs_ids));
                if density < 1.0 {
                    text.push_str(&format!(" (constant, {:.0}% nonzero)", density * 100.0));
                }
                (kind, text, flops)
            }
            (StepHint::Reduce, _) | (_, _) if !s.reduced.is_empty() => {
                (StepKind::Reduce { op: s.op.name().to_string() }, p.rhs_string(s), dom * (ops(&s.rhs) + 1.0))
            }
            _ => (StepKind::Map, p.rhs_string(s), dom * ops(&s.rhs)),
        };
        Ok(Step { kind, result, shape, inputs, einsum, flops, bytes, statement: self.origin })
    }
}

#[derive(Clone, Copy, PartialEq)]
enum StepHint {
    Contract,
    Map,
    Reduce,
}

fn existing(t: &Target) -> Option<TensorId> {
    match t {
        Target::Existing(id) => Some(*id),
        Target::New => None,
    }
}

fn with_coef(e: Expr, coef: Vec<Expr>) -> Expr {
    if coef.is_empty() {
        return e;
    }
    let mut v = coef;
    match e {
        Expr::Mul(xs) => v.extend(xs),
        other => v.push(other),
    }
    Expr::Mul(v)
}

fn split_terms(e: Expr, negative: bool, out: &mut Vec<(bool, Expr)>) {
    match e {
        Expr::Add(xs) => xs.into_iter().for_each(|x| split_terms(x, negative, out)),
        Expr::Sub(a, b) => {
            split_terms(*a, negative, out);
            split_terms(*b, !negative, out);
        }
        Expr::Neg(a) => split_terms(*a, !negative, out),
        other => out.push((negative, other)),
    }
}

fn factors(e: Expr, num: &mut Vec<Expr>, den: &mut Vec<Expr>, neg: &mut bool) {
    match e {
        Expr::Mul(xs) => xs.into_iter().for_each(|x| factors(x, num, den, neg)),
        Expr::Div(a, b) => {
            factors(*a, num, den, neg);
            factors(*b, den, num, neg);
        }
        Expr::Neg(a) => {
            *neg = !*neg;
            factors(*a, num, den, neg);
        }
        other => num.push(other),
    }
}

fn collect_all_ids(e: &Expr, out: &mut Vec<IndexId>) {
    let push = |i: IndexId, out: &mut Vec<IndexId>| {
        if !out.contains(&i) {
            out.push(i)
        }
    };
    match e {
        Expr::Lit(_) | Expr::Size(_) => {}
        Expr::Index(i) => push(*i, out),
        Expr::Access(_, pos) => pos.iter().flatten().for_each(|&i| push(i, out)),
        Expr::Gather(_, pos) => pos.iter().flat_map(|p| p.ids()).for_each(|&i| push(i, out)),
        Expr::Neg(a) => collect_all_ids(a, out),
        Expr::Add(xs) | Expr::Mul(xs) | Expr::Call(_, xs) => xs.iter().for_each(|x| collect_all_ids(x, out)),
        Expr::Sub(a, b) | Expr::Div(a, b) => {
            collect_all_ids(a, out);
            collect_all_ids(b, out);
        }
        Expr::Select(c, a, b) => {
            let mut v = Vec::new();
            c.free_indices(&mut v);
            v.into_iter().for_each(|i| push(i, out));
            collect_all_ids(a, out);
            collect_all_ids(b, out);
        }
        Expr::Reduce(_, ids, body) => {
            ids.iter().for_each(|&i| push(i, out));
            collect_all_ids(body, out);
        }
    }
}

fn remap(e: &Expr, m: &dyn Fn(IndexId) -> IndexId) -> Expr {
    e.clone().map_nodes(&mut |x| match x {
        Expr::Index(i) => Expr::Index(m(i)),
        Expr::Access(t, pos) => Expr::Access(t, pos.iter().map(|p| p.iter().map(|&i| m(i)).collect()).collect()),
        Expr::Reduce(op, ids, body) => Expr::Reduce(op, ids.iter().map(|&i| m(i)).collect(), body),
        other => other,
    })
}

/// `ia,ja->ij` when every index name is one character, else `(i,a),(j,a)->(i,j)`.
pub(super) fn einsum_text(inputs: &[Vec<String>], output: &[String]) -> String {
    let single = inputs.iter().flatten().chain(output).all(|n| n.chars().count() == 1);
    let term = |v: &[String]| if single { v.concat() } else { format!("({})", v.join(",")) };
    let ins: Vec<String> = inputs.iter().map(|v| term(v)).collect();
    format!("{}->{}", ins.join(","), term(output))
}

/// What a step computes, equal for two statements exactly when they compute the same
/// tensor: indices renumbered by order of appearance (left side first) with only their
/// ranges kept, and the operands of a product sorted, so `v[a] * Ai[a, b]` and
/// `Ai[l, j] * v[l]` meet. A value rather than printed text: it is built for every step.
#[derive(PartialEq)]
struct StepKey {
    lhs: Vec<Position>,
    op: ReduceOp,
    rhs: Expr,
    ranges: Vec<Size>,
}

fn canonical_key(lhs: &[Position], op: ReduceOp, rhs: &Expr, indices: &[IndexVar]) -> StepKey {
    let rhs = match rhs {
        Expr::Mul(xs) => {
            let mut xs = xs.clone();
            xs.sort_by_key(|x| match x {
                Expr::Access(t, pos) => (t.0, pos.len()),
                _ => (u32::MAX, 0),
            });
            Expr::Mul(xs)
        }
        other => other.clone(),
    };
    let mut order: Vec<IndexId> = lhs.iter().flatten().copied().collect();
    collect_all_ids(&rhs, &mut order);
    let rename = |i: IndexId| IndexId(order.iter().position(|x| *x == i).unwrap_or(0) as u32);
    StepKey {
        lhs: lhs.iter().map(|q| q.iter().map(|&i| rename(i)).collect()).collect(),
        op,
        rhs: remap(&rhs, &rename),
        ranges: order.iter().map(|&i| indices[i.index()].range.clone()).collect(),
    }
}
