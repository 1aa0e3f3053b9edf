//! Checking one expression statement: index scopes, range inference, TIR construction,
//! the summation rule (Einstein's convention per top-level additive term), and the
//! warning about suspicious sums inside a term.

use super::func::{FnCx, Target};
use super::names::reserved;
use crate::diag::{Diagnostic, Span};
use crate::syntax::ast::{self, AddOp, AssignOp, ExprKind, IndexItem, MulOp, ReduceKw};
use crate::tir::{self, Builtin, Expr, IndexId, IndexVar, ReduceOp, Size, TensorDecl, TensorId, TensorKind};
use std::collections::HashMap;

/// Where an index got its range: shown when two sources disagree.
#[derive(Clone)]
struct RangeSource {
    span: Span,
    what: String,
}

struct Index {
    name: String,
    range: Option<Size>,
    source: Option<RangeSource>,
    first: Span,
}

/// A grouped position `(j, l)` of a tensor whose size must equal the members' product.
struct Group {
    members: Vec<IndexId>,
    size: Size,
    factors: Vec<Size>,
    span: Span,
    what: String,
}

struct Scx<'a> {
    cx: &'a mut FnCx,
    diags: &'a mut Vec<Diagnostic>,
    idx: Vec<Index>,
    /// Indices of the statement's own scope (the left side and reads outside any `sum[..]`).
    stmt_level: HashMap<String, IndexId>,
    /// Enclosing inline reductions' bindings, innermost last.
    scopes: Vec<Vec<(String, IndexId)>>,
    singles: Vec<(IndexId, Size, RangeSource)>,
    groups: Vec<Group>,
    ok: bool,
}

type R<T> = Result<T, ()>;

pub(super) fn expr_stmt(cx: &mut FnCx, s: &ast::Stmt, diags: &mut Vec<Diagnostic>) -> R<()> {
    if s.targets.len() != 1 {
        diags.push(
            Diagnostic::error("check::multiple-targets", "only a function call can assign several tensors at once")
                .label(s.targets[1].span, "extra target")
                .help("write one statement per tensor"),
        );
        return Err(());
    }
    let lhs = &s.targets[0];
    let target = cx.target(&lhs.name, diags)?;
    let mut x = Scx {
        cx,
        diags,
        idx: Vec::new(),
        stmt_level: HashMap::new(),
        scopes: Vec::new(),
        singles: Vec::new(),
        groups: Vec::new(),
        ok: true,
    };
    // Index names of the statement's own scope, so that a bare `i` read before `B[i]`
    // still means the index.
    let lhs_items: &[IndexItem] = lhs.indices.as_deref().unwrap_or(&[]);
    let mut lhs_pos: Vec<Vec<IndexId>> = Vec::new();
    for item in lhs_items {
        if let IndexItem::Gather { span, tensor, .. } = item {
            x.err(
                Diagnostic::error("check::gather-lhs", "a gathered position cannot be assigned")
                    .label(*span, format!("a position read from `{}`", tensor.name))
                    .help("gathers read; write the result at plain indices, e.g. y[e] = U[I[e], a]"),
            );
            return Err(());
        }
        let mut pos = Vec::new();
        for i in item.idents() {
            if x.stmt_level.contains_key(&i.name) {
                x.err(
                    Diagnostic::error("check::repeated-lhs-index", format!("index `{}` appears twice on the left", i.name))
                        .label(i.span, "repeated here")
                        .help("each index names one axis of the result; a diagonal is read on the right: D[i] = A[i, i]"),
                );
                return Err(());
            }
            pos.push(x.new_stmt_index(i)?);
        }
        lhs_pos.push(pos);
    }
    x.collect_stmt_indices(&s.rhs, &mut Vec::new())?;
    let rhs = x.expr(&s.rhs);
    // Ranges from the left side when it is a declared output.
    if let Target::Output(t) = target {
        let rank = x.cx.tensors[t.index()].shape.len();
        if rank != lhs_items.len() {
            let ty = x.cx.type_text(t);
            x.err(
                Diagnostic::error(
                    "check::rank-mismatch",
                    format!("output `{}` has {} but is assigned with {}", lhs.name.name, plural(rank, "axis", "axes"), lhs_items.len()),
                )
                .label(lhs.span, plural(lhs_items.len(), "position", "positions"))
                .label(x.cx.tensors[t.index()].span, format!("declared as {ty}"))
                .help("write one index per axis on the left"),
            );
            return Err(());
        }
        x.constrain_access(t, lhs_items, &lhs_pos);
    }
    let rhs = rhs?;
    if !x.ok {
        return Err(());
    }
    x.solve()?;
    let rhs = x.split_gathers(rhs, s.span)?;
    let lhs_ids: Vec<IndexId> = lhs_pos.iter().flatten().copied().collect();
    let mut free = Vec::new();
    rhs.free_indices(&mut free);
    let reduced: Vec<IndexId> = free.into_iter().filter(|i| !lhs_ids.contains(i)).collect();
    let op = match s.op {
        AssignOp::Assign => ReduceOp::Sum,
        AssignOp::Max => ReduceOp::Max,
        AssignOp::Min => ReduceOp::Min,
    };
    let (rhs, reduced) = if op == ReduceOp::Sum && !reduced.is_empty() {
        x.warn_nested_terms(&s.rhs, &lhs_ids);
        x.sum_per_term(rhs, reduced, &lhs_ids)
    } else {
        (rhs, reduced)
    };
    let indices: Vec<IndexVar> =
        x.idx.iter().map(|i| IndexVar { name: i.name.clone(), range: i.range.clone().unwrap_or_else(Size::one) }).collect();
    if op != ReduceOp::Sum && reduced.is_empty() {
        x.diags.push(
            Diagnostic::warning("check::nothing-reduced", "nothing is reduced: every index on the right is on the left")
                .label(s.op_span, "this reduces no index")
                .help("`max=` reduces the indices that appear only on the right; use `=` for a plain assignment"),
        );
    }
    let mut shape = Vec::new();
    let mut factors = Vec::new();
    for pos in &lhs_pos {
        let fs: Vec<Size> = pos.iter().map(|i| indices[i.index()].range.clone()).collect();
        match fs.iter().try_fold(Size::one(), |a, f| a.mul(f)) {
            Some(sz) => shape.push(sz),
            None => {
                x.err(
                    Diagnostic::error("check::size-overflow", "this grouped position's size overflows 64 bits")
                        .label(lhs.span, "too large")
                        .help("use smaller dims"),
                );
                return Err(());
            }
        }
        factors.push(fs);
    }
    let target = match target {
        Target::Output(t) => t,
        Target::Temp => x.cx.add_tensor(TensorDecl {
            name: lhs.name.name.clone(),
            kind: TensorKind::Temp,
            shape,
            factors,
            span: lhs.name.span,
        }),
    };
    x.cx.defined[target.index()] = true;
    x.cx.stmts.push(tir::Stmt { target, lhs: lhs_pos, op, reduced, indices, rhs, span: s.span });
    Ok(())
}

