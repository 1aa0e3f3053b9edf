//! The typed program (TIR): names resolved, index ranges inferred, reductions explicit,
//! calls inlined. Sizes are symbolic ([`Size`]) until bound to concrete dims
//! ([`Bindings`]); the printer is in `print.rs`, the verifier in `verify.rs`.

mod print;
mod bind;
pub mod lmul;
mod verify;

pub use bind::*;

pub use print::fmt_number;
pub use verify::verify;

use crate::diag::Span;
use std::fmt;
use tessera_runtime::DType;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);
        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

id_type!(
    /// A dim (size name) of a function: `n` in `A: f32[n, d]`.
    DimId
);
id_type!(
    /// A tensor of a function: input, output or intermediate.
    TensorId
);
id_type!(
    /// An index variable, local to one statement.
    IndexId
);

/// A symbolic size: `coeff * product(syms)`, with `syms` sorted (a multiset).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Size {
    pub coeff: u64,
    pub syms: Vec<DimId>,
}

impl Size {
    pub fn lit(n: u64) -> Size {
        Size { coeff: n, syms: Vec::new() }
    }

    pub fn dim(d: DimId) -> Size {
        Size { coeff: 1, syms: vec![d] }
    }

    pub fn one() -> Size {
        Size::lit(1)
    }

    /// The product, or `None` if the constant part overflows u64.
    pub fn mul(&self, other: &Size) -> Option<Size> {
        let mut syms = self.syms.clone();
        syms.extend_from_slice(&other.syms);
        syms.sort();
        Some(Size { coeff: self.coeff.checked_mul(other.coeff)?, syms })
    }

    /// `self / other` if it divides exactly as a symbolic product.
    pub fn div(&self, other: &Size) -> Option<Size> {
        if other.coeff == 0 || !self.coeff.is_multiple_of(other.coeff) {
            return None;
        }
        let mut syms = self.syms.clone();
        for s in &other.syms {
            let pos = syms.iter().position(|x| x == s)?;
            syms.remove(pos);
        }
        Some(Size { coeff: self.coeff / other.coeff, syms })
    }

    /// Replaces each dim by a size (used when inlining a callee into a caller).
    pub fn substitute(&self, map: &dyn Fn(DimId) -> Size) -> Option<Size> {
        let mut out = Size::lit(self.coeff);
        for &s in &self.syms {
            out = out.mul(&map(s))?;
        }
        Some(out)
    }

    /// The concrete value under `b`; errors name the unbound dim or report overflow.
    pub fn eval(&self, b: &Bindings) -> Result<u64, SizeError> {
        let mut v = self.coeff;
        for &s in &self.syms {
            let x = b.get(s).ok_or(SizeError::Unbound(s))?;
            v = v.checked_mul(x).ok_or(SizeError::Overflow)?;
        }
        Ok(v)
    }

    pub fn is_const(&self) -> bool {
        self.syms.is_empty()
    }

    /// Writes the size with dim names, e.g. `2*m*n` or `3`.
    pub fn display<'a>(&'a self, dims: &'a [Dim]) -> SizeDisplay<'a> {
        SizeDisplay { size: self, dims }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeError {
    Unbound(DimId),
    Overflow,
}

pub struct SizeDisplay<'a> {
    size: &'a Size,
    dims: &'a [Dim],
}

impl fmt::Display for SizeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.size.coeff != 1 || self.size.syms.is_empty() {
            parts.push(self.size.coeff.to_string());
        }
        for s in &self.size.syms {
            parts.push(self.dims.get(s.index()).map_or_else(|| format!("?{}", s.0), |d| d.name.clone()));
        }
        f.write_str(&parts.join("*"))
    }
}

/// Concrete values of a function's dims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bindings {
    values: Vec<Option<u64>>,
}

impl Bindings {
    pub fn new(num_dims: usize) -> Bindings {
        Bindings { values: vec![None; num_dims] }
    }

    pub fn get(&self, d: DimId) -> Option<u64> {
        self.values.get(d.index()).copied().flatten()
    }

