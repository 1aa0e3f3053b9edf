//! Call statements `A, B = f(X, Y)`: the callee is checked once, then its statements
//! are copied into the caller with its dims replaced by the caller's sizes, so that the
//! planner sees across function boundaries.

use super::func::{FnCx, Target};
use super::Checker;
use crate::diag::{Diagnostic, Span};
use crate::syntax::ast::{self, AssignOp, ExprKind};
use crate::tir::{self, DimId, Expr, Size, TensorDecl, TensorId, TensorKind};

pub(super) fn call_stmt(c: &mut Checker, cx: &mut FnCx, s: &ast::Stmt) -> Result<(), ()> {
    let ExprKind::Call { path, dims, args } = &s.rhs.kind else { return Err(()) };
    let call_span = s.rhs.span;
    let fail = |c: &mut Checker, d: Diagnostic| {
        c.diags.push(d);
        Err(())
    };
    if s.op != AssignOp::Assign {
        return fail(
            c,
            Diagnostic::error("check::call-reduce", "a function call's result is assigned with `=`")
                .label(s.op_span, "not allowed with a call")
                .help("assign the result first, then reduce it in another statement"),
        );
    }
    for t in &s.targets {
        if let Some(items) = &t.indices {
            return fail(
                c,
                Diagnostic::error("check::call-target-indices", "a call's result is assigned whole")
                    .label(t.span, if items.is_empty() { "remove the brackets" } else { "remove the indices" })
                    .help(format!("write `{} = {}(...)`", t.name.name, path[path.len() - 1].name)),
            );
        }
    }
    let key = c.resolve_fn(cx.module, path).map_err(|d| c.diags.push(d))?;
    if let Some(pos) = c.in_progress.iter().position(|k| *k == key) {
        let mut cycle: Vec<String> = c.in_progress[pos..].iter().map(|k| c.fn_name(*k)).collect();
        cycle.push(c.fn_name(key));
        return fail(
            c,
            Diagnostic::error("check::recursion", format!("recursive call: {}", cycle.join(" → ")))
                .label(call_span, "this call leads back to a function being checked")
                .help("calls are inlined before planning, so functions cannot call themselves"),
        );
    }
    if c.in_progress.len() >= super::MAX_CALL_DEPTH {
        return fail(
            c,
            Diagnostic::error("check::call-depth", format!("calls nest more than {} deep", super::MAX_CALL_DEPTH))
                .label(call_span, "too deep here")
                .help("flatten the chain of calls"),
        );
    }
    // Arguments are whole tensors of the caller.
    let mut arg_ids = Vec::new();
    for a in args {
        match &a.kind {
            ExprKind::Access { name, indices: None } => match cx.read(name, &mut c.diags) {
                Ok(Some(t)) => arg_ids.push((t, a.span)),
                _ => return Err(()),
            },
            _ => {
                return fail(
                    c,
                    Diagnostic::error("check::call-argument", "arguments of a function call are tensor names")
                        .label(a.span, "an expression, not a tensor name")
                        .help("compute the argument into a tensor first: `T[i] = ...`, then pass T"),
                )
            }
        }
    }
    let callee_name = c.fn_name(key);
    let Some(callee) = c.function(key) else {
        // The callee's own errors are reported where it is defined.
        return Err(());
    };
    let callee_def_span = callee.span;
    if let Some(&i) = callee.indices.first() {
        let (name, at) = (callee.tensor(i).name.clone(), callee.tensor(i).span);
        return fail(
            c,
            Diagnostic::error("check::gather-call", format!("`{callee_name}` takes index inputs and cannot be called from another function"))
                .label(call_span, "called here")
                .label(at, format!("`{name}` is an index input"))
                .help("call it directly (with its index arrays), or copy its gathers into this function"),
        );
    }
    if let Some(&(t, span)) = arg_ids.iter().find(|(t, _)| matches!(cx.tensors[t.index()].kind, TensorKind::Index(_))) {
        let name = cx.tensors[t.index()].name.clone();
        return fail(
            c,
            Diagnostic::error("check::index-as-value", format!("index tensor `{name}` is passed as a value"))
                .label(span, "an integer index tensor")
                .help("index tensors are read only in gathered positions, e.g. U[I[e], a]"),
        );
    }
    if arg_ids.len() != callee.inputs.len() {
        let want: Vec<String> = callee.inputs.iter().map(|&t| callee.tensor(t).name.clone()).collect();
        return fail(
            c,
            Diagnostic::error(
                "check::call-arity",
                format!(
                    "`{callee_name}` takes {}, not {}",
                    super::stmt::plural(callee.inputs.len(), "argument", "arguments"),
                    arg_ids.len()
                ),
            )
            .label(call_span, format!("{} given", arg_ids.len()))
            .label(callee_def_span, "defined here")
            .help(format!("its inputs are: {}", want.join(", "))),
        );
    }
    if s.targets.len() != callee.outputs.len() {
        let want: Vec<String> = callee.outputs.iter().map(|&t| callee.tensor(t).name.clone()).collect();
        return fail(
            c,
            Diagnostic::error(
                "check::call-results",
                format!(
                    "`{callee_name}` returns {}, but {} assigned",
                    super::stmt::plural(callee.outputs.len(), "tensor", "tensors"),
                    super::stmt::plural(s.targets.len(), "is", "are")
                ),
            )
            .label(s.targets[0].span.to(s.targets[s.targets.len() - 1].span), "assigned here")
            .help(format!("its outputs are: {}", want.join(", "))),
        );
    }
    let seed = header_dims(c, cx, key, &callee, &callee_name, dims, call_span)?;
    let map = unify(c, cx, &callee, &callee_name, &arg_ids, call_span, seed)?;
    let subst = |s: &Size| s.substitute(&|d: DimId| map[d.index()].clone().unwrap_or_else(Size::one));
    let overflow = |c: &mut Checker| {
        c.diags.push(
            Diagnostic::error("check::size-overflow", "a size of the called function overflows 64 bits")
                .label(call_span, "in this call")
                .help("use smaller dims"),
        );
    };
    // Where each callee tensor lives in the caller.
    let mut tmap: Vec<Option<TensorId>> = vec![None; callee.tensors.len()];
    for (k, &t) in callee.inputs.iter().enumerate() {
        tmap[t.index()] = Some(arg_ids[k].0);
    }
    let mut targets = Vec::new();
    for t in &s.targets {
        targets.push(cx.target(&t.name, &mut c.diags)?);
    }
    for (k, (&o, t)) in callee.outputs.iter().zip(&s.targets).enumerate() {
        let Some((shape, factors)) = substituted(callee.tensor(o), &subst) else {
            overflow(c);
            return Err(());
        };
        let id = match targets[k] {
            Target::Output(id) => {
                if cx.tensors[id.index()].shape != shape {
                    let got: Vec<String> = shape.iter().map(|s| cx.size_text(s)).collect();
                    let ty = cx.type_text(id);
                    let decl_span = cx.tensors[id.index()].span;
                    return fail(
                        c,
                        Diagnostic::error("check::call-shape", format!("`{}` gets a result of the wrong shape", t.name.name))
                            .label(t.span, format!("`{callee_name}` returns [{}] here", got.join(", ")))
                            .label(decl_span, format!("declared as {ty}"))
                            .help("the declared output shape must match what the function returns"),
                    );
                }
                id
            }
            Target::Temp => cx.add_tensor(TensorDecl {
                name: t.name.name.clone(),
                kind: TensorKind::Temp,
                shape,
                factors,
                span: t.name.span,
            }),
        };
        tmap[o.index()] = Some(id);
    }
    let prefix = callee_name.rsplit("::").next().unwrap_or(&callee_name).to_string();
    for (k, decl) in callee.tensors.iter().enumerate() {
        if tmap[k].is_some() {
            continue;
        }
        let Some((shape, factors)) = substituted(decl, &subst) else {
            overflow(c);
            return Err(());
        };
        // Inlined intermediates get names no user can write (they contain a dot).
        let base = format!("{prefix}.{}", decl.name);
        let mut name = base.clone();
        let mut n = 2;
        while cx.by_name.contains_key(&name) {
            name = format!("{base}#{n}");
            n += 1;
        }
        let kind = if decl.kind == TensorKind::Const { TensorKind::Const } else { TensorKind::Temp };
        let id = cx.add_tensor(TensorDecl { name, kind, shape, factors, span: decl.span });
        if let Some(c) = callee.constant(TensorId(k as u32)) {
            cx.constants.push(tir::Constant { tensor: id, label: c.label.clone(), values: c.values.clone() });
        }
        cx.defined[id.index()] = true;
        cx.used[id.index()] = true;
        tmap[k] = Some(id);
    }
    let tm = |t: TensorId| tmap[t.index()].unwrap_or(t);
    for st in &callee.stmts {
        let Some(indices) = st
            .indices
            .iter()
            .map(|v| Some(tir::IndexVar { name: v.name.clone(), range: subst(&v.range)? }))
            .collect::<Option<Vec<_>>>()
        else {
            overflow(c);
            return Err(());
        };
        let Some(rhs) = rewrite(&st.rhs, &tm, &subst) else {
            overflow(c);
            return Err(());
        };
        cx.stmts.push(tir::Stmt {
            target: tm(st.target),
            lhs: st.lhs.clone(),
            op: st.op,
            reduced: st.reduced.clone(),
            indices,
            rhs,
            span: st.span,
        });
    }
    for t in &s.targets {
        if let Some(&id) = cx.by_name.get(&t.name.name) {
            cx.defined[id.index()] = true;
        }
    }
    Ok(())
}

