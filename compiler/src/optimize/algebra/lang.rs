//! The e-graph language: tensor-valued terms with positional axes.
//!
//! An e-class is a tensor whose axes are ordered, not named. A node that reads other
//! classes says how their axes map onto its own through index labels, so the same
//! computation written with different index names (free or bound) is the same node and
//! hash-conses to one e-class: common subexpressions are shared by construction.
//!
//! The central node is [`TNode::Einsum`], `Σ_bound Π operands`, whose [`Spec`] is kept
//! canonical: output labels are `0..n_out` in axis order, bound labels follow in order
//! of first appearance, operands are sorted, constant operands are folded into one
//! coefficient. [`einsum`] builds such a node from operands with arbitrary labels.

use super::konst::{Konst, Ratio};
use crate::tir::{Bindings, Builtin, Size};
use egg::{Analysis, DidMerge, Id, Language};
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub type EG = egg::EGraph<TNode, TAnalysis>;

/// The index structure of a contraction: label `k` has size `sizes[k]`; labels
/// `0..n_out` are the output axes in order; operand `o` has one label per axis in
/// `ops[o]` (a label may repeat: a diagonal). Every other label is summed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Spec {
    pub sizes: Vec<Size>,
    pub n_out: usize,
    pub ops: Vec<Vec<u32>>,
}

impl Spec {
    /// True when the label is summed (not an output axis).
    pub fn is_bound(&self, l: u32) -> bool {
        l as usize >= self.n_out
    }

    pub fn has_bound(&self) -> bool {
        self.sizes.len() > self.n_out
    }

    /// One operand and nothing summed: a transpose, broadcast or diagonal, which costs
    /// nothing to evaluate.
    pub fn is_view(&self) -> bool {
        self.ops.len() == 1 && !self.has_bound()
    }
}

/// A shared [`Spec`] that hashes by a hash computed once: e-graph nodes are hashed and
/// compared constantly, and a spec holds symbolic sizes.
#[derive(Clone, Debug)]
pub struct SpecRef {
    hash: u64,
    spec: Arc<Spec>,
}

impl SpecRef {
    pub fn new(spec: Spec) -> SpecRef {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        spec.hash(&mut h);
        SpecRef { hash: h.finish(), spec: Arc::new(spec) }
    }
}

impl std::ops::Deref for SpecRef {
    type Target = Spec;
    fn deref(&self) -> &Spec {
        &self.spec
    }
}

impl Hash for SpecRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for SpecRef {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.spec, &other.spec) || self.spec == other.spec)
    }
}

impl Eq for SpecRef {}

impl PartialOrd for SpecRef {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SpecRef {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.hash.cmp(&other.hash).then_with(|| self.spec.cmp(&other.spec))
    }
}

/// A node of the e-graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TNode {
    /// A function input or compile-time constant (by tensor id), read whole.
    Input(u32),
    /// A scalar constant, as the bits of an f64.
    Num(u64),
    /// An exact scalar constant `num / den`, reduced (the canonical node of a class
    /// whose constant is a fraction, so that its exact value is not lost).
    Frac(i128, i128),
    /// `Σ_bound Π operands`; the children are the operands in `Spec::ops` order.
    Einsum(SpecRef, Vec<Id>),
    /// Elementwise sum of children of the same shape (sorted, repeats allowed).
    Add(Vec<Id>),
    /// Elementwise reciprocal.
    Recip([Id; 1]),
    /// Elementwise builtin (`Builtin::code`) of same-shape arguments.
    Call(u8, Vec<Id>),
    /// Splits each axis `p` of the child into axes of sizes `factors[p]` (row-major).
    Split(Arc<Vec<Vec<Size>>>, [Id; 1]),
    /// Merges consecutive child axes: output axis `q` flattens `groups[q]` of them.
    Merge(Arc<Vec<usize>>, [Id; 1]),
    /// A statement the pass does not rewrite (by statement index); the children are the
    /// values of the tensors it reads, which must exist under their names.
    Opaque(u32, Vec<Id>),
}

impl TNode {
    pub fn num(v: f64) -> TNode {
        TNode::Num(v.to_bits())
    }

    pub fn builtin(b: Builtin) -> u8 {
        b.code()
    }

    pub fn as_builtin(code: u8) -> Option<Builtin> {
        Builtin::from_code(code)
    }
}

