//! The loop IR verifier: ids resolve, loops and variables are in scope, every address
//! any kernel touches lies inside its buffer, nothing writes an input or a constant, the
//! stores of a parallel loop depend on its counter, and temporaries that share a memory
//! slot are never alive at the same time; a streamed tile group's blocks, shifts, fill and
//! mask are consistent, and shifted buffers stay in bounds for every block start. A
//! failure is always a bug.
//!
//! What holds depends on how far the passes got (`Stage`): memory slots exist only after
//! the memory plan, so before it the verifier checks that there are none instead.

use super::*;

/// How far a program is through the pass pipeline, for the checks that depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Lowered, and possibly restructured: temporaries have no memory slot yet, so the
    /// program's slot list is empty (and `BufKind::Temp`'s slot means nothing).
    Kernels,
    /// After the memory plan: every temporary's slot exists and fits it, and temporaries
    /// that share a slot are never alive at the same time. Backends take only this.
    Planned,
}

/// Checks a program ready for a backend (`Stage::Planned`); the error names the kernel
/// and what is wrong.
pub fn verify(p: &Program) -> Result<(), String> {
    verify_at(p, Stage::Planned)
}

/// Checks `p` as a program at `stage`.
pub fn verify_at(p: &Program, stage: Stage) -> Result<(), String> {
    if stage == Stage::Kernels && !p.slots.is_empty() {
        return Err(format!("{} memory slots exist before the memory plan", p.slots.len()));
    }
    for (k, b) in p.bufs.iter().enumerate() {
        if let (BufKind::Temp { slot }, Stage::Planned) = (&b.kind, stage) {
            let slot = *slot;
            let size = p.slots.get(slot).ok_or_else(|| format!("buffer {} uses missing slot {slot}", b.name))?;
            if *size < b.len() {
                return Err(format!("buffer {} ({} elements) does not fit slot {slot} ({size})", b.name, b.len()));
            }
        }
        if let BufKind::Const(v) = &b.kind {
            if v.len() != b.len() {
                return Err(format!("constant {} has {} values for {} elements", b.name, v.len(), b.len()));
            }
        }
        let listed = |ids: &[BufId], i: usize| ids.get(i) == Some(&BufId(k as u32));
        match b.kind {
            BufKind::Input(i) if !listed(&p.inputs, i) => return Err(format!("input {} is not argument {i}", b.name)),
            BufKind::Index(i) if !listed(&p.indices, i) => return Err(format!("index {} is not index argument {i}", b.name)),
            BufKind::Output(i) if !listed(&p.outputs, i) => return Err(format!("output {} is not result {i}", b.name)),
            _ => {}
        }
    }
    for &b in p.inputs.iter().chain(&p.outputs).chain(&p.indices) {
        if b.index() >= p.bufs.len() {
            return Err(format!("argument or result {b} does not exist"));
        }
    }
    tile_groups(p)?;
    if stage == Stage::Planned {
        slots_disjoint(p)?;
    }
    let mut scratch_user: Vec<Option<usize>> = vec![None; p.bufs.len()];
    for (k, kern) in p.kernels.iter().enumerate() {
        for b in kern.buffers_used() {
            if matches!(p.bufs.get(b.index()).map(|x| &x.kind), Some(BufKind::Scratch)) {
                if matches!(kern, Kernel::Gemm(_)) {
                    return Err(format!("kernel {k}: a GEMM uses scratch buffer {}", p.buf(b).name));
                }
                if let Some(other) = scratch_user[b.index()].replace(k) {
                    if other != k {
                        return Err(format!("scratch buffer {} is used by kernels {other} and {k}", p.buf(b).name));
                    }
                }
            }
        }
    }
    for (k, kern) in p.kernels.iter().enumerate() {
        let shifts = shift_dims(p, k);
        let r = match kern {
            Kernel::Gemm(g) => gemm(p, g, &shifts),
            Kernel::Loops(l) => loops(p, l, &shifts),
        };
        r.map_err(|e| format!("kernel {k}: {e}"))?;
    }
    Ok(())
}

