//! Peak memory, and slicing under a memory limit.
//!
//! Axes of tensors are linked through the indices of the steps that read or write
//! them (union-find over `(tensor, axis)`). Slicing one such class runs the steps that
//! touch it once per value of the index: every intermediate along the class shrinks by
//! its size, sums over it accumulate across iterations, and steps in between that do not
//! touch it are recomputed each time (the reported extra cost).

use super::{Plan, PlanError, Slice};
use crate::tir::{Bindings, Expr, TensorId, TensorKind};

/// Axis classes of the planned program.
struct Classes {
    parent: Vec<usize>,
    /// First node id of each tensor's axes.
    base: Vec<usize>,
}

impl Classes {
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// `find` without path compression, for shared borrows.
    fn root(&self, mut x: usize) -> usize {
        while self.parent[x] != x {
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb)] = ra.min(rb);
        }
    }
}

/// For each step, the `(tensor, axis, index)` triples of its plain (ungrouped) positions.
fn step_axes(plan: &Plan) -> Vec<Vec<(TensorId, usize, u32)>> {
    plan.program
        .stmts
        .iter()
        .map(|s| {
            let mut v = Vec::new();
            for (axis, p) in s.lhs.iter().enumerate() {
                if p.len() == 1 {
                    v.push((s.target, axis, p[0].0));
                }
            }
            reads(&s.rhs, &mut v);
            v
        })
        .collect()
}

/// The plain (ungrouped) positions of every tensor read, as `(tensor, axis, index)`.
fn reads(e: &Expr, out: &mut Vec<(TensorId, usize, u32)>) {
    e.for_each_access(&mut |t, pos| {
        for (axis, p) in pos.iter().enumerate() {
            if p.len() == 1 {
                out.push((t, axis, p[0].0));
            }
        }
    });
}

fn classes(plan: &Plan, axes: &[Vec<(TensorId, usize, u32)>]) -> Classes {
    let mut base = Vec::new();
    let mut n = 0;
    for t in &plan.program.tensors {
        base.push(n);
        n += t.shape.len();
    }
    let mut c = Classes { parent: (0..n).collect(), base };
    for step in axes {
        for (k, &(t, a, i)) in step.iter().enumerate() {
            for &(t2, a2, i2) in &step[..k] {
                if i == i2 {
                    let (x, y) = (c.base[t.index()] + a, c.base[t2.index()] + a2);
                    c.union(x, y);
                }
            }
        }
    }
    c
}

/// Bytes of each tensor with the given slices applied.
fn sliced_bytes(plan: &Plan, b: &Bindings, slices: &[(usize, Slice)], c: &mut Classes) -> Vec<f64> {
    let size = plan.program.dtype.size_of() as f64;
    let bytes = plan
        .program
        .tensors
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let mut bytes: f64 = t.shape.iter().map(|s| s.eval(b).unwrap_or(0) as f64).product::<f64>() * size;
            if t.kind == TensorKind::Temp {
                for (class, s) in slices {
                    if (0..t.shape.len()).any(|a| c.find(c.base[k] + a) == *class) {
                        bytes /= s.count.max(1) as f64;
                    }
                }
            }
            bytes
        })
        .collect();
    without_fused(plan, bytes)
}

/// The largest total of intermediates alive at once (each freed after its last use).
pub(super) fn peak_bytes(plan: &Plan, slices: &[(usize, Slice)]) -> u64 {
    let b = bindings_of(plan);
    let axes = step_axes(plan);
    let mut c = classes(plan, &axes);
    let bytes = sliced_bytes(plan, &b, slices, &mut c);
    peak_with(plan, &bytes)
}

/// Intermediates inside fusions take no memory: the fused kernel keeps a tile of them
/// per thread, a constant that the plan (which knows no threads) leaves out. Slicing
/// thus never cuts through a fusion.
fn without_fused(plan: &Plan, mut bytes: Vec<f64>) -> Vec<f64> {
    for u in &plan.fusions {
        for &k in &u.steps[..u.steps.len().saturating_sub(1)] {
            if let Some(s) = plan.program.stmts.get(k) {
                bytes[s.target.index()] = 0.0;
            }
        }
    }
    bytes
}

