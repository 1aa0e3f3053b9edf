//! An e3nn-style tensor product, as in a NequIP convolution: node features
//! `8x0e + 8x1o` coupled channel-wise (mode `uvu`) with the spherical harmonics
//! `1x0e + 1x1o` of an edge direction, into `8x0e + 8x1o + 8x1e`, over every allowed
//! path with e3nn's normalisation. `tessera::equivariant::TensorProduct` writes the
//! `.tsr` program (one `cg(l1, l2, l3)` constant per path, which runs unrolled by its
//! nonzeros), plans it and runs it on flat features in e3nn's layout.
//!
//! The example prints the program and its plan, then checks equivariance: rotating the
//! degree-1 parts of both inputs rotates the degree-1 parts of the output and leaves the
//! scalars unchanged.
//!
//! Run it with `cargo run --release --example tensor_product`.

mod common;

use common::{matrix, vector};
use ndarray::Array2;
use tessera::equivariant::{Mode, TensorProduct};
use tessera::{CallOptions, DType};

/// A rotation about `axis` by `angle` (Rodrigues), as a 3×3 row-major array.
fn rotation(axis: [f64; 3], angle: f64) -> [[f64; 3]; 3] {
    let n = axis.iter().map(|v| v * v).sum::<f64>().sqrt();
    let [x, y, z] = axis.map(|v| v / n);
    let (s, c) = angle.sin_cos();
    let t = 1.0 - c;
    [
        [c + x * x * t, x * y * t - z * s, x * z * t + y * s],
        [y * x * t + z * s, c + y * y * t, y * z * t - x * s],
        [z * x * t - y * s, z * y * t + x * s, c + z * z * t],
    ]
}

/// Rotates every degree-1 block of a flat feature. The real basis orders the three
/// components of degree 1 as (y, z, x) (see `tessera_compiler::constants`), so the
/// rotation acts on them through that permutation.
fn rotate(x: &Array2<f64>, irreps: &tessera::equivariant::Irreps, r: &[[f64; 3]; 3]) -> Array2<f64> {
    let perm = [1, 2, 0];
    let mut out = x.clone();
    for (b, off) in irreps.0.iter().zip(irreps.offsets()) {
        if b.ir.l != 1 {
            continue;
        }
        for row in 0..x.nrows() {
            for ch in 0..b.mul {
                let at = off + 3 * ch;
                for a in 0..3 {
                    out[[row, at + a]] = (0..3).map(|c| r[perm[a]][perm[c]] * x[[row, at + c]]).sum();
                }
            }
        }
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tp = TensorProduct::new("8x0e + 8x1o", "1x0e + 1x1o", "8x0e + 8x1o + 8x1e", Mode::Uvu, DType::F64)?;
    let spec = tp.spec();
    println!("{} ⊗ {} → {} ({}), {} paths, {} weights", spec.in1, spec.in2, spec.out, spec.mode, spec.instructions.len(), spec.weight_numel());
    println!("\nThe generated program:\n{}", tp.source());
    let z = 1000u64;
    println!("{}", tp.function()?.plan_for(&[("z", z)])?);

    let z = z as usize;
    let x = matrix(z, spec.in1.dim(), 1);
    let y = matrix(z, spec.in2.dim(), 2);
    let w = vector(spec.weight_numel(), 3);
    let opts = CallOptions::default();
    let start = std::time::Instant::now();
    let out = tp.call(x.view(), y.view(), w.view(), &opts)?;
    println!("first call (compiles): {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    let start = std::time::Instant::now();
    let again = tp.call(x.view(), y.view(), w.view(), &opts)?;
    println!("second call: {:.3} ms for a batch of {z}", start.elapsed().as_secs_f64() * 1e3);
    assert_eq!(out, again);

    let r = rotation([1.0, 2.0, -0.5], 0.7);
    let rotated_first = tp.call(rotate(&x, &spec.in1, &r).view(), rotate(&y, &spec.in2, &r).view(), w.view(), &opts)?;
    let rotated_after = rotate(&out, &spec.out, &r);
    let err = (&rotated_first - &rotated_after).mapv(f64::abs).fold(0.0f64, |a, &b| a.max(b));
    println!("equivariance: |TP(Rx, Ry) - R TP(x, y)| = {err:.2e}");
    if err > 1e-12 {
        return Err(format!("the product is not equivariant: off by {err}").into());
    }
    println!("ok");
    Ok(())
}
