//! DAG extraction: picks one node per needed e-class so that the total cost, counting
//! every class once however many nodes read it, is low.
//!
//! First a greedy fixpoint where each class's cost is the cost of its whole sub-DAG
//! (a map from class to local cost, so shared classes count once). Ties in FLOPs go to
//! the smaller largest array, then to the node whose sub-DAG has more classes, since a
//! finer decomposition exposes more sharing.
//! Large e-graphs, where those maps would grow quadratically on long chains, use tree
//! costs instead. Then a bounded local search switches single classes to other nodes
//! while the total cost of the roots' DAG drops.

use super::cost::{Cost, CostModel};
use super::lang::{TNode, EG};
use egg::{Id, Language};
use std::collections::BTreeMap;
use std::rc::Rc;

/// The chosen node of every class reachable from the roots, and the total cost.
pub struct Extraction {
    pub choice: BTreeMap<Id, TNode>,
    /// The chosen classes, each after the classes it reads.
    pub order: Vec<Id>,
    pub cost: f64,
}

const MAX_PASSES: usize = 64;
/// Work budget of the local search: evaluations times the size of the DAG.
const SEARCH_WORK: usize = 4_000_000;
/// Above this many classes the sub-DAG sets get too expensive (a long chain makes them
/// quadratic); a tree-cost choice is used instead.
const MAX_SET_CLASSES: usize = 3_000;

/// The e-graph with classes numbered densely.
struct Dense {
    ids: Vec<Id>,
    /// Per class, per node: local cost and children (dense).
    nodes: Vec<Vec<(Cost, Vec<usize>)>>,
}

impl Dense {
    fn new(eg: &EG, cm: &CostModel) -> Dense {
        let mut ids: Vec<Id> = eg.classes().map(|c| c.id).collect();
        ids.sort();
        let max = ids.iter().map(|&i| usize::from(i)).max().unwrap_or(0);
        let mut at = vec![usize::MAX; max + 1];
        for (k, &i) in ids.iter().enumerate() {
            at[usize::from(i)] = k;
        }
        let nodes = ids
            .iter()
            .map(|&c| {
                eg[c]
                    .nodes
                    .iter()
                    .map(|n| {
                        let kids = n.children().iter().map(|&ch| at.get(usize::from(eg.find(ch))).copied().unwrap_or(usize::MAX));
                        (cm.node_cost(eg, n), kids.collect())
                    })
                    .collect()
            })
            .collect();
        Dense { ids, nodes }
    }

    fn index(&self, id: Id) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }
}

/// Sorted (class, local cost) pairs: a sub-DAG.
type Set = Rc<Vec<(usize, Cost)>>;

struct Best {
    node: usize,
    total: f64,
    /// The largest array of the sub-DAG.
    peak: f64,
    set: Set,
}

fn union(a: &[(usize, Cost)], b: &[(usize, Cost)]) -> Vec<(usize, Cost)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Lexicographic: FLOPs, then the largest array, each up to rounding.
fn lower(a: (f64, f64), b: (f64, f64)) -> Option<bool> {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
    if !close(a.0, b.0) {
        Some(a.0 < b.0)
    } else if !close(a.1, b.1) {
        Some(a.1 < b.1)
    } else {
        None
    }
}

fn better(total: f64, peak: f64, len: usize, than: &Best) -> bool {
    lower((total, peak), (than.total, than.peak)).unwrap_or(len > than.set.len())
}

pub fn extract(eg: &EG, roots: &[Id], cm: &CostModel) -> Result<Extraction, String> {
    let d = Dense::new(eg, cm);
    let mut choice = if d.ids.len() <= MAX_SET_CLASSES { greedy_dag(&d) } else { tree_costs(&d) };
    let roots: Vec<usize> =
        roots.iter().map(|&r| d.index(eg.find(r))).collect::<Option<_>>().ok_or("a root is not a class")?;
    let mut cost = dag_cost(&d, &roots, &choice).ok_or("no acyclic choice covers the roots")?;

    // Local search over the classes of the current DAG.
    let mut evals = 0;
    'rounds: for _ in 0..4 {
        let mut improved = false;
        let mut reach = reachable(&d, &roots, &choice).unwrap_or_default();
        let max_evals = SEARCH_WORK / reach.len().max(1);
        reach.sort();
        for c in reach {
            let Some(current) = choice[c] else { continue };
            for k in 0..d.nodes[c].len() {
                if k == current || !d.nodes[c][k].1.iter().all(|&ch| choice.get(ch).is_some_and(|x| x.is_some())) {
                    continue;
                }
                evals += 1;
                if evals > max_evals {
                    break 'rounds;
                }
                choice[c] = Some(k);
                match dag_cost(&d, &roots, &choice) {
                    Some(t) if lower(t, cost) == Some(true) => {
                        cost = t;
                        improved = true;
                        break;
                    }
                    _ => choice[c] = Some(current),
                }
            }
        }
        if !improved {
            break;
        }
    }
    let reach = reachable(&d, &roots, &choice).ok_or("the chosen nodes form a cycle")?;
    let mut out = BTreeMap::new();
    let mut order = Vec::with_capacity(reach.len());
    for &c in &reach {
        let k = choice[c].ok_or("a reachable class without a choice")?;
        out.insert(d.ids[c], eg[d.ids[c]].nodes[k].clone());
        order.push(d.ids[c]);
    }
    Ok(Extraction { choice: out, order, cost: cost.0 })
}

