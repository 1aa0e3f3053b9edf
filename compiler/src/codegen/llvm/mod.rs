//! The LLVM backend for loop kernels (cargo feature `llvm`, LLVM 19 through inkwell).
//!
//! Every loop kernel of a [`Program`] becomes one native function with the same ABI as
//! the Cranelift backend's ([`KernelFn`]): `args[i]` is the base pointer of buffer
//! `BufId(i)` (every buffer of the program has a slot, in `p.bufs` order), and
//! `begin..end` selects iterations of the kernel's parallel loop (ignored when it has
//! none; `end` is clamped to the extent). GEMM kernels are the runtime's job.
//!
//! Kernels are emitted as plain scalar loops (`gen.rs`) and LLVM's O3 pipeline, tuned for
//! the host CPU (AVX-512 where there is one), vectorises them. Each kernel is a thin
//! wrapper that loads the buffer pointers from `args` and calls the kernel body, whose
//! pointer parameters are `noalias`: buffers never overlap (the memory plan gives live
//! temporaries disjoint slots, and the verifier checks it), which is what lets LLVM
//! vectorise without runtime alias checks. After inlining, LLVM keeps that knowledge as
//! alias scopes.
//!
//! Semantics follow the loop interpreter up to reassociation of accumulators (sums carry
//! `reassoc`, so the vectoriser may keep one partial sum per lane) and FMA contraction
//! (`contract` on products and sums when [`LlvmOptions::fma`] is set). `max`/`min` are
//! `llvm.maximum`/`llvm.minimum`, which propagate NaN like the interpreter.
//! Transcendentals are inline scalar IR (`math.rs`, the algorithms of `clif/math.rs` with
//! the same ulp bounds), which the vectoriser widens like any other code.

mod gen;
#[cfg(feature = "cuda")]
pub mod ptx;
mod math;

#[cfg(test)]
mod tests;

use super::{Code, Codegen, CodegenError, CpuCode, CpuKernel};
use crate::backend::Backend;
use crate::loops::{Kernel, Program};
use inkwell::context::Context;
use inkwell::execution_engine::ExecutionEngine;
use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple,
};
use inkwell::OptimizationLevel;
use std::sync::{Arc, OnceLock};
use tessera_runtime::abi::KernelFn;

pub use math::MathFn;

/// Choices of the code generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlvmOptions {
    /// Allow `a*b + c` (and accumulated products) to become one fused multiply-add.
    pub fma: bool,
    /// Inline the polynomial transcendentals (a few ulps, see `math.rs`) instead of
    /// calling Rust's std functions once per element (exact std results, far slower and
    /// never vectorised).
    pub inline_math: bool,
    /// Run kernels `parallel for i { for j { .. } }` whose (i, j) iterations are
    /// independent over the flattened pairs, as GPU code always does (`gen::collapsible`);
    /// on the CPU this only serves to test that code, since it defeats vectorisation.
    pub collapse: bool,
}

