//! Gathers through integer index inputs (`U[I[e], a]`, docs/gather.md): every executor
//! and the reference evaluator against an ndarray implementation written from the
//! formula, on random index arrays (proptest), in f32 and f64 with i32 and i64 indices;
//! out-of-range indices as errors naming the input, the position and the value; and
//! the plans' costs.

mod common;
use common::rand;
use ndarray::{Array1, Array2, Array3, ArrayD, IxDyn};
use proptest::prelude::*;
use tessera::{Backend, CallOptions, DType, IndexView, Module};


/// Indices in `0..n`, deterministic.
fn indices(len: usize, n: usize, seed: u64) -> Array1<i64> {
    let r = rand(&[len], seed);
    Array1::from_iter(r.iter().map(|x| (((x + 1.0) / 2.0 * n as f64) as i64).min(n as i64 - 1)))
}

fn two(x: &ArrayD<f64>) -> Array2<f64> {
    x.clone().into_dimensionality().unwrap()
}

/// `y[e] = Σ G[a,b,c] U1[I[e],a] U2[J[e],b] U3[K[e],c]`, entry by entry.
fn entries_ref(g: &ArrayD<f64>, u: [&ArrayD<f64>; 3], idx: [&Array1<i64>; 3]) -> ArrayD<f64> {
    let g: Array3<f64> = g.clone().into_dimensionality().unwrap();
    let (u1, u2, u3) = (two(u[0]), two(u[1]), two(u[2]));
    let e = idx[0].len();
    ArrayD::from_shape_fn(IxDyn(&[e]), |ix| {
        let n = ix[0];
        let (i, j, k) = (idx[0][n] as usize, idx[1][n] as usize, idx[2][n] as usize);
        let mut s = 0.0;
        for ((a, b, c), v) in g.indexed_iter() {
            s += v * u1[[i, a]] * u2[[j, b]] * u3[[k, c]];
        }
        s
    })
}

/// `R[e] = M[e] - Σ_s U[I[e], s] V[J[e], s]`.
fn residual_ref(m: &ArrayD<f64>, u: &ArrayD<f64>, v: &ArrayD<f64>, i: &Array1<i64>, j: &Array1<i64>) -> ArrayD<f64> {
    let (u, v) = (two(u), two(v));
    ArrayD::from_shape_fn(IxDyn(&[i.len()]), |ix| {
        let n = ix[0];
        m[[n]] - u.row(i[n] as usize).dot(&v.row(j[n] as usize))
    })
}

fn all_backends() -> Vec<Backend> {
    let mut v = Backend::executors();
    v.push(Backend::Reference);
    v
}

/// The index arrays as i32 or i64 views' owners.
enum Ints {
    I32(Vec<ArrayD<i32>>),
    I64(Vec<ArrayD<i64>>),
}

impl Ints {
    fn new(xs: &[&Array1<i64>], wide: bool) -> Ints {
        if wide {
            Ints::I64(xs.iter().map(|x| x.view().into_dyn().to_owned()).collect())
        } else {
            Ints::I32(xs.iter().map(|x| x.mapv(|v| v as i32).into_dyn()).collect())
        }
    }

    fn views(&self) -> Vec<IndexView<'_>> {
        match self {
            Ints::I32(v) => v.iter().map(|a| IndexView::I32(a.view())).collect(),
            Ints::I64(v) => v.iter().map(|a| IndexView::I64(a.view())).collect(),
        }
    }
}

