#!/usr/bin/env python3
"""Tessera (per backend) against numpy, opt_einsum, torch, jax.jit (XLA) and torch.compile, side by side.

Times the same problems in one run: three GEMM rows (the machine's ceiling) and one row per
stdlib workload of /work/shared/WORKLOADS.md. Each baseline transcribes the function's .tsr
source statement by statement, with einsum for the contractions and plain array operations
for the rest; the same transcription runs eagerly (numpy, opt_einsum, torch) and compiled
(jax.jit on XLA CPU, torch.compile with inductor). Rows where torch has a fused kernel
(scaled_dot_product_attention, layer_norm, rms_norm) also time that kernel. Every column is
checked against numpy on every row. Tessera is timed by its own `tessera bench` (seeded
random inputs, compile once, warm up, repeat), once per backend the binary was built with.

Usage:
  python3 bench/compare/compare.py                      # everything; writes bench/compare/RESULTS.md
  python3 bench/compare/compare.py --baselines-only     # numpy / opt_einsum / torch only, printed
  python3 bench/compare/compare.py --check-run          # also check each baseline against `tessera run`
  python3 bench/compare/compare.py --rows attention,lowrank --min-time 0.2
  python3 bench/compare/compare.py --quick              # small sizes, short timings: checks the harness

Runs itself again inside bench/.venv (when it exists) with OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE removed and every BLAS pool held to --threads threads.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VENV = os.path.join(ROOT, "bench", ".venv")
VPY = os.path.join(VENV, "bin", "python")
STDLIB = os.path.join(ROOT, "stdlib")
PROGRAMS = os.path.join(HERE, "programs")

# Set on the re-executed child, so that it does not re-execute again.
CHILD_MARK = "TESSERA_COMPARE_CHILD"
# What the parent removed from the environment, for RESULTS.md.
REMOVED_MARK = "TESSERA_COMPARE_REMOVED"
# Set on some machines for old OpenBLAS builds; they pin a slower kernel on a current numpy.
SCRUBBED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# A speed-up below this marks the row.
SLOW = 0.8
# The Tessera backends that get a column, and the `--backend` values that select each, in
# order of preference (`jit` is the older CLI's name for Cranelift).
TESSERA_BACKENDS = {"cranelift": ("cranelift", "jit"), "llvm": ("llvm",)}


# ---------------------------------------------------------------------------------------
# Environment. Thread counts must be in the environment before numpy is imported, so the
# script re-executes itself with a cleaned environment before importing any library.


def reexec_clean(threads):
    if os.environ.get(CHILD_MARK) == "1":
        return
    env = dict(os.environ)
    removed = [f"{k}={env.pop(k)}" for k in SCRUBBED if k in env]
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        env[var] = str(threads)
    env["XLA_FLAGS"] = xla_flags(env.get("XLA_FLAGS", ""), threads)
    # Four thread pools share one process (OpenBLAS, torch's OpenMP, XLA's, inductor's
    # OpenMP), and Tessera's runs beside it. An idle OpenBLAS or OpenMP worker spins for a
    # while before it sleeps; on 2 CPUs the spinning pool of one library then holds the CPUs
    # that the next library's workers wait for, and calls of 0.5 ms take 12 or 24 ms (whole
    # scheduler ticks). Idle workers that sleep at once keep each column to its own cost.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    env[CHILD_MARK] = "1"
    env[REMOVED_MARK] = ",".join(removed)
    in_venv = os.path.realpath(sys.prefix) == os.path.realpath(VENV)
    python = VPY if os.path.exists(VPY) and not in_venv else sys.executable
    os.execve(python, [python, os.path.abspath(__file__)] + sys.argv[1:], env)


def xla_flags(existing, threads):
    """XLA_FLAGS for the jax column. XLA's CPU client sizes its thread pool from the CPUs
    the process may run on, not from a flag; `intra_op_parallelism_threads` is not an XLA
    flag (with the `--` prefix jaxlib aborts on it; without, it is accepted to no effect we
    could find) and stays only as the conventional spelling. With more CPUs than --threads,
    --pin-cpus is what holds XLA to --threads threads."""
    flags = [f for f in existing.split() if not f.startswith("--xla_cpu_multi_thread_eigen")
             and not f.startswith("intra_op_parallelism_threads")]
    return " ".join(flags + ["--xla_cpu_multi_thread_eigen=true", f"intra_op_parallelism_threads={threads}"])


def import_libraries(threads, want_torch, want_jax):
    """Imports numpy, opt_einsum and (when installed and wanted) torch and jax into globals;
    torch or jax missing is a note in the results, the others missing stop the script."""
    global np, oe, torch, threadpoolctl, jax, jnp
    try:
        import numpy as np
        import opt_einsum as oe
        import threadpoolctl
    except ImportError as e:
        sys.exit(
            f"error: {e}.\nSet up the environment first (see bench/compare/README.md):\n"
            f"  python3 -m venv bench/.venv && bench/.venv/bin/pip install -r bench/compare/requirements.txt"
        )
    torch, note = None, "not wanted (--no-torch)"
    if want_torch:
        try:
            import torch

            torch.set_num_threads(threads)
            torch.einsum("ij,jk->ik", torch.ones(2, 2), torch.ones(2, 2))
            note = ""
        except Exception as e:  # A broken install raises more than ImportError.
            torch = None
            note = f"unavailable: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
    jax, jnp, jax_note = None, None, "not wanted (--no-jax)"
    if want_jax:
        try:
            import jax
            import jax.numpy as jnp

            # Some rows are f64; explicit f32 inputs stay f32 (Python scalars are weakly typed).
            jax.config.update("jax_enable_x64", True)
            jax.jit(lambda a: a @ a)(jnp.ones((2, 2), jnp.float32)).block_until_ready()
            jax_note = ""
        except Exception as e:
            jax, jnp = None, None
            jax_note = f"unavailable: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return note, jax_note


# ---------------------------------------------------------------------------------------
# The libraries. Each formula below is written once against this small interface, so the
# numpy, opt_einsum, torch, jax.jit and torch.compile columns run the same transcription of
# the .tsr source. `prepare` turns a row and its inputs into a call with no arguments that
# computes the row once (None: the column has nothing for this row).


class NumpyLib:
    name = "numpy"
    # Whether the first call compiles (its time is recorded apart, and never timed).
    compiles = False

    def prepare(self, row, dims, data):
        args = {k: self.array(v) for k, v in data.items()}
        return lambda: row.formula(self, dims, **args)

    def array(self, a):
        return a

    def to_numpy(self, t):
        return np.asarray(t)

    def einsum(self, spec, *ops):
        return np.einsum(spec, *ops, optimize="optimal")

    def max(self, a, axis):
        return a.max(axis=axis)

    def sum(self, a, axis):
        return a.sum(axis=axis)

    def exp(self, a):
        return np.exp(a)

    def rsqrt(self, a):
        return 1 / np.sqrt(a)

    def sigmoid(self, a):
        return 1 / (1 + np.exp(-a))

    def where(self, mask, a, b):
        return np.where(mask, a, b)

    def concat(self, xs, axis):
        return np.concatenate(xs, axis)


class OptEinsumLib(NumpyLib):
    """opt_einsum on numpy arrays, with its default path choice ('auto'), as people call it."""

    name = "opt_einsum"

    def einsum(self, spec, *ops):
        return oe.contract(spec, *ops)


class TorchLib(NumpyLib):
    """torch on CPU; torch.einsum picks its path with opt_einsum when that is installed."""

    name = "torch"

    def array(self, a):
        return torch.from_numpy(a)

    def to_numpy(self, t):
        return t.numpy()

    def einsum(self, spec, *ops):
        return torch.einsum(spec, *ops)

    def max(self, a, axis):
        return a.amax(dim=axis)

    def sum(self, a, axis):
        return a.sum(dim=axis)

    def exp(self, a):
        return torch.exp(a)

    def rsqrt(self, a):
        return torch.rsqrt(a)

    def sigmoid(self, a):
        return torch.sigmoid(a)

    def where(self, mask, a, b):
        return torch.where(mask, a, b)

    def concat(self, xs, axis):
        return torch.cat(xs, axis)


class JaxLib(NumpyLib):
    """jax.numpy under jax.jit on XLA CPU: the whole formula is one jitted function of the
    row's inputs; the call waits for the result (block_until_ready)."""

    name = "jax.jit"
    compiles = True

    def prepare(self, row, dims, data):
        names = list(data)
        arrays = [jax.device_put(data[k]) for k in names]
        fn = jax.jit(lambda *xs: row.formula(self, dims, **dict(zip(names, xs))))
        return lambda: fn(*arrays).block_until_ready()

    def to_numpy(self, t):
        return np.asarray(t)

    def einsum(self, spec, *ops):
        return jnp.einsum(spec, *ops)

    def max(self, a, axis):
        return jnp.max(a, axis=axis)

    def sum(self, a, axis):
        return jnp.sum(a, axis=axis)

    def exp(self, a):
        return jnp.exp(a)

    def rsqrt(self, a):
        return jax.lax.rsqrt(a)

    def sigmoid(self, a):
        return jax.nn.sigmoid(a)

    def where(self, mask, a, b):
        return jnp.where(mask, a, b)

    def concat(self, xs, axis):
        return jnp.concatenate(xs, axis)


