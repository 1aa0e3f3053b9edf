use super::*;
use crate::diag::SourceMap;
use proptest::prelude::*;

fn ok(spec: &str, shapes: &[&[usize]]) -> Einsum {
    match translate(spec, shapes, DType::F64, FileId(0)) {
        Ok(e) => {
            assert_eq!(tir::verify(&e.function), Ok(()), "{spec}: {}", e.function);
            e
        }
        Err(d) => panic!("{spec:?} {shapes:?} should translate: {d:?}"),
    }
}

fn err(spec: &str, shapes: &[&[usize]]) -> Diagnostic {
    match translate(spec, shapes, DType::F64, FileId(0)) {
        Ok(e) => panic!("{spec:?} {shapes:?} should fail, got\n{}", e.function),
        Err(d) => d,
    }
}

/// The printed statement (the function's only one), without the range comment.
fn stmt(e: &Einsum) -> String {
    let s = e.function.stmt_string(&e.function.stmts[0]);
    s.split("    #").next().unwrap_or("").to_string()
}

fn bound(e: &Einsum) -> Vec<(String, u64)> {
    e.function
        .dims
        .iter()
        .enumerate()
        .map(|(d, dim)| (dim.name.clone(), e.bindings.get(DimId(d as u32)).unwrap_or(u64::MAX)))
        .collect()
}

fn render(spec: &str, shapes: &[&[usize]]) -> String {
    let mut sources = SourceMap::new();
    let file = sources.add("<einsum>", spec);
    match translate(spec, shapes, DType::F32, file) {
        Ok(e) => panic!("{spec:?} should fail, got\n{}", e.function),
        Err(d) => d.render(&sources, false),
    }
}

#[test]
fn matmul_prints_as_one_summed_statement() {
    let e = ok("ij,jk->ik", &[&[2, 3], &[3, 4]]);
    assert_eq!(
        e.function.to_string(),
        "fn einsum(op0: f64[i, j], op1: f64[j, k]) -> out: f64[i, k] {\n  \
         out[i, k] = sum[j] op0[i, j] * op1[j, k]    # out: f64[i, k]; i: i, k: k, j: j\n}\n"
    );
    assert_eq!(e.output_shape, vec![2, 4]);
    assert_eq!(bound(&e), vec![("i".into(), 2), ("j".into(), 3), ("k".into(), 4)]);
}

#[test]
fn dtype_is_the_requested_one() {
    let e = translate("i->", &[&[3]], DType::F32, FileId(0)).map_err(|d| d.message);
    assert_eq!(
        e.map(|e| e.function.to_string()).as_deref(),
        Ok("fn einsum(op0: f32[i]) -> out: f32 {\n  out = sum[i] op0[i]    # out: f32; i: i\n}\n")
    );
}

#[test]
fn repeated_labels_read_diagonals() {
    assert_eq!(stmt(&ok("ii->i", &[&[3, 3]])), "out[i] = op0[i, i]");
    assert_eq!(stmt(&ok("ii", &[&[3, 3]])), "out = sum[i] op0[i, i]");
    assert_eq!(stmt(&ok("iij->j", &[&[2, 2, 5]])), "out[j] = sum[i] op0[i, i, j]");
    let e = ok("ijji->", &[&[2, 3, 3, 2]]);
    assert_eq!(stmt(&e), "out = sum[i, j] op0[i, j, j, i]");
    assert_eq!(e.output_shape, Vec::<usize>::new());
}

#[test]
fn implicit_output_takes_single_labels_in_code_point_order() {
    assert_eq!(stmt(&ok("ij,jk", &[&[2, 3], &[3, 4]])), "out[i, k] = sum[j] op0[i, j] * op1[j, k]");
    assert_eq!(stmt(&ok("ba", &[&[2, 3]])), "out[a, b] = op0[b, a]");
    // Upper case sorts before lower case, as in numpy.
    let e = ok("aB,Bc", &[&[2, 3], &[3, 4]]);
    assert_eq!(stmt(&e), "out[a, c] = sum[B] op0[a, B] * op1[B, c]");
    let e = ok("aB", &[&[2, 3]]);
    assert_eq!(stmt(&e), "out[B, a] = op0[a, B]");
    assert_eq!(e.output_shape, vec![3, 2]);
    // Broadcast axes come first.
    let e = ok("ij...", &[&[2, 3, 4]]);
    assert_eq!(stmt(&e), "out[e0, i, j] = op0[i, j, e0]");
    assert_eq!(e.output_shape, vec![4, 2, 3]);
}

