//! Translation of a program's loop kernels into one LLVM module.
//!
//! Per kernel `k` there are two functions: `tessera_kernel{k}(args, begin, end)` with the
//! runtime's ABI, which loads the base pointers of the buffers the kernel uses and calls
//! `tessera_kernel{k}_body(b.., begin, end)`, whose pointer parameters are `noalias`.
//! The body is scalar code that mirrors the interpreter statement by statement: loop
//! counters are i64 phis, IR variables are stack slots (SROA turns them into registers),
//! addresses are `getelementptr inbounds` of `offset + Σ counter·stride` (plain
//! `getelementptr` for tile buffers, whose base pointer the executor offsets out of its
//! allocation).

use super::math::{self, call_float, Math, MathFn};
use super::{Host, LlvmError, LlvmOptions, R};
use crate::loops::{
    Accum, Affine, BinOp, BufId, BufKind, CmpOp, Expr, LoopId, LoopKernel, Pred, Program, Stmt,
    UnOp,
};
use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicTypeEnum, FloatType};
use inkwell::values::{
    BasicMetadataValueEnum, BasicValueEnum, FastMathFlags, FloatValue, FunctionValue, InstructionValue, IntValue,
    PointerValue,
};
use inkwell::{AddressSpace, FloatPredicate, IntPredicate};
use std::collections::HashMap;
use tessera_runtime::DType;

/// LLVM's `ptx_kernel` calling convention: the function is a GPU entry point.
const PTX_KERNEL: u32 = 71;

/// The exported symbol of kernel `k`.
pub(super) fn kernel_name(k: usize) -> String {
    format!("tessera_kernel{k}")
}

fn internal(msg: impl Into<String>) -> LlvmError {
    LlvmError::Internal(msg.into())
}

/// A generated module and the Rust functions its declarations stand for.
pub(super) struct Built<'ctx> {
    pub module: Module<'ctx>,
    helpers: Vec<(String, usize)>,
}

impl<'ctx> Built<'ctx> {
    /// Each helper the module still declares (optimisation deletes unused ones) and the
    /// address of the Rust function that implements it.
    pub fn helpers(&self) -> Vec<(FunctionValue<'ctx>, usize)> {
        self.helpers
            .iter()
            .filter_map(|(name, addr)| self.module.get_function(name).map(|f| (f, *addr)))
            .collect()
    }
}

/// Builds every loop kernel of `p`; with `host`, functions carry the host CPU's name and
/// features (so that LLVM's cost models and code generation use its full vector width).
pub(super) fn build<'ctx>(
    cx: &'ctx Context,
    p: &Program,
    opts: &LlvmOptions,
    host: Option<&Host>,
    gpu: bool,
) -> R<Built<'ctx>> {
    if std::mem::size_of::<usize>() != 8 {
        return Err(LlvmError::Host(
            "the LLVM backend needs a 64-bit host".into(),
        ));
    }
    let module = cx.create_module(&p.name);
    let wide = p.dtype == DType::F64;
    let ft = if wide { cx.f64_type() } else { cx.f32_type() };
    let mut g = ModGen {
        cx,
        module,
        b: cx.create_builder(),
        ft,
        wide,
        opts: opts.clone(),
        attrs: function_attrs(cx, host),
        gpu,
        helpers: HashMap::new(),
        fixups: HashMap::new(),
    };
    for (k, kern) in p.kernels.iter().enumerate() {
        if let crate::loops::Kernel::Loops(l) = kern {
            g.kernel(p, k, l)?;
        }
    }
    let helpers = g
        .helpers
        .iter()
        .map(|(f, (_, addr))| (helper_name(*f, wide), *addr))
        .collect();
    Ok(Built {
        module: g.module,
        helpers,
    })
}

/// The buffers kernel `l` uses, and those of them it takes as parameters (all but its
/// scratch buffers, which live on its stack), in `BufId` order.
pub(super) fn kernel_buffers(p: &Program, l: &LoopKernel) -> R<(Vec<BufId>, Vec<BufId>)> {
    let (reads, writes) = l.buffers();
    let mut used: Vec<BufId> = reads.into_iter().chain(writes.iter().copied()).collect();
    used.sort();
    used.dedup();
    for b in &used {
        if b.index() >= p.bufs.len() {
            return Err(internal(format!("buffer {b} is not in the program")));
        }
    }
    let params = used
        .iter()
        .copied()
        .filter(|b| !matches!(p.buf(*b).kind, BufKind::Scratch))
        .collect();
    Ok((used, params))
}

/// A kernel `parallel for i in 0..n { for j in 0..m { body } }` whose (i, j) iterations
/// are independent: (i, n, j, m, body). GPU code runs one thread per (i, j), so that
/// neighbouring threads touch neighbouring elements; the rows alone would give too few
/// threads and strided accesses.
///
/// Independent means: `body` has no nested loop that stores (each (i, j) stores its own
/// elements at top level), every store's address has a j term and reaches only the
/// loops i and j with strides whose rectangles cannot overlap (so no two (i, j) write
/// one element), no buffer is both read and written, and no scratch buffer is used.
/// Variables need no check: the kernel's body is these two loops alone, so every
/// variable the body uses is defined in it, per (i, j).
pub(super) struct Collapse<'l> {
    pub i: LoopId,
    pub n: usize,
    pub j: LoopId,
    pub m: usize,
    pub body: &'l [Stmt],
}

