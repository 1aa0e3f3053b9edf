//! The README's main job: write softmax attention the way the formula reads, run it on
//! generated data through Tessera, and check the result against a direct computation.
//!
//! Run it with `cargo run --release --example quickstart`.

use ndarray::{Array2, ArrayD, Axis};
use std::time::Instant;

const PROGRAM: &str = r#"
use std::attention

# Attention with a residual connection: O = softmax(Q Kᵀ/√d) V + Q.
fn attend(Q: f32[n, d], K: f32[n, d], V: f32[n, d]) -> O: f32[n, d] {
    A = attention::softmax(Q, K, V)
    O[i, c] = A[i, c] + Q[i, c]
}
"#;

/// Deterministic pseudo-random values in [-1, 1), so the example needs no RNG crate.
fn data(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    Array2::from_shape_fn((rows, cols), |_| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
}

/// The same computation written directly with ndarray, in f64.
fn reference(q: &Array2<f32>, k: &Array2<f32>, v: &Array2<f32>) -> Array2<f64> {
    let (q, k, v) = (q.mapv(f64::from), k.mapv(f64::from), v.mapv(f64::from));
    let d = q.ncols() as f64;
    let mut s = q.dot(&k.t()) / d.sqrt();
    for mut row in s.axis_iter_mut(Axis(0)) {
        let m = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|x| (x - m).exp());
        let z = row.sum();
        row.mapv_inplace(|x| x / z);
    }
    s.dot(&v) + &q
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (n, d) = (256, 64);
    println!("Tessera quickstart: softmax attention + residual, n = {n}, d = {d}\n");
    println!("Program:{PROGRAM}");

    let t0 = Instant::now();
    let module = tessera::Module::from_source(PROGRAM).map_err(|e| e.render(false))?;
    let f = module.function("attend")?;
    println!("Checked in {:.1} ms. The typed program, with the call inlined:\n", t0.elapsed().as_secs_f64() * 1e3);
    println!("{}", f.emit_tir());
    let plan = f.plan_for(&[("n", n as u64), ("d", d as u64)])?;
    println!("The plan Tessera finds for these sizes (FLOPs per step against the naive loop nest):\n");
    println!("{plan}");

    let (q, k, v) = (data(n, d, 1), data(n, d, 2), data(n, d, 3));
    let inputs = [q.view().into_dyn(), k.view().into_dyn(), v.view().into_dyn()];
    // The first call plans, lowers and JIT-compiles for these shapes; later calls reuse it.
    let t1 = Instant::now();
    let out: Vec<ArrayD<f32>> = f.call(&inputs)?;
    let first = t1.elapsed().as_secs_f64() * 1e3;
    let compiled = f.compile(&[q.shape(), k.shape(), v.shape()], &tessera::CallOptions::default())?;
    println!("The loop program the JIT runs (GEMM calls and fused loop kernels):\n");
    println!("{}", compiled.program());
    let mut best = f64::INFINITY;
    for _ in 0..20 {
        let t = Instant::now();
        f.call(&inputs)?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }

    let expected = reference(&q, &k, &v);
    let got = out[0].mapv(f64::from);
    let max_err = got.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    println!(
        "Ran on the JIT: first call {first:.1} ms (plan {:.1} ms, compile {:.1} ms), then {best:.3} ms per call; output shape {:?}",
        compiled.plan_ms,
        compiled.compile_ms,
        out[0].shape()
    );
    println!("O[0, ..4] = {:?}", &got.as_slice().unwrap_or(&[])[..4.min(got.len())]);
    println!("max |Tessera - direct ndarray computation| = {max_err:.2e}");
    if max_err < 1e-4 {
        println!("check: OK");
        Ok(())
    } else {
        Err(format!("check FAILED: error {max_err:.2e} is over 1e-4").into())
    }
}
