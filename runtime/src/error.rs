//! Errors of the runtime. They are values: nothing here aborts or panics on a failed
//! allocation or a bad request, so that a caller (the CLI, a Rust user) can report them.

/// What can go wrong when the runtime sets something up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The allocator refused `bytes` bytes, or they exceed what a single allocation may hold.
    #[error("out of memory: could not allocate {bytes} bytes")]
    OutOfMemory { bytes: usize },
    /// `count` elements of `elem_bytes` bytes each do not fit in `usize` bytes.
    #[error("size overflow: {count} elements of {elem_bytes} bytes do not fit in memory")]
    SizeOverflow { count: usize, elem_bytes: usize },
    /// The runtime could not start a thread pool of the requested size.
    #[error("could not start a thread pool with {threads} threads: {reason}")]
    ThreadPool { threads: usize, reason: String },
    /// A request that breaks a documented precondition.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No CUDA driver or no device (feature `cuda`).
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    /// The CUDA driver or cuBLAS reported an error (feature `cuda`).
    #[error("CUDA: {0}")]
    Device(String),
}