    pub fn set(&mut self, d: DimId, v: u64) {
        if d.index() >= self.values.len() {
            self.values.resize(d.index() + 1, None);
        }
        self.values[d.index()] = Some(v);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// A size name of the function's signature.
#[derive(Clone, Debug, PartialEq)]
pub struct Dim {
    pub name: String,
    /// Where it first appears in the signature.
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    Input,
    Output,
    Temp,
    /// A compile-time constant (e.g. `cg(1, 1, 2)`); its values are in `Function::constants`.
    Const,
    /// An integer index input (`I: i64[e]`), read only in gathered positions.
    Index(IntType),
}

/// The element type of an index input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntType {
    I32,
    I64,
}

impl IntType {
    pub fn name(self) -> &'static str {
        match self {
            IntType::I32 => "i32",
            IntType::I64 => "i64",
        }
    }

    pub fn from_name(s: &str) -> Option<IntType> {
        match s {
            "i32" => Some(IntType::I32),
            "i64" => Some(IntType::I64),
            _ => None,
        }
    }
}

/// The message of an index outside its range, the same from every executor: names
/// the index input, the position in it, the value and the range allowed.
pub fn index_error(input: &str, at: &[usize], value: i64, size: usize, source: &str, axis: usize) -> String {
    let at: Vec<String> = at.iter().map(|x| x.to_string()).collect();
    format!(
        "index input `{input}` at [{}] is {value}, outside 0..{size} (axis {axis} of `{source}` has size {size})",
        at.join(", ")
    )
}

/// One position of a gather's source: plain indices, or the value of an index tensor
/// read at plain indices (`I[e]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GatherPos {
    Direct(Position),
    Indirect(TensorId, Vec<IndexId>),
}

/// The values of a constant tensor, row-major, with how it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    pub tensor: TensorId,
    /// Its source form, e.g. `cg(1, 1, 2)`.
    pub label: String,
    pub values: std::sync::Arc<Vec<f64>>,
}

impl Constant {
    /// Entries that are not exactly zero.
    pub fn nonzeros(&self) -> usize {
        self.values.iter().filter(|v| **v != 0.0).count()
    }

    /// Whether a contraction with this constant runs unrolled by its nonzeros
    /// (`loops::sparse`), so that its work is the nonzeros': when it is mostly zeros
    /// (every Clebsch-Gordan tensor) or tiny, and not too large to unroll. A mostly dense
    /// constant (a spherical-harmonics grid) runs faster as vector loops and GEMMs.
    pub fn unrolled(&self) -> bool {
        let (nonzeros, len) = (self.nonzeros(), self.values.len());
        (2 * nonzeros <= len || len <= Self::MAX_UNROLLED_DENSE) && nonzeros <= Self::MAX_UNROLLED_NONZEROS
    }

    /// Constants with more nonzeros than this are not unrolled: the code would be larger
    /// than the work it saves (every Clebsch-Gordan tensor up to the largest supported
    /// degree has fewer).
    pub const MAX_UNROLLED_NONZEROS: usize = 4096;

    /// A constant with more nonzeros than zeros is unrolled only when it has at most
    /// this many entries (then unrolling saves its loads and loops).
    pub const MAX_UNROLLED_DENSE: usize = 16;
}

/// A tensor of a function with its symbolic shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDecl {
    pub name: String,
    pub kind: TensorKind,
    pub shape: Vec<Size>,
    /// Each position's size as the factors it was written or built with: `[q, s]` for
    /// `f32[q * s]` or for a `(j, l)` group on the left. Used to infer the ranges of a
    /// grouped index whose members appear nowhere else.
    pub factors: Vec<Vec<Size>>,
    /// Where it is declared (parameter) or defined (statement target).
    pub span: Span,
}

/// The reduction a statement (or an inline `sum[..]`/`max[..]`) applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }
}

/// An index variable of a statement with its inferred range.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexVar {
    pub name: String,
    pub range: Size,
}

/// One position of an access or a left-hand side: a single index, or a group `(i, k)`
/// that flattens its members row-major.
pub type Position = Vec<IndexId>;

/// `target[lhs] op= rhs`, reducing `reduced` with `op`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub target: TensorId,
    pub lhs: Vec<Position>,
    pub op: ReduceOp,
    /// Indices free in `rhs` but not on the left, in order of first appearance.
    pub reduced: Vec<IndexId>,
    /// Every index variable of the statement, inline-reduction ones included.
    pub indices: Vec<IndexVar>,
    pub rhs: Expr,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
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
    Pow,
    Max,
    Min,
    /// L-Mul (see `lmul.rs`) with the mantissa bits to emulate; 0 keeps them all.
    Lmul(u8),
}

