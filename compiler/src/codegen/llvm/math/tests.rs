//! Accuracy of the math library as compiled: each function as a one-statement kernel
//! (`y[i] = f(x[i])`, vectorised by LLVM for the host), over the inputs of
//! `clif/math.rs`'s tests: dense grids, 500k random finite bit patterns per case, special
//! values and thresholds. The bound asserted is `clif::math::ulp_bound`. sin and cos are
//! measured on all floats: beyond the inline reduction's range the kernels call std.

use super::super::{compile, LlvmOptions};
use super::{trig_limit, MathFn};
use crate::codegen::clif::math::ulp_bound;
use crate::codegen::math_accuracy::*;
use crate::loops::{
    Affine, BinOp, BufId, BufKind, Buffer, Expr, Kernel, LoopId, LoopInfo, LoopKernel, Program,
    Stmt, UnOp,
};
use tessera_runtime::DType;

/// `y[i] = f(x[i])` (or `pow(x[i], z[i])`) over n elements, as one parallel kernel.
fn program(f: MathFn, wide: bool, n: usize) -> Program {
    let i = Affine {
        offset: 0,
        terms: vec![(LoopId(0), 1)],
    };
    let x = Expr::Load(BufId(0), i.clone());
    let value = match f {
        MathFn::Pow => Expr::bin(BinOp::Pow, x, Expr::Load(BufId(1), i.clone())),
        _ => {
            let op = match f {
                MathFn::Exp => UnOp::Exp,
                MathFn::Log => UnOp::Log,
                MathFn::Tanh => UnOp::Tanh,
                MathFn::Sigmoid => UnOp::Sigmoid,
                MathFn::Sin => UnOp::Sin,
                _ => UnOp::Cos,
            };
            Expr::un(op, x)
        }
    };
    let buf = |name: &str, kind| Buffer {
        name: name.into(),
        kind,
        shape: vec![n],
    };
    Program {
        name: format!("{f:?}").to_lowercase(),
        dtype: if wide { DType::F64 } else { DType::F32 },
        bufs: vec![
            buf("x", BufKind::Input(0)),
            buf("z", BufKind::Input(1)),
            buf("y", BufKind::Output(0)),
        ],
        slots: Vec::new(),
        inputs: vec![BufId(0), BufId(1)],
        indices: Vec::new(),
        outputs: vec![BufId(2)],
        kernels: vec![Kernel::Loops(LoopKernel {
            name: "k".into(),
            steps: vec![0],
            loops: vec![LoopInfo {
                name: "i".into(),
                extent: n,
            }],
            vars: Vec::new(),
            body: vec![Stmt::For {
                id: LoopId(0),
                extent: n,
                parallel: true,
                body: vec![Stmt::Store {
                    buf: BufId(2),
                    index: i,
                    value,
                }],
            }],
        })],
        tiles: Vec::new(),
    }
}

/// Runs `f` compiled over f64 inputs (rounded to f32 for f32); returns f64 results.
fn run(f: MathFn, wide: bool, xs: &[f64], ys: &[f64]) -> Vec<f64> {
    let n = xs.len();
    let p = program(f, wide, n);
    let code = compile(&p, &LlvmOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let k = code.kernel(0).expect("a loop kernel");
    if wide {
        let mut out = vec![0.0f64; n];
        let args = [
            xs.as_ptr() as *mut u8,
            ys.as_ptr() as *mut u8,
            out.as_mut_ptr().cast(),
        ];
        // SAFETY: three buffers of n f64s, as the program declares.
        unsafe { k(args.as_ptr(), 0, n) };
        out
    } else {
        let x32: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
        let y32: Vec<f32> = ys.iter().map(|&v| v as f32).collect();
        let mut out = vec![0.0f32; n];
        let args = [
            x32.as_ptr() as *mut u8,
            y32.as_ptr() as *mut u8,
            out.as_mut_ptr().cast(),
        ];
        // SAFETY: three buffers of n f32s, as the program declares.
        unsafe { k(args.as_ptr(), 0, n) };
        out.into_iter().map(f64::from).collect()
    }
}

/// Max ulp error of `f`, with the worst input.
fn measure(f: MathFn, wide: bool) -> (f64, f64, f64) {
    let (xs, ys) = if f == MathFn::Pow {
        pow_inputs(wide)
    } else {
        let xs = unary_inputs(f, wide);
        let ys = vec![0.0; xs.len()];
        (xs, ys)
    };
    let got = run(f, wide, &xs, &ys);
    let mut worst = (0.0, f64::NAN, f64::NAN);
    for i in 0..xs.len() {
        let want = reference(f, xs[i], ys[i]);
        let e = if wide {
            ulps_f64(got[i], want)
        } else {
            ulps_f32(got[i], want)
        };
        if e > worst.0 {
            worst = (e, xs[i], ys[i]);
        }
    }
    worst
}

fn check(f: MathFn) {
    let mut failures = Vec::new();
    for wide in [false, true] {
        let (e, x, y) = measure(f, wide);
        let bound = ulp_bound(f, wide);
        let ty = if wide { "f64" } else { "f32" };
        eprintln!("{f:?} {ty}: max {e:.3} ulp (bound {bound}) at x={x:e} y={y:e}");
        if e.is_nan() || e > bound {
            failures.push(format!("{f:?} {ty}: {e} ulp > {bound} at x={x:e}, y={y:e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn exp_accuracy() {
    check(MathFn::Exp);
}

#[test]
fn log_accuracy() {
    check(MathFn::Log);
}

#[test]
fn tanh_accuracy() {
    check(MathFn::Tanh);
}

#[test]
fn sigmoid_accuracy() {
    check(MathFn::Sigmoid);
}

#[test]
fn sin_accuracy() {
    check(MathFn::Sin);
}

#[test]
fn cos_accuracy() {
    check(MathFn::Cos);
}

#[test]
fn pow_accuracy() {
    check(MathFn::Pow);
}

/// Beyond the inline reduction's range the kernels give exactly std's sin and cos (in
/// the lane precision), also when other lanes of the same vector are in range.
#[test]
fn sin_and_cos_beyond_the_reduction_are_std() {
    for wide in [false, true] {
        let lim = trig_limit(wide);
        let xs: Vec<f64> = [
            lim * 1.5,
            -lim * 4.0,
            1e30,
            3.0,
            lim * 1024.0,
            0.5,
            -2.0,
            1e10,
        ]
        .iter()
        .map(|&v| rnd(v, wide))
        .collect();
        let ys = vec![0.0; xs.len()];
        for f in [MathFn::Sin, MathFn::Cos] {
            let got = run(f, wide, &xs, &ys);
            for (x, g) in xs.iter().zip(&got) {
                let want = match (f, wide) {
                    (MathFn::Sin, true) => x.sin(),
                    (_, true) => x.cos(),
                    (MathFn::Sin, false) => f64::from((*x as f32).sin()),
                    _ => f64::from((*x as f32).cos()),
                };
                if x.abs() > lim {
                    assert_eq!(*g, want, "{f:?} wide={wide} x={x}");
                } else {
                    assert!(
                        (g - want).abs() < 1e-6,
                        "{f:?} wide={wide} x={x}: {g} vs {want}"
                    );
                }
            }
        }
    }
}
