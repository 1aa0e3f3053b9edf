//! Evaluator tests: hand-computed values, comparisons with the brute-force evaluator of
//! `testutil`, and the error paths.

use super::testutil::{naive, Builder, Rng};
use super::*;
use crate::tir::{bind_dims, Builtin, Function};
use ndarray::{arr1, arr2, s, Array2, ArrayD, Axis, IxDyn};
use tessera_runtime::DType;

fn bind(f: &Function, inputs: &[ArrayD<f64>], explicit: &[(&str, u64)]) -> Bindings {
    let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).collect();
    let explicit: Vec<(String, u64)> = explicit.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    bind_dims(f, &shapes, &explicit).unwrap_or_else(|e| panic!("binding failed: {e}"))
}

fn run(f: &Function, inputs: &[ArrayD<f64>], explicit: &[(&str, u64)]) -> Vec<ArrayD<f64>> {
    let b = bind(f, inputs, explicit);
    let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
    evaluate(f, &b, &views, &EvalOptions::default()).unwrap_or_else(|e| panic!("evaluation failed: {e}"))
}

/// Asserts equal shapes and elementwise agreement within a relative tolerance; equal
/// infinities and NaN against NaN count as agreement.
fn assert_close(got: &ArrayD<f64>, want: &ArrayD<f64>, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "shapes differ");
    let scale = want.iter().filter(|v| v.is_finite()).fold(1.0f64, |m, v| m.max(v.abs()));
    for (k, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * scale;
        assert!(ok, "element {k}: got {g}, want {w}\ngot:\n{got}\nwant:\n{want}");
    }
}

/// Evaluates `f` and compares every output with the brute-force evaluator.
fn check_naive(f: &Function, inputs: &[ArrayD<f64>], explicit: &[(&str, u64)]) {
    let got = run(f, inputs, explicit);
    let want = naive(f, &bind(f, inputs, explicit), inputs);
    for (g, w) in got.iter().zip(&want) {
        assert_close(g, w, 1e-12);
    }
}

fn matmul_fn() -> Function {
    Builder::new("matmul")
        .input("A", "m, k")
        .input("B", "k, n")
        .output("C", "m, n")
        .stmt("C[i, j] = A[i, l] * B[l, j]")
        .build()
}

#[test]
fn matmul_by_hand() {
    let a = arr2(&[[1., 2., 3.], [4., 5., 6.]]).into_dyn();
    let b = arr2(&[[7., 8.], [9., 10.], [11., 12.]]).into_dyn();
    let out = run(&matmul_fn(), &[a, b], &[]);
    assert_eq!(out[0], arr2(&[[58., 64.], [139., 154.]]).into_dyn());
}

#[test]
fn matmul_in_f32() {
    let f = matmul_fn();
    let a = arr2(&[[1f32, 2., 3.], [4., 5., 6.]]).into_dyn();
    let b = arr2(&[[7f32, 8.], [9., 10.], [11., 12.]]).into_dyn();
    let bd = bind_dims(&f, &[a.shape(), b.shape()], &[]).unwrap();
    let out = evaluate(&f, &bd, &[a.view(), b.view()], &EvalOptions::default()).unwrap();
    assert_eq!(out[0], arr2(&[[58f32, 64.], [139., 154.]]).into_dyn());
}

#[test]
fn transpose() {
    let f = Builder::new("t").input("A", "m, n").output("T", "n, m").stmt("T[j, i] = A[i, j]").build();
    let a = arr2(&[[1., 2., 3.], [4., 5., 6.]]).into_dyn();
    let out = run(&f, &[a], &[]);
    assert_eq!(out[0], arr2(&[[1., 4.], [2., 5.], [3., 6.]]).into_dyn());
}

