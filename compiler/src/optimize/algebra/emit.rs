//! Extraction → TIR. Every class the plan needs as a tensor becomes one statement:
//! outputs, tensors an opaque statement reads, classes read more than once, and
//! non-trivial classes whose domain is smaller than the expression that reads them
//! (so that nothing is recomputed per element of a larger loop). Everything else is
//! written inline: views and splits become index patterns, a contraction under an
//! elementwise parent becomes an inline `sum[..](..)`, reciprocals become divisions.

use super::build::Built;
use super::extract::Extraction;
use super::konst::Konst;
use super::lang::{Spec, TNode, EG};
use super::AlgebraError;
use crate::tir::{
    Cond, Expr, Function, IndexId, IndexVar, Position, ReduceOp, Size, Stmt, TensorDecl, TensorId, TensorKind,
};
use egg::{Id, Language};
use std::collections::{BTreeMap, HashMap, HashSet};

fn internal(msg: impl Into<String>) -> AlgebraError {
    AlgebraError::Internal(msg.into())
}

/// Index variables of the statement being written.
struct Vars {
    indices: Vec<IndexVar>,
    pool: Vec<String>,
}

impl Vars {
    fn new(pool: &[String]) -> Vars {
        Vars { indices: Vec::new(), pool: pool.to_vec() }
    }

    fn fresh(&mut self, range: Size) -> IndexId {
        let k = self.indices.len();
        let name = self.pool.get(k).cloned().unwrap_or_else(|| format!("i{k}"));
        self.indices.push(IndexVar { name, range });
        IndexId(k as u32)
    }
}

/// How the expression being written is evaluated around a class.
#[derive(Clone, Copy)]
struct Ctx {
    /// At the top of a statement: a contraction may use the statement's reduction.
    top: bool,
    /// Number of points the surrounding expression is evaluated at.
    domain: f64,
}

struct Emitter<'a> {
    f: &'a Function,
    eg: &'a EG,
    built: &'a Built,
    choice: &'a BTreeMap<Id, TNode>,
    uses: HashMap<Id, usize>,
    /// The tensor that holds a class, decided before or when it is written.
    home: HashMap<Id, TensorId>,
    /// Original temporaries with the same value as a class: their names are reused.
    old_temps: HashMap<Id, Vec<TensorId>>,
    done: HashSet<Id>,
    /// Temporaries written with the opposite sign (a negative multiple is stored
    /// positive and subtracted where read).
    negated: HashSet<Id>,
    in_progress: HashSet<Id>,
    defined: Vec<bool>,
    tensors: Vec<TensorDecl>,
    stmts: Vec<Stmt>,
    index_names: Vec<String>,
    temp_counter: usize,
}

/// Longest chain of classes written without a tensor in between.
const MAX_INLINE_DEPTH: usize = 24;

const INDEX_NAMES: [&str; 23] =
    ["i", "j", "k", "l", "p", "q", "r", "s", "t", "u", "v", "w", "a", "b", "c", "e", "g", "h", "m", "o", "x", "y", "z"];

