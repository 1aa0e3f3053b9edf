//! Recognising online softmax (flash attention) in a plan program.
//!
//! The pattern is found in the formula as the user wrote it, whatever the statements are
//! called and however they are split: a `max=` over one or two key indices of a score
//! `α · Σ_a Q[i, a] · Π_k K_k[key_k, a]` (optionally under a mask `select(c, ·, -inf)`),
//! and an output `Σ_keys exp(score - M[i]) · Π_k V_k[key_k, c] / Σ_keys exp(score - M[i])`.
//!
//! The matcher composes instead of matching step shapes: a read of an intermediate that a
//! `Sum` statement defines is replaced by its definition (with an explicit sum over the
//! definition's reduced indices) until the pattern's pieces are visible. So `P` written
//! once or twice, `Σ (P/Z)·V` and `(Σ P·V)/Z`, inline `sum[k]`, `std::` calls and the
//! algebra pass's reorderings all meet. Every intermediate the composition looked into
//! must be private to the group (read by nothing outside it), or nothing is fused.

use super::{Fusion, Plan};
use crate::loops::MaskCmp;
use crate::tir::{self, Bindings, CmpOp, Cond, Expr, IndexId, IndexVar, ReduceOp, TensorId, TensorKind};

/// What an index of an operand stands for in online softmax.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The query row `i`.
    Row,
    /// The k-th key index (in the order of the `max=` statement's reduced indices).
    Key(usize),
    /// The summed feature of the score `a`.
    Feature,
    /// The output's other index `c`.
    Value,
}

/// A tensor read with one plain index per position.
#[derive(Clone, Debug, PartialEq)]
pub struct Operand {
    pub tensor: TensorId,
    pub roles: Vec<Role>,
}

/// `O[i, c] = scale · Σ_keys softmax_keys(α · Σ_a Q[i, a] Π_k K_k[key_k, a] | mask) · Π_k V_k[key_k, c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct OnlineSoftmax {
    /// Extents of the row, of each key, of the feature and of the value index.
    pub rows: usize,
    pub keys: Vec<usize>,
    pub features: usize,
    pub values: usize,
    pub q: Operand,
    /// One per key: `k[n]` is the one read that has `Role::Key(n)`.
    pub k: Vec<Operand>,
    /// One per key, likewise.
    pub v: Vec<Operand>,
    pub alpha: f64,
    pub scale: f64,
    /// Keys visible from a row: every comparison holds (`keys` of each in key order).
    pub mask: Vec<MaskCmp>,
    /// The result, with roles `Row` and `Value`.
    pub out: Operand,
}

/// Finds the online-softmax groups of `plan.program` and records them in `plan.fusions`.
/// The plan's FLOPs then count a fusion's masked-out work as not done.
pub fn detect(plan: &mut Plan, b: &Bindings) {
    let flops: Vec<f64> = plan.steps.iter().map(|s| s.flops).collect();
    plan.fusions = find(&plan.program, b, &flops);
    for u in &mut plan.fusions {
        u.flops *= visible_fraction(&u.form);
    }
    let steps: f64 = flops.iter().sum::<f64>() + plan.slices.iter().map(|s| s.extra_flops).sum::<f64>();
    let replaced: f64 = plan.fusions.iter().flat_map(|u| u.steps.iter().map(|&k| flops[k])).sum();
    let fused: f64 = plan.fusions.iter().map(|u| u.flops).sum();
    plan.flops = steps - replaced + fused;
    plan.speedup = if plan.flops > 0.0 { plan.naive_flops / plan.flops } else { 1.0 };
}

