//! Every stdlib function against an independent ndarray implementation written from
//! the formula (not through Tessera), on random inputs, in f32 and f64, at several
//! shapes including size-1 dims. Each function is also called through a generated
//! `use std::MODULE` program, and the modules must check without warnings.

mod common;
use common::rand;
use ndarray::{arr0, Array1, Array2, Array3, ArrayD, Axis, Ix1, Ix2, Ix3};
use tessera::{Backend, CallOptions, DType, Module, Tensor};

/// Every stdlib function that has a reference test below, as `module::function`.
const TESTED: &[&str] = &[
    "attention::softmax",
    "attention::causal",
    "tensor_attention::exact",
    "tensor_attention::poly",
    "tensor_attention::windowed",
    "tucker::reconstruct",
    "tucker::project",
    "cp::reconstruct",
    "cp::mttkrp",
    "equivariant::cg_product",
    "equivariant::grid_product",
    "equivariant::grid_product_batched",
    "equivariant::cp_product",
    "graph_poly::triangles",
    "graph_poly::four_cycle",
    "graph_poly::tailed_triangles",
    "graph_poly::node_triangles",
    "graph_poly::edge_triangles",
    "graph_poly::four_path",
    "lowrank::lora",
    "lowrank::eggroll",
    "lowrank::eggroll_update",
    "lowrank::galore",
    "lowrank::galore_residual",
    "lowrank::adalora",
    "kron::matvec",
    "kron::kfac_precondition",
    "kron::sherman_morrison",
    "grassmann::plucker",
    "norm::layernorm",
    "norm::rmsnorm",
    "norm::evonorm_s0",
    "completion::masked_residual",
    "completion::sampled_residual",
    "tucker::entries",
];

// ---------------------------------------------------------------------------------------
// Inputs and the comparison


fn r1(n: usize, seed: u64) -> Array1<f64> {
    rand(&[n], seed).into_dimensionality::<Ix1>().unwrap()
}

fn r2(a: usize, b: usize, seed: u64) -> Array2<f64> {
    rand(&[a, b], seed).into_dimensionality::<Ix2>().unwrap()
}

fn r3(a: usize, b: usize, c: usize, seed: u64) -> Array3<f64> {
    rand(&[a, b, c], seed).into_dimensionality::<Ix3>().unwrap()
}

/// Relative tolerances: the largest error allowed, over the largest |expected| entry.
const TOL_F64: f64 = 1e-10;
const TOL_F32: f64 = 1e-4;

/// Largest |got - expected| over the largest |expected|.
fn relative_error(got: &ArrayD<f64>, expected: &ArrayD<f64>) -> f64 {
    let scale = expected.iter().fold(f64::MIN_POSITIVE, |a, b| a.max(b.abs()));
    let err = got.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    // NaN must fail, so it is not folded away by `max`.
    if got.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    err / scale
}

/// The dims a stdlib function declares in its header (`fn windowed[w1, w2](...)`).
fn header_dims(module: &str, function: &str) -> Vec<String> {
    let src = tessera_compiler::stdlib::source(module).expect("a stdlib module");
    let ast = tessera_compiler::syntax::parse(src, tessera_compiler::diag::FileId(0)).expect("the stdlib parses");
    let def = ast.functions.iter().find(|f| f.name.name == function).expect("the function is defined");
    def.dims.iter().map(|d| d.name.clone()).collect()
}

/// A program that only calls `std::module::function`, with the same signature, so the
/// function is also exercised through `use` and inlining. Header dims are declared by
/// the wrapper too and passed on at the call.
fn wrapper_source(module: &str, f: &tessera::Function<'_>) -> String {
    let header = header_dims(module, f.name());
    let header = if header.is_empty() { String::new() } else { format!("[{}]", header.join(", ")) };
    let tir = f.tir();
    let param = |t| format!("{}: {}", tir.tensor(t).name, tir.type_string(t));
    let params: Vec<String> = tir.inputs.iter().map(|&t| param(t)).collect();
    let outs: Vec<String> = tir.outputs.iter().map(|&t| param(t)).collect();
    let out_sig = if outs.len() == 1 { outs[0].clone() } else { format!("({})", outs.join(", ")) };
    format!(
        "use std::{module}\n\nfn wrapped{header}({}) -> {out_sig} {{\n    {} = {module}::{}{header}({})\n}}\n",
        params.join(", "),
        f.output_names().join(", "),
        f.name(),
        f.input_names().join(", ")
    )
}

/// Runs `std::module::function` on `inputs` (given as f64), in f64 and
/// in f32, directly and through a `use std::module` program, and compares each result
/// with `expected`.
fn check(module: &str, function: &str, inputs: &[ArrayD<f64>], expected: &ArrayD<f64>) {
    check_with_dims(module, function, inputs, &[], expected);
}

/// [`check`] with dims the inputs do not determine (a header's `[w1, w2]`) given
/// explicitly, as `--dim` gives them.
fn check_with_dims(module: &str, function: &str, inputs: &[ArrayD<f64>], dims: &[(&str, u64)], expected: &ArrayD<f64>) {
    let explicit: Vec<(String, u64)> = dims.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    assert!(TESTED.contains(&format!("{module}::{function}").as_str()), "add {module}::{function} to TESTED");
    let m = Module::stdlib(module).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let f = m.function(function).unwrap_or_else(|e| panic!("{e}"));
    let src = wrapper_source(module, &f);
    let wm = Module::from_source(&src).unwrap_or_else(|e| panic!("{src}\n{}", e.render(false)));
    assert!(wm.warnings().is_empty(), "{src}\n{}", wm.render_warnings(false));
    let wf = wm.function("wrapped").unwrap();
    let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).collect();
    check_plan(module, function, &f, inputs, &explicit, expected);
    for (dtype, tol) in [(DType::F64, TOL_F64), (DType::F32, TOL_F32)] {
        let tensors: Vec<Tensor> = inputs.iter().map(|a| Tensor::F64(a.clone()).cast(dtype)).collect();
        let opts = CallOptions { dtype: Some(dtype), dims: explicit.clone(), ..CallOptions::default() };
        for (how, func) in [("direct", &f), ("through `use`", &wf)] {
            let out = func.call_tensors(&tensors, &opts).unwrap_or_else(|e| panic!("{}", e.render(false)));
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].dtype(), dtype);
            let got = out[0].to_f64();
            let what = format!("{module}::{function} {how} in {dtype}, input shapes {shapes:?}");
            assert_eq!(got.shape(), expected.shape(), "{what}");
            let err = relative_error(&got, expected);
            assert!(err <= tol, "{what}: max error {err:e} (relative to the output's scale) over {tol:e}");
        }
    }
}

/// The dims of `f` as bound by input shapes and `explicit`, as `(name, size)` for
/// `plan_for`.
fn dims_of<'f>(f: &tessera::Function<'f>, shapes: &[&[usize]], explicit: &[(String, u64)]) -> Vec<(&'f str, u64)> {
    let b = tessera_compiler::tir::bind_dims(f.tir(), shapes, explicit).unwrap_or_else(|e| panic!("{e}"));
    let dims = &f.tir().dims;
    (0..dims.len())
        .map(|k| (dims[k].name.as_str(), b.get(tessera_compiler::tir::DimId(k as u32)).expect("every dim is bound")))
        .collect()
}