/// Tile groups cover runs of kernels that can run on a tile of rows, and tile buffers are
/// used only inside their group.
fn tile_groups(p: &Program) -> Result<(), String> {
    for (n, g) in p.tiles.iter().enumerate() {
        if g.first > g.last || g.last >= p.kernels.len() || g.roles.len() != g.last - g.first + 1 || g.tile == 0 {
            return Err(format!("tile group {n} is malformed: {g:?}"));
        }
        if g.factors.len() != g.roles.len() {
            return Err(format!("tile group {n} has {} factors for {} kernels", g.factors.len(), g.roles.len()));
        }
        for ((k, role), &factor) in (g.first..=g.last).zip(&g.roles).zip(&g.factors) {
            let ok = match (&p.kernels[k], role) {
                (Kernel::Gemm(gm), Some(TileRole::M)) => {
                    factor >= 1 && gm.outer.is_empty() && g.extent.checked_mul(factor) == Some(gm.m)
                }
                (Kernel::Gemm(gm), Some(TileRole::N)) => factor == 1 && gm.outer.is_empty() && gm.n == g.extent,
                (Kernel::Loops(l), None) => factor == 1 && l.parallel_loop().is_some_and(|(_, e)| e == g.extent),
                _ => false,
            };
            if !ok {
                return Err(format!("kernel {k} cannot run by tiles of tile group {n} (factor {factor})"));
            }
        }
        if let Some(s) = &g.stream {
            stream(p, g, s).map_err(|e| format!("tile group {n}: stream: {e}"))?;
        }
    }
    for (k, kern) in p.kernels.iter().enumerate() {
        for b in kern.buffers_used() {
            if matches!(p.bufs.get(b.index()).map(|x| &x.kind), Some(BufKind::Tile { .. }))
                && !p.tiles.iter().any(|g| (g.first..=g.last).contains(&k) && g.local.contains(&b))
            {
                return Err(format!("kernel {k} uses tile buffer {} outside its tile group", p.buf(b).name));
            }
        }
    }
    Ok(())
}

