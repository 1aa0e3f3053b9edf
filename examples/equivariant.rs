//! Equivariant tensor products from `std::equivariant`, each on data where the answer is
//! known:
//! - `cg_product` called with the built-in constant `cg(1, 1, 1)` (e3nn convention), the
//!   Levi-Civita symbol ε/√6, so the product is a channel-mixed cross product:
//!   rotating both inputs rotates the output, and the example checks that equivariance;
//! - `grid_product` with the built-in constants `sphere_grid` and `sphere_project` (real
//!   spherical harmonics on a Gauss-Legendre × uniform grid): the product of two l ≤ 1
//!   signals is an l ≤ 2 signal, recovered exactly, and rotating both inputs rotates it;
//! - `cp_product` against D·((Aᵀx) ⊙ (Bᵀy)), the cheap form of the CP-coupled product.
//!
//! Run it with `cargo run --release --example equivariant`.

mod common;

use common::{best_of, f32s, first_f64, matrix, rel_err, report_check, show_plan, show_program, tensor3, vector};
use ndarray::{Array1, Array2, Array3, ArrayD};

/// The rotation by `angle` about the unit vector `axis` (Rodrigues' formula).
fn rotation(axis: [f64; 3], angle: f64) -> Array2<f64> {
    let n = (axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]).sqrt();
    let [x, y, z] = axis.map(|v| v / n);
    let (s, c) = angle.sin_cos();
    let t = 1.0 - c;
    ndarray::arr2(&[
        [c + x * x * t, x * y * t - z * s, x * z * t + y * s],
        [y * x * t + z * s, c + y * y * t, y * z * t - x * s],
        [z * x * t - y * s, z * y * t + x * s, c + z * z * t],
    ])
}

/// Applies the rotation to the last axis (the vector components) of a [z, u, 3] tensor.
fn rotate(x: &Array3<f64>, r: &Array2<f64>) -> Array3<f64> {
    let (z, u, _) = x.dim();
    Array3::from_shape_fn((z, u, 3), |(b, p, i)| (0..3).map(|j| r[[i, j]] * x[[b, p, j]]).sum())
}

fn call1(f: &tessera::Function<'_>, inputs: &[ArrayD<f64>]) -> Result<ArrayD<f64>, Box<dyn std::error::Error>> {
    let ins: Vec<ArrayD<f32>> = inputs.iter().map(f32s).collect();
    let views: Vec<_> = ins.iter().map(|a| a.view()).collect();
    Ok(first_f64(f.call(&views)?)?)
}

/// A program that calls `cg_product` with the built-in l=1 ⊗ l=1 → l=1 coupling tensor.
const CG_PROGRAM: &str = r#"
use std::equivariant

fn cross_product(W: f32[u, v, w], x: f32[z, u, 3], y: f32[z, v, 3]) -> out: f32[z, w, 3] {
    C = cg(1, 1, 1)
    out = equivariant::cg_product(W, C, x, y)
}
"#;

