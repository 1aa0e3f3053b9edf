//! `tile-groups`: runs of kernels `[GEMM] loops [GEMM loops]...` over one row index
//! become tile groups that run tile by tile of rows, and the intermediates only the group
//! uses become `BufKind::Tile` (a tile of rows per thread).
//!
//! Establishes: tile groups are disjoint runs of kernels, sorted by their first kernel;
//! each of their kernels runs over the group's rows (the role a GEMM slices matches), and
//! a tile buffer is used only by kernels of the group that lists it.

use super::util::{for_each_access, lifetimes, row_stride};
use super::Pass;
use crate::loops::*;

/// Bytes of tile intermediates one thread keeps: about half of a core's L2 cache, so a
/// tile stays in cache between the kernels that write and read it.
const TILE_BYTES: usize = 1 << 20;

/// How a tile group writes a buffer: row r is `r·stride + x` for x inside the row
/// (`other == None`: 0 <= x < stride), or for a GEMM's C `r·stride + y·other.0` with
/// y < other.1.
#[derive(Clone, Copy, Debug)]
struct Rows {
    buf: BufId,
    stride: i64,
    other: Option<(i64, usize)>,
}

/// The dimension of GEMM `g` to slice by rows, if operands written inside the group are
/// read row by row and the GEMM has no loops around it.
fn gemm_role(g: &Gemm, rows: usize, written: &[Rows]) -> Option<TileRole> {
    let find = |b: BufId| written.iter().find(|x| x.buf == b);
    // An operand written inside the group must be read along its rows: `s` its stride
    // per row, `t` and `e` the stride and extent of the other dimension it reads.
    let fits = |b: BufId, s: isize, t: isize, e: usize| match find(b) {
        None => true,
        Some(Rows { stride, other: None, .. }) => *stride == s as i64 && t >= 0 && (t as i64) * (e.max(1) as i64 - 1) < *stride,
        Some(_) => false,
    };
    if !g.outer.is_empty() || find(g.c).is_some() {
        return None;
    }
    if g.m == rows && fits(g.a, g.a_strides[0], g.a_strides[1], g.k) && find(g.b).is_none() {
        return Some(TileRole::M);
    }
    if g.n == rows && fits(g.b, g.b_strides[1], g.b_strides[0], g.k) && find(g.a).is_none() {
        return Some(TileRole::N);
    }
    None
}

/// What a GEMM of the group writes, by rows of its sliced dimension.
fn gemm_rows(g: &Gemm, role: TileRole) -> Rows {
    match role {
        TileRole::M => Rows { buf: g.c, stride: g.c_strides[0] as i64, other: Some((g.c_strides[1] as i64, g.n)) },
        TileRole::N => Rows { buf: g.c, stride: g.c_strides[1] as i64, other: Some((g.c_strides[0] as i64, g.m)) },
    }
}

/// Runs of kernels `[GEMM] loops [GEMM loops]...` over one row index (softmax attention:
/// scores, the row-wise softmax, the product with V, the normalisation) become a tile
/// group: each thread runs all of them on a tile of rows at a time, so the n×n
/// intermediates exist one tile per thread and stay in cache between the kernels.
fn run(p: &mut Program) {
    let life = lifetimes(p);
    // Kernels already in a group (an input that ran this pass before) join no other.
    let taken: Vec<(usize, usize)> = p.tiles.iter().map(|g| (g.first, g.last)).collect();
    let mut k = 0;
    while k < p.kernels.len() {
        let g = try_group(p, k, &life).filter(|g| !taken.iter().any(|&(f, l)| f <= g.last && g.first <= l));
        match g {
            Some(g) => {
                k = g.last + 1;
                for &b in &g.local {
                    let row = p.bufs[b.index()].shape.iter().skip(1).product();
                    p.bufs[b.index()].kind = BufKind::Tile { row };
                }
                p.tiles.push(g);
            }
            None => k += 1,
        }
    }
    p.tiles.sort_by_key(|g| g.first);
}

