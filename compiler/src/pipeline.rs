//! The one pipeline driver: source → typed program (TIR) → plan → loop program → code.
//!
//! The facade, the CLI, the file-driven tests and the property tests all compile through
//! here, so that every way in runs the same stages with the same options. [`check`] is
//! the per-file front half; [`compile`] the per-call back half, which can stop after
//! any stage ([`Stage`]) and times each one.

use crate::backend::Backend;
use crate::check::{check_file, Checked};
use crate::diag::{FileId, SourceMap};
use crate::exec::{ExecError, Executable};
use crate::loops::{LowerError, LowerOptions, Program};
use crate::plan::{Plan, PlanError, PlanOptions};
use crate::tir::{Bindings, Function};
use std::time::Instant;
use tessera_runtime::DType;

/// Checks `.tsr` source text shown under `name`: the typed functions and every
/// diagnostic, with the sources they point into and the id of the root file in them.
pub fn check(name: &str, text: &str) -> (SourceMap, FileId, Checked) {
    let mut sources = SourceMap::new();
    let root = sources.add(name, text);
    let checked = check_file(&mut sources, root);
    (sources, root, checked)
}

/// The last stage [`compile`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Stage {
    /// Plan only (order, factorisation, fusion, slicing).
    Plan,
    /// Lower the plan to a loop program (memory passes included).
    Loops,
    /// Generate and load code for the backend (the default).
    #[default]
    Code,
}

/// Options of one compilation.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub backend: Backend,
    pub plan: PlanOptions,
    pub lower: LowerOptions,
    pub stop_after: Stage,
}

/// Wall-clock milliseconds of each stage that ran.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Path search and algebra.
    pub plan_ms: f64,
    /// Plan → loop program, memory passes included.
    pub lower_ms: f64,
    /// Code generation and loading (0 for the interpreter).
    pub codegen_ms: f64,
}

/// What the stages produced. `program` is there from [`Stage::Loops`] on, `exec` at
/// [`Stage::Code`] for every backend that runs loop programs (not the reference
/// evaluator, which runs the typed program itself).
#[derive(Debug)]
pub struct Output {
    pub plan: Plan,
    pub program: Option<Program>,
    pub exec: Option<Executable>,
    pub timings: Timings,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Lower(#[from] LowerError),
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// Compiles `f` in `dtype` at the sizes in `b`, up to `opts.stop_after`.
pub fn compile(f: &Function, b: &Bindings, dtype: DType, opts: &Options) -> Result<Output, PipelineError> {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let mut timings = Timings::default();
    let start = Instant::now();
    let plan = if f.dtype == dtype {
        crate::plan::plan(f, b, &opts.plan)?
    } else {
        let mut f = f.clone();
        f.dtype = dtype;
        crate::plan::plan(&f, b, &opts.plan)?
    };
    timings.plan_ms = ms(start);
    if opts.stop_after == Stage::Plan {
        return Ok(Output { plan, program: None, exec: None, timings });
    }
    let start = Instant::now();
    let program = crate::loops::lower(&plan, &opts.lower)?;
    timings.lower_ms = ms(start);
    if opts.stop_after == Stage::Loops || opts.backend == Backend::Reference {
        return Ok(Output { plan, program: Some(program), exec: None, timings });
    }
    let start = Instant::now();
    let exec = Executable::new(program, opts.backend)?;
    timings.codegen_ms = ms(start);
    Ok(Output { plan, program: None, exec: Some(exec), timings })
}

impl Output {
    /// The loop program, wherever it is held.
    pub fn program(&self) -> Option<&Program> {
        self.program.as_ref().or(self.exec.as_ref().map(|e| &e.program))
    }
}

/// The code `backend` generates for a loop program, as text.
pub fn emit(p: &Program, backend: Backend) -> Result<String, crate::codegen::CodegenError> {
    crate::codegen::for_backend(backend)?.emit(p)
}