impl Builtin {
    /// Every builtin by name; `Lmul` stands for all its widths as `Lmul(0)`.
    pub const ALL: [Builtin; 14] = [
        Builtin::Exp,
        Builtin::Log,
        Builtin::Sqrt,
        Builtin::Rsqrt,
        Builtin::Tanh,
        Builtin::Sigmoid,
        Builtin::Relu,
        Builtin::Abs,
        Builtin::Sin,
        Builtin::Cos,
        Builtin::Pow,
        Builtin::Max,
        Builtin::Min,
        Builtin::Lmul(0),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Exp => "exp",
            Builtin::Log => "log",
            Builtin::Sqrt => "sqrt",
            Builtin::Rsqrt => "rsqrt",
            Builtin::Tanh => "tanh",
            Builtin::Sigmoid => "sigmoid",
            Builtin::Relu => "relu",
            Builtin::Abs => "abs",
            Builtin::Sin => "sin",
            Builtin::Cos => "cos",
            Builtin::Pow => "pow",
            Builtin::Max => "max",
            Builtin::Min => "min",
            Builtin::Lmul(_) => "lmul",
        }
    }

    pub fn from_name(s: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == s)
    }

    pub fn arity(self) -> usize {
        match self {
            Builtin::Pow | Builtin::Max | Builtin::Min | Builtin::Lmul(_) => 2,
            _ => 1,
        }
    }

    /// Applies the function to scalars (the reference semantics every backend matches),
    /// in the precision of `T`.
    pub fn apply<T: num_traits::Float>(self, a: T, b: T) -> T {
        match self {
            Builtin::Exp => a.exp(),
            Builtin::Log => a.ln(),
            Builtin::Sqrt => a.sqrt(),
            Builtin::Rsqrt => T::one() / a.sqrt(),
            Builtin::Tanh => a.tanh(),
            Builtin::Sigmoid => T::one() / (T::one() + (-a).exp()),
            Builtin::Relu => {
                if a > T::zero() {
                    a
                } else {
                    T::zero()
                }
            }
            Builtin::Abs => a.abs(),
            Builtin::Sin => a.sin(),
            Builtin::Cos => a.cos(),
            Builtin::Pow => a.powf(b),
            Builtin::Max => nan_max(a, b),
            Builtin::Min => nan_min(a, b),
            Builtin::Lmul(m) => lmul::lmul(a, b, (m > 0).then_some(u32::from(m))),
        }
    }

    /// A small code for the builtin (its place in `ALL`, and past it the widths of
    /// `Lmul`), used where builtins are stored as bytes.
    pub fn code(self) -> u8 {
        match self {
            Builtin::Lmul(m) => Builtin::ALL.len() as u8 - 1 + m,
            b => Builtin::ALL.iter().position(|x| *x == b).unwrap_or(0) as u8,
        }
    }

    pub fn from_code(code: u8) -> Option<Builtin> {
        let last = Builtin::ALL.len() as u8 - 1;
        if code >= last {
            let m = code - last;
            (u32::from(m) <= lmul::max_bits(true)).then_some(Builtin::Lmul(m))
        } else {
            Builtin::ALL.get(code as usize).copied()
        }
    }
}

/// `max` as numpy's `maximum` (and the native code) computes it: a NaN operand gives NaN.
pub fn nan_max<T: num_traits::Float>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        T::nan()
    } else {
        a.max(b)
    }
}

/// `min` as numpy's `minimum` computes it: a NaN operand gives NaN.
pub fn nan_min<T: num_traits::Float>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        T::nan()
    } else {
        a.min(b)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }

    pub fn apply(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
}

/// A right-hand side. Products and sums are n-ary so long chains stay shallow.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Lit(f64),
    /// A dim used as a number (`sqrt(d)`).
    Size(Size),
    /// An index used as a number (its position, 0-based).
    Index(IndexId),
    Access(TensorId, Vec<Position>),
    Neg(Box<Expr>),
    Add(Vec<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Mul(Vec<Expr>),
    Div(Box<Expr>, Box<Expr>),
    Call(Builtin, Vec<Expr>),
    Select(Box<Cond>, Box<Expr>, Box<Expr>),
    /// Inline `sum[j](e)`, `max[j](e)`, `min[j](e)`.
    Reduce(ReduceOp, Vec<IndexId>, Box<Expr>),
    /// A read of a tensor at positions some of which come from index tensors
    /// (`U[I[e], a]`). The checker gives each its own statement (`%g[e, a] = U[I[e], a]`,
    /// the whole right side), so every other statement reads plain accesses only.
    Gather(TensorId, Vec<GatherPos>),
}

