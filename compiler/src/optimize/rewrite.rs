//! TIR → TIR rewrites that run before the algebra pass and the plan builder, so that
//! both see contractions that the program's written form hides.
//!
//! - **Selects come out of reductions.** `Σ_a select(c, e, f)` with a condition that does
//!   not use `a` is `select(c, Σ_a e, Σ_a f)`: every term of the sum takes the same branch.
//!   The reduction of a branch that does not use `a` is folded with the concrete range
//!   (`Σ_a x = |a|·x` for `|a| ≥ 1`, `0` for an empty range; `max_a x = x`, or `-inf` for
//!   an empty range), so a causal mask `select(j <= i, Q[i, a] * K[j, a], -inf)` becomes a
//!   GEMM followed by a map. The same holds for `max` and `min`. This is exact (the same
//!   values are combined, up to the order of a sum, as the planner's own splitting does),
//!   so it runs with and without the algebra pass.
//! - **Flat reads of grouped definitions are inlined.** `y[m] = K[m, t] * x[t]` with
//!   `K[(i, k), (j, l)] = A[i, j] * B[k, l]` becomes
//!   `y[(i, k)] = A[i, j] * B[k, l] * x[(j, l)]`: each flat index is split into the
//!   group's members (row-major flattening makes `m` and `(i, k)` the same element), then
//!   the definition is substituted. The result is kept only where the plan's FLOP count
//!   (the caller's cost model) drops, since inlining recomputes a definition once per
//!   reader. It reassociates products, so it runs only with the algebra pass.
//!
//! Plans are built for concrete sizes, so the rewrites use the bound ranges.

use crate::tir::{self, Bindings, Cond, Expr, Function, IndexId, IndexVar, Position, ReduceOp, Size, Stmt, TensorId, TensorKind};

/// What [`rewrite`] changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Selects pulled out of a reduction.
    pub selects: usize,
    /// Grouped definitions inlined into their readers, by tensor name.
    pub inlined: Vec<String>,
}

/// Rewrites `f` for the sizes in `b`. `inline_groups` enables the (algebraic) inlining of
/// grouped definitions, judged by `cost`: the FLOPs of a plan of a function, `None` when it
/// cannot be planned. The result verifies; an error is a bug in this pass.
pub fn rewrite(
    f: &Function,
    b: &Bindings,
    inline_groups: bool,
    cost: &dyn Fn(&Function) -> Option<f64>,
) -> Result<(Function, Report), String> {
    let mut g = f.clone();
    let mut report = Report::default();
    if inline_groups {
        inline_grouped(&mut g, cost, &mut report);
    }
    report.selects = pull_selects(&mut g, b);
    tir::verify(&g).map_err(|e| format!("rewritten program does not verify: {e}\n{g}"))?;
    Ok((g, report))
}

fn free(e: &Expr) -> Vec<IndexId> {
    let mut v = Vec::new();
    e.free_indices(&mut v);
    v
}

fn cond_free(c: &Cond) -> Vec<IndexId> {
    let mut v = Vec::new();
    c.free_indices(&mut v);
    v
}

/// Indices free in `rhs` and not on the left, in order of first appearance (the
/// verifier's definition of a statement's reduction set).
fn reduction_set(lhs: &[Position], rhs: &Expr) -> Vec<IndexId> {
    free(rhs).into_iter().filter(|i| !lhs.iter().flatten().any(|l| l == i)).collect()
}

// ---------------------------------------------------------------------------------------
// Selects out of reductions.

/// Pulls selects out of every reduction of every statement; returns how many.
fn pull_selects(f: &mut Function, b: &Bindings) -> usize {
    let mut count = 0;
    for s in &mut f.stmts {
        let ranges: Vec<Option<u64>> = s.indices.iter().map(|v| v.range.eval(b).ok()).collect();
        let mut p = Pull { ranges: &ranges, count: 0 };
        let rhs = p.expr(std::mem::replace(&mut s.rhs, Expr::Lit(0.0)));
        s.rhs = if s.reduced.is_empty() {
            rhs
        } else {
            match p.reduce(s.op, &s.reduced, rhs) {
                Ok(e) => {
                    // The statement's own reduction moved into the right side.
                    s.op = ReduceOp::Sum;
                    e
                }
                Err(e) => e,
            }
        };
        s.reduced = reduction_set(&s.lhs, &s.rhs);
        count += p.count;
    }
    count
}

