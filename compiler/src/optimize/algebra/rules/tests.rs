//! One line per rule: a tiny program on which the rule fires, after which every node of
//! every e-class still evaluates to its class's value (the rule preserved meaning), and
//! the function optimised with that rule alone agrees with the original.

use super::*;
use crate::optimize::algebra::lang::{self, Spec};
use crate::optimize::algebra::tests::{assert_same, bind, check, inconsistent_nodes, saturate_with};
use crate::optimize::algebra::{optimize_with_rules, AlgebraOptions};

/// (rule, program): the dims are all bound to 3 (`n`) and 2 (`m`).
const CASES: &[(&str, &str)] = &[
    ("inline-einsum", "fn f(A: f64[n, n], B: f64[n, n], D: f64[n, n]) -> C: f64[n, n] { T[i, j] = A[i, k] * B[k, j]\n C[i, l] = T[i, j] * D[j, l] }"),
    ("flatten-add", "fn f(A: f64[n], B: f64[n], D: f64[n]) -> C: f64[n] { T[i] = A[i] + B[i]\n C[i] = T[i] + D[i] }"),
    ("distribute-product", "fn f(A: f64[n, n], B: f64[n], D: f64[n]) -> C: f64[n] { C[i] = A[i, j] * (B[j] + D[j]) }"),
    ("sum-over-add", "fn f(A: f64[n, n], B: f64[n, n]) -> C: f64[n] { C[i] = sum[j](A[i, j] + B[i, j]) }"),
    ("factor-common", "fn f(A: f64[n, n], B: f64[n, m], D: f64[n, m]) -> C: f64[n, m] { C[i, k] = sum[j](A[i, j] * B[j, k]) + sum[j](A[i, j] * D[j, k]) }"),
    ("pull-out-of-sum", "fn f(P: f64[n, n], V: f64[n, m], Z: f64[n]) -> O: f64[n, m] { O[i, b] = P[i, j] * V[j, b] * Z[i] }"),
    ("fold-constants", "fn f(A: f64[n]) -> C: f64[n] { C[i] = A[i] + 1 + 2 }"),
    ("like-terms", "fn f(A: f64[n], B: f64[n]) -> C: f64[n] { C[i] = A[i] * B[i] + A[i] * B[i] }"),
    ("pow-expand", "fn f(A: f64[n, n]) -> C: f64[n] { C[i] = pow(A[i, j], 2) }"),
    ("recip-recip", "fn f(A: f64[n]) -> C: f64[n] { C[i] = 1 / (1 / A[i]) }"),
    ("split-of-merge", "fn f(A: f64[n], B: f64[m]) -> C: f64[n, m] { K[(i, k)] = A[i] * B[k]\n C[i, k] = K[(i, k)] }"),
    ("merge-of-split", "fn f(X: f64[n * m]) -> Y: f64[n * m] { Y[(i, k)] = X[(i, k)] }"),
    ("split-into-einsum", "fn f(A: f64[n * m], B: f64[n * m]) -> C: f64[n, m] { T[p] = A[p] * B[p]\n C[i, k] = T[(i, k)] }"),
    ("compact-broadcast", "fn f(A: f64[n, n]) -> C: f64[n, m] { C[i, k] = sum[j](A[i, j]) * 2 }"),
    ("split-pair", "fn f(A: f64[n, n], B: f64[n, m], D: f64[m]) -> C: f64[n] { C[i] = A[i, k] * B[k, l] * D[l] }"),
];

#[test]
fn every_rule_fires_and_preserves_meaning() {
    for (name, src) in CASES {
        let f = check(src);
        let dims: Vec<(&str, u64)> = [("n", 3), ("m", 2)].into_iter().filter(|(d, _)| f.dim_by_name(d).is_some()).collect();
        let b = bind(&f, &dims);
        let rules = named(&[name]);
        assert_eq!(rules.len(), 1, "{name} is not a rule");
        let (eg, report) = saturate_with(&f, &b, &rules);
        assert!(report.rules_fired.iter().any(|(r, n)| r == name && *n > 0), "{name} did not fire: {report:?}");
        let bad = inconsistent_nodes(&eg, &f, &b);
        assert!(bad.is_empty(), "{name}: {}", bad.join("\n"));
        let (g, _) = optimize_with_rules(&f, &b, &AlgebraOptions::default(), &rules).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_same(&f, &g, &b, 5, true);
    }
}

#[test]
fn every_rule_has_a_case_and_a_unique_name() {
    let rules = all();
    for r in &rules {
        let cased = r.name == "canonical-order" || CASES.iter().any(|(n, _)| *n == r.name);
        assert!(cased, "rule {} has no test case", r.name);
        assert_eq!(rules.iter().filter(|x| x.name == r.name).count(), 1, "{} twice", r.name);
        assert!(!r.summary.is_empty() && !r.theme.is_empty());
    }
}

/// Operands put in the wrong order (as after a merge changed class ids) are put back.
#[test]
fn canonical_order_fires_and_preserves_meaning() {
    let f = check("fn f(A: f64[n, n], B: f64[n, n]) -> C: f64[n, n] { C[i, j] = A[i, k] * B[k, j] }");
    let b = bind(&f, &[("n", 3)]);
    let (mut eg, _) = saturate_with(&f, &b, &[]);
    let (a, bb) = (eg.add(TNode::Input(0)), eg.add(TNode::Input(1)));
    let n = f.tensor(f.inputs[0]).shape[0].clone();
    // B[k, j] · A[i, k] with B first: operands sorted by class would put A first.
    let spec = Spec { sizes: vec![n.clone(), n.clone(), n], n_out: 2, ops: vec![vec![2, 1], vec![0, 2]] };
    let odd = eg.add(TNode::Einsum(lang::SpecRef::new(spec), vec![bb, a]));
    eg.rebuild();
    let rule = named(&["canonical-order"]);
    let node = eg[odd].nodes[0].clone();
    let canon = (rule[0].apply)(&mut eg, odd, &node);
    assert_eq!(canon.len(), 1);
    assert_ne!(eg.find(canon[0]), eg.find(odd), "already canonical");
    assert!(lang::union_checked(&mut eg, odd, canon[0]));
    eg.rebuild();
    assert!(inconsistent_nodes(&eg, &f, &b).is_empty());
}
