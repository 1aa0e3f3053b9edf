//! Every program of the compile-latency set (`bench/latency/*.tsr`) checks without
//! warnings, plans, and computes on the JIT and on the loop interpreter what the
//! reference evaluator computes, at small sizes in f32 and f64. Correctness only: the
//! times are measured by the `latency` binary, never asserted here.

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use tessera::{Backend, CallOptions, DType, Module, Scalar};
use tessera_bench::latency::{self, Case};

/// Values in [0.25, 0.75) from a fixed seed: positive, so that variances, square roots
/// and the denominators of the optimiser updates stay away from zero, and below one, so
/// that decay rates such as Adam's β₂ keep the second moment positive.
fn random<T: Scalar>(shape: &[usize], seed: u64) -> ArrayD<T> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        T::from_f64(0.25 + 0.5 * ((s >> 11) as f64 / (1u64 << 53) as f64))
    })
}

/// Runs `case` at `dims` on the JIT, the interpreter and the reference evaluator and
/// compares the outputs elementwise to `tol` relative to the output's largest magnitude.
fn agree<T: Scalar>(m: &Module, case: &Case, dims: &[(String, u64)], tol: f64) -> Result<(), String> {
    let f = m.function(&case.function).map_err(|e| e.to_string())?;
    let dims_ref: Vec<(&str, u64)> = dims.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let opts = |backend| CallOptions { dims: dims.to_vec(), dtype: Some(T::DTYPE), backend, ..CallOptions::default() };
    let compiled = f.compile_dims(&dims_ref, &opts(Backend::Cranelift)).map_err(|e| e.render(false))?;
    let p = compiled.program();
    let inputs: Vec<ArrayD<T>> = p.inputs.iter().enumerate().map(|(k, &b)| random::<T>(&p.buf(b).shape, k as u64 + 7)).collect();
    let views: Vec<ArrayViewD<'_, T>> = inputs.iter().map(|a| a.view()).collect();
    let want = f.call_with(&views, &opts(Backend::Reference)).map_err(|e| format!("reference: {}", e.render(false)))?;
    let jit = compiled.run(&views).map_err(|e| format!("jit: {e}"))?;
    let interp = f.call_with(&views, &opts(Backend::Interp)).map_err(|e| format!("interp: {}", e.render(false)))?;
    let names = f.output_names();
    if want.len() != names.len() {
        return Err(format!("the reference gave {} outputs for {}", want.len(), names.len()));
    }
    for (backend, got) in [("jit", &jit), ("interp", &interp)] {
        if got.len() != want.len() {
            return Err(format!("{backend} gave {} outputs, the reference {}", got.len(), want.len()));
        }
        for ((g, w), name) in got.iter().zip(&want).zip(&names) {
            if g.shape() != w.shape() {
                return Err(format!("{backend}: output {name} has shape {:?}, the reference {:?}", g.shape(), w.shape()));
            }
            let scale = w.iter().map(|&x| Scalar::to_f64(x).abs()).fold(1.0, f64::max);
            for (k, (a, b)) in g.iter().zip(w.iter()).enumerate() {
                let (a, b) = (Scalar::to_f64(*a), Scalar::to_f64(*b));
                if !b.is_finite() {
                    return Err(format!("the reference's {name}[{k}] is {b}: the inputs do not suit the program"));
                }
                // A NaN from the backend fails this comparison, so it is an error too.
                let within = (a - b).abs() <= tol * scale;
                if !within {
                    return Err(format!("{backend}: {name}[{k}] = {a}, the reference {b} (tolerance {tol} × {scale})"));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn latency_programs_agree_with_the_reference() {
    let cases = latency::program_cases().expect("the latency programs are readable");
    assert!(cases.len() >= 10, "the latency set has {} programs, fewer than ten", cases.len());
    let mut failures = Vec::new();
    let mut runs = 0;
    for case in &cases {
        let m = match latency::check(case) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{}: does not check:\n{e}", case.name));
                continue;
            }
        };
        // A warning (an index summed over a whole side, a shadowed name) means the
        // program may not say what its comment says.
        if !m.warnings().is_empty() {
            failures.push(format!("{}: warnings:\n{}", case.name, m.render_warnings(false)));
        }
        let f = match m.function(&case.function) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        // The sizes the set names must plan (no code is generated for them here).
        let big: Vec<(&str, u64)> = case.dims.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        if let Err(e) = f.plan_for(&big) {
            failures.push(format!("{}: does not plan at {big:?}: {}", case.name, e.render(false)));
        }
        // Small sizes, distinct per dim, and all-equal ones.
        let mixed: Vec<(String, u64)> =
            case.dims.iter().enumerate().map(|(k, (n, _))| (n.clone(), [3, 2, 5, 4][k % 4])).collect();
        let nines: Vec<(String, u64)> = case.dims.iter().map(|(n, _)| (n.clone(), 9)).collect();
        for dims in [&mixed, &nines] {
            for dtype in [DType::F64, DType::F32] {
                let r = match dtype {
                    DType::F64 => agree::<f64>(&m, case, dims, 1e-9),
                    DType::F32 => agree::<f32>(&m, case, dims, 2e-4),
                };
                runs += 1;
                if let Err(e) = r {
                    failures.push(format!("{} at {dims:?} in {}: {e}", case.name, dtype.name()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n\n"));
    assert_eq!(runs, cases.len() * 4, "every program runs at two size sets in two dtypes");
}
