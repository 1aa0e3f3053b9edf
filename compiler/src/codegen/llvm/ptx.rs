//! PTX for NVIDIA GPUs (feature `cuda`): the kernels of `gen.rs`, built for LLVM's
//! NVPTX target (`nvptx64-nvidia-cuda`, `sm_80` or `sm_90`) and optimised at O3.
//!
//! Each loop kernel becomes one `.entry` with one global pointer per buffer it uses
//! ([`PtxKernel::params`]) and the range `begin, end` of its parallel loop; a thread runs
//! one iteration (`gen.rs`, `gpu_wrapper`), or one (row, column) pair where the kernel is
//! two loops with independent iterations (`gen::collapsible`), so that neighbouring
//! threads touch neighbouring elements. The body is the CPU backend's, inlined, so the
//! semantics (accumulation order within a thread, NaN-propagating max/min, the inline
//! math) are the same, except that sin/cos beyond the inline reduction's range (2^20 for
//! f32, 2^40 for f64) give NaN: there is no std function to fall back to on the device.
//! GEMM kernels are the runtime's (cuBLAS); tile groups are a CPU construct, so programs
//! for the GPU are lowered without them.

use super::{gen, optimise, verify_module, LlvmError, LlvmOptions, R};
use crate::loops::{BufId, Kernel, Program};
use inkwell::context::Context;
use inkwell::targets::{CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple};
use inkwell::OptimizationLevel;

/// The GPU architectures code is generated for.
pub const SM_VERSIONS: [u32; 2] = [80, 90];

/// One loop kernel's entry point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtxKernel {
    /// The `.entry` name.
    pub name: String,
    /// The buffers passed as its pointer parameters, in order (then `begin`, `end`).
    pub params: Vec<BufId>,
    /// Threads it runs on: the extent of its parallel loop, or of the (i, j) pairs of a
    /// collapsed kernel (`gen::collapsible`), or None: one thread.
    pub parallel: Option<usize>,
}

/// A program's PTX module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtxCode {
    /// The PTX text (one module, every loop kernel).
    pub text: String,
    /// The architecture it targets (`sm_80` is 80).
    pub sm: u32,
    /// `kernels[k]` for kernel `k` of the program (None for GEMM kernels).
    pub kernels: Vec<Option<PtxKernel>>,
}

fn machine(sm: u32) -> R<TargetMachine> {
    if !SM_VERSIONS.contains(&sm) {
        return Err(LlvmError::Host(format!("sm_{sm} is not a supported GPU architecture (sm_80, sm_90)")));
    }
    Target::initialize_nvptx(&InitializationConfig::default());
    let triple = TargetTriple::create("nvptx64-nvidia-cuda");
    let target = Target::from_triple(&triple).map_err(|e| LlvmError::Host(format!("NVPTX: {e}")))?;
    target
        .create_target_machine(
            &triple,
            &format!("sm_{sm}"),
            "",
            OptimizationLevel::Aggressive,
            RelocMode::Default,
            CodeModel::Default,
        )
        .ok_or_else(|| LlvmError::Host("LLVM has no NVPTX target machine".into()))
}

/// The PTX of every loop kernel of `p` for `sm_<sm>`.
pub fn emit_ptx(p: &Program, sm: u32) -> Result<PtxCode, LlvmError> {
    crate::loops::verify(p).map_err(LlvmError::Invalid)?;
    if !p.tiles.is_empty() {
        return Err(LlvmError::Internal(
            "a GPU program has tile groups; it must be lowered without them (LowerOptions::for_gpu)".into(),
        ));
    }
    let machine = machine(sm)?;
    let cx = Context::create();
    let opts = LlvmOptions { fma: true, inline_math: true, collapse: true };
    let g = gen::build(&cx, p, &opts, None, true)?;
    g.module.set_triple(&machine.get_triple());
    g.module.set_data_layout(&machine.get_target_data().get_data_layout());
    verify_module(&g.module)?;
    optimise(&g.module, &machine)?;
    let buf = machine
        .write_to_memory_buffer(&g.module, FileType::Assembly)
        .map_err(|e| LlvmError::Llvm(format!("PTX: {e}")))?;
    let text = String::from_utf8_lossy(buf.as_slice()).trim_end_matches('\0').to_string();
    let kernels = p
        .kernels
        .iter()
        .enumerate()
        .map(|(k, kern)| match kern {
            Kernel::Gemm(_) => Ok(None),
            Kernel::Loops(l) => Ok(Some(PtxKernel {
                name: gen::kernel_name(k),
                params: gen::kernel_buffers(p, l)?.1,
                parallel: gen::launch_extent(p, l, true),
            })),
        })
        .collect::<R<_>>()?;
    Ok(PtxCode { text, sm, kernels })
}
