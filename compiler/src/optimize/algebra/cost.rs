//! The cost model for extraction: FLOPs under the bound sizes.
//!
//! A contraction node costs its best pairwise contraction order with opt_einsum's
//! convention (a step costs the product of the sizes of all its indices, twice that
//! when it sums an index): exact dynamic programming over subsets for up to
//! [`DP_MAX_OPERANDS`] operands, greedy beyond. Views cost nothing, elementwise nodes
//! one FLOP per output element per operation. Costs of contraction specs are memoised.

use super::lang::{SpecRef, TNode, EG};
use std::cell::RefCell;
use std::collections::HashMap;

/// Contractions with at most this many operands are ordered exactly.
pub const DP_MAX_OPERANDS: usize = 10;

pub struct CostModel {
    /// Cost of each opaque statement, by statement index.
    opaque: Vec<f64>,
    memo: RefCell<HashMap<SpecRef, f64>>,
}

impl CostModel {
    pub fn new(opaque: Vec<f64>) -> CostModel {
        CostModel { opaque, memo: RefCell::new(HashMap::new()) }
    }

    /// The cost of evaluating one node once its children are available.
    pub fn node_cost(&self, eg: &EG, node: &TNode) -> f64 {
        let numel = |id: egg::Id| eg.analysis.numel(&eg[id].data.shape);
        match node {
            TNode::Input(_) | TNode::Num(_) | TNode::Split(..) | TNode::Merge(..) => 0.0,
            TNode::Einsum(spec, _) => {
                if spec.is_view() {
                    return 0.0;
                }
                if let Some(&c) = self.memo.borrow().get(spec) {
                    return c;
                }
                let sizes: Vec<f64> = spec.sizes.iter().map(|s| eg.analysis.value(s)).collect();
                let c = contraction_cost(&sizes, spec.n_out, &spec.ops);
                self.memo.borrow_mut().insert(spec.clone(), c);
                c
            }
            TNode::Add(ids) => ids.first().map_or(0.0, |&i| numel(i) * (ids.len().saturating_sub(1)) as f64),
            TNode::Recip([a]) => numel(*a),
            TNode::Call(_, ids) => ids.first().map_or(0.0, |&i| numel(i)),
            TNode::Opaque(stmt, _) => self.opaque.get(*stmt as usize).copied().unwrap_or(0.0),
        }
    }
}

/// FLOPs of the best pairwise order for `Σ Π ops` (labels index `sizes`, the first
/// `n_out` are kept).
pub fn contraction_cost(sizes: &[f64], n_out: usize, ops: &[Vec<u32>]) -> f64 {
    if sizes.len() > 128 {
        // Too many labels for the bitsets: charge every operand the whole domain.
        let all: f64 = sizes.iter().product();
        return all * 2.0 * ops.len() as f64;
    }
    let mask = |ls: &[u32]| ls.iter().fold(0u128, |m, &l| m | (1u128 << l));
    let masks: Vec<u128> = ops.iter().map(|o| mask(o)).collect();
    let out: u128 = if n_out >= 128 { u128::MAX } else { (1u128 << n_out) - 1 };
    let prod = |m: u128| -> f64 {
        let mut p = 1.0;
        let mut m = m;
        while m != 0 {
            let b = m.trailing_zeros() as usize;
            p *= sizes.get(b).copied().unwrap_or(1.0);
            m &= m - 1;
        }
        p
    };
    match masks.len() {
        0 => 0.0,
        1 => {
            if masks[0] & !out != 0 {
                prod(masks[0])
            } else {
                0.0
            }
        }
        n if n <= DP_MAX_OPERANDS => dp(&masks, out, &prod),
        _ => greedy(&masks, out, &prod),
    }
}

/// One pairwise step: both results' labels, doubled when the step sums a label.
fn step(a: u128, b: u128, keep: u128, prod: &dyn Fn(u128) -> f64) -> f64 {
    let both = a | b;
    prod(both) * if both & !keep != 0 { 2.0 } else { 1.0 }
}

fn dp(masks: &[u128], out: u128, prod: &dyn Fn(u128) -> f64) -> f64 {
    let n = masks.len();
    let full = (1usize << n) - 1;
    let mut labels = vec![0u128; full + 1];
    for s in 1..=full {
        let low = s.trailing_zeros() as usize;
        labels[s] = labels[s & (s - 1)] | masks[low];
    }
    // The labels a partial result must keep: those used outside it or by the output.
    let res = |s: usize| -> u128 {
        if s.count_ones() == 1 {
            masks[s.trailing_zeros() as usize]
        } else {
            labels[s] & (labels[full ^ s] | out)
        }
    };
    let mut best = vec![f64::INFINITY; full + 1];
    for k in 0..n {
        best[1 << k] = 0.0;
    }
    for s in 1..=full {
        if s.count_ones() < 2 {
            continue;
        }
        let keep = res(s);
        let low = s & s.wrapping_neg();
        // Subsets containing the lowest element, so each split is seen once.
        let rest = s ^ low;
        let mut sub = rest;
        loop {
            let a = sub | low;
            if a != s {
                let b = s ^ a;
                let c = best[a] + best[b] + step(res(a), res(b), keep, prod);
                if c < best[s] {
                    best[s] = c;
                }
            }
            if sub == 0 {
                break;
            }
            sub = (sub - 1) & rest;
        }
    }
    best[full]
}

fn greedy(masks: &[u128], out: u128, prod: &dyn Fn(u128) -> f64) -> f64 {
    let mut live: Vec<u128> = masks.to_vec();
    let mut total = 0.0;
    while live.len() > 1 {
        let mut pick = (0, 1, f64::INFINITY, f64::INFINITY, 0u128);
        for a in 0..live.len() {
            for b in a + 1..live.len() {
                let others = live.iter().enumerate().filter(|&(k, _)| k != a && k != b).fold(0u128, |m, (_, x)| m | x);
                let keep = (live[a] | live[b]) & (others | out);
                let c = step(live[a], live[b], keep, prod);
                let size = prod(keep);
                if (c, size) < (pick.2, pick.3) {
                    pick = (a, b, c, size, keep);
                }
            }
        }
        let (a, b, c, _, keep) = pick;
        total += c;
        live.remove(b);
        live[a] = keep;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_chain_picks_the_cheap_order() {
        // A[i,j] B[j,k] v[k] with i=j=k=10: B·v first costs 2*100 + 2*100.
        let c = contraction_cost(&[10.0, 10.0, 10.0], 1, &[vec![0, 1], vec![1, 2], vec![2]]);
        assert_eq!(c, 400.0);
    }

    #[test]
    fn greedy_agrees_with_dp_on_a_chain() {
        let sizes = [10.0, 10.0, 10.0];
        let ops = [vec![0, 1], vec![1, 2], vec![2]];
        let m: Vec<u128> = ops.iter().map(|o| o.iter().fold(0u128, |m, &l| m | (1 << l))).collect();
        let prod = |m: u128| (0..3).filter(|b| m & (1 << b) != 0).map(|b| sizes[b]).product::<f64>();
        assert_eq!(greedy(&m, 1, &prod), dp(&m, 1, &prod));
    }

    #[test]
    fn single_operand_sum_costs_its_size() {
        assert_eq!(contraction_cost(&[4.0, 5.0], 1, &[vec![0, 1]]), 20.0);
        assert_eq!(contraction_cost(&[4.0, 5.0], 2, &[vec![1, 0]]), 0.0);
    }
}
