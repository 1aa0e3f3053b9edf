use super::*;
use crate::check::check_file;
use crate::diag::SourceMap;
use crate::eval::{evaluate, EvalOptions};
use crate::tir::{bind_dims, Bindings};
use ndarray::Dimension;

/// Checks `src`, binds `dims`, plans without the algebra pass (so these tests pin the
/// plan builder alone), and checks the planned program against the original on inputs.
fn plan_src(src: &str, dims: &[(&str, u64)], limit: Option<u64>) -> Plan {
    let mut sm = SourceMap::new();
    let id = sm.add("p.tsr", src);
    let c = check_file(&mut sm, id);
    assert!(!c.has_errors(), "{}", crate::diag::render_all(&c.diagnostics, &sm, false));
    let f = &c.functions[0];
    let explicit: Vec<(String, u64)> = dims.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    let shapes: Vec<Vec<usize>> = f
        .inputs
        .iter()
        .map(|&t| {
            let mut b = Bindings::new(f.dims.len());
            for (n, v) in dims {
                if let Some(d) = f.dim_by_name(n) {
                    b.set(d, *v);
                }
            }
            f.shape(t, &b).expect("dims given for every input")
        })
        .collect();
    let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
    let b = bind_dims(f, &refs, &explicit).expect("binds");
    let opts = PlanOptions { memory_limit: limit, algebra: None, ..PlanOptions::default() };
    let p = plan(f, &b, &opts).unwrap_or_else(|e| panic!("{e}"));
    // The planned program computes what the function computes.
    let inputs: Vec<ndarray::ArrayD<f64>> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| ndarray::ArrayD::from_shape_fn(s.clone(), |ix| ((ix.as_array_view().sum() * 7 + k * 3) % 11) as f64 / 5.0 - 1.05))
        .collect();
    let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
    let want = evaluate(f, &b, &views, &EvalOptions::default()).expect("direct");
    let got = evaluate(&p.program, &b, &views, &EvalOptions::default()).expect("planned");
    for (w, g) in want.iter().zip(&got) {
        let scale = w.iter().fold(1.0f64, |a, x| a.max(x.abs()));
        for (x, y) in w.iter().zip(g.iter()) {
            assert!(x == y || (x - y).abs() <= 1e-9 * scale, "planned {y} vs direct {x}\n{p}");
        }
    }
    p
}

#[test]
fn matrix_chain_order_and_costs() {
    // (A B) C costs 2*(10*100*5 + 10*5*50) = 15000; A (B C) costs 2*(100*5*50 + 10*100*50) = 150000.
    let p = plan_src(
        "fn f(A: f64[a, b], B: f64[b, c], C: f64[c, d]) -> D: f64[a, d] { D[i, l] = A[i, j] * B[j, k] * C[k, l] }",
        &[("a", 10), ("b", 100), ("c", 5), ("d", 50)],
        None,
    );
    assert_eq!(p.flops, 15000.0, "{p}");
    assert_eq!(p.naive_flops, 3.0 * 10.0 * 100.0 * 5.0 * 50.0);
    assert_eq!(p.steps.len(), 2);
    assert_eq!(p.path, Some(vec![vec![0, 1], vec![0, 1]]));
    assert!(matches!(&p.steps[0].kind, StepKind::Contract { k, .. } if k == &["j".to_string()]), "{p}");
    assert_eq!(p.steps[1].result, "D");
}

#[test]
fn divisions_leave_the_sum() {
    let p = plan_src(
        "fn f(P: f64[n, n], V: f64[n, e], Z: f64[n]) -> O: f64[n, e] { O[i, b] = P[i, j] * V[j, b] / Z[i] }",
        &[("n", 8), ("e", 4)],
        None,
    );
    assert_eq!(p.steps.len(), 2, "{p}");
    assert!(matches!(p.steps[1].kind, StepKind::Map), "{p}");
    assert_eq!(p.steps[1].flops, 8.0 * 4.0, "one division per output element\n{p}");
}

#[test]
fn elementwise_and_reductions_are_single_steps() {
    let p = plan_src(
        "fn f(S: f64[n, m]) -> (P: f64[n, m], M: f64[n]) {
            M[i] max= S[i, j]
            P[i, j] = exp(S[i, j] - M[i]) / sum[k](exp(S[i, k] - M[i]))
        }",
        &[("n", 3), ("m", 5)],
        None,
    );
    let kinds: Vec<String> = p.steps.iter().map(|s| format!("{:?}", s.kind)).collect();
    assert_eq!(kinds.len(), 3, "{p}");
    assert!(p.steps[1].einsum.starts_with("sum[k] exp("), "{p}");
    assert!(kinds[0].contains("max") && kinds[1].contains("sum"), "{kinds:?}");
}

