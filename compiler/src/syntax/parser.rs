//! pest pairs → AST. Never panics: grammar mismatches become diagnostics, and nesting is
//! bounded before pest (which recurses once per bracket) ever sees the text.

use super::ast::*;
use crate::diag::{Diagnostic, FileId, Span};
use pest::iterators::Pair;
use pest::Parser as _;

#[derive(pest_derive::Parser)]
#[grammar = "syntax/grammar.pest"]
struct TsrParser;

/// Brackets may nest this deep; deeper input is refused before parsing.
pub const MAX_NESTING: usize = 64;
/// Bound on AST depth (nesting, unary minus signs, `!`s), so tree walks stay shallow.
pub const MAX_DEPTH: usize = 400;

/// Parses one file. `text` must be the file's text in the source map under `file`.
pub fn parse(text: &str, file: FileId) -> Result<Module, Diagnostic> {
    check_nesting(text, file)?;
    // Record the literal tokens pest expected too (`}`, `)`), not only rule names.
    pest::set_error_detail(true);
    let mut pairs = TsrParser::parse(Rule::program, text).map_err(|e| syntax_error(e, text, file))?;
    let program = pairs.next().ok_or_else(|| internal("empty parse"))?;
    let mut b = Builder { file, depth: 0 };
    b.module(program)
}

fn check_nesting(text: &str, file: FileId) -> Result<(), Diagnostic> {
    let mut depth = 0usize;
    let mut in_comment = false;
    for (pos, c) in text.char_indices() {
        match c {
            '\n' => in_comment = false,
            _ if in_comment => {}
            '#' => in_comment = true,
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Diagnostic::error(
                        "syntax::too-deep",
                        format!("brackets nest more than {MAX_NESTING} levels deep"),
                    )
                    .label(Span::new(file, pos, pos + 1), "this bracket is too deep")
                    .help("split the expression into several statements"));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn rule_name(r: &Rule) -> &'static str {
    match r {
        Rule::EOI => "end of file",
        Rule::use_decl | Rule::kw_use => "`use`",
        Rule::fn_def | Rule::kw_fn => "`fn`",
        Rule::ident | Rule::path | Rule::access => "a name",
        Rule::param | Rule::param_list => "a parameter like `A: f32[n]`",
        Rule::outputs | Rule::out_list => "an output like `C: f32[n]`",
        Rule::ty => "a type like `f32[n, d]`",
        Rule::dims | Rule::index_list | Rule::fn_dims | Rule::call_dims => "`[`",
        Rule::dim | Rule::int | Rule::dim_factor => "a dim (a name or a whole number)",
        Rule::stmt | Rule::lhs => "a statement",
        Rule::assign_op => "`=`, `max=` or `min=`",
        Rule::group => "`(`",
        Rule::gather => "an index tensor",
        Rule::index_item => "an index",
        Rule::expr | Rule::term | Rule::unary | Rule::call | Rule::number | Rule::inf | Rule::primary => {
            "an expression"
        }
        Rule::add_op | Rule::mul_op => "an operator",
        Rule::neg => "`-`",
        Rule::select | Rule::kw_select => "`select`",
        Rule::reduction | Rule::reduce_kw => "`sum[..](..)`",
        Rule::cond | Rule::cond_and | Rule::cond_not | Rule::cond_atom | Rule::comparison => "a condition like `j <= i`",
        Rule::cmp_op => "a comparison (`<`, `<=`, `==`, ...)",
        Rule::not_op => "`!`",
        Rule::program | Rule::keyword | Rule::WHITESPACE | Rule::COMMENT => "more input",
    }
}

fn syntax_error(e: pest::error::Error<Rule>, text: &str, file: FileId) -> Diagnostic {
    let pos = match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<String> = Vec::new();
    let mut unexpected: Vec<String> = Vec::new();
    match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, negatives } => {
            for r in positives {
                let n = rule_name(r).to_string();
                if !expected.contains(&n) {
                    expected.push(n);
                }
            }
            for r in negatives {
                let n = rule_name(r).to_string();
                if !unexpected.contains(&n) {
                    unexpected.push(n);
                }
            }
        }
        pest::error::ErrorVariant::CustomError { .. } => {}
    }
    if let Some(attempts) = e.parse_attempts() {
        for t in attempts.expected_tokens() {
            // Literal tokens only; operators are already covered by "an operator".
            let token = t.to_string();
            let literal = !token.trim().is_empty() && token != "#" && token != "_" && token != "BUILTIN_RULE" && !token.contains("..");
            {
                if literal && !matches!(token.as_str(), "+" | "-" | "*" | "/") {
                    let name = format!("`{token}`");
                    if !expected.contains(&name) {
                        expected.push(name);
                    }
                }
            }
        }
    }
    // Keywords and brackets that start an expression are implied by "an expression".
    if expected.iter().any(|e| e == "an expression") {
        expected.retain(|e| !matches!(e.as_str(), "`(`" | "`.`" | "`inf`" | "`max`" | "`min`" | "`select`" | "`sum`"));
    }
    // The offending token: a word, or one character, or the end of the file.
    let rest = text.get(pos..).unwrap_or("");
    let tok_len = match rest.chars().next() {
        None => 0,
        Some(c) if c.is_alphanumeric() || c == '_' => {
            rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len())
        }
        Some(c) => c.len_utf8(),
    };
    let found = if tok_len == 0 { "end of file".to_string() } else { format!("`{}`", &rest[..tok_len]) };
    let message = if !expected.is_empty() {
        format!("expected {}, found {found}", join_or(&expected))
    } else if !unexpected.is_empty() {
        format!("unexpected {}", join_or(&unexpected))
    } else {
        format!("unexpected {found}")
    };
    let label = if expected.is_empty() { "not expected here".to_string() } else { format!("expected {}", join_or(&expected)) };
    let help = if found == "`fn`" || found == "`use`" {
        "a `use` or `fn` cannot appear here; is a `}` missing above?"
    } else if tok_len == 0 {
        "the file ends early; is a closing bracket missing?"
    } else if expected.iter().any(|e| e == "a statement") && rest.starts_with(['=', '(']) {
        "a statement starts with the name of the tensor it defines: `T[i] = ...`"
    } else {
        "see the language summary in README.md"
    };
    Diagnostic::error("syntax::unexpected", format!("syntax error: {message}"))
        .label(Span::new(file, pos, pos + tok_len), label)
        .help(help)
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [a] => a.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

