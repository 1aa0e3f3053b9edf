//! Optimisation: contraction-path search (`path`), algebraic rewriting with egg
//! (`algebra`), and TIR rewrites that expose contractions (`rewrite`). The plan builder
//! (`crate::plan`) uses all three.

pub mod algebra;
pub mod path;
pub mod rewrite;
