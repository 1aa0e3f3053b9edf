//! Executed slicing: a plan's slice loops run as a driver around compiled pieces.
//!
//! The plan's program (one TIR statement per step) is cut along its slice loops into a
//! tree: steps outside every loop run once, and each loop runs its block of steps once
//! per chunk of its sliced index, with inner loops nested inside. Every run of steps is
//! a TIR function compiled through the ordinary pipeline, so every backend runs it,
//! with the axes of the enclosing loops' classes at their chunk lengths. Per chunk, the
//! driver hands the block views of what it reads at the chunk's offsets and combines
//! the block's results into arrays the loop's chunks share: written at the chunk's
//! offsets when they carry the sliced axis, summed (or max/min-combined) when their
//! statement reduces over it.
//!
//! Chunks are as large as the memory limit allows, measured on the compiled pieces.
//! When the limit allows one chunk per thread, the chunks of the outermost loops run in
//! parallel, each group of them with its own partial results, combined at the end;
//! otherwise they run one after another, each on every thread.
//!
//! The planner's loops may overlap without nesting (it ranges each loop over the steps
//! that touch its index). The driver widens one of two such loops to contain the other,
//! choosing one that reads no partial result inside its range; steps it takes in run
//! once per chunk of the widened loop.

use super::{ExecError, Executable};
use crate::backend::Backend;
use crate::eval::Scalar;
use crate::loops::Program;
use crate::plan::{slice_class, Plan};
use crate::tir::{self, Bindings, Expr, Function, IndexId, ReduceOp, Size, TensorId, TensorKind};
use ndarray::{ArrayD, ArrayViewD, IxDyn, Slice as Range, Zip};
use std::sync::Mutex;

/// One slice loop as run: its index, its extent and the chunk per iteration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceLoop {
    pub index: String,
    pub extent: usize,
    pub chunk: usize,
}

/// How a sliced executable runs its slices.
#[derive(Clone, Debug, PartialEq)]
pub struct Slicing {
    pub loops: Vec<SliceLoop>,
    /// Combinations of one chunk of every loop (extent / chunk rounded up, multiplied).
    pub slices: usize,
    /// Chunks of an outermost loop in flight at once: 1 runs them one after another,
    /// each on every thread.
    pub parallel: usize,
    /// Peak bytes of intermediates that the driver and its pieces hold (inputs and
    /// outputs not included), measured on the compiled pieces.
    pub temp_bytes: usize,
    /// FLOPs of one call as run: each piece's planned FLOPs times its runs (a loop's
    /// recomputed steps included).
    pub flops: f64,
    /// The memory limit it was made for.
    pub limit: u64,
}

/// A part of a block of the plan's steps.
enum Item {
    /// Steps run once per iteration of the enclosing loops, compiled for every
    /// combination of their chunk lengths: keyed by the length of every loop's index
    /// (the extent for loops that do not enclose it).
    Once {
        range: std::ops::Range<usize>,
        reads: Vec<TensorId>,
        writes: Vec<TensorId>,
        execs: Vec<(Vec<usize>, Executable)>,
        /// The FLOPs of each of `execs`.
        flops: Vec<f64>,
    },
    /// A slice loop over class `class` around a block.
    Loop { class: usize, reads: Vec<TensorId>, writes: Vec<TensorId>, combine: Vec<Option<ReduceOp>>, body: Vec<Item> },
}

impl Item {
    fn reads(&self) -> &[TensorId] {
        match self {
            Item::Once { reads, .. } | Item::Loop { reads, .. } => reads,
        }
    }

    fn writes(&self) -> &[TensorId] {
        match self {
            Item::Once { writes, .. } | Item::Loop { writes, .. } => writes,
        }
    }
}

/// A plan's program run loop by loop.
pub(crate) struct Sliced {
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
    /// Concrete shapes of the plan's tensors.
    shapes: Vec<Vec<usize>>,
    /// The loop (class) of each axis of each tensor.
    class_of: Vec<Vec<Option<usize>>>,
    extents: Vec<usize>,
    /// Constants with a sliced axis, read as values.
    consts: Vec<(TensorId, std::sync::Arc<Vec<f64>>)>,
    items: Vec<Item>,
    pub(crate) info: Slicing,
}

fn unsupported(m: impl Into<String>) -> ExecError {
    ExecError::Unavailable(format!("cannot run this plan's slice loops: {}", m.into()))
}

/// Whether `e` uses index `i` as a number, or reduces over it inline.
fn uses_index(e: &Expr, i: IndexId) -> bool {
    fn cond(c: &tir::Cond, i: IndexId) -> bool {
        match c {
            tir::Cond::Cmp(_, a, b) => uses_index(a, i) || uses_index(b, i),
            tir::Cond::And(cs) | tir::Cond::Or(cs) => cs.iter().any(|c| cond(c, i)),
            tir::Cond::Not(c) => cond(c, i),
        }
    }
    match e {
        Expr::Index(j) => *j == i,
        Expr::Lit(_) | Expr::Size(_) | Expr::Access(..) | Expr::Gather(..) => false,
        Expr::Neg(a) => uses_index(a, i),
        Expr::Add(xs) | Expr::Mul(xs) | Expr::Call(_, xs) => xs.iter().any(|x| uses_index(x, i)),
        Expr::Sub(a, b) | Expr::Div(a, b) => uses_index(a, i) || uses_index(b, i),
        Expr::Select(c, a, b) => cond(c, i) || uses_index(a, i) || uses_index(b, i),
        Expr::Reduce(_, ids, body) => ids.contains(&i) || uses_index(body, i),
    }
}

