//! Subtree reconfiguration (the local search of cotengra's `subtree_reconfigure`): take
//! a node of a contraction tree, expand its subtree down to a frontier of at most
//! `subtree` operands (always opening the most expensive step), and replace the steps
//! between the frontier and the node by the exact optimum over that frontier. The
//! node's labels depend only on which inputs it covers, so the rest of the tree is
//! unaffected and the total cost can only fall.

use super::bits::with_width;
use super::dp::{full_dp, Budget};
use super::problem::{BitProblem, Problem, Ssa};
use super::tree::Tree;

/// Default frontier size of each local problem (3^8 / 2 splits: cheap).
pub(crate) const SUBTREE: usize = 8;

/// Passes over the tree; stops earlier when a pass improves nothing.
const MAX_PASSES: usize = 6;

type Legs = Vec<(u32, u32)>;

struct State<'p> {
    p: &'p Problem,
    /// Occurrences of each label in inputs, plus one if it is in the output.
    total: Vec<u32>,
    n: usize,
    kids: Vec<(u32, u32)>,
    /// Labels of every node with their occurrence count inside its subtree.
    legs: Vec<Legs>,
    cost: Vec<f64>,
}

impl State<'_> {
    fn is_leaf(&self, v: u32) -> bool {
        (v as usize) < self.n
    }

    fn kids_of(&self, v: u32) -> (u32, u32) {
        self.kids[v as usize - self.n]
    }

    /// Merges two children's labels; returns the parent's labels and the step's cost.
    fn merge(&self, a: &Legs, b: &Legs) -> (Legs, f64) {
        let sizes = &self.p.sizes;
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        let (mut all, mut summed) = (1.0, false);
        while i < a.len() || j < b.len() {
            let (l, c) = if j >= b.len() || (i < a.len() && a[i].0 < b[j].0) {
                i += 1;
                a[i - 1]
            } else if i >= a.len() || b[j].0 < a[i].0 {
                j += 1;
                b[j - 1]
            } else {
                i += 1;
                j += 1;
                (a[i - 1].0, a[i - 1].1 + b[j - 1].1)
            };
            all = super::problem::mul(all, sizes[l as usize]);
            if c < self.total[l as usize] {
                out.push((l, c));
            } else {
                summed = true;
            }
        }
        (out, if summed { 2.0 * all } else { all })
    }

    fn refresh(&mut self, v: u32) {
        let (a, b) = self.kids_of(v);
        let (legs, cost) = self.merge(&self.legs[a as usize], &self.legs[b as usize]);
        self.legs[v as usize] = legs;
        self.cost[v as usize] = cost;
    }
}

/// Improves the tree of `ssa` (a complete path). Returns the new path, its cost and
/// whether the deadline cut the passes short; `None` for a malformed path.
pub(crate) fn reconfigure(
    p: &Problem,
    ssa: &[(u32, u32)],
    limit: Option<f64>,
    budget: Budget,
    subtree: usize,
) -> Option<(Ssa, f64, bool)> {
    let n = p.n();
    if n < 3 || ssa.len() + 1 != n {
        return None;
    }
    let mut total = vec![0u32; p.nlabels()];
    for inp in &p.inputs {
        for &l in inp {
            total[l as usize] += 1;
        }
    }
    for &l in &p.output {
        total[l as usize] += 1;
    }
    let mut st = State {
        p,
        total,
        n,
        kids: ssa.to_vec(),
        legs: p
            .inputs
            .iter()
            .map(|v| v.iter().map(|&l| (l, 1)).collect())
            .collect(),
        cost: vec![0.0; 2 * n - 1],
    };
    st.legs.resize(2 * n - 1, Vec::new());
    for (k, &(a, b)) in ssa.iter().enumerate() {
        if a as usize >= n + k || b as usize >= n + k {
            return None;
        }
        st.refresh((n + k) as u32);
    }
    let root = (2 * n - 2) as u32;
    let mut cut = false;
    'passes: for _ in 0..MAX_PASSES {
        let mut order: Vec<u32> = (n as u32..=root).collect();
        order.sort_by(|&x, &y| {
            st.cost[y as usize]
                .total_cmp(&st.cost[x as usize])
                .then(x.cmp(&y))
        });
        let mut improved = false;
        for v in order {
            if budget.expired() {
                cut = true;
                break 'passes;
            }
            improved |= improve_at(&mut st, v, limit, subtree);
        }
        if !improved {
            break;
        }
    }
    let tree = Tree::from_ssa(n, &st.kids);
    let out = tree.to_ssa(root);
    let cost = p.ssa_cost(&out, limit)?.0;
    Some((out, cost, cut))
}

/// Re-optimises the steps under `v` down to a frontier; true when the cost fell.
fn improve_at(st: &mut State<'_>, v: u32, limit: Option<f64>, subtree: usize) -> bool {
    let mut frontier: Vec<u32> = {
        let (a, b) = st.kids_of(v);
        vec![a, b]
    };
    let mut inner: Vec<u32> = vec![v];
    while frontier.len() < subtree.clamp(3, 16) {
        let pick = frontier
            .iter()
            .enumerate()
            .filter(|(_, &u)| !st.is_leaf(u))
            .max_by(|(_, &x), (_, &y)| {
                st.cost[x as usize]
                    .total_cmp(&st.cost[y as usize])
                    .then(y.cmp(&x))
            })
            .map(|(i, _)| i);
        let Some(i) = pick else { break };
        let u = frontier.swap_remove(i);
        let (a, b) = st.kids_of(u);
        frontier.push(a);
        frontier.push(b);
        inner.push(u);
    }
    if frontier.len() < 3 {
        return false;
    }
    let old: f64 = inner.iter().map(|&u| st.cost[u as usize]).sum();
    let labels: Vec<Vec<u32>> = frontier
        .iter()
        .map(|&u| st.legs[u as usize].iter().map(|x| x.0).collect())
        .collect();
    let out: Vec<u32> = st.legs[v as usize].iter().map(|x| x.0).collect();
    let refs: Vec<&[u32]> = labels.iter().map(|v| v.as_slice()).collect();
    let sub = Problem::from_parts(&refs, &out, &st.p.sizes);
    let Some(Some((ssa, new))) = with_width!(sub.nlabels(), solve_small(&sub, limit)) else {
        return false;
    };
    let improved = new < old * (1.0 - 1e-12);
    if !improved {
        return false;
    }
    // Rebuild: step k of the local path reuses one of the freed internal nodes, the
    // last step reuses `v` itself so that its parent still points at it.
    let mut free: Vec<u32> = inner.iter().copied().filter(|&u| u != v).collect();
    free.push(v);
    let mut ids: Vec<u32> = frontier.clone();
    for (k, &(a, b)) in ssa.iter().enumerate() {
        let node = free[k];
        st.kids[node as usize - st.n] = (ids[a as usize], ids[b as usize]);
        st.refresh(node);
        ids.push(node);
    }
    true
}

fn solve_small<const W: usize>(
    sub: &Problem,
    limit: Option<f64>,
) -> Option<(Vec<(u32, u32)>, f64)> {
    full_dp(&BitProblem::<W>::new(sub), limit)
}
