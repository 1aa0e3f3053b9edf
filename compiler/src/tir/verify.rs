//! Structural checks of the TIR. A failure is always a compiler bug, never a user error:
//! the checker reports user mistakes before any TIR exists.

use super::*;

/// Checks the invariants the rest of the pipeline relies on.
pub fn verify(f: &Function) -> Result<(), String> {
    let nt = f.tensors.len();
    for (what, list) in [("input", &f.inputs), ("output", &f.outputs)] {
        for (k, t) in list.iter().enumerate() {
            if t.index() >= nt {
                return Err(format!("{what} id {} out of range", t.0));
            }
            if list[..k].contains(t) {
                return Err(format!("{what} {} listed twice", f.tensor(*t).name));
            }
        }
    }
    let check_size = |s: &Size, what: &str| -> Result<(), String> {
        match s.syms.iter().find(|d| d.index() >= f.dims.len()) {
            Some(d) => Err(format!("{what}: dim id {} out of range", d.0)),
            None if !s.syms.windows(2).all(|w| w[0] <= w[1]) => Err(format!("{what}: unsorted size")),
            None => Ok(()),
        }
    };
    for (k, t) in f.tensors.iter().enumerate() {
        for s in &t.shape {
            check_size(s, &format!("tensor {}", t.name))?;
        }
        if t.factors.len() != t.shape.len() {
            return Err(format!("tensor {}: factors do not match its rank", t.name));
        }
        let declared_in = f.inputs.contains(&TensorId(k as u32));
        if declared_in != (t.kind == TensorKind::Input) {
            return Err(format!("tensor {}: kind {:?} disagrees with the input list", t.name, t.kind));
        }
        if f.outputs.contains(&TensorId(k as u32)) != (t.kind == TensorKind::Output) {
            return Err(format!("tensor {}: kind {:?} disagrees with the output list", t.name, t.kind));
        }
    }
    for (k, t) in f.tensors.iter().enumerate() {
        let consts = f.constants.iter().filter(|c| c.tensor.index() == k).count();
        if (t.kind == TensorKind::Const) != (consts == 1) {
            return Err(format!("tensor {}: kind {:?} but {consts} constant definitions", t.name, t.kind));
        }
    }
    for c in &f.constants {
        let t = f.tensors.get(c.tensor.index()).ok_or("constant id out of range")?;
        let len = t.shape.iter().try_fold(1u64, |a, s| if s.is_const() { a.checked_mul(s.coeff) } else { None });
        if len != Some(c.values.len() as u64) {
            return Err(format!("constant {} has {} values for its shape", t.name, c.values.len()));
        }
    }
    let mut defined: Vec<bool> =
        f.tensors.iter().map(|t| matches!(t.kind, TensorKind::Input | TensorKind::Const)).collect();
    for (n, s) in f.stmts.iter().enumerate() {
        let ctx = format!("statement {n} ({})", f.stmt_string(s));
        if s.target.index() >= nt {
            return Err(format!("{ctx}: target out of range"));
        }
        if defined[s.target.index()] {
            return Err(format!("{ctx}: target defined twice or is an input"));
        }
        for v in &s.indices {
            check_size(&v.range, &ctx)?;
        }
        let ni = s.indices.len();
        let in_range = |i: &IndexId| i.index() < ni;
        if !s.lhs.iter().flatten().all(in_range) || !s.reduced.iter().all(in_range) {
            return Err(format!("{ctx}: index id out of range"));
        }
        check_positions(f, s, s.target, &s.lhs, &ctx)?;
        let lhs: Vec<IndexId> = s.lhs.iter().flatten().copied().collect();
        for (a, i) in lhs.iter().enumerate() {
            if lhs[..a].contains(i) {
                return Err(format!("{ctx}: index repeated on the left"));
            }
        }
        let mut free = Vec::new();
        s.rhs.free_indices(&mut free);
        let expect: Vec<IndexId> = free.iter().copied().filter(|i| !lhs.contains(i)).collect();
        if expect != s.reduced {
            return Err(format!("{ctx}: reduction set differs from the free indices"));
        }
        verify_expr(f, s, &s.rhs, &defined, &ctx)?;
        defined[s.target.index()] = true;
    }
    for &o in &f.outputs {
        if !defined[o.index()] {
            return Err(format!("output {} is never defined", f.tensor(o).name));
        }
    }
    Ok(())
}

