//! Helpers shared by the examples: deterministic data, timing, the comparison with a
//! direct computation, and printing what Tessera makes of a function.

// Each example uses only some of these helpers.
#![allow(dead_code)]

use ndarray::{Array1, Array2, Array3, ArrayD, Dimension, Ix1, Ix2, Ix3};
use std::time::Instant;

/// Deterministic pseudo-random values in [-1, 1), so the examples need no RNG crate.
pub fn data(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ArrayD::from_shape_fn(shape, |_| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    })
}

pub fn vector(n: usize, seed: u64) -> Array1<f64> {
    fixed::<Ix1>(data(&[n], seed))
}

pub fn matrix(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    fixed::<Ix2>(data(&[rows, cols], seed))
}

pub fn tensor3(a: usize, b: usize, c: usize, seed: u64) -> Array3<f64> {
    fixed::<Ix3>(data(&[a, b, c], seed))
}

/// `data` made the shape it was generated with; the shape always matches.
fn fixed<D: Dimension>(a: ArrayD<f64>) -> ndarray::Array<f64, D> {
    match a.into_dimensionality::<D>() {
        Ok(a) => a,
        Err(e) => unreachable!("generated with the requested rank: {e}"),
    }
}

/// Runs `f` `reps` times and returns the last result and the fastest time in milliseconds.
pub fn best_of<T>(reps: usize, mut f: impl FnMut() -> T) -> (T, f64) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        out = Some(r);
    }
    match out {
        Some(r) => (r, best),
        None => unreachable!("reps.max(1) runs at least once"),
    }
}

/// Largest |got - expected| over the largest |expected|.
pub fn rel_err(got: &ArrayD<f64>, expected: &ArrayD<f64>) -> f64 {
    if got.shape() != expected.shape() || got.iter().any(|x| !x.is_finite()) {
        return f64::INFINITY;
    }
    let scale = expected.iter().fold(f64::MIN_POSITIVE, |a, b| a.max(b.abs()));
    got.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale
}

/// Prints the check and turns a failure into an error, so the example exits non-zero.
pub fn report_check(what: &str, err: f64, tol: f64) -> Result<(), String> {
    if err <= tol {
        println!("check {what}: OK (max relative error {err:.1e}, tolerance {tol:.0e})");
        Ok(())
    } else {
        Err(format!("check {what} FAILED: max relative error {err:.1e} is over {tol:.0e}"))
    }
}

/// The first output of a call, as f64 for comparison.
pub fn first_f64(out: Vec<ArrayD<f32>>) -> Result<ArrayD<f64>, String> {
    out.into_iter().next().map(|a| a.mapv(f64::from)).ok_or_else(|| "the call returned no output".to_string())
}

/// Converts f64 data to the f32 the stdlib functions are declared with.
pub fn f32s(a: &ArrayD<f64>) -> ArrayD<f32> {
    a.mapv(|x| x as f32)
}

/// Prints what Tessera makes of `f`: the typed program, calls inlined and sums explicit.
pub fn show_program(f: &tessera::Function<'_>) {
    println!("Typed program (TIR):");
    for line in f.emit_tir().lines() {
        println!("    {line}");
    }
    println!();
}

/// Runs an example's body and prints an error the way a person reads it (with its
/// source excerpts for compile errors), exiting non-zero on failure.
pub fn main_with(body: impl FnOnce() -> Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match body() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<tessera::Error>() {
                Some(te) => eprint!("{}", te.render(false)),
                None => eprintln!("error: {e}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints the plan Tessera finds for `f` at `dims` (a costed table of steps) and returns it.
pub fn show_plan(f: &tessera::Function<'_>, dims: &[(&str, u64)]) -> Result<tessera::Plan, tessera::Error> {
    let plan = f.plan_for(dims)?;
    println!("The plan Tessera finds:");
    for line in plan.to_string().lines() {
        println!("    {line}");
    }
    println!();
    Ok(plan)
}
