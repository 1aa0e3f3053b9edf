//! The LLVM backend: the shared differential tests (`codegen/difftests.rs`) with each set
//! of options, and what is LLVM's own: the host's vector width in the optimised IR,
//! snapshots of the unoptimised IR, the compile time of a ten-statement program, random
//! kernels.

use super::*;
use crate::codegen::difftests::lower;

fn all_codegens() -> Vec<Box<dyn Codegen>> {
    let opts = [
        LlvmOptions::default(),
        LlvmOptions { fma: false, ..LlvmOptions::default() },
        LlvmOptions { inline_math: false, ..LlvmOptions::default() },
        // The GPU's flattened (row, column) kernels, run here on the CPU.
        LlvmOptions { collapse: true, ..LlvmOptions::default() },
    ];
    opts.into_iter().map(|opts| Box::new(Llvm { opts }) as Box<dyn Codegen>).collect()
}

crate::codegen::difftests::cpu_backend_tests!(all_codegens);

#[test]
fn calls_with_ranges_past_the_end() {
    let p = lower(
        "fn f(x: f32[n]) -> y: f32[n] { y[i] = x[i] * 2 }",
        &[("n", 9)],
    );
    let code = compile(&p, &LlvmOptions::default()).expect("compiles");
    let f = code.kernel(0).expect("a loop kernel");
    let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
    let mut y = vec![0.0f32; 9];
    let args = [x.as_ptr() as *mut u8, y.as_mut_ptr().cast::<u8>()];
    // SAFETY: two buffers of nine f32s, as the program declares.
    unsafe { f(args.as_ptr(), 0, usize::MAX) };
    assert_eq!(y, x.iter().map(|v| v * 2.0).collect::<Vec<_>>());
    // A range past the end runs nothing and reads nothing.
    // SAFETY: as above.
    unsafe { f(args.as_ptr(), usize::MAX - 1, usize::MAX) };
}

/// Whether the optimised IR has vectors of `lanes` elements of `ty` (`float`, `double`).
fn has_vectors(ir: &str, ty: &str) -> bool {
    ir.lines()
        .filter(|l| !l.starts_with("define") && !l.starts_with("declare"))
        .any(|l| l.contains(&format!(" x {ty}>")))
}

#[test]
fn kernels_are_vectorised() {
    let p = lower(
        "fn f(x: f32[n], z: f32[n]) -> y: f32[n] { y[i] = x[i] * z[i] + 1 }",
        &[("n", 64)],
    );
    assert!(has_vectors(&emit_ir(&p, true).expect("emits"), "float"));
    let p = lower(
        "fn f(x: f64[n, m]) -> y: f64[n] { y[i] = x[i, j] }",
        &[("n", 4), ("m", 64)],
    );
    assert!(has_vectors(&emit_ir(&p, true).expect("emits"), "double"));
    // Transcendentals are vectorised with the loop, sin and cos with their fix-up.
    for op in ["exp", "log", "tanh", "sigmoid", "sin", "cos"] {
        let p = lower(
            &format!("fn f(x: f32[n]) -> y: f32[n] {{ y[i] = {op}(x[i]) }}"),
            &[("n", 256)],
        );
        let ir = emit_ir(&p, true).expect("emits");
        let body = ir
            .split("define")
            .find(|f| f.contains("@tessera_kernel0("))
            .unwrap_or_default();
        assert!(has_vectors(body, "float"), "{op} is not vectorised:\n{ir}");
        // The host's full width: 16 f32 lanes with AVX-512, 8 with AVX2.
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            assert!(
                body.contains("<16 x float>"),
                "{op} is not in 16 lanes:\n{ir}"
            );
        } else if std::is_x86_feature_detected!("avx2") {
            assert!(
                body.contains("<8 x float>"),
                "{op} is not in 8 lanes:\n{ir}"
            );
        }
        if matches!(op, "sin" | "cos") {
            assert!(
                body.contains("fix_f32_v"),
                "{op} calls no vector fix-up:\n{ir}"
            );
        }
    }
}

#[test]
fn compiled_code_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LlvmCode>();
    let p = lower(
        "fn f(x: f64[n]) -> y: f64[n] { y[i] = exp(x[i]) }",
        &[("n", 100)],
    );
    let code = std::thread::spawn(move || compile(&p, &LlvmOptions::default()).expect("compiles"))
        .join()
        .expect("compiles on another thread");
    let x = vec![1.0f64; 100];
    let mut y = vec![0.0f64; 100];
    let args = [x.as_ptr() as *mut u8, y.as_mut_ptr().cast::<u8>()];
    let f = code.kernel(0).expect("a loop kernel");
    // SAFETY: two buffers of 100 f64s, as the program declares.
    unsafe { f(args.as_ptr(), 0, 100) };
    assert!(y.iter().all(|&v| v == std::f64::consts::E), "{y:?}");
}

