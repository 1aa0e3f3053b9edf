//! TIR → e-graph, literally: each statement becomes the e-class of its target tensor,
//! evaluated the way it is written. A product under a reduction is one contraction (its
//! order is the cost model's business); everything else (a quotient, a sum, a call) is
//! its own elementwise class, so a division written inside a sum is charged per element
//! of the summed domain until a rule moves it. Statements the pass does not understand
//! become opaque nodes over the tensors they read.

use super::lang::{self, TAnalysis, TNode, EG};
use super::AlgebraError;
use crate::tir::{Bindings, Expr, Function, ReduceOp, Size, Stmt, TensorId, TensorKind};
use egg::Id;

pub struct Built {
    pub egraph: EG,
    /// The class of each output, in `f.outputs` order.
    pub roots: Vec<Id>,
    /// The class of every tensor defined so far (inputs and statement targets).
    pub tensor_class: Vec<Option<Id>>,
    /// For each opaque statement (by index), the tensors it reads that statements
    /// define, in the order of the opaque node's children.
    pub opaque_reads: Vec<Option<Vec<TensorId>>>,
    /// Cost of each opaque statement (by index; zero for the others).
    pub opaque_cost: Vec<f64>,
}

fn internal(msg: impl Into<String>) -> AlgebraError {
    AlgebraError::Internal(msg.into())
}

/// True when the pass can rewrite the statement: a sum over sums, products, quotients
/// and calls of tensor reads and numbers.
pub fn understood(s: &Stmt) -> bool {
    fn ok(e: &Expr) -> bool {
        match e {
            Expr::Lit(_) | Expr::Size(_) | Expr::Access(..) => true,
            Expr::Index(_) | Expr::Select(..) | Expr::Gather(..) => false,
            Expr::Neg(a) => ok(a),
            Expr::Sub(a, b) | Expr::Div(a, b) => ok(a) && ok(b),
            Expr::Add(xs) | Expr::Mul(xs) | Expr::Call(_, xs) => xs.iter().all(ok),
            Expr::Reduce(op, _, body) => *op == ReduceOp::Sum && ok(body),
        }
    }
    s.op == ReduceOp::Sum && ok(&s.rhs)
}

/// Inputs and constants exist before any statement runs.
pub fn is_leaf(kind: TensorKind) -> bool {
    matches!(kind, TensorKind::Input | TensorKind::Const)
}

fn count_ops(e: &Expr) -> usize {
    match e {
        Expr::Lit(_) | Expr::Size(_) | Expr::Index(_) | Expr::Access(..) | Expr::Gather(..) => 0,
        Expr::Neg(a) | Expr::Reduce(_, _, a) => 1 + count_ops(a),
        Expr::Sub(a, b) | Expr::Div(a, b) => 1 + count_ops(a) + count_ops(b),
        Expr::Add(xs) | Expr::Mul(xs) | Expr::Call(_, xs) => xs.len() + xs.iter().map(count_ops).sum::<usize>(),
        Expr::Select(_, a, b) => 2 + count_ops(a) + count_ops(b),
    }
}

