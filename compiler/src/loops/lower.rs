//! Plan → loop IR.
//!
//! 1. Elementwise steps whose result has a single reader are inlined into that reader
//!    (TIR substitution), so a chain of maps and the reduction after it become one loop
//!    nest and their intermediates never exist.
//! 2. Contraction steps become one strided `Gemm` when their operands are plain reads
//!    and every other factor is a constant: indices are labelled batch/M/N/K by where
//!    they occur, adjacent axes with one role are merged, leftover axes become loops
//!    around the call.
//! 3. Every other step becomes a loop nest: the result's indices outside (the outermost
//!    parallel), its reduced indices inside with a scalar accumulator.
//! 4. The program passes run (`passes::PASSES`): row fusion, tile groups, localisation
//!    and sibling fusion when fusing, then the memory plan, in which temporaries share
//!    memory slots when their lifetimes do not overlap.

use super::passes::{pipeline, run_passes, RunOptions};
use super::*;
use crate::plan::{Plan, StepKind};
use crate::tir::{self, Bindings, Builtin, Cond, IndexId, IndexVar, Position, ReduceOp, TensorId, TensorKind};

/// What the lowering may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LowerOptions {
    /// Contractions become GEMM calls (else generated loops).
    pub gemm: bool,
    /// Inline single-use elementwise steps and fuse row-wise loop kernels.
    pub fuse: bool,
    /// Run the plan's online-softmax fusions as streamed tile groups (needs `gemm` and
    /// `fuse`).
    pub stream: bool,
    /// Query rows per tile and keys per block of streams, instead of the defaults
    /// (tests use tiny blocks to reach every kind of block at small sizes).
    pub stream_blocks: Option<super::flash::Blocks>,
    /// Run chains of row-wise kernels as tile groups (the CPU executor's construct; a
    /// GPU program has none, and so no streams either).
    pub tiles: bool,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions { gemm: true, fuse: true, stream: true, stream_blocks: None, tiles: true }
    }
}

