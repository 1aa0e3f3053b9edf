//! Criterion benchmarks of the WORKLOADS.md rows through the JIT, one group per row.
//! Run with `cargo bench -p tessera-bench`; the side-by-side comparison with numpy,
//! opt_einsum and torch is `bench/compare/compare.py`.

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use tessera::{CallOptions, Module};

/// A stdlib module, one of its functions, and the dims to run it at.
type Row = (&'static str, &'static str, &'static [(&'static str, u64)]);

/// Sizes that take about a millisecond or more.
const ROWS: &[Row] = &[
    ("attention", "softmax", &[("n", 1024), ("m", 1024), ("d", 64), ("e", 64)]),
    ("attention", "causal", &[("n", 1024), ("d", 64), ("e", 64)]),
    ("tensor_attention", "exact", &[("n", 64), ("m1", 64), ("m2", 64), ("d", 32), ("e", 32)]),
    ("tensor_attention", "poly", &[("n", 512), ("m1", 512), ("m2", 512), ("d", 16), ("e", 16)]),
    ("tucker", "reconstruct", &[("a", 16), ("b", 16), ("c", 16), ("i", 128), ("j", 128), ("k", 128)]),
    ("tucker", "project", &[("a", 16), ("b", 16), ("c", 16), ("i", 128), ("j", 128), ("k", 128)]),
    ("cp", "reconstruct", &[("i", 128), ("j", 128), ("k", 128), ("r", 16)]),
    ("cp", "mttkrp", &[("i", 128), ("j", 128), ("k", 128), ("r", 16)]),
    ("equivariant", "grid_product", &[("k", 49), ("g", 200), ("i", 49)]),
    ("equivariant", "cp_product", &[("l1", 64), ("l2", 64), ("l3", 64), ("r", 32)]),
    ("graph_poly", "triangles", &[("n", 1024)]),
    ("graph_poly", "four_path", &[("n", 512)]),
    ("lowrank", "lora", &[("n", 2048), ("d", 1024), ("o", 1024), ("r", 16)]),
    ("lowrank", "galore_residual", &[("n", 1024), ("r", 32), ("m", 1024)]),
    ("lowrank", "adalora", &[("b", 256), ("d", 1024), ("r", 16), ("o", 1024)]),
    ("kron", "matvec", &[("m1", 128), ("n1", 128), ("m2", 128), ("n2", 128)]),
    ("kron", "kfac_precondition", &[("a", 512), ("g", 256)]),
    ("kron", "sherman_morrison", &[("n", 1024)]),
    ("grassmann", "plucker", &[("t", 4096), ("n", 32)]),
    ("norm", "layernorm", &[("b", 4096), ("d", 1024)]),
    ("norm", "rmsnorm", &[("b", 4096), ("d", 1024)]),
    ("completion", "masked_residual", &[("n", 1024), ("m", 1024), ("r", 16)]),
];

fn random(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    })
}

fn workloads(c: &mut Criterion) {
    for (module, function, dims) in ROWS {
        let m = Module::stdlib(module).expect("stdlib module");
        let f = m.function(function).expect("stdlib function");
        let compiled = f.compile_dims(dims, &CallOptions::default()).expect("compiles");
        let p = compiled.program();
        let inputs: Vec<ArrayD<f64>> = p.inputs.iter().enumerate().map(|(k, &b)| random(&p.buf(b).shape, k as u64 + 1)).collect();
        let name = format!("{module}::{function}");
        match f.dtype() {
            tessera::DType::F32 => {
                let typed: Vec<ArrayD<f32>> = inputs.iter().map(|a| a.mapv(|x| x as f32)).collect();
                let views: Vec<ArrayViewD<'_, f32>> = typed.iter().map(|a| a.view()).collect();
                c.bench_function(&name, |b| b.iter(|| compiled.run(&views).expect("runs")));
            }
            tessera::DType::F64 => {
                let views: Vec<ArrayViewD<'_, f64>> = inputs.iter().map(|a| a.view()).collect();
                c.bench_function(&name, |b| b.iter(|| compiled.run(&views).expect("runs")));
            }
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = workloads
}
criterion_main!(benches);
