//! Exact dynamic programming over subsets of tensors.
//!
//! * [`full_dp`] tries every split of every subset (3^n work), so it also finds the
//!   rare optimum that uses an outer product; used for small networks.
//! * [`connected_dp`] searches the space of opt_einsum's `dp` (Pfeifer, Haegeman and
//!   Verstraete 2014): only subsets connected through summed labels are built, by
//!   merging two disjoint neighbouring subsets. Where opt_einsum re-runs a level-by-level
//!   sweep under a geometrically raised cost cap, this search is best-first: subsets
//!   become final in order of cost plus a lower bound on the step that will consume
//!   them, which visits only subsets up to the optimum's cost, once each.

use super::bits::{set_ones, Bits};
use super::join::{join_units, Unit};
use super::problem::BitProblem;
use super::tree::Tree;
use std::collections::{BinaryHeap, HashMap};
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
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x517C_C1B7_2722_0A95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let x = (v as u64) ^ ((v >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        self.0 ^= self.0 >> 32;
    }
}

pub(crate) type SetMap<V> = HashMap<u128, V, BuildHasherDefault<SetHasher>>;

/// Networks up to this many inputs are solved exactly over all contraction trees,
/// outer products included (3^n work).
pub const FULL_DP_MAX: usize = 8;

/// Exact optimum over all contraction trees (outer products included). Needs
/// `bp.n <= 16`. Returns the SSA path and its cost, or `None` when `limit` rules out
/// every tree.
pub(crate) fn full_dp<const W: usize>(
    bp: &BitProblem<W>,
    limit: Option<f64>,
) -> Option<(Vec<(u32, u32)>, f64)> {
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
    // NaN marks a subset no tree reaches within `limit`; costs themselves may be infinite.
    let mut cost = vec![f64::NAN; full + 1];
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
        // `best_a == 0` means no split yet; a split is taken even at infinite cost
        // (overflowing sizes), so that feasibility never depends on the cost's range.
        let (mut best, mut best_a) = (f64::INFINITY, 0usize);
        let mut sub = rest;
        loop {
            sub = sub.wrapping_sub(1) & rest;
            let a = low | sub;
            let b = s ^ a;
            let (ca, cb) = (cost[a], cost[b]);
            // Cheap cut before the size product: the parts alone already cost too much.
            if ca + cb < best || (best_a == 0 && split_ok(ca, cb)) {
                let u = labels[a].or(&labels[b]);
                let step = u.size(&bp.sizes) * if u == legs { 1.0 } else { 2.0 };
                let c = ca + cb + step;
                if c < best || best_a == 0 {
                    best = c;
                    best_a = a;
                }
            }
            if sub == 0 {
                break;
            }
        }
        if best_a != 0 {
            cost[s] = best;
            split[s] = best_a;
        }
    }
    if split[full] == 0 {
        return None;
    }
    let mut tree = Tree::new(n);
    let root = build_full(&mut tree, &split, full);
    Some((tree.to_ssa(root), cost[full]))
}

/// Both parts are reachable (`cost` holds NaN for unreachable subsets).
fn split_ok(ca: f64, cb: f64) -> bool {
    !ca.is_nan() && !cb.is_nan()
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
    /// The upper bound pruned every way to finish (it came from a path outside the
    /// search space); the search is redone without it.
    Starved,
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

/// A subset reached but not yet final: its best known split.
#[derive(Clone, Copy)]
struct Proposal<const W: usize> {
    f: f64,
    cost: f64,
    labels: Bits<W>,
    left: u32,
    right: u32,
    done: bool,
}

/// Heap item: least `f` first, ties by subset (so the order is deterministic).
#[derive(Clone, Copy, PartialEq)]
struct Item {
    f: f64,
    set: u128,
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.f.total_cmp(&self.f).then(o.set.cmp(&self.set))
    }
}

/// Most subsets reached per component before giving up (memory guard).
const MAX_PROPOSALS: usize = 1 << 23;

