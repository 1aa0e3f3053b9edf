//! Compile latency: how long `check`, planning, lowering and JIT code generation take for
//! every stdlib function and every program of `bench/latency/*.tsr`, through the same
//! entry point as `tessera bench` (`Function::compile_dims`, the JIT backend). Each stage
//! is the fastest of `--runs` cold compilations (a fresh module and an empty path-search
//! cache each time). Writes `bench/latency/RESULTS.md` unless `--no-write`.
//!
//! ```sh
//! cargo run --release -p tessera-bench --bin latency
//! cargo run --release -p tessera-bench --bin latency -- --only mkor --runs 5 --no-write
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tessera::{Executable, PlanOptions};
use tessera_bench::latency::{self, Case};
use tessera_compiler::Backend;
use tessera_compiler::optimize::path::PathCache;

/// Each of plan, lower and JIT should take less than this.
const TARGET_MS: f64 = 50.0;

struct Row {
    name: String,
    dims: String,
    stmts: usize,
    steps: usize,
    check_ms: f64,
    /// Wall-clock and thread CPU time of plan, lower and JIT.
    wall: [f64; 3],
    cpu: [f64; 3],
    algebra: String,
}

struct Args {
    runs: usize,
    only: Option<String>,
    out: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { runs: 3, only: None, out: Some(latency::programs_dir().join("RESULTS.md")) };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--runs" => {
                a.runs = it.next().and_then(|v| v.parse().ok()).filter(|&n| n > 0).ok_or("--runs takes a positive number")?
            }
            "--only" => a.only = Some(it.next().ok_or("--only takes a substring of program names")?),
            "--out" => a.out = Some(PathBuf::from(it.next().ok_or("--out takes a path")?)),
            "--no-write" => a.out = None,
            "-h" | "--help" => {
                println!("usage: latency [--runs N] [--only SUBSTRING] [--out PATH | --no-write]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(a)
}

/// CPU time of the calling thread in milliseconds: compilation runs on one thread, so
/// this does not grow when other processes share the cores.
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

/// Runs `f`, returning its result with its wall-clock and CPU milliseconds.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (c, w) = (thread_cpu_ms(), Instant::now());
    let out = f();
    (out, w.elapsed().as_secs_f64() * 1e3, thread_cpu_ms() - c)
}

/// One case, `runs` times cold; every stage's fastest run. The stages are the calls
/// `Function::compile_dims` makes for the JIT backend (and `tessera bench` reports):
/// `plan::plan` with the default options, `loops::lower`, `Executable::new`.
fn measure(case: &Case, runs: usize) -> Result<Row, String> {
    let dims: Vec<(&str, u64)> = case.dims.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let mut row = Row {
        name: case.name.clone(),
        dims: case.dims.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(" "),
        stmts: 0,
        steps: 0,
        check_ms: f64::INFINITY,
        wall: [f64::INFINITY; 3],
        cpu: [f64::INFINITY; 3],
        algebra: String::new(),
    };
    for _ in 0..runs {
        PathCache::global().clear();
        let (module, check_ms, _) = timed(|| latency::check(case));
        let module = module?;
        row.check_ms = row.check_ms.min(check_ms);
        let f = module.function(&case.function).map_err(|e| e.to_string())?;
        let (plan, w0, c0) = timed(|| f.plan(&dims, &PlanOptions::default()));
        let plan = plan.map_err(|e| e.render(false))?;
        let (program, w1, c1) = timed(|| tessera_compiler::loops::lower(&plan, &Default::default()));
        let program = program.map_err(|e| format!("lowering: {e}"))?;
        let (exec, w2, c2) = timed(|| Executable::new(program, Backend::Cranelift));
        exec.map_err(|e| format!("code generation: {e}"))?;
        for (k, (w, c)) in [(w0, c0), (w1, c1), (w2, c2)].into_iter().enumerate() {
            row.wall[k] = row.wall[k].min(w);
            row.cpu[k] = row.cpu[k].min(c);
        }
        row.stmts = f.tir().stmts.len();
        row.steps = plan.steps.len();
        row.algebra = plan.algebra.as_ref().map_or("off".to_string(), |a| a.stop_reason.clone());
    }
    Ok(row)
}

