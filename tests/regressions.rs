//! Regression programs: every function of every `tests/regressions/*.tsr` runs on the JIT
//! and on the loop-IR interpreter, in f32 and f64, at each `# dims:` line of its file, on
//! seeded inputs in [-1, 1), and must agree with the reference evaluator.

use ndarray::{ArrayD, IxDyn};
use std::path::Path;
use tessera::{Backend, CallOptions, DType, Module};

mod common;

/// Dim sizes from the file's `# dims: n=9, d=5` lines (one size set per line).
fn dim_sets(text: &str, path: &Path) -> Vec<Vec<(String, u64)>> {
    let sets: Vec<Vec<(String, u64)>> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# dims:"))
        .map(|list| common::dim_list(list, path))
        .collect();
    assert!(!sets.is_empty(), "{}: no `# dims:` line", path.display());
    sets
}

/// Deterministic values in [-1, 1) (xorshift).
fn values(len: usize, seed: &mut u64) -> Vec<f64> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// Runs `name` on `backend` in `T`'s dtype; outputs converted to f64.
fn run<T: tessera::Scalar>(m: &Module, name: &str, inputs: &[ArrayD<f64>], opts: &CallOptions) -> Vec<ArrayD<f64>> {
    let f = m.function(name).expect("function exists");
    let typed: Vec<ArrayD<T>> = inputs.iter().map(|a| a.mapv(T::from_f64)).collect();
    let views: Vec<_> = typed.iter().map(|a| a.view()).collect();
    let outs = f
        .call_with(&views, opts)
        .unwrap_or_else(|e| panic!("{name} on {}: {}", opts.backend.name(), e.render(false)));
    outs.iter().map(|a| a.mapv(|x| x.to_f64())).collect()
}

/// Every element of `got` is within `tol` of `want`, relative to the largest finite
/// magnitude of `want`; non-finite values must match in kind.
fn assert_close(want: &[ArrayD<f64>], got: &[ArrayD<f64>], tol: f64, what: &str) {
    assert_eq!(want.len(), got.len(), "{what}: number of outputs");
    for (o, (w, g)) in want.iter().zip(got).enumerate() {
        assert_eq!(w.shape(), g.shape(), "{what}: shape of output {o}");
        let scale = w.iter().filter(|v| v.is_finite()).fold(1.0f64, |a, v| a.max(v.abs()));
        for (k, (a, b)) in w.iter().zip(g).enumerate() {
            let ok = if a.is_finite() { (a - b).abs() <= tol * scale } else { a.is_nan() == b.is_nan() && (a.is_nan() || a == b) };
            assert!(ok, "{what}: output {o} element {k} is {b}, the reference evaluator says {a}");
        }
    }
}

#[test]
fn regressions_agree_with_the_reference_on_every_backend() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("tests/regressions exists").map(|e| e.expect("entry").path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "tsr"));
    files.sort();
    let mut runs = 0usize;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable");
        let m = Module::from_file(path).unwrap_or_else(|e| panic!("{}: {}", path.display(), e.render(false)));
        let names: Vec<String> = m.function_names().iter().map(|s| s.to_string()).collect();
        assert!(!names.is_empty(), "{}: no functions", path.display());
        for dims in dim_sets(&text, path) {
            for name in &names {
                let f = m.function(name).expect("listed");
                // A file's size lines name the dims of all its functions; each gets its own.
                let dims: Vec<(String, u64)> = dims.iter().filter(|(n, _)| f.tir().dim_by_name(n).is_some()).cloned().collect();
                let mut bindings = tessera_compiler::tir::Bindings::new(f.tir().dims.len());
                for (n, v) in &dims {
                    if let Some(d) = f.tir().dim_by_name(n) {
                        bindings.set(d, *v);
                    }
                }
                let mut seed = 0x5EED_u64;
                let inputs: Vec<ArrayD<f64>> = f
                    .tir()
                    .inputs
                    .iter()
                    .map(|&t| {
                        let shape = f.tir().shape(t, &bindings).unwrap_or_else(|e| panic!("{name}: shape: {e:?}"));
                        ArrayD::from_shape_vec(IxDyn(&shape), values(shape.iter().product(), &mut seed)).expect("shape")
                    })
                    .collect();
                for dtype in [DType::F32, DType::F64] {
                    let opts = |backend| CallOptions { dims: dims.clone(), dtype: Some(dtype), backend, ..CallOptions::default() };
                    let call = |backend| match dtype {
                        DType::F32 => run::<f32>(&m, name, &inputs, &opts(backend)),
                        DType::F64 => run::<f64>(&m, name, &inputs, &opts(backend)),
                    };
                    let want = call(Backend::Reference);
                    let tol = if dtype == DType::F32 { 2e-4 } else { 1e-10 };
                    for backend in Backend::executors() {
                        let what = format!("{}: {name} {dims:?} {dtype} {}", path.display(), backend.name());
                        assert_close(&want, &call(backend), tol, &what);
                        runs += 1;
                    }
                }
            }
        }
    }
    // Each file, size set, function, dtype and backend is one run; too few means files or
    // size lines went missing.
    assert!(files.len() >= 2 && runs >= 24, "only {runs} runs in {} files", files.len());
}
