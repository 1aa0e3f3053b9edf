//! How a streamed tile group walks its key blocks (online softmax): the keys each row
//! sees under an affine mask, which blocks a tile visits and where they start, the order
//! in which kernels, base shifts and score fills happen, and the fill itself. The
//! interpreter and the CPU executor both run streams through these helpers, so the
//! differential tests against the TIR oracle (not the interpreter) judge them; the unit
//! tests below check them against a brute-force evaluation of the mask.
//!
//! Block placement: for a tile whose rows may see keys `[lo, hi)` of an axis (the hull of
//! their intervals), block b starts at `min(lo + b·B, hi − B)`, clamped at 0. Every
//! block has the full width B; the last one is shifted back and the keys it shares with
//! the previous block are not *fresh*: the fill masks them like masked keys, so every
//! visible (row, keys) entry is counted by exactly one block.

use super::{CmpOp, MaskCmp, Stream, TileGroup};

/// A half-open interval `lo..hi` of keys (empty when `lo >= hi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub lo: i64,
    pub hi: i64,
    /// Every key of the interval is visible (for the innermost axis: the interval is the
    /// exact set of visible keys). False when a comparison could not be represented: a
    /// `!=` on this key, or a comparison on an inner key (then the interval is only the
    /// keys for which some inner keys may be visible).
    pub exact: bool,
}

impl Interval {
    pub fn is_empty(&self) -> bool {
        self.lo >= self.hi
    }

    /// The part of the interval in `lo..hi`.
    fn meet(&self, lo: i64, hi: i64) -> (i64, i64) {
        (self.lo.max(lo), self.hi.min(hi))
    }
}

/// The comparison `cmp` as conjunctions of `s·(affine) + d <= 0`; `!=` is none.
fn le_forms(op: CmpOp) -> &'static [(i128, i128)] {
    match op {
        CmpOp::Le => &[(1, 0)],
        CmpOp::Lt => &[(1, 1)],
        CmpOp::Ge => &[(-1, 0)],
        CmpOp::Gt => &[(-1, 1)],
        CmpOp::Eq => &[(1, 0), (-1, 0)],
        CmpOp::Ne => &[],
    }
}

/// `⌊a / b⌋` for `b > 0`.
fn floor_div(a: i128, b: i128) -> i128 {
    a.div_euclid(b)
}

/// `⌈a / b⌉` for `b > 0`.
fn ceil_div(a: i128, b: i128) -> i128 {
    -(-a).div_euclid(b)
}

/// Whether key values `keys` (one per axis) are visible from row `row`: every
/// comparison holds, evaluated exactly.
pub fn visible(mask: &[MaskCmp], row: i64, keys: &[i64]) -> bool {
    mask.iter().all(|c| {
        let v = c.row as i128 * row as i128
            + c.keys
                .iter()
                .zip(keys)
                .map(|(&a, &x)| a as i128 * x as i128)
                .sum::<i128>()
            + c.constant as i128;
        exact_cmp(c.op, v)
    })
}

/// `v op 0` on integers.
fn exact_cmp(op: CmpOp, v: i128) -> bool {
    match op {
        CmpOp::Lt => v < 0,
        CmpOp::Le => v <= 0,
        CmpOp::Gt => v > 0,
        CmpOp::Ge => v >= 0,
        CmpOp::Eq => v == 0,
        CmpOp::Ne => v != 0,
    }
}

