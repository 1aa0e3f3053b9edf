//! Tessera's runtime: the values that flow in and out of compiled programs.
//!
//! This crate never depends on the compiler (see ARCHITECTURE.md). It holds the dtype and
//! the dynamically typed tensor, aligned buffers ([`buffer`]), the thread pool ([`pool`]),
//! strided batched GEMM ([`mod@gemm`]) and the `extern "C"` ABI compiled kernels call ([`abi`]).
//! It is the only crate that starts threads.

pub mod abi;
pub mod blas;
pub mod buffer;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod error;
pub mod gemm;
pub mod pool;
pub mod scalar;

pub use abi::{tessera_rt_parallel_for, KernelFn};
pub use blas::BlasGemm;
pub use buffer::{advise_huge_pages, AlignedBuf, BUFFER_ALIGN};
pub use error::RuntimeError;
pub use gemm::{check_gemm, gemm_slices, GemmDesc, GemmLoop, GemmScalar};
pub use pool::{parallel_for, threads, with_threads};
pub use scalar::Element;

use ndarray::ArrayD;
use std::fmt;

/// Element type of a tensor. One per function in the language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size_of(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }

    /// The spelling used in `.tsr` source (`f32`, `f64`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }

    /// Parses the `.tsr` spelling.
    pub fn from_name(s: &str) -> Option<DType> {
        match s {
            "f32" => Some(DType::F32),
            "f64" => Some(DType::F64),
            _ => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An owned tensor of either supported dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
}

impl Tensor {
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
        }
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::F64(a) => a.shape(),
        }
    }

    /// Converts to the given dtype (f64 → f32 rounds to nearest).
    pub fn cast(self, to: DType) -> Tensor {
        match (self, to) {
            (Tensor::F32(a), DType::F64) => Tensor::F64(a.mapv(f64::from)),
            (Tensor::F64(a), DType::F32) => Tensor::F32(a.mapv(|x| x as f32)),
            (t, _) => t,
        }
    }

    /// The values widened to f64, for comparisons and printing.
    pub fn to_f64(&self) -> ArrayD<f64> {
        match self {
            Tensor::F32(a) => a.mapv(f64::from),
            Tensor::F64(a) => a.clone(),
        }
    }
}

impl From<ArrayD<f32>> for Tensor {
    fn from(a: ArrayD<f32>) -> Self {
        Tensor::F32(a)
    }
}

impl From<ArrayD<f64>> for Tensor {
    fn from(a: ArrayD<f64>) -> Self {
        Tensor::F64(a)
    }
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tensor::F32(a) => write!(f, "{a}"),
            Tensor::F64(a) => write!(f, "{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_round_trip() {
        for d in [DType::F32, DType::F64] {
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::from_name("f16"), None);
        assert_eq!(DType::F32.size_of(), 4);
    }

    #[test]
    fn cast_changes_dtype_and_keeps_values() {
        let t = Tensor::from(ndarray::arr1(&[1.5f32, -2.0]).into_dyn());
        let d = t.clone().cast(DType::F64);
        assert_eq!(d.dtype(), DType::F64);
        assert_eq!(d.to_f64(), t.to_f64());
        assert_eq!(d.shape(), &[2]);
    }
}