class TorchCompileLib(TorchLib):
    """The torch transcription under torch.compile (inductor, CPU, static shapes). The
    first call compiles; it is recorded apart and not timed."""

    name = "torch.compile"
    compiles = True

    def prepare(self, row, dims, data):
        # A fresh dynamo state per row, so no row meets another's guards or the recompile limit.
        torch._dynamo.reset()
        names = list(data)
        tensors = [self.array(data[k]) for k in names]

        def fn(*xs):
            return row.formula(self, dims, **dict(zip(names, xs)))

        compiled = torch.compile(fn, backend="inductor", dynamic=False)
        return lambda: compiled(*tensors)


class E3nnLib(TorchLib):
    """e3nn's o3.TensorProduct (eager torch, its own generated code) on the e3nn rows, fed
    the same blocks laid out flat as e3nn wants them (the layout is not timed)."""

    name = "e3nn"

    def prepare(self, row, dims, data):
        if row.e3nn is None:
            return None
        from e3nn import o3

        spec = row.e3nn
        tp = o3.TensorProduct(spec["in1"], spec["in2"], spec["out"], spec["instructions"],
                              internal_weights=False, shared_weights=True)
        z = dims.z
        flat = lambda names: torch.cat([self.array(data[n]).reshape(z, -1) for n in names], 1).contiguous()
        x1, x2 = flat(spec["x"]), flat(spec["y"])
        w = torch.cat([self.array(data[n]).reshape(-1) for n in spec["w"]]).contiguous()
        return lambda: tp(x1, x2, w)


class TorchFusedLib(TorchLib):
    """torch's own fused kernel for the row (scaled_dot_product_attention, layer_norm,
    rms_norm), eager; rows without one have no entry."""

    name = "torch fused"

    def prepare(self, row, dims, data):
        if row.fused is None or not row.fused(None, dims):
            return None
        tensors = {k: self.array(v) for k, v in data.items()}
        return lambda: row.fused(self, dims, **tensors)


# ---------------------------------------------------------------------------------------
# The formulas, one per row, each transcribing its .tsr function. `lib` is one of the
# classes above, `dims` holds the dim sizes by name, and the tensors come by their .tsr
# names (plus any constant helpers a row's `helpers` builds once, outside the timing).


def matmul(lib, dims, A, B):
    return lib.einsum("il,lj->ij", A, B)


def bmm(lib, dims, A, B):
    return lib.einsum("pil,plj->pij", A, B)


def attention_softmax(lib, dims, Q, K, V):
    S = lib.einsum("ia,ja->ij", Q, K) / math.sqrt(dims.d)
    M = lib.max(S, 1)
    P = lib.exp(S - M[:, None])
    Z = lib.sum(P, 1)
    return lib.einsum("ij,jc->ic", P, V) / Z[:, None]


def attention_causal(lib, dims, Q, K, V, mask):
    S = lib.where(mask, lib.einsum("ia,ja->ij", Q, K) / math.sqrt(dims.d), -math.inf)
    M = lib.max(S, 1)
    P = lib.exp(S - M[:, None])
    Z = lib.sum(P, 1)
    return lib.einsum("ij,jc->ic", P, V) / Z[:, None]


def causal_mask(dims):
    # A practitioner builds the j <= i mask once and reuses it, so it is not timed.
    return {"mask": np.tril(np.ones((dims.n, dims.n), dtype=bool))}


def tensor_attention_exact(lib, dims, Q, K1, K2, V1, V2):
    S = lib.einsum("ia,ja,la->ijl", Q, K1, K2) / math.sqrt(dims.d)
    M = lib.max(S, (1, 2))
    P = lib.exp(S - M[:, None, None])
    Z = lib.sum(P, (1, 2))
    return lib.einsum("ijl,jb,lb->ib", P, V1, V2) / Z[:, None]


def tensor_attention_poly(lib, dims, Q, K1, K2, V1, V2):
    S = lib.einsum("ia,ja,la->ijl", Q, K1, K2)
    P = (1 + S) * (1 + S)
    Z = lib.sum(P, (1, 2))
    return lib.einsum("ijl,jb,lb->ib", P, V1, V2) / Z[:, None]


def tucker_reconstruct(lib, dims, G, U1, U2, U3):
    return lib.einsum("pqr,xp,yq,zr->xyz", G, U1, U2, U3)


def tucker_project(lib, dims, Y, U1, U2, U3):
    return lib.einsum("xyz,xp,yq,zr->pqr", Y, U1, U2, U3)


def cp_reconstruct(lib, dims, A, B, C):
    return lib.einsum("xs,ys,zs->xyz", A, B, C)


def cp_mttkrp(lib, dims, X, B, C):
    return lib.einsum("xyz,ys,zs->xs", X, B, C)


def cg_product(lib, dims, W, C, x, y):
    return lib.einsum("pqc,stm,bps,bqt->bcm", W, C, x, y)


def grid_product(lib, dims, Yi, Y, x, y):
    return lib.einsum("mp,pa,a,pb,b->m", Yi, Y, x, Y, y)


def cp_product(lib, dims, A, B, D, x, y):
    # Two statements in the .tsr, so two einsums: the full C first, as written.
    C = lib.einsum("is,js,ks->ijk", A, B, D)
    return lib.einsum("ijk,i,j->k", C, x, y)


def einsum_row(spec, *operands):
    """A formula that is one einsum; `operands` names the input of each term."""

    def formula(lib, dims, **tensors):
        return lib.einsum(spec, *(tensors[name] for name in operands))

    return formula


def lora(lib, dims, X, W, B, A, alpha):
    return lib.einsum("ij,jk->ik", X, W) + alpha / dims.r * lib.einsum("ip,ps,sk->ik", X, B, A)


def eggroll(lib, dims, x, W, A, B, sigma):
    return lib.einsum("pqj,jk->pqk", x, W) + sigma * lib.einsum("pqt,pts,pks->pqk", x, A, B)


def eggroll_update(lib, dims, f, A, B):
    return lib.einsum("p,pjs,pks->jk", f, A, B)


def galore(lib, dims, P, G):
    return lib.einsum("is,ik->sk", P, G)


def galore_residual(lib, dims, P, G):
    return G - lib.einsum("is,js,jk->ik", P, P, G)


def adalora(lib, dims, x, P, lam, Q):
    return lib.einsum("ij,js,s,sk->ik", x, P, lam, Q)


def kron_matvec(lib, dims, A, B, x):
    # The .tsr writes the Kronecker matrix K out, so the transcription builds it too.
    K = lib.einsum("ij,kl->ikjl", A, B).reshape(dims.m1 * dims.m2, dims.n1 * dims.n2)
    return lib.einsum("pq,q->p", K, x)


def kfac_precondition(lib, dims, Ainv, Ginv, grad):
    return lib.einsum("ik,kl,lj->ij", Ginv, grad, Ainv)


def sherman_morrison(lib, dims, Ai, v):
    return Ai - lib.einsum("ik,k,l,lj->ij", Ai, v, v, Ai) / (1 + lib.einsum("a,ab,b->", v, Ai, v))


def plucker(lib, dims, U, V):
    return lib.einsum("si,sj->sij", U, V) - lib.einsum("sj,si->sij", U, V)


def layernorm(lib, dims, x, gamma, beta):
    mu = lib.sum(x, 1) / dims.d
    xc = x - mu[:, None]
    var = lib.einsum("ij,ij->i", xc, xc) / dims.d
    return xc * lib.rsqrt(var + 1e-5)[:, None] * gamma + beta


def rmsnorm(lib, dims, x, gamma):
    ms = lib.einsum("ij,ij->i", x, x) / dims.d
    return x * lib.rsqrt(ms + 1e-6)[:, None] * gamma


def evonorm_s0(lib, dims, x, v, gamma, beta):
    # Channels are grouped row-major, so x[i, t, (p, q)] is a reshape to [b, s, g, c].
    b, s, g, c = dims.b, dims.s, dims.g, dims.c
    xg = x.reshape(b, s, g, c)
    mu = lib.sum(xg, (1, 3)) / (s * c)
    xc = xg - mu[:, None, :, None]
    var = lib.einsum("itpq,itpq->ip", xc, xc) / (s * c)
    y = xg * lib.sigmoid(v * xg) * lib.rsqrt(var + 1e-5)[:, None, :, None] * gamma + beta
    return y.reshape(b, s, g * c)


def masked_residual(lib, dims, Omega, M, U, V):
    return Omega * (M - lib.einsum("is,js->ij", U, V))


def sampled_residual(lib, dims, M, U, V, I, J):
    # Fancy indexing gathers the rows (numpy take, torch index_select, an XLA gather
    # under jax.jit), then one dot product per observed entry.
    return M - lib.einsum("es,es->e", U[I], V[J])


