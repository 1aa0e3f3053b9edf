//! Branch-and-bound over pairwise contractions (opt_einsum's `branch` family).
//!
//! Depth-first: at each state the candidate pairs are the operands sharing a summed
//! label (all pairs when none do), tried in the order of the greedy heuristic; a branch
//! is cut as soon as its cost reaches the best complete path so far, and states (the
//! partition of the inputs into current operands) already reached at no greater cost
//! are not explored again. Without a branching limit and within budget the search is
//! exhaustive over its space.

use super::bits::Bits;
use super::dp::{Budget, SetHasher};
use super::problem::{BitProblem, Found};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// Most states remembered (memory guard); later states are explored unremembered.
const MAX_MEMO: usize = 1 << 20;

type Memo = HashMap<Box<[u128]>, f64, BuildHasherDefault<SetHasher>>;

struct Search<'a, const W: usize> {
    bp: &'a BitProblem<W>,
    limit: Option<f64>,
    nbranch: Option<usize>,
    budget: Budget,
    work: u64,
    stopped: bool,
    best: f64,
    best_path: Option<Vec<(u32, u32)>>,
    memo: Memo,
}

#[derive(Clone, Copy)]
struct Op<const W: usize> {
    set: u128,
    labels: Bits<W>,
    id: u32,
}

/// Returns the best path found that is cheaper than `bound` (if any) and whether the
/// search was exhaustive.
pub(crate) fn branch_bound<const W: usize>(
    bp: &BitProblem<W>,
    limit: Option<f64>,
    nbranch: Option<usize>,
    bound: f64,
    budget: Budget,
) -> (Option<Found>, bool) {
    let mut s = Search {
        bp,
        limit,
        nbranch,
        budget,
        work: 0,
        stopped: false,
        best: bound,
        best_path: None,
        memo: Memo::default(),
    };
    let ops: Vec<Op<W>> = (0..bp.n)
        .map(|t| Op {
            set: 1u128 << t,
            labels: bp.labels[t],
            id: t as u32,
        })
        .collect();
    let mut path = Vec::with_capacity(bp.n);
    s.dfs(ops, &mut path, 0.0, bp.n as u32);
    let complete = !s.stopped && nbranch.is_none();
    (s.best_path.map(|p| (p, s.best)), complete)
}

impl<const W: usize> Search<'_, W> {
    fn dfs(&mut self, ops: Vec<Op<W>>, path: &mut Vec<(u32, u32)>, flops: f64, next_id: u32) {
        if ops.len() <= 1 {
            if flops < self.best {
                self.best = flops;
                self.best_path = Some(path.clone());
            }
            return;
        }
        self.work += 1;
        if self.work > self.budget.work || (self.work & 0x3FF == 0 && self.budget.expired()) {
            self.stopped = true;
        }
        if self.stopped {
            return;
        }
        let bp = self.bp;
        let summed = |o: &Op<W>| o.labels.and_not(&bp.out);
        let mut connected = false;
        'outer: for i in 0..ops.len() {
            for j in i + 1..ops.len() {
                if summed(&ops[i]).intersects(&ops[j].labels) {
                    connected = true;
                    break 'outer;
                }
            }
        }
        // (heuristic, new cost, i, j, result labels)
        let mut cands: Vec<(f64, f64, usize, usize, Bits<W>)> = Vec::new();
        for i in 0..ops.len() {
            for j in i + 1..ops.len() {
                if connected && !summed(&ops[i]).intersects(&ops[j].labels) {
                    continue;
                }
                let s = ops[i].set | ops[j].set;
                let (legs, step) = bp.step(s, &ops[i].labels, &ops[j].labels);
                let new_flops = flops + step;
                if new_flops >= self.best {
                    continue;
                }
                let size = legs.size(&bp.sizes);
                if self.limit.is_some_and(|lim| size > lim) {
                    continue;
                }
                let h = size - ops[i].labels.size(&bp.sizes) - ops[j].labels.size(&bp.sizes);
                cands.push((h, new_flops, i, j, legs));
            }
        }
        cands.sort_by(|x, y| {
            x.0.total_cmp(&y.0)
                .then(x.1.total_cmp(&y.1))
                .then((x.2, x.3).cmp(&(y.2, y.3)))
        });
        if let Some(nb) = self.nbranch {
            cands.truncate(nb.max(1));
        }
        for (_, new_flops, i, j, legs) in cands {
            if new_flops >= self.best || self.stopped {
                continue;
            }
            let mut next: Vec<Op<W>> = Vec::with_capacity(ops.len() - 1);
            next.extend(
                ops.iter()
                    .enumerate()
                    .filter(|&(k, _)| k != i && k != j)
                    .map(|(_, o)| *o),
            );
            next.push(Op {
                set: ops[i].set | ops[j].set,
                labels: legs,
                id: next_id,
            });
            let mut key: Vec<u128> = next.iter().map(|o| o.set).collect();
            key.sort_unstable();
            let key = key.into_boxed_slice();
            match self.memo.get_mut(&key) {
                Some(seen) if *seen <= new_flops => continue,
                Some(seen) => *seen = new_flops,
                None => {
                    if self.memo.len() < MAX_MEMO {
                        self.memo.insert(key, new_flops);
                    }
                }
            }
            let (a, b) = (ops[i].id, ops[j].id);
            path.push((a.min(b), a.max(b)));
            self.dfs(next, path, new_flops, next_id + 1);
            path.pop();
        }
    }
}