#[test]
fn trace_and_diagonal() {
    let f = Builder::new("diag")
        .input("A", "n, n")
        .output("t", "")
        .output("d", "n")
        .stmt("t = A[i, i]")
        .stmt("d[i] = A[i, i]")
        .build();
    let a = arr2(&[[1., 2., 3.], [4., 5., 6.], [7., 8., 9.]]).into_dyn();
    let out = run(&f, &[a], &[]);
    assert_eq!(out[0].shape(), &[] as &[usize]);
    assert_eq!(out[0][IxDyn(&[])], 15.0);
    assert_eq!(out[1], arr1(&[1., 5., 9.]).into_dyn());
}

#[test]
fn outer_product() {
    let f =
        Builder::new("outer").input("a", "m").input("b", "n").output("O", "m, n").stmt("O[i, j] = a[i] * b[j]").build();
    let out = run(&f, &[arr1(&[1., 2.]).into_dyn(), arr1(&[3., 4., 5.]).into_dyn()], &[]);
    assert_eq!(out[0], arr2(&[[3., 4., 5.], [6., 8., 10.]]).into_dyn());
}

#[test]
fn broadcast_to_an_index_only_on_the_left() {
    let f = Builder::new("bc").input("a", "m").output("O", "m, n").stmt("O[i, j] = a[i]").build();
    let out = run(&f, &[arr1(&[1., 2.]).into_dyn()], &[("n", 3)]);
    assert_eq!(out[0], arr2(&[[1., 1., 1.], [2., 2., 2.]]).into_dyn());
}

#[test]
fn batched_matmul() {
    let f = Builder::new("bmm")
        .input("A", "b, m, k")
        .input("B", "b, k, n")
        .output("C", "b, m, n")
        .stmt("C[p, i, j] = A[p, i, l] * B[p, l, j]")
        .build();
    let mut rng = Rng::new(1);
    let (a, b) = (rng.array(&[3, 2, 4]), rng.array(&[3, 4, 5]));
    let out = run(&f, &[a.clone(), b.clone()], &[]);
    for p in 0..3 {
        let a2 = a.index_axis(Axis(0), p).into_dimensionality::<ndarray::Ix2>().unwrap();
        let b2 = b.index_axis(Axis(0), p).into_dimensionality::<ndarray::Ix2>().unwrap();
        let want = a2.dot(&b2).into_dyn();
        assert_close(&out[0].index_axis(Axis(0), p).to_owned(), &want, 1e-12);
    }
}

#[test]
fn kronecker_product_through_grouped_indices() {
    let f = Builder::new("kron")
        .input("A", "m1, n1")
        .input("B", "m2, n2")
        .output("K", "m1*m2, n1*n2")
        .stmt("K[(i, k), (j, l)] = A[i, j] * B[k, l]")
        .build();
    let a = arr2(&[[1., 2.], [3., 4.]]);
    let b = arr2(&[[0., 5., 1.], [6., 7., 2.]]);
    let out = run(&f, &[a.clone().into_dyn(), b.clone().into_dyn()], &[]);
    // The explicit Kronecker product: block (i, j) is a[i, j] * b.
    let mut want = Array2::<f64>::zeros((4, 6));
    for i in 0..2 {
        for j in 0..2 {
            want.slice_mut(s![i * 2..i * 2 + 2, j * 3..j * 3 + 3]).assign(&(&b * a[[i, j]]));
        }
    }
    assert_eq!(out[0], want.into_dyn());
    // Row 3 is (i, k) = (1, 1), column 1 is (j, l) = (0, 1).
    assert_eq!(out[0][[3, 1]], 3.0 * 7.0);
}

#[test]
fn flat_vector_read_as_a_matrix() {
    let f = Builder::new("rows")
        .input("x", "q*s")
        .output("y", "q")
        .output("M", "q, s")
        .stmt("y[j] = x[(j, l)]")
        .stmt("M[j, l] = x[(j, l)]")
        .build();
    let x = arr1(&[1., 2., 3., 4., 5., 6.]).into_dyn();
    let out = run(&f, &[x], &[("q", 2)]);
    assert_eq!(out[0], arr1(&[6., 15.]).into_dyn());
    assert_eq!(out[1], arr2(&[[1., 2., 3.], [4., 5., 6.]]).into_dyn());
}

