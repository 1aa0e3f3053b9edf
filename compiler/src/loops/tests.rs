use super::*;
use crate::check::check_file;
use crate::diag::SourceMap;
use crate::eval::{evaluate, EvalOptions};
use crate::plan::{plan, PlanOptions};
use crate::tir::bind_dims;
use ndarray::ArrayD;

/// Checks, plans (with the algebra pass) and lowers the first function of `src`.
pub(crate) fn lower_src(src: &str, dims: &[(&str, u64)], opts: &LowerOptions) -> (crate::tir::Function, crate::tir::Bindings, Program) {
    let mut sm = SourceMap::new();
    let id = sm.add("p.tsr", src);
    let c = check_file(&mut sm, id);
    assert!(!c.has_errors(), "{}", crate::diag::render_all(&c.diagnostics, &sm, false));
    let f = c.functions[0].clone();
    let explicit: Vec<(String, u64)> = dims.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    let mut given = crate::tir::Bindings::new(f.dims.len());
    for (n, v) in dims {
        given.set(f.dim_by_name(n).expect("a dim of the function"), *v);
    }
    let shapes: Vec<Vec<usize>> = f.args().map(|t| f.shape(t, &given).expect("dims for every input")).collect();
    let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
    let b = bind_dims(&f, &refs, &explicit).expect("binds");
    let p = plan(&f, &b, &PlanOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let prog = lower(&p, opts).unwrap_or_else(|e| panic!("{e}\n{p}"));
    (f, b, prog)
}

fn inputs(f: &crate::tir::Function, b: &crate::tir::Bindings, seed: u64) -> Vec<ArrayD<f64>> {
    let mut rng = crate::eval::testutil::Rng::new(seed);
    f.inputs.iter().map(|&t| rng.array(&f.shape(t, b).expect("bound"))).collect()
}

/// The interpreter's outputs equal the oracle's, in f64 and f32.
fn check_against_oracle(src: &str, dims: &[(&str, u64)], opts: &LowerOptions) -> Program {
    let (f, b, prog) = lower_src(src, dims, opts);
    let ins = inputs(&f, &b, 7);
    let views: Vec<_> = ins.iter().map(|a| a.view()).collect();
    let want = evaluate(&f, &b, &views, &EvalOptions::default()).expect("oracle");
    let flat: Vec<Vec<f64>> = ins.iter().map(|a| a.iter().copied().collect()).collect();
    let refs: Vec<&[f64]> = flat.iter().map(|v| v.as_slice()).collect();
    let got = interpret(&prog, &refs).unwrap_or_else(|e| panic!("{e}\n{prog}"));
    for (w, g) in want.iter().zip(&got) {
        let scale = w.iter().fold(1.0f64, |a, x| a.max(x.abs()));
        assert_eq!(w.len(), g.len());
        for (x, y) in w.iter().zip(g) {
            assert!((x - y).abs() <= 1e-10 * scale || (x.is_nan() && y.is_nan()) || x == y, "interp {y} vs oracle {x}\n{prog}");
        }
    }
    prog
}

/// Attention without streaming: the tests of row fusion, tile groups, the printer and
/// the verifier look at its unfused kernels.
fn unstreamed() -> LowerOptions {
    LowerOptions { stream: false, ..LowerOptions::default() }
}

const ATTENTION: &str = "fn softmax(Q: f64[n, d], K: f64[m, d], V: f64[m, e]) -> O: f64[n, e] {
    S[i, j] = Q[i, a] * K[j, a] / sqrt(d)
    M[i] max= S[i, j]
    P[i, j] = exp(S[i, j] - M[i])
    Z[i] = P[i, j]
    O[i, c] = P[i, j] * V[j, c] / Z[i]
}";

#[test]
fn matmul_is_one_gemm() {
    let prog = check_against_oracle(
        "fn f(A: f64[m, k], B: f64[k, n]) -> C: f64[m, n] { C[i, j] = A[i, l] * B[l, j] }",
        &[("m", 16), ("k", 7), ("n", 12)],
        &LowerOptions::default(),
    );
    assert_eq!(prog.kernels.len(), 1, "{prog}");
    let Kernel::Gemm(g) = &prog.kernels[0] else { panic!("{prog}") };
    assert_eq!((g.m, g.n, g.k), (16, 12, 7));
    assert_eq!((g.a_strides, g.b_strides, g.c_strides), ([7, 1], [12, 1], [12, 1]));
}

