//! Program-level passes over kernels: row fusion and the memory plan.

use super::*;

/// Where a buffer is used: the kernels that first and last touch it.
fn lifetimes(p: &Program) -> Vec<Option<(usize, usize)>> {
    let mut life: Vec<Option<(usize, usize)>> = vec![None; p.bufs.len()];
    let mut touch = |b: BufId, k: usize| {
        let e = &mut life[b.index()];
        *e = Some(match *e {
            None => (k, k),
            Some((a, _)) => (a, k),
        });
    };
    for (k, kern) in p.kernels.iter().enumerate() {
        match kern {
            Kernel::Gemm(g) => [g.a, g.b, g.c].into_iter().for_each(|b| touch(b, k)),
            Kernel::Loops(l) => {
                let (r, w) = l.buffers();
                r.into_iter().chain(w).for_each(|b| touch(b, k));
            }
        }
    }
    life
}

/// Rows of scratch larger than this stay in shared memory (stack space is limited).
const SCRATCH_BYTES: usize = 64 * 1024;

/// Replaces each temporary that only one row-parallel loop kernel touches, and only row
/// by row, by one row of per-thread scratch: iteration r writes row r before it reads
/// it (the kernel is the row fusion of kernels that ran one after another), so rows of
/// different iterations never meet and a thread can reuse one row for all of them.
pub(super) fn localize(p: &mut Program) {
    let life = lifetimes(p);
    let elem = p.dtype.size_of();
    for (b, life) in life.iter().enumerate() {
        let (BufKind::Temp { .. }, Some((first, last))) = (&p.bufs[b].kind, *life) else { continue };
        if first != last {
            continue;
        }
        let Kernel::Loops(k) = &mut p.kernels[first] else { continue };
        let Some((outer, extent)) = k.parallel_loop() else { continue };
        let [Stmt::For { body, .. }] = k.body.as_slice() else { continue };
        let Some(Some(stride)) = row_stride(body, outer, extent, BufId(b as u32), &k.loops) else { continue };
        let row = stride as usize;
        if row.saturating_mul(elem) > SCRATCH_BYTES || row == 0 {
            continue;
        }
        let buf = BufId(b as u32);
        let drop_outer = |a: &mut Affine| a.terms.retain(|t| t.0 != outer);
        for_each_access_mut(&mut k.body, buf, &mut |a| drop_outer(a));
        p.bufs[b].kind = BufKind::Scratch;
        p.bufs[b].shape = vec![row];
    }
}

/// Calls `f` on the address of every load and store of `buf`.
fn for_each_access_mut(body: &mut [Stmt], buf: BufId, f: &mut dyn FnMut(&mut Affine)) {
    for st in body {
        match st {
            Stmt::For { body, .. } => for_each_access_mut(body, buf, f),
            Stmt::Let { value, .. } | Stmt::Update { value, .. } => expr_access_mut(value, buf, f),
            Stmt::Store { buf: b, index, value } => {
                expr_access_mut(value, buf, f);
                if *b == buf {
                    f(index);
                }
            }
        }
    }
}

fn expr_access_mut(e: &mut Expr, buf: BufId, f: &mut dyn FnMut(&mut Affine)) {
    match e {
        Expr::Load(b, a) => {
            if *b == buf {
                f(a)
            }
        }
        Expr::Const(_) | Expr::Var(_) | Expr::Index(_) => {}
        Expr::Unary(_, a) => expr_access_mut(a, buf, f),
        Expr::Binary(_, a, c) => {
            expr_access_mut(a, buf, f);
            expr_access_mut(c, buf, f);
        }
        Expr::Select(p, a, c) => {
            pred_access_mut(p, buf, f);
            expr_access_mut(a, buf, f);
            expr_access_mut(c, buf, f);
        }
    }
}

fn pred_access_mut(p: &mut Pred, buf: BufId, f: &mut dyn FnMut(&mut Affine)) {
    match p {
        Pred::Cmp(_, a, b) => {
            expr_access_mut(a, buf, f);
            expr_access_mut(b, buf, f);
        }
        Pred::And(ps) | Pred::Or(ps) => ps.iter_mut().for_each(|x| pred_access_mut(x, buf, f)),
        Pred::Not(x) => pred_access_mut(x, buf, f),
    }
}