struct Pull<'a> {
    /// Each index's concrete range (`None` if unbound).
    ranges: &'a [Option<u64>],
    count: usize,
}

/// A step into a child on the multiplicative spine of an expression.
#[derive(Clone, Copy)]
enum Step {
    Factor(usize),
    Num,
    Den,
    Neg,
}

impl Pull<'_> {
    /// Rewrites inline reductions bottom-up.
    fn expr(&mut self, e: Expr) -> Expr {
        match e {
            Expr::Reduce(op, ids, body) => {
                let body = self.expr(*body);
                match self.reduce(op, &ids, body) {
                    Ok(x) => x,
                    Err(body) => Expr::Reduce(op, ids, Box::new(body)),
                }
            }
            Expr::Neg(a) => Expr::Neg(Box::new(self.expr(*a))),
            Expr::Add(xs) => Expr::Add(xs.into_iter().map(|x| self.expr(x)).collect()),
            Expr::Mul(xs) => Expr::Mul(xs.into_iter().map(|x| self.expr(x)).collect()),
            Expr::Call(f, xs) => Expr::Call(f, xs.into_iter().map(|x| self.expr(x)).collect()),
            Expr::Sub(a, b) => Expr::Sub(Box::new(self.expr(*a)), Box::new(self.expr(*b))),
            Expr::Div(a, b) => Expr::Div(Box::new(self.expr(*a)), Box::new(self.expr(*b))),
            Expr::Select(c, a, b) => Expr::Select(c, Box::new(self.expr(*a)), Box::new(self.expr(*b))),
            other => other,
        }
    }

    /// `op` over `ids` of `body` with a select pulled out, or `body` back when no select
    /// on its multiplicative spine has a condition free of some of `ids`.
    ///
    /// Only the spine (factors, numerator, denominator, negation) is searched: a select
    /// there scales the whole term, so lifting it copies nothing but the other factors,
    /// which both branches need anyway. Lifting out of a sum would duplicate its other
    /// terms.
    fn reduce(&mut self, op: ReduceOp, ids: &[IndexId], body: Expr) -> Result<Expr, Expr> {
        let Some(path) = find_select(&body, ids, &mut Vec::new()) else { return Err(body) };
        let Some(Expr::Select(c, _, _)) = at(&body, &path) else { return Err(body) };
        let c = (**c).clone();
        let used = cond_free(&c);
        let (outer, inner): (Vec<IndexId>, Vec<IndexId>) = ids.iter().partition(|i| used.contains(i));
        let (on, off) = branches(body, &path);
        self.count += 1;
        let on = self.reduce(op, &inner, on).unwrap_or_else(|e| self.fold(op, &inner, e));
        let off = self.reduce(op, &inner, off).unwrap_or_else(|e| self.fold(op, &inner, e));
        let sel = Expr::Select(Box::new(c), Box::new(on), Box::new(off));
        Ok(if outer.is_empty() { sel } else { Expr::Reduce(op, outer, Box::new(sel)) })
    }

    /// `op` over `ids` of `e`, folded when the range is empty or `e` uses none of `ids`.
    fn fold(&self, op: ReduceOp, ids: &[IndexId], e: Expr) -> Expr {
        let n = ids.iter().try_fold(1u64, |acc, i| self.ranges.get(i.index()).copied().flatten().and_then(|r| acc.checked_mul(r)));
        let body_free = free(&e);
        let constant = ids.iter().all(|i| !body_free.contains(i));
        match (op, n) {
            // An empty reduction is its identity, whatever it would have combined. (This
            // also keeps factors outside an empty sum, such as `/ sqrt(d)` with d = 0, from
            // being applied to it: 0 / 0 where the program sums nothing.)
            (ReduceOp::Sum, Some(0)) => Expr::Lit(0.0),
            (ReduceOp::Max, Some(0)) => Expr::Lit(f64::NEG_INFINITY),
            (ReduceOp::Min, Some(0)) => Expr::Lit(f64::INFINITY),
            (_, Some(n)) if constant => match op {
                // The max or min of copies of a value is that value (NaN included).
                ReduceOp::Max | ReduceOp::Min => e,
                ReduceOp::Sum if n == 1 => e,
                // n ≥ 2 copies: n·x, which keeps ±inf and NaN as the repeated sum does.
                ReduceOp::Sum => match lit_value(&e) {
                    Some(v) => Expr::Lit(n as f64 * v),
                    None => Expr::Mul(vec![Expr::Lit(n as f64), e]),
                },
            },
            _ => Expr::Reduce(op, ids.to_vec(), Box::new(e)),
        }
    }
}

