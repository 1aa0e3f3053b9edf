//! Streamed tile groups end to end: the text form, the verifier's rules, and hand-written
//! flash-attention programs run by the interpreter and every executor against a direct
//! f64 computation.

use super::*;

/// Softmax attention over keys streamed in blocks: `Q[n, d]`, `K[m, d]`, `V[m, e]`,
/// `O[n, e]`, scores and probabilities in `S` (one block per row), running max `mx`, sum
/// `l` and accumulator `acc`. `{mask}` is the mask lines, `{t}` the dtype.
const ATTENTION: &str = "program attention ({t})
  buf b0 Q[{n}, {d}]  input 0
  buf b1 K[{m}, {d}]  input 1
  buf b2 V[{m}, {e}]  input 2
  buf b3 O[{n}, {e}]  output 0
  buf b4 S[{n}, {B}]  tile rows of {B}, per thread
  buf b5 mx[{n}]  tile rows of 1, per thread
  buf b6 l[{n}]  tile rows of 1, per thread
  buf b7 acc[{n}, {e}]  tile rows of {e}, per thread

tiles of {R} rows of {n}, kernels 0..=4 (kernel 1 slices m, kernel 3 slices m)
  stream j of {m} in blocks of {B}, kernels 1..=3
  shift K by j * {d}
  shift V by j * {e}
  scores S filled after kernel 1, key strides [1]
{mask}kernel 0 loops init (steps 0)
  parallel for i in 0..{n} {
    mx[i] = -inf
    l[i] = 0.0
    for c in 0..{e} {
      acc[c + i*{e}] = 0.0
    }
  }

kernel 1 gemm (step 0) [M i; N j; K a]
  S[m, n] = {alpha} * Q[m, k] K[k, n]  m = {n}, n = {B}, k = {d}
  strides  a [{d}, 1]  b [1, {d}]  c [{B}, 1]

kernel 2 loops update (steps 1)
  parallel for i in 0..{n} {
    v0 = -inf
    for c in 0..{B} {
      v0 max= S[c + i*{B}]
    }
    v1 = max(mx[i], v0)
    v2 = select(v1 == -inf, 0.0, v1)
    v3 = exp(mx[i] - v2)
    r = 0.0
    for c1 in 0..{B} {
      S[c1 + i*{B}] = exp(S[c1 + i*{B}] - v2)
      r += S[c1 + i*{B}]
    }
    l[i] = (l[i] * v3) + r
    mx[i] = v1
    for c2 in 0..{e} {
      acc[c2 + i*{e}] = acc[c2 + i*{e}] * v3
    }
  }

kernel 3 gemm (step 2) [M i; N c; K j]
  acc[m, n] += 1.0 * S[m, k] V[k, n]  m = {n}, n = {e}, k = {B}
  strides  a [{B}, 1]  b [{e}, 1]  c [{e}, 1]

kernel 4 loops finish (steps 3)
  parallel for i in 0..{n} {
    for c in 0..{e} {
      O[c + i*{e}] = acc[c + i*{e}] / l[i]
    }
  }
";

/// Sizes of an attention program.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    pub n: usize,
    pub m: usize,
    pub d: usize,
    pub e: usize,
    pub tile: usize,
    pub block: usize,
}

pub(crate) const SMALL: Sizes = Sizes { n: 13, m: 11, d: 4, e: 3, tile: 4, block: 3 };

/// The attention program's text at `z` with mask lines `mask` (each `  mask ...\n`).
pub(crate) fn attention_text(dtype: &str, z: Sizes, mask: &str) -> String {
    let alpha = crate::tir::fmt_number(1.0 / (z.d as f64).sqrt());
    let mut t = ATTENTION.to_string();
    for (k, v) in [
        ("{t}", dtype.to_string()),
        ("{n}", z.n.to_string()),
        ("{m}", z.m.to_string()),
        ("{d}", z.d.to_string()),
        ("{e}", z.e.to_string()),
        ("{R}", z.tile.to_string()),
        ("{B}", z.block.to_string()),
        ("{alpha}", alpha),
        ("{mask}", mask.to_string()),
    ] {
        t = t.replace(k, &v);
    }
    t
}