#[test]
fn ellipsis_axes_align_on_the_right_and_broadcast() {
    let e = ok("...ij,...jk->...ik", &[&[2, 1, 3, 4], &[5, 4, 2]]);
    assert_eq!(
        e.function.to_string(),
        "fn einsum(op0: f64[e0, 1, i, j], op1: f64[e1, j, k]) -> out: f64[e0, e1, i, k] {\n  \
         out[e0, e1, i, k] = sum[e1_0, j] op0[e0, e1_0, i, j] * op1[e1, j, k]    \
         # out: f64[e0, e1, i, k]; e0: e0, e1: e1, i: i, k: k, e1_0: 1, j: j\n}\n"
    );
    assert_eq!(e.output_shape, vec![2, 5, 3, 2]);
    assert_eq!(
        bound(&e),
        vec![("i".into(), 3), ("j".into(), 4), ("k".into(), 2), ("e0".into(), 2), ("e1".into(), 5)]
    );
    // An ellipsis that covers no axis, and `...` in an output with no broadcast axes.
    assert_eq!(stmt(&ok("...ij->ji", &[&[3, 4]])), "out[j, i] = op0[i, j]");
    assert_eq!(stmt(&ok("ij->...ji", &[&[3, 4]])), "out[j, i] = op0[i, j]");
    assert_eq!(stmt(&ok("...,...->...", &[&[2, 3], &[3]])), "out[e0, e1] = op0[e0, e1] * op1[e1]");
    assert_eq!(stmt(&ok("i...i", &[&[3, 5, 3]])), "out[e0] = sum[i] op0[i, e0, i]");
    assert_eq!(stmt(&ok("...->", &[&[]])), "out = op0");
}

#[test]
fn size_one_label_axes_broadcast_through_a_range_one_index() {
    let e = ok("ij,j->i", &[&[2, 1], &[3]]);
    assert_eq!(
        e.function.to_string(),
        "fn einsum(op0: f64[i, 1], op1: f64[j]) -> out: f64[i] {\n  \
         out[i] = sum[j_0, j] op0[i, j_0] * op1[j]    # out: f64[i]; i: i, j_0: 1, j: j\n}\n"
    );
    assert_eq!(e.output_shape, vec![2]);
    let e = ok("i,i->i", &[&[1], &[3]]);
    assert_eq!(e.output_shape, vec![3]);
    assert_eq!(stmt(&e), "out[i] = sum[i_0] op0[i_0] * op1[i]");
    // A size-1 diagonal broadcasts as a whole.
    assert_eq!(stmt(&ok("ii,i", &[&[1, 1], &[3]])), "out = sum[i_0, i] op0[i_0, i_0] * op1[i]");
    // Size 1 everywhere keeps the label's own dim; 1 against 0 gives 0.
    assert_eq!(stmt(&ok("i,i->i", &[&[1], &[1]])), "out[i] = op0[i] * op1[i]");
    assert_eq!(ok("i,i->i", &[&[0], &[1]]).output_shape, vec![0]);
}

#[test]
fn scalars_and_whitespace() {
    let e = ok(",->", &[&[], &[]]);
    assert_eq!(
        e.function.to_string(),
        "fn einsum(op0: f64, op1: f64) -> out: f64 {\n  out = op0 * op1    # out: f64\n}\n"
    );
    assert_eq!(stmt(&ok("", &[&[]])), "out = op0");
    assert_eq!(stmt(&ok("i,", &[&[2], &[]])), "out[i] = op0[i] * op1");
    assert_eq!(
        stmt(&ok(" i j , j k -> k i ", &[&[2, 3], &[3, 4]])),
        "out[k, i] = sum[j] op0[i, j] * op1[j, k]"
    );
}