fn cpu() -> String {
    let lscpu = std::process::Command::new("lscpu").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).to_string());
    let from = |text: &str, key: &str| {
        text.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim_start_matches(':').trim().to_string()))
    };
    let model = lscpu.as_deref().and_then(|t| from(t, "Model name"));
    let model = model.or_else(|| std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| from(&t, "model name")));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{} ({cores} hardware threads available)", model.unwrap_or_else(|| "unknown CPU".to_string()))
}

fn cell(v: f64) -> String {
    if v >= TARGET_MS {
        format!("**{v:.1}**")
    } else {
        format!("{v:.1}")
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn report(rows: &[Row], failed: &[(String, String)], runs: usize) -> String {
    let mut s = String::new();
    let over = |r: &Row| r.cpu.iter().any(|&x| x >= TARGET_MS);
    let worst = |k: usize, wall: bool| rows.iter().map(|r| if wall { r.wall[k] } else { r.cpu[k] }).fold(0.0, f64::max);
    let _ = writeln!(s, "# Compile latency\n");
    let _ = writeln!(
        s,
        "Written by `cargo run --release -p tessera-bench --bin latency` (see `bench/README.md`). \
         Every stdlib function at benchmark sizes and every program of `bench/latency/`, compiled \
         for the JIT by the calls `tessera bench` makes (`plan::plan` with the default options, \
         `loops::lower`, `Executable::new`). Each stage is the fastest of {runs} cold compilations \
         (a fresh module and an empty path-search cache each time). Compilation runs on one \
         thread: CPU is that thread's CPU time, which does not grow when other processes share \
         the cores; wall is the elapsed time. Target: plan, lower and JIT each under \
         {TARGET_MS:.0} ms; bold cells miss it.\n"
    );
    let _ = writeln!(s, "Machine: {}; load average {} when the run ended.\n", cpu(), load());
    let _ = writeln!(
        s,
        "Slowest CPU times: plan {:.1} ms, lower {:.1} ms, JIT {:.1} ms (wall: {:.1}, {:.1}, {:.1} ms); {} of {} programs miss the target in CPU time{}.\n",
        worst(0, false),
        worst(1, false),
        worst(2, false),
        worst(0, true),
        worst(1, true),
        worst(2, true),
        rows.iter().filter(|r| over(r)).count(),
        rows.len(),
        if failed.is_empty() { String::new() } else { format!(", {} failed to compile", failed.len()) }
    );
    let _ = writeln!(s, "| program | dims | stmts | steps | check wall ms | plan CPU ms | lower CPU ms | JIT CPU ms | plan wall ms | lower wall ms | JIT wall ms | algebra pass |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.dims,
            r.stmts,
            r.steps,
            r.check_ms,
            cell(r.cpu[0]),
            cell(r.cpu[1]),
            cell(r.cpu[2]),
            cell(r.wall[0]),
            cell(r.wall[1]),
            cell(r.wall[2]),
            r.algebra.replace('|', "\\|")
        );
    }
    for (name, e) in failed {
        let _ = writeln!(s, "\n`{name}` failed: {}", e.replace('\n', " "));
    }
    s
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("latency: {e}");
            return ExitCode::from(2);
        }
    };
    let cases = match latency::stdlib_cases().and_then(|mut s| {
        s.extend(latency::program_cases()?);
        Ok(s)
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("latency: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for case in cases.iter().filter(|c| args.only.as_ref().is_none_or(|o| c.name.contains(o.as_str()))) {
        match measure(case, args.runs) {
            Ok(r) => {
                eprintln!(
                    "{:<36} CPU: plan {:>7.2} lower {:>6.2} jit {:>6.2} ms; wall: plan {:>7.2} lower {:>6.2} jit {:>6.2} ms  ({})",
                    r.name, r.cpu[0], r.cpu[1], r.cpu[2], r.wall[0], r.wall[1], r.wall[2], r.algebra
                );
                rows.push(r);
            }
            Err(e) => {
                eprintln!("{:<32} failed: {e}", case.name);
                failed.push((case.name.clone(), e));
            }
        }
    }
    let text = report(&rows, &failed, args.runs);
    match &args.out {
        Some(p) => {
            if let Err(e) = std::fs::write(p, &text) {
                eprintln!("latency: cannot write {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
            eprintln!("wrote {}", p.display());
        }
        None => print!("{text}"),
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