pub fn emit(f: &Function, eg: &EG, built: &Built, ex: &Extraction) -> Result<Function, AlgebraError> {
    let taken: HashSet<&str> = f.dims.iter().map(|d| d.name.as_str()).chain(f.tensors.iter().map(|t| t.name.as_str())).collect();
    let index_names: Vec<String> = INDEX_NAMES.iter().filter(|n| !taken.contains(**n)).map(|n| n.to_string()).collect();
    let mut uses: HashMap<Id, usize> = HashMap::new();
    for node in ex.choice.values() {
        for &ch in node.children() {
            *uses.entry(eg.find(ch)).or_default() += 1;
        }
    }
    let mut old_temps: HashMap<Id, Vec<TensorId>> = HashMap::new();
    for (k, t) in f.tensors.iter().enumerate() {
        if t.kind == TensorKind::Temp {
            if let Some(Some(c)) = built.tensor_class.get(k) {
                old_temps.entry(eg.find(*c)).or_default().push(TensorId(k as u32));
            }
        }
    }
    let mut em = Emitter {
        f,
        eg,
        built,
        choice: &ex.choice,
        uses,
        home: HashMap::new(),
        old_temps,
        done: HashSet::new(),
        negated: HashSet::new(),
        in_progress: HashSet::new(),
        defined: f.tensors.iter().map(|t| super::build::is_leaf(t.kind)).collect(),
        tensors: f.tensors.clone(),
        stmts: Vec::new(),
        index_names,
        temp_counter: 0,
    };
    // Homes: an opaque statement defines its own target; then outputs, then the
    // tensors opaque statements read, each taking a class that has no home yet.
    for (&c, node) in ex.choice.iter() {
        if let TNode::Opaque(k, _) = node {
            let s = f.stmts.get(*k as usize).ok_or_else(|| internal("opaque statement out of range"))?;
            em.home.insert(c, s.target);
        }
    }
    for (&o, &r) in f.outputs.iter().zip(&built.roots) {
        em.home.entry(eg.find(r)).or_insert(o);
    }
    for node in ex.choice.values() {
        if let TNode::Opaque(k, kids) = node {
            let reads = em.opaque_reads(*k)?;
            for (&ch, &t) in kids.iter().zip(reads.iter()) {
                em.home.entry(eg.find(ch)).or_insert(t);
            }
        }
    }
    // Writing a class writes what it reads first, recursively. Going bottom-up, named
    // classes are written in order and a class far from any written one is written
    // too, so that recursion stays shallow however long the chain of statements.
    let mut depth: HashMap<Id, usize> = HashMap::new();
    for &c in &ex.order {
        let node = em.node(c)?.clone();
        let below = node.children().iter().map(|ch| depth.get(&eg.find(*ch)).copied().unwrap_or(0)).max().unwrap_or(0);
        let leaf = matches!(node, TNode::Input(_) | TNode::Num(_) | TNode::Frac(..));
        if !leaf && (em.home.contains_key(&c) || below + 1 >= MAX_INLINE_DEPTH) {
            em.materialize(c)?;
            depth.insert(c, 0);
        } else {
            depth.insert(c, below + 1);
        }
    }
    for (&o, &r) in f.outputs.iter().zip(&built.roots) {
        em.ensure_named(eg.find(r), o)?;
    }
    em.finish()
}