/// The tile group around the loop kernel `k`, if the kernels around it fit the pattern.
fn try_group(p: &Program, k: usize, life: &[Option<(usize, usize)>]) -> Option<TileGroup> {
    let Kernel::Loops(lk) = &p.kernels[k] else { return None };
    let (_, rows) = lk.parallel_loop()?;
    if rows < 2 {
        return None;
    }
    let mut written: Vec<Rows> = Vec::new();
    let mut roles = Vec::new();
    let mut first = k;
    if let Some(Kernel::Gemm(g)) = k.checked_sub(1).map(|j| &p.kernels[j]) {
        if let Some(role) = gemm_role(g, rows, &written) {
            written.push(gemm_rows(g, role));
            roles.push(Some(role));
            first = k - 1;
        }
    }
    let mut last;
    let mut j = k;
    loop {
        let Kernel::Loops(l) = &p.kernels[j] else { return None };
        match loops_rows(l, rows, &written) {
            Some(w) => written.extend(w),
            None if j == k => return None,
            None => {
                // The group ends before this loop kernel and the GEMM that feeds it.
                roles.pop();
                written.pop();
                last = j - 2;
                break;
            }
        }
        roles.push(None);
        last = j;
        let (Some(Kernel::Gemm(g)), Some(Kernel::Loops(_))) = (p.kernels.get(j + 1), p.kernels.get(j + 2)) else { break };
        let Some(role) = gemm_role(g, rows, &written) else { break };
        written.push(gemm_rows(g, role));
        roles.push(Some(role));
        j += 2;
    }
    if last == first {
        return None;
    }
    // Intermediates used only inside the group whose rows are their outermost dimension
    // need only a tile per thread.
    let mut local = Vec::new();
    for w in &written {
        let buf = &p.bufs[w.buf.index()];
        let inside = life[w.buf.index()].is_some_and(|(f, l)| f >= first && l <= last);
        let outermost = buf.shape.first() == Some(&rows) && w.stride as usize * rows == buf.len();
        if matches!(buf.kind, BufKind::Temp { .. }) && inside && outermost && !local.contains(&w.buf) {
            local.push(w.buf);
        }
    }
    let row_bytes: usize = local.iter().map(|b| p.bufs[b.index()].len() / rows * p.dtype.size_of()).sum();
    if local.is_empty() || row_bytes == 0 {
        return None;
    }
    // A multiple of 16 rows keeps the GEMMs on whole register tiles, and at least four
    // tiles keep both cores busy (tiles are the group's only parallelism).
    let tile = match (TILE_BYTES / row_bytes).min(rows.div_ceil(4)) {
        t if t >= 32 => t / 16 * 16,
        t => t,
    }
    .max(1);
    if rows < 8 {
        return None;
    }
    let factors = vec![1; roles.len()];
    Some(TileGroup { first, last, extent: rows, tile, roles, factors, local, stream: None })
}

/// What a loop kernel writes by rows, if it can run on a tile of rows of the group: its
/// parallel loop runs over the rows, and it reads what the group wrote only in the rows
/// of its own iteration, so a tile's reads are covered by the tile's writes.
fn loops_rows(l: &LoopKernel, rows: usize, written: &[Rows]) -> Option<Vec<Rows>> {
    let (outer, extent) = l.parallel_loop()?;
    let [Stmt::For { body, .. }] = l.body.as_slice() else { return None };
    if extent != rows {
        return None;
    }
    let (reads, writes) = l.buffers();
    for b in reads {
        let Some(w) = written.iter().find(|x| x.buf == b) else { continue };
        let ok = match w.other {
            None => row_stride(body, outer, b, &l.loops) == Some(Some(w.stride)),
            Some((t, e)) => {
                let mut ok = true;
                for_each_access(body, b, &mut |a| {
                    let others: Vec<&(LoopId, i64)> = a.terms.iter().filter(|x| x.0 != outer).collect();
                    ok &= a.offset == 0
                        && a.stride(outer) == w.stride
                        && match others.as_slice() {
                            [] => true,
                            [(l2, s2)] => *s2 == t && l.loops[l2.index()].extent <= e,
                            _ => false,
                        };
                });
                ok
            }
        };
        if !ok {
            return None;
        }
    }
    let mut out = Vec::new();
    for b in writes {
        match row_stride(body, outer, b, &l.loops) {
            Some(Some(stride)) => out.push(Rows { buf: b, stride, other: None }),
            _ => return None,
        }
    }
    Some(out)
}

pub(super) const PASS: Pass = Pass { name: "tile-groups", from: Stage::Kernels, to: Stage::Kernels, run };