/// Runs `f` on every executor and the reference in f64 and f32 with i32 and i64
/// indices, and compares with `expected`.
fn check_all(f: &tessera::Function<'_>, values: &[ArrayD<f64>], idx: &[&Array1<i64>], expected: &ArrayD<f64>) {
    let scale = expected.iter().fold(1e-300f64, |a, b| a.max(b.abs()));
    for backend in all_backends() {
        for wide in [false, true] {
            let ints = Ints::new(idx, wide);
            let views = ints.views();
            for dtype in [DType::F64, DType::F32] {
                let opts = CallOptions { backend, dtype: Some(dtype), ..CallOptions::default() };
                let got: ArrayD<f64> = if dtype == DType::F64 {
                    let vs: Vec<_> = values.iter().map(|a| a.view()).collect();
                    f.call_with_indices(&vs, &views, &opts).unwrap_or_else(|e| panic!("{backend}: {}", e.render(false))).remove(0)
                } else {
                    let owned: Vec<ArrayD<f32>> = values.iter().map(|a| a.mapv(|x| x as f32)).collect();
                    let vs: Vec<_> = owned.iter().map(|a| a.view()).collect();
                    let out = f.call_with_indices(&vs, &views, &opts).unwrap_or_else(|e| panic!("{backend}: {}", e.render(false)));
                    out[0].mapv(f64::from)
                };
                let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
                assert_eq!(got.shape(), expected.shape());
                let err = got.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
                assert!(!got.iter().any(|x| x.is_nan()) && err <= tol, "{} on {backend} in {dtype} (i{}): error {err:e}", f.name(), if wide { 64 } else { 32 });
            }
        }
    }
}

fn tucker() -> Module {
    Module::stdlib("tucker").unwrap()
}

fn completion() -> Module {
    Module::stdlib("completion").unwrap()
}

#[allow(clippy::too_many_arguments)]
fn run_entries(dims: (usize, usize, usize, usize, usize, usize, usize), seed: u64) {
    let (a, b, c, i, j, k, e) = dims;
    let g = rand(&[a, b, c], seed);
    let (u1, u2, u3) = (rand(&[i, a], seed + 1), rand(&[j, b], seed + 2), rand(&[k, c], seed + 3));
    let (ii, jj, kk) = (indices(e, i, seed + 4), indices(e, j, seed + 5), indices(e, k, seed + 6));
    let expected = entries_ref(&g, [&u1, &u2, &u3], [&ii, &jj, &kk]);
    let m = tucker();
    check_all(&m.function("entries").unwrap(), &[g, u1, u2, u3], &[&ii, &jj, &kk], &expected);
}

fn run_residual(n: usize, m: usize, r: usize, e: usize, seed: u64) {
    let (mm, u, v) = (rand(&[e], seed), rand(&[n, r], seed + 1), rand(&[m, r], seed + 2));
    let (i, j) = (indices(e, n, seed + 3), indices(e, m, seed + 4));
    let expected = residual_ref(&mm, &u, &v, &i, &j);
    let module = completion();
    check_all(&module.function("sampled_residual").unwrap(), &[mm, u, v], &[&i, &j], &expected);
}

#[test]
fn tucker_entries_on_every_backend() {
    run_entries((3, 4, 2, 5, 6, 7, 11), 1);
    run_entries((1, 1, 1, 1, 1, 1, 1), 2);
    // More entries than rows: indices repeat.
    run_entries((4, 3, 5, 2, 3, 4, 40), 3);
}

#[test]
fn sampled_residual_on_every_backend() {
    run_residual(7, 5, 3, 12, 10);
    run_residual(1, 1, 1, 1, 11);
    // Long rank rows and many entries (parallel chunks of the entry loop).
    run_residual(30, 20, 17, 300, 12);
}

#[test]
fn no_entries() {
    run_residual(4, 3, 2, 0, 13);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn residual_on_random_indices(n in 1usize..9, m in 1usize..9, r in 1usize..6, e in 0usize..30, seed in 0u64..1000) {
        run_residual(n, m, r, e, seed);
    }

    #[test]
    fn entries_on_random_indices(a in 1usize..4, b in 1usize..4, c in 1usize..4, i in 1usize..6, e in 0usize..12, seed in 0u64..1000) {
        run_entries((a, b, c, i, i + 1, i + 2, e), seed);
    }
}