pub(crate) fn attention(dtype: &str, z: Sizes, mask: &str) -> Program {
    let text = attention_text(dtype, z, mask);
    parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn the_stream_text_form_round_trips() {
    for mask in ["", "  mask j - i <= 0\n", "  mask -j + i - 3 < 0\n  mask j - i <= 0\n  mask 2*i - 5 != 0\n  mask -7 < 0\n"] {
        let text = attention_text("f64", SMALL, mask);
        let p = attention("f64", SMALL, mask);
        assert_eq!(p.to_string(), text);
        assert_eq!(parse(&p.to_string()).expect("parses"), p);
        let s = p.tiles[0].stream.as_ref().expect("a stream");
        assert_eq!((s.axes[0].extent, s.axes[0].block, s.axes[0].kernels), (11, 3, (1, 3)));
        assert_eq!(s.shifts, vec![Shift { buf: BufId(1), axis: 0, stride: 4 }, Shift { buf: BufId(2), axis: 0, stride: 3 }]);
        assert_eq!((s.scores, s.fill_after, s.score_strides.clone()), (BufId(4), 1, vec![1]));
    }
    let p = attention("f64", SMALL, "  mask -j + i - 3 < 0\n");
    assert_eq!(p.tiles[0].stream.as_ref().unwrap().mask, vec![MaskCmp { op: CmpOp::Lt, row: 1, keys: vec![-1], constant: -3 }]);
    // Factors print after the role; a key named `i` moves the row's name to `row`.
    let mut q = p.clone();
    q.tiles[0].factors[1] = 8;
    let s = q.tiles[0].stream.as_mut().unwrap();
    s.axes[0].name = "i".into();
    s.mask = vec![MaskCmp { op: CmpOp::Ge, row: -2, keys: vec![3], constant: 1 << 50 }];
    let text = q.to_string();
    assert!(text.contains("(kernel 1 slices m x8, kernel 3 slices m)"), "{text}");
    assert!(text.contains("  stream i of 11 in blocks of 3, kernels 1..=3\n  shift K by i * 4\n"), "{text}");
    assert!(text.contains("  mask 3*i - 2*row + 1125899906842624 >= 0\n"), "{text}");
    assert_eq!(parse(&text).expect("parses"), q);
}

#[test]
fn stream_text_errors_are_positioned() {
    let text = attention_text("f64", SMALL, "  mask j - i <= 0\n");
    let bad = |from: &str, to: &str| parse(&text.replace(from, to)).expect_err("must not parse");
    assert!(bad("  shift K by j", "  shift K by l").message.contains("no stream key is named `l`"));
    assert!(bad("  mask j - i <= 0", "  mask j - i - r <= 0").message.contains("the row is `i`"));
    assert!(bad("key strides [1]", "key strides [1, 2]").message.contains("2 key strides for 1 stream keys"));
    assert!(bad("  scores S filled after kernel 1, key strides [1]\n", "").message.contains("`scores` line"));
    assert!(bad("  stream j of 11 in blocks of 3, kernels 1..=3\n", "").message.contains("needs a `stream` line"));
    assert!(bad("kernel 1 slices m,", "kernel 1 slices m x1,").message.contains("at least 2"));
}

/// The verifier refuses `p` with a message containing `needle`.
#[track_caller]
fn rejects(p: &Program, needle: &str) {
    match verify(p) {
        Ok(()) => panic!("verifies, but should fail with `{needle}`:\n{p}"),
        Err(e) => assert!(e.contains(needle), "`{e}` does not say `{needle}`"),
    }
}

#[test]
fn the_verifier_checks_streams() {
    let mask = "  mask j - i <= 0\n";
    let text = attention_text("f64", SMALL, mask);
    let good = attention("f64", SMALL, mask);
    verify(&good).unwrap_or_else(|e| panic!("{e}\n{good}"));
    let edit = |from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        parse(&text.replace(from, to)).expect("parses")
    };
    // Ranges nest inside the group; blocks fit the keys.
    rejects(&edit("kernels 1..=3\n", "kernels 1..=5\n"), "do not nest");
    rejects(&edit("in blocks of 3", "in blocks of 12"), "blocks of 12 keys of 11");
    let mut two = good.clone();
    let s = two.tiles[0].stream.as_mut().unwrap();
    s.axes.push(StreamAxis { name: "l".into(), ..s.axes[0].clone() });
    rejects(&two, "do not nest");
    // Factors: one per kernel, and a GEMM's M is the group's rows times its factor.
    let mut f = good.clone();
    f.tiles[0].factors.pop();
    rejects(&f, "4 factors for 5 kernels");
    let mut f = good.clone();
    f.tiles[0].factors[1] = 2;
    rejects(&f, "kernel 1 cannot run by tiles");
    let mut f = good.clone();
    f.tiles[0].factors[0] = 2;
    rejects(&f, "kernel 0 cannot run by tiles");
    // Shifted buffers: read-only, shared, used only in their axis's kernels, and in
    // bounds for every block start.
    rejects(&edit("  shift V by j * 3\n", "  shift V by j * 3\n  shift O by j * 1\n"), "kernel 4 writes shifted buffer O");
    rejects(&edit("  shift V by j * 3\n", "  shift V by j * 3\n  shift mx by j * 1\n"), "per-thread buffer");
    rejects(&edit("shift K by j * 4", "shift K by j * 5"), "gemm B: K is accessed at 0..=51, outside its 44 elements");
    rejects(&edit("shift V by j * 3", "shift V by j * 4"), "gemm B: V is accessed at 0..=40, outside its 33 elements");
    let mut out = good.clone();
    let s = out.tiles[0].stream.as_mut().unwrap();
    (s.axes[0].kernels, s.fill_after) = ((2, 3), 2);
    rejects(&out, "kernel 1 uses K, shifted along j, outside that axis's kernels");
    // Keys are block-relative, so the block kernels use no loop counter as a number.
    rejects(&edit("v0 max= S[c + i*3]", "v0 max= S[c + i*3] + #c"), "counter of loop c");
    // The score fill: a tile buffer of the group, written by the fill kernel, strides
    // inside a row.
    rejects(&edit("scores S filled", "scores O filled"), "not a tile buffer");
    rejects(&edit("filled after kernel 1", "filled after kernel 3"), "not a kernel of the innermost axis that writes S");
    rejects(&edit("filled after kernel 1", "filled after kernel 0"), "not a kernel of the innermost axis");
    rejects(&edit("key strides [1]", "key strides [2]"), "reaches offset 4 of a row of 3");
    rejects(&edit("key strides [1]", "key strides [-1]"), "key strides [-1]");
    // The mask: one coefficient per axis, integers far from overflow.
    let mut m = good.clone();
    m.tiles[0].stream.as_mut().unwrap().mask[0].keys.push(1);
    rejects(&m, "2 key coefficients for 1 axes");
    rejects(&edit("mask j - i <= 0", "mask j - i + 4611686018427387904 <= 0"), "2^62");
    verify(&edit("mask j - i <= 0", "mask j - i + 4611686018427380000 <= 0")).expect("below 2^62");
}

