//! Tessera: a tensor-expression compiler.
//!
//! Write tensor programs in the einsum-style `.tsr` language (or pass numpy einsum
//! strings), and evaluate them on `ndarray` arrays. A call plans the function for the
//! input shapes, lowers the plan to loop kernels and GEMM calls, compiles them with a
//! [`Backend`] (Cranelift by default; LLVM with the feature `llvm`), caches the result by
//! (function, dtype, sizes, backend), and runs it.
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
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use tessera_compiler::diag::render_all;
use tessera_compiler::tir;

pub use tessera_compiler::diag::{Diagnostic, SourceMap};
pub use tessera_compiler::eval::{EvalError, EvalOptions, Scalar};
pub use tessera_compiler::plan::{Plan, PlanError, PlanOptions, StepKind};
pub use tessera_compiler::tir::lmul::MulMode;
pub use tessera_compiler::exec::{Distribution, Executable, IndexView, SliceLoop, Slicing};

pub mod equivariant;
#[cfg(feature = "mpi")]
pub mod mpi;
pub use tessera_compiler::pipeline::Stage;
pub use tessera_compiler::Backend;
pub use tessera_compiler::loops::{BufId, Program};
pub use tessera_runtime::{threads, DType, Tensor};

/// A function compiled for one dtype and one set of sizes: its plan, its loop program
/// and the executable that runs it. Calls with the same shapes reuse it.
pub struct Compiled {
    pub plan: Plan,
    pub exec: Executable,
    /// Milliseconds spent planning (path search and algebra).
    pub plan_ms: f64,
    /// Milliseconds spent lowering and generating code (`lower_ms + codegen_ms`).
    pub compile_ms: f64,
    /// Milliseconds spent lowering the plan to the loop IR (memory passes included).
    pub lower_ms: f64,
    /// Milliseconds spent making the executable: the backend's code generation.
    pub codegen_ms: f64,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled").field("function", &self.plan.function).field("plan_ms", &self.plan_ms).finish()
    }
}

impl Compiled {
    /// The loop program (`emit --stage loops`).
    pub fn program(&self) -> &Program {
        &self.exec.program
    }

    /// The code `backend` generates for every loop kernel, as text (`emit --stage clif`
    /// for Cranelift IR, `--stage llvm` for LLVM IR).
    pub fn emit_code(&self, backend: Backend) -> Result<String, Error> {
        use tessera_compiler::pipeline::{emit_plan, PipelineError};
        emit_plan(&self.plan, self.program(), backend).map_err(|e| match e {
            PipelineError::Exec(e) => exec_error(e),
            PipelineError::Plan(e) => Error::from(e),
            PipelineError::Lower(e) => Error::Internal(e.to_string()),
        })
    }

    /// Runs the compiled function on inputs of the shapes it was compiled for.
    pub fn run<T: Scalar>(&self, inputs: &[ArrayViewD<'_, T>]) -> Result<Vec<ArrayD<T>>, Error> {
        self.exec.run(inputs).map_err(exec_error)
    }

    /// Runs the compiled function with index arguments (in `indices` order of the
    /// function); every index is checked against the axis it selects first.
    pub fn run_indexed<T: Scalar>(&self, inputs: &[ArrayViewD<'_, T>], indices: &[IndexView<'_>]) -> Result<Vec<ArrayD<T>>, Error> {
        self.exec.run_indexed(inputs, indices).map_err(exec_error)
    }

    /// Runs it on every rank of `ranks` with the same inputs: the chunks of a sliced
    /// call's outermost loops are shared among the ranks, and every rank returns the
    /// combined outputs (an unsliced call runs whole on every rank).
    pub fn run_distributed<T: Scalar>(&self, inputs: &[ArrayViewD<'_, T>], ranks: &Ranks) -> Result<Vec<ArrayD<T>>, Error> {
        self.exec.run_distributed(inputs, ranks.0.as_ref()).map_err(exec_error)
    }
}

fn pipeline_error(e: tessera_compiler::pipeline::PipelineError) -> Error {
    use tessera_compiler::pipeline::PipelineError as E;
    match e {
        E::Plan(e) => Error::from(e),
        E::Lower(tessera_compiler::loops::LowerError::Internal(m)) => Error::Internal(m),
        E::Lower(e) => Error::Input(e.to_string()),
        E::Exec(e) => exec_error(e),
    }
}

fn exec_error(e: tessera_compiler::exec::ExecError) -> Error {
    use tessera_compiler::exec::ExecError as E;
    match e {
        E::Input(m) | E::Unavailable(m) => Error::Input(m),
        E::Memory(m) => Error::Memory(m),
        e @ E::OverLimit { .. } => Error::Memory(e.to_string()),
        E::Distributed(m) => Error::Distributed(m),
        E::Internal(m) => Error::Internal(m),
    }
}

/// The ranks a call is spread over ([`CallOptions::distributed`]); with the feature `mpi`,
/// `tessera::mpi::World::ranks` gives those of `MPI_COMM_WORLD`.
#[derive(Clone)]
pub struct Ranks(pub Arc<dyn Distribution>);

impl fmt::Debug for Ranks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ranks(rank {} of {})", self.0.rank(), self.0.ranks())
    }
}

impl Ranks {
    pub fn rank(&self) -> usize {
        self.0.rank()
    }