impl LowerOptions {
    /// These options as `backend` can run them: the CUDA executor runs no tile groups
    /// (so no streamed attention yet either).
    pub fn for_backend(&self, backend: crate::backend::Backend) -> LowerOptions {
        match backend {
            crate::backend::Backend::Cuda => LowerOptions { tiles: false, stream: false, ..self.clone() },
            _ => self.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LowerError {
    /// A size does not fit the machine.
    #[error("{0}")]
    Size(String),
    /// An invariant failed. Always a bug.
    #[error("internal error (this is a bug in Tessera): lowering: {0}")]
    Internal(String),
}

pub(super) type R<T> = Result<T, LowerError>;

/// Multiply-adds per call below which a GEMM that would be called more than once (in
/// loops over other indices) runs as generated loops instead.
const SMALL_GEMM: usize = 4096;

pub(super) fn internal<T>(msg: impl Into<String>) -> R<T> {
    Err(LowerError::Internal(msg.into()))
}

/// Lowers a plan. Every step runs over its whole range: the plan's slice loops are run
/// above the loop IR, by `exec::sliced`, which lowers each sliced piece through here.
pub fn lower(plan: &Plan, opts: &LowerOptions) -> R<Program> {
    lower_with(plan, opts, &RunOptions::default())
}

/// Lowers a plan, running the passes as `run` says (verification after every pass).
pub fn lower_with(plan: &Plan, opts: &LowerOptions, run: &RunOptions) -> R<Program> {
    let mut p = lower_kernels(plan, opts)?;
    run_passes(&mut p, &pipeline(opts.fuse, opts.tiles), Stage::Kernels, run).map_err(|e| LowerError::Internal(e.to_string()))?;
    // Backends rely on a verified program, so release builds check the result once.
    if !run.verify_each {
        if let Err(e) = verify(&p) {
            return internal(format!("the loop program does not verify: {e}\n{p}"));
        }
    }
    Ok(p)
}

/// The kernels of a plan before any pass has run (`Stage::Kernels`).
pub fn lower_kernels(plan: &Plan, opts: &LowerOptions) -> R<Program> {
    let f = &plan.program;
    let mut b = Bindings::new(plan.dims.len());
    for (k, d) in plan.dims.iter().enumerate() {
        b.set(tir::DimId(k as u32), d.size);
    }
    if plan.steps.len() != f.stmts.len() {
        return internal("the plan's steps and program disagree");
    }
    let mut stmts: Vec<(tir::Stmt, Vec<usize>, bool)> = f
        .stmts
        .iter()
        .zip(&plan.steps)
        .enumerate()
        .map(|(k, (s, st))| (s.clone(), vec![k], matches!(st.kind, StepKind::Contract { .. })))
        .collect();
    // A fusion's statements leave; its result's statement stays as the place where the
    // stream runs, marked as a contraction so that nothing is inlined into or from it.
    let streams: Vec<&crate::plan::fuse::OnlineSoftmax> = if opts.stream && opts.tiles && opts.gemm && opts.fuse {
        plan.fusions.iter().filter(|u| super::flash::supported(&u.form)).map(|u| &u.form).collect()
    } else {
        Vec::new()
    };
    let fused: Vec<&Vec<usize>> = plan.fusions.iter().filter(|u| streams.iter().any(|s| std::ptr::eq(*s, &u.form))).map(|u| &u.steps).collect();
    for steps in &fused {
        let last = *steps.last().unwrap_or(&0);
        stmts.retain(|s| s.1[0] == last || !steps.contains(&s.1[0]));
        if let Some(s) = stmts.iter_mut().find(|s| s.1[0] == last) {
            s.1 = (*steps).clone();
            s.2 = true;
        }
    }
    if opts.fuse {
        inline_maps(f, &b, &mut stmts)?;
    }
    let mut l = Lowerer { f, b: &b, bufs: Vec::new(), of_tensor: vec![None; f.tensors.len()] };
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    for &t in &f.inputs {
        inputs.push(l.buf(t)?);
    }
    let mut indices = Vec::new();
    for &t in &f.indices {
        indices.push(l.buf(t)?);
    }
    for &t in &f.outputs {
        outputs.push(l.buf(t)?);
    }
    let mut kernels = Vec::new();
    let mut tiles = Vec::new();
    for (s, steps, contract) in &stmts {
        if let Some(n) = fused.iter().position(|x| *x == steps) {
            let blocks = opts.stream_blocks.unwrap_or_else(|| super::flash::Blocks::choose(streams[n]));
            tiles.push(l.flash(streams[n], steps, blocks, &mut kernels)?);
            continue;
        }
        // A constant operand with zeros runs unrolled by its nonzeros, GEMM or not.
        if *contract {
            if let Some(k) = l.sparse(s, steps)? {
                kernels.push(Kernel::Loops(k));
                continue;
            }
        }
        let gemm = if *contract && opts.gemm { l.gemm(s, steps[0])? } else { None };
        match gemm {
            Some(g) => kernels.push(Kernel::Gemm(g)),
            None => kernels.push(Kernel::Loops(l.loops(s, steps.clone())?)),
        }
    }
    Ok(Program {
        name: f.name.clone(),
        dtype: f.dtype,
        bufs: l.bufs,
        slots: Vec::new(),
        inputs,
        indices,
        outputs,
        kernels,
        tiles,
    })
}

fn size_of(s: &tir::Size, b: &Bindings) -> R<usize> {
    s.eval(b)
        .ok()
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| LowerError::Size("a size does not fit this machine's address space".into()))
}

// ---------------------------------------------------------------------------------------
// Inlining single-use elementwise steps.

/// Substitutes elementwise statements into their only reader while that does not
/// recompute expensive work. Contraction steps are never inlined into (their operands
/// must be buffers for the GEMM).
fn inline_maps(f: &tir::Function, b: &Bindings, stmts: &mut Vec<(tir::Stmt, Vec<usize>, bool)>) -> R<()> {
    loop {
        let mut changed = false;
        for p in 0..stmts.len() {
            let prod = &stmts[p].0;
            if !prod.reduced.is_empty() || f.tensor(prod.target).kind != TensorKind::Temp || stmts[p].2 {
                continue;
            }
            if prod.lhs.iter().any(|pos| pos.len() != 1) {
                continue;
            }
            let t = prod.target;
            let readers: Vec<usize> = (0..stmts.len()).filter(|&k| reads(&stmts[k].0, t) > 0).collect();
            let [c] = readers.as_slice() else { continue };
            let c = *c;
            if stmts[c].2 {
                continue;
            }
            let n_reads = reads(&stmts[c].0, t);
            let mut all_simple = true;
            // A gathered read of `t` (reported without positions) cannot take an
            // expression in its place either.
            let rank = f.tensor(t).shape.len();
            stmts[c].0.rhs.for_each_access(&mut |tt, pos| {
                if tt == t && (pos.iter().any(|x| x.len() != 1) || pos.len() != rank) {
                    all_simple = false;
                }
            });
            if !all_simple {
                continue;
            }
            // Recomputing is fine for cheap expressions; an expensive one is inlined only
            // when the reader evaluates it once per element of the producer.
            let cheap = !expensive(&prod.rhs) && ops(&prod.rhs) <= 8;
            let prod_dom = domain(prod, b)?;
            let cons_dom = domain(&stmts[c].0, b)? * n_reads as f64;
            if !cheap && cons_dom > prod_dom {
                continue;
            }
            let prod = stmts[p].0.clone();
            let mut cons = stmts[c].0.clone();
            let rhs = std::mem::replace(&mut cons.rhs, tir::Expr::Lit(0.0));
            cons.rhs = substitute(rhs, &prod, &mut cons.indices);
            let mut steps = stmts[p].1.clone();
            steps.extend(stmts[c].1.iter().copied());
            steps.sort();
            stmts[c].0 = cons;
            stmts[c].1 = steps;
            stmts.remove(p);
            changed = true;
            break;
        }
        if !changed {
            return Ok(());
        }
    }
}

fn reads(s: &tir::Stmt, t: TensorId) -> usize {
    let mut n = 0;
    s.rhs.for_each_access(&mut |tt, _| n += usize::from(tt == t));
    n
}

fn expensive(e: &tir::Expr) -> bool {
    use tir::Expr as E;
    match e {
        E::Lit(_) | E::Size(_) | E::Index(_) | E::Access(..) | E::Gather(..) => false,
        E::Call(f, xs) => !matches!(f, Builtin::Relu | Builtin::Abs | Builtin::Max | Builtin::Min) || xs.iter().any(expensive),
        E::Div(..) | E::Reduce(..) => true,
        E::Neg(a) => expensive(a),
        E::Sub(a, b) => expensive(a) || expensive(b),
        E::Add(xs) | E::Mul(xs) => xs.iter().any(expensive),
        E::Select(_, a, b) => expensive(a) || expensive(b),
    }
}

fn ops(e: &tir::Expr) -> usize {
    use tir::Expr as E;
    match e {
        E::Lit(_) | E::Size(_) | E::Index(_) | E::Access(..) => 0,
        E::Gather(..) => 1,
        E::Neg(a) => 1 + ops(a),
        E::Sub(a, b) | E::Div(a, b) => 1 + ops(a) + ops(b),
        E::Add(xs) | E::Mul(xs) | E::Call(_, xs) => xs.len() + xs.iter().map(ops).sum::<usize>(),
        E::Select(_, a, b) => 2 + ops(a) + ops(b),
        E::Reduce(_, _, a) => 1 + ops(a),
    }
}

/// Elements of a statement's loop nest.
fn domain(s: &tir::Stmt, b: &Bindings) -> R<f64> {
    let mut d = 1.0;
    for i in s.lhs.iter().flatten().chain(&s.reduced) {
        d *= size_of(&s.indices[i.index()].range, b)? as f64;
    }
    Ok(d)
}

/// Replaces every read of `prod.target` in `e` by `prod.rhs` with the producer's indices
/// renamed to the reader's; indices the producer binds itself become new reader indices.
fn substitute(e: tir::Expr, prod: &tir::Stmt, indices: &mut Vec<IndexVar>) -> tir::Expr {
    use tir::Expr as E;
    let sub = |x: tir::Expr, indices: &mut Vec<IndexVar>| Box::new(substitute(x, prod, indices));
    match e {
        E::Access(t, pos) if t == prod.target => {
            let mut map: Vec<Option<IndexId>> = vec![None; prod.indices.len()];
            for (lp, rp) in prod.lhs.iter().zip(&pos) {
                map[lp[0].index()] = Some(rp[0]);
            }
            for (k, m) in map.iter_mut().enumerate() {
                if m.is_none() {
                    *m = Some(IndexId(indices.len() as u32));
                    indices.push(prod.indices[k].clone());
                }
            }
            rename(prod.rhs.clone(), &|i: IndexId| map[i.index()].unwrap_or(i))
        }
        E::Lit(_) | E::Size(_) | E::Index(_) | E::Access(..) | E::Gather(..) => e,
        E::Neg(a) => E::Neg(sub(*a, indices)),
        E::Sub(a, c) => E::Sub(sub(*a, indices), sub(*c, indices)),
        E::Div(a, c) => E::Div(sub(*a, indices), sub(*c, indices)),
        E::Add(xs) => E::Add(xs.into_iter().map(|x| substitute(x, prod, indices)).collect()),
        E::Mul(xs) => E::Mul(xs.into_iter().map(|x| substitute(x, prod, indices)).collect()),
        E::Call(f, xs) => E::Call(f, xs.into_iter().map(|x| substitute(x, prod, indices)).collect()),
        E::Select(c, a, d) => E::Select(Box::new(substitute_cond(*c, prod, indices)), sub(*a, indices), sub(*d, indices)),
        E::Reduce(op, bound, a) => E::Reduce(op, bound, sub(*a, indices)),
    }
}

fn substitute_cond(c: Cond, prod: &tir::Stmt, indices: &mut Vec<IndexVar>) -> Cond {
    match c {
        Cond::Cmp(op, a, b) => Cond::Cmp(op, substitute(a, prod, indices), substitute(b, prod, indices)),
        Cond::And(cs) => Cond::And(cs.into_iter().map(|x| substitute_cond(x, prod, indices)).collect()),
        Cond::Or(cs) => Cond::Or(cs.into_iter().map(|x| substitute_cond(x, prod, indices)).collect()),
        Cond::Not(x) => Cond::Not(Box::new(substitute_cond(*x, prod, indices))),
    }
}

fn rename(e: tir::Expr, m: &dyn Fn(IndexId) -> IndexId) -> tir::Expr {
    use tir::Expr as E;
    let r = |x: tir::Expr| Box::new(rename(x, m));
    let rv = |xs: Vec<tir::Expr>| xs.into_iter().map(|x| rename(x, m)).collect();
    match e {
        E::Lit(_) | E::Size(_) => e,
        E::Index(i) => E::Index(m(i)),
        E::Access(t, pos) => E::Access(t, pos.into_iter().map(|p| p.into_iter().map(m).collect()).collect()),
        E::Gather(t, mut pos) => {
            pos.iter_mut().for_each(|p| p.ids_mut().iter_mut().for_each(|i| *i = m(*i)));
            E::Gather(t, pos)
        }
        E::Neg(a) => E::Neg(r(*a)),
        E::Sub(a, b) => E::Sub(r(*a), r(*b)),
        E::Div(a, b) => E::Div(r(*a), r(*b)),
        E::Add(xs) => E::Add(rv(xs)),
        E::Mul(xs) => E::Mul(rv(xs)),
        E::Call(f, xs) => E::Call(f, rv(xs)),
        E::Select(c, a, b) => E::Select(Box::new(rename_cond(*c, m)), r(*a), r(*b)),
        E::Reduce(op, bound, a) => E::Reduce(op, bound.into_iter().map(m).collect(), r(*a)),
    }
}

fn rename_cond(c: Cond, m: &dyn Fn(IndexId) -> IndexId) -> Cond {
    match c {
        Cond::Cmp(op, a, b) => Cond::Cmp(op, rename(a, m), rename(b, m)),
        Cond::And(cs) => Cond::And(cs.into_iter().map(|x| rename_cond(x, m)).collect()),
        Cond::Or(cs) => Cond::Or(cs.into_iter().map(|x| rename_cond(x, m)).collect()),
        Cond::Not(x) => Cond::Not(Box::new(rename_cond(*x, m))),
    }
}

// ---------------------------------------------------------------------------------------
// Kernels.

pub(super) struct Lowerer<'a> {
    pub(super) f: &'a tir::Function,
    pub(super) b: &'a Bindings,
    pub(super) bufs: Vec<Buffer>,
    of_tensor: Vec<Option<BufId>>,
}

/// An index of a statement with its stride in each operand.
#[derive(Clone, Copy, Debug)]
struct Axis {
    extent: usize,
    a: i64,
    b: i64,
    c: i64,
}

impl Lowerer<'_> {
    pub(super) fn buf(&mut self, t: TensorId) -> R<BufId> {
        if let Some(b) = self.of_tensor[t.index()] {
            return Ok(b);
        }
        let decl = self.f.tensor(t);
        let shape = decl.shape.iter().map(|s| size_of(s, self.b)).collect::<R<Vec<_>>>()?;
        shape
            .iter()
            .try_fold(1usize, |a, &x| a.checked_mul(x))
            .filter(|n| n.checked_mul(8).is_some())
            .ok_or_else(|| LowerError::Size(format!("tensor {} is too large for this machine", decl.name)))?;
        let kind = match decl.kind {
            TensorKind::Input => BufKind::Input(self.f.inputs.iter().position(|x| *x == t).unwrap_or(0)),
            TensorKind::Index(_) => BufKind::Index(self.f.indices.iter().position(|x| *x == t).unwrap_or(0)),
            TensorKind::Output => BufKind::Output(self.f.outputs.iter().position(|x| *x == t).unwrap_or(0)),
            TensorKind::Temp => BufKind::Temp { slot: 0 },
            TensorKind::Const => match self.f.constant(t) {
                Some(c) => BufKind::Const(c.values.clone()),
                None => return internal(format!("constant {} has no values", decl.name)),
            },
        };
        let id = BufId(self.bufs.len() as u32);
        self.bufs.push(Buffer { name: decl.name.clone(), kind, shape });
        self.of_tensor[t.index()] = Some(id);
        Ok(id)
    }

