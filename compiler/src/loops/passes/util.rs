//! Helpers the passes share: buffer lifetimes, row-wise access patterns, and renumbering
//! of loops and variables.

use crate::loops::*;

/// Where a buffer is used: the kernels that first and last touch it.
pub(super) fn lifetimes(p: &Program) -> Vec<Option<(usize, usize)>> {
    let mut life: Vec<Option<(usize, usize)>> = vec![None; p.bufs.len()];
    let mut touch = |b: BufId, k: usize| {
        let e = &mut life[b.index()];
        *e = Some(match *e {
            None => (k, k),
            Some((a, _)) => (a, k),
        });
    };
    for (k, kern) in p.kernels.iter().enumerate() {
        kern.buffers_used().into_iter().for_each(|b| touch(b, k));
    }
    life
}

/// Where each buffer is alive in execution order: from the first to the last kernel that
/// touches it, where a kernel of a tile group spans the whole group.
pub(super) fn live_ranges(p: &Program) -> Vec<Option<(usize, usize)>> {
    let span = |k: usize| p.tiles.iter().find(|g| (g.first..=g.last).contains(&k)).map_or((k, k), |g| (g.first, g.last));
    // Groups are disjoint runs of kernels, so spans grow with the kernel index and the
    // first and last use bound every use in between.
    lifetimes(p).into_iter().map(|life| life.map(|(first, last)| (span(first).0, span(last).1))).collect()
}

/// Calls `f` on the address of every load and store of `buf` in `body`.
pub(super) fn for_each_access(body: &[Stmt], buf: BufId, f: &mut dyn FnMut(&Affine)) {
    for st in body {
        let value = match st {
            Stmt::For { body, .. } => {
                for_each_access(body, buf, f);
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
        value.visit(&mut |x| match x {
            Expr::Load(b, a) if *b == buf => f(a),
            // A gathered read may touch any element: reported as an address no row
            // analysis accepts (no stride along any loop, a negative offset).
            Expr::Gather(b, _, ind) if *b == buf || ind.iter().any(|i| i.index == buf) => f(&Affine::constant(-1)),
            _ => {}
        });
    }
}
/// Calls `f` on the address of every load and store of `buf`.
pub(super) fn for_each_access_mut(body: &mut [Stmt], buf: BufId, f: &mut dyn FnMut(&mut Affine)) {
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
        Expr::Gather(b, a, ind) => {
            if *b == buf {
                f(a)
            }
            for i in ind {
                if i.index == buf {
                    f(&mut i.at)
                }
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
/// one (best fit by size, growing a free slot rather than opening a new one). Lifetimes
/// are in execution order: a tile group runs its kernels interleaved, tile by tile, so a
/// The rows of `buf` that statement accesses: Some(row stride) when every access in
/// `body` to it is `row·stride + (something within one row)` with `row` the loop `outer`.
pub(super) fn row_stride(body: &[Stmt], outer: LoopId, buf: BufId, loops: &[LoopInfo]) -> Option<Option<i64>> {
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
    for_each_access(body, buf, &mut check);
    ok.then_some(stride)
}
pub(super) fn renumber(s: &Stmt, ml: &dyn Fn(LoopId) -> LoopId, nv: u32) -> Stmt {
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
        Expr::Gather(b, a, ind) => Expr::Gather(
            *b,
            renumber_affine(a, ml),
            ind.iter().map(|i| Indirect { at: renumber_affine(&i.at, ml), ..i.clone() }).collect(),
        ),
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