/// The value of a literal, or of a negated one (`-inf` is written that way).
fn lit_value(e: &Expr) -> Option<f64> {
    match e {
        Expr::Lit(v) => Some(*v),
        Expr::Neg(a) => lit_value(a).map(|v| -v),
        _ => None,
    }
}

/// The path to the first select on the spine of `e` whose condition leaves some of
/// `ids` unused.
fn find_select(e: &Expr, ids: &[IndexId], path: &mut Vec<Step>) -> Option<Vec<Step>> {
    let into = |step: Step, x: &Expr, path: &mut Vec<Step>| {
        path.push(step);
        let r = find_select(x, ids, path);
        path.pop();
        r
    };
    match e {
        Expr::Select(c, _, _) => {
            let used = cond_free(c);
            ids.iter().any(|i| !used.contains(i)).then(|| path.clone())
        }
        Expr::Mul(xs) => xs.iter().enumerate().find_map(|(k, x)| into(Step::Factor(k), x, path)),
        Expr::Div(a, b) => into(Step::Num, a, path).or_else(|| into(Step::Den, b, path)),
        Expr::Neg(a) => into(Step::Neg, a, path),
        _ => None,
    }
}

fn at<'e>(e: &'e Expr, path: &[Step]) -> Option<&'e Expr> {
    let Some((first, rest)) = path.split_first() else { return Some(e) };
    match (first, e) {
        (Step::Factor(k), Expr::Mul(xs)) => at(xs.get(*k)?, rest),
        (Step::Num, Expr::Div(a, _)) | (Step::Den, Expr::Div(_, a)) | (Step::Neg, Expr::Neg(a)) => at(a, rest),
        _ => None,
    }
}

/// `e` with the select at `path` replaced by its first branch, and by its second.
fn branches(e: Expr, path: &[Step]) -> (Expr, Expr) {
    let Some((first, rest)) = path.split_first() else {
        return match e {
            Expr::Select(_, a, b) => (*a, *b),
            other => (other.clone(), other),
        };
    };
    match (first, e) {
        (Step::Factor(k), Expr::Mul(xs)) => {
            let mut a = xs.clone();
            let mut b = xs;
            if *k < a.len() {
                let x = a[*k].clone();
                let (xa, xb) = branches(x, rest);
                a[*k] = xa;
                b[*k] = xb;
            }
            (Expr::Mul(a), Expr::Mul(b))
        }
        (Step::Num, Expr::Div(n, d)) => {
            let (na, nb) = branches(*n, rest);
            (Expr::Div(Box::new(na), d.clone()), Expr::Div(Box::new(nb), d))
        }
        (Step::Den, Expr::Div(n, d)) => {
            let (da, db) = branches(*d, rest);
            (Expr::Div(n.clone(), Box::new(da)), Expr::Div(n, Box::new(db)))
        }
        (Step::Neg, Expr::Neg(a)) => {
            let (xa, xb) = branches(*a, rest);
            (Expr::Neg(Box::new(xa)), Expr::Neg(Box::new(xb)))
        }
        (_, other) => (other.clone(), other),
    }
}

// ---------------------------------------------------------------------------------------
// Flat reads of grouped definitions.

/// At most this many definitions are tried (each try plans the function once).
const MAX_CANDIDATES: usize = 8;