impl Language for TNode {
    type Discriminant = std::mem::Discriminant<TNode>;

    fn discriminant(&self) -> Self::Discriminant {
        std::mem::discriminant(self)
    }

    fn matches(&self, other: &Self) -> bool {
        use TNode::*;
        match (self, other) {
            (Input(a), Input(b)) => a == b,
            (Num(a), Num(b)) => a == b,
            (Frac(a, b), Frac(c, d)) => a == c && b == d,
            (Einsum(s, c), Einsum(t, d)) => s == t && c.len() == d.len(),
            (Add(c), Add(d)) => c.len() == d.len(),
            (Recip(_), Recip(_)) => true,
            (Call(a, c), Call(b, d)) => a == b && c.len() == d.len(),
            (Split(f, _), Split(g, _)) => f == g,
            (Merge(f, _), Merge(g, _)) => f == g,
            (Opaque(a, c), Opaque(b, d)) => a == b && c.len() == d.len(),
            _ => false,
        }
    }

    fn children(&self) -> &[Id] {
        use TNode::*;
        match self {
            Input(_) | Num(_) | Frac(..) => &[],
            Einsum(_, c) | Add(c) | Call(_, c) | Opaque(_, c) => c,
            Recip(c) | Split(_, c) | Merge(_, c) => c,
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        use TNode::*;
        match self {
            Input(_) | Num(_) | Frac(..) => &mut [],
            Einsum(_, c) | Add(c) | Call(_, c) | Opaque(_, c) => c,
            Recip(c) | Split(_, c) | Merge(_, c) => c,
        }
    }
}

/// What every e-class knows: its shape and, when every element is the same known
/// number, that number.
#[derive(Clone, Debug, PartialEq)]
pub struct TData {
    pub shape: Vec<Size>,
    pub konst: Option<Konst>,
}

impl TData {
    /// The constant's f64 value, if the class is a known constant.
    pub fn value(&self) -> Option<f64> {
        self.konst.map(|k| k.value)
    }
}

/// The analysis: shapes and constants. It also holds what `make` needs to know about
/// the function (tensor shapes, dim values) and collects invariant violations, which
/// are always bugs and are reported after the run.
#[derive(Debug, Default)]
pub struct TAnalysis {
    /// Shape of every tensor of the function, by tensor id.
    pub tensor_shapes: Vec<Vec<Size>>,
    /// Target tensor of every opaque statement, by statement index.
    pub opaque_targets: Vec<Option<u32>>,
    pub bindings: Bindings,
    pub errors: Vec<String>,
    /// Rules add nothing once the e-graph has this many nodes (the runner checks its
    /// limit only between rules; this keeps one rule from overshooting it by much).
    pub node_budget: usize,
}

impl TAnalysis {
    /// The value of a size under the bindings, as f64 (dims are checked to be bound
    /// before the e-graph is built; an unbound one counts as 1).
    pub fn value(&self, s: &Size) -> f64 {
        s.syms.iter().fold(s.coeff as f64, |acc, d| acc * self.bindings.get(*d).unwrap_or(1) as f64)
    }

    /// The value of a size as an exact constant.
    pub fn konst(&self, s: &Size) -> Konst {
        let v = self.value(s);
        if v.abs() < (1u64 << 53) as f64 {
            Konst::from_ratio(Ratio::integer(v as i128))
        } else {
            Konst::from_f64(v)
        }
    }

    pub fn numel(&self, shape: &[Size]) -> f64 {
        shape.iter().map(|s| self.value(s)).product()
    }

    fn record(&mut self, msg: String) {
        if self.errors.len() < 16 {
            self.errors.push(msg);
        }
    }
}

fn product(sizes: &[Size]) -> Option<Size> {
    sizes.iter().try_fold(Size::one(), |acc, s| acc.mul(s))
}

impl Analysis<TNode> for TAnalysis {
    type Data = TData;