/// A masked attention case: sizes, mask lines, and the mask as a predicate on (i, j).
struct Case {
    name: &'static str,
    z: Sizes,
    mask: &'static str,
    visible: fn(i64, i64) -> bool,
}

const CASES: &[Case] = &[
    Case { name: "no mask", z: SMALL, mask: "", visible: |_, _| true },
    Case { name: "causal", z: SMALL, mask: "  mask j - i <= 0\n", visible: |i, j| j <= i },
    Case { name: "strict causal", z: SMALL, mask: "  mask j - i < 0\n", visible: |i, j| j < i },
    Case { name: "window 3", z: SMALL, mask: "  mask -j + i - 3 < 0\n  mask j - i <= 0\n", visible: |i, j| i - 3 < j && j <= i },
    Case { name: "rows after 2", z: SMALL, mask: "  mask -i + 2 < 0\n", visible: |i, _| i > 2 },
    // More keys than rows, the causal mask of a decoder shifted by m - n.
    Case {
        name: "m > n, shifted causal",
        z: Sizes { n: 7, m: 17, d: 4, e: 5, tile: 3, block: 5 },
        mask: "  mask j - i - 10 <= 0\n",
        visible: |i, j| j <= i + 10,
    },
    // One block covers every key; tiles of one row.
    Case { name: "one block", z: Sizes { n: 5, m: 6, d: 2, e: 2, tile: 1, block: 6 }, mask: "  mask j - i <= 0\n", visible: |i, j| j <= i },
    // Blocks of one key.
    Case { name: "blocks of 1", z: Sizes { n: 6, m: 5, d: 3, e: 2, tile: 4, block: 1 }, mask: "  mask j - i < 0\n", visible: |i, j| j < i },
];

