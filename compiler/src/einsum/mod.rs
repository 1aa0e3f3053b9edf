//! numpy einsum strings translated straight to TIR.
//!
//! [`translate`] reads a subscripts string such as `"ij,jk->ik"` with the operands'
//! shapes and builds the typed program that computes what `numpy.einsum` computes: one
//! input per operand (`op0`, `op1`, ...), one output `out`, one dim per label (named
//! after it; the broadcast axes of `...` are `e0`, `e1`, ...), and one statement that
//! multiplies the operands and sums every index that is not in the output.
//!
//! The syntax and the shape rules are numpy's (its C `einsum`): implicit outputs,
//! right-aligned `...` broadcasting, size-1 broadcasting of labelled axes, repeated
//! labels reading diagonals, scalars. Labels may be any character but `,` `.` `-` `>`,
//! whitespace and control characters, as in opt_einsum ([`is_label`]). An operand axis
//! of size 1 whose label has another size elsewhere reads element 0 through an index
//! of range 1 of its own (named `j_0` for label `j` in operand 0), so the label's dim
//! keeps its full size.
//!
//! Only the operands are checked against numpy's 2^63-1 elements: they are arrays. The
//! iteration space is not an allocation (a network of 30 tensors easily has more than
//! 2^63 index combinations), and the output and intermediates are checked when a plan
//! is compiled and run.

mod parse;
#[cfg(test)]
mod tests;

use crate::diag::{Diagnostic, FileId, Span};
use crate::tir::{
    self, Bindings, Dim, DimId, Expr, IndexId, IndexVar, ReduceOp, Size, Stmt, TensorDecl, TensorId,
    TensorKind,
};
pub use parse::is_label;
use parse::{Item, Term};
use std::collections::HashMap;
use tessera_runtime::DType;

/// A numpy einsum as a TIR function, with its dims bound to the operands' shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Einsum {
    /// `fn einsum(op0: .., op1: ..) -> out: ..` with a single statement.
    pub function: tir::Function,
    /// The size of every dim of `function`.
    pub bindings: tir::Bindings,
    /// The shape numpy's result has.
    pub output_shape: Vec<usize>,
}

/// Largest element count of an operand (numpy's `npy_intp`).
const MAX_ELEMENTS: u64 = i64::MAX as u64;

/// What one axis of an operand or of the output stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Axis {
    Label(char),
    /// Axis `b` of the common broadcast block of `...` (numbered from the left).
    Broadcast(usize),
}

/// A dim of the function while its size is being worked out.
struct DimInfo {
    name: String,
    /// The first place it appears.
    span: Span,
    /// The broadcast size so far: 1 until some operand gives another size.
    size: usize,
    /// The operand and place that set `size` (for conflict messages).
    set_at: (usize, Span),
}