#[test]
fn batched_transposed_gemm_merges_axes() {
    // b is batch; (i, p) are M and merge; the transposed B reads with swapped strides.
    let prog = check_against_oracle(
        "fn f(A: f64[b, m, p, k], B: f64[b, n, k]) -> C: f64[b, m, p, n] { C[x, i, q, j] = A[x, i, q, l] * B[x, j, l] }",
        &[("b", 3), ("m", 16), ("p", 8), ("k", 16), ("n", 12)],
        &LowerOptions::default(),
    );
    let Kernel::Gemm(g) = &prog.kernels[0] else { panic!("{prog}") };
    assert_eq!((g.m, g.n, g.k, g.outer.len()), (128, 12, 16, 1), "{prog}");
    assert_eq!(g.b_strides, [1, 16]);
}

#[test]
fn attention_interprets_like_the_oracle() {
    for opts in [LowerOptions::default(), LowerOptions { gemm: false, fuse: false, ..Default::default() }] {
        check_against_oracle(ATTENTION, &[("n", 6), ("d", 4), ("m", 5), ("e", 3)], &opts);
    }
}

#[test]
fn row_fusion_joins_the_softmax_passes() {
    let prog = check_against_oracle(ATTENTION, &[("n", 8), ("d", 4), ("m", 8), ("e", 4)], &unstreamed());
    let loops = prog.kernels.iter().filter(|k| matches!(k, Kernel::Loops(_))).count();
    assert!(loops <= 2, "{prog}");
}

#[test]
fn elementwise_chains_are_inlined() {
    let prog = check_against_oracle(
        "fn f(x: f64[n, d], g: f64[d]) -> y: f64[n, d] {
            m[i] = x[i, j] / d
            c[i, j] = x[i, j] - m[i]
            v[i] = c[i, j] * c[i, j] / d
            y[i, j] = c[i, j] * rsqrt(v[i] + 1e-5) * g[j]
        }",
        &[("n", 4), ("d", 8)],
        &LowerOptions::default(),
    );
    // c is read by two statements, so it stays; everything runs in one row-wise kernel.
    assert_eq!(prog.kernels.len(), 1, "{prog}");
}

#[test]
fn inline_reductions_selects_indices_and_groups() {
    check_against_oracle(
        "fn f(A: f64[n, n], x: f64[n * 2]) -> (y: f64[n], z: f64[n, 2]) {
            y[i] = select(j <= i && A[i, j] > 0, A[i, j] * max[k](A[k, j]), -j)
            z[i, p] = x[(i, p)] + sum[q](A[i, q] * i)
        }",
        &[("n", 5)],
        &LowerOptions::default(),
    );
}

#[test]
fn empty_and_unit_sizes() {
    for n in [0, 1] {
        check_against_oracle(ATTENTION, &[("n", n), ("d", 3), ("m", 2), ("e", 1)], &LowerOptions::default());
        check_against_oracle(ATTENTION, &[("n", 2), ("d", 2), ("m", 2), ("e", n)], &LowerOptions::default());
        check_against_oracle(ATTENTION, &[("n", 2), ("d", 2), ("m", n), ("e", 2)], &LowerOptions::default());
    }
}

#[test]
fn memory_slots_are_reused() {
    let prog = check_against_oracle(
        "fn f(A: f64[n, n], C: f64[n, n], D: f64[n, n], E: f64[n, n]) -> B: f64[n, n] {
            T1[i, j] = A[i, k] * C[k, j]
            T2[i, j] = T1[i, k] * D[k, j]
            T3[i, j] = T2[i, k] * E[k, j]
            B[i, j] = T3[i, k] * A[k, j]
        }",
        &[("n", 4)],
        &LowerOptions::default(),
    );
    let temps = prog.bufs.iter().filter(|b| matches!(b.kind, BufKind::Temp { .. })).count();
    assert!(prog.slots.len() < temps, "{prog}");
}

#[test]
fn printer_shows_kernels() {
    let (_, _, prog) = lower_src(ATTENTION, &[("n", 8), ("d", 4), ("m", 8), ("e", 4)], &unstreamed());
    let text = prog.to_string();
    assert!(text.contains("kernel 0 gemm"), "{text}");
    assert!(text.contains("parallel for i in 0..8"), "{text}");
}

