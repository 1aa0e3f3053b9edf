//! The Rust API: compile once per shapes, call many times; errors name the argument.

use ndarray::{array, Array2, ArrayD, ShapeBuilder};
use std::sync::Arc;
use tessera::{Backend, CallOptions, Error, Module};

const SRC: &str = "fn matmul(A: f64[m, k], B: f64[k, n]) -> C: f64[m, n] { C[i, j] = A[i, l] * B[l, j] }
fn rows(X: f32[m, n]) -> (s: f32[m], top: f32[m]) {
    s[i] = X[i, j]
    top[i] max= X[i, j]
}";

fn mat(rows: usize, cols: usize) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |(i, j)| (i * cols + j) as f64 * 0.25 - 1.0)
}

#[test]
fn calls_reuse_the_compiled_function() {
    let m = Module::from_source(SRC).expect("compiles");
    let f = m.function("matmul").expect("exists");
    let (a, b) = (mat(5, 7), mat(7, 3));
    let opts = CallOptions::default();
    let c1 = f.compile(&[a.shape(), b.shape()], &opts).expect("compiles");
    let c2 = f.compile(&[a.shape(), b.shape()], &opts).expect("compiles");
    assert!(Arc::ptr_eq(&c1, &c2), "the second compile comes from the cache");
    let other = f.compile(&[&[2, 7], b.shape()], &opts).expect("compiles");
    assert!(!Arc::ptr_eq(&c1, &other), "other shapes compile anew");
    let out = f.call(&[a.view().into_dyn(), b.view().into_dyn()]).expect("runs");
    assert_eq!(out[0], a.dot(&b).into_dyn());
    let again = c1.run(&[a.view().into_dyn(), b.view().into_dyn()]).expect("runs");
    assert_eq!(again[0], out[0]);
}

#[test]
fn any_strides_are_accepted() {
    let m = Module::from_source(SRC).expect("compiles");
    let f = m.function("matmul").expect("exists");
    let a = mat(6, 4);
    let b_fortran = Array2::from_shape_vec((4, 5).f(), (0..20).map(|x| x as f64).collect()).expect("shape");
    let at = mat(4, 6);
    let want = a.dot(&b_fortran);
    let out = f.call(&[at.t().into_dyn(), b_fortran.view().into_dyn()]).expect("runs");
    assert_eq!(out[0], at.t().dot(&b_fortran).into_dyn());
    let stepped = mat(12, 4);
    let every_other = stepped.slice(ndarray::s![..;2, ..]);
    let out = f.call(&[every_other.into_dyn(), b_fortran.view().into_dyn()]).expect("runs");
    assert_eq!(out[0], every_other.dot(&b_fortran).into_dyn());
    assert_eq!(want.shape(), &[6, 5]);
}

