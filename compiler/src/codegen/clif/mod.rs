//! The Cranelift backend for loop kernels.
//!
//! Every loop kernel of a [`Program`] becomes one native function with the runtime's
//! [`KernelFn`] ABI: `args[i]` is the base pointer of buffer `BufId(i)` (every buffer of the
//! program has a slot, in `p.bufs` order), and `begin..end` selects iterations of the
//! kernel's parallel loop (ignored when it has none). GEMM kernels are the runtime's job.
//!
//! Innermost loops whose stores are contiguous in the loop counter run in vectors
//! (f32x4 / f64x2, unrolled twice, then a scalar tail); the rest is scalar code. The
//! conditions are in `vectorize.rs`. Buffers must not overlap: loads of buffers a kernel
//! does not write are treated as constant.
//!
//! Results follow the loop interpreter up to reassociation of vectorised accumulators
//! and FMA contraction. `max`/`min` (operators and accumulators) propagate NaN, as
//! numpy's `maximum` and every reference of Tessera do.

mod gen;
pub(crate) mod libm;
pub mod math;
mod vectorize;

#[cfg(test)]
mod tests;

use super::{Code, Codegen, CodegenError, CpuCode, CpuKernel};
use crate::backend::Backend;
use crate::loops::{Kernel, LoopKernel, Program};
use cranelift_codegen::ir::{self, AbiParam};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::{settings, settings::Configurable, Context};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};
use std::sync::Arc;
use tessera_runtime::abi::KernelFn;

/// Choices of the code generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitOptions {
    /// Vectorise innermost loops where that is valid.
    pub vectorize: bool,
    /// Fuse `a*b + c` into one rounding; ignored when the host has no FMA unit.
    pub fma: bool,
    /// Inline the vectorised polynomial transcendentals of `math.rs` (a few ulps, see
    /// its table; sin/cos are NaN past 2^20 in f32 and 2^40 in f64) instead of calling
    /// Rust's std functions once per lane (exact std results, several times slower).
    pub inline_math: bool,
}

impl Default for JitOptions {
    fn default() -> Self {
        JitOptions {
            vectorize: true,
            fma: host_has_fma(),
            inline_math: true,
        }
    }
}

/// Whether the host can run Cranelift's `fma` without a library call.
fn host_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("fma")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// A Cranelift error as a [`CodegenError`].
fn failed(message: impl std::fmt::Display) -> CodegenError {
    CodegenError::Failed { backend: "Cranelift", message: message.to_string() }
}

/// An invariant of this backend failed.
pub(crate) fn internal(message: impl Into<String>) -> CodegenError {
    CodegenError::Internal { backend: "Cranelift", message: message.into() }
}

fn host(message: impl std::fmt::Display) -> CodegenError {
    CodegenError::Host { backend: "Cranelift", message: message.to_string() }
}

/// The executable memory of one compilation. It is freed when the last [`CpuKernel`]
/// that shares it is dropped.
struct ClifCode(Option<JITModule>);

impl Drop for ClifCode {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            // SAFETY: every function pointer into this memory is handed out only through a
            // `CpuKernel`, which holds this `ClifCode` alive; none is left once we drop.
            unsafe { m.free_memory() };
        }
    }
}

// SAFETY: after `finalize_definitions` the module is never used again except to free it in
// `drop`, which has exclusive access. The code it owns is immutable and its functions
// only touch the memory their callers pass, so sharing or moving it between threads
// cannot race (the `RefCell` and raw pointers inside `JITModule` are not reachable).
unsafe impl Send for ClifCode {}
// SAFETY: see `Send`; `&ClifCode` exposes nothing.
unsafe impl Sync for ClifCode {}

/// The Cranelift backend with its options.
#[derive(Clone, Debug, Default)]
pub struct Cranelift {
    pub opts: JitOptions,
}

impl Codegen for Cranelift {
    fn backend(&self) -> Backend {
        Backend::Cranelift
    }

    fn compile(&self, p: &Program) -> Result<Code, CodegenError> {
        compile(p, &self.opts).map(Code::Cpu)
    }

    fn emit(&self, p: &Program) -> Result<String, CodegenError> {
        emit_clif(p, &self.opts)
    }
}

/// Compiles every loop kernel of the program (in program order, None for Gemm kernels).
pub fn compile(p: &Program, opts: &JitOptions) -> Result<CpuCode, CodegenError> {
    crate::loops::verify(p).map_err(CodegenError::Invalid)?;
    let mut jit = Jit::new(opts)?;
    let mut ids = Vec::with_capacity(p.kernels.len());
    for (k, kern) in p.kernels.iter().enumerate() {
        ids.push(match kern {
            Kernel::Gemm(_) => None,
            Kernel::Loops(l) => Some((jit.define(p, k, l)?, l.parallel_loop().map(|x| x.1))),
        });
    }
    jit.module.finalize_definitions().map_err(failed)?;
    let ptrs: Vec<Option<(*const u8, Option<usize>)>> =
        ids.into_iter().map(|x| x.map(|(id, par)| (jit.module.get_finalized_function(id), par))).collect();
    let code: Arc<dyn Send + Sync> = Arc::new(ClifCode(Some(jit.module)));
    let kernels = ptrs
        .into_iter()
        .map(|x| {
            x.map(|(ptr, parallel)| {
                // SAFETY: the function was built with the `KernelFn` signature (pointer,
                // usize, usize; no results) in the host's default calling convention,
                // which is `extern "C"`, from a verified kernel; its code lives in
                // `code`, which the kernel keeps alive.
                unsafe {
                    let f = std::mem::transmute::<*const u8, KernelFn>(ptr);
                    CpuKernel::new(f, parallel, code.clone())
                }
            })
        })
        .collect();
    Ok(CpuCode { kernels })
}

