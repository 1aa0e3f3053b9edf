//! Optimisation: contraction-path search (`path`) and algebraic rewriting with egg
//! (`algebra`). The plan builder (`crate::plan`) uses both.

pub mod algebra;
pub mod path;