/// Translates `numpy.einsum(spec, *operands)` for operands of the given shapes into TIR.
///
/// Spans in the error point into `spec` as file `file`.
///
/// ```
/// use tessera_compiler::{einsum::translate, FileId};
/// use tessera_runtime::DType;
/// let e = translate("ij,jk", &[&[2, 3], &[3, 4]], DType::F64, FileId(0))?;
/// assert_eq!(e.output_shape, vec![2, 4]);
/// assert!(e.function.to_string().contains("out[i, k] = sum[j] op0[i, j] * op1[j, k]"));
/// # Ok::<(), tessera_compiler::Diagnostic>(())
/// ```
pub fn translate(spec: &str, shapes: &[&[usize]], dtype: DType, file: FileId) -> Result<Einsum, Diagnostic> {
    let whole = Span::new(file, 0, spec.len());
    let parsed = parse::parse(spec, file)?;
    check_operand_count(&parsed.inputs, shapes.len(), whole)?;

    // numpy right-aligns every operand's `...` axes in one common broadcast block.
    let mut ellipsis_dims = Vec::with_capacity(shapes.len());
    for (k, (term, shape)) in parsed.inputs.iter().zip(shapes).enumerate() {
        ellipsis_dims.push(check_rank(k, term, shape.len())?);
    }
    let num_broadcast = ellipsis_dims.iter().copied().max().unwrap_or(0);
    let op_axes: Vec<Vec<(Axis, Span)>> = parsed
        .inputs
        .iter()
        .zip(&ellipsis_dims)
        .map(|(term, &e)| {
            let mut axes = Vec::new();
            for item in &term.items {
                match *item {
                    Item::Label(c, s) => axes.push((Axis::Label(c), s)),
                    Item::Ellipsis(s) => {
                        axes.extend((num_broadcast - e..num_broadcast).map(|b| (Axis::Broadcast(b), s)))
                    }
                }
            }
            axes
        })
        .collect();

    // Dims: the labels in order of first appearance, then the broadcast axes.
    let mut dims: Vec<DimInfo> = Vec::new();
    let mut label_dim: HashMap<char, usize> = HashMap::new();
    let mut label_count: HashMap<char, usize> = HashMap::new();
    for (k, term) in parsed.inputs.iter().enumerate() {
        for (c, s) in term.labels() {
            *label_count.entry(c).or_insert(0) += 1;
            label_dim.entry(c).or_insert_with(|| {
                dims.push(DimInfo { name: c.to_string(), span: s, size: 1, set_at: (k, s) });
                dims.len() - 1
            });
        }
    }
    let first_broadcast = dims.len();
    for b in 0..num_broadcast {
        // The first operand whose `...` reaches axis `b` names where the dim comes from.
        let (k, s) = parsed
            .inputs
            .iter()
            .zip(&ellipsis_dims)
            .enumerate()
            .find_map(|(k, (t, &e))| t.ellipsis().filter(|_| num_broadcast - e <= b).map(|s| (k, s)))
            .unwrap_or((0, whole));
        dims.push(DimInfo { name: format!("e{b}"), span: s, size: 1, set_at: (k, s) });
    }
    let dim_of = |a: Axis| -> usize {
        match a {
            Axis::Label(c) => label_dim.get(&c).copied().unwrap_or(0),
            Axis::Broadcast(b) => first_broadcast + b,
        }
    };

    let out_axes = output_axes(parsed.output.as_ref(), &parsed.inputs, &label_count, &ellipsis_dims, whole)?;

    for (k, (axes, shape)) in op_axes.iter().zip(shapes).enumerate() {
        for (p, &(axis, span)) in axes.iter().enumerate() {
            let size = shape[p];
            if let Axis::Label(c) = axis {
                // A repeated label reads a diagonal: numpy wants equal sizes, no broadcasting.
                if let Some(q) = axes[..p].iter().position(|&(a, _)| a == axis) {
                    if shape[q] != size {
                        return Err(Diagnostic::error(
                            "einsum::diagonal-size",
                            format!(
                                "label `{c}` repeats in operand {k} with different sizes ({} and {size})",
                                shape[q]
                            ),
                        )
                        .label(span, format!("size {size}"))
                        .label(axes[q].1, format!("size {}", shape[q]))
                        .help("a repeated label reads a diagonal, so its axes must have equal sizes"));
                    }
                    continue;
                }
            }
            merge_size(&mut dims[dim_of(axis)], axis, size, k, span)?;
        }
    }
    check_overflow(shapes, whole)?;

    let function = build(&dims, &op_axes, shapes, &out_axes, &dim_of, dtype, &parsed, whole);
    debug_assert_eq!(tir::verify(&function), Ok(()), "einsum translation built invalid TIR");
    let mut bindings = Bindings::new(dims.len());
    for (d, info) in dims.iter().enumerate() {
        bindings.set(DimId(d as u32), info.size as u64);
    }
    let output_shape = out_axes.iter().map(|&(a, _)| dims[dim_of(a)].size).collect();
    Ok(Einsum { function, bindings, output_shape })
}

