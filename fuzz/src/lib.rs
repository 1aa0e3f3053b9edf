//! `tessera-fuzz`: an in-process differential mutation fuzzer for Tessera.
//!
//! Each mutant is a `.tsr` program: a corpus program (stdlib, snapshot cases, compare
//! programs, programs embedded in the examples and tests, earlier findings) with AST or
//! token mutations, or a random well-formed program ([`gen`]). Every mutant goes through
//! every stage of the public API under `catch_unwind` (a panic is a finding, checked or
//! not); every function of a mutant that checks runs on the JIT, the loop-IR
//! interpreter and the reference evaluator, in f32 and f64, at sizes from
//! [`run::SIZES`], on seeded random inputs, and must agree with the reference evaluator
//! in f64 ([`run`]). Findings are minimised ([`minimise`]) and written as case files
//! whose header holds the function, dtype, dims and input seed that replay them.
//!
//! A fault in generated code (SIGSEGV) cannot be caught in-process, so the long mode
//! (`src/main.rs`) runs batches in child processes: a child that dies is reported with
//! the batch seed and the program it was running.

// `*rng.pick(xs)` copies a `&str` out of a slice; clippy's auto-deref suggestion does not
// compile at the generic call sites.
#![allow(clippy::explicit_auto_deref)]

pub mod astutil;
pub mod corpus;
pub mod gen;
pub mod minimise;
pub mod mutate;
pub mod rng;
pub mod run;

use rng::Rng;
use run::{check_program, Choice, Finding, Limits, Outcome};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tessera_compiler::syntax::print_module;

/// Counters of a fuzz run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Mutants generated and put through the stages.
    pub tried: u64,
    /// Mutants that parse.
    pub parsed: u64,
    /// Mutants that check.
    pub checked: u64,
    /// Mutants with at least one function run on every backend and compared.
    pub executed: u64,
    /// (function, dtype) pairs run on every backend and compared.
    pub calls: u64,
    /// Distinct findings (by kind, stage and message shape).
    pub findings: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.tried += o.tried;
        self.parsed += o.parsed;
        self.checked += o.checked;
        self.executed += o.executed;
        self.calls += o.calls;
        self.findings += o.findings;
    }

    pub fn line(&self) -> String {
        format!(
            "tried {} parsed {} checked {} executed {} calls {} findings {}",
            self.tried, self.parsed, self.checked, self.executed, self.calls, self.findings
        )
    }

    /// Reads [`Stats::line`] back (the child process reports with it).
    pub fn parse_line(s: &str) -> Option<Stats> {
        let w: Vec<&str> = s.split_whitespace().collect();
        let get = |k: &str| w.iter().position(|x| *x == k).and_then(|i| w.get(i + 1)).and_then(|v| v.parse().ok());
        Some(Stats {
            tried: get("tried")?,
            parsed: get("parsed")?,
            checked: get("checked")?,
            executed: get("executed")?,
            calls: get("calls")?,
            findings: get("findings")?,
        })
    }
}

/// A finding with the program that shows it, minimised.
#[derive(Clone, Debug)]
pub struct Case {
    pub finding: Finding,
    pub seed: u64,
    pub program: String,
    pub original: String,
}

impl Case {
    /// The case file: a header (what failed, how to replay it), then the program.
    pub fn file_text(&self) -> String {
        let mut s = format!(
            "# tessera-fuzz finding: {} at {} (mutant seed {})\n# key: {}\n",
            self.finding.kind.name(),
            self.finding.stage,
            self.seed,
            key(&self.finding)
        );
        for line in self.finding.detail.lines().take(12) {
            s.push_str(&format!("#   {line}\n"));
        }
        if let Some(p) = &self.finding.params {
            s.push_str(&run::params_header(p));
        }
        s.push_str(&self.program);
        if !self.program.ends_with('\n') {
            s.push('\n');
        }
        s
    }