/// Q, K, V with entries in [-2, 2), rounded to f32 so that both dtypes see the same
/// values.
fn qkv(z: Sizes, seed: u64) -> [Vec<f64>; 3] {
    let mut rng = crate::eval::testutil::Rng::new(seed);
    let mut v = |len: usize| (0..len).map(|_| f64::from((2.0 * rng.next()) as f32)).collect::<Vec<f64>>();
    [v(z.n * z.d), v(z.m * z.d), v(z.m * z.e)]
}

/// Softmax attention computed directly in f64 over the visible keys; a row that sees no
/// key is NaN, as the TIR oracle gives (`exp(-inf - -inf)`).
fn reference(z: Sizes, [q, k, v]: &[Vec<f64>; 3], visible: &dyn Fn(i64, i64) -> bool) -> Vec<f64> {
    let alpha = 1.0 / (z.d as f64).sqrt();
    let mut out = vec![f64::NAN; z.n * z.e];
    for i in 0..z.n {
        let keys: Vec<usize> = (0..z.m).filter(|&j| visible(i as i64, j as i64)).collect();
        if keys.is_empty() {
            continue;
        }
        let s: Vec<f64> = keys.iter().map(|&j| alpha * (0..z.d).map(|a| q[i * z.d + a] * k[j * z.d + a]).sum::<f64>()).collect();
        let mx = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let p: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
        let sum: f64 = p.iter().sum();
        for c in 0..z.e {
            out[i * z.e + c] = keys.iter().zip(&p).map(|(&j, w)| w * v[j * z.e + c]).sum::<f64>() / sum;
        }
    }
    out
}

/// `got` equals `want` within `tol` relative to the largest magnitude, NaN exactly where
/// `want` is NaN.
#[track_caller]
fn assert_close<T: crate::eval::Scalar>(got: &[T], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().filter(|x| x.is_finite()).fold(1.0f64, |a, x| a.max(x.abs()));
    for (n, (g, w)) in got.iter().zip(want).enumerate() {
        let g = crate::eval::Scalar::to_f64(*g);
        let ok = if w.is_nan() { g.is_nan() } else { (g - w).abs() <= tol * scale };
        assert!(ok, "{what}: element {n}: got {g}, want {w}");
    }
}

fn as_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn the_interpreter_runs_streamed_attention() {
    for case in CASES {
        let ins = qkv(case.z, 11);
        let want = reference(case.z, &ins, &case.visible);
        if case.name == "strict causal" {
            assert!(want[..case.z.e].iter().all(|x| x.is_nan()), "row 0 sees no key");
        }
        for skip_blocks in [true, false] {
            let opts = InterpOptions { skip_blocks };
            let what = format!("{} (skip_blocks {skip_blocks})", case.name);
            let p = attention("f64", case.z, case.mask);
            verify(&p).unwrap_or_else(|e| panic!("{what}: {e}\n{p}"));
            let refs: Vec<&[f64]> = ins.iter().map(|v| v.as_slice()).collect();
            let got = interpret_with(&p, &refs, opts).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_close(&got[0], &want, 1e-12, &format!("f64 {what}"));
            let p = attention("f32", case.z, case.mask);
            let ins32: Vec<Vec<f32>> = ins.iter().map(|v| as_f32(v)).collect();
            let refs: Vec<&[f32]> = ins32.iter().map(|v| v.as_slice()).collect();
            let got = interpret_with(&p, &refs, opts).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_close(&got[0], &want, 1e-5, &format!("f32 {what}"));
        }
    }
}

