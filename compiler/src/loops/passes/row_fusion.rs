//! `row-fusion`: consecutive loop kernels whose parallel loops have one extent, where the
//! later reads what the earlier writes only in the row of its own iteration, become one
//! kernel with one parallel loop.
//!
//! Establishes: a fused kernel's parallel loop is still its whole body, and each
//! iteration writes a row of what it reads before reading it. Kernels of a tile group
//! are left alone (the group's kernel indices stay valid).

use super::util::{renumber, row_stride};
use super::Pass;
use crate::loops::*;

/// Fuses consecutive loop kernels that run a parallel loop of the same extent when every
/// buffer the earlier one writes and the later one reads is written and read row by row
/// (iteration r touches only row r). Rows are then produced and consumed by the same
/// thread while they are in cache.
fn run(p: &mut Program) {
    let grouped = |k: usize| p.tiles.iter().any(|g| (g.first..=g.last).contains(&k));
    let free: Vec<bool> = (0..p.kernels.len()).map(|k| !grouped(k)).collect();
    // The new index of every old kernel, to renumber the tile groups.
    let mut at = Vec::with_capacity(p.kernels.len());
    let mut out: Vec<Kernel> = Vec::new();
    for (k, kern) in std::mem::take(&mut p.kernels).into_iter().enumerate() {
        let joinable = free[k] && k > 0 && free[k - 1];
        if let (true, Some(Kernel::Loops(prev)), Kernel::Loops(next)) = (joinable, out.last_mut(), &kern) {
            if let Some(fused) = fuse(prev, next) {
                *prev = fused;
                at.push(out.len() - 1);
                continue;
            }
        }
        at.push(out.len());
        out.push(kern);
    }
    p.kernels = out;
    for g in &mut p.tiles {
        g.renumber(&at);
    }
}

fn fuse(a: &LoopKernel, b: &LoopKernel) -> Option<LoopKernel> {
    let (la, ea) = a.parallel_loop()?;
    let (lb, eb) = b.parallel_loop()?;
    if ea != eb {
        return None;
    }
    let (a_reads, a_writes) = a.buffers();
    let (_, b_writes) = b.buffers();
    if b_writes.iter().any(|w| a_reads.contains(w) || a_writes.contains(w)) {
        return None;
    }
    let [Stmt::For { body: abody, .. }] = a.body.as_slice() else { return None };
    let [Stmt::For { body: bbody, .. }] = b.body.as_slice() else { return None };
    for &w in &a_writes {
        let in_b = row_stride(bbody, lb, w, &b.loops)?;
        if let Some(sb) = in_b {
            let sa = row_stride(abody, la, w, &a.loops)?;
            if sa != Some(sb) {
                return None;
            }
        }
    }
    // Renumber b's loops and variables after a's; its parallel loop becomes a's.
    let nl = a.loops.len() as u32;
    let nv = a.vars.len() as u32;
    let map_loop = |l: LoopId| if l == lb { la } else { LoopId(l.0 + nl) };
    let mut body = abody.clone();
    body.extend(bbody.iter().map(|s| renumber(s, &map_loop, nv)));
    let mut loops = a.loops.clone();
    let mut used: Vec<String> = loops.iter().map(|l| l.name.clone()).collect();
    for l in &b.loops {
        let mut name = l.name.clone();
        let mut n = 1;
        while used.contains(&name) {
            name = format!("{}{n}", l.name);
            n += 1;
        }
        used.push(name.clone());
        loops.push(LoopInfo { name, extent: l.extent });
    }
    let mut vars = a.vars.clone();
    // Variable names end in their id (`acc3`), which shifts by a's count.
    vars.extend(b.vars.iter().enumerate().map(|(k, v)| format!("{}{}", v.trim_end_matches(char::is_numeric), nv as usize + k)));
    let mut steps = a.steps.clone();
    steps.extend(b.steps.iter().copied());
    Some(LoopKernel {
        name: format!("{}+{}", a.name, b.name),
        steps,
        loops,
        vars,
        body: vec![Stmt::For { id: la, extent: ea, parallel: true, body }],
    })
}

pub(super) const PASS: Pass = Pass { name: "row-fusion", from: Stage::Kernels, to: Stage::Kernels, run };
