//! Labelled tensors: an array with one index label per axis, and the operations the
//! evaluator builds statements from (broadcasting elementwise maps, reductions and
//! pairwise contractions through a batched matrix multiply).
//!
//! Every function that allocates checks the size against the memory limit first.

use super::{EvalError, Scalar};
use crate::tir::{IndexId, ReduceOp};
use ndarray::{linalg::general_mat_mul, Array3, ArrayD, ArrayViewD, Axis, CowArray, IxDyn, Zip};

/// A value during evaluation: `data` has one axis per label, each as long as the label's
/// range. Labels are distinct.
pub(crate) struct Lab<'a, E> {
    pub data: CowArray<'a, E, IxDyn>,
    pub labels: Vec<IndexId>,
}

impl<E> Lab<'_, E> {
    pub fn owned<'x>(data: ArrayD<E>, labels: Vec<IndexId>) -> Lab<'x, E> {
        Lab { data: CowArray::from(data), labels }
    }
}

pub(crate) fn internal(msg: impl Into<String>) -> EvalError {
    EvalError::Internal(msg.into())
}

/// `[2, 3]`.
pub(crate) fn shape_string(shape: &[usize]) -> String {
    format!("{shape:?}")
}

/// Fails unless an array of `shape` with elements of `E` fits under `limit` bytes (and
/// can be represented at all).
pub(crate) fn check_alloc<E>(limit: u64, shape: &[usize], what: impl FnOnce() -> String) -> Result<(), EvalError> {
    let size = std::mem::size_of::<E>().max(1) as u128;
    let elems = shape.iter().try_fold(1u128, |acc, &d| acc.checked_mul(d as u128));
    let bytes = elems.and_then(|e| e.checked_mul(size));
    match bytes {
        Some(b) if b <= u128::from(limit) => {}
        _ => {
            return Err(EvalError::MemoryLimit {
                what: what(),
                shape: shape_string(shape),
                bytes: bytes.map_or(u64::MAX, |b| u64::try_from(b).unwrap_or(u64::MAX)),
                limit,
            })
        }
    }
    // ndarray also requires the product of the non-zero lengths to fit in isize, even
    // for an empty array.
    let nonzero = shape.iter().filter(|&&d| d != 0).try_fold(size, |acc, &d| acc.checked_mul(d as u128));
    if nonzero.is_none_or(|n| n > isize::MAX as u128) {
        return Err(EvalError::Input(format!(
            "{} would have shape {}, which is too large to represent even though it is empty",
            what(),
            shape_string(shape)
        )));
    }
    Ok(())
}

/// What the operations of one statement need: index ranges and the memory limit.
pub(crate) struct Ctx<'c> {
    pub ranges: &'c [usize],
    pub limit: u64,
    /// Names the statement in memory-limit errors.
    pub what: &'c str,
}

impl Ctx<'_> {
    pub fn range(&self, i: IndexId) -> Result<usize, EvalError> {
        self.ranges.get(i.index()).copied().ok_or_else(|| internal(format!("index id {} out of range", i.0)))
    }

    pub fn shape(&self, labels: &[IndexId]) -> Result<Vec<usize>, EvalError> {
        labels.iter().map(|&i| self.range(i)).collect()
    }

    pub fn check<E>(&self, shape: &[usize]) -> Result<(), EvalError> {
        check_alloc::<E>(self.limit, shape, || format!("intermediate of statement `{}`", self.what))
    }
}

/// The labels of `a` followed by those of `b` that `a` lacks.
pub(crate) fn union(a: &[IndexId], b: &[IndexId]) -> Vec<IndexId> {
    let mut out = a.to_vec();
    out.extend(b.iter().filter(|i| !a.contains(i)));
    out
}

/// A view of `x` with its axes in the order of `target` and a unit axis for every label
/// of `target` that `x` lacks, ready to broadcast.
pub(crate) fn align<'v, E>(x: &'v Lab<'_, E>, target: &[IndexId]) -> Result<ArrayViewD<'v, E>, EvalError> {
    let mut order = Vec::with_capacity(x.labels.len());
    for (axis, l) in x.labels.iter().enumerate() {
        let p = target.iter().position(|t| t == l).ok_or_else(|| internal("a label is missing from the target"))?;
        order.push((p, axis));
    }
    order.sort_unstable();
    let perm: Vec<usize> = order.iter().map(|&(_, axis)| axis).collect();
    if x.data.ndim() != perm.len() {
        return Err(internal("a labelled tensor has the wrong number of axes"));
    }
    let mut v = x.data.view().permuted_axes(IxDyn(&perm));
    for (p, l) in target.iter().enumerate() {
        if !x.labels.contains(l) {
            v = v.insert_axis(Axis(p));
        }
    }
    Ok(v)
}

