//! Executed slicing: a plan's slice loops run as a driver around compiled pieces.
//!
//! The plan's program (one TIR statement per step) is cut into phases: the steps before
//! the slice loops (loop-invariant, run once), the sliced body, and the steps after it
//! (run once on the accumulated results). Each phase is a TIR function compiled through
//! the ordinary pipeline, so every backend runs it; the body is compiled with every axis
//! of its sliced classes at the chunk's size. Per slice, the driver hands the body views
//! of its inputs at the slice's offsets and combines the body's results into full-size
//! arrays: written at the slice's offsets when they carry a sliced axis, summed (or
//! max/min-combined) when their statement reduces over one.
//!
//! Chunks are as large as the memory limit allows. When it allows one slice per thread,
//! slices run in parallel, each group of them with its own partial results that are
//! combined at the end; otherwise they run one after another, each on every thread.

use super::{ExecError, Executable};
use crate::backend::Backend;
use crate::eval::Scalar;
use crate::loops::Program;
use crate::plan::{slice_class, Plan};
use crate::tir::{self, Bindings, Expr, Function, IndexId, ReduceOp, Size, TensorId, TensorKind};
use ndarray::{ArrayD, ArrayViewD, IxDyn, Slice as Range, Zip};
use std::sync::Mutex;

/// One slice loop as run: the class's index name, its extent and the chunk per slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceLoop {
    pub index: String,
    pub extent: usize,
    pub chunk: usize,
}

/// How a sliced executable runs its slices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slicing {
    pub loops: Vec<SliceLoop>,
    /// Slices per call (the product over loops of extent / chunk, rounded up).
    pub slices: usize,
    /// Slices in flight at once: 1 runs them one after another on every thread.
    pub parallel: usize,
    /// Peak bytes of intermediates the driver and its pieces hold (no inputs, outputs).
    pub temp_bytes: usize,
    /// The memory limit it was made for.
    pub limit: u64,
}

/// What a phase runs.
enum Run {
    Once(Executable),
    Body(Body),
}

struct Phase {
    /// Tensors of the plan's program the phase reads (its inputs, in order) and writes.
    reads: Vec<TensorId>,
    writes: Vec<TensorId>,
    /// Tensors whose last use is this phase.
    frees: Vec<TensorId>,
    run: Run,
}

/// The sliced body: executables by the chunk of each class (a class's last chunk may
/// be shorter), and for every read and write the class of each axis.
struct Body {
    execs: Vec<(Vec<usize>, Executable)>,
    read_axes: Vec<Vec<Option<usize>>>,
    write_axes: Vec<Vec<Option<usize>>>,
    /// The reduction combining slices, for writes whose statement reduces over a class.
    combine: Vec<Option<ReduceOp>>,
}

/// A plan's program run slice by slice.
pub(crate) struct Sliced {
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
    /// Concrete shapes of the plan's tensors.
    shapes: Vec<Vec<usize>>,
    /// Constants that some phase reads as an input (sliced ones), with their values.
    consts: Vec<(TensorId, std::sync::Arc<Vec<f64>>)>,
    phases: Vec<Phase>,
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
        Expr::Lit(_) | Expr::Size(_) | Expr::Access(..) => false,
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
        outputs: writes.iter().map(|&t| id(t)).collect(),
        constants,
        stmts,
        span: prog.span,
    }
}

fn compile(f: &Function, b: &Bindings, backend: Backend) -> Result<Executable, ExecError> {
    use crate::pipeline::{self, PipelineError};
    let opts = pipeline::Options { backend, ..Default::default() };
    let out = pipeline::compile(f, b, f.dtype, &opts).map_err(|e| match e {
        PipelineError::Exec(e) => e,
        e => ExecError::Internal(format!("a piece of a sliced plan does not compile: {e}")),
    })?;
    out.exec.ok_or_else(|| ExecError::Unavailable(format!("the {backend} backend runs no sliced plans")))
}

/// Memory a chunking of the body needs, as the driver and its pieces allocate it.
struct Costs<'a> {
    shapes: &'a [Vec<usize>],
    elem: usize,
    /// Class of each axis of each tensor.
    class_of: &'a [Vec<Option<usize>>],
    /// Intermediates alive through the body (not inputs, not outputs).
    live: usize,
    body_temps: Vec<TensorId>,
    reads: &'a [TensorId],
    writes: &'a [TensorId],
    combine: &'a [Option<ReduceOp>],
    outputs: &'a [TensorId],
}

