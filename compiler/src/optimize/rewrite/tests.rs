use super::*;
use crate::check::check_file;
use crate::diag::SourceMap;
use crate::eval::{evaluate, EvalOptions};
use ndarray::{ArrayD, IxDyn};

fn checked(src: &str) -> Function {
    let mut sm = SourceMap::new();
    let id = sm.add("p.tsr", src);
    let c = check_file(&mut sm, id);
    assert!(!c.has_errors(), "{}", crate::diag::render_all(&c.diagnostics, &sm, false));
    c.functions.into_iter().next().expect("one function")
}

fn bind(f: &Function, dims: &[(&str, u64)]) -> Bindings {
    let mut b = Bindings::new(f.dims.len());
    for (n, v) in dims {
        b.set(f.dim_by_name(n).expect("dim"), *v);
    }
    b
}

/// A cost model that always prefers the rewritten form (by counting statements).
fn fewer_statements(g: &Function) -> Option<f64> {
    Some(g.stmts.len() as f64)
}

/// A cost model that counts statements and reads of intermediates.
fn temp_reads(g: &Function) -> Option<f64> {
    let mut reads = 0;
    for s in &g.stmts {
        s.rhs.for_each_access(&mut |t, _| reads += usize::from(g.tensor(t).kind == TensorKind::Temp));
    }
    Some((g.stmts.len() + reads) as f64)
}

fn never(_: &Function) -> Option<f64> {
    None
}

/// The statements of `g` as `emit --stage tir` writes them.
fn stmts(g: &Function) -> Vec<String> {
    g.stmts.iter().map(|s| g.stmt_string(s)).collect()
}

/// Deterministic inputs in [-1, 1) with the given special values spread through them.
fn inputs(f: &Function, b: &Bindings, specials: &[f64]) -> Vec<ArrayD<f64>> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
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
                if !specials.is_empty() && k.is_multiple_of(5) {
                    specials[(k / 5) % specials.len()]
                } else {
                    (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
                }
            })
        })
        .collect()
}

/// The reference evaluator gives the same outputs for `f` and `g` (NaN equal to NaN).
fn same_values(f: &Function, g: &Function, b: &Bindings, specials: &[f64]) {
    let ins = inputs(f, b, specials);
    let views: Vec<_> = ins.iter().map(|a| a.view()).collect();
    let want = evaluate(f, b, &views, &EvalOptions::default()).expect("original evaluates");
    let got = evaluate(g, b, &views, &EvalOptions::default()).expect("rewritten evaluates");
    assert_eq!(want.len(), got.len());
    for (w, x) in want.iter().zip(&got) {
        assert_eq!(w.shape(), x.shape());
        for (a, c) in w.iter().zip(x) {
            let ok = (a.is_nan() && c.is_nan()) || a == c || (a - c).abs() <= 1e-12 * a.abs().max(1.0);
            assert!(ok, "{a} vs {c}\n{f}\n{g}");
        }
    }
}

const CAUSAL: &str = "fn causal(Q: f64[n, d], K: f64[n, d]) -> S: f64[n, n] {
    S[i, j] = select(j <= i, Q[i, a] * K[j, a] / sqrt(d), -inf)
}";

#[test]
fn a_causal_mask_comes_out_of_the_sum() {
    let f = checked(CAUSAL);
    assert_eq!(stmts(&f), ["S[i, j] = sum[a] select(j <= i, Q[i, a] * K[j, a] / sqrt(d), -inf)    # S: f64[n, n]; i: n, j: n, a: d"]);
    let b = bind(&f, &[("n", 5), ("d", 3)]);
    let (g, rep) = rewrite(&f, &b, false, &never).expect("rewrites");
    assert_eq!(rep.selects, 1);
    assert_eq!(stmts(&g), ["S[i, j] = select(j <= i, sum[a](Q[i, a] * K[j, a] / sqrt(d)), -inf)    # S: f64[n, n]; i: n, j: n, a: d"]);
    for specials in [&[][..], &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0]] {
        same_values(&f, &g, &b, specials);
    } // An empty sum is 0 on both sides, and is not divided by sqrt(0) afterwards.
    let b = bind(&f, &[("n", 3), ("d", 0)]);
    let (g, _) = rewrite(&f, &b, false, &never).expect("rewrites");
    assert_eq!(stmts(&g), ["S[i, j] = select(j <= i, 0.0, 0.0)    # S: f64[n, n]; i: n, j: n, a: d"]);
    same_values(&f, &g, &b, &[]);
}

