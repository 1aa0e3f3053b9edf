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
    let program = lower(&plan, &opts.lower.for_backend(opts.backend), opts.backend)?;
    timings.lower_ms = ms(start);
    if opts.stop_after == Stage::Loops || opts.backend == Backend::Reference {
        return Ok(Output { plan, program: Some(program), exec: None, timings });
    }
    let start = Instant::now();
    let exec = Executable::new(program, opts.backend)?;
    timings.codegen_ms = ms(start);
    Ok(Output { plan, program: None, exec: Some(exec), timings })
}

/// Lowers `plan` for `backend`. On the GPU, GEMMs run on cuBLAS; when one has a layout
/// cuBLAS cannot take (`exec::blas`), the program's contractions become loop kernels.
fn lower(plan: &Plan, opts: &LowerOptions, backend: Backend) -> Result<Program, LowerError> {
    let program = crate::loops::lower(plan, opts)?;
    let cublas = |p: &Program| {
        p.kernels.iter().all(|k| match k {
            crate::loops::Kernel::Gemm(g) => crate::exec::blas::blas_calls(g).is_some(),
            crate::loops::Kernel::Loops(_) => true,
        })
    };
    if backend == Backend::Cuda && !cublas(&program) {
        return crate::loops::lower(plan, &LowerOptions { gemm: false, ..opts.clone() });
    }
    Ok(program)
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

/// The code `backend` generates for a plan whose loop program, lowered with the default
/// options, is `p`: a backend that lowers differently (CUDA) lowers the plan again.
pub fn emit_plan(plan: &Plan, p: &Program, backend: Backend) -> Result<String, PipelineError> {
    let opts = LowerOptions::default();
    if opts.for_backend(backend) == opts {
        return Ok(emit(p, backend).map_err(ExecError::from)?);
    }
    let program = lower(plan, &opts.for_backend(backend), backend)?;
    Ok(emit(&program, backend).map_err(ExecError::from)?)
}

/// Plans `f` in `dtype` under a memory limit of `limit` bytes (with `base`'s other
/// options) and compiles its slice loops to run on `ranks` ranks (see [`Executable::sliced_for_ranks`]); `Ok(None)` when
/// the plan needs no slice loop.
///
/// The planner fits its model of the executor's memory under a target; the executor
/// measures its compiled pieces against the limit itself. When they need more, the
/// target drops by what they overshot and the function is planned again, so sliced
/// further, up to [`SLICE_TRIES`] plans. A slicing whose chunks would do more than
/// [`MAX_SLICED_WORK`] times the unsliced plan's FLOPs is refused.
pub fn compile_sliced(
    f: &Function,
    b: &Bindings,
    dtype: DType,
    backend: Backend,
    limit: u64,
    ranks: usize,
    base: &PlanOptions,
) -> Result<Option<Output>, PipelineError> {
    let mut f = std::borrow::Cow::Borrowed(f);
    if f.dtype != dtype {
        f.to_mut().dtype = dtype;
    }
    let mut target = limit;
    let mut plan_ms = 0.0;
    // The executor's last refusal: it stands when no plan fits a lowered target.
    let mut refused: Option<ExecError> = None;
    for _ in 0..SLICE_TRIES {
        // Both ways of costing nested loops; the slicing whose chunks do less work wins.
        let mut best: Option<(Plan, Executable, f64)> = None;
        let mut unplanned: Option<PlanError> = None;
        let mut lowered: Option<(u64, ExecError)> = None;
        for nesting_cost in [true, false] {
            let t = Instant::now();
            let opts = PlanOptions { memory_limit: Some(target), slice_nesting_cost: nesting_cost, ..base.clone() };
            let planned = crate::plan::plan(&f, b, &opts);
            plan_ms += t.elapsed().as_secs_f64() * 1e3;
            let plan = match planned {
                Ok(p) if p.slices.is_empty() => return Ok(None),
                Ok(p) => p,
                Err(e) => {
                    unplanned.get_or_insert(e);
                    continue;
                }
            };
            match Executable::sliced_for_ranks(&plan, b, backend, limit, ranks) {
                Ok(exec) => {
                    let work = exec.slicing().map_or(0.0, |s| s.flops);
                    if best.as_ref().is_none_or(|x| work < x.2) {
                        best = Some((plan, exec, work));
                    }
                }
                // The planner's estimate for this plan was `peak_bytes`: the next round
                // asks for less by what the pieces overshot.
                Err(e @ ExecError::OverLimit { need, .. }) if need > limit => {
                    let lower = plan.peak_bytes.min(target).saturating_sub(need - limit);
                    if lowered.as_ref().is_none_or(|(t, _)| lower < *t) {
                        lowered = Some((lower, e));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some((plan, exec, as_run)) = best {
            // Slicing that recomputes most of the work is refused, not run for hours.
            let unsliced = plan.flops - plan.slices.iter().map(|s| s.extra_flops).sum::<f64>();
            if as_run > MAX_SLICED_WORK * unsliced.max(1.0) {
                return Err(ExecError::Memory(format!(
                    "cannot run under the memory limit of {limit} bytes at a sensible cost: its slices would do \
                     {as_run:.3e} FLOPs, {:.0} times the {unsliced:.3e} of the unsliced plan (at most \
                     {MAX_SLICED_WORK} times is run); raise the limit",
                    as_run / unsliced.max(1.0)
                ))
                .into());
            }
            let timings = Timings { plan_ms, lower_ms: 0.0, codegen_ms: exec.compile_ms };
            return Ok(Some(Output { plan, program: Some(exec.program.clone()), exec: Some(exec), timings }));
        }
        match (lowered, refused.take(), unplanned) {
            (Some((lower, e)), _, _) if lower > 0 => {
                target = lower;
                refused = Some(e);
            }
            (Some((_, e)), _, _) => return Err(e.into()),
            (None, Some(e), _) => return Err(e.into()),
            (None, None, Some(e)) => return Err(e.into()),
            (None, None, None) => return Err(ExecError::Internal("no sliced plan was tried".into()).into()),
        }
    }
    Err(refused.unwrap_or_else(|| ExecError::Internal("no sliced plan was tried".into())).into())
}

/// Sliced plans [`compile_sliced`] makes before it gives the executor's refusal.
pub const SLICE_TRIES: usize = 4;

/// The most FLOPs a sliced call may do, as a multiple of its unsliced plan's.
pub const MAX_SLICED_WORK: f64 = 16.0;

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn function() -> Function {
        let (_, _, c) = check("p.tsr", "fn f(x: f64[n]) -> y: f64[n] { y[i] = 2 * x[i] + 1 }");
        c.functions.into_iter().next().expect("checks")
    }

    fn bindings(f: &Function) -> Bindings {
        crate::tir::bind_dims(f, &[&[5]], &[]).expect("binds")
    }

    #[test]
    fn each_stage_stops_where_asked() {
        let f = function();
        let b = bindings(&f);
        let at = |stop_after| compile(&f, &b, DType::F64, &Options { stop_after, ..Default::default() }).expect("compiles");
        let plan = at(Stage::Plan);
        assert!(plan.program.is_none() && plan.exec.is_none());
        let loops = at(Stage::Loops);
        assert!(loops.program.is_some() && loops.exec.is_none());
        assert_eq!(loops.timings.codegen_ms, 0.0);
        let code = at(Stage::Code);
        let exec = code.exec.as_ref().expect("an executable");
        assert_eq!(exec.backend, Backend::Cranelift);
        assert_eq!(code.program().map(|p| p.to_string()), loops.program.as_ref().map(|p| p.to_string()));
        let x = ArrayD::from_shape_vec(vec![5], vec![0.0, 1.0, 2.0, 3.0, 4.0]).expect("shape");
        let y = exec.run(&[x.view()]).expect("runs");
        assert_eq!(y[0].iter().copied().collect::<Vec<_>>(), vec![1.0, 3.0, 5.0, 7.0, 9.0]);
    }

    #[test]
    fn every_backend_of_the_build_runs_and_the_others_say_why_not() {
        let f = function();
        let b = bindings(&f);
        let x = ArrayD::from_shape_vec(vec![5], vec![1.0; 5]).expect("shape");
        for backend in Backend::ALL {
            let out = compile(&f, &b, DType::F64, &Options { backend, ..Default::default() });
            match (backend, out) {
                // The reference evaluator runs the typed program; the pipeline stops at loops.
                (Backend::Reference, Ok(o)) => assert!(o.exec.is_none() && o.program.is_some()),
                (b, Ok(o)) => {
                    let y = o.exec.expect("an executable").run(&[x.view()]).expect("runs");
                    assert!(y[0].iter().all(|&v| v == 3.0), "{b}: {y:?}");
                }
                // A CUDA build runs where there is a GPU and says why not elsewhere.
                (Backend::Cuda, Err(e)) if Backend::Cuda.is_built() => {
                    assert!(e.to_string().contains("no CUDA device"), "{e}")
                }
                (b, Err(e)) => {
                    assert!(!b.is_built(), "{b} is built but fails: {e}");
                    assert!(e.to_string().contains(&format!("--features {b}")), "{e}");
                }
            }
        }
    }

    #[test]
    fn backends_by_name() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>(), Ok(b));
        }
        assert_eq!("jit".parse::<Backend>(), Ok(Backend::Cranelift));
        let err = "gpu".parse::<Backend>().unwrap_err();
        assert!(err.contains("cranelift, llvm, cuda, interp, reference"), "{err}");
        assert!(Backend::executors().contains(&Backend::Interp));
        assert_eq!(Backend::native().contains(&Backend::Llvm), cfg!(feature = "llvm"));
    }
}
