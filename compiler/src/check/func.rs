//! Checking one function: its signature, then each statement in order.

use super::names::{reserved, suggest};
use super::Checker;
use crate::diag::{Diagnostic, Span};
use crate::syntax::ast::{self, DimFactor, ExprKind};
use crate::tir::{self, DimId, Size, TensorDecl, TensorId, TensorKind};
use std::collections::HashMap;
use tessera_runtime::DType;

/// Everything known about the function being checked.
pub(super) struct FnCx {
    pub module: usize,
    pub dtype: DType,
    pub dims: Vec<tir::Dim>,
    pub tensors: Vec<TensorDecl>,
    pub by_name: HashMap<String, TensorId>,
    pub inputs: Vec<TensorId>,
    pub indices: Vec<TensorId>,
    pub outputs: Vec<TensorId>,
    pub stmts: Vec<tir::Stmt>,
    pub constants: Vec<tir::Constant>,
    /// Whether a tensor has a value at this point (inputs always; others once assigned).
    pub defined: Vec<bool>,
    /// Tensors whose defining statement failed: uses are not reported again.
    pub poisoned: Vec<bool>,
    pub used: Vec<bool>,
    /// Every name some statement of the function assigns, with that statement's span.
    pub assigned_later: HashMap<String, Span>,
    pub failed: bool,
}

/// How a statement's target relates to what is already declared.
pub(super) enum Target {
    /// A declared output, not yet assigned.
    Output(TensorId),
    /// A new intermediate.
    Temp,
}

impl FnCx {
    pub fn dim_by_name(&self, name: &str) -> Option<DimId> {
        self.dims.iter().position(|d| d.name == name).map(|i| DimId(i as u32))
    }

    pub fn size_text(&self, s: &Size) -> String {
        s.display(&self.dims).to_string()
    }

    pub fn type_text(&self, t: TensorId) -> String {
        let d = &self.tensors[t.index()];
        let dtype = match d.kind {
            TensorKind::Index(it) => it.name(),
            _ => self.dtype.name(),
        };
        if d.shape.is_empty() {
            return format!("{}: {dtype}", d.name);
        }
        let dims: Vec<String> = d.shape.iter().map(|s| self.size_text(s)).collect();
        format!("{}: {dtype}[{}]", d.name, dims.join(", "))
    }

    /// Adds a tensor and returns its id.
    pub fn add_tensor(&mut self, decl: TensorDecl) -> TensorId {
        let id = TensorId(self.tensors.len() as u32);
        self.by_name.insert(decl.name.clone(), id);
        self.defined.push(matches!(decl.kind, TensorKind::Input | TensorKind::Index(_)));
        self.tensors.push(decl);
        self.poisoned.push(false);
        self.used.push(false);
        id
    }

    /// Checks that a statement may assign `name`.
    pub fn target(&self, name: &ast::Ident, diags: &mut Vec<Diagnostic>) -> Result<Target, ()> {
        let n = &name.name;
        if reserved(n) {
            diags.push(
                Diagnostic::error("check::reserved-name", format!("`{n}` is a reserved word and cannot name a tensor"))
                    .label(name.span, "reserved")
                    .help("choose another name"),
            );
            return Err(());
        }
        if let Some(d) = self.dim_by_name(n) {
            diags.push(
                Diagnostic::error("check::name-clash", format!("`{n}` is a dim of this function, not a tensor"))
                    .label(name.span, "assigned here")
                    .label(self.dims[d.index()].span, "declared as a dim here")
                    .help("tensor names must differ from dim names"),
            );
            return Err(());
        }
        match self.by_name.get(n) {
            None => Ok(Target::Temp),
            Some(&t) => {
                let decl = &self.tensors[t.index()];
                match decl.kind {
                    TensorKind::Input | TensorKind::Index(_) => {
                        diags.push(
                            Diagnostic::error("check::assign-input", format!("cannot assign to input `{n}`"))
                                .label(name.span, "assigned here")
                                .label(decl.span, "declared as an input here")
                                .help("inputs are read-only; assign a new tensor instead"),
                        );
                        Err(())
                    }
                    TensorKind::Output if !self.defined[t.index()] && !self.poisoned[t.index()] => {
                        Ok(Target::Output(t))
                    }
                    _ => {
                        diags.push(
                            Diagnostic::error("check::redefinition", format!("`{n}` is already defined"))
                                .label(name.span, "assigned again here")
                                .label(decl.span, "first defined here")
                                .help("each tensor is assigned once; give the new value another name"),
                        );
                        Err(())
                    }
                }
            }
        }
    }

