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
                BufKind::Index(i) => format!("index {i}"),
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
                    .zip(g.factors.iter().chain(std::iter::repeat(&1)))
                    .filter_map(|((r, k), &factor)| {
                        let x = if factor == 1 { String::new() } else { format!(" x{factor}") };
                        r.map(|r| format!("kernel {k} slices {}{x}", if r == TileRole::M { "m" } else { "n" }))
                    })
                    .collect();
                writeln!(f, "tiles of {} rows of {}, kernels {}..={} ({})", g.tile, g.extent, g.first, g.last, roles.join(", "))?;
                if let Some(s) = &g.stream {
                    print_stream(f, self, s)?;
                }
            }
            match kern {
                Kernel::Gemm(g) => print_gemm(f, self, k, g)?,
                Kernel::Loops(l) => print_loops(f, self, k, l)?,
            }
        }
        Ok(())
    }
}

/// The lines of a stream under its group's line: one per axis, per shift and per mask
/// comparison, and the score fill.
fn print_stream(f: &mut fmt::Formatter<'_>, p: &Program, s: &Stream) -> fmt::Result {
    let name = |b: BufId| p.bufs.get(b.index()).map_or_else(|| b.to_string(), |x| x.name.clone());
    let axis = |k: usize| s.axes.get(k).map_or_else(|| format!("#{k}"), |a| a.name.clone());
    for a in &s.axes {
        writeln!(f, "  stream {} of {} in blocks of {}, kernels {}..={}", a.name, a.extent, a.block, a.kernels.0, a.kernels.1)?;
    }
    for sh in &s.shifts {
        writeln!(f, "  shift {} by {} * {}", name(sh.buf), axis(sh.axis), sh.stride)?;
    }
    let strides: Vec<String> = s.score_strides.iter().map(|x| x.to_string()).collect();
    writeln!(f, "  scores {} filled after kernel {}, key strides [{}]", name(s.scores), s.fill_after, strides.join(", "))?;
    let names: Vec<String> = (0..s.axes.len()).map(axis).collect();
    let row = mask_row_name(&names);
    for c in &s.mask {
        writeln!(f, "  mask {}", mask_text(c, &names, &row))?;
    }
    Ok(())
}

/// The name the mask lines give the group's row: `i`, unless a key is called that.
pub(super) fn mask_row_name(keys: &[String]) -> String {
    ["i", "row", "r"]
        .iter()
        .map(|x| x.to_string())
        .chain((0..).map(|k| format!("i{k}")))
        .find(|x| !keys.contains(x))
        .unwrap_or_default()
}

/// `j - i + 1 <= 0`: the keys' terms, the row's, the constant, the comparison with 0.
pub(super) fn mask_text(c: &MaskCmp, keys: &[String], row: &str) -> String {
    let mut out = String::new();
    let terms = c.keys.iter().zip(keys).map(|(&a, n)| (a, n.as_str())).chain([(c.row, row)]);
    for (a, n) in terms.filter(|t| t.0 != 0) {
        push_term(&mut out, a, |m| if m == 1 { n.to_string() } else { format!("{m}*{n}") });
    }
    if c.constant != 0 || out.is_empty() {
        push_term(&mut out, c.constant, |m| m.to_string());
    }
    format!("{out} {} 0", c.op.symbol())
}

/// Appends `± term` (a leading `-` sticks to the first term).
fn push_term(out: &mut String, a: i64, term: impl Fn(u64) -> String) {
    let m = a.unsigned_abs();
    match (out.is_empty(), a < 0) {
        (true, false) => out.push_str(&term(m)),
        (true, true) => out.push_str(&format!("-{}", term(m))),
        (false, false) => out.push_str(&format!(" + {}", term(m))),
        (false, true) => out.push_str(&format!(" - {}", term(m))),
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

    /// A gathered address: the base's loop terms, then each indirect term as
    /// `@INDEX[at]*stride<extent`, then the offset when it is not 0.
    fn gathered(&self, a: &Affine, ind: &[Indirect]) -> String {
        let mut parts: Vec<String> = a
            .terms
            .iter()
            .map(|&(l, s)| if s == 1 { self.loop_name(l) } else { format!("{}*{s}", self.loop_name(l)) })
            .collect();
        for i in ind {
            parts.push(format!("@{}[{}]*{}<{}", self.buf_name(i.index), self.affine(&i.at), i.stride, i.extent));
        }
        if a.offset != 0 || parts.is_empty() {
            parts.push(a.offset.to_string());
        }
        parts.join(" + ")
    }

    fn expr(&self, e: &Expr) -> String {
        match e {
            Expr::Const(v) => crate::tir::fmt_number(*v),
            Expr::Load(b, a) => format!("{}[{}]", self.buf_name(*b), self.affine(a)),
            Expr::Gather(b, a, ind) => format!("{}[{}]", self.buf_name(*b), self.gathered(a, ind)),
            Expr::Var(v) => self.var_name(*v),
            Expr::Index(l) => format!("#{}", self.loop_name(*l)),
            Expr::Unary(UnOp::Neg, a) => format!("-{}", self.atom(a)),
            Expr::Unary(op, a) => format!("{}({})", op.name(), self.expr(a)),
            Expr::Binary(op, a, b) if op.is_infix() => {
                format!("{} {} {}", self.atom(a), op.name(), self.atom(b))
            }
            Expr::Binary(BinOp::Lmul(m @ 1..), a, b) => format!("lmul({}, {}, {m})", self.expr(a), self.expr(b)),
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