#[test]
fn row_max() {
    let f = Builder::new("rowmax").input("A", "m, n").output("M", "m").stmt("M[i] max= A[i, j]").build();
    let a = arr2(&[[1., 7., 3.], [-4., -5., -6.]]).into_dyn();
    assert_eq!(run(&f, &[a], &[])[0], arr1(&[7., -4.]).into_dyn());
}

#[test]
fn row_min_of_a_product() {
    let f = Builder::new("rowmin")
        .input("A", "m, n")
        .input("B", "m, n")
        .output("M", "m")
        .stmt("M[i] min= A[i, j] * B[i, j]")
        .build();
    let a = arr2(&[[1., 7., 3.], [-4., -5., -6.]]).into_dyn();
    let b = arr2(&[[2., 1., -1.], [1., 1., 1.]]).into_dyn();
    assert_eq!(run(&f, &[a, b], &[])[0], arr1(&[-3., -6.]).into_dyn());
}

#[test]
fn softmax_over_rows() {
    let f = Builder::new("softmax")
        .input("A", "m, n")
        .temp("M", "m")
        .output("P", "m, n")
        .stmt("M[i] max= A[i, j]")
        .stmt("P[i, j] = exp(A[i, j] - M[i]) / sum[k](exp(A[i, k] - M[i]))")
        .build();
    let a = arr2(&[[1., 2., 3.], [0., 0., 1000.]]).into_dyn();
    let out = run(&f, &[a], &[]);
    let z = 1.0 + 1f64.exp() + 2f64.exp();
    let want = arr2(&[[1.0 / z, 1f64.exp() / z, 2f64.exp() / z], [0., 0., 1.]]).into_dyn();
    assert_close(&out[0], &want, 1e-15);
}

#[test]
fn causal_mask_with_select() {
    let f = Builder::new("mask")
        .input("A", "n, n")
        .output("O", "n, n")
        .output("S", "n")
        .stmt("O[i, j] = select(j <= i, A[i, j], 0.0)")
        .stmt("S[i] = sum[j](select(j > i || !(j != i) && i > 0, 1.0, 0.0) + 0.0 * A[i, j])")
        .build();
    let a = arr2(&[[1., 2., 3.], [4., 5., 6.], [7., 8., 9.]]).into_dyn();
    let out = run(&f, &[a], &[]);
    assert_eq!(out[0], arr2(&[[1., 0., 0.], [4., 5., 0.], [7., 8., 9.]]).into_dyn());
    // Row 0: j in {1, 2}; row 1: j in {1, 2}; row 2: j == 2.
    assert_eq!(out[1], arr1(&[2., 2., 1.]).into_dyn());
}

#[test]
fn indices_and_sizes_as_values_with_no_inputs() {
    let f = Builder::new("iota").output("O", "n, m").stmt("O[i, j] = 10 * i + j + n / m").build();
    let out = run(&f, &[], &[("n", 2), ("m", 4)]);
    assert_eq!(out[0], arr2(&[[0.5, 1.5, 2.5, 3.5], [10.5, 11.5, 12.5, 13.5]]).into_dyn());
}

#[test]
fn every_builtin_matches_its_reference() {
    let a = arr1(&[-1.5, -0.2, 0.0, 0.3, 2.0]).into_dyn();
    let b = arr1(&[2.0, 0.5, 3.0, -1.0, 2.0]).into_dyn();
    for fun in Builtin::ALL {
        let text = if fun.arity() == 1 {
            format!("O[i] = {}(a[i])", fun.name())
        } else {
            format!("O[i] = {}(a[i], b[i])", fun.name())
        };
        let f = Builder::new("builtin").input("a", "n").input("b", "n").output("O", "n").stmt(&text).build();
        let out = run(&f, &[a.clone(), b.clone()], &[]);
        let want = ndarray::Zip::from(&a).and(&b).map_collect(|&x, &y| fun.apply(x, y));
        assert_close(&out[0], &want, 0.0);
    }
    // A few by hand, to pin the reference itself.
    let f = Builder::new("b")
        .input("a", "n")
        .input("b", "n")
        .output("O", "n")
        .stmt("O[i] = relu(a[i]) + max(a[i], b[i]) * abs(b[i])")
        .build();
    let out = run(&f, &[a, b], &[]);
    assert_close(&out[0], &arr1(&[4.0, 0.25, 9.0, 0.3 + 0.3, 2.0 + 4.0]).into_dyn(), 1e-15);
}