/// The fraction of (row, keys) pairs the mask lets through: the part of the steps'
/// work a streamed kernel does. Rows are sampled when there are very many pairs.
fn visible_fraction(f: &OnlineSoftmax) -> f64 {
    use crate::loops::stream::key_interval;
    if f.mask.is_empty() {
        return 1.0;
    }
    let total: f64 = f.rows as f64 * f.keys.iter().map(|&k| k as f64).product::<f64>();
    if total == 0.0 {
        return 1.0;
    }
    let outer = f.keys[0] as f64;
    let step = ((f.rows as f64 * if f.keys.len() > 1 { outer } else { 1.0 }) / 4e6).ceil().max(1.0) as usize;
    let mut seen = 0.0;
    let mut rows = 0usize;
    for i in (0..f.rows).step_by(step) {
        rows += 1;
        let r = key_interval(&f.mask, i as i64, &[], 0, &f.keys);
        let (lo, hi) = (r.lo.max(0), r.hi.min(f.keys[0] as i64));
        if f.keys.len() == 1 {
            seen += (hi - lo).max(0) as f64;
            continue;
        }
        for j in lo..hi {
            let l = key_interval(&f.mask, i as i64, &[j], 1, &f.keys);
            seen += (l.hi.min(f.keys[1] as i64) - l.lo.max(0)).max(0) as f64;
        }
    }
    let per_row = total / f.rows as f64;
    (seen / (rows as f64 * per_row)).min(1.0)
}

/// The online-softmax groups of a plan program whose steps cost `step_flops`, each
/// costed as the steps it replaces (no mask taken into account).
pub(super) fn find(f: &tir::Function, b: &Bindings, step_flops: &[f64]) -> Vec<Fusion> {
    let mut used = vec![false; f.stmts.len()];
    let mut fusions = Vec::new();
    for m in 0..f.stmts.len() {
        let s = &f.stmts[m];
        if s.op != ReduceOp::Max || used[m] || f.tensor(s.target).kind != TensorKind::Temp {
            continue;
        }
        for o in m + 1..f.stmts.len() {
            if used[o] {
                continue;
            }
            if let Some((group, form, names)) = try_fuse(f, b, m, o) {
                if group.iter().any(|&g| used[g]) {
                    continue;
                }
                group.iter().for_each(|&g| used[g] = true);
                let mask = (!form.mask.is_empty()).then(|| mask_text(&form.mask, &names.0, &names.1));
                // `detect` scales this by the mask's visible fraction (counting fusions,
                // as the planner also does, needs no FLOPs).
                let flops = group.iter().map(|&g| step_flops.get(g).copied().unwrap_or(0.0)).sum::<f64>();
                fusions.push(Fusion {
                    kind: "online_softmax".to_string(),
                    steps: group,
                    row: names.0,
                    keys: names.1,
                    value: names.2,
                    mask,
                    flops,
                    form,
                });
                break;
            }
        }
    }
    fusions
}

/// Index names of a fusion: row, keys, value.
type Names = (String, Vec<String>, String);

