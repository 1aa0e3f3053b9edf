//! The abstract syntax tree: owned nodes with byte spans, exactly what was written.
//!
//! Chains of `+ -` and `* /` are n-ary nodes rather than nested binary ones, so a long
//! chain is one node and walking the tree never recurses once per operator.

use crate::diag::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// One parsed `.tsr` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    pub uses: Vec<Use>,
    pub functions: Vec<FnDef>,
    /// `use` and `fn` items in source order, for printing.
    pub order: Vec<ItemRef>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemRef {
    Use(usize),
    Fn(usize),
}

/// `use std::attention`.
#[derive(Clone, Debug, PartialEq)]
pub struct Use {
    pub path: Vec<Ident>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FnDef {
    pub name: Ident,
    /// Dims declared in the header, `fn windowed[w1, w2](...)`, in written order; empty
    /// when there are no brackets.
    pub dims: Vec<Ident>,
    pub params: Vec<Param>,
    pub outputs: Vec<Param>,
    /// Whether the outputs were written in parentheses (kept for printing).
    pub outputs_parenthesized: bool,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// `A: f32[m, k]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub ty: TensorType,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorType {
    pub dtype: Ident,
    /// `None` for a bare `f32` (a scalar); `Some(vec![])` for `f32[]`.
    pub dims: Option<Vec<DimExpr>>,
    pub span: Span,
}

/// A product of dim names and literals: `q * s`, `3`, `n`.
#[derive(Clone, Debug, PartialEq)]
pub struct DimExpr {
    pub factors: Vec<DimFactor>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DimFactor {
    Name(Ident),
    Lit(u64, Span),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignOp {
    Assign,
    Max,
    Min,
}

/// `T[i, j] = e`, `M[i] max= e`, or `A, B = f(x)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub targets: Vec<Lhs>,
    pub op: AssignOp,
    pub op_span: Span,
    pub rhs: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Lhs {
    pub name: Ident,
    /// `None` when written without brackets.
    pub indices: Option<Vec<IndexItem>>,
    pub span: Span,
}

/// One position inside `[...]`: an index, a group `(i, k)`, or a gathered position
/// `I[e]` whose value is read from the integer index tensor `I`.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexItem {
    Single(Ident),
    Group(Vec<Ident>, Span),
    Gather { tensor: Ident, indices: Vec<Ident>, span: Span },
}

impl IndexItem {
    pub fn span(&self) -> Span {
        match self {
            IndexItem::Single(i) => i.span,
            IndexItem::Group(_, s) | IndexItem::Gather { span: s, .. } => *s,
        }
    }

    /// The indices written: a gathered position's are those of its index tensor.
    pub fn idents(&self) -> &[Ident] {
        match self {
            IndexItem::Single(i) => std::slice::from_ref(i),
            IndexItem::Group(v, _) | IndexItem::Gather { indices: v, .. } => v,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddOp {
    Add,
    Sub,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MulOp {
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKw {
    Sum,
    Max,
    Min,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A literal; `inf` is `f64::INFINITY`.
    Number(f64),
    /// `A` or `A[i, (j, k)]`. A bare name may also be an index, a dim or a scalar.
    Access { name: Ident, indices: Option<Vec<IndexItem>> },
    Neg(Box<Expr>),
    Add { first: Box<Expr>, rest: Vec<(AddOp, Expr)> },
    Mul { first: Box<Expr>, rest: Vec<(MulOp, Expr)> },
    /// A builtin (`exp(x)`) or a user function (`attention::softmax(Q, K, V)`). `dims`
    /// are the callee's header dims as written at the call, `windowed[32, w](...)`;
    /// empty when there are no brackets.
    Call { path: Vec<Ident>, dims: Vec<DimExpr>, args: Vec<Expr> },
    Select { cond: Box<Cond>, then: Box<Expr>, otherwise: Box<Expr> },
    Reduce { kw: ReduceKw, kw_span: Span, indices: Vec<Ident>, body: Box<Expr> },
}

/// Comparison operators are the same in the AST and the TIR.
pub use crate::tir::CmpOp;

#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    Cmp { op: CmpOp, lhs: Expr, rhs: Expr, span: Span },
    And(Vec<Cond>, Span),
    Or(Vec<Cond>, Span),
    Not(Box<Cond>, Span),
}

impl Cond {
    pub fn span(&self) -> Span {
        match self {
            Cond::Cmp { span, .. } | Cond::And(_, span) | Cond::Or(_, span) | Cond::Not(_, span) => *span,
        }
    }
}