    pub fn file_name(&self) -> String {
        let stage: String = self.finding.stage.chars().map(|c| if c.is_alphanumeric() { c } else { '-' }).collect();
        format!("{}-{stage}-{:016x}.tsr", self.finding.kind.name(), fnv(&self.program))
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// What makes two findings "the same bug" for deduplication: kind, stage and the
/// message with numbers and names blurred.
pub fn key(f: &Finding) -> String {
    let first = f.detail.lines().next().unwrap_or("");
    let blurred: String = first
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect::<String>()
        .split_whitespace()
        .take(8)
        .collect::<Vec<_>>()
        .join(" ");
    let blurred = if f.kind == run::Kind::Mismatch { String::new() } else { blurred };
    format!("{}|{}|{}", f.kind.name(), f.stage, blurred)
}

/// The corpus and donor pool, loaded once.
pub struct Fuzzer {
    pub seeds: Vec<corpus::Seed>,
    pub donors: mutate::Donors,
    pub limits: Limits,
}

impl Fuzzer {
    pub fn new(limits: Limits) -> Fuzzer {
        let seeds = corpus::load();
        let donors = mutate::donors(&seeds);
        Fuzzer { seeds, donors, limits }
    }

    /// The mutant named by `seed` (deterministic for a given corpus).
    pub fn mutant(&self, seed: u64) -> String {
        let mut rng = Rng::new(seed);
        let parsed: Vec<&corpus::Seed> = self.seeds.iter().filter(|s| s.ast.is_some()).collect();
        let roll = rng.below(20);
        if roll < 2 || parsed.is_empty() {
            // Token edits of any corpus text, or of a generated program.
            let base = if rng.one_in(2) && !self.seeds.is_empty() { rng.pick(&self.seeds).text.clone() } else { gen::program(&mut rng) };
            return mutate::mutate_tokens(&base, &mut rng, &self.donors);
        }
        let mut m = if roll < 10 {
            let text = gen::program(&mut rng);
            if rng.one_in(2) {
                return text;
            }
            match tessera_compiler::syntax::parse(&text, Default::default()) {
                Ok(m) => m,
                Err(_) => return text,
            }
        } else {
            match &rng.pick(&parsed).ast {
                Some(m) => m.clone(),
                None => return String::new(),
            }
        };
        for _ in 0..1 + rng.below(3) {
            mutate::mutate_ast(&mut m, &mut rng, &self.donors);
        }
        let text = print_module(&m);
        if rng.one_in(12) {
            return mutate::mutate_tokens(&text, &mut rng, &self.donors);
        }
        text
    }

    /// Generates and checks the mutant named by `seed`.
    pub fn run_one(&self, seed: u64) -> (String, Outcome) {
        let text = self.mutant(seed);
        let out = check_program(&text, &Choice::Seeded(seed), &self.limits);
        (text, out)
    }
}

/// A mutant that takes longer than this is reported as slow (on stderr).
const SLOW_MS: f64 = 10_000.0;

/// Where a batch stands, for the parent process.
pub struct Batch<'a> {
    pub fuzzer: &'a Fuzzer,
    /// Keys of findings already reported (loaded from the output directory).
    pub seen: BTreeSet<String>,
    pub out_dir: Option<PathBuf>,
    /// Written before each mutant runs, so that a crash can be traced to its program.
    pub current_file: Option<PathBuf>,
    /// Time allowed for minimising one finding.
    pub minimise_for: Duration,
    /// Print one line per mutant (seed, time, how far it got).
    pub verbose: bool,
}

impl Batch<'_> {
    /// Runs mutants `seed_base + 0 .. count`; returns counters and new cases.
    pub fn run(&mut self, seed_base: u64, count: u64, stop_at: Option<Instant>) -> (Stats, Vec<Case>) {
        let mut stats = Stats::default();
        let mut cases = Vec::new();
        for k in 0..count {
            if stop_at.is_some_and(|t| Instant::now() > t) {
                break;
            }
            let seed = rng::mix(seed_base, k);
            let text = self.fuzzer.mutant(seed);
            if let Some(p) = &self.current_file {
                let _ = std::fs::write(p, format!("# mutant seed {seed}\n{text}"));
            }
            let t0 = Instant::now();
            let out = check_program(&text, &Choice::Seeded(seed), &self.fuzzer.limits);
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if ms > SLOW_MS {
                // Not a finding (no backend is wrong), but compile latency matters.
                eprintln!("slow: mutant seed {seed} took {:.1} s", ms / 1e3);
            }
            if self.verbose {
                let why = if out.checked { String::new() } else { first_error(&text) };
                eprintln!(
                    "seed {seed}: {:.0} ms, parsed {} checked {} calls {} too-large {} findings {} {why}",
                    t0.elapsed().as_secs_f64() * 1e3,
                    out.parsed,
                    out.checked,
                    out.executed,
                    out.too_large,
                    out.findings.len()
                );
            }
            stats.tried += 1;
            stats.parsed += out.parsed as u64;
            stats.checked += out.checked as u64;
            stats.executed += (out.executed > 0) as u64;
            stats.calls += out.executed as u64;
            for f in out.findings {
                if !self.seen.insert(key(&f)) {
                    continue;
                }
                stats.findings += 1;
                let deadline = Instant::now() + self.minimise_for;
                let program = minimise::minimise(&text, &f, &self.fuzzer.limits, deadline);
                let case = Case { finding: f, seed, program, original: text.clone() };
                if let Some(dir) = &self.out_dir {
                    let _ = std::fs::create_dir_all(dir);
                    let _ = std::fs::write(dir.join(case.file_name()), case.file_text());
                }
                cases.push(case);
            }
        }
        (stats, cases)
    }
}

/// The first error message of a program that does not check (for verbose output).
fn first_error(text: &str) -> String {
    match tessera::Module::from_source(text) {
        Err(e) => e.to_string().chars().take(100).collect(),
        Ok(_) => String::new(),
    }
}

/// Keys of the findings already in `dir` (so that a long run reports each bug once).
pub fn seen_keys(dir: &Path) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_to_string(e.path()) {
                for l in t.lines().take_while(|l| l.starts_with('#')) {
                    if let Some(k) = l.strip_prefix("# key: ") {
                        seen.insert(k.to_string());
                    }
                }
            }
        }
    }
    seen
}
