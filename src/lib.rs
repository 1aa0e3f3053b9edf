//! Tessera: a tensor-expression compiler.
//!
//! Write tensor programs in the einsum-style `.tsr` language (or pass numpy einsum
//! strings), and evaluate them on `ndarray` arrays. Today the reference evaluator runs
//! them; the planner and native code generation build on the same typed program.
//!
//! ```
//! use ndarray::array;
//! let module = tessera::Module::from_source(
//!     "fn matmul(A: f64[m, k], B: f64[k, n]) -> C: f64[m, n] { C[i, j] = A[i, l] * B[l, j] }",
//! )?;
//! let f = module.function("matmul")?;
//! let a = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
//! let b = array![[1.0], [1.0]].into_dyn();
//! let out = f.call(&[a.view(), b.view()])?;
//! assert_eq!(out[0], array![[3.0], [7.0]].into_dyn());
//! # Ok::<(), tessera::Error>(())
//! ```

use ndarray::{ArrayD, ArrayViewD};
use std::fmt;
use std::path::Path;
use tessera_compiler::diag::render_all;
use tessera_compiler::tir;

pub use tessera_compiler::diag::{Diagnostic, SourceMap};
pub use tessera_compiler::eval::{EvalError, EvalOptions, Scalar};
pub use tessera_runtime::{DType, Tensor};

/// Default cap on any one intermediate or output: 4 GiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 4 << 30;

/// Everything that can go wrong, as values. None of these is a panic.
#[derive(Debug)]
pub enum Error {
    /// Errors in `.tsr` source or an einsum spec, with spans into `sources`.
    Compile { diagnostics: Vec<Diagnostic>, sources: SourceMap },
    /// A file could not be read.
    Io { path: String, message: String },
    /// Bad inputs at call time: arity, shape, dtype, dims, unknown function.
    Input(String),
    /// Evaluation failed, e.g. an intermediate over the memory limit.
    Eval(EvalError),
    /// An internal invariant failed. This is always a bug in Tessera; please report it.
    Internal(String),
}

impl Error {
    /// The error as a person should read it (diagnostics rendered with their source).
    pub fn render(&self, color: bool) -> String {
        match self {
            Error::Compile { diagnostics, sources } => render_all(diagnostics, sources, color),
            other => format!("error: {other}\n"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Compile { diagnostics, .. } => {
                let errors: Vec<&str> =
                    diagnostics.iter().filter(|d| d.is_error()).map(|d| d.message.as_str()).collect();
                write!(f, "{}", errors.join("; "))
            }
            Error::Io { path, message } => write!(f, "cannot read {path}: {message}"),
            Error::Input(m) => f.write_str(m),
            Error::Eval(e) => write!(f, "{e}"),
            Error::Internal(m) => write!(f, "internal error (this is a bug in Tessera): {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<EvalError> for Error {
    fn from(e: EvalError) -> Self {
        match e {
            EvalError::Internal(m) => Error::Internal(m),
            e => Error::Eval(e),
        }
    }
}

/// Options for one call.
#[derive(Clone, Debug)]
pub struct CallOptions {
    /// Dims given explicitly (`--dim n=4`), for dims the inputs do not determine.
    pub dims: Vec<(String, u64)>,
    /// Largest intermediate or output, in bytes.
    pub memory_limit: u64,
    /// Evaluate in this dtype instead of the function's declared one.
    pub dtype: Option<DType>,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions { dims: Vec::new(), memory_limit: DEFAULT_MEMORY_LIMIT, dtype: None }
    }
}

/// A checked `.tsr` module: its functions as typed programs, calls inlined.
#[derive(Debug)]
pub struct Module {
    sources: SourceMap,
    functions: Vec<tir::Function>,
    warnings: Vec<Diagnostic>,
}

/// One function of a [`Module`], ready to call.
#[derive(Clone, Copy, Debug)]
pub struct Function<'m> {
    module: &'m Module,
    tir: &'m tir::Function,
}
