//! Distribution over MPI (feature `mpi`): [`World`] initialises MPI for the process and
//! gives the [`Ranks`] of `MPI_COMM_WORLD` for [`crate::CallOptions::distributed`].
//!
//! Every rank makes the same calls with the same inputs. Each rank runs its share of
//! the chunks of a sliced call's outermost loops; results are combined with
//! `MPI_Allreduce` (sums, or max/min for `max=`/`min=`), so every rank ends with the
//! outputs. Before any rank waits for another's data, all ranks agree on whether one
//! failed (an `MPI_Allreduce` of the first failing rank, then a broadcast of its
//! message), so a failure on one rank fails the call on all of them, and none hangs.

use crate::{Error, Ranks};
use mpi::collective::SystemOperation;
use mpi::traits::*;
use std::sync::{Arc, Mutex};
use tessera_compiler::exec::Distribution;
use tessera_compiler::tir::ReduceOp;

/// MPI for this process, initialised when made and finalised when dropped. A process
/// started outside `mpirun` is a world of one rank. Use its [`Ranks`] only while it
/// lives.
pub struct World {
    ranks: Ranks,
    // Dropped last: finalises MPI.
    _universe: mpi::environment::Universe,
}

impl World {
    /// Initialises MPI; fails when this process already did.
    pub fn init() -> Result<World, Error> {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| Error::Distributed("MPI is already initialised in this process".into()))?;
        let world = universe.world();
        let (rank, size) = (world.rank().max(0) as usize, world.size().max(1) as usize);
        let comm = Comm { world: Mutex::new(world), rank, size };
        Ok(World { ranks: Ranks(Arc::new(comm)), _universe: universe })
    }

    /// The ranks of `MPI_COMM_WORLD`.
    pub fn ranks(&self) -> Ranks {
        self.ranks.clone()
    }

    /// Ends every rank's process at once (`MPI_Abort`), e.g. after a panic, when the
    /// others may be waiting in a collective that this rank will never join.
    pub fn abort(&self, code: i32) -> ! {
        mpi::topology::SimpleCommunicator::world().abort(code)
    }
}

/// `MPI_COMM_WORLD` behind a lock: MPI is initialised `Serialized`, so calls from any
/// thread are allowed one at a time.
struct Comm {
    world: Mutex<mpi::topology::SimpleCommunicator>,
    rank: usize,
    size: usize,
}

// SAFETY: the communicator is a process-wide handle, and every MPI call goes through the
// mutex, which gives the serialised access `Threading::Serialized` requires.
unsafe impl Send for Comm {}
// SAFETY: as above.
unsafe impl Sync for Comm {}

/// MPI counts are `int`s: large arrays go in pieces.
const PIECE: usize = 1 << 28;

fn operation(op: ReduceOp) -> SystemOperation {
    match op {
        ReduceOp::Sum => SystemOperation::sum(),
        ReduceOp::Max => SystemOperation::max(),
        ReduceOp::Min => SystemOperation::min(),
    }
}

impl Comm {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, mpi::topology::SimpleCommunicator>, String> {
        self.world.lock().map_err(|_| "the MPI communicator was poisoned by a panic".to_string())
    }

    fn allreduce<T: Equivalence + Copy>(&self, data: &mut [T], op: ReduceOp) -> Result<(), String> {
        let w = self.lock()?;
        for piece in data.chunks_mut(PIECE) {
            let send = piece.to_vec();
            w.all_reduce_into(&send[..], piece, operation(op));
        }
        Ok(())
    }

    fn broadcast<T: Equivalence>(&self, data: &mut [T], root: usize) -> Result<(), String> {
        let w = self.lock()?;
        let root = w.process_at_rank(root as i32);
        for piece in data.chunks_mut(PIECE) {
            root.broadcast_into(piece);
        }
        Ok(())
    }
}

impl Distribution for Comm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn ranks(&self) -> usize {
        self.size
    }

    fn agree(&self, failure: Option<String>) -> Result<(), String> {
        let w = self.lock()?;
        let mine = if failure.is_some() { self.rank as i32 } else { self.size as i32 };
        let mut first = 0i32;
        w.all_reduce_into(&mine, &mut first, SystemOperation::min());
        let first = first.max(0) as usize;
        if first >= self.size {
            return Ok(());
        }
        let root = w.process_at_rank(first as i32);
        let mut bytes = failure.unwrap_or_default().into_bytes();
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        root.broadcast_into(&mut bytes[..]);
        let message = String::from_utf8_lossy(&bytes).into_owned();
        if first == self.rank {
            Err(message)
        } else {
            Err(format!("rank {first} of {} failed: {message}", self.size))
        }
    }

    fn allreduce_f64(&self, data: &mut [f64], op: ReduceOp) -> Result<(), String> {
        self.allreduce(data, op)
    }

    fn allreduce_f32(&self, data: &mut [f32], op: ReduceOp) -> Result<(), String> {
        self.allreduce(data, op)
    }

    fn broadcast_f64(&self, data: &mut [f64], root: usize) -> Result<(), String> {
        self.broadcast(data, root)
    }

    fn broadcast_f32(&self, data: &mut [f32], root: usize) -> Result<(), String> {
        self.broadcast(data, root)
    }
}