pub(super) fn collapsible<'l>(p: &Program, l: &'l LoopKernel) -> Option<Collapse<'l>> {
    let (i, n) = l.parallel_loop()?;
    let [Stmt::For { body: outer, .. }] = l.body.as_slice() else { return None };
    let [Stmt::For { id: j, extent: m, body, .. }] = outer.as_slice() else { return None };
    if *m < 2 {
        return None;
    }
    let (reads, writes) = l.buffers();
    if reads.iter().any(|b| writes.contains(b)) || reads.iter().chain(&writes).any(|b| matches!(p.buf(*b).kind, BufKind::Scratch)) {
        return None;
    }
    for s in body {
        match s {
            Stmt::Store { index, .. } => {
                let stride = |id: LoopId| index.terms.iter().find(|t| t.0 == id).map_or(0, |t| t.1.unsigned_abs());
                let (si, sj) = (stride(i), stride(*j));
                let only_ij = index.terms.iter().all(|t| t.0 == i || t.0 == *j);
                let apart = sj > 0 && (n < 2 || si >= sj * *m as u64 || sj >= si.max(1) * n as u64);
                if !only_ij || !apart || (n > 1 && si == 0) {
                    return None;
                }
            }
            Stmt::For { body: inner, .. } if stores(inner) => return None,
            _ => {}
        }
    }
    Some(Collapse { i, n, j: *j, m: *m, body })
}

fn stores(body: &[Stmt]) -> bool {
    body.iter().any(|s| match s {
        Stmt::Store { .. } => true,
        Stmt::For { body, .. } => stores(body),
        _ => false,
    })
}

/// The iterations `begin..end` of kernel `l` index: its parallel loop's, or with
/// `collapse`, the (i, j) pairs of a collapsible kernel.
pub(super) fn launch_extent(p: &Program, l: &LoopKernel, collapse: bool) -> Option<usize> {
    match collapsible(p, l) {
        Some(c) if collapse => c.n.checked_mul(c.m),
        _ => l.parallel_loop().map(|x| x.1),
    }
}

/// Attributes of every generated function.
fn function_attrs(cx: &Context, host: Option<&Host>) -> Vec<Attribute> {
    let mut attrs =
        vec![cx.create_enum_attribute(Attribute::get_named_enum_kind_id("nounwind"), 0)];
    if let Some(h) = host {
        attrs.push(cx.create_string_attribute("target-cpu", &h.cpu));
        attrs.push(cx.create_string_attribute("target-features", &h.features));
        if h.has_avx512() {
            // Some CPUs default to 256-bit vectors; the kernels are throughput-bound
            // loops that gain from the full width.
            attrs.push(cx.create_string_attribute("prefer-vector-width", "512"));
        }
    }
    attrs
}

fn enum_attr(cx: &Context, name: &str, v: u64) -> Attribute {
    cx.create_enum_attribute(Attribute::get_named_enum_kind_id(name), v)
}

/// The module being filled.
struct ModGen<'ctx> {
    cx: &'ctx Context,
    module: Module<'ctx>,
    b: Builder<'ctx>,
    ft: FloatType<'ctx>,
    wide: bool,
    opts: LlvmOptions,
    attrs: Vec<Attribute>,
    /// Kernels for the GPU (NVPTX): a thread per iteration of the parallel loop, no
    /// calls into Rust.
    gpu: bool,
    /// Declarations of the Rust helpers, by function, with their addresses.
    helpers: HashMap<MathFn, (FunctionValue<'ctx>, usize)>,
    /// The sin/cos fix-up functions (by `cos`), scalar.
    fixups: HashMap<bool, FunctionValue<'ctx>>,
}

impl<'ctx> ModGen<'ctx> {
    fn add_attrs(&self, f: FunctionValue<'ctx>) {
        for a in &self.attrs {
            f.add_attribute(AttributeLoc::Function, *a);
        }
    }

    fn kernel(&mut self, p: &Program, k: usize, l: &LoopKernel) -> R<()> {
        let cx = self.cx;
        let ptr = cx.ptr_type(AddressSpace::default());
        let i64t = cx.i64_type();
        let (used, params) = kernel_buffers(p, l)?;

        // The body: noalias buffer pointers, then begin and end.
        let mut ptys: Vec<inkwell::types::BasicMetadataTypeEnum> = vec![ptr.into(); params.len()];
        ptys.extend([inkwell::types::BasicMetadataTypeEnum::from(i64t); 2]);
        let body_ty = cx.void_type().fn_type(&ptys, false);
        let body = self.module.add_function(
            &format!("{}_body", kernel_name(k)),
            body_ty,
            Some(Linkage::Internal),
        );
        self.add_attrs(body);
        for n in 0..params.len() {
            body.add_attribute(AttributeLoc::Param(n as u32), enum_attr(cx, "noalias", 0));
            body.add_attribute(AttributeLoc::Param(n as u32), enum_attr(cx, "nocapture", 0));
        }

        if self.gpu {
            self.gpu_wrapper(k, &params, body)?;
        } else {
            self.cpu_wrapper(p, k, &params, body)?;
        }

        // The body's code.
        self.body(p, l, body, &params, &used)
    }

    /// The kernel with the runtime's CPU ABI: loads the buffer pointers from `args` and
    /// calls the body with `begin..end`.
    fn cpu_wrapper(&mut self, p: &Program, k: usize, params: &[BufId], body: FunctionValue<'ctx>) -> R<()> {
        let cx = self.cx;
        let ptr = cx.ptr_type(AddressSpace::default());
        let i64t = cx.i64_type();
        let abi = cx
            .void_type()
            .fn_type(&[ptr.into(), i64t.into(), i64t.into()], false);
        let wrapper = self.module.add_function(&kernel_name(k), abi, None);
        self.add_attrs(wrapper);
        let entry = cx.append_basic_block(wrapper, "entry");
        self.b.position_at_end(entry);
        let args = wrapper
            .get_nth_param(0)
            .ok_or_else(|| internal("wrapper has no args"))?
            .into_pointer_value();
        args.set_name("args");
        let mut call_args: Vec<BasicMetadataValueEnum> = Vec::new();
        for b in params {
            let idx = i64t.const_int(b.index() as u64, false);
            // SAFETY (LLVM IR, not Rust): `args` has one pointer per buffer of the program.
            let slot = unsafe { self.b.build_in_bounds_gep(ptr, args, &[idx], "")? };
            let base = self.b.build_load(ptr, slot, &p.buf(*b).name)?;
            call_args.push(base.into());
        }
        for (n, name) in [(1, "begin"), (2, "end")] {
            let v = wrapper
                .get_nth_param(n)
                .ok_or_else(|| internal("wrapper has no range"))?
                .into_int_value();
            v.set_name(name);
            call_args.push(v.into());
        }
        self.b.build_call(body, &call_args, "")?;
        self.b.build_return(None)?;
        Ok(())
    }

