//! Text form of the TIR (`tessera emit --stage tir`).
//!
//! One function is written as its signature, then each statement with its reduction
//! made explicit (`sum[l] ...`) and a comment giving every index's range and the shape
//! of the tensor it defines.

use super::*;
use std::fmt::{self, Write};

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decl = |t: TensorId| -> String {
            let d = self.tensor(t);
            format!("{}: {}", d.name, self.type_string(t))
        };
        let ins: Vec<String> = self.args().map(decl).collect();
        let outs: Vec<String> = self.outputs.iter().map(|&t| decl(t)).collect();
        let outs = if outs.len() == 1 { outs[0].clone() } else { format!("({})", outs.join(", ")) };
        // Dims that no input or output shape names (declared in a header, `fn f[w](...)`)
        // are listed after the name, as they are written; the signature would not show them.
        let in_shapes: Vec<DimId> = self
            .args()
            .chain(self.outputs.iter().copied())
            .flat_map(|t| self.tensor(t).shape.iter().flat_map(|s| s.syms.iter().copied()))
            .collect();
        let free: Vec<&str> = (0..self.dims.len())
            .filter(|&k| !in_shapes.contains(&DimId(k as u32)))
            .map(|k| self.dims[k].name.as_str())
            .collect();
        let header = if free.is_empty() { String::new() } else { format!("[{}]", free.join(", ")) };
        writeln!(f, "fn {}{header}({}) -> {} {{", self.name, ins.join(", "), outs)?;
        for c in &self.constants {
            let total = c.values.len();
            writeln!(
                f,
                "  const {}: {} = {}    # {} of {total} entries nonzero",
                self.tensor(c.tensor).name,
                self.type_string(c.tensor),
                c.label,
                c.nonzeros()
            )?;
        }
        for s in &self.stmts {
            writeln!(f, "  {}", StmtDisplay { func: self, stmt: s })?;
        }
        writeln!(f, "}}")
    }
}

impl Function {
    /// `f32[n, d]`, or `f32` for a scalar.
    pub fn type_string(&self, t: TensorId) -> String {
        let d = self.tensor(t);
        let dtype = match d.kind {
            TensorKind::Index(it) => it.name(),
            _ => self.dtype.name(),
        };
        if d.shape.is_empty() {
            return dtype.to_string();
        }
        let dims: Vec<String> = d.shape.iter().map(|s| s.display(&self.dims).to_string()).collect();
        format!("{dtype}[{}]", dims.join(", "))
    }

    /// Writes one statement as text (the form used by the printer).
    pub fn stmt_string(&self, s: &Stmt) -> String {
        StmtDisplay { func: self, stmt: s }.to_string()
    }

    /// The right-hand side of a statement as the printer writes it (`sum[j] A[i, j]`).
    pub fn rhs_string(&self, s: &Stmt) -> String {
        let p = Printer { func: self, stmt: s };
        let mut rhs = String::new();
        // Writing to a String cannot fail.
        let _ = if s.reduced.is_empty() {
            p.expr(&mut rhs, &s.rhs, 0)
        } else {
            write!(rhs, "{}[{}] ", s.op.name(), p.index_list(&s.reduced)).and_then(|_| p.expr(&mut rhs, &s.rhs, PREC_MUL))
        };
        rhs
    }
}

struct StmtDisplay<'a> {
    func: &'a Function,
    stmt: &'a Stmt,
}

impl fmt::Display for StmtDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = Printer { func: self.func, stmt: self.stmt };
        let s = self.stmt;
        let target = self.func.tensor(s.target);
        write!(f, "{}", target.name)?;
        if !s.lhs.is_empty() {
            write!(f, "[{}]", p.positions(&s.lhs))?;
        }
        f.write_str(" = ")?;
        f.write_str(&self.func.rhs_string(s))?;
        let ranges: Vec<String> = s
            .indices
            .iter()
            .map(|v| format!("{}: {}", v.name, v.range.display(&self.func.dims)))
            .collect();
        write!(f, "    # {}: {}", target.name, self.func.type_string(s.target))?;
        if !ranges.is_empty() {
            write!(f, "; {}", ranges.join(", "))?;
        }
        Ok(())
    }
}

const PREC_ADD: u8 = 1;
const PREC_MUL: u8 = 2;
const PREC_UNARY: u8 = 3;

struct Printer<'a> {
    func: &'a Function,
    stmt: &'a Stmt,
}

