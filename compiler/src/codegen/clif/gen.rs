//! Translation of one loop kernel into a Cranelift function.
//!
//! Scalar code mirrors the interpreter statement by statement: IR variables are
//! Cranelift `Variable`s, loop counters are i64 SSA values, addresses are
//! `base + offset·size + Σ counter·stride·size` summed outermost loop first, so that
//! Cranelift's loop-invariant code motion hoists every part but the innermost term.
//!
//! In a vectorised loop an expression is either uniform (one scalar for every lane) or a
//! vector; uniform values are splatted only where they meet a vector, so invariant work
//! stays scalar.

use super::libm::{Helpers, MathFn};
use super::vectorize::{self, VecPlan};
use super::CodegenError;
use crate::loops::{Indirect, 
    Accum, Affine, BinOp, BufId, CmpOp, Expr, LoopId, LoopKernel, Pred, Program, Stmt, UnOp, VarId,
};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, ConstantData, FuncRef, Function, InstBuilder, MemFlagsData, Type, Value,
};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::JITModule;
use cranelift_module::Module;
use std::collections::HashMap;
use tessera_runtime::DType;

type R<T> = Result<T, CodegenError>;

/// Code generation choices, resolved against the host.
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub vectorize: bool,
    pub fma: bool,
    pub inline_math: bool,
}

/// Vector loops run this many vectors per iteration, with one accumulator per copy, to
/// hide the latency of dependent adds.
const UNROLL: usize = 2;

/// Builds `l` into `func`, whose signature is already `(args, begin, end)`.
#[allow(clippy::too_many_arguments)]
pub(super) fn generate(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    module: &mut JITModule,
    helpers: &Helpers,
    p: &Program,
    k: &LoopKernel,
    t: &Target,
    cfg: TargetFrontendConfig,
) -> R<()> {
    let (ty, vty, mty, lanes) = match p.dtype {
        DType::F32 => (types::F32, types::F32X4, types::I32X4, 4u8),
        DType::F64 => (types::F64, types::F64X2, types::I64X2, 2u8),
    };
    let mut depth = vec![0; k.loops.len()];
    nest_depths(&k.body, 0, &mut depth);
    let b = FunctionBuilder::new(func, fctx);
    let mut g = Gen {
        k,
        b,
        module,
        helpers,
        t: t.clone(),
        ty,
        vty,
        mty,
        lanes,
        elem: p.dtype.size_of() as i64,
        ptr: cfg.pointer_type(),
        depth,
        uses: vectorize::var_uses(k),
        bases: vec![None; p.bufs.len()],
        scratch: p
            .bufs
            .iter()
            .map(|b| matches!(b.kind, crate::loops::BufKind::Scratch).then(|| b.len() * p.dtype.size_of()))
            .collect(),
        written: vec![false; p.bufs.len()],
        vars: Vec::new(),
        cur: vec![None; k.loops.len()],
        refs: HashMap::new(),
        vec: None,
    };
    g.body()?;
    g.b.finalize(cfg);
    Ok(())
}

fn nest_depths(body: &[Stmt], d: usize, out: &mut [usize]) {
    for s in body {
        if let Stmt::For { id, body, .. } = s {
            if let Some(x) = out.get_mut(id.index()) {
                *x = d;
            }
            nest_depths(body, d + 1, out);
        }
    }
}

/// A value in a vectorised loop: the same for every lane, or one per lane.
#[derive(Clone, Copy)]
enum Val {
    S(Value),
    V(Value),
}

/// A condition: a scalar i8 (0 or 1), or a lane mask (all ones or zeros per lane).
#[derive(Clone, Copy)]
enum Cond {
    S(Value),
    V(Value),
}

/// The state of the vector loop being generated.
struct VecCtx {
    l: LoopId,
    /// The counter of lane 0 of the current unrolled copy.
    i: Value,
    copy: usize,
    /// Vector variables of the variables the loop defines.
    local: HashMap<VarId, Variable>,
    /// One vector accumulator per unrolled copy.
    accs: HashMap<VarId, (Accum, Vec<Variable>)>,
}

