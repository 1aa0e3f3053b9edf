//! Strided batched GEMM on top of the `gemm` crate.
//!
//! The compiler labels each index of a contraction batch/M/N/K and passes strides instead
//! of transposing (DESIGN.md §6). Here a [`GemmDesc`] is one GEMM with arbitrary element
//! strides, and [`GemmLoop`]s are the loops around it: batch loops (each iteration writes
//! its own C) and reduction loops (`stride_c == 0`, iterations accumulate into one C).
//!
//! The `gemm` crate computes `dst := alpha*dst + beta*lhs*rhs` and ignores `alpha` when
//! `read_dst` is false: its alpha/beta roles are the reverse of BLAS. Everything here
//! uses BLAS naming (`alpha` scales the product) and translates at the single call site.

use crate::pool;
use crate::{Element, RuntimeError};
use gemm::Parallelism;

/// One loop around a GEMM: `extent` iterations, advancing A, B and C by these element strides.
/// A loop with stride_c == 0 is a reduction: its iterations accumulate into the same C.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmLoop {
    pub extent: usize,
    pub stride_a: isize,
    pub stride_b: isize,
    pub stride_c: isize,
}

/// C[m, n] (+)= alpha * sum_k A[m, k] * B[k, n], element strides (may be any sign, 0, or non-unit).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmDesc {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A: stride per m (row).
    pub a_rs: isize,
    /// A: stride per k (column).
    pub a_cs: isize,
    /// B: stride per k (row).
    pub b_rs: isize,
    /// B: stride per n (column).
    pub b_cs: isize,
    /// C: stride per m.
    pub c_rs: isize,
    /// C: stride per n.
    pub c_cs: isize,
    pub alpha: f64,
    /// false: C is overwritten (its old contents ignored, even NaN); true: C += ...
    pub accumulate: bool,
}

impl GemmDesc {
    /// A row-major, contiguous `C = A·B` of the given sizes (overwriting, alpha 1).
    pub fn row_major(m: usize, n: usize, k: usize) -> GemmDesc {
        GemmDesc {
            m,
            n,
            k,
            a_rs: k as isize,
            a_cs: 1,
            b_rs: n as isize,
            b_cs: 1,
            c_rs: n as isize,
            c_cs: 1,
            alpha: 1.0,
            accumulate: false,
        }
    }
}

/// An element type the GEMM library handles: `f32` or `f64` (sealed through [`Element`]).
pub trait GemmScalar: Element + Copy + Send + Sync + std::ops::Add<Output = Self> + 'static {}
impl GemmScalar for f32 {}
impl GemmScalar for f64 {}

