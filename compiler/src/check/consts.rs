//! Constant statements: `C = cg(l1, l2, l3)` makes the real-basis Clebsch-Gordan tensor
//! of those degrees a compile-time constant, so the planner knows its zeros.

use super::func::{FnCx, Target};
use crate::constants::{cg_shape, clebsch_gordan};
use crate::diag::Diagnostic;
use crate::syntax::ast::{self, AssignOp, ExprKind};
use crate::tir::{self, Size, TensorDecl, TensorKind};
use std::sync::Arc;

pub(super) fn const_stmt(cx: &mut FnCx, s: &ast::Stmt, diags: &mut Vec<Diagnostic>) -> Result<(), ()> {
    let ExprKind::Call { args, dims, .. } = &s.rhs.kind else { return Err(()) };
    if let (Some(first), Some(last)) = (dims.first(), dims.last()) {
        diags.push(super::inline::no_dims_expected("cg", first.span.to(last.span), None));
        return Err(());
    }
    let bad = |diags: &mut Vec<Diagnostic>, span, label: &str| {
        diags.push(
            Diagnostic::error("check::constant", "`cg(l1, l2, l3)` defines a whole constant tensor: `C = cg(1, 1, 2)`")
                .label(span, label)
                .help("assign it to a new name with `=`, then read it with indices: C[i, j, k]"),
        );
        Err(())
    };
    if s.targets.len() != 1 || s.targets[0].indices.is_some() || s.op != AssignOp::Assign {
        return bad(diags, s.targets[0].span.to(s.op_span), "write `C = cg(...)`");
    }
    let lhs = &s.targets[0];
    let mut degrees = Vec::new();
    for a in args {
        match a.kind {
            ExprKind::Number(v) if v >= 0.0 && v.fract() == 0.0 && v <= 1e6 => degrees.push(v as u32),
            _ => {
                diags.push(
                    Diagnostic::error("check::constant", "the degrees of `cg` are whole numbers")
                        .label(a.span, "not a whole number ≥ 0")
                        .help("write the degrees as literals, e.g. cg(1, 1, 2)"),
                );
                return Err(());
            }
        }
    }
    let [l1, l2, l3] = degrees[..] else {
        return bad(diags, s.rhs.span, &format!("{} degrees given, 3 needed", degrees.len()));
    };
    let values = match clebsch_gordan(l1, l2, l3) {
        Ok(v) => v,
        Err(e) => {
            diags.push(
                Diagnostic::error("check::cg-degrees", e.to_string())
                    .label(s.rhs.span, "no such Clebsch-Gordan tensor")
                    .help("degrees must satisfy |l1 - l2| <= l3 <= l1 + l2"),
            );
            return Err(());
        }
    };
    match cx.target(&lhs.name, diags)? {
        Target::Temp => {}
        Target::Output(_) => {
            diags.push(
                Diagnostic::error("check::constant", "an output cannot be a constant")
                    .label(lhs.span, "an output")
                    .help("name the constant, then copy it: C = cg(1, 1, 2) and O[i, j, k] = C[i, j, k]"),
            );
            return Err(());
        }
    }
    let shape: Vec<Size> = cg_shape(l1, l2, l3).iter().map(|&n| Size::lit(n as u64)).collect();
    let factors = shape.iter().map(|s| vec![s.clone()]).collect();
    let id = cx.add_tensor(TensorDecl { name: lhs.name.name.clone(), kind: TensorKind::Const, shape, factors, span: lhs.name.span });
    cx.defined[id.index()] = true;
    cx.constants.push(tir::Constant { tensor: id, label: format!("cg({l1}, {l2}, {l3})"), values: Arc::new(values) });
    Ok(())
}
