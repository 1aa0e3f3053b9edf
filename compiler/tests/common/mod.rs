//! Generators shared by the property tests.

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use tessera_compiler::tir::{Bindings, Function};
use proptest::test_runner::{TestCaseError, TestRunner};
use std::sync::atomic::{AtomicU32, Ordering};

/// Random expressions over the given leaves, of bounded depth.
#[allow(dead_code)]
fn expr_over(leaves: Vec<&'static str>) -> impl Strategy<Value = String> {
    prop::sample::select(leaves).prop_map(|s| s.to_string()).prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            (inner.clone(), prop::sample::select(vec!["+", "-", "*", "/"]), inner.clone())
                .prop_map(|(a, op, b)| format!("({a}) {op} ({b})")),
            (prop::sample::select(vec!["exp", "sqrt", "tanh", "relu", "abs", "sigmoid", "log"]), inner.clone())
                .prop_map(|(f, a)| format!("{f}({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("pow(abs({a}), 0.5) + min({a}, {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("select(i <= 1 || {a} > {b}, {a}, {b})")),
            // L-Mul without truncation is continuous, so rounding upstream stays small.
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("lmul({a}, {b})")),
        ]
    })
}

/// Random programs that are well-typed by construction: one dim, rank-correct reads,
/// intermediates defined before use. They exercise the checker's success path and the
/// evaluator.
#[allow(dead_code)]
pub fn typed_program() -> impl Strategy<Value = String> {
    let e1 = expr_over(vec!["A[i, j]", "A[j, i]", "x[i]", "x[j]", "s", "y[(i, j)]", "i", "n", "1.5", "A[i, i]"]);
    let e2 = expr_over(vec!["T[i, j]", "T[j, i]", "A[i, k]", "x[k]", "s", "i", "2", "T[i, i]"]);
    let e3 = expr_over(vec!["U[i]", "T[i, j]", "x[i]", "U[j]", "A[j, i]", "0.5"]);
    let op = prop::sample::select(vec!["=", "max=", "min="]);
    (e1, op.clone(), e2, op.clone(), e3, op).prop_map(|(a, o1, b, o2, c, o3)| {
        format!(
            "fn f(A: f64[n, n], x: f64[n], y: f64[n * n], s: f64) -> B: f64[n] {{\n    \
             T[i, j] {o1} A[i, j] * ({a}) + sum[q](y[(q, i)] * x[q])\n    \
             U[i] {o2} x[i] - ({b})\n    B[i] {o3} U[i] * ({c})\n}}\n"
        )
    })
}


// Not every test binary that includes this module uses it.
#[allow(dead_code)]
/// A random einsum spec over labels `a..f`, each of size `min..6` (size 0 now and then
/// when `min` is 0), with a random subset of its labels as the output.
pub fn einsum_case(min: usize) -> impl Strategy<Value = (String, Vec<Vec<usize>>)> {
    let term = prop::collection::vec(0usize..6, 0..4);
    let size = prop_oneof![1 => Just(min), 6 => (min.max(1))..6];
    (prop::collection::vec(term, 1..5), prop::collection::vec(size, 6), any::<u64>()).prop_map(|(terms, sizes, bits)| {
        let labels: Vec<char> = "abcdef".chars().collect();
        let mut seen = Vec::new();
        for t in &terms {
            for &l in t {
                if !seen.contains(&l) {
                    seen.push(l);
                }
            }
        }
        let out: String = seen.iter().enumerate().filter(|(k, _)| bits >> k & 1 == 1).map(|(_, &l)| labels[l]).collect();
        let ins: Vec<String> = terms.iter().map(|t| t.iter().map(|&l| labels[l]).collect()).collect();
        let shapes = terms.iter().map(|t| t.iter().map(|&l| sizes[l]).collect()).collect();
        (format!("{}->{out}", ins.join(",")), shapes)
    })
}

#[allow(dead_code)]
/// Runs `cases` cases of `strategy` through `test` and fails unless every one of them ran
/// to the end: a property test whose cases return early without checking must not pass.
pub fn run_cases<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) -> u32 {
    let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
    let done = AtomicU32::new(0);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |v| {
        test(v)?;
        done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let done = done.into_inner();
    println!("{done} cases ran to the end");
    assert!(done >= cases, "only {done} of {cases} cases ran to the end");
    done
}

/// Deterministic inputs in [-1, 1] for the inputs of `f` at sizes `b`.
#[allow(dead_code)]
pub fn inputs(f: &Function, b: &Bindings, seed: u64) -> Vec<ArrayD<f64>> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    f.inputs
        .iter()
        .map(|&t| {
            let shape = f.shape(t, b).unwrap_or_default();
            ArrayD::from_shape_simple_fn(IxDyn(&shape), || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
        })
        .collect()
}

