//! `localise`: a temporary that only one row-parallel loop kernel touches, and only row
//! by row, becomes one row of per-thread scratch (`BufKind::Scratch`), and its addresses
//! drop the parallel loop's term.
//!
//! Establishes: every scratch buffer is used by exactly one loop kernel, never by a GEMM,
//! and each iteration of that kernel's parallel loop writes the row before it reads it.

use super::util::{for_each_access_mut, lifetimes, row_stride};
use super::Pass;
use crate::loops::*;

/// Rows of scratch larger than this stay in shared memory (stack space is limited).
const SCRATCH_BYTES: usize = 64 * 1024;

/// Replaces each temporary that only one row-parallel loop kernel touches, and only row
/// by row, by one row of per-thread scratch: iteration r writes row r before it reads
/// it (the kernel is the row fusion of kernels that ran one after another), so rows of
/// different iterations never meet and a thread can reuse one row for all of them.
fn run(p: &mut Program) {
    let life = lifetimes(p);
    let elem = p.dtype.size_of();
    for (b, life) in life.iter().enumerate() {
        let (BufKind::Temp { .. }, Some((first, last))) = (&p.bufs[b].kind, *life) else { continue };
        if first != last {
            continue;
        }
        let Kernel::Loops(k) = &mut p.kernels[first] else { continue };
        let Some((outer, _)) = k.parallel_loop() else { continue };
        let [Stmt::For { body, .. }] = k.body.as_slice() else { continue };
        let Some(Some(stride)) = row_stride(body, outer, BufId(b as u32), &k.loops) else { continue };
        let row = stride as usize;
        if row.saturating_mul(elem) > SCRATCH_BYTES || row == 0 {
            continue;
        }
        let buf = BufId(b as u32);
        let drop_outer = |a: &mut Affine| a.terms.retain(|t| t.0 != outer);
        for_each_access_mut(&mut k.body, buf, &mut |a| drop_outer(a));
        p.bufs[b].kind = BufKind::Scratch;
        p.bufs[b].shape = vec![row];
    }
}

pub(super) const PASS: Pass = Pass { name: "localise", from: Stage::Kernels, to: Stage::Kernels, run };
