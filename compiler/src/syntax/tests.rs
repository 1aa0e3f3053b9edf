use super::*;
use crate::diag::{FileId, SourceMap};
use crate::syntax::ast::ExprKind;

const DESIGN_EXAMPLE: &str = r#"
# comments start with '#'
use std::attention                      # import a stdlib module

fn matmul(A: f32[m, k], B: f32[k, n]) -> C: f32[m, n] {
    C[i, j] = A[i, l] * B[l, j]         # l appears only on the right: summed
}

fn tensor_attention(Q: f32[n, d], K1: f32[n, d], K2: f32[n, d],
                    V1: f32[n, d], V2: f32[n, d]) -> O: f32[n, d] {
    S[i, j, l] = Q[i, a] * K1[j, a] * K2[l, a] / sqrt(d)
    M[i] max= S[i, j, l]
    P[i, j, l] = exp(S[i, j, l] - M[i])
    Z[i]       = P[i, j, l]
    O[i, b]    = P[i, j, l] * V1[j, b] * V2[l, b] / Z[i]
}

fn misc(x: f64[q * s], A: f64[n, n], s0: f64) -> (y: f64[q, s], c: f64[n, n], t: f64) {
    y[j, l] = x[(j, l)] * -2.5e-3 + -(s0 - 1) * sum[m](A[j, m]) / ((1 + 2) * 3)
    c[i, j] = select(j <= i && !(i == 0) || i > 2, A[i, j], -inf)
    t = max[i, j](A[i, j]) - min[i](A[i, i]);
}
"#;

/// Debug text of an AST with every span removed, to compare trees modulo positions.
fn strip_spans(debug: &str) -> String {
    let mut out = String::new();
    let mut rest = debug;
    while let Some(pos) = rest.find("Span {") {
        out.push_str(&rest[..pos]);
        let end = rest[pos..].find('}').map_or(rest.len(), |e| pos + e + 1);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

pub(crate) fn assert_round_trip(src: &str) {
    let m = parse(src, FileId(0)).unwrap_or_else(|d| panic!("parse failed: {}", d.message));
    let printed = print_module(&m);
    let again = parse(&printed, FileId(0))
        .unwrap_or_else(|d| panic!("printed text does not parse: {}\n{printed}", d.message));
    assert_eq!(strip_spans(&format!("{m:?}")), strip_spans(&format!("{again:?}")), "printed:\n{printed}");
    assert_eq!(print_module(&again), printed);
}

#[test]
fn design_example_parses_and_round_trips() {
    assert_round_trip(DESIGN_EXAMPLE);
    let m = parse(DESIGN_EXAMPLE, FileId(0)).unwrap();
    assert_eq!(m.uses.len(), 1);
    assert_eq!(m.functions.len(), 3);
    assert_eq!(m.functions[1].body.len(), 5);
    assert_eq!(m.functions[2].outputs.len(), 3);
}

#[test]
fn header_dims_and_call_dims_round_trip() {
    let src = "fn windowed[w1, w2](Q: f32[n, d]) -> O: f32[n, d] { O[i, a] = select(i - w1 < j && j <= i, Q[j, a], 0) }
fn caller[w](Q: f32[n, d]) -> O: f32[n, d] { O = windowed[2 * w, 3](Q) }
fn trailing[w,](Q: f32[n]) -> O: f32[n] { O = caller[w,](Q) }";
    assert_round_trip(src);
    let m = parse(src, FileId(0)).unwrap();
    let names: Vec<&str> = m.functions[0].dims.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["w1", "w2"]);
    assert!(m.functions[1].dims.len() == 1 && m.functions[2].dims.len() == 1);
    let ExprKind::Call { dims, args, .. } = &m.functions[1].body[0].rhs.kind else { panic!("not a call") };
    assert_eq!((dims.len(), args.len()), (2, 1));
    assert_eq!(dims[0].factors.len(), 2, "2 * w is one dim of two factors");
    let printed = print_module(&m);
    assert!(printed.contains("fn windowed[w1, w2](Q: f32[n, d])"), "{printed}");
    assert!(printed.contains("O = windowed[2 * w, 3](Q)"), "{printed}");
    // A function without header dims prints without brackets, as before.
    assert_round_trip("fn f(A: f32[n]) -> B: f32[n] { B[i] = A[i] }");
    assert!(print_module(&parse("fn f(A: f32[n]) -> B: f32[n] { B[i] = A[i] }", FileId(0)).unwrap()).starts_with("fn f(A"));
}

#[test]
fn empty_or_malformed_header_dims_are_syntax_errors() {
    for src in [
        "fn f[](A: f32[n]) -> B: f32[n] { B[i] = A[i] }",
        "fn f[2](A: f32[n]) -> B: f32[n] { B[i] = A[i] }",
        "fn f[w * 2](A: f32[n]) -> B: f32[n] { B[i] = A[i] }",
        "fn f(A: f32[n]) -> B: f32[n] { B = g[](A) }",
    ] {
        let r = err(src);
        assert!(r.contains("syntax::unexpected"), "{src}: {r}");
    }
}

#[test]
fn parenthesised_chains_keep_their_shape() {
    for src in [
        "fn f(a: f32) -> b: f32 { b = (a - a) - a }",
        "fn f(a: f32) -> b: f32 { b = a - (a - a) }",
        "fn f(a: f32) -> b: f32 { b = -(a * a) / (a / a) }",
        "fn f(a: f32) -> b: f32 { b = - - -a }",
        "fn f(a: f32) -> b: f32 { b = select((a < 1 || a > 2) && !(!(a == 0)), a, 0) }",
        "fn f(A: f32[n]) -> b: f32[] { b[] = A[i] }",
    ] {
        assert_round_trip(src);
    }
}

fn err(src: &str) -> String {
    let mut sm = SourceMap::new();
    let id = sm.add("t.tsr", src);
    let d = parse(src, id).expect_err("should not parse");
    d.render(&sm, false)
}

#[test]
fn syntax_errors_are_spanned() {
    let r = err("fn f(A: f32[n]) -> B: f32[n] { B[i] = A[i] + }");
    assert!(r.contains("expected an expression"), "{r}");
    let r = err("fn f(A: f32[n]) -> B: f32[n] { B[i] = A[i]");
    assert!(r.contains("end of file"), "{r}");
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = format!("fn f(a: f32) -> b: f32 {{ b = {}a{} }}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(err(&deep).contains("nest more than"));
    let negs = format!("fn f(a: f32) -> b: f32 {{ b = {}a }}", "-".repeat(100_000));
    assert!(err(&negs).contains("nests more than"));
    let nots = format!("fn f(a: f32) -> b: f32 {{ b = select({}a < 1, a, a) }}", "!".repeat(100_000));
    assert!(err(&nots).contains("nests more than"));
    // A long flat chain is one node, not a deep tree.
    let chain = format!("fn f(a: f32) -> b: f32 {{ b = a{} }}", " + a".repeat(20_000));
    assert!(parse(&chain, FileId(0)).is_ok());
}