    pub fn count(&self) -> usize {
        self.0.ranks()
    }

    /// Tells the other ranks that this one failed (they learn it at their next
    /// agreement); for a failure before the call, e.g. an input that cannot be read.
    pub fn fail(&self, message: &str) {
        let _ = self.0.agree(Some(message.to_string()));
    }

    /// Checks that every rank holds the same `value` (e.g. a hash of its inputs) as rank
    /// 0; a rank that differs fails the call on every rank, naming `what`.
    pub fn same_everywhere(&self, what: &str, value: u64) -> Result<(), Error> {
        let mut v = [(value >> 32) as f64, (value & 0xffff_ffff) as f64];
        self.0.broadcast_f64(&mut v, 0).map_err(Error::Distributed)?;
        let root = ((v[0] as u64) << 32) | v[1] as u64;
        let local = if root == value {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "rank {} read {what} that differ from rank 0's; every rank must read the same files",
                self.rank()
            )))
        };
        self.agreed(local)
    }

    /// `local` once every rank has said whether its part failed: Ok only when no rank
    /// failed; else this rank's own error, or the first failing rank's as
    /// [`Error::Distributed`]. Errors that ranks already agreed on pass through, so each
    /// rank agrees once per failure and none waits for a rank that has left.
    pub fn agreed<R>(&self, local: Result<R, Error>) -> Result<R, Error> {
        match local {
            Err(Error::Distributed(m)) => Err(Error::Distributed(m)),
            Err(e) => {
                let _ = self.0.agree(Some(e.to_string()));
                Err(e)
            }
            Ok(r) => self.0.agree(None).map(|()| r).map_err(Error::Distributed),
        }
    }
}

/// (function, dtype, dim sizes, backend, (memory limit, ranks) of a sliced compilation,
/// multiplication mode).
type CacheKey = (String, DType, Vec<u64>, Backend, Option<(u64, usize)>, MulMode);

/// Refuses a compiled function with an output over `limit` bytes, or whose
/// intermediates alive at once exceed it (before anything is allocated).
fn check_memory(c: &Compiled, limit: u64) -> Result<(), Error> {
    let p = c.program();
    // Outputs first: slicing mends an intermediate over the limit, never an output.
    for want_temp in [false, true] {
        for buf in &p.bufs {
            let bytes = (buf.len() as u64).saturating_mul(p.dtype.size_of() as u64);
            let temp = matches!(buf.kind, tessera_compiler::loops::BufKind::Temp { .. });
            let output = matches!(buf.kind, tessera_compiler::loops::BufKind::Output(_));
            if (if want_temp { temp } else { output }) && bytes > limit {
                let shape: Vec<String> = buf.shape.iter().map(|x| x.to_string()).collect();
                return Err(Error::Eval(EvalError::MemoryLimit {
                    what: format!("{} {}", if temp { "intermediate" } else { "output" }, buf.name),
                    shape: format!("[{}]", shape.join(", ")),
                    bytes,
                    limit,
                }));
            }
        }
    }
    // The limit caps the intermediates alive at once, as the sliced executor counts them.
    let threads = tessera_runtime::threads();
    let live = c.exec.temp_bytes(threads) as u64;
    if live > limit && c.exec.slicing().is_none() {
        return Err(Error::Eval(EvalError::MemoryLimit {
            what: "intermediates alive at once".to_string(),
            shape: format!("memory slots and tiles on {threads} threads"),
            bytes: live,
            limit,
        }));
    }
    Ok(())
}

/// Whether `e` refuses an intermediate (not an output) over the memory limit: the case
/// that slicing can mend.
fn intermediate_over_limit(e: &Error) -> bool {
    matches!(e, Error::Eval(EvalError::MemoryLimit { what, .. }) if what.starts_with("intermediate"))
}

/// `f` planned under `limit` and compiled to run its slice loops (see
/// `tessera_compiler::exec::Executable::sliced`). `refusal` is the error to give when the
/// plan finds no slice loop to run.
fn compile_sliced(
    f: &tir::Function,
    b: &tir::Bindings,
    dtype: DType,
    backend: Backend,
    (limit, ranks): (u64, usize),
    refusal: Error,
    mul: MulMode,
) -> Result<Compiled, Error> {
    use tessera_compiler::pipeline;
    let out = pipeline::compile_sliced(f, b, dtype, backend, limit, ranks, &PlanOptions { mul, ..PlanOptions::default() }).map_err(pipeline_error)?;
    match out {
        Some(pipeline::Output { plan, exec: Some(exec), timings, .. }) => Ok(Compiled {
            plan,
            exec,
            plan_ms: timings.plan_ms,
            compile_ms: timings.codegen_ms,
            lower_ms: 0.0,
            codegen_ms: timings.codegen_ms,
        }),
        Some(_) => Err(Error::Internal("a sliced compilation without an executable".into())),
        None => Err(refusal),
    }
}


