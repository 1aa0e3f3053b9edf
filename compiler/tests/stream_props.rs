//! Differential tests of online-softmax streaming (flash attention): attention written
//! in several ways, under every kind of mask, at odd sizes with tiny tiles and key
//! blocks (so partial, shifted-back and skipped blocks all occur), run on every executor
//! and compared with the TIR reference evaluator in f64 on the same inputs.

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use proptest::prelude::*;
use tessera_compiler::eval::{evaluate, EvalOptions, Scalar};
use tessera_compiler::exec::Executable;
use tessera_compiler::loops::{Blocks, LowerOptions, Program};
use tessera_compiler::pipeline::{self, Stage};
use tessera_compiler::tir::{bind_dims, Bindings, Function};
use tessera_compiler::Backend;
use tessera_runtime::DType;

mod common;

/// Attention with score `S[i, j]` given by `score` (which may use `i`, `j`, `a`), in a
/// written form: 0 split statements, 1 inline sums, 2 normalised first, 3 exp twice.
fn program(form: usize, score: &str) -> String {
    let head = "fn f(Q: f64[n, d], K: f64[m, d], V: f64[m, e]) -> O: f64[n, e] {\n";
    let body = match form {
        0 => format!("S[i, j] = {score}\n M[i] max= S[i, j]\n P[i, j] = exp(S[i, j] - M[i])\n Z[i] = P[i, j]\n O[i, c] = P[i, j] * V[j, c] / Z[i]"),
        1 => format!("S[i, j] = {score}\n P[i, j] = exp(S[i, j] - max[k](S[i, k]))\n O[i, c] = P[i, j] * V[j, c] / sum[k](P[i, k])"),
        2 => format!("S[i, j] = {score}\n M[i] max= S[i, j]\n P[i, j] = exp(S[i, j] - M[i])\n Z[i] = P[i, j]\n A[i, j] = P[i, j] / Z[i]\n O[i, c] = A[i, j] * V[j, c]"),
        _ => format!("S[i, j] = {score}\n M[i] max= S[i, j]\n O[i, c] = exp(S[i, j] - M[i]) * V[j, c] / sum[k](exp(S[i, k] - M[i]))"),
    };
    format!("{head} {body}\n}}\n")
}

/// Masks: none, causal, strict causal (row 0 sees nothing: NaN), anti-causal, a shifted
/// diagonal, a window, a row predicate, a single diagonal.
const MASKS: [&str; 8] = ["", "j <= i", "j < i", "j >= i", "j <= i + 3", "i - 3 < j && j <= i", "i > 2", "j == i"];

fn score(mask: &str) -> String {
    let s = "Q[i, a] * K[j, a] / sqrt(d)";
    if mask.is_empty() {
        s.to_string()
    } else {
        format!("select({mask}, sum[a]({s}), -inf)")
    }
}

/// Inputs in [-1, 1] times `scale`, rounded to `T` (so that the f64 oracle sees exactly
/// what the kernels see).
fn inputs<T: Scalar>(f: &Function, b: &Bindings, seed: u64, scale: f64) -> Vec<ArrayD<f64>> {
    common::inputs(f, b, seed).into_iter().map(|a| a.mapv(|x| Scalar::to_f64(T::from_f64(x * scale)))).collect()
}

fn lowered(f: &Function, b: &Bindings, blocks: Option<Blocks>) -> Result<Program, String> {
    let lower = LowerOptions { stream_blocks: blocks, ..LowerOptions::default() };
    let opts = pipeline::Options { lower, stop_after: Stage::Loops, ..Default::default() };
    let out = pipeline::compile(f, b, f.dtype, &opts).map_err(|e| format!("{e}\n{f}"))?;
    out.program.ok_or_else(|| "the pipeline stopped before the loop program".to_string())
}

/// Runs `src` at the sizes given on every executor and compares with the oracle:
/// NaN where the oracle has NaN (a row that sees no key), else within `tol` relative.
fn check<T: Scalar>(src: &str, (n, m, d, e): (usize, usize, usize, usize), blocks: Option<Blocks>, scale: f64, tol: f64) -> Result<(), TestCaseError> {
    check_shapes::<T>(src, &[&[n, d], &[m, d], &[m, e]], blocks, scale, tol)
}