/// The plan Tessera finds for these inputs, run step by step on the reference evaluator
/// (its `program`), agrees with the reference too: the planner's rewrites are checked on
/// every stdlib function.
fn check_plan(
    module: &str,
    function: &str,
    f: &tessera::Function<'_>,
    inputs: &[ArrayD<f64>],
    explicit: &[(String, u64)],
    expected: &ArrayD<f64>,
) {
    let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).collect();
    let plan = f.plan_for(&dims_of(f, &shapes, explicit)).unwrap_or_else(|e| panic!("{module}::{function}: {}", e.render(false)));
    // At degenerate sizes (all dims 1) a pairwise plan may count a FLOP or two more
    // than the single loop nest, so the cost is compared only where it means something.
    if plan.naive_flops > 1e3 {
        assert!(plan.flops <= plan.naive_flops, "{module}::{function}: the plan costs more than naive\n{plan}");
    }
    let b = tessera_compiler::tir::bind_dims(&plan.program, &shapes, explicit).unwrap_or_else(|e| panic!("{e}"));
    let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
    let out = tessera_compiler::eval::evaluate(&plan.program, &b, &views, &tessera::EvalOptions::default())
        .unwrap_or_else(|e| panic!("{module}::{function}: evaluating the plan: {e}\n{plan}"));
    let err = relative_error(&out[0], expected);
    assert!(err <= TOL_F64, "{module}::{function}, the plan's program: max error {err:e} over {TOL_F64:e}\n{plan}");
}

// ---------------------------------------------------------------------------------------
// attention

fn softmax_rows(mut s: Array2<f64>) -> Array2<f64> {
    for mut row in s.axis_iter_mut(Axis(0)) {
        let m = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|x| (x - m).exp());
        let z = row.sum();
        row.mapv_inplace(|x| x / z);
    }
    s
}

fn attention_ref(q: &Array2<f64>, k: &Array2<f64>, v: &Array2<f64>, causal: bool) -> Array2<f64> {
    let mut s = q.dot(&k.t()) / (q.ncols() as f64).sqrt();
    if causal {
        for ((i, j), x) in s.indexed_iter_mut() {
            if j > i {
                *x = f64::NEG_INFINITY;
            }
        }
    }
    softmax_rows(s).dot(v)
}

#[test]
fn attention_softmax() {
    for (n, m, d, e) in [(7, 5, 3, 4), (1, 1, 1, 1), (16, 9, 8, 2)] {
        let (q, k, v) = (r2(n, d, 1), r2(m, d, 2), r2(m, e, 3));
        let expected = attention_ref(&q, &k, &v, false).into_dyn();
        check("attention", "softmax", &[q.into_dyn(), k.into_dyn(), v.into_dyn()], &expected);
    }
}

#[test]
fn attention_causal() {
    for (n, d, e) in [(6, 3, 2), (1, 4, 4), (12, 8, 5)] {
        let (q, k, v) = (r2(n, d, 4), r2(n, d, 5), r2(n, e, 6));
        let expected = attention_ref(&q, &k, &v, true).into_dyn();
        check("attention", "causal", &[q.into_dyn(), k.into_dyn(), v.into_dyn()], &expected);
    }
}

// ---------------------------------------------------------------------------------------
// tensor_attention

/// 2-simplicial attention by loops: scores for every key pair, softmax (or the
/// polynomial (1 + S)²) over the pairs, and the values' elementwise products.
fn tensor_attention_ref(
    q: &Array2<f64>,
    k1: &Array2<f64>,
    k2: &Array2<f64>,
    v1: &Array2<f64>,
    v2: &Array2<f64>,
    poly: bool,
) -> Array2<f64> {
    let (n, d) = q.dim();
    let (m1, m2, e) = (k1.nrows(), k2.nrows(), v1.ncols());
    let mut o = Array2::zeros((n, e));
    for i in 0..n {
        let mut s = Array2::<f64>::zeros((m1, m2));
        for j in 0..m1 {
            for l in 0..m2 {
                let t: f64 = (0..d).map(|a| q[[i, a]] * k1[[j, a]] * k2[[l, a]]).sum();
                s[[j, l]] = if poly { t } else { t / (d as f64).sqrt() };
            }
        }
        let p = if poly {
            s.mapv(|x| (1.0 + x) * (1.0 + x))
        } else {
            let mx = s.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            s.mapv(|x| (x - mx).exp())
        };
        let z = p.sum();
        for b in 0..e {
            let mut acc = 0.0;
            for j in 0..m1 {
                for l in 0..m2 {
                    acc += p[[j, l]] * v1[[j, b]] * v2[[l, b]];
                }
            }
            o[[i, b]] = acc / z;
        }
    }
    o
}

fn tensor_attention_case(function: &str, poly: bool) {
    for (n, m1, m2, d, e) in [(5, 4, 3, 3, 2), (1, 1, 1, 1, 1), (8, 6, 7, 4, 3)] {
        let (q, k1, k2) = (r2(n, d, 11), r2(m1, d, 12), r2(m2, d, 13));
        let (v1, v2) = (r2(m1, e, 14), r2(m2, e, 15));
        let expected = tensor_attention_ref(&q, &k1, &k2, &v1, &v2, poly).into_dyn();
        let inputs = [q.into_dyn(), k1.into_dyn(), k2.into_dyn(), v1.into_dyn(), v2.into_dyn()];
        check("tensor_attention", function, &inputs, &expected);
    }
}

#[test]
fn tensor_attention_exact() {
    tensor_attention_case("exact", false);
}

#[test]
fn tensor_attention_poly() {
    tensor_attention_case("poly", true);
}

/// Windowed 2-simplicial attention written directly: for query i, the pairs (j, l) with
/// i - w1 < j <= i and i - w2 < l <= i (and inside the sequence), a softmax of the scaled
/// trilinear scores over those pairs, and the values' elementwise products.
fn windowed_ref(q: &Array2<f64>, k1: &Array2<f64>, k2: &Array2<f64>, v1: &Array2<f64>, v2: &Array2<f64>, w1: usize, w2: usize) -> Array2<f64> {
    let (n, d) = q.dim();
    let e = v1.ncols();
    let mut o = Array2::zeros((n, e));
    for i in 0..n {
        let mut pairs = Vec::new();
        for j in (i + 1).saturating_sub(w1)..=i {
            for l in (i + 1).saturating_sub(w2)..=i {
                let s: f64 = (0..d).map(|a| q[[i, a]] * k1[[j, a]] * k2[[l, a]]).sum::<f64>() / (d as f64).sqrt();
                pairs.push((j, l, s));
            }
        }
        let m = pairs.iter().fold(f64::NEG_INFINITY, |a, p| a.max(p.2));
        let z: f64 = pairs.iter().map(|p| (p.2 - m).exp()).sum();
        for b in 0..e {
            o[[i, b]] = pairs.iter().map(|&(j, l, s)| (s - m).exp() * v1[[j, b]] * v2[[l, b]]).sum::<f64>() / z;
        }
    }
    o
}

#[test]
fn tensor_attention_windowed() {
    // (n, d, e, w1, w2): the issue's small case, a single token, windows wider than the
    // sequence, and w1 > w2.
    for (n, d, e, w1, w2) in [(9, 4, 3, 3, 4), (1, 2, 2, 1, 1), (6, 3, 2, 8, 6), (7, 2, 3, 5, 1)] {
        let (q, k1, k2) = (r2(n, d, 21), r2(n, d, 22), r2(n, d, 23));
        let (v1, v2) = (r2(n, e, 24), r2(n, e, 25));
        let expected = windowed_ref(&q, &k1, &k2, &v1, &v2, w1 as usize, w2 as usize).into_dyn();
        let inputs = [q.into_dyn(), k1.into_dyn(), k2.into_dyn(), v1.into_dyn(), v2.into_dyn()];
        check_with_dims("tensor_attention", "windowed", &inputs, &[("w1", w1), ("w2", w2)], &expected);
    }
    // The window matters: with w1 = w2 = n the result is `exact`'s over the causal
    // triangle, not over all pairs, so the reference above is not `exact`'s in disguise.
    let (q, k1, k2, v1, v2) = (r2(5, 2, 31), r2(5, 2, 32), r2(5, 2, 33), r2(5, 2, 34), r2(5, 2, 35));
    let full = tensor_attention_ref(&q, &k1, &k2, &v1, &v2, false);
    let win = windowed_ref(&q, &k1, &k2, &v1, &v2, 5, 5);
    assert!((&full - &win).iter().any(|x| x.abs() > 1e-3));
    let last = (&full.row(4) - &win.row(4)).iter().fold(0.0f64, |a, x| a.max(x.abs()));
    assert!(last < 1e-12, "the last row sees every pair in both: {last:e}");
}