/// A streamed group (see `Stream`): axis ranges nest inside the group, blocks fit their
/// keys, shifted buffers are read-only and used only by their axis's kernels (their
/// addresses are checked for every block start by `shift_dims`), loop kernels of the
/// block ranges do not compute with loop counters (keys are block-relative there), the
/// score fill stays inside a row of a tile buffer the fill kernel writes, and the mask's
/// integers cannot overflow.
fn stream(p: &Program, g: &TileGroup, s: &Stream) -> Result<(), String> {
    let Some(inner) = s.axes.last() else { return Err("no stream axis".into()) };
    let mut outer: Option<&StreamAxis> = None;
    for a in &s.axes {
        let (lo, hi) = a.kernels;
        if a.block == 0 || a.block > a.extent {
            return Err(format!("axis {} has blocks of {} keys of {}", a.name, a.block, a.extent));
        }
        if a.name.is_empty() || s.axes.iter().filter(|b| b.name == a.name).count() > 1 {
            return Err(format!("axis name `{}` is empty or not unique", a.name));
        }
        let inside = match outer {
            None => g.first <= lo && lo <= hi && hi <= g.last,
            Some(o) => o.kernels.0 <= lo && lo <= hi && hi <= o.kernels.1 && (o.kernels.0, o.kernels.1) != (lo, hi),
        };
        if !inside {
            return Err(format!("the kernels {lo}..={hi} of axis {} do not nest in the group or the outer axis", a.name));
        }
        outer = Some(a);
    }
    let (lo, hi) = (s.axes[0].kernels.0, s.axes[0].kernels.1);
    for sh in &s.shifts {
        let a = s.axes.get(sh.axis).ok_or_else(|| format!("a shift names axis {}", sh.axis))?;
        let buf = p.bufs.get(sh.buf.index()).ok_or_else(|| format!("shifted buffer {} does not exist", sh.buf))?;
        if matches!(buf.kind, BufKind::Tile { .. } | BufKind::Scratch) {
            return Err(format!("shifted buffer {} is a per-thread buffer", buf.name));
        }
        for k in g.first..=g.last {
            if kernel_writes(&p.kernels[k], sh.buf) {
                return Err(format!("kernel {k} writes shifted buffer {}", buf.name));
            }
            let in_range = (a.kernels.0..=a.kernels.1).contains(&k);
            if !in_range && p.kernels[k].buffers_used().contains(&sh.buf) {
                return Err(format!("kernel {k} uses {}, shifted along {}, outside that axis's kernels", buf.name, a.name));
            }
        }
    }
    for k in lo..=hi {
        if let Kernel::Loops(l) = &p.kernels[k] {
            let par = l.parallel_loop().map(|x| x.0);
            let mut bad = None;
            for st in &l.body {
                visit_exprs(st, &mut |e| {
                    if let Expr::Index(x) = e {
                        if Some(*x) != par {
                            bad = Some(*x);
                        }
                    }
                });
            }
            if let Some(x) = bad {
                let name = l.loops.get(x.index()).map_or_else(|| x.to_string(), |i| i.name.clone());
                return Err(format!("kernel {k} uses the counter of loop {name}, but keys in a block are relative"));
            }
        }
    }
    let scores = p.bufs.get(s.scores.index()).ok_or_else(|| format!("scores buffer {} does not exist", s.scores))?;
    let BufKind::Tile { row } = scores.kind else { return Err(format!("scores buffer {} is not a tile buffer", scores.name)) };
    if !g.local.contains(&s.scores) || Some(scores.len()) != g.extent.checked_mul(row) {
        return Err(format!("scores buffer {} is not a tile buffer of the group's rows", scores.name));
    }
    if !(inner.kernels.0..=inner.kernels.1).contains(&s.fill_after) || !kernel_writes(&p.kernels[s.fill_after], s.scores) {
        return Err(format!(
            "the fill comes after kernel {}, which is not a kernel of the innermost axis that writes {}",
            s.fill_after, scores.name
        ));
    }
    if s.score_strides.len() != s.axes.len() || s.score_strides.iter().any(|&x| x < 0) {
        return Err(format!("key strides {:?} for {} axes", s.score_strides, s.axes.len()));
    }
    let reach = s.axes.iter().zip(&s.score_strides).map(|(a, &st)| (a.block as i128 - 1) * st as i128).sum::<i128>();
    if reach >= row as i128 {
        return Err(format!("a block of scores reaches offset {reach} of a row of {row}"));
    }
    for c in &s.mask {
        if c.keys.len() != s.axes.len() {
            return Err(format!("a mask comparison has {} key coefficients for {} axes", c.keys.len(), s.axes.len()));
        }
        let size = |a: i64, n: usize| a.unsigned_abs() as u128 * n as u128;
        let total = size(c.row, g.extent)
            + c.keys.iter().zip(&s.axes).map(|(&a, x)| size(a, x.extent)).sum::<u128>()
            + c.constant.unsigned_abs() as u128;
        if total >= 1 << 62 {
            return Err("a mask comparison's integers may reach 2^62".into());
        }
    }
    Ok(())
}

/// Whether kernel `k` writes buffer `b`.
fn kernel_writes(k: &Kernel, b: BufId) -> bool {
    match k {
        Kernel::Gemm(g) => g.c == b,
        Kernel::Loops(l) => l.buffers().1.contains(&b),
    }
}

fn visit_exprs(st: &Stmt, f: &mut dyn FnMut(&Expr)) {
    match st {
        Stmt::For { body, .. } => body.iter().for_each(|x| visit_exprs(x, f)),
        Stmt::Let { value, .. } | Stmt::Update { value, .. } | Stmt::Store { value, .. } => value.visit(f),
    }
}

