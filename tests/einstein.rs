//! The summation rule, differentially: the programs of `tests/cases/einstein_*.tsr` run on
//! every backend and must equal what the formula means on paper (Einstein's convention per
//! top-level additive term), computed here directly with ndarray. Under the old rule
//! (one sum over the whole right side) every one of these but the masked scores differs.

use ndarray::{Array, Array1, Array2, ArrayD, Axis, Ix2};
use tessera::{Backend, CallOptions, DType, Module};

const RESIDUAL: &str = include_str!("cases/einstein_residual.tsr");
const BIAS: &str = include_str!("cases/einstein_bias.tsr");
const LORA: &str = include_str!("cases/einstein_lora.tsr");
const GALORE: &str = include_str!("cases/einstein_galore.tsr");
const MASKED: &str = include_str!("cases/einstein_masked.tsr");
const TERMS: &str = include_str!("cases/einstein_terms.tsr");

/// Deterministic values in [-1, 1) that differ per call (`seed`) and per element.
fn fill<D: ndarray::Dimension>(shape: D, seed: u64) -> Array<f64, D> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    Array::from_shape_simple_fn(shape, || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    })
}

fn mat(r: usize, c: usize, seed: u64) -> Array2<f64> {
    fill(Ix2(r, c), seed)
}

fn vec1(n: usize, seed: u64) -> Array1<f64> {
    fill(ndarray::Ix1(n), seed)
}

fn scalar(v: f64) -> ArrayD<f64> {
    ndarray::arr0(v).into_dyn()
}

/// Equal up to rounding; infinities must match exactly.
fn assert_close(got: &ArrayD<f64>, want: &ArrayD<f64>, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (k, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        let ok = if w.is_infinite() { g == w } else { (g - w).abs() <= 1e-9 * (1.0 + w.abs()) };
        assert!(ok, "{what}: element {k} is {g}, want {w}");
    }
}

/// Runs `name` of `src` (checked without any warning) on the JIT, the loop interpreter
/// and the reference evaluator in f64, and compares each with `want`. Returns the number
/// of backends compared.
fn check(src: &str, name: &str, inputs: &[ArrayD<f64>], want: &ArrayD<f64>) -> usize {
    let m = Module::from_source(src).unwrap_or_else(|e| panic!("{name}: {}", e.render(false)));
    assert!(m.warnings().is_empty(), "{name} warns:\n{}", m.render_warnings(false));
    let f = m.function(name).expect("function exists");
    let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
    let mut compared = 0;
    for backend in Backend::executors().into_iter().chain([Backend::Reference]) {
        let opts = CallOptions { backend, dtype: Some(DType::F64), ..CallOptions::default() };
        let out = f.call_with(&views, &opts).unwrap_or_else(|e| panic!("{name} on {}: {e}", backend.name()));
        assert_eq!(out.len(), 1, "{name}: one output");
        assert_close(&out[0], want, &format!("{name} on {}", backend.name()));
        compared += 1;
    }
    compared
}

/// Backends each call is compared on: every executor of the build and the reference.
fn compared() -> usize {
    Backend::executors().len() + 1
}

/// Sizes small, odd and large enough for the JIT's GEMM and tiling paths.
const SIZES: [(usize, usize, usize); 4] = [(1, 1, 1), (2, 3, 5), (9, 5, 3), (67, 33, 17)];

#[test]
fn residual_adds_x_once() {
    let mut ran = 0;
    for (s, &(n, d, h)) in SIZES.iter().enumerate() {
        let s = s as u64 * 10;
        let (x, a, wo) = (mat(n, d, s), mat(n, h, s + 1), mat(h, d, s + 2));
        let want = &x + &a.dot(&wo);
        let ins = [x.into_dyn(), a.into_dyn(), wo.into_dyn()];
        ran += check(RESIDUAL, "residual", &ins, &want.into_dyn());
    }
    assert_eq!(ran, compared() * SIZES.len());
}

#[test]
fn bias_is_added_once() {
    let mut ran = 0;
    for (s, &(n, d, o)) in SIZES.iter().enumerate() {
        let s = s as u64 * 10;
        let (x, w, b) = (mat(n, d, s), mat(d, o, s + 1), vec1(o, s + 2));
        let xw = x.dot(&w);
        let linear = &xw + &b;
        let affine = b.clone() - &xw + 1.0;
        let ins = [x.into_dyn(), w.into_dyn(), b.into_dyn()];
        ran += check(BIAS, "linear", &ins, &linear.into_dyn());
        ran += check(BIAS, "affine", &ins, &affine.into_dyn());
    }
    assert_eq!(ran, 2 * compared() * SIZES.len());
}