pub fn build(f: &Function, b: &Bindings) -> Result<Built, AlgebraError> {
    let analysis = TAnalysis {
        tensor_shapes: f.tensors.iter().map(|t| t.shape.clone()).collect(),
        opaque_targets: f.stmts.iter().map(|s| if understood(s) { None } else { Some(s.target.0) }).collect(),
        bindings: b.clone(),
        errors: Vec::new(),
        node_budget: usize::MAX,
    };
    let mut eg = EG::new(analysis);
    let mut tensor_class: Vec<Option<Id>> = vec![None; f.tensors.len()];
    // Inputs and compile-time constants are leaves, available before every statement.
    for t in f.inputs.iter().copied().chain(f.constants.iter().map(|c| c.tensor)) {
        let slot = tensor_class.get_mut(t.index()).ok_or_else(|| internal("input id out of range"))?;
        *slot = Some(eg.add(TNode::Input(t.0)));
    }
    let mut opaque_reads = vec![None; f.stmts.len()];
    let mut opaque_cost = vec![0.0; f.stmts.len()];
    for (k, s) in f.stmts.iter().enumerate() {
        let class = if understood(s) {
            let mut sb = StmtBuilder { eg: &mut eg, f, s, tensor_class: &tensor_class, b };
            sb.statement()?
        } else {
            let mut read = Vec::new();
            s.rhs.tensors(&mut read);
            let read: Vec<TensorId> =
                read.into_iter().filter(|t| f.tensors.get(t.index()).is_some_and(|d| !is_leaf(d.kind))).collect();
            let mut children = Vec::with_capacity(read.len());
            for t in &read {
                children.push(
                    tensor_class
                        .get(t.index())
                        .copied()
                        .flatten()
                        .ok_or_else(|| internal(format!("statement {k} reads a tensor before it is defined")))?,
                );
            }
            let domain: f64 = s.indices.iter().map(|v| eg.analysis.value(&v.range)).product();
            opaque_cost[k] = domain * (1 + count_ops(&s.rhs)) as f64;
            opaque_reads[k] = Some(read);
            eg.add(TNode::Opaque(k as u32, children))
        };
        let want = &f.tensor(s.target).shape;
        if &eg[class].data.shape != want {
            return Err(internal(format!(
                "statement {k} built a value of shape {:?} for a tensor of shape {want:?}",
                eg[class].data.shape
            )));
        }
        *tensor_class.get_mut(s.target.index()).ok_or_else(|| internal("target id out of range"))? = Some(class);
    }
    eg.rebuild();
    let mut roots = Vec::with_capacity(f.outputs.len());
    for o in &f.outputs {
        let c = tensor_class.get(o.index()).copied().flatten().ok_or_else(|| internal("an output is never defined"))?;
        roots.push(eg.find(c));
    }
    Ok(Built { egraph: eg, roots, tensor_class, opaque_reads, opaque_cost })
}

/// A class and the statement indices (labels) of its axes.
type Term = (Id, Vec<u32>);

struct StmtBuilder<'a> {
    eg: &'a mut EG,
    f: &'a Function,
    s: &'a Stmt,
    tensor_class: &'a [Option<Id>],
    b: &'a Bindings,
}

fn free(e: &Expr) -> Vec<u32> {
    let mut out = Vec::new();
    e.free_indices(&mut out);
    out.into_iter().map(|i| i.0).collect()
}