def observed_entries(dims, rng):
    """The (row, column) coordinates of the observed entries, uniform with repeats; built
    once, untimed (`tessera bench` draws its own, seeded, in the same ranges)."""
    return {"I": rng.integers(0, dims.n, dims.e, dtype=np.int64),
            "J": rng.integers(0, dims.m, dims.e, dtype=np.int64)}


# torch's fused kernels for the rows that have one. Called with lib=None first: the answer
# says whether this torch has the kernel (rms_norm is newer than the others).


def fused_sdpa(causal):
    def fused(lib, dims, Q=None, K=None, V=None, mask=None):
        if lib is None:
            return hasattr(torch.nn.functional, "scaled_dot_product_attention")
        # The default scale is 1/sqrt(d), as the .tsr writes; is_causal is the j <= i mask.
        out = torch.nn.functional.scaled_dot_product_attention(Q[None], K[None], V[None], is_causal=causal)
        return out[0]

    return fused


def fused_layernorm(lib, dims, x=None, gamma=None, beta=None):
    if lib is None:
        return True
    return torch.nn.functional.layer_norm(x, (dims.d,), gamma, beta, eps=1e-5)


def fused_rmsnorm(lib, dims, x=None, gamma=None):
    if lib is None:
        return hasattr(torch.nn.functional, "rms_norm")
    return torch.nn.functional.rms_norm(x, (dims.d,), gamma, eps=1e-6)


# ---------------------------------------------------------------------------------------
# The rows. `file` is relative to the repository root; input shapes and dtypes are read
# from the function's signature in that file, so the inputs always match Tessera's.


@dataclass
class Row:
    name: str
    file: str
    fn: str
    dims: dict
    formula: Callable
    gemm: bool = False
    helpers: Callable | None = None
    note: str = ""
    # torch's fused kernel for this formula, if it has one.
    fused: Callable | None = None
    # Which of the speed targets apply: "norm", "elementwise", "exp" (exp-bound).
    tags: tuple = ()
    # `tessera bench --mul` for the L-Mul rows (issue 14): Tessera runs the row in this
    # mode and exactly; the peers run the exact formula.
    mul: str = ""
    # The e3nn rows (issue 14): the product's irreps, mode, paths and coefficients, from
    # tessera.TensorProduct; e3nn's o3.TensorProduct gets a column on these rows.
    e3nn: dict | None = None
    # Integer index inputs (i32/i64 in the signature): (dims, rng) -> {name: array}, drawn
    # once with the other inputs.
    indices: Callable | None = None
    # Filled from the .tsr signature.
    inputs: dict = field(default_factory=dict)
    dtype: str = ""


def std(module):
    return os.path.relpath(os.path.join(STDLIB, module + ".tsr"), ROOT)


def prog(name):
    return os.path.relpath(os.path.join(PROGRAMS, name + ".tsr"), ROOT)


