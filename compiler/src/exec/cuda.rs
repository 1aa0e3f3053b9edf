//! The CUDA executor (feature `cuda`): a program's PTX loaded on the GPU, its buffers on
//! the device (kept between calls), loop kernels launched one thread per iteration of
//! their parallel loop, GEMMs through cuBLAS ([`super::blas`]), all in order on one
//! stream. Host ndarrays go in and come out; each call copies its inputs to the device
//! and its outputs back.

use super::blas::{blas_calls, BlasCall};
use super::ExecError;
use crate::codegen::llvm::ptx::PtxCode;
use crate::eval::Scalar;
use crate::loops::{BufId, BufKind, Kernel, Program};
use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};
use std::any::TypeId;
use std::sync::{Arc, Mutex, OnceLock};
use tessera_runtime::cuda::{DeviceBuf, Gpu, GpuElement, GpuModule};
use tessera_runtime::{DType, RuntimeError};

/// The process's GPU (device 0), opened on first use.
pub(crate) fn gpu() -> Result<Arc<Gpu>, ExecError> {
    static GPU: OnceLock<Result<Arc<Gpu>, RuntimeError>> = OnceLock::new();
    GPU.get_or_init(|| Gpu::open(0).map(Arc::new)).clone().map_err(device)
}

fn device(e: RuntimeError) -> ExecError {
    match e {
        RuntimeError::NoDevice(_) => ExecError::Unavailable(e.to_string()),
        RuntimeError::OutOfMemory { .. } => ExecError::Memory(e.to_string()),
        _ => ExecError::Internal(e.to_string()),
    }
}

/// What kernel `k` does on the device.
enum Step {
    /// Function `func` of the module, over `extent` threads, with these buffers.
    Launch { func: usize, params: Vec<BufId>, extent: usize },
    /// cuBLAS calls on buffers a, b, c.
    Blas { a: BufId, b: BufId, c: BufId, calls: Vec<BlasCall> },
}

/// Device memory of one program in one dtype: a buffer per input, output, slot and
/// constant.
struct Memory<T: GpuElement> {
    bufs: Vec<Option<usize>>,
    owned: Vec<DeviceBuf<T>>,
}

