//! The differential tests every CPU backend runs: compiled kernels against the loop
//! interpreter, on programs from the real pipeline and on hand-built kernels for the
//! corners lowering does not produce, in f32 and f64, with parallel kernels called whole
//! and in chunks. A backend's test module instantiates them with
//! `cpu_backend_tests!(all_codegens)`, `all_codegens()` giving the backend with each set
//! of options worth testing.

use super::{Code, Codegen, CodegenError, CpuKernel};
use crate::eval::testutil::Rng;
use crate::eval::Scalar;
use crate::loops::tests::lower_src;
use crate::loops::{
    interpret, Accum, Affine, BinOp, BufId, BufKind, Buffer, Expr, Kernel, LoopId, LoopInfo, LoopKernel, LowerOptions, Pred, Program, Stmt,
    UnOp, VarId,
};
use tessera_runtime::gemm::{gemm, GemmScalar};
use tessera_runtime::DType;

/// A backend with one set of options.
pub(crate) type Codegens = [Box<dyn Codegen>];

/// The loop kernels of `p` as `cg` compiles them.
pub(crate) fn cpu_kernels(cg: &dyn Codegen, p: &Program) -> Vec<Option<CpuKernel>> {
    match cg.compile(p).unwrap_or_else(|e| panic!("{e}\n{p}")) {
        Code::Cpu(c) => c.kernels,
        #[cfg(feature = "cuda")]
        Code::Cuda(_) => panic!("{} generates GPU code, not CPU kernels", cg.backend()),
    }
}

pub(crate) fn lower(src: &str, dims: &[(&str, u64)]) -> Program {
    // `run` calls kernels directly, without the executor's loop over key blocks, so it
    // runs attention unstreamed; `tests/stream_props.rs` runs streams on every backend.
    lower_src(src, dims, &LowerOptions { stream: false, ..LowerOptions::default() }).2
}

/// Runs `p` compiled, calling each parallel kernel in `chunks` pieces; returns the outputs.
pub(crate) fn run<T: Scalar + GemmScalar>(p: &Program, inputs: &[&[T]], cg: &dyn Codegen, chunks: usize) -> Vec<Vec<T>> {
    run_indexed(p, inputs, &[], cg, chunks)
}

/// [`run`] with index arguments (in range: the executor's check is not run here).
pub(crate) fn run_indexed<T: Scalar + GemmScalar>(
    p: &Program,
    inputs: &[&[T]],
    indices: &[&[i64]],
    cg: &dyn Codegen,
    chunks: usize,
) -> Vec<Vec<T>> {
    let kernels = cpu_kernels(cg, p);
    let nan = <T as Scalar>::from_f64(f64::NAN);
    let mut mem: Vec<Vec<T>> = inputs.iter().map(|x| x.to_vec()).collect();
    let (ni, no) = (p.inputs.len(), p.outputs.len());
    mem.extend(p.outputs.iter().map(|&b| vec![nan; p.buf(b).len()]));
    mem.extend(p.slots.iter().map(|&s| vec![nan; s]));
    let mut region = Vec::new();
    for b in &p.bufs {
        region.push(match &b.kind {
            BufKind::Input(k) => *k,
            BufKind::Output(k) => ni + k,
            BufKind::Temp { slot } => ni + no + slot,
            BufKind::Const(v) => {
                mem.push(v.iter().map(|&x| <T as Scalar>::from_f64(x)).collect());
                mem.len() - 1
            }
            // Kernels keep scratch on their stacks; the argument is never read. Index
            // buffers are pointed at the caller's arrays below.
            BufKind::Scratch | BufKind::Index(_) => {
                mem.push(Vec::new());
                mem.len() - 1
            }
            // Kernels run flat here, over all rows, so a tile buffer is whole.
            BufKind::Tile { .. } => {
                mem.push(vec![nan; b.len()]);
                mem.len() - 1
            }
        });
    }
    let ptrs: Vec<*mut T> = mem.iter_mut().map(|v| v.as_mut_ptr()).collect();
    let mut args: Vec<*mut u8> = region.iter().map(|&r| ptrs[r].cast::<u8>()).collect();
    // Index buffers point at the caller's i64 arrays, which the kernels only read.
    for (b, buf) in p.bufs.iter().enumerate() {
        if let BufKind::Index(k) = buf.kind {
            args[b] = indices.get(k).map_or(std::ptr::null_mut(), |x| x.as_ptr().cast_mut().cast::<u8>());
        }
    }
    for (k, kern) in p.kernels.iter().enumerate() {
        match kern {
            Kernel::Gemm(g) => {
                let (desc, outer) = crate::exec::gemm_args(g);
                let at = |b: BufId| ptrs[region[b.index()]];
                // SAFETY: the verifier checked every GEMM address against the buffers,
                // which are allocated at their full sizes above.
                unsafe { gemm(&desc, &outer, at(g.a), at(g.b), at(g.c), 1) };
            }
            Kernel::Loops(_) => {
                let ck = kernels[k].as_ref().expect("a compiled loop kernel");
                let f = ck.func();
                let n = ck.parallel_extent().unwrap_or(1);
                let pieces = if ck.parallel_extent().is_some() { chunks.max(1) } else { 1 };
                for c in 0..pieces {
                    let (begin, end) = (n * c / pieces, n * (c + 1) / pieces);
                    // SAFETY: `args` has one full-size allocation per buffer of the program.
                    unsafe { f(args.as_ptr(), begin, end) };
                }
            }
        }
    }
    mem.drain(ni..ni + no).collect()
}