struct Builder {
    file: FileId,
    depth: usize,
}

type R<T> = Result<T, Diagnostic>;

fn internal(what: &str) -> Diagnostic {
    Diagnostic::error("internal", format!("internal error (this is a bug in Tessera): parser: {what}"))
}

impl Builder {
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        Span::new(self.file, s.start(), s.end())
    }

    fn ident(&self, p: Pair<Rule>) -> Ident {
        Ident { name: p.as_str().to_string(), span: self.span(&p) }
    }

    fn module(&mut self, program: Pair<Rule>) -> R<Module> {
        let mut m = Module { uses: Vec::new(), functions: Vec::new(), order: Vec::new() };
        for item in program.into_inner() {
            match item.as_rule() {
                Rule::use_decl => {
                    let span = self.span(&item);
                    let path = item
                        .into_inner()
                        .find(|p| p.as_rule() == Rule::path)
                        .ok_or_else(|| internal("use without path"))?;
                    m.order.push(ItemRef::Use(m.uses.len()));
                    m.uses.push(Use { path: path.into_inner().map(|p| self.ident(p)).collect(), span });
                }
                Rule::fn_def => {
                    m.order.push(ItemRef::Fn(m.functions.len()));
                    let f = self.fn_def(item)?;
                    m.functions.push(f);
                }
                Rule::EOI => {}
                _ => return Err(internal("unexpected item")),
            }
        }
        Ok(m)
    }

    fn fn_def(&mut self, p: Pair<Rule>) -> R<FnDef> {
        let span = self.span(&p);
        let mut name = None;
        let mut dims = Vec::new();
        let mut params = Vec::new();
        let mut outputs = Vec::new();
        let mut outputs_parenthesized = false;
        let mut body = Vec::new();
        for x in p.into_inner() {
            match x.as_rule() {
                Rule::kw_fn => {}
                Rule::ident => name = Some(self.ident(x)),
                Rule::fn_dims => dims = x.into_inner().map(|d| self.ident(d)).collect(),
                Rule::param_list => {
                    for q in x.into_inner() {
                        params.push(self.param(q)?);
                    }
                }
                Rule::outputs => {
                    let inner = x.into_inner().next().ok_or_else(|| internal("empty outputs"))?;
                    if inner.as_rule() == Rule::out_list {
                        outputs_parenthesized = true;
                        for q in inner.into_inner() {
                            outputs.push(self.param(q)?);
                        }
                    } else {
                        outputs.push(self.param(inner)?);
                    }
                }
                Rule::stmt => body.push(self.stmt(x)?),
                _ => return Err(internal("unexpected fn part")),
            }
        }
        let name = name.ok_or_else(|| internal("fn without name"))?;
        Ok(FnDef { name, dims, params, outputs, outputs_parenthesized, body, span })
    }

    fn param(&mut self, p: Pair<Rule>) -> R<Param> {
        let span = self.span(&p);
        let mut it = p.into_inner();
        let name = self.ident(it.next().ok_or_else(|| internal("param name"))?);
        let ty = it.next().ok_or_else(|| internal("param type"))?;
        let ty_span = self.span(&ty);
        let mut ty_it = ty.into_inner();
        let dtype = self.ident(ty_it.next().ok_or_else(|| internal("dtype"))?);
        let dims = match ty_it.next() {
            None => None,
            Some(d) => Some(d.into_inner().map(|dim| self.dim(dim)).collect::<R<Vec<_>>>()?),
        };
        Ok(Param { name, ty: TensorType { dtype, dims, span: ty_span }, span })
    }

    fn dim(&mut self, p: Pair<Rule>) -> R<DimExpr> {
        let span = self.span(&p);
        let mut factors = Vec::new();
        for f in p.into_inner() {
            let fs = self.span(&f);
            match f.as_rule() {
                Rule::int => {
                    let v: u64 = f.as_str().parse().map_err(|_| {
                        Diagnostic::error("syntax::number-too-large", "this dim does not fit in 64 bits")
                            .label(fs, "too large")
                            .help("dims must be at most 18446744073709551615")
                    })?;
                    factors.push(DimFactor::Lit(v, fs));
                }
                Rule::ident => factors.push(DimFactor::Name(self.ident(f))),
                _ => return Err(internal("dim factor")),
            }
        }
        Ok(DimExpr { factors, span })
    }

    fn stmt(&mut self, p: Pair<Rule>) -> R<Stmt> {
        let span = self.span(&p);
        let mut targets = Vec::new();
        let mut op = None;
        let mut rhs = None;
        for x in p.into_inner() {
            match x.as_rule() {
                Rule::lhs => {
                    let ls = self.span(&x);
                    let mut it = x.into_inner();
                    let name = self.ident(it.next().ok_or_else(|| internal("lhs name"))?);
                    let indices = it.next().map(|l| self.index_list(l)).transpose()?;
                    targets.push(Lhs { name, indices, span: ls });
                }
                Rule::assign_op => {
                    let o = match x.as_str() {
                        "max=" => AssignOp::Max,
                        "min=" => AssignOp::Min,
                        _ => AssignOp::Assign,
                    };
                    op = Some((o, self.span(&x)));
                }
                Rule::expr => rhs = Some(self.expr(x)?),
                _ => return Err(internal("stmt part")),
            }
        }
        let (op, op_span) = op.ok_or_else(|| internal("stmt without op"))?;
        let rhs = rhs.ok_or_else(|| internal("stmt without rhs"))?;
        Ok(Stmt { targets, op, op_span, rhs, span })
    }

    fn index_list(&mut self, p: Pair<Rule>) -> R<Vec<IndexItem>> {
        p.into_inner()
            .map(|x| match x.as_rule() {
                Rule::ident => Ok(IndexItem::Single(self.ident(x))),
                Rule::group => {
                    let s = self.span(&x);
                    Ok(IndexItem::Group(x.into_inner().map(|i| self.ident(i)).collect(), s))
                }
                Rule::gather => {
                    let span = self.span(&x);
                    let mut it = x.into_inner();
                    let tensor = self.ident(it.next().ok_or_else(|| internal("gather without a tensor"))?);
                    Ok(IndexItem::Gather { tensor, indices: it.map(|i| self.ident(i)).collect(), span })
                }
                _ => Err(internal("index item")),
            })
            .collect()
    }

    fn enter(&mut self, span: Span, extra: usize) -> R<()> {
        self.depth += 1 + extra;
        if self.depth > MAX_DEPTH {
            return Err(Diagnostic::error(
                "syntax::too-deep",
                format!("expression nests more than {MAX_DEPTH} levels deep"),
            )
            .label(span, "too deep here")
            .help("split the expression into several statements"));
        }
        Ok(())
    }

    fn expr(&mut self, p: Pair<Rule>) -> R<Expr> {
        let span = self.span(&p);
        self.enter(span, 0)?;
        let mut it = p.into_inner();
        let first = self.term(it.next().ok_or_else(|| internal("empty expr"))?)?;
        let mut rest = Vec::new();
        while let Some(op) = it.next() {
            let o = if op.as_str() == "+" { AddOp::Add } else { AddOp::Sub };
            let t = self.term(it.next().ok_or_else(|| internal("dangling +"))?)?;
            rest.push((o, t));
        }
        self.depth -= 1;
        Ok(if rest.is_empty() { first } else { Expr { kind: ExprKind::Add { first: Box::new(first), rest }, span } })
    }

    fn term(&mut self, p: Pair<Rule>) -> R<Expr> {
        let span = self.span(&p);
        let mut it = p.into_inner();
        let first = self.unary(it.next().ok_or_else(|| internal("empty term"))?)?;
        let mut rest = Vec::new();
        while let Some(op) = it.next() {
            let o = if op.as_str() == "*" { MulOp::Mul } else { MulOp::Div };
            let t = self.unary(it.next().ok_or_else(|| internal("dangling *"))?)?;
            rest.push((o, t));
        }
        Ok(if rest.is_empty() { first } else { Expr { kind: ExprKind::Mul { first: Box::new(first), rest }, span } })
    }

    fn unary(&mut self, p: Pair<Rule>) -> R<Expr> {
        let mut negs = Vec::new();
        let mut prim = None;
        for x in p.into_inner() {
            if x.as_rule() == Rule::neg {
                negs.push(self.span(&x));
            } else {
                prim = Some(x);
            }
        }
        let prim = prim.ok_or_else(|| internal("unary without operand"))?;
        let ps = self.span(&prim);
        self.enter(ps, negs.len())?;
        let mut e = self.primary(prim)?;
        self.depth -= 1 + negs.len();
        for s in negs.into_iter().rev() {
            let span = s.to(e.span);
            e = Expr { kind: ExprKind::Neg(Box::new(e)), span };
        }
        Ok(e)
    }

    fn primary(&mut self, p: Pair<Rule>) -> R<Expr> {
        let span = self.span(&p);
        let kind = match p.as_rule() {
            Rule::number => {
                let v: f64 = p.as_str().parse().map_err(|_| internal("number"))?;
                ExprKind::Number(v)
            }
            Rule::inf => ExprKind::Number(f64::INFINITY),
            Rule::expr => return self.expr(p),
            Rule::access => {
                let mut it = p.into_inner();
                let name = self.ident(it.next().ok_or_else(|| internal("access name"))?);
                let indices = it.next().map(|l| self.index_list(l)).transpose()?;
                ExprKind::Access { name, indices }
            }
            Rule::call => {
                let mut it = p.into_inner();
                let path = it.next().ok_or_else(|| internal("call path"))?;
                let path = path.into_inner().map(|i| self.ident(i)).collect();
                let mut dims = Vec::new();
                let mut args = Vec::new();
                for a in it {
                    if a.as_rule() == Rule::call_dims {
                        for d in a.into_inner() {
                            dims.push(self.dim(d)?);
                        }
                    } else {
                        args.push(self.expr(a)?);
                    }
                }
                ExprKind::Call { path, dims, args }
            }
            Rule::select => {
                let mut it = p.into_inner().filter(|x| x.as_rule() != Rule::kw_select);
                let cond = self.cond(it.next().ok_or_else(|| internal("select cond"))?)?;
                let then = self.expr(it.next().ok_or_else(|| internal("select then"))?)?;
                let otherwise = self.expr(it.next().ok_or_else(|| internal("select else"))?)?;
                ExprKind::Select { cond: Box::new(cond), then: Box::new(then), otherwise: Box::new(otherwise) }
            }
            Rule::reduction => {
                let mut it = p.into_inner();
                let kw = it.next().ok_or_else(|| internal("reduction kw"))?;
                let kw_span = self.span(&kw);
                let kw = match kw.as_str() {
                    "sum" => ReduceKw::Sum,
                    "max" => ReduceKw::Max,
                    _ => ReduceKw::Min,
                };
                let mut indices = Vec::new();
                let mut body = None;
                for x in it {
                    match x.as_rule() {
                        Rule::ident => indices.push(self.ident(x)),
                        Rule::expr => body = Some(self.expr(x)?),
                        _ => return Err(internal("reduction part")),
                    }
                }
                let body = Box::new(body.ok_or_else(|| internal("reduction body"))?);
                ExprKind::Reduce { kw, kw_span, indices, body }
            }
            _ => return Err(internal("primary")),
        };
        Ok(Expr { kind, span })
    }

    fn cond(&mut self, p: Pair<Rule>) -> R<Cond> {
        let span = self.span(&p);
        self.enter(span, 0)?;
        let mut parts = Vec::new();
        for x in p.into_inner() {
            parts.push(self.cond_and(x)?);
        }
        self.depth -= 1;
        Ok(if parts.len() == 1 { parts.pop().ok_or_else(|| internal("cond"))? } else { Cond::Or(parts, span) })
    }

    fn cond_and(&mut self, p: Pair<Rule>) -> R<Cond> {
        let span = self.span(&p);
        let mut parts = Vec::new();
        for x in p.into_inner() {
            parts.push(self.cond_not(x)?);
        }
        Ok(if parts.len() == 1 { parts.pop().ok_or_else(|| internal("cond_and"))? } else { Cond::And(parts, span) })
    }

    fn cond_not(&mut self, p: Pair<Rule>) -> R<Cond> {
        let mut nots = Vec::new();
        let mut atom = None;
        for x in p.into_inner() {
            if x.as_rule() == Rule::not_op {
                nots.push(self.span(&x));
            } else {
                atom = Some(x);
            }
        }
        let atom = atom.ok_or_else(|| internal("cond atom"))?;
        let aspan = self.span(&atom);
        self.enter(aspan, nots.len())?;
        let mut c = match atom.as_rule() {
            Rule::cond => self.cond(atom)?,
            Rule::comparison => {
                let mut it = atom.into_inner();
                let lhs = self.expr(it.next().ok_or_else(|| internal("cmp lhs"))?)?;
                let op = match it.next().ok_or_else(|| internal("cmp op"))?.as_str() {
                    "<" => CmpOp::Lt,
                    "<=" => CmpOp::Le,
                    ">" => CmpOp::Gt,
                    ">=" => CmpOp::Ge,
                    "==" => CmpOp::Eq,
                    _ => CmpOp::Ne,
                };
                let rhs = self.expr(it.next().ok_or_else(|| internal("cmp rhs"))?)?;
                Cond::Cmp { op, lhs, rhs, span: aspan }
            }
            _ => return Err(internal("cond atom rule")),
        };
        self.depth -= 1 + nots.len();
        for s in nots.into_iter().rev() {
            let span = s.to(c.span());
            c = Cond::Not(Box::new(c), span);
        }
        Ok(c)
    }
}