struct Gen<'a, 'f> {
    k: &'a LoopKernel,
    b: FunctionBuilder<'f>,
    module: &'a mut JITModule,
    helpers: &'a Helpers,
    t: Target,
    /// The scalar, vector and lane-mask types of the dtype.
    ty: Type,
    vty: Type,
    mty: Type,
    lanes: u8,
    elem: i64,
    ptr: Type,
    /// Nesting depth of each loop (0 outermost).
    depth: Vec<usize>,
    uses: Vec<usize>,
    bases: Vec<Option<Value>>,
    /// Bytes of each scratch buffer, which lives in the kernel's stack frame.
    scratch: Vec<Option<usize>>,
    /// Buffers the kernel stores to; loads of the others may be hoisted and shared.
    written: Vec<bool>,
    vars: Vec<Variable>,
    /// The counter of each loop while its body is generated.
    cur: Vec<Option<Value>>,
    refs: HashMap<(MathFn, Type), FuncRef>,
    vec: Option<VecCtx>,
}

use super::internal;

impl Gen<'_, '_> {
    fn body(&mut self) -> R<()> {
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.b.switch_to_block(entry);
        self.b.seal_block(entry);
        let params = self.b.block_params(entry).to_vec();
        let [args, begin, end] = params[..] else {
            return Err(internal("kernel signature is not (args, begin, end)"));
        };
        // Variables start as NaN, like the interpreter's, so a stray read shows.
        let nan = self.fconst(self.ty, f64::NAN);
        for _ in 0..self.k.vars.len() {
            let v = self.b.declare_var(self.ty);
            self.b.def_var(v, nan);
            self.vars.push(v);
        }
        let (reads, writes) = self.k.buffers();
        for w in &writes {
            if let Some(x) = self.written.get_mut(w.index()) {
                *x = true;
            }
        }
        for buf in reads.into_iter().chain(writes) {
            if self.bases.get(buf.index()).is_none() {
                return Err(internal(format!("buffer {buf} is not in the program")));
            }
            if let (None, Some(bytes)) = (self.bases[buf.index()], self.scratch[buf.index()]) {
                let size = u32::try_from(bytes).map_err(|_| internal("scratch buffer too large"))?;
                let slot = self.b.create_sized_stack_slot(cranelift_codegen::ir::StackSlotData::new(
                    cranelift_codegen::ir::StackSlotKind::ExplicitSlot,
                    size,
                    4,
                ));
                self.bases[buf.index()] = Some(self.b.ins().stack_addr(self.ptr, slot, 0));
            }
            if self.bases[buf.index()].is_none() {
                let flags = MemFlagsData::trusted().with_readonly();
                let off = i32::try_from(buf.index() as i64 * i64::from(self.ptr.bytes()))
                    .map_err(|_| internal("too many buffers for the argument array"))?;
                self.bases[buf.index()] = Some(self.b.ins().load(self.ptr, flags, args, off));
            }
        }
        let k = self.k;
        match (k.parallel_loop(), k.body.as_slice()) {
            (Some((id, extent)), [Stmt::For { body, .. }]) => {
                if extent > 0 {
                    let n = self.iconst(extent as i64);
                    let hi = self.b.ins().umin(end, n);
                    self.for_loop(id, extent, begin, hi, body)?;
                }
            }
            _ => self.stmts(&k.body)?,
        }
        self.b.ins().return_(&[]);
        Ok(())
    }

    fn iconst(&mut self, v: i64) -> Value {
        self.b.ins().iconst(types::I64, v)
    }

    /// A float constant of type `ty` (splatted for vectors), rounded as the interpreter does.
    fn fconst(&mut self, ty: Type, v: f64) -> Value {
        if ty.is_vector() {
            let s = self.fconst(ty.lane_type(), v);
            return self.b.ins().splat(ty, s);
        }
        if ty == types::F32 {
            self.b.ins().f32const(v as f32)
        } else {
            self.b.ins().f64const(v)
        }
    }

    fn stmts(&mut self, body: &[Stmt]) -> R<()> {
        body.iter().try_for_each(|s| self.stmt(s))
    }