/// The keys of axis `axis` (`0..extents[axis]`) that row `row` may see when the outer
/// axes' keys are `outer` (one per axis before `axis`). A comparison that does not use
/// the key is a predicate on the row and the outer keys (all or nothing); one that uses
/// inner keys is relaxed to "for some inner keys", which keeps the interval a superset.
pub fn key_interval(
    mask: &[MaskCmp],
    row: i64,
    outer: &[i64],
    axis: usize,
    extents: &[usize],
) -> Interval {
    let (mut lo, mut hi) = (0i128, extents[axis] as i128);
    let mut exact = true;
    for c in mask {
        let a = c.keys.get(axis).copied().unwrap_or(0) as i128;
        let mut t = c.row as i128 * row as i128 + c.constant as i128;
        for (k, &x) in outer.iter().enumerate().take(axis) {
            t += c.keys.get(k).copied().unwrap_or(0) as i128 * x as i128;
        }
        let inner: Vec<(i128, i128)> = (axis + 1..extents.len())
            .map(|k| {
                (
                    c.keys.get(k).copied().unwrap_or(0) as i128,
                    extents[k].saturating_sub(1) as i128,
                )
            })
            .filter(|&(b, _)| b != 0)
            .collect();
        if c.op == CmpOp::Ne {
            if a == 0 && inner.is_empty() {
                if t == 0 {
                    hi = lo;
                }
            } else {
                exact = false;
            }
            continue;
        }
        if !inner.is_empty() {
            exact = false;
        }
        for &(s, d) in le_forms(c.op) {
            // s·(a·x + t + Σ b·y) + d <= 0 for some inner keys y in 0..=ymax.
            let tt = s * t
                + d
                + inner
                    .iter()
                    .map(|&(b, ymax)| (s * b * ymax).min(0))
                    .sum::<i128>();
            let aa = s * a;
            if aa == 0 {
                if tt > 0 {
                    hi = lo;
                }
            } else if aa > 0 {
                hi = hi.min(floor_div(-tt, aa) + 1);
            } else {
                lo = lo.max(ceil_div(tt, -aa));
            }
        }
    }
    if lo >= hi {
        return Interval {
            lo: 0,
            hi: 0,
            exact,
        };
    }
    // Both bounds lie in 0..=extent here.
    Interval {
        lo: lo as i64,
        hi: hi as i64,
        exact,
    }
}

/// A block of one stream axis that a tile visits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The block's first key.
    pub key0: usize,
    /// Keys below this were covered by an earlier block: the fill masks them.
    pub fresh: usize,
    /// Innermost axis only: every score entry of the block is visible and fresh, so the
    /// fill has nothing to do (false for every block of an outer axis).
    pub full: bool,
    /// The next axis's blocks, run inside this one (empty for the innermost axis).
    pub inner: Vec<Block>,
}

/// Block starts over `lo..hi` (see the module comment) with the first fresh key of each.
fn positions(lo: usize, hi: usize, block: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if lo >= hi || block == 0 {
        return out;
    }
    let count = (hi - lo).div_ceil(block);
    let mut prev_end = None;
    for b in 0..count {
        let key0 = (lo + b * block).min(hi.saturating_sub(block));
        out.push((key0, prev_end.unwrap_or(key0)));
        prev_end = Some(key0 + block);
    }
    out
}

/// The blocks a tile of rows `lo..hi` visits, nested by axis. With `skip_blocks`, only
/// blocks some row sees a fresh key of (the hull of the rows' intervals, placed as in
/// the module comment); without, every block position of each axis's whole extent,
/// none of them `full`, so that the fill alone applies the mask.
pub fn tile_plan(s: &Stream, lo: usize, hi: usize, skip_blocks: bool) -> Vec<Block> {
    let extents: Vec<usize> = s.axes.iter().map(|a| a.extent).collect();
    // A context is a row and outer keys that may be visible from it.
    let ctx: Vec<(i64, Vec<i64>)> = (lo..hi).map(|i| (i as i64, Vec::new())).collect();
    plan_axis(s, &extents, 0, &ctx, hi - lo, skip_blocks)
}

