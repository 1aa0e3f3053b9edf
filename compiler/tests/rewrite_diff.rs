//! Differential tests of the pre-planning rewrites (`optimize::rewrite`): a select pulled
//! out of a sum and a flat read of a grouped definition inlined. The reference evaluator
//! runs the program as written (unrewritten TIR); the plan (rewritten) runs on the JIT and
//! on the loop interpreter, in f32 and f64, with and without GEMMs and fusion, at sizes
//! 0, 1 and up, and on inputs with NaN and infinities.

use ndarray::{ArrayD, IxDyn};
use tessera_compiler::eval::{evaluate, EvalOptions, Scalar};
use tessera_compiler::exec::Executable;
use tessera_compiler::loops::LowerOptions;
use tessera_compiler::pipeline::{self, Stage};
use tessera_compiler::Backend;
use tessera_compiler::plan::{plan, PlanOptions, StepKind};
use tessera_compiler::tir::{Bindings, Function};
use tessera_runtime::DType;

fn checked(src: &str) -> Function {
    let (sm, _, c) = pipeline::check("p.tsr", src);
    assert!(c.diagnostics.is_empty(), "{}", tessera_compiler::diag::render_all(&c.diagnostics, &sm, false));
    c.functions.into_iter().next().expect("one function")
}

fn bind(f: &Function, dims: &[(&str, u64)]) -> Bindings {
    let mut b = Bindings::new(f.dims.len());
    for (n, v) in dims {
        b.set(f.dim_by_name(n).expect("dim"), *v);
    }
    b
}

/// Inputs in [-1, 1), with every seventh entry taken from `specials` when given.
fn inputs(f: &Function, b: &Bindings, specials: &[f64]) -> Vec<ArrayD<f64>> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut k = 0usize;
    f.inputs
        .iter()
        .map(|&t| {
            let shape = f.shape(t, b).expect("shape");
            ArrayD::from_shape_simple_fn(IxDyn(&shape), || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                k += 1;
                if !specials.is_empty() && k.is_multiple_of(7) {
                    specials[(k / 7) % specials.len()]
                } else {
                    (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
                }
            })
        })
        .collect()
}

/// Runs `f` on every backend and lowering and compares with the oracle; returns the number
/// of (backend, lowering) runs compared. With `exact_nonfinite`, NaN and infinities must
/// come out as the oracle has them; without, a non-finite oracle value may become another
/// one (reassociating `inf * 0 + ...` can), as in `jit_props`.
fn run<T: Scalar>(f: &Function, b: &Bindings, opts: &PlanOptions, specials: &[f64], tol: f64, exact_nonfinite: bool) -> usize {
    let mut f = f.clone();
    f.dtype = T::DTYPE;
    let ins = inputs(&f, b, specials);
    let views: Vec<_> = ins.iter().map(|a| a.view()).collect();
    // The oracle: the program as written, in f64.
    let mut f64fn = f.clone();
    f64fn.dtype = DType::F64;
    let want = evaluate(&f64fn, b, &views, &EvalOptions::default()).expect("the oracle evaluates");
    let p = plan(&f, b, opts).unwrap_or_else(|e| panic!("{e}\n{f}"));
    let typed: Vec<ArrayD<T>> = ins.iter().map(|a| a.mapv(T::from_f64)).collect();
    let typed_views: Vec<_> = typed.iter().map(|a| a.view()).collect();
    let mut runs = 0;
    for bits in 0..4u8 {
        let lopts = LowerOptions { gemm: bits & 1 == 0, fuse: bits & 2 == 0, ..Default::default() };
        let popts = pipeline::Options { plan: opts.clone(), lower: lopts.clone(), stop_after: Stage::Loops, ..Default::default() };
        let out = pipeline::compile(&f, b, f.dtype, &popts).unwrap_or_else(|e| panic!("{e}\n{p}"));
        let prog = out.program.expect("a loop program");
        for backend in Backend::executors() {
            let exe = Executable::new(prog.clone(), backend).unwrap_or_else(|e| panic!("{e}\n{prog}"));
            let got = exe.run(&typed_views).unwrap_or_else(|e| panic!("{e}\n{prog}"));
            assert_eq!(got.len(), want.len(), "output count");
            for (w, g) in want.iter().zip(&got) {
                assert_eq!(w.shape(), g.shape(), "shape");
                let scale = w.iter().filter(|v| v.is_finite()).fold(1.0f64, |a, v| a.max(v.abs()));
                for (k, (a, c)) in w.iter().zip(g.iter()).enumerate() {
                    let c = Scalar::to_f64(*c);
                    let ok = if !a.is_finite() && !exact_nonfinite {
                        true
                    } else if a.is_nan() {
                        c.is_nan()
                    } else if a.is_infinite() {
                        a == &c
                    } else {
                        (a - c).abs() <= tol * scale
                    };
                    assert!(
                        ok,
                        "{} {} gemm={} fuse={}: element {k} is {c}, the oracle says {a}\n{f}\n{p}",
                        backend.name(),
                        T::DTYPE.name(),
                        lopts.gemm,
                        lopts.fuse
                    );
                }
            }
            runs += 1;
        }
    }
    runs
}

