//! Mutations: of the AST (numbers, index names, operators, calls, statements, splices of
//! two programs, selects and inline reductions wrapped around a subexpression) and of
//! the token stream (for the parser's and the checker's error paths).

use crate::astutil::*;
use crate::corpus::Seed;
use crate::rng::Rng;
use tessera_compiler::syntax::ast::*;

/// Material taken from the whole corpus for splicing.
pub struct Donors {
    pub exprs: Vec<Expr>,
    pub stmts: Vec<Stmt>,
    pub fns: Vec<FnDef>,
    pub tokens: Vec<String>,
}

const NUMBERS: &[f64] =
    &[0.0, 1.0, 2.0, 3.0, 0.5, 0.25, 1e-5, 10.0, 1e6, 1e-30, 1e30, f64::INFINITY, 4096.0, 0.1, 9.0];
const UNARY: &[&str] = &["exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "abs", "sin", "cos"];
const BINARY: &[&str] = &["pow", "max", "min"];
const INDEX_NAMES: &[&str] = &["i", "j", "k", "a", "b", "x", "l", "p", "q"];
const EXTRA_TOKENS: &[&str] = &[
    "(", ")", "[", "]", ",", "+", "-", "*", "/", "=", "max=", "min=", "<=", "<", "==", "!=", "&&", "||", "!", "select",
    "sum", "max", "min", "inf", "0", "1", "1e-5", "f32", "f64", "i", "j", "k", "n", "(i, j)", "exp", "::", "->", "fn",
    "use", "std", "{", "}", ":", ";", "18446744073709551616", "1e400",
];

pub fn donors(seeds: &[Seed]) -> Donors {
    let mut d = Donors { exprs: Vec::new(), stmts: Vec::new(), fns: Vec::new(), tokens: Vec::new() };
    for s in seeds {
        d.tokens.extend(tokens(&s.text).into_iter().filter(|t| !t.trim().is_empty()));
        let Some(m) = &s.ast else { continue };
        for f in &m.functions {
            d.fns.push(f.clone());
            for st in &f.body {
                d.stmts.push(st.clone());
                // Small subexpressions splice best; big ones are whole statements.
                d.exprs.extend(all_subexprs(&st.rhs).into_iter().filter(|e| count(e) <= 12));
            }
        }
    }
    d.tokens.extend(EXTRA_TOKENS.iter().map(|s| s.to_string()));
    d.tokens.sort();
    d.tokens.dedup();
    d
}

/// Splits text into tokens (identifiers, numbers, operators, single characters,
/// whitespace and comments); concatenating them gives the text back.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let cs: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        let start = i;
        if c == '#' {
            while i < cs.len() && cs[i] != '\n' {
                i += 1;
            }
        } else if c.is_whitespace() {
            while i < cs.len() && cs[i].is_whitespace() {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            while i < cs.len() && (cs[i].is_alphanumeric() || cs[i] == '_') {
                i += 1;
            }
            // `max=` and `min=` are one token.
            if i < cs.len() && cs[i] == '=' && matches!(cs[start..i].iter().collect::<String>().as_str(), "max" | "min") {
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == '.' && cs.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < cs.len() && (cs[i].is_ascii_alphanumeric() || cs[i] == '.') {
                if (cs[i] == 'e' || cs[i] == 'E') && matches!(cs.get(i + 1), Some('+' | '-')) {
                    i += 1;
                }
                i += 1;
            }
        } else {
            let two: String = cs[i..(i + 2).min(cs.len())].iter().collect();
            i += if ["->", "::", "<=", ">=", "==", "!=", "&&", "||"].contains(&two.as_str()) { 2 } else { 1 };
        }
        out.push(cs[start..i].iter().collect());
    }
    out
}

/// One to three token edits: delete, duplicate, swap, or replace with a corpus token.
pub fn mutate_tokens(text: &str, rng: &mut Rng, d: &Donors) -> String {
    let mut t = tokens(text);
    let positions = |t: &Vec<String>| -> Vec<usize> { (0..t.len()).filter(|&k| !t[k].trim().is_empty()).collect() };
    for _ in 0..1 + rng.below(3) {
        let p = positions(&t);
        if p.is_empty() {
            t.push(rng.pick(&d.tokens).clone());
            continue;
        }
        let k = *rng.pick(&p);
        match rng.below(4) {
            0 => {
                t.remove(k);
            }
            1 => {
                let tok = t[k].clone();
                t.insert(k, tok);
                t.insert(k + 1, " ".into());
            }
            2 => {
                let j = *rng.pick(&p);
                t.swap(k, j);
            }
            _ => {
                t[k] = rng.pick(&d.tokens).clone();
                t.insert(k + 1, " ".into());
                t.insert(k, " ".into());
            }
        }
    }
    t.concat()
}

/// Applies one AST mutation; returns its name (for statistics).
pub fn mutate_ast(m: &mut Module, rng: &mut Rng, d: &Donors) -> &'static str {
    if m.functions.is_empty() || rng.one_in(40) {
        if let Some(f) = pick_clone(rng, &d.fns) {
            m.functions.push(f);
            m.order.push(ItemRef::Fn(m.functions.len() - 1));
            return "splice-fn";
        }
    }
    let fi = rng.below(m.functions.len());
    let scope = scope_names(&m.functions[fi]);
    let f = &mut m.functions[fi];
    if f.body.is_empty() {
        if let Some(s) = pick_clone(rng, &d.stmts) {
            f.body.push(s);
        }
        return "splice-stmt";
    }
    let si = rng.below(f.body.len());
    let stmt_indices: Vec<String> = index_idents_mut(&mut f.body[si]).into_iter().map(|i| i.name.clone()).collect();
    match rng.below(20) {
        0 | 1 => {
            let v = *rng.pick(NUMBERS);
            let e = random_node(&mut f.body[si].rhs, rng, |e| matches!(e.kind, ExprKind::Number(_)));
            if let ExprKind::Number(x) = &mut e.kind {
                *x = v;
            } else {
                *e = num(v);
            }
            "number"
        }
        2 | 3 => {
            let mut ids = index_idents_mut(&mut f.body[si]);
            if ids.is_empty() {
                return "index-none";
            }
            let k = rng.below(ids.len());
            let new = if !stmt_indices.is_empty() && rng.below(3) > 0 {
                rng.pick(&stmt_indices).clone()
            } else {
                rng.pick(INDEX_NAMES).to_string()
            };
            ids[k].name = new;
            "index"
        }
        4 => {
            f.body.remove(si);
            "drop-stmt"
        }
        5 => {
            let s = f.body[si].clone();
            f.body.insert(si, s);
            "dup-stmt"
        }
        6 => {
            let sj = rng.below(f.body.len());
            f.body.swap(si, sj);
            "swap-stmt"
        }
        7 | 8 => {
            flip_operator(&mut f.body[si], rng);
            "operator"
        }
        9 | 10 => {
            let e = random_node(&mut f.body[si].rhs, rng, |e| matches!(e.kind, ExprKind::Call { .. }));
            if let ExprKind::Call { path, args, .. } = &mut e.kind {
                if rng.one_in(3) && !args.is_empty() {
                    *e = args.swap_remove(0);
                } else {
                    let arity_ok = rng.below(5) > 0;
                    let name = if (args.len() == 2) == arity_ok { rng.pick(BINARY) } else { rng.pick(UNARY) };
                    *path = vec![ident(name)];
                }
            } else {
                let inner = std::mem::replace(e, num(0.0));
                *e = if rng.one_in(3) {
                    let other = inner.clone();
                    call(*rng.pick(BINARY), vec![inner, if rng.one_in(2) { num(0.5) } else { other }])
                } else {
                    call(*rng.pick(UNARY), vec![inner])
                };
            }
            "call"
        }
        11 => {
            let Some(mut s) = pick_clone(rng, &d.stmts) else { return "none" };
            if rng.below(3) > 0 {
                fit_names(&mut s.rhs, &scope, rng);
            }
            let at = rng.below(f.body.len() + 1);
            f.body.insert(at, s);
            "splice-stmt"
        }
        12 | 13 => {
            // Another node of the same function splices best (its names are in scope).
            let own: Vec<Expr> = f.body.iter().flat_map(|s| all_subexprs(&s.rhs)).filter(|e| count(e) <= 16).collect();
            let mut donor = if rng.one_in(3) { pick_clone(rng, &d.exprs) } else { pick_clone(rng, &own) };
            if let Some(x) = &mut donor {
                fit_names(x, &scope, rng);
            }
            let e = random_node(&mut f.body[si].rhs, rng, |_| true);
            if let Some(x) = donor {
                *e = match rng.below(3) {
                    0 => x,
                    1 => bin_add(std::mem::replace(e, num(0.0)), if rng.one_in(2) { AddOp::Add } else { AddOp::Sub }, x),
                    _ => bin_mul(std::mem::replace(e, num(0.0)), if rng.one_in(3) { MulOp::Div } else { MulOp::Mul }, x),
                };
            }
            "splice-expr"
        }
        14 | 15 => {
            let a = stmt_indices.first().cloned().unwrap_or_else(|| "i".into());
            let b = rng.pick(&stmt_indices.iter().map(String::as_str).chain(["0", "1"]).collect::<Vec<_>>()).to_string();
            let op = *rng.pick(&[CmpOp::Le, CmpOp::Lt, CmpOp::Eq, CmpOp::Ne, CmpOp::Ge, CmpOp::Gt]);
            let e = random_node(&mut f.body[si].rhs, rng, |_| true);
            let inner = std::mem::replace(e, num(0.0));
            let other = match rng.below(3) {
                0 => num(0.0),
                1 => num(-f64::INFINITY),
                _ => num(1.0),
            };
            let atom = |s: &str| if let Ok(v) = s.parse::<f64>() { num(v) } else { name_expr(s) };
            let cond = Cond::Cmp { op, lhs: atom(&a), rhs: atom(&b), span: Default::default() };
            let (then, otherwise) = if rng.one_in(2) { (inner, other) } else { (other, inner) };
            *e = ex(ExprKind::Select { cond: Box::new(cond), then: Box::new(then), otherwise: Box::new(otherwise) });
            "select"
        }
        16 => {
            let idx = stmt_indices.last().cloned().unwrap_or_else(|| "k".into());
            let kw = *rng.pick(&[ReduceKw::Sum, ReduceKw::Sum, ReduceKw::Max, ReduceKw::Min]);
            let e = random_node(&mut f.body[si].rhs, rng, |_| true);
            let inner = std::mem::replace(e, num(0.0));
            *e = ex(ExprKind::Reduce { kw, kw_span: Default::default(), indices: vec![ident(&idx)], body: Box::new(inner) });
            "reduce"
        }
        17 => {
            let e = random_node(&mut f.body[si].rhs, rng, |e| matches!(e.kind, ExprKind::Access { indices: Some(_), .. }));
            if let ExprKind::Access { indices: Some(items), .. } = &mut e.kind {
                if items.len() >= 2 && rng.one_in(2) {
                    let k = rng.below(items.len() - 1);
                    let a = items.remove(k);
                    let b = items.remove(k);
                    let mut g = a.idents().to_vec();
                    g.extend(b.idents().iter().cloned());
                    items.insert(k, IndexItem::Group(g, Default::default()));
                } else if !items.is_empty() && rng.one_in(2) {
                    items.remove(rng.below(items.len()));
                } else {
                    items.push(IndexItem::Single(ident(*rng.pick(INDEX_NAMES))));
                }
            }
            "access-shape"
        }
        18 => {
            let p = &mut f.params;
            if p.is_empty() {
                return "none";
            }
            let k = rng.below(p.len());
            let ty = &mut p[k].ty;
            match (rng.below(3), &mut ty.dims) {
                (0, _) => ty.dtype = ident(if ty.dtype.name == "f32" { "f64" } else { "f32" }),
                (1, Some(dims)) if !dims.is_empty() => {
                    let j = rng.below(dims.len());
                    let names = ["n", "m", "d", "k"];
                    dims[j].factors = match rng.below(3) {
                        0 => vec![DimFactor::Lit(1 + rng.below(4) as u64, Default::default())],
                        1 => vec![DimFactor::Name(ident(*rng.pick(&names)))],
                        _ => vec![DimFactor::Name(ident(*rng.pick(&names))), DimFactor::Name(ident(*rng.pick(&names)))],
                    };
                }
                (_, Some(dims)) if dims.len() >= 2 => {
                    let j = rng.below(dims.len());
                    dims.swap(0, j);
                }
                _ => ty.dtype = ident("f64"),
            }
            "signature"
        }
        _ => {
            let t = &mut f.body[si].targets;
            if let Some(Some(items)) = t.first_mut().map(|l| &mut l.indices) {
                match rng.below(3) {
                    0 if !items.is_empty() => {
                        items.remove(rng.below(items.len()));
                    }
                    1 if items.len() >= 2 => {
                        let j = rng.below(items.len());
                        items.swap(0, j);
                    }
                    _ => items.push(IndexItem::Single(ident(*rng.pick(INDEX_NAMES)))),
                }
            }
            "lhs"
        }
    }
}

