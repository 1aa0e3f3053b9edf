//! Graph polynomials from `std::graph_poly` on a random undirected graph: the invariants
//! are checked against counting subgraphs by brute force (triangles, closed 4-walks), the
//! equivariant ones against matrix powers.
//!
//! Run it with `cargo run --release --example graph_poly`.

mod common;

use common::{best_of, data, rel_err, report_check, show_plan, show_program};
use ndarray::{Array2, ArrayD};

/// A random simple undirected graph (Erdős–Rényi, edge probability `p`) as a 0/1 matrix.
fn random_graph(n: usize, p: f64, seed: u64) -> Array2<f64> {
    let u = data(&[n, n], seed);
    Array2::from_shape_fn((n, n), |(i, j)| {
        let (lo, hi) = if i < j { (i, j) } else { (j, i) };
        if i != j && (u[[lo, hi]] + 1.0) / 2.0 < p {
            1.0
        } else {
            0.0
        }
    })
}

/// Runs one polynomial, timing it, and prints a row with its plan's cost and `note`.
fn call(module: &tessera::Module, name: &str, a: &Array2<f64>) -> Result<ArrayD<f64>, Box<dyn std::error::Error>> {
    let f = module.function(name)?;
    let plan = f.plan_for(&[("n", a.nrows() as u64)])?;
    let (out, ms) = best_of(3, || f.call(&[a.view().into_dyn()]));
    let out = out?.into_iter().next().ok_or("no output")?;
    let value = if out.ndim() == 0 { format!("{}", out.sum()) } else { format!("shape {:?}", out.shape()) };
    println!("{name:<18} {:>11.2e} {:>11.2e} {ms:>12.2}   {value}", plan.flops, plan.naive_flops);
    Ok(out)
}

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (n, p) = (120, 0.1);
    let a = random_graph(n, p, 7);
    let edges = a.sum() / 2.0;
    println!("Random graph: {n} nodes, {edges} edges\n");
    let module = tessera::Module::stdlib("graph_poly")?;
    let four_path = module.function("four_path")?;
    show_program(&four_path);
    show_plan(&four_path, &[("n", n as u64)])?;

    // Brute-force counts, by enumerating node triples and 4-walks of the adjacency lists.
    let nbrs: Vec<Vec<usize>> = (0..n).map(|i| (0..n).filter(|&j| a[[i, j]] == 1.0).collect()).collect();
    let (triangles, t_brute) = best_of(1, || {
        let mut count = 0u64;
        for i in 0..n {
            for &j in nbrs[i].iter().filter(|&&j| j > i) {
                count += nbrs[j].iter().filter(|&&k| k > j && a[[k, i]] == 1.0).count() as u64;
            }
        }
        count
    });
    let closed_walks: f64 = (0..n)
        .map(|i| {
            nbrs[i]
                .iter()
                .map(|&j| nbrs[j].iter().map(|&k| nbrs[k].iter().filter(|&&l| a[[l, i]] == 1.0).count()).sum::<usize>())
                .sum::<usize>() as f64
        })
        .sum();

    let a2 = a.dot(&a);
    let a3 = a2.dot(&a);
    println!("{:<18} {:>11} {:>11} {:>12}   value", "polynomial", "plan FLOPs", "naive", "Tessera ms");
    let t = call(&module, "triangles", &a)?.sum();
    let c = call(&module, "four_cycle", &a)?.sum();
    let tt = call(&module, "tailed_triangles", &a)?.sum();
    let nt = call(&module, "node_triangles", &a)?;
    let et = call(&module, "edge_triangles", &a)?;
    let fp = call(&module, "four_path", &a)?;
    println!("\nbrute force: {triangles} triangles ({t_brute:.2} ms), {closed_walks} closed 4-walks\n");

    report_check("triangles = 6 x brute-force count", (t - 6.0 * triangles as f64).abs() / t.max(1.0), 1e-12)?;
    report_check("four_cycle = brute-force closed 4-walks", (c - closed_walks).abs() / c.max(1.0), 1e-12)?;
    let degree = a.sum_axis(ndarray::Axis(1));
    let tailed = (&a3.diag() * &degree).sum();
    report_check("tailed_triangles = sum_i (A^3)_ii deg(i)", (tt - tailed).abs() / tailed.max(1.0), 1e-12)?;
    report_check("node_triangles = diag(A^3)", rel_err(&nt, &a3.diag().to_owned().into_dyn()), 1e-12)?;
    report_check("edge_triangles = A^2 * A", rel_err(&et, &(&a2 * &a).into_dyn()), 1e-12)?;
    report_check("four_path = A^3 * A", rel_err(&fp, &(&a3 * &a).into_dyn()), 1e-12)?;
    Ok(())
}