impl Printer<'_> {
    fn index_name(&self, i: IndexId) -> &str {
        self.stmt.indices.get(i.index()).map_or("?", |v| v.name.as_str())
    }

    fn index_list(&self, ids: &[IndexId]) -> String {
        ids.iter().map(|&i| self.index_name(i)).collect::<Vec<_>>().join(", ")
    }

    fn positions(&self, pos: &[Position]) -> String {
        pos.iter()
            .map(|p| {
                if p.len() == 1 {
                    self.index_name(p[0]).to_string()
                } else {
                    format!("({})", self.index_list(p))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Writes `e`, parenthesised when its precedence is below `ctx`.
    fn expr(&self, out: &mut String, e: &Expr, ctx: u8) -> fmt::Result {
        let prec = match e {
            Expr::Add(_) | Expr::Sub(..) => PREC_ADD,
            Expr::Mul(_) | Expr::Div(..) => PREC_MUL,
            Expr::Neg(_) => PREC_UNARY,
            Expr::Lit(v) if *v < 0.0 => PREC_UNARY,
            _ => 4,
        };
        let paren = prec < ctx;
        if paren {
            out.push('(');
        }
        match e {
            Expr::Lit(v) => out.push_str(&fmt_number(*v)),
            Expr::Size(s) => write!(out, "{}", s.display(&self.func.dims))?,
            Expr::Index(i) => out.push_str(self.index_name(*i)),
            Expr::Access(t, pos) => {
                out.push_str(&self.func.tensor(*t).name);
                if !pos.is_empty() {
                    write!(out, "[{}]", self.positions(pos))?;
                }
            }
            Expr::Gather(t, pos) => {
                let items: Vec<String> = pos
                    .iter()
                    .map(|p| match p {
                        GatherPos::Direct(d) => self.positions(std::slice::from_ref(d)),
                        GatherPos::Indirect(i, ids) => format!("{}[{}]", self.func.tensor(*i).name, self.index_list(ids)),
                    })
                    .collect();
                write!(out, "{}[{}]", self.func.tensor(*t).name, items.join(", "))?;
            }
            Expr::Neg(a) => {
                out.push('-');
                self.expr(out, a, PREC_UNARY)?;
            }
            Expr::Add(xs) => self.chain(out, xs, " + ", PREC_ADD)?,
            Expr::Mul(xs) => self.chain(out, xs, " * ", PREC_MUL)?,
            Expr::Sub(a, b) => {
                self.expr(out, a, PREC_ADD)?;
                out.push_str(" - ");
                self.expr(out, b, PREC_ADD + 1)?;
            }
            Expr::Div(a, b) => {
                self.expr(out, a, PREC_MUL)?;
                out.push_str(" / ");
                self.expr(out, b, PREC_MUL + 1)?;
            }
            Expr::Call(b, args) => {
                write!(out, "{}(", b.name())?;
                for (k, a) in args.iter().enumerate() {
                    if k > 0 {
                        out.push_str(", ");
                    }
                    self.expr(out, a, 0)?;
                }
                if let Builtin::Lmul(m @ 1..) = b {
                    write!(out, ", {m}")?;
                }
                out.push(')');
            }
            Expr::Select(c, a, b) => {
                out.push_str("select(");
                self.cond(out, c, 0)?;
                out.push_str(", ");
                self.expr(out, a, 0)?;
                out.push_str(", ");
                self.expr(out, b, 0)?;
                out.push(')');
            }
            Expr::Reduce(op, ids, body) => {
                write!(out, "{}[{}](", op.name(), self.index_list(ids))?;
                self.expr(out, body, 0)?;
                out.push(')');
            }
        }
        if paren {
            out.push(')');
        }
        Ok(())
    }

    fn chain(&self, out: &mut String, xs: &[Expr], sep: &str, prec: u8) -> fmt::Result {
        for (k, x) in xs.iter().enumerate() {
            if k > 0 {
                out.push_str(sep);
            }
            // A nested chain of the same kind keeps its parentheses so the tree shows.
            self.expr(out, x, if k == 0 { prec } else { prec + 1 })?;
        }
        Ok(())
    }

    fn cond(&self, out: &mut String, c: &Cond, ctx: u8) -> fmt::Result {
        match c {
            Cond::Cmp(op, a, b) => {
                self.expr(out, a, 0)?;
                write!(out, " {} ", op.symbol())?;
                self.expr(out, b, 0)?;
            }
            Cond::Or(cs) | Cond::And(cs) => {
                let (sep, prec) = if matches!(c, Cond::Or(_)) { (" || ", 1) } else { (" && ", 2) };
                if prec < ctx {
                    out.push('(');
                }
                for (k, x) in cs.iter().enumerate() {
                    if k > 0 {
                        out.push_str(sep);
                    }
                    self.cond(out, x, prec + 1)?;
                }
                if prec < ctx {
                    out.push(')');
                }
            }
            Cond::Not(x) => {
                out.push_str("!(");
                self.cond(out, x, 0)?;
                out.push(')');
            }
        }
        Ok(())
    }
}

/// Shortest text that reads back as the same f64 (`1.0`, `1e-5`, `inf`).
pub fn fmt_number(v: f64) -> String {
    if v == f64::INFINITY {
        "inf".into()
    } else if v == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        format!("{v:?}")
    }
}
