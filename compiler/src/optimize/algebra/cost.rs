//! The cost model for extraction: FLOPs under the bound sizes.
//!
//! A contraction node costs its best pairwise contraction order found by the path
//! search (`optimize::path`, opt_einsum's convention: a step costs the product of the
//! sizes of all its indices, twice that when it sums an index). Views cost nothing,
//! elementwise nodes one FLOP per output element per operation. Costs of contraction
//! specs are memoised here, paths also in the path search's own cache.

use super::lang::{SpecRef, TNode, EG};
use crate::optimize::path::{optimize_path, Method, Network, PathOptions};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

/// Time budget of one path search; the search sizes its (deterministic) work to it.
const PATH_BUDGET: Duration = Duration::from_millis(50);

/// What evaluating one node costs: FLOPs, and the elements of the largest array it
/// writes (its result or an intermediate of its contraction order), which breaks ties.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cost {
    pub flops: f64,
    pub mem: f64,
}

pub struct CostModel {
    /// Cost of each opaque statement, by statement index.
    opaque: Vec<f64>,
    memo: RefCell<HashMap<SpecRef, Cost>>,
}

impl CostModel {
    pub fn new(opaque: Vec<f64>) -> CostModel {
        CostModel { opaque, memo: RefCell::new(HashMap::new()) }
    }

    /// The cost of evaluating one node once its children are available.
    pub fn node_cost(&self, eg: &EG, node: &TNode) -> Cost {
        let numel = |id: egg::Id| eg.analysis.numel(&eg[id].data.shape);
        let free = Cost { flops: 0.0, mem: 0.0 };
        match node {
            TNode::Input(_) | TNode::Num(_) | TNode::Frac(..) | TNode::Split(..) | TNode::Merge(..) => free,
            TNode::Einsum(spec, _) => {
                if spec.is_view() {
                    return free;
                }
                if let Some(&c) = self.memo.borrow().get(spec) {
                    return c;
                }
                let sizes: Option<Vec<u64>> = spec.sizes.iter().map(|s| s.eval(&eg.analysis.bindings).ok()).collect();
                let out: f64 = spec.sizes.iter().take(spec.n_out).map(|s| eg.analysis.value(s)).product();
                let c = match sizes {
                    Some(sizes) => {
                        let (flops, largest) = contraction_cost(&sizes, spec.n_out, &spec.ops);
                        Cost { flops, mem: largest.max(out) }
                    }
                    // Sizes beyond 64 bits: nothing this large is evaluated anyway.
                    None => Cost { flops: f64::INFINITY, mem: f64::INFINITY },
                };
                self.memo.borrow_mut().insert(spec.clone(), c);
                c
            }
            TNode::Add(ids) => ids.first().map_or(free, |&i| Cost {
                flops: numel(i) * (ids.len().saturating_sub(1)) as f64,
                mem: numel(i),
            }),
            TNode::Recip([a]) => Cost { flops: numel(*a), mem: numel(*a) },
            TNode::Call(_, ids) => ids.first().map_or(free, |&i| Cost { flops: numel(i), mem: numel(i) }),
            TNode::Opaque(stmt, _) => Cost {
                flops: self.opaque.get(*stmt as usize).copied().unwrap_or(0.0),
                mem: eg.lookup(node.clone()).map_or(0.0, numel),
            },
        }
    }
}

/// FLOPs and largest intermediate (elements) of the best pairwise order for
/// `Σ Π ops` (labels index `sizes`, the first `n_out` are kept), by the path search.
/// Output labels no operand reads are broadcasts, free after the last step.
pub fn contraction_cost(sizes: &[u64], n_out: usize, ops: &[Vec<u32>]) -> (f64, f64) {
    let used = |l: u32| ops.iter().any(|o| o.contains(&l));
    let net = Network { inputs: ops.to_vec(), output: (0..n_out as u32).filter(|&l| used(l)).collect(), sizes: sizes.to_vec() };
    let opts = PathOptions { method: Method::Auto, time_budget: PATH_BUDGET, max_intermediate: None };
    match optimize_path(&net, &opts) {
        Ok(p) => (p.flops, p.largest_intermediate),
        // Never expected for a valid spec: charge every operand the whole domain.
        Err(_) => {
            let all = sizes.iter().map(|&s| s as f64).product::<f64>();
            (all * 2.0 * ops.len() as f64, all)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_chain_picks_the_cheap_order() {
        // A[i,j] B[j,k] v[k] with i=j=k=10: B·v first costs 2*100 + 2*100.
        assert_eq!(contraction_cost(&[10, 10, 10], 1, &[vec![0, 1], vec![1, 2], vec![2]]), (400.0, 10.0));
    }

    #[test]
    fn broadcast_outputs_and_single_operand_sums() {
        assert_eq!(contraction_cost(&[4, 5], 1, &[vec![0, 1]]).0, 20.0);
        // C[i, j] = A[i] * B[i]: j is a broadcast, the product costs 4.
        assert_eq!(contraction_cost(&[4, 5], 2, &[vec![0], vec![0]]).0, 4.0);
    }
}
