//! Evaluating one statement's right-hand side into a labelled tensor.
//!
//! Sums are pushed into their bodies: a sum of a product contracts the factors
//! pairwise, left to right, summing each index out as soon as no later factor uses it;
//! a sum of a sum, difference, negation or quotient by a factor free of the summed
//! indices distributes. Max and min evaluate their body in full, then reduce.

use super::labelled::{contract, internal, map1, reduce, select, zip2, Ctx, Lab};
use super::{EvalError, Scalar};
use crate::tir::{Bindings, Builtin, Cond, Expr, Function, GatherPos, IndexId, Position, ReduceOp, TensorId};
use ndarray::{Array1, ArrayD, ArrayView, CowArray, IxDyn, ShapeBuilder};

pub(crate) struct StmtEval<'s, 'a, T> {
    pub f: &'s Function,
    pub b: &'s Bindings,
    /// Every tensor defined so far, in standard layout.
    pub store: &'s [Option<CowArray<'a, T, IxDyn>>],
    /// The index inputs, by tensor id.
    pub indices: &'s [Option<CowArray<'a, i64, IxDyn>>],
    pub ctx: Ctx<'s>,
}

fn free(e: &Expr) -> Vec<IndexId> {
    let mut out = Vec::new();
    e.free_indices(&mut out);
    out
}

/// The factors of a product with nested products flattened.
fn factors<'e>(xs: &'e [Expr], out: &mut Vec<&'e Expr>) {
    for x in xs {
        match x {
            Expr::Mul(inner) => factors(inner, out),
            _ => out.push(x),
        }
    }
}

