//! AST → canonical source text (`tessera emit --stage ast`). Parsing the output gives
//! the same AST back (spans aside): parentheses are written exactly where the tree
//! needs them.

use super::ast::*;
use crate::tir::fmt_number;
use std::fmt::Write;

/// Prints a whole module.
pub fn print_module(m: &Module) -> String {
    let mut out = String::new();
    let mut prev_use = false;
    for (k, item) in m.order.iter().enumerate() {
        match *item {
            ItemRef::Use(u) => {
                if k > 0 && !prev_use {
                    out.push('\n');
                }
                let path: Vec<&str> = m.uses[u].path.iter().map(|i| i.name.as_str()).collect();
                let _ = writeln!(out, "use {}", path.join("::"));
                prev_use = true;
            }
            ItemRef::Fn(f) => {
                if k > 0 {
                    out.push('\n');
                }
                print_fn(&mut out, &m.functions[f]);
                prev_use = false;
            }
        }
    }
    out
}

fn print_fn(out: &mut String, f: &FnDef) {
    let params: Vec<String> = f.params.iter().map(param).collect();
    let outs: Vec<String> = f.outputs.iter().map(param).collect();
    let outs = if f.outputs_parenthesized { format!("({})", outs.join(", ")) } else { outs.join(", ") };
    let dims = bracketed(f.dims.iter().map(|d| d.name.clone()));
    let _ = writeln!(out, "fn {}{dims}({}) -> {} {{", f.name.name, params.join(", "), outs);
    for s in &f.body {
        let _ = writeln!(out, "    {}", stmt(s));
    }
    out.push_str("}\n");
}

fn param(p: &Param) -> String {
    let mut s = format!("{}: {}", p.name.name, p.ty.dtype.name);
    if let Some(dims) = &p.ty.dims {
        let ds: Vec<String> = dims.iter().map(dim_expr).collect();
        let _ = write!(s, "[{}]", ds.join(", "));
    }
    s
}

/// `q * s`, `3`, `n`.
fn dim_expr(d: &DimExpr) -> String {
    d.factors
        .iter()
        .map(|f| match f {
            DimFactor::Name(i) => i.name.clone(),
            DimFactor::Lit(v, _) => v.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" * ")
}

/// `[a, b]` for header dims, or nothing when there are none.
fn bracketed(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        String::new()
    } else {
        format!("[{}]", items.join(", "))
    }
}

/// Prints one statement on one line.
pub fn stmt(s: &Stmt) -> String {
    let targets: Vec<String> = s
        .targets
        .iter()
        .map(|t| match &t.indices {
            None => t.name.name.clone(),
            Some(items) => format!("{}[{}]", t.name.name, index_items(items)),
        })
        .collect();
    let op = match s.op {
        AssignOp::Assign => "=",
        AssignOp::Max => "max=",
        AssignOp::Min => "min=",
    };
    format!("{} {op} {}", targets.join(", "), expr(&s.rhs))
}

fn index_items(items: &[IndexItem]) -> String {
    items
        .iter()
        .map(|it| match it {
            IndexItem::Single(i) => i.name.clone(),
            IndexItem::Group(g, _) => {
                format!("({})", g.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "))
            }
            IndexItem::Gather { tensor, indices, .. } => {
                format!("{}[{}]", tensor.name, indices.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints an expression.
pub fn expr(e: &Expr) -> String {
    let mut out = String::new();
    write_expr(&mut out, e);
    out
}

fn write_child(out: &mut String, e: &Expr, paren: bool) {
    if paren {
        out.push('(');
        write_expr(out, e);
        out.push(')');
    } else {
        write_expr(out, e);
    }
}

fn write_expr(out: &mut String, e: &Expr) {
    let is_add = |x: &Expr| matches!(x.kind, ExprKind::Add { .. });
    let is_chain = |x: &Expr| matches!(x.kind, ExprKind::Add { .. } | ExprKind::Mul { .. });
    match &e.kind {
        ExprKind::Number(v) => out.push_str(&fmt_number(*v)),
        ExprKind::Access { name, indices } => {
            out.push_str(&name.name);
            if let Some(items) = indices {
                let _ = write!(out, "[{}]", index_items(items));
            }
        }
        ExprKind::Neg(x) => {
            out.push('-');
            write_child(out, x, is_chain(x));
        }
        ExprKind::Add { first, rest } => {
            write_child(out, first, is_add(first));
            for (op, x) in rest {
                out.push_str(if *op == AddOp::Add { " + " } else { " - " });
                write_child(out, x, is_add(x));
            }
        }
        ExprKind::Mul { first, rest } => {
            write_child(out, first, is_chain(first));
            for (op, x) in rest {
                out.push_str(if *op == MulOp::Mul { " * " } else { " / " });
                write_child(out, x, is_chain(x));
            }
        }
        ExprKind::Call { path, dims, args } => {
            let p: Vec<&str> = path.iter().map(|i| i.name.as_str()).collect();
            let a: Vec<String> = args.iter().map(expr).collect();
            let _ = write!(out, "{}{}({})", p.join("::"), bracketed(dims.iter().map(dim_expr)), a.join(", "));
        }
        ExprKind::Select { cond, then, otherwise } => {
            let _ = write!(out, "select({}, {}, {})", cond_text(cond), expr(then), expr(otherwise));
        }
        ExprKind::Reduce { kw, indices, body, .. } => {
            let kw = match kw {
                ReduceKw::Sum => "sum",
                ReduceKw::Max => "max",
                ReduceKw::Min => "min",
            };
            let idx: Vec<&str> = indices.iter().map(|i| i.name.as_str()).collect();
            let _ = write!(out, "{kw}[{}]({})", idx.join(", "), expr(body));
        }
    }
}

/// Prints a condition.
pub fn cond_text(c: &Cond) -> String {
    match c {
        Cond::Cmp { op, lhs, rhs, .. } => {
            let op = op.symbol();
            format!("{} {op} {}", expr(lhs), expr(rhs))
        }
        Cond::Or(parts, _) => parts
            .iter()
            .map(|p| if matches!(p, Cond::Or(..)) { format!("({})", cond_text(p)) } else { cond_text(p) })
            .collect::<Vec<_>>()
            .join(" || "),
        Cond::And(parts, _) => parts
            .iter()
            .map(|p| {
                if matches!(p, Cond::Or(..) | Cond::And(..)) {
                    format!("({})", cond_text(p))
                } else {
                    cond_text(p)
                }
            })
            .collect::<Vec<_>>()
            .join(" && "),
        Cond::Not(x, _) => format!("!({})", cond_text(x)),
    }
}