/// The tensors `stmts` read, in order of first appearance.
fn reads_of(stmts: &[tir::Stmt]) -> Vec<TensorId> {
    let mut out = Vec::new();
    for s in stmts {
        let mut r = Vec::new();
        s.rhs.tensors(&mut r);
        for t in r {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// The statements `range` of `prog` as a function of `reads` that returns `writes`;
/// axes of tensors (and ranges of indices) with a chunk size get that size.
fn sub_function(
    prog: &Function,
    range: std::ops::Range<usize>,
    reads: &[TensorId],
    writes: &[TensorId],
    axis_size: &dyn Fn(TensorId, usize) -> Option<usize>,
    index_size: &dyn Fn(usize, IndexId) -> Option<usize>,
) -> Function {
    let stmts = &prog.stmts[range.clone()];
    let mut order: Vec<TensorId> = reads.to_vec();
    let mut consts = Vec::new();
    for t in reads_of(stmts) {
        if !order.contains(&t) && prog.tensor(t).kind == TensorKind::Const {
            order.push(t);
            consts.push(t);
        }
    }
    order.extend(stmts.iter().map(|s| s.target));
    let mut map = vec![None; prog.tensors.len()];
    for (k, t) in order.iter().enumerate() {
        map[t.index()] = Some(TensorId(k as u32));
    }
    let id = |t: TensorId| map[t.index()].unwrap_or(t);
    let tensors = order
        .iter()
        .map(|&t| {
            let mut d = prog.tensor(t).clone();
            d.kind = if reads.contains(&t) {
                TensorKind::Input
            } else if consts.contains(&t) {
                TensorKind::Const
            } else if writes.contains(&t) {
                TensorKind::Output
            } else {
                TensorKind::Temp
            };
            for a in 0..d.shape.len() {
                if let Some(c) = axis_size(t, a) {
                    d.shape[a] = Size::lit(c as u64);
                    if let Some(f) = d.factors.get_mut(a) {
                        *f = vec![Size::lit(c as u64)];
                    }
                }
            }
            d
        })
        .collect();
    let stmts = stmts
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let mut s = s.clone();
            s.target = id(s.target);
            for (i, v) in s.indices.iter_mut().enumerate() {
                if let Some(c) = index_size(range.start + k, IndexId(i as u32)) {
                    v.range = Size::lit(c as u64);
                }
            }
            s.rhs = s.rhs.map_nodes(&mut |e| match e {
                Expr::Access(t, pos) => Expr::Access(id(t), pos),
                e => e,
            });
            s
        })
        .collect();
    let constants = prog
        .constants
        .iter()
        .filter(|c| consts.contains(&c.tensor))
        .map(|c| tir::Constant { tensor: id(c.tensor), ..c.clone() })
        .collect();
    Function {
        name: prog.name.clone(),
        dtype: prog.dtype,
        dims: prog.dims.clone(),
        tensors,
        inputs: reads.iter().map(|&t| id(t)).collect(),
        indices: Vec::new(),
        outputs: writes.iter().map(|&t| id(t)).collect(),
        constants,
        stmts,
        span: prog.span,
    }
}

/// A run of steps compiled, with the FLOPs of its plan.
fn compile(f: &Function, b: &Bindings, backend: Backend) -> Result<(Executable, f64), ExecError> {
    use crate::pipeline::{self, PipelineError};
    let opts = pipeline::Options { backend, ..Default::default() };
    let out = pipeline::compile(f, b, f.dtype, &opts).map_err(|e| match e {
        PipelineError::Exec(e) => e,
        e => ExecError::Internal(format!("a piece of a sliced plan does not compile: {e}")),
    })?;
    let flops = out.plan.flops;
    let exec = out.exec.ok_or_else(|| ExecError::Unavailable(format!("the {backend} backend runs no sliced plans")))?;
    Ok((exec, flops))
}

/// What the driver knows while it builds the tree and sizes the chunks.
struct Ctx<'a> {
    prog: &'a Function,
    b: &'a Bindings,
    backend: Backend,
    shapes: Vec<Vec<usize>>,
    class_of: Vec<Vec<Option<usize>>>,
    /// For each statement, its indices in a class and the class.
    index_class: Vec<Vec<(IndexId, usize)>>,
    extents: Vec<usize>,
    elem: usize,
}