fn inline_grouped(f: &mut Function, cost: &dyn Fn(&Function) -> Option<f64>, report: &mut Report) {
    let mut tried = 0;
    let mut current: Option<f64> = None;
    let mut k = 0;
    while k < f.stmts.len() && tried < MAX_CANDIDATES {
        let t = f.stmts[k].target;
        if !is_candidate(f, k) {
            k += 1;
            continue;
        }
        tried += 1;
        let Some(g) = inline_definition(f, k) else {
            k += 1;
            continue;
        };
        let before = match current {
            Some(c) => Some(c),
            None => cost(f),
        };
        let after = cost(&g);
        match (before, after) {
            (Some(b), Some(a)) if a < b => {
                report.inlined.push(f.tensor(t).name.clone());
                // The definition may be gone: statement k is now the next one.
                let removed = g.stmts.len() < f.stmts.len();
                *f = g;
                current = Some(a);
                if !removed {
                    k += 1;
                }
            }
            (b, _) => {
                current = b;
                k += 1;
            }
        }
    }
}

/// Statement `k` defines an intermediate with a grouped position that a later statement
/// reads through a flat index.
fn is_candidate(f: &Function, k: usize) -> bool {
    let p = &f.stmts[k];
    if f.tensor(p.target).kind != TensorKind::Temp || p.lhs.iter().all(|q| q.len() < 2) {
        return false;
    }
    f.stmts[k + 1..].iter().any(|c| {
        let mut flat = false;
        c.rhs.for_each_access(&mut |t, pos| {
            if t == p.target && pos.iter().zip(&p.lhs).any(|(a, q)| a.len() == 1 && q.len() >= 2) {
                flat = true;
            }
        });
        flat
    })
}

/// Every read of `f.stmts[k]`'s target inlined where the reader allows it; the definition
/// is dropped when no reader is left. `None` when no read could be inlined.
fn inline_definition(f: &Function, k: usize) -> Option<Function> {
    let p = &f.stmts[k];
    let t = p.target;
    let mut g = f.clone();
    let mut any = false;
    let mut left = false;
    for c in g.stmts[k + 1..].iter_mut() {
        if !reads(&c.rhs, t) {
            continue;
        }
        match inline_into(c, p, t) {
            Some(new) => {
                *c = new;
                any = true;
            }
            None => left = true,
        }
    }
    if !any {
        return None;
    }
    if !left && !f.outputs.contains(&t) {
        g.stmts.remove(k);
        remove_tensor(&mut g, t);
    }
    Some(g)
}

fn reads(e: &Expr, t: TensorId) -> bool {
    let mut v = Vec::new();
    e.tensors(&mut v);
    v.contains(&t)
}

/// `c` with every read of `t` replaced by `p`'s right side, or `None` when a read does not
/// line up with `p`'s positions or a split index is used as a number.
fn inline_into(c: &Stmt, p: &Stmt, t: TensorId) -> Option<Stmt> {
    // Which flat indices of `c` split into which ranges.
    let mut splits: Vec<(IndexId, Vec<IndexId>)> = Vec::new();
    let mut ok = true;
    c.rhs.for_each_access(&mut |u, pos| {
        if u != t || !ok {
            return;
        }
        if pos.len() != p.lhs.len() {
            ok = false;
            return;
        }
        for (a, q) in pos.iter().zip(&p.lhs) {
            if a.len() == q.len() {
                ok &= a.iter().zip(q).all(|(x, y)| c.indices[x.index()].range == p.indices[y.index()].range);
            } else if a.len() == 1 && q.len() >= 2 {
                let ranges: Vec<&Size> = q.iter().map(|y| &p.indices[y.index()].range).collect();
                match splits.iter().find(|(x, _)| *x == a[0]) {
                    Some((_, q0)) => ok &= q0.len() == q.len() && q0.iter().zip(&ranges).all(|(y, r)| &p.indices[y.index()].range == *r),
                    None => splits.push((a[0], q.clone())),
                }
            } else {
                ok = false;
            }
        }
    });
    if !ok || splits.iter().any(|(x, _)| uses_as_number(&c.rhs, *x)) {
        return None;
    }
    let mut s = c.clone();
    // Split each flat index: it keeps its id for the first member; the others are new.
    let mut members: Vec<(IndexId, Vec<IndexId>)> = Vec::new();
    for (x, q) in &splits {
        let mut ids = vec![*x];
        for (m, y) in q.iter().enumerate() {
            let v = &p.indices[y.index()];
            let name = fresh_name(&s.indices, &v.name);
            if m == 0 {
                s.indices[x.index()] = IndexVar { name, range: v.range.clone() };
            } else {
                s.indices.push(IndexVar { name, range: v.range.clone() });
                ids.push(IndexId(s.indices.len() as u32 - 1));
            }
        }
        members.push((*x, ids));
    }
    let splice = |pos: &[IndexId]| -> Vec<IndexId> {
        pos.iter().flat_map(|i| members.iter().find(|(x, _)| x == i).map_or_else(|| vec![*i], |(_, m)| m.clone())).collect()
    };
    s.lhs = s.lhs.iter().map(|q| splice(q)).collect();
    let rhs = respell(&s.rhs, &splice);
    let mut indices = s.indices;
    let rhs = substitute(rhs, t, p, &mut indices)?;
    s.indices = indices;
    s.rhs = rhs;
    s.reduced = reduction_set(&s.lhs, &s.rhs);
    Some(s)
}