fn broadcast<'v, E>(v: &'v ArrayViewD<'_, E>, shape: &[usize]) -> Result<ArrayViewD<'v, E>, EvalError> {
    v.broadcast(IxDyn(shape))
        .ok_or_else(|| internal(format!("cannot broadcast {} to {}", shape_string(v.shape()), shape_string(shape))))
}

/// Applies `f` to every element.
pub(crate) fn map1<'x, A, R>(ctx: &Ctx, a: &Lab<'_, A>, f: impl Fn(&A) -> R) -> Result<Lab<'x, R>, EvalError> {
    ctx.check::<R>(a.data.shape())?;
    Ok(Lab::owned(a.data.map(f), a.labels.clone()))
}

/// Applies `f` elementwise, broadcasting both operands to the union of their labels.
pub(crate) fn zip2<'x, A, B, R>(
    ctx: &Ctx,
    a: &Lab<'_, A>,
    b: &Lab<'_, B>,
    f: impl Fn(&A, &B) -> R,
) -> Result<Lab<'x, R>, EvalError> {
    let labels = union(&a.labels, &b.labels);
    let shape = ctx.shape(&labels)?;
    ctx.check::<R>(&shape)?;
    let (av, bv) = (align(a, &labels)?, align(b, &labels)?);
    let (av, bv) = (broadcast(&av, &shape)?, broadcast(&bv, &shape)?);
    let out = Zip::from(av).and(bv).map_collect(f);
    Ok(Lab::owned(out, labels))
}

/// Picks `a` where `c` holds and `b` elsewhere, broadcasting all three.
pub(crate) fn select<'x, T: Clone>(
    ctx: &Ctx,
    c: &Lab<'_, bool>,
    a: &Lab<'_, T>,
    b: &Lab<'_, T>,
) -> Result<Lab<'x, T>, EvalError> {
    let labels = union(&union(&c.labels, &a.labels), &b.labels);
    let shape = ctx.shape(&labels)?;
    ctx.check::<T>(&shape)?;
    let (cv, av, bv) = (align(c, &labels)?, align(a, &labels)?, align(b, &labels)?);
    let (cv, av, bv) = (broadcast(&cv, &shape)?, broadcast(&av, &shape)?, broadcast(&bv, &shape)?);
    let out = Zip::from(cv).and(av).and(bv).map_collect(|&c, x, y| if c { x.clone() } else { y.clone() });
    Ok(Lab::owned(out, labels))
}

/// Reduces `x` over `ids` with `op`. An id that labels no axis of `x` still counts:
/// summing over it multiplies by its range, and max/min over an empty range give
/// -inf/+inf.
pub(crate) fn reduce<'x, T: Scalar>(
    ctx: &Ctx,
    x: Lab<'x, T>,
    ids: &[IndexId],
    op: ReduceOp,
) -> Result<Lab<'x, T>, EvalError> {
    let mut x = x;
    let mut absent_scale: usize = 1;
    let mut absent_empty = false;
    for &id in ids {
        let Some(axis) = x.labels.iter().position(|&l| l == id) else {
            let r = ctx.range(id)?;
            absent_empty |= r == 0;
            absent_scale = absent_scale.saturating_mul(r);
            continue;
        };
        let mut shape = x.data.shape().to_vec();
        shape.remove(axis);
        ctx.check::<T>(&shape)?;
        let data = match op {
            ReduceOp::Sum => x.data.sum_axis(Axis(axis)),
            ReduceOp::Max => x.data.fold_axis(Axis(axis), T::neg_infinity(), |&acc, &v| crate::tir::nan_max(acc, v)),
            ReduceOp::Min => x.data.fold_axis(Axis(axis), T::infinity(), |&acc, &v| crate::tir::nan_min(acc, v)),
        };
        let mut labels = x.labels;
        labels.remove(axis);
        x = Lab::owned(data, labels);
    }
    match op {
        ReduceOp::Sum if absent_scale != 1 => {
            let s = T::from_f64(absent_scale as f64);
            map1(ctx, &x, |&v| v * s)
        }
        ReduceOp::Max if absent_empty => map1(ctx, &x, |_| T::neg_infinity()),
        ReduceOp::Min if absent_empty => map1(ctx, &x, |_| T::infinity()),
        _ => Ok(x),
    }
}