impl Costs<'_> {
    fn bytes(&self, t: TensorId, chunks: Option<&[usize]>) -> usize {
        let shape = &self.shapes[t.index()];
        let mut n = self.elem;
        for (a, &s) in shape.iter().enumerate() {
            let s = match (chunks, self.class_of[t.index()][a]) {
                (Some(c), Some(k)) => c[k].min(s),
                _ => s,
            };
            n = n.saturating_mul(s);
        }
        n
    }

    /// Peak bytes of intermediates with chunks `c` and `p` slices in flight.
    fn total(&self, c: &[usize], p: usize) -> usize {
        let sliced = |t: &TensorId| self.class_of[t.index()].iter().any(|x| x.is_some());
        let per_slice: usize = self.body_temps.iter().map(|&t| self.bytes(t, Some(c))).sum::<usize>()
            + self.writes.iter().map(|&t| self.bytes(t, Some(c))).sum::<usize>()
            + self.reads.iter().filter(|t| sliced(t)).map(|&t| self.bytes(t, Some(c))).sum::<usize>();
        // Full-size results that are not outputs, and per-group partials of combined ones.
        let accum: usize =
            self.writes.iter().filter(|t| !self.outputs.contains(t)).map(|&t| self.bytes(t, None)).sum();
        let partials: usize = if p > 1 {
            p * self.writes.iter().zip(self.combine).filter(|(_, c)| c.is_some()).map(|(&t, _)| self.bytes(t, None)).sum::<usize>()
        } else {
            0
        };
        self.live.saturating_add(accum).saturating_add(partials).saturating_add(p.saturating_mul(per_slice))
    }
}

/// Halves the largest chunk until the body fits `limit` with `p` slices in flight (and,
/// for `p > 1`, there are at least `p` slices); None when even chunks of one do not fit.
fn choose_chunks(costs: &Costs<'_>, extents: &[usize], limit: usize, p: usize) -> Option<Vec<usize>> {
    let mut c = extents.to_vec();
    let slices = |c: &[usize]| c.iter().zip(extents).map(|(&c, &e)| e.div_ceil(c.max(1))).product::<usize>();
    loop {
        if costs.total(&c, p) <= limit && slices(&c) >= p {
            return Some(c);
        }
        let (k, &largest) = c.iter().enumerate().max_by_key(|(k, &v)| (v, std::cmp::Reverse(*k)))?;
        if largest <= 1 {
            return None;
        }
        c[k] = largest.div_ceil(2);
    }
}

/// Halves the largest chunk; false when every chunk is already one.
fn halve(c: &mut [usize]) -> bool {
    match c.iter_mut().max_by_key(|v| **v) {
        Some(v) if *v > 1 => {
            *v = v.div_ceil(2);
            true
        }
        _ => false,
    }
}

/// The body compiled for every combination of full and last (shorter) chunks.
#[allow(clippy::too_many_arguments)]
fn compile_body(
    prog: &Function,
    b: &Bindings,
    backend: Backend,
    range: std::ops::Range<usize>,
    reads: &[TensorId],
    writes: &[TensorId],
    class_of: &[Vec<Option<usize>>],
    index_class: &[Vec<(IndexId, usize)>],
    chunks: &[usize],
    extents: &[usize],
) -> Result<Vec<(Vec<usize>, Executable)>, ExecError> {
    let mut combos: Vec<Vec<usize>> = vec![Vec::new()];
    for (&c, &e) in chunks.iter().zip(extents) {
        let mut sizes = vec![c];
        if e % c != 0 {
            sizes.push(e % c);
        }
        combos = combos.into_iter().flat_map(|v| sizes.iter().map(move |&s| [v.clone(), vec![s]].concat())).collect();
    }
    let mut execs = Vec::new();
    for combo in combos {
        let axis_size = |t: TensorId, a: usize| class_of[t.index()][a].map(|k| combo[k]);
        let index_size = |k: usize, i: IndexId| index_class[k].iter().find(|(x, _)| *x == i).map(|&(_, c)| combo[c]);
        let f = sub_function(prog, range.clone(), reads, writes, &axis_size, &index_size);
        execs.push((combo.clone(), compile(&f, b, backend)?));
    }
    Ok(execs)
}