/// A program using more of the syntax: a two-axis index tensor, two gathered positions
/// of one tensor, a gather of an intermediate, and an expression around the gathers.
#[test]
fn gathers_in_a_program() {
    let src = r#"
fn pairs(A: f64[n, m], W: f64[n, d], P: i32[e, t], Q: i64[e, t]) -> (y: f64[e, t], z: f64[e, t, d]) {
    S[i, k] = exp(W[i, k])
    y[x, s] = A[P[x, s], Q[x, s]] * 2 + 1
    z[x, s, k] = S[P[x, s], k] * A[P[x, s], Q[x, s]]
}
"#;
    let module = Module::from_source(src).unwrap_or_else(|e| panic!("{}", e.render(false)));
    assert!(module.warnings().is_empty(), "{}", module.render_warnings(false));
    let f = module.function("pairs").unwrap();
    let (n, m, d, e, t) = (5, 4, 3, 6, 2);
    let (a, w) = (rand(&[n, m], 31), rand(&[n, d], 32));
    let p = Array2::from_shape_fn((e, t), |(x, s)| ((x * 3 + s) % n) as i32);
    let q = Array2::from_shape_fn((e, t), |(x, s)| ((x + 2 * s) % m) as i64);
    let (a2, w2) = (two(&a), two(&w));
    let y = ArrayD::from_shape_fn(IxDyn(&[e, t]), |ix| a2[[p[[ix[0], ix[1]]] as usize, q[[ix[0], ix[1]]] as usize]] * 2.0 + 1.0);
    let z = ArrayD::from_shape_fn(IxDyn(&[e, t, d]), |ix| {
        let (i, j) = (p[[ix[0], ix[1]]] as usize, q[[ix[0], ix[1]]] as usize);
        w2[[i, ix[2]]].exp() * a2[[i, j]]
    });
    let (pd, qd) = (p.into_dyn(), q.into_dyn());
    for backend in all_backends() {
        let opts = CallOptions { backend, ..CallOptions::default() };
        let out = f
            .call_with_indices(&[a.view(), w.view()], &[IndexView::I32(pd.view()), IndexView::I64(qd.view())], &opts)
            .unwrap_or_else(|e| panic!("{backend}: {}", e.render(false)));
        for (got, want) in out.iter().zip([&y, &z]) {
            let err = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-12, "{backend}: error {err:e}");
        }
    }
}

/// Gathered rows feeding a stdlib call (docs/gather.md's example): token embeddings
/// through an index tensor of two axes, a grouped left side, then `norm::rmsnorm`.
#[test]
fn embedding_then_rmsnorm() {
    let src = "use std::norm\n\nfn embed(E: f64[v, d], gamma: f64[d], T: i64[b, t]) -> Y: f64[b * t, d] {\n    X[(p, q), k] = E[T[p, q], k]\n    Y = norm::rmsnorm(X, gamma)\n}\n";
    let module = Module::from_source(src).unwrap_or_else(|e| panic!("{}", e.render(false)));
    assert!(module.warnings().is_empty(), "{}", module.render_warnings(false));
    let f = module.function("embed").unwrap();
    let (v, d, b, t) = (7, 5, 3, 4);
    let (e, gamma) = (rand(&[v, d], 41), rand(&[d], 42));
    let tok = Array2::from_shape_fn((b, t), |(p, q)| ((p * 5 + q * 3) % v) as i64);
    let e2 = two(&e);
    let want = ArrayD::from_shape_fn(IxDyn(&[b * t, d]), |ix| {
        let row = e2.row(tok[[ix[0] / t, ix[0] % t]] as usize);
        let ms = row.dot(&row) / d as f64;
        row[ix[1]] / (ms + 1e-6).sqrt() * gamma[[ix[1]]]
    });
    let td = tok.into_dyn();
    for backend in all_backends() {
        let opts = CallOptions { backend, ..CallOptions::default() };
        let out = f.call_with_indices(&[e.view(), gamma.view()], &[IndexView::I64(td.view())], &opts).unwrap_or_else(|x| panic!("{backend}: {}", x.render(false)));
        let err = out[0].iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-12, "{backend}: error {err:e}");
    }
}

