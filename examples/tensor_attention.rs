//! Tensor (2-simplicial) attention from `std::tensor_attention`: each query attends to
//! pairs of keys. `exact` uses a softmax over all n² pairs (O(n³ d) time); `poly` replaces
//! exp by (1 + S)², which a planner can distribute into an O(n d³) computation.
//!
//! This example runs both as n grows, checks them against direct computations (exact
//! attention by loops, the polynomial one by the distributed O(n d³) formula, which also
//! shows that identity holds), and prints the times. Tessera runs `exact` as a streamed
//! online softmax over pairs of keys, so no n³ scores exist. Last, `windowed` (each query
//! sees keys within w1 and w2 of itself, FBGEMM's kernel) runs with its window dims and is
//! checked against the same loops with the window as a mask.
//!
//! Run it with `cargo run --release --example tensor_attention`.

mod common;

use common::{best_of, f32s, first_f64, matrix, rel_err, report_check, show_plan, show_program};
use ndarray::{Array2, Array3, ArrayD};

/// Exact 2-simplicial attention by loops: scores of every key pair, a softmax over the
/// pairs, and the elementwise product of the two values. With a window `(w1, w2)`, query
/// i sees only the pairs with `i - w1 < j <= i` and `i - w2 < l <= i`.
fn exact_direct(
    q: &Array2<f64>,
    (k1, k2): (&Array2<f64>, &Array2<f64>),
    v1: &Array2<f64>,
    v2: &Array2<f64>,
    window: Option<(usize, usize)>,
) -> Array2<f64> {
    let (n, d) = q.dim();
    let (m1, m2, e) = (k1.nrows(), k2.nrows(), v1.ncols());
    let scale = 1.0 / (d as f64).sqrt();
    let mut o = Array2::zeros((n, e));
    let mut s = Array2::<f64>::zeros((m1, m2));
    for i in 0..n {
        for j in 0..m1 {
            // Q[i] ⊙ K1[j], then a dot product with every K2[l]: the Hadamard + GEMM shape.
            let h: Vec<f64> = (0..d).map(|a| q[[i, a]] * k1[[j, a]] * scale).collect();
            for l in 0..m2 {
                let seen = |i: usize, k: usize, w: usize| k <= i && i < k + w;
                let masked = window.is_some_and(|(w1, w2)| !seen(i, j, w1) || !seen(i, l, w2));
                s[[j, l]] = if masked { f64::NEG_INFINITY } else { (0..d).map(|a| h[a] * k2[[l, a]]).sum() };
            }
        }
        let mx = s.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let p = s.mapv(|x| (x - mx).exp());
        let z = p.sum();
        // Σ_l P[j, l] V2[l, b] first, then ⊙ V1[j, b] and the sum over j.
        let pv2 = p.dot(v2);
        for b in 0..e {
            o[[i, b]] = (0..m1).map(|j| pv2[[j, b]] * v1[[j, b]]).sum::<f64>() / z;
        }
    }
    o
}

