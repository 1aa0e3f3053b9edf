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
        let class = eg.find(open.ops[k].0);
        let squared = open.ops.iter().filter(|(c, _)| eg.find(*c) == class).count() > 1;
        let sums: Vec<Vec<Id>> = eg[class]
            .nodes
            .iter()
            .filter_map(|n| if let TNode::Add(xs) = n { Some(xs.clone()) } else { None })
            .filter(|xs| xs.len() <= MAX_DISTRIBUTE_TERMS)
            // Expanding the square of a difference, (x - μ)² → x² - 2xμ + μ², trades a
            // few FLOPs for cancellation (the textbook unstable variance): not done.
            .filter(|xs| !(squared && xs.iter().any(|&t| negative(eg, t))))
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

/// True when a term is a negative constant or a negative multiple of something.
fn negative(eg: &EG, t: Id) -> bool {
    if eg[t].data.value().is_some_and(|c| c < 0.0) {
        return true;
    }
    eg[t].nodes.iter().any(|n| match n {
        TNode::Einsum(_, ids) => ids.iter().filter_map(|&i| eg[i].data.value()).product::<f64>() < 0.0,
        _ => false,
    })
}
