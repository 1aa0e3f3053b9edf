//! `--distributed`: runs a subcommand on every MPI rank (feature `mpi`).
//!
//! Every rank parses the same command line and reads the inputs itself (no broadcast:
//! with a shared filesystem that costs each node one read, and no rank holds data it
//! does not need); a hash of the inputs is compared with rank 0's so that ranks never
//! combine results of different data. Failures before the call reach the other ranks
//! through one agreement (see `tessera::Ranks`); rank 0 writes the outputs.

use super::CliError;
use tessera::{Ranks, Tensor};

/// Runs `f` with the MPI ranks when `distributed`, else as one process.
pub(super) fn maybe(
    distributed: bool,
    subcommand: &str,
    f: impl FnOnce(Option<&Ranks>) -> Result<(), CliError>,
) -> Result<(), CliError> {
    if !distributed {
        return f(None);
    }
    run(subcommand, f)
}

#[cfg(feature = "mpi")]
fn run(_: &str, f: impl FnOnce(Option<&Ranks>) -> Result<(), CliError>) -> Result<(), CliError> {
    let world = tessera::mpi::World::init()?;
    let ranks = world.ranks();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(Some(&ranks)))) {
        Ok(r) => r,
        // The panic hook has reported it; the other ranks may be waiting for this one
        // in a collective, so end them all.
        Err(_) => world.abort(i32::from(super::EXIT_INTERNAL)),
    }
}

#[cfg(not(feature = "mpi"))]
fn run(subcommand: &str, _: impl FnOnce(Option<&Ranks>) -> Result<(), CliError>) -> Result<(), CliError> {
    Err(CliError::usage(subcommand, "--distributed needs a build with MPI: `cargo build --release --features mpi` (OpenMPI)"))
}

/// Passes `r` on; on a distributed run, an error first goes to the other ranks.
pub(super) fn local<R>(ranks: Option<&Ranks>, r: Result<R, CliError>) -> Result<R, CliError> {
    if let (Some(ranks), Err(e)) = (ranks, &r) {
        ranks.fail(&e.message());
    }
    r
}

/// After every rank prepared its inputs: fails unless all did, and all read the same.
pub(super) fn inputs_ready(ranks: Option<&Ranks>, inputs: &[Tensor]) -> Result<(), CliError> {
    let Some(ranks) = ranks else { return Ok(()) };
    ranks.agreed(Ok(()))?;
    ranks.same_everywhere("inputs", hash(inputs))?;
    Ok(())
}

/// Whether this process writes the outputs: rank 0, or the only process.
pub(super) fn writes(ranks: Option<&Ranks>) -> bool {
    ranks.is_none_or(|r| r.rank() == 0)
}

/// FNV-1a over the dtypes, shapes and values.
fn hash(inputs: &[Tensor]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for t in inputs {
        eat(t.dtype().name().as_bytes());
        for &d in t.shape() {
            eat(&(d as u64).to_le_bytes());
        }
        match t {
            Tensor::F32(a) => a.iter().for_each(|v| eat(&v.to_bits().to_le_bytes())),
            Tensor::F64(a) => a.iter().for_each(|v| eat(&v.to_bits().to_le_bytes())),
        }
    }
    h
}