    fn make(eg: &mut EG, node: &TNode, _id: Id) -> TData {
        let data = |i: &Id| &eg[*i].data;
        let konsts = |ids: &[Id]| -> Option<Vec<Konst>> { ids.iter().map(|i| eg[*i].data.konst).collect() };
        match node {
            TNode::Input(t) => {
                let shape = eg.analysis.tensor_shapes.get(*t as usize).cloned().unwrap_or_default();
                TData { shape, konst: None }
            }
            TNode::Num(bits) => TData { shape: Vec::new(), konst: Some(Konst::from_f64(f64::from_bits(*bits))) },
            TNode::Frac(num, den) => {
                let konst = Ratio::new(*num, *den).map(Konst::from_ratio);
                TData { shape: Vec::new(), konst }
            }
            TNode::Einsum(spec, ids) => {
                let shape = spec.sizes[..spec.n_out.min(spec.sizes.len())].to_vec();
                let konst = konsts(ids).map(|cs| {
                    let bound = spec.sizes[spec.n_out.min(spec.sizes.len())..].iter().map(|s| eg.analysis.konst(s));
                    Konst::product(cs.into_iter().chain(bound))
                });
                TData { shape, konst }
            }
            TNode::Add(ids) => {
                let shape = ids.first().map(|i| data(i).shape.clone()).unwrap_or_default();
                TData { shape, konst: konsts(ids).map(Konst::sum) }
            }
            TNode::Recip([a]) => TData { shape: data(a).shape.clone(), konst: data(a).konst.map(Konst::recip) },
            TNode::Call(code, ids) => {
                let shape = ids.first().map(|i| data(i).shape.clone()).unwrap_or_default();
                let konst = match (TNode::as_builtin(*code), konsts(ids)) {
                    // L-Mul depends on the dtype, so it is never folded here.
                    (Some(Builtin::Lmul(_)), _) => None,
                    (Some(b), Some(cs)) if cs.len() == b.arity() => {
                        Some(Konst::from_f64(b.apply(cs[0].value, cs.get(1).map_or(0.0, |k| k.value))))
                    }
                    _ => None,
                };
                TData { shape, konst }
            }
            TNode::Split(factors, [a]) => {
                let shape = factors.iter().flatten().cloned().collect();
                TData { shape, konst: data(a).konst }
            }
            TNode::Merge(groups, [a]) => {
                let child = data(a).shape.clone();
                let mut shape = Vec::new();
                let mut at = 0;
                for &g in groups.iter() {
                    let end = (at + g).min(child.len());
                    shape.push(product(&child[at..end]).unwrap_or_else(Size::one));
                    at = end;
                }
                TData { shape, konst: data(a).konst }
            }
            TNode::Opaque(stmt, _) => {
                let target = eg.analysis.opaque_targets.get(*stmt as usize).copied().flatten();
                let shape = target
                    .and_then(|t| eg.analysis.tensor_shapes.get(t as usize))
                    .cloned()
                    .unwrap_or_default();
                TData { shape, konst: None }
            }
        }
    }

    fn merge(&mut self, a: &mut TData, b: TData) -> DidMerge {
        if a.shape != b.shape {
            self.record(format!("merged e-classes of different shapes {:?} and {:?}", a.shape, b.shape));
        }
        // An exact constant wins over an inexact one: both are the same number, one
        // of them folded with rounding.
        match (a.konst, b.konst) {
            (None, Some(c)) => {
                a.konst = Some(c);
                DidMerge(true, false)
            }
            (Some(x), Some(y)) if x.exact.is_none() && y.exact.is_some() => {
                a.konst = Some(y);
                DidMerge(true, false)
            }
            (Some(x), Some(y)) if x.exact.is_some() && y.exact.is_none() => DidMerge(false, true),
            (Some(_), None) => DidMerge(false, true),
            _ => DidMerge(false, false),
        }
    }