/// Plans, lowers and compiles `f` at the sizes in `b` through the pipeline driver.
fn compile_tir(f: &tir::Function, b: &tir::Bindings, dtype: DType, backend: Backend, mul: MulMode) -> Result<Compiled, Error> {
    use tessera_compiler::pipeline;
    if backend == Backend::Reference {
        return Err(Error::Input(
            "the reference evaluator compiles nothing: it evaluates the typed program when called \
             (call with Backend::Reference, or compile for cranelift, llvm or interp)"
                .into(),
        ));
    }
    let plan = PlanOptions { mul, ..PlanOptions::default() };
    let opts = pipeline::Options { backend, plan, ..Default::default() };
    let out = pipeline::compile(f, b, dtype, &opts).map_err(pipeline_error)?;
    let t = out.timings;
    let exec = out.exec.ok_or_else(|| Error::Internal("the pipeline stopped before code".into()))?;
    Ok(Compiled {
        plan: out.plan,
        exec,
        plan_ms: t.plan_ms,
        compile_ms: t.lower_ms + t.codegen_ms,
        lower_ms: t.lower_ms,
        codegen_ms: t.codegen_ms,
    })
}

/// The reference evaluator's result for a call. In L-Mul mode it runs the plan's own
/// program, whose products are the L-Muls the compiled code computes (L-Mul does not
/// distribute over sums, so the products are those of the plan's contraction order).
fn reference<T: Scalar>(
    f: &tir::Function,
    b: &tir::Bindings,
    inputs: &[ArrayViewD<'_, T>],
    indices: &[IndexView<'_>],
    opts: &CallOptions,
) -> Result<Vec<ArrayD<T>>, Error> {
    use tessera_compiler::eval::evaluate_indexed;
    let eval_opts = EvalOptions { memory_limit: opts.memory_limit };
    let wide: Vec<ArrayD<i64>> = indices
        .iter()
        .map(|x| match x {
            IndexView::I32(a) => a.mapv(i64::from),
            IndexView::I64(a) => a.to_owned(),
        })
        .collect();
    let wide: Vec<ArrayViewD<'_, i64>> = wide.iter().map(|a| a.view()).collect();
    if opts.mul == MulMode::Exact {
        return Ok(evaluate_indexed(f, b, inputs, &wide, &eval_opts)?);
    }
    let mut typed = f.clone();
    typed.dtype = T::DTYPE;
    let plan = tessera_compiler::plan::plan(&typed, b, &PlanOptions { mul: opts.mul, ..PlanOptions::default() })?;
    Ok(evaluate_indexed(&plan.program, b, inputs, &wide, &eval_opts)?)
}

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
    /// Memory for intermediates or outputs could not be allocated.
    Memory(String),
    /// Another rank of a distributed call failed (the message names it), or the ranks
    /// could not exchange data.
    Distributed(String),
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
            Error::Memory(m) | Error::Distributed(m) => f.write_str(m),
            Error::Internal(m) => write!(f, "internal error (this is a bug in Tessera): {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<PlanError> for Error {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::Internal(m) => Error::Internal(m),
            e => Error::Input(e.to_string()),
        }
    }
}

impl From<EvalError> for Error {
    fn from(e: EvalError) -> Self {
        match e {
            EvalError::Internal(m) => Error::Internal(m),
            e => Error::Eval(e),
        }
    }
}

/// An I/O error as a short phrase, without the OS error number.
fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "it is a directory, not a file".into(),
        _ => {
            let m = e.to_string();
            m.split(" (os error").next().unwrap_or(&m).to_string()
        }
    }
}

/// Options for one call.
#[derive(Clone, Debug)]
pub struct CallOptions {
    /// Dims given explicitly (`--dim n=4`), for dims the inputs do not determine.
    pub dims: Vec<(String, u64)>,
    /// Bytes allowed for the intermediates alive at once, and for each output. When the
    /// plain plan's intermediates would exceed it, the call plans slice loops under it
    /// and runs them (slices of the work whose intermediates fit, accumulated into the
    /// outputs); an output over it is refused. Inputs are not counted.
    pub memory_limit: u64,
    /// Evaluate in this dtype instead of the function's declared one.
    pub dtype: Option<DType>,
    /// What runs the call (Cranelift by default).
    pub backend: Backend,
    /// Spread the call over these ranks (every rank calls with the same inputs): the
    /// chunks of the outermost slice loops are divided among them, balanced by cost, and
    /// every rank gets the combined outputs. A failure on any rank fails the call on
    /// every rank. None runs in this process alone.
    pub distributed: Option<Ranks>,
    /// How products are computed: exactly, or every product of the plan's contractions
    /// and maps as an L-Mul (`--mul lmul`, `lmul3`, `lmul4`; see docs/lmul.md), with
    /// ordinary float sums. In L-Mul mode contractions run as generated loop kernels.
    pub mul: MulMode,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            dims: Vec::new(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            dtype: None,
            backend: Backend::Cranelift,
            distributed: None,
            mul: MulMode::Exact,
        }
    }
}

impl CallOptions {
    /// Ranks the call is spread over (1 when not distributed).
    fn ranks(&self) -> usize {
        self.distributed.as_ref().map_or(1, |d| d.count())
    }
}

/// The names of the standard-library modules (`use std::NAME`, [`Module::stdlib`]).
pub fn stdlib_names() -> Vec<&'static str> {
    tessera_compiler::stdlib::names()
}

/// A checked `.tsr` module: its functions as typed programs, calls inlined.
#[derive(Debug)]
pub struct Module {
    sources: SourceMap,
    functions: Vec<tir::Function>,
    warnings: Vec<Diagnostic>,
    ast: Option<tessera_compiler::syntax::ast::Module>,
    /// Compiled functions by (name, dtype, dim sizes, backend).
    cache: Mutex<HashMap<CacheKey, Arc<Compiled>>>,
}

