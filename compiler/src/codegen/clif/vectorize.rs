//! When an innermost loop may run several iterations at once in vector lanes.
//!
//! A loop qualifies when its body is straight-line (`Let`, `Update`, `Store`) and:
//! - every store is contiguous in the loop counter (stride 1), so a vector store writes
//!   exactly the lanes' elements;
//! - a buffer the loop stores is only read and written at that same address, so no
//!   iteration reads what another one writes;
//! - variables the loop defines are read only after their definition in the same
//!   iteration, and nowhere outside the loop (they become vector variables);
//! - variables it updates but does not define are accumulators, which the loop never
//!   reads and always updates with the same operator (one vector accumulator each,
//!   reduced across lanes after the loop, which the IR allows);
//! - `#l` of the loop converts exactly (the extent fits the float's mantissa).
//!
//! Loads may have any stride: 0 is one scalar load, 1 a vector load, others a gather.

use crate::loops::LoopId;
use crate::loops::{Accum, Affine, BufId, Expr, LoopKernel, Stmt, VarId};
use std::collections::HashMap;

/// How to vectorise a loop.
#[derive(Debug, Default)]
pub(super) struct VecPlan {
    /// Variables defined in the loop, in first-definition order.
    pub locals: Vec<VarId>,
    /// Accumulators and their operator, in first-update order.
    pub accs: Vec<(VarId, Accum)>,
}

/// How often each variable is named (defined, updated or read) in a kernel.
pub(super) fn var_uses(k: &LoopKernel) -> Vec<usize> {
    let mut n = vec![0; k.vars.len()];
    count(&k.body, &mut n);
    n
}

fn count(body: &[Stmt], n: &mut [usize]) {
    let bump = |v: VarId, n: &mut [usize]| {
        if let Some(x) = n.get_mut(v.index()) {
            *x += 1;
        }
    };
    for s in body {
        match s {
            Stmt::For { body, .. } => count(body, n),
            Stmt::Let { var, value } | Stmt::Update { var, value, .. } => {
                bump(*var, n);
                value.visit(&mut |e| {
                    if let Expr::Var(v) = e {
                        bump(*v, n)
                    }
                });
            }
            Stmt::Store { value, .. } => value.visit(&mut |e| {
                if let Expr::Var(v) = e {
                    bump(*v, n)
                }
            }),
        }
    }
}

/// The plan for loop `l` with body `body`, or None when it must stay scalar.
/// `max_index` is the largest extent whose counters convert exactly to the dtype.
pub(super) fn plan(
    uses: &[usize],
    l: LoopId,
    extent: usize,
    body: &[Stmt],
    max_index: usize,
) -> Option<VecPlan> {
    let mut plan = VecPlan::default();
    let mut defines: Vec<VarId> = Vec::new();
    for s in body {
        match s {
            Stmt::For { .. } => return None,
            Stmt::Let { var, .. } => defines.push(*var),
            _ => {}
        }
    }
    for s in body {
        if let Stmt::Update { var, op, .. } = s {
            if defines.contains(var) {
                continue;
            }
            match plan.accs.iter().find(|a| a.0 == *var) {
                Some(a) if a.1 != *op => return None,
                Some(_) => {}
                None => plan.accs.push((*var, *op)),
            }
        }
    }
    // Addresses per buffer, stores first flagged.
    let mut access: HashMap<BufId, (Option<Affine>, Vec<Affine>)> = HashMap::new();
    let mut local_uses: HashMap<VarId, usize> = HashMap::new();
    let mut gathered: Vec<BufId> = Vec::new();
    let mut ok = true;
    for s in body {
        let value = match s {
            Stmt::Let { value, .. } | Stmt::Update { value, .. } | Stmt::Store { value, .. } => {
                value
            }
            Stmt::For { .. } => return None,
        };
        value.visit(&mut |e| match e {
            Expr::Var(v) => {
                if plan.accs.iter().any(|a| a.0 == *v)
                    || (defines.contains(v) && !plan.locals.contains(v))
                {
                    ok = false;
                }
                *local_uses.entry(*v).or_default() += 1;
            }
            Expr::Load(b, a) => access.entry(*b).or_default().1.push(a.clone()),
            // A gather whose indices do not move with the loop is a strided load from a
            // base fixed for the whole loop (its rows, e.g. U[s + 32·I[x]] along s);
            // indices that change per lane would need a vector gather: scalar then.
            Expr::Gather(b, _, ind) => {
                if ind.iter().any(|i| i.at.stride(l) != 0) {
                    ok = false;
                }
                gathered.push(*b);
            }
            Expr::Index(x) if *x == l && extent > max_index => ok = false,
            _ => {}
        });
        match s {
            Stmt::Let { var, .. } => {
                if !plan.locals.contains(var) {
                    plan.locals.push(*var);
                }
                *local_uses.entry(*var).or_default() += 1;
            }
            Stmt::Update { var, .. } => {
                if defines.contains(var) && !plan.locals.contains(var) {
                    ok = false;
                }
                *local_uses.entry(*var).or_default() += 1;
            }
            Stmt::Store { buf, index, .. } => {
                if index.stride(l) != 1 {
                    return None;
                }
                let e = access.entry(*buf).or_default();
                match &e.0 {
                    Some(a) if a != index => return None,
                    Some(_) => {}
                    None => e.0 = Some(index.clone()),
                }
            }
            Stmt::For { .. } => return None,
        }
    }
    if !ok {
        return None;
    }
    // A buffer the loop stores to and gathers from may be read at another lane's element.
    if gathered.iter().any(|b| access.get(b).is_some_and(|x| x.0.is_some())) {
        return None;
    }
    for (store, loads) in access.values() {
        if let Some(a) = store {
            if loads.iter().any(|x| x != a) {
                return None;
            }
        }
    }
    // A variable defined here and named elsewhere would need its last lane afterwards.
    for v in &plan.locals {
        if uses.get(v.index()).copied().unwrap_or(0) != local_uses.get(v).copied().unwrap_or(0) {
            return None;
        }
    }
    Some(plan)
}