    /// Resolves a tensor read by name, reporting undefined or not-yet-defined names.
    /// `Ok(None)` means the tensor is poisoned: skip silently.
    pub fn read(&mut self, name: &ast::Ident, diags: &mut Vec<Diagnostic>) -> Result<Option<TensorId>, ()> {
        let n = &name.name;
        if let Some(&t) = self.by_name.get(n) {
            if self.poisoned[t.index()] {
                return Ok(None);
            }
            if !self.defined[t.index()] {
                diags.push(
                    Diagnostic::error("check::read-before-write", format!("output `{n}` is read before it is assigned"))
                        .label(name.span, "read here")
                        .help("assign the output first, or read the tensor it is computed from"),
                );
                return Err(());
            }
            self.used[t.index()] = true;
            return Ok(Some(t));
        }
        if let Some(&later) = self.assigned_later.get(n) {
            diags.push(
                Diagnostic::error("check::use-before-def", format!("`{n}` is used before it is defined"))
                    .label(name.span, "used here")
                    .label(later, "defined later here")
                    .help("statements run in order; move the definition up"),
            );
            return Err(());
        }
        let cands = self.by_name.keys().map(|s| s.as_str()).chain(self.dims.iter().map(|d| d.name.as_str()));
        let d = Diagnostic::error("check::unknown-name", format!("unknown name `{n}`")).label(name.span, "not defined");
        diags.push(match suggest(n, cands) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help("inputs, outputs and earlier statements' tensors can be used here"),
        });
        Err(())
    }
}

pub(super) fn check_fn(c: &mut Checker, module: usize, def: &ast::FnDef) -> Option<tir::Function> {
    let mut cx = FnCx {
        module,
        dtype: DType::F32,
        dims: Vec::new(),
        tensors: Vec::new(),
        by_name: HashMap::new(),
        inputs: Vec::new(),
        indices: Vec::new(),
        outputs: Vec::new(),
        stmts: Vec::new(),
        constants: Vec::new(),
        defined: Vec::new(),
        poisoned: Vec::new(),
        used: Vec::new(),
        assigned_later: HashMap::new(),
        failed: false,
    };
    if signature(&mut cx, def, &mut c.diags).is_err() {
        return None;
    }
    for s in &def.body {
        for t in &s.targets {
            cx.assigned_later.entry(t.name.name.clone()).or_insert(t.name.span);
        }
    }
    for s in &def.body {
        let is_const = matches!(&s.rhs.kind, ExprKind::Call { path, .. } if path.len() == 1 && super::consts::is_constant_builtin(&path[0].name));
        let is_user_call = match &s.rhs.kind {
            ExprKind::Call { path, .. } => path.len() > 1 || tir::Builtin::from_name(&path[0].name).is_none(),
            _ => false,
        };
        let ok = if is_const {
            super::consts::const_stmt(&mut cx, s, &mut c.diags)
        } else if is_user_call {
            super::inline::call_stmt(c, &mut cx, s)
        } else {
            super::stmt::expr_stmt(&mut cx, s, &mut c.diags)
        };
        if ok.is_err() {
            cx.failed = true;
            for t in &s.targets {
                poison(&mut cx, t);
            }
        }
        if cx.stmts.len() > super::MAX_STATEMENTS {
            c.diags.push(
                Diagnostic::error(
                    "check::too-large",
                    format!("`{}` has more than {} statements once calls are inlined", def.name.name, super::MAX_STATEMENTS),
                )
                .label(s.span, "the limit is passed here")
                .help("calls are inlined: a function called many times is copied each time"),
            );
            return None;
        }
    }
    for &o in &cx.outputs {
        if !cx.defined[o.index()] && !cx.poisoned[o.index()] {
            let decl = &cx.tensors[o.index()];
            c.diags.push(
                Diagnostic::error("check::output-unassigned", format!("output `{}` is never assigned", decl.name))
                    .label(decl.span, "declared here")
                    .help(format!("add a statement `{}[...] = ...` to the body", decl.name)),
            );
            cx.failed = true;
        }
    }
    if cx.failed {
        return None;
    }
    unused_header_dims(&cx, def, &mut c.diags);
    for (k, t) in cx.tensors.iter().enumerate() {
        if matches!(t.kind, TensorKind::Temp | TensorKind::Const) && !cx.used[k] && !t.name.contains('.') {
            c.diags.push(
                Diagnostic::warning("check::unused", format!("`{}` is computed but never used", t.name))
                    .label(t.span, "defined here")
                    .help("remove the statement, or make it an output"),
            );
        }
    }
    Some(tir::Function {
        name: def.name.name.clone(),
        dtype: cx.dtype,
        dims: cx.dims,
        tensors: cx.tensors,
        inputs: cx.inputs,
        indices: cx.indices,
        outputs: cx.outputs,
        constants: cx.constants,
        stmts: cx.stmts,
        span: def.span,
    })
}

