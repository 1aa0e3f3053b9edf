//! Times every stdlib function at the workload sizes of WORKLOADS.md on the evaluator
//! Tessera runs today, with the cost of the plan Tessera finds, and prints a markdown table (the source of the numbers in
//! `docs/`). Inputs are random in [-1, 1); only the time is of interest here, the values
//! are checked by `tests/stdlib.rs`.
//!
//! Run it with `cargo run --release --example stdlib_timings` (about a minute).

mod common;

use common::{best_of, data};
use ndarray::ArrayD;

/// A stdlib function and the size of each of its dims.
type Case = (&'static str, &'static str, &'static [(&'static str, usize)]);

/// `(module, function, dims)`: the sizes the workload table and bench/ use.
const CASES: &[Case] = &[
    ("attention", "softmax", &[("n", 256), ("m", 256), ("d", 64), ("e", 64)]),
    ("attention", "causal", &[("n", 256), ("d", 64), ("e", 64)]),
    ("tensor_attention", "exact", &[("n", 64), ("m1", 64), ("m2", 64), ("d", 16), ("e", 16)]),
    ("tensor_attention", "poly", &[("n", 64), ("m1", 64), ("m2", 64), ("d", 8), ("e", 8)]),
    ("tucker", "reconstruct", &[("i", 40), ("j", 30), ("k", 20), ("a", 8), ("b", 6), ("c", 4)]),
    ("tucker", "project", &[("i", 40), ("j", 30), ("k", 20), ("a", 8), ("b", 6), ("c", 4)]),
    ("cp", "reconstruct", &[("i", 50), ("j", 40), ("k", 30), ("r", 8)]),
    ("cp", "mttkrp", &[("i", 50), ("j", 40), ("k", 30), ("r", 8)]),
    ("equivariant", "cg_product", &[("z", 32), ("u", 8), ("v", 8), ("w", 8), ("i", 5), ("j", 5), ("k", 5)]),
    ("equivariant", "grid_product", &[("k", 49), ("g", 200), ("i", 49)]),
    ("equivariant", "cp_product", &[("l1", 16), ("l2", 16), ("l3", 16), ("r", 32)]),
    ("graph_poly", "triangles", &[("n", 100)]),
    ("graph_poly", "four_cycle", &[("n", 100)]),
    ("graph_poly", "tailed_triangles", &[("n", 100)]),
    ("graph_poly", "node_triangles", &[("n", 100)]),
    ("graph_poly", "edge_triangles", &[("n", 100)]),
    ("graph_poly", "four_path", &[("n", 100)]),
    ("lowrank", "lora", &[("n", 512), ("d", 256), ("o", 256), ("r", 8)]),
    ("lowrank", "eggroll", &[("m", 16), ("b", 8), ("i", 64), ("o", 64), ("r", 2)]),
    ("lowrank", "eggroll_update", &[("m", 16), ("i", 64), ("o", 64), ("r", 2)]),
    ("lowrank", "galore", &[("n", 256), ("m", 128), ("r", 8)]),
    ("lowrank", "galore_residual", &[("n", 256), ("m", 128), ("r", 8)]),
    ("lowrank", "adalora", &[("b", 64), ("d", 256), ("r", 8), ("o", 256)]),
    ("kron", "matvec", &[("m1", 32), ("n1", 32), ("m2", 32), ("n2", 32)]),
    ("kron", "kfac_precondition", &[("a", 128), ("g", 64)]),
    ("kron", "sherman_morrison", &[("n", 256)]),
    ("grassmann", "plucker", &[("t", 1000), ("n", 16)]),
    ("norm", "layernorm", &[("b", 512), ("d", 256)]),
    ("norm", "rmsnorm", &[("b", 512), ("d", 256)]),
    ("norm", "evonorm_s0", &[("b", 32), ("s", 64), ("g", 8), ("c", 8)]),
    ("completion", "masked_residual", &[("n", 300), ("m", 200), ("r", 10)]),
];

/// The shape of every input of `f` with its dims set to `dims`.
fn input_shapes(f: &tessera::Function<'_>, dims: &[(&str, usize)]) -> Result<Vec<Vec<usize>>, String> {
    let tir = f.tir();
    let size_of = |name: &str| {
        dims.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or(format!("no size for dim `{name}` of `{}`", f.name()))
    };
    let mut shapes = Vec::new();
    for &t in &tir.inputs {
        let mut shape = Vec::new();
        for size in &tir.tensor(t).shape {
            let mut n = size.coeff as usize;
            for d in &size.syms {
                n *= size_of(&tir.dims[d.index()].name)?;
            }
            shape.push(n);
        }
        shapes.push(shape);
    }
    Ok(shapes)
}

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    println!("| function | sizes | plan FLOPs | naive FLOPs | Tessera reference evaluator, f32 (ms, best of 3) |");
    println!("|---|---|---:|---:|---:|");
    for (k, (module_name, function, dims)) in CASES.iter().enumerate() {
        let module = tessera::Module::stdlib(module_name)?;
        let f = module.function(function)?;
        let inputs: Vec<ArrayD<f32>> = input_shapes(&f, dims)?
            .iter()
            .enumerate()
            .map(|(j, s)| data(s, (100 * k + j) as u64).mapv(|x| x as f32))
            .collect();
        let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
        let opts = tessera::CallOptions { dtype: Some(tessera::DType::F32), ..Default::default() };
        let (out, ms) = best_of(3, || f.call_with(&views, &opts));
        out?;
        let sizes: Vec<String> = dims.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let plan_dims: Vec<(&str, u64)> = dims.iter().map(|(n, v)| (*n, *v as u64)).collect();
        let plan = f.plan_for(&plan_dims)?;
        println!(
            "| `{module_name}::{function}` | {} | {:.2e} | {:.2e} | {ms:.2} |",
            sizes.join(" "),
            plan.flops,
            plan.naive_flops
        );
    }
    Ok(())
}