fn peak_with(plan: &Plan, bytes: &[f64]) -> u64 {
    peak_at(plan, bytes, &|_| 0.0).0 as u64
}

/// The largest total of intermediates alive at once, plus `extra(step)`, and the first
/// step where it occurs.
fn peak_at(plan: &Plan, bytes: &[f64], extra: &dyn Fn(usize) -> f64) -> (f64, usize) {
    let lt = Lifetimes::of(plan);
    let mut peak = (0.0f64, 0);
    for k in 0..plan.program.stmts.len() {
        let live: f64 = lt.live_during(plan, k).map(|t| bytes[t]).sum::<f64>() + extra(k);
        if live > peak.0 {
            peak = (live, k);
        }
    }
    peak
}

/// When each temporary is produced and last read, by step.
struct Lifetimes {
    produced: Vec<Option<usize>>,
    last_use: Vec<Option<usize>>,
}

impl Lifetimes {
    fn of(plan: &Plan) -> Lifetimes {
        let n = plan.program.tensors.len();
        let mut lt = Lifetimes { produced: vec![None; n], last_use: vec![None; n] };
        for (k, s) in plan.program.stmts.iter().enumerate() {
            lt.produced[s.target.index()].get_or_insert(k);
            let mut r = Vec::new();
            s.rhs.tensors(&mut r);
            for t in r {
                lt.last_use[t.index()] = Some(k);
            }
        }
        lt
    }

    /// The temporaries alive while step `k` runs: produced by then and read at or after
    /// it, or its own result.
    fn live_during<'a>(&'a self, plan: &'a Plan, k: usize) -> impl Iterator<Item = usize> + 'a {
        let target = plan.program.stmts[k].target.index();
        plan.program.tensors.iter().enumerate().filter_map(move |(t, d)| {
            let alive = matches!(self.produced[t], Some(p) if p <= k)
                && (self.last_use[t].is_some_and(|u| u >= k) || t == target);
            (d.kind == TensorKind::Temp && alive).then_some(t)
        })
    }
}

/// The plan's dims as bindings (the program's dims are in the same order).
fn bindings_of(plan: &Plan) -> Bindings {
    let mut b = Bindings::new(plan.dims.len());
    for (k, d) in plan.dims.iter().enumerate() {
        b.set(crate::tir::DimId(k as u32), d.size);
    }
    b
}