ROWS = [
    Row("gemm square", prog("matmul"), "matmul", dict(m=1024, k=1024, n=1024), matmul, gemm=True),
    Row("gemm skinny", prog("matmul"), "matmul", dict(m=4096, k=64, n=4096), matmul, gemm=True),
    Row("gemm batched", prog("bmm"), "bmm", dict(b=64, m=128, k=128, n=128), bmm, gemm=True),
    Row("attention::softmax", std("attention"), "softmax", dict(n=2048, m=2048, d=64, e=64), attention_softmax,
        fused=fused_sdpa(False), tags=("exp",)),
    Row("attention::causal", std("attention"), "causal", dict(n=2048, d=64, e=64), attention_causal,
        helpers=causal_mask, note="mask built once, untimed; fused: is_causal", fused=fused_sdpa(True),
        tags=("exp",)),
    # Issue 11's sizes: longer sequences, a wider head, and causal at each length (the
    # causal/softmax ratio at one size is the work its mask skips).
    Row("attention::softmax n=4096", std("attention"), "softmax", dict(n=4096, m=4096, d=64, e=64),
        attention_softmax, fused=fused_sdpa(False), tags=("exp",)),
    Row("attention::softmax n=8192", std("attention"), "softmax", dict(n=8192, m=8192, d=64, e=64),
        attention_softmax, fused=fused_sdpa(False), tags=("exp",)),
    Row("attention::softmax d=128", std("attention"), "softmax", dict(n=4096, m=4096, d=128, e=128),
        attention_softmax, fused=fused_sdpa(False), tags=("exp",)),
    Row("attention::causal n=4096", std("attention"), "causal", dict(n=4096, d=64, e=64), attention_causal,
        helpers=causal_mask, note="mask built once, untimed; fused: is_causal", fused=fused_sdpa(True),
        tags=("exp",)),
    Row("attention::causal n=8192", std("attention"), "causal", dict(n=8192, d=64, e=64), attention_causal,
        helpers=causal_mask, note="mask built once, untimed; fused: is_causal", fused=fused_sdpa(True),
        tags=("exp",)),
    Row("tensor_attention::exact n=128", std("tensor_attention"), "exact",
        dict(n=128, m1=128, m2=128, d=64, e=64), tensor_attention_exact, tags=("exp",)),
    Row("tensor_attention::exact", std("tensor_attention"), "exact",
        dict(n=256, m1=256, m2=256, d=64, e=64), tensor_attention_exact, tags=("exp",)),
    Row("tensor_attention::exact n=512", std("tensor_attention"), "exact",
        dict(n=512, m1=512, m2=512, d=64, e=64), tensor_attention_exact, tags=("exp",)),
    Row("tensor_attention::poly", std("tensor_attention"), "poly",
        dict(n=256, m1=256, m2=256, d=64, e=64), tensor_attention_poly),
    Row("tucker::reconstruct", std("tucker"), "reconstruct",
        dict(a=32, b=32, c=32, i=256, j=256, k=256), tucker_reconstruct),
    Row("tucker::project", std("tucker"), "project",
        dict(a=32, b=32, c=32, i=256, j=256, k=256), tucker_project),
    Row("cp::reconstruct", std("cp"), "reconstruct", dict(i=256, j=256, k=256, r=32), cp_reconstruct),
    Row("cp::mttkrp", std("cp"), "mttkrp", dict(i=256, j=256, k=256, r=32), cp_mttkrp),
    Row("equivariant::cg_product", std("equivariant"), "cg_product",
        dict(u=16, v=16, w=16, i=3, j=3, k=5, z=1024), cg_product,
        note="C dense random (Tessera's bench and the baselines alike), not cg(1, 1, 2); "
             "np.einsum caps intermediates at the largest input, so it runs the 4-way loop"),
    Row("equivariant::grid_product", std("equivariant"), "grid_product",
        dict(k=2048, g=8192, i=2048), grid_product),
    Row("equivariant::cp_product", std("equivariant"), "cp_product",
        dict(l1=128, l2=128, l3=128, r=64), cp_product),
    Row("graph_poly::triangles", std("graph_poly"), "triangles", dict(n=1024), einsum_row("ij,jk,ki->", "A", "A", "A")),
    Row("graph_poly::four_cycle", std("graph_poly"), "four_cycle", dict(n=1024), einsum_row("ij,jk,kl,li->", "A", "A", "A", "A")),
    Row("graph_poly::tailed_triangles", std("graph_poly"), "tailed_triangles", dict(n=1024),
        einsum_row("ij,jk,ki,il->", "A", "A", "A", "A")),
    Row("graph_poly::node_triangles", std("graph_poly"), "node_triangles", dict(n=1024),
        einsum_row("ij,jk,ki->i", "A", "A", "A")),
    Row("graph_poly::edge_triangles", std("graph_poly"), "edge_triangles", dict(n=1024),
        einsum_row("ik,kj,ij->ij", "A", "A", "A")),
    Row("graph_poly::four_path", std("graph_poly"), "four_path", dict(n=1024), einsum_row("ik,kl,lj,ij->ij", "A", "A", "A", "A")),
    Row("lowrank::lora", std("lowrank"), "lora", dict(n=2048, d=1024, o=1024, r=16), lora),
    # L-Mul (issue 14): every product an L-Mul, run as loop kernels; see docs/lmul.md.
    Row("lmul matmul", prog("matmul"), "matmul", dict(m=512, k=512, n=512), matmul, mul="lmul"),
    Row("lmul attention::softmax", std("attention"), "softmax", dict(n=1024, m=1024, d=64, e=64),
        attention_softmax, mul="lmul"),
    Row("lmul lowrank::lora", std("lowrank"), "lora", dict(n=1024, d=512, o=512, r=16), lora, mul="lmul3"),
    Row("lowrank::eggroll", std("lowrank"), "eggroll", dict(m=64, b=32, i=512, o=512, r=8), eggroll),
    Row("lowrank::eggroll_update", std("lowrank"), "eggroll_update", dict(m=64, i=1024, o=1024, r=8),
        eggroll_update),
    Row("lowrank::galore", std("lowrank"), "galore", dict(n=2048, m=2048, r=32), galore),
    Row("lowrank::galore_residual", std("lowrank"), "galore_residual", dict(n=2048, m=2048, r=32),
        galore_residual),
    Row("lowrank::adalora", std("lowrank"), "adalora", dict(b=8192, d=1024, r=16, o=1024), adalora),
    Row("kron::matvec", std("kron"), "matvec", dict(m1=64, n1=64, m2=64, n2=64), kron_matvec,
        note="baselines build K = A⊗B as the .tsr writes it"),
    Row("kron::kfac_precondition", std("kron"), "kfac_precondition", dict(a=1024, g=512), kfac_precondition),
    Row("kron::sherman_morrison", std("kron"), "sherman_morrison", dict(n=2048), sherman_morrison),
    Row("grassmann::plucker", std("grassmann"), "plucker", dict(t=4096, n=64), plucker, tags=("elementwise",)),
    Row("norm::layernorm", std("norm"), "layernorm", dict(b=8192, d=1024), layernorm, fused=fused_layernorm,
        tags=("norm",)),
    Row("norm::rmsnorm", std("norm"), "rmsnorm", dict(b=8192, d=1024), rmsnorm, fused=fused_rmsnorm,
        tags=("norm",)),
    Row("norm::evonorm_s0", std("norm"), "evonorm_s0", dict(b=32, s=1024, g=8, c=32), evonorm_s0,
        tags=("norm", "exp")),
    Row("completion::masked_residual", std("completion"), "masked_residual", dict(n=2048, m=2048, r=32),
        masked_residual, tags=("elementwise",)),
    # The same residual at 1% of the entries, given as (row, column) index arrays.
    Row("completion::sampled_residual (1% density)", std("completion"), "sampled_residual",
        dict(n=2048, m=2048, r=32, e=2048 * 2048 // 100), sampled_residual, indices=observed_entries,
        note="I, J uniform in range, e = n·m/100"),
]


# The e3nn rows (issue 14): e3nn-style tensor products of irreps features over every
# allowed path, the program generated by tessera.TensorProduct into programs/e3nn_*.tsr.
# The formula sums the paths with one einsum each, as e3nn's own code does.

def e3nn_formula(spec):
    def formula(lib, dims, **t):
        outs = []
        for o, (mul, l3, _) in enumerate(spec["out_blocks"]):
            acc = None
            for k, (i1, i2, io, _, coef) in enumerate(spec["paths"]):
                if io != o:
                    continue
                l1, l2 = spec["in1_blocks"][i1][1], spec["in2_blocks"][i2][1]
                C = lib.array(spec["cg"][(l1, l2, l3)])
                sub = "uvw,ijk,zui,zvj->zwk" if spec["mode"] == "uvw" else "uv,ijk,zui,zvj->zuk"
                r = lib.einsum(sub, t[f"w{k}"], C, t[f"x{i1}"], t[f"y{i2}"]) * coef
                acc = r if acc is None else acc + r
            outs.append(acc.reshape(dims.z, -1))
        return lib.concat(outs, 1)

    return formula


def e3nn_row(name, in1, in2, out, mode, z):
    """A row whose program and paths `prepare_e3nn` fills in (after the re-exec: the
    tessera package imports numpy, which must see the thread settings)."""
    spec = dict(in1=in1, in2=in2, out=out, mode=mode)
    file = prog("e3nn_" + re.sub(r"[^a-z0-9]+", "_", name[5:].lower()).strip("_"))
    return Row(name, file, "tensor_product", dict(z=z), e3nn_formula(spec), note=f"{in1} ⊗ {in2} → {out}", e3nn=spec)


ROWS += [
    e3nn_row("e3nn uvu L=2 c=32", "32x0e+32x1o+32x2e", "1x0e+1x1o+1x2e", "32x0e+32x1o+32x2e", "uvu", 10000),
    e3nn_row("e3nn uvu L=3 c=64", "64x0e+64x1o+64x2e+64x3o", "1x0e+1x1o+1x2e+1x3o", "64x0e+64x1o+64x2e+64x3o", "uvu", 1000),
    e3nn_row("e3nn uvw L=2 c=16", "16x0e+16x1o+16x2e", "1x0e+1x1o+1x2e", "16x0e+16x1o+16x2e", "uvw", 10000),
    e3nn_row("e3nn uvw L=3 c=32", "32x0e+32x1o+32x2e+32x3o", "1x0e+1x1o+1x2e+1x3o", "32x0e+32x1o+32x2e+32x3o", "uvw", 1000),
]


def prepare_e3nn(rows):
    """Generates each e3nn row's program with tessera.TensorProduct (bench/.venv has the
    wheel) and fills in its paths; without the package the rows are dropped."""
    todo = [r for r in rows if r.e3nn is not None]
    if not todo:
        return rows
    try:
        import tessera
    except ImportError as e:
        print(f"note: e3nn rows skipped (the tessera Python package: pip install ./python): {e}", file=sys.stderr)
        return [r for r in rows if r.e3nn is None]
    for r in todo:
        spec = r.e3nn
        tp = tessera.TensorProduct(spec["in1"], spec["in2"], spec["out"], spec["mode"], dtype="float32")
        with open(os.path.join(ROOT, r.file), "w", encoding="utf-8") as f:
            f.write(tp.source)
        blocks = tp._blocks
        spec.update(instructions=tp.instructions, in1_blocks=blocks[0], in2_blocks=blocks[1], out_blocks=blocks[2],
                    paths=[(a, b, o, None, c) for (a, b, o, _, _, _), c in zip(tp.instructions, tp.coefficients)],
                    x=[f"x{k}" for k in range(len(blocks[0]))], y=[f"y{k}" for k in range(len(blocks[1]))],
                    w=[f"w{k}" for k in range(len(tp.instructions))], cg={})
        for (i1, i2, o, _, _, _) in tp.instructions:
            key = (blocks[0][i1][1], blocks[1][i2][1], blocks[2][o][1])
            spec["cg"][key] = tessera.clebsch_gordan(*key).astype(np.float32)
        r.note += f", {len(tp.instructions)} paths"
    return rows


# ---------------------------------------------------------------------------------------
# Reading signatures from .tsr files.


def split_top(text, sep=","):
    """Splits on `sep` outside brackets and parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts]


def read_signature(path, fn):
    """Returns ({input: (dtype, [dim expressions])}, output dtype) of `fn NAME(...)` in path."""
    with open(path, encoding="utf-8") as f:
        src = f.read()
    m = re.search(r"\bfn\s+" + re.escape(fn) + r"\s*\(", src)
    if not m:
        raise ValueError(f"no `fn {fn}` in {path}")
    depth, i = 1, m.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(src[i], 0)
        i += 1
    params = src[m.end() : i - 1]
    out = re.match(r"\s*->\s*\w+\s*:\s*(f32|f64)", src[i:])
    inputs = {}
    for p in split_top(params):
        pm = re.fullmatch(r"(\w+)\s*:\s*(f32|f64|i32|i64)\s*(?:\[(.*)\])?", p, re.S)
        if not pm:
            raise ValueError(f"cannot read parameter `{p}` of {fn} in {path}")
        name, dtype, shape = pm.groups()
        inputs[name] = (dtype, split_top(shape) if shape else [])
    return inputs, out.group(1) if out else None


def dim_value(expr, dims):
    """A shape entry such as `n`, `n1 * n2` or `32`."""
    return math.prod(int(t) if t.strip().isdigit() else dims[t.strip()] for t in expr.split("*"))


def make_inputs(row, dims, seed=0):
    """Uniform in [-1, 1), like `tessera bench`; the values themselves differ from Tessera's."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (dtype, shape) in row.inputs.items():
        if dtype in ("i32", "i64"):
            continue
        shp = tuple(dim_value(e, dims) for e in shape)
        a = rng.random(shp, dtype=np.float32 if dtype == "f32" else np.float64) * 2 - 1
        out[name] = np.asarray(a)
    if row.indices:
        out.update(row.indices(SimpleNamespace(**dims), rng))
    return out


# ---------------------------------------------------------------------------------------
# Timing.


def measure(call, min_time, min_runs=5, max_runs=100_000):
    """Median and min milliseconds of `call` after one warm-up call, over at least
    min_runs runs and at least min_time seconds. A call that takes over a second gets
    only two timed runs, so that one pathological baseline cannot take minutes."""
    t0 = time.perf_counter()
    call()
    if time.perf_counter() - t0 > 1.0:
        min_runs = 2
    times = []
    while len(times) < max_runs and (len(times) < min_runs or sum(times) < min_time):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "runs": len(times)}


def numpy_peak_bytes(call):
    """Peak bytes numpy allocates during one call (numpy reports to tracemalloc)."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def rel_err(a, ref):
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if a.shape != ref.shape:
        return math.inf
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return float(np.max(np.abs(a - ref))) / max(scale, 1e-300) if ref.size else 0.0


def error_text(e):
    """One line for a table cell: inductor's errors run to pages, the first lines say what failed."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    return f"{type(e).__name__}: {' / '.join(lines[:2])}"[:240]