fn check_positions(f: &Function, s: &Stmt, t: TensorId, pos: &[Position], ctx: &str) -> Result<(), String> {
    let decl = f.tensor(t);
    if decl.shape.len() != pos.len() {
        return Err(format!("{ctx}: {} has rank {} but {} positions", decl.name, decl.shape.len(), pos.len()));
    }
    for (p, size) in pos.iter().zip(&decl.shape) {
        if p.is_empty() {
            return Err(format!("{ctx}: empty position"));
        }
        let mut prod = Size::one();
        for i in p {
            let v = s.indices.get(i.index()).ok_or_else(|| format!("{ctx}: index id out of range"))?;
            prod = prod.mul(&v.range).ok_or_else(|| format!("{ctx}: size overflow"))?;
        }
        if &prod != size {
            return Err(format!("{ctx}: position of {} has the wrong size", decl.name));
        }
    }
    Ok(())
}

fn verify_expr(f: &Function, s: &Stmt, e: &Expr, defined: &[bool], ctx: &str) -> Result<(), String> {
    let rec = |x: &Expr| verify_expr(f, s, x, defined, ctx);
    match e {
        Expr::Lit(_) => Ok(()),
        Expr::Size(sz) => {
            if sz.syms.iter().any(|d| d.index() >= f.dims.len()) {
                Err(format!("{ctx}: dim out of range"))
            } else {
                Ok(())
            }
        }
        Expr::Index(i) => {
            if i.index() < s.indices.len() {
                Ok(())
            } else {
                Err(format!("{ctx}: index id out of range"))
            }
        }
        Expr::Access(t, pos) => {
            if t.index() >= f.tensors.len() {
                return Err(format!("{ctx}: tensor id out of range"));
            }
            if !defined[t.index()] {
                return Err(format!("{ctx}: reads {} before it is defined", f.tensor(*t).name));
            }
            check_positions(f, s, *t, pos, ctx)
        }
        Expr::Neg(a) => rec(a),
        Expr::Add(xs) | Expr::Mul(xs) => {
            if xs.len() < 2 {
                return Err(format!("{ctx}: chain with fewer than two operands"));
            }
            xs.iter().try_for_each(rec)
        }
        Expr::Sub(a, b) | Expr::Div(a, b) => rec(a).and(rec(b)),
        Expr::Call(b, xs) => {
            if xs.len() != b.arity() {
                return Err(format!("{ctx}: {} called with {} arguments", b.name(), xs.len()));
            }
            xs.iter().try_for_each(rec)
        }
        Expr::Select(c, a, b) => verify_cond(f, s, c, defined, ctx).and(rec(a)).and(rec(b)),
        Expr::Reduce(_, ids, body) => {
            if ids.is_empty() || ids.iter().any(|i| i.index() >= s.indices.len()) {
                return Err(format!("{ctx}: bad inline reduction indices"));
            }
            rec(body)
        }
    }
}

fn verify_cond(f: &Function, s: &Stmt, c: &Cond, defined: &[bool], ctx: &str) -> Result<(), String> {
    match c {
        Cond::Cmp(_, a, b) => verify_expr(f, s, a, defined, ctx).and(verify_expr(f, s, b, defined, ctx)),
        Cond::And(cs) | Cond::Or(cs) => cs.iter().try_for_each(|x| verify_cond(f, s, x, defined, ctx)),
        Cond::Not(x) => verify_cond(f, s, x, defined, ctx),
    }
}