#[test]
fn verifier_rejects_out_of_bounds_and_races() {
    let (_, _, mut prog) = lower_src(ATTENTION, &[("n", 8), ("d", 4), ("m", 8), ("e", 4)], &unstreamed());
    assert_eq!(verify(&prog), Ok(()));
    let mut bad = prog.clone();
    if let Kernel::Gemm(g) = &mut bad.kernels[0] {
        g.m += 1;
    }
    // The GEMM no longer runs over the tile group's rows...
    assert!(!bad.tiles.is_empty(), "{bad}");
    assert!(verify(&bad).unwrap_err().contains("tiles"), "{bad}");
    // ...and, outside any group, reads and writes past its buffers.
    let tiles = std::mem::take(&mut bad.tiles);
    // Every intermediate gets a slot of its own, so only the addresses are wrong.
    bad.slots.clear();
    for b in &mut bad.bufs {
        if let BufKind::Tile { .. } | BufKind::Temp { .. } = b.kind {
            b.kind = BufKind::Temp { slot: bad.slots.len() };
            bad.slots.push(b.len());
        }
    }
    assert!(verify(&bad).unwrap_err().contains("outside"), "{bad}");
    // A tile buffer used outside its group is refused.
    let mut stray = prog.clone();
    stray.tiles.iter_mut().for_each(|g| g.local.clear());
    assert!(verify(&stray).unwrap_err().contains("outside its tile group"), "{stray}");
    assert!(!tiles.is_empty());
    let k = prog.kernels.iter().position(|k| matches!(k, Kernel::Loops(_))).expect("a loop kernel");
    if let Kernel::Loops(l) = &mut prog.kernels[k] {
        fn strip(s: &mut [Stmt]) {
            for x in s {
                match x {
                    Stmt::For { body, .. } => strip(body),
                    Stmt::Store { index, .. } => index.terms.clear(),
                    _ => {}
                }
            }
        }
        strip(&mut l.body);
    }
    assert!(verify(&prog).unwrap_err().contains("race"), "{prog}");
}

#[test]
fn a_map_and_the_sum_after_it_share_one_loop() {
    let prog = check_against_oracle(
        "fn f(x: f64[n, d]) -> (c: f64[n, d], v: f64[n]) {
            c[i, j] = x[i, j] - 1
            v[i] = c[i, j] * c[i, j]
        }",
        &[("n", 4), ("d", 8)],
        &LowerOptions::default(),
    );
    let Kernel::Loops(k) = &prog.kernels[0] else { panic!("{prog}") };
    let [Stmt::For { body, .. }] = k.body.as_slice() else { panic!("{prog}") };
    let inner: Vec<&Stmt> = body.iter().filter(|s| matches!(s, Stmt::For { .. })).collect();
    let [Stmt::For { body: fused, .. }] = inner.as_slice() else { panic!("two passes over the row:\n{prog}") };
    assert!(fused.iter().any(|s| matches!(s, Stmt::Store { .. })) && fused.iter().any(|s| matches!(s, Stmt::Update { .. })), "{prog}");
}

