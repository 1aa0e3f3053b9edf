//! Runs a loop program on arrays, on the engine its backend calls for: native kernels
//! on the CPU executor (`cpu.rs`: slots, tile groups, the runtime's thread pool and
//! GEMMs), or the loop-IR interpreter.
//!
//! An [`Executable`] is made from a program and a [`Backend`]; code generators plug in
//! through [`crate::codegen::Codegen`], so this module knows no backend by name.

pub mod blas;
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod sliced;

pub use sliced::{Distribution, SliceLoop, Slicing};

pub use cpu::gemm_args;

use crate::backend::Backend;
use crate::codegen::{self, Code, Codegen, CodegenError};
use crate::eval::Scalar;
use crate::loops::{self, Program};
use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// Inputs that do not fit the program.
    #[error("{0}")]
    Input(String),
    /// The backend cannot run here: not built, or it runs no loop programs.
    #[error("{0}")]
    Unavailable(String),
    /// Memory could not be had.
    #[error("{0}")]
    Memory(String),
    /// A sliced call's intermediates exceed its memory limit even in chunks of one
    /// element, as measured on its compiled pieces.
    #[error("cannot run under the memory limit of {limit} bytes: even slices of one element need about {need} bytes of intermediates")]
    OverLimit { limit: u64, need: u64 },
    /// Another rank of a distributed call failed, or the ranks could not exchange data.
    #[error("{0}")]
    Distributed(String),
    /// An invariant failed. Always a bug.
    #[error("internal error (this is a bug in Tessera): {0}")]
    Internal(String),
}

impl From<CodegenError> for ExecError {
    fn from(e: CodegenError) -> ExecError {
        match e {
            CodegenError::NotBuilt { .. } | CodegenError::NoCode(_) | CodegenError::Host { .. } => {
                ExecError::Unavailable(e.to_string())
            }
            CodegenError::Invalid(_) | CodegenError::Failed { .. } | CodegenError::Internal { .. } => {
                ExecError::Internal(e.to_string())
            }
        }
    }
}

/// An index argument as a caller has it: i32 or i64 entries, any strides.
#[derive(Clone, Debug)]
pub enum IndexView<'a> {
    I32(ArrayViewD<'a, i32>),
    I64(ArrayViewD<'a, i64>),
}

impl IndexView<'_> {
    pub fn shape(&self) -> &[usize] {
        match self {
            IndexView::I32(a) => a.shape(),
            IndexView::I64(a) => a.shape(),
        }
    }
}

/// Checks every index argument against the axes it selects (once per call, a tight
/// pass over each array, before any kernel runs) and hands the kernels i64 entries
/// (i32 arrays are widened; contiguous i64 arrays are used in place).
fn prepare_indices<'a>(p: &Program, indices: &'a [IndexView<'_>]) -> Result<Vec<CowArray<'a, i64, IxDyn>>, ExecError> {
    if indices.len() != p.indices.len() {
        return Err(ExecError::Input(format!("{} index arrays for {} index parameters", indices.len(), p.indices.len())));
    }
    let bounds = p.index_bounds();
    let mut out = Vec::with_capacity(indices.len());
    for (k, (x, &b)) in indices.iter().zip(&p.indices).enumerate() {
        if x.shape() != p.buf(b).shape.as_slice() {
            return Err(ExecError::Input(format!(
                "index input {} has shape {:?}, the program was compiled for {:?}",
                p.buf(b).name,
                x.shape(),
                p.buf(b).shape
            )));
        }
        let wide: CowArray<'a, i64, IxDyn> = match x {
            IndexView::I64(a) => a.as_standard_layout(),
            IndexView::I32(a) => CowArray::from(a.mapv(i64::from)),
        };
        let flat = wide.as_slice().ok_or_else(|| ExecError::Internal("an index array is not contiguous".into()))?;
        loops::check_index(p, &bounds, k, flat).map_err(ExecError::Input)?;
        out.push(wide);
    }
    Ok(out)
}

/// What runs an executable's program.
enum Engine {
    Cpu(cpu::CpuExecutor),
    #[cfg(feature = "cuda")]
    Cuda(cuda::CudaExecutor),
    Interp,
    /// A plan's slice loops around compiled pieces (`sliced.rs`).
    Sliced(Box<sliced::Sliced>),
}

/// A loop program ready to run many times.
pub struct Executable {
    pub program: Program,
    pub backend: Backend,
    /// Milliseconds spent generating native code.
    pub compile_ms: f64,
    engine: Engine,
}

impl std::fmt::Debug for Executable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executable").field("backend", &self.backend).field("compile_ms", &self.compile_ms).finish()
    }
}