#[test]
fn memory_limit_slices_tensor_attention() {
    // Fused, tensor attention needs no slices: its n³ intermediates never exist.
    let fused = "fn f(Q: f64[n, d], K1: f64[n, d], K2: f64[n, d], V1: f64[n, d], V2: f64[n, d]) -> O: f64[n, d] {
        S[i, j, l] = Q[i, a] * K1[j, a] * K2[l, a] / sqrt(d)
        M[i] max= S[i, j, l]
        P[i, j, l] = exp(S[i, j, l] - M[i])
        Z[i] = P[i, j, l]
        O[i, b] = P[i, j, l] * V1[j, b] * V2[l, b] / Z[i]
    }";
    let p = plan_src(fused, &[("n", 16), ("d", 4)], Some(4096));
    assert!(p.slices.is_empty() && p.fusions.len() == 1 && p.peak_bytes == 0, "{p}");
    // With a min instead of the max it is no softmax, and the n³ intermediates are sliced.
    let src = "fn f(Q: f64[n, d], K1: f64[n, d], K2: f64[n, d], V1: f64[n, d], V2: f64[n, d]) -> O: f64[n, d] {
        S[i, j, l] = Q[i, a] * K1[j, a] * K2[l, a] / sqrt(d)
        M[i] min= S[i, j, l]
        P[i, j, l] = exp(S[i, j, l] - M[i])
        Z[i] = P[i, j, l]
        O[i, b] = P[i, j, l] * V1[j, b] * V2[l, b] / Z[i]
    }";
    let free = plan_src(src, &[("n", 16), ("d", 4)], None);
    assert!(free.peak_bytes >= 16 * 16 * 16 * 8, "{free}");
    // The limit caps every intermediate alive at once, as the executor counts them.
    let limited = plan_src(src, &[("n", 16), ("d", 4)], Some(6144));
    assert!(!limited.slices.is_empty(), "{limited}");
    assert!(limited.peak_bytes <= 6144, "{limited}");
    let text = limited.to_string();
    assert!(text.contains("slice over"), "{text}");
}

#[test]
fn impossible_limits_are_errors() {
    let mut sm = SourceMap::new();
    let id = sm.add("p.tsr", "fn f(A: f64[n], B: f64[n]) -> C: f64[n, n] { T[i, j] = A[i] * B[j]\n C[i, j] = T[i, j] * 2 }");
    let c = check_file(&mut sm, id);
    let f = &c.functions[0];
    let b = bind_dims(f, &[&[4], &[4]], &[]).expect("binds");
    let opts = PlanOptions { memory_limit: Some(1), algebra: None, ..PlanOptions::default() };
    assert!(matches!(plan(f, &b, &opts), Err(PlanError::Size(_))));
}

#[test]
fn json_has_the_documented_fields() {
    let p = plan_src("fn f(A: f64[m, k], B: f64[k, n]) -> C: f64[m, n] { C[i, j] = A[i, l] * B[l, j] }", &[("m", 2), ("k", 3), ("n", 4)], None);
    let v: serde_json::Value = serde_json::from_str(&p.to_json()).expect("json");
    for field in ["flops", "naive_flops", "peak_bytes", "search_ms", "steps", "path"] {
        assert!(v.get(field).is_some(), "missing {field}: {v}");
    }
    assert_eq!(v["steps"][0]["kind"], "contract");
    assert!(p.to_dot().starts_with("digraph"));
}

