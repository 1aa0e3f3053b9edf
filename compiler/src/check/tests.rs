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
