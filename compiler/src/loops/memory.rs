//! Program-level passes over kernels: row fusion and the memory plan.

use super::*;

/// Where a buffer is used: the kernels that first and last touch it.
fn lifetimes(p: &Program) -> Vec<Option<(usize, usize)>> {
    let mut life: Vec<Option<(usize, usize)>> = vec![None; p.bufs.len()];
    let mut touch = |b: BufId, k: usize| {
        let e = &mut life[b.index()];
        *e = Some(match *e {
            None => (k, k),
            Some((a, _)) => (a, k),
        });
    };
    for (k, kern) in p.kernels.iter().enumerate() {
        kern.buffers_used().into_iter().for_each(|b| touch(b, k));
    }
    life
}

/// Where each buffer is alive in execution order: from the first to the last kernel that
/// touches it, where a kernel of a tile group spans the whole group.
pub(super) fn live_ranges(p: &Program) -> Vec<Option<(usize, usize)>> {
    let span = |k: usize| p.tiles.iter().find(|g| (g.first..=g.last).contains(&k)).map_or((k, k), |g| (g.first, g.last));
    // Groups are disjoint runs of kernels, so spans grow with the kernel index and the
    // first and last use bound every use in between.
    lifetimes(p).into_iter().map(|life| life.map(|(first, last)| (span(first).0, span(last).1))).collect()
}

/// Bytes of tile intermediates one thread keeps: about half of a core's L2 cache, so a
/// tile stays in cache between the kernels that write and read it.
const TILE_BYTES: usize = 1 << 20;

/// How a tile group writes a buffer: row r is `r·stride + x` for x inside the row
/// (`other == None`: 0 <= x < stride), or for a GEMM's C `r·stride + y·other.0` with
/// y < other.1.
#[derive(Clone, Copy, Debug)]
struct Rows {
    buf: BufId,
    stride: i64,
    other: Option<(i64, usize)>,
}

/// The dimension of GEMM `g` to slice by rows, if operands written inside the group are
/// read row by row and the GEMM has no loops around it.
fn gemm_role(g: &Gemm, rows: usize, written: &[Rows]) -> Option<TileRole> {
    let find = |b: BufId| written.iter().find(|x| x.buf == b);
    // An operand written inside the group must be read along its rows: `s` its stride
    // per row, `t` and `e` the stride and extent of the other dimension it reads.
    let fits = |b: BufId, s: isize, t: isize, e: usize| match find(b) {
        None => true,
        Some(Rows { stride, other: None, .. }) => {
            *stride == s as i64 && t >= 0 && (t as i64) * (e.max(1) as i64 - 1) < *stride
        }
        Some(_) => false,
    };
    if !g.outer.is_empty() || find(g.c).is_some() {
        return None;
    }
    if g.m == rows && fits(g.a, g.a_strides[0], g.a_strides[1], g.k) && find(g.b).is_none() {
        return Some(TileRole::M);
    }
    if g.n == rows && fits(g.b, g.b_strides[1], g.b_strides[0], g.k) && find(g.a).is_none() {
        return Some(TileRole::N);
    }
    None
}

/// What a GEMM of the group writes, by rows of its sliced dimension.
fn gemm_rows(g: &Gemm, role: TileRole) -> Rows {
    match role {
        TileRole::M => Rows { buf: g.c, stride: g.c_strides[0] as i64, other: Some((g.c_strides[1] as i64, g.n)) },
        TileRole::N => Rows { buf: g.c, stride: g.c_strides[1] as i64, other: Some((g.c_strides[0] as i64, g.m)) },
    }
}

/// Runs of kernels `[GEMM] loops [GEMM loops]...` over one row index (softmax attention:
/// scores, the row-wise softmax, the product with V, the normalisation) become a tile
/// group: each thread runs all of them on a tile of rows at a time, so the n×n
/// intermediates exist one tile per thread and stay in cache between the kernels.
pub(super) fn tile_groups(p: &mut Program) {
    let life = lifetimes(p);
    let mut k = 0;
    while k < p.kernels.len() {
        match try_group(p, k, &life) {
            Some(g) => {
                k = g.last + 1;
                for &b in &g.local {
                    let row = p.bufs[b.index()].shape.iter().skip(1).product();
                    p.bufs[b.index()].kind = BufKind::Tile { row };
                }
                p.tiles.push(g);
            }
            None => k += 1,
        }
    }
}

