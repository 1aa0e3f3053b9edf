#!/usr/bin/env python3
"""Tessera against numpy.einsum(optimize='optimal'), opt_einsum and torch.einsum, side by side.

Times the same problems in one run: three GEMM rows (the machine's ceiling) and one row per
stdlib workload of /work/shared/WORKLOADS.md. Each baseline transcribes the function's .tsr
source statement by statement, with einsum for the contractions and plain array operations
for the rest; the baselines are checked against each other on every row. Tessera is timed
by its own `tessera bench` (seeded random inputs, compile once, warm up, repeat).

Usage:
  python3 bench/compare/compare.py                      # everything; writes bench/compare/RESULTS.md
  python3 bench/compare/compare.py --baselines-only     # numpy / opt_einsum / torch only, printed
  python3 bench/compare/compare.py --check-run          # also check each baseline against `tessera run`
  python3 bench/compare/compare.py --rows attention,lowrank --min-time 0.2

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


# ---------------------------------------------------------------------------------------
# Environment. Thread counts must be in the environment before numpy is imported, so the
# script re-executes itself with a cleaned environment before importing any library.


def reexec_clean(threads):
    if os.environ.get(CHILD_MARK) == "1":
        return
    env = dict(os.environ)
    removed = [f"{k}={env.pop(k)}" for k in SCRUBBED if k in env]
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env[CHILD_MARK] = "1"
    env[REMOVED_MARK] = ",".join(removed)
    in_venv = os.path.realpath(sys.prefix) == os.path.realpath(VENV)
    python = VPY if os.path.exists(VPY) and not in_venv else sys.executable
    os.execve(python, [python, os.path.abspath(__file__)] + sys.argv[1:], env)


def import_libraries(threads, want_torch):
    """Imports numpy, opt_einsum and (when installed and wanted) torch into globals; torch
    missing is a note in the results, the others missing stop the script."""
    global np, oe, torch, threadpoolctl
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
    return note


# ---------------------------------------------------------------------------------------
# The libraries. Each formula below is written once against this small interface, so the
# numpy, opt_einsum and torch columns run the same transcription of the .tsr source.


class NumpyLib:
    name = "numpy"

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


class OptEinsumLib(NumpyLib):
    """opt_einsum on numpy arrays, with its default path choice ('auto'), as people call it."""

    name = "opt_einsum"

    def einsum(self, spec, *ops):
        return oe.contract(spec, *ops)


class TorchLib:
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
    Row("attention::softmax", std("attention"), "softmax", dict(n=2048, m=2048, d=64, e=64), attention_softmax),
    Row("attention::causal", std("attention"), "causal", dict(n=2048, d=64, e=64), attention_causal,
        helpers=causal_mask, note="mask built once, untimed"),
    Row("tensor_attention::exact", std("tensor_attention"), "exact",
        dict(n=256, m1=256, m2=256, d=64, e=64), tensor_attention_exact),
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
    Row("grassmann::plucker", std("grassmann"), "plucker", dict(t=4096, n=64), plucker),
    Row("norm::layernorm", std("norm"), "layernorm", dict(b=8192, d=1024), layernorm),
    Row("norm::rmsnorm", std("norm"), "rmsnorm", dict(b=8192, d=1024), rmsnorm),
    Row("norm::evonorm_s0", std("norm"), "evonorm_s0", dict(b=32, s=1024, g=8, c=32), evonorm_s0),
    Row("completion::masked_residual", std("completion"), "masked_residual", dict(n=2048, m=2048, r=32),
        masked_residual),
]


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
        pm = re.fullmatch(r"(\w+)\s*:\s*(f32|f64)\s*(?:\[(.*)\])?", p, re.S)
        if not pm:
            raise ValueError(f"cannot read parameter `{p}` of {fn} in {path}")
        name, dtype, shape = pm.groups()
        inputs[name] = (dtype, split_top(shape) if shape else [])
    return inputs, out.group(1) if out else None


def dim_value(expr, dims):
    """A shape entry such as `n` or `n1 * n2`."""
    return math.prod(dims[t.strip()] for t in expr.split("*"))


def make_inputs(row, dims, seed=0):
    """Uniform in [-1, 1), like `tessera bench`; the values themselves differ from Tessera's."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (dtype, shape) in row.inputs.items():
        shp = tuple(dim_value(e, dims) for e in shape)
        a = rng.random(shp, dtype=np.float32 if dtype == "f32" else np.float64) * 2 - 1
        out[name] = np.asarray(a)
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
        args = {k: lib.array(v) for k, v in data.items()}

        def call(lib=lib, args=args):
            return row.formula(lib, dims, **args)

        try:
            out = lib.to_numpy(call())
            if ref is None:
                ref = out
            else:
                result["errors"][lib.name] = rel_err(out, ref)
            result["libs"][lib.name] = measure(call, min_time)
        except Exception as e:
            result["libs"][lib.name] = {"error": f"{type(e).__name__}: {e}"[:200]}
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


