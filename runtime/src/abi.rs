//! The `extern "C"` ABI between generated kernels and the runtime.
//!
//! Generated kernels are leaves: they have the [`KernelFn`] signature and call nothing
//! in the runtime. The executor drives them, handing parallel ones to
//! [`tessera_rt_parallel_for`], and runs GEMM kernels itself through the Rust
//! [`crate::gemm::gemm`] (there is no C entry point for GEMMs, since no generated code
//! calls one). A Rust panic cannot unwind through these functions: should one happen
//! (a bug), the process aborts instead of unwinding into generated code.

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
}