/// The regression of the tile-group miscompile: the memory plan must treat a tile group
/// as one moment. Sharing a slot between a buffer the group's first kernel reads and one
/// a later kernel writes must fail verification, and the interpreter, which runs groups
/// tile by tile like the executor, must show the wrong result such a plan gives.
#[test]
fn tile_groups_keep_their_buffers_alive_for_the_whole_group() {
    let src = "fn causal(Q: f64[n, d], K: f64[n, d], V: f64[n, d]) -> O: f64[n, d] {
        S[i, j] = select(j <= i, Q[i, a] * K[j, a] / sqrt(d), -inf)
        M[i] max= S[i, j]
        P[i, j] = exp(S[i, j] - M[x])
        O[i, c] = P[i, j] * V[j, c] / sum[k](P[i, k])
    }";
    // Large enough for GEMMs (smaller products run as loops, and then there is no group).
    let prog = check_against_oracle(src, &[("n", 9), ("d", 9)], &LowerOptions::default());
    // In some tile group, a temporary read inside the group but written before it, and
    // an intermediate written inside it (a slot or a tile buffer, which the test then
    // puts in the first one's slot).
    let slot_of = |b: BufId| if let BufKind::Temp { slot } = prog.buf(b).kind { Some(slot) } else { None };
    let pair = |g: &TileGroup| {
        let (mut reads, mut writes) = (Vec::new(), Vec::new());
        for k in g.first..=g.last {
            let (r, w) = match &prog.kernels[k] {
                Kernel::Loops(l) => l.buffers(),
                Kernel::Gemm(gm) => (vec![gm.a, gm.b], vec![gm.c]),
            };
            reads.extend(r);
            writes.extend(w);
        }
        let early = reads.iter().copied().find(|&b| slot_of(b).is_some() && !writes.contains(&b))?;
        let late = writes.iter().copied().find(|&b| slot_of(b).is_some() || matches!(prog.buf(b).kind, BufKind::Tile { .. }))?;
        // With one tile the order of kernels inside the group cannot matter.
        (g.tile < g.extent).then_some((early, late))
    };
    let Some((early, late)) = prog.tiles.iter().find_map(pair) else { panic!("no pair of group temporaries to alias\n{prog}") };
    let mut bad = prog.clone();
    let s = slot_of(early).expect("temp");
    bad.slots[s] = bad.slots[s].max(bad.buf(late).len());
    bad.bufs[late.index()].kind = BufKind::Temp { slot: s };
    let err = verify(&bad).expect_err("aliased slots must not verify");
    assert!(err.contains("alive at the same time"), "{err}");
    let mut rng = crate::eval::testutil::Rng::new(3);
    let ins: Vec<Vec<f64>> = prog.inputs.iter().map(|&b| rng.array(&prog.buf(b).shape).iter().copied().collect()).collect();
    let refs: Vec<&[f64]> = ins.iter().map(|v| v.as_slice()).collect();
    let good = interpret(&prog, &refs).expect("runs");
    let wrong = interpret(&bad, &refs).expect("runs");
    assert_ne!(good, wrong, "the interpreter ran the tile group in program order\n{bad}");
}

/// Print → parse → print is the identity on `prog`, and the parsed program verifies at
/// the stage `prog` is at.
fn assert_round_trip(prog: &Program, stage: Stage, what: &str) {
    let text = prog.to_string();
    let parsed = parse(&text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
    assert_eq!(parsed.to_string(), text, "{what}: printing the parsed program differs");
    verify_at(&parsed, stage).unwrap_or_else(|e| panic!("{what}: the parsed program does not verify: {e}\n{text}"));
    // What the text leaves implicit comes back as lowering made it.
    assert_eq!((&parsed.inputs, &parsed.outputs, &parsed.slots), (&prog.inputs, &prog.outputs, &prog.slots), "{what}");
    assert_eq!(parsed.indices, prog.indices, "{what}: index arguments");
    let locals = |p: &Program| p.tiles.iter().map(|g| { let mut l = g.local.clone(); l.sort(); l }).collect::<Vec<_>>();
    assert_eq!(locals(&parsed), locals(prog), "{what}: tile buffers");
}

/// Lowers every function of `src` at `dims` (each dim the function has), with `opts`;
/// checks the round trip of the final program and of the kernels before the passes.
/// Returns how many functions lowered.
fn round_trip_source(src: &str, what: &str, dims: &dyn Fn(&crate::tir::Function) -> Vec<(String, u64)>, opts: &LowerOptions) -> usize {
    let mut sm = SourceMap::new();
    let id = sm.add("p.tsr", src);
    let c = check_file(&mut sm, id);
    if c.has_errors() {
        return 0;
    }
    let mut n = 0;
    for f in &c.functions {
        let mut b = crate::tir::Bindings::new(f.dims.len());
        for (name, v) in dims(f) {
            if let Some(d) = f.dim_by_name(&name) {
                b.set(d, v);
            }
        }
        let Ok(p) = plan(f, &b, &PlanOptions::default()) else { continue };
        let what = format!("{what}: {}", f.name);
        let kernels = lower_kernels(&p, opts).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_round_trip(&kernels, Stage::Kernels, &what);
        let prog = lower(&p, opts).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_round_trip(&prog, Stage::Planned, &what);
        n += 1;
    }
    n
}

/// Every program lowered from the test cases (at their dims) and from the standard
/// library (every dim at a few small sizes) prints, parses back and prints the same.
#[test]
fn printed_programs_parse_back() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("tests/cases").map(|e| e.expect("entry").path()).collect();
    files.sort();
    let mut lowered = 0;
    for path in files.iter().filter(|p| p.extension().is_some_and(|x| x == "tsr")) {
        let text = std::fs::read_to_string(path).expect("readable");
        let Some(list) = text.lines().nth(1).and_then(|l| l.strip_prefix("# dims:")) else { continue };
        let dims: Vec<(String, u64)> = list
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(n, v)| (n.trim().to_string(), v.trim().parse().expect("a size")))
            .collect();
        let n = round_trip_source(&text, &path.display().to_string(), &|_| dims.clone(), &LowerOptions::default());
        assert!(n > 0, "{}: nothing lowered", path.display());
        lowered += n;
    }
    assert!(lowered >= 20, "only {lowered} case functions lowered");
    for (module, src) in crate::stdlib::MODULES {
        let mut n = 0;
        for size in [2, 5, 16] {
            let all = |f: &crate::tir::Function| f.dims.iter().map(|d| (d.name.clone(), size)).collect();
            n += round_trip_source(src, &format!("std::{module} at {size}"), &all, &LowerOptions::default());
            let plain = LowerOptions { gemm: false, fuse: false, ..Default::default() };
            n += round_trip_source(src, &format!("std::{module} at {size}, unfused"), &all, &plain);
        }
        assert!(n > 0, "std::{module} lowers at none of the sizes");
    }
}

