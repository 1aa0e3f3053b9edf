//! The Cranelift backend: the shared differential tests (`codegen/difftests.rs`) with
//! each set of options, and what is Cranelift's own: vectorisation, code lifetime, CLIF
//! snapshots, random kernels.

use super::*;
use crate::codegen::difftests::lower;

fn all_codegens() -> Vec<Box<dyn Codegen>> {
    let opts = [
        JitOptions::default(),
        JitOptions { vectorize: false, ..JitOptions::default() },
        JitOptions { vectorize: true, fma: false, ..JitOptions::default() },
        JitOptions { inline_math: false, ..JitOptions::default() },
    ];
    opts.into_iter().map(|opts| Box::new(Cranelift { opts }) as Box<dyn Codegen>).collect()
}

crate::codegen::difftests::cpu_backend_tests!(all_codegens);

#[test]
fn code_outlives_the_module_handle() {
    let p = lower(
        "fn f(x: f32[n]) -> y: f32[n] { y[i] = x[i] * 2 }",
        &[("n", 9)],
    );
    let code = compile(&p, &JitOptions::default()).expect("compiles");
    let k = code.kernels.into_iter().flatten().next().expect("a loop kernel");
    let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
    let mut y = vec![0.0f32; 9];
    let args = [x.as_ptr() as *mut u8, y.as_mut_ptr().cast::<u8>()];
    // SAFETY: two buffers of nine f32s, as the program declares.
    unsafe { (k.func())(args.as_ptr(), 0, usize::MAX) };
    assert_eq!(y, x.iter().map(|v| v * 2.0).collect::<Vec<_>>());
    // A range past the end runs nothing and reads nothing.
    // SAFETY: as above.
    unsafe { (k.func())(args.as_ptr(), usize::MAX - 1, usize::MAX) };
}

#[test]
fn kernels_are_vectorised_where_valid() {
    let opts = JitOptions::default();
    let p = lower(
        "fn f(x: f32[n], z: f32[n]) -> y: f32[n] { y[i] = x[i] * z[i] + 1 }",
        &[("n", 64)],
    );
    assert!(emit_clif(&p, &opts).expect("emits").contains("f32x4"));
    let p = lower(
        "fn f(x: f64[n, m]) -> y: f64[n] { y[i] = x[i, j] }",
        &[("n", 4), ("m", 64)],
    );
    assert!(emit_clif(&p, &opts).expect("emits").contains("f64x2"));
    let scalar = JitOptions {
        vectorize: false,
        ..opts
    };
    assert!(!emit_clif(&p, &scalar).expect("emits").contains("f64x2"));
}

/// A gathered row is read with vector loads (the index is fixed along the row); a
/// gather whose index changes from lane to lane keeps its loop scalar. Both agree with
/// the interpreter (the shared `gathers` difftest runs them on random indices).
#[test]
fn gathered_rows_are_vectorised_and_per_lane_indices_are_not() {
    let opts = JitOptions::default();
    let rows = lower("fn f(U: f32[n, a], I: i64[e]) -> y: f32[e, a] { y[x, p] = U[I[x], p] * 2 }", &[("n", 8), ("a", 64), ("e", 16)]);
    let text = emit_clif(&rows, &opts).expect("emits");
    assert!(text.contains("f32x4") && text.contains("load.i64"), "{text}");
    let lanes = lower("fn f(U: f32[n], I: i64[e]) -> y: f32[e] { y[x] = U[I[x]] * 2 }", &[("n", 8), ("e", 64)]);
    let text = emit_clif(&lanes, &opts).expect("emits");
    assert!(!text.contains("f32x4") && text.contains("load.i64"), "{text}");
}

#[test]
fn compiled_code_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CpuCode>();
    assert_send_sync::<CpuKernel>();
}

#[test]
fn clif_of_a_vectorised_elementwise_kernel() {
    let p = lower(
        "fn f(x: f32[n], z: f32[n]) -> y: f32[n] { y[i] = max(x[i], 0) * z[i] }",
        &[("n", 64)],
    );
    let opts = JitOptions {
        vectorize: true,
        fma: false,
        ..JitOptions::default()
    };
    insta::assert_snapshot!(emit_clif(&p, &opts).expect("emits"));
}

#[test]
fn clif_of_a_row_reduction() {
    let p = lower(
        "fn f(x: f64[n, m]) -> y: f64[n] { y[i] = x[i, j] * x[i, j] }",
        &[("n", 3), ("m", 8)],
    );
    let opts = JitOptions {
        vectorize: true,
        fma: false,
        ..JitOptions::default()
    };
    insta::assert_snapshot!(emit_clif(&p, &opts).expect("emits"));
}

#[test]
fn random_kernels_match_the_interpreter() {
    let mut vectorised = 0;
    crate::codegen::difftests::random_kernels(&all_codegens(), &mut |_, p| {
        let clif = emit_clif(p, &JitOptions::default()).expect("emits");
        vectorised += usize::from(clif.contains("x4") || clif.contains("x2"));
    });
    assert!(vectorised >= 60, "only {vectorised} of 150 kernels vectorised");
}
