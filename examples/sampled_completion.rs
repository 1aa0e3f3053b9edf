//! Gathers through integer index arrays (docs/gather.md): the residual of a low-rank
//! completion at 1% of the entries (`completion::sampled_residual`) against the masked,
//! dense form, and the observed entries of a Tucker model (`tucker::entries`), each
//! checked against a direct computation; then an index out of range, which is an error.
//!
//! Run it with `cargo run --release --example sampled_completion`.

mod common;

use common::{best_of, f32s, first_f64, matrix, rel_err, report_check, tensor3, vector};
use ndarray::{Array1, Array2, ArrayD};
use tessera::{CallOptions, IndexView, Module};

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

/// `count` coordinates in `0..n`, spread by a fixed multiplicative hash (repeats allowed).
fn coords(count: usize, n: usize, salt: u64) -> Array1<i64> {
    Array1::from_shape_fn(count, |k| ((k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15 ^ salt) >> 17) as i64 % n as i64)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (n, m, r) = (1024, 1024, 32);
    let e = n * m / 100;
    println!("Low-rank completion residual at {e} observed entries of a {n}x{m} matrix (1%), rank {r}\n");
    let module = Module::stdlib("completion")?;
    let sampled = module.function("sampled_residual")?;
    let masked = module.function("masked_residual")?;
    let (u, v) = (matrix(n, r, 1), matrix(m, r, 2));
    let (rows, cols) = (coords(e, n, 3), coords(e, m, 4));
    let values: Array1<f64> = vector(e, 5);

    // The sparse form: gathered rows, one dot product per entry.
    let (u32s, v32s, m32s) = (f32s(&u.clone().into_dyn()), f32s(&v.clone().into_dyn()), f32s(&values.clone().into_dyn()));
    let (ri, ci) = (rows.clone().into_dyn(), cols.clone().into_dyn());
    let idx = [IndexView::I64(ri.view()), IndexView::I64(ci.view())];
    let vals = [m32s.view(), u32s.view(), v32s.view()];
    let opts = CallOptions::default();
    sampled.call_with_indices(&vals, &idx, &opts)?;
    let (out, sampled_ms) = best_of(20, || sampled.call_with_indices(&vals, &idx, &opts));
    let got = first_f64(out?)?;
    let direct = Array1::from_shape_fn(e, |k| values[k] - u.row(rows[k] as usize).dot(&v.row(cols[k] as usize))).into_dyn();
    report_check("sampled_residual against U[I]·V[J] per entry", rel_err(&got, &direct), 1e-5)?;

    // The dense form: the same residual at every entry, masked.
    let mut omega = Array2::<f64>::zeros((n, m));
    let mut dense_m = Array2::<f64>::zeros((n, m));
    for k in 0..e {
        omega[[rows[k] as usize, cols[k] as usize]] = 1.0;
        dense_m[[rows[k] as usize, cols[k] as usize]] = values[k];
    }
    let (o32, dm32) = (f32s(&omega.into_dyn()), f32s(&dense_m.into_dyn()));
    let dense_vals = [o32.view(), dm32.view(), u32s.view(), v32s.view()];
    masked.call(&dense_vals)?;
    let (dense, masked_ms) = best_of(5, || masked.call(&dense_vals));
    let dense = first_f64(dense?)?;
    // Where an entry is observed twice the dense form keeps the last value: compare the
    // entries whose coordinates are unique.
    let mut seen = std::collections::HashMap::new();
    for k in 0..e {
        *seen.entry((rows[k], cols[k])).or_insert(0) += 1;
    }
    let unique: Vec<usize> = (0..e).filter(|&k| seen[&(rows[k], cols[k])] == 1).collect();
    let from_dense: ArrayD<f64> = Array1::from_iter(unique.iter().map(|&k| dense[[rows[k] as usize, cols[k] as usize]])).into_dyn();
    let from_sparse: ArrayD<f64> = Array1::from_iter(unique.iter().map(|&k| got[[k]])).into_dyn();
    report_check("sampled_residual against masked_residual at the observed entries", rel_err(&from_sparse, &from_dense), 1e-5)?;

    let flops = |f: &tessera::Function<'_>, dims: &[(&str, u64)]| f.plan_for(dims).map(|p| p.flops);
    let (n64, m64, r64, e64) = (n as u64, m as u64, r as u64, e as u64);
    let fs = flops(&sampled, &[("n", n64), ("m", m64), ("r", r64), ("e", e64)])?;
    let fm = flops(&masked, &[("n", n64), ("m", m64), ("r", r64)])?;
    println!("\n  sampled_residual: {fs:.3e} FLOPs, best of 20 calls {sampled_ms:.3} ms");
    println!("  masked_residual:  {fm:.3e} FLOPs, best of 5 calls {masked_ms:.3} ms");
    println!("  the sparse form does {:.2}% of the dense form's FLOPs\n", 100.0 * fs / fm);

    // Tucker at observed entries.
    let (a, b, c, i, j, k, count) = (6, 5, 4, 50, 40, 30, 600);
    let tucker = Module::stdlib("tucker")?;
    let entries = tucker.function("entries")?;
    let (g, u1, u2, u3) = (tensor3(a, b, c, 6), matrix(i, a, 7), matrix(j, b, 8), matrix(k, c, 9));
    let (ii, jj, kk) = (coords(count, i, 10), coords(count, j, 11), coords(count, k, 12));
    let direct = Array1::from_shape_fn(count, |x| {
        let mut s = 0.0;
        for ((p, q, t), gv) in g.indexed_iter() {
            s += gv * u1[[ii[x] as usize, p]] * u2[[jj[x] as usize, q]] * u3[[kk[x] as usize, t]];
        }
        s
    })
    .into_dyn();
    let (g, u1, u2, u3) = (g.into_dyn(), u1.into_dyn(), u2.into_dyn(), u3.into_dyn());
    let (iv, jv, kv) = (ii.mapv(|x| x as i32).into_dyn(), jj.into_dyn(), kk.into_dyn());
    let out = entries.call_with_indices(
        &[g.view(), u1.view(), u2.view(), u3.view()],
        &[IndexView::I32(iv.view()), IndexView::I64(jv.view()), IndexView::I64(kv.view())],
        &opts,
    )?;
    report_check(&format!("tucker::entries at {count} entries (I as int32)"), rel_err(&out[0], &direct), 1e-12)?;

    // An index out of range is an error before anything runs.
    let mut bad = cols.clone();
    bad[7] = m as i64;
    let bad = bad.into_dyn();
    match sampled.call_with_indices(&vals, &[IndexView::I64(ri.view()), IndexView::I64(bad.view())], &opts) {
        Err(e) => println!("\nan index out of range: {}", e.render(false).trim()),
        Ok(_) => return Err("an index out of range was not refused".into()),
    }
    Ok(())
}
