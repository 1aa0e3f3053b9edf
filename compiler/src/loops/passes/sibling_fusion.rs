//! `sibling-fusion`: inside each loop kernel, adjacent innermost loops of one extent
//! become one loop when the second reads what the first writes only at the element the
//! same iteration wrote.
//!
//! Keeps every invariant of `Stage::Kernels` (each loop id used by at most one `for`,
//! variables defined before use, addresses in bounds); the second loop's id stays
//! declared but unused. Constant `let`s between the two loops move before the first.

use super::util::renumber;
use super::Pass;
use crate::loops::*;

/// Fuses adjacent innermost loops of the same extent inside every loop kernel, when the
/// second reads what the first writes only at the element the same iteration wrote (and
/// nothing else ties them): a row-wise map and the reduction after it become one pass
/// (`P = exp(S - m)` and `Σ P` in softmax, `x - mean` and `Σ (x - mean)²` in layernorm).
fn run(p: &mut Program) {
    for k in &mut p.kernels {
        if let Kernel::Loops(l) = k {
            let mut body = std::mem::take(&mut l.body);
            fuse_in(&mut body);
            l.body = body;
        }
    }
}

fn fuse_in(body: &mut Vec<Stmt>) {
    for s in body.iter_mut() {
        if let Stmt::For { body, .. } = s {
            fuse_in(body);
        }
    }
    let mut a = 0;
    while a < body.len() {
        let Some(b) = (a + 1..body.len()).find(|&j| !matches!(body[j], Stmt::Let { value: Expr::Const(_), .. })) else { break };
        if !can_fuse(&body[a], &body[a + 1..b], &body[b]) {
            a += 1;
            continue;
        }
        let second = body.remove(b);
        let lets: Vec<Stmt> = body.drain(a + 1..b).collect();
        let (Stmt::For { id: l1, body: b1, .. }, Stmt::For { id: l2, body: b2, .. }) = (&mut body[a], second) else { break };
        let l1 = *l1;
        b1.extend(b2.iter().map(|s| renumber(s, &|l| if l == l2 { l1 } else { l }, 0)));
        let n = lets.len();
        for (j, s) in lets.into_iter().enumerate() {
            body.insert(a + j, s);
        }
        a += n;
    }
}

/// The buffer accesses of a flat loop body: (buffer, address, is a store).
fn accesses(body: &[Stmt]) -> Vec<(BufId, Affine, bool)> {
    let mut out = Vec::new();
    let loads = |e: &Expr, out: &mut Vec<(BufId, Affine, bool)>| {
        e.visit(&mut |x| {
            if let Expr::Load(b, a) = x {
                out.push((*b, a.clone(), false));
            }
        })
    };
    for s in body {
        match s {
            Stmt::Let { value, .. } | Stmt::Update { value, .. } => loads(value, &mut out),
            Stmt::Store { buf, index, value } => {
                loads(value, &mut out);
                out.push((*buf, index.clone(), true));
            }
            Stmt::For { .. } => {}
        }
    }
    out
}

/// Variables a flat body defines or updates, and those it reads.
fn vars_of(body: &[Stmt]) -> (Vec<VarId>, Vec<VarId>) {
    let (mut set, mut read) = (Vec::new(), Vec::new());
    for s in body {
        let value = match s {
            Stmt::Let { var, value } | Stmt::Update { var, value, .. } => {
                set.push(*var);
                if matches!(s, Stmt::Update { .. }) {
                    read.push(*var);
                }
                value
            }
            Stmt::Store { value, .. } => value,
            Stmt::For { .. } => continue,
        };
        value.visit(&mut |x| {
            if let Expr::Var(v) = x {
                read.push(*v);
            }
        });
    }
    (set, read)
}

fn can_fuse(first: &Stmt, lets: &[Stmt], second: &Stmt) -> bool {
    // A gathered read's element is known only at run time.
    if first.has_gather() || second.has_gather() {
        return false;
    }
    let (Stmt::For { id: l1, extent: e1, parallel: false, body: b1 }, Stmt::For { id: l2, extent: e2, parallel: false, body: b2 }) =
        (first, second)
    else {
        return false;
    };
    if e1 != e2 || b1.iter().chain(b2).any(|s| matches!(s, Stmt::For { .. })) {
        return false;
    }
    let (set1, read1) = vars_of(b1);
    let (set2, read2) = vars_of(b2);
    let lets: Vec<VarId> = lets.iter().filter_map(|s| if let Stmt::Let { var, .. } = s { Some(*var) } else { None }).collect();
    // The first loop's results in variables are final only after it; the constants set
    // between the loops must not matter to the first.
    if read2.iter().chain(&set2).any(|v| set1.contains(v)) || read1.iter().chain(&set1).any(|v| lets.contains(v)) {
        return false;
    }
    let (acc1, acc2) = (accesses(b1), accesses(b2));
    let same = |a: &Affine, b: &Affine| {
        let map = |x: &Affine, from: LoopId| {
            let mut t: Vec<(LoopId, i64)> = x.terms.iter().map(|&(l, s)| (if l == from { LoopId(u32::MAX) } else { l }, s)).collect();
            t.sort();
            (x.offset, t)
        };
        map(a, *l1) == map(b, *l2)
    };
    for (buf, addr, store) in &acc2 {
        for (b1buf, a1, s1) in &acc1 {
            if buf != b1buf || !(*store || *s1) {
                continue;
            }
            // A write of one loop meets an access of the other: only the element of the
            // same iteration, read after it is written, is allowed.
            if *store || !same(a1, addr) {
                return false;
            }
        }
    }
    true
}

pub(super) const PASS: Pass = Pass { name: "sibling-fusion", from: Stage::Kernels, to: Stage::Kernels, run };
