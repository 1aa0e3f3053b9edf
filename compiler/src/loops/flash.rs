//! Online softmax (flash attention) as a streamed tile group.
//!
//! A fusion the planner found (`plan::fuse`) becomes five kernels that run tile by tile
//! of query rows, streaming blocks of keys (design: `docs/design/flash-fusion.md`):
//!
//! ```text
//! init    m = -inf, l = 0, acc = 0                        once per tile
//! scores  S = α · Q Kᵀ             (GEMM, K shifted)      per block of keys
//! update  running max, rescale l and acc, S = exp(S - m), l += Σ S
//! values  acc += S V               (GEMM, V shifted)
//! finish  O = scale · acc / l                             once per tile
//! ```
//!
//! Per thread this keeps a tile of rows of one block of scores, never a whole row.
//! Masked keys and the columns a shifted-back last block shares with the block before
//! it are set to -inf by the executor's fill right after the score GEMM.

use super::lower::{Lowerer, R};
use super::*;
use crate::plan::fuse::{OnlineSoftmax, Operand, Role};

/// Query rows per tile and keys per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocks {
    pub rows: usize,
    pub keys: usize,
}

impl Blocks {
    /// Torch's CPU flash kernel uses query tiles of 32 to 256 rows and key blocks of
    /// 512. Tiles here are the group's only parallelism, so there are at least eight
    /// of them when rows allow (both cores stay busy under a causal mask's uneven rows).
    /// With a mask the key block matches the tile, so that the blocks on the diagonal
    /// are the only partial ones and a causal row costs half a full one.
    pub fn choose(f: &OnlineSoftmax) -> Blocks {
        let n = f.rows;
        let tile = if n >= 768 { 64 } else if n >= 192 { 32 } else { 16 };
        let rows = tile.min(n.div_ceil(8)).max(1);
        let keys = if f.mask.is_empty() { 512 } else { rows.max(32) };
        Blocks { rows, keys: keys.min(f.keys[0]).max(1) }
    }
}

/// Whether the loop IR can stream this fusion: one key axis so far (two-key
/// 2-simplicial attention runs unfused), and no empty extent.
pub fn supported(f: &OnlineSoftmax) -> bool {
    f.keys.len() == 1 && f.rows > 0 && f.keys[0] > 0 && f.features > 0 && f.values > 0
}

/// The element stride of each role in a row-major tensor of `shape`.
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