/// Random inputs in [-2, 2).
pub(crate) fn inputs<T: Scalar>(p: &Program, seed: u64) -> Vec<Vec<T>> {
    let mut rng = Rng::new(seed);
    p.inputs
        .iter()
        .map(|&b| (0..p.buf(b).len()).map(|_| <T as Scalar>::from_f64(2.0 * rng.next())).collect())
        .collect()
}

/// The compiled program's outputs equal the interpreter's within `tol` relative to the
/// largest output magnitude (reassociated sums and FMA round differently).
fn check_as<T: Scalar + GemmScalar>(p: &Program, cg: &dyn Codegen, chunks: usize, tol: f64) {
    let ins = inputs::<T>(p, 5);
    let refs: Vec<&[T]> = ins.iter().map(|v| v.as_slice()).collect();
    let want = interpret(p, &refs).unwrap_or_else(|e| panic!("{e}\n{p}"));
    let got = run(p, &refs, cg, chunks);
    for (o, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w.len(), g.len());
        let wide = |v: &T| <T as Scalar>::to_f64(*v);
        let scale = w
            .iter()
            .map(wide)
            .fold(1.0f64, |a, x| if x.is_finite() { a.max(x.abs()) } else { a });
        for (e, (x, y)) in w.iter().zip(g).enumerate() {
            let (x, y) = (wide(x), wide(y));
            let ok = x == y || (x.is_nan() && y.is_nan()) || (x - y).abs() <= tol * scale;
            assert!(
                ok,
                "output {o} element {e}: compiled {y} vs interpreted {x} ({}, {chunks} chunks)\n{p}",
                cg.backend()
            );
        }
    }
}

pub(crate) fn check(p: &Program, cg: &dyn Codegen, chunks: usize) {
    match p.dtype {
        DType::F32 => check_as::<f32>(p, cg, chunks, 2e-5),
        DType::F64 => check_as::<f64>(p, cg, chunks, 1e-12),
    }
}

/// Checks `src` (with `T` standing for the dtype) in f32 and f64, with every option set
/// and with parallel kernels called whole and in three chunks.
pub(crate) fn check_src(src: &str, dims: &[(&str, u64)], cgs: &Codegens) {
    for dt in ["f32", "f64"] {
        let p = lower(&src.replace("{T}", dt), dims);
        for cg in cgs {
            for chunks in [1, 3] {
                check(&p, cg.as_ref(), chunks);
            }
        }
    }
}

const SIZES: [u64; 6] = [0, 1, 3, 5, 7, 33];

/// Gathers (rows, two gathered positions of one tensor, a gather under a reduction and
/// inside a map) with random indices, against the interpreter, in f32 and f64.
pub(crate) fn gathers(cgs: &Codegens) {
    let src = "fn f(U: {T}[n, a], V: {T}[m, a], M: {T}[e], I: i64[e], J: i32[e]) -> (y: {T}[e], z: {T}[e, a], w: {T}[e]) {
        y[x] = M[x] - sum[s](U[I[x], s] * V[J[x], s])
        z[x, p] = exp(U[I[x], p]) + V[J[x], p]
        w[x] = U[I[x], J[x]] * 2
    }";
    for (n, m, a, e) in [(1, 1, 1, 1), (5, 4, 4, 0), (5, 4, 4, 9), (7, 6, 6, 33), (3, 9, 9, 70)] {
        for dt in ["f32", "f64"] {
            let p = lower(&src.replace("{T}", dt), &[("n", n), ("m", m), ("a", a), ("e", e)]);
            let mut rng = Rng::new(n * 100 + e);
            let (i, j): (Vec<i64>, Vec<i64>) = (0..e)
                .map(|_| ((rng.bits() % n) as i64, (rng.bits() % m.min(a)) as i64))
                .unzip();
            for cg in cgs {
                for chunks in [1, 3] {
                    match p.dtype {
                        DType::F32 => check_gathered::<f32>(&p, &[&i, &j], cg.as_ref(), chunks, 2e-5),
                        DType::F64 => check_gathered::<f64>(&p, &[&i, &j], cg.as_ref(), chunks, 1e-12),
                    }
                }
            }
        }
    }
}

fn check_gathered<T: Scalar + GemmScalar>(p: &Program, idx: &[&[i64]], cg: &dyn Codegen, chunks: usize, tol: f64) {
    let ins = inputs::<T>(p, 9);
    let refs: Vec<&[T]> = ins.iter().map(|v| v.as_slice()).collect();
    let want = crate::loops::interpret_indexed(p, &refs, idx, Default::default()).unwrap_or_else(|e| panic!("{e}\n{p}"));
    let got = run_indexed(p, &refs, idx, cg, chunks);
    for (w, g) in want.iter().zip(&got) {
        for (x, y) in w.iter().zip(g) {
            let (x, y) = (<T as Scalar>::to_f64(*x), <T as Scalar>::to_f64(*y));
            assert!((x - y).abs() <= tol * x.abs().max(1.0), "compiled {y} vs interpreted {x} ({})\n{p}", cg.backend());
        }
    }
}

