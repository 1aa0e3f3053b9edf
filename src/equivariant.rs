//! Equivariant tensor products on flat irreps features, with e3nn's layout and results.
//!
//! ```
//! use ndarray::{Array1, Array2};
//! use tessera::equivariant::{Mode, TensorProduct};
//! // NequIP-style: features ⊗ spherical harmonics, channel-wise (uvu).
//! let tp = TensorProduct::new("8x0e+8x1o", "1x0e+1x1o+1x2e", "8x0e+8x1o+8x2e", Mode::Uvu, tessera::DType::F32)?;
//! let x = Array2::<f32>::ones((4, tp.spec().in1.dim()));
//! let y = Array2::<f32>::ones((4, tp.spec().in2.dim()));
//! let w = Array1::<f32>::ones(tp.spec().weight_numel());
//! let out = tp.call(x.view(), y.view(), w.view(), &tessera::CallOptions::default())?;
//! assert_eq!(out.shape(), &[4, 8 + 24 + 40]);
//! # Ok::<(), tessera::Error>(())
//! ```

use crate::{CallOptions, Error, Function, Module, Scalar};
use ndarray::{s, Array2, ArrayView1, ArrayView2, ArrayViewD, IxDyn, ShapeBuilder};
use tessera_runtime::DType;

pub use tessera_compiler::irreps::{Instruction, Irrep, Irreps, IrrepsError, Mode, MulIr};
pub use tessera_compiler::constants::{cg_shape, clebsch_gordan, CgError};
/// The paths and coefficients of a product, and its generated source, without compiling.
pub use tessera_compiler::irreps::TensorProduct as Spec;

/// A tensor product of two irreps features over every allowed path (see
/// [`tessera_compiler::irreps`]): the generated `.tsr` program, checked, plus the
/// splitting of e3nn's flat features and weights into its inputs.
#[derive(Debug)]
pub struct TensorProduct {
    spec: Spec,
    source: String,
    module: Module,
}

impl TensorProduct {
    /// The product of features `in1` and `in2` (e3nn's notation, `"32x0e + 32x1o"`) into
    /// `out`, over every allowed path in `mode`, computed in `dtype`.
    pub fn new(in1: &str, in2: &str, out: &str, mode: Mode, dtype: DType) -> Result<TensorProduct, Error> {
        let parse = |s: &str| s.parse::<Irreps>().map_err(|e| Error::Input(e.to_string()));
        let spec = Spec::new(parse(in1)?, parse(in2)?, parse(out)?, mode)
            .map_err(|e| Error::Input(e.to_string()))?;
        let source = spec.source(dtype);
        let module = Module::from_named_source("tensor_product.tsr", &source)?;
        Ok(TensorProduct { spec, source, module })
    }

