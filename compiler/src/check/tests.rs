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

/// Rendered diagnostics of a source that must fail to check.
fn errors_of(src: &str) -> String {
    let (sm, c) = check_src(src);
    assert!(c.has_errors(), "expected errors:\n{src}");
    crate::diag::render_all(&c.diagnostics, &sm, false)
}

const BAND: &str = "fn band[w](A: f64[n]) -> B: f64[n] {
    B[i] = select(i - w < j && j <= i, A[j], 0)
}
";

#[test]
fn header_dims_come_first_in_written_order() {
    let (sm, c) = check_src(
        "fn f[w2, w1](Q: f32[n, d], K: f32[m, d]) -> O: f32[n, m] {
            O[i, j] = select(i - w1 < j && j <= i + w2, Q[i, a] * K[j, a], -inf)
        }",
    );
    assert!(!c.has_errors(), "{}", crate::diag::render_all(&c.diagnostics, &sm, false));
    let f = &c.functions[0];
    let names: Vec<&str> = f.dims.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["w2", "w1", "n", "d", "m"]);
    let text = f.to_string();
    assert!(text.starts_with("fn f[w2, w1](Q: f32[n, d], K: f32[m, d]) -> O: f32[n, m] {"), "{text}");
    // A header dim may also size a tensor; then it is listed once, and the TIR signature
    // shows it in the shape only.
    let (sm, c) = check_src("fn g[n](A: f32[n]) -> B: f32[n] { B[i] = A[i] * n }");
    assert!(!c.has_errors(), "{}", crate::diag::render_all(&c.diagnostics, &sm, false));
    assert_eq!(c.functions[0].dims.len(), 1);
    assert!(c.functions[0].to_string().starts_with("fn g(A: f32[n])"));
}

#[test]
fn header_dims_that_repeat_or_clash_are_errors() {
    let r = errors_of("fn f[w, v, w](A: f32[n]) -> B: f32[n] { B[i] = A[i] * w * v }");
    assert!(r.contains("check::duplicate-dim") && r.contains("dim `w` is declared twice"), "{r}");
    let r = errors_of("fn f[A](A: f32[n]) -> B: f32[n] { B[i] = A[i] }");
    assert!(r.contains("check::name-clash") && r.contains("`A` names both a tensor and a dim"), "{r}");
    let r = errors_of("fn f[B](A: f32[n]) -> B: f32[n] { B[i] = A[i] }");
    assert!(r.contains("check::name-clash"), "{r}");
    let r = errors_of("fn f[w](A: f32[n]) -> B: f32[n] {\n T[i] = A[i]\n w[i] = T[i]\n B[i] = A[i] }");
    assert!(r.contains("check::name-clash") && r.contains("`w` is a dim of this function, not a tensor"), "{r}");
    let r = errors_of("fn f[exp](A: f32[n]) -> B: f32[n] { B[i] = A[i] }");
    assert!(r.contains("check::reserved-name") && r.contains("cannot name a dim"), "{r}");
}

#[test]
fn a_header_dim_that_nothing_uses_is_a_warning() {
    // The index `w` hides the dim inside the statement, so the dim is never read.
    let (sm, c) = check_src("fn f[w, v](A: f32[n]) -> B: f32[n] { B[w] = A[w] * v }");
    assert!(!c.has_errors());
    let r = crate::diag::render_all(&c.diagnostics, &sm, false);
    assert_eq!(c.diagnostics.len(), 1, "{r}");
    assert!(r.contains("check::unused-dim") && r.contains("dim `w` is declared but never used"), "{r}");
    // Used only through a call's brackets, or only in a shape, counts as used.
    let (sm, c) = check_src(&format!("{BAND}fn g[v](A: f64[n]) -> B: f64[n] {{ B = band[v](A) }}\nfn h[m](A: f64[m]) -> B: f64[m] {{ B[i] = A[i] }}"));
    assert!(c.diagnostics.is_empty(), "{}", crate::diag::render_all(&c.diagnostics, &sm, false));
}

#[test]
fn unbound_header_dims_are_named() {
    let (_, c) = check_src(BAND);
    let f = &c.functions[0];
    let e = crate::tir::bind_dims(f, &[&[5]], &[]).expect_err("w is not bound by any input");
    assert_eq!(e.to_string(), "dim w is not determined by the inputs; give it explicitly, e.g. --dim w=4");
    let two = check_src("fn f[w1, w2](A: f32[n]) -> B: f32[n] { B[i] = A[i] * w1 * w2 }").1;
    let e = crate::tir::bind_dims(&two.functions[0], &[&[5]], &[]).expect_err("unbound");
    assert!(e.to_string().starts_with("dims w1, w2 are not determined by the inputs"), "{e}");
    assert!(crate::tir::bind_dims(f, &[&[5]], &[("w".to_string(), 2)]).is_ok());
}

/// Runs the first function of `src` on `a` with explicit dims.
fn run_first(src: &str, name: &str, a: &ndarray::ArrayD<f64>, explicit: &[(&str, u64)]) -> Vec<f64> {
    use crate::eval::{evaluate, EvalOptions};
    let (sm, c) = check_src(src);
    assert!(!c.has_errors(), "{}", crate::diag::render_all(&c.diagnostics, &sm, false));
    let f = c.functions.iter().find(|f| f.name == name).expect("defined");
    let explicit: Vec<(String, u64)> = explicit.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    let b = crate::tir::bind_dims(f, &[a.shape()], &explicit).unwrap_or_else(|e| panic!("{e}"));
    let out = evaluate(f, &b, &[a.view()], &EvalOptions::default()).expect("evaluates");
    out[0].iter().copied().collect()
}