const SOFTMAX: &str = "fn softmax(Q: {T}[n, d], K: {T}[m, d], V: {T}[m, e]) -> O: {T}[n, e] {
    S[i, j] = Q[i, a] * K[j, a] / sqrt(d)
    M[i] max= S[i, j]
    P[i, j] = exp(S[i, j] - M[i])
    Z[i] = P[i, j]
    O[i, c] = P[i, j] * V[j, c] / Z[i]
}";

const CAUSAL: &str = "fn causal(Q: {T}[n, d], K: {T}[n, d], V: {T}[n, e]) -> O: {T}[n, e] {
    S[i, j] = select(j <= i, sum[a](Q[i, a] * K[j, a]) / sqrt(d), -inf)
    M[i] max= S[i, j]
    P[i, j] = exp(S[i, j] - M[i])
    Z[i] = P[i, j]
    O[i, c] = P[i, j] * V[j, c] / Z[i]
}";

const LAYERNORM: &str = "fn layernorm(x: {T}[b, d], gamma: {T}[d], beta: {T}[d]) -> y: {T}[b, d] {
    mu[i] = x[i, j] / d
    var[i] = (x[i, j] - mu[i]) * (x[i, j] - mu[i]) / d
    y[i, j] = (x[i, j] - mu[i]) * rsqrt(var[i] + 1e-5) * gamma[j] + beta[j]
}";

pub(crate) fn softmax_attention(cgs: &Codegens) {
    for n in SIZES {
        check_src(SOFTMAX, &[("n", n.max(1)), ("d", 4), ("m", n), ("e", 3)], cgs);
    }
    check_src(SOFTMAX, &[("n", 0), ("d", 4), ("m", 5), ("e", 3)], cgs);
}

pub(crate) fn softmax_attention_without_gemm(cgs: &Codegens) {
    let opts = LowerOptions { gemm: false, fuse: false, ..Default::default() };
    for dt in ["f32", "f64"] {
        let p = lower_src(&SOFTMAX.replace("{T}", dt), &[("n", 5), ("d", 7), ("m", 33), ("e", 3)], &opts).2;
        for cg in cgs {
            check(&p, cg.as_ref(), 2);
        }
    }
}

pub(crate) fn causal_attention(cgs: &Codegens) {
    for n in SIZES {
        check_src(CAUSAL, &[("n", n), ("d", 5), ("e", 7)], cgs);
    }
}

pub(crate) fn layernorm_rows(cgs: &Codegens) {
    for d in SIZES {
        check_src(LAYERNORM, &[("b", 3), ("d", d)], cgs);
    }
}

pub(crate) fn reductions(cgs: &Codegens) {
    let src = "fn f(A: {T}[n, m]) -> (s: {T}[n], mx: {T}[n], mn: {T}[m], t: {T}) {
        s[i] = A[i, j]
        mx[i] max= A[i, j]
        mn[j] min= A[i, j] * 2
        t = sum[i, j](A[i, j] * A[i, j])
    }";
    for n in SIZES {
        check_src(src, &[("n", n), ("m", 7)], cgs);
        check_src(src, &[("n", 5), ("m", n)], cgs);
    }
}

pub(crate) fn every_unary_operator(cgs: &Codegens) {
    for op in ["-", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "abs", "sin", "cos"] {
        let e = if op == "-" { "-x[i]".to_string() } else { format!("{op}(x[i])") };
        let src = format!("fn f(x: {{T}}[n]) -> y: {{T}}[n] {{ y[i] = {e} }}");
        for n in [1, 7, 33] {
            check_src(&src, &[("n", n)], cgs);
        }
    }
}

/// Beyond the inline reduction's limit (2^20 in f32, 2^40 in f64) sin and cos branch to
/// the std function; lanes below it in the same vector keep the inline result.
pub(crate) fn sin_and_cos_of_huge_arguments(cgs: &Codegens) {
    for op in ["sin", "cos"] {
        // Inputs are in [0, 2): the scales put some elements of each vector far out.
        let src = format!("fn f(x: {{T}}[n]) -> y: {{T}}[n] {{ y[i] = {op}(x[i] * x[i] * x[i] * 1e13) }}");
        for n in [1, 7, 33] {
            check_src(&src, &[("n", n)], cgs);
        }
        for dt in ["f32", "f64"] {
            let p = lower(&src.replace("{T}", dt), &[("n", 33)]);
            let ins = inputs::<f64>(&p, 5);
            let got = if dt == "f32" {
                let ins32: Vec<Vec<f32>> = ins.iter().map(|v| v.iter().map(|&x| x as f32).collect()).collect();
                let refs: Vec<&[f32]> = ins32.iter().map(|v| v.as_slice()).collect();
                run(&p, &refs, cgs[0].as_ref(), 1)[0]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect::<Vec<_>>()
            } else {
                let refs: Vec<&[f64]> = ins.iter().map(|v| v.as_slice()).collect();
                run(&p, &refs, cgs[0].as_ref(), 1)[0].clone()
            };
            assert!(got.iter().all(|v| v.is_finite() && v.abs() <= 1.0), "{op} {dt}: {got:?}");
        }
    }
}