/// Without w1 and w2 a direct call says which dims to give.
#[test]
fn tensor_attention_windowed_needs_its_window_dims() {
    let m = Module::stdlib("tensor_attention").unwrap();
    let f = m.function("windowed").unwrap();
    let x = Array2::<f32>::zeros((4, 2)).into_dyn();
    let views = [x.view(), x.view(), x.view(), x.view(), x.view()];
    let e = f.call(&views).expect_err("w1 and w2 are not bound");
    let text = e.render(false);
    assert!(text.contains("dims w1, w2 are not determined by the inputs") && text.contains("--dim w1=4 --dim w2=4"), "{text}");
}

// ---------------------------------------------------------------------------------------
// tucker and cp

const TUCKER_SHAPES: [(usize, usize, usize, usize, usize, usize); 3] =
    [(5, 4, 3, 3, 2, 2), (1, 1, 1, 1, 1, 1), (6, 1, 4, 2, 1, 3)];

#[test]
fn tucker_reconstruct() {
    for (i, j, k, a, b, c) in TUCKER_SHAPES {
        let (g, u1, u2, u3) = (r3(a, b, c, 21), r2(i, a, 22), r2(j, b, 23), r2(k, c, 24));
        let mut y = Array3::<f64>::zeros((i, j, k));
        for ((x, yy, z), out) in y.indexed_iter_mut() {
            for ((p, q, r), gv) in g.indexed_iter() {
                *out += gv * u1[[x, p]] * u2[[yy, q]] * u3[[z, r]];
            }
        }
        let inputs = [g.into_dyn(), u1.into_dyn(), u2.into_dyn(), u3.into_dyn()];
        check("tucker", "reconstruct", &inputs, &y.into_dyn());
    }
}

#[test]
fn tucker_project() {
    for (i, j, k, a, b, c) in TUCKER_SHAPES {
        let (y, u1, u2, u3) = (r3(i, j, k, 25), r2(i, a, 26), r2(j, b, 27), r2(k, c, 28));
        let mut g = Array3::<f64>::zeros((a, b, c));
        for ((p, q, r), out) in g.indexed_iter_mut() {
            for ((x, yy, z), yv) in y.indexed_iter() {
                *out += yv * u1[[x, p]] * u2[[yy, q]] * u3[[z, r]];
            }
        }
        let inputs = [y.into_dyn(), u1.into_dyn(), u2.into_dyn(), u3.into_dyn()];
        check("tucker", "project", &inputs, &g.into_dyn());
    }
}

const CP_SHAPES: [(usize, usize, usize, usize); 3] = [(5, 4, 3, 2), (1, 1, 1, 1), (7, 1, 3, 4)];

#[test]
fn cp_reconstruct() {
    for (i, j, k, r) in CP_SHAPES {
        let (a, b, c) = (r2(i, r, 31), r2(j, r, 32), r2(k, r, 33));
        let x = Array3::from_shape_fn((i, j, k), |(x, y, z)| {
            (0..r).map(|s| a[[x, s]] * b[[y, s]] * c[[z, s]]).sum::<f64>()
        });
        check("cp", "reconstruct", &[a.into_dyn(), b.into_dyn(), c.into_dyn()], &x.into_dyn());
    }
}

#[test]
fn cp_mttkrp() {
    for (i, j, k, r) in CP_SHAPES {
        let (x, b, c) = (r3(i, j, k, 34), r2(j, r, 35), r2(k, r, 36));
        // The textbook form: X unfolded along mode 1 times the Khatri-Rao product of C and B.
        let x1 = x.to_shape((i, j * k)).unwrap().to_owned();
        let krp = Array2::from_shape_fn((j * k, r), |(row, s)| b[[row / k, s]] * c[[row % k, s]]);
        let m = x1.dot(&krp);
        check("cp", "mttkrp", &[x.into_dyn(), b.into_dyn(), c.into_dyn()], &m.into_dyn());
    }
}

// ---------------------------------------------------------------------------------------
// equivariant

#[test]
fn equivariant_cg_product() {
    for (z, u, v, w, i, j, k) in [(3, 2, 3, 2, 3, 3, 5), (1, 1, 1, 1, 1, 1, 1), (4, 3, 2, 3, 1, 3, 3)] {
        let (wt, c, x, y) = (r3(u, v, w, 41), r3(i, j, k, 42), r3(z, u, i, 43), r3(z, v, j, 44));
        let mut out = Array3::<f64>::zeros((z, w, k));
        for ((b, cc, m), o) in out.indexed_iter_mut() {
            for p in 0..u {
                for q in 0..v {
                    for s in 0..i {
                        for t in 0..j {
                            *o += wt[[p, q, cc]] * c[[s, t, m]] * x[[b, p, s]] * y[[b, q, t]];
                        }
                    }
                }
            }
        }
        let inputs = [wt.into_dyn(), c.into_dyn(), x.into_dyn(), y.into_dyn()];
        check("equivariant", "cg_product", &inputs, &out.into_dyn());
    }
}

/// `cg_product` with a built-in Clebsch-Gordan constant at the call site, the way a
/// program uses it: the result matches loops over the same tensor given as data, and the
/// plan treats C as a constant.
#[test]
fn equivariant_cg_product_with_a_builtin_constant() {
    let src = r#"
use std::equivariant

fn tp(W: f64[u, v, w], x: f64[z, u, 3], y: f64[z, v, 3]) -> out: f64[z, w, 5] {
    C = cg(1, 1, 2)
    out = equivariant::cg_product(W, C, x, y)
}
"#;
    let m = Module::from_source(src).unwrap_or_else(|e| panic!("{}", e.render(false)));
    assert!(m.warnings().is_empty(), "{}", m.render_warnings(false));
    let f = m.function("tp").unwrap();
    let c = Array3::from_shape_vec((3, 3, 5), tessera_compiler::constants::clebsch_gordan(1, 1, 2).unwrap()).unwrap();
    let (z, u, v, w) = (4, 3, 2, 5);
    let (wt, x, y) = (r3(u, v, w, 45), r3(z, u, 3, 46), r3(z, v, 3, 47));
    let mut expected = Array3::<f64>::zeros((z, w, 5));
    for ((b, cc, mm), o) in expected.indexed_iter_mut() {
        for p in 0..u {
            for q in 0..v {
                for s in 0..3 {
                    for t in 0..3 {
                        *o += wt[[p, q, cc]] * c[[s, t, mm]] * x[[b, p, s]] * y[[b, q, t]];
                    }
                }
            }
        }
    }
    let out = f.call(&[wt.view().into_dyn(), x.view().into_dyn(), y.view().into_dyn()]).unwrap();
    let err = relative_error(&out[0], &expected.into_dyn());
    assert!(err <= TOL_F64, "max error {err:e}");
    let plan = f.plan_for(&[("z", 32), ("u", 8), ("v", 8), ("w", 8)]).unwrap();
    assert!(plan.to_string().contains("constant"), "the plan does not use C as a constant:\n{plan}");
}

/// A rotation matrix from a uniformly random unit quaternion, drawn with the
/// xorshift generator of `rand`.
fn random_rotation(seed: u64) -> [[f64; 3]; 3] {
    let q = rand(&[4], seed);
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    let [w, x, y, z] = [q[0] / n, q[1] / n, q[2] / n, q[3] / n];
    [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
    ]
}