impl Emitter<'_> {
    fn opaque_reads(&self, k: u32) -> Result<Vec<TensorId>, AlgebraError> {
        self.built
            .opaque_reads
            .get(k as usize)
            .cloned()
            .flatten()
            .ok_or_else(|| internal("an opaque node without its reads"))
    }

    fn node(&self, c: Id) -> Result<&TNode, AlgebraError> {
        self.choice.get(&self.eg.find(c)).ok_or_else(|| internal(format!("class {c} has no chosen node")))
    }

    fn shape(&self, c: Id) -> &[Size] {
        &self.eg[c].data.shape
    }

    fn numel(&self, c: Id) -> f64 {
        self.eg.analysis.numel(self.shape(c))
    }

    fn konst(&self, c: Id) -> Option<f64> {
        self.eg[c].data.value()
    }

    /// Makes sure tensor `t` holds the value of class `c`, copying when the class
    /// already lives in another tensor.
    fn ensure_named(&mut self, c: Id, t: TensorId) -> Result<(), AlgebraError> {
        let h = self.materialize(c)?;
        if h == t || self.defined.get(t.index()).copied().unwrap_or(false) {
            return Ok(());
        }
        let mut vars = Vars::new(&self.index_names);
        let shape = self.shape(c).to_vec();
        let lhs: Vec<Position> = shape.into_iter().map(|s| vec![vars.fresh(s)]).collect();
        let read = Expr::Access(h, lhs.clone());
        let rhs = if self.negated.contains(&self.eg.find(c)) { Expr::Neg(Box::new(read)) } else { read };
        self.push(t, lhs, rhs, vars)
    }

    /// Writes the statement defining class `c` (after what it reads) and returns the
    /// tensor that holds it.
    fn materialize(&mut self, c: Id) -> Result<TensorId, AlgebraError> {
        let c = self.eg.find(c);
        if self.done.contains(&c) {
            return self.home.get(&c).copied().ok_or_else(|| internal("a written class without a tensor"));
        }
        if !self.in_progress.insert(c) {
            return Err(internal("the extracted terms form a cycle"));
        }
        let node = self.node(c)?.clone();
        let target = if let TNode::Opaque(k, kids) = &node {
            let reads = self.opaque_reads(*k)?;
            for (&ch, &t) in kids.iter().zip(reads.iter()) {
                self.ensure_named(ch, t)?;
            }
            let s = self.f.stmts.get(*k as usize).ok_or_else(|| internal("opaque statement out of range"))?.clone();
            let t = s.target;
            self.stmts.push(s);
            self.mark_defined(t);
            t
        } else {
            let named = self.home.contains_key(&c);
            let target = self.target_for(c, &node)?;
            let mut vars = Vars::new(&self.index_names);
            let (lhs, rhs) = match &node {
                TNode::Merge(groups, [x]) => {
                    let child_shape = self.shape(*x).to_vec();
                    let singles: Vec<Position> = child_shape.into_iter().map(|s| vec![vars.fresh(s)]).collect();
                    let mut lhs = Vec::new();
                    let mut it = singles.iter().flatten().copied();
                    for &g in groups.iter() {
                        lhs.push(it.by_ref().take(g).collect::<Vec<_>>());
                    }
                    let ctx = Ctx { top: true, domain: self.numel(*x) };
                    let rhs = self.class(*x, &singles, ctx, &mut vars)?;
                    (lhs, rhs)
                }
                _ => {
                    let shape = self.shape(c).to_vec();
                    let lhs: Vec<Position> = shape.into_iter().map(|s| vec![vars.fresh(s)]).collect();
                    let ctx = Ctx { top: true, domain: self.numel(c) };
                    let rhs = match &node {
                        TNode::Einsum(spec, ids) if !named && !spec.is_view() && self.coefficient(ids) < 0.0 => {
                            self.negated.insert(c);
                            self.einsum(spec, ids, &lhs, ctx, &mut vars, true)?
                        }
                        _ => self.node_expr(&node, &lhs, ctx, &mut vars)?,
                    };
                    (lhs, rhs)
                }
            };
            self.push(target, lhs, rhs, vars)?;
            target
        };
        self.in_progress.remove(&c);
        self.done.insert(c);
        self.home.insert(c, target);
        Ok(target)
    }

    fn mark_defined(&mut self, t: TensorId) {
        if let Some(d) = self.defined.get_mut(t.index()) {
            *d = true;
        }
    }

    /// The tensor a class is written to: its home, an original temporary with the same
    /// value, or a new temporary.
    fn target_for(&mut self, c: Id, node: &TNode) -> Result<TensorId, AlgebraError> {
        if let Some(&t) = self.home.get(&c) {
            return Ok(t);
        }
        if let Some(ts) = self.old_temps.get(&c) {
            if let Some(&t) = ts.iter().find(|t| !self.defined.get(t.index()).copied().unwrap_or(true)) {
                self.home.insert(c, t);
                return Ok(t);
            }
        }
        let shape = self.shape(c).to_vec();
        let factors = match node {
            TNode::Merge(groups, [x]) => {
                let child = self.shape(*x).to_vec();
                let mut out = Vec::new();
                let mut at = 0;
                for &g in groups.iter() {
                    out.push(child.get(at..at + g).ok_or_else(|| internal("merge groups out of range"))?.to_vec());
                    at += g;
                }
                out
            }
            _ => shape.iter().map(|s| vec![s.clone()]).collect(),
        };
        let name = loop {
            self.temp_counter += 1;
            let n = format!("t{}", self.temp_counter);
            if !self.tensors.iter().any(|t| t.name == n) && !self.f.dims.iter().any(|d| d.name == n) {
                break n;
            }
        };
        self.tensors.push(TensorDecl { name, kind: TensorKind::Temp, shape, factors, span: self.f.span });
        let t = TensorId((self.tensors.len() - 1) as u32);
        self.home.insert(c, t);
        Ok(t)
    }

    fn push(&mut self, target: TensorId, lhs: Vec<Position>, rhs: Expr, vars: Vars) -> Result<(), AlgebraError> {
        let lhs_ids: Vec<IndexId> = lhs.iter().flatten().copied().collect();
        let mut free = Vec::new();
        rhs.free_indices(&mut free);
        let reduced = free.into_iter().filter(|i| !lhs_ids.contains(i)).collect();
        let span = self.f.stmts.iter().find(|s| s.target == target).map_or(self.f.span, |s| s.span);
        self.stmts.push(Stmt { target, lhs, op: ReduceOp::Sum, reduced, indices: vars.indices, rhs, span });
        self.mark_defined(target);
        Ok(())
    }

    /// True when a class that has no tensor of its own is written inline where read.
    fn inline(&self, c: Id, node: &TNode, ctx: Ctx) -> bool {
        if self.home.contains_key(&c) {
            return false;
        }
        match node {
            TNode::Input(_) | TNode::Num(_) | TNode::Frac(..) | TNode::Split(..) => true,
            TNode::Merge(..) | TNode::Opaque(..) => false,
            TNode::Einsum(spec, ids) if spec.is_view() || self.is_scaling(spec, ids) => true,
            _ => self.uses.get(&c).copied().unwrap_or(0) <= 1 && (self.numel(c) - ctx.domain).abs() < 0.5,
        }
    }

    /// A constant times one operand read as it is.
    fn is_scaling(&self, spec: &Spec, ids: &[Id]) -> bool {
        if spec.has_bound() {
            return false;
        }
        let vars: Vec<usize> = (0..ids.len()).filter(|&k| self.konst(ids[k]).is_none()).collect();
        vars.len() == 1 && spec.ops[vars[0]].iter().enumerate().all(|(a, &l)| a == l as usize) && spec.ops[vars[0]].len() == spec.n_out
    }

    /// The expression reading class `c` at positions `pos` (one per axis).
    fn class(&mut self, c: Id, pos: &[Position], ctx: Ctx, vars: &mut Vars) -> Result<Expr, AlgebraError> {
        let c = self.eg.find(c);
        if let Some(k) = self.konst(c) {
            return Ok(Expr::Lit(k));
        }
        let node = self.node(c)?.clone();
        if self.inline(c, &node, ctx) {
            self.node_expr(&node, pos, ctx, vars)
        } else {
            let t = self.materialize(c)?;
            let read = Expr::Access(t, pos.to_vec());
            Ok(if self.negated.contains(&c) { Expr::Neg(Box::new(read)) } else { read })
        }
    }

    /// The product of an einsum's constant operands.
    fn coefficient(&self, ids: &[Id]) -> f64 {
        Konst::product(ids.iter().filter_map(|&i| self.eg[i].data.konst)).value
    }

    /// Follows inline views and splits down to the class they read.
    fn resolve(&self, c: Id, pos: &[Position]) -> Result<(Id, Vec<Position>), AlgebraError> {
        let mut c = self.eg.find(c);
        let mut pos = pos.to_vec();
        loop {
            if self.home.contains_key(&c) {
                return Ok((c, pos));
            }
            match self.node(c)? {
                TNode::Einsum(spec, ids) if spec.is_view() => {
                    pos = spec.ops[0].iter().map(|&l| pos.get(l as usize).cloned().unwrap_or_default()).collect();
                    c = self.eg.find(ids[0]);
                }
                TNode::Split(factors, [x]) => {
                    pos = split_positions(factors, &pos)?;
                    c = self.eg.find(*x);
                }
                _ => return Ok((c, pos)),
            }
        }
    }

    /// Like [`Self::class`] but a negative coefficient of an inline product is returned
    /// as a sign, so that a sum can write it as a subtraction.
    fn signed(&mut self, c: Id, pos: &[Position], ctx: Ctx, vars: &mut Vars) -> Result<(bool, Expr), AlgebraError> {
        let (r, rpos) = self.resolve(c, pos)?;
        let node = self.node(r)?.clone();
        if self.konst(r).is_none() {
            if let TNode::Einsum(spec, ids) = &node {
                if self.coefficient(ids) < 0.0 && self.inline(r, &node, ctx) {
                    return Ok((true, self.einsum(spec, ids, &rpos, ctx, vars, true)?));
                }
            }
            if !self.inline(r, &node, ctx) {
                let t = self.materialize(r)?;
                return Ok((self.negated.contains(&r), Expr::Access(t, rpos)));
            }
        }
        Ok((false, self.class(c, pos, ctx, vars)?))
    }

    fn node_expr(&mut self, node: &TNode, pos: &[Position], ctx: Ctx, vars: &mut Vars) -> Result<Expr, AlgebraError> {
        let inner = Ctx { top: false, domain: ctx.domain };
        match node {
            TNode::Input(t) => Ok(Expr::Access(TensorId(*t), pos.to_vec())),
            TNode::Num(bits) => Ok(Expr::Lit(f64::from_bits(*bits))),
            TNode::Frac(num, den) => Ok(Expr::Lit(*num as f64 / *den as f64)),
            TNode::Split(factors, [x]) => {
                let p = split_positions(factors, pos)?;
                self.class(*x, &p, ctx, vars)
            }
            TNode::Einsum(spec, ids) if spec.is_view() => {
                let p: Vec<Position> = spec.ops[0].iter().map(|&l| pos.get(l as usize).cloned().unwrap_or_default()).collect();
                self.class(ids[0], &p, ctx, vars)
            }
            TNode::Einsum(spec, ids) => self.einsum(spec, ids, pos, ctx, vars, false),
            TNode::Add(ids) => {
                let mut terms = Vec::with_capacity(ids.len());
                for &t in ids {
                    terms.push(self.signed(t, pos, inner, vars)?);
                }
                Ok(sum_expr(terms))
            }
            TNode::Recip([x]) => Ok(Expr::Div(Box::new(Expr::Lit(1.0)), Box::new(self.class(*x, pos, inner, vars)?))),
            TNode::Call(code, ids) => {
                let b = TNode::as_builtin(*code).ok_or_else(|| internal("unknown builtin"))?;
                let mut args = Vec::with_capacity(ids.len());
                for &a in ids {
                    args.push(self.class(a, pos, inner, vars)?);
                }
                Ok(Expr::Call(b, args))
            }
            TNode::Merge(..) | TNode::Opaque(..) => Err(internal("a merge or opaque node written inline")),
        }
    }

    /// `coef * Σ_bound Π operands`, with operands that do not depend on a summed
    /// index outside the sum and reciprocals written as divisions.
    fn einsum(
        &mut self,
        spec: &Spec,
        ids: &[Id],
        pos: &[Position],
        ctx: Ctx,
        vars: &mut Vars,
        negate: bool,
    ) -> Result<Expr, AlgebraError> {
        let mut label_pos: Vec<Position> = pos.to_vec();
        if label_pos.len() != spec.n_out {
            return Err(internal("a contraction read with the wrong number of positions"));
        }
        let bound_sizes = spec.sizes.get(spec.n_out..).ok_or_else(|| internal("a contraction with too few sizes"))?;
        let mut bound = Vec::new();
        for s in bound_sizes {
            let v = vars.fresh(s.clone());
            bound.push(v);
            label_pos.push(vec![v]);
        }
        // An inline product is evaluated at every point of the expression around it,
        // which may be larger than its own output (a scaling or a broadcast).
        let own: f64 = spec.sizes[..spec.n_out].iter().map(|s| self.eg.analysis.value(s)).product();
        let scale = (ctx.domain / own.max(1.0)).max(1.0);
        let out_numel = own * scale;
        let full_numel: f64 = spec.sizes.iter().map(|s| self.eg.analysis.value(s)).product::<f64>() * scale;
        let mut coef = Konst::from_f64(if negate { -1.0 } else { 1.0 });
        // (touches a summed label, is a reciprocal read inline, class, positions)
        let mut ops: Vec<(bool, bool, Id, Vec<Position>)> = Vec::new();
        for (k, &id) in ids.iter().enumerate() {
            let labels = spec.ops.get(k).ok_or_else(|| internal("operand without labels"))?;
            if let Some(v) = self.eg[id].data.konst {
                coef = coef.mul(v);
                continue;
            }
            let touches = labels.iter().any(|&l| spec.is_bound(l));
            let p = labels
                .iter()
                .map(|&l| label_pos.get(l as usize).cloned())
                .collect::<Option<Vec<Position>>>()
                .ok_or_else(|| internal("an operand label without a size"))?;
            let id = self.eg.find(id);
            let node = self.node(id)?.clone();
            // A reciprocal read once divides where it is read: one division per element
            // costs what the multiplication by a stored reciprocal would.
            let single = !self.home.contains_key(&id) && self.uses.get(&id).copied().unwrap_or(0) <= 1;
            match node {
                TNode::Recip([x]) if single => ops.push((touches, true, x, p)),
                _ => ops.push((touches, false, id, p)),
            }
        }
        let split_out = !bound.is_empty() && (!ctx.top || ops.iter().any(|o| !o.0));
        let mut numer = Vec::new();
        let mut denom = Vec::new();
        let mut inner_numer = Vec::new();
        let mut inner_denom = Vec::new();
        for (touches, recip, id, p) in ops {
            let inside = split_out && touches;
            let domain = if touches { full_numel } else { out_numel };
            let e = self.class(id, &p, Ctx { top: false, domain }, vars)?;
            match (inside, recip) {
                (true, false) => inner_numer.push(e),
                (true, true) => inner_denom.push(e),
                (false, false) => numer.push(e),
                (false, true) => denom.push(e),
            }
        }
        // A summed label can vanish from the emitted text (an operand that is constant
        // along it, such as `min(x[i], 0)` read at [i, j]). A statement reduces only the
        // indices its text uses and the planner hoists an inline sum by its body's free
        // indices, so the label's multiplicity goes into the coefficient instead.
        let mut free = Vec::new();
        let (summed, summed_den) = if split_out { (&inner_numer, &inner_denom) } else { (&numer, &denom) };
        summed.iter().chain(summed_den).for_each(|e| e.free_indices(&mut free));
        let mut kept = Vec::new();
        for (k, &v) in bound.iter().enumerate() {
            if free.contains(&v) {
                kept.push(v);
            } else {
                coef = coef.mul(self.eg.analysis.konst(&bound_sizes[k]));
            }
        }
        if split_out {
            let body = product(1.0, inner_numer, inner_denom);
            numer.push(if kept.is_empty() { body } else { Expr::Reduce(ReduceOp::Sum, kept, Box::new(body)) });
        }
        Ok(product(coef.value, numer, denom))
    }

    /// Assembles the function: drops original temporaries nothing uses any more
    /// (keeping every id up to the last input or output, so those ids stay) and renumbers.
    fn finish(self) -> Result<Function, AlgebraError> {
        let f = self.f;
        let mut used = vec![false; self.tensors.len()];
        let mark = |t: TensorId, used: &mut Vec<bool>| {
            if let Some(u) = used.get_mut(t.index()) {
                *u = true;
            }
        };
        for t in f.inputs.iter().chain(&f.outputs).copied().chain(f.constants.iter().map(|c| c.tensor)) {
            mark(t, &mut used);
        }
        for s in &self.stmts {
            mark(s.target, &mut used);
            let mut read = Vec::new();
            s.rhs.tensors(&mut read);
            for t in read {
                mark(t, &mut used);
            }
        }
        let last_io = f.inputs.iter().chain(&f.outputs).map(|t| t.index()).max().unwrap_or(0);
        let mut map = vec![None; self.tensors.len()];
        let mut tensors = Vec::new();
        for (k, decl) in self.tensors.into_iter().enumerate() {
            if k <= last_io || used[k] {
                map[k] = Some(TensorId(tensors.len() as u32));
                tensors.push(decl);
            }
        }
        let remap = |t: TensorId| map.get(t.index()).copied().flatten().ok_or_else(|| internal("a dropped tensor is read"));
        let mut stmts = Vec::with_capacity(self.stmts.len());
        for mut s in self.stmts {
            s.target = remap(s.target)?;
            s.rhs = remap_expr(&s.rhs, &remap)?;
            stmts.push(s);
        }
        let mut constants = f.constants.clone();
        for c in &mut constants {
            c.tensor = remap(c.tensor)?;
        }
        Ok(Function {
            constants,
            name: f.name.clone(),
            dtype: f.dtype,
            dims: f.dims.clone(),
            tensors,
            inputs: f.inputs.clone(),
            indices: f.indices.clone(),
            outputs: f.outputs.clone(),
            stmts,
            span: f.span,
        })
    }
}