impl Ctx<'_> {
    /// Bytes of `t` with each class axis at `lens` (extents outside its loops).
    fn bytes(&self, t: TensorId, lens: &[usize]) -> usize {
        let mut n = self.elem;
        for (a, &s) in self.shapes[t.index()].iter().enumerate() {
            n = n.saturating_mul(self.class_of[t.index()][a].map_or(s, |k| lens[k].min(s)));
        }
        n
    }

    fn has_class(&self, t: TensorId) -> bool {
        self.class_of[t.index()].iter().any(|c| c.is_some())
    }

    /// What steps `range` read from before it: tensors, and constants with a class axis.
    fn reads(&self, range: &std::ops::Range<usize>) -> Vec<TensorId> {
        let stmts = &self.prog.stmts[range.clone()];
        reads_of(stmts)
            .into_iter()
            .filter(|t| !stmts.iter().any(|s| s.target == *t))
            .filter(|&t| self.prog.tensor(t).kind != TensorKind::Const || self.has_class(t))
            .collect()
    }

    /// What steps `range` define that later steps read or the function returns.
    fn writes(&self, range: &std::ops::Range<usize>) -> Vec<TensorId> {
        let later = reads_of(&self.prog.stmts[range.end..]);
        self.prog.stmts[range.clone()]
            .iter()
            .map(|s| s.target)
            .filter(|t| self.prog.outputs.contains(t) || later.contains(t))
            .collect()
    }

    /// Whether statement `k` reduces over the index of loop `class`.
    fn reduces(&self, k: usize, class: usize) -> bool {
        self.index_class[k].iter().any(|&(i, c)| c == class && self.prog.stmts[k].reduced.contains(&i))
    }

    /// Whether a loop over `class` may run around steps `lo..=hi`: no step reads a
    /// result reduced over the loop's index before the loop ends.
    fn valid(&self, class: usize, lo: usize, hi: usize) -> bool {
        (lo..=hi).all(|k| {
            !self.reduces(k, class)
                || !self.prog.stmts[k + 1..=hi].iter().any(|s| {
                    let mut r = Vec::new();
                    s.rhs.tensors(&mut r);
                    r.contains(&self.prog.stmts[k].target)
                })
        })
    }

    /// The items of steps `lo..hi` with the (laminar) loops `ranges` inside them.
    fn build(&self, lo: usize, hi: usize, ranges: &[(usize, usize, usize)]) -> Vec<Item> {
        let mut items = Vec::new();
        let (mut k, mut start) = (lo, lo);
        let once = |r: std::ops::Range<usize>| Item::Once {
            reads: self.reads(&r),
            writes: self.writes(&r),
            range: r,
            execs: Vec::new(),
            flops: Vec::new(),
        };
        while k < hi {
            let outer = ranges.iter().filter(|r| r.1 == k).max_by_key(|r| (r.2, std::cmp::Reverse(r.0)));
            let Some(&(class, a, b)) = outer else {
                k += 1;
                continue;
            };
            if start < k {
                items.push(once(start..k));
            }
            let inner: Vec<_> = ranges.iter().copied().filter(|r| r.0 != class && r.1 >= a && r.2 <= b).collect();
            let range = a..b + 1;
            let writes = self.writes(&range);
            let combine = writes
                .iter()
                .map(|&t| {
                    let k = range.clone().find(|&k| self.prog.stmts[k].target == t)?;
                    self.reduces(k, class).then_some(self.prog.stmts[k].op)
                })
                .collect();
            items.push(Item::Loop { class, reads: self.reads(&range), writes, combine, body: self.build(a, b + 1, &inner) });
            k = b + 1;
            start = k;
        }
        if start < hi {
            items.push(once(start..hi));
        }
        items
    }

    /// Compiles every run of steps for every combination of the chunk lengths of the
    /// loops around it (`active`).
    fn compile(&self, items: &mut [Item], active: &[usize], chunks: &[usize]) -> Result<(), ExecError> {
        for item in items {
            match item {
                Item::Once { range, reads, writes, execs, flops } => {
                    execs.clear();
                    flops.clear();
                    let mut combos = vec![self.extents.clone()];
                    for &k in active {
                        let mut sizes = vec![chunks[k]];
                        if !self.extents[k].is_multiple_of(chunks[k]) {
                            sizes.push(self.extents[k] % chunks[k]);
                        }
                        combos = combos
                            .into_iter()
                            .flat_map(|v| {
                                sizes.iter().map(move |&s| {
                                    let mut v = v.clone();
                                    v[k] = s;
                                    v
                                })
                            })
                            .collect();
                    }
                    for lens in combos {
                        let on = |k: usize| active.contains(&k).then_some(lens[k]);
                        let axis_size = |t: TensorId, a: usize| self.class_of[t.index()][a].and_then(on);
                        let index_size =
                            |s: usize, i: IndexId| self.index_class[s].iter().find(|(x, _)| *x == i).and_then(|&(_, c)| on(c));
                        let f = sub_function(self.prog, range.clone(), reads, writes, &axis_size, &index_size);
                        let (exec, f) = compile(&f, self.b, self.backend)?;
                        execs.push((lens.clone(), exec));
                        flops.push(f);
                    }
                }
                Item::Loop { class, body, .. } => {
                    let inner: Vec<usize> = active.iter().copied().chain([*class]).collect();
                    self.compile(body, &inner, chunks)?;
                }
            }
        }
        Ok(())
    }

    /// FLOPs of a block run once per iteration of the loops `active`: each piece's FLOPs
    /// times how many chunks of its lengths the loops have.
    fn flops(&self, items: &[Item], active: &[usize], chunks: &[usize]) -> f64 {
        items
            .iter()
            .map(|item| match item {
                Item::Once { execs, flops, .. } => execs
                    .iter()
                    .zip(flops)
                    .map(|((lens, _), f)| {
                        let runs: f64 = active
                            .iter()
                            .map(|&k| if lens[k] == chunks[k] { (self.extents[k] / chunks[k]) as f64 } else { 1.0 })
                            .product();
                        runs * f
                    })
                    .sum::<f64>(),
                Item::Loop { class, body, .. } => {
                    let inner: Vec<usize> = active.iter().copied().chain([*class]).collect();
                    self.flops(body, &inner, chunks)
                }
            })
            .sum()
    }

    /// Peak bytes a block holds, beyond what encloses it, with chunks `chunks` and `p`
    /// chunks of outermost loops in flight. `temps` gives a run of steps' own memory.
    #[allow(clippy::too_many_arguments)]
    fn peak(
        &self,
        items: &[Item],
        lens: &[usize],
        hand_up: &[TensorId],
        top: bool,
        p: usize,
        chunks: &[usize],
        temps: &dyn Fn(&Item, &[usize]) -> usize,
    ) -> usize {
        // At the top, outputs are the call's outputs, not intermediates.
        let count = |t: &TensorId| if top && self.prog.outputs.contains(t) { 0 } else { self.bytes(*t, lens) };
        let mut own: Vec<TensorId> = Vec::new();
        let mut peak = 0usize;
        for (n, item) in items.iter().enumerate() {
            let held: usize = own.iter().map(count).sum();
            let cost = match item {
                Item::Once { reads, writes, .. } => {
                    // Views cut by a loop are copied when a piece needs them contiguous;
                    // what this block computed is whole at its chunk lengths.
                    let cut = |t: &&TensorId| {
                        !own.contains(t)
                            && self.class_of[t.index()].iter().any(|c| c.is_some_and(|k| lens[k] < self.extents[k]))
                    };
                    let copies: usize = reads.iter().filter(cut).map(|t| self.bytes(*t, lens)).sum();
                    copies + writes.iter().map(count).sum::<usize>() + temps(item, lens)
                }
                Item::Loop { class, writes, combine, body, .. } => {
                    let full: usize = writes.iter().map(count).sum();
                    let mut inner = lens.to_vec();
                    inner[*class] = chunks[*class];
                    let per = self.peak(body, &inner, writes, false, 1, chunks, temps);
                    let slices = self.extents[*class].div_ceil(chunks[*class].max(1));
                    let q = if top { p.min(slices).max(1) } else { 1 };
                    let partials: usize = if q > 1 {
                        writes.iter().zip(combine).filter(|(_, c)| c.is_some()).map(|(t, _)| self.bytes(*t, lens)).sum()
                    } else {
                        0
                    };
                    full.saturating_add(q.saturating_mul(partials)).saturating_add(q.saturating_mul(per))
                }
            };
            peak = peak.max(held.saturating_add(cost));
            own.extend(item.writes().iter().copied());
            let later: Vec<TensorId> = items[n + 1..].iter().flat_map(|i| i.reads().iter().copied()).collect();
            own.retain(|t| later.contains(t) || hand_up.contains(t));
        }
        peak
    }

    /// Chunks whose estimated peak fits `limit` with `p` in flight: from whole loops,
    /// each step halving the chunk that lowers the estimate most.
    #[allow(clippy::too_many_arguments)]
    fn choose(
        &self,
        items: &[Item],
        base: usize,
        limit: usize,
        p: usize,
        want: usize,
        start: &[usize],
        temps: &dyn Fn(&Item, &[usize]) -> usize,
    ) -> Option<Vec<usize>> {
        let total = |c: &[usize]| base.saturating_add(self.peak(items, &self.extents, &self.prog.outputs, true, p, c, temps));
        let mut c = start.to_vec();
        loop {
            if total(&c) <= limit {
                // Outermost loops get `want` chunks where they can (one per thread and
                // rank): smaller chunks only lower the peak.
                for item in items {
                    if let Item::Loop { class, .. } = item {
                        while self.extents[*class].div_ceil(c[*class]) < want && c[*class] > 1 {
                            c[*class] = c[*class].div_ceil(2);
                        }
                    }
                }
                return Some(c);
            }
            let best = (0..c.len())
                .filter(|&k| c[k] > 1)
                .map(|k| {
                    let mut d = c.clone();
                    d[k] = d[k].div_ceil(2);
                    (total(&d), std::cmp::Reverse(c[k]), k)
                })
                .min()?;
            c[best.2] = c[best.2].div_ceil(2);
        }
    }
}

