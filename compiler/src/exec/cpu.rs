//! The CPU executor: slots, tile groups and the thread pool around native loop kernels.
//!
//! Threads and memory belong to the runtime; this module only hands it pointers. The
//! kernels index buffers by the program's `BufId`s, so one argument array (a base
//! pointer per buffer) serves every kernel of a call. Any CPU code generator's
//! [`CpuKernel`]s run here (Cranelift's, LLVM's); GEMM kernels go to the runtime.

use super::ExecError;
use crate::codegen::CpuKernel;
use crate::eval::Scalar;
use crate::loops::{self, stream, BufKind, Kernel, Program, Stmt, Stream, TileGroup, TileRole};
use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};
use tessera_runtime::gemm::gemm;
use tessera_runtime::{AlignedBuf, DType, GemmDesc, GemmLoop};

/// Native kernels of one program with the memory they reuse between calls.
pub(super) struct CpuExecutor {
    kernels: Vec<Option<CpuKernel>>,
    /// Outer iterations per task of each parallel kernel.
    grains: Vec<usize>,
    /// Constant buffers in the program's dtype, by buffer.
    consts: Vec<Option<AlignedBuf>>,
    /// Memory slots of an earlier call, reused by the next one so that repeated calls
    /// neither allocate nor fault in fresh pages; concurrent calls allocate their own.
    spare: std::sync::Mutex<Vec<Vec<AlignedBuf>>>,
    /// Tile buffers of earlier calls, per tile group, one set per running chunk.
    spare_tiles: Vec<std::sync::Mutex<Vec<Vec<AlignedBuf>>>>,
}

/// Work below this many innermost statements is not worth another thread.
const TASK_WORK: usize = 16 * 1024;

fn work(body: &[Stmt]) -> usize {
    body.iter()
        .map(|s| match s {
            Stmt::For { extent, body, .. } => extent.saturating_mul(work(body).max(1)),
            _ => 1,
        })
        .fold(0usize, |a, b| a.saturating_add(b))
}

impl CpuExecutor {
    pub(super) fn new(program: &Program, kernels: Vec<Option<CpuKernel>>) -> Result<CpuExecutor, ExecError> {
        if kernels.len() != program.kernels.len() {
            return Err(ExecError::Internal(format!(
                "{} compiled kernels for a program of {}",
                kernels.len(),
                program.kernels.len()
            )));
        }
        let grains = program
            .kernels
            .iter()
            .map(|k| match k {
                Kernel::Loops(l) => match l.body.as_slice() {
                    [Stmt::For { body, .. }] => TASK_WORK.div_ceil(work(body).max(1)).max(1),
                    _ => 1,
                },
                Kernel::Gemm(_) => 1,
            })
            .collect();
        let mut consts = Vec::new();
        for b in &program.bufs {
            consts.push(match &b.kind {
                BufKind::Const(v) => Some(const_buf(v, program.dtype)?),
                _ => None,
            });
        }
        let spare_tiles = program.tiles.iter().map(|_| Default::default()).collect();
        Ok(CpuExecutor { kernels, grains, consts, spare: Default::default(), spare_tiles })
    }