/// For kernel `k`, the buffers a stream shifts with the extra dimension of their base:
/// the block start takes every value in `0..=extent - block`, so with affine addresses
/// checking both ends of that range covers every block.
fn shift_dims(p: &Program, k: usize) -> Vec<(BufId, (usize, i64))> {
    let mut out = Vec::new();
    for g in p.tiles.iter().filter(|g| (g.first..=g.last).contains(&k)) {
        if let Some(s) = &g.stream {
            for sh in &s.shifts {
                if let Some(a) = s.axes.get(sh.axis) {
                    out.push((sh.buf, (a.extent.saturating_sub(a.block) + 1, sh.stride)));
                }
            }
        }
    }
    out
}

/// No two temporaries alive at the same time share a memory slot. Time is execution
/// order: kernels run one after another, except that a tile group runs its kernels
/// interleaved tile by tile, so the whole group is one moment.
fn slots_disjoint(p: &Program) -> Result<(), String> {
    let mut moment = Vec::with_capacity(p.kernels.len());
    let mut now = 0;
    let in_group = |k: usize| p.tiles.iter().position(|g| (g.first..=g.last).contains(&k));
    for k in 0..p.kernels.len() {
        if k > 0 && (in_group(k).is_none() || in_group(k) != in_group(k - 1)) {
            now += 1;
        }
        moment.push(now);
    }
    let mut alive: Vec<Option<(usize, usize)>> = vec![None; p.bufs.len()];
    for (k, kern) in p.kernels.iter().enumerate() {
        for b in kern.buffers_used() {
            if let Some(e) = alive.get_mut(b.index()) {
                let t = moment[k];
                *e = Some(e.map_or((t, t), |(a, z)| (a.min(t), z.max(t))));
            }
        }
    }
    let mut by_slot: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); p.slots.len()];
    for (b, buf) in p.bufs.iter().enumerate() {
        if let (BufKind::Temp { slot }, Some((a, z))) = (&buf.kind, alive[b]) {
            if let Some(list) = by_slot.get_mut(*slot) {
                list.push((a, z, b));
            }
        }
    }
    for (slot, mut list) in by_slot.into_iter().enumerate() {
        list.sort();
        for w in list.windows(2) {
            let ((_, z0, b0), (a1, _, b1)) = (w[0], w[1]);
            if a1 <= z0 {
                return Err(format!(
                    "buffers {} and {} share slot {slot} but are alive at the same time",
                    p.bufs[b0].name, p.bufs[b1].name
                ));
            }
        }
    }
    Ok(())
}

fn writable(p: &Program, b: BufId) -> Result<(), String> {
    match p.bufs.get(b.index()).map(|x| &x.kind) {
        None => Err(format!("buffer {b} does not exist")),
        Some(BufKind::Input(_)) | Some(BufKind::Const(_)) | Some(BufKind::Index(_)) => {
            Err(format!("writes {}, which is read-only", p.buf(b).name))
        }
        Some(_) => Ok(()),
    }
}

/// The lowest and highest offset of `base + Σ extent_i·stride_i`, or None if empty.
/// An address that overflows `i64` is out of every buffer (Err).
fn span(base: i64, dims: &[(usize, i64)]) -> Result<Option<(i64, i64)>, ()> {
    let (mut lo, mut hi) = (base, base);
    if dims.iter().any(|d| d.0 == 0) {
        return Ok(None);
    }
    for &(extent, stride) in dims {
        let reach = i64::try_from(extent - 1).ok().and_then(|e| e.checked_mul(stride)).ok_or(())?;
        if reach < 0 {
            lo = lo.checked_add(reach).ok_or(())?;
        } else {
            hi = hi.checked_add(reach).ok_or(())?;
        }
    }
    Ok(Some((lo, hi)))
}