/// The Wigner matrix of degrees `0..=L` in the coefficient basis of the grid constants
/// (block-diagonal): `D[a, b] = ∫ Y_a(R p) Y_b(p) dp`, integrated exactly on the grid of
/// order 2L from the public harmonics, so that `Y(R p) = D Y(p)`.
fn wigner_blocks(l: u32, r: &[[f64; 3]; 3]) -> Array2<f64> {
    use tessera_compiler::constants::{harmonics_count, real_spherical_harmonics, sphere_grid_points};
    let n = harmonics_count(l);
    let grid = sphere_grid_points(2 * l).unwrap();
    let mut d = Array2::<f64>::zeros((n, n));
    for (&p, &w) in grid.points.iter().zip(&grid.weights) {
        let rp = [0, 1, 2].map(|i| r[i][0] * p[0] + r[i][1] * p[1] + r[i][2] * p[2]);
        let (rotated, here) = (real_spherical_harmonics(l, rp), real_spherical_harmonics(l, p));
        for a in 0..n {
            for b in 0..n {
                d[[a, b]] += w * rotated[a] * here[b];
            }
        }
    }
    d
}

/// The exact Gaunt product `out[c] = ∫ Y_c(p) (Σ_a x_a Y_a(p)) (Σ_b y_b Y_b(p)) dp`, per row
/// of `x` and `y`, integrated on the finest grid: a reference that shares only the
/// harmonics with the constants under test.
fn gaunt_reference(l: u32, x: &Array2<f64>, y: &Array2<f64>) -> Array2<f64> {
    use tessera_compiler::constants::{real_spherical_harmonics, sphere_grid_points, MAX_GRID_ORDER};
    let grid = sphere_grid_points(MAX_GRID_ORDER).unwrap();
    let mut out = Array2::<f64>::zeros(x.raw_dim());
    for (&p, &w) in grid.points.iter().zip(&grid.weights) {
        let sh = Array1::from(real_spherical_harmonics(l, p));
        let (f, g) = (x.dot(&sh), y.dot(&sh));
        for ((z, c), o) in out.indexed_iter_mut() {
            *o += w * f[z] * g[z] * sh[c];
        }
    }
    out
}

/// `grid_product` and `grid_product_batched` with the built-in grid constants, compiled
/// and run on every executor in f64 and f32: they equal the exact Gaunt product, and
/// rotating both inputs by random rotations rotates the output, `out(D x, D y) =
/// D out(x, y)`, with `D` measured from the harmonics. One order below 3L the same check
/// fails, so it can.
#[test]
fn equivariant_grid_product_with_builtin_grid_constants_is_equivariant() {
    let z = 5;
    for (l, q) in [(1u32, 3u32), (2, 6), (3, 9), (2, 8)] {
        let n = (l as usize + 1).pow(2);
        let src = format!(
            "use std::equivariant\n\n\
             fn one(x: f64[{n}], y: f64[{n}]) -> out: f64[{n}] {{\n\
             \x20   Y = sphere_grid({l}, {q})\n\
             \x20   Yi = sphere_project({l}, {q})\n\
             \x20   out = equivariant::grid_product(Yi, Y, x, y)\n}}\n\n\
             fn batch(x: f64[z, {n}], y: f64[z, {n}]) -> out: f64[z, {n}] {{\n\
             \x20   Y = sphere_grid({l}, {q})\n\
             \x20   Yi = sphere_project({l}, {q})\n\
             \x20   out = equivariant::grid_product_batched(Yi, Y, x, y)\n}}\n"
        );
        let m = Module::from_source(&src).unwrap_or_else(|e| panic!("{src}\n{}", e.render(false)));
        assert!(m.warnings().is_empty(), "{}", m.render_warnings(false));
        let (one, batch) = (m.function("one").unwrap(), m.function("batch").unwrap());
        let (x, y) = (r2(z, n, 61 + q as u64), r2(z, n, 62 + q as u64));
        let d = wigner_blocks(l, &random_rotation(63 + q as u64));
        let (dx, dy) = (x.dot(&d.t()), y.dot(&d.t()));
        let expected = gaunt_reference(l, &x, &y);
        let expected_rotated = expected.dot(&d.t());
        for backend in Backend::executors() {
            for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
                let opts = CallOptions { dtype: Some(dtype), backend, ..CallOptions::default() };
                let what = format!("L = {l}, Q = {q} on {backend} in {dtype}");
                let run_batch = |a: &Array2<f64>, b: &Array2<f64>| {
                    let t = [Tensor::F64(a.clone().into_dyn()).cast(dtype), Tensor::F64(b.clone().into_dyn()).cast(dtype)];
                    batch.call_tensors(&t, &opts).unwrap_or_else(|e| panic!("{what}: {}", e.render(false)))[0].to_f64()
                };
                let out = run_batch(&x, &y);
                let err = relative_error(&out, &expected.clone().into_dyn());
                assert!(err <= tol, "{what}: batched product off the Gaunt product by {err:e}");
                let err = relative_error(&run_batch(&dx, &dy), &expected_rotated.clone().into_dyn());
                assert!(err <= tol, "{what}: batched product not equivariant, error {err:e}");
                for row in [0, z - 1] {
                    let t = [
                        Tensor::F64(x.row(row).to_owned().into_dyn()).cast(dtype),
                        Tensor::F64(y.row(row).to_owned().into_dyn()).cast(dtype),
                    ];
                    let got = one.call_tensors(&t, &opts).unwrap_or_else(|e| panic!("{what}: {}", e.render(false)))[0].to_f64();
                    let err = relative_error(&got, &expected.row(row).to_owned().into_dyn());
                    assert!(err <= tol, "{what}: product of row {row} off by {err:e}");
                }
            }
        }
    }
    // Q = 3L - 1 aliases: the rotated product differs at a visible level.
    let src = "use std::equivariant\n\nfn batch(x: f64[z, 9], y: f64[z, 9]) -> out: f64[z, 9] {\n    \
               Y = sphere_grid(2, 5)\n    Yi = sphere_project(2, 5)\n    out = equivariant::grid_product_batched(Yi, Y, x, y)\n}\n";
    let f = Module::from_source(src).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let f = f.function("batch").unwrap();
    let (x, y) = (r2(z, 9, 71), r2(z, 9, 72));
    let d = wigner_blocks(2, &random_rotation(73));
    let out = f.call(&[x.view().into_dyn(), y.view().into_dyn()]).unwrap()[0].clone();
    let rotated = f.call(&[x.dot(&d.t()).view().into_dyn(), y.dot(&d.t()).view().into_dyn()]).unwrap()[0].clone();
    let out = out.into_dimensionality::<Ix2>().unwrap();
    let err = relative_error(&rotated, &out.dot(&d.t()).into_dyn());
    assert!(err > 1e-4, "Q = 3L - 1 should not be equivariant, error {err:e}");
}

#[test]
fn equivariant_grid_product() {
    for (k, g, i) in [(5, 12, 4), (1, 1, 1), (9, 20, 9)] {
        let (yi, y, xv, yv) = (r2(k, g, 45), r2(g, i, 46), r1(i, 47), r1(i, 48));
        // Project both inputs to the grid, multiply pointwise, project back.
        let out = yi.dot(&(y.dot(&xv) * y.dot(&yv)));
        let inputs = [yi.into_dyn(), y.into_dyn(), xv.into_dyn(), yv.into_dyn()];
        check("equivariant", "grid_product", &inputs, &out.into_dyn());
    }
}

#[test]
fn equivariant_grid_product_batched() {
    for (z, k, g, i) in [(3, 5, 12, 4), (1, 1, 1, 1), (4, 9, 20, 9)] {
        let (yi, y, xv, yv) = (r2(k, g, 56), r2(g, i, 57), r2(z, i, 58), r2(z, i, 59));
        // Per row: project both inputs to the grid, multiply pointwise, project back.
        let out = (y.dot(&xv.t()) * y.dot(&yv.t())).t().dot(&yi.t());
        let inputs = [yi.into_dyn(), y.into_dyn(), xv.into_dyn(), yv.into_dyn()];
        check("equivariant", "grid_product_batched", &inputs, &out.into_dyn());
    }
}

