//! The loop IR (IR level 5): a plan at concrete sizes as a sequence of kernels over typed
//! buffers. A kernel is either a library call (`Gemm`, a strided batched GEMM) or a
//! loop nest of scalar code (`Loops`). Nothing here knows about Cranelift, LLVM or CUDA:
//! each backend reads this IR, and `interp` executes it directly as a second reference.
//!
//! A loop kernel's only parallel loop is its outermost one, and iterations of a parallel
//! loop write disjoint memory, so a CPU backend can split it over threads and a GPU
//! backend can map it to blocks. Addresses are affine in the loop counters (element
//! offsets), which keeps vectorisation and bounds checking a matter of reading strides.

mod flash;
mod interp;
mod lower;
pub mod parse;
pub mod passes;
mod print;
pub mod sparse;
pub mod stream;
mod verify;

pub use flash::Blocks;
pub use interp::{interpret, interpret_indexed, interpret_with, InterpError, InterpOptions};
pub use lower::{lower, lower_kernels, lower_with, LowerError, LowerOptions};
pub use parse::{parse, ParseError};
pub use verify::{verify, verify_at, Stage};

use std::sync::Arc;
use tessera_runtime::DType;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);
        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A buffer of a program.
    BufId,
    "b"
);
id_type!(
    /// A loop of a kernel.
    LoopId,
    "l"
);
id_type!(
    /// A scalar variable of a kernel (a register: accumulators and shared subexpressions).
    VarId,
    "v"
);

/// Where a buffer's memory comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum BufKind {
    /// The k-th argument of the function (row-major, contiguous).
    Input(usize),
    /// The k-th index argument (row-major, contiguous), as i64 whatever its type was:
    /// the executor checks every entry against the axis it selects and widens i32
    /// inputs in the same pass, before any kernel runs. Read only by `Expr::Gather`.
    Index(usize),
    /// The k-th result of the function (row-major, contiguous).
    Output(usize),
    /// An intermediate; it lives in memory slot `slot` of the program's memory plan.
    Temp { slot: usize },
    /// Compile-time constant values, row-major.
    Const(Arc<Vec<f64>>),
    /// Memory private to each invocation of the one kernel that uses it (a row of an
    /// intermediate that row fusion keeps per thread); a backend puts it on the stack.
    Scratch,
    /// An intermediate of a tile group, whose kernels run tile by tile of rows: each
    /// thread keeps only the rows of its current tile, `row` elements each. Addresses in
    /// the kernels stay those of the whole buffer (rows are the outermost dimension).
    Tile { row: usize },
}

/// A dense row-major buffer of the program's dtype (i64 for `BufKind::Index`).
#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    pub name: String,
    pub kind: BufKind,
    pub shape: Vec<usize>,
}

impl Buffer {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A function at concrete sizes, ready for a backend.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub name: String,
    pub dtype: DType,
    pub bufs: Vec<Buffer>,
    /// Sizes, in elements, of the memory slots temporaries share (the memory plan).
    pub slots: Vec<usize>,
    pub inputs: Vec<BufId>,
    /// The index arguments (`BufKind::Index`), in order.
    pub indices: Vec<BufId>,
    pub outputs: Vec<BufId>,
    /// Run in order.
    pub kernels: Vec<Kernel>,
    /// Runs of kernels that execute tile by tile of a shared row index.
    pub tiles: Vec<TileGroup>,
}

/// Which dimension of a GEMM in a tile group runs over the group's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileRole {
    M,
    N,
}

/// Kernels `first..=last` run once per tile of `tile` rows of an index of `extent`
/// (tiles in parallel, one thread each): loop kernels over their parallel loop's rows of
/// the tile, GEMMs over the tile's slice of their `roles` dimension. Intermediates that
/// only the group uses are `BufKind::Tile`, so no thread holds more than a tile of them.
#[derive(Clone, Debug, PartialEq)]
pub struct TileGroup {
    pub first: usize,
    pub last: usize,
    pub extent: usize,
    pub tile: usize,
    /// For each kernel of the group, the sliced dimension of a GEMM (None for loops).
    pub roles: Vec<Option<TileRole>>,
    /// GEMM rows per group row for each kernel: 1, except for GEMMs whose M runs over
    /// (row, key) pairs of a two-key stream (2-simplicial attention), where it is the
    /// outer key's block.
    pub factors: Vec<usize>,
    /// The group's `BufKind::Tile` intermediates.
    pub local: Vec<BufId>,
    /// Online softmax: some kernels of the group run once per block of key indices.
    pub stream: Option<Stream>,
}

