//! The CUDA device layer (cargo feature `cuda`): one GPU, its stream, device buffers,
//! PTX modules, kernel launches and cuBLAS GEMMs, through `cudarc`.
//!
//! `cudarc` loads libcuda and cuBLAS when first used (its `dynamic-loading` feature), so
//! a build with this feature needs no CUDA installed and runs on machines without a GPU;
//! [`Gpu::open`] then reports [`RuntimeError::NoDevice`] instead of panicking (cudarc's
//! own constructors panic when the library is missing, so its presence is checked first).
//!
//! Everything runs on one stream in issue order, so a launch sees the results of every
//! earlier launch and copy without events. Kernels take raw device addresses (`u64`)
//! rather than typed slices: the executor passes buffers at offsets (a batch of a GEMM)
//! and owns the allocations itself.

use crate::{BlasGemm, Element, RuntimeError};
use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig,
    PushKernelArg, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use std::sync::Arc;

/// Threads per block of a loop-kernel launch: one thread per iteration of the kernel's
/// parallel loop.
pub const BLOCK_THREADS: u32 = 256;

fn device_err(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Device(format!("{what}: {e}"))
}

/// The element types a GPU computes with, and their cuBLAS GEMM.
pub trait GpuElement: Element + DeviceRepr + ValidAsZeroBits {
    /// `cublas<T>gemmStridedBatched` on raw device addresses.
    ///
    /// # Safety
    /// Every matrix the call describes must lie inside live device allocations.
    unsafe fn gemm(handle: blas_sys::cublasHandle_t, g: &BlasGemm, a: u64, b: u64, c: u64) -> Result<(), RuntimeError>;
}

fn op(t: bool) -> blas_sys::cublasOperation_t {
    if t {
        blas_sys::cublasOperation_t::CUBLAS_OP_T
    } else {
        blas_sys::cublasOperation_t::CUBLAS_OP_N
    }
}

macro_rules! gpu_element {
    ($t:ty, $f:ident) => {
        impl GpuElement for $t {
            unsafe fn gemm(
                handle: blas_sys::cublasHandle_t,
                g: &BlasGemm,
                a: u64,
                b: u64,
                c: u64,
            ) -> Result<(), RuntimeError> {
                let (alpha, beta) = (<$t>::from_f64(g.alpha), <$t>::from_f64(g.beta));
                // SAFETY: the caller guarantees the matrices are in live allocations; the
                // scalars live on this stack frame for the (host-pointer-mode) call.
                unsafe {
                    blas::$f(
                        handle,
                        op(g.transa),
                        op(g.transb),
                        g.m,
                        g.n,
                        g.k,
                        &alpha,
                        a as *const $t,
                        g.lda,
                        g.stride_a,
                        b as *const $t,
                        g.ldb,
                        g.stride_b,
                        &beta,
                        c as *mut $t,
                        g.ldc,
                        g.stride_c,
                        g.batch,
                    )
                }
                .map_err(|e| device_err("cuBLAS GEMM", e))
            }
        }
    };
}

gpu_element!(f32, sgemm_strided_batched);
gpu_element!(f64, dgemm_strided_batched);

/// An allocation on the device.
pub struct DeviceBuf<T: GpuElement> {
    slice: CudaSlice<T>,
}

impl<T: GpuElement> DeviceBuf<T> {
    /// Elements.
    pub fn len(&self) -> usize {
        self.slice.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slice.len() == 0
    }
}

/// A loaded PTX module and its kernels by name.
pub struct GpuModule {
    _module: Arc<CudaModule>,
    functions: Vec<CudaFunction>,
}

impl GpuModule {
    /// The kernel loaded as `names[i]` in [`Gpu::load`].
    pub fn function(&self, i: usize) -> Option<&CudaFunction> {
        self.functions.get(i)
    }
}

/// One GPU with a stream and a cuBLAS handle on it.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    name: String,
    /// Held for a whole call: a cuBLAS handle must not be used by two threads at once.
    busy: std::sync::Mutex<()>,
}

/// The GPU held by one thread for a call (see [`Gpu::lock`]).
pub struct GpuGuard<'a>(#[allow(dead_code)] std::sync::MutexGuard<'a, ()>);

// SAFETY: cudarc's context and stream are thread-safe handles; the cuBLAS handle is
// used only while `busy` is held (`Gpu::lock`, which the executor takes for each call).
unsafe impl Send for Gpu {}
// SAFETY: see `Send`.
unsafe impl Sync for Gpu {}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.name)
    }
}

