//! Constant and scalar folding: constant operands of a product fold into one
//! coefficient, constant terms of a sum fold into one, like terms combine
//! (`2·x + 3·x → 5·x`, `x - x → 0`), small integer powers expand into products
//! (`pow(x, 2) → x·x`), and `1/(1/x) → x`. Classes whose value is a known constant get a
//! literal through the analysis.

use super::limits::MAX_TERMS;
use super::{is_add, is_einsum, Rule};
use crate::optimize::algebra::konst::Konst;
use crate::optimize::algebra::lang::{self, Open, TNode, EG};
use crate::tir::Builtin;
use egg::Id;

pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "fold-constants",
            theme: "fold",
            summary: "c1 · c2 · x → (c1 c2) · x; c1 + c2 + x → (c1 + c2) + x; 0 · x → 0; x + 0 → x",
            applies_to: |n| is_einsum(n) || is_add(n),
            apply: fold_constants,
        },
        Rule {
            name: "like-terms",
            theme: "fold",
            summary: "a·x + b·x → (a + b)·x",
            applies_to: is_add,
            apply: like_terms,
        },
        Rule {
            name: "pow-expand",
            theme: "fold",
            summary: "pow(x, n) → x·…·x for n in 0..=4, 1/x and 1/(x·x) for n = -1, -2",
            applies_to: |n| matches!(n, TNode::Call(c, _) if TNode::as_builtin(*c) == Some(Builtin::Pow)),
            apply: pow_expand,
        },
        Rule {
            name: "recip-recip",
            theme: "fold",
            summary: "1/(1/x) → x",
            applies_to: |n| matches!(n, TNode::Recip(_)),
            apply: recip_recip,
        },
    ]
}

fn fold_constants(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    match node {
        TNode::Einsum(spec, ids) => {
            // The canonical constant node (a broadcast number) is already folded.
            if ids.len() == 1 && spec.ops.first().is_some_and(|o| o.is_empty()) && spec.is_view() {
                return Vec::new();
            }
            let konst: Vec<(usize, f64)> =
                ids.iter().enumerate().filter_map(|(k, &i)| eg[i].data.value().map(|c| (k, c))).collect();
            let fire = konst.len() >= 2
                || (konst.len() == 1 && ids.len() == 1)
                || konst.iter().any(|&(k, c)| !spec.ops[k].is_empty() || c == 0.0 || c == 1.0);
            if fire {
                return Open::new(spec, ids).build(eg).into_iter().collect();
            }
            Vec::new()
        }
        TNode::Add(ids) => {
            let consts: Vec<Konst> = ids.iter().filter_map(|&i| eg[i].data.konst).collect();
            if consts.len() < 2 && !consts.iter().any(|k| k.value == 0.0) {
                return Vec::new();
            }
            let mut rest: Vec<Id> = ids.iter().copied().filter(|&i| eg[i].data.konst.is_none()).collect();
            let total = Konst::sum(consts);
            let shape = ids.first().map(|&i| eg[i].data.shape.clone()).unwrap_or_default();
            if total.value != 0.0 || rest.is_empty() {
                rest.push(lang::constant(eg, total, &shape));
            }
            lang::add(eg, &rest).ok().into_iter().collect()
        }
        _ => Vec::new(),
    }
}

/// `(base, coefficient)` for each einsum node of a class that is a constant times
/// one operand read as it is; the class itself with coefficient 1 otherwise.
fn scaled(eg: &EG, c: Id) -> Vec<(Id, Konst)> {
    let mut out = vec![(eg.find(c), Konst::from_f64(1.0))];
    for n in &eg[c].nodes {
        let TNode::Einsum(spec, ids) = n else { continue };
        if spec.has_bound() {
            continue;
        }
        let vars: Vec<usize> = (0..ids.len()).filter(|&k| eg[ids[k]].data.konst.is_none()).collect();
        if vars.len() != 1 || ids.len() != 2 {
            continue;
        }
        let v = vars[0];
        let identity = spec.ops[v].len() == spec.n_out && spec.ops[v].iter().enumerate().all(|(a, &l)| a == l as usize);
        if let (true, Some(k)) = (identity, eg[ids[1 - v]].data.konst) {
            out.push((eg.find(ids[v]), k));
        }
    }
    out
}

fn like_terms(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    let TNode::Add(ids) = node else { return Vec::new() };
    if ids.len() > MAX_TERMS {
        return Vec::new();
    }
    let forms: Vec<Vec<(Id, Konst)>> = ids.iter().map(|&t| scaled(eg, t)).collect();
    let mut out = Vec::new();
    // For each pair of terms with a common base, combine them.
    for a in 0..ids.len() {
        for b in a + 1..ids.len() {
            for &(base, ca) in &forms[a] {
                let Some(&(_, cb)) = forms[b].iter().find(|(x, _)| *x == base) else { continue };
                let shape = eg[base].data.shape.clone();
                let labels: Vec<u32> = (0..shape.len() as u32).collect();
                let k = eg.add(lang::scalar(ca.add(cb)));
                let Ok(sum) = lang::einsum(eg, &shape, &labels, &[(base, labels.clone()), (k, Vec::new())], &[]) else {
                    continue;
                };
                let mut rest: Vec<Id> = ids.iter().enumerate().filter(|&(j, _)| j != a && j != b).map(|(_, &x)| x).collect();
                let zero = eg[sum].data.value() == Some(0.0);
                if !zero || rest.is_empty() {
                    rest.push(sum);
                }
                out.extend(lang::add(eg, &rest).ok());
                break;
            }
        }
    }
    out
}

fn pow_expand(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    let TNode::Call(_, args) = node else { return Vec::new() };
    let [x, e] = args.as_slice() else { return Vec::new() };
    let Some(p) = eg[*e].data.value() else { return Vec::new() };
    let shape = eg[*x].data.shape.clone();
    let labels: Vec<u32> = (0..shape.len() as u32).collect();
    let power = |eg: &mut EG, n: usize| lang::einsum(eg, &shape, &labels, &vec![(*x, labels.clone()); n], &[]).ok();
    if p.fract() != 0.0 || !(-2.0..=4.0).contains(&p) {
        return Vec::new();
    }
    let r = match p as i64 {
        0 => Some(lang::constant(eg, Konst::from_f64(1.0), &shape)),
        1 => Some(eg.find(*x)),
        -1 => Some(eg.add(TNode::Recip([*x]))),
        -2 => power(eg, 2).map(|sq| eg.add(TNode::Recip([sq]))),
        k => power(eg, k as usize),
    };
    r.into_iter().collect()
}

fn recip_recip(eg: &mut EG, _: Id, node: &TNode) -> Vec<Id> {
    let TNode::Recip([x]) = node else { return Vec::new() };
    eg[*x].nodes.iter().filter_map(|n| if let TNode::Recip([y]) = n { Some(*y) } else { None }).collect()
}