fn check_shapes<T: Scalar>(src: &str, shapes: &[&[usize]], blocks: Option<Blocks>, scale: f64, tol: f64) -> Result<(), TestCaseError> {
    let (sm, _, c) = pipeline::check("p.tsr", src);
    let Some(f) = c.functions.first().filter(|_| !c.has_errors()) else {
        return Err(TestCaseError::fail(format!("does not check:\n{src}\n{}", tessera_compiler::diag::render_all(&c.diagnostics, &sm, false))));
    };
    let mut f = f.clone();
    let b = bind_dims(&f, shapes, &[]).map_err(|x| TestCaseError::fail(x.to_string()))?;
    f.dtype = DType::F64;
    let seed = shapes.iter().flat_map(|s| s.iter()).fold(7u64, |a, &x| a.wrapping_mul(31).wrapping_add(x as u64));
    let ins = inputs::<T>(&f, &b, seed, scale);
    let views: Vec<_> = ins.iter().map(|a| a.view()).collect();
    let want = evaluate(&f, &b, &views, &EvalOptions::default()).map_err(|x| TestCaseError::fail(format!("the oracle fails: {x}\n{src}")))?;
    f.dtype = T::DTYPE;
    let prog = lowered(&f, &b, blocks).map_err(TestCaseError::fail)?;
    // Else the test would check the unfused path and pass whatever streaming does.
    prop_assert!(prog.tiles.iter().any(|g| g.stream.is_some()), "no stream in\n{}\n{}", src, prog);
    let typed: Vec<ArrayD<T>> = ins.iter().map(|a| a.mapv(T::from_f64)).collect();
    let typed_views: Vec<ArrayViewD<'_, T>> = typed.iter().map(|a| a.view()).collect();
    let w = &want[0];
    let big = w.iter().filter(|v| v.is_finite()).fold(1e-30f64, |a, v| a.max(v.abs()));
    for backend in Backend::executors() {
        let exe = Executable::new(prog.clone(), backend).map_err(|x| TestCaseError::fail(format!("{x}\n{prog}")))?;
        let got = exe.run(&typed_views).map_err(|x| TestCaseError::fail(format!("{x}\n{prog}")))?;
        for (k, (a, g)) in w.iter().zip(got[0].iter()).enumerate() {
            let g = Scalar::to_f64(*g);
            let ok = if a.is_nan() { g.is_nan() } else { (a - g).abs() <= tol * big };
            prop_assert!(ok, "{} {}: element {} is {} but the oracle says {}\n{}\n{}", backend.name(), T::DTYPE.name(), k, g, a, src, prog);
        }
    }
    Ok(())
}

#[test]
fn streamed_attention_equals_the_oracle() {
    let sizes = (1usize..14, 1usize..14, 1usize..6, 1usize..5);
    let blocks = (1usize..5, 1usize..6);
    let strategy = (0usize..4, 0..MASKS.len(), sizes, blocks, any::<bool>());
    common::run_cases(160, strategy, |(form, mask, (n, m, d, e), (rows, keys), f32)| {
        let src = program(form, &score(MASKS[mask]));
        let blocks = Some(Blocks { rows, keys, outer: 1 });
        if f32 {
            check::<f32>(&src, (n, m, d, e), blocks, 1.0, 2e-5)
        } else {
            check::<f64>(&src, (n, m, d, e), blocks, 1.0, 1e-11)
        }
    });
}

/// 2-simplicial attention: softmax over pairs of keys (j, l), under separable and joint
/// masks, with tiny blocks of both keys.
#[test]
fn streamed_two_key_attention_equals_the_oracle() {
    let masks = ["", "j <= i && l <= i", "i - 2 < j && j <= i && i - 3 < l && l <= i", "j + l <= i", "l < j"];
    let sizes = (1usize..9, 1usize..7, 1usize..7, 1usize..4, 1usize..4);
    let blocks = (1usize..4, 1usize..4, 1usize..4);
    let strategy = (0..masks.len(), sizes, blocks, any::<bool>());
    common::run_cases(80, strategy, |(mask, (n, m1, m2, d, e), (rows, outer, keys), f32)| {
        let s = "Q[i, a] * K1[j, a] * K2[l, a] / sqrt(d)";
        let score = if masks[mask].is_empty() { s.to_string() } else { format!("select({}, sum[a]({s}), -inf)", masks[mask]) };
        let src = format!(
            "fn f(Q: f64[n, d], K1: f64[m, d], K2: f64[p, d], V1: f64[m, e], V2: f64[p, e]) -> O: f64[n, e] {{\n \
             S[i, j, l] = {score}\n M[i] max= S[i, j, l]\n P[i, j, l] = exp(S[i, j, l] - M[i])\n Z[i] = P[i, j, l]\n \
             O[i, b] = P[i, j, l] * V1[j, b] * V2[l, b] / Z[i]\n}}\n"
        );
        let shapes: [&[usize]; 5] = [&[n, d], &[m1, d], &[m2, d], &[m1, e], &[m2, e]];
        let blocks = Some(Blocks { rows, keys, outer });
        if f32 {
            check_shapes::<f32>(&src, &shapes, blocks, 1.0, 2e-5)
        } else {
            check_shapes::<f64>(&src, &shapes, blocks, 1.0, 1e-11)
        }
    });
}

