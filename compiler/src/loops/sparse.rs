//! Contractions with a compile-time constant operand (`cg(l1, l2, l3)`), unrolled by the
//! constant's nonzeros, so that the executed work is the plan's FLOPs (which count only
//! the nonzeros) on every backend.
//!
//! For `out[b, c, m] = Σ_{s,t} X[b, t, c, s] C[s, t, m]` the kernel loops over the indices
//! the constant does not have (`b`, `c`) and, per iteration, stores every entry of the
//! constant's own output indices (`m`) as the sum over the nonzeros `C[s, t, m] = v` of
//! `v · X[b, t, c, s]`, with `s` and `t` folded into the addresses as constants. An
//! output entry no nonzero reaches is stored as zero. Reduced indices the constant does
//! not have stay a loop, with one accumulator per output entry of the constant.

use super::lower::{internal, KernelBuilder, Lowerer, R};
use super::*;
use crate::tir::{self, IndexId, ReduceOp, TensorId, TensorKind};

impl Lowerer<'_> {
    /// The step as a loop kernel unrolled over its constant operand's nonzeros, or None
    /// when it has no constant operand that `Constant::unrolled` admits.
    pub(super) fn sparse(&mut self, s: &tir::Stmt, steps: &[usize]) -> R<Option<LoopKernel>> {
        let tir::Expr::Mul(xs) = &s.rhs else { return Ok(None) };
        if s.op != ReduceOp::Sum && !s.reduced.is_empty() {
            return Ok(None);
        }
        let mut konst: Option<(TensorId, &[tir::Position])> = None;
        let mut operands: Vec<(TensorId, &[tir::Position])> = Vec::new();
        let mut scale = 1.0;
        for x in xs {
            match x {
                tir::Expr::Access(t, pos) if self.f.tensor(*t).kind == TensorKind::Const => {
                    if konst.is_some() {
                        return Ok(None);
                    }
                    konst = Some((*t, pos));
                }
                tir::Expr::Access(t, pos) => operands.push((*t, pos)),
                other => match other.const_value(self.b) {
                    Some(v) => scale *= v,
                    None => return Ok(None),
                },
            }
        }
        let Some((ct, cpos)) = konst else { return Ok(None) };
        let Some(c) = self.f.constant(ct) else { return internal("a constant tensor without values") };
        if !c.unrolled() {
            return Ok(None);
        }
        // One plain index per position, none repeated: a diagonal read of a constant
        // stays dense.
        let mut cidx: Vec<IndexId> = Vec::new();
        for p in cpos {
            match p.as_slice() {
                [i] if !cidx.contains(i) => cidx.push(*i),
                _ => return Ok(None),
            }
        }
        let cbuf = self.buf(ct)?;
        let cshape = self.bufs[cbuf.index()].shape.clone();
        let target = self.buf(s.target)?;
        let lhs: Vec<IndexId> = s.lhs.iter().flatten().copied().collect();
        let outer: Vec<IndexId> = lhs.iter().copied().filter(|i| !cidx.contains(i)).collect();
        let inner: Vec<IndexId> = s.reduced.iter().copied().filter(|i| !cidx.contains(i)).collect();
        // The constant's indices that the result has, in the constant's order: each value
        // of them is one output entry per iteration of the outer loops.
        let kept: Vec<usize> = (0..cidx.len()).filter(|&p| lhs.contains(&cidx[p])).collect();
        let entries: usize = kept.iter().map(|&p| cshape[p]).product();

        let mut k = KernelBuilder::new(self.bufs[target.index()].name.clone(), steps.to_vec(), s.indices.len());
        for &i in outer.iter().chain(&inner) {
            let extent = self.range(s, i)?;
            k.declare(s, i, extent);
        }
        // Element strides of the result and of every other operand, split into the part
        // the loops address and the part the constant's indices fix.
        let (_, out_st) = self.strides(s, s.target, &s.lhs)?;
        let mut reads = Vec::new();
        for (t, pos) in &operands {
            let (buf, st) = self.strides(s, *t, pos)?;
            reads.push((buf, st));
        }
        let fixed = |st: &[(IndexId, i64)], values: &[usize]| -> i64 {
            st.iter().filter_map(|(i, v)| cidx.iter().position(|c| c == i).map(|p| v * values[p] as i64)).sum()
        };
        let at = |k: &KernelBuilder, st: &[(IndexId, i64)], values: &[usize]| -> Affine {
            let mut a = k.affine(&st.iter().copied().filter(|(i, _)| !cidx.contains(i)).collect::<Vec<_>>());
            a.offset += fixed(st, values);
            a
        };

        // Every nonzero, by the output entry it adds to.
        let mut terms: Vec<Vec<(Vec<usize>, f64)>> = vec![Vec::new(); entries];
        for (flat, &v) in c.values.iter().enumerate() {
            if v == 0.0 {
                continue;
            }
            let mut values = vec![0; cshape.len()];
            let mut rest = flat;
            for p in (0..cshape.len()).rev() {
                values[p] = rest % cshape[p];
                rest /= cshape[p];
            }
            let entry = kept.iter().fold(0, |e, &p| e * cshape[p] + values[p]);
            terms[entry].push((values, v));
        }

        let mut before = Vec::new();
        let mut body = Vec::new();
        let mut after = Vec::new();
        for (entry, group) in terms.iter().enumerate() {
            // The values of the kept indices of this entry (the others do not matter for
            // the result's address).
            let mut values = vec![0; cshape.len()];
            let mut rest = entry;
            for &p in kept.iter().rev() {
                values[p] = rest % cshape[p];
                rest /= cshape[p];
            }
            let index = at(&k, &out_st, &values);
            if group.is_empty() {
                after.push(Stmt::Store { buf: target, index, value: Expr::Const(0.0) });
                continue;
            }
            let acc = k.var("acc");
            before.push(Stmt::Let { var: acc, value: Expr::Const(0.0) });
            for (values, v) in group {
                let mut value = Expr::Const(scale * v);
                for (buf, st) in &reads {
                    value = Expr::bin(BinOp::Mul, value, Expr::Load(*buf, at(&k, st, values)));
                }
                body.push(Stmt::Update { var: acc, op: Accum::Sum, value });
            }
            after.push(Stmt::Store { buf: target, index, value: Expr::Var(acc) });
        }
        let mut block = before;
        block.extend(k.nest(&inner, body, false));
        block.extend(after);
        let elems = self.bufs[target.index()].len();
        let parallel = elems > 0 && k.splits(&outer);
        k.k.body = k.nest(&outer, block, parallel);
        Ok(Some(k.k))
    }
}