/// Gives every temporary a memory slot; temporaries whose lifetimes do not overlap share
/// one (best fit by size, growing a free slot rather than opening a new one).
pub(super) fn plan_slots(p: &mut Program) {
    let life = lifetimes(p);
    let mut temps: Vec<(usize, usize, usize, usize)> = Vec::new(); // first, last, len, buf
    for (k, b) in p.bufs.iter().enumerate() {
        if let (BufKind::Temp { .. }, Some((first, last))) = (&b.kind, life[k]) {
            temps.push((first, last, b.len(), k));
        }
    }
    temps.sort();
    let mut slots: Vec<usize> = Vec::new();
    let mut busy_until: Vec<usize> = Vec::new();
    let mut assigned: Vec<Option<usize>> = vec![None; p.bufs.len()];
    for &(first, last, len, buf) in &temps {
        let free: Vec<usize> = (0..slots.len()).filter(|&s| busy_until[s] < first).collect();
        let fit = free.iter().copied().filter(|&s| slots[s] >= len).min_by_key(|&s| slots[s]);
        let slot = match fit.or_else(|| free.iter().copied().max_by_key(|&s| slots[s])) {
            Some(s) => {
                slots[s] = slots[s].max(len);
                s
            }
            None => {
                slots.push(len);
                busy_until.push(0);
                slots.len() - 1
            }
        };
        busy_until[slot] = last;
        assigned[buf] = Some(slot);
    }
    // A temporary no kernel touches still needs a home; give it an empty-sized view.
    for (k, b) in p.bufs.iter_mut().enumerate() {
        if let BufKind::Temp { slot } = &mut b.kind {
            *slot = match assigned[k] {
                Some(s) => s,
                None => {
                    slots.push(b.shape.iter().product());
                    slots.len() - 1
                }
            };
        }
    }
    p.slots = slots;
}

/// Fuses consecutive loop kernels that run a parallel loop of the same extent when every
/// buffer the earlier one writes and the later one reads is written and read row by row
/// (iteration r touches only row r). Rows are then produced and consumed by the same
/// thread while they are in cache.
pub(super) fn fuse_rows(kernels: Vec<Kernel>) -> Vec<Kernel> {
    let mut out: Vec<Kernel> = Vec::new();
    for k in kernels {
        if let (Some(Kernel::Loops(prev)), Kernel::Loops(next)) = (out.last_mut(), &k) {
            if let Some(fused) = fuse(prev, next) {
                *prev = fused;
                continue;
            }
        }
        out.push(k);
    }
    out
}

/// The rows of `buf` that statement accesses: Some(row stride) when every access in
/// `body` to it is `row·stride + (something within one row)` with `row` the loop `outer`.
fn row_stride(body: &[Stmt], outer: LoopId, outer_extent: usize, buf: BufId, loops: &[LoopInfo]) -> Option<Option<i64>> {
    let mut stride: Option<i64> = None;
    let mut ok = true;
    let mut check = |a: &Affine| {
        let s = a.stride(outer);
        if s <= 0 || stride.is_some_and(|x| x != s) {
            ok = false;
            return;
        }
        stride = Some(s);
        let (mut lo, mut hi) = (a.offset, a.offset);
        for &(l, st) in &a.terms {
            if l == outer {
                continue;
            }
            let reach = (loops[l.index()].extent.max(1) as i64 - 1) * st;
            if reach < 0 {
                lo += reach
            } else {
                hi += reach
            }
        }
        if lo < 0 || hi >= s {
            ok = false;
        }
    };
    fn walk(body: &[Stmt], buf: BufId, f: &mut dyn FnMut(&Affine)) {
        for st in body {
            let e = match st {
                Stmt::For { body, .. } => {
                    walk(body, buf, f);
                    continue;
                }
                Stmt::Let { value, .. } | Stmt::Update { value, .. } => value,
                Stmt::Store { buf: b, index, value } => {
                    if *b == buf {
                        f(index);
                    }
                    value
                }
            };
            e.visit(&mut |x| {
                if let Expr::Load(b, a) = x {
                    if *b == buf {
                        f(a);
                    }
                }
            });
        }
    }
    let _ = outer_extent;
    walk(body, buf, &mut check);
    ok.then_some(stride)
}