#[test]
fn ir_of_an_elementwise_kernel() {
    let p = lower(
        "fn f(x: f32[n], z: f32[n]) -> y: f32[n] { y[i] = max(x[i], 0) * z[i] + 1 }",
        &[("n", 64)],
    );
    insta::assert_snapshot!(emit_ir(&p, false).expect("emits"));
}

#[test]
fn ir_of_a_row_reduction() {
    let p = lower(
        "fn f(x: f64[n, m]) -> y: f64[n] { y[i] = x[i, j] * x[i, j] }",
        &[("n", 3), ("m", 8)],
    );
    insta::assert_snapshot!(emit_ir(&p, false).expect("emits"));
}

#[test]
fn ir_of_a_max_reduction_with_select() {
    let p = lower(
        "fn f(x: f32[n, m]) -> y: f32[n] { y[i] max= select(j <= i, x[i, j], -inf) }",
        &[("n", 4), ("m", 5)],
    );
    insta::assert_snapshot!(emit_ir(&p, false).expect("emits"));
}

/// The JIT compile time at O3 of bench/compare's ten-statement program (the issue asks
/// for under 100 ms). Release builds only: debug builds of Tessera are slow around LLVM.
#[test]
fn compile_time_of_ten_statements() {
    let src = include_str!("../../../../bench/compare/programs/ten_statements.tsr");
    let p = lower(src, &[("n", 1024), ("d", 256)]);
    let _ = compile(&p, &LlvmOptions::default()).expect("compiles");
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let code = compile(&p, &LlvmOptions::default()).expect("compiles");
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        assert!(code.kernel_count() > 0);
    }
    eprintln!(
        "ten statements: {} kernels, compile {best:.1} ms",
        p.kernels.len()
    );
    if !cfg!(debug_assertions) {
        assert!(best < 100.0, "compile took {best:.1} ms");
    }
}

#[test]
fn random_kernels_match_the_interpreter() {
    let mut vectorised = 0;
    crate::codegen::difftests::random_kernels(&all_codegens(), &mut |case, p| {
        if case % 10 == 0 {
            let ir = emit_ir(p, true).expect("emits");
            vectorised += usize::from(has_vectors(&ir, "float") || has_vectors(&ir, "double"));
        }
    });
    assert!(vectorised >= 5, "only {vectorised} of 15 sampled kernels vectorised");
}

#[test]
fn independent_row_and_column_loops_collapse_and_reductions_do_not() {
    let p = lower("fn f(x: f32[n, m], y: f32[n, m]) -> z: f32[n, m] { z[i, j] = x[i, j] * y[i, j] + 1 }", &[("n", 5), ("m", 7)]);
    let collapsed = compile(&p, &LlvmOptions { collapse: true, ..LlvmOptions::default() }).expect("compiles");
    let k = (0..collapsed.len()).find(|&k| collapsed.kernel(k).is_some()).expect("a loop kernel");
    assert_eq!(collapsed.parallel_extent(k), Some(35));
    let plain = compile(&p, &LlvmOptions::default()).expect("compiles");
    assert_eq!(plain.parallel_extent(k), Some(5));
    // A row reduction carries its accumulator along j: rows stay whole.
    let r = lower("fn f(x: f32[n, m]) -> s: f32[n] { s[i] = x[i, j] }", &[("n", 5), ("m", 7)]);
    let code = compile(&r, &LlvmOptions { collapse: true, ..LlvmOptions::default() }).expect("compiles");
    let k = (0..code.len()).find(|&k| code.kernel(k).is_some()).expect("a loop kernel");
    assert_eq!(code.parallel_extent(k), Some(5));
    // The flattened kernel computes what the loops do.
    let x: Vec<f32> = (0..35).map(|v| v as f32).collect();
    let y: Vec<f32> = (0..35).map(|v| (v % 3) as f32).collect();
    let mut z = vec![f32::NAN; 35];
    let f = collapsed.kernel(k).expect("kernel");
    let args = [x.as_ptr() as *mut u8, y.as_ptr() as *mut u8, z.as_mut_ptr().cast::<u8>()];
    // SAFETY: three buffers of 35 f32s, as the program declares; two ranges cover them.
    unsafe {
        f(args.as_ptr(), 0, 17);
        f(args.as_ptr(), 17, usize::MAX);
    }
    assert_eq!(z, x.iter().zip(&y).map(|(a, b)| a * b + 1.0).collect::<Vec<_>>());
}