#[test]
fn equivariant_cp_product() {
    for (l1, l2, l3, r) in [(3, 4, 5, 6), (1, 1, 1, 1), (5, 3, 1, 2)] {
        let (a, b, d, x, y) = (r2(l1, r, 51), r2(l2, r, 52), r2(l3, r, 53), r1(l1, 54), r1(l2, 55));
        // The coupling tensor built in full, then contracted with x and y.
        let c = Array3::from_shape_fn((l1, l2, l3), |(i, j, k)| {
            (0..r).map(|s| a[[i, s]] * b[[j, s]] * d[[k, s]]).sum::<f64>()
        });
        let out = Array1::from_shape_fn(l3, |k| {
            let mut acc = 0.0;
            for i in 0..l1 {
                for j in 0..l2 {
                    acc += c[[i, j, k]] * x[i] * y[j];
                }
            }
            acc
        });
        let inputs = [a.into_dyn(), b.into_dyn(), d.into_dyn(), x.into_dyn(), y.into_dyn()];
        check("equivariant", "cp_product", &inputs, &out.into_dyn());
    }
}

// ---------------------------------------------------------------------------------------
// graph_poly: references through matrix powers, on weighted adjacency matrices in [0, 1)

const GRAPH_SIZES: [usize; 3] = [6, 1, 11];

fn adjacency(n: usize, seed: u64) -> Array2<f64> {
    r2(n, n, seed).mapv(|x| (x + 1.0) / 2.0)
}

fn graph_case(function: &str, seed: u64, reference: impl Fn(&Array2<f64>) -> ArrayD<f64>) {
    for n in GRAPH_SIZES {
        let a = adjacency(n, seed);
        let expected = reference(&a);
        check("graph_poly", function, &[a.into_dyn()], &expected);
    }
}

fn cube(a: &Array2<f64>) -> Array2<f64> {
    a.dot(a).dot(a)
}

#[test]
fn graph_poly_triangles() {
    graph_case("triangles", 61, |a| arr0(cube(a).diag().sum()).into_dyn());
}

#[test]
fn graph_poly_four_cycle() {
    graph_case("four_cycle", 62, |a| arr0(cube(a).dot(a).diag().sum()).into_dyn());
}

#[test]
fn graph_poly_tailed_triangles() {
    graph_case("tailed_triangles", 63, |a| {
        let degree = a.sum_axis(Axis(1));
        arr0((&cube(a).diag() * &degree).sum()).into_dyn()
    });
}

#[test]
fn graph_poly_node_triangles() {
    graph_case("node_triangles", 64, |a| cube(a).diag().to_owned().into_dyn());
}

#[test]
fn graph_poly_edge_triangles() {
    graph_case("edge_triangles", 65, |a| (a.dot(a) * a).into_dyn());
}

#[test]
fn graph_poly_four_path() {
    graph_case("four_path", 66, |a| (cube(a) * a).into_dyn());
}

// ---------------------------------------------------------------------------------------
// lowrank

#[test]
fn lowrank_lora() {
    for (n, d, o, r) in [(5, 4, 3, 2), (1, 1, 1, 1), (8, 6, 7, 3)] {
        let (x, w, b, a, alpha) = (r2(n, d, 71), r2(d, o, 72), r2(d, r, 73), r2(r, o, 74), 0.7);
        let y = x.dot(&w) + alpha / r as f64 * x.dot(&b).dot(&a);
        let inputs = [x.into_dyn(), w.into_dyn(), b.into_dyn(), a.into_dyn(), arr0(alpha).into_dyn()];
        check("lowrank", "lora", &inputs, &y.into_dyn());
    }
}

const EGGROLL_SHAPES: [(usize, usize, usize, usize, usize); 3] = [(3, 2, 4, 5, 2), (1, 1, 1, 1, 1), (4, 3, 6, 5, 1)];

#[test]
fn lowrank_eggroll() {
    for (m, b, i, o, r) in EGGROLL_SHAPES {
        let (x, w, a, bb, sigma) = (r3(m, b, i, 75), r2(i, o, 76), r3(m, i, r, 77), r3(m, o, r, 78), 0.3);
        // Member p uses the perturbed weight W + σ A_p B_pᵀ, formed in full here.
        let mut out = Array3::<f64>::zeros((m, b, o));
        for p in 0..m {
            let e = a.index_axis(Axis(0), p).dot(&bb.index_axis(Axis(0), p).t());
            let wp = &w + &(e * sigma);
            out.index_axis_mut(Axis(0), p).assign(&x.index_axis(Axis(0), p).dot(&wp));
        }
        let inputs = [x.into_dyn(), w.into_dyn(), a.into_dyn(), bb.into_dyn(), arr0(sigma).into_dyn()];
        check("lowrank", "eggroll", &inputs, &out.into_dyn());
    }
}

#[test]
fn lowrank_eggroll_update() {
    for (m, _, i, o, r) in EGGROLL_SHAPES {
        let (f, a, b) = (r1(m, 79), r3(m, i, r, 80), r3(m, o, r, 81));
        let mut dw = Array2::<f64>::zeros((i, o));
        for p in 0..m {
            dw = dw + f[p] * a.index_axis(Axis(0), p).dot(&b.index_axis(Axis(0), p).t());
        }
        check("lowrank", "eggroll_update", &[f.into_dyn(), a.into_dyn(), b.into_dyn()], &dw.into_dyn());
    }
}

const GALORE_SHAPES: [(usize, usize, usize); 3] = [(6, 5, 2), (1, 1, 1), (9, 4, 3)];

#[test]
fn lowrank_galore() {
    for (n, m, r) in GALORE_SHAPES {
        let (p, g) = (r2(n, r, 82), r2(n, m, 83));
        let expected = p.t().dot(&g).into_dyn();
        check("lowrank", "galore", &[p.into_dyn(), g.into_dyn()], &expected);
    }
}

#[test]
fn lowrank_galore_residual() {
    for (n, m, r) in GALORE_SHAPES {
        let (p, g) = (r2(n, r, 84), r2(n, m, 85));
        let expected = (&g - &p.dot(&p.t().dot(&g))).into_dyn();
        check("lowrank", "galore_residual", &[p.into_dyn(), g.into_dyn()], &expected);
    }
}

#[test]
fn lowrank_adalora() {
    for (b, d, r, o) in [(4, 6, 2, 5), (1, 1, 1, 1), (7, 5, 3, 4)] {
        let (x, p, lam, q) = (r2(b, d, 86), r2(d, r, 87), r1(r, 88), r2(r, o, 89));
        let y = x.dot(&p.dot(&Array2::from_diag(&lam)).dot(&q));
        check("lowrank", "adalora", &[x.into_dyn(), p.into_dyn(), lam.into_dyn(), q.into_dyn()], &y.into_dyn());
    }
}

// ---------------------------------------------------------------------------------------
// kron

#[test]
fn kron_matvec() {
    for (m1, n1, m2, n2) in [(2, 3, 4, 5), (1, 1, 1, 1), (3, 1, 2, 4)] {
        let (a, b, x) = (r2(m1, n1, 91), r2(m2, n2, 92), r1(n1 * n2, 93));
        // The Kronecker matrix built explicitly, as numpy's kron does.
        let k =
            Array2::from_shape_fn((m1 * m2, n1 * n2), |(row, col)| a[[row / m2, col / n2]] * b[[row % m2, col % n2]]);
        let y = k.dot(&x);
        check("kron", "matvec", &[a.into_dyn(), b.into_dyn(), x.into_dyn()], &y.into_dyn());
    }
}

#[test]
fn kron_kfac_precondition() {
    for (g, a) in [(3, 4), (1, 1), (6, 5)] {
        let (ainv, ginv, grad) = (r2(a, a, 94), r2(g, g, 95), r2(g, a, 96));
        let out = ginv.dot(&grad).dot(&ainv);
        check("kron", "kfac_precondition", &[ainv.into_dyn(), ginv.into_dyn(), grad.into_dyn()], &out.into_dyn());
    }
}