/// How a tile group streams blocks of key indices (flash attention). Kernels
/// `first..axes[0].kernels.0` initialise the tile's state, each axis's kernels run once
/// per block of that axis (nested, outermost axis first), and the kernels after the
/// innermost axis's range up to `last` finish the tile.
///
/// Every block has the full `block` width: the last one is shifted back so that it ends
/// at the key range's end, and the columns it shares with the previous block are masked
/// like masked keys. So kernels have one extent, and keys appear in them only through
/// the shifted base pointers of `shifts`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stream {
    /// Outermost first: `[j]` for attention, `[j, l]` for 2-simplicial attention.
    pub axes: Vec<StreamAxis>,
    /// Buffers the kernels read at block-relative addresses: for each block the
    /// executor moves the buffer's base by `key0(axis) · stride` elements.
    pub shifts: Vec<Shift>,
    /// The block of scores (a `Tile` buffer of the group). Right after kernel
    /// `fill_after` writes it, the executor stores -inf into its masked entries and into
    /// entries an earlier block already covered.
    pub scores: BufId,
    pub fill_after: usize,
    /// Offset, inside one group row of `scores`, of key `c` of axis k's block: `c · score_strides[k]`.
    pub score_strides: Vec<i64>,
    /// The mask: a key is visible from a row when every comparison holds.
    pub mask: Vec<MaskCmp>,
}

/// One streamed key index.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamAxis {
    pub name: String,
    pub extent: usize,
    /// Keys per block, `1 <= block <= extent`.
    pub block: usize,
    /// The kernels (inclusive range) that run once per block of this axis; for every
    /// axis but the innermost they enclose the next axis's range.
    pub kernels: (usize, usize),
}

/// A buffer read at block-relative addresses along one stream axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shift {
    pub buf: BufId,
    pub axis: usize,
    pub stride: i64,
}

/// `row·i + Σ_k keys[k]·key_k + constant  op  0`, with the group row `i` and the keys of
/// the stream axes (integers: masks are affine in the indices).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MaskCmp {
    pub op: CmpOp,
    pub row: i64,
    pub keys: Vec<i64>,
    pub constant: i64,
}

impl TileGroup {
    /// Moves the group to new kernel indices: kernel k becomes `at[k]`. Passes that merge
    /// or drop kernels outside groups renumber the groups with this (a group's kernels
    /// keep their order and stay distinct).
    pub fn renumber(&mut self, at: &[usize]) {
        (self.first, self.last) = (at[self.first], at[self.last]);
        if let Some(s) = &mut self.stream {
            for a in &mut s.axes {
                a.kernels = (at[a.kernels.0], at[a.kernels.1]);
            }
            s.fill_after = at[s.fill_after];
        }
    }
}

/// What every entry of an index argument must satisfy before any kernel runs: lie in
/// `0..extent`, the smallest axis it selects; `source` and `axis` name that axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexBound {
    pub extent: usize,
    pub source: String,
    pub axis: usize,
}

impl Program {
    /// The bound of each index argument (`None` for one no gather reads).
    pub fn index_bounds(&self) -> Vec<Option<IndexBound>> {
        let mut out: Vec<Option<IndexBound>> = vec![None; self.indices.len()];
        let mut see = |e: &Expr| {
            let Expr::Gather(src, _, ind) = e else { return };
            let shape = &self.buf(*src).shape;
            for i in ind {
                let Some(k) = self.indices.iter().position(|b| *b == i.index) else { continue };
                // The axis whose row-major stride and extent the term has.
                let axis = (0..shape.len())
                    .find(|&p| shape[p] == i.extent && shape[p + 1..].iter().product::<usize>() as i64 == i.stride)
                    .unwrap_or(0);
                if out[k].as_ref().is_none_or(|b| i.extent < b.extent) {
                    out[k] = Some(IndexBound { extent: i.extent, source: self.buf(*src).name.clone(), axis });
                }
            }
        };
        fn walk(body: &[Stmt], f: &mut dyn FnMut(&Expr)) {
            for s in body {
                match s {
                    Stmt::For { body, .. } => walk(body, f),
                    Stmt::Let { value, .. } | Stmt::Update { value, .. } | Stmt::Store { value, .. } => value.visit(f),
                }
            }
        }
        for k in &self.kernels {
            if let Kernel::Loops(l) = k {
                walk(&l.body, &mut see);
            }
        }
        out
    }