/// Slices until the intermediates alive at once fit `limit` bytes (the measure the
/// executor keeps to), or says why it cannot. Each round slices the largest
/// intermediate alive at the peak that can be sliced, along the axis that adds the
/// fewest FLOPs.
pub(super) fn slice_to_fit(plan: &mut Plan, b: &Bindings, limit: u64, nesting_cost: bool) -> Result<(), PlanError> {
    let mut c = classes(plan, &step_axes(plan));
    let mut chosen: Vec<(usize, Slice)> = Vec::new();
    for _ in 0..MAX_SLICE_LOOPS {
        // Hoisting reorders steps, so the per-step axes are read afresh each round.
        let axes = step_axes(plan);
        let bytes = sliced_bytes(plan, b, &chosen, &mut c);
        let (peak, at) = peak_at(plan, &bytes, &|k| in_loop_bytes(plan, &axes, &c, &chosen, &bytes, k));
        if peak <= limit as f64 {
            plan.peak_bytes = peak as u64;
            plan.slices = chosen.into_iter().map(|(_, s)| s).collect();
            plan.flops += plan.slices.iter().map(|s| s.extra_flops).sum::<f64>();
            plan.speedup = if plan.flops > 0.0 { plan.naive_flops / plan.flops } else { 1.0 };
            return Ok(());
        }
        let mut live: Vec<usize> = Lifetimes::of(plan).live_during(plan, at).collect();
        live.sort_by(|x, y| bytes[*y].total_cmp(&bytes[*x]));
        // Then the inputs the step reads, whose chunk copies a further loop shrinks.
        for &(t, _, _) in &axes[at] {
            if plan.program.tensors[t.index()].kind == TensorKind::Input && !live.contains(&t.index()) {
                live.push(t.index());
            }
        }
        let Some((class, slice)) = live.iter().find_map(|&t| best_slice(plan, b, &axes, &mut c, &chosen, t, nesting_cost)) else {
            let names: Vec<&str> = live
                .iter()
                .filter(|&&t| plan.program.tensors[t].kind == TensorKind::Temp)
                .map(|&t| plan.program.tensors[t].name.as_str())
                .collect();
            return Err(PlanError::Size(format!(
                "cannot fit under the memory limit of {}: step {at} needs {} even after slicing (intermediates alive: {}; with chunks of inputs and partial results)",
                super::print::human_bytes(limit),
                super::print::human_bytes(peak as u64),
                names.join(", ")
            )));
        };
        chosen.push((class, slice));
        hoist_invariants(plan, &mut c, &mut chosen);
    }
    Err(PlanError::Size(format!(
        "cannot fit under the memory limit of {} with up to {MAX_SLICE_LOOPS} slice loops",
        super::print::human_bytes(limit)
    )))
}

/// What step `k` holds beyond the live intermediates when it runs inside slice loops, as
/// the executor counts it: a copy of each input's chunk (a sliced view is copied when a
/// piece needs it contiguous), and for a step that reduces over a loop's index, its
/// partial result next to the accumulated one.
fn in_loop_bytes(
    plan: &Plan,
    axes: &[Vec<(TensorId, usize, u32)>],
    c: &Classes,
    chosen: &[(usize, Slice)],
    bytes: &[f64],
    k: usize,
) -> f64 {
    let loops: Vec<(usize, u64)> =
        chosen.iter().filter(|(_, s)| (s.first..=s.last).contains(&k)).map(|(class, s)| (*class, s.count.max(1))).collect();
    if loops.is_empty() {
        return 0.0;
    }
    let class_of = |t: TensorId, a: usize| c.root(c.base[t.index()] + a);
    let target = plan.program.stmts[k].target;
    let mut extra = 0.0;
    let mut copied: Vec<TensorId> = Vec::new();
    for &(t, a, _) in &axes[k] {
        let Some(&(_, count)) = loops.iter().find(|(class, _)| *class == class_of(t, a)) else { continue };
        let kind = plan.program.tensors[t.index()].kind;
        if t != target && matches!(kind, TensorKind::Input | TensorKind::Const) && !copied.contains(&t) {
            copied.push(t);
            let cut: u64 = loops
                .iter()
                .filter(|(class, _)| (0..plan.program.tensors[t.index()].shape.len()).any(|x| class_of(t, x) == *class))
                .map(|(_, n)| n)
                .product();
            extra += bytes[t.index()] / cut.max(count) as f64;
        }
    }
    let reduces = |j: usize, class: usize| {
        let target = plan.program.stmts[j].target;
        let on_target = (0..plan.program.tensors[target.index()].shape.len()).any(|x| class_of(target, x) == class);
        !on_target && axes[j].iter().any(|&(t, a, _)| t != target && class_of(t, a) == class)
    };
    if loops.iter().any(|&(class, _)| reduces(k, class)) {
        extra += bytes[target.index()];
    }
    // The accumulators of a loop's reduced results exist from its first iteration on.
    for (class, s) in chosen.iter().filter(|(_, s)| (s.first..=s.last).contains(&k)) {
        extra += (k + 1..=s.last).filter(|&j| reduces(j, *class)).map(|j| bytes[plan.program.stmts[j].target.index()]).sum::<f64>();
    }
    extra
}

