//! The CUDA backend's PTX (feature `cuda`; no GPU needed): every stdlib function, in f32
//! and f64, compiles to PTX that NVIDIA's assembler `ptxas` accepts for sm_80 and sm_90.
//!
//! `ptxas` comes from the PyPI wheel `nvidia-cuda-nvcc-cu12` (`.ci/run` installs it and
//! sets `TESSERA_PTXAS`); it is also looked up on PATH. Without it the assembling test
//! says so and passes, except in CI (`CI=true`), where it fails.
#![cfg(feature = "cuda")]

use std::path::PathBuf;
use std::process::Command;
use tessera::{Backend, CallOptions, DType, Module};

fn ptxas() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TESSERA_PTXAS") {
        return Some(PathBuf::from(p));
    }
    let found = Command::new("ptxas").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    found.then(|| PathBuf::from("ptxas"))
}

/// The PTX of `module::function` in `dtype`, with every dim 6 (header dims 2).
fn ptx_of(module: &Module, name: &str, dtype: DType) -> String {
    let f = module.function(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let dims: Vec<(&str, u64)> = f.tir().dims.iter().map(|d| (d.name.as_str(), if d.name.starts_with('w') { 2 } else { 6 })).collect();
    let opts = CallOptions { backend: Backend::Interp, dtype: Some(dtype), ..Default::default() };
    let compiled = f.compile_dims(&dims, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    compiled.emit_code(Backend::Cuda).unwrap_or_else(|e| panic!("{name} ({dtype:?}): {e}"))
}

fn stdlib_functions() -> Vec<(String, Module)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/stdlib")).expect("stdlib/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "tsr") {
            let stem = path.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
            out.push((stem.clone(), Module::stdlib(&stem).unwrap_or_else(|e| panic!("{stem}: {e}"))));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_stdlib_function_assembles_with_ptxas() {
    let Some(ptxas) = ptxas() else {
        let msg = "ptxas not found: set TESSERA_PTXAS or put ptxas on PATH \
                   (pip install nvidia-cuda-nvcc-cu12; .ci/run does this)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("skipped: {msg}");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut count = 0;
    for (module_name, module) in stdlib_functions() {
        for name in module.function_names() {
            for dtype in [DType::F32, DType::F64] {
                let ptx = ptx_of(&module, name, dtype);
                let file = dir.path().join(format!("{module_name}_{name}_{dtype:?}.ptx"));
                std::fs::write(&file, &ptx).expect("write");
                for sm in ["sm_80", "sm_90"] {
                    let out = Command::new(&ptxas)
                        .args(["--gpu-name", sm, "-o"])
                        .arg(dir.path().join("out.cubin"))
                        .arg(&file)
                        .output()
                        .unwrap_or_else(|e| panic!("running {}: {e}", ptxas.display()));
                    assert!(
                        out.status.success(),
                        "ptxas rejected {module_name}::{name} ({dtype:?}, {sm}):\n{}\n{ptx}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                count += 1;
            }
        }
    }
    assert!(count >= 60, "only {count} stdlib functions assembled");
}

#[test]
fn ptx_of_a_row_softmax() {
    let m = Module::from_source(
        "fn softmax(X: f32[n, m]) -> Y: f32[n, m] {\n    M[i] max= X[i, j]\n    E[i, j] = exp(X[i, j] - M[i])\n    Y[i, j] = E[i, j] / sum[k](E[i, k])\n}\n",
    )
    .expect("checks");
    let ptx = ptx_of(&m, "softmax", DType::F32);
    // One entry per loop kernel, a thread per row, global loads and stores.
    assert!(ptx.contains(".visible .entry tessera_kernel0("), "{ptx}");
    assert!(ptx.contains("%ctaid.x") && ptx.contains("%tid.x"), "{ptx}");
    assert!(ptx.contains("ld.global.f32") && ptx.contains("st.global.f32"), "{ptx}");
    insta::assert_snapshot!(ptx);
}

#[test]
fn ptx_of_layernorm_in_f64() {
    // Two reductions per row then a map, in one kernel: loops inside a thread, f64 math.
    let m = Module::stdlib("norm").expect("norm");
    let f = m.function("layernorm").expect("layernorm");
    let opts = CallOptions { backend: Backend::Interp, dtype: Some(DType::F64), ..Default::default() };
    let ptx = f.compile_dims(&[("b", 4), ("d", 8)], &opts).expect("compiles").emit_code(Backend::Cuda).expect("ptx");
    assert!(ptx.contains("ld.global.f64") && ptx.contains("sqrt.rn.f64"), "{ptx}");
    insta::assert_snapshot!(ptx);
}

#[test]
fn a_gemm_step_is_no_ptx_kernel() {
    // The matmul goes to cuBLAS; only the elementwise step after it is a kernel.
    let m = Module::from_source("fn f(A: f32[n, k], B: f32[k, m]) -> C: f32[n, m] {\n    T[i, j] = A[i, l] * B[l, j]\n    C[i, j] = tanh(T[i, j])\n}\n")
        .expect("checks");
    let ptx = ptx_of(&m, "f", DType::F32);
    assert_eq!(ptx.matches(".entry").count(), 1, "{ptx}");
    assert!(!ptx.contains("tessera_kernel0("), "{ptx}");
}

/// The L-Mul builtin and the L-Mul mode compile to PTX that `ptxas` accepts: the lane code
/// is plain integer arithmetic and selects, with no calls, in f32 and f64.
#[test]
fn lmul_assembles_with_ptxas() {
    let src = "fn f(A: f32[n, k], B: f32[k, m], x: f32[n, k]) -> (C: f32[n, m], y: f32[n, k]) {
        C[i, j] = A[i, l] * B[l, j]
        y[i, l] = lmul(A[i, l], x[i, l], 3) + lmul(A[i, l], x[i, l])
    }";
    let module = Module::from_source(src).expect("checks");
    let f = module.function("f").expect("exists");
    let dir = tempfile::tempdir().expect("temp dir");
    for dtype in [DType::F32, DType::F64] {
        for mul in [tessera::MulMode::Exact, tessera::MulMode::Lmul(0), tessera::MulMode::Lmul(4)] {
            let opts = CallOptions { backend: Backend::Interp, dtype: Some(dtype), mul, ..Default::default() };
            let compiled = f.compile_dims(&[("n", 6), ("k", 5), ("m", 7)], &opts).expect("compiles");
            let ptx = compiled.emit_code(Backend::Cuda).expect("PTX");
            assert!(!ptx.contains("call"), "PTX with a call:\n{ptx}");
            let Some(ptxas) = ptxas() else { continue };
            let file = dir.path().join("lmul.ptx");
            std::fs::write(&file, &ptx).expect("write");
            let out = Command::new(&ptxas)
                .args(["--gpu-name", "sm_90", "-o"])
                .arg(dir.path().join("out.cubin"))
                .arg(&file)
                .output()
                .unwrap_or_else(|e| panic!("running {}: {e}", ptxas.display()));
            assert!(out.status.success(), "ptxas rejected lmul ({dtype:?}, {mul}):\n{}\n{ptx}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