pub(crate) fn every_binary_operator(cgs: &Codegens) {
    for e in [
        "x[i] + z[i]",
        "x[i] - z[i]",
        "x[i] * z[i]",
        "x[i] / z[i]",
        "max(x[i], z[i])",
        "min(x[i], z[i])",
        "pow(abs(x[i]), z[i])",
        "lmul(x[i], z[i])",
        "lmul(x[i], z[i], 3)",
    ] {
        let src = format!("fn f(x: {{T}}[n], z: {{T}}[n]) -> y: {{T}}[n] {{ y[i] = {e} }}");
        for n in [1, 5, 33] {
            check_src(&src, &[("n", n)], cgs);
        }
    }
}

/// Operand pairs for L-Mul as bit patterns: every pair of special values (zeros,
/// subnormals, extremes, infinities, NaNs, values whose mantissas carry, exponents near
/// overflow and underflow), then random patterns, half of them with exponents near 1.
pub(crate) fn lmul_operands(wide: bool, random: usize, seed: u64) -> (Vec<u64>, Vec<u64>) {
    let (p, e) = if wide { (52u32, 11u32) } else { (23, 8) };
    let sign = 1u64 << (p + e);
    let inf = ((1u64 << e) - 1) << p;
    let one = ((1u64 << (e - 1)) - 1) << p;
    let top = 1u64 << (p - 1);
    let mut specials = vec![
        0,
        1,
        top,
        (1u64 << p) - 1,
        1u64 << p,
        (1u64 << p) | top,
        one,
        one | top,
        one | (top >> 1) | 1,
        one | ((1u64 << p) - 1),
        one >> 1,
        one + (one >> 1),
        inf - 1,
        inf - (1u64 << p),
        inf,
        inf | 1,
        inf | top,
    ];
    specials.extend(specials.clone().into_iter().map(|b| b | sign));
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for &a in &specials {
        for &b in &specials {
            xs.push(a);
            ys.push(b);
        }
    }
    let mut rng = Rng::new(seed);
    let mask = (sign << 1).wrapping_sub(1);
    for k in 0..random {
        let (mut a, mut b) = (rng.bits() & mask, rng.bits() & mask);
        if k % 2 == 0 {
            // Exponents within 2^±8 of one, so that most products are normal.
            let near = |r: u64| (r & ((1u64 << p) - 1)) | ((one >> p) - 8 + (r >> 60)) << p | (r & sign);
            a = near(a);
            b = near(b);
        }
        xs.push(a);
        ys.push(b);
    }
    (xs, ys)
}

/// Every backend computes L-Mul bit for bit as the scalar reference `tir::lmul`, in
/// vector lanes and scalar tails, for several mantissa widths.
pub(crate) fn lmul_is_bit_exact(cgs: &Codegens) {
    let src = "fn f(x: {T}[n], z: {T}[n]) -> (a: {T}[n], b: {T}[n], c: {T}[n], d: {T}[n], e: {T}[n]) {
        a[i] = lmul(x[i], z[i])
        b[i] = lmul(x[i], z[i], 3)
        c[i] = lmul(x[i], z[i], 4)
        d[i] = lmul(x[i], z[i], 1)
        e[i] = lmul(x[i], z[i], 10)
    }";
    let widths = [None, Some(3), Some(4), Some(1), Some(10)];
    for wide in [false, true] {
        let (xs, ys) = lmul_operands(wide, 4001, 11);
        let n = xs.len();
        let p = lower(&src.replace("{T}", if wide { "f64" } else { "f32" }), &[("n", n as u64)]);
        for cg in cgs {
            for chunks in [1, 3] {
                let outs: Vec<Vec<u64>> = if wide {
                    let (x, y): (Vec<f64>, Vec<f64>) = (xs.iter().map(|&b| f64::from_bits(b)).collect(), ys.iter().map(|&b| f64::from_bits(b)).collect());
                    run(&p, &[&x, &y], cg.as_ref(), chunks).iter().map(|o| o.iter().map(|v| v.to_bits()).collect()).collect()
                } else {
                    let (x, y): (Vec<f32>, Vec<f32>) =
                        (xs.iter().map(|&b| f32::from_bits(b as u32)).collect(), ys.iter().map(|&b| f32::from_bits(b as u32)).collect());
                    run(&p, &[&x, &y], cg.as_ref(), chunks).iter().map(|o| o.iter().map(|v| u64::from(v.to_bits())).collect()).collect()
                };
                for (o, m) in widths.iter().enumerate() {
                    for k in 0..n {
                        let want = if wide {
                            crate::tir::lmul::lmul_bits(xs[k], ys[k], 52, 11, *m)
                        } else {
                            crate::tir::lmul::lmul_bits(xs[k], ys[k], 23, 8, *m)
                        };
                        assert_eq!(
                            outs[o][k],
                            want,
                            "{} lmul(0x{:x}, 0x{:x}, {m:?}) at {k} ({} bits, {chunks} chunks)",
                            cg.backend(),
                            xs[k],
                            ys[k],
                            if wide { 64 } else { 32 }
                        );
                    }
                }
            }
        }
    }
}