fn pick_clone<T: Clone>(rng: &mut Rng, xs: &[T]) -> Option<T> {
    if xs.is_empty() {
        None
    } else {
        Some(rng.pick(xs).clone())
    }
}

/// A random node of `e`, preferring one that satisfies `want` when there is one.
fn random_node<'a>(e: &'a mut Expr, rng: &mut Rng, want: impl Fn(&Expr) -> bool) -> &'a mut Expr {
    let n = count(e);
    let mut good = Vec::new();
    {
        let mut probe = e.clone();
        for k in 0..n {
            if nth(&mut probe, k).is_some_and(|x| want(x)) {
                good.push(k);
            }
        }
    }
    let k = if good.is_empty() || rng.one_in(4) { rng.below(n) } else { *rng.pick(&good) };
    // `nth` finds every k below `count`; the fallback only guards against a miscount.
    match nth(e, k) {
        Some(x) => x,
        None => unreachable_node(),
    }
}

/// Never reached: `random_node` asks for a node number below the node count. Returns a
/// leaked dummy rather than panicking, so that a miscount cannot stop a fuzz run.
fn unreachable_node<'a>() -> &'a mut Expr {
    Box::leak(Box::new(num(0.0)))
}

fn flip_operator(s: &mut Stmt, rng: &mut Rng) {
    if rng.one_in(5) {
        s.op = *rng.pick(&[AssignOp::Assign, AssignOp::Max, AssignOp::Min]);
        return;
    }
    let e = random_node(&mut s.rhs, rng, |e| {
        matches!(e.kind, ExprKind::Add { .. } | ExprKind::Mul { .. } | ExprKind::Reduce { .. } | ExprKind::Select { .. })
    });
    match &mut e.kind {
        ExprKind::Add { rest, .. } => {
            let k = rng.below(rest.len());
            rest[k].0 = if rest[k].0 == AddOp::Add { AddOp::Sub } else { AddOp::Add };
        }
        ExprKind::Mul { rest, .. } => {
            let k = rng.below(rest.len());
            rest[k].0 = if rest[k].0 == MulOp::Mul { MulOp::Div } else { MulOp::Mul };
        }
        ExprKind::Reduce { kw, .. } => *kw = *rng.pick(&[ReduceKw::Sum, ReduceKw::Max, ReduceKw::Min]),
        ExprKind::Select { cond, .. } => flip_cond(cond, rng),
        _ => {
            let inner = std::mem::replace(e, num(0.0));
            *e = ex(ExprKind::Neg(Box::new(inner)));
        }
    }
}

