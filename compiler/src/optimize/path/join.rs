//! Joining separately contracted pieces (the connected components) into one result.
//! Pieces share only output labels, so every join is an outer or Hadamard product.

use super::bits::Bits;
use super::dp::{full_dp, FULL_DP_MAX};
use super::problem::BitProblem;
use super::tree::Tree;

/// A piece: its node in the tree and the tensors it covers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unit {
    pub(crate) node: u32,
    pub(crate) set: u128,
}

/// Joins `units` into one node of `tree`; returns it and whether the order is proven
/// optimal (exact DP over the pieces), or `None` when `limit` rules out every order
/// tried.
pub(crate) fn join_units<const W: usize>(
    bp: &BitProblem<W>,
    tree: &mut Tree,
    units: &[Unit],
    limit: Option<f64>,
) -> Option<(u32, bool)> {
    match units {
        [] => None,
        [only] => Some((only.node, true)),
        _ => {
            let sub = unit_problem(bp, units);
            if units.len() <= FULL_DP_MAX {
                let (ssa, _) = full_dp(&sub, limit)?;
                return Some((graft(tree, units, &ssa), true));
            }
            let a = ascending_order(&sub);
            let b = smallest_pairs(&sub);
            let cost = |ssa: &[(u32, u32)]| ssa_cost_bits(&sub, ssa, limit);
            let best = match (cost(&a), cost(&b)) {
                (Some(ca), Some(cb)) => Some(if cb < ca { b } else { a }),
                (Some(_), None) => Some(a),
                (None, Some(_)) => Some(b),
                (None, None) => None,
            }?;
            Some((graft(tree, units, &best), false))
        }
    }
}

/// The pieces as the inputs of a small problem of their own.
fn unit_problem<const W: usize>(bp: &BitProblem<W>, units: &[Unit]) -> BitProblem<W> {
    let labels: Vec<Bits<W>> = units
        .iter()
        .map(|u| {
            if u.set.count_ones() == 1 {
                bp.labels[u.set.trailing_zeros() as usize]
            } else {
                bp.legs_of(u.set)
            }
        })
        .collect();
    let mut inc = vec![0u128; 64 * W];
    for (i, l) in labels.iter().enumerate() {
        for x in l.ones() {
            inc[x] |= 1u128 << i;
        }
    }
    BitProblem {
        n: units.len(),
        labels,
        out: bp.out,
        sizes: bp.sizes.clone(),
        inc,
        adj: vec![0; units.len()],
    }
}

fn graft(tree: &mut Tree, units: &[Unit], ssa: &[(u32, u32)]) -> u32 {
    let mut ids: Vec<u32> = units.iter().map(|u| u.node).collect();
    for &(a, b) in ssa {
        let (na, nb) = (ids[a as usize], ids[b as usize]);
        ids.push(tree.push(na, nb));
    }
    ids.last().copied().unwrap_or(u32::MAX)
}

/// opt_einsum `dp`'s order: a left-deep chain over the pieces by increasing size.
fn ascending_order<const W: usize>(sub: &BitProblem<W>) -> Vec<(u32, u32)> {
    let mut order: Vec<(f64, u32)> = sub
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.size(&sub.sizes), i as u32))
        .collect();
    order.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let n = sub.n as u32;
    let mut ssa = Vec::with_capacity(order.len().saturating_sub(1));
    let mut acc = order[0].1;
    for (k, &(_, i)) in order.iter().skip(1).enumerate() {
        ssa.push((acc.min(i), acc.max(i)));
        acc = n + k as u32;
    }
    ssa
}

/// Repeatedly joins the two smallest operands.
fn smallest_pairs<const W: usize>(sub: &BitProblem<W>) -> Vec<(u32, u32)> {
    let mut live: Vec<(u32, u128, Bits<W>)> = sub
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u32, 1u128 << i, *l))
        .collect();
    let mut ssa = Vec::new();
    let mut next = sub.n as u32;
    while live.len() > 1 {
        live.sort_by(|x, y| {
            x.2.size(&sub.sizes)
                .total_cmp(&y.2.size(&sub.sizes))
                .then(x.0.cmp(&y.0))
        });
        let (a, b) = (live[0], live[1]);
        let s = a.1 | b.1;
        let (legs, _) = sub.step(s, &a.2, &b.2);
        ssa.push((a.0.min(b.0), a.0.max(b.0)));
        live.drain(0..2);
        live.push((next, s, legs));
        next += 1;
    }
    ssa
}

/// Cost of an SSA path on a bitset problem, or `None` when a result breaks `limit`.
pub(crate) fn ssa_cost_bits<const W: usize>(
    bp: &BitProblem<W>,
    ssa: &[(u32, u32)],
    limit: Option<f64>,
) -> Option<f64> {
    let mut ops: Vec<(u128, Bits<W>)> = (0..bp.n).map(|t| (1u128 << t, bp.labels[t])).collect();
    let mut total = 0.0;
    for &(a, b) in ssa {
        let (ea, eb) = (*ops.get(a as usize)?, *ops.get(b as usize)?);
        let s = ea.0 | eb.0;
        let (legs, step) = bp.step(s, &ea.1, &eb.1);
        if limit.is_some_and(|lim| legs.size(&bp.sizes) > lim) {
            return None;
        }
        total += step;
        ops.push((s, legs));
    }
    Some(total)
}
