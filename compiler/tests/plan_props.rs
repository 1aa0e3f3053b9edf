//! Plans compute what their functions compute: random einsum networks and random
//! well-typed programs are planned, and the plan's program (one statement per step) is
//! run on the reference evaluator and compared with direct evaluation.

use ndarray::{ArrayD, Dimension};
use proptest::prelude::*;
use tessera_compiler::diag::FileId;
use tessera_compiler::pipeline;
use tessera_compiler::eval::{evaluate, EvalOptions};
use tessera_compiler::plan::{plan, PlanOptions};
use tessera_compiler::tir::{bind_dims, Bindings, Function};
use tessera_runtime::DType;

mod common;

/// Plan options with or without the algebra pass.
fn opts(algebra: bool) -> PlanOptions {
    let mut o = PlanOptions::default();
    if !algebra {
        o.algebra = None;
    }
    o
}

fn inputs_for(f: &Function, b: &Bindings) -> Vec<ArrayD<f64>> {
    f.inputs
        .iter()
        .enumerate()
        .map(|(k, &t)| {
            let shape = f.shape(t, b).unwrap_or_default();
            ArrayD::from_shape_fn(shape, |ix| ((ix.as_array_view().sum() * 5 + k * 3) % 13) as f64 / 6.0 - 1.04)
        })
        .collect()
}

fn same(f: &Function, b: &Bindings, opts: &PlanOptions) -> Result<(), TestCaseError> {
    let p = plan(f, b, opts).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    let inputs = inputs_for(f, b);
    let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
    let want = evaluate(f, b, &views, &EvalOptions::default());
    let got = evaluate(&p.program, b, &views, &EvalOptions::default());
    // Direct evaluation has no reason to fail on these small inputs: a failure of
    // either side is a failed case, not one to skip.
    let w = want.map_err(|e| TestCaseError::fail(format!("direct evaluation fails: {e}\n{f}")))?;
    let g = got.map_err(|e| TestCaseError::fail(format!("planned program fails: {e}\n{p}")))?;
    prop_assert_eq!(w.len(), g.len(), "number of outputs\n{}\n{}", f, p);
    for (x, y) in w.iter().zip(&g) {
        prop_assert_eq!(x.shape(), y.shape());
        let scale = x.iter().filter(|v| v.is_finite()).fold(1.0f64, |a, v| a.max(v.abs()));
        for (a, c) in x.iter().zip(y.iter()) {
            // Reassociation may turn one non-finite value into another (NaN vs inf),
            // and the algebra pass folds `0·x` to 0 assuming x is finite, so a
            // non-finite direct value may come out finite.
            let ok = a == c || !a.is_finite() || (a - c).abs() <= 1e-9 * scale;
            prop_assert!(ok, "direct {} vs planned {}\n{}\n{}", a, c, f, p);
        }
    }
    Ok(())
}

/// The first function of a generated program, which checks by construction.
fn checked(src: &str) -> Result<Function, TestCaseError> {
    let (_, _, c) = pipeline::check("p.tsr", src);
    c.functions.into_iter().next().ok_or_else(|| TestCaseError::fail(format!("does not check:\n{src}")))
}

#[test]
fn planned_einsums_equal_direct() {
    common::run_cases(300, (common::einsum_case(1), any::<bool>()), |((spec, shapes), algebra)| {
        let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        let e = tessera_compiler::einsum::translate(&spec, &refs, DType::F64, FileId(0))
            .map_err(|d| TestCaseError::fail(format!("{spec}: {}", d.message)))?;
        same(&e.function, &e.bindings, &opts(algebra))
    });
}

#[test]
fn planned_programs_equal_direct() {
    common::run_cases(300, (common::typed_program(), 1usize..4, any::<bool>()), |(src, n, algebra)| {
        let f = checked(&src)?;
        let b = bind_dims(&f, &[&[n, n], &[n], &[n * n], &[]], &[]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        same(&f, &b, &opts(algebra))
    });
}

/// Each case plans twice with the algebra pass's e-graph; fewer cases keep it brisk.
#[test]
fn the_algebra_pass_never_makes_a_plan_costlier() {
    common::run_cases(64, (common::typed_program(), 1usize..5), |(src, n)| {
        let f = checked(&src)?;
        let b = bind_dims(&f, &[&[n, n], &[n], &[n * n], &[]], &[]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let with = plan(&f, &b, &opts(true)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let without = plan(&f, &b, &opts(false)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(with.flops <= without.flops, "{} > {}\n{}\n{}", with.flops, without.flops, with, without);
        Ok(())
    });
}