/// Warns about a header dim that no shape and no expression uses: it would have to be
/// given with `--dim` for nothing, and is often one that an index of the same name hides.
fn unused_header_dims(cx: &FnCx, def: &ast::FnDef, diags: &mut Vec<Diagnostic>) {
    let mut used: Vec<DimId> = cx.tensors.iter().flat_map(|t| t.shape.iter().flat_map(|s| s.syms.iter().copied())).collect();
    for st in &cx.stmts {
        used.extend(st.indices.iter().flat_map(|v| v.range.syms.iter().copied()));
        st.rhs.clone().map_nodes(&mut |e| {
            if let tir::Expr::Size(s) = &e {
                used.extend(s.syms.iter().copied());
            }
            e
        });
    }
    for (k, n) in def.dims.iter().enumerate() {
        if !used.contains(&DimId(k as u32)) {
            diags.push(
                Diagnostic::warning("check::unused-dim", format!("dim `{}` is declared but never used", n.name))
                    .label(n.span, "declared here")
                    .help("remove it from the header; an index of the same name hides the dim inside a statement"),
            );
        }
    }
}

/// Marks a failed statement's target so later reads are not reported again.
fn poison(cx: &mut FnCx, t: &ast::Lhs) {
    match cx.by_name.get(&t.name.name) {
        Some(&id) => {
            if !cx.defined[id.index()] {
                cx.poisoned[id.index()] = true;
            }
        }
        None => {
            let id = cx.add_tensor(TensorDecl {
                name: t.name.name.clone(),
                kind: TensorKind::Temp,
                shape: Vec::new(),
                factors: Vec::new(),
                span: t.name.span,
            });
            cx.poisoned[id.index()] = true;
        }
    }
}

