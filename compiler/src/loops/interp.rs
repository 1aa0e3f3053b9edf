//! The loop-IR interpreter: runs a program one scalar at a time in the program's dtype.
//! With the TIR oracle it is the second reference of the differential tests, so it is
//! plain on purpose: GEMMs are triple loops, parallel loops run in order, tile groups run
//! tile by tile as the executor runs them, and memory slots start filled with NaN so
//! that a read before a write shows in the results.

use super::stream::Op;
use super::*;
use crate::eval::Scalar;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InterpError {
    #[error("{0}")]
    Input(String),
    /// An invariant failed. Always a bug.
    #[error("internal error (this is a bug in Tessera): loop interpreter: {0}")]
    Internal(String),
}

/// How the interpreter runs a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterpOptions {
    /// Streamed tile groups visit only the key blocks some row of the tile sees (as the
    /// executor does). Without, every block position of the whole key range runs and the
    /// score fill alone applies the mask: tests compare the two.
    pub skip_blocks: bool,
}

impl Default for InterpOptions {
    fn default() -> Self {
        InterpOptions { skip_blocks: true }
    }
}

/// Runs `p` on contiguous row-major inputs; returns the outputs, row-major.
pub fn interpret<T: Scalar>(p: &Program, inputs: &[&[T]]) -> Result<Vec<Vec<T>>, InterpError> {
    interpret_with(p, inputs, InterpOptions::default())
}

/// [`interpret`] with options.
pub fn interpret_with<T: Scalar>(p: &Program, inputs: &[&[T]], opts: InterpOptions) -> Result<Vec<Vec<T>>, InterpError> {
    interpret_indexed(p, inputs, &[], opts)
}

/// [`interpret_with`] with the index arguments (checked against their bounds first, as
/// the executor checks them).
pub fn interpret_indexed<T: Scalar>(
    p: &Program,
    inputs: &[&[T]],
    indices: &[&[i64]],
    opts: InterpOptions,
) -> Result<Vec<Vec<T>>, InterpError> {
    if indices.len() != p.indices.len() {
        return Err(InterpError::Input(format!("{} index arrays for {} index parameters", indices.len(), p.indices.len())));
    }
    let bounds = p.index_bounds();
    for (k, (x, &b)) in indices.iter().zip(&p.indices).enumerate() {
        if x.len() != p.buf(b).len() {
            return Err(InterpError::Input(format!("index input {} has {} elements, not {}", p.buf(b).name, x.len(), p.buf(b).len())));
        }
        super::check_index(p, &bounds, k, x).map_err(InterpError::Input)?;
    }
    if T::DTYPE != p.dtype {
        return Err(InterpError::Input(format!("the program is {}, the inputs {}", p.dtype.name(), T::DTYPE.name())));
    }
    if inputs.len() != p.inputs.len() {
        return Err(InterpError::Input(format!("{} inputs for {} parameters", inputs.len(), p.inputs.len())));
    }
    let (ni, no) = (p.inputs.len(), p.outputs.len());
    let mut mem: Vec<Vec<T>> = Vec::new();
    for (k, &b) in p.inputs.iter().enumerate() {
        if inputs[k].len() != p.buf(b).len() {
            return Err(InterpError::Input(format!("input {} has {} elements, not {}", p.buf(b).name, inputs[k].len(), p.buf(b).len())));
        }
        mem.push(inputs[k].to_vec());
    }
    for &b in &p.outputs {
        mem.push(vec![T::nan(); p.buf(b).len()]);
    }
    for &s in &p.slots {
        mem.push(vec![T::nan(); s]);
    }
    let mut region = Vec::new();
    for b in &p.bufs {
        region.push(match &b.kind {
            BufKind::Input(k) => *k,
            // Index buffers live in `imem`; their region is their argument number.
            BufKind::Index(k) => *k,
            BufKind::Output(k) => ni + k,
            BufKind::Temp { slot } => ni + no + slot,
            BufKind::Const(v) => {
                mem.push(v.iter().map(|&x| T::from_f64(x)).collect());
                mem.len() - 1
            }
            // A tile buffer is the whole intermediate here; the kernels' addresses are
            // those of the whole buffer.
            BufKind::Scratch | BufKind::Tile { .. } => {
                mem.push(vec![T::nan(); b.len()]);
                mem.len() - 1
            }
        });
    }
    let imem: Vec<Vec<i64>> = indices.iter().map(|x| x.to_vec()).collect();
    let mut m = Machine { imem, region, shift: vec![0; p.bufs.len()], mem, loops: Vec::new(), vars: Vec::new() };
    let mut k = 0;
    while k < p.kernels.len() {
        let Some(g) = p.tile_group_at(k) else {
            m.kernel(&p.kernels[k], None).map_err(|e| InterpError::Internal(format!("kernel {k}: {e}")))?;
            k += 1;
            continue;
        };
        // A tile group runs in the executor's order: every kernel of the group on one tile
        // of rows before the next tile, so a memory plan that ignores the interleaving
        // shows here too. A tile's intermediates do not outlive it: each tile starts them
        // as NaN. Streamed groups run their tiles last first, as the executor does.
        let mut tiles: Vec<usize> = (0..g.extent).step_by(g.tile.max(1)).collect();
        if g.stream.is_some() {
            tiles.reverse();
        }
        for lo in tiles {
            let hi = (lo + g.tile).min(g.extent);
            for b in &g.local {
                let r = m.region[b.index()];
                m.mem[r].fill(T::nan());
            }
            let run = |m: &mut Machine<T>, j: usize| {
                let n = j - g.first;
                let role = g.roles.get(n).copied().flatten().unwrap_or(TileRole::M);
                // A GEMM whose M runs over (row, key) pairs has `factor` rows per group row.
                let f = g.factors.get(n).copied().unwrap_or(1);
                m.kernel(&p.kernels[j], Some((lo * f, hi * f, role))).map_err(|e| format!("kernel {j}: {e}"))
            };
            match &g.stream {
                None => {
                    for j in g.first..=g.last {
                        run(&mut m, j).map_err(InterpError::Internal)?;
                    }
                }
                Some(s) => {
                    let plan = super::stream::tile_plan(s, lo, hi, opts.skip_blocks);
                    super::stream::drive(g, s, &plan, &mut |op| match op {
                        Op::Run(j) => run(&mut m, j),
                        Op::Shift { axis, key0 } => {
                            for sh in s.shifts.iter().filter(|sh| sh.axis == axis) {
                                m.shift[sh.buf.index()] = key0 as i64 * sh.stride;
                            }
                            Ok(())
                        }
                        Op::Fill { key0, fresh } => {
                            let BufKind::Tile { row } = p.buf(s.scores).kind else { return Err("the scores are not a tile buffer".into()) };
                            let r = m.region[s.scores.index()];
                            let rows = m.mem[r].get_mut(lo * row..hi * row).ok_or("the scores buffer is too short")?;
                            super::stream::fill(rows, row, s, lo, hi, key0, fresh);
                            Ok(())
                        }
                    })
                    .map_err(InterpError::Internal)?;
                    m.shift.fill(0);
                }
            }
        }
        k = g.last + 1;
    }
    let mut outs = Vec::new();
    for k in 0..no {
        outs.push(std::mem::take(&mut m.mem[ni + k]));
    }
    Ok(outs)
}