    pub(super) fn range(&self, s: &tir::Stmt, i: IndexId) -> R<usize> {
        match s.indices.get(i.index()) {
            Some(v) => size_of(&v.range, self.b),
            None => internal("index out of range"),
        }
    }

    /// The element offset of `t[pos]` as a sum over indices: (index, stride) pairs,
    /// strides of a repeated index added up.
    pub(super) fn strides(&mut self, s: &tir::Stmt, t: TensorId, pos: &[Position]) -> R<(BufId, Vec<(IndexId, i64)>)> {
        let buf = self.buf(t)?;
        let shape = self.bufs[buf.index()].shape.clone();
        if shape.len() != pos.len() {
            return internal(format!("access of {} has the wrong rank", self.bufs[buf.index()].name));
        }
        let mut out: Vec<(IndexId, i64)> = Vec::new();
        let mut stride: i64 = 1;
        for (p, group) in pos.iter().enumerate().rev() {
            let mut inner: i64 = 1;
            for &i in group.iter().rev() {
                let st = stride * inner;
                match out.iter_mut().find(|x| x.0 == i) {
                    Some(x) => x.1 += st,
                    None => out.push((i, st)),
                }
                inner *= self.range(s, i)? as i64;
            }
            stride *= shape[p] as i64;
        }
        Ok((buf, out))
    }