fn signature(cx: &mut FnCx, def: &ast::FnDef, diags: &mut Vec<Diagnostic>) -> Result<(), ()> {
    let mut ok = true;
    let mut dtype: Option<(DType, Span)> = None;
    // Header dims first and in written order, so that a call's `f[a, b](...)` gives dims
    // 0, 1, ... of the callee.
    for n in &def.dims {
        if let Some(d) = cx.dim_by_name(&n.name) {
            diags.push(
                Diagnostic::error("check::duplicate-dim", format!("dim `{}` is declared twice", n.name))
                    .label(n.span, "declared again here")
                    .label(cx.dims[d.index()].span, "first declared here")
                    .help("list each dim once in the brackets after the function's name"),
            );
            ok = false;
            continue;
        }
        if reserved(&n.name) {
            diags.push(
                Diagnostic::error("check::reserved-name", format!("`{}` is a reserved word and cannot name a dim", n.name))
                    .label(n.span, "reserved")
                    .help("choose another name"),
            );
            ok = false;
        }
        cx.dims.push(tir::Dim { name: n.name.clone(), span: n.span });
    }
    // Then the dims of the shapes, so that tensor names can be checked against every dim
    // name.
    for p in def.params.iter().chain(&def.outputs) {
        for d in p.ty.dims.iter().flatten() {
            for f in &d.factors {
                if let DimFactor::Name(n) = f {
                    if cx.dim_by_name(&n.name).is_none() {
                        if reserved(&n.name) {
                            diags.push(
                                Diagnostic::error(
                                    "check::reserved-name",
                                    format!("`{}` is a reserved word and cannot name a dim", n.name),
                                )
                                .label(n.span, "reserved")
                                .help("choose another name"),
                            );
                            ok = false;
                        }
                        cx.dims.push(tir::Dim { name: n.name.clone(), span: n.span });
                    }
                }
            }
        }
    }
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for (p, kind) in def
        .params
        .iter()
        .map(|p| (p, TensorKind::Input))
        .chain(def.outputs.iter().map(|p| (p, TensorKind::Output)))
    {
        let name = &p.name.name;
        let mut kind = kind;
        let int = tir::IntType::from_name(&p.ty.dtype.name);
        match DType::from_name(&p.ty.dtype.name) {
            None if int.is_some() => {
                if kind == TensorKind::Output {
                    diags.push(
                        Diagnostic::error("check::index-output", format!("output `{name}` cannot be an integer tensor"))
                            .label(p.ty.dtype.span, "an integer type")
                            .help("integer tensors are index inputs only; outputs are f32 or f64"),
                    );
                    ok = false;
                } else if p.ty.dims.as_ref().is_none_or(|d| d.is_empty()) {
                    diags.push(
                        Diagnostic::error("check::index-rank", format!("index input `{name}` needs at least one axis"))
                            .label(p.ty.span, "a scalar")
                            .help("declare it with its entries' axes, e.g. I: i64[e]"),
                    );
                    ok = false;
                }
                kind = TensorKind::Index(int.unwrap_or(tir::IntType::I64));
            }
            None => {
                diags.push(
                    Diagnostic::error("check::unknown-dtype", format!("unknown element type `{}`", p.ty.dtype.name))
                        .label(p.ty.dtype.span, "not a dtype")
                        .help("Tessera supports f32 and f64 values, and i32 or i64 index inputs"),
                );
                ok = false;
            }
            Some(dt) => match dtype {
                None => dtype = Some((dt, p.ty.dtype.span)),
                Some((first, first_span)) if first != dt => {
                    diags.push(
                        Diagnostic::error("check::mixed-dtype", "all tensors of a function have the same dtype")
                            .label(p.ty.dtype.span, format!("this is {dt}"))
                            .label(first_span, format!("but this is {first}"))
                            .help("use one dtype per function; callers can evaluate it in f64 with --dtype"),
                    );
                    ok = false;
                }
                Some(_) => {}
            },
        }
        if let Some(prev) = seen.insert(name, p.name.span) {
            diags.push(
                Diagnostic::error("check::duplicate-param", format!("`{name}` is declared twice"))
                    .label(p.name.span, "declared again here")
                    .label(prev, "first declared here")
                    .help("every input and output needs its own name"),
            );
            ok = false;
            continue;
        }
        if reserved(name) {
            diags.push(
                Diagnostic::error("check::reserved-name", format!("`{name}` is a reserved word and cannot name a tensor"))
                    .label(p.name.span, "reserved")
                    .help("choose another name"),
            );
            ok = false;
        }
        if let Some(d) = cx.dim_by_name(name) {
            diags.push(
                Diagnostic::error("check::name-clash", format!("`{name}` names both a tensor and a dim"))
                    .label(p.name.span, "a tensor here")
                    .label(cx.dims[d.index()].span, "a dim here")
                    .help("tensor names must differ from dim names"),
            );
            ok = false;
        }
        let mut shape = Vec::new();
        let mut factors = Vec::new();
        let mut dims_ok = true;
        for d in p.ty.dims.iter().flatten() {
            let fs: Vec<Size> = d
                .factors
                .iter()
                .map(|f| match f {
                    DimFactor::Lit(v, _) => Size::lit(*v),
                    DimFactor::Name(n) => Size::dim(cx.dim_by_name(&n.name).unwrap_or(DimId(0))),
                })
                .collect();
            match fs.iter().try_fold(Size::one(), |acc, f| acc.mul(f)) {
                Some(s) => shape.push(s),
                None => {
                    diags.push(
                        Diagnostic::error("check::size-overflow", "this dim's value overflows 64 bits")
                            .label(d.span, "too large")
                            .help("use smaller dims"),
                    );
                    ok = false;
                    dims_ok = false;
                    shape.push(Size::one());
                }
            }
            factors.push(fs);
        }
        let dim_spans: Vec<Span> = p.ty.dims.iter().flatten().map(|d| d.span).collect();
        if let Some(at) = too_many_elements(&shape).filter(|_| dims_ok).and_then(|k| dim_spans.get(k)) {
            diags.push(
                Diagnostic::error(
                    "check::tensor-too-large",
                    format!("`{name}` has more than 2^63-1 elements, more than any array can hold"),
                )
                .label(*at, "the dims up to here multiply past 2^63-1")
                .label(p.ty.span, "in this type")
                .help("use smaller dims; numpy refuses such an array too (\"array is too big\")"),
            );
            ok = false;
        }
        let id = cx.add_tensor(TensorDecl { name: name.clone(), kind, shape, factors, span: p.name.span });
        match kind {
            TensorKind::Input => cx.inputs.push(id),
            TensorKind::Index(_) => cx.indices.push(id),
            _ => cx.outputs.push(id),
        }
    }
    if let Some((dt, _)) = dtype {
        cx.dtype = dt;
    }
    if ok {
        Ok(())
    } else {
        Err(())
    }
}

/// Where the literal dims of a tensor type multiply past 2^63-1 elements (numpy's
/// `npy_intp`), if they do. Zero dims are skipped, as numpy skips them: an empty array
/// of such a shape is refused too. Dims with names only add factors, so the literal ones
/// alone decide; the index is that of the dim where the product first overflows.
fn too_many_elements(shape: &[Size]) -> Option<usize> {
    let mut product: u64 = 1;
    for (k, s) in shape.iter().enumerate() {
        if !s.is_const() || s.coeff == 0 {
            continue;
        }
        match product.checked_mul(s.coeff) {
            Some(p) if p <= i64::MAX as u64 => product = p,
            _ => return Some(k),
        }
    }
    None
}