/// An index outside its axis is an input error on every executor, before any kernel
/// runs, naming the input, its position, the value and the range.
#[test]
fn out_of_range_indices_are_errors() {
    let module = completion();
    let f = module.function("sampled_residual").unwrap();
    let (n, m, r, e) = (4, 3, 2, 5);
    let (mm, u, v) = (rand(&[e], 1), rand(&[n, r], 2), rand(&[m, r], 3));
    let vals = [mm.view(), u.view(), v.view()];
    let good = indices(e, m, 4);
    // (which input is bad, position, value, the range's end)
    for (bad_j, value) in [(false, -1i64), (false, n as i64), (true, m as i64), (true, i64::from(i32::MAX)), (false, i64::MIN)] {
        let mut i = indices(e, n, 5);
        let mut j = good.clone();
        let (target, size, name) = if bad_j { (&mut j, m, "J") } else { (&mut i, n, "I") };
        target[3] = value;
        for wide in [false, true] {
            if !wide && i32::try_from(value).is_err() {
                continue;
            }
            let ints = Ints::new(&[&i, &j], wide);
            for backend in all_backends() {
                let opts = CallOptions { backend, ..CallOptions::default() };
                let owned: Vec<ArrayD<f32>> = vals.iter().map(|a| a.mapv(|x| x as f32)).collect();
                let vs: Vec<_> = owned.iter().map(|a| a.view()).collect();
                let err = f.call_with_indices(&vs, &ints.views(), &opts).expect_err("an index out of range");
                let msg = err.render(false);
                let want = format!("index input `{name}` at [3] is {value}, outside 0..{size}");
                assert!(msg.contains(&want), "{backend}, i{}: {msg}\nexpected: {want}", if wide { 64 } else { 32 });
                assert!(
                    matches!(err, tessera::Error::Input(_) | tessera::Error::Eval(tessera::EvalError::Input(_))),
                    "{backend}: {err:?}"
                );
            }
        }
    }
}

/// Calling a gathering function without its index arrays says how to call it.
#[test]
fn call_without_indices_is_refused() {
    let module = completion();
    let f = module.function("sampled_residual").unwrap();
    let (mm, u, v) = (rand(&[2], 1), rand(&[2, 2], 2), rand(&[2, 2], 3));
    let err = f.call(&[mm.view(), u.view(), v.view()]).expect_err("index inputs missing");
    assert!(err.render(false).contains("takes index inputs (I, J); call it with call_with_indices"), "{}", err.render(false));
    let err = f.call_with_indices(&[mm.view(), u.view(), v.view()], &[], &CallOptions::default()).expect_err("no indices");
    assert!(err.render(false).contains("takes 2 index inputs (I, J), but 0 were given"), "{}", err.render(false));
}

/// At 1% density the sampled residual's multiply-adds are 1% of the masked (dense)
/// form's, and with its gathers (one operation per element gathered) about 2%.
#[test]
fn sampled_residual_costs_the_observed_fraction() {
    let (n, m, r) = (2000u64, 1000u64, 32u64);
    let e = n * m / 100;
    let dense = completion().function("masked_residual").unwrap().plan_for(&[("n", n), ("m", m), ("r", r)]).unwrap();
    let sampled =
        completion().function("sampled_residual").unwrap().plan_for(&[("n", n), ("m", m), ("r", r), ("e", e)]).unwrap();
    let contraction: f64 = sampled.steps.iter().filter(|s| matches!(s.kind, tessera::StepKind::Contract { .. })).map(|s| s.flops).sum();
    let dense_contraction: f64 = 2.0 * (n * m * r) as f64;
    let ratio = contraction / dense_contraction;
    assert!((0.009..=0.011).contains(&ratio), "multiply-adds at {ratio:.4} of the dense form's\n{sampled}");
    let ratio = sampled.flops / dense.flops;
    assert!(ratio <= 0.025, "sampled at {ratio:.4} of the masked form\n{sampled}\n{dense}");
    // Nothing of the dense n×m shape is built.
    assert!(sampled.steps.iter().all(|s| s.shape.iter().product::<u64>() <= e * r), "{sampled}");
}