impl Lowerer<'_> {
    /// The kernels and the tile group of one fusion, appended to `kernels`.
    pub(super) fn flash(&mut self, f: &OnlineSoftmax, steps: &[usize], blocks: Blocks, kernels: &mut Vec<Kernel>) -> R<TileGroup> {
        let (n, e, d) = (f.rows, f.values, f.features);
        let m = f.keys[0];
        let (tile, bk) = (blocks.rows.clamp(1, n.max(1)), blocks.keys.clamp(1, m.max(1)));
        let q = self.buf(f.q.tensor)?;
        let k = self.buf(f.k[0].tensor)?;
        let v = self.buf(f.v[0].tensor)?;
        let o = self.buf(f.out.tensor)?;
        let shape = |l: &Lowerer, b: BufId| l.bufs[b.index()].shape.clone();
        let (qs, ks, vs, os) = (shape(self, q), shape(self, k), shape(self, v), shape(self, o));
        let tile_buf = |l: &mut Lowerer, name: &str, row: usize| {
            let id = BufId(l.bufs.len() as u32);
            let shape = if row == 1 { vec![n] } else { vec![n, row] };
            l.bufs.push(Buffer { name: name.to_string(), kind: BufKind::Tile { row }, shape });
            id
        };
        let s = tile_buf(self, "%scores", bk);
        let mx = tile_buf(self, "%max", 1);
        let l = tile_buf(self, "%sum", 1);
        let acc = tile_buf(self, "%acc", e);
        let first = kernels.len();
        let steps = steps.to_vec();
        let (i, c) = (LoopId(0), LoopId(1));
        let row = |x: LoopId, stride: i64| Affine { offset: 0, terms: vec![(x, stride)] };
        let at = |x: LoopId, sx: i64, y: LoopId, sy: i64| {
            let mut a = Affine::constant(0);
            a.add_term(x, sx);
            a.add_term(y, sy);
            a
        };
        let load = |b: BufId, a: Affine| Expr::Load(b, a);
        let parallel = |body: Vec<Stmt>| vec![Stmt::For { id: i, extent: n, parallel: true, body }];
        let inner = |id: LoopId, extent: usize, body: Vec<Stmt>| Stmt::For { id, extent, parallel: false, body };
        let info = |names: &[(&str, usize)]| names.iter().map(|(s, x)| LoopInfo { name: s.to_string(), extent: *x }).collect();

        // Init: the running max, sum and accumulator of each row of the tile.
        kernels.push(Kernel::Loops(LoopKernel {
            name: "flash_init".into(),
            steps: steps.clone(),
            loops: info(&[("i", n), ("c", e)]),
            vars: Vec::new(),
            body: parallel(vec![
                Stmt::Store { buf: mx, index: row(i, 1), value: Expr::Const(f64::NEG_INFINITY) },
                Stmt::Store { buf: l, index: row(i, 1), value: Expr::Const(0.0) },
                inner(c, e, vec![Stmt::Store { buf: acc, index: at(i, e as i64, c, 1), value: Expr::Const(0.0) }]),
            ]),
        }));
        // Scores of the block: S[i, c] = α · Σ_a Q[i, a] K[key0 + c, a].
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
        // Update: the online softmax of the block's scores.
        let (v0, v1, v2, v3, t, r) = (VarId(0), VarId(1), VarId(2), VarId(3), VarId(4), VarId(5));
        let (c1, c2) = (LoopId(2), LoopId(3));
        let sc = |x: LoopId| load(s, at(i, bk as i64, x, 1));
        let var = Expr::Var;
        let is_inf = Pred::Cmp(CmpOp::Eq, var(v1), Expr::Const(f64::NEG_INFINITY));
        kernels.push(Kernel::Loops(LoopKernel {
            name: "flash_update".into(),
            steps: steps.clone(),
            loops: info(&[("i", n), ("c", bk), ("c1", bk), ("c2", e)]),
            vars: ["blockmax", "max", "shift", "rescale", "p", "blocksum"].map(String::from).to_vec(),
            body: parallel(vec![
                Stmt::Let { var: v0, value: Expr::Const(f64::NEG_INFINITY) },
                inner(c, bk, vec![Stmt::Update { var: v0, op: Accum::Max, value: sc(c) }]),
                Stmt::Let { var: v1, value: Expr::bin(BinOp::Max, load(mx, row(i, 1)), var(v0)) },
                // A row that has seen only masked keys keeps max -inf; shifting by 0
                // instead makes its exponentials 0 rather than exp(-inf + inf) = NaN.
                Stmt::Let { var: v2, value: Expr::Select(Box::new(is_inf), Box::new(Expr::Const(0.0)), Box::new(var(v1))) },
                Stmt::Let { var: v3, value: Expr::un(UnOp::Exp, Expr::bin(BinOp::Sub, load(mx, row(i, 1)), var(v2))) },
                Stmt::Let { var: r, value: Expr::Const(0.0) },
                inner(
                    c1,
                    bk,
                    vec![
                        Stmt::Let { var: t, value: Expr::un(UnOp::Exp, Expr::bin(BinOp::Sub, sc(c1), var(v2))) },
                        Stmt::Store { buf: s, index: at(i, bk as i64, c1, 1), value: var(t) },
                        Stmt::Update { var: r, op: Accum::Sum, value: var(t) },
                    ],
                ),
                Stmt::Store {
                    buf: l,
                    index: row(i, 1),
                    value: Expr::bin(BinOp::Add, Expr::bin(BinOp::Mul, load(l, row(i, 1)), var(v3)), var(r)),
                },
                Stmt::Store { buf: mx, index: row(i, 1), value: var(v1) },
                inner(
                    c2,
                    e,
                    vec![Stmt::Store {
                        buf: acc,
                        index: at(i, e as i64, c2, 1),
                        value: Expr::bin(BinOp::Mul, load(acc, at(i, e as i64, c2, 1)), var(v3)),
                    }],
                ),
            ]),
        }));
        // Values: acc[i, c] += Σ_c' S[i, c'] V[key0 + c', c].
        kernels.push(Kernel::Gemm(Gemm {
            a: s,
            b: v,
            c: acc,
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
        // Finish: O = scale · acc / l (0/0 = NaN for a row that saw no key, as the
        // reference's exp(-inf - -inf)).
        let out = at(i, stride(&f.out, &os, Role::Row), c, stride(&f.out, &os, Role::Value));
        let mut value = Expr::bin(BinOp::Div, load(acc, at(i, e as i64, c, 1)), load(l, row(i, 1)));
        if f.scale != 1.0 {
            value = Expr::bin(BinOp::Mul, value, Expr::Const(f.scale));
        }
        kernels.push(Kernel::Loops(LoopKernel {
            name: "flash_finish".into(),
            steps: steps.clone(),
            loops: info(&[("i", n), ("c", e)]),
            vars: Vec::new(),
            body: parallel(vec![inner(c, e, vec![Stmt::Store { buf: o, index: out, value }])]),
        }));
        let key_stride = |op: &Operand, shape: &[usize]| stride(op, shape, Role::Key(0));
        Ok(TileGroup {
            first,
            last: first + 4,
            extent: n,
            tile,
            roles: vec![None, Some(TileRole::M), None, Some(TileRole::M), None],
            factors: vec![1; 5],
            local: vec![s, mx, l, acc],
            stream: Some(Stream {
                axes: vec![StreamAxis { name: "j".into(), extent: m, block: bk, kernels: (first + 1, first + 3) }],
                shifts: vec![
                    Shift { buf: k, axis: 0, stride: key_stride(&f.k[0], &ks) },
                    Shift { buf: v, axis: 0, stride: key_stride(&f.v[0], &vs) },
                ],
                scores: s,
                fill_after: first + 1,
                score_strides: vec![1],
                mask: f.mask.clone(),
            }),
        })
    }
}
