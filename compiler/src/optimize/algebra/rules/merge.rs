//! Merging: a contraction that reads another contraction absorbs it (the intermediate
//! is inlined into its consumer, across statements), and nested sums flatten.

use super::limits::{MAX_INLINE_OPERANDS, MAX_TERMS};
use super::{is_add, is_einsum, Rule};
use crate::optimize::algebra::lang::{self, Open, TNode, EG};
use egg::Id;

pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "inline-einsum",
            theme: "merge",
            summary: "Σ Π(.., Σ' Π' xs, ..) → Σ Σ' Π(.., xs, ..): a contraction absorbs one it reads",
            applies_to: is_einsum,
            apply: inline_einsum,
        },
        Rule {
            name: "flatten-add",
            theme: "merge",
            summary: "a + (b + c) → a + b + c",
            applies_to: is_add,
            apply: flatten_add,
        },
    ]
}

fn inline_einsum(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    let TNode::Einsum(spec, ids) = node else { return Vec::new() };
    let open = Open::new(spec, ids);
    let mut out = Vec::new();
    for k in 0..open.ops.len() {
        let (child, ref labels) = open.ops[k];
        let inner: Vec<TNode> = eg[child].nodes.iter().filter(|n| is_einsum(n)).cloned().collect();
        for n in inner {
            let TNode::Einsum(s2, ids2) = &n else { continue };
            if open.ops.len() - 1 + ids2.len() > MAX_INLINE_OPERANDS || s2.ops.len() != ids2.len() {
                continue;
            }
            let mut o = open.clone();
            o.ops.remove(k);
            // The inner output labels become the labels the outer operand used; its
            // bound labels become fresh ones.
            let mut map: Vec<u32> = Vec::with_capacity(s2.sizes.len());
            for (l, size) in s2.sizes.iter().enumerate() {
                if l < s2.n_out {
                    match labels.get(l) {
                        Some(&x) => map.push(x),
                        None => break,
                    }
                } else {
                    map.push(o.fresh(size.clone()));
                }
            }
            if map.len() != s2.sizes.len() {
                continue;
            }
            for (&id2, ls) in ids2.iter().zip(&s2.ops) {
                o.ops.push((id2, ls.iter().map(|&l| map[l as usize]).collect()));
            }
            out.extend(o.build(eg));
        }
    }
    out
}

fn flatten_add(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    let TNode::Add(ids) = node else { return Vec::new() };
    let mut out = Vec::new();
    for k in 0..ids.len() {
        let inner: Vec<Vec<Id>> = eg[ids[k]]
            .nodes
            .iter()
            .filter_map(|n| if let TNode::Add(xs) = n { Some(xs.clone()) } else { None })
            .collect();
        for xs in inner {
            if ids.len() - 1 + xs.len() > MAX_TERMS {
                continue;
            }
            let mut terms: Vec<Id> = ids.iter().enumerate().filter(|&(j, _)| j != k).map(|(_, &x)| x).collect();
            terms.extend(xs);
            out.extend(lang::add(eg, &terms).ok());
        }
    }
    out
}
