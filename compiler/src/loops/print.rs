//! The text form of the loop IR (`tessera emit --stage loops`). It is complete: `parse`
//! reads it back into a program that prints the same (numbers in Rust's shortest
//! round-trip form, constants with their values).

use super::*;
use std::fmt::{self, Write};

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "program {} ({})", self.name, self.dtype.name())?;
        for (k, b) in self.bufs.iter().enumerate() {
            let kind = match &b.kind {
                BufKind::Input(i) => format!("input {i}"),
                BufKind::Output(i) => format!("output {i}"),
                // Before the memory plan (no slots yet) a temporary's slot means nothing.
                BufKind::Temp { .. } if self.slots.is_empty() => "temp".to_string(),
                BufKind::Temp { slot } => format!("temp, slot {slot}"),
                BufKind::Const(v) => {
                    let values: Vec<String> = v.iter().map(|x| crate::tir::fmt_number(*x)).collect();
                    format!("const [{}]", values.join(", "))
                }
                BufKind::Scratch => "scratch, per thread".to_string(),
                BufKind::Tile { row } => format!("tile rows of {row}, per thread"),
            };
            writeln!(f, "  buf {} {}{:?}  {kind}", BufId(k as u32), b.name, b.shape)?;
        }
        if !self.slots.is_empty() {
            let slots: Vec<String> = self.slots.iter().map(|s| s.to_string()).collect();
            let bytes = self.slots.iter().sum::<usize>() * self.dtype.size_of();
            writeln!(f, "  slots [{}] elements ({bytes} bytes)", slots.join(", "))?;
        }
        for (k, kern) in self.kernels.iter().enumerate() {
            writeln!(f)?;
            if let Some(g) = self.tile_group_at(k) {
                let roles: Vec<String> = g
                    .roles
                    .iter()
                    .zip(g.first..=g.last)
                    .filter_map(|(r, k)| r.map(|r| format!("kernel {k} slices {}", if r == TileRole::M { "m" } else { "n" })))
                    .collect();
                writeln!(f, "tiles of {} rows of {}, kernels {}..={} ({})", g.tile, g.extent, g.first, g.last, roles.join(", "))?;
            }
            match kern {
                Kernel::Gemm(g) => print_gemm(f, self, k, g)?,
                Kernel::Loops(l) => print_loops(f, self, k, l)?,
            }
        }
        Ok(())
    }
}

fn print_gemm(f: &mut fmt::Formatter<'_>, p: &Program, k: usize, g: &Gemm) -> fmt::Result {
    let name = |b: BufId| &p.buf(b).name;
    writeln!(f, "kernel {k} gemm (step {}) {}", g.step, g.roles)?;
    let op = if g.accumulate { "+=" } else { "=" };
    writeln!(
        f,
        "  {}[m, n] {op} {} * {}[m, k] {}[k, n]  m = {}, n = {}, k = {}",
        name(g.c),
        crate::tir::fmt_number(g.alpha),
        name(g.a),
        name(g.b),
        g.m,
        g.n,
        g.k
    )?;
    writeln!(
        f,
        "  strides  a [{}, {}]  b [{}, {}]  c [{}, {}]",
        g.a_strides[0], g.a_strides[1], g.b_strides[0], g.b_strides[1], g.c_strides[0], g.c_strides[1]
    )?;
    for l in &g.outer {
        let what = if l.stride_c == 0 { "sum" } else { "loop" };
        writeln!(f, "  {what} {}  strides a {}, b {}, c {}", l.extent, l.stride_a, l.stride_b, l.stride_c)?;
    }
    Ok(())
}

fn print_loops(f: &mut fmt::Formatter<'_>, p: &Program, k: usize, kern: &LoopKernel) -> fmt::Result {
    let steps: Vec<String> = kern.steps.iter().map(|s| s.to_string()).collect();
    writeln!(f, "kernel {k} loops {} (steps {})", kern.name, steps.join(", "))?;
    let mut out = String::new();
    let c = Ctx { p, k: kern };
    for s in &kern.body {
        c.stmt(&mut out, s, 1);
    }
    f.write_str(&out)
}

