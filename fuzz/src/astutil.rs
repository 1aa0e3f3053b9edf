//! Walking the AST by position: the mutator and the minimiser address an expression
//! node by its preorder number within a statement's right side.

use tessera_compiler::diag::Span;
use tessera_compiler::syntax::ast::*;

/// The direct subexpressions of `e`, those inside a select's condition included.
pub fn children_mut(e: &mut Expr) -> Vec<&mut Expr> {
    let mut out = Vec::new();
    match &mut e.kind {
        ExprKind::Number(_) | ExprKind::Access { .. } => {}
        ExprKind::Neg(x) => out.push(&mut **x),
        ExprKind::Add { first, rest } => {
            out.push(&mut **first);
            out.extend(rest.iter_mut().map(|(_, x)| x));
        }
        ExprKind::Mul { first, rest } => {
            out.push(&mut **first);
            out.extend(rest.iter_mut().map(|(_, x)| x));
        }
        ExprKind::Call { args, .. } => out.extend(args.iter_mut()),
        ExprKind::Select { cond, then, otherwise } => {
            cond_exprs_mut(cond, &mut out);
            out.push(&mut **then);
            out.push(&mut **otherwise);
        }
        ExprKind::Reduce { body, .. } => out.push(&mut **body),
    }
    out
}

pub fn cond_exprs_mut<'a>(c: &'a mut Cond, out: &mut Vec<&'a mut Expr>) {
    match c {
        Cond::Cmp { lhs, rhs, .. } => {
            out.push(lhs);
            out.push(rhs);
        }
        Cond::And(cs, _) | Cond::Or(cs, _) => cs.iter_mut().for_each(|c| cond_exprs_mut(c, out)),
        Cond::Not(c, _) => cond_exprs_mut(c, out),
    }
}

/// Number of expression nodes in `e` (itself included).
pub fn count(e: &Expr) -> usize {
    let mut e = e.clone();
    count_mut(&mut e)
}

fn count_mut(e: &mut Expr) -> usize {
    1 + children_mut(e).into_iter().map(count_mut).sum::<usize>()
}

/// The node with preorder number `k` (0 is `e` itself).
pub fn nth(e: &mut Expr, k: usize) -> Option<&mut Expr> {
    let mut k = k;
    nth_inner(e, &mut k)
}

fn nth_inner<'a>(e: &'a mut Expr, k: &mut usize) -> Option<&'a mut Expr> {
    if *k == 0 {
        return Some(e);
    }
    *k -= 1;
    for c in children_mut(e) {
        if let Some(x) = nth_inner(c, k) {
            return Some(x);
        }
    }
    None
}

/// Every subexpression of `e`, cloned (for donor pools).
pub fn all_subexprs(e: &Expr) -> Vec<Expr> {
    let mut e = e.clone();
    let n = count_mut(&mut e);
    (0..n).filter_map(|k| nth(&mut e, k).map(|x| x.clone())).collect()
}

/// Every index identifier of a statement: left side, accesses and reductions.
pub fn index_idents_mut(s: &mut Stmt) -> Vec<&mut Ident> {
    let mut out = Vec::new();
    for t in &mut s.targets {
        if let Some(items) = &mut t.indices {
            items_idents_mut(items, &mut out);
        }
    }
    expr_index_idents_mut(&mut s.rhs, &mut out);
    out
}

fn items_idents_mut<'a>(items: &'a mut [IndexItem], out: &mut Vec<&'a mut Ident>) {
    for it in items {
        match it {
            IndexItem::Single(i) => out.push(i),
            IndexItem::Group(g, _) | IndexItem::Gather { indices: g, .. } => out.extend(g.iter_mut()),
        }
    }
}

fn expr_index_idents_mut<'a>(e: &'a mut Expr, out: &mut Vec<&'a mut Ident>) {
    match &mut e.kind {
        ExprKind::Access { indices: Some(items), .. } => items_idents_mut(items, out),
        ExprKind::Access { .. } | ExprKind::Number(_) => {}
        ExprKind::Neg(x) => expr_index_idents_mut(x, out),
        ExprKind::Add { first, rest } => {
            expr_index_idents_mut(first, out);
            rest.iter_mut().for_each(|(_, x)| expr_index_idents_mut(x, out));
        }
        ExprKind::Mul { first, rest } => {
            expr_index_idents_mut(first, out);
            rest.iter_mut().for_each(|(_, x)| expr_index_idents_mut(x, out));
        }
        ExprKind::Call { args, .. } => args.iter_mut().for_each(|x| expr_index_idents_mut(x, out)),
        ExprKind::Select { cond, then, otherwise } => {
            cond_index_idents_mut(cond, out);
            expr_index_idents_mut(then, out);
            expr_index_idents_mut(otherwise, out);
        }
        ExprKind::Reduce { indices, body, .. } => {
            out.extend(indices.iter_mut());
            expr_index_idents_mut(body, out);
        }
    }
}

fn cond_index_idents_mut<'a>(c: &'a mut Cond, out: &mut Vec<&'a mut Ident>) {
    match c {
        Cond::Cmp { lhs, rhs, .. } => {
            expr_index_idents_mut(lhs, out);
            expr_index_idents_mut(rhs, out);
        }
        Cond::And(cs, _) | Cond::Or(cs, _) => cs.iter_mut().for_each(|c| cond_index_idents_mut(c, out)),
        Cond::Not(c, _) => cond_index_idents_mut(c, out),
    }
}

/// Names of tensors read by accesses in `e` (with their number of index positions).
pub fn accesses(e: &Expr) -> Vec<(String, usize)> {
    let mut e = e.clone();
    let n = count_mut(&mut e);
    let mut out = Vec::new();
    for k in 0..n {
        if let Some(Expr { kind: ExprKind::Access { name, indices }, .. }) = nth(&mut e, k) {
            out.push((name.name.clone(), indices.as_ref().map_or(0, Vec::len)));
        }
    }
    out
}

pub fn ident(name: &str) -> Ident {
    Ident { name: name.to_string(), span: Span::default() }
}

pub fn ex(kind: ExprKind) -> Expr {
    Expr { kind, span: Span::default() }
}

pub fn num(v: f64) -> Expr {
    if v < 0.0 {
        ex(ExprKind::Neg(Box::new(ex(ExprKind::Number(-v)))))
    } else {
        ex(ExprKind::Number(v))
    }
}

pub fn name_expr(name: &str) -> Expr {
    ex(ExprKind::Access { name: ident(name), indices: None })
}

pub fn call(f: &str, args: Vec<Expr>) -> Expr {
    ex(ExprKind::Call { path: vec![ident(f)], dims: Vec::new(), args })
}

pub fn bin_add(a: Expr, op: AddOp, b: Expr) -> Expr {
    ex(ExprKind::Add { first: Box::new(a), rest: vec![(op, b)] })
}

pub fn bin_mul(a: Expr, op: MulOp, b: Expr) -> Expr {
    ex(ExprKind::Mul { first: Box::new(a), rest: vec![(op, b)] })
}
