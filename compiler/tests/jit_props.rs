//! Differential tests of code generation: random einsums and random well-typed programs
//! run on the JIT and on the loop-IR interpreter, in f32 and f64, on random sizes
//! (0 and 1 included) and on non-contiguous inputs, and are compared with the TIR
//! reference evaluator.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Slice};
use proptest::prelude::*;
use tessera_compiler::diag::FileId;
use tessera_compiler::eval::{evaluate, EvalOptions, Scalar};
use tessera_compiler::exec::Executable;
use tessera_compiler::loops::{LowerOptions, Program};
use tessera_compiler::pipeline::{self, Stage};
use tessera_compiler::Backend;
use tessera_compiler::tir::{bind_dims, Bindings, Function};
use tessera_runtime::DType;

mod common;

fn spread<T: Scalar>(a: &ArrayD<f64>) -> ArrayD<T> {
    if a.ndim() == 0 || a.shape()[0] == 0 {
        return a.mapv(T::from_f64);
    }
    let mut shape = a.shape().to_vec();
    shape[0] *= 2;
    let mut big = ArrayD::<T>::from_elem(IxDyn(&shape), T::from_f64(f64::NAN));
    big.slice_axis_mut(Axis(0), Slice::new(0, None, 2)).assign(&a.mapv(T::from_f64));
    big
}

fn close(want: &ArrayD<f64>, got: &[f64], shape: &[usize], tol: f64, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(want.shape(), shape, "{}: shape", what);
    let scale = want.iter().filter(|v| v.is_finite()).fold(1.0f64, |a, v| a.max(v.abs()));
    for (k, (a, c)) in want.iter().zip(got).enumerate() {
        // Reassociation may turn one non-finite value into another (NaN vs inf), and a
        // huge finite value into inf in f32; the algebra pass folds `0·x` to 0 assuming
        // x is finite, so a non-finite oracle value may come out finite.
        let ok = a == c || !a.is_finite() || (a - c).abs() <= tol * scale || (tol > 1e-6 && a.abs() > 1e30);
        prop_assert!(ok, "{}: element {} is {} but the oracle says {}", what, k, c, a);
    }
    Ok(())
}

fn run_all<T: Scalar>(f: &Function, b: &Bindings, lower_opts: &LowerOptions, strided: bool, tol: f64) -> Result<(), TestCaseError> {
    let mut f = f.clone();
    f.dtype = T::DTYPE;
    let ins = common::inputs(&f, b, 3);
    let views: Vec<_> = ins.iter().map(|a| a.view()).collect();
    // The oracle runs in f64 on the function as written.
    let mut f64fn = f.clone();
    f64fn.dtype = DType::F64;
    // The oracle has no reason to refuse these small programs; if it does, that is a
    // failure, not a case to skip.
    let want = evaluate(&f64fn, b, &views, &EvalOptions::default())
        .map_err(|e| TestCaseError::fail(format!("the oracle fails: {e}\n{f}")))?;
    let prog = lowered(&f, b, lower_opts).map_err(TestCaseError::fail)?;
    let typed: Vec<ArrayD<T>> = ins.iter().map(|a| if strided { spread::<T>(a) } else { a.mapv(T::from_f64) }).collect();
    let typed_views: Vec<ArrayViewD<'_, T>> = typed
        .iter()
        .map(|a| if strided && a.ndim() > 0 && a.shape()[0] > 0 { a.slice_axis(Axis(0), Slice::new(0, None, 2)) } else { a.view() })
        .collect();
    for backend in Backend::executors() {
        let exe = Executable::new(prog.clone(), backend).map_err(|e| TestCaseError::fail(format!("{e}\n{prog}")))?;
        let got = exe.run(&typed_views).map_err(|e| TestCaseError::fail(format!("{e}\n{prog}")))?;
        prop_assert_eq!(got.len(), want.len(), "{} {}: number of outputs", backend.name(), T::DTYPE.name());
        for (w, g) in want.iter().zip(&got) {
            let flat: Vec<f64> = g.iter().map(|x| Scalar::to_f64(*x)).collect();
            close(w, &flat, g.shape(), tol, &format!("{} {} on\n{}\n{}", backend.name(), T::DTYPE.name(), f, prog))?;
        }
    }
    Ok(())
}

/// The loop program of `f` through the pipeline driver (default plan options).
fn lowered(f: &Function, b: &Bindings, lower: &LowerOptions) -> Result<Program, String> {
    let opts = pipeline::Options { lower: lower.clone(), stop_after: Stage::Loops, ..Default::default() };
    let out = pipeline::compile(f, b, f.dtype, &opts).map_err(|e| format!("{e}\n{f}"))?;
    out.program.ok_or_else(|| "the pipeline stopped before the loop program".to_string())
}