/// A callee tensor's shape and factors in the caller's dims (`None` on overflow).
fn substituted(decl: &TensorDecl, subst: &dyn Fn(&Size) -> Option<Size>) -> Option<(Vec<Size>, Vec<Vec<Size>>)> {
    let shape = decl.shape.iter().map(subst).collect::<Option<Vec<Size>>>()?;
    let factors = decl.factors.iter().map(|fs| fs.iter().map(subst).collect()).collect::<Option<Vec<Vec<Size>>>>()?;
    Some((shape, factors))
}

/// The error for dims in brackets at a call that takes none: a builtin, `cg`, or a
/// function whose header declares no dims (`defined` is where it is defined).
pub(super) fn no_dims_expected(name: &str, at: Span, defined: Option<Span>) -> Diagnostic {
    let d = Diagnostic::error("check::call-dim-count", format!("`{name}` takes no dims in brackets"))
        .label(at, "remove these dims");
    match defined {
        Some(def) => d.label(def, "its header declares none").help(format!(
            "only a function declared with dims, `fn {}[w](...)`, is called with them",
            name.rsplit("::").next().unwrap_or(name)
        )),
        None => d.help(format!("call it as `{name}(...)`")),
    }
}

/// The callee's header dims (`fn windowed[w1, w2](...)`, its first dims) as the caller's
/// sizes written at the call, `windowed[32, w](...)`; the callee's other dims are `None`,
/// for `unify` to find from the arguments.
fn header_dims(
    c: &mut Checker,
    cx: &FnCx,
    key: super::FnKey,
    callee: &tir::Function,
    callee_name: &str,
    given: &[ast::DimExpr],
    call_span: Span,
) -> Result<Vec<Option<Size>>, ()> {
    let def = &c.modules[key.0].ast.functions[key.1];
    let declared: Vec<String> = def.dims.iter().map(|d| d.name.clone()).collect();
    let header_span = match (def.dims.first(), def.dims.last()) {
        (Some(a), Some(b)) => a.span.to(b.span),
        _ => def.name.span,
    };
    let mut seed: Vec<Option<Size>> = vec![None; callee.dims.len()];
    if declared.is_empty() {
        if let (Some(a), Some(b)) = (given.first(), given.last()) {
            c.diags.push(no_dims_expected(callee_name, a.span.to(b.span), Some(header_span)));
            return Err(());
        }
        return Ok(seed);
    }
    if given.len() != declared.len() {
        let at = match (given.first(), given.last()) {
            (Some(a), Some(b)) => a.span.to(b.span),
            _ => call_span,
        };
        c.diags.push(
            Diagnostic::error(
                "check::call-dim-count",
                format!(
                    "`{callee_name}` declares {} in its header, but {} given",
                    super::stmt::plural(declared.len(), "dim", "dims"),
                    super::stmt::plural(given.len(), "is", "are")
                ),
            )
            .label(at, format!("{} given here", given.len()))
            .label(header_span, format!("declared here: [{}]", declared.join(", ")))
            .help(format!(
                "write `{callee_name}[{}](...)`, each a number or a dim of this function, e.g. `[{}]`",
                declared.join(", "),
                declared.iter().map(|_| "32").collect::<Vec<_>>().join(", ")
            )),
        );
        return Err(());
    }
    for (k, d) in given.iter().enumerate() {
        let mut size = Size::one();
        for f in &d.factors {
            let factor = match f {
                ast::DimFactor::Lit(v, _) => Size::lit(*v),
                ast::DimFactor::Name(n) => match cx.dim_by_name(&n.name) {
                    Some(id) => Size::dim(id),
                    None => {
                        let dims: Vec<&str> = cx.dims.iter().map(|x| x.name.as_str()).collect();
                        let diag = Diagnostic::error("check::unknown-dim", format!("`{}` is not a dim of this function", n.name))
                            .label(n.span, "not a dim")
                            .label(header_span, format!("gives `{}` of `{callee_name}`", declared[k]));
                        c.diags.push(match super::suggest(&n.name, dims.iter().copied()) {
                            Some(s) => diag.help(format!("did you mean `{s}`?")),
                            None if dims.is_empty() => diag.help("write a number, or declare the dim: `fn f[w](...)`"),
                            None => diag.help(format!(
                                "write a number or one of this function's dims ({}), or declare it: `fn f[w](...)`",
                                dims.join(", ")
                            )),
                        });
                        return Err(());
                    }
                },
            };
            size = match size.mul(&factor) {
                Some(s) => s,
                None => {
                    c.diags.push(
                        Diagnostic::error("check::size-overflow", "this dim's value overflows 64 bits")
                            .label(d.span, "too large")
                            .help("use smaller dims"),
                    );
                    return Err(());
                }
            };
        }
        seed[k] = Some(size);
    }
    Ok(seed)
}