    pub fn buf(&self, b: BufId) -> &Buffer {
        &self.bufs[b.index()]
    }

    /// Bytes of all memory slots together, plus one tile of each tile-group intermediate
    /// per thread: the peak memory of intermediates.
    pub fn temp_bytes(&self, threads: usize) -> usize {
        let row = |b: &BufId| if let BufKind::Tile { row } = self.buf(*b).kind { row } else { 0 };
        let tiles: usize = self
            .tiles
            .iter()
            .map(|g| {
                let rows: usize = g.local.iter().map(row).sum();
                rows * g.tile.min(g.extent) * threads.min(g.extent.div_ceil(g.tile.max(1))).max(1)
            })
            .sum();
        (self.slots.iter().sum::<usize>() + tiles) * self.dtype.size_of()
    }

    /// The tile group that starts at kernel `k`, if any.
    pub fn tile_group_at(&self, k: usize) -> Option<&TileGroup> {
        self.tiles.iter().find(|g| g.first == k)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kernel {
    Gemm(Gemm),
    Loops(LoopKernel),
}

impl Kernel {
    /// Every buffer the kernel reads or writes.
    pub fn buffers_used(&self) -> Vec<BufId> {
        match self {
            Kernel::Gemm(g) => vec![g.a, g.b, g.c],
            Kernel::Loops(l) => {
                let (r, w) = l.buffers();
                r.into_iter().chain(w).collect()
            }
        }
    }

    /// The plan steps this kernel computes.
    pub fn steps(&self) -> &[usize] {
        match self {
            Kernel::Gemm(g) => std::slice::from_ref(&g.step),
            Kernel::Loops(k) => &k.steps,
        }
    }
}

/// One loop around a GEMM; a loop that does not advance C (`stride_c == 0`) sums into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmLoop {
    pub extent: usize,
    pub stride_a: isize,
    pub stride_b: isize,
    pub stride_c: isize,
}

/// `C[m, n] (+)= alpha * Σ_k A[m, k] B[k, n]` for every combination of the outer loops.
/// Strides are in elements and may be zero (broadcast) or non-unit (a permuted view), so
/// no operand is ever copied into another layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    pub a: BufId,
    pub b: BufId,
    pub c: BufId,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Strides of A per m and per k, of B per k and per n, of C per m and per n.
    pub a_strides: [isize; 2],
    pub b_strides: [isize; 2],
    pub c_strides: [isize; 2],
    /// Outermost first.
    pub outer: Vec<GemmLoop>,
    pub alpha: f64,
    /// Add to C instead of overwriting it.
    pub accumulate: bool,
    /// The plan step, and the index names of each role for the printer.
    pub step: usize,
    pub roles: String,
}

impl Gemm {
    /// FLOPs of the call (a multiply-add counts two).
    pub fn flops(&self) -> f64 {
        let outer: f64 = self.outer.iter().map(|l| l.extent as f64).product();
        2.0 * outer * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// Printing information about a loop.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopInfo {
    pub name: String,
    pub extent: usize,
}

/// A loop nest of scalar code.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopKernel {
    pub name: String,
    pub steps: Vec<usize>,
    /// Indexed by `LoopId`.
    pub loops: Vec<LoopInfo>,
    /// Names of the scalar variables, indexed by `VarId`.
    pub vars: Vec<String>,
    pub body: Vec<Stmt>,
}

impl LoopKernel {
    /// The loop a CPU backend splits over threads: the outermost loop when it is the
    /// whole body and marked parallel.
    pub fn parallel_loop(&self) -> Option<(LoopId, usize)> {
        match self.body.as_slice() {
            [Stmt::For { id, extent, parallel: true, .. }] => Some((*id, *extent)),
            _ => None,
        }
    }

