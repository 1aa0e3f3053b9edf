//! Code generation from the loop IR, behind one seam.
//!
//! A backend implements [`Codegen`]: it compiles a verified loop [`Program`] into
//! [`Code`] that an executor runs, and prints its code (`tessera emit --stage clif`).
//! CPU backends produce [`CpuCode`]: one native function per loop kernel with the
//! runtime's [`KernelFn`] ABI, which the CPU executor (`exec/cpu.rs`) drives together
//! with the GEMM kernels; a GPU backend adds its own variant of [`Code`] and executor.
//!
//! Backends: `clif/` (Cranelift, always built, with its vectorised math library in
//! `clif/math.rs`); `llvm/` (feature `llvm`); `cuda.rs` (feature `cuda`: PTX from
//! `llvm/ptx.rs`, run by the CUDA executor).

pub mod clif;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(test)]
pub(crate) mod difftests;
#[cfg(test)]
pub(crate) mod math_accuracy;
#[cfg(feature = "llvm")]
pub mod llvm;

use crate::backend::Backend;
use crate::loops::Program;
use std::sync::Arc;
use tessera_runtime::abi::KernelFn;

/// Why a backend produced no code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodegenError {
    /// The backend is not part of this build.
    #[error("this build of Tessera has no {backend} backend; {hint}")]
    NotBuilt { backend: &'static str, hint: &'static str },
    /// The backend runs no code: the interpreter and the reference evaluator.
    #[error("the {0} backend generates no code")]
    NoCode(&'static str),
    /// The backend cannot generate code for this machine.
    #[error("the {backend} backend does not support this host: {message}")]
    Host { backend: &'static str, message: String },
    /// The program fails the loop-IR verifier, so its code could touch memory outside
    /// its buffers. Always a bug in an earlier stage.
    #[error("the program is not valid loop IR: {0}")]
    Invalid(String),
    /// The backend's own compiler rejected a function or could not map its code.
    #[error("{backend} failed: {message}")]
    Failed { backend: &'static str, message: String },
    /// An invariant of a backend failed. Always a bug.
    #[error("internal error (this is a bug in Tessera): {backend} backend: {message}")]
    Internal { backend: &'static str, message: String },
}

/// A code generator: loop program in, runnable code and its text out.
pub trait Codegen {
    /// The backend this generator is.
    fn backend(&self) -> Backend;

    /// Compiles every kernel of the program.
    fn compile(&self, p: &Program) -> Result<Code, CodegenError>;

    /// The generated code of every kernel as text, in the backend's own IR.
    fn emit(&self, p: &Program) -> Result<String, CodegenError>;
}

/// The product of a [`Codegen`], by the kind of executor that runs it.
pub enum Code {
    /// Native functions for the CPU executor.
    Cpu(CpuCode),
    /// A PTX module for the CUDA executor.
    #[cfg(feature = "cuda")]
    Cuda(llvm::ptx::PtxCode),
}

/// Native loop kernels for the CPU: `kernels[k]` is kernel `k` of the program (None for
/// GEMM kernels, which the runtime runs).
pub struct CpuCode {
    pub kernels: Vec<Option<CpuKernel>>,
}

/// One native loop kernel. It keeps the memory its code lives in alive.
#[derive(Clone)]
pub struct CpuKernel {
    func: KernelFn,
    parallel: Option<usize>,
    _owner: Arc<dyn Send + Sync>,
}

impl CpuKernel {
    /// A kernel whose code `owner` keeps alive.
    ///
    /// # Safety
    /// `func` must follow the [`KernelFn`] contract for the kernel it was compiled from
    /// (see [`CpuKernel::func`]) and stay valid while `owner` lives.
    pub unsafe fn new(func: KernelFn, parallel: Option<usize>, owner: Arc<dyn Send + Sync>) -> CpuKernel {
        CpuKernel { func, parallel, _owner: owner }
    }

    /// Runs iterations `begin..end` of the kernel's parallel loop (or the whole kernel when
    /// it has none: call it with `0..1`). `end` is clamped to the loop's extent.
    ///
    /// The pointer is valid while this `CpuKernel` lives. Calling it requires an `args`
    /// array with one pointer per buffer of the program, each valid for the buffer's
    /// length in elements of the program's dtype (element alignment suffices), and
    /// concurrent calls must run disjoint ranges.
    pub fn func(&self) -> KernelFn {
        self.func
    }

    /// The extent of the loop `begin..end` index, from `LoopKernel::parallel_loop`.
    pub fn parallel_extent(&self) -> Option<usize> {
        self.parallel
    }
}

impl std::fmt::Debug for CpuKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuKernel({:p}, parallel {:?})", self.func as *const u8, self.parallel)
    }
}

/// The code generator of a backend, with its default options.
pub fn for_backend(backend: Backend) -> Result<Box<dyn Codegen>, CodegenError> {
    match backend {
        Backend::Cranelift => Ok(Box::new(clif::Cranelift::default())),
        #[cfg(feature = "llvm")]
        Backend::Llvm => Ok(Box::new(llvm::Llvm::default())),
        #[cfg(not(feature = "llvm"))]
        Backend::Llvm => Err(CodegenError::NotBuilt {
            backend: "LLVM",
            hint: "rebuild with `--features llvm` (LLVM 19 installed; see the README)",
        }),
        #[cfg(feature = "cuda")]
        Backend::Cuda => Ok(Box::new(cuda::Cuda::default())),
        #[cfg(not(feature = "cuda"))]
        Backend::Cuda => Err(CodegenError::NotBuilt {
            backend: "CUDA",
            hint: "rebuild with `--features cuda` (LLVM 19 installed; see the README)",
        }),
        Backend::Interp | Backend::Reference => Err(CodegenError::NoCode(backend.name())),
    }
}