/// Runs the GEMM for every combination of the outer loops (outermost first).
///
/// Within one C region (one combination of the non-reduction loops) the reduction
/// iterations run in order; the first overwrites C unless `desc.accumulate`, the rest
/// accumulate. `k == 0` zeroes C (or leaves it, when accumulating); an outer loop of
/// extent 0, `m == 0` or `n == 0` touch nothing.
///
/// `threads` bounds the parallelism (0 and 1: single-threaded; more than the current
/// rayon pool has is capped to the pool). Many small independent GEMMs run in parallel
/// over the outer iterations, each single-threaded; otherwise each GEMM is threaded by
/// the `gemm` crate.
///
/// # Safety
/// Every address touched must be inside the allocations a, b, c point into; C regions of
/// different non-reduction iterations must not overlap, and within one GEMM distinct
/// (m, n) must be distinct C elements. C must not overlap A or B.
/// [`check_gemm`] checks all of this for slices.
pub unsafe fn gemm<T: GemmScalar>(
    desc: &GemmDesc,
    outer: &[GemmLoop],
    a: *const T,
    b: *const T,
    c: *mut T,
    threads: usize,
) {
    let d = *desc;
    if d.m == 0 || d.n == 0 || outer.iter().any(|l| l.extent == 0) {
        return;
    }
    // Loops of extent 1 change nothing; dropping them keeps the odometers short.
    let (independent, mut reductions): (Vec<GemmLoop>, Vec<GemmLoop>) = outer
        .iter()
        .filter(|l| l.extent > 1)
        .partition(|l| l.stride_c != 0);
    if d.k == 0 {
        // Every reduction iteration would add zero: the first alone sets C.
        reductions.clear();
    }
    let regions = independent
        .iter()
        .fold(1usize, |acc, l| acc.saturating_mul(l.extent));
    let pool_threads = pool::threads();
    let threads = threads.min(pool_threads);
    let work = d.m.saturating_mul(d.n).saturating_mul(d.k);
    let alpha = T::from_f64(d.alpha);
    let ptrs = Ptrs { a, b, c };

    let sums = reductions.iter().fold(1usize, |acc, l| acc.saturating_mul(l.extent));
    let k_total = d.k.saturating_mul(sums);
    let packed = d.m.saturating_add(d.n).saturating_mul(k_total);
    if regions == 1 && sums > 1 && d.m.saturating_mul(d.n) >= 1 << 16 && packed <= 1 << 24 {
        // SAFETY: forwarded from the caller.
        unsafe { packed_sums(&d, &reductions, ptrs, sums, alpha, threads) };
        return;
    }
    if regions == 1 && use_parallel_sums(threads, sums, work, d.m.saturating_mul(d.n)) {
        // SAFETY: forwarded from the caller.
        unsafe { parallel_sums(&d, &reductions, ptrs, sums, alpha, threads) };
        return;
    }
    if use_parallel_outer(threads, regions, work) {
        // More chunks than threads lets idle threads steal, but only when the caller
        // allows the whole pool; otherwise one chunk per allowed thread bounds concurrency.
        let max_chunks = if threads < pool_threads {
            threads
        } else {
            pool_threads.saturating_mul(4)
        };
        pool::parallel_for_max_chunks(regions, 1, max_chunks, &|begin, end| {
            // SAFETY: the caller's contract covers every region; chunks are disjoint sets
            // of regions, whose C ranges do not overlap, so the threads write disjoint memory.
            unsafe {
                run_regions(
                    &d,
                    &independent,
                    &reductions,
                    ptrs.get(),
                    begin,
                    end,
                    alpha,
                    Parallelism::None,
                )
            }
        });
    } else {
        let par = parallelism(threads);
        // SAFETY: forwarded from the caller.
        unsafe {
            run_regions(
                &d,
                &independent,
                &reductions,
                ptrs.get(),
                0,
                regions,
                alpha,
                par,
            )
        }
    }
}

/// Whether to split the reduction iterations of a single C over threads, each summing
/// into a private copy of C: worth it when there are several small GEMMs per thread (one
/// threaded call per iteration would mostly synchronise) and C is small enough to copy.
fn use_parallel_sums(threads: usize, sums: usize, work_per_gemm: usize, c_len: usize) -> bool {
    threads > 1 && sums >= 2 * threads && work_per_gemm < 8 * gemm::get_threading_threshold() && c_len <= 1 << 22
}

/// Runs the reduction iterations of one C region in `threads` contiguous chunks: the
/// first sums straight into C, the others into zero-initialised private row-major
/// partials, which are then added to C.
///
/// # Safety
/// As for [`gemm()`] with a single region.
unsafe fn parallel_sums<T: GemmScalar>(d: &GemmDesc, reductions: &[GemmLoop], ptrs: Ptrs<T>, sums: usize, alpha: T, threads: usize) {
    let chunks = threads.min(sums);
    let (m, n) = (d.m, d.n);
    let mut partials: Vec<Vec<T>> = (1..chunks).map(|_| vec![T::ZERO; m * n]).collect();
    let private = PartialPtrs(partials.iter_mut().map(|p| p.as_mut_ptr()).collect());
    let bounds = |t: usize| (sums * t / chunks, sums * (t + 1) / chunks);
    pool::parallel_for_max_chunks(chunks, 1, chunks, &|begin, end| {
        for t in begin..end {
            let (lo, hi) = bounds(t);
            let (a, b, c) = ptrs.get();
            // Chunk 0 writes C as the caller asked; the others own a row-major partial.
            let (c, desc, first_reads) = if t == 0 {
                (c, *d, d.accumulate)
            } else {
                (private.get(t - 1), GemmDesc { c_rs: n as isize, c_cs: 1, ..*d }, false)
            };
            let mut red = Odometer::at(reductions, lo);
            let mut read_dst = first_reads;
            for _ in lo..hi {
                let [oa, ob, oc] = red.off;
                // SAFETY: reduction iterations stay inside A and B by the caller's
                // contract; the partials are m×n row-major, written by one thread.
                unsafe {
                    one_gemm(
                        &desc,
                        a.wrapping_offset(oa),
                        b.wrapping_offset(ob),
                        if t == 0 { c.wrapping_offset(oc) } else { c },
                        read_dst,
                        alpha,
                        Parallelism::None,
                    )
                };
                read_dst = true;
                red.advance();
            }
        }
    });
    let (_, _, c) = ptrs.get();
    for p in &partials {
        for i in 0..m {
            for j in 0..n {
                let at = (i as isize).wrapping_mul(d.c_rs).wrapping_add((j as isize).wrapping_mul(d.c_cs));
                // SAFETY: (i, j) is an element of C, inside its allocation.
                unsafe {
                    let dst = c.wrapping_offset(at);
                    *dst = *dst + p[i * n + j];
                }
            }
        }
    }
}

