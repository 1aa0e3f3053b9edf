use super::*;

pub(crate) fn check_src(src: &str) -> (SourceMap, Checked) {
    let mut sm = SourceMap::new();
    let id = sm.add("test.tsr", src);
    let c = check_file(&mut sm, id);
    (sm, c)
}

#[test]
fn design_example_checks() {
    let (sm, c) = check_src(
        "fn tensor_attention(Q: f32[n, d], K1: f32[n, d], K2: f32[n, d], V1: f32[n, d], V2: f32[n, d]) -> O: f32[n, d] {
            S[i, j, l] = Q[i, a] * K1[j, a] * K2[l, a] / sqrt(d)
            M[i] max= S[i, j, l]
            P[i, j, l] = exp(S[i, j, l] - M[i])
            Z[i]       = P[i, j, l]
            O[i, b]    = P[i, j, l] * V1[j, b] * V2[l, b] / Z[i]
        }",
    );
    assert!(!c.has_errors(), "{}", crate::diag::render_all(&c.diagnostics, &sm, false));
    let f = &c.functions[0];
    let text = f.to_string();
    assert!(text.contains("S[i, j, l] = sum[a] Q[i, a] * K1[j, a] * K2[l, a] / sqrt(d)"), "{text}");
    assert!(text.contains("M[i] = max[j, l] S[i, j, l]"), "{text}");
}

#[test]
fn cg_constants_evaluate_to_the_coefficients_also_when_inlined() {
    use crate::eval::{evaluate, EvalOptions};
    let (sm, c) = check_src(
        "fn copy(s: f64) -> O: f64[3, 3, 5] {
            C = cg(1, 1, 2)
            O[i, j, k] = C[i, j, k] * s
        }
        fn outer(s: f64) -> P: f64[3, 3, 5] {
            Q = copy(s)
            P[i, j, k] = 2 * Q[i, j, k]
        }",
    );
    assert!(!c.has_errors(), "{}", crate::diag::render_all(&c.diagnostics, &sm, false));
    let want = crate::constants::clebsch_gordan(1, 1, 2).expect("valid degrees");
    for (f, scale) in c.functions.iter().zip([1.0, 2.0]) {
        let b = crate::tir::bind_dims(f, &[&[]], &[]).expect("binds");
        let s = ndarray::arr0(1.0).into_dyn();
        let out = evaluate(f, &b, &[s.view()], &EvalOptions::default()).expect("evaluates");
        let got: Vec<f64> = out[0].iter().copied().collect();
        assert_eq!(got, want.iter().map(|v| v * scale).collect::<Vec<_>>(), "{f}");
    }
    assert_eq!(c.functions[1].constants.len(), 1, "the callee's constant is copied into the caller");
}