    /// The GPU kernel (`ptx_kernel` calling convention): one global pointer per buffer,
    /// then `begin` and `end`; thread `t` of the grid (block-major) runs iteration
    /// `begin + t` of the parallel loop when it is below `end`. A kernel without a
    /// parallel loop is launched on one thread.
    fn gpu_wrapper(&mut self, k: usize, params: &[BufId], body: FunctionValue<'ctx>) -> R<()> {
        let cx = self.cx;
        let global = cx.ptr_type(AddressSpace::from(1u16));
        let generic = cx.ptr_type(AddressSpace::default());
        let i64t = cx.i64_type();
        let mut tys: Vec<inkwell::types::BasicMetadataTypeEnum> = vec![global.into(); params.len()];
        tys.extend([inkwell::types::BasicMetadataTypeEnum::from(i64t); 2]);
        let wrapper = self.module.add_function(&kernel_name(k), cx.void_type().fn_type(&tys, false), None);
        self.add_attrs(wrapper);
        wrapper.set_call_conventions(PTX_KERNEL);
        let (entry, run, done) = (
            cx.append_basic_block(wrapper, "entry"),
            cx.append_basic_block(wrapper, "run"),
            cx.append_basic_block(wrapper, "done"),
        );
        self.b.position_at_end(entry);
        let sreg = |name: &str| -> R<IntValue<'ctx>> {
            let f = inkwell::intrinsics::Intrinsic::find(name)
                .and_then(|i| i.get_declaration(&self.module, &[]))
                .ok_or_else(|| internal(format!("no {name}")))?;
            match self.b.build_call(f, &[], "")?.try_as_basic_value() {
                inkwell::values::ValueKind::Basic(v) => {
                    Ok(self.b.build_int_z_extend(v.into_int_value(), i64t, "")?)
                }
                _ => Err(internal(format!("{name} returned nothing"))),
            }
        };
        let tid = sreg("llvm.nvvm.read.ptx.sreg.tid.x")?;
        let ctaid = sreg("llvm.nvvm.read.ptx.sreg.ctaid.x")?;
        let ntid = sreg("llvm.nvvm.read.ptx.sreg.ntid.x")?;
        let np = params.len() as u32;
        let param = |n: u32| -> R<BasicValueEnum<'ctx>> {
            wrapper.get_nth_param(n).ok_or_else(|| internal("kernel parameter missing"))
        };
        let begin = param(np)?.into_int_value();
        let end = param(np + 1)?.into_int_value();
        begin.set_name("begin");
        end.set_name("end");
        let t = self.b.build_int_nuw_mul(ctaid, ntid, "")?;
        let t = self.b.build_int_nuw_add(t, tid, "")?;
        let it = self.b.build_int_nuw_add(begin, t, "iter")?;
        let inside = self.b.build_int_compare(IntPredicate::ULT, it, end, "")?;
        self.b.build_conditional_branch(inside, run, done)?;
        self.b.position_at_end(run);
        let mut call_args: Vec<BasicMetadataValueEnum> = Vec::new();
        for (n, b) in params.iter().enumerate() {
            let v = param(n as u32)?.into_pointer_value();
            v.set_name(&format!("buf{}", b.index()));
            call_args.push(self.b.build_address_space_cast(v, generic, "")?.into());
        }
        let next = self.b.build_int_nuw_add(it, i64t.const_int(1, false), "")?;
        call_args.push(it.into());
        call_args.push(next.into());
        self.b.build_call(body, &call_args, "")?;
        self.b.build_unconditional_branch(done)?;
        self.b.position_at_end(done);
        self.b.build_return(None)?;
        Ok(())
    }

    /// The body of kernel `l`: its loops, over `begin..end` of the parallel loop.
    fn body(&mut self, p: &Program, l: &LoopKernel, body: FunctionValue<'ctx>, params: &[BufId], used: &[BufId]) -> R<()> {
        let cx = self.cx;
        let i64t = cx.i64_type();
        let entry = cx.append_basic_block(body, "entry");
        self.b.position_at_end(entry);
        let mut bases = vec![None; p.bufs.len()];
        let mut inbounds = vec![true; p.bufs.len()];
        for (n, b) in params.iter().enumerate() {
            let v = body
                .get_nth_param(n as u32)
                .ok_or_else(|| internal("body parameter missing"))?
                .into_pointer_value();
            v.set_name(&p.buf(*b).name);
            bases[b.index()] = Some(v);
            inbounds[b.index()] = !matches!(p.buf(*b).kind, BufKind::Tile { .. });
        }
        for b in used {
            if matches!(p.buf(*b).kind, BufKind::Scratch) {
                let n = u32::try_from(p.buf(*b).len())
                    .map_err(|_| internal("scratch buffer too large"))?;
                let at = self
                    .b
                    .build_alloca(self.ft.array_type(n), &p.buf(*b).name)?;
                bases[b.index()] = Some(at);
            }
        }
        let nan = self.ft.const_float(f64::NAN);
        let mut vars = Vec::new();
        for name in &l.vars {
            vars.push(self.b.build_alloca(self.ft, name)?);
        }
        // Variables start as NaN, like the interpreter's, so a stray read shows.
        for v in &vars {
            self.b.build_store(*v, nan)?;
        }
        let begin = body
            .get_nth_param(params.len() as u32)
            .ok_or_else(|| internal("no begin"))?
            .into_int_value();
        let end = body
            .get_nth_param(params.len() as u32 + 1)
            .ok_or_else(|| internal("no end"))?
            .into_int_value();
        begin.set_name("begin");
        end.set_name("end");
        let collapse = if self.gpu || self.opts.collapse { collapsible(p, l) } else { None };
        let mut kg = KGen {
            g: self,
            l,
            f: body,
            bases,
            inbounds,
            vars,
            cur: vec![None; l.loops.len()],
        };
        if let Some(c) = collapse {
            if let Some(total) = c.n.checked_mul(c.m).filter(|&t| t > 0) {
                let n = i64t.const_int(total as u64, false);
                let b = &kg.g.b;
                let small = b.build_int_compare(IntPredicate::ULT, end, n, "")?;
                let hi = b.build_select(small, end, n, "hi")?.into_int_value();
                kg.flat_loop(&c, begin, hi)?;
            }
            kg.g.b.build_return(None)?;
            return Ok(());
        }
        match (l.parallel_loop(), l.body.as_slice()) {
            (Some((id, extent)), [Stmt::For { body: inner, .. }]) => {
                if extent > 0 {
                    let n = i64t.const_int(extent as u64, false);
                    let b = &kg.g.b;
                    let small = b.build_int_compare(IntPredicate::ULT, end, n, "")?;
                    let hi = b.build_select(small, end, n, "hi")?.into_int_value();
                    kg.for_loop(id, begin, hi, inner)?;
                }
            }
            _ => kg.stmts(&l.body)?,
        }
        self.b.build_return(None)?;
        Ok(())
    }

    /// The declaration of the Rust helper for `f` in the program's precision.
    fn helper(&mut self, f: MathFn) -> FunctionValue<'ctx> {
        if let Some((h, _)) = self.helpers.get(&f) {
            return *h;
        }
        let arity = if f == MathFn::Pow { 2 } else { 1 };
        let pts: Vec<inkwell::types::BasicMetadataTypeEnum> = vec![self.ft.into(); arity];
        let ty = self.ft.fn_type(&pts, false);
        let name = helper_name(f, self.wide);
        let h = self.module.add_function(&name, ty, Some(Linkage::External));
        for a in ["nounwind", "willreturn"] {
            h.add_attribute(AttributeLoc::Function, enum_attr(self.cx, a, 0));
        }
        // memory(none): the helpers read and write no memory the kernels can see.
        h.add_attribute(AttributeLoc::Function, enum_attr(self.cx, "memory", 0));
        self.helpers.insert(f, (h, helper_address(f, self.wide)));
        h
    }

    /// `fixup(x, fast)`: `fast` when |x| is within the inline reduction's range, else the
    /// std function of x. Never inlined, so that loops keep a call that the vectoriser
    /// widens to [`ModGen::vector_fixup`] (the attribute that names those is set per call).
    fn fixup(&mut self, cos: bool) -> R<FunctionValue<'ctx>> {
        if let Some(f) = self.fixups.get(&cos) {
            return Ok(*f);
        }
        let exact = self.helper(if cos { MathFn::Cos } else { MathFn::Sin });
        let ft = self.ft;
        let name = fixup_name(cos, self.wide);
        let f = self
            .module
            .add_function(&name, ft.fn_type(&[ft.into(), ft.into()], false), None);
        self.add_attrs(f);
        for a in ["noinline", "willreturn"] {
            f.add_attribute(AttributeLoc::Function, enum_attr(self.cx, a, 0));
        }
        f.add_attribute(AttributeLoc::Function, enum_attr(self.cx, "memory", 0));
        let saved = self.b.get_insert_block();
        let (entry, slow, done) = (
            self.cx.append_basic_block(f, "entry"),
            self.cx.append_basic_block(f, "far"),
            self.cx.append_basic_block(f, "near"),
        );
        let x = f
            .get_nth_param(0)
            .ok_or_else(|| internal("fixup x"))?
            .into_float_value();
        let fast = f
            .get_nth_param(1)
            .ok_or_else(|| internal("fixup fast"))?
            .into_float_value();
        self.b.position_at_end(entry);
        let ax = math::call_intrinsic(&self.b, &self.module, "llvm.fabs", ft, &[x])?;
        let lim = ft.const_float(math::trig_limit(self.wide));
        let far = self
            .b
            .build_float_compare(FloatPredicate::OGT, ax, lim, "")?;
        self.b.build_conditional_branch(far, slow, done)?;
        self.b.position_at_end(slow);
        let r = call_float(&self.b, exact, &[x.into()], "helper")?;
        self.b.build_return(Some(&r))?;
        self.b.position_at_end(done);
        self.b.build_return(Some(&fast))?;
        for lanes in vector_widths(self.wide) {
            self.vector_fixup(f, &name, lanes)?;
        }
        if let Some(bb) = saved {
            self.b.position_at_end(bb);
        }
        self.fixups.insert(cos, f);
        Ok(f)
    }

    /// The `lanes`-wide variant of a fix-up: one test for the whole vector, and only when
    /// a lane is beyond the range, the scalar fix-up per lane.
    fn vector_fixup(&mut self, scalar: FunctionValue<'ctx>, name: &str, lanes: u32) -> R<()> {
        let vt = self.ft.vec_type(lanes);
        let f = self.module.add_function(
            &format!("{name}_v{lanes}"),
            vt.fn_type(&[vt.into(), vt.into()], false),
            None,
        );
        self.add_attrs(f);
        let (entry, slow, done) = (
            self.cx.append_basic_block(f, "entry"),
            self.cx.append_basic_block(f, "far"),
            self.cx.append_basic_block(f, "near"),
        );
        let x = f
            .get_nth_param(0)
            .ok_or_else(|| internal("fixup x"))?
            .into_vector_value();
        let fast = f
            .get_nth_param(1)
            .ok_or_else(|| internal("fixup fast"))?
            .into_vector_value();
        let b = &self.b;
        b.position_at_end(entry);
        let fabs = inkwell::intrinsics::Intrinsic::find("llvm.fabs")
            .and_then(|i| i.get_declaration(&self.module, &[vt.into()]))
            .ok_or_else(|| internal("no llvm.fabs"))?;
        let ax = match b.build_call(fabs, &[x.into()], "")?.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => v.into_vector_value(),
            _ => return Err(internal("fabs returned nothing")),
        };
        let lim = self.ft.const_float(math::trig_limit(self.wide));
        let lims = inkwell::types::VectorType::const_vector(&vec![lim; lanes as usize]);
        let far = b.build_float_compare(FloatPredicate::OGT, ax, lims, "")?;
        let bool_vt: BasicTypeEnum = self.cx.bool_type().vec_type(lanes).into();
        let any_fn = inkwell::intrinsics::Intrinsic::find("llvm.vector.reduce.or")
            .and_then(|i| i.get_declaration(&self.module, &[bool_vt]))
            .ok_or_else(|| internal("no llvm.vector.reduce.or"))?;
        let any = match b
            .build_call(any_fn, &[far.into()], "")?
            .try_as_basic_value()
        {
            inkwell::values::ValueKind::Basic(v) => v.into_int_value(),
            _ => return Err(internal("reduce.or returned nothing")),
        };
        b.build_conditional_branch(any, slow, done)?;
        b.position_at_end(slow);
        let mut r = fast;
        for k in 0..lanes {
            let i = self.cx.i32_type().const_int(u64::from(k), false);
            let xk = b.build_extract_element(x, i, "")?.into_float_value();
            let fk = b.build_extract_element(fast, i, "")?.into_float_value();
            let rk = call_float(b, scalar, &[xk.into(), fk.into()], "fixup")?;
            r = b.build_insert_element(r, rk, i, "")?;
        }
        b.build_return(Some(&r))?;
        b.position_at_end(done);
        b.build_return(Some(&fast))?;
        Ok(())
    }
}