fn lower_opts(bits: u8) -> LowerOptions {
    LowerOptions { gemm: bits & 1 == 0, fuse: bits & 2 == 0, ..Default::default() }
}

#[test]
fn compiled_einsums_equal_the_oracle() {
    let strategy = (common::einsum_case(0), any::<u8>(), any::<bool>());
    common::run_cases(200, strategy, |((spec, shapes), bits, strided)| {
        let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        let e = tessera_compiler::einsum::translate(&spec, &refs, DType::F64, FileId(0))
            .map_err(|d| TestCaseError::fail(format!("{spec}: {}", d.message)))?;
        run_all::<f64>(&e.function, &e.bindings, &lower_opts(bits), strided, 1e-10)?;
        run_all::<f32>(&e.function, &e.bindings, &lower_opts(bits), strided, 1e-4)
    });
}

#[test]
fn compiled_programs_equal_the_oracle() {
    let strategy = (common::typed_program(), 0usize..6, any::<u8>(), any::<bool>());
    common::run_cases(200, strategy, |(src, n, bits, strided)| {
        let (_, _, c) = pipeline::check("p.tsr", src.as_str());
        let f = c.functions.first().ok_or_else(|| TestCaseError::fail(format!("does not check:\n{src}")))?;
        let b = bind_dims(f, &[&[n, n], &[n], &[n * n], &[]], &[]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        run_all::<f64>(f, &b, &lower_opts(bits), strided, 1e-9)?;
        run_all::<f32>(f, &b, &lower_opts(bits), strided, 2e-4)
    });
}

/// Elementwise functions, reductions, selects on indices and grouped indices, at sizes
/// that exercise vector tails.
#[test]
fn builtins_reductions_and_tails() {
    let src = "fn f(x: f64[n, m], g: f64[m], y: f64[n * m]) -> (a: f64[n, m], b: f64[n], c: f64[m], d: f64[n, m]) {
        a[i, j] = exp(x[i, j]) + log(abs(x[i, j]) + 0.5) + sqrt(abs(x[i, j])) + rsqrt(abs(x[i, j]) + 1)
            + tanh(x[i, j]) + sigmoid(x[i, j]) + relu(x[i, j]) + sin(x[i, j]) + cos(x[i, j])
            + pow(abs(x[i, j]) + 0.1, g[j]) + max(x[i, j], g[j]) - min(x[i, j], 0.25) / 3
            + lmul(x[i, j], g[j]) + lmul(x[i, j], g[j], 3) - lmul(x[i, j], x[i, j], 4)
        b[i] max= select(j <= i || !(x[i, j] < 0) && g[j] != 0.5, x[i, j] * 2, -x[i, j])
        c[j] min= x[i, j] - g[j]
        d[i, j] = y[(i, j)] * i + j - sum[k](x[i, k]) / m
    }";
    let (sm, _, c) = pipeline::check("p.tsr", src);
    assert!(!c.has_errors(), "{}", tessera_compiler::diag::render_all(&c.diagnostics, &sm, false));
    let f = &c.functions[0];
    for (n, m) in [(0, 3), (1, 1), (3, 5), (7, 33), (5, 8), (2, 17)] {
        let b = bind_dims(f, &[&[n, m], &[m], &[n * m]], &[]).expect("binds");
        for bits in 0..4 {
            run_all::<f64>(f, &b, &lower_opts(bits), bits % 2 == 1, 1e-9).expect("f64");
            run_all::<f32>(f, &b, &lower_opts(bits), bits % 2 == 0, 2e-5).expect("f32");
        }
    }
}

/// A case proptest found: a fused row kernel whose scratch row feeds a `pow`.
#[test]
fn fused_rows_with_scratch() {
    let src = "fn f(A: f64[n, n], x: f64[n], y: f64[n * n], s: f64) -> B: f64[n] {
        T[i, j] = A[i, j] * (A[i, j]) + sum[q](y[(q, i)] * x[q])
        U[i] = x[i] - (T[i, j])
        B[i] = U[i] * (pow(abs(U[i]), 0.5) + min(U[i], (A[j, i]) - (A[j, i])))
    }";
    let (_, _, c) = pipeline::check("p.tsr", src);
    let f = &c.functions[0];
    for n in [1, 2, 5] {
        let b = bind_dims(f, &[&[n, n], &[n], &[n * n], &[]], &[]).expect("binds");
        for bits in 0..4 {
            run_all::<f64>(f, &b, &lower_opts(bits), false, 1e-9).expect("f64");
            run_all::<f32>(f, &b, &lower_opts(bits), true, 2e-4).expect("f32");
        }
    }
}