/// The Cranelift IR text of every loop kernel, before Cranelift's optimisations (so the
/// address arithmetic appears where it was generated, not where LICM moves it).
pub fn emit_clif(p: &Program, opts: &JitOptions) -> Result<String, CodegenError> {
    crate::loops::verify(p).map_err(CodegenError::Invalid)?;
    let mut jit = Jit::new(opts)?;
    let mut out = String::new();
    for (k, kern) in p.kernels.iter().enumerate() {
        if let Kernel::Loops(l) = kern {
            jit.build(p, l)?;
            jit.ctx.func.name = ir::UserFuncName::user(0, k as u32);
            out.push_str(&format!(
                "; kernel {k} {}\n{}\n",
                l.name,
                jit.ctx.func.display()
            ));
            jit.module.clear_context(&mut jit.ctx);
        }
    }
    Ok(out)
}

/// A module being filled with kernels, and the contexts reused between them.
struct Jit {
    module: JITModule,
    ctx: Context,
    fctx: FunctionBuilderContext,
    helpers: libm::Helpers,
    opts: gen::Target,
}

impl Jit {
    fn new(opts: &JitOptions) -> Result<Jit, CodegenError> {
        let isa = host_isa()?;
        let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        for (name, ptr) in libm::symbols() {
            builder.symbol(name, ptr);
        }
        let mut module = JITModule::new(builder);
        let helpers = libm::Helpers::declare(&mut module)?;
        let ctx = module.make_context();
        let opts = gen::Target {
            vectorize: opts.vectorize,
            fma: opts.fma && host_has_fma(),
            inline_math: opts.inline_math,
        };
        Ok(Jit {
            module,
            ctx,
            fctx: FunctionBuilderContext::new(),
            helpers,
            opts,
        })
    }

    /// Builds kernel `l` into `self.ctx.func` (verified in debug builds).
    fn build(&mut self, p: &Program, l: &LoopKernel) -> Result<(), CodegenError> {
        let ptr = self.module.target_config().pointer_type();
        let sig = &mut self.ctx.func.signature;
        sig.params
            .extend([AbiParam::new(ptr), AbiParam::new(ptr), AbiParam::new(ptr)]);
        let cfg = self.module.target_config();
        gen::generate(
            &mut self.ctx.func,
            &mut self.fctx,
            &mut self.module,
            &self.helpers,
            p,
            l,
            &self.opts,
            cfg,
        )?;
        #[cfg(debug_assertions)]
        cranelift_codegen::verify_function(&self.ctx.func, self.module.isa()).map_err(|e| {
            internal(format!(
                "invalid Cranelift IR for kernel {}: {e}\n{}",
                l.name,
                self.ctx.func.display()
            ))
        })?;
        Ok(())
    }

    /// Builds and compiles kernel number `k` into the module.
    fn define(&mut self, p: &Program, k: usize, l: &LoopKernel) -> Result<FuncId, CodegenError> {
        self.build(p, l)?;
        let sig = self.ctx.func.signature.clone();
        let id = self
            .module
            .declare_function(&format!("tessera_kernel{k}"), Linkage::Local, &sig)
            .map_err(failed)?;
        self.ctx.func.name = ir::UserFuncName::user(0, id.as_u32());
        self.module
            .define_function(id, &mut self.ctx)
            .map_err(|e| failed(format!("kernel {}: {e:?}", l.name)))?;
        self.module.clear_context(&mut self.ctx);
        Ok(id)
    }
}

/// The host ISA with `opt_level = speed` and every CPU feature the host has (SSE4.1,
/// AVX, AVX2, FMA, ... as `cranelift_native` detects them).
fn host_isa() -> Result<OwnedTargetIsa, CodegenError> {
    let set = |b: &mut settings::Builder, k: &str, v: &str| {
        b.set(k, v)
            .map_err(|e| internal(format!("setting {k}={v}: {e}")))
    };
    let mut flags = settings::builder();
    set(&mut flags, "opt_level", "speed")?;
    // The JIT places code anywhere in memory, so calls need absolute addresses.
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(&mut flags, "is_pic", "false")?;
    // `Jit::build` runs the verifier itself in debug builds; release builds skip it.
    set(&mut flags, "enable_verifier", "false")?;
    let isa = cranelift_native::builder().map_err(host)?;
    isa.finish(settings::Flags::new(flags))
        .map_err(host)
}