    // -----------------------------------------------------------------------------------
    // GEMM.

    /// The contraction as a GEMM call, or None when it is not one (other factors that
    /// depend on indices, an empty range, ...), in which case generated loops run it.
    fn gemm(&mut self, s: &tir::Stmt, step: usize) -> R<Option<Gemm>> {
        let tir::Expr::Mul(xs) = &s.rhs else { return Ok(None) };
        let mut operands = Vec::new();
        let mut alpha = 1.0;
        for x in xs {
            match x {
                tir::Expr::Access(t, pos) => operands.push((*t, pos)),
                other => match other.const_value(self.b) {
                    Some(v) => alpha *= v,
                    None => return Ok(None),
                },
            }
        }
        let [(ta, pa), (tb, pb)] = operands.as_slice() else { return Ok(None) };
        if s.op != ReduceOp::Sum {
            return Ok(None);
        }
        let (a, sa) = self.strides(s, *ta, pa)?;
        let (b, sb) = self.strides(s, *tb, pb)?;
        let lhs: Vec<Position> = s.lhs.clone();
        let (c, sc) = self.strides(s, s.target, &lhs)?;
        if c == a || c == b {
            return Ok(None);
        }
        let mut axes: Vec<(IndexId, Axis)> = Vec::new();
        for k in 0..s.indices.len() {
            let i = IndexId(k as u32);
            let get = |v: &[(IndexId, i64)]| v.iter().find(|x| x.0 == i).map(|x| x.1);
            let (xa, xb, xc) = (get(&sa), get(&sb), get(&sc));
            if xa.is_none() && xb.is_none() && xc.is_none() {
                continue;
            }
            let extent = self.range(s, i)?;
            if extent == 0 {
                return Ok(None);
            }
            axes.push((i, Axis { extent, a: xa.unwrap_or(0), b: xb.unwrap_or(0), c: xc.unwrap_or(0) }));
        }
        let name = |i: IndexId| s.indices[i.index()].name.clone();
        let present = |v: &[(IndexId, i64)], i: IndexId| v.iter().any(|x| x.0 == i);
        let role = |(i, _): &(IndexId, Axis)| -> u8 {
            match (present(&sa, *i), present(&sb, *i), present(&sc, *i)) {
                (true, false, true) => 1,  // M
                (false, true, true) => 2,  // N
                (true, true, false) => 3,  // K
                _ => 0,                    // batch or loop
            }
        };
        let pick = |r: u8, key: fn(&Axis) -> (i64, i64)| -> (Vec<String>, Vec<Axis>) {
            let mut v: Vec<(IndexId, Axis)> = axes.iter().filter(|x| role(x) == r).cloned().collect();
            v.sort_by_key(|(_, x)| std::cmp::Reverse(key(x).0.abs()));
            (v.iter().map(|(i, _)| name(*i)).collect(), merge(v.into_iter().map(|x| x.1).collect(), key))
        };
        let (mn, mut ms) = pick(1, |x| (x.c, x.a));
        let (nn, mut ns) = pick(2, |x| (x.c, x.b));
        let (kn, mut ks) = pick(3, |x| (x.a, x.b));
        let others: Vec<(IndexId, Axis)> = axes.iter().filter(|x| role(x) == 0).cloned().collect();
        let mut outer: Vec<GemmLoop> = Vec::new();
        let take = |v: &mut Vec<Axis>| -> Option<Axis> {
            let best = (0..v.len()).max_by_key(|&k| v[k].extent)?;
            Some(v.remove(best))
        };
        let m = take(&mut ms).unwrap_or(Axis { extent: 1, a: 0, b: 0, c: 0 });
        let n = take(&mut ns).unwrap_or(Axis { extent: 1, a: 0, b: 0, c: 0 });
        let k = take(&mut ks).unwrap_or(Axis { extent: 1, a: 0, b: 0, c: 0 });
        // Dot products and thin matrix-vector shapes run faster as generated loops (one
        // vectorised pass, fusable with their neighbours) than as library calls.
        if (m.extent < 4 || n.extent < 4) && m.extent * n.extent * k.extent < 65536 {
            return Ok(None);
        }
        // A matrix-vector product reading the matrix along K is one streaming dot product
        // per row: generated loops run it at memory speed on every thread, where a GEMM
        // library call with one column does not.
        let single = others.is_empty() && ms.is_empty() && ns.is_empty() && ks.is_empty();
        // Many small products (a batch of 5×32×3 GEMMs, one per element of a batch of
        // 10,000) cost more in library calls than in arithmetic: loops, parallel over
        // the batch and fusable with their neighbours, run them.
        let calls: usize = others.iter().map(|x| x.1.extent).chain(ms.iter().chain(&ns).chain(&ks).map(|x| x.extent)).product();
        if calls > 1 && m.extent * n.extent * k.extent < SMALL_GEMM {
            return Ok(None);
        }
        if single && ((n.extent == 1 && k.a.abs() == 1) || (m.extent == 1 && k.b.abs() == 1)) {
            return Ok(None);
        }
        for x in others.iter().map(|x| x.1).chain(ms).chain(ns).chain(ks) {
            outer.push(GemmLoop { extent: x.extent, stride_a: x.a as isize, stride_b: x.b as isize, stride_c: x.c as isize });
        }
        // Independent loops outside, sums inside: the runtime parallelises the former.
        outer.sort_by_key(|l| (l.stride_c == 0, std::cmp::Reverse(l.stride_c.abs())));
        let roles = format!(
            "[batch {}; M {}; N {}; K {}]",
            others.iter().map(|x| name(x.0)).collect::<Vec<_>>().join(" "),
            mn.join(" "),
            nn.join(" "),
            kn.join(" ")
        );
        Ok(Some(Gemm {
            a,
            b,
            c,
            m: m.extent,
            n: n.extent,
            k: k.extent,
            a_strides: [m.a as isize, k.a as isize],
            b_strides: [k.b as isize, n.b as isize],
            c_strides: [m.c as isize, n.c as isize],
            outer,
            alpha,
            accumulate: false,
            step,
            roles,
        }))
    }

