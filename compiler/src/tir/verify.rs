//! Structural checks of the TIR. A failure is always a compiler bug, never a user error:
//! the checker reports user mistakes before any TIR exists.

use super::*;

/// Checks the invariants the rest of the pipeline relies on.
pub fn verify(f: &Function) -> Result<(), String> {
    let nt = f.tensors.len();
    for (what, list) in [("input", &f.inputs), ("index input", &f.indices), ("output", &f.outputs)] {
        for (k, t) in list.iter().enumerate() {
            if t.index() >= nt {
                return Err(format!("{what} id {} out of range", t.0));
            }
            if list[..k].contains(t) {
                return Err(format!("{what} {} listed twice", f.tensor(*t).name));
            }
        }
    }
    for (k, t) in f.tensors.iter().enumerate() {
        for s in &t.shape {
            check_size(f, s).map_err(|e| format!("tensor {}: {e}", t.name))?;
        }
        if t.factors.len() != t.shape.len() {
            return Err(format!("tensor {}: factors do not match its rank", t.name));
        }
        let declared_in = f.inputs.contains(&TensorId(k as u32));
        if declared_in != (t.kind == TensorKind::Input) {
            return Err(format!("tensor {}: kind {:?} disagrees with the input list", t.name, t.kind));
        }
        if f.indices.contains(&TensorId(k as u32)) != matches!(t.kind, TensorKind::Index(_)) {
            return Err(format!("tensor {}: kind {:?} disagrees with the index input list", t.name, t.kind));
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
        f.tensors.iter().map(|t| matches!(t.kind, TensorKind::Input | TensorKind::Const | TensorKind::Index(_))).collect();
    for (n, s) in f.stmts.iter().enumerate() {
        // The statement is printed only on failure: verification runs on every plan.
        verify_stmt(f, s, &defined).map_err(|e| {
            if s.target.index() < nt {
                format!("statement {n} ({}): {e}", f.stmt_string(s))
            } else {
                format!("statement {n}: {e}")
            }
        })?;
        defined[s.target.index()] = true;
    }
    for &o in &f.outputs {
        if !defined[o.index()] {
            return Err(format!("output {} is never defined", f.tensor(o).name));
        }
    }
    Ok(())
}

fn check_size(f: &Function, s: &Size) -> Result<(), String> {
    match s.syms.iter().find(|d| d.index() >= f.dims.len()) {
        Some(d) => Err(format!("dim id {} out of range", d.0)),
        None if !s.syms.windows(2).all(|w| w[0] <= w[1]) => Err("unsorted size".to_string()),
        None => Ok(()),
    }
}

/// One statement, given which tensors earlier ones define; errors name no statement.
fn verify_stmt(f: &Function, s: &Stmt, defined: &[bool]) -> Result<(), String> {
    if s.target.index() >= f.tensors.len() {
        return Err("target out of range".to_string());
    }
    if defined[s.target.index()] {
        return Err("target defined twice or is an input".to_string());
    }
    for v in &s.indices {
        check_size(f, &v.range)?;
    }
    let ni = s.indices.len();
    let in_range = |i: &IndexId| i.index() < ni;
    if !s.lhs.iter().flatten().all(in_range) || !s.reduced.iter().all(in_range) {
        return Err("index id out of range".to_string());
    }
    check_positions(f, s, s.target, &s.lhs)?;
    let lhs: Vec<IndexId> = s.lhs.iter().flatten().copied().collect();
    for (a, i) in lhs.iter().enumerate() {
        if lhs[..a].contains(i) {
            return Err("index repeated on the left".to_string());
        }
    }
    let mut free = Vec::new();
    s.rhs.free_indices(&mut free);
    let expect: Vec<IndexId> = free.iter().copied().filter(|i| !lhs.contains(i)).collect();
    if expect != s.reduced {
        return Err("reduction set differs from the free indices".to_string());
    }
    verify_expr(f, s, &s.rhs, defined)
}

fn check_positions(f: &Function, s: &Stmt, t: TensorId, pos: &[Position]) -> Result<(), String> {
    let decl = f.tensor(t);
    if decl.shape.len() != pos.len() {
        return Err(format!("{} has rank {} but {} positions", decl.name, decl.shape.len(), pos.len()));
    }
    for (p, size) in pos.iter().zip(&decl.shape) {
        if p.is_empty() {
            return Err("empty position".to_string());
        }
        let mut prod = Size::one();
        for i in p {
            let v = s.indices.get(i.index()).ok_or_else(|| "index id out of range".to_string())?;
            prod = prod.mul(&v.range).ok_or_else(|| "size overflow".to_string())?;
        }
        if &prod != size {
            return Err(format!("position of {} has the wrong size", decl.name));
        }
    }
    Ok(())
}

/// A gather is the whole right side of a plain statement whose left side lists its
/// indices; the source is a value tensor, every indirect position an index input whose
/// own positions are plain.
fn verify_gather(f: &Function, s: &Stmt, e: &Expr, t: TensorId, pos: &[GatherPos], defined: &[bool]) -> Result<(), String> {
    if !std::ptr::eq(e, &s.rhs) || s.op != ReduceOp::Sum || !s.reduced.is_empty() {
        return Err("a gather that is not a whole statement".to_string());
    }
    if s.lhs.iter().any(|p| p.len() != 1) {
        return Err("a gather with a grouped left side".to_string());
    }
    let mut free = Vec::new();
    e.free_indices(&mut free);
    let lhs: Vec<IndexId> = s.lhs.iter().flatten().copied().collect();
    if free != lhs {
        return Err("a gather's left side is not its indices in order".to_string());
    }
    let decl = f.tensors.get(t.index()).ok_or("tensor id out of range")?;
    if matches!(decl.kind, TensorKind::Index(_)) || !defined[t.index()] {
        return Err(format!("gathers from {}, which is not a defined value tensor", decl.name));
    }
    if decl.shape.len() != pos.len() || !pos.iter().any(|p| matches!(p, GatherPos::Indirect(..))) {
        return Err(format!("gather from {} has the wrong positions", decl.name));
    }
    for (p, size) in pos.iter().zip(&decl.shape) {
        match p {
            GatherPos::Direct(d) => check_positions_sizes(s, d, size, &decl.name)?,
            GatherPos::Indirect(i, ids) => {
                let idx = f.tensors.get(i.index()).ok_or("tensor id out of range")?;
                if !matches!(idx.kind, TensorKind::Index(_)) {
                    return Err(format!("{} used as an index tensor", idx.name));
                }
                let single: Vec<Position> = ids.iter().map(|&x| vec![x]).collect();
                check_positions(f, s, *i, &single)?;
            }
        }
    }
    Ok(())
}

fn check_positions_sizes(s: &Stmt, p: &[IndexId], size: &Size, name: &str) -> Result<(), String> {
    let mut prod = Size::one();
    for i in p {
        let v = s.indices.get(i.index()).ok_or_else(|| "index id out of range".to_string())?;
        prod = prod.mul(&v.range).ok_or_else(|| "size overflow".to_string())?;
    }
    if &prod != size {
        return Err(format!("position of {name} has the wrong size"));
    }
    Ok(())
}

fn verify_expr(f: &Function, s: &Stmt, e: &Expr, defined: &[bool]) -> Result<(), String> {
    let rec = |x: &Expr| verify_expr(f, s, x, defined);
    match e {
        Expr::Lit(_) => Ok(()),
        Expr::Size(sz) => {
            if sz.syms.iter().any(|d| d.index() >= f.dims.len()) {
                Err("dim out of range".to_string())
            } else {
                Ok(())
            }
        }
        Expr::Index(i) => {
            if i.index() < s.indices.len() {
                Ok(())
            } else {
                Err("index id out of range".to_string())
            }
        }
        Expr::Access(t, pos) => {
            if t.index() >= f.tensors.len() {
                return Err("tensor id out of range".to_string());
            }
            if !defined[t.index()] {
                return Err(format!("reads {} before it is defined", f.tensor(*t).name));
            }
            if matches!(f.tensor(*t).kind, TensorKind::Index(_)) {
                return Err(format!("index tensor {} read as a value", f.tensor(*t).name));
            }
            check_positions(f, s, *t, pos)
        }
        Expr::Gather(t, pos) => verify_gather(f, s, e, *t, pos, defined),
        Expr::Neg(a) => rec(a),
        Expr::Add(xs) | Expr::Mul(xs) => {
            if xs.len() < 2 {
                return Err("chain with fewer than two operands".to_string());
            }
            xs.iter().try_for_each(rec)
        }
        Expr::Sub(a, b) | Expr::Div(a, b) => rec(a).and(rec(b)),
        Expr::Call(b, xs) => {
            if xs.len() != b.arity() {
                return Err(format!("{} called with {} arguments", b.name(), xs.len()));
            }
            xs.iter().try_for_each(rec)
        }
        Expr::Select(c, a, b) => verify_cond(f, s, c, defined).and(rec(a)).and(rec(b)),
        Expr::Reduce(_, ids, body) => {
            if ids.is_empty() || ids.iter().any(|i| i.index() >= s.indices.len()) {
                return Err("bad inline reduction indices".to_string());
            }
            rec(body)
        }
    }
}

fn verify_cond(f: &Function, s: &Stmt, c: &Cond, defined: &[bool]) -> Result<(), String> {
    match c {
        Cond::Cmp(_, a, b) => verify_expr(f, s, a, defined).and(verify_expr(f, s, b, defined)),
        Cond::And(cs) | Cond::Or(cs) => cs.iter().try_for_each(|x| verify_cond(f, s, x, defined)),
        Cond::Not(x) => verify_cond(f, s, x, defined),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(src: &str) -> Function {
        let (_, c) = crate::check::tests::check_src(src);
        assert!(!c.has_errors());
        c.functions[0].clone()
    }

    #[test]
    fn a_broken_statement_is_named_and_printed() {
        let src = "fn f(A: f32[n, k], B: f32[k, m]) -> C: f32[n, m] { T[i, j] = A[i, l] * B[l, j]\n C[i, j] = T[i, j] }";
        let f = checked(src);
        assert_eq!(verify(&f), Ok(()));
        let mut bad = f.clone();
        bad.stmts[0].reduced.clear();
        let e = verify(&bad).unwrap_err();
        assert!(e.starts_with("statement 0 (T[i, j] = A[i, l] * B[l, j]"), "{e}");
        assert!(e.ends_with(": reduction set differs from the free indices"), "{e}");
        let mut bad = f.clone();
        bad.stmts.swap(0, 1);
        let e = verify(&bad).unwrap_err();
        assert!(e.starts_with("statement 0 (C[i, j] = T[i, j]") && e.contains("reads T before it is defined"), "{e}");
        let mut bad = f;
        bad.stmts[1].target = TensorId(99);
        assert_eq!(verify(&bad).unwrap_err(), "statement 1: target out of range");
    }
}