/// Polynomial attention through the distributed form, never visiting a key pair:
/// Σ_{j,l} (1 + S)² v1 ⊙ v2 with S = q·(k1 ⊙ k2) and (1 + S)² = 1 + 2S + S², where
/// Σ_{j,l} S² v1 v2 = Σ_{a,c} q_a q_c (Σ_j k1_a k1_c v1)(Σ_l k2_a k2_c v2). O(n d² e + m d² e).
fn poly_distributed(
    q: &Array2<f64>,
    k1: &Array2<f64>,
    k2: &Array2<f64>,
    v1: &Array2<f64>,
    v2: &Array2<f64>,
) -> Array2<f64> {
    let (n, d) = q.dim();
    let e = v1.ncols();
    // Moments of one key/value set, with a constant column 1 appended to the values so
    // the normaliser Z comes out of the same sums as the numerator.
    let moments = |k: &Array2<f64>, v: &Array2<f64>| {
        let m = k.nrows();
        let mut vv = Array2::<f64>::ones((m, e + 1));
        vv.slice_mut(ndarray::s![.., ..e]).assign(v);
        let m0 = vv.sum_axis(ndarray::Axis(0)); // Σ_j v
        let m1 = k.t().dot(&vv); // Σ_j k_a v
        let mut m2 = Array3::<f64>::zeros((d, d, e + 1)); // Σ_j k_a k_c v
        for j in 0..m {
            for a in 0..d {
                for c in 0..d {
                    let kk = k[[j, a]] * k[[j, c]];
                    for b in 0..=e {
                        m2[[a, c, b]] += kk * vv[[j, b]];
                    }
                }
            }
        }
        (m0, m1, m2)
    };
    let (a0, a1, a2) = moments(k1, v1);
    let (b0, b1, b2) = moments(k2, v2);
    let mut o = Array2::zeros((n, e));
    for i in 0..n {
        let mut num = vec![0.0; e + 1];
        for (b, x) in num.iter_mut().enumerate() {
            let mut acc = a0[b] * b0[b];
            for a in 0..d {
                acc += 2.0 * q[[i, a]] * a1[[a, b]] * b1[[a, b]];
                for c in 0..d {
                    acc += q[[i, a]] * q[[i, c]] * a2[[a, c, b]] * b2[[a, c, b]];
                }
            }
            *x = acc;
        }
        for b in 0..e {
            o[[i, b]] = num[b] / num[e];
        }
    }
    o
}

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let d = 8;
    let module = tessera::Module::stdlib("tensor_attention")?;
    let exact = module.function("exact")?;
    let poly = module.function("poly")?;
    println!("2-simplicial attention, d = e = {d}, queries, keys and values of length n\n");
    let sizes = |n: usize| [("n", n as u64), ("m1", n as u64), ("m2", n as u64), ("d", d as u64), ("e", d as u64)];
    show_program(&poly);
    println!("at n = 64:");
    show_plan(&poly, &sizes(64))?;

    println!("FLOPs: of the plan Tessera finds, and of the distributed polynomial form (what the planner should find)");
    println!("times: ms, best of 3; Tessera runs native code (f32), the direct code is f64 ndarray\n");
    println!(
        "{:>5} | {:>10} {:>13} {:>13} | {:>10} {:>10} {:>13} {:>14}",
        "n", "exact plan", "exact Tessera", "exact direct", "poly plan", "distrib.", "poly Tessera", "distrib. time"
    );
    let mut errors = Vec::new();
    for n in [16, 32, 64, 128, 256] {
        // Queries scaled down so that the polynomial weights stay in the bounded-entry regime.
        let q = matrix(n, d, 1) * 0.5;
        let (k1, k2, v1, v2) = (matrix(n, d, 2), matrix(n, d, 3), matrix(n, d, 4), matrix(n, d, 5));
        let ins: Vec<ArrayD<f32>> = [&q, &k1, &k2, &v1, &v2].iter().map(|a| f32s(&(*a).clone().into_dyn())).collect();
        let views: Vec<_> = ins.iter().map(|a| a.view()).collect();
        let plan_e = exact.plan_for(&sizes(n))?;
        let plan_p = poly.plan_for(&sizes(n))?;
        // FLOPs of the distributed form (a multiply-add counts 2, as in plans): the moments
        // Σ_j k_a k_c v of both key sets, then one contraction per query.
        let distributed = (2 * 2 * n * d * d * (d + 1) + 2 * n * d * d * (d + 1)) as f64;

        let (out_e, t_e) = best_of(3, || exact.call(&views));
        let (out_p, t_p) = best_of(3, || poly.call(&views));
        let (ref_e, t_re) = best_of(3, || exact_direct(&q, (&k1, &k2), &v1, &v2, None));
        let (ref_p, t_rp) = best_of(3, || poly_distributed(&q, &k1, &k2, &v1, &v2));
        println!(
            "{n:>5} | {:>10.2e} {t_e:>13.2} {t_re:>13.2} | {:>10.2e} {distributed:>10.2e} {t_p:>13.2} {t_rp:>14.3}",
            plan_e.flops, plan_p.flops
        );
        errors.push((
            n,
            rel_err(&first_f64(out_e?)?, &ref_e.into_dyn()),
            rel_err(&first_f64(out_p?)?, &ref_p.into_dyn()),
        ));
    }
    println!();
    for (n, err_e, err_p) in errors {
        report_check(&format!("exact, n = {n}, against the direct loops"), err_e, 1e-4)?;
        report_check(&format!("poly, n = {n}, against the distributed formula"), err_p, 1e-4)?;
    }

    // Windowed: the window sizes are dims of the function's header, given with the call.
    let (n, w1, w2) = (256, 8, 32);
    let windowed = module.function("windowed")?;
    let wdims = [("n", n as u64), ("d", d as u64), ("e", d as u64), ("w1", w1 as u64), ("w2", w2 as u64)];
    println!("\nwindowed, n = {n}, w1 = {w1}, w2 = {w2}:");
    show_plan(&windowed, &wdims)?;
    let q = matrix(n, d, 1) * 0.5;
    let (k1, k2, v1, v2) = (matrix(n, d, 2), matrix(n, d, 3), matrix(n, d, 4), matrix(n, d, 5));
    let ins: Vec<ArrayD<f32>> = [&q, &k1, &k2, &v1, &v2].iter().map(|a| f32s(&(*a).clone().into_dyn())).collect();
    let views: Vec<_> = ins.iter().map(|a| a.view()).collect();
    let opts = tessera::CallOptions { dims: vec![("w1".into(), w1 as u64), ("w2".into(), w2 as u64)], ..Default::default() };
    let (out_w, t_w) = best_of(3, || windowed.call_with(&views, &opts));
    let (ref_w, t_rw) = best_of(3, || exact_direct(&q, (&k1, &k2), &v1, &v2, Some((w1, w2))));
    println!("times: Tessera {t_w:.2} ms, direct loops {t_rw:.2} ms\n");
    report_check("windowed against the direct loops with the window as a mask", rel_err(&first_f64(out_w?)?, &ref_w.into_dyn()), 1e-4)?;
    Ok(())
}
