//! L-Mul (Luo & Sun 2024, "Addition is All You Need"): softmax attention and a LoRA
//! layer with every product computed by integer addition of bit patterns
//! (`CallOptions::mul`, `--mul lmul` on the command line), against the exact path: the
//! error of the outputs and the time of a call. See docs/lmul.md.
//!
//! Run it with `cargo run --release --example lmul`.

mod common;

use common::{best_of, f32s, first_f64, matrix, rel_err, report_check};
use ndarray::{arr0, ArrayD, ArrayViewD};
use tessera::{Backend, CallOptions, MulMode};

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

/// ‖got − exact‖ / ‖exact‖ in the Frobenius norm: the error of the output as a whole,
/// where the max-entry error of `rel_err` is dominated by sums that cancel.
fn frobenius_err(got: &ArrayD<f64>, exact: &ArrayD<f64>) -> f64 {
    let diff: f64 = got.iter().zip(exact).map(|(a, b)| (a - b) * (a - b)).sum();
    let norm: f64 = exact.iter().map(|b| b * b).sum();
    (diff / norm).sqrt()
}

/// Calls `f` in each mode: the relative error against the exact call and the best time.
fn compare(f: &tessera::Function<'_>, views: &[ArrayViewD<'_, f32>]) -> Result<(), Box<dyn std::error::Error>> {
    let shapes: Vec<&[usize]> = views.iter().map(|v| v.shape()).collect();
    let exact_opts = CallOptions::default();
    f.compile(&shapes, &exact_opts)?;
    let (out, t_exact) = best_of(5, || f.call_with(views, &exact_opts));
    let exact = first_f64(out?)?;
    println!("  {:8} {:>10} {:>9} {:>14} {:>14}", "mul", "time ms", "vs exact", "max rel. error", "Frobenius err.");
    println!("  {:8} {t_exact:10.3} {:>9} {:>14} {:>14}", "exact", "1.00x", "-", "-");
    for mul in [MulMode::Lmul(0), MulMode::Lmul(4), MulMode::Lmul(3)] {
        let opts = CallOptions { mul, ..CallOptions::default() };
        f.compile(&shapes, &opts)?;
        let (out, t) = best_of(5, || f.call_with(views, &opts));
        let got = first_f64(out?)?;
        let (err, frob) = (rel_err(&got, &exact), frobenius_err(&got, &exact));
        println!("  {:8} {t:10.3} {:8.1}x {err:14.2e} {frob:14.2e}", mul.to_string(), t / t_exact);
        // The compiled L-Mul code is what the reference evaluator computes in the mode.
        let oracle = f.call_with(views, &CallOptions { mul, backend: Backend::Reference, ..CallOptions::default() })?;
        let oracle = first_f64(oracle)?;
        report_check(&format!("{mul} against the reference evaluator in the same mode"), rel_err(&got, &oracle), 1e-4)?;
        report_check(&format!("{mul} against exact products, Frobenius (about the paper's error)"), frob, 0.15)?;
    }
    Ok(())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (n, d) = (512, 64);
    println!("softmax attention, n = {n}, d = {d} (f32; the exact path streams it, L-Mul runs it unfused):");
    let attention = tessera::Module::stdlib("attention")?;
    let (q, k, v) = (matrix(n, d, 1), matrix(n, d, 2), matrix(n, d, 3));
    let ins: Vec<ArrayD<f32>> = [q, k, v].iter().map(|m| f32s(&m.clone().into_dyn())).collect();
    let views: Vec<ArrayViewD<'_, f32>> = ins.iter().map(|a| a.view()).collect();
    compare(&attention.function("softmax")?, &views)?;

    let (n, d, o, r) = (512, 256, 256, 8);
    println!("\nLoRA, Y = X W + (alpha/r) X B A, n = {n}, d = {d}, o = {o}, r = {r} (f32):");
    let lowrank = tessera::Module::stdlib("lowrank")?;
    let (x, w, b, a) = (matrix(n, d, 4), matrix(d, o, 5), matrix(d, r, 6), matrix(r, o, 7));
    let mut ins: Vec<ArrayD<f32>> = [x, w, b, a].iter().map(|m| f32s(&m.clone().into_dyn())).collect();
    ins.push(arr0(16.0f32).into_dyn());
    let views: Vec<ArrayViewD<'_, f32>> = ins.iter().map(|a| a.view()).collect();
    compare(&lowrank.function("lora")?, &views)?;
    Ok(())
}