fn cg_demo() -> Result<(), Box<dyn std::error::Error>> {
    let (z, u, v, w) = (64, 16, 16, 16);
    println!("cg_product: batch {z}, channels {u} x {v} -> {w}, l=1 x l=1 -> l=1, C = cg(1, 1, 1) built in");
    println!("Program:{CG_PROGRAM}");
    let module = tessera::Module::from_source(CG_PROGRAM)?;
    let f = module.function("cross_product")?;
    show_plan(&f, &[("z", z as u64), ("u", u as u64), ("v", v as u64), ("w", w as u64)])?;
    // The same tensor as data, to check that it is the Levi-Civita symbol / √6.
    let c = Array3::from_shape_vec((3, 3, 3), tessera_compiler::constants::clebsch_gordan(1, 1, 1)?)?;
    let mut levi_civita = Array3::<f64>::zeros((3, 3, 3));
    for (i, j, k, sign) in
        [(0, 1, 2, 1.0), (1, 2, 0, 1.0), (2, 0, 1, 1.0), (0, 2, 1, -1.0), (2, 1, 0, -1.0), (1, 0, 2, -1.0)]
    {
        levi_civita[[i, j, k]] = sign / 6f64.sqrt();
    }
    report_check(
        "cg(1, 1, 1) is the Levi-Civita symbol / sqrt 6",
        rel_err(&c.into_dyn(), &levi_civita.into_dyn()),
        1e-12,
    )?;
    let (wt, x, y) = (tensor3(u, v, w, 1), tensor3(z, u, 3, 2), tensor3(z, v, 3, 3));
    let (out, t) = best_of(3, || call1(&f, &[wt.clone().into_dyn(), x.clone().into_dyn(), y.clone().into_dyn()]));
    let out = out?;

    // Direct: mix the channels of the cross products x[z, u] × y[z, v] with W.
    let mut direct = Array3::<f64>::zeros((z, w, 3));
    for b in 0..z {
        for p in 0..u {
            for q in 0..v {
                let (a, bb) = (x.slice(ndarray::s![b, p, ..]), y.slice(ndarray::s![b, q, ..]));
                let cross = [a[1] * bb[2] - a[2] * bb[1], a[2] * bb[0] - a[0] * bb[2], a[0] * bb[1] - a[1] * bb[0]];
                for o in 0..w {
                    for k in 0..3 {
                        direct[[b, o, k]] += wt[[p, q, o]] * cross[k] / 6f64.sqrt();
                    }
                }
            }
        }
    }
    let r = rotation([1.0, 2.0, 3.0], 0.7);
    let rotated_in = call1(&f, &[wt.into_dyn(), rotate(&x, &r).into_dyn(), rotate(&y, &r).into_dyn()])?;
    let out3 = out.clone().into_dimensionality::<ndarray::Ix3>()?;
    println!("time, Tessera (reference evaluator, f32): {t:.2} ms");
    report_check("cg_product against the channel-mixed cross products", rel_err(&out, &direct.into_dyn()), 1e-4)?;
    report_check(
        "cg_product(R x, R y) == R cg_product(x, y)",
        rel_err(&rotated_in, &rotate(&out3, &r).into_dyn()),
        1e-4,
    )?;
    println!();
    Ok(())
}

/// Real spherical harmonics of degree l <= 2 at a unit vector (9 values, e3nn order).
fn real_sh(p: [f64; 3]) -> [f64; 9] {
    let [x, y, z] = p;
    let (c0, c1, c2, c20, c22) = (
        0.282_094_791_773_878_1,
        0.488_602_511_902_919_9,
        1.092_548_430_592_079_2,
        0.315_391_565_252_52,
        0.546_274_215_296_039_6,
    );
    [c0, c1 * y, c1 * z, c1 * x, c2 * x * y, c2 * y * z, c20 * (3.0 * z * z - 1.0), c2 * x * z, c22 * (x * x - y * y)]
}

/// A program that calls `grid_product` with the built-in grid constants: degree <= 1
/// inputs (4 coefficients) to a degree <= 2 output (9), on the grid of order
/// 4 = 2·1 + 2 (3 x 5 points), where the product is exact.
const GRID_PROGRAM: &str = r#"
use std::equivariant

fn grid_tp(x: f32[4], y: f32[4]) -> out: f32[9] {
    Y = sphere_grid(1, 4)
    Yi = sphere_project(2, 4)
    out = equivariant::grid_product(Yi, Y, x, y)
}
"#;