/// The algebra pass can write an inline reduction whose body no longer uses a reduced
/// index (`sum[j](min(x[i], 0.0))`); the sum still repeats the body once per value of it.
#[test]
fn inline_reductions_count_indices_their_body_does_not_use() {
    fn zero_out_a(e: &tir::Expr) -> tir::Expr {
        use tir::Expr::*;
        match e {
            Access(t, _) if t.0 == 0 => Lit(0.0),
            Add(xs) => Add(xs.iter().map(zero_out_a).collect()),
            Mul(xs) => Mul(xs.iter().map(zero_out_a).collect()),
            Call(b, xs) => Call(*b, xs.iter().map(zero_out_a).collect()),
            Reduce(op, ids, body) => Reduce(*op, ids.clone(), Box::new(zero_out_a(body))),
            other => other.clone(),
        }
    }
    let src = "fn f(A: f64[n, m], x: f64[n]) -> (B: f64[n], C: f64[n], D: f64[n]) {
        B[i] = x[i] * sum[j](min(x[i], A[i, j]))
        C[i] = x[i] * max[j](exp(x[i] + A[i, j]))
        D[i] = x[i] + min[j](x[i] * A[i, j])
    }";
    let mut sm = SourceMap::new();
    let id = sm.add("p.tsr", src);
    let c = check_file(&mut sm, id);
    assert!(!c.has_errors(), "{}", crate::diag::render_all(&c.diagnostics, &sm, false));
    let mut f = c.functions[0].clone();
    for s in &mut f.stmts {
        s.rhs = zero_out_a(&s.rhs);
    }
    tir::verify(&f).unwrap_or_else(|e| panic!("{e}\n{f}"));
    for (n, m) in [(2, 0), (1, 1), (2, 2), (3, 4)] {
        let b = bind_dims(&f, &[&[n, m], &[n]], &[]).expect("binds");
        let opts = PlanOptions { algebra: None, ..PlanOptions::default() };
        let p = plan(&f, &b, &opts).unwrap_or_else(|e| panic!("{e}"));
        let x = ndarray::ArrayD::from_shape_fn(vec![n], |ix| ix[0] as f64 - 1.5);
        let a = ndarray::ArrayD::<f64>::zeros(vec![n, m]);
        let views = [a.view(), x.view()];
        let want = evaluate::<f64>(&f, &b, &views, &EvalOptions::default()).expect("direct");
        let got = evaluate::<f64>(&p.program, &b, &views, &EvalOptions::default()).expect("planned");
        assert_eq!(want, got, "n = {n}, m = {m}\n{f}\n{p}");
    }
}

/// The online-softmax fusions of the first function of `src` at n = 12, d = 4, e = 3,
/// m = 10, planned without and with the algebra pass (which reorders products); both
/// must find the same fusions. Returns `(steps fused, mask text)` per fusion.
fn fusions(src: &str) -> Vec<(usize, Option<String>)> {
    let mut sm = SourceMap::new();
    let id = sm.add("p.tsr", src);
    let c = check_file(&mut sm, id);
    assert!(!c.has_errors(), "{}", crate::diag::render_all(&c.diagnostics, &sm, false));
    let f = c.functions.last().expect("a function");
    let mut b = Bindings::new(f.dims.len());
    for (n, v) in [("n", 12), ("d", 4), ("e", 3), ("m", 10), ("w", 3)] {
        if let Some(d) = f.dim_by_name(n) {
            b.set(d, v);
        }
    }
    let mut found = Vec::new();
    for algebra in [false, true] {
        let opts = if algebra { PlanOptions::default() } else { PlanOptions { algebra: None, ..PlanOptions::default() } };
        let p = plan(f, &b, &opts).unwrap_or_else(|e| panic!("{e}"));
        let here: Vec<(usize, Option<String>)> = p.fusions.iter().map(|u| (u.steps.len(), u.mask.clone())).collect();
        for u in &p.fusions {
            // The group ends with the step that defines the result.
            let last = &p.program.stmts[*u.steps.last().expect("steps")];
            assert_eq!(last.target, u.form.out.tensor, "{p}");
        }
        if algebra {
            let masks = |v: &[(usize, Option<String>)]| v.iter().map(|x| x.1.clone()).collect::<Vec<_>>();
            assert_eq!(masks(&here), masks(&found), "with and without the algebra pass\n{p}");
        } else {
            found = here;
        }
    }
    found
}

const ATTN_HEAD: &str = "fn f(Q: f64[n, d], K: f64[m, d], V: f64[m, e]) -> O: f64[n, e] {\n";

