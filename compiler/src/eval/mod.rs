//! The reference evaluator (the oracle): evaluates TIR directly on ndarray arrays.
//!
//! Simple and obviously right beats fast, but products are contracted pairwise, summing
//! an index out as soon as no remaining factor uses it, so long chains stay cheap. Every
//! intermediate is checked against a memory limit before it is allocated.

use std::fmt::{Debug, Display};
use tessera_runtime::DType;

/// Element types the evaluator works in (f32 and f64).
pub trait Scalar:
    num_traits::Float
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + Debug
    + Display
    + Default
    + Send
    + Sync
    + 'static
{
    const DTYPE: DType;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Scalar for f32 {
    const DTYPE: DType = DType::F32;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Scalar for f64 {
    const DTYPE: DType = DType::F64;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// Limits of one evaluation.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Largest intermediate or output, in bytes. Default 4 GiB.
    pub memory_limit: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { memory_limit: 4 << 30 }
    }
}

/// Why an evaluation stopped.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// An intermediate or output would exceed the memory limit.
    #[error(
        "{what} needs {bytes} bytes ({shape}), over the memory limit of {limit} bytes; \
         raise the limit (--memory-limit) or use smaller sizes"
    )]
    MemoryLimit { what: String, shape: String, bytes: u64, limit: u64 },
    /// Inputs do not fit the function (count or shape).
    #[error("{0}")]
    Input(String),
    /// An invariant of the TIR failed. Always a bug.
    #[error("internal error (this is a bug in Tessera): {0}")]
    Internal(String),
}