    // -----------------------------------------------------------------------------------
    // Loop nests.

    fn loops(&mut self, s: &tir::Stmt, steps: Vec<usize>) -> R<LoopKernel> {
        let target = self.buf(s.target)?;
        let mut k = KernelBuilder::new(self.bufs[target.index()].name.clone(), steps, s.indices.len());
        let lhs: Vec<IndexId> = s.lhs.iter().flatten().copied().collect();
        for (n, i) in lhs.iter().enumerate() {
            if lhs[..n].contains(i) {
                return internal("an index repeats on the left");
            }
        }
        let all: Vec<IndexId> = lhs.iter().chain(&s.reduced).copied().collect();
        for &i in &all {
            let extent = self.range(s, i)?;
            k.declare(s, i, extent);
        }
        let (_, st) = self.strides(s, s.target, &s.lhs)?;
        let index = k.affine(&st);
        let elems = self.bufs[target.index()].len();
        let row = match lhs.last() {
            Some(&last) if row_form(s, &st) => self.rows_beat_reduction(s, last)?,
            _ => false,
        };
        if let Some((&last, outer)) = lhs.split_last().filter(|_| row) {
            // Sums of L-Mul products have no GEMM: they accumulate whole rows of the
            // result, so that the innermost loop runs along the result's contiguous index
            // (and usually an operand's), which the backends vectorise.
            let zero = Stmt::Store { buf: target, index: index.clone(), value: Expr::Const(0.0) };
            let mut body = k.nest(&[last], vec![zero], false);
            k.declare(s, last, k.extent(last));
            let index = k.affine(&st);
            let mut inner = Vec::new();
            let v = self.expr(s, &mut k, &mut inner, &s.rhs)?;
            let sum = Expr::bin(BinOp::Add, Expr::Load(target, index.clone()), v);
            inner.push(Stmt::Store { buf: target, index, value: sum });
            let order: Vec<IndexId> = s.reduced.iter().copied().chain([last]).collect();
            body.extend(k.nest(&order, inner, false));
            let parallel = elems > 0 && k.splits(outer);
            k.k.body = k.nest(outer, body, parallel);
            return Ok(k.k);
        }
        let mut body = Vec::new();
        if s.reduced.is_empty() {
            let v = self.expr(s, &mut k, &mut body, &s.rhs)?;
            body.push(Stmt::Store { buf: target, index, value: v });
        } else {
            let op = accum(s.op);
            let acc = k.var("acc");
            let mut inner = Vec::new();
            let v = self.expr(s, &mut k, &mut inner, &s.rhs)?;
            inner.push(Stmt::Update { var: acc, op, value: v });
            let red = k.nest(&s.reduced, inner, false);
            body.push(Stmt::Let { var: acc, value: Expr::Const(op.identity()) });
            body.extend(red);
            body.push(Stmt::Store { buf: target, index, value: Expr::Var(acc) });
        }
        let parallel = elems > 0 && k.splits(&lhs);
        k.k.body = k.nest(&lhs, body, parallel);
        Ok(k.k)
    }

