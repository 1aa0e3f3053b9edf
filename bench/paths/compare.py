#!/usr/bin/env python3
"""Contraction-path quality and speed: Tessera's path search against opt_einsum.

Generates networks deterministically, runs opt_einsum's `dp` (each under a time limit,
in a child process) and `random-greedy-128`, runs Tessera's `path_quality` binary on
the same networks (the path search alone), then plans each one through the user's entry
point, `tessera plan --einsum SPEC --sizes .. --format json`, with the algebra pass on
and with `--no-algebra`. Every Tessera path is checked with opt_einsum's own cost
accounting. Writes bench/paths/RESULTS.md (plus the raw numbers in
bench/paths/results.json).

Usage: python3 bench/paths/compare.py [--dp-timeout S] [--budget-ms MS] [--quick]
Creates bench/.venv with numpy and opt_einsum when missing, and re-runs itself there.
"""

import argparse
import datetime
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)
VENV = os.path.join(BENCH, ".venv")
VPY = os.path.join(VENV, "bin", "python")


def ensure_venv():
    """Re-executes this script inside bench/.venv (creating it when missing) with a fixed
    hash seed: opt_einsum's random-greedy iterates sets of labels, so its result depends
    on string hashing."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV) and os.environ.get("PYTHONHASHSEED") == "0":
        return
    if not os.path.exists(VPY):
        print("creating", VENV, file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([VPY, "-m", "pip", "install", "-q", "numpy", "opt_einsum"])
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(VPY, [VPY] + sys.argv)


# ---------------------------------------------------------------------------------
# Networks. Each is (inputs, output, sizes) over integer labels; every label occurs
# in two inputs, or in one input and the output, so opt_einsum never needs a
# single-operand step and its reported cost follows the same convention as ours.


def rand_einsum(n, reg, n_out, dmin, dmax, seed):
    """Like opt_einsum.testing.rand_equation: n*reg/2 bonds between random pairs of
    inputs plus n_out open labels; every input gets at least one bond."""
    rng = random.Random(seed)
    num = n * reg // 2 + n_out
    inputs = [[] for _ in range(n)]
    output = []
    sizes = [rng.randint(dmin, dmax) for _ in range(num)]
    order = list(range(n))
    rng.shuffle(order)
    for ix in range(num):
        if ix < n_out:
            t = rng.randrange(n)
            inputs[t].append(ix)
            output.append(ix)
        else:
            k = ix - n_out
            if k < n:
                a = order[k]
                b = rng.choice([t for t in range(n) if t != a])
            else:
                a, b = rng.sample(range(n), 2)
            inputs[a].append(ix)
            inputs[b].append(ix)
    return inputs, output, sizes


def random_regular(n, degree, dmin, dmax, seed):
    """A random simple regular graph (configuration model with rejection); tensors are
    vertices, bonds are edges, the output is a scalar."""
    rng = random.Random(seed)
    while True:
        stubs = [v for v in range(n) for _ in range(degree)]
        rng.shuffle(stubs)
        edges = set()
        ok = True
        for a, b in zip(stubs[::2], stubs[1::2]):
            e = (min(a, b), max(a, b))
            if a == b or e in edges:
                ok = False
                break
            edges.add(e)
        if ok:
            break
    inputs = [[] for _ in range(n)]
    sizes = []
    for ix, (a, b) in enumerate(sorted(edges)):
        inputs[a].append(ix)
        inputs[b].append(ix)
        sizes.append(rng.randint(dmin, dmax))
    return inputs, [], sizes


def lattice(rows, cols, dmin, dmax, seed):
    """An open-boundary 2-D grid of tensors contracted to a scalar."""
    rng = random.Random(seed)
    inputs = [[] for _ in range(rows * cols)]
    sizes = []
    for r in range(rows):
        for c in range(cols):
            v = r * cols + c
            for w in ([v + 1] if c + 1 < cols else []) + ([v + cols] if r + 1 < rows else []):
                ix = len(sizes)
                sizes.append(rng.randint(dmin, dmax))
                inputs[v].append(ix)
                inputs[w].append(ix)
    return inputs, [], sizes


def matrix_chain(n, dmin, dmax, seed):
    rng = random.Random(seed)
    sizes = [rng.randint(dmin, dmax) for _ in range(n + 1)]
    return [[i, i + 1] for i in range(n)], [0, n], sizes


def families(quick):
    """(family, kind, [(name, network)]); kind 'dp' compares with dp, 'large' with
    random-greedy-128. Two seeds per size in the dp families, ordered by size."""
    fams = []
    seeds = [0, 1]
    ns = [10, 12, 14, 16, 18, 20, 22, 25, 28, 30]
    fams.append(("random einsum (reg 3)", "dp",
                  [(f"einsum-{n}-{k}", rand_einsum(n, 3, 2, 2, 9, 1000 + 100 * k + n)) for n in ns for k in seeds]))
    ns = [10, 12, 14, 16, 18, 20, 22, 25]
    fams.append(("random einsum (reg 4)", "dp",
                  [(f"einsum4-{n}-{k}", rand_einsum(n, 4, 2, 2, 4, 1500 + 100 * k + n)) for n in ns for k in seeds]))
    ns = [10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30]
    fams.append(("random 3-regular graphs", "dp",
                  [(f"regular3-{n}-{k}", random_regular(n, 3, 2, 4, 2000 + 100 * k + n)) for n in ns for k in seeds]))
    shapes = [(3, 3), (3, 4), (4, 4), (4, 5), (5, 5), (4, 7), (5, 6), (6, 6)]
    fams.append(("2-D lattices", "dp",
                  [(f"lattice-{r}x{c}-{k}", lattice(r, c, 2, 4, 3000 + 100 * k + r * 10 + c))
                   for r, c in shapes for k in seeds]))
    ns = [5, 10, 20, 30, 40, 50]
    fams.append(("matrix chains", "dp",
                  [(f"chain-{n}-{k}", matrix_chain(n, 2, 100, 4000 + 100 * k + n)) for n in ns for k in seeds]))
    large = []
    for n in [60, 70, 80, 90, 100]:
        large.append((f"einsum-{n}", rand_einsum(n, 3, 2, 2, 9, 5000 + n)))
    for n in [60, 80, 100]:
        large.append((f"einsum4-{n}", rand_einsum(n, 4, 2, 2, 4, 5500 + n)))
    for n in [60, 70, 80, 90, 100]:
        large.append((f"regular3-{n}", random_regular(n, 3, 2, 4, 6000 + n)))
    for r, c in [(8, 8), (8, 10), (9, 10), (10, 10)]:
        large.append((f"lattice-{r}x{c}", lattice(r, c, 2, 4, 7000 + r * 10 + c)))
    fams.append(("large networks (60-100 tensors)", "large", large))
    if quick:
        fams = [(f, k, nets[:3]) for f, k, nets in fams]
    return fams


# ---------------------------------------------------------------------------------
# opt_einsum side.


def equation(inputs, output):
    import opt_einsum as oe
    sym = oe.get_symbol
    return ",".join("".join(sym(i) for i in t) for t in inputs) + "->" + "".join(sym(i) for i in output)


def shapes_of(inputs, sizes):
    return [tuple(sizes[i] for i in t) for t in inputs]


def oe_cost(inputs, output, sizes, path):
    """opt_einsum's own cost of an explicit path (its flop convention)."""
    import opt_einsum as oe
    _, info = oe.contract_path(equation(inputs, output), *shapes_of(inputs, sizes), shapes=True,
                               optimize=[tuple(p) for p in path])
    return float(info.opt_cost)