#[test]
fn kron_sherman_morrison() {
    for n in [5, 1, 9] {
        // Ai = I + 0.1 R keeps 1 + vᵀ Ai v well away from zero.
        let ai: Array2<f64> = Array2::eye(n) + r2(n, n, 97) * 0.1;
        let v = r1(n, 98);
        let u = ai.dot(&v);
        let w = ai.t().dot(&v);
        let denom = 1.0 + v.dot(&u);
        let outer = Array2::from_shape_fn((n, n), |(i, j)| u[i] * w[j]);
        let expected = (&ai - &(outer / denom)).into_dyn();
        check("kron", "sherman_morrison", &[ai.into_dyn(), v.into_dyn()], &expected);
    }
}

/// The Sherman-Morrison result really is the inverse of A + v vᵀ.
#[test]
fn kron_sherman_morrison_inverts_the_update() {
    let n = 6;
    let a: Array2<f64> = Array2::eye(n) * 2.0 + r2(n, n, 99) * 0.2;
    let v = r1(n, 100);
    // The inverse of A by Gauss-Jordan elimination with partial pivoting.
    let mut aug = ndarray::concatenate![Axis(1), a.clone(), Array2::eye(n)];
    for col in 0..n {
        let piv = (col..n).max_by(|&x, &y| aug[[x, col]].abs().total_cmp(&aug[[y, col]].abs())).unwrap();
        for c in 0..2 * n {
            aug.swap([col, c], [piv, c]);
        }
        let d = aug[[col, col]];
        aug.row_mut(col).mapv_inplace(|x| x / d);
        for row in 0..n {
            if row != col {
                let f = aug[[row, col]];
                let pivot_row = aug.row(col).to_owned();
                aug.row_mut(row).scaled_add(-f, &pivot_row);
            }
        }
    }
    let ai = aug.slice(ndarray::s![.., n..]).to_owned();
    let m = Module::stdlib("kron").unwrap();
    let out = m.function("sherman_morrison").unwrap().call(&[ai.view().into_dyn(), v.view().into_dyn()]).unwrap();
    let r = out[0].clone().into_dimensionality::<Ix2>().unwrap();
    let updated = &a + &Array2::from_shape_fn((n, n), |(i, j)| v[i] * v[j]);
    let err = (r.dot(&updated) - Array2::<f64>::eye(n)).mapv(f64::abs).fold(0.0, |x: f64, &y| x.max(y));
    assert!(err < 1e-10, "R (A + v vᵀ) differs from I by {err:e}");
}

// ---------------------------------------------------------------------------------------
// grassmann, norm, completion

#[test]
fn grassmann_plucker() {
    for (t, n) in [(3, 4), (1, 1), (5, 6)] {
        let (u, v) = (r2(t, n, 101), r2(t, n, 102));
        let p = Array3::from_shape_fn((t, n, n), |(s, i, j)| u[[s, i]] * v[[s, j]] - u[[s, j]] * v[[s, i]]);
        check("grassmann", "plucker", &[u.into_dyn(), v.into_dyn()], &p.into_dyn());
    }
}

const NORM_SHAPES: [(usize, usize); 3] = [(4, 5), (1, 1), (6, 8)];

#[test]
fn norm_layernorm() {
    for (b, d) in NORM_SHAPES {
        let (x, g, beta) = (r2(b, d, 111), r1(d, 112), r1(d, 113));
        let mut y = Array2::zeros((b, d));
        for i in 0..b {
            let row = x.row(i);
            let mu = row.sum() / d as f64;
            let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d as f64;
            for j in 0..d {
                y[[i, j]] = (x[[i, j]] - mu) / (var + 1e-5).sqrt() * g[j] + beta[j];
            }
        }
        check("norm", "layernorm", &[x.into_dyn(), g.into_dyn(), beta.into_dyn()], &y.into_dyn());
    }
}

#[test]
fn norm_rmsnorm() {
    for (b, d) in NORM_SHAPES {
        let (x, g) = (r2(b, d, 114), r1(d, 115));
        let mut y = Array2::zeros((b, d));
        for i in 0..b {
            let ms = x.row(i).iter().map(|v| v * v).sum::<f64>() / d as f64;
            for j in 0..d {
                y[[i, j]] = x[[i, j]] / (ms + 1e-6).sqrt() * g[j];
            }
        }
        check("norm", "rmsnorm", &[x.into_dyn(), g.into_dyn()], &y.into_dyn());
    }
}

#[test]
fn norm_evonorm_s0() {
    for (b, s, g, c) in [(2, 3, 2, 3), (1, 1, 1, 1), (3, 1, 4, 2), (2, 4, 1, 5)] {
        let ch = g * c;
        let (x, v, gamma, beta) = (r3(b, s, ch, 116), r2(g, c, 117), r2(g, c, 118), r2(g, c, 119));
        let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
        let mut y = Array3::zeros((b, s, ch));
        for i in 0..b {
            for p in 0..g {
                // Channels p*c .. (p+1)*c form group p; the statistics cover them at every position.
                let group = x.slice(ndarray::s![i, .., p * c..(p + 1) * c]);
                let mu = group.sum() / (s * c) as f64;
                let var = group.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / (s * c) as f64;
                let std = (var + 1e-5).sqrt();
                for t in 0..s {
                    for q in 0..c {
                        let xv = x[[i, t, p * c + q]];
                        y[[i, t, p * c + q]] = xv * sigmoid(v[[p, q]] * xv) / std * gamma[[p, q]] + beta[[p, q]];
                    }
                }
            }
        }
        let inputs = [x.into_dyn(), v.into_dyn(), gamma.into_dyn(), beta.into_dyn()];
        check("norm", "evonorm_s0", &inputs, &y.into_dyn());
    }
}

#[test]
fn completion_masked_residual() {
    for (n, m, r) in [(5, 4, 2), (1, 1, 1), (7, 6, 3)] {
        let omega = r2(n, m, 121).mapv(|x| if x > 0.0 { 1.0 } else { 0.0 });
        let (mm, u, v) = (r2(n, m, 122), r2(n, r, 123), r2(m, r, 124));
        let expected = (&omega * &(&mm - &u.dot(&v.t()))).into_dyn();
        let inputs = [omega.into_dyn(), mm.into_dyn(), u.into_dyn(), v.into_dyn()];
        check("completion", "masked_residual", &inputs, &expected);
    }
}

/// A stdlib function with index inputs (`call_with_indices`; such functions cannot be
/// called through `use`, see docs/gather.md), in f64 and f32, and its plan's program on
/// the reference evaluator.
fn check_gather(module: &str, function: &str, inputs: &[ArrayD<f64>], indices: &[ndarray::Array1<i64>], expected: &ArrayD<f64>) {
    assert!(TESTED.contains(&format!("{module}::{function}").as_str()), "add {module}::{function} to TESTED");
    let m = Module::stdlib(module).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let f = m.function(function).unwrap_or_else(|e| panic!("{e}"));
    let idx: Vec<ArrayD<i64>> = indices.iter().map(|a| a.clone().into_dyn()).collect();
    let views: Vec<tessera::IndexView<'_>> = idx.iter().map(|a| tessera::IndexView::I64(a.view())).collect();
    let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).chain(idx.iter().map(|a| a.shape())).collect();
    let plan = f.plan_for(&dims_of(&f, &shapes, &[])).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let b = tessera_compiler::tir::bind_dims(&plan.program, &shapes, &[]).unwrap_or_else(|e| panic!("{e}"));
    let vals: Vec<_> = inputs.iter().map(|a| a.view()).collect();
    let wide: Vec<_> = idx.iter().map(|a| a.view()).collect();
    let out = tessera_compiler::eval::evaluate_indexed(&plan.program, &b, &vals, &wide, &tessera::EvalOptions::default())
        .unwrap_or_else(|e| panic!("{module}::{function}: evaluating the plan: {e}\n{plan}"));
    assert!(relative_error(&out[0], expected) <= TOL_F64, "{module}::{function}, the plan's program\n{plan}");
    for (dtype, tol) in [(DType::F64, TOL_F64), (DType::F32, TOL_F32)] {
        let opts = CallOptions { dtype: Some(dtype), ..CallOptions::default() };
        let got = if dtype == DType::F64 {
            f.call_with_indices(&vals, &views, &opts).map(|mut o| o.remove(0))
        } else {
            let owned: Vec<ArrayD<f32>> = inputs.iter().map(|a| a.mapv(|x| x as f32)).collect();
            let v32: Vec<_> = owned.iter().map(|a| a.view()).collect();
            f.call_with_indices(&v32, &views, &opts).map(|o| o[0].mapv(f64::from))
        }
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
        let err = relative_error(&got, expected);
        assert!(err <= tol, "{module}::{function} in {dtype}: max error {err:e} over {tol:e}");
    }
}