fn grid_demo() -> Result<(), Box<dyn std::error::Error>> {
    use tessera_compiler::constants::{sphere_grid, sphere_grid_points, sphere_project};
    println!("grid_product: l <= 1 inputs, l <= 2 output, Y = sphere_grid(1, 4), Yi = sphere_project(2, 4) built in");
    println!("Program:{GRID_PROGRAM}");
    let module = tessera::Module::from_source(GRID_PROGRAM)?;
    let f = module.function("grid_tp")?;
    show_plan(&f, &[])?;
    let (x, y) = (vector(4, 4), vector(4, 5));
    let (out, t) = best_of(3, || call1(&f, &[x.clone().into_dyn(), y.clone().into_dyn()]));
    let out = out?;
    // The same constants as data.
    let g = sphere_grid_points(4)?.points.len();
    let y_in = Array2::from_shape_vec((g, 4), sphere_grid(1, 4)?)?;
    let y_back = Array2::from_shape_vec((9, g), sphere_project(2, 4)?)?;
    let direct = y_back.dot(&(y_in.dot(&x) * y_in.dot(&y)));
    println!("time, Tessera (reference evaluator, f32): {t:.2} ms");
    report_check("grid_product against Yi ((Y x) * (Y y))", rel_err(&out, &direct.into_dyn()), 1e-4)?;
    // The product signal is in the span of l <= 2, so its coefficients reproduce it
    // anywhere; `real_sh` here is written out independently of the constants.
    let p = {
        let v = [0.3, -0.5, 0.8];
        let n = (0.09f64 + 0.25 + 0.64).sqrt();
        v.map(|c| c / n)
    };
    let sh = Array1::from(real_sh(p).to_vec());
    let value = out.iter().zip(sh.iter()).map(|(c, s)| c * s).sum::<f64>();
    let expected = x.dot(&sh.slice(ndarray::s![..4])) * y.dot(&sh.slice(ndarray::s![..4]));
    report_check(
        "the output signal equals f(p) g(p) at a point off the grid",
        (value - expected).abs() / expected.abs(),
        1e-4,
    )?;
    // Rotating both inputs rotates the output: D[a, b] = ∫ Y_a(R p) Y_b(p), block-diagonal
    // over degrees, integrated exactly on the order-4 grid.
    let r = rotation([-1.0, 0.5, 2.0], 1.1);
    let grid = sphere_grid_points(4)?;
    let mut d = Array2::<f64>::zeros((9, 9));
    for (&q, &w) in grid.points.iter().zip(&grid.weights) {
        let rq = [0, 1, 2].map(|i| (0..3).map(|j| r[[i, j]] * q[j]).sum::<f64>());
        let (rotated, here) = (real_sh(rq), real_sh(q));
        for a in 0..9 {
            for b in 0..9 {
                d[[a, b]] += w * rotated[a] * here[b];
            }
        }
    }
    let d_in = d.slice(ndarray::s![..4, ..4]).to_owned();
    let rotated_in = call1(&f, &[d_in.dot(&x).into_dyn(), d_in.dot(&y).into_dyn()])?;
    let out1 = out.into_dimensionality::<ndarray::Ix1>()?;
    report_check("grid_tp(D x, D y) == D grid_tp(x, y)", rel_err(&rotated_in, &d.dot(&out1).into_dyn()), 1e-4)?;
    println!();
    Ok(())
}

fn cp_demo(module: &tessera::Module) -> Result<(), Box<dyn std::error::Error>> {
    let f = module.function("cp_product")?;
    let (l, r) = (49, 64);
    println!("cp_product: irreps up to L = 6 ({l} components each), CP rank {r}");
    show_program(&f);
    let lu = l as u64;
    show_plan(&f, &[("l1", lu), ("l2", lu), ("l3", lu), ("r", r as u64)])?;
    let (a, b, d, x, y) = (matrix(l, r, 6), matrix(l, r, 7), matrix(l, r, 8), vector(l, 9), vector(l, 10));
    let (out, t) = best_of(3, || {
        call1(
            &f,
            &[
                a.clone().into_dyn(),
                b.clone().into_dyn(),
                d.clone().into_dyn(),
                x.clone().into_dyn(),
                y.clone().into_dyn(),
            ],
        )
    });
    let (direct, t_direct) = best_of(3, || d.dot(&(a.t().dot(&x) * b.t().dot(&y))));
    println!("time, Tessera (reference evaluator, f32, builds the {l}^3 tensor as written): {t:.2} ms");
    println!("time, ndarray D ((A^T x) * (B^T y)) (f64):                                 {t_direct:.3} ms");
    report_check("cp_product against D ((A^T x) * (B^T y))", rel_err(&out?, &direct.into_dyn()), 1e-4)?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let module = tessera::Module::stdlib("equivariant")?;
    cg_demo()?;
    grid_demo()?;
    cp_demo(&module)
}