    fn stmt(&mut self, s: &Stmt) -> R<()> {
        match s {
            Stmt::For {
                id, extent, body, ..
            } => {
                if self.vec.is_some() {
                    return Err(internal("a loop inside a vectorised loop"));
                }
                if *extent > 0 {
                    let lo = self.iconst(0);
                    let hi = self.iconst(*extent as i64);
                    self.for_loop(*id, *extent, lo, hi, body)?;
                }
                Ok(())
            }
            Stmt::Let { var, value } => {
                let v = self.expr(value)?;
                let local = self.vec.as_ref().and_then(|c| c.local.get(var).copied());
                match (local, v) {
                    (Some(lv), v) => {
                        let x = self.vector(v);
                        self.b.def_var(lv, x);
                    }
                    (None, Val::S(x)) => {
                        let var = self.var(*var)?;
                        self.b.def_var(var, x);
                    }
                    (None, Val::V(_)) => {
                        return Err(internal("a vector value for a scalar variable"))
                    }
                }
                Ok(())
            }
            Stmt::Update { var, op, value } => self.update(*var, *op, value),
            Stmt::Store { buf, index, value } => {
                let v = self.expr(value)?;
                let addr = self.addr(*buf, index)?;
                let x = match (&self.vec, v) {
                    (Some(_), v) => self.vector(v),
                    (None, Val::S(x)) => x,
                    (None, Val::V(_)) => {
                        return Err(internal("a vector store outside a vector loop"))
                    }
                };
                self.b
                    .ins()
                    .store(MemFlagsData::new().with_notrap(), x, addr, 0);
                Ok(())
            }
        }
    }

    fn var(&self, v: VarId) -> R<Variable> {
        self.vars
            .get(v.index())
            .copied()
            .ok_or_else(|| internal(format!("variable {v} is not declared")))
    }

    fn update(&mut self, var: VarId, op: Accum, value: &Expr) -> R<()> {
        // The variable to update, and whether it is a vector.
        let (target, vector) = match &self.vec {
            Some(c) => match (c.local.get(&var), c.accs.get(&var)) {
                (Some(&v), _) => (v, true),
                (None, Some((_, copies))) => (copies[c.copy.min(copies.len() - 1)], true),
                (None, None) => {
                    return Err(internal("update of a uniform variable in a vector loop"))
                }
            },
            None => (self.var(var)?, false),
        };
        let old = self.b.use_var(target);
        let old = if vector { Val::V(old) } else { Val::S(old) };
        let new = match (op, value) {
            (Accum::Sum, Expr::Binary(BinOp::Mul, x, y)) if self.t.fma => {
                let (x, y) = (self.expr(x)?, self.expr(y)?);
                self.fma(x, y, old)
            }
            _ => {
                let v = self.expr(value)?;
                let (a, b, ty) = self.unify(old, v);
                let r = self.accum(op, a, b);
                wrap(r, ty.is_vector())
            }
        };
        let new = match new {
            Val::V(x) => x,
            Val::S(x) if vector => self.b.ins().splat(self.vty, x),
            Val::S(x) => x,
        };
        self.b.def_var(target, new);
        Ok(())
    }

    fn accum(&mut self, op: Accum, a: Value, b: Value) -> Value {
        match op {
            Accum::Sum => self.b.ins().fadd(a, b),
            Accum::Max => self.b.ins().fmax(a, b),
            Accum::Min => self.b.ins().fmin(a, b),
        }
    }

    /// `for id in lo..hi`, vectorised when the options and the loop allow.
    fn for_loop(
        &mut self,
        id: LoopId,
        extent: usize,
        lo: Value,
        hi: Value,
        body: &[Stmt],
    ) -> R<()> {
        if self.t.vectorize && self.vec.is_none() && extent >= usize::from(self.lanes) {
            let max_index = if self.ty == types::F32 {
                1 << 24
            } else {
                1 << 53
            };
            if let Some(plan) = vectorize::plan(&self.uses, id, extent, body, max_index) {
                return self.vector_loop(id, lo, hi, body, &plan);
            }
        }
        self.counted_loop(lo, hi, 1, &mut |g, i| {
            g.set_counter(id, Some(i))?;
            g.stmts(body)
        })?;
        self.set_counter(id, None)
    }

    fn set_counter(&mut self, id: LoopId, v: Option<Value>) -> R<()> {
        *self
            .cur
            .get_mut(id.index())
            .ok_or_else(|| internal(format!("loop {id} is not declared")))? = v;
        Ok(())
    }

