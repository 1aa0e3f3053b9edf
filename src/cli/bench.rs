//! `tessera bench`: time a compiled function on seeded random inputs.

use super::{print_text, BenchArgs, BenchFormat, CliError};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use tessera::{CallOptions, Compiled, DType, Module, Scalar};

/// What one benchmark measured.
struct Measured {
    function: String,
    dims: String,
    dtype: DType,
    backend: &'static str,
    mul: tessera::MulMode,
    plan_ms: f64,
    compile_ms: f64,
    lower_ms: f64,
    codegen_ms: f64,
    times: Vec<f64>,
    flops: f64,
    temp_bytes: usize,
    output_bytes: usize,
    input_bytes: usize,
    slicing: Option<tessera::Slicing>,
}

pub(super) fn bench(args: &BenchArgs) -> Result<(), CliError> {
    if !(args.min_time.is_finite() && args.min_time >= 0.0 && args.min_time <= 3600.0) {
        return Err(CliError::usage("bench", format!("--min-time {} is not a number of seconds in 0..=3600", args.min_time)));
    }
    let backend = args.backend;
    if backend == tessera::Backend::Reference {
        return Err(CliError::usage("bench", "--backend reference has no compiled form to time; use cranelift, llvm or interp"));
    }
    let module;
    let (compiled, dtype) = match (&args.target.einsum, &args.target.file) {
        (Some(spec), _) => {
            let sizes: Vec<(&str, u64)> =
                args.target.sizes.iter().flat_map(|s| s.0.iter()).map(|d| (d.name.as_str(), d.size)).collect();
            let shapes = tessera::einsum_label_shapes(spec, &sizes)?;
            let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
            let dtype = args.dtype.map(DType::from).unwrap_or(DType::F32);
            let opts = CallOptions { backend, memory_limit: args.memory_limit, mul: args.mul, ..CallOptions::default() };
            (tessera::compile_einsum_with(spec, &refs, dtype, &opts)?, dtype)
        }
        (None, Some(file)) => {
            module = Module::from_file(file)?;
            super::print_warnings(&module);
            let f = module.entry(args.target.function.as_deref())?;
            let dims: Vec<(&str, u64)> = args.target.dims.iter().map(|d| (d.name.as_str(), d.size)).collect();
            let dtype = args.dtype.map(DType::from).unwrap_or(f.dtype());
            let opts = CallOptions { dtype: Some(dtype), backend, memory_limit: args.memory_limit, mul: args.mul, ..CallOptions::default() };
            (f.compile_dims(&dims, &opts)?, dtype)
        }
        (None, None) => return Err(CliError::usage("bench", "give a FILE.tsr or --einsum SPEC")),
    };
    let min_time = Duration::from_secs_f64(args.min_time);
    let m = match dtype {
        DType::F32 => measure::<f32>(&compiled, min_time)?,
        DType::F64 => measure::<f64>(&compiled, min_time)?,
    };
    let m = Measured { backend: backend.name(), mul: args.mul, ..m };
    print_text(&match args.format {
        BenchFormat::Text => text(&m),
        BenchFormat::Json => format!("{}\n", json(&m)),
    })
}

/// Uniform values in [-1, 1) from a fixed seed, so runs are comparable.
fn random<T: Scalar>(shape: &[usize], seed: u64) -> ArrayD<T> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        T::from_f64((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
    })
}