fn coords(len: usize, n: usize, seed: u64) -> ndarray::Array1<i64> {
    r1(len, seed).mapv(|x| (((x + 1.0) / 2.0 * n as f64) as i64).min(n as i64 - 1))
}

#[test]
fn completion_sampled_residual() {
    for (n, m, r, e) in [(5, 4, 2, 7), (1, 1, 1, 1), (7, 6, 3, 30)] {
        let (mm, u, v) = (r1(e, 125), r2(n, r, 126), r2(m, r, 127));
        let (i, j) = (coords(e, n, 128), coords(e, m, 129));
        let uv = u.dot(&v.t());
        let expected = Array1::from_shape_fn(e, |k| mm[k] - uv[[i[k] as usize, j[k] as usize]]).into_dyn();
        check_gather("completion", "sampled_residual", &[mm.into_dyn(), u.into_dyn(), v.into_dyn()], &[i, j], &expected);
    }
}

#[test]
fn tucker_entries() {
    for (a, b, c, i, j, k, e) in [(2, 3, 2, 4, 5, 3, 9), (1, 1, 1, 1, 1, 1, 1)] {
        let (g, u1, u2, u3) = (r3(a, b, c, 151), r2(i, a, 152), r2(j, b, 153), r2(k, c, 154));
        let (ii, jj, kk) = (coords(e, i, 155), coords(e, j, 156), coords(e, k, 157));
        let expected = Array1::from_shape_fn(e, |n| {
            let mut s = 0.0;
            for ((p, q, r), v) in g.indexed_iter() {
                s += v * u1[[ii[n] as usize, p]] * u2[[jj[n] as usize, q]] * u3[[kk[n] as usize, r]];
            }
            s
        })
        .into_dyn();
        let inputs = [g.into_dyn(), u1.into_dyn(), u2.into_dyn(), u3.into_dyn()];
        check_gather("tucker", "entries", &inputs, &[ii, jj, kk], &expected);
    }
}

// ---------------------------------------------------------------------------------------
// Programs that use the stdlib, and the harness itself

/// A transformer-style block written against two stdlib modules: a LoRA-adapted
/// projection followed by RMS normalisation.
#[test]
fn program_using_two_modules() {
    let src = r#"
use std::lowrank
use std::norm

fn block(X: f64[n, d], W: f64[d, o], B: f64[d, r], A: f64[r, o], alpha: f64, gamma: f64[o]) -> Y: f64[n, o] {
    H = lowrank::lora(X, W, B, A, alpha)
    Y = norm::rmsnorm(H, gamma)
}
"#;
    let m = Module::from_source(src).unwrap_or_else(|e| panic!("{}", e.render(false)));
    assert!(m.warnings().is_empty(), "{}", m.render_warnings(false));
    let f = m.function("block").unwrap();
    let (n, d, o, r) = (5, 6, 4, 2);
    let (x, w, b, a, g, alpha) = (r2(n, d, 131), r2(d, o, 132), r2(d, r, 133), r2(r, o, 134), r1(o, 135), 2.0);
    let h = x.dot(&w) + alpha / r as f64 * x.dot(&b).dot(&a);
    let mut expected = h.clone();
    for mut row in expected.rows_mut() {
        let rms = (row.iter().map(|v| v * v).sum::<f64>() / o as f64 + 1e-6).sqrt();
        row.iter_mut().zip(g.iter()).for_each(|(v, gj)| *v = *v / rms * gj);
    }
    let alpha = arr0(alpha).into_dyn();
    let views = [
        x.view().into_dyn(),
        w.view().into_dyn(),
        b.view().into_dyn(),
        a.view().into_dyn(),
        alpha.view(),
        g.view().into_dyn(),
    ];
    let out = f.call(&views).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let err = relative_error(&out[0], &expected.into_dyn());
    assert!(err < TOL_F64, "error {err:e}");
}

/// The comparison is able to fail: a reference that is off by a little is rejected.
#[test]
#[should_panic(expected = "max error")]
fn check_rejects_a_wrong_reference() {
    let (p, g) = (r2(4, 2, 141), r2(4, 3, 142));
    let mut wrong = p.t().dot(&g);
    wrong[[0, 0]] += 1e-3;
    check("lowrank", "galore", &[p.into_dyn(), g.into_dyn()], &wrong.into_dyn());
}

/// Every stdlib module checks cleanly, without warnings, every function has a reference
/// test, and every tested name still exists.
#[test]
fn stdlib_modules_check_without_warnings() {
    let mut found = Vec::new();
    for name in tessera_compiler::stdlib::names() {
        let m = Module::stdlib(name).unwrap_or_else(|e| panic!("{}", e.render(false)));
        assert!(m.warnings().is_empty(), "std::{name}:\n{}", m.render_warnings(false));
        for f in m.function_names() {
            let full = format!("{name}::{f}");
            assert!(TESTED.contains(&full.as_str()), "{full} has no reference test");
            found.push(full);
        }
    }
    for t in TESTED {
        assert!(found.iter().any(|f| f == t), "{t} is in TESTED but no stdlib module defines it");
    }
}

/// Each function's source carries a doc comment (the `#` lines directly above `fn`)
/// that names its shapes and the plan Tessera should find.
#[test]
fn stdlib_functions_have_doc_comments() {
    for (name, src) in tessera_compiler::stdlib::MODULES {
        let lines: Vec<&str> = src.lines().collect();
        for (k, line) in lines.iter().enumerate() {
            let Some(rest) = line.strip_prefix("fn ") else { continue };
            let fname = rest.split(['(', '[']).next().unwrap_or(rest);
            let doc: Vec<&str> = lines[..k].iter().rev().take_while(|l| l.starts_with('#')).copied().collect();
            let doc = doc.join("\n");
            assert!(doc.contains("Shapes:"), "std::{name}::{fname} has no `Shapes:` line in its doc comment");
            assert!(
                doc.contains("Plan to find:"),
                "std::{name}::{fname} has no `Plan to find:` line in its doc comment"
            );
        }
    }
}

/// The `.tsr` code in docs/ stays true: a block that defines functions without `use` is
/// copied from a stdlib module and must still be in it verbatim; a block with `use`
/// must check without warnings.
#[test]
fn docs_code_blocks_match_the_stdlib() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut blocks = 0;
    for entry in std::fs::read_dir(&docs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for block in text.split("```tsr\n").skip(1) {
            let code = &block[..block.find("```").unwrap()];
            blocks += 1;
            if code.contains("use std::") {
                let m = Module::from_source(code).unwrap_or_else(|e| panic!("{}: {}", path.display(), e.render(false)));
                assert!(m.warnings().is_empty(), "{}: {}", path.display(), m.render_warnings(false));
            } else {
                let found = tessera_compiler::stdlib::MODULES.iter().any(|(_, src)| src.contains(code.trim_end()));
                assert!(found, "{}: this block is not in any stdlib module any more:\n{code}", path.display());
            }
        }
    }
    assert!(blocks >= 31, "expected a code block per stdlib function in docs/, found {blocks}");
}

