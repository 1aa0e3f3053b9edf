//! The compile-latency set: every stdlib function at benchmark sizes and the multi-statement
//! programs of `bench/latency/*.tsr`, each with the dims it is compiled for. The `latency`
//! binary times them; `bench/tests/latency_programs.rs` checks that they compute the right
//! thing.

use std::path::{Path, PathBuf};

/// One program of the set: where its source comes from and the dims to compile it at.
#[derive(Clone, Debug)]
pub struct Case {
    /// `module::function` for the stdlib, the file stem for a latency program.
    pub name: String,
    /// The `.tsr` source.
    pub source: String,
    /// The function to compile (the only one of a latency program).
    pub function: String,
    pub dims: Vec<(String, u64)>,
}

/// A stdlib function and its sizes: (module, function, dims).
type Sizes = (&'static str, &'static str, &'static [(&'static str, u64)]);

/// Sizes of the stdlib functions: those of `benches/workloads.rs` where it has the
/// function, else those of `examples/stdlib_timings.rs`. A function missing here is
/// compiled with every dim at [`DEFAULT_DIM`].
const STDLIB_DIMS: &[Sizes] = &[
    ("attention", "softmax", &[("n", 1024), ("m", 1024), ("d", 64), ("e", 64)]),
    ("attention", "causal", &[("n", 1024), ("d", 64), ("e", 64)]),
    ("tensor_attention", "exact", &[("n", 64), ("m1", 64), ("m2", 64), ("d", 32), ("e", 32)]),
    ("tensor_attention", "poly", &[("n", 512), ("m1", 512), ("m2", 512), ("d", 16), ("e", 16)]),
    // The windows of issue 11's row (w1 = 32, w2 = 256) at a sequence the unfused plan holds.
    ("tensor_attention", "windowed", &[("n", 512), ("d", 32), ("e", 32), ("w1", 32), ("w2", 256)]),
    ("tucker", "reconstruct", &[("a", 16), ("b", 16), ("c", 16), ("i", 128), ("j", 128), ("k", 128)]),
    ("tucker", "project", &[("a", 16), ("b", 16), ("c", 16), ("i", 128), ("j", 128), ("k", 128)]),
    ("cp", "reconstruct", &[("i", 128), ("j", 128), ("k", 128), ("r", 16)]),
    ("cp", "mttkrp", &[("i", 128), ("j", 128), ("k", 128), ("r", 16)]),
    ("equivariant", "cg_product", &[("z", 32), ("u", 8), ("v", 8), ("w", 8), ("i", 5), ("j", 5), ("k", 5)]),
    ("equivariant", "grid_product", &[("k", 49), ("g", 200), ("i", 49)]),
    ("equivariant", "cp_product", &[("l1", 64), ("l2", 64), ("l3", 64), ("r", 32)]),
    ("graph_poly", "triangles", &[("n", 1024)]),
    ("graph_poly", "four_cycle", &[("n", 512)]),
    ("graph_poly", "tailed_triangles", &[("n", 512)]),
    ("graph_poly", "node_triangles", &[("n", 512)]),
    ("graph_poly", "edge_triangles", &[("n", 512)]),
    ("graph_poly", "four_path", &[("n", 512)]),
    ("lowrank", "lora", &[("n", 2048), ("d", 1024), ("o", 1024), ("r", 16)]),
    ("lowrank", "eggroll", &[("m", 16), ("b", 8), ("i", 64), ("o", 64), ("r", 2)]),
    ("lowrank", "eggroll_update", &[("m", 16), ("i", 64), ("o", 64), ("r", 2)]),
    ("lowrank", "galore", &[("n", 1024), ("m", 1024), ("r", 32)]),
    ("lowrank", "galore_residual", &[("n", 1024), ("r", 32), ("m", 1024)]),
    ("lowrank", "adalora", &[("b", 256), ("d", 1024), ("r", 16), ("o", 1024)]),
    ("kron", "matvec", &[("m1", 128), ("n1", 128), ("m2", 128), ("n2", 128)]),
    ("kron", "kfac_precondition", &[("a", 512), ("g", 256)]),
    ("kron", "sherman_morrison", &[("n", 1024)]),
    ("grassmann", "plucker", &[("t", 4096), ("n", 32)]),
    ("norm", "layernorm", &[("b", 4096), ("d", 1024)]),
    ("norm", "rmsnorm", &[("b", 4096), ("d", 1024)]),
    ("norm", "evonorm_s0", &[("b", 32), ("s", 64), ("g", 8), ("c", 8)]),
    ("completion", "masked_residual", &[("n", 1024), ("m", 1024), ("r", 16)]),
];

/// The size of a stdlib dim that [`STDLIB_DIMS`] does not list.
pub const DEFAULT_DIM: u64 = 32;

/// The directory of the latency programs.
pub fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("latency")
}

/// Every stdlib function, in module order, with its benchmark dims.
pub fn stdlib_cases() -> Result<Vec<Case>, String> {
    let mut out = Vec::new();
    for module in tessera_compiler::stdlib::names() {
        let m = tessera::Module::stdlib(module).map_err(|e| format!("std::{module}: {}", e.render(false)))?;
        for function in m.function_names() {
            let f = m.function(function).map_err(|e| e.to_string())?;
            let known = STDLIB_DIMS.iter().find(|(md, fname, _)| *md == module && *fname == function);
            let dims = f
                .tir()
                .dims
                .iter()
                .map(|d| {
                    let size = known.and_then(|(_, _, ds)| ds.iter().find(|(n, _)| *n == d.name)).map_or(DEFAULT_DIM, |x| x.1);
                    (d.name.clone(), size)
                })
                .collect();
            let source = tessera_compiler::stdlib::source(module).unwrap_or_default().to_string();
            out.push(Case { name: format!("{module}::{function}"), source, function: function.to_string(), dims });
        }
    }
    Ok(out)
}

/// The programs of `bench/latency/*.tsr`, sorted by file name. Each holds one function
/// and a line `# dims: n=512, d=64` with the dims to compile it at.
pub fn program_cases() -> Result<Vec<Case>, String> {
    let dir = programs_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tsr"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let source = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or("program").to_string();
        let dims = parse_dims(&source).ok_or_else(|| format!("{}: no valid `# dims: name=size, ...` line", p.display()))?;
        let function = source
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("fn ").and_then(|r| r.split('(').next()).map(|s| s.trim().to_string()))
            .ok_or_else(|| format!("{}: no function", p.display()))?;
        out.push(Case { name, source, function, dims });
    }
    Ok(out)
}

/// The dims of a `# dims: n=512, d=64` line.
pub fn parse_dims(source: &str) -> Option<Vec<(String, u64)>> {
    let line = source.lines().find_map(|l| l.trim().strip_prefix("# dims:"))?;
    line.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=')?;
            Some((n.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Checks a case's source.
pub fn check(case: &Case) -> Result<tessera::Module, String> {
    tessera::Module::from_named_source(&format!("{}.tsr", case.name), &case.source).map_err(|e| match e {
        tessera::Error::Compile { .. } => e.render(false),
        other => other.to_string(),
    })
}