/// Malformed inputs are errors at a line and column, never panics.
#[test]
fn parse_errors_have_positions() {
    let good = "program f (f32)\n  buf b0 x[4]  input 0\n  buf b1 y[4]  output 0\n\nkernel 0 loops y (steps 0)\n  parallel for i in 0..4 {\n    y[i] = exp(x[i]) * 2.0\n  }\n";
    assert_eq!(parse(good).expect("parses").to_string(), good);
    // `good` with line `n` (1-based) replaced, or removed when `with` is None.
    let edit = |n: usize, with: Option<&str>| {
        let mut lines: Vec<&str> = good.lines().collect();
        match with {
            Some(w) => lines[n - 1] = w,
            None => drop(lines.remove(n - 1)),
        }
        lines.join("\n")
    };
    let cases: Vec<(String, (usize, usize), &str)> = vec![
        (String::new(), (1, 1), "expected `program"),
        (edit(1, Some("program f (f16)")), (1, 12), "unknown dtype"),
        (edit(2, Some("  buf b1 x[4]  input 0")), (2, 8), "expected buffer b0, found b1"),
        (edit(2, Some("  buf b0 x[4, ]  input 0")), (2, 15), "expected a number"),
        (edit(2, Some("  buf b0 x[4]  inptu 0")), (2, 16), "expected a buffer kind"),
        (edit(3, Some("  buf b1 x[4]  output 0")), (3, 10), "declared twice"),
        (edit(2, Some("  buf b0 x[4]  input 1")), (3, 1), "inputs 0..1"),
        (edit(5, Some("kernel 1 loops y (steps 0)")), (5, 8), "expected kernel 0, found kernel 1"),
        (edit(6, Some("  parallel for i in 0..4")), (6, 25), "expected ` {`"),
        (edit(7, Some("    z[i] = exp(x[i]) * 2.0")), (7, 5), "no buffer is named `z`"),
        (edit(7, Some("      y[i] = exp(x[i]) * 2.0")), (7, 7), "indented 4 spaces"),
        (edit(7, Some("    y[i] = ex(x[i]) * 2.0")), (7, 12), "unknown function `ex`"),
        (edit(7, Some("    y[i] = exp(x[j]) * 2.0")), (7, 18), "no enclosing loop is named `j`"),
        (edit(7, Some("    y[i] = exp(x[i]) * 2.0.0.1")), (7, 24), "is not a number"),
        (edit(7, Some("    y[i] = exp(x[i]); 2.0")), (7, 21), "unexpected `; 2.0`"),
        (edit(7, Some("    y[i] = exp(acc0) * 2.0")), (7, 16), "used before any"),
        (edit(7, Some("    y[i] = select((#i < 1.0) && (#i > 2.0) || (#i > 3.0), 1.0, 2.0)")), (7, 43), "mix"),
        (edit(8, None), (7, 27), "expected `}`"),
        (edit(2, Some("  buf b0 x[4, 99999999999999]  input 0")), (2, 15), "too large"),
        (edit(2, Some("  buf b0 x[1099511627776, 1099511627776]  input 0")), (2, 11), "more than 2^40 elements"),
        (edit(7, Some(&format!("    y[i] = {}x[i]{}", "(".repeat(5000), ")".repeat(5000)))), (7, 140), "nests more than 128 deep"),
        (edit(7, Some(&format!("    y[i] = {}x[i]", "-".repeat(5000)))), (7, 140), "nests more than 128 deep"),
    ];
    // Sizes the parser accepts may still overflow an address: the verifier says so.
    let huge = good.replace("0..4 {", "0..1099511627776 {").replace("    y[i]", "    y[i*1099511627776]").replace("x[i]", "x[0]");
    let p = parse(&huge).expect("parses");
    assert!(verify(&p).unwrap_err().contains("overflows"), "{p}");
    for (input, (l, c), msg) in cases {
        let e = parse(&input).expect_err(&input);
        assert_eq!((e.line, e.col), (l, c), "{e}\n{input}");
        assert!(e.message.contains(msg), "{e}\n{input}");
    }
}

