//! The loop IR's GEMMs (row-major indexing, any non-negative strides, outer loops) as
//! cuBLAS strided-batched calls (column-major, one batch stride).
//!
//! Pure index arithmetic, always built and tested on the CPU against the host form of
//! [`BlasGemm`], so that the CUDA executor's GEMMs are right before a GPU ever runs them.
//! A GEMM whose layout has no cuBLAS form (an operand with no unit stride, overlapping
//! rows, negative strides, sizes beyond `i32`) maps to None; the pipeline then lowers the
//! program's contractions to loop kernels instead.

use crate::loops::Gemm;
use tessera_runtime::BlasGemm;

/// Host loops around one call are unrolled into calls; beyond this many the GEMM is
/// better as loop kernels.
const MAX_CALLS: usize = 4096;

/// One cuBLAS call: the operands' buffers at element offsets. `swap` says that cuBLAS's
/// A is the loop IR's B (and B its A): a row-major C is computed as `Cᵀ = Bᵀ·Aᵀ`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlasCall {
    pub gemm: BlasGemm,
    pub swap: bool,
    pub a_offset: usize,
    pub b_offset: usize,
    pub c_offset: usize,
}

/// The leading dimension of an `r × c` matrix with strides `(sr, sc)` read column-major.
fn col_major(r: usize, c: usize, sr: isize, sc: isize) -> Option<i32> {
    if sr != 1 && r > 1 {
        return None;
    }
    let ld = if c <= 1 { r.max(1) as isize } else { sc };
    if ld < r.max(1) as isize {
        return None;
    }
    i32::try_from(ld).ok()
}

/// An operand: column-major as it is, or transposed.
fn operand(r: usize, c: usize, sr: isize, sc: isize) -> Option<(bool, i32)> {
    // An empty operand (k = 0) is never read.
    if r == 0 || c == 0 {
        return i32::try_from(r.max(1)).ok().map(|ld| (false, ld));
    }
    col_major(r, c, sr, sc).map(|ld| (false, ld)).or_else(|| col_major(c, r, sc, sr).map(|ld| (true, ld)))
}