#[test]
fn every_backend_gives_the_same_results() {
    let m = Module::from_source(SRC).expect("compiles");
    let f = m.function("rows").expect("exists");
    let x: ArrayD<f32> = array![[1.0f32, -2.0, 3.5], [0.5, 0.25, -8.0]].into_dyn();
    let mut results = Vec::new();
    for backend in Backend::executors().into_iter().chain([Backend::Reference]) {
        let opts = CallOptions { backend, ..CallOptions::default() };
        results.push(f.call_with(&[x.view()], &opts).expect("runs"));
    }
    assert_eq!(results[0][0], array![2.5f32, -7.25].into_dyn());
    assert_eq!(results[0][1], array![3.5f32, 0.5].into_dyn());
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

#[test]
fn wrong_arity_shape_and_dtype_are_errors_naming_the_argument() {
    let m = Module::from_source(SRC).expect("compiles");
    let f = m.function("matmul").expect("exists");
    let (a, b) = (mat(5, 7), mat(6, 3));
    let err = f.call(&[a.view().into_dyn()]).expect_err("one input is missing");
    assert!(matches!(err, Error::Input(_)) && err.to_string().contains("A, B"), "{err}");
    let err = f.call(&[a.view().into_dyn(), b.view().into_dyn()]).expect_err("k disagrees");
    assert!(err.to_string().contains('B') && err.to_string().contains('k'), "{err}");
    let a32 = a.mapv(|x| x as f32);
    let b32 = mat(7, 3).mapv(|x| x as f32);
    let err = f.call(&[a32.view().into_dyn(), b32.view().into_dyn()]).expect_err("f32 inputs for an f64 function");
    assert!(err.to_string().contains("f64") && err.to_string().contains("f32"), "{err}");
    let c = f.compile(&[&[5, 7], &[7, 3]], &CallOptions::default()).expect("compiles");
    let err = c.run(&[a.view().into_dyn(), mat(7, 4).view().into_dyn()]).expect_err("compiled for other shapes");
    assert!(err.to_string().contains('B') && err.to_string().contains("[7, 3]"), "{err}");
}

#[test]
fn the_memory_limit_is_checked_before_allocating() {
    let m = Module::from_source(SRC).expect("compiles");
    let f = m.function("matmul").expect("exists");
    let (a, b) = (mat(64, 8), mat(8, 64));
    let opts = CallOptions { memory_limit: 1024, ..CallOptions::default() };
    let err = f.call_with(&[a.view().into_dyn(), b.view().into_dyn()], &opts).expect_err("the output is 32 KiB");
    assert!(matches!(err, Error::Eval(_)) && err.to_string().contains("memory limit"), "{err}");
}

#[test]
fn einsum_runs_on_the_jit_and_matches_the_reference() {
    let a = mat(4, 5);
    let b = mat(5, 6);
    let jit = tessera::einsum("ij,jk->ik", &[a.view().into_dyn(), b.view().into_dyn()]).expect("runs");
    let opts = CallOptions { backend: Backend::Reference, ..CallOptions::default() };
    let reference = tessera::einsum_with("ij,jk->ik", &[a.view().into_dyn(), b.view().into_dyn()], &opts).expect("runs");
    assert_eq!(jit, reference);
    let trace = tessera::einsum("ii->", &[mat(3, 3).view().into_dyn()]).expect("runs");
    assert_eq!(trace.into_dimensionality::<ndarray::Ix0>().expect("a scalar")[()], -1.0 + 0.0 + 1.0);
}

#[test]
fn modules_and_compiled_functions_are_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Module>();
    shared::<tessera::Compiled>();
    let m = Module::from_source(SRC).expect("compiles");
    let f = m.function("matmul").expect("exists");
    let (a, b) = (mat(33, 17), mat(17, 9));
    let want = a.dot(&b).into_dyn();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5 {
                    let out = f.call(&[a.view().into_dyn(), b.view().into_dyn()]).expect("runs");
                    assert_eq!(out[0], want);
                }
            });
        }
    });
}

#[test]
fn concurrent_calls_of_a_tiled_function_agree() {
    let m = Module::stdlib("attention").expect("stdlib");
    let f = m.function("softmax").expect("exists");
    let q = mat(300, 16).mapv(|x| (x * 0.01) as f32).into_dyn();
    let k = mat(200, 16).mapv(|x| (x * 0.02) as f32).into_dyn();
    let v = mat(200, 8).mapv(|x| x as f32).into_dyn();
    let c = f.compile(&[q.shape(), k.shape(), v.shape()], &CallOptions::default()).expect("compiles");
    assert!(!c.program().tiles.is_empty(), "{}", c.program());
    let want = f
        .call_with(&[q.view(), k.view(), v.view()], &CallOptions { backend: Backend::Reference, ..CallOptions::default() })
        .expect("runs");
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..5 {
                    let out = c.run(&[q.view(), k.view(), v.view()]).expect("runs");
                    let err = out[0].iter().zip(want[0].iter()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                    assert!(err < 1e-4, "error {err}");
                }
            });
        }
    });
}