/// Positions of a split's child: each child axis reads its factor axes as one group.
fn split_positions(factors: &[Vec<Size>], pos: &[Position]) -> Result<Vec<Position>, AlgebraError> {
    let mut out = Vec::with_capacity(factors.len());
    let mut at = 0;
    for f in factors {
        let group: Position = pos.get(at..at + f.len()).ok_or_else(|| internal("split read with too few positions"))?.concat();
        out.push(group);
        at += f.len();
    }
    Ok(out)
}

/// `coef * Π numer / Π denom`, with -1 written as a negation.
fn product(coef: f64, numer: Vec<Expr>, denom: Vec<Expr>) -> Expr {
    let mut fs = Vec::with_capacity(numer.len() + 1);
    if coef != 1.0 && coef != -1.0 {
        fs.push(Expr::Lit(coef));
    }
    fs.extend(numer);
    let mut e = match fs.len() {
        0 => Expr::Lit(1.0),
        1 => fs.remove(0),
        _ => Expr::Mul(fs),
    };
    if !denom.is_empty() {
        let d = if denom.len() == 1 { denom.into_iter().next().unwrap_or(Expr::Lit(1.0)) } else { Expr::Mul(denom) };
        e = Expr::Div(Box::new(e), Box::new(d));
    }
    if coef == -1.0 {
        e = Expr::Neg(Box::new(e));
    }
    e
}