    /// Every buffer read and written, in first-use order.
    pub fn buffers(&self) -> (Vec<BufId>, Vec<BufId>) {
        let (mut reads, mut writes) = (Vec::new(), Vec::new());
        fn expr(e: &Expr, reads: &mut Vec<BufId>) {
            e.visit(&mut |x| {
                let mut push = |b: &BufId| {
                    if !reads.contains(b) {
                        reads.push(*b);
                    }
                };
                match x {
                    Expr::Load(b, _) => push(b),
                    Expr::Gather(b, _, ind) => {
                        ind.iter().for_each(|i| push(&i.index));
                        push(b);
                    }
                    _ => {}
                }
            });
        }
        fn walk(s: &[Stmt], reads: &mut Vec<BufId>, writes: &mut Vec<BufId>) {
            for st in s {
                match st {
                    Stmt::For { body, .. } => walk(body, reads, writes),
                    Stmt::Let { value, .. } | Stmt::Update { value, .. } => expr(value, reads),
                    Stmt::Store { buf, value, .. } => {
                        expr(value, reads);
                        if !writes.contains(buf) {
                            writes.push(*buf);
                        }
                    }
                }
            }
        }
        walk(&self.body, &mut reads, &mut writes);
        (reads, writes)
    }
}

/// An element offset `offset + Σ stride·loop`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Affine {
    pub offset: i64,
    /// At most one term per loop, no zero strides.
    pub terms: Vec<(LoopId, i64)>,
}

impl Affine {
    pub fn constant(offset: i64) -> Affine {
        Affine { offset, terms: Vec::new() }
    }

    /// Adds `stride·l`, merging with an existing term.
    pub fn add_term(&mut self, l: LoopId, stride: i64) {
        if stride == 0 {
            return;
        }
        if let Some(t) = self.terms.iter_mut().find(|t| t.0 == l) {
            t.1 += stride;
        } else {
            self.terms.push((l, stride));
        }
        self.terms.retain(|t| t.1 != 0);
    }

    /// The stride of loop `l` (0 when the offset does not depend on it).
    pub fn stride(&self, l: LoopId) -> i64 {
        self.terms.iter().find(|t| t.0 == l).map_or(0, |t| t.1)
    }
}

/// Kinds of accumulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Accum {
    Sum,
    Max,
    Min,
}

impl Accum {
    pub fn name(self) -> &'static str {
        match self {
            Accum::Sum => "+",
            Accum::Max => "max",
            Accum::Min => "min",
        }
    }

    /// The neutral element.
    pub fn identity(self) -> f64 {
        match self {
            Accum::Sum => 0.0,
            Accum::Max => f64::NEG_INFINITY,
            Accum::Min => f64::INFINITY,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `for id in 0..extent { body }`; a parallel loop's iterations are independent.
    For { id: LoopId, extent: usize, parallel: bool, body: Vec<Stmt> },
    /// Defines (or redefines) a scalar variable.
    Let { var: VarId, value: Expr },
    /// `var = var ⊕ value`: an accumulator update, which a backend may reassociate
    /// (vector lanes) when it sits in a loop the variable is defined outside of.
    Update { var: VarId, op: Accum, value: Expr },
    /// `buf[index] = value`.
    Store { buf: BufId, index: Affine, value: Expr },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Tanh,
    Sigmoid,
    Relu,
    Abs,
    Sin,
    Cos,
}

impl UnOp {
    pub fn name(self) -> &'static str {
        match self {
            UnOp::Neg => "neg",
            UnOp::Exp => "exp",
            UnOp::Log => "log",
            UnOp::Sqrt => "sqrt",
            UnOp::Rsqrt => "rsqrt",
            UnOp::Tanh => "tanh",
            UnOp::Sigmoid => "sigmoid",
            UnOp::Relu => "relu",
            UnOp::Abs => "abs",
            UnOp::Sin => "sin",
            UnOp::Cos => "cos",
        }
    }

    /// The reference semantics (std's functions, as the TIR oracle) in the precision
    /// of `T`.
    pub fn apply<T: num_traits::Float>(self, a: T) -> T {
        use crate::tir::Builtin as B;
        let f = match self {
            UnOp::Neg => return -a,
            UnOp::Exp => B::Exp,
            UnOp::Log => B::Log,
            UnOp::Sqrt => B::Sqrt,
            UnOp::Rsqrt => B::Rsqrt,
            UnOp::Tanh => B::Tanh,
            UnOp::Sigmoid => B::Sigmoid,
            UnOp::Relu => B::Relu,
            UnOp::Abs => B::Abs,
            UnOp::Sin => B::Sin,
            UnOp::Cos => B::Cos,
        };
        f.apply(a, T::zero())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
    /// L-Mul (`tir::lmul`) with the mantissa bits to emulate; 0 keeps them all.
    Lmul(u8),
}

impl BinOp {
    pub fn name(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Max => "max",
            BinOp::Min => "min",
            BinOp::Pow => "pow",
            BinOp::Lmul(_) => "lmul",
        }
    }

    pub fn is_infix(self) -> bool {
        matches!(self, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div)
    }
}