impl<'s, T: Scalar> StmtEval<'s, '_, T> {
    /// `op` over `ids` of `e`.
    pub fn reduce(&self, op: ReduceOp, e: &Expr, ids: &[IndexId]) -> Result<Lab<'s, T>, EvalError> {
        match op {
            ReduceOp::Sum => self.sum(e, ids),
            ReduceOp::Max | ReduceOp::Min => {
                let v = self.expr(e)?;
                reduce(&self.ctx, v, ids, op)
            }
        }
    }

    /// The sum over `ids` of `e`, without building `e` in full where the structure
    /// allows.
    fn sum(&self, e: &Expr, ids: &[IndexId]) -> Result<Lab<'s, T>, EvalError> {
        if ids.is_empty() {
            return self.expr(e);
        }
        let ctx = &self.ctx;
        let disjoint = |xs: &[IndexId]| xs.iter().all(|i| !ids.contains(i));
        match e {
            Expr::Mul(xs) => {
                let mut fs = Vec::new();
                factors(xs, &mut fs);
                self.chain(&fs, ids)
            }
            Expr::Div(a, b) if disjoint(&free(b)) => {
                let (a, b) = (self.sum(a, ids)?, self.expr(b)?);
                zip2(ctx, &a, &b, |&x, &y| x / y)
            }
            Expr::Neg(a) => map1(ctx, &self.sum(a, ids)?, |&x| -x),
            Expr::Add(xs) => {
                let mut it = xs.iter();
                let first = it.next().ok_or_else(|| internal("empty sum chain"))?;
                let mut acc = self.sum(first, ids)?;
                for x in it {
                    acc = zip2(ctx, &acc, &self.sum(x, ids)?, |&x, &y| x + y)?;
                }
                Ok(acc)
            }
            Expr::Sub(a, b) => zip2(ctx, &self.sum(a, ids)?, &self.sum(b, ids)?, |&x, &y| x - y),
            Expr::Reduce(ReduceOp::Sum, inner, body) if disjoint(inner) => {
                let mut all = ids.to_vec();
                all.extend_from_slice(inner);
                self.sum(body, &all)
            }
            _ => {
                let v = self.expr(e)?;
                reduce(ctx, v, ids, ReduceOp::Sum)
            }
        }
    }

    /// The sum over `ids` of a product, contracted pairwise left to right.
    fn chain(&self, fs: &[&Expr], ids: &[IndexId]) -> Result<Lab<'s, T>, EvalError> {
        let ctx = &self.ctx;
        let frees: Vec<Vec<IndexId>> = fs.iter().map(|e| free(e)).collect();
        // later[k]: indices used by factors after k.
        let mut later: Vec<Vec<IndexId>> = vec![Vec::new(); fs.len()];
        for k in (0..fs.len().saturating_sub(1)).rev() {
            later[k] = super::labelled::union(&later[k + 1], &frees[k + 1]);
        }
        let done = |labels: &[IndexId], k: usize| -> Vec<IndexId> {
            ids.iter().copied().filter(|i| labels.contains(i) && !later[k].contains(i)).collect()
        };
        let (first, rest) = fs.split_first().ok_or_else(|| internal("empty product chain"))?;
        let acc = self.expr(first)?;
        let early = done(&acc.labels, 0);
        let mut acc = reduce(ctx, acc, &early, ReduceOp::Sum)?;
        for (k, e) in rest.iter().enumerate() {
            let x = self.expr(e)?;
            let both = super::labelled::union(&acc.labels, &x.labels);
            let here = done(&both, k + 1);
            acc = contract(ctx, acc, x, &here)?;
        }
        // Summed indices no factor uses multiply by their ranges.
        let absent: Vec<IndexId> = ids.iter().copied().filter(|i| !frees.iter().any(|f| f.contains(i))).collect();
        reduce(ctx, acc, &absent, ReduceOp::Sum)
    }

    /// `e` in full, labelled by its free indices.
    pub fn expr(&self, e: &Expr) -> Result<Lab<'s, T>, EvalError> {
        let ctx = &self.ctx;
        match e {
            Expr::Lit(v) => self.scalar(*v),
            Expr::Size(s) => {
                let v = s.eval(self.b).map_err(|_| {
                    EvalError::Input(format!(
                        "the size {} is not bound to a value that fits in 64 bits",
                        s.display(&self.f.dims)
                    ))
                })?;
                self.scalar(v as f64)
            }
            Expr::Index(i) => {
                let r = ctx.range(*i)?;
                ctx.check::<T>(&[r])?;
                let data = Array1::from_iter((0..r).map(|k| T::from_f64(k as f64))).into_dyn();
                Ok(Lab::owned(data, vec![*i]))
            }
            Expr::Access(t, pos) => self.access(*t, pos),
            Expr::Gather(t, pos) => self.gather(e, *t, pos),
            Expr::Neg(a) => map1(ctx, &self.expr(a)?, |&x| -x),
            Expr::Add(xs) => self.fold(xs, |x, y| x + y),
            Expr::Mul(xs) => self.fold(xs, |x, y| x * y),
            Expr::Sub(a, b) => zip2(ctx, &self.expr(a)?, &self.expr(b)?, |&x, &y| x - y),
            Expr::Div(a, b) => zip2(ctx, &self.expr(a)?, &self.expr(b)?, |&x, &y| x / y),
            Expr::Call(fun, args) => match args.as_slice() {
                [a] => map1(ctx, &self.expr(a)?, |&x| T::from_f64(fun.apply(x.to_f64(), 0.0))),
                // L-Mul is defined on the bit patterns of the dtype, so it runs in `T`.
                [a, b] if matches!(fun, Builtin::Lmul(_)) => zip2(ctx, &self.expr(a)?, &self.expr(b)?, |&x, &y| fun.apply(x, y)),
                [a, b] => {
                    zip2(ctx, &self.expr(a)?, &self.expr(b)?, |&x, &y| T::from_f64(fun.apply(x.to_f64(), y.to_f64())))
                }
                _ => Err(internal(format!("{} called with {} arguments", fun.name(), args.len()))),
            },
            Expr::Select(c, a, b) => select(ctx, &self.cond(c)?, &self.expr(a)?, &self.expr(b)?),
            Expr::Reduce(op, ids, body) => self.reduce(*op, body, ids),
        }
    }

    fn scalar(&self, v: f64) -> Result<Lab<'s, T>, EvalError> {
        self.ctx.check::<T>(&[])?;
        Ok(Lab::owned(ArrayD::from_elem(IxDyn(&[]), T::from_f64(v)), Vec::new()))
    }

    fn fold(&self, xs: &[Expr], op: impl Fn(T, T) -> T + Copy) -> Result<Lab<'s, T>, EvalError> {
        let mut it = xs.iter();
        let first = it.next().ok_or_else(|| internal("empty operand chain"))?;
        let mut acc = self.expr(first)?;
        for x in it {
            acc = zip2(&self.ctx, &acc, &self.expr(x)?, |&a, &b| op(a, b))?;
        }
        Ok(acc)
    }

    fn cond(&self, c: &Cond) -> Result<Lab<'s, bool>, EvalError> {
        let ctx = &self.ctx;
        match c {
            Cond::Cmp(op, a, b) => zip2(ctx, &self.expr(a)?, &self.expr(b)?, |&x, &y| op.apply(x.to_f64(), y.to_f64())),
            Cond::And(cs) | Cond::Or(cs) => {
                let and = matches!(c, Cond::And(_));
                let mut it = cs.iter();
                let first = it.next().ok_or_else(|| internal("empty condition chain"))?;
                let mut acc = self.cond(first)?;
                for x in it {
                    acc = zip2(ctx, &acc, &self.cond(x)?, |&p, &q| if and { p && q } else { p || q })?;
                }
                Ok(acc)
            }
            Cond::Not(x) => map1(ctx, &self.cond(x)?, |&p| !p),
        }
    }

    /// A view of a stored tensor with each grouped position split into its members
    /// (row-major) and repeated indices merged into a diagonal, by choice of strides.
    /// A gathered read, element by element: each indirect position's value is read
    /// from its index input and checked against the axis it selects.
    fn gather(&self, e: &Expr, t: TensorId, pos: &[GatherPos]) -> Result<Lab<'s, T>, EvalError> {
        let name = |t: TensorId| self.f.tensors.get(t.index()).map_or("?", |d| d.name.as_str());
        let data = self
            .store
            .get(t.index())
            .and_then(|x| x.as_ref())
            .ok_or_else(|| internal(format!("{} is read before it is defined", name(t))))?;
        if data.ndim() != pos.len() {
            return Err(internal(format!("{} is gathered with the wrong number of positions", name(t))));
        }
        let labels = free(e);
        let shape = self.ctx.shape(&labels)?;
        self.ctx.check::<T>(&shape)?;
        let at = |i: IndexId| labels.iter().position(|&l| l == i).ok_or_else(|| internal("gather index not among its labels"));
        let mut values = Vec::with_capacity(shape.iter().product());
        let mut src = vec![0usize; pos.len()];
        for ix in ndarray::indices(IxDyn(&shape)) {
            for (axis, p) in pos.iter().enumerate() {
                src[axis] = match p {
                    GatherPos::Direct(members) => {
                        let mut flat = 0usize;
                        for &i in members {
                            flat = flat * self.ctx.range(i)? + ix[at(i)?];
                        }
                        flat
                    }
                    GatherPos::Indirect(u, ids) => {
                        let idx = self
                            .indices
                            .get(u.index())
                            .and_then(|x| x.as_ref())
                            .ok_or_else(|| internal(format!("index input {} is not given", name(*u))))?;
                        let here: Vec<usize> = ids.iter().map(|&i| at(i).map(|k| ix[k])).collect::<Result<_, _>>()?;
                        let v = idx.get(IxDyn(&here)).copied().ok_or_else(|| internal("index position out of range"))?;
                        let size = data.shape()[axis];
                        match usize::try_from(v) {
                            Ok(x) if x < size => x,
                            _ => return Err(EvalError::Input(crate::tir::index_error(name(*u), &here, v, size, name(t), axis))),
                        }
                    }
                };
            }
            values.push(data[IxDyn(&src)]);
        }
        let out = ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| internal(e.to_string()))?;
        Ok(Lab::owned(out, labels))
    }

    fn access(&self, t: TensorId, pos: &[Position]) -> Result<Lab<'s, T>, EvalError> {
        let name = || self.f.tensors.get(t.index()).map_or("?", |d| d.name.as_str());
        let data = self
            .store
            .get(t.index())
            .and_then(|x| x.as_ref())
            .ok_or_else(|| internal(format!("{} is read before it is defined", name())))?;
        let slice = data.as_slice().ok_or_else(|| internal(format!("{} is not stored contiguously", name())))?;
        let shape = data.shape();
        if shape.len() != pos.len() {
            return Err(internal(format!("{} is accessed with the wrong number of positions", name())));
        }
        let overflow = || internal("stride overflow in an access");
        let mut labels: Vec<IndexId> = Vec::new();
        let mut lshape: Vec<usize> = Vec::new();
        let mut lstrides: Vec<usize> = Vec::new();
        // Row-major stride of each position of the stored tensor.
        let mut tstride = vec![1usize; shape.len()];
        for p in (0..shape.len().saturating_sub(1)).rev() {
            tstride[p] = tstride[p + 1].checked_mul(shape[p + 1]).ok_or_else(overflow)?;
        }
        for (p, members) in pos.iter().enumerate() {
            let mut stride = tstride[p];
            let mut split = Vec::with_capacity(members.len());
            for &i in members.iter().rev() {
                let r = self.ctx.range(i)?;
                split.push((i, r, stride));
                stride = stride.checked_mul(r).ok_or_else(overflow)?;
            }
            let total = split.iter().try_fold(1usize, |acc, &(_, r, _)| acc.checked_mul(r)).ok_or_else(overflow)?;
            if total != shape[p] {
                return Err(internal(format!("position {p} of {} does not match its size", name())));
            }
            for &(i, r, s) in split.iter().rev() {
                match labels.iter().position(|&l| l == i) {
                    Some(k) => lstrides[k] = lstrides[k].checked_add(s).ok_or_else(overflow)?,
                    None => {
                        labels.push(i);
                        lshape.push(r);
                        lstrides.push(s);
                    }
                }
            }
        }
        let view = if lshape.contains(&0) {
            ArrayView::from_shape(IxDyn(&lshape), &slice[..0])
        } else {
            ArrayView::from_shape(IxDyn(&lshape).strides(IxDyn(&lstrides)), slice)
        }
        .map_err(|e| internal(format!("building a view of {}: {e}", name())))?;
        Ok(Lab { data: CowArray::from(view), labels })
    }
}