/// Blocks of `axis` for the contexts `ctx`, of which a full outer block has `all`.
fn plan_axis(
    s: &Stream,
    extents: &[usize],
    axis: usize,
    ctx: &[(i64, Vec<i64>)],
    all: usize,
    skip: bool,
) -> Vec<Block> {
    let block = s.axes[axis].block;
    let innermost = axis + 1 == s.axes.len();
    let ivs: Vec<Interval> = ctx
        .iter()
        .map(|(i, outer)| key_interval(&s.mask, *i, outer, axis, extents))
        .collect();
    let (lo, hi) = if skip {
        let live = ivs.iter().filter(|v| !v.is_empty());
        let lo = live.clone().map(|v| v.lo).min();
        let hi = live.map(|v| v.hi).max();
        match (lo, hi) {
            (Some(lo), Some(hi)) => (lo as usize, hi as usize),
            _ => return Vec::new(),
        }
    } else {
        (0, extents[axis])
    };
    let mut out = Vec::new();
    for (key0, fresh) in positions(lo, hi, block) {
        let (from, to) = (fresh.max(key0) as i64, (key0 + block) as i64);
        if innermost {
            let seen = ivs.iter().any(|v| {
                let (a, b) = v.meet(from, to);
                a < b
            });
            if skip && !seen {
                continue;
            }
            let full = skip
                && fresh <= key0
                && ctx.len() == all
                && ivs
                    .iter()
                    .all(|v| v.exact && v.lo <= key0 as i64 && to <= v.hi);
            out.push(Block {
                key0,
                fresh,
                full,
                inner: Vec::new(),
            });
        } else {
            // The next axis sees the contexts extended by this block's fresh keys that may
            // be visible.
            let mut next = Vec::new();
            for ((i, outer), v) in ctx.iter().zip(&ivs) {
                let (a, b) = v.meet(from, to);
                for x in a..b {
                    let mut keys = outer.clone();
                    keys.push(x);
                    next.push((*i, keys));
                }
            }
            let inner = plan_axis(s, extents, axis + 1, &next, all * block, skip);
            if skip && inner.is_empty() {
                continue;
            }
            out.push(Block {
                key0,
                fresh,
                full: false,
                inner,
            });
        }
    }
    out
}

/// One thing to do while running a streamed tile group on a tile.
#[derive(Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// Run kernel k of the program on the tile.
    Run(usize),
    /// Move the base of every buffer shifted along `axis` to `key0 · stride` elements.
    Shift { axis: usize, key0: usize },
    /// Fill the score block (see [`fill`]) for blocks starting at `key0` (one per axis),
    /// whose keys below `fresh` were covered before.
    Fill {
        key0: &'a [usize],
        fresh: &'a [usize],
    },
}

