//! Grouped indices and Kronecker identities: reading a tensor built with grouped
//! indices back with the same grouping gives the ungrouped value
//! (`K[(i,k),(j,l)] = A[i,j]·B[k,l]` read as `K[(i,k),(j,l)]` is `A[i,j]·B[k,l]`, so
//! `K·x` never forms `K`), and splitting a contraction's output splits its operands.

use super::{is_einsum, Rule};
use crate::optimize::algebra::lang::{self, TNode, EG};
use crate::tir::Size;
use egg::Id;

pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "split-of-merge",
            theme: "kron",
            summary: "split(merge(x)) → x when the split undoes the merge",
            applies_to: |n| matches!(n, TNode::Split(..)),
            apply: split_of_merge,
        },
        Rule {
            name: "merge-of-split",
            theme: "kron",
            summary: "merge(split(x)) → x when the merge undoes the split",
            applies_to: |n| matches!(n, TNode::Merge(..)),
            apply: merge_of_split,
        },
        Rule {
            name: "split-into-einsum",
            theme: "kron",
            summary: "split(Σ Π ops) → Σ Π split(ops): grouped output axes split the operands that carry them",
            applies_to: |n| matches!(n, TNode::Split(..)),
            apply: split_into_einsum,
        },
    ]
}

fn split_of_merge(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    let TNode::Split(factors, [c]) = node else { return Vec::new() };
    let mut out = Vec::new();
    for n in &eg[*c].nodes {
        let TNode::Merge(groups, [x]) = n else { continue };
        let shape = &eg[*x].data.shape;
        let mut at = 0;
        let mut same = groups.len() == factors.len();
        for (g, f) in groups.iter().zip(factors.iter()) {
            same &= shape.get(at..at + g) == Some(f.as_slice());
            at += g;
        }
        if same {
            out.push(*x);
        }
    }
    out
}

fn merge_of_split(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    let TNode::Merge(groups, [c]) = node else { return Vec::new() };
    eg[*c]
        .nodes
        .iter()
        .filter_map(|n| match n {
            TNode::Split(factors, [x]) if factors.iter().map(|f| f.len()).eq(groups.iter().copied()) => Some(*x),
            _ => None,
        })
        .collect()
}

fn split_into_einsum(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    let TNode::Split(factors, [c]) = node else { return Vec::new() };
    let inner: Vec<TNode> = eg[*c].nodes.iter().filter(|n| is_einsum(n)).cloned().collect();
    let mut out = Vec::new();
    for n in inner {
        let TNode::Einsum(spec, ids) = &n else { continue };
        if factors.len() != spec.n_out {
            continue;
        }
        // New labels: the factors of each output axis, then the old bound labels.
        let mut sizes: Vec<Size> = Vec::new();
        let mut new_of: Vec<Vec<u32>> = Vec::new();
        for f in factors.iter() {
            let ls = f.iter().map(|s| {
                sizes.push(s.clone());
                (sizes.len() - 1) as u32
            });
            new_of.push(ls.collect());
        }
        for s in &spec.sizes[spec.n_out..] {
            sizes.push(s.clone());
            new_of.push(vec![(sizes.len() - 1) as u32]);
        }
        let out_labels: Vec<u32> = new_of[..spec.n_out].concat();
        let mut ops = Vec::with_capacity(ids.len());
        let mut ok = true;
        for (&id, ls) in ids.iter().zip(&spec.ops) {
            let mut op_factors: Vec<Vec<Size>> = Vec::with_capacity(ls.len());
            let mut labels = Vec::new();
            for &l in ls {
                let nl = &new_of[l as usize];
                op_factors.push(nl.iter().map(|&x| sizes[x as usize].clone()).collect());
                labels.extend(nl.iter().copied());
            }
            match lang::split(eg, id, op_factors) {
                Ok(s) => ops.push((s, labels)),
                Err(_) => ok = false,
            }
        }
        if ok {
            out.extend(lang::einsum(eg, &sizes, &out_labels, &ops, &[]).ok());
        }
    }
    out
}