/// Runs the reduction iterations of one large C as a single GEMM over the merged K: A's
/// slices are copied side by side into one m×(k·sums) matrix and B's into one
/// (k·sums)×n matrix. Reduction axes that do not merge in memory (`A[m, i, r]` summed
/// over m and r) would otherwise mean `sums` passes over C; the copies cost far less.
///
/// # Safety
/// As for [`gemm()`] with a single region.
unsafe fn packed_sums<T: GemmScalar>(d: &GemmDesc, reductions: &[GemmLoop], ptrs: Ptrs<T>, sums: usize, alpha: T, threads: usize) {
    let (m, n, k) = (d.m, d.n, d.k);
    let kt = k * sums;
    let mut pa = vec![T::ZERO; m * kt];
    let mut pb = vec![T::ZERO; kt * n];
    let (a, b, c) = ptrs.get();
    // Each packed operand is laid out so that the copy reads its source along the
    // smaller stride (a transposing copy is slow in the other order).
    let a_col = d.a_rs.unsigned_abs() <= d.a_cs.unsigned_abs();
    let b_row = d.b_cs.unsigned_abs() <= d.b_rs.unsigned_abs();
    let (a_rs, a_cs) = if a_col { (1, m as isize) } else { (kt as isize, 1) };
    let (b_rs, b_cs) = if b_row { (n as isize, 1) } else { (1, kt as isize) };
    let mut red = Odometer::at(reductions, 0);
    for s in 0..sums {
        let [oa, ob, _] = red.off;
        for kk in 0..k {
            let row = s * k + kk;
            for i in 0..m {
                let at = oa.wrapping_add((i as isize).wrapping_mul(d.a_rs)).wrapping_add((kk as isize).wrapping_mul(d.a_cs));
                // SAFETY: an element of A at a reduction iteration, inside A by the
                // caller's contract.
                pa[(i as isize * a_rs + row as isize * a_cs) as usize] = unsafe { *a.wrapping_offset(at) };
            }
            for j in 0..n {
                let at = ob.wrapping_add((kk as isize).wrapping_mul(d.b_rs)).wrapping_add((j as isize).wrapping_mul(d.b_cs));
                // SAFETY: as for A.
                pb[(row as isize * b_rs + j as isize * b_cs) as usize] = unsafe { *b.wrapping_offset(at) };
            }
        }
        red.advance();
    }
    let desc = GemmDesc { k: kt, a_rs, a_cs, b_rs, b_cs, ..*d };
    let par = parallelism(threads);
    // SAFETY: the packed operands have exactly the extents the descriptor reads; C is
    // the caller's, written as for one GEMM.
    unsafe { one_gemm(&desc, pa.as_ptr(), pb.as_ptr(), c, d.accumulate, alpha, par) };
}

/// The private partials of [`parallel_sums`], one per chunk after the first.
struct PartialPtrs<T>(Vec<*mut T>);

// SAFETY: each partial is written by the one thread that runs its chunk.
unsafe impl<T: Send> Send for PartialPtrs<T> {}
// SAFETY: see `Send`.
unsafe impl<T: Send> Sync for PartialPtrs<T> {}

impl<T> PartialPtrs<T> {
    fn get(&self, k: usize) -> *mut T {
        self.0[k]
    }
}

/// The `gemm` crate's threading for a thread budget (0 and 1: single-threaded).
fn parallelism(threads: usize) -> Parallelism {
    if threads <= 1 {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    }
}