    /// The irreps, the mode and the paths with their coefficients.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The generated program.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The generated function (for its plan, or to call it block by block).
    pub fn function(&self) -> Result<Function<'_>, Error> {
        self.module.function(Spec::FUNCTION)
    }

    /// `out[z, :]` for features `x: [z, in1.dim]`, `y: [z, in2.dim]` and e3nn's flat
    /// weights (`weight_numel` of them, instruction after instruction).
    pub fn call<T: Scalar>(
        &self,
        x: ArrayView2<'_, T>,
        y: ArrayView2<'_, T>,
        weights: ArrayView1<'_, T>,
        opts: &CallOptions,
    ) -> Result<Array2<T>, Error> {
        let z = x.nrows();
        let bad = |what: &str, got: &[usize], want: String| Error::Input(format!("tensor product: {what} has shape {got:?}, expected {want}"));
        if x.ncols() != self.spec.in1.dim() {
            return Err(bad("the first feature", x.shape(), format!("[batch, {}] for {}", self.spec.in1.dim(), self.spec.in1)));
        }
        if y.shape() != [z, self.spec.in2.dim()] {
            return Err(bad("the second feature", y.shape(), format!("[{z}, {}] for {}", self.spec.in2.dim(), self.spec.in2)));
        }
        if weights.len() != self.spec.weight_numel() {
            return Err(bad("the weights", weights.shape(), format!("[{}]", self.spec.weight_numel())));
        }
        let (x, y, weights) = (x.as_standard_layout(), y.as_standard_layout(), weights.as_standard_layout());
        let mut inputs: Vec<ArrayViewD<'_, T>> = Vec::new();
        for (irreps, data) in [(&self.spec.in1, &x), (&self.spec.in2, &y)] {
            let row = irreps.dim();
            let flat = data.as_slice().unwrap_or(&[]);
            for (b, off) in irreps.0.iter().zip(irreps.offsets()) {
                // A block is a strided view of the rows: no copy.
                let shape = IxDyn(&[z, b.mul, b.ir.dim()]).strides(IxDyn(&[row, b.ir.dim(), 1]));
                let view = ArrayViewD::from_shape(shape, flat.get(off..).unwrap_or(&[]))
                    .map_err(|e| Error::Internal(format!("tensor product: a block view: {e}")))?;
                inputs.push(view);
            }
        }
        let flat = weights.as_slice().unwrap_or(&[]);
        let mut at = 0;
        for ins in &self.spec.instructions {
            let n: usize = ins.weight_shape.iter().product();
            let view = ArrayViewD::from_shape(IxDyn(&ins.weight_shape), &flat[at..at + n])
                .map_err(|e| Error::Internal(format!("tensor product: a weight view: {e}")))?;
            inputs.push(view);
            at += n;
        }
        let outs = self.function()?.call_with(&inputs, opts)?;
        let mut out = Array2::<T>::zeros((z, self.spec.out.dim()));
        for ((b, off), block) in self.spec.out.0.iter().zip(self.spec.out.offsets()).zip(outs) {
            let block = block
                .into_shape_with_order((z, b.dim()))
                .map_err(|e| Error::Internal(format!("tensor product: an output block: {e}")))?;
            out.slice_mut(s![.., off..off + b.dim()]).assign(&block);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;
    use ndarray::{Array1, ArrayD};

    fn random(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    /// The flat call (strided block views in, blocks assembled out) equals calling the
    /// generated function on copied contiguous blocks, on every executor.
    #[test]
    fn flat_features_split_into_the_generated_inputs() {
        for mode in [Mode::Uvw, Mode::Uvu] {
            let tp = TensorProduct::new("3x0e+3x1o+3x2e", "1x0e+1x1o+1x2e", "3x0e+3x1o+3x2e+3x1e", mode, DType::F64).unwrap();
            let z = 5;
            let spec = tp.spec();
            let x = Array2::from_shape_vec((z, spec.in1.dim()), random(z * spec.in1.dim(), 1)).unwrap();
            let y = Array2::from_shape_vec((z, spec.in2.dim()), random(z * spec.in2.dim(), 2)).unwrap();
            let w = Array1::from_vec(random(spec.weight_numel(), 3));
            let mut blocks: Vec<ArrayD<f64>> = Vec::new();
            for (irreps, data) in [(&spec.in1, &x), (&spec.in2, &y)] {
                for (b, off) in irreps.0.iter().zip(irreps.offsets()) {
                    let block = data.slice(s![.., off..off + b.dim()]).to_owned();
                    blocks.push(block.into_shape_with_order(IxDyn(&[z, b.mul, b.ir.dim()])).unwrap());
                }
            }
            let mut at = 0;
            for ins in &spec.instructions {
                let n: usize = ins.weight_shape.iter().product();
                blocks.push(w.slice(s![at..at + n]).to_owned().into_shape_with_order(IxDyn(&ins.weight_shape)).unwrap());
                at += n;
            }
            let views: Vec<_> = blocks.iter().map(|a| a.view()).collect();
            let reference = CallOptions { backend: Backend::Reference, ..Default::default() };
            let want = tp.function().unwrap().call_with(&views, &reference).unwrap();
            for backend in Backend::executors() {
                let opts = CallOptions { backend, ..Default::default() };
                let got = tp.call(x.view(), y.view(), w.view(), &opts).unwrap();
                for ((b, off), block) in spec.out.0.iter().zip(spec.out.offsets()).zip(&want) {
                    let got = got.slice(s![.., off..off + b.dim()]);
                    let want = block.view().into_shape_with_order((z, b.dim())).unwrap();
                    let diff = (&got - &want).mapv(f64::abs).fold(0.0f64, |a, &v| a.max(v));
                    assert!(diff < 1e-12, "{mode} on {}: off by {diff}", backend.name());
                }
            }
        }
        let tp = TensorProduct::new("2x1o", "1x1o", "2x0e", Mode::Uvw, DType::F32).unwrap();
        let e = tp.call(Array2::<f32>::zeros((3, 5)).view(), Array2::<f32>::zeros((3, 3)).view(), Array1::zeros(4).view(), &CallOptions::default()).unwrap_err();
        assert!(e.to_string().contains("[batch, 6] for 2x1o"), "{e}");
        let e = TensorProduct::new("2x1o", "1x1o", "2x0q", Mode::Uvw, DType::F32).unwrap_err();
        assert!(e.to_string().contains("parity `q`"), "{e}");
    }
}