/// The first compiled run of steps inside a loop (the body of one slice), else any.
fn body_program(items: &[Item], inside: bool) -> Option<&Program> {
    for item in items {
        match item {
            Item::Once { execs, .. } if inside => return execs.first().map(|(_, e)| &e.program),
            Item::Loop { body, .. } => {
                if let Some(p) = body_program(body, true) {
                    return Some(p);
                }
            }
            _ => {}
        }
    }
    None
}

impl Sliced {
    /// The plan's slice loops as a driver around compiled pieces, with chunks that keep
    /// the intermediates within `limit` bytes. Also returns the loop program of one
    /// slice's steps (what `emit --stage loops` shows of a sliced call).
    pub(crate) fn new(
        plan: &Plan,
        b: &Bindings,
        backend: Backend,
        limit: u64,
        ranks: usize,
    ) -> Result<(Sliced, Program), ExecError> {
        let prog = &plan.program;
        if plan.slices.is_empty() {
            return Err(ExecError::Internal("a sliced executable for a plan without slice loops".into()));
        }
        let shapes: Vec<Vec<usize>> = (0..prog.tensors.len())
            .map(|k| prog.shape(TensorId(k as u32), b))
            .collect::<Result<_, _>>()
            .map_err(|e| ExecError::Internal(format!("shapes of the sliced plan: {e:?}")))?;
        let classes: Vec<_> = plan.slices.iter().map(|s| slice_class(plan, s)).collect();
        let mut class_of: Vec<Vec<Option<usize>>> = shapes.iter().map(|s| vec![None; s.len()]).collect();
        for (k, c) in classes.iter().enumerate() {
            for &(t, a) in &c.axes {
                class_of[t.index()][a] = Some(k);
            }
        }
        let n = prog.stmts.len();
        let name = |c: usize| plan.slices[c].indices.join(", ");
        // Slicing is exact when each statement has one index per class, only at plain
        // positions, never used as a number or reduced inside an expression, and kept
        // or reduced by the statement itself.
        let mut index_class: Vec<Vec<(IndexId, usize)>> = vec![Vec::new(); n];
        for (k, s) in prog.stmts.iter().enumerate() {
            for (c, class) in classes.iter().enumerate() {
                match class.indices[k].as_slice() {
                    [] => {}
                    [i] => index_class[k].push((*i, c)),
                    _ => return Err(unsupported(format!("step {k} pairs two indices of the loop over {}", name(c)))),
                }
            }
            for &(i, c) in &index_class[k] {
                let index = &s.indices[i.index()].name;
                if uses_index(&s.rhs, i) {
                    return Err(unsupported(format!(
                        "step {k} uses the sliced index `{index}` as a number or reduces it inside an expression"
                    )));
                }
                let mut grouped = s.lhs.iter().any(|p| p.len() > 1 && p.contains(&i));
                s.rhs.for_each_access(&mut |_, pos| grouped |= pos.iter().any(|p| p.len() > 1 && p.contains(&i)));
                if grouped {
                    return Err(unsupported(format!("the sliced index `{index}` of step {k} is part of a grouped position")));
                }
                if !s.lhs.iter().any(|p| p.as_slice() == [i]) && !s.reduced.contains(&i) {
                    return Err(unsupported(format!(
                        "step {k} neither keeps nor reduces the sliced index `{index}` ({})",
                        name(c)
                    )));
                }
            }
        }
        let ctx = Ctx {
            prog,
            b,
            backend,
            shapes,
            class_of,
            index_class,
            extents: plan.slices.iter().map(|s| s.count as usize).collect(),
            elem: prog.dtype.size_of(),
        };
        // Loops that overlap without nesting: widen one to contain the other.
        let mut ranges: Vec<(usize, usize, usize)> =
            plan.slices.iter().enumerate().map(|(k, s)| (k, s.first, s.last.min(n - 1))).collect();
        let mut changed = true;
        while changed {
            changed = false;
            for x in 0..ranges.len() {
                for y in 0..ranges.len() {
                    let (a, b) = (ranges[x], ranges[y]);
                    if a.1 < b.1 && b.1 <= a.2 && a.2 < b.2 {
                        if ctx.valid(a.0, a.1, b.2) {
                            ranges[x].2 = b.2;
                        } else if ctx.valid(b.0, a.1, b.2) {
                            ranges[y].1 = a.1;
                        } else {
                            return Err(unsupported(format!(
                                "the loops over {} and {} overlap, and neither can contain the other",
                                name(a.0),
                                name(b.0)
                            )));
                        }
                        changed = true;
                    }
                }
            }
        }
        if let Some(r) = ranges.iter().find(|r| !ctx.valid(r.0, r.1, r.2)) {
            return Err(unsupported(format!("a result reduced over {} is read inside its loop", name(r.0))));
        }
        let mut items = ctx.build(0, n, &ranges);
        let consts: Vec<(TensorId, std::sync::Arc<Vec<f64>>)> =
            prog.constants.iter().filter(|c| ctx.has_class(c.tensor)).map(|c| (c.tensor, c.values.clone())).collect();
        let base: usize = consts.iter().map(|(t, _)| ctx.bytes(*t, &ctx.extents)).sum();
        let limit_bytes = usize::try_from(limit).unwrap_or(usize::MAX);
        let threads = tessera_runtime::threads();
        // Before compiling: a run of steps holds the results it defines and keeps.
        let estimate = |item: &Item, lens: &[usize]| match item {
            Item::Once { range, writes, .. } => prog.stmts[range.clone()]
                .iter()
                .map(|s| s.target)
                .filter(|t| !writes.contains(t))
                .map(|t| ctx.bytes(t, lens))
                .sum(),
            Item::Loop { .. } => 0,
        };
        // Compiled: what the piece's memory plan holds (slots and tiles).
        let measured = |item: &Item, lens: &[usize]| match item {
            Item::Once { execs, .. } => execs.iter().find(|(l, _)| l == lens).map_or(0, |(_, e)| e.temp_bytes(threads)),
            Item::Loop { .. } => 0,
        };
        let modes: Vec<usize> = if threads > 1 { vec![threads, 1] } else { vec![1] };
        let mut found = None;
        'modes: for p in modes {
            let Some(mut chunks) = ctx.choose(&items, base, limit_bytes, p, p * ranks.max(1), &ctx.extents, &estimate) else {
                continue;
            };
            // The pieces may hold more than the statements' results (lowering's own
            // temporaries, tiles) or less (shared slots): compile, measure, shrink.
            loop {
                ctx.compile(&mut items, &[], &chunks)?;
                let total = base.saturating_add(ctx.peak(&items, &ctx.extents, &prog.outputs, true, p, &chunks, &measured));
                if total <= limit_bytes {
                    found = Some((chunks, p, total));
                    break 'modes;
                }
                // Shrink by the measured peak, one halving at a time.
                let mut smaller = chunks.clone();
                let Some(k) = (0..smaller.len()).filter(|&k| smaller[k] > 1).max_by_key(|&k| smaller[k]) else { continue 'modes };
                smaller[k] = smaller[k].div_ceil(2);
                chunks = ctx.choose(&items, base, limit_bytes, p, p * ranks.max(1), &smaller, &estimate).unwrap_or(smaller);
            }
        }
        let Some((chunks, p, total)) = found else {
            let ones = vec![1; ctx.extents.len()];
            let need = base.saturating_add(ctx.peak(&items, &ctx.extents, &prog.outputs, true, 1, &ones, &estimate));
            return Err(ExecError::OverLimit { limit, need: need as u64 });
        };
        let info = Slicing {
            loops: plan
                .slices
                .iter()
                .zip(&chunks)
                .zip(&ctx.extents)
                .map(|((s, &chunk), &extent)| SliceLoop { index: s.indices.join(","), extent, chunk })
                .collect(),
            slices: chunks.iter().zip(&ctx.extents).map(|(&c, &e)| e.div_ceil(c)).product(),
            parallel: p,
            temp_bytes: total,
            flops: ctx.flops(&items, &[], &chunks),
            limit,
        };
        let program = body_program(&items, false)
            .or_else(|| body_program(&items, true))
            .cloned()
            .ok_or_else(|| ExecError::Internal("a sliced plan without compiled steps".into()))?;
        let Ctx { shapes, class_of, extents, .. } = ctx;
        let sliced =
            Sliced { inputs: prog.inputs.clone(), outputs: prog.outputs.clone(), shapes, class_of, extents, consts, items, info };
        Ok((sliced, program))
    }