fn measure<T: Scalar>(c: &Compiled, min_time: Duration) -> Result<Measured, CliError> {
    let shapes = c.exec.input_shapes();
    let inputs: Vec<ArrayD<T>> = shapes.iter().enumerate().map(|(k, s)| random::<T>(s, k as u64 + 1)).collect();
    let views: Vec<ArrayViewD<'_, T>> = inputs.iter().map(|a| a.view()).collect();
    // Index inputs: seeded uniform indices into the axis each one selects.
    let p = c.program();
    let bounds = p.index_bounds();
    let indices: Vec<ArrayD<i64>> = p
        .indices
        .iter()
        .zip(&bounds)
        .enumerate()
        .map(|(k, (&b, bound))| {
            let extent = bound.as_ref().map_or(1, |x| x.extent.max(1)) as f64;
            random::<f64>(&p.buf(b).shape, 1000 + k as u64).mapv(|x| (((x + 1.0) / 2.0 * extent) as i64).min(extent as i64 - 1))
        })
        .collect();
    let index_views: Vec<tessera::IndexView<'_>> = indices.iter().map(|a| tessera::IndexView::I64(a.view())).collect();
    let run = |c: &Compiled| if index_views.is_empty() { c.run(&views) } else { c.run_indexed(&views, &index_views) };
    let progress = std::io::stderr().is_terminal();
    if progress {
        eprint!("warming up...");
    }
    // The first call faults in memory and warms caches; a second settles the pool.
    let warm = Instant::now();
    run(c)?;
    if warm.elapsed() < Duration::from_millis(200) {
        run(c)?;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || (start.elapsed() < min_time && times.len() < 100_000) {
        let t = Instant::now();
        let out = run(c)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        drop(out);
        if progress && times.len() % 50 == 0 {
            eprint!("\rtiming... {} calls", times.len());
        }
    }
    if progress {
        eprint!("\r\x1b[K");
    }
    let bytes =
        |ss: &[Vec<usize>]| -> usize { ss.iter().map(|s| s.iter().product::<usize>()).sum::<usize>() * T::DTYPE.size_of() };
    let dims: Vec<String> = c.plan.dims.iter().map(|d| format!("{} = {}", d.name, d.size)).collect();
    Ok(Measured {
        function: c.plan.function.clone(),
        dims: dims.join(", "),
        dtype: T::DTYPE,
        backend: "",
        mul: tessera::MulMode::Exact,
        plan_ms: c.plan_ms,
        compile_ms: c.compile_ms,
        lower_ms: c.lower_ms,
        codegen_ms: c.codegen_ms,
        times,
        flops: c.plan.flops,
        temp_bytes: c.exec.temp_bytes(tessera::threads()),
        output_bytes: bytes(&c.exec.output_shapes()),
        input_bytes: bytes(&shapes) + indices.iter().map(|a| a.len() * 8).sum::<usize>(),
        slicing: c.exec.slicing().cloned(),
    })
}

fn stats(times: &[f64]) -> (f64, f64) {
    let mut t = times.to_vec();
    t.sort_by(|a, b| a.total_cmp(b));
    let median = if t.is_empty() { 0.0 } else { t[t.len() / 2] };
    (median, t.first().copied().unwrap_or(0.0))
}

fn gflops(m: &Measured, ms: f64) -> f64 {
    if ms > 0.0 {
        m.flops / (ms * 1e-3) / 1e9
    } else {
        0.0
    }
}

fn human(bytes: usize) -> String {
    let b = bytes as f64;
    match b {
        _ if b >= (1u64 << 30) as f64 => format!("{:.1} GiB", b / (1u64 << 30) as f64),
        _ if b >= (1u64 << 20) as f64 => format!("{:.1} MiB", b / (1u64 << 20) as f64),
        _ if b >= 1024.0 => format!("{:.1} KiB", b / 1024.0),
        _ => format!("{bytes} B"),
    }
}

/// The slice loops a sliced call runs, for people.
fn slicing_line(s: &tessera::Slicing) -> String {
    let loops: Vec<String> = s.loops.iter().map(|l| format!("{} in chunks of {} of {}", l.index, l.chunk, l.extent)).collect();
    let how =
        if s.parallel > 1 { format!("{} at a time, one per thread", s.parallel) } else { "one at a time on every thread".into() };
    format!(
        "  slicing   {} slices ({}), {how}, under {}; {:.3e} FLOPs as run\n",
        s.slices,
        loops.join(", "),
        human(s.limit as usize),
        s.flops
    )
}

fn text(m: &Measured) -> String {
    let (median, min) = stats(&m.times);
    let slicing = m.slicing.as_ref().map(slicing_line).unwrap_or_default();
    format!(
        "bench `{}` ({}, {}{}, {} threads; {})\n  \
         plan      {:.2} ms\n  \
         compile   {:.2} ms (lower {:.2} ms, codegen {:.2} ms)\n  \
         time      median {:.4} ms, min {:.4} ms over {} calls\n  \
         speed     {:.2} GFLOP/s at the median ({:.3e} FLOPs per call)\n  \
         memory    {} intermediates, {} outputs, {} inputs\n{}",
        m.function,
        m.dtype.name(),
        m.backend,
        if m.mul == tessera::MulMode::Exact { String::new() } else { format!(", mul {}", m.mul) },
        tessera::threads(),
        m.dims,
        m.plan_ms,
        m.compile_ms,
        m.lower_ms,
        m.codegen_ms,
        median,
        min,
        m.times.len(),
        gflops(m, median),
        m.flops,
        human(m.temp_bytes),
        human(m.output_bytes),
        human(m.input_bytes),
        slicing
    )
}

fn json(m: &Measured) -> String {
    let (median, min) = stats(&m.times);
    serde_json::json!({
        "function": m.function,
        "dims": m.dims,
        "dtype": m.dtype.name(),
        "backend": m.backend,
        "mul": m.mul.to_string(),
        "threads": tessera::threads(),
        "plan_ms": m.plan_ms,
        "compile_ms": m.compile_ms,
        "lower_ms": m.lower_ms,
        "codegen_ms": m.codegen_ms,
        "median_ms": median,
        "min_ms": min,
        "runs": m.times.len(),
        "flops": m.flops,
        "gflops": gflops(m, median),
        "peak_bytes": m.temp_bytes + m.output_bytes,
        "temp_bytes": m.temp_bytes,
        "output_bytes": m.output_bytes,
        "input_bytes": m.input_bytes,
        "slices": m.slicing.as_ref().map_or(1, |s| s.slices),
        "sliced_flops": m.slicing.as_ref().map(|s| s.flops),
        "parallel_slices": m.slicing.as_ref().map_or(1, |s| s.parallel),
        "slice_loops": m.slicing.as_ref().map(|s| s.loops.iter().map(|l| serde_json::json!({
            "index": l.index, "extent": l.extent, "chunk": l.chunk,
        })).collect::<Vec<_>>()).unwrap_or_default(),
    })
    .to_string()
}