/// Whether to run independent outer iterations in parallel, each GEMM single-threaded.
///
/// Below the `gemm` crate's threading threshold each GEMM would run on one thread anyway,
/// so two or more regions are worth spreading; above it, only when every thread gets
/// several whole GEMMs (the crate's own threading balances one large GEMM better).
fn use_parallel_outer(threads: usize, regions: usize, work_per_gemm: usize) -> bool {
    threads > 1
        && regions >= 2
        && regions.saturating_mul(work_per_gemm) >= PARALLEL_MIN_WORK
        && (work_per_gemm < gemm::get_threading_threshold() || regions >= 4 * threads)
}

/// Multiply-adds below which handing GEMMs to other threads costs more than it saves:
/// waking the pool takes about 10 µs, in which one thread does some 30 000 small
/// multiply-adds. Four 8×8×8 GEMMs (a tiny batched einsum) took 16 µs threaded and
/// 5.5 µs on one thread through the Python package.
const PARALLEL_MIN_WORK: usize = 1 << 15;

/// The three base pointers, shareable across threads for the parallel outer loop.
#[derive(Clone, Copy)]
struct Ptrs<T> {
    a: *const T,
    b: *const T,
    c: *mut T,
}

// SAFETY: the pointers are only dereferenced under `gemm`'s contract, which makes the
// memory written by different threads disjoint; A and B are only read.
unsafe impl<T: Send + Sync> Send for Ptrs<T> {}
// SAFETY: see `Send`.
unsafe impl<T: Send + Sync> Sync for Ptrs<T> {}

impl<T> Ptrs<T> {
    /// Copies the pointers out; a method, so closures capture the whole `Sync` struct
    /// rather than its raw-pointer fields.
    fn get(&self) -> (*const T, *const T, *mut T) {
        (self.a, self.b, self.c)
    }
}

/// Position in a nest of loops with the running element offsets of A, B and C.
struct Odometer<'a> {
    loops: &'a [GemmLoop],
    idx: Vec<usize>,
    off: [isize; 3],
}

impl<'a> Odometer<'a> {
    /// The odometer at linear position `linear` (innermost loop fastest).
    fn at(loops: &'a [GemmLoop], mut linear: usize) -> Self {
        let mut idx = vec![0; loops.len()];
        let mut off = [0isize; 3];
        for (i, l) in loops.iter().enumerate().rev() {
            let v = linear % l.extent;
            linear /= l.extent;
            idx[i] = v;
            let v = v as isize;
            off[0] = off[0].wrapping_add(v.wrapping_mul(l.stride_a));
            off[1] = off[1].wrapping_add(v.wrapping_mul(l.stride_b));
            off[2] = off[2].wrapping_add(v.wrapping_mul(l.stride_c));
        }
        Odometer { loops, idx, off }
    }

    /// Steps to the next position; false after the last one (it wraps to the first).
    fn advance(&mut self) -> bool {
        for (i, l) in self.loops.iter().enumerate().rev() {
            self.idx[i] += 1;
            if self.idx[i] < l.extent {
                self.off[0] = self.off[0].wrapping_add(l.stride_a);
                self.off[1] = self.off[1].wrapping_add(l.stride_b);
                self.off[2] = self.off[2].wrapping_add(l.stride_c);
                return true;
            }
            self.idx[i] = 0;
            let back = (l.extent - 1) as isize;
            self.off[0] = self.off[0].wrapping_sub(back.wrapping_mul(l.stride_a));
            self.off[1] = self.off[1].wrapping_sub(back.wrapping_mul(l.stride_b));
            self.off[2] = self.off[2].wrapping_sub(back.wrapping_mul(l.stride_c));
        }
        false
    }
}

/// Runs regions `begin..end` of the independent loops, each with all its reduction
/// iterations in order.
///
/// # Safety
/// As for [`gemm()`], for the regions in range.
#[allow(clippy::too_many_arguments)]
unsafe fn run_regions<T: GemmScalar>(
    d: &GemmDesc,
    independent: &[GemmLoop],
    reductions: &[GemmLoop],
    (a, b, c): (*const T, *const T, *mut T),
    begin: usize,
    end: usize,
    alpha: T,
    par: Parallelism,
) {
    if begin >= end {
        return;
    }
    let mut region = Odometer::at(independent, begin);
    for _ in begin..end {
        let [ra, rb, rc] = region.off;
        let mut red = Odometer::at(reductions, 0);
        let mut read_dst = d.accumulate;
        loop {
            let [oa, ob, oc] = red.off;
            // SAFETY: the offsets are those of an outer iteration, inside the allocations
            // by the caller's contract; wrapping_offset itself is always sound.
            unsafe {
                one_gemm(
                    d,
                    a.wrapping_offset(ra.wrapping_add(oa)),
                    b.wrapping_offset(rb.wrapping_add(ob)),
                    c.wrapping_offset(rc.wrapping_add(oc)),
                    read_dst,
                    alpha,
                    par,
                );
            }
            read_dst = true;
            if !red.advance() {
                break;
            }
        }
        region.advance();
    }
}