impl Gpu {
    /// Opens device `ordinal`. Without libcuda, or without a device, this is
    /// [`RuntimeError::NoDevice`], never a panic.
    pub fn open(ordinal: usize) -> Result<Gpu, RuntimeError> {
        // SAFETY: only tries to load the library by its usual names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(RuntimeError::NoDevice("libcuda is not installed (no NVIDIA driver)".into()));
        }
        let count = CudaContext::device_count().map_err(|e| RuntimeError::NoDevice(format!("the CUDA driver: {e}")))?;
        if count <= 0 || ordinal >= count as usize {
            return Err(RuntimeError::NoDevice(format!("the driver sees {count} CUDA device(s), not device {ordinal}")));
        }
        // SAFETY: as above; cudarc panics on first use of a library it cannot load.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(RuntimeError::NoDevice(
                "cuBLAS (libcublas.so) is not found; add its folder (e.g. /usr/local/cuda/lib64) to LD_LIBRARY_PATH".into(),
            ));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| RuntimeError::NoDevice(format!("device {ordinal}: {e}")))?;
        let name = ctx.name().unwrap_or_else(|_| format!("CUDA device {ordinal}"));
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(|e| device_err("cuBLAS", e))?;
        Ok(Gpu { ctx, stream, blas, name, busy: std::sync::Mutex::new(()) })
    }

    /// Takes the GPU for one call on this thread: waits for other threads' calls and
    /// makes the device's context current here (cuBLAS and launches use it).
    pub fn lock(&self) -> Result<GpuGuard<'_>, RuntimeError> {
        let guard = self.busy.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.ctx.bind_to_thread().map_err(|e| device_err("binding the CUDA context", e))?;
        Ok(GpuGuard(guard))
    }

    /// The device's name, e.g. `NVIDIA H100 80GB HBM3`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `len` zeroed elements on the device.
    pub fn alloc<T: GpuElement>(&self, len: usize) -> Result<DeviceBuf<T>, RuntimeError> {
        let slice = self
            .stream
            .alloc_zeros::<T>(len.max(1))
            .map_err(|e| device_err(&format!("allocating {len} elements"), e))?;
        Ok(DeviceBuf { slice })
    }

    /// Copies `src` to the start of `dst`.
    pub fn upload<T: GpuElement>(&self, src: &[T], dst: &mut DeviceBuf<T>) -> Result<(), RuntimeError> {
        if src.len() > dst.len() {
            return Err(RuntimeError::Invalid(format!("{} elements into a buffer of {}", src.len(), dst.len())));
        }
        let mut view = dst.slice.slice_mut(0..src.len());
        self.stream.memcpy_htod(src, &mut view).map_err(|e| device_err("copy to the device", e))
    }

    /// Copies the start of `src` into `dst` (waits for every earlier launch).
    pub fn download<T: GpuElement>(&self, src: &DeviceBuf<T>, dst: &mut [T]) -> Result<(), RuntimeError> {
        if dst.len() > src.len() {
            return Err(RuntimeError::Invalid(format!("{} elements from a buffer of {}", dst.len(), src.len())));
        }
        let view = src.slice.slice(0..dst.len());
        self.stream.memcpy_dtoh(&view, dst).map_err(|e| device_err("copy from the device", e))
    }

    /// The device address of element `offset` of `buf`.
    pub fn address<T: GpuElement>(&self, buf: &DeviceBuf<T>, offset: usize) -> u64 {
        let (base, _sync) = buf.slice.device_ptr(&self.stream);
        base + (offset * std::mem::size_of::<T>()) as u64
    }

    /// Loads PTX text and looks up each kernel of `names`.
    pub fn load(&self, ptx: &str, names: &[String]) -> Result<GpuModule, RuntimeError> {
        let module = self
            .ctx
            .load_module(Ptx::from_src(ptx))
            .map_err(|e| device_err("loading the PTX module", e))?;
        let functions = names
            .iter()
            .map(|n| module.load_function(n).map_err(|e| device_err(&format!("kernel {n}"), e)))
            .collect::<Result<_, _>>()?;
        Ok(GpuModule { _module: module, functions })
    }

    /// Launches a loop kernel over iterations `0..extent` of its parallel loop (one
    /// thread each; a kernel without one runs on one thread): parameters are the device
    /// addresses of its buffers, then `begin` and `end`.
    ///
    /// # Safety
    /// `addrs` must be the kernel's buffers, in its parameter order, each live and as
    /// long as the kernel addresses.
    pub unsafe fn launch(&self, f: &CudaFunction, addrs: &[u64], extent: usize) -> Result<(), RuntimeError> {
        if extent == 0 {
            return Ok(());
        }
        let blocks = extent.div_ceil(BLOCK_THREADS as usize);
        let grid = u32::try_from(blocks)
            .map_err(|_| RuntimeError::Invalid(format!("{extent} iterations exceed a grid")))?;
        let cfg = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (BLOCK_THREADS.min(extent as u32), 1, 1),
            shared_mem_bytes: 0,
        };
        let (begin, end) = (0i64, extent as i64);
        let mut args = self.stream.launch_builder(f);
        for a in addrs {
            args.arg(a);
        }
        args.arg(&begin).arg(&end);
        // SAFETY: the caller guarantees the parameters match the kernel.
        unsafe { args.launch(cfg) }.map_err(|e| device_err("kernel launch", e))?;
        Ok(())
    }

    /// One cuBLAS strided-batched GEMM on device addresses.
    ///
    /// # Safety
    /// Every matrix `g` describes must lie inside live device allocations.
    pub unsafe fn gemm<T: GpuElement>(&self, g: &BlasGemm, a: u64, b: u64, c: u64) -> Result<(), RuntimeError> {
        // SAFETY: forwarded to the caller.
        unsafe { T::gemm(*self.blas.handle(), g, a, b, c) }
    }

    /// Waits for everything issued so far; reports an error a kernel raised.
    pub fn sync(&self) -> Result<(), RuntimeError> {
        self.stream.synchronize().map_err(|e| device_err("kernel execution", e))
    }
}
