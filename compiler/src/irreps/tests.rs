use super::*;
use crate::constants::clebsch_gordan;
use crate::eval::testutil::Rng;
use crate::eval::{evaluate, EvalOptions};
use crate::pipeline;
use crate::tir::bind_dims;
use ndarray::{ArrayD, IxDyn};

#[test]
fn irreps_read_and_print_as_e3nn_writes_them() {
    let x: Irreps = "32x0e + 16x1o+2e + 0x3y + 1x3y".parse().unwrap();
    assert_eq!(x.to_string(), "32x0e+16x1o+1x2e+0x3o+1x3o");
    assert_eq!(x.dim(), 32 + 48 + 5 + 7);
    assert_eq!(x.offsets(), vec![0, 32, 80, 85, 85]);
    assert_eq!("".parse::<Irreps>().unwrap().0.len(), 0);
    let many = vec!["1x0e"; MAX_BLOCKS + 1].join("+");
    assert!(many.parse::<Irreps>().unwrap_err().to_string().contains("257 blocks"));
    for (bad, says) in [("32x", "empty block"), ("ax1e", "multiplicity"), ("1x1q", "parity"), ("1xe", "no degree"), ("2x7e", "too large"), ("99999999x1o", "multiplicity 99999999")] {
        let e = bad.parse::<Irreps>().unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn paths_and_normalisation_follow_e3nn() {
    let tp = TensorProduct::new("2x0e+2x1o".parse().unwrap(), "1x0e+1x1o".parse().unwrap(), "2x0e+2x1o".parse().unwrap(), Mode::Uvw).unwrap();
    let paths: Vec<(usize, usize, usize)> = tp.instructions.iter().map(|i| (i.i_in1, i.i_in2, i.i_out)).collect();
    assert_eq!(paths, vec![(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)]);
    // Output 0e: two paths of 2·1 elements each, alpha = 1/4; output 1o: alpha = 3/4.
    let coeff: Vec<f64> = tp.instructions.iter().map(|i| i.coefficient).collect();
    let want = [0.5, 0.75f64.sqrt(), 0.75f64.sqrt(), 0.5];
    for (c, w) in coeff.iter().zip(want) {
        assert!((c - w).abs() < 1e-15, "{coeff:?}");
    }
    // Four paths of [mul1, mul2, mul_out] = [2, 1, 2] weights each.
    assert_eq!(tp.weight_numel(), 4 * (2 * 2));
    // uvu: a path needs as many output channels as the first input has.
    let tp = TensorProduct::new("4x1o".parse().unwrap(), "1x0e+1x1o+1x2e".parse().unwrap(), "4x0e+4x1o+2x1e".parse().unwrap(), Mode::Uvu).unwrap();
    let paths: Vec<(usize, usize, usize)> = tp.instructions.iter().map(|i| (i.i_in1, i.i_in2, i.i_out)).collect();
    assert_eq!(paths, vec![(0, 0, 1), (0, 1, 0), (0, 2, 1)]);
    assert_eq!(tp.instructions[0].weight_shape, vec![4, 1]);
    let e = TensorProduct::new("4x1o".parse().unwrap(), "1x1o".parse().unwrap(), "3x0e".parse().unwrap(), Mode::Uvu).unwrap_err();
    assert!(e.to_string().contains("as many channels"), "{e}");
}

/// The generated program, run by the reference evaluator, equals the tensor product
/// summed path by path from `clebsch_gordan` here (an output block no path reaches is
/// zero).
#[test]
fn the_generated_program_computes_the_tensor_product() {
    for (in1, in2, out, mode) in [
        ("2x0e+3x1o+2x2e", "1x0e+1x1o+1x2e", "2x0e+2x1o+2x2e+1x1e", Mode::Uvw),
        ("3x0e+3x1o", "2x1o+1x2e", "3x1o+3x1e+3x2e+3x0o", Mode::Uvu),
    ] {
        let tp = TensorProduct::new(in1.parse().unwrap(), in2.parse().unwrap(), out.parse().unwrap(), mode).unwrap();
        let src = tp.source(DType::F64);
        let (sm, _, c) = pipeline::check("tp.tsr", &src);
        assert!(!c.has_errors(), "{}\n{src}", crate::diag::render_all(&c.diagnostics, &sm, false));
        let f = c.functions.iter().find(|f| f.name == TensorProduct::FUNCTION).unwrap();
        let z = 3;
        let mut rng = Rng::new(7);
        let mut random = |shape: &[usize]| rng.array(shape);
        let xs: Vec<ArrayD<f64>> = tp.in1.0.iter().map(|b| random(&[z, b.mul, b.ir.dim()])).collect();
        let ys: Vec<ArrayD<f64>> = tp.in2.0.iter().map(|b| random(&[z, b.mul, b.ir.dim()])).collect();
        let ws: Vec<ArrayD<f64>> = tp.instructions.iter().map(|i| random(&i.weight_shape)).collect();
        let inputs: Vec<&ArrayD<f64>> = xs.iter().chain(&ys).chain(&ws).collect();
        let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).collect();
        let b = bind_dims(f, &shapes, &[]).unwrap();
        let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
        let got = evaluate(f, &b, &views, &EvalOptions::default()).unwrap();
        for (o, block) in tp.out.0.iter().enumerate() {
            let mut want = ArrayD::<f64>::zeros(IxDyn(&[z, block.mul, block.ir.dim()]));
            for (k, ins) in tp.instructions.iter().enumerate().filter(|(_, i)| i.i_out == o) {
                let (a, bb) = (tp.in1.0[ins.i_in1], tp.in2.0[ins.i_in2]);
                let cg = clebsch_gordan(a.ir.l, bb.ir.l, block.ir.l).unwrap();
                let (d1, d2, d3) = (a.ir.dim(), bb.ir.dim(), block.ir.dim());
                for n in 0..z {
                    for u in 0..a.mul {
                        for v in 0..bb.mul {
                            for wch in 0..block.mul {
                                let weight = match mode {
                                    Mode::Uvw => ws[k][[u, v, wch]],
                                    Mode::Uvu if wch == u => ws[k][[u, v]],
                                    Mode::Uvu => continue,
                                };
                                for i in 0..d1 {
                                    for j in 0..d2 {
                                        for m in 0..d3 {
                                            want[[n, wch, m]] += ins.coefficient * weight * cg[(i * d2 + j) * d3 + m] * xs[ins.i_in1][[n, u, i]] * ys[ins.i_in2][[n, v, j]];
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let diff = (&got[o] - &want).mapv(f64::abs).fold(0.0f64, |a, &b| a.max(b));
            assert!(diff < 1e-12, "{in1} ⊗ {in2} → {out} ({mode}), output {o}: off by {diff}\n{src}");
        }
    }
}