/// `first..=last` widened until no chosen loop overlaps it without nesting.
fn nested_range(mut first: usize, mut last: usize, chosen: &[(usize, Slice)]) -> (usize, usize) {
    let mut changed = true;
    while changed {
        changed = false;
        for (_, s) in chosen {
            let crosses =
                (first < s.first && s.first <= last && last < s.last) || (s.first < first && first <= s.last && s.last < last);
            if crosses {
                (first, last) = (first.min(s.first), last.max(s.last));
                changed = true;
            }
        }
    }
    (first, last)
}

/// Most slice loops a plan gets.
const MAX_SLICE_LOOPS: usize = 8;

/// The slice over one axis of temporary `t` that adds the fewest FLOPs (the longest
/// among equals), with its class; `None` when no axis of `t` can be sliced.
fn best_slice(
    plan: &Plan,
    b: &Bindings,
    axes: &[Vec<(TensorId, usize, u32)>],
    c: &mut Classes,
    chosen: &[(usize, Slice)],
    t: usize,
    nesting_cost: bool,
) -> Option<(usize, Slice)> {
    let decl = &plan.program.tensors[t];
    let mut best: Option<(f64, u64, usize, Slice)> = None;
    for a in 0..decl.shape.len() {
        let class = c.find(c.base[t] + a);
        if chosen.iter().any(|(k, _)| *k == class) {
            continue;
        }
        let count = decl.shape[a].eval(b).unwrap_or(1);
        if count < 2 {
            continue;
        }
        let touching: Vec<usize> = axes
            .iter()
            .enumerate()
            .filter(|(_, st)| st.iter().any(|&(tt, aa, _)| c.find(c.base[tt.index()] + aa) == class))
            .map(|(k, _)| k)
            .collect();
        let (Some(&first), Some(&last)) = (touching.first(), touching.last()) else { continue };
        // A step that reduces over the sliced index accumulates across iterations, so
        // its result is complete only after the loop: nothing inside may read it.
        let in_class = |&(tt, aa, _): &(TensorId, usize, u32)| c.root(c.base[tt.index()] + aa) == class;
        let partial: Vec<TensorId> = (first..=last)
            .filter(|&k| {
                let s = &plan.program.stmts[k];
                let writes_class = axes[k].iter().any(|x| x.0 == s.target && in_class(x));
                let reads_class = axes[k].iter().any(|x| x.0 != s.target && in_class(x));
                reads_class && !writes_class
            })
            .map(|k| plan.program.stmts[k].target)
            .collect();
        let reads_partial = (first..=last).any(|k| {
            let mut r = Vec::new();
            plan.program.stmts[k].rhs.tensors(&mut r);
            r.iter().any(|t| {
                partial.contains(t) && plan.program.stmts.iter().position(|s| s.target == *t).is_some_and(|p| p < k)
            })
        });
        if reads_partial {
            continue;
        }
        // Loops that overlap without nesting run nested (the executor widens one to
        // contain the other), so the steps the widening takes in are recomputed too.
        let (lo, hi) = if nesting_cost { nested_range(first, last, chosen) } else { (first, last) };
        let extra: f64 = (lo..=hi)
            .filter(|k| !touching.contains(k))
            .map(|k| plan.steps[k].flops * (count - 1) as f64)
            .sum();
        let index = axes[first]
            .iter()
            .find(|&&(tt, aa, _)| c.find(c.base[tt.index()] + aa) == class)
            .map(|&(_, _, i)| plan.program.stmts[first].indices[i as usize].name.clone())
            .unwrap_or_else(|| format!("axis {a} of {}", decl.name));
        let slice = Slice { indices: vec![index], count, first, last, extra_flops: extra, axis: (TensorId(t as u32), a) };
        let better = match &best {
            None => true,
            Some((e, n, _, _)) => extra < *e || (extra == *e && count > *n),
        };
        if better {
            best = Some((extra, count, class, slice));
        }
    }
    best.map(|(_, _, class, slice)| (class, slice))
}

