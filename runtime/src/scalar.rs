//! The element types the runtime computes with.

use crate::DType;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// An element type of tensors and buffers: `f32` or `f64`.
///
/// The trait is sealed: the GEMM library and the compiled kernels only handle these two,
/// so a third implementation could only fail at run time.
pub trait Element: sealed::Sealed + Copy + Send + Sync + 'static {
    /// The matching runtime dtype.
    const DTYPE: DType;
    /// Zero, the value of freshly allocated memory.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Converts from f64, rounding to nearest for f32.
    fn from_f64(x: f64) -> Self;
    /// Widens to f64 (exact).
    fn to_f64(self) -> f64;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
}
