"""Per-call overhead and path-search time of the Python package, in one run.

1. Tiny repeated einsums (2 to 4 operands, sizes 2 to 16): microseconds per call for
   tessera.einsum, np.einsum (default and optimize=True), opt_einsum.contract and
   torch.einsum (when installed), each after a warm-up call.
2. Path search on random networks of 10 to 100 tensors: tessera.contract_path against
   opt_einsum.contract_path with `dp` (up to 20 tensors: at 40 it ran for more than
   5 minutes), `optimal` (10 tensors only: 20 to 60 s there) and `random-greedy`, with
   each path's cost by opt_einsum's own accounting.

Needs the package built in release mode (`pip install ./python`) and numpy; opt_einsum
and torch are optional. Run from anywhere:

    python bench/python/overhead.py [--quick]

Prints Markdown tables (and the CPU's name), for bench/python/RESULTS.md.
"""

import argparse
import platform
import random
import time

import numpy as np

import tessera

try:
    import opt_einsum as oe
except ImportError:
    oe = None
try:
    import torch
except ImportError:
    torch = None


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def per_call_us(fn, *args, repeat=5, min_time=0.2):
    """Best of `repeat` rounds of the mean time per call, in microseconds."""
    fn(*args)
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn(*args)
        dt = time.perf_counter() - t0
        if dt >= min_time / repeat:
            break
        n *= 2
    best = dt / n
    for _ in range(repeat - 1):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(*args)
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


TINY = [
    ("ij,jk->ik", [(2, 2), (2, 2)]),
    ("ij,jk->ik", [(16, 16), (16, 16)]),
    ("bij,bjk->bik", [(4, 8, 8), (4, 8, 8)]),
    ("ij,jk,kl->il", [(8, 8), (8, 8), (8, 8)]),
    ("i,ij,j->", [(16,), (16, 16), (16,)]),
    ("abc,cd,de,eb->a", [(4, 4, 4), (4, 4), (4, 4), (4, 4)]),
    ("ij,jk,kl,lm->im", [(16, 16), (16, 16), (16, 16), (16, 16)]),
]


def overhead_table(quick):
    rng = np.random.default_rng(0)
    rows = []
    for spec, shapes in TINY:
        ops = [rng.standard_normal(s) for s in shapes]
        want = np.einsum(spec, *ops)
        assert np.allclose(tessera.einsum(spec, *ops), want)
        row = {"spec": spec, "shapes": " ".join("x".join(map(str, s)) for s in shapes)}
        row["tessera"] = per_call_us(tessera.einsum, spec, *ops)
        row["np.einsum"] = per_call_us(np.einsum, spec, *ops)
        row["np.einsum(optimize=True)"] = per_call_us(lambda *a: np.einsum(*a, optimize=True), spec, *ops)
        if oe is not None:
            row["opt_einsum.contract"] = per_call_us(oe.contract, spec, *ops)
        if torch is not None:
            tops = [torch.from_numpy(o) for o in ops]
            row["torch.einsum"] = per_call_us(torch.einsum, spec, *tops)
        rows.append(row)
        if quick:
            break
    cols = [c for c in ["tessera", "np.einsum", "np.einsum(optimize=True)", "opt_einsum.contract", "torch.einsum"] if c in rows[0]]
    print("| spec | shapes | " + " | ".join(f"{c} (µs)" for c in cols) + (" | opt_einsum / tessera |" if oe else " |"))
    print("|---|---|" + "---:|" * (len(cols) + (1 if oe else 0)))
    for r in rows:
        cells = " | ".join(f"{r[c]:.1f}" for c in cols)
        ratio = f" | {r['opt_einsum.contract'] / r['tessera']:.2f}x |" if oe else " |"
        print(f"| `{r['spec']}` | {r['shapes']} | {cells}{ratio}")


def random_network(n_tensors, seed, max_degree=3, size_range=(2, 8)):
    """A random connected tensor network: each tensor shares 1 to `max_degree` labels
    with earlier ones, and the output keeps a few open labels."""
    r = random.Random(seed)
    symbols = [oe.get_symbol(i) for i in range(4 * n_tensors + 8)] if oe else [chr(0x100 + i) for i in range(4 * n_tensors + 8)]
    next_sym = iter(symbols)
    terms = [[] for _ in range(n_tensors)]
    for k in range(1, n_tensors):
        for _ in range(r.randint(1, max_degree)):
            j = r.randrange(k)
            s = next(next_sym)
            terms[k].append(s)
            terms[j].append(s)
    out = []
    for _ in range(2):
        s = next(next_sym)
        terms[r.randrange(n_tensors)].append(s)
        out.append(s)
    sizes = {s: r.randint(*size_range) for t in terms for s in t}
    spec = ",".join("".join(t) for t in terms) + "->" + "".join(out)
    shapes = [tuple(sizes[s] for s in t) for t in terms]
    return spec, shapes


def path_table(quick):
    """One row per network size; `—` where a method would take too long."""
    if oe is None:
        print("(opt_einsum is not installed: no path-search comparison)")
        return
    sizes = [10, 20] if quick else [10, 12, 20, 40, 60, 100]
    print("| tensors | tessera ms | tessera cost | dp ms | dp cost | optimal ms | optimal cost | random-greedy ms | random-greedy cost | dp / tessera time |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        spec, shapes = random_network(n, seed=n)
        t0 = time.perf_counter()
        path, info = tessera.contract_path(spec, *shapes, shapes=True)
        t_tessera = (time.perf_counter() - t0) * 1e3
        cost_tessera = oe.contract_path(spec, *shapes, shapes=True, optimize=path)[1].opt_cost
        cells = [f"{t_tessera:.2f}", f"{float(cost_tessera):.3e}"]
        t_dp = None
        for method in ["dp", "optimal", "random-greedy"]:
            if method == "optimal" and (n > 10 or quick):
                cells += ["—", "—"]
                continue
            if method == "dp" and n > 20:
                cells += ["—", "—"]
                continue
            t0 = time.perf_counter()
            _, oinfo = oe.contract_path(spec, *shapes, shapes=True, optimize=method)
            dt = (time.perf_counter() - t0) * 1e3
            if method == "dp":
                t_dp = dt
            cells += [f"{dt:.2f}", f"{float(oinfo.opt_cost):.3e}"]
        cells.append(f"{t_dp / t_tessera:.1f}x" if t_dp else "—")
        print(f"| {n} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one row of each table")
    args = ap.parse_args()
    versions = [f"numpy {np.__version__}"]
    if oe:
        versions.append(f"opt_einsum {oe.__version__}")
    if torch:
        versions.append(f"torch {torch.__version__}")
    print(f"CPU: {cpu_name()}; Python {platform.python_version()}; tessera {tessera.__version__}; {', '.join(versions)}\n")
    print("## Per-call time on tiny repeated einsums (float64)\n")
    overhead_table(args.quick)
    print("\n## Path search (random networks; cost by opt_einsum's accounting)\n")
    path_table(args.quick)


if __name__ == "__main__":
    main()
