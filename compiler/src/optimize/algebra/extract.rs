//! DAG extraction: picks one node per needed e-class so that the total cost, counting
//! every class once however many nodes read it, is low.
//!
//! First a greedy fixpoint where each class's cost is the cost of its whole sub-DAG
//! (a map from class to local cost, so shared classes count once); ties go to the node
//! whose sub-DAG has more classes, since a finer decomposition exposes more sharing.
//! Then a bounded local search switches single classes to other nodes while the total
//! cost of the roots' DAG drops.

use super::cost::CostModel;
use super::lang::{TNode, EG};
use egg::{Id, Language};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// The chosen node of every class reachable from the roots, and the total cost.
pub struct Extraction {
    pub choice: BTreeMap<Id, TNode>,
    pub cost: f64,
}

/// Sorted (class, local cost) pairs: a sub-DAG.
type Set = Rc<Vec<(Id, f64)>>;

struct Best {
    node: usize,
    total: f64,
    set: Set,
}

fn union(a: &[(Id, f64)], b: &[(Id, f64)]) -> Vec<(Id, f64)> {
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

fn better(total: f64, len: usize, than: &Best) -> bool {
    let eps = 1e-9 * than.total.abs().max(1.0);
    total < than.total - eps || (total <= than.total + eps && len > than.set.len())
}

const MAX_PASSES: usize = 64;
const MAX_SEARCH_EVALS: usize = 20_000;

pub fn extract(eg: &EG, roots: &[Id], cm: &CostModel) -> Result<Extraction, String> {
    let mut ids: Vec<Id> = eg.classes().map(|c| c.id).collect();
    ids.sort();
    let local: HashMap<Id, Vec<f64>> =
        ids.iter().map(|&c| (c, eg[c].nodes.iter().map(|n| cm.node_cost(eg, n)).collect())).collect();
    let mut best: HashMap<Id, Best> = HashMap::new();
    let t0 = std::time::Instant::now();
    let mut passes = 0;
    for _ in 0..MAX_PASSES {
        passes += 1;
        let mut changed = false;
        for &c in &ids {
            for (k, node) in eg[c].nodes.iter().enumerate() {
                let mut set: Vec<(Id, f64)> = Vec::new();
                let mut ok = true;
                for &ch in node.children() {
                    match best.get(&eg.find(ch)) {
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
                let own = local[&c][k];
                set = union(&set, &[(c, own)]);
                let total: f64 = set.iter().map(|p| p.1).sum();
                let replace = match best.get(&c) {
                    None => true,
                    Some(b) if b.node == k => (b.total - total).abs() > 1e-12 * total.abs().max(1.0) || b.set.len() != set.len(),
                    Some(b) => better(total, set.len(), b),
                };
                if replace {
                    best.insert(c, Best { node: k, total, set: Rc::new(set) });
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut choice: HashMap<Id, usize> = best.iter().map(|(&c, b)| (c, b.node)).collect();
    let roots: Vec<Id> = roots.iter().map(|&r| eg.find(r)).collect();
    let mut cost = dag_cost(eg, &roots, &choice, &local).ok_or("no acyclic choice covers the roots")?;
    let t1 = std::time::Instant::now();

    // Local search over the classes of the current DAG.
    let mut evals = 0;
    'rounds: for _ in 0..4 {
        let mut improved = false;
        let mut reach = reachable(eg, &roots, &choice).unwrap_or_default();
        reach.sort();
        for c in reach {
            let current = match choice.get(&c) {
                Some(&k) => k,
                None => continue,
            };
            for k in 0..eg[c].nodes.len() {
                if k == current || !eg[c].nodes[k].children().iter().all(|ch| choice.contains_key(&eg.find(*ch))) {
                    continue;
                }
                evals += 1;
                if evals > MAX_SEARCH_EVALS {
                    break 'rounds;
                }
                let old = choice.insert(c, k);
                match dag_cost(eg, &roots, &choice, &local) {
                    Some(t) if t < cost - 1e-9 * cost.abs().max(1.0) => {
                        cost = t;
                        improved = true;
                        break;
                    }
                    _ => {
                        if let Some(o) = old {
                            choice.insert(c, o);
                        }
                    }
                }
            }
        }
        if !improved {
            break;
        }
    }
    let reach = reachable(eg, &roots, &choice).ok_or("the chosen nodes form a cycle")?;
    if std::env::var("TESSERA_ALGEBRA_TRACE").is_ok() {
        eprintln!("extract: {} classes, {passes} passes {:?}, search {:?} ({evals} evals)", ids.len(), t1 - t0, t1.elapsed());
    }
    let mut out = BTreeMap::new();
    for c in reach {
        let k = choice[&c];
        out.insert(c, eg[c].nodes[k].clone());
    }
    Ok(Extraction { choice: out, cost })
}

/// Classes reachable from the roots through chosen nodes, or `None` on a cycle or a
/// class without a choice.
fn reachable(eg: &EG, roots: &[Id], choice: &HashMap<Id, usize>) -> Option<Vec<Id>> {
    // 0: unseen, 1: on the stack, 2: done.
    let mut state: HashMap<Id, u8> = HashMap::new();
    let mut order = Vec::new();
    let mut stack: Vec<(Id, usize)> = Vec::new();
    for &r in roots {
        if state.get(&r).copied().unwrap_or(0) == 2 {
            continue;
        }
        stack.push((r, 0));
        state.insert(r, 1);
        while let Some(&mut (c, ref mut next)) = stack.last_mut() {
            let node = &eg[c].nodes[*choice.get(&c)?];
            let kids = node.children();
            if *next < kids.len() {
                let ch = eg.find(kids[*next]);
                *next += 1;
                match state.get(&ch).copied().unwrap_or(0) {
                    0 => {
                        state.insert(ch, 1);
                        stack.push((ch, 0));
                    }
                    1 => return None,
                    _ => {}
                }
            } else {
                state.insert(c, 2);
                order.push(c);
                stack.pop();
            }
        }
    }
    Some(order)
}

fn dag_cost(eg: &EG, roots: &[Id], choice: &HashMap<Id, usize>, local: &HashMap<Id, Vec<f64>>) -> Option<f64> {
    let reach = reachable(eg, roots, choice)?;
    Some(reach.iter().map(|c| local[c][choice[c]]).sum())
}