#[test]
fn empty_ranges() {
    let f = Builder::new("empty")
        .input("A", "m, k")
        .input("B", "k, n")
        .output("S", "m")
        .output("X", "m")
        .output("N", "m")
        .output("C", "m, n")
        .stmt("S[i] = A[i, j]")
        .stmt("X[i] max= A[i, j]")
        .stmt("N[i] = min[j](A[i, j])")
        .stmt("C[i, j] = A[i, l] * B[l, j]")
        .build();
    let a = ArrayD::<f64>::zeros(IxDyn(&[2, 0]));
    let b = ArrayD::<f64>::zeros(IxDyn(&[0, 3]));
    let out = run(&f, &[a, b], &[]);
    assert_eq!(out[0], arr1(&[0., 0.]).into_dyn());
    assert_eq!(out[1], arr1(&[f64::NEG_INFINITY; 2]).into_dyn());
    assert_eq!(out[2], arr1(&[f64::INFINITY; 2]).into_dyn());
    assert_eq!(out[3], ArrayD::<f64>::zeros(IxDyn(&[2, 3])));

    // Empty outputs.
    let a = ArrayD::<f64>::zeros(IxDyn(&[0, 4]));
    let b = ArrayD::<f64>::zeros(IxDyn(&[4, 3]));
    let out = run(&f, &[a, b], &[]);
    assert_eq!(out[0].shape(), &[0]);
    assert_eq!(out[3].shape(), &[0, 3]);
}

#[test]
fn chain_of_300_matrices() {
    const N: usize = 300;
    let mut b = Builder::new("chain");
    for k in 0..N {
        b = b.input(&format!("A{k}"), "n, n");
    }
    b = b.output("Y", "n, n");
    let factors: Vec<String> = (0..N).map(|k| format!("A{k}[i{k}, i{}]", k + 1)).collect();
    let f = b.stmt(&format!("Y[i0, i{N}] = {}", factors.join(" * "))).build();
    let mut rng = Rng::new(7);
    let mats: Vec<ArrayD<f64>> = (0..N).map(|_| rng.array(&[4, 4]) * 0.6).collect();
    let bd = bind(&f, &mats, &[]);
    let views: Vec<_> = mats.iter().map(|a| a.view()).collect();
    let start = std::time::Instant::now();
    let out = evaluate(&f, &bd, &views, &EvalOptions::default()).unwrap();
    let took = start.elapsed();
    assert!(took.as_secs_f64() < 0.5, "300-matrix chain took {took:?}");
    let mut want = Array2::<f64>::eye(4);
    for m in &mats {
        want = want.dot(&m.view().into_dimensionality::<ndarray::Ix2>().unwrap());
    }
    assert_close(&out[0], &want.into_dyn(), 1e-10);
}

#[test]
fn memory_limit_on_an_output() {
    let f = matmul_fn();
    let a = ArrayD::<f64>::ones(IxDyn(&[4, 4]));
    let bd = bind(&f, &[a.clone(), a.clone()], &[]);
    let err = evaluate(&f, &bd, &[a.view(), a.view()], &EvalOptions { memory_limit: 100 }).unwrap_err();
    assert_eq!(err, EvalError::MemoryLimit { what: "output C".into(), shape: "[4, 4]".into(), bytes: 128, limit: 100 });
    assert!(err.to_string().starts_with("output C needs 128 bytes ([4, 4]), over the memory limit of 100 bytes"));
}

