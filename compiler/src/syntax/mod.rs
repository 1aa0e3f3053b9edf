//! The `.tsr` front end: grammar (pest), AST with spans, parser and printer.

pub mod ast;
mod parser;
mod print;

pub use parser::{parse, MAX_DEPTH, MAX_NESTING};
pub use print::{cond_text, expr as print_expr, print_module, stmt as print_stmt};

#[cfg(test)]
mod tests;