/// Finds each callee dim as a caller size from the argument shapes, starting from the
/// sizes `seed` already gives (the header dims written at the call).
fn unify(
    c: &mut Checker,
    cx: &FnCx,
    callee: &tir::Function,
    callee_name: &str,
    args: &[(TensorId, Span)],
    call_span: Span,
    seed: Vec<Option<Size>>,
) -> Result<Vec<Option<Size>>, ()> {
    let mut map = seed;
    for (k, (&p, &(a, aspan))) in callee.inputs.iter().zip(args).enumerate() {
        let (want, got) = (&callee.tensor(p).shape, &cx.tensors[a.index()].shape);
        if want.len() != got.len() {
            let (pt, at) = (callee.type_string(p), cx.type_text(a));
            c.diags.push(
                Diagnostic::error(
                    "check::call-rank",
                    format!(
                        "argument {} of `{callee_name}` has {}, but it expects {}",
                        k + 1,
                        super::stmt::plural(got.len(), "axis", "axes"),
                        want.len()
                    ),
                )
                .label(aspan, format!("this is {at}"))
                .label(callee.span, format!("`{callee_name}` expects {}: {pt}", callee.tensor(p).name))
                .help("pass a tensor of the expected rank"),
            );
            return Err(());
        }
    }
    let mismatch = |c: &mut Checker, k: usize, axis: usize, want: String, got: String, aspan: Span| {
        c.diags.push(
            Diagnostic::error("check::call-shape", format!("argument {} of `{callee_name}` has the wrong size on axis {axis}", k + 1))
                .label(aspan, format!("axis {axis} is {got}"))
                .label(call_span, format!("`{callee_name}` needs {want} there"))
                .help("the arguments' shapes must agree the way the called function's signature says"),
        );
    };
    loop {
        let mut progress = false;
        let mut pending = false;
        for (k, (&p, &(a, aspan))) in callee.inputs.iter().zip(args).enumerate() {
            for (axis, (want, got)) in callee.tensor(p).shape.iter().zip(&cx.tensors[a.index()].shape).enumerate() {
                let unknown: Vec<DimId> = want.syms.iter().copied().filter(|d| map[d.index()].is_none()).collect();
                let mut known = Size::lit(want.coeff);
                for d in want.syms.iter().filter(|d| map[d.index()].is_some()) {
                    known = match map[d.index()].as_ref().and_then(|s| known.mul(s)) {
                        Some(k) => k,
                        None => return Err(()),
                    };
                }
                if unknown.is_empty() {
                    if &known != got {
                        mismatch(c, k, axis, cx.size_text(&known), cx.size_text(got), aspan);
                        return Err(());
                    }
                } else if unknown.len() == 1 {
                    match got.div(&known) {
                        Some(s) => {
                            map[unknown[0].index()] = Some(s);
                            progress = true;
                        }
                        None => {
                            let want_txt = want.display(&callee.dims).to_string();
                            mismatch(c, k, axis, format!("a multiple of {want_txt}"), cx.size_text(got), aspan);
                            return Err(());
                        }
                    }
                } else {
                    pending = true;
                }
            }
        }
        if !pending {
            break;
        }
        if !progress {
            c.diags.push(
                Diagnostic::error("check::call-dims", format!("cannot tell the dims of `{callee_name}` from its arguments"))
                    .label(call_span, "in this call")
                    .help("a product dim like f32[q * s] needs one of its factors fixed by another argument"),
            );
            return Err(());
        }
    }
    if let Some(k) = map.iter().position(|s| s.is_none()) {
        c.diags.push(
            Diagnostic::error(
                "check::call-dims",
                format!("dim `{}` of `{callee_name}` is not determined by its arguments", callee.dims[k].name),
            )
            .label(call_span, "in this call")
            .label(callee.dims[k].span, "declared here")
            .help(format!(
                "declare it in the header, `fn {}[{}](...)`, and give it at the call; or run the function directly with --dim",
                callee_name.rsplit("::").next().unwrap_or(callee_name),
                callee.dims[k].name
            )),
        );
        return Err(());
    }
    Ok(map)
}