/// Runs per plan and dtype: four lowerings (GEMMs and fusion on or off) on every
/// executor of the build.
fn per_plan() -> usize {
    4 * Backend::executors().len()
}

fn run_both(f: &Function, b: &Bindings, opts: &PlanOptions, specials: &[f64]) -> usize {
    run::<f64>(f, b, opts, specials, 1e-10, true) + run::<f32>(f, b, opts, specials, 1e-4, true)
}

/// For programs whose plan reassociates (inlined grouped definitions): finite oracle values
/// are compared as usual, non-finite ones only where the inputs are finite.
fn run_reassociated(f: &Function, b: &Bindings, opts: &PlanOptions, specials: &[f64]) -> usize {
    let exact = specials.is_empty();
    run::<f64>(f, b, opts, specials, 1e-10, exact) + run::<f32>(f, b, opts, specials, 1e-4, exact)
}

const CAUSAL: &str = "fn causal(Q: f32[n, d], K: f32[n, d], V: f32[n, d]) -> (S: f32[n, n], O: f32[n, d]) {
    S[i, j] = select(j <= i, Q[i, a] * K[j, a] / sqrt(d), -inf)
    M[i] max= S[i, j]
    P[i, j] = exp(S[i, j] - M[i])
    O[i, c] = P[i, j] * V[j, c] / sum[k](P[i, k])
}";

#[test]
fn causal_scores_plan_a_gemm_and_match_the_oracle() {
    let f = checked(CAUSAL);
    // The scores are a contraction now, with and without the algebra pass.
    let b = bind(&f, &[("n", 64), ("d", 16)]);
    for opts in [PlanOptions::default(), PlanOptions { algebra: None, ..PlanOptions::default() }] {
        let p = plan(&f, &b, &opts).expect("plans");
        assert!(
            p.steps.iter().any(|s| s.statement == 0 && matches!(s.kind, StepKind::Contract { .. })),
            "no contraction for the scores:\n{p}"
        );
    }
    let mut runs = 0;
    // d = 0: the sum is empty, so the scores are 0 (not 0 / sqrt(0)) where j <= i.
    for (n, d) in [(3, 0), (1, 1), (2, 1), (5, 3), (9, 9), (17, 8)] {
        let b = bind(&f, &[("n", n), ("d", d)]);
        for opts in [PlanOptions::default(), PlanOptions { algebra: None, ..PlanOptions::default() }] {
            runs += run_both(&f, &b, &opts, &[]);
        }
    }
    assert_eq!(runs, 6 * 2 * 2 * per_plan());
}

/// An unscaled mask at every size, empty ones included, and with NaN and infinities in the
/// inputs: the select picks the same terms as the oracle's.
#[test]
fn masked_sums_match_the_oracle_at_every_size_and_on_special_values() {
    let src = "fn masked(Q: f32[n, d], K: f32[n, d]) -> (S: f32[n, n], T: f32[n, n], U: f32[n]) {
        S[i, j] = select(j <= i, Q[i, a] * K[j, a], -inf)
        T[i, j] = select(i != j, Q[i, a] * K[j, a], 0.25)
        U[i] max= select(i > 0, Q[i, a], -2) * K[i, a]
    }";
    let f = checked(src);
    let mut runs = 0;
    for (n, d) in [(0, 3), (3, 0), (1, 1), (1, 0), (4, 1), (6, 5)] {
        let b = bind(&f, &[("n", n), ("d", d)]);
        for specials in [&[][..], &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]] {
            runs += run_both(&f, &b, &PlanOptions::default(), specials);
        }
    }
    assert_eq!(runs, 6 * 2 * 2 * per_plan());
}