fn fuse(a: &LoopKernel, b: &LoopKernel) -> Option<LoopKernel> {
    let (la, ea) = a.parallel_loop()?;
    let (lb, eb) = b.parallel_loop()?;
    if ea != eb {
        return None;
    }
    let (a_reads, a_writes) = a.buffers();
    let (_, b_writes) = b.buffers();
    if b_writes.iter().any(|w| a_reads.contains(w) || a_writes.contains(w)) {
        return None;
    }
    let [Stmt::For { body: abody, .. }] = a.body.as_slice() else { return None };
    let [Stmt::For { body: bbody, .. }] = b.body.as_slice() else { return None };
    for &w in &a_writes {
        let in_b = row_stride(bbody, lb, eb, w, &b.loops)?;
        if let Some(sb) = in_b {
            let sa = row_stride(abody, la, ea, w, &a.loops)?;
            if sa != Some(sb) {
                return None;
            }
        }
    }
    // Renumber b's loops and variables after a's; its parallel loop becomes a's.
    let nl = a.loops.len() as u32;
    let nv = a.vars.len() as u32;
    let map_loop = |l: LoopId| if l == lb { la } else { LoopId(l.0 + nl) };
    let mut body = abody.clone();
    body.extend(bbody.iter().map(|s| renumber(s, &map_loop, nv)));
    let mut loops = a.loops.clone();
    let mut used: Vec<String> = loops.iter().map(|l| l.name.clone()).collect();
    for l in &b.loops {
        let mut name = l.name.clone();
        let mut n = 1;
        while used.contains(&name) {
            name = format!("{}{n}", l.name);
            n += 1;
        }
        used.push(name.clone());
        loops.push(LoopInfo { name, extent: l.extent });
    }
    let mut vars = a.vars.clone();
    vars.extend(b.vars.iter().enumerate().map(|(k, _)| format!("{}{}", b.vars[k].trim_end_matches(char::is_numeric), nv as usize + k)));
    let mut steps = a.steps.clone();
    steps.extend(b.steps.iter().copied());
    Some(LoopKernel {
        name: format!("{}+{}", a.name, b.name),
        steps,
        loops,
        vars,
        body: vec![Stmt::For { id: la, extent: ea, parallel: true, body }],
    })
}

fn renumber(s: &Stmt, ml: &dyn Fn(LoopId) -> LoopId, nv: u32) -> Stmt {
    let mv = |v: VarId| VarId(v.0 + nv);
    match s {
        Stmt::For { id, extent, parallel, body } => {
            Stmt::For { id: ml(*id), extent: *extent, parallel: *parallel, body: body.iter().map(|x| renumber(x, ml, nv)).collect() }
        }
        Stmt::Let { var, value } => Stmt::Let { var: mv(*var), value: renumber_expr(value, ml, nv) },
        Stmt::Update { var, op, value } => Stmt::Update { var: mv(*var), op: *op, value: renumber_expr(value, ml, nv) },
        Stmt::Store { buf, index, value } => {
            Stmt::Store { buf: *buf, index: renumber_affine(index, ml), value: renumber_expr(value, ml, nv) }
        }
    }
}

fn renumber_affine(a: &Affine, ml: &dyn Fn(LoopId) -> LoopId) -> Affine {
    Affine { offset: a.offset, terms: a.terms.iter().map(|&(l, s)| (ml(l), s)).collect() }
}

fn renumber_expr(e: &Expr, ml: &dyn Fn(LoopId) -> LoopId, nv: u32) -> Expr {
    let r = |x: &Expr| Box::new(renumber_expr(x, ml, nv));
    match e {
        Expr::Const(v) => Expr::Const(*v),
        Expr::Load(b, a) => Expr::Load(*b, renumber_affine(a, ml)),
        Expr::Var(v) => Expr::Var(VarId(v.0 + nv)),
        Expr::Index(l) => Expr::Index(ml(*l)),
        Expr::Unary(op, a) => Expr::Unary(*op, r(a)),
        Expr::Binary(op, a, b) => Expr::Binary(*op, r(a), r(b)),
        Expr::Select(p, a, b) => Expr::Select(Box::new(renumber_pred(p, ml, nv)), r(a), r(b)),
    }
}

fn renumber_pred(p: &Pred, ml: &dyn Fn(LoopId) -> LoopId, nv: u32) -> Pred {
    match p {
        Pred::Cmp(op, a, b) => Pred::Cmp(*op, renumber_expr(a, ml, nv), renumber_expr(b, ml, nv)),
        Pred::And(ps) => Pred::And(ps.iter().map(|x| renumber_pred(x, ml, nv)).collect()),
        Pred::Or(ps) => Pred::Or(ps.iter().map(|x| renumber_pred(x, ml, nv)).collect()),
        Pred::Not(x) => Pred::Not(Box::new(renumber_pred(x, ml, nv))),
    }
}