/// Skipping blocks is invisible in the results, and without the fill the masked keys
/// would count: the fill is what applies the mask.
#[test]
fn the_fill_applies_the_mask() {
    let case = &CASES[1];
    let ins = qkv(case.z, 3);
    let refs: Vec<&[f64]> = ins.iter().map(|v| v.as_slice()).collect();
    let p = attention("f64", case.z, case.mask);
    let with = interpret_with(&p, &refs, InterpOptions { skip_blocks: true }).expect("runs");
    let without = interpret_with(&p, &refs, InterpOptions { skip_blocks: false }).expect("runs");
    assert_close(&with[0], &without[0], 1e-13, "skip vs no skip");
    // The same program with no mask computes unmasked attention: different results.
    let unmasked = interpret_with(&attention("f64", case.z, ""), &refs, InterpOptions::default()).expect("runs");
    let differs = with[0].iter().zip(&unmasked[0]).any(|(a, b)| (a - b).abs() > 1e-6);
    assert!(differs, "the mask changed nothing");
}

/// Runs `p` on every executor of this build (native code generators and the
/// interpreter) and returns each backend's first output, flattened.
fn on_executors<T: crate::eval::Scalar>(p: &Program, ins: &[Vec<T>]) -> Vec<(crate::backend::Backend, Vec<T>)> {
    let arrays: Vec<ndarray::ArrayD<T>> = ins
        .iter()
        .zip(&p.inputs)
        .map(|(v, &b)| ndarray::ArrayD::from_shape_vec(p.buf(b).shape.clone(), v.clone()).expect("shape"))
        .collect();
    let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
    let mut out = Vec::new();
    for backend in crate::backend::Backend::executors() {
        let exe = crate::exec::Executable::new(p.clone(), backend).unwrap_or_else(|e| panic!("{backend}: {e}\n{p}"));
        // Twice: the second call reuses the first call's tile buffers.
        for _ in 0..2 {
            let got = exe.run(&views).unwrap_or_else(|e| panic!("{backend}: {e}"));
            out.push((backend, got[0].iter().copied().collect()));
        }
    }
    out
}

#[test]
fn every_executor_runs_streamed_attention() {
    for case in CASES {
        let ins = qkv(case.z, 5);
        let want = reference(case.z, &ins, &case.visible);
        for (backend, got) in on_executors(&attention("f64", case.z, case.mask), &ins) {
            assert_close(&got, &want, 1e-12, &format!("f64 {} on {backend}", case.name));
        }
        let ins32: Vec<Vec<f32>> = ins.iter().map(|v| as_f32(v)).collect();
        for (backend, got) in on_executors(&attention("f32", case.z, case.mask), &ins32) {
            assert_close(&got, &want, 1e-5, &format!("f32 {} on {backend}", case.name));
        }
    }
}

/// Larger sizes with several threads' worth of tiles, odd sizes, and scores up to about
/// 1e4 in magnitude, exact in f32 (small integers, d = 16 so that 1/sqrt(d) = 1/4): no
/// overflow, and f32 within 1e-5 of the f64 computation.
#[test]
fn large_scores_do_not_overflow() {
    let z = Sizes { n: 37, m: 45, d: 16, e: 7, tile: 8, block: 16 };
    let mut rng = crate::eval::testutil::Rng::new(9);
    let mut ints = |len: usize, r: f64| (0..len).map(|_| (rng.next() * r).round()).collect::<Vec<f64>>();
    let ins = [ints(z.n * z.d, 50.0), ints(z.m * z.d, 50.0), ints(z.m * z.e, 3.0)];
    let max = (0..z.n)
        .flat_map(|i| (0..z.m).map(move |j| (i, j)))
        .map(|(i, j)| (0..z.d).map(|a| ins[0][i * z.d + a] * ins[1][j * z.d + a]).sum::<f64>().abs() / 4.0)
        .fold(0.0, f64::max);
    assert!(max > 3e3, "scores up to {max}");
    for (mask, visible) in [("", (|_, _| true) as fn(i64, i64) -> bool), ("  mask -j + i - 9 < 0\n  mask j - i <= 0\n", |i, j| i - 9 < j && j <= i)] {
        let want = reference(z, &ins, &visible);
        assert!(want.iter().all(|x| x.is_finite()));
        for (backend, got) in on_executors(&attention("f64", z, mask), &ins) {
            assert_close(&got, &want, 1e-12, &format!("f64 on {backend}"));
        }
        let ins32: Vec<Vec<f32>> = ins.iter().map(|v| as_f32(v)).collect();
        for (backend, got) in on_executors(&attention("f32", z, mask), &ins32) {
            assert_close(&got, &want, 1e-5, &format!("f32 on {backend}"));
        }
    }
}