pub(crate) fn selects_with_and_or_not(cgs: &Codegens) {
    let src = "fn f(A: {T}[n, n], x: {T}[n]) -> (y: {T}[n, n], z: {T}[n]) {
        y[i, j] = select(j <= i && !(i == 0 || j > 3), A[i, j], x[j] * 2)
        z[i] = sum[j](select(j > i || !(j != i) && A[i, j] > 0, 1.0, 0.0) + A[i, j])
    }";
    for n in SIZES {
        check_src(src, &[("n", n)], cgs);
    }
}

pub(crate) fn grouped_indices_and_inline_reductions(cgs: &Codegens) {
    let src = "fn f(A: {T}[n, n], x: {T}[n * 2]) -> (y: {T}[n], z: {T}[n, 2]) {
        y[i] = select(j <= i && A[i, j] > 0, A[i, j] * max[k](A[k, j]), -j)
        z[i, p] = x[(i, p)] + sum[q](A[i, q] * i)
    }";
    for n in SIZES {
        check_src(src, &[("n", n)], cgs);
    }
}

pub(crate) fn transposes_gather_and_indices(cgs: &Codegens) {
    let src = "fn f(A: {T}[n, m]) -> (y: {T}[m, n], u: {T}[n, m]) {
        y[j, i] = A[i, j] * 3
        u[i, j] = relu(A[i, j]) + pow(abs(A[i, j]), 0.25) + i * m + j
    }";
    for n in SIZES {
        check_src(src, &[("n", n), ("m", 6)], cgs);
        check_src(src, &[("n", 4), ("m", n)], cgs);
    }
}

pub(crate) fn deep_nests_and_scalars(cgs: &Codegens) {
    check_src(
        "fn f(x: {T}[a, b, c, d, e, g], s: {T}) -> (y: {T}[a, b, c, d, e, g], t: {T}) {
            y[i, j, k, l, m, o] = x[i, j, k, l, m, o] * s + l
            t = s * 2 + 1
        }",
        &[("a", 2), ("b", 3), ("c", 1), ("d", 2), ("e", 3), ("g", 5)],
        cgs,
    );
}

// Hand-built kernels.

pub(crate) fn buffer(name: &str, kind: BufKind, shape: &[usize]) -> Buffer {
    Buffer {
        name: name.into(),
        kind,
        shape: shape.to_vec(),
    }
}

pub(crate) fn program(dtype: DType, bufs: Vec<Buffer>, kernels: Vec<LoopKernel>) -> Program {
    let inputs = (0..bufs.len())
        .filter(|&b| matches!(bufs[b].kind, BufKind::Input(_)))
        .map(|b| BufId(b as u32))
        .collect();
    let outputs = (0..bufs.len())
        .filter(|&b| matches!(bufs[b].kind, BufKind::Output(_)))
        .map(|b| BufId(b as u32))
        .collect();
    Program {
        name: "hand".into(),
        dtype,
        bufs,
        slots: Vec::new(),
        inputs,
        indices: Vec::new(),
        outputs,
        kernels: kernels.into_iter().map(Kernel::Loops).collect(),
        tiles: Vec::new(),
    }
}

pub(crate) fn kernel(loops: &[usize], vars: usize, body: Vec<Stmt>) -> LoopKernel {
    LoopKernel {
        name: "k".into(),
        steps: vec![0],
        loops: loops
            .iter()
            .enumerate()
            .map(|(k, &extent)| LoopInfo {
                name: format!("l{k}"),
                extent,
            })
            .collect(),
        vars: (0..vars).map(|v| format!("v{v}")).collect(),
        body,
    }
}

pub(crate) fn at(terms: &[(u32, i64)]) -> Affine {
    Affine {
        offset: 0,
        terms: terms.iter().map(|&(l, s)| (LoopId(l), s)).collect(),
    }
}

pub(crate) fn load(b: u32, a: Affine) -> Expr {
    Expr::Load(BufId(b), a)
}

