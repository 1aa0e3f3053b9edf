//! Shrinking a finding: drop functions, statements, operands and subexpressions while
//! the program still shows the same finding (same kind, same stage) under the same
//! sizes, dtype and inputs; programs that do not parse shrink token by token.

use crate::astutil::*;
use crate::mutate::tokens;
use crate::run::{check_program, Choice, Finding, Limits};
use std::time::Instant;
use tessera_compiler::syntax::ast::*;
use tessera_compiler::syntax::{parse, print_module};

pub fn still_fails(text: &str, finding: &Finding, limits: &Limits) -> bool {
    let choice = Choice::Fixed(finding.params.iter().cloned().collect());
    check_program(text, &choice, limits).findings.iter().any(|f| f.same_as(finding))
}

/// The smallest variant found before `deadline` that still fails like `finding`.
pub fn minimise(text: &str, finding: &Finding, limits: &Limits, deadline: Instant) -> String {
    let mut best = text.to_string();
    if let Ok(m) = parse(text, Default::default()) {
        let printed = print_module(&m);
        if printed.len() <= best.len() && still_fails(&printed, finding, limits) {
            best = printed;
        }
    }
    loop {
        if Instant::now() > deadline {
            return best;
        }
        let cands = match parse(&best, Default::default()) {
            Ok(m) if best == print_module(&m) => ast_candidates(&m, finding),
            _ => token_candidates(&best),
        };
        let mut improved = false;
        for c in cands {
            if Instant::now() > deadline {
                return best;
            }
            if c.len() < best.len() && still_fails(&c, finding, limits) {
                best = c;
                improved = true;
                break;
            }
        }
        if !improved {
            return best;
        }
    }
}

/// Smaller programs, biggest cuts first.
fn ast_candidates(m: &Module, finding: &Finding) -> Vec<String> {
    let mut out = Vec::new();
    let keep_fn = finding.params.as_ref().map(|p| p.function.clone());
    for j in 0..m.functions.len() {
        if m.functions.len() > 1 && Some(&m.functions[j].name.name) != keep_fn.as_ref() {
            let mut c = m.clone();
            c.functions.remove(j);
            c.order = renumber(&m.order, ItemRef::Fn(j));
            out.push(print_module(&c));
        }
    }
    for j in 0..m.uses.len() {
        let mut c = m.clone();
        c.uses.remove(j);
        c.order = renumber(&m.order, ItemRef::Use(j));
        out.push(print_module(&c));
    }
    for (fi, f) in m.functions.iter().enumerate() {
        for si in 0..f.body.len() {
            let mut c = m.clone();
            c.functions[fi].body.remove(si);
            out.push(print_module(&c));
        }
    }
    for (fi, f) in m.functions.iter().enumerate() {
        for (si, s) in f.body.iter().enumerate() {
            let n = count(&s.rhs);
            for k in 0..n {
                let mut probe = s.rhs.clone();
                let Some(node) = nth(&mut probe, k) else { continue };
                let mut replacements: Vec<Expr> = children_mut(node).into_iter().map(|c| c.clone()).collect();
                let operands = match &node.kind {
                    ExprKind::Add { rest, .. } => rest.len(),
                    ExprKind::Mul { rest, .. } => rest.len(),
                    _ => 0,
                };
                for r in 0..operands {
                    let mut x = node.clone();
                    match &mut x.kind {
                        ExprKind::Add { rest, .. } => {
                            rest.remove(r);
                        }
                        ExprKind::Mul { rest, .. } => {
                            rest.remove(r);
                        }
                        _ => {}
                    }
                    replacements.push(x);
                }
                if !matches!(node.kind, ExprKind::Number(_)) {
                    replacements.push(num(1.0));
                }
                for r in replacements {
                    let mut c = m.clone();
                    if let Some(slot) = nth(&mut c.functions[fi].body[si].rhs, k) {
                        *slot = r;
                        out.push(print_module(&c));
                    }
                }
            }
        }
    }
    for (fi, f) in m.functions.iter().enumerate() {
        for pi in 0..f.params.len() {
            let mut c = m.clone();
            c.functions[fi].params.remove(pi);
            out.push(print_module(&c));
        }
    }
    out
}

fn renumber(order: &[ItemRef], removed: ItemRef) -> Vec<ItemRef> {
    order
        .iter()
        .filter(|&&i| i != removed)
        .map(|&i| match (i, removed) {
            (ItemRef::Fn(a), ItemRef::Fn(r)) if a > r => ItemRef::Fn(a - 1),
            (ItemRef::Use(a), ItemRef::Use(r)) if a > r => ItemRef::Use(a - 1),
            (i, _) => i,
        })
        .collect()
}

/// Texts with a run of tokens removed, long runs first.
fn token_candidates(text: &str) -> Vec<String> {
    let t = tokens(text);
    let mut out = Vec::new();
    let mut chunk = (t.len() / 2).max(1);
    loop {
        let mut start = 0;
        while start < t.len() {
            let end = (start + chunk).min(t.len());
            out.push([&t[..start], &t[end..]].concat().concat());
            start = end;
        }
        if chunk == 1 {
            break;
        }
        chunk /= 2;
    }
    out
}