impl GatherPos {
    /// The position with its index tensor renamed by `m`.
    pub fn map_tensor(&self, m: &mut dyn FnMut(TensorId) -> TensorId) -> GatherPos {
        match self {
            GatherPos::Direct(p) => GatherPos::Direct(p.clone()),
            GatherPos::Indirect(t, ids) => GatherPos::Indirect(m(*t), ids.clone()),
        }
    }

    pub fn ids_mut(&mut self) -> &mut Vec<IndexId> {
        match self {
            GatherPos::Direct(p) => p,
            GatherPos::Indirect(_, ids) => ids,
        }
    }

    /// The plain indices of the position, in order.
    pub fn ids(&self) -> &[IndexId] {
        match self {
            GatherPos::Direct(p) => p,
            GatherPos::Indirect(_, ids) => ids,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    Cmp(CmpOp, Expr, Expr),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
}

impl Cond {
    /// [`Expr::map_nodes`] over both sides of every comparison.
    pub fn map_nodes(self, f: &mut dyn FnMut(Expr) -> Expr) -> Cond {
        match self {
            Cond::Cmp(op, a, b) => {
                let a = a.map_nodes(f);
                Cond::Cmp(op, a, b.map_nodes(f))
            }
            Cond::And(cs) => Cond::And(cs.into_iter().map(|c| c.map_nodes(f)).collect()),
            Cond::Or(cs) => Cond::Or(cs.into_iter().map(|c| c.map_nodes(f)).collect()),
            Cond::Not(c) => Cond::Not(Box::new(c.map_nodes(f))),
        }
    }
}

impl Expr {
    /// The value of an expression without tensors or indices (literals, sizes under
    /// `b`, and operations on them), as the reference evaluator computes it.
    pub fn const_value(&self, b: &Bindings) -> Option<f64> {
        match self {
            Expr::Lit(v) => Some(*v),
            Expr::Size(s) => s.eval(b).ok().map(|v| v as f64),
            Expr::Neg(a) => a.const_value(b).map(|v| -v),
            Expr::Mul(xs) => xs.iter().map(|x| x.const_value(b)).product(),
            Expr::Add(xs) => xs.iter().map(|x| x.const_value(b)).sum(),
            Expr::Sub(a, c) => Some(a.const_value(b)? - c.const_value(b)?),
            Expr::Div(a, c) => Some(a.const_value(b)? / c.const_value(b)?),
            // L-Mul depends on the dtype, which a constant here does not know.
            Expr::Call(Builtin::Lmul(_), _) => None,
            Expr::Call(f, xs) if xs.len() == f.arity() => {
                let a = xs[0].const_value(b)?;
                let c = if xs.len() > 1 { xs[1].const_value(b)? } else { 0.0 };
                Some(f.apply(a, c))
            }
            _ => None,
        }
    }

    /// Rebuilds the expression bottom-up: every node, after its children (those inside
    /// `select` conditions included), is replaced by `f` of it. The one traversal that
    /// renaming passes share; `f` passes through the nodes it does not rewrite.
    pub fn map_nodes(self, f: &mut dyn FnMut(Expr) -> Expr) -> Expr {
        let node = match self {
            leaf @ (Expr::Lit(_) | Expr::Size(_) | Expr::Index(_) | Expr::Access(..) | Expr::Gather(..)) => leaf,
            Expr::Neg(a) => Expr::Neg(Box::new(a.map_nodes(f))),
            Expr::Add(xs) => Expr::Add(xs.into_iter().map(|x| x.map_nodes(f)).collect()),
            Expr::Mul(xs) => Expr::Mul(xs.into_iter().map(|x| x.map_nodes(f)).collect()),
            Expr::Call(g, xs) => Expr::Call(g, xs.into_iter().map(|x| x.map_nodes(f)).collect()),
            Expr::Sub(a, b) => {
                let a = a.map_nodes(f);
                Expr::Sub(Box::new(a), Box::new(b.map_nodes(f)))
            }
            Expr::Div(a, b) => {
                let a = a.map_nodes(f);
                Expr::Div(Box::new(a), Box::new(b.map_nodes(f)))
            }
            Expr::Select(c, a, b) => {
                let c = c.map_nodes(f);
                let a = a.map_nodes(f);
                Expr::Select(Box::new(c), Box::new(a), Box::new(b.map_nodes(f)))
            }
            Expr::Reduce(op, ids, body) => Expr::Reduce(op, ids, Box::new(body.map_nodes(f))),
        };
        f(node)
    }

    /// Calls `f` on every index that occurs free (not bound by an inline reduction).
    pub fn free_indices(&self, out: &mut Vec<IndexId>) {
        fn push(out: &mut Vec<IndexId>, i: IndexId) {
            if !out.contains(&i) {
                out.push(i);
            }
        }
        match self {
            Expr::Lit(_) | Expr::Size(_) => {}
            Expr::Index(i) => push(out, *i),
            Expr::Access(_, pos) => pos.iter().flatten().for_each(|&i| push(out, i)),
            Expr::Gather(_, pos) => pos.iter().flat_map(|p| p.ids()).for_each(|&i| push(out, i)),
            Expr::Neg(a) => a.free_indices(out),
            Expr::Add(xs) | Expr::Mul(xs) | Expr::Call(_, xs) => {
                xs.iter().for_each(|x| x.free_indices(out))
            }
            Expr::Sub(a, b) | Expr::Div(a, b) => {
                a.free_indices(out);
                b.free_indices(out);
            }
            Expr::Select(c, a, b) => {
                c.free_indices(out);
                a.free_indices(out);
                b.free_indices(out);
            }
            Expr::Reduce(_, bound, body) => {
                let mut inner = Vec::new();
                body.free_indices(&mut inner);
                inner.into_iter().filter(|i| !bound.contains(i)).for_each(|i| push(out, i));
            }
        }
    }

    /// Calls `f` on every tensor read with its positions (conditions of `select` included).
    pub fn for_each_access(&self, f: &mut dyn FnMut(TensorId, &[Position])) {
        match self {
            Expr::Lit(_) | Expr::Size(_) | Expr::Index(_) => {}
            Expr::Access(t, pos) => f(*t, pos),
            // The source is reported without positions (its gathered ones have no
            // index), each index tensor with its own.
            Expr::Gather(t, pos) => {
                f(*t, &[]);
                for p in pos {
                    if let GatherPos::Indirect(i, ids) = p {
                        let single: Vec<Position> = ids.iter().map(|&x| vec![x]).collect();
                        f(*i, &single);
                    }
                }
            }
            Expr::Neg(a) | Expr::Reduce(_, _, a) => a.for_each_access(f),
            Expr::Add(xs) | Expr::Mul(xs) | Expr::Call(_, xs) => xs.iter().for_each(|x| x.for_each_access(f)),
            Expr::Sub(a, b) | Expr::Div(a, b) => {
                a.for_each_access(f);
                b.for_each_access(f);
            }
            Expr::Select(c, a, b) => {
                c.for_each_access(f);
                a.for_each_access(f);
                b.for_each_access(f);
            }
        }
    }

    /// Every tensor the expression reads.
    pub fn tensors(&self, out: &mut Vec<TensorId>) {
        match self {
            Expr::Lit(_) | Expr::Size(_) | Expr::Index(_) => {}
            Expr::Access(t, _) => {
                if !out.contains(t) {
                    out.push(*t)
                }
            }
            Expr::Gather(t, pos) => {
                for u in std::iter::once(*t).chain(pos.iter().filter_map(|p| match p {
                    GatherPos::Indirect(i, _) => Some(*i),
                    GatherPos::Direct(_) => None,
                })) {
                    if !out.contains(&u) {
                        out.push(u)
                    }
                }
            }
            Expr::Neg(a) | Expr::Reduce(_, _, a) => a.tensors(out),
            Expr::Add(xs) | Expr::Mul(xs) | Expr::Call(_, xs) => xs.iter().for_each(|x| x.tensors(out)),
            Expr::Sub(a, b) | Expr::Div(a, b) => {
                a.tensors(out);
                b.tensors(out);
            }
            Expr::Select(c, a, b) => {
                c.tensors(out);
                a.tensors(out);
                b.tensors(out);
            }
        }
    }
}

impl Cond {
    /// Calls `f` on every tensor read inside the condition.
    pub fn for_each_access(&self, f: &mut dyn FnMut(TensorId, &[Position])) {
        match self {
            Cond::Cmp(_, a, b) => {
                a.for_each_access(f);
                b.for_each_access(f);
            }
            Cond::And(cs) | Cond::Or(cs) => cs.iter().for_each(|c| c.for_each_access(f)),
            Cond::Not(c) => c.for_each_access(f),
        }
    }

    pub fn free_indices(&self, out: &mut Vec<IndexId>) {
        match self {
            Cond::Cmp(_, a, b) => {
                a.free_indices(out);
                b.free_indices(out);
            }
            Cond::And(cs) | Cond::Or(cs) => cs.iter().for_each(|c| c.free_indices(out)),
            Cond::Not(c) => c.free_indices(out),
        }
    }

    pub fn tensors(&self, out: &mut Vec<TensorId>) {
        match self {
            Cond::Cmp(_, a, b) => {
                a.tensors(out);
                b.tensors(out);
            }
            Cond::And(cs) | Cond::Or(cs) => cs.iter().for_each(|c| c.tensors(out)),
            Cond::Not(c) => c.tensors(out),
        }
    }
}

/// One checked function with every call inlined.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    pub dtype: DType,
    pub dims: Vec<Dim>,
    pub tensors: Vec<TensorDecl>,
    pub inputs: Vec<TensorId>,
    /// Integer index inputs (kind `Index`), in signature order; arguments of a call come
    /// separately from `inputs` (see `docs/gather.md`).
    pub indices: Vec<TensorId>,
    pub outputs: Vec<TensorId>,
    /// Compile-time constant tensors (kind `Const`), defined before every statement.
    pub constants: Vec<Constant>,
    /// In evaluation order; each defines its target once.
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

impl Function {
    /// A copy with no statements (its declarations, dims and constants only).
    pub fn without_stmts(&self) -> Function {
        Function {
            name: self.name.clone(),
            dtype: self.dtype,
            dims: self.dims.clone(),
            tensors: self.tensors.clone(),
            inputs: self.inputs.clone(),
            indices: self.indices.clone(),
            outputs: self.outputs.clone(),
            constants: self.constants.clone(),
            stmts: Vec::new(),
            span: self.span,
        }
    }

    /// The arguments of a call: the value inputs, then the index inputs.
    pub fn args(&self) -> impl Iterator<Item = TensorId> + '_ {
        self.inputs.iter().chain(&self.indices).copied()
    }

    /// For each index input (in `indices` order), the size of the smallest axis it
    /// selects under `b`: its entries must lie below it. `None` for one no gather reads.
    pub fn index_extents(&self, b: &Bindings) -> Vec<Option<u64>> {
        let mut out = vec![None; self.indices.len()];
        for s in &self.stmts {
            let Expr::Gather(src, pos) = &s.rhs else { continue };
            for (axis, p) in pos.iter().enumerate() {
                let GatherPos::Indirect(i, _) = p else { continue };
                let (Some(k), Some(size)) = (self.indices.iter().position(|x| x == i), self.tensor(*src).shape.get(axis)) else { continue };
                if let Ok(v) = size.eval(b) {
                    out[k] = Some(out[k].map_or(v, |o: u64| o.min(v)));
                }
            }
        }
        out
    }

    /// Whether any statement gathers through an index tensor.
    pub fn has_gathers(&self) -> bool {
        !self.indices.is_empty()
    }

    pub fn tensor(&self, t: TensorId) -> &TensorDecl {
        &self.tensors[t.index()]
    }

    pub fn dim_by_name(&self, name: &str) -> Option<DimId> {
        self.dims.iter().position(|d| d.name == name).map(|i| DimId(i as u32))
    }

    /// The constant defining `t`, if `t` is a constant tensor.
    pub fn constant(&self, t: TensorId) -> Option<&Constant> {
        self.constants.iter().find(|c| c.tensor == t)
    }

    pub fn tensor_by_name(&self, name: &str) -> Option<TensorId> {
        self.tensors.iter().position(|t| t.name == name).map(|i| TensorId(i as u32))
    }

    /// Concrete shape of a tensor under `b`.
    pub fn shape(&self, t: TensorId, b: &Bindings) -> Result<Vec<usize>, SizeError> {
        self.tensor(t)
            .shape
            .iter()
            .map(|s| s.eval(b).and_then(|v| usize::try_from(v).map_err(|_| SizeError::Overflow)))
            .collect()
    }
}