const KRON: &str = "fn kron_flat(A: f32[p, q], B: f32[r, s], x: f32[q * s]) -> y: f32[p * r] {
    K[(i, k), (j, l)] = A[i, j] * B[k, l]
    y[m] = K[m, t] * x[t]
}";

#[test]
fn a_flat_kronecker_read_is_not_materialised_and_matches_the_oracle() {
    let f = checked(KRON);
    let b = bind(&f, &[("p", 16), ("q", 16), ("r", 16), ("s", 16)]);
    let p = plan(&f, &b, &PlanOptions::default()).expect("plans");
    assert!(p.steps.iter().all(|s| s.shape.len() < 2 || s.shape.iter().product::<u64>() < 16 * 16 * 16), "K is materialised:\n{p}");
    // Without the algebra pass the program is planned as written.
    let plain = plan(&f, &b, &PlanOptions { algebra: None, ..PlanOptions::default() }).expect("plans");
    assert!(plain.steps.iter().any(|s| s.shape == [256, 256]), "{plain}");
    assert!(p.flops * 8.0 < plain.flops, "{} vs {}", p.flops, plain.flops);
    let mut runs = 0;
    for dims in [[0, 2, 3, 4], [2, 0, 3, 1], [1, 1, 1, 1], [2, 3, 4, 5], [7, 5, 3, 9]] {
        let b = bind(&f, &[("p", dims[0]), ("q", dims[1]), ("r", dims[2]), ("s", dims[3])]);
        for specials in [&[][..], &[f64::NAN, f64::INFINITY]] {
            runs += run_reassociated(&f, &b, &PlanOptions::default(), specials);
        }
    }
    assert_eq!(runs, 5 * 2 * 2 * per_plan());
}

/// Selects with conditions on tensors, nested masks, a select in a denominator, and
/// grouped definitions with three-member groups, an inner reduction and several readers.
#[test]
fn assorted_selects_and_grouped_reads_match_the_oracle() {
    let programs = [
        "fn f(Q: f64[n, d], K: f64[n, d], g: f64[n]) -> (S: f64[n, n], T: f64[n, n]) {
            S[i, j] = select(g[i] > 0 && j <= i, select(i != j, Q[i, a] * K[j, a], 2 * Q[i, a]), -inf)
            T[i, j] = K[j, a] / select(g[j] < 0.5, 1 + Q[i, a] * Q[i, a], 2)
        }",
        "fn f(A: f64[n, n], B: f64[n, n], C: f64[n, n], x: f64[n * n * n], w: f64[n * n]) -> (y: f64[n * n * n], z: f64[n * n]) {
            K[(i, k, o), (j, l, q)] = A[i, j] * B[k, l] * C[o, q]
            G[(i, k), (j, l)] = max[c](A[i, c] * B[c, j]) * B[k, l]
            y[m] = K[m, t] * x[t]
            z[m] = G[m, t] * w[t] + G[t, m] * w[t]
        }",
    ];
    let mut runs = 0;
    for src in programs {
        let f = checked(src);
        for (n, d) in [(0, 2), (1, 1), (2, 0), (3, 2), (4, 3)] {
            let dims: Vec<(&str, u64)> = [("n", n), ("d", d)].into_iter().filter(|(k, _)| f.dim_by_name(k).is_some()).collect();
            let b = bind(&f, &dims);
            for opts in [PlanOptions::default(), PlanOptions { algebra: None, ..PlanOptions::default() }] {
                for specials in [&[][..], &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]] {
                    runs += run_reassociated(&f, &b, &opts, specials);
                }
            }
        }
    }
    assert_eq!(runs, 2 * 5 * 2 * 2 * 2 * per_plan());
}