pub(crate) fn accumulators_of_every_kind_with_tails(cgs: &Codegens) {
    // y[i] = max_j x[i, j] - min_j x[i, j] + sum_j x[i, j] * #j, per row, j innermost.
    for dtype in [DType::F32, DType::F64] {
        for m in [0, 1, 2, 3, 4, 5, 7, 8, 9, 33] {
            let x = at(&[(0, m as i64), (1, 1)]);
            let body = vec![Stmt::For {
                id: LoopId(0),
                extent: 3,
                parallel: true,
                body: vec![
                    Stmt::Let {
                        var: VarId(0),
                        value: Expr::Const(Accum::Max.identity()),
                    },
                    Stmt::Let {
                        var: VarId(1),
                        value: Expr::Const(Accum::Min.identity()),
                    },
                    Stmt::Let {
                        var: VarId(2),
                        value: Expr::Const(0.0),
                    },
                    Stmt::For {
                        id: LoopId(1),
                        extent: m,
                        parallel: false,
                        body: vec![
                            Stmt::Update {
                                var: VarId(0),
                                op: Accum::Max,
                                value: load(0, x.clone()),
                            },
                            Stmt::Update {
                                var: VarId(1),
                                op: Accum::Min,
                                value: load(0, x.clone()),
                            },
                            Stmt::Update {
                                var: VarId(2),
                                op: Accum::Sum,
                                value: Expr::bin(BinOp::Mul, load(0, x.clone()), Expr::Index(LoopId(1))),
                            },
                        ],
                    },
                    Stmt::Store {
                        buf: BufId(1),
                        index: at(&[(0, 1)]),
                        value: Expr::bin(
                            BinOp::Add,
                            Expr::bin(BinOp::Sub, Expr::Var(VarId(0)), Expr::Var(VarId(1))),
                            Expr::Var(VarId(2)),
                        ),
                    },
                ],
            }];
            let p = program(
                dtype,
                vec![buffer("x", BufKind::Input(0), &[3, m]), buffer("y", BufKind::Output(0), &[3])],
                vec![kernel(&[3, m], 3, body)],
            );
            for cg in cgs {
                for chunks in [1, 2, 3, 5] {
                    check(&p, cg.as_ref(), chunks);
                }
            }
        }
    }
}

pub(crate) fn vector_locals_updates_and_uniform_stores(cgs: &Codegens) {
    // for i { v = x[i] * 2; v max= c[0]; y[i] = select(!(v < 1) || #i == 3, v, exp(v)); z[i] = c[0] }
    for dtype in [DType::F32, DType::F64] {
        for n in [0, 1, 3, 4, 5, 8, 33] {
            let i = at(&[(0, 1)]);
            let cond = Pred::Or(vec![
                Pred::Not(Box::new(Pred::Cmp(crate::loops::CmpOp::Lt, Expr::Var(VarId(0)), Expr::Const(1.0)))),
                Pred::Cmp(crate::loops::CmpOp::Eq, Expr::Index(LoopId(0)), Expr::Const(3.0)),
            ]);
            let body = vec![Stmt::For {
                id: LoopId(0),
                extent: n,
                parallel: true,
                body: vec![
                    Stmt::Let {
                        var: VarId(0),
                        value: Expr::bin(BinOp::Mul, load(0, i.clone()), Expr::Const(2.0)),
                    },
                    Stmt::Update {
                        var: VarId(0),
                        op: Accum::Max,
                        value: load(1, Affine::constant(0)),
                    },
                    Stmt::Store {
                        buf: BufId(2),
                        index: i.clone(),
                        value: Expr::Select(
                            Box::new(cond),
                            Box::new(Expr::Var(VarId(0))),
                            Box::new(Expr::un(UnOp::Exp, Expr::Var(VarId(0)))),
                        ),
                    },
                    Stmt::Store {
                        buf: BufId(3),
                        index: i.clone(),
                        value: load(1, Affine::constant(0)),
                    },
                ],
            }];
            let p = program(
                dtype,
                vec![
                    buffer("x", BufKind::Input(0), &[n]),
                    buffer("c", BufKind::Input(1), &[1]),
                    buffer("y", BufKind::Output(0), &[n]),
                    buffer("z", BufKind::Output(1), &[n]),
                ],
                vec![kernel(&[n], 1, body)],
            );
            for cg in cgs {
                for chunks in [1, 4] {
                    check(&p, cg.as_ref(), chunks);
                }
            }
        }
    }
}

pub(crate) fn kernels_without_loops_and_empty_programs(cgs: &Codegens) {
    let body = vec![Stmt::Store {
        buf: BufId(1),
        index: Affine::constant(0),
        value: Expr::un(UnOp::Sqrt, load(0, Affine::constant(0))),
    }];
    let p = program(
        DType::F64,
        vec![
            buffer("x", BufKind::Input(0), &[]),
            buffer("y", BufKind::Output(0), &[]),
            buffer("e", BufKind::Output(1), &[0]),
        ],
        vec![
            kernel(&[], 0, body),
            kernel(
                &[0],
                0,
                vec![Stmt::For {
                    id: LoopId(0),
                    extent: 0,
                    parallel: true,
                    body: vec![],
                }],
            ),
        ],
    );
    check(&p, cgs[0].as_ref(), 1);
    let ks = cpu_kernels(cgs[0].as_ref(), &p);
    assert_eq!(ks[0].as_ref().map(|k| k.parallel_extent()), Some(None));
    assert_eq!(ks[1].as_ref().map(|k| k.parallel_extent()), Some(Some(0)));
    let empty = program(DType::F32, vec![], vec![]);
    let ks = cpu_kernels(cgs[0].as_ref(), &empty);
    assert!(ks.is_empty());
}

pub(crate) fn gemm_kernels_are_not_compiled(cgs: &Codegens) {
    let p = lower(
        "fn f(A: f32[m, k], B: f32[k, n]) -> C: f32[m, n] { C[i, j] = A[i, l] * B[l, j] }",
        &[("m", 4), ("k", 3), ("n", 5)],
    );
    let ks = cpu_kernels(cgs[0].as_ref(), &p);
    assert!(matches!(p.kernels[0], Kernel::Gemm(_)));
    assert!(ks[0].is_none());
    assert_eq!(ks.len(), p.kernels.len());
}