/// The group of statements (sorted, `o` last) that computes `o` by online softmax over
/// the `max=` statement `m`, if it does.
fn try_fuse(f: &tir::Function, b: &Bindings, m: usize, o: usize) -> Option<(Vec<usize>, OnlineSoftmax, Names)> {
    let ms = &f.stmts[m];
    let os = &f.stmts[o];
    let mtensor = ms.target;
    let ([row_pos], keys) = (ms.lhs.as_slice(), &ms.reduced) else { return None };
    let [m_row] = row_pos.as_slice() else { return None };
    if keys.is_empty() || keys.len() > 2 || os.op != ReduceOp::Sum {
        return None;
    }
    let okind = f.tensor(os.target).kind;
    if !matches!(okind, TensorKind::Output | TensorKind::Temp) || os.lhs.len() != 2 || os.lhs.iter().any(|p| p.len() != 1) {
        return None;
    }
    let dep = depends_on(f, mtensor);
    // The score as the `max=` statement sees it.
    let mut cm = Cx::new(f, b, m, ms.indices.clone(), &dep);
    let sm = cm.score(ms.rhs.clone(), *m_row, keys)?;
    // The output: one sum over the keys divided by another.
    let mut co = Cx::new(f, b, o, os.indices.clone(), &dep);
    let rhs = if os.reduced.is_empty() { os.rhs.clone() } else { Expr::Reduce(ReduceOp::Sum, os.reduced.clone(), Box::new(os.rhs.clone())) };
    let mut top = Prod::default();
    co.flatten(rhs, &mut top, false)?;
    let ([Factor::Sum(nk, num)], [Factor::Sum(dk, den)]) = (top.num.as_slice(), top.den.as_slice()) else { return None };
    let (nk, num, dk, den) = (nk.clone(), num.clone(), dk.clone(), den.clone());
    let row = match os.lhs.iter().map(|p| p[0]).collect::<Vec<_>>().as_slice() {
        [a, c] => {
            // The row is the output index that the exponent's `M[i]` reads.
            let (r, v) = if co.exp_row(&num) == Some(*a) { (*a, *c) } else { (*c, *a) };
            (r, v)
        }
        _ => return None,
    };
    let (o_row, o_val) = row;
    // `O[i, i]` (a diagonal) has no value index.
    if o_row == o_val {
        return None;
    }
    if nk.len() != keys.len() || dk.len() != keys.len() || !den.den.is_empty() || !num.den.is_empty() {
        return None;
    }
    // Denominator: exactly exp(score - M[i]).
    let [Factor::Plain(dexp)] = den.num.as_slice() else { return None };
    let sd = co.exp_score(dexp.clone(), mtensor, o_row, &dk)?;
    // Numerator: exp(score - M[i]) times one value read per key.
    let mut exp = None;
    let mut vreads = Vec::new();
    for x in &num.num {
        match x {
            Factor::Plain(e @ Expr::Call(tir::Builtin::Exp, _)) if exp.is_none() => exp = Some(e.clone()),
            Factor::Plain(Expr::Access(t, pos)) => vreads.push((*t, pos.clone())),
            _ => return None,
        }
    }
    let sn = co.exp_score(exp?, mtensor, o_row, &nk)?;
    let pn = sm.same(&sn)?;
    sm.same(&sd)?;
    // Value reads, with the numerator's keys renamed to the `max=` statement's order.
    let mut v: Vec<Option<Operand>> = vec![None; keys.len()];
    for (t, pos) in vreads {
        let mut roles = Vec::new();
        let mut key = None;
        for p in &pos {
            let [x] = p.as_slice() else { return None };
            if *x == o_val {
                roles.push(Role::Value);
            } else if let Some(n) = nk.iter().position(|k| k == x) {
                let n = pn[n];
                if key.replace(n).is_some() {
                    return None;
                }
                roles.push(Role::Key(n));
            } else {
                return None;
            }
        }
        let n = key?;
        if roles.len() != 2 || v[n].is_some() {
            return None;
        }
        v[n] = Some(Operand { tensor: t, roles });
    }
    let v: Vec<Operand> = v.into_iter().collect::<Option<_>>()?;
    // Privacy: what the group computes inside is read by nothing else.
    let mut group: Vec<usize> = vec![m, o];
    group.extend(cm.unfolded.iter().chain(&co.unfolded).copied());
    group.sort_unstable();
    group.dedup();
    for &g in &group {
        let t = f.stmts[g].target;
        if g == o {
            continue;
        }
        if f.tensor(t).kind != TensorKind::Temp || f.stmts.iter().filter(|s| s.target == t).count() != 1 {
            return None;
        }
        for (k, s) in f.stmts.iter().enumerate() {
            let mut reads = false;
            s.rhs.for_each_access(&mut |x, _| reads |= x == t);
            if reads && !group.contains(&k) {
                return None;
            }
        }
    }
    if *group.last()? != o {
        return None;
    }
    let range = |cx: &Cx, i: IndexId| cx.indices[i.index()].range.eval(b).ok().and_then(|x| usize::try_from(x).ok());
    let names = (
        co.indices[o_row.index()].name.clone(),
        keys.iter().map(|k| ms.indices[k.index()].name.clone()).collect(),
        co.indices[o_val.index()].name.clone(),
    );
    let out_roles = os.lhs.iter().map(|p| if p[0] == o_row { Role::Row } else { Role::Value }).collect();
    let form = OnlineSoftmax {
        rows: range(&cm, *m_row)?,
        keys: keys.iter().map(|&k| range(&cm, k)).collect::<Option<_>>()?,
        features: sm.features,
        values: range(&co, o_val)?,
        q: sm.q.clone(),
        k: sm.k.clone(),
        v,
        alpha: sm.alpha,
        scale: top.c * num.c / den.c,
        mask: sm.mask.clone(),
        out: Operand { tensor: os.target, roles: out_roles },
    };
    Some((group, form, names))
}

/// Tensors whose value depends on `t` through the statements of `f`.
fn depends_on(f: &tir::Function, t: TensorId) -> Vec<bool> {
    let mut dep = vec![false; f.tensors.len()];
    dep[t.index()] = true;
    for s in &f.stmts {
        let mut d = false;
        s.rhs.for_each_access(&mut |x, _| d |= dep[x.index()]);
        if d {
            dep[s.target.index()] = true;
        }
    }
    dep
}