/// Every address `base + Σ extent_i·stride_i` of `b` (moved by every block start of a
/// stream shift in `shifts`) lies inside it.
fn in_bounds(p: &Program, b: BufId, base: i64, dims: &[(usize, i64)], shifts: &[(BufId, (usize, i64))], what: &str) -> Result<(), String> {
    let buf = p.bufs.get(b.index()).ok_or_else(|| format!("{what}: buffer {b} does not exist"))?;
    let mut dims = dims.to_vec();
    dims.extend(shifts.iter().filter(|s| s.0 == b).map(|s| s.1));
    let span = span(base, &dims).map_err(|_| format!("{what}: an address of {} overflows", buf.name))?;
    if let Some((lo, hi)) = span {
        if lo < 0 || hi >= buf.len() as i64 {
            return Err(format!("{what}: {} is accessed at {lo}..={hi}, outside its {} elements", buf.name, buf.len()));
        }
    }
    Ok(())
}

fn gemm(p: &Program, g: &Gemm, shifts: &[(BufId, (usize, i64))]) -> Result<(), String> {
    writable(p, g.c)?;
    let outer = |f: fn(&GemmLoop) -> isize| g.outer.iter().map(|l| (l.extent, f(l) as i64)).collect::<Vec<_>>();
    let mut a = outer(|l| l.stride_a);
    a.extend([(g.m, g.a_strides[0] as i64), (g.k, g.a_strides[1] as i64)]);
    let mut b = outer(|l| l.stride_b);
    b.extend([(g.k, g.b_strides[0] as i64), (g.n, g.b_strides[1] as i64)]);
    let mut c = outer(|l| l.stride_c);
    c.extend([(g.m, g.c_strides[0] as i64), (g.n, g.c_strides[1] as i64)]);
    if g.m > 0 && g.n > 0 && g.outer.iter().all(|l| l.extent > 0) && g.k > 0 {
        in_bounds(p, g.a, 0, &a, shifts, "gemm A")?;
        in_bounds(p, g.b, 0, &b, shifts, "gemm B")?;
    }
    in_bounds(p, g.c, 0, &c, shifts, "gemm C")?;
    if [g.a, g.b, g.c].iter().any(|b| matches!(p.bufs.get(b.index()).map(|x| &x.kind), Some(BufKind::Index(_)))) {
        return Err("gemm on an index buffer".into());
    }
    if g.a == g.c || g.b == g.c {
        return Err("gemm reads the buffer it writes".into());
    }
    Ok(())
}

struct Scope<'a> {
    p: &'a Program,
    shifts: &'a [(BufId, (usize, i64))],
    k: &'a LoopKernel,
    loops: Vec<(LoopId, usize)>,
    seen_loops: Vec<bool>,
    vars: Vec<bool>,
    parallel: Option<LoopId>,
}

fn loops(p: &Program, k: &LoopKernel, shifts: &[(BufId, (usize, i64))]) -> Result<(), String> {
    let mut s = Scope {
        p,
        shifts,
        k,
        loops: Vec::new(),
        seen_loops: vec![false; k.loops.len()],
        vars: vec![false; k.vars.len()],
        parallel: None,
    };
    for (n, st) in k.body.iter().enumerate() {
        if let Stmt::For { parallel: true, .. } = st {
            if k.body.len() != 1 {
                return Err(format!("parallel loop at position {n} is not the kernel's whole body"));
            }
        }
    }
    s.block(&k.body, 0)
}