/// The tile group around the loop kernel `k`, if the kernels around it fit the pattern.
fn try_group(p: &Program, k: usize, life: &[Option<(usize, usize)>]) -> Option<TileGroup> {
    let Kernel::Loops(lk) = &p.kernels[k] else { return None };
    let (_, rows) = lk.parallel_loop()?;
    if rows < 2 {
        return None;
    }
    let mut written: Vec<Rows> = Vec::new();
    let mut roles = Vec::new();
    let mut first = k;
    if let Some(Kernel::Gemm(g)) = k.checked_sub(1).map(|j| &p.kernels[j]) {
        if let Some(role) = gemm_role(g, rows, &written) {
            written.push(gemm_rows(g, role));
            roles.push(Some(role));
            first = k - 1;
        }
    }
    let mut last;
    let mut j = k;
    loop {
        let Kernel::Loops(l) = &p.kernels[j] else { return None };
        match loops_rows(l, rows, &written) {
            Some(w) => written.extend(w),
            None if j == k => return None,
            None => {
                // The group ends before this loop kernel and the GEMM that feeds it.
                roles.pop();
                written.pop();
                last = j - 2;
                break;
            }
        }
        roles.push(None);
        last = j;
        let (Some(Kernel::Gemm(g)), Some(Kernel::Loops(_))) = (p.kernels.get(j + 1), p.kernels.get(j + 2)) else { break };
        let Some(role) = gemm_role(g, rows, &written) else { break };
        written.push(gemm_rows(g, role));
        roles.push(Some(role));
        j += 2;
    }
    if last == first {
        return None;
    }
    // Intermediates used only inside the group whose rows are their outermost dimension
    // need only a tile per thread.
    let mut local = Vec::new();
    for w in &written {
        let buf = &p.bufs[w.buf.index()];
        let inside = life[w.buf.index()].is_some_and(|(f, l)| f >= first && l <= last);
        let outermost = buf.shape.first() == Some(&rows) && w.stride as usize * rows == buf.len();
        if matches!(buf.kind, BufKind::Temp { .. }) && inside && outermost && !local.contains(&w.buf) {
            local.push(w.buf);
        }
    }
    let row_bytes: usize = local.iter().map(|b| p.bufs[b.index()].len() / rows * p.dtype.size_of()).sum();
    if local.is_empty() || row_bytes == 0 {
        return None;
    }
    // A multiple of 16 rows keeps the GEMMs on whole register tiles, and at least four
    // tiles keep both cores busy (tiles are the group's only parallelism).
    let tile = match (TILE_BYTES / row_bytes).min(rows.div_ceil(4)) {
        t if t >= 32 => t / 16 * 16,
        t => t,
    }
    .max(1);
    if rows < 8 {
        return None;
    }
    Some(TileGroup { first, last, extent: rows, tile, roles, local })
}

/// What a loop kernel writes by rows, if it can run on a tile of rows of the group: its
/// parallel loop runs over the rows, and it reads what the group wrote only in the rows
/// of its own iteration, so a tile's reads are covered by the tile's writes.
fn loops_rows(l: &LoopKernel, rows: usize, written: &[Rows]) -> Option<Vec<Rows>> {
    let (outer, extent) = l.parallel_loop()?;
    let [Stmt::For { body, .. }] = l.body.as_slice() else { return None };
    if extent != rows {
        return None;
    }
    let (reads, writes) = l.buffers();
    for b in reads {
        let Some(w) = written.iter().find(|x| x.buf == b) else { continue };
        let ok = match w.other {
            None => row_stride(body, outer, b, &l.loops) == Some(Some(w.stride)),
            Some((t, e)) => {
                let mut ok = true;
                for_each_access(body, b, &mut |a| {
                    let others: Vec<&(LoopId, i64)> = a.terms.iter().filter(|x| x.0 != outer).collect();
                    ok &= a.offset == 0
                        && a.stride(outer) == w.stride
                        && match others.as_slice() {
                            [] => true,
                            [(l2, s2)] => *s2 == t && l.loops[l2.index()].extent <= e,
                            _ => false,
                        };
                });
                ok
            }
        };
        if !ok {
            return None;
        }
    }
    let mut out = Vec::new();
    for b in writes {
        match row_stride(body, outer, b, &l.loops) {
            Some(Some(stride)) => out.push(Rows { buf: b, stride, other: None }),
            _ => return None,
        }
    }
    Some(out)
}