/// Sizes past the default tiles and key blocks (512), with the default block choice.
#[test]
fn default_blocks_at_larger_sizes() {
    for (mask, n, m) in [(0, 65, 517), (1, 130, 130), (5, 97, 97), (2, 33, 33)] {
        let src = program(0, &score(MASKS[mask]));
        check::<f32>(&src, (n, m, 8, 5), None, 1.0, 2e-5).unwrap_or_else(|e| panic!("{e}"));
        check::<f64>(&src, (n, m, 8, 5), None, 1.0, 1e-11).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Scores up to about 1e4 in magnitude: every exponent the kernels take is at most 0,
/// so nothing overflows. Integer inputs and d = 4 (so 1/sqrt(d) = 0.5) make every score
/// exact in f32, so the only differences are the kernels' own roundings.
#[test]
fn large_scores_do_not_overflow() {
    for mask in [0, 1] {
        let src = program(0, &score(MASKS[mask]));
        let (sm, _, c) = pipeline::check("p.tsr", src.as_str());
        assert!(!c.has_errors(), "{}", tessera_compiler::diag::render_all(&c.diagnostics, &sm, false));
        let mut f = c.functions[0].clone();
        let (n, m, d, e) = (40, 37, 4, 3);
        let b = bind_dims(&f, &[&[n, d], &[m, d], &[m, e]], &[]).expect("binds");
        let mut s = 7u64;
        let mut int = |shape: &[usize], r: f64| {
            ArrayD::from_shape_simple_fn(IxDyn(shape), || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) % (2 * r as u64 + 1)) as f64 - r
            })
        };
        let ins = [int(&[n, d], 50.0), int(&[m, d], 50.0), int(&[m, e], 3.0)];
        let views: Vec<_> = ins.iter().map(|a| a.view()).collect();
        f.dtype = DType::F64;
        let want = evaluate(&f, &b, &views, &EvalOptions::default()).expect("oracle");
        let biggest = ins[0].iter().map(|x| x.abs()).fold(0.0, f64::max) * ins[1].iter().map(|x| x.abs()).fold(0.0, f64::max) * d as f64 * 0.5;
        assert!(biggest > 4e3, "scores reach {biggest}");
        f.dtype = DType::F32;
        let prog = lowered(&f, &b, Some(Blocks { rows: 8, keys: 5, outer: 1 })).expect("lowers");
        let typed: Vec<ArrayD<f32>> = ins.iter().map(|a| a.mapv(|x| x as f32)).collect();
        let tv: Vec<_> = typed.iter().map(|a| a.view()).collect();
        for backend in Backend::executors() {
            let got = Executable::new(prog.clone(), backend).and_then(|x| x.run(&tv)).unwrap_or_else(|e| panic!("{backend}: {e}"));
            for (a, g) in want[0].iter().zip(got[0].iter()) {
                assert!(g.is_finite() && (a - *g as f64).abs() <= 1e-5 * 3.0, "{backend}: {g} vs {a}");
            }
        }
    }
}

/// A row that sees no key is NaN on every executor, as in the reference evaluator
/// (`exp(-inf - -inf)`): not 0, as torch's kernel returns.
#[test]
fn fully_masked_rows_are_nan() {
    let src = program(0, &score("j < i"));
    check::<f32>(&src, (6, 6, 4, 3), Some(Blocks { rows: 2, keys: 2, outer: 1 }), 1.0, 2e-5).expect("f32");
    let (_, _, c) = pipeline::check("p.tsr", src.as_str());
    let f = &c.functions[0];
    let b = bind_dims(f, &[&[6, 4], &[6, 4], &[6, 3]], &[]).expect("binds");
    let prog = lowered(f, &b, None).expect("lowers");
    let ones = [ArrayD::<f64>::ones(IxDyn(&[6, 4])), ArrayD::ones(IxDyn(&[6, 4])), ArrayD::ones(IxDyn(&[6, 3]))];
    let v: Vec<_> = ones.iter().map(|a| a.view()).collect();
    for backend in Backend::executors() {
        let got = Executable::new(prog.clone(), backend).and_then(|x| x.run(&v)).expect("runs");
        assert!(got[0].iter().take(3).all(|x| x.is_nan()), "{backend}: row 0 {:?}", got[0]);
        assert!(got[0].iter().skip(3).all(|x| (x - 1.0).abs() < 1e-12), "{backend}: {:?}", got[0]);
    }
}