/// A factor of a product.
#[derive(Clone, Debug)]
enum Factor {
    Plain(Expr),
    /// `Σ_ids Π num / Π den`.
    Sum(Vec<IndexId>, Prod),
}

/// `c · Π num / Π den`.
#[derive(Clone, Debug)]
struct Prod {
    c: f64,
    num: Vec<Factor>,
    den: Vec<Factor>,
}

impl Default for Prod {
    fn default() -> Self {
        Prod { c: 1.0, num: Vec::new(), den: Vec::new() }
    }
}

/// A canonical score: `α · Σ_a Q · Π_k K_k`, masked.
#[derive(Clone, Debug)]
struct Score {
    alpha: f64,
    features: usize,
    q: Operand,
    k: Vec<Operand>,
    mask: Vec<MaskCmp>,
}

impl Score {
    /// The permutation `p` (other's key n is this score's key `p[n]`) under which both
    /// scores are the same expression.
    fn same(&self, other: &Score) -> Option<Vec<usize>> {
        let n = self.k.len();
        let perms: Vec<Vec<usize>> = if n == 2 { vec![vec![0, 1], vec![1, 0]] } else { vec![(0..n).collect()] };
        let close = (self.alpha - other.alpha).abs() <= 1e-12 * self.alpha.abs().max(other.alpha.abs());
        if !close || self.features != other.features || other.k.len() != n {
            return None;
        }
        for p in perms {
            let relabel = |o: &Operand| Operand {
                tensor: o.tensor,
                roles: o.roles.iter().map(|r| if let Role::Key(k) = r { Role::Key(p[*k]) } else { *r }).collect(),
            };
            let mut k: Vec<Option<Operand>> = vec![None; n];
            for (j, o) in other.k.iter().enumerate() {
                k[p[j]] = Some(relabel(o));
            }
            let mut mask: Vec<MaskCmp> = other
                .mask
                .iter()
                .map(|c| {
                    let mut keys = vec![0; n];
                    for (j, x) in c.keys.iter().enumerate() {
                        keys[p[j]] = *x;
                    }
                    MaskCmp { keys, ..c.clone() }
                })
                .collect();
            canonical_mask(&mut mask);
            let k: Vec<Operand> = k.into_iter().flatten().collect();
            if self.q == other.q && self.k == k && self.mask == mask {
                return Some(p);
            }
        }
        None
    }
}

/// The matcher's view of one statement: its index table, extended as reads of
/// intermediates are replaced by their definitions.
struct Cx<'a> {
    f: &'a tir::Function,
    b: &'a Bindings,
    /// Only statements before this one may be looked into.
    upto: usize,
    indices: Vec<IndexVar>,
    /// Tensors that depend on the `max=` result: inside sums they are always looked into.
    dep: &'a [bool],
    unfolded: Vec<usize>,
    /// Definitions left to look into: a chain of intermediates each read twice would
    /// otherwise compose into an expression exponential in its length.
    budget: usize,
}