impl Sliced {
    /// The plan's slice loops as a driver around compiled pieces, with chunks that keep
    /// the intermediates within `limit` bytes. Also returns the body's loop program.
    pub(crate) fn new(plan: &Plan, b: &Bindings, backend: Backend, limit: u64) -> Result<(Sliced, Program), ExecError> {
        let prog = &plan.program;
        if plan.slices.is_empty() {
            return Err(ExecError::Internal("a sliced executable for a plan without slice loops".into()));
        }
        let shapes: Vec<Vec<usize>> = (0..prog.tensors.len())
            .map(|k| prog.shape(TensorId(k as u32), b))
            .collect::<Result<_, _>>()
            .map_err(|e| ExecError::Internal(format!("shapes of the sliced plan: {e:?}")))?;
        let classes: Vec<_> = plan.slices.iter().map(|s| slice_class(plan, s)).collect();
        let extents: Vec<usize> = plan.slices.iter().map(|s| s.count as usize).collect();
        let first = plan.slices.iter().map(|s| s.first).min().unwrap_or(0);
        let last = plan.slices.iter().map(|s| s.last).max().unwrap_or(0).min(prog.stmts.len().saturating_sub(1));
        let mut class_of: Vec<Vec<Option<usize>>> = shapes.iter().map(|s| vec![None; s.len()]).collect();
        for (k, c) in classes.iter().enumerate() {
            for &(t, a) in &c.axes {
                class_of[t.index()][a] = Some(k);
            }
        }
        // The class of each index of each body statement, and checks that slicing it is
        // exact: one index per class, only at plain positions, never used as a number
        // or reduced inline, and partial reductions read only after the loop.
        let mut index_class: Vec<Vec<(IndexId, usize)>> = vec![Vec::new(); prog.stmts.len()];
        for k in first..=last {
            let s = &prog.stmts[k];
            for (c, class) in classes.iter().enumerate() {
                match class.indices[k].as_slice() {
                    [] => {}
                    [i] => index_class[k].push((*i, c)),
                    _ => return Err(unsupported(format!("statement {k} pairs two indices of the loop over {}", plan.slices[c].indices.join(", ")))),
                }
            }
            for &(i, c) in &index_class[k] {
                let name = &s.indices[i.index()].name;
                if uses_index(&s.rhs, i) {
                    return Err(unsupported(format!("the sliced index `{name}` is used as a number or reduced inside an expression")));
                }
                let mut grouped = s.lhs.iter().any(|p| p.len() > 1 && p.contains(&i));
                s.rhs.for_each_access(&mut |_, pos| grouped |= pos.iter().any(|p| p.len() > 1 && p.contains(&i)));
                if grouped {
                    return Err(unsupported(format!("the sliced index `{name}` is part of a grouped position")));
                }
                let on_left = s.lhs.iter().any(|p| p.as_slice() == [i]);
                if !on_left && !s.reduced.contains(&i) {
                    return Err(unsupported(format!("the sliced index `{name}` of loop {c} is neither kept nor reduced")));
                }
            }
            if index_class[k].iter().any(|(i, _)| s.reduced.contains(i)) {
                let read_later = prog.stmts[k + 1..=last].iter().any(|x| {
                    let mut r = Vec::new();
                    x.rhs.tensors(&mut r);
                    r.contains(&s.target)
                });
                if read_later {
                    return Err(unsupported("a partial sum over a sliced index is read inside the loop"));
                }
            }
        }
        let n = prog.stmts.len();
        let ranges: Vec<(std::ops::Range<usize>, bool)> =
            [(0..first, false), (first..last + 1, true), (last + 1..n, false)].into_iter().filter(|(r, _)| !r.is_empty()).collect();
        let elem = prog.dtype.size_of();
        let is_output = |t: TensorId| prog.outputs.contains(&t);
        let mut phases = Vec::new();
        let mut consts = Vec::new();
        let mut info = Slicing { loops: Vec::new(), slices: 1, parallel: 1, temp_bytes: 0, limit };
        let mut body_program = None;
        for (range, sliced) in &ranges {
            let stmts = &prog.stmts[range.clone()];
            let defined: Vec<TensorId> = stmts.iter().map(|s| s.target).collect();
            let later = reads_of(&prog.stmts[range.end..]);
            let writes: Vec<TensorId> = defined.iter().copied().filter(|&t| is_output(t) || later.contains(&t)).collect();
            let has_class = |t: TensorId| class_of[t.index()].iter().any(|c| c.is_some());
            let reads: Vec<TensorId> = reads_of(stmts)
                .into_iter()
                .filter(|t| !defined.contains(t))
                .filter(|&t| prog.tensor(t).kind != TensorKind::Const || (*sliced && has_class(t)))
                .collect();
            for &t in &reads {
                if let Some(c) = prog.constant(t) {
                    consts.push((t, c.values.clone()));
                }
            }
            if !sliced {
                let f = sub_function(prog, range.clone(), &reads, &writes, &|_, _| None, &|_, _| None);
                let exec = compile(&f, b, backend)?;
                phases.push(Phase { reads, writes, frees: Vec::new(), run: Run::Once(exec) });
                continue;
            }
            let combine: Vec<Option<ReduceOp>> = writes
                .iter()
                .map(|&t| {
                    let k = range.clone().find(|&k| prog.stmts[k].target == t)?;
                    let s = &prog.stmts[k];
                    index_class[k].iter().any(|(i, _)| s.reduced.contains(i)).then_some(s.op)
                })
                .collect();
            // Intermediates alive through the loop: earlier results that it or later
            // phases read (inputs and outputs are not intermediates).
            let read_from_here = reads_of(&prog.stmts[range.start..]);
            let live: usize = prog.stmts[..range.start]
                .iter()
                .map(|s| s.target)
                .filter(|&t| !is_output(t) && read_from_here.contains(&t))
                .map(|t| shapes[t.index()].iter().product::<usize>() * elem)
                .sum::<usize>()
                + consts.iter().map(|(t, _)| shapes[t.index()].iter().product::<usize>() * elem).sum::<usize>();
            let costs = Costs {
                shapes: &shapes,
                elem,
                class_of: &class_of,
                live,
                body_temps: defined.iter().copied().filter(|t| !writes.contains(t)).collect(),
                reads: &reads,
                writes: &writes,
                combine: &combine,
                outputs: &prog.outputs,
            };
            let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
            let threads = tessera_runtime::threads();
            let modes: Vec<usize> = if threads > 1 { vec![threads, 1] } else { vec![1] };
            let mut found = None;
            'modes: for p in modes {
                let Some(mut chunks) = choose_chunks(&costs, &extents, limit_usize, p) else { continue };
                // The pieces' memory plans may hold more than the statements' results
                // (lowering's own temporaries, tiles) or less (shared slots): compile,
                // measure, and shrink the chunks until the measured total fits.
                loop {
                    let execs = compile_body(prog, b, backend, range.clone(), &reads, &writes, &class_of, &index_class, &chunks, &extents)?;
                    let per_thread = if p > 1 { 1 } else { threads };
                    let piece_temps = execs.iter().map(|(_, e)| e.temp_bytes(per_thread)).max().unwrap_or(0);
                    let estimated: usize = costs.body_temps.iter().map(|&t| costs.bytes(t, Some(&chunks))).sum();
                    let total = costs.total(&chunks, p) - p * estimated + p * piece_temps;
                    if total <= limit_usize {
                        found = Some((chunks, p, execs, total));
                        break 'modes;
                    }
                    if !halve(&mut chunks) {
                        continue 'modes;
                    }
                }
            }
            let Some((chunks, p, execs, total)) = found else {
                let ones = vec![1; extents.len()];
                return Err(ExecError::Memory(format!(
                    "cannot run under the memory limit of {} bytes: even slices of one element need {} bytes of intermediates",
                    limit,
                    costs.total(&ones, 1)
                )));
            };
            info.temp_bytes = info.temp_bytes.max(total);
            info.parallel = p;
            info.slices = chunks.iter().zip(&extents).map(|(&c, &e)| e.div_ceil(c)).product();
            info.loops = plan
                .slices
                .iter()
                .zip(&chunks)
                .zip(&extents)
                .map(|((s, &chunk), &extent)| SliceLoop { index: s.indices.join(","), extent, chunk })
                .collect();
            body_program = execs.first().map(|(_, e)| e.program.clone());
            let read_axes = reads.iter().map(|t| class_of[t.index()].clone()).collect();
            let write_axes = writes.iter().map(|t| class_of[t.index()].clone()).collect();
            phases.push(Phase { reads, writes, frees: Vec::new(), run: Run::Body(Body { execs, read_axes, write_axes, combine }) });
        }
        // Memory of the phases that run once: what is alive plus the piece's own.
        let mut alive: Vec<TensorId> = consts.iter().map(|(t, _)| *t).collect();
        let bytes = |t: &TensorId| shapes[t.index()].iter().product::<usize>() * elem;
        let threads = tessera_runtime::threads();
        let count = phases.len();
        for k in 0..count {
            let later: Vec<TensorId> = phases[k + 1..].iter().flat_map(|p| p.reads.iter().copied()).collect();
            let ph = &mut phases[k];
            if let Run::Once(e) = &ph.run {
                let held: usize = alive.iter().chain(&ph.writes).filter(|t| !is_output(**t)).map(bytes).sum();
                let need = held + e.temp_bytes(threads);
                if need as u64 > limit {
                    return Err(ExecError::Memory(format!(
                        "cannot run under the memory limit of {limit} bytes: the steps outside the slice loops need {need} bytes of intermediates"
                    )));
                }
                info.temp_bytes = info.temp_bytes.max(need);
            }
            alive.extend(ph.writes.iter().copied());
            ph.frees = alive.iter().copied().filter(|t| !later.contains(t) && !is_output(*t)).collect();
            alive.retain(|t| !ph.frees.contains(t));
        }
        let body_program = body_program.ok_or_else(|| ExecError::Internal("a sliced plan without a body".into()))?;
        let sliced = Sliced { inputs: prog.inputs.clone(), outputs: prog.outputs.clone(), shapes, consts, phases, info };
        Ok((sliced, body_program))
    }

    /// The shapes of the inputs the executable takes.
    pub(crate) fn input_shapes(&self) -> Vec<Vec<usize>> {
        self.inputs.iter().map(|t| self.shapes[t.index()].clone()).collect()
    }

    /// The shapes of the outputs.
    pub(crate) fn output_shapes(&self) -> Vec<Vec<usize>> {
        self.outputs.iter().map(|t| self.shapes[t.index()].clone()).collect()
    }

    pub(crate) fn run<T: Scalar>(&self, inputs: &[ArrayViewD<'_, T>]) -> Result<Vec<ArrayD<T>>, ExecError> {
        let mut values: Vec<Option<Value<'_, T>>> = (0..self.shapes.len()).map(|_| None).collect();
        for (&t, x) in self.inputs.iter().zip(inputs) {
            values[t.index()] = Some(Value::In(x.view()));
        }
        for (t, v) in &self.consts {
            let a = ArrayD::from_shape_vec(IxDyn(&self.shapes[t.index()]), v.iter().map(|&x| T::from_f64(x)).collect())
                .map_err(|e| ExecError::Internal(format!("constant of a sliced plan: {e}")))?;
            values[t.index()] = Some(Value::Own(a));
        }
        for ph in &self.phases {
            let results = {
                let views: Vec<ArrayViewD<'_, T>> = ph
                    .reads
                    .iter()
                    .map(|t| values[t.index()].as_ref().map(Value::view))
                    .collect::<Option<_>>()
                    .ok_or_else(|| ExecError::Internal("a sliced plan reads a value before it is computed".into()))?;
                match &ph.run {
                    Run::Once(e) => e.run(&views)?,
                    Run::Body(body) => self.run_body(body, ph, &views)?,
                }
            };
            for (&t, v) in ph.writes.iter().zip(results) {
                values[t.index()] = Some(Value::Own(v));
            }
            for t in &ph.frees {
                values[t.index()] = None;
            }
        }
        self.outputs
            .iter()
            .map(|t| match values[t.index()].take() {
                Some(Value::Own(a)) => Ok(a),
                Some(Value::In(v)) => Ok(v.to_owned()),
                None => Err(ExecError::Internal("a sliced plan did not compute an output".into())),
            })
            .collect()
    }

    /// Every slice of the body, combined into full-size results.
    fn run_body<T: Scalar>(&self, body: &Body, ph: &Phase, reads: &[ArrayViewD<'_, T>]) -> Result<Vec<ArrayD<T>>, ExecError> {
        let loops = &self.info.loops;
        // Slice starts: every combination of chunk starts, last loop fastest.
        let mut starts: Vec<Vec<usize>> = vec![Vec::new()];
        for l in loops {
            let s: Vec<usize> = (0..l.extent).step_by(l.chunk.max(1)).collect();
            starts = starts.into_iter().flat_map(|v| s.iter().map(move |&x| [v.clone(), vec![x]].concat())).collect();
        }
        let fresh = |w: usize| {
            let fill = match body.combine[w] {
                Some(ReduceOp::Max) => T::neg_infinity(),
                Some(ReduceOp::Min) => T::infinity(),
                _ => T::zero(),
            };
            ArrayD::from_elem(IxDyn(&self.shapes[ph.writes[w].index()]), fill)
        };
        let full: Vec<ArrayD<T>> = (0..ph.writes.len()).map(fresh).collect();
        let p = self.info.parallel.min(starts.len()).max(1);
        if p == 1 {
            let mut full = full;
            for s in &starts {
                self.run_slice(body, reads, s, &mut |w, region, out| {
                    combine_into(&mut full[w], region, out, body.combine[w]);
                })?;
            }
            return Ok(full);
        }
        // Groups of consecutive slices in parallel: combined results go to each group's
        // partials, the others (disjoint regions, or equal values) straight to `full`.
        let shared = Mutex::new(full);
        let partials: Mutex<Vec<Vec<ArrayD<T>>>> = Mutex::new(Vec::new());
        let failed: Mutex<Option<ExecError>> = Mutex::new(None);
        tessera_runtime::parallel_for(p, 1, &|g0, g1| {
            for g in g0..g1 {
                let (lo, hi) = (g * starts.len() / p, (g + 1) * starts.len() / p);
                let mut mine: Vec<Option<ArrayD<T>>> =
                    (0..ph.writes.len()).map(|w| body.combine[w].map(|_| fresh(w))).collect();
                for s in &starts[lo..hi] {
                    let r = self.run_slice(body, reads, s, &mut |w, region, out| match &mut mine[w] {
                        Some(a) => combine_into(a, region, out, body.combine[w]),
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
                    all.push(mine.into_iter().map(|a| a.unwrap_or_default()).collect());
                }
            }
        });
        if let Some(e) = failed.into_inner().ok().flatten() {
            return Err(e);
        }
        let mut full = shared.into_inner().map_err(|_| ExecError::Internal("a slice group panicked".into()))?;
        let partials = partials.into_inner().map_err(|_| ExecError::Internal("a slice group panicked".into()))?;
        if partials.len() != p {
            return Err(ExecError::Internal(format!("{} of {p} slice groups finished", partials.len())));
        }
        for group in partials {
            for (w, a) in group.into_iter().enumerate() {
                if let Some(op) = body.combine[w] {
                    let all: Vec<Range> = vec![Range::from(..); a.ndim()];
                    combine_into(&mut full[w], &all, &a, Some(op));
                }
            }
        }
        Ok(full)
    }

    /// Runs the slice at `starts`, handing each result with its region to `put`.
    fn run_slice<T: Scalar>(
        &self,
        body: &Body,
        reads: &[ArrayViewD<'_, T>],
        starts: &[usize],
        put: &mut dyn FnMut(usize, &[Range], &ArrayD<T>),
    ) -> Result<(), ExecError> {
        let loops = &self.info.loops;
        let lens: Vec<usize> = starts.iter().zip(loops).map(|(&s, l)| l.chunk.min(l.extent - s)).collect();
        let region = |axes: &[Option<usize>]| -> Vec<Range> {
            axes.iter()
                .map(|c| match c {
                    Some(k) => Range::from(starts[*k] as isize..(starts[*k] + lens[*k]) as isize),
                    None => Range::from(..),
                })
                .collect()
        };
        let exec = body
            .execs
            .iter()
            .find(|(c, _)| *c == lens)
            .map(|(_, e)| e)
            .ok_or_else(|| ExecError::Internal(format!("no body compiled for slice lengths {lens:?}")))?;
        let views: Vec<ArrayViewD<'_, T>> = reads
            .iter()
            .zip(&body.read_axes)
            .map(|(x, axes)| {
                let r = region(axes);
                x.slice_each_axis(|d| r[d.axis.index()])
            })
            .collect();
        let outs = exec.run(&views)?;
        for (w, out) in outs.iter().enumerate() {
            put(w, &region(&body.write_axes[w]), out);
        }
        Ok(())
    }
}

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