#[test]
fn memory_limit_on_an_intermediate() {
    let f = Builder::new("total").input("A", "n, n").output("s", "").stmt("s = exp(A[i, j])").build();
    let a = ArrayD::<f64>::ones(IxDyn(&[4, 4]));
    let bd = bind(&f, std::slice::from_ref(&a), &[]);
    match evaluate(&f, &bd, &[a.view()], &EvalOptions { memory_limit: 100 }) {
        Err(EvalError::MemoryLimit { what, bytes, limit, .. }) => {
            assert_eq!(what, "intermediate of statement `s = sum[i, j] exp(A[i, j])`");
            assert_eq!((bytes, limit), (128, 100));
        }
        other => panic!("expected a memory-limit error, got {other:?}"),
    }
    // A huge broadcast is refused before anything is allocated.
    let f = Builder::new("huge").input("a", "n").output("O", "n, m, m").stmt("O[i, j, k] = a[i]").build();
    let a = ArrayD::<f64>::ones(IxDyn(&[2]));
    let bd = bind(&f, std::slice::from_ref(&a), &[("m", 1 << 40)]);
    let err = evaluate(&f, &bd, &[a.view()], &EvalOptions::default()).unwrap_err();
    assert!(matches!(err, EvalError::MemoryLimit { bytes: u64::MAX, .. }), "{err:?}");
}

#[test]
fn non_contiguous_inputs() {
    let f = matmul_fn();
    let mut rng = Rng::new(3);
    let big = rng.array(&[6, 5]);
    let b = rng.array(&[5, 4]);
    let want = |a: &ArrayD<f64>| naive(&f, &bind(&f, &[a.to_owned(), b.clone()], &[]), &[a.to_owned(), b.clone()]);
    let views = [
        big.slice(s![..;2, ..]).into_dyn(),
        big.slice(s![..;-1, ..]).into_dyn(),
        big.slice(s![1..;2, ..;-1]).into_dyn(),
    ];
    for a in views {
        assert!(!a.is_standard_layout());
        let bd = bind(&f, &[a.to_owned(), b.clone()], &[]);
        let out = evaluate(&f, &bd, &[a.clone(), b.view()], &EvalOptions::default()).unwrap();
        assert_close(&out[0], &want(&a.to_owned())[0], 1e-12);
    }
    // A transposed view as the first input.
    let at = rng.array(&[5, 3]);
    let a = at.t();
    let bd = bind(&f, &[a.to_owned(), b.clone()], &[]);
    let out = evaluate(&f, &bd, &[a.clone(), b.view()], &EvalOptions::default()).unwrap();
    assert_close(&out[0], &want(&a.to_owned())[0], 1e-12);
}

#[test]
fn input_errors() {
    let f = matmul_fn();
    let a = ArrayD::<f64>::ones(IxDyn(&[2, 3]));
    let b = ArrayD::<f64>::ones(IxDyn(&[3, 4]));
    let bd = bind(&f, &[a.clone(), b.clone()], &[]);
    let opts = EvalOptions::default();
    let err = evaluate(&f, &bd, &[a.view()], &opts).unwrap_err();
    assert_eq!(err.to_string(), "fn matmul takes 2 input(s) (A: f32[m, k], B: f32[k, n]) but 1 array(s) were given");
    let c = ArrayD::<f64>::ones(IxDyn(&[4, 4]));
    let err = evaluate(&f, &bd, &[a.view(), c.view()], &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input B: f32[k, n] should have shape [3, 4] under the bound dims but the array given has shape [4, 4]"
    );
    let err = evaluate(&f, &Bindings::new(3), &[a.view(), b.view()], &opts).unwrap_err();
    assert_eq!(err.to_string(), "dim m is not bound; bind it from the inputs or give it explicitly");
}

