//! Tucker decomposition from `std::tucker`: reconstruct a tensor from its core and
//! factors, then project it back. With orthonormal factors the projection recovers the
//! core exactly, which this example checks, along with a direct mode-by-mode computation.
//!
//! Run it with `cargo run --release --example tucker`.

mod common;

use common::{best_of, matrix, rel_err, report_check, show_plan, show_program, tensor3};
use ndarray::{Array2, Array3, Axis};

/// Orthonormal columns by Gram-Schmidt (twice, for accuracy), from a random matrix.
fn orthonormal(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut u = matrix(rows, cols, seed);
    for _ in 0..2 {
        for c in 0..cols {
            for prev in 0..c {
                let dot = u.column(c).dot(&u.column(prev));
                let p = u.column(prev).to_owned();
                u.column_mut(c).scaled_add(-dot, &p);
            }
            let norm = u.column(c).dot(&u.column(c)).sqrt();
            u.column_mut(c).mapv_inplace(|x| x / norm);
        }
    }
    u
}

/// Y = G ×₁ U1 ×₂ U2 ×₃ U3, one mode at a time with ndarray's matrix products.
fn reconstruct_direct(
    g: &Array3<f64>,
    u1: &Array2<f64>,
    u2: &Array2<f64>,
    u3: &Array2<f64>,
) -> Result<Array3<f64>, String> {
    let ((a, b, c), (i, j, k)) = (g.dim(), (u1.nrows(), u2.nrows(), u3.nrows()));
    let flat =
        |x: &Array3<f64>, r: usize, s: usize| x.to_shape((r, s)).map(|v| v.to_owned()).map_err(|e| e.to_string());
    // Mode 1: [a, b*c] -> [i, b*c].
    let t1 = u1.dot(&flat(g, a, b * c)?).into_shape_with_order((i, b, c)).map_err(|e| e.to_string())?;
    // Mode 2, per row x: U2 · T1[x] ([b, c] -> [j, c]).
    let mut t2 = Array3::zeros((i, j, c));
    for x in 0..i {
        t2.index_axis_mut(Axis(0), x).assign(&u2.dot(&t1.index_axis(Axis(0), x)));
    }
    // Mode 3: [i*j, c] · U3ᵀ -> [i*j, k].
    flat(&t2, i * j, c)?.dot(&u3.t()).into_shape_with_order((i, j, k)).map_err(|e| e.to_string())
}

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (i, j, k, a, b, c) = (60, 50, 40, 10, 8, 6);
    println!("Tucker: Y = G x1 U1 x2 U2 x3 U3 with Y: [{i}, {j}, {k}], core G: [{a}, {b}, {c}]\n");
    let module = tessera::Module::stdlib("tucker")?;
    let reconstruct = module.function("reconstruct")?;
    let project = module.function("project")?;
    let dims = [("i", i as u64), ("j", j as u64), ("k", k as u64), ("a", a as u64), ("b", b as u64), ("c", c as u64)];
    show_program(&reconstruct);
    show_plan(&reconstruct, &dims)?;
    show_program(&project);
    show_plan(&project, &dims)?;

    let g = tensor3(a, b, c, 1);
    let (u1, u2, u3) = (orthonormal(i, a, 2), orthonormal(j, b, 3), orthonormal(k, c, 4));
    let (y, t_rec) = best_of(3, || {
        reconstruct.call(&[g.view().into_dyn(), u1.view().into_dyn(), u2.view().into_dyn(), u3.view().into_dyn()])
    });
    let y = y?.into_iter().next().ok_or("reconstruct returned no output")?;
    let (g_back, t_proj) =
        best_of(3, || project.call(&[y.view(), u1.view().into_dyn(), u2.view().into_dyn(), u3.view().into_dyn()]));
    let g_back = g_back?.into_iter().next().ok_or("project returned no output")?;
    let (direct, t_direct) = best_of(3, || reconstruct_direct(&g, &u1, &u2, &u3));

    println!("time, Tessera reconstruct (reference evaluator, f64): {t_rec:8.2} ms");
    println!("time, Tessera project (reference evaluator, f64):     {t_proj:8.2} ms");
    println!("time, ndarray reconstruct mode by mode (f64):         {t_direct:8.2} ms\n");
    report_check("reconstruct against ndarray mode by mode", rel_err(&y, &direct?.into_dyn()), 1e-10)?;
    report_check("project(reconstruct(G)) == G for orthonormal factors", rel_err(&g_back, &g.into_dyn()), 1e-10)?;
    Ok(())
}