/// The corpus's large networks (more than 52 labels, so opt_einsum's `×` and `÷`, and
/// iteration spaces past 2^63) run on the JIT and the loop interpreter through
/// `tessera::einsum`, as a user calls it, and match opt_einsum.
#[test]
fn large_einsum_networks_run_and_match_opt_einsum() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/einsum/corpus.json");
    let corpus: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("corpus")).expect("corpus is JSON");
    let large: Vec<&serde_json::Value> =
        corpus["valid"].as_array().expect("valid specs").iter().filter(|e| e["category"] == "large").collect();
    assert!(large.len() >= 3, "only {} large networks", large.len());
    for entry in large {
        let spec = entry["spec"].as_str().expect("spec");
        // The corpus formula for element k of operand o (see tests/gen_einsum_fixtures.py).
        let inputs: Vec<ArrayD<f64>> = entry["shapes"]
            .as_array()
            .expect("shapes")
            .iter()
            .enumerate()
            .map(|(o, s)| {
                let shape: Vec<usize> = s.as_array().expect("shape").iter().map(|x| x.as_u64().expect("size") as usize).collect();
                let n: usize = shape.iter().product();
                let values = (0..n).map(|k| ((k * 37 + o * 101 + 11) % 97) as f64 / 48.5 - 1.0).collect();
                ArrayD::from_shape_vec(shape, values).expect("shape")
            })
            .collect();
        let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
        let expected: Vec<f64> = entry["expected"].as_array().expect("expected").iter().filter_map(|x| x.as_f64()).collect();
        let scale = expected.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(scale > 0.0, "{spec}: an all-zero expectation proves nothing");
        for backend in Backend::executors() {
            let opts = CallOptions { backend, ..CallOptions::default() };
            let got = tessera::einsum_with(spec, &views, &opts).unwrap_or_else(|e| panic!("{spec} on {backend:?}: {e}"));
            assert_eq!(got.len(), expected.len(), "{spec}: output size");
            for (g, x) in got.iter().zip(&expected) {
                assert!((g - x).abs() <= 1e-10 * scale, "{spec} on {backend:?}: got {g}, opt_einsum {x}");
            }
        }
        // Label sizes (what `--sizes` gives) plan the same network, with a path.
        let mut sizes: Vec<(String, u64)> = Vec::new();
        for (term, a) in spec.split("->").next().unwrap_or("").split(',').zip(&inputs) {
            for (c, &n) in term.chars().zip(a.shape()) {
                if !sizes.iter().any(|(l, _)| *l == c.to_string()) {
                    sizes.push((c.to_string(), n as u64));
                }
            }
        }
        let named: Vec<(&str, u64)> = sizes.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        let plan = tessera::plan_einsum(spec, &named, &tessera::PlanOptions::default()).expect("plans");
        let path = plan.path.as_ref().unwrap_or_else(|| panic!("{spec}: no path\n{plan}"));
        assert_eq!(path.len(), inputs.len() - 1, "{spec}: pairwise steps only");
    }
}

/// Planning never refuses an iteration space or an output for its size; compiling an
/// output that no machine can hold is refused with a message, not a panic.
#[test]
fn huge_einsums_plan_and_refuse_to_compile_what_cannot_be_allocated() {
    let opts = tessera::PlanOptions::default();
    let p = tessera::plan_einsum("i,j->", &[("i", 1 << 40), ("j", 1 << 40)], &opts).expect("plans");
    assert_eq!(p.flops, 2.0 * 2f64.powi(80), "{p}");
    assert_eq!(p.path, Some(vec![vec![0, 1]]));
    let p = tessera::plan_einsum("i,j->ij", &[("i", 1 << 32), ("j", 1 << 32)], &opts).expect("plans");
    assert_eq!(p.flops, 2f64.powi(64), "{p}");
    assert_eq!(p.path, Some(vec![vec![0, 1]]));
    let err = tessera::compile_einsum_for("i,j->ij", &[&[1 << 32], &[1 << 32]], tessera::DType::F32, Backend::Cranelift)
        .map(|_| ())
        .expect_err("2^64 elements cannot be allocated");
    assert!(!matches!(err, Error::Internal(_)), "{err}");
}

/// Row sums and row maxima of a product whose `n × m` intermediate exceeds the limit:
/// with only 2 rows, the planner must slice the reduced index `j`.
const REDUCED: &str = "fn f(A: f64[n, k], B: f64[k, m]) -> (s: f64[n], top: f64[n], low: f64[n]) {
    T[i, j] = A[i, l] * B[l, j]
    s[i] = exp(T[i, j])
    top[i] max= T[i, j]
    low[i] min= T[i, j]
}";

fn close(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-9 * x.abs().max(1.0))
}