#[test]
fn online_softmax_is_found_in_every_written_form() {
    let forms = [
        // Split, as the stdlib writes it.
        "S[i, j] = Q[i, a] * K[j, a] / sqrt(d)\n M[i] max= S[i, j]\n P[i, j] = exp(S[i, j] - M[i])\n Z[i] = P[i, j]\n O[i, c] = P[i, j] * V[j, c] / Z[i]",
        // An inline sum in the denominator.
        "S[i, j] = Q[i, a] * K[j, a] / sqrt(d)\n M[i] max= S[i, j]\n P[i, j] = exp(S[i, j] - M[i])\n O[i, c] = P[i, j] * V[j, c] / sum[k](P[i, k])",
        // Normalised first, then contracted.
        "S[i, j] = Q[i, a] * K[j, a] / sqrt(d)\n M[i] max= S[i, j]\n P[i, j] = exp(S[i, j] - M[i])\n Z[i] = P[i, j]\n A[i, j] = P[i, j] / Z[i]\n O[i, c] = A[i, j] * V[j, c]",
        // The exponential written twice, the max inline, the scale a literal.
        "S[i, j] = 0.5 * Q[i, a] * K[j, a]\n O[i, c] = exp(S[i, j] - max[k](S[i, k])) * V[j, c] / sum[l](exp(S[i, l] - max[k](S[i, k])))",
        // Statements in another order, and operands transposed.
        "S[j, i] = K[j, a] * Q[i, a]\n M[i] max= S[j, i]\n P[i, j] = exp(S[j, i] - M[i])\n Z[i] = P[i, j]\n O[i, c] = V[j, c] * P[i, j] / Z[i]",
    ];
    for body in forms {
        let src = format!("{ATTN_HEAD}{body}\n}}");
        assert_eq!(fusions(&src).iter().map(|x| x.1.clone()).collect::<Vec<_>>(), vec![None], "{src}");
    }
    let std = "use std::attention\nfn f(Q: f64[n, d], K: f64[m, d], V: f64[m, e]) -> O: f64[n, e] { O = attention::softmax(Q, K, V) }";
    assert_eq!(fusions(std).len(), 1);
}

#[test]
fn masks_become_affine_comparisons() {
    let cases = [
        ("select(j <= i, Q[i, a] * K[j, a], -inf)", "j - i <= 0"),
        ("select(!(j <= i), -inf, Q[i, a] * K[j, a])", "j - i <= 0"),
        ("select(j < i, Q[i, a] * K[j, a], -inf) / sqrt(d)", "j - i < 0"),
        ("select(i - 3 < j && j <= i, Q[i, a] * K[j, a], -inf)", "-j + i - 3 < 0 && j - i <= 0"),
        ("select(j >= i + 2, sum[a](Q[i, a] * K[j, a]), -inf)", "-j + i + 2 <= 0"),
        ("select(i > 2, Q[i, a] * K[j, a], -inf)", "-i + 2 < 0"),
    ];
    for (score, mask) in cases {
        let src = format!("{ATTN_HEAD}S[i, j] = {score}\n M[i] max= S[i, j]\n P[i, j] = exp(S[i, j] - M[i])\n O[i, c] = P[i, j] * V[j, c] / sum[k](P[i, k])\n}}");
        let masks: Vec<Option<String>> = fusions(&src).into_iter().map(|x| x.1).collect();
        assert_eq!(masks, vec![Some(mask.to_string())], "{src}");
    }
}

