//! Exact dynamic programming over subsets of tensors.
//!
//! * [`full_dp`] tries every split of every subset (3^n work), so it also finds the
//!   rare optimum that uses an outer product; used for small networks.
//! * [`connected_dp`] is the algorithm of opt_einsum's `dp` (Pfeifer, Haegeman and
//!   Verstraete 2014; Xiao et al.): only subsets that are connected through summed
//!   labels are built, by merging two disjoint neighbouring subsets, level by level in
//!   the number of tensors; a cost cap, raised geometrically, discards every subset
//!   whose cost (plus a lower bound on the step that will consume it) exceeds the cap,
//!   so the first cap under which the whole component is built gives the optimum.
//!   Candidate partners of a subset are found through per-tensor buckets of its
//!   neighbours instead of scanning all pairs of the two levels.

use super::bits::{set_ones, Bits};
use super::problem::BitProblem;
use super::join::{join_units, Unit};
use super::tree::Tree;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

/// A cheap deterministic hasher for `u128` subset keys.
#[derive(Default)]
pub(crate) struct SetHasher(u64);

impl Hasher for SetHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7CC1_B727_220A_95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let x = (v as u64) ^ ((v >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        self.0 ^= self.0 >> 32;
    }
}

pub(crate) type SetMap<V> = HashMap<u128, V, BuildHasherDefault<SetHasher>>;

/// Networks up to this many tensors are solved by [`full_dp`].
pub const FULL_DP_MAX: usize = 10;

/// Exact optimum over all contraction trees (outer products included). Needs
/// `bp.n <= 16`. Returns the SSA path and its cost, or `None` when `limit` rules out
/// every tree.
pub(crate) fn full_dp<const W: usize>(bp: &BitProblem<W>, limit: Option<f64>) -> Option<(Vec<(u32, u32)>, f64)> {
    let n = bp.n;
    if n <= 1 {
        return Some((Vec::new(), 0.0));
    }
    if n > 16 {
        return None;
    }
    let full = (1usize << n) - 1;
    // The labels an operand covering `s` has: the input's own labels for single
    // tensors (some may be summed by its first step), the open legs otherwise.
    let mut labels = vec![Bits::<W>::EMPTY; full + 1];
    let mut cost = vec![f64::INFINITY; full + 1];
    let mut split = vec![0usize; full + 1];
    for t in 0..n {
        labels[1 << t] = bp.labels[t];
        cost[1 << t] = 0.0;
    }
    for s in 1..=full {
        if s & (s - 1) == 0 {
            continue;
        }
        let legs = bp.legs_of(s as u128);
        labels[s] = legs;
        if let Some(lim) = limit {
            if legs.size(&bp.sizes) > lim {
                continue;
            }
        }
        let low = s & s.wrapping_neg();
        let rest = s ^ low;
        let (mut best, mut best_a) = (f64::INFINITY, 0usize);
        let mut sub = rest;
        loop {
            sub = sub.wrapping_sub(1) & rest;
            let a = low | sub;
            let b = s ^ a;
            let (ca, cb) = (cost[a], cost[b]);
            if ca.is_finite() && cb.is_finite() {
                let u = labels[a].or(&labels[b]);
                let step = u.size(&bp.sizes) * if u == legs { 1.0 } else { 2.0 };
                let c = ca + cb + step;
                if c < best {
                    best = c;
                    best_a = a;
                }
            }
            if sub == 0 {
                break;
            }
        }
        cost[s] = best;
        split[s] = best_a;
    }
    if !cost[full].is_finite() {
        return None;
    }
    let mut tree = Tree::new(n);
    let root = build_full(&mut tree, &split, full);
    Some((tree.to_ssa(root), cost[full]))
}

fn build_full(tree: &mut Tree, split: &[usize], s: usize) -> u32 {
    if s & (s - 1) == 0 {
        return s.trailing_zeros();
    }
    let a = split[s];
    let l = build_full(tree, split, a);
    let r = build_full(tree, split, s ^ a);
    tree.push(l, r)
}

/// Why a bounded search stopped without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The memory limit rules out every tree in the search space.
    Infeasible,
    /// The work limit or the deadline was reached.
    Budget,
}

/// Limits on a search: a count of evaluated candidates (deterministic) and a wall-clock
/// deadline (a safety net).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub(crate) work: u64,
    pub(crate) deadline: Option<Instant>,
}

