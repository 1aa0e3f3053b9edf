//! Every stdlib function against an independent ndarray implementation written from
//! the formula (not through Tessera), on random inputs, in f32 and f64.

use ndarray::{Array2, ArrayD, Axis};
use tessera::{CallOptions, DType, Module, Tensor};

/// Deterministic pseudo-random matrix with entries in [-1, 1).
fn random(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    })
}

fn softmax_rows(mut s: Array2<f64>) -> Array2<f64> {
    for mut row in s.axis_iter_mut(Axis(0)) {
        let m = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|x| (x - m).exp());
        let z = row.sum();
        row.mapv_inplace(|x| x / z);
    }
    s
}

fn attention_ref(q: &Array2<f64>, k: &Array2<f64>, v: &Array2<f64>, causal: bool) -> Array2<f64> {
    let mut s = q.dot(&k.t()) / (q.ncols() as f64).sqrt();
    if causal {
        for ((i, j), x) in s.indexed_iter_mut() {
            if j > i {
                *x = f64::NEG_INFINITY;
            }
        }
    }
    softmax_rows(s).dot(v)
}

/// Runs `std::module::function` on f64 inputs in both dtypes and compares with `expected`.
fn check(module: &str, function: &str, inputs: &[Array2<f64>], expected: &Array2<f64>) {
    let m = Module::stdlib(module).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let f = m.function(function).unwrap_or_else(|e| panic!("{e}"));
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 2e-5)] {
        let tensors: Vec<Tensor> = inputs.iter().map(|a| Tensor::F64(a.clone().into_dyn()).cast(dtype)).collect();
        let opts = CallOptions { dtype: Some(dtype), ..CallOptions::default() };
        let out = f.call_tensors(&tensors, &opts).unwrap_or_else(|e| panic!("{}", e.render(false)));
        assert_eq!(out[0].dtype(), dtype);
        let got: ArrayD<f64> = out[0].to_f64();
        assert_eq!(got.shape(), expected.shape(), "{module}::{function} in {dtype}");
        let scale = expected.iter().fold(1.0f64, |a, b| a.max(b.abs()));
        let err = got.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err <= tol * scale, "{module}::{function} in {dtype}: max error {err:e} over {tol:e}");
    }
}

#[test]
fn attention_softmax() {
    for (n, m, d, e) in [(7, 5, 3, 4), (1, 1, 1, 1), (16, 9, 8, 2)] {
        let (q, k, v) = (random(n, d, 1), random(m, d, 2), random(m, e, 3));
        check("attention", "softmax", &[q.clone(), k.clone(), v.clone()], &attention_ref(&q, &k, &v, false));
    }
}

#[test]
fn attention_causal() {
    for (n, d, e) in [(6, 3, 2), (1, 4, 4), (12, 8, 5)] {
        let (q, k, v) = (random(n, d, 4), random(n, d, 5), random(n, e, 6));
        check("attention", "causal", &[q.clone(), k.clone(), v.clone()], &attention_ref(&q, &k, &v, true));
    }
}

/// Every stdlib module checks cleanly, without warnings, and every function has a test.
#[test]
fn stdlib_modules_check_without_warnings() {
    let tested = ["attention::softmax", "attention::causal"];
    for name in tessera_compiler::stdlib::names() {
        let m = Module::stdlib(name).unwrap_or_else(|e| panic!("{}", e.render(false)));
        assert!(m.warnings().is_empty(), "std::{name}:\n{}", m.render_warnings(false));
        for f in m.function_names() {
            let full = format!("{name}::{f}");
            assert!(tested.contains(&full.as_str()), "{full} has no reference test");
        }
    }
}
