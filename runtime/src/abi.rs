//! The `extern "C"` ABI through which compiled kernels call the runtime.
//!
//! Generated code knows only these symbols and the `#[repr(C)]` layouts of
//! [`GemmDesc`] and [`GemmLoop`]; that is what keeps the compiler crate out of the
//! runtime's dependencies. A Rust panic cannot unwind through these functions: should
//! one happen (a bug), the process aborts instead of unwinding into generated code.

use crate::gemm::{gemm, GemmDesc, GemmLoop, GemmScalar};
use crate::pool;

/// A compiled loop kernel: `args` points to an array of buffer base pointers; it runs outer-loop iterations begin..end.
pub type KernelFn = unsafe extern "C" fn(args: *const *mut u8, begin: usize, end: usize);

/// The kernel's argument array, shared read-only by every thread of one parallel loop.
struct SharedArgs(*const *mut u8);

// SAFETY: the array is only read while the loop runs, and the caller guarantees that it
// stays alive and that kernel chunks write disjoint memory.
unsafe impl Send for SharedArgs {}
// SAFETY: see `Send`.
unsafe impl Sync for SharedArgs {}

impl SharedArgs {
    /// The pointer; a method, so closures capture the `Sync` wrapper, not the raw field.
    fn get(&self) -> *const *mut u8 {
        self.0
    }
}

/// Runs `f(args, begin, end)` over chunks covering `0..n` on the thread pool, as
/// [`pool::parallel_for`] does (chunks of at least `grain` iterations).
///
/// # Safety
/// `f` must be safe to call with `args` on any range inside `0..n`, from several threads
/// at once for disjoint ranges; `args` must stay valid until this returns.
#[no_mangle]
pub unsafe extern "C" fn tessera_rt_parallel_for(
    f: KernelFn,
    args: *const *mut u8,
    n: usize,
    grain: usize,
) {
    let args = SharedArgs(args);
    pool::parallel_for(n, grain, &|begin, end| {
        // SAFETY: the caller's contract: `f` accepts any sub-range from any thread.
        unsafe { f(args.get(), begin, end) }
    });
}

/// Reads the descriptor and outer loops and runs [`gemm()`].
///
/// # Safety
/// As for [`tessera_rt_gemm_f32`].
unsafe fn gemm_ffi<T: GemmScalar>(
    desc: *const GemmDesc,
    outer: *const GemmLoop,
    n_outer: usize,
    a: *const T,
    b: *const T,
    c: *mut T,
    threads: usize,
) {
    if desc.is_null() || (outer.is_null() && n_outer > 0) {
        return;
    }
    // SAFETY: `desc` is non-null and valid by the caller's contract.
    let desc = unsafe { &*desc };
    let outer = if n_outer == 0 {
        &[][..]
    } else {
        // SAFETY: non-null and valid for `n_outer` loops by the caller's contract.
        unsafe { std::slice::from_raw_parts(outer, n_outer) }
    };
    // SAFETY: forwarded from the caller.
    unsafe { gemm(desc, outer, a, b, c, threads) }
}

/// [`gemm()`] for f32 through the C ABI. A null `desc` (or a null `outer` with
/// `n_outer > 0`) does nothing; `outer` may be null when `n_outer == 0`.
///
/// # Safety
/// `desc` points to a valid descriptor and `outer` to `n_outer` loops; the pointers and
/// strides satisfy [`gemm()`]'s contract.
#[no_mangle]
pub unsafe extern "C" fn tessera_rt_gemm_f32(
    desc: *const GemmDesc,
    outer: *const GemmLoop,
    n_outer: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    threads: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemm_ffi(desc, outer, n_outer, a, b, c, threads) }
}

/// [`gemm()`] for f64 through the C ABI; see [`tessera_rt_gemm_f32`].
///
/// # Safety
/// As for [`tessera_rt_gemm_f32`].
#[no_mangle]
pub unsafe extern "C" fn tessera_rt_gemm_f64(
    desc: *const GemmDesc,
    outer: *const GemmLoop,
    n_outer: usize,
    a: *const f64,
    b: *const f64,
    c: *mut f64,
    threads: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { gemm_ffi(desc, outer, n_outer, a, b, c, threads) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A "compiled kernel": args[0] is a counter array; marks iterations begin..end.
    unsafe extern "C" fn mark(args: *const *mut u8, begin: usize, end: usize) {
        // SAFETY: the test passes one pointer to an array of `n` AtomicU32.
        unsafe {
            let counters = (*args).cast::<AtomicU32>();
            for i in begin..end {
                (*counters.add(i)).fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn parallel_for_through_the_abi_runs_each_iteration_once() {
        let n = 1000;
        let counters: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
        let args = [counters.as_ptr() as *mut u8];
        // SAFETY: `mark` touches only its own range of the counters.
        unsafe { tessera_rt_parallel_for(mark, args.as_ptr(), n, 7) };
        assert!(counters.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        // SAFETY: n == 0 runs nothing.
        unsafe { tessera_rt_parallel_for(mark, args.as_ptr(), 0, 1) };
    }

    #[test]
    fn gemm_through_the_abi() {
        let desc = GemmDesc::row_major(2, 2, 3);
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut c = [f32::NAN; 4];
        // SAFETY: the row-major descriptor fits the arrays; no outer loops.
        unsafe {
            tessera_rt_gemm_f32(
                &desc,
                std::ptr::null(),
                0,
                a.as_ptr(),
                b.as_ptr(),
                c.as_mut_ptr(),
                2,
            )
        };
        assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);

        // Two batches of 1x1x1, the second through an outer loop.
        let desc = GemmDesc::row_major(1, 1, 1);
        let outer = [GemmLoop {
            extent: 2,
            stride_a: 1,
            stride_b: 1,
            stride_c: 1,
        }];
        let (a, b, mut c) = ([2.0f64, 3.0], [5.0f64, 7.0], [0.0f64; 2]);
        // SAFETY: two 1x1 GEMMs at offsets 0 and 1 of two-element arrays.
        unsafe {
            tessera_rt_gemm_f64(
                &desc,
                outer.as_ptr(),
                1,
                a.as_ptr(),
                b.as_ptr(),
                c.as_mut_ptr(),
                1,
            )
        };
        assert_eq!(c, [10.0, 21.0]);
        // SAFETY: a null descriptor is documented to do nothing.
        unsafe {
            tessera_rt_gemm_f64(
                std::ptr::null(),
                outer.as_ptr(),
                1,
                a.as_ptr(),
                b.as_ptr(),
                c.as_mut_ptr(),
                1,
            )
        };
        assert_eq!(c, [10.0, 21.0]);
    }
}