fn check_operand_count(inputs: &[Term], operands: usize, whole: Span) -> Result<(), Diagnostic> {
    let terms = inputs.len();
    if operands == 0 {
        return Err(Diagnostic::error("einsum::operand-count", "einsum needs at least one operand")
            .label(whole, format!("{} here", count(terms, "term", "terms")))
            .help("pass one operand per comma-separated input term"));
    }
    if terms == operands {
        return Ok(());
    }
    let (span, note) = match (inputs.get(operands), inputs.last()) {
        (Some(extra), Some(last)) => (extra.span.to(last.span), "no operand for this".to_string()),
        _ => {
            let inputs_span =
                inputs.first().map_or(whole, |f| f.span).to(inputs.last().map_or(whole, |l| l.span));
            (inputs_span, count(terms, "term", "terms"))
        }
    };
    Err(Diagnostic::error(
        "einsum::operand-count",
        format!(
            "the spec has {} but {} {} given",
            count(terms, "input term", "input terms"),
            count(operands, "operand", "operands"),
            if operands == 1 { "was" } else { "were" }
        ),
    )
    .label(span, note)
    .help("write one comma-separated term per operand (an empty term for a scalar)"))
}

/// Checks an operand's rank against its term; returns how many axes its `...` covers.
fn check_rank(k: usize, term: &Term, rank: usize) -> Result<usize, Diagnostic> {
    let labels = term.labels().count();
    let ellipsis = term.ellipsis().is_some();
    let err = |msg: String, help: &str| {
        Err(Diagnostic::error("einsum::rank", msg)
            .label(term.span, format!("operand {k} has rank {rank}"))
            .help(help))
    };
    if labels > rank {
        let what = if ellipsis { " (besides `...`)" } else { "" };
        return err(
            format!(
                "operand {k} has {} but its term has {}{what}",
                count(rank, "axis", "axes"),
                count(labels, "label", "labels")
            ),
            "give one label per axis",
        );
    }
    if !ellipsis && labels < rank {
        return err(
            format!(
                "operand {k} has {} but its term has only {} and no `...`",
                count(rank, "axis", "axes"),
                count(labels, "label", "labels")
            ),
            "give one label per axis, or `...` for the axes you do not name",
        );
    }
    Ok(if ellipsis { rank - labels } else { 0 })
}

/// The output's axes: written after `->`, or numpy's implicit choice.
fn output_axes(
    output: Option<&Term>,
    inputs: &[Term],
    label_count: &HashMap<char, usize>,
    ellipsis_dims: &[usize],
    whole: Span,
) -> Result<Vec<(Axis, Span)>, Diagnostic> {
    let num_broadcast = ellipsis_dims.iter().copied().max().unwrap_or(0);
    let Some(term) = output else {
        // Implicit: the broadcast axes, then every label seen exactly once, sorted.
        let mut axes: Vec<(Axis, Span)> = (0..num_broadcast).map(|b| (Axis::Broadcast(b), whole)).collect();
        let mut once: Vec<char> = label_count.iter().filter(|&(_, &n)| n == 1).map(|(&c, _)| c).collect();
        once.sort_unstable();
        axes.extend(once.into_iter().map(|c| (Axis::Label(c), whole)));
        return Ok(axes);
    };
    let mut axes = Vec::new();
    let mut seen: Vec<(char, Span)> = Vec::new();
    for item in &term.items {
        match *item {
            Item::Label(c, s) => {
                if !label_count.contains_key(&c) {
                    return Err(Diagnostic::error(
                        "einsum::output-label",
                        format!("output label `{c}` does not appear in any input"),
                    )
                    .label(s, "not in any input term")
                    .help("every output label must label an axis of some operand"));
                }
                if let Some(&(_, first)) = seen.iter().find(|&&(d, _)| d == c) {
                    return Err(Diagnostic::error(
                        "einsum::output-repeated",
                        format!("output label `{c}` appears more than once"),
                    )
                    .label(s, "repeated here")
                    .label(first, "first here")
                    .help("each output label names one axis; numpy has no output diagonals"));
                }
                seen.push((c, s));
                axes.push((Axis::Label(c), s));
            }
            Item::Ellipsis(s) => axes.extend((0..num_broadcast).map(|b| (Axis::Broadcast(b), s))),
        }
    }
    if term.ellipsis().is_none() && num_broadcast > 0 {
        // numpy never sums broadcast axes away implicitly, even those of size 1.
        let e = num_broadcast;
        let k = ellipsis_dims.iter().position(|&n| n == e).unwrap_or(0);
        let at = inputs.get(k).and_then(|t| t.ellipsis()).unwrap_or(whole);
        return Err(Diagnostic::error(
            "einsum::output-ellipsis",
            format!(
                "operand {k} has {} under `...` but the output has no `...`",
                count(e, "broadcast axis", "broadcast axes")
            ),
        )
        .label(term.span, "no `...` in the output")
        .label(at, format!("{} here", count(e, "axis", "axes")))
        .help("add `...` to the output, or label those axes to sum them"));
    }
    Ok(axes)
}