    /// A class with a known constant value gets the canonical constant node, so that
    /// extraction can always pick the literal.
    fn modify(eg: &mut EG, id: Id) {
        if let Some(c) = eg[id].data.konst {
            let shape = eg[id].data.shape.clone();
            let k = constant(eg, c, &shape);
            eg.union(id, k);
        }
    }
}

/// The scalar node of a constant: a fraction when it is an exact non-integer, else
/// its f64 value.
pub fn scalar(c: Konst) -> TNode {
    match c.exact.map(Ratio::parts) {
        Some((num, den)) if den != 1 => TNode::Frac(num, den),
        _ => TNode::num(c.value),
    }
}

/// The constant `c` with the given shape: a number, broadcast when the shape is not
/// scalar.
pub fn constant(eg: &mut EG, c: Konst, shape: &[Size]) -> Id {
    let num = eg.add(scalar(c));
    if shape.is_empty() {
        return num;
    }
    let spec = Spec { sizes: shape.to_vec(), n_out: shape.len(), ops: vec![Vec::new()] };
    eg.add(TNode::Einsum(SpecRef::new(spec), vec![num]))
}

/// Builds `Σ Π ops` with output axes `out`, summing every other label of the operands
/// and every label in `sum_over` (a summed label no operand uses multiplies by its
/// size). Labels are arbitrary and index `sizes`. The result is canonical: constant
/// operands fold into one coefficient, a zero coefficient or no operands give a
/// constant, and one operand read as it is gives that operand's class.
pub fn einsum(eg: &mut EG, sizes: &[Size], out: &[u32], ops: &[(Id, Vec<u32>)], sum_over: &[u32]) -> Result<Id, String> {
    let size = |l: u32| sizes.get(l as usize).cloned().ok_or_else(|| format!("label {l} has no size"));
    let out_set: BTreeSet<u32> = out.iter().copied().collect();
    if out_set.len() != out.len() {
        return Err(format!("output labels {out:?} repeat"));
    }
    let mut coef = Konst::from_f64(1.0);
    let mut kept: Vec<(Id, Vec<u32>)> = Vec::new();
    let mut bound: Vec<u32> = Vec::new();
    let note_bound = |l: u32, bound: &mut Vec<u32>| {
        if !out_set.contains(&l) && !bound.contains(&l) {
            bound.push(l);
        }
    };
    for (c, ls) in ops {
        let c = eg.find(*c);
        let d = &eg[c].data;
        if d.shape.len() != ls.len() {
            return Err(format!("operand of rank {} read with {} labels", d.shape.len(), ls.len()));
        }
        for (axis, &l) in ls.iter().enumerate() {
            if size(l)? != d.shape[axis] {
                return Err(format!("label {l} has size {:?} but the axis has {:?}", size(l)?, d.shape[axis]));
            }
            note_bound(l, &mut bound);
        }
        match d.konst {
            Some(k) => coef = coef.mul(k),
            None => kept.push((c, ls.clone())),
        }
    }
    for &l in sum_over {
        note_bound(l, &mut bound);
    }
    for &l in &bound {
        if !kept.iter().any(|(_, ls)| ls.contains(&l)) {
            coef = coef.mul(eg.analysis.konst(&size(l)?));
        }
    }
    let out_shape: Vec<Size> = out.iter().map(|&l| size(l)).collect::<Result<_, _>>()?;
    if coef.value == 0.0 || kept.is_empty() {
        return Ok(constant(eg, coef, &out_shape));
    }
    if coef.value != 1.0 {
        let k = eg.add(scalar(coef));
        kept.push((k, Vec::new()));
    }
    if kept.len() == 1 && kept[0].1 == out {
        return Ok(kept[0].0);
    }
    let (spec, ids) = canonical(sizes, out, &kept)?;
    Ok(eg.add(TNode::Einsum(SpecRef::new(spec), ids)))
}

/// Sorts operands and renumbers labels (outputs `0..n_out`, then bound labels by first
/// appearance) without folding anything. Operands given as `None` (a hole) sort last.
pub fn canonical<K: Ord + Copy>(sizes: &[Size], out: &[u32], ops: &[(K, Vec<u32>)]) -> Result<(Spec, Vec<K>), String> {
    let key = |ls: &Vec<u32>| -> Vec<u32> {
        ls.iter().map(|l| out.iter().position(|o| o == l).map_or(u32::MAX, |p| p as u32)).collect()
    };
    let mut sorted: Vec<&(K, Vec<u32>)> = ops.iter().collect();
    sorted.sort_by_key(|a| (a.0, key(&a.1)));
    let mut map: Vec<(u32, u32)> = out.iter().enumerate().map(|(k, &l)| (l, k as u32)).collect();
    let mut new_sizes: Vec<Size> = Vec::with_capacity(out.len());
    for &l in out {
        new_sizes.push(sizes.get(l as usize).cloned().ok_or_else(|| format!("label {l} has no size"))?);
    }
    let mut new_ops = Vec::with_capacity(sorted.len());
    let mut ids = Vec::with_capacity(sorted.len());
    for (id, ls) in sorted {
        let mut mapped = Vec::with_capacity(ls.len());
        for &l in ls {
            let m = match map.iter().find(|(x, _)| *x == l) {
                Some(&(_, m)) => m,
                None => {
                    let m = new_sizes.len() as u32;
                    new_sizes.push(sizes.get(l as usize).cloned().ok_or_else(|| format!("label {l} has no size"))?);
                    map.push((l, m));
                    m
                }
            };
            mapped.push(m);
        }
        new_ops.push(mapped);
        ids.push(*id);
    }
    Ok((Spec { sizes: new_sizes, n_out: out.len(), ops: new_ops }, ids))
}

/// Elementwise sum of same-shape classes (one term gives the term itself).
pub fn add(eg: &mut EG, terms: &[Id]) -> Result<Id, String> {
    let mut ids: Vec<Id> = terms.iter().map(|&t| eg.find(t)).collect();
    let first = *ids.first().ok_or("a sum needs a term")?;
    let shape = eg[first].data.shape.clone();
    if ids.iter().any(|&t| eg[t].data.shape != shape) {
        return Err("terms of a sum have different shapes".into());
    }
    if ids.len() == 1 {
        return Ok(first);
    }
    ids.sort();
    Ok(eg.add(TNode::Add(ids)))
}

/// Splits the axes of `x` into the given factors (row-major).
pub fn split(eg: &mut EG, x: Id, factors: Vec<Vec<Size>>) -> Result<Id, String> {
    let shape = eg[x].data.shape.clone();
    if shape.len() != factors.len() {
        return Err("split factors do not match the rank".into());
    }
    for (s, f) in shape.iter().zip(&factors) {
        if f.is_empty() || product(f).as_ref() != Some(s) {
            return Err(format!("split factors {f:?} do not multiply to {s:?}"));
        }
    }
    if factors.iter().all(|f| f.len() == 1) {
        return Ok(eg.find(x));
    }
    Ok(eg.add(TNode::Split(Arc::new(factors), [x])))
}

/// Merges consecutive axes of `x`, `groups[q]` of them into output axis `q`.
pub fn merge(eg: &mut EG, x: Id, groups: Vec<usize>) -> Result<Id, String> {
    let rank = eg[x].data.shape.len();
    if groups.iter().sum::<usize>() != rank || groups.contains(&0) {
        return Err(format!("merge groups {groups:?} do not cover rank {rank}"));
    }
    if groups.iter().all(|&g| g == 1) {
        return Ok(eg.find(x));
    }
    Ok(eg.add(TNode::Merge(Arc::new(groups), [x])))
}

/// Shapes must agree before two classes are declared equal; a mismatch is a bug in a
/// rule and is recorded instead of corrupting the e-graph.
pub fn union_checked(eg: &mut EG, a: Id, b: Id) -> bool {
    if eg[a].data.shape != eg[b].data.shape {
        let msg = format!("a rule equated shapes {:?} and {:?}", eg[a].data.shape, eg[b].data.shape);
        eg.analysis.record(msg);
        return false;
    }
    eg.union(a, b)
}

/// An einsum node opened up for editing, with the labels of its spec.
#[derive(Clone, Debug)]
pub struct Open {
    pub sizes: Vec<Size>,
    pub n_out: usize,
    pub ops: Vec<(Id, Vec<u32>)>,
}

impl Open {
    pub fn new(spec: &Spec, ids: &[Id]) -> Open {
        Open { sizes: spec.sizes.clone(), n_out: spec.n_out, ops: ids.iter().copied().zip(spec.ops.iter().cloned()).collect() }
    }

    pub fn out(&self) -> Vec<u32> {
        (0..self.n_out as u32).collect()
    }

    pub fn is_bound(&self, l: u32) -> bool {
        l as usize >= self.n_out
    }

    /// A new label of the given size.
    pub fn fresh(&mut self, size: Size) -> u32 {
        self.sizes.push(size);
        (self.sizes.len() - 1) as u32
    }

    /// The canonical node. Every bound label stays summed even when no operand reads it
    /// any more (inlining a broadcast drops labels): it then multiplies by its size.
    pub fn build(&self, eg: &mut EG) -> Option<Id> {
        let bound: Vec<u32> = (self.n_out as u32..self.sizes.len() as u32).collect();
        einsum(eg, &self.sizes, &self.out(), &self.ops, &bound).ok()
    }

    /// Indices of operands whose class is not a known constant.
    pub fn variable_ops(&self, eg: &EG) -> Vec<usize> {
        (0..self.ops.len()).filter(|&k| eg[self.ops[k].0].data.konst.is_none()).collect()
    }
}