/// 2-simplicial attention with two stream axes (design §5): keys j (outer, blocks of
/// `{J}`) and l (inner, blocks of `{B}`). Per j block the prologue forms `X = Q ⊙ K1[j]`
/// for the block's J keys; per l block one GEMM over the tile's (row, jj) pairs (factor
/// J) gives the scores, the update runs the online softmax jointly over (jj, c), a second
/// GEMM gives `Y = P·V2` and the epilogue adds `Y ⊙ V1[j]` into the accumulator.
const SIMPLICIAL: &str = "program simplicial ({t})
  buf b0 Q[{n}, {d}]  input 0
  buf b1 K1[{m1}, {d}]  input 1
  buf b2 K2[{m2}, {d}]  input 2
  buf b3 V1[{m1}, {e}]  input 3
  buf b4 V2[{m2}, {e}]  input 4
  buf b5 O[{n}, {e}]  output 0
  buf b6 X[{n}, {J}, {d}]  tile rows of {Jd}, per thread
  buf b7 S[{n}, {J}, {B}]  tile rows of {JB}, per thread
  buf b8 Y[{n}, {J}, {e}]  tile rows of {Je}, per thread
  buf b9 mx[{n}]  tile rows of 1, per thread
  buf b10 l[{n}]  tile rows of 1, per thread
  buf b11 acc[{n}, {e}]  tile rows of {e}, per thread

tiles of {R} rows of {n}, kernels 0..=6 (kernel 2 slices m x{J}, kernel 4 slices m x{J})
  stream j of {m1} in blocks of {J}, kernels 1..=5
  stream l of {m2} in blocks of {B}, kernels 2..=5
  shift K1 by j * {d}
  shift V1 by j * {e}
  shift K2 by l * {d}
  shift V2 by l * {e}
  scores S filled after kernel 2, key strides [{B}, 1]
{mask}kernel 0 loops init (steps 0)
  parallel for i in 0..{n} {
    mx[i] = -inf
    l[i] = 0.0
    for c in 0..{e} {
      acc[c + i*{e}] = 0.0
    }
  }

kernel 1 loops prologue (steps 0)
  parallel for i in 0..{n} {
    for jj in 0..{J} {
      for a in 0..{d} {
        X[a + jj*{d} + i*{Jd}] = Q[a + i*{d}] * K1[a + jj*{d}]
      }
    }
  }

kernel 2 gemm (step 0) [M i, jj; N l; K a]
  S[m, n] = 0.5 * X[m, k] K2[k, n]  m = {nJ}, n = {B}, k = {d}
  strides  a [{d}, 1]  b [1, {d}]  c [{B}, 1]

kernel 3 loops update (steps 1)
  parallel for i in 0..{n} {
    v0 = -inf
    for c in 0..{JB} {
      v0 max= S[c + i*{JB}]
    }
    v1 = max(mx[i], v0)
    v2 = select(v1 == -inf, 0.0, v1)
    v3 = exp(mx[i] - v2)
    r = 0.0
    for c1 in 0..{JB} {
      S[c1 + i*{JB}] = exp(S[c1 + i*{JB}] - v2)
      r += S[c1 + i*{JB}]
    }
    l[i] = (l[i] * v3) + r
    mx[i] = v1
    for c2 in 0..{e} {
      acc[c2 + i*{e}] = acc[c2 + i*{e}] * v3
    }
  }

kernel 4 gemm (step 2) [M i, jj; N b; K l]
  Y[m, n] = 1.0 * S[m, k] V2[k, n]  m = {nJ}, n = {e}, k = {B}
  strides  a [{B}, 1]  b [{e}, 1]  c [{e}, 1]

kernel 5 loops epilogue (steps 2)
  parallel for i in 0..{n} {
    for b in 0..{e} {
      for jj in 0..{J} {
        acc[b + i*{e}] = acc[b + i*{e}] + (Y[b + jj*{e} + i*{Je}] * V1[b + jj*{e}])
      }
    }
  }

kernel 6 loops finish (steps 3)
  parallel for i in 0..{n} {
    for c in 0..{e} {
      O[c + i*{e}] = acc[c + i*{e}] / l[i]
    }
  }
";