pub(crate) fn invalid_programs_are_rejected(cgs: &Codegens) {
    let body = vec![Stmt::Store {
        buf: BufId(0),
        index: Affine::constant(5),
        value: Expr::Const(1.0),
    }];
    let p = program(DType::F32, vec![buffer("y", BufKind::Output(0), &[2])], vec![kernel(&[], 0, body)]);
    for cg in cgs {
        assert!(matches!(cg.compile(&p), Err(CodegenError::Invalid(_))));
        assert!(matches!(cg.emit(&p), Err(CodegenError::Invalid(_))));
    }
}

/// Random expressions that never produce NaN (where `max` would differ by design).
struct Gen {
    rng: Rng,
}

impl Gen {
    fn pick(&mut self, n: usize) -> usize {
        (((self.rng.next() + 1.0) / 2.0 * n as f64) as usize).min(n - 1)
    }

    /// An expression over `leaves` of at most `depth` operators.
    fn expr(&mut self, depth: usize, leaves: &[Expr]) -> Expr {
        if depth == 0 || self.pick(4) == 0 {
            return match self.pick(leaves.len() + 1) {
                k if k < leaves.len() => leaves[k].clone(),
                _ => Expr::Const((self.rng.next() * 4.0).round() / 2.0),
            };
        }
        let sub = |g: &mut Gen| g.expr(depth - 1, leaves);
        let pos = |e: Expr, c: f64| Expr::bin(BinOp::Add, Expr::un(UnOp::Abs, e), Expr::Const(c));
        match self.pick(17) {
            0 => Expr::un(UnOp::Neg, sub(self)),
            1 => Expr::un(UnOp::Abs, sub(self)),
            2 => Expr::un(UnOp::Relu, sub(self)),
            3 => Expr::un(UnOp::Tanh, sub(self)),
            4 => Expr::un(UnOp::Sigmoid, sub(self)),
            5 => Expr::un([UnOp::Sin, UnOp::Cos][self.pick(2)], sub(self)),
            6 => Expr::un(UnOp::Exp, Expr::un(UnOp::Sin, sub(self))),
            7 => Expr::un(
                [UnOp::Log, UnOp::Sqrt, UnOp::Rsqrt][self.pick(3)],
                pos(sub(self), 1.0),
            ),
            8 => {
                let (a, b) = (sub(self), sub(self));
                Expr::bin(BinOp::Div, a, pos(b, 0.5))
            }
            9 => {
                let (a, b) = (sub(self), sub(self));
                Expr::bin(BinOp::Pow, pos(a, 0.5), Expr::un(UnOp::Sin, b))
            }
            10 | 11 => {
                let op = [BinOp::Max, BinOp::Min, BinOp::Lmul(0), BinOp::Lmul(3), BinOp::Lmul(4)][self.pick(5)];
                let (a, b) = (sub(self), sub(self));
                Expr::bin(op, a, b)
            }
            12 => {
                let p = self.pred(depth - 1, leaves);
                let (a, b) = (sub(self), sub(self));
                Expr::Select(Box::new(p), Box::new(a), Box::new(b))
            }
            _ => {
                let op = [BinOp::Add, BinOp::Sub, BinOp::Mul][self.pick(3)];
                let (a, b) = (sub(self), sub(self));
                Expr::bin(op, a, b)
            }
        }
    }

    fn pred(&mut self, depth: usize, leaves: &[Expr]) -> Pred {
        use crate::loops::CmpOp as C;
        match self.pick(5) {
            0 if depth > 0 => Pred::And(vec![
                self.pred(depth - 1, leaves),
                self.pred(depth - 1, leaves),
            ]),
            1 if depth > 0 => Pred::Or(vec![
                self.pred(depth - 1, leaves),
                self.pred(depth - 1, leaves),
            ]),
            2 if depth > 0 => Pred::Not(Box::new(self.pred(depth - 1, leaves))),
            _ => {
                let op = [C::Lt, C::Le, C::Gt, C::Ge, C::Eq, C::Ne][self.pick(6)];
                Pred::Cmp(
                    op,
                    self.expr(depth.min(1), leaves),
                    self.expr(depth.min(1), leaves),
                )
            }
        }
    }
}

