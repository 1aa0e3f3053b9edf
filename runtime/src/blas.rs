//! One strided-batched GEMM in BLAS's column-major terms, the form cuBLAS takes, and a
//! host implementation of exactly those semantics (what tests check a mapping against).
//!
//! The type is always built, so that the compiler's mapping from its row-major,
//! arbitrarily strided GEMMs to this form is tested without a GPU.

use crate::Element;

/// `C_i = alpha · op(A_i) · op(B_i) + beta · C_i` for `i < batch`: `op` transposes when
/// `trans*` is set, every matrix is column-major (element `(r, c)` at `r + c·ld`),
/// `C_i` is `m × n`, `op(A_i)` is `m × k`, `op(B_i)` is `k × n`, and batch `i` starts
/// `i · stride_*` elements after the base address. `beta = 0` ignores C's old values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlasGemm {
    pub transa: bool,
    pub transb: bool,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub lda: i32,
    pub ldb: i32,
    pub ldc: i32,
    pub stride_a: i64,
    pub stride_b: i64,
    pub stride_c: i64,
    pub batch: i32,
    pub alpha: f64,
    pub beta: f64,
}

impl BlasGemm {
    /// Runs the call on host memory, with `a`, `b`, `c` the base offsets in the slices.
    /// Panics when an element lies outside its slice (a test helper, like cuBLAS on a
    /// device, trusts its arguments).
    pub fn run_host<T: Element>(&self, a: (&[T], usize), b: (&[T], usize), c: (&mut [T], usize)) {
        let at = |base: usize, stride: i64, i: i32, r: i32, col: i32, ld: i32| {
            (base as i64 + stride * i64::from(i) + i64::from(r) + i64::from(col) * i64::from(ld)) as usize
        };
        for i in 0..self.batch {
            for r in 0..self.m {
                for col in 0..self.n {
                    let mut acc = 0.0f64;
                    for l in 0..self.k {
                        let x = if self.transa {
                            a.0[at(a.1, self.stride_a, i, l, r, self.lda)]
                        } else {
                            a.0[at(a.1, self.stride_a, i, r, l, self.lda)]
                        };
                        let y = if self.transb {
                            b.0[at(b.1, self.stride_b, i, col, l, self.ldb)]
                        } else {
                            b.0[at(b.1, self.stride_b, i, l, col, self.ldb)]
                        };
                        acc += x.to_f64() * y.to_f64();
                    }
                    let o = at(c.1, self.stride_c, i, r, col, self.ldc);
                    let old = if self.beta == 0.0 { 0.0 } else { self.beta * c.0[o].to_f64() };
                    c.0[o] = T::from_f64(self.alpha * acc + old);
                }
            }
        }
    }
}
