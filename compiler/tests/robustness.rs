//! No input panics the front end: random bytes, random token soups, and random
//! grammatical programs (which must also round-trip through the AST printer and, when
//! they check, evaluate without panicking).

use ndarray::Dimension;
use proptest::prelude::*;

mod common;
use common::typed_program;
use tessera_compiler::diag::render_all;
use tessera_compiler::eval::{evaluate, EvalOptions};
use tessera_compiler::exec::Executable;
use tessera_compiler::pipeline::{self, Stage};
use tessera_compiler::plan::{plan, PlanOptions};
use tessera_compiler::Backend;
use tessera_compiler::syntax::{parse, print_module};
use tessera_compiler::tir::bind_dims;

/// Parses, checks and renders every diagnostic; returns the checked result.
fn front_end(src: &str) -> tessera_compiler::check::Checked {
    let (sm, _, c) = pipeline::check("fuzz.tsr", src);
    let _ = render_all(&c.diagnostics, &sm, false);
    c
}

const TOKENS: &[&str] = &[
    "fn", "use", "std", "::", "attention", "softmax", "(", ")", "[", "]", "{", "}", ",", ":", "->", "=", "max=",
    "min=", "+", "-", "*", "/", "<", "<=", "==", "!=", "&&", "||", "!", ";", "#", "\n", "f32", "f64", "f16", "A",
    "B", "C", "x", "i", "j", "k", "n", "m", "d", "0", "1", "2.5", "1e-5", "inf", "exp", "sqrt", "pow", "max", "sum",
    "min", "select", "cg", "(i, j)", "α", "18446744073709551616", "99999999999999999999999",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..60).prop_map(|t| t.join(" "))
}

/// A random grammatical program over a small vocabulary, so names often resolve.
fn program() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["A", "B", "T", "U", "s"]);
    let idx = prop::sample::select(vec!["i", "j", "k"]);
    let item = prop_oneof![
        3 => idx.clone().prop_map(|i| i.to_string()),
        1 => (idx.clone(), idx.clone()).prop_map(|(a, b)| format!("({a}, {b})")),
    ];
    let access = (name.clone(), prop::collection::vec(item.clone(), 0..3))
        .prop_map(|(n, items)| if items.is_empty() { n.to_string() } else { format!("{n}[{}]", items.join(", ")) });
    let leaf = prop_oneof![
        4 => access,
        1 => prop::sample::select(vec!["1", "2.5", "0", "inf", "n", "i", "1e-3"]).prop_map(|s| s.to_string()),
    ];
    let expr = leaf.prop_recursive(4, 24, 3, move |inner| {
        prop_oneof![
            (inner.clone(), prop::sample::select(vec!["+", "-", "*", "/"]), inner.clone())
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("-{a}")),
            (prop::sample::select(vec!["exp", "sqrt", "tanh", "relu", "abs"]), inner.clone())
                .prop_map(|(f, a)| format!("{f}({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("max({a}, {b})")),
            (prop::sample::select(vec!["sum", "max", "min"]), prop::sample::select(vec!["i", "j", "k"]), inner.clone())
                .prop_map(|(r, i, a)| format!("{r}[{i}]({a})")),
            (inner.clone(), inner.clone(), inner.clone(), inner)
                .prop_map(|(a, b, c, d)| format!("select({a} <= {b} && !({a} == {b}), {c}, {d})")),
        ]
    });
    let lhs = (prop::sample::select(vec!["T", "U", "B", "s"]), prop::collection::vec(item, 0..3))
        .prop_map(|(n, items)| if items.is_empty() { n.to_string() } else { format!("{n}[{}]", items.join(", ")) });
    let stmt = (lhs, prop::sample::select(vec!["=", "max=", "min="]), expr)
        .prop_map(|(l, op, e)| format!("    {l} {op} {e}\n"));
    let ty = prop::sample::select(vec!["f32[n]", "f32[n, m]", "f32[n * m]", "f32", "f32[3, n]", "f32[m, n, n]"]);
    (ty.clone(), ty, prop::collection::vec(stmt, 1..5)).prop_map(|(ta, tb, stmts)| {
        format!("fn f(A: {ta}, s: f32) -> B: {tb} {{\n{}}}\n", stmts.concat())
    })
}


proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        front_end(&text);
    }

    #[test]
    fn token_soups_never_panic(src in soup()) {
        front_end(&src);
        front_end(&format!("fn f(A: f32[n]) -> B: f32[n] {{ {src} }}"));
    }

    #[test]
    fn random_programs_round_trip_and_never_panic(src in program(), n in 0usize..4, m in 0usize..4) {
        let m0 = parse(&src, Default::default()).map_err(|d| TestCaseError::fail(format!("{}\n{src}", d.message)))?;
        let printed = print_module(&m0);
        let m1 = parse(&printed, Default::default()).map_err(|d| TestCaseError::fail(d.message))?;
        prop_assert_eq!(&print_module(&m1), &printed);
        let checked = front_end(&src);
        evaluate_small(&checked, n, m);
    }
}

/// Programs that are well-typed by construction check, and evaluate on small shapes.
#[test]
fn typed_programs_check_and_evaluate() {
    common::run_cases(400, (typed_program(), 0usize..4), |(src, n)| {
        let checked = front_end(&src);
        prop_assert!(!checked.functions.is_empty(), "does not check:\n{src}");
        let evaluated = evaluate_small(&checked, n, n);
        prop_assert_eq!(evaluated, checked.functions.len(), "not every function evaluated:\n{}", src);
        Ok(())
    });
}

/// Evaluates every checked function on small shapes (dims alternately `n` and `m`, the
/// input shapes computed from them); returns how many evaluated.
fn evaluate_small(checked: &tessera_compiler::check::Checked, n: usize, m: usize) -> usize {
    let mut ok = 0;
    for f in &checked.functions {
        let mut b = tessera_compiler::tir::Bindings::new(f.dims.len());
        for k in 0..f.dims.len() {
            b.set(tessera_compiler::tir::DimId(k as u32), if k % 2 == 0 { n as u64 } else { m as u64 });
        }
        let arrays: Option<Vec<ndarray::ArrayD<f64>>> = f
            .inputs
            .iter()
            .map(|&t| {
                let shape = f.shape(t, &b).ok()?;
                Some(ndarray::ArrayD::from_shape_fn(shape, |ix| ix.slice().iter().sum::<usize>() as f64 - 1.5))
            })
            .collect();
        let Some(arrays) = arrays else { continue };
        let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
        if evaluate(f, &b, &views, &EvalOptions { memory_limit: 1 << 20 }).is_ok() {
            ok += 1;
        }
    }
    ok
}

/// The deepest nesting the parser accepts goes through every stage on a default test
/// thread (2 MiB stack) in a debug build.
#[test]
fn deepest_accepted_program_runs_everywhere() {
    let depth = tessera_compiler::syntax::MAX_NESTING - 2;
    let body = format!("{}x[i]{}", "-abs(".repeat(depth), ")".repeat(depth));
    let src = format!("fn f(x: f64[n]) -> y: f64[n] {{\n    y[i] = {body}\n}}\n");
    let checked = front_end(&src);
    assert!(checked.functions.len() == 1, "{:?}", checked.diagnostics.iter().map(|d| &d.message).collect::<Vec<_>>());
    let f = &checked.functions[0];
    let _ = f.to_string();
    let b = bind_dims(f, &[&[3]], &[]).expect("binds");
    let x = ndarray::arr1(&[1.0, -2.0, 3.0]).into_dyn();
    let want = ndarray::arr1(&[-1.0, -2.0, -3.0]).into_dyn();
    let out = evaluate(f, &b, &[x.view()], &EvalOptions::default()).expect("evaluates");
    assert_eq!(out, vec![want.clone()]);
    // Every later stage too: the plan, its program on the oracle, the loop IR and its
    // text, and both backends that run it.
    let p = plan(f, &b, &PlanOptions::default()).expect("plans");
    let _ = p.to_string();
    let stepwise = evaluate(&p.program, &b, &[x.view()], &EvalOptions::default()).expect("the plan's program evaluates");
    assert_eq!(stepwise, vec![want.clone()]);
    let opts = pipeline::Options { stop_after: Stage::Loops, ..Default::default() };
    let prog = pipeline::compile(f, &b, f.dtype, &opts).expect("lowers").program.expect("a loop program");
    let _ = prog.to_string();
    for backend in Backend::executors() {
        let exe = Executable::new(prog.clone(), backend).expect("compiles");
        let got = exe.run(&[x.view()]).expect("runs");
        assert_eq!(got, vec![want.clone()], "{}", backend.name());
    }
    // One level deeper than allowed is a clean error.
    let too_deep = format!("fn f(x: f64[n]) -> y: f64[n] {{ y[i] = {}x[i]{} }}", "(".repeat(depth + 3), ")".repeat(depth + 3));
    assert!(front_end(&too_deep).diagnostics.iter().any(|d| d.code == "syntax::too-deep"));
}