/// The cuBLAS calls that compute `g`, in order, or None when it has no cuBLAS form.
pub fn blas_calls(g: &Gemm) -> Option<Vec<BlasCall>> {
    let strides = g.a_strides.iter().chain(&g.b_strides).chain(&g.c_strides);
    let outer = g.outer.iter().flat_map(|l| [l.stride_a, l.stride_b, l.stride_c]);
    if strides.chain(outer.collect::<Vec<_>>().iter()).any(|&s| s < 0) {
        return None;
    }
    if g.m == 0 || g.n == 0 || g.outer.iter().any(|l| l.extent == 0) {
        return Some(Vec::new());
    }
    let [as0, as1] = g.a_strides;
    let [bs0, bs1] = g.b_strides;
    let [cs0, cs1] = g.c_strides;
    let (m, n, k) = (i32::try_from(g.m).ok()?, i32::try_from(g.n).ok()?, i32::try_from(g.k).ok()?);
    let beta = if g.accumulate { 1.0 } else { 0.0 };
    // C as it is (column-major), else Cᵀ = Bᵀ·Aᵀ.
    let (base, swap) = if let Some(ldc) = col_major(g.m, g.n, cs0, cs1) {
        let (transa, lda) = operand(g.m, g.k, as0, as1)?;
        let (transb, ldb) = operand(g.k, g.n, bs0, bs1)?;
        let call = BlasGemm { transa, transb, m, n, k, lda, ldb, ldc, stride_a: 0, stride_b: 0, stride_c: 0, batch: 1, alpha: g.alpha, beta };
        (call, false)
    } else {
        let ldc = col_major(g.n, g.m, cs1, cs0)?;
        let (transa, lda) = operand(g.n, g.k, bs1, bs0)?;
        let (transb, ldb) = operand(g.k, g.m, as1, as0)?;
        let call = BlasGemm { transa, transb, m: n, n: m, k, lda, ldb, ldc, stride_a: 0, stride_b: 0, stride_c: 0, batch: 1, alpha: g.alpha, beta };
        (call, true)
    };
    // The innermost outer loop that writes distinct C matrices is cuBLAS's batch; the
    // others run on the host, in the loop IR's order.
    let batch = g.outer.iter().rposition(|l| l.extent > 1 && l.stride_c != 0);
    let mut call = base;
    if let Some(i) = batch {
        let l = &g.outer[i];
        let (sa, sb) = if swap { (l.stride_b, l.stride_a) } else { (l.stride_a, l.stride_b) };
        call.stride_a = sa as i64;
        call.stride_b = sb as i64;
        call.stride_c = l.stride_c as i64;
        call.batch = i32::try_from(l.extent).ok()?;
    }
    let host: Vec<_> = g.outer.iter().enumerate().filter(|(i, _)| Some(*i) != batch).map(|(_, l)| l).collect();
    let count: usize = host.iter().map(|l| l.extent).try_fold(1usize, |a, e| a.checked_mul(e))?;
    if count > MAX_CALLS {
        return None;
    }
    let mut calls = Vec::with_capacity(count);
    let mut idx = vec![0usize; host.len()];
    for _ in 0..count {
        let off = |f: fn(&crate::loops::GemmLoop) -> isize| -> usize {
            host.iter().zip(&idx).map(|(l, &i)| f(l) as usize * i).sum()
        };
        let (oa, ob, oc) = (off(|l| l.stride_a), off(|l| l.stride_b), off(|l| l.stride_c));
        let (a_offset, b_offset) = if swap { (ob, oa) } else { (oa, ob) };
        // Loops that do not advance C sum into it: after their first iteration the
        // call adds to C (the runtime's `gemm` semantics).
        let summing = host.iter().zip(&idx).any(|(l, &i)| l.stride_c == 0 && i > 0);
        let gemm = BlasGemm { beta: if summing { 1.0 } else { call.beta }, ..call };
        calls.push(BlasCall { gemm, swap, a_offset, b_offset, c_offset: oc });
        // The next host index, innermost fastest.
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < host[d].extent {
                break;
            }
            idx[d] = 0;
        }
    }
    Some(calls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loops::{BufId, GemmLoop};

    /// The loop IR's meaning of a GEMM, directly.
    fn reference(g: &Gemm, a: &[f64], b: &[f64], c: &mut [f64]) {
        let combos: usize = g.outer.iter().map(|l| l.extent).product();
        // A C region's first iteration overwrites it (unless accumulating); the
        // iterations of loops that do not advance C add to it.
        let mut seen = std::collections::HashSet::new();
        for t in 0..combos {
            let (mut oa, mut ob, mut oc, mut rest) = (0isize, 0isize, 0isize, t);
            for l in g.outer.iter().rev() {
                let i = (rest % l.extent) as isize;
                rest /= l.extent;
                oa += i * l.stride_a;
                ob += i * l.stride_b;
                oc += i * l.stride_c;
            }
            let add = g.accumulate || !seen.insert(oc);
            for i in 0..g.m as isize {
                for j in 0..g.n as isize {
                    let mut s = 0.0;
                    for l in 0..g.k as isize {
                        s += a[(oa + i * g.a_strides[0] + l * g.a_strides[1]) as usize]
                            * b[(ob + l * g.b_strides[0] + j * g.b_strides[1]) as usize];
                    }
                    let at = (oc + i * g.c_strides[0] + j * g.c_strides[1]) as usize;
                    c[at] = g.alpha * s + if add { c[at] } else { 0.0 };
                }
            }
        }
    }

    fn run_calls(calls: &[BlasCall], a: &[f64], b: &[f64], c: &mut [f64]) {
        for x in calls {
            let (p, q) = if x.swap { (b, a) } else { (a, b) };
            x.gemm.run_host((p, x.a_offset), (q, x.b_offset), (c, x.c_offset));
        }
    }

    /// Strides of an `r × c` matrix: row-major or column-major, with padding.
    fn strides(r: usize, c: usize, col: bool, pad: usize) -> [isize; 2] {
        if col {
            [1, (r + pad) as isize]
        } else {
            [(c + pad) as isize, 1]
        }
    }

    fn extent_of(shape: (usize, usize), s: [isize; 2], outer: &[(usize, isize)]) -> usize {
        let last = (shape.0.max(1) - 1) as isize * s[0] + (shape.1.max(1) - 1) as isize * s[1];
        let o: isize = outer.iter().map(|&(e, st)| (e.max(1) - 1) as isize * st).sum();
        (last + o + 1) as usize
    }

    #[test]
    fn every_layout_agrees_with_the_loop_semantics() {
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let mut mapped = 0;
        for case in 0..600 {
            let (m, n, k) = (1 + next(4) as usize, 1 + next(4) as usize, next(4) as usize);
            let (ca, cb, cc) = (next(2) == 1, next(2) == 1, next(2) == 1);
            let (pa, pb, pc) = (next(2) as usize, next(2) as usize, next(2) as usize);
            let a_strides = strides(m, k, ca, pa);
            let b_strides = strides(k, n, cb, pb);
            let c_strides = strides(m, n, cc, pc);
            let (asz, bsz, csz) = (extent_of((m, k), a_strides, &[]), extent_of((k, n), b_strides, &[]), extent_of((m, n), c_strides, &[]));
            let mut outer = Vec::new();
            let (mut sa, mut sb, mut sc) = (asz as isize, bsz as isize, csz as isize);
            for _ in 0..next(3) {
                let e = 1 + next(3) as usize;
                // Operands may be broadcast over a loop (stride 0); a loop that does not
                // advance C sums into it.
                let a = if next(3) == 0 { 0 } else { sa };
                let b = if next(3) == 0 { 0 } else { sb };
                let c = if next(3) == 0 { 0 } else { sc };
                outer.insert(0, GemmLoop { extent: e, stride_a: a, stride_b: b, stride_c: c });
                sa *= if a == 0 { 1 } else { e as isize };
                sb *= if b == 0 { 1 } else { e as isize };
                sc *= if c == 0 { 1 } else { e as isize };
            }
            let g = Gemm {
                a: BufId(0), b: BufId(1), c: BufId(2), m, n, k, a_strides, b_strides, c_strides,
                outer: outer.clone(), alpha: if case % 3 == 0 { -0.5 } else { 1.0 }, accumulate: case % 2 == 0,
                step: 0, roles: String::new(),
            };
            let len = |s: isize| s.max(1) as usize + 8;
            let a: Vec<f64> = (0..len(sa)).map(|_| next(17) as f64 - 8.0).collect();
            let b: Vec<f64> = (0..len(sb)).map(|_| next(13) as f64 - 6.0).collect();
            let c0: Vec<f64> = (0..len(sc)).map(|_| next(11) as f64).collect();
            let mut want = c0.clone();
            reference(&g, &a, &b, &mut want);
            let calls = blas_calls(&g).unwrap_or_else(|| panic!("case {case}: no cuBLAS form for {g:?}"));
            mapped += 1;
            let mut got = c0.clone();
            run_calls(&calls, &a, &b, &mut got);
            assert_eq!(got, want, "case {case}: {g:?}\n{calls:?}");
        }
        assert_eq!(mapped, 600);
    }

    #[test]
    fn layouts_without_a_unit_stride_have_no_cublas_form() {
        let g = Gemm {
            a: BufId(0), b: BufId(1), c: BufId(2), m: 3, n: 3, k: 3,
            a_strides: [6, 2], b_strides: [3, 1], c_strides: [3, 1],
            outer: vec![], alpha: 1.0, accumulate: false, step: 0, roles: String::new(),
        };
        assert_eq!(blas_calls(&g), None);
        let broadcast_rows = Gemm { a_strides: [0, 1], ..g.clone() };
        assert_eq!(blas_calls(&broadcast_rows), None);
        let fine = Gemm { a_strides: [3, 1], ..g };
        assert_eq!(blas_calls(&fine).map(|c| c.len()), Some(1));
    }
}