impl Budget {
    pub(crate) fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

#[derive(Clone, Copy)]
struct Entry<const W: usize> {
    set: u128,
    /// Tensors outside `set` sharing a summed label with it.
    nbr: u128,
    labels: Bits<W>,
    cost: f64,
    left: u32,
    right: u32,
}

/// Most subsets kept per component before giving up (memory guard).
const MAX_ENTRIES: usize = 1 << 22;

/// Factor by which the cost cap grows between passes.
const CAP_FACTOR: f64 = 4.0;

/// The optimum over trees that only contract operands sharing a summed label inside
/// each connected component (opt_einsum's `dp` search space); components are then
/// joined by [`full_dp`] or, when there are many, the best of two orders. Returns the
/// SSA path and whether the joining step was exact.
pub(crate) fn connected_dp<const W: usize>(
    bp: &BitProblem<W>,
    limit: Option<f64>,
    budget: Budget,
    work_done: &mut u64,
) -> Result<(Vec<(u32, u32)>, bool), Stop> {
    let mut tree = Tree::new(bp.n);
    let mut units: Vec<Unit> = Vec::new();
    for comp in components(bp) {
        let node = if comp.count_ones() == 1 {
            comp.trailing_zeros()
        } else {
            solve_component(bp, comp, limit, budget, work_done, &mut tree)?
        };
        units.push(Unit { node, set: comp });
    }
    let (root, exact) = join_units(bp, &mut tree, &units, limit).ok_or(Stop::Infeasible)?;
    Ok((tree.to_ssa(root), exact))
}

/// Connected components of the tensors under "shares a summed label".
pub(crate) fn components<const W: usize>(bp: &BitProblem<W>) -> Vec<u128> {
    let mut seen = 0u128;
    let mut comps = Vec::new();
    for t in 0..bp.n {
        if seen >> t & 1 == 1 {
            continue;
        }
        let mut comp = 1u128 << t;
        let mut frontier = comp;
        while frontier != 0 {
            let mut next = 0u128;
            for u in set_ones(frontier) {
                next |= bp.adj[u];
            }
            frontier = next & !comp;
            comp |= next;
        }
        seen |= comp;
        comps.push(comp);
    }
    comps
}

fn solve_component<const W: usize>(
    bp: &BitProblem<W>,
    comp: u128,
    limit: Option<f64>,
    budget: Budget,
    work_done: &mut u64,
    tree: &mut Tree,
) -> Result<u32, Stop> {
    let k = comp.count_ones() as usize;
    let sizes = &bp.sizes;
    // The lower bound on the consuming step is only valid when no size is zero (a
    // zero-sized sibling makes that step free).
    let use_bound = sizes.iter().all(|&s| s >= 1.0);
    let mut entries: Vec<Entry<W>> = Vec::new();
    let mut map: SetMap<u32> = SetMap::default();
    let mut levels: Vec<Vec<u32>> = vec![Vec::new(); k + 1];
    // buckets[m][t]: the size-m subsets containing tensor t.
    let mut buckets: Vec<Vec<Vec<u32>>> = vec![vec![Vec::new(); bp.n]; k + 1];
    let mut cap: f64 = 0.0;
    for t in set_ones(comp) {
        let id = entries.len() as u32;
        entries.push(Entry {
            set: 1u128 << t,
            nbr: bp.adj[t] & !(1u128 << t),
            labels: bp.labels[t],
            cost: 0.0,
            left: u32::MAX,
            right: u32::MAX,
        });
        map.insert(1u128 << t, id);
        levels[1].push(id);
        buckets[1][t].push(id);
        // Every tensor takes part in a step costing at least its own size.
        cap = cap.max(bp.labels[t].size(sizes));
    }
    loop {
        let mut min_rejected = f64::INFINITY;
        for size in 2..=k {
            for m in 1..=size / 2 {
                let m2 = size - m;
                let mut i1 = 0;
                while i1 < levels[m].len() {
                    let e1 = entries[levels[m][i1] as usize];
                    let id1 = levels[m][i1];
                    i1 += 1;
                    let mut nb = e1.nbr;
                    while nb != 0 {
                        let t = nb.trailing_zeros() as usize;
                        nb &= nb - 1;
                        let below = (1u128 << t) - 1;
                        let mut j = 0;
                        while j < buckets[m2][t].len() {
                            let id2 = buckets[m2][t][j];
                            j += 1;
                            let e2 = entries[id2 as usize];
                            if e2.set & e1.set != 0 || e2.set & e1.nbr & below != 0 {
                                continue;
                            }
                            if m == m2 && e1.set > e2.set {
                                continue;
                            }
                            *work_done += 1;
                            if *work_done > budget.work || (*work_done & 0xFFF == 0 && budget.expired()) {
                                return Err(Stop::Budget);
                            }
                            let s = e1.set | e2.set;
                            let (legs, step) = bp.step(s, &e1.labels, &e2.labels);
                            let c = e1.cost + e2.cost + step;
                            if c > cap {
                                min_rejected = min_rejected.min(c);
                                continue;
                            }
                            if let Some(&id) = map.get(&s) {
                                // The subset already exists: its labels and size are known.
                                let e = &mut entries[id as usize];
                                if c < e.cost {
                                    e.cost = c;
                                    e.left = id1;
                                    e.right = id2;
                                }
                                continue;
                            }
                            let legs_size = legs.size(sizes);
                            if limit.is_some_and(|lim| legs_size > lim) {
                                continue;
                            }
                            let h = if use_bound && s != comp { legs_size } else { 0.0 };
                            if c + h > cap {
                                min_rejected = min_rejected.min(c + h);
                                continue;
                            }
                            if entries.len() >= MAX_ENTRIES {
                                return Err(Stop::Budget);
                            }
                            let id = entries.len() as u32;
                            entries.push(Entry {
                                set: s,
                                nbr: (e1.nbr | e2.nbr) & !s,
                                labels: legs,
                                cost: c,
                                left: id1,
                                right: id2,
                            });
                            map.insert(s, id);
                            levels[size].push(id);
                            for u in set_ones(s) {
                                buckets[size][u].push(id);
                            }
                        }
                    }
                }
            }
        }
        if let Some(&id) = map.get(&comp) {
            return Ok(build_entries(tree, &entries, id));
        }
        if !min_rejected.is_finite() {
            return Err(Stop::Infeasible);
        }
        cap = (cap * CAP_FACTOR).max(min_rejected);
    }
}

fn build_entries<const W: usize>(tree: &mut Tree, entries: &[Entry<W>], id: u32) -> u32 {
    let e = entries[id as usize];
    if e.left == u32::MAX {
        return e.set.trailing_zeros();
    }
    let l = build_entries(tree, entries, e.left);
    let r = build_entries(tree, entries, e.right);
    tree.push(l, r)
}