/// Calls `f` on the address of every load and store of `buf` in `body`.
fn for_each_access(body: &[Stmt], buf: BufId, f: &mut dyn FnMut(&Affine)) {
    for st in body {
        let value = match st {
            Stmt::For { body, .. } => {
                for_each_access(body, buf, f);
                continue;
            }
            Stmt::Let { value, .. } | Stmt::Update { value, .. } => value,
            Stmt::Store { buf: b, index, value } => {
                if *b == buf {
                    f(index);
                }
                value
            }
        };
        value.visit(&mut |x| {
            if let Expr::Load(b, a) = x {
                if *b == buf {
                    f(a);
                }
            }
        });
    }
}

/// Rows of scratch larger than this stay in shared memory (stack space is limited).
const SCRATCH_BYTES: usize = 64 * 1024;

/// Replaces each temporary that only one row-parallel loop kernel touches, and only row
/// by row, by one row of per-thread scratch: iteration r writes row r before it reads
/// it (the kernel is the row fusion of kernels that ran one after another), so rows of
/// different iterations never meet and a thread can reuse one row for all of them.
pub(super) fn localize(p: &mut Program) {
    let life = lifetimes(p);
    let elem = p.dtype.size_of();
    for (b, life) in life.iter().enumerate() {
        let (BufKind::Temp { .. }, Some((first, last))) = (&p.bufs[b].kind, *life) else { continue };
        if first != last {
            continue;
        }
        let Kernel::Loops(k) = &mut p.kernels[first] else { continue };
        let Some((outer, _)) = k.parallel_loop() else { continue };
        let [Stmt::For { body, .. }] = k.body.as_slice() else { continue };
        let Some(Some(stride)) = row_stride(body, outer, BufId(b as u32), &k.loops) else { continue };
        let row = stride as usize;
        if row.saturating_mul(elem) > SCRATCH_BYTES || row == 0 {
            continue;
        }
        let buf = BufId(b as u32);
        let drop_outer = |a: &mut Affine| a.terms.retain(|t| t.0 != outer);
        for_each_access_mut(&mut k.body, buf, &mut |a| drop_outer(a));
        p.bufs[b].kind = BufKind::Scratch;
        p.bufs[b].shape = vec![row];
    }
}

/// Calls `f` on the address of every load and store of `buf`.
fn for_each_access_mut(body: &mut [Stmt], buf: BufId, f: &mut dyn FnMut(&mut Affine)) {
    for st in body {
        match st {
            Stmt::For { body, .. } => for_each_access_mut(body, buf, f),
            Stmt::Let { value, .. } | Stmt::Update { value, .. } => expr_access_mut(value, buf, f),
            Stmt::Store { buf: b, index, value } => {
                expr_access_mut(value, buf, f);
                if *b == buf {
                    f(index);
                }
            }
        }
    }
}

fn expr_access_mut(e: &mut Expr, buf: BufId, f: &mut dyn FnMut(&mut Affine)) {
    match e {
        Expr::Load(b, a) => {
            if *b == buf {
                f(a)
            }
        }
        Expr::Const(_) | Expr::Var(_) | Expr::Index(_) => {}
        Expr::Unary(_, a) => expr_access_mut(a, buf, f),
        Expr::Binary(_, a, c) => {
            expr_access_mut(a, buf, f);
            expr_access_mut(c, buf, f);
        }
        Expr::Select(p, a, c) => {
            pred_access_mut(p, buf, f);
            expr_access_mut(a, buf, f);
            expr_access_mut(c, buf, f);
        }
    }
}

fn pred_access_mut(p: &mut Pred, buf: BufId, f: &mut dyn FnMut(&mut Affine)) {
    match p {
        Pred::Cmp(_, a, b) => {
            expr_access_mut(a, buf, f);
            expr_access_mut(b, buf, f);
        }
        Pred::And(ps) | Pred::Or(ps) => ps.iter_mut().for_each(|x| pred_access_mut(x, buf, f)),
        Pred::Not(x) => pred_access_mut(x, buf, f),
    }
}