/// One GEMM through the `gemm` crate, in BLAS terms: `C = alpha*A*B (+ C if read_dst)`.
///
/// # Safety
/// As for [`gemm()`], for this one GEMM.
unsafe fn one_gemm<T: GemmScalar>(
    d: &GemmDesc,
    a: *const T,
    b: *const T,
    c: *mut T,
    read_dst: bool,
    alpha: T,
    par: Parallelism,
) {
    // SAFETY: forwarded from the caller. The crate takes (dst, dst_cs, dst_rs, ...) —
    // column stride first — and its `alpha` scales the old dst while `beta` scales the
    // product: the reverse of BLAS. With read_dst false it never reads dst.
    unsafe {
        gemm::gemm(
            d.m,
            d.n,
            d.k,
            c,
            d.c_cs,
            d.c_rs,
            read_dst,
            a,
            d.a_cs,
            d.a_rs,
            b,
            d.b_cs,
            d.b_rs,
            T::ONE,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
}

/// The lowest and highest element offsets an operand's strides reach over the given
/// dimensions `(extent, stride)`, or None when one is empty or the offsets overflow.
fn reach(dims: &[(usize, isize)]) -> Option<(isize, isize)> {
    let (mut lo, mut hi) = (0isize, 0isize);
    for &(e, s) in dims {
        if e == 0 {
            return None;
        }
        let span = isize::try_from(e - 1).ok()?.checked_mul(s)?;
        if span < 0 {
            lo = lo.checked_add(span)?;
        } else {
            hi = hi.checked_add(span)?;
        }
    }
    Some((lo, hi))
}

/// Whether distinct indices of the dimensions `(extent, stride)` always reach distinct
/// offsets. The test is conservative (it may refuse some exotic interleaved layouts):
/// sorted by |stride|, each stride must step past everything the smaller ones reach.
fn injective(dims: &[(usize, isize)]) -> bool {
    let mut dims: Vec<(usize, usize)> = dims
        .iter()
        .filter(|&&(e, _)| e > 1)
        .map(|&(e, s)| (e, s.unsigned_abs()))
        .collect();
    dims.sort_by_key(|&(_, s)| s);
    let mut span = 0usize;
    for (e, s) in dims {
        if s <= span {
            return false;
        }
        match (e - 1).checked_mul(s).and_then(|x| x.checked_add(span)) {
            Some(x) => span = x,
            None => return false,
        }
    }
    true
}

/// Checks that a GEMM over slices is safe to run: every element touched is inside its
/// slice (`*_origin` is the index of element (0, 0, outer 0) in each slice), C regions of
/// independent iterations do not overlap, and C does not alias A or B (distinct slices).
///
/// Used by [`gemm_slices`] and useful to validate what a compiler produced.
pub fn check_gemm(
    desc: &GemmDesc,
    outer: &[GemmLoop],
    (a_len, a_origin): (usize, usize),
    (b_len, b_origin): (usize, usize),
    (c_len, c_origin): (usize, usize),
) -> Result<(), RuntimeError> {
    let d = desc;
    if d.m == 0 || d.n == 0 || outer.iter().any(|l| l.extent == 0) {
        return Ok(());
    }
    let mut dims_a = vec![(d.m, d.a_rs), (d.k, d.a_cs)];
    let mut dims_b = vec![(d.k, d.b_rs), (d.n, d.b_cs)];
    let mut dims_c = vec![(d.m, d.c_rs), (d.n, d.c_cs)];
    for l in outer {
        dims_a.push((l.extent, l.stride_a));
        dims_b.push((l.extent, l.stride_b));
        if l.stride_c != 0 {
            dims_c.push((l.extent, l.stride_c));
        }
    }
    let inside = |name: &str, dims: &[(usize, isize)], len: usize, origin: usize| {
        let bad = || {
            RuntimeError::Invalid(format!(
                "GEMM operand {name} reaches outside its {len} elements (origin {origin})"
            ))
        };
        let (lo, hi) = reach(dims).ok_or_else(bad)?;
        let origin = isize::try_from(origin).map_err(|_| bad())?;
        let first = origin.checked_add(lo).ok_or_else(bad)?;
        let last = origin.checked_add(hi).ok_or_else(bad)?;
        if first < 0 || last >= isize::try_from(len).map_err(|_| bad())? {
            return Err(bad());
        }
        Ok(())
    };
    if d.k > 0 {
        inside("A", &dims_a, a_len, a_origin)?;
        inside("B", &dims_b, b_len, b_origin)?;
    }
    inside("C", &dims_c, c_len, c_origin)?;
    if !injective(&dims_c) {
        return Err(RuntimeError::Invalid(
            "GEMM output C: distinct elements or independent iterations share memory".into(),
        ));
    }
    Ok(())
}

/// [`gemm()`] on slices, after [`check_gemm`]; `*_origin` is the index of element
/// (0, 0, outer 0) in each slice, so negative strides can walk down from it.
#[allow(clippy::too_many_arguments)]
pub fn gemm_slices<T: GemmScalar>(
    desc: &GemmDesc,
    outer: &[GemmLoop],
    (a, a_origin): (&[T], usize),
    (b, b_origin): (&[T], usize),
    (c, c_origin): (&mut [T], usize),
    threads: usize,
) -> Result<(), RuntimeError> {
    check_gemm(
        desc,
        outer,
        (a.len(), a_origin),
        (b.len(), b_origin),
        (c.len(), c_origin),
    )?;
    if desc.m == 0 || desc.n == 0 || outer.iter().any(|l| l.extent == 0) {
        return Ok(());
    }
    // The origins are in bounds (checked above: the origin is reached at index zero),
    // except for A and B when k == 0, which are then never read.
    let a_ptr = a.as_ptr().wrapping_add(a_origin);
    let b_ptr = b.as_ptr().wrapping_add(b_origin);
    let c_ptr = c.as_mut_ptr().wrapping_add(c_origin);
    // SAFETY: check_gemm proved every touched element inside its slice and the C regions
    // disjoint; `&mut [T]` for C cannot alias the shared A and B slices.
    unsafe { gemm(desc, outer, a_ptr, b_ptr, c_ptr, threads) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_outer_only_for_many_small_gemms() {
        assert!(use_parallel_outer(2, 100, 8 * 8 * 8));
        assert!(use_parallel_outer(2, 2, 32 * 32 * 32));
        // A tiny batch stays on the calling thread.
        assert!(!use_parallel_outer(2, 4, 8 * 8 * 8));
        assert!(!use_parallel_outer(1, 100, 8 * 8 * 8));
        assert!(!use_parallel_outer(2, 1, 8 * 8 * 8));
        assert!(!use_parallel_outer(2, 3, 1024 * 1024 * 1024));
        assert!(use_parallel_outer(2, 8, 1024 * 1024 * 1024));
    }

    #[test]
    fn odometer_walks_every_position_in_order() {
        let loops = [
            GemmLoop {
                extent: 2,
                stride_a: 100,
                stride_b: -1,
                stride_c: 0,
            },
            GemmLoop {
                extent: 3,
                stride_a: 1,
                stride_b: 10,
                stride_c: 7,
            },
        ];
        let mut o = Odometer::at(&loops, 0);
        let mut seen = vec![];
        loop {
            seen.push(o.off);
            if !o.advance() {
                break;
            }
        }
        let want: Vec<[isize; 3]> = (0..2)
            .flat_map(|i| (0..3).map(move |j| [100 * i + j, -i + 10 * j, 7 * j]))
            .collect();
        assert_eq!(seen, want);
        for (lin, w) in want.iter().enumerate() {
            assert_eq!(Odometer::at(&loops, lin).off, *w);
        }
        assert_eq!(o.off, [0, 0, 0], "wraps to the start");
    }

    #[test]
    fn injectivity_check() {
        assert!(injective(&[(4, 1), (3, 4)]));
        assert!(injective(&[(4, -1), (3, 8), (2, -100)]));
        assert!(!injective(&[(4, 1), (3, 3)]));
        assert!(!injective(&[(4, 0)]));
        assert!(injective(&[(1, 0), (5, 1)]));
    }
}