/// The size of each dim of a function.
type Dims = &'static [(&'static str, u64)];

/// FLOPs of the plan Tessera finds at the workload sizes, within 10% of the cost of the
/// plan WORKLOADS.md asks for. A regression in the planner fails here.
#[test]
fn plans_reach_the_expected_cost() {
    // (module, function, dims, FLOPs of the expected plan)
    let n = 100.0f64;
    let cases: &[(&str, &str, Dims, f64)] = &[
        // One mode at a time: 2·(b·c·i·a + j·c·i·b + i·j·k·c).
        ("tucker", "reconstruct", &[("i", 40), ("j", 30), ("k", 20), ("a", 8), ("b", 6), ("c", 4)], 2.65e5),
        ("tucker", "project", &[("i", 40), ("j", 30), ("k", 20), ("a", 8), ("b", 6), ("c", 4)], 2.65e5),
        // 2·i·j·k·r for the big contraction, plus the small one.
        ("cp", "mttkrp", &[("i", 50), ("j", 40), ("k", 30), ("r", 8)], 9.9e5),
        // Two projections, a pointwise product, one back-projection: 2·g·(2i + k) + g.
        ("equivariant", "grid_product", &[("k", 49), ("g", 200), ("i", 49)], 2.0 * 200.0 * (2.0 * 49.0 + 49.0) + 200.0),
        // The same as GEMMs over a batch of z: 2·z·g·(2i + k) + z·g.
        (
            "equivariant",
            "grid_product_batched",
            &[("z", 1000), ("k", 49), ("g", 200), ("i", 49)],
            1000.0 * (2.0 * 200.0 * (2.0 * 49.0 + 49.0) + 200.0),
        ),
        // O(n³): one GEMM (two for the four-index patterns) and O(n²) work.
        ("graph_poly", "triangles", &[("n", 100)], 2.0 * n.powi(3) + 2.0 * n * n),
        ("graph_poly", "four_cycle", &[("n", 100)], 4.0 * n.powi(3) + 2.0 * n * n),
        ("graph_poly", "tailed_triangles", &[("n", 100)], 2.0 * n.powi(3) + 4.0 * n * n),
        ("graph_poly", "node_triangles", &[("n", 100)], 2.0 * n.powi(3) + 2.0 * n * n),
        ("graph_poly", "edge_triangles", &[("n", 100)], 2.0 * n.powi(3) + n * n),
        ("graph_poly", "four_path", &[("n", 100)], 4.0 * n.powi(3) + n * n),
        // X W, then (X B) A: 2·n·d·o + 2·n·r·(d + o), plus the sum.
        (
            "lowrank",
            "lora",
            &[("n", 512), ("d", 256), ("o", 256), ("r", 8)],
            2.0 * 512.0 * 256.0 * 256.0 + 2.0 * 512.0 * 8.0 * 512.0 + 4.0 * 512.0 * 256.0,
        ),
        // x W with (m, b) merged, then (x A) Bᵀ per member.
        (
            "lowrank",
            "eggroll",
            &[("m", 16), ("b", 8), ("i", 64), ("o", 64), ("r", 2)],
            2.0 * 128.0 * 64.0 * 64.0 + 4.0 * 128.0 * 64.0 * 2.0 + 2.0 * 128.0 * 64.0,
        ),
        // One GEMM with (m, r) merged: 2·i·o·m·r, plus scaling A by f.
        (
            "lowrank",
            "eggroll_update",
            &[("m", 16), ("i", 64), ("o", 64), ("r", 2)],
            2.0 * 64.0 * 64.0 * 32.0 + 64.0 * 32.0,
        ),
        // P (Pᵀ G): two thin GEMMs of 2·n·r·m, plus the subtraction.
        ("lowrank", "galore_residual", &[("n", 256), ("m", 128), ("r", 8)], 4.0 * 256.0 * 8.0 * 128.0 + 256.0 * 128.0),
        // ((x P) ⊙ λ) Q.
        (
            "lowrank",
            "adalora",
            &[("b", 64), ("d", 256), ("r", 8), ("o", 256)],
            2.0 * 64.0 * 256.0 * 8.0 * 2.0 + 64.0 * 8.0,
        ),
        // G⁻¹ ∇ A⁻¹: 2·g²·a + 2·g·a².
        ("kron", "kfac_precondition", &[("a", 128), ("g", 64)], 2.0 * 64.0 * 64.0 * 128.0 + 2.0 * 64.0 * 128.0 * 128.0),
        // u = A⁻¹v, w = vᵀA⁻¹ (CSE), the outer product and the update: O(n²).
        ("kron", "sherman_morrison", &[("n", 256)], 8.0 * 256.0 * 256.0),
    ];
    for (module, function, dims, expected) in cases {
        let m = Module::stdlib(module).unwrap();
        let plan = m.function(function).unwrap().plan_for(dims).unwrap_or_else(|e| panic!("{}", e.render(false)));
        assert!(
            plan.flops <= expected * 1.1,
            "{module}::{function}: {:.3e} FLOPs, expected about {expected:.3e}\n{plan}",
            plan.flops
        );
    }
}

/// The plans WORKLOADS.md asks for that need the algebra pass (distributing a power,
/// merging statements) or slicing (no n×n or n³ score buffer beyond a tile).
#[test]
fn plans_from_algebra_and_slicing() {
    // (module, function, dims, FLOPs of the expected plan, memory limit, largest intermediate)
    type Case = (&'static str, &'static str, Dims, f64, Option<u64>, u64);
    let cases: &[Case] = &[
        // Softmax attention sliced over query rows: tile-sized buffers, no extra work.
        ("attention", "softmax", &[("n", 256), ("m", 256), ("d", 64), ("e", 64)], 1.8e7, Some(64 * 1024), 64 * 256 * 4),
        // Exact tensor attention: never all of S (n³); the per-i slices cost nothing extra.
        // V1⊙V2 (n²·d) is still kept whole, so this is O(n²d) memory, not WORKLOADS' O(nd).
        (
            "tensor_attention",
            "exact",
            &[("n", 64), ("m1", 64), ("m2", 64), ("d", 16), ("e", 16)],
            2.0e7,
            Some(256 * 1024),
            300 * 1024,
        ),
        // The distributed power: O(n d² e + m d² e).
        ("tensor_attention", "poly", &[("n", 64), ("m1", 64), ("m2", 64), ("d", 8), ("e", 8)], 5.0e5, None, 64 * 64 * 8 * 4),
        // D ((Aᵀx) ⊙ (Bᵀy)): O(r·(l1 + l2 + l3)).
        ("equivariant", "cp_product", &[("l1", 16), ("l2", 16), ("l3", 16), ("r", 32)], 5.0e3, None, 4096),
        // B X Aᵀ on the reshaped vector, never the Kronecker matrix.
        ("kron", "matvec", &[("m1", 32), ("n1", 32), ("m2", 32), ("n2", 32)], 1.5e5, None, 32 * 32 * 4),
    ];
    for (module, function, dims, flops, limit, bytes) in cases {
        let m = Module::stdlib(module).unwrap();
        let opts = tessera::PlanOptions { memory_limit: *limit, ..tessera::PlanOptions::default() };
        let plan = m.function(function).unwrap().plan(dims, &opts).unwrap_or_else(|e| panic!("{}", e.render(false)));
        assert!(plan.flops <= flops * 1.1, "{module}::{function}: {:.2e} FLOPs, target {flops:.1e}\n{plan}", plan.flops);
        assert!(plan.peak_bytes <= *bytes, "{module}::{function}: peak {} B, target {bytes} B\n{plan}", plan.peak_bytes);
        assert!(plan.slices.iter().all(|s| s.extra_flops == 0.0), "{module}::{function}: slicing recomputes\n{plan}");
    }
}