#[test]
fn unicode_labels_are_labels() {
    let e = ok("αβ,βγ", &[&[2, 3], &[3, 4]]);
    assert_eq!(stmt(&e), "out[α, γ] = sum[β] op0[α, β] * op1[β, γ]");
    assert_eq!(e.output_shape, vec![2, 4]);
    // The span of a multi-byte label covers all its bytes.
    assert_eq!(e.function.dims[1].span, Span::new(FileId(0), 2, 4));
}

#[test]
fn networks_of_many_operands() {
    let e = ok(
        "ab,bc,cd,de,ef,fg,gh,hi->ai",
        &[&[2, 3], &[3, 2], &[2, 2], &[2, 3], &[3, 1], &[1, 2], &[2, 2], &[2, 3]],
    );
    assert_eq!(e.output_shape, vec![2, 3]);
    assert_eq!(
        stmt(&e),
        "out[a, i] = sum[b, c, d, e, f, g, h] op0[a, b] * op1[b, c] * op2[c, d] * op3[d, e] * \
         op4[e, f] * op5[f, g] * op6[g, h] * op7[h, i]"
    );
}

/// Every kind of invalid spec, with the code it must report.
const INVALID: &[(&str, &[&[usize]], &str)] = &[
    ("i->ij", &[&[2]], "einsum::output-label"),
    ("ij->jij", &[&[2, 3]], "einsum::output-repeated"),
    ("->,->", &[&[]], "einsum::arrow"),
    ("i->j->k", &[&[2]], "einsum::arrow"),
    ("i-j", &[&[2]], "einsum::arrow"),
    ("i - > i", &[&[2]], "einsum::arrow"),
    ("i-", &[&[2]], "einsum::arrow"),
    ("i.j", &[&[2, 3]], "einsum::ellipsis"),
    ("..i", &[&[2]], "einsum::ellipsis"),
    ("....", &[&[2]], "einsum::ellipsis"),
    (". ..", &[&[2]], "einsum::ellipsis"),
    ("...i...", &[&[2]], "einsum::ellipsis"),
    ("i->..", &[&[2]], "einsum::ellipsis"),
    ("i\tj", &[&[2, 2]], "einsum::invalid-char"),
    ("i\0j", &[&[2, 2]], "einsum::invalid-char"),
    ("i>j", &[&[2, 2]], "einsum::invalid-char"),
    ("i,j->i,j", &[&[2], &[2]], "einsum::invalid-char"),
    ("i,j", &[&[2]], "einsum::operand-count"),
    ("i", &[&[2], &[2]], "einsum::operand-count"),
    ("i,", &[&[2]], "einsum::operand-count"),
    ("ij", &[], "einsum::operand-count"),
    ("", &[&[2]], "einsum::rank"),
    ("", &[&[], &[]], "einsum::operand-count"),
    ("ij", &[&[2]], "einsum::rank"),
    ("i", &[&[2, 3]], "einsum::rank"),
    ("ij...", &[&[2]], "einsum::rank"),
    ("i...", &[&[]], "einsum::rank"),
    ("...ij->ij", &[&[2, 3, 4]], "einsum::output-ellipsis"),
    ("...ij->ij", &[&[1, 3, 4]], "einsum::output-ellipsis"),
    ("ij,jk", &[&[2, 3], &[4, 5]], "einsum::size-mismatch"),
    ("i,i", &[&[0], &[3]], "einsum::size-mismatch"),
    ("ii", &[&[2, 3]], "einsum::diagonal-size"),
    ("ii", &[&[1, 3]], "einsum::diagonal-size"),
    ("...,...", &[&[2, 3], &[4]], "einsum::broadcast"),
    ("i\u{a0}j", &[&[2, 2]], "einsum::invalid-char"),
    ("i\u{85}j", &[&[2, 2]], "einsum::invalid-char"),
    ("ii", &[&[1 << 32, 1 << 32]], "einsum::too-large"),
    ("i,j", &[&[2], &[1 << 62, 2]], "einsum::rank"),
    ("i,jk", &[&[2], &[1 << 62, 2]], "einsum::too-large"),
];