/// Merges one operand axis into its dim's size with numpy's broadcasting rule.
fn merge_size(dim: &mut DimInfo, axis: Axis, size: usize, k: usize, span: Span) -> Result<(), Diagnostic> {
    if size == 1 || size == dim.size {
        return Ok(());
    }
    if dim.size == 1 {
        dim.size = size;
        dim.set_at = (k, span);
        return Ok(());
    }
    let (k0, s0) = dim.set_at;
    let (code, what, help) = match axis {
        Axis::Label(c) => (
            "einsum::size-mismatch",
            format!("label `{c}`"),
            "the axes of one label must have equal sizes (or size 1, which broadcasts)",
        ),
        Axis::Broadcast(b) => (
            "einsum::broadcast",
            format!("`...` axis e{b}"),
            "`...` axes align on the right, as in numpy; aligned sizes must be equal or 1",
        ),
    };
    Err(Diagnostic::error(
        code,
        format!("{what} has size {} in operand {k0} but size {size} in operand {k}", dim.size),
    )
    .label(span, format!("size {size}"))
    .label(s0, format!("size {}", dim.size))
    .help(help))
}

/// Product of the nonzero sizes, or `None` past [`MAX_ELEMENTS`]; numpy counts an array
/// with a zero axis as too big when its other axes overflow, and so do we.
fn checked_elements(sizes: impl IntoIterator<Item = usize>) -> Option<u64> {
    sizes
        .into_iter()
        .filter(|&s| s != 0)
        .try_fold(1u64, |acc, s| acc.checked_mul(s as u64).filter(|&p| p <= MAX_ELEMENTS))
}

/// Refuses an operand with more elements than numpy's `npy_intp` can count: such an array
/// cannot exist. Nothing else is checked here (see the module docs).
fn check_overflow(shapes: &[&[usize]], whole: Span) -> Result<(), Diagnostic> {
    for (k, shape) in shapes.iter().enumerate() {
        if checked_elements(shape.iter().copied()).is_none() {
            return Err(Diagnostic::error(
                "einsum::too-large",
                format!("operand {k} (shape {shape:?}) has more than 2^63-1 elements"),
            )
            .label(whole, "sizes overflow")
            .help("no array has this many elements (numpy cannot create one either); use smaller operands"));
        }
    }
    Ok(())
}