struct Ctx<'a> {
    p: &'a Program,
    k: &'a LoopKernel,
}

impl Ctx<'_> {
    fn loop_name(&self, l: LoopId) -> String {
        self.k.loops.get(l.index()).map_or_else(|| l.to_string(), |x| x.name.clone())
    }

    fn var_name(&self, v: VarId) -> String {
        self.k.vars.get(v.index()).map_or_else(|| v.to_string(), |x| x.clone())
    }

    fn buf_name(&self, b: BufId) -> String {
        self.p.bufs.get(b.index()).map_or_else(|| b.to_string(), |x| x.name.clone())
    }

    fn stmt(&self, out: &mut String, s: &Stmt, depth: usize) {
        let pad = "  ".repeat(depth);
        match s {
            Stmt::For { id, extent, parallel, body } => {
                let par = if *parallel { "parallel " } else { "" };
                let _ = writeln!(out, "{pad}{par}for {} in 0..{extent} {{", self.loop_name(*id));
                for b in body {
                    self.stmt(out, b, depth + 1);
                }
                let _ = writeln!(out, "{pad}}}");
            }
            Stmt::Let { var, value } => {
                let _ = writeln!(out, "{pad}{} = {}", self.var_name(*var), self.expr(value));
            }
            Stmt::Update { var, op, value } => {
                let v = self.var_name(*var);
                let _ = match op {
                    Accum::Sum => writeln!(out, "{pad}{v} += {}", self.expr(value)),
                    _ => writeln!(out, "{pad}{v} {}= {}", op.name(), self.expr(value)),
                };
            }
            Stmt::Store { buf, index, value } => {
                let _ = writeln!(out, "{pad}{}[{}] = {}", self.buf_name(*buf), self.affine(index), self.expr(value));
            }
        }
    }

    fn affine(&self, a: &Affine) -> String {
        let mut parts: Vec<String> = a
            .terms
            .iter()
            .map(|&(l, s)| if s == 1 { self.loop_name(l) } else { format!("{}*{s}", self.loop_name(l)) })
            .collect();
        if a.offset != 0 || parts.is_empty() {
            parts.push(a.offset.to_string());
        }
        parts.join(" + ")
    }

    fn expr(&self, e: &Expr) -> String {
        match e {
            Expr::Const(v) => crate::tir::fmt_number(*v),
            Expr::Load(b, a) => format!("{}[{}]", self.buf_name(*b), self.affine(a)),
            Expr::Var(v) => self.var_name(*v),
            Expr::Index(l) => format!("#{}", self.loop_name(*l)),
            Expr::Unary(UnOp::Neg, a) => format!("-{}", self.atom(a)),
            Expr::Unary(op, a) => format!("{}({})", op.name(), self.expr(a)),
            Expr::Binary(op, a, b) if op.is_infix() => {
                format!("{} {} {}", self.atom(a), op.name(), self.atom(b))
            }
            Expr::Binary(op, a, b) => format!("{}({}, {})", op.name(), self.expr(a), self.expr(b)),
            Expr::Select(c, a, b) => format!("select({}, {}, {})", self.pred(c), self.expr(a), self.expr(b)),
        }
    }

    /// An operand of an infix operator: parenthesised unless it is atomic.
    fn atom(&self, e: &Expr) -> String {
        match e {
            Expr::Binary(op, ..) if op.is_infix() => format!("({})", self.expr(e)),
            Expr::Unary(UnOp::Neg, _) => format!("({})", self.expr(e)),
            _ => self.expr(e),
        }
    }

    fn pred(&self, p: &Pred) -> String {
        match p {
            Pred::Cmp(op, a, b) => format!("{} {} {}", self.atom(a), op.symbol(), self.atom(b)),
            Pred::And(ps) => ps.iter().map(|x| format!("({})", self.pred(x))).collect::<Vec<_>>().join(" && "),
            Pred::Or(ps) => ps.iter().map(|x| format!("({})", self.pred(x))).collect::<Vec<_>>().join(" || "),
            Pred::Not(x) => format!("!({})", self.pred(x)),
        }
    }
}