/// Gives every temporary a memory slot; temporaries whose lifetimes do not overlap share
/// one (best fit by size, growing a free slot rather than opening a new one). Lifetimes
/// are in execution order: a tile group runs its kernels interleaved, tile by tile, so a
/// buffer any of them touches lives from the group's first kernel to its last.
pub(super) fn plan_slots(p: &mut Program) {
    let life = live_ranges(p);
    let mut temps: Vec<(usize, usize, usize, usize)> = Vec::new(); // first, last, len, buf
    for (k, b) in p.bufs.iter().enumerate() {
        if let (BufKind::Temp { .. }, Some((first, last))) = (&b.kind, life[k]) {
            temps.push((first, last, b.len(), k));
        }
    }
    temps.sort();
    let mut slots: Vec<usize> = Vec::new();
    let mut busy_until: Vec<usize> = Vec::new();
    let mut assigned: Vec<Option<usize>> = vec![None; p.bufs.len()];
    for &(first, last, len, buf) in &temps {
        let free: Vec<usize> = (0..slots.len()).filter(|&s| busy_until[s] < first).collect();
        let fit = free.iter().copied().filter(|&s| slots[s] >= len).min_by_key(|&s| slots[s]);
        let slot = match fit.or_else(|| free.iter().copied().max_by_key(|&s| slots[s])) {
            Some(s) => {
                slots[s] = slots[s].max(len);
                s
            }
            None => {
                slots.push(len);
                busy_until.push(0);
                slots.len() - 1
            }
        };
        busy_until[slot] = last;
        assigned[buf] = Some(slot);
    }
    // A temporary no kernel touches still needs a home; give it an empty-sized view.
    for (k, b) in p.bufs.iter_mut().enumerate() {
        if let BufKind::Temp { slot } = &mut b.kind {
            *slot = match assigned[k] {
                Some(s) => s,
                None => {
                    slots.push(b.shape.iter().product());
                    slots.len() - 1
                }
            };
        }
    }
    p.slots = slots;
}

/// Fuses consecutive loop kernels that run a parallel loop of the same extent when every
/// buffer the earlier one writes and the later one reads is written and read row by row
/// (iteration r touches only row r). Rows are then produced and consumed by the same
/// thread while they are in cache.
pub(super) fn fuse_rows(kernels: Vec<Kernel>) -> Vec<Kernel> {
    let mut out: Vec<Kernel> = Vec::new();
    for k in kernels {
        if let (Some(Kernel::Loops(prev)), Kernel::Loops(next)) = (out.last_mut(), &k) {
            if let Some(fused) = fuse(prev, next) {
                *prev = fused;
                continue;
            }
        }
        out.push(k);
    }
    out
}

/// The rows of `buf` that statement accesses: Some(row stride) when every access in
/// `body` to it is `row·stride + (something within one row)` with `row` the loop `outer`.
fn row_stride(body: &[Stmt], outer: LoopId, buf: BufId, loops: &[LoopInfo]) -> Option<Option<i64>> {
    let mut stride: Option<i64> = None;
    let mut ok = true;
    let mut check = |a: &Affine| {
        let s = a.stride(outer);
        if s <= 0 || stride.is_some_and(|x| x != s) {
            ok = false;
            return;
        }
        stride = Some(s);
        let (mut lo, mut hi) = (a.offset, a.offset);
        for &(l, st) in &a.terms {
            if l == outer {
                continue;
            }
            let reach = (loops[l.index()].extent.max(1) as i64 - 1) * st;
            if reach < 0 {
                lo += reach
            } else {
                hi += reach
            }
        }
        if lo < 0 || hi >= s {
            ok = false;
        }
    };
    for_each_access(body, buf, &mut check);
    ok.then_some(stride)
}

