//! Native code generation with Cranelift.

pub mod clif_math;