#[derive(Clone, Copy, Debug)]
struct Sizes2 {
    n: usize,
    m1: usize,
    m2: usize,
    d: usize,
    e: usize,
    tile: usize,
    j: usize,
    block: usize,
}

fn simplicial(dtype: &str, z: Sizes2, mask: &str) -> Program {
    let mut t = SIMPLICIAL.to_string();
    for (k, v) in [
        ("{t}", dtype.to_string()),
        ("{nJ}", (z.n * z.j).to_string()),
        ("{Jd}", (z.j * z.d).to_string()),
        ("{JB}", (z.j * z.block).to_string()),
        ("{Je}", (z.j * z.e).to_string()),
        ("{n}", z.n.to_string()),
        ("{m1}", z.m1.to_string()),
        ("{m2}", z.m2.to_string()),
        ("{d}", z.d.to_string()),
        ("{e}", z.e.to_string()),
        ("{R}", z.tile.to_string()),
        ("{J}", z.j.to_string()),
        ("{B}", z.block.to_string()),
        ("{mask}", mask.to_string()),
    ] {
        t = t.replace(k, &v);
    }
    let p = parse(&t).unwrap_or_else(|e| panic!("{e}\n{t}"));
    assert_eq!(p.to_string(), t, "the text is in printed form");
    p
}

/// 2-simplicial attention computed directly in f64 (α = 1/2, d = 4).
fn reference2(z: Sizes2, ins: &[Vec<f64>; 5], visible: fn(i64, i64, i64) -> bool) -> Vec<f64> {
    let [q, k1, k2, v1, v2] = ins;
    let mut out = vec![f64::NAN; z.n * z.e];
    for i in 0..z.n {
        let pairs: Vec<(usize, usize)> =
            (0..z.m1).flat_map(|j| (0..z.m2).map(move |l| (j, l))).filter(|&(j, l)| visible(i as i64, j as i64, l as i64)).collect();
        if pairs.is_empty() {
            continue;
        }
        let s: Vec<f64> =
            pairs.iter().map(|&(j, l)| 0.5 * (0..z.d).map(|a| q[i * z.d + a] * k1[j * z.d + a] * k2[l * z.d + a]).sum::<f64>()).collect();
        let mx = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let p: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
        let sum: f64 = p.iter().sum();
        for b in 0..z.e {
            out[i * z.e + b] = pairs.iter().zip(&p).map(|(&(j, l), w)| w * v1[j * z.e + b] * v2[l * z.e + b]).sum::<f64>() / sum;
        }
    }
    out
}