/// The vector widths the sin/cos fix-ups come in: every width the loop vectoriser may
/// pick for the dtype up to 1024 bits.
fn vector_widths(wide: bool) -> Vec<u32> {
    if wide {
        vec![2, 4, 8, 16]
    } else {
        vec![2, 4, 8, 16, 32]
    }
}

fn fixup_name(cos: bool, wide: bool) -> String {
    format!(
        "tessera_{}fix_{}",
        if cos { "cos" } else { "sin" },
        if wide { "f64" } else { "f32" }
    )
}

/// The `vector-function-abi-variant` attribute value that maps a fix-up to its vector
/// variants (LLVM's VFABI mangling: `_ZGV_LLVM_N<lanes>vv_<scalar>(<vector>)`).
fn vfabi_variants(name: &str, wide: bool) -> String {
    vector_widths(wide)
        .iter()
        .map(|n| format!("_ZGV_LLVM_N{n}vv_{name}({name}_v{n})"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The symbol name of a helper.
fn helper_name(f: MathFn, wide: bool) -> String {
    format!("tessera_llvm_{:?}_{}", f, if wide { "f64" } else { "f32" }).to_lowercase()
}

/// What the interpreter computes (std's functions), called per element where the inline
/// code is not wanted or not accurate: the Cranelift backend's helpers.
fn helper_address(f: MathFn, wide: bool) -> usize {
    crate::codegen::clif::libm::address(f, wide) as usize
}

/// The state of one kernel body being generated.
struct KGen<'a, 'ctx> {
    g: &'a mut ModGen<'ctx>,
    l: &'a LoopKernel,
    f: FunctionValue<'ctx>,
    bases: Vec<Option<PointerValue<'ctx>>>,
    inbounds: Vec<bool>,
    vars: Vec<PointerValue<'ctx>>,
    /// The counter of each loop while its body is generated.
    cur: Vec<Option<IntValue<'ctx>>>,
}

type F<'ctx> = FloatValue<'ctx>;

const REASSOC: FastMathFlags = FastMathFlags::AllowReassoc;
const CONTRACT: FastMathFlags = FastMathFlags::AllowContract;

fn set_flags(i: Option<InstructionValue>, flags: FastMathFlags) {
    if let Some(i) = i {
        // Constant-folded operations are no instructions and need no flags; every
        // instruction given here is a float operation, which takes them.
        let _ = i.set_fast_math_flags(flags);
    }
}

/// Innermost loops are not unrolled before vectorisation. Fully unrolled, a short
/// innermost loop (32 iterations in EvoNorm-S0, 16 in the CG product) turns the loop
/// around it into the vectoriser's target, with interleaved or gathered accesses:
/// EvoNorm-S0's kernel took 0.6 s to compile (0.13 s without), the CG product ran 2.4x
/// slower; the rows measured did not get faster from it. The vectoriser still widens
/// and interleaves these loops.
fn innermost(body: &[Stmt]) -> bool {
    !body.iter().any(|s| matches!(s, Stmt::For { .. }))
}

/// Marks a loop's back edge with `llvm.loop.unroll.disable`. Loop metadata must refer to
/// itself, which the C API builds from a temporary node; the loop vectoriser still
/// widens and interleaves the loop.
fn no_unroll(cx: &Context, back: InstructionValue) {
    use inkwell::context::AsContextRef;
    use inkwell::values::AsValueRef;
    use inkwell::llvm_sys::core::{
        LLVMGetMDKindIDInContext, LLVMMDNodeInContext2, LLVMMDStringInContext2, LLVMMetadataAsValue, LLVMSetMetadata,
    };
    use inkwell::llvm_sys::debuginfo::{LLVMMetadataReplaceAllUsesWith, LLVMTemporaryMDNode};
    const KIND: &str = "llvm.loop";
    const PROPERTY: &str = "llvm.loop.unroll.disable";
    // SAFETY: every reference comes from the live context `cx` and the branch
    // instruction in it; the temporary node is replaced (and so freed) before return.
    unsafe {
        let c = cx.as_ctx_ref();
        let prop = LLVMMDStringInContext2(c, PROPERTY.as_ptr().cast(), PROPERTY.len());
        let prop = LLVMMDNodeInContext2(c, [prop].as_mut_ptr(), 1);
        let tmp = LLVMTemporaryMDNode(c, std::ptr::null_mut(), 0);
        let id = LLVMMDNodeInContext2(c, [tmp, prop].as_mut_ptr(), 2);
        LLVMMetadataReplaceAllUsesWith(tmp, id);
        let kind = LLVMGetMDKindIDInContext(c, KIND.as_ptr().cast(), KIND.len() as u32);
        LLVMSetMetadata(back.as_value_ref(), kind, LLVMMetadataAsValue(c, id));
    }
}

impl<'ctx> KGen<'_, 'ctx> {
    fn b(&self) -> &Builder<'ctx> {
        &self.g.b
    }

    fn stmts(&mut self, body: &[Stmt]) -> R<()> {
        body.iter().try_for_each(|s| self.stmt(s))
    }

    fn var(&self, v: crate::loops::VarId) -> R<PointerValue<'ctx>> {
        self.vars
            .get(v.index())
            .copied()
            .ok_or_else(|| internal(format!("variable {v} is not declared")))
    }

    fn stmt(&mut self, s: &Stmt) -> R<()> {
        match s {
            Stmt::For {
                id, extent, body, ..
            } => {
                if *extent > 0 {
                    let i64t = self.g.cx.i64_type();
                    let (lo, hi) = (i64t.const_zero(), i64t.const_int(*extent as u64, false));
                    self.for_loop(*id, lo, hi, body)?;
                }
            }
            Stmt::Let { var, value } => {
                let v = self.expr(value)?;
                let at = self.var(*var)?;
                self.b().build_store(at, v)?;
            }
            Stmt::Update { var, op, value } => {
                let at = self.var(*var)?;
                let ft = self.g.ft;
                let old = self.b().build_load(ft, at, "")?.into_float_value();
                let new = match op {
                    Accum::Sum => {
                        // Accumulators may be reassociated (one partial sum per vector lane).
                        let flags = if self.g.opts.fma {
                            REASSOC | CONTRACT
                        } else {
                            REASSOC
                        };
                        let v = match value {
                            Expr::Binary(BinOp::Mul, x, y) => {
                                let (x, y) = (self.expr(x)?, self.expr(y)?);
                                let m = self.b().build_float_mul(x, y, "")?;
                                set_flags(m.as_instruction(), flags & CONTRACT);
                                m
                            }
                            _ => self.expr(value)?,
                        };
                        let r = self.b().build_float_add(old, v, "")?;
                        set_flags(r.as_instruction(), flags);
                        r
                    }
                    Accum::Max => {
                        let v = self.expr(value)?;
                        self.intrinsic("llvm.maximum", &[old, v])?
                    }
                    Accum::Min => {
                        let v = self.expr(value)?;
                        self.intrinsic("llvm.minimum", &[old, v])?
                    }
                };
                self.b().build_store(at, new)?;
            }
            Stmt::Store { buf, index, value } => {
                let v = self.expr(value)?;
                let at = self.addr(*buf, index)?;
                self.b().build_store(at, v)?;
            }
        }
        Ok(())
    }

    /// `for id in lo..hi { body }` as a guarded bottom-tested loop.
    fn for_loop(
        &mut self,
        id: LoopId,
        lo: IntValue<'ctx>,
        hi: IntValue<'ctx>,
        body: &[Stmt],
    ) -> R<()> {
        let cx = self.g.cx;
        let name = self
            .l
            .loops
            .get(id.index())
            .map_or_else(|| format!("{id}"), |x| x.name.clone());
        let pre = self
            .b()
            .get_insert_block()
            .ok_or_else(|| internal("builder has no block"))?;
        let head = cx.append_basic_block(self.f, &format!("{name}.loop"));
        let exit = cx.append_basic_block(self.f, &format!("{name}.exit"));
        let any = self.b().build_int_compare(IntPredicate::ULT, lo, hi, "")?;
        self.b().build_conditional_branch(any, head, exit)?;
        self.b().position_at_end(head);
        let phi = self.b().build_phi(cx.i64_type(), &name)?;
        phi.add_incoming(&[(&lo, pre)]);
        let i = phi.as_basic_value().into_int_value();
        *self
            .cur
            .get_mut(id.index())
            .ok_or_else(|| internal(format!("loop {id} is not declared")))? = Some(i);
        self.stmts(body)?;
        self.cur[id.index()] = None;
        let one = cx.i64_type().const_int(1, false);
        let next = self.b().build_int_nuw_add(i, one, "")?;
        let more = self
            .b()
            .build_int_compare(IntPredicate::ULT, next, hi, "")?;
        let latch = self
            .b()
            .get_insert_block()
            .ok_or_else(|| internal("builder has no block"))?;
        let back = self.b().build_conditional_branch(more, head, exit)?;
        if innermost(body) {
            no_unroll(cx, back);
        }
        phi.add_incoming(&[(&next, latch)]);
        self.b().position_at_end(exit);
        Ok(())
    }

    /// `for t in lo..hi { i = t / m; j = t % m; body }` for a collapsed kernel.
    fn flat_loop(&mut self, c: &Collapse<'_>, lo: IntValue<'ctx>, hi: IntValue<'ctx>) -> R<()> {
        let cx = self.g.cx;
        let pre = self.b().get_insert_block().ok_or_else(|| internal("builder has no block"))?;
        let head = cx.append_basic_block(self.f, "ij.loop");
        let exit = cx.append_basic_block(self.f, "ij.exit");
        let any = self.b().build_int_compare(IntPredicate::ULT, lo, hi, "")?;
        self.b().build_conditional_branch(any, head, exit)?;
        self.b().position_at_end(head);
        let phi = self.b().build_phi(cx.i64_type(), "ij")?;
        phi.add_incoming(&[(&lo, pre)]);
        let t = phi.as_basic_value().into_int_value();
        let m = cx.i64_type().const_int(c.m as u64, false);
        let i = self.b().build_int_unsigned_div(t, m, "i")?;
        let j = self.b().build_int_unsigned_rem(t, m, "j")?;
        for (id, v) in [(c.i, i), (c.j, j)] {
            *self
                .cur
                .get_mut(id.index())
                .ok_or_else(|| internal(format!("loop {id} is not declared")))? = Some(v);
        }
        self.stmts(c.body)?;
        self.cur[c.i.index()] = None;
        self.cur[c.j.index()] = None;
        let next = self.b().build_int_nuw_add(t, cx.i64_type().const_int(1, false), "")?;
        let more = self.b().build_int_compare(IntPredicate::ULT, next, hi, "")?;
        let latch = self.b().get_insert_block().ok_or_else(|| internal("builder has no block"))?;
        self.b().build_conditional_branch(more, head, exit)?;
        phi.add_incoming(&[(&next, latch)]);
        self.b().position_at_end(exit);
        Ok(())
    }

    fn counter(&self, l: LoopId) -> R<IntValue<'ctx>> {
        self.cur
            .get(l.index())
            .copied()
            .flatten()
            .ok_or_else(|| internal(format!("loop {l} used outside its body")))
    }

    /// The address of element `a` of `buf`.
    fn addr(&self, buf: BufId, a: &Affine) -> R<PointerValue<'ctx>> {
        let off = self.offset(a)?;
        self.element(buf, off)
    }

    /// The address of element `off` of `buf` (of the program's dtype).
    fn element(&self, buf: BufId, off: IntValue<'ctx>) -> R<PointerValue<'ctx>> {
        let base = self
            .bases
            .get(buf.index())
            .copied()
            .flatten()
            .ok_or_else(|| internal(format!("buffer {buf} not loaded")))?;
        // SAFETY (LLVM IR, not Rust): the verifier checked that every address of the
        // kernel lies in its buffer (a gathered one for every index value the executor
        // lets through), so the offset stays inside the allocation; tile buffers, whose
        // base lies outside it, get a plain GEP.
        let p = unsafe {
            if self.inbounds[buf.index()] {
                self.b().build_in_bounds_gep(self.g.ft, base, &[off], "")?
            } else {
                self.b().build_gep(self.g.ft, base, &[off], "")?
            }
        };
        Ok(p)
    }

    /// A gathered load: each index is loaded as an i64 (the executor has widened and
    /// checked every entry), scaled by its stride and added to the affine offset.
    fn gather(&self, buf: BufId, a: &Affine, ind: &[crate::loops::Indirect]) -> R<F<'ctx>> {
        let i64t = self.g.cx.i64_type();
        let mut off = self.offset(a)?;
        for i in ind {
            let base = self
                .bases
                .get(i.index.index())
                .copied()
                .flatten()
                .ok_or_else(|| internal(format!("index buffer {} not loaded", i.index)))?;
            let at = self.offset(&i.at)?;
            // SAFETY (LLVM IR): the verifier checked the index address against the index
            // buffer.
            let p = unsafe { self.b().build_in_bounds_gep(i64t, base, &[at], "")? };
            let v = self.b().build_load(i64t, p, "")?.into_int_value();
            let t = self.b().build_int_nsw_mul(v, i64t.const_int(i.stride as u64, true), "")?;
            off = self.b().build_int_nsw_add(off, t, "")?;
        }
        let at = self.element(buf, off)?;
        Ok(self.b().build_load(self.g.ft, at, "")?.into_float_value())
    }

    /// The element offset `a` as an i64.
    fn offset(&self, a: &Affine) -> R<IntValue<'ctx>> {
        let i64t = self.g.cx.i64_type();
        let mut off: Option<IntValue> = None;
        for &(l, s) in &a.terms {
            let c = self.counter(l)?;
            let t = if s == 1 {
                c
            } else {
                self.b()
                    .build_int_nsw_mul(c, i64t.const_int(s as u64, true), "")?
            };
            off = Some(match off {
                Some(o) => self.b().build_int_nsw_add(o, t, "")?,
                None => t,
            });
        }
        let k = i64t.const_int(a.offset as u64, true);
        let off = match off {
            Some(o) if a.offset != 0 => self.b().build_int_nsw_add(o, k, "")?,
            Some(o) => o,
            None => k,
        };
        Ok(off)
    }

    fn intrinsic(&self, name: &str, args: &[F<'ctx>]) -> R<F<'ctx>> {
        math::call_intrinsic(self.b(), &self.g.module, name, self.g.ft, args)
    }

    fn konst(&self, v: f64) -> F<'ctx> {
        if self.g.wide {
            self.g.ft.const_float(v)
        } else {
            self.g.ft.const_float(f64::from(v as f32))
        }
    }

    fn expr(&mut self, e: &Expr) -> R<F<'ctx>> {
        let contract = if self.g.opts.fma {
            CONTRACT
        } else {
            FastMathFlags::empty()
        };
        Ok(match e {
            Expr::Const(c) => self.konst(*c),
            Expr::Load(buf, a) => {
                let at = self.addr(*buf, a)?;
                self.b().build_load(self.g.ft, at, "")?.into_float_value()
            }
            Expr::Gather(buf, a, ind) => self.gather(*buf, a, ind)?,
            Expr::Var(v) => {
                let at = self.var(*v)?;
                self.b().build_load(self.g.ft, at, "")?.into_float_value()
            }
            Expr::Index(l) => {
                let i = self.counter(*l)?;
                self.b().build_signed_int_to_float(i, self.g.ft, "")?
            }
            Expr::Unary(op, a) => {
                let x = self.expr(a)?;
                self.unary(*op, x)?
            }
            Expr::Binary(op, a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                let bl = self.b();
                match op {
                    BinOp::Add => {
                        let r = bl.build_float_add(x, y, "")?;
                        set_flags(r.as_instruction(), contract);
                        r
                    }
                    BinOp::Sub => {
                        let r = bl.build_float_sub(x, y, "")?;
                        set_flags(r.as_instruction(), contract);
                        r
                    }
                    BinOp::Mul => {
                        let r = bl.build_float_mul(x, y, "")?;
                        set_flags(r.as_instruction(), contract);
                        r
                    }
                    BinOp::Div => bl.build_float_div(x, y, "")?,
                    BinOp::Max => self.intrinsic("llvm.maximum", &[x, y])?,
                    BinOp::Min => self.intrinsic("llvm.minimum", &[x, y])?,
                    BinOp::Pow => self.math(MathFn::Pow, x, y)?,
                    BinOp::Lmul(m) => Math::new(self.g.cx, &self.g.b, &self.g.module, self.g.wide).lmul(x, y, *m)?,
                }
            }
            Expr::Select(p, a, b) => {
                let c = self.pred(p)?;
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                self.b().build_select(c, x, y, "")?.into_float_value()
            }
        })
    }

    fn unary(&mut self, op: UnOp, x: F<'ctx>) -> R<F<'ctx>> {
        Ok(match op {
            UnOp::Neg => self.b().build_float_neg(x, "")?,
            UnOp::Abs => self.intrinsic("llvm.fabs", &[x])?,
            UnOp::Sqrt => self.intrinsic("llvm.sqrt", &[x])?,
            UnOp::Rsqrt => {
                let s = self.intrinsic("llvm.sqrt", &[x])?;
                self.b().build_float_div(self.konst(1.0), s, "")?
            }
            UnOp::Relu => {
                // `if x > 0 { x } else { 0 }`: NaN and -0 give +0, as in the interpreter.
                let zero = self.konst(0.0);
                let c = self
                    .b()
                    .build_float_compare(FloatPredicate::OGT, x, zero, "")?;
                self.b().build_select(c, x, zero, "")?.into_float_value()
            }
            UnOp::Exp => self.math(MathFn::Exp, x, x)?,
            UnOp::Log => self.math(MathFn::Log, x, x)?,
            UnOp::Tanh => self.math(MathFn::Tanh, x, x)?,
            UnOp::Sigmoid => self.math(MathFn::Sigmoid, x, x)?,
            UnOp::Sin => self.math(MathFn::Sin, x, x)?,
            UnOp::Cos => self.math(MathFn::Cos, x, x)?,
        })
    }

    /// A transcendental function: inline code, or a call of the std function.
    fn math(&mut self, f: MathFn, x: F<'ctx>, y: F<'ctx>) -> R<F<'ctx>> {
        if !self.g.opts.inline_math && !self.g.gpu {
            let h = self.g.helper(f);
            let args: Vec<BasicMetadataValueEnum> = if f == MathFn::Pow {
                vec![x.into(), y.into()]
            } else {
                vec![x.into()]
            };
            return call_float(self.b(), h, &args, "helper");
        }
        let fast = Math::new(self.g.cx, &self.g.b, &self.g.module, self.g.wide).emit(f, x, y)?;
        // GPU code calls no Rust: beyond the reduction's range sin/cos stay NaN there
        // (documented in `codegen/cuda.rs`).
        if !matches!(f, MathFn::Sin | MathFn::Cos) || self.g.gpu {
            return Ok(fast);
        }
        // The inline reduction gives NaN beyond its range; the fix-up replaces those
        // results with the std function's (rare in practice: a vector test per vector).
        let cos = f == MathFn::Cos;
        let fix = self.g.fixup(cos)?;
        let call = self.b().build_call(fix, &[x.into(), fast.into()], "")?;
        let variants = vfabi_variants(&fixup_name(cos, self.g.wide), self.g.wide);
        call.add_attribute(
            AttributeLoc::Function,
            self.g
                .cx
                .create_string_attribute("vector-function-abi-variant", &variants),
        );
        match call.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => Ok(v.into_float_value()),
            _ => Err(internal("fix-up returned nothing")),
        }
    }

    fn pred(&mut self, p: &Pred) -> R<IntValue<'ctx>> {
        Ok(match p {
            Pred::Cmp(op, a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                self.b().build_float_compare(float_pred(*op), x, y, "")?
            }
            Pred::And(ps) | Pred::Or(ps) => {
                let and = matches!(p, Pred::And(_));
                let mut acc = self.g.cx.bool_type().const_int(u64::from(and), false);
                for q in ps {
                    let c = self.pred(q)?;
                    acc = if and {
                        self.b().build_and(acc, c, "")?
                    } else {
                        self.b().build_or(acc, c, "")?
                    };
                }
                acc
            }
            Pred::Not(q) => {
                let c = self.pred(q)?;
                self.b().build_not(c, "")?
            }
        })
    }
}

/// The interpreter compares with Rust's operators: all false on NaN except `!=`.
fn float_pred(op: CmpOp) -> FloatPredicate {
    match op {
        CmpOp::Lt => FloatPredicate::OLT,
        CmpOp::Le => FloatPredicate::OLE,
        CmpOp::Gt => FloatPredicate::OGT,
        CmpOp::Ge => FloatPredicate::OGE,
        CmpOp::Eq => FloatPredicate::OEQ,
        CmpOp::Ne => FloatPredicate::UNE,
    }
}
