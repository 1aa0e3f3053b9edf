//! The CUDA backend on a GPU (feature `cuda`): every stdlib function, in f32 and f64, at
//! small sizes and at sizes that span several thread blocks, against the reference
//! evaluator.
//!
//! GPU runs happen only with `TESSERA_GPU_TESTS=1` (`bench/gpu/check.sh` sets it on a
//! machine with a GPU). Without it, a call on the CUDA backend must fail cleanly with
//! "no CUDA device" where there is none, which the second test checks on every CI run.
#![cfg(feature = "cuda")]

use ndarray::{ArrayD, IxDyn};
use tessera::{Backend, CallOptions, DType, Module};

fn gpu_tests() -> bool {
    std::env::var("TESSERA_GPU_TESTS").as_deref() == Ok("1")
}

fn random(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    ArrayD::from_shape_fn(IxDyn(shape), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    })
}

/// Largest |got - want| over the largest |want| (NaN fails).
fn relative_error(got: &ArrayD<f64>, want: &ArrayD<f64>) -> f64 {
    let scale = want.iter().fold(f64::MIN_POSITIVE, |a, b| a.max(b.abs()));
    let err = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, |a: f64, b| if b.is_nan() { f64::NAN } else { a.max(b) });
    if got.shape() != want.shape() { f64::NAN } else { err / scale }
}

/// Runs `name` on the CUDA backend and on the reference evaluator, every dim `size`
/// (header dims 2); returns the worst relative error over the outputs.
fn compare(module: &Module, name: &str, dtype: DType, size: u64) -> f64 {
    let f = module.function(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let dims: Vec<(String, u64)> =
        f.tir().dims.iter().map(|d| (d.name.clone(), if d.name.starts_with('w') { 2 } else { size })).collect();
    let dim_refs: Vec<(&str, u64)> = dims.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let interp = CallOptions { backend: Backend::Interp, dtype: Some(dtype), ..Default::default() };
    let compiled = f.compile_dims(&dim_refs, &interp).unwrap_or_else(|e| panic!("{name}: {e}"));
    let p = compiled.program();
    let inputs: Vec<ArrayD<f64>> =
        p.inputs.iter().enumerate().map(|(i, &b)| random(&p.buf(b).shape, 17 + i as u64)).collect();
    let on = |backend| CallOptions { backend, dtype: Some(dtype), dims: dims.clone(), ..Default::default() };
    let run = |backend| -> Vec<ArrayD<f64>> {
        match dtype {
            DType::F32 => {
                let xs: Vec<ArrayD<f32>> = inputs.iter().map(|x| x.mapv(|v| v as f32)).collect();
                let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
                let out = f.call_with(&views, &on(backend)).unwrap_or_else(|e| panic!("{name} on {backend}: {e}"));
                out.into_iter().map(|o| o.mapv(f64::from)).collect()
            }
            DType::F64 => {
                let views: Vec<_> = inputs.iter().map(|x| x.view()).collect();
                f.call_with(&views, &on(backend)).unwrap_or_else(|e| panic!("{name} on {backend}: {e}"))
            }
        }
    };
    let (got, want) = (run(Backend::Cuda), run(Backend::Reference));
    got.iter().zip(&want).map(|(g, w)| relative_error(g, w)).fold(0.0, |a: f64, b| if b.is_nan() { f64::NAN } else { a.max(b) })
}

#[test]
fn every_stdlib_function_on_the_gpu_matches_the_reference() {
    if !gpu_tests() {
        eprintln!("skipped: GPU runs need TESSERA_GPU_TESTS=1 and a GPU");
        return;
    }
    let mut failures = Vec::new();
    let mut count = 0;
    // The embedded stdlib, so that the test binary runs where the sources are not.
    for stem in tessera_compiler::stdlib::names() {
        let module = Module::stdlib(stem).unwrap_or_else(|e| panic!("{stem}: {e}"));
        for name in module.function_names() {
            // The CUDA executor refuses index inputs (docs/gather.md); the PTX of these
            // functions is checked by tests/ptx.rs.
            if module.function(name).is_ok_and(|f| !f.index_names().is_empty()) {
                continue;
            }
            for (dtype, tol) in [(DType::F32, 1e-4), (DType::F64, 1e-10)] {
                // 5: a block of threads; 300: rows spanning two blocks of 256.
                for size in [5, 300] {
                    // Large sizes only where the work stays small (a few dims).
                    if size == 300 && module.function(name).map(|f| f.tir().dims.len() > 3).unwrap_or(true) {
                        continue;
                    }
                    let err = compare(&module, name, dtype, size);
                    count += 1;
                    if err.is_nan() || err > tol {
                        failures.push(format!("{stem}::{name} {dtype:?} size {size}: relative error {err:e}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {count} runs differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn without_a_gpu_the_cuda_backend_says_so() {
    if gpu_tests() {
        return;
    }
    let m = Module::from_source("fn f(x: f32[n]) -> y: f32[n] { y[i] = 2 * x[i] }").expect("checks");
    let x = ndarray::arr1(&[1.0f32, 2.0]).into_dyn();
    let opts = CallOptions { backend: Backend::Cuda, ..Default::default() };
    match m.function("f").expect("f").call_with(&[x.view()], &opts) {
        // A machine with a GPU runs it.
        Ok(y) => assert_eq!(y[0].as_slice(), Some(&[2.0f32, 4.0][..])),
        Err(e) => assert!(e.to_string().contains("no CUDA device"), "{e}"),
    }
}