impl Executable {
    /// The program compiled by `backend`'s code generator with its default options (or
    /// run by the interpreter). The reference evaluator runs typed programs, not loop
    /// programs, so it is refused here.
    pub fn new(program: Program, backend: Backend) -> Result<Executable, ExecError> {
        match backend {
            Backend::Interp => Ok(Executable { program, backend, compile_ms: 0.0, engine: Engine::Interp }),
            _ => Executable::with_codegen(program, codegen::for_backend(backend)?.as_ref()),
        }
    }

    /// The program compiled by a given code generator (e.g. one with non-default
    /// options).
    pub fn with_codegen(program: Program, cg: &dyn Codegen) -> Result<Executable, ExecError> {
        let start = Instant::now();
        let code = cg.compile(&program)?;
        let compile_ms = start.elapsed().as_secs_f64() * 1e3;
        let engine = match code {
            Code::Cpu(c) => Engine::Cpu(cpu::CpuExecutor::new(&program, c.kernels)?),
            #[cfg(feature = "cuda")]
            Code::Cuda(c) => Engine::Cuda(cuda::CudaExecutor::new(&program, c)?),
        };
        Ok(Executable { program, backend: cg.backend(), compile_ms, engine })
    }

    /// A plan with slice loops, run slice by slice within `limit` bytes of
    /// intermediates: its pieces are compiled by `backend`, and `program` is the loop
    /// program of one slice of the body.
    pub fn sliced(
        plan: &crate::plan::Plan,
        b: &crate::tir::Bindings,
        backend: Backend,
        limit: u64,
    ) -> Result<Executable, ExecError> {
        Executable::sliced_for_ranks(plan, b, backend, limit, 1)
    }

    /// [`Executable::sliced`] with at least one chunk of each outermost loop per thread
    /// of each of `ranks` ranks where the loop allows, for [`Executable::run_distributed`].
    pub fn sliced_for_ranks(
        plan: &crate::plan::Plan,
        b: &crate::tir::Bindings,
        backend: Backend,
        limit: u64,
        ranks: usize,
    ) -> Result<Executable, ExecError> {
        let start = Instant::now();
        let (s, program) = sliced::Sliced::new(plan, b, backend, limit, ranks)?;
        let compile_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(Executable { program, backend, compile_ms, engine: Engine::Sliced(Box::new(s)) })
    }

    /// How slices run, for a sliced executable.
    pub fn slicing(&self) -> Option<&Slicing> {
        match &self.engine {
            Engine::Sliced(s) => Some(&s.info),
            _ => None,
        }
    }

    /// Shapes of the inputs a call takes.
    pub fn input_shapes(&self) -> Vec<Vec<usize>> {
        match &self.engine {
            Engine::Sliced(s) => s.input_shapes(),
            _ => self.program.inputs.iter().map(|&b| self.program.buf(b).shape.clone()).collect(),
        }
    }

    /// Shapes of the outputs a call returns.
    pub fn output_shapes(&self) -> Vec<Vec<usize>> {
        match &self.engine {
            Engine::Sliced(s) => s.output_shapes(),
            _ => self.program.outputs.iter().map(|&b| self.program.buf(b).shape.clone()).collect(),
        }
    }

    /// Peak bytes of intermediates a call holds on `threads` threads (memory slots and
    /// tiles; for a sliced executable, the driver's results and its pieces' memory).
    pub fn temp_bytes(&self, threads: usize) -> usize {
        match &self.engine {
            Engine::Sliced(s) => s.info.temp_bytes,
            _ => self.program.temp_bytes(threads),
        }
    }

