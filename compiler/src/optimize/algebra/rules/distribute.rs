//! Distributivity: a product over a sum becomes a sum of products
//! (`A·(B+C) → A·B + A·C`), and a sum (or scaling, or view) of a sum becomes a sum of
//! sums (`Σ(a+b) → Σa + Σb`).

use super::limits::{MAX_DISTRIBUTE_OPERANDS, MAX_DISTRIBUTE_TERMS};
use super::{is_einsum, Rule};
use crate::optimize::algebra::lang::{self, Open, TNode, EG};
use egg::Id;

pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "distribute-product",
            theme: "distribute",
            summary: "Σ Π(a, b + c) → Σ Π(a, b) + Σ Π(a, c)",
            applies_to: is_einsum,
            apply: |eg, _, n| distribute(eg, n, true),
        },
        Rule {
            name: "sum-over-add",
            theme: "distribute",
            summary: "Σ (a + b) → Σ a + Σ b (also for a constant times a sum, and a view of one)",
            applies_to: is_einsum,
            apply: |eg, _, n| distribute(eg, n, false),
        },
    ]
}

/// Distributes over each operand that is a sum; `product` selects contractions with at
/// least two variable operands, otherwise exactly one.
fn distribute(eg: &mut EG, node: &TNode, product: bool) -> Vec<Id> {
    let TNode::Einsum(spec, ids) = node else { return Vec::new() };
    let open = Open::new(spec, ids);
    let vars = open.variable_ops(eg);
    if (vars.len() >= 2) != product || vars.is_empty() || open.ops.len() > MAX_DISTRIBUTE_OPERANDS {
        return Vec::new();
    }
    let mut out = Vec::new();
    for &k in &vars {
        let sums: Vec<Vec<Id>> = eg[open.ops[k].0]
            .nodes
            .iter()
            .filter_map(|n| if let TNode::Add(xs) = n { Some(xs.clone()) } else { None })
            .filter(|xs| xs.len() <= MAX_DISTRIBUTE_TERMS)
            .collect();
        for terms in sums {
            let want = terms.len();
            let mut parts = Vec::with_capacity(want);
            for t in terms {
                let mut o = open.clone();
                o.ops[k].0 = t;
                match o.build(eg) {
                    Some(p) => parts.push(p),
                    None => break,
                }
            }
            if want >= 2 && parts.len() == want {
                out.extend(lang::add(eg, &parts).ok());
            }
        }
    }
    out
}