/// Summing a constant branch over the range of `a`: `0` for an empty range, the value
/// itself for one element, `|a|` copies otherwise (`±inf` and NaN stay as they are).
#[test]
fn a_constant_branch_is_summed_with_the_concrete_range() {
    let src = "fn f(Q: f64[n, d], K: f64[n, d]) -> (S: f64[n, n], T: f64[n, n], U: f64[n, n]) {
        S[i, j] = select(j <= i, Q[i, a] * K[j, a], -inf)
        T[i, j] = select(j <= i, Q[i, a] * K[j, a], 0.5)
        U[i, j] = select(j <= i, Q[i, a] * K[j, a], 0/0)
    }";
    let f = checked(src);
    let cases: [(u64, [&str; 3]); 3] =
        [(0, ["0.0", "0.0", "0.0"]), (1, ["-inf", "0.5", "0.0 / 0.0"]), (3, ["-inf", "1.5", "3.0 * (0.0 / 0.0)"])];
    for (d, consts) in cases {
        let b = bind(&f, &[("n", 4), ("d", d)]);
        let (g, rep) = rewrite(&f, &b, false, &never).expect("rewrites");
        assert_eq!(rep.selects, 3);
        for (s, c) in stmts(&g).iter().zip(consts) {
            let rhs = s.split(" = ").nth(1).and_then(|r| r.split("    #").next()).unwrap_or("");
            assert!(rhs.ends_with(&format!(", {c})")), "d = {d}: {s}");
        }
        for specials in [&[][..], &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]] {
            same_values(&f, &g, &b, specials);
        }
    }
}

#[test]
fn max_and_min_reductions_and_products_around_the_select() {
    let src = "fn f(Q: f64[n, d], V: f64[d]) -> (M: f64[n], P: f64[n, n]) {
        M[i] max= select(i > 1, Q[i, a], -1) * V[a]
        P[i, j] = -(V[a] / select(i != j, Q[i, a], Q[j, a]))
    }";
    let f = checked(src);
    for d in [0, 1, 4] {
        let b = bind(&f, &[("n", 3), ("d", d)]);
        let (g, rep) = rewrite(&f, &b, false, &never).expect("rewrites");
        assert_eq!(rep.selects, 2);
        let s = stmts(&g);
        let (m, p) = if d == 0 {
            ("M[i] = select(i > 1.0, -inf, -inf)", "P[i, j] = select(i != j, 0.0, 0.0)")
        } else {
            (
                "M[i] = select(i > 1.0, max[a](Q[i, a] * V[a]), max[a](-1.0 * V[a]))",
                "P[i, j] = select(i != j, sum[a](-(V[a] / Q[i, a])), sum[a](-(V[a] / Q[j, a])))",
            )
        };
        assert!(s[0].starts_with(m), "{}", s[0]);
        assert!(s[1].starts_with(p), "{}", s[1]);
        same_values(&f, &g, &b, &[f64::NAN, f64::INFINITY, 0.0]);
    }
}

/// A condition on a summed index keeps the select inside for that index only.
#[test]
fn a_condition_on_a_summed_index_keeps_that_index_outside() {
    let src = "fn f(A: f64[n, n, d], x: f64[n]) -> (y: f64[n], z: f64[n]) {
        y[i] = select(j <= i, A[i, j, a] * x[j], 2)
        z[i] = select(a <= 1.0, A[i, i, a], 0.0)
    }";
    let f = checked(src);
    let b = bind(&f, &[("n", 4), ("d", 3)]);
    let (g, rep) = rewrite(&f, &b, false, &never).expect("rewrites");
    assert_eq!(rep.selects, 1);
    let s = stmts(&g);
    assert!(s[0].starts_with("y[i] = sum[j](select(j <= i, sum[a](A[i, j, a] * x[j]), 6.0))"), "{}", s[0]);
    assert!(s[1].starts_with("z[i] = sum[a] select(a <= 1.0, A[i, i, a], 0.0)"), "{}", s[1]);
    same_values(&f, &g, &b, &[f64::NAN, f64::NEG_INFINITY]);
}

#[test]
fn inline_reductions_are_rewritten_too() {
    let src = "fn f(Q: f64[n, d], K: f64[n, d]) -> S: f64[n, n] {
        S[i, j] = exp(sum[a](select(i == j, 0, Q[i, a] * K[j, a])))
    }";
    let f = checked(src);
    let b = bind(&f, &[("n", 3), ("d", 2)]);
    let (g, rep) = rewrite(&f, &b, false, &never).expect("rewrites");
    assert_eq!(rep.selects, 1);
    assert!(stmts(&g)[0].starts_with("S[i, j] = exp(select(i == j, 0.0, sum[a](Q[i, a] * K[j, a])))"), "{}", stmts(&g)[0]);
    same_values(&f, &g, &b, &[]);
}

