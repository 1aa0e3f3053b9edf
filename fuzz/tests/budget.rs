//! The fixed-seed fuzz budget that `cargo test` runs: the mutants of one seed, in order,
//! for about a minute (a two-core machine, debug profile). It fails on any finding, and
//! it fails if too few mutants got through every backend in that time, so that a broken
//! pipeline (a corpus that no longer loads, a generator whose programs stop checking, a
//! runner that skips, a planner that got much slower) cannot pass silently.

use std::time::{Duration, Instant};
use tessera_fuzz::run::{install_quiet_panic_hook, Limits};
use tessera_fuzz::{Batch, Fuzzer};

const SEED: u64 = 20_261_206;
/// At most this many mutants, within [`BUDGET`].
const MUTANTS: u64 = 3000;
const BUDGET: Duration = Duration::from_secs(60);
/// Mutants that must reach every backend within the budget; a healthy run on the
/// reference machine executes about three times this many (72 in 61 s with five
/// other builds sharing its two cores).
const MIN_EXECUTED: u64 = 25;

#[test]
fn fixed_seed_budget_finds_nothing() {
    install_quiet_panic_hook();
    let fuzzer = Fuzzer::new(Limits::debug());
    let parsed = fuzzer.seeds.iter().filter(|s| s.ast.is_some()).count();
    assert!(parsed >= 60, "only {parsed} corpus programs parse; is the corpus still found?");
    let mut batch = Batch {
        fuzzer: &fuzzer,
        seen: Default::default(),
        out_dir: None,
        current_file: None,
        minimise_for: Duration::from_secs(10),
        verbose: false,
    };
    let start = Instant::now();
    let (stats, cases) = batch.run(SEED, MUTANTS, Some(start + BUDGET));
    let secs = start.elapsed().as_secs_f64();
    println!("fuzz budget: {} in {secs:.1} s ({:.0} mutants/min)", stats.line(), stats.tried as f64 * 60.0 / secs);
    let report: Vec<String> = cases.iter().map(|c| format!("{}\n{}", c.file_name(), c.file_text())).collect();
    assert!(cases.is_empty(), "{} findings:\n{}", cases.len(), report.join("\n"));
    assert!(
        stats.executed >= MIN_EXECUTED,
        "only {} of {} mutants ran on every backend in {secs:.0} s (at least {MIN_EXECUTED} must)",
        stats.executed,
        stats.tried
    );
}