/// Programs compared with the brute-force evaluator on random data, over several sizes
/// including 0 and 1.
fn programs() -> Vec<(Function, Vec<&'static str>)> {
    let sq = |name: &str, stmt: &str| {
        (
            Builder::new(name)
                .input("A", "n, n")
                .input("B", "n, n")
                .input("x", "n")
                .output("Y", "n")
                .stmt(stmt)
                .build(),
            vec!["n, n", "n, n", "n"],
        )
    };
    vec![
        sq("matvec_minus", "Y[i] = A[i, j] * x[j] - x[i]"),
        sq("neg", "Y[i] = -(A[i, j] * x[j])"),
        sq("absent_index", "Y[i] = A[i, j] + x[i]"),
        sq("inline_inside_product", "Y[i] = A[i, j] * sum[k](B[j, k])"),
        sq("shadowed", "Y[i] = A[i, j] * sum[j](x[j])"),
        sq("divided", "Y[i] = A[i, j] * B[j, i] / (x[i] + 3.0)"),
        sq("divided_by_summed", "Y[i] = A[i, j] / (B[i, j] * B[i, j] + 1.0)"),
        sq("dot_rows", "Y[i] = sum[j](A[i, j] * B[i, j]) / 2.0"),
        sq("three_sharing", "Y[i] = A[i, k] * B[k, j] * x[k]"),
        sq("diag_times", "Y[i] = A[i, i] * x[i] + B[j, j]"),
        sq("max_of_product", "Y[i] max= A[i, j] * B[j, i]"),
        sq("min_of_quotient", "Y[i] min= A[i, j] / (B[i, j] + 2.0)"),
        sq("count", "Y[i] = x[i] + sum[j](x[j] * 0.0 + 1.0)"),
        sq("nested_max", "Y[i] = max[j](A[i, j] + sum[k](B[j, k] * x[k]))"),
        sq("select_sum", "Y[i] = select(i < j, A[i, j], B[j, i]) * x[j]"),
        sq("index_weights", "Y[i] = A[i, j] * j + n"),
        (
            Builder::new("normalise")
                .input("x", "n")
                .temp("s", "")
                .output("Y", "n")
                .stmt("s = x[i] * x[i]")
                .stmt("Y[i] = x[i] / sqrt(s + 1e-3) + s")
                .build(),
            vec!["n"],
        ),
        (
            Builder::new("regroup")
                .input("A", "n, m")
                .input("x", "m")
                .temp("T", "n*m")
                .temp("U", "m, n")
                .output("Y", "m")
                .stmt("T[(i, j)] = A[i, j] * 2")
                .stmt("U[j, i] = T[(i, j)] + x[j]")
                .stmt("Y[j] max= U[j, i] - sum[k](U[k, i])")
                .build(),
            vec!["n, m", "m"],
        ),
        (
            Builder::new("trace_of_product")
                .input("A", "n, m")
                .input("B", "m, p")
                .input("C", "p, n")
                .output("t", "")
                .stmt("t = A[i, j] * B[j, k] * C[k, i]")
                .build(),
            vec!["n, m", "m, p", "p, n"],
        ),
        (
            Builder::new("kron_matvec")
                .input("A", "m1, n1")
                .input("B", "m2, n2")
                .input("x", "n1*n2")
                .output("y", "m1*m2")
                .stmt("y[(i, k)] = A[i, j] * B[k, l] * x[(j, l)]")
                .build(),
            vec!["m1, n1", "m2, n2", "n1*n2"],
        ),
        (
            Builder::new("tensor_attention")
                .input("Q", "n, d")
                .input("K1", "n, d")
                .input("K2", "n, d")
                .input("V1", "n, d")
                .input("V2", "n, d")
                .temp("S", "n, n, n")
                .temp("M", "n")
                .temp("P", "n, n, n")
                .temp("Z", "n")
                .output("O", "n, d")
                .stmt("S[i, j, l] = Q[i, a] * K1[j, a] * K2[l, a] / sqrt(d)")
                .stmt("M[i] max= S[i, j, l]")
                .stmt("P[i, j, l] = exp(S[i, j, l] - M[i])")
                .stmt("Z[i] = P[i, j, l]")
                .stmt("O[i, b] = P[i, j, l] * V1[j, b] * V2[l, b] / Z[i]")
                .build(),
            vec!["n, d"; 5],
        ),
    ]
}