/// Builds `fn einsum(op0, ..) -> out { out[..] = sum[..] op0[..] * .. }`.
#[allow(clippy::too_many_arguments)]
fn build(
    dims: &[DimInfo],
    op_axes: &[Vec<(Axis, Span)>],
    shapes: &[&[usize]],
    out_axes: &[(Axis, Span)],
    dim_of: &dyn Fn(Axis) -> usize,
    dtype: DType,
    parsed: &parse::Spec,
    whole: Span,
) -> tir::Function {
    let dim_size = |d: usize| Size::dim(DimId(d as u32));
    let mut tensors = Vec::with_capacity(shapes.len() + 1);
    for (k, (axes, shape)) in op_axes.iter().zip(shapes).enumerate() {
        let sizes: Vec<Size> = axes
            .iter()
            .zip(shape.iter())
            .map(|(&(a, _), &n)| {
                let d = dim_of(a);
                if n == dims[d].size {
                    dim_size(d)
                } else {
                    Size::one()
                }
            })
            .collect();
        tensors.push(decl(format!("op{k}"), TensorKind::Input, sizes, parsed.inputs[k].span));
    }
    let out_sizes = out_axes.iter().map(|&(a, _)| dim_size(dim_of(a))).collect();
    let out_span = parsed.output.as_ref().map_or(whole, |t| t.span);
    tensors.push(decl("out".to_string(), TensorKind::Output, out_sizes, out_span));

    let mut indices: Vec<IndexVar> = Vec::new();
    let mut new_index = |name: String, range: Size| {
        indices.push(IndexVar { name, range });
        IndexId(indices.len() as u32 - 1)
    };
    // The full-range index of each dim, and the range-1 stand-ins of broadcast axes.
    let mut full: Vec<Option<IndexId>> = vec![None; dims.len()];
    let mut unit: HashMap<(usize, usize), IndexId> = HashMap::new();
    let mut lhs = Vec::with_capacity(out_axes.len());
    for &(a, _) in out_axes {
        let d = dim_of(a);
        let i = new_index(dims[d].name.clone(), dim_size(d));
        full[d] = Some(i);
        lhs.push(vec![i]);
    }
    let mut factors = Vec::with_capacity(shapes.len());
    for (k, (axes, shape)) in op_axes.iter().zip(shapes).enumerate() {
        let mut pos = Vec::with_capacity(axes.len());
        for (&(a, _), &n) in axes.iter().zip(shape.iter()) {
            let d = dim_of(a);
            let i = if n == dims[d].size {
                *full[d].get_or_insert_with(|| new_index(dims[d].name.clone(), dim_size(d)))
            } else {
                *unit.entry((k, d)).or_insert_with(|| new_index(format!("{}_{k}", dims[d].name), Size::one()))
            };
            pos.push(vec![i]);
        }
        factors.push(Expr::Access(TensorId(k as u32), pos));
    }
    let rhs = if factors.len() == 1 { factors.remove(0) } else { Expr::Mul(factors) };
    let mut free = Vec::new();
    rhs.free_indices(&mut free);
    let on_left: Vec<IndexId> = lhs.iter().flatten().copied().collect();
    let reduced = free.into_iter().filter(|i| !on_left.contains(i)).collect();
    let n = shapes.len();
    let stmt =
        Stmt { target: TensorId(n as u32), lhs, op: ReduceOp::Sum, reduced, indices, rhs, span: whole };
    tir::Function {
        constants: Vec::new(),
        name: "einsum".to_string(),
        dtype,
        dims: dims.iter().map(|d| Dim { name: d.name.clone(), span: d.span }).collect(),
        tensors,
        inputs: (0..n).map(|k| TensorId(k as u32)).collect(),
        indices: Vec::new(),
        outputs: vec![TensorId(n as u32)],
        stmts: vec![stmt],
        span: whole,
    }
}

/// `1 axis`, `2 axes`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn decl(name: String, kind: TensorKind, shape: Vec<Size>, span: Span) -> TensorDecl {
    let factors = shape.iter().map(|s| vec![s.clone()]).collect();
    TensorDecl { name, kind, shape, factors, span }
}