    /// Whether accumulating rows beats a scalar accumulator: the innermost reduced index
    /// strides through some operand, while every operand is contiguous (or constant)
    /// along the result's last index `last`.
    fn rows_beat_reduction(&mut self, s: &tir::Stmt, last: IndexId) -> R<bool> {
        let Some(&inner) = s.reduced.last() else { return Ok(false) };
        let mut reads = Vec::new();
        s.rhs.for_each_access(&mut |t, pos| reads.push((t, pos.to_vec())));
        let (mut strided, mut rows) = (false, true);
        for (t, pos) in reads {
            // A gathered read has no strides to go by.
            if pos.len() != self.f.tensor(t).shape.len() {
                return Ok(false);
            }
            let (_, st) = self.strides(s, t, &pos)?;
            let stride = |i: IndexId| st.iter().filter(|(j, _)| *j == i).map(|(_, v)| *v).sum::<i64>();
            strided |= !matches!(stride(inner), 0 | 1);
            rows &= matches!(stride(last), 0 | 1);
        }
        Ok(strided && rows)
    }

    /// Lowers an expression; inline reductions push their loops onto `pre`.
    fn expr(&mut self, s: &tir::Stmt, k: &mut KernelBuilder, pre: &mut Vec<Stmt>, e: &tir::Expr) -> R<Expr> {
        use tir::Expr as E;
        Ok(match e {
            E::Lit(v) => Expr::Const(*v),
            E::Size(sz) => Expr::Const(size_of(sz, self.b)? as f64),
            E::Index(i) => k.index(*i)?,
            E::Access(t, pos) => {
                let (buf, st) = self.strides(s, *t, pos)?;
                Expr::Load(buf, k.affine(&st))
            }
            E::Gather(t, pos) => self.gather(s, k, *t, pos)?,
            E::Neg(a) => fold_un(UnOp::Neg, self.expr(s, k, pre, a)?),
            E::Add(xs) => self.chain(s, k, pre, xs, BinOp::Add)?,
            E::Mul(xs) => self.chain(s, k, pre, xs, BinOp::Mul)?,
            E::Sub(a, b) => {
                let (a, b) = (self.expr(s, k, pre, a)?, self.expr(s, k, pre, b)?);
                fold_bin(BinOp::Sub, a, b)
            }
            E::Div(a, b) => {
                let (a, b) = (self.expr(s, k, pre, a)?, self.expr(s, k, pre, b)?);
                fold_bin(BinOp::Div, a, b)
            }
            E::Call(f, args) => {
                let mut xs = Vec::new();
                for a in args {
                    xs.push(self.expr(s, k, pre, a)?);
                }
                let un = |op| fold_un(op, xs[0].clone());
                match (f, xs.len()) {
                    (Builtin::Exp, 1) => un(UnOp::Exp),
                    (Builtin::Log, 1) => un(UnOp::Log),
                    (Builtin::Sqrt, 1) => un(UnOp::Sqrt),
                    (Builtin::Rsqrt, 1) => un(UnOp::Rsqrt),
                    (Builtin::Tanh, 1) => un(UnOp::Tanh),
                    (Builtin::Sigmoid, 1) => un(UnOp::Sigmoid),
                    (Builtin::Relu, 1) => un(UnOp::Relu),
                    (Builtin::Abs, 1) => un(UnOp::Abs),
                    (Builtin::Sin, 1) => un(UnOp::Sin),
                    (Builtin::Cos, 1) => un(UnOp::Cos),
                    (Builtin::Pow, 2) => fold_bin(BinOp::Pow, xs[0].clone(), xs[1].clone()),
                    (Builtin::Max, 2) => fold_bin(BinOp::Max, xs[0].clone(), xs[1].clone()),
                    (Builtin::Min, 2) => fold_bin(BinOp::Min, xs[0].clone(), xs[1].clone()),
                    (Builtin::Lmul(m), 2) => Expr::bin(BinOp::Lmul(*m), xs[0].clone(), xs[1].clone()),
                    _ => return internal(format!("{} with {} arguments", f.name(), xs.len())),
                }
            }
            E::Select(c, a, b) => {
                let c = self.cond(s, k, pre, c)?;
                let (a, b) = (self.expr(s, k, pre, a)?, self.expr(s, k, pre, b)?);
                Expr::Select(Box::new(c), Box::new(a), Box::new(b))
            }
            E::Reduce(op, bound, body) => {
                let op = accum(*op);
                for &i in bound {
                    let extent = self.range(s, i)?;
                    k.declare(s, i, extent);
                }
                let acc = k.var("r");
                let mut inner = Vec::new();
                let v = self.expr(s, k, &mut inner, body)?;
                inner.push(Stmt::Update { var: acc, op, value: v });
                pre.push(Stmt::Let { var: acc, value: Expr::Const(op.identity()) });
                let loops = k.nest(bound, inner, false);
                pre.extend(loops);
                Expr::Var(acc)
            }
        })
    }