fn fuse(a: &LoopKernel, b: &LoopKernel) -> Option<LoopKernel> {
    let (la, ea) = a.parallel_loop()?;
    let (lb, eb) = b.parallel_loop()?;
    if ea != eb {
        return None;
    }
    let (a_reads, a_writes) = a.buffers();
    let (_, b_writes) = b.buffers();
    if b_writes.iter().any(|w| a_reads.contains(w) || a_writes.contains(w)) {
        return None;
    }
    let [Stmt::For { body: abody, .. }] = a.body.as_slice() else { return None };
    let [Stmt::For { body: bbody, .. }] = b.body.as_slice() else { return None };
    for &w in &a_writes {
        let in_b = row_stride(bbody, lb, w, &b.loops)?;
        if let Some(sb) = in_b {
            let sa = row_stride(abody, la, w, &a.loops)?;
            if sa != Some(sb) {
                return None;
            }
        }
    }
    // Renumber b's loops and variables after a's; its parallel loop becomes a's.
    let nl = a.loops.len() as u32;
    let nv = a.vars.len() as u32;
    let map_loop = |l: LoopId| if l == lb { la } else { LoopId(l.0 + nl) };
    let mut body = abody.clone();
    body.extend(bbody.iter().map(|s| renumber(s, &map_loop, nv)));
    let mut loops = a.loops.clone();
    let mut used: Vec<String> = loops.iter().map(|l| l.name.clone()).collect();
    for l in &b.loops {
        let mut name = l.name.clone();
        let mut n = 1;
        while used.contains(&name) {
            name = format!("{}{n}", l.name);
            n += 1;
        }
        used.push(name.clone());
        loops.push(LoopInfo { name, extent: l.extent });
    }
    let mut vars = a.vars.clone();
    // Variable names end in their id (`acc3`), which shifts by a's count.
    vars.extend(b.vars.iter().enumerate().map(|(k, v)| format!("{}{}", v.trim_end_matches(char::is_numeric), nv as usize + k)));
    let mut steps = a.steps.clone();
    steps.extend(b.steps.iter().copied());
    Some(LoopKernel {
        name: format!("{}+{}", a.name, b.name),
        steps,
        loops,
        vars,
        body: vec![Stmt::For { id: la, extent: ea, parallel: true, body }],
    })
}

fn renumber(s: &Stmt, ml: &dyn Fn(LoopId) -> LoopId, nv: u32) -> Stmt {
    let mv = |v: VarId| VarId(v.0 + nv);
    match s {
        Stmt::For { id, extent, parallel, body } => {
            Stmt::For { id: ml(*id), extent: *extent, parallel: *parallel, body: body.iter().map(|x| renumber(x, ml, nv)).collect() }
        }
        Stmt::Let { var, value } => Stmt::Let { var: mv(*var), value: renumber_expr(value, ml, nv) },
        Stmt::Update { var, op, value } => Stmt::Update { var: mv(*var), op: *op, value: renumber_expr(value, ml, nv) },
        Stmt::Store { buf, index, value } => {
            Stmt::Store { buf: *buf, index: renumber_affine(index, ml), value: renumber_expr(value, ml, nv) }
        }
    }
}

fn renumber_affine(a: &Affine, ml: &dyn Fn(LoopId) -> LoopId) -> Affine {
    Affine { offset: a.offset, terms: a.terms.iter().map(|&(l, s)| (ml(l), s)).collect() }
}

fn renumber_expr(e: &Expr, ml: &dyn Fn(LoopId) -> LoopId, nv: u32) -> Expr {
    let r = |x: &Expr| Box::new(renumber_expr(x, ml, nv));
    match e {
        Expr::Const(v) => Expr::Const(*v),
        Expr::Load(b, a) => Expr::Load(*b, renumber_affine(a, ml)),
        Expr::Var(v) => Expr::Var(VarId(v.0 + nv)),
        Expr::Index(l) => Expr::Index(ml(*l)),
        Expr::Unary(op, a) => Expr::Unary(*op, r(a)),
        Expr::Binary(op, a, b) => Expr::Binary(*op, r(a), r(b)),
        Expr::Select(p, a, b) => Expr::Select(Box::new(renumber_pred(p, ml, nv)), r(a), r(b)),
    }
}

fn renumber_pred(p: &Pred, ml: &dyn Fn(LoopId) -> LoopId, nv: u32) -> Pred {
    match p {
        Pred::Cmp(op, a, b) => Pred::Cmp(*op, renumber_expr(a, ml, nv), renumber_expr(b, ml, nv)),
        Pred::And(ps) => Pred::And(ps.iter().map(|x| renumber_pred(x, ml, nv)).collect()),
        Pred::Or(ps) => Pred::Or(ps.iter().map(|x| renumber_pred(x, ml, nv)).collect()),
        Pred::Not(x) => Pred::Not(Box::new(renumber_pred(x, ml, nv))),
    }
}

/// Fuses adjacent innermost loops of the same extent inside every loop kernel, when the
/// second reads what the first writes only at the element the same iteration wrote (and
/// nothing else ties them): a row-wise map and the reduction after it become one pass
/// (`P = exp(S - m)` and `Σ P` in softmax, `x - mean` and `Σ (x - mean)²` in layernorm).
pub(super) fn fuse_siblings(p: &mut Program) {
    for k in &mut p.kernels {
        if let Kernel::Loops(l) = k {
            let mut body = std::mem::take(&mut l.body);
            fuse_in(&mut body);
            l.body = body;
        }
    }
}