pub(super) struct CudaExecutor {
    gpu: Arc<Gpu>,
    module: GpuModule,
    steps: Vec<Step>,
    /// Device buffers of the last call, reused by the next; a call holds the lock, so
    /// calls on one executable run one at a time.
    /// `Memory<f32>` or `Memory<f64>`, by the program's dtype.
    memory: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl CudaExecutor {
    pub(super) fn new(p: &Program, code: PtxCode) -> Result<CudaExecutor, ExecError> {
        if code.kernels.len() != p.kernels.len() {
            return Err(ExecError::Internal(format!("PTX for {} kernels, a program of {}", code.kernels.len(), p.kernels.len())));
        }
        let gpu = gpu()?;
        let mut names = Vec::new();
        let mut steps = Vec::new();
        for (k, (kern, ptx)) in p.kernels.iter().zip(&code.kernels).enumerate() {
            steps.push(match (kern, ptx) {
                (Kernel::Loops(_), Some(x)) => {
                    names.push(x.name.clone());
                    Step::Launch { func: names.len() - 1, params: x.params.clone(), extent: x.parallel.unwrap_or(1) }
                }
                (Kernel::Gemm(g), None) => {
                    let calls = blas_calls(g).ok_or_else(|| {
                        ExecError::Internal(format!("kernel {k}: a GEMM without a cuBLAS form reached the CUDA executor"))
                    })?;
                    Step::Blas { a: g.a, b: g.b, c: g.c, calls }
                }
                _ => return Err(ExecError::Internal(format!("kernel {k} has no device code"))),
            });
        }
        let module = {
            let _held = gpu.lock().map_err(device)?;
            gpu.load(&code.text, &names).map_err(device)?
        };
        Ok(CudaExecutor { gpu, module, steps, memory: Mutex::new(None) })
    }

    pub(super) fn run<T: Scalar>(&self, p: &Program, inputs: &[ArrayViewD<'_, T>]) -> Result<Vec<ArrayD<T>>, ExecError> {
        let flat: Vec<CowArray<'_, T, IxDyn>> = inputs.iter().map(super::standard).collect();
        let slices: Vec<&[T]> = flat
            .iter()
            .map(|a| a.as_slice().ok_or_else(|| ExecError::Internal("a standard-layout input is not contiguous".into())))
            .collect::<Result<_, _>>()?;
        let mut guard = self.memory.lock().map_err(|_| ExecError::Internal("a CUDA call panicked".into()))?;
        let _gpu = self.gpu.lock().map_err(device)?;
        match p.dtype {
            DType::F32 => {
                let outs = self.run_typed::<f32>(p, &cast(&slices)?, &mut guard)?;
                outs.into_iter().map(uncast).collect()
            }
            DType::F64 => {
                let outs = self.run_typed::<f64>(p, &cast(&slices)?, &mut guard)?;
                outs.into_iter().map(uncast).collect()
            }
        }
    }

    fn run_typed<U: GpuElement + Scalar>(
        &self,
        p: &Program,
        inputs: &[&[U]],
        memory: &mut Option<Box<dyn std::any::Any + Send>>,
    ) -> Result<Vec<ArrayD<U>>, ExecError> {
        let gpu = &self.gpu;
        if !memory.as_ref().is_some_and(|m| m.is::<Memory<U>>()) {
            *memory = Some(Box::new(allocate::<U>(gpu, p)?));
        }
        let mem = memory
            .as_mut()
            .and_then(|m| m.downcast_mut::<Memory<U>>())
            .ok_or_else(|| ExecError::Internal("device memory vanished".into()))?;
        for (x, &b) in inputs.iter().zip(&p.inputs) {
            let i = mem.bufs[b.index()].ok_or_else(|| ExecError::Internal("an input has no device memory".into()))?;
            gpu.upload(x, &mut mem.owned[i]).map_err(device)?;
        }
        let mem = &*mem;
        let buf = |b: BufId| -> Result<&DeviceBuf<U>, ExecError> {
            mem.bufs
                .get(b.index())
                .copied()
                .flatten()
                .map(|i| &mem.owned[i])
                .ok_or_else(|| ExecError::Internal(format!("buffer {b} has no device memory")))
        };
        for step in &self.steps {
            match step {
                Step::Launch { func, params, extent } => {
                    let addrs = params.iter().map(|&b| Ok(gpu.address(buf(b)?, 0))).collect::<Result<Vec<u64>, ExecError>>()?;
                    let f = self
                        .module
                        .function(*func)
                        .ok_or_else(|| ExecError::Internal(format!("kernel function {func} is not loaded")))?;
                    // SAFETY: the parameters are the kernel's buffers in its order
                    // (`PtxKernel::params`), each allocated at the buffer's full length,
                    // and the verifier proved every address of the kernel in bounds.
                    unsafe { gpu.launch(f, &addrs, *extent) }.map_err(device)?;
                }
                Step::Blas { a, b, c, calls } => {
                    let (a, b, c) = (buf(*a)?, buf(*b)?, buf(*c)?);
                    for call in calls {
                        let (x, y) = if call.swap { (b, a) } else { (a, b) };
                        let (x, y, z) = (gpu.address(x, call.a_offset), gpu.address(y, call.b_offset), gpu.address(c, call.c_offset));
                        // SAFETY: `blas_calls` describes exactly the elements the loop IR's
                        // GEMM touches, which the verifier proved inside its buffers.
                        unsafe { gpu.gemm::<U>(&call.gemm, x, y, z) }.map_err(device)?;
                    }
                }
            }
        }
        let mut outs = Vec::new();
        for &b in &p.outputs {
            let shape = &p.buf(b).shape;
            let mut v = vec![U::ZERO; p.buf(b).len()];
            gpu.download(buf(b)?, &mut v).map_err(device)?;
            outs.push(ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| ExecError::Internal(e.to_string()))?);
        }
        gpu.sync().map_err(device)?;
        Ok(outs)
    }
}

/// Device buffers for every buffer of `p` that lives in device memory.
fn allocate<U: GpuElement>(gpu: &Gpu, p: &Program) -> Result<Memory<U>, ExecError> {
    let mut bufs = vec![None; p.bufs.len()];
    let mut owned = Vec::new();
    let mut slots: Vec<Option<usize>> = vec![None; p.slots.len()];
    for (k, b) in p.bufs.iter().enumerate() {
        bufs[k] = match &b.kind {
            BufKind::Input(_) | BufKind::Output(_) => {
                owned.push(gpu.alloc::<U>(b.len()).map_err(device)?);
                Some(owned.len() - 1)
            }
            BufKind::Const(v) => {
                let mut d = gpu.alloc::<U>(v.len()).map_err(device)?;
                let host: Vec<U> = v.iter().map(|&x| <U as tessera_runtime::Element>::from_f64(x)).collect();
                gpu.upload(&host, &mut d).map_err(device)?;
                owned.push(d);
                Some(owned.len() - 1)
            }
            BufKind::Temp { slot } => {
                let s = *slot;
                if slots.get(s).copied().flatten().is_none() {
                    let len = *p.slots.get(s).ok_or_else(|| ExecError::Internal(format!("slot {s} is not planned")))?;
                    owned.push(gpu.alloc::<U>(len).map_err(device)?);
                    slots[s] = Some(owned.len() - 1);
                }
                slots[s]
            }
            BufKind::Scratch => None,
            BufKind::Tile { .. } => return Err(ExecError::Internal("a tile buffer reached the CUDA executor".into())),
            BufKind::Index(_) => {
                return Err(ExecError::Unavailable(
                    "the CUDA executor does not run gathers (index inputs) yet; use a CPU backend".into(),
                ))
            }
        };
    }
    Ok(Memory { bufs, owned })
}

/// `&[T]` as `&[U]` when they are the same type (the dtype checked at run time).
fn cast<'a, T: 'static, U: 'static>(xs: &[&'a [T]]) -> Result<Vec<&'a [U]>, ExecError> {
    if TypeId::of::<T>() != TypeId::of::<U>() {
        return Err(ExecError::Internal("the element type does not match the program's dtype".into()));
    }
    // SAFETY: T and U are the same type.
    Ok(xs.iter().map(|x| unsafe { std::slice::from_raw_parts(x.as_ptr() as *const U, x.len()) }).collect())
}

/// An output array back in the caller's element type (the same type).
fn uncast<T: 'static, U: 'static>(a: ArrayD<U>) -> Result<ArrayD<T>, ExecError> {
    let any: Box<dyn std::any::Any> = Box::new(a);
    any.downcast::<ArrayD<T>>()
        .map(|b| *b)
        .map_err(|_| ExecError::Internal("the element type does not match the program's dtype".into()))
}