/// A name for a new index: `base`, or `base` with a number, unused in `idx`.
fn fresh_name(idx: &[IndexVar], base: &str) -> String {
    let taken = |n: &str| idx.iter().any(|v| v.name == n);
    if !taken(base) {
        return base.to_string();
    }
    (1..).map(|k| format!("{base}{k}")).find(|n| !taken(n)).unwrap_or_else(|| base.to_string())
}

fn uses_as_number(e: &Expr, x: IndexId) -> bool {
    match e {
        Expr::Index(i) => *i == x,
        Expr::Lit(_) | Expr::Size(_) | Expr::Access(..) | Expr::Gather(..) => false,
        Expr::Neg(a) | Expr::Reduce(_, _, a) => uses_as_number(a, x),
        Expr::Add(xs) | Expr::Mul(xs) | Expr::Call(_, xs) => xs.iter().any(|y| uses_as_number(y, x)),
        Expr::Sub(a, b) | Expr::Div(a, b) => uses_as_number(a, x) || uses_as_number(b, x),
        Expr::Select(c, a, b) => cond_uses_as_number(c, x) || uses_as_number(a, x) || uses_as_number(b, x),
    }
}

fn cond_uses_as_number(c: &Cond, x: IndexId) -> bool {
    match c {
        Cond::Cmp(_, a, b) => uses_as_number(a, x) || uses_as_number(b, x),
        Cond::And(cs) | Cond::Or(cs) => cs.iter().any(|y| cond_uses_as_number(y, x)),
        Cond::Not(y) => cond_uses_as_number(y, x),
    }
}

/// `e` with every index list (positions and reduction lists) passed through `splice`.
fn respell(e: &Expr, splice: &dyn Fn(&[IndexId]) -> Vec<IndexId>) -> Expr {
    e.clone().map_nodes(&mut |x| match x {
        Expr::Access(t, pos) => Expr::Access(t, pos.iter().map(|q| splice(q)).collect()),
        Expr::Reduce(op, ids, body) => Expr::Reduce(op, splice(&ids), body),
        other => other,
    })
}