impl Scx<'_> {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
        self.ok = false;
    }

    fn check_index_name(&mut self, i: &ast::Ident) -> R<()> {
        if reserved(&i.name) {
            self.err(
                Diagnostic::error("check::reserved-name", format!("`{}` is a reserved word and cannot name an index", i.name))
                    .label(i.span, "reserved")
                    .help("choose another index name"),
            );
            return Err(());
        }
        Ok(())
    }

    fn push_index(&mut self, i: &ast::Ident) -> IndexId {
        let id = IndexId(self.idx.len() as u32);
        // Sibling reductions may reuse a name; prime it so the printed TIR stays unambiguous.
        let mut name = i.name.clone();
        while self.idx.iter().any(|x| x.name == name) {
            name.push('\'');
        }
        self.idx.push(Index { name, range: None, source: None, first: i.span });
        id
    }

    fn new_stmt_index(&mut self, i: &ast::Ident) -> R<IndexId> {
        self.check_index_name(i)?;
        let id = self.push_index(i);
        self.stmt_level.insert(i.name.clone(), id);
        Ok(id)
    }

    /// Registers every index written in brackets outside the inline reductions that
    /// bind it; `bound` holds the names bound by enclosing reductions.
    fn collect_stmt_indices(&mut self, e: &ast::Expr, bound: &mut Vec<String>) -> R<()> {
        match &e.kind {
            ExprKind::Number(_) => Ok(()),
            ExprKind::Access { indices, .. } => {
                for i in indices.iter().flatten().flat_map(|it| it.idents()) {
                    if !bound.contains(&i.name) && !self.stmt_level.contains_key(&i.name) {
                        self.new_stmt_index(i)?;
                    }
                }
                Ok(())
            }
            ExprKind::Neg(a) => self.collect_stmt_indices(a, bound),
            ExprKind::Add { first, rest } => {
                self.collect_stmt_indices(first, bound)?;
                rest.iter().try_for_each(|(_, x)| self.collect_stmt_indices(x, bound))
            }
            ExprKind::Mul { first, rest } => {
                self.collect_stmt_indices(first, bound)?;
                rest.iter().try_for_each(|(_, x)| self.collect_stmt_indices(x, bound))
            }
            ExprKind::Call { args, .. } => args.iter().try_for_each(|x| self.collect_stmt_indices(x, bound)),
            ExprKind::Select { cond, then, otherwise } => {
                self.collect_cond_indices(cond, bound)?;
                self.collect_stmt_indices(then, bound)?;
                self.collect_stmt_indices(otherwise, bound)
            }
            ExprKind::Reduce { indices, body, .. } => {
                let n = bound.len();
                bound.extend(indices.iter().map(|i| i.name.clone()));
                let r = self.collect_stmt_indices(body, bound);
                bound.truncate(n);
                r
            }
        }
    }

    fn collect_cond_indices(&mut self, c: &ast::Cond, bound: &mut Vec<String>) -> R<()> {
        match c {
            ast::Cond::Cmp { lhs, rhs, .. } => {
                self.collect_stmt_indices(lhs, bound)?;
                self.collect_stmt_indices(rhs, bound)
            }
            ast::Cond::And(cs, _) | ast::Cond::Or(cs, _) => cs.iter().try_for_each(|x| self.collect_cond_indices(x, bound)),
            ast::Cond::Not(x, _) => self.collect_cond_indices(x, bound),
        }
    }

    /// The index a name means at this point, if any.
    fn lookup_index(&self, name: &str) -> Option<IndexId> {
        for scope in self.scopes.iter().rev() {
            if let Some((_, id)) = scope.iter().find(|(n, _)| n == name) {
                return Some(*id);
            }
        }
        self.stmt_level.get(name).copied()
    }

    fn describe_axis(&self, t: TensorId, axis: usize) -> String {
        format!("axis {axis} of {}", self.cx.type_text(t))
    }

    /// Records what an access (or an output's left side) says about its indices' ranges.
    fn constrain_access(&mut self, t: TensorId, items: &[IndexItem], pos: &[Vec<IndexId>]) {
        for (axis, (item, ids)) in items.iter().zip(pos).enumerate() {
            let size = self.cx.tensors[t.index()].shape[axis].clone();
            let what = self.describe_axis(t, axis);
            match item {
                IndexItem::Single(i) => self.singles.push((ids[0], size, RangeSource { span: i.span, what })),
                IndexItem::Group(_, span) => {
                    let factors = self.cx.tensors[t.index()].factors[axis].clone();
                    self.groups.push(Group { members: ids.clone(), size, factors, span: *span, what });
                }
                // The range of a gathered position is the axis itself; its indices are
                // constrained by the index tensor's shape.
                IndexItem::Gather { .. } => {}
            }
        }
    }

    fn set_range(&mut self, id: IndexId, size: Size, src: RangeSource) {
        let i = &self.idx[id.index()];
        match (&i.range, &i.source) {
            (None, _) => {
                let i = &mut self.idx[id.index()];
                i.range = Some(size);
                i.source = Some(src);
            }
            (Some(r), prev) if *r != size => {
                let (name, r_text, s_text) = (i.name.clone(), self.cx.size_text(r), self.cx.size_text(&size));
                let mut d = Diagnostic::error("check::index-range", format!("index `{name}` has two different ranges"))
                    .label(src.span, format!("`{name}` ranges over {s_text} here ({})", src.what));
                if let Some(p) = prev {
                    d = d.label(p.span, format!("but over {r_text} here ({})", p.what));
                }
                self.err(d.help("an index has one range in a statement; use another index name for the other axis"));
            }
            _ => {}
        }
    }

    /// Infers every range: direct positions first, then grouped positions to a fixpoint.
    fn solve(&mut self) -> R<()> {
        for (id, size, src) in std::mem::take(&mut self.singles) {
            self.set_range(id, size, src);
        }
        let groups = std::mem::take(&mut self.groups);
        let mut settled = vec![false; groups.len()];
        loop {
            let mut progress = false;
            for (g, done) in groups.iter().zip(settled.iter_mut()) {
                if *done {
                    continue;
                }
                let unknown: Vec<IndexId> =
                    g.members.iter().copied().filter(|m| self.idx[m.index()].range.is_none()).collect();
                let src = RangeSource { span: g.span, what: g.what.clone() };
                if unknown.is_empty() {
                    *done = true;
                    let mut prod = Some(Size::one());
                    for m in &g.members {
                        prod = prod.and_then(|p| p.mul(self.idx[m.index()].range.as_ref()?));
                    }
                    if prod.as_ref() != Some(&g.size) {
                        let names: Vec<&str> = g.members.iter().map(|m| self.idx[m.index()].name.as_str()).collect();
                        let got = prod.map_or_else(|| "an overflowing size".into(), |p| self.cx.size_text(&p));
                        let want = self.cx.size_text(&g.size);
                        self.err(
                            Diagnostic::error("check::group-size", format!("grouped index ({}) does not fit its axis", names.join(", ")))
                                .label(g.span, format!("({}) has size {got}, but this is {}", names.join(", "), g.what))
                                .help(format!("the members' ranges must multiply to {want}")),
                        );
                    }
                    progress = true;
                } else if unknown.len() == 1 {
                    let mut known = Some(Size::one());
                    for m in g.members.iter().filter(|m| **m != unknown[0]) {
                        known = known.and_then(|k| k.mul(self.idx[m.index()].range.as_ref()?));
                    }
                    match known.and_then(|k| g.size.div(&k)) {
                        Some(r) => self.set_range(unknown[0], r, src),
                        None => {
                            let name = self.idx[unknown[0].index()].name.clone();
                            let size = self.cx.size_text(&g.size);
                            self.err(
                                Diagnostic::error("check::group-split", format!("cannot infer the range of `{name}` from this group"))
                                    .label(g.span, format!("{size} is not a multiple of the other members' ranges ({})", g.what))
                                    .help("declare the axis as a product of dims, e.g. f32[q * s], or use the index elsewhere"),
                            );
                            // Reported; keep the unknown-range check from repeating it.
                            self.idx[unknown[0].index()].range = Some(Size::one());
                            *done = true;
                        }
                    }
                    progress = true;
                } else if g.factors.len() == g.members.len() {
                    // Members match the factors the axis was written with, in order.
                    for (m, f) in g.members.iter().zip(&g.factors) {
                        if self.idx[m.index()].range.is_none() {
                            self.set_range(*m, f.clone(), src.clone());
                        }
                    }
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        for i in 0..self.idx.len() {
            if self.idx[i].range.is_none() {
                let (name, first) = (self.idx[i].name.clone(), self.idx[i].first);
                self.err(
                    Diagnostic::error("check::unknown-range", format!("cannot infer the range of index `{name}`"))
                        .label(first, "its range is not known")
                        .help("use the index to read a tensor axis (A[i]), or on the left of an output with a declared shape"),
                );
            }
        }
        if self.ok {
            Ok(())
        } else {
            Err(())
        }
    }

    /// Builds the TIR of an expression, recording range constraints on the way.
    fn expr(&mut self, e: &ast::Expr) -> R<Expr> {
        match &e.kind {
            ExprKind::Number(v) => Ok(Expr::Lit(*v)),
            ExprKind::Access { name, indices: None } => self.bare_name(name),
            ExprKind::Access { name, indices: Some(items) } => {
                let t = match self.cx.read(name, self.diags) {
                    Ok(Some(t)) => t,
                    Ok(None) => {
                        self.ok = false;
                        return Err(());
                    }
                    Err(()) => {
                        self.ok = false;
                        return Err(());
                    }
                };
                let rank = self.cx.tensors[t.index()].shape.len();
                if rank != items.len() {
                    let ty = self.cx.type_text(t);
                    let decl = self.cx.tensors[t.index()].span;
                    self.err(
                        Diagnostic::error(
                            "check::rank-mismatch",
                            format!("`{}` has {} but is indexed with {}", name.name, plural(rank, "axis", "axes"), items.len()),
                        )
                        .label(e.span, plural(items.len(), "position", "positions"))
                        .label(decl, format!("declared as {ty}"))
                        .help("write one index (or one group) per axis"),
                    );
                    return Err(());
                }
                if matches!(self.cx.tensors[t.index()].kind, TensorKind::Index(_)) {
                    self.err(
                        Diagnostic::error("check::index-as-value", format!("index tensor `{}` is read as a value", name.name))
                            .label(e.span, "an integer index tensor")
                            .label(self.cx.tensors[t.index()].span, "declared here")
                            .help(format!("index tensors are read only in gathered positions, e.g. U[{}[..], a]", name.name)),
                    );
                    return Err(());
                }
                let mut pos = Vec::new();
                for item in items {
                    let mut p = Vec::new();
                    for i in item.idents() {
                        match self.lookup_index(&i.name) {
                            Some(id) => p.push(id),
                            None => return Err(()),
                        }
                    }
                    pos.push(p);
                }
                self.constrain_access(t, items, &pos);
                if !items.iter().any(|it| matches!(it, IndexItem::Gather { .. })) {
                    return Ok(Expr::Access(t, pos));
                }
                let mut gpos = Vec::new();
                for (item, p) in items.iter().zip(pos) {
                    match item {
                        IndexItem::Gather { tensor, indices, span } => gpos.push(self.gathered(tensor, indices, *span, p)?),
                        _ => gpos.push(tir::GatherPos::Direct(p)),
                    }
                }
                Ok(Expr::Gather(t, gpos))
            }
            ExprKind::Neg(a) => Ok(Expr::Neg(Box::new(self.expr(a)?))),
            ExprKind::Add { first, rest } => {
                let mut acc = self.expr(first)?;
                for (op, x) in rest {
                    let x = self.expr(x)?;
                    acc = match (op, acc) {
                        (AddOp::Add, Expr::Add(mut v)) => {
                            v.push(x);
                            Expr::Add(v)
                        }
                        (AddOp::Add, a) => Expr::Add(vec![a, x]),
                        (AddOp::Sub, a) => Expr::Sub(Box::new(a), Box::new(x)),
                    };
                }
                Ok(acc)
            }
            ExprKind::Mul { first, rest } => {
                let mut acc = self.expr(first)?;
                for (op, x) in rest {
                    let x = self.expr(x)?;
                    acc = match (op, acc) {
                        (MulOp::Mul, Expr::Mul(mut v)) => {
                            v.push(x);
                            Expr::Mul(v)
                        }
                        (MulOp::Mul, a) => Expr::Mul(vec![a, x]),
                        (MulOp::Div, a) => Expr::Div(Box::new(a), Box::new(x)),
                    };
                }
                Ok(acc)
            }
            ExprKind::Call { path, dims, args } => {
                let builtin = if path.len() == 1 { Builtin::from_name(&path[0].name) } else { None };
                let Some(b) = builtin else {
                    self.err(
                        Diagnostic::error("check::nested-call", "a call to a user function must be a whole statement")
                            .label(e.span, "called inside an expression")
                            .help("assign the call's result first: `T = f(A, B)`, then use T"),
                    );
                    return Err(());
                };
                if let (Some(first), Some(last)) = (dims.first(), dims.last()) {
                    self.err(super::inline::no_dims_expected(b.name(), first.span.to(last.span), None));
                    return Err(());
                }
                if b == Builtin::Lmul(0) && args.len() == 3 {
                    let m = self.lmul_bits(&args[2])?;
                    let xs = args[..2].iter().map(|a| self.expr(a)).collect::<R<Vec<_>>>()?;
                    return Ok(Expr::Call(Builtin::Lmul(m), xs));
                }
                if args.len() != b.arity() {
                    self.err(
                        Diagnostic::error(
                            "check::arity",
                            match b {
                                Builtin::Lmul(_) => format!("`lmul` takes 2 or 3 arguments, not {}", args.len()),
                                _ => format!("`{}` takes {} argument{}, not {}", b.name(), b.arity(), if b.arity() == 1 { "" } else { "s" }, args.len()),
                            },
                        )
                        .label(e.span, format!("{} given", args.len()))
                        .help(match b {
                            Builtin::Pow => "write pow(x, y)",
                            Builtin::Max | Builtin::Min => "max(a, b) is elementwise; reduce over an index with max[j](e) or `max=`",
                            Builtin::Lmul(_) => "write lmul(x, y), or lmul(x, y, m) to emulate an m-bit mantissa",
                            _ => "these functions apply elementwise to one value",
                        }),
                    );
                    return Err(());
                }
                let args = args.iter().map(|a| self.expr(a)).collect::<R<Vec<_>>>()?;
                Ok(Expr::Call(b, args))
            }
            ExprKind::Select { cond, then, otherwise } => {
                let c = self.cond(cond)?;
                let a = self.expr(then)?;
                let b = self.expr(otherwise)?;
                Ok(Expr::Select(Box::new(c), Box::new(a), Box::new(b)))
            }
            ExprKind::Reduce { kw, indices, body, .. } => {
                let mut scope: Vec<(String, IndexId)> = Vec::new();
                for i in indices {
                    self.check_index_name(i)?;
                    let outer = self.lookup_index(&i.name);
                    if scope.iter().any(|(n, _)| *n == i.name) || outer.is_some() {
                        let mut d = Diagnostic::error(
                            "check::index-shadow",
                            format!("index `{}` is reduced here but also used outside this reduction", i.name),
                        )
                        .label(i.span, "reduced here");
                        if let Some(o) = outer {
                            d = d.label(self.idx[o.index()].first, "also used here");
                        }
                        self.err(d.help("give the reduced index its own name"));
                        return Err(());
                    }
                    let id = self.push_index(i);
                    scope.push((i.name.clone(), id));
                }
                let ids: Vec<IndexId> = scope.iter().map(|(_, id)| *id).collect();
                self.scopes.push(scope);
                let body = self.expr(body);
                self.scopes.pop();
                let op = match kw {
                    ReduceKw::Sum => ReduceOp::Sum,
                    ReduceKw::Max => ReduceOp::Max,
                    ReduceKw::Min => ReduceOp::Min,
                };
                Ok(Expr::Reduce(op, ids, Box::new(body?)))
            }
        }
    }

    /// One gathered position `I[e, ..]`: `I` must be an index input of the written rank.
    fn gathered(&mut self, tensor: &ast::Ident, indices: &[ast::Ident], span: Span, ids: Vec<IndexId>) -> R<tir::GatherPos> {
        let i = match self.cx.read(tensor, self.diags) {
            Ok(Some(i)) => i,
            _ => {
                self.ok = false;
                return Err(());
            }
        };
        let decl = &self.cx.tensors[i.index()];
        if !matches!(decl.kind, TensorKind::Index(_)) {
            let ty = self.cx.type_text(i);
            let decl_span = decl.span;
            self.err(
                Diagnostic::error("check::not-an-index", format!("`{}` is not an index tensor", tensor.name))
                    .label(tensor.span, "used as an index here")
                    .label(decl_span, format!("declared as {ty}"))
                    .help("gathered positions read integer index inputs, declared as i32 or i64 (I: i64[e])"),
            );
            return Err(());
        }
        let rank = decl.shape.len();
        if rank != indices.len() {
            let ty = self.cx.type_text(i);
            let decl_span = decl.span;
            self.err(
                Diagnostic::error(
                    "check::rank-mismatch",
                    format!("`{}` has {} but is indexed with {}", tensor.name, plural(rank, "axis", "axes"), indices.len()),
                )
                .label(span, plural(indices.len(), "position", "positions"))
                .label(decl_span, format!("declared as {ty}"))
                .help("write one index per axis of the index tensor"),
            );
            return Err(());
        }
        let items: Vec<IndexItem> = indices.iter().cloned().map(IndexItem::Single).collect();
        let single: Vec<Vec<IndexId>> = ids.iter().map(|&x| vec![x]).collect();
        self.constrain_access(i, &items, &single);
        Ok(tir::GatherPos::Indirect(i, ids))
    }

    /// Moves every gather of a checked right side into a statement of its own before
    /// this one (`U@I[e, a] = U[I[e], a]`), so that planning sees plain reads of an
    /// (e, a)-shaped intermediate and each gather costs its result's size.
    fn split_gathers(&mut self, rhs: Expr, span: Span) -> R<Expr> {
        let mut done: Vec<(Expr, Expr)> = Vec::new();
        let mut failed = false;
        let rhs = rhs.map_nodes(&mut |e| {
            if !matches!(e, Expr::Gather(..)) || failed {
                return e;
            }
            if let Some((_, a)) = done.iter().find(|(g, _)| *g == e) {
                return a.clone();
            }
            match self.gather_stmt(&e, span) {
                Some(a) => {
                    done.push((e, a.clone()));
                    a
                }
                None => {
                    failed = true;
                    e
                }
            }
        });
        if failed {
            return Err(());
        }
        Ok(rhs)
    }

    fn gather_stmt(&mut self, g: &Expr, span: Span) -> Option<Expr> {
        let Expr::Gather(t, pos) = g else { return None };
        let mut ids = Vec::new();
        g.free_indices(&mut ids);
        let at = |i: IndexId| ids.iter().position(|x| *x == i).map(|k| IndexId(k as u32));
        let remapped: Vec<tir::GatherPos> = pos
            .iter()
            .map(|p| match p {
                tir::GatherPos::Direct(d) => tir::GatherPos::Direct(d.iter().filter_map(|&i| at(i)).collect()),
                tir::GatherPos::Indirect(x, d) => tir::GatherPos::Indirect(*x, d.iter().filter_map(|&i| at(i)).collect()),
            })
            .collect();
        let indices: Vec<IndexVar> = ids
            .iter()
            .map(|i| {
                let x = &self.idx[i.index()];
                IndexVar { name: x.name.clone(), range: x.range.clone().unwrap_or_else(Size::one) }
            })
            .collect();
        let shape: Vec<Size> = indices.iter().map(|v| v.range.clone()).collect();
        let factors = shape.iter().map(|s| vec![s.clone()]).collect();
        let mut name = self.cx.tensors[t.index()].name.clone();
        for p in pos {
            if let tir::GatherPos::Indirect(x, _) = p {
                name = format!("{name}@{}", self.cx.tensors[x.index()].name);
            }
        }
        while self.cx.by_name.contains_key(&name) {
            name.push('\'');
        }
        let temp = self.cx.add_tensor(TensorDecl { name, kind: TensorKind::Temp, shape, factors, span });
        self.cx.defined[temp.index()] = true;
        self.cx.used[temp.index()] = true;
        let lhs = (0..ids.len()).map(|k| vec![IndexId(k as u32)]).collect();
        let rhs = Expr::Gather(*t, remapped);
        self.cx.stmts.push(tir::Stmt { target: temp, lhs, op: ReduceOp::Sum, reduced: Vec::new(), indices, rhs, span });
        Some(Expr::Access(temp, ids.iter().map(|&i| vec![i]).collect()))
    }

    /// The mantissa width of `lmul(x, y, m)`: an integer literal from 1 to the stored
    /// mantissa bits of the function's dtype, since it selects the generated code.
    fn lmul_bits(&mut self, e: &ast::Expr) -> R<u8> {
        let max = crate::tir::lmul::max_bits(self.cx.dtype == tessera_runtime::DType::F64);
        let what = match &e.kind {
            ExprKind::Number(v) if v.fract() == 0.0 && *v >= 1.0 && *v <= f64::from(max) => return Ok(*v as u8),
            ExprKind::Number(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{} is outside 1..={max}", *v as i64),
            ExprKind::Number(v) => format!("{} is not a whole number", crate::tir::fmt_number(*v)),
            _ => "not an integer literal".to_string(),
        };
        self.err(
            Diagnostic::error("check::lmul-bits", format!("the mantissa width of `lmul` must be an integer literal from 1 to {max} ({})", self.cx.dtype))
                .label(e.span, what)
                .help("the paper's modes are lmul(x, y, 3) and lmul(x, y, 4); lmul(x, y) keeps every mantissa bit"),
        );
        Err(())
    }

    fn bare_name(&mut self, name: &ast::Ident) -> R<Expr> {
        if let Some(id) = self.lookup_index(&name.name) {
            return Ok(Expr::Index(id));
        }
        if let Some(&t) = self.cx.by_name.get(&name.name) {
            let rank = self.cx.tensors[t.index()].shape.len();
            if rank > 0 && !self.cx.poisoned[t.index()] {
                let ty = self.cx.type_text(t);
                self.err(
                    Diagnostic::error("check::missing-indices", format!("`{}` has {} and needs indices here", name.name, plural(rank, "axis", "axes")))
                        .label(name.span, "used without indices")
                        .help(format!("index it, e.g. {}[...] ({ty})", name.name)),
                );
                return Err(());
            }
        } else if let Some(d) = self.cx.dim_by_name(&name.name) {
            return Ok(Expr::Size(Size::dim(d)));
        }
        match self.cx.read(name, self.diags) {
            Ok(Some(t)) => Ok(Expr::Access(t, Vec::new())),
            _ => {
                self.ok = false;
                Err(())
            }
        }
    }

    fn cond(&mut self, c: &ast::Cond) -> R<tir::Cond> {
        Ok(match c {
            ast::Cond::Cmp { op, lhs, rhs, .. } => {
                tir::Cond::Cmp(*op, self.expr(lhs)?, self.expr(rhs)?)
            }
            ast::Cond::And(cs, _) => tir::Cond::And(cs.iter().map(|x| self.cond(x)).collect::<R<_>>()?),
            ast::Cond::Or(cs, _) => tir::Cond::Or(cs.iter().map(|x| self.cond(x)).collect::<R<_>>()?),
            ast::Cond::Not(x, _) => tir::Cond::Not(Box::new(self.cond(x)?)),
        })
    }

    /// Applies Einstein's convention per top-level additive term: an index that is not on
    /// the left is summed over the term it appears in. When every term sums the same
    /// indices, one statement-level reduction means the same and is kept (the form plans
    /// are built from). Otherwise each term gets its own inline `sum[..]`, exactly as if
    /// the user had written it, and the statement reduces nothing.
    fn sum_per_term(&mut self, rhs: Expr, reduced: Vec<IndexId>, lhs: &[IndexId]) -> (Expr, Vec<IndexId>) {
        let summed_of = |t: &Expr| {
            let mut v = Vec::new();
            t.free_indices(&mut v);
            v.retain(|i| !lhs.contains(i));
            v
        };
        let mut sets: Vec<Vec<IndexId>> = Vec::new();
        for_each_term(&rhs, &mut |t| sets.push(summed_of(t)));
        if sets.iter().all(|s| s.len() == reduced.len()) {
            // Each term's set is a subset of `reduced`; equal sizes mean equal sets.
            return (rhs, reduced);
        }
        // An index summed in several terms is a separate index in each; later terms get a
        // primed copy, like sibling `sum[d](..)`s.
        let mut taken: Vec<IndexId> = Vec::new();
        let rhs = map_terms(rhs, &mut |mut t| {
            let mut ids = summed_of(&t);
            if ids.is_empty() {
                return t;
            }
            for id in ids.iter_mut() {
                if taken.contains(id) {
                    let copy = self.copy_index(*id);
                    rename_index(&mut t, *id, copy);
                    *id = copy;
                } else {
                    taken.push(*id);
                }
            }
            Expr::Reduce(ReduceOp::Sum, ids, Box::new(t))
        });
        (rhs, Vec::new())
    }

    /// A new index with the range of `id` and a primed name.
    fn copy_index(&mut self, id: IndexId) -> IndexId {
        let src = &self.idx[id.index()];
        let (mut name, range, source, first) = (src.name.clone(), src.range.clone(), src.source.clone(), src.first);
        while self.idx.iter().any(|x| x.name == name) {
            name.push('\'');
        }
        self.idx.push(Index { name, range, source, first });
        IndexId(self.idx.len() as u32 - 1)
    }

    /// Warns about an added term inside a parenthesised sum that lacks an index summed
    /// over the enclosing top-level term, when no enclosing factor supplies it either:
    /// such a term is added once per value of the index (`W[i,j] * (M[i,j] - U[i,s] *
    /// V[j,s])` adds `M` r times). Looks through products, negation and numerators; not
    /// into calls or denominators, where it is not linear.
    fn warn_nested_terms(&mut self, rhs: &ast::Expr, lhs: &[IndexId]) {
        let mut terms = Vec::new();
        ast_terms(rhs, &mut terms);
        let mut found = Vec::new();
        let mut in_calls = Vec::new();
        for t in terms {
            let mut names = Vec::new();
            stmt_level_names(t, &mut Vec::new(), &mut names);
            let summed: Vec<(String, String)> = names
                .into_iter()
                .filter_map(|n| {
                    let id = *self.stmt_level.get(&n)?;
                    if lhs.contains(&id) {
                        return None;
                    }
                    let size = self.idx[id.index()].range.as_ref().map_or("?".into(), |s| self.cx.size_text(s));
                    Some((n, size))
                })
                .collect();
            if !summed.is_empty() {
                additive_terms(t, &[], &summed, &mut found);
                contracted_in_calls(t, &summed, &mut in_calls);
            }
        }
        for (call, span, name, size) in in_calls {
            self.diags.push(
                Diagnostic::warning(
                    "check::term-missing-index",
                    format!("`{name}` is contracted inside `{call}(...)`, but summed outside it"),
                )
                .label(span, format!("this term enters `{call}` {size} times, once per value of `{name}`"))
                .help(format!(
                    "an index is summed over the whole top-level term it appears in, calls included: this is \
                     sum[{name}] {call}(...). To contract inside the call, write sum[{name}](...) around the \
                     product, e.g. relu(sum[k](X[i, k] * W[k, j]) + b[j])"
                )),
            );
        }
        for (span, missing, sizes) in found {
            let list = missing.join("`, `");
            self.diags.push(
                Diagnostic::warning("check::term-missing-index", format!("summed index `{list}` does not occur in this term"))
                    .label(span, format!("this term is added {} times", sizes.join(" * ")))
                    .help(format!(
                        "an index is summed over the whole top-level term it appears in, parentheses included; \
                         to sum only the part that uses `{list}`, write sum[{}](...) around it",
                        missing.join(", ")
                    )),
            );
        }
    }
}

/// The top-level additive terms of a right side: through `+`, `-` and unary minus, and
/// through parentheses around a sum that is itself added.
fn ast_terms<'e>(e: &'e ast::Expr, out: &mut Vec<&'e ast::Expr>) {
    match &e.kind {
        ExprKind::Add { first, rest } => {
            ast_terms(first, out);
            rest.iter().for_each(|(_, x)| ast_terms(x, out));
        }
        ExprKind::Neg(a) => ast_terms(a, out),
        _ => out.push(e),
    }
}

/// Calls `f` on each top-level additive term of a TIR right side (the same split as
/// `ast_terms`).
fn for_each_term(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    match e {
        Expr::Add(xs) => xs.iter().for_each(|x| for_each_term(x, f)),
        Expr::Sub(a, b) => {
            for_each_term(a, f);
            for_each_term(b, f);
        }
        Expr::Neg(a) => for_each_term(a, f),
        t => f(t),
    }
}

/// Replaces each top-level additive term `t` by `f(t)`, keeping the sum's structure.
fn map_terms(e: Expr, f: &mut dyn FnMut(Expr) -> Expr) -> Expr {
    match e {
        Expr::Add(xs) => Expr::Add(xs.into_iter().map(|x| map_terms(x, f)).collect()),
        Expr::Sub(a, b) => {
            let a = map_terms(*a, f);
            Expr::Sub(Box::new(a), Box::new(map_terms(*b, f)))
        }
        Expr::Neg(a) => Expr::Neg(Box::new(map_terms(*a, f))),
        t => f(t),
    }
}

/// Renames every occurrence of index `from` to `to`.
fn rename_index(e: &mut Expr, from: IndexId, to: IndexId) {
    let r = |i: &mut IndexId| {
        if *i == from {
            *i = to;
        }
    };
    match e {
        Expr::Lit(_) | Expr::Size(_) => {}
        Expr::Index(i) => r(i),
        Expr::Access(_, pos) => pos.iter_mut().flatten().for_each(r),
        Expr::Gather(_, pos) => pos.iter_mut().flat_map(|p| p.ids_mut().iter_mut()).for_each(r),
        Expr::Neg(a) => rename_index(a, from, to),
        Expr::Add(xs) | Expr::Mul(xs) | Expr::Call(_, xs) => xs.iter_mut().for_each(|x| rename_index(x, from, to)),
        Expr::Sub(a, b) | Expr::Div(a, b) => {
            rename_index(a, from, to);
            rename_index(b, from, to);
        }
        Expr::Select(c, a, b) => {
            rename_cond(c, from, to);
            rename_index(a, from, to);
            rename_index(b, from, to);
        }
        Expr::Reduce(_, ids, body) => {
            ids.iter_mut().for_each(r);
            rename_index(body, from, to);
        }
    }
}

fn rename_cond(c: &mut tir::Cond, from: IndexId, to: IndexId) {
    match c {
        tir::Cond::Cmp(_, a, b) => {
            rename_index(a, from, to);
            rename_index(b, from, to);
        }
        tir::Cond::And(cs) | tir::Cond::Or(cs) => cs.iter_mut().for_each(|x| rename_cond(x, from, to)),
        tir::Cond::Not(x) => rename_cond(x, from, to),
    }
}

/// Collects `(term span, missing index names, their sizes)` for added terms inside `e`
/// that lack an index of `reduced` (those summed over the top-level term holding `e`)
/// which `outside` (the indices of the enclosing factors) does not supply either.
fn additive_terms(e: &ast::Expr, outside: &[String], reduced: &[(String, String)], out: &mut Vec<(Span, Vec<String>, Vec<String>)>) {
    let names_of = |x: &ast::Expr| {
        let mut v = Vec::new();
        stmt_level_names(x, &mut Vec::new(), &mut v);
        v
    };
    match &e.kind {
        ExprKind::Add { first, rest } => {
            for t in std::iter::once(first.as_ref()).chain(rest.iter().map(|(_, x)| x)) {
                let have = names_of(t);
                let missing: Vec<&(String, String)> =
                    reduced.iter().filter(|(n, _)| !have.contains(n) && !outside.contains(n)).collect();
                if missing.is_empty() {
                    additive_terms(t, outside, reduced, out);
                } else {
                    out.push((t.span, missing.iter().map(|m| m.0.clone()).collect(), missing.iter().map(|m| m.1.clone()).collect()));
                }
            }
        }
        ExprKind::Mul { first, rest } => {
            let factors: Vec<(bool, &ast::Expr)> =
                std::iter::once((false, first.as_ref())).chain(rest.iter().map(|(op, x)| (*op == MulOp::Div, x))).collect();
            for (k, (is_den, f)) in factors.iter().enumerate() {
                if *is_den {
                    continue;
                }
                let mut around: Vec<String> = outside.to_vec();
                for (j, (_, g)) in factors.iter().enumerate() {
                    if j != k {
                        around.extend(names_of(g));
                    }
                }
                additive_terms(f, &around, reduced, out);
            }
        }
        ExprKind::Neg(a) => additive_terms(a, outside, reduced, out),
        _ => {}
    }
}

/// Collects `(call name, term span, index, its size)` for a builtin call inside `e` whose
/// argument is a sum where one term contracts a statement-level summed index (uses it
/// in two factors of a product, as in `X[i, k] * W[k, j]`) and another term lacks it
/// (`b[j]`): the sum is then taken outside the call (`sum[k] relu(X W + b)`), which
/// is rarely what was meant. A summed index used in one factor only, as `j` in
/// `exp(S[i, j] - M[i])`, is a sum over the call's values and is not flagged.
fn contracted_in_calls(e: &ast::Expr, reduced: &[(String, String)], out: &mut Vec<(String, Span, String, String)>) {
    let names_of = |x: &ast::Expr| {
        let mut v = Vec::new();
        stmt_level_names(x, &mut Vec::new(), &mut v);
        v
    };
    // Whether `t` (through unary minus) is a product with `n` in two or more factors.
    let contracts = |t: &ast::Expr, n: &str| {
        let mut t = t;
        while let ExprKind::Neg(a) = &t.kind {
            t = a;
        }
        match &t.kind {
            ExprKind::Mul { first, rest } => {
                std::iter::once(first.as_ref()).chain(rest.iter().map(|(_, x)| x)).filter(|f| names_of(f).iter().any(|m| m == n)).count()
                    >= 2
            }
            _ => false,
        }
    };
    match &e.kind {
        ExprKind::Call { path, args, .. } => {
            for arg in args {
                if let ExprKind::Add { first, rest } = &arg.kind {
                    let terms: Vec<&ast::Expr> = std::iter::once(first.as_ref()).chain(rest.iter().map(|(_, x)| x)).collect();
                    for (n, size) in reduced {
                        if !terms.iter().any(|t| contracts(t, n)) {
                            continue;
                        }
                        for t in terms.iter().filter(|t| !names_of(t).contains(n)) {
                            let call = path.last().map_or(String::new(), |p| p.name.clone());
                            out.push((call, t.span, n.clone(), size.clone()));
                        }
                    }
                }
                contracted_in_calls(arg, reduced, out);
            }
        }
        ExprKind::Neg(a) => contracted_in_calls(a, reduced, out),
        ExprKind::Add { first, rest } => {
            contracted_in_calls(first, reduced, out);
            rest.iter().for_each(|(_, x)| contracted_in_calls(x, reduced, out));
        }
        ExprKind::Mul { first, rest } => {
            contracted_in_calls(first, reduced, out);
            rest.iter().for_each(|(_, x)| contracted_in_calls(x, reduced, out));
        }
        ExprKind::Select { then, otherwise, .. } => {
            contracted_in_calls(then, reduced, out);
            contracted_in_calls(otherwise, reduced, out);
        }
        ExprKind::Reduce { body, .. } => contracted_in_calls(body, reduced, out),
        ExprKind::Number(_) | ExprKind::Access { .. } => {}
    }
}

/// Names used as indices (in brackets or bare) outside the reductions that bind them.
fn stmt_level_names(e: &ast::Expr, bound: &mut Vec<String>, out: &mut Vec<String>) {
    let mut add = |n: &str, bound: &Vec<String>| {
        if !bound.iter().any(|b| b == n) && !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    };
    match &e.kind {
        ExprKind::Number(_) => {}
        ExprKind::Access { name, indices } => match indices {
            None => add(&name.name, bound),
            Some(items) => items.iter().flat_map(|i| i.idents()).for_each(|i| add(&i.name, bound)),
        },
        ExprKind::Neg(a) => stmt_level_names(a, bound, out),
        ExprKind::Add { first, rest } => {
            stmt_level_names(first, bound, out);
            rest.iter().for_each(|(_, x)| stmt_level_names(x, bound, out));
        }
        ExprKind::Mul { first, rest } => {
            stmt_level_names(first, bound, out);
            rest.iter().for_each(|(_, x)| stmt_level_names(x, bound, out));
        }
        ExprKind::Call { args, .. } => args.iter().for_each(|x| stmt_level_names(x, bound, out)),
        ExprKind::Select { cond, then, otherwise } => {
            cond_names(cond, bound, out);
            stmt_level_names(then, bound, out);
            stmt_level_names(otherwise, bound, out);
        }
        ExprKind::Reduce { indices, body, .. } => {
            let n = bound.len();
            bound.extend(indices.iter().map(|i| i.name.clone()));
            stmt_level_names(body, bound, out);
            bound.truncate(n);
        }
    }
}

fn cond_names(c: &ast::Cond, bound: &mut Vec<String>, out: &mut Vec<String>) {
    match c {
        ast::Cond::Cmp { lhs, rhs, .. } => {
            stmt_level_names(lhs, bound, out);
            stmt_level_names(rhs, bound, out);
        }
        ast::Cond::And(cs, _) | ast::Cond::Or(cs, _) => cs.iter().for_each(|x| cond_names(x, bound, out)),
        ast::Cond::Not(x, _) => cond_names(x, bound, out),
    }
}

/// `1 axis`, `2 axes`.
pub(super) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