/// Calls `f` with what running group `g` (with stream `s`) on one tile means, in order:
/// the init kernels, per block the shifts, the axis's kernels and the fill right after
/// `fill_after` (unless the block is full), then the finish kernels.
pub fn drive<E>(
    g: &TileGroup,
    s: &Stream,
    plan: &[Block],
    f: &mut dyn FnMut(Op<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let Some(first_axis) = s.axes.first() else {
        return Ok(());
    };
    for k in g.first..first_axis.kernels.0 {
        f(Op::Run(k))?;
    }
    let (mut key0, mut fresh) = (Vec::new(), Vec::new());
    drive_axis(s, 0, plan, &mut key0, &mut fresh, f)?;
    for k in s.axes[s.axes.len() - 1].kernels.1 + 1..=g.last {
        f(Op::Run(k))?;
    }
    Ok(())
}

fn drive_axis<E>(
    s: &Stream,
    axis: usize,
    blocks: &[Block],
    key0: &mut Vec<usize>,
    fresh: &mut Vec<usize>,
    f: &mut dyn FnMut(Op<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let (a, b) = s.axes[axis].kernels;
    for blk in blocks {
        key0.push(blk.key0);
        fresh.push(blk.fresh);
        f(Op::Shift {
            axis,
            key0: blk.key0,
        })?;
        match s.axes.get(axis + 1).map(|x| x.kernels) {
            None => {
                for k in a..=b {
                    f(Op::Run(k))?;
                    if k == s.fill_after && !blk.full {
                        f(Op::Fill { key0, fresh })?;
                    }
                }
            }
            Some((ia, ib)) => {
                for k in a..ia {
                    f(Op::Run(k))?;
                }
                drive_axis(s, axis + 1, &blk.inner, key0, fresh, f)?;
                for k in ib + 1..=b {
                    f(Op::Run(k))?;
                }
            }
        }
        key0.pop();
        fresh.pop();
    }
    Ok(())
}

/// Writes -inf into the entries of a score block that are masked or not fresh. `scores`
/// holds rows `lo..hi` of the scores tile, `row_len` elements each; key `c` of axis k's
/// block is at offset `c · score_strides[k]` in a row.
pub fn fill<T: num_traits::Float>(
    scores: &mut [T],
    row_len: usize,
    s: &Stream,
    lo: usize,
    hi: usize,
    key0: &[usize],
    fresh: &[usize],
) {
    let extents: Vec<usize> = s.axes.iter().map(|a| a.extent).collect();
    let mut keys = Vec::with_capacity(s.axes.len());
    for i in lo..hi {
        let row = &mut scores[(i - lo) * row_len..(i - lo + 1) * row_len];
        fill_axis(
            row, 0, s, &extents, i as i64, &mut keys, 0, key0, fresh, true,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn fill_axis<T: num_traits::Float>(
    row: &mut [T],
    offset: i64,
    s: &Stream,
    extents: &[usize],
    i: i64,
    keys: &mut Vec<i64>,
    axis: usize,
    key0: &[usize],
    fresh: &[usize],
    live: bool,
) {
    let (block, stride) = (s.axes[axis].block, s.score_strides[axis]);
    let at = |c: usize| (offset + c as i64 * stride) as usize;
    if axis + 1 < s.axes.len() {
        for c in 0..block {
            let x = key0[axis] + c;
            keys.push(x as i64);
            fill_axis(
                row,
                offset + c as i64 * stride,
                s,
                extents,
                i,
                keys,
                axis + 1,
                key0,
                fresh,
                live && x >= fresh[axis],
            );
            keys.pop();
        }
        return;
    }
    if !live {
        for c in 0..block {
            row[at(c)] = T::neg_infinity();
        }
        return;
    }
    // The innermost key: the outer keys are fixed, so the interval is exact unless a `!=`
    // uses this key, and then every entry is evaluated.
    let iv = key_interval(&s.mask, i, keys, axis, extents);
    for c in 0..block {
        let x = key0[axis] + c;
        let mut ok = x >= fresh[axis] && iv.lo <= x as i64 && (x as i64) < iv.hi;
        if ok && !iv.exact {
            keys.push(x as i64);
            ok = visible(&s.mask, i, keys);
            keys.pop();
        }
        if !ok {
            row[at(c)] = T::neg_infinity();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loops::{BufId, StreamAxis};
    use proptest::prelude::*;

    fn stream(axes: &[(usize, usize)], mask: Vec<MaskCmp>) -> Stream {
        let mut strides = vec![1i64; axes.len()];
        for k in (0..axes.len().saturating_sub(1)).rev() {
            strides[k] = strides[k + 1] * axes[k + 1].1 as i64;
        }
        Stream {
            axes: axes
                .iter()
                .enumerate()
                .map(|(k, &(extent, block))| StreamAxis {
                    name: format!("k{k}"),
                    extent,
                    block,
                    kernels: (1 + k, 4 - k),
                })
                .collect(),
            shifts: Vec::new(),
            scores: BufId(0),
            fill_after: 2,
            score_strides: strides,
            mask,
        }
    }

    fn cmp(op: CmpOp, row: i64, keys: &[i64], constant: i64) -> MaskCmp {
        MaskCmp {
            op,
            row,
            keys: keys.to_vec(),
            constant,
        }
    }

    /// Every visited innermost block as (key0 per axis, fresh per axis, full).
    fn leaves(s: &Stream, plan: &[Block]) -> Vec<(Vec<usize>, Vec<usize>, bool)> {
        let g = TileGroup {
            first: 0,
            last: 5,
            extent: 1,
            tile: 1,
            roles: vec![None; 6],
            factors: vec![1; 6],
            local: Vec::new(),
            stream: None,
        };
        let mut out = Vec::new();
        let mut fulls = Vec::new();
        drive::<()>(&g, s, plan, &mut |op| {
            if let Op::Fill { key0, fresh } = op {
                out.push((key0.to_vec(), fresh.to_vec(), false));
            }
            Ok(())
        })
        .unwrap();
        // Full blocks get no fill op: collect them from the plan.
        fn walk(
            b: &[Block],
            key0: &mut Vec<usize>,
            fresh: &mut Vec<usize>,
            out: &mut Vec<(Vec<usize>, Vec<usize>, bool)>,
        ) {
            for x in b {
                key0.push(x.key0);
                fresh.push(x.fresh);
                if x.inner.is_empty() && x.full {
                    out.push((key0.clone(), fresh.clone(), true));
                }
                walk(&x.inner, key0, fresh, out);
                key0.pop();
                fresh.pop();
            }
        }
        walk(plan, &mut Vec::new(), &mut Vec::new(), &mut fulls);
        out.extend(fulls);
        out
    }

    /// Runs every tile of `n` rows through the plan and the fill and counts how often
    /// each (row, keys) entry survives the fill; checks it against the mask.
    fn check_cover(s: &Stream, n: usize, tile: usize, skip: bool) -> Result<(), String> {
        let extents: Vec<usize> = s.axes.iter().map(|a| a.extent).collect();
        let width: usize = s.axes.iter().map(|a| a.block).product();
        let total: usize = extents.iter().product();
        let mut count = vec![0u32; n * total];
        for lo in (0..n).step_by(tile) {
            let hi = (lo + tile).min(n);
            let plan = tile_plan(s, lo, hi, skip);
            for (key0, fresh, full) in leaves(s, &plan) {
                let mut scores = vec![0.0f64; (hi - lo) * width];
                if !full {
                    fill(&mut scores, width, s, lo, hi, &key0, &fresh);
                } else if let Some(x) = scores.iter().position(|x| x.is_infinite()) {
                    return Err(format!("full block {key0:?} has a masked entry {x}"));
                }
                for i in lo..hi {
                    let mut idx = vec![0usize; s.axes.len()];
                    loop {
                        let off: i64 = idx
                            .iter()
                            .zip(&s.score_strides)
                            .map(|(&c, &st)| c as i64 * st)
                            .sum();
                        let v = scores[(i - lo) * width + off as usize];
                        if v == 0.0 {
                            let mut flat = i;
                            for (k, &c) in idx.iter().enumerate() {
                                flat = flat * extents[k] + key0[k] + c;
                            }
                            count[flat] += 1;
                        } else if v != f64::NEG_INFINITY {
                            return Err("the fill wrote something else than -inf".into());
                        }
                        // The next block index, last axis fastest.
                        let mut k = s.axes.len();
                        loop {
                            if k == 0 {
                                break;
                            }
                            k -= 1;
                            idx[k] += 1;
                            if idx[k] < s.axes[k].block {
                                break;
                            }
                            idx[k] = 0;
                        }
                        if idx.iter().all(|&c| c == 0) {
                            break;
                        }
                    }
                }
            }
        }
        for (flat, &c) in count.iter().enumerate() {
            let mut rest = flat;
            let mut keys = vec![0i64; extents.len()];
            for k in (0..extents.len()).rev() {
                keys[k] = (rest % extents[k]) as i64;
                rest /= extents[k];
            }
            let want = u32::from(visible(&s.mask, rest as i64, &keys));
            if c != want {
                return Err(format!(
                    "row {rest} keys {keys:?}: counted {c} times, visible {want}"
                ));
            }
        }
        Ok(())
    }

    #[test]
    fn intervals_of_the_usual_masks() {
        let ext = [10usize];
        let causal = [cmp(CmpOp::Le, -1, &[1], 0)];
        assert_eq!(
            key_interval(&causal, 3, &[], 0, &ext),
            Interval {
                lo: 0,
                hi: 4,
                exact: true
            }
        );
        let strict = [cmp(CmpOp::Lt, -1, &[1], 0)];
        assert!(key_interval(&strict, 0, &[], 0, &ext).is_empty());
        assert_eq!(
            key_interval(&strict, 12, &[], 0, &ext),
            Interval {
                lo: 0,
                hi: 10,
                exact: true
            }
        );
        // i - 3 < j && j <= i: -j + i - 3 < 0.
        let window = [cmp(CmpOp::Lt, 1, &[-1], -3), cmp(CmpOp::Le, -1, &[1], 0)];
        assert_eq!(
            key_interval(&window, 5, &[], 0, &ext),
            Interval {
                lo: 3,
                hi: 6,
                exact: true
            }
        );
        // 2j == i: a point, or nothing for odd rows.
        let eq = [cmp(CmpOp::Eq, -1, &[2], 0)];
        assert_eq!(
            key_interval(&eq, 6, &[], 0, &ext),
            Interval {
                lo: 3,
                hi: 4,
                exact: true
            }
        );
        assert!(key_interval(&eq, 7, &[], 0, &ext).is_empty());
        // A row predicate `i != 2` and a `!=` on the key, which only clears `exact`.
        let ne = [cmp(CmpOp::Ne, 1, &[0], -2)];
        assert!(key_interval(&ne, 2, &[], 0, &ext).is_empty());
        assert_eq!(
            key_interval(&ne, 3, &[], 0, &ext),
            Interval {
                lo: 0,
                hi: 10,
                exact: true
            }
        );
        let ne_key = [cmp(CmpOp::Ne, 0, &[1], -2)];
        assert_eq!(
            key_interval(&ne_key, 3, &[], 0, &ext),
            Interval {
                lo: 0,
                hi: 10,
                exact: false
            }
        );
        // A joint mask j + l <= i: the outer interval is relaxed (l = 0), the inner exact.
        let joint = [cmp(CmpOp::Le, -1, &[1, 1], 0)];
        assert_eq!(
            key_interval(&joint, 4, &[], 0, &[10, 10]),
            Interval {
                lo: 0,
                hi: 5,
                exact: false
            }
        );
        assert_eq!(
            key_interval(&joint, 4, &[3], 1, &[10, 10]),
            Interval {
                lo: 0,
                hi: 2,
                exact: true
            }
        );
    }

    #[test]
    fn causal_tiles_skip_and_shift_back_blocks() {
        // 13 rows, 11 keys, tiles of 4, blocks of 3, j <= i.
        let s = stream(&[(11, 3)], vec![cmp(CmpOp::Le, -1, &[1], 0)]);
        let starts = |lo, hi| {
            tile_plan(&s, lo, hi, true)
                .iter()
                .map(|b| (b.key0, b.fresh, b.full))
                .collect::<Vec<_>>()
        };
        // Rows 0..4 see keys 0..4: blocks at 0 and 1 (shifted back, fresh from 3).
        assert_eq!(starts(0, 4), vec![(0, 0, false), (1, 3, false)]);
        // Rows 4..8 see 0..8: only the first block is full (row 4 does not see key 5).
        assert_eq!(
            starts(4, 8),
            vec![(0, 0, true), (3, 3, false), (5, 6, false)]
        );
        // Rows 12..13 see every key.
        assert_eq!(
            starts(12, 13),
            vec![(0, 0, true), (3, 3, true), (6, 6, true), (8, 9, false)]
        );
        // Without skipping, every position of the whole range, none full.
        let all: Vec<_> = tile_plan(&s, 0, 4, false)
            .iter()
            .map(|b| (b.key0, b.fresh, b.full))
            .collect();
        assert_eq!(
            all,
            vec![(0, 0, false), (3, 3, false), (6, 6, false), (8, 9, false)]
        );
        for skip in [true, false] {
            check_cover(&s, 13, 4, skip).unwrap();
        }
    }

    #[test]
    fn window_masks_skip_blocks_inside_the_hull() {
        // The window i - 2 < j <= i.
        let s = stream(
            &[(20, 2)],
            vec![cmp(CmpOp::Lt, 1, &[-1], -2), cmp(CmpOp::Le, -1, &[1], 0)],
        );
        // Rows 10..12 with window 2 see keys 9..12: blocks 9..11, 10..12 (fresh from 11).
        let plan = tile_plan(&s, 10, 12, true);
        assert_eq!(
            plan.iter().map(|b| (b.key0, b.fresh)).collect::<Vec<_>>(),
            vec![(9, 9), (10, 11)]
        );
        check_cover(&s, 20, 3, true).unwrap();
        // A row predicate that holds for no row of a tile: nothing to visit.
        let none = stream(&[(8, 3)], vec![cmp(CmpOp::Gt, 1, &[0], -5)]);
        assert!(tile_plan(&none, 0, 4, true).is_empty());
        check_cover(&none, 9, 4, true).unwrap();
    }

    #[test]
    fn two_axes_nest_and_cover_once() {
        // j <= i and l <= i, and the joint j + l <= i.
        let sep = stream(
            &[(7, 3), (9, 4)],
            vec![
                cmp(CmpOp::Le, -1, &[1, 0], 0),
                cmp(CmpOp::Le, -1, &[0, 1], 0),
            ],
        );
        let joint = stream(&[(7, 2), (9, 4)], vec![cmp(CmpOp::Le, -1, &[1, 1], 0)]);
        for s in [&sep, &joint] {
            for skip in [true, false] {
                check_cover(s, 9, 4, skip).unwrap();
            }
        }
        // Row 0 sees only (0, 0): one outer block and one inner block.
        let plan = tile_plan(&joint, 0, 1, true);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].inner.len(), 1);
    }

    #[test]
    fn drive_orders_kernels_shifts_and_fills() {
        let mut s = stream(&[(5, 2)], vec![cmp(CmpOp::Le, -1, &[1], 0)]);
        s.axes[0].kernels = (1, 3);
        s.fill_after = 1;
        let g = TileGroup {
            first: 0,
            last: 4,
            extent: 4,
            tile: 4,
            roles: vec![None; 5],
            factors: vec![1; 5],
            local: Vec::new(),
            stream: None,
        };
        let plan = tile_plan(&s, 0, 2, true);
        let mut log = Vec::new();
        drive::<()>(&g, &s, &plan, &mut |op| {
            log.push(format!("{op:?}"));
            Ok(())
        })
        .unwrap();
        // Rows 0..2 see keys 0..2: one block, partial.
        assert_eq!(
            log,
            [
                "Run(0)",
                "Shift { axis: 0, key0: 0 }",
                "Run(1)",
                "Fill { key0: [0], fresh: [0] }",
                "Run(2)",
                "Run(3)",
                "Run(4)"
            ]
        );
    }

    fn arb_cmp(axes: usize) -> impl Strategy<Value = MaskCmp> {
        let op = prop_oneof![
            Just(CmpOp::Lt),
            Just(CmpOp::Le),
            Just(CmpOp::Gt),
            Just(CmpOp::Ge),
            Just(CmpOp::Eq),
            Just(CmpOp::Ne)
        ];
        (
            op,
            -3i64..=3,
            proptest::collection::vec(-3i64..=3, axes),
            -12i64..=12,
        )
            .prop_map(|(op, row, keys, constant)| MaskCmp {
                op,
                row,
                keys,
                constant,
            })
    }

    fn arb_case() -> impl Strategy<Value = (Stream, usize, usize)> {
        (1usize..=2)
            .prop_flat_map(|axes| {
                let cap: usize = if axes == 1 { 40 } else { 12 };
                let axis = (1..=cap).prop_flat_map(|m| (Just(m), 1..=m));
                (
                    proptest::collection::vec(axis, axes),
                    proptest::collection::vec(arb_cmp(axes), 0..=3),
                    1usize..=if axes == 1 { 40 } else { 16 },
                    1usize..=9,
                )
            })
            .prop_map(|(axes, mask, n, tile)| (stream(&axes, mask), n, tile))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Over all tiles, the fresh unmasked entries of the visited blocks are exactly
        /// the visible (row, keys) pairs, each once, with and without skipping.
        #[test]
        fn blocks_and_fill_cover_the_visible_entries_once((s, n, tile) in arb_case()) {
            for skip in [true, false] {
                if let Err(e) = check_cover(&s, n, tile, skip) {
                    return Err(TestCaseError::fail(format!("skip {skip}: {e}\n{s:?}")));
                }
            }
        }

        /// The innermost interval is the exact set of visible keys (unless a `!=` uses the
        /// key), and an outer interval holds every key some inner keys are visible with.
        #[test]
        fn intervals_match_the_mask((s, n, _tile) in arb_case()) {
            let extents: Vec<usize> = s.axes.iter().map(|a| a.extent).collect();
            for i in 0..n as i64 {
                if extents.len() == 1 {
                    let iv = key_interval(&s.mask, i, &[], 0, &extents);
                    for x in 0..extents[0] as i64 {
                        let inside = iv.lo <= x && x < iv.hi;
                        let vis = visible(&s.mask, i, &[x]);
                        prop_assert!(!vis || inside, "row {i} key {x} visible outside {iv:?}");
                        prop_assert!(!iv.exact || vis == inside, "row {i} key {x} {iv:?}");
                    }
                } else {
                    let outer = key_interval(&s.mask, i, &[], 0, &extents);
                    for j in 0..extents[0] as i64 {
                        let iv = key_interval(&s.mask, i, &[j], 1, &extents);
                        for l in 0..extents[1] as i64 {
                            let vis = visible(&s.mask, i, &[j, l]);
                            let inside = iv.lo <= l && l < iv.hi;
                            prop_assert!(!vis || (inside && outer.lo <= j && j < outer.hi), "row {i} keys {j}, {l}");
                            prop_assert!(!iv.exact || vis == inside, "row {i} keys {j}, {l} {iv:?}");
                        }
                    }
                }
            }
        }
    }
}