/// `e` with every read of `t` (whose positions now line up with `p`'s left side) replaced
/// by `p`'s right side; `p`'s other indices become new indices of the reader, and its own
/// reduction an inline one.
fn substitute(e: Expr, t: TensorId, p: &Stmt, idx: &mut Vec<IndexVar>) -> Option<Expr> {
    let rec = |x: Expr, idx: &mut Vec<IndexVar>| substitute(x, t, p, idx);
    Some(match e {
        Expr::Access(u, pos) if u == t => {
            // p's index → the reader's.
            let mut map: Vec<Option<IndexId>> = vec![None; p.indices.len()];
            for (a, q) in pos.iter().zip(&p.lhs) {
                if a.len() != q.len() {
                    return None;
                }
                for (x, y) in a.iter().zip(q) {
                    map[y.index()] = Some(*x);
                }
            }
            for (k, m) in map.iter_mut().enumerate() {
                if m.is_none() {
                    let v = &p.indices[k];
                    idx.push(IndexVar { name: fresh_name(idx, &v.name), range: v.range.clone() });
                    *m = Some(IndexId(idx.len() as u32 - 1));
                }
            }
            let map: Vec<IndexId> = map.into_iter().collect::<Option<_>>()?;
            let body = rename(&p.rhs, &|i| map[i.index()]);
            if p.reduced.is_empty() {
                body
            } else {
                Expr::Reduce(p.op, p.reduced.iter().map(|i| map[i.index()]).collect(), Box::new(body))
            }
        }
        Expr::Neg(a) => Expr::Neg(Box::new(rec(*a, idx)?)),
        Expr::Add(xs) => Expr::Add(xs.into_iter().map(|x| rec(x, idx)).collect::<Option<_>>()?),
        Expr::Mul(xs) => Expr::Mul(xs.into_iter().map(|x| rec(x, idx)).collect::<Option<_>>()?),
        Expr::Call(f, xs) => Expr::Call(f, xs.into_iter().map(|x| rec(x, idx)).collect::<Option<_>>()?),
        Expr::Sub(a, b) => Expr::Sub(Box::new(rec(*a, idx)?), Box::new(rec(*b, idx)?)),
        Expr::Div(a, b) => Expr::Div(Box::new(rec(*a, idx)?), Box::new(rec(*b, idx)?)),
        Expr::Select(c, a, b) => {
            let c = substitute_cond(*c, t, p, idx)?;
            Expr::Select(Box::new(c), Box::new(rec(*a, idx)?), Box::new(rec(*b, idx)?))
        }
        Expr::Reduce(op, ids, body) => Expr::Reduce(op, ids, Box::new(rec(*body, idx)?)),
        other => other,
    })
}

fn substitute_cond(c: Cond, t: TensorId, p: &Stmt, idx: &mut Vec<IndexVar>) -> Option<Cond> {
    Some(match c {
        Cond::Cmp(op, a, b) => Cond::Cmp(op, substitute(a, t, p, idx)?, substitute(b, t, p, idx)?),
        Cond::And(cs) => Cond::And(cs.into_iter().map(|x| substitute_cond(x, t, p, idx)).collect::<Option<_>>()?),
        Cond::Or(cs) => Cond::Or(cs.into_iter().map(|x| substitute_cond(x, t, p, idx)).collect::<Option<_>>()?),
        Cond::Not(x) => Cond::Not(Box::new(substitute_cond(*x, t, p, idx)?)),
    })
}

fn rename(e: &Expr, m: &dyn Fn(IndexId) -> IndexId) -> Expr {
    map_numbers(respell(e, &|ids: &[IndexId]| ids.iter().map(|&i| m(i)).collect()), m)
}

/// `e` with every index used as a number renamed (positions are left alone).
fn map_numbers(e: Expr, m: &dyn Fn(IndexId) -> IndexId) -> Expr {
    e.map_nodes(&mut |x| match x {
        Expr::Index(i) => Expr::Index(m(i)),
        other => other,
    })
}

/// Drops tensor `t` (defined and read nowhere now) and renumbers the ones after it.
fn remove_tensor(f: &mut Function, t: TensorId) {
    f.tensors.remove(t.index());
    let m = |u: TensorId| if u.0 > t.0 { TensorId(u.0 - 1) } else { u };
    for x in f.inputs.iter_mut().chain(f.outputs.iter_mut()) {
        *x = m(*x);
    }
    for c in &mut f.constants {
        c.tensor = m(c.tensor);
    }
    for s in &mut f.stmts {
        s.target = m(s.target);
        s.rhs = retarget(std::mem::replace(&mut s.rhs, Expr::Lit(0.0)), &m);
    }
}

fn retarget(e: Expr, m: &dyn Fn(TensorId) -> TensorId) -> Expr {
    e.map_nodes(&mut |x| match x {
        Expr::Access(t, pos) => Expr::Access(m(t), pos),
        other => other,
    })
}

#[cfg(test)]
mod tests;
