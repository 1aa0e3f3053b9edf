//! `tessera einsum`: evaluate a numpy einsum expression on `.npy` operands.

use super::{print_text, read_npy, tensor_type, write_npy, CliError, EinsumArgs};
use super::distributed::{inputs_ready, local, writes};
use tessera::{CallOptions, DType, Ranks};

pub(super) fn einsum(args: &EinsumArgs) -> Result<(), CliError> {
    super::distributed::maybe(args.distributed, "einsum", |ranks| einsum_on(args, ranks))
}

/// As `run`: failures before the call reach the other ranks; rank 0 writes.
fn einsum_on(args: &EinsumArgs, ranks: Option<&Ranks>) -> Result<(), CliError> {
    let dtype = args.dtype.map(DType::from);
    let mut operands = Vec::with_capacity(args.operands.len());
    for (i, path) in args.operands.iter().enumerate() {
        let t = local(ranks, read_npy(path, &format!("operand {}", i + 1)))?;
        operands.push(match dtype {
            Some(d) => t.cast(d),
            None => t,
        });
    }
    let opts = CallOptions {
        memory_limit: args.memory_limit,
        backend: args.backend,
        dtype,
        distributed: ranks.cloned(),
        mul: args.mul,
        ..CallOptions::default()
    };
    inputs_ready(ranks, &operands)?;
    let result = tessera::einsum_tensors(&args.spec, &operands, &opts)?;
    if !writes(ranks) {
        return Ok(());
    }
    match &args.output {
        Some(path) => write_npy(path, "the result", &result),
        None => print_text(&format!("{}\n{}\n", tensor_type(&result), result)),
    }
}
