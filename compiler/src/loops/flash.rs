//! Online softmax (flash attention) as a streamed tile group.
//!
//! A fusion the planner found (`plan::fuse`) becomes kernels that run tile by tile of
//! query rows, streaming blocks of keys (design: `docs/design/flash-fusion.md`). One key
//! axis (attention):
//!
//! ```text
//! init    m = -inf, l = 0, acc = 0                        once per tile
//! scores  S = α · Q Kᵀ             (GEMM, K shifted)      per block of keys
//! update  running max, rescale l and acc, S = exp(S - m), l += Σ S
//! values  acc += S V               (GEMM, V shifted)
//! finish  O = scale · acc / l                             once per tile
//! ```
//!
//! Two key axes (2-simplicial attention, keys j and l, softmax over both jointly): per
//! block of J keys j, a prologue forms `X[(i, jj), a] = Q[i, a] K1[j0 + jj, a]`; per block
//! of B keys l, the score GEMM runs over the tile's (row, jj) pairs (`factor` J),
//! `S[(i, jj), c] = α · X K2ᵀ`, the update treats a row's J·B scores as one block,
//! `Y[(i, jj), b] = S V2` by GEMM, and an epilogue adds `Σ_jj Y[(i, jj), b] V1[j0 + jj, b]`
//! to the accumulator. Memory per thread is a tile of J·(d + B + e) + e + 2 numbers per
//! row: no n² or n³ intermediate exists.
//!
//! Masked keys and the columns a shifted-back last block shares with the block before
//! it are set to -inf by the executor's fill right after the score GEMM.

use super::lower::{Lowerer, R};
use super::*;
use crate::plan::fuse::{OnlineSoftmax, Operand, Role};

/// Query rows per tile, keys per block, and (two key axes) outer keys per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocks {
    pub rows: usize,
    pub keys: usize,
    pub outer: usize,
}

impl Blocks {
    /// Torch's CPU flash kernel uses query tiles of 32 to 256 rows and key blocks of
    /// 512. Tiles here are the group's only parallelism, so there are at least eight
    /// of them when rows allow. With a mask the key block matches the tile, so that the
    /// blocks on the diagonal are the only partial ones and a causal row costs half a
    /// full one. Two key axes stack 8 outer keys per row into the GEMMs' M, so that they
    /// stay large. Measured on an AMD EPYC (Zen 1), 2 threads, LLVM: at n = 2048, d = 64
    /// tiles of 256 rows took 16.2 ms against 17.2 ms for 64; causal with blocks of 128,
    /// 9.6 ms against 10.1 ms for 64 and 10.3 ms for 256; at n = 4096 causal with 256,
    /// 36.4 ms against 40.1 ms for 64.
    pub fn choose(f: &OnlineSoftmax) -> Blocks {
        let n = f.rows;
        let inner = *f.keys.last().unwrap_or(&1);
        let masked = !f.mask.is_empty();
        // The largest power-of-two tile (16 to 256 rows) that leaves `parts` tiles.
        let tile = |parts: usize| [256, 128, 64, 32, 16].into_iter().find(|&t| t * parts <= n).unwrap_or(n.div_ceil(parts)).max(1);
        let (rows, keys) = match (f.keys.len(), masked) {
            (1, false) => (tile(8), 512),
            // Twice as many tiles: under a causal mask tiles differ in cost.
            (1, true) => (tile(16), tile(16)),
            (_, false) => (tile(8).min(32), 256),
            // A masked pair of keys (windowed 2-simplicial attention): small tiles and
            // blocks follow the band closely. At n = 8192, w1 = 32, w2 = 256, 8 rows and
            // 64 keys ran in 0.85 s, 64 and 256 in 3.0 s.
            (_, true) => (tile(8).min(8), 64),
        };
        Blocks { rows, keys: keys.min(inner).max(1), outer: 8.min(f.keys[0]).max(1) }
    }
}

/// Whether the loop IR can stream this fusion: one or two key axes, no empty extent,
/// and no tensor read both at block-relative addresses and otherwise (a shifted base
/// pointer would move its other reads too).
pub fn supported(f: &OnlineSoftmax) -> bool {
    let sizes = f.rows > 0 && f.keys.iter().all(|&k| k > 0) && f.features > 0 && f.values > 0;
    let mut shifted: Vec<(&Operand, usize)> = Vec::new();
    for (k, op) in f.k.iter().chain(&f.v).enumerate() {
        shifted.push((op, k % f.keys.len()));
    }
    let key_pos = |o: &Operand| o.roles.iter().position(|r| matches!(r, Role::Key(_)));
    let conflict = shifted.iter().any(|(a, x)| {
        a.tensor == f.q.tensor || shifted.iter().any(|(b, y)| a.tensor == b.tensor && (x != y || key_pos(a) != key_pos(b)))
    });
    (1..=2).contains(&f.keys.len()) && sizes && !conflict
}