    /// A gathered read: plain positions add affine terms to the base address, each
    /// indirect one a term `stride · index[at]` read from its index buffer.
    fn gather(&mut self, s: &tir::Stmt, k: &KernelBuilder, t: TensorId, pos: &[tir::GatherPos]) -> R<Expr> {
        let buf = self.buf(t)?;
        let shape = self.bufs[buf.index()].shape.clone();
        if shape.len() != pos.len() {
            return internal(format!("gather of {} has the wrong rank", self.bufs[buf.index()].name));
        }
        let mut base = Affine::default();
        let mut ind = Vec::new();
        let mut stride: i64 = 1;
        for (p, gp) in pos.iter().enumerate().rev() {
            match gp {
                tir::GatherPos::Direct(group) => {
                    let mut inner: i64 = 1;
                    for &i in group.iter().rev() {
                        // An index of extent 1 has no loop and adds nothing.
                        for (l, v) in k.affine(&[(i, stride * inner)]).terms {
                            base.add_term(l, v);
                        }
                        inner *= self.range(s, i)? as i64;
                    }
                }
                tir::GatherPos::Indirect(x, ids) => {
                    let single: Vec<Position> = ids.iter().map(|&i| vec![i]).collect();
                    let (index, st) = self.strides(s, *x, &single)?;
                    ind.push(Indirect { index, at: k.affine(&st), stride, extent: shape[p] });
                }
            }
            stride *= shape[p] as i64;
        }
        ind.reverse();
        Ok(Expr::Gather(buf, base, ind))
    }

    fn chain(&mut self, s: &tir::Stmt, k: &mut KernelBuilder, pre: &mut Vec<Stmt>, xs: &[tir::Expr], op: BinOp) -> R<Expr> {
        let mut acc: Option<Expr> = None;
        for x in xs {
            let v = self.expr(s, k, pre, x)?;
            acc = Some(match acc {
                None => v,
                Some(a) => fold_bin(op, a, v),
            });
        }
        acc.map_or_else(|| internal("empty chain"), Ok)
    }

    fn cond(&mut self, s: &tir::Stmt, k: &mut KernelBuilder, pre: &mut Vec<Stmt>, c: &Cond) -> R<Pred> {
        Ok(match c {
            Cond::Cmp(op, a, b) => Pred::Cmp(*op, self.expr(s, k, pre, a)?, self.expr(s, k, pre, b)?),
            Cond::And(cs) => Pred::And(cs.iter().map(|x| self.cond(s, k, pre, x)).collect::<R<_>>()?),
            Cond::Or(cs) => Pred::Or(cs.iter().map(|x| self.cond(s, k, pre, x)).collect::<R<_>>()?),
            Cond::Not(x) => Pred::Not(Box::new(self.cond(s, k, pre, x)?)),
        })
    }
}

/// Axes of one GEMM role, merged where the outer one steps exactly over the inner one in
/// every operand (`key` gives the two strides that matter), sorted outermost first.
/// Whether `s` is a sum of L-Mul products (no inline reductions) into a result of two or
/// more indices whose last one is contiguous: such a sum runs as row accumulation.
fn row_form(s: &tir::Stmt, target_strides: &[(IndexId, i64)]) -> bool {
    fn lmul(e: &tir::Expr) -> bool {
        matches!(e, tir::Expr::Call(Builtin::Lmul(_), _))
    }
    fn any(e: &tir::Expr, f: &dyn Fn(&tir::Expr) -> bool) -> bool {
        use tir::Expr as E;
        f(e) || match e {
            E::Lit(_) | E::Size(_) | E::Index(_) | E::Access(..) | E::Gather(..) => false,
            E::Neg(a) => any(a, f),
            E::Add(xs) | E::Mul(xs) | E::Call(_, xs) => xs.iter().any(|x| any(x, f)),
            E::Sub(a, b) | E::Div(a, b) => any(a, f) || any(b, f),
            // A condition is evaluated per element too; it needs no special order.
            E::Select(_, a, b) => any(a, f) || any(b, f),
            E::Reduce(..) => true,
        }
    }
    let last = s.lhs.iter().flatten().last().copied();
    s.op == ReduceOp::Sum
        && !s.reduced.is_empty()
        && s.lhs.iter().flatten().count() >= 2
        && any(&s.rhs, &lmul)
        && !any(&s.rhs, &|e| matches!(e, tir::Expr::Reduce(..)))
        && last.is_some_and(|l| target_strides.iter().any(|&(i, v)| i == l && v == 1))
}

