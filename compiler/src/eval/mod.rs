//! The reference evaluator (the oracle): evaluates TIR directly on ndarray arrays.
//!
//! Simple and obviously right beats fast, but products are contracted pairwise, summing
//! an index out as soon as no remaining factor uses it, so long chains stay cheap. Every
//! intermediate is checked against a memory limit before it is allocated.

mod expr;
mod labelled;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

use crate::tir::{short_stmt, Bindings, Function, IndexId, SizeError, Stmt, TensorId, TensorKind};
use labelled::{align, check_alloc, internal, shape_string, Ctx};
use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};
use std::fmt::{Debug, Display};
use tessera_runtime::DType;

/// Element types the evaluator works in (f32 and f64).
pub trait Scalar:
    num_traits::Float
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + Debug
    + Display
    + Default
    + Send
    + Sync
    + 'static
{
    const DTYPE: DType;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Scalar for f32 {
    const DTYPE: DType = DType::F32;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Scalar for f64 {
    const DTYPE: DType = DType::F64;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// Limits of one evaluation.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Largest intermediate or output, in bytes. Default 4 GiB.
    pub memory_limit: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { memory_limit: 4 << 30 }
    }
}

/// Why an evaluation stopped.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// An intermediate or output would exceed the memory limit.
    #[error(
        "{what} needs {bytes} bytes ({shape}), over the memory limit of {limit} bytes; \
         raise the limit (--memory-limit) or use smaller sizes"
    )]
    MemoryLimit { what: String, shape: String, bytes: u64, limit: u64 },
    /// Inputs do not fit the function (count or shape).
    #[error("{0}")]
    Input(String),
    /// An invariant of the TIR failed. Always a bug.
    #[error("internal error (this is a bug in Tessera): {0}")]
    Internal(String),
}

/// Evaluates `f` under the bindings `b` on `inputs` (in `f.inputs` order, any strides)
/// and returns the outputs in `f.outputs` order.
pub fn evaluate<T: Scalar>(
    f: &Function,
    b: &Bindings,
    inputs: &[ArrayViewD<T>],
    opts: &EvalOptions,
) -> Result<Vec<ArrayD<T>>, EvalError> {
    evaluate_indexed(f, b, inputs, &[], opts)
}

/// [`evaluate`] with the index inputs (in `f.indices` order, as i64). An index
/// outside the axis it selects is an [`EvalError::Input`] naming it.
pub fn evaluate_indexed<T: Scalar>(
    f: &Function,
    b: &Bindings,
    inputs: &[ArrayViewD<T>],
    indices: &[ArrayViewD<i64>],
    opts: &EvalOptions,
) -> Result<Vec<ArrayD<T>>, EvalError> {
    let limit = opts.memory_limit;
    if indices.len() != f.indices.len() {
        return Err(EvalError::Input(format!(
            "fn {} takes {} index input(s) but {} index array(s) were given",
            f.name,
            f.indices.len(),
            indices.len()
        )));
    }
    let mut index_store: Vec<Option<CowArray<i64, IxDyn>>> = (0..f.tensors.len()).map(|_| None).collect();
    for (&t, x) in f.indices.iter().zip(indices) {
        let expected = concrete_shape(f, t, b)?;
        if x.shape() != expected.as_slice() {
            return Err(EvalError::Input(format!(
                "index input {} should have shape {} under the bound dims but the array given has shape {}",
                decl_string(f, t),
                shape_string(&expected),
                shape_string(x.shape())
            )));
        }
        *slot(&mut index_store, t)? = Some(CowArray::from(x.as_standard_layout().into_owned()));
    }
    // `tir::verify` does not check the ids in the input and output lists.
    if let Some(t) = f.inputs.iter().chain(&f.outputs).find(|t| t.index() >= f.tensors.len()) {
        return Err(internal(format!("tensor id {} in the signature is out of range", t.0)));
    }
    if inputs.len() != f.inputs.len() {
        let sig: Vec<String> = f.inputs.iter().map(|&t| decl_string(f, t)).collect();
        return Err(EvalError::Input(format!(
            "fn {} takes {} input(s) ({}) but {} array(s) were given",
            f.name,
            f.inputs.len(),
            sig.join(", "),
            inputs.len()
        )));
    }
    let mut store: Vec<Option<CowArray<T, IxDyn>>> = (0..f.tensors.len()).map(|_| None).collect();
    for (&t, x) in f.inputs.iter().zip(inputs) {
        let expected = concrete_shape(f, t, b)?;
        if x.shape() != expected.as_slice() {
            return Err(EvalError::Input(format!(
                "input {} should have shape {} under the bound dims but the array given has shape {}",
                decl_string(f, t),
                shape_string(&expected),
                shape_string(x.shape())
            )));
        }
        // Stored tensors are kept in standard layout so that accesses are strided views.
        let stored = if x.is_standard_layout() {
            CowArray::from(x.clone())
        } else {
            check_alloc::<T>(limit, &expected, || format!("the contiguous copy of input {}", tensor_name(f, t)))?;
            CowArray::from(x.as_standard_layout().into_owned())
        };
        *slot(&mut store, t)? = Some(stored);
    }

    for c in &f.constants {
        let shape = concrete_shape(f, c.tensor, b)?;
        check_alloc::<T>(limit, &shape, || format!("constant {}", tensor_name(f, c.tensor)))?;
        let values: Vec<T> = c.values.iter().map(|&v| T::from_f64(v)).collect();
        let array = ArrayD::from_shape_vec(IxDyn(&shape), values)
            .map_err(|e| internal(format!("constant {}: {e}", tensor_name(f, c.tensor))))?;
        *slot(&mut store, c.tensor)? = Some(CowArray::from(array));
    }

    // Each intermediate is dropped after the last statement that reads it.
    let mut last_use: Vec<Option<usize>> = vec![None; f.tensors.len()];
    for (n, s) in f.stmts.iter().enumerate() {
        let mut read = Vec::new();
        s.rhs.tensors(&mut read);
        for t in read {
            if let Some(u) = last_use.get_mut(t.index()) {
                *u = Some(n);
            }
        }
    }
    for (n, s) in f.stmts.iter().enumerate() {
        let value = eval_stmt(f, b, s, &store, &index_store, limit)?;
        *slot(&mut store, s.target)? = Some(CowArray::from(value));
        for (k, u) in last_use.iter().enumerate() {
            if *u == Some(n) && !f.outputs.contains(&TensorId(k as u32)) {
                if let Some(x) = store.get_mut(k) {
                    *x = None;
                }
            }
        }
    }

    let mut outs: Vec<ArrayD<T>> = Vec::with_capacity(f.outputs.len());
    for (n, &o) in f.outputs.iter().enumerate() {
        match slot(&mut store, o)?.take() {
            Some(x) => outs.push(x.into_owned()),
            None => {
                // The same tensor listed twice as an output: copy the first.
                let first = f.outputs[..n]
                    .iter()
                    .position(|&p| p == o)
                    .and_then(|k| outs.get(k))
                    .ok_or_else(|| internal(format!("output {} is never defined", tensor_name(f, o))))?;
                check_alloc::<T>(limit, first.shape(), || format!("output {}", tensor_name(f, o)))?;
                let copy = first.clone();
                outs.push(copy);
            }
        }
    }
    Ok(outs)
}