fn fuse_in(body: &mut Vec<Stmt>) {
    for s in body.iter_mut() {
        if let Stmt::For { body, .. } = s {
            fuse_in(body);
        }
    }
    let mut a = 0;
    while a < body.len() {
        let Some(b) = (a + 1..body.len()).find(|&j| !matches!(body[j], Stmt::Let { value: Expr::Const(_), .. })) else { break };
        if !can_fuse(&body[a], &body[a + 1..b], &body[b]) {
            a += 1;
            continue;
        }
        let second = body.remove(b);
        let lets: Vec<Stmt> = body.drain(a + 1..b).collect();
        let (Stmt::For { id: l1, body: b1, .. }, Stmt::For { id: l2, body: b2, .. }) = (&mut body[a], second) else { break };
        let l1 = *l1;
        b1.extend(b2.iter().map(|s| renumber(s, &|l| if l == l2 { l1 } else { l }, 0)));
        let n = lets.len();
        for (j, s) in lets.into_iter().enumerate() {
            body.insert(a + j, s);
        }
        a += n;
    }
}

/// The buffer accesses of a flat loop body: (buffer, address, is a store).
fn accesses(body: &[Stmt]) -> Vec<(BufId, Affine, bool)> {
    let mut out = Vec::new();
    let loads = |e: &Expr, out: &mut Vec<(BufId, Affine, bool)>| {
        e.visit(&mut |x| {
            if let Expr::Load(b, a) = x {
                out.push((*b, a.clone(), false));
            }
        })
    };
    for s in body {
        match s {
            Stmt::Let { value, .. } | Stmt::Update { value, .. } => loads(value, &mut out),
            Stmt::Store { buf, index, value } => {
                loads(value, &mut out);
                out.push((*buf, index.clone(), true));
            }
            Stmt::For { .. } => {}
        }
    }
    out
}

/// Variables a flat body defines or updates, and those it reads.
fn vars_of(body: &[Stmt]) -> (Vec<VarId>, Vec<VarId>) {
    let (mut set, mut read) = (Vec::new(), Vec::new());
    for s in body {
        let value = match s {
            Stmt::Let { var, value } | Stmt::Update { var, value, .. } => {
                set.push(*var);
                if matches!(s, Stmt::Update { .. }) {
                    read.push(*var);
                }
                value
            }
            Stmt::Store { value, .. } => value,
            Stmt::For { .. } => continue,
        };
        value.visit(&mut |x| {
            if let Expr::Var(v) = x {
                read.push(*v);
            }
        });
    }
    (set, read)
}

fn can_fuse(first: &Stmt, lets: &[Stmt], second: &Stmt) -> bool {
    let (Stmt::For { id: l1, extent: e1, parallel: false, body: b1 }, Stmt::For { id: l2, extent: e2, parallel: false, body: b2 }) =
        (first, second)
    else {
        return false;
    };
    if e1 != e2 || b1.iter().chain(b2).any(|s| matches!(s, Stmt::For { .. })) {
        return false;
    }
    let (set1, read1) = vars_of(b1);
    let (set2, read2) = vars_of(b2);
    let lets: Vec<VarId> = lets.iter().filter_map(|s| if let Stmt::Let { var, .. } = s { Some(*var) } else { None }).collect();
    // The first loop's results in variables are final only after it; the constants set
    // between the loops must not matter to the first.
    if read2.iter().chain(&set2).any(|v| set1.contains(v)) || read1.iter().chain(&set1).any(|v| lets.contains(v)) {
        return false;
    }
    let (acc1, acc2) = (accesses(b1), accesses(b2));
    let same = |a: &Affine, b: &Affine| {
        let map = |x: &Affine, from: LoopId| {
            let mut t: Vec<(LoopId, i64)> = x.terms.iter().map(|&(l, s)| (if l == from { LoopId(u32::MAX) } else { l }, s)).collect();
            t.sort();
            (x.offset, t)
        };
        map(a, *l1) == map(b, *l2)
    };
    for (buf, addr, store) in &acc2 {
        for (b1buf, a1, s1) in &acc1 {
            if buf != b1buf || !(*store || *s1) {
                continue;
            }
            // A write of one loop meets an access of the other: only the element of the
            // same iteration, read after it is written, is allowed.
            if *store || !same(a1, addr) {
                return false;
            }
        }
    }
    true
}