/// `tucker::entries` gathers rows and contracts per entry: no i·j·k intermediate, and
/// the cost of the contraction with G per entry, 2·e·a·b·c, dominates.
#[test]
fn tucker_entries_plan_is_per_entry() {
    let (a, b, c, i, j, k, e) = (8u64, 8, 8, 200, 200, 200, 5000);
    let plan = tucker()
        .function("entries")
        .unwrap()
        .plan_for(&[("a", a), ("b", b), ("c", c), ("i", i), ("j", j), ("k", k), ("e", e)])
        .unwrap();
    let biggest = plan.steps.iter().map(|s| s.shape.iter().product::<u64>()).max().unwrap_or(0);
    assert!(biggest <= e * b * c, "an intermediate of {biggest} elements\n{plan}");
    let per_entry = 2.0 * (e * a * b * c) as f64;
    assert!(plan.flops <= per_entry * 1.2, "{:.3e} FLOPs, expected about {per_entry:.3e}\n{plan}", plan.flops);
    let gathers = plan.steps.iter().filter(|s| s.einsum.contains("[I[") || s.einsum.contains("[J[") || s.einsum.contains("[K[")).count();
    assert_eq!(gathers, 3, "{plan}");
}

/// The compiled program checks its index inputs itself: `Compiled::run_indexed`.
#[test]
fn compiled_runs_indexed() {
    let module = completion();
    let f = module.function("sampled_residual").unwrap();
    let (n, m, r, e) = (6usize, 5usize, 3usize, 9usize);
    let c = f.compile(&[&[e], &[n, r], &[m, r], &[e], &[e]], &CallOptions { dtype: Some(DType::F64), ..CallOptions::default() }).unwrap();
    assert_eq!(c.program().indices.len(), 2);
    let (mm, u, v) = (rand(&[e], 7), rand(&[n, r], 8), rand(&[m, r], 9));
    let (i, j) = (indices(e, n, 10), indices(e, m, 11));
    let expected = residual_ref(&mm, &u, &v, &i, &j);
    let (id, jd) = (i.into_dyn(), j.into_dyn());
    let out = c.run_indexed(&[mm.view(), u.view(), v.view()], &[IndexView::I64(id.view()), IndexView::I64(jd.view())]).unwrap();
    let err = out[0].iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err < 1e-12);
}

/// A call whose intermediates exceed the memory limit is refused with the reason, not
/// sliced (slice loops do not follow gathered rows yet).
#[test]
fn memory_limited_gathers_are_refused() {
    let m = tucker();
    let f = m.function("entries").unwrap();
    let (a, b, c, i, e) = (4, 4, 4, 5, 100);
    let g = rand(&[a, b, c], 1);
    let (u1, u2, u3) = (rand(&[i, a], 2), rand(&[i, b], 3), rand(&[i, c], 4));
    let idx: Vec<ArrayD<i64>> = (0..3).map(|k| indices(e, i, 5 + k).into_dyn()).collect();
    let views: Vec<IndexView<'_>> = idx.iter().map(|x| IndexView::I64(x.view())).collect();
    let opts = CallOptions { memory_limit: 4096, ..CallOptions::default() };
    let err = f.call_with_indices(&[g.view(), u1.view(), u2.view(), u3.view()], &views, &opts).expect_err("over the limit");
    assert!(matches!(err, tessera::Error::Memory(_)) && err.render(false).contains("functions that gather do not run in slices"), "{err:?}");
}