def tolerance(dtype):
    return 2e-3 if dtype == "f32" else 1e-9


def run_baselines(row, libs, min_time):
    dims = SimpleNamespace(**row.dims)
    data = make_inputs(row, row.dims)
    if row.helpers:
        data.update(row.helpers(dims))
    result = {"libs": {}, "errors": {}}
    ref = None
    for lib in libs:
        try:
            call = lib.prepare(row, dims, data)
            if call is None:
                continue
            t0 = time.perf_counter()
            out = lib.to_numpy(call())
            first_ms = (time.perf_counter() - t0) * 1e3
            if ref is None:
                ref = out
            else:
                result["errors"][lib.name] = rel_err(out, ref)
            result["libs"][lib.name] = measure(call, min_time)
            if lib.compiles:
                result["libs"][lib.name]["first_call_ms"] = first_ms
        except Exception as e:
            result["libs"][lib.name] = {"error": error_text(e)}
    if row.gemm:
        # The machine's ceiling: numpy's BLAS through matmul, no einsum in between.
        A, B = data["A"], data["B"]
        result["libs"]["numpy @"] = measure(lambda: A @ B, min_time)
    try:
        result["numpy_peak_bytes"] = numpy_peak_bytes(lambda: row.formula(libs[0], dims, **data))
    except Exception:
        result["numpy_peak_bytes"] = None
    tol = tolerance(row.dtype)
    result["agree"] = all(err <= tol for err in result["errors"].values())
    return result


# ---------------------------------------------------------------------------------------
# Tessera.


