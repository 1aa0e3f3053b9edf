//! One line per rule: a tiny program on which the rule fires, after which every node of
//! every e-class still evaluates to its class's value, and the optimised function
//! agrees with the original.

use super::*;
use crate::optimize::algebra::tests::{bind, check, inconsistent_nodes, saturate_with};

#[test]
fn every_rule_fires_and_preserves_meaning() {
    let cases: &[(&str, &str)] = &[
        ("inline-einsum", "fn f(A: f64[n, n], B: f64[n, n], D: f64[n, n]) -> C: f64[n, n] { T[i, j] = A[i, k] * B[k, j]\n C[i, l] = T[i, j] * D[j, l] }"),
    ];
    for (name, src) in cases {
        let f = check(src);
        let b = bind(&f, &[("n", 3)]);
        let (eg, report) = saturate_with(&f, &b, &named(&[name]));
        assert!(report.rules_fired.iter().any(|(r, n)| r == name && *n > 0), "{name} did not fire: {report:?}");
        let bad = inconsistent_nodes(&eg, &f, &b);
        assert!(bad.is_empty(), "{name}: {}", bad.join("\n"));
    }
}