struct Machine<T> {
    /// The index arguments, by argument number.
    imem: Vec<Vec<i64>>,
    region: Vec<usize>,
    /// Per buffer, the element offset of its base: a stream's shifted buffers move by
    /// the block's first key times the shift's stride.
    shift: Vec<i64>,
    mem: Vec<Vec<T>>,
    loops: Vec<i64>,
    vars: Vec<T>,
}

impl<T: Scalar> Machine<T> {
    /// Runs one kernel, or with `tile` its part for rows `lo..hi` of a tile group: those
    /// iterations of a loop kernel's parallel loop, that slice of a GEMM's M or N.
    fn kernel(&mut self, kern: &Kernel, tile: Option<(usize, usize, TileRole)>) -> Result<(), String> {
        match kern {
            Kernel::Gemm(g) => self.gemm(g, tile),
            Kernel::Loops(l) => {
                self.loops = vec![0; l.loops.len()];
                self.vars = vec![T::nan(); l.vars.len()];
                match (tile, l.body.as_slice()) {
                    (None, body) => self.block(body),
                    (Some((lo, hi, _)), [Stmt::For { id, extent, parallel: true, body }]) => {
                        for i in lo..hi.min(*extent) {
                            self.loops[id.index()] = i as i64;
                            self.block(body)?;
                        }
                        Ok(())
                    }
                    (Some(_), _) => Err("a loop kernel of a tile group has no parallel loop".into()),
                }
            }
        }
    }

    fn addr(&self, b: BufId, a: &Affine) -> Result<(usize, usize), String> {
        let mut off = a.offset + self.shift[b.index()];
        for &(l, s) in &a.terms {
            off += self.loops[l.index()] * s;
        }
        let r = self.region[b.index()];
        usize::try_from(off)
            .ok()
            .filter(|&o| o < self.mem[r].len())
            .map(|o| (r, o))
            .ok_or_else(|| format!("address {off} of buffer {b} is out of bounds"))
    }

    fn block(&mut self, body: &[Stmt]) -> Result<(), String> {
        for s in body {
            match s {
                Stmt::For { id, extent, body, .. } => {
                    for i in 0..*extent {
                        self.loops[id.index()] = i as i64;
                        self.block(body)?;
                    }
                }
                Stmt::Let { var, value } => self.vars[var.index()] = self.expr(value)?,
                Stmt::Update { var, op, value } => {
                    let v = self.expr(value)?;
                    let old = self.vars[var.index()];
                    self.vars[var.index()] = match op {
                        Accum::Sum => old + v,
                        Accum::Max => crate::tir::nan_max(old, v),
                        Accum::Min => crate::tir::nan_min(old, v),
                    };
                }
                Stmt::Store { buf, index, value } => {
                    let v = self.expr(value)?;
                    let (r, o) = self.addr(*buf, index)?;
                    self.mem[r][o] = v;
                }
            }
        }
        Ok(())
    }