fn product(shape: &[usize]) -> Result<usize, EvalError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| internal("size overflow in a contraction"))
}

/// `sum over sum_ids of a * b`: indices only one side has are summed out first; if
/// the two share a summed index the product is a batched matrix multiply, otherwise a
/// broadcasting elementwise product.
pub(crate) fn contract<'x, T: Scalar>(
    ctx: &Ctx,
    a: Lab<'x, T>,
    b: Lab<'x, T>,
    sum_ids: &[IndexId],
) -> Result<Lab<'x, T>, EvalError> {
    let only = |x: &Lab<T>, other: &Lab<T>| -> Vec<IndexId> {
        x.labels.iter().copied().filter(|l| sum_ids.contains(l) && !other.labels.contains(l)).collect()
    };
    let (a_only, b_only) = (only(&a, &b), only(&b, &a));
    let a = reduce(ctx, a, &a_only, ReduceOp::Sum)?;
    let b = reduce(ctx, b, &b_only, ReduceOp::Sum)?;

    let k: Vec<IndexId> = a.labels.iter().copied().filter(|l| sum_ids.contains(l) && b.labels.contains(l)).collect();
    if k.is_empty() {
        return zip2(ctx, &a, &b, |&x, &y| x * y);
    }
    let batch: Vec<IndexId> =
        a.labels.iter().copied().filter(|l| !sum_ids.contains(l) && b.labels.contains(l)).collect();
    let m: Vec<IndexId> = a.labels.iter().copied().filter(|l| !b.labels.contains(l)).collect();
    let n: Vec<IndexId> = b.labels.iter().copied().filter(|l| !a.labels.contains(l)).collect();

    let a_order: Vec<IndexId> = batch.iter().chain(&m).chain(&k).copied().collect();
    let b_order: Vec<IndexId> = batch.iter().chain(&k).chain(&n).copied().collect();
    let (bs, ms, ks, ns) = (
        product(&ctx.shape(&batch)?)?,
        product(&ctx.shape(&m)?)?,
        product(&ctx.shape(&k)?)?,
        product(&ctx.shape(&n)?)?,
    );

    let a3 = contiguous(ctx, &a, &a_order)?;
    let a3 = a3.view().into_shape_with_order((bs, ms, ks)).map_err(|e| internal(format!("reshaping a factor: {e}")))?;
    let b3 = contiguous(ctx, &b, &b_order)?;
    let b3 = b3.view().into_shape_with_order((bs, ks, ns)).map_err(|e| internal(format!("reshaping a factor: {e}")))?;

    let labels: Vec<IndexId> = batch.iter().chain(&m).chain(&n).copied().collect();
    let shape = ctx.shape(&labels)?;
    ctx.check::<T>(&shape)?;
    let mut out = Array3::<T>::zeros((bs, ms, ns));
    // An empty inner dimension leaves the zeros, which is the right sum.
    if ms > 0 && ns > 0 && ks > 0 {
        for i in 0..bs {
            general_mat_mul(
                T::one(),
                &a3.index_axis(Axis(0), i),
                &b3.index_axis(Axis(0), i),
                T::zero(),
                &mut out.index_axis_mut(Axis(0), i),
            );
        }
    }
    let out = out
        .into_dyn()
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|e| internal(format!("reshaping a product: {e}")))?;
    Ok(Lab::owned(out, labels))
}

/// `x` permuted to `order` in standard layout, copying only when needed.
fn contiguous<'v, T: Scalar>(
    ctx: &Ctx,
    x: &'v Lab<'_, T>,
    order: &[IndexId],
) -> Result<CowArray<'v, T, IxDyn>, EvalError> {
    if order.len() != x.labels.len() {
        return Err(internal("a factor's labels do not match its roles"));
    }
    let v = align(x, order)?;
    if v.is_standard_layout() {
        return Ok(CowArray::from(v));
    }
    ctx.check::<T>(v.shape())?;
    Ok(CowArray::from(v.as_standard_layout().into_owned()))
}