#[test]
fn invalid_specs_are_errors_with_their_code() {
    for &(spec, shapes, code) in INVALID {
        let d = err(spec, shapes);
        assert_eq!(d.code, code, "{spec:?} {shapes:?}: {}", d.message);
        assert!(d.help.is_some(), "{spec:?}: no help");
        let first = d.labels.first().map(|l| l.span);
        assert!(
            first.is_some_and(|s| s.end as usize <= spec.len() && s.start <= s.end),
            "{spec:?}: bad primary span {first:?}"
        );
    }
}

/// An iteration space is not an allocation: numpy with `optimize` and opt_einsum contract
/// these, so only operands past 2^63-1 elements are refused.
#[test]
fn iteration_spaces_past_2_63_translate() {
    let e = ok("i,j->", &[&[1 << 40], &[1 << 40]]);
    assert_eq!(e.output_shape, Vec::<usize>::new());
    ok("i,j,k->", &[&[0], &[1 << 40], &[1 << 40]]);
    // An output past 2^63-1 elements translates too; compiling it for a run refuses it.
    let e = ok("i,j->ij", &[&[1 << 32], &[1 << 32]]);
    assert_eq!(e.output_shape, vec![1 << 32, 1 << 32]);
    // A ring of 70 tensors with 70 bonds of size 2: 2^70 index combinations.
    let labels: Vec<char> = (0..70u32).map(|k| char::from_u32(0x100 + k).unwrap_or('a')).collect();
    let terms: Vec<String> = (0..70).map(|k| format!("{}{}", labels[k], labels[(k + 1) % 70])).collect();
    let shapes = vec![vec![2usize, 2]; 70];
    let views: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
    let e = ok(&format!("{}->", terms.join(",")), &views);
    assert_eq!(e.function.dims.len(), 70);
}

/// opt_einsum's labels: anything but `,` `.` `-` `>` and whitespace, so digits,
/// punctuation and the symbols its `get_symbol` hands out past 52 labels (`×`, `÷`).
#[test]
fn labels_are_what_opt_einsum_accepts() {
    let e = ok("×÷,÷a->×a", &[&[2, 3], &[3, 4]]);
    assert_eq!(stmt(&e), "out[×, a] = sum[÷] op0[×, ÷] * op1[÷, a]");
    assert_eq!(e.output_shape, vec![2, 4]);
    let e = ok("i1,1_->i_", &[&[2, 3], &[3, 4]]);
    assert_eq!(e.output_shape, vec![2, 4]);
    assert_eq!(stmt(&ok("ij!", &[&[2, 3, 4]])), "out[!, i, j] = op0[i, j, !]");
    // Implicit output: labels sorted by code point, as opt_einsum sorts them.
    assert_eq!(ok("÷×", &[&[2, 3]]).output_shape, vec![3, 2]);
    assert_eq!(ok("a1", &[&[2, 3]]).output_shape, vec![3, 2]);
    // `...` still broadcasts next to such labels.
    assert_eq!(ok("...×,×÷->...÷", &[&[5, 2], &[2, 3]]).output_shape, vec![5, 3]);
    for c in [',', '.', '-', '>', ' ', '\t', '\u{a0}', '\0'] {
        assert!(!crate::einsum::is_label(c), "{c:?}");
    }
}