/// The optimum over trees that only contract operands sharing a summed label inside
/// each connected component (opt_einsum's `dp` search space); components are then
/// joined by [`full_dp`] or, when there are many, the best of two orders. `upper` is
/// the cost of a known path: it only prunes, and a search it starves (the path came
/// from outside this space) is redone without it. Returns the SSA path and whether the
/// joining step was exact.
pub(crate) fn connected_dp<const W: usize>(
    bp: &BitProblem<W>,
    limit: Option<f64>,
    upper: f64,
    budget: Budget,
    work_done: &mut u64,
) -> Result<(Vec<(u32, u32)>, bool), Stop> {
    let mut tree = Tree::new(bp.n);
    let mut units: Vec<Unit> = Vec::new();
    for comp in components(bp) {
        let node = if comp.count_ones() == 1 {
            comp.trailing_zeros()
        } else {
            match solve_component(bp, comp, limit, upper, budget, work_done, &mut tree) {
                Err(Stop::Starved) => {
                    solve_component(bp, comp, limit, f64::INFINITY, budget, work_done, &mut tree)?
                }
                other => other?,
            }
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

/// Best-first search over the connected subsets of one component (Knuth's
/// generalisation of Dijkstra's algorithm, with an A* bound): subsets become final in
/// order of `f = cost + h`, where `h` bounds the cost of the step that will consume the
/// subset (its open labels' size, doubled when that step must sum a label). Costs only
/// grow along merges and `h` is consistent, so a subset's first pop carries its optimal
/// cost and the component's first pop ends the search; only subsets with `f` up to the
/// optimum are ever made final. Each final subset is merged with every final,
/// disjoint, neighbouring subset, found through per-tensor lists of final subsets.
fn solve_component<const W: usize>(
    bp: &BitProblem<W>,
    comp: u128,
    limit: Option<f64>,
    upper: f64,
    budget: Budget,
    work_done: &mut u64,
    tree: &mut Tree,
) -> Result<u32, Stop> {
    let sizes = &bp.sizes;
    // The bound is only valid when no size is zero (a zero-sized partner makes the
    // consuming step free).
    let use_bound = sizes.iter().all(|&s| s >= 1.0);
    // Summed labels held by exactly two tensors: a step that merges across one of
    // them always sums it, so it costs double.
    let mut pair_labels = Bits::<W>::EMPTY;
    for (l, &m) in bp.inc.iter().enumerate() {
        if m.count_ones() == 2 && !bp.out.contains(l) {
            pair_labels.insert(l);
        }
    }
    let h = |set: u128, legs: &Bits<W>, legs_size: f64| -> f64 {
        if !use_bound || set == comp {
            0.0
        } else if legs.and_not(&bp.out).and_not(&pair_labels) == Bits::EMPTY {
            2.0 * legs_size
        } else {
            legs_size
        }
    };
    let mut finals: Vec<Entry<W>> = Vec::new();
    let mut props: Vec<Proposal<W>> = Vec::new();
    let mut index: SetMap<u32> = SetMap::default();
    let mut heap: BinaryHeap<Item> = BinaryHeap::new();
    // by_tensor[t]: the final subsets containing t with their `f`, in the order they
    // became final (so by nondecreasing `f`), with their sets inline so that the scan
    // for partners reads memory in order.
    let mut by_tensor: Vec<Vec<(u128, u32, f64)>> = vec![Vec::new(); bp.n];
    for t in set_ones(comp) {
        let set = 1u128 << t;
        index.insert(set, props.len() as u32);
        props.push(Proposal {
            f: 0.0,
            cost: 0.0,
            labels: bp.labels[t],
            left: u32::MAX,
            right: u32::MAX,
            done: false,
        });
        heap.push(Item { f: 0.0, set });
    }
    let mut starved = false;
    let mut scans: u64 = 0;
    while let Some(Item { f, set }) = heap.pop() {
        let Some(&pid) = index.get(&set) else {
            continue;
        };
        let p = props[pid as usize];
        if p.done || f > p.f {
            continue;
        }
        props[pid as usize].done = true;
        let fid = finals.len() as u32;
        let mut nbr = 0u128;
        for t in set_ones(set) {
            nbr |= bp.adj[t];
        }
        let e1 = Entry {
            set,
            nbr: nbr & !set,
            labels: p.labels,
            cost: p.cost,
            left: p.left,
            right: p.right,
        };
        finals.push(e1);
        if set == comp {
            return Ok(build_entries(tree, &finals, fid));
        }
        let mut nb = e1.nbr;
        while nb != 0 {
            let t = nb.trailing_zeros() as usize;
            nb &= nb - 1;
            let below = (1u128 << t) - 1;
            for &(set2, id2, f2) in &by_tensor[t] {
                scans += 1;
                if scans & 0x3FF == 0 && (*work_done + scans / 4 > budget.work || budget.expired())
                {
                    return Err(Stop::Budget);
                }
                // Merging with `set2` gives f >= cost(set) + f(set2) (the merge costs at
                // least the bound of `set2`'s consuming step), and later entries have
                // larger `f`: nothing further in this list can stay within `upper`.
                if e1.cost + f2 > upper {
                    starved = true;
                    break;
                }
                // Disjoint, and `t` is the first neighbour of `set` inside `set2`, so
                // that each pair is met once.
                if set2 & set != 0 || set2 & e1.nbr & below != 0 {
                    continue;
                }
                // One unit per evaluated pair, a quarter per scanned entry.
                *work_done += 1;
                if *work_done + scans / 4 > budget.work {
                    return Err(Stop::Budget);
                }
                let r = set | set2;
                let existing = index.get(&r).copied();
                if existing.is_some_and(|q| props[q as usize].done) {
                    continue;
                }
                let e2 = finals[id2 as usize];
                let (legs, step) = bp.step(r, &e1.labels, &e2.labels);
                let c = e1.cost + e2.cost + step;
                if existing.is_some_and(|q| props[q as usize].cost <= c) {
                    continue;
                }
                let legs_size = legs.size(sizes);
                if limit.is_some_and(|lim| legs_size > lim) {
                    continue;
                }
                let fr = c + h(r, &legs, legs_size);
                if fr > upper {
                    starved = true;
                    continue;
                }
                let prop = Proposal {
                    f: fr,
                    cost: c,
                    labels: legs,
                    left: fid,
                    right: id2,
                    done: false,
                };
                match existing {
                    Some(q) => props[q as usize] = prop,
                    None => {
                        if props.len() >= MAX_PROPOSALS {
                            return Err(Stop::Budget);
                        }
                        index.insert(r, props.len() as u32);
                        props.push(prop);
                    }
                }
                heap.push(Item { f: fr, set: r });
            }
        }
        for t in set_ones(set) {
            by_tensor[t].push((set, fid, f));
        }
    }
    Err(if starved {
        Stop::Starved
    } else {
        Stop::Infeasible
    })
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
