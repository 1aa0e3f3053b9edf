//! Prints the GEMM rate (GFLOP/s) of a few shapes on 2 threads.
//!
//! Run with `cargo run -p tessera-runtime --release --example gemm_rate`. This measures;
//! the tests never assert speed (DESIGN.md §9).

use std::time::Instant;
use tessera_runtime::gemm::{gemm, GemmDesc};
use tessera_runtime::{with_threads, AlignedBuf, GemmScalar, RuntimeError};

const THREADS: usize = 2;

/// Best-of-`reps` GFLOP/s of an (m x k) · (k x n) row-major GEMM.
fn rate<T: GemmScalar>(m: usize, n: usize, k: usize, reps: usize) -> Result<f64, RuntimeError> {
    let mut a = AlignedBuf::zeroed_elems::<T>(m * k)?;
    let mut b = AlignedBuf::zeroed_elems::<T>(k * n)?;
    let mut c = AlignedBuf::zeroed_elems::<T>(m * n)?;
    for (i, x) in a.as_mut_slice::<T>().iter_mut().enumerate() {
        *x = T::from_f64((i % 7) as f64 * 0.25 - 0.75);
    }
    for (i, x) in b.as_mut_slice::<T>().iter_mut().enumerate() {
        *x = T::from_f64((i % 5) as f64 * 0.5 - 1.0);
    }
    let desc = GemmDesc::row_major(m, n, k);
    let mut best = f64::INFINITY;
    // The first run warms caches and the pool; it is not counted.
    for rep in 0..=reps {
        let t = Instant::now();
        // SAFETY: the buffers hold exactly the row-major m x k, k x n and m x n matrices.
        unsafe {
            gemm(
                &desc,
                &[],
                a.as_ptr().cast::<T>(),
                b.as_ptr().cast::<T>(),
                c.as_mut_ptr().cast::<T>(),
                THREADS,
            )
        };
        let s = t.elapsed().as_secs_f64();
        if rep > 0 {
            best = best.min(s);
        }
    }
    Ok(2.0 * (m * n * k) as f64 / best / 1e9)
}

fn main() -> Result<(), RuntimeError> {
    with_threads(THREADS, || -> Result<(), RuntimeError> {
        for (m, n, k, reps) in [(1024, 1024, 1024, 10), (4096, 64, 4096, 10)] {
            let f32_rate = rate::<f32>(m, n, k, reps)?;
            let f64_rate = rate::<f64>(m, n, k, reps)?;
            println!(
                "{m}x{n}x{k} on {THREADS} threads: f32 {f32_rate:6.1} GFLOP/s, f64 {f64_rate:6.1} GFLOP/s"
            );
        }
        Ok(())
    })?
}
