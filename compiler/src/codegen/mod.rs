//! Native code generation from the loop IR: the Cranelift JIT backend and the
//! vectorised math library it inlines.

pub mod clif;
pub mod clif_math;
#[cfg(feature = "llvm")]
pub mod llvm;
