//! Common subexpressions. Hash-consing already shares identical terms, with index
//! names canonicalised; these rules expose more of them: a contraction is split into a
//! pairwise sub-contraction and the rest (so `Σ_k A[i,k]·v[k]` becomes a class of its
//! own that other terms can share), a contraction that broadcasts its result is split
//! into the contraction and the broadcast (so the small result is computed once), and
//! nodes whose operands changed identity are put back in canonical order.

use super::limits::MAX_SPLIT_OPERANDS;
use super::{is_add, is_einsum, Rule};
use crate::optimize::algebra::lang::{self, Open, TNode, EG};
use egg::Id;

pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "split-pair",
            theme: "cse",
            summary: "Σ Π(a, b, c..) → Σ Π((Σ' a·b), c..) for a pair that sums an index only it uses",
            applies_to: is_einsum,
            apply: split_pair,
        },
        Rule {
            name: "compact-broadcast",
            theme: "cse",
            summary: "Σ Π with output axes no operand reads → a broadcast view of the contraction without them",
            applies_to: is_einsum,
            apply: compact_broadcast,
        },
        Rule {
            name: "canonical-order",
            theme: "cse",
            summary: "re-sorts the operands of products and sums after their classes merged",
            applies_to: |n| is_einsum(n) || is_add(n),
            apply: canonical_order,
        },
    ]
}

fn split_pair(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    let TNode::Einsum(spec, ids) = node else { return Vec::new() };
    let open = Open::new(spec, ids);
    let vars = open.variable_ops(eg);
    if vars.len() < 3 || vars.len() > MAX_SPLIT_OPERANDS {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (x, &a) in vars.iter().enumerate() {
        for &b in &vars[x + 1..] {
            let others: Vec<u32> = (0..open.ops.len())
                .filter(|&k| k != a && k != b)
                .flat_map(|k| open.ops[k].1.iter().copied())
                .chain(open.out())
                .collect();
            let (la, lb) = (&open.ops[a].1, &open.ops[b].1);
            let summed = la.iter().any(|l| lb.contains(l) && !others.contains(l));
            if !summed {
                continue;
            }
            let mut sub_out: Vec<u32> = Vec::new();
            for &l in la.iter().chain(lb) {
                if others.contains(&l) && !sub_out.contains(&l) {
                    sub_out.push(l);
                }
            }
            let pair = [open.ops[a].clone(), open.ops[b].clone()];
            let Ok(sub) = lang::einsum(eg, &open.sizes, &sub_out, &pair, &[]) else { continue };
            let mut ops: Vec<(Id, Vec<u32>)> =
                (0..open.ops.len()).filter(|&k| k != a && k != b).map(|k| open.ops[k].clone()).collect();
            ops.push((sub, sub_out));
            out.extend(lang::einsum(eg, &open.sizes, &open.out(), &ops, &[]).ok());
        }
    }
    out
}

fn compact_broadcast(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    let TNode::Einsum(spec, ids) = node else { return Vec::new() };
    if spec.is_view() {
        return Vec::new();
    }
    let open = Open::new(spec, ids);
    let used: Vec<u32> = open.out().into_iter().filter(|l| open.ops.iter().any(|(_, ls)| ls.contains(l))).collect();
    if used.len() == open.n_out {
        return Vec::new();
    }
    let bound: Vec<u32> = (open.n_out as u32..open.sizes.len() as u32).collect();
    let Ok(inner) = lang::einsum(eg, &open.sizes, &used, &open.ops, &bound) else { return Vec::new() };
    lang::einsum(eg, &open.sizes, &open.out(), &[(inner, used)], &[]).ok().into_iter().collect()
}

fn canonical_order(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    match node {
        TNode::Einsum(spec, ids) => Open::new(spec, ids).build(eg).into_iter().collect(),
        TNode::Add(ids) => lang::add(eg, ids).ok().into_iter().collect(),
        _ => Vec::new(),
    }
}