#[test]
fn rendered_diagnostics_point_at_the_offending_label() {
    let r = render("ij,jk->ikz", &[&[2, 3], &[3, 4]]);
    assert!(r.contains("einsum::output-label"), "{r}");
    assert!(r.contains("output label `z` does not appear in any input"), "{r}");
    assert!(r.contains("<einsum>"), "{r}");
    assert!(r.contains("ij,jk->ikz"), "{r}");
    // The caret sits under `z` (column 10).
    let caret_line = r.lines().find(|l| l.contains('┬') || l.contains('^')).unwrap_or("");
    let col = caret_line.chars().position(|c| c == '┬' || c == '^');
    let src_line = r.lines().find(|l| l.contains("ij,jk->ikz")).unwrap_or("");
    let src_col = src_line.find("ij,jk").map(|p| src_line[..p].chars().count() + 9);
    assert_eq!(col, src_col, "{r}");

    let r = render("ij,jk->ik", &[&[2, 3], &[4, 5]]);
    assert!(r.contains("label `j` has size 3 in operand 0 but size 4 in operand 1"), "{r}");
    assert!(r.contains("size 3") && r.contains("size 4"), "{r}");
    assert!(r.contains("or size 1, which broadcasts"), "{r}");

    let r = render("i.j", &[&[2, 3]]);
    assert!(r.contains("einsum::ellipsis"), "{r}");
    assert!(r.contains("stray `.`"), "{r}");

    let r = render("...ij->ij", &[&[5, 2, 3]]);
    assert!(r.contains("operand 0 has 1 broadcast axis under `...` but the output has no `...`"), "{r}");
    assert!(r.contains("help: add `...` to the output"), "{r}");
    assert!(r.contains("1 axis here"), "{r}");

    let r = render("ij,k", &[&[2, 3]]);
    assert!(r.contains("the spec has 2 input terms but 1 operand was given"), "{r}");
    assert!(r.contains("no operand for this"), "{r}");

    let r = render("i->j->k", &[&[2]]);
    assert!(r.contains("more than one `->`") && r.contains("second `->`"), "{r}");
}

proptest! {
    /// Whatever the spec and shapes, translation returns a value: verified TIR or an error.
    #[test]
    fn never_panics(spec in "[ijk.,> αA1-]{0,12}", shapes in proptest::collection::vec(proptest::collection::vec(0usize..4, 0..4), 0..4)) {
        let views: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        if let Ok(e) = translate(&spec, &views, DType::F64, FileId(0)) {
            prop_assert_eq!(tir::verify(&e.function), Ok(()));
            prop_assert_eq!(e.function.shape(e.function.outputs[0], &e.bindings).ok(), Some(e.output_shape.clone()));
            for (k, s) in views.iter().enumerate() {
                let shape = e.function.shape(TensorId(k as u32), &e.bindings).ok();
                prop_assert_eq!(shape.as_deref(), Some(*s));
            }
        }
    }
}

/// One rendered example of every diagnostic code, as a person sees it.
#[test]
fn every_diagnostic_renders() {
    let cases: &[(&str, &[&[usize]])] = &[
        ("i-j", &[&[2]]),
        ("i->j->k", &[&[2]]),
        ("ij..k", &[&[2, 3, 4]]),
        ("...i...", &[&[2]]),
        ("ij,j>k->i", &[&[2, 3], &[3, 7]]),
        ("ij,jk->ik", &[&[2, 3]]),
        ("ij", &[]),
        ("ij,jk->ik", &[&[2, 3], &[3]]),
        ("ijk", &[&[2, 3]]),
        ("ij,jk->iz", &[&[2, 3], &[3, 4]]),
        ("ij,jk->kik", &[&[2, 3], &[3, 4]]),
        ("...ij,jk->ik", &[&[5, 2, 3], &[3, 4]]),
        ("bij,bjk->bik", &[&[2, 2, 3], &[3, 3, 4]]),
        ("...i,...i", &[&[2, 3], &[3, 3]]),
        ("iij->j", &[&[2, 3, 4]]),
        ("ii", &[&[1 << 32, 1 << 32]]),
    ];
    let rendered: Vec<String> = cases.iter().map(|&(spec, shapes)| render(spec, shapes)).collect();
    let codes: Vec<&str> = cases
        .iter()
        .map(|&(spec, shapes)| err(spec, shapes).code)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(codes.len(), 12, "one example per code: {codes:?}");
    insta::assert_snapshot!(rendered.join("\n"));
}