#[test]
fn two_stream_axes_run_two_simplicial_attention() {
    type Vis = fn(i64, i64, i64) -> bool;
    let z = Sizes2 { n: 9, m1: 7, m2: 8, d: 4, e: 3, tile: 4, j: 3, block: 3 };
    let cases: [(&str, Vis); 4] = [
        ("", |_, _, _| true),
        ("  mask j - i <= 0\n  mask l - i <= 0\n", |i, j, l| j <= i && l <= i),
        ("  mask -j + i - 2 < 0\n  mask j - i <= 0\n  mask -l + i - 4 < 0\n  mask l - i <= 0\n", |i, j, l| {
            i - 2 < j && j <= i && i - 4 < l && l <= i
        }),
        ("  mask j + l - i <= 0\n", |i, j, l| j + l <= i),
    ];
    let mut rng = crate::eval::testutil::Rng::new(21);
    let mut v = |len: usize| (0..len).map(|_| f64::from((1.5 * rng.next()) as f32)).collect::<Vec<f64>>();
    let ins = [v(z.n * z.d), v(z.m1 * z.d), v(z.m2 * z.d), v(z.m1 * z.e), v(z.m2 * z.e)];
    let ins32: Vec<Vec<f32>> = ins.iter().map(|v| as_f32(v)).collect();
    for (mask, visible) in cases {
        let want = reference2(z, &ins, visible);
        let p = simplicial("f64", z, mask);
        verify(&p).unwrap_or_else(|e| panic!("{e}\n{p}"));
        let refs: Vec<&[f64]> = ins.iter().map(|v| v.as_slice()).collect();
        for skip_blocks in [true, false] {
            let got = interpret_with(&p, &refs, InterpOptions { skip_blocks }).unwrap_or_else(|e| panic!("{e}"));
            assert_close(&got[0], &want, 1e-12, &format!("interp {mask} skip {skip_blocks}"));
        }
        for (backend, got) in on_executors(&p, &ins) {
            assert_close(&got, &want, 1e-12, &format!("f64 {mask} on {backend}"));
        }
        for (backend, got) in on_executors(&simplicial("f32", z, mask), &ins32) {
            assert_close(&got, &want, 1e-5, &format!("f32 {mask} on {backend}"));
        }
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn holds(c: &MaskCmp, i: i64, j: i64) -> bool {
        let v = c.row * i + c.keys[0] * j + c.constant;
        match c.op {
            CmpOp::Lt => v < 0,
            CmpOp::Le => v <= 0,
            CmpOp::Gt => v > 0,
            CmpOp::Ge => v >= 0,
            CmpOp::Eq => v == 0,
            CmpOp::Ne => v != 0,
        }
    }

    fn arb() -> impl Strategy<Value = (Sizes, Vec<MaskCmp>, u64)> {
        let op = prop_oneof![Just(CmpOp::Lt), Just(CmpOp::Le), Just(CmpOp::Gt), Just(CmpOp::Ge), Just(CmpOp::Eq), Just(CmpOp::Ne)];
        let cmp = (op, -2i64..=2, -2i64..=2, -8i64..=8).prop_map(|(op, row, key, constant)| MaskCmp { op, row, keys: vec![key], constant });
        (1usize..=20, 1usize..=20, 1usize..=5, 1usize..=4, 1usize..=7)
            .prop_flat_map(move |(n, m, d, e, tile)| {
                (Just(Sizes { n, m, d, e, tile, block: 1 }), 1..=m, proptest::collection::vec(cmp.clone(), 0..=2), any::<u64>())
            })
            .prop_map(|(z, block, mask, seed)| (Sizes { block, ..z }, mask, seed))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Random sizes, tiles, blocks and affine masks: the interpreter (with and without
        /// skipping) and every executor give the direct computation, NaN rows included.
        #[test]
        fn streamed_attention_matches_the_direct_computation((z, mask, seed) in arb()) {
            let ins = qkv(z, seed);
            let want = reference(z, &ins, &|i, j| mask.iter().all(|c| holds(c, i, j)));
            for dtype in ["f64", "f32"] {
                let mut p = attention(dtype, z, "");
                p.tiles[0].stream.as_mut().unwrap().mask = mask.clone();
                verify(&p).map_err(|e| TestCaseError::fail(format!("{e}\n{p}")))?;
                let outs: Vec<(String, Vec<f64>)> = if dtype == "f64" {
                    let refs: Vec<&[f64]> = ins.iter().map(|v| v.as_slice()).collect();
                    let mut o: Vec<(String, Vec<f64>)> = on_executors(&p, &ins).into_iter().map(|(b, v)| (b.to_string(), v)).collect();
                    o.push(("interp, no skipping".into(), interpret_with(&p, &refs, InterpOptions { skip_blocks: false }).unwrap().remove(0)));
                    o
                } else {
                    let ins32: Vec<Vec<f32>> = ins.iter().map(|v| as_f32(v)).collect();
                    let refs: Vec<&[f32]> = ins32.iter().map(|v| v.as_slice()).collect();
                    let mut o: Vec<(String, Vec<f32>)> = on_executors(&p, &ins32).into_iter().map(|(b, v)| (b.to_string(), v)).collect();
                    o.push(("interp, no skipping".into(), interpret_with(&p, &refs, InterpOptions { skip_blocks: false }).unwrap().remove(0)));
                    o.into_iter().map(|(b, v)| (b, v.into_iter().map(f64::from).collect())).collect()
                };
                let tol = if dtype == "f64" { 1e-12 } else { 1e-5 };
                for (backend, got) in outs {
                    let scale = want.iter().filter(|x| x.is_finite()).fold(1.0f64, |a, x| a.max(x.abs()));
                    for (n, (g, w)) in got.iter().zip(&want).enumerate() {
                        let ok = if w.is_nan() { g.is_nan() } else { (g - w).abs() <= tol * scale };
                        prop_assert!(ok, "{dtype} on {backend}: element {n}: got {g}, want {w}\n{p}");
                    }
                }
            }
        }
    }
}