impl StmtBuilder<'_> {
    fn sizes(&self) -> Vec<Size> {
        self.s.indices.iter().map(|v| v.range.clone()).collect()
    }

    fn einsum(&mut self, out: &[u32], ops: &[Term], sum_over: &[u32]) -> Result<Id, AlgebraError> {
        let sizes = self.sizes();
        lang::einsum(self.eg, &sizes, out, ops, sum_over).map_err(internal)
    }

    fn statement(&mut self) -> Result<Id, AlgebraError> {
        let lhs: Vec<u32> = self.s.lhs.iter().flatten().map(|i| i.0).collect();
        let reduced: Vec<u32> = self.s.reduced.iter().map(|i| i.0).collect();
        let class = self.top(&self.s.rhs, &reduced, &lhs)?;
        if self.s.lhs.iter().any(|p| p.len() != 1) {
            let groups = self.s.lhs.iter().map(|p| p.len()).collect();
            return lang::merge(self.eg, class, groups).map_err(internal);
        }
        Ok(class)
    }

    /// `Σ_{sum_over} e` with output axes `out`.
    fn top(&mut self, e: &Expr, sum_over: &[u32], out: &[u32]) -> Result<Id, AlgebraError> {
        match e {
            Expr::Mul(_) | Expr::Neg(_) | Expr::Lit(_) | Expr::Size(_) => {
                let fs = self.factors(e)?;
                self.einsum(out, &fs, sum_over)
            }
            Expr::Div(a, d) => {
                let ops = vec![self.elem(a)?, self.recip(d)?];
                self.einsum(out, &ops, sum_over)
            }
            Expr::Reduce(ReduceOp::Sum, ids, body) => {
                let mut all = sum_over.to_vec();
                all.extend(ids.iter().map(|i| i.0));
                self.top(body, &all, out)
            }
            _ => {
                let x = self.elem(e)?;
                self.einsum(out, &[x], sum_over)
            }
        }
    }

    /// The factors of a product, flattening nested products, negations and numbers.
    fn factors(&mut self, e: &Expr) -> Result<Vec<Term>, AlgebraError> {
        match e {
            Expr::Mul(xs) => {
                let mut out = Vec::new();
                for x in xs {
                    out.extend(self.factors(x)?);
                }
                Ok(out)
            }
            Expr::Neg(a) => {
                let mut out = vec![(self.eg.add(TNode::num(-1.0)), Vec::new())];
                out.extend(self.factors(a)?);
                Ok(out)
            }
            _ => Ok(vec![self.elem(e)?]),
        }
    }

    fn recip(&mut self, d: &Expr) -> Result<Term, AlgebraError> {
        let (x, ls) = self.elem(d)?;
        Ok((self.eg.add(TNode::Recip([x])), ls))
    }

    /// Reads `x` (with labels `ls`) with the labels `to` (a superset): broadcast.
    fn widen(&mut self, x: Term, to: &[u32]) -> Result<Id, AlgebraError> {
        self.einsum(to, &[x], &[])
    }

    /// `e` elementwise, its axes being its free indices in order of first appearance.
    fn elem(&mut self, e: &Expr) -> Result<Term, AlgebraError> {
        let labels = free(e);
        let id = match e {
            Expr::Lit(v) => self.eg.add(TNode::num(*v)),
            Expr::Size(sz) => {
                let v = sz.eval(self.b).map_err(|_| AlgebraError::Overflow(self.f.name.clone()))?;
                self.eg.add(TNode::num(v as f64))
            }
            Expr::Access(t, pos) => return self.access(*t, pos),
            // Statements with gathers are opaque (`understood`), and the plan builder
            // runs no algebra pass on a function that gathers.
            Expr::Gather(..) => return Err(AlgebraError::Internal("a gather reached the e-graph".into())),
            Expr::Mul(_) | Expr::Neg(_) => {
                let fs = self.factors(e)?;
                self.einsum(&labels, &fs, &[])?
            }
            Expr::Div(a, d) => {
                let ops = vec![self.elem(a)?, self.recip(d)?];
                self.einsum(&labels, &ops, &[])?
            }
            Expr::Add(xs) => {
                let mut terms = Vec::with_capacity(xs.len());
                for x in xs {
                    let t = self.elem(x)?;
                    terms.push(self.widen(t, &labels)?);
                }
                lang::add(self.eg, &terms).map_err(internal)?
            }
            Expr::Sub(a, d) => {
                let ta = self.elem(a)?;
                let ta = self.widen(ta, &labels)?;
                let minus = (self.eg.add(TNode::num(-1.0)), Vec::new());
                let td = self.elem(d)?;
                let neg = self.einsum(&labels, &[minus, td], &[])?;
                lang::add(self.eg, &[ta, neg]).map_err(internal)?
            }
            Expr::Call(fun, args) => {
                let mut ids = Vec::with_capacity(args.len());
                for a in args {
                    let t = self.elem(a)?;
                    ids.push(self.widen(t, &labels)?);
                }
                self.eg.add(TNode::Call(TNode::builtin(*fun), ids))
            }
            Expr::Reduce(ReduceOp::Sum, ids, body) => {
                let ids: Vec<u32> = ids.iter().map(|i| i.0).collect();
                self.top(body, &ids, &labels)?
            }
            Expr::Reduce(..) | Expr::Select(..) | Expr::Index(_) => {
                return Err(internal("an opaque expression reached the builder"));
            }
        };
        Ok((id, labels))
    }

    /// A tensor read: grouped positions split the tensor's axes, a repeated index reads
    /// a diagonal.
    fn access(&mut self, t: TensorId, pos: &[Vec<crate::tir::IndexId>]) -> Result<Term, AlgebraError> {
        let base = self
            .tensor_class
            .get(t.index())
            .copied()
            .flatten()
            .ok_or_else(|| internal(format!("{} is read before it is defined", self.f.tensor(t).name)))?;
        let flat: Vec<u32> = pos.iter().flatten().map(|i| i.0).collect();
        let sizes = self.sizes();
        let mut class = base;
        if pos.iter().any(|p| p.len() != 1) {
            let mut factors = Vec::with_capacity(pos.len());
            for p in pos {
                let fs: Option<Vec<Size>> = p.iter().map(|i| sizes.get(i.index()).cloned()).collect();
                factors.push(fs.ok_or_else(|| internal("index id out of range"))?);
            }
            class = lang::split(self.eg, base, factors).map_err(internal)?;
        }
        let mut labels: Vec<u32> = Vec::new();
        for &l in &flat {
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        if labels != flat {
            class = self.einsum(&labels, &[(class, flat)], &[])?;
        }
        Ok((class, labels))
    }
}