pub use crate::tir::CmpOp;

/// One data-dependent term of a gathered address: `stride · index[at]`, the integer
/// `index[at]` read from a `BufKind::Index` buffer at an affine address. The executor
/// has checked every entry of that buffer against the axis it selects, which is what
/// keeps the gathered address in bounds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Indirect {
    pub index: BufId,
    pub at: Affine,
    pub stride: i64,
    /// The extent of the axis it selects (entries are in `0..extent`).
    pub extent: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Const(f64),
    Load(BufId, Affine),
    /// A load at `base + Σ stride·index[at]` over its `Indirect` terms (a gather).
    Gather(BufId, Affine, Vec<Indirect>),
    Var(VarId),
    /// A loop counter as a number.
    Index(LoopId),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Select(Box<Pred>, Box<Expr>, Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Pred {
    Cmp(CmpOp, Expr, Expr),
    And(Vec<Pred>),
    Or(Vec<Pred>),
    Not(Box<Pred>),
}

impl Expr {
    pub fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary(op, Box::new(a), Box::new(b))
    }

    pub fn un(op: UnOp, a: Expr) -> Expr {
        Expr::Unary(op, Box::new(a))
    }

    /// Calls `f` on this expression and every subexpression (conditions included).
    pub fn visit(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Const(_) | Expr::Load(..) | Expr::Gather(..) | Expr::Var(_) | Expr::Index(_) => {}
            Expr::Unary(_, a) => a.visit(f),
            Expr::Binary(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Expr::Select(p, a, b) => {
                p.visit(f);
                a.visit(f);
                b.visit(f);
            }
        }
    }
}

impl Stmt {
    /// Whether any expression below reads through a gather.
    pub fn has_gather(&self) -> bool {
        let mut found = false;
        let mut look = |e: &Expr| {
            e.visit(&mut |x| found |= matches!(x, Expr::Gather(..)));
        };
        match self {
            Stmt::For { body, .. } => return body.iter().any(Stmt::has_gather),
            Stmt::Let { value, .. } | Stmt::Update { value, .. } | Stmt::Store { value, .. } => look(value),
        }
        found
    }
}

impl Pred {
    pub fn visit(&self, f: &mut dyn FnMut(&Expr)) {
        match self {
            Pred::Cmp(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Pred::And(ps) | Pred::Or(ps) => ps.iter().for_each(|p| p.visit(f)),
            Pred::Not(p) => p.visit(f),
        }
    }
}

/// Checks the entries of index argument `k` against its bound, one tight pass over the
/// array (a vectorisable fold); only when some entry is out of range does a second scan
/// find the first one, for a message naming the input, the position and the value.
pub fn check_index<I: Copy + Into<i64>>(p: &Program, bounds: &[Option<IndexBound>], k: usize, data: &[I]) -> Result<(), String> {
    let Some(Some(b)) = bounds.get(k) else { return Ok(()) };
    let extent = b.extent as u64;
    // A negative entry wraps to a huge unsigned value, so one compare covers both ends.
    let bad = data.chunks(1024).any(|c| c.iter().fold(false, |acc, &v| acc | ((v.into() as u64) >= extent)));
    if !bad {
        return Ok(());
    }
    let buf = p.indices.get(k).map(|&x| p.buf(x));
    let (name, shape) = buf.map_or(("?", &[][..]), |x| (x.name.as_str(), x.shape.as_slice()));
    let Some(flat) = data.iter().position(|&v| (v.into() as u64) >= extent) else { return Ok(()) };
    let mut at = vec![0usize; shape.len()];
    let mut rest = flat;
    for (d, &n) in shape.iter().enumerate().rev() {
        at[d] = rest % n.max(1);
        rest /= n.max(1);
    }
    Err(crate::tir::index_error(name, &at, data[flat].into(), b.extent, &b.source, b.axis))
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod stream_tests;