/// The element stride of `role` in a row-major tensor of `shape`.
fn stride(op: &Operand, shape: &[usize], role: Role) -> i64 {
    let mut s = 1i64;
    let mut out = 0;
    for (r, n) in op.roles.iter().zip(shape).rev() {
        if *r == role {
            out += s;
        }
        s *= *n as i64;
    }
    out
}

fn aff(terms: &[(LoopId, i64)]) -> Affine {
    let mut a = Affine::constant(0);
    for &(l, s) in terms {
        a.add_term(l, s);
    }
    a
}

fn parallel(n: usize, body: Vec<Stmt>) -> Vec<Stmt> {
    vec![Stmt::For { id: LoopId(0), extent: n, parallel: true, body }]
}

fn inner(id: LoopId, extent: usize, body: Vec<Stmt>) -> Stmt {
    Stmt::For { id, extent, parallel: false, body }
}

fn info(names: &[(&str, usize)]) -> Vec<LoopInfo> {
    names.iter().map(|(s, x)| LoopInfo { name: s.to_string(), extent: *x }).collect()
}

/// The tile state of a stream: running max, running sum, accumulator (`e` per row).
struct State {
    mx: BufId,
    sum: BufId,
    acc: BufId,
    e: usize,
}

/// `m = -inf, l = 0, acc = 0` for each row.
fn init_kernel(st: &State, n: usize, steps: &[usize]) -> Kernel {
    let (i, c) = (LoopId(0), LoopId(1));
    Kernel::Loops(LoopKernel {
        name: "flash_init".into(),
        steps: steps.to_vec(),
        loops: info(&[("i", n), ("c", st.e)]),
        vars: Vec::new(),
        body: parallel(
            n,
            vec![
                Stmt::Store { buf: st.mx, index: aff(&[(i, 1)]), value: Expr::Const(f64::NEG_INFINITY) },
                Stmt::Store { buf: st.sum, index: aff(&[(i, 1)]), value: Expr::Const(0.0) },
                inner(c, st.e, vec![Stmt::Store { buf: st.acc, index: aff(&[(c, 1), (i, st.e as i64)]), value: Expr::Const(0.0) }]),
            ],
        ),
    })
}

/// The online softmax of one block: each row's `w` scores in `s` become probabilities
/// against the new running max, and the sum and accumulator are rescaled to it.
fn update_kernel(st: &State, s: BufId, n: usize, w: usize, steps: &[usize]) -> Kernel {
    let (i, c, c1, c2) = (LoopId(0), LoopId(1), LoopId(2), LoopId(3));
    let (v0, v1, v2, v3, t, r) = (VarId(0), VarId(1), VarId(2), VarId(3), VarId(4), VarId(5));
    let e = st.e as i64;
    let sc = |x: LoopId| Expr::Load(s, aff(&[(x, 1), (i, w as i64)]));
    let row = |b: BufId| Expr::Load(b, aff(&[(i, 1)]));
    let is_inf = Pred::Cmp(CmpOp::Eq, Expr::Var(v1), Expr::Const(f64::NEG_INFINITY));
    Kernel::Loops(LoopKernel {
        name: "flash_update".into(),
        steps: steps.to_vec(),
        loops: info(&[("i", n), ("c", w), ("c1", w), ("c2", st.e)]),
        vars: ["blockmax", "max", "shift", "rescale", "p", "blocksum"].map(String::from).to_vec(),
        body: parallel(
            n,
            vec![
                Stmt::Let { var: v0, value: Expr::Const(f64::NEG_INFINITY) },
                inner(c, w, vec![Stmt::Update { var: v0, op: Accum::Max, value: sc(c) }]),
                Stmt::Let { var: v1, value: Expr::bin(BinOp::Max, row(st.mx), Expr::Var(v0)) },
                // A row that has seen only masked keys keeps max -inf; shifting by 0
                // instead makes its exponentials 0 rather than exp(-inf + inf) = NaN.
                Stmt::Let { var: v2, value: Expr::Select(Box::new(is_inf), Box::new(Expr::Const(0.0)), Box::new(Expr::Var(v1))) },
                Stmt::Let { var: v3, value: Expr::un(UnOp::Exp, Expr::bin(BinOp::Sub, row(st.mx), Expr::Var(v2))) },
                Stmt::Let { var: r, value: Expr::Const(0.0) },
                inner(
                    c1,
                    w,
                    vec![
                        Stmt::Let { var: t, value: Expr::un(UnOp::Exp, Expr::bin(BinOp::Sub, sc(c1), Expr::Var(v2))) },
                        Stmt::Store { buf: s, index: aff(&[(c1, 1), (i, w as i64)]), value: Expr::Var(t) },
                        Stmt::Update { var: r, op: Accum::Sum, value: Expr::Var(t) },
                    ],
                ),
                Stmt::Store {
                    buf: st.sum,
                    index: aff(&[(i, 1)]),
                    value: Expr::bin(BinOp::Add, Expr::bin(BinOp::Mul, row(st.sum), Expr::Var(v3)), Expr::Var(r)),
                },
                Stmt::Store { buf: st.mx, index: aff(&[(i, 1)]), value: Expr::Var(v1) },
                inner(
                    c2,
                    st.e,
                    vec![Stmt::Store {
                        buf: st.acc,
                        index: aff(&[(c2, 1), (i, e)]),
                        value: Expr::bin(BinOp::Mul, Expr::Load(st.acc, aff(&[(c2, 1), (i, e)])), Expr::Var(v3)),
                    }],
                ),
            ],
        ),
    })
}

