//! Acceptance tests (the workloads the pass exists for), pass-through, errors and
//! property tests. Each compares the rewritten function with the original through the
//! reference evaluator on random inputs.

use super::lang::{Spec, TNode, EG};
use super::*;
use crate::check::check_file;
use crate::diag::{render_all, SourceMap};
use crate::eval::{evaluate, testutil::Rng, EvalOptions};
use crate::tir::{DimId, Expr, TensorKind};
use egg::Id;
use ndarray::ArrayD;
use std::collections::HashMap;

/// Checks `.tsr` source with one function and returns it.
pub(super) fn check(src: &str) -> Function {
    let mut sm = SourceMap::new();
    let id = sm.add("test.tsr", src);
    let c = check_file(&mut sm, id);
    assert!(!c.has_errors(), "{}", render_all(&c.diagnostics, &sm, false));
    c.functions.into_iter().next().expect("one function")
}

pub(super) fn bind(f: &Function, dims: &[(&str, u64)]) -> Bindings {
    let mut b = Bindings::new(f.dims.len());
    for (name, v) in dims {
        let d = f.dim_by_name(name).unwrap_or_else(|| panic!("no dim {name}"));
        b.set(d, *v);
    }
    for k in 0..f.dims.len() {
        assert!(b.get(DimId(k as u32)).is_some(), "dim {} unbound", f.dims[k].name);
    }
    b
}

/// Inputs in [-1, 1), or in [0.25, 1.25) when `positive` (for quotients).
pub(super) fn inputs(f: &Function, b: &Bindings, seed: u64, positive: bool) -> Vec<ArrayD<f64>> {
    let mut rng = Rng::new(seed);
    f.inputs
        .iter()
        .map(|&t| {
            let shape = f.shape(t, b).expect("shape");
            let a = rng.array(&shape);
            if positive {
                a.mapv(|x| 0.75 + 0.5 * x)
            } else {
                a
            }
        })
        .collect()
}

/// Evaluates both functions on the same random inputs and compares every output.
pub(super) fn assert_same(f: &Function, g: &Function, b: &Bindings, seed: u64, positive: bool) {
    let xs = inputs(f, b, seed, positive);
    let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
    let want = evaluate::<f64>(f, b, &views, &EvalOptions::default()).expect("original evaluates");
    let got = evaluate::<f64>(g, b, &views, &EvalOptions::default()).unwrap_or_else(|e| panic!("rewritten: {e}\n{g}"));
    assert_eq!(want.len(), got.len());
    for (k, (w, o)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w.shape(), o.shape(), "output {k}");
        let scale = w.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        for (x, y) in w.iter().zip(o.iter()) {
            assert!(
                (x - y).abs() <= 1e-9 * scale || (x.is_nan() && y.is_nan()),
                "output {k}: {x} vs {y}\noriginal:\n{f}\nrewritten:\n{g}"
            );
        }
    }
}

/// Checks, binds, optimises with all rules, verifies and compares with the oracle.
pub(super) fn run(src: &str, dims: &[(&str, u64)], positive: bool) -> (Function, Function, AlgebraReport) {
    let f = check(src);
    let b = bind(&f, dims);
    let (g, r) = optimize(&f, &b, &AlgebraOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    tir::verify(&g).unwrap_or_else(|e| panic!("{e}\n{g}"));
    assert_eq!((&g.name, g.dtype, &g.dims, &g.inputs, &g.outputs), (&f.name, f.dtype, &f.dims, &f.inputs, &f.outputs));
    for &t in f.inputs.iter().chain(&f.outputs) {
        assert_eq!(g.tensor(t).name, f.tensor(t).name);
        assert_eq!(g.tensor(t).shape, f.tensor(t).shape);
    }
    assert!(r.cost_after <= r.cost_before, "{r:?}");
    assert_same(&f, &g, &b, 7, positive);
    (f, g, r)
}

/// A dense row-major tensor, for evaluating e-graph nodes directly.
#[derive(Clone, Debug)]
pub(super) struct Dense {
    shape: Vec<usize>,
    data: Vec<f64>,
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1];
    }
    s
}