/// Softmax attention runs as a tile group (scores, softmax and the product with V a tile
/// of rows at a time); sizes that leave a partial last tile, in both dtypes.
#[test]
fn tiled_attention_matches_the_oracle() {
    // The standard library's attention; `run_all` runs it in each dtype.
    let src = tessera_compiler::stdlib::source("attention").expect("std::attention");
    let (sm, _, c) = pipeline::check("p.tsr", src);
    assert!(!c.has_errors(), "{}", tessera_compiler::diag::render_all(&c.diagnostics, &sm, false));
    for f in &c.functions {
        let (n, m) = (1000, if f.name == "causal" { 1000 } else { 700 });
        let shapes: [&[usize]; 3] = [&[n, 16], &[m, 16], &[m, 8]];
        let b = bind_dims(f, &shapes, &[]).expect("binds");
        let prog = lowered(f, &b, &LowerOptions::default()).expect("lowers");
        let g = prog.tiles.first().unwrap_or_else(|| panic!("no tile group in\n{prog}"));
        assert!(g.tile < n && n % g.tile != 0, "one tile or no partial tile: {g:?}");
        run_all::<f64>(f, &b, &LowerOptions::default(), false, 1e-9).expect("f64");
        run_all::<f32>(f, &b, &LowerOptions::default(), true, 1e-4).expect("f32");
    }
}

/// Contractions with a Clebsch-Gordan constant run unrolled by its nonzeros (no kernel
/// reads the constant's buffer), for every triple of degrees up to 3 and the constant in
/// each role: a summed index only, an output index, next to an index it does not have
/// that is summed too (a loop with accumulators), and as the whole statement.
#[test]
fn constants_run_unrolled_by_their_nonzeros() {
    use tessera_compiler::loops::BufKind;
    let mut triples = 0;
    for l1 in 0..=3u32 {
        for l2 in 0..=3u32 {
            for l3 in l1.abs_diff(l2)..=(l1 + l2).min(3) {
                let (d1, d2, d3) = (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1);
                let src = format!(
                    "fn f(W: f64[u, v, w], V: f64[u, v], x: f64[z, u, {d1}], y: f64[z, v, {d2}], a: f64[{d1}], b: f64[{d2}])
                        -> (uvw: f64[z, w, {d3}], uvu: f64[z, u, {d3}], single: f64[{d3}], half: f64[z, v, {d1}, {d3}]) {{
                        C = cg({l1}, {l2}, {l3})
                        uvw[n, c, m] = W[p, q, c] * C[s, t, m] * x[n, p, s] * y[n, q, t]
                        uvu[n, p, m] = V[p, q] * C[s, t, m] * x[n, p, s] * y[n, q, t]
                        single[m] = C[s, t, m] * a[s] * b[t]
                        half[n, q, s, m] = 2 * C[s, t, m] * y[n, q, t]
                    }}"
                );
                let (sm, _, c) = pipeline::check("p.tsr", &src);
                assert!(!c.has_errors(), "{}", tessera_compiler::diag::render_all(&c.diagnostics, &sm, false));
                let f = &c.functions[0];
                for (z, u, v, w) in [(0, 2, 1, 3), (1, 1, 1, 1), (5, 3, 2, 4)] {
                    let shapes: Vec<Vec<usize>> = vec![
                        vec![u, v, w],
                        vec![u, v],
                        vec![z, u, d1 as usize],
                        vec![z, v, d2 as usize],
                        vec![d1 as usize],
                        vec![d2 as usize],
                    ];
                    let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
                    let b = bind_dims(f, &refs, &[]).expect("binds");
                    for bits in [0, 3] {
                        let prog = lowered(f, &b, &lower_opts(bits)).expect("lowers");
                        let konst: Vec<_> = (0..prog.bufs.len()).filter(|&k| matches!(prog.bufs[k].kind, BufKind::Const(_))).collect();
                        for kernel in &prog.kernels {
                            let used = kernel.buffers_used();
                            let reads_const = konst.iter().any(|&k| used.iter().any(|x| x.index() == k));
                            assert!(!reads_const, "a kernel reads the constant of ({l1}, {l2}, {l3}):\n{prog}");
                        }
                        run_all::<f64>(f, &b, &lower_opts(bits), bits % 2 == 1, 1e-9).expect("f64");
                        run_all::<f32>(f, &b, &lower_opts(bits), bits % 2 == 0, 1e-5).expect("f32");
                    }
                }
                triples += 1;
            }
        }
    }
    assert_eq!(triples, 34, "every triple with degrees up to 3 that the triangle rule allows");
}