/// Evaluates one statement into a new array of its target's shape.
fn eval_stmt<T: Scalar>(
    f: &Function,
    b: &Bindings,
    s: &Stmt,
    store: &[Option<CowArray<T, IxDyn>>],
    index_store: &[Option<CowArray<i64, IxDyn>>],
    limit: u64,
) -> Result<ArrayD<T>, EvalError> {
    let text = short_stmt(f, s);
    let ranges = s
        .indices
        .iter()
        .map(|v| {
            v.range.eval(b).map_err(|e| size_error(f, e)).and_then(|r| {
                usize::try_from(r).map_err(|_| {
                    EvalError::Input(format!("the range {r} of index {} in `{text}` does not fit in memory", v.name))
                })
            })
        })
        .collect::<Result<Vec<usize>, EvalError>>()?;
    // The result is checked first, so that a statement too large to store is reported
    // by its target's name rather than as some intermediate.
    let target_shape = concrete_shape(f, s.target, b)?;
    let lhs: Vec<IndexId> = s.lhs.iter().flatten().copied().collect();
    let lhs_shape = lhs
        .iter()
        .map(|i| ranges.get(i.index()).copied())
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| internal(format!("`{text}` has an index id out of range on the left")))?;
    let what = || match f.tensors.get(s.target.index()) {
        Some(d) if d.kind == TensorKind::Output => format!("output {}", d.name),
        Some(d) => format!("tensor {} (statement `{text}`)", d.name),
        None => format!("the target of statement `{text}`"),
    };
    check_alloc::<T>(limit, &target_shape, what)?;
    check_alloc::<T>(limit, &lhs_shape, what)?;

    let ctx = Ctx { ranges: &ranges, limit, what: &text };
    let se = expr::StmtEval { f, b, store, indices: index_store, ctx };
    let value = if s.reduced.is_empty() { se.expr(&s.rhs)? } else { se.reduce(s.op, &s.rhs, &s.reduced)? };
    if value.labels.iter().any(|l| !lhs.contains(l)) {
        return Err(internal(format!("`{text}` leaves an index that is neither on the left nor reduced")));
    }
    let data = if value.labels == lhs && value.data.is_standard_layout() {
        value.data.into_owned()
    } else {
        let v = align(&value, &lhs)?;
        let v = v
            .broadcast(IxDyn(&lhs_shape))
            .ok_or_else(|| internal(format!("cannot broadcast the value of `{text}`")))?;
        v.as_standard_layout().into_owned()
    };
    data.into_shape_with_order(IxDyn(&target_shape))
        .map_err(|e| internal(format!("reshaping the value of `{text}` to {}: {e}", shape_string(&target_shape))))
}

fn tensor_name(f: &Function, t: TensorId) -> &str {
    f.tensors.get(t.index()).map_or("?", |d| d.name.as_str())
}

/// `A: f32[m, k]`.
fn decl_string(f: &Function, t: TensorId) -> String {
    format!("{}: {}", tensor_name(f, t), f.type_string(t))
}

fn slot<X>(store: &mut [Option<X>], t: TensorId) -> Result<&mut Option<X>, EvalError> {
    store.get_mut(t.index()).ok_or_else(|| internal(format!("tensor id {} out of range", t.0)))
}

fn size_error(f: &Function, e: SizeError) -> EvalError {
    match e {
        SizeError::Unbound(d) => EvalError::Input(format!(
            "dim {} is not bound; bind it from the inputs or give it explicitly",
            f.dims.get(d.index()).map_or("?", |x| x.name.as_str())
        )),
        SizeError::Overflow => EvalError::Input("a size overflows 64-bit arithmetic under the bound dims".into()),
    }
}

fn concrete_shape(f: &Function, t: TensorId, b: &Bindings) -> Result<Vec<usize>, EvalError> {
    if t.index() >= f.tensors.len() {
        return Err(internal(format!("tensor id {} out of range", t.0)));
    }
    f.shape(t, b).map_err(|e| match e {
        SizeError::Overflow => {
            EvalError::Input(format!("the shape of {} overflows under the bound dims", decl_string(f, t)))
        }
        e => size_error(f, e),
    })
}