fn merge(v: Vec<Axis>, key: fn(&Axis) -> (i64, i64)) -> Vec<Axis> {
    let mut out: Vec<Axis> = Vec::new();
    for x in v {
        if let Some(last) = out.last_mut() {
            let (l0, l1) = key(last);
            let (x0, x1) = key(&x);
            let e = x.extent as i64;
            if l0 == x0 * e && l1 == x1 * e && last.a == x.a * e && last.b == x.b * e && last.c == x.c * e {
                *last = Axis { extent: last.extent * x.extent, a: x.a, b: x.b, c: x.c };
                continue;
            }
        }
        out.push(x);
    }
    out
}


fn accum(op: ReduceOp) -> Accum {
    match op {
        ReduceOp::Sum => Accum::Sum,
        ReduceOp::Max => Accum::Max,
        ReduceOp::Min => Accum::Min,
    }
}

fn fold_un(op: UnOp, a: Expr) -> Expr {
    match a {
        Expr::Const(v) => Expr::Const(op.apply(v)),
        a => Expr::un(op, a),
    }
}

fn fold_bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    match (op, &a, &b) {
        (BinOp::Mul, Expr::Const(x), _) if *x == 1.0 => b,
        (BinOp::Mul | BinOp::Div, _, Expr::Const(x)) if *x == 1.0 => a,
        (BinOp::Add, Expr::Const(x), _) if *x == 0.0 => b,
        (BinOp::Add | BinOp::Sub, _, Expr::Const(x)) if *x == 0.0 => a,
        _ => Expr::bin(op, a, b),
    }
}

pub(super) struct KernelBuilder {
    pub(super) k: LoopKernel,
    of_index: Vec<Option<LoopId>>,
    /// Indices of extent 1: no loop, value 0 (a loop of one iteration only costs its
    /// overhead and keeps the code generators from vectorising the loop inside it).
    units: Vec<bool>,
}

impl KernelBuilder {
    /// An empty kernel for a statement with `indices` index variables.
    pub(super) fn new(name: String, steps: Vec<usize>, indices: usize) -> KernelBuilder {
        KernelBuilder {
            k: LoopKernel { name, steps, loops: Vec::new(), vars: Vec::new(), body: Vec::new() },
            of_index: vec![None; indices],
            units: vec![false; indices],
        }
    }

    pub(super) fn declare(&mut self, s: &tir::Stmt, i: IndexId, extent: usize) {
        if self.of_index.len() <= i.index() {
            self.of_index.resize(i.index() + 1, None);
            self.units.resize(i.index() + 1, false);
        }
        self.units[i.index()] = extent == 1;
        if extent == 1 {
            self.of_index[i.index()] = None;
            return;
        }
        let id = LoopId(self.k.loops.len() as u32);
        let base = s.indices[i.index()].name.clone();
        let taken = |n: &str| self.k.loops.iter().any(|l| l.name == n);
        let mut name = base.clone();
        let mut n = 1;
        while taken(&name) {
            name = format!("{base}{n}");
            n += 1;
        }
        self.k.loops.push(LoopInfo { name, extent });
        self.of_index[i.index()] = Some(id);
    }

    pub(super) fn loop_of(&self, i: IndexId) -> R<LoopId> {
        self.of_index.get(i.index()).copied().flatten().map_or_else(|| internal("index without a loop"), Ok)
    }

    pub(super) fn extent(&self, i: IndexId) -> usize {
        if self.units.get(i.index()).copied().unwrap_or(false) {
            return 1;
        }
        self.loop_of(i).map_or(0, |l| self.k.loops[l.index()].extent)
    }

    /// The index's value as an expression: its loop counter, or 0 for an index of
    /// extent 1.
    pub(super) fn index(&self, i: IndexId) -> R<Expr> {
        if self.units.get(i.index()).copied().unwrap_or(false) {
            return Ok(Expr::Const(0.0));
        }
        Ok(Expr::Index(self.loop_of(i)?))
    }

    pub(super) fn var(&mut self, base: &str) -> VarId {
        let id = VarId(self.k.vars.len() as u32);
        self.k.vars.push(format!("{base}{}", id.0));
        id
    }

    pub(super) fn affine(&self, st: &[(IndexId, i64)]) -> Affine {
        let mut a = Affine::default();
        for &(i, s) in st {
            if let Ok(l) = self.loop_of(i) {
                a.add_term(l, s);
            }
        }
        a
    }

    /// Wraps `body` in loops over `indices`, outermost first (indices of extent 1 have
    /// none); the outermost loop may be parallel.
    pub(super) fn nest(&self, indices: &[IndexId], body: Vec<Stmt>, parallel: bool) -> Vec<Stmt> {
        let loops: Vec<LoopId> = indices.iter().filter_map(|&i| self.loop_of(i).ok()).collect();
        let mut body = body;
        for (n, &id) in loops.iter().enumerate().rev() {
            let extent = self.k.loops[id.index()].extent;
            body = vec![Stmt::For { id, extent, parallel: parallel && n == 0, body }];
        }
        body
    }

    /// Whether a loop nest over `indices` would have a parallel outermost loop worth
    /// splitting: one of them has more than one iteration.
    pub(super) fn splits(&self, indices: &[IndexId]) -> bool {
        indices.iter().find(|&&i| self.extent(i) != 1).is_some_and(|&i| self.extent(i) > 1)
    }
}