/// Moves steps that do not touch a slice's index and read nothing computed inside its
/// loop to just before the loop, so they run once instead of once per iteration; then
/// recomputes every slice's range and extra cost.
fn hoist_invariants(plan: &mut Plan, c: &mut Classes, chosen: &mut [(usize, Slice)]) {
    for &(class, _) in chosen.iter() {
        let axes = step_axes(plan);
        let touching: Vec<usize> = (0..axes.len())
            .filter(|&k| axes[k].iter().any(|&(t, a, _)| c.root(c.base[t.index()] + a) == class))
            .collect();
        let (Some(&first), Some(&last)) = (touching.first(), touching.last()) else { continue };
        let mut inside: Vec<TensorId> = Vec::new();
        let mut hoisted = Vec::new();
        let mut kept = Vec::new();
        for k in first..=last {
            let s = &plan.program.stmts[k];
            let mut reads = Vec::new();
            s.rhs.tensors(&mut reads);
            if !touching.contains(&k) && !reads.iter().any(|t| inside.contains(t)) {
                hoisted.push(k);
            } else {
                inside.push(s.target);
                kept.push(k);
            }
        }
        if hoisted.is_empty() {
            continue;
        }
        let order: Vec<usize> = (0..first).chain(hoisted.iter().copied()).chain(kept).chain(last + 1..axes.len()).collect();
        let stmts = std::mem::take(&mut plan.program.stmts);
        let steps = std::mem::take(&mut plan.steps);
        let mut stmts: Vec<Option<_>> = stmts.into_iter().map(Some).collect();
        let mut steps: Vec<Option<_>> = steps.into_iter().map(Some).collect();
        for &k in &order {
            if let (Some(s), Some(st)) = (stmts[k].take(), steps[k].take()) {
                plan.program.stmts.push(s);
                plan.steps.push(st);
            }
        }
    }
    // Ranges and costs of every slice after the reordering.
    let axes = step_axes(plan);
    for (class, slice) in chosen.iter_mut() {
        let touching: Vec<usize> = (0..axes.len())
            .filter(|&k| axes[k].iter().any(|&(t, a, _)| c.root(c.base[t.index()] + a) == *class))
            .collect();
        if let (Some(&first), Some(&last)) = (touching.first(), touching.last()) {
            slice.first = first;
            slice.last = last;
            slice.extra_flops = (first..=last)
                .filter(|k| !touching.contains(k))
                .map(|k| plan.steps[k].flops * (slice.count - 1) as f64)
                .sum::<f64>()
                + 0.0;
        }
    }
}

/// The axes and statement indices a slice loop runs over: every tensor axis linked to
/// the slice's axis through shared indices, and each statement's indices at them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceClass {
    /// `(tensor, axis)` pairs of the class.
    pub axes: Vec<(TensorId, usize)>,
    /// For each statement of the plan's program, its indices in the class.
    pub indices: Vec<Vec<crate::tir::IndexId>>,
}

/// The class of linked axes that `slice` runs over.
pub fn slice_class(plan: &Plan, slice: &Slice) -> SliceClass {
    let axes = step_axes(plan);
    let mut c = classes(plan, &axes);
    let (t, a) = slice.axis;
    let root = c.find(c.base[t.index()] + a);
    let mut members = Vec::new();
    for (k, decl) in plan.program.tensors.iter().enumerate() {
        for axis in 0..decl.shape.len() {
            if c.find(c.base[k] + axis) == root {
                members.push((TensorId(k as u32), axis));
            }
        }
    }
    let indices = axes
        .iter()
        .map(|step| {
            let mut v: Vec<crate::tir::IndexId> = Vec::new();
            for &(tt, aa, i) in step {
                if c.root(c.base[tt.index()] + aa) == root && !v.contains(&crate::tir::IndexId(i)) {
                    v.push(crate::tir::IndexId(i));
                }
            }
            v
        })
        .collect();
    SliceClass { axes: members, indices }
}
