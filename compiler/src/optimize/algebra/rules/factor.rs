//! Factoring: the reverse of distributivity (`A·B + A·C → A·(B+C)`, `Σa + Σb → Σ(a+b)`)
//! and pulling factors that do not depend on a summed index out of the sum
//! (`Σ_j a[i,j]·b[i] → b[i]·Σ_j a[i,j]`, so a division by `Z[i]` happens once per
//! output element).

use super::{is_add, is_einsum, Rule};
use crate::optimize::algebra::lang::{self, Open, SpecRef, TNode, EG};
use egg::Id;
use std::collections::HashMap;

/// Sums with more terms are not factored.
const MAX_FACTOR_TERMS: usize = 6;
/// Products with more operands are not factored.
const MAX_FACTOR_OPERANDS: usize = 4;
/// Products looked at per term.
const MAX_FACTOR_FORMS: usize = 4;

pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "factor-common",
            theme: "factor",
            summary: "Σ Π(a, b) + Σ Π(a, c) → Σ Π(a, b + c) (and Σa + Σb → Σ(a + b))",
            applies_to: is_add,
            apply: factor_common,
        },
        Rule {
            name: "pull-out-of-sum",
            theme: "factor",
            summary: "Σ_j Π(a[..j..], b[i]) → Π(b[i], Σ_j a[..j..]), for all summed indices or one",
            applies_to: is_einsum,
            apply: pull_out,
        },
    ]
}

/// A contraction with one operand left out: equal keys mean the two contractions
/// differ only in that operand (read with the same labels).
type HoleKey = (SpecRef, Vec<Option<Id>>);

fn holed(open: &Open, k: usize) -> Option<(HoleKey, Id)> {
    let keyed: Vec<(HoleOrd, Vec<u32>)> = open
        .ops
        .iter()
        .enumerate()
        .map(|(j, (id, ls))| (HoleOrd(if j == k { None } else { Some(*id) }), ls.clone()))
        .collect();
    let (spec, ids) = lang::canonical(&open.sizes, &open.out(), &keyed).ok()?;
    Some(((SpecRef::new(spec), ids.into_iter().map(|h| h.0).collect()), open.ops[k].0))
}

/// Orders a hole after every class.
#[derive(Clone, Copy, PartialEq, Eq)]
struct HoleOrd(Option<Id>);

impl PartialOrd for HoleOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HoleOrd {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self.0, other.0) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    }
}

fn factor_common(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    let TNode::Add(terms) = node else { return Vec::new() };
    if terms.len() > MAX_FACTOR_TERMS {
        return Vec::new();
    }
    // key → (term position, filler)
    let mut seen: HashMap<HoleKey, (usize, Id)> = HashMap::new();
    let mut out = Vec::new();
    for (pos, &t) in terms.iter().enumerate() {
        // The first few products of each term: the forms closest to how it was written.
        let candidates: Vec<TNode> = eg[t]
            .nodes
            .iter()
            .filter(|n| matches!(n, TNode::Einsum(s, _) if s.ops.len() <= MAX_FACTOR_OPERANDS))
            .take(MAX_FACTOR_FORMS)
            .cloned()
            .collect();
        for n in candidates {
            let TNode::Einsum(spec, ids) = &n else { continue };
            let open = Open::new(spec, ids);
            for k in open.variable_ops(eg) {
                let Some((key, filler)) = holed(&open, k) else { continue };
                match seen.get(&key) {
                    Some(&(p, other)) if p != pos => {
                        if let Some(id) = rebuild(eg, &key, &[other, filler], terms, &[p, pos]) {
                            out.push(id);
                        }
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(key, (pos, filler));
                    }
                }
            }
        }
    }
    out
}

/// The sum with the terms at `drop` replaced by the context with `fillers` summed in the
/// hole.
fn rebuild(eg: &mut EG, key: &HoleKey, fillers: &[Id], terms: &[Id], drop: &[usize]) -> Option<Id> {
    let (spec, ids) = key;
    let hole = lang::add(eg, fillers).ok()?;
    let mut open = Open { sizes: spec.sizes.clone(), n_out: spec.n_out, ops: Vec::new() };
    for (id, ls) in ids.iter().zip(&spec.ops) {
        open.ops.push((id.unwrap_or(hole), ls.clone()));
    }
    let factored = open.build(eg)?;
    let mut rest: Vec<Id> = terms.iter().enumerate().filter(|(j, _)| !drop.contains(j)).map(|(_, &x)| x).collect();
    rest.push(factored);
    lang::add(eg, &rest).ok()
}

fn pull_out(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    let TNode::Einsum(spec, ids) = node else { return Vec::new() };
    if !spec.has_bound() {
        return Vec::new();
    }
    let open = Open::new(spec, ids);
    let vars = open.variable_ops(eg);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    // Everything that depends on some summed index, leaving the rest outside...
    groups.push(vars.iter().copied().filter(|&k| open.ops[k].1.iter().any(|&l| open.is_bound(l))).collect());
    // ...and, for each summed index, what depends on it.
    for l in open.n_out as u32..open.sizes.len() as u32 {
        groups.push(vars.iter().copied().filter(|&k| open.ops[k].1.contains(&l)).collect());
    }
    groups.sort();
    groups.dedup();
    let mut out = Vec::new();
    for inner in groups {
        if inner.is_empty() || inner.len() == vars.len() {
            continue;
        }
        out.extend(pull(eg, &open, &inner));
    }
    out
}

/// `Σ Π ops` with the operands `inner` contracted first over the summed indices only
/// they use.
fn pull(eg: &mut EG, open: &Open, inner: &[usize]) -> Option<Id> {
    let outside: Vec<u32> = (0..open.ops.len())
        .filter(|k| !inner.contains(k))
        .flat_map(|k| open.ops[k].1.iter().copied())
        .chain(open.out())
        .collect();
    let mut inner_out: Vec<u32> = Vec::new();
    for &k in inner {
        for &l in &open.ops[k].1 {
            if outside.contains(&l) && !inner_out.contains(&l) {
                inner_out.push(l);
            }
        }
    }
    let inner_ops: Vec<(Id, Vec<u32>)> = inner.iter().map(|&k| open.ops[k].clone()).collect();
    let sum = lang::einsum(eg, &open.sizes, &inner_out, &inner_ops, &[]).ok()?;
    let mut ops: Vec<(Id, Vec<u32>)> = (0..open.ops.len()).filter(|k| !inner.contains(k)).map(|k| open.ops[k].clone()).collect();
    ops.push((sum, inner_out));
    lang::einsum(eg, &open.sizes, &open.out(), &ops, &[]).ok()
}
