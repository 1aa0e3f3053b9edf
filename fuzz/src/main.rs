//! The long mode: `cargo run --release -p tessera-fuzz -- --minutes 30 [--seed S] [--out DIR]`.
//!
//! The parent process runs batches of mutants in child processes (this binary again,
//! with `--child-batch SEED`). Panics are caught inside the child, but a fault in
//! generated code (SIGSEGV) or an abort kills it; the parent then reports the batch seed
//! and the program the child was running (the child writes it to a file before each
//! mutant), and goes on with the next batch. A child stuck on one mutant longer than
//! `--mutant-timeout` is killed and reported as a hang the same way.

use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime};
use tessera_fuzz::run::{install_quiet_panic_hook, Finding, Kind, Limits};
use tessera_fuzz::{rng, seen_keys, Batch, Case, Fuzzer, Stats};

#[derive(Parser, Debug)]
#[command(about = "Differential mutation fuzzing of Tessera: every backend against the reference evaluator")]
struct Args {
    /// How long to run.
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
    /// The run's seed (batch k runs mutants of seed mix(seed, k)); default: the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// Where finding case files go.
    #[arg(long, default_value = "target/tessera-fuzz")]
    out: PathBuf,
    /// Mutants per child process.
    #[arg(long, default_value_t = 200)]
    batch_size: u64,
    /// Seconds one mutant may run before it counts as a hang.
    #[arg(long, default_value_t = 120)]
    mutant_timeout: u64,
    /// Seconds to spend minimising each finding.
    #[arg(long, default_value_t = 30)]
    minimise_secs: u64,
    /// Run in this process (no crash isolation; a fault ends the run).
    #[arg(long)]
    in_process: bool,
    /// Print one line per mutant.
    #[arg(long)]
    verbose: bool,
    /// Internal: seconds a child batch may run before it stops early.
    #[arg(long, hide = true)]
    child_secs: Option<f64>,
    /// Print the mutant of this seed and check it (with TESSERA_FUZZ_TIMING=1, per stage).
    #[arg(long)]
    replay_seed: Option<u64>,
    /// Internal: run one batch as a child process.
    #[arg(long, hide = true)]
    child_batch: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    install_quiet_panic_hook();
    let _ = std::fs::create_dir_all(&args.out);
    if let Some(seed) = args.replay_seed {
        let fuzzer = Fuzzer::new(Limits::release());
        let (text, out) = fuzzer.run_one(seed);
        println!("{text}\n{out:#?}");
        return ExitCode::SUCCESS;
    }
    if let Some(seed) = args.child_batch {
        return child(&args, seed);
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.minutes * 60.0);
    eprintln!("tessera-fuzz: seed {seed}, {} minutes, findings in {}", args.minutes, args.out.display());
    let mut total = Stats::default();
    let mut new_cases: Vec<String> = Vec::new();
    let mut last_report = Instant::now();
    let mut batch = 0u64;
    let fuzzer = if args.in_process { Some(Fuzzer::new(Limits::release())) } else { None };
    while Instant::now() < end {
        let bseed = rng::mix(seed, batch);
        batch += 1;
        let (stats, cases) = match &fuzzer {
            Some(f) => {
                let mut b = Batch {
                    fuzzer: f,
                    seen: seen_keys(&args.out),
                    out_dir: Some(args.out.clone()),
                    current_file: None,
                    minimise_for: Duration::from_secs(args.minimise_secs),
                    verbose: args.verbose,
                };
                let (s, c) = b.run(bseed, args.batch_size, Some(end));
                (s, c.iter().map(|c| c.file_name()).collect())
            }
            None => run_child(&args, bseed, end),
        };
        total.add(&stats);
        for c in &cases {
            eprintln!("  finding: {}", args.out.join(c).display());
        }
        new_cases.extend(cases);
        if last_report.elapsed() > Duration::from_secs(30) || Instant::now() >= end {
            last_report = Instant::now();
            let mins = start.elapsed().as_secs_f64() / 60.0;
            eprintln!("[{mins:6.1} min] {} ({:.0} mutants/min)", total.line(), total.tried as f64 / mins.max(1e-9));
        }
    }
    let mins = start.elapsed().as_secs_f64() / 60.0;
    println!("tessera-fuzz summary: seed {seed}, {mins:.1} minutes, {batch} batches");
    println!("  {}", total.line());
    println!("  {:.0} mutants/min, {:.0} executed/min", total.tried as f64 / mins, total.executed as f64 / mins);
    println!("  new findings: {}", new_cases.len());
    for c in &new_cases {
        println!("    {}", args.out.join(c).display());
    }
    if new_cases.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One batch in this process; writes its running totals to a progress file.
fn child(args: &Args, seed: u64) -> ExitCode {
    let fuzzer = Fuzzer::new(Limits::release());
    let mut total = Stats::default();
    let current = args.out.join(format!(".current-{seed}.tsr"));
    let progress = args.out.join(format!(".progress-{seed}"));
    let mut b = Batch {
        fuzzer: &fuzzer,
        seen: seen_keys(&args.out),
        out_dir: Some(args.out.clone()),
        current_file: Some(current),
        minimise_for: Duration::from_secs(args.minimise_secs),
        verbose: args.verbose,
    };
    let stop = args.child_secs.map(|s| Instant::now() + Duration::from_secs_f64(s));
    for k in 0..args.batch_size {
        if stop.is_some_and(|t| Instant::now() > t) {
            break;
        }
        let (s, cases) = b.run(rng::mix(seed, k), 1, None);
        total.add(&s);
        for c in cases {
            println!("case {}", c.file_name());
        }
        let _ = std::fs::write(&progress, total.line());
    }
    ExitCode::SUCCESS
}

/// Runs one batch in a child process and watches it: a child that dies or stalls is a
/// finding with the program it was running.
fn run_child(args: &Args, seed: u64, end: Instant) -> (Stats, Vec<String>) {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("tessera-fuzz"));
    let current = args.out.join(format!(".current-{seed}.tsr"));
    let progress = args.out.join(format!(".progress-{seed}"));
    let spawned = Command::new(exe)
        .args(["--child-batch", &seed.to_string(), "--batch-size", &args.batch_size.to_string()])
        .args(["--minimise-secs", &args.minimise_secs.to_string()])
        .args(["--child-secs", &end.saturating_duration_since(Instant::now()).as_secs_f64().to_string()])
        .args(if args.verbose { &["--verbose"][..] } else { &[][..] })
        .arg("--out")
        .arg(&args.out)
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start a child process: {e}");
            std::process::exit(2);
        }
    };
    let mut cases = Vec::new();
    let mut died = None;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if !status.success() {
                    died = Some((Kind::Crash, format!("the child process died: {status}")));
                }
                break;
            }
            Ok(None) => {}
            Err(e) => {
                died = Some((Kind::Crash, format!("cannot wait for the child: {e}")));
                break;
            }
        }
        let stalled = modified_ago(&current).is_some_and(|d| d > Duration::from_secs(args.mutant_timeout));
        if stalled || Instant::now() > end + Duration::from_secs(args.mutant_timeout) {
            let _ = child.kill();
            let _ = child.wait();
            if stalled {
                died = Some((Kind::Hang, format!("one mutant ran for more than {} s", args.mutant_timeout)));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(out) = child.stdout.take() {
        use std::io::Read;
        let mut s = String::new();
        let mut out = out;
        let _ = out.read_to_string(&mut s);
        cases.extend(s.lines().filter_map(|l| l.strip_prefix("case ").map(str::to_string)));
    }
    let stats = std::fs::read_to_string(&progress).ok().and_then(|s| Stats::parse_line(&s)).unwrap_or_default();
    if let Some((kind, detail)) = died {
        let program = std::fs::read_to_string(&current).unwrap_or_default();
        let mseed = program.lines().next().and_then(|l| l.strip_prefix("# mutant seed ")).and_then(|s| s.parse().ok());
        let case = Case {
            finding: Finding { kind, stage: "process".into(), detail: format!("{detail} (batch seed {seed})"), params: None },
            seed: mseed.unwrap_or(seed),
            program: program.lines().skip(1).collect::<Vec<_>>().join("\n"),
            original: program.clone(),
        };
        let _ = std::fs::write(args.out.join(case.file_name()), case.file_text());
        cases.push(case.file_name());
    }
    let _ = std::fs::remove_file(&current);
    let _ = std::fs::remove_file(&progress);
    (stats, cases)
}

fn modified_ago(p: &Path) -> Option<Duration> {
    std::fs::metadata(p).ok()?.modified().ok()?.elapsed().ok()
}