    fn expr(&self, e: &Expr) -> Result<T, String> {
        Ok(match e {
            Expr::Const(v) => T::from_f64(*v),
            Expr::Load(b, a) => {
                let (r, o) = self.addr(*b, a)?;
                self.mem[r][o]
            }
            Expr::Gather(b, a, ind) => {
                let mut base = a.clone();
                for i in ind {
                    let mut off = i.at.offset;
                    for &(l, s) in &i.at.terms {
                        off += self.loops[l.index()] * s;
                    }
                    let r = self.region[i.index.index()];
                    let v = usize::try_from(off)
                        .ok()
                        .and_then(|o| self.imem.get(r)?.get(o).copied())
                        .ok_or_else(|| format!("index address {off} of buffer {} is out of bounds", i.index))?;
                    if usize::try_from(v).map_or(true, |v| v >= i.extent) {
                        return Err(format!("index {v} read from buffer {} is outside 0..{}", i.index, i.extent));
                    }
                    base.offset += v * i.stride;
                }
                let (r, o) = self.addr(*b, &base)?;
                self.mem[r][o]
            }
            Expr::Var(v) => self.vars[v.index()],
            Expr::Index(l) => T::from_f64(self.loops[l.index()] as f64),
            Expr::Unary(op, a) => op.apply(self.expr(a)?),
            Expr::Binary(op, a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div => x / y,
                    BinOp::Max => crate::tir::nan_max(x, y),
                    BinOp::Min => crate::tir::nan_min(x, y),
                    BinOp::Pow => x.powf(y),
                    BinOp::Lmul(m) => crate::tir::lmul::lmul(x, y, (*m > 0).then_some(u32::from(*m))),
                }
            }
            Expr::Select(c, a, b) => {
                if self.pred(c)? {
                    self.expr(a)?
                } else {
                    self.expr(b)?
                }
            }
        })
    }

    fn pred(&self, p: &Pred) -> Result<bool, String> {
        Ok(match p {
            Pred::Cmp(op, a, b) => op.apply(self.expr(a)?.to_f64(), self.expr(b)?.to_f64()),
            Pred::And(ps) => {
                for x in ps {
                    if !self.pred(x)? {
                        return Ok(false);
                    }
                }
                true
            }
            Pred::Or(ps) => {
                for x in ps {
                    if self.pred(x)? {
                        return Ok(true);
                    }
                }
                false
            }
            Pred::Not(x) => !self.pred(x)?,
        })
    }

    /// The GEMM as loops, with the runtime's semantics: a C element is overwritten the
    /// first time it is written (unless accumulating), later sum iterations add.
    fn gemm(&mut self, g: &Gemm, tile: Option<(usize, usize, TileRole)>) -> Result<(), String> {
        let (rows, cols) = match tile {
            None => (0..g.m, 0..g.n),
            Some((lo, hi, TileRole::M)) => (lo..hi.min(g.m), 0..g.n),
            Some((lo, hi, TileRole::N)) => (0..g.m, lo..hi.min(g.n)),
        };
        let (ra, rb, rc) = (self.region[g.a.index()], self.region[g.b.index()], self.region[g.c.index()]);
        let total: usize = g.outer.iter().map(|l| l.extent).product();
        let alpha = T::from_f64(g.alpha);
        let at = |base: isize, i: usize, s: isize| base + i as isize * s;
        let base = |b: BufId| self.shift[b.index()] as isize;
        let (sa, sb, sc) = (base(g.a), base(g.b), base(g.c));
        for flat in 0..total {
            let (mut oa, mut ob, mut oc) = (sa, sb, sc);
            let mut rest = flat;
            let mut first = !g.accumulate;
            for l in g.outer.iter().rev() {
                let i = rest % l.extent;
                rest /= l.extent;
                oa += i as isize * l.stride_a;
                ob += i as isize * l.stride_b;
                oc += i as isize * l.stride_c;
                if l.stride_c == 0 && i > 0 {
                    first = false;
                }
            }
            for i in rows.clone() {
                for j in cols.clone() {
                    let mut acc = T::zero();
                    for k in 0..g.k {
                        let a = at(at(oa, i, g.a_strides[0]), k, g.a_strides[1]);
                        let b = at(at(ob, k, g.b_strides[0]), j, g.b_strides[1]);
                        let (a, b) = (self.get(ra, a)?, self.get(rb, b)?);
                        acc = acc + a * b;
                    }
                    let c = at(at(oc, i, g.c_strides[0]), j, g.c_strides[1]);
                    let c = usize::try_from(c).ok().filter(|&c| c < self.mem[rc].len()).ok_or("gemm C out of bounds")?;
                    let v = alpha * acc;
                    self.mem[rc][c] = if first { v } else { self.mem[rc][c] + v };
                }
            }
        }
        Ok(())
    }

    fn get(&self, r: usize, off: isize) -> Result<T, String> {
        usize::try_from(off).ok().and_then(|o| self.mem[r].get(o).copied()).ok_or_else(|| "gemm operand out of bounds".into())
    }
}