/// The printer's ambiguous-looking spellings read back as what they print: negative
/// constants against negations, comparisons against parenthesised conditions, empty
/// conjunctions, constants with their values, temporaries before the memory plan.
#[test]
fn parser_reads_the_subtle_spellings() {
    let text = "program f (f64)
  buf b0 x[3]  input 0
  buf b1 c[3]  const [1.5, -inf, NaN]
  buf b2 t[3]  temp
  buf b3 y[3]  output 0

kernel 0 loops t (steps 0)
  for i in 0..3 {
    acc0 = -inf
    for j in 0..2 {
      acc0 max= select(((x[i] + 1.0) < -1.0) && (!(#j == #i)), -(-1.0), (-x[i]) - -2.5)
      acc0 min= select(, --1.0, pow(c[j], 2.0))
      acc0 += select((#i <= 1.0) || (x[i] != c[j*-1 + 1]), -acc0, max(1e-5, NaN))
    }
    t[i] = acc0
  }

kernel 1 loops y (steps 1)
  parallel for i in 0..3 {
    y[i] = t[i] / (-1e300)
  }
";
    let p = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.to_string(), text);
    let Kernel::Loops(k) = &p.kernels[1] else { panic!("{p}") };
    let [Stmt::For { body, .. }] = k.body.as_slice() else { panic!("{p}") };
    let Stmt::Store { value: Expr::Binary(BinOp::Div, _, d), .. } = &body[0] else { panic!("{:?}", body[0]) };
    assert_eq!(**d, Expr::un(UnOp::Neg, Expr::Const(1e300)));
    assert!(matches!(&p.bufs[1].kind, BufKind::Const(v) if v[1] == f64::NEG_INFINITY && v[2].is_nan()));
    assert!(matches!(p.bufs[2].kind, BufKind::Temp { .. }) && p.slots.is_empty());
    verify_at(&p, Stage::Kernels).expect("verifies before the memory plan");
    assert!(verify(&p).unwrap_err().contains("missing slot"), "a planned program needs slots");
}

/// The driver verifies after every pass and names the one that broke the program; it
/// refuses passes in the wrong order.
#[test]
fn pass_manager_names_the_pass_that_broke_the_program() {
    use super::passes::{pass, run_passes, Pass, PassError, RunOptions, PASSES};
    let names: Vec<&str> = PASSES.iter().map(|p| p.name).collect();
    assert_eq!(names, ["row-fusion", "tile-groups", "localise", "sibling-fusion", "memory-plan"]);
    let (_, _, planned) = lower_src(ATTENTION, &[("n", 8), ("d", 4), ("m", 8), ("e", 4)], &unstreamed());
    let plan = {
        let mut sm = SourceMap::new();
        let id = sm.add("p.tsr", ATTENTION);
        let c = check_file(&mut sm, id);
        let f = c.functions[0].clone();
        let mut b = crate::tir::Bindings::new(f.dims.len());
        for (n, v) in [("n", 8), ("d", 4), ("m", 8), ("e", 4)] {
            b.set(f.dim_by_name(n).expect("dim"), v);
        }
        plan(&f, &b, &PlanOptions::default()).expect("plans")
    };
    let kernels = lower_kernels(&plan, &unstreamed()).expect("lowers");
    // The passes one by one give what lowering gives.
    let mut p = kernels.clone();
    let all: Vec<&Pass> = PASSES.iter().collect();
    let on = RunOptions { verify_each: true };
    assert_eq!(run_passes(&mut p, &all, Stage::Kernels, &on), Ok(Stage::Planned));
    assert_eq!(p, planned);
    // A pass that breaks an invariant is named.
    let breaks = Pass {
        name: "break-bounds",
        from: Stage::Kernels,
        to: Stage::Kernels,
        run: |p| {
            if let Some(b) = p.bufs.iter_mut().find(|b| matches!(b.kind, BufKind::Temp { .. })) {
                b.shape = vec![1];
            }
        },
    };
    let mut p = kernels.clone();
    let err = run_passes(&mut p, &[pass("row-fusion").expect("a pass"), &breaks], Stage::Kernels, &on).unwrap_err();
    assert!(matches!(&err, PassError::Broken { pass, error, .. } if pass == "break-bounds" && error.contains("outside")), "{err}");
    // Without verification the broken program goes through.
    let mut p = kernels.clone();
    assert!(run_passes(&mut p, &[&breaks], Stage::Kernels, &RunOptions { verify_each: false }).is_ok());
    // Tile groups after the memory plan would break its slot sharing: refused.
    let mut p = kernels.clone();
    let order = [pass("memory-plan").expect("a pass"), pass("tile-groups").expect("a pass")];
    let err = run_passes(&mut p, &order, Stage::Kernels, &on).unwrap_err();
    assert!(matches!(&err, PassError::Order { pass, .. } if pass == "tile-groups"), "{err}");
    // Lowering reports a broken pass as an internal error naming it.
    let e = LowerError::Internal(PassError::Broken { pass: "x".into(), error: "e".into(), program: String::new() }.to_string());
    assert!(e.to_string().contains("this is a bug") && e.to_string().contains("pass `x`"), "{e}");
}


/// In L-Mul mode every product of a plan is an `lmul`, contractions become loop
/// kernels (no GEMM, no streamed attention), and every executor matches the reference
/// evaluator running the plan's own program in the same mode, in f32 and f64.
#[test]
fn lmul_mode_runs_contractions_as_loop_kernels_on_every_executor() {
    use crate::tir::lmul::MulMode;
    let src = "fn f(Q: f32[n, d], K: f32[n, d], V: f32[n, d], W: f32[d, d]) -> (O: f32[n, d], Y: f32[n, d]) {
        S[i, j] = Q[i, a] * K[j, a] / sqrt(d)
        M[i] max= S[i, j]
        P[i, j] = exp(S[i, j] - M[i])
        Z[i] = P[i, j]
        O[i, b] = P[i, j] * V[j, b] / Z[i]
        Y[i, c] = 2 * Q[i, a] * W[a, c] * W[c, c]
    }";
    let mut sm = SourceMap::new();
    let id = sm.add("p.tsr", src);
    let c = check_file(&mut sm, id);
    assert!(!c.has_errors(), "{}", crate::diag::render_all(&c.diagnostics, &sm, false));
    let f = c.functions[0].clone();
    for mode in [MulMode::Lmul(0), MulMode::Lmul(3)] {
        for dtype in [tessera_runtime::DType::F32, tessera_runtime::DType::F64] {
            let mut f = f.clone();
            f.dtype = dtype;
            let b = bind_dims(&f, &[&[37, 8], &[37, 8], &[37, 8], &[8, 8]], &[]).expect("binds");
            let exact = plan(&f, &b, &PlanOptions::default()).expect("plans");
            let p = plan(&f, &b, &PlanOptions { mul: mode, ..PlanOptions::default() }).expect("plans");
            assert!(!exact.fusions.is_empty() && p.fusions.is_empty(), "{p}");
            assert!(p.to_string().contains(&format!("mul      {mode}")), "{p}");
            let prog = lower(&p, &LowerOptions::default()).expect("lowers");
            assert!(prog.kernels.iter().all(|k| matches!(k, Kernel::Loops(_))), "{prog}");
            assert!(prog.to_string().contains("lmul("), "{prog}");
            // Only scalings by compile-time constants (here 1/sqrt(d) and 2) stay exact.
            for st in &p.program.stmts {
                st.rhs.clone().map_nodes(&mut |e| {
                    if let crate::tir::Expr::Mul(xs) = &e {
                        let tensors = xs.iter().filter(|x| !crate::tir::lmul::is_constant(x)).count();
                        assert!(tensors <= 1, "an exact product of tensors in lmul mode:\n{p}");
                    }
                    e
                });
            }
            assert!(prog.to_string().contains("2.0 * lmul("), "{prog}");
            let ins = inputs(&f, &b, 5);
            let views: Vec<_> = ins.iter().map(|a| a.view()).collect();
            let tol = if dtype == tessera_runtime::DType::F32 { 1e-5 } else { 1e-12 };
            let ins32: Vec<ArrayD<f32>> = ins.iter().map(|a| a.mapv(|x| x as f32)).collect();
            let v32: Vec<_> = ins32.iter().map(|a| a.view()).collect();
            // The oracle runs in the program's dtype, as L-Mul is defined on its bits.
            let want: Vec<ArrayD<f64>> = if dtype == tessera_runtime::DType::F32 {
                let w = evaluate(&p.program, &b, &v32, &EvalOptions::default()).expect("oracle");
                w.iter().map(|a| a.mapv(f64::from)).collect()
            } else {
                evaluate(&p.program, &b, &views, &EvalOptions::default()).expect("oracle")
            };
            let check = |got: Vec<ArrayD<f64>>, what: &str| {
                for (w, g) in want.iter().zip(&got) {
                    let scale = w.iter().fold(1.0f64, |a, x| a.max(x.abs()));
                    for (x, y) in w.iter().zip(g) {
                        assert!((x - y).abs() <= tol * scale, "{what} {mode} {dtype}: {x} vs {y}\n{prog}");
                    }
                }
                // The mode changes results by about the paper's error, not by nothing.
                let exact = evaluate(&f, &b, &views, &EvalOptions::default()).expect("oracle");
                let diff = exact[1].iter().zip(&got[1]).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
                assert!(diff > 1e-3, "{what} {mode}: lmul mode equals the exact result");
            };
            for backend in crate::backend::Backend::executors() {
                let exe = crate::exec::Executable::new(prog.clone(), backend).expect("compiles");
                let got: Vec<ArrayD<f64>> = if dtype == tessera_runtime::DType::F32 {
                    exe.run(&v32).expect("runs").iter().map(|a| a.mapv(f64::from)).collect()
                } else {
                    exe.run(&views).expect("runs")
                };
                check(got, backend.name());
            }
        }
    }
}

const GATHER: &str = "fn g(U: f64[n, a], I: i64[e]) -> y: f64[e, a] { y[x, p] = U[I[x], p] * 2 }";

/// A gather lowers to one kernel whose load adds `stride · I[x]`; the verifier checks
/// the affine parts and the reach of every index value in `0..extent`, and refuses an
/// index buffer read as a value or written.
#[test]
fn gathers_lower_and_verify() {
    let (_, _, prog) = lower_src(GATHER, &[("n", 5), ("a", 3), ("e", 4)], &LowerOptions::default());
    let text = prog.to_string();
    assert!(text.contains("U[p + @I[x]*3<5]"), "{text}");
    assert_eq!(prog.index_bounds(), vec![Some(IndexBound { extent: 5, source: "U".into(), axis: 0 })]);
    let run = |p: &Program, idx: &[i64]| {
        let u: Vec<f64> = (0..15).map(f64::from).collect();
        interpret_indexed(p, &[&u], &[idx], InterpOptions::default())
    };
    let out = run(&prog, &[4, 0, 2, 2]).expect("runs");
    assert_eq!(out[0], vec![24.0, 26.0, 28.0, 0.0, 2.0, 4.0, 12.0, 14.0, 16.0, 12.0, 14.0, 16.0]);
    let err = run(&prog, &[4, 0, 5, 2]).expect_err("5 is outside 0..5");
    assert_eq!(err.to_string(), "index input `I` at [2] is 5, outside 0..5 (axis 0 of `U` has size 5)");
    // An extent past the source's rows reaches outside it.
    let wider = parse(&text.replace("<5]", "<6]")).expect("parses");
    assert!(verify(&wider).unwrap_err().contains("gather: U is accessed at 0..=17, outside its 15 elements"), "{wider}");
    // The index buffer loaded as a value, and stored to.
    let as_value = parse(&text.replace("U[p + @I[x]*3<5]", "I[x]")).expect("parses");
    assert!(verify(&as_value).unwrap_err().contains("index buffer I is read as a value"));
    let written = parse(&text.replace("y[p + x*3] =", "I[x] =")).expect("parses");
    assert!(verify(&written).is_err(), "{written}");
}