/// Random loop kernels (150, alternating f32 and f64) on every codegen against the
/// interpreter; `inspect(case, program)` lets a backend look at each one (e.g. count
/// the vectorised ones).
pub(crate) fn random_kernels(cgs: &Codegens, inspect: &mut dyn FnMut(usize, &Program)) {
    // parallel for i < n { v0 = id; for j < m { v0 op= E1; v1 = E2; out1[i, j] = E3(v1) }; out0[i] = v0 + E4 }
    let mut g = Gen { rng: Rng::new(42) };
    for case in 0..150 {
        let dtype = if case % 2 == 0 {
            DType::F32
        } else {
            DType::F64
        };
        let n = [0, 1, 2, 3, 5][g.pick(5)];
        let m = [1, 2, 3, 4, 5, 7, 8, 9, 33][g.pick(9)];
        let (i, j) = (LoopId(0), LoopId(1));
        let inner = vec![
            load(0, at(&[(0, m as i64), (1, 1)])),
            load(1, at(&[(1, 1)])),
            load(2, at(&[(0, 1)])),
            load(3, at(&[(1, n.max(1) as i64), (0, 1)])),
            Expr::Index(i),
            Expr::Index(j),
        ];
        let mut with_local = inner.clone();
        with_local.push(Expr::Var(VarId(1)));
        let outer = [load(2, at(&[(0, 1)])), Expr::Index(i)];
        let op = [Accum::Sum, Accum::Max, Accum::Min][g.pick(3)];
        let body = vec![Stmt::For {
            id: i,
            extent: n,
            parallel: true,
            body: vec![
                Stmt::Let {
                    var: VarId(0),
                    value: Expr::Const(op.identity()),
                },
                Stmt::For {
                    id: j,
                    extent: m,
                    parallel: false,
                    body: vec![
                        Stmt::Update {
                            var: VarId(0),
                            op,
                            value: g.expr(3, &inner),
                        },
                        Stmt::Let {
                            var: VarId(1),
                            value: g.expr(3, &inner),
                        },
                        Stmt::Store {
                            buf: BufId(5),
                            index: at(&[(0, m as i64), (1, 1)]),
                            value: g.expr(3, &with_local),
                        },
                    ],
                },
                Stmt::Store {
                    buf: BufId(4),
                    index: at(&[(0, 1)]),
                    value: Expr::bin(BinOp::Add, Expr::Var(VarId(0)), g.expr(2, &outer)),
                },
            ],
        }];
        let p = program(
            dtype,
            vec![
                buffer("x", BufKind::Input(0), &[n, m]),
                buffer("y", BufKind::Input(1), &[m]),
                buffer("c", BufKind::Input(2), &[n]),
                buffer("xt", BufKind::Input(3), &[m, n]),
                buffer("out0", BufKind::Output(0), &[n]),
                buffer("out1", BufKind::Output(1), &[n, m]),
            ],
            vec![kernel(&[n, m], 2, body)],
        );
        for cg in cgs {
            check(&p, cg.as_ref(), 1 + case % 3);
        }
        inspect(case, &p);
    }
}

/// The shared tests as `#[test]` functions of the calling module, each run with every
/// codegen `$all()` returns.
macro_rules! cpu_backend_tests {
    ($all:path) => {
        #[test]
        fn softmax_attention() {
            crate::codegen::difftests::softmax_attention(&$all());
        }
        #[test]
        fn gathers() {
            crate::codegen::difftests::gathers(&$all());
        }
        #[test]
        fn softmax_attention_without_gemm() {
            crate::codegen::difftests::softmax_attention_without_gemm(&$all());
        }
        #[test]
        fn causal_attention() {
            crate::codegen::difftests::causal_attention(&$all());
        }
        #[test]
        fn layernorm_rows() {
            crate::codegen::difftests::layernorm_rows(&$all());
        }
        #[test]
        fn reductions() {
            crate::codegen::difftests::reductions(&$all());
        }
        #[test]
        fn every_unary_operator() {
            crate::codegen::difftests::every_unary_operator(&$all());
        }
        #[test]
        fn sin_and_cos_of_huge_arguments() {
            crate::codegen::difftests::sin_and_cos_of_huge_arguments(&$all());
        }
        #[test]
        fn every_binary_operator() {
            crate::codegen::difftests::every_binary_operator(&$all());
        }
        #[test]
        fn lmul_is_bit_exact() {
            crate::codegen::difftests::lmul_is_bit_exact(&$all());
        }
        #[test]
        fn selects_with_and_or_not() {
            crate::codegen::difftests::selects_with_and_or_not(&$all());
        }
        #[test]
        fn grouped_indices_and_inline_reductions() {
            crate::codegen::difftests::grouped_indices_and_inline_reductions(&$all());
        }
        #[test]
        fn transposes_gather_and_indices() {
            crate::codegen::difftests::transposes_gather_and_indices(&$all());
        }
        #[test]
        fn deep_nests_and_scalars() {
            crate::codegen::difftests::deep_nests_and_scalars(&$all());
        }
        #[test]
        fn accumulators_of_every_kind_with_tails() {
            crate::codegen::difftests::accumulators_of_every_kind_with_tails(&$all());
        }
        #[test]
        fn vector_locals_updates_and_uniform_stores() {
            crate::codegen::difftests::vector_locals_updates_and_uniform_stores(&$all());
        }
        #[test]
        fn kernels_without_loops_and_empty_programs() {
            crate::codegen::difftests::kernels_without_loops_and_empty_programs(&$all());
        }
        #[test]
        fn gemm_kernels_are_not_compiled() {
            crate::codegen::difftests::gemm_kernels_are_not_compiled(&$all());
        }
        #[test]
        fn invalid_programs_are_rejected() {
            crate::codegen::difftests::invalid_programs_are_rejected(&$all());
        }
    };
}
pub(crate) use cpu_backend_tests;