/// A sum of signed terms: positive ones added, negative ones subtracted.
fn sum_expr(terms: Vec<(bool, Expr)>) -> Expr {
    let mut pos: Vec<Expr> = Vec::new();
    let mut neg: Vec<Expr> = Vec::new();
    for (n, e) in terms {
        if n {
            neg.push(e)
        } else {
            pos.push(e)
        }
    }
    let mut acc = match pos.len() {
        0 => None,
        1 => pos.pop(),
        _ => Some(Expr::Add(pos)),
    };
    for e in neg {
        acc = Some(match acc {
            None => Expr::Neg(Box::new(e)),
            Some(a) => Expr::Sub(Box::new(a), Box::new(e)),
        });
    }
    acc.unwrap_or(Expr::Lit(0.0))
}

fn remap_expr(e: &Expr, m: &dyn Fn(TensorId) -> Result<TensorId, AlgebraError>) -> Result<Expr, AlgebraError> {
    let r = |x: &Expr| remap_expr(x, m).map(Box::new);
    let all = |xs: &[Expr]| xs.iter().map(|x| remap_expr(x, m)).collect::<Result<Vec<_>, _>>();
    Ok(match e {
        Expr::Lit(_) | Expr::Size(_) | Expr::Index(_) => e.clone(),
        Expr::Access(t, pos) => Expr::Access(m(*t)?, pos.clone()),
        Expr::Gather(t, pos) => {
            let mut failed = None;
            let pos = pos
                .iter()
                .map(|p| {
                    p.map_tensor(&mut |u| {
                        m(u).unwrap_or_else(|e| {
                            failed = Some(e);
                            u
                        })
                    })
                })
                .collect();
            if let Some(e) = failed {
                return Err(e);
            }
            Expr::Gather(m(*t)?, pos)
        }
        Expr::Neg(a) => Expr::Neg(r(a)?),
        Expr::Add(xs) => Expr::Add(all(xs)?),
        Expr::Mul(xs) => Expr::Mul(all(xs)?),
        Expr::Sub(a, b) => Expr::Sub(r(a)?, r(b)?),
        Expr::Div(a, b) => Expr::Div(r(a)?, r(b)?),
        Expr::Call(b, xs) => Expr::Call(*b, all(xs)?),
        Expr::Select(c, a, b) => Expr::Select(Box::new(remap_cond(c, m)?), r(a)?, r(b)?),
        Expr::Reduce(op, ids, body) => Expr::Reduce(*op, ids.clone(), r(body)?),
    })
}

fn remap_cond(c: &Cond, m: &dyn Fn(TensorId) -> Result<TensorId, AlgebraError>) -> Result<Cond, AlgebraError> {
    Ok(match c {
        Cond::Cmp(op, a, b) => Cond::Cmp(*op, remap_expr(a, m)?, remap_expr(b, m)?),
        Cond::And(cs) => Cond::And(cs.iter().map(|x| remap_cond(x, m)).collect::<Result<_, _>>()?),
        Cond::Or(cs) => Cond::Or(cs.iter().map(|x| remap_cond(x, m)).collect::<Result<_, _>>()?),
        Cond::Not(x) => Cond::Not(Box::new(remap_cond(x, m)?)),
    })
}
