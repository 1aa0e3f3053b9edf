//! Tessera's compiler: the `.tsr` front end, the typed program (TIR), the reference
//! evaluator and the numpy einsum translation. See ARCHITECTURE.md for the map.

pub mod backend;
pub mod diag;
pub mod einsum;
pub mod exec;
pub mod check;
pub mod codegen;
pub mod constants;
pub mod eval;
pub mod graph;
pub mod irreps;
pub mod loops;
pub mod optimize;
pub mod pipeline;
pub mod plan;
pub mod stdlib;
pub mod syntax;
pub mod tir;

pub use backend::Backend;
pub use diag::{Diagnostic, FileId, Severity, SourceMap, Span};
