//! The loop IR's pass manager: every program-level pass is a named entry of [`PASSES`],
//! in the order lowering runs them, and [`run_passes`] is the one driver. Each pass
//! declares the stage it needs and the stage it leaves (see [`Stage`]); the driver checks
//! the order and, when asked (always in debug builds), verifies the program after every
//! pass, so a broken invariant is reported with the name of the pass that broke it.

mod localise;
mod memory_plan;
mod row_fusion;
mod sibling_fusion;
mod tile_groups;
mod util;

use super::{verify_at, Program, Stage};

/// A program-level pass of the loop IR.
#[derive(Clone, Copy)]
pub struct Pass {
    /// The name in pass lists and file tests (`row-fusion`).
    pub name: &'static str,
    /// The stage the program must be at before the pass.
    pub from: Stage,
    /// The stage the program is at after it.
    pub to: Stage,
    pub run: fn(&mut Program),
}

impl std::fmt::Debug for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pass({})", self.name)
    }
}

/// Every pass, in the order lowering runs them. The four structural passes run only when
/// lowering fuses (`LowerOptions::fuse`); the memory plan always runs, and last, because
/// it is the only pass that leaves `Stage::Kernels`.
pub const PASSES: &[Pass] = &[row_fusion::PASS, tile_groups::PASS, localise::PASS, sibling_fusion::PASS, memory_plan::PASS];

/// The passes lowering runs: all of them when it fuses, else only the memory plan, which
/// every backend needs; without `tiles` (a GPU program) no tile groups.
pub fn pipeline(fuse: bool, tiles: bool) -> Vec<&'static Pass> {
    PASSES
        .iter()
        .filter(|p| fuse || p.name == memory_plan::PASS.name)
        .filter(|p| tiles || p.name != tile_groups::PASS.name)
        .collect()
}

/// The pass named `name`.
pub fn pass(name: &str) -> Option<&'static Pass> {
    PASSES.iter().find(|p| p.name == name)
}

/// How the driver runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Verify the input and the program after every pass (always on in debug builds;
    /// tests turn it on in release builds too).
    pub verify_each: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { verify_each: cfg!(debug_assertions) }
    }
}

/// A pass run that went wrong. Every variant is a bug in Tessera, never a user error
/// (lowering reports it as `LowerError::Internal`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PassError {
    /// The program did not verify after `pass` (or, for `pass == "input"`, before the
    /// first pass).
    #[error("the loop program does not verify after pass `{pass}`: {error}\n{program}")]
    Broken { pass: String, error: String, program: String },
    /// A pass was run on a program at the wrong stage (a wrong pass order).
    #[error("loop pass `{pass}` needs a program at stage {need:?}, but it is at {at:?}")]
    Order { pass: String, need: Stage, at: Stage },
}

/// Runs `passes` in order on `p`, which is at stage `at`; returns the stage after them.
pub fn run_passes(p: &mut Program, passes: &[&Pass], at: Stage, opts: &RunOptions) -> Result<Stage, PassError> {
    let check = |p: &Program, stage: Stage, pass: &str| {
        verify_at(p, stage).map_err(|error| PassError::Broken { pass: pass.to_string(), error, program: p.to_string() })
    };
    if opts.verify_each {
        check(p, at, "input")?;
    }
    let mut stage = at;
    for pass in passes {
        if pass.from != stage {
            return Err(PassError::Order { pass: pass.name.to_string(), need: pass.from, at: stage });
        }
        (pass.run)(p);
        stage = pass.to;
        if opts.verify_each {
            check(p, stage, pass.name)?;
        }
    }
    Ok(stage)
}