#[test]
fn a_call_over_the_memory_limit_runs_its_slice_loops() {
    let m = Module::from_source(REDUCED).expect("compiles");
    let f = m.function("f").expect("exists");
    let a = Array2::from_shape_fn((2, 8), |(i, j)| ((i * 8 + j) % 7) as f64 * 0.1 - 0.3);
    let b = Array2::from_shape_fn((8, 4096), |(i, j)| ((i * 31 + j * 17) % 23) as f64 * 0.05 - 0.5);
    let inputs = [a.view().into_dyn(), b.view().into_dyn()];
    let whole = f.call(&inputs).expect("runs unsliced");
    let reference = f.call_with(&inputs, &CallOptions { backend: Backend::Reference, ..CallOptions::default() }).expect("runs");
    // The intermediate T is 64 KiB.
    let limit = 16 << 10;
    for backend in Backend::executors() {
        let opts = CallOptions { memory_limit: limit, backend, ..CallOptions::default() };
        let c = f.compile(&[a.shape(), b.shape()], &opts).expect("compiles sliced");
        let s = c.exec.slicing().expect("sliced").clone();
        assert!(s.slices >= 4 && s.loops.iter().any(|l| l.index == "j"), "{s:?}");
        let peak = c.exec.temp_bytes(tessera::threads()) as u64;
        assert!(peak <= limit, "{peak} bytes of intermediates over {limit}: {s:?}");
        let out = f.call_with(&inputs, &opts).expect("runs sliced");
        for ((x, y), z) in out.iter().zip(&whole).zip(&reference) {
            assert!(close(x, y) && close(x, z), "{backend}: {x} vs {y} vs {z}");
        }
    }
    // One slice at a time on one thread gives the same.
    let seq = tessera_runtime::with_threads(1, || {
        let c = f
            .compile(&[a.shape(), b.shape()], &CallOptions { memory_limit: limit - 1, ..CallOptions::default() })
            .expect("compiles");
        assert_eq!(c.exec.slicing().map(|s| s.parallel), Some(1));
        c.run(&inputs).expect("runs")
    })
    .expect("a pool of one thread");
    for (x, y) in seq.iter().zip(&whole) {
        assert!(close(x, y), "{x} vs {y}");
    }
}
#[test]
fn an_einsum_over_the_memory_limit_runs_sliced() {
    let a = mat(48, 48).into_dyn();
    let inputs = [a.view(), a.view(), a.view(), a.view()];
    let whole = tessera::einsum("ij,jk,kl,li->", &inputs).expect("runs");
    let opts = CallOptions { memory_limit: 4 << 10, ..CallOptions::default() };
    let sliced = tessera::einsum_with("ij,jk,kl,li->", &inputs, &opts).expect("runs sliced");
    assert!(close(&whole, &sliced), "{whole} vs {sliced}");
    // A limit below what one slice needs is refused with the numbers.
    let tiny = CallOptions { memory_limit: 16, ..CallOptions::default() };
    let err = tessera::einsum_with("ij,jk,kl,li->", &inputs, &tiny).expect_err("too small");
    assert!(err.to_string().contains("memory limit"), "{err}");
}

/// `CallOptions::mul`: in L-Mul mode every backend agrees with the reference evaluator
/// in the same mode, the result differs from the exact one by about the paper's error,
/// compiled functions are cached per mode, and einsums take the mode too.
#[test]
fn lmul_mode_is_an_option_of_calls_and_einsums() {
    let m = Module::from_source(SRC).expect("compiles");
    let f = m.function("matmul").expect("exists");
    let (a, b) = (mat(9, 13).mapv(|x| x.sin() + 0.1), mat(13, 6).mapv(|x| x.cos()));
    let ins = [a.view().into_dyn(), b.view().into_dyn()];
    let exact = a.dot(&b).into_dyn();
    for mul in [tessera::MulMode::Lmul(0), tessera::MulMode::Lmul(3), tessera::MulMode::Lmul(4)] {
        let reference = f.call_with(&ins, &CallOptions { backend: Backend::Reference, mul, ..CallOptions::default() }).expect("runs");
        let scale = exact.iter().fold(0.0f64, |s, x| s.max(x.abs()));
        let err = (&reference[0] - &exact).iter().fold(0.0f64, |s, x| s.max(x.abs())) / scale;
        assert!(err > 1e-4 && err < 0.3, "{mul}: relative error {err}");
        for backend in Backend::executors() {
            let opts = CallOptions { backend, mul, ..CallOptions::default() };
            let c = f.compile(&[a.shape(), b.shape()], &opts).expect("compiles");
            assert!(c.plan.to_string().contains(&format!("mul      {mul}")));
            let got = f.call_with(&ins, &opts).expect("runs");
            let diff = (&got[0] - &reference[0]).iter().fold(0.0f64, |s, x| s.max(x.abs()));
            assert!(diff <= 1e-12 * scale, "{} {mul}: {diff}", backend.name());
            let got = tessera::einsum_with("ij,jk->ik", &ins, &opts).expect("runs");
            let diff = (&got - &reference[0]).iter().fold(0.0f64, |s, x| s.max(x.abs()));
            assert!(diff <= 1e-12 * scale, "einsum {} {mul}: {diff}", backend.name());
        }
    }
    // The exact mode after the L-Mul ones still gets exact code from the cache.
    assert_eq!(f.call(&ins).expect("runs")[0], exact);
    assert_eq!(tessera::einsum("ij,jk->ik", &ins).expect("runs"), exact);
}