impl Scope<'_> {
    fn block(&mut self, body: &[Stmt], depth: usize) -> Result<(), String> {
        let defined = self.vars.clone();
        for st in body {
            match st {
                Stmt::For { id, extent, parallel, body } => {
                    let info = self.k.loops.get(id.index()).ok_or_else(|| format!("loop {id} is not declared"))?;
                    if info.extent != *extent {
                        return Err(format!("loop {} has extent {extent}, declared {}", info.name, info.extent));
                    }
                    if std::mem::replace(&mut self.seen_loops[id.index()], true) {
                        return Err(format!("loop {} is used twice", info.name));
                    }
                    if *parallel {
                        if depth != 0 {
                            return Err(format!("parallel loop {} is not outermost", info.name));
                        }
                        self.parallel = Some(*id);
                    }
                    self.loops.push((*id, *extent));
                    self.block(body, depth + 1)?;
                    self.loops.pop();
                }
                Stmt::Let { var, value } => {
                    self.expr(value)?;
                    *self.vars.get_mut(var.index()).ok_or_else(|| format!("variable {var} is not declared"))? = true;
                }
                Stmt::Update { var, value, .. } => {
                    self.expr(value)?;
                    self.var(*var)?;
                }
                Stmt::Store { buf, index, value } => {
                    self.expr(value)?;
                    writable(self.p, *buf)?;
                    self.address(*buf, index, "store")?;
                    let private = matches!(self.p.buf(*buf).kind, BufKind::Scratch);
                    if let (Some(par), false) = (self.parallel, private) {
                        if index.stride(par) == 0 {
                            return Err(format!(
                                "store to {} does not depend on the parallel loop, so threads would race",
                                self.p.buf(*buf).name
                            ));
                        }
                    }
                }
            }
        }
        // Variables defined in a block go out of scope with it.
        self.vars = defined;
        Ok(())
    }

    fn var(&self, v: VarId) -> Result<(), String> {
        match self.vars.get(v.index()) {
            Some(true) => Ok(()),
            Some(false) => Err(format!("variable {} is used before it is defined", self.k.vars[v.index()])),
            None => Err(format!("variable {v} is not declared")),
        }
    }

    fn address(&self, b: BufId, a: &Affine, what: &str) -> Result<(), String> {
        let mut dims = Vec::new();
        for &(l, stride) in &a.terms {
            let &(_, extent) =
                self.loops.iter().find(|x| x.0 == l).ok_or_else(|| format!("{what}: loop {l} is not in scope"))?;
            dims.push((extent, stride));
        }
        // An address inside an empty loop is never computed.
        if self.loops.iter().any(|x| x.1 == 0) {
            return Ok(());
        }
        in_bounds(self.p, b, a.offset, &dims, self.shifts, what)
    }

    fn is_index(&self, b: BufId) -> bool {
        matches!(self.p.bufs.get(b.index()).map(|x| &x.kind), Some(BufKind::Index(_)))
    }

    /// A gathered load: each index is read at an affine address inside its index
    /// buffer, and the address is inside the source for every index value in
    /// `0..extent` (the executor checks the values before the kernels run).
    fn gather(&self, b: BufId, a: &Affine, ind: &[Indirect]) -> Result<(), String> {
        if ind.is_empty() {
            return Err("a gather without indirect terms".into());
        }
        let mut dims = Vec::new();
        for &(l, stride) in &a.terms {
            let &(_, extent) = self.loops.iter().find(|x| x.0 == l).ok_or_else(|| format!("gather: loop {l} is not in scope"))?;
            dims.push((extent, stride));
        }
        for i in ind {
            if !self.is_index(i.index) {
                return Err(format!("gather: {} is not an index buffer", self.p.bufs.get(i.index.index()).map_or("?", |x| x.name.as_str())));
            }
            self.address(i.index, &i.at, "index load")?;
            dims.push((i.extent, i.stride));
        }
        if self.loops.iter().any(|x| x.1 == 0) {
            return Ok(());
        }
        in_bounds(self.p, b, a.offset, &dims, self.shifts, "gather")
    }

    fn expr(&self, e: &Expr) -> Result<(), String> {
        let mut err = Ok(());
        e.visit(&mut |x| {
            if err.is_err() {
                return;
            }
            err = match x {
                Expr::Load(b, _) | Expr::Gather(b, ..) if self.is_index(*b) => {
                    Err(format!("index buffer {} is read as a value", self.p.buf(*b).name))
                }
                Expr::Load(b, a) => self.address(*b, a, "load"),
                Expr::Gather(b, a, ind) => self.gather(*b, a, ind),
                Expr::Var(v) => self.var(*v),
                Expr::Index(l) if !self.loops.iter().any(|x| x.0 == *l) => Err(format!("index of loop {l} out of scope")),
                Expr::Const(_) | Expr::Index(_) | Expr::Unary(..) | Expr::Binary(..) | Expr::Select(..) => Ok(()),
            };
        });
        err
    }
}
