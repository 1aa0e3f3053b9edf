//! The CUDA backend's code generator (feature `cuda`): the program's loop kernels as one
//! PTX module (`llvm/ptx.rs`), which the CUDA executor (`exec/cuda.rs`) loads; GEMM
//! kernels go to cuBLAS there.
//!
//! Known limits: sin/cos of |x| beyond 2^20 (f32) or 2^40 (f64) give NaN on the device;
//! loop kernels run one thread per iteration of their parallel loop, with the reductions
//! inside a thread (no warp-level reductions yet), and online-softmax fusions run as
//! separate kernels (tile groups are a CPU construct; see `LowerOptions::for_backend`).

use super::llvm::ptx::{emit_ptx, SM_VERSIONS};
use super::{Code, Codegen, CodegenError};
use crate::backend::Backend;
use crate::loops::Program;

/// PTX generation for one GPU architecture.
#[derive(Clone, Debug)]
pub struct Cuda {
    /// `sm_80` is 80; the driver compiles sm_80 PTX for newer GPUs (sm_90) too.
    pub sm: u32,
}

impl Default for Cuda {
    fn default() -> Self {
        Cuda { sm: SM_VERSIONS[0] }
    }
}

impl Codegen for Cuda {
    fn backend(&self) -> Backend {
        Backend::Cuda
    }

    fn compile(&self, p: &Program) -> Result<Code, CodegenError> {
        Ok(Code::Cuda(emit_ptx(p, self.sm)?))
    }

    /// The PTX text.
    fn emit(&self, p: &Program) -> Result<String, CodegenError> {
        Ok(emit_ptx(p, self.sm)?.text)
    }
}