def run_tessera_bench(tessera, row, min_time, timeout):
    cmd = [tessera, "bench", os.path.join(ROOT, row.file), "--fn", row.fn, *dim_args(row.dims),
           "--dtype", row.dtype, "--format", "json", "--min-time", str(min_time)]
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


def machine_info(torch_note, threads):
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
    info["cpu"] = f"{model or fields.get('Model name', platform.processor())} (family {family}, model {fields.get('Model', '?')})"
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
    else:
        info["torch"] = torch_note
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


def tessera_ms(res):
    t = res.get("tessera")
    return t.get("median_ms") if t and "error" not in t else None


def speedup(res, name):
    t, b = tessera_ms(res), lib_ms(res, name)
    return b / t if t and b else None


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


def report(rows, results, libs, info, args, with_tessera, wall_s):
    names = [lib.name for lib in libs]
    out = []
    title = "Tessera vs numpy / opt_einsum / torch on CPU" if with_tessera else \
        "Baselines only (no Tessera): numpy / opt_einsum / torch on CPU"
    out.append(f"# {title}\n")
    out.append(f"- Date: {datetime.date.today().isoformat()}; command: `python3 bench/compare/compare.py "
               f"{' '.join(sys.argv[1:])}` (whole run {wall_s / 60:.1f} min).")
    commit = command_output(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    binary = os.path.relpath(args.tessera, ROOT) if args.tessera.startswith(ROOT + os.sep) else args.tessera
    out.append(f"- Tessera commit: {commit or '?'}; binary: `{binary}`"
               if with_tessera else f"- Repository commit: {commit or '?'}")
    out.append("\n## Machine\n")
    out.append(f"- CPU: {info['cpu']}; {info['cores']}; {info['caches']}; SIMD: {info['simd']}")
    out.append(f"- Memory: {info['memory']}; OS: {info['os']}")
    out.append(f"- Python {info['python']}; numpy {info['numpy']} ({info['numpy_blas']}); opt_einsum {info['opt_einsum']}")
    if "torch_blas" in info:
        out.append(f"- torch {info['torch']} ({info['torch_blas']}); torch.einsum paths: {info['torch_einsum_path']}")
    else:
        out.append(f"- torch: {info['torch']} (column skipped)")
    out.append(f"- rustc: {info['rustc']}")
    tess_threads = {r["tessera"].get("threads") for r in results.values() if "tessera" in r and "threads" in r["tessera"]}
    if with_tessera:
        out.append(f"- Tessera threads (from its JSON): {', '.join(str(t) for t in sorted(tess_threads)) or '?'}")
    out.append(f"- Load average (1 min) at the start and the end of the run: {info['load_start']} / "
               f"{loadavg()}; a busy machine makes every column noisy")
    out.append(f"- Environment: OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS={info['threads']}, "
               f"torch.set_num_threads({info['threads']}); removed for this run: {info['removed_env']}")

    work = [r for r in rows if not r.gemm and r.name in results]
    if with_tessera and work:
        out.append("\n## Summary\n")
        ran = sum(1 for r in work if tessera_ms(results[r.name]))
        out.append("Speed-up = baseline median / Tessera median (> 1: Tessera faster), over the "
                   f"{ran} workload rows that Tessera ran, of {len(work)} (GEMM rows excluded).\n")
        lines = []
        for name in names:
            ups = [(speedup(results[r.name], name), r.name) for r in work]
            ups = [u for u in ups if u[0]]
            if not ups:
                continue
            worst = min(ups)
            slow = [n for u, n in ups if u < SLOW]
            lines.append([name, fmt_ratio(geomean([u for u, _ in ups])), f"{worst[1]} ({fmt_ratio(worst[0])})",
                          f"{len(slow)} of {len(ups)}"])
        out.append(table(["vs", "geometric mean speed-up", "worst row", f"rows below {SLOW}"], lines))
        failed = [r.name for r in work if "error" in results[r.name].get("tessera", {})]
        if failed:
            out.append(f"\nTessera failed on: {', '.join(failed)} (see the error column).")

    gemm = [r for r in rows if r.gemm and r.name in results]
    if gemm:
        out.append("\n## GEMM rows (f32), GFLOP/s\n")
        out.append("numpy `A @ B` is the machine's ceiling: numpy's BLAS with no einsum in between. "
                   "Cells: GFLOP/s (median ms), counting 2·m·n·k (·b) FLOPs.\n")
        header = ["row", "sizes"] + (["Tessera"] if with_tessera else []) + ["numpy A @ B"] + \
            [f"{n} einsum" if n != "opt_einsum" else "opt_einsum" for n in names] + \
            (["Tessera / A @ B"] if with_tessera else [])
        lines = []
        for r in gemm:
            res = results[r.name]
            fl = gemm_flops(r)
            rate = lambda ms: f"{fl / ms / 1e6:.0f} ({fmt_ms(ms)} ms)" if ms else "—"
            cells = [r.name, sizes_text(r)]
            if with_tessera:
                t = res.get("tessera", {})
                cells.append(rate(tessera_ms(res)) if "error" not in t else f"error: {t['error']}")
            cells.append(rate(lib_ms(res, "numpy @")))
            cells += [rate(lib_ms(res, n)) for n in names]
            if with_tessera:
                t, c = tessera_ms(res), lib_ms(res, "numpy @")
                cells.append(f"{c / t:.2f}" if t and c else "—")
            lines.append(cells)
        out.append(table(header, lines))

    if work:
        out.append("\n## Workload rows\n")
        out.append("Median ms (min ms in parentheses); ⚠ marks a speed-up below "
                   f"{SLOW}. \"agree\" is the largest error of opt_einsum and torch against numpy, "
                   "relative to numpy's largest entry.\n")
        header = ["row", "sizes", "dtype"]
        if with_tessera:
            header += ["Tessera ms", "Tessera GFLOP/s"]
        header += [f"{n} ms" for n in names]
        if with_tessera:
            header += [f"× {n}" for n in names] + ["Tessera peak"]
        header += ["numpy peak", "agree", "note"]
        lines = []
        for r in work:
            res = results[r.name]
            cells = [r.name, sizes_text(r), r.dtype]
            if with_tessera:
                t = res.get("tessera", {})
                if "error" in t:
                    cells += [f"error: {t['error']}", "—"]
                else:
                    cells += [f"{fmt_ms(t['median_ms'])} ({fmt_ms(t['min_ms'])})",
                              f"{t['gflops']:.1f}" if isinstance(t.get("gflops"), (int, float)) else "—"]
            for n in names:
                e = res["libs"].get(n, {})
                cells.append(f"{fmt_ms(e.get('median_ms'))} ({fmt_ms(e.get('min_ms'))})" if "error" not in e
                             else f"error: {e['error']}")
            if with_tessera:
                cells += [fmt_ratio(speedup(res, n)) for n in names]
                cells.append(fmt_bytes(res.get("tessera", {}).get("peak_bytes")))
            cells.append(fmt_bytes(res.get("numpy_peak_bytes")))
            errs = res.get("errors", {})
            agree = (f"{max(errs.values()):.0e}" if errs else "—") + ("" if res.get("agree") else " DISAGREE")
            cells.append(agree)
            note = r.note
            if "run_check" in res:
                note = (note + "; " if note else "") + f"tessera run: {res['run_check']}"
            cells.append(note)
            lines.append(cells)
        out.append(table(header, lines))

    out.append("\n## Method\n")
    out.append(
        "- Baselines transcribe each .tsr function statement by statement: contractions through "
        "`np.einsum(..., optimize='optimal')`, `opt_einsum.contract(...)` (default path choice, numpy "
        "arrays) or `torch.einsum(...)`, elementwise work and row reductions (exp, max, division, rsqrt, "
        "masks) with plain numpy / torch operations. A statement that the .tsr writes separately (the "
        "Kronecker matrix in kron::matvec, the full C in equivariant::cp_product) is computed separately, "
        "since the point of these rows is what a compiler finds from the formula as written.\n"
        "- Inputs: uniform in [-1, 1) in the row's dtype; Tessera's bench draws its own inputs the same way "
        "(different values, same shapes). Per library: one warm-up call, then calls until at least "
        f"{args.min_time} s and 5 runs; median and min of the per-call times. Tessera: `tessera bench "
        f"--format json --min-time {args.min_time}`, which compiles once and warms up before timing.\n"
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
                    help="time numpy / opt_einsum / torch only and print the table (writes no file unless --output)")
    ap.add_argument("--check-run", action="store_true",
                    help="also check each numpy transcription against `tessera run` on small inputs")
    ap.add_argument("--rows", help="comma-separated substrings of row names to run, e.g. attention,lowrank")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds of timed calls per library (default 0.5)")
    ap.add_argument("--threads", type=int, default=2, help="threads for every library (default 2)")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch column")
    ap.add_argument("--tessera-timeout", type=float, default=300, help="seconds per `tessera bench` call")
    ap.add_argument("--output", help="where to write the markdown (default bench/compare/RESULTS.md; "
                                     "with --baselines-only, nowhere)")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    args = ap.parse_args()
    args.tessera = os.path.abspath(args.tessera)

    if args.list:
        for r in ROWS:
            print(f"{r.name:32} {r.file}::{r.fn}  {sizes_text(r)}")
        return
    rows = select_rows(args.rows)
    with_tessera = not args.baselines_only
    if with_tessera or args.check_run:
        check_tessera(args.tessera, need_bench=with_tessera)
    reexec_clean(args.threads)

    torch_note = import_libraries(args.threads, not args.no_torch)
    libs = [NumpyLib(), OptEinsumLib()] + ([TorchLib()] if torch is not None else [])
    if torch is None:
        print(f"note: torch column skipped: {torch_note}", file=sys.stderr)
    info = machine_info(torch_note, args.threads)
    print(f"numpy BLAS: {info['numpy_blas']}; removed: {info['removed_env']}", file=sys.stderr)
    if (info["load_start"] or 0) > 0.5:
        print(f"warning: load average {info['load_start']} before the run: something else is using the "
              "CPUs, so the timings will be noisy", file=sys.stderr)

    start = time.perf_counter()
    results = {}
    for row in rows:
        inputs, out_dtype = read_signature(os.path.join(ROOT, row.file), row.fn)
        row.inputs, row.dtype = inputs, out_dtype or next(iter(inputs.values()))[0]
        t0 = time.perf_counter()
        res = run_baselines(row, libs, args.min_time)
        if with_tessera:
            res["tessera"] = run_tessera_bench(args.tessera, row, args.min_time, args.tessera_timeout)
        if args.check_run:
            try:
                res["run_check"] = check_against_run(args.tessera, row, libs[0])
            except Exception as e:
                res["run_check"] = f"error: {type(e).__name__}: {e}"[:200]
        results[row.name] = res
        parts = [f"{n} {fmt_ms(lib_ms(res, n))}" for n in [l.name for l in libs] + ["numpy @"] if lib_ms(res, n)]
        if with_tessera:
            t = res["tessera"]
            parts.insert(0, f"tessera {fmt_ms(t['median_ms'])}" if "error" not in t else f"tessera ERROR {t['error']}")
        flag = "" if res["agree"] else f"  DISAGREE {res['errors']}"
        check = f"  run: {res['run_check']}" if "run_check" in res else ""
        print(f"{row.name:32} {time.perf_counter() - t0:5.1f}s  " + ", ".join(parts) + flag + check,
              file=sys.stderr, flush=True)
    wall = time.perf_counter() - start

    text = report(rows, results, libs, info, args, with_tessera, wall)
    output = args.output or (None if args.baselines_only else os.path.join(HERE, "RESULTS.md"))
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