/// One function of a [`Module`], ready to call.
#[derive(Clone, Copy, Debug)]
pub struct Function<'m> {
    module: &'m Module,
    tir: &'m tir::Function,
}

impl Module {
    /// Checks `.tsr` source text (shown as `<source>` in messages).
    pub fn from_source(text: &str) -> Result<Module, Error> {
        Module::from_named_source("<source>", text)
    }

    /// Checks `.tsr` source text shown under `name` in messages.
    pub fn from_named_source(name: &str, text: &str) -> Result<Module, Error> {
        let (sources, _, checked) = tessera_compiler::pipeline::check(name, text);
        if checked.has_errors() {
            return Err(Error::Compile { diagnostics: checked.diagnostics, sources });
        }
        let ast = checked.ast;
        Ok(Module { sources, functions: checked.functions, warnings: checked.diagnostics, ast, cache: Mutex::new(HashMap::new()) })
    }

    /// Reads and checks a `.tsr` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Module, Error> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::Io { path: shown.clone(), message: io_message(&e) })?;
        let text = String::from_utf8(bytes).map_err(|e| Error::Io {
            path: shown.clone(),
            message: format!(
                "not UTF-8 text (invalid byte at offset {}); .tsr programs are text files",
                e.utf8_error().valid_up_to()
            ),
        })?;
        Module::from_named_source(&shown, &text)
    }

    /// A standard library module, e.g. `Module::stdlib("attention")`.
    pub fn stdlib(name: &str) -> Result<Module, Error> {
        match tessera_compiler::stdlib::source(name) {
            Some(src) => Module::from_named_source(&format!("std/{name}.tsr"), src),
            None => Err(Error::Input(format!(
                "there is no standard module `{name}`; the modules are: {}",
                tessera_compiler::stdlib::names().join(", ")
            ))),
        }
    }

    /// Warnings found while checking (the module has no errors).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The warnings rendered with their source excerpts.
    pub fn render_warnings(&self, color: bool) -> String {
        render_all(&self.warnings, &self.sources, color)
    }

    /// The sources the module was built from (the file and any `use`d stdlib modules).
    pub fn sources(&self) -> &SourceMap {
        &self.sources
    }

    /// Names of the functions defined in the file, in order.
    pub fn function_names(&self) -> Vec<&str> {
        self.functions.iter().map(|f| f.name.as_str()).collect()
    }

    /// The function called `name`.
    pub fn function(&self, name: &str) -> Result<Function<'_>, Error> {
        match self.functions.iter().find(|f| f.name == name) {
            Some(tir) => Ok(Function { module: self, tir }),
            None => Err(Error::Input(format!(
                "no function `{name}` in this module; its functions are: {}",
                self.function_names().join(", ")
            ))),
        }
    }

    /// The function to run when none is named: `name` if given, else the only
    /// function, else one called `main`.
    pub fn entry(&self, name: Option<&str>) -> Result<Function<'_>, Error> {
        if let Some(n) = name {
            return self.function(n);
        }
        match self.functions.as_slice() {
            [only] => Ok(Function { module: self, tir: only }),
            fs => match fs.iter().find(|f| f.name == "main") {
                Some(tir) => Ok(Function { module: self, tir }),
                None => Err(Error::Input(format!(
                    "this module defines {} functions; choose one with --fn ({})",
                    fs.len(),
                    self.function_names().join(", ")
                ))),
            },
        }
    }

    /// The root file's AST, printed as canonical source (`emit --stage ast`).
    pub fn emit_ast(&self) -> String {
        self.ast.as_ref().map(tessera_compiler::syntax::print_module).unwrap_or_default()
    }
}

