#!/usr/bin/env bash
# The distributed-slicing benchmark: a 4 x 5 lattice network of bond dimension 32 in
# f32, whose largest intermediate (128 MiB) cannot be held under a 32 MiB limit, run
# sliced on 1 and 2 MPI ranks, with its extra FLOPs next to cotengra's slicing of the
# same contraction path at the same target size. Prints the rows of RESULTS.md.
# Usage: bench/distributed/run.sh [path/to/tessera built with --features mpi] [python with cotengra]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
T=${1:-}
if [ -z "$T" ]; then
    cargo build --release --features mpi
    T=target/release/tessera
fi
T=$(realpath "$T")
PY=${2:-python3}
ROWS=${ROWS:-4} COLS=${COLS:-5} BOND=${BOND:-32} LIMIT=${LIMIT:-32MiB}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

read -r spec sizes < <(python3 "$here/network.py" "$ROWS" "$COLS" "$BOND" | paste -sd' ')
# One input file per rank of tensor (the lattice has sites of 2, 3 and 4 bonds); positive
# entries near 32^(-31/20), so that the scalar is near 1 in f32 and sums do not cancel.
cat > "$dir/gen.tsr" <<'TSR'
fn g2() -> X: f32[n, n] {
    X[i, j] = 0.0046 * (1 + 0.3 * sin(1.3 * i + 0.7 * j + 0.1))
}
fn g3() -> X: f32[n, n, n] {
    X[i, j, k] = 0.0046 * (1 + 0.3 * sin(1.3 * i + 0.7 * j + 0.3 * k + 0.2))
}
fn g4() -> X: f32[n, n, n, n] {
    X[i, j, k, l] = 0.0046 * (1 + 0.3 * sin(1.3 * i + 0.7 * j + 0.3 * k + 0.9 * l + 0.3))
}
TSR
for r in 2 3 4; do "$T" run "$dir/gen.tsr" --fn "g$r" --dim "n=$BOND" -o "$dir/t$r.npy"; done
operands=()
IFS=',' read -ra terms <<< "${spec%->}"
for t in "${terms[@]}"; do operands+=("$dir/t${#t}.npy"); done

seconds() { # seconds CMD...: wall-clock seconds of one run
    local start end
    start=$(date +%s.%N)
    "$@" > /dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}

"$T" plan --einsum "$spec" --sizes "$sizes" --format json > "$dir/plan.json"
"$T" plan --einsum "$spec" --sizes "$sizes" --memory-limit "$LIMIT" --format json > "$dir/sliced_plan.json"
"$T" bench --einsum "$spec" --sizes "$sizes" --memory-limit "$LIMIT" --format json --min-time 0 > "$dir/bench.json"

t_whole=$(seconds "$T" einsum "$spec" "${operands[@]}" -o "$dir/whole.npy")
t_one=$(seconds "$T" einsum "$spec" "${operands[@]}" --memory-limit "$LIMIT" -o "$dir/one.npy")
t_mpi1=$(seconds mpirun -n 1 "$T" einsum "$spec" "${operands[@]}" --memory-limit "$LIMIT" --distributed -o "$dir/mpi1.npy")
t_mpi2=$(seconds mpirun -n 2 --oversubscribe "$T" einsum "$spec" "${operands[@]}" --memory-limit "$LIMIT" --distributed -o "$dir/mpi2.npy")
# One thread per rank, each rank's CPU seconds measured by time(1): they show how the
# work divides even where other load leaves fewer free cores than ranks.
TIME=()
if [ -x /usr/bin/time ]; then TIME=(/usr/bin/time -a -o "$dir/cpu.txt" -f "%U"); fi
: > "$dir/cpu.txt"
t_mpi1x1=$(seconds mpirun -n 1 -x RAYON_NUM_THREADS=1 "${TIME[@]}" "$T" einsum "$spec" "${operands[@]}" --memory-limit "$LIMIT" --distributed -o "$dir/mpi1x1.npy")
cpu1=$(paste -sd' ' "$dir/cpu.txt")
: > "$dir/cpu.txt"
t_mpi2x1=$(seconds mpirun -n 2 --oversubscribe -x RAYON_NUM_THREADS=1 "${TIME[@]}" "$T" einsum "$spec" "${operands[@]}" --memory-limit "$LIMIT" --distributed -o "$dir/mpi2x1.npy")
cpu2=$(paste -sd' ' "$dir/cpu.txt")
echo "CPU seconds per rank, 1 thread each: 1 rank: ${cpu1:-n/a}; 2 ranks: ${cpu2:-n/a}"
"$T" bench --einsum "$spec" --sizes "$sizes" --format json --min-time 0 > "$dir/bench_whole.json"
for f in whole one mpi1 mpi2 mpi1x1 mpi2x1; do printf '%s=%s ' "$f" "$("$T" einsum '->' "$dir/$f.npy" | tail -n 1)"; done
echo