#[test]
fn near_misses_are_not_fused() {
    let cases = [
        // The scores or probabilities are results the user asked for.
        "fn f(Q: f64[n, d], K: f64[m, d], V: f64[m, e]) -> (O: f64[n, e], S: f64[n, m]) {\n S[i, j] = Q[i, a] * K[j, a]\n M[i] max= S[i, j]\n O[i, c] = exp(S[i, j] - M[i]) * V[j, c] / sum[k](exp(S[i, k] - M[i]))\n}",
        // A finite masked value is not a mask: a fully masked row is not NaN.
        "fn f(Q: f64[n, d], K: f64[m, d], V: f64[m, e]) -> O: f64[n, e] {\n S[i, j] = select(j <= i, Q[i, a] * K[j, a], -1e9)\n M[i] max= S[i, j]\n P[i, j] = exp(S[i, j] - M[i])\n O[i, c] = P[i, j] * V[j, c] / sum[k](P[i, k])\n}",
        // A mask that reads data.
        "fn f(Q: f64[n, d], K: f64[m, d], V: f64[m, e], B: f64[n, m]) -> O: f64[n, e] {\n S[i, j] = select(B[i, j] > 0, Q[i, a] * K[j, a], -inf)\n M[i] max= S[i, j]\n P[i, j] = exp(S[i, j] - M[i])\n O[i, c] = P[i, j] * V[j, c] / sum[k](P[i, k])\n}",
        // `!=` on a key is no interval.
        "fn f(Q: f64[n, d], K: f64[m, d], V: f64[m, e]) -> O: f64[n, e] {\n S[i, j] = select(j != i, Q[i, a] * K[j, a], -inf)\n M[i] max= S[i, j]\n P[i, j] = exp(S[i, j] - M[i])\n O[i, c] = P[i, j] * V[j, c] / sum[k](P[i, k])\n}",
        // The exponent's score differs from the max's.
        "fn f(Q: f64[n, d], K: f64[m, d], V: f64[m, e]) -> O: f64[n, e] {\n S[i, j] = Q[i, a] * K[j, a]\n M[i] max= S[i, j]\n P[i, j] = exp(2 * S[i, j] - M[i])\n O[i, c] = P[i, j] * V[j, c] / sum[k](P[i, k])\n}",
        // The denominator sums other probabilities.
        "fn f(Q: f64[n, d], K: f64[m, d], V: f64[m, e]) -> O: f64[n, e] {\n S[i, j] = Q[i, a] * K[j, a]\n M[i] max= S[i, j]\n P[i, j] = exp(S[i, j] - M[i])\n O[i, c] = P[i, j] * V[j, c] / sum[k](P[i, k] * P[i, k])\n}",
        // A negative factor turns the -inf of the mask into +inf.
        "fn f(Q: f64[n, d], K: f64[m, d], V: f64[m, e]) -> O: f64[n, e] {\n S[i, j] = -1 * select(j <= i, Q[i, a] * K[j, a], -inf)\n M[i] max= S[i, j]\n P[i, j] = exp(S[i, j] - M[i])\n O[i, c] = P[i, j] * V[j, c] / sum[k](P[i, k])\n}",
        // The max is read elsewhere.
        "fn f(Q: f64[n, d], K: f64[m, d], V: f64[m, e]) -> (O: f64[n, e], R: f64[n]) {\n S[i, j] = Q[i, a] * K[j, a]\n M[i] max= S[i, j]\n P[i, j] = exp(S[i, j] - M[i])\n O[i, c] = P[i, j] * V[j, c] / sum[k](P[i, k])\n R[i] = M[i] + 1\n}",
    ];
    for src in cases {
        assert_eq!(fusions(src), vec![], "{src}");
    }
}

#[test]
fn two_key_softmax_is_found() {
    let head = "fn f(Q: f64[n, d], K1: f64[m, d], K2: f64[m, d], V1: f64[m, e], V2: f64[m, e]) -> O: f64[n, e] {\n";
    let cases = [
        ("Q[i, a] * K1[j, a] * K2[l, a] / sqrt(d)", None),
        ("select(i - 3 < j && j <= i && l <= i, Q[i, a] * K1[j, a] * K2[l, a], -inf)", Some("-j + i - 3 < 0 && l - i <= 0 && j - i <= 0")),
    ];
    for (score, mask) in cases {
        let src = format!(
            "{head} S[i, j, l] = {score}\n M[i] max= S[i, j, l]\n P[i, j, l] = exp(S[i, j, l] - M[i])\n Z[i] = P[i, j, l]\n O[i, b] = P[i, j, l] * V1[j, b] * V2[l, b] / Z[i]\n}}"
        );
        let masks: Vec<Option<String>> = fusions(&src).into_iter().map(|x| x.1).collect();
        assert_eq!(masks, vec![mask.map(String::from)], "{src}");
    }
}

/// The SVG drawing of a two-step chain: one box per step, coloured by FLOPs, edges
/// labelled with the tensors and their shapes.
#[test]
fn svg_drawing_of_a_matrix_chain() {
    let p = plan_src(
        "fn f(A: f64[a, b], B: f64[b, c], C: f64[c, d]) -> D: f64[a, d] { D[i, l] = A[i, j] * B[j, k] * C[k, l] }",
        &[("a", 10), ("b", 100), ("c", 5), ("d", 50)],
        None,
    );
    let svg = p.to_svg();
    assert_eq!(svg.matches("<rect").count(), 3 + p.steps.len(), "three inputs and the steps");
    assert!(svg.contains("A[10, 100]") && svg.contains("C[5, 50]"), "edges carry input shapes");
    insta::assert_snapshot!(svg);
}