    /// The shapes of the inputs the executable takes.
    pub(crate) fn input_shapes(&self) -> Vec<Vec<usize>> {
        self.inputs.iter().map(|t| self.shapes[t.index()].clone()).collect()
    }

    /// The shapes of the outputs.
    pub(crate) fn output_shapes(&self) -> Vec<Vec<usize>> {
        self.outputs.iter().map(|t| self.shapes[t.index()].clone()).collect()
    }

    /// Runs the call; with `dist`, each rank runs its share of the chunks of the
    /// outermost loops, and every rank ends with the combined results.
    pub(crate) fn run<T: Scalar>(
        &self,
        inputs: &[ArrayViewD<'_, T>],
        dist: Option<&dyn Distribution>,
    ) -> Result<Vec<ArrayD<T>>, ExecError> {
        let mut env: Vec<Option<Value<'_, T>>> = (0..self.shapes.len()).map(|_| None).collect();
        for (&t, x) in self.inputs.iter().zip(inputs) {
            env[t.index()] = Some(Value::In(x.view()));
        }
        for (t, v) in &self.consts {
            let a = ArrayD::from_shape_vec(IxDyn(&self.shapes[t.index()]), v.iter().map(|&x| T::from_f64(x)).collect())
                .map_err(|e| ExecError::Internal(format!("constant of a sliced plan: {e}")))?;
            env[t.index()] = Some(Value::Own(a));
        }
        let mut lens = self.extents.clone();
        self.run_items(&self.items, &mut env, &mut lens, &self.outputs, dist.map(Top::Distributed).unwrap_or(Top::Local))?;
        self.outputs
            .iter()
            .map(|t| match env[t.index()].take() {
                Some(Value::Own(a)) => Ok(a),
                Some(Value::In(v)) => Ok(v.to_owned()),
                None => Err(ExecError::Internal("a sliced plan did not compute an output".into())),
            })
            .collect()
    }

    /// The shape of `t` with each class axis at `lens`.
    fn shape(&self, t: TensorId, lens: &[usize]) -> Vec<usize> {
        self.shapes[t.index()].iter().zip(&self.class_of[t.index()]).map(|(&s, c)| c.map_or(s, |k| lens[k].min(s))).collect()
    }

    /// Runs a block: results go into `env`, and values the rest of the block and
    /// `hand_up` do not need are dropped as soon as they are dead.
    fn run_items<T: Scalar>(
        &self,
        items: &[Item],
        env: &mut [Option<Value<'_, T>>],
        lens: &mut Vec<usize>,
        hand_up: &[TensorId],
        top: Top<'_>,
    ) -> Result<(), ExecError> {
        let mut own: Vec<TensorId> = Vec::new();
        for (n, item) in items.iter().enumerate() {
            let results: Vec<ArrayD<T>> = match item {
                Item::Once { reads, execs, .. } => {
                    let exec = execs
                        .iter()
                        .find(|(l, _)| l == lens)
                        .map(|(_, e)| e)
                        .ok_or_else(|| ExecError::Internal(format!("no piece compiled for chunk lengths {lens:?}")))?;
                    let views = reads
                        .iter()
                        .map(|t| env[t.index()].as_ref().map(Value::view))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| ExecError::Internal("a sliced plan reads a value before it is computed".into()))?;
                    exec.run(&views)?
                }
                Item::Loop { .. } => self.run_loop(item, env, lens, top)?,
            };
            for (&t, a) in item.writes().iter().zip(results) {
                env[t.index()] = Some(Value::Own(a));
                own.push(t);
            }
            let later: Vec<TensorId> = items[n + 1..].iter().flat_map(|i| i.reads().iter().copied()).collect();
            for t in own.iter().filter(|t| !later.contains(t) && !hand_up.contains(t)) {
                env[t.index()] = None;
            }
            own.retain(|t| later.contains(t) || hand_up.contains(t));
        }
        Ok(())
    }

    /// Runs a loop item: every chunk of its index (an outermost loop of a distributed
    /// call: this rank's share, then combined over the ranks), results combined into
    /// arrays of the loop's writes (in their order).
    fn run_loop<T: Scalar>(
        &self,
        item: &Item,
        env: &[Option<Value<'_, T>>],
        lens: &mut Vec<usize>,
        top: Top<'_>,
    ) -> Result<Vec<ArrayD<T>>, ExecError> {
        let Item::Loop { class, writes, combine, .. } = item else {
            return Err(ExecError::Internal("run_loop on a run of steps".into()));
        };
        let (chunk, extent) = (self.info.loops[*class].chunk.max(1), self.extents[*class]);
        let starts: Vec<usize> = (0..extent).step_by(chunk).collect();
        let Top::Distributed(d) = top else {
            return self.run_chunks(item, env, lens, matches!(top, Top::Local), &starts);
        };
        let (rank, ranks) = (d.rank(), d.ranks().max(1));
        let shares = balance(&starts.iter().map(|&s| chunk.min(extent - s)).collect::<Vec<_>>(), ranks);
        let mine: Vec<usize> = shares.get(rank).map(|v| v.iter().map(|&k| starts[k]).collect()).unwrap_or_default();
        let local = self.run_chunks(item, env, lens, true, &mine);
        // Every rank learns whether any failed before any waits for another's data.
        d.agree(local.as_ref().err().map(|e| e.to_string())).map_err(ExecError::Distributed)?;
        let mut full = local?;
        // The rank with the first chunk has every result that no chunk slices.
        let root = shares.iter().position(|v| v.contains(&0)).unwrap_or(0);
        for (w, a) in full.iter_mut().enumerate() {
            let sliced = self.class_of[writes[w].index()].contains(&Some(*class));
            let r = match (combine[w], sliced) {
                (Some(op), _) => allreduce(d, a, op),
                // Disjoint regions, zero elsewhere: their sum is the whole.
                (None, true) => allreduce(d, a, ReduceOp::Sum),
                (None, false) => broadcast(d, a, root),
            };
            r.map_err(ExecError::Distributed)?;
        }
        Ok(full)
    }

    /// Runs the chunks at `starts` of a loop item (in parallel groups when `top`).
    fn run_chunks<T: Scalar>(
        &self,
        item: &Item,
        env: &[Option<Value<'_, T>>],
        lens: &mut Vec<usize>,
        top: bool,
        starts: &[usize],
    ) -> Result<Vec<ArrayD<T>>, ExecError> {
        let Item::Loop { writes, combine, .. } = item else {
            return Err(ExecError::Internal("run_chunks on a run of steps".into()));
        };
        let fresh = |w: usize| {
            let fill = match combine[w] {
                Some(ReduceOp::Max) => T::neg_infinity(),
                Some(ReduceOp::Min) => T::infinity(),
                _ => T::zero(),
            };
            ArrayD::from_elem(IxDyn(&self.shape(writes[w], lens)), fill)
        };
        let full: Vec<ArrayD<T>> = (0..writes.len()).map(fresh).collect();
        let q = if top { self.info.parallel.min(starts.len()).max(1) } else { 1 };
        if q == 1 {
            let mut full = full;
            for &s in starts {
                self.run_chunk(item, env, s, lens, &mut |w, region, out| combine_into(&mut full[w], region, out, combine[w]))?;
            }
            return Ok(full);
        }
        // Groups of consecutive chunks in parallel: combined results go to each group's
        // partials, the others (disjoint regions) straight to the shared arrays.
        let shared = Mutex::new(full);
        let partials: Mutex<Vec<Vec<Option<ArrayD<T>>>>> = Mutex::new(Vec::new());
        let failed: Mutex<Option<ExecError>> = Mutex::new(None);
        let base = lens.clone();
        tessera_runtime::parallel_for(q, 1, &|g0, g1| {
            for g in g0..g1 {
                let (lo, hi) = (g * starts.len() / q, (g + 1) * starts.len() / q);
                let mut lens = base.clone();
                let mut mine: Vec<Option<ArrayD<T>>> = (0..writes.len()).map(|w| combine[w].map(|_| fresh(w))).collect();
                for &s in &starts[lo..hi] {
                    let r = self.run_chunk(item, env, s, &mut lens, &mut |w, region, out| match &mut mine[w] {
                        Some(a) => combine_into(a, region, out, combine[w]),
                        None => {
                            if let Ok(mut f) = shared.lock() {
                                combine_into(&mut f[w], region, out, None);
                            }
                        }
                    });
                    if let Err(e) = r {
                        if let Ok(mut f) = failed.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
                if let Ok(mut all) = partials.lock() {
                    all.push(mine);
                }
            }
        });
        if let Some(e) = failed.into_inner().ok().flatten() {
            return Err(e);
        }
        let poisoned = || ExecError::Internal("a group of slices panicked".into());
        let mut full = shared.into_inner().map_err(|_| poisoned())?;
        let partials = partials.into_inner().map_err(|_| poisoned())?;
        if partials.len() != q {
            return Err(ExecError::Internal(format!("{} of {q} groups of slices finished", partials.len())));
        }
        for group in partials {
            for (w, a) in group.into_iter().enumerate() {
                if let (Some(a), Some(op)) = (a, combine[w]) {
                    let all: Vec<Range> = vec![Range::from(..); a.ndim()];
                    combine_into(&mut full[w], &all, &a, Some(op));
                }
            }
        }
        Ok(full)
    }

    /// Runs a loop's block on the chunk at `start`, handing each write with its region
    /// to `put`.
    fn run_chunk<T: Scalar>(
        &self,
        item: &Item,
        env: &[Option<Value<'_, T>>],
        start: usize,
        lens: &mut Vec<usize>,
        put: &mut Put<'_, T>,
    ) -> Result<(), ExecError> {
        let Item::Loop { class, reads, writes, body, .. } = item else {
            return Err(ExecError::Internal("run_chunk on a run of steps".into()));
        };
        let class = *class;
        let len = self.info.loops[class].chunk.min(self.extents[class] - start);
        let region = |t: TensorId| -> Vec<Range> {
            self.class_of[t.index()]
                .iter()
                .map(|c| if *c == Some(class) { Range::from(start as isize..(start + len) as isize) } else { Range::from(..) })
                .collect()
        };
        let mut inner: Vec<Option<Value<'_, T>>> = (0..self.shapes.len()).map(|_| None).collect();
        for &t in reads {
            let v = env[t.index()]
                .as_ref()
                .ok_or_else(|| ExecError::Internal("a slice loop reads a value before it is computed".into()))?;
            let r = region(t);
            let mut view = v.view();
            view.slice_each_axis_inplace(|d| r[d.axis.index()]);
            inner[t.index()] = Some(Value::In(view));
        }
        let saved = lens[class];
        lens[class] = len;
        let r = self.run_items(body, &mut inner, lens, writes, Top::Inner);
        lens[class] = saved;
        r?;
        for (w, &t) in writes.iter().enumerate() {
            match inner[t.index()].take() {
                Some(Value::Own(a)) => put(w, &region(t), &a),
                _ => return Err(ExecError::Internal("a slice loop's block did not compute a result".into())),
            }
        }
        Ok(())
    }
}

/// Where a block runs: at the top of a call (its loops' chunks in parallel groups, and
/// for a distributed call shared among the ranks), or inside a loop.
#[derive(Clone, Copy)]
enum Top<'a> {
    Local,
    Distributed(&'a dyn Distribution),
    Inner,
}

/// Ranks that share the chunks of a sliced call's outermost loops (MPI, in the facade's
/// `mpi` feature). Every rank calls each method in the same order with arrays of the
/// same shapes; the methods return only when every rank has called them.
pub trait Distribution: Send + Sync {
    fn rank(&self) -> usize;
    fn ranks(&self) -> usize;
    /// Shares each rank's failure (None on success): Ok when no rank failed, else every
    /// rank gets the first failing rank's message, naming it.
    fn agree(&self, failure: Option<String>) -> Result<(), String>;
    /// Combines the arrays of all ranks elementwise with `op`, in place on every rank.
    fn allreduce_f64(&self, data: &mut [f64], op: ReduceOp) -> Result<(), String>;
    fn allreduce_f32(&self, data: &mut [f32], op: ReduceOp) -> Result<(), String>;
    /// Copies `root`'s array to every rank.
    fn broadcast_f64(&self, data: &mut [f64], root: usize) -> Result<(), String>;
    fn broadcast_f32(&self, data: &mut [f32], root: usize) -> Result<(), String>;
}

/// Chunks (by cost) to ranks: longest first, each to the least loaded rank (the lowest
/// on ties), so every rank computes the same shares and the first chunk goes to rank 0.
fn balance(costs: &[usize], ranks: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by_key(|&k| (std::cmp::Reverse(costs[k]), k));
    let mut load = vec![0usize; ranks.max(1)];
    let mut shares = vec![Vec::new(); ranks.max(1)];
    for k in order {
        let r = (0..load.len()).min_by_key(|&r| (load[r], r)).unwrap_or(0);
        load[r] += costs[k];
        shares[r].push(k);
    }
    for s in &mut shares {
        s.sort_unstable();
    }
    shares
}

/// A result's elements as the slice type the [`Distribution`] methods take.
enum Floats<'a> {
    F64(&'a mut [f64]),
    F32(&'a mut [f32]),
}

fn floats<T: Scalar>(a: &mut ArrayD<T>) -> Result<Floats<'_>, String> {
    let any = a as &mut dyn std::any::Any;
    // `is` first: a returned borrow from one downcast would lock out the other.
    let floats = if any.is::<ArrayD<f64>>() {
        any.downcast_mut::<ArrayD<f64>>().and_then(|x| x.as_slice_mut()).map(Floats::F64)
    } else if any.is::<ArrayD<f32>>() {
        any.downcast_mut::<ArrayD<f32>>().and_then(|x| x.as_slice_mut()).map(Floats::F32)
    } else {
        return Err("only f32 and f64 results are distributed".into());
    };
    floats.ok_or_else(|| "a result is not contiguous".into())
}

fn allreduce<T: Scalar>(d: &dyn Distribution, a: &mut ArrayD<T>, op: ReduceOp) -> Result<(), String> {
    match floats(a)? {
        Floats::F64(x) => d.allreduce_f64(x, op),
        Floats::F32(x) => d.allreduce_f32(x, op),
    }
}

fn broadcast<T: Scalar>(d: &dyn Distribution, a: &mut ArrayD<T>, root: usize) -> Result<(), String> {
    match floats(a)? {
        Floats::F64(x) => d.broadcast_f64(x, root),
        Floats::F32(x) => d.broadcast_f32(x, root),
    }
}

/// Where a chunk's results go: write index, region, values.
type Put<'a, T> = dyn FnMut(usize, &[Range], &ArrayD<T>) + 'a;

/// `a[region] = a[region] ⊕ b`, or `= b` without a reduction.
fn combine_into<T: Scalar>(a: &mut ArrayD<T>, region: &[Range], b: &ArrayD<T>, op: Option<ReduceOp>) {
    let mut sub = a.slice_each_axis_mut(|d| region[d.axis.index()]);
    let z = Zip::from(&mut sub).and(b);
    match op {
        None => z.for_each(|x, &y| *x = y),
        Some(ReduceOp::Sum) => z.for_each(|x, &y| *x = *x + y),
        Some(ReduceOp::Max) => z.for_each(|x, &y| *x = tir::nan_max(*x, y)),
        Some(ReduceOp::Min) => z.for_each(|x, &y| *x = tir::nan_min(*x, y)),
    }
}

/// A value of the driver: a borrowed input or an owned result.
enum Value<'a, T> {
    In(ArrayViewD<'a, T>),
    Own(ArrayD<T>),
}

impl<T> Value<'_, T> {
    fn view(&self) -> ArrayViewD<'_, T> {
        match self {
            Value::In(v) => v.view(),
            Value::Own(a) => a.view(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::balance;

    #[test]
    fn chunks_are_balanced_by_cost_and_the_first_goes_to_rank_0() {
        assert_eq!(balance(&[4, 4, 4, 1], 2), vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(balance(&[3, 3, 3, 3, 2], 3), vec![vec![0, 3], vec![1, 4], vec![2]]);
        // More ranks than chunks: some ranks get none.
        assert_eq!(balance(&[5], 2), vec![vec![0], vec![]]);
    }
}