fn eval_node(eg: &EG, node: &TNode, vals: &HashMap<Id, Dense>, inputs: &HashMap<u32, Dense>) -> Option<Dense> {
    let v = |i: &Id| vals.get(&eg.find(*i));
    let size = |s: &tir::Size| eg.analysis.value(s) as usize;
    let map = |x: &Dense, g: &dyn Fn(f64) -> f64| Dense { shape: x.shape.clone(), data: x.data.iter().map(|&a| g(a)).collect() };
    Some(match node {
        TNode::Input(t) => inputs.get(t)?.clone(),
        TNode::Num(bits) => Dense { shape: vec![], data: vec![f64::from_bits(*bits)] },
        TNode::Einsum(spec, ids) => {
            let ops: Vec<&Dense> = ids.iter().map(v).collect::<Option<_>>()?;
            let sizes: Vec<usize> = spec.sizes.iter().map(size).collect();
            let out_shape = sizes[..spec.n_out].to_vec();
            let out_strides = strides(&out_shape);
            let mut data = vec![0.0; out_shape.iter().product()];
            let op_strides: Vec<Vec<usize>> = ops.iter().map(|o| strides(&o.shape)).collect();
            let total: usize = sizes.iter().product();
            let mut idx = vec![0usize; sizes.len()];
            for _ in 0..total {
                let mut p = 1.0;
                for (k, o) in ops.iter().enumerate() {
                    let at: usize = spec.ops[k].iter().zip(&op_strides[k]).map(|(&l, s)| idx[l as usize] * s).sum();
                    p *= o.data[at];
                }
                let at: usize = (0..spec.n_out).map(|l| idx[l] * out_strides[l]).sum();
                data[at] += p;
                for l in (0..sizes.len()).rev() {
                    idx[l] += 1;
                    if idx[l] < sizes[l] {
                        break;
                    }
                    idx[l] = 0;
                }
            }
            Dense { shape: out_shape, data }
        }
        TNode::Add(ids) => {
            let xs: Vec<&Dense> = ids.iter().map(v).collect::<Option<_>>()?;
            let mut out = xs[0].clone();
            for x in &xs[1..] {
                for (a, b) in out.data.iter_mut().zip(&x.data) {
                    *a += b;
                }
            }
            out
        }
        TNode::Recip([x]) => map(v(x)?, &|a| 1.0 / a),
        TNode::Call(code, ids) => {
            let b = TNode::as_builtin(*code)?;
            let xs: Vec<&Dense> = ids.iter().map(v).collect::<Option<_>>()?;
            let mut out = xs[0].clone();
            for (k, o) in out.data.iter_mut().enumerate() {
                *o = b.apply(xs[0].data[k], xs.get(1).map_or(0.0, |y| y.data[k]));
            }
            out
        }
        TNode::Split(factors, [x]) => {
            Dense { shape: factors.iter().flatten().map(size).collect(), data: v(x)?.data.clone() }
        }
        TNode::Merge(_, [x]) => {
            let c = &eg[*x].data.shape;
            let _ = c;
            let shape = eg[eg.lookup(node.clone())?].data.shape.iter().map(size).collect();
            Dense { shape, data: v(x)?.data.clone() }
        }
        TNode::Opaque(..) => return None,
    })
}

/// Evaluates every e-class on random inputs and returns the nodes whose value differs
/// from their class's value: an empty list means every rewrite preserved meaning.
pub(super) fn inconsistent_nodes(eg: &EG, f: &Function, b: &Bindings) -> Vec<String> {
    let xs = inputs(f, b, 3, true);
    let inputs: HashMap<u32, Dense> = f
        .inputs
        .iter()
        .zip(xs)
        .map(|(t, a)| (t.0, Dense { shape: a.shape().to_vec(), data: a.iter().copied().collect() }))
        .collect();
    let mut vals: HashMap<Id, Dense> = HashMap::new();
    loop {
        let mut progress = false;
        for c in eg.classes() {
            if vals.contains_key(&c.id) {
                continue;
            }
            if let Some(d) = c.nodes.iter().find_map(|n| eval_node(eg, n, &vals, &inputs)) {
                vals.insert(c.id, d);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    let mut bad = Vec::new();
    for c in eg.classes() {
        let Some(want) = vals.get(&c.id) else { continue };
        let scale = want.data.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        for n in &c.nodes {
            if let Some(got) = eval_node(eg, n, &vals, &inputs) {
                let same = got.shape == want.shape
                    && got.data.iter().zip(&want.data).all(|(x, y)| (x - y).abs() <= 1e-9 * scale);
                if !same {
                    bad.push(format!("class {}: node {n:?} gives {:?}, class {:?}", c.id, got.data, want.data));
                }
            }
        }
    }
    bad
}

/// Runs only `rules` and returns the e-graph (for rule tests).
pub(super) fn saturate_with(f: &Function, b: &Bindings, rules: &[Rule]) -> (EG, AlgebraReport) {
    let opts = AlgebraOptions { iter_limit: 4, ..AlgebraOptions::default() };
    let s = saturate(f, b, &opts, rules).unwrap_or_else(|e| panic!("{e}"));
    (s.egraph, s.report)
}

fn temps(g: &Function) -> Vec<&tir::TensorDecl> {
    g.tensors.iter().filter(|t| t.kind == TensorKind::Temp).collect()
}

#[test]
fn matmul_chain_is_left_alone_when_nothing_is_cheaper() {
    let (f, g, r) = run(
        "fn f(A: f64[n, n], B: f64[n, n]) -> C: f64[n, n] { C[i, j] = A[i, k] * B[k, j] }",
        &[("n", 8)],
        false,
    );
    assert_eq!(f, g);
    assert_eq!(r.cost_before, r.cost_after);
    assert_eq!(r.cost_before, 2.0 * 512.0);
}

#[allow(dead_code)]
fn _unused(_: Spec, _: Expr) {}