#[test]
fn calls_give_header_dims_as_sizes_of_the_caller() {
    let a = ndarray::Array1::from_iter((0..7).map(|x| (x * x) as f64 + 1.0)).into_dyn();
    // B[i] = Σ_{i-w < j <= i} A[j], computed directly.
    let band = |w: usize| -> Vec<f64> { (0..7).map(|i| (0..=i).filter(|&j| j + w > i).map(|j| a[[j]]).sum()).collect() };
    assert_eq!(run_first(BAND, "band", &a, &[("w", 3)]), band(3));
    // A literal at the call.
    let lit = format!("{BAND}fn lit(A: f64[n]) -> B: f64[n] {{ B = band[2](A) }}");
    assert_eq!(run_first(&lit, "lit", &a, &[]), band(2));
    // A dim of the caller, and a product of one.
    let fwd = format!("{BAND}fn fwd[v](A: f64[n]) -> B: f64[n] {{ B = band[2 * v](A) }}");
    assert_eq!(run_first(&fwd, "fwd", &a, &[("v", 2)]), band(4));
    let (_, c) = check_src(&fwd);
    let text = c.functions[1].to_string();
    assert!(text.starts_with("fn fwd[v](A: f64[n])") && text.contains("i - 2*v < j"), "{text}");
    // A shape dim of the caller works the same: the window is the whole sequence.
    let whole = format!("{BAND}fn whole(A: f64[n]) -> B: f64[n] {{ B = band[n](A) }}");
    assert_eq!(run_first(&whole, "whole", &a, &[]), band(7));
    // Twice in one caller with different sizes: each call is its own copy.
    let twice = format!("{BAND}fn twice(A: f64[n]) -> B: f64[n] {{\n C = band[1](A)\n D = band[3](A)\n B[i] = C[i] + D[i] }}");
    let want: Vec<f64> = band(1).iter().zip(band(3)).map(|(x, y)| x + y).collect();
    assert_eq!(run_first(&twice, "twice", &a, &[]), want);
}

#[test]
fn a_header_dim_fixes_an_output_only_dim_at_the_call() {
    let src = "fn rep[m](A: f64[n]) -> B: f64[n, m] { B[i, j] = A[i] }
        fn caller(A: f64[n]) -> C: f64[n, 3] { C = rep[3](A) }";
    let a = ndarray::Array1::from_vec(vec![1.0, 2.0]).into_dyn();
    assert_eq!(run_first(src, "caller", &a, &[]), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    // Without the header, the call cannot tell m, and says how to declare it.
    let r = errors_of(
        "fn rep(A: f64[n]) -> B: f64[n, m] { B[i, j] = A[i] }
        fn caller(A: f64[n]) -> C: f64[n, 3] { C = rep(A) }",
    );
    assert!(r.contains("check::call-dims") && r.contains("declare it in the header, `fn rep[m](...)`"), "{r}");
}

#[test]
fn call_dims_that_do_not_fit_are_errors() {
    let with = |caller: &str| format!("{BAND}fn g(A: f64[n]) -> B: f64[n] {{ B[i] = A[i] }}\n{caller}");
    let r = errors_of(&with("fn c(A: f64[n]) -> B: f64[n] { B = band(A) }"));
    assert!(r.contains("check::call-dim-count") && r.contains("`band` declares 1 dim in its header, but 0 are given"), "{r}");
    assert!(r.contains("write `band[w](...)`"), "{r}");
    let r = errors_of(&with("fn c(A: f64[n]) -> B: f64[n] { B = band[1, 2](A) }"));
    assert!(r.contains("check::call-dim-count") && r.contains("but 2 are given"), "{r}");
    let r = errors_of(&with("fn c(A: f64[n]) -> B: f64[n] { B = g[1](A) }"));
    assert!(r.contains("check::call-dim-count") && r.contains("`g` takes no dims in brackets"), "{r}");
    let r = errors_of(&with("fn c(A: f64[n]) -> B: f64[n] { B[i] = exp[1](A[i]) }"));
    assert!(r.contains("check::call-dim-count") && r.contains("`exp` takes no dims in brackets"), "{r}");
    let r = errors_of(&with("fn c(A: f64[n]) -> B: f64[n] {\n C = cg[1](1, 1, 2)\n B[i] = A[i] }"));
    assert!(r.contains("check::call-dim-count") && r.contains("`cg` takes no dims in brackets"), "{r}");
    let r = errors_of(&with("fn c(A: f64[n]) -> B: f64[n] { B = band[m](A) }"));
    assert!(r.contains("check::unknown-dim") && r.contains("`m` is not a dim of this function"), "{r}");
    assert!(r.contains("did you mean `n`?"), "{r}");
    let r = errors_of(&with("fn c(A: f64[n]) -> B: f64[n] { B = band[A](A) }"));
    assert!(r.contains("check::unknown-dim"), "{r}");
    let r = errors_of(&with("fn c(A: f64[n]) -> B: f64[n] { B = band[4294967296 * 4294967296](A) }"));
    assert!(r.contains("check::size-overflow"), "{r}");
    // A header dim that also sizes an input must agree with the argument.
    let r = errors_of("fn h[n](A: f64[n]) -> B: f64[n] { B[i] = A[i] }\nfn c(A: f64[m]) -> B: f64[m] { B = h[3](A) }");
    assert!(r.contains("check::call-shape") && r.contains("needs 3 there"), "{r}");
}