#[test]
fn lora_sums_each_term_over_its_own_indices() {
    let mut ran = 0;
    for (s, &(n, din, r)) in SIZES.iter().enumerate() {
        let s = s as u64 * 10;
        let dout = din + 2;
        let (x, w, b, a) = (mat(n, din, s), mat(din, dout, s + 1), mat(din, r, s + 2), mat(r, dout, s + 3));
        let alpha = 0.375;
        let want = x.dot(&w) + x.dot(&b).dot(&a) * alpha;
        let ins = [x.into_dyn(), w.into_dyn(), b.into_dyn(), a.into_dyn(), scalar(alpha)];
        ran += check(LORA, "lora", &ins, &want.into_dyn());
    }
    assert_eq!(ran, compared() * SIZES.len());
}

#[test]
fn galore_takes_w_once() {
    let mut ran = 0;
    for (s, &(m, n, r)) in SIZES.iter().enumerate() {
        let s = s as u64 * 10;
        let (w, p, nn) = (mat(m, n, s), mat(m, r, s + 1), mat(r, n, s + 2));
        let lr = 0.125;
        let want = &w - &(p.dot(&nn) * lr);
        let ins = [w.into_dyn(), p.into_dyn(), nn.into_dyn(), scalar(lr)];
        ran += check(GALORE, "galore", &ins, &want.into_dyn());
    }
    assert_eq!(ran, compared() * SIZES.len());
}

#[test]
fn masked_scores_and_a_bias_added_once() {
    let mut ran = 0;
    for (s, &(n, d, _)) in SIZES.iter().enumerate() {
        let s = s as u64 * 10;
        let (q, k, bias) = (mat(n, d, s), mat(n, d, s + 1), mat(n, n, s + 2));
        let qk = q.dot(&k.t());
        let causal = Array2::from_shape_fn((n, n), |(i, j)| {
            if j <= i {
                qk[[i, j]] / (d as f64).sqrt()
            } else {
                f64::NEG_INFINITY
            }
        });
        let biased = Array2::from_shape_fn((n, n), |(i, j)| if j <= i { qk[[i, j]] + bias[[i, j]] } else { f64::NEG_INFINITY });
        ran += check(MASKED, "causal_scores", &[q.clone().into_dyn(), k.clone().into_dyn()], &causal.into_dyn());
        let ins = [q.into_dyn(), k.into_dyn(), bias.into_dyn()];
        ran += check(MASKED, "biased_scores", &ins, &biased.into_dyn());
    }
    assert_eq!(ran, 2 * compared() * SIZES.len());
}

#[test]
fn how_terms_split() {
    // Smaller than SIZES: some of these run as scalar loop nests on the interpreter.
    let sizes = [(1, 1, 1), (2, 3, 5), (9, 5, 3), (23, 13, 7)];
    let mut ran = 0;
    for (s, &(n, m, k)) in sizes.iter().enumerate() {
        let s = s as u64 * 10;
        let a3 = fill(ndarray::Ix3(n, m, k), s);
        let b3 = fill(ndarray::Ix3(n, k, m), s + 1);
        let same = Array1::from_shape_fn(n, |i| {
            let mut t = 0.0;
            for j in 0..m {
                for l in 0..k {
                    t += a3[[i, j, l]] + b3[[i, l, j]];
                }
            }
            t
        });
        ran += check(TERMS, "same_set", &[a3.into_dyn(), b3.into_dyn()], &same.into_dyn());

        let (a, c2, b, c) = (mat(n, m, s + 2), mat(n, m, s + 3), vec1(m, s + 4), vec1(n, s + 5));
        let rows = a.sum_axis(Axis(1));
        ran += check(TERMS, "constant_term", &[a.clone().into_dyn()], &(&rows + 1.0).into_dyn());
        let neg = -(a.dot(&b) + &c);
        ran += check(TERMS, "negated_sum", &[a.clone().into_dyn(), b.clone().into_dyn(), c.clone().into_dyn()], &neg.into_dyn());
        let prod = (&a + &c2).dot(&b);
        ran += check(TERMS, "product_of_a_sum", &[a.clone().into_dyn(), c2.into_dyn(), b.clone().into_dyn()], &prod.into_dyn());
        let z = Array1::from_shape_fn(n, |i| (0..m).map(|j| (a[[i, j]] - c[i]).exp()).sum());
        ran += check(TERMS, "inside_a_call", &[a.clone().into_dyn(), c.clone().into_dyn()], &z.into_dyn());
        let bm = mat(m, n, s + 6);
        let y = a.dot(&b) + a.dot(&bm).dot(&a).dot(&b) - &rows;
        ran += check(TERMS, "shared_index", &[a.clone().into_dyn(), bm.into_dyn(), b.clone().into_dyn()], &y.into_dyn());
        let weighted = Array1::from_shape_fn(n, |i| (0..m).map(|j| a[[i, j]] * j as f64).sum::<f64>() + c[i]);
        ran += check(TERMS, "bare_index", &[a.clone().into_dyn(), c.clone().into_dyn()], &weighted.into_dyn());
        ran += check(TERMS, "explicit_sums", &[a.into_dyn(), c.clone().into_dyn()], &(&rows + &c).into_dyn());
    }
    assert_eq!(ran, compared() * 8 * sizes.len());
}