impl<'a> Cx<'a> {
    fn new(f: &'a tir::Function, b: &'a Bindings, upto: usize, indices: Vec<IndexVar>, dep: &'a [bool]) -> Cx<'a> {
        Cx { f, b, upto, indices, dep, unfolded: Vec::new(), budget: 64 }
    }

    /// The definition of an intermediate read by `e`, in this statement's indices.
    fn unfold(&mut self, e: &Expr) -> Option<Expr> {
        let Expr::Access(t, pos) = e else { return None };
        if self.budget == 0 || self.f.tensor(*t).kind != TensorKind::Temp || pos.iter().any(|p| p.len() != 1) {
            return None;
        }
        self.budget -= 1;
        let (k, s) = self.f.stmts[..self.upto].iter().enumerate().rev().find(|(_, s)| s.target == *t)?;
        if s.op != ReduceOp::Sum || s.lhs.len() != pos.len() || s.lhs.iter().any(|p| p.len() != 1) {
            return None;
        }
        let mut map: Vec<Option<IndexId>> = vec![None; s.indices.len()];
        for (lp, rp) in s.lhs.iter().zip(pos) {
            if map[lp[0].index()].replace(rp[0]).is_some() {
                return None;
            }
        }
        for (j, m) in map.iter_mut().enumerate() {
            if m.is_none() {
                *m = Some(IndexId(self.indices.len() as u32));
                self.indices.push(s.indices[j].clone());
            }
        }
        let m = |i: IndexId| map[i.index()].unwrap_or(i);
        let mut body = s.rhs.clone().map_nodes(&mut |x| match x {
            Expr::Index(i) => Expr::Index(m(i)),
            Expr::Access(t, pos) => Expr::Access(t, pos.into_iter().map(|p| p.into_iter().map(m).collect()).collect()),
            Expr::Reduce(op, ids, a) => Expr::Reduce(op, ids.into_iter().map(m).collect(), a),
            x => x,
        });
        if !s.reduced.is_empty() {
            body = Expr::Reduce(ReduceOp::Sum, s.reduced.iter().map(|&i| m(i)).collect(), Box::new(body));
        }
        self.unfolded.push(k);
        Some(body)
    }

    /// Flattens `e` into `out` (into its denominator when `inverse`). At the top level
    /// every intermediate is looked into; inside sums only those that depend on the
    /// `max=` result or have more than two positions (operands of a score or of the
    /// values have two).
    fn flatten(&mut self, e: Expr, out: &mut Prod, inverse: bool) -> Option<()> {
        self.flatten_in(e, out, inverse, true)
    }

    fn flatten_in(&mut self, e: Expr, out: &mut Prod, inverse: bool, top: bool) -> Option<()> {
        if let Some(v) = e.const_value(self.b) {
            if inverse {
                if v == 0.0 {
                    return None;
                }
                out.c /= v;
            } else {
                out.c *= v;
            }
            return Some(());
        }
        match e {
            Expr::Mul(xs) => xs.into_iter().try_for_each(|x| self.flatten_in(x, out, inverse, top)),
            Expr::Div(a, d) => {
                self.flatten_in(*a, out, inverse, top)?;
                self.flatten_in(*d, out, !inverse, top)
            }
            Expr::Neg(a) => {
                out.c = -out.c;
                self.flatten_in(*a, out, inverse, top)
            }
            Expr::Access(t, ref pos) if top || self.dep[t.index()] || pos.len() > 2 => match self.unfold(&e) {
                Some(x) => self.flatten_in(x, out, inverse, top),
                None => {
                    push(out, Factor::Plain(e), inverse);
                    Some(())
                }
            },
            Expr::Reduce(ReduceOp::Sum, ids, body) => {
                let mut inner = Prod::default();
                self.flatten_in(*body, &mut inner, false, false)?;
                // Factors that do not use the summed indices leave the sum.
                let uses = |x: &Factor| {
                    let mut free = Vec::new();
                    factor_free(x, &mut free);
                    free.iter().any(|i| ids.contains(i))
                };
                let c = inner.c;
                let (num_in, num_out): (Vec<Factor>, Vec<Factor>) = inner.num.into_iter().partition(|x| uses(x));
                let (den_in, den_out): (Vec<Factor>, Vec<Factor>) = inner.den.into_iter().partition(|x| uses(x));
                // `Σ_j A · Σ_l B` is `Σ_{j, l} A · B`: composed sums have fresh indices.
                let mut ids = ids;
                let mut c = c;
                let mut merged = Vec::new();
                for x in num_in {
                    match x {
                        Factor::Sum(more, p) if p.den.is_empty() => {
                            ids.extend(more);
                            c *= p.c;
                            merged.extend(p.num);
                        }
                        x => merged.push(x),
                    }
                }
                let num_in = merged;
                if inverse {
                    out.c /= c;
                } else {
                    out.c *= c;
                }
                num_out.into_iter().for_each(|x| push(out, x, inverse));
                den_out.into_iter().for_each(|x| push(out, x, !inverse));
                if num_in.is_empty() && den_in.is_empty() {
                    // A sum of a constant: times the number of terms.
                    let mut n = 1.0;
                    for i in &ids {
                        n *= self.indices[i.index()].range.eval(self.b).ok()? as f64;
                    }
                    if inverse {
                        out.c /= n;
                    } else {
                        out.c *= n;
                    }
                    return Some(());
                }
                push(out, Factor::Sum(ids, Prod { c: 1.0, num: num_in, den: den_in }), inverse);
                Some(())
            }
            e => {
                push(out, Factor::Plain(e), inverse);
                Some(())
            }
        }
    }

    /// The row index of the `M[i]` that the exponent of a numerator reads.
    fn exp_row(&self, num: &Prod) -> Option<IndexId> {
        num.num.iter().find_map(|x| match x {
            Factor::Plain(Expr::Call(tir::Builtin::Exp, a)) => {
                let mut row = None;
                a[0].for_each_access(&mut |t, pos| {
                    if self.dep[t.index()] && pos.len() == 1 && pos[0].len() == 1 {
                        row = Some(pos[0][0]);
                    }
                });
                row
            }
            _ => None,
        })
    }

    /// The score of `exp(score - M[row])`, over `keys`.
    fn exp_score(&mut self, e: Expr, m: TensorId, row: IndexId, keys: &[IndexId]) -> Option<Score> {
        let Expr::Call(tir::Builtin::Exp, mut a) = e else { return None };
        let mut terms = Vec::new();
        linear(a.pop()?, false, &mut terms);
        let mut score = None;
        let mut seen_m = false;
        for (neg, t) in terms {
            match (&t, neg) {
                (Expr::Access(x, pos), true) if *x == m => {
                    if seen_m || pos.as_slice() != [vec![row]] {
                        return None;
                    }
                    seen_m = true;
                }
                (_, false) if score.is_none() => score = Some(t),
                _ => return None,
            }
        }
        if !seen_m {
            return None;
        }
        self.score(score?, row, keys)
    }

    /// `α · Σ_a Q[i, a] Π_k K_k[key_k, a]` under any number of `select(c, ·, -inf)` masks.
    fn score(&mut self, e: Expr, row: IndexId, keys: &[IndexId]) -> Option<Score> {
        let mut alpha = 1.0;
        let mut conds = Vec::new();
        let mut e = e;
        let (ids, body) = loop {
            let mut p = Prod::default();
            self.flatten(e, &mut p, false)?;
            if !p.den.is_empty() {
                return None;
            }
            match p.num.as_slice() {
                [Factor::Plain(Expr::Select(c, x, y))] => {
                    // A positive factor keeps -inf at -inf.
                    if p.c <= 0.0 {
                        return None;
                    }
                    alpha *= p.c;
                    if is_neg_inf(y, self.b) {
                        conds.push((**c).clone());
                        e = (**x).clone();
                    } else if is_neg_inf(x, self.b) {
                        conds.push(Cond::Not(c.clone()));
                        e = (**y).clone();
                    } else {
                        return None;
                    }
                }
                // `Σ_a select(c, x, -inf)` with `c` free of `a` is `select(c, Σ_a x, -inf)`
                // (the feature range is not empty where the fusion runs).
                [Factor::Sum(ids, body)] if matches!(body.num.as_slice(), [Factor::Plain(Expr::Select(..))]) && body.den.is_empty() => {
                    let [Factor::Plain(Expr::Select(c, x, y))] = body.num.as_slice() else { return None };
                    let mut free = Vec::new();
                    c.free_indices(&mut free);
                    if p.c * body.c <= 0.0 || free.iter().any(|i| ids.contains(i)) {
                        return None;
                    }
                    alpha *= p.c * body.c;
                    let (cond, value) = if is_neg_inf(y, self.b) {
                        ((**c).clone(), x)
                    } else if is_neg_inf(x, self.b) {
                        (Cond::Not(c.clone()), y)
                    } else {
                        return None;
                    };
                    conds.push(cond);
                    e = Expr::Reduce(ReduceOp::Sum, ids.clone(), value.clone());
                }
                [Factor::Sum(ids, body)] => {
                    alpha *= p.c;
                    break (ids.clone(), body.clone());
                }
                _ => return None,
            }
        };
        let [feature] = ids.as_slice() else { return None };
        if !body.den.is_empty() || body.num.len() != keys.len() + 1 {
            return None;
        }
        alpha *= body.c;
        let mut q = None;
        let mut k: Vec<Option<Operand>> = vec![None; keys.len()];
        for x in &body.num {
            let Factor::Plain(Expr::Access(t, pos)) = x else { return None };
            let mut roles = Vec::new();
            for p in pos {
                let [i] = p.as_slice() else { return None };
                roles.push(if i == feature {
                    Role::Feature
                } else if *i == row {
                    Role::Row
                } else {
                    Role::Key(keys.iter().position(|k| k == i)?)
                });
            }
            let op = Operand { tensor: *t, roles };
            let others: Vec<Role> = op.roles.iter().copied().filter(|r| *r != Role::Feature).collect();
            if op.roles.len() != 2 || !op.roles.contains(&Role::Feature) {
                return None;
            }
            match others.as_slice() {
                [Role::Row] if q.is_none() => q = Some(op),
                [Role::Key(n)] if k[*n].is_none() => k[*n] = Some(op),
                _ => return None,
            }
        }
        let mut mask = Vec::new();
        for c in conds {
            mask_cmps(c, false, row, keys, self.b, &mut mask)?;
        }
        canonical_mask(&mut mask);
        let features = usize::try_from(self.indices[feature.index()].range.eval(self.b).ok()?).ok()?;
        Some(Score { alpha, features, q: q?, k: k.into_iter().collect::<Option<_>>()?, mask })
    }
}

fn push(out: &mut Prod, x: Factor, inverse: bool) {
    if inverse {
        out.den.push(x)
    } else {
        out.num.push(x)
    }
}

fn factor_free(x: &Factor, out: &mut Vec<IndexId>) {
    match x {
        Factor::Plain(e) => e.free_indices(out),
        Factor::Sum(ids, p) => {
            let mut inner = Vec::new();
            p.num.iter().chain(&p.den).for_each(|y| factor_free(y, &mut inner));
            out.extend(inner.into_iter().filter(|i| !ids.contains(i)));
        }
    }
}

/// Whether `e` is a constant -inf (the rewrites may leave it as `4 * (-inf / sqrt(d))`).
fn is_neg_inf(e: &Expr, b: &Bindings) -> bool {
    e.const_value(b) == Some(f64::NEG_INFINITY)
}

/// Signed terms of a sum.
fn linear(e: Expr, neg: bool, out: &mut Vec<(bool, Expr)>) {
    match e {
        Expr::Add(xs) => xs.into_iter().for_each(|x| linear(x, neg, out)),
        Expr::Sub(a, b) => {
            linear(*a, neg, out);
            linear(*b, !neg, out);
        }
        Expr::Neg(a) => linear(*a, !neg, out),
        e => out.push((neg, e)),
    }
}


/// An affine integer function of the row and the keys: (row, keys, constant).
type Lin = (i64, Vec<i64>, i64);

fn affine(e: &Expr, row: IndexId, keys: &[IndexId], b: &Bindings) -> Option<Lin> {
    let n = keys.len();
    let add = |x: Lin, y: Lin, s: i64| -> Option<Lin> {
        let keys = x.1.iter().zip(&y.1).map(|(a, c)| a.checked_add(c.checked_mul(s)?)).collect::<Option<_>>()?;
        Some((x.0.checked_add(y.0.checked_mul(s)?)?, keys, x.2.checked_add(y.2.checked_mul(s)?)?))
    };
    let scale = |x: Lin, s: i64| -> Option<Lin> {
        let keys = x.1.iter().map(|a| a.checked_mul(s)).collect::<Option<_>>()?;
        Some((x.0.checked_mul(s)?, keys, x.2.checked_mul(s)?))
    };
    match e {
        Expr::Index(i) if *i == row => Some((1, vec![0; n], 0)),
        Expr::Index(i) => {
            let k = keys.iter().position(|x| x == i)?;
            let mut v = vec![0; n];
            v[k] = 1;
            Some((0, v, 0))
        }
        Expr::Lit(v) if v.fract() == 0.0 && v.abs() < 2f64.powi(53) => Some((0, vec![0; n], *v as i64)),
        Expr::Size(s) => Some((0, vec![0; n], i64::try_from(s.eval(b).ok()?).ok()?)),
        Expr::Neg(a) => scale(affine(a, row, keys, b)?, -1),
        Expr::Add(xs) => xs.iter().try_fold((0, vec![0; n], 0), |acc, x| add(acc, affine(x, row, keys, b)?, 1)),
        Expr::Sub(a, c) => add(affine(a, row, keys, b)?, affine(c, row, keys, b)?, -1),
        Expr::Mul(xs) => {
            let mut acc: Lin = (0, vec![0; n], 1);
            let mut linear_seen = false;
            for x in xs {
                let v = affine(x, row, keys, b)?;
                let is_const = v.0 == 0 && v.1.iter().all(|k| *k == 0);
                if is_const {
                    acc = scale(acc, v.2)?;
                } else if linear_seen {
                    return None;
                } else {
                    linear_seen = true;
                    acc = scale(v, acc.2)?;
                }
            }
            Some(acc)
        }
        _ => None,
    }
}

/// The comparisons of a mask condition (`negate`: of its negation), or `None` when the
/// condition is not a conjunction of affine comparisons.
fn mask_cmps(c: Cond, negate: bool, row: IndexId, keys: &[IndexId], b: &Bindings, out: &mut Vec<MaskCmp>) -> Option<()> {
    match (c, negate) {
        (Cond::And(cs), false) => cs.into_iter().try_for_each(|c| mask_cmps(c, false, row, keys, b, out)),
        (Cond::Or(cs), true) => cs.into_iter().try_for_each(|c| mask_cmps(c, true, row, keys, b, out)),
        (Cond::Not(c), n) => mask_cmps(*c, !n, row, keys, b, out),
        (Cond::Cmp(op, l, r), n) => {
            let op = if n {
                match op {
                    CmpOp::Lt => CmpOp::Ge,
                    CmpOp::Le => CmpOp::Gt,
                    CmpOp::Gt => CmpOp::Le,
                    CmpOp::Ge => CmpOp::Lt,
                    CmpOp::Ne => CmpOp::Eq,
                    CmpOp::Eq => return None,
                }
            } else {
                op
            };
            let (l, r) = (affine(&l, row, keys, b)?, affine(&r, row, keys, b)?);
            let d = (
                l.0.checked_sub(r.0)?,
                l.1.iter().zip(&r.1).map(|(a, c)| a.checked_sub(*c)).collect::<Option<Vec<_>>>()?,
                l.2.checked_sub(r.2)?,
            );
            // `x > 0` is `-x < 0`, `x >= 0` is `-x <= 0`.
            let (op, s) = match op {
                CmpOp::Lt | CmpOp::Le | CmpOp::Eq => (op, 1),
                CmpOp::Gt => (CmpOp::Lt, -1),
                CmpOp::Ge => (CmpOp::Le, -1),
                CmpOp::Ne => return None,
            };
            let keys = d.1.iter().map(|k| k.checked_mul(s)).collect::<Option<_>>()?;
            out.push(MaskCmp { op, row: d.0.checked_mul(s)?, keys, constant: d.2.checked_mul(s)? });
            Some(())
        }
        _ => None,
    }
}

/// Sorted, without duplicates, so that equal masks compare equal.
fn canonical_mask(m: &mut Vec<MaskCmp>) {
    m.sort_by_key(|c| (c.op as u8, c.row, c.keys.clone(), c.constant));
    m.dedup();
}

/// `j - i <= 0`.
pub fn mask_text(mask: &[MaskCmp], row: &str, keys: &[String]) -> String {
    let cmps: Vec<String> = mask
        .iter()
        .map(|c| {
            let mut s = String::new();
            let terms = keys.iter().map(String::as_str).zip(c.keys.iter().copied()).chain(std::iter::once((row, c.row)));
            for (name, k) in terms.filter(|t| t.1 != 0) {
                let sign = if k < 0 { "-" } else if s.is_empty() { "" } else { "+" };
                let sep = if s.is_empty() { "" } else { " " };
                let space = if s.is_empty() { "" } else { " " };
                let mag = if k.abs() == 1 { String::new() } else { format!("{}*", k.abs()) };
                s.push_str(&format!("{sep}{sign}{space}{mag}{name}"));
            }
            if c.constant != 0 || s.is_empty() {
                if s.is_empty() {
                    s = c.constant.to_string();
                } else {
                    s.push_str(&format!(" {} {}", if c.constant < 0 { "-" } else { "+" }, c.constant.abs()));
                }
            }
            format!("{s} {} 0", c.op.symbol())
        })
        .collect();
    cmps.join(" && ")
}
