//! The runtime's thread pool: rayon, with chunked parallel loops for compiled kernels.
//!
//! Work runs on the rayon pool of the calling thread (the global one unless inside
//! [`with_threads`]). Panics are never swallowed: a panic in any chunk is re-raised on
//! the calling thread once the loop has stopped, like rayon's own iterators do, so the
//! caller may catch it with `std::panic::catch_unwind`.

use crate::RuntimeError;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// How many chunks per thread `parallel_for` makes at most: a few, so that a thread that
/// finishes early can steal work, but not so many that scheduling overhead shows.
const CHUNKS_PER_THREAD: usize = 4;

/// Number of threads of the pool the caller runs in.
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Runs `f(begin, end)` over contiguous chunks that exactly cover `0..n`, in parallel.
///
/// Every chunk holds at least `grain` items (`grain` 0 counts as 1), and there are at
/// most `threads() * 4` chunks, of sizes that differ by at most one. With a single chunk
/// `f` runs inline on the calling thread; with `n == 0` it does not run at all.
/// A panic in `f` propagates to the caller.
pub fn parallel_for(n: usize, grain: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    parallel_for_max_chunks(n, grain, threads().saturating_mul(CHUNKS_PER_THREAD), f);
}

/// [`parallel_for`] with an explicit cap on the number of chunks (at least 1); the
/// cap also bounds how many threads work at once.
pub(crate) fn parallel_for_max_chunks(
    n: usize,
    grain: usize,
    max_chunks: usize,
    f: &(dyn Fn(usize, usize) + Sync),
) {
    if n == 0 {
        return;
    }
    let chunks = chunk_count(n, grain, max_chunks);
    if chunks == 1 {
        f(0, n);
        return;
    }
    (0..chunks).into_par_iter().with_max_len(1).for_each(|i| {
        let (begin, end) = chunk_bounds(n, chunks, i);
        f(begin, end);
    });
}

/// The number of chunks: as many as fit `grain` items each, capped at `max_chunks`.
fn chunk_count(n: usize, grain: usize, max_chunks: usize) -> usize {
    (n / grain.max(1)).clamp(1, max_chunks.max(1))
}

/// Bounds of chunk `i` of `chunks` near-equal chunks of `0..n`; the first `n % chunks`
/// chunks get one extra item. Written without `i * n` so that it cannot overflow.
fn chunk_bounds(n: usize, chunks: usize, i: usize) -> (usize, usize) {
    let base = n / chunks;
    let rem = n % chunks;
    let begin = i * base + i.min(rem);
    let len = base + usize::from(i < rem);
    (begin, begin + len)
}

/// Runs `op` inside a rayon pool of exactly `k` threads, so that `threads()`,
/// `parallel_for` and GEMM inside it use `k` threads.
///
/// Pools are built once per `k` and kept for the life of the process (their threads idle
/// when unused), because starting threads on every call would cost more than small
/// programs do. `k == 0` runs `op` in the caller's current pool. Fails only when the
/// operating system refuses to start the threads.
pub fn with_threads<R: Send>(k: usize, op: impl FnOnce() -> R + Send) -> Result<R, RuntimeError> {
    // Outside any pool `threads()` is the global pool's size, which parallel work from
    // this thread would use, so equality means we are already where `op` should run.
    if k == 0 || k == threads() {
        return Ok(op());
    }
    Ok(pool_of(k)?.install(op))
}

/// The cached pool of `k` threads, built on first use.
fn pool_of(k: usize) -> Result<Arc<rayon::ThreadPool>, RuntimeError> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let pools = POOLS.get_or_init(Default::default);
    // A poisoned lock only means another thread panicked while inserting; the map is
    // still consistent (insertion is a single call), so keep using it.
    let mut map = pools.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(pool) = map.get(&k) {
        return Ok(Arc::clone(pool));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(k)
        .thread_name(move |i| format!("tessera-{k}-{i}"))
        .build()
        .map_err(|e| RuntimeError::ThreadPool {
            threads: k,
            reason: e.to_string(),
        })?;
    let pool = Arc::new(pool);
    map.insert(k, Arc::clone(&pool));
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs `parallel_for` and returns the chunks it made, sorted, after checking that
    /// they cover `0..n` exactly once.
    fn chunks_of(n: usize, grain: usize) -> Vec<(usize, usize)> {
        let seen: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        let chunks = Mutex::new(Vec::new());
        parallel_for(n, grain, &|b, e| {
            assert!(b < e && e <= n);
            for s in &seen[b..e] {
                s.fetch_add(1, Ordering::Relaxed);
            }
            chunks.lock().unwrap().push((b, e));
        });
        assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1));
        let mut chunks = chunks.into_inner().unwrap();
        chunks.sort();
        chunks
    }

    #[test]
    fn covers_every_index_once_and_respects_grain() {
        for n in [1, 2, 3, 7, 10, 64, 100, 1000, 12345] {
            for grain in [0, 1, 2, 4, 5, 64, 1000, 20000] {
                let chunks = chunks_of(n, grain);
                assert!(chunks.len() <= threads() * CHUNKS_PER_THREAD);
                if chunks.len() > 1 {
                    assert!(chunks.iter().all(|&(b, e)| e - b >= grain), "{n} {grain}");
                }
                let sizes: Vec<usize> = chunks.iter().map(|&(b, e)| e - b).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "unbalanced chunks {sizes:?}");
            }
        }
    }

    #[test]
    fn n_zero_runs_nothing() {
        parallel_for(0, 1, &|_, _| panic!("must not run"));
    }

    #[test]
    fn one_chunk_runs_inline() {
        let caller = std::thread::current().id();
        parallel_for(10, 100, &|b, e| {
            assert_eq!((b, e), (0, 10));
            assert_eq!(std::thread::current().id(), caller);
        });
    }

    #[test]
    fn chunk_bounds_do_not_overflow() {
        let n = usize::MAX;
        let chunks = 7;
        let mut next = 0;
        for i in 0..chunks {
            let (b, e) = chunk_bounds(n, chunks, i);
            assert_eq!(b, next);
            next = e;
        }
        assert_eq!(next, n);
    }

    #[test]
    fn panics_propagate() {
        let r = std::panic::catch_unwind(|| {
            parallel_for(1000, 1, &|b, _| {
                if b > 500 {
                    panic!("boom");
                }
            })
        });
        assert!(r.is_err());
    }

    #[test]
    fn with_threads_sets_the_pool_size() {
        for k in [1, 3, 2, 3] {
            let seen = with_threads(k, || {
                let count = AtomicUsize::new(0);
                parallel_for(100, 1, &|b, e| {
                    count.fetch_add(e - b, Ordering::Relaxed);
                });
                (threads(), count.into_inner())
            })
            .unwrap();
            assert_eq!(seen, (k, 100));
        }
        assert_eq!(with_threads(0, threads).unwrap(), threads());
    }
}