"$PY" - "$dir" "$spec" "$LIMIT" "$t_whole" "$t_one" "$t_mpi1" "$t_mpi2" "$t_mpi1x1" "$t_mpi2x1" <<'PY'
import json, sys
d, spec, limit = sys.argv[1], sys.argv[2], sys.argv[3]
t_whole, t_one, t_mpi1, t_mpi2, t_mpi1x1, t_mpi2x1 = (float(x) for x in sys.argv[4:10])
plan = json.load(open(f"{d}/plan.json"))
sliced = json.load(open(f"{d}/sliced_plan.json"))
bench = json.load(open(f"{d}/bench.json"))
units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
limit_bytes = next(int(limit[: -len(u)]) * m for u, m in units.items() if limit.endswith(u))
largest = max(s["bytes"] for s in plan["steps"])
base = plan["flops"]
print(f"network: {spec}")
print(f"largest intermediate {largest / 2**20:.0f} MiB (f32), limit {limit}")
print(f"| run | wall s |\n|---|---|")
for name, t in [("unsliced, 1 process (no limit)", t_whole), (f"sliced under {limit}, 1 process", t_one),
                ("sliced, mpirun -n 1", t_mpi1), ("sliced, mpirun -n 2 (2 threads each)", t_mpi2),
                ("sliced, mpirun -n 1 (1 thread)", t_mpi1x1), ("sliced, mpirun -n 2 (1 thread each)", t_mpi2x1)]:
    print(f"| {name} | {t:.2f} |")
whole = json.load(open(f"{d}/bench_whole.json"))
print(f"bench unsliced (1 process, compile excluded): median {whole['median_ms']:.0f} ms, temp_bytes {whole['temp_bytes']}")
print(f"bench sliced (1 process, compile excluded): median {bench['median_ms']:.0f} ms, temp_bytes {bench['temp_bytes']}, slices {bench['slices']}, loops {bench['slice_loops']}")
loops = ", ".join(f"{s['indices'][0]} ({s['count']})" for s in sliced.get("slices", []))
rows = [("tessera planner (slice loops, plan's count)", sliced["flops"], loops, ""),
        ("tessera as run (chunks, recomputed steps)", bench["sliced_flops"], bench["slices"], "")]
try:
    import cotengra as ctg
    inputs = [tuple(t) for t in spec.split("->")[0].split(",")]
    size_dict = {l: 32 for t in inputs for l in t}
    tree = ctg.ContractionTree.from_path(inputs, (), size_dict, path=[tuple(p) for p in plan["path"]])
    target = limit_bytes // 4
    st = tree.slice(target_size=target)
    deep = tree.slice(target_size=target, max_repeats=256, seed=0)
    if deep.total_flops() < st.total_flops():
        print(f"cotengra with max_repeats=256 finds {deep.sliced_inds} ({deep.multiplicity} slices)")
        st = deep
    c_base, c_sliced = tree.total_flops(), st.total_flops()
    print(f"cotengra {ctg.__version__}: same path, max size {tree.max_size():.3e} -> {st.max_size():.3e} elements, sliced {st.sliced_inds} ({st.multiplicity} slices)")
    rows.append((f"cotengra ContractionTree.slice(target_size={target})", c_sliced / c_base * base, st.multiplicity, ",".join(st.sliced_inds)))
except ImportError as e:
    print(f"cotengra not available: {e}")
print("| slicing | FLOPs | extra vs unsliced | slices |\n|---|---|---|---|")
print(f"| none (tessera's plan) | {base:.3e} | - | 1 |")
for name, f, n, how in rows:
    print(f"| {name} | {f:.3e} | {100 * (f / base - 1):+.1f}% | {n} {how} |")
PY