    /// Runs the program. Inputs may have any strides (non-contiguous ones are copied).
    pub fn run<T: Scalar>(&self, inputs: &[ArrayViewD<'_, T>]) -> Result<Vec<ArrayD<T>>, ExecError> {
        self.run_on(inputs, None)
    }

    /// Runs the program on every rank of `dist` with the same inputs: a sliced program
    /// shares the chunks of its outermost loops among the ranks, and every rank returns
    /// the combined outputs; any other program runs whole on every rank.
    pub fn run_distributed<T: Scalar>(
        &self,
        inputs: &[ArrayViewD<'_, T>],
        dist: &dyn Distribution,
    ) -> Result<Vec<ArrayD<T>>, ExecError> {
        self.run_on(inputs, Some(dist))
    }

    /// Runs the program with index arguments (in the program's `indices` order).
    pub fn run_indexed<T: Scalar>(&self, inputs: &[ArrayViewD<'_, T>], indices: &[IndexView<'_>]) -> Result<Vec<ArrayD<T>>, ExecError> {
        self.run_all(inputs, indices, None)
    }

    fn run_on<T: Scalar>(&self, inputs: &[ArrayViewD<'_, T>], dist: Option<&dyn Distribution>) -> Result<Vec<ArrayD<T>>, ExecError> {
        self.run_all(inputs, &[], dist)
    }

    fn run_all<T: Scalar>(
        &self,
        inputs: &[ArrayViewD<'_, T>],
        indices: &[IndexView<'_>],
        dist: Option<&dyn Distribution>,
    ) -> Result<Vec<ArrayD<T>>, ExecError> {
        if let Engine::Sliced(s) = &self.engine {
            if !indices.is_empty() {
                return Err(ExecError::Unavailable("a program with gathers does not run sliced (under a memory limit) yet".into()));
            }
            if T::DTYPE != self.program.dtype {
                return Err(ExecError::Input(format!(
                    "the program is {}, the inputs {}",
                    self.program.dtype.name(),
                    T::DTYPE.name()
                )));
            }
            let shapes = s.input_shapes();
            if inputs.len() != shapes.len() {
                return Err(ExecError::Input(format!("{} inputs for {} parameters", inputs.len(), shapes.len())));
            }
            for (k, (x, want)) in inputs.iter().zip(&shapes).enumerate() {
                if x.shape() != want.as_slice() {
                    return Err(ExecError::Input(format!(
                        "input {k} has shape {:?}, the program was compiled for {want:?}",
                        x.shape()
                    )));
                }
            }
            return s.run(inputs, dist);
        }
        let p = &self.program;
        if T::DTYPE != p.dtype {
            return Err(ExecError::Input(format!("the program is {}, the inputs {}", p.dtype.name(), T::DTYPE.name())));
        }
        if inputs.len() != p.inputs.len() {
            return Err(ExecError::Input(format!("{} inputs for {} parameters", inputs.len(), p.inputs.len())));
        }
        for (x, &b) in inputs.iter().zip(&p.inputs) {
            if x.shape() != p.buf(b).shape.as_slice() {
                return Err(ExecError::Input(format!(
                    "input {} has shape {:?}, the program was compiled for {:?}",
                    p.buf(b).name,
                    x.shape(),
                    p.buf(b).shape
                )));
            }
        }
        let idx = prepare_indices(p, indices)?;
        let idx: Vec<&[i64]> = idx.iter().map(|a| a.as_slice().unwrap_or(&[])).collect();
        match &self.engine {
            Engine::Cpu(cpu) => cpu.run(p, inputs, &idx),
            #[cfg(feature = "cuda")]
            Engine::Cuda(_) if !p.indices.is_empty() => {
                Err(ExecError::Unavailable("the CUDA executor does not run gathers (index inputs) yet; use a CPU backend".into()))
            }
            #[cfg(feature = "cuda")]
            Engine::Cuda(gpu) => gpu.run(p, inputs),
            Engine::Interp => interpret(p, inputs, &idx),
            Engine::Sliced(_) => Err(ExecError::Internal("a sliced executable ran as one program".into())),
        }
    }
}

/// The input as a row-major contiguous array: borrowed when it is one, else copied run
/// by run. ndarray's own copy of a strided n-dimensional view walks it element by element
/// through dynamic indices (about 20 ns each), which made strided inputs (a block of a
/// wider feature) cost more than the call itself.
pub(crate) fn standard<'a, T: Clone>(a: &ArrayViewD<'a, T>) -> CowArray<'a, T, IxDyn> {
    fn extend<T: Clone>(a: ArrayViewD<'_, T>, out: &mut Vec<T>) {
        match a.as_slice() {
            Some(s) => out.extend_from_slice(s),
            None if a.ndim() <= 1 => out.extend(a.iter().cloned()),
            None => a.outer_iter().for_each(|sub| extend(sub, out)),
        }
    }
    if a.is_standard_layout() {
        return CowArray::from(a.clone());
    }
    let mut out = Vec::with_capacity(a.len());
    extend(a.view(), &mut out);
    match ArrayD::from_shape_vec(a.raw_dim(), out) {
        Ok(x) => CowArray::from(x),
        // Unreachable: the vector has exactly the view's elements.
        Err(_) => CowArray::from(a.to_owned()),
    }
}

fn interpret<T: Scalar>(p: &Program, inputs: &[ArrayViewD<'_, T>], indices: &[&[i64]]) -> Result<Vec<ArrayD<T>>, ExecError> {
    let flat: Vec<CowArray<'_, T, IxDyn>> = inputs.iter().map(standard).collect();
    let slices: Vec<&[T]> = flat.iter().map(|a| a.as_slice().unwrap_or(&[])).collect();
    let outs = loops::interpret_indexed(p, &slices, indices, loops::InterpOptions::default()).map_err(|e| match e {
        loops::InterpError::Input(m) => ExecError::Input(m),
        e => ExecError::Internal(e.to_string()),
    })?;
    outs.into_iter()
        .zip(&p.outputs)
        .map(|(v, &b)| ArrayD::from_shape_vec(IxDyn(&p.buf(b).shape), v).map_err(|e| ExecError::Internal(e.to_string())))
        .collect()
}