/// The greedy fixpoint over sub-DAG sets (see the module docs).
fn greedy_dag(d: &Dense) -> Vec<Option<usize>> {
    let mut best: Vec<Option<Best>> = (0..d.ids.len()).map(|_| None).collect();
    for _ in 0..MAX_PASSES {
        let mut changed = false;
        for c in 0..d.ids.len() {
            for (k, (own, kids)) in d.nodes[c].iter().enumerate() {
                let mut set: Vec<(usize, Cost)> = Vec::new();
                let mut ok = true;
                for &ch in kids {
                    match best.get(ch).and_then(|b| b.as_ref()) {
                        Some(b) => set = union(&set, &b.set),
                        None => {
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok || set.binary_search_by(|p| p.0.cmp(&c)).is_ok() {
                    continue;
                }
                set = union(&set, &[(c, *own)]);
                let total: f64 = set.iter().map(|p| p.1.flops).sum();
                let peak = set.iter().map(|p| p.1.mem).fold(0.0, f64::max);
                let replace = match &best[c] {
                    None => true,
                    Some(b) if b.node == k => lower((total, peak), (b.total, b.peak)).is_some() || b.set.len() != set.len(),
                    Some(b) => better(total, peak, set.len(), b),
                };
                if replace {
                    best[c] = Some(Best { node: k, total, peak, set: Rc::new(set) });
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    best.iter().map(|b| b.as_ref().map(|b| b.node)).collect()
}

/// The node minimising the cost of its tree (shared terms counted per use), for large
/// e-graphs. Every node adds a little so that a cycle can never be cheapest.
fn tree_costs(d: &Dense) -> Vec<Option<usize>> {
    let mut best: Vec<Option<(usize, f64)>> = vec![None; d.ids.len()];
    for _ in 0..MAX_PASSES {
        let mut changed = false;
        for c in 0..d.ids.len() {
            for (k, (own, kids)) in d.nodes[c].iter().enumerate() {
                let below: Option<f64> = kids.iter().map(|&ch| best.get(ch).copied().flatten().map(|b| b.1)).sum();
                let Some(below) = below else { continue };
                let total = below + own.flops + 1e-6;
                if best[c].is_none_or(|b| total < b.1 - 1e-9 * b.1.abs()) {
                    best[c] = Some((k, total));
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    best.iter().map(|b| b.map(|b| b.0)).collect()
}

/// Classes reachable from the roots through chosen nodes, each after its children, or
/// `None` on a cycle or a class without a choice.
fn reachable(d: &Dense, roots: &[usize], choice: &[Option<usize>]) -> Option<Vec<usize>> {
    // 0: unseen, 1: on the stack, 2: done.
    let mut state = vec![0u8; d.ids.len()];
    let mut order = Vec::new();
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for &r in roots {
        if state[r] == 2 {
            continue;
        }
        stack.push((r, 0));
        state[r] = 1;
        while let Some(top) = stack.last_mut() {
            let (c, next) = *top;
            let kids = &d.nodes[c].get(choice.get(c).copied().flatten()?)?.1;
            if next < kids.len() {
                top.1 += 1;
                let ch = kids[next];
                match state.get(ch)? {
                    0 => {
                        state[ch] = 1;
                        stack.push((ch, 0));
                    }
                    1 => return None,
                    _ => {}
                }
            } else {
                state[c] = 2;
                order.push(c);
                stack.pop();
            }
        }
    }
    Some(order)
}

/// FLOPs and largest array of the DAG the roots choose.
fn dag_cost(d: &Dense, roots: &[usize], choice: &[Option<usize>]) -> Option<(f64, f64)> {
    let reach = reachable(d, roots, choice)?;
    let (mut flops, mut peak) = (0.0, 0.0f64);
    for &c in &reach {
        let cost = d.nodes[c].get(choice[c]?)?.0;
        flops += cost.flops;
        peak = peak.max(cost.mem);
    }
    Some((flops, peak))
}