def check_tessera(path, need_bench):
    """Stops with a clear message unless `path` is a tessera binary (with `bench`, when
    it is needed)."""
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        sys.exit(
            f"error: no Tessera binary at {path}.\n"
            f"Build it with `cargo build --release` in {ROOT}, pass --tessera PATH, "
            f"or time the baselines alone with --baselines-only."
        )
    if not need_bench:
        return
    try:
        p = subprocess.run([path, "bench", "--help"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        sys.exit(f"error: cannot run {path}: {e}")
    if p.returncode != 0:
        said = (p.stderr or p.stdout).strip().splitlines()
        said = said[0] if said else f"exit status {p.returncode}"
        sys.exit(
            f"error: {path} has no working `bench` subcommand ({said}).\n"
            f"Rebuild it from a main that has `tessera bench` (cargo build --release), "
            f"or use --baselines-only."
        )


def dim_args(dims):
    return [a for k, v in dims.items() for a in ("--dim", f"{k}={v}")]


def detect_backends(tessera):
    """For each column of TESSERA_BACKENDS, the `--backend` value this binary accepts, or
    None and why not. Each candidate is tried on a tiny matmul: a binary whose CLI does not
    know the value, or that was built without the backend, answers with a clean error."""
    found = {}
    for column, values in TESSERA_BACKENDS.items():
        found[column] = (None, "not built")
        for value in values:
            cmd = [tessera, "bench", os.path.join(PROGRAMS, "matmul.tsr"), "--fn", "matmul",
                   *dim_args(dict(m=3, k=2, n=4)), "--format", "json", "--min-time", "0", "--backend", value]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
            except (OSError, subprocess.TimeoutExpired) as e:
                found[column] = (None, f"not built ({type(e).__name__})")
                continue
            if p.returncode == 0 and any(l.strip().startswith("{") for l in p.stdout.splitlines()):
                found[column] = (value, "")
                break
            said = [l.strip() for l in (p.stderr + p.stdout).splitlines() if l.strip()]
            found[column] = (None, f"not built (`--backend {value}`: {said[0][:160] if said else p.returncode})")
    return found


def run_tessera_bench(tessera, row, min_time, timeout, backend, mul=None):
    mul = row.mul if mul is None else mul
    cmd = [tessera, "bench", os.path.join(ROOT, row.file), "--fn", row.fn, *dim_args(row.dims),
           "--dtype", row.dtype, "--format", "json", "--min-time", str(min_time), "--backend", backend]
    cmd += ["--mul", mul] if mul else []
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if p.returncode != 0:
        lines = [l for l in (p.stderr + p.stdout).strip().splitlines() if l.strip()]
        return {"error": f"exit {p.returncode}: " + (" / ".join(lines[:3])[:300] if lines else "no message")}
    js = [l for l in p.stdout.splitlines() if l.strip().startswith("{")]
    try:
        out = json.loads(js[-1])
        float(out["median_ms"]), float(out["min_ms"])
    except (IndexError, ValueError, KeyError, TypeError) as e:
        return {"error": f"unreadable JSON from tessera bench ({type(e).__name__}): {p.stdout.strip()[:200]}"}
    return out


def small_dims(dims):
    """Small, mostly distinct sizes for the `tessera run` check (distinct sizes catch
    transposed indices); a dim already small keeps its size."""
    sizes = [5, 7, 6, 4, 3, 8, 9, 2]
    return {k: min(v, sizes[i % len(sizes)]) for i, (k, v) in enumerate(dims.items())}


def check_against_run(tessera, row, lib):
    """Runs `tessera run` (the reference interpreter) on small inputs written as .npy and
    compares with the numpy transcription of the same formula."""
    dims = small_dims(row.dims)
    data = make_inputs(row, dims, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        args = []
        for name, a in data.items():
            path = os.path.join(tmp, name + ".npy")
            np.save(path, a)
            args.append(f"{name}={path}")
        out_path = os.path.join(tmp, "out.npy")
        cmd = [tessera, "run", os.path.join(ROOT, row.file), "--fn", row.fn, *args, "-o", out_path]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
        if p.returncode != 0:
            msg = " / ".join(l for l in p.stderr.strip().splitlines()[:2])
            return f"error: {msg[:200]}"
        got = np.load(out_path)
    ns = SimpleNamespace(**dims)
    if row.helpers:
        data.update(row.helpers(ns))
    want = row.formula(lib, ns, **data)
    err = rel_err(got, want)
    return f"ok ({err:.1e})" if err <= tolerance(row.dtype) else f"MISMATCH ({err:.1e})"


# ---------------------------------------------------------------------------------------
# The machine.


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def command_output(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return ""


def amd_core(family, model):
    """The microarchitecture of an AMD family/model pair (a VM often names the CPU only
    "AMD EPYC"), or "" when not known."""
    try:
        f, m = int(family), int(model)
    except ValueError:
        return ""
    if f == 23:
        return "Zen 2" if m >= 0x30 else "Zen / Zen+"
    if f == 25:
        return "Zen 4" if 0x10 <= m <= 0x1F or 0x60 <= m <= 0x7F or 0xA0 <= m <= 0xAF else "Zen 3"
    if f == 26:
        return "Zen 5"
    return ""


def machine_info(torch_note, jax_note, threads):
    info = {}
    model = ""
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    lscpu = command_output(["lscpu"])
    fields = dict(l.split(":", 1) for l in lscpu.splitlines() if ":" in l)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    family = fields.get("CPU family", "?")
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    core = amd_core(family, fields.get("Model", "?")) if "AMD" in (model or fields.get("Vendor ID", "")) else ""
    info["cpu"] = (f"{model or fields.get('Model name', platform.processor())} (family {family}, model "
                   f"{fields.get('Model', '?')}{': ' + core if core else ''})")
    info["cores"] = f"{os.cpu_count()} logical CPUs, {fields.get('Thread(s) per core', '?')} thread(s) per core"
    info["caches"] = ", ".join(f"{k} {fields[k]}" for k in ("L1d cache", "L2 cache", "L3 cache") if k in fields)
    info["simd"] = ", ".join(simd)
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        info["memory"] = f"{kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        info["memory"] = "?"
    info["os"] = platform.platform()
    info["python"] = platform.python_version()
    info["numpy"] = np.__version__
    info["opt_einsum"] = oe.__version__
    pools = threadpoolctl.threadpool_info()
    blas = [p for p in pools if p.get("user_api") == "blas"]
    np_blas = [p for p in blas if "numpy" in p.get("filepath", "")] or blas[:1]
    info["numpy_blas"] = "; ".join(
        f"{p.get('internal_api')} {p.get('version')}, kernel {p.get('architecture')}, {p.get('num_threads')} threads"
        for p in np_blas) or "unknown"
    if torch is not None:
        info["torch"] = torch.__version__
        cfg = torch.__config__.show()
        m = re.search(r"BLAS_INFO=(\w+)", cfg)
        parallel = torch.__config__.parallel_info().splitlines()
        backend = next((l.strip() for l in parallel if "backend" in l.lower()), "")
        info["torch_blas"] = (f"{m.group(1) if m else 'unknown'} BLAS, mkldnn {torch.backends.mkldnn.is_available()}, "
                              f"{torch.get_num_threads()} threads; {backend}")
        info["torch_einsum_path"] = (f"opt_einsum ({torch.backends.opt_einsum.strategy})"
                                     if torch.backends.opt_einsum.is_available() else "left to right")
        import torch._inductor.config as inductor_config

        cxx = inductor_config.cpp.cxx[-1] if isinstance(inductor_config.cpp.cxx, tuple) else inductor_config.cpp.cxx
        cxx = cxx or "g++"
        info["inductor"] = (f"inductor, C++ compiler `{cxx}` "
                            f"({(command_output([cxx, '--version']).splitlines() or ['not found'])[0]}), "
                            f"kernel threads {inductor_config.cpp.threads if inductor_config.cpp.threads > 0 else torch.get_num_threads()}")
    else:
        info["torch"] = torch_note
    if jax is not None:
        import jaxlib

        info["jax"] = f"jax {jax.__version__}, jaxlib {jaxlib.__version__}"
        info["xla"] = (f"devices {', '.join(str(d) for d in jax.devices())}; XLA_FLAGS=`{os.environ.get('XLA_FLAGS', '')}`; "
                       f"the CPU client sizes its pool from the CPUs this process may use "
                       f"({len(os.sched_getaffinity(0))})")
    else:
        info["jax"] = jax_note
    info["affinity"] = len(os.sched_getaffinity(0))
    info["rustc"] = command_output(["rustc", "--version"]) or "not found"
    info["removed_env"] = os.environ.get(REMOVED_MARK) or "none was set"
    info["threads"] = threads
    info["load_start"] = loadavg()
    return info


# ---------------------------------------------------------------------------------------
# Report.


def fmt_ms(v):
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 0.1 else f"{v:.3f}"


def fmt_bytes(b):
    if b is None:
        return "—"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= size:
            return f"{b / size:.1f} {unit}"
    return f"{b} B"


def fmt_ratio(r):
    if r is None:
        return "—"
    return f"{r:.2f}×" + (" ⚠" if r < SLOW else "")


def lib_ms(res, name):
    entry = res["libs"].get(name)
    return entry.get("median_ms") if entry else None


# The compiled peers whose best the speed targets compare against.
COMPILERS = ("jax.jit", "torch.compile")


def tessera_entry(res, backend):
    return res.get("tessera", {}).get(backend, {})


def tessera_ms(res, backend=None):
    """Median ms of one backend, or of the fastest backend that ran (backend None)."""
    if backend is None:
        best = best_tessera(res)
        return best[0] if best else None
    t = tessera_entry(res, backend)
    return t.get("median_ms") if "median_ms" in t else None


def best_tessera(res):
    """(median ms, backend) of the fastest Tessera backend on this row, or None."""
    ran = [(t["median_ms"], b) for b, t in res.get("tessera", {}).items() if "median_ms" in t]
    return min(ran) if ran else None


def best_compiler_ms(res):
    ran = [lib_ms(res, n) for n in COMPILERS if lib_ms(res, n)]
    return min(ran) if ran else None


def ratio(num, den):
    return num / den if num and den else None


def speedup(res, name):
    """Peer median / best Tessera median (> 1: Tessera faster)."""
    base = best_compiler_ms(res) if name == "best compiler" else lib_ms(res, name)
    return ratio(base, tessera_ms(res))


def llvm_over_cranelift(res):
    return ratio(tessera_ms(res, "cranelift"), tessera_ms(res, "llvm"))


def sizes_text(row):
    return ", ".join(f"{k}={v}" for k, v in row.dims.items())


def esc(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def gemm_flops(row):
    d = row.dims
    return 2 * d["m"] * d["n"] * d["k"] * d.get("b", 1)


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def backend_label(b):
    return {"cranelift": "Tessera-Cranelift", "llvm": "Tessera-LLVM"}.get(b, f"Tessera-{b}")


def tessera_cell(res, backend, value):
    """A Tessera backend's cell: `value(entry)` when it ran, else why not."""
    t = tessera_entry(res, backend)
    if "not_built" in t:
        return "not built"
    if "error" in t:
        return f"error: {t['error']}"
    return value(t) if "median_ms" in t else "—"


def peer_cell(res, name):
    e = res["libs"].get(name)
    if e is None:
        return "—"
    if "error" in e:
        return "error (see note)"
    return f"{fmt_ms(e.get('median_ms'))} ({fmt_ms(e.get('min_ms'))})"


def met(value, target):
    return "—" if value is None else ("met" if value >= target else "**missed**")


def targets_section(rows, results, backends):
    """The speed targets of issue 10, row by row: each value with whether it is met."""
    work = [r for r in rows if not r.gemm and not r.mul and r.name in results]
    llvm = backends.get("llvm", (None, ""))[0] is not None
    lines = []
    for r in work:
        res = results[r.name]
        if "norm" in r.tags or "elementwise" in r.tags:
            v = ratio(best_compiler_ms(res), tessera_ms(res, "llvm"))
            lines.append(["LLVM ≥ 1.2× best of XLA and torch.compile", r.name,
                          fmt_ratio(v) if llvm else "LLVM not built", met(v, 1.2)])
        if "exp" in r.tags:
            v = llvm_over_cranelift(res)
            lines.append(["LLVM ≥ 1.5× Tessera-Cranelift (exp-bound)", r.name,
                          fmt_ratio(v) if llvm else "LLVM not built", met(v, 1.5)])
    below = [(speedup(results[r.name], "jax.jit"), r.name) for r in work]
    below = [(v, n) for v, n in below if v is not None]
    misses = sorted((v, n) for v, n in below if v < SLOW)
    lines.append([f"every workload row ≥ {SLOW}× XLA (best Tessera backend)",
                  f"{len(below)} rows with both", ", ".join(f"{n} {v:.2f}×" for v, n in misses) or "none below",
                  "—" if not below else ("met" if not misses else f"**missed** ({len(misses)})")])
    square = next((r for r in rows if r.gemm and r.dims.get("m") == 1024 and r.dims.get("k") == 1024
                   and r.dims.get("n") == 1024 and "b" not in r.dims and r.name in results), None)
    if square:
        res = results[square.name]
        for b in backends:
            v = ratio(lib_ms(res, "numpy @"), tessera_ms(res, b))
            lines.append(["matmul 1024³ ≥ 0.95× numpy A @ B", f"{square.name}, {backend_label(b)}",
                          f"{v:.2f}×" if v else tessera_cell(res, b, lambda t: "—"), met(v, 0.95)])
    return table(["target", "row", "measured", ""], lines)


def report(rows, results, libs, info, args, with_tessera, wall_s, backends):
    names = [lib.name for lib in libs]
    tess = list(backends) if with_tessera else []
    out = []
    title = "Tessera vs numpy / opt_einsum / torch / jax.jit / torch.compile on CPU" if with_tessera else \
        "Baselines only (no Tessera): numpy / opt_einsum / torch / jax.jit / torch.compile on CPU"
    out.append(f"# {title}\n")
    out.append(f"- Date: {datetime.date.today().isoformat()}; command: `python3 bench/compare/compare.py "
               f"{' '.join(sys.argv[1:])}` (whole run {wall_s / 60:.1f} min).")
    commit = command_output(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    binary = os.path.relpath(args.tessera, ROOT) if args.tessera.startswith(ROOT + os.sep) else args.tessera
    out.append(f"- Tessera commit: {commit or '?'}; binary: `{binary}`"
               if with_tessera else f"- Repository commit: {commit or '?'}")
    if with_tessera:
        out.append("- Tessera backends: " + "; ".join(
            f"{backend_label(b)}: `--backend {v}`" if v else f"{backend_label(b)}: {why}"
            for b, (v, why) in backends.items()))
    if args.quick:
        out.append("- **--quick**: sizes divided by 4 and short timings; checks the harness, not the speed.")
    out.append("\n## Machine\n")
    out.append(f"- CPU: {info['cpu']}; {info['cores']}; {info['caches']}; SIMD: {info['simd']}")
    out.append(f"- Memory: {info['memory']}; OS: {info['os']}")
    out.append(f"- Python {info['python']}; numpy {info['numpy']} ({info['numpy_blas']}); opt_einsum {info['opt_einsum']}")
    if "torch_blas" in info:
        out.append(f"- torch {info['torch']} ({info['torch_blas']}); torch.einsum paths: {info['torch_einsum_path']}; "
                   f"torch.compile: {info['inductor']}")
    else:
        out.append(f"- torch: {info['torch']} (torch columns skipped)")
    if "xla" in info:
        out.append(f"- {info['jax']}; XLA CPU: {info['xla']}")
    else:
        out.append(f"- jax: {info['jax']} (column skipped)")
    out.append(f"- rustc: {info['rustc']}")
    tess_threads = {t.get("threads") for r in results.values() for t in r.get("tessera", {}).values()
                    if "threads" in t}
    if with_tessera:
        out.append(f"- Tessera threads (from its JSON): {', '.join(str(t) for t in sorted(tess_threads)) or '?'}")
    out.append(f"- Load average (1 min) at the start and the end of the run: {info['load_start']} / "
               f"{loadavg()}; a busy machine makes every column noisy")
    out.append(f"- Environment: OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS={info['threads']}, "
               f"torch.set_num_threads({info['threads']}), XLA as above, "
               f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}, "
               f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', '')} (idle workers sleep at once: "
               "see README), process CPU affinity "
               f"{info['affinity']} CPUs{' (--pin-cpus)' if args.pin_cpus else ''}; removed for this run: "
               f"{info['removed_env']}")

    work = [r for r in rows if not r.gemm and not r.mul and r.name in results]
    if with_tessera and work:
        out.append("\n## Summary\n")
        ran = sum(1 for r in work if tessera_ms(results[r.name]))
        out.append("Speed-up = peer median / Tessera median (> 1: Tessera faster), Tessera being its fastest "
                   f"backend on each row, over the {ran} workload rows that Tessera ran, of {len(work)} (GEMM "
                   "rows excluded). \"best compiler\" is the faster of jax.jit and torch.compile on each row; the "
                   "LLVM line is Tessera-Cranelift's median over Tessera-LLVM's.\n")
        lines = []
        for name in names + ["best compiler"]:
            ups = [(speedup(results[r.name], name), r.name) for r in work]
            ups = [u for u in ups if u[0]]
            if not ups:
                continue
            worst = min(ups)
            slow = [n for u, n in ups if u < SLOW]
            lines.append([name, fmt_ratio(geomean([u for u, _ in ups])), f"{worst[1]} ({fmt_ratio(worst[0])})",
                          f"{len(slow)} of {len(ups)}"])
        ups = [(llvm_over_cranelift(results[r.name]), r.name) for r in work]
        ups = [u for u in ups if u[0]]
        if ups:
            worst = min(ups)
            lines.append(["Tessera-LLVM vs Tessera-Cranelift", fmt_ratio(geomean([u for u, _ in ups])),
                          f"{worst[1]} ({fmt_ratio(worst[0])})", f"{sum(1 for u, _ in ups if u < SLOW)} of {len(ups)}"])
        out.append(table(["vs", "geometric mean speed-up", "worst row", f"rows below {SLOW}"], lines))
        failed = [f"{r.name} ({backend_label(b)})" for r in work for b in tess
                  if "error" in tessera_entry(results[r.name], b)]
        if failed:
            out.append(f"\nTessera failed on: {', '.join(failed)} (see the tables).")
        out.append("\n## Speed targets (issue 10)\n")
        out.append("Norm rows: layernorm, rmsnorm, EvoNorm-S0; elementwise rows: Plücker, masked residual; "
                   "exp-bound rows: softmax and causal attention, exact tensor attention, EvoNorm-S0 (its sigmoid). "
                   "A ratio > 1 means the Tessera side is faster.\n")
        out.append(targets_section(rows, results, backends))

    lmul = [r for r in rows if r.mul and r.name in results]
    if with_tessera and lmul:
        out.append("\n## L-Mul rows (issue 14), median ms\n")
        out.append("Tessera with `--mul MODE` (every product an L-Mul, contractions as vectorised loop kernels, "
                   "no GEMM library) and exactly, on the same row; the peers compute the exact formula. "
                   "\"L-Mul / exact\" is Tessera's L-Mul median over its exact median (its cost of emulating "
                   "L-Mul with integer lane code on a CPU).\n")
        header = ["row", "sizes", "mul"] + [f"{backend_label(b)} L-Mul" for b in tess] + \
            [f"{backend_label(b)} exact" for b in tess] + [f"{n}" for n in names] + \
            [f"{backend_label(b)} L-Mul / exact" for b in tess]
        lines = []
        for r in lmul:
            res = results[r.name]
            exact = {"tessera": res.get("tessera_exact", {})}
            cells = [r.name, sizes_text(r), r.mul]
            cells += [tessera_cell(res, b, lambda t: fmt_ms(t["median_ms"])) for b in tess]
            cells += [tessera_cell(exact, b, lambda t: fmt_ms(t["median_ms"])) for b in tess]
            cells += [peer_cell(res, n) for n in names]
            cells += [fmt_ratio(ratio(tessera_ms(res, b), tessera_ms(exact, b))) for b in tess]
            lines.append(cells)
        out.append(table(header, lines))

    gemm = [r for r in rows if r.gemm and r.name in results]
    if gemm:
        out.append("\n## GEMM rows (f32), GFLOP/s\n")
        out.append("numpy `A @ B` is the machine's ceiling: numpy's BLAS with no einsum in between. "
                   "Cells: GFLOP/s (median ms), counting 2·m·n·k (·b) FLOPs.\n")
        gnames = [n for n in names if any(n in results[r.name]["libs"] for r in gemm)]
        header = ["row", "sizes"] + [backend_label(b) for b in tess] + ["numpy A @ B"] + \
            [f"{n} einsum" if n in ("numpy", "torch") else n for n in gnames] + \
            [f"{backend_label(b)} / A @ B" for b in tess]
        lines = []
        for r in gemm:
            res = results[r.name]
            fl = gemm_flops(r)
            rate = lambda ms: f"{fl / ms / 1e6:.0f} ({fmt_ms(ms)} ms)" if ms else "—"
            cells = [r.name, sizes_text(r)]
            cells += [tessera_cell(res, b, lambda t: rate(t["median_ms"])) for b in tess]
            cells.append(rate(lib_ms(res, "numpy @")))
            cells += [rate(lib_ms(res, n)) if "error" not in res["libs"].get(n, {}) else "error" for n in gnames]
            for b in tess:
                t, c = tessera_ms(res, b), lib_ms(res, "numpy @")
                cells.append(f"{c / t:.2f}" if t and c else "—")
            lines.append(cells)
        out.append(table(header, lines))

    if work:
        out.append("\n## Workload rows: times\n")
        out.append("Median ms (min ms in parentheses). jax.jit and torch.compile run the same transcription as "
                   "numpy and torch, compiled; their compile (first call) is not timed. \"torch fused\" is torch's "
                   "own kernel where it has one. \"agree\": the largest error of every other column against numpy, "
                   "relative to numpy's largest entry.\n")
        header = ["row", "sizes", "dtype"] + [f"{backend_label(b)} ms" for b in tess] + [f"{n} ms" for n in names]
        header += ["agree", "note"]
        lines = []
        for r in work:
            res = results[r.name]
            cells = [r.name, sizes_text(r), r.dtype]
            cells += [tessera_cell(res, b, lambda t: f"{fmt_ms(t['median_ms'])} ({fmt_ms(t['min_ms'])})") for b in tess]
            cells += [peer_cell(res, n) for n in names]
            errs = res.get("errors", {})
            tol = tolerance(r.dtype)
            bad = [n for n, e in errs.items() if e > tol]
            cells.append((f"{max(errs.values()):.0e}" if errs else "—") + (f" DISAGREE ({', '.join(bad)})" if bad else ""))
            notes = [r.note] if r.note else []
            notes += [f"{n}: {e['error']}" for n, e in res["libs"].items() if "error" in e]
            if "run_check" in res:
                notes.append(f"tessera run: {res['run_check']}")
            cells.append("; ".join(notes))
            lines.append(cells)
        out.append(table(header, lines))

    if with_tessera and work:
        out.append("\n## Workload rows: speed-ups\n")
        out.append(f"Peer median / Tessera median, Tessera being its fastest backend on the row (named); ⚠ marks one "
                   f"below {SLOW}. \"LLVM / Cranelift\" is Tessera-Cranelift's median over Tessera-LLVM's. GFLOP/s "
                   "and peak memory are the fastest backend's.\n")
        header = ["row", "fastest"] + [f"× {n}" for n in names] + ["× best compiler", "LLVM / Cranelift",
                                                                   "Tessera GFLOP/s", "Tessera peak", "numpy peak"]
        lines = []
        for r in work:
            res = results[r.name]
            best = best_tessera(res)
            t = tessera_entry(res, best[1]) if best else {}
            cells = [r.name, backend_label(best[1]) if best else "—"]
            cells += [fmt_ratio(speedup(res, n)) for n in names]
            cells.append(fmt_ratio(speedup(res, "best compiler")))
            cells.append(fmt_ratio(llvm_over_cranelift(res)))
            cells.append(f"{t['gflops']:.1f}" if isinstance(t.get("gflops"), (int, float)) else "—")
            cells.append(fmt_bytes(t.get("peak_bytes")))
            cells.append(fmt_bytes(res.get("numpy_peak_bytes")))
            lines.append(cells)
        out.append(table(header, lines))

    compiled = [n for n in names if any(isinstance(results[r.name]["libs"].get(n, {}).get("first_call_ms"), float)
                                        for r in rows if r.name in results)]
    if rows and (tess or compiled):
        out.append("\n## Compile times\n")
        out.append("Tessera: `plan_ms + compile_ms` from its JSON (plan, lower, code generation). jax.jit and "
                   "torch.compile: the first call (trace, compile, one run); inductor keeps a cache on disk, so "
                   "a repeated run compiles faster.\n")
        header = ["row"] + [f"{backend_label(b)} ms" for b in tess] + [f"{n} first call ms" for n in compiled]
        lines = []
        for r in rows:
            if r.name not in results:
                continue
            res = results[r.name]
            cells = [r.name]
            cells += [tessera_cell(res, b, lambda t: fmt_ms(t.get("plan_ms", 0) + t.get("compile_ms", 0))) for b in tess]
            cells += [fmt_ms(res["libs"].get(n, {}).get("first_call_ms")) for n in compiled]
            lines.append(cells)
        out.append(table(header, lines))

    out.append("\n## Method\n")
    out.append(
        "- Baselines transcribe each .tsr function statement by statement: contractions through "
        "`np.einsum(..., optimize='optimal')`, `opt_einsum.contract(...)` (default path choice, numpy "
        "arrays), `torch.einsum(...)` or `jnp.einsum(...)`, elementwise work and row reductions (exp, max, "
        "division, rsqrt, masks) with plain numpy / torch / jax.numpy operations. A statement that the .tsr "
        "writes separately (the Kronecker matrix in kron::matvec, the full C in equivariant::cp_product) is "
        "computed separately, since the point of these rows is what a compiler finds from the formula as written.\n"
        "- jax.jit: the whole jax.numpy transcription jitted as one function of the row's inputs (x64 enabled "
        "for the f64 rows; f32 rows stay f32), timed with `block_until_ready()`. torch.compile: the torch "
        "transcription under `torch.compile(backend='inductor', dynamic=False)`, after `torch._dynamo.reset()`; "
        "a row inductor cannot compile keeps its error in the note. torch fused: "
        "`scaled_dot_product_attention` (is_causal for the causal row), `layer_norm`, `rms_norm`.\n"
        "- Inputs: uniform in [-1, 1) in the row's dtype; Tessera's bench draws its own inputs the same way "
        "(different values, same shapes). Per library: one call that also compiles (jax.jit, torch.compile), "
        "one warm-up call, then calls until at least "
        f"{args.min_time} s and 5 runs; median and min of the per-call times. Tessera: `tessera bench "
        f"--format json --min-time {args.min_time} --backend B` per backend, which compiles once and warms "
        "up before timing.\n"
        "- numpy peak: bytes numpy allocates during one call (tracemalloc), inputs excluded. Tessera peak: "
        "`peak_bytes` from its JSON.")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------


def select_rows(spec):
    if not spec:
        return list(ROWS)
    keys = [s.strip() for s in spec.split(",") if s.strip()]
    chosen = [r for r in ROWS if any(k in r.name for k in keys)]
    if not chosen:
        sys.exit(f"error: --rows {spec!r} matches no row; rows: {', '.join(r.name for r in ROWS)}")
    return chosen


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tessera", default=os.path.join(ROOT, "target", "release", "tessera"),
                    help="the tessera binary (default: target/release/tessera in the repository)")
    ap.add_argument("--baselines-only", action="store_true",
                    help="time the peers only, no Tessera, and print the tables (writes no file unless --output)")
    ap.add_argument("--check-run", action="store_true",
                    help="also check each numpy transcription against `tessera run` on small inputs")
    ap.add_argument("--rows", help="comma-separated substrings of row names to run, e.g. attention,lowrank")
    ap.add_argument("--min-time", type=float, default=None, help="seconds of timed calls per library (default 0.5)")
    ap.add_argument("--threads", type=int, default=2, help="threads for every library (default 2)")
    ap.add_argument("--no-torch", action="store_true",
                    help="skip the torch columns (torch, torch.compile, torch fused)")
    ap.add_argument("--no-jax", action="store_true", help="skip the jax.jit column")
    ap.add_argument("--no-compile", action="store_true",
                    help="skip the torch.compile column (inductor compiles each row for seconds)")
    ap.add_argument("--quick", action="store_true",
                    help="check the harness: sizes over 128 divided by 4, --min-time 0.05 unless given, "
                         "no file written unless --output")
    ap.add_argument("--pin-cpus", action="store_true",
                    help="run on the first --threads CPUs only (XLA's pool follows the CPUs it may use)")
    ap.add_argument("--tessera-timeout", type=float, default=300, help="seconds per `tessera bench` call")
    ap.add_argument("--output", help="where to write the markdown (default bench/compare/RESULTS.md; "
                                     "with --baselines-only, nowhere)")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    args = ap.parse_args()
    args.tessera = os.path.abspath(args.tessera)
    if args.min_time is None:
        args.min_time = 0.05 if args.quick else 0.5

    if args.list:
        for r in ROWS:
            print(f"{r.name:32} {r.file}::{r.fn}  {sizes_text(r)}")
        return
    rows = select_rows(args.rows)
    if args.quick:
        for r in rows:
            r.dims = {k: v // 4 if v > 128 else v for k, v in r.dims.items()}
    with_tessera = not args.baselines_only
    if with_tessera or args.check_run:
        check_tessera(args.tessera, need_bench=with_tessera)
    if args.pin_cpus and os.environ.get(CHILD_MARK) != "1":
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    reexec_clean(args.threads)

    torch_note, jax_note = import_libraries(args.threads, not args.no_torch, not args.no_jax)
    libs = [NumpyLib(), OptEinsumLib()]
    if torch is not None:
        libs.append(TorchLib())
    if jax is not None:
        libs.append(JaxLib())
    if torch is not None:
        libs += ([] if args.no_compile else [TorchCompileLib()]) + [TorchFusedLib()]
        try:
            import e3nn  # noqa: F401

            libs.append(E3nnLib())
        except ImportError:
            print("note: e3nn column skipped: pip install e3nn", file=sys.stderr)
    if torch is None:
        print(f"note: torch columns skipped: {torch_note}", file=sys.stderr)
    if jax is None:
        print(f"note: jax column skipped: {jax_note}", file=sys.stderr)
    backends = {}
    if with_tessera:
        backends = detect_backends(args.tessera)
        for b, (value, why) in backends.items():
            print(f"{backend_label(b)}: " + (f"--backend {value}" if value else why), file=sys.stderr)
    info = machine_info(torch_note, jax_note, args.threads)
    print(f"numpy BLAS: {info['numpy_blas']}; removed: {info['removed_env']}", file=sys.stderr)
    if (info["load_start"] or 0) > 0.5:
        print(f"warning: load average {info['load_start']} before the run: something else is using the "
              "CPUs, so the timings will be noisy", file=sys.stderr)

    rows = prepare_e3nn(rows)
    start = time.perf_counter()
    results = {}
    for row in rows:
        inputs, out_dtype = read_signature(os.path.join(ROOT, row.file), row.fn)
        row.inputs, row.dtype = inputs, out_dtype or next(iter(inputs.values()))[0]
        t0 = time.perf_counter()
        res = run_baselines(row, libs, args.min_time)
        if with_tessera:
            res["tessera"] = {b: run_tessera_bench(args.tessera, row, args.min_time, args.tessera_timeout, value)
                              if value else {"not_built": why} for b, (value, why) in backends.items()}
        if with_tessera and row.mul:
            res["tessera_exact"] = {b: run_tessera_bench(args.tessera, row, args.min_time, args.tessera_timeout, value, "")
                                    if value else {"not_built": why} for b, (value, why) in backends.items()}
        if args.check_run and row.mul:
            res["run_check"] = "skipped: L-Mul differs from the exact formula by design"
        elif args.check_run:
            try:
                res["run_check"] = check_against_run(args.tessera, row, libs[0])
            except Exception as e:
                res["run_check"] = f"error: {type(e).__name__}: {e}"[:200]
        results[row.name] = res
        parts = [f"{n} {fmt_ms(lib_ms(res, n))}" if lib_ms(res, n) else f"{n} ERROR {res['libs'][n]['error']}"
                 for n in [l.name for l in libs] + ["numpy @"] if n in res["libs"]]
        for b, t in reversed(list(res.get("tessera", {}).items())):
            if "median_ms" in t:
                parts.insert(0, f"{backend_label(b)} {fmt_ms(t['median_ms'])}")
            elif "error" in t:
                parts.insert(0, f"{backend_label(b)} ERROR {t['error']}")
        flag = "" if res["agree"] else f"  DISAGREE {res['errors']}"
        check = f"  run: {res['run_check']}" if "run_check" in res else ""
        print(f"{row.name:32} {time.perf_counter() - t0:5.1f}s  " + ", ".join(parts) + flag + check,
              file=sys.stderr, flush=True)
    wall = time.perf_counter() - start

    text = report(rows, results, libs, info, args, with_tessera, wall, backends)
    output = args.output or (None if args.baselines_only or args.quick else os.path.join(HERE, "RESULTS.md"))
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        with open(os.path.splitext(output)[0] + ".json", "w", encoding="utf-8") as f:
            json.dump({"machine": info, "rows": {r.name: dict(results[r.name], file=r.file, fn=r.fn, dims=r.dims,
                                                              dtype=r.dtype) for r in rows}}, f, indent=1)
        print(f"wrote {output}", file=sys.stderr)
    else:
        print(text)


if __name__ == "__main__":
    main()