fn flip_cond(c: &mut Cond, rng: &mut Rng) {
    match c {
        Cond::Cmp { op, .. } => *op = *rng.pick(&[CmpOp::Le, CmpOp::Lt, CmpOp::Eq, CmpOp::Ne, CmpOp::Ge, CmpOp::Gt]),
        Cond::And(cs, s) => {
            if rng.one_in(2) {
                *c = Cond::Or(std::mem::take(cs), *s);
            } else {
                let k = rng.below(cs.len());
                flip_cond(&mut cs[k], rng);
            }
        }
        Cond::Or(cs, s) => {
            if rng.one_in(2) {
                *c = Cond::And(std::mem::take(cs), *s);
            } else {
                let k = rng.below(cs.len());
                flip_cond(&mut cs[k], rng);
            }
        }
        Cond::Not(inner, _) => {
            let x = std::mem::replace(&mut **inner, Cond::And(Vec::new(), Default::default()));
            *c = x;
        }
    }
}

/// Tensor names a function can read, with their ranks (None for a scalar): parameters
/// and statement targets.
fn scope_names(f: &FnDef) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> =
        f.params.iter().map(|p| (p.name.name.clone(), p.ty.dims.as_ref().map_or(0, Vec::len))).collect();
    for s in &f.body {
        for t in &s.targets {
            v.push((t.name.name.clone(), t.indices.as_ref().map_or(0, Vec::len)));
        }
    }
    v
}

/// Renames reads of unknown tensors in a spliced expression to tensors in scope with
/// the same rank, so that the splice has a chance to check.
fn fit_names(e: &mut Expr, scope: &[(String, usize)], rng: &mut Rng) {
    let n = count(e);
    for k in 0..n {
        if let Some(Expr { kind: ExprKind::Access { name, indices }, .. }) = nth(e, k) {
            let rank = indices.as_ref().map_or(0, Vec::len);
            if scope.iter().any(|(s, _)| *s == name.name) || INDEX_NAMES.contains(&name.name.as_str()) {
                continue;
            }
            if indices.is_none() && name.name.len() == 1 && name.name.chars().all(|c| c.is_lowercase()) {
                continue; // an index or a dim
            }
            let fits: Vec<&String> = scope.iter().filter(|(_, r)| *r == rank).map(|(s, _)| s).collect();
            if !fits.is_empty() {
                name.name = rng.pick(&fits).to_string();
            }
        }
    }
}
