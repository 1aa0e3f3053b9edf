//! Constant statements: `C = cg(l1, l2, l3)` makes the real-basis Clebsch-Gordan tensor
//! of those degrees a compile-time constant, so the planner knows its zeros;
//! `Y = sphere_grid(L, Q)` and `Yi = sphere_project(L, Q)` make the sampled real spherical
//! harmonics and their quadrature-weighted back-projection constants (see
//! `crate::constants`).

use super::func::{FnCx, Target};
use crate::constants::{cg_shape, clebsch_gordan, sphere_grid, sphere_grid_shape, sphere_project};
use crate::diag::Diagnostic;
use crate::syntax::ast::{self, AssignOp, ExprKind};
use crate::tir::{self, Size, TensorDecl, TensorKind};
use std::sync::Arc;

/// A builtin that defines a whole constant tensor from whole-number arguments.
struct ConstBuiltin {
    name: &'static str,
    /// The parameters, as written in messages: `l1, l2, l3`.
    params: &'static str,
    arity: usize,
    /// A statement that uses it, for help texts, and the indices of a read of the result.
    example: &'static str,
    indices: &'static str,
}

impl ConstBuiltin {
    /// The name the example assigns: `C` in `C = cg(1, 1, 2)`.
    fn lhs(&self) -> &'static str {
        self.example.split(' ').next().unwrap_or("C")
    }
}

const BUILTINS: [ConstBuiltin; 3] = [
    ConstBuiltin { name: "cg", params: "l1, l2, l3", arity: 3, example: "C = cg(1, 1, 2)", indices: "i, j, k" },
    ConstBuiltin { name: "sphere_grid", params: "L, Q", arity: 2, example: "Y = sphere_grid(2, 6)", indices: "p, i" },
    ConstBuiltin {
        name: "sphere_project",
        params: "L, Q",
        arity: 2,
        example: "Yi = sphere_project(2, 6)",
        indices: "i, p",
    },
];

/// Whether `name` is a builtin that defines a constant tensor (`cg`, `sphere_grid`,
/// `sphere_project`): such a call is a constant statement, not a function call.
pub(super) fn is_constant_builtin(name: &str) -> bool {
    BUILTINS.iter().any(|b| b.name == name)
}

pub(super) fn const_stmt(cx: &mut FnCx, s: &ast::Stmt, diags: &mut Vec<Diagnostic>) -> Result<(), ()> {
    let ExprKind::Call { path, args, dims } = &s.rhs.kind else { return Err(()) };
    let Some(b) = path.first().and_then(|p| BUILTINS.iter().find(|b| b.name == p.name)) else { return Err(()) };
    let name = b.name;
    if let (Some(first), Some(last)) = (dims.first(), dims.last()) {
        diags.push(super::inline::no_dims_expected(name, first.span.to(last.span), None));
        return Err(());
    }
    let bad = |diags: &mut Vec<Diagnostic>, span, label: &str| {
        diags.push(
            Diagnostic::error(
                "check::constant",
                format!("`{name}({})` defines a whole constant tensor: `{}`", b.params, b.example),
            )
            .label(span, label)
            .help(format!(
                "assign it to a new name with `=`, then read it with indices: {}[{}]",
                b.lhs(),
                b.indices
            )),
        );
        Err(())
    };
    if s.targets.len() != 1 || s.targets[0].indices.is_some() || s.op != AssignOp::Assign {
        return bad(diags, s.targets[0].span.to(s.op_span), &format!("write `{} = {name}(...)`", b.lhs()));
    }
    let lhs = &s.targets[0];
    let mut numbers = Vec::new();
    for a in args {
        match a.kind {
            ExprKind::Number(v) if v >= 0.0 && v.fract() == 0.0 && v <= 1e6 => numbers.push(v as u32),
            _ => {
                let (what, example) = match name {
                    "cg" => ("the degrees", "write the degrees as literals, e.g. cg(1, 1, 2)".to_string()),
                    _ => ("the degree and order", format!("write them as literals, e.g. {}", b.example)),
                };
                diags.push(
                    Diagnostic::error("check::constant", format!("{what} of `{name}` are whole numbers"))
                        .label(a.span, "not a whole number ≥ 0")
                        .help(example),
                );
                return Err(());
            }
        }
    }
    let (shape, values, label): (Vec<usize>, _, _) = match (name, &numbers[..]) {
        ("cg", &[l1, l2, l3]) => match clebsch_gordan(l1, l2, l3) {
            Ok(v) => (cg_shape(l1, l2, l3).to_vec(), v, format!("cg({l1}, {l2}, {l3})")),
            Err(e) => {
                diags.push(
                    Diagnostic::error("check::cg-degrees", e.to_string())
                        .label(s.rhs.span, "no such Clebsch-Gordan tensor")
                        .help("degrees must satisfy |l1 - l2| <= l3 <= l1 + l2"),
                );
                return Err(());
            }
        },
        ("sphere_grid" | "sphere_project", &[l, q]) => {
            let (values, shape) = if name == "sphere_grid" {
                (sphere_grid(l, q), sphere_grid_shape(l, q).to_vec())
            } else {
                (sphere_project(l, q), sphere_grid_shape(l, q).iter().rev().copied().collect())
            };
            match values {
                Ok(v) => (shape, v, format!("{name}({l}, {q})")),
                Err(e) => {
                    diags.push(
                        Diagnostic::error("check::grid-arguments", e.to_string())
                            .label(s.rhs.span, "no such grid constant")
                            .help(format!(
                                "the degree L is at most {}, the order Q at least 2L and at most {}; \
                                 a grid product is exact when Q >= 3L",
                                crate::constants::MAX_GRID_DEGREE,
                                crate::constants::MAX_GRID_ORDER
                            )),
                    );
                    return Err(());
                }
            }
        }
        _ => {
            let what = match (name, numbers.len()) {
                ("cg", 1) => "degree",
                ("cg", _) => "degrees",
                (_, 1) => "argument",
                _ => "arguments",
            };
            return bad(diags, s.rhs.span, &format!("{} {what} given, {} needed", numbers.len(), b.arity));
        }
    };
    match cx.target(&lhs.name, diags)? {
        Target::Temp => {}
        Target::Output(_) => {
            diags.push(
                Diagnostic::error("check::constant", "an output cannot be a constant")
                    .label(lhs.span, "an output")
                    .help(format!(
                        "name the constant, then copy it: {} and O[{i}] = {}[{i}]",
                        b.example,
                        b.lhs(),
                        i = b.indices
                    )),
            );
            return Err(());
        }
    }
    let shape: Vec<Size> = shape.iter().map(|&n| Size::lit(n as u64)).collect();
    let factors = shape.iter().map(|s| vec![s.clone()]).collect();
    let id = cx.add_tensor(TensorDecl {
        name: lhs.name.name.clone(),
        kind: TensorKind::Const,
        shape,
        factors,
        span: lhs.name.span,
    });
    cx.defined[id.index()] = true;
    cx.constants.push(tir::Constant { tensor: id, label, values: Arc::new(values) });
    Ok(())
}