#[test]
fn programs_match_the_brute_force_evaluator() {
    let mut rng = Rng::new(11);
    for (f, shapes) in programs() {
        for size in [0usize, 1, 2, 3] {
            // Every dim gets `size`, except that the second dim of a shape gets one more so
            // that mixed-up axes show.
            let dims: Vec<(String, usize)> =
                f.dims.iter().enumerate().map(|(k, d)| (d.name.clone(), size + k % 2)).collect();
            let value = |name: &str| dims.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v);
            let inputs: Vec<ArrayD<f64>> = shapes
                .iter()
                .map(|s| {
                    let shape: Vec<usize> =
                        s.split(',').map(|p| p.trim().split('*').map(|x| value(x.trim())).product()).collect();
                    rng.array(&shape)
                })
                .collect();
            let explicit: Vec<(&str, u64)> = dims.iter().map(|(n, v)| (n.as_str(), *v as u64)).collect();
            check_naive(&f, &inputs, &explicit);
        }
    }
}

#[test]
fn attention_in_f32_matches_f64() {
    let (f, _) = programs().pop().unwrap();
    let mut rng = Rng::new(5);
    let inputs: Vec<ArrayD<f64>> = (0..5).map(|_| rng.array(&[4, 3])).collect();
    let want = run(&f, &inputs, &[]);
    let inputs32: Vec<ArrayD<f32>> = inputs.iter().map(|a| a.mapv(|v| v as f32)).collect();
    let bd = bind(&f, &inputs, &[]);
    let views: Vec<_> = inputs32.iter().map(|a| a.view()).collect();
    let out = evaluate(&f, &bd, &views, &EvalOptions::default()).unwrap();
    assert_close(&out[0].mapv(f64::from), &want[0], 1e-5);
}

#[test]
fn f32_function_dtype_is_independent_of_the_element_type() {
    let f = Builder::new("id").dtype(DType::F64).input("a", "n").output("b", "n").stmt("b[i] = a[i] * 2").build();
    let a = arr1(&[1f32, 2.]).into_dyn();
    let bd = bind_dims(&f, &[a.shape()], &[]).unwrap();
    let out = evaluate(&f, &bd, &[a.view()], &EvalOptions::default()).unwrap();
    assert_eq!(out[0], arr1(&[2f32, 4.]).into_dyn());
}

#[test]
fn a_signature_id_out_of_range_is_an_internal_error() {
    let mut f = matmul_fn();
    f.outputs.push(crate::tir::TensorId(99));
    let a = ArrayD::<f64>::ones(IxDyn(&[2, 2]));
    let err = evaluate(&f, &Bindings::new(3), &[a.view(), a.view()], &EvalOptions::default()).unwrap_err();
    assert!(matches!(err, EvalError::Internal(_)), "{err:?}");
    assert!(matches!(bind_dims(&f, &[&[2, 2], &[2, 2]], &[]), Err(crate::tir::BindError::Internal(_))));
}

#[test]
fn outputs_listed_twice_and_read_later() {
    let mut f = Builder::new("twice")
        .input("a", "n")
        .output("b", "n")
        .output("c", "n")
        .stmt("b[i] = a[i] + 1")
        .stmt("c[i] = b[i] * b[i]")
        .build();
    f.outputs.push(f.outputs[0]);
    let out = run(&f, &[arr1(&[1., 2.]).into_dyn()], &[]);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], arr1(&[2., 3.]).into_dyn());
    assert_eq!(out[1], arr1(&[4., 9.]).into_dyn());
    assert_eq!(out[2], out[0]);
}