/// `O = scale · acc / l`; 0/0 = NaN for a row that saw no key, as the reference's
/// `exp(-inf - -inf)`.
fn finish_kernel(st: &State, o: BufId, out: &Operand, oshape: &[usize], n: usize, scale: f64, steps: &[usize]) -> Kernel {
    let (i, c) = (LoopId(0), LoopId(1));
    let index = aff(&[(c, stride(out, oshape, Role::Value)), (i, stride(out, oshape, Role::Row))]);
    let mut value = Expr::bin(BinOp::Div, Expr::Load(st.acc, aff(&[(c, 1), (i, st.e as i64)])), Expr::Load(st.sum, aff(&[(i, 1)])));
    if scale != 1.0 {
        value = Expr::bin(BinOp::Mul, value, Expr::Const(scale));
    }
    Kernel::Loops(LoopKernel {
        name: "flash_finish".into(),
        steps: steps.to_vec(),
        loops: info(&[("i", n), ("c", st.e)]),
        vars: Vec::new(),
        body: parallel(n, vec![inner(c, st.e, vec![Stmt::Store { buf: o, index, value }])]),
    })
}

impl Lowerer<'_> {
    fn shape(&self, b: BufId) -> Vec<usize> {
        self.bufs[b.index()].shape.clone()
    }

    /// A `Tile` buffer of `row` elements per query row.
    fn tile_buf(&mut self, name: &str, n: usize, row: usize) -> BufId {
        let id = BufId(self.bufs.len() as u32);
        let shape = if row == 1 { vec![n] } else { vec![n, row] };
        self.bufs.push(Buffer { name: name.to_string(), kind: BufKind::Tile { row }, shape });
        id
    }

    /// The kernels and the tile group of one fusion, appended to `kernels`.
    pub(super) fn flash(&mut self, f: &OnlineSoftmax, steps: &[usize], blocks: Blocks, kernels: &mut Vec<Kernel>) -> R<TileGroup> {
        let n = f.rows;
        let o = self.buf(f.out.tensor)?;
        let os = self.shape(o);
        let st = State { mx: self.tile_buf("%max", n, 1), sum: self.tile_buf("%sum", n, 1), acc: self.tile_buf("%acc", n, f.values), e: f.values };
        let first = kernels.len();
        kernels.push(init_kernel(&st, n, steps));
        let mut g = match f.keys.len() {
            1 => self.one_axis(f, &st, steps, blocks, kernels)?,
            _ => self.two_axes(f, &st, steps, blocks, kernels)?,
        };
        kernels.push(finish_kernel(&st, o, &f.out, &os, n, f.scale, steps));
        g.first = first;
        g.last = kernels.len() - 1;
        g.local.extend([st.mx, st.sum, st.acc]);
        g.roles.insert(0, None);
        g.roles.push(None);
        g.factors.insert(0, 1);
        g.factors.push(1);
        Ok(g)
    }

    /// Score GEMM, update, value GEMM per block of keys.
    fn one_axis(&mut self, f: &OnlineSoftmax, st: &State, steps: &[usize], blocks: Blocks, kernels: &mut Vec<Kernel>) -> R<TileGroup> {
        let (n, e, d, m) = (f.rows, f.values, f.features, f.keys[0]);
        let bk = blocks.keys.clamp(1, m);
        let (q, k, v) = (self.buf(f.q.tensor)?, self.buf(f.k[0].tensor)?, self.buf(f.v[0].tensor)?);
        let (qs, ks, vs) = (self.shape(q), self.shape(k), self.shape(v));
        let s = self.tile_buf("%scores", n, bk);
        let k0 = kernels.len();
        kernels.push(Kernel::Gemm(Gemm {
            a: q,
            b: k,
            c: s,
            m: n,
            n: bk,
            k: d,
            a_strides: [stride(&f.q, &qs, Role::Row) as isize, stride(&f.q, &qs, Role::Feature) as isize],
            b_strides: [stride(&f.k[0], &ks, Role::Feature) as isize, stride(&f.k[0], &ks, Role::Key(0)) as isize],
            c_strides: [bk as isize, 1],
            outer: Vec::new(),
            alpha: f.alpha,
            accumulate: false,
            step: steps[0],
            roles: "[batch ; M i; N j; K a]".into(),
        }));
        kernels.push(update_kernel(st, s, n, bk, steps));
        kernels.push(Kernel::Gemm(Gemm {
            a: s,
            b: v,
            c: st.acc,
            m: n,
            n: e,
            k: bk,
            a_strides: [bk as isize, 1],
            b_strides: [stride(&f.v[0], &vs, Role::Key(0)) as isize, stride(&f.v[0], &vs, Role::Value) as isize],
            c_strides: [e as isize, 1],
            outer: Vec::new(),
            alpha: 1.0,
            accumulate: true,
            step: *steps.last().unwrap_or(&0),
            roles: "[batch ; M i; N c; K j]".into(),
        }));
        Ok(TileGroup {
            first: 0,
            last: 0,
            extent: n,
            tile: blocks.rows.clamp(1, n),
            roles: vec![Some(TileRole::M), None, Some(TileRole::M)],
            factors: vec![1; 3],
            local: vec![s],
            stream: Some(Stream {
                axes: vec![StreamAxis { name: "j".into(), extent: m, block: bk, kernels: (k0, k0 + 2) }],
                shifts: dedup(vec![
                    Shift { buf: k, axis: 0, stride: stride(&f.k[0], &ks, Role::Key(0)) },
                    Shift { buf: v, axis: 0, stride: stride(&f.v[0], &vs, Role::Key(0)) },
                ]),
                scores: s,
                fill_after: k0,
                score_strides: vec![1],
                mask: f.mask.clone(),
            }),
        })
    }

    /// Prologue per block of outer keys; score GEMM, update, value GEMM and epilogue
    /// per block of inner keys.
    fn two_axes(&mut self, f: &OnlineSoftmax, st: &State, steps: &[usize], blocks: Blocks, kernels: &mut Vec<Kernel>) -> R<TileGroup> {
        let (n, e, d) = (f.rows, f.values, f.features);
        let (m1, m2) = (f.keys[0], f.keys[1]);
        let (jb, bk) = (blocks.outer.clamp(1, m1), blocks.keys.clamp(1, m2));
        let q = self.buf(f.q.tensor)?;
        let (k1, k2) = (self.buf(f.k[0].tensor)?, self.buf(f.k[1].tensor)?);
        let (v1, v2) = (self.buf(f.v[0].tensor)?, self.buf(f.v[1].tensor)?);
        let (qs, k1s, k2s, v1s, v2s) = (self.shape(q), self.shape(k1), self.shape(k2), self.shape(v1), self.shape(v2));
        let x = self.tile_buf("%qk", n, jb * d);
        let s = self.tile_buf("%scores", n, jb * bk);
        let y = self.tile_buf("%pv", n, jb * e);
        let (i, jj, a) = (LoopId(0), LoopId(1), LoopId(2));
        let k0 = kernels.len();
        // X[(i, jj), a] = Q[i, a] K1[j0 + jj, a].
        let qa = Expr::Load(q, aff(&[(a, stride(&f.q, &qs, Role::Feature)), (i, stride(&f.q, &qs, Role::Row))]));
        let ka = Expr::Load(k1, aff(&[(a, stride(&f.k[0], &k1s, Role::Feature)), (jj, stride(&f.k[0], &k1s, Role::Key(0)))]));
        kernels.push(Kernel::Loops(LoopKernel {
            name: "flash_pairs".into(),
            steps: steps.to_vec(),
            loops: info(&[("i", n), ("jj", jb), ("a", d)]),
            vars: Vec::new(),
            body: parallel(
                n,
                vec![inner(
                    jj,
                    jb,
                    vec![inner(
                        a,
                        d,
                        vec![Stmt::Store { buf: x, index: aff(&[(a, 1), (jj, d as i64), (i, (jb * d) as i64)]), value: Expr::bin(BinOp::Mul, qa, ka) }],
                    )],
                )],
            ),
        }));
        // S[(i, jj), c] = α Σ_a X[(i, jj), a] K2[l0 + c, a].
        kernels.push(Kernel::Gemm(Gemm {
            a: x,
            b: k2,
            c: s,
            m: n * jb,
            n: bk,
            k: d,
            a_strides: [d as isize, 1],
            b_strides: [stride(&f.k[1], &k2s, Role::Feature) as isize, stride(&f.k[1], &k2s, Role::Key(1)) as isize],
            c_strides: [bk as isize, 1],
            outer: Vec::new(),
            alpha: f.alpha,
            accumulate: false,
            step: steps[0],
            roles: "[batch ; M i j; N l; K a]".into(),
        }));
        kernels.push(update_kernel(st, s, n, jb * bk, steps));
        // Y[(i, jj), b] = Σ_c P[(i, jj), c] V2[l0 + c, b].
        kernels.push(Kernel::Gemm(Gemm {
            a: s,
            b: v2,
            c: y,
            m: n * jb,
            n: e,
            k: bk,
            a_strides: [bk as isize, 1],
            b_strides: [stride(&f.v[1], &v2s, Role::Key(1)) as isize, stride(&f.v[1], &v2s, Role::Value) as isize],
            c_strides: [e as isize, 1],
            outer: Vec::new(),
            alpha: 1.0,
            accumulate: false,
            step: *steps.last().unwrap_or(&0),
            roles: "[batch ; M i j; N b; K l]".into(),
        }));
        // acc[i, b] += Σ_jj Y[(i, jj), b] V1[j0 + jj, b].
        let (b, jj2, r) = (LoopId(1), LoopId(2), VarId(0));
        let yv = Expr::bin(
            BinOp::Mul,
            Expr::Load(y, aff(&[(b, 1), (jj2, e as i64), (i, (jb * e) as i64)])),
            Expr::Load(v1, aff(&[(b, stride(&f.v[0], &v1s, Role::Value)), (jj2, stride(&f.v[0], &v1s, Role::Key(0)))])),
        );
        let acc_at = aff(&[(b, 1), (i, e as i64)]);
        kernels.push(Kernel::Loops(LoopKernel {
            name: "flash_outer_values".into(),
            steps: steps.to_vec(),
            loops: info(&[("i", n), ("b", e), ("jj", jb)]),
            vars: vec!["sum".into()],
            body: parallel(
                n,
                vec![inner(
                    b,
                    e,
                    vec![
                        Stmt::Let { var: r, value: Expr::Load(st.acc, acc_at.clone()) },
                        inner(jj2, jb, vec![Stmt::Update { var: r, op: Accum::Sum, value: yv }]),
                        Stmt::Store { buf: st.acc, index: acc_at, value: Expr::Var(r) },
                    ],
                )],
            ),
        }));
        Ok(TileGroup {
            first: 0,
            last: 0,
            extent: n,
            tile: blocks.rows.clamp(1, n),
            roles: vec![None, Some(TileRole::M), None, Some(TileRole::M), None],
            factors: vec![1, jb, 1, jb, 1],
            local: vec![x, s, y],
            stream: Some(Stream {
                axes: vec![
                    StreamAxis { name: "j".into(), extent: m1, block: jb, kernels: (k0, k0 + 4) },
                    StreamAxis { name: "l".into(), extent: m2, block: bk, kernels: (k0 + 1, k0 + 4) },
                ],
                shifts: dedup(vec![
                    Shift { buf: k1, axis: 0, stride: stride(&f.k[0], &k1s, Role::Key(0)) },
                    Shift { buf: v1, axis: 0, stride: stride(&f.v[0], &v1s, Role::Key(0)) },
                    Shift { buf: k2, axis: 1, stride: stride(&f.k[1], &k2s, Role::Key(1)) },
                    Shift { buf: v2, axis: 1, stride: stride(&f.v[1], &v2s, Role::Key(1)) },
                ]),
                scores: s,
                fill_after: k0 + 1,
                score_strides: vec![bk as i64, 1],
                mask: f.mask.clone(),
            }),
        })
    }
}

/// One shift per buffer (K and V may be one tensor; `supported` ruled out conflicts).
fn dedup(mut v: Vec<Shift>) -> Vec<Shift> {
    let mut out: Vec<Shift> = Vec::new();
    for s in v.drain(..) {
        if !out.iter().any(|x| x.buf == s.buf) {
            out.push(s);
        }
    }
    out
}