impl<'m> Function<'m> {
    pub fn name(&self) -> &'m str {
        &self.tir.name
    }

    /// The dtype the function was declared with.
    pub fn dtype(&self) -> DType {
        self.tir.dtype
    }

    pub fn input_names(&self) -> Vec<&'m str> {
        self.tir.inputs.iter().map(|&t| self.tir.tensor(t).name.as_str()).collect()
    }

    pub fn output_names(&self) -> Vec<&'m str> {
        self.tir.outputs.iter().map(|&t| self.tir.tensor(t).name.as_str()).collect()
    }

    /// The typed program (calls inlined, reductions explicit).
    pub fn tir(&self) -> &'m tir::Function {
        self.tir
    }

    /// The typed program as text (`emit --stage tir`).
    pub fn emit_tir(&self) -> String {
        self.tir.to_string()
    }

    /// The contraction graph of each statement as text (`emit --stage graph`).
    pub fn emit_graph(&self) -> String {
        tessera_compiler::graph::build(self.tir).to_text(self.tir)
    }

    /// The plan for the given dims with default options (algebra pass on, no memory limit).
    pub fn plan_for(&self, dims: &[(&str, u64)]) -> Result<Plan, Error> {
        self.plan(dims, &PlanOptions::default())
    }

    /// The costed plan for concrete dims; every dim of the signature must be given.
    /// Under a memory limit that needs slice loops, the slicing a call runs.
    pub fn plan(&self, dims: &[(&str, u64)], opts: &PlanOptions) -> Result<Plan, Error> {
        let b = self.bindings(dims, "planning")?;
        planned(self.tir, &b, opts)
    }

    /// The function compiled for concrete dims (every dim given), as [`Function::compile`]
    /// does for input shapes; `tessera emit --stage loops` and `tessera bench` use it.
    pub fn compile_dims(&self, dims: &[(&str, u64)], opts: &CallOptions) -> Result<Arc<Compiled>, Error> {
        let b = self.bindings(dims, "compiling")?;
        self.compiled(&b, opts.dtype.unwrap_or(self.tir.dtype), opts)
    }

    /// Bindings from named dims, with errors that name unknown and missing dims.
    fn bindings(&self, dims: &[(&str, u64)], what: &str) -> Result<tir::Bindings, Error> {
        let f = self.tir;
        let mut b = tir::Bindings::new(f.dims.len());
        for (name, v) in dims {
            match f.dim_by_name(name) {
                Some(d) => b.set(d, *v),
                None => {
                    let all: Vec<&str> = f.dims.iter().map(|d| d.name.as_str()).collect();
                    return Err(Error::Input(format!(
                        "`{}` has no dim `{name}`; its dims are: {}",
                        f.name,
                        if all.is_empty() { "none".to_string() } else { all.join(", ") }
                    )));
                }
            }
        }
        let missing: Vec<&str> = f
            .dims
            .iter()
            .enumerate()
            .filter(|(k, _)| b.get(tir::DimId(*k as u32)).is_none())
            .map(|(_, d)| d.name.as_str())
            .collect();
        if !missing.is_empty() {
            let example: Vec<String> = missing.iter().map(|m| format!("--dim {m}=64")).collect();
            return Err(Error::Input(format!(
                "{what} `{}` needs a size for every dim; missing: {} (e.g. {})",
                f.name,
                missing.join(", "),
                example.join(" ")
            )));
        }
        Ok(b)
    }

    /// The module this function belongs to.
    pub fn module(&self) -> &'m Module {
        self.module
    }

    /// Calls the function on arrays of its element type, with default options.
    pub fn call<T: Scalar>(&self, inputs: &[ArrayViewD<'_, T>]) -> Result<Vec<ArrayD<T>>, Error> {
        self.call_with(inputs, &CallOptions::default())
    }

    /// Calls the function; inputs are positional, in declaration order.
    pub fn call_with<T: Scalar>(
        &self,
        inputs: &[ArrayViewD<'_, T>],
        opts: &CallOptions,
    ) -> Result<Vec<ArrayD<T>>, Error> {
        if !self.tir.indices.is_empty() {
            return Err(Error::Input(format!(
                "`{}` takes index inputs ({}); call it with call_with_indices",
                self.tir.name,
                self.index_names().join(", ")
            )));
        }
        self.call_with_indices(inputs, &[], opts)
    }

    /// The names of the integer index inputs, in declaration order.
    pub fn index_names(&self) -> Vec<&'m str> {
        self.tir.indices.iter().map(|&t| self.tir.tensor(t).name.as_str()).collect()
    }

    /// Calls a function that gathers: the value inputs in declaration order, then the
    /// index inputs (`I: i64[e]`) in declaration order, as i32 or i64 arrays. An index
    /// outside the axis it selects is an [`Error::Input`] naming the input, the
    /// position, the value and the range allowed.
    pub fn call_with_indices<T: Scalar>(
        &self,
        inputs: &[ArrayViewD<'_, T>],
        indices: &[IndexView<'_>],
        opts: &CallOptions,
    ) -> Result<Vec<ArrayD<T>>, Error> {
        if indices.len() != self.tir.indices.len() {
            return Err(Error::Input(format!(
                "`{}` takes {} index inputs ({}), but {} were given",
                self.tir.name,
                self.tir.indices.len(),
                self.index_names().join(", "),
                indices.len()
            )));
        }
        let want = opts.dtype.unwrap_or(self.tir.dtype);
        if T::DTYPE != want {
            return Err(Error::Input(format!(
                "`{}` is declared {}, but the inputs are {}; convert them, or evaluate in {} (CallOptions::dtype, --dtype {})",
                self.tir.name,
                want,
                T::DTYPE,
                T::DTYPE,
                T::DTYPE
            )));
        }
        if inputs.len() != self.tir.inputs.len() {
            return Err(Error::Input(format!(
                "`{}` takes {} inputs ({}), but {} were given",
                self.tir.name,
                self.tir.inputs.len(),
                self.input_names().join(", "),
                inputs.len()
            )));
        }
        let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).chain(indices.iter().map(|x| x.shape())).collect();
        let bindings =
            tir::bind_dims(self.tir, &shapes, &opts.dims).map_err(|e| Error::Input(format!("`{}`: {e}", self.tir.name)))?;
        if opts.backend == Backend::Reference {
            return reference(self.tir, &bindings, inputs, indices, opts);
        }
        match &opts.distributed {
            None if !indices.is_empty() => self.compiled(&bindings, T::DTYPE, opts)?.run_indexed(inputs, indices),
            Some(_) if !indices.is_empty() => Err(Error::Input("a function with index inputs does not run distributed yet".into())),
            None => self.compiled(&bindings, T::DTYPE, opts)?.run(inputs),
            Some(d) => d.agreed(self.compiled(&bindings, T::DTYPE, opts).and_then(|c| c.run_distributed(inputs, d))),
        }
    }

    /// The function compiled for input shapes (and `opts.dims`, `opts.dtype`,
    /// `opts.backend`); cached, so a second request with the same sizes is free.
    /// With index inputs, `shapes` lists the value inputs' shapes, then the index inputs'.
    pub fn compile(&self, shapes: &[&[usize]], opts: &CallOptions) -> Result<Arc<Compiled>, Error> {
        if shapes.len() != self.tir.args().count() {
            let names: Vec<&str> = self.input_names().into_iter().chain(self.index_names()).collect();
            return Err(Error::Input(format!(
                "`{}` takes {} inputs ({}), but {} shapes were given",
                self.tir.name,
                names.len(),
                names.join(", "),
                shapes.len()
            )));
        }
        let bindings =
            tir::bind_dims(self.tir, shapes, &opts.dims).map_err(|e| Error::Input(format!("`{}`: {e}", self.tir.name)))?;
        self.compiled(&bindings, opts.dtype.unwrap_or(self.tir.dtype), opts)
    }

    fn compiled(&self, b: &tir::Bindings, dtype: DType, opts: &CallOptions) -> Result<Arc<Compiled>, Error> {
        let sizes: Vec<u64> = (0..self.tir.dims.len()).map(|k| b.get(tir::DimId(k as u32)).unwrap_or(0)).collect();
        let key: CacheKey = (self.tir.name.clone(), dtype, sizes, opts.backend, None, opts.mul);
        let c = self.cached(key.clone(), || compile_tir(self.tir, b, dtype, opts.backend, opts.mul))?;
        match check_memory(&c, opts.memory_limit) {
            // Slice loops cut inputs along their axes, which a gathered row does not
            // follow: a function that gathers is refused rather than sliced.
            Err(e) if intermediate_over_limit(&e) && self.tir.has_gathers() => Err(Error::Memory(format!(
                "{}; `{}` gathers, and functions that gather do not run in slices under a memory limit yet",
                e.render(false).trim_end(),
                self.tir.name
            ))),
            // An intermediate over the limit: run the plan's slice loops instead.
            Err(e) if intermediate_over_limit(&e) => {
                let sliced = (opts.memory_limit, opts.ranks());
                let key = (key.0, key.1, key.2, key.3, Some(sliced), key.5);
                self.cached(key, || compile_sliced(self.tir, b, dtype, opts.backend, sliced, e, opts.mul))
            }
            Err(e) => Err(e),
            Ok(()) => Ok(c),
        }
    }

    /// The module's compiled function under `key`, compiled by `make` when missing.
    fn cached(&self, key: CacheKey, make: impl FnOnce() -> Result<Compiled, Error>) -> Result<Arc<Compiled>, Error> {
        if let Some(c) = self.module.cache.lock().map(|c| c.get(&key).cloned()).ok().flatten() {
            return Ok(c);
        }
        let c = Arc::new(make()?);
        if let Ok(mut m) = self.module.cache.lock() {
            m.insert(key, c.clone());
        }
        Ok(c)
    }

    /// Calls the function on dynamically typed tensors. Every input must have the
    /// function's dtype (or `opts.dtype`, to which inputs are then cast).
    pub fn call_tensors(&self, inputs: &[Tensor], opts: &CallOptions) -> Result<Vec<Tensor>, Error> {
        self.call_tensors_with_indices(inputs, &[], opts)
    }

    /// [`Function::call_tensors`] for a function with index inputs (see
    /// [`Function::call_with_indices`]).
    pub fn call_tensors_with_indices(&self, inputs: &[Tensor], indices: &[IndexView<'_>], opts: &CallOptions) -> Result<Vec<Tensor>, Error> {
        let want = opts.dtype.unwrap_or(self.tir.dtype);
        let names = self.input_names();
        for (k, t) in inputs.iter().enumerate() {
            if opts.dtype.is_none() && t.dtype() != want {
                let name = names.get(k).copied().unwrap_or("?");
                return Err(Error::Input(format!(
                    "input `{name}` is {}, but `{}` is declared {want}; convert it, or evaluate in {} with --dtype {}",
                    t.dtype(),
                    self.tir.name,
                    t.dtype(),
                    t.dtype()
                )));
            }
        }
        let cast: Vec<Tensor> = inputs.iter().map(|t| t.clone().cast(want)).collect();
        match want {
            DType::F32 => {
                let views: Vec<ArrayViewD<'_, f32>> =
                    cast.iter().filter_map(|t| if let Tensor::F32(a) = t { Some(a.view()) } else { None }).collect();
                Ok(self.call_with_indices(&views, indices, opts)?.into_iter().map(Tensor::F32).collect())
            }
            DType::F64 => {
                let views: Vec<ArrayViewD<'_, f64>> =
                    cast.iter().filter_map(|t| if let Tensor::F64(a) = t { Some(a.view()) } else { None }).collect();
                Ok(self.call_with_indices(&views, indices, opts)?.into_iter().map(Tensor::F64).collect())
            }
        }
    }
}

/// numpy's `einsum` on arrays of one element type: `einsum("ij,jk->ik", &[a, b])`.
///
/// Accepts numpy's whole subscript syntax (implicit output, `...`, repeated indices,
/// size-1 broadcasting) plus opt_einsum's labels: any character but `,` `.` `-` `>` and
/// whitespace (so `×` and `÷`, which opt_einsum's `get_symbol` gives past 52 labels).
pub fn einsum<T: Scalar>(spec: &str, inputs: &[ArrayViewD<'_, T>]) -> Result<ArrayD<T>, Error> {
    einsum_with(spec, inputs, &CallOptions::default())
}

/// [`einsum`] with options (memory limit).
pub fn einsum_with<T: Scalar>(spec: &str, inputs: &[ArrayViewD<'_, T>], opts: &CallOptions) -> Result<ArrayD<T>, Error> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).collect();
    // A repeated einsum skips the translation: its compiled function is looked up first,
    // so that a tiny einsum called in a loop costs a hash lookup and the kernels. One
    // whose intermediates exceed the limit takes the full path below, which slices it.
    if opts.backend != Backend::Reference && opts.distributed.is_none() {
        if let Some(c) = cached_einsum(&einsum_key(spec, &shapes, T::DTYPE, opts.backend, None, opts.mul)) {
            if check_memory(&c, opts.memory_limit).is_ok() {
                let mut out = c.run(inputs)?;
                return out.pop().ok_or_else(|| Error::Internal("einsum produced no output".into()));
            }
        }
    }
    let mut sources = SourceMap::new();
    let file = sources.add("<einsum>", spec);
    let e = match tessera_compiler::einsum::translate(spec, &shapes, T::DTYPE, file) {
        Ok(e) => e,
        Err(d) => return Err(Error::Compile { diagnostics: vec![d], sources }),
    };
    let mut out = if opts.backend == Backend::Reference {
        reference(&e.function, &e.bindings, inputs, &[], opts)?
    } else {
        match &opts.distributed {
            None => compile_einsum_limited(spec, &shapes, &e, T::DTYPE, opts)?.run(inputs)?,
            Some(d) => d.agreed(compile_einsum_limited(spec, &shapes, &e, T::DTYPE, opts).and_then(|c| c.run_distributed(inputs, d)))?,
        }
    };
    out.pop().ok_or_else(|| Error::Internal("einsum produced no output".into()))
}

/// Compiled einsums by (spec, dtype, shapes, backend, slicing, multiplication mode),
/// shared by the whole process.
type EinsumKey = (String, DType, Vec<Vec<usize>>, Backend, Option<(u64, usize)>, MulMode);
static EINSUM_CACHE: OnceLock<Mutex<HashMap<EinsumKey, Arc<Compiled>>>> = OnceLock::new();

/// The einsum compiled for these shapes (cached), ready to call with [`Compiled::run`].
pub fn compile_einsum_for(spec: &str, shapes: &[&[usize]], dtype: DType, backend: Backend) -> Result<Arc<Compiled>, Error> {
    let mut sources = SourceMap::new();
    let file = sources.add("<einsum>", spec);
    let e = match tessera_compiler::einsum::translate(spec, shapes, dtype, file) {
        Ok(e) => e,
        Err(d) => return Err(Error::Compile { diagnostics: vec![d], sources }),
    };
    compile_einsum(spec, shapes, &e, dtype, backend, None, MulMode::Exact)
}

/// The einsum compiled for these shapes and `opts.backend`, sliced when an
/// intermediate would exceed `opts.memory_limit` (cached either way).
pub fn compile_einsum_with(spec: &str, shapes: &[&[usize]], dtype: DType, opts: &CallOptions) -> Result<Arc<Compiled>, Error> {
    let mut sources = SourceMap::new();
    let file = sources.add("<einsum>", spec);
    let e = match tessera_compiler::einsum::translate(spec, shapes, dtype, file) {
        Ok(e) => e,
        Err(d) => return Err(Error::Compile { diagnostics: vec![d], sources }),
    };
    compile_einsum_limited(spec, shapes, &e, dtype, opts)
}

fn compile_einsum_limited(
    spec: &str,
    shapes: &[&[usize]],
    e: &tessera_compiler::einsum::Einsum,
    dtype: DType,
    opts: &CallOptions,
) -> Result<Arc<Compiled>, Error> {
    let c = compile_einsum(spec, shapes, e, dtype, opts.backend, None, opts.mul)?;
    match check_memory(&c, opts.memory_limit) {
        Err(refusal) if intermediate_over_limit(&refusal) => {
            compile_einsum(spec, shapes, e, dtype, opts.backend, Some(((opts.memory_limit, opts.ranks()), refusal)), opts.mul)
        }
        Err(e) => Err(e),
        Ok(()) => Ok(c),
    }
}

fn einsum_key(spec: &str, shapes: &[&[usize]], dtype: DType, backend: Backend, limit: Option<(u64, usize)>, mul: MulMode) -> EinsumKey {
    (spec.to_string(), dtype, shapes.iter().map(|s| s.to_vec()).collect(), backend, limit, mul)
}

fn cached_einsum(key: &EinsumKey) -> Option<Arc<Compiled>> {
    EINSUM_CACHE.get_or_init(|| Mutex::new(HashMap::new())).lock().ok().and_then(|m| m.get(key).cloned())
}

/// The einsum compiled whole, or with `sliced` = (limit, the refusal to give when the
/// plan finds no slice loop) its slice loops run under the limit.
fn compile_einsum(
    spec: &str,
    shapes: &[&[usize]],
    e: &tessera_compiler::einsum::Einsum,
    dtype: DType,
    backend: Backend,
    sliced: Option<((u64, usize), Error)>,
    mul: MulMode,
) -> Result<Arc<Compiled>, Error> {
    let limit = sliced.as_ref().map(|s| s.0);
    let key = einsum_key(spec, shapes, dtype, backend, limit, mul);
    if let Some(c) = cached_einsum(&key) {
        return Ok(c);
    }
    let c = Arc::new(match sliced {
        Some((limit, refusal)) => compile_sliced(&e.function, &e.bindings, dtype, backend, limit, refusal, mul)?,
        None => compile_tir(&e.function, &e.bindings, dtype, backend, mul)?,
    });
    let cache = EINSUM_CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(mut m) = cache.lock() {
        // A long-running process compiling many shapes should not grow without bound.
        if m.len() >= 256 {
            m.clear();
        }
        m.insert(key, c.clone());
    }
    Ok(c)
}

/// [`einsum`] on dynamically typed tensors: f64 if any input is f64, else f32.
pub fn einsum_tensors(spec: &str, inputs: &[Tensor], opts: &CallOptions) -> Result<Tensor, Error> {
    let any_f64 = inputs.iter().any(|t| t.dtype() == DType::F64);
    let dtype = opts.dtype.unwrap_or(if any_f64 { DType::F64 } else { DType::F32 });
    let cast: Vec<Tensor> = inputs.iter().map(|t| t.clone().cast(dtype)).collect();
    match dtype {
        DType::F32 => {
            let views: Vec<ArrayViewD<'_, f32>> =
                cast.iter().filter_map(|t| if let Tensor::F32(a) = t { Some(a.view()) } else { None }).collect();
            einsum_with(spec, &views, opts).map(Tensor::F32)
        }
        DType::F64 => {
            let views: Vec<ArrayViewD<'_, f64>> =
                cast.iter().filter_map(|t| if let Tensor::F64(a) = t { Some(a.view()) } else { None }).collect();
            einsum_with(spec, &views, opts).map(Tensor::F64)
        }
    }
}

/// The plan of a numpy einsum for label sizes, e.g. `plan_einsum("ij,jk->ik",
/// &[("i", 64), ("j", 32), ("k", 8)], &PlanOptions::default())`. Specs with `...` need
/// shapes, not label sizes: use [`einsum_shapes_plan`].
pub fn plan_einsum(spec: &str, sizes: &[(&str, u64)], opts: &PlanOptions) -> Result<Plan, Error> {
    let shapes = einsum_label_shapes(spec, sizes)?;
    let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
    einsum_shapes_plan(spec, &refs, opts)
}

/// The operand shapes of an einsum whose labels have these sizes.
pub fn einsum_label_shapes(spec: &str, sizes: &[(&str, u64)]) -> Result<Vec<Vec<usize>>, Error> {
    let lhs = spec.split("->").next().unwrap_or("");
    if spec.contains('.') {
        return Err(Error::Input(
            "label sizes cannot give the shape of `...` axes; plan this spec with shapes instead".into(),
        ));
    }
    let mut shapes = Vec::new();
    for term in lhs.split(',') {
        let mut shape = Vec::new();
        for c in term.chars().filter(|c| !c.is_whitespace()) {
            let label = c.to_string();
            match sizes.iter().find(|(n, _)| *n == label) {
                Some((_, v)) => shape.push(usize::try_from(*v).map_err(|_| Error::Input(format!("size of {label} is too large")))?),
                None => {
                    return Err(Error::Input(format!(
                        "no size for label `{label}`; give every label, e.g. --sizes {label}=64"
                    )))
                }
            }
        }
        shapes.push(shape);
    }
    Ok(shapes)
}

/// The plan of a numpy einsum for operand shapes.
pub fn einsum_shapes_plan(spec: &str, shapes: &[&[usize]], opts: &PlanOptions) -> Result<Plan, Error> {
    let mut sources = SourceMap::new();
    let file = sources.add("<einsum>", spec);
    let e = match tessera_compiler::einsum::translate(spec, shapes, DType::F32, file) {
        Ok(e) => e,
        Err(d) => return Err(Error::Compile { diagnostics: vec![d], sources }),
    };
    planned(&e.function, &e.bindings, opts)
}

/// The plan of `f` under `opts`. When a memory limit needs slice loops, the slicing is
/// the one a call runs: `pipeline::compile_sliced` chooses it by the work of the chunks
/// the executor picks (compiled for the loop-IR interpreter, which generates no code),
/// and a limit a call would refuse is refused here too.
fn planned(f: &tir::Function, b: &tir::Bindings, opts: &PlanOptions) -> Result<Plan, Error> {
    use tessera_compiler::pipeline;
    let plan = tessera_compiler::plan::plan(f, b, opts)?;
    match opts.memory_limit {
        Some(limit) if !plan.slices.is_empty() => {
            match pipeline::compile_sliced(f, b, f.dtype, Backend::Interp, limit, 1, opts).map_err(pipeline_error)? {
                Some(out) => Ok(out.plan),
                None => Ok(plan),
            }
        }
        _ => Ok(plan),
    }
}