const KRON: &str = "fn kron_flat(A: f64[p, q], B: f64[r, s], x: f64[q * s]) -> y: f64[p * r] {
    K[(i, k), (j, l)] = A[i, j] * B[k, l]
    y[m] = K[m, t] * x[t]
}";

#[test]
fn a_flat_read_of_a_kronecker_product_is_inlined() {
    let f = checked(KRON);
    let b = bind(&f, &[("p", 2), ("q", 3), ("r", 4), ("s", 5)]);
    let (g, rep) = rewrite(&f, &b, true, &fewer_statements).expect("rewrites");
    assert_eq!(rep.inlined, ["K"]);
    assert_eq!(g.tensors.len(), f.tensors.len() - 1, "K is gone");
    assert_eq!(stmts(&g), ["y[(i, k)] = sum[j, l] A[i, j] * B[k, l] * x[(j, l)]    # y: f64[p*r]; i: p, j: q, k: r, l: s"]);
    same_values(&f, &g, &b, &[f64::NAN, f64::INFINITY]);
    for dims in [[0, 3, 4, 5], [1, 1, 1, 1], [2, 0, 1, 3]] {
        let b = bind(&f, &[("p", dims[0]), ("q", dims[1]), ("r", dims[2]), ("s", dims[3])]);
        let (g, _) = rewrite(&f, &b, true, &fewer_statements).expect("rewrites");
        same_values(&f, &g, &b, &[]);
    }
}

#[test]
fn the_cost_model_and_the_algebra_switch_decide() {
    let f = checked(KRON);
    let b = bind(&f, &[("p", 2), ("q", 3), ("r", 4), ("s", 5)]);
    // The algebra pass is off: nothing is inlined.
    let (g, rep) = rewrite(&f, &b, false, &fewer_statements).expect("rewrites");
    assert!(rep.inlined.is_empty());
    assert_eq!(g, f);
    // A cost model that finds the inline form dearer (or cannot plan) keeps the program.
    let more = |g: &Function| Some(-(g.stmts.len() as f64));
    assert_eq!(rewrite(&f, &b, true, &more).expect("rewrites").0, f);
    assert_eq!(rewrite(&f, &b, true, &never).expect("rewrites").0, f);
}

#[test]
fn several_readers_indices_as_numbers_and_reductions_in_the_definition() {
    let src =
        "fn f(A: f64[p, p], B: f64[r, r], C: f64[p, r], x: f64[p * r]) -> (y: f64[p * r], z: f64[p * r], w: f64[p * r], v: f64[p * r]) {
        K[(i, k), (j, l)] = A[i, j] * B[k, l] * C[j, l]
        G[(i, k)] = max[j](A[i, j]) * sum[l](B[k, l])
        y[m] = K[m, t] * x[t] * G[m]
        z[m] = K[m, m] * m
        w[m] max= K[m, t]
        v[m] = G[m] * x[m]
    }";
    let f = checked(src);
    let dims = [("p", 3), ("r", 2)];
    let b = bind(&f, &dims);
    let (g, rep) = rewrite(&f, &b, true, &temp_reads).expect("rewrites");
    // `z` uses `m` as a number, so K stays (for z alone); G has no reader left (its read in
    // `y` became grouped when K was inlined there).
    assert_eq!(rep.inlined, ["K", "G"]);
    let s = stmts(&g);
    assert!(g.tensor_by_name("K").is_some() && g.tensor_by_name("G").is_none(), "{}", s.join("\n"));
    assert!(
        s.iter()
            .any(|x| x
                .starts_with("y[(i, k)] = sum[j, l] A[i, j] * B[k, l] * C[j, l] * x[(j, l)] * (max[j1](A[i, j1]) * sum[l1](B[k, l1]))")),
        "{}",
        s.join("\n")
    );
    assert!(s.iter().any(|x| x.starts_with("z[m] = K[m, m] * m")), "{}", s.join("\n"));
    assert!(s.iter().any(|x| x.starts_with("v[(i, k)] = max[j](A[i, j]) * sum[l](B[k, l]) * x[(i, k)]")), "{}", s.join("\n"));
    assert!(s.iter().any(|x| x.starts_with("w[(i, k)] = max[j, l] A[i, j] * B[k, l] * C[j, l]")), "{}", s.join("\n"));
    same_values(&f, &g, &b, &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
}
