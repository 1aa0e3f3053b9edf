//! Native code generation from the loop IR.

pub mod clif;