    /// `for (i = lo; i < hi; i += step) body(i)`; `hi - lo` must be a multiple of `step`
    /// or `step` 1. Counters are unsigned, so a huge `begin` runs nothing.
    fn counted_loop(
        &mut self,
        lo: Value,
        hi: Value,
        step: i64,
        body: &mut dyn FnMut(&mut Self, Value) -> R<()>,
    ) -> R<()> {
        let counter = self.b.declare_var(types::I64);
        self.b.def_var(counter, lo);
        let (head, exit) = (self.b.create_block(), self.b.create_block());
        let any = self.b.ins().icmp(IntCC::UnsignedLessThan, lo, hi);
        self.b.ins().brif(any, head, &[], exit, &[]);
        self.b.switch_to_block(head);
        let i = self.b.use_var(counter);
        body(self, i)?;
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.def_var(counter, next);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, next, hi);
        self.b.ins().brif(more, head, &[], exit, &[]);
        self.b.seal_block(head);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        Ok(())
    }

    /// The loop in vectors of `lanes` iterations (unrolled), the accumulators reduced
    /// into their scalar variables, then the remaining iterations scalar.
    fn vector_loop(
        &mut self,
        id: LoopId,
        lo: Value,
        hi: Value,
        body: &[Stmt],
        plan: &VecPlan,
    ) -> R<()> {
        let w = i64::from(self.lanes);
        let u = UNROLL as i64;
        let hi = self.b.ins().umax(hi, lo);
        let n = self.b.ins().isub(hi, lo);
        let n_main = self.b.ins().band_imm_s(n, !(u * w - 1));
        let main_end = self.b.ins().iadd(lo, n_main);
        let n_vec = self.b.ins().band_imm_s(n, !(w - 1));
        let vec_end = self.b.ins().iadd(lo, n_vec);

        let mut local = HashMap::new();
        for v in &plan.locals {
            local.insert(*v, self.b.declare_var(self.vty));
        }
        let mut accs = HashMap::new();
        for &(v, op) in &plan.accs {
            let init = self.fconst(self.vty, op.identity());
            let copies: Vec<Variable> = (0..UNROLL)
                .map(|_| {
                    let x = self.b.declare_var(self.vty);
                    self.b.def_var(x, init);
                    x
                })
                .collect();
            accs.insert(v, (op, copies));
        }
        self.vec = Some(VecCtx {
            l: id,
            i: lo,
            copy: 0,
            local,
            accs,
        });
        let run = |g: &mut Self, i: Value, copies: usize| -> R<()> {
            for c in 0..copies {
                let ic = if c == 0 {
                    i
                } else {
                    g.b.ins().iadd_imm_s(i, c as i64 * w)
                };
                if let Some(ctx) = g.vec.as_mut() {
                    ctx.i = ic;
                    ctx.copy = c;
                }
                g.stmts(body)?;
            }
            Ok(())
        };
        self.counted_loop(lo, main_end, u * w, &mut |g, i| run(g, i, UNROLL))?;
        self.counted_loop(main_end, vec_end, w, &mut |g, i| run(g, i, 1))?;
        let ctx = self
            .vec
            .take()
            .ok_or_else(|| internal("vector context lost"))?;

        if !plan.accs.is_empty() {
            // Combine only when the vector loop ran, so an empty loop leaves the scalar
            // exactly as the interpreter does (even its sign of zero).
            let (reduce, tail) = (self.b.create_block(), self.b.create_block());
            let ran = self.b.ins().icmp(IntCC::UnsignedLessThan, lo, vec_end);
            self.b.ins().brif(ran, reduce, &[], tail, &[]);
            self.b.switch_to_block(reduce);
            self.b.seal_block(reduce);
            for &(v, op) in &plan.accs {
                let copies = &ctx
                    .accs
                    .get(&v)
                    .ok_or_else(|| internal("accumulator lost"))?
                    .1;
                let mut x = self.b.use_var(copies[0]);
                for c in &copies[1..] {
                    let y = self.b.use_var(*c);
                    x = self.accum(op, x, y);
                }
                let r = self.hreduce(op, x);
                let var = self.var(v)?;
                let old = self.b.use_var(var);
                let new = self.accum(op, old, r);
                self.b.def_var(var, new);
            }
            self.b.ins().jump(tail, &[]);
            self.b.switch_to_block(tail);
            self.b.seal_block(tail);
        }
        self.counted_loop(vec_end, hi, 1, &mut |g, i| {
            g.set_counter(id, Some(i))?;
            g.stmts(body)
        })?;
        self.set_counter(id, None)
    }

    /// Combines the lanes of `v` with `op`, pairwise.
    fn hreduce(&mut self, op: Accum, v: Value) -> Value {
        let mut xs: Vec<Value> = (0..self.lanes)
            .map(|k| self.b.ins().extractlane(v, k))
            .collect();
        while xs.len() > 1 {
            let mut next = Vec::new();
            for pair in xs.chunks(2) {
                next.push(if let [a, b] = pair {
                    self.accum(op, *a, *b)
                } else {
                    pair[0]
                });
            }
            xs = next;
        }
        xs[0]
    }

    /// The counter of loop `l` (lane 0's in the vector loop).
    fn counter(&self, l: LoopId) -> R<Value> {
        if let Some(c) = &self.vec {
            if c.l == l {
                return Ok(c.i);
            }
        }
        self.cur
            .get(l.index())
            .copied()
            .flatten()
            .ok_or_else(|| internal(format!("loop {l} used outside its body")))
    }

    /// The byte address of element `a` of `buf`.
    fn addr(&mut self, buf: BufId, a: &Affine) -> R<Value> {
        self.addr_sized(buf, a, self.elem)
    }

    /// A gathered load (scalar: the vectoriser leaves loops with gathers alone): each
    /// index is loaded as an i64 (the executor widened and checked every entry before
    /// the kernel runs), scaled by its stride and added to the base address.
    /// In a vector loop the indices are the same for every lane (the vectoriser's plan
    /// checks that their addresses do not move with the loop), so the gather is a load
    /// from a base fixed for the loop, strided as its affine part says.
    fn gather(&mut self, buf: BufId, a: &Affine, ind: &[Indirect]) -> R<Val> {
        let pure = MemFlagsData::new().with_notrap().with_readonly().with_can_move();
        if let Some(c) = &self.vec {
            if ind.iter().any(|i| i.at.stride(c.l) != 0) {
                return Err(internal("a gather with per-lane indices in a vector loop"));
            }
        }
        let mut addr = self.addr(buf, a)?;
        for i in ind {
            let at = self.addr_sized(i.index, &i.at, 8)?;
            let v = self.b.ins().load(types::I64, pure, at, 0);
            let off = self.b.ins().imul_imm_s(v, i.stride.wrapping_mul(self.elem));
            addr = self.b.ins().iadd(addr, off);
        }
        let flags = if self.written.get(buf.index()).copied().unwrap_or(true) { MemFlagsData::new().with_notrap() } else { pure };
        let stride = self.vec.as_ref().map_or(0, |c| a.stride(c.l));
        Ok(self.load_at(addr, stride, flags))
    }

    /// The byte address of element `a` of `buf`, with elements of `elem` bytes.
    fn addr_sized(&mut self, buf: BufId, a: &Affine, elem: i64) -> R<Value> {
        let base = self
            .bases
            .get(buf.index())
            .copied()
            .flatten()
            .ok_or_else(|| internal(format!("buffer {buf} not loaded")))?;
        let mut terms = a.terms.clone();
        terms.sort_by_key(|t| self.depth.get(t.0.index()).copied().unwrap_or(0));
        let mut acc = if a.offset != 0 {
            self.b
                .ins()
                .iadd_imm_s(base, a.offset.wrapping_mul(elem))
        } else {
            base
        };
        for (l, s) in terms {
            let c = self.counter(l)?;
            let t = self.b.ins().imul_imm_s(c, s.wrapping_mul(elem));
            acc = self.b.ins().iadd(acc, t);
        }
        Ok(acc)
    }

    /// Splats a uniform value.
    fn vector(&mut self, v: Val) -> Value {
        match v {
            Val::S(x) => self.b.ins().splat(self.vty, x),
            Val::V(x) => x,
        }
    }

    /// Both operands as scalars, or both as vectors, with their type.
    fn unify(&mut self, a: Val, b: Val) -> (Value, Value, Type) {
        match (a, b) {
            (Val::S(x), Val::S(y)) => (x, y, self.ty),
            _ => (self.vector(a), self.vector(b), self.vty),
        }
    }

    fn expr(&mut self, e: &Expr) -> R<Val> {
        Ok(match e {
            Expr::Const(c) => Val::S(self.fconst(self.ty, *c)),
            Expr::Load(buf, a) => self.load(*buf, a)?,
            Expr::Gather(buf, a, ind) => self.gather(*buf, a, ind)?,
            Expr::Var(v) => match self.vec.as_ref().and_then(|c| c.local.get(v).copied()) {
                Some(lv) => Val::V(self.b.use_var(lv)),
                None => {
                    let var = self.var(*v)?;
                    Val::S(self.b.use_var(var))
                }
            },
            Expr::Index(l) => {
                let i = self.counter(*l)?;
                let x = self.b.ins().fcvt_from_sint(self.ty, i);
                match &self.vec {
                    Some(c) if c.l == *l => {
                        // Exact: the plan only allows extents the float represents.
                        let iota = self.iota();
                        let x = self.b.ins().splat(self.vty, x);
                        Val::V(self.b.ins().fadd(x, iota))
                    }
                    _ => Val::S(x),
                }
            }
            Expr::Unary(op, a) => {
                let x = self.expr(a)?;
                match x {
                    Val::S(x) => Val::S(self.unary(*op, x, self.ty)),
                    Val::V(x) => Val::V(self.unary(*op, x, self.vty)),
                }
            }
            Expr::Binary(BinOp::Add, a, b) if self.t.fma && (is_mul(a) || is_mul(b)) => {
                let (m, c) = if is_mul(a) { (a, b) } else { (b, a) };
                let Expr::Binary(_, x, y) = &**m else {
                    return Err(internal("not a product"));
                };
                let (x, y, c) = (self.expr(x)?, self.expr(y)?, self.expr(c)?);
                self.fma(x, y, c)
            }
            Expr::Binary(op, a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                let (x, y, ty) = self.unify(x, y);
                let r = self.binary(*op, x, y, ty);
                wrap(r, ty.is_vector())
            }
            Expr::Select(p, a, b) => {
                let c = self.pred(p)?;
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                match c {
                    Cond::S(c) => {
                        let (x, y, ty) = self.unify(x, y);
                        wrap(self.b.ins().select(c, x, y), ty.is_vector())
                    }
                    Cond::V(m) => {
                        let (x, y) = (self.vector(x), self.vector(y));
                        Val::V(self.select_mask(m, x, y))
                    }
                }
            }
        })
    }

    /// `x*y + z` with one rounding.
    fn fma(&mut self, x: Val, y: Val, z: Val) -> Val {
        if let (Val::S(x), Val::S(y), Val::S(z)) = (x, y, z) {
            return Val::S(self.b.ins().fma(x, y, z));
        }
        let (x, y, z) = (self.vector(x), self.vector(y), self.vector(z));
        Val::V(self.b.ins().fma(x, y, z))
    }

    /// `[0, 1, ..]` as a float vector.
    fn iota(&mut self) -> Value {
        let mut bytes = Vec::new();
        for k in 0..self.lanes {
            if self.ty == types::F32 {
                bytes.extend_from_slice(&f32::from(k).to_le_bytes());
            } else {
                bytes.extend_from_slice(&f64::from(k).to_le_bytes());
            }
        }
        let c = self.b.func.dfg.constants.insert(ConstantData::from(bytes));
        self.b.ins().vconst(self.vty, c)
    }

    fn load(&mut self, buf: BufId, a: &Affine) -> R<Val> {
        // A buffer this kernel does not write is constant while it runs (buffers never
        // overlap), and every address the code computes is in bounds (the program is
        // verified and empty loops emit nothing), so such loads are pure: Cranelift may
        // hoist them out of loops and merge repeats.
        let flags = if self.written.get(buf.index()).copied().unwrap_or(true) {
            MemFlagsData::new().with_notrap()
        } else {
            MemFlagsData::new()
                .with_notrap()
                .with_readonly()
                .with_can_move()
        };
        let addr = self.addr(buf, a)?;
        let stride = self.vec.as_ref().map_or(0, |c| a.stride(c.l));
        Ok(self.load_at(addr, stride, flags))
    }

    /// A load at `addr` (lane 0's element): one value for every lane (stride 0), a vector
    /// (stride 1), or lanes `stride` elements apart.
    fn load_at(&mut self, addr: Value, stride: i64, flags: MemFlagsData) -> Val {
        match stride {
            0 => Val::S(self.b.ins().load(self.ty, flags, addr, 0)),
            1 => Val::V(self.b.ins().load(self.vty, flags, addr, 0)),
            s => {
                let first = self.b.ins().load(self.ty, flags, addr, 0);
                let mut v = self.b.ins().scalar_to_vector(self.vty, first);
                for k in 1..self.lanes {
                    let at = self
                        .b
                        .ins()
                        .iadd_imm_s(addr, s.wrapping_mul(i64::from(k)).wrapping_mul(self.elem));
                    let x = self.b.ins().load(self.ty, flags, at, 0);
                    v = self.b.ins().insertlane(v, x, k);
                }
                Val::V(v)
            }
        }
    }

    /// Selects lanes of `x` where `mask` is set, else of `y`.
    fn select_mask(&mut self, mask: Value, x: Value, y: Value) -> Value {
        let m = self.b.ins().bitcast(self.vty, MemFlagsData::new(), mask);
        self.b.ins().bitselect(m, x, y)
    }

    fn unary(&mut self, op: UnOp, x: Value, ty: Type) -> Value {
        match op {
            UnOp::Neg => self.b.ins().fneg(x),
            UnOp::Abs => self.b.ins().fabs(x),
            UnOp::Sqrt => self.b.ins().sqrt(x),
            UnOp::Rsqrt => {
                let one = self.fconst(ty, 1.0);
                let s = self.b.ins().sqrt(x);
                self.b.ins().fdiv(one, s)
            }
            UnOp::Relu => {
                // `if x > 0 { x } else { 0 }`: NaN and -0 give +0, as in the interpreter.
                let zero = self.fconst(ty, 0.0);
                let c = self.b.ins().fcmp(FloatCC::GreaterThan, x, zero);
                if ty.is_vector() {
                    self.select_mask(c, x, zero)
                } else {
                    self.b.ins().select(c, x, zero)
                }
            }
            UnOp::Exp => self.math(MathFn::Exp, x, None, ty),
            UnOp::Log => self.math(MathFn::Log, x, None, ty),
            UnOp::Tanh => self.math(MathFn::Tanh, x, None, ty),
            UnOp::Sigmoid => self.math(MathFn::Sigmoid, x, None, ty),
            UnOp::Sin => self.math(MathFn::Sin, x, None, ty),
            UnOp::Cos => self.math(MathFn::Cos, x, None, ty),
        }
    }

    fn binary(&mut self, op: BinOp, x: Value, y: Value, ty: Type) -> Value {
        match op {
            BinOp::Add => self.b.ins().fadd(x, y),
            BinOp::Sub => self.b.ins().fsub(x, y),
            BinOp::Mul => self.b.ins().fmul(x, y),
            BinOp::Div => self.b.ins().fdiv(x, y),
            BinOp::Max => self.b.ins().fmax(x, y),
            BinOp::Min => self.b.ins().fmin(x, y),
            BinOp::Pow => self.math(MathFn::Pow, x, Some(y), ty),
            BinOp::Lmul(m) => super::math::emit_lmul(&mut self.b, x, y, ty, m),
        }
    }

    /// A transcendental function of scalars or vectors: the single place the math
    /// library plugs in.
    fn math(&mut self, f: MathFn, x: Value, y: Option<Value>, ty: Type) -> Value {
        if !self.t.inline_math {
            return self.math_call(f, x, y, ty);
        }
        let fast = super::math::emit(&mut self.b, f, x, y, ty);
        if !matches!(f, MathFn::Sin | MathFn::Cos) {
            return fast;
        }
        // The inline reduction covers |x| up to a limit and gives NaN beyond it; there,
        // rare in practice, every lane goes through the std function instead.
        let limit = super::math::trig_limit(ty.lane_type() == types::F64);
        let ax = self.b.ins().fabs(x);
        let lim = self.fconst(ty, limit);
        let far = self.b.ins().fcmp(FloatCC::GreaterThan, ax, lim);
        let any = if ty.is_vector() { self.b.ins().vany_true(far) } else { far };
        let (slow, join) = (self.b.create_block(), self.b.create_block());
        let out = self.b.append_block_param(join, ty);
        self.b.ins().brif(any, slow, &[], join, &[fast.into()]);
        self.b.switch_to_block(slow);
        self.b.seal_block(slow);
        let exact = self.math_call(f, x, y, ty);
        self.b.ins().jump(join, &[exact.into()]);
        self.b.switch_to_block(join);
        self.b.seal_block(join);
        out
    }

    /// Calls the Rust helper, once per lane for vectors.
    fn math_call(&mut self, f: MathFn, x: Value, y: Option<Value>, ty: Type) -> Value {
        let lane = ty.lane_type();
        let fr = match self.refs.get(&(f, lane)) {
            Some(r) => *r,
            None => {
                let id = self.helpers.get(f, lane);
                let r = self.module.declare_func_in_func(id, self.b.func);
                self.refs.insert((f, lane), r);
                r
            }
        };
        let call = |g: &mut Self, x: Value, y: Option<Value>| {
            let args: Vec<Value> = std::iter::once(x).chain(y).collect();
            let inst = g.b.ins().call(fr, &args);
            g.b.inst_results(inst)[0]
        };
        if !ty.is_vector() {
            return call(self, x, y);
        }
        let mut out = None;
        for k in 0..ty.lane_count() as u8 {
            let xk = self.b.ins().extractlane(x, k);
            let yk = y.map(|y| self.b.ins().extractlane(y, k));
            let r = call(self, xk, yk);
            out = Some(match out {
                None => self.b.ins().scalar_to_vector(ty, r),
                Some(v) => self.b.ins().insertlane(v, r, k),
            });
        }
        out.unwrap_or(x)
    }

    fn pred(&mut self, p: &Pred) -> R<Cond> {
        Ok(match p {
            Pred::Cmp(op, a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                let (x, y, ty) = self.unify(x, y);
                let c = self.b.ins().fcmp(float_cc(*op), x, y);
                if ty.is_vector() {
                    Cond::V(c)
                } else {
                    Cond::S(c)
                }
            }
            Pred::And(ps) | Pred::Or(ps) => {
                let and = matches!(p, Pred::And(_));
                let mut cs = Vec::with_capacity(ps.len());
                for q in ps {
                    cs.push(self.pred(q)?);
                }
                if cs.iter().all(|c| matches!(c, Cond::S(_))) {
                    let mut acc = self.b.ins().iconst(types::I8, i64::from(and));
                    for c in cs {
                        let Cond::S(c) = c else { continue };
                        acc = if and {
                            self.b.ins().band(acc, c)
                        } else {
                            self.b.ins().bor(acc, c)
                        };
                    }
                    Cond::S(acc)
                } else {
                    let mut acc: Option<Value> = None;
                    for c in cs {
                        let m = self.mask(c);
                        acc = Some(match acc {
                            None => m,
                            Some(a) if and => self.b.ins().band(a, m),
                            Some(a) => self.b.ins().bor(a, m),
                        });
                    }
                    Cond::V(acc.ok_or_else(|| internal("empty vector condition"))?)
                }
            }
            Pred::Not(q) => match self.pred(q)? {
                Cond::S(c) => Cond::S(self.b.ins().bxor_imm_s(c, 1)),
                Cond::V(m) => Cond::V(self.b.ins().bnot(m)),
            },
        })
    }

    /// A condition as a lane mask.
    fn mask(&mut self, c: Cond) -> Value {
        match c {
            Cond::V(m) => m,
            Cond::S(c) => {
                let lane = self.mty.lane_type();
                let (ones, zero) = (self.b.ins().iconst(lane, -1), self.b.ins().iconst(lane, 0));
                let w = self.b.ins().select(c, ones, zero);
                self.b.ins().splat(self.mty, w)
            }
        }
    }
}

fn wrap(v: Value, vector: bool) -> Val {
    if vector {
        Val::V(v)
    } else {
        Val::S(v)
    }
}

fn is_mul(e: &Expr) -> bool {
    matches!(e, Expr::Binary(BinOp::Mul, ..))
}

/// The interpreter compares with Rust's operators: all false on NaN except `!=`.
fn float_cc(op: CmpOp) -> FloatCC {
    match op {
        CmpOp::Lt => FloatCC::LessThan,
        CmpOp::Le => FloatCC::LessThanOrEqual,
        CmpOp::Gt => FloatCC::GreaterThan,
        CmpOp::Ge => FloatCC::GreaterThanOrEqual,
        CmpOp::Eq => FloatCC::Equal,
        CmpOp::Ne => FloatCC::NotEqual,
    }
}