def _child(conn, inputs, output, sizes, optimize):
    import opt_einsum as oe
    from opt_einsum.path_random import RandomGreedy
    opt = RandomGreedy(max_repeats=128) if optimize == "random-greedy-128" else optimize
    eq, shapes = equation(inputs, output), shapes_of(inputs, sizes)
    best = None
    for _ in range(5):
        t0 = time.perf_counter()
        path, info = oe.contract_path(eq, *shapes, shapes=True, optimize=opt)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
        if dt > 0.05:
            break
        if optimize == "random-greedy-128":
            opt = RandomGreedy(max_repeats=128)
    conn.send({"cost": float(info.opt_cost), "time_s": best, "path": [list(p) for p in path]})
    conn.close()


def run_oe(inputs, output, sizes, optimize, timeout):
    """Runs one opt_einsum optimizer in a child process; None on timeout."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(child, inputs, output, sizes, optimize))
    p.start()
    child.close()
    result = None
    if parent.poll(timeout):
        try:
            result = parent.recv()
        except EOFError:
            result = None
    if p.is_alive():
        p.terminate()
    p.join()
    return result


# ---------------------------------------------------------------------------------
# Tessera side.


def run_tessera(nets, budget_ms, build=True):
    if build:
        subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "tessera-bench", "--bin", "path_quality"],
                              cwd=ROOT)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    exe = os.path.join(target, "release", "path_quality")
    payload = {"budget_ms": budget_ms, "method": "auto",
               "networks": [{"name": name, "inputs": i, "output": o, "sizes": s} for name, (i, o, s) in nets]}
    out = subprocess.run([exe], input=json.dumps(payload), capture_output=True, text=True, check=True)
    return {row["name"]: row for row in json.loads(out.stdout)}


def label_sizes(inputs, output, sizes):
    """The spec and `--sizes` value of a network, with opt_einsum's own labels (past 52
    labels `get_symbol` hands out non-ASCII characters such as `À`, `×` and `÷`)."""
    import opt_einsum as oe
    used = sorted({i for t in inputs for i in t} | set(output))
    return equation(inputs, output), ",".join(f"{oe.get_symbol(i)}={sizes[i]}" for i in used)


def run_cli_plan(exe, spec, sizes, no_algebra):
    """One `tessera plan --einsum SPEC --sizes .. --format json` run, as a user runs it:
    the parsed JSON plus the wall time of the whole process."""
    cmd = [exe, "plan", "--einsum", spec, "--sizes", sizes, "--format", "json"]
    if no_algebra:
        cmd.append("--no-algebra")
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        return {"error": out.stderr.strip() or f"exit status {out.returncode}", "wall_s": wall}
    plan = json.loads(out.stdout)
    plan["wall_s"] = wall
    return plan


def run_entry(nets, build=True):
    """Plans every network through the CLI, algebra on (the default) and off, and checks
    what a user relies on: the same FLOPs both ways, a `path` in the JSON, and that
    opt_einsum's own accounting of that path gives Tessera's FLOPs. Planning times are
    the plan's `search_ms` (the whole planner: algebra pass, path search, lowering),
    the fastest of up to nine alternating rounds, fewer once a network has taken 4 s."""
    if build:
        subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "tessera", "--bin", "tessera"], cwd=ROOT)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    exe = os.path.join(target, "release", "tessera")
    rows = {}
    for key, (inputs, output, sizes) in nets:
        spec, size_arg = label_sizes(inputs, output, sizes)
        best = {False: None, True: None}
        spent = 0.0
        for _ in range(9):
            for off in (False, True):
                r = run_cli_plan(exe, spec, size_arg, off)
                spent += r["wall_s"]
                prev = best[off]
                if prev is None or ("error" not in r and r["search_ms"] < prev.get("search_ms", float("inf"))):
                    best[off] = r
            if any("error" in r for r in best.values()) or spent > 4.0:
                break
        on, off = best[False], best[True]
        row = {"on": on, "off": off, "problems": []}
        for name, r in (("algebra on", on), ("--no-algebra", off)):
            if "error" in r:
                row["problems"].append(f"{name}: {r['error']}")
            elif not r.get("path"):
                row["problems"].append(f"{name}: no path in the JSON")
            else:
                r["oe_cost"] = oe_cost(inputs, output, sizes, r["path"])
                if not math.isclose(r["oe_cost"], r["flops"], rel_tol=1e-9):
                    row["problems"].append(f"{name}: opt_einsum costs the path at {r['oe_cost']}, Tessera says {r['flops']}")
        if not row["problems"] and not math.isclose(on["flops"], off["flops"], rel_tol=1e-12):
            # Both modes run the same search; it stops at a deadline as well as at a work
            # limit, so on a busy machine its result can change from run to run. Rerun
            # both to tell that apart from a difference between the modes.
            seen = {False: {on["flops"]}, True: {off["flops"]}}
            for _ in range(2):
                for o in (False, True):
                    r = run_cli_plan(exe, spec, size_arg, o)
                    if "error" not in r:
                        seen[o].add(r["flops"])
            row["costs_seen"] = {"on": sorted(seen[False]), "off": sorted(seen[True])}
            if len(seen[False] | seen[True]) > 1 and (len(seen[False]) > 1 or len(seen[True]) > 1):
                row["varies"] = True
            else:
                row["problems"].append(f"cost {on['flops']} with the algebra, {off['flops']} without")
        rows[key] = row
        ratio = on["search_ms"] / max(off["search_ms"], 1e-6) if not row["problems"] else float("nan")
        print(f"{key:<48} entry: on {on.get('search_ms', '-')} ms, off {off.get('search_ms', '-')} ms, "
              f"ratio {ratio:.2f} {'; '.join(row['problems'])}", file=sys.stderr)
    return rows


# ---------------------------------------------------------------------------------
# Report.


def machine():
    model, cores = platform.processor() or "unknown", os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {cores} cores"


def fmt_t(s):
    if s is None:
        return "-"
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def ratio_str(x):
    return f"{x:.6f}".rstrip("0").rstrip(".")


def main():
    ensure_venv()
    ap = argparse.ArgumentParser()
    ap.add_argument("--dp-timeout", type=float, default=30.0, help="seconds per opt_einsum dp run")
    ap.add_argument("--budget-ms", type=int, default=1000, help="Tessera's time budget (Method::Auto)")
    ap.add_argument("--quick", action="store_true", help="three networks per family")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries already in target/")
    args = ap.parse_args()
    import numpy
    import opt_einsum as oe

    started = time.time()
    fams = families(args.quick)
    all_nets = [(f"{fam}/{name}", net) for fam, _, nets in fams for name, net in nets]
    ours = run_tessera(all_nets, args.budget_ms, not args.no_build)
    entry = run_entry(all_nets, not args.no_build)
    rows = []
    for fam, kind, nets in fams:
        timed_out_at = None
        for name, (inputs, output, sizes) in nets:
            key = f"{fam}/{name}"
            t = ours[key]
            row = {"family": fam, "kind": kind, "name": name, "tensors": len(inputs),
                   "ours": t, "ours_cost_oe": None, "entry": entry[key]}
            if t.get("error") is None:
                row["ours_cost_oe"] = oe_cost(inputs, output, sizes, t["pairs"])
                assert math.isclose(row["ours_cost_oe"], t["flops"], rel_tol=1e-9), (key, row["ours_cost_oe"], t["flops"])
            if kind == "dp":
                if timed_out_at is not None and len(inputs) >= timed_out_at:
                    row["dp"] = "skipped"
                else:
                    r = run_oe(inputs, output, sizes, "dp", args.dp_timeout)
                    row["dp"] = r if r is not None else "timeout"
                    if r is None:
                        timed_out_at = len(inputs)
            else:
                r = run_oe(inputs, output, sizes, "random-greedy-128", 600)
                row["rg128"] = r
            status = row.get("dp", row.get("rg128"))
            other = status["cost"] if isinstance(status, dict) else status
            print(f"{key:<48} ours {t.get('flops')!s:>12} in {fmt_t(t['time_s']):>10}  vs {other}", file=sys.stderr)
            rows.append(row)

    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    write_report(rows, args, machine(), numpy.__version__, oe.__version__, time.time() - started)


def write_report(rows, args, mach, np_version, oe_version, wall):
    lines = []
    w = lines.append
    w("# Contraction-path search: Tessera vs opt_einsum")
    w("")
    w(f"- Machine: {mach} (`lscpu`); shared with other work, so times are noisy.")
    w(f"- Date: {datetime.date.today().isoformat()}; Python {platform.python_version()}, numpy {np_version}, "
      f"opt_einsum {oe_version}.")
    w(f"- Command: `python3 bench/paths/compare.py --dp-timeout {args.dp_timeout:g} --budget-ms {args.budget_ms}`"
      f" (whole run {wall / 60:.1f} min).")
    w("- Tessera: `optimize_path` with `Method::Auto` and a "
      f"{args.budget_ms} ms budget, no cache, release build, one thread. opt_einsum: "
      "`contract_path(..., optimize='dp')` (a child process per network, killed after the "
      "timeout) and `RandomGreedy(max_repeats=128)`.")
    w("- Costs are opt_einsum's flop counts (`PathInfo.opt_cost`); every Tessera path was "
      "re-costed by opt_einsum itself and matched Tessera's own number. Search times are the "
      "fastest of up to five runs when a run takes under 50 ms (both sides), else one run.")
    w("- Once dp times out in a family, larger networks of that family are skipped for dp.")
    w("")
    w("## Summary")
    w("")
    w("| family | networks | dp finished | Tessera = dp | Tessera < dp | Tessera > dp | worst Tessera/dp | "
      "speed-up vs dp (min / median) | Tessera max time | dp unfinished, Tessera proven optimal |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for fam in dict.fromkeys(r["family"] for r in rows):
        rs = [r for r in rows if r["family"] == fam]
        max_t = max(r["ours"]["time_s"] for r in rs)
        if rs[0]["kind"] != "dp":
            continue
        done = [r for r in rs if isinstance(r["dp"], dict)]
        eq = sum(1 for r in done if math.isclose(r["ours_cost_oe"], r["dp"]["cost"], rel_tol=1e-12))
        lt = sum(1 for r in done if r["ours_cost_oe"] < r["dp"]["cost"] and not
                 math.isclose(r["ours_cost_oe"], r["dp"]["cost"], rel_tol=1e-12))
        gt = len(done) - eq - lt
        worst = max((r["ours_cost_oe"] / r["dp"]["cost"] for r in done), default=float("nan"))
        sp = [r["dp"]["time_s"] / max(r["ours"]["time_s"], 1e-9) for r in done]
        spd = f"{min(sp):.0f}x / {statistics.median(sp):.0f}x" if sp else "-"
        unfinished = [r for r in rs if not isinstance(r["dp"], dict)]
        proven = sum(1 for r in unfinished if r["ours"]["optimal"])
        w(f"| {fam} | {len(rs)} | {len(done)} | {eq} | {lt} | {gt} | {ratio_str(worst)} | {spd} | {fmt_t(max_t)} | "
          f"{proven} of {len(unfinished)} |")
    w("")
    large = [r for r in rows if r["kind"] == "large"]
    if large:
        diffs = [math.log10(r["ours_cost_oe"]) - math.log10(r["rg128"]["cost"]) for r in large]
        times = [r["ours"]["time_s"] for r in large]
        w("| family | networks | within 0.1 log10 of rg-128 | worst log10(Tessera) - log10(rg-128) | mean of that | "
          "under 1 s | Tessera max time | rg-128 median time |")
        w("|---|---|---|---|---|---|---|---|")
        w(f"| {large[0]['family']} | {len(large)} | {sum(d <= 0.1 for d in diffs)} | {max(diffs):+.3f} | "
          f"{statistics.mean(diffs):+.3f} | {sum(t < 1 for t in times)} | {fmt_t(max(times))} | "
          f"{fmt_t(statistics.median(r['rg128']['time_s'] for r in large))} |")
        w("")
        w("Targets: cost equal to dp wherever dp finishes, found at least 10x faster; on 60-100 "
          "tensors within 0.1 of random-greedy-128 in log10 cost, in under 1 s.")
    w("")
    write_entry_report(rows, w)
    w("")
    w("## Per network")
    for fam in dict.fromkeys(r["family"] for r in rows):
        rs = [r for r in rows if r["family"] == fam]
        w("")
        w(f"### {fam}")
        w("")
        if rs[0]["kind"] == "dp":
            w("| network | tensors | Tessera cost | dp cost | Tessera/dp | Tessera time | method | dp time | speed-up |")
            w("|---|---|---|---|---|---|---|---|---|")
            for r in rs:
                t, d = r["ours"], r["dp"]
                if isinstance(d, dict):
                    w(f"| {r['name']} | {r['tensors']} | {r['ours_cost_oe']:.4e} | {d['cost']:.4e} | "
                      f"{ratio_str(r['ours_cost_oe'] / d['cost'])} | {fmt_t(t['time_s'])} | {t['method']} | "
                      f"{fmt_t(d['time_s'])} | {d['time_s'] / max(t['time_s'], 1e-9):.0f}x |")
                else:
                    dp_t = f"> {args.dp_timeout:g} s" if d == "timeout" else "not run"
                    w(f"| {r['name']} | {r['tensors']} | {r['ours_cost_oe']:.4e} | {d} | - | {fmt_t(t['time_s'])} | "
                      f"{t['method']} | {dp_t} | - |")
        else:
            w("| network | tensors | Tessera cost | rg-128 cost | log10 difference | Tessera time | method | "
              "rg-128 time |")
            w("|---|---|---|---|---|---|---|---|")
            for r in rs:
                t, g = r["ours"], r["rg128"]
                d = math.log10(r["ours_cost_oe"]) - math.log10(g["cost"])
                w(f"| {r['name']} | {r['tensors']} | {r['ours_cost_oe']:.4e} | {g['cost']:.4e} | {d:+.3f} | "
                  f"{fmt_t(t['time_s'])} | {t['method']} | {fmt_t(g['time_s'])} |")
    w("")
    w("## Per network, through the entry point")
    for fam in dict.fromkeys(r["family"] for r in rows):
        rs = [r for r in rows if r["family"] == fam]
        w("")
        w(f"### {fam} (`tessera plan --einsum`)")
        w("")
        w("| network | tensors | FLOPs (on = off) | plan, algebra on | plan, --no-algebra | on / off | "
          "path search alone | process wall, on | problems |")
        w("|---|---|---|---|---|---|---|---|---|")
        for r in rs:
            e = r["entry"]
            on, off = e["on"], e["off"]
            ok = not e["problems"]
            flops = f"{on['flops']:.4e}" if not e.get("varies") else \
                "varies: on " + " / ".join(f"{x:.4e}" for x in e["costs_seen"]["on"]) + \
                ", off " + " / ".join(f"{x:.4e}" for x in e["costs_seen"]["off"])
            w(f"| {r['name']} | {r['tensors']} | {flops} | {on['search_ms']:.2f} ms | "
              f"{off['search_ms']:.2f} ms | {on['search_ms'] / max(off['search_ms'], 1e-6):.2f} | "
              f"{fmt_t(r['ours']['time_s'])} | {fmt_t(on['wall_s'])} | {'; '.join(e['problems']) or '-'} |"
              if ok else f"| {r['name']} | {r['tensors']} | - | - | - | - | - | - | {'; '.join(e['problems'])} |")
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def write_entry_report(rows, w):
    """The summary of planning through `tessera plan --einsum ... --format json`."""
    w("## Through the entry point: `tessera plan --einsum SPEC --sizes .. --format json`")
    w("")
    w("Every network above planned by the CLI as a user runs it, with the algebra pass on "
      "(the default) and with `--no-algebra`. Labels are opt_einsum's `get_symbol` labels, "
      "non-ASCII past 52 (`À`, `×`, `÷`, ...), and go through `--sizes` as they are. Checks: "
      "the JSON has a `path`, opt_einsum's `contract_path` costs that path at the plan's "
      "`flops`, and the FLOPs are the same both ways. Times are the JSON's `search_ms` "
      "(the whole planner), the fastest of up to nine alternating on/off rounds (fewer once "
      "a network has taken 4 s); \"path search alone\" is `optimize_path` from the tables above.")
    w("")
    w("| family | networks | tensors | all checks pass | same cost on/off | on / off time: max / median | "
      "max plan time, on | max plan time, off | max path search alone |")
    w("|---|---|---|---|---|---|---|---|---|")
    for fam in dict.fromkeys(r["family"] for r in rows):
        rs = [r for r in rows if r["family"] == fam]
        good = [r for r in rs if not r["entry"]["problems"]]
        same = sum(1 for r in good if math.isclose(r["entry"]["on"]["flops"], r["entry"]["off"]["flops"], rel_tol=1e-12))
        varies = sum(1 for r in good if r["entry"].get("varies"))
        ratios = [r["entry"]["on"]["search_ms"] / max(r["entry"]["off"]["search_ms"], 1e-6) for r in good]
        rs_str = f"{max(ratios):.2f} / {statistics.median(ratios):.2f}" if ratios else "-"
        tmax = lambda k: max((r["entry"][k]["search_ms"] for r in good), default=float("nan"))
        n_min, n_max = min(r["tensors"] for r in rs), max(r["tensors"] for r in rs)
        same_str = f"{same} of {len(rs)}" + (f" ({varies} vary run to run in both modes)" if varies else "")
        w(f"| {fam} | {len(rs)} | {n_min}-{n_max} | {len(good)} of {len(rs)} | {same_str} | {rs_str} | "
          f"{tmax('on'):.2f} ms | {tmax('off'):.2f} ms | {fmt_t(max(r['ours']['time_s'] for r in rs))} |")
    w("")
    w("Target: the same cost as `--no-algebra` on every network, in at most 2x its time. "
      "Where the two runs disagree, both modes are run twice more; \"vary run to run\" means "
      "repeated runs of one mode gave different costs too: the path search (the same code "
      "in both modes) stopped at its deadline, which the load on the machine decides.")


if __name__ == "__main__":
    main()