impl Default for LlvmOptions {
    fn default() -> Self {
        LlvmOptions {
            fma: true,
            inline_math: true,
            collapse: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LlvmError {
    /// LLVM cannot generate code for this machine.
    #[error("LLVM does not support this host: {0}")]
    Host(String),
    /// The program fails the loop-IR verifier, so its code could touch memory outside
    /// its buffers. Always a bug in an earlier stage.
    #[error("the program is not valid loop IR: {0}")]
    Invalid(String),
    /// LLVM rejected the module or could not compile it.
    #[error("LLVM failed: {0}")]
    Llvm(String),
    /// An invariant of this backend failed. Always a bug.
    #[error("internal error (this is a bug in Tessera): LLVM backend: {0}")]
    Internal(String),
}

impl From<inkwell::builder::BuilderError> for LlvmError {
    fn from(e: inkwell::builder::BuilderError) -> Self {
        LlvmError::Internal(format!("IR builder: {e}"))
    }
}

type R<T> = Result<T, LlvmError>;

/// What the JIT keeps alive: the engine owns the module and the machine code. Both
/// borrow the context, which [`Owned`] keeps next to them.
struct Engine<'ctx> {
    _ee: ExecutionEngine<'ctx>,
    _module: Module<'ctx>,
}

self_cell::self_cell!(
    /// A context and the engine that borrows it; the engine drops first.
    struct Owned {
        owner: Context,
        #[not_covariant]
        dependent: Engine,
    }
);

/// The native code of one program's loop kernels. Dropping it frees the code, so the
/// function pointers it hands out are valid only while it lives.
pub struct LlvmCode {
    _owned: Owned,
    kernels: Vec<Option<(KernelFn, Option<usize>)>>,
}

// SAFETY: after `compile` returns, the context, module and engine are never used again
// except by `drop`, which has exclusive access. The `Rc`s inside inkwell's engine and
// module point only at each other and all live inside this value, so moving it to another
// thread moves every clone together. The machine code is immutable and its functions
// touch only the memory their callers pass.
unsafe impl Send for LlvmCode {}
// SAFETY: see `Send`; `&LlvmCode` only exposes the copied function pointers.
unsafe impl Sync for LlvmCode {}

impl LlvmCode {
    /// Number of kernels of the program (GEMMs included, as `None`).
    pub fn len(&self) -> usize {
        self.kernels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kernels.is_empty()
    }

    /// Number of loop kernels compiled.
    pub fn kernel_count(&self) -> usize {
        self.kernels.iter().flatten().count()
    }

    /// The function of kernel `k` (None for a GEMM kernel or an index out of range).
    ///
    /// The pointer is valid while this `LlvmCode` lives. Calling it requires an `args`
    /// array with one pointer per buffer of the program, each valid for the buffer's
    /// length in elements of the program's dtype (element alignment suffices; a tile
    /// buffer's pointer may be offset so that the rows of the tile land in its memory),
    /// and concurrent calls must run disjoint ranges of the parallel loop.
    pub fn kernel(&self, k: usize) -> Option<KernelFn> {
        self.kernels.get(k).copied().flatten().map(|x| x.0)
    }

    /// The extent of the loop `begin..end` indexes for kernel `k`, if it has one.
    pub fn parallel_extent(&self, k: usize) -> Option<usize> {
        self.kernels.get(k).copied().flatten().and_then(|x| x.1)
    }
}

impl std::fmt::Debug for LlvmCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LlvmCode({} loop kernels)", self.kernel_count())
    }
}

/// The host's target machine settings, detected once.
struct Host {
    triple: String,
    cpu: String,
    features: String,
}

fn host() -> R<&'static Host> {
    static HOST: OnceLock<Result<Host, String>> = OnceLock::new();
    HOST.get_or_init(|| {
        Target::initialize_native(&InitializationConfig::default())?;
        Ok(Host {
            triple: TargetMachine::get_default_triple()
                .as_str()
                .to_string_lossy()
                .into_owned(),
            cpu: TargetMachine::get_host_cpu_name().to_string(),
            features: TargetMachine::get_host_cpu_features().to_string(),
        })
    })
    .as_ref()
    .map_err(|e| LlvmError::Host(e.clone()))
}

impl Host {
    fn machine(&self) -> R<TargetMachine> {
        let triple = TargetTriple::create(&self.triple);
        let target = Target::from_triple(&triple).map_err(|e| LlvmError::Host(e.to_string()))?;
        target
            .create_target_machine(
                &triple,
                &self.cpu,
                &self.features,
                OptimizationLevel::Aggressive,
                RelocMode::Default,
                CodeModel::JITDefault,
            )
            .ok_or_else(|| LlvmError::Host(format!("no target machine for {}", self.triple)))
    }

    fn has_avx512(&self) -> bool {
        self.features.split(',').any(|f| f == "+avx512f")
    }
}

/// Runs the O3 pipeline on a module generated for `host`.
fn optimise(module: &Module, machine: &TargetMachine) -> R<()> {
    let pb = PassBuilderOptions::create();
    module
        .run_passes("default<O3>", machine, pb)
        .map_err(|e| LlvmError::Llvm(e.to_string()))
}

