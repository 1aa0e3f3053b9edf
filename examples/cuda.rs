//! The CUDA backend (a build with `--features cuda`): layer normalisation from
//! `std::norm` compiled to PTX, then run on the GPU and checked against the CPU, or,
//! on a machine without one, the clean error that says so.
//!
//! `cargo run --release --features cuda --example cuda`

mod common;

use ndarray::{Array1, Array2};
use tessera::{Backend, CallOptions, Module};

fn main() -> std::process::ExitCode {
    common::main_with(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let module = Module::stdlib("norm")?;
    let f = module.function("layernorm")?;
    let (b, d) = (4096usize, 1024usize);

    // The PTX needs no GPU: one `.entry` per loop kernel, a thread per row.
    let interp = CallOptions { backend: Backend::Interp, ..Default::default() };
    let ptx = f.compile_dims(&[("b", b as u64), ("d", d as u64)], &interp)?.emit_code(Backend::Cuda)?;
    let entries = ptx.lines().filter(|l| l.contains(".entry")).count();
    println!("layernorm (b = {b}, d = {d}): {} lines of PTX, {entries} kernel(s)", ptx.lines().count());

    let x = Array2::from_shape_fn((b, d), |(i, j)| ((i * 7 + j * 13) % 29) as f32 / 29.0 - 0.5).into_dyn();
    let gamma = Array1::from_shape_fn(d, |j| 1.0 + j as f32 / d as f32).into_dyn();
    let beta = Array1::from_shape_fn(d, |j| j as f32 / (2 * d) as f32).into_dyn();
    let inputs = [x.view(), gamma.view(), beta.view()];
    let gpu = CallOptions { backend: Backend::Cuda, ..Default::default() };
    match f.call_with(&inputs, &gpu) {
        Ok(on_gpu) => {
            let on_cpu = f.call(&inputs)?;
            let err = on_gpu[0].iter().zip(on_cpu[0].iter()).map(|(a, c)| (a - c).abs()).fold(0.0f32, f32::max);
            println!("ran on the GPU; largest difference from the CPU: {err:e}");
            if err.is_nan() || err >= 1e-4 {
                return Err(format!("the GPU result differs from the CPU's by {err:e}").into());
            }
        }
        Err(e) if e.to_string().contains("no CUDA device") => println!("not run: {e}"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