/// Copies a callee expression into the caller: tensors renamed, sizes substituted.
fn rewrite(e: &Expr, tm: &dyn Fn(TensorId) -> TensorId, subst: &dyn Fn(&Size) -> Option<Size>) -> Option<Expr> {
    let r = |x: &Expr| rewrite(x, tm, subst);
    let rb = |x: &Expr| r(x).map(Box::new);
    Some(match e {
        Expr::Lit(v) => Expr::Lit(*v),
        Expr::Size(s) => Expr::Size(subst(s)?),
        Expr::Index(i) => Expr::Index(*i),
        Expr::Access(t, p) => Expr::Access(tm(*t), p.clone()),
        Expr::Gather(t, p) => Expr::Gather(tm(*t), p.iter().map(|x| x.map_tensor(&mut |u| tm(u))).collect()),
        Expr::Neg(a) => Expr::Neg(rb(a)?),
        Expr::Add(xs) => Expr::Add(xs.iter().map(r).collect::<Option<_>>()?),
        Expr::Mul(xs) => Expr::Mul(xs.iter().map(r).collect::<Option<_>>()?),
        Expr::Call(b, xs) => Expr::Call(*b, xs.iter().map(r).collect::<Option<_>>()?),
        Expr::Sub(a, b) => Expr::Sub(rb(a)?, rb(b)?),
        Expr::Div(a, b) => Expr::Div(rb(a)?, rb(b)?),
        Expr::Select(cnd, a, b) => Expr::Select(Box::new(rewrite_cond(cnd, tm, subst)?), rb(a)?, rb(b)?),
        Expr::Reduce(op, ids, body) => Expr::Reduce(*op, ids.clone(), rb(body)?),
    })
}

fn rewrite_cond(
    c: &tir::Cond,
    tm: &dyn Fn(TensorId) -> TensorId,
    subst: &dyn Fn(&Size) -> Option<Size>,
) -> Option<tir::Cond> {
    Some(match c {
        tir::Cond::Cmp(op, a, b) => tir::Cond::Cmp(*op, rewrite(a, tm, subst)?, rewrite(b, tm, subst)?),
        tir::Cond::And(cs) => tir::Cond::And(cs.iter().map(|x| rewrite_cond(x, tm, subst)).collect::<Option<_>>()?),
        tir::Cond::Or(cs) => tir::Cond::Or(cs.iter().map(|x| rewrite_cond(x, tm, subst)).collect::<Option<_>>()?),
        tir::Cond::Not(x) => tir::Cond::Not(Box::new(rewrite_cond(x, tm, subst)?)),
    })
}