/// Compiles every loop kernel of the program at O3 for the host CPU.
pub fn compile(p: &Program, opts: &LlvmOptions) -> Result<LlvmCode, LlvmError> {
    crate::loops::verify(p).map_err(LlvmError::Invalid)?;
    let host = host()?;
    let machine = host.machine()?;
    let kinds: Vec<Option<Option<usize>>> = p
        .kernels
        .iter()
        .map(|k| match k {
            Kernel::Gemm(_) => None,
            Kernel::Loops(l) => Some(gen::launch_extent(p, l, opts.collapse)),
        })
        .collect();
    let mut kernels = vec![None; p.kernels.len()];
    let owned = Owned::try_new(Context::create(), |cx| -> R<Engine<'_>> {
        let g = optimised_build(cx, p, opts, host, &machine)?;
        let ee = g
            .module
            .create_jit_execution_engine(OptimizationLevel::Aggressive)
            .map_err(|e| LlvmError::Llvm(e.to_string()))?;
        for (f, addr) in g.helpers() {
            ee.add_global_mapping(&f, addr);
        }
        for (k, kind) in kinds.iter().enumerate() {
            if let Some(par) = kind {
                let addr = ee
                    .get_function_address(&gen::kernel_name(k))
                    .map_err(|e| LlvmError::Llvm(format!("kernel {k}: {e}")))?;
                if addr == 0 {
                    return Err(LlvmError::Llvm(format!("kernel {k} has no code")));
                }
                // SAFETY: the function was defined with the `KernelFn` signature (ptr, i64,
                // i64; void) in the C calling convention, and `usize` is i64 on the
                // 64-bit hosts LLVM's JIT runs on (checked in `gen::build`).
                let f = unsafe { std::mem::transmute::<usize, KernelFn>(addr) };
                kernels[k] = Some((f, *par));
            }
        }
        Ok(Engine {
            _ee: ee,
            _module: g.module,
        })
    })?;
    Ok(LlvmCode {
        _owned: owned,
        kernels,
    })
}

/// The LLVM IR of the program's loop kernels: as generated (`optimised = false`, free of
/// host details, so it is the same on every machine), or after the O3 pipeline for the
/// host CPU (`optimised = true`).
pub fn emit_ir(p: &Program, optimised: bool) -> Result<String, LlvmError> {
    emit_ir_with(p, optimised, &LlvmOptions::default())
}

/// [`emit_ir`] with explicit options.
pub fn emit_ir_with(p: &Program, optimised: bool, opts: &LlvmOptions) -> Result<String, LlvmError> {
    crate::loops::verify(p).map_err(LlvmError::Invalid)?;
    let cx = Context::create();
    let g = if optimised {
        let host = host()?;
        optimised_build(&cx, p, opts, host, &host.machine()?)?
    } else {
        let g = gen::build(&cx, p, opts, None, false)?;
        verify_module(&g.module)?;
        g
    };
    Ok(g.module.print_to_string().to_string())
}

/// The generated IR must verify; a failure is a bug in `gen.rs`.
fn verify_module(m: &Module) -> R<()> {
    m.verify().map_err(|e| LlvmError::Internal(format!("invalid LLVM IR: {e}")))
}

/// The kernels built for the host, verified and optimised at O3.
fn optimised_build<'ctx>(
    cx: &'ctx Context,
    p: &Program,
    opts: &LlvmOptions,
    host: &Host,
    machine: &TargetMachine,
) -> R<gen::Built<'ctx>> {
    let g = gen::build(cx, p, opts, Some(host), false)?;
    g.module.set_triple(&machine.get_triple());
    g.module.set_data_layout(&machine.get_target_data().get_data_layout());
    verify_module(&g.module)?;
    optimise(&g.module, machine)?;
    Ok(g)
}

/// The LLVM backend with its options, behind the [`Codegen`] seam.
#[derive(Clone, Debug, Default)]
pub struct Llvm {
    pub opts: LlvmOptions,
}

impl From<LlvmError> for CodegenError {
    fn from(e: LlvmError) -> CodegenError {
        let backend = "LLVM";
        match e {
            LlvmError::Host(message) => CodegenError::Host { backend, message },
            LlvmError::Invalid(m) => CodegenError::Invalid(m),
            LlvmError::Llvm(message) => CodegenError::Failed { backend, message },
            LlvmError::Internal(message) => CodegenError::Internal { backend, message },
        }
    }
}

impl Codegen for Llvm {
    fn backend(&self) -> Backend {
        Backend::Llvm
    }

    fn compile(&self, p: &Program) -> Result<Code, CodegenError> {
        let code = Arc::new(compile(p, &self.opts)?);
        let owner: Arc<dyn Send + Sync> = code.clone();
        let kernels = (0..code.len())
            .map(|k| {
                code.kernel(k).map(|f| {
                    // SAFETY: `f` was compiled from kernel `k` of a verified program with
                    // the `KernelFn` ABI, and its code lives as long as `owner`.
                    unsafe { CpuKernel::new(f, code.parallel_extent(k), owner.clone()) }
                })
            })
            .collect();
        Ok(Code::Cpu(CpuCode { kernels }))
    }

    /// The optimised IR for this CPU: what runs.
    fn emit(&self, p: &Program) -> Result<String, CodegenError> {
        Ok(emit_ir_with(p, true, &self.opts)?)
    }
}
