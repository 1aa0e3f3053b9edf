//! LoRA (Hu et al., 2021) from `std::lowrank`: Y = X W + (α/r) X B A, written as the
//! formula reads. A good evaluation computes (X B) A, never the d×o matrix B A.
//!
//! Run it with `cargo run --release --example lora`.

mod common;

use common::{best_of, f32s, first_f64, matrix, rel_err, report_check, show_plan, show_program};
use ndarray::arr0;

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (n, d, o, r) = (512, 256, 256, 8);
    let alpha = 16.0;
    println!("LoRA: Y = X W + (alpha/r) X B A with n = {n}, d = {d}, o = {o}, r = {r}, alpha = {alpha}\n");

    let module = tessera::Module::stdlib("lowrank")?;
    let f = module.function("lora")?;
    show_program(&f);
    show_plan(&f, &[("n", n as u64), ("d", d as u64), ("o", o as u64), ("r", r as u64)])?;

    let (x, w, b, a) = (matrix(n, d, 1), matrix(d, o, 2), matrix(d, r, 3), matrix(r, o, 4));
    let inputs = [
        f32s(&x.clone().into_dyn()),
        f32s(&w.clone().into_dyn()),
        f32s(&b.clone().into_dyn()),
        f32s(&a.clone().into_dyn()),
    ];
    let alpha32 = arr0(alpha as f32).into_dyn();
    let views = [inputs[0].view(), inputs[1].view(), inputs[2].view(), inputs[3].view(), alpha32.view()];

    let (out, t_tessera) = best_of(3, || f.call(&views));
    let got = first_f64(out?)?;

    // Direct computations with ndarray (f64): the good order and the one to avoid.
    let scale = alpha / r as f64;
    let (good, t_good) = best_of(3, || x.dot(&w) + x.dot(&b).dot(&a) * scale);
    let (bad, t_bad) = best_of(3, || x.dot(&w) + x.dot(&b.dot(&a)) * scale);
    println!("Y[0, ..4] = {:?}", got.iter().take(4).collect::<Vec<_>>());
    println!("time, Tessera (reference evaluator, f32):  {t_tessera:8.2} ms");
    println!("time, ndarray X W + (X B) A (f64):          {t_good:8.2} ms");
    println!("time, ndarray X W + X (B A) (f64):          {t_bad:8.2} ms");
    println!();
    report_check("the two ndarray orders agree", rel_err(&bad.into_dyn(), &good.clone().into_dyn()), 1e-10)?;
    report_check("Tessera against ndarray X W + (alpha/r) (X B) A", rel_err(&got, &good.into_dyn()), 1e-4)?;
    Ok(())
}