    /// Runs the program on inputs already checked against it.
    /// `indices` are the index arguments, already checked against their bounds.
    pub(super) fn run<T: Scalar>(&self, p: &Program, inputs: &[ArrayViewD<'_, T>], indices: &[&[i64]]) -> Result<Vec<ArrayD<T>>, ExecError> {
        let flat: Vec<CowArray<'_, T, IxDyn>> = inputs.iter().map(super::standard).collect();
        // Outputs are not zeroed: every element is written by the kernel that defines
        // it (a statement covers its whole left side, a GEMM all of C), and skipping the
        // fill saves a pass over memory.
        let mut outs: Vec<ndarray::Array<std::mem::MaybeUninit<T>, IxDyn>> =
            p.outputs.iter().map(|&b| ArrayD::uninit(IxDyn(&p.buf(b).shape))).collect();
        for o in &mut outs {
            tessera_runtime::advise_huge_pages(o.as_mut_ptr() as *mut u8, o.len() * std::mem::size_of::<T>());
        }
        let reused = self.spare.lock().ok().and_then(|mut s| s.pop());
        let mut slots = match reused {
            Some(s) => s,
            None => {
                let mut slots = Vec::new();
                for &len in &p.slots {
                    let bytes = len.saturating_mul(p.dtype.size_of());
                    slots.push(AlignedBuf::zeroed(bytes).map_err(|e| ExecError::Memory(format!("intermediates: {e}")))?);
                }
                slots
            }
        };
        let mut args: Vec<*mut u8> = Vec::with_capacity(p.bufs.len());
        for (k, b) in p.bufs.iter().enumerate() {
            args.push(match &b.kind {
                BufKind::Input(i) => flat[*i].as_ptr() as *mut u8,
                BufKind::Index(i) => indices.get(*i).map_or(std::ptr::null_mut(), |x| x.as_ptr() as *mut u8),
                BufKind::Output(i) => outs[*i].as_mut_ptr() as *mut u8,
                BufKind::Temp { slot } => slots[*slot].as_mut_ptr(),
                BufKind::Const(_) => self.consts[k].as_ref().map_or(std::ptr::null_mut(), |c| c.as_ptr() as *mut u8),
                // Kernels keep their scratch rows on their own stacks, and tile groups
                // point tile buffers at each thread's tiles.
                BufKind::Scratch | BufKind::Tile { .. } => std::ptr::null_mut(),
            });
        }
        let threads = tessera_runtime::threads();
        let mut k = 0;
        while k < p.kernels.len() {
            if let Some(n) = p.tiles.iter().position(|g| g.first == k) {
                let g = &p.tiles[n];
                self.run_tiles(p, g, &self.spare_tiles[n], &args)?;
                k = g.last + 1;
                continue;
            }
            // SAFETY: `args` holds a live buffer of the right size for every buffer the
            // kernel uses (tile buffers are only used inside tile groups).
            unsafe { self.run_kernel(p, k, &args, threads, None)? };
            k += 1;
        }
        if let Ok(mut s) = self.spare.lock() {
            if s.len() < 2 {
                s.push(slots);
            }
        }
        // SAFETY: every output element was written by a kernel (see above).
        Ok(outs.into_iter().map(|o| unsafe { o.assume_init() }).collect())
    }

    /// Runs kernel `k`: a GEMM on the runtime (restricted to rows `tile.0..tile.1` of its
    /// sliced dimension inside a tile group), or a loop kernel over its parallel loop
    /// (those rows only, in a tile group; else split over the pool).
    ///
    /// # Safety
    /// Every buffer the kernel touches must be live in `args` at its full extent, or for
    /// tile buffers at the rows of the tile.
    unsafe fn run_kernel(
        &self,
        p: &Program,
        k: usize,
        args: &[*mut u8],
        threads: usize,
        tile: Option<(usize, usize, TileRole)>,
    ) -> Result<(), ExecError> {
        match (&p.kernels[k], &self.kernels[k]) {
            (Kernel::Gemm(g), _) => {
                let (mut desc, outer) = gemm_args(g);
                let (mut a, mut b, mut c) = (args[g.a.index()], args[g.b.index()], args[g.c.index()]);
                let elem = p.dtype.size_of() as isize;
                if let Some((lo, hi, role)) = tile {
                    let at = |ptr: *mut u8, stride: isize| ptr.wrapping_offset(lo as isize * stride * elem);
                    match role {
                        TileRole::M => {
                            desc.m = hi - lo;
                            a = at(a, desc.a_rs);
                            c = at(c, desc.c_rs);
                        }
                        TileRole::N => {
                            desc.n = hi - lo;
                            b = at(b, desc.b_cs);
                            c = at(c, desc.c_cs);
                        }
                    }
                }
                // SAFETY: the verifier proved every address of this GEMM inside its
                // buffers, a tile's rows are a part of them, and the element type is
                // the one `p.dtype` says.
                unsafe {
                    match p.dtype {
                        DType::F32 => gemm::<f32>(&desc, &outer, a as *const f32, b as *const f32, c as *mut f32, threads),
                        DType::F64 => gemm::<f64>(&desc, &outer, a as *const f64, b as *const f64, c as *mut f64, threads),
                    }
                };
            }
            (Kernel::Loops(_), Some(ck)) => {
                let f = ck.func();
                let argp = args.as_ptr();
                match (tile, ck.parallel_extent()) {
                    // SAFETY: the kernel reads and writes only inside its buffers (the
                    // verifier checked every address) and a tile's rows of them.
                    (Some((lo, hi, _)), _) => unsafe { f(argp, lo, hi) },
                    // SAFETY: as above; chunks of a parallel loop write disjoint memory.
                    (None, Some(n)) => unsafe { tessera_runtime::tessera_rt_parallel_for(f, argp, n, self.grains[k]) },
                    // SAFETY: as above, on one thread.
                    (None, None) => unsafe { f(argp, 0, 1) },
                }
            }
            (Kernel::Loops(_), None) => return Err(ExecError::Internal(format!("kernel {k} was not compiled"))),
        }
        Ok(())
    }

    /// Runs a tile group: tiles of rows in parallel, each thread with its own tile
    /// buffers, every kernel of the group on one tile before the next tile starts.
    fn run_tiles(
        &self,
        p: &Program,
        g: &TileGroup,
        spare: &std::sync::Mutex<Vec<Vec<AlignedBuf>>>,
        args: &[*mut u8],
    ) -> Result<(), ExecError> {
        let elem = p.dtype.size_of();
        let rows_of = |b: &loops::BufId| if let BufKind::Tile { row } = p.buf(*b).kind { row } else { 0 };
        let tiles = g.extent.div_ceil(g.tile.max(1));
        let shared = SharedArgs(args.to_vec());
        let failed = std::sync::Mutex::new(None);
        tessera_runtime::parallel_for(tiles, 1, &|t0, t1| {
            // Tiles of an earlier chunk or call are reused: allocating (and faulting in)
            // a megabyte per chunk and call would cost a measurable part of the work.
            let mut local = match spare.lock().ok().and_then(|mut s| s.pop()) {
                Some(set) => set,
                None => {
                    let mut set = Vec::new();
                    for b in &g.local {
                        match AlignedBuf::zeroed(rows_of(b) * g.tile * elem) {
                            Ok(buf) => set.push(buf),
                            Err(e) => {
                                if let Ok(mut f) = failed.lock() {
                                    *f = Some(ExecError::Memory(format!("tiles: {e}")));
                                }
                                return;
                            }
                        }
                    }
                    set
                }
            };
            let base = shared.copy();
            let mut args = shared.copy();
            for t in t0..t1 {
                // Streamed groups take their tiles last, first, second last, second, ...:
                // under a causal mask a tile's cost grows with its rows, so each chunk of
                // consecutive positions holds long and short tiles alike, and the
                // threads finish together.
                let t = match (&g.stream, t % 2) {
                    (None, _) => t,
                    (Some(_), 0) => tiles - 1 - t / 2,
                    (Some(_), _) => t / 2,
                };
                let lo = t * g.tile;
                let hi = (lo + g.tile).min(g.extent);
                // A tile buffer holds rows lo..hi; its base is set so that the kernels'
                // whole-buffer addresses of those rows land in it.
                for (b, buf) in g.local.iter().zip(&mut local) {
                    args[b.index()] = buf.as_mut_ptr().wrapping_sub(lo * rows_of(b) * elem);
                }
                let r = match &g.stream {
                    None => (g.first..=g.last).try_for_each(|k| {
                        // SAFETY: the group's kernels touch only rows lo..hi of tile
                        // buffers (checked when the group was formed) and whole shared
                        // buffers.
                        unsafe { self.run_kernel(p, k, &args, 1, Some(tile_rows(g, k, lo, hi))) }
                    }),
                    Some(s) => self.run_stream(p, g, s, (lo, hi), &base, &mut args, &mut local),
                };
                if let Err(e) = r {
                    if let Ok(mut f) = failed.lock() {
                        *f = Some(e);
                    }
                    return;
                }
            }
            if let Ok(mut s) = spare.lock() {
                s.push(local);
            }
        });
        match failed.into_inner() {
            Ok(Some(e)) => Err(e),
            _ => Ok(()),
        }
    }
}

impl CpuExecutor {
    /// Runs one tile of a streamed group (see `loops::stream`): the init kernels, the key
    /// blocks some row of the tile sees, each with its shifted bases and the score fill,
    /// then the finish kernels. `args` is the thread's argument array with the tile
    /// buffers set, `base` the unshifted one, `local` the thread's tile buffers.
    #[allow(clippy::too_many_arguments)]
    fn run_stream(
        &self,
        p: &Program,
        g: &TileGroup,
        s: &Stream,
        (lo, hi): (usize, usize),
        base: &[*mut u8],
        args: &mut [*mut u8],
        local: &mut [AlignedBuf],
    ) -> Result<(), ExecError> {
        let elem = p.dtype.size_of() as isize;
        let scores = g.local.iter().position(|&b| b == s.scores);
        let plan = stream::tile_plan(s, lo, hi, true);
        let r = stream::drive(g, s, &plan, &mut |op| {
            match op {
                // SAFETY: as for any kernel of a tile group; shifted buffers are read only
                // by the axis's kernels, which the verifier checked in bounds for every
                // block start.
                stream::Op::Run(k) => unsafe { self.run_kernel(p, k, args, 1, Some(tile_rows(g, k, lo, hi)))? },
                stream::Op::Shift { axis, key0 } => {
                    for sh in s.shifts.iter().filter(|sh| sh.axis == axis) {
                        let b = sh.buf.index();
                        args[b] = base[b].wrapping_offset(key0 as isize * sh.stride as isize * elem);
                    }
                }
                stream::Op::Fill { key0, fresh } => {
                    let (Some(n), BufKind::Tile { row }) = (scores, &p.buf(s.scores).kind) else {
                        return Err(ExecError::Internal("the stream's scores are not a tile buffer of its group".into()));
                    };
                    let len = (hi - lo) * row;
                    match p.dtype {
                        DType::F32 => stream::fill(&mut local[n].as_mut_slice::<f32>()[..len], *row, s, lo, hi, key0, fresh),
                        DType::F64 => stream::fill(&mut local[n].as_mut_slice::<f64>()[..len], *row, s, lo, hi, key0, fresh),
                    }
                }
            }
            Ok(())
        });
        for sh in &s.shifts {
            args[sh.buf.index()] = base[sh.buf.index()];
        }
        r
    }
}

/// The part of kernel `k` of group `g` that runs for the tile of rows `lo..hi`: those
/// rows, times the kernel's factor (GEMMs over (row, key) pairs), of its sliced
/// dimension.
fn tile_rows(g: &TileGroup, k: usize, lo: usize, hi: usize) -> (usize, usize, TileRole) {
    let n = k - g.first;
    let role = g.roles.get(n).copied().flatten().unwrap_or(TileRole::M);
    let f = g.factors.get(n).copied().unwrap_or(1);
    (lo * f, hi * f, role)
}

/// The argument array shared by the threads of a tile group, each of which copies it.
struct SharedArgs(Vec<*mut u8>);

// SAFETY: the pointers are only copied by the threads; what each thread writes through
// them is disjoint (rows of different tiles, or its own tile buffers).
unsafe impl Sync for SharedArgs {}

impl SharedArgs {
    /// A copy for one thread; a method, so closures capture the `Sync` wrapper.
    fn copy(&self) -> Vec<*mut u8> {
        self.0.clone()
    }
}

/// The runtime's description of a GEMM kernel.
pub fn gemm_args(g: &loops::Gemm) -> (GemmDesc, Vec<GemmLoop>) {
    let desc = GemmDesc {
        m: g.m,
        n: g.n,
        k: g.k,
        a_rs: g.a_strides[0],
        a_cs: g.a_strides[1],
        b_rs: g.b_strides[0],
        b_cs: g.b_strides[1],
        c_rs: g.c_strides[0],
        c_cs: g.c_strides[1],
        alpha: g.alpha,
        accumulate: g.accumulate,
    };
    let outer = g
        .outer
        .iter()
        .map(|l| GemmLoop { extent: l.extent, stride_a: l.stride_a, stride_b: l.stride_b, stride_c: l.stride_c })
        .collect();
    (desc, outer)
}

fn const_buf(v: &[f64], dtype: tessera_runtime::DType) -> Result<AlignedBuf, ExecError> {
    let oom = |e: tessera_runtime::RuntimeError| ExecError::Memory(format!("constants: {e}"));
    Ok(match dtype {
        tessera_runtime::DType::F32 => {
            let mut b = AlignedBuf::zeroed_elems::<f32>(v.len()).map_err(oom)?;
            b.as_mut_slice::<f32>().iter_mut().zip(v).for_each(|(x, y)| *x = *y as f32);
            b
        }
        tessera_runtime::DType::F64 => {
            let mut b = AlignedBuf::zeroed_elems::<f64>(v.len()).map_err(oom)?;
            b.as_mut_slice::<f64>().copy_from_slice(v);
            b
        }
    })
}
